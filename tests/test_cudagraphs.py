"""yeay_nb.cudagraphs without a GPU: which calls go to a graph, how many shapes are captured, and that
the model, its state dict and its losses are unchanged. The graphs themselves (capture, replay,
gradients as the weights change) are checked on CUDA in tests/test_gpu.py."""
import inspect
import sys
from pathlib import Path

import pytest
import torch

from yeay_nb import cudagraphs
from yeay_nb.cudagraphs import GraphedBackbone, use_graphed_backbone

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


class _CountingCapture:
    """Stands in for capture_backbone: records each capture; its "graph" calls the backbone eagerly
    and counts replays."""

    def __init__(self):
        self.captured, self.replays = [], 0

    def __call__(self, backbone, x, pool):
        self.captured.append(tuple(x.shape))

        def replay(inp):
            self.replays += 1
            return backbone(inp)
        return replay


def _net():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU()).train()


def test_one_capture_per_shape_up_to_the_cap_then_eager():
    net, cap = _net(), _CountingCapture()
    graphs = GraphedBackbone(net, max_shapes=2, capture=cap)
    a, b, c = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 16), torch.randn(2, 3, 16, 16)
    for x in (a, b, a, c, b, c, a):
        out = graphs(x)
        assert torch.equal(out, net(x))
    assert cap.captured == [(2, 3, 8, 8), (2, 3, 8, 16)]
    assert cap.replays == 5 and graphs.eager_steps == 2
    assert "2 backbone shapes" in graphs.summary() and "2 training steps" in graphs.summary()


class _FakeCard:
    """A card of ``total`` bytes whose captures reserve the next of ``growths`` each; answers as
    cudagraphs.cuda_memory does: (available, total, reserved)."""

    def __init__(self, total, growths):
        self.total, self.reserved, self.growths, self.queries = total, 0, list(growths), 0

    def memory(self, device):
        self.queries += 1
        return self.total - self.reserved, self.total, self.reserved

    def capture(self, inner):
        def cap(backbone, x, pool):
            self.reserved += self.growths.pop(0)
            return inner(backbone, x, pool)
        return cap


def test_a_new_shape_is_captured_only_while_the_card_keeps_room_for_the_largest_capture_so_far():
    lines, cap = [], _CountingCapture()
    card = _FakeCard(total=1000, growths=[100, 400, 50, 50])
    net = _net()
    graphs = GraphedBackbone(net, max_shapes=8, capture=card.capture(cap), log=lines.append, memory=card.memory)
    xs = [torch.randn(1, 3, 8, 8 * (i + 1)) for i in range(5)]
    # 0: the first capture always goes ahead (100); 1: 900 - 100 left >= 10% -> 400 (reserved 500);
    # 2: 500 - 400 = 100 >= 100 -> captured (550); 3: 450 - 400 = 50 < 100 -> eager from now on
    for x in xs + xs:
        assert torch.equal(graphs(x), net(x))
    assert cap.captured == [tuple(x.shape) for x in xs[:3]]
    assert graphs.memory_capped and graphs.eager_steps == 4 and cap.replays == 6
    assert card.reserved == 550 and len(card.growths) == 1
    refusals = [m for m in lines if "no room for another" in m]
    assert len(refusals) == 1 and "3 shapes stay graphed" in refusals[0]
    assert "stopped by the memory" in graphs.summary()
    queries = card.queries
    graphs(torch.randn(1, 3, 16, 16))  # once refused, no new capture is even considered
    assert card.queries == queries and graphs.eager_steps == 5


def test_without_a_memory_reading_the_cap_alone_decides():
    cap = _CountingCapture()
    graphs = GraphedBackbone(_net(), max_shapes=3, capture=cap)  # CPU inputs: no card to read
    for w in (8, 16, 24, 32):
        graphs(torch.randn(1, 3, 8, w))
    assert len(cap.captured) == 3 and not graphs.memory_capped
    assert "stopped by the memory" not in graphs.summary()


def test_evaluation_and_no_grad_calls_stay_eager():
    net, cap = _net(), _CountingCapture()
    graphs = GraphedBackbone(net, max_shapes=4, capture=cap)
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        graphs(x)
    net.eval()
    graphs(x)
    assert cap.captured == [] and cap.replays == 0
    net.train()
    graphs(x)
    assert cap.captured == [(1, 3, 8, 8)]


