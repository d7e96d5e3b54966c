"""Detection models (torchvision Faster / Mask R-CNN with FPN) and their checkpoints.

Usage::

    from yeay_nb.models import build_model, load_model, save_checkpoint
    config = {"arch": "maskrcnn", "backbone": "resnet18", "num_classes": 40}
    model = build_model(config)                      # random init, no download
    save_checkpoint("model_final.pt", model=model, classes=classes, model_config=config)
    model, classes, config = load_model("model_final.pt", device="cuda", box_score_thresh=0.3)

A checkpoint carries everything inference needs: the weights, the class names
(index 0 ``__background__``) and the model config, so ``load_model(path)`` needs
nothing else. ``build_model`` never touches the network; pretrained weights are
loaded separately by :func:`load_weights` (``coco | imagenet | none | <path>``).

Config keys (all but ``num_classes`` have defaults, see :data:`DEFAULT_CONFIG`):

- ``arch``: ``fasterrcnn`` | ``maskrcnn``; ``backbone``: ``resnet50`` | ``resnet18`` | ``mobilenet_v3``
- ``norm``: ``frozen_bn`` (torchvision v1 layout: frozen BN backbone, plain FPN and 2-fc box
  head, so torchvision's COCO weights fit), ``bn`` (torchvision v2 layout: BN everywhere, 4conv1fc
  head) or ``gn`` (GroupNorm in backbone, FPN and heads: the choice for training from scratch)
- ``min_size`` (int or tuple of train short sides, one picked at random per batch),
  ``max_size``, ``test_min_size``, ``test_max_size``
- ``rpn_pre_nms_top_n_train|test``, ``rpn_post_nms_top_n_train|test``,
  ``box_batch_size_per_image`` (ROIs per image), ``box_detections_per_img``, ``box_score_thresh``,
  ``trainable_backbone_layers``
- ``heads``: ``standard`` (the layout ``norm`` implies) or ``light`` (1-conv RPN, one 512-wide fc
  box head, 2x128-conv mask head): about 3x cheaper ROI heads, for CPU demos and quick studies
- ``rpn_conv_depth``: 3x3 convolutions of the RPN head before its outputs; None: the layout's own
  (2 for ``bn`` / ``gn``, 1 otherwise). At 480x864 one is ~41 GFLOPs a frame beside the backbone +
  FPN's ~115 (``benchmarks/bench_backbone.py``): the GN layout's second is ~18% of its arithmetic
- ``anchor_ratios``: anchor height/width ratios at every level (None: torchvision's 0.5, 1, 2);
  the RPN head predicts one objectness and one box per ratio and size
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import urlparse

import numpy as np
import torch
from torch import nn
from torchvision.models.detection import FasterRCNN, MaskRCNN
from torchvision.models.detection.backbone_utils import _mobilenet_extractor, _resnet_fpn_extractor
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.rpn import AnchorGenerator, RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform

try:  # torchvision's own helper (private; present from 0.10 to 0.29 at least)
    from torchvision.models.detection.transform import _resize_image_and_masks
except ImportError:  # pragma: no cover - a torchvision without it: TrainTestTransform uses its resize
    _resize_image_and_masks = None
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops import misc as misc_nn_ops

from .atomic import atomic_open
from .errors import CheckpointError

CHECKPOINT_FORMAT = "yeay_nb.checkpoint/1"
ARCHS = ("fasterrcnn", "maskrcnn")
BACKBONES = ("resnet50", "resnet18", "mobilenet_v3")
NORMS = ("frozen_bn", "bn", "gn")
HEADS = ("standard", "light", "mlp")

DEFAULT_CONFIG: dict[str, Any] = {
    "arch": "fasterrcnn",
    "backbone": "resnet50",
    "norm": "frozen_bn",
    "min_size": (800,),
    "max_size": 1333,
    "test_min_size": 800,
    "test_max_size": 1333,
    "rpn_pre_nms_top_n_train": 2000,
    "rpn_post_nms_top_n_train": 2000,
    "rpn_pre_nms_top_n_test": 1000,
    "rpn_post_nms_top_n_test": 1000,
    "box_batch_size_per_image": 512,
    "box_detections_per_img": 100,
    "box_score_thresh": 0.05,
    "trainable_backbone_layers": 3,
    "heads": "standard",
    "rpn_conv_depth": None,
    "anchor_ratios": None,  # None: torchvision's (0.5, 1, 2) at every level
    # training: one random train scale per batch (all its images) instead of one per image
    "scale_per_batch": False,
}

# Settings that only change inference; load_model(**overrides) accepts these.
# min_size / max_size given to load_model mean the test-time size.
TEST_TIME_KEYS = ("min_size", "max_size", "test_min_size", "test_max_size", "box_score_thresh",
                  "box_detections_per_img", "rpn_pre_nms_top_n_test", "rpn_post_nms_top_n_test",
                  "box_nms_thresh")


# --------------------------------------------------------------------------- building


class LowPrecisionGroupNorm(nn.GroupNorm):
    """GroupNorm that keeps the autocast dtype (bfloat16/float16) instead of running in float32.

    Autocast lists ``group_norm`` among the float32 ops: every GroupNorm of a GN model casts its
    bfloat16 input up, normalises in float32, writes float32 and the next convolution casts it back
    down -- three extra passes over the largest activations. PyTorch's GroupNorm kernels accumulate
    their statistics in float32 for 16-bit inputs, so running them on the 16-bit tensor keeps the
    statistics exact and only rounds the output, as every convolution's output is rounded anyway.
    Same parameters and state dict as ``nn.GroupNorm``; outside autocast it is ``nn.GroupNorm``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else None
        if dtype is None or dtype == torch.float32:
            return super().forward(x)
        with torch.autocast(x.device.type, enabled=False):
            weight = None if self.weight is None else self.weight.to(dtype)
            bias = None if self.bias is None else self.bias.to(dtype)
            return nn.functional.group_norm(x.to(dtype), self.num_groups, weight, bias, self.eps)


