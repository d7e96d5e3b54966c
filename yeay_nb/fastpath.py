"""The inference fast path for torchvision R-CNNs (the only path ``run_inference`` takes).

What the 2018 loop did per frame, and what this does per batch of frames instead:

- **Folded norms.** A frozen (or eval-mode) BatchNorm after a conv is an affine map; it is
  folded into the conv's weight and bias once (:func:`fold_batchnorms`), which removes ~50
  elementwise passes over the feature maps per frame (under bf16 autocast each also cast
  the activations to fp32 and back).
- **One upload, one resize.** Frames of a video share a size: they are stacked into pinned
  memory, copied to the GPU in one non-blocking copy, normalised and resized as one batch
  (:func:`to_image_list`). Two models with the same input transform (same test scale and
  mean/std) share that image batch. Frames much larger than the network input (1080p, 4K)
  are resized on the CPU first (:func:`cpu_presize`), so the GPU never holds full-size
  float copies of them.
- **channels_last (NHWC) convolutions** on CUDA for models without GroupNorm (folded BatchNorm:
  torchvision's COCO weights, the frozen_bn layout): their backbone 1.16x at TF32 and the pair
  1.08x end to end; GroupNorm models stay NCHW (GroupNorm's NHWC kernels made their backbone 0.55x
  and the trained CCP pair 0.70x end to end; benchmarks/RESULTS.md, 2026-11-28).
- **Masks only where needed.** The mask head and the mask pasting run only for detections
  of the mask classes above the mask threshold (torchvision computes and pastes 100 per
  frame); the kept masks are thresholded and run-length scanned on the GPU, so only their
  run boundaries come back (:func:`rle_encode`).
- **Two models at once.** On CUDA each model runs in its own thread and stream
  (:func:`run_models`): one's host-synchronising steps (NMS, copies back) overlap the other's
  convolutions.
- **Per batch, not per frame.** RPN filtering (:func:`rpn_proposals`) and detection
  post-processing (:func:`box_detections`) do clipping, score and size tests once for the
  batch and keep only the NMS per image; the kept masks of the whole batch are pasted in one
  ``grid_sample`` (:func:`paste_masks`; torchvision loops per mask and reads every box back).
  On an H100 this is where the time went: host-side op dispatch, not the GPU.
- **One device-to-host copy per batch** for the boxes, scores and labels of every frame
  (torchvision's per-frame dicts cost three synchronisations per frame when read one by one).

Numerics: torchvision's own modules and arithmetic (torchvision 0.26 to 0.29); fp32 results
equal ``GeneralizedRCNN.forward``'s up to float rounding (``tests/test_fastpath.py`` checks each
piece on the CPU). ``precision`` (:func:`run_models`, :func:`precision_flags`): "tf32" (the
default: float32 tensors, TF32 convolutions/matmuls: 10-bit mantissas; within the contract's
tolerance for 99% of the detections of trained CCP models), "bf16" autocast (~9% faster, outside
it for about half), "fp16" autocast (float16 keeps TF32's 10-bit mantissa at bf16's speed, but a
narrower range: within the tolerance as tf32 is with trained CCP weights, 1.19x tf32 paired on an
untrained folded-BN pair; benchmarks/RESULTS.md, 2026-11-28) or "fp32" (TF32 off: the plain loop's results to rounding, measured exact).
``benchmarks/bench_infer_gpu.py`` compares each with the naive loop.
"""
from __future__ import annotations

import contextlib
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from . import segment_nms

# a frame with this many times the pixels of the network input is resized on the CPU before
# the upload (4K: 18x, 1080p: 5x at 500/833); below it the GPU resize is cheaper and exact
PRESIZE_PIXEL_RATIO = 3.0

# Switches for ablations (benchmarks/bench_infer_gpu.py --ablate flips each in turn); the defaults
# are what measured fastest (benchmarks/RESULTS.md).
FOLD_NORMS = True        # fold BatchNorms into convs in prepare_model
CHANNELS_LAST = True     # NHWC convolutions on CUDA for models without GroupNorm (see wants_channels_last)
CONCURRENT_MODELS = True  # a thread and stream per model on CUDA
PER_LEVEL_RPN_NMS = False  # RPN NMS one level at a time: same boxes, cheaper serial pass, but 5x the NMS
                           # calls and host syncs: measured 27% slower end to end (RESULTS.md), so off
DENSE_RPN_NMS = False    # the RPN's NMS for the whole batch at once (dense_nms): no per-image calls or host
                         # reads, no serial pass; same boxes. On an H100 at 48 images 2.4x slower than
                         # nms_images on streams (73 vs 30 ms, bench_nms.py) and 0.91-1.05x end to end, so off
DENSE_NMS_CHUNK = 1 << 27  # dense_nms: IoU-matrix entries (images x N x N) per piece, ~0.5 GB of float32
FUSED_CONV = True        # on CUDA, prepare_model runs each folded conv's bias, residual and ReLU in the conv's cuDNN
                         # call (yeay_nb.fused; tf32 / fp32 only): 1.17x / 1.19x end to end paired (H200, tf32)
SEGMENT_NMS = True       # inference NMS (the RPN's per image and level, the boxes' per image and class) for the
                         # whole batch in one GPU launch (segment_nms: a Triton kernel), where Triton runs
DECODE_PROCESS = False   # on CUDA, decode in a process of its own (yeay_nb.decode_worker), frames through shared
                         # memory: 0.994x paired at 540p and 1080p / 4K slower (one H200, RESULTS.md); chunked
                         # (a batch a message) 0.963x: off
BATCH_HANDOFF = True     # the decode thread hands the main thread whole batches (one queue item each, not one a
                         # frame: each is a GIL round trip beside the model threads): 1.058x paired (H200)
OPENCV_DECODE = False    # on CUDA the decode thread reads frames with OpenCV's FFmpeg reader (VideoReader.frames(
                         # opencv=True): same pixels, one GIL-free call a frame): 1.6-2.1x the decode thread's rate
                         # (bench_decode.py) but 1.009x / 1.053x / 1.01x end to end paired (H200): off
FREEZE_GC = True         # on CUDA, gc.freeze() while videos run: full collections skip the objects made before it
                         # (0.75x off on the thread path, 0.85x with the decode process; H200)
SHORT_GIL_SWITCH = True  # a video on CUDA runs with Python's GIL switch interval at GIL_SWITCH_S (see gil_switch)
GIL_SWITCH_S = 0.0005
CPU_NMS_BY_GROUP = True  # on a CPU, torchvision's batched_nms (a loop over groups for large inputs: faster there)
FLOAT32_GROUP_NORM = False  # GN models at inference: GroupNorm in float32 under autocast (torchvision's
                            # default) instead of models.LowPrecisionGroupNorm's bf16 (training's choice)
