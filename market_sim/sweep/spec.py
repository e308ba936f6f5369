"""A sweep file: a base config and a grid over its fields, expanded into independent runs.

::

    base: quickstart.yaml            # a scenario config, relative to the sweep file
    set:                             # optional: fields set in every run
      days: 1
    grid:                            # the product of these lists, one run per combination
      model: [hybrid, dso_managed]   # one coordination model per run
      dso_market.priority: [criticality, economic]
      dsos.*.pv_scale: [1.0, 1.5]    # * = every item of a list
      seed: [1, 2]

Fields are dotted paths into the config (list items by position, ``*`` for all of them);
``model`` sets the run's one model (default: one run per model of the base config). Every run's
config is validated before anything runs, so a bad value is a one-line
:class:`~market_sim.config.ConfigError` naming the run, the field, the value and what is allowed.
A run's id is a hash of its resolved config: a rerun of a sweep finds its finished runs again.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from market_sim.config import ConfigError, ScenarioConfig, apply_overrides, parse_config
from market_sim.config_yaml import YamlError, read_yaml

#: The grid key that chooses a run's coordination model (the config's ``models: [value]``).
MODEL_KEY = "model"
_SWEEP_KEYS = {"base", "set", "grid"}


@dataclass(frozen=True)
class SweepRun:
    """One run of a sweep: its id, the swept values (by dotted path) and its resolved config."""

    run_id: str
    values: dict[str, Any]
    config: ScenarioConfig


@dataclass(frozen=True)
class Sweep:
    """A sweep file expanded: its runs in grid order, and the swept field names (columns)."""

    source: Path
    fields: list[str]
    runs: list[SweepRun]


def set_dotted(raw: dict, path: str, value: Any) -> None:
    """Set ``a.b.0.c`` (``*``: every list item) in a raw config mapping, creating mappings.

    A twin of ``config._set_path`` (``--set``), which takes one path of text values; this one
    takes typed values from the sweep file and expands ``*``. Making one serve both would change
    the messages either reports (issue 10 note). Raises ConfigError naming the path if it
    cannot apply.
    """
    _set(raw, path.split("."), value, path)


def _set(node: Any, parts: list[str], value: Any, path: str) -> None:
    head, rest = parts[0], parts[1:]
    if isinstance(node, list):
        keys: list[Any] = list(range(len(node))) if head == "*" else [_index(node, head, path)]
    elif isinstance(node, dict):
        keys = [head]
    else:
        raise ConfigError(f"{path}: '{head}' is inside a value, not a mapping or list")
    for key in keys:
        if not rest:
            node[key] = copy.deepcopy(value)
            continue
        if isinstance(node, dict) and node.get(key) is None:
            node[key] = {}
        _set(node[key], rest, value, path)


def _index(items: list, head: str, path: str) -> int:
    if not head.isdigit() or int(head) >= len(items):
        raise ConfigError(
            f"{path}: '{head}' is not an item of a list of {len(items)}; "
            f"allowed: 0..{len(items) - 1} or *"
        )
    return int(head)


def _apply(raw: dict, path: str, value: Any, source: Path) -> None:
    try:
        set_dotted(raw, path, value)
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None


def run_id(config: ScenarioConfig) -> str:
    """A stable id of a resolved config: equal configs are the same run, on any machine."""
    text = json.dumps(config.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _read_yaml(path: Path) -> Any:
    """A sweep file or its base config, read by the scenario files' strict loader (duplicate
    keys, non-UTF-8 bytes and syntax errors as one line)."""
    try:
        return read_yaml(path)[0]
    except YamlError as error:
        raise ConfigError(str(error)) from None


def _grid(spec: dict, source: Path, base_models: list[str]) -> dict[str, list]:
    grid = spec.get("grid") or {}
    if not isinstance(grid, dict):
        raise ConfigError(f"{source}: grid: expected a mapping of field -> list of values")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{source}: grid.{key}: got {values!r}; allowed: a non-empty list")
    if MODEL_KEY not in grid:
        grid = {MODEL_KEY: base_models, **grid}
    return grid


def load_sweep(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Sweep:
    """Read a sweep file and expand it; every run's config is validated here. ``overrides``
    (``--set key.path=value``) change the base config after the file's ``set``, before the
    grid: a field the grid sweeps is the grid's."""
    source = Path(path)
    spec = _read_yaml(source)
    if not isinstance(spec, dict) or "base" not in spec:
        raise ConfigError(f"{source}: expected a mapping with base, grid and optionally set")
    unknown = sorted(set(spec) - _SWEEP_KEYS)
    if unknown:
        raise ConfigError(f"{source}: {unknown[0]}: unknown field; allowed: {sorted(_SWEEP_KEYS)}")
    base_path = (source.parent / str(spec["base"])).resolve()
    base = _read_yaml(base_path)
    fixed = spec.get("set") or {}
    if not isinstance(base, dict) or not isinstance(fixed, dict):
        raise ConfigError(f"{source}: base and set must be mappings of config fields")
    for key, value in fixed.items():
        _apply(base, key, value, source)
    base = apply_overrides(base, list(overrides))
    grid = _grid(spec, source, list(parse_config(base, str(base_path)).models))
    runs, seen = [], set()
    for combo in itertools.product(*grid.values()):
        values = dict(zip(grid, combo, strict=True))
        raw = copy.deepcopy(base)
        for key, value in values.items():
            if key == MODEL_KEY:
                raw["models"] = [value]
            else:
                _apply(raw, key, value, source)
        config = parse_config(raw, f"{source}: run {values}")
        rid = run_id(config)
        if rid in seen:
            raise ConfigError(f"{source}: run {values}: the same config as an earlier run")
        seen.add(rid)
        runs.append(SweepRun(rid, values, config))
    return Sweep(source, list(grid), runs)
