"""Clothing Co-Parsing (CCP) pixel-level label maps -> one COCO instances json.

Usage::

    from yeay_nb.convert.ccp import convert_ccp, format_summary
    summary = convert_ccp("../shared/data/ccp", "work/ccp_coco.json")
    print(format_summary(summary))

or ``yeay-nb convert ccp --root ../shared/data/ccp --out coco.json``
(also ``python -m yeay_nb.convert.ccp --root ... --out ...``).

What is made of each ``annotations/pixel-level/NNNN.mat`` (variable ``groundtruth``,
an h x w map of indices into ``label_list.mat``):

- one ``person`` instance: the union of every non-background label (CCP labels skin
  and hair too: the person is all of them);
- clothing instances: the CCP labels are mapped to taxonomy classes
  (``taxonomies/ccp_mapping.yaml``), labels of the same class are merged, then each
  8-connected component of a class is one instance; components smaller than
  ``min_component_area`` pixels are specks, dropped and counted.

Masks are COCO compressed RLE (``counts`` a str), ``bbox``/``area`` from
:mod:`pycocotools.mask`. Image ``NNNN`` goes to ``val`` when ``NNNN % holdout_every == 0``
(200 of the 1004 images for 5), else ``train``. ``info.images_dir`` is the absolute
path of ``root/photos``.

Bad input, and what happens (all counted in the summary's ``dropped`` and listed
with the reason under ``skipped``):

- root, ``label_list.mat``, ``annotations/pixel-level`` or ``photos`` missing, or no
  ``.mat`` at all: :class:`AnnotationError` naming the path (nothing to convert);
- a corrupt ``.mat`` (unreadable, no ``groundtruth``, not 2-D, label index outside
  ``label_list``): skipped and counted (``corrupt_label_map``): one bad file should
  not cost a 1004-image conversion, and the summary names it;
- a label map whose shape differs from its photo: skipped and counted
  (``shape_mismatch``): its masks would not line up with the pixels;
- a missing or unreadable photo: skipped and counted (``missing_photo`` /
  ``unreadable_photo``);
- an empty label map (all background, CCP's 0536): the image is kept with no
  annotations (a true negative) and listed under ``empty_label_maps``;
- a mapping naming a class the taxonomy lacks, or a label CCP does not have:
  :class:`TaxonomyError` naming the mapping file and the label (a taxonomy with other
  classes needs its own mapping; silently skipping would hide typos).
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..atomic import write_json
from ..errors import AnnotationError, ParamsError, TaxonomyError
from ..taxonomy import TAXONOMY_DIR, Taxonomy, load_taxonomy
from .coco import PERSON, categories_for, class_counts, format_table, write_coco

DEFAULT_MAPPING = TAXONOMY_DIR / "ccp_mapping.yaml"
LABEL_MAP_DIR = Path("annotations") / "pixel-level"
PHOTOS_DIR = "photos"

# Why an image was skipped (keys of summary["dropped"] besides "speck_components").
SKIP_REASONS = ("corrupt_label_map", "shape_mismatch", "missing_photo", "unreadable_photo",
                "bad_file_name", "duplicate_id")


# --------------------------------------------------------------------------- inputs
def _load_mat(path: Path) -> dict:
    """``scipy.io.loadmat`` with every failure turned into an AnnotationError naming the file."""
    import scipy.io

    try:
        return scipy.io.loadmat(str(path))
    except Exception as e:  # scipy raises ValueError, TypeError, MatReadError, OSError... on bad files
        raise AnnotationError(f"cannot read .mat file: {type(e).__name__}: {e}", file=str(path)) from None


def ccp_label_names(root: str | os.PathLike) -> list[str]:
    """The CCP label names in index order, read from ``root/label_list.mat`` (index 0 'null').

    >>> ccp_label_names("../shared/data/ccp")[:3]
    ['null', 'accessories', 'bag']
    """
    path = Path(root) / "label_list.mat"
    if not path.is_file():
        raise AnnotationError("CCP label list not found (expected label_list.mat in the CCP root)",
                              file=str(path))
    mat = _load_mat(path)
    if "label_list" not in mat:
        raise AnnotationError(f"no variable 'label_list' (found {sorted(k for k in mat if not k.startswith('__'))})",
                              file=str(path))
    cells = np.asarray(mat["label_list"])
    names: list[str] = []
    if cells.dtype == object:  # a MATLAB cell array: each cell a 1-element str array (0 elements if '')
        for cell in cells.ravel(order="F"):
            cell = np.asarray(cell).ravel()
            names.append(str(cell[0]).strip() if cell.size else "")
    elif cells.dtype.kind == "U":  # a char matrix, one name per row
        names = [str(s).strip() for s in cells.ravel()]
    else:
        raise AnnotationError(f"'label_list' must be a cell array of strings, got {cells.dtype}", file=str(path))
    if not names:
        raise AnnotationError("'label_list' is empty", file=str(path))
    return names


def load_ccp_mapping(path: str | os.PathLike | None, label_names: list[str],
                     taxonomy: Taxonomy) -> dict[str, int | None]:
    """CCP label name -> taxonomy class index (None: no clothing instance), checked.

    Only the labels the file lists are keys; a CCP label it leaves out makes no clothing
    instance either, and :func:`convert_ccp` reports it as ``labels_not_in_mapping``.
    """
    import yaml

    path = Path(path) if path else DEFAULT_MAPPING
    src = str(path)
    if not path.is_file():
        raise TaxonomyError(f"CCP mapping file not found: {src}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise TaxonomyError(f"{src}: not valid YAML: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("labels"), dict):
        raise TaxonomyError(f"{src}: expected a mapping with a 'labels' mapping (CCP label: class or ~)")
    known = set(label_names)
    out: dict[str, int | None] = {}
    for label, cls in data["labels"].items():
        if not isinstance(label, str):
            raise TaxonomyError(f"{src}: label {label!r} is not a string (quote it: YAML reads a bare "
                                f"null/yes/no/on/off or number as a non-string)")
        if label not in known:
            raise TaxonomyError(f"{src}: label '{label}' is not a CCP label (label_list.mat has "
                                f"{len(label_names)} labels: {', '.join(label_names)})")
        out[label] = None
        if cls is None:
            continue
        if not isinstance(cls, str):
            raise TaxonomyError(f"{src}: label '{label}' maps to {cls!r}; expected a class name or ~")
        if cls not in taxonomy.classes or cls == taxonomy.classes[0]:
            raise TaxonomyError(f"{src}: label '{label}' maps to class '{cls}', which taxonomy "
                                f"{taxonomy.name} ({taxonomy.source}) does not have; write a mapping "
                                f"for this taxonomy or map the label to ~")
        out[label] = taxonomy.classes.index(cls)
    return out


# --------------------------------------------------------------------------- one image (in a worker)
_WORKER: dict[str, Any] = {}


def _init_worker(lut: list[int], min_component_area: int, person_id: int, pool: bool = True) -> None:
    """Per-process state: the label -> class lookup table and the thresholds."""
    if pool:  # not in the caller's own process: a notebook's later cv2 calls keep their threads
        import cv2

        cv2.setNumThreads(1)  # the pool already uses every core; cv2's own threads would fight it
    _WORKER.update(lut=np.asarray(lut, dtype=np.uint8 if max(lut) < 256 else np.int32),
                   min_area=int(min_component_area), person_id=int(person_id))


def _encode(masks: np.ndarray) -> list[dict]:
    """h x w x N uint8 masks -> N COCO annotations' (segmentation, area, bbox)."""
    from pycocotools import mask as mask_util

    rles = mask_util.encode(np.asfortranarray(masks))  # no copy when already Fortran order
    areas = mask_util.area(rles)
    boxes = mask_util.toBbox(rles)
    out = []
    for rle, area, box in zip(rles, areas, boxes):
        out.append({"segmentation": {"size": [int(x) for x in rle["size"]], "counts": rle["counts"].decode("ascii")},
                    "area": int(area), "bbox": [float(x) for x in box]})
    return out