def use_low_precision_group_norm(model: nn.Module, enable: bool = True) -> nn.Module:
    """Swap every ``nn.GroupNorm`` of ``model`` to :class:`LowPrecisionGroupNorm` (or back), in place."""
    for m in model.modules():
        if isinstance(m, nn.GroupNorm):
            m.__class__ = LowPrecisionGroupNorm if enable else nn.GroupNorm
    return model


def _group_norm(num_channels: int, groups: int = 32) -> nn.GroupNorm:
    # mobilenet has channel counts (e.g. 16, 24, 40) that 32 does not divide
    return LowPrecisionGroupNorm(math.gcd(groups, num_channels), num_channels)


def _norm_layers(norm: str) -> tuple[Callable[..., nn.Module], Optional[Callable[..., nn.Module]]]:
    """(backbone norm, FPN/head norm) for a norm name."""
    if norm == "frozen_bn":
        return misc_nn_ops.FrozenBatchNorm2d, None
    if norm == "bn":
        return nn.BatchNorm2d, nn.BatchNorm2d
    if norm == "gn":
        return _group_norm, _group_norm
    raise CheckpointError(f"model config: norm must be one of {list(NORMS)}, got {norm!r}")


def _resized_boxes(boxes: torch.Tensor, size: tuple[int, int], new_size: tuple[int, int]) -> torch.Tensor:
    """torchvision's ``resize_boxes`` without its four device tensors of ratios (four synchronising
    copies per call): the same float32 ratios as Python numbers give the same boxes."""
    (h, w), (nh, nw) = size, new_size
    ratio_h, ratio_w = float(np.float32(nh) / np.float32(h)), float(np.float32(nw) / np.float32(w))
    x0, y0, x1, y1 = boxes.unbind(1)
    return torch.stack((x0 * ratio_w, y0 * ratio_h, x1 * ratio_w, y1 * ratio_h), dim=1)


