"""What users of a packaged tool expect (issue 11): a license that matches the metadata,
shipped example configs runnable by name, ``--version``, ``-v`` after the sub-command, test
tools kept out of the runtime lock, and a README that documents every config field."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

import market_sim.runner
from market_sim.cli import _parser, main
from market_sim.config_reference import config_markdown
from market_sim.config_yaml import resolve_config, shipped_configs
from tests.conftest import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]


def test_license_file_matches_the_declared_license():
    text = (ROOT / "LICENSE").read_text()
    assert PROJECT["license"] == "MIT" and PROJECT["license-files"] == ["LICENSE"]
    assert text.startswith("MIT License\n")
    assert "Copyright (c) 2026 The market_sim contributors" in text
    assert PROJECT["authors"] == [{"name": "The market_sim contributors"}]


def test_supported_pythons_agree():
    assert PROJECT["requires-python"] == ">=3.11,<3.14"
    versions = {c.rsplit(" ", 1)[1] for c in PROJECT["classifiers"] if re.search(r"3\.\d+$", c)}
    assert versions == {"3.11", "3.12", "3.13"}


def test_every_pinned_version_installs_on_the_lowest_supported_python():
    """The locks are what ``make`` installs, so each pin must admit every Python the project
    says it supports: Debian 12's is 3.11.2, which pymdown-extensions 13 (>=3.11.5) refused."""
    from importlib.metadata import distribution

    from packaging.specifiers import SpecifierSet

    lowest = re.search(r">=(3\.\d+)", PROJECT["requires-python"]).group(1) + ".0"
    pins = [
        line.split("==")[0]
        for lock in ("requirements.lock", "requirements-test.lock")
        for line in (ROOT / lock).read_text().splitlines()
        if "==" in line and not line.startswith("#")
    ]
    needs = {name: distribution(name).metadata.get("Requires-Python") or "" for name in pins}
    refused = {n: need for n, need in needs.items() if not SpecifierSet(need).contains(lowest)}
    assert len(pins) > 100 and not refused, f"pins that refuse Python {lowest}: {refused}"


def test_example_configs_are_shipped_once_and_resolve_by_name():
    shipped = shipped_configs()
    assert set(shipped) == {"quickstart", "ehv", "mvlv-urban"}
    package = ROOT / "market_sim" / "configs"
    assert (ROOT / "configs").resolve() == package.resolve()  # a link, not a second copy
    assert "configs/*.yaml" in PYPROJECT["tool"]["setuptools"]["package-data"]["market_sim"]
    assert resolve_config("quickstart") == shipped["quickstart"]
    assert resolve_config("quickstart.yaml") == shipped["quickstart"]
    assert shipped["quickstart"].parent.resolve() == package.resolve()


def test_an_existing_path_wins_over_a_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "quickstart").write_text("name: mine\n")
    assert resolve_config("quickstart").read_text() == "name: mine\n"
    assert resolve_config("sub/quickstart") == Path("sub/quickstart")  # a path, as given


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert re.fullmatch(r"market-sim \S+\n", capsys.readouterr().out)


@pytest.mark.parametrize(
    "argv,verbose",
    [
        (["run", "quickstart"], False),
        (["-v", "run", "quickstart"], True),
        (["run", "-v", "quickstart"], True),
        (["run", "quickstart", "--verbose"], True),
    ],
)
def test_verbose_before_or_after_the_sub_command(argv, verbose):
    assert _parser().parse_args(argv).verbose is verbose


def test_run_by_bare_name_reaches_the_simulation(tmp_path, monkeypatch):
    seen = []

    def record(scenario, *args, **kwargs):
        seen.append(scenario.config.name)
        raise KeyboardInterrupt  # the CLI's own way out: status 130

    monkeypatch.setattr(market_sim.runner, "run_scenario", record)
    monkeypatch.chdir(tmp_path)  # not the repository: the name resolves inside the package
    assert main(["run", "-v", "quickstart", "--out", str(tmp_path)]) == 130
    assert seen == ["quickstart"]


def _pins(name: str) -> dict[str, str]:
    lines = (ROOT / name).read_text().splitlines()
    return dict(line.lower().split("==") for line in lines if "==" in line)


def test_test_tools_are_not_in_the_runtime_lock():
    runtime, test = _pins("requirements.lock"), _pins("requirements-test.lock")
    tools = {"pytest", "ruff", "hypothesis", "import-linter", "nbmake", "playwright"}
    assert tools <= set(test) and not tools & set(runtime)
    assert not set(runtime) & set(test)  # each pin in one lock
    assert "-r requirements.lock" in (ROOT / "requirements-test.lock").read_text().splitlines()
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install -q -r requirements-test.lock" in makefile
    assert re.search(r"^run: \$\(STAMP\)$", makefile, re.M)  # make run: the runtime only


def test_readme_documents_every_config_field():
    readme = (ROOT / "README.md").read_text()
    assert config_markdown() in readme, "regenerate with: python -m market_sim.config_reference"
    from market_sim.config import ScenarioConfig

    def fields(model):
        for name, field in model.model_fields.items():
            yield name
            annotation = field.annotation
            inner = getattr(annotation, "__args__", (annotation,))[0]
            for candidate in (annotation, inner):
                if isinstance(candidate, type) and hasattr(candidate, "model_fields"):
                    yield from fields(candidate)

    section = config_markdown()
    for name in fields(ScenarioConfig):
        assert f"| `{name}` |" in section, name
    assert "~/.cache/market_sim" in readme and "MARKET_SIM_CACHE" in readme
