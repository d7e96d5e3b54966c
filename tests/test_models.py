"""Models and checkpoints: build, save/load round trip, weights, clear errors."""
from __future__ import annotations

import errno
import urllib.error

import pytest
import torch

from yeay_nb.errors import CheckpointError
from yeay_nb.models import (build_model, coco_person_model, full_config, load_checkpoint, load_model,
                            load_weights, model_config_from_params, save_checkpoint, unwrap)
from yeay_nb.params import ParamsError, params_from_dict

CLASSES = ["__background__", "shirt", "hat"]
SMALL = {"min_size": (96,), "max_size": 128, "test_min_size": 96, "test_max_size": 128,
         "rpn_pre_nms_top_n_test": 100, "rpn_post_nms_top_n_test": 50, "box_batch_size_per_image": 32}


def _cfg(**kw):
    return full_config({"arch": "maskrcnn", "backbone": "mobilenet_v3", "norm": "gn", "num_classes": 3,
                        **SMALL, **kw})


def test_gn_norm_puts_groupnorm_in_fpn_and_heads():
    model = build_model(_cfg(backbone="resnet18"))
    fpn_norms = [m for m in model.backbone.fpn.modules() if isinstance(m, torch.nn.GroupNorm)]
    box_norms = [m for m in model.roi_heads.box_head.modules() if isinstance(m, torch.nn.GroupNorm)]
    mask_norms = [m for m in model.roi_heads.mask_head.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert fpn_norms and len(box_norms) == 4 and len(mask_norms) == 4
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def test_light_heads_are_smaller_and_survive_a_checkpoint_round_trip(tmp_path):
    light = build_model(_cfg(heads="light", norm="bn"))
    standard = build_model(_cfg(norm="bn"))
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(light.roi_heads) < n(standard.roi_heads) / 2
    assert light.roi_heads.mask_predictor.mask_fcn_logits.in_channels == 128
    assert light.roi_heads.box_roi_pool.sampling_ratio == 1
    light.train()
    img = torch.rand(3, 96, 128)
    target = {"boxes": torch.tensor([[10.0, 10, 60, 80]]), "labels": torch.tensor([1]),
              "masks": torch.zeros(1, 96, 128, dtype=torch.uint8)}
    losses = light([img], [target])
    assert {"loss_classifier", "loss_mask"} <= set(losses) and all(torch.isfinite(v) for v in losses.values())
    path = tmp_path / "light.pt"
    save_checkpoint(path, model=light, classes=CLASSES, model_config=_cfg(heads="light", norm="bn"))
    _, _, cfg = load_model(path)
    assert cfg["heads"] == "light"
    with pytest.raises(CheckpointError, match="heads"):
        full_config({"num_classes": 3, "heads": "tiny"})


def test_mlp_heads_replace_only_the_box_head_convs_and_survive_a_checkpoint_round_trip(tmp_path):
    cfg = _cfg(backbone="resnet18", heads="mlp")
    mlp, standard = build_model(cfg), build_model(_cfg(backbone="resnet18"))
    convs = lambda m: [x for x in m.modules() if isinstance(x, torch.nn.Conv2d)]  # noqa: E731
    fcs = [x for x in mlp.roi_heads.box_head.modules() if isinstance(x, torch.nn.Linear)]
    assert not convs(mlp.roi_heads.box_head) and len(convs(standard.roi_heads.box_head)) == 4
    assert [f.out_features for f in fcs] == [1024, 1024] and fcs[0].in_features == 256 * 7 * 7
    # the rest is the standard GN layout: same RPN, mask head and predictors
    for part in ("rpn", "roi_heads.mask_head", "roi_heads.mask_predictor", "roi_heads.box_predictor"):
        a, b = mlp.get_submodule(part).state_dict(), standard.get_submodule(part).state_dict()
        assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}, part
    mlp.train()
    target = {"boxes": torch.tensor([[10.0, 10, 60, 80]]), "labels": torch.tensor([2]),
              "masks": torch.zeros(1, 96, 128, dtype=torch.uint8)}
    losses = mlp([torch.rand(3, 96, 128)], [target])
    assert {"loss_classifier", "loss_mask"} <= set(losses) and all(torch.isfinite(v) for v in losses.values())
    save_checkpoint(tmp_path / "mlp.pt", model=mlp, classes=CLASSES, model_config=cfg)
    loaded, _, cfg2 = load_model(tmp_path / "mlp.pt")
    assert cfg2["heads"] == "mlp"
    assert all(torch.equal(v, mlp.state_dict()[k]) for k, v in loaded.state_dict().items())
    assert params_from_dict({"train": {"heads": "mlp"}}).train.heads == "mlp"