class TrainTestTransform(GeneralizedRCNNTransform):
    """torchvision's transform with a separate test size.

    torchvision picks a random ``min_size`` entry when training and the last one in eval;
    we keep the train scales for training and use ``test_min_size`` / ``test_max_size`` in eval.

    ``scale_per_batch``: torchvision draws the train scale per image, and a batch is padded to its
    largest image, so with several scales nearly every batch costs the largest scale (16 images,
    6 scales: the largest is drawn in 95% of batches) while the images average the middle one.
    One draw per batch gives every image the same distribution of scales at the cost of its own.
    """

    def __init__(self, min_size, max_size, test_min_size, test_max_size, image_mean, image_std,
                 scale_per_batch: bool = False):
        super().__init__(min_size, max_size, image_mean, image_std)
        self.test_min_size, self.test_max_size = int(test_min_size), int(test_max_size)
        self.scale_per_batch = bool(scale_per_batch)
        self._batch_scale = None

    def forward(self, images, targets=None):
        if self.training and self.scale_per_batch:
            self._batch_scale = super().torch_choice(self.min_size)
        try:
            if self.training and targets is not None and self._can_group(images, targets):
                return self._grouped_forward(images, targets)
            return super().forward(images, targets)
        finally:
            self._batch_scale = None

    def _can_group(self, images, targets) -> bool:
        return (_resize_image_and_masks is not None and self.fixed_size is None
                and not getattr(self, "_skip_resize", False) and len(images) == len(targets)
                and len(images) > 0 and all(isinstance(i, torch.Tensor) and i.dim() == 3 for i in images)
                and not any("keypoints" in t for t in targets))

    def _grouped_forward(self, images: list, targets: list) -> tuple[ImageList, list]:
        """Training's normalise + resize + pad, one call per group of images that share their size and
        drawn scale instead of one per image (the same values: these ops treat the batch entries
        independently). Why: torchvision's per-image loop dispatches ~16 small ops per image, ~25 ms
        of profiled host time at 16 images on an H200 in a host-bound forward; a dataset of one photo
        size (CCP) makes it one group. Measured (benchmarks/RESULTS.md, 2026-11-29 fourth session): no
        img/s gain with the backbone as CUDA graphs, eager +3% / +11% in two pairs (within the noise).
        The scales are drawn per image in torchvision's order, so a seed gives torchvision's batch."""
        scales = [self.torch_choice(self.min_size) for _ in images]
        groups: dict = {}
        for i, (im, s) in enumerate(zip(images, scales)):
            groups.setdefault((tuple(im.shape), im.dtype, im.device, s), []).append(i)
        out_images: list = [None] * len(images)
        out_targets = [dict(t) for t in targets]
        for (shape, _, _, scale), idx in groups.items():
            x = images[idx[0]][None] if len(idx) == 1 else torch.stack([images[i] for i in idx])
            h, w = shape[-2:]
            factor = min(scale / min(h, w), self.max_size / max(h, w))  # torchvision's formula
            x = torch.nn.functional.interpolate(self.normalize(x), scale_factor=factor, mode="bilinear",
                                                recompute_scale_factor=True, align_corners=False)
            nh, nw = x.shape[-2:]
            part = [out_targets[i] for i in idx]
            counts = [len(t["boxes"]) for t in part]
            boxes = _resized_boxes(torch.cat([t["boxes"] for t in part]), (h, w), (nh, nw)).split(counts)
            with_masks = [t for t in part if "masks" in t]
            if with_masks:
                m = torch.cat([t["masks"] for t in with_masks])
                m = torch.nn.functional.interpolate(m[:, None].float(), scale_factor=factor,
                                                    recompute_scale_factor=True)[:, 0].byte()
                for t, resized in zip(with_masks, m.split([len(t["masks"]) for t in with_masks])):
                    t["masks"] = resized
            for j, i in enumerate(idx):
                out_images[i] = x[j]
                out_targets[i]["boxes"] = boxes[j]
            if len(groups) == 1:  # the whole batch in one tensor: pad it in one op
                stride = float(self.size_divisible)
                ph, pw = (int(math.ceil(float(v) / stride) * stride) for v in (nh, nw))
                batched = torch.nn.functional.pad(x, (0, pw - nw, 0, ph - nh))
                return ImageList(batched, [(nh, nw)] * len(images)), out_targets
        sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in out_images]
        return ImageList(self.batch_images(out_images, size_divisible=self.size_divisible), sizes), out_targets

    def torch_choice(self, k: list[int]) -> int:
        # every per-image draw of the train scale goes through here (torchvision's resize too)
        return self._batch_scale if self._batch_scale is not None else super().torch_choice(k)

    def normalize(self, image):
        # torchvision builds mean and std from Python lists for every image: two host->device copies,
        # each a GPU synchronisation; they are made once per device and dtype here
        key = (image.dtype, image.device)
        cached = self.__dict__.setdefault("_mean_std", {})
        if key not in cached:
            cached[key] = tuple(torch.as_tensor(v, dtype=image.dtype, device=image.device)[:, None, None]
                                for v in (self.image_mean, self.image_std))
        mean, std = cached[key]
        return (image - mean) / std

    def resize(self, image, target=None):
        if self.training:
            if (_resize_image_and_masks is None or target is None or getattr(self, "_skip_resize", False)
                    or "keypoints" in target):
                return super().resize(image, target)
            h, w = image.shape[-2:]
            image, target = _resize_image_and_masks(image, self.torch_choice(self.min_size), self.max_size, target,
                                                    self.fixed_size)
            target["boxes"] = _resized_boxes(target["boxes"], (h, w), image.shape[-2:])
            return image, target
        saved = self.min_size, self.max_size
        self.min_size, self.max_size = (self.test_min_size,), self.test_max_size
        try:
            return super().resize(image, target)
        finally:
            self.min_size, self.max_size = saved


