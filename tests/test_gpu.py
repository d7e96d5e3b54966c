"""CUDA-only checks (run on the lent GPU machine: ``python3 -m pytest -q tests/test_gpu.py``).

The dev machine and CI have no GPU, so these skip there; the CPU tests cover the same code paths
where they do not depend on CUDA streams.
"""
import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")


def _random_boxes(n, g, device, groups=5):
    xy = torch.rand(n, 2, generator=g) * 500
    wh = torch.rand(n, 2, generator=g) * 120 + 1
    boxes = torch.cat([xy, xy + wh], 1).to(device)
    scores = torch.rand(n, generator=g).to(device)
    return boxes, scores, torch.randint(0, groups, (n,), generator=g).to(device)


def test_nms_images_on_streams_equals_one_after_another(monkeypatch):
    from yeay_nb import fastpath

    g = torch.Generator().manual_seed(0)
    jobs = [_random_boxes(n, g, "cuda") for n in (7000, 0, 1, 350, 4000, 2, 6000, 5000, 3000, 100, 9000)]
    jobs[3] = (jobs[3][0], jobs[3][1].bfloat16(), jobs[3][2])  # autocast's scores
    monkeypatch.setattr(fastpath, "NMS_STREAMS", 1)
    expected = fastpath.nms_images(jobs, 0.7)
    monkeypatch.setattr(fastpath, "NMS_STREAMS", 8)
    for _ in range(3):  # the streams and the pool are reused between calls
        got = fastpath.nms_images(jobs, 0.7)
        assert [k.tolist() for k in got] == [k.tolist() for k in expected]
    assert sum(len(k) for k in expected) > 1000
    with torch.inference_mode():
        got = fastpath.nms_images(jobs, 0.7)
    assert [k.tolist() for k in got] == [k.tolist() for k in expected]


def test_training_losses_do_not_depend_on_the_nms_streams(monkeypatch):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from bench_train_ops import make_batch

    from yeay_nb import fastpath
    from yeay_nb.models import build_model

    torch.manual_seed(0)
    model = build_model({"arch": "maskrcnn", "backbone": "resnet18", "norm": "gn", "num_classes": 8,
                         "min_size": 256, "max_size": 384}).cuda().train()
    images, targets = make_batch(6, 256, 384, 8, torch.device("cuda"))
    losses = {}
    for streams in (1, 8):
        monkeypatch.setattr(fastpath, "NMS_STREAMS", streams)
        torch.manual_seed(1)  # the samplers' random draws
        with torch.autocast("cuda", dtype=torch.bfloat16):
            losses[streams] = {k: float(v) for k, v in model(images, targets).items()}
    assert losses[1] == losses[8]


def test_low_precision_group_norm_stays_bf16_and_close_on_cuda():
    from yeay_nb.models import LowPrecisionGroupNorm

    torch.manual_seed(0)
    ref = torch.nn.GroupNorm(32, 256).cuda()
    with torch.no_grad():
        ref.weight.uniform_(0.5, 1.5)
        ref.bias.uniform_(-0.5, 0.5)
    x = (torch.randn(4, 256, 40, 60, device="cuda") * 3 + 1).bfloat16().requires_grad_()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        want = ref(x)
        ref.__class__ = LowPrecisionGroupNorm
        got = ref(x)
    assert want.dtype == torch.float32 and got.dtype == torch.bfloat16
    assert (got.float() - want).abs().max() < 0.05
    got.float().square().sum().backward()
    assert ref.weight.grad.dtype == torch.float32 and torch.isfinite(ref.weight.grad).all()


