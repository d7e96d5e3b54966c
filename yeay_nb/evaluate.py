"""COCO evaluation (pycocotools COCOeval): predictions over a split, AP overall and per class.

Usage::

    from yeay_nb.evaluate import evaluate, predict_coco, ap_table
    result = evaluate("work/train/model_final.pt", "work/coco.json", split="val", output_dir="work/train")
    print(ap_table(result))                      # per class AP / AP50, bbox and segm
    dets = predict_coco(model, "work/coco.json", "val", device="cuda", score_thresh=0.05)
    dets = predict_coco(model, "work/coco.json", "val", flip=True)   # + the mirrored images, merged

Headless, a checkpoint re-scored at other test-time settings (the training run's own eval.json
is never touched unless ``--output-dir`` names its folder)::

    yeay-nb evaluate work/train/model_final.pt --coco-json work/coco.json --test-scale 480 \
        --output-dir work/train/eval-ts480

``predict_coco`` returns COCO result dicts (``image_id, category_id, bbox [x, y, w, h],
score`` and, for Mask R-CNN, ``segmentation`` as compressed RLE with a str ``counts``).
Category ids are class indices (our jsons use id = index in ``info.classes``).
"""
from __future__ import annotations

import contextlib
import io
from collections import Counter
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torchvision.ops import batched_nms
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from .atomic import write_json
from .convert.coco import format_table, split_coco

SUMMARY_NAMES = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]


def _dataset(dataset_or_coco_json: Any, split: Optional[str], images_dir=None):
    from .data import CocoDetectionDataset

    if isinstance(dataset_or_coco_json, CocoDetectionDataset):
        return dataset_or_coco_json
    return CocoDetectionDataset(dataset_or_coco_json, split, images_dir=images_dir, masks=False, hflip=False)


def unflip_prediction(pred: dict, width: int) -> dict:
    """A prediction made on a horizontally mirrored image, in the original image's coordinates."""
    out = dict(pred)
    b = pred["boxes"]
    out["boxes"] = torch.stack([width - b[:, 2], b[:, 1], width - b[:, 0], b[:, 3]], dim=1)
    if "masks" in pred:
        out["masks"] = pred["masks"].flip(-1)
    return out


def merge_flipped(pred: dict, flipped_pred: dict, width: int, iou_thresh: float = 0.5, max_dets: int = 100) -> dict:
    """Test-time flip augmentation: the detections on an image and on its mirror image (mapped back),
    pooled and passed through the model's own per-class NMS, best ``max_dets`` kept. A garment seen
    only in one of the two views survives; one seen in both keeps its better-scored copy."""
    back = unflip_prediction(flipped_pred, width)
    pooled = {k: torch.cat([pred[k], back[k]]) for k in pred}
    keep = batched_nms(pooled["boxes"].float(), pooled["scores"].float(), pooled["labels"], iou_thresh)[:max_dets]
    return {k: v[keep] for k, v in pooled.items()}


