"""COCO json -> torch Dataset and loaders for torchvision detection models.

Usage::

    from yeay_nb.data import CocoDetectionDataset, train_loader
    ds = CocoDetectionDataset("work/coco.json", split="train", masks=True, hflip=True)
    image, target = ds[0]   # uint8 CHW tensor; target: boxes (xyxy), labels, masks, image_id
    loader = train_loader(ds, ims_per_gpu=2, num_workers=4)   # infinite, aspect-grouped batches
    images, targets, n_failed = next(iter(loader))

Images are decoded in the loader workers (``torchvision.io.decode_image``, libjpeg-turbo)
and travel as uint8 (4x fewer bytes than float through shared and pinned memory); the
trainer converts them on the device. An image that fails to decode is skipped and
counted (the third element of each batch), never fatal.

``copy_paste`` (training only): with that probability an image gets the masked objects of
another training image pasted on top (Simple Copy-Paste, Ghiasi et al. CVPR 2021), scaled by a
random factor and placed at random; occluded masks and their boxes shrink, objects left with too
few pixels are dropped. Only objects with a segmentation are pasted, and none of the classes named
in ``copy_paste_exclude`` (e.g. ``["person"]``; on CCP that cost person mask AP: pasted garments
then cut holes in the photo's own person, whose mask includes its clothes). Objects of the classes
in ``copy_paste_unoccluded`` (e.g. ``["person"]``) keep their whole mask under pasted objects, as
a person keeps its silhouette under a garment laid on it. With ``copy_paste_rare_threshold`` the
image pasted from is drawn by its repeat factor (:meth:`CocoDetectionDataset.repeat_factors`) instead
of uniformly, so the objects of images with rare classes are pasted more often.

``color_jitter`` (training only): brightness, contrast and saturation each scaled by a random factor
in [1 - c, 1 + c] (``torchvision.transforms.v2.ColorJitter``, on the uint8 image after any paste);
boxes and masks are unchanged.

Image files: ``file_name`` when absolute; otherwise resolved against ``images_dir``
(argument), else the json's ``info.images_dir`` (relative to the json's folder), else
``<json folder>/images``.
"""
from __future__ import annotations

import itertools
import math
import random
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torch.utils.data import DataLoader, Dataset, Sampler

from .convert.coco import classes_of, load_coco
from .errors import AnnotationError


def resolve_images_dir(coco: dict, coco_json: Optional[Path], images_dir: Optional[str | Path] = None) -> Path:
    """Where relative ``file_name`` entries live (see module docstring for the order)."""
    base = Path(coco_json).resolve().parent if coco_json else Path.cwd()
    if images_dir:
        return Path(images_dir)
    info_dir = (coco.get("info") or {}).get("images_dir")
    if info_dir:
        p = Path(info_dir)
        return p if p.is_absolute() else base / p
    return base / "images"


def ann_to_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """An (h, w) uint8 mask from COCO polygons, uncompressed RLE or compressed RLE."""
    if isinstance(segmentation, list):  # polygons: one object may have several parts
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation.get("counts"), list):  # uncompressed RLE
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = dict(segmentation)
        if isinstance(rle["counts"], str):
            rle["counts"] = rle["counts"].encode("ascii")
    return mask_utils.decode(rle)


# an occluded object keeps its place only with at least this many visible pixels and this share of
# its own area (Ghiasi et al. drop fully covered objects; a sliver would give a degenerate box)
_MIN_VISIBLE_PIXELS = 16
_MIN_VISIBLE_FRACTION = 0.05


def boxes_from_masks(masks: np.ndarray) -> np.ndarray:
    """(n, 4) float32 xyxy boxes enclosing each (h, w) mask (pixel edges: a one-pixel mask at x=3
    gives x0 3, x1 4); all zeros for an empty mask."""
    n = len(masks)
    if n == 0:
        return np.zeros((0, 4), dtype=np.float32)
    rows, cols = masks.any(axis=2), masks.any(axis=1)  # (n, h), (n, w): one pass over the stack
    h, w = rows.shape[1], cols.shape[1]
    y0, y1 = rows.argmax(axis=1), h - rows[:, ::-1].argmax(axis=1)
    x0, x1 = cols.argmax(axis=1), w - cols[:, ::-1].argmax(axis=1)
    out = np.stack([x0, y0, x1, y1], axis=1).astype(np.float32)
    out[~rows.any(axis=1)] = 0
    return out


