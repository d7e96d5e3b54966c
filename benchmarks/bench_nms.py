"""The RPN's NMS for a batch: torchvision image by image (the naive baseline), the fast path's
per-image calls on CUDA streams (``fastpath.nms_images``), the batch-wide
``fastpath.dense_nms`` (``DENSE_RPN_NMS``) and the one-launch kernel ``fastpath.rpn_segment_nms``
(``SEGMENT_NMS``, the default where Triton runs; ``--tiny`` runs it through Triton's interpreter),
same boxes, same run.

Usage::

    python3 benchmarks/bench_nms.py [--batch 48] [--per-level 1000] [--levels 5] [--repeat 10] [--json out.json]
    .venv/bin/python benchmarks/bench_nms.py --tiny          # CPU smoke mode (CI)

The boxes imitate an RPN at the inference size (500/833): per image and level ``--per-level``
candidates in clusters around ~30 objects, jittered, with sigmoid-like scores; 5% fail the size or
score test (``valid`` false). Each variant keeps at most ``--top-n`` boxes per image, best first,
as ``fastpath.filter_proposals`` does; every variant's kept boxes are checked against the baseline's
(same indices, same order). Timed: the NMS and the top-N cut from boxes on the device to a list of
kept boxes per image, synchronised, median of ``--repeat`` runs after one warm-up.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from torchvision.ops import batched_nms

from yeay_nb import fastpath, segment_nms


def rpn_like(batch: int, per_level: int, levels: int, device, seed: int = 0) -> tuple:
    g = torch.Generator().manual_seed(seed)
    n = per_level * levels
    centres = torch.rand(batch, 30, 2, generator=g) * torch.tensor([833.0, 500.0])
    pick = torch.randint(0, 30, (batch, n), generator=g)
    size = (16 * 2 ** torch.arange(levels).repeat_interleave(per_level)).float()[None, :, None]
    c = centres.gather(1, pick[..., None].expand(batch, n, 2)) + torch.randn(batch, n, 2, generator=g) * size / 3
    wh = size * (0.5 + torch.rand(batch, n, 2, generator=g))
    boxes = torch.cat([c - wh / 2, c + wh / 2], dim=-1)
    scores = torch.rand(batch, n, generator=g)
    groups = torch.arange(levels).repeat_interleave(per_level)[None].expand(batch, n).contiguous()
    valid = torch.rand(batch, n, generator=g) > 0.05
    return tuple(t.to(device) for t in (boxes, scores, groups, valid))


def naive(boxes, scores, groups, valid, iou, top_n) -> list:
    out = []
    for i in range(len(boxes)):
        idx = valid[i].nonzero().squeeze(1)
        keep = batched_nms(boxes[i, idx], scores[i, idx], groups[i, idx], iou)[:top_n]
        out.append(idx[keep])
    return out


def streams(boxes, scores, groups, valid, iou, top_n) -> list:
    idx = [valid[i].nonzero().squeeze(1) for i in range(len(boxes))]
    jobs = [(boxes[i, v], scores[i, v], groups[i, v]) for i, v in enumerate(idx)]
    return [v[keep[:top_n]] for v, keep in zip(idx, fastpath.nms_images(jobs, iou))]


def dense(boxes, scores, groups, valid, iou, top_n) -> list:
    order, kept, counts = fastpath.dense_nms_top_n(boxes, scores, groups, valid, iou, top_n)
    return list(order[kept].split(counts))


def segment(boxes, scores, groups, valid, iou, top_n) -> list:
    """``fastpath.rpn_segment_nms`` (``SEGMENT_NMS``, the default where Triton runs): one kernel launch
    for the batch. It takes each level's candidates best first, as the RPN's top-N pick gives them:
    sorted here, inside the timed call."""
    b, n = scores.shape
    levels = int(groups.max()) + 1
    per = n // levels
    order = scores.view(b, levels, per).argsort(dim=2, descending=True, stable=True)
    order = (order + torch.arange(levels, device=order.device)[None, :, None] * per).view(b, n)
    pick = lambda t: t.gather(1, order[..., None].expand(b, n, 4) if t.dim() == 3 else order)  # noqa: E731
    kept_order, counts = fastpath.rpn_segment_nms(pick(boxes), pick(scores), pick(groups), pick(valid),
                                                  [per] * levels, per, iou, top_n)
    return [order[i, kept_order[i, :k]] for i, k in enumerate(counts)]


def timed(fn, args, repeat: int, device) -> tuple[float, list]:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    out = fn(*args)  # warm-up
    sync()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn(*args)
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=48)
    ap.add_argument("--per-level", type=int, default=1000)
    ap.add_argument("--levels", type=int, default=5)
    ap.add_argument("--top-n", type=int, default=1000)
    ap.add_argument("--iou", type=float, default=0.7)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--device", default=None)
    ap.add_argument("--tiny", action="store_true", help="CPU smoke mode: 4 images, 150 boxes a level")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.tiny:
        args.batch, args.per_level, args.repeat, args.top_n, args.device = 4, 150, 2, 300, args.device or "cpu"
        if args.device == "cpu":  # the Triton kernel through Triton's interpreter, so that its path cannot rot
            os.environ.setdefault("TRITON_INTERPRET", "1")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    data = rpn_like(args.batch, args.per_level, args.levels, device)
    call = (*data, args.iou, args.top_n)
    base_s, ref = timed(naive, call, args.repeat, device)
    rows = [{"variant": "torchvision per image (baseline)", "ms_per_batch": round(base_s * 1e3, 3),
             "ms_per_image": round(base_s * 1e3 / args.batch, 4), "x_baseline": 1.0, "same_as_baseline": True,
             "kept_per_image": round(sum(len(r) for r in ref) / args.batch, 1)}]
    variants = [("nms_images (streams)", streams), ("dense_nms (DENSE_RPN_NMS)", dense)]
    if segment_nms.available(device):
        variants.append(("segment_nms (SEGMENT_NMS; default)", segment))
    for name, fn in variants:
        s, got = timed(fn, call, args.repeat, device)
        same = len(got) == len(ref) and all(torch.equal(a.cpu(), b.cpu()) for a, b in zip(got, ref))
        rows.append({"variant": name, "ms_per_batch": round(s * 1e3, 3), "ms_per_image": round(s * 1e3 / args.batch, 4),
                     "x_baseline": round(base_s / s, 2), "same_as_baseline": same,
                     "kept_per_image": round(sum(len(r) for r in got) / args.batch, 1)})
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
              "torch": torch.__version__, "batch": args.batch, "boxes_per_image": args.per_level * args.levels,
              "levels": args.levels, "iou": args.iou, "top_n": args.top_n, "repeat": args.repeat, "rows": rows}
    print(f"{'variant':<34}{'ms/batch':>10}{'ms/image':>10}{'x base':>8}{'same':>6}{'kept':>7}")
    for r in rows:
        print(f"{r['variant']:<34}{r['ms_per_batch']:>10}{r['ms_per_image']:>10}{r['x_baseline']:>8}"
              f"{str(r['same_as_baseline']):>6}{r['kept_per_image']:>7}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    return 0 if all(r["same_as_baseline"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
