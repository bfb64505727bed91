"""The HTML report renders in a real browser: headless Chromium takes a screenshot and the
picture is checked for size and content (not blank: many distinct colours)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "screenshot_report.py"


def _screenshot_module():
    spec = importlib.util.spec_from_file_location("screenshot_report", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("screenshot_report", module)
    spec.loader.exec_module(module)
    return module


shot = _screenshot_module()
pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        shot.find_browser() is None,
        reason="headless Chromium not installed (apt-get install chromium)",
    ),
]


@pytest.mark.slow
def test_report_renders_in_headless_chromium(synthetic_report, tmp_path):
    from PIL import Image

    html = synthetic_report.to_html(tmp_path / "report.html")
    png = shot.screenshot(html, tmp_path / "report.png", width=1280, height=4400)
    with Image.open(png) as img:
        assert img.size == (1280, 4400)
        pixels = np.asarray(img.convert("RGB"))
    colours = np.unique(pixels.reshape(-1, 3)[::7], axis=0)
    assert len(colours) > 200  # text, table, plots: far from a blank page
    # the recommendation banner (light green #e8f5e9) is drawn near the top
    top = pixels[:400].reshape(-1, 3)
    assert (np.abs(top.astype(int) - [0xE8, 0xF5, 0xE9]).sum(axis=1) < 6).sum() > 5000
    # plots (embedded PNGs, one per row) drew coloured markers and bars further down
    lower = pixels[700:].reshape(-1, 3).astype(int)
    blueish = (lower[:, 2] > 150) & (lower[:, 0] < 80)
    assert blueish.sum() > 2000