def test_rpn_conv_depth_sets_the_rpn_convs_and_old_configs_keep_their_layout(tmp_path):
    convs = lambda m: sum(isinstance(x, torch.nn.Conv2d) and x.kernel_size == (3, 3)  # noqa: E731
                          for x in m.rpn.head.modules())
    assert convs(build_model(_cfg(backbone="resnet18"))) == 2  # the GN layout's own
    one = _cfg(backbone="resnet18", heads="mlp", rpn_conv_depth=1)
    gn1 = build_model(one)
    assert convs(gn1) == 1
    assert convs(build_model(_cfg(backbone="resnet18", norm="frozen_bn"))) == 1
    assert convs(build_model(_cfg(backbone="resnet18", norm="frozen_bn", rpn_conv_depth=3))) == 3
    assert convs(build_model(_cfg(backbone="resnet18", heads="light", rpn_conv_depth=2))) == 2
    # a checkpoint written before the key existed builds the 2-conv head it was trained with
    old = {k: v for k, v in _cfg(backbone="resnet18").items() if k != "rpn_conv_depth"}
    assert convs(build_model(old)) == 2
    gn1.train()
    target = {"boxes": torch.tensor([[10.0, 10, 60, 80]]), "labels": torch.tensor([1]),
              "masks": torch.zeros(1, 96, 128, dtype=torch.uint8)}
    losses = gn1([torch.rand(3, 96, 128)], [target])
    assert all(torch.isfinite(v) for v in losses.values())
    save_checkpoint(tmp_path / "rpn1.pt", model=gn1, classes=CLASSES, model_config=one)
    loaded, _, cfg = load_model(tmp_path / "rpn1.pt")
    assert cfg["rpn_conv_depth"] == 1 and convs(loaded) == 1
    with pytest.raises(CheckpointError, match="rpn_conv_depth"):
        full_config({"num_classes": 3, "rpn_conv_depth": 0})
    p = params_from_dict({"train": {"norm": "gn", "rpn_conv_depth": 1}})
    assert model_config_from_params(p.train, 3)["rpn_conv_depth"] == 1
    with pytest.raises(ParamsError, match="train.rpn_conv_depth"):
        params_from_dict({"train": {"rpn_conv_depth": 0}}, file="x.yaml")


@pytest.mark.parametrize("backbone,norm", [("resnet18", "gn"), ("resnet18", "frozen_bn"), ("mobilenet_v3", "bn")])
def test_anchor_ratios_give_one_anchor_per_ratio_and_size_and_survive_a_checkpoint(tmp_path, backbone, norm):
    """anchor_ratios [0.25, 0.5, 1, 2, 4]: five anchors per place and size on every level (torchvision's
    three when unset), the RPN head predicts one objectness per anchor, the model trains, and a
    checkpoint rebuilds the same anchors; bad ratios name the key."""
    ratios = [0.25, 0.5, 1.0, 2.0, 4.0]
    default, five = build_model(_cfg(backbone=backbone, norm=norm)), build_model(_cfg(backbone=backbone, norm=norm,
                                                                                      anchor_ratios=ratios))
    sizes = len(default.rpn.anchor_generator.sizes[0])  # 1 per level for ResNet-FPN, 5 for mobilenet
    assert default.rpn.anchor_generator.num_anchors_per_location() == [3 * sizes] * len(
        default.rpn.anchor_generator.sizes)
    assert five.rpn.anchor_generator.num_anchors_per_location() == [5 * sizes] * len(five.rpn.anchor_generator.sizes)
    assert five.rpn.head.cls_logits.out_channels == 5 * sizes and five.rpn.head.bbox_pred.out_channels == 20 * sizes
    assert [float(r) for r in five.rpn.anchor_generator.aspect_ratios[0]] == ratios
    five.train()
    target = {"boxes": torch.tensor([[10.0, 10, 30, 90]]), "labels": torch.tensor([1]),
              "masks": torch.zeros(1, 96, 128, dtype=torch.uint8)}
    losses = five([torch.rand(3, 96, 128)], [target])
    assert all(torch.isfinite(v) for v in losses.values())
    cfg = _cfg(backbone=backbone, norm=norm, anchor_ratios=ratios)
    save_checkpoint(tmp_path / "a.pt", model=five, classes=CLASSES, model_config=cfg)
    loaded, _, got = load_model(tmp_path / "a.pt")
    assert list(got["anchor_ratios"]) == ratios and loaded.rpn.head.cls_logits.out_channels == 5 * sizes
    with pytest.raises(CheckpointError, match="anchor_ratios"):
        full_config({"num_classes": 3, "anchor_ratios": [1.0, -2.0]})
    p = params_from_dict({"train": {"anchor_ratios": ratios}})
    assert list(model_config_from_params(p.train, 3)["anchor_ratios"]) == ratios
    with pytest.raises(ParamsError, match="train.anchor_ratios"):
        params_from_dict({"train": {"anchor_ratios": []}}, file="x.yaml")