def _nearest(masks: np.ndarray, nh: int, nw: int) -> np.ndarray:
    """(m, sh, sw) uint8 masks resized to (m, nh, nw), nearest pixel centre (no float copy)."""
    sh, sw = masks.shape[1:]
    rows = np.minimum(((np.arange(nh) + 0.5) * sh / nh).astype(np.int64), sh - 1)
    cols = np.minimum(((np.arange(nw) + 0.5) * sw / nw).astype(np.int64), sw - 1)
    return masks[:, rows][:, :, cols]


def pasted_size(src_hw: tuple[int, int], scale: float) -> tuple[int, int]:
    """(height, width) of a source of ``src_hw`` pasted at ``scale`` (what :func:`copy_paste` uses)."""
    return max(1, round(src_hw[0] * scale)), max(1, round(src_hw[1] * scale))


def copy_paste(image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, masks: np.ndarray,
               has_mask: np.ndarray, src_image: torch.Tensor, src_labels: torch.Tensor, src_masks: np.ndarray,
               scale: float, offset: tuple[int, int], unoccluded: Optional[np.ndarray] = None,
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
    """Paste every object of the source (``src_masks``, (m, sh, sw)) onto ``image`` (uint8 CHW).

    The source is resized by ``scale`` (bilinear image, nearest masks) and its top-left corner put
    at ``offset`` = (x, y); the caller keeps it inside the image. The target's masks lose the pasted
    pixels and objects with a real mask (``has_mask``) get boxes from their masks; objects with
    less than 16 pixels or 5% of their area left are dropped. Box-only objects keep their box, and so
    do the objects flagged in ``unoccluded`` (n bools), whose masks keep the pasted pixels too: a
    person wears what lands on them.
    Pasted objects under 16 pixels after the resize are left out. Returns the new image, boxes,
    labels, masks and has_mask (pasted objects appended). The inputs are not modified."""
    import torch.nn.functional as F

    h, w = image.shape[-2:]
    nh, nw = pasted_size(src_image.shape[-2:], scale)
    x0, y0 = offset
    if not (0 <= x0 and 0 <= y0 and x0 + nw <= w and y0 + nh <= h):
        raise ValueError(f"copy_paste: a {nw}x{nh} paste at {offset} does not fit a {w}x{h} image")
    small_masks = _nearest(src_masks, nh, nw)
    keep_src = np.count_nonzero(small_masks.reshape(len(small_masks), -1), axis=1) >= _MIN_VISIBLE_PIXELS
    small_masks, src_labels = small_masks[keep_src], src_labels[torch.from_numpy(keep_src)]
    if not len(small_masks):
        return image, boxes, labels, masks, has_mask
    # everything below touches only the pasted window: outside it nothing changes
    win = (slice(y0, y0 + nh), slice(x0, x0 + nw))
    union = small_masks.any(axis=0)
    small = F.interpolate(src_image[None].float(), size=(nh, nw), mode="bilinear", align_corners=False)[0]
    image = image.clone()
    image[:, win[0], win[1]] = torch.where(torch.from_numpy(union), small.round().clamp(0, 255).to(torch.uint8),
                                           image[:, win[0], win[1]])
    n = len(masks)
    lost = np.count_nonzero((masks[:, win[0], win[1]] & union).reshape(n, -1), axis=1)
    before = np.count_nonzero(masks.reshape(n, -1), axis=1)
    after = before - lost
    occluded = np.ones(n, dtype=bool) if unoccluded is None else ~np.asarray(unoccluded, dtype=bool)
    masks = masks.copy()
    if occluded.all():  # a view: no copy of the (n, nh, nw) window
        masks[:, win[0], win[1]] &= ~union
    else:
        masks[occluded, win[0], win[1]] &= ~union
    visible = ~has_mask | ~occluded | ((after >= _MIN_VISIBLE_PIXELS) & (after >= _MIN_VISIBLE_FRACTION * before))
    boxes = boxes.clone()
    shrunk = has_mask & occluded
    if shrunk.any():
        boxes[torch.from_numpy(shrunk)] = torch.from_numpy(boxes_from_masks(masks[shrunk]))
    pasted = np.zeros((len(small_masks), h, w), dtype=np.uint8)
    pasted[:, win[0], win[1]] = small_masks
    pasted_boxes = boxes_from_masks(small_masks) + np.array([x0, y0, x0, y0], dtype=np.float32)
    keep = torch.from_numpy(visible)
    boxes = torch.cat([boxes[keep], torch.from_numpy(pasted_boxes)])
    labels = torch.cat([labels[keep], src_labels])
    masks = np.concatenate([masks[visible], pasted])
    has_mask = np.concatenate([has_mask[visible], np.ones(len(pasted), dtype=bool)])
    return image, boxes, labels, masks, has_mask


class CocoDetectionDataset(Dataset):
    """Images of one split of a COCO json with their targets, in torchvision's format.

    ``split`` selects ``images[i]["split"]`` ("train"/"val"; images without the field are
    "train"; ``None`` takes all). ``drop_empty`` leaves out images without a usable box
    (what Detectron does for training). Raises AnnotationError when nothing is left.
    """

    def __init__(self, coco_json: str | Path | dict, split: Optional[str] = "train", *,
                 images_dir: Optional[str | Path] = None, masks: bool = False, hflip: bool = False,
                 drop_empty: bool = False, copy_paste: float = 0.0, copy_paste_exclude: Sequence[str] = (),
                 copy_paste_unoccluded: Sequence[str] = (), copy_paste_rare_threshold: Optional[float] = None,
                 color_jitter: float = 0.0):
        if isinstance(coco_json, dict):
            coco, self.coco_json = coco_json, None
        else:
            self.coco_json = Path(coco_json)
            coco = load_coco(self.coco_json)
        where = str(self.coco_json or "<dict>")
        for key in ("images", "annotations", "categories"):
            if not isinstance(coco.get(key), list):
                raise AnnotationError(f"not a COCO instances json: '{key}' missing or not a list", file=where)
        self.classes = classes_of(coco)
        self.images_dir = resolve_images_dir(coco, self.coco_json, images_dir)
        self.split, self.masks, self.hflip = split, masks, hflip
        if not 0.0 <= copy_paste <= 1.0:
            raise ValueError(f"copy_paste must be a probability in [0, 1], got {copy_paste}")
        self.copy_paste = copy_paste
        if not 0.0 <= color_jitter < 1.0:
            raise ValueError(f"color_jitter must be in [0, 1), got {color_jitter}")
        self._jitter = None
        if color_jitter:
            from torchvision.transforms import v2

            self._jitter = v2.ColorJitter(brightness=color_jitter, contrast=color_jitter, saturation=color_jitter)
        for key, names in (("copy_paste_exclude", copy_paste_exclude), ("copy_paste_unoccluded", copy_paste_unoccluded)):
            unknown = sorted(set(names) - set(self.classes[1:]))
            if unknown:
                raise AnnotationError(f"{key} names {unknown}, not categories of this json "
                                      f"({', '.join(self.classes[1:])})", file=where)
        self._never_pasted = {self.classes.index(c) for c in copy_paste_exclude}
        self._never_occluded = {self.classes.index(c) for c in copy_paste_unoccluded}
        n_classes = len(self.classes)
        by_image: dict[Any, list] = defaultdict(list)
        for i, a in enumerate(coco["annotations"]):
            if not 0 < a.get("category_id", -1) < n_classes:
                raise AnnotationError(f"category_id {a.get('category_id')!r} outside 1..{n_classes - 1}",
                                      file=where, record=f"annotations[{i}]")
            if a.get("iscrowd", 0):
                continue  # crowd regions are ignored in training, as torchvision's references do
            x, y, w, h = a["bbox"]
            if w < 1 or h < 1:
                continue  # degenerate boxes make the box regression loss infinite
            by_image[a["image_id"]].append(a)
        self.records = []
        for im in coco["images"]:
            if split is not None and im.get("split", "train") != split:
                continue
            anns = by_image.get(im["id"], [])
            if drop_empty and not anns:
                continue
            self.records.append((im, anns))
        if not self.records:
            raise AnnotationError(f"no images in split {split!r}" + (" with annotations" if drop_empty else ""),
                                  file=where)
        self.coco = coco
        # cumulative weights of the image pasted from (None: uniform)
        self._paste_cum_weights = (list(itertools.accumulate(self.repeat_factors(copy_paste_rare_threshold)))
                                   if copy_paste_rare_threshold else None)

    def __len__(self) -> int:
        return len(self.records)

    def image_path(self, index: int) -> Path:
        p = Path(self.records[index][0]["file_name"])
        return p if p.is_absolute() else self.images_dir / p

    def repeat_factors(self, threshold: float) -> list[float]:
        """Repeat-factor sampling (Gupta et al., LVIS 2019): a class in a fraction ``f`` of the
        images gets ``max(1, sqrt(threshold / f))``; an image repeats by its rarest class's factor.
        Rare classes are then seen ~``sqrt(threshold / f)`` times as often per epoch."""
        per_image = [{a["category_id"] for a in anns} for _, anns in self.records]
        counts = Counter(c for cats in per_image for c in cats)  # images per class
        n = len(per_image)
        factor = {c: max(1.0, math.sqrt(threshold / (k / n))) for c, k in counts.items()}
        return [max((factor[c] for c in cats), default=1.0) for cats in per_image]

    def class_counts(self) -> list[int]:
        """Training boxes per label (index 0, the background, is 0), from the json."""
        counts = [0] * len(self.classes)
        for _, anns in self.records:
            for a in anns:
                counts[a["category_id"]] += 1
        return counts

    def aspect_ratios(self) -> list[float]:
        """width / height per image, from the json (no decoding)."""
        return [im.get("width", 1) / max(im.get("height", 1), 1) for im, _ in self.records]

    def read_image(self, index: int) -> Optional[torch.Tensor]:
        """uint8 (3, h, w) tensor, or None when the file is missing or does not decode."""
        path = str(self.image_path(index))
        try:
            from torchvision.io import ImageReadMode, decode_image, read_file
        except ImportError:  # torchvision.io's codecs are deprecated from 0.29 on: OpenCV does the same job
            import cv2

            bgr = cv2.imread(path, cv2.IMREAD_COLOR)
            return None if bgr is None else torch.from_numpy(bgr[:, :, ::-1].copy()).permute(2, 0, 1).contiguous()
        try:
            return decode_image(read_file(path), mode=ImageReadMode.RGB)
        except (RuntimeError, OSError, ValueError):
            return None

    def __getitem__(self, index: int):
        """(image uint8 CHW, target dict) or None when the image fails to decode."""
        im, anns = self.records[index]
        image = self.read_image(index)
        if image is None:
            return None
        h, w = image.shape[-2:]
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]  # xywh -> xyxy
        boxes[:, 0::2].clamp_(0, w)
        boxes[:, 1::2].clamp_(0, h)
        target = {
            "boxes": boxes,
            "labels": torch.tensor([a["category_id"] for a in anns], dtype=torch.int64),
            "image_id": im["id"],
        }
        pasting = self.copy_paste > 0 and len(self.records) > 1 and random.random() < self.copy_paste
        if self.masks or pasting:
            has_mask = np.array(["segmentation" in a for a in anns], dtype=bool)
            m = np.zeros((len(anns), h, w), dtype=np.uint8)
            for j, a in enumerate(anns):
                if has_mask[j]:
                    m[j] = ann_to_mask(a["segmentation"], h, w)
                else:  # a box without a mask: use the filled box so the mask head still has a target
                    x0, y0, x1, y1 = boxes[j].round().int().tolist()
                    m[j, y0:y1, x0:x1] = 1
            if pasting:
                image, boxes, target["labels"], m = self._paste_another(index, image, boxes, target["labels"], m,
                                                                        has_mask)
                target["boxes"] = boxes
            if self.masks:
                target["masks"] = torch.from_numpy(m)
        if self._jitter is not None:
            image = self._jitter(image)
        if self.hflip and random.random() < 0.5:
            image = image.flip(-1)
            target["boxes"] = torch.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], dim=1)
            if "masks" in target:
                target["masks"] = target["masks"].flip(-1)
        return image, target


    def _paste_source(self, index: int) -> int:
        """The image whose objects image ``index`` gets: any other, uniformly or by repeat factor."""
        if self._paste_cum_weights is None:
            src = random.randrange(len(self.records) - 1)
            return src + (src >= index)  # never the image itself
        src = index
        while src == index:  # len(records) > 1 and every weight >= 1: a few draws at most, typically one
            src = random.choices(range(len(self.records)), cum_weights=self._paste_cum_weights)[0]
        return src

    def _paste_another(self, index: int, image, boxes, labels, masks, has_mask):
        """Copy-paste: the masked objects of another random training image, scaled by U(0.3, 1) of
        the largest fit and placed at random (the pasted block stays inside the image)."""
        src = self._paste_source(index)
        src_anns = [a for a in self.records[src][1] if "segmentation" in a and a["category_id"] not in self._never_pasted]
        src_image = self.read_image(src) if src_anns else None
        if src_image is None:  # nothing to paste, or it does not decode: the image as it was
            return image, boxes, labels, masks
        h, w = image.shape[-2:]
        sh, sw = src_image.shape[-2:]
        src_masks = np.stack([ann_to_mask(a["segmentation"], sh, sw) for a in src_anns])
        scale = random.uniform(0.3, 1.0) * min(h / sh, w / sw)
        nh, nw = pasted_size((sh, sw), scale)
        offset = (random.randint(0, max(0, w - nw)), random.randint(0, max(0, h - nh)))
        src_labels = torch.tensor([a["category_id"] for a in src_anns], dtype=torch.int64)
        unoccluded = np.isin(labels.numpy(), list(self._never_occluded))
        image, boxes, labels, masks, _ = copy_paste(image, boxes, labels, masks, has_mask, src_image, src_labels,
                                                    src_masks, scale, offset, unoccluded)
        return image, boxes, labels, masks


