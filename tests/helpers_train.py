"""A tiny, easy-to-learn COCO dataset for the training/evaluation tests.

Coloured rectangles ("shirt", red) and ellipses ("hat", blue) on a noisy grey
background, with RLE masks for shirts and polygon masks for hats, split train/val.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from yeay_nb.convert.coco import write_coco

CLASSES = ["__background__", "shirt", "hat"]


def make_toy_coco(root: Path, n_images: int = 40, size: tuple[int, int] = (160, 128), seed: int = 0,
                  val_every: int = 4) -> Path:
    """Write ``root/images/*.jpg`` and ``root/coco.json``; return the json path."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    w, h = size
    images, annotations = [], []
    for i in range(n_images):
        img = (rng.normal(120, 20, (h, w, 3))).clip(0, 255).astype(np.uint8)
        for k in range(int(rng.integers(1, 3))):
            cls = int(rng.integers(1, 3))
            bw, bh = int(rng.integers(28, 60)), int(rng.integers(28, 60))
            x0, y0 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
            m = np.zeros((h, w), np.uint8)
            if cls == 1:
                cv2.rectangle(m, (x0, y0), (x0 + bw - 1, y0 + bh - 1), 1, -1)
                color = (40, 40, 220)  # BGR red
            else:
                cv2.ellipse(m, (x0 + bw // 2, y0 + bh // 2), (bw // 2, bh // 2), 0, 0, 360, 1, -1)
                color = (220, 60, 40)  # BGR blue
            img[m > 0] = color
            ys, xs = np.nonzero(m)
            bbox = [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]
            if cls == 1:
                rle = mask_utils.encode(np.asfortranarray(m))
                seg = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
            else:
                contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
                seg = [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": cls, "bbox": bbox,
                                "area": float(m.sum()), "iscrowd": 0, "segmentation": seg})
        name = f"{i:04d}.jpg"
        cv2.imwrite(str(root / "images" / name), img)
        images.append({"id": i + 1, "file_name": name, "width": w, "height": h,
                       "split": "val" if i % val_every == 0 else "train"})
    return write_coco(root / "coco.json", images=images, annotations=annotations, classes=CLASSES)
