"""Blur, best frames and best box per class: pure functions, checked against hand-made cases."""
import math

import cv2
import numpy as np
import pytest

from yeay_nb.scoring import (best_box_per_class, box_quality, frame_score_sums, laplacian_variance,
                             normalize_blur, top_n_frames)


def _checker(n=64, cell=4):
    y, x = np.mgrid[:n, :n]
    return (((x // cell + y // cell) % 2) * 255).astype(np.uint8)


def test_laplacian_variance_ranks_sharp_above_blurred():
    sharp = np.stack([_checker()] * 3, -1)
    blurred = cv2.GaussianBlur(sharp, (9, 9), 3)
    assert laplacian_variance(sharp) > 5 * laplacian_variance(blurred)
    assert laplacian_variance(np.full((32, 32, 3), 7, np.uint8)) == 0.0
    # grey and RGB input agree
    assert laplacian_variance(sharp) == pytest.approx(laplacian_variance(_checker()))


def test_laplacian_variance_is_the_2018_formula():
    """One OpenCV pass (int16 Laplacian, meanStdDev) gives cv2.Laplacian(gray, CV_64F).var() of the 2018 code."""
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (270, 480, 3), dtype=np.uint8),            # noise: the largest Laplacians
              np.stack([_checker(256, 1)] * 3, -1),                             # +-4*255 everywhere
              cv2.GaussianBlur(rng.integers(0, 256, (97, 61, 3), dtype=np.uint8), (7, 7), 2),
              rng.integers(0, 256, (40, 30), dtype=np.uint8),                   # grey
              rng.integers(0, 4096, (40, 30), dtype=np.uint16)]                # not uint8: the formula itself
    for img in images:
        grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img
        ref = cv2.Laplacian(grey, cv2.CV_64F).var()
        assert ref > 0 and laplacian_variance(img) == pytest.approx(ref, rel=1e-12)


def test_normalize_blur_divides_by_max_then_sqrt():
    assert normalize_blur([1.0, 4.0, 0.0]) == pytest.approx([0.5, 1.0, 0.0])
    assert normalize_blur([0.0, 0.0]) == [0.0, 0.0]  # flat video: no division by zero
    assert normalize_blur([]) == []


def test_top_n_frames_sums_only_the_top_30_scores_per_frame():
    items = [[0, 1, 0.1, [0, 0, 1, 1]]] * 40          # 40 x 0.1: top-30 sum = 3.0
    items += [[5, 1, 0.9, [0, 0, 1, 1]]] * 3          # 2.7
    items += [[7, 2, 0.95, [0, 0, 1, 1]]] * 4         # 3.8
    assert frame_score_sums(items)[0] == pytest.approx(3.0)
    assert top_n_frames(items, [0, 1, 2, 5, 7], n=3) == [7, 0, 5]
    # frames without items fill up, earlier first; never more frames than processed
    assert top_n_frames(items, [0, 1, 2, 5, 7], n=5) == [7, 0, 5, 1, 2]
    assert top_n_frames([], [3, 9], n=5) == [3, 9]


def test_box_quality_formula():
    q = box_quality(0.8, [0, 0, 50, 20], (100, 40), 0.5)
    assert q == pytest.approx(0.8 * math.sqrt(1000 / 4000) * 0.5)
    assert box_quality(0.8, [10, 10, 5, 5], (100, 40), 1.0) == 0.0  # inverted box has no area


def test_best_box_per_class_weighs_score_size_and_blur():
    items = [
        [0, 1, 0.9, [0, 0, 10, 10]],     # sure but small
        [1, 1, 0.6, [0, 0, 60, 60]],     # bigger: wins on sqrt(area) ...
        [2, 1, 0.6, [0, 0, 80, 80]],     # ... but this frame is blurry
        [1, 3, 0.5, [5, 5, 20, 30]],
    ]
    blur = {0: 1.0, 1: 1.0, 2: 0.1}
    frames, boxes = best_box_per_class(items, 5, blur, (100, 100))
    assert frames == [-1, 1, -1, 1, -1]
    assert boxes[1] == [0, 0, 60, 60] and boxes[3] == [5, 5, 20, 30]
    assert boxes[0] is None and boxes[2] is None and boxes[4] is None
    # each best box is one of that frame's items
    for c, (f, b) in enumerate(zip(frames, boxes)):
        if f >= 0:
            assert [f, c] + [b] in [[it[0], it[1], it[3]] for it in items]


def test_best_box_ignores_background_and_unknown_classes():
    items = [[0, 0, 0.9, [0, 0, 5, 5]], [0, 7, 0.9, [0, 0, 5, 5]]]
    frames, boxes = best_box_per_class(items, 3, {0: 1.0}, (10, 10))
    assert frames == [-1, -1, -1] and boxes == [None, None, None]
