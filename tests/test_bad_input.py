"""Bad input that used to pass silently or crash (issue 10): each now exits 2 with one line
naming the field, the value and what is allowed, before any network is loaded or any period
simulated. Also ``--set`` overrides, which go through the same validation."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest
import yaml

import market_sim.runner
import market_sim.scenario
from market_sim.cli import main
from market_sim.config import ConfigError, apply_overrides, load_config
from market_sim.config_yaml import parse_yaml
from tests.conftest import QUICKSTART, ROOT

TEXT = QUICKSTART.read_text()
DATA = yaml.safe_load(TEXT)
END = len(TEXT.splitlines())  # lines appended below are END + 1, ...


class Simulated(Exception):
    """Raised by the stand-ins below: the CLI got past validation to load or simulate."""


@pytest.fixture
def nothing_simulated(monkeypatch):
    """Fail loudly if the CLI loads a scenario or runs one."""

    def refuse(*args, **kwargs):
        raise Simulated

    monkeypatch.setattr(market_sim.scenario, "load_scenario", refuse)
    monkeypatch.setattr(market_sim.runner, "run_scenario", refuse)


def _edited(edit):
    data = copy.deepcopy(DATA)
    edit(data)
    return yaml.safe_dump(data)


def _rename_dso(name):
    def edit(data):
        data["dsos"][0]["name"] = name
        for agg in data["aggregators"]:
            agg["dsos"] = [name if d == "rural" else d for d in agg["dsos"]]

    return edit


# label, file content (text or bytes), words the one line must contain
CASES = [
    (
        "dso named like an aggregator",
        _edited(lambda d: d["aggregators"][1].update(name="semiurb")),
        ["aggregators.1.name", "'semiurb'", "dsos.1", "allowed"],
    ),
    ("dso named tso", _edited(_rename_dso("tso")), ["dsos.0.name", "'tso'", "the TSO", "allowed"]),
    (
        "two aggregators of one name",
        _edited(lambda d: d["aggregators"][1].update(name="flexpool")),
        ["aggregators.1.name", "'flexpool'", "aggregators.0", "allowed"],
    ),
    (
        "a model listed twice",
        _edited(lambda d: d.update(models=["hybrid", "tso_managed", "hybrid"])),
        ["models", "'hybrid'", "twice", "at most once"],
    ),
    (
        "an aggregator listing a DSO twice",
        _edited(lambda d: d["aggregators"][1].update(dsos=["rural", "rural"])),
        ["aggregators.1.dsos", "'rural'", "twice"],
    ),
    (
        "a duplicate YAML key",
        TEXT + "seed: 7\n",
        ["duplicate key 'seed'", f"line {END + 1}, column 1", "first at line 6", "each key once"],
    ),
    (
        "NaN",
        _edited(lambda d: d["forecast_error"].update(sd_fraction=float("nan"))),
        ["forecast_error.sd_fraction", "nan", "finite number"],
    ),
    (
        "infinity",
        _edited(lambda d: d.update(voll_eur_per_mwh=float("inf"))),
        ["voll_eur_per_mwh", "inf", "finite number"],
    ),
    (
        "NaN in a nested price",
        _edited(lambda d: d["prosumers"].update(prices={"pv_down": {"mean": float("-inf")}})),
        ["prosumers.prices.pv_down.mean", "-inf", "finite number"],
    ),
    ("a boolean seed", _edited(lambda d: d.update(seed=True)), ["seed", "True", "integer"]),
    ("a string seed", _edited(lambda d: d.update(seed="7")), ["seed", "'7'", "integer"]),
    ("a float seed", _edited(lambda d: d.update(seed=7.5)), ["seed", "7.5", "integer"]),
    (
        "a gate after the period's end",
        _edited(lambda d: d.update(gates={"dispatch_s": 1000})),
        ["gates.dispatch_s", "1000", "900 s", "period_minutes 15"],
    ),
    (
        "a gate after the end of a 30-minute period",
        _edited(lambda d: d.update(period_minutes=30, gates={"dispatch_s": 1801})),
        ["gates.dispatch_s", "1801", "1800 s"],
    ),
    (
        "a path separator in the name",
        _edited(lambda d: d.update(name="../escape")),
        ["name", "'../escape'", "no path separator"],
    ),
    ("a name of dots", _edited(lambda d: d.update(name="..")), ["name", "'..'", "allowed"]),
    (
        "a chunk of part of a period",
        _edited(lambda d: d.update(chunk_days=0.3)),
        ["chunk_days", "0.3", "a whole number of 15-minute periods"],
    ),
    ("a chunk of no period", _edited(lambda d: d.update(chunk_days=0)), ["chunk_days", "0"]),
    (
        "not UTF-8",
        TEXT.replace("a sunny midsummer day", "un jour d'été").encode("latin-1"),
        ["not UTF-8", "0xe9", "allowed: a UTF-8"],
    ),
    (
        "a YAML syntax error",
        TEXT + "extra: [1, 2\n",
        ["not valid YAML", f"line {END + 2}, column 1", "expected ',' or ']'"],
    ),
    (
        "an impossible date",
        TEXT.replace("start: 2016-06-21", "start: 2016-02-30"),
        ["line 7", "'2016-02-30' is not a date", "day is out of range"],
    ),
    ("an empty file", "", ["expected a mapping", "NoneType"]),
]


@pytest.mark.parametrize("label,content,expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_one_line_and_status_2(
    tmp_path, capsys, nothing_simulated, label, content, expected
):
    path = tmp_path / "bad.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    _assert_one_line_error(capsys, ["run", str(path), "--out", str(tmp_path)], expected)


def test_a_folder_as_the_config(tmp_path, capsys, nothing_simulated):
    _assert_one_line_error(capsys, ["run", str(tmp_path)], [str(tmp_path), "is a folder"])


def test_a_missing_file_names_the_shipped_configs(tmp_path, capsys, nothing_simulated):
    missing = tmp_path / "nope.yaml"
    _assert_one_line_error(
        capsys, ["run", str(missing)], [str(missing), "no such config file", "quickstart"]
    )


def _assert_one_line_error(capsys, argv, expected):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("market-sim: config error: "), err
    for word in expected:
        assert word in err, f"{word!r} missing from: {err}"


def test_the_quickstart_itself_passes_every_new_check():
    config = load_config(QUICKSTART)
    assert config.gates.dispatch_s <= 60 * config.period_minutes
    assert config.seed == 42 and config.name == "quickstart"


# --set


def test_overrides_set_dotted_paths_as_yaml_scalars():
    items = ["seed=7", "dsos.0.pv_scale=2", "dso_market.enabled=false", "gates.bids_s=200"]
    raw = apply_overrides(DATA, items)
    assert raw["seed"] == 7 and raw["dsos"][0]["pv_scale"] == 2
    assert raw["dso_market"]["enabled"] is False
    assert raw["gates"] == {"bids_s": 200}  # a mapping the file did not have is created
    assert DATA["seed"] == 42 and "gates" not in DATA  # the input is not changed
    config = load_config(QUICKSTART, items)
    assert config.seed == 7 and config.dsos[0].pv_scale == 2.0
    assert not config.dso_market.enabled and config.gates.bids_s == 200.0
    assert config.dsos[1].pv_scale == 1.6  # the rest as in the file


def test_exponent_floats_are_floats_in_files_and_overrides():
    """PyYAML (YAML 1.1) reads 1e-3 as a string, which the strict schema would refuse."""
    text = TEXT.replace("sd_fraction: 0.015", "sd_fraction: 15e-3")
    assert "15e-3" in text
    assert yaml.safe_load(text)["forecast_error"]["sd_fraction"] == "15e-3"  # the quirk
    assert parse_yaml(text)["forecast_error"]["sd_fraction"] == 0.015
    assert load_config(QUICKSTART, ["voll_eur_per_mwh=3e3"]).voll_eur_per_mwh == 3000.0


def test_later_overrides_win():
    assert load_config(QUICKSTART, ["seed=1", "seed=3"]).seed == 3


@pytest.mark.parametrize(
    "item,expected",
    [
        ("seed=true", ["seed", "True", "integer"]),
        ("seed=nan", ["seed", "nan"]),
        ("dsos.1.pv_scale=-2", ["dsos.1.pv_scale", "-2", "greater than or equal to 0"]),
        ("dsos.0.pv_scael=2", ["dsos.0.pv_scael", "unknown field"]),
        ("dsos.5.pv_scale=2", ["--set dsos.5.pv_scale=2", "dsos.5", "index 0..1"]),
        ("seed.x=1", ["--set seed.x=1", "seed is a value (42)"]),
        ("seed", ["--set", "'seed'", "key.path=value"]),
        ("=7", ["--set", "'=7'", "key.path=value"]),
        ("gates.bids_s=[1", ["--set gates.bids_s", "not valid YAML", "line 1"]),
        ("dso_market.enabled=maybe", ["dso_market.enabled", "'maybe'", "boolean"]),
        ("prosumers.load_shift_hours=1e300", ["load_shift_hours", "1e+300", "168"]),
    ],
)
def test_a_bad_override_is_the_same_one_line_error(
    tmp_path, capsys, nothing_simulated, item, expected
):
    _assert_one_line_error(capsys, ["run", str(QUICKSTART), "--set", item], expected)


def test_overrides_reach_the_run(tmp_path, monkeypatch):
    seen = {}

    def record(scenario, *args, **kwargs):
        seen["config"] = scenario.config
        raise Simulated

    monkeypatch.setattr(market_sim.runner, "run_scenario", record)
    with pytest.raises(Simulated):
        main(["run", "quickstart", "-v", "--set", "seed=9", "--out", str(tmp_path)])
    assert seen["config"].seed == 9


def test_apply_overrides_refuses_a_malformed_item():
    with pytest.raises(ConfigError, match="key.path=value"):
        apply_overrides(DATA, ["dsos..pv_scale=1"])


def test_a_run_folders_config_reads_back_as_the_same_config(tmp_path):
    """The strict schema still reads what a run wrote (dates as quoted text included)."""
    from market_sim.config import dump_config

    config = load_config(QUICKSTART).for_model("hybrid", days=2)
    path = tmp_path / "config.yaml"
    path.write_text(dump_config(config))
    assert load_config(path) == config


@pytest.mark.parametrize("command", ["run", "serve"])
def test_a_bad_config_is_one_line_in_a_real_process(tmp_path, command):
    """Nothing imported before the check may print (solara warns when its page is imported)."""
    missing = tmp_path / "nope.yaml"
    done = subprocess.run(
        [sys.executable, "-m", "market_sim.cli", command, str(missing)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [
        f"market-sim: config error: {missing}: no such config file; allowed: a path to a YAML "
        "file or the name of a shipped config (ehv, mvlv-urban, quickstart)"
    ]
