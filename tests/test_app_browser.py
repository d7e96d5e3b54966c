"""The FiftyOne App in a real browser: start the App server on a free localhost port, open it
in headless Chromium (Debian's ``chromium``, driven by Playwright), check that an image
dataset's grid draws every sample and that a video dataset opens with its frame labels and a
timeline to scrub; screenshots are kept under ``test-artifacts/``.

Setup (idempotent): ``scripts/install-browser.sh``.
"""
from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from yeay_nb import explore, fo_db

sys.path.insert(0, str(Path(__file__).resolve().parent))  # also under --import-mode=importlib
from helpers_browser import ARTIFACTS, CHROMIUM_FLAGS, chromium_path, port_open  # noqa: E402
from test_explore import fo_database, make_coco  # noqa: E402,F401  (the session's database fixture)

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
GRID_LOADED = "n => document.querySelectorAll('[data-cy=looker] canvas[canvas-loaded=true]').length >= n"


@pytest.fixture(scope="module")
def app(fo_database, tmp_path_factory):
    """The App server on a free port, serving an image dataset; yields (port, dataset).

    On teardown the server must be gone (no stray process holding the port).
    """
    chromium = chromium_path()
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (run scripts/install-browser.sh)")
    path, _ = make_coco(tmp_path_factory.mktemp("app-data"))
    ds, report = explore.import_coco(path, "t-browser", overwrite=True)
    assert report.num_samples == 5
    port = fo_db.free_port()
    session = explore.launch_app(ds, port=port, address="127.0.0.1")
    ARTIFACTS.mkdir(exist_ok=True)
    yield port, ds, chromium
    session.close()
    ds.delete()
    deadline = time.monotonic() + 15
    while port_open(port) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert not port_open(port), "the App server outlived session.close()"


@pytest.fixture
def page(app, tmp_path):
    from playwright.sync_api import sync_playwright

    _, _, chromium = app
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(str(tmp_path / "chromium-profile"), executable_path=chromium,
                                                    headless=True, args=CHROMIUM_FLAGS,
                                                    viewport={"width": 1280, "height": 800})
        try:
            yield ctx.new_page()
        finally:
            ctx.close()


def test_app_grid_renders_image_samples(app, page):
    port, ds, _ = app
    n = len(ds)
    shot = ARTIFACTS / "fiftyone-app-grid.png"
    page.goto(f"http://127.0.0.1:{port}/datasets/{ds.name}", timeout=90_000)
    # every sample's thumbnail canvas has drawn its image (the grid's own "loaded" flag)
    page.wait_for_function(GRID_LOADED, arg=n, timeout=90_000)
    _dismiss_popup(page)
    time.sleep(1.0)  # let the last thumbnails paint their boxes before the screenshot
    page.screenshot(path=str(shot))
    thumbs = page.locator("[data-cy=looker] canvas")
    assert thumbs.count() == n and f"{n} samples" in page.inner_text("body")
    first = cv2.imdecode(np.frombuffer(thumbs.first.screenshot(), np.uint8), cv2.IMREAD_COLOR)
    # the thumbnail shows the image itself: the blue rectangle every synthetic image has (its
    # "pants" box has no mask, so no overlay tints it; the "shirt" under its mask looks teal)
    b, g, r = (first[..., i].astype(int) for i in range(3))
    blue = (b > 150) & (g < 90) & (r < 90)
    assert blue.mean() > 0.03, f"no image content in the first thumbnail (see {shot})"
    assert shot.stat().st_size > 10_000


def _dismiss_popup(page) -> None:
    """Close FiftyOne's promotional pop-up: it covers part of the grid and intercepts clicks."""
    dismiss = page.get_by_text("Dismiss")
    if dismiss.count():
        dismiss.first.click()


def _contract_json_from_truth(video: Path, classes: list[str]) -> dict:
    """A ``yeay-nb infer``-style output for a synthetic video, as a perfect model would write it."""
    truth = json.loads(video.with_name(video.stem + ".truth.json").read_text())
    items, masks, indices = [], [], []
    for f in truth["frames"]:
        for name, boxes in f["boxes"].items():
            if name in classes:
                items += [[f["frame_index"], classes.index(name), 0.9, b] for b in boxes]
        masks.append([f.get("person_masks", [])])
        indices.append(f["frame_index"])
    return {"video_id": truth["video_id"], "video_loc": video.name, "video_dim": [truth["width"], truth["height"]],
            "video_fps": truth["fps"], "video_fcnt": truth["num_frames"], "classesInDS": classes,
            "items": items, "coco_rle_masks": masks, "frame_indices": indices}


def test_app_opens_video_with_frame_labels(app, page, tmp_path):
    synth = pytest.importorskip("yeay_nb.synth.videos", reason="yeay_nb.synth.videos is not available")
    port, _, _ = app
    (video,) = synth.make_videos(tmp_path, num_videos=1, num_frames=6, size=(128, 96), fps=6)
    classes = ["__background__", "dress shirt", "jeans", "footwear", "person"]
    doc = _contract_json_from_truth(video, classes)
    out = tmp_path / f"{doc['video_id']}.json"
    out.write_text(json.dumps(doc))
    vds, report = explore.import_video_outputs([out], "t-browser-videos", overwrite=True)
    try:
        assert report.num_videos == 1 and report.num_detections == len(doc["items"]) > 0
        if synth.pick_encoder() == "libx264":
            assert report.not_browser_playable == []
        page.goto(f"http://127.0.0.1:{port}/datasets/{vds.name}", timeout=90_000)
        page.wait_for_function(GRID_LOADED, arg=1, timeout=90_000)
        _dismiss_popup(page)
        page.locator("[data-cy=looker]").first.click()
        # the sample modal: a timeline "0:00.00 / 0:01.00" to scrub, and the frame label fields
        page.wait_for_function(r"() => /\d:\d\d\.\d\d \/ \d:\d\d\.\d\d/.test(document.body.innerText)",
                               timeout=60_000)
        time.sleep(2.0)
        page.screenshot(path=str(ARTIFACTS / "fiftyone-app-video.png"))
        text = page.inner_text("body")
        assert "frames.detections" in text and "frames.masks" in text
        assert re.search(r"frames\.detections\s*\n\s*%d\b" % report.num_detections, text), text[-2000:]
    finally:
        vds.delete()
