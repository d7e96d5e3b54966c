"""The embedded default (params/demo.yaml) trains a light model on the synthetic wardrobe in about
5 minutes on a 2-core CPU and clearly learns: box AP50 on its validation split well above an
untrained model's, and people found (the issue's CPU result; numbers in benchmarks/RESULTS.md)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from yeay_nb.convert.step import run_convert
from yeay_nb.evaluate import evaluate
from yeay_nb.models import build_model, load_checkpoint
from yeay_nb.params import load_params
from yeay_nb.train import train

ROOT = Path(__file__).resolve().parents[1]
ITERS = 290


@pytest.mark.slow
def test_demo_params_train_a_model_that_clearly_learns(tmp_path):
    demo = load_params(ROOT / "params" / "demo.yaml")
    assert demo.train.time_budget_s and demo.train.time_budget_s <= 300  # "about 5 minutes"
    # The demo stops on its time budget (294 iterations in 270 s on the idle 2-core machine, lr drops
    # at 75% and 92% of the budget). A test must not depend on how busy the machine is, so it runs
    # that schedule by iterations: the same lr drops at the same fractions of ITERS iterations.
    frac = [s / demo.train.max_iter for s in demo.train.steps]
    p = load_params(ROOT / "params" / "demo.yaml", {
        "work_dir": str(tmp_path), "convert.synth.num_videos": 0, "train.time_budget_s": None,
        "train.max_iter": ITERS, "train.steps": [round(f * ITERS) for f in frac]})
    run_convert(p, progress=False)
    torch.manual_seed(0)
    result = train(p, progress=False)
    trained = result.eval["bbox"]
    torch.manual_seed(0)
    untrained_model = build_model(load_checkpoint(result.final_checkpoint)["model_config"])
    untrained = evaluate(untrained_model, p.train.coco_json, "val", progress=False, num_workers=0)["bbox"]
    # measured on the 2-core machine: AP50 0.069 (person 0.67) trained vs ~0.000 untrained
    assert trained["AP50"] > 0.03 and trained["AP50"] > untrained["AP50"] + 0.025, (trained["AP50"], untrained["AP50"])
    assert trained["per_class"]["person"]["AP50"] > 0.3, trained["per_class"]["person"]
    assert "segm" in result.eval and result.eval["segm"]["mask_classes"] == ["person"]
