"""The video explorer in a real JupyterLab, in headless Chromium (Playwright).

Starts JupyterLab on a free localhost port with a token, opens a notebook that builds the
explorer on a small synthetic video + contract JSON (the same code notebook 04's explorer
cell runs), runs all cells, then: the widgets render (not their text form), moving the frame
slider and the score-threshold slider changes the displayed frame, clicking the timeline
jumps to a frame (ipyevents), and no cell shows an error. Screenshots go to
``test-artifacts/``. JupyterLab and its kernel are stopped at the end (checked).

Setup (idempotent): ``scripts/install-browser.sh`` (Debian ``chromium`` + the playwright
Python package; never ``playwright install``).
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # also under --import-mode=importlib
from helpers_browser import ARTIFACTS, CHROMIUM_FLAGS, chromium_path, port_open  # noqa: E402
from test_widgets import make_doc, make_video  # noqa: E402

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kernel_pids(runtime_dir: Path) -> list[int]:
    """Processes whose command line names a connection file in our runtime dir (our kernels)."""
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(runtime_dir) in cmd and "kernel" in cmd:
                pids.append(int(p.name))
    return pids


def _notebook(video: Path, json_path: Path) -> dict:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell(f"import sys\nsys.path.insert(0, {str(ROOT)!r})\n"
                                  "from yeay_nb.widgets import VideoExplorer, has_frontend"),
        # what notebook 04's explorer cell does (from an existing output, no model needed)
        nbformat.v4.new_code_cell(f"explorer = VideoExplorer.from_json({str(json_path)!r}, video_path={str(video)!r})\n"
                                  "print('FRONTEND', has_frontend())\n"
                                  "if has_frontend():\n    display(explorer.widget)"),
    ]
    return nb


def _prepare_notebook_04(root: Path, doc: dict) -> None:
    """notebooks/04_infer.ipynb as a user would run it: its ``params_file`` pointed at a params
    file whose input is a video folder that already has its result JSON (so ``run_inference``
    skips it: no model work), with an untrained small checkpoint as the clothing model."""
    import nbformat
    import torch

    from yeay_nb.models import build_model, save_checkpoint
    from test_widgets import CLASSES

    videos = root / "videos"
    make_video(videos / "clip4" / "clip4.mp4", 320, 192, 12)
    out = root / "out04"
    out.mkdir()
    clip4 = dict(doc, video_id="clip4", video_loc=str(videos / "clip4" / "clip4.mp4"))
    (out / "clip4.json").write_text(json.dumps(clip4))
    torch.manual_seed(0)
    cfg = {"arch": "maskrcnn", "backbone": "mobilenet_v3", "norm": "frozen_bn", "num_classes": len(CLASSES),
           "test_min_size": 192, "test_max_size": 320}
    save_checkpoint(root / "m.pt", model=build_model(cfg), classes=CLASSES, model_config=cfg)
    (root / "p04.yaml").write_text(f"work_dir: {root / 'work'}\ninfer:\n  input: {videos}\n  output_dir: {out}\n"
                                   f"  clothing_model: {root / 'm.pt'}\n  person_model: same\n  create_vis: false\n")
    nb = nbformat.read(ROOT / "notebooks" / "04_infer.ipynb", as_version=4)
    (params_cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    params_cell.source = f"params_file = {str(root / 'p04.yaml')!r}\noverrides = {{}}"
    nbformat.write(nb, root / "04_infer.ipynb")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab serving a notebook dir; yields (base_url, token, root, doc). Stopped on teardown."""
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (run scripts/install-browser.sh)")
    chromium = chromium_path()
    import nbformat

    root = tmp_path_factory.mktemp("lab")
    video = make_video(root / "clip1" / "clip1.mp4", 320, 192, 12)
    doc = make_doc(video, 320, 192, 12)
    json_path = root / "clip1.json"
    json_path.write_text(json.dumps(doc))
    nbformat.write(_notebook(video, json_path), root / "explorer.ipynb")
    _prepare_notebook_04(root, doc)
    runtime = root / "runtime"
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(runtime), JUPYTERLAB_SETTINGS_DIR=str(root / "lab-settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(root / "lab-workspaces"))
    env.pop("YEAY_NB_INTERACTIVE", None)
    cmd = [str(Path(sys.executable).with_name("jupyter")), "lab", "--no-browser", f"--port={port}",
           "--ServerApp.ip=127.0.0.1", f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}",
           "--ServerApp.port_retries=0", "--LabApp.news_url=", "--LabApp.check_for_updates_class="
           "jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(root / "jupyterlab.log", "wb")
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not start: {(root / 'jupyterlab.log').read_text()[-2000:]}")
            time.sleep(0.5)
        ARTIFACTS.mkdir(exist_ok=True)
        yield base, token, root, doc, chromium
    finally:
        proc.send_signal(signal.SIGINT)  # the server's clean shutdown: it stops its kernels too
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # a second SIGINT skips the confirmation prompt
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # our own session only
                proc.wait(timeout=10)
        log.close()
        deadline = time.monotonic() + 15
        while (port_open(port) or _kernel_pids(runtime)) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert not port_open(port), "JupyterLab outlived its shutdown"
        assert not _kernel_pids(runtime), "a kernel outlived JupyterLab"


def _open_and_run_all(page, base: str, token: str, name: str) -> None:
    # a workspace of its own, reset: no tab restored from an earlier test takes the "Run" command
    ws = name.split(".")[0].replace("_", "-")
    page.goto(f"{base}/lab/workspaces/{ws}/tree/{name}?token={token}&reset", timeout=120_000)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
    # wait for the kernel before running (the status bar says Idle)
    page.wait_for_function("() => /Idle/.test(document.body.innerText)", timeout=120_000)
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    # attached, not visible: JupyterLab 4 hides cells scrolled out of its window
    page.locator("img.yeay-frame").wait_for(state="attached", timeout=90_000)
    page.wait_for_function("() => { const i = document.querySelector('img.yeay-frame');"
                           " return i && i.naturalWidth > 0; }", timeout=60_000)
    page.locator("img.yeay-frame").scroll_into_view_if_needed(timeout=30_000)
    page.wait_for_function("() => /frame\\s*0\\b/.test(document.querySelector('.yeay-info').innerText)",
                           timeout=30_000)
    time.sleep(0.5)


def _move_slider(page, css: str, presses: int) -> None:
    handle = page.locator(f"{css} .noUi-handle")
    handle.click()
    for _ in range(presses):
        handle.press("ArrowRight")


def _img_pixels(locator) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(locator.screenshot(), np.uint8), cv2.IMREAD_COLOR)


