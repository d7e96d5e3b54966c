"""The batched training heads (yeay_nb.fasttrain) against torchvision's own training code."""
from __future__ import annotations

import copy

import pytest
import torch
from torchvision.models.detection._utils import Matcher
from torchvision.ops import box_iou

from yeay_nb import fasttrain
from yeay_nb.models import build_model


def random_boxes(n: int, w: int, h: int, gen: torch.Generator) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=gen) * torch.tensor([w * 0.7, h * 0.7])
    wh = torch.rand(n, 2, generator=gen) * torch.tensor([w * 0.5, h * 0.5]) + 6
    return torch.cat([xy, torch.minimum(xy + wh, torch.tensor([w - 1.0, h - 1.0]))], 1)


def batch(sizes, counts, num_classes: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    images, targets = [], []
    for (h, w), n in zip(sizes, counts):
        images.append(torch.rand(3, h, w, generator=gen))
        boxes = random_boxes(n, w, h, gen)
        masks = torch.zeros(n, h, w, dtype=torch.uint8)
        for j, (x0, y0, x1, y1) in enumerate(boxes.round().int().tolist()):
            masks[j, y0:y1, x0 + (x1 - x0) // 4:x1] = 1  # not the whole box: mask targets differ from boxes
        targets.append({"boxes": boxes, "labels": torch.randint(1, num_classes, (n,), generator=gen),
                        "masks": masks})
    return images, targets


def sample_everything(model) -> None:
    """Sampler limits above any candidate count: the sampled sets are then deterministic."""
    for s in (model.rpn.fg_bg_sampler, model.roi_heads.fg_bg_sampler):
        s.batch_size_per_image, s.positive_fraction = 10**7, 0.5


@pytest.mark.parametrize("norm,heads,ratios", [("bn", "light", None), ("gn", "standard", None),
                                               ("gn", "mlp", [0.25, 0.5, 1.0, 2.0, 4.0])])
def test_losses_and_gradients_equal_torchvisions_when_every_candidate_is_sampled(norm, heads, ratios):
    torch.manual_seed(0)
    cfg = {"arch": "maskrcnn", "backbone": "resnet18", "norm": norm, "heads": heads, "num_classes": 7,
           "min_size": 96, "max_size": 160, "rpn_pre_nms_top_n_train": 300, "rpn_post_nms_top_n_train": 3000,
           "anchor_ratios": ratios}
    # post-NMS top-N above the candidates: each image keeps what its NMS leaves, so counts differ (padding)
    ours = build_model(cfg)
    assert type(ours.rpn) is fasttrain.BatchedRPN and type(ours.roi_heads) is fasttrain.BatchedRoIHeads
    assert type(ours) is fasttrain.BatchedMaskRCNN and type(ours.roi_heads.mask_roi_pool) is fasttrain.BatchedRoIAlign
    theirs = fasttrain.uninstall(copy.deepcopy(ours))
    for m in (ours, theirs):
        sample_everything(m)
        m.rpn.min_size = 4.0  # some proposals fail the size test: they must be left out as torchvision does
        m.train()
    # sizes differ inside the batch (per-image clipping); one image without any ground truth
    images, targets = batch([(96, 128), (96, 144), (120, 96), (96, 128)], [3, 5, 1, 0], 7)
    out = {}
    for name, m in (("ours", ours), ("theirs", theirs)):
        m.zero_grad()
        losses = m([i.clone() for i in images], [{k: v.clone() for k, v in t.items()} for t in targets])
        sum(losses.values()).backward()
        out[name] = ({k: v.detach() for k, v in losses.items()},
                     {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None})
    (l1, g1), (l2, g2) = out["ours"], out["theirs"]
    assert set(l1) == set(l2) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg",
                                  "loss_mask"}
    for k in l1:
        assert l1[k].item() > 0, k  # a zero loss would make the comparison vacuous
        torch.testing.assert_close(l1[k], l2[k], rtol=1e-4, atol=1e-6, msg=k)
    assert set(g1) == set(g2)
    for n in g1:
        torch.testing.assert_close(g1[n], g2[n], rtol=2e-3, atol=1e-5, msg=n)


def test_default_sampling_draws_the_configured_counts_and_matches_in_expectation():
    """With torchvision's default sampler limits (random subsets) the losses agree on average."""
    torch.manual_seed(1)
    cfg = {"arch": "fasterrcnn", "backbone": "resnet18", "norm": "bn", "heads": "light", "num_classes": 5,
           "min_size": 96, "max_size": 160, "rpn_post_nms_top_n_train": 200, "box_batch_size_per_image": 64}
    ours = build_model(cfg).train()
    theirs = fasttrain.uninstall(copy.deepcopy(ours)).train()
    images, targets = batch([(96, 128)] * 3, [4, 2, 6], 5, seed=3)
    sums = {"ours": {}, "theirs": {}}
    with torch.no_grad():
        for name, m in (("ours", ours), ("theirs", theirs)):
            for _ in range(12):
                for k, v in m(images, targets).items():
                    sums[name][k] = sums[name].get(k, 0.0) + v.item() / 12
    for k in sums["ours"]:
        assert sums["ours"][k] == pytest.approx(sums["theirs"][k], rel=0.12), k


def test_sampler_takes_the_right_counts_without_repeats_and_uniformly():
    gen = torch.Generator().manual_seed(0)
    n = 40
    positive = torch.zeros(3, n, dtype=torch.bool)
    positive[0, :5] = True          # fewer positives than the cap
    positive[1, :30] = True         # more positives than the cap
    negative = ~positive
    negative[2, 10:] = False        # image 2: 10 negatives, no positive
    hits = torch.zeros(3, n)
    for _ in range(400):
        pos_idx, n_pos, neg_idx, n_neg = fasttrain.sample(positive, negative, per_image=16, fraction=0.25)
        assert n_pos.tolist() == [4, 4, 0] and n_neg.tolist() == [12, 10, 10]
        pos, neg = fasttrain.picked(pos_idx, n_pos, n), fasttrain.picked(neg_idx, n_neg, n)
        assert pos.sum(1).tolist() == [4, 4, 0] and neg.sum(1).tolist() == [12, 10, 10]  # no index twice
        assert not (pos & ~positive).any() and not (neg & ~negative).any()
        hits += (pos | neg).float()
    del gen
    # every candidate of a class is equally likely: image 1's 30 positives are each drawn 4/30 of
    # the time (400 draws: mean 53.3, sd ~6.8); image 0's 5 positives 4/5 of the time
    assert hits[1, :30].min() > 30 and hits[1, :30].max() < 80
    assert 280 < hits[0, :5].mean() < 360
    assert hits[2, :10].tolist() == [400.0] * 10 and hits[2, 10:].sum() == 0


@pytest.mark.parametrize("allow_low_quality", [True, False])
def test_match_equals_torchvisions_matcher_per_image(allow_low_quality):
    gen = torch.Generator().manual_seed(2)
    counts = [3, 1, 0, 5]
    g = max(counts)
    anchors = random_boxes(60, 100, 80, gen)
    gt = torch.tensor([0.0, 0.0, 1.0, 1.0]).repeat(len(counts), g, 1)
    valid = torch.zeros(len(counts), g, dtype=torch.bool)
    per_image = []
    for i, c in enumerate(counts):
        b = random_boxes(c, 100, 80, gen)
        if c >= 2:
            b[1] = anchors[7]  # an exact hit, and a tie for the low-quality rule
            b[0] = anchors[7] + torch.tensor([0.0, 0.0, 1.0, 1.0])
        gt[i, :c], valid[i, :c] = b, True
        per_image.append(b)
    iou = fasttrain.batched_iou(gt, anchors.expand(len(counts), -1, -1))
    chunked = fasttrain.batched_iou(gt, anchors.expand(len(counts), -1, -1), max_elements=2 * g * len(anchors))
    assert torch.equal(iou, chunked)  # two images at a time: the same IoUs
    matches = fasttrain.match(iou, valid, 0.7, 0.3, allow_low_quality)
    matcher = Matcher(0.7, 0.3, allow_low_quality_matches=allow_low_quality)
    for i, b in enumerate(per_image):
        if len(b) == 0:
            assert (matches[i] == fasttrain.BELOW).all()
            continue
        torch.testing.assert_close(iou[i, :len(b)], box_iou(b, anchors))
        assert matches[i].tolist() == matcher(box_iou(b, anchors)).tolist()


def test_install_keeps_parameters_and_eval_outputs():
    torch.manual_seed(3)
    m = build_model({"arch": "maskrcnn", "backbone": "resnet18", "norm": "bn", "heads": "light", "num_classes": 4,
                     "min_size": 96, "max_size": 160, "test_min_size": 96, "test_max_size": 160,
                     "box_score_thresh": 0.0}).eval()
    plain = fasttrain.uninstall(copy.deepcopy(m))
    assert list(m.state_dict()) == list(plain.state_dict())
    images, _ = batch([(96, 128), (96, 128)], [1, 1], 4)
    with torch.no_grad():
        a, b = m(images), plain(images)
    for x, y in zip(a, b):
        for k in ("boxes", "scores", "labels", "masks"):
            torch.testing.assert_close(x[k], y[k])


def test_train_transform_equals_torchvisions_without_its_per_image_device_copies():
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    from yeay_nb.models import TrainTestTransform

    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    ours = TrainTestTransform((96, 112, 128), 200, 128, 200, mean, std).train()
    theirs = GeneralizedRCNNTransform((96, 112, 128), 200, mean, std).train()
    images, targets = batch([(97, 131), (120, 88), (64, 100)], [3, 2, 0], 5, seed=4)
    for seed in range(4):  # the random train scale is drawn the same way
        out = []
        for t in (ours, theirs):
            torch.manual_seed(seed)
            out.append(t([i.clone() for i in images], [{k: v.clone() for k, v in x.items()} for x in targets]))
        (il1, t1), (il2, t2) = out
        assert il1.image_sizes == il2.image_sizes
        assert torch.equal(il1.tensors, il2.tensors)
        for a, b in zip(t1, t2):
            assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["masks"], b["masks"])
    assert len(ours._mean_std) == 1  # made once, reused for every image