def full_config(config: dict) -> dict:
    """``config`` with defaults filled in and values checked (CheckpointError on a bad one)."""
    if "num_classes" not in config:
        raise CheckpointError("model config: 'num_classes' is required (classes incl. background)")
    unknown = set(config) - set(DEFAULT_CONFIG) - {"num_classes", "box_nms_thresh"}
    if unknown:
        raise CheckpointError(f"model config: unknown keys {sorted(unknown)}")
    cfg = {**DEFAULT_CONFIG, **config}
    if cfg["arch"] not in ARCHS:
        raise CheckpointError(f"model config: arch must be one of {list(ARCHS)}, got {cfg['arch']!r}")
    if cfg["backbone"] not in BACKBONES:
        raise CheckpointError(f"model config: backbone must be one of {list(BACKBONES)}, got {cfg['backbone']!r}")
    _norm_layers(cfg["norm"])
    if cfg["heads"] not in HEADS:
        raise CheckpointError(f"model config: heads must be one of {list(HEADS)}, got {cfg['heads']!r}")
    d = cfg["rpn_conv_depth"]
    if d is not None and (isinstance(d, bool) or not isinstance(d, int) or d < 1):
        raise CheckpointError(f"model config: rpn_conv_depth must be None or an integer >= 1, got {d!r}")
    r = cfg["anchor_ratios"]
    if r is not None:
        if not isinstance(r, (list, tuple)) or not r or any(isinstance(x, bool) or not isinstance(x, (int, float))
                                                             or x <= 0 for x in r):
            raise CheckpointError(f"model config: anchor_ratios must be None or positive numbers, got {r!r}")
        cfg["anchor_ratios"] = tuple(float(x) for x in r)
    if int(cfg["num_classes"]) < 2:
        raise CheckpointError(f"model config: num_classes must be >= 2 (incl. background), got {cfg['num_classes']}")
    ms = cfg["min_size"]
    cfg["min_size"] = tuple(int(s) for s in ms) if isinstance(ms, (list, tuple)) else (int(ms),)
    return cfg


def _backbone(cfg: dict) -> nn.Module:
    from torchvision.models import mobilenet_v3_large, resnet18, resnet50

    body_norm, fpn_norm = _norm_layers(cfg["norm"])
    layers = int(cfg["trainable_backbone_layers"])
    if cfg["backbone"] in ("resnet50", "resnet18"):
        net = {"resnet50": resnet50, "resnet18": resnet18}[cfg["backbone"]](weights=None, norm_layer=body_norm)
        return _resnet_fpn_extractor(net, min(layers, 5), norm_layer=fpn_norm)  # 5 = all stages
    net = mobilenet_v3_large(weights=None, norm_layer=body_norm)
    return _mobilenet_extractor(net, True, min(layers, 6), norm_layer=fpn_norm)  # 6 = all stages