def _small_maskrcnn_and_frames(seed: int, num_classes: int, detections: int, n_frames: int) -> tuple:
    """A seeded ResNet-18 frozen-BN Mask R-CNN prepared for the fast path on CUDA (test size 256/448),
    and ``n_frames`` random 270x480 frames."""
    import numpy as np

    from yeay_nb import fastpath
    from yeay_nb.models import build_model

    torch.manual_seed(seed)
    cfg = {"arch": "maskrcnn", "backbone": "resnet18", "norm": "frozen_bn", "num_classes": num_classes,
           "test_min_size": 256, "test_max_size": 448, "box_detections_per_img": detections,
           "box_score_thresh": 0.05}
    rng = np.random.default_rng(seed)
    return (fastpath.prepare_model(build_model(cfg), "cuda"),
            [rng.integers(0, 255, (270, 480, 3), dtype=np.uint8) for _ in range(n_frames)])


def test_run_models_fp32_equals_the_torchvision_forward_and_bf16_boxes_are_float32():
    import numpy as np

    from yeay_nb import fastpath

    model, frames = _small_maskrcnn_and_frames(seed=0, num_classes=4, detections=50, n_frames=4)
    with fastpath.precision_flags("fp32"), torch.inference_mode():
        ref = model([torch.from_numpy(f).cuda().permute(2, 0, 1).float() / 255.0 for f in frames])
        got = fastpath.run_models([model], frames, (270, 480), "cuda", precision="fp32")[id(model)][0]
    for r, (boxes, scores, labels) in zip(ref, got):
        assert labels.tolist() == r["labels"].tolist()
        assert np.allclose(boxes, r["boxes"].cpu().numpy(), atol=1e-2)
        assert np.allclose(scores, r["scores"].cpu().numpy(), atol=1e-4)
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        images = fastpath.to_image_list(frames, (270, 480), fastpath.InputSpec.of(model), "cuda")
        out = fastpath.detect(model, images, [(270, 480)] * 4)
    assert all(o["boxes"].dtype == torch.float32 for o in out)
    # fp16 autocast (TF32's 10-bit mantissa): the top scores of each frame stay close to fp32's
    with fastpath.precision_flags("fp16"), torch.inference_mode():
        half = fastpath.run_models([model], frames, (270, 480), "cuda", precision="fp16")[id(model)][0]
    for (_, s32, _), (b16, s16, _) in zip(got, half):
        top = min(len(s32), len(s16), 10)
        assert top > 0 and np.all(np.isfinite(b16))
        assert np.allclose(np.sort(np.asarray(s32, np.float64))[-top:], np.sort(np.asarray(s16, np.float64))[-top:],
                           atol=1e-2)


def test_channels_last_only_for_models_without_group_norm_and_both_share_one_input(monkeypatch):
    """prepare_model puts a folded-BN model's backbone in NHWC and leaves a GroupNorm one in NCHW;
    run_models then runs both on the one NCHW image batch with the results of all-NCHW models."""
    import numpy as np

    from yeay_nb import fastpath
    from yeay_nb.models import build_model

    def pair():
        torch.manual_seed(0)
        common = {"backbone": "resnet18", "num_classes": 4, "test_min_size": 96, "test_max_size": 160,
                  "box_score_thresh": 0.0, "box_detections_per_img": 10}
        return (build_model({"arch": "maskrcnn", "norm": "frozen_bn", **common}),
                build_model({"arch": "fasterrcnn", "norm": "gn", **common}))

    frames = [np.random.default_rng(i).integers(0, 255, (100, 120, 3), dtype=np.uint8) for i in range(2)]
    results = {}
    for nhwc in (False, True):
        monkeypatch.setattr(fastpath, "CHANNELS_LAST", nhwc)
        bn, gn = (fastpath.prepare_model(m, "cuda") for m in pair())
        conv = bn.backbone.body.conv1.weight
        assert conv.is_contiguous(memory_format=torch.channels_last) == nhwc
        assert gn.backbone.body.conv1.weight.is_contiguous()  # GroupNorm model: NCHW either way
        with fastpath.precision_flags("fp32"):
            out = fastpath.run_models([bn, gn], frames, (100, 120), "cuda", precision="fp32")
        results[nhwc] = [out[id(bn)][0], out[id(gn)][0]]
    # per frame (boxes, scores, labels); untrained heads: compare the sorted scores, not the labels
    # that hang on tiny logit gaps
    for model_a, model_b in zip(results[False], results[True]):
        for (_, sa, _), (_, sb, _) in zip(model_a, model_b):
            assert len(sa) == len(sb) > 0
            assert np.allclose(np.sort(np.asarray(sa, dtype=np.float64)), np.sort(np.asarray(sb, dtype=np.float64)),
                               atol=1e-3)


