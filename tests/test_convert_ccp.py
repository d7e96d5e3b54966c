"""Clothing Co-Parsing converter: real CCP subset (skipped when absent) + tiny synthetic .mat files."""
from __future__ import annotations

import argparse
import contextlib
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io
import yaml
from pycocotools import mask as mask_util

from yeay_nb.convert.ccp import (DEFAULT_MAPPING, add_cli, ccp_label_names, convert_ccp, format_summary, main,
                                 read_label_map, summary_path)
from yeay_nb.convert.coco import load_coco
from yeay_nb.errors import AnnotationError, ParamsError, TaxonomyError
from yeay_nb.taxonomy import load_taxonomy

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CCP = DATA / "ccp"
SUBSET = [f"{i:04d}" for i in range(1, 20)] + ["0536"]  # 0536: CCP's empty label map

needs_ccp = pytest.mark.skipif(not (CCP / "label_list.mat").exists(),
                               reason=f"Clothing Co-Parsing data not found at {CCP}")


def decode(ann: dict) -> np.ndarray:
    rle = {"size": ann["segmentation"]["size"], "counts": ann["segmentation"]["counts"].encode()}
    return mask_util.decode(rle).astype(bool)


# --------------------------------------------------------------------------- real CCP subset
@pytest.fixture(scope="module")
def ccp_root(tmp_path_factory) -> Path:
    """A CCP folder of symlinks to 20 real images (0001-0019 and the empty 0536)."""
    if not (CCP / "label_list.mat").exists():
        pytest.skip(f"Clothing Co-Parsing data not found at {CCP}")
    root = tmp_path_factory.mktemp("ccp")
    (root / "annotations" / "pixel-level").mkdir(parents=True)
    (root / "photos").mkdir()
    (root / "label_list.mat").symlink_to(CCP / "label_list.mat")
    for stem in SUBSET:
        mat = Path("annotations") / "pixel-level" / f"{stem}.mat"
        (root / mat).symlink_to(CCP / mat)
        (root / "photos" / f"{stem}.jpg").symlink_to(CCP / "photos" / f"{stem}.jpg")
    return root


@pytest.fixture(scope="module")
def converted(ccp_root, tmp_path_factory):
    """The subset converted with a pool of 2 workers (the default path)."""
    out = tmp_path_factory.mktemp("out") / "ccp.json"
    summary = convert_ccp(ccp_root, out, workers=2, progress=False)
    return out, summary, load_coco(out)


def label_maps(ccp_root: Path) -> dict[int, np.ndarray]:
    return {int(s): read_label_map(ccp_root / "annotations" / "pixel-level" / f"{s}.mat") for s in SUBSET}


@needs_ccp
def test_label_names_and_mapping_cover_all_labels():
    names = ccp_label_names(CCP)
    assert len(names) == 59 and names[0] == "null" and {"skin", "hair", "shoes", "boots"} <= set(names)
    listed = yaml.safe_load(DEFAULT_MAPPING.read_text())["labels"]
    assert list(listed) == names  # every label, in label_list order
    # Where the taxonomy's own name rules place a CCP label, the mapping must agree with them
    # (so a CCP and a Visual Genome "sweatshirt" get one class).
    tax = load_taxonomy()
    for label, cls in listed.items():
        hit = tax.class_for_name(label)
        if hit is not None:
            assert cls == tax.classes[hit], label
    assert listed["null"] is None and listed["skin"] is None and listed["hair"] is None
    assert listed["shoes"] == listed["boots"] == "footwear"


