"""The video explorer's callbacks, driven from Python (no browser): frame cache, renderer,
frame / threshold / class-filter redraws, timeline clicks, gallery jumps, export, run.

The video is a small OpenCV-written mp4 whose frames differ; the result JSON is built per
the output contract (validated with :mod:`yeay_nb.contract`), so no model is needed.
``make_video`` / ``make_doc`` are reused by the browser test and the redraw benchmark.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

CLASSES = ["__background__", "shirt", "jeans", "dress", "person"]


def make_video(path: Path, width: int = 160, height: int = 96, frames: int = 12, fps: float = 10.0) -> Path:
    """An mp4 with a bright square moving right and the frame number drawn: every frame differs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    assert out.isOpened(), "OpenCV cannot write mp4v here"
    for i in range(frames):
        img = np.full((height, width, 3), 40, np.uint8)
        img[:, :, 1] = np.linspace(30, 120, width, dtype=np.uint8)[None, :]
        x = int(i * (width - 20) / max(1, frames - 1))
        cv2.rectangle(img, (x, height // 3), (x + 18, height // 3 + 18), (255, 255, 255), -1)
        cv2.putText(img, str(i), (4, height - 6), cv2.FONT_HERSHEY_SIMPLEX, height / 200, (0, 0, 255), 2)
        out.write(img)
    out.release()
    return path


def make_doc(video: Path, width: int, height: int, frames: int, stride: int = 1, items_per_frame: int = 3,
             masks_every: int = 2, seed: int = 0) -> dict:
    """A contract-shaped result: items with spread-out scores, person masks on some frames."""
    from pycocotools import mask as mask_utils

    from yeay_nb.contract import SCHEMA_VERSION

    rng = np.random.default_rng(seed)
    fi = list(range(0, frames, stride))
    items = []
    for f in fi:
        for k in range(items_per_frame):
            c = 1 + (f + k) % 3
            bw, bh = width * rng.uniform(0.15, 0.4), height * rng.uniform(0.15, 0.4)
            x1, y1 = rng.uniform(0, width - bw), rng.uniform(0, height - bh)
            score = round(float(0.1 + 0.85 * ((f * 7 + k * 13) % 10) / 9), 4)
            items.append([f, c, score, [round(x1, 2), round(y1, 2), round(x1 + bw, 2), round(y1 + bh, 2)]])
    masks = []
    for n, f in enumerate(fi):
        group = []
        if n % masks_every == 0:
            m = np.zeros((height, width), np.uint8, order="F")
            m[height // 4: 3 * height // 4, width // 3: width // 3 + width // 4] = 1
            rle = mask_utils.encode(np.asfortranarray(m))
            group.append({"size": [height, width], "counts": rle["counts"].decode()})
        masks.append([group])
    blur = [[[round(float(v), 4)]] for v in np.linspace(0.2, 1.0, len(fi))]
    best_frames, best_boxes = [-1] * len(CLASSES), [None] * len(CLASSES)
    for c in range(1, 4):
        cand = [it for it in items if it[1] == c]
        if cand:
            top = max(cand, key=lambda it: it[2])
            best_frames[c], best_boxes[c] = top[0], top[3]
    sums: dict[int, float] = {}
    for f, _c, s, _b in items:
        sums[f] = sums.get(f, 0.0) + s
    top_n = sorted(sorted(sums, key=lambda f: -sums[f])[:5])
    return {
        "schema_version": SCHEMA_VERSION, "video_id": video.stem, "video_loc": str(video),
        "video_dim": [width, height], "video_fps": 10.0, "video_fcnt": frames, "video_rotation": 0,
        "classifiedAt": "2026-01-01T00:00:00Z", "classesInDS": CLASSES, "frame_indices": fi, "items": items,
        "blur_scores": blur, "top_N_frames": top_n, "top_frames_each_class": [best_frames, best_boxes],
        "mask_classes": ["person"], "coco_rle_masks": masks, "models": {"clothing": {"source": "synthetic"}},
    }


@pytest.fixture
def result(tmp_path):
    video = make_video(tmp_path / "clip1" / "clip1.mp4", 160, 96, 12)
    doc = make_doc(video, 160, 96, 12)
    json_path = tmp_path / "out" / "clip1.json"
    json_path.parent.mkdir()
    json_path.write_text(json.dumps(doc))
    return video, doc, json_path


@pytest.fixture
def explorer(result):
    from yeay_nb.widgets import VideoExplorer

    video, _doc, json_path = result
    return VideoExplorer.from_json(json_path, video_path=video)


def _jpeg_rgb(data: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None, "not a decodable JPEG"
    return img


def test_contract_fixture_is_valid(result):
    from yeay_nb.contract import validate_output

    validate_output(result[1], file="fixture")


# --------------------------------------------------------------------------- frame cache
def test_frame_cache_decodes_once_and_matches_the_video(result):
    from yeay_nb.frames import FrameCache
    from yeay_nb.video import read_frames

    video, _, _ = result
    cache = FrameCache(video, max_side=None)
    truth = read_frames(video, [0, 5, 11], rotate=0)
    for i in (5, 0, 11, 5, 0):
        assert np.abs(cache.get(i).astype(int) - truth[i].astype(int)).mean() < 4  # JPEG-close
    # frame 5 and 11 came from one forward pass; 0 came after a restart (0 < position)... then stored
    decodes = cache.decodes
    for i in range(12):
        cache.get(i)
    assert cache.decodes <= decodes + 12 and all(i in cache for i in range(12))
    before = cache.decodes
    cache.get(3), cache.get(7)
    assert cache.decodes == before, "a stored frame was decoded again"
    with pytest.raises(Exception, match="past the end|outside"):
        cache.get(40)


def test_frame_cache_downscales_and_bounds_memory(tmp_path):
    from yeay_nb.frames import FrameCache

    video = make_video(tmp_path / "v" / "big.mp4", 320, 192, 6)
    cache = FrameCache(video, max_side=160, max_bytes=1)  # room for one JPEG only
    assert (cache.width, cache.height) == (160, 96) and cache.scale == pytest.approx(0.5)
    assert cache.preload() == 1
    assert cache.get(4).shape == (96, 160, 3)


def test_frame_cache_rejects_a_missing_video(tmp_path):
    from yeay_nb.errors import VideoError
    from yeay_nb.frames import FrameCache

    with pytest.raises(VideoError, match="nope.mp4"):
        FrameCache(tmp_path / "nope.mp4")


# --------------------------------------------------------------------------- renderer
def test_renderer_draws_items_above_threshold_of_selected_classes(result):
    from yeay_nb.frames import FrameCache, FrameRenderer

    video, doc, _ = result
    r = FrameRenderer(doc, FrameCache(video, max_side=None))
    f = 3
    rows = [it for it in doc["items"] if it[0] == f]
    for thresh in (0.0, 0.5, 0.95):
        _, drawn = r.render(f, thresh, None, False)
        assert sorted(map(tuple, [(it[1], it[2]) for it in drawn.items])) == \
            sorted((it[1], it[2]) for it in rows if it[2] >= thresh)
    _, drawn = r.render(f, 0.0, {2}, False)
    assert drawn.items and {it[1] for it in drawn.items} == {2}
    plain, _ = r.render(f, 1.1, None, False)
    boxed, _ = r.render(f, 0.0, None, False)
    assert np.any(plain != boxed), "boxes drew nothing"


def test_renderer_masks_decoded_lazily_once_and_tinted(result):
    from yeay_nb.frames import FrameCache, FrameRenderer

    video, doc, _ = result
    r = FrameRenderer(doc, FrameCache(video, max_side=None))
    assert r.mask_decodes == 0
    off, d_off = r.render(0, 1.1, None, show_masks=False)
    on, d_on = r.render(0, 1.1, None, show_masks=True)
    assert d_off.masks == 0 and d_on.masks == 1 and r.mask_decodes == 1
    h, w = 96, 160
    inside = (slice(h // 4 + 2, 3 * h // 4 - 2), slice(w // 3 + 2, w // 3 + w // 4 - 2))
    assert np.abs(on[inside].astype(int) - off[inside].astype(int)).mean() > 20
    assert np.array_equal(on[:h // 4 - 1], off[:h // 4 - 1]), "pixels outside the mask changed"
    r.render(0, 1.1, None, True)
    assert r.mask_decodes == 1, "the frame's RLE masks were decoded twice"
    _, d1 = r.render(1, 1.1, None, True)  # frame 1 has no mask in the fixture
    assert d1.masks == 0


def test_renderer_scales_boxes_to_display_size(tmp_path):
    from yeay_nb.frames import FrameCache, FrameRenderer

    video = make_video(tmp_path / "v" / "v.mp4", 320, 192, 3)
    doc = make_doc(video, 320, 192, 3, items_per_frame=0)
    doc["items"] = [[1, 1, 0.9, [160.0, 96.0, 300.0, 180.0]]]
    r = FrameRenderer(doc, FrameCache(video, max_side=160))
    plain, _ = r.render(1, 1.1, None, False)
    boxed, drawn = r.render(1, 0.5, None, False)
    assert len(drawn.items) == 1
    ys, xs = np.nonzero(np.any(plain != boxed, axis=2))
    # the box's right/bottom edges at half scale: x=150, y=90 (within the line thickness)
    assert abs(xs.max() - 150) <= 2 and abs(ys.max() - 90) <= 2 and xs.min() >= 78


# --------------------------------------------------------------------------- explorer
def test_explorer_loads_and_draws_first_frame(explorer, result):
    _, doc, _ = result
    assert explorer.frame_image.value and explorer.timeline_image.value
    assert explorer.last_drawn.frame_index == 0
    assert explorer.frame_slider.min == 0 and explorer.frame_slider.max == 11
    assert set(explorer.class_filter.value) == {it[1] for it in doc["items"]}
    assert explorer.play.max == 11
    assert "clip1" in explorer.status.value


def test_frame_slider_redraws_another_frame(explorer):
    before = explorer.frame_image.value
    explorer.frame_slider.value = 7
    assert explorer.last_drawn.frame_index == 7
    assert explorer.frame_image.value != before
    assert "frame <b>7</b>" in explorer.info.value


def test_threshold_and_class_filter_redraw_without_inference(explorer, result, monkeypatch):
    import yeay_nb.infer

    monkeypatch.setattr(yeay_nb.infer, "run_inference", lambda *a, **k: pytest.fail("inference ran"))
    _, doc, _ = result
    explorer.frame_slider.value = 4
    rows = [it for it in doc["items"] if it[0] == 4]
    decodes = explorer.cache.decodes
    for thresh in (0.0, 0.45, 0.9):
        explorer.thresh_slider.value = thresh
        assert len(explorer.last_drawn.items) == sum(it[2] >= thresh for it in rows)
    explorer.thresh_slider.value = 0.0
    img_all = explorer.frame_image.value
    keep = rows[0][1]
    explorer.class_filter.value = (keep,)
    assert {it[1] for it in explorer.last_drawn.items} == {keep}
    assert len(explorer.last_drawn.items) == sum(it[1] == keep for it in rows)
    assert explorer.frame_image.value != img_all
    explorer.class_filter.value = ()
    assert explorer.last_drawn.items == []
    assert explorer.cache.decodes == decodes, "a filter change decoded video again"


def test_mask_toggle(explorer):
    explorer.frame_slider.value = 2  # a frame with a mask
    with_masks = explorer.frame_image.value
    assert explorer.last_drawn.masks == 1
    explorer.mask_box.value = False
    assert explorer.last_drawn.masks == 0 and explorer.frame_image.value != with_masks


def test_timeline_click_maps_x_to_frame(explorer):
    tl = explorer.timeline
    for f in (0, 5, 11):
        assert explorer.timeline_click(tl.x_of(f) + 0.3) == f
        assert explorer.frame_slider.value == f
    # halfway between frames 5 and 6 snaps to one of them
    assert explorer.timeline_click((tl.x_of(5) + tl.x_of(6)) / 2) in (5, 6)
    # a click in the left margin (labels) does nothing
    explorer.frame_slider.value = 3
    assert explorer.timeline_click(1.0) is None and explorer.frame_slider.value == 3
    # the ipyevents path: dataX is in image pixels
    explorer._on_timeline_event({"type": "click", "dataX": tl.x_of(9), "dataY": 10})
    assert explorer.frame_slider.value == 9


def test_timeline_cursor_moves_with_the_frame(explorer):
    tl = explorer.timeline
    a, b = tl.image(2), tl.image(9)
    diff_cols = np.nonzero(np.any(a != b, axis=(0, 2)))[0]
    assert diff_cols.size and abs(diff_cols.min() - tl.x_of(2)) < 3 and abs(diff_cols.max() - tl.x_of(9)) < 3
    explorer.frame_slider.value = 9
    png = cv2.imdecode(np.frombuffer(explorer.timeline_image.value, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    assert np.array_equal(png, b)


def test_gallery_click_jumps(explorer, result):
    _, doc, _ = result
    best_frames = [f for f in doc["top_frames_each_class"][0] if f >= 0]
    assert len(explorer.gallery_buttons) == len(doc["top_N_frames"]) + len(best_frames)
    for b in explorer.gallery_buttons[::-1]:
        b.click()
        assert explorer.frame_slider.value == b.frame_index == explorer.last_drawn.frame_index
    assert [b.frame_index for b in explorer.gallery_buttons[:len(doc["top_N_frames"])]] == doc["top_N_frames"]


def test_export_writes_json_and_create_vis_pictures(explorer, tmp_path, result):
    from yeay_nb.contract import validate_file

    explorer.export_text.value = str(tmp_path / "export")
    paths = explorer.export()
    doc = validate_file(paths["json"])
    assert doc["items"] == result[1]["items"]
    vid_dir = tmp_path / "export" / "clip1"
    names = {p.name for p in vid_dir.iterdir()}
    assert "timeline.png" in names and "contact_sheet.jpg" in names
    assert sum(n.startswith("top") for n in names) == len(result[1]["top_N_frames"])
    assert {n for n in names if n.startswith("crop_")} == {"crop_shirt.jpg", "crop_jeans.jpg", "crop_dress.jpg"}
    assert "exported" in explorer.status.value


def test_stride_slider_steps_over_processed_frames(tmp_path):
    from yeay_nb.widgets import VideoExplorer

    video = make_video(tmp_path / "s" / "s.mp4", 160, 96, 12)
    doc = make_doc(video, 160, 96, 12, stride=3)
    ex = VideoExplorer(output_dir=tmp_path)
    ex.load_doc(doc, video)
    assert (ex.frame_slider.min, ex.frame_slider.max, ex.frame_slider.step) == (0, 9, 3)
    assert ex.timeline_click(ex.timeline.x_of(7)) == 6  # snaps to a processed frame


def test_load_button_reads_json_and_reports_missing(tmp_path, result):
    from yeay_nb.widgets import VideoExplorer

    video, _doc, json_path = result
    ex = VideoExplorer(video.parent.parent, output_dir=json_path.parent)
    assert "clip1" in ex.video_picker.options
    ex.load_button.click()
    assert ex.doc is not None and ex.doc["video_id"] == "clip1" and ex.frame_image.value
    ex2 = VideoExplorer(video.parent.parent, output_dir=tmp_path / "empty")
    ex2.load_button.click()  # a user error goes to the status line, not a traceback
    assert ex2.doc is None and "no inference output" in ex2.status.value and "clip1.json" in ex2.status.value


def test_load_doc_with_missing_video_names_it(tmp_path, result):
    from yeay_nb.errors import VideoError
    from yeay_nb.widgets import VideoExplorer

    _, doc, _ = result
    ex = VideoExplorer(output_dir=tmp_path)
    with pytest.raises(VideoError, match="gone.mp4"):
        ex.load_doc(dict(doc, video_loc=str(tmp_path / "gone.mp4")))
    with pytest.raises(VideoError, match="local copy"):
        ex.load_doc(dict(doc, video_loc="s3://bucket/v.mp4"))


def test_run_button_calls_run_inference_then_loads(tmp_path, result, monkeypatch):
    import yeay_nb.infer
    from yeay_nb.infer import InferSummary
    from yeay_nb.widgets import VideoExplorer

    video, doc, _ = result
    calls = []

    def fake_run(input, output_dir, clothing_model=None, person_model=None, **kw):
        calls.append((input, Path(output_dir), clothing_model, person_model, kw))
        Path(output_dir).mkdir(parents=True, exist_ok=True)  # as run_inference does
        (Path(output_dir) / "clip1.json").write_text(json.dumps(doc))
        return InferSummary(output_dir=Path(output_dir), done=["clip1"])

    monkeypatch.setattr(yeay_nb.infer, "run_inference", fake_run)
    out = tmp_path / "run-out"
    ex = VideoExplorer(video.parent.parent, output_dir=out, clothing_model="m.pt", person_model="same",
                       infer_kwargs={"stride": 2, "clothing_model": "ignored.pt"})
    ex.run_button.click()
    assert len(calls) == 1
    inp, od, cm, pm, kw = calls[0]
    assert inp == [str(video)] and od == out and cm == "m.pt" and pm == "same"
    assert kw["stride"] == 2 and kw["clobber"] is False
    assert ex.doc["video_id"] == "clip1" and ex.frame_image.value


def test_run_without_models_is_a_clear_error(result):
    from yeay_nb.widgets import VideoExplorer

    video, _, _ = result
    ex = VideoExplorer(video.parent.parent)
    ex.run_button.click()
    assert "model" in ex.status.value and ex.doc is None


def test_has_frontend(monkeypatch):
    from yeay_nb.widgets import has_frontend

    monkeypatch.setenv("YEAY_NB_INTERACTIVE", "1")
    assert has_frontend() is True
    monkeypatch.setenv("YEAY_NB_INTERACTIVE", "0")
    assert has_frontend() is False
    monkeypatch.delenv("YEAY_NB_INTERACTIVE")
    monkeypatch.setenv("JPY_SESSION_NAME", "x.ipynb")
    assert has_frontend() is False  # pytest is not a kernel, whatever the environment says


def test_has_frontend_false_under_papermill(tmp_path):
    """A papermill run (nbclient kernel, no server session) must not show the explorer, even
    when started from inside a JupyterLab kernel (it inherits JPY_SESSION_NAME)."""
    import subprocess
    import sys

    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("papermill")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import os\nfrom yeay_nb.widgets import has_frontend\n"
                                          "print('SESSION', os.environ.get('JPY_SESSION_NAME'))\n"
                                          "print('FRONTEND', has_frontend())")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    src, dst = tmp_path / "in.ipynb", tmp_path / "out.ipynb"
    nbformat.write(nb, src)
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "YEAY_NB_INTERACTIVE"}
    env["JPY_SESSION_NAME"] = "/somewhere/04_infer.ipynb"  # as in a JupyterLab kernel's environment
    code = ("import papermill, sys; papermill.execute_notebook(sys.argv[1], sys.argv[2], kernel_name='python3', "
            "progress_bar=False)")
    subprocess.run([sys.executable, "-c", code, str(src), str(dst)], env=env, cwd=root, check=True, timeout=120)
    text = "".join(o.get("text", "") for o in nbformat.read(dst, 4).cells[0].outputs)
    assert "SESSION /somewhere/04_infer.ipynb" in text, text  # the variable did reach the kernel
    assert "FRONTEND False" in text, text


def test_autoload_shows_first_video_with_a_result(result):
    from yeay_nb.widgets import VideoExplorer

    video, _doc, json_path = result
    ex = VideoExplorer(video.parent.parent, output_dir=json_path.parent, autoload=True)
    assert ex.doc is not None and ex.last_drawn.frame_index == 0
    ex2 = VideoExplorer(video.parent.parent, output_dir=json_path.parent / "none", autoload=True)
    assert ex2.doc is None and ex2.status.value == ""  # nothing to load yet is not an error


def test_redraw_benchmark_tiny_runs_and_agrees(tmp_path):
    """The benchmark's --tiny mode (CI): both paths draw the same boxes; no timing asserted."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_widget_redraw.py"
    spec = importlib.util.spec_from_file_location("bench_widget_redraw", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    res = bench.main(["--tiny", "--json", str(tmp_path / "r.json"), "--width", "270", "--height", "480"])
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["frames"] == 16 and saved["boxes_drawn"] == res["boxes_drawn"] > 0
    for key in ("fast_first_visit", "fast_revisit", "explorer_slider_move", "naive"):
        assert saved[key]["n"] == 8 and saved[key]["median_ms"] > 0


def test_bad_source_opens_with_error_in_status(tmp_path):
    from yeay_nb.widgets import VideoExplorer

    ex = VideoExplorer(tmp_path / "missing-folder", output_dir=tmp_path)
    assert ex.video_picker.options == () and "cannot list videos" in ex.status.value
    assert "missing-folder" in ex.status.value


def test_switching_videos_resets_ranges_and_filters(tmp_path, result):
    from yeay_nb.widgets import VideoExplorer

    video, doc, json_path = result
    ex = VideoExplorer.from_json(json_path, video_path=video)
    ex.frame_slider.value = 11
    other = make_video(tmp_path / "clip2" / "clip2.mp4", 128, 80, 30)
    doc2 = make_doc(other, 128, 80, 30, stride=2)
    doc2["items"] = [it for it in doc2["items"] if it[1] != 3]  # no dress in this one
    ex.load_doc(doc2, other)
    assert (ex.frame_slider.min, ex.frame_slider.max, ex.frame_slider.step) == (0, 28, 2)
    assert ex.last_drawn.frame_index == 0 and ex.frame_image.value
    assert set(ex.class_filter.value) == {1, 2}
    ex.load_doc(doc, video)  # back to the short one: the max shrinks below the old value
    assert (ex.frame_slider.max, ex.frame_slider.step) == (11, 1) and ex.frame_slider.value == 0