def _rpn_head(channels: int, kwargs: dict, depth: int) -> RPNHead:
    """An RPN head with ``depth`` 3x3 convolutions for the anchors in ``kwargs`` (torchvision's 3 if none)."""
    anchors = kwargs.get("rpn_anchor_generator")
    return RPNHead(channels, anchors.num_anchors_per_location()[0] if anchors else 3, conv_depth=int(depth))


def build_model(config: dict) -> nn.Module:
    """A randomly initialised Faster/Mask R-CNN with FPN for ``config`` (no download).

    Usage::

        model = build_model({"arch": "maskrcnn", "backbone": "resnet50", "norm": "gn", "num_classes": 40})
    """
    cfg = full_config(config)
    backbone = _backbone(cfg)
    _, head_norm = _norm_layers(cfg["norm"])
    ch = backbone.out_channels
    kwargs: dict[str, Any] = {}
    ratios = cfg["anchor_ratios"] or (0.5, 1.0, 2.0)
    if cfg["backbone"] == "mobilenet_v3":
        # torchvision's mobilenet FPN recipe: 3 feature maps, all anchor sizes on each
        sizes = ((32, 64, 128, 256, 512),) * 3
        kwargs["rpn_anchor_generator"] = AnchorGenerator(sizes, (ratios,) * len(sizes))
    elif cfg["anchor_ratios"] is not None:  # torchvision's ResNet-FPN sizes, one per level
        sizes = ((32,), (64,), (128,), (256,), (512,))
        kwargs["rpn_anchor_generator"] = AnchorGenerator(sizes, (ratios,) * len(sizes))
    num_classes: Optional[int] = int(cfg["num_classes"])
    if cfg["heads"] == "light":
        # On a CPU the ROI heads, not the backbone, dominate a step (the standard mask head alone is
        # ~0.46 GMAC per positive ROI); these keep the structure and cut the cost about 3x.
        kwargs["rpn_head"] = _rpn_head(ch, kwargs, cfg["rpn_conv_depth"] or 1)
        kwargs["box_head"] = FastRCNNConvFCHead((ch, 7, 7), [], [512], norm_layer=head_norm)
        kwargs["box_predictor"] = FastRCNNPredictor(512, num_classes)
        # one sample per bin instead of 2x2: RoIAlign's CPU backward (a serial scatter) was 40% of a step
        kwargs["box_roi_pool"] = MultiScaleRoIAlign(["0", "1", "2", "3"], 7, sampling_ratio=1)
        if cfg["arch"] == "maskrcnn":
            kwargs["mask_head"] = MaskRCNNHeads(ch, [128, 128], 1, norm_layer=head_norm)
            kwargs["mask_predictor"] = MaskRCNNPredictor(128, 128, num_classes)
            kwargs["mask_roi_pool"] = MultiScaleRoIAlign(["0", "1", "2", "3"], 14, sampling_ratio=1)
        num_classes = None  # torchvision wants it only when it builds the predictors itself
    elif head_norm is not None:
        # torchvision's v2 layout (and Detectron's GN recipe): 2-conv RPN, 4conv1fc box head, normed mask head.
        # heads "mlp" keeps all but the box head, which becomes two 1024-wide FC layers (Detectron's 2mlp head,
        # torchvision v1): the 4 convs on every sampled ROI (8192 at 16 images x 512) are ~0.26 GFLOP per ROI
        # forward, about a third of a GN training step's arithmetic; the 2 FCs are ~0.03.
        kwargs["rpn_head"] = _rpn_head(ch, kwargs, cfg["rpn_conv_depth"] or 2)
        convs = [] if cfg["heads"] == "mlp" else [256, 256, 256, 256]
        fcs = [1024, 1024] if cfg["heads"] == "mlp" else [1024]
        kwargs["box_head"] = FastRCNNConvFCHead((ch, 7, 7), convs, fcs, norm_layer=head_norm)
        if cfg["arch"] == "maskrcnn":
            kwargs["mask_head"] = MaskRCNNHeads(ch, [256, 256, 256, 256], 1, norm_layer=head_norm)
        if cfg["heads"] == "mlp":  # torchvision builds predictors only when it builds every head itself
            kwargs["box_predictor"] = FastRCNNPredictor(1024, num_classes)
            if cfg["arch"] == "maskrcnn":
                kwargs["mask_predictor"] = MaskRCNNPredictor(256, 256, num_classes)
            num_classes = None
    if "rpn_head" not in kwargs and cfg["rpn_conv_depth"] not in (None, 1):
        kwargs["rpn_head"] = _rpn_head(ch, kwargs, cfg["rpn_conv_depth"])
    if "box_nms_thresh" in cfg:
        kwargs["box_nms_thresh"] = float(cfg["box_nms_thresh"])
    cls = MaskRCNN if cfg["arch"] == "maskrcnn" else FasterRCNN
    model = cls(
        backbone,
        num_classes=num_classes,
        min_size=cfg["min_size"],
        max_size=int(cfg["max_size"]),
        rpn_pre_nms_top_n_train=int(cfg["rpn_pre_nms_top_n_train"]),
        rpn_post_nms_top_n_train=int(cfg["rpn_post_nms_top_n_train"]),
        rpn_pre_nms_top_n_test=int(cfg["rpn_pre_nms_top_n_test"]),
        rpn_post_nms_top_n_test=int(cfg["rpn_post_nms_top_n_test"]),
        box_batch_size_per_image=int(cfg["box_batch_size_per_image"]),
        box_detections_per_img=int(cfg["box_detections_per_img"]),
        box_score_thresh=float(cfg["box_score_thresh"]),
        **kwargs,
    )
    model.transform = TrainTestTransform(cfg["min_size"], cfg["max_size"], cfg["test_min_size"],
                                         cfg["test_max_size"], model.transform.image_mean,
                                         model.transform.image_std, scale_per_batch=cfg["scale_per_batch"])
    from .fasttrain import install

    return install(model)  # training targets batched (same parameters; eval is torchvision's own code)