def _graph_loss(fn, x, params):
    """The backbone's features, a loss on all of them, and the parameters' gradients (cloned: a
    graph's gradient buffers are overwritten by its next replay)."""
    with torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False):
        feats = fn(x)
        loss = sum(f.float().square().mean() for f in feats.values())
    grads = torch.autograd.grad(loss, params)
    return [f.detach().float().clone() for f in feats.values()], [g.clone() for g in grads]


def _close(a, b, rtol):
    return all(((u - v).norm() <= rtol * v.norm() + 1e-6).item() for u, v in zip(a, b))


def test_graphed_backbone_follows_the_weights_and_matches_the_eager_gradients():
    from yeay_nb.cudagraphs import use_graphed_backbone
    from yeay_nb.models import build_model

    torch.manual_seed(0)
    model = build_model({"arch": "maskrcnn", "backbone": "resnet18", "norm": "gn", "num_classes": 8,
                         "min_size": 256, "max_size": 384}).cuda().train()
    graphs = use_graphed_backbone(model, max_shapes=2)
    params = [p for p in model.backbone.parameters() if p.requires_grad]
    xs = [torch.randn(2, 3, 256, 384, device="cuda"), torch.randn(2, 3, 256, 256, device="cuda"),
          torch.randn(2, 3, 256, 320, device="cuda")]  # the third is beyond max_shapes: eager
    first = None
    for step in range(3):
        for x in xs + xs[:1]:
            want_f, want_g = _graph_loss(model.backbone, x, params)
            got_f, got_g = _graph_loss(graphs, x, params)
            assert _close(got_f, want_f, 1e-3) and _close(got_g, want_g, 1e-2), f"step {step}, {tuple(x.shape)}"
            if first is None:
                first = want_f
        with torch.no_grad():  # an SGD step in place, as the trainer's optimizer does
            for p, g in zip(params, want_g):
                p.sub_(0.5 * g / (g.norm() + 1e-12) * p.norm().clamp(min=1e-3))
    assert len(graphs.graphs) == 2 and graphs.eager_steps == 3
    # the weights moved far more than the tolerance: a graph replaying stale weights would have failed
    assert not _close(want_f, first, 0.05)


def test_trainer_with_cuda_graphs_trains_and_evaluates(tmp_path, capsys):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from helpers_train import make_toy_coco

    from yeay_nb.params import params_from_dict
    from yeay_nb.train import read_metrics, train

    coco = make_toy_coco(tmp_path / "toy", n_images=24, size=(160, 128))
    p = params_from_dict({"work_dir": str(tmp_path), "train": {
        "model": "maskrcnn", "backbone": "resnet18", "norm": "gn", "weights": "none", "base_lr": 0.01,
        "max_iter": 12, "steps": [10**6], "warmup_iters": 2, "ims_per_gpu": 4, "reference_batch": 4,
        "train_scales": [128, 160], "max_size": 256, "test_scale": 128, "test_max_size": 256, "num_workers": 2,
        "log_every": 1, "coco_json": str(coco), "output_dir": str(tmp_path / "run"), "cuda_graph_shapes": 2}})
    result = train(p, progress=False)
    out = capsys.readouterr().out
    assert "cuda graph 1/2 of the backbone" in out and "backbone shapes captured" in out
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert rows[-1]["iteration"] == 12 and all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
    assert result.eval is not None and result.final_checkpoint.is_file()