@pytest.mark.parametrize("sizes,counts,groups", [
    ([(97, 131)] * 5, [3, 0, 2, 4, 1], 1),  # one photo size (CCP): one tensor for the whole batch
    ([(97, 131), (120, 88), (97, 131), (120, 88), (97, 131)], [3, 2, 0, 1, 2], 2),
])
def test_train_transform_groups_images_of_one_size_and_gives_torchvisions_batch(sizes, counts, groups, monkeypatch):
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    from yeay_nb.models import TrainTestTransform

    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    ours = TrainTestTransform((96, 112), 200, 128, 200, mean, std).train()
    theirs = GeneralizedRCNNTransform((96, 112), 200, mean, std).train()
    images, targets = batch(sizes, counts, 5, seed=3)
    targets[-1].pop("masks")  # a box-only image (e.g. a class without masks) beside the others
    calls = []
    interpolate = torch.nn.functional.interpolate
    monkeypatch.setattr(torch.nn.functional, "interpolate", lambda *a, **k: calls.append(1) or interpolate(*a, **k))
    per_seed = set()
    for seed in range(6):  # the scales are drawn per image as torchvision draws them
        out = []
        for t in (ours, theirs):
            torch.manual_seed(seed)
            calls.clear()
            out.append(t([i.clone() for i in images], [{k: v.clone() for k, v in x.items()} for x in targets]))
            out[-1] += (len(calls),)
        (il1, t1, n_ours), (il2, t2, n_theirs) = out
        assert il1.image_sizes == il2.image_sizes
        assert torch.equal(il1.tensors, il2.tensors)
        for a, b in zip(t1, t2):
            assert a.keys() == b.keys()
            assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["labels"], b["labels"])
            assert "masks" not in a or torch.equal(a["masks"], b["masks"])
        assert n_theirs == 2 * len(images) - 1  # torchvision: image + masks per image
        assert n_ours <= 2 * groups * 2  # ours: image + masks per (size, drawn scale) group
        per_seed.add(len({min(hw) for hw in il1.image_sizes}))
    assert 1 in per_seed and max(per_seed) >= 2  # batches of one scale and of mixed scales were drawn


