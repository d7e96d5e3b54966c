"""Training-step levers one by one, on the same model, weights and batch (issue 7 target 2).

Usage::

    python benchmarks/bench_train_levers.py                         # CPU smoke: R18, tiny batch
    python benchmarks/bench_train_levers.py --backbone resnet50 --norm gn --heads standard \
        --sizes 400x608 --batch 16 --steps 10 --profile --json out.json     # on a GPU

Rows (each a full forward + backward + SGD step, median wall time); each row adds one lever:

- ``torchvision``: torchvision's own training code (per-image targets, its transform, GroupNorm in
  float32 under autocast), the naive baseline;
- ``batched_targets``: ``yeay_nb.fasttrain``'s batched RPN/ROI targets and transform, its per-image
  RPN NMS calls one after another (``fastpath.NMS_STREAMS = 1``), GroupNorm as torchvision's;
- ``+streamed_nms``: the NMS calls on ``fastpath.NMS_STREAMS`` CUDA streams at once;
- ``+bf16_groupnorm``: GroupNorm in the autocast dtype (``models.LowPrecisionGroupNorm``): autocast
  otherwise runs every GroupNorm in float32, i.e. a cast of its input up, a float32 pass and float32
  output that the next convolution casts back down. This row is ``yeay_nb``'s default model;
- ``+channels_last`` (``--channels-last``): the weights in channels_last memory format;
- ``+compiled_backbone`` (``--compile``): the backbone and FPN under ``torch.compile``
  (``first_steps_s`` shows the compile time).

``--curve N`` trains N steps from the same initial weights on the same 8 batches with float32
GroupNorm (twice, with different sampler draws: the noise) and with bf16 GroupNorm, and compares
the smoothed loss curves (issue 7's "same loss trajectory within noise").

``--profile`` prints the CUDA kernels that take most of the GPU time of a step of ``batched_targets``
and ``+bf16_groupnorm`` and the
GPU's busy time against the step's wall time (host-bound or GPU-bound).
"""
from __future__ import annotations

import argparse
import collections
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_train_ops import make_batch  # noqa: E402


def step_fn(model, images, targets, device):
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-5, momentum=0.9)
    cuda = device.type == "cuda"

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            losses = model(images, targets)
        loss = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    return step


def time_steps(step, steps: int, device) -> float:
    step()
    step()  # warm-up: cuDNN autotuning, allocator
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def profile(step, device, top: int = 20) -> dict:
    from torch.profiler import ProfilerActivity, profile as torch_profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    n = 3
    torch.cuda.synchronize() if device.type == "cuda" else None
    t0 = time.perf_counter()
    with torch_profile(activities=acts) as prof:
        for _ in range(n):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
    wall = (time.perf_counter() - t0) / n
    kernels: collections.Counter = collections.Counter()
    busy = []
    for ev in prof.events():
        if ev.device_type == torch.autograd.DeviceType.CUDA:
            kernels[ev.name[:90]] += ev.device_time_total if hasattr(ev, "device_time_total") else ev.cuda_time_total
            busy.append((ev.time_range.start, ev.time_range.end))
    busy.sort()
    covered, end = 0.0, -1.0  # union of kernel intervals (us): time the GPU is doing something
    for s, e in busy:
        if e <= end:
            continue
        covered += e - max(s, end)
        end = e
    total = sum(kernels.values())
    groups = collections.Counter()
    for name, us in kernels.items():
        low = name.lower()
        key = ("group_norm" if "group_norm" in low or "groupnorm" in low or "rowwisemoments" in low
               or "computefusedparams" in low or "computeinternalgradients" in low or "computegammabeta" in low
               else "conv/gemm" if any(k in low for k in ("conv", "gemm", "cutlass", "sm90", "xmma", "implicit"))
               else "roi_align" if "roi" in low
               else "nms" if "nms" in low
               else "elementwise/cast" if "elementwise" in low or "copy" in low or "cast" in low
               else "reduce" if "reduce" in low
               else "other")
        groups[key] += us
    out = {"wall_ms": round(1000 * wall, 1), "gpu_busy_ms": round(covered / 1000 / n, 1),
           "kernel_ms": round(total / 1000 / n, 1),
           "groups_ms": {k: round(v / 1000 / n, 1) for k, v in groups.most_common()},
           "top_kernels_ms": [(k, round(v / 1000 / n, 2)) for k, v in kernels.most_common(top)]}
    return out


def compiled_backbone(model):
    """The backbone + FPN under ``torch.compile`` (fixed input shape here: an upper bound for training,
    whose multi-scale batches change shape)."""
    model.backbone = torch.compile(model.backbone)
    return model


