"""Class exploration in FiftyOne (notebook 02): datasets, label problems, predictions,
evaluation, videos and the App.

Usage::

    from yeay_nb.fo_db import start_database
    start_database("work/fiftyone-db")            # first: FiftyOne reads its config at import
    from yeay_nb import explore
    ds, report = explore.import_coco("work/coco.json", "yeay-demo", overwrite=True)
    print(explore.counts_table(explore.load_checked_coco("work/coco.json")[0]))
    explore.images_of_class(ds, "dress")          # a view to show in the App
    problems = explore.find_label_problems(coco)  # plain numpy, no database needed
    explore.tag_label_problems(ds, problems)

FiftyOne is imported lazily inside the functions, so this module imports (and its numpy
parts are tested) without a database. Image samples carry ``coco_id``, the split as a tag,
and a ``ground_truth`` Detections field whose detections carry the annotation's ``coco_id``.
"""
from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .convert.coco import class_counts, format_table, load_coco
from .errors import AnnotationError, CheckpointError, YeayError

GT_FIELD = "ground_truth"
PRED_FIELD = "predictions"
PROBLEM_TAG_PREFIX = "problem:"


def _fo():
    """fiftyone, imported on first use (after :func:`yeay_nb.fo_db.start_database`)."""
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    import fiftyone

    return fiftyone


# --------------------------------------------------------------------------- COCO (no DB)
def load_checked_coco(coco_json: str | os.PathLike) -> tuple[dict, dict[int, str]]:
    """Load a COCO json and check its references; return ``(coco, {category_id: name})``.

    An annotation whose ``category_id`` or ``image_id`` is unknown raises
    :class:`~yeay_nb.errors.AnnotationError` naming the file, the annotation and the id.
    """
    coco = load_coco(coco_json)
    file = str(coco_json)
    for key in ("images", "annotations", "categories"):
        if not isinstance(coco.get(key), list):
            raise AnnotationError(f"missing or non-list '{key}'", file=file)
    names: dict[int, str] = {}
    for i, c in enumerate(coco["categories"]):
        if not isinstance(c, dict) or "id" not in c or "name" not in c:
            raise AnnotationError("a category needs 'id' and 'name'", file=file, record=f"categories[{i}]")
        names[c["id"]] = c["name"]
    image_ids = set()
    for i, im in enumerate(coco["images"]):
        for key in ("id", "file_name", "width", "height"):
            if key not in im:
                raise AnnotationError(f"image has no '{key}'", file=file, record=f"images[{i}]")
        image_ids.add(im["id"])
    for i, a in enumerate(coco["annotations"]):
        cid = a.get("category_id")
        if cid not in names:
            known = f"{min(names)}..{max(names)}" if names else "none"
            raise AnnotationError(f"unknown category_id {cid!r} (annotation id {a.get('id')!r}; "
                                  f"known category ids: {known})", file=file, record=f"annotations[{i}]")
        if a.get("image_id") not in image_ids:
            raise AnnotationError(f"unknown image_id {a.get('image_id')!r} (annotation id {a.get('id')!r})",
                                  file=file, record=f"annotations[{i}]")
        bbox = a.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4):
            raise AnnotationError(f"bbox must be [x, y, w, h], got {bbox!r}", file=file,
                                  record=f"annotations[{i}]")
    return coco, names


def images_dir_of(coco: dict, coco_json: str | os.PathLike) -> Path:
    """Where the images are: ``info.images_dir`` (relative to the json), else ``images/`` beside it."""
    base = Path(coco_json).resolve().parent
    given = (coco.get("info") or {}).get("images_dir")
    if given:
        p = Path(given).expanduser()
        return p if p.is_absolute() else (base / p).resolve()
    return base / "images"


def counts_table(coco: dict, *, skip_empty: bool = True) -> str:
    """A text table of annotations per class and split, most frequent first.

    Classes without any annotation are listed on one line at the end (``skip_empty``) rather
    than as rows of zeros: a 38-class taxonomy on a small dataset is mostly empty rows.
    """
    counts = class_counts(coco)
    rows = sorted(counts.items(), key=lambda kv: -(kv[1]["train"] + kv[1]["val"]))
    empty = [name for name, r in rows if r["train"] + r["val"] == 0]
    if skip_empty:
        rows = [(name, r) for name, r in rows if name not in empty]
    text = format_table([(name, r["train"], r["val"], r["images"]) for name, r in rows],
                        ("class", "train", "val", "images"))
    if skip_empty and empty:
        text += f"\n({len(empty)} classes without annotations: {', '.join(empty)})"
    return text


