"""End to end (issue 15): the attention tab loads trained weights from a finished run.

A tiny Cournot run with MFTT firms from the Explore page; its Attention tab and the Transformer lab then show
the trained model's attention (said to be trained, from which run and cell, axes named query/key), not the
seeded initial weights. Screenshot: ``docs/screenshots/explore-attention.png``.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.e2e.test_browser import (
    BASE_URL_PROBE,
    CHART,
    ERROR,
    _idle,
    _number,
    _open,
    _run_button,
    _select,
    _shoot,
    _timing,
)

pytestmark = pytest.mark.e2e


def test_the_attention_tab_loads_trained_weights_from_a_finished_run(page, server, console_errors):
    _open(page, server, "", "Explore a scenario")
    _run_button(page).wait_for(timeout=90_000)
    _select(page, "Scenario", "cournot")
    _idle(page)
    _select(page, "Policy", "mftt")
    _idle(page)
    _number(page, "Seeds", 1)
    _idle(page)
    _number(page, "Learning steps", 3)
    _idle(page)
    t0 = time.monotonic()
    _run_button(page).click()
    page.get_by_text("Settings of these results:").wait_for(timeout=120_000)
    ran = time.monotonic() - t0
    page.get_by_role("tab", name="Attention").click()
    panel = page.get_by_role("tabpanel", name="Attention")
    said = panel.get_by_text(re.compile(r"Trained weights from run explore-.*, cell 0"))
    said.wait_for(timeout=60_000)
    chart = panel.locator(CHART).first
    chart.wait_for(state="visible", timeout=60_000)
    chart.locator(".main-svg").first.wait_for(timeout=30_000)
    for label in ("query window step i", "key window step j", "head 1", "head 2"):
        chart.get_by_text(label).first.wait_for()
    shown = time.monotonic() - t0
    assert panel.get_by_text("Initial weights").count() == 0
    _idle(page)
    _shoot(page, "explore-attention.png", panel)
    # the Transformer lab reads the same stored weights
    page.get_by_role("link", name=re.compile("Transformer lab")).click()
    page.get_by_role("heading", name="Transformer lab", exact=True).wait_for(timeout=60_000)
    page.get_by_role("tab", name="Trained attention").click()
    lab = page.get_by_role("tabpanel", name="Trained attention")
    lab.get_by_text(re.compile(r"Trained weights from run explore-")).wait_for(timeout=60_000)
    lab.locator(CHART).first.locator(".main-svg").first.wait_for(timeout=30_000)
    _idle(page)
    _timing(
        f"trained attention: the run finished {ran:.2f} s after Run, its trained attention showed "
        f"{shown:.2f} s after Run"
    )
    assert page.locator(ERROR).count() == 0
    errors = [e for e in console_errors if not BASE_URL_PROBE.search(e)]
    assert errors == [], errors
