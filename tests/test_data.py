"""COCO dataset / loader: targets, masks (RLE and polygons), flips, bad images, sampler."""
from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from helpers_train import CLASSES, make_toy_coco  # noqa: E402

from yeay_nb.convert.coco import load_coco, write_coco  # noqa: E402
from yeay_nb.data import (CocoDetectionDataset, GroupedInfiniteBatchSampler, ann_to_mask, collate,  # noqa: E402
                          resolve_images_dir, train_loader)
from yeay_nb.errors import AnnotationError  # noqa: E402


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_coco(tmp_path_factory.mktemp("toy"), n_images=12, size=(96, 64))


def test_targets_match_the_json(toy):
    ds = CocoDetectionDataset(toy, "train", masks=True)
    coco = load_coco(toy)
    assert ds.classes == CLASSES
    assert len(ds) == sum(im["split"] == "train" for im in coco["images"])
    image, target = ds[0]
    im, anns = ds.records[0]
    assert image.dtype == torch.uint8 and tuple(image.shape) == (3, im["height"], im["width"])
    x, y, w, h = anns[0]["bbox"]
    assert target["boxes"][0].tolist() == pytest.approx([x, y, x + w, y + h])
    assert target["labels"].tolist() == [a["category_id"] for a in anns]
    assert target["masks"].shape == (len(anns), im["height"], im["width"])
    # each mask lies inside its box and covers most of it (rectangles fully, ellipses ~pi/4)
    for m, a in zip(target["masks"], anns):
        ys, xs = torch.nonzero(m, as_tuple=True)
        assert xs.min() >= a["bbox"][0] - 1 and xs.max() <= a["bbox"][0] + a["bbox"][2]
        assert m.sum() == pytest.approx(a["area"], rel=0.1)


def test_ann_to_mask_rle_and_polygon_agree():
    m = np.zeros((20, 30), np.uint8)
    m[5:15, 4:24] = 1
    from pycocotools import mask as mu

    rle = mu.encode(np.asfortranarray(m))
    poly = [[4, 5, 23.99, 5, 23.99, 14.99, 4, 14.99]]
    assert np.array_equal(ann_to_mask({"size": [20, 30], "counts": rle["counts"].decode()}, 20, 30), m)
    assert abs(int(ann_to_mask(poly, 20, 30).sum()) - int(m.sum())) <= 30


def test_hflip_flips_boxes_and_masks(toy):
    plain = CocoDetectionDataset(toy, "train", masks=True)
    flip = CocoDetectionDataset(toy, "train", masks=True, hflip=True)
    random.seed(3)
    for i in range(len(plain)):
        (a, ta), (b, tb) = plain[i], flip[i]
        if not torch.equal(a, b):
            break
    else:
        pytest.fail("hflip never flipped")
    w = a.shape[-1]
    assert torch.equal(b, a.flip(-1))
    assert torch.allclose(tb["boxes"][:, 0], w - ta["boxes"][:, 2])
    assert torch.equal(tb["masks"], ta["masks"].flip(-1))


def test_undecodable_image_is_counted_and_skipped(toy, tmp_path):
    coco = load_coco(toy)
    (tmp_path / "images").mkdir()
    for im in coco["images"]:
        src = toy.parent / "images" / im["file_name"]
        (tmp_path / "images" / im["file_name"]).write_bytes(src.read_bytes())
    bad = next(im for im in coco["images"] if im["split"] == "train")
    (tmp_path / "images" / bad["file_name"]).write_bytes(b"not a jpeg")
    path = write_coco(tmp_path / "coco.json", images=coco["images"], annotations=coco["annotations"], classes=CLASSES)
    ds = CocoDetectionDataset(path, "train")
    items = [ds[i] for i in range(len(ds))]
    images, targets, failed = collate(items)
    assert failed == 1 and len(images) == len(ds) - 1
    assert bad["id"] not in {t["image_id"] for t in targets}


def test_empty_split_and_bad_category_raise(toy, tmp_path):
    coco = load_coco(toy)
    with pytest.raises(AnnotationError, match="no images in split 'test'"):
        CocoDetectionDataset(toy, "test")
    anns = [dict(a) for a in coco["annotations"]]
    anns[2]["category_id"] = 9
    path = write_coco(tmp_path / "c.json", images=coco["images"], annotations=anns, classes=CLASSES)
    with pytest.raises(AnnotationError, match=r"c.json.*annotations\[2\]"):
        CocoDetectionDataset(path, "train")
    with pytest.raises(AnnotationError, match="not found"):
        CocoDetectionDataset(tmp_path / "missing.json")