def test_frozen_bn_layout_matches_torchvision_v1_names():
    # COCO weights of torchvision's v1 Faster R-CNN must fit by name and shape
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    ours = build_model(full_config({"arch": "fasterrcnn", "backbone": "resnet50", "num_classes": 91})).state_dict()
    ref = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91).state_dict()
    # untrained torchvision uses BatchNorm (with counters); its COCO weights have FrozenBN like ours
    ref = {k: v for k, v in ref.items() if not k.endswith("num_batches_tracked")}
    assert set(ours) == set(ref)
    assert all(ours[k].shape == ref[k].shape for k in ref)


def test_train_and_test_sizes_are_separate():
    model = build_model(_cfg(min_size=(64, 80), test_min_size=96))
    img = torch.rand(3, 120, 160)
    model.eval()
    batch, _ = model.transform([img])
    assert min(batch.image_sizes[0]) == 96
    model.train()
    sizes = {min(model.transform([img])[0].image_sizes[0]) for _ in range(20)}
    assert sizes <= {64, 80} and sizes


def test_checkpoint_round_trip_gives_identical_predictions(tmp_path):
    torch.manual_seed(0)
    cfg = _cfg(box_score_thresh=0.0)
    model = build_model(cfg).eval()
    path = save_checkpoint(tmp_path / "m.pt", model=torch.nn.Sequential(model)[0], classes=CLASSES,
                           model_config=cfg, iteration=7, params={"train": {"base_lr": 0.1}})
    loaded, classes, cfg2 = load_model(path)
    assert classes == CLASSES and cfg2["arch"] == "maskrcnn" and not loaded.training
    img = torch.rand(3, 96, 128)
    with torch.no_grad():
        a, b = model([img])[0], loaded([img])[0]
    assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["scores"], b["scores"])
    assert load_checkpoint(path)["iteration"] == 7


def test_load_model_overrides_test_time_settings(tmp_path):
    cfg = _cfg()
    path = save_checkpoint(tmp_path / "m.pt", model=build_model(cfg), classes=CLASSES, model_config=cfg)
    model, _, cfg2 = load_model(path, min_size=64, max_size=100, box_score_thresh=0.5, box_detections_per_img=7)
    assert cfg2["test_min_size"] == 64 and model.transform.test_max_size == 100
    assert model.roi_heads.score_thresh == 0.5 and model.roi_heads.detections_per_img == 7
    with pytest.raises(CheckpointError, match="num_classes"):
        load_model(path, num_classes=5)


