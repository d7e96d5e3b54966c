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


def test_copy_paste_puts_source_pixels_on_top_and_shrinks_what_it_hides():
    """copy_paste: the pasted object's pixels come from the (scaled) source, the target's masks lose
    what is covered and their boxes follow, a hidden object is dropped, a box-only one keeps its box."""
    from yeay_nb.data import boxes_from_masks, copy_paste

    h, w = 40, 60
    image = torch.full((3, h, w), 10, dtype=torch.uint8)
    masks = np.zeros((3, h, w), np.uint8)
    masks[0, 5:25, 5:45] = 1      # half covered below
    masks[1, 12:16, 22:26] = 1    # entirely covered: dropped
    masks[2, 0:10, 50:60] = 1     # box-only object (its filled box), untouched
    has_mask = np.array([True, True, False])
    boxes = torch.from_numpy(boxes_from_masks(masks))
    labels = torch.tensor([1, 2, 3])
    src = torch.full((3, 20, 20), 200, dtype=torch.uint8)
    src_masks = np.zeros((1, 20, 20), np.uint8)
    src_masks[0, :, :] = 1         # the whole 20x20 source, scaled x1.5 to 30x30 at x=20, y=10
    out_img, out_boxes, out_labels, out_masks, out_has = copy_paste(
        image, boxes, labels, masks, has_mask, src, torch.tensor([4]), src_masks, 1.5, (20, 10))
    assert out_labels.tolist() == [1, 3, 4] and out_has.tolist() == [True, False, True]
    assert (out_img[:, 10:40, 20:50] == 200).all() and (out_img[:, :10] == 10).all()
    assert out_boxes[-1].tolist() == [20, 10, 50, 40]
    # object 0 lost x 20-45 from row 10 on: its mask and box are what is still visible
    assert out_masks[0].sum() == masks[0].sum() - 15 * 25 and out_boxes[0].tolist() == [5, 5, 45, 25]
    assert out_masks[0][10:25, 20:45].sum() == 0
    assert out_boxes[1].tolist() == boxes[2].tolist()  # box-only: keeps its box
    # unoccluded objects (a person under a garment) keep their whole mask and box, even when all covered
    _, kept_boxes, kept_labels, kept_masks, _ = copy_paste(image, boxes, labels, masks, has_mask, src, torch.tensor([4]),
                                                           src_masks, 1.5, (20, 10), np.array([True, True, False]))
    assert kept_labels.tolist() == [1, 2, 3, 4] and (kept_masks[:3] == masks).all()
    assert kept_boxes[:3].tolist() == boxes.tolist()
    assert image[0, 20, 30] == 10 and masks[0].sum() == 20 * 40  # inputs untouched
    with pytest.raises(ValueError, match="does not fit"):
        copy_paste(image, boxes, labels, masks, has_mask, src, torch.tensor([4]), src_masks, 1.5, (40, 10))


def test_dataset_copy_paste_gives_consistent_targets(toy):
    """copy_paste=1.0: every training image gets another image's objects; each box encloses its mask,
    labels stay valid and no degenerate box appears; the original pixels of an uncovered area stay."""
    plain = CocoDetectionDataset(toy, "train", masks=True)
    pasted = CocoDetectionDataset(toy, "train", masks=True, copy_paste=1.0)
    random.seed(3)
    more = 0
    for i in range(len(plain)):
        (img0, t0), (img1, t1) = plain[i], pasted[i]
        assert t1["masks"].shape[0] == len(t1["boxes"]) == len(t1["labels"]) and t1["masks"].shape[1:] == img0.shape[1:]
        m = t1["masks"].numpy()
        from yeay_nb.data import boxes_from_masks

        assert np.allclose(boxes_from_masks(m), t1["boxes"].numpy())  # every toy object has a mask
        assert ((t1["boxes"][:, 2:] - t1["boxes"][:, :2]) >= 1).all()
        assert set(t1["labels"].tolist()) <= {1, 2}
        uncovered = ~m.any(axis=0) & ~t0["masks"].numpy().any(axis=0)
        assert (img1[:, torch.from_numpy(uncovered)] == img0[:, torch.from_numpy(uncovered)]).float().mean() > 0.5
        more += len(t1["labels"]) > len(t0["labels"])
    assert more >= len(plain) // 2  # most images gained objects
    flipped = CocoDetectionDataset(toy, "train", masks=True, hflip=True, copy_paste=1.0)
    for i in range(len(flipped)):  # the flip comes after the paste: boxes and masks still agree
        _, t = flipped[i]
        assert np.allclose(boxes_from_masks(t["masks"].numpy()), t["boxes"].numpy())
    boxes_only = CocoDetectionDataset(toy, "train", masks=False, copy_paste=1.0)
    assert "masks" not in boxes_only[0][1]  # Faster R-CNN: pasted boxes, no masks in the target
    with pytest.raises(ValueError, match="copy_paste"):
        CocoDetectionDataset(toy, "train", copy_paste=1.5)


