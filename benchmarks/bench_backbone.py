"""The floor of the video models: FLOPs and bytes per frame, and the R50-FPN backbone alone in each
layout, precision and launch mode (issue 7 target 1: "profile first; write down the floor").

The backbone + FPN is the largest GPU item of the end-to-end profile (~47% of the GPU time at tf32,
benchmarks/RESULTS.md). This times it alone on a fixed batch at the inference input size (540x960
frames at test scale 500/833 are resized to 469x833 and padded to 480x864), so the end-to-end
benchmark's host effects and run-to-run drift stay out:

- ``nchw tf32 eager`` (the baseline: what ``run_inference`` runs today at its default precision),
- channels_last (``nhwc``) vs NCHW, TF32 vs bf16 autocast, eager vs one CUDA graph per batch shape.

Every variant's output is compared with a float32 NCHW reference (max abs difference relative to the
reference's largest value), so a fast row that computes something else is visible. Also printed: the
GFLOPs a frame of the backbone, the RPN head, the 2-FC box head on 1000 proposals and the mask head per
kept ROI (``torch.utils.flop_counter``: convolutions and matmuls only), and the bytes of the weights
and of one frame's FPN features. The frames/s ceiling assumes two such backbones a frame (person +
clothing model) and nothing else.

Usage::

    python benchmarks/bench_backbone.py --json out.json            # GPU: batch 48, both norms
    python benchmarks/bench_backbone.py --tiny                     # CPU smoke mode (CI)
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build(norm: str, backbone: str, device: str):
    """A prepared (eval, folded where possible, no grads) Mask R-CNN with FPN, as the fast path has it."""
    import torch

    from yeay_nb import fastpath
    from yeay_nb.models import build_model

    torch.manual_seed(0)
    model = build_model({"arch": "maskrcnn", "backbone": backbone, "norm": norm, "num_classes": 39, "heads": "mlp"})
    # the layout is this benchmark's variable: NCHW unless a row says otherwise
    with mock.patch.object(fastpath, "CHANNELS_LAST", False):
        return fastpath.prepare_model(model, device)


def flops_and_bytes(model, size: tuple[int, int], device: str) -> dict:
    """GFLOPs a frame per part (convolutions and matmuls) and the bytes of weights and features."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    def count(fn) -> float:
        with FlopCounterMode(display=False) as fc, torch.inference_mode():
            fn()
        return fc.get_total_flops() / 1e9

    x = torch.zeros(1, 3, *size, device=device)
    feats: dict = {}
    backbone = count(lambda: feats.update(model.backbone(x)))
    rh = model.roi_heads
    rpn = count(lambda: model.rpn.head(list(feats.values())))
    box = count(lambda: rh.box_predictor(rh.box_head(torch.zeros(1000, 256, 7, 7, device=device))))
    mask = None
    if getattr(rh, "mask_head", None) is not None:
        mask = count(lambda: rh.mask_predictor(rh.mask_head(torch.zeros(1, 256, 14, 14, device=device))))
    return {"input": list(size), "gflops_backbone_fpn": round(backbone, 2),
            "gflops_rpn_head": round(rpn, 2), "gflops_box_head_1000_proposals": round(box, 2),
            "gflops_mask_head_per_roi": mask and round(mask, 3),
            "weights_mb_fp32": round(sum(p.numel() for p in model.parameters()) * 4 / 1e6, 1),
            "fpn_features_mb_per_frame_fp32": round(sum(f.numel() for f in feats.values()) * 4 / 1e6, 1)}


def variant_fn(model, precision: str):
    """The backbone call at ``precision`` (the memory format of model and input is set by the caller;
    TF32 by ``fastpath.precision_flags``)."""
    import contextlib

    import torch

    def fn(x):
        # cache off: a CUDA graph must not capture autocast's weight-cast cache from its warm-up
        ctx = (torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False) if precision == "bf16"
               else contextlib.nullcontext())
        with ctx:
            return model.backbone(x)
    return fn


def time_variant(fn, x, graph: bool, repeat: int, device: str) -> tuple[list[float], dict]:
    """ms per call for ``repeat`` calls (after a warm-up), and the outputs of one call."""
    import torch

    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    with torch.inference_mode():
        if graph:
            static_x = x.clone()
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # warm-up (cuDNN autotuning) outside the capture
                for _ in range(3):
                    fn(static_x)
            torch.cuda.current_stream().wait_stream(side)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                static_out = fn(static_x)

            def call(inp):
                static_x.copy_(inp)
                g.replay()
                return static_out
        else:
            call = fn
            for _ in range(3):
                call(x)
        sync()
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            out = call(x)
            sync()
            times.append((time.perf_counter() - t0) * 1e3)
        # a copy: a graph's next replay overwrites its static outputs
        return times, {k: v.float().clone() for k, v in out.items()}


