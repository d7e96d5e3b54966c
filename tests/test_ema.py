"""The moving average of the weights (yeay_nb.ema) against the formula it implements."""
from __future__ import annotations

import pytest
import torch

from yeay_nb.ema import WeightEma


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 3))


def test_average_follows_the_ramped_decay_and_copies_integer_buffers():
    net = _net()
    ema = WeightEma(net, decay=0.9)
    expect = {k: v.detach().clone().double() for k, v in net.state_dict().items() if v.is_floating_point()}
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    decays = []
    for step in range(100):  # the ramp (1 + n) / (10 + n) reaches 0.9 at n = 80
        net.train()
        (net(torch.randn(8, 4) + 2) - 1).pow(2).mean().backward()  # BatchNorm's running stats and counter move too
        opt.step()
        opt.zero_grad()
        d = min(0.9, (1 + step) / (10 + step))
        decays.append(ema.current_decay())
        ema.update(net)
        for k, v in net.state_dict().items():
            if v.is_floating_point():
                expect[k] = d * expect[k] + (1 - d) * v.double()
    assert decays[0] == pytest.approx(0.1) and decays[-1] == pytest.approx(0.9) and ema.updates == 100
    got = ema.state_dict()
    for k, v in expect.items():
        torch.testing.assert_close(got[k].double(), v, rtol=1e-5, atol=1e-6, msg=k)
        assert not torch.allclose(got[k], net.state_dict()[k])  # an average, not a copy of the weights
    assert int(got["0.num_batches_tracked"]) == 100  # integer buffers are copied, not averaged
    assert not any(p.requires_grad for p in ema.module.parameters())
    # a restored average goes on from where it was
    again = WeightEma(_net(), decay=0.9)
    again.load_state_dict(got, ema.updates)
    assert again.current_decay() == ema.current_decay()
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), got.values()))
    # another model object (same architecture) is paired anew: the average moves towards it
    other = _net()
    with torch.no_grad():
        for p in other.parameters():
            p.add_(1.0)
    before, d = {k: v.clone().double() for k, v in ema.state_dict().items()}, ema.current_decay()
    ema.update(other)
    for k, v in other.state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(ema.state_dict()[k].double(), d * before[k] + (1 - d) * v.double(),
                                       rtol=1e-5, atol=1e-6, msg=k)
    with pytest.raises(ValueError, match="decay"):
        WeightEma(net, 1.0)
