"""The on-disk cache: compact profiles equal SimBench's own, damaged entries are rebuilt."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import simbench

from market_sim.cli import main
from market_sim.grid.disk_cache import MANIFEST, entries
from market_sim.grid.network import build_net, load_network
from market_sim.grid.profile_cache import compact_profiles, profile_cache_path, raw_profiles
from market_sim.grid.profiles import PROFILE_KEYS

CODE = "1-MV-rural--2-sw"


@pytest.fixture(scope="module")
def _module_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        path = tmp_path_factory.mktemp("cache")
        patch.setenv("MARKET_SIM_CACHE", str(path))
        build_net(CODE)  # building the net from SimBench's CSV files is the slow part
        yield path


@pytest.fixture
def shared(_module_cache, monkeypatch) -> Path:
    """A cache shared by this module's tests, its net built once; the profiles written anew."""
    monkeypatch.setenv("MARKET_SIM_CACHE", str(_module_cache))
    shutil.rmtree(_module_cache / "profiles", ignore_errors=True)
    return _module_cache


def bits(a: np.ndarray) -> np.ndarray:
    """The float64 values as their bit patterns: equal means bit for bit (NaN included)."""
    return np.ascontiguousarray(a, dtype=np.float64).view(np.int64)


def direct_profiles(net) -> dict[str, np.ndarray]:
    """What the uncompressed cache held: SimBench's absolute values, NaN -> static value."""
    absolute = simbench.get_absolute_values(net, profiles_instead_of_study_cases=True)
    out = {}
    for key, table, col in PROFILE_KEYS:
        arr = absolute[(table, col)].reindex(columns=net[table].index).to_numpy(dtype=float)
        static = net[table][col].to_numpy(dtype=float)
        out[key] = np.where(np.isnan(arr), static[None, :], arr)
    return out


def profiles_file(code: str = CODE) -> Path:
    return profile_cache_path(code) / "profiles.npz"


def test_compact_cache_equals_simbench_bit_for_bit(shared) -> None:
    """Written and read back, every value is SimBench's ``relative x rated`` exactly."""
    net = build_net(CODE)
    reference = direct_profiles(net)
    raw_profiles(CODE, net)  # writes the cache
    assert profiles_file().exists()
    cached = raw_profiles(CODE, net)
    for key, ref in reference.items():
        assert np.array_equal(bits(cached[key][:, :]), bits(ref))
        assert np.array_equal(bits(cached[key].sum(axis=1)), bits(np.asfortranarray(ref).sum(1)))
        assert np.array_equal(cached[key].max(axis=0), ref.max(axis=0))
    # the compact form is what is stored: a few profile types, not one column per element
    types = cached["load_p"]._raw.types
    assert types.shape[0] == ref.shape[0] and types.shape[1] < len(net.load) / 4


def test_an_element_without_profile_is_refused_as_simbench_refuses_it(shared) -> None:
    net = build_net(CODE)
    net.load["profile"] = net.load["profile"].astype(object)
    net.load.loc[net.load.index[[0, 5]], "profile"] = np.nan
    with pytest.raises(ValueError, match="missing in the profiles data"):
        direct_profiles(net)
    with pytest.raises(ValueError, match="missing in the profiles data"):
        compact_profiles(net)


def test_engine_profiles_equal_direct_scaling(shared) -> None:
    """A loaded network's scaled profiles equal SimBench's values x the scenario's scales."""
    dn = load_network(CODE, pv_scale=1.7, load_scale=0.8)
    ref = direct_profiles(build_net(CODE))
    factor = np.where(dn.pv_mask, 1.7, 1.0)
    assert np.array_equal(bits(dn.profiles["sgen_p"][:, :]), bits(ref["sgen_p"] * factor))
    assert np.array_equal(bits(dn.profiles["load_q"][4000]), bits(ref["load_q"][4000] * 0.8))


def _rebuilt_after(damage, caplog, what: str) -> None:
    """Damage the cached profiles, reload: one warning naming ``what``, the values as before."""
    net = build_net(CODE)
    before = {k: v[:, :] for k, v in raw_profiles(CODE, net).items()}
    damage(profiles_file())
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="market_sim"):
        after = raw_profiles(CODE, net)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and what in warnings[0].getMessage()
    assert "\n" not in warnings[0].getMessage()
    for key, values in before.items():
        assert np.array_equal(bits(after[key][:, :]), bits(values))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="market_sim"):
        raw_profiles(CODE, net)  # the rebuilt entry verifies again
    assert not caplog.records


def test_truncated_profile_cache_is_rebuilt(shared, caplog) -> None:
    def truncate(path: Path) -> None:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])

    _rebuilt_after(truncate, caplog, "bytes")


def test_same_size_corrupted_profile_cache_is_rebuilt(shared, caplog) -> None:
    """A flipped byte inside the profile values keeps the size and the npz readable."""

    def corrupt(path: Path) -> None:
        data = bytearray(path.read_bytes())
        data[len(data) // 3] ^= 0x40
        path.write_bytes(bytes(data))

    _rebuilt_after(corrupt, caplog, "sha256")


def test_corrupted_net_cache_is_rebuilt(shared, caplog) -> None:
    first = build_net(CODE)
    (pkl,) = (shared / "nets").glob("*/net.pkl")
    data = bytearray(pkl.read_bytes())
    data[len(data) // 2] ^= 0x01
    pkl.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="market_sim"):
        again = build_net(CODE)
    assert any("sha256" in r.getMessage() for r in caplog.records)
    assert again.bus.equals(first.bus) and again.load.equals(first.load)


def test_other_format_is_rebuilt(shared, caplog) -> None:
    net = build_net(CODE)
    raw_profiles(CODE, net)
    manifest = profile_cache_path(CODE) / MANIFEST
    text = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**text, "format": text["format"] - 1}))
    with caplog.at_level(logging.WARNING, logger="market_sim"):
        raw_profiles(CODE, net)
    assert any("format" in r.getMessage() for r in caplog.records)
    assert json.loads(manifest.read_text())["format"] == text["format"]


def test_cache_info_and_clear(shared, tmp_path, monkeypatch, capsys) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(shared, cache)
    monkeypatch.setenv("MARKET_SIM_CACHE", str(cache))
    load_network(CODE)  # its profiles: a second entry
    (cache / "nets" / "old.pkl").write_bytes(b"x" * 10)  # an entry of an old format
    assert main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert str(cache) in out and CODE in out and "3 entries" in out
    assert "old.pkl" in out and "incomplete or old format" in out
    total = sum(e.bytes for e in entries(cache))
    assert f"{total / 1e6:,.1f} MB" in out.splitlines()[-1]
    assert main(["cache", "clear"]) == 0
    assert "removed" in capsys.readouterr().out
    assert entries(cache) == [] and not (cache / "profiles").exists()
