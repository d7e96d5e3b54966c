"""Milliseconds to redraw one frame in the video explorer, against a naive baseline, same run.

Fast path (``yeay_nb.frames``, what ``VideoExplorer`` does on a slider move): the frame comes
from the decode-once cache (JPEG bytes in memory, an LRU of arrays), the frame's person
masks are decoded from RLE on first use and cached, boxes/labels/masks are drawn with
OpenCV, the result is encoded with ``cv2.imencode``.

Naive baseline (the obvious notebook code): ``cv2.VideoCapture`` seeks to the frame
(``CAP_PROP_POS_FRAMES``), the masks are decoded from RLE every time, boxes and labels are
drawn with matplotlib and the figure is saved to PNG bytes.

Both draw the same frames (random order, as a user scrubbing) of a synthetic 540×960
(portrait phone) video with ``--items`` detections and a person mask per frame. Reported:
median / p90 per redraw; the fast path twice, first visit (mask decode, JPEG store hit)
and revisit (all cached); the whole explorer callback of a slider move (frame, timeline
cursor PNG, info line; kernel side); plus the one-time cost of filling the frame cache.

Usage::

    .venv/bin/python benchmarks/bench_widget_redraw.py            # 120 frames, 60 redraws each
    .venv/bin/python benchmarks/bench_widget_redraw.py --tiny     # CI: 16 frames, 8 redraws
    .venv/bin/python benchmarks/bench_widget_redraw.py --video ../shared/data/videos/juggle.mp4

Prints a table and one JSON line, and writes the JSON to ``--json``.
"""
from __future__ import annotations

import argparse
import io
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from yeay_nb.frames import FrameCache, FrameRenderer  # noqa: E402


def naive_redraw(video: str, doc: dict, frame_index: int, thresh: float, max_side: int) -> bytes:
    import cv2
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle
    from pycocotools import mask as mask_utils

    cap = cv2.VideoCapture(video)
    cap.set(cv2.CAP_PROP_POS_FRAMES, frame_index)
    ok, bgr = cap.read()
    cap.release()
    if not ok:
        raise RuntimeError(f"cannot read frame {frame_index}")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    row = doc["frame_indices"].index(frame_index)
    for group in doc["coco_rle_masks"][row]:
        for rle in group:
            m = mask_utils.decode(dict(rle, counts=rle["counts"].encode())).astype(bool)
            rgb[m] = (rgb[m] * 0.55 + np.array([0, 200, 255]) * 0.45).astype(np.uint8)
    h, w = rgb.shape[:2]
    s = min(1.0, max_side / max(h, w))
    fig = Figure(figsize=(w * s / 100, h * s / 100), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.imshow(rgb)
    ax.set_axis_off()
    for f, c, score, (x1, y1, x2, y2) in doc["items"]:
        if f == frame_index and score >= thresh:
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, color="yellow", lw=2))
            ax.text(x1, y1, f"{doc['classesInDS'][c]} {score:.2f}", fontsize=8, backgroundcolor="yellow")
    bio = io.BytesIO()
    fig.savefig(bio, format="png")
    return bio.getvalue()


