"""Frames/s of ``yeay_nb.infer.run_inference`` against the naive 2018-style loop, same run.

Naive baseline (what the 2018 script did): OpenCV reads a frame, the model runs on that
one frame (batch 1), the blur score is computed in the same thread, and every person
mask above the mask threshold is RLE-encoded. The pipeline: PyAV decodes (and computes
the blur score) in a background thread, frames go to the model in batches, only kept
masks are thresholded and encoded. Both produce the same items (checked).

Usage::

    .venv/bin/python benchmarks/bench_infer_cpu.py                       # a synthetic video
    .venv/bin/python benchmarks/bench_infer_cpu.py --video ../shared/data/videos/juggle.mp4 \
        --frames 24 --backbone resnet50 --test-size 512 --batch-size 4

The model is an untrained Mask R-CNN (``yeay_nb.models.build_model``) with its score
threshold at 0 and a fixed detection count, so both paths do the same work as a trained
model that finds ``--detections`` things per frame. Prints one JSON line of results.
"""
from __future__ import annotations

import argparse
import atexit
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yeay_nb import scoring  # noqa: E402
from yeay_nb.infer import _encode_rle, load_detector, run_inference  # noqa: E402
from yeay_nb.models import build_model, save_checkpoint  # noqa: E402

CLASSES = ["__background__", "shirt", "jeans", "person"]


def naive(video: Path, det, frames: int, score_floor: float, mask_thresh: float, device: str) -> tuple[float, list]:
    import cv2

    person = CLASSES.index("person")
    cap = cv2.VideoCapture(str(video))
    items, blur_raw = [], []
    t0 = time.perf_counter()
    i = 0
    while i < frames:
        ok, bgr = cap.read()
        if not ok:
            break
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        blur_raw.append(scoring.laplacian_variance(rgb))
        with torch.inference_mode():
            out = det.model([torch.from_numpy(rgb).to(device).permute(2, 0, 1).float() / 255.0])[0]
        for k, (s, c, b) in enumerate(zip(out["scores"].tolist(), out["labels"].tolist(), out["boxes"].tolist())):
            if s >= score_floor and c > 0:
                items.append([i, int(c), round(s, 6), [round(v, 3) for v in b]])
            if c == person and s >= mask_thresh:
                _encode_rle((out["masks"][k, 0] > 0.5).cpu().numpy())
        i += 1
    cap.release()
    return time.perf_counter() - t0, items


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--video", default=None, help="default: a synthetic 320x256 video")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", default="320x256", help="synthetic video WIDTHxHEIGHT")
    ap.add_argument("--backbone", default="resnet18", choices=["resnet18", "resnet50", "mobilenet_v3"])
    ap.add_argument("--test-size", type=int, default=256)
    ap.add_argument("--detections", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench-infer-"))
    atexit.register(shutil.rmtree, tmp, True)  # checkpoints + videos: ~230 MB a run
    video = Path(args.video) if args.video else None
    if video is None:
        from yeay_nb.synth.videos import make_videos

        size = tuple(int(v) for v in args.size.lower().split("x"))
        video = make_videos(tmp / "videos", num_videos=1, num_frames=args.frames, size=size, seed=3)[0]
    torch.manual_seed(0)
    cfg = {"arch": "maskrcnn", "backbone": args.backbone, "norm": "frozen_bn", "num_classes": len(CLASSES),
           "test_min_size": args.test_size, "test_max_size": int(args.test_size * 1.7),
           "rpn_post_nms_top_n_test": 100, "box_detections_per_img": args.detections, "box_score_thresh": 0.0}
    ckpt = save_checkpoint(tmp / "m.pt", model=build_model(cfg), classes=CLASSES, model_config=cfg)
    det = load_detector(str(ckpt), args.device, score_floor=0.0)
    # warm-up (allocator, first-call overheads) outside both timings
    with torch.inference_mode():
        det.model([torch.rand(3, args.test_size, args.test_size, device=args.device)])
    t_naive, naive_items = naive(video, det, args.frames, 0.05, 0.5, args.device)
    t0 = time.perf_counter()
    s = run_inference(video, tmp / "out", det, "same", score_floor=0.05, mask_thresh=0.5, max_frames=args.frames,
                      batch_size=args.batch_size, device=args.device, progress=False)
    t_pipe = time.perf_counter() - t0
    assert s.done, s.failed
    doc = json.loads(s.outputs[0].read_text())
    n = len(doc["frame_indices"])
    same = len(doc["items"]) == len(naive_items) and all(
        a[:2] == b[:2] and abs(a[2] - b[2]) < 1e-3 for a, b in zip(doc["items"], naive_items))
    print(json.dumps({
        "video": str(video), "frames": n, "dim": doc["video_dim"], "backbone": args.backbone,
        "test_size": args.test_size, "batch_size": args.batch_size, "device": args.device,
        "torch_threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
        "naive_fps": round(n / t_naive, 3), "pipeline_fps": round(n / t_pipe, 3),
        "speedup": round(t_naive / t_pipe, 3), "same_items": bool(same),
    }))


if __name__ == "__main__":
    main()
