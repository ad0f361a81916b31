"""The page ``GET /`` in headless Chromium (Debian's package, ``make services``), with every
host but 127.0.0.1 unresolvable: the chart draws from the app alone, no CDN. The DOM after the
script ran has the chart with its data points; the screenshot shows the demand and revenue
curves in their colours."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.api_models import publish
from tests.api_server import api_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WINDOW = (1000, 900)
DEMAND_BLUE = (0x1F, 0x77, 0xB4)
REVENUE_RED = (0xD6, 0x27, 0x28)

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed: run `make services`")


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--no-first-run", f"--user-data-dir={profile}", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
               f"--window-size={WINDOW[0]},{WINDOW[1]}", "--virtual-time-budget=10000", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def pixels_of(png: Path, colour: tuple[int, int, int]) -> int:
    image = np.asarray(Image.open(png).convert("RGB")).astype(int)
    return int((np.abs(image - np.array(colour)).sum(axis=2) < 30).sum())


def test_the_page_draws_the_default_stockcodes_curves(tmp_path):
    registry, remote = tmp_path / "registry", tmp_path / "remote"
    record = publish(registry, remote, "85123A")
    with api_server(registry, remote) as base:
        dom = chromium(tmp_path, "--dump-dom", f"{base}/").stdout
        screenshot = tmp_path / "page.png"
        chromium(tmp_path, f"--screenshot={screenshot}", f"{base}/")
    chart = re.search(r'<svg id="chart"[^>]*>', dom).group(0)
    assert 'data-stockcode="85123A"' in chart and 'data-points="100"' in chart, chart
    assert len(re.findall(r'<circle class="point demand-point', dom)) == 100
    assert len(re.findall(r'<circle class="point revenue-point', dom)) == 100
    assert 'class="recommended"' in dom and dom.count('class="evidence-mark"') == 2
    assert record.model_version in dom and "recommended list price" in dom
    assert Image.open(screenshot).size == WINDOW
    # the curves are drawn: many pixels of each line's colour (a blank page or a failed fetch has none)
    assert pixels_of(screenshot, DEMAND_BLUE) > 500 and pixels_of(screenshot, REVENUE_RED) > 500
    shutil.copy(screenshot, Path(tmp_path.parent) / "price-api-page.png")


def test_the_page_says_so_when_no_model_is_loaded(tmp_path):
    with api_server(tmp_path / "registry", tmp_path / "remote") as base:
        dom = chromium(tmp_path, "--dump-dom", f"{base}/").stdout
    assert "No approved model is loaded yet" in dom and '<svg id="chart"' not in dom