def test_missing_and_corrupt_checkpoints_name_the_path(tmp_path):
    with pytest.raises(CheckpointError, match="not found: .*nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_model(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(1)}, foreign)
    with pytest.raises(CheckpointError, match="foreign.pt"):
        load_checkpoint(foreign)


def test_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    cfg = _cfg()
    model = build_model(cfg)
    path = save_checkpoint(tmp_path / "m.pt", model=model, classes=CLASSES, model_config=cfg, iteration=1)
    before = path.read_bytes()

    def full_disk(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("yeay_nb.models.torch.save", full_disk)
    with pytest.raises(CheckpointError, match="No space left"):
        save_checkpoint(path, model=model, classes=CLASSES, model_config=cfg, iteration=2)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temp file left behind
    monkeypatch.undo()
    assert load_checkpoint(path)["iteration"] == 1


def test_fine_tune_from_checkpoint_with_other_class_count(tmp_path):
    cfg = _cfg()
    src = build_model(cfg)
    path = save_checkpoint(tmp_path / "m.pt", model=src, classes=CLASSES, model_config=cfg)
    cfg5 = _cfg(num_classes=5)
    dst = build_model(cfg5)
    report = load_weights(dst, str(path), cfg5)
    assert "roi_heads.box_predictor.cls_score.weight" in report["skipped"]
    assert report["loaded"] > 100
    sd_src, sd_dst = src.state_dict(), dst.state_dict()
    assert torch.equal(sd_src["backbone.fpn.layer_blocks.0.0.weight"], sd_dst["backbone.fpn.layer_blocks.0.0.weight"])
    assert sd_dst["roi_heads.box_predictor.cls_score.weight"].shape[0] == 5


def test_bad_weights_values_raise_checkpoint_error(tmp_path):
    cfg = _cfg()
    with pytest.raises(CheckpointError, match="not found"):
        load_weights(build_model(cfg), str(tmp_path / "missing.pt"), cfg)
    with pytest.raises(CheckpointError, match="no torchvision COCO weights"):
        load_weights(build_model(cfg), "coco", cfg)  # GN mobilenet has no published COCO weights


def test_offline_coco_weights_say_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(*a, **k):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", offline)
    with pytest.raises(CheckpointError) as e:
        coco_person_model()
    msg = str(e.value)
    assert str(tmp_path / "hub" / "checkpoints" / "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth") in msg
    assert "https://download.pytorch.org/models/maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth" in msg


def test_model_config_from_params_and_bad_config():
    p = params_from_dict({"train": {"model": "maskrcnn", "backbone": "resnet18", "norm": "gn",
                                    "train_scales": [600, 700], "test_scale": 650, "rois_per_image": 128}})
    cfg = model_config_from_params(p.train, 40)
    assert cfg["min_size"] == (600, 700) and cfg["test_min_size"] == 650 and cfg["box_batch_size_per_image"] == 128
    assert cfg["num_classes"] == 40 and cfg["trainable_backbone_layers"] == 6
    with pytest.raises(CheckpointError, match="backbone"):
        build_model({"arch": "fasterrcnn", "backbone": "vgg", "num_classes": 3})
    with pytest.raises(CheckpointError, match="unknown keys"):
        build_model({"num_classes": 3, "min_sise": 3})


def test_unwrap_ddp_like_wrappers():
    inner = torch.nn.Linear(2, 2)
    wrapper = torch.nn.Module()
    wrapper.module = inner
    assert unwrap(wrapper) is inner and unwrap(inner) is inner


def test_low_precision_group_norm_keeps_bf16_under_autocast_and_is_plain_outside():
    from yeay_nb.fasttrain import uninstall
    from yeay_nb.models import LowPrecisionGroupNorm

    torch.manual_seed(0)
    model = build_model({"arch": "maskrcnn", "backbone": "resnet18", "norm": "gn", "num_classes": 3,
                         "heads": "light"})
    norms = [m for m in model.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert norms and all(type(m) is LowPrecisionGroupNorm for m in norms)
    gn = norms[0]
    with torch.no_grad():
        gn.weight.uniform_(0.5, 1.5)
        gn.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, gn.num_channels, 12, 10) * 3 + 1
    plain = torch.nn.functional.group_norm(x, gn.num_groups, gn.weight, gn.bias, gn.eps)
    assert torch.equal(gn(x), plain)  # no autocast: nn.GroupNorm's own float32 result
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = gn(x)
    # runs in the autocast dtype whatever comes in (on CUDA, autocast alone would give float32)
    assert low.dtype == torch.bfloat16
    assert (low.float() - plain).abs().max() < 0.05  # bf16 rounding of the output, statistics in float32
    state = {k: v.clone() for k, v in model.state_dict().items()}
    uninstall(model, norm=True)
    assert all(type(m) is torch.nn.GroupNorm for m in model.modules() if isinstance(m, torch.nn.GroupNorm))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
