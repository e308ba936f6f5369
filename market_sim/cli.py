"""The command line: ``market-sim run CONFIG [--model M] [--days N] [--out DIR] [--set K=V]
[--check] [--report] [--overwrite]``, ``market-sim run --resume RUN_DIR``, ``market-sim report
RUN_DIR ...``, ``market-sim serve CONFIG``, ``market-sim sweep SWEEP.yaml``, ``market-sim cache
info|clear`` and ``market-sim compare CONFIG [--variants V ...] [--days N] [--out DIR]``."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from market_sim.config import ConfigError, ScenarioConfig, chunk_periods, load_config
from market_sim.config_yaml import resolve_config
from market_sim.logs import quiet_resource_tracker, setup
from market_sim.registry import COORDINATION_MODELS

log = logging.getLogger("market_sim")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="market-sim",
        description="Agent-based market co-simulation of TSO-DSO coordination models.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        parents=[common_options()],
        help="run a scenario and write one results folder per coordination model",
        description="Run a YAML scenario under its coordination models, side by side.",
    )
    run.add_argument(
        "config",
        type=Path,
        nargs="?",
        help="scenario YAML, e.g. configs/quickstart.yaml, or a shipped one by name: quickstart",
    )
    add_set_option(run)
    run.add_argument(
        "--model",
        choices=COORDINATION_MODELS.names,
        action="append",
        help="run only this model (repeatable); default: the config's models",
    )
    run.add_argument("--days", type=int, help="override the number of days")
    run.add_argument(
        "--out", type=Path, default=Path("results"), help="results directory (default: results/)"
    )
    run.add_argument(
        "--chunk-days",
        type=float,
        help="days per chunk written to disk, a whole number of periods (default: the config's, 1)",
    )
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier run in the scenario's results folder (all its model folders)",
    )
    run.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="go on with a killed or interrupted run: a model's or a scenario's results folder",
    )
    run.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="run the models in this many processes, each loading the networks once (default 1)",
    )
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    run.add_argument(
        "--check",
        action="store_true",
        help="check the market's invariants after every period; exit 1 if any was violated",
    )
    _add_compare(sub)
    serve = sub.add_parser(
        "serve",
        parents=[common_options()],
        help="an interactive page: step a scenario period by period in the browser",
        description="Serve a page (mesa SolaraViz) that steps the scenario and shows it.",
    )
    serve.add_argument("config", type=Path, help="scenario YAML, e.g. configs/quickstart.yaml")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    run.add_argument("--report", action="store_true", help="write the runs' report at the end")
    report = sub.add_parser(
        "report",
        parents=[common_options()],
        help="write figures and a report.md of run folders",
        description="Plot run folders (KPI series, models compared, one period's messages, "
        "merit order and networks) into PNG files and a report.md that embeds them.",
    )
    report.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR", help="run folder")
    report.add_argument("--out", type=Path, help="report folder (default: report/ beside them)")
    report.add_argument(
        "--period", type=int, help="period to show (default: the most DER dispatched)"
    )
    _add_sweep(sub)
    _add_cache(sub)
    return parser


def _add_compare(sub: argparse._SubParsersAction) -> None:
    compare = sub.add_parser(
        "compare",
        parents=[common_options()],
        help="run every coordination model in parallel and measure the paper's Table I",
        description="Run every registered model (and chosen variants) on one scenario and seed; "
        "write comparison.md, comparison.csv and one figure per measure.",
    )
    compare.add_argument("config", type=Path, help="scenario YAML, e.g. configs/quickstart.yaml")
    compare.add_argument(
        "--variants", nargs="+", default=[], metavar="VARIANT", help="e.g. pre_validation"
    )
    compare.add_argument("--days", type=int, help="override the number of days")
    compare.add_argument(
        "--out", type=Path, default=Path("results"), help="results directory (default: results/)"
    )
    compare.add_argument(
        "--overwrite", action="store_true", help="replace an earlier run of the scenario in --out"
    )
    add_set_option(compare)


def common_options() -> argparse.ArgumentParser:
    """Options every sub-command accepts after its name too (``market-sim run -v CONFIG``):
    pass as ``parents=[common_options()]`` to ``add_parser``."""
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a sub-command without -v keeps the value given before it
    common.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging"
    )
    return common


def add_set_option(parser: argparse.ArgumentParser) -> None:
    """``--set key.path=value`` (repeatable) on a sub-command that reads a config: pass
    ``args.set`` to :func:`market_sim.config.load_config` (or ``apply_overrides``)."""
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config field before validation, e.g. --set seed=7 "
        "--set dsos.0.pv_scale=2 --set dso_market.enabled=false (repeatable)",
    )


def _version() -> str:
    try:
        return version("market_sim")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup(args.verbose)
    commands = {
        "run": _run,
        "compare": _compare,
        "serve": _serve,
        "report": lambda a: _report(a.run_dirs, a.out, a.period),
        "sweep": _sweep,
        "cache": _cache,
    }
    return commands[args.command](args)


#: The errors of a full disk or quota: a run stopped by them can be resumed once there is room.
_FULL = (errno.ENOSPC, errno.EDQUOT)


def _run(args: argparse.Namespace) -> int:
    from market_sim.results import RunFolderError
    from market_sim.runner import (
        Interrupted,
        check_line,
        resume_scenario,
        run_scenario,
        side_by_side,
    )
    from market_sim.scenario import load_scenario

    try:
        if args.jobs < 1:
            raise ConfigError(f"--jobs: got {args.jobs}; allowed: a whole number >= 1")
        if args.resume is not None:
            folders, config, source = _resume_target(args)
        else:
            folders, config, source = None, _new_run_config(args), str(args.config)
        t0 = time.perf_counter()
        scenario = load_scenario(config, source)
        log.info("networks loaded in %.1f s", time.perf_counter() - t0)
    except ConfigError as error:
        print(f"market-sim: config error: {error}", file=sys.stderr)
        return 2
    except RunFolderError as error:
        print(f"market-sim: {error}", file=sys.stderr)
        return 2
    progress = not args.no_progress
    try:
        if folders is not None:
            reports = resume_scenario(scenario, folders, progress, args.check, args.jobs, source)
        else:
            reports = run_scenario(
                scenario, args.out, args.model, args.days, progress, args.check,
                overwrite=args.overwrite, jobs=args.jobs, source=source,
            )  # fmt: skip
    except RunFolderError as error:  # another run took the folder since the check
        print(f"market-sim: {error}", file=sys.stderr)
        return 2
    except Interrupted as stopped:
        print(f"market-sim: {stopped}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("market-sim: interrupted before any period was written", file=sys.stderr)
        return 130
    except OSError as error:
        if error.errno not in _FULL:
            raise
        where = args.resume if args.resume is not None else args.out / config.name
        print(
            f"market-sim: writing the results failed: {error}; the chunks written are kept: "
            f"make room, then market-sim run --resume {where}",
            file=sys.stderr,
        )
        return 1
    print(side_by_side(reports))
    status = _report([r.folder for r in reports], None, None) if args.report else 0
    violated = check_line(reports)
    if violated:
        print(f"market-sim: --check: {violated}", file=sys.stderr)
        return 1
    return status


def _report(run_dirs: list[Path], out: Path | None, period: int | None) -> int:
    from market_sim.plots.report import ReportInputError, default_out, write_report

    try:
        _check_writable(out or default_out(run_dirs))
        path = write_report(run_dirs, out, period)
    except (ReportInputError, ConfigError) as error:
        print(f"market-sim: report: {error}", file=sys.stderr)
        return 2
    print(f"report: {path}")
    return 0


def _checked_config(args: argparse.Namespace) -> ScenarioConfig:
    """The config with its --set, --days, --chunk-days (where the command has them) and --out
    checked (ConfigError), before anything is loaded."""
    config = load_config(args.config, args.set)
    chunk_days = getattr(args, "chunk_days", None)
    if args.days is not None and args.days < 1:
        raise ConfigError(f"--days: got {args.days}; allowed: a whole number >= 1")
    if chunk_days is not None:
        try:
            chunk_periods(chunk_days, config.period_minutes, "--chunk-days")
        except ValueError as err:
            raise ConfigError(str(err)) from None
        config = config.model_copy(update={"chunk_days": chunk_days})
    if args.days is not None:
        config.for_model(config.models[0], args.days)  # validates the date range
    _check_writable(args.out)
    return config


def _compare(args: argparse.Namespace) -> int:
    from market_sim.compare import compare, compared_models
    from market_sim.run_folder import check_new_run
    from market_sim.scenario import check_data

    try:
        config = _checked_config(args)
        models = compared_models(args.variants)
        check_new_run(args.out / config.name, args.overwrite)
        check_data(config, str(args.config))
    except ConfigError as error:
        print(f"market-sim: config error: {error}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    try:
        result = compare(config, str(args.config), models, args.out, args.days, args.overwrite)
    except KeyboardInterrupt:
        log.error("interrupted: the run folders of the models not finished are incomplete")
        return 130
    log.info("compared %d models in %.1f s", len(models), time.perf_counter() - t0)
    print((result.folder / "comparison.md").read_text())
    print(f"results: {result.folder}")
    return 0


def _new_run_config(args: argparse.Namespace) -> ScenarioConfig:
    """The config of a new run, checked (:func:`_checked_config`), into no earlier run."""
    from market_sim.run_folder import check_new_run

    if args.config is None:
        raise ConfigError("run: missing CONFIG; allowed: a scenario YAML, or --resume RUN_DIR")
    config = _checked_config(args)
    check_new_run(args.out / config.name, args.overwrite)
    return config


def _resume_target(args: argparse.Namespace) -> tuple[list[Path], ScenarioConfig, str]:
    """The model folders to resume, the config they were started with, and its file."""
    from market_sim.run_folder import RunLock, model_folders

    given = [f for f in ("config", "model", "days", "chunk_days") if getattr(args, f) is not None]
    if args.set:
        given.append("set")
    if given or args.overwrite:
        names = {"config": "CONFIG", "chunk_days": "--chunk-days"}
        flags = ", ".join(names.get(f, f"--{f}") for f in given) or "--overwrite"
        raise ConfigError(
            f"--resume: got {flags} too; allowed: --resume RUN_DIR alone (a run goes on "
            "with the config it was started with)"
        )
    folders = model_folders(args.resume)
    _check_writable(args.resume)
    RunLock(folders[0].parent).check()
    source = folders[0] / "config.yaml"
    return folders, load_config(source), str(source)


def _serve(args: argparse.Namespace) -> int:
    """Check the config here (a bad one is a one-line error, not a broken page), then hand
    over to the Solara server, which imports the page with the config's path."""
    try:
        load_config(args.config)
    except ConfigError as error:
        print(f"market-sim: config error: {error}", file=sys.stderr)
        return 2
    from market_sim.serve.page import CONFIG_ENV  # after the check: solara warns on import

    # solara's and mesa's UserWarnings (hook rules, cookie scheme) are not the user's business
    path = resolve_config(args.config).resolve()  # a bare name: the shipped config
    env = os.environ | {CONFIG_ENV: str(path), "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, "-m", "solara", "run", "market_sim.serve.page", "--production"]
    command += ["--host", args.host, "--port", str(args.port), "--no-open"]
    log.info("serving %s on http://%s:%d", args.config, args.host, args.port)
    try:
        return subprocess.call(command, env=env)
    except KeyboardInterrupt:
        return 130


def _check_writable(out: Path) -> None:
    """--out must be a folder this process can write, checked before anything is simulated."""
    existing = next((p for p in (out, *out.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ConfigError(f"--out: got '{out}'; {existing} is a file; allowed: a folder")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--out: got '{out}'; {existing} is not writable; allowed: a folder")


def _add_cache(sub: argparse._SubParsersAction) -> None:
    cache = sub.add_parser(
        "cache",
        parents=[common_options()],
        help="show or clear the cache of SimBench nets and profiles",
        description="The on-disk cache ($MARKET_SIM_CACHE or ~/.cache/market_sim).",
    )
    cache.add_argument("action", choices=("info", "clear"), help="list entries, or remove all")


def _cache(args: argparse.Namespace) -> int:
    from market_sim.grid.disk_cache import cache_dir, clear, entries

    root = cache_dir()
    if args.action == "clear":
        print(f"cache {root}: removed {_mb(clear(root))}")
        return 0
    found = entries(root)
    print(f"cache {root}")
    for e in found:
        note = "" if e.complete else "  (incomplete or old format: unused)"
        print(f"  {e.kind:<9} {e.name:<60} {_mb(e.bytes):>10}{note}")
    print(f"{len(found)} entries, {_mb(sum(e.bytes for e in found))}")
    return 0


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def _add_sweep(sub: argparse._SubParsersAction) -> None:
    sweep = sub.add_parser(
        "sweep",
        parents=[common_options()],
        help="run a grid of configs on Dask and gather their KPIs in one table",
        description="Expand SWEEP.yaml's grid over config fields into independent runs, run "
        "them on a Dask cluster, and write sweep.parquet / sweep.csv (README, Sweeps).",
    )
    sweep.add_argument("sweep", type=Path, help="sweep YAML, e.g. configs/sweeps/example.yaml")
    sweep.add_argument("--scheduler", help="address of a running Dask scheduler (tcp://...)")
    sweep.add_argument(
        "--out", type=Path, default=Path("sweeps"), help="sweep directory (default: sweeps/)"
    )
    sweep.add_argument(
        "--workers", type=int, help="local worker processes (default: the machine's cores)"
    )
    add_set_option(sweep)


def _sweep(args: argparse.Namespace) -> int:
    quiet_resource_tracker()
    from market_sim.sweep import load_sweep, run_sweep, sweep_line

    try:
        if args.workers is not None and args.workers < 1:
            raise ConfigError(f"--workers: got {args.workers}; allowed: a whole number >= 1")
        if args.workers is not None and args.scheduler:
            raise ConfigError("--workers: not with --scheduler (the cluster has its workers)")
        sweep = load_sweep(args.sweep, args.set)
        _check_writable(args.out)
    except ConfigError as error:
        print(f"market-sim: config error: {error}", file=sys.stderr)
        return 2
    try:
        result = run_sweep(sweep, args.out, args.scheduler, args.workers)
    except ConfigError as error:  # the data checks, before any run
        print(f"market-sim: config error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        log.error("interrupted: rerun the same command to run the runs not yet complete")
        return 130
    print(sweep_line(result, args.out))
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
