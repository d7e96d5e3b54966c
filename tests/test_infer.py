"""End-to-end video inference: yeay_nb.infer with a fast fake detector (plumbing) and a
tiny real Mask R-CNN checkpoint (CLI, shared videos), S3 through a local moto server,
kill-and-resume, failures, sharding, merging."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest
from pycocotools import mask as mask_utils

from yeay_nb.contract import validate_file
from yeay_nb.infer import run_inference
from yeay_nb.video import count_frames

sys.path.insert(0, str(Path(__file__).parent))
from _infer_fakes import CLASSES, fake_detector  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Three short synthetic videos (the first stored rotated 90 degrees)."""
    from yeay_nb.synth.videos import make_videos

    d = tmp_path_factory.mktemp("videos")
    paths = make_videos(d, num_videos=3, num_frames=10, size=(96, 80), seed=1, rotation=90)
    return d, paths


@pytest.fixture(scope="module")
def full_run(videos, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    s = run_inference(videos[0], out, fake_detector(), "same", create_vis=True, output_video=True,
                      batch_size=4, progress=False)
    return out, s


def _items_by_frame(doc):
    d = {}
    for f, c, s, b in doc["items"]:
        d.setdefault(f, []).append((c, s, b))
    return d


def test_the_summary_says_where_the_time_went(full_run):
    """stage_seconds: every stage of the run timed, none counted twice: together they are most of the
    wall time and never more than it."""
    _, s = full_run
    st = s.stage_seconds
    assert set(st) == {"start", "wait_frames", "wait_models", "collect", "finish", "write"}
    assert all(v >= 0 for v in st.values()) and st["wait_models"] > 0
    assert 0.5 * s.seconds < sum(st.values()) <= s.seconds
    assert f"; waited {st['wait_frames']:.1f} s for frames, {st['wait_models']:.1f} s for the models ->" in str(s)


def test_collect_time_is_counted_as_collect(videos, tmp_path, monkeypatch):
    """A slow collect (20 ms a frame, 10 frames) shows up as the collect stage, and the stages still
    cover the run."""
    from yeay_nb import infer

    real = infer._items_from
    monkeypatch.setattr(infer, "_items_from", lambda *a: time.sleep(0.02) or real(*a))
    s = run_inference(videos[1][1], tmp_path, fake_detector(), "same", batch_size=4, progress=False)
    assert s.frames == 10 and s.stage_seconds["collect"] >= 0.2
    assert 0.8 * s.seconds < sum(s.stage_seconds.values()) <= s.seconds


def test_every_output_validates_and_matches_the_video(videos, full_run):
    out, s = full_run
    assert sorted(s.done) == ["synth_000", "synth_001", "synth_002"] and not s.failed and not s.skipped
    assert s.frames == 30 and s.fps > 0
    for path, vid in zip(sorted(out.glob("*.json")), sorted(videos[1])):
        doc = validate_file(path)  # schema + cross-field rules
        assert doc["video_fcnt"] == count_frames(vid) == 10
        assert doc["frame_indices"] == list(range(10)) and len(doc["blur_scores"]) == 10
        assert max(b[0][0] for b in doc["blur_scores"]) == pytest.approx(1.0)
        assert doc["classesInDS"] == CLASSES and doc["steps"] == ["clothing", "person"]
        w, h = doc["video_dim"]
        with av.open(str(vid)) as c:
            st = c.streams.video[0]
            stored = (st.codec_context.width, st.codec_context.height)
        assert (w, h) == (stored[::-1] if doc["video_rotation"] in (90, 270) else stored)
        # items: every detection above the floor (0.05), not only above thresh; never the 0.02 one
        per_frame = _items_by_frame(doc)
        assert all(len(v) == 4 for v in per_frame.values()) and len(per_frame) == 10
        assert min(it[2] for it in doc["items"]) == pytest.approx(0.3)
        # masks: one list per mask class (person); only the 0.9 person (mask_thresh 0.5); frame-sized
        for per_class, scores in zip(doc["coco_rle_masks"], doc["mask_scores"]):
            assert len(per_class) == 1 and len(per_class[0]) == 1 and scores == [[0.9]]
            m = mask_utils.decode(per_class[0][0])
            assert m.shape == (h, w) and 0.2 < m.mean() < 0.4  # the centre box: 0.5 x 0.6 of the frame
        # best box per class is among that frame's items; 'person' best is the big 0.9 box
        frames, boxes = doc["top_frames_each_class"]
        for c, (f, b) in enumerate(zip(frames, boxes)):
            if f >= 0:
                assert (c, b) in [(cc, bb) for cc, _, bb in per_frame[f]]
        assert frames[0] == -1 and frames[3] >= 0
        assert len(doc["top_N_frames"]) == 5 and set(doc["top_N_frames"]) <= set(doc["frame_indices"])
        assert doc["models"]["clothing"]["source"] == "fake"
    rotated = json.loads((out / "synth_000.json").read_text())
    assert rotated["video_rotation"] in (90, 270) and rotated["video_dim"] == [80, 96]


def test_pictures_crops_sheet_timeline_and_video(full_run):
    out, _ = full_run
    d = out / "synth_001"
    names = {p.name for p in d.iterdir()}
    assert len([n for n in names if n.startswith("top")]) == 5
    for cls in ("shirt", "jeans", "person"):
        assert f"crop_{cls}.jpg" in names and any(n.startswith(f"best_{cls}_frame") for n in names)
    assert {"contact_sheet.jpg", "timeline.png", "annotated.mp4"} <= names
    assert not [n for n in names if n.endswith(".tmp")]
    assert count_frames(d / "annotated.mp4") == 10
    import cv2

    crop = cv2.imread(str(d / "crop_person.jpg"))
    doc = json.loads((out / "synth_001.json").read_text())
    x1, y1, x2, y2 = doc["top_frames_each_class"][1][3]
    assert abs(crop.shape[1] - (x2 - x1) * 1.1) <= 3 and abs(crop.shape[0] - (y2 - y1) * 1.1) <= 3


def test_skip_existing_unless_clobber(videos, full_run):
    out, _ = full_run
    det = fake_detector()
    s = run_inference(videos[0], out, det, "same", progress=False)
    assert sorted(s.skipped) == ["synth_000", "synth_001", "synth_002"] and det.model.calls == 0
    before = (out / "synth_002.json").stat().st_mtime_ns
    s = run_inference(videos[1][2], out, det, "same", clobber=True, progress=False)
    assert s.done == ["synth_002"] and (out / "synth_002.json").stat().st_mtime_ns != before


def test_stride_and_max_frames_keep_absolute_indices(videos, tmp_path):
    det = fake_detector()
    s = run_inference(videos[1][1], tmp_path, det, "same", stride=3, max_frames=8, batch_size=2, rotate="90",
                      progress=False)
    doc = validate_file(tmp_path / f"{s.done[0]}.json")
    assert doc["frame_indices"] == [0, 3, 6] and doc["video_fcnt"] == 8
    # the manual rotation override: stored 96x80 frames come out 80x96, masks too
    assert doc["video_rotation"] == 90 and doc["video_dim"] == [80, 96]
    assert mask_utils.decode(doc["coco_rle_masks"][0][0][0]).shape == (96, 80)
    assert sorted({it[0] for it in doc["items"]}) == [0, 3, 6]
    assert len(doc["coco_rle_masks"]) == len(doc["blur_scores"]) == 3
    assert det.model.batch_sizes == [2, 1]  # batched: 3 frames with batch_size 2


def test_merging_person_then_clothing_keeps_both(videos, tmp_path):
    vid = videos[1][1]
    s = run_inference(vid, tmp_path, fake_detector(), "same", steps=["person"], progress=False)
    doc = validate_file(tmp_path / "synth_001.json")
    assert doc["steps"] == ["person"] and doc["items"] == [] and len(doc["coco_rle_masks"]) == 10
    masks = doc["coco_rle_masks"]
    # a clothing-only run into the existing file adds items and keeps the masks
    s = run_inference(vid, tmp_path, fake_detector(), "none", progress=False)
    assert s.done == ["synth_001"]
    doc = validate_file(tmp_path / "synth_001.json")
    assert doc["steps"] == ["clothing", "person"] and doc["coco_rle_masks"] == masks and len(doc["items"]) == 40
    assert set(doc["models"]) == {"clothing", "person"}
    # both steps present now: nothing left to do
    assert run_inference(vid, tmp_path, fake_detector(), "same", progress=False).skipped == ["synth_001"]
    # re-running only the person step with --clobber keeps the clothing items
    items = doc["items"]
    run_inference(vid, tmp_path, fake_detector(), "same", steps=["person"], clobber=True, progress=False)
    doc = validate_file(tmp_path / "synth_001.json")
    assert doc["items"] == items and doc["steps"] == ["clothing", "person"]
    # a person step over other frames cannot be merged: recorded, the file stays intact
    s = run_inference(vid, tmp_path, fake_detector(), "same", steps=["person"], clobber=True, stride=2,
                      progress=False)
    assert s.failed and "cannot merge" in s.failed[0]["reason"]
    assert validate_file(tmp_path / "synth_001.json")["frame_indices"] == list(range(10))


def test_person_model_choice_and_output_table(videos, full_run, tmp_path):
    from yeay_nb.errors import ParamsError
    from yeay_nb.infer import Detector, _build_plan, output_table

    det = fake_detector()
    no_masks = Detector(model=object(), classes=CLASSES, source="boxes-only")
    plan = _build_plan(det, None, None, ["person"], "cpu", 0.05)
    assert plan.person is plan.clothing and plan.mask_label_ids == [3]  # default: same model, one pass
    assert _build_plan(no_masks, None, None, ["person"], "cpu", 0.05).person is None  # Faster R-CNN: no masks
    assert _build_plan(det, "none", None, ["person"], "cpu", 0.05).person is None
    with pytest.raises(ParamsError, match="mask_classes"):
        _build_plan(det, "same", None, ["hat"], "cpu", 0.05)
    with pytest.raises(ParamsError, match="nothing to do"):
        _build_plan(None, None, None, ["person"], "cpu", 0.05)
    rows = output_table(full_run[0], thresh=0.4)
    assert [r["video_id"] for r in rows] == ["synth_000", "synth_001", "synth_002"]
    assert all(r["items"] == 40 and r["masks"] == 10 and "person" in r["classes"] for r in rows)


def test_bad_videos_go_to_failures_and_the_run_goes_on(videos, tmp_path):
    (tmp_path / "junk.mp4").write_bytes(b"not a video" * 50)
    from test_video import write_empty_video

    write_empty_video(tmp_path / "empty.avi")
    feed = [{"id": "good", "sourceMediaUrl": str(videos[1][0])},
            {"id": "missing", "sourceMediaUrl": str(tmp_path / "nope.mp4")},
            {"id": "junk", "sourceMediaUrl": str(tmp_path / "junk.mp4")},
            {"id": "empty", "sourceMediaUrl": str(tmp_path / "empty.avi")},
            {"id": "url", "sourceMediaUrl": "memory://nobucket/none.mp4"}]
    (tmp_path / "feed.json").write_text(json.dumps(feed))
    out = tmp_path / "out"
    s = run_inference(tmp_path / "feed.json", out, fake_detector(), "same", max_frames=3, progress=False)
    assert s.done == ["good"] and sorted(f["video_id"] for f in s.failed) == ["empty", "junk", "missing", "url"]
    lines = [json.loads(x) for x in (out / "failures.jsonl").read_text().splitlines()]
    reasons = {r["video_id"]: r["reason"] for r in lines}
    assert "not found" in reasons["missing"] and "zero frames" in reasons["empty"]
    assert "junk.mp4" in reasons["junk"] and "cannot read memory://" in reasons["url"]
    assert sorted(p.name for p in out.glob("*.json")) == ["good.json"]


def test_shards_union_equals_single_process_run(videos, tmp_path):
    run_inference(videos[0], tmp_path / "one", fake_detector(), "same", progress=False)
    for rank in range(2):
        run_inference(videos[0], tmp_path / "two", fake_detector(), "same", rank=rank, world_size=2, progress=False)

    def strip(p):
        d = json.loads(p.read_text())
        d.pop("classifiedAt")
        return d

    one = {p.name: strip(p) for p in (tmp_path / "one").glob("*.json")}
    two = {p.name: strip(p) for p in (tmp_path / "two").glob("*.json")}
    assert len(one) == 3 and one == two


KILL_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from _infer_fakes import fake_detector
from yeay_nb.infer import run_inference
s = run_inference({src!r}, {out!r}, fake_detector(sleep_s=0.25), "same", batch_size=2, create_vis=True,
                  progress=False)
print("DONE", len(s.done), len(s.skipped))
"""


def test_killed_run_leaves_no_partial_files_and_rerun_completes(videos, tmp_path):
    out = tmp_path / "out"
    code = KILL_SCRIPT.format(tests=str(Path(__file__).parent), src=str(videos[0]), out=str(out))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline and not list(out.glob("*.json")) and proc.poll() is None:
        time.sleep(0.02)
    time.sleep(0.3)  # into the next video (each takes >= 5 batches x 0.25 s)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    done_before = sorted(p.name for p in out.glob("*.json"))
    assert 1 <= len(done_before) < 3, f"the kill should land mid-run; stderr: {err.decode()[-1500:]}"
    for p in out.glob("*.json"):
        validate_file(p)  # whatever exists is whole
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"DONE {3 - len(done_before)} {len(done_before)}" in proc.stdout
    assert len(list(out.glob("*.json"))) == 3
    leftovers = [p for p in out.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".yeay-video-")]
    # the killed process may leave its own temp files of the video in progress; a rerun never trusts them
    assert all(p.name.startswith(".") for p in leftovers)
    for p in out.glob("*.json"):
        validate_file(p)


# ------------------------------------------------------------------ a real (tiny) Mask R-CNN checkpoint
@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """An untrained Mask R-CNN with a forced detection count (score threshold 0): plumbing only."""
    import torch

    from yeay_nb.models import build_model, save_checkpoint

    torch.manual_seed(0)
    cfg = {"arch": "maskrcnn", "backbone": "mobilenet_v3", "norm": "frozen_bn", "num_classes": 4,
           "min_size": 96, "max_size": 160, "test_min_size": 96, "test_max_size": 160,
           "rpn_pre_nms_top_n_test": 50, "rpn_post_nms_top_n_test": 10, "box_detections_per_img": 3,
           "box_score_thresh": 0.0}
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, model=build_model(cfg), classes=CLASSES, model_config=cfg)
    return path


def test_selective_mask_forward_matches_torchvision(tiny_checkpoint):
    """Masks only for kept detections: same boxes, and the kept masks equal torchvision's."""
    import torch

    from yeay_nb.infer import selective_mask_forward
    from yeay_nb.models import load_model

    model, classes, _ = load_model(tiny_checkpoint, box_score_thresh=0.0)
    torch.manual_seed(1)
    imgs = [torch.rand(3, 80, 96), torch.rand(3, 120, 100)]
    with torch.inference_mode():
        ref = model(imgs)
        kept = 0
        for ids, floor in (([3], 0.0), ([1, 2], 0.0), ([3], 0.99)):
            new = selective_mask_forward(model, imgs, ids, floor)
            for r, n, img in zip(ref, new, imgs):
                assert torch.equal(r["boxes"], n["boxes"]) and torch.equal(r["scores"], n["scores"])
                want = (torch.isin(r["labels"], torch.tensor(ids)) & (r["scores"] >= floor)).nonzero().flatten()
                assert torch.equal(n["mask_index"], want)
                assert n["masks"].shape == (len(want), 1, *img.shape[-2:])
                assert torch.allclose(n["masks"], r["masks"][want], atol=1e-6)
                kept += len(want)
    assert kept > 0  # the comparison ran on real masks


def test_cli_with_a_checkpoint(videos, tiny_checkpoint, tmp_path, capsys):
    from yeay_nb.cli import main

    rc = main(["infer", "--input", str(videos[1][2]), "--output-dir", str(tmp_path), "--clothing-model",
               str(tiny_checkpoint), "--person-model", "same", "--score-floor", "0", "--thresh", "0.1",
               "--mask-thresh", "0", "--max-frames", "4", "--batch-size", "2", "--no-progress"])
    assert rc == 0
    assert "videos done 1, skipped 0, failed 0" in capsys.readouterr().out
    doc = validate_file(tmp_path / "synth_002.json")
    assert doc["video_fcnt"] == 4 and doc["models"]["clothing"]["sha256"]
    assert doc["models"]["person"]["source"] == doc["models"]["clothing"]["source"]
    assert 1 <= len(doc["items"]) <= 4 * 3 and all(c in (1, 2, 3) for _, c, _, _ in doc["items"])
    w, h = doc["video_dim"]
    for per_class, scores in zip(doc["coco_rle_masks"], doc["mask_scores"]):
        for rle in per_class[0]:
            assert mask_utils.decode(rle).shape == (h, w)
        assert len(per_class[0]) == len(scores[0])
    # a bad checkpoint path is a clear error (exit 2), not a traceback
    rc = main(["infer", "--input", str(videos[1][2]), "--output-dir", str(tmp_path), "--clothing-model",
               str(tmp_path / "none.pt"), "--no-progress"])
    assert rc == 2 and "checkpoint not found" in capsys.readouterr().err


def test_shared_videos_with_stride_and_max_frames(tiny_checkpoint, tmp_path):
    vdir = DATA / "videos"
    if not (vdir / "juggle.mp4").exists():
        pytest.skip(f"shared videos not found at {vdir}")
    s = run_inference(vdir, tmp_path, str(tiny_checkpoint), "same", score_floor=0.0, mask_thresh=0.0,
                      stride=2, max_frames=3, batch_size=2, progress=False)
    assert sorted(s.done) == ["juggle", "one-by-one-person-detection"], s.failed
    dims = {"juggle": [1280, 720], "one-by-one-person-detection": [768, 432]}
    for vid, dim in dims.items():
        doc = validate_file(tmp_path / f"{vid}.json")
        assert doc["video_dim"] == dim and doc["video_fcnt"] == 3 and doc["frame_indices"] == [0, 2]
        assert doc["video_fps"] == pytest.approx({"juggle": 24.0}.get(vid, 10.0))
        for per_class in doc["coco_rle_masks"]:
            for rle in per_class[0]:
                assert rle["size"] == dim[::-1] and mask_utils.decode(rle).shape == tuple(dim[::-1])


# ------------------------------------------------------------------ S3 through a real local server
def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_server():
    pytest.importorskip("moto", reason="moto[server] is needed for the S3 test")
    pytest.importorskip("s3fs", reason="s3fs is needed for the S3 test")
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("moto server did not start")
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def test_s3_feed_with_url_rewrite(videos, tmp_path, s3_server, monkeypatch):
    import s3fs

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    opts = {"client_kwargs": {"endpoint_url": s3_server}}
    fs = s3fs.S3FileSystem(**opts)
    fs.mkdir("yeay-videos")
    fs.put(str(videos[1][1]), "yeay-videos/u/clip-1.mp4")
    feed = [{"id": "v-s3", "sourceMediaUrl": "https://cdn.example.net/u/clip-1.mp4"},
            {"id": "v-gone", "sourceMediaUrl": "https://cdn.example.net/u/missing.mp4"}]
    fs.pipe("yeay-videos/feed.json", json.dumps(feed).encode())
    s = run_inference("s3://yeay-videos/feed.json", tmp_path, fake_detector(), "same", max_frames=4,
                      url_rewrite=["https://cdn.example.net=s3://yeay-videos"], storage_options=opts,
                      progress=False)
    assert s.done == ["v-s3"] and [f["video_id"] for f in s.failed] == ["v-gone"]
    doc = validate_file(tmp_path / "v-s3.json")
    assert doc["video_loc"] == "s3://yeay-videos/u/clip-1.mp4"
    assert doc["video_src"] == "https://cdn.example.net/u/clip-1.mp4" and doc["video_fcnt"] == 4
    assert "s3://yeay-videos/u/missing.mp4" in s.failed[0]["reason"]
    assert not list(tmp_path.glob(".yeay-video-*"))


def test_precision_sets_tf32_for_the_run_only_and_is_recorded(videos, tmp_path):
    """precision='fp32' (the plain loop's results: no autocast, no TF32) holds TF32 off while the
    models run, 'tf32' holds it on, 'bf16' leaves it; the process's settings come back afterwards,
    and the output's params say which."""
    import torch

    from yeay_nb.errors import ParamsError

    seen = []
    det = fake_detector()
    forward = det.model.forward
    det.model.forward = lambda images: (seen.append((torch.backends.cudnn.allow_tf32,
                                                     torch.backends.cuda.matmul.allow_tf32)), forward(images))[1]
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    try:
        s = run_inference(videos[1][0], tmp_path / "fp32", det, "same", precision="fp32", progress=False)
        assert s.done and seen and all(flags == (False, False) for flags in seen)
        assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == (True, True)
        doc = validate_file(tmp_path / "fp32" / "synth_000.json")
        assert doc["params"]["precision"] == "fp32"
        seen.clear()
        run_inference(videos[1][0], tmp_path / "bf16", det, "same", precision="bf16", progress=False)
        assert seen and all(flags == (True, True) for flags in seen)  # bf16 leaves the process's flags
        assert validate_file(tmp_path / "bf16" / "synth_000.json")["params"]["precision"] == "bf16"
        seen.clear()
        run_inference(videos[1][0], tmp_path / "fp16", det, "same", precision="fp16", progress=False)
        assert seen and all(flags == (True, True) for flags in seen)  # fp16 too
        assert validate_file(tmp_path / "fp16" / "synth_000.json")["params"]["precision"] == "fp16"
        seen.clear()
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        run_inference(videos[1][0], tmp_path / "tf32", det, "same", progress=False)  # the default: tf32
        assert seen and all(flags == (True, True) for flags in seen)
        assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == (False, False)
        assert validate_file(tmp_path / "tf32" / "synth_000.json")["params"]["precision"] == "tf32"
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before
    with pytest.raises(ParamsError, match="precision"):
        run_inference(videos[1][0], tmp_path / "bad", det, "same", precision="fp8", progress=False)
    from yeay_nb.params import params_from_dict

    assert params_from_dict({"infer": {"precision": "fp32"}}).infer.precision == "fp32"
    assert params_from_dict({}).infer.precision == "tf32"  # the same default as run_inference and the CLI
    from yeay_nb.cli import build_parser

    cli = build_parser().parse_args(["infer", "--input", "v.mp4", "--output-dir", "o", "--clothing-model", "m.pt"])
    assert cli.precision == "tf32"
    with pytest.raises(ParamsError, match="precision"):
        params_from_dict({"infer": {"precision": "half"}})


def test_the_decode_process_gives_the_thread_paths_outputs(videos, tmp_path, monkeypatch, capsys):
    """Decoding in the decode process (forced here; on CUDA with fastpath.DECODE_PROCESS): every JSON as
    with the decode thread, the rotated video too; the process was used once per video. So with the
    decode thread handing over whole batches (BATCH_HANDOFF). Without room in shared memory the run
    falls back to the thread, says so once, and still gives the same JSONs."""
    from yeay_nb import decode_worker, fastpath, infer

    def docs(out):
        res = {}
        for p in sorted(out.glob("*.json")):
            d = json.loads(p.read_text())
            d.pop("classifiedAt")
            res[p.name] = d
        return res

    s = run_inference(videos[0], tmp_path / "thread", fake_detector(), "same", batch_size=4, progress=False)
    made = []
    real = decode_worker.DecodedFrames
    monkeypatch.setattr(decode_worker, "DecodedFrames", lambda *a, **k: made.append(a[0]) or real(*a, **k))
    monkeypatch.setattr(infer, "_decode_in_process", lambda device: True)
    p = run_inference(videos[0], tmp_path / "process", fake_detector(), "same", batch_size=4, progress=False)
    assert sorted(p.done) == sorted(s.done) and len(made) == 3 == len(s.done)
    thread_docs = docs(tmp_path / "thread")
    assert docs(tmp_path / "process") == thread_docs and len(thread_docs) == 3
    # one frame a batch: a ring of 3 slots for 10-frame videos, so every slot must come back (else the
    # decoder waits for ever: run in a thread with a time limit)
    import threading

    small: dict = {}
    run = threading.Thread(target=lambda: small.update(s=run_inference(
        videos[0], tmp_path / "ring", fake_detector(), "same", batch_size=1, progress=False)), daemon=True)
    run.start()
    run.join(120)
    assert not run.is_alive(), "the decode process stalled: slots not handed back"
    assert len(made) == 6 and docs(tmp_path / "ring") == thread_docs
    monkeypatch.setattr(infer, "_decode_in_process", lambda device: False)
    monkeypatch.setattr(fastpath, "BATCH_HANDOFF", True)  # the decode thread hands over whole batches
    handed = []
    real_prefetch = infer.prefetch

    def spy(items, maxsize):
        for x in real_prefetch(items, maxsize):
            handed.append(len(x) if isinstance(x, list) else None)
            yield x

    monkeypatch.setattr(infer, "prefetch", spy)
    assert docs(run_inference(videos[0], tmp_path / "handoff", fake_detector(), "same", batch_size=4,
                              progress=False).output_dir) == thread_docs and len(made) == 6
    assert handed == [4, 4, 2] * 3  # three 10-frame videos, a queue item a batch
    monkeypatch.setattr(fastpath, "BATCH_HANDOFF", False)
    monkeypatch.setattr(infer, "_decode_in_process", lambda device: True)
    monkeypatch.setattr(decode_worker, "shared_memory_room", lambda: 0)
    monkeypatch.setattr(infer, "_DECODE_FALLBACK_SAID", set())
    f = run_inference(videos[0], tmp_path / "fallback", fake_detector(), "same", batch_size=4, progress=False)
    assert len(made) == 6 and sorted(f.done) == sorted(s.done)
    assert capsys.readouterr().err.count("decoding in a thread, not in the decode process") == 1
    assert docs(tmp_path / "fallback") == thread_docs


def test_the_decode_process_records_a_bad_video_and_goes_on(videos, tmp_path, monkeypatch):
    """With the decode process too, an undecodable video is one recorded failure naming the file (it
    fails when opened for its size, before the worker sees it; the worker's own errors:
    test_decode_worker.py) and the video after it is done by the worker."""
    import shutil

    from yeay_nb import infer

    monkeypatch.setattr(infer, "_decode_in_process", lambda device: True)
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a_bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video" * 50)
    shutil.copy(videos[1][1], folder / "b_good.mp4")
    s = run_inference(folder, tmp_path / "out", fake_detector(), "same", batch_size=4, progress=False)
    assert s.done == ["b_good"] and [f["video_id"] for f in s.failed] == ["a_bad"]
    assert s.failed[0]["error"] == "VideoError" and "a_bad.mp4" in s.failed[0]["reason"]
    assert json.loads((tmp_path / "out" / "b_good.json").read_text())["video_fcnt"] == 10
