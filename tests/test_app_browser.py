"""The FiftyOne App in a real browser: start the App server on a free localhost port, open it
in headless Chromium (Debian's ``chromium``, driven by Playwright), wait until the sample grid
has drawn every sample, and keep a screenshot under ``test-artifacts/``.

Setup (idempotent): ``scripts/install-browser.sh``.
"""
from __future__ import annotations

import shutil
import socket
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from yeay_nb import explore, fo_db

sys.path.insert(0, str(Path(__file__).resolve().parent))  # also under --import-mode=importlib
from test_explore import fo_database, make_coco  # noqa: E402,F401  (the session's database fixture)

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.browser
def test_app_renders_samples_in_chromium(fo_database, tmp_path):
    if not CHROMIUM.is_file() and not shutil.which("chromium"):
        pytest.skip("chromium is not installed (run scripts/install-browser.sh)")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is not installed (run scripts/install-browser.sh)")
    path, _ = make_coco(tmp_path / "data")
    ds, report = explore.import_coco(path, "t-browser", overwrite=True)
    n = report.num_samples
    assert n == 5
    port = fo_db.free_port()
    session = explore.launch_app(ds, port=port, address="127.0.0.1")
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "fiftyone-app-grid.png"
    try:
        with sync_api.sync_playwright() as pw:
            ctx = pw.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM if CHROMIUM.is_file()
                                                                        else shutil.which("chromium")),
                headless=True, args=CHROMIUM_FLAGS, viewport={"width": 1280, "height": 800})
            try:
                page = ctx.new_page()
                page.goto(f"http://127.0.0.1:{port}/datasets/{ds.name}", timeout=90_000)
                # every sample's thumbnail canvas has drawn its image (the grid's own "loaded" flag)
                page.wait_for_function(
                    "n => document.querySelectorAll('[data-cy=looker] canvas[canvas-loaded=true]').length >= n",
                    arg=n, timeout=90_000)
                time.sleep(1.0)  # let the last thumbnails paint their boxes before the screenshot
                page.screenshot(path=str(shot))
                thumbs = page.locator("[data-cy=looker] canvas")
                assert thumbs.count() == n
                first = cv2.imdecode(np.frombuffer(thumbs.first.screenshot(), np.uint8), cv2.IMREAD_COLOR)
                assert ds.name in page.content()
            finally:
                ctx.close()
    finally:
        session.close()
        ds.delete()
    # the thumbnail shows the image itself: the blue rectangle every synthetic image has (its
    # "pants" box has no mask, so no overlay tints it; the "shirt" under its mask looks teal)
    b, g, r = (first[..., i].astype(int) for i in range(3))
    blue = (b > 150) & (g < 90) & (r < 90)
    assert blue.mean() > 0.03, f"no image content in the first thumbnail (see {shot})"
    assert shot.stat().st_size > 10_000
    deadline = time.monotonic() + 15
    while _port_open(port) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert not _port_open(port), "the App server outlived session.close()"
