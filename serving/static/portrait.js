/* Draws every chart of a page with the ECharts this engine serves (no other script, no CDN).
 * A chart is a <div data-chart="{...ECharts option as JSON...}">; SVG rendering prints sharply.
 * When a chart is drawn its element gets data-rendered="1" (the browser tests wait for it). */
(function () {
  "use strict";
  var charts = [];

  /* A chart's option: its own data-chart JSON, or a shared template (data-chart-template on the
   * element named by data-template) with the element's data-values put in its first series. */
  function optionOf(node) {
    var own = node.getAttribute("data-chart");
    if (own) { return JSON.parse(own); }
    var template = document.getElementById(node.getAttribute("data-template"));
    var option = JSON.parse(template.getAttribute("data-chart-template"));
    option.series[0].data[0].value = node.getAttribute("data-values").split(",").map(function (v) {
      return v === "" ? null : Number(v);
    });
    return option;
  }

  function draw() {
    var nodes = document.querySelectorAll("[data-chart], [data-template]");
    for (var i = 0; i < nodes.length; i++) {
      var node = nodes[i];
      try {
        var chart = echarts.init(node, null, { renderer: "svg" });
        chart.setOption(optionOf(node));
        node.setAttribute("data-rendered", "1");
        charts.push(chart);
      } catch (error) {
        node.setAttribute("data-rendered", "error");
        node.textContent = node.getAttribute("data-error-text") || "chart unavailable";
      }
    }
    document.documentElement.setAttribute("data-charts-ready", String(nodes.length));
  }

  function resizeAll() {
    for (var i = 0; i < charts.length; i++) { charts[i].resize(); }
  }

  document.addEventListener("DOMContentLoaded", function () {
    draw();
    var buttons = document.querySelectorAll("[data-print]");
    for (var i = 0; i < buttons.length; i++) {
      buttons[i].addEventListener("click", function () { window.print(); });
    }
  });
  window.addEventListener("resize", resizeAll);
  window.addEventListener("beforeprint", resizeAll);
  window.addEventListener("afterprint", resizeAll);
})();