def collate(batch: list) -> tuple[list[torch.Tensor], list[dict], int]:
    """Lists of images and targets, plus how many items failed to decode (dropped)."""
    ok = [b for b in batch if b is not None]
    return [b[0] for b in ok], [b[1] for b in ok], len(batch) - len(ok)


class GroupedInfiniteBatchSampler(Sampler):
    """Endless batches for one process: shuffled per epoch, split across ranks,
    grouped by aspect ratio (landscape vs portrait) so padded batches waste little.

    Every rank shuffles with the same seed and takes every ``world_size``-th index,
    so ranks see disjoint images, as DistributedSampler does.
    """

    def __init__(self, aspect_ratios: list[float], batch_size: int, *, rank: int = 0, world_size: int = 1,
                 seed: int = 0, repeat_factors: Optional[list[float]] = None):
        self.groups = [0 if r >= 1.0 else 1 for r in aspect_ratios]
        self.batch_size, self.rank, self.world_size, self.seed = batch_size, rank, world_size, seed
        if repeat_factors is not None and len(repeat_factors) != len(self.groups):
            raise ValueError(f"{len(repeat_factors)} repeat factors for {len(self.groups)} images")
        self.repeat_factors = repeat_factors

    def _epoch_indices(self, g: torch.Generator) -> list[int]:
        """Every image once, or with repeat factors ``r``: ``floor(r)`` times plus once more with
        probability ``r - floor(r)`` (stochastic rounding, drawn anew each epoch)."""
        if self.repeat_factors is None:
            return list(range(len(self.groups)))
        r = torch.tensor(self.repeat_factors, dtype=torch.float64)
        reps = (r.floor() + (torch.rand(len(r), generator=g, dtype=torch.float64) < r - r.floor())).long()
        return torch.repeat_interleave(torch.arange(len(r)), reps).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        buckets: dict[int, list[int]] = {0: [], 1: []}
        epoch = 0
        while True:
            g = torch.Generator().manual_seed(self.seed + epoch)
            indices = self._epoch_indices(g)
            n = len(indices)
            order = [indices[i] for i in torch.randperm(n, generator=g).tolist()]
            # pad so each rank gets the same count even when n < world_size
            order = (order * math.ceil(self.world_size / n + 1))[: max(n, self.world_size)]
            for idx in order[self.rank::self.world_size]:
                bucket = buckets[self.groups[idx]]
                bucket.append(idx)
                if len(bucket) == self.batch_size:
                    yield list(bucket)
                    bucket.clear()
            epoch += 1

    def __len__(self) -> int:  # endless; DataLoader only needs this for len(loader)
        return 2**62


