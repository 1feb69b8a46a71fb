"""Utility against ε: the same DP training at several budgets, side by side with the non-private reference.

The sweep trains one DP model per ε as parallel Ray tasks, on the registered model's own training
split, and scores each on its held-out split. Like the non-private twin and the audits, the sweep is
internal evidence for the data officer's model card: none of its models is released or served, and
the registered model is trained separately at the configured ε (never picked from the sweep, which
would make the choice itself depend on the data). So the sweep is not charged to the release's
budget; the decision is the same as for the twin (training/audits.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import ray

SWEEP_EPSILONS = (0.5, 1.0, 2.0, 4.0, 8.0)


def utility_sweep(fit_and_score: Callable[[float], float], epsilons: Sequence[float] = SWEEP_EPSILONS,
                  ) -> dict[float, float]:
    """{ε: held-out metric} with one Ray task (one CPU) per ε. `fit_and_score` must be picklable;
    pass large arrays into it through `ray.put` references so each task does not copy them."""
    return dict(zip(epsilons, ray.get([_score_at.remote(fit_and_score, e) for e in epsilons]), strict=True))


@ray.remote(num_cpus=1)
def _score_at(fit_and_score: Callable[[float], float], epsilon: float) -> float:
    return fit_and_score(epsilon)


def utility_figure(curve: dict[float, float], references: dict[str, float], *, metric: str, title: str):
    """The DP model's metric against ε (log scale), each non-private reference a horizontal line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epsilons = sorted(curve)
    figure, axis = plt.subplots(figsize=(5.5, 4))
    # A metric that could not be measured (NaN: too few held-out cases) is left out, not drawn.
    measured = [e for e in epsilons if math.isfinite(curve[e])]
    axis.plot(measured, [curve[e] for e in measured], "o-", label="DP model")
    for (label, value), style in zip(references.items(), ("--", ":", "-."), strict=False):
        if math.isfinite(value):
            axis.axhline(value, color="grey", ls=style, label=label)
    if not measured:
        axis.text(0.5, 0.5, "not measurable on this data", transform=axis.transAxes, ha="center")
    axis.set_xscale("log", base=2)
    axis.set_xlim(min(epsilons) / 1.5, max(epsilons) * 1.5)
    axis.set_xticks(epsilons, [f"{e:g}" for e in epsilons])
    axis.set_xlabel("ε per person")
    axis.set_ylabel(metric)
    axis.set_title(title)
    axis.legend(loc="lower right")
    figure.tight_layout()
    return figure
