"""A fast, deterministic stand-in detector for the inference plumbing tests.

It follows the torchvision detection interface (list of CHW float images in, list of
dicts with boxes/labels/scores/masks out) so the real code path runs unchanged, but
costs microseconds and its outputs are known: the tests can check exact numbers.
"""
from __future__ import annotations

import time

import torch
from torch import nn

CLASSES = ["__background__", "shirt", "jeans", "person"]


class _Heads:
    def has_mask(self) -> bool:
        return True


class FakeDetector(nn.Module):
    """Per image: a 'shirt' whose score follows the image brightness, a fixed 'jeans',
    a 'person' covering the centre (with a mask), a weak 'person' below the default mask
    threshold and a 'jeans' below the default score floor."""

    def __init__(self, sleep_s: float = 0.0):
        super().__init__()
        self.roi_heads = _Heads()
        self.sleep_s = sleep_s
        self.calls = 0
        self.batch_sizes: list[int] = []

    def forward(self, images):
        self.calls += 1
        self.batch_sizes.append(len(images))
        if self.sleep_s:
            time.sleep(self.sleep_s)
        outs = []
        for img in images:
            _, h, w = img.shape
            bright = float(img.mean())
            boxes = torch.tensor([[0.1 * w, 0.1 * h, 0.5 * w, 0.4 * h],
                                  [0.2 * w, 0.5 * h, 0.6 * w, 0.9 * h],
                                  [0.25 * w, 0.2 * h, 0.75 * w, 0.8 * h],
                                  [0.0, 0.0, 0.2 * w, 0.2 * h],
                                  [0.6 * w, 0.6 * h, 0.9 * w, 0.9 * h]])
            scores = torch.tensor([0.3 + 0.6 * bright, 0.5, 0.9, 0.3, 0.02])
            labels = torch.tensor([1, 2, 3, 3, 2])
            masks = torch.zeros(5, 1, h, w)
            for k, (x1, y1, x2, y2) in enumerate(boxes.round().int().tolist()):
                masks[k, 0, y1:y2, x1:x2] = 0.9
            outs.append({"boxes": boxes, "scores": scores, "labels": labels, "masks": masks})
        return outs


def fake_detector(sleep_s: float = 0.0):
    from yeay_nb.infer import Detector

    return Detector(model=FakeDetector(sleep_s), classes=list(CLASSES), source="fake")
