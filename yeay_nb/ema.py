"""An exponential moving average of a model's weights, for evaluation and inference.

Usage::

    ema = WeightEma(model, decay=0.999)
    for batch in loader:
        ...; optimizer.step()
        ema.update(model)
    evaluate(ema.module, ...)

The decay ramps up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates (as TensorFlow's
``ExponentialMovingAverage`` with ``num_updates`` does), so the average is not dominated by the
random initial weights in a short run. Each update is one ``torch._foreach_lerp_`` over all
floating-point tensors through :func:`torch.optim.swa_utils.get_ema_multi_avg_fn`; unlike
``AveragedModel.update_parameters`` it reads no device value on the host, so it adds no
synchronisation to a training step. Integer buffers (BatchNorm's counters) are copied. The two
models' tensors are paired once, on the first update from a model (walking ~400 modules for their
state dicts at every step was host time on the training step's critical path): a model's tensors
keep their identity while it trains, since the optimizer and ``load_state_dict`` write in place.
"""
from __future__ import annotations

import copy
from collections import defaultdict

import torch
from torch import nn
from torch.optim.swa_utils import get_ema_multi_avg_fn


class WeightEma:
    """The average lives in ``self.module`` (a frozen copy of the model, same device)."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.updates = 0
        self._source = None  # the model the pairs below were made for
        self._float_groups: list[tuple[list, list]] = []  # (averaged, current) per device and dtype
        self._int_pairs: list[tuple] = []
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    def current_decay(self) -> float:
        """The decay the next update uses."""
        n = self.updates
        return min(self.decay, (1.0 + n) / (10.0 + n))

    def _pair_with(self, model: nn.Module) -> None:
        groups: dict[tuple, tuple[list, list]] = defaultdict(lambda: ([], []))
        mine = list(self.module.state_dict(keep_vars=True).values())
        theirs = list(model.state_dict(keep_vars=True).values())
        if len(mine) != len(theirs):
            raise ValueError(f"ema: the model has {len(theirs)} tensors, the average {len(mine)}")
        ints = []
        for a, b in zip(mine, theirs):
            if a.is_floating_point():
                g = groups[(a.device, a.dtype)]
                g[0].append(a.detach())
                g[1].append(b.detach())
            else:
                ints.append((a.detach(), b.detach()))
        self._source, self._float_groups, self._int_pairs = model, list(groups.values()), ints

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards ``model``'s current weights (same architecture as at init)."""
        if model is not self._source:
            self._pair_with(model)
        lerp = get_ema_multi_avg_fn(self.current_decay())
        for averaged, current in self._float_groups:
            lerp(averaged, current, None)
        for a, b in self._int_pairs:
            a.copy_(b)
        self.updates += 1

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict, updates: int) -> None:
        self.module.load_state_dict(state)
        self.updates = int(updates)