def test_one_train_scale_per_batch_resizes_every_image_as_torchvision_does_at_that_scale():
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    from yeay_nb.models import TrainTestTransform

    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    scales = (96, 112, 128)
    ours = TrainTestTransform(scales, 200, 128, 200, mean, std, scale_per_batch=True).train()
    per_image = TrainTestTransform(scales, 200, 128, 200, mean, std).train()
    images, targets = batch([(97, 131), (120, 88), (64, 100), (90, 90)], [3, 2, 0, 1], 5, seed=4)
    copy_in = lambda: ([i.clone() for i in images], [{k: v.clone() for k, v in x.items()} for x in targets])  # noqa
    seen, mixed = [], 0
    for seed in range(12):
        torch.manual_seed(seed)
        il, tg = ours(*copy_in())
        matches = []
        for s in scales:  # which single scale reproduces the whole batch?
            ref_il, ref_tg = GeneralizedRCNNTransform((s,), 200, mean, std).train()(*copy_in())
            if il.image_sizes == ref_il.image_sizes and torch.equal(il.tensors, ref_il.tensors) and all(
                    torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["masks"], b["masks"])
                    for a, b in zip(tg, ref_tg)):
                matches.append(s)
        assert len(matches) == 1, (seed, matches)
        seen.append(matches[0])
        torch.manual_seed(seed)
        sizes = per_image(*copy_in())[0].image_sizes
        mixed += len({min(hw) for hw in sizes}) > 1  # torchvision's draws differ within a batch
    assert set(seen) == set(scales) and mixed >= 6
    assert ours._batch_scale is None  # the draw does not outlive the batch


