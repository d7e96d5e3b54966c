"""Fast random access to a video's frames and a result JSON's per-frame data, for scrubbing.

Usage::

    from yeay_nb.frames import FrameCache, FrameRenderer
    cache = FrameCache("video.mp4", max_side=960)          # decodes lazily, once
    r = FrameRenderer(doc, cache)                           # doc: a <video_id>.json dict
    jpeg, drawn = r.render_jpeg(120, thresh=0.4, class_ids={3, 5}, show_masks=True)

Why: a slider moving over a video must not re-decode from the start (inter-coded video has
no cheap seek) nor re-decode RLE masks and redraw with matplotlib. :class:`FrameCache` walks
the decoder forward once and keeps every frame as downscaled JPEG bytes (memory bounded by
``max_bytes``; ~40 KB a frame at 540×960) plus a small LRU of decoded arrays;
:class:`FrameRenderer` indexes items by frame, decodes a frame's RLE masks on first use
(pycocotools) at display size and caches them, draws with OpenCV and encodes with
``cv2.imencode``.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import cv2
import numpy as np

from .errors import VideoError
from .vis import color_for

JPEG_QUALITY = 88


def _fit_scale(w: int, h: int, max_side: int | None) -> float:
    if not max_side or max(w, h) <= max_side:
        return 1.0
    return max_side / max(w, h)


class FrameCache:
    """Frames of one video by 0-based ``frame_index``, decoded once, downscaled, bounded.

    ``max_side`` caps the longest side of the kept frames (None keeps full size);
    ``max_bytes`` bounds the JPEG store (frames past it are decoded again on demand, by a
    fresh forward pass); ``lru`` decoded arrays are kept for instant revisits.
    """

    def __init__(self, video_path: str | os.PathLike, max_side: int | None = 960, rotate: str | int = "auto",
                 max_bytes: int = 512 * 2**20, lru: int = 24, quality: int = JPEG_QUALITY):
        from .video import VideoReader

        self.video_path = str(video_path)
        self.rotate = rotate
        self.max_bytes, self.quality = int(max_bytes), int(quality)
        self._jpeg: dict[int, bytes] = {}
        self._bytes = 0
        self._lru: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lru_size = max(1, int(lru))
        self._reader = None
        self._iter = None
        self._next = 0  # the next frame index the open decoder yields
        self.end: int | None = None  # frame count, once the decoder has hit the end
        self.decodes = 0  # frames pulled from the decoder (tests and benchmarks read it)
        with VideoReader(self.video_path, rotate=rotate) as r:  # fails early on a bad file
            self.src_w, self.src_h = r.info.width, r.info.height
            self.fps = r.info.fps
            self.frame_count_hint = getattr(r.info, "frame_count", 0)
        self.scale = _fit_scale(self.src_w, self.src_h, max_side)
        self.width = max(1, round(self.src_w * self.scale))
        self.height = max(1, round(self.src_h * self.scale))

    # decoding ----------------------------------------------------------------------
    def _restart(self) -> None:
        from .video import VideoReader

        self.close()
        self._reader = VideoReader(self.video_path, rotate=self.rotate)
        self._iter = self._reader.frames()
        self._next = 0

    def _shrink(self, rgb: np.ndarray) -> np.ndarray:
        if self.scale == 1.0:
            return np.ascontiguousarray(rgb)
        return cv2.resize(rgb, (self.width, self.height), interpolation=cv2.INTER_AREA)

    def _keep(self, index: int, rgb: np.ndarray) -> None:
        self._remember(index, rgb)
        if index in self._jpeg or self._bytes >= self.max_bytes:
            return
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if ok:
            self._jpeg[index] = buf.tobytes()
            self._bytes += len(self._jpeg[index])

    def _remember(self, index: int, rgb: np.ndarray) -> None:
        self._lru[index] = rgb
        self._lru.move_to_end(index)
        while len(self._lru) > self._lru_size:
            self._lru.popitem(last=False)

    def _decode_to(self, index: int) -> np.ndarray:
        if self._iter is None or self._next > index:
            self._restart()
        for i, rgb in self._iter:
            self.decodes += 1
            self._next = i + 1
            small = self._shrink(rgb)
            self._keep(i, small)
            if i == index:
                return small
        self.end = self._next
        self.close()
        raise VideoError(f"frame {index} is past the end of {self.video_path} ({self.end} frames)")

    def preload(self, stop: int | None = None, progress: Callable[[int], None] | None = None) -> int:
        """Decode frames ``0..stop-1`` (all by default) into the store; returns how many are kept."""
        self._restart()
        for i, rgb in self._iter:
            self.decodes += 1
            self._next = i + 1
            self._keep(i, self._shrink(rgb))
            if progress is not None:
                progress(i)
            if stop is not None and i + 1 >= stop:
                break
        else:
            self.end = self._next
        self.close()
        return len(self._jpeg)

    # access ------------------------------------------------------------------------
    def get(self, index: int) -> np.ndarray:
        """The RGB frame (display size) at ``index``; treat it as read-only."""
        index = int(index)
        if index < 0 or (self.end is not None and index >= self.end):
            raise VideoError(f"frame {index} is outside {self.video_path} (0..{(self.end or 1) - 1})")
        hit = self._lru.get(index)
        if hit is not None:
            self._lru.move_to_end(index)
            return hit
        data = self._jpeg.get(index)
        if data is not None:
            bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            self._remember(index, rgb)
            return rgb
        return self._decode_to(index)

    def __contains__(self, index: int) -> bool:
        return int(index) in self._jpeg or int(index) in self._lru

    @property
    def nbytes(self) -> int:
        return self._bytes

    def close(self) -> None:
        """Close the open decoder, if any (the store stays)."""
        if self._reader is not None:
            self._reader.close()
        self._reader = None
        self._iter = None


@dataclass
class Drawn:
    """What one render put on the frame (the widget keeps the last one; tests read it)."""

    frame_index: int
    items: list  # contract rows [frame_index, class_id, score, box], above thresh, classes kept
    masks: int  # person masks tinted in


class FrameRenderer:
    """Draws a result JSON's boxes, labels and masks on cached frames, fast.

    ``doc`` follows the output contract (``items``, ``classesInDS``, ``frame_indices``,
    ``coco_rle_masks``); boxes are in the video's pixel space and are scaled to the cache's
    display size.
    """

    def __init__(self, doc: dict, frames: FrameCache, mask_cache: int = 256, mask_color=(0, 200, 255),
                 mask_alpha: float = 0.45):
        self.doc, self.frames = doc, frames
        self.classes = list(doc.get("classesInDS", ["__background__"]))
        self.by_frame: dict[int, list] = {}
        for it in doc.get("items", []):
            self.by_frame.setdefault(int(it[0]), []).append(it)
        for rows in self.by_frame.values():
            rows.sort(key=lambda it: it[2])  # draw high scores last, on top
        self.frame_indices = list(doc.get("frame_indices") or range(len(doc.get("blur_scores", []))))
        self._row = {f: k for k, f in enumerate(self.frame_indices)}
        self._masks: OrderedDict[int, tuple[np.ndarray | None, int]] = OrderedDict()
        self._mask_cache = max(1, int(mask_cache))
        self.mask_color = np.array(mask_color, np.uint8)
        self.mask_alpha = float(mask_alpha)
        self.mask_decodes = 0

    def items_at(self, frame_index: int, thresh: float = 0.0, class_ids: Iterable[int] | None = None) -> list:
        """The frame's items scoring at least ``thresh`` whose class is in ``class_ids`` (None: all)."""
        keep = None if class_ids is None else set(class_ids)
        return [it for it in self.by_frame.get(int(frame_index), ())
                if it[2] >= thresh and (keep is None or it[1] in keep)]

    def mask_at(self, frame_index: int) -> tuple[tuple | None, int]:
        """((union of the frame's masks at display size, cropped to its box; the box), mask count).

        The union is None when the frame has no (non-empty) mask. Decoded once, then cached.
        """
        hit = self._masks.get(frame_index)
        if hit is not None:
            self._masks.move_to_end(frame_index)
            return hit
        row = self._row.get(frame_index)
        per_class = self.doc.get("coco_rle_masks") or []
        rles = [m for group in per_class[row] for m in group] if row is not None and row < len(per_class) else []
        union, n = None, len(rles)  # union: (mask crop as uint8 0/1, (y0, y1, x0, x1)) or None
        if rles:
            from pycocotools import mask as mask_utils

            self.mask_decodes += 1
            rles = [dict(r, counts=r["counts"].encode() if isinstance(r["counts"], str) else r["counts"])
                    for r in rles]
            full = mask_utils.decode(mask_utils.merge(rles, intersect=False)) if len(rles) > 1 \
                else mask_utils.decode(rles[0])
            f = self.frames
            if full.shape[:2] != (f.height, f.width):
                full = cv2.resize(full, (f.width, f.height), interpolation=cv2.INTER_NEAREST)
            ys, xs = np.nonzero(full.any(axis=1))[0], np.nonzero(full.any(axis=0))[0]
            if ys.size:  # keep only the bounding box: blending touches just those pixels
                y0, y1, x0, x1 = int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1
                union = (np.ascontiguousarray(full[y0:y1, x0:x1], dtype=np.uint8), (y0, y1, x0, x1))
        self._masks[frame_index] = (union, n)
        while len(self._masks) > self._mask_cache:
            self._masks.popitem(last=False)
        return union, n

    def render(self, frame_index: int, thresh: float = 0.4, class_ids: Iterable[int] | None = None,
               show_masks: bool = True) -> tuple[np.ndarray, Drawn]:
        """The annotated RGB frame at display size, and what was drawn on it."""
        rgb = self.frames.get(frame_index)
        out = rgb.copy()
        n_masks = 0
        if show_masks:
            m, n_masks = self.mask_at(frame_index)
            if m is not None:
                # blend inside the mask's bounding box with OpenCV, then copy where the mask is
                # set: numpy boolean indexing with a float round trip was ~15 ms at 540x960
                crop, (y0, y1, x0, x1) = m
                roi = out[y0:y1, x0:x1]
                tint = np.empty_like(roi)
                tint[:] = self.mask_color
                blend = cv2.addWeighted(roi, 1 - self.mask_alpha, tint, self.mask_alpha, 0)
                res = cv2.copyTo(blend, crop, roi)
                if res is not roi:  # a binding that copied the (strided) view: write it back
                    roi[...] = res
        keep = self.items_at(frame_index, thresh, class_ids)
        s = self.frames.scale
        h, w = out.shape[:2]
        t = max(1, round(min(h, w) / 300))
        font = max(0.35, min(h, w) / 900)
        for _f, c, score, box in keep:
            color = color_for(int(c))
            x1, y1, x2, y2 = (int(round(v * s)) for v in box[:4])
            cv2.rectangle(out, (x1, y1), (x2, y2), color, t)
            name = self.classes[c] if 0 <= c < len(self.classes) else str(c)
            text = f"{name} {score:.2f}"
            (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font, 1)
            ty = max(y1, th + base + 1)
            cv2.rectangle(out, (x1, ty - th - base - 1), (x1 + tw + 2, ty), color, -1)
            cv2.putText(out, text, (x1 + 1, ty - base), cv2.FONT_HERSHEY_SIMPLEX, font, (0, 0, 0), 1, cv2.LINE_AA)
        return out, Drawn(int(frame_index), keep, n_masks if show_masks else 0)

    def render_jpeg(self, frame_index: int, thresh: float = 0.4, class_ids: Iterable[int] | None = None,
                    show_masks: bool = True, quality: int = 85) -> tuple[bytes, Drawn]:
        """:meth:`render`, encoded as JPEG bytes (what an ``ipywidgets.Image`` shows)."""
        rgb, drawn = self.render(frame_index, thresh, class_ids, show_masks)
        return encode_jpeg(rgb, quality), drawn


def encode_jpeg(rgb: np.ndarray, quality: int = 85) -> bytes:
    """RGB uint8 -> JPEG bytes (OpenCV: several times faster than PIL/matplotlib here)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("cannot encode the frame as JPEG")
    return buf.tobytes()


def encode_png(rgb: np.ndarray) -> bytes:
    """RGB uint8 -> PNG bytes."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("cannot encode the image as PNG")
    return buf.tobytes()


def frame_step(frame_indices: Sequence[int]) -> int:
    """The stride of a run from its ``frame_indices`` (gcd of the gaps; 1 when irregular/short)."""
    import math

    gaps = [b - a for a, b in zip(frame_indices, frame_indices[1:]) if b > a]
    g = 0
    for d in gaps:
        g = math.gcd(g, d)
    return g or 1
