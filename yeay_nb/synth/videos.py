"""Short synthetic videos of the wardrobe people moving, with per-frame ground truth.

Usage::

    from yeay_nb.synth import make_videos
    paths = make_videos("work/videos", num_videos=2, num_frames=48, size=(320, 256), fps=12, seed=0)
    # work/videos/synth_000.mp4 and work/videos/synth_000.truth.json
    make_videos("work/videos2", layout="folders")   # work/videos2/synth_000/video.mp4 (+ video.truth.json)
    make_videos("work/rot", num_videos=1, rotation=90)  # phone-style display matrix on the first video

Each person walks across, bobs (waving) or turns; some frames are motion-blurred or
defocused (listed in the sidecar, never the first or last frame, never two in a row),
so a "best frame" picker has something to avoid. Frames are painted by the same
:func:`~yeay_nb.synth.figures.render_scene` as the training images.

Determinism: the same seed gives byte-identical sidecars and identical frames before
encoding; the mp4 bytes themselves can differ slightly between runs (libx264's decisions
varied with the state of the process in our tests), so compare decoded frames with a
tolerance, not file hashes.

Encoding: H.264 (libx264) through PyAV when available, else MPEG-4 Part 2 ("mp4v")
through OpenCV; both decode with PyAV and OpenCV. The sidecar ``<name>.truth.json``
holds, per frame, the visible boxes per class name (clothing38 class names plus
``person``), as ``[x1, y1, x2, y2]`` with ``x2 = x + w``, and the visible person masks
(COCO RLE, ``counts`` as str), all in *display* orientation.

``rotation`` (degrees clockwise, like a phone's ``rotate`` tag: 90, 180 or 270) applies
to the first video: its frames are drawn upright at the display size, stored turned
the other way, and the container gets a display matrix saying how to turn them back
(``size`` is then the stored frame size). Readers that honour the matrix (PyAV's
``frame.rotation``, OpenCV's default auto-orientation, ffprobe) show upright people.
"""
from __future__ import annotations

import dataclasses
import math
import os
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from ..atomic import write_json
from ..errors import ParamsError, VideoError
from .catalog import PERSON_NAMES
from .figures import Person, Scene, random_background, random_people, render_scene
from .wardrobe import encode_rle

MOTIONS = ("walk", "bob", "turn")
PERSON_SYNSETS = frozenset(s for _, s in PERSON_NAMES)
H264_CRF = 18  # high quality, so blur (not compression) is what lowers sharpness


def pick_encoder() -> str:
    """'libx264' (PyAV) when this PyAV build can encode H.264, else 'mp4v' (OpenCV)."""
    try:
        import av

        if "libx264" in av.codecs_available:
            return "libx264"
    except ImportError:  # pragma: no cover - av is a declared dependency
        pass
    return "mp4v"


def _check(num_videos, num_frames, size, fps, rotation, layout, seed) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ParamsError(f"expected (width, height), got {size!r}", key="size") from None
    if width < 64 or height < 64 or width % 2 or height % 2:
        # yuv420p (what players and OpenCV expect) needs even sides.
        raise ParamsError(f"sides must be even and at least 64 pixels, got {width}x{height}", key="size")
    if int(num_videos) < 1:
        raise ParamsError(f"must be at least 1, got {num_videos}", key="num_videos")
    if int(num_frames) < 2:
        raise ParamsError(f"must be at least 2, got {num_frames}", key="num_frames")
    if not 0 < float(fps) <= 240:
        raise ParamsError(f"must be in (0, 240], got {fps}", key="fps")
    if int(rotation) % 360 not in (0, 90, 180, 270):
        raise ParamsError(f"must be 0, 90, 180 or 270, got {rotation}", key="rotation")
    if int(seed) < 0:
        raise ParamsError(f"must be >= 0, got {seed}", key="seed")
    if layout not in ("flat", "folders"):
        raise ParamsError(f"must be 'flat' or 'folders', got {layout!r}", key="layout")
    return width, height