def test_a_degenerate_box_is_reported_with_its_image_index_as_torchvision_does():
    torch.manual_seed(5)
    m = build_model({"arch": "fasterrcnn", "backbone": "resnet18", "norm": "bn", "heads": "light", "num_classes": 4,
                     "min_size": 96, "max_size": 128}).train()
    images, targets = batch([(96, 128)] * 3, [2, 3, 1], 4)
    targets[1]["boxes"][2] = torch.tensor([50.0, 40.0, 50.0, 60.0])  # zero width
    messages = []
    for model in (m, fasttrain.uninstall(copy.deepcopy(m))):
        # torchvision raises an AssertionError (torch._assert); ours a ValueError, same words
        with pytest.raises((ValueError, AssertionError), match="positive height and width") as e:
            model(images, [{k: v.clone() for k, v in t.items()} for t in targets])
        messages.append(str(e.value))
    assert "target at index 1" in messages[0] and messages[0] == messages[1]


def test_batched_roi_align_equals_torchvisions_values_and_gradients():
    from torchvision.ops import MultiScaleRoIAlign

    gen = torch.Generator().manual_seed(6)
    sizes = [(512, 640), (448, 640)]
    feats = {k: torch.randn(2, 4, 512 // s, 640 // s, generator=gen, requires_grad=True)
             for k, s in (("0", 4), ("1", 8), ("2", 16), ("3", 32))}
    # small and large boxes, so every FPN level gets some
    boxes = [torch.cat([random_boxes(40, w, h, gen), torch.tensor([[0.0, 0.0, w - 1.0, h - 1.0]])]) for h, w in sizes]
    theirs = MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2)
    ours = fasttrain.BatchedRoIAlign(["0", "1", "2", "3"], 7, 2)
    a, b = ours(feats, boxes, sizes), theirs(feats, boxes, sizes)
    assert torch.equal(a, b)
    # the same ROIs as one K×5 tensor (what the batched ROI heads pass): the same values
    whole = torch.cat([torch.cat([torch.full((len(bx), 1), float(i)), bx], 1) for i, bx in enumerate(boxes)])
    assert torch.equal(ours.pool_rois(feats, whole, sizes), b)
    one_level = fasttrain.BatchedRoIAlign(["1"], 7, 2)
    assert torch.equal(one_level.pool_rois(feats, whole, sizes), MultiScaleRoIAlign(["1"], 7, 2)(feats, boxes, sizes))
    levels = ours.map_levels(boxes)
    assert len(levels.unique()) == 4  # every level gets ROIs
    ga = torch.autograd.grad(a.square().sum(), list(feats.values()))
    gb = torch.autograd.grad(b.square().sum(), list(feats.values()))
    for x, y in zip(ga, gb):
        torch.testing.assert_close(x, y)


