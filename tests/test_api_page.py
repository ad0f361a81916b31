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

from tests.api_models import publish, weekly_response
from tests.api_server import api_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WINDOW = (1000, 900)
DEMAND_BLUE = (0x1F, 0x77, 0xB4)
REVENUE_RED = (0xD6, 0x27, 0x28)

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed: run `make services`")


def chromium(tmp_path: Path, *args: str, window: tuple[int, int] = WINDOW) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--no-first-run", f"--user-data-dir={profile}", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
               f"--window-size={window[0]},{window[1]}", "--virtual-time-budget=10000", *args]
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


@pytest.mark.parametrize("width", [1280, 600])
def test_the_weekly_page_draws_the_band_explains_it_and_fits_the_window(tmp_path, width):
    registry, remote = tmp_path / "registry", tmp_path / "remote"
    publish(registry, remote, "85123A", weekly=weekly_response(2.75, (2.5, 2.75)))
    with api_server(registry, remote) as base:
        dom = chromium(tmp_path, "--dump-dom", f"{base}/", window=(width, 900)).stdout
        screenshot = tmp_path / f"page-{width}.png"
        chromium(tmp_path, f"--screenshot={screenshot}", f"{base}/", window=(width, 900))
    assert 'class="demand-band"' in dom and "units a week" in dom and "revenue a week" in dom
    assert "move the list price to" in dom and '<ol class="reasons">' in dom and "guardrail:" in dom
    assert "beyond the list prices the product was sold at" in dom  # the legend says what the shading is
    assert "insufficient_price_variation" not in re.sub(r'data-flag="[^"]*"', "", dom)  # no raw snake_case
    image = np.asarray(Image.open(screenshot).convert("RGB")).astype(int)
    assert image.shape[1] == width
    # the chart scales to the window: its right-hand (revenue) axis labels are inside the picture
    red = np.argwhere((np.abs(image - np.array(REVENUE_RED)).sum(axis=2) < 30))
    assert len(red) > 300 and red[:, 1].max() < width - 2
    shutil.copy(screenshot, Path(tmp_path.parent) / f"price-api-weekly-page-{width}.png")
