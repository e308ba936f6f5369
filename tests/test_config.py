"""A bad config exits with status 2 and one clear message: field, bad value, what is allowed."""

from __future__ import annotations

import copy

import pytest
import yaml

from market_sim.cli import main
from tests.conftest import QUICKSTART


def _write(tmp_path, mutate):
    data = yaml.safe_load(QUICKSTART.read_text())
    mutate(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _set(path, value):
    def mutate(data):
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


def _drop(key):
    return lambda data: data.pop(key)


CASES = [
    (
        "unknown model",
        _set(["models"], ["tso_managed", "central_planner"]),
        ["models", "central_planner", "tso_managed", "hybrid", "dso_managed"],
    ),
    (
        "unknown simbench code",
        _set(["dsos", 0, "simbench_code"], "1-MV-nowhere--9-sw"),
        ["dsos.0.simbench_code", "1-MV-nowhere--9-sw", "SimBench"],
    ),
    (
        "negative capacity",
        _set(["dsos", 1, "pv_scale"], -2.0),
        ["dsos.1.pv_scale", "-2.0", "greater than or equal to 0"],
    ),
    ("missing field", _drop("seed"), ["seed", "missing"]),
    (
        "bus not in the case",
        _set(["dsos", 0, "interface_bus"], 99),
        ["dsos.0.interface_bus", "99", "case39", "allowed"],
    ),
    ("unknown case", _set(["transmission", "case"], "case_nowhere"), ["case_nowhere", "allowed"]),
    (
        "unknown cost source",
        _set(["transmission", "costs"], "guess"),
        ["transmission.costs", "guess", "case", "fuel_table"],
    ),
    (
        "no fuels for the case",
        _set(["transmission", "case"], "case118"),
        ["transmission", "case118", "fuel_table", "case39"],
    ),
]


@pytest.mark.parametrize("label,mutate,expected", CASES, ids=[c[0] for c in CASES])
def test_bad_config_gives_one_clear_error(tmp_path, capsys, label, mutate, expected):
    path = _write(tmp_path, mutate)
    status = main(["run", str(path), "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert status == 2
    assert "Traceback" not in err
    assert err.count("\n") == 1, err  # one line
    for word in expected:
        assert word in err, f"{word!r} missing from: {err}"


def test_missing_file_is_a_clear_error(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.yaml")]) == 2
    assert "no such config file" in capsys.readouterr().err


def test_quickstart_is_valid_and_runs_three_models(quickstart):
    assert quickstart.models == ["tso_managed", "hybrid", "dso_managed"]
    assert quickstart.n_periods == 96
    one = quickstart.for_model("hybrid", days=2)
    assert one.models == ["hybrid"] and one.n_periods == 192
    assert copy.deepcopy(quickstart) == quickstart


def test_an_unwritable_out_is_a_clear_error_before_any_simulation(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    status = main(["run", str(QUICKSTART), "--out", str(blocker / "results"), "--no-progress"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "--out" in err and "is a file" in err and "allowed: a folder" in err


def test_ctrl_c_ends_the_run_with_one_line_and_status_130(tmp_path, capsys, monkeypatch):
    import market_sim.runner

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(market_sim.runner, "run_scenario", interrupted)
    status = main(["run", str(QUICKSTART), "--out", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    assert status == 130 and "Traceback" not in err