def test_images_dir_resolution(tmp_path):
    json_path = tmp_path / "sub" / "coco.json"
    assert resolve_images_dir({"info": {}}, json_path) == tmp_path / "sub" / "images"
    assert resolve_images_dir({"info": {"images_dir": "../pics"}}, json_path) == tmp_path / "sub" / ".." / "pics"
    assert resolve_images_dir({"info": {"images_dir": "/abs"}}, json_path) == Path("/abs")
    assert resolve_images_dir({"info": {"images_dir": "/abs"}}, json_path, "/given") == Path("/given")


def test_grouped_sampler_groups_by_aspect_and_splits_ranks():
    ratios = [1.5, 0.7] * 10  # landscape / portrait alternating
    seen = []
    for rank in range(2):
        it = iter(GroupedInfiniteBatchSampler(ratios, 3, rank=rank, world_size=2, seed=1))
        batches = [next(it) for _ in range(3)]  # first epoch: 10 images per rank -> 3 full batches
        for b in batches:
            assert len(b) == 3 and len({ratios[i] >= 1 for i in b}) == 1
        seen.append({i for b in batches for i in b})
    assert not seen[0] & seen[1]


def test_train_loader_yields_batches(toy):
    ds = CocoDetectionDataset(toy, "train", drop_empty=True)
    images, targets, failed = next(iter(train_loader(ds, 2, num_workers=0)))
    assert len(images) == 2 and failed == 0 and all(t["boxes"].shape[1] == 4 for t in targets)


def _rare_class_coco(n_images=20, rare=(3, 7)):
    """Class 1 in every image, class 2 (rare) only in the images listed in ``rare``."""
    images = [{"id": i + 1, "file_name": f"{i}.jpg", "width": 60, "height": 40} for i in range(n_images)]
    anns = [{"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [1, 1, 10, 10], "iscrowd": 0}
            for i in range(n_images)]
    anns += [{"id": 100 + i, "image_id": i + 1, "category_id": 2, "bbox": [5, 5, 10, 10], "iscrowd": 0} for i in rare]
    cats = [{"id": 1, "name": "shirt"}, {"id": 2, "name": "watch"}]
    return {"images": images, "annotations": anns, "categories": cats}


def test_repeat_factors_follow_the_rarest_class_of_each_image():
    ds = CocoDetectionDataset(_rare_class_coco(), "train", images_dir="/nonexistent", drop_empty=True)
    factors = ds.repeat_factors(0.4)  # watch in 2/20 images: sqrt(0.4 / 0.1) = 2; shirt everywhere: 1
    assert factors[3] == factors[7] == pytest.approx(2.0)
    assert all(f == 1.0 for i, f in enumerate(factors) if i not in (3, 7))
    assert ds.repeat_factors(0.05) == [1.0] * 20  # no class rarer than 5%


def test_sampler_repeats_images_by_their_factors_with_stochastic_rounding():
    factors = [1.0] * 18 + [2.0, 1.5]
    it = iter(GroupedInfiniteBatchSampler([1.5] * 20, 1, seed=3, repeat_factors=factors))
    epochs = 400
    counts = [0] * 20
    for _ in range(int(epochs * sum(factors))):  # batch size 1: one index per batch
        counts[next(it)[0]] += 1
    per_epoch = [c / epochs for c in counts]
    assert all(abs(p - 1.0) < 0.02 for p in per_epoch[:18])
    assert abs(per_epoch[18] - 2.0) < 0.02 and abs(per_epoch[19] - 1.5) < 0.1
    plain = iter(GroupedInfiniteBatchSampler([1.5] * 20, 1, seed=3))
    assert sorted(next(plain)[0] for _ in range(20)) == list(range(20))  # without factors: each once
    with pytest.raises(ValueError, match="3 repeat factors for 20 images"):
        GroupedInfiniteBatchSampler([1.5] * 20, 1, repeat_factors=[1.0, 1.0, 2.0])
