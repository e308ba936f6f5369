"""The command line: ``market-sim run CONFIG [--model M] [--days N] [--out DIR] [--check]
[--report]`` and ``market-sim report RUN_DIR [RUN_DIR ...] [--out DIR] [--period N]``."""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from market_sim.config import ConfigError, load_config
from market_sim.logs import setup
from market_sim.registry import COORDINATION_MODELS

log = logging.getLogger("market_sim")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="market-sim",
        description="Agent-based market co-simulation of TSO-DSO coordination models.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="run a scenario and write one results folder per coordination model",
        description="Run a YAML scenario under its coordination models, side by side.",
    )
    run.add_argument("config", type=Path, help="scenario YAML, e.g. configs/quickstart.yaml")
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
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    run.add_argument(
        "--check",
        action="store_true",
        help="check the market's invariants after every period; exit 1 if any was violated",
    )
    serve = sub.add_parser(
        "serve",
        help="an interactive page: step a scenario period by period in the browser",
        description="Serve a page (mesa SolaraViz) that steps the scenario and shows it.",
    )
    serve.add_argument("config", type=Path, help="scenario YAML, e.g. configs/quickstart.yaml")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    run.add_argument("--report", action="store_true", help="write the runs' report at the end")
    report = sub.add_parser(
        "report",
        help="write figures and a report.md of run folders",
        description="Plot run folders (KPI series, models compared, one period's messages, "
        "merit order and networks) into PNG files and a report.md that embeds them.",
    )
    report.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR", help="run folder")
    report.add_argument("--out", type=Path, help="report folder (default: report/ beside them)")
    report.add_argument(
        "--period", type=int, help="period to show (default: the most DER dispatched)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup(args.verbose)
    if args.command == "run":
        return _run(args)
    if args.command == "serve":
        return _serve(args)
    if args.command == "report":
        return _report(args.run_dirs, args.out, args.period)
    return 2


def _run(args: argparse.Namespace) -> int:
    from market_sim.runner import check_line, run_scenario, side_by_side
    from market_sim.scenario import load_scenario

    try:
        config = load_config(args.config)
        if args.days is not None and args.days < 1:
            raise ConfigError(f"--days: got {args.days}; allowed: a whole number >= 1")
        if args.days is not None:
            config.for_model(config.models[0], args.days)  # validates the date range
        _check_writable(args.out)
        t0 = time.perf_counter()
        scenario = load_scenario(config, str(args.config))
        log.info("networks loaded in %.1f s", time.perf_counter() - t0)
    except ConfigError as error:
        print(f"market-sim: config error: {error}", file=sys.stderr)
        return 2
    try:
        reports = run_scenario(
            scenario, args.out, args.model, args.days, not args.no_progress, args.check
        )
    except KeyboardInterrupt:
        log.error("interrupted: the run folders of the models not finished are incomplete")
        return 130
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


def _serve(args: argparse.Namespace) -> int:
    """Check the config here (a bad one is a one-line error, not a broken page), then hand
    over to the Solara server, which imports the page with the config's path."""
    from market_sim.serve.page import CONFIG_ENV

    try:
        load_config(args.config)
    except ConfigError as error:
        print(f"market-sim: config error: {error}", file=sys.stderr)
        return 2
    # solara's and mesa's UserWarnings (hook rules, cookie scheme) are not the user's business
    env = os.environ | {CONFIG_ENV: str(args.config.resolve()), "PYTHONWARNINGS": "ignore"}
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


if __name__ == "__main__":
    sys.exit(main())
