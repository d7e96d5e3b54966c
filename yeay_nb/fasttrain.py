"""Training-mode RPN and ROI heads that work on the whole batch at once (``train.batched_heads``).

torchvision computes R-CNN training targets image by image: anchor and proposal matching,
positive/negative sampling (``torch.where`` + ``randperm``), gathering and the losses each
run once per image, and most steps read a size back from the GPU. A Mask R-CNN R50-FPN step
at 16 images issues ~5,100 forward ops and ~200 synchronising ones (``nonzero``, ``item``,
``nms``), plus ~6 host-to-device copies of Python numbers per image in its transform; every
synchronisation drains the GPU queue, so the host's Python time adds to the GPU's instead of
overlapping it (count them: ``benchmarks/bench_train_ops.py``).

Here the same targets and losses are computed as padded B×N tensors:

- **Matching** (:func:`match`): one batched IoU for all images (padded ground truth gets IoU
  -1), Detectron's thresholds and low-quality matches as torchvision's ``Matcher``.
- **Sampling** (:func:`sample`): a uniformly random subset of at most ``per_image`` candidates
  with at most ``fraction`` positives per image, drawn with random keys and ``topk`` instead
  of ``randperm`` over ``nonzero`` sets: the same distribution as torchvision's
  ``BalancedPositiveNegativeSampler``, no host round trip.
- **Losses** over all anchors with the unsampled ones masked out; the same normalisations.
- Host synchronisations left per step: the RPN's NMS per image (its output size is data
  dependent), one to size the sampled ROIs, one for the degenerate-box check of the whole
  batch (torchvision: one per image) and one per RoIAlign pooler call (:class:`BatchedRoIAlign`;
  torchvision: one per FPN level).

Same modules, parameters and checkpoints as torchvision's (:func:`install` only swaps the
classes of the model, ``model.rpn``, ``model.roi_heads`` and its RoIAlign poolers for
subclasses; eval mode is torchvision's code, apart from the poolers, which give the same
values). With every candidate sampled the losses and gradients equal torchvision's
(``tests/test_fasttrain.py``).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torchvision.models.detection import FasterRCNN, MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import RoIHeads, project_masks_on_boxes
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.ops import MultiScaleRoIAlign, roi_align

from .fastpath import filter_proposals, rpn_outputs

try:  # torchvision's own pooler helpers (private, present from 0.11 to 0.29 at least)
    from torchvision.ops.poolers import _convert_to_roi_format, _filter_input, _setup_scales
except ImportError:  # pragma: no cover
    _convert_to_roi_format = _filter_input = _setup_scales = None

BELOW, BETWEEN = -1, -2  # torchvision's Matcher.BELOW_LOW_THRESHOLD / BETWEEN_THRESHOLDS


_last_padded: list = [None, None, None]  # targets list, device, pad_targets' result: the RPN's, for the ROI heads


def pad_targets(targets: list[dict], device: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ground truth as B×G tensors: boxes (padding: a unit box, so encodings stay finite),
    labels (padding 0) and a validity mask. G is the largest count in the batch (at least 1).
    Built from device tensors only (a tensor made from Python numbers would be a synchronising copy).
    The RPN and the ROI heads of one step get the same ``targets`` list: the second call returns the
    first one's tensors (~4 ops an image saved; the list is held, so its ``is`` cannot be a new one)."""
    if _last_padded[0] is targets and _last_padded[1] == device:
        return _last_padded[2]
    out = _pad_targets(targets, device)
    _last_padded[:] = [targets, device, out]
    return out