def model_config_from_params(train_params: Any, num_classes: int) -> dict:
    """The model config for a :class:`yeay_nb.params.TrainParams` section and a class count."""
    t = train_params
    return full_config({
        "arch": t.model,
        "backbone": t.backbone,
        "norm": t.norm,
        "num_classes": int(num_classes),
        "min_size": tuple(t.train_scales),
        "max_size": t.max_size,
        "test_min_size": t.test_scale,
        "test_max_size": t.test_max_size,
        "rpn_pre_nms_top_n_train": t.rpn_pre_nms_top_n_train,
        "rpn_post_nms_top_n_train": t.rpn_post_nms_top_n_train,
        "rpn_pre_nms_top_n_test": t.rpn_pre_nms_top_n_test,
        "rpn_post_nms_top_n_test": t.rpn_post_nms_top_n_test,
        "box_batch_size_per_image": t.rois_per_image,
        "box_detections_per_img": t.detections_per_image,
        # train from scratch: every layer trains; pretrained: Detectron's freeze-at-2
        "trainable_backbone_layers": 6 if t.weights == "none" else 3,
        "heads": t.heads,
        "rpn_conv_depth": t.rpn_conv_depth,
        "anchor_ratios": t.anchor_ratios,
        "scale_per_batch": t.scale_per_batch,
    })


