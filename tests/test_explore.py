"""yeay_nb.explore / yeay_nb.fo_db: COCO and video outputs in FiftyOne, label problems,
predictions and evaluation, the database lifecycle, and notebook 02 under papermill.

Everything runs on a tiny synthetic COCO dataset written to tmp_path; the FiftyOne database
is a mongod in a temporary directory, started once per session and stopped at the end.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from yeay_nb import explore, fo_db
from yeay_nb.convert.coco import write_coco
from yeay_nb.errors import AnnotationError, YeayError

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
CLASSES = ["__background__", "shirt", "pants", "person"]
W, H = 96, 64


# --------------------------------------------------------------------------- synthetic data
def _rle(x0, y0, x1, y1, w=W, h=H):
    m = np.zeros((h, w), np.uint8, order="F")
    m[y0:y1, x0:x1] = 1
    rle = mask_utils.encode(m)
    rle["counts"] = rle["counts"].decode()
    return rle


def make_coco(root: Path, n_images: int = 6, missing: tuple[int, ...] = (5,)) -> tuple[Path, dict]:
    """Images with a shirt (with an RLE mask) and pants each, plus one planted problem per kind.

    Returns the json path and ``{annotation_id: expected problem}`` for the planted ones.
    """
    (root / "images").mkdir(parents=True, exist_ok=True)
    images, anns, planted = [], [], {}
    aid = 0

    def ann(image_id, cat, bbox, seg=None):
        nonlocal aid
        aid += 1
        a = {"id": aid, "image_id": image_id, "category_id": cat, "bbox": bbox,
             "area": bbox[2] * bbox[3], "iscrowd": 0}
        if seg is not None:
            a["segmentation"] = seg
        anns.append(a)
        return aid

    for i in range(n_images):
        img = np.full((H, W, 3), 30 + 35 * i, np.uint8)
        cv2.rectangle(img, (10, 10), (39, 49), (0, 200, 0), -1)
        cv2.rectangle(img, (50, 20), (79, 49), (200, 0, 0), -1)
        name = f"{i:04d}.jpg"
        if i not in missing:
            cv2.imwrite(str(root / "images" / name), img)
        images.append({"id": i + 1, "file_name": name, "width": W, "height": H,
                       "split": "val" if i % 2 else "train"})
        ann(i + 1, 1, [10, 10, 30, 40], _rle(10, 10, 40, 50))
        ann(i + 1, 2, [50, 20, 30, 30])
    planted[ann(1, 1, [10, 10, 30, 41])] = "duplicate"   # near-copy of image 1's shirt
    planted[ann(2, 2, [1, 1, 1, 1])] = "tiny"
    planted[ann(3, 2, [80, 40, 40, 40])] = "outside"      # reaches 24 px past the right edge
    planted[ann(4, 3, [0, 0, 96, 64])] = "huge"
    # pants shifted by (2, 1) px over image 4's pants: IoU 0.82, a duplicate only below 0.82
    planted[ann(4, 2, [52, 21, 30, 30])] = "near-duplicate"
    path = write_coco(root / "coco.json", images=images, annotations=anns, classes=CLASSES)
    return path, planted


@pytest.fixture(scope="session")
def fo_database(tmp_path_factory):
    """One mongod for the session, in a temporary directory; stopped at the end.

    The directory is the same for every test file of the session (the browser test too), so a
    second start reuses the running mongod instead of fighting over the lock.
    """
    db_dir = tmp_path_factory.getbasetemp() / "fiftyone-db"
    uri = fo_db.start_database(db_dir, honor_env=False)  # never write into a user's own MongoDB
    yield uri
    fo_db.stop_database(db_dir)


# --------------------------------------------------------------------------- no database
def test_find_label_problems_flags_planted_ones(tmp_path):
    path, planted = make_coco(tmp_path)
    coco, _ = explore.load_checked_coco(path)
    problems = explore.find_label_problems(coco, duplicate_iou=0.9)
    found = {p["annotation_id"]: p["problem"] for p in problems}
    assert found == {k: v for k, v in planted.items() if v != "near-duplicate"}
    # a looser duplicate threshold catches the 2 px shift as well, and only that one more
    loose = {p["annotation_id"] for p in explore.find_label_problems(coco, duplicate_iou=0.8)
             if p["problem"] == "duplicate"}
    assert loose == {k for k, v in planted.items() if v in ("duplicate", "near-duplicate")}


def test_duplicates_need_the_same_class():
    coco = {"images": [{"id": 1, "width": 100, "height": 100}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]},
                            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [10, 10, 20, 20]},
                            {"id": 3, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]},
                            {"id": 4, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]}]}
    dups = [p for p in explore.find_label_problems(coco) if p["problem"] == "duplicate"]
    # 3 and 4 copy 1 (same class); 2 has another class; each later copy is flagged once
    assert sorted(p["annotation_id"] for p in dups) == [3, 4]
    assert "annotation 1" in dups[0]["detail"]


def test_unknown_category_id_names_file_and_id(tmp_path):
    path, _ = make_coco(tmp_path)
    coco = json.loads(path.read_text())
    coco["annotations"][3]["category_id"] = 99
    path.write_text(json.dumps(coco))
    with pytest.raises(AnnotationError) as e:
        explore.load_checked_coco(path)
    msg = str(e.value)
    assert str(path) in msg and "99" in msg and "annotations[3]" in msg


def test_counts_table_and_plot(tmp_path):
    path, _ = make_coco(tmp_path)
    coco, _ = explore.load_checked_coco(path)
    table = explore.counts_table(coco).splitlines()
    assert table[0].split() == ["class", "train", "val", "images"]
    rows = {r.split()[0]: [int(v) for v in r.split()[1:]] for r in table[2:]}
    # 6 images, 3 train (ids 1,3,5) and 3 val; plus planted pants on images 2, 3 and 4
    assert rows["shirt"] == [4, 3, 6]  # the duplicate on image 1 (train)
    assert rows["pants"] == [4, 5, 6]
    fig = explore.plot_class_counts(coco)
    widths = [p.get_width() for p in fig.axes[0].patches]
    assert sorted(widths) == sorted([4, 3, 4, 5, 0, 1])


def test_video_output_checks(tmp_path):
    bad = tmp_path / "v.json"
    bad.write_text(json.dumps({"video_id": "v", "video_loc": "v.mp4", "video_dim": [64, 48],
                               "classesInDS": ["__background__", "shirt"], "items": [[0, 5, 0.9, [1, 2, 3, 4]]]}))
    with pytest.raises(AnnotationError, match=r"items\[0\].*class_id 5"):
        explore.read_video_output(bad)
    bad.write_text(json.dumps({"video_id": "v"}))
    with pytest.raises(AnnotationError, match="missing 'video_loc'"):
        explore.read_video_output(bad)


# --------------------------------------------------------------------------- database lifecycle
def test_database_that_cannot_start_names_log_and_fix(tmp_path, monkeypatch):
    fake = tmp_path / "mongod"
    fake.write_text(textwrap.dedent("""\
        #!/bin/sh
        while [ $# -gt 0 ]; do
          if [ "$1" = "--logpath" ]; then echo "libcrypto.so.1.1: cannot open shared object" > "$2"; fi
          shift
        done
        exit 127
        """))
    fake.chmod(0o755)
    monkeypatch.setenv("YEAY_NB_MONGOD", str(fake))
    monkeypatch.setenv(fo_db.OWNER_ENV, "x")  # as if we had set the URI: do not honor it
    db_dir = tmp_path / "db"
    with pytest.raises(YeayError) as e:
        fo_db.start_database(db_dir, timeout_s=10, honor_env=False)
    msg = str(e.value)
    assert str(db_dir / "mongod.log") in msg and "libcrypto" in msg and "Fix:" in msg
    assert not (db_dir / fo_db.STATE_FILE).exists()


def _run_py(code: str, env: dict | None = None, timeout: int = 90) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("FIFTYONE_DATABASE_URI", fo_db.OWNER_ENV)}
    full_env.update(env or {})
    return subprocess.run([PY, "-c", code], capture_output=True, text=True, env=full_env, cwd=ROOT,
                          timeout=timeout)


def test_user_database_uri_is_honored(tmp_path):
    db_dir = tmp_path / "never-made"
    r = _run_py(f"from yeay_nb.fo_db import start_database; import os; "
                f"print(start_database({str(db_dir)!r}), os.environ['FIFTYONE_DO_NOT_TRACK'])",
                env={"FIFTYONE_DATABASE_URI": "mongodb://team-db.example:27017"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["mongodb://team-db.example:27017", "true"]
    assert not db_dir.exists()


def test_mongod_reused_then_stopped_at_exit(tmp_path):
    """A process that starts mongod stops it at exit; a second start for the same dir reuses it."""
    db_dir = tmp_path / "db"
    code = textwrap.dedent(f"""
        import json, subprocess, sys
        from yeay_nb.fo_db import start_database, STATE_FILE
        uri = start_database({str(db_dir)!r})
        pid = json.load(open({str(db_dir)!r} + "/" + STATE_FILE))["pid"]
        again = subprocess.run([sys.executable, "-c",
            "from yeay_nb.fo_db import start_database; print(start_database({str(db_dir)!r}))"],
            capture_output=True, text=True, env={{k: v for k, v in __import__("os").environ.items()
                                                 if k not in ("FIFTYONE_DATABASE_URI", "YEAY_NB_MONGOD_DIR")}})
        print(uri, again.stdout.strip(), pid)
    """)
    r = _run_py(code)
    assert r.returncode == 0, r.stderr
    uri, again, pid = r.stdout.split()
    assert again == uri  # the child found the running mongod through the state file
    deadline = time.monotonic() + 20
    while fo_db._pid_alive(int(pid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not fo_db._pid_alive(int(pid)), "mongod outlived the process that started it"
    assert not (db_dir / fo_db.STATE_FILE).exists()


def test_orphaned_mongod_is_reused_and_can_be_stopped(tmp_path):
    """A kernel killed without cleanup leaves its mongod running: the next start reuses it, and
    ``stop_database(force=True)`` stops it."""
    db_dir = tmp_path / "db"
    r = _run_py(f"import os; from yeay_nb.fo_db import start_database; print(start_database({str(db_dir)!r}), "
                f"flush=True); os._exit(0)")  # os._exit: no atexit, like a kernel killed with SIGKILL
    assert r.returncode == 0, r.stderr
    uri = r.stdout.strip()
    state = json.loads((db_dir / fo_db.STATE_FILE).read_text())
    try:
        assert fo_db.running_uri(db_dir) == uri
        r = _run_py(f"from yeay_nb.fo_db import start_database, stop_database; "
                    f"print(start_database({str(db_dir)!r})); print(stop_database({str(db_dir)!r})); "
                    f"print(stop_database({str(db_dir)!r}, force=True))")
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == [uri, "False", "True"]  # reused; not ours to stop unless forced
        assert not fo_db._pid_alive(state["pid"]) and fo_db.running_uri(db_dir) is None
    finally:
        if fo_db._pid_alive(state["pid"]):
            os.kill(state["pid"], 15)


# --------------------------------------------------------------------------- FiftyOne datasets
@pytest.fixture
def coco_ds(fo_database, tmp_path, request):
    path, planted = make_coco(tmp_path / "data")
    name = f"t-{request.node.name}"[:60]
    ds, report = explore.import_coco(path, name, overwrite=True)
    yield path, ds, report, planted
    ds.delete()


def test_import_coco(coco_ds):
    path, ds, report, _ = coco_ds
    assert report.num_samples == 5 == len(ds)
    assert report.missing_images == [str((path.parent / "images" / "0005.jpg").resolve())]
    assert report.splits == {"train": 3, "val": 2}
    assert sorted(ds.count_sample_tags().items()) == [("train", 3), ("val", 2)]
    sample = ds.match({"coco_id": 1}).first()
    shirts = [d for d in sample.ground_truth.detections if d.label == "shirt"]
    assert len(shirts) == 2  # the shirt and its planted duplicate
    with_mask = [d for d in shirts if d.mask is not None]
    assert len(with_mask) == 1 and with_mask[0].mask.shape == (40, 30) and with_mask[0].mask.all()
    np.testing.assert_allclose(with_mask[0].bounding_box, [10 / W, 10 / H, 30 / W, 40 / H])
    assert report.num_masks == 5
    assert explore.count_labels(ds) == {"shirt": 6, "pants": 8, "person": 1}
    import fiftyone as fo

    assert fo.load_dataset(ds.name).persistent


def test_existing_dataset_name_needs_overwrite(coco_ds):
    path, ds, _, _ = coco_ds
    with pytest.raises(YeayError, match="already exists.*overwrite"):
        explore.import_coco(path, ds.name)
    with pytest.raises(YeayError, match="already exists.*overwrite"):
        explore.import_video_outputs([], ds.name)
    assert len(ds) == 5  # untouched


def test_wrong_images_dir_is_a_clear_error(coco_ds, tmp_path):
    path, ds, _, _ = coco_ds
    with pytest.raises(AnnotationError, match=r"none of the 6 image files exist under .*nowhere.*images_dir"):
        explore.import_coco(path, "t-never", images_dir=tmp_path / "nowhere")
    import fiftyone as fo

    assert not fo.dataset_exists("t-never")


def test_class_views_and_problem_tags(coco_ds):
    _, ds, _, planted = coco_ds
    assert explore.images_of_class(ds, "person").count() == 1
    assert explore.class_patches(ds, "pants").count() == 8
    assert explore.class_patches(ds).count() == 15
    coco, _ = explore.load_checked_coco(ds.info["coco_json"])
    problems = explore.find_label_problems(coco)
    tagged = explore.tag_label_problems(ds, problems)
    # planted problems on image 6 (missing file) would not be there; all planted are on 1..4
    expected = {}
    for p in problems:
        expected[f"problem:{p['problem']}"] = expected.get(f"problem:{p['problem']}", 0) + 1
    assert tagged == expected and tagged["problem:tiny"] == 1
    counts = ds.count_label_tags("ground_truth")
    assert counts == expected
    from fiftyone import ViewField as F

    tiny_id = next(k for k, v in planted.items() if v == "tiny")
    tiny = ds.match_tags("problem:tiny").filter_labels("ground_truth", F("tags").contains("problem:tiny"))
    assert tiny.values("ground_truth.detections.coco_id", unwind=True) == [tiny_id]
    # re-running (after someone fixed labels) replaces the tags instead of adding to them
    explore.tag_label_problems(ds, [p for p in problems if p["problem"] != "tiny"])
    assert "problem:tiny" not in ds.count_label_tags("ground_truth")
    assert "problem:tiny" not in ds.count_sample_tags()


def _gt_as_predictions(ds, swap_label: dict | None = None):
    """Predictions equal to the ground truth (optionally with some labels swapped)."""
    preds = {}
    for sample in ds:
        boxes, labels = [], []
        for d in sample.ground_truth.detections:
            x, y, w, h = d.bounding_box
            boxes.append([x * W, y * H, (x + w) * W, (y + h) * H])
            labels.append(CLASSES.index((swap_label or {}).get(d.coco_id, d.label)))
        preds[sample.coco_id] = {"boxes": np.asarray(boxes), "labels": np.asarray(labels),
                                 "scores": np.linspace(0.9, 0.5, len(labels))}
    return preds


def test_predictions_evaluation_and_worst_cases(coco_ds):
    _, ds, _, _ = coco_ds
    n = explore.add_predictions(ds, _gt_as_predictions(ds), CLASSES)
    assert n == 15 and ds.count("predictions.detections") == 15
    results = explore.evaluate(ds, split="val")
    assert results.mAP() == pytest.approx(1.0)
    assert set(explore.per_class_ap(results)) == {"shirt", "pants", "person"}
    assert explore.worst_false_positives(ds).count() == 0
    # now predict one val shirt as pants: one FP (pants) and one FN (shirt), mixed up classes
    val_shirt = ds.match_tags("val").first().ground_truth.detections[0]
    assert val_shirt.label == "shirt"
    explore.add_predictions(ds, _gt_as_predictions(ds, {val_shirt.coco_id: "pants"}), CLASSES)
    results = explore.evaluate(ds, split="val", eval_key="eval2")
    ap = explore.per_class_ap(results)
    assert ap["shirt"] < 1.0 and results.mAP() < 1.0
    fp = explore.worst_false_positives(ds, eval_key="eval2")
    fn = explore.worst_false_negatives(ds, eval_key="eval2")
    assert fp.count() == 1 and fp.first().predictions.label == "pants"
    assert fn.count() == 1 and fn.first().ground_truth.coco_id == val_shirt.coco_id
    cm = results.confusion_matrix(classes=["shirt", "pants"])
    assert cm[0, 1] == 1  # row: truth shirt, column: predicted pants
    assert "mAP" in explore.ap_table(results)
    assert explore.plot_pr_curves(results) is not None
    assert explore.plot_confusion_matrix(results) is not None


def test_add_coco_detections_from_results_json(coco_ds, tmp_path):
    _, ds, _, _ = coco_ds
    results = [{"image_id": 2, "category_id": 2, "bbox": [50, 20, 30, 30], "score": 0.8,
                "segmentation": _rle(50, 20, 80, 50)},
               {"image_id": 2, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.01},
               {"image_id": 99, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.9}]  # no such sample
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    assert explore.add_coco_detections(ds, path, CLASSES, score_floor=0.05) == 1
    (det,) = ds.match({"coco_id": 2}).first().predictions.detections
    assert det.label == "pants" and det.confidence == pytest.approx(0.8) and det.mask.shape == (30, 30)
    assert ds.count("predictions") == 1
    with pytest.raises(AnnotationError, match=r"detections\[0\].*category_id 7"):
        explore.add_coco_detections(ds, [dict(results[0], category_id=7)], CLASSES)


def test_predict_split_runs_a_model_over_the_split(coco_ds):
    import torch

    _, ds, _, _ = coco_ds
    seen = []

    class Fixed(torch.nn.Module):
        """A stand-in detector: one box per image, its height = the image's mean brightness."""

        def forward(self, images):
            seen.extend(tuple(im.shape) for im in images)
            return [{"boxes": torch.tensor([[1.0, 2.0, 11.0, 22.0]]), "labels": torch.tensor([2]),
                     "scores": torch.tensor([float(im.mean())]),
                     "masks": torch.ones(1, 1, im.shape[1], im.shape[2])} for im in images]

    n = explore.predict_split(ds, None, split="val", model=Fixed(), classes=CLASSES, batch_size=1,
                              score_floor=0.0)
    assert n == 2 and seen == [(3, H, W), (3, H, W)]
    val = ds.match_tags("val")
    assert val.count("predictions.detections") == 2 and ds.match_tags("train").count("predictions") == 0
    det = val.first().predictions.detections[0]
    assert det.label == "pants" and det.mask.shape == (20, 10)
    np.testing.assert_allclose(det.bounding_box, [1 / W, 2 / H, 10 / W, 20 / H])
    with pytest.raises(Exception, match="checkpoint not found"):
        explore.predict_split(ds, Path("/nonexistent/model.pt"))


# --------------------------------------------------------------------------- videos
def _write_video(path: Path, n: int = 6, w: int = 64, h: int = 48) -> Path:
    """An OpenCV mp4v clip: imports fine, but browsers cannot play MPEG-4 part 2 (checked below)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (w, h))
    for i in range(n):
        frame = np.full((h, w, 3), 20 * i, np.uint8)
        cv2.rectangle(frame, (10 + i, 10), (30 + i, 40), (0, 255, 0), -1)
        writer.write(frame)
    writer.release()
    assert path.stat().st_size > 0
    return path


def test_import_video_outputs(fo_database, tmp_path):
    vids = tmp_path / "videos"
    vids.mkdir()
    _write_video(vids / "clip.mp4")
    out = tmp_path / "infer"
    out.mkdir()
    classes = ["__background__", "shirt", "pants"]
    doc = {"video_id": "clip", "video_loc": str(vids / "clip.mp4"), "video_dim": [64, 48],
           "video_fps": 10.0, "video_fcnt": 6, "classesInDS": classes,
           "items": [[0, 1, 0.9, [10, 10, 30, 40]], [0, 2, 0.07, [0, 0, 8, 8]], [3, 2, 0.6, [32, 8, 64, 24]]],
           "frame_indices": [0, 2], "mask_classes": ["person"], "mask_scores": [[[0.8]], [[0.7]]],
           "coco_rle_masks": [[[_rle(10, 10, 31, 41, 64, 48)]], [[_rle(12, 10, 33, 41, 64, 48)]]]}
    (out / "clip.json").write_text(json.dumps(doc))
    gone = dict(doc, video_id="gone", video_loc="/nowhere/gone.mp4")
    (out / "gone.json").write_text(json.dumps(gone))
    vds, report = explore.import_video_outputs(out, "t-videos", overwrite=True, min_score=0.05)
    try:
        assert report.num_videos == 1 and report.missing_videos == ["/nowhere/gone.mp4"]
        # OpenCV's mp4v (MPEG-4 part 2) imports fine but browsers cannot play it: say so
        assert report.not_browser_playable == [str((vids / "clip.mp4").resolve())]
        assert "cannot play" in str(report)
        assert vds.media_type == "video"
        s = vds.first()
        assert s.video_id == "clip" and s.metadata.frame_width == 64
        # 0-based frame_index 0 -> FiftyOne frame 1; masks list k=1 is frame_indices[1] = 2 -> frame 3
        assert sorted(s.frames.keys()) == [1, 3, 4]
        f1 = s.frames[1]
        assert [d.label for d in f1.detections.detections] == ["shirt", "pants"]
        np.testing.assert_allclose(f1.detections.detections[0].bounding_box, [10 / 64, 10 / 48, 20 / 64, 30 / 48])
        assert [d.label for d in f1.masks.detections] == ["person"]
        m3 = s.frames[3].masks.detections[0]
        assert m3.mask.shape == (31, 21) and m3.mask.all() and m3.confidence == pytest.approx(0.7)
        np.testing.assert_allclose(m3.bounding_box, [12 / 64, 10 / 48, 21 / 64, 31 / 48])
        assert s.frames[4].detections.detections[0].confidence == pytest.approx(0.6)
        assert report.num_detections == 3 and report.num_masks == 2
        # a higher score floor drops the 0.07 box, like the App's confidence slider would
        vds2, r2 = explore.import_video_outputs([out / "clip.json"], "t-videos", overwrite=True, min_score=0.1)
        assert r2.num_detections == 2
    finally:
        import fiftyone as fo

        if fo.dataset_exists("t-videos"):
            fo.delete_dataset("t-videos")


# --------------------------------------------------------------------------- notebook 02
def test_notebook_02_under_papermill(fo_database, tmp_path):
    """Notebook 02 runs headless on a tiny COCO json (no App), against the session's database."""
    import nbformat
    import papermill as pm

    nb_path = ROOT / "notebooks" / "02_explore.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert "parameters" in first.metadata.get("tags", [])
    assert first.source.strip().splitlines() == ['params_file = "../params/demo.yaml"', "overrides = {}"]
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit without outputs"

    data = tmp_path / "work"
    coco_json, _ = make_coco(data)
    params = tmp_path / "params.yaml"
    params.write_text(textwrap.dedent(f"""\
        work_dir: work
        convert:
          coco_json: work/coco.json
        explore:
          dataset_name: t-notebook
          overwrite: true
          database_dir: {os.environ[fo_db.OWNER_ENV]}
          launch_app: false
        """))
    out = tmp_path / "02_out.ipynb"
    pm.execute_notebook(str(nb_path), str(out), parameters={"params_file": str(params), "overrides": {}},
                        cwd=str(nb_path.parent), kernel_name="python3", progress_bar=False)
    text = out.read_text()
    assert "dataset 't-notebook': 5 samples" in text
    assert "problem:duplicate" in text and "shirt" in text
    import fiftyone as fo

    ds = fo.load_dataset("t-notebook")
    assert len(ds) == 5 and len(ds.match_tags("problem:tiny")) == 1
    ds.delete()