def read_label_map(mat_path: str | os.PathLike, num_labels: int | None = None) -> np.ndarray:
    """The ``groundtruth`` h x w label map of one CCP ``.mat``, checked (AnnotationError naming it)."""
    mat_path = Path(mat_path)
    mat = _load_mat(mat_path)
    if "groundtruth" not in mat:
        raise AnnotationError(f"no variable 'groundtruth' (found {sorted(k for k in mat if not k.startswith('__'))})",
                              file=str(mat_path))
    gt = np.asarray(mat["groundtruth"])
    if gt.ndim != 2 or gt.size == 0:
        raise AnnotationError(f"'groundtruth' must be a non-empty 2-D label map, got shape {gt.shape}",
                              file=str(mat_path))
    if gt.dtype.kind not in "uib":
        if gt.dtype.kind != "f" or not np.all(np.isfinite(gt)) or not np.all(gt == np.round(gt)):
            raise AnnotationError(f"'groundtruth' must hold integer label indices, got {gt.dtype}",
                                  file=str(mat_path))
    # C order (loadmat gives Fortran order) and a small unsigned dtype: the lookups that follow
    # (bincount, lut[gt]) are several times faster on it than on a strided int64 copy.
    lo, hi = int(gt.min()), int(gt.max())
    if lo >= 0 and hi < 2**16:
        gt = np.ascontiguousarray(gt, dtype=np.uint8 if hi < 256 else np.uint16)
    if lo < 0 or (num_labels is not None and hi >= num_labels):
        raise AnnotationError(f"label index out of range [{lo}, {hi}]; label_list.mat has {num_labels} labels",
                              file=str(mat_path))
    return gt


