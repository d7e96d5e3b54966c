"""The inference fast path gives torchvision's results: folded norms, batched input, GPU-style RLE."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from yeay_nb import fastpath, segment_nms  # noqa: E402
from yeay_nb.models import build_model, save_checkpoint  # noqa: E402

CLASSES = ["__background__", "shirt", "jeans", "person"]


def _model(norm: str, arch: str = "maskrcnn", **extra):
    torch.manual_seed(0)
    cfg = {"arch": arch, "backbone": "resnet18", "norm": norm, "num_classes": len(CLASSES),
           "test_min_size": 96, "test_max_size": 160, "rpn_post_nms_top_n_test": 50,
           "box_detections_per_img": 10, "box_score_thresh": 0.0, **extra}
    return build_model(cfg).eval(), cfg


def _reference_then_prepared(model, seed: int):
    """Two random 100x120 frames, torchvision's forward on them (before the fast path changes the
    model), then the model prepared for the fast path and its batch of those frames."""
    rng = np.random.default_rng(seed)
    frames = [rng.integers(0, 255, (100, 120, 3), dtype=np.uint8) for _ in range(2)]
    with torch.inference_mode():
        ref = model([torch.from_numpy(f).permute(2, 0, 1).float() / 255.0 for f in frames])
        fastpath.prepare_model(model, "cpu")
        images = fastpath.to_image_list(frames, (100, 120), fastpath.InputSpec.of(model), "cpu")
    return ref, images


@pytest.mark.parametrize("norm", ["frozen_bn", "bn"])
def test_folded_norms_give_the_same_features(norm):
    model, _ = _model(norm)
    if norm == "bn":  # give the BatchNorms non-trivial statistics, as a trained model has
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.data.uniform_(0.5, 1.5)
                m.bias.data.uniform_(-0.1, 0.1)
    x = torch.rand(2, 3, 96, 128)
    with torch.inference_mode():
        ref = model.backbone(x)
    import copy

    folded = copy.deepcopy(model)
    n = fastpath.fold_batchnorms(folded)
    # resnet18: stem + 2 per block x 8 blocks + 3 downsamples = 20 (bn: FPN norms too)
    assert n >= 20
    assert not any(isinstance(m, (torch.nn.BatchNorm2d,)) for m in folded.backbone.body.modules())
    with torch.inference_mode():
        got = folded.backbone(x)
    for k in ref:
        assert torch.allclose(ref[k], got[k], rtol=1e-4, atol=1e-4), k


def test_group_norm_is_left_alone():
    model, _ = _model("gn")
    before = sum(isinstance(m, torch.nn.GroupNorm) for m in model.modules())
    assert fastpath.fold_batchnorms(model) == 0
    assert sum(isinstance(m, torch.nn.GroupNorm) for m in model.modules()) == before > 0


def test_float32_group_norm_switch_restores_plain_group_norm_at_inference(monkeypatch):
    from yeay_nb.models import LowPrecisionGroupNorm

    model, _ = _model("gn")
    gns = lambda m: [type(x) for x in m.modules() if isinstance(x, torch.nn.GroupNorm)]  # noqa: E731
    assert set(gns(model)) == {LowPrecisionGroupNorm}  # training's choice, kept by default
    fastpath.prepare_model(model, "cpu")
    assert set(gns(model)) == {LowPrecisionGroupNorm}
    monkeypatch.setattr(fastpath, "FLOAT32_GROUP_NORM", True)
    model2, _ = _model("gn")
    fastpath.prepare_model(model2, "cpu")
    assert set(gns(model2)) == {torch.nn.GroupNorm} and len(gns(model2)) == len(gns(model))


def test_precision_flags_set_and_restore_tf32():
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = True, False
        for precision, inside in (("fp32", (False, False)), ("tf32", (True, True)), ("bf16", (True, False)),
                                  ("fp16", (True, False))):
            with fastpath.precision_flags(precision):
                assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == inside
            assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == (True, False)
        with pytest.raises(ValueError, match="precision"):
            with fastpath.precision_flags("fp8"):
                pass
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def test_image_batch_equals_torchvision_transform():
    model, _ = _model("frozen_bn")
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (90, 130, 3), dtype=np.uint8) for _ in range(3)]
    spec = fastpath.InputSpec.of(model)
    with torch.inference_mode():
        ref, _ = model.transform([torch.from_numpy(f).permute(2, 0, 1).float() / 255.0 for f in frames])
        got = fastpath.to_image_list(frames, (90, 130), spec, "cpu")
    assert got.image_sizes == ref.image_sizes
    assert got.tensors.shape == ref.tensors.shape
    assert torch.allclose(got.tensors, ref.tensors, atol=1e-5)


def test_detect_equals_torchvision_forward_for_both_architectures():
    for arch in ("maskrcnn", "fasterrcnn"):
        model, _ = _model("frozen_bn", arch=arch)
        ref, images = _reference_then_prepared(model, seed=1)
        with torch.inference_mode():
            floors = [0.0]  # mask threshold 0 (every person) ...
            if arch == "maskrcnn":  # ... and one between the person scores: the threshold decides
                person = torch.cat([r["scores"][r["labels"] == 3] for r in ref]).sort().values
                # halfway across the widest gap between two middle scores: a floor at a score itself
                # (the median was, once) lets the fast path's 1e-5 differences put it on either side
                mid = range(len(person) // 4 + 1, 3 * len(person) // 4 + 1)
                k = max(mid, key=lambda i: float(person[i] - person[i - 1]))
                assert person[k] - person[k - 1] > 1e-3
                floors.append(float(person[k - 1] + person[k]) / 2)
                assert 0 < int((person >= floors[1]).sum()) < len(person)
            runs = {floor: fastpath.detect(model, images, [(100, 120)] * 2, [3], floor) for floor in floors}
        for floor, got in runs.items():
            for r, g in zip(ref, got):
                assert torch.equal(r["labels"], g["labels"])
                assert torch.allclose(r["boxes"], g["boxes"], atol=1e-2)
                assert torch.allclose(r["scores"], g["scores"], atol=1e-4)
                if arch == "maskrcnn":
                    want = ((r["labels"] == 3) & (r["scores"] >= floor)).nonzero().flatten()
                    assert torch.equal(g["mask_index"], want)
                    assert torch.allclose(g["masks"], r["masks"][want], atol=1e-3)


def test_boxes_are_decoded_in_float32_under_bf16_autocast():
    """Under bf16 autocast the heads' deltas are bf16, and torchvision's BoxCoder would decode in bf16
    (coordinates rounded to 2-4 px at frame scale: measured on the H100 with a trained CCP model, only
    5% of matched boxes kept IoU >= 0.99 with the fp32 loop). Proposals, boxes and scores must be float32."""
    model, _ = _model("frozen_bn", arch="fasterrcnn")
    fastpath.prepare_model(model, "cpu")
    rng = np.random.default_rng(2)
    frames = [rng.integers(0, 255, (100, 120, 3), dtype=np.uint8) for _ in range(2)]
    images = fastpath.to_image_list(frames, (100, 120), fastpath.InputSpec.of(model), "cpu")
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        features = model.backbone(images.tensors)
        objectness, deltas, _, _, proposals = fastpath.rpn_outputs(model.rpn, images, features)
        assert deltas.dtype == torch.bfloat16  # autocast is on: the heads really run in bf16
        assert proposals.dtype == torch.float32
        out = fastpath.detect(model, images, [(100, 120)] * 2)
    assert all(o["boxes"].dtype == torch.float32 and o["scores"].dtype == torch.float32 for o in out)
    assert sum(len(o["boxes"]) for o in out) > 0
    # a box decoded in bf16 lies on bf16's grid (8 significant bits); float32 boxes mostly do not
    b = torch.cat([o["boxes"] for o in out]).flatten()
    b = b[(b > 16) & (b < 99)]  # not the clipped ones (0, 100, 120 are on every grid)
    assert (b.to(torch.bfloat16).float() != b).float().mean() > 0.5


def test_rle_encode_matches_pycocotools():
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(2)
    masks = rng.random((5, 37, 53)) > 0.6
    masks[0] = False  # empty
    masks[1] = True  # full: the RLE starts with an empty run of zeros
    masks[2, :, :20] = True  # starts with ones
    got = fastpath.rle_encode(torch.from_numpy(masks))
    for m, g in zip(masks, got):
        ref = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        assert g == {"counts": ref["counts"].decode("ascii"), "size": [37, 53]}
    assert fastpath.rle_encode(torch.zeros((0, 4, 4), dtype=torch.bool)) == []


def test_cpu_presize_only_shrinks_much_larger_frames():
    model, _ = _model("frozen_bn")
    spec = fastpath.InputSpec.of(model)  # 96/160
    big = np.zeros((1080, 1920, 3), np.uint8)
    small = np.zeros((100, 160, 3), np.uint8)
    assert fastpath.cpu_presize(big, spec).shape[:2] == spec.resized(1080, 1920) == (90, 160)
    assert fastpath.cpu_presize(small, spec) is small


def test_large_frames_run_with_presize_and_report_full_size_results(tmp_path):
    """A frame 10x the network input is shrunk on the CPU; boxes and masks still come back in
    the video's own pixels."""
    from yeay_nb.contract import validate_file
    from yeay_nb.infer import run_inference
    from yeay_nb.synth.videos import make_videos

    model, cfg = _model("frozen_bn", test_min_size=64, test_max_size=96)
    ckpt = save_checkpoint(tmp_path / "m.pt", model=model, classes=CLASSES, model_config=cfg)
    video = make_videos(tmp_path / "v", num_videos=1, num_frames=3, size=(320, 192), seed=4)[0]
    s = run_inference(video, tmp_path / "out", str(ckpt), "same", score_floor=0.0, thresh=0.0, mask_thresh=0.0,
                      batch_size=2, device="cpu", progress=False)
    assert s.done and not s.failed
    doc = json.loads(s.outputs[0].read_text())
    validate_file(s.outputs[0])
    boxes = np.array([it[3] for it in doc["items"]])
    assert len(boxes) and boxes[:, 2].max() > 96 and boxes[:, 2].max() <= 320 and boxes[:, 3].max() <= 192
    sizes = {tuple(m["size"]) for f in doc["coco_rle_masks"] for cls in f for m in cls}
    assert sizes == {(192, 320)}