PRECISIONS = ("bf16", "fp16", "tf32", "fp32")  # run_models / precision_flags / run_inference(precision=...)
AUTOCAST_DTYPES = {"bf16": "bfloat16", "fp16": "float16"}  # precisions that run under CUDA autocast
# tf32 by default: with trained CCP models it keeps 99% of the matched detections within the contract's
# tolerance (box IoU >= 0.99, mask IoU >= 0.98) at 11x the naive loop; bf16 is ~9% faster but moves half
# of them (benchmarks/RESULTS.md, 2026-11-27 evening)
DEFAULT_PRECISION = "tf32"


# --------------------------------------------------------------------------- model preparation
def _bn_affine(bn) -> tuple[Any, Any] | None:
    """(scale, shift) of an eval-mode BatchNorm-like module, or None if it is not foldable."""
    import torch
    from torchvision.ops.misc import FrozenBatchNorm2d

    if isinstance(bn, FrozenBatchNorm2d):
        eps = bn.eps
    elif isinstance(bn, torch.nn.BatchNorm2d) and not bn.training and bn.track_running_stats \
            and bn.running_mean is not None:
        eps = bn.eps
    else:
        return None
    weight = bn.weight if bn.weight is not None else torch.ones_like(bn.running_mean)
    bias = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_mean)
    scale = weight * (bn.running_var + eps).rsqrt()
    return scale, bias - bn.running_mean * scale


def _fold_into(conv, bn) -> bool:
    import torch

    if not isinstance(conv, torch.nn.Conv2d) or conv.groups != 1 and conv.groups != conv.out_channels:
        return False
    affine = _bn_affine(bn)
    if affine is None or affine[0].numel() != conv.out_channels:
        return False
    scale, shift = (t.detach().to(conv.weight.dtype) for t in affine)
    with torch.no_grad():
        conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
        bias = conv.bias.detach() * scale + shift if conv.bias is not None else shift
        conv.bias = torch.nn.Parameter(bias.clone(), requires_grad=False)
    return True


def fold_batchnorms(model) -> int:
    """Fold every BatchNorm that directly follows a conv into that conv (model in eval mode).

    Covers torchvision's ResNet blocks (``convN``/``bnN`` pairs, the stem, ``downsample``) and
    ``Sequential(conv, norm, ...)`` layers (FPN and heads built with ``norm_layer``). GroupNorm
    depends on the input and stays. Returns how many norms were folded (replaced by Identity).
    """
    import torch

    folded = 0
    for module in list(model.modules()):
        if isinstance(module, torch.nn.Sequential):
            kids = list(module._modules.items())
            for (_, conv), (name, bn) in zip(kids, kids[1:]):
                if _fold_into(conv, bn):
                    module._modules[name] = torch.nn.Identity()
                    folded += 1
        for suffix in ("", "1", "2", "3"):
            conv, bn = module._modules.get(f"conv{suffix}"), module._modules.get(f"bn{suffix}")
            if conv is not None and bn is not None and _fold_into(conv, bn):
                module._modules[f"bn{suffix}"] = torch.nn.Identity()
                folded += 1
    return folded


def wants_channels_last(model: Any) -> bool:
    """NHWC for this model on CUDA: ``CHANNELS_LAST`` is on and the model has no GroupNorm. On an
    H100 (bench_backbone.py, 2026-11-28) the R50-FPN backbone with folded norms ran 1.16x faster in
    NHWC at TF32 (1.21x in bf16) and the GroupNorm one 0.55x (0.49x): GroupNorm's NHWC kernels are slow."""
    import torch

    return CHANNELS_LAST and not any(isinstance(m, torch.nn.GroupNorm) for m in model.modules())


def prepare_model(model, device: Any) -> Any:
    """Eval mode on ``device``, gradients off, norms folded (``FOLD_NORMS``), NHWC weights on CUDA
    where :func:`wants_channels_last` (the first convolution then turns the shared NCHW input into
    NHWC for that model alone), folded convs with their bias, residual and ReLU in one cuDNN call on
    CUDA (``FUSED_CONV``, :mod:`yeay_nb.fused`). Changes ``model`` in place."""
    import torch

    model = model.to(device).eval()
    if FOLD_NORMS:
        fold_batchnorms(model)
    if FLOAT32_GROUP_NORM:
        from .models import use_low_precision_group_norm

        use_low_precision_group_norm(model, False)
    if torch.device(device).type == "cuda" and wants_channels_last(model):
        model.backbone.to(memory_format=torch.channels_last)
        rpn_head = getattr(getattr(model, "rpn", None), "head", None)
        if rpn_head is not None:
            rpn_head.to(memory_format=torch.channels_last)
    if FUSED_CONV and FOLD_NORMS and torch.device(device).type == "cuda":
        from . import fused

        if fused.available():
            fused.fuse_conv_relu(model)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def is_rcnn(model: Any) -> bool:
    from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN

    return isinstance(model, GeneralizedRCNN)


# --------------------------------------------------------------------------- input
@dataclass(frozen=True)
class InputSpec:
    """What a torchvision R-CNN transform does to an eval image: resize rule, mean/std, padding."""

    min_size: float
    max_size: float
    mean: tuple
    std: tuple
    size_divisible: int

    @classmethod
    def of(cls, model: Any) -> "InputSpec":
        t = model.transform
        min_size = getattr(t, "test_min_size", None) or t.min_size[-1]
        max_size = getattr(t, "test_max_size", None) or t.max_size
        if getattr(t, "fixed_size", None) is not None:
            raise NotImplementedError("transforms with a fixed_size are not supported by the fast path")
        return cls(float(min_size), float(max_size), tuple(float(v) for v in t.image_mean),
                   tuple(float(v) for v in t.image_std), int(t.size_divisible))

    def resized(self, h: int, w: int) -> tuple[int, int]:
        """The (h, w) torchvision's eval transform resizes an h×w image to (same arithmetic)."""
        scale = min(self.min_size / min(h, w), self.max_size / max(h, w))
        return math.floor(h * scale), math.floor(w * scale)


def presized_size(h: int, w: int, spec: InputSpec) -> tuple[int, int]:
    """The (h, w) :func:`cpu_presize` gives an h×w frame: the network input size when the frame is
    much larger (4K, 1080p), else its own."""
    rh, rw = spec.resized(h, w)
    return (h, w) if h * w < PRESIZE_PIXEL_RATIO * rh * rw else (rh, rw)


def cpu_presize(rgb: np.ndarray, spec: InputSpec) -> np.ndarray:
    """``rgb`` resized on the CPU to the network input size when it is much larger (4K, 1080p);
    otherwise ``rgb`` itself. Bilinear without antialiasing, as torchvision's GPU resize."""
    h, w = rgb.shape[:2]
    rh, rw = presized_size(h, w, spec)
    if (rh, rw) == (h, w):
        return rgb
    import cv2

    return cv2.resize(rgb, (rw, rh), interpolation=cv2.INTER_LINEAR)