def _photo_size(photo: Path) -> tuple[int, int]:
    """(width, height) from the image header only (no pixel decoding)."""
    from PIL import Image

    with Image.open(photo) as im:
        return im.size


def _convert_one(task: tuple[int, str, str, str]) -> dict:
    """Convert one label map; never raises for bad input (returns a skip reason instead)."""
    import cv2

    image_id, stem, mat_path, photo_path = task
    lut, min_area, person_id = _WORKER["lut"], _WORKER["min_area"], _WORKER["person_id"]
    result: dict[str, Any] = {"image_id": image_id, "skip": None, "message": "", "annotations": [],
                              "specks": {}, "speck_pixels": 0, "label_pixels": None, "empty": False}
    try:
        gt = read_label_map(mat_path, num_labels=len(lut))
    except AnnotationError as e:
        result.update(skip="corrupt_label_map", message=str(e))
        return result
    photo = Path(photo_path)
    if not photo.is_file():
        result.update(skip="missing_photo", message=f"file {photo}: photo not found for label map {mat_path}")
        return result
    try:
        width, height = _photo_size(photo)
    except Exception as e:  # PIL raises UnidentifiedImageError, OSError, ... on bad files
        result.update(skip="unreadable_photo", message=f"file {photo}: cannot read image: {e}")
        return result
    if gt.shape != (height, width):
        result.update(skip="shape_mismatch",
                      message=f"file {mat_path}: label map is {gt.shape[1]}x{gt.shape[0]} (w x h) but photo "
                              f"{photo.name} is {width}x{height}")
        return result
    result["image"] = {"id": image_id, "file_name": photo.name, "width": width, "height": height}
    result["label_pixels"] = np.bincount(gt.ravel(), minlength=len(lut)).tolist()

    person = gt > 0
    if not person.any():
        result["empty"] = True
        return result
    anns = []
    (p,) = _encode(person[:, :, None].astype(np.uint8))
    anns.append({**p, "category_id": person_id})

    # Map labels to classes first, so labels of one class (shoes + boots) merge into one region.
    class_map = lut[gt]
    present = sorted({int(lut[i]) for i in np.flatnonzero(result["label_pixels"])} - {0})
    specks: Counter = Counter()
    for cls in present:
        region = class_map == cls
        # Components are taken on the region's bounding box, not the whole image: the
        # connected-component pass was most of the time per image (benchmarks/bench_convert_ccp.py).
        rows, cols = np.flatnonzero(region.any(axis=1)), np.flatnonzero(region.any(axis=0))
        y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        crop = np.ascontiguousarray(region[y0:y1, x0:x1], dtype=np.uint8)
        n, comp, stats, _ = cv2.connectedComponentsWithStats(crop, connectivity=8)
        keep = []
        for k in range(1, n):  # 0 is everything outside the region
            area = int(stats[k, cv2.CC_STAT_AREA])
            if area < min_area:
                specks[cls] += 1
                result["speck_pixels"] += area
            else:
                keep.append(k)
        # OpenCV's label order depends on its algorithm (and on the crop); sort so the json
        # does not: top-most, then left-most component first.
        keep.sort(key=lambda k: (stats[k, cv2.CC_STAT_TOP], stats[k, cv2.CC_STAT_LEFT], -stats[k, cv2.CC_STAT_AREA], k))
        if keep:
            masks = np.zeros((gt.shape[0], gt.shape[1], len(keep)), dtype=np.uint8, order="F")
            for i, k in enumerate(keep):
                masks[y0:y1, x0:x1, i] = comp == k
            anns += [{**a, "category_id": cls} for a in _encode(masks)]
    result["annotations"] = anns
    result["specks"] = dict(specks)
    return result