def loss_curve(model, batches, iters: int, seed: int, device) -> list[float]:
    """Train ``model`` for ``iters`` steps over ``batches`` (cycled) with the CCP recipe's optimiser
    (SGD lr 0.02, momentum 0.9, weight decay 1e-4, 50-step linear warm-up, gradient clip 10) and
    return the total loss of every step. ``seed`` drives the samplers' random draws."""
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.02, momentum=0.9,
                          weight_decay=1e-4)
    torch.manual_seed(seed)
    losses = []
    for it in range(iters):
        for g in opt.param_groups:
            g["lr"] = 0.02 * min(1.0, (it + 1) / 50)
        images, targets = batches[it % len(batches)]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = sum(model(images, targets).values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def compare_curves(base, make_plain, make_ours, batches, iters: int, device) -> dict:
    """float32 GroupNorm (torchvision under autocast) vs bf16 GroupNorm from the same initial weights
    on the same batches; the gap between two float32 runs that differ only in the samplers' draws
    is the noise to compare against."""
    curves = {"float32_gn": loss_curve(make_plain(base), batches, iters, 0, device),
              "float32_gn_other_draws": loss_curve(make_plain(base), batches, iters, 1, device),
              "bf16_gn": loss_curve(make_ours(base), batches, iters, 0, device)}
    w = max(1, min(20, iters // 5))

    def smooth(c):
        return [statistics.mean(c[max(0, i - w + 1):i + 1]) for i in range(len(c))]

    sm = {k: smooth(v) for k, v in curves.items()}
    half = slice(iters // 2, None)
    gap = lambda a, b: round(statistics.mean(abs(x - y) for x, y in zip(sm[a][half], sm[b][half])), 4)  # noqa: E731
    return {"iters": iters, "smooth_window": w, "final_smoothed": {k: round(v[-1], 4) for k, v in sm.items()},
            "mean_gap_second_half": {"bf16_vs_float32": gap("bf16_gn", "float32_gn"),
                                     "noise_float32_vs_float32": gap("float32_gn_other_draws", "float32_gn")},
            "curves": {k: [round(x, 4) for x in v] for k, v in curves.items()}}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="maskrcnn", choices=["maskrcnn", "fasterrcnn"])
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--norm", default="gn")
    ap.add_argument("--heads", default="light")
    ap.add_argument("--sizes", default="128x192", help="HxW of the (already resized) images")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--rois", type=int, default=512)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--channels-last", action="store_true", help="also time channels_last weights")
    ap.add_argument("--compile", action="store_true", help="also time the backbone under torch.compile")
    ap.add_argument("--curve", type=int, default=0, metavar="ITERS",
                    help="also train ITERS steps with float32 vs bf16 GroupNorm and compare the loss curves")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    from yeay_nb import fastpath, fasttrain
    from yeay_nb.models import build_model, use_low_precision_group_norm

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    h, w = (int(v) for v in args.sizes.lower().split("x"))
    torch.manual_seed(0)
    cfg = {"arch": args.model, "backbone": args.backbone, "norm": args.norm, "heads": args.heads, "num_classes": 26,
           "min_size": min(h, w), "max_size": max(h, w), "box_batch_size_per_image": args.rois}
    ours = build_model(cfg).to(device).train()  # yeay_nb's model as training builds it
    images, targets = make_batch(args.batch, h, w, 26, device)
    plain_gn = lambda m: use_low_precision_group_norm(m, enable=False)  # noqa: E731
    # name -> (model factory, fastpath.NMS_STREAMS while it runs); each row adds one lever
    variants = {
        "torchvision": (lambda: fasttrain.uninstall(copy.deepcopy(ours), transform=True, norm=True), 1),
        "batched_targets": (lambda: plain_gn(copy.deepcopy(ours)), 1),
        "+streamed_nms": (lambda: plain_gn(copy.deepcopy(ours)), fastpath.NMS_STREAMS),
        "+bf16_groupnorm": (lambda: ours, fastpath.NMS_STREAMS),  # = yeay_nb's default
    }
    if args.channels_last:
        variants["+channels_last"] = (lambda: copy.deepcopy(ours).to(memory_format=torch.channels_last),
                                      fastpath.NMS_STREAMS)
    if args.compile:
        variants["+compiled_backbone"] = (lambda: compiled_backbone(copy.deepcopy(ours)), fastpath.NMS_STREAMS)
    result = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "torch": torch.__version__,
              "config": {**cfg, "batch": args.batch, "steps": args.steps}, "rows": []}
    streams = fastpath.NMS_STREAMS
    for name, (make, fastpath.NMS_STREAMS) in variants.items():
        model = make().train()
        step = step_fn(model, images, targets, device)
        t0 = time.perf_counter()
        sec = time_steps(step, args.steps, device)
        row = {"side": name, "first_steps_s": round(time.perf_counter() - t0 - args.steps * sec, 1),
               "step_ms": round(1000 * sec, 1), "img_per_s": round(args.batch / sec, 2)}
        if device.type == "cuda":
            row["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            torch.cuda.reset_peak_memory_stats()
        if args.profile and name in ("batched_targets", "+bf16_groupnorm"):
            row["profile"] = profile(step, device)
        result["rows"].append(row)
        print(json.dumps(row), flush=True)
        del model, step
    fastpath.NMS_STREAMS = streams
    base = result["rows"][0]["step_ms"]
    print(f"\n{'side':<20}{'step ms':>9}{'img/s':>9}{'vs torchvision':>16}")
    for r in result["rows"]:
        print(f"{r['side']:<20}{r['step_ms']:>9}{r['img_per_s']:>9}{base / r['step_ms']:>15.2f}x")
    if args.curve:
        batches = [make_batch(args.batch, h, w, 26, device, seed=k) for k in range(8)]
        result["curve"] = compare_curves(ours, lambda m: plain_gn(copy.deepcopy(m)), lambda m: copy.deepcopy(m),
                                         batches, args.curve, device)
        c = result["curve"]
        print(f"\nloss curves over {args.curve} steps (smoothed {c['smooth_window']}): final "
              f"{c['final_smoothed']}; mean gap in the second half: bf16 vs float32 GroupNorm "
              f"{c['mean_gap_second_half']['bf16_vs_float32']}, two float32 runs (other sampler draws) "
              f"{c['mean_gap_second_half']['noise_float32_vs_float32']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