@torch.no_grad()
def predict_coco(model: torch.nn.Module, dataset_or_coco_json: Any, split: Optional[str] = "val",
                 device: Any = "cpu", score_thresh: float = 0.05, *, images_dir=None, batch_size: int = 4,
                 num_workers: int = 2, mask_thresh: float = 0.5, progress: bool = False,
                 flip: bool = False) -> list[dict]:
    """Run ``model`` over one split; COCO-format detections (RLE masks when the model has them).
    ``flip``: also run the mirrored images and merge (``merge_flipped``; twice the test time).

    Usage::

        model, classes, _ = load_model("model_final.pt")
        dets = predict_coco(model, "work/coco.json", "val", score_thresh=0.3)
    """
    from tqdm.auto import tqdm

    from .data import eval_loader

    ds = _dataset(dataset_or_coco_json, split, images_dir)
    device = torch.device(device)
    was_training = model.training
    model.eval()
    # the merge uses the model's own NMS overlap and detection count (torchvision RoIHeads)
    roi_heads = getattr(model, "roi_heads", None)
    nms_iou = float(getattr(roi_heads, "nms_thresh", 0.5))
    max_dets = int(getattr(roi_heads, "detections_per_img", 100))
    out: list[dict] = []
    loader = eval_loader(ds, batch_size, num_workers=num_workers, pin_memory=device.type == "cuda")
    try:
        for images, targets, _failed in tqdm(loader, desc="predict", disable=not progress, dynamic_ncols=True):
            if not images:
                continue
            batch = [im.to(device, non_blocking=True).float().div_(255) for im in images]
            preds = model(batch)
            if flip:
                mirrored = model([im.flip(-1) for im in batch])
                preds = [merge_flipped(p, m, im.shape[-1], nms_iou, max_dets) for p, m, im in zip(preds, mirrored, batch)]
            for tgt, pred in zip(targets, preds):
                keep = pred["scores"] >= score_thresh
                boxes = pred["boxes"][keep].float().cpu()
                scores = pred["scores"][keep].float().cpu().tolist()
                labels = pred["labels"][keep].cpu().tolist()
                rles = None
                if "masks" in pred:
                    m = (pred["masks"][keep][:, 0] >= mask_thresh).cpu().numpy().astype(np.uint8)
                    rles = mask_utils.encode(np.asfortranarray(m.transpose(1, 2, 0))) if len(m) else []
                xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
                for j, (b, s, c) in enumerate(zip(xywh, scores, labels)):
                    det = {"image_id": tgt["image_id"], "category_id": int(c), "bbox": [round(v, 2) for v in b],
                           "score": round(float(s), 5)}
                    if rles is not None:
                        det["segmentation"] = {"size": rles[j]["size"], "counts": rles[j]["counts"].decode("ascii")}
                    out.append(det)
    finally:
        model.train(was_training)
    return out


