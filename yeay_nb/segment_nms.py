"""Greedy NMS of many independent segments in one GPU launch (a Triton kernel).

Why: torchvision's CUDA NMS is one call per image (per ``batched_nms``), each ending in a serial pass
on a single multiprocessor and a read of the kept count back to the host. The video path's RPN runs
it ~4,300 boxes an image, twice a frame (two models): the largest GPU item of the inference profile
(~1.5 ms a frame in ``gather_keep_from_mask``) and, with the per-image calls and synchronisations,
a good part of the host time. Here one program per segment (an image's RPN level, or an image's
class) runs the same greedy pass over at most ``BLOCK`` boxes held in its registers, all segments
of a batch side by side, with no host round trip.

Semantics are torchvision's ``nms`` on each segment: boxes come best first; box ``i`` is kept if
it is valid and no kept box before it overlaps it by IoU ``> iou`` (areas without +1). Invalid boxes
are never kept and suppress nothing, as if removed beforehand. The IoU uses IEEE division, as
torchvision's kernel does; results can still differ from it where an IoU lies within float32
rounding of the threshold (the compilers may fuse multiply-adds differently).

The kernel needs CUDA and Triton (both come with PyTorch's Linux wheels); with
``TRITON_INTERPRET=1`` set before the first call, Triton's interpreter runs it on CPU tensors (the
unit tests). Callers check :func:`available` and keep their torchvision path otherwise.
"""
from __future__ import annotations

import os
import threading
from typing import Any

MAX_BLOCK = 4096  # the most boxes one segment may hold (registers: 6 float vectors of this length)

_KERNELS: dict = {}
_LOCK = threading.Lock()  # first launches compile: two model threads may arrive at once


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def available(device: Any) -> bool:
    """Whether :func:`segment_nms` can run on ``device`` (CUDA with Triton; any device under
    Triton's interpreter)."""
    if getattr(device, "type", str(device).split(":")[0]) != "cuda" and not _interpreting():
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def _kernel():
    """The Triton kernel, made on first use (triton is imported only where it runs; the
    interpreter switch is read when a kernel is defined, so one is kept per switch)."""
    key = _interpreting()
    if key in _KERNELS:
        return _KERNELS[key]
    import triton
    import triton.language as tl

    @triton.jit
    def segment_nms_kernel(boxes_ptr, valid_ptr, starts_ptr, counts_ptr, keep_ptr, iou_threshold,
                           BLOCK: tl.constexpr):
        seg = tl.program_id(0)
        start = tl.load(starts_ptr + seg).to(tl.int64)
        n = tl.load(counts_ptr + seg)
        offs = tl.arange(0, BLOCK)
        inside = offs < n
        row = boxes_ptr + (start + offs) * 4
        x0 = tl.load(row + 0, mask=inside, other=0.0)
        y0 = tl.load(row + 1, mask=inside, other=0.0)
        x1 = tl.load(row + 2, mask=inside, other=0.0)
        y1 = tl.load(row + 3, mask=inside, other=0.0)
        area = (x1 - x0) * (y1 - y0)
        # the segment's state lives in ``keep`` (global memory, cached near this multiprocessor): box i's
        # own flag is then a scalar load; a register vector cannot be indexed at run time
        alive = tl.load(valid_ptr + start + offs, mask=inside, other=0)
        tl.store(keep_ptr + start + offs, alive, mask=inside)
        tl.debug_barrier()
        for i in range(0, n):
            if tl.load(keep_ptr + start + i) != 0:
                bi = boxes_ptr + (start + i) * 4
                ax0 = tl.load(bi + 0)
                ay0 = tl.load(bi + 1)
                ax1 = tl.load(bi + 2)
                ay1 = tl.load(bi + 3)
                w = tl.maximum(tl.minimum(ax1, x1) - tl.maximum(ax0, x0), 0.0)
                h = tl.maximum(tl.minimum(ay1, y1) - tl.maximum(ay0, y0), 0.0)
                inter = w * h
                a_area = (ax1 - ax0) * (ay1 - ay0)
                over = tl.math.div_rn(inter, a_area + area - inter) > iou_threshold
                alive = tl.where(over & (offs > i), 0, alive)
                tl.store(keep_ptr + start + offs, alive, mask=inside)
                tl.debug_barrier()  # the next box's flag is read by every thread of the program

    _KERNELS[key] = segment_nms_kernel
    return segment_nms_kernel


def _block(max_count: int) -> int:
    block = 16
    while block < max_count:
        block *= 2
    if block > MAX_BLOCK:
        raise ValueError(f"segment_nms: a segment of {max_count} boxes is over the {MAX_BLOCK} this kernel holds")
    return block


def segment_nms(boxes, valid, starts, counts, iou: float, max_count: int):
    """Keep flags (bool, one per row of ``boxes``) of a greedy NMS run on each segment.

    ``boxes`` K×4 (x0, y0, x1, y1; made float32 and contiguous here), ``valid`` K (bool), and per
    segment ``starts`` and ``counts`` (int tensors on the boxes' device): segment s is rows
    ``starts[s] .. starts[s] + counts[s] - 1``, best first. Segments must not overlap; rows in no
    segment come back False. ``max_count`` (a host int) bounds every count: it picks the kernel's
    block size, so pass the bound you know (e.g. the pre-NMS top-N), not a value read off the GPU.
    """
    import torch

    keep = torch.zeros(len(boxes), dtype=torch.int8, device=boxes.device)
    if len(starts) == 0 or len(boxes) == 0:
        return keep.bool()
    kernel = _kernel()
    boxes = boxes.float().contiguous()
    valid = valid.to(torch.int8).contiguous()
    starts = starts.to(torch.int64).contiguous()
    counts = counts.to(torch.int32).contiguous()
    block = _block(max_count)
    import contextlib

    on_device = torch.cuda.device(boxes.device) if boxes.is_cuda else contextlib.nullcontext()
    with _LOCK, on_device:  # Triton launches on the current device's current stream
        kernel[(len(starts),)](boxes, valid, starts, counts, keep, float(iou), BLOCK=block,
                               num_warps=4 if block <= 1024 else 8)
    return keep.bool()