def _no_errors(page, stderr_ok: bool = False) -> None:
    text = page.inner_text(".jp-Notebook")
    for bad in ("Traceback", "Error displaying widget", "Error:", "Failed to load model class"):
        assert bad not in text, f"the notebook shows {bad!r}: {text[-1500:]}"
    assert "VBox(children=" not in text, "widgets show their text form: is jupyterlab_widgets installed?"
    if not stderr_ok:  # notebook 04 may print library warnings; tracebacks are caught above
        assert page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").count() == 0


def test_explorer_in_jupyterlab(lab, tmp_path):
    from playwright.sync_api import sync_playwright

    from yeay_nb.widgets import Timeline

    base, token, _root, doc, chromium = lab
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(str(tmp_path / "chromium-profile"), executable_path=chromium,
                                                    headless=True, args=CHROMIUM_FLAGS,
                                                    viewport={"width": 1400, "height": 1000})
        try:
            page = ctx.new_page()
            _open_and_run_all(page, base, token, "explorer.ipynb")
            frame, info = page.locator("img.yeay-frame"), page.locator(".yeay-info")
            page.screenshot(path=str(ARTIFACTS / "jupyterlab-explorer-0-loaded.png"), full_page=True)
            assert "FRONTEND True" in page.inner_text(".jp-Notebook"), "has_frontend() is False in JupyterLab"
            _no_errors(page)
            assert page.locator("img.yeay-timeline").count() == 1
            assert page.locator(".yeay-frame-slider .noUi-handle").count() == 1, "slider not rendered"
            shot0 = _img_pixels(frame)
            src0 = frame.get_attribute("src")

            # frame slider: keyboard on the slider handle, 5 steps right
            handle = page.locator(".yeay-frame-slider .noUi-handle")
            handle.click()
            for _ in range(5):
                handle.press("ArrowRight")
            page.wait_for_function("() => /frame\\s*5\\b/.test(document.querySelector('.yeay-info').innerText)",
                                   timeout=30_000)
            page.wait_for_function("s => document.querySelector('img.yeay-frame').src !== s", arg=src0,
                                   timeout=30_000)
            time.sleep(0.3)
            shot1 = _img_pixels(frame)
            page.screenshot(path=str(ARTIFACTS / "jupyterlab-explorer-1-frame5.png"), full_page=True)
            assert shot1.shape == shot0.shape and np.abs(shot1.astype(int) - shot0.astype(int)).mean() > 1.0, \
                "the displayed frame did not change after moving the frame slider"

            # threshold slider: raise it until fewer boxes are shown on frame 5
            rows = [it for it in doc["items"] if it[0] == 5]
            before = info.inner_text()
            thandle = page.locator(".yeay-thresh-slider .noUi-handle")
            thandle.click()
            for _ in range(50):  # step 0.01: 0.40 -> 0.90
                thandle.press("ArrowRight")
            want = sum(it[2] >= 0.9 for it in rows)
            page.wait_for_function("n => new RegExp('\\\\b' + n + ' items shown').test("
                                   "document.querySelector('.yeay-info').innerText)", arg=want, timeout=30_000)
            time.sleep(0.3)
            shot2 = _img_pixels(frame)
            page.screenshot(path=str(ARTIFACTS / "jupyterlab-explorer-2-thresh.png"), full_page=True)
            if sum(it[2] >= 0.4 for it in rows) != want:
                assert np.abs(shot2.astype(int) - shot1.astype(int)).mean() > 0.2, \
                    f"the displayed frame did not change with the threshold ({before} -> {info.inner_text()})"

            # timeline click (ipyevents): click where frame 9 is plotted
            tl = Timeline(doc, 0.9, sorted({it[1] for it in doc["items"]}))
            timg = page.locator("img.yeay-timeline")
            box = timg.bounding_box()
            nat_w = page.evaluate("() => document.querySelector('img.yeay-timeline').naturalWidth")
            assert nat_w == tl.rgb.shape[1]
            timg.click(position={"x": tl.x_of(9) * box["width"] / nat_w, "y": box["height"] * 0.4})
            page.wait_for_function("() => /frame\\s*9\\b/.test(document.querySelector('.yeay-info').innerText)",
                                   timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "jupyterlab-explorer-3-timeline-click.png"), full_page=True)

            # play (ipywidgets.Play linked to the slider in the browser): 9 -> 10 -> 11, then it stops
            page.locator(".yeay-play button").first.click()
            page.wait_for_function("() => /frame\\s*11\\b/.test(document.querySelector('.yeay-info').innerText)",
                                   timeout=30_000)
            _no_errors(page)
        finally:
            ctx.close()