def test_batched_paste_matches_torchvision_paste():
    from torchvision.models.detection.roi_heads import paste_masks_in_image

    torch.manual_seed(3)
    masks = torch.rand(7, 1, 28, 28)
    boxes = torch.tensor([[10.3, 5.7, 60.2, 40.9], [0.0, 0.0, 99.0, 79.0], [-5.0, -3.0, 20.0, 15.0],
                          [80.5, 60.2, 120.0, 95.0], [30.0, 30.0, 30.4, 30.2], [50.0, 10.0, 52.5, 70.0],
                          [3.3, 44.4, 77.7, 78.8]])
    ref = paste_masks_in_image(masks, boxes, (80, 100))
    got = fastpath.paste_masks(masks, boxes, (80, 100))
    assert got.shape == ref.shape == (7, 1, 80, 100)
    assert torch.allclose(got, ref, atol=1e-5)
    # chunked (4K frames go through in pieces) gives the same
    assert torch.equal(fastpath.paste_masks(masks, boxes, (80, 100), chunk_pixels=8000 * 2), got)


def _greedy_reference(boxes, scores, groups, iou):
    """torchvision's NMS group by group (no coordinate offsets), kept indices best first."""
    from torchvision.ops import nms

    keep = torch.cat([torch.nonzero(groups == c).squeeze(1)[nms(boxes[groups == c], scores[groups == c], iou)]
                      for c in groups.unique()]) if len(boxes) else torch.empty(0, dtype=torch.int64)
    return keep[scores[keep].argsort(descending=True, stable=True)]