def to_image_list(frames: Sequence[np.ndarray], original_size: tuple[int, int], spec: InputSpec, device: Any):
    """An ``ImageList`` for a batch of same-size HxWx3 uint8 RGB frames (as torchvision's eval
    transform makes it): one pinned upload, normalise, one batched bilinear resize, zero padding
    to ``size_divisible``. ``original_size`` is the frames' size before any :func:`cpu_presize`.
    """
    import torch
    import torch.nn.functional as F
    from torchvision.models.detection.image_list import ImageList

    dev = torch.device(device)
    cuda = dev.type == "cuda"
    h, w = frames[0].shape[:2]
    host = torch.empty((len(frames), h, w, 3), dtype=torch.uint8, pin_memory=cuda)
    np.stack(frames, out=host.numpy())
    x = host.to(dev, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(spec.mean, device=dev).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, device=dev).view(1, 3, 1, 1)
    x = (x - mean) / std
    rh, rw = spec.resized(*original_size)
    if (h, w) != (rh, rw):
        x = F.interpolate(x, size=(rh, rw), mode="bilinear", align_corners=False)
    d = spec.size_divisible
    ph, pw = int(math.ceil(rh / d) * d), int(math.ceil(rw / d) * d)
    if (ph, pw) != (rh, rw):
        x = F.pad(x, (0, pw - rw, 0, ph - rh))
    # NCHW even for NHWC models: two models may share this batch, and a GroupNorm one must stay NCHW
    # (a convolution with NHWC weights makes its own NHWC copy of its input)
    x = x.contiguous()
    return ImageList(x, [(rh, rw)] * len(frames))


# --------------------------------------------------------------------------- forward
def offset_by_group(boxes, groups, valid=None):
    """``boxes`` (..., N, 4) moved apart by ``groups`` (..., N) so that boxes of different groups never
    overlap: torchvision's ``batched_nms`` coordinate trick, for one image or a batch (each image offset
    by its own largest coordinate; with ``valid`` (..., N), that of its valid boxes only, which are
    all torchvision's call would have been given)."""
    reach = boxes if valid is None else boxes.where(valid[..., None], 0.0)
    return boxes + groups.to(boxes)[..., None] * (reach.amax(dim=(-2, -1), keepdim=True) + 1)


def host_to_device(t, device):
    """A small host tensor on ``device`` without a host synchronisation: through pinned memory with a
    non-blocking copy on CUDA (a plain copy from pageable memory waits for the stream's queued work)."""
    return (t.pin_memory() if device.type == "cuda" else t).to(device, non_blocking=True)


def _nms_per_group(boxes, scores, groups, iou: float):
    """``torchvision.ops.batched_nms`` by its coordinate-offset strategy at any size (torchvision
    falls back to a Python loop over the groups above 5,000 boxes: ~90 NMS calls for COCO classes)."""
    import torch
    from torchvision.ops import batched_nms, nms

    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    if groups is None:  # the caller offset the groups apart already (for a whole batch at once)
        return nms(boxes, scores, iou)
    if boxes.device.type == "cpu" and CPU_NMS_BY_GROUP:
        # on a CPU the NMS is the O(n^2) work itself, not host overhead: torchvision's choice (one NMS
        # per group above 4,000 boxes) is the faster one there. Same boxes either way.
        return batched_nms(boxes, scores, groups, iou)
    return nms(offset_by_group(boxes, groups), scores, iou)


def dense_nms(boxes, scores, groups, valid, iou: float, *, chunk_entries: int | None = None, check_every: int = 4):
    """Greedy NMS of every row of a batch at once: ``boxes`` B×N×4, ``scores``, ``groups`` (only boxes
    of one group suppress each other) and ``valid`` (the rows' real boxes) B×N. Returns ``order``
    (B×N, each row's indices by descending score, invalid ones last; ties keep index order) and
    ``keep`` (B×N bool, in that order): row b keeps ``order[b][keep[b]]``, best first — what
    ``torchvision.ops.batched_nms`` keeps for that row's valid boxes.

    Why: torchvision's CUDA NMS ends in a serial pass on one multiprocessor and reads the kept count
    back to the host, once per image (the RPN's ~4,300 boxes: ~1.5 ms a frame, the largest GPU item
    of the inference profile, plus the per-image host work). Here the work is a few batched tensor
    ops: the IoU matrix of each row (in pieces of ``chunk_entries`` entries), then the greedy result
    as the fixed point of "i is kept iff it is valid and no kept box ranked before it, of its group,
    overlaps it by more than ``iou``" (Cluster-NMS, Zheng et al. 2020). Iterating from "all kept"
    reaches it in as many rounds as the longest chain of suppressions; convergence is checked every
    ``check_every`` rounds (one host read each), and a round that changes nothing is the exact answer.
    IoU as torchvision computes it (areas without +1, ``> iou``)."""
    import torch

    b, n = scores.shape
    device = boxes.device
    key = torch.where(valid, scores.float(), torch.tensor(float("-inf"), device=device))
    order = key.argsort(dim=1, descending=True, stable=True)
    keep = torch.zeros((b, n), dtype=torch.bool, device=device)
    if n == 0:
        return order, keep
    bx = boxes.float().gather(1, order[..., None].expand(b, n, 4))
    g, v = groups.gather(1, order), valid.gather(1, order)
    before = torch.ones((n, n), dtype=torch.bool, device=device).tril(-1)  # [i, j]: j ranks before i
    mm = torch.float16 if device.type == "cuda" else torch.float32  # 0/1 entries: exact either way
    step = max(1, (chunk_entries or DENSE_NMS_CHUNK) // (n * n))
    for a in range(0, b, step):
        x, gv, vv = bx[a:a + step], g[a:a + step], v[a:a + step]
        area = (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])
        iw = (torch.minimum(x[:, :, None, 2], x[:, None, :, 2]) - torch.maximum(x[:, :, None, 0], x[:, None, :, 0])).clamp_(min=0)
        ih = (torch.minimum(x[:, :, None, 3], x[:, None, :, 3]) - torch.maximum(x[:, :, None, 1], x[:, None, :, 1])).clamp_(min=0)
        inter = iw.mul_(ih)
        del ih
        over = inter / (area[:, :, None] + area[:, None, :] - inter) > iou  # NaN (two empty boxes): False
        del inter
        over &= before & (gv[:, :, None] == gv[:, None, :])  # invalid boxes are never kept: they suppress nothing
        sup = over.to(mm)
        del over
        k, rounds = vv, 0
        while True:
            for _ in range(check_every):
                prev = k
                k = vv & (torch.bmm(sup, k.to(mm)[..., None])[..., 0] == 0)
            if torch.equal(k, prev):
                break
            rounds += check_every
            if rounds > n:  # box i is settled after at most i + 1 rounds: cannot happen
                raise RuntimeError(f"dense_nms did not converge in {rounds} rounds")
        keep[a:a + step] = k
    return order, keep