def test_notebook_04_explorer_in_jupyterlab(lab, tmp_path):
    """Notebook 04 itself, run in JupyterLab: its batch part, then the explorer cell shows the
    explorer (autoloaded on the video's existing result); both sliders change the frame."""
    from playwright.sync_api import sync_playwright

    base, token, _root, doc, chromium = lab
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(str(tmp_path / "chromium-profile"), executable_path=chromium,
                                                    headless=True, args=CHROMIUM_FLAGS,
                                                    viewport={"width": 1400, "height": 1000})
        try:
            page = ctx.new_page()
            _open_and_run_all(page, base, token, "04_infer.ipynb")
            frame = page.locator("img.yeay-frame")
            frame.scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "jupyterlab-nb04-0-explorer.png"))
            outputs = "\n".join(page.locator(".jp-OutputArea-output").all_inner_texts())
            assert "the explorer is skipped" not in outputs, "has_frontend() is False in JupyterLab"
            _no_errors(page, stderr_ok=True)
            shot0, src0 = _img_pixels(frame), frame.get_attribute("src")
            _move_slider(page, ".yeay-frame-slider", 5)
            page.wait_for_function("() => /frame\\s*5\\b/.test(document.querySelector('.yeay-info').innerText)",
                                   timeout=30_000)
            page.wait_for_function("s => document.querySelector('img.yeay-frame').src !== s", arg=src0,
                                   timeout=30_000)
            time.sleep(0.3)
            shot1 = _img_pixels(frame)
            assert np.abs(shot1.astype(int) - shot0.astype(int)).mean() > 1.0, "frame slider did not change the frame"
            rows = [it for it in doc["items"] if it[0] == 5]
            want = sum(it[2] >= 0.9 for it in rows)
            assert want != sum(it[2] >= 0.4 for it in rows), "fixture: threshold 0.4 -> 0.9 must hide a box on frame 5"
            src1 = frame.get_attribute("src")
            _move_slider(page, ".yeay-thresh-slider", 50)
            page.wait_for_function("n => new RegExp('\\\\b' + n + ' items shown').test("
                                   "document.querySelector('.yeay-info').innerText)", arg=want, timeout=30_000)
            page.wait_for_function("s => document.querySelector('img.yeay-frame').src !== s", arg=src1,
                                   timeout=30_000)
            time.sleep(0.3)
            shot2 = _img_pixels(frame)
            page.screenshot(path=str(ARTIFACTS / "jupyterlab-nb04-1-sliders.png"))
            assert np.abs(shot2.astype(int) - shot1.astype(int)).mean() > 0.2, "threshold did not change the frame"
            _no_errors(page, stderr_ok=True)
        finally:
            ctx.close()
