"""yeay_nb.fused: which convolutions are fused and that the fused model computes what the folded one does.

On a CPU the fused modules run the same arithmetic unfused, so these check the rewiring (which conv gets
which bias, residual and ReLU); tests/test_gpu.py checks the cuDNN kernels against the unfused model."""
import copy

import pytest
import torch

from yeay_nb import fastpath
from yeay_nb.fused import FusedConvReLU, FusedResidualBlock, available, fuse_conv_relu
from yeay_nb.models import build_model


def with_norm_statistics(model):
    """``model`` with random BatchNorm statistics and shifts (also used by tests/test_gpu.py): a fresh
    frozen BN's identity statistics would fold into the convs as nothing."""
    with torch.no_grad():
        for mod in model.modules():
            if hasattr(mod, "running_var") and mod.running_var is not None:
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 2.0)
                mod.bias.uniform_(-0.3, 0.3)
    return model


def _model(backbone: str, norm: str, arch: str = "maskrcnn"):
    torch.manual_seed(0)
    m = build_model({"arch": arch, "backbone": backbone, "norm": norm, "num_classes": 5, "test_min_size": 96,
                     "test_max_size": 128, "box_score_thresh": 0.0, "box_detections_per_img": 20})
    return fastpath.prepare_model(with_norm_statistics(m), "cpu")


@pytest.mark.parametrize("backbone,norm,blocks,convs,heads", [
    ("resnet50", "frozen_bn", 16, 3, 1 + 4),    # v1 layout: the RPN head's conv, the mask head's four
    ("resnet18", "frozen_bn", 8, 2, 1 + 4),
    ("resnet18", "bn", 8, 2, 2 + 4 + 4)])       # v2 layout: conv, folded BN, ReLU in the RPN, box and mask heads
def test_fusing_a_folded_mask_rcnn_keeps_its_features_and_detections(backbone, norm, blocks, convs, heads):
    folded = _model(backbone, norm)
    fused = copy.deepcopy(folded)
    assert fuse_conv_relu(fused) == 1 + blocks * convs + heads  # and the stem
    # every ReLU after a conv went into it: left are the box head's after its Linear, the mask predictor's
    # after its transposed conv
    assert {n for n, m in fused.named_modules() if isinstance(m, torch.nn.ReLU)} <= {
        "roi_heads.box_head.6", "roi_heads.box_head.fc7", "roi_heads.mask_predictor.relu"}
    body = fused.backbone.body
    assert isinstance(body.conv1, FusedConvReLU) and isinstance(body.relu, torch.nn.Identity)
    assert sum(isinstance(m, FusedResidualBlock) for m in fused.modules()) == blocks
    assert not any(isinstance(m, torch.nn.ReLU) for m in fused.backbone.body.modules())
    x = torch.rand(2, 3, 96, 128)
    with torch.inference_mode():
        fa, fb = folded.backbone(x), fused.backbone(x)
        assert list(fa) == list(fb)
        for k in fa:
            assert torch.allclose(fa[k], fb[k], atol=1e-5, rtol=1e-5), k
        ra, rb = folded(list(x)), fused(list(x))
    for a, b in zip(ra, rb):
        assert a["labels"].tolist() == b["labels"].tolist() and len(a["labels"]) > 0
        assert torch.allclose(a["boxes"], b["boxes"], atol=1e-3) and torch.allclose(a["masks"], b["masks"], atol=1e-4)


def test_blocks_with_group_norm_are_left_alone():
    model = _model("resnet18", "gn", arch="fasterrcnn")
    before = [type(m) for m in model.backbone.body.modules()]
    fuse_conv_relu(model)
    assert [type(m) for m in model.backbone.body.modules()] == before  # GroupNorm does not fold


def test_fused_conv_adds_bias_and_residual_before_the_relu():
    conv = torch.nn.Conv2d(3, 4, 3, padding=1, stride=2)
    f = FusedConvReLU(conv)
    x = torch.rand(1, 3, 8, 8)
    z = torch.rand(1, 4, 4, 4) - 0.5
    y = torch.nn.functional.conv2d(x, conv.weight, conv.bias, stride=2, padding=1)
    assert torch.allclose(f(x), torch.relu(y))
    assert torch.allclose(f(x, z), torch.relu(y + z))
    assert (f(x, z) == 0).any() and (f(x, z) > 0).any()


def test_prepare_model_fuses_only_on_cuda(monkeypatch):
    monkeypatch.setattr(fastpath, "FUSED_CONV", True)
    model = _model("resnet18", "frozen_bn")
    assert not any(isinstance(m, FusedConvReLU) for m in model.modules())  # a CPU model: unfused


def test_not_available_without_cudnn(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "enabled", False)
    assert not available()
    monkeypatch.setattr(torch.backends.cudnn, "enabled", True)
    monkeypatch.setattr(torch.version, "hip", "6.2")
    assert not available()
