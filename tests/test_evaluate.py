"""COCO evaluation: AP from pycocotools, per-class table, COCO-format predictions."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from helpers_train import CLASSES, make_toy_coco  # noqa: E402

from yeay_nb.convert.coco import load_coco, split_coco  # noqa: E402
from yeay_nb.evaluate import ap_table, coco_eval, evaluate, merge_flipped, predict_coco  # noqa: E402
from yeay_nb.models import build_model, full_config, save_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_coco(tmp_path_factory.mktemp("toy"), n_images=12, size=(96, 64))


def _perfect(gt):
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9,
             "segmentation": a["segmentation"]} for a in gt["annotations"]]


def test_perfect_detections_score_one_and_wrong_class_scores_zero(toy):
    gt = split_coco(load_coco(toy), "val")
    res = coco_eval(gt, _perfect(gt), "bbox", CLASSES)
    assert res["AP"] == pytest.approx(1.0) and res["AP50"] == pytest.approx(1.0)
    assert set(res["per_class"]) == {"shirt", "hat"}
    # instances per class come with the APs (how far each AP can be trusted)
    want = {n: sum(1 for a in gt["annotations"] if a["category_id"] == CLASSES.index(n)) for n in ("shirt", "hat")}
    assert {n: v["num_gt"] for n, v in res["per_class"].items()} == want and sum(want.values()) > 0
    table = ap_table({"bbox": res})
    assert table.splitlines()[0].split()[:2] == ["class", "boxes"]
    assert any(line.split()[:2] == ["shirt", str(want["shirt"])] for line in table.splitlines())
    assert all(v["AP50"] == pytest.approx(1.0) for v in res["per_class"].values() if v["AP50"] is not None)
    swapped = [{**d, "category_id": 3 - d["category_id"]} for d in _perfect(gt)]
    assert coco_eval(gt, swapped, "bbox", CLASSES)["AP"] == pytest.approx(0.0)
    seg = coco_eval(gt, _perfect(gt), "segm", CLASSES)  # polygons and RLE ground truth both work
    assert seg["AP"] == pytest.approx(1.0)


def test_shifted_boxes_lose_ap75_but_keep_ap50(toy):
    gt = split_coco(load_coco(toy), "val")
    shifted = []
    for d in _perfect(gt):
        x, y, w, h = d["bbox"]
        shifted.append({**d, "bbox": [x + 0.2 * w, y, w, h]})  # IoU = 0.8 / 1.2 = 0.67
    res = coco_eval(gt, shifted, "bbox", CLASSES)
    assert res["AP50"] == pytest.approx(1.0) and res["AP75"] == pytest.approx(0.0)


def test_no_detections_give_zero_not_a_crash(toy):
    gt = split_coco(load_coco(toy), "val")
    res = coco_eval(gt, [], "bbox", CLASSES)
    assert res["AP"] == 0.0 and res["num_detections"] == 0
    assert "shirt" in ap_table({"bbox": res})
    assert sum(v["num_gt"] for v in res["per_class"].values()) == len(gt["annotations"])


def test_predict_coco_format_and_eval_json(toy, tmp_path):
    torch.manual_seed(0)
    cfg = full_config({"arch": "maskrcnn", "backbone": "mobilenet_v3", "norm": "gn", "num_classes": 3,
                       "min_size": 64, "max_size": 96, "test_min_size": 64, "test_max_size": 96,
                       "box_score_thresh": 0.0, "rpn_pre_nms_top_n_test": 50, "rpn_post_nms_top_n_test": 20})
    model = build_model(cfg)
    dets = predict_coco(model, toy, "val", score_thresh=0.0, num_workers=0)
    val_ids = {im["id"] for im in load_coco(toy)["images"] if im["split"] == "val"}
    assert dets, "an untrained model with score_thresh 0 still returns boxes"
    d = dets[0]
    assert d["image_id"] in val_ids and 1 <= d["category_id"] <= 2 and len(d["bbox"]) == 4
    assert isinstance(d["segmentation"]["counts"], str) and d["segmentation"]["size"] == [64, 96]
    json.dumps(dets)  # plain JSON types only
    ckpt = save_checkpoint(tmp_path / "m.pt", model=model, classes=CLASSES, model_config=cfg)
    res = evaluate(ckpt, toy, "val", output_dir=tmp_path, progress=False, num_workers=0)
    on_disk = json.loads((tmp_path / "eval.json").read_text())
    assert on_disk["bbox"]["per_class"].keys() == {"shirt", "hat"} and "segm" in on_disk
    assert on_disk["num_images"] == len(val_ids) == res["num_images"]
    assert res["bbox"]["AP50"] < 0.5  # untrained


def test_box_only_detections_get_no_segm_score(toy):
    gt = split_coco(load_coco(toy), "val")
    dets = [{k: v for k, v in d.items() if k != "segmentation"} for d in _perfect(gt)]
    coco_eval(gt, dets, "bbox", CLASSES)
    assert all("segmentation" not in d for d in dets)  # COCO.loadRes must not have touched our dicts
    assert coco_eval(gt, dets, "segm", CLASSES)["num_detections"] == 0


def test_mask_ap_covers_the_classes_that_have_masks(toy, tmp_path, monkeypatch):
    """The synthetic wardrobe has masks for 'person' only: mask AP is scored for that class
    instead of being skipped, and the result says which classes it covers."""
    import yeay_nb.evaluate as ev

    coco = load_coco(toy)
    for im in coco["images"]:
        im["split"] = "val"  # both classes in the evaluated split
    for a in coco["annotations"]:
        if a["category_id"] == 2:  # "hat": boxes only
            a.pop("segmentation")
    mixed = tmp_path / "mixed.json"
    mixed.write_text(json.dumps(coco))
    gt = split_coco(coco, "val")
    perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9,
                "segmentation": a.get("segmentation") or {"size": [64, 96], "counts": "0"}}
               for a in gt["annotations"]]
    monkeypatch.setattr(ev, "predict_coco", lambda *a, **k: [dict(d) for d in perfect])
    model = build_model(full_config({"arch": "maskrcnn", "backbone": "mobilenet_v3", "num_classes": 3}))
    res = evaluate(model, mixed, "val", progress=False, num_workers=0, images_dir=toy.parent / "images")
    assert res["segm"]["mask_classes"] == ["shirt"]
    assert set(res["segm"]["per_class"]) == {"shirt"}
    assert res["segm"]["AP"] == pytest.approx(1.0)
    assert res["bbox"]["AP"] == pytest.approx(1.0) and set(res["bbox"]["per_class"]) == {"shirt", "hat"}


def test_evaluate_cli_rescoring_at_another_test_scale(toy, tmp_path, capsys, monkeypatch):
    """``yeay-nb evaluate CKPT --test-scale N`` scores the checkpoint at that size (the model really
    sees it), records the settings in eval.json, and names a missing file in one line."""
    from yeay_nb.cli import main

    torch.manual_seed(0)
    cfg = full_config({"arch": "maskrcnn", "backbone": "mobilenet_v3", "norm": "gn", "num_classes": 3,
                       "min_size": 64, "max_size": 96, "test_min_size": 64, "test_max_size": 96,
                       "box_score_thresh": 0.9, "rpn_pre_nms_top_n_test": 50, "rpn_post_nms_top_n_test": 20})
    ckpt = save_checkpoint(tmp_path / "m.pt", model=build_model(cfg), classes=CLASSES, model_config=cfg)
    import yeay_nb.models as models

    seen, load = [], models.load_model

    def load_and_watch(*a, **k):  # the backbone's input size is what the model really saw
        model, classes, c = load(*a, **k)
        model.backbone.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape[-2:])))
        return model, classes, c

    monkeypatch.setattr(models, "load_model", load_and_watch)
    assert main(["evaluate", str(ckpt), "--coco-json", str(toy), "--test-scale", "128", "--test-max-size",
                 "192", "--score-thresh", "0.0", "--workers", "0", "--no-progress",
                 "--output-dir", str(tmp_path / "ts128")]) == 0
    out = capsys.readouterr().out
    assert "test scale 128/192" in out and "shirt" in out
    on_disk = json.loads((tmp_path / "ts128" / "eval.json").read_text())
    assert on_disk["test_config"]["test_min_size"] == 128 and on_disk["test_config"]["score_thresh"] == 0.0
    # the checkpoint's own 0.9 floor is lowered too (an untrained model scores below it)
    assert on_disk["test_config"]["box_score_thresh"] == 0.0 and on_disk["bbox"]["num_detections"] > 0
    assert seen and all(min(hw) == 128 for hw in seen)  # the 64x96 images were resized to 128 short side
    assert main(["evaluate", str(tmp_path / "nope.pt"), "--coco-json", str(toy)]) == 2
    assert f"checkpoint not found: {tmp_path / 'nope.pt'}" in capsys.readouterr().err
    assert main(["evaluate", str(ckpt), "--coco-json", str(tmp_path / "nope.json")]) == 2
    assert "nope.json" in capsys.readouterr().err


def test_merge_flipped_maps_mirrored_boxes_back_and_keeps_the_better_duplicate():
    """A box found on the mirror image comes back at width - x; a garment found in both views is kept
    once (its better score, per class), one found in only one view survives; masks are mirrored back."""
    w = 100
    masks = torch.zeros(2, 1, 50, w)
    masks[0, 0, :, 10:20] = 1
    pred = {"boxes": torch.tensor([[10.0, 0, 20, 10], [40, 0, 50, 10]]), "scores": torch.tensor([0.6, 0.5]),
            "labels": torch.tensor([1, 2]), "masks": masks}
    fmasks = torch.zeros(3, 1, 50, w)
    fmasks[0, 0, :, 80:90] = 1  # the mirror image of pred's first mask
    flipped = {"boxes": torch.tensor([[80.0, 0, 90, 10], [0, 0, 5, 5], [50, 0, 60, 10]]),
               "scores": torch.tensor([0.8, 0.4, 0.7]), "labels": torch.tensor([1, 1, 3]), "masks": fmasks}
    out = merge_flipped(pred, flipped, w, iou_thresh=0.5, max_dets=10)
    got = {(tuple(b.tolist()), int(c)): float(s) for b, c, s in zip(out["boxes"], out["labels"], out["scores"])}
    # [50,0,60,10] mirrored is [40,0,50,10]: the same place as pred's box but another class, so both stay
    assert got == pytest.approx({((10.0, 0.0, 20.0, 10.0), 1): 0.8, ((40.0, 0.0, 50.0, 10.0), 2): 0.5,
                                 ((95.0, 0.0, 100.0, 5.0), 1): 0.4, ((40.0, 0.0, 50.0, 10.0), 3): 0.7})
    assert out["scores"].tolist() == sorted(out["scores"].tolist(), reverse=True)
    assert torch.equal(out["masks"][0], masks[0])  # the kept 0.8 copy, its mask mirrored back onto columns 10-19
    assert len(merge_flipped(pred, flipped, w, max_dets=2)["scores"]) == 2


class _BlueFinder(torch.nn.Module):
    """A stand-in detector: class 1 = the box and mask of the image's blue pixels (mirror-exact), plus a
    fixed class-2 box in the top-left corner of whatever view it is shown."""

    def forward(self, images):
        out = []
        for im in images:
            blue = (im[2] > 0.6) & (im[0] < 0.4)
            boxes, labels, scores, masks = [[0.0, 0.0, 6.0, 6.0]], [2], [0.3], [torch.zeros_like(blue)]
            masks[0][:6, :6] = True
            if blue.any():
                ys, xs = blue.nonzero(as_tuple=True)
                boxes.append([xs.min().item(), ys.min().item(), xs.max().item() + 1.0, ys.max().item() + 1.0])
                labels.append(1), scores.append(0.9), masks.append(blue)
            out.append({"boxes": torch.tensor(boxes), "labels": torch.tensor(labels), "scores": torch.tensor(scores),
                        "masks": torch.stack(masks)[:, None].float()})
        return out


def test_predict_coco_with_flip_merges_the_mirror_views(toy):
    """flip=True: the blue box, seen in both views, comes back once at the same place with the same mask;
    the corner box of the mirrored view comes back in the top-right corner; nothing else changes."""
    plain = predict_coco(_BlueFinder(), toy, "val", score_thresh=0.0, num_workers=0)
    both = predict_coco(_BlueFinder(), toy, "val", score_thresh=0.0, num_workers=0, flip=True)
    width = {im["id"]: im["width"] for im in load_coco(toy)["images"]}
    key = lambda d: (d["image_id"], d["category_id"], tuple(d["bbox"]), d["segmentation"]["counts"])  # noqa: E731
    mirrored_corners = {(i, 2, (w - 6.0, 0.0, 6.0, 6.0)) for i, w in width.items() if i in {d["image_id"] for d in plain}}
    assert any(d["category_id"] == 1 for d in plain)
    assert {key(d) for d in plain} <= {key(d) for d in both}
    extra = [d for d in both if key(d) not in {key(p) for p in plain}]
    assert {(d["image_id"], d["category_id"], tuple(d["bbox"])) for d in extra} == mirrored_corners
    assert len(both) == len(plain) + len(mirrored_corners)