def test_masks_follow_the_label_maps(ccp_root, converted):
    out, summary, coco = converted
    tax = load_taxonomy()
    classes = coco["info"]["classes"]
    assert classes == tax.classes + ["person"]
    assert [c["id"] for c in coco["categories"]] == list(range(1, len(classes)))
    person_id = classes.index("person")
    mapping = yaml.safe_load(DEFAULT_MAPPING.read_text())["labels"]
    names = ccp_label_names(ccp_root)
    lut = np.array([classes.index(mapping[n]) if mapping[n] else 0 for n in names])
    maps = label_maps(ccp_root)
    by_image: dict[int, list[dict]] = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    assert {im["id"] for im in coco["images"]} == set(maps)
    for im in coco["images"]:
        gt = maps[im["id"]]
        assert (im["height"], im["width"]) == gt.shape and im["file_name"] == f"{im['id']:04d}.jpg"
        anns = by_image.get(im["id"], [])
        persons = [a for a in anns if a["category_id"] == person_id]
        if not (gt > 0).any():
            assert anns == []
            continue
        assert len(persons) == 1
        person = decode(persons[0])
        np.testing.assert_array_equal(person, gt > 0)
        class_map = lut[gt]
        for a in anns:
            m = decode(a)
            assert isinstance(a["segmentation"]["counts"], str)
            assert a["segmentation"]["size"] == [im["height"], im["width"]]
            assert a["area"] == int(m.sum())
            ys, xs = np.nonzero(m)
            assert a["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            if a["category_id"] != person_id:
                assert not (m & ~person).any()  # clothing lies inside the person
                assert (class_map[m] == a["category_id"]).all()
                assert a["area"] >= 100  # specks are gone
        # Instances of one class never overlap and cover its region up to the specks.
        for cls in set(np.unique(class_map)) - {0}:
            inst = [decode(a) for a in anns if a["category_id"] == cls]
            total = sum(int(m.sum()) for m in inst)
            if inst:
                assert int(np.logical_or.reduce(inst).sum()) == total
            assert total <= int((class_map == cls).sum())


def test_holdout_split_and_empty_map(converted):
    out, summary, coco = converted
    for im in coco["images"]:
        assert im["split"] == ("val" if im["id"] % 5 == 0 else "train")
    assert summary["images"] == {"train": 17, "val": 3}  # 5, 10 and 15 are val (536 % 5 == 1)
    assert summary["empty_label_maps"] == [536] and summary["workers"] == 2  # the pool path ran
    assert 536 in {im["id"] for im in coco["images"]}
    assert not [a for a in coco["annotations"] if a["image_id"] == 536]
    assert Path(coco["info"]["images_dir"], "0001.jpg").exists()
    assert json.loads(summary_path(out).read_text()) == json.loads(json.dumps(summary))
    assert [u[0] for u in summary["unmapped"]] == ["skin", "hair"] and summary["unmapped"][0][1] > 0
    text = format_summary(summary)
    assert "person" in text and "536" in text


def test_speck_filtering_counts(ccp_root, converted, tmp_path):
    out, summary, coco = converted
    everything = convert_ccp(ccp_root, tmp_path / "all.json", min_component_area=0, workers=1, progress=False)
    assert everything["dropped"]["speck_components"] == 0
    assert summary["dropped"]["speck_components"] > 0  # this subset has specks below 100 px
    assert everything["num_annotations"] - summary["num_annotations"] == summary["dropped"]["speck_components"]
    small = [a for a in load_coco(tmp_path / "all.json")["annotations"] if a["area"] < 100]
    assert len(small) == summary["dropped"]["speck_components"]
    assert sum(a["area"] for a in small) == summary["specks"]["pixels"]


def test_pool_and_single_process_write_the_same_json(ccp_root, converted, tmp_path):
    out, _, _ = converted
    convert_ccp(ccp_root, tmp_path / "one.json", workers=1, progress=False)
    assert (tmp_path / "one.json").read_bytes() == out.read_bytes()


def test_pycocotools_eval_of_ground_truth_is_perfect(converted):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    out, _, coco = converted
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(out))
        dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "segmentation": a["segmentation"],
                 "score": 1.0} for a in coco["annotations"]]
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)
    assert len(gt.getImgIds()) == 20 and len(gt.getAnnIds()) == len(coco["annotations"])


def test_limit_takes_the_first_label_maps(ccp_root, tmp_path):
    s = convert_ccp(ccp_root, tmp_path / "c.json", limit=3, workers=1, progress=False)
    assert [im["id"] for im in load_coco(tmp_path / "c.json")["images"]] == [1, 2, 3]
    assert s["images"] == {"train": 3, "val": 0}


# --------------------------------------------------------------------------- synthetic .mat files
NAMES = ["null", "skin", "hair", "shoes", "boots", "dress", "tie"]
MAPPING = {"null": None, "skin": None, "hair": None, "shoes": "footwear", "boots": "footwear",
           "dress": "dress", "tie": "neckwear"}


def make_root(tmp_path: Path, maps: dict[str, np.ndarray], names=NAMES, photo_sizes=None) -> Path:
    root = tmp_path / "ccp"
    (root / "annotations" / "pixel-level").mkdir(parents=True)
    (root / "photos").mkdir()
    cells = np.empty((1, len(names)), dtype=object)
    for i, n in enumerate(names):
        cells[0, i] = n
    scipy.io.savemat(root / "label_list.mat", {"label_list": cells})
    for stem, gt in maps.items():
        scipy.io.savemat(root / "annotations" / "pixel-level" / f"{stem}.mat", {"groundtruth": gt.astype(np.uint8)})
        h, w = (photo_sizes or {}).get(stem, gt.shape)
        cv2.imwrite(str(root / "photos" / f"{stem}.jpg"), np.full((h, w, 3), 128, np.uint8))
    return root


def write_mapping(tmp_path: Path, labels: dict) -> Path:
    path = tmp_path / "mapping.yaml"
    path.write_text(yaml.safe_dump({"labels": labels}))
    return path