def dense_nms_top_n(boxes, scores, groups, valid, iou: float, top_n: int) -> tuple:
    """:func:`dense_nms` with each row cut to its ``top_n`` best kept boxes: ``order`` (B×N),
    ``kept`` (B×N bool, in that order) and the kept count per row (the one host read for the
    batch): row b keeps ``order[b][kept[b]]``, best first."""
    order, keep = dense_nms(boxes, scores, groups, valid, iou)
    kept = keep & (keep.cumsum(1) <= top_n)
    return order, kept, kept.sum(1).tolist()


NMS_STREAMS = 8  # per-image NMS calls run concurrently on this many CUDA streams (1: one after another)
_NMS_SIDE: dict = {}  # (device, NMS_STREAMS) -> (thread pool, streams), made on first use
_NMS_SIDE_LOCK = threading.Lock()


def _nms_side(device) -> tuple:
    """The thread pool and CUDA streams for :func:`nms_images` on ``device``. Shared by every
    caller on the device (e.g. both model threads of the inference path): calls from two threads
    interleave on the same streams, which only orders them."""
    import concurrent.futures

    import torch

    key = (device, NMS_STREAMS)
    with _NMS_SIDE_LOCK:  # two model threads may make their first call at the same time
        if key not in _NMS_SIDE:
            _NMS_SIDE[key] = (concurrent.futures.ThreadPoolExecutor(NMS_STREAMS, thread_name_prefix="yeay-nms"),
                              [torch.cuda.Stream(device) for _ in range(NMS_STREAMS)])
        return _NMS_SIDE[key]


def nms_images(jobs: Sequence[tuple], iou: float) -> list:
    """:func:`_nms_per_group` for each ``(boxes, scores, groups)`` of ``jobs`` (one per image); the
    kept indices of each, as if called one after another.

    Why: torchvision's CUDA NMS ends in a serial pass (``gather_keep_from_mask``) that runs in a
    single thread block, i.e. on one of the GPU's ~130 multiprocessors, ~2 ms for an RPN's ~7,000
    boxes; then it reads the kept count back to the host. Called image by image, a batch of 16 holds
    the whole GPU for ~30 ms per training step. Here the calls run on ``NMS_STREAMS`` CUDA streams
    from as many host threads (each waits for its own stream with the GIL released), so that many
    serial passes run side by side. Same kernels, same inputs: the same indices.
    """
    import torch

    if not jobs:
        return []
    device = jobs[0][0].device
    if device.type != "cuda" or len(jobs) == 1 or NMS_STREAMS <= 1:
        return [_nms_per_group(b, s, g, iou) for b, s, g in jobs]
    pool, streams = _nms_side(device)
    streams = streams[:len(jobs)]
    main = torch.cuda.current_stream(device)
    inference = torch.is_inference_mode_enabled()

    def run(k: int) -> list:
        stream = streams[k]
        # grad/inference mode and autocast are per thread: the worker runs plain float32 NMS
        with torch.cuda.device(device), torch.cuda.stream(stream), torch.inference_mode(inference), \
                torch.no_grad():
            return [(i, _nms_per_group(jobs[i][0].float(), jobs[i][1].float(), jobs[i][2], iou))
                    for i in range(k, len(jobs), len(streams))]

    for stream in streams:
        stream.wait_stream(main)  # the boxes and scores are made on the main stream
    parts = list(pool.map(run, range(len(streams))))
    out: list = [None] * len(jobs)
    for k, (stream, part) in enumerate(zip(streams, parts)):
        main.wait_stream(stream)
        for i, keep in part:
            keep.record_stream(main)  # made on a side stream, used on the main one
            out[i] = keep
        for i in range(k, len(jobs), len(streams)):
            for t in jobs[i]:
                if t is not None:  # the group ids are None where the boxes come offset already
                    t.record_stream(stream)  # read on a side stream: no reuse of its memory before that is done
    return out


def rpn_outputs(rpn, images, features: dict) -> tuple:
    """The RPN head on every level, flattened per image: B×A objectness logits, B×A×4 deltas
    (both with their graph, for training losses), the anchors (a list per image), the anchor
    count per level and the B×A×4 decoded (detached) proposals."""
    from torchvision.models.detection.rpn import concat_box_prediction_layers

    feats = list(features.values())
    objectness, deltas = rpn.head(feats)
    anchors = rpn.anchor_generator(images, feats)
    b = len(anchors)
    per_level = [o[0].shape[0] * o[0].shape[1] * o[0].shape[2] for o in objectness]
    objectness, deltas = concat_box_prediction_layers(objectness, deltas)
    # decoded in float32: torchvision's BoxCoder casts the anchors to the deltas' dtype, and under bf16
    # autocast that rounds every coordinate to bf16's 8 bits (2 px steps from 256 px, 4 px from 512)
    proposals = rpn.box_coder.decode(deltas.detach().float(), anchors).view(b, -1, 4)
    return objectness.reshape(b, -1), deltas.reshape(b, -1, 4), anchors, per_level, proposals


def rpn_proposals(rpn, images, features: dict) -> list:
    """``RegionProposalNetwork.forward`` (eval) for a batch of same-size images, its per-image
    filtering done once for the whole batch (:func:`filter_proposals`). Same proposals as
    torchvision, in the same order."""
    objectness, _, _, per_level, proposals = rpn_outputs(rpn, images, features)
    # float32 logits: bf16 ones tie often, and the top-N and NMS order would depend on the tie-break
    return filter_proposals(rpn, proposals, objectness.detach().float(), images.image_sizes, per_level)


