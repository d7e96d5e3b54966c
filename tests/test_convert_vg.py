"""Visual Genome converter: file variants, box rules, drops, splits, errors, atomicity, benchmark smoke."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from yeay_nb.convert.coco import load_coco, split_for_image
from yeay_nb.convert.vg import add_cli, convert_vg, iter_record_batches, summary_path
from yeay_nb.errors import AnnotationError
from yeay_nb.taxonomy import load_taxonomy, taxonomy_from_dict

ROOT = Path(__file__).resolve().parents[1]
TAX = load_taxonomy()
FOOT, HEAD, SHIRT = TAX.index("footwear"), TAX.index("headwear"), TAX.index("dress shirt")


def obj(oid, names, x, y, w, h, synsets=(), **extra):
    o = {"synsets": list(synsets), "h": h, "object_id": oid, "merged_object_ids": [], "names": list(names),
         "w": w, "y": y, "x": x}
    o.update(extra)
    return o


def write(tmp_path: Path, objects, images=None, name="objects.json") -> tuple[Path, Path]:
    images = images if images is not None else [
        {"width": 100, "url": "https://cs.stanford.edu/people/rak248/VG_100K/1.jpg", "height": 80,
         "image_id": 1, "coco_id": None, "flickr_id": None},
        {"width": 200, "url": "https://cs.stanford.edu/people/rak248/VG_100K_2/2.jpg", "height": 100,
         "image_id": 2, "coco_id": 5, "flickr_id": 7},
    ]
    (tmp_path / "image_data.json").write_text(json.dumps(images))
    (tmp_path / name).write_text(json.dumps(objects) if not isinstance(objects, (str, bytes)) else objects)
    return tmp_path / "image_data.json", tmp_path / name


def run(tmp_path, objects, images=None, **kw):
    idata, objs = write(tmp_path, objects, images)
    out = tmp_path / "coco.json"
    summary = convert_vg(idata, objs, out, progress=False, **kw)
    return summary, load_coco(out)


def test_v14_objects_basic_mapping_and_coco_fields(tmp_path):
    s, coco = run(tmp_path, [
        {"image_id": 1, "objects": [obj(10, ["Sneakers"], 5, 6, 20, 10), obj(11, ["tree"], 0, 0, 5, 5),
                                    obj(12, ["cap"], 1, 2, 3, 4)], "image_url": "x/1.jpg"},
        {"image_id": 2, "objects": [obj(13, ["blouse thing"], 10, 10, 30, 30, synsets=["shirt.n.01"])]},
    ], val_fraction=0.0)
    anns = sorted(coco["annotations"], key=lambda a: a["id"])
    assert [a["id"] for a in anns] == [1, 2, 3]
    assert [(a["vg_object_id"], a["category_id"]) for a in anns] == [(10, FOOT), (12, HEAD), (13, SHIRT)]
    assert anns[0]["bbox"] == [5, 6, 20, 10] and anns[0]["area"] == 200 and anns[0]["iscrowd"] == 0
    im = {i["id"]: i for i in coco["images"]}
    assert im[2]["file_name"] == "2.jpg" and im[2]["coco_id"] == 5 and im[2]["flickr_id"] == 7 and im[2]["vg_id"] == 2
    assert (im[1]["width"], im[1]["height"]) == (100, 80)
    assert [c["name"] for c in sorted(coco["categories"], key=lambda c: c["id"])] == TAX.classes[1:]
    assert coco["info"]["classes"] == TAX.classes
    assert s["class_counts"]["footwear"] == {"train": 1, "val": 0, "images": 1}
    assert s["dropped_objects"]["unmapped"] == 1 and s["unmapped_names"] == [["tree", 1]]
    assert json.loads(summary_path(tmp_path / "coco.json").read_text())["annotations"]["total"] == 3


def test_attributes_json_and_v10_variant(tmp_path):
    attrs = [{"image_id": 1, "attributes": [], "objects": [
        obj(10, ["shoe"], 1, 1, 10, 10, attributes=["red", "leather"])]}]
    s, coco = run(tmp_path, attrs)
    assert [a["category_id"] for a in coco["annotations"]] == [FOOT]
    v10 = [{"id": 1, "objects": [
        {"id": 50, "object_names": ["hat"], "x": 1, "y": 1, "w": 5, "h": 5},
        {"id": 51, "name": "boots", "x": 10, "y": 10, "w": 5, "h": 5},
        {"id": 52, "name": "car", "x": 10, "y": 10, "w": 5, "h": 5}]}]
    images = [{"id": 1, "width": 50, "height": 50, "url": "http://h/VG_100K/1.jpg"}]
    s, coco = run(tmp_path, v10, images)
    assert sorted((a["vg_object_id"], a["category_id"]) for a in coco["annotations"]) == [(50, HEAD), (51, FOOT)]
    assert s["unmapped_names"] == [["car", 1]]


def test_duplicates_merged_boxes_clipped_degenerate_dropped(tmp_path):
    s, coco = run(tmp_path, [{"image_id": 1, "objects": [
        obj(1, ["shoe"], 10, 10, 20, 20), obj(2, ["shoes"], 10, 10, 20, 20),  # same class, same box
        obj(3, ["shoe"], 10.2, 9.9, 20, 20),  # same after rounding
        obj(4, ["hat"], 10, 10, 20, 20),  # same box, other class: kept
        obj(5, ["shoe"], -10, 70, 30, 30),  # clipped to [0, 70, 20, 10] in 100x80
        obj(6, ["shoe"], 5, 5, 0, 10), obj(7, ["shoe"], 5, 5, 10, -3),
        obj(8, ["shoe"], 150, 5, 10, 10),  # fully outside
        {"object_id": 9, "names": ["shoe"], "synsets": []},  # no box
    ]}])
    boxes = {a["vg_object_id"]: (a["bbox"], a["area"]) for a in coco["annotations"]}
    assert set(boxes) == {1, 4, 5}
    assert boxes[5] == ([0, 70, 20, 10], 200)
    d = s["dropped_objects"]
    assert (d["duplicate"], d["zero_size"], d["negative_size"], d["outside_image"], d["missing_box"]) == (2, 1, 1, 1, 1)
    assert s["duplicates_merged"] == 2


def test_missing_images_on_disk_and_unknown_image_ids(tmp_path):
    (tmp_path / "imgs" / "VG_100K_2").mkdir(parents=True)
    (tmp_path / "imgs" / "VG_100K_2" / "2.jpg").write_bytes(b"x")
    s, coco = run(tmp_path, [
        {"image_id": 1, "objects": [obj(1, ["shoe"], 1, 1, 5, 5)]},
        {"image_id": 2, "objects": [obj(2, ["shoe"], 1, 1, 5, 5)]},
        {"image_id": 99, "objects": [obj(3, ["shoe"], 1, 1, 5, 5), obj(4, ["hat"], 1, 1, 5, 5)]},
    ], images_dir=tmp_path / "imgs")
    assert [i["id"] for i in coco["images"]] == [2]
    assert coco["images"][0]["file_name"] == "VG_100K_2/2.jpg"  # relative to images_dir
    assert [a["vg_object_id"] for a in coco["annotations"]] == [2]
    assert s["dropped_images"] == {"missing_on_disk": 1}
    assert s["skipped_records"] == {"image_dropped": 1, "unknown_image": 1}
    assert s["dropped_objects"]["unknown_image"] == 2


def test_aliases_applied_before_taxonomy(tmp_path):
    (tmp_path / "object_alias.txt").write_text("sneaker,kicks,trainerz\nman,men,guy\n")
    objs = [{"image_id": 1, "objects": [obj(1, ["Kicks"], 1, 1, 5, 5), obj(2, ["guy"], 1, 1, 5, 5)]}]
    s, coco = run(tmp_path, objs)
    assert coco["annotations"] == []
    s, coco = run(tmp_path, objs, aliases=tmp_path / "object_alias.txt")
    assert [a["category_id"] for a in coco["annotations"]] == [FOOT]
    assert s["unmapped_names"] == [["man", 1]]  # reported under the canonical name


def test_malformed_json_error_names_offset_and_record(tmp_path):
    good = json.dumps([{"image_id": 1, "objects": [obj(1, ["shoe"], 1, 1, 5, 5)]}])
    bad = good[:-1] + ', {"image_id": 2, "objects": [1,,2]}]'
    idata, objs = write(tmp_path, bad)
    with pytest.raises(AnnotationError) as e:
        convert_vg(idata, objs, tmp_path / "c.json", progress=False)
    assert e.value.file == str(objs) and e.value.record == 1
    assert e.value.offset is not None and abs(e.value.offset - bad.index(",,") - 1) <= 1
    for text, words in [("", "empty"), ('{"image_id": 1}', "object"), ("[1, 2]", "expected an object"),
                        ('[{"objects": []}]', "image id"), (good[:-5], "end of file"), (good + "x", "after"),
                        ('[{"image_id": 1, "objects": 3}]', "objects")]:
        idata, objs = write(tmp_path, text)
        with pytest.raises(AnnotationError, match=words):
            convert_vg(idata, objs, tmp_path / "c.json", progress=False)
    with pytest.raises(AnnotationError, match="not found"):
        convert_vg(idata, tmp_path / "nope.json", tmp_path / "c.json", progress=False)
    (tmp_path / "image_data.json").write_text('[{"image_id": 1, "width": 5}]')
    with pytest.raises(AnnotationError, match="height"):
        convert_vg(tmp_path / "image_data.json", objs, tmp_path / "c.json", progress=False)


def test_stream_reader_small_chunks_with_tricky_strings(tmp_path):
    """Brackets, quotes and backslashes inside strings; records longer than a chunk."""
    names = ['"shirt" sign', "[logo]", "{brace}", "back\\slash\\", "é ü"]
    recs = [{"image_id": i, "objects": [obj(i * 10 + k, [n], k, k, 3, 3) for k, n in enumerate(names)]}
            for i in range(1, 40)]
    path = tmp_path / "o.json"
    path.write_text(json.dumps(recs, ensure_ascii=False), encoding="utf-8")
    for chunk in (64, 500, 4096, 1 << 20):
        got = [r for b in iter_record_batches(path, chunk_bytes=chunk) for r in b.records]
        assert got == recs, chunk
    # a syntax error deep in a multi-chunk file: exact record index and byte offset
    text = path.read_text(encoding="utf-8")
    k = text.index('"image_id": 31')
    broken = text[:k] + '"image_id": 31,, ' + text[k + len('"image_id": 31, '):]
    path.write_text(broken, encoding="utf-8")
    with pytest.raises(AnnotationError) as e:
        for _ in iter_record_batches(path, chunk_bytes=700):
            pass
    assert e.value.record == 30
    assert e.value.offset == len(broken[:k + len('"image_id": 31,')].encode("utf-8"))
    path.write_text(text, encoding="utf-8")
    # the index of every batch is the index of its first record
    firsts = [b.first_index for b in iter_record_batches(path, chunk_bytes=700)]
    assert firsts[0] == 0 and firsts == sorted(set(firsts)) and len(firsts) > 3


def test_split_is_deterministic_by_image_id(tmp_path):
    images = [{"image_id": i, "width": 50, "height": 50, "url": f"u/{i}.jpg"} for i in range(1, 201)]
    objs = [{"image_id": i, "objects": [obj(i, ["shoe"], 1, 1, 5, 5)]} for i in range(1, 201)]
    s1, c1 = run(tmp_path, objs, images, val_fraction=0.3, seed=3)
    s2, c2 = run(tmp_path, list(reversed(objs)), images, val_fraction=0.3, seed=3)
    split1 = {i["id"]: i["split"] for i in c1["images"]}
    assert split1 == {i["id"]: i["split"] for i in c2["images"]}
    assert split1 == {i: split_for_image(i, 0.3, 3) for i in range(1, 201)}
    assert 30 <= s1["images"]["val"] <= 90 and s1["images"]["train"] + s1["images"]["val"] == 200
    assert s1["class_counts"]["footwear"]["val"] == s1["images"]["val"]


def test_person_masks_added_after_taxonomy(tmp_path):
    from pycocotools import mask as mask_util

    m = np.zeros((80, 100), np.uint8)
    m[10:30, 20:60] = 1
    rle = mask_util.encode(np.asfortranarray(m))
    rle["counts"] = rle["counts"].decode()
    (tmp_path / "pm.json").write_text(json.dumps({"1": [rle], "77": [rle]}))
    s, coco = run(tmp_path, [{"image_id": 1, "objects": [obj(1, ["shoe"], 1, 1, 5, 5)]}],
                  person_masks=tmp_path / "pm.json")
    assert coco["info"]["classes"][-1] == "person" and len(coco["info"]["classes"]) == len(TAX.classes) + 1
    person = [a for a in coco["annotations"] if a["category_id"] == len(TAX.classes)]
    assert len(person) == 1
    assert person[0]["bbox"] == [20.0, 10.0, 40.0, 20.0] and person[0]["area"] == 800
    assert person[0]["segmentation"] == rle
    assert sorted(a["id"] for a in coco["annotations"]) == [1, 2]
    assert s["dropped_objects"]["person_mask_image_not_kept"] == 1
    assert s["class_counts"]["person"]["images"] == 1


def test_three_class_taxonomy_just_works(tmp_path):
    tax = taxonomy_from_dict({"name": "tiny", "classes": ["__background__", {"name": "shoes", "names": ["shoe"]},
                                                           {"name": "hats", "names": ["hat", "cap"]}]})
    s, coco = run(tmp_path, [{"image_id": 1, "objects": [obj(1, ["shoes"], 1, 1, 5, 5), obj(2, ["cap"], 1, 1, 5, 5),
                                                          obj(3, ["shirt"], 1, 1, 5, 5)]}], taxonomy=tax)
    assert coco["info"]["classes"] == ["__background__", "shoes", "hats"]
    assert sorted(a["category_id"] for a in coco["annotations"]) == [1, 2]
    assert set(s["class_counts"]) == {"shoes", "hats"}


def test_failed_conversion_keeps_previous_output(tmp_path):
    s, _ = run(tmp_path, [{"image_id": 1, "objects": [obj(1, ["shoe"], 1, 1, 5, 5)]}])
    out = tmp_path / "coco.json"
    before, summary_before = out.read_bytes(), summary_path(out).read_bytes()
    idata, objs = write(tmp_path, '[{"image_id": 1, "objects": [{"names": ["shoe"], "x": 1,, }]}]')
    with pytest.raises(AnnotationError):
        convert_vg(idata, objs, out, progress=False)
    assert out.read_bytes() == before and summary_path(out).read_bytes() == summary_before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_limit_keeps_first_images_and_stops_early(tmp_path):
    images = [{"image_id": i, "width": 50, "height": 50, "url": f"u/{i}.jpg"} for i in range(1, 11)]
    objs = [{"image_id": i, "objects": [obj(i, ["shoe"], 1, 1, 5, 5)]} for i in range(1, 11)]
    s, coco = run(tmp_path, objs, images, limit=3)
    assert [i["id"] for i in coco["images"]] == [1, 2, 3] and len(coco["annotations"]) == 3
    assert s["stopped_early"] and s["records_read"] == 3 and s["dropped_images"] == {"beyond_limit": 7}


def test_parallel_workers_give_identical_output(tmp_path, monkeypatch):
    """2 worker processes on small chunks == serial, including a wrong boundary guess (v1.0-like)."""
    import yeay_nb.convert.vg as vg

    monkeypatch.setattr(vg, "CHUNK_BYTES", 2000)
    images = [{"image_id": i, "width": 90, "height": 90, "url": f"u/{i}.jpg"} for i in range(1, 61)]
    objs = [{"image_id": i, "objects": [obj(i * 100 + k, [["shoe", "hat", "tree", "[x]"][k % 4]], k, k, 9, 9)
                                        for k in range(6)]} for i in range(1, 61)]
    s1, c1 = run(tmp_path, objs, images, workers=1)
    s2, c2 = run(tmp_path, objs, images, workers=2)
    assert s2["workers"] == 2 and c1 == c2 and s1["dropped_objects"] == s2["dropped_objects"]
    # v1.0: objects open with the same key as records ("id"): guesses may fall inside records
    v10 = [{"id": r["image_id"], "objects": [{"id": o["object_id"], **{k: o[k] for k in "xywh"},
                                              "object_names": o["names"]} for o in r["objects"]]} for r in objs]
    s3, c3 = run(tmp_path, v10, images, workers=2)
    assert s3["workers"] == 1  # here a guess falls inside a record: the parse refutes it, serial redo
    assert [a["bbox"] for a in c3["annotations"]] == [a["bbox"] for a in c1["annotations"]]
    assert s3["annotations"] == s1["annotations"]


def test_cli_registers_and_converts(tmp_path, capsys):
    idata, objs = write(tmp_path, [{"image_id": 1, "objects": [obj(1, ["shoe"], 1, 1, 5, 5)]}])
    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers())
    ns = parser.parse_args(["vg", "--image-data", str(idata), "--objects", str(objs), "--out",
                            str(tmp_path / "c.json"), "--val-fraction", "0"])
    assert ns.func(ns) == 0
    assert "footwear" in capsys.readouterr().out
    assert load_coco(tmp_path / "c.json")["annotations"][0]["category_id"] == FOOT
    ns = parser.parse_args(["vg", "--image-data", str(idata), "--objects", str(tmp_path / "missing.json"),
                            "--out", str(tmp_path / "c2.json")])
    assert ns.func(ns) == 2
    assert "missing.json" in capsys.readouterr().err and not (tmp_path / "c2.json").exists()


def test_benchmark_tiny_mode(tmp_path):
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_vg_convert.py"), "--tiny", "--no-1proc",
                        "--data", str(tmp_path / "data"), "--json", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert doc["images"] == 500 and doc["same_annotation_count"] is True
    by = {x["variant"]: x for x in doc["results"]}
    assert set(by) == {"baseline", "convert"}
    assert by["convert"]["annotations"] == by["baseline"]["annotations"] > 0
    assert all(x["wall_s"] > 0 and x["tree_peak_rss_mb"] > 0 for x in doc["results"])
    assert 12_000 < doc["objects"] < 23_000  # ~35 objects per image