def synthetic_map() -> np.ndarray:
    gt = np.zeros((60, 80), np.uint8)
    gt[5:40, 20:60] = 1  # skin: person only
    gt[0:5, 30:50] = 2  # hair: person only
    gt[20:30, 0:10] = 5  # dress, component 1
    gt[30:40, 10:20] = 5  # dress, touches component 1 only at a corner: 8-connected, same instance
    gt[45:55, 0:10] = 3  # shoes ...
    gt[45:55, 10:20] = 4  # ... and boots touching them: one footwear instance
    gt[45:55, 60:70] = 3  # shoes far away: a second footwear instance
    gt[57:59, 40:42] = 6  # tie: 4 px, a speck
    return gt


def test_components_merge_and_specks(tmp_path):
    root = make_root(tmp_path, {"0001": synthetic_map(), "0002": np.zeros((60, 80), np.uint8)})
    s = convert_ccp(root, tmp_path / "c.json", mapping=write_mapping(tmp_path, MAPPING), min_component_area=10,
                    workers=1, progress=False)
    coco = load_coco(tmp_path / "c.json")
    names = {c["id"]: c["name"] for c in coco["categories"]}
    got = sorted((names[a["category_id"]], a["area"]) for a in coco["annotations"])
    person_area = int((synthetic_map() > 0).sum())
    assert got == [("dress", 200), ("footwear", 100), ("footwear", 200), ("person", person_area)]
    assert s["dropped"]["speck_components"] == 1 and s["specks"]["per_class"] == {"neckwear": 1}
    assert s["empty_label_maps"] == [2]
    assert dict(map(tuple, s["unmapped"])) == {"skin": int((synthetic_map() == 1).sum()), "hair": 100}
    # 4-connectivity would have split the dress; a taxonomy-level merge would not happen per label.
    s2 = convert_ccp(root, tmp_path / "d.json", mapping=write_mapping(tmp_path, MAPPING), min_component_area=0,
                     workers=1, progress=False)
    assert s2["classes"]["neckwear"]["train"] == 1 and s2["dropped"]["speck_components"] == 0
    # The threshold is inclusive: a component of exactly min_component_area pixels is kept.
    s3 = convert_ccp(root, tmp_path / "e.json", mapping=write_mapping(tmp_path, MAPPING), min_component_area=100,
                     workers=1, progress=False)
    assert s3["classes"]["footwear"]["train"] == 2 and s3["dropped"]["speck_components"] == 1
    s4 = convert_ccp(root, tmp_path / "f.json", mapping=write_mapping(tmp_path, MAPPING), min_component_area=101,
                     workers=1, progress=False)
    assert s4["classes"]["footwear"]["train"] == 1 and s4["specks"]["per_class"] == {"footwear": 1, "neckwear": 1}


def test_bad_files_are_skipped_and_counted(tmp_path):
    gt = synthetic_map()
    root = make_root(tmp_path, {"0001": gt, "0002": gt, "0003": gt, "0004": gt, "0005": gt},
                     photo_sizes={"0003": (61, 80)})
    (root / "annotations" / "pixel-level" / "0002.mat").write_bytes(b"not a mat file at all")
    scipy.io.savemat(root / "annotations" / "pixel-level" / "0004.mat", {"labels": gt})  # wrong variable
    (root / "photos" / "0005.jpg").unlink()
    bad = gt.copy()
    bad[0, 0] = 99  # label index beyond label_list
    scipy.io.savemat(root / "annotations" / "pixel-level" / "0006.mat", {"groundtruth": bad})
    cv2.imwrite(str(root / "photos" / "0006.jpg"), np.zeros((60, 80, 3), np.uint8))
    (root / "annotations" / "pixel-level" / "notes.mat").write_bytes(b"")
    s = convert_ccp(root, tmp_path / "c.json", mapping=write_mapping(tmp_path, MAPPING), workers=2, progress=False)
    assert s["num_images"] == 1
    d = s["dropped"]
    assert (d["corrupt_label_map"], d["shape_mismatch"], d["missing_photo"], d["bad_file_name"]) == (3, 1, 1, 1)
    corrupt = " ".join(s["skipped"]["corrupt_label_map"])
    assert "0002.mat" in corrupt and "0004.mat" in corrupt and "groundtruth" in corrupt and "0006.mat" in corrupt
    assert "0003.mat" in s["skipped"]["shape_mismatch"][0] and "0005.jpg" in s["skipped"]["missing_photo"][0]