def test_cuda_memory_reads_what_the_graph_guard_needs():
    from yeay_nb.cudagraphs import cuda_memory

    available, total, reserved = cuda_memory(torch.device("cuda"))
    assert 0 < available <= total and 0 <= reserved <= total
    block = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")  # 1 GiB held by this test
    after, _, reserved_after = cuda_memory(torch.device("cuda"))
    # from the allocator's cache or from the card, the GiB is no longer available either way
    assert abs((available - after) - (1 << 30)) < (64 << 20)
    assert reserved_after >= (1 << 30)
    del block


def test_segment_nms_kernel_keeps_what_torchvision_keeps_on_cuda():
    """The compiled Triton kernel (the CPU tests run it interpreted) on RPN-sized segments: 48 images
    x 5 levels of up to 1000 clustered boxes, 5% invalid, two thresholds: torchvision's NMS per segment."""
    from torchvision.ops import nms

    from yeay_nb import segment_nms

    assert segment_nms.available(torch.device("cuda"))
    g = torch.Generator().manual_seed(3)
    counts = torch.tensor([1000, 1000, 1000, 1000, 336] * 48)
    starts = counts.cumsum(0) - counts
    k = int(counts.sum())
    centres = torch.rand(40, 2, generator=g) * torch.tensor([833.0, 500.0])
    c = centres[torch.randint(0, 40, (k,), generator=g)] + torch.randn(k, 2, generator=g) * 20
    wh = 16 + torch.rand(k, 2, generator=g) * 100
    boxes = torch.cat([c - wh / 2, c + wh / 2], dim=1).cuda()
    valid = (torch.rand(k, generator=g) > 0.05).cuda()
    for iou in (0.7, 0.5):
        got = segment_nms.segment_nms(boxes, valid, starts.cuda(), counts.cuda(), iou, 1000)
        want = torch.zeros(k, dtype=torch.bool, device="cuda")
        for a, n in zip(starts.tolist(), counts.tolist()):
            idx = a + torch.nonzero(valid[a:a + n]).squeeze(1)
            want[idx[nms(boxes[idx], torch.linspace(1, 0, n, device="cuda")[idx - a], iou)]] = True
        assert int(got.sum()) < int(valid.sum())
        mismatch = int((got != want).sum())
        assert mismatch == 0, f"{mismatch} of {k} flags differ at IoU {iou}"


