"""Frame and box scoring for the video output: pure functions, no I/O, no models.

Usage::

    from yeay_nb.scoring import laplacian_variance, normalize_blur, top_n_frames, best_box_per_class
    raw = [laplacian_variance(rgb) for rgb in frames]           # one float per processed frame
    blur = normalize_blur(raw)                                  # sqrt(raw / max(raw)), in [0, 1]
    top = top_n_frames(items, frame_indices, n=5, per_frame=30)
    frames, boxes = best_box_per_class(items, num_classes, blur_by_frame, (w, h))

``items`` are the contract's rows ``[frame_index, class_id, score, [x1, y1, x2, y2]]``
with 0-based frame indices (the 2018 best-frame code subtracted 1 from them: a bug we
do not repeat).
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Iterable, Mapping, Sequence

import cv2
import numpy as np

Item = Sequence  # [frame_index, class_id, score, [x1, y1, x2, y2]]


def laplacian_variance(image: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image: high for sharp frames, low for blurry ones.

    ``image`` is H×W×3 RGB (uint8) or H×W grey. The value is the 2018 code's
    ``cv2.Laplacian(gray, cv2.CV_64F).var()`` (equal to ~1e-16 relative, tested), computed 5× faster
    on the H200 host (13× on the dev machine; the blur rows of benchmarks/bench_decode.py): a uint8
    image's Laplacian (3×3 kernel, |values| ≤ 4·255) is exact in int16, and ``cv2.meanStdDev`` takes
    mean and variance in one pass in C (OpenCV frees the GIL) where numpy's ``var`` made float64
    temporaries.
    """
    if image.ndim == 3:
        image = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    if image.dtype != np.uint8:  # other depths: the 2018 formula itself
        return float(cv2.Laplacian(image, cv2.CV_64F).var())
    _, std = cv2.meanStdDev(cv2.Laplacian(image, cv2.CV_16S))
    return float(std[0, 0]) ** 2


def normalize_blur(raw: Sequence[float]) -> list[float]:
    """Divide by the video's maximum and take the square root (the contract's blur score).

    A video of flat frames (maximum 0) gets 0 for every frame rather than a division by zero.
    """
    arr = np.asarray(raw, dtype=np.float64)
    if arr.size == 0:
        return []
    peak = float(arr.max())
    if not math.isfinite(peak) or peak <= 0:
        return [0.0] * int(arr.size)
    return np.sqrt(np.clip(arr / peak, 0.0, 1.0)).tolist()


def frame_score_sums(items: Iterable[Item], per_frame: int = 30) -> dict[int, float]:
    """Per frame, the sum of its ``per_frame`` highest item scores."""
    scores: dict[int, list[float]] = defaultdict(list)
    for it in items:
        scores[int(it[0])].append(float(it[2]))
    return {f: float(sum(sorted(s, reverse=True)[:per_frame])) for f, s in scores.items()}


def top_n_frames(items: Iterable[Item], frame_indices: Sequence[int], n: int = 5, per_frame: int = 30) -> list[int]:
    """The ``n`` processed frames whose top-``per_frame`` item scores sum highest.

    Ties (including frames without items, whose sum is 0) go to the earlier frame, so the
    result is deterministic; a video with fewer than ``n`` processed frames returns them all.
    """
    sums = frame_score_sums(items, per_frame)
    order = sorted(frame_indices, key=lambda f: (-sums.get(int(f), 0.0), int(f)))
    return [int(f) for f in order[:n]]


def box_quality(score: float, box: Sequence[float], frame_wh: Sequence[int], blur: float) -> float:
    """score × sqrt(box area / frame area) × blur score: big, sure, sharp boxes win."""
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    area = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    frame_area = float(frame_wh[0]) * float(frame_wh[1])
    return float(score) * math.sqrt(area / frame_area if frame_area > 0 else 0.0) * float(blur)


def best_box_per_class(items: Iterable[Item], num_classes: int, blur_by_frame: Mapping[int, float],
                       frame_wh: Sequence[int]) -> tuple[list[int], list[list[float] | None]]:
    """For each class index, the frame and box of its best item (see :func:`box_quality`).

    Returns the contract's ``top_frames_each_class``: ``[frames, boxes]`` with ``-1`` and
    ``None`` for classes without any item (always for index 0, the background). The box is
    the item's own box, so it is found among that frame's items. Ties keep the higher score,
    then the earlier frame.
    """
    best: dict[int, tuple[tuple[float, float, int], int, list[float]]] = {}
    for it in items:
        frame, cls, score, box = int(it[0]), int(it[1]), float(it[2]), list(it[3])
        if not 0 < cls < num_classes:
            continue
        q = box_quality(score, box, frame_wh, blur_by_frame.get(frame, 0.0))
        key = (q, score, -frame)
        if cls not in best or key > best[cls][0]:
            best[cls] = (key, frame, box)
    frames = [best[c][1] if c in best else -1 for c in range(num_classes)]
    boxes = [best[c][2] if c in best else None for c in range(num_classes)]
    return frames, boxes