# --------------------------------------------------------------------------- checkpoints
def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside DDP / DataParallel / torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def _plain(x: Any) -> Any:
    """Tuples to lists etc. so a checkpoint loads with ``weights_only=True``."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    return x


def save_checkpoint(path: str | os.PathLike, *, model: nn.Module, classes: list[str], model_config: dict,
                    optimizer=None, scheduler=None, iteration: int | None = None, params: dict | None = None,
                    extra: dict | None = None, ema: nn.Module | None = None) -> Path:
    """Write a checkpoint atomically (a crash or a full disk never leaves half a file).

    Usage::

        save_checkpoint(out / "model_final.pt", model=model, classes=classes, model_config=cfg,
                        optimizer=opt, scheduler=sched, iteration=it, params=p.to_dict())

    A full disk raises :class:`CheckpointError` naming the path; the previous file is intact.
    ``ema``: the moving average of the weights (``train.ema_decay``), saved as ``"ema"`` beside the
    training weights; :func:`load_model` and :func:`load_weights` then use it (see :func:`inference_weights`).
    """
    path = Path(path)
    state = {
        "format": CHECKPOINT_FORMAT,
        "model": unwrap(model).state_dict(),
        "classes": list(classes),
        "model_config": _plain(model_config),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "iteration": iteration,
        "params": _plain(params) if params is not None else None,
        "extra": _plain(extra) if extra is not None else None,
        "torch_version": str(torch.__version__),
    }
    if ema is not None:
        state["ema"] = unwrap(ema).state_dict()
    try:
        with atomic_open(path, "wb") as f:
            torch.save(state, f)
    except OSError as e:
        raise CheckpointError(f"cannot write checkpoint {path}: {e.strerror or e} "
                              "(earlier checkpoints are untouched)") from e
    return path


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (CheckpointError names the path)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, pickle garbage, ...: all mean "not a usable checkpoint"
        raise CheckpointError(f"checkpoint {path} is corrupt or not a yeay_nb checkpoint: {e}") from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"checkpoint {path} is not a yeay_nb checkpoint (no 'model' entry)")
    if "model_config" not in state or "classes" not in state:
        raise CheckpointError(f"checkpoint {path} lacks 'model_config'/'classes' (not written by yeay_nb)")
    return state


def inference_weights(state: dict) -> dict:
    """The weights to predict with: the moving average (``"ema"``) where the checkpoint has one,
    else the training weights (``"model"``); training resumes from ``"model"`` either way."""
    return state.get("ema") or state["model"]


def load_model(path: str | os.PathLike, device: Any = "cpu", **overrides) -> tuple[nn.Module, list[str], dict]:
    """Model in eval mode, class names and model config, from a checkpoint file alone.

    Usage::

        model, classes, cfg = load_model("work/train/model_final.pt", "cuda", min_size=600,
                                         box_score_thresh=0.3)

    ``overrides`` change test-time settings only (see :data:`TEST_TIME_KEYS`);
    ``min_size`` / ``max_size`` set the test-time size.
    """
    bad = set(overrides) - set(TEST_TIME_KEYS)
    if bad:
        raise CheckpointError(f"load_model: cannot override {sorted(bad)}; allowed: {list(TEST_TIME_KEYS)}")
    state = load_checkpoint(path)
    cfg = dict(state["model_config"])
    for k, v in overrides.items():
        if v is None:
            continue
        cfg[{"min_size": "test_min_size", "max_size": "test_max_size"}.get(k, k)] = v
    cfg = full_config(cfg)
    model = build_model(cfg)
    try:
        model.load_state_dict(inference_weights(state))
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {path}: weights do not fit its model config: {e}") from None
    classes = list(state["classes"])
    if len(classes) != cfg["num_classes"]:
        raise CheckpointError(f"checkpoint {path}: {len(classes)} class names but num_classes={cfg['num_classes']}")
    return model.to(device).eval(), classes, cfg


# --------------------------------------------------------------------------- pretrained weights
def _hub_file(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def fetch_weights(weights_enum: Any) -> dict:
    """State dict of a torchvision ``Weights`` entry; offline, a CheckpointError saying where to put it."""
    target = _hub_file(weights_enum.url)
    try:
        return weights_enum.get_state_dict(progress=False, check_hash=False)
    except Exception as e:  # URLError, socket errors, a half-downloaded file
        raise CheckpointError(
            f"cannot get torchvision weights {weights_enum} ({type(e).__name__}: {e}). "
            f"This machine seems offline: download {weights_enum.url} elsewhere and place it at {target} "
            f"(torch.hub.get_dir()/checkpoints/), or set weights to a local checkpoint path or 'none'."
        ) from None


def _coco_weights(cfg: dict):
    from torchvision.models import detection as D

    arch, bb, norm = cfg["arch"], cfg["backbone"], cfg["norm"]
    if bb == "resnet50" and norm == "frozen_bn":
        return (D.MaskRCNN_ResNet50_FPN_Weights if arch == "maskrcnn" else D.FasterRCNN_ResNet50_FPN_Weights).COCO_V1
    if bb == "resnet50" and norm == "bn":
        return (D.MaskRCNN_ResNet50_FPN_V2_Weights if arch == "maskrcnn" else D.FasterRCNN_ResNet50_FPN_V2_Weights).COCO_V1
    if bb == "mobilenet_v3" and norm == "frozen_bn":
        # no Mask R-CNN mobilenet on COCO: the Faster R-CNN weights fill backbone, RPN and box head
        return D.FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1
    raise CheckpointError(f"no torchvision COCO weights for backbone={bb} norm={norm}; "
                          "use weights: imagenet, none or a checkpoint path")


def _imagenet_weights(cfg: dict):
    from torchvision import models as M

    return {"resnet50": M.ResNet50_Weights.IMAGENET1K_V1, "resnet18": M.ResNet18_Weights.IMAGENET1K_V1,
            "mobilenet_v3": M.MobileNet_V3_Large_Weights.IMAGENET1K_V1}[cfg["backbone"]]


def load_matching(model: nn.Module, state_dict: dict) -> dict:
    """Copy entries whose name and shape match; the rest (e.g. predictor heads) keep their init.

    Returns ``{"loaded": n, "skipped": [names with other shapes], "missing": n}``.
    """
    own = unwrap(model).state_dict()
    fit = {k: v for k, v in state_dict.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(k for k, v in state_dict.items() if k in own and own[k].shape != v.shape)
    unwrap(model).load_state_dict(fit, strict=False)
    return {"loaded": len(fit), "skipped": skipped, "missing": len(own) - len(fit)}


def load_weights(model: nn.Module, weights: str, config: dict) -> dict:
    """Initialise ``model`` from ``weights``: ``coco | imagenet | none | <checkpoint path>``.

    A checkpoint path always works offline, also with another class count (the
    predictor heads whose shapes differ are re-initialised). Returns a report dict.
    """
    cfg = full_config(config)
    if weights in (None, "", "none"):
        return {"weights": "none", "loaded": 0}
    if weights == "coco":
        sd = fetch_weights(_coco_weights(cfg))
        return {"weights": "coco", **load_matching(model, sd)}
    if weights == "imagenet":
        sd = fetch_weights(_imagenet_weights(cfg))
        prefix = "features." if cfg["backbone"] == "mobilenet_v3" else ""
        # torchvision's backbone extractors keep the classification net's layer names under backbone.body
        sd = {"backbone.body." + k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        if cfg["norm"] == "gn":  # BN statistics mean nothing to GroupNorm: load convolutions only
            convs = {n + ".weight" for n, m in unwrap(model).named_modules() if isinstance(m, nn.Conv2d)}
            sd = {k: v for k, v in sd.items() if k in convs}
        return {"weights": "imagenet", **load_matching(model, sd)}
    path = Path(weights)
    if not path.is_file():
        raise CheckpointError(f"weights: expected coco, imagenet, none or an existing checkpoint file; "
                              f"not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"weights file {path} is corrupt or unreadable: {e}") from None
    sd = (inference_weights(state) if "model" in state else state) if isinstance(state, dict) else None
    if not isinstance(sd, dict):
        raise CheckpointError(f"weights file {path} holds no state dict")
    report = load_matching(model, sd)
    if report["loaded"] == 0:
        raise CheckpointError(f"weights file {path}: no parameter fits this model ({cfg['arch']}/{cfg['backbone']})")
    return {"weights": str(path), **report}


def coco_person_model(device: Any = "cpu", **overrides) -> nn.Module:
    """torchvision's COCO Mask R-CNN R50-FPN in eval mode (person = COCO label 1).

    Offline without the weights file in torch's cache this raises a CheckpointError
    that names the file to download and where to place it.

    Usage::

        model = coco_person_model("cuda")
        out = model([img_chw_float01])[0]; people = out["labels"] == 1
    """
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_Weights, maskrcnn_resnet50_fpn

    w = MaskRCNN_ResNet50_FPN_Weights.COCO_V1
    sd = fetch_weights(w)
    model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91, **overrides)
    model.load_state_dict(sd)
    return model.to(device).eval()


COCO_PERSON_LABEL = 1
