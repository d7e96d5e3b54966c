"""Pictures for humans: boxes and masks drawn on frames, crops, contact sheets, timelines.

Usage::

    from yeay_nb import vis
    img = vis.draw_boxes(rgb, boxes, ["shirt", "jeans"], scores=[0.9, 0.7])
    vis.save_image("out/frame.jpg", img)                           # atomic
    paths = vis.write_video_pictures(doc, "video.mp4", "out/<video_id>", thresh=0.4)
    fig = vis.timeline_figure(doc, thresh=0.4)                      # items per class + blur
    fig = vis.gallery_figure(images, titles, cols=5)                # for notebooks

All images are RGB uint8 arrays (H×W×3); files are written through :mod:`yeay_nb.atomic`.
"""
from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from .atomic import atomic_open, write_bytes


def color_for(class_id: int) -> tuple[int, int, int]:
    """A stable, well-spread RGB colour per class id (golden-ratio hues)."""
    hue = int((class_id * 0.618033988749895 % 1.0) * 179)
    hsv = np.uint8([[[hue, 200, 255]]])
    r, g, b = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]
    return int(r), int(g), int(b)


def safe_name(text: str) -> str:
    """A class name usable in a file name ("dress shirt" -> "dress_shirt")."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_") or "class"


def draw_boxes(rgb: np.ndarray, boxes: Sequence[Sequence[float]], labels: Sequence[str],
               scores: Sequence[float] | None = None, class_ids: Sequence[int] | None = None,
               thickness: int | None = None) -> np.ndarray:
    """A copy of ``rgb`` with labelled boxes ``[x1, y1, x2, y2]``."""
    out = np.ascontiguousarray(rgb).copy()
    h, w = out.shape[:2]
    t = thickness or max(1, round(min(h, w) / 300))
    font_scale = max(0.35, min(h, w) / 900)
    for k, box in enumerate(boxes):
        cid = class_ids[k] if class_ids is not None else k + 1
        color = color_for(int(cid))
        x1, y1, x2, y2 = (int(round(v)) for v in box[:4])
        cv2.rectangle(out, (x1, y1), (x2, y2), color, t)
        text = str(labels[k]) + (f" {scores[k]:.2f}" if scores is not None else "")
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        ty = max(y1, th + base + 1)
        cv2.rectangle(out, (x1, ty - th - base - 1), (x1 + tw + 2, ty), color, -1)
        cv2.putText(out, text, (x1 + 1, ty - base), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def overlay_masks(rgb: np.ndarray, masks: Sequence[np.ndarray], alpha: float = 0.45,
                  color: tuple[int, int, int] = (0, 200, 255)) -> np.ndarray:
    """A copy of ``rgb`` with binary masks (H×W bool) tinted in."""
    out = np.ascontiguousarray(rgb).copy()
    for m in masks:
        m = np.asarray(m, dtype=bool)
        if m.shape != out.shape[:2] or not m.any():
            continue
        out[m] = (out[m] * (1 - alpha) + np.array(color) * alpha).astype(np.uint8)
    return out


def annotate_frame(rgb: np.ndarray, frame_items: Sequence, classes: Sequence[str], thresh: float,
                   masks: Sequence[np.ndarray] = ()) -> np.ndarray:
    """Masks plus the frame's items above ``thresh`` (items in the contract's row format)."""
    keep = [it for it in frame_items if it[2] >= thresh]
    img = overlay_masks(rgb, masks) if len(masks) else rgb
    return draw_boxes(img, [it[3] for it in keep], [classes[it[1]] for it in keep],
                      [it[2] for it in keep], [it[1] for it in keep])


def crop_box(rgb: np.ndarray, box: Sequence[float], pad: float = 0.05) -> np.ndarray:
    """The region of ``box`` plus ``pad`` × its size on each side, clipped to the image."""
    h, w = rgb.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    px, py = (x2 - x1) * pad, (y2 - y1) * pad
    a, b = int(max(0, np.floor(x1 - px))), int(max(0, np.floor(y1 - py)))
    c, d = int(min(w, np.ceil(x2 + px))), int(min(h, np.ceil(y2 + py)))
    if c <= a or d <= b:  # a degenerate box still gives a 1-pixel crop rather than an empty array
        a, b = min(max(0, a), w - 1), min(max(0, b), h - 1)
        c, d = a + 1, b + 1
    return np.ascontiguousarray(rgb[b:d, a:c])


def _fit(img: np.ndarray, cell: int) -> np.ndarray:
    h, w = img.shape[:2]
    s = cell / max(h, w)
    small = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    canvas = np.full((cell, cell, 3), 255, np.uint8)
    y, x = (cell - small.shape[0]) // 2, (cell - small.shape[1]) // 2
    canvas[y:y + small.shape[0], x:x + small.shape[1]] = small
    return canvas


def contact_sheet(images: Sequence[np.ndarray], titles: Sequence[str] | None = None, cols: int = 6,
                  cell: int = 160) -> np.ndarray:
    """A grid of images, each fitted into a ``cell``×``cell`` square with its title below."""
    n = max(1, len(images))
    cols = max(1, min(cols, n))
    rows = (n + cols - 1) // cols
    title_h = 18 if titles else 0
    sheet = np.full((rows * (cell + title_h), cols * cell, 3), 255, np.uint8)
    for k, img in enumerate(images):
        r, c = divmod(k, cols)
        y, x = r * (cell + title_h), c * cell
        sheet[y:y + cell, x:x + cell] = _fit(img, cell)
        if titles:
            cv2.putText(sheet, str(titles[k])[:22], (x + 3, y + cell + 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                        (0, 0, 0), 1, cv2.LINE_AA)
    return sheet


def save_image(path: str | os.PathLike, rgb: np.ndarray, quality: int = 90) -> Path:
    """Write an RGB image (JPEG or PNG by suffix) atomically."""
    path = Path(path)
    ext = path.suffix.lower() or ".jpg"
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ValueError(f"cannot encode {path.name}")
    return write_bytes(path, buf.tobytes())


def save_figure(path: str | os.PathLike, fig, dpi: int = 100) -> Path:
    """Save a matplotlib figure atomically."""
    bio = io.BytesIO()
    fig.savefig(bio, format=Path(path).suffix.lstrip(".") or "png", dpi=dpi, bbox_inches="tight")
    return write_bytes(path, bio.getvalue())


def timeline_figure(doc: dict, thresh: float = 0.4):
    """Items per class over time (one row per class seen above ``thresh``), blur score below.

    X is the 0-based frame index (every frame of the video counts, whatever the stride).
    """
    from matplotlib.figure import Figure  # no pyplot: works headless and in threads

    classes = doc.get("classesInDS", ["__background__"])
    frames = doc.get("frame_indices") or list(range(len(doc.get("blur_scores", []))))
    col = {f: k for k, f in enumerate(frames)}
    counts: dict[int, np.ndarray] = {}
    for f, c, s, _b in doc.get("items", []):
        if s >= thresh and f in col:
            counts.setdefault(c, np.zeros(len(frames)))[col[f]] += 1
    shown = sorted(counts)
    fig = Figure(figsize=(10, 1.6 + 0.28 * max(1, len(shown))))
    gs = fig.add_gridspec(2, 1, height_ratios=[max(1, len(shown)) * 0.28 + 0.6, 1.0], hspace=0.08)
    ax, ax2 = fig.add_subplot(gs[0]), fig.add_subplot(gs[1])
    if shown:
        grid = np.stack([counts[c] for c in shown])
        extent = (frames[0] - 0.5, frames[-1] + 0.5, len(shown) - 0.5, -0.5) if frames else None
        im = ax.imshow(grid, aspect="auto", interpolation="nearest", cmap="viridis", extent=extent)
        ax.set_yticks(range(len(shown)), [classes[c] for c in shown], fontsize=8)
        # one colorbar spanning both axes keeps their x ranges aligned
        fig.colorbar(im, ax=[ax, ax2], label="items", fraction=0.02, pad=0.01)
    else:
        ax.text(0.5, 0.5, f"no items above {thresh}", ha="center", va="center", transform=ax.transAxes)
        ax.set_yticks([])
    ax.set_title(f"{doc.get('video_id', '')}: items per class (score >= {thresh})", fontsize=10)
    ax.tick_params(labelbottom=False)
    blur = [b[0][0] for b in doc.get("blur_scores", [])]
    ax2.plot(frames[:len(blur)], blur, color="tab:orange", lw=1)
    ax2.set_ylim(0, 1.05)
    ax2.set_ylabel("blur score", fontsize=8)
    ax2.set_xlabel("frame index (0-based)")
    if frames:
        ax.set_xlim(frames[0] - 0.5, frames[-1] + 0.5)
        ax2.set_xlim(frames[0] - 0.5, frames[-1] + 0.5)
    return fig


def gallery_figure(images: Sequence[np.ndarray], titles: Sequence[str] = (), cols: int = 5, size: float = 3.0):
    """A matplotlib grid of images (notebook display)."""
    from matplotlib.figure import Figure

    n = max(1, len(images))
    cols = max(1, min(cols, n))
    rows = (n + cols - 1) // cols
    fig = Figure(figsize=(size * cols, size * rows))
    for k, img in enumerate(images):
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.imshow(img)
        ax.set_axis_off()
        if k < len(titles):
            ax.set_title(titles[k], fontsize=9)
    return fig


def write_video_pictures(doc: dict, video_path: str | os.PathLike, out_dir: str | os.PathLike,
                         thresh: float = 0.4) -> dict[str, list[Path]]:
    """The ``--create-vis`` pictures for one video output, in ``out_dir``:

    ``top{rank}_frame{i}.jpg`` (top-N frames, boxes above ``thresh``),
    ``best_{class}_frame{i}.jpg`` (each class's best frame with its best box),
    ``crop_{class}.jpg``, ``contact_sheet.jpg`` and ``timeline.png``.
    Frames are read again from ``video_path`` (only those needed are converted).
    """
    from .video import read_frames

    out_dir = Path(out_dir)
    classes = doc["classesInDS"]
    best_frames, best_boxes = doc["top_frames_each_class"]
    wanted = set(doc["top_N_frames"]) | {f for f in best_frames if f >= 0}
    frames = read_frames(video_path, wanted, rotate=str(doc.get("video_rotation", 0)))
    by_frame: dict[int, list] = {}
    for it in doc["items"]:
        by_frame.setdefault(it[0], []).append(it)
    written: dict[str, list[Path]] = {"top": [], "best": [], "crops": [], "sheet": [], "timeline": []}
    for rank, f in enumerate(doc["top_N_frames"], start=1):
        if f in frames:
            img = annotate_frame(frames[f], by_frame.get(f, []), classes, thresh)
            written["top"].append(save_image(out_dir / f"top{rank}_frame{f:06d}.jpg", img))
    crops, titles = [], []
    for c, (f, box) in enumerate(zip(best_frames, best_boxes)):
        if f < 0 or box is None or f not in frames:
            continue
        name = safe_name(classes[c])
        score = max((it[2] for it in by_frame.get(f, []) if it[1] == c and it[3] == box), default=0.0)
        img = draw_boxes(frames[f], [box], [classes[c]], [score], [c])
        written["best"].append(save_image(out_dir / f"best_{name}_frame{f:06d}.jpg", img))
        crop = crop_box(frames[f], box)
        written["crops"].append(save_image(out_dir / f"crop_{name}.jpg", crop))
        crops.append(crop)
        titles.append(f"{classes[c]} {score:.2f}")
    if crops:
        written["sheet"].append(save_image(out_dir / "contact_sheet.jpg", contact_sheet(crops, titles)))
    written["timeline"].append(save_figure(out_dir / "timeline.png", timeline_figure(doc, thresh)))
    return written


class AnnotatedVideoWriter:
    """An mp4 written frame by frame to a temporary sibling and moved into place on ``close``.

    Usage::

        w = AnnotatedVideoWriter("out/v/annotated.mp4", width, height, fps)
        w.write(rgb); ...; w.close()          # or w.abort() on an error: nothing is left
    """

    def __init__(self, path: str | os.PathLike, width: int, height: int, fps: float):
        import av

        self.path = Path(path)
        # H.264 wants even sizes: drop the last row/column of odd-sized frames
        self.width, self.height = int(width) // 2 * 2, int(height) // 2 * 2
        self._ctx = atomic_open(self.path, "wb")
        self._file = self._ctx.__enter__()
        self._container = av.open(self._file, "w", format="mp4")
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        from fractions import Fraction

        self._stream = self._container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001) if fps else 10)
        self._stream.width, self._stream.height = self.width, self.height
        self._stream.pix_fmt = "yuv420p"
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        import av

        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[:self.height, :self.width]), format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> Path:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        self._ctx.__exit__(None, None, None)
        return self.path

    def abort(self) -> None:
        try:
            self._container.close()
        except Exception:  # noqa: BLE001 - the half-written file is thrown away anyway
            pass
        err = RuntimeError("aborted")
        try:
            self._ctx.__exit__(RuntimeError, err, None)
        except RuntimeError:
            pass