def _coco_api(gt: dict) -> COCO:
    coco = COCO()
    anns = []
    for a in gt["annotations"]:
        a = dict(a)
        a.setdefault("iscrowd", 0)
        a.setdefault("area", float(a["bbox"][2] * a["bbox"][3]))
        anns.append(a)
    coco.dataset = {**gt, "annotations": anns}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def coco_eval(gt: dict, detections: list[dict], iou_type: str = "bbox", classes: Optional[list[str]] = None) -> dict:
    """COCOeval summary plus per-class AP/AP50 (from ``eval['precision']``), values in [0, 1].

    A class without ground truth in ``gt`` gets ``None`` (COCO's -1) rather than 0.
    """
    names = {c["id"]: c["name"] for c in gt["categories"]}
    if classes:
        names = {i: n for i, n in enumerate(classes) if i > 0}
    # ground-truth instances per class (crowd regions excluded, as COCOeval ignores them): says how
    # much each class's AP can be trusted, and lets reports average over the frequent classes
    num_gt = Counter(a["category_id"] for a in gt["annotations"] if not a.get("iscrowd", 0))
    # copies: COCO.loadRes adds fields (a box polygon as 'segmentation', 'area', 'id') in place
    dets = [dict(d) for d in detections if iou_type != "segm" or "segmentation" in d]
    coco_gt = _coco_api(gt)
    if not dets or not gt["annotations"]:
        # COCO.loadRes rejects an empty list; nothing detected means AP 0 for classes with ground truth
        present = {a["category_id"] for a in gt["annotations"]}
        per = {names[c]: ({"AP": 0.0, "AP50": 0.0} if c in present else {"AP": None, "AP50": None})
               | {"num_gt": num_gt.get(c, 0)} for c in sorted(names)}
        return {**{k: 0.0 for k in SUMMARY_NAMES}, "per_class": per, "num_detections": len(dets)}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(dets)
        ev = COCOeval(coco_gt, coco_dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = [float(s) for s in ev.stats]
    result: dict[str, Any] = {k: (v if v >= 0 else None) for k, v in zip(SUMMARY_NAMES, stats)}
    # precision: [T iou thresholds, R recall points, K categories, A areas, M max-dets]; area "all", 100 dets
    prec = ev.eval["precision"]
    per = {}
    for k, cat_id in enumerate(ev.params.catIds):
        p_all = prec[:, :, k, 0, -1]
        p_50 = prec[0, :, k, 0, -1]  # iouThrs[0] == 0.5
        per[names.get(cat_id, str(cat_id))] = {
            "AP": float(p_all[p_all > -1].mean()) if (p_all > -1).any() else None,
            "AP50": float(p_50[p_50 > -1].mean()) if (p_50 > -1).any() else None,
            "num_gt": num_gt.get(cat_id, 0),
        }
    result["per_class"] = per
    result["num_detections"] = len(dets)
    return result


def evaluate(model_or_checkpoint: Any, coco_json: str | Path | dict, split: str = "val", *,
             output_dir: Optional[str | Path] = None, device: Any = "cpu", images_dir=None,
             score_thresh: float = 0.05, progress: bool = True, num_workers: int = 2,
             test_overrides: Optional[dict] = None, flip: bool = False) -> dict:
    """Predict over ``split`` and score with COCOeval (bbox, plus segm for Mask R-CNN).

    Writes ``output_dir/eval.json`` atomically when ``output_dir`` is given. ``test_overrides``
    (a checkpoint path only) change test-time settings, e.g. ``{"min_size": 480}``; the settings
    used are recorded as ``test_config``. ``flip``: test-time flip augmentation (``merge_flipped``),
    recorded as ``result["flip"]``. Usage::

        result = evaluate("work/train/model_final.pt", "work/coco.json", output_dir="work/train")
        result["bbox"]["AP50"], result["bbox"]["per_class"]["dress"]["AP"]
    """
    from .data import CocoDetectionDataset
    from .models import TEST_TIME_KEYS, load_model

    # the json first: a bad path or file fails before a checkpoint is read and a model built
    ds = CocoDetectionDataset(coco_json, split, images_dir=images_dir)
    test_config = None
    if isinstance(model_or_checkpoint, (str, Path)):
        model, classes, cfg = load_model(model_or_checkpoint, device, **(test_overrides or {}))
        test_config = {k: cfg[k] for k in TEST_TIME_KEYS if k in cfg and k not in ("min_size", "max_size")}
    elif test_overrides:
        raise ValueError("evaluate: test_overrides need a checkpoint path (a built model keeps its settings)")
    else:
        model, classes = model_or_checkpoint, None
    classes = classes or ds.classes
    dets = predict_coco(model, ds, split, device, score_thresh, num_workers=num_workers, progress=progress, flip=flip)
    gt = split_coco(ds.coco, split)
    roi_heads = getattr(model, "roi_heads", None)
    has_masks = any("segmentation" in d for d in dets) or bool(roi_heads is not None and roi_heads.has_mask())
    result: dict[str, Any] = {"split": split, "num_images": len(ds), "classes": classes, "flip": flip}
    if test_config is not None:
        result["test_config"] = {**test_config, "score_thresh": score_thresh}
    result["bbox"] = coco_eval(gt, dets, "bbox", classes)
    mask_cats = {a["category_id"] for a in gt["annotations"] if a.get("segmentation")} if has_masks else set()
    if mask_cats and all(a.get("segmentation") for a in gt["annotations"]):
        result["segm"] = coco_eval(gt, dets, "segm", classes)
    elif mask_cats:
        # Only some classes carry masks (the synthetic wardrobe and VG: just "person"): score the
        # masks of those classes rather than skipping mask AP, and say which they were.
        gt_m = {**gt, "annotations": [a for a in gt["annotations"] if a["category_id"] in mask_cats and a.get("segmentation")],
                "categories": [c for c in gt["categories"] if c["id"] in mask_cats]}
        result["segm"] = coco_eval(gt_m, [d for d in dets if d["category_id"] in mask_cats], "segm", classes)
        result["segm"]["mask_classes"] = sorted(classes[c] for c in mask_cats)
    if output_dir is not None:
        write_json(Path(output_dir) / "eval.json", result, indent=1)
    return result


def _pct(v: Optional[float]) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def ap_table(result: dict) -> str:
    """Per-class AP / AP50 (in %) for bbox and, when present, segm, plus the overall row."""
    types = [t for t in ("bbox", "segm") if t in result]
    headers = ("class", "boxes") + tuple(f"{t} {m}" for t in types for m in ("AP", "AP50"))
    per = result[types[0]]["per_class"]
    rows = [("(all)", str(sum(v.get("num_gt", 0) for v in per.values())))
            + tuple(_pct(result[t][m]) for t in types for m in ("AP", "AP50"))]
    for name in per:
        rows.append((name, str(per[name].get("num_gt", "-")))
                    + tuple(_pct(result[t]["per_class"].get(name, {}).get(m)) for t in types for m in ("AP", "AP50")))
    return format_table(rows, headers)


@torch.no_grad()
def prediction_images(model: torch.nn.Module, coco_json: Any, split: str = "val", n: int = 6, *,
                      classes: Optional[list[str]] = None, score_thresh: float = 0.5, device: Any = "cpu",
                      images_dir=None) -> tuple[list[np.ndarray], list[str]]:
    """The first ``n`` images of a split with predicted boxes (and masks) drawn, plus titles.

    Usage::

        from yeay_nb import vis
        images, titles = prediction_images(model, "work/coco.json", classes=classes)
        vis.gallery_figure(images, titles)
    """
    from . import vis

    ds = _dataset(coco_json, split, images_dir)
    classes = classes or ds.classes
    was_training = model.training
    model.eval()
    images, titles = [], []
    try:
        for i in range(min(n, len(ds))):
            item = ds[i]
            if item is None:
                continue
            img = item[0]
            pred = model([img.to(device).float() / 255])[0]
            keep = pred["scores"] >= score_thresh
            rgb = img.permute(1, 2, 0).numpy()
            if "masks" in pred:
                rgb = vis.overlay_masks(rgb, list((pred["masks"][keep][:, 0] >= 0.5).cpu().numpy()))
            labels = pred["labels"][keep].tolist()
            rgb = vis.draw_boxes(rgb, pred["boxes"][keep].cpu().tolist(), [classes[c] for c in labels],
                                 scores=pred["scores"][keep].tolist(), class_ids=labels)
            images.append(rgb)
            titles.append(f"image {item[1]['image_id']}: {int(keep.sum())} detections")
    finally:
        model.train(was_training)
    return images, titles


# --------------------------------------------------------------------------- CLI
def _configure(p: Any) -> Any:
    p.add_argument("checkpoint", help="a checkpoint file (model_final.pt or model_XXXXXXX.pt)")
    p.add_argument("--coco-json", required=True, help="the COCO json the model was trained on")
    p.add_argument("--split", default="val")
    p.add_argument("--images-dir", default=None, help="folder of the json's relative file_name entries")
    p.add_argument("--test-scale", type=int, default=None, help="test short side (default: the checkpoint's)")
    p.add_argument("--test-max-size", type=int, default=None, help="test long-side cap (default: the checkpoint's)")
    p.add_argument("--detections-per-image", type=int, default=None)
    p.add_argument("--score-thresh", type=float, default=0.05, help="lowest score kept (default 0.05)")
    p.add_argument("--flip", action="store_true", help="test-time flip augmentation: also the mirrored images, merged by NMS")
    p.add_argument("--output-dir", default=None, help="write eval.json here (atomically)")
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--workers", type=int, default=4, help="data loader workers")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run_cli)
    return p


def run_cli(args: Any) -> int:
    """``yeay-nb evaluate`` / ``python -m yeay_nb.evaluate``: score a checkpoint, print the AP table.
    A missing or bad json / checkpoint is an error naming the file (load_coco, load_checkpoint)."""
    # the model drops boxes under its own box_score_thresh before predict_coco's floor: lower both
    overrides = {"min_size": args.test_scale, "max_size": args.test_max_size,
                 "box_detections_per_img": args.detections_per_image, "box_score_thresh": args.score_thresh}
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    result = evaluate(args.checkpoint, args.coco_json, args.split, output_dir=args.output_dir, device=device,
                      images_dir=args.images_dir, score_thresh=args.score_thresh, progress=not args.no_progress,
                      num_workers=args.workers, test_overrides={k: v for k, v in overrides.items() if v is not None},
                      flip=args.flip)
    tc = result["test_config"]
    print(f"{args.checkpoint} on {result['num_images']} {args.split} images, test scale "
          f"{tc['test_min_size']}/{tc['test_max_size']}, score >= {tc['score_thresh']}" + (", flip merged" if args.flip else ""))
    print(ap_table(result))
    if args.output_dir:
        print(f"wrote {Path(args.output_dir) / 'eval.json'}")
    return 0


def add_cli(subparsers: Any) -> Any:
    """Register ``yeay-nb evaluate CKPT --coco-json J [--test-scale N ...]``."""
    return _configure(subparsers.add_parser("evaluate", help="COCO AP of a checkpoint (other test scales too)",
                                            description=run_cli.__doc__))


def main(argv: Optional[list[str]] = None) -> int:
    import argparse

    from .cli import run_module

    return run_module(_configure(argparse.ArgumentParser(prog="python -m yeay_nb.evaluate")), argv)


if __name__ == "__main__":
    raise SystemExit(main())