def _blur_schedule(rng: np.random.Generator, num_frames: int) -> dict[int, str]:
    """Frames to blur: about one in ten, never the first/last two, never adjacent."""
    candidates = list(range(2, num_frames - 2))
    rng.shuffle(candidates)
    chosen: list[int] = []
    for t in candidates:
        if len(chosen) >= max(1, num_frames // 10):
            break
        if all(abs(t - c) >= 3 for c in chosen):
            chosen.append(t)
    return {t: ("motion" if i % 2 == 0 else "defocus") for i, t in enumerate(sorted(chosen))}


def blur_frame(image: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """Motion blur (a line kernel at a random angle) or defocus (a wide Gaussian)."""
    h, w = image.shape[:2]
    if kind == "motion":
        length = max(9, int(round(0.045 * max(w, h)))) | 1
        kernel = np.zeros((length, length), np.float32)
        angle = rng.uniform(0, math.pi)
        c, d = length // 2, (length - 1) / 2
        cv2.line(kernel, (int(round(c - d * math.cos(angle))), int(round(c - d * math.sin(angle)))),
                 (int(round(c + d * math.cos(angle))), int(round(c + d * math.sin(angle)))), 1.0, 1)
        return cv2.filter2D(image, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT)
    sigma = max(2.5, 0.012 * max(w, h))
    return cv2.GaussianBlur(image, (0, 0), sigma)


def _pose(base: Person, motion: dict, t: int, num_frames: int) -> Person:
    """The person at frame ``t`` of a motion."""
    phase = 2 * math.pi * t / motion["period"]
    kind = motion["kind"]
    if kind == "walk":
        swing = math.sin(phase)
        return dataclasses.replace(
            base, cx=base.cx + motion["speed"] * t,
            foot_y=base.foot_y - 0.012 * base.height * abs(swing),
            leg_angles=(0.02 + 0.2 * abs(swing), 0.02 + 0.2 * abs(math.cos(phase))),
            arm_angles=(0.1 + 0.3 * max(0.0, swing), 0.1 + 0.3 * max(0.0, -swing)))
    if kind == "bob":
        arms = list(base.arm_angles)
        bends = list(base.elbow_bends)
        arms[motion["arm"]] = 2.2 + 0.35 * math.sin(2 * phase)
        bends[motion["arm"]] = 0.5 + 0.3 * math.sin(2 * phase)
        return dataclasses.replace(base, foot_y=base.foot_y + 0.035 * base.height * math.sin(phase),
                                   arm_angles=(arms[0], arms[1]), elbow_bends=(bends[0], bends[1]))
    # turn: narrower when seen from the side
    return dataclasses.replace(base, width_scale=0.5 + 0.5 * abs(math.cos(phase / 2)))


def _rotate_to_stored(image: np.ndarray, rotation: int) -> np.ndarray:
    """Turn an upright (display) frame into the stored orientation (counter-clockwise)."""
    r = rotation % 360
    if r == 0:
        return image
    code = {90: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_CLOCKWISE}[r]
    return cv2.rotate(image, code)


class _Writer:
    """Writes BGR frames to an mp4, atomically (a temporary sibling moved into place)."""

    def __init__(self, path: Path, width: int, height: int, fps: float, rotation: int, encoder: str):
        self.path, self.encoder = path, encoder
        self.tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.mp4")
        if encoder == "libx264":
            import av

            self.container = av.open(str(self.tmp), "w", format="mp4")
            rate = Fraction(fps).limit_denominator(1001)
            self.stream = self.container.add_stream("libx264", rate=rate)
            self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, "yuv420p"
            self.stream.codec_context.time_base = 1 / rate
            # One thread: x264 output is then byte-identical run to run.
            self.stream.options = {"crf": str(H264_CRF), "preset": "medium", "threads": "1"}
            if rotation % 360:
                if hasattr(self.stream, "set_display_rotation"):
                    self.stream.set_display_rotation((-rotation) % 360)  # PyAV takes counter-clockwise
                else:  # older PyAV: the legacy tag (honoured by older FFmpeg muxers only)
                    self.stream.metadata["rotate"] = str(rotation % 360)
            self.frames = 0
        else:
            if rotation % 360:
                raise VideoError("rotation metadata needs PyAV with libx264; this build has neither")
            self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter.fourcc(*"mp4v"), float(fps),
                                          (width, height))
            if not self.writer.isOpened():
                raise VideoError(f"OpenCV cannot write mp4v to {self.tmp}")

    def write(self, bgr: np.ndarray) -> None:
        if self.encoder == "libx264":
            import av

            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(bgr), format="bgr24").reformat(format="yuv420p")
            frame.pts = self.frames
            self.frames += 1
            for packet in self.stream.encode(frame):
                self.container.mux(packet)
        else:
            self.writer.write(bgr)

    def close(self, ok: bool) -> None:
        try:
            if self.encoder == "libx264":
                if ok:
                    for packet in self.stream.encode():
                        self.container.mux(packet)
                self.container.close()
            else:
                self.writer.release()
            if ok:  # the temporary sibling is complete: move it into place atomically
                with open(self.tmp, "rb+") as f:
                    os.fsync(f.fileno())
                os.replace(self.tmp, self.path)
        finally:
            if self.tmp.exists():
                self.tmp.unlink()


