"""The interactive page in a real headless Chromium: it loads, a step changes what it shows,
and switching the coordination model rebuilds the model.

Chromium is Debian's package (``.ci/run`` installs it); where it is missing the test is skipped,
unless ``MARKET_SIM_REQUIRE_BROWSER`` is set (CI sets it), where a missing browser fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTEFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: Flags for a closed network: without the background-networking ones Chromium keeps trying
#: Google's hosts, which this machine refuses.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

if CHROMIUM is None and os.environ.get("MARKET_SIM_REQUIRE_BROWSER"):
    pytest.fail("MARKET_SIM_REQUIRE_BROWSER is set but no chromium is on PATH", pytrace=False)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt chromium)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = _free_port()
    command = [sys.executable, "-m", "market_sim.cli", "serve", "configs/quickstart.yaml"]
    process = subprocess.Popen(
        [*command, "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            assert process.poll() is None, "market-sim serve exited"
            time.sleep(0.5)
    yield url
    os.killpg(process.pid, 15)
    process.wait(timeout=30)


def _figure_sources(page) -> list[str]:
    return page.locator("img").evaluate_all("imgs => imgs.map(i => i.src)")


def test_page_loads_steps_and_switches_model(server):
    sync_api = pytest.importorskip("playwright.sync_api")
    ARTEFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(server)
        page.get_by_text("tso_managed: no period run yet").wait_for(timeout=90_000)
        before = _figure_sources(page)
        assert len(before) == 3  # the two DSO networks and the KPI charts

        page.get_by_role("button", name="Step").click()
        page.get_by_text("tso_managed: period 0 (day 1, 00:00)").wait_for(timeout=90_000)
        page.get_by_text("Step: 1").wait_for(timeout=30_000)
        page.wait_for_function(
            "before => [...document.images].map(i => i.src).join() !== before", arg=",".join(before)
        )
        after = _figure_sources(page)
        assert after[-1] != before[-1], "the KPI chart did not change after a step"
        assert page.get_by_text("Messages of the period (0)").count() == 0
        page.screenshot(path=str(ARTEFACTS / "serve-after-step.png"), full_page=True)

        page.get_by_text("tso_managed", exact=True).first.click()  # the model selector
        page.get_by_role("option", name="dso_managed", exact=True).click()
        page.get_by_role("button", name="Reset").click()
        page.get_by_text("dso_managed: no period run yet").wait_for(timeout=90_000)
        page.get_by_role("button", name="Step").click()
        page.get_by_text("dso_managed: period 0 (day 1, 00:00)").wait_for(timeout=90_000)
        page.screenshot(path=str(ARTEFACTS / "serve-dso-managed.png"), full_page=True)
        browser.close()