def _pad_targets(targets: list[dict], device: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    from torch.nn.utils.rnn import pad_sequence

    g = max([len(t["boxes"]) for t in targets] + [1])
    boxes = pad_sequence([t["boxes"].float() for t in targets], batch_first=True)
    labels = pad_sequence([t["labels"] for t in targets], batch_first=True)
    if boxes.shape[1] < g:  # no ground truth anywhere in the batch
        boxes, labels = F.pad(boxes, (0, 0, 0, g - boxes.shape[1])), F.pad(labels, (0, g - labels.shape[1]))
    valid = labels > 0  # class ids of real boxes start at 1
    boxes = torch.cat([boxes[..., :2], torch.where(valid[..., None], boxes[..., 2:], 1.0)], dim=-1)
    return boxes.to(device), labels.to(device), valid.to(device)


def batched_iou(gt: torch.Tensor, boxes: torch.Tensor, max_elements: int = 1 << 26) -> torch.Tensor:
    """IoU of B×G×4 ``gt`` against B×N×4 ``boxes`` (torchvision's ``box_iou`` per image): B×G×N.
    Its temporaries take ~6 floats per output: above ``max_elements`` outputs (many boxes on
    large images) it goes a few images at a time."""
    b, g, n = gt.shape[0], gt.shape[1], boxes.shape[1]
    if b > 1 and b * g * n > max_elements:
        step = max(1, max_elements // max(g * n, 1))
        return torch.cat([batched_iou(gt[i:i + step], boxes[i:i + step], max_elements) for i in range(0, b, step)])
    area_g = (gt[..., 2] - gt[..., 0]) * (gt[..., 3] - gt[..., 1])
    area_b = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    lt = torch.max(gt[:, :, None, :2], boxes[:, None, :, :2])
    rb = torch.min(gt[:, :, None, 2:], boxes[:, None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area_g[:, :, None] + area_b[:, None, :] - inter)


def match(iou: torch.Tensor, gt_valid: torch.Tensor, high: float, low: float,
          allow_low_quality: bool) -> torch.Tensor:
    """torchvision's ``Matcher`` for B×G×N IoUs: B×N indices of the matched ground truth, or
    ``BELOW`` (-1, background) / ``BETWEEN`` (-2, ignored). Images without ground truth: all -1."""
    iou = iou.masked_fill(~gt_valid[:, :, None], -1.0)
    vals, best = iou.max(dim=1)
    matches = torch.where(vals < low, BELOW, torch.where(vals < high, BETWEEN, best))
    if allow_low_quality:
        # each ground truth also claims the candidates it overlaps most (ties included), as
        # Matcher.set_low_quality_matches_ does, even where that IoU is below ``low``
        highest = iou.max(dim=2, keepdim=True).values
        claimed = ((iou == highest) & gt_valid[:, :, None]).any(dim=1)
        matches = torch.where(claimed, best, matches)
    return matches


def sample(positive: torch.Tensor, negative: torch.Tensor, per_image: int, fraction: float,
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``BalancedPositiveNegativeSampler`` for B×N candidate masks, without leaving the GPU.

    Takes ``min(#positive, int(per_image * fraction))`` positives and fills up to ``per_image``
    with negatives, each a uniformly random subset. Returns ``(pos_idx, n_pos, neg_idx, n_neg)``:
    B×k index tensors (random order) whose first ``n_pos[i]`` / ``n_neg[i]`` entries are image
    i's picks.
    """
    n = positive.shape[1]
    keys = torch.rand(positive.shape, device=positive.device)
    cap = int(per_image * fraction)
    n_pos = positive.sum(1).clamp(max=cap)
    n_neg = torch.minimum(per_image - n_pos, negative.sum(1))
    # the candidates with the largest random keys are a uniform random subset of them
    pos_idx = torch.where(positive, keys, -1.0).topk(min(cap, n), dim=1).indices
    neg_idx = torch.where(negative, keys, -1.0).topk(min(per_image, n), dim=1).indices
    return pos_idx, n_pos, neg_idx, n_neg


def flat_picks(pos_idx: torch.Tensor, n_pos: torch.Tensor, neg_idx: torch.Tensor, n_neg: torch.Tensor, n: int,
               n_pos_h: list[int], n_neg_h: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The sampled ROIs as indices into the B·N flattened candidates: ``flat`` image by image, each
    image's positives first (``cat`` over images of ``(pos_i, neg_i)``), and ``flat_pos``, the positives
    alone in the same order. ``n_pos_h`` / ``n_neg_h`` are the counts already read to the host.

    One scatter each, into a slot per pick plus a spare slot that the unused entries of the padded
    index tensors all write to: a handful of ops for the batch, where slicing per image took ~6 ops
    an image (~100 at 16 images, each a launch and host time in a host-bound forward), and no
    synchronisation (a boolean index would be one)."""
    b, kp = pos_idx.shape
    kn = neg_idx.shape[1]
    device = pos_idx.device
    offsets = torch.arange(b, device=device)[:, None] * n
    src_pos, src_neg = pos_idx + offsets, neg_idx + offsets
    col_pos, col_neg = torch.arange(kp, device=device)[None, :], torch.arange(kn, device=device)[None, :]
    take_pos, take_neg = col_pos < n_pos[:, None], col_neg < n_neg[:, None]
    total_pos, total = sum(n_pos_h), sum(n_pos_h) + sum(n_neg_h)
    count = n_pos + n_neg
    start = torch.cumsum(count, 0) - count  # image i's first slot in ``flat``
    dest = torch.cat([torch.where(take_pos, start[:, None] + col_pos, total),
                      torch.where(take_neg, (start + n_pos)[:, None] + col_neg, total)], dim=1)
    flat = src_pos.new_empty(total + 1).scatter_(0, dest.reshape(-1), torch.cat([src_pos, src_neg], 1).reshape(-1))
    start_pos = torch.cumsum(n_pos, 0) - n_pos
    dest_pos = torch.where(take_pos, start_pos[:, None] + col_pos, total_pos)
    flat_pos = src_pos.new_empty(total_pos + 1).scatter_(0, dest_pos.reshape(-1), src_pos.reshape(-1))
    return flat[:total], flat_pos[:total_pos]


def picked(idx: torch.Tensor, count: torch.Tensor, n: int) -> torch.Tensor:
    """B×n mask of the first ``count[i]`` entries of ``idx[i]`` (see :func:`sample`)."""
    take = torch.arange(idx.shape[1], device=idx.device)[None, :] < count[:, None]
    return torch.zeros((idx.shape[0], n), dtype=torch.bool, device=idx.device).scatter(1, idx, take)


class BatchedRPN(RegionProposalNetwork):
    """torchvision's RPN; in training the anchor targets, sampling and losses are batched."""

    def forward(self, images, features: dict, targets: Optional[list[dict]] = None):
        if not self.training or targets is None:
            return super().forward(images, features, targets)
        objectness, deltas, anchors, per_level, proposals = rpn_outputs(self, images, features)
        boxes = filter_proposals(self, proposals, objectness.detach(), images.image_sizes, per_level,
                                 mark_invalid=True, padded=True)
        return boxes, self.losses(objectness, deltas, anchors[0], targets)

    def losses(self, objectness: torch.Tensor, deltas: torch.Tensor, anchors: torch.Tensor,
               targets: list[dict]) -> dict:
        """``loss_objectness`` and ``loss_rpn_box_reg`` for B×A logits and B×A×4 deltas; every
        image of a batch has the same A×4 ``anchors`` (one padded size)."""
        gt, _, gt_valid = pad_targets(targets, anchors.device)
        b, a = objectness.shape
        matches = match(batched_iou(gt, anchors.expand(b, -1, -1)), gt_valid, self.proposal_matcher.high_threshold,
                        self.proposal_matcher.low_threshold, self.proposal_matcher.allow_low_quality_matches)
        sampler = self.fg_bg_sampler
        pos_idx, n_pos, neg_idx, n_neg = sample(matches >= 0, matches == BELOW, sampler.batch_size_per_image,
                                                sampler.positive_fraction)
        pos, neg = picked(pos_idx, n_pos, a), picked(neg_idx, n_neg, a)
        n_sampled = (n_pos + n_neg).sum()
        matched_gt = gt.gather(1, matches.clamp(min=0)[..., None].expand(-1, -1, 4))
        targets_reg = self.box_coder.encode_single(matched_gt.reshape(-1, 4), anchors.repeat(b, 1))
        box = F.smooth_l1_loss(deltas.reshape(-1, 4), targets_reg, beta=1 / 9, reduction="none").sum(1)
        labels = (matches >= 0).to(objectness.dtype)
        obj = F.binary_cross_entropy_with_logits(objectness, labels, reduction="none")
        zero = torch.zeros((), dtype=box.dtype, device=box.device)
        return {"loss_objectness": torch.where(pos | neg, obj, zero).sum() / n_sampled,
                "loss_rpn_box_reg": torch.where(pos.reshape(-1), box, zero).sum() / n_sampled}


class BatchedRoIHeads(RoIHeads):
    """torchvision's ROI heads; in training the proposal targets, sampling and losses are batched."""

    def forward(self, features: dict, proposals: list, image_shapes: list, targets: Optional[list[dict]] = None):
        if not self.training or targets is None or self.has_keypoint():
            if torch.is_tensor(proposals):  # BatchedRPN's padded B×L×4 training proposals
                proposals = [p[p[:, 0] >= 0] for p in proposals]
            return super().forward(features, proposals, image_shapes, targets)
        # candidates: each image's proposals (padded with -1 boxes; real ones are clipped to >= 0, and
        # BatchedRPN marks the too-small ones -1 too; it pads them to B×L×4 already) followed by its
        # ground-truth boxes
        padded = (proposals if torch.is_tensor(proposals)
                  else torch.nn.utils.rnn.pad_sequence(proposals, batch_first=True, padding_value=-1.0))
        device = padded.device
        gt, gt_labels, gt_valid = pad_targets(targets, device)
        b = len(padded)
        cand = torch.cat([padded, gt], dim=1)
        cand_valid = torch.cat([padded[..., 0] >= 0, gt_valid], dim=1)
        n = cand.shape[1]
        matcher = self.proposal_matcher
        matches = match(batched_iou(gt, cand), gt_valid, matcher.high_threshold, matcher.low_threshold,
                        matcher.allow_low_quality_matches)
        labels = torch.where(matches >= 0, gt_labels.gather(1, matches.clamp(min=0)), 0)
        sampler = self.fg_bg_sampler
        pos_idx, n_pos, neg_idx, n_neg = sample((matches >= 0) & cand_valid, (matches == BELOW) & cand_valid,
                                                sampler.batch_size_per_image, sampler.positive_fraction)
        # the one host read of the step here: how many ROIs each image contributes
        n_pos_h, n_neg_h = torch.stack([n_pos, n_neg]).tolist()
        flat, pos_flat = flat_picks(pos_idx, n_pos, neg_idx, n_neg, n, n_pos_h, n_neg_h)
        per_image = [p + q for p, q in zip(n_pos_h, n_neg_h)]
        rois = cand.reshape(-1, 4)[flat]
        roi_labels = labels.reshape(-1)[flat]
        roi_gt = gt.reshape(-1, 4)[(matches.clamp(min=0) + torch.arange(b, device=device)[:, None] * gt.shape[1])
                                   .reshape(-1)[flat]]
        x = self.box_head(_pool(self.box_roi_pool, features, rois, flat // n, per_image, image_shapes))
        class_logits, box_regression = self.box_predictor(x)
        losses = self.box_losses(class_logits, box_regression, roi_labels,
                                 self.box_coder.encode_single(roi_gt, rois))
        if self.has_mask():
            mask_rois = cand.reshape(-1, 4)[pos_flat]
            x = self.mask_predictor(self.mask_head(_pool(self.mask_roi_pool, features, mask_rois, pos_flat // n,
                                                         n_pos_h, image_shapes)))
            gt_index = matches.reshape(-1)[pos_flat]
            mask_targets = [project_masks_on_boxes(t["masks"], r, i, x.shape[-1])
                            for t, r, i in zip(targets, mask_rois.split(n_pos_h), gt_index.split(n_pos_h))]
            losses["loss_mask"] = self.mask_loss(x, labels.reshape(-1)[pos_flat], torch.cat(mask_targets))
        _last_padded[:] = [None, None, None]  # the step's targets are not held past it
        return [], losses

    def box_losses(self, class_logits, box_regression, labels, regression_targets) -> dict:
        """torchvision's ``fastrcnn_loss`` without reading the positives' positions back; with a
        ``logit_adjustment`` (:func:`set_logit_adjustment`) the classifier's loss sees the adjusted logits."""
        n = class_logits.shape[0]
        per_class = box_regression.reshape(n, -1, 4)[torch.arange(n, device=labels.device), labels]
        box = F.smooth_l1_loss(per_class, regression_targets, beta=1 / 9, reduction="none").sum(1)
        box = torch.where(labels > 0, box, torch.zeros((), dtype=box.dtype, device=box.device))
        adjust = getattr(self, "logit_adjustment", None)
        if adjust is not None:
            class_logits = class_logits + adjust.to(class_logits.dtype)
        return {"loss_classifier": F.cross_entropy(class_logits, labels), "loss_box_reg": box.sum() / max(n, 1)}

    @staticmethod
    def mask_loss(mask_logits, labels, mask_targets):
        """torchvision's ``maskrcnn_loss`` on gathered per-ROI targets."""
        if mask_targets.numel() == 0:
            return mask_logits.sum() * 0
        logits = mask_logits[torch.arange(labels.shape[0], device=labels.device), labels]
        return F.binary_cross_entropy_with_logits(logits, mask_targets)


def _pool(pooler, features: dict, rois: torch.Tensor, image_index: torch.Tensor, per_image: list[int],
          image_shapes: list):
    """``pooler`` on the B-image batch's ``rois`` (K×4, image by image; ``image_index`` K) without
    splitting them into a list per image when it can take them whole."""
    if isinstance(pooler, BatchedRoIAlign) and _setup_scales is not None:
        return pooler.pool_rois(features, torch.cat([image_index[:, None].to(rois.dtype), rois], dim=1),
                                image_shapes)
    return pooler(features, list(rois.split(per_image)), image_shapes)


class BatchedRoIAlign(MultiScaleRoIAlign):
    """torchvision's ``MultiScaleRoIAlign`` with one host read per call: it finds each FPN level's
    ROIs with a ``nonzero`` per level (4 synchronisations per pooler call); here the ROIs are
    sorted by level once and the level sizes read back together. Same values, same gradients.
    :meth:`pool_rois` takes the batch's ROIs as one K×5 tensor: torchvision's list per image costs
    ~10 ops an image (its batch-index column and its level mapping, image by image)."""

    def forward(self, x: dict, boxes: list, image_shapes: list):
        if _setup_scales is None:  # pragma: no cover - a torchvision without its helpers: its own code
            return super().forward(x, boxes, image_shapes)
        return self.pool_rois(x, _convert_to_roi_format(boxes), image_shapes)

    def pool_rois(self, x: dict, rois: torch.Tensor, image_shapes: list):
        """The pooled features of K×5 ``rois`` (image index, x0, y0, x1, y1), as ``forward`` gives."""
        feats = _filter_input(x, self.featmap_names)
        if self.scales is None or self.map_levels is None:
            self.scales, self.map_levels = _setup_scales(feats, image_shapes, self.canonical_scale,
                                                         self.canonical_level)
        if len(feats) == 1:  # torchvision's one-level case
            return roi_align(feats[0], rois, output_size=self.output_size, spatial_scale=self.scales[0],
                             sampling_ratio=self.sampling_ratio)
        levels = self.map_levels([rois[:, 1:]])
        order = torch.argsort(levels, stable=True)
        counts = torch.bincount(levels, minlength=len(feats)).tolist()
        result = torch.zeros((len(rois), feats[0].shape[1], *self.output_size), dtype=feats[0].dtype,
                             device=feats[0].device)
        start = 0
        for feat, scale, n in zip(feats, self.scales, counts):
            if n:
                idx = order[start:start + n]
                pooled = roi_align(feat, rois[idx], output_size=self.output_size, spatial_scale=scale,
                                   sampling_ratio=self.sampling_ratio)
                result[idx] = pooled.to(result.dtype)  # autocast may give levels different dtypes
            start += n
        return result


class CachedAnchorGenerator(AnchorGenerator):
    """torchvision's anchors, made once per padded batch size, feature-map sizes, dtype and device,
    the only things they depend on: torchvision builds them again at every call, image by image
    (~120 ops a step at 16 images and five levels). Every image of a batch gets the same tensor
    (torchvision gives equal copies; no caller writes to them). A few dozen sizes at most occur in
    a run (train scales × landscape/portrait); the cache starts over if it ever holds 64."""

    def forward(self, image_list: ImageList, feature_maps: list) -> list:
        key = (tuple(image_list.tensors.shape[-2:]), tuple(tuple(f.shape[-2:]) for f in feature_maps),
               feature_maps[0].dtype, feature_maps[0].device)
        cache = self.__dict__.setdefault("_anchor_cache", {})  # not in __init__: install() swaps the class
        anchors = cache.get(key)
        if anchors is None:
            if len(cache) >= 64:
                cache.clear()
            one = ImageList(image_list.tensors[:1], list(image_list.image_sizes[:1]))
            anchors = cache[key] = super().forward(one, feature_maps)[0]
        return [anchors] * len(image_list.image_sizes)


class _OneTargetCheck:
    """``GeneralizedRCNN.forward`` in training with one degenerate-box check for the batch
    (torchvision: one ``.any()``, so one host synchronisation, per image); otherwise the same.
    With :func:`yeay_nb.cudagraphs.use_graphed_backbone` the backbone runs as a CUDA graph."""

    uses_graphed_backbone = True

    def forward(self, images, targets=None):
        if not self.training or targets is None:
            return super().forward(images, targets)
        for t in targets:
            if t["boxes"].dim() != 2 or t["boxes"].shape[-1] != 4:
                raise ValueError(f"Expected target boxes to be a tensor of shape [N, 4], got {t['boxes'].shape}.")
        images, targets = self.transform(images, targets)
        counts = [len(t["boxes"]) for t in targets]
        if sum(counts):
            boxes = torch.cat([t["boxes"] for t in targets])
            bad = (boxes[:, 2:] <= boxes[:, :2]).any(1)
            if bool(bad.any()):
                for i, (t, b) in enumerate(zip(targets, bad.split(counts))):
                    if b.any():
                        box = t["boxes"][int(b.nonzero()[0])].tolist()
                        raise ValueError("All bounding boxes should have positive height and width. "
                                         f"Found invalid box {box} for target at index {i}.")
        graphed = self.__dict__.get("graphed_backbone")  # yeay_nb.cudagraphs (training on CUDA only)
        features = (graphed or self.backbone)(images.tensors)
        if isinstance(features, torch.Tensor):
            features = OrderedDict([("0", features)])
        proposals, proposal_losses = self.rpn(images, features, targets)
        _, detector_losses = self.roi_heads(features, proposals, images.image_sizes, targets)
        return {**detector_losses, **proposal_losses}


class BatchedFasterRCNN(_OneTargetCheck, FasterRCNN):
    pass


class BatchedMaskRCNN(_OneTargetCheck, MaskRCNN):
    pass


_SWAPS = ((lambda m: m.rpn, RegionProposalNetwork, BatchedRPN), (lambda m: m.roi_heads, RoIHeads, BatchedRoIHeads),
          (lambda m: m, FasterRCNN, BatchedFasterRCNN), (lambda m: m, MaskRCNN, BatchedMaskRCNN),
          (lambda m: m.roi_heads.box_roi_pool, MultiScaleRoIAlign, BatchedRoIAlign),
          (lambda m: getattr(m.roi_heads, "mask_roi_pool", None), MultiScaleRoIAlign, BatchedRoIAlign),
          (lambda m: m.rpn.anchor_generator, AnchorGenerator, CachedAnchorGenerator))


def logit_adjustment(class_counts: list[int], tau: float) -> torch.Tensor:
    """Per-class offsets for the box classifier's training loss (logit adjustment, Menon et al. 2021;
    Balanced Softmax, Ren et al. 2020): ``tau * log(n_c / n_max)`` for each foreground class c with
    ``n_c`` training boxes (at least 1), 0 for the background (index 0). A rare class's logit is
    lowered while the loss is computed, so the classifier learns to raise it; at test time the plain
    logits rank rare classes higher than a model trained on the raw frequencies would."""
    if tau < 0:
        raise ValueError(f"tau must be >= 0, got {tau}")
    counts = torch.tensor([max(int(c), 1) for c in class_counts[1:]], dtype=torch.float64)
    offsets = torch.zeros(len(class_counts), dtype=torch.float64)
    if len(counts):
        offsets[1:] = tau * torch.log(counts / counts.max())
    return offsets.float()


def set_logit_adjustment(model: Any, offsets: Optional[torch.Tensor]) -> None:
    """Give ``model``'s batched ROI heads the classifier's training offsets (None: none). Training
    only and not part of the state dict: checkpoints and inference are unchanged. Call it once the
    model is on its device (the offsets go to the classifier's device here, not with ``model.to``)."""
    heads = model.roi_heads
    if not isinstance(heads, BatchedRoIHeads):
        raise TypeError("logit adjustment needs the batched ROI heads (train.batched_heads: true)")
    cls = heads.box_predictor.cls_score
    if offsets is not None and offsets.shape != (cls.out_features,):
        raise ValueError(f"{tuple(offsets.shape)} offsets for a classifier of {cls.out_features} classes")
    # on the classifier's device once: a host tensor would be copied over at every training step
    heads.logit_adjustment = None if offsets is None else offsets.to(cls.weight.device)


def install(model: Any) -> Any:
    """Make ``model`` compute its training targets batched (in place: only the classes of the model,
    its RPN and its ROI heads change, to subclasses; same parameters and state dict; eval mode is
    torchvision's code). Returns the model."""
    for part, plain, batched in _SWAPS:
        if type(part(model)) is plain:
            part(model).__class__ = batched
    return model


def uninstall(model: Any, transform: bool = False, norm: bool = False) -> Any:
    """Back to torchvision's own training code (for comparisons); with ``transform`` also its
    plain input transform (per-image device copies included; no separate test size); with ``norm``
    also plain ``nn.GroupNorm`` (float32 under autocast) instead of
    :class:`~yeay_nb.models.LowPrecisionGroupNorm`."""
    for part, plain, batched in _SWAPS:
        if type(part(model)) is batched:
            part(model).__class__ = plain
    if norm:
        from .models import use_low_precision_group_norm

        use_low_precision_group_norm(model, enable=False)
    if transform:
        from torchvision.models.detection.transform import GeneralizedRCNNTransform

        t = model.transform
        model.transform = GeneralizedRCNNTransform(t.min_size, t.max_size, t.image_mean, t.image_std)
    return model