def test_marked_invalid_proposals_suppress_no_valid_one():
    """A too-small box that outscores an overlapping valid one must not remove it in the NMS
    (torchvision drops the small box before the NMS; mark_invalid ranks it last instead)."""
    from yeay_nb.fastpath import filter_proposals

    rpn = build_model({"arch": "fasterrcnn", "backbone": "resnet18", "norm": "bn", "heads": "light",
                       "num_classes": 3}).rpn.train()
    rpn.min_size = 4.0
    proposals = torch.tensor([[[10.0, 10.0, 13.9, 30.0],    # 3.9 wide: fails the size test, best score
                               [10.0, 10.0, 14.1, 30.0],    # valid, IoU 0.95 with the one above
                               [50.0, 50.0, 70.0, 70.0]]])  # valid, apart
    logits = torch.tensor([[3.0, 2.0, 1.0]])
    plain = filter_proposals(rpn, proposals, logits, [(100, 100)], [3])[0]
    marked = filter_proposals(rpn, proposals, logits, [(100, 100)], [3], mark_invalid=True)[0]
    assert plain.tolist() == [proposals[0, 1].tolist(), proposals[0, 2].tolist()]
    assert marked[marked[:, 0] >= 0].tolist() == plain.tolist()
    # padded (what BatchedRPN hands the batched ROI heads): the list padded with -1 rows, for images
    # that keep different numbers of boxes
    # (the third image keeps one box, not its first: its padding must not become its first box)
    two = torch.cat([proposals, torch.tensor([[[0.0, 0.0, 20.0, 20.0], [60.0, 0.0, 80.0, 30.0],
                                               [0.0, 60.0, 30.0, 90.0]],
                                              [[10.0, 10.0, 50.0, 50.0], [11.0, 11.0, 50.0, 50.0],
                                               [10.0, 10.0, 51.0, 51.0]]])])
    logits2 = torch.cat([logits, torch.tensor([[1.0, 0.5, 0.2], [0.1, 2.0, 1.0]])])
    as_list = filter_proposals(rpn, two, logits2, [(100, 100)] * 3, [3], mark_invalid=True)
    assert [len(p) for p in as_list] == [2, 3, 1]
    padded = filter_proposals(rpn, two, logits2, [(100, 100)] * 3, [3], mark_invalid=True, padded=True)
    assert torch.equal(padded, torch.nn.utils.rnn.pad_sequence(as_list, batch_first=True, padding_value=-1.0))