def test_copy_paste_takes_its_objects_from_another_image(toy, monkeypatch):
    ds = CocoDetectionDataset(toy, "train", masks=True, copy_paste=1.0)
    monkeypatch.setattr(random, "randrange", lambda n: 0)  # the first candidate source
    reads, read = [], ds.read_image
    monkeypatch.setattr(ds, "read_image", lambda i: (reads.append(i), read(i))[1])
    _, t = ds[0]
    assert reads == [0, 1]  # image 0 itself is never its own source
    src_labels = [a["category_id"] for a in ds.records[1][1]]
    assert t["labels"].tolist()[-len(src_labels):] == src_labels


def test_boxes_from_masks_pixel_edges_and_empty_masks():
    from yeay_nb.data import boxes_from_masks

    m = np.zeros((3, 6, 8), np.uint8)
    m[0, 2, 3] = 1                 # one pixel
    m[1, 1:5, 0:8] = 1             # touches both side edges
    assert boxes_from_masks(m).tolist() == [[3, 2, 4, 3], [0, 1, 8, 5], [0, 0, 0, 0]]
    assert boxes_from_masks(np.zeros((0, 6, 8), np.uint8)).shape == (0, 4)


def test_copy_paste_exclude_never_pastes_those_classes(toy, monkeypatch):
    """copy_paste_exclude=["hat"]: the source's hats stay behind, its shirts are pasted (the same paste
    without the option brings the hats); a class the json does not have is an error naming it."""
    every = CocoDetectionDataset(toy, "train", masks=True, copy_paste=1.0)
    no_hats = CocoDetectionDataset(toy, "train", masks=True, copy_paste=1.0, copy_paste_exclude=["hat"])
    src = next(j for j in range(1, len(every)) if {a["category_id"] for a in every.records[j][1]} == {1, 2})
    monkeypatch.setattr(random, "randrange", lambda n: src - 1)  # image 0 gets image src's objects
    monkeypatch.setattr(random, "uniform", lambda a, b: 1.0)      # pasted at full size: none too small
    own = CocoDetectionDataset(toy, "train", masks=True)[0][1]["labels"].tolist()
    src_labels = [a["category_id"] for a in every.records[src][1]]
    with_hats, without = every[0][1]["labels"].tolist(), no_hats[0][1]["labels"].tolist()
    assert with_hats[-len(src_labels):] == src_labels  # control: the source's hats do come along
    shirts = [c for c in src_labels if c == 1]
    assert shirts and without[-len(shirts):] == shirts            # the shirts are pasted, in order
    assert without.count(2) <= own.count(2) < with_hats.count(2)   # no hat added (own ones may be hidden)
    with pytest.raises(AnnotationError, match=r"copy_paste_exclude names \['coat'\].*shirt, hat"):
        CocoDetectionDataset(toy, "train", copy_paste=0.5, copy_paste_exclude=["coat"])
    with pytest.raises(AnnotationError, match=r"copy_paste_unoccluded names \['coat'\]"):
        CocoDetectionDataset(toy, "train", copy_paste=0.5, copy_paste_unoccluded=["coat"])


