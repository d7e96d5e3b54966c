"""What copy-paste costs a data-loader worker, against the same loader without it, same run.

Usage::

    .venv/bin/python benchmarks/bench_copy_paste.py [--root ../shared/data/ccp] [--limit 60] \\
        [--probs 0.5 1.0] [--json out.json]

Converts ``--limit`` CCP images (``convert_ccp``, the training split), then reads every training
image once through ``CocoDetectionDataset`` (decode, masks, horizontal flip: what a Mask R-CNN
training worker does per image) with ``copy_paste`` 0 (the baseline) and each of ``--probs``, in
one process, same images, same seed. Prints ms per image, objects per image and the ratio to the
baseline; checks every target: each object's box encloses exactly its mask, no degenerate box,
masks and labels line up.
"""
from __future__ import annotations

import argparse
import json
import platform
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from yeay_nb.convert.ccp import convert_ccp
from yeay_nb.data import CocoDetectionDataset, boxes_from_masks

DEFAULT_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ccp"


def run(coco_json: Path, prob: float, seed: int = 0) -> dict:
    ds = CocoDetectionDataset(coco_json, "train", masks=True, hflip=True, drop_empty=True, copy_paste=prob)
    random.seed(seed)
    ds[0]  # warm-up: first decode, imports
    objects, bad = 0, 0
    t0 = time.perf_counter()
    for i in range(len(ds)):
        _, t = ds[i]
        m, boxes = t["masks"].numpy(), t["boxes"].numpy()
        objects += len(boxes)
        ok = (len(m) == len(boxes) == len(t["labels"]) and np.allclose(boxes_from_masks(m), boxes)
              and ((boxes[:, 2:] - boxes[:, :2]) >= 1).all())
        bad += not ok
    dt = time.perf_counter() - t0
    return {"copy_paste": prob, "images": len(ds), "ms_per_image": round(1000 * dt / len(ds), 1),
            "objects_per_image": round(objects / len(ds), 2), "inconsistent_targets": bad}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    ap.add_argument("--limit", type=int, default=60, help="CCP images to convert (4 of 5 are training images)")
    ap.add_argument("--probs", type=float, nargs="+", default=[0.5, 1.0])
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if not (args.root / "label_list.mat").is_file():
        raise SystemExit(f"no CCP data at {args.root} (label_list.mat missing): pass --root")
    with tempfile.TemporaryDirectory(prefix="bench-copy-paste-") as tmp:
        coco_json = Path(tmp) / "coco.json"
        convert_ccp(args.root, coco_json, limit=args.limit, progress=False)
        rows = [run(coco_json, p) for p in [0.0, *args.probs]]
    base = rows[0]["ms_per_image"]
    for r in rows:
        r["x_baseline"] = round(r["ms_per_image"] / base, 2)
    print(f"{'copy_paste':>10}{'images':>8}{'ms/image':>10}{'x base':>8}{'objects':>9}{'bad':>5}")
    for r in rows:
        print(f"{r['copy_paste']:>10}{r['images']:>8}{r['ms_per_image']:>10}{r['x_baseline']:>8}"
              f"{r['objects_per_image']:>9}{r['inconsistent_targets']:>5}")
    result = {"machine": platform.processor() or platform.machine(), "limit": args.limit, "rows": rows,
              "date": time.strftime("%Y-%m-%d")}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