def train_loader(dataset: CocoDetectionDataset, ims_per_gpu: int, *, num_workers: int = 2, rank: int = 0,
                 world_size: int = 1, seed: int = 0, pin_memory: bool = False,
                 repeat_factors: Optional[list[float]] = None) -> DataLoader:
    """Endless loader of aspect-grouped batches for one process (see module docstring)."""
    sampler = GroupedInfiniteBatchSampler(dataset.aspect_ratios(), ims_per_gpu, rank=rank,
                                          world_size=world_size, seed=seed, repeat_factors=repeat_factors)
    extra = {"persistent_workers": True, "prefetch_factor": 4} if num_workers > 0 else {}
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, collate_fn=collate,
                      pin_memory=pin_memory, **extra)


def eval_loader(dataset: CocoDetectionDataset, batch_size: int = 4, *, num_workers: int = 2,
                pin_memory: bool = False) -> DataLoader:
    """One ordered pass over the dataset (no flip), for prediction."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      collate_fn=collate, pin_memory=pin_memory)


def to_device(images: list[torch.Tensor], targets: list[dict], device: torch.device) -> tuple[list, list]:
    """uint8 images -> float [0, 1] on ``device``; target tensors moved alongside."""
    nb = device.type == "cuda"
    images = [im.to(device, non_blocking=nb).float().div_(255) for im in images]
    targets = [{k: (v.to(device, non_blocking=nb) if torch.is_tensor(v) else v) for k, v in t.items()}
               for t in targets]
    return images, targets