def rel_diff(out: dict, ref: dict) -> float:
    return max(float((out[k] - ref[k]).abs().max()) / max(float(ref[k].abs().max()), 1e-12) for k in ref)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=48)
    ap.add_argument("--size", type=int, nargs=2, default=[480, 864], metavar=("H", "W"),
                    help="padded network input (540x960 at 500/833: 469x833, padded to multiples of 32)")
    ap.add_argument("--norms", nargs="+", default=["gn", "frozen_bn"], choices=["gn", "frozen_bn", "bn"],
                    help="gn: the trained CCP models; frozen_bn: folded into the convolutions (COCO-style models)")
    ap.add_argument("--backbone", default="resnet50")
    ap.add_argument("--repeat", type=int, default=20, help="timed calls per variant (median reported)")
    ap.add_argument("--tiny", action="store_true", help="CPU smoke mode: resnet18, small input, fp32 rows only")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import torch

    from yeay_nb import fastpath

    device = "cuda:0" if torch.cuda.is_available() and not args.tiny else "cpu"
    if args.tiny:
        args.backbone, args.batch, args.size, args.repeat, args.norms = "resnet18", 2, [128, 192], 3, ["gn", "frozen_bn"]
        torch.set_num_threads(2)
    cuda = device.startswith("cuda")
    torch.backends.cudnn.benchmark = True
    variants = ([(lay, prec, g) for prec in ("tf32", "bf16") for lay in ("nchw", "nhwc") for g in (False, True)]
                if cuda else [(lay, "fp32", False) for lay in ("nchw", "nhwc")])
    result = {"device": torch.cuda.get_device_name(0) if cuda else "cpu", "torch": torch.__version__,
              "backbone": args.backbone, "batch": args.batch, "date": time.strftime("%Y-%m-%d"), "norms": {}}
    print(f"[bench] {result}", flush=True)
    gen = torch.Generator().manual_seed(0)
    x_nchw = torch.rand(args.batch, 3, *args.size, generator=gen).to(device)
    for norm in args.norms:
        model = build(norm, args.backbone, device)
        floor = flops_and_bytes(model, tuple(args.size), device)
        print(f"[bench] {norm} floor: {floor}", flush=True)
        gflop_batch = floor["gflops_backbone_fpn"] * args.batch
        with fastpath.precision_flags("fp32"):  # the reference: float32 without TF32, NCHW
            _, ref = time_variant(variant_fn(model, "fp32"), x_nchw, False, 1, device)
        rows = []
        for layout, prec, graph in variants:
            fmt = torch.channels_last if layout == "nhwc" else torch.contiguous_format
            model.backbone.to(memory_format=fmt)
            x = x_nchw.contiguous(memory_format=fmt)
            with fastpath.precision_flags(prec):
                times, out = time_variant(variant_fn(model, prec), x, graph, args.repeat, device)
            ms = statistics.median(times)
            rows.append({"variant": f"{layout} {prec} {'graph' if graph else 'eager'}", "ms_per_batch": round(ms, 3),
                         "ms_per_frame": round(ms / args.batch, 4), "tflops": round(gflop_batch / ms, 1),
                         "two_backbone_fps_ceiling": round(1e3 * args.batch / (2 * ms), 1),
                         "max_rel_diff_vs_fp32": round(rel_diff(out, ref), 5)})
        model.backbone.to(memory_format=torch.contiguous_format)
        base = rows[0]["ms_per_batch"]
        for r in rows:
            r["x_baseline"] = round(base / r["ms_per_batch"], 2)
        result["norms"][norm] = {"floor": floor, "rows": rows}
        print(f"\n{norm}: backbone + FPN {floor['gflops_backbone_fpn']} GFLOPs a frame at {args.size[0]}x{args.size[1]}")
        print(f"{'variant':<22}{'ms/batch':>10}{'ms/frame':>10}{'TFLOP/s':>9}{'x base':>8}{'2-model fps cap':>17}"
              f"{'rel diff':>10}")
        for r in rows:
            print(f"{r['variant']:<22}{r['ms_per_batch']:>10.2f}{r['ms_per_frame']:>10.3f}{r['tflops']:>9.1f}"
                  f"{r['x_baseline']:>8.2f}{r['two_backbone_fps_ceiling']:>17.1f}{r['max_rel_diff_vs_fp32']:>10.5f}")
        del model
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