def _stats(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"median_ms": round(float(np.median(a)), 2), "p90_ms": round(float(np.percentile(a, 90)), 2),
            "mean_ms": round(float(a.mean()), 2), "n": len(ms)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiny", action="store_true", help="CI size: 16 frames, 8 redraws")
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--redraws", type=int, default=60)
    ap.add_argument("--width", type=int, default=540)
    ap.add_argument("--height", type=int, default=960)
    ap.add_argument("--items", type=int, default=8, help="detections per frame")
    ap.add_argument("--max-side", type=int, default=960)
    ap.add_argument("--thresh", type=float, default=0.3)
    ap.add_argument("--video", help="use a real video instead of the synthetic one (synthetic detections)")
    ap.add_argument("--json", default=str(ROOT / "test-artifacts" / "bench_widget_redraw.json"))
    args = ap.parse_args(argv)
    if args.tiny:
        args.frames, args.redraws = 16, 8
    from test_widgets import make_doc, make_video
    from yeay_nb.video import count_frames

    import cv2

    cv2.setNumThreads(max(1, cv2.getNumThreads()))
    with tempfile.TemporaryDirectory() as tmp:
        if args.video:
            video = Path(args.video)
            cap = cv2.VideoCapture(str(video))
            w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            cap.release()
            n = min(args.frames, count_frames(video))
        else:
            w, h, n = args.width, args.height, args.frames
            video = make_video(Path(tmp) / "bench" / "bench.mp4", w, h, n)
        doc = make_doc(video, w, h, n, items_per_frame=args.items, masks_every=1)
        rng = np.random.default_rng(0)
        order = [int(x) for x in rng.choice(n, size=min(args.redraws, n), replace=False)]

        t0 = time.perf_counter()
        cache = FrameCache(video, max_side=args.max_side)
        cache.preload(stop=n)
        fill_s = time.perf_counter() - t0
        r = FrameRenderer(doc, cache)
        first, again, drawn_fast = [], [], 0
        for i in order:
            t = time.perf_counter()
            jpeg, d = r.render_jpeg(i, args.thresh)
            first.append((time.perf_counter() - t) * 1e3)
            drawn_fast += len(d.items)
        for i in order:
            t = time.perf_counter()
            r.render_jpeg(i, args.thresh)
            again.append((time.perf_counter() - t) * 1e3)
        # the whole explorer callback: frame + timeline cursor PNG + info line (no front end:
        # the widget's comm send is a no-op, so this is the kernel-side cost of a slider move)
        from yeay_nb.widgets import VideoExplorer

        ex = VideoExplorer(output_dir=tmp, max_side=args.max_side, thresh=args.thresh)
        ex.load_doc(doc, video)
        ex.cache.preload(stop=n)
        widget = []
        for i in order:
            t = time.perf_counter()
            ex.frame_slider.value = i
            widget.append((time.perf_counter() - t) * 1e3)
            assert ex.last_drawn.frame_index == i
        naive, drawn_naive = [], 0
        for i in order:
            t = time.perf_counter()
            naive_redraw(str(video), doc, i, args.thresh, args.max_side)
            naive.append((time.perf_counter() - t) * 1e3)
            drawn_naive += sum(1 for it in doc["items"] if it[0] == i and it[2] >= args.thresh)
        assert drawn_fast == drawn_naive, "both paths must draw the same boxes"

    res = {
        "benchmark": "widget_redraw", "video": str(args.video or "synthetic"), "frame_wh": [w, h],
        "shown_wh": [cache.width, cache.height], "frames": n, "items_per_frame": args.items,
        "boxes_drawn": drawn_fast, "cache_fill_s": round(fill_s, 3), "cache_mb": round(cache.nbytes / 2**20, 2),
        "fast_first_visit": _stats(first), "fast_revisit": _stats(again),
        "explorer_slider_move": _stats(widget), "naive": _stats(naive),
        "speedup_median": round(float(np.median(naive) / np.median(first)), 1),
        "cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
    }
    print(f"redraw of one {w}x{h} frame shown at {cache.width}x{cache.height}, {args.items} items/frame, "
          f"{len(order)} random frames of {n}")
    print(f"{'path':<34}{'median ms':>10}{'p90 ms':>10}")
    for name, key in (("fast: first visit (cache, cv2)", "fast_first_visit"), ("fast: revisit", "fast_revisit"),
                      ("explorer slider move (+timeline)", "explorer_slider_move"),
                      ("naive: seek + matplotlib", "naive")):
        print(f"{name:<34}{res[key]['median_ms']:>10.1f}{res[key]['p90_ms']:>10.1f}")
    print(f"one-time cache fill: {fill_s:.2f} s for {n} frames ({res['cache_mb']} MB); "
          f"speed-up (median, first visit): {res['speedup_median']}x")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    from yeay_nb.atomic import write_json

    write_json(out, res, indent=2)
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    main()