# --------------------------------------------------------------------------- the conversion
def _list_label_maps(root: Path) -> tuple[list[tuple[int, str, str, str]], dict[str, list[str]]]:
    """(image_id, stem, mat path, photo path) sorted by id, plus files skipped by name."""
    skipped: dict[str, list[str]] = {"bad_file_name": [], "duplicate_id": []}
    tasks: dict[int, tuple[int, str, str, str]] = {}
    for mat in sorted((root / LABEL_MAP_DIR).glob("*.mat")):
        if not mat.stem.isdigit():
            skipped["bad_file_name"].append(f"file {mat}: name is not a number (expected NNNN.mat)")
            continue
        image_id = int(mat.stem)
        if image_id in tasks:
            skipped["duplicate_id"].append(f"file {mat}: image id {image_id} already used by {tasks[image_id][2]}")
            continue
        tasks[image_id] = (image_id, mat.stem, str(mat), str(root / PHOTOS_DIR / f"{mat.stem}.jpg"))
    return [tasks[i] for i in sorted(tasks)], skipped


def _check_root(root: Path) -> None:
    if not root.is_dir():
        raise AnnotationError("CCP root folder not found", file=str(root))
    for need in ("label_list.mat", LABEL_MAP_DIR, PHOTOS_DIR):
        if not (root / need).exists():
            raise AnnotationError(f"not a Clothing Co-Parsing folder: {need} is missing", file=str(root / need))


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ParamsError(f"must be an integer >= {minimum}, got {value!r}", key=name)
    return int(value)


def summary_path(out: str | os.PathLike) -> Path:
    """``<out stem>.summary.json`` next to the COCO json."""
    out = Path(out)
    return out.with_name(f"{out.stem}.summary.json")


