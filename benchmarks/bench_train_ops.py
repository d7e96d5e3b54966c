"""Host work per training step: torchvision's per-image target code vs ``yeay_nb.fasttrain``.

Usage::

    python benchmarks/bench_train_ops.py                       # CPU: Mask R-CNN R18-FPN, 2..16 images
    python benchmarks/bench_train_ops.py --backbone resnet50 --norm gn --heads standard --sizes 400x600 \
        --batches 16 --steps 10                                # on a GPU: also exact sync counts

For each batch size and both sides (same model and weights, same batch) it reports:

- ``ops``: ATen ops dispatched by one forward + backward (each is a kernel launch on a GPU and
  several microseconds of host time). They are counted with the NMS choices both sides make on a
  GPU (one NMS per image under 20,000 boxes); on a CPU torchvision, and so this code, loop over
  feature levels instead, and the timed steps keep that;
- ``sync_ops``: forward ops that make a GPU wait for the host: ``nonzero`` (also behind boolean
  indexing and ``torch.where(cond)``), ``item``/``bool()`` (``_local_scalar_dense``),
  ``masked_select``, ``unique``, ``repeat_interleave`` and torchvision's ``nms``. ``.tolist()``
  and ``.cpu()`` copies are not visible on a CPU (no dispatch), so on a CPU this undercounts both
  sides by their reads of sizes; on CUDA ``cuda_syncs`` counts every synchronisation exactly
  (``torch.cuda.set_sync_debug_mode``);
- ``step_ms``: median wall time of a training step (forward, backward, SGD) on this device.

The "torchvision" side is torchvision's own training code throughout (its transform too); the
"batched" side is ``yeay_nb``'s (``fasttrain`` and the transform without per-image device copies).
The losses are computed the same way (``tests/test_fasttrain.py``), so the difference is host
work and, on a GPU, time the GPU waits.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import copy
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SYNC_OPS = {"aten.nonzero.default", "aten._local_scalar_dense.default", "aten.masked_select.default",
            "aten._unique2.default", "aten.unique_consecutive.default", "aten.unique_dim.default",
            "aten.repeat_interleave.Tensor", "aten.is_nonzero.default", "aten.equal.default",
            "torchvision.nms.default"}


class CountOps(TorchDispatchMode):
    """Counts every op that reaches the dispatcher (below autograd), by name."""

    def __init__(self):
        super().__init__()
        self.ops: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[str(func)] += 1
        return func(*args, **(kwargs or {}))


def make_batch(n: int, h: int, w: int, num_classes: int, device, seed: int = 0):
    """``n`` random images with 4-12 boxes each (a mask per box, covering part of it)."""
    g = torch.Generator().manual_seed(seed)
    images, targets = [], []
    for i in range(n):
        k = int(torch.randint(4, 13, (1,), generator=g))
        xy = torch.rand(k, 2, generator=g) * torch.tensor([w * 0.7, h * 0.7])
        wh = torch.rand(k, 2, generator=g) * torch.tensor([w * 0.4, h * 0.4]) + 8
        boxes = torch.cat([xy, torch.minimum(xy + wh, torch.tensor([w - 1.0, h - 1.0]))], 1)
        masks = torch.zeros(k, h, w, dtype=torch.uint8)
        for j, (x0, y0, x1, y1) in enumerate(boxes.round().int().tolist()):
            masks[j, y0:y1, x0:(x0 + x1) // 2 + 1] = 1
        images.append(torch.rand(3, h, w, generator=g).to(device))
        targets.append({"boxes": boxes.to(device), "labels": torch.randint(1, num_classes, (k,), generator=g).to(device),
                        "masks": masks.to(device)})
    return images, targets


@contextlib.contextmanager
def gpu_nms_choices():
    """While counting on a CPU: take the NMS paths a GPU would (torchvision's batched_nms switches
    from one coordinate-offset NMS to a loop over groups above 4,000 boxes on a CPU, 20,000 on CUDA)."""
    import torchvision.ops.boxes as box_ops

    from yeay_nb import fastpath

    original, cpu_by_group = box_ops.batched_nms, fastpath.CPU_NMS_BY_GROUP

    def cuda_like(boxes, scores, idxs, iou_threshold):
        if boxes.numel() > 20000:
            return box_ops._batched_nms_vanilla(boxes, scores, idxs, iou_threshold)
        return box_ops._batched_nms_coordinate_trick(boxes, scores, idxs, iou_threshold)

    box_ops.batched_nms, fastpath.CPU_NMS_BY_GROUP = cuda_like, False
    try:
        yield
    finally:
        box_ops.batched_nms, fastpath.CPU_NMS_BY_GROUP = original, cpu_by_group


def measure(model, images, targets, steps: int, device) -> dict:
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-5, momentum=0.9)
    cuda = device.type == "cuda"
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)

    def step():
        with amp:
            losses = model(images, targets)
        loss = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up (cuDNN autotuning, allocator)
    with gpu_nms_choices(), CountOps() as c:
        with amp:
            losses = model(images, targets)
        fwd = sum(c.ops.values())
        sync = {k: v for k, v in c.ops.items() if k in SYNC_OPS}
        sum(losses.values()).backward()
    opt.zero_grad(set_to_none=True)
    row = {"fwd_ops": fwd, "ops": sum(c.ops.values()), "sync_ops": sum(sync.values()), "sync_by_op": sync}
    if cuda:
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                step()
            finally:
                torch.cuda.set_sync_debug_mode("default")
        row["cuda_syncs"] = sum("synchroniz" in str(w.message) for w in caught)
    times = []
    for _ in range(steps):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    row["step_ms"] = round(1000 * statistics.median(times), 1)
    row["img_per_s"] = round(len(images) / statistics.median(times), 1)
    return row


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="maskrcnn", choices=["maskrcnn", "fasterrcnn"])
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--norm", default="bn")
    ap.add_argument("--heads", default="light")
    ap.add_argument("--sizes", default="192x288", help="HxW of the (already resized) images")
    ap.add_argument("--batches", type=int, nargs="+", default=[2, 8, 16])
    ap.add_argument("--steps", type=int, default=3, help="timed steps per side and batch size")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rois", type=int, default=512, help="ROIs sampled per image")
    ap.add_argument("--rpn-top-n", type=int, nargs=2, default=[2000, 2000], metavar=("PRE", "POST"),
                    help="RPN proposals kept per level before NMS and per image after it")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    from yeay_nb import fasttrain
    from yeay_nb.models import build_model

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
        torch.set_flush_denormal(True)
    h, w = (int(v) for v in args.sizes.lower().split("x"))
    torch.manual_seed(0)
    # the images are given at their network size: min_size/max_size make the transform's resize a no-op
    cfg = {"arch": args.model, "backbone": args.backbone, "norm": args.norm, "heads": args.heads, "num_classes": 26,
           "min_size": min(h, w), "max_size": max(h, w), "box_batch_size_per_image": args.rois,
           "rpn_pre_nms_top_n_train": args.rpn_top_n[0], "rpn_post_nms_top_n_train": args.rpn_top_n[1]}
    ours = build_model(cfg).to(device).train()
    theirs = fasttrain.uninstall(copy.deepcopy(ours), transform=True, norm=True).train()  # all torchvision's own code
    result = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "torch": torch.__version__,
              "config": cfg, "rows": []}
    for n in args.batches:
        images, targets = make_batch(n, h, w, 26, device)
        for name, m in (("torchvision", theirs), ("batched", ours)):
            row = {"batch": n, "side": name, **measure(m, images, targets, args.steps, device)}
            result["rows"].append(row)
            print(json.dumps(row), flush=True)
    print(f"\n{'batch':>5} {'side':<12}{'fwd ops':>9}{'all ops':>9}{'sync ops':>9}{'step ms':>9}{'img/s':>8}")
    for r in result["rows"]:
        print(f"{r['batch']:>5} {r['side']:<12}{r['fwd_ops']:>9}{r['ops']:>9}{r['sync_ops']:>9}{r['step_ms']:>9}"
              f"{r['img_per_s']:>8}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
