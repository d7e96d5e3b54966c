"""Every benchmark script runs in its small CPU mode, so none of them rots between GPU sessions.

These check that each script finishes and that its own correctness checks hold (same results
on both sides); the timings they print are not asserted (benchmarks/RESULTS.md has the real runs).
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CCP = ROOT.parent / "shared" / "data" / "ccp"


def _run(args: list[str], timeout: float = 600) -> str:
    r = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{args[0]} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


def _last_json(stdout: str) -> dict:
    return json.loads([line for line in stdout.splitlines() if line.startswith("{")][-1])


@pytest.mark.slow
def test_bench_scaling_tiny_trains_and_shards_over_two_cpu_processes(tmp_path):
    out = _run(["benchmarks/bench_scaling.py", "--tiny", "--json", str(tmp_path / "s.json")])
    res = json.loads((tmp_path / "s.json").read_text())
    assert [r["gpus"] for r in res["train"]] == [1, 2] and all(r["img_per_s"] > 0 for r in res["train"])
    # the 2-process run derives half the iterations at twice the lr from the same file
    one, two = res["train"]
    assert two["max_iter"] * 2 == one["max_iter"] and two["lr"] == pytest.approx(2 * one["lr"])
    assert all(r["same_as_first"] for r in res["schedule"])
    # every manifest entry is done exactly once, whether one process or two share it
    assert [(r["gpus"], r["videos"], r["failed"]) for r in res["infer"]] == [(1, 2, 0), (2, 2, 0)]
    assert res["infer"][0]["frames"] == res["infer"][1]["frames"] > 0
    assert "sharded inference" in out


def test_bench_train_tiny_reports_both_sides(tmp_path):
    res = _last_json(_run(["benchmarks/bench_train.py", "--tiny", "--iters", "3", "--warmup", "1", "--norm", "gn",
                           "--heads-ablation", "--gn-ablation", "--cuda-graphs", "2", "--profile-out", str(tmp_path / "prof")]))
    assert res["naive_img_per_s"] > 0 and res["ours_img_per_s"] > 0 and res["ours_torchvision_heads_img_per_s"] > 0
    # on a CPU the graphs are ignored (CUDA only): the run and its ratios still come out
    assert res["ours_cuda_graphs_img_per_s"] > 0 and res["config"]["cuda_graphs"] == 2
    assert res["cuda_graphs_vs_ours"] == pytest.approx(res["ours_cuda_graphs_img_per_s"] / res["ours_img_per_s"], rel=0.02)
    assert res["ours_float32_groupnorm_img_per_s"] > 0 and res["config"]["norm"] == "gn"
    assert res["speedup"] == pytest.approx(res["ours_img_per_s"] / res["naive_img_per_s"], rel=0.02)
    assert 0 <= res["ours_loader_wait_share"] <= 1
    # the profiled run: window [3, 6] of a 4-iteration run ends with the run, and is named for what it traced
    assert sorted(p.name for p in (tmp_path / "prof").iterdir()) == ["profile_3-4.json.gz", "profile_3-4.txt"]
    assert "aten::" in (tmp_path / "prof" / "profile_3-4.txt").read_text()


def test_bench_infer_cpu_small_gives_the_same_items_as_the_naive_loop():
    res = _last_json(_run(["benchmarks/bench_infer_cpu.py", "--frames", "4", "--backbone", "mobilenet_v3",
                           "--test-size", "128", "--batch-size", "2", "--threads", "1"]))
    assert res["frames"] == 4 and res["same_items"] is True
    assert res["naive_fps"] > 0 and res["pipeline_fps"] > 0


@pytest.mark.skipif(not CCP.is_dir(), reason=f"Clothing Co-Parsing data not found at {CCP}")
def test_bench_convert_ccp_small_matches_the_naive_converter():
    out = _run(["benchmarks/bench_convert_ccp.py", "--limit", "12", "--workers", "2"])
    assert out.count("same as naive: True") == 2
    assert "byte-identical: True" in out


@pytest.mark.slow
def test_bench_infer_gpu_tiny_matches_the_naive_loop(tmp_path):
    """The GPU benchmark's CPU mode: both sides run, and ours gives the naive loop's items and masks."""
    res = _last_json(_run(["benchmarks/bench_infer_gpu.py", "--tiny", "--ablate", "DENSE_RPN_NMS", "--repeat", "2",
                           "--json", str(tmp_path / "r.json")]))
    check = res["check"]
    assert check["items_naive"] > 0 and check["match_rate"] == 1.0 and check["box_iou_ge_0.99"] == 1.0
    assert check["masks_naive"] > 0 and check["masks_matched"] == check["masks_naive"]
    assert check["mask_iou_ge_0.98"] == 1.0
    full = json.loads((tmp_path / "r.json").read_text())
    assert full["check_fp32"]["match_rate"] == 1.0
    assert full["ours_fp32"]["fps"] > 0
    # the headline runs at the product's default precision; the others are rows of their own, timed
    # and checked too (a CPU computes bf16, fp16 and tf32 as fp32: exact)
    assert full["precision"] == "tf32"
    assert [r["precision"] for r in full["precisions"]] == ["bf16", "fp16"]
    assert all(r["fps"] > 0 and r["match_rate"] == 1.0 for r in full["precisions"])
    for r in full["precisions"]:  # each alternated with runs at the default precision
        assert len(r["fps_runs"]) == len(r["default_runs"]) == 2
        assert r["vs_default"] == pytest.approx(r["fps"] / r["default_fps"], rel=0.01)
    assert res["naive"]["fps"] > 0 and res["best"]["fps"] > 0
    # a switch flipped for one row (the batch-wide RPN NMS): timed, and still the naive loop's items
    (dense,) = full["ablations"]
    assert dense["switch"] == "DENSE_RPN_NMS" and dense["to"] is True and dense["fps"] > 0
    assert dense["match_rate"] == 1.0 and dense["box_iou_ge_0.99"] == 1.0
    # timed in alternation with the defaults (--repeat 2): its own pairs give vs_default
    assert full["repeat"] == 2 and len(dense["fps_runs"]) == 2 and len(dense["default_runs"]) == 2
    assert dense["default_fps"] == pytest.approx(statistics.median(dense["default_runs"]), abs=0.01)
    assert dense["fps"] == pytest.approx(statistics.median(dense["fps_runs"]), abs=0.01)
    # (the rates are rounded to 0.01 and a CPU runs ~1-2 frames/s: 1% slack for the rounding)
    assert dense["vs_default"] == pytest.approx(dense["fps"] / dense["default_fps"], rel=0.01)
    # each run's stages: the loop's wall time split (start ... write), both sides of the pair
    for stages in (dense["stages_s"], dense["default_stages_s"]):
        assert len(stages) == 2 and all({"start", "wait_frames", "wait_models", "write"} <= set(st) for st in stages)
    assert len(full["naive"]["fps_runs"]) == 2 and len(full["ours"][0]["fps_runs"]) == 2


def test_bench_infer_gpu_levers_are_the_fast_paths_switches():
    """Every switch a bare --ablate flips is a boolean of yeay_nb.fastpath (a renamed or removed one
    would break the GPU run only), and every boolean switch there is among them."""
    import importlib.util

    from yeay_nb import fastpath

    spec = importlib.util.spec_from_file_location("bench_infer_gpu_levers", ROOT / "benchmarks" / "bench_infer_gpu.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert all(isinstance(getattr(fastpath, name), bool) for name in mod.LEVERS)
    switches = {k for k, v in vars(fastpath).items() if k.isupper() and isinstance(v, bool)}
    assert switches - {"CPU_NMS_BY_GROUP"} == set(mod.LEVERS)


@pytest.mark.slow
def test_bench_infer_gpu_runs_a_trained_checkpoint_as_both_models(tmp_path):
    """--trained: one Mask R-CNN checkpoint (a CCP-like class list with 'person') gives the person
    model and, without its mask head, the clothing model; the fp32 check still matches exactly."""
    import torch

    from yeay_nb.models import build_model, load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    classes = ["__background__", "person", "shirt", "pants"]
    cfg = {"arch": "maskrcnn", "backbone": "resnet18", "norm": "gn", "heads": "light", "num_classes": 4}
    ckpt = save_checkpoint(tmp_path / "ccp.pt", model=build_model(cfg), classes=classes, model_config=cfg)
    res = _last_json(_run(["benchmarks/bench_infer_gpu.py", "--tiny", "--trained", str(ckpt), "--person", "calibrated",
                           "--json", str(tmp_path / "r.json")]))
    full = json.loads((tmp_path / "r.json").read_text())
    # --person calibrated: the production pair's layouts, a folded-BN (COCO) person model beside the GN one
    assert full["weights"] == f"trained: {ckpt}, person model calibrated"
    assert full["models"]["person"] == {"arch": "maskrcnn", "backbone": "resnet18", "norm": "frozen_bn"}
    assert full["models"]["clothing"] == {"arch": "fasterrcnn", "backbone": "resnet18", "norm": "gn"}
    assert full["check_fp32"]["items_naive"] > 0 and full["check_fp32"]["match_rate"] == 1.0
    assert res["naive"]["fps"] > 0 and res["best"]["fps"] > 0
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_infer_gpu", ROOT / "benchmarks" / "bench_infer_gpu.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    (tmp_path / "y").mkdir()
    person, clothing = (load_checkpoint(p) for p in mod.trained_checkpoints(tmp_path / "y", ckpt, 128, 224))
    assert person["model_config"]["arch"] == "maskrcnn" and clothing["model_config"]["arch"] == "fasterrcnn"
    assert not any(k.startswith("roi_heads.mask_") for k in clothing["model"])
    assert all(torch.equal(v, person["model"][k]) for k, v in clothing["model"].items())
    for c in (person, clothing):
        cfg_ = c["model_config"]
        assert (cfg_["test_min_size"], cfg_["test_max_size"], cfg_["box_detections_per_img"]) == (128, 224, 100)
    other = save_checkpoint(tmp_path / "np.pt", model=build_model(cfg), classes=["__background__", "a", "b", "c"],
                            model_config=cfg)
    with pytest.raises(SystemExit, match="needs a Mask R-CNN checkpoint with a 'person' class"):
        mod.trained_checkpoints(tmp_path / "y", other, 128, 224)


def test_bench_train_ops_counts_fewer_host_syncs_for_the_batched_heads(tmp_path):
    _run(["benchmarks/bench_train_ops.py", "--sizes", "96x128", "--batches", "2", "6", "--steps", "1",
          "--rois", "64", "--rpn-top-n", "300", "150", "--json", str(tmp_path / "ops.json")])
    rows = {(r["batch"], r["side"]): r for r in json.loads((tmp_path / "ops.json").read_text())["rows"]}
    for b in (2, 6):
        tv, ours = rows[b, "torchvision"], rows[b, "batched"]
        assert ours["sync_ops"] < tv["sync_ops"] and ours["fwd_ops"] < tv["fwd_ops"], (tv, ours)
    # torchvision's host work grows with every image; the batched targets' much more slowly
    grow = {side: rows[6, side]["fwd_ops"] - rows[2, side]["fwd_ops"] for side in ("torchvision", "batched")}
    assert grow["batched"] * 2 < grow["torchvision"], grow
    assert rows[6, "torchvision"]["sync_ops"] - rows[2, "torchvision"]["sync_ops"] >= 4 * 10  # >= 10 per image


def test_bench_train_levers_times_each_lever_on_the_cpu(tmp_path):
    _run(["benchmarks/bench_train_levers.py", "--sizes", "96x128", "--batch", "2", "--steps", "1", "--rois", "32",
          "--curve", "6", "--json", str(tmp_path / "levers.json")])
    res = json.loads((tmp_path / "levers.json").read_text())
    assert [r["side"] for r in res["rows"]] == ["torchvision", "batched_targets", "+streamed_nms", "+bf16_groupnorm"]
    assert all(r["step_ms"] > 0 and r["img_per_s"] > 0 for r in res["rows"])
    assert res["config"]["norm"] == "gn" and res["config"]["batch"] == 2
    curves, gaps = res["curve"]["curves"], res["curve"]["mean_gap_second_half"]
    assert all(len(c) == 6 for c in curves.values())
    # no autocast on a CPU: bf16 GroupNorm is float32 GroupNorm there, step for step; other draws differ
    assert curves["bf16_gn"] == curves["float32_gn"] and gaps["bf16_vs_float32"] == 0
    assert curves["float32_gn_other_draws"] != curves["float32_gn"]


def test_bench_multiscale_pads_less_with_one_scale_per_batch(tmp_path):
    _run(["benchmarks/bench_multiscale.py", "--batches", "15", "--json", str(tmp_path / "ms.json")])
    res = json.loads((tmp_path / "ms.json").read_text())
    per_image, per_batch = res["rows"]
    assert (per_image["scale_per"], per_batch["scale_per"]) == ("image", "batch")
    # same images, same scale list: a batch drawn at one scale is padded only for aspect ratios
    assert per_batch["content_share"] > 0.95 > per_image["content_share"]
    assert per_batch["padded_px_per_image"] < per_image["padded_px_per_image"]
    assert res["padded_px_ratio"] > 1.2


def test_sweep_next_round_combines_winners_and_never_repeats_a_run(tmp_path):
    """scripts/sweep_summary.py: the next round's specs combine the levers that beat the base by more
    than the base's seed noise, skip clashing keys, and never propose a run that exists (same name or
    same overrides: its folder would resume it, and two GPUs with one spec would share a folder)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from sweep_summary import _pairs, next_specs, run_summary, with_gains
    finally:
        sys.path.remove(str(ROOT / "scripts"))

    def run(name, pm, cl, ov):
        d = tmp_path / name
        d.mkdir()
        per = {"person": {"AP": pm + 0.02, "num_gt": 50}, "shirt": {"AP": cl - 0.01, "num_gt": 30},
               "hat": {"AP": cl + 0.01, "num_gt": 9}, "rare": {"AP": -1.0, "num_gt": 0}}
        per |= {f"c{i}": {"AP": 0.0, "num_gt": 1} for i in range(15)}  # rare classes at 0 AP
        (d / "eval.json").write_text(json.dumps({"num_images": 200, "bbox": {"per_class": per},
                                                 "segm": {"per_class": {"person": {"AP": pm}}}}))
        (d / "metrics.jsonl").write_text("\n".join(json.dumps({"iteration": i, "img_per_s": 90.0 + i})
                                                   for i in (20, 40, 60)))
        (d / "overrides.txt").write_text(ov + "\n")
        return run_summary(d)

    runs = [run("base", 0.77, 0.15, ""), run("base_s1", 0.76, 0.15, "-p run.seed 1"),
            run("a", 0.79, 0.16, "-p train.rois_per_image 256"), run("b", 0.78, 0.17, "-p train.heads mlp"),
            run("c", 0.78, 0.16, "-p train.rois_per_image 128"), run("d", 0.75, 0.14, "-p train.base_lr 0.03")]
    assert runs[2]["iters"] == 60 and runs[2]["img_per_s"] == 130.0
    assert runs[2]["clothing_box_ap"] == pytest.approx(0.32 / 17) and runs[2]["person_box_ap"] == pytest.approx(0.81)
    # the 16 most frequent clothing classes: shirt, hat and 14 of the 0-AP ones
    assert runs[2]["clothing_box_ap_top16"] == pytest.approx(0.32 / 16)
    runs, noise = with_gains(runs)
    assert noise == pytest.approx(0.01)
    specs = next_specs(runs, noise, 4)
    names = [s.split("|")[0] for s in specs]
    assert names[0] in ("a+b", "b+a") and _pairs(specs[0].split("|")[1]) == {"train.rois_per_image": "256",
                                                                              "train.heads": "mlp"}
    assert not any("c" in n.split("+") and "a" in n.split("+") for n in names)  # both set rois_per_image
    assert len(set(names)) == len(names) and not {"base", "a", "b", "c", "d"} & set(names)
    assert any(n.endswith("+s1") and "run.seed 1" in s for n, s in zip(names, specs))
    # once a+b has run, it is not proposed again (neither by name nor by its overrides)
    runs2, noise2 = with_gains(runs + [run(names[0], 0.8, 0.18, specs[0].split("|")[1])])
    again = next_specs(runs2, noise2, 4)
    assert specs[0] not in again and all(_pairs(s.split("|")[1]) != _pairs(specs[0].split("|")[1]) for s in again)
    # a run scored again at another test scale (run@tsS) is listed, but never proposed as a lever
    runs3, noise3 = with_gains(runs + [run("a@ts480", 0.85, 0.25, "-p train.rois_per_image 256 -p train.test_scale 480")])
    assert any(r["name"] == "a@ts480" and r["gain"] > 0.05 for r in runs3)  # the best row of all
    assert not any("test_scale" in s or "@" in s.split("|")[0] for s in next_specs(runs3, noise3, 8))


