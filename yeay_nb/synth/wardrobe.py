"""The synthetic wardrobe as a Visual Genome-format image data set.

Usage::

    from yeay_nb.synth import make_wardrobe
    files = make_wardrobe("work/synth", num_images=200, image_size=(320, 256), seed=0)
    files.objects_json, files.image_data_json, files.person_masks_json, files.images_dir

Image ``k`` (``image_id = k + 1``) is drawn from its own generator seeded with
``(seed, k)``, so image 7 is the same whether 10 or 5000 images are made, and the same
seed gives byte-identical JSON and JPEGs.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_util
from tqdm.auto import tqdm

from ..atomic import write_bytes, write_json
from ..errors import ParamsError
from .figures import random_scene, render_scene

VG_URL = "https://cs.stanford.edu/people/rak248/VG_100K/{image_id}.jpg"
JPEG_QUALITY = 92
MANIFEST = "wardrobe.json"
MANIFEST_VERSION = 1  # bump when the drawing changes, so old wardrobes are redrawn
DUPLICATE_PROBABILITY = 0.08  # real VG lists some objects twice (same name, same box)
NO_SYNSET_PROBABILITY = 0.1


@dataclass
class WardrobeFiles:
    """Where :func:`make_wardrobe` wrote the data set."""

    images_dir: Path
    image_data_json: Path
    objects_json: Path
    person_masks_json: Path
    num_images: int
    num_objects: int


def _check_size(image_size) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in image_size)
    except (TypeError, ValueError):
        raise ParamsError(f"expected (width, height), got {image_size!r}", key="image_size") from None
    if width < 64 or height < 64:
        raise ParamsError(f"each side must be at least 64 pixels, got {width}x{height}", key="image_size")
    return width, height


def encode_rle(mask: np.ndarray) -> dict:
    """COCO compressed RLE of a bool mask, with ``counts`` as str (JSON-ready)."""
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def _files(out: Path, num_images: int, num_objects: int) -> WardrobeFiles:
    return WardrobeFiles(images_dir=out / "images", image_data_json=out / "image_data.json",
                         objects_json=out / "objects.json", person_masks_json=out / "person_masks.json",
                         num_images=num_images, num_objects=num_objects)


def make_wardrobe(out_dir: str | os.PathLike, num_images: int = 200, image_size: tuple[int, int] = (320, 256),
                  seed: int = 0,
                  progress: bool = True, reuse: bool = True) -> WardrobeFiles:
    """Draw ``num_images`` images of 1-3 stylized people and write them in VG format.

    Writes ``images/<image_id>.jpg``, ``image_data.json``, ``objects.json`` (VG v1.4) and
    ``person_masks.json`` (``{"<image_id>": [RLE, ...]}``, one visible-body mask per
    person) under ``out_dir``; every file is written atomically, and ``wardrobe.json``
    (the arguments and counts) last. ``image_size`` is (width, height).

    With ``reuse`` (the default), a finished wardrobe made with the same arguments in
    ``out_dir`` is returned without drawing it again (a re-run pipeline costs nothing).
    """
    width, height = _check_size(image_size)
    if int(seed) < 0:
        raise ParamsError(f"must be >= 0, got {seed}", key="seed")
    if int(num_images) < 1:
        raise ParamsError(f"must be at least 1, got {num_images}", key="num_images")
    out = Path(out_dir)
    manifest = {"generator": MANIFEST_VERSION, "num_images": int(num_images), "image_size": [width, height],
                "seed": int(seed)}
    if reuse:
        done = _finished(out, manifest)
        if done is not None:
            return done
    images_dir = out / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    image_data, objects, person_masks = [], [], {}
    object_id = 0
    for k in tqdm(range(int(num_images)), desc="synth wardrobe", unit="img", disable=not progress):
        image_id = k + 1
        rng = np.random.default_rng([int(seed), k])
        scene = random_scene(rng, width, height)
        r = render_scene(scene, rng)
        ok, jpg = cv2.imencode(".jpg", r.image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:  # pragma: no cover - OpenCV always encodes uint8 BGR
            raise RuntimeError(f"JPEG encoding failed for image {image_id}")
        write_bytes(images_dir / f"{image_id}.jpg", jpg.tobytes())
        image_data.append({"image_id": image_id, "width": width, "height": height,
                           "url": VG_URL.format(image_id=image_id), "coco_id": None, "flickr_id": None})
        objs = []
        for o in r.objects:
            object_id += 1
            x, y, w, h = o["box"]
            # Real VG leaves many objects without a synset; do that for some distractors.
            no_synset = o["class_name"] is None and rng.random() < NO_SYNSET_PROBABILITY
            objs.append({"object_id": object_id, "names": [o["name"]], "synsets": [] if no_synset else [o["synset"]],
                         "x": x, "y": y, "w": w, "h": h, "merged_object_ids": []})
        if objs and rng.random() < DUPLICATE_PROBABILITY:
            object_id += 1
            objs.append({**objs[int(rng.integers(len(objs)))], "object_id": object_id})
        objects.append({"image_id": image_id, "objects": objs})
        person_masks[str(image_id)] = [encode_rle(m) for m in r.person_masks]
    files = _files(out, int(num_images), sum(len(o["objects"]) for o in objects))
    write_json(files.image_data_json, image_data)
    write_json(files.objects_json, objects)
    write_json(files.person_masks_json, person_masks)
    write_json(out / MANIFEST, {**manifest, "num_objects": files.num_objects}, indent=1)
    return files


def _finished(out: Path, manifest: dict) -> WardrobeFiles | None:
    """The wardrobe already in ``out`` when it was made with the same arguments and is complete."""
    try:
        done = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(done, dict) or {k: done.get(k) for k in manifest} != manifest:
        return None
    files = _files(out, manifest["num_images"], int(done.get("num_objects", -1)))
    paths = [files.image_data_json, files.objects_json, files.person_masks_json]
    paths += [files.images_dir / f"{k + 1}.jpg" for k in range(manifest["num_images"])]
    return files if all(p.exists() for p in paths) else None