def filter_proposals(rpn, proposals, objectness, image_sizes: Sequence[tuple[int, int]], per_level: list,
                     mark_invalid: bool = False, padded: bool = False):
    """``RegionProposalNetwork.filter_proposals`` for B×A decoded ``proposals`` and (detached)
    ``objectness`` logits: top-N per level, clipping, small-box and score tests are one op each
    for all images, and only the NMS and the top-N cut stay per image (torchvision: ~25 ops per
    image). Uses the rpn's train or test top-N settings, as torchvision does.

    ``mark_invalid`` (training): instead of removing the boxes that fail the size or score test
    before the NMS (a ``nonzero``, so a host synchronisation, per image), rank them last in it,
    where they can suppress nothing valid, and return any that survive the top-N cut as
    ``[-1, -1, -1, -1]``, which :class:`~yeay_nb.fasttrain.BatchedRoIHeads` ignores. The valid
    boxes are torchvision's, in its order. With ``padded`` too, the boxes come as one B×L×4 tensor,
    each image's rows followed by ``-1`` rows up to the longest (what the batched ROI heads pad the
    list to anyway), gathered in one go instead of ~10 ops an image."""
    import torch
    from torchvision.ops import boxes as box_ops

    b = proposals.shape[0]
    levels = torch.cat([torch.full((n,), i, dtype=torch.int64, device=proposals.device)
                        for i, n in enumerate(per_level)]).reshape(1, -1).expand_as(objectness)
    top = rpn._get_top_n_idx(objectness, per_level)
    rows = torch.arange(b, device=proposals.device)[:, None]
    scores = torch.sigmoid(objectness[rows, top])
    levels, boxes = levels[rows, top], proposals[rows, top]
    if all(sz == image_sizes[0] for sz in image_sizes):
        boxes = box_ops.clip_boxes_to_image(boxes, image_sizes[0])
    else:  # training batches: images of one padded batch keep their own sizes
        hw = host_to_device(torch.tensor(image_sizes, dtype=boxes.dtype), boxes.device)
        limit = torch.stack([hw[:, 1], hw[:, 0], hw[:, 1], hw[:, 0]], dim=1)[:, None, :]
        boxes = torch.minimum(boxes.clamp(min=0), limit)
    ws, hs = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    valid = (ws >= rpn.min_size) & (hs >= rpn.min_size) & (scores >= rpn.score_thresh)
    top_n = rpn.post_nms_top_n()
    out = []
    if PER_LEVEL_RPN_NMS or mark_invalid:
        # invalid boxes rank last in the NMS, so they suppress nothing valid
        ranked = torch.where(valid, scores, -1.0)
    if PER_LEVEL_RPN_NMS:
        # top-N keeps each level's candidates together, in level order: NMS each level on its own.
        # The same boxes survive as with torchvision's one offset-NMS over all levels, but the
        # NMS's serial pass costs ~n^2/64 per call: 5 calls of <= 1000 boxes instead of one of ~4,300.
        from torchvision.ops import nms

        sizes = [min(rpn.pre_nms_top_n(), n) for n in per_level]
        starts = np.cumsum([0] + sizes[:-1]).tolist()
        for i in range(b):
            keep = torch.cat([nms(boxes[i, a:a + n], ranked[i, a:a + n], rpn.nms_thresh) + a
                              for a, n in zip(starts, sizes)])
            keep = keep[ranked[i, keep].argsort(descending=True, stable=True)]
            keep = keep[valid[i, keep]][:top_n]
            out.append(boxes[i, keep])
        return out
    if DENSE_RPN_NMS and not mark_invalid:
        order, kept, counts = dense_nms_top_n(boxes, scores, levels, valid, rpn.nms_thresh, top_n)
        return list(boxes.gather(1, order[..., None].expand(-1, -1, 4))[kept].split(counts))
    if mark_invalid:
        if boxes.device.type == "cpu" and CPU_NMS_BY_GROUP:  # see _nms_per_group
            jobs = [(boxes[i], ranked[i], levels[i]) for i in range(b)]
        else:  # _nms_per_group's coordinate offsets for all images at once (~7 ops an image there)
            shifted = offset_by_group(boxes, levels)
            jobs = [(shifted[i], ranked[i], None) for i in range(b)]
        keeps = nms_images(jobs, rpn.nms_thresh)
        if padded:
            from torch.nn.utils.rnn import pad_sequence

            # padding points at an extra candidate that is -1 and invalid: one gather for the batch
            n = boxes.shape[1]
            idx = pad_sequence([k[:top_n] for k in keeps], batch_first=True, padding_value=n)
            boxes = torch.cat([boxes, boxes.new_full((b, 1, 4), -1.0)], dim=1)
            valid = torch.cat([valid, valid.new_zeros((b, 1))], dim=1)
            picked = boxes.gather(1, idx[..., None].expand(-1, -1, 4))
            return torch.where(valid.gather(1, idx)[..., None], picked, -1.0)
        for i, keep in enumerate(keeps):
            keep = keep[:top_n]
            out.append(torch.where(valid[i, keep, None], boxes[i, keep], -1.0))
        return out
    if SEGMENT_NMS and segment_nms.available(boxes.device) and rpn.pre_nms_top_n() <= segment_nms.MAX_BLOCK:
        order, kept = rpn_segment_nms(boxes, scores, levels, valid, per_level, rpn.pre_nms_top_n(), rpn.nms_thresh,
                                      top_n)
        picked = boxes.gather(1, order[..., None].expand(-1, -1, 4))
        return [picked[i, :k] for i, k in enumerate(kept)]
    jobs = []
    for i in range(b):
        v = valid[i].nonzero().squeeze(1)
        jobs.append((boxes[i, v], scores[i, v], levels[i, v]))
    for (bx, _, _), keep in zip(jobs, nms_images(jobs, rpn.nms_thresh)):
        out.append(bx[keep[:top_n]])
    return out


def rpn_segment_nms(boxes, scores, levels, valid, per_level: list, pre_top_n: int, iou: float,
                    top_n: int) -> tuple:
    """The RPN's NMS and top-N cut for a batch (:func:`filter_proposals` without ``mark_invalid``) in
    one :func:`~yeay_nb.segment_nms.segment_nms` launch, one segment per image and level, and one host
    read of the kept counts. The candidates (B×N) come as the RPN's top-N pick gives them: each
    level's together, in level order, best first; so no sort comes before the NMS. Boxes are offset
    by level as ``batched_nms`` does for the valid boxes of an image, so the IoUs are computed from
    the same coordinates as torchvision's. Returns ``order`` (B×top_n candidate indices, best first)
    and the kept count per image: image i keeps ``order[i, :count[i]]``."""
    import torch

    b, n = scores.shape
    shifted = offset_by_group(boxes, levels, valid)
    sizes = [min(pre_top_n, k) for k in per_level]
    level_starts = np.cumsum([0] + sizes[:-1])
    starts = (np.arange(b)[:, None] * n + level_starts[None]).reshape(-1)
    counts = np.tile(sizes, b)
    keep = segment_nms.segment_nms(shifted.reshape(-1, 4), valid.reshape(-1),
                                   host_to_device(torch.from_numpy(starts), boxes.device),
                                   host_to_device(torch.from_numpy(counts), boxes.device),
                                   iou, max(sizes)).view(b, n)
    # torchvision's NMS returns the kept boxes best first over all levels; then the top-N cut
    ranked = torch.where(keep, scores, float("-inf"))
    order = ranked.argsort(dim=1, descending=True, stable=True)[:, :top_n]
    return order, keep.sum(1).clamp(max=top_n).tolist()