def test_dense_nms_keeps_what_torchvision_keeps_for_every_row():
    """dense_nms on a batch of rows (clustered boxes, 3 groups, some invalid) keeps exactly what
    torchvision's NMS keeps per row, best first, in any piece size; a chain of boxes each
    overlapping the next (suppression depth 40: many rounds) is solved exactly too."""
    g = torch.Generator().manual_seed(7)
    b, n = 5, 300
    centres = torch.rand(b, 12, 2, generator=g) * 400
    pick = torch.randint(0, 12, (b, n), generator=g)
    c = centres.gather(1, pick[..., None].expand(b, n, 2)) + torch.randn(b, n, 2, generator=g) * 12
    wh = 20 + torch.rand(b, n, 2, generator=g) * 60
    boxes = torch.cat([c - wh / 2, c + wh / 2], dim=-1)
    scores = torch.rand(b, n, generator=g)
    groups = torch.randint(0, 3, (b, n), generator=g)
    valid = torch.rand(b, n, generator=g) > 0.2
    valid[4] = False  # a row with nothing valid
    for chunk in (None, n * n, 1):
        order, keep = fastpath.dense_nms(boxes, scores, groups, valid, 0.5, chunk_entries=chunk)
        for r in range(b):
            idx = torch.nonzero(valid[r]).squeeze(1)
            ref = idx[_greedy_reference(boxes[r, idx], scores[r, idx], groups[r, idx], 0.5)]
            got = order[r][keep[r]]
            assert got.tolist() == ref.tolist(), (chunk, r)
        assert keep[4].sum() == 0 and 5 < keep[0].sum() < valid[0].sum()  # the control: NMS removed boxes
    # a chain: box i overlaps i+1 (IoU 0.6) but not i+2, scores falling: greedy keeps every other box
    x = torch.arange(40, dtype=torch.float32) * 25
    chain = torch.stack([x, torch.zeros(40), x + 100, torch.full((40,), 10.0)], dim=1)[None]
    order, keep = fastpath.dense_nms(chain, torch.linspace(1, 0.1, 40)[None], torch.zeros(1, 40, dtype=torch.int64),
                                     torch.ones(1, 40, dtype=torch.bool), 0.5, check_every=1)
    ref = _greedy_reference(chain[0], torch.linspace(1, 0.1, 40), torch.zeros(40, dtype=torch.int64), 0.5)
    assert order[0][keep[0]].tolist() == ref.tolist() and len(ref) < 40