def test_logit_adjustment_offsets_and_the_adjusted_classifier_loss():
    """train.class_logit_adjust: offsets tau*log(n_c/n_max) (background and the most frequent class 0,
    a class without boxes counted as 1); the batched heads' classifier loss is the cross entropy of
    the offset logits, and its gradient raises a rare class's logit more than the plain loss does."""
    offsets = fasttrain.logit_adjustment([0, 100, 10, 1, 0], 1.0)
    torch.testing.assert_close(offsets, torch.tensor([0.0, 0.0, -2.302585, -4.605170, -4.605170]))
    torch.testing.assert_close(fasttrain.logit_adjustment([0, 100, 10], 0.5), torch.tensor([0.0, 0.0, -1.151293]))
    with pytest.raises(ValueError, match="tau"):
        fasttrain.logit_adjustment([0, 3], -1.0)

    m = build_model({"arch": "fasterrcnn", "backbone": "resnet18", "norm": "bn", "heads": "light", "num_classes": 5,
                     "min_size": 64, "max_size": 96})
    heads = m.roi_heads
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(12, 5, generator=gen, requires_grad=True)
    regression, targets = torch.randn(12, 20, generator=gen), torch.randn(12, 4, generator=gen)
    labels = torch.tensor([0, 1, 1, 2, 3, 0, 4, 1, 0, 2, 3, 1])
    plain = heads.box_losses(logits, regression, labels, targets)
    torch.testing.assert_close(plain["loss_classifier"], torch.nn.functional.cross_entropy(logits, labels))
    fasttrain.set_logit_adjustment(m, offsets)
    adjusted = heads.box_losses(logits, regression, labels, targets)
    torch.testing.assert_close(adjusted["loss_classifier"],
                               torch.nn.functional.cross_entropy(logits + offsets, labels))
    torch.testing.assert_close(adjusted["loss_box_reg"], plain["loss_box_reg"])
    g_plain, = torch.autograd.grad(plain["loss_classifier"], logits)
    g_adj, = torch.autograd.grad(adjusted["loss_classifier"], logits)
    assert g_adj[:, 3].sum() < g_plain[:, 3].sum()  # descent raises the rare class's logit more
    assert "logit_adjustment" not in str(list(m.state_dict()))  # training only: checkpoints unchanged
    fasttrain.set_logit_adjustment(m, None)
    torch.testing.assert_close(heads.box_losses(logits, regression, labels, targets)["loss_classifier"],
                               plain["loss_classifier"])
    with pytest.raises(ValueError, match="5 classes"):
        fasttrain.set_logit_adjustment(m, torch.zeros(3))
    with pytest.raises(TypeError, match="batched_heads"):
        fasttrain.set_logit_adjustment(fasttrain.uninstall(m), offsets)


def test_flat_picks_orders_the_sampled_rois_image_by_image_positives_first():
    """flat_picks (one scatter for the batch) gives the indices the per-image slicing gave: each
    image's first n_pos positives then its first n_neg negatives, offset by image; also with images
    that have no positives, no negatives or nothing at all."""
    gen = torch.Generator().manual_seed(3)
    b, n, kp, kn = 5, 50, 8, 20
    pos_idx = torch.stack([torch.randperm(n, generator=gen)[:kp] for _ in range(b)])
    neg_idx = torch.stack([torch.randperm(n, generator=gen)[:kn] for _ in range(b)])
    n_pos, n_neg = torch.tensor([3, 0, 8, 0, 5]), torch.tensor([17, 20, 0, 0, 11])
    flat, flat_pos = fasttrain.flat_picks(pos_idx, n_pos, neg_idx, n_neg, n, n_pos.tolist(), n_neg.tolist())
    want = torch.cat([t for i in range(b) for t in (pos_idx[i, :n_pos[i]] + i * n, neg_idx[i, :n_neg[i]] + i * n)])
    want_pos = torch.cat([pos_idx[i, :n_pos[i]] + i * n for i in range(b)])
    assert torch.equal(flat, want) and torch.equal(flat_pos, want_pos)
    none, none_pos = fasttrain.flat_picks(pos_idx, n_pos * 0, neg_idx, n_neg * 0, n, [0] * b, [0] * b)
    assert none.numel() == 0 and none_pos.numel() == 0