def plot_class_counts(coco: dict, ax=None, *, skip_empty: bool = True):
    """A horizontal bar chart of annotations per class (train and val stacked); returns the Figure."""
    import matplotlib.pyplot as plt

    counts = class_counts(coco)
    if skip_empty:
        counts = {n: r for n, r in counts.items() if r["train"] + r["val"] > 0}
    names = sorted(counts, key=lambda n: counts[n]["train"] + counts[n]["val"])
    train = [counts[n]["train"] for n in names]
    val = [counts[n]["val"] for n in names]
    if ax is None:
        _, ax = plt.subplots(figsize=(7, max(2.0, 0.25 * len(names) + 1)))
    ax.barh(names, train, label="train")
    ax.barh(names, val, left=train, label="val")
    ax.set_xlabel("annotations")
    ax.legend(loc="lower right")
    ax.figure.tight_layout()
    return ax.figure


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between xywh boxes ``a`` (N,4) and ``b`` (M,4)."""
    ax2, ay2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx2, by2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax2[:, None], bx2[None]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(ay2[:, None], by2[None]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def find_label_problems(coco: dict, *, tiny_frac: float = 1e-4, min_side: float = 2.0,
                        huge_frac: float = 0.9, outside_tol: float = 1.0,
                        duplicate_iou: float = 0.9) -> list[dict]:
    """Likely label problems, from the COCO json alone (plain numpy; no database).

    Each problem is ``{"annotation_id", "image_id", "category_id", "problem", "detail"}`` with
    ``problem`` one of:

    - ``tiny``: box area below ``tiny_frac`` of the image, or a side under ``min_side`` pixels
    - ``huge``: box area above ``huge_frac`` of the image
    - ``outside``: box reaches more than ``outside_tol`` pixels beyond the image
    - ``duplicate``: same class, IoU >= ``duplicate_iou`` with an earlier box of the image
      (the earlier box is named in ``detail``; only the later one is flagged)

    Example::

        problems = find_label_problems(load_coco("work/coco.json"))
        Counter(p["problem"] for p in problems)
    """
    size = {im["id"]: (float(im["width"]), float(im["height"])) for im in coco["images"]}
    by_image: dict[Any, list[dict]] = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    out: list[dict] = []

    def flag(a: dict, problem: str, detail: str) -> None:
        out.append({"annotation_id": a.get("id"), "image_id": a["image_id"], "category_id": a["category_id"],
                    "problem": problem, "detail": detail})

    for image_id, anns in by_image.items():
        w_img, h_img = size.get(image_id, (math.nan, math.nan))
        boxes = np.asarray([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
        x, y, w, h = boxes.T
        area = w * h
        img_area = w_img * h_img
        tiny = (area < tiny_frac * img_area) | (w < min_side) | (h < min_side)
        huge = area > huge_frac * img_area
        outside = ((x < -outside_tol) | (y < -outside_tol) | (x + w > w_img + outside_tol)
                   | (y + h > h_img + outside_tol))
        for k, a in enumerate(anns):
            if tiny[k]:
                flag(a, "tiny", f"{w[k]:.1f}x{h[k]:.1f} px in a {w_img:.0f}x{h_img:.0f} image")
            if huge[k]:
                flag(a, "huge", f"covers {area[k] / img_area:.0%} of the image")
            if outside[k]:
                flag(a, "outside", f"box [{x[k]:.1f}, {y[k]:.1f}, {x[k] + w[k]:.1f}, {y[k] + h[k]:.1f}] "
                                   f"vs image {w_img:.0f}x{h_img:.0f}")
        if len(anns) > 1:
            iou = _iou_matrix(boxes, boxes)
            cats = np.asarray([a["category_id"] for a in anns])
            same = (cats[:, None] == cats[None]) & (iou >= duplicate_iou)
            same = np.triu(same, k=1)  # pairs (earlier i, later j)
            flagged = set()
            for i, j in zip(*np.nonzero(same)):
                if j in flagged:
                    continue
                flagged.add(j)
                flag(anns[j], "duplicate", f"IoU {iou[i, j]:.2f} with annotation {anns[i].get('id')}")
    return out


def problems_table(problems: Sequence[Mapping], names: Mapping[int, str]) -> str:
    """A text table: problems per kind and class."""
    c = Counter((p["problem"], names.get(p["category_id"], str(p["category_id"]))) for p in problems)
    rows = [(prob, cls, n) for (prob, cls), n in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))]
    return format_table(rows, ("problem", "class", "annotations"))


# --------------------------------------------------------------------------- masks and boxes
def _rle_of(segmentation: Any, height: int, width: int):
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, list):  # polygons
        polys = [s for s in segmentation if len(s) >= 6]
        if not polys:
            return None
        return mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
    if isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):  # uncompressed RLE
        return mask_utils.frPyObjects(segmentation, height, width)
    return segmentation


def crop_mask(full_mask: np.ndarray, box_xywh: Sequence[float]) -> np.ndarray:
    """The part of a full-image mask under a box, as FiftyOne stores instance masks."""
    x, y, w, h = box_xywh
    return full_mask[int(round(y)):int(round(y + h)), int(round(x)):int(round(x + w))].astype(bool)


def _detection(fo, label: str, box_xywh: Sequence[float], width: float, height: float,
               full_mask: np.ndarray | None = None, **attrs):
    x, y, w, h = (float(v) for v in box_xywh)
    det = fo.Detection(label=label, bounding_box=[x / width, y / height, w / width, h / height], **attrs)
    if full_mask is not None:
        m = crop_mask(full_mask, (x, y, w, h))
        if m.size:
            det.mask = m
    return det


# --------------------------------------------------------------------------- image datasets
@dataclass
class ImportReport:
    """What :func:`import_coco` did: samples and labels added, images skipped."""

    dataset_name: str
    num_samples: int = 0
    num_detections: int = 0
    num_masks: int = 0
    missing_images: list[str] = field(default_factory=list)
    splits: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        miss = f", {len(self.missing_images)} missing image files skipped" if self.missing_images else ""
        return (f"dataset '{self.dataset_name}': {self.num_samples} samples {self.splits}, "
                f"{self.num_detections} boxes, {self.num_masks} masks{miss}")


def _check_name(name: str, overwrite: bool) -> None:
    if not overwrite and _fo().dataset_exists(name):
        raise YeayError(f"FiftyOne dataset '{name}' already exists. Fix: pass overwrite=True "
                        "(params: explore.overwrite: true) or choose another name "
                        "(explore.dataset_name / explore.video_dataset_name).")


def _new_dataset(name: str, overwrite: bool):
    fo = _fo()
    _check_name(name, overwrite)
    if fo.dataset_exists(name):
        fo.delete_dataset(name)
    ds = fo.Dataset(name)
    ds.persistent = True  # survives the kernel: the App (another process) and later sessions see it
    return ds


def import_coco(coco_json: str | os.PathLike, dataset_name: str, *, overwrite: bool = False,
                images_dir: str | os.PathLike | None = None, label_field: str = GT_FIELD,
                max_samples: int | None = None):
    """Load a converter's COCO json into a persistent FiftyOne dataset; return ``(dataset, report)``.

    Boxes go to ``label_field`` (masks too, where annotations have a ``segmentation``), each
    detection keeps its ``coco_id``; each sample is tagged with its split and keeps ``coco_id``.
    Image files that do not exist are counted in ``report.missing_images`` and skipped.
    An existing dataset of that name is an error unless ``overwrite``.

    Example::

        ds, report = import_coco("work/coco.json", "yeay-demo", overwrite=True)
        print(report)
    """
    from tqdm.auto import tqdm

    fo = _fo()
    coco, names = load_checked_coco(coco_json)
    img_dir = Path(images_dir) if images_dir else images_dir_of(coco, coco_json)
    anns_of: dict[Any, list[dict]] = {}
    for a in coco["annotations"]:
        anns_of.setdefault(a["image_id"], []).append(a)
    report = ImportReport(dataset_name)
    images = coco["images"][:max_samples] if max_samples else coco["images"]
    present = [(im, (img_dir / im["file_name"]).resolve()) for im in images]
    report.missing_images = [str(path) for _, path in present if not path.is_file()]
    present = [(im, path) for im, path in present if path.is_file()]
    if images and not present:
        raise AnnotationError(f"none of the {len(images)} image files exist under {img_dir} (e.g. "
                              f"{report.missing_images[0]}). Fix: set info.images_dir in the json or pass "
                              "images_dir", file=str(coco_json))
    ds = _new_dataset(dataset_name, overwrite)  # before the long part: a name clash fails fast
    samples = []
    for im, path in tqdm(present, desc="samples", leave=False):
        width, height = int(im["width"]), int(im["height"])
        dets = []
        for a in anns_of.get(im["id"], []):
            full = None
            seg = a.get("segmentation")
            if seg:
                rle = _rle_of(seg, height, width)
                if rle is not None:
                    from pycocotools import mask as mask_utils

                    full = mask_utils.decode(rle)
                    report.num_masks += 1
            dets.append(_detection(fo, names[a["category_id"]], a["bbox"], width, height, full,
                                   coco_id=a.get("id"), iscrowd=int(a.get("iscrowd", 0)),
                                   area=float(a.get("area", a["bbox"][2] * a["bbox"][3]))))
        split = im.get("split", "train")
        report.splits[split] = report.splits.get(split, 0) + 1
        report.num_detections += len(dets)
        sample = fo.Sample(filepath=str(path), tags=[split], coco_id=im["id"],
                           metadata=fo.ImageMetadata(width=width, height=height))
        sample[label_field] = fo.Detections(detections=dets)
        samples.append(sample)
        if len(samples) == 1000:  # bounded memory on big datasets (masks add up)
            ds.add_samples(samples, progress=False)
            report.num_samples += len(samples)
            samples = []
    ds.add_samples(samples, progress=False)
    report.num_samples += len(samples)
    ds.default_classes = [names[k] for k in sorted(names)]
    ds.info["coco_json"] = str(Path(coco_json).resolve())
    ds.save()
    return ds, report


def count_labels(samples, label_field: str = GT_FIELD) -> dict[str, int]:
    """Labels per class in a dataset or view (computed by the database)."""
    return dict(samples.count_values(f"{label_field}.detections.label"))


def images_of_class(samples, class_name: str, label_field: str = GT_FIELD):
    """The samples that contain ``class_name``, showing only those labels."""
    from fiftyone import ViewField as F

    return samples.filter_labels(label_field, F("label") == class_name)


def class_patches(samples, class_name: str | None = None, label_field: str = GT_FIELD):
    """One patch per object (of ``class_name`` only, when given): browse a class crop by crop."""
    view = images_of_class(samples, class_name, label_field) if class_name else samples
    return view.to_patches(label_field)


def tag_label_problems(dataset, problems: Iterable[Mapping], label_field: str = GT_FIELD) -> dict[str, int]:
    """Tag the labels (and their samples) flagged by :func:`find_label_problems`.

    Labels get the tag ``problem:<kind>``; so do their samples, so that
    ``dataset.match_tags("problem:duplicate")`` lists the images to fix. Old problem tags
    are removed first (re-running after fixing labels does not leave stale tags).
    Returns labels tagged per tag.
    """
    from fiftyone import ViewField as F

    by_kind: dict[str, set] = {}
    for p in problems:
        by_kind.setdefault(PROBLEM_TAG_PREFIX + p["problem"], set()).add(p["annotation_id"])
    old = [t for t in dataset.distinct("tags") if t.startswith(PROBLEM_TAG_PREFIX)]
    if old:
        dataset.untag_samples(old)
    old_labels = [t for t in dataset.distinct(f"{label_field}.detections.tags") if t.startswith(PROBLEM_TAG_PREFIX)]
    if old_labels:
        dataset.untag_labels(old_labels, label_fields=[label_field])
    out = {}
    for tag, ids in sorted(by_kind.items()):
        view = dataset.filter_labels(label_field, F("coco_id").is_in(sorted(ids)))
        view.tag_labels(tag, label_fields=[label_field])
        view.tag_samples(tag)
        out[tag] = view.count(f"{label_field}.detections")
    return out


# --------------------------------------------------------------------------- predictions
def add_predictions(dataset, predictions: Mapping[Any, Mapping], classes: Sequence[str], *,
                    pred_field: str = PRED_FIELD, score_floor: float = 0.0, mask_thresh: float = 0.5) -> int:
    """Add torchvision-style detector outputs to the samples; returns detections added.

    ``predictions`` maps a sample's ``coco_id`` to ``{"boxes": (N,4) xyxy pixels, "labels": (N,)
    indices into classes, "scores": (N,), "masks"?: (N,1,H,W) probabilities}`` (tensors or arrays).
    Samples without an entry are left as they are.
    """
    fo = _fo()
    from fiftyone import ViewField as F

    n = 0
    view = dataset.match(F("coco_id").is_in(list(predictions)))
    for sample in view.iter_samples(autosave=True, progress=False):
        out = predictions[sample.coco_id]
        boxes = _np(out["boxes"]).reshape(-1, 4)
        labels = _np(out["labels"]).astype(int)
        scores = _np(out["scores"]).astype(float)
        masks = _np(out["masks"]) if out.get("masks") is not None else None
        width, height = sample.metadata.width, sample.metadata.height
        dets = []
        for k in range(len(boxes)):
            if scores[k] < score_floor:
                continue
            x1, y1, x2, y2 = boxes[k].tolist()
            if not 0 <= labels[k] < len(classes):
                raise CheckpointError(f"predicted label {labels[k]} is outside the model's "
                                      f"{len(classes)} classes")
            full = masks[k].reshape(masks.shape[-2], masks.shape[-1]) >= mask_thresh if masks is not None else None
            dets.append(_detection(fo, classes[labels[k]], (x1, y1, x2 - x1, y2 - y1), width, height, full,
                                   confidence=float(scores[k])))
        sample[pred_field] = fo.Detections(detections=dets)
        n += len(dets)
    return n


def add_coco_detections(dataset, detections: Sequence[Mapping] | str | os.PathLike, classes: Sequence[str], *,
                        pred_field: str = PRED_FIELD, score_floor: float = 0.0) -> int:
    """Add COCO-format results (``yeay_nb.evaluate.predict_coco`` output, or a results json file:
    ``[{"image_id", "category_id", "bbox": [x, y, w, h], "score", "segmentation"?}]``) as predictions.

    ``category_id`` indexes ``classes`` (the converters' ids are class indices). Every sample of
    an image with results gets ``pred_field``; returns detections added.

    Example::

        dets = predict_coco(model, "work/coco.json", "val")
        add_coco_detections(ds, dets, classes)
    """
    fo = _fo()
    from fiftyone import ViewField as F

    if isinstance(detections, (str, os.PathLike)):
        import orjson

        try:
            detections = orjson.loads(Path(detections).read_bytes())
        except (OSError, orjson.JSONDecodeError) as e:
            raise AnnotationError(f"cannot read COCO results: {e}", file=str(detections)) from None
    by_image: dict[Any, list[Mapping]] = {}
    for i, d in enumerate(detections):
        if not 0 < int(d["category_id"]) < len(classes):
            raise AnnotationError(f"category_id {d['category_id']} is outside the {len(classes)} classes",
                                  record=f"detections[{i}]")
        by_image.setdefault(d["image_id"], []).append(d)
    n = 0
    for sample in dataset.match(F("coco_id").is_in(list(by_image))).iter_samples(autosave=True, progress=False):
        width, height = sample.metadata.width, sample.metadata.height
        dets = []
        for d in by_image[sample.coco_id]:
            if d["score"] < score_floor:
                continue
            full = None
            if d.get("segmentation"):
                from pycocotools import mask as mask_utils

                full = mask_utils.decode(_rle_of(d["segmentation"], height, width))
            dets.append(_detection(fo, classes[int(d["category_id"])], d["bbox"], width, height, full,
                                   confidence=float(d["score"])))
        sample[pred_field] = fo.Detections(detections=dets)
        n += len(dets)
    return n


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _read_rgb(path: str):
    """An image as a float CHW tensor in [0, 1], the input torchvision detectors take."""
    import cv2
    import torch

    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise YeayError(f"cannot read image {path}")
    return torch.from_numpy(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).permute(2, 0, 1).float().div_(255)


def predict_split(dataset, checkpoint: str | os.PathLike, *, split: str | None = "val",
                  pred_field: str = PRED_FIELD, device: str = "cpu", batch_size: int = 2,
                  score_floor: float = 0.05, model=None, classes: Sequence[str] | None = None) -> int:
    """Run a checkpoint over the samples of ``split`` and store its detections; returns how many.

    The checkpoint is loaded with ``yeay_nb.models.load_model(path, device)``; pass ``model``
    and ``classes`` to use a model you already hold (any torchvision detection model).
    """
    import torch

    if model is None:
        ckpt = Path(checkpoint)
        if not ckpt.is_file():
            raise CheckpointError(f"checkpoint not found: {ckpt}. Fix: train first (notebook 03) or set "
                                  "explore.predictions_checkpoint")
        try:
            from .models import load_model
        except ImportError as e:
            raise CheckpointError(f"yeay_nb.models is not available to load {ckpt}: {e}") from None
        model, classes, _ = load_model(ckpt, device)
    if classes is None:
        raise CheckpointError("classes are needed with a model passed in")
    model.eval().to(device)
    view = dataset.match_tags(split) if split else dataset
    ids, paths = view.values(["coco_id", "filepath"])
    outputs: dict[Any, dict] = {}
    with torch.inference_mode():
        for start in range(0, len(ids), batch_size):
            batch = [_read_rgb(p).to(device) for p in paths[start:start + batch_size]]
            for cid, out in zip(ids[start:start + batch_size], model(batch)):
                outputs[cid] = {k: v.cpu() for k, v in out.items()}
    return add_predictions(dataset, outputs, classes, pred_field=pred_field, score_floor=score_floor)


# --------------------------------------------------------------------------- evaluation
def evaluate(samples, *, pred_field: str = PRED_FIELD, gt_field: str = GT_FIELD, eval_key: str = "eval",
             split: str | None = None, use_masks: bool = False):
    """COCO-style evaluation of ``pred_field`` against ``gt_field``; returns FiftyOne's results.

    ``classwise=False`` so a box of the wrong class counts as a confusion between the two
    classes (the confusion matrix then shows which classes the model mixes up). Each label
    gets ``<eval_key>`` = "tp" / "fp" / "fn" for the worst-case views below.

    Example::

        results = evaluate(ds, split="val")
        results.mAP(), per_class_ap(results)
    """
    view = samples.match_tags(split) if split else samples
    return view.evaluate_detections(pred_field, gt_field=gt_field, eval_key=eval_key, method="coco",
                                    compute_mAP=True, classwise=False, use_masks=use_masks)


def per_class_ap(results) -> dict[str, float]:
    """COCO AP (IoU .50:.95) per class; classes with neither boxes nor predictions are left out."""
    out = {}
    for c in results.classes:
        ap = results.mAP(classes=[c])
        if ap >= 0:
            out[str(c)] = float(ap)
    return out


def ap_table(results) -> str:
    """A text table of per-class AP, best first, with the mAP on the last line."""
    ap = per_class_ap(results)
    rows = [(c, f"{v:.3f}") for c, v in sorted(ap.items(), key=lambda kv: -kv[1])]
    rows.append(("mAP", f"{results.mAP():.3f}"))
    return format_table(rows, ("class", "AP"))


def plot_pr_curves(results, classes: Sequence[str] | None = None):
    """PR curves (matplotlib, so they render headless and in saved notebooks)."""
    return results.plot_pr_curves(classes=classes, backend="matplotlib")


def plot_confusion_matrix(results, classes: Sequence[str] | None = None):
    """The confusion matrix, including unmatched boxes as "(none)" (matplotlib)."""
    return results.plot_confusion_matrix(classes=classes, backend="matplotlib")


def worst_false_positives(samples, *, eval_key: str = "eval", pred_field: str = PRED_FIELD):
    """False-positive predictions as patches, most confident first (the model's worst mistakes)."""
    from fiftyone import ViewField as F

    view = samples.filter_labels(pred_field, F(eval_key) == "fp")
    return view.to_patches(pred_field).sort_by(f"{pred_field}.confidence", reverse=True)


def worst_false_negatives(samples, *, eval_key: str = "eval", gt_field: str = GT_FIELD):
    """Missed ground-truth boxes as patches, largest first (a missed big object is the worst miss)."""
    from fiftyone import ViewField as F

    view = samples.filter_labels(gt_field, F(eval_key) == "fn")
    box = F(f"{gt_field}.bounding_box")
    return view.to_patches(gt_field).sort_by(box[2] * box[3], reverse=True)


# --------------------------------------------------------------------------- videos
@dataclass
class VideoImportReport:
    """What :func:`import_video_outputs` did."""

    dataset_name: str
    num_videos: int = 0
    num_frames: int = 0
    num_detections: int = 0
    num_masks: int = 0
    missing_videos: list[str] = field(default_factory=list)
    other_files: list[str] = field(default_factory=list)  # jsons in the folder that are not outputs
    not_browser_playable: list[str] = field(default_factory=list)  # imported, but the App cannot play them

    def __str__(self) -> str:
        miss = f", {len(self.missing_videos)} missing videos skipped" if self.missing_videos else ""
        if self.not_browser_playable:
            miss += (f", {len(self.not_browser_playable)} videos the App cannot play (not H.264/VP9/AV1; "
                     "re-encode them, e.g. fiftyone.utils.video.reencode_videos)")
        return (f"dataset '{self.dataset_name}': {self.num_videos} videos, {self.num_frames} labeled frames, "
                f"{self.num_detections} boxes, {self.num_masks} masks{miss}")


BROWSER_CODECS = {"h264", "vp8", "vp9", "av1"}


def video_codec(path: str | os.PathLike) -> str | None:
    """The codec of a video's first video stream (PyAV), or None when it cannot be opened."""
    import av

    try:
        with av.open(str(path)) as c:
            return c.streams.video[0].codec_context.name if c.streams.video else None
    except (av.error.FFmpegError, OSError):
        return None


_VIDEO_KEYS = ("video_id", "video_loc", "video_dim", "classesInDS", "items")


def _resolve_video(loc: str, json_path: Path, video_dir: Path | None) -> Path | None:
    if "://" in loc:  # a URL: FiftyOne needs a local file; look for a downloaded copy by name
        loc = loc.rstrip("/").rsplit("/", 1)[-1]
    p = Path(loc).expanduser()
    cands = [p] if p.is_absolute() else [json_path.parent / p]
    cands += [d / p.name for d in (video_dir, json_path.parent) if d is not None]
    for c in cands:
        if c.is_file():
            return c.resolve()
    return None


def _looks_like_video_output(path: Path) -> bool:
    """True for a json whose top level has the contract's keys (cheap: ijson stops early)."""
    import ijson

    want = {"video_id", "items"}
    try:
        with open(path, "rb") as f:
            for prefix, event, value in ijson.parse(f):
                if prefix == "" and event == "start_map":
                    continue
                if event == "map_key" and prefix == "":
                    want.discard(value)
                    if not want:
                        return True
                elif prefix == "" and event != "map_key":
                    return False  # not an object at the top level
    except (ijson.JSONError, OSError, UnicodeDecodeError):
        return False
    return False


def read_video_output(json_path: str | os.PathLike) -> dict:
    """Load and check one ``<video_id>.json`` written by ``yeay-nb infer`` (the 2018 contract)."""
    import orjson

    json_path = Path(json_path)
    try:
        doc = orjson.loads(json_path.read_bytes())
    except FileNotFoundError:
        raise AnnotationError("video output json not found", file=str(json_path)) from None
    except orjson.JSONDecodeError as e:
        raise AnnotationError(f"not valid JSON: {e}", file=str(json_path)) from None
    if not isinstance(doc, dict):
        raise AnnotationError("expected a JSON object", file=str(json_path))
    for key in _VIDEO_KEYS:
        if key not in doc:
            raise AnnotationError(f"missing '{key}' (see /work/shared/contract/README.md)", file=str(json_path))
    dim = doc["video_dim"]
    if not (isinstance(dim, list) and len(dim) == 2 and min(dim) > 0):
        raise AnnotationError(f"video_dim must be [width, height], got {dim!r}", file=str(json_path))
    n_cls = len(doc["classesInDS"])
    for i, it in enumerate(doc["items"]):
        if not (isinstance(it, list) and len(it) == 4 and isinstance(it[3], list) and len(it[3]) == 4):
            raise AnnotationError(f"expected [frame_index, class_id, score, [x1, y1, x2, y2]], got {it!r}",
                                  file=str(json_path), record=f"items[{i}]")
        if not 0 <= int(it[1]) < n_cls:
            raise AnnotationError(f"class_id {it[1]} is outside classesInDS ({n_cls} classes)",
                                  file=str(json_path), record=f"items[{i}]")
    masks, idx = doc.get("coco_rle_masks"), doc.get("frame_indices")
    if masks is not None and idx is not None and len(masks) != len(idx):
        raise AnnotationError(f"coco_rle_masks has {len(masks)} frames but frame_indices has {len(idx)}",
                              file=str(json_path))
    return doc


def import_video_outputs(jsons: str | os.PathLike | Sequence[str | os.PathLike], dataset_name: str, *,
                         overwrite: bool = False, video_dir: str | os.PathLike | None = None,
                         min_score: float = 0.0, mask_classes: Sequence[str] | None = None):
    """Import ``yeay-nb infer`` outputs (``<video_id>.json``) as a FiftyOne video dataset.

    ``jsons`` is a folder of outputs or a list of files. Each video becomes a sample with
    frame-level ``detections`` (from ``items``; FiftyOne frame numbers are ``frame_index + 1``)
    and ``masks`` (from ``coco_rle_masks``, whose k-th entry is frame ``frame_indices[k]``, or
    frame k when ``frame_indices`` is absent). The mask classes are read from the json's
    ``mask_classes`` when present, else ``mask_classes`` here, else ``["person"]`` (2018 default).
    The video is found at ``video_loc`` (relative: beside the json), else by its file name in
    ``video_dir`` or beside the json; videos not found are counted and skipped.
    Returns ``(dataset, report)``.

    Example::

        vds, report = import_video_outputs("work/infer", "yeay-videos", overwrite=True)
    """
    from pycocotools import mask as mask_utils

    fo = _fo()
    if isinstance(jsons, (str, os.PathLike)):
        folder = Path(jsons)
        if not folder.is_dir():
            raise AnnotationError("expected a folder of <video_id>.json files", file=str(folder))
        paths = sorted(p for p in folder.glob("*.json") if not p.name.startswith("."))
        folder_mode = True
    else:
        paths = [Path(p) for p in jsons]
        folder_mode = False
    _check_name(dataset_name, overwrite)  # fail before reading every json
    vdir = Path(video_dir) if video_dir else None
    report = VideoImportReport(dataset_name)
    samples = []
    for jp in paths:
        if folder_mode and not _looks_like_video_output(jp):
            report.other_files.append(str(jp))  # e.g. a run summary beside the outputs
            continue
        doc = read_video_output(jp)
        video = _resolve_video(str(doc["video_loc"]), jp, vdir)
        if video is None:
            report.missing_videos.append(str(doc["video_loc"]))
            continue
        width, height = (float(v) for v in doc["video_dim"])
        classes = doc["classesInDS"]
        sample = fo.Sample(filepath=str(video), video_id=str(doc["video_id"]), output_json=str(jp.resolve()),
                           metadata=fo.VideoMetadata(frame_width=int(width), frame_height=int(height),
                                                     frame_rate=doc.get("video_fps"),
                                                     total_frame_count=doc.get("video_fcnt")))
        frames: dict[int, dict[str, list]] = {}
        for frame_index, class_id, score, (x1, y1, x2, y2) in doc["items"]:
            if score < min_score:
                continue
            det = _detection(fo, classes[int(class_id)], (x1, y1, x2 - x1, y2 - y1), width, height,
                             confidence=float(score))
            frames.setdefault(int(frame_index) + 1, {"detections": [], "masks": []})["detections"].append(det)
            report.num_detections += 1
        mask_names = doc.get("mask_classes") or list(mask_classes or ["person"])
        rles = doc.get("coco_rle_masks") or []
        indices = doc.get("frame_indices") or list(range(len(rles)))
        mask_scores = doc.get("mask_scores") or []  # ours: same nesting as coco_rle_masks
        for k, (frame_index, per_class) in enumerate(zip(indices, rles)):
            for m, rle_list in enumerate(per_class):
                label = mask_names[m] if m < len(mask_names) else f"mask_class_{m}"
                for j, rle in enumerate(rle_list):
                    x, y, w, h = mask_utils.toBbox(rle).tolist()
                    if w <= 0 or h <= 0:
                        continue
                    full = mask_utils.decode(rle)
                    try:
                        score = {"confidence": float(mask_scores[k][m][j])}
                    except (IndexError, TypeError, ValueError):
                        score = {}  # 2018 files have no mask scores
                    det = _detection(fo, label, (x, y, w, h), width, height, full, **score)
                    frames.setdefault(int(frame_index) + 1, {"detections": [], "masks": []})["masks"].append(det)
                    report.num_masks += 1
        for fn in sorted(frames):
            sample.frames[fn] = fo.Frame(detections=fo.Detections(detections=frames[fn]["detections"]),
                                         masks=fo.Detections(detections=frames[fn]["masks"]))
        report.num_frames += len(frames)
        if video_codec(video) not in BROWSER_CODECS:
            report.not_browser_playable.append(str(video))
        samples.append(sample)
    ds = _new_dataset(dataset_name, overwrite)
    ds.add_samples(samples)
    report.num_videos = len(samples)
    return ds, report


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; anything else as given."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# --------------------------------------------------------------------------- the App
def launch_app(dataset=None, *, port: int = 5151, address: str = "localhost", remote: bool = True, view=None):
    """Start the FiftyOne App server (``remote``: no browser is opened here); returns the session.

    On a GPU instance, forward the port from your laptop and open http://localhost:<port>::

        ssh -N -L 5151:localhost:5151 user@gpu-host
    """
    fo = _fo()
    return fo.launch_app(dataset, view=view, port=port, address=address, remote=remote, auto=False)