@pytest.fixture
def triton_interpreter(monkeypatch):
    """Triton's interpreter: the segment-NMS kernel runs on CPU tensors (the GPU test runs it compiled)."""
    pytest.importorskip("triton", reason="the segment-NMS kernel is written in Triton (comes with torch on Linux)")
    assert not segment_nms.available("cpu") or segment_nms._interpreting()  # the kernel needs CUDA ...
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert segment_nms.available("cpu")  # ... or the interpreter


def _segments_reference(boxes, valid, starts, counts, iou):
    """torchvision's NMS on each segment's valid boxes (given best first): the keep flags."""
    from torchvision.ops import nms

    want = torch.zeros(len(boxes), dtype=torch.bool)
    for a, n in zip(starts.tolist(), counts.tolist()):
        idx = a + torch.nonzero(valid[a:a + n]).squeeze(1)
        scores = torch.linspace(1, 0, n)[idx - a]  # best first, as given
        want[idx[nms(boxes[idx], scores, iou)]] = True
    return want


def test_segment_nms_keeps_what_torchvision_keeps_per_segment(triton_interpreter):
    """The kernel on segments of clustered boxes (some invalid, one empty, one of a single box,
    rows outside every segment) keeps exactly torchvision's NMS per segment; a chain of boxes each
    overlapping the next (IoU 0.6, not the one after) keeps every other box."""
    g = torch.Generator().manual_seed(11)
    counts = torch.tensor([300, 0, 1, 77, 513, 40])
    starts = counts.cumsum(0) - counts + torch.arange(len(counts)) * 3  # 3 rows of gap after each
    k = int(starts[-1] + counts[-1] + 3)
    centres = torch.rand(10, 2, generator=g) * 300
    c = centres[torch.randint(0, 10, (k,), generator=g)] + torch.randn(k, 2, generator=g) * 10
    wh = 15 + torch.rand(k, 2, generator=g) * 50
    boxes = torch.cat([c - wh / 2, c + wh / 2], dim=1)
    valid = torch.rand(k, generator=g) > 0.15
    for iou in (0.5, 0.7):
        got = segment_nms.segment_nms(boxes, valid, starts, counts, iou, int(counts.max()))
        want = _segments_reference(boxes, valid, starts, counts, iou)
        assert torch.equal(got, want), iou
        assert 10 < int(got.sum()) < int(valid.sum())  # NMS removed boxes, kept some
    x = torch.arange(40, dtype=torch.float32) * 25
    chain = torch.stack([x, torch.zeros(40), x + 100, torch.full((40,), 10.0)], dim=1)
    got = segment_nms.segment_nms(chain, torch.ones(40, dtype=torch.bool), torch.tensor([0]), torch.tensor([40]),
                                  0.5, 40)
    assert got.tolist() == [i % 2 == 0 for i in range(40)]
    with pytest.raises(ValueError, match="over the"):
        segment_nms.segment_nms(boxes, valid, starts, counts, 0.5, segment_nms.MAX_BLOCK + 1)