def test_cached_anchors_equal_torchvisions_and_are_made_once_per_size():
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.image_list import ImageList

    sizes, ratios = ((32,), (64,)), ((0.5, 1.0, 2.0),) * 2
    theirs, ours = AnchorGenerator(sizes, ratios), fasttrain.CachedAnchorGenerator(sizes, ratios)

    def batch(h, w, n=3):
        images = ImageList(torch.zeros(n, 3, h, w), [(h - 5, w - 7)] * n)
        return images, [torch.zeros(n, 8, h // 4, w // 4), torch.zeros(n, 8, h // 8, w // 8)]

    first = ours(*batch(64, 96))
    assert len(first) == 3 and all(torch.equal(a, t) for a, t in zip(first, theirs(*batch(64, 96))))
    again = ours(*batch(64, 96, n=2))
    assert len(again) == 2 and again[0] is first[0]  # made once for this size
    other = ours(*batch(96, 64))
    assert torch.equal(other[0], theirs(*batch(96, 64))[0]) and not torch.equal(other[0], first[0])


def test_rpn_nms_with_the_batch_offset_at_once_keeps_what_the_per_image_offsets_keep(monkeypatch):
    """The training RPN's NMS (GPU path: levels offset apart for the whole batch, then one plain NMS
    per image) keeps the same boxes as the per-level NMS per image, on crowded random proposals."""
    from yeay_nb import fastpath
    from yeay_nb.fastpath import filter_proposals

    rpn = build_model({"arch": "fasterrcnn", "backbone": "resnet18", "norm": "bn", "heads": "light",
                       "num_classes": 3}).rpn.train()
    gen = torch.Generator().manual_seed(11)
    b, per_level = 3, [300, 200, 100]
    proposals = torch.stack([random_boxes(sum(per_level), 120, 90, gen) for _ in range(b)])
    logits = torch.randn(b, sum(per_level), generator=gen)
    sizes = [(90, 120), (80, 120), (90, 100)]
    by_group = filter_proposals(rpn, proposals, logits, sizes, per_level, mark_invalid=True, padded=True)
    monkeypatch.setattr(fastpath, "CPU_NMS_BY_GROUP", False)
    at_once = filter_proposals(rpn, proposals, logits, sizes, per_level, mark_invalid=True, padded=True)
    assert torch.equal(at_once, by_group)
    assert (by_group[..., 0] >= 0).sum(1).min() > 50  # many boxes survive: the comparison means something
    # the per-image path's offsets (the GPU's choice) keep what torchvision's batched_nms keeps, too
    from torchvision.ops import batched_nms

    levels = torch.arange(3).repeat_interleave(torch.tensor(per_level))
    assert torch.equal(fastpath._nms_per_group(proposals[0], logits[0], levels, 0.5),
                       batched_nms(proposals[0], logits[0], levels, 0.5))


def test_pad_targets_is_computed_once_per_targets_list_and_not_held_after_the_step():
    """The RPN and the ROI heads of a step pad the same targets list: the second call reuses the first's
    tensors; another list (the next step's) is padded anew; after a training forward nothing is held."""
    t = [{"boxes": torch.tensor([[1.0, 2.0, 5.0, 6.0]]), "labels": torch.tensor([2])},
         {"boxes": torch.zeros((0, 4)), "labels": torch.zeros((0,), dtype=torch.int64)}]
    first = fasttrain.pad_targets(t, torch.device("cpu"))
    assert fasttrain.pad_targets(t, torch.device("cpu")) is first
    other = fasttrain.pad_targets([dict(d) for d in t], torch.device("cpu"))
    assert other is not first and all(torch.equal(a, b) for a, b in zip(other, first))
    assert first[2].tolist() == [[True], [False]] and first[0][1].tolist() == [[0.0, 0.0, 1.0, 1.0]]
    model = build_model({"arch": "maskrcnn", "backbone": "resnet18", "norm": "bn", "heads": "light",
                         "num_classes": 3, "min_size": 64, "max_size": 96}).train()
    gen = torch.Generator().manual_seed(2)
    boxes = random_boxes(3, 96, 64, gen)
    masks = torch.zeros(3, 64, 96, dtype=torch.uint8)
    masks[:, 10:40, 10:50] = 1
    model([torch.rand(3, 64, 96, generator=gen)], [{"boxes": boxes, "labels": torch.tensor([1, 2, 1]), "masks": masks}])
    assert fasttrain._last_padded == [None, None, None]
