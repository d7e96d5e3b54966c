"""COCO instances json: writing (atomically), deterministic splits, summaries.

The json we write is standard COCO plus two fields that travel with the data:
every image has ``"split": "train" | "val"``, and ``info.classes`` lists the class
names in index order (index 0 ``__background__``), so a dataset with fewer or more
classes than the default taxonomy just works downstream.
A ``person`` category is appended after the taxonomy's classes when a source has
person masks (synthetic wardrobe, CCP).
"""
from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Iterable

import orjson

from ..atomic import atomic_open

PERSON = "person"


def split_for_image(image_id: int | str, val_fraction: float, seed: int = 0) -> str:
    """'train' or 'val', a pure function of the image id (stable across runs and machines)."""
    if val_fraction <= 0:
        return "train"
    h = hashlib.blake2b(f"{seed}:{image_id}".encode(), digest_size=8).digest()
    return "val" if int.from_bytes(h, "little") / 2**64 < val_fraction else "train"


def categories_for(classes: list[str]) -> list[dict]:
    """COCO categories for a class list whose index 0 is the background (id = index)."""
    return [{"id": i, "name": c, "supercategory": "person" if c == PERSON else "clothing"}
            for i, c in enumerate(classes) if i > 0]


def write_coco(path: str | Path, *, images: list[dict], annotations: list[dict], classes: list[str],
               info: dict | None = None) -> Path:
    """Write a COCO instances json atomically (a killed run never leaves half a file)."""
    doc = {
        "info": {**(info or {}), "classes": list(classes)},
        "images": images,
        "annotations": annotations,
        "categories": categories_for(classes),
    }
    with atomic_open(path, "wb") as f:
        f.write(orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY))
    return Path(path)


def load_coco(path: str | Path) -> dict:
    """Read a COCO json (orjson: several times faster than json on big files)."""
    from ..errors import AnnotationError

    path = Path(path)
    if not path.exists():
        raise AnnotationError("COCO json not found", file=str(path))
    try:
        return orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as e:
        raise AnnotationError(f"not valid JSON: {e}", file=str(path), offset=getattr(e, "pos", None)) from None


def classes_of(coco: dict) -> list[str]:
    """Class names in index order, from ``info.classes`` or rebuilt from categories."""
    classes = (coco.get("info") or {}).get("classes")
    if classes:
        return list(classes)
    cats = sorted(coco["categories"], key=lambda c: c["id"])
    out = ["__background__"] + [""] * (cats[-1]["id"] if cats else 0)
    for c in cats:
        out[c["id"]] = c["name"]
    return out


def split_coco(coco: dict, split: str) -> dict:
    """A copy of ``coco`` holding only the images (and their annotations) of one split."""
    images = [im for im in coco["images"] if im.get("split", "train") == split]
    keep = {im["id"] for im in images}
    return {**coco, "images": images, "annotations": [a for a in coco["annotations"] if a["image_id"] in keep]}


def class_counts(coco: dict) -> dict[str, dict[str, int]]:
    """Per class: annotations in each split and the number of images it appears in."""
    split_of = {im["id"]: im.get("split", "train") for im in coco["images"]}
    names = {c["id"]: c["name"] for c in coco["categories"]}
    out = {names[i]: {"train": 0, "val": 0, "images": 0} for i in sorted(names)}
    seen: set[tuple[int, int]] = set()
    for a in coco["annotations"]:
        row = out[names[a["category_id"]]]
        row[split_of.get(a["image_id"], "train")] += 1
        if (a["category_id"], a["image_id"]) not in seen:
            seen.add((a["category_id"], a["image_id"]))
            row["images"] += 1
    return out


def format_table(rows: Iterable[tuple], headers: tuple[str, ...]) -> str:
    """A plain fixed-width text table (printed by the CLI, shown by notebooks)."""
    rows = [tuple(str(c) for c in r) for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.rjust(w) if c.replace(".", "").isdigit() else c.ljust(w) for c, w in zip(r, widths))
            for r in rows]
    return "\n".join(out)


def top_counts(counter: Counter, n: int = 50) -> list[list]:
    """The n most frequent entries of a counter as [name, count] pairs."""
    return [[k, v] for k, v in counter.most_common(n)]


def images_root(coco: dict, coco_json: str | Path) -> Path:
    """Folder of the images: ``info.images_dir`` if set (absolute or relative to the
    json), else ``images/`` beside the json."""
    coco_json = Path(coco_json)
    d = (coco.get("info") or {}).get("images_dir")
    if d:
        d = Path(d)
        return d if d.is_absolute() else (coco_json.parent / d)
    return coco_json.parent / "images"