def test_run_models_gives_the_same_detections_with_and_without_segment_nms(monkeypatch):
    """run_models in fp32 with the kernel's NMS (the default: two launches a batch, counted) and with
    torchvision's per-image NMS on streams: the same detections."""
    import numpy as np

    from yeay_nb import fastpath, segment_nms

    model, frames = _small_maskrcnn_and_frames(seed=1, num_classes=6, detections=60, n_frames=6)
    calls = []
    kernel = segment_nms.segment_nms
    monkeypatch.setattr(segment_nms, "segment_nms", lambda *a, **k: calls.append(1) or kernel(*a, **k))
    with fastpath.precision_flags("fp32"), torch.inference_mode():
        seg = fastpath.run_models([model], frames, (270, 480), "cuda", precision="fp32")[id(model)][0]
        assert len(calls) == 2
        monkeypatch.setattr(fastpath, "SEGMENT_NMS", False)
        ref = fastpath.run_models([model], frames, (270, 480), "cuda", precision="fp32")[id(model)][0]
    assert len(calls) == 2 and sum(len(s) for _, s, _ in ref) > 50
    for (b0, s0, l0), (b1, s1, l1) in zip(ref, seg):
        assert l0.tolist() == l1.tolist()
        assert np.allclose(b0, b1, atol=1e-3) and np.allclose(s0, s1, atol=1e-5)


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
def test_fused_convs_give_the_unfused_features_and_detections_on_cuda(monkeypatch, backbone):
    """prepare_model with FUSED_CONV: cuDNN's conv+bias(+residual)+ReLU calls give the folded model's
    features in fp32 and fp16 (under autocast: fp16 out) and the same detections."""
    import copy

    import numpy as np

    from yeay_nb import fastpath
    from test_fused import with_norm_statistics

    from yeay_nb.fused import FusedConvReLU
    from yeay_nb.models import build_model

    torch.manual_seed(0)
    base = with_norm_statistics(build_model({
        "arch": "maskrcnn", "backbone": backbone, "norm": "frozen_bn", "num_classes": 5, "test_min_size": 256,
        "test_max_size": 448, "box_detections_per_img": 50, "box_score_thresh": 0.05}))
    models = {}
    for on in (False, True):
        monkeypatch.setattr(fastpath, "FUSED_CONV", on)
        models[on] = fastpath.prepare_model(copy.deepcopy(base), "cuda")
    assert sum(isinstance(m, FusedConvReLU) for m in models[True].modules()) > 10
    assert not any(isinstance(m, FusedConvReLU) for m in models[False].modules())
    # one fused conv in fp32 without TF32: float32 rounding (~1e-6), not TF32's 10-bit mantissa (~1e-3)
    conv = torch.nn.Conv2d(256, 256, 3, padding=1).cuda()
    y = torch.rand(2, 256, 64, 64, device="cuda")
    with fastpath.precision_flags("fp32"), torch.inference_mode():
        one = (FusedConvReLU(conv)(y) - torch.relu(conv(y))).abs().max().item()
        assert one <= 1e-5 * torch.relu(conv(y)).abs().max().item(), one
    x = torch.rand(4, 3, 256, 448, device="cuda")
    with fastpath.precision_flags("fp32"), torch.inference_mode():
        ref, got = models[False].backbone(x), models[True].backbone(x)
    for k in ref:  # through 50 layers, cuDNN's other algorithms add up: relative to each map's scale
        err = (ref[k] - got[k]).abs().max().item() / ref[k].abs().max().item()
        print(f"fused {backbone} level {k}: fp32 max error {err:.2e} of the scale")
        assert err <= 1e-4, (k, err)
    with fastpath.precision_flags("fp16"), torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16):
        half_ref, half = models[False].backbone(x), models[True].backbone(x)
    for k in ref:  # under autocast the fused modules run the unfused ops
        assert half[k].dtype == half_ref[k].dtype == torch.float16
        assert torch.allclose(half[k].float(), half_ref[k].float(), atol=1e-3, rtol=1e-3), k
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (270, 480, 3), dtype=np.uint8) for _ in range(4)]
    with fastpath.precision_flags("fp32"):
        a = fastpath.run_models([models[False]], frames, (270, 480), "cuda", precision="fp32")[id(models[False])][0]
        b = fastpath.run_models([models[True]], frames, (270, 480), "cuda", precision="fp32")[id(models[True])][0]
    assert sum(len(s) for _, s, _ in a) > 20
    for (b0, s0, l0), (b1, s1, l1) in zip(a, b):
        assert l0.tolist() == l1.tolist()
        assert np.allclose(b0, b1, atol=1e-2) and np.allclose(s0, s1, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_fused_conv_under_autocast_runs_autocasts_own_conv(dtype):
    """Under autocast the fused module runs autocast's conv2d + bias (+ residual) + ReLU: the same values
    as the unfused layers, in the autocast dtype (the fused kernels moved a small model's fp16 scores)."""
    from yeay_nb.fused import FusedConvReLU

    torch.manual_seed(0)
    for cin, k in ((64, 3), (512, 3), (2048, 1)):
        conv = torch.nn.Conv2d(cin, 256, k, padding=k // 2).cuda().to(memory_format=torch.channels_last)
        x = torch.randn(2, cin, 32, 48, device="cuda").to(memory_format=torch.channels_last)
        z = torch.randn(2, 256, 32, 48, device="cuda")
        with torch.inference_mode(), torch.autocast("cuda", dtype=dtype):
            plain = conv(x)
            plain += z  # torchvision's block: the residual added in place, in the conv output's dtype
            plain = torch.relu(plain)
            fused = FusedConvReLU(conv)(x, z)
        assert fused.dtype == plain.dtype == dtype
        assert torch.allclose(fused.float(), plain.float(), atol=1e-3, rtol=1e-3), (cin, k)