@pytest.mark.parametrize("mode", ["one_call", "per_level", "dense", "segment"])
def test_batched_rpn_gives_torchvision_proposals(mode, monkeypatch, request):
    """Top-N truncation per level, clipping, NMS per level (one call, one per level, the batch's
    dense_nms, or the segment-NMS kernel): same boxes."""
    model, _ = _model("frozen_bn", rpn_pre_nms_top_n_test=120, rpn_post_nms_top_n_test=60)
    monkeypatch.setattr(fastpath, "PER_LEVEL_RPN_NMS", mode == "per_level")
    monkeypatch.setattr(fastpath, "DENSE_RPN_NMS", mode == "dense")
    if mode == "segment":
        request.getfixturevalue("triton_interpreter")
        calls = []
        monkeypatch.setattr(segment_nms, "segment_nms", _counting(segment_nms.segment_nms, calls))
    rng = np.random.default_rng(5)
    frames = [rng.integers(0, 255, (150, 200, 3), dtype=np.uint8) for _ in range(3)]
    with torch.inference_mode():
        images = fastpath.to_image_list(frames, (150, 200), fastpath.InputSpec.of(model), "cpu")
        features = model.backbone(images.tensors)
        ref, _ = model.rpn(images, features)
        got = fastpath.rpn_proposals(model.rpn, images, features)
    assert len(got) == len(ref) == 3
    for r, g in zip(ref, got):
        assert r.shape == g.shape and len(r) == 60
        assert torch.allclose(r, g)
    if mode == "segment":
        assert len(calls) == 1  # one launch for the batch: the kernel's path, not a fallback


def _counting(fn, calls: list):
    def wrapped(*args, **kwargs):
        calls.append(args)
        return fn(*args, **kwargs)
    return wrapped


def test_detect_with_segment_nms_equals_torchvision_forward(triton_interpreter, monkeypatch):
    """With the segment-NMS kernel for the RPN and the box head (two launches a batch), detect
    gives torchvision's detections for both architectures, several classes competing."""
    calls: list = []
    monkeypatch.setattr(segment_nms, "segment_nms", _counting(segment_nms.segment_nms, calls))
    for arch in ("maskrcnn", "fasterrcnn"):
        model, _ = _model("frozen_bn", arch=arch, rpn_pre_nms_top_n_test=200, box_detections_per_img=25)
        ref, images = _reference_then_prepared(model, seed=3)
        with torch.inference_mode():
            got = fastpath.detect(model, images, [(100, 120)] * 2, [3], 0.0)
        for r, g in zip(ref, got):
            assert len(r["labels"]) == 25 and len(set(r["labels"].tolist())) > 1
            assert torch.equal(r["labels"], g["labels"])
            assert torch.allclose(r["boxes"], g["boxes"], atol=1e-2)
            assert torch.allclose(r["scores"], g["scores"], atol=1e-4)
    assert len(calls) == 4