def _box_segment_nms(rh, boxes, scores, labels, image_of: Any, n_images: int, n_classes: int,
                     max_per_segment: int) -> list:
    """The box head's class-wise NMS and per-image top ``detections_per_img`` for a batch's candidates
    (flat, any order) in one :func:`~yeay_nb.segment_nms.segment_nms` launch (a segment per image and
    class) and one host read. Returns (boxes, scores, labels) per image, best first."""
    import torch

    seg = image_of * n_classes + (labels - 1)
    order = _by_group_best_first(seg, scores)
    boxes, scores, labels, seg, image_of = (t[order] for t in (boxes, scores, labels, seg, image_of))
    seg_counts = torch.bincount(seg, minlength=n_images * n_classes)
    keep = segment_nms.segment_nms(boxes, torch.ones_like(seg, dtype=torch.bool), seg_counts.cumsum(0) - seg_counts,
                                   seg_counts, rh.nms_thresh, max_per_segment)
    # each image's kept candidates best first (batched_nms's order), cut at detections_per_img
    order = _by_group_best_first(image_of, torch.where(keep, scores, float("-inf")))
    img_counts = torch.bincount(image_of, minlength=n_images)
    rank = torch.arange(len(order), device=order.device) - (img_counts.cumsum(0) - img_counts)[image_of[order]]
    order = order[keep[order] & (rank < rh.detections_per_img)]
    per_image = torch.bincount(image_of[order], minlength=n_images).tolist()
    return [list(t[order].split(per_image)) for t in (boxes, scores, labels)]


def _by_group_best_first(groups, scores):
    """The order that sorts by ``groups``, and within a group by descending ``scores`` (ties keep
    their index order): two stable sorts."""
    order = scores.argsort(descending=True, stable=True)
    return order[groups[order].argsort(stable=True)]


def box_detections(rh, class_logits, box_regression, proposals: list, image_size: tuple[int, int]) -> tuple:
    """``RoIHeads.postprocess_detections`` for same-size images: softmax, decoding, clipping and the
    score and size tests once for the batch; per image only the NMS. Same detections, same order."""
    import torch
    import torch.nn.functional as F
    from torchvision.ops import boxes as box_ops

    counts = [len(p) for p in proposals]
    boxes = box_ops.clip_boxes_to_image(rh.box_coder.decode(box_regression, proposals), image_size)[:, 1:]
    scores = F.softmax(class_logits, -1)[:, 1:]
    ws, hs = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    cand = (scores > rh.score_thresh) & (ws >= 1e-2) & (hs >= 1e-2)
    roi, cls = cand.nonzero(as_tuple=True)
    image_of_roi = torch.repeat_interleave(torch.arange(len(counts), device=roi.device),
                                           torch.as_tensor(counts, device=roi.device))
    bx, sc, lab = boxes[roi, cls], scores[roi, cls], cls + 1
    if SEGMENT_NMS and segment_nms.available(roi.device) and len(roi) and max(counts) <= segment_nms.MAX_BLOCK:
        return _box_segment_nms(rh, bx, sc, lab, image_of_roi[roi], len(counts), scores.shape[1], max(counts))
    per_image = torch.bincount(image_of_roi[roi], minlength=len(counts)).tolist()
    all_boxes, all_scores, all_labels = [], [], []
    jobs = list(zip(bx.split(per_image), sc.split(per_image), lab.split(per_image)))
    for (b_i, s_i, l_i), keep in zip(jobs, nms_images(jobs, rh.nms_thresh)):
        keep = keep[:rh.detections_per_img]
        all_boxes.append(b_i[keep])
        all_scores.append(s_i[keep])
        all_labels.append(l_i[keep])
    return all_boxes, all_scores, all_labels