def test_bad_roots_raise_naming_the_path(tmp_path):
    with pytest.raises(AnnotationError, match="nowhere"):
        convert_ccp(tmp_path / "nowhere", tmp_path / "c.json", progress=False)
    root = make_root(tmp_path, {"0001": synthetic_map()})
    (root / "label_list.mat").unlink()
    with pytest.raises(AnnotationError, match="label_list.mat"):
        convert_ccp(root, tmp_path / "c.json", progress=False)
    with pytest.raises(AnnotationError, match="label_list.mat"):
        ccp_label_names(root)
    (root / "label_list.mat").write_bytes(b"garbage")
    with pytest.raises(AnnotationError, match="label_list.mat"):
        ccp_label_names(root)
    root2 = make_root(tmp_path / "two", {})
    with pytest.raises(AnnotationError, match="pixel-level"):
        convert_ccp(root2, tmp_path / "c.json", mapping=write_mapping(tmp_path, MAPPING), progress=False)
    assert not (tmp_path / "c.json").exists()


def test_bad_mappings_and_params_raise(tmp_path):
    root = make_root(tmp_path, {"0001": synthetic_map()})
    out = tmp_path / "c.json"
    # The shipped mapping names labels this tiny label list lacks: error names file and label.
    with pytest.raises(TaxonomyError, match=r"ccp_mapping\.yaml.*'accessories'"):
        convert_ccp(root, out, progress=False)
    with pytest.raises(TaxonomyError, match=r"mapping\.yaml.*'tie'.*'ties'"):
        convert_ccp(root, out, mapping=write_mapping(tmp_path, {**MAPPING, "tie": "ties"}), progress=False)
    small = tmp_path / "small.yaml"
    small.write_text(yaml.safe_dump({"classes": ["__background__", "footwear", "dress"]}))
    with pytest.raises(TaxonomyError, match="'tie'.*neckwear"):
        convert_ccp(root, out, taxonomy=small, mapping=write_mapping(tmp_path, MAPPING), progress=False)
    # A label left out of the mapping is reported, not an error.
    s = convert_ccp(root, out, taxonomy=small, mapping=write_mapping(tmp_path, {"shoes": "footwear"}),
                    workers=1, progress=False)
    assert s["labels_not_in_mapping"] == ["skin", "hair", "boots", "dress", "tie"]
    assert set(load_coco(out)["info"]["classes"]) == {"__background__", "footwear", "dress", "person"}
    for key, value in (("holdout_every", -1), ("min_component_area", 1.5), ("workers", 0)):
        with pytest.raises(ParamsError, match=key):
            convert_ccp(root, out, mapping=write_mapping(tmp_path, MAPPING), progress=False, **{key: value})


def test_cli(tmp_path, capsys):
    root = make_root(tmp_path, {"0001": synthetic_map(), "0005": synthetic_map()})
    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers(dest="source"))
    args = parser.parse_args(["ccp", "--root", str(root), "--out", str(tmp_path / "c.json"), "--mapping",
                              str(write_mapping(tmp_path, MAPPING)), "--workers", "1", "--no-progress"])
    assert args.func(args) == 0
    assert "footwear" in capsys.readouterr().out
    assert [im["split"] for im in load_coco(tmp_path / "c.json")["images"]] == ["train", "val"]
    assert main(["--root", str(tmp_path / "missing"), "--out", str(tmp_path / "x.json")]) == 2
    assert "missing" in capsys.readouterr().err


def test_shrink_ccp_keeps_labels_and_converts_like_the_original(ccp_root, tmp_path):
    """scripts/shrink_ccp.py (the copy carried to the GPU machines): --first N keeps the first N
    label maps, short side 400, labels resized without blending (no label the original lacks),
    and the copy converts with the same images and classes."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "small"
    r = subprocess.run([sys.executable, "scripts/shrink_ccp.py", "--root", str(ccp_root), "--out", str(out),
                        "--quality", "78", "--first", "4"], cwd=root, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    stems = sorted(p.stem for p in (out / "annotations" / "pixel-level").glob("*.mat"))
    assert stems == SUBSET[:4] and sorted(p.stem for p in (out / "photos").glob("*.jpg")) == stems
    for stem in stems:
        small = read_label_map(out / "annotations" / "pixel-level" / f"{stem}.mat")
        big = read_label_map(ccp_root / "annotations" / "pixel-level" / f"{stem}.mat")
        assert min(small.shape) == 400 and set(np.unique(small)) <= set(np.unique(big))
        assert cv2.imread(str(out / "photos" / f"{stem}.jpg")).shape[:2] == small.shape
    summary = convert_ccp(out, tmp_path / "small.json", workers=1, progress=False)
    coco = load_coco(tmp_path / "small.json")
    assert [im["file_name"] for im in coco["images"]] == [f"{s}.jpg" for s in stems]
    assert summary["images"] == {"train": 4, "val": 0}  # 0001-0004: none divides by 5
    empty = subprocess.run([sys.executable, "scripts/shrink_ccp.py", "--root", str(tmp_path), "--out", str(tmp_path / "x")],
                           cwd=root, capture_output=True, text=True, timeout=60)
    assert empty.returncode != 0 and "is not a CCP folder" in empty.stderr and not (tmp_path / "x").exists()