def convert_ccp(root: str | os.PathLike, out: str | os.PathLike, *,
                taxonomy: str | os.PathLike | Taxonomy | None = None, mapping: str | os.PathLike | None = None,
                min_component_area: int = 100, holdout_every: int = 5,
                limit: int | None = None, workers: int | None = None, progress: bool = True) -> dict:
    """Convert a Clothing Co-Parsing folder to a COCO instances json; return the summary.

    Usage::

        summary = convert_ccp("../shared/data/ccp", "work/coco.json", limit=50, workers=2)
        summary["images"]          # {'train': 40, 'val': 10}
        summary["dropped"]         # {'speck_components': ..., 'corrupt_label_map': 0, ...}

    Args:
        root: the CCP folder (``label_list.mat``, ``annotations/pixel-level/``, ``photos/``).
        out: the COCO json to write (atomically); the summary goes to ``<stem>.summary.json``.
        taxonomy: a taxonomy YAML path or object (default: the 38-class taxonomy).
        mapping: the CCP label -> class YAML (default ``taxonomies/ccp_mapping.yaml``).
        min_component_area: clothing components with fewer pixels are dropped as specks.
        holdout_every: image ``NNNN`` is ``val`` when ``NNNN % holdout_every == 0`` (0: no val).
        limit: convert only the first ``limit`` label maps (by number).
        workers: processes (default ``os.cpu_count()``, fewer for under 32 images per core;
            1 converts in this process).
        progress: show a tqdm progress bar.
    """
    from tqdm.auto import tqdm

    started = time.perf_counter()
    root, out = Path(root), Path(out)
    min_component_area = _check_int("min_component_area", min_component_area, 0)
    holdout_every = _check_int("holdout_every", holdout_every, 0)
    if limit is not None:
        limit = _check_int("limit", limit, 0)
    if workers is not None:
        workers = _check_int("workers", workers, 1)
    _check_root(root)
    label_names = ccp_label_names(root)
    tax = taxonomy if isinstance(taxonomy, Taxonomy) else load_taxonomy(taxonomy)
    mapping_path = Path(mapping) if mapping else DEFAULT_MAPPING
    label_to_class = load_ccp_mapping(mapping_path, label_names, tax)
    unlisted = [n for n in label_names[1:] if n not in label_to_class]
    classes = list(tax.classes)
    if PERSON not in classes:
        classes.append(PERSON)
    person_id = classes.index(PERSON)
    lut = [0] + [label_to_class.get(n) or 0 for n in label_names[1:]]  # index 0 is the background

    tasks, skipped = _list_label_maps(root)
    if not tasks:
        raise AnnotationError("no NNNN.mat label maps found", file=str(root / LABEL_MAP_DIR))
    if limit is not None:
        tasks = tasks[:limit]

    results: Iterable[dict]
    if workers is None:  # a pool costs ~1 s to start: not worth it for a quick look at a few images
        workers = min(os.cpu_count() or 1, max(1, len(tasks) // 32))
    workers = max(1, min(workers, len(tasks)))
    initargs = (lut, min_component_area, person_id)
    bar = dict(total=len(tasks), desc="ccp", unit="img", disable=not progress)
    if workers == 1:
        _init_worker(*initargs, pool=False)
        results = [_convert_one(t) for t in tqdm(tasks, **bar)]
    else:
        # forkserver: safe when the caller (a notebook kernel) already runs threads, unlike fork,
        # and the workers import only this module, not the caller's __main__ like spawn.
        ctx = multiprocessing.get_context("forkserver")
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=initargs) as pool:
            chunk = max(1, min(16, len(tasks) // (4 * workers)))
            results = list(tqdm(pool.map(_convert_one, tasks, chunksize=chunk), **bar))

    images, annotations = [], []
    specks: Counter = Counter()
    speck_pixels = 0
    label_pixels = np.zeros(len(label_names), dtype=np.int64)
    empty: list[int] = []
    for key in SKIP_REASONS:
        skipped.setdefault(key, [])
    for r in results:  # in image-id order: annotation ids are deterministic whatever the workers
        if r["skip"]:
            skipped[r["skip"]].append(r["message"])
            continue
        im = r["image"]
        im["split"] = "val" if holdout_every and r["image_id"] % holdout_every == 0 else "train"
        images.append(im)
        for a in r["annotations"]:
            annotations.append({"id": len(annotations) + 1, "image_id": r["image_id"], "iscrowd": 0, **a})
        specks.update(r["specks"])
        speck_pixels += r["speck_pixels"]
        label_pixels += np.asarray(r["label_pixels"], dtype=np.int64)
        if r["empty"]:
            empty.append(r["image_id"])

    info = {"description": "Clothing Co-Parsing converted by yeay_nb.convert.ccp", "source": "ccp",
            "root": str(root.resolve()), "images_dir": str((root / PHOTOS_DIR).resolve()),
            "taxonomy": tax.name, "mapping": str(mapping_path.resolve()),
            "min_component_area": min_component_area, "holdout_every": holdout_every}
    write_coco(out, images=images, annotations=annotations, classes=classes, info=info)

    counts = class_counts({"images": images, "annotations": annotations, "categories": categories_for(classes)})
    unmapped = sorted(((n, int(label_pixels[i])) for i, n in enumerate(label_names)
                       if i > 0 and lut[i] == 0 and label_pixels[i] > 0), key=lambda x: (-x[1], x[0]))
    split_n = Counter(im["split"] for im in images)
    summary = {
        "source": "ccp",
        "coco_json": str(out),
        "num_images": len(images),
        "num_annotations": len(annotations),
        "images": {"train": split_n["train"], "val": split_n["val"]},
        "classes": counts,
        "dropped": {"speck_components": sum(specks.values()), **{k: len(skipped[k]) for k in SKIP_REASONS}},
        "specks": {"components": sum(specks.values()), "pixels": speck_pixels,
                   "per_class": {classes[c]: n for c, n in sorted(specks.items())},
                   "min_component_area": min_component_area},
        "empty_label_maps": empty,
        "unmapped": [list(x) for x in unmapped],
        "labels_not_in_mapping": unlisted,
        "skipped": {k: v for k, v in skipped.items() if v},
        "label_maps_seen": len(tasks),
        "workers": workers,
        "seconds": round(time.perf_counter() - started, 3),
    }
    write_json(summary_path(out), summary, indent=1)
    return summary


def format_summary(summary: dict) -> str:
    """The summary as text: a per-class table, then images, drops, empty maps and unmapped labels."""
    per_class = summary["specks"]["per_class"]
    rows = [(name, c["train"], c["val"], c["images"], per_class.get(name, 0))
            for name, c in summary["classes"].items() if c["train"] + c["val"] or per_class.get(name)]
    lines = [format_table(rows, ("class", "train", "val", "images", "specks dropped")), ""]
    lines.append(f"images: {summary['images']['train']} train, {summary['images']['val']} val "
                 f"({summary['label_maps_seen']} label maps read, {summary['seconds']} s, "
                 f"{summary['workers']} workers)")
    lines.append("dropped: " + ", ".join(f"{k} {v}" for k, v in summary["dropped"].items()))
    lines.append(f"empty label maps (kept, no annotations): {summary['empty_label_maps'] or 'none'}")
    if summary["unmapped"]:
        lines.append("unmapped CCP labels (pixels): " + ", ".join(f"{n} {p}" for n, p in summary["unmapped"]))
    if summary["labels_not_in_mapping"]:
        lines.append(f"labels the mapping does not list: {', '.join(summary['labels_not_in_mapping'])}")
    for reason, messages in summary["skipped"].items():
        for m in messages[:5]:
            lines.append(f"skipped ({reason}): {m}")
        if len(messages) > 5:
            lines.append(f"skipped ({reason}): ... and {len(messages) - 5} more")
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI
def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", required=True, help="the CCP folder (label_list.mat, annotations/, photos/)")
    p.add_argument("--out", required=True, help="the COCO json to write (summary beside it)")
    p.add_argument("--taxonomy", default=None, help="taxonomy YAML (default: the 38-class taxonomy)")
    p.add_argument("--mapping", default=None, help="CCP label -> class YAML (default: taxonomies/ccp_mapping.yaml)")
    p.add_argument("--min-component-area", type=int, default=100, help="drop smaller components (specks)")
    p.add_argument("--holdout-every", type=int, default=5, help="image NNNN is val when NNNN %% N == 0")
    p.add_argument("--limit", type=int, default=None, help="convert only the first N label maps")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _cmd_convert_ccp(args: argparse.Namespace) -> int:
    summary = convert_ccp(args.root, args.out, taxonomy=args.taxonomy, mapping=args.mapping,
                          min_component_area=args.min_component_area, holdout_every=args.holdout_every,
                          limit=args.limit, workers=args.workers, progress=not args.no_progress)
    print(format_summary(summary))
    print(f"[yeay-nb] wrote {summary['coco_json']} ({summary['num_images']} images, "
          f"{summary['num_annotations']} annotations) and {summary_path(summary['coco_json'])}")
    return 0


def add_cli(subparsers) -> argparse.ArgumentParser:
    """Register ``convert ccp`` on the ``convert`` subparsers (called by :mod:`yeay_nb.cli`)."""
    p = subparsers.add_parser("ccp", help="Clothing Co-Parsing label maps -> COCO json",
                              description=__doc__.split("\n\n")[0])
    _add_arguments(p)
    p.set_defaults(func=_cmd_convert_ccp)
    return p


def main(argv: list[str] | None = None) -> int:
    """``python -m yeay_nb.convert.ccp --root ... --out ...`` (same options as ``yeay-nb convert ccp``)."""
    from ..cli import run_module

    parser = argparse.ArgumentParser(prog="python -m yeay_nb.convert.ccp")
    _add_arguments(parser)
    parser.set_defaults(func=_cmd_convert_ccp)
    return run_module(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