def test_autocast_dtype_is_part_of_the_shape_key():
    net, cap = _net(), _CountingCapture()
    graphs = GraphedBackbone(net, max_shapes=4, capture=cap)
    x = torch.randn(1, 3, 8, 8)
    graphs(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        graphs(x)
    graphs(x)
    assert len(cap.captured) == 2 and cap.replays == 3


def test_the_capture_is_logged_and_max_shapes_is_checked():
    lines = []
    graphs = GraphedBackbone(_net(), max_shapes=1, capture=_CountingCapture(), log=lines.append)
    graphs(torch.randn(2, 3, 8, 16))
    assert len(lines) == 1 and "cuda graph 1/1" in lines[0] and "2x3x8x16" in lines[0]
    with pytest.raises(ValueError, match="max_shapes"):
        GraphedBackbone(_net(), max_shapes=0)


def _small_model():
    from yeay_nb.models import build_model

    torch.manual_seed(0)
    return build_model({"arch": "maskrcnn", "backbone": "resnet18", "norm": "gn", "heads": "light",
                        "num_classes": 5, "min_size": 128, "max_size": 192}).train()


def test_the_batched_model_sends_its_backbone_through_the_dispatcher_and_nothing_else_changes():
    from bench_train_ops import make_batch

    model = _small_model()
    keys = list(model.state_dict())
    images, targets = make_batch(2, 128, 192, 5, torch.device("cpu"))
    torch.manual_seed(1)
    want = model(images, targets)
    cap = _CountingCapture()
    graphs = use_graphed_backbone(model, 2, capture=cap)
    torch.manual_seed(1)
    got = model(images, targets)
    assert cap.captured and cap.replays == 1
    assert {k: float(v) for k, v in got.items()} == {k: float(v) for k, v in want.items()}
    assert list(model.state_dict()) == keys  # a plain attribute: no module, no state-dict entry
    assert graphs not in list(model.modules())
    model.eval()
    with torch.no_grad():
        model(images)
    assert cap.replays == 1  # inference stays eager
    cudagraphs.drop_graphed_backbone(model)
    assert "graphed_backbone" not in model.__dict__ and graphs.graphs == {}


def test_torchvisions_own_model_is_refused():
    from yeay_nb.fasttrain import uninstall

    model = uninstall(_small_model())
    with pytest.raises(TypeError, match="batched_heads"):
        use_graphed_backbone(model, 2)


def test_capture_is_thread_local_on_old_and_new_torch(monkeypatch):
    # this torch's make_graphed_callables takes the mode itself: no patching
    if "capture_error_mode" in inspect.signature(torch.cuda.make_graphed_callables).parameters:
        kw = {}
        plain = torch.cuda.graph
        with cudagraphs._thread_local_capture(kw):
            assert torch.cuda.graph is plain
        assert kw == {"capture_error_mode": "thread_local"}

    # torch 2.11 (the lent GPU machine) has no such argument: torch.cuda.graph defaults to the mode
    def old_make_graphed_callables(callables, sample_args, num_warmup_iters=3, allow_unused_input=False, pool=None):
        pass

    monkeypatch.setattr(torch.cuda, "make_graphed_callables", old_make_graphed_callables)
    plain = torch.cuda.graph
    kw = {}
    with cudagraphs._thread_local_capture(kw):
        patched = torch.cuda.graph
        assert patched is not plain and issubclass(patched, plain)
        mode = inspect.signature(patched.__init__).parameters["capture_error_mode"].default
        assert mode == "thread_local"
    assert torch.cuda.graph is plain and kw == {}


def test_params_check_cuda_graph_shapes(tmp_path):
    from yeay_nb.params import ParamsError, load_params

    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  cuda_graph_shapes: -1\n")
    with pytest.raises(ParamsError, match="cuda_graph_shapes"):
        load_params(bad)
    bad.write_text("train:\n  cuda_graph_shapes: 4\n  batched_heads: false\n")
    with pytest.raises(ParamsError, match="batched_heads"):
        load_params(bad)
