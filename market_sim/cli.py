"""The command line: ``market-sim run CONFIG [--model M] [--days N] [--out DIR] [--check]``,
``market-sim run --resume RUN_DIR``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from market_sim.config import ConfigError, ScenarioConfig, load_config
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
    run.add_argument(
        "config", type=Path, nargs="?", help="scenario YAML, e.g. configs/quickstart.yaml"
    )
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
        "--chunk-days", type=int, help="days per chunk written to disk (default: the config's, 1)"
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
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    run.add_argument(
        "--check",
        action="store_true",
        help="check the market's invariants after every period; exit 1 if any was violated",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup(args.verbose)
    if args.command == "run":
        return _run(args)
    return 2


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
            reports = resume_scenario(scenario, folders, progress, args.check)
        else:
            reports = run_scenario(
                scenario, args.out, args.model, args.days, progress, args.check,
                overwrite=args.overwrite,
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
    print(side_by_side(reports))
    violated = check_line(reports)
    if violated:
        print(f"market-sim: --check: {violated}", file=sys.stderr)
        return 1
    return 0


def _new_run_config(args: argparse.Namespace) -> ScenarioConfig:
    """The config of a new run, checked with its --days, --chunk-days and --out."""
    from market_sim.run_folder import check_new_run

    if args.config is None:
        raise ConfigError("run: missing CONFIG; allowed: a scenario YAML, or --resume RUN_DIR")
    config = load_config(args.config)
    for flag, value in (("--days", args.days), ("--chunk-days", args.chunk_days)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag}: got {value}; allowed: a whole number >= 1")
    if args.chunk_days is not None:
        config = config.model_copy(update={"chunk_days": args.chunk_days})
    if args.days is not None:
        config.for_model(config.models[0], args.days)  # validates the date range
    _check_writable(args.out)
    check_new_run(args.out / config.name, args.overwrite)
    return config


def _resume_target(args: argparse.Namespace) -> tuple[list[Path], ScenarioConfig, str]:
    """The model folders to resume, the config they were started with, and its file."""
    from market_sim.run_folder import RunLock, model_folders

    given = [f for f in ("config", "model", "days", "chunk_days") if getattr(args, f) is not None]
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


def _check_writable(out: Path) -> None:
    """--out must be a folder this process can write, checked before anything is simulated."""
    existing = next((p for p in (out, *out.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ConfigError(f"--out: got '{out}'; {existing} is a file; allowed: a folder")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--out: got '{out}'; {existing} is not writable; allowed: a folder")


if __name__ == "__main__":
    sys.exit(main())