def test_sweep_summary_reads_several_calls_and_needs_no_base_for_the_table(tmp_path):
    """Several folders or sweep.tgz files (one per call) are one table; without a run named base the
    rows have no gains and --next refuses; a run name in two folders is an error naming both."""
    def run(root, name, pm, cl):
        d = tmp_path / root / name
        d.mkdir(parents=True)
        per = {"person": {"AP": pm, "num_gt": 50}, "shirt": {"AP": cl, "num_gt": 30}}
        (d / "eval.json").write_text(json.dumps({"num_images": 200, "bbox": {"per_class": per},
                                                 "segm": {"per_class": {"person": {"AP": pm}}}}))
        (d / "metrics.jsonl").write_text(json.dumps({"iteration": 30, "img_per_s": 100.0}) + "\n")
        (d / "overrides.txt").write_text("-p run.seed 1\n" if name.endswith("_s1") else "")

    run("call1", "base", 0.80, 0.17)
    run("call1", "base_s1", 0.82, 0.18)
    run("call2", "cp", 0.78, 0.19)
    import tarfile

    with tarfile.open(tmp_path / "call2.tgz", "w:gz") as tar:  # what a device call brings back
        tar.add(tmp_path / "call2", arcname=".")
    both = _run(["scripts/sweep_summary.py", str(tmp_path / "call1"), str(tmp_path / "call2.tgz")])
    rows = {r["name"]: r for r in json.loads(both.splitlines()[-1])}
    assert set(rows) == {"base", "base_s1", "cp"} and rows["cp"]["gain"] == pytest.approx(-0.03 + 0.015)
    alone = _run(["scripts/sweep_summary.py", str(tmp_path / "call2")])
    assert "no run named 'base'" in alone and json.loads(alone.splitlines()[-1])[0]["gain"] is None
    r = subprocess.run([sys.executable, "scripts/sweep_summary.py", str(tmp_path / "call2"), "--next", "2"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "--next needs a run named 'base'" in r.stderr
    run("call2", "base", 0.7, 0.1)
    r = subprocess.run([sys.executable, "scripts/sweep_summary.py", str(tmp_path / "call1"), str(tmp_path / "call2")],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "'base' is in both" in r.stderr and "call2" in r.stderr


@pytest.mark.slow
def test_eval_scales_rescores_each_run_at_each_test_scale_once(tmp_path):
    """scripts/eval_scales.py: every run folder with model_final.pt gets run@tsS/eval.json scored at
    that test size, the run's overrides plus the test scale (so sweep_summary lists it), its metrics;
    a second call finds nothing left to do; a failing evaluation makes the script fail."""
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        from helpers_train import CLASSES, make_toy_coco
    finally:
        sys.path.remove(str(ROOT / "tests"))
    from yeay_nb.models import build_model, full_config, save_checkpoint

    toy = make_toy_coco(tmp_path / "toy", n_images=8, size=(96, 64))
    cfg = full_config({"arch": "maskrcnn", "backbone": "mobilenet_v3", "norm": "gn", "num_classes": 3, "min_size": 64,
                       "max_size": 96, "test_min_size": 64, "test_max_size": 96, "rpn_post_nms_top_n_test": 20})
    runs = tmp_path / "runs"
    (runs / "lr04").mkdir(parents=True)
    (runs / "unfinished").mkdir()  # no model_final.pt: skipped
    save_checkpoint(runs / "lr04" / "model_final.pt", model=build_model(cfg), classes=CLASSES, model_config=cfg)
    (runs / "lr04" / "eval.json").write_text("{}")  # scored by its training: finished
    (runs / "paused").mkdir()  # a stop_after_s snapshot, not yet scored: skipped
    shutil.copy(runs / "lr04" / "model_final.pt", runs / "paused" / "model_final.pt")
    (runs / "lr04" / "overrides.txt").write_text("-p train.base_lr 0.04\n")
    (runs / "lr04" / "metrics.jsonl").write_text('{"iteration": 20, "img_per_s": 90.0}\n')
    args = ["scripts/eval_scales.py", str(runs), "--coco-json", str(toy), "--scales", "96", "128",
            "--gpus", "0", "1", "--workers", "0"]
    out = _run(args)
    assert "2 evaluations" in out
    assert sorted(p.name for p in runs.iterdir()) == ["lr04", "lr04@ts128", "lr04@ts96", "paused", "unfinished"]
    for scale in (96, 128):
        d = runs / f"lr04@ts{scale}"
        ev = json.loads((d / "eval.json").read_text())
        assert ev["test_config"]["test_min_size"] == scale and ev["test_config"]["test_max_size"] == round(scale * 5 / 3)
        assert (d / "overrides.txt").read_text().split() == ["-p", "train.base_lr", "0.04", "-p", "train.test_scale", str(scale)]
        assert (d / "metrics.jsonl").read_text() == (runs / "lr04" / "metrics.jsonl").read_text()
    assert "0 evaluations" in _run(args)
    # a lower score floor: rows of their own (the model's floor lowered too), never more detections dropped
    _run(args[:5] + ["96", "--score-thresh", "0.001", "--gpus", "0", "--workers", "0"])
    low = json.loads((runs / "lr04@ts96-st0.001" / "eval.json").read_text())
    assert low["test_config"]["score_thresh"] == 0.001 and low["test_config"]["test_min_size"] == 96
    assert low["bbox"]["num_detections"] >= json.loads((runs / "lr04@ts96" / "eval.json").read_text())["bbox"]["num_detections"]
    # test-time flip augmentation: rows of their own, scored with the mirrored views merged
    _run(args[:5] + ["96", "--flip", "--gpus", "0", "--workers", "0"])
    flipped = json.loads((runs / "lr04@ts96-flip" / "eval.json").read_text())
    assert flipped["flip"] is True and low.get("flip") is False and flipped["test_config"]["test_min_size"] == 96
    assert (runs / "lr04@ts96-flip" / "overrides.txt").read_text().split()[-6:] == [
        "-p", "train.test_scale", "96", "-p", "train.test_flip", "true"]
    r = subprocess.run([sys.executable, *args[:3], str(tmp_path / "missing.json"), "--scales", "160", "--workers", "0"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "lr04@ts160 failed" in r.stdout


def test_bench_copy_paste_measures_the_loader_against_no_paste(tmp_path):
    if not (CCP / "label_list.mat").is_file():
        pytest.skip(f"CCP data not found at {CCP} (../shared/data/ccp beside the project)")
    res = _last_json(_run(["benchmarks/bench_copy_paste.py", "--limit", "15", "--probs", "1.0",
                           "--json", str(tmp_path / "r.json")]))
    base, cp = res["rows"]
    assert base["copy_paste"] == 0.0 and cp["copy_paste"] == 1.0 and base["images"] == cp["images"] > 0
    assert base["inconsistent_targets"] == cp["inconsistent_targets"] == 0
    assert cp["objects_per_image"] > base["objects_per_image"] and base["x_baseline"] == 1.0
    assert json.loads((tmp_path / "r.json").read_text())["rows"] == res["rows"]


def test_bench_nms_tiny_keeps_the_baselines_boxes(tmp_path):
    """benchmarks/bench_nms.py --tiny: the four NMS variants run on the same RPN-like boxes, each
    timed, and every one keeps the torchvision baseline's boxes in its order (else exit 1)."""
    res = _last_json(_run(["benchmarks/bench_nms.py", "--tiny", "--json", str(tmp_path / "n.json")]))
    base, streams, dense, seg = res["rows"]
    assert base["x_baseline"] == 1.0 and "dense_nms" in dense["variant"] and "nms_images" in streams["variant"]
    assert "segment_nms" in seg["variant"]
    assert all(r["same_as_baseline"] and r["ms_per_batch"] > 0 for r in res["rows"])
    assert 0 < base["kept_per_image"] <= res["top_n"] and res["boxes_per_image"] == 750
    assert json.loads((tmp_path / "n.json").read_text())["rows"] == res["rows"]


def test_bench_backbone_tiny_counts_the_floor_and_times_both_layouts(tmp_path):
    """benchmarks/bench_backbone.py --tiny: FLOPs a frame per part, and the backbone timed in NCHW and
    channels_last with the same outputs as the float32 reference."""
    res = _last_json(_run(["benchmarks/bench_backbone.py", "--tiny", "--json", str(tmp_path / "b.json")]))
    assert json.loads((tmp_path / "b.json").read_text()) == res
    gn, bn = res["norms"]["gn"], res["norms"]["frozen_bn"]
    for part in (gn, bn):
        floor = part["floor"]
        assert floor["gflops_backbone_fpn"] > 1 and floor["gflops_box_head_1000_proposals"] > 1
        assert floor["gflops_mask_head_per_roi"] > 0 and floor["fpn_features_mb_per_frame_fp32"] > 0
        assert [r["variant"] for r in part["rows"]] == ["nchw fp32 eager", "nhwc fp32 eager"]
        assert all(r["ms_per_batch"] > 0 and r["max_rel_diff_vs_fp32"] < 1e-4 for r in part["rows"])
        assert part["rows"][0]["x_baseline"] == 1.0
    # the GN layout's RPN head has two 3x3 convolutions where the frozen-BN layout has one
    assert gn["floor"]["gflops_rpn_head"] == pytest.approx(2 * bn["floor"]["gflops_rpn_head"], rel=0.02)


def test_sweep_resume_only_stops_at_once_on_a_machine_without_the_runs(tmp_path):
    """RESUME_ONLY=1 (the later calls of a run split by stop_after_s): a variant without a checkpoint
    means the machine is fresh; the script stops with its own exit code instead of training from 0."""
    name = f"resume-check-{tmp_path.name}"
    r = subprocess.run(["bash", "scripts/device_sweep_ccp.sh", f"{name}|-p run.seed 1"], cwd=ROOT, capture_output=True,
                       text=True, timeout=60, env={**os.environ, "RESUME_ONLY": "1", "OUT": str(tmp_path / "out")})
    assert r.returncode == 5 and f"no /tmp/ccpruns/{name}/model_final.pt" in r.stderr
    assert not (Path("/tmp/ccpruns") / name).exists()  # nothing was started


def test_sweep_script_names_the_missing_data_copy(tmp_path):
    """CCP_DATA picks another shrunk copy of CCP (e.g. a 480-pixel one); on a machine that has
    neither it nor its carried folder the script stops at once and names that copy."""
    name = f"data-check-{tmp_path.name}"
    r = subprocess.run(["bash", "scripts/device_sweep_ccp.sh", f"{name}|"], cwd=ROOT, capture_output=True,
                       text=True, timeout=60,
                       env={**os.environ, "CCP_DATA": f"ccp-absent-{tmp_path.name}", "OUT": str(tmp_path / "out")})
    assert r.returncode == 4
    assert f"no /tmp/ccp-absent-{tmp_path.name} and no .device/ccp-absent-{tmp_path.name}" in r.stderr
    assert not (Path("/tmp/ccpruns") / name).exists()  # nothing was started


def _detached(tmp_path, *args, **env):
    return subprocess.run(["bash", "scripts/device_detached.sh", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "DETACHED_DIR": str(tmp_path / "state"),
                                           "OUT": str(tmp_path / "out"), **env})


def test_detached_run_outlives_its_call_and_brings_back_its_results(tmp_path):
    """scripts/device_detached.sh: the first call starts the run in its own session and returns while it
    runs; a later call waits for it and gets its results and exit status. A stand-in sweep that writes
    its arguments and exits 3 plays the training."""
    fake = tmp_path / "fake_sweep.sh"
    fake.write_text('ps -o sid= -p $$ > "$OUT/../sid"; sleep 3; mkdir -p "$OUT"; printf "%s\\n" "$@" > "$OUT/sweep.txt"; exit 3\n')
    r = _detached(tmp_path, "r20|-p train.time_budget_s 1200", START="1", WAIT_S="0", SWEEP=str(fake))
    assert r.returncode == 0 and "RUNNING" in r.stdout, r.stderr
    assert not (tmp_path / "out" / "sweep.txt").exists()
    # the run lives in its own process session: it goes on after the starting call has returned
    again = _detached(tmp_path, "x|", START="1", WAIT_S="0", SWEEP=str(fake))
    assert again.returncode == 6 and "already started" in again.stderr
    r = _detached(tmp_path, WAIT_S="30")
    assert r.returncode == 3 and "ENDED" in r.stdout and "exit status 3" in r.stdout, r.stdout + r.stderr
    assert (tmp_path / "out" / "sweep.txt").read_text() == "r20|-p train.time_budget_s 1200\n"
    # a session of its own (setsid): the device harness kills a call's leftovers except such ones
    assert int((tmp_path / "state" / "sid").read_text()) != os.getsid(0)


def test_detached_wait_on_a_fresh_machine_stops_at_once(tmp_path):
    """A later call that finds no run (its machine went back in between) says so with its own exit code."""
    r = _detached(tmp_path, WAIT_S="30")
    assert r.returncode == 5 and "a fresh machine" in r.stderr
    assert _detached(tmp_path, START="1").returncode == 2  # START without the run's arguments


def test_bench_train_times_ours_over_the_whole_window_after_the_warm_up():
    """bench_train.py reads ours from metrics.jsonl: from the row at the warm-up's end to the last row,
    not the last row's own window (which, with log_every = warm-up, held only the last few iterations)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_train", ROOT / "benchmarks" / "bench_train.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rows = [{"iteration": 1, "loss": 1.0, "time": 1.0, "data_s": 0.5, "img_per_s": 5.0},
            {"iteration": 10, "loss": 1.0, "time": 10.0, "data_s": 0.0, "img_per_s": 20.0},
            {"iteration": 20, "loss": 1.0, "time": 12.0, "data_s": 0.1, "img_per_s": 80.0},   # 10 its in 2 s
            {"iteration": 25, "loss": 1.0, "time": 20.0, "data_s": 0.4, "img_per_s": 10.0}]   # 5 its in 8 s
    ips, wait = mod.timed_window(rows, warmup=10, batch=16)
    assert ips == pytest.approx(15 * 16 / 10.0)  # 24 img/s over iterations 11-25, not the last row's 10
    assert wait == pytest.approx((10 * 0.1 + 5 * 0.4) / 10.0)
    with pytest.raises(ValueError, match="warm-up's end"):
        mod.timed_window(rows, warmup=12, batch=16)


def _trace_phases():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import trace_phases
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return trace_phases


def _ann(name, ts, dur):
    """An optimizer annotation as torch.profiler writes it."""
    return {"cat": "user_annotation", "name": f"Optimizer.{name}#SGD.{name}", "ts": ts, "dur": dur}


def test_trace_phases_splits_forward_and_backward_and_counts_idle_gpu_time():
    """benchmarks/trace_phases.py on a hand-made trace: two steps, kernels on two streams that overlap
    (counted once), a forward with a gap the GPU sat idle in, a backward without one."""
    phase_idle, ann = _trace_phases().phase_idle, _ann

    def kern(ts, dur):
        return {"cat": "kernel", "name": "k", "ts": ts, "dur": dur}

    events = [ann("zero_grad", 0, 1), ann("step", 100, 10),                 # backward 1: [0, 100)
              ann("zero_grad", 300, 1), ann("step", 400, 10),               # forward [110, 300), backward [300, 400)
              kern(0, 60), kern(50, 50),                                    # backward 1 busy throughout
              kern(110, 40), kern(230, 70),                                 # forward: idle 150..230 = 80 µs
              kern(300, 100), kern(320, 30),                                # backward 2: busy, two streams
              {"cat": "cpu_op", "name": "aten::add", "ts": 150, "dur": 5}]
    out = phase_idle({"traceEvents": events})
    assert [p["phase"] for p in out["phases"]] == ["backward", "forward", "backward"]
    fwd = out["phases"][1]
    assert fwd["host_ms"] == pytest.approx(0.190) and fwd["gpu_idle_ms"] == pytest.approx(0.080)
    assert out["backward_gpu_idle_share"] == pytest.approx(0.0)
    assert out["forward_gpu_idle_share"] == pytest.approx(80 / 190)
    assert out["gpu_busy_ms"] == pytest.approx(0.310) and out["gpu_span_ms"] == pytest.approx(0.400)
    with pytest.raises(ValueError, match="no GPU kernels"):
        phase_idle({"traceEvents": [ann("zero_grad", 0, 1)]})


def test_trace_phases_windows_of_the_first_forward():
    """``--windows``: the first whole forward (after the first Optimizer.step, up to the next
    zero_grad) in fixed windows, with the GPU's busy share, launches and only top-level ops."""
    forward_windows, ann = _trace_phases().forward_windows, _ann

    def op(name, ts, dur, tid=1):
        return {"cat": "cpu_op", "name": name, "ts": ts, "dur": dur, "tid": tid}

    events = [ann("zero_grad", 0, 1), ann("step", 100, 10), ann("zero_grad", 300, 1), ann("step", 400, 10),
              {"cat": "kernel", "name": "k", "ts": 110, "dur": 40}, {"cat": "kernel", "name": "k", "ts": 230, "dur": 70},
              {"cat": "cuda_runtime", "name": "cudaLaunchKernel", "ts": 112, "dur": 2},
              {"cat": "cuda_runtime", "name": "cudaStreamSynchronize", "ts": 120, "dur": 2},
              op("aten::add", 150, 5), op("aten::empty", 151, 1),          # empty is inside add: not top-level
              op("aten::mul", 170, 2), op("aten::mul", 180, 2),
              op("aten::copy_", 175, 1, tid=2),                             # another thread: left out
              op("aten::conv2d", 50, 5)]                                    # before the forward: left out
    rows = forward_windows({"traceEvents": events}, window_ms=0.05)
    assert [r["start_ms"] for r in rows] == pytest.approx([0, 0.05, 0.10, 0.15])
    assert [r["gpu_busy_share"] for r in rows] == pytest.approx([40 / 50, 0, 30 / 50, 1.0])
    assert [r["launches"] for r in rows] == [1, 0, 0, 0]
    assert rows[0]["top_ops"] == [("aten::add", 1)] and rows[1]["top_ops"] == [("aten::mul", 2)]
    with pytest.raises(ValueError, match="no whole forward"):
        forward_windows({"traceEvents": [ann("zero_grad", 0, 1), ann("step", 100, 10)]})


def test_bench_decode_tiny_times_every_row_on_the_same_frames(tmp_path):
    """benchmarks/bench_decode.py --tiny: the 2018 decode + blur against ours, the OpenCV reader and the
    GIL-busy rows, every row over the same 64 frames, the blur equal to the 2018 formula."""
    res = _last_json(_run(["benchmarks/bench_decode.py", "--tiny", "--json", str(tmp_path / "d.json")]))
    rows = res["rows"]
    assert {"naive", "decode", "decode_opencv", "ours", "ours_opencv", "ours_busy", "blur", "blur_2018"} <= set(rows)
    assert all(r["frames"] == 64 for r in rows.values() if "frames" in r)
    assert res["blur_max_rel_diff"] < 1e-9 and all(r["fps"] > 0 for r in rows.values())
    assert json.loads((tmp_path / "d.json").read_text())["rows"].keys() == rows.keys()
