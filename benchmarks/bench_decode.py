"""The video path's CPU side: decoding, colour conversion and the blur score, the 2018 way (the naive
baseline) against ours, same frames, same run; with and without a GIL-busy thread beside it.

Usage::

    python3 benchmarks/bench_decode.py --video clip.mp4 [--frames 240] [--repeat 3] [--json out.json]
    .venv/bin/python benchmarks/bench_decode.py --tiny        # CPU smoke mode (CI): a generated clip

Rows (frames/s, median of ``--repeat``):

- ``naive``: PyAV decode → rgb24 → ``cv2.Laplacian(gray, CV_64F).var()`` in one thread (the 2018 loop's
  CPU work per frame, without the models);
- ``decode``: ``VideoReader.frames`` alone (PyAV, libavcodec's threads, rgb24 by swscale);
- ``decode_opencv``: ``VideoReader.frames(opencv=True)`` (OpenCV's FFmpeg reader, one GIL-free call a
  frame; ``fastpath.OPENCV_DECODE``), also as ``ours_opencv`` and in the busy rows;
- ``decode_yuv``: decoding to yuv420p planes only (what the conversion costs);
- ``blur_2018`` / ``blur``: the blur formula alone on decoded frames (values checked equal);
- ``ours``: what ``run_inference``'s decode thread does: ``VideoReader.frames``, the blur in the
  ``blur`` pool, whole batches handed over through ``prefetch`` (``BATCH_HANDOFF``);
- ``ours_busy`` / ``decode_busy``: the same beside a thread that holds the GIL in pure Python (the
  model threads' host work), with Python's switch interval at ``fastpath.GIL_SWITCH_S``: how much of
  the decode thread's work needs the GIL;
- ``decode_threads_N``: PyAV to rgb24 with libavcodec's thread count set to N (``--threads``).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from yeay_nb import fastpath, scoring  # noqa: E402
from yeay_nb.infer import _grouped, _pool  # noqa: E402
from yeay_nb.video import VideoReader, prefetch  # noqa: E402


def blur_2018(rgb: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


def naive(video: Path, frames: int) -> int:
    import av

    n = 0
    with av.open(str(video)) as c:
        for f in c.decode(video=0):
            blur_2018(f.to_ndarray(format="rgb24"))
            n += 1
            if n >= frames:
                break
    return n


def decode(video: Path, frames: int, opencv: bool = False) -> int:
    with VideoReader(video) as r:
        return sum(1 for _ in r.frames(max_frames=frames, opencv=opencv))


def pyav(video: Path, frames: int, fmt: str = "rgb24", threads: int = 0) -> int:
    """PyAV as VideoReader runs it (libavcodec's frame and slice threads), ``threads`` of them (0: as
    many as CPUs), each frame converted to ``fmt``."""
    import av

    n = 0
    with av.open(str(video)) as c:
        s = c.streams.video[0]
        s.thread_type, s.thread_count = "AUTO", threads
        for f in c.decode(s):
            f.to_ndarray(format=fmt)
            n += 1
            if n >= frames:
                break
    return n


def ours(video: Path, frames: int, batch: int, opencv: bool = False) -> int:
    pool = _pool("blur", max(1, min(4, (os.cpu_count() or 2) - 1)))
    with VideoReader(video) as r:
        def with_blur():
            for i, rgb in r.frames(max_frames=frames, opencv=opencv):
                yield i, rgb, pool.submit(scoring.laplacian_variance, rgb)

        n = 0
        for group in prefetch(_grouped(with_blur(), batch), maxsize=2):
            n += sum(1 for _, _, b in group if b.result() >= 0)
    return n


@contextlib.contextmanager
def gil_busy():
    """A thread spinning in pure Python (holds the GIL between switches), at the switch interval a video
    runs with on CUDA (``fastpath.gil_switch``; the device only picks the rule, nothing runs there)."""
    stop = threading.Event()

    def spin():
        x = 0
        while not stop.is_set():
            for _ in range(1000):
                x += 1

    t = threading.Thread(target=spin, daemon=True)
    with fastpath.gil_switch("cuda"):
        t.start()
        try:
            yield
        finally:
            stop.set()
            t.join()


def rate(fn, repeat: int) -> dict:
    fn()  # warm-up: file cache, libav's first open, the pool's threads
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        n = fn()
        runs.append(n / (time.perf_counter() - t0))
    return {"fps": round(statistics.median(runs), 1), "fps_runs": [round(r, 1) for r in runs], "frames": n}


def tiny_clip(folder: Path) -> Path:
    """A 64-frame 320x180 clip of moving shapes (h264 where PyAV has it)."""
    import av

    path = folder / "tiny.mp4"
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=25)
        s.width, s.height, s.pix_fmt = 320, 180, "yuv420p"
        for k in range(64):
            img = np.full((180, 320, 3), 40, np.uint8)
            cv2.rectangle(img, (10 + 3 * k, 20), (80 + 3 * k, 150), (200, 120, 40), -1)
            img[::7] = rng.integers(0, 255, img[::7].shape, dtype=np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--video", type=Path)
    ap.add_argument("--frames", type=int, default=240)
    ap.add_argument("--batch", type=int, default=48)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="*", default=[])
    ap.add_argument("--tiny", action="store_true", help="a generated 64-frame clip, 1 repeat (CI)")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    tmp = tempfile.TemporaryDirectory()
    if a.tiny:
        a.video, a.frames, a.repeat, a.batch, a.threads = tiny_clip(Path(tmp.name)), 64, 1, 16, [1]
    if a.video is None:
        ap.error("--video or --tiny")

    with VideoReader(a.video) as r:
        sample = [rgb for _, rgb in r.frames(max_frames=min(a.frames, 48))]
        dim = [r.info.width, r.info.height]
    rel = max(abs(scoring.laplacian_variance(f) - blur_2018(f)) / max(blur_2018(f), 1e-12) for f in sample)
    if rel > 1e-9:
        raise SystemExit(f"the blur score differs from the 2018 formula: {rel:.3g} relative")
    res: dict = {"video": str(a.video), "dim": dim, "cpus": os.cpu_count(), "machine": platform.processor(),
                 "python": platform.python_version(), "blur_max_rel_diff": rel, "rows": {}}
    rows = res["rows"]

    def per_frame(fn):
        t0 = time.perf_counter()
        for _ in range(a.repeat):
            for f in sample:
                fn(f)
        return len(sample) * a.repeat / (time.perf_counter() - t0)

    rows["naive"] = rate(lambda: naive(a.video, a.frames), a.repeat)
    rows["decode"] = rate(lambda: decode(a.video, a.frames), a.repeat)
    rows["decode_opencv"] = rate(lambda: decode(a.video, a.frames, True), a.repeat)
    rows["decode_yuv"] = rate(lambda: pyav(a.video, a.frames, "yuv420p"), a.repeat)
    rows["blur_2018"] = {"fps": round(per_frame(blur_2018), 1)}
    rows["blur"] = {"fps": round(per_frame(scoring.laplacian_variance), 1)}
    rows["ours"] = rate(lambda: ours(a.video, a.frames, a.batch), a.repeat)
    rows["ours_opencv"] = rate(lambda: ours(a.video, a.frames, a.batch, True), a.repeat)
    with gil_busy():
        rows["decode_busy"] = rate(lambda: decode(a.video, a.frames), a.repeat)
        rows["decode_opencv_busy"] = rate(lambda: decode(a.video, a.frames, True), a.repeat)
        rows["ours_busy"] = rate(lambda: ours(a.video, a.frames, a.batch), a.repeat)
        rows["ours_opencv_busy"] = rate(lambda: ours(a.video, a.frames, a.batch, True), a.repeat)
    for n in a.threads:
        rows[f"decode_threads_{n}"] = rate(lambda n=n: pyav(a.video, a.frames, "rgb24", n), a.repeat)
    for row in rows.values():
        if "frames" in row and row["frames"] != min(a.frames, rows["naive"]["frames"]):
            raise SystemExit(f"a variant decoded {row['frames']} frames, the baseline {rows['naive']['frames']}")
    base = rows["naive"]["fps"]
    print(f"{a.video.name} {dim[0]}x{dim[1]}, {a.frames} frames, {os.cpu_count()} CPUs; blur equal to "
          f"{rel:.1e} relative")
    print(f"{'row':<20}{'frames/s':>10}{'x naive':>9}")
    for k, row in rows.items():
        print(f"{k:<20}{row['fps']:>10.1f}{row['fps'] / base:>9.2f}")
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))
    print(json.dumps(res))


if __name__ == "__main__":
    main()
