"""Clothing Co-Parsing conversion speed, against a naive baseline in the same run.

Usage::

    .venv/bin/python benchmarks/bench_convert_ccp.py [--root ../shared/data/ccp] [--workers N] [--limit N]

Three ways over the same label maps:

1. naive: one process; for every class in an image, connected components on the whole
   image (``np.unique`` for the classes, ``np.stack`` of full-size masks) - the obvious code;
2. ``convert_ccp(workers=1)``: components on each class region's bounding box only;
3. ``convert_ccp(workers=N)``: the same in a process pool.

Prints wall seconds and images/s, and checks all three give the same instances
(same image, class and RLE) and that 2 and 3 write byte-identical jsons.
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_util

from yeay_nb.convert.ccp import (DEFAULT_MAPPING, LABEL_MAP_DIR, ccp_label_names, convert_ccp,
                                 load_ccp_mapping, read_label_map)
from yeay_nb.convert.coco import load_coco
from yeay_nb.taxonomy import load_taxonomy

DEFAULT_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ccp"


def naive(root: Path, limit: int | None, min_area: int = 100) -> set[tuple[int, int, str]]:
    """The straightforward per-image loop (full-image components), single process."""
    from PIL import Image

    names = ccp_label_names(root)
    tax = load_taxonomy()
    mapping = load_ccp_mapping(DEFAULT_MAPPING, names, tax)
    person_id = len(tax.classes)
    lut = np.array([0] + [mapping.get(n) or 0 for n in names[1:]])
    out = set()
    mats = sorted((root / LABEL_MAP_DIR).glob("*.mat"))[:limit]
    for mat in mats:
        image_id = int(mat.stem)
        gt = read_label_map(mat, len(names))
        with Image.open(root / "photos" / f"{mat.stem}.jpg") as im:
            assert im.size == (gt.shape[1], gt.shape[0])
        if not (gt > 0).any():
            continue
        rle = mask_util.encode(np.asfortranarray((gt > 0).astype(np.uint8)))
        out.add((image_id, person_id, rle["counts"].decode()))
        class_map = lut[gt]
        for cls in np.unique(class_map):
            if cls == 0:
                continue
            n, comp, stats, _ = cv2.connectedComponentsWithStats((class_map == cls).astype(np.uint8), connectivity=8)
            keep = [k for k in range(1, n) if stats[k, cv2.CC_STAT_AREA] >= min_area]
            if keep:
                masks = np.stack([comp == k for k in keep], axis=-1).astype(np.uint8)
                for r in mask_util.encode(np.asfortranarray(masks)):
                    out.add((image_id, int(cls), r["counts"].decode()))
    return out


def instances(path: Path) -> set[tuple[int, int, str]]:
    return {(a["image_id"], a["category_id"], a["segmentation"]["counts"]) for a in load_coco(path)["annotations"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=str(DEFAULT_ROOT))
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args()
    root = Path(args.root)
    print(f"{platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}, root {root}")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        base = naive(root, args.limit)
        dt = time.perf_counter() - t0
        n = len(sorted((root / LABEL_MAP_DIR).glob("*.mat"))[:args.limit])
        print(f"{'naive, 1 process':28s} {dt:7.2f} s  {n / dt:6.1f} img/s  ({len(base)} instances)")
        outs = {}
        for workers in (1, args.workers):
            out = Path(tmp) / f"w{workers}.json"
            t0 = time.perf_counter()
            s = convert_ccp(root, out, workers=workers, limit=args.limit, progress=False)
            dt = time.perf_counter() - t0
            outs[workers] = out.read_bytes()
            same = instances(out) == base
            print(f"{f'convert_ccp, {workers} process(es)':28s} {dt:7.2f} s  {s['num_images'] / dt:6.1f} img/s  "
                  f"({s['num_annotations']} instances, same as naive: {same})")
            if not same:
                raise SystemExit(1)
        print(f"pool and single-process jsons byte-identical: {len(set(outs.values())) == 1}")
        print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