def paste_masks(masks, boxes, size: tuple[int, int], chunk_pixels: int = 1 << 26):
    """``torchvision``'s ``paste_masks_in_image`` for all K masks at once: K×1×M×M probabilities
    and K boxes (frame pixels) -> K×1×H×W, without its per-mask Python loop (which also reads
    each box back to the host, ~6 synchronisations a mask).

    Same arithmetic: the mask padded by one pixel, the box grown to match and cut to integers,
    bilinear resampling to the integer box (as ``F.interpolate(..., align_corners=False)``, done
    here by ``grid_sample`` with border clamping, so values agree to float rounding), zero
    outside the box. Works in chunks of about ``chunk_pixels`` output pixels (4K frames)."""
    import torch
    import torch.nn.functional as F
    from torchvision.models.detection.roi_heads import expand_boxes

    k, h, w = len(masks), int(size[0]), int(size[1])
    out = masks.new_zeros((k, 1, h, w), dtype=torch.float32)
    if k == 0:
        return out
    m = masks.shape[-1]
    padded = F.pad(masks.float(), (1, 1, 1, 1))
    p = m + 2
    ib = expand_boxes(boxes.float(), float(p) / m).to(torch.int64)
    x0, y0, x1, y1 = ib.unbind(1)
    bw, bh = (x1 - x0 + 1).clamp(min=1), (y1 - y0 + 1).clamp(min=1)
    xs = torch.arange(w, device=masks.device)
    ys = torch.arange(h, device=masks.device)
    step = max(1, chunk_pixels // max(1, h * w))
    for a in range(0, k, step):
        sl = slice(a, a + step)
        jx = (xs[None] - x0[sl, None]).float()
        jy = (ys[None] - y0[sl, None]).float()
        # interpolate's source coordinate for output column j: (j + 0.5) * in/out - 0.5, clamped at 0
        sx = ((jx + 0.5) * (p / bw[sl].float())[:, None] - 0.5).clamp(min=0)
        sy = ((jy + 0.5) * (p / bh[sl].float())[:, None] - 0.5).clamp(min=0)
        gx, gy = (2 * sx + 1) / p - 1, (2 * sy + 1) / p - 1  # grid_sample's normalised coordinates
        n = gx.shape[0]
        grid = torch.stack((gx[:, None, :].expand(n, h, w), gy[:, :, None].expand(n, h, w)), -1)
        vals = F.grid_sample(padded[sl], grid, mode="bilinear", padding_mode="border", align_corners=False)
        inside = ((xs[None] >= x0[sl, None]) & (xs[None] <= x1[sl, None]))[:, None, :] & \
            ((ys[None] >= y0[sl, None]) & (ys[None] <= y1[sl, None]))[:, :, None]
        out[sl] = vals * inside[:, None]
    return out


def detect(model: Any, images, original_sizes: Sequence[tuple[int, int]],
           mask_label_ids: Sequence[int] = (), mask_thresh: float = 0.5) -> list[dict]:
    """``GeneralizedRCNN.forward`` (eval) on a prepared ``ImageList``, masks only where wanted.

    Each output dict has ``boxes``, ``labels``, ``scores`` (in original-frame pixels); for a
    Mask R-CNN also ``masks`` (K×1×H×W probabilities, pasted at the original size) and
    ``mask_index`` (which K detections they belong to: the ``mask_label_ids`` detections scoring
    at least ``mask_thresh``). Call it under ``torch.inference_mode()`` (and autocast, if wanted).
    """
    import torch
    from torchvision.models.detection.roi_heads import maskrcnn_inference, paste_masks_in_image

    from torch.profiler import record_function as stage  # named ranges in profiles; ~1 us each otherwise

    with stage("yeay.backbone"):
        features = model.backbone(images.tensors)
    if isinstance(features, torch.Tensor):
        features = OrderedDict([("0", features)])
    same_size = all(sz == images.image_sizes[0] for sz in images.image_sizes)
    with stage("yeay.rpn"):
        if same_size and not model.rpn.training:
            proposals = rpn_proposals(model.rpn, images, features)
        else:
            proposals, _ = model.rpn(images, features)
    rh = model.roi_heads
    with stage("yeay.box_head"):
        box_features = rh.box_head(rh.box_roi_pool(features, proposals, images.image_sizes))
        class_logits, box_regression = rh.box_predictor(box_features)
        # scores and boxes in float32 (see rpn_outputs: bf16 box decoding moves coordinates by pixels)
        class_logits, box_regression = class_logits.float(), box_regression.float()
    with stage("yeay.box_postprocess"):
        if same_size:
            boxes, scores, labels = box_detections(rh, class_logits, box_regression, proposals,
                                                   images.image_sizes[0])
        else:
            boxes, scores, labels = rh.postprocess_detections(class_logits, box_regression, proposals,
                                                              images.image_sizes)
    has_masks = getattr(rh, "has_mask", lambda: False)()
    counts = [len(x) for x in scores]
    with stage("yeay.masks"):
        # boxes back to frame pixels: all frames share one size, so one multiply for the batch (the same
        # float32 ratios torchvision's resize_boxes uses)
        (h0, w0), (oh, ow) = images.image_sizes[0], original_sizes[0]
        uniform = same_size and all(s == original_sizes[0] for s in original_sizes)
        if uniform:
            ratio = (torch.tensor([ow, oh, ow, oh], dtype=torch.float32) /
                     torch.tensor([w0, h0, w0, h0], dtype=torch.float32)).to(boxes[0].device)
            all_boxes = torch.cat(boxes) * ratio
            out = [{"boxes": b, "scores": s, "labels": lab}
                   for b, s, lab in zip(all_boxes.split(counts), scores, labels)]
        else:
            out = model.transform.postprocess([{"boxes": b, "scores": s, "labels": lab}
                                               for b, s, lab in zip(boxes, scores, labels)],
                                              images.image_sizes, list(original_sizes))
        if has_masks:
            # which detections get a mask: one device->host copy for the batch, not one sync per frame
            keep_np: list = [np.zeros(0, np.int64)] * len(boxes)
            if len(mask_label_ids) and sum(counts):
                all_labels, all_scores = torch.cat(labels), torch.cat(scores)
                ids = torch.as_tensor(list(mask_label_ids), device=all_labels.device, dtype=all_labels.dtype)
                sel = (torch.isin(all_labels, ids) & (all_scores >= mask_thresh)).cpu().numpy()
                keep_np = [np.flatnonzero(m) for m in np.split(sel, np.cumsum(counts)[:-1])]
            n_keep = [len(k) for k in keep_np]
            pasted: list = [None] * len(boxes)
            if sum(n_keep):
                flat = torch.from_numpy(np.concatenate([k + off for k, off in
                                                        zip(keep_np, np.cumsum([0] + counts[:-1]))]))
                flat = flat.to(all_boxes.device if uniform else boxes[0].device)
                mask_boxes = torch.cat(boxes)[flat].split(n_keep)
                x = rh.mask_predictor(rh.mask_head(rh.mask_roi_pool(features, list(mask_boxes), images.image_sizes)))
                probs = maskrcnn_inference(x.float(), list(torch.cat(labels)[flat].split(n_keep)))
                if uniform:  # one batched paste for every kept mask of the batch
                    pasted = list(paste_masks(torch.cat(probs), all_boxes[flat], original_sizes[0]).split(n_keep))
                else:
                    for i, (r, k, pr) in enumerate(zip(out, keep_np, probs)):
                        if len(k):
                            pasted[i] = paste_masks_in_image(pr, r["boxes"][torch.from_numpy(k).to(pr.device)],
                                                             original_sizes[i])
            for r, k, pm, (h, w) in zip(out, keep_np, pasted, original_sizes):
                r["mask_index"] = torch.from_numpy(k)  # host indices of the detections with a mask
                r["masks"] = pm if pm is not None else torch.zeros((0, 1, h, w), device=r["boxes"].device)
    return out


def detections_to_host(outs: Sequence[dict]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(boxes float32 N×4, scores float32 N, labels int64 N) per frame, in one device-to-host copy."""
    import torch

    counts = [len(o["scores"]) for o in outs]
    packed = torch.cat([torch.cat([o["boxes"].float(), o["scores"].float()[:, None],
                                   o["labels"].float()[:, None]], 1) for o in outs]).cpu().numpy() \
        if outs else np.zeros((0, 6), np.float32)
    res, start = [], 0
    for n in counts:
        p = packed[start:start + n]
        res.append((p[:, :4], p[:, 4], p[:, 5].astype(np.int64)))
        start += n
    return res


def rle_encode(masks) -> list[dict]:
    """COCO RLEs (compressed, as ``pycocotools.mask.encode`` makes them) of a K×H×W boolean
    tensor, the run boundaries found on the tensor's device.

    Only the change positions cross to the host (a few thousand numbers a mask instead of
    H×W bytes) and pycocotools turns the run lengths into its compressed strings, so the
    per-pixel scan that ``encode`` does on the CPU never happens.
    """
    import torch
    from pycocotools import mask as mask_utils

    k, h, w = masks.shape
    if k == 0:
        return []
    flat = masks.transpose(1, 2).reshape(k, h * w)  # column-major, as COCO RLE counts run
    which, pos = (flat[:, 1:] != flat[:, :-1]).nonzero(as_tuple=True)
    packed = torch.cat([which, pos, flat[:, 0].long()]).cpu().numpy()
    n = len(which)
    which, pos, first = packed[:n], packed[n:2 * n], packed[2 * n:]
    starts = np.searchsorted(which, np.arange(k + 1))
    uncompressed = []
    for i in range(k):
        bounds = np.concatenate(([0], pos[starts[i]:starts[i + 1]] + 1, [h * w]))
        counts = np.diff(bounds)
        if first[i]:  # COCO RLE starts with a run of zeros, possibly empty
            counts = np.concatenate(([0], counts))
        uncompressed.append({"counts": counts.tolist(), "size": [h, w]})
    return [{"counts": r["counts"].decode("ascii"), "size": [int(r["size"][0]), int(r["size"][1])]}
            for r in mask_utils.frPyObjects(uncompressed, h, w)]


def masks_to_rles(outs: Sequence[dict], host: Sequence[tuple], mask_label_ids: Sequence[int], mask_thresh: float,
                  pixel_thresh: float = 0.5) -> list[list[tuple[list[dict], list[float]]]]:
    """Per frame, per mask class: (RLEs, scores) of the kept masks (``mask_label_ids``
    detections scoring at least ``mask_thresh``), all masks of the batch encoded together.

    ``host`` is :func:`detections_to_host` of ``outs``: the selection is made there, on the host,
    so no frame costs a device synchronisation."""
    import torch

    picks, where = [], []
    for o, (_, scores, labels) in zip(outs, host):
        if "mask_index" in o:  # masks exist only for these detections (detect), in this order
            idx = o["mask_index"].numpy()
            masks = o["masks"]
        else:  # a model that pasted a mask for every detection
            idx = np.flatnonzero(np.isin(labels, list(mask_label_ids)) & (scores >= mask_thresh))
            masks = o["masks"][torch.from_numpy(idx).to(o["masks"].device)] if len(idx) else o["masks"][:0]
        frame = []
        for label in mask_label_ids:
            rows = np.flatnonzero((labels[idx] == label) & (scores[idx] >= mask_thresh))
            frame.append((len(picks), rows, [round(float(s), 6) for s in scores[idx][rows]]))
        picks.append(masks)
        where.append(frame)
    total = sum(len(p) for p in picks)
    rles = rle_encode(torch.cat([p[:, 0] for p in picks]) > pixel_thresh) if total else []
    res, off = [], 0
    for p, frame in zip(picks, where):
        res.append([([rles[off + int(j)] for j in rows], sc)
                    for _, rows, sc in frame])
        off += len(p)
    return res


def run_models(dets: Sequence[Any], frames: Sequence[np.ndarray], original_size: tuple[int, int], device: Any,
               mask_det: Any = None, mask_label_ids: Sequence[int] = (), mask_thresh: float = 0.5,
               pixel_thresh: float = 0.5, precision: str = DEFAULT_PRECISION) -> dict:
    """Every R-CNN in ``dets`` on one batch of same-size uint8 RGB frames, results on the host:
    ``{id(model): (detections per frame, masks per frame or None)}`` (see
    :func:`detections_to_host`, :func:`masks_to_rles`; masks for ``mask_det`` only).

    Models whose input transforms agree share one uploaded image batch. On CUDA, with two or
    more models, each runs in its own thread on its own stream: one model's host-synchronising
    steps (NMS, the copies back) overlap the other's convolutions. ``precision`` "bf16" / "fp16": that
    autocast on CUDA; "tf32" / "fp32": none (the TF32 switches are process-wide: the caller sets
    them for the whole run with :func:`precision_flags`).
    """
    import torch

    dev = torch.device(device)
    cuda = dev.type == "cuda"
    if cuda:
        if dev.index is None:  # "cuda": the current card; set_device needs an index (torch >= 2.11)
            dev = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(dev)  # this may be a worker thread: library calls without a device use this card
    sizes = [original_size] * len(frames)
    image_lists: dict = {}
    with torch.inference_mode(), torch.profiler.record_function("yeay.upload"):
        for m in dets:
            spec = InputSpec.of(m)
            if spec not in image_lists:
                image_lists[spec] = to_image_list(frames, original_size, spec, dev)
    main_stream = torch.cuda.current_stream(dev) if cuda else None

    def one(m) -> tuple:
        images = image_lists[InputSpec.of(m)]
        low = AUTOCAST_DTYPES.get(precision) if cuda else None
        ctx = torch.autocast("cuda", dtype=getattr(torch, low)) if low else contextlib.nullcontext()
        with torch.inference_mode(), ctx:
            wants_masks = m is mask_det
            outs = detect(m, images, sizes, mask_label_ids if wants_masks else (), mask_thresh)
        with torch.inference_mode(), torch.profiler.record_function("yeay.to_host"):
            host = detections_to_host(outs)
            return host, (masks_to_rles(outs, host, mask_label_ids, mask_thresh, pixel_thresh)
                          if wants_masks else None)

    if not cuda or len(dets) == 1 or not CONCURRENT_MODELS:
        return {id(m): one(m) for m in dets}
    lanes = _lanes(dev, len(dets))

    def in_lane(m, stream):
        torch.cuda.set_device(dev)
        stream.wait_stream(main_stream)  # the image batch was made on the main stream
        with torch.cuda.stream(stream):
            for il in image_lists.values():
                il.tensors.record_stream(stream)
            return one(m)

    futures = [(m, lane.submit(in_lane, m, stream)) for m, (lane, stream) in zip(dets, lanes)]
    results = {id(m): f.result() for m, f in futures}  # re-raises a model's error here
    for _, stream in lanes:
        main_stream.wait_stream(stream)
    return results


@contextlib.contextmanager
def precision_flags(precision: str):
    """TF32 for cuDNN convolutions and cuBLAS matmuls as ``precision`` wants while inside: off for
    "fp32" (PyTorch lets cuDNN use TF32 by default), on for "tf32", left alone for "bf16" / "fp16"
    (autocast decides). The previous settings come back on exit. Process-wide flags: every thread's kernels
    follow them while this is active."""
    import torch

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    if precision not in AUTOCAST_DTYPES:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@contextlib.contextmanager
def gil_switch(device: Any):
    """Python's thread switch interval at :data:`GIL_SWITCH_S` while inside, on CUDA (with
    :data:`SHORT_GIL_SWITCH`); the previous interval comes back on exit. Process-wide.

    Why: on a GPU the video path keeps several Python threads busy (a thread per model, the batch
    thread, the main thread collecting results) beside the decode thread, whose decoding and colour
    conversion free the GIL a few times a frame. Each time it wants the GIL back it can wait for a
    busy thread's whole switch interval (5 ms by default): measured on an H200, the loop spent 0.75 s
    of 2.07 waiting for decoded frames, while decoding alone runs at ~535 frames/s (0.45 s for the
    240 frames; benchmarks/RESULTS.md, 2026-11-29 fifth session)."""
    import sys

    import torch

    if not (SHORT_GIL_SWITCH and torch.device(device).type == "cuda"):
        yield
        return
    saved = sys.getswitchinterval()
    sys.setswitchinterval(GIL_SWITCH_S)
    try:
        yield
    finally:
        sys.setswitchinterval(saved)


@contextlib.contextmanager
def frozen_gc(device: Any):
    """``gc.freeze()`` while inside, on CUDA (with :data:`FREEZE_GC`); ``gc.unfreeze()`` on exit.

    Why: a run's items (~100 small lists a frame) trigger Python's full collections, and each one
    walks every object of the process (the models, torch, the notebook's own) holding the GIL that
    the model threads need; frozen, the objects made before the run are skipped. Garbage among them
    is collected after the run, when they are unfrozen."""
    import gc

    import torch

    if not (FREEZE_GC and torch.device(device).type == "cuda"):
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


_LANES: dict = {}


def _lanes(dev, n: int) -> list:
    """``n`` (one-thread executor, CUDA stream) pairs for ``dev``, made once and kept.

    Long-lived on purpose: cuDNN's autotuning cache and the cuBLAS handles are per thread, so a
    thread made per batch would autotune every convolution again (measured: 4x slower)."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    have = _LANES.setdefault(str(dev), [])
    while len(have) < n:
        have.append((ThreadPoolExecutor(1, thread_name_prefix=f"yeay-model-{len(have)}"), torch.cuda.Stream(dev)))
    return have[:n]