def test_five_anchor_ratios_give_torchvisions_proposals_and_detections():
    """A model with anchor_ratios [0.25 .. 4] (five anchors a place): the fast path's RPN and detect
    give what torchvision's forward gives."""
    model, _ = _model("frozen_bn", anchor_ratios=[0.25, 0.5, 1.0, 2.0, 4.0], rpn_pre_nms_top_n_test=150,
                      rpn_post_nms_top_n_test=60)
    assert model.rpn.head.cls_logits.out_channels == 5
    ref, images = _reference_then_prepared(model, seed=7)
    with torch.inference_mode():
        features = model.backbone(images.tensors)
        ref_props, _ = model.rpn(images, features)
        props = fastpath.rpn_proposals(model.rpn, images, features)
        got = fastpath.detect(model, images, [(100, 120)] * 2, [3], 0.0)
    for r, g in zip(ref_props, props):
        assert len(r) == 60 and torch.allclose(r, g, atol=1e-3)
    for r, g in zip(ref, got):
        assert len(r["labels"]) > 0 and torch.equal(r["labels"], g["labels"])
        assert torch.allclose(r["boxes"], g["boxes"], atol=1e-2)
        assert torch.allclose(r["scores"], g["scores"], atol=1e-4)


def test_channels_last_is_wanted_only_for_models_without_group_norm(monkeypatch):
    """NHWC pays for folded-BatchNorm models and costs GroupNorm ones (bench_backbone.py on an H100):
    the switch applies per model, and off means NCHW for all; the shared input batch stays NCHW."""
    bn, _ = _model("frozen_bn")
    gn, _ = _model("gn")
    monkeypatch.setattr(fastpath, "CHANNELS_LAST", True)
    assert fastpath.wants_channels_last(bn) and not fastpath.wants_channels_last(gn)
    monkeypatch.setattr(fastpath, "CHANNELS_LAST", False)
    assert not fastpath.wants_channels_last(bn)
    frames = [np.zeros((100, 120, 3), np.uint8)] * 2
    x = fastpath.to_image_list(frames, (100, 120), fastpath.InputSpec.of(bn), "cpu").tensors
    assert x.is_contiguous()


def test_gil_switch_is_short_on_cuda_only_and_restored(monkeypatch):
    """gil_switch: the switch interval at GIL_SWITCH_S inside for a CUDA device, back afterwards (also
    after an error); untouched for a CPU or with the switch off."""
    import sys

    before = sys.getswitchinterval()
    assert before != fastpath.GIL_SWITCH_S
    with fastpath.gil_switch("cuda:0"):
        assert sys.getswitchinterval() == pytest.approx(fastpath.GIL_SWITCH_S)
    assert sys.getswitchinterval() == before
    with pytest.raises(RuntimeError), fastpath.gil_switch("cuda"):
        raise RuntimeError("a failed video")
    assert sys.getswitchinterval() == before
    with fastpath.gil_switch("cpu"):
        assert sys.getswitchinterval() == before
    monkeypatch.setattr(fastpath, "SHORT_GIL_SWITCH", False)
    with fastpath.gil_switch("cuda"):
        assert sys.getswitchinterval() == before


def test_frozen_gc_freezes_on_cuda_only_and_unfreezes(monkeypatch):
    """frozen_gc: the objects made before are frozen inside for a CUDA device (and unfrozen after,
    also after an error); nothing frozen for a CPU or with the switch off."""
    import gc

    assert gc.get_freeze_count() == 0
    with fastpath.frozen_gc("cuda"):
        assert gc.get_freeze_count() > 1000
    assert gc.get_freeze_count() == 0
    with pytest.raises(RuntimeError), fastpath.frozen_gc("cuda:0"):
        raise RuntimeError("a failed video")
    assert gc.get_freeze_count() == 0
    with fastpath.frozen_gc("cpu"):
        assert gc.get_freeze_count() == 0
    monkeypatch.setattr(fastpath, "FREEZE_GC", False)
    with fastpath.frozen_gc("cuda"):
        assert gc.get_freeze_count() == 0