def make_videos(out_dir: str | os.PathLike, num_videos: int = 2, num_frames: int = 48, size=(320, 256),
                fps: float = 12, seed: int = 0, blur_frames: bool = True, layout: str = "flat",
                rotation: int = 0, prefix: str = "synth", progress: bool = False) -> list[Path]:
    """Write ``num_videos`` short mp4 videos of moving wardrobe people and their truth sidecars.

    ``layout="flat"``: ``out_dir/<video_id>.mp4``; ``layout="folders"``:
    ``out_dir/<video_id>/video.mp4`` (the 2018 scripts took the video id from the folder).
    The sidecar sits beside each video as ``<stem>.truth.json``. ``size`` is (width, height)
    of the stored frames. Returns the video paths.
    """
    width, height = _check(num_videos, num_frames, size, fps, rotation, layout, seed)
    rotation = int(rotation) % 360
    encoder = pick_encoder()
    out = Path(out_dir)
    paths: list[Path] = []
    for v in tqdm(range(int(num_videos)), desc="synth videos", unit="video", disable=not progress):
        video_id = f"{prefix}_{v:03d}"
        path = out / f"{video_id}.mp4" if layout == "flat" else out / video_id / "video.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        rot = rotation if v == 0 else 0
        dw, dh = (height, width) if rot in (90, 270) else (width, height)  # display size
        rng = np.random.default_rng([int(seed), v, 1])  # distinct from the images' streams
        background, bg_objects = random_background(rng, dw, dh)
        people = random_people(rng, dw, dh, count=int(rng.integers(1, 3)))
        motions = []
        for k, p in enumerate(people):
            kind = MOTIONS[(v + k) % len(MOTIONS)]
            speed = (1 if p.cx < dw / 2 else -1) * rng.uniform(0.3, 0.7) * dw / num_frames
            motions.append({"kind": kind, "period": float(rng.uniform(10, 18)), "speed": speed,
                            "arm": int(rng.integers(2))})
        blur = _blur_schedule(rng, int(num_frames)) if blur_frames else {}
        frames_truth = []
        writer = _Writer(path, width, height, fps, rot, encoder)
        ok = False
        try:
            for t in range(int(num_frames)):
                posed = [_pose(p, m, t, num_frames) for p, m in zip(people, motions)]
                scene = Scene(background=background, background_objects=bg_objects, people=posed,
                              noise_seed=int(seed) * 100003 + v * 10007 + t, annotate_body=0.0)
                r = render_scene(scene)
                image = r.image
                if t in blur:
                    image = blur_frame(image, blur[t], rng)
                writer.write(_rotate_to_stored(image, rot))
                boxes: dict[str, list[list[int]]] = {}
                for o in r.objects:
                    if o["person"] is None:
                        continue
                    cls = o["class_name"] if o["class_name"] is not None else (
                        "person" if o["synset"] in PERSON_SYNSETS else None)
                    if cls is None:
                        continue
                    x, y, w, h = o["box"]
                    boxes.setdefault(cls, []).append([x, y, x + w, y + h])
                masks = [encode_rle(m) for m in r.person_masks]
                frames_truth.append({"frame_index": t, "blurred": blur.get(t), "boxes": dict(sorted(boxes.items())),
                                     "person_masks": masks})
            ok = True
        finally:
            writer.close(ok)
        truth = {
            "video_id": video_id, "file": path.name, "encoder": encoder, "fps": fps, "num_frames": int(num_frames),
            "width": width, "height": height, "rotation": rot, "display_width": dw, "display_height": dh,
            "box_format": "xyxy, x2 = x + w, display orientation",
            "blurred_frames": sorted(blur), "blur": {str(t): k for t, k in sorted(blur.items())},
            "motions": [m["kind"] for m in motions],
            "classes": sorted({c for f in frames_truth for c in f["boxes"]}),
            "frames": frames_truth,
        }
        write_json(path.with_name(f"{path.stem}.truth.json"), truth)
        paths.append(path)
    return paths
