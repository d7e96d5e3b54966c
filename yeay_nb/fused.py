"""Convolution, bias, residual and ReLU as one cuDNN call, for inference models whose norms were folded.

Why: once ``fastpath.fold_batchnorms`` has turned every BatchNorm into a conv bias, PyTorch still runs
each such conv as cuDNN's convolution *and then* a separate full-tensor pass for the bias
(``aten::add_``), one more for the ResNet block's residual and one for the ReLU. Profiled on an H200
(two R50-FPN models, 48 frames at 500/833, tf32): the bias and residual adds took 25% of all GPU time and
the ReLUs 9%, each a memory-bound pass over activations as large as the convolution's output.
``torch.cudnn_convolution_relu`` and ``torch.cudnn_convolution_add_relu`` do them in the convolution's
epilogue (the ops PyTorch's own FX fuser uses). Inference only: the fused ops have no backward. Fused in
tf32 / fp32 only: under autocast (fp16, bf16) the modules run the unfused ops (see FusedConvReLU.forward).

Usage::

    from yeay_nb.fused import fuse_conv_relu
    n = fuse_conv_relu(model)   # after fold_batchnorms; returns how many convs now end in a fused ReLU

On a CPU tensor the modules run the same arithmetic as separate ops (what the unfused model does), so
the rewiring is testable without a GPU; the cuDNN kernels themselves are checked in tests/test_gpu.py.
"""
from __future__ import annotations

import torch
from torch import nn


def available() -> bool:
    """The fused cuDNN ops exist in this torch build and cuDNN runs (not on ROCm, whose MIOpen lacks them,
    nor with ``torch.backends.cudnn.enabled`` off)."""
    return (hasattr(torch, "cudnn_convolution_relu") and hasattr(torch, "cudnn_convolution_add_relu")
            and torch.version.hip is None and torch.backends.cudnn.is_available() and torch.backends.cudnn.enabled)


def _fusable(conv) -> bool:
    return (type(conv) is nn.Conv2d and conv.padding_mode == "zeros" and not isinstance(conv.padding, str))


class FusedConvReLU(nn.Module):
    """``relu(conv(x) + bias [+ z])`` in one call on CUDA; ``z`` is the residual (same shape as the output).

    Fused in the weights' dtype (float32: TF32 as the global flags say); under autocast it runs autocast's
    own conv, bias, add and ReLU (see ``forward``)."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.weight, self.bias = conv.weight, conv.bias
        self.stride, self.padding, self.dilation, self.groups = conv.stride, conv.padding, conv.dilation, conv.groups

    def forward(self, x, z=None):
        if not x.is_cuda or torch.is_autocast_enabled("cuda"):
            # unfused: on a CPU (tests of the wiring), and under autocast, where the fused kernels moved a
            # small R18 Mask R-CNN's fp16 top scores by up to 0.014 (0.0002 unfused) though one layer alone
            # was as accurate as autocast's conv (tests/test_gpu.py; H200, cuDNN of torch 2.11): not understood
            y = nn.functional.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
            if z is not None:
                y += z  # in place, in the conv output's dtype, as torchvision's block does
            return torch.relu_(y)
        if z is None:
            return torch.cudnn_convolution_relu(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                                                self.groups)
        return torch.cudnn_convolution_add_relu(x, self.weight, z, 1.0, self.bias, self.stride, self.padding,
                                                self.dilation, self.groups)


class FusedResidualBlock(nn.Module):
    """torchvision's ResNet ``Bottleneck`` or ``BasicBlock`` with folded norms: a conv+ReLU call for each
    conv but the last, and one conv+residual+ReLU call for the last (the downsample branch stays a plain
    conv with its bias)."""

    def __init__(self, block, convs: list) -> None:
        super().__init__()
        self.convs = nn.ModuleList(FusedConvReLU(c) for c in convs)
        self.downsample = block.downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        for conv in self.convs[:-1]:
            x = conv(x)
        return self.convs[-1](x, identity)


def _folded(*modules) -> bool:
    return all(isinstance(m, nn.Identity) for m in modules)


def _folded_block_convs(block) -> list | None:
    """The convs of a torchvision ResNet block whose norms are all folded, in order; else None."""
    from torchvision.models.resnet import BasicBlock, Bottleneck

    n = {Bottleneck: 3, BasicBlock: 2}.get(type(block))
    if n is None:
        return None
    convs = [getattr(block, f"conv{k}") for k in range(1, n + 1)]
    if not _folded(*(getattr(block, f"bn{k}") for k in range(1, n + 1))) or not all(map(_fusable, convs)):
        return None
    ds = block.downsample
    plain = ds is None or (isinstance(ds, nn.Sequential) and len(ds) == 2 and isinstance(ds[0], nn.Conv2d)
                           and isinstance(ds[1], nn.Identity))
    return convs if plain else None


def fuse_conv_relu(model: nn.Module) -> int:
    """Fuse, in place, every folded ResNet block (bottleneck or basic), the ResNet stem (``conv1``, folded ``bn1``, ``relu``
    of a torchvision ``IntermediateLayerGetter``) and every ``Sequential`` of a conv followed by a ReLU
    (the RPN head, the mask head). Blocks whose norms are not folded (GroupNorm) stay as they are.
    Returns the number of fused convolutions."""
    from torchvision.models._utils import IntermediateLayerGetter

    fused = 0
    for module in list(model.modules()):
        if isinstance(module, IntermediateLayerGetter) and _fusable(module._modules.get("conv1")) \
                and _folded(module._modules.get("bn1")) and isinstance(module._modules.get("relu"), nn.ReLU):
            module._modules["conv1"] = FusedConvReLU(module._modules["conv1"])
            module._modules["relu"] = nn.Identity()
            fused += 1
        if isinstance(module, nn.Sequential):
            kids = list(module._modules.items())
            for k, (name, child) in enumerate(kids):
                convs = _folded_block_convs(child)
                if convs is not None:
                    module._modules[name] = FusedResidualBlock(child, convs)
                    fused += len(convs)
                elif _fusable(child):  # conv, [folded norms], ReLU
                    after = next((kid for kid in kids[k + 1:] if not isinstance(kid[1], nn.Identity)), None)
                    if after is not None and type(after[1]) is nn.ReLU:
                        module._modules[name] = FusedConvReLU(child)
                        module._modules[after[0]] = nn.Identity()
                        fused += 1
    return fused
