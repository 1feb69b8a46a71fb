"""`portrait`: the command line of the engine. Every stage alone, or `demo` for all of them.

Heavy libraries (Feast, Ray, MLflow, torch) are imported inside the commands that need them,
so `portrait --help` and `portrait fitness score` start fast.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from core.config import get_settings

app = typer.Typer(help="Privacy-preserving student and teacher digital portraits.", no_args_is_help=True)
fitness_app = typer.Typer(help="The national student fitness standard (CSPHS 2014).", no_args_is_help=True)
users_app = typer.Typer(help="Who may sign in to the portrait service.", no_args_is_help=True)
privacy_app = typer.Typer(help="Privacy budgets (the ledger) and audits of what was released.", no_args_is_help=True)
app.add_typer(fitness_app, name="fitness")
app.add_typer(users_app, name="users")
app.add_typer(privacy_app, name="privacy")


def fail(message: str) -> None:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code=1)


@app.command()
def synth(
    students: Annotated[int, typer.Option(min=100, max=1_200_000, help="Number of students.")] = 5000,
    seed: Annotated[int, typer.Option(help="Same seed, same city.")] = 0,
    out: Annotated[Path, typer.Option(help="Folder to write the contract tables to.")] = Path("out/city"),
    school_years: Annotated[int, typer.Option(min=2, max=12, help="6 school years = 12 terms.")] = 6,
    schools: Annotated[int | None, typer.Option(min=3, help="Number of schools (default: ~45 per class).")] = None,
    dirty: Annotated[float, typer.Option(min=0.0, max=0.5, help="Share of deliberately bad rows.")] = 0.0,
    file_format: Annotated[str, typer.Option("--format", help="parquet or csv")] = "parquet",
):
    """Write a synthetic city as contract tables (CONTRACT.md)."""
    from portrait.pipeline import run_synth

    counts = run_synth(out, students=students, seed=seed, school_years=school_years, schools=schools, dirty=dirty,
                       file_format=file_format)
    for name, rows in counts.items():
        typer.echo(f"{name:<20}{rows:>10} rows")
    typer.echo(f"written to {out}")


@app.command()
def ingest(
    export_dir: Annotated[Path, typer.Argument(help="Folder of contract tables (CSV or Parquet).")],
    adapter: Annotated[str | None, typer.Option(help="Read a public dataset's own files: uci, oulad, star, nnyfs.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the report as JSON.")] = None,
):
    """Validate, pseudonymize and load an export into the lake; bad rows go to quarantine."""
    from features.adapters import ADAPTERS
    from features.ingest import IngestError
    from portrait.pipeline import run_ingest

    if adapter is not None and adapter not in ADAPTERS:
        fail(f"unknown adapter {adapter!r}; choose one of {', '.join(ADAPTERS)}")
    try:
        with tempfile.TemporaryDirectory(prefix="portrait-adapted-") as adapted:
            if adapter is not None:
                # The dataset is mapped onto the contract first, then goes through the same door.
                ADAPTERS[adapter](export_dir, Path(adapted))
                export_dir = Path(adapted)
            report = run_ingest(export_dir, get_settings())
    except IngestError as error:
        fail(str(error))
    typer.echo(report.render())
    if json_out:
        json_out.write_text(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
    if report.errors:
        fail("some tables were not loaded: " + "; ".join(report.errors))


@fitness_app.command("score")
def fitness_score(
    input_path: Annotated[Path, typer.Argument(metavar="INPUT", help="A fitness_tests table (.csv or .parquet).")],
    out: Annotated[Path, typer.Option(help="Where to write the scored table (.csv or .parquet).")],
):
    """Score fitness tests under the national standard; unscorable rows say why in `problem`."""
    from features.indicators.fitness import MissingColumnError, score_fitness_tests
    from features.ingest import IngestError, read_table_file

    try:
        tests = read_table_file(input_path, "fitness_tests")
        scored = score_fitness_tests(tests)
    except (IngestError, MissingColumnError) as error:
        fail(str(error))
    if out.suffix == ".parquet":
        scored.to_parquet(out, index=False)
    else:
        scored.to_csv(out, index=False)
    unscored = int(scored["total_score"].isna().sum())
    typer.echo(f"scored {len(scored) - unscored} of {len(scored)} rows -> {out}")
    if unscored:
        typer.echo(f"{unscored} rows could not be scored; see the `problem` column")


@app.command()
def features():
    """Compute indicators from the lake and publish them to Feast (apply + materialize)."""
    from portrait.pipeline import run_features

    for name, rows in run_features(get_settings()).items():
        typer.echo(f"{name:<28}{rows:>10} rows")


@app.command()
def train(
    models: Annotated[list[str] | None, typer.Argument(
        help="Models to train, by name or comma-separated (default, or 'all': every model).",
        show_default=False)] = None,
    epsilon: Annotated[float | None, typer.Option(help="Privacy target ε per person (default: settings).")] = None,
):
    """Train DP models on Ray beside their non-private references; log and register them in MLflow."""
    from portrait.pipeline import run_train
    from privacy.ledger import BudgetExceeded

    try:
        names = [name for arg in models or () for name in arg.split(",") if name.strip() not in ("", "all")]
        results = run_train(get_settings(), [name.strip() for name in names], epsilon=epsilon)
    except (ValueError, BudgetExceeded) as error:
        fail(str(error))
    typer.echo(json.dumps({name: result.__dict__ for name, result in results.items()}, indent=2))


@app.command()
def statistics():
    """Release the five-domain norms and fitness pass rates with DP (OpenDP), paid from the ledger."""
    from portrait.pipeline import run_statistics
    from privacy.ledger import BudgetExceeded

    try:
        paths = run_statistics(get_settings())
    except (BudgetExceeded, FileNotFoundError) as error:
        fail(str(error))
    for name, path in paths.items():
        typer.echo(f"{name:<20}{path}")


@app.command()
def score():
    """Score every student with the champion model and publish the scores to the online store."""
    from portrait.pipeline import run_score

    for view, rows in run_score(get_settings()).items():
        typer.echo(f"{view:<24}{rows:>10} rows")


@app.command()
def serve(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default: PORTRAIT_SERVING_WORKERS, "
                                                     "one per core).")] = None,
):
    """Serve portraits (JSON API and web pages)."""
    import uvicorn

    # An import string, not an app object: each worker process builds its own app from the same
    # environment (uvicorn cannot fork an app object into workers). No access log: the audit log
    # is the one record of reads, and a URL line per request would be a second, unkept one.
    uvicorn.run("serving.app:create_app", factory=True, host=host, port=port, log_level="warning",
                access_log=False, workers=workers or get_settings().serving_workers)


@app.command()
def demo(
    students: Annotated[int, typer.Option(min=100, max=1_200_000)] = 5000,
    seed: Annotated[int, typer.Option()] = 0,
    port: Annotated[int, typer.Option()] = 8000,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    no_serve: Annotated[bool, typer.Option("--no-serve", help="Stop after scoring.")] = False,
):
    """Every stage on the embedded default: synth → ingest → features → train → score → serve."""
    from portrait.pipeline import (StageClock, create_demo_logins, run_features, run_ingest, run_score, run_statistics,
                                   run_synth, run_train)

    settings = get_settings()
    clock = StageClock(echo=typer.echo)
    # The synthetic export holds raw ids and names, like a real one: it lives outside
    # PORTRAIT_HOME and is gone once ingested, so the engine's folder never holds them.
    with tempfile.TemporaryDirectory(prefix="portrait-export-") as export:
        export_dir = Path(export)
        with clock.stage("synth", f"a city of {students} students"):
            run_synth(export_dir, students=students, seed=seed)
        with clock.stage("ingest", "validate, pseudonymize, load the lake"):
            report = run_ingest(export_dir, settings)
    typer.echo(report.render())
    with clock.stage("features", "indicators, Feast apply + materialize"):
        run_features(settings)
    with clock.stage("train", "DP models beside their non-private references on Ray; MLflow registry"):
        results = run_train(settings)
    for name, result in results.items():
        typer.echo(f"    {name} v{result.model_version}: {result.summary()}")
    with clock.stage("statistics", "DP norms and pass rates (OpenDP), paid from the ledger"):
        run_statistics(settings)
    with clock.stage("score", "champion model → online store"):
        run_score(settings)
    logins = create_demo_logins(settings)
    typer.echo(clock.render())
    if no_serve:
        return
    base = f"http://{host}:{port}"
    typer.echo(f"\nPortrait service on {base}  (log in at {base}/login)")
    for login in logins:
        typer.echo(f"  {login.role:<14} user {login.username:<9} password {login.password}  scope {', '.join(login.scope)}")
        for page in login.pages:
            typer.echo(f"      {base}{page}")
    sys.stdout.flush()
    serve(host=host, port=port)


@users_app.command("add")
def users_add(
    username: str,
    role: Annotated[str, typer.Option(help="class_teacher, health_staff, training_center, data_officer")],
    scope: Annotated[list[str], typer.Option(help="Class ids (teachers) or school ids (health staff).")] = [],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)] = "",
):
    """Add (or replace) a user."""
    from serving.users import UserStore

    try:
        UserStore(get_settings().users_path).add(username, password, role, scope)
    except ValueError as error:
        fail(str(error))
    typer.echo(f"user {username} ({role}) saved")


@users_app.command("list")
def users_list():
    """List users, their roles and scopes."""
    from serving.users import UserStore

    for user in UserStore(get_settings().users_path).list():
        state = "disabled" if user.disabled else "active"
        typer.echo(f"{user.username:<16}{user.role.value:<16}{state:<10}{', '.join(user.scope)}")


@users_app.command("disable")
def users_disable(username: str):
    """Disable a user: their password and any token they hold stop working."""
    from serving.users import UserStore

    if not UserStore(get_settings().users_path).disable(username):
        fail(f"no user {username!r}; `portrait users list` shows who exists")
    typer.echo(f"user {username} disabled")


@privacy_app.command("open")
def privacy_open(
    release: Annotated[str, typer.Argument(help="The release: a school year for its students, e.g. 2025, or '2025/teachers' for its teachers (the unit of teacher models).")],
    epsilon: Annotated[float, typer.Option(help="Total ε for everything computed from this release.")],
    delta: Annotated[float, typer.Option(help="Total δ (well below 1 / number of students).")],
):
    """Open a data release with its total (ε, δ) budget (the data officer's decision, made once)."""
    from privacy.ledger import PrivacyLedger
    from training.budget import lake_snapshot

    settings = get_settings()
    snapshot = lake_snapshot(settings)
    try:
        balance = PrivacyLedger(settings.ledger_url).open_release(release, epsilon=epsilon, delta=delta,
                                                                  snapshot=snapshot)
    except ValueError as error:
        fail(str(error))
    if (balance.epsilon_total, balance.delta_total) != (epsilon, delta):
        fail(f"release {release} is already open with ε={balance.epsilon_total:g}, δ={balance.delta_total:g}; "
             f"a total is set once")
    typer.echo(f"release {release} opened: ε={epsilon:g}, δ={delta:g} (lake snapshot {snapshot or 'none yet'})")


@privacy_app.command("ledger")
def privacy_ledger(
    release: Annotated[str | None, typer.Argument(help="Show one release's spends (default: all releases).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
):
    """Releases, what each spend bought (ε, δ, mechanism, accountant) and what is left."""
    from dataclasses import asdict

    from privacy.ledger import PrivacyLedger

    ledger = PrivacyLedger(get_settings().ledger_url)
    try:
        balances = [ledger.balance(release)] if release else ledger.releases()
    except KeyError as error:
        fail(error.args[0])
    if json_out:
        typer.echo(json.dumps([{**asdict(b), "epsilon_left": b.epsilon_left, "delta_left": b.delta_left,
                                "spends": ledger.spends(b.release)} for b in balances], indent=2, ensure_ascii=False))
        return
    if not balances:
        typer.echo("no release opened yet (portrait privacy open YEAR --epsilon E --delta D)")
    for b in balances:
        typer.echo(f"release {b.release}: spent ε={b.epsilon_spent:.4g} of {b.epsilon_total:g}, "
                   f"δ={b.delta_spent:.3g} of {b.delta_total:g}; left ε={b.epsilon_left:.4g}, δ={b.delta_left:.3g}")
        typer.echo("  composition: basic (ε's and δ's add up across spends)")
        for s in ledger.spends(b.release):
            typer.echo(f"  {s['spent_at']}  ε={s['epsilon']:<8.4g} δ={s['delta']:<9.3g} {s['what']:<36} "
                       f"{s['mechanism']} / {s['accountant']}  [{s['snapshot'] or '-'}]")


@privacy_app.command("audit")
def privacy_audit(
    model: Annotated[str, typer.Argument(help="Registered model name, e.g. fitness_risk.")],
    alias: Annotated[str, typer.Option(help="Which version: a registry alias.")] = "champion",
):
    """Membership-inference audits of a model and its non-private twin, logged to its MLflow run and card."""
    from portrait.pipeline import run_audit

    try:
        audits = run_audit(get_settings(), model, alias)
    except ValueError as error:
        fail(str(error))
    for row in audits:
        typer.echo(f"{row['target']:<11}{row['summary']}")


if __name__ == "__main__":  # pragma: no cover
    app()