def test_copy_paste_unoccluded_classes_keep_their_masks(toy, monkeypatch):
    """copy_paste_unoccluded naming every class: under a full-size paste each of the image's objects
    keeps its mask and box and the same objects are pasted, where without the option pastes cover
    (shrink or drop) some of them."""
    monkeypatch.setattr(random, "uniform", lambda a, b: 1.0)   # full size: the paste covers a lot
    own = CocoDetectionDataset(toy, "train", masks=True)
    plain = CocoDetectionDataset(toy, "train", masks=True, copy_paste=1.0)
    worn = CocoDetectionDataset(toy, "train", masks=True, copy_paste=1.0, copy_paste_unoccluded=["shirt", "hat"])
    covered = 0
    for i in range(len(own)):
        before = own[i][1]
        n = len(before["labels"])
        random.seed(i)
        t_plain = plain[i][1]
        random.seed(i)  # the same source and offset
        t_worn = worn[i][1]
        assert t_worn["labels"][:n].tolist() == before["labels"].tolist()
        assert (t_worn["masks"][:n] == before["masks"]).all() and (t_worn["boxes"][:n] == before["boxes"]).all()
        pasted = len(t_worn["labels"]) - n
        assert pasted > 0 and t_worn["labels"][n:].tolist() == t_plain["labels"][-pasted:].tolist()
        assert (t_worn["masks"][n:] == t_plain["masks"][-pasted:]).all()
        own_left = t_plain["masks"][:len(t_plain["labels"]) - pasted]
        covered += len(own_left) < n or int(own_left.sum()) < int(before["masks"].sum())
    assert covered >= 2  # the control: without the option, pastes did cover the image's objects


def test_copy_paste_rare_threshold_draws_sources_by_their_repeat_factor():
    """copy_paste_rare_threshold: the two images with the rare class (factor 2 at 0.4) are pasted from
    twice as often as each other image, never onto themselves; without it every other image is equally
    likely; a threshold outside (0, 1] is an error naming the key."""
    from yeay_nb.params import ParamsError, params_from_dict

    coco = _rare_class_coco()
    rare = CocoDetectionDataset(coco, "train", images_dir="/nonexistent", drop_empty=True, copy_paste=1.0,
                                copy_paste_rare_threshold=0.4)
    plain = CocoDetectionDataset(coco, "train", images_dir="/nonexistent", drop_empty=True, copy_paste=1.0)
    random.seed(0)
    draws = 22000
    for ds, want_rare in ((rare, 2 / 21), (plain, 1 / 19)):
        counts = np.bincount([ds._paste_source(0) for _ in range(draws)], minlength=20) / draws
        assert counts[0] == 0  # never its own source
        assert abs(counts[3] - want_rare) < 0.01 and abs(counts[7] - want_rare) < 0.01
        others = np.delete(counts, [0, 3, 7])
        assert np.all(np.abs(others - (1 - 2 * want_rare) / 17) < 0.01)
    # the rare images draw a source too, never themselves
    assert 3 not in {rare._paste_source(3) for _ in range(500)}
    with pytest.raises(ParamsError, match="train.copy_paste_rare_threshold"):
        params_from_dict({"train": {"copy_paste_rare_threshold": 0}}, file="x.yaml")


def test_color_jitter_changes_pixels_only_and_is_checked(toy):
    """color_jitter: the training image's colours move (each image differently), its size, boxes,
    labels and masks stay; 0 leaves the image as decoded; a value outside [0, 1) is an error naming it."""
    from yeay_nb.params import ParamsError, params_from_dict

    plain = CocoDetectionDataset(toy, "train", masks=True)
    jitter = CocoDetectionDataset(toy, "train", masks=True, color_jitter=0.4)
    torch.manual_seed(0)
    moved = []
    for i in range(4):
        (a, ta), (b, tb) = plain[i], jitter[i]
        assert b.dtype == torch.uint8 and b.shape == a.shape
        assert torch.equal(ta["boxes"], tb["boxes"]) and torch.equal(ta["labels"], tb["labels"])
        assert torch.equal(ta["masks"], tb["masks"])
        moved.append((b.float() - a.float()).abs().mean().item())
    assert min(moved) > 0.5 and len({round(m, 3) for m in moved}) == 4
    assert torch.equal(CocoDetectionDataset(toy, "train", color_jitter=0.0)[0][0], plain[0][0])
    with pytest.raises(ValueError, match="color_jitter"):
        CocoDetectionDataset(toy, "train", color_jitter=1.0)
    with pytest.raises(ParamsError, match="train.color_jitter"):
        params_from_dict({"train": {"color_jitter": -0.1}}, file="x.yaml")
