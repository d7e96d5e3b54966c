from pathlib import Path

import pytest
import yaml

from yeay_nb.errors import ParamsError
from yeay_nb.params import load_params, params_from_dict, parse_override_value

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path, data, name="p.yaml"):
    f = tmp_path / name
    f.write_text(yaml.safe_dump(data))
    return f


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "params").glob("*.yaml")))
def test_shipped_params_files_are_valid(name):
    data = yaml.safe_load((ROOT / "params" / name).read_text())
    # input paths (e.g. ../shared/data) may be absent on this machine: validate the rest
    p = params_from_dict(data, file=name, base=ROOT / "params") if "shared" not in str(data) else None
    if p is not None:
        assert p.work_dir.is_absolute()


def test_unknown_key_names_the_key_and_file(tmp_path):
    f = write(tmp_path, {"train": {"base_lr": 0.1, "max_iters": 10}})
    with pytest.raises(ParamsError) as e:
        load_params(f)
    assert "train.max_iters" in str(e.value) and str(f) in str(e.value)
    assert "did you mean 'max_iter'" in str(e.value)


def test_unknown_section(tmp_path):
    with pytest.raises(ParamsError, match="key 'trian'"):
        load_params(write(tmp_path, {"trian": {}}))


@pytest.mark.parametrize("section, key, value, message", [
    ("train", "max_iter", "ten", "expected an integer"),
    ("train", "base_lr", "fast", "expected a number"),
    ("train", "hflip", "yes", "expected true/false"),
    ("train", "train_scales", 800, "expected list of int"),
    ("train", "backbone", "vgg", "expected one of"),
    ("convert", "source", "coco", "expected one of"),
    ("train", "steps", [300, 200], "increasing"),
    ("convert", "val_fraction", 1.5, "must be in"),
])
def test_wrong_types_name_the_key(tmp_path, section, key, value, message):
    with pytest.raises(ParamsError, match=message) as e:
        load_params(write(tmp_path, {section: {key: value}}))
    assert f"{section}.{key}" in str(e.value)


def test_missing_input_path_is_an_error(tmp_path):
    f = write(tmp_path, {"convert": {"source": "vg", "vg": {"image_data": "nope.json", "objects": "o.json"}}})
    with pytest.raises(ParamsError, match="path does not exist") as e:
        load_params(f)
    assert "convert.vg.image_data" in str(e.value)


def test_required_paths_for_a_source(tmp_path):
    with pytest.raises(ParamsError, match="convert.ccp.root"):
        load_params(write(tmp_path, {"convert": {"source": "ccp"}}))


def test_relative_paths_resolve_against_the_params_file(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "data.json").write_text("[]")
    f = write(tmp_path / "sub", {"work_dir": "../out", "convert": {
        "source": "vg", "vg": {"image_data": "../data.json", "objects": "../data.json"}}})
    p = load_params(f)
    assert p.work_dir == (tmp_path / "out").resolve()
    assert p.convert.vg.objects == (tmp_path / "data.json").resolve()
    # outputs default under work_dir and each step reads the previous step's output
    assert p.convert.coco_json == p.work_dir / "coco.json" == p.train.coco_json
    assert p.infer.clothing_model == p.work_dir / "train" / "model_final.pt"


def test_overrides_use_dotted_keys_and_are_validated(tmp_path):
    f = write(tmp_path, {"train": {"max_iter": 100}})
    p = load_params(f, {"train.max_iter": parse_override_value("7"), "infer.rotate": 90})
    assert p.train.max_iter == 7 and p.infer.rotate == "90"
    with pytest.raises(ParamsError, match="train.nope"):
        load_params(f, {"train.nope": 1})
    with pytest.raises(ParamsError, match="not a section"):
        load_params(f, {"train.max_iter.x": 1})


def test_parse_override_value():
    assert parse_override_value("100") == 100
    assert parse_override_value("0.5") == 0.5
    assert parse_override_value("true") is True
    assert parse_override_value("[1, 2]") == [1, 2]
    assert parse_override_value("hello") == "hello"


def test_missing_and_malformed_params_files(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ParamsError, match="mapping"):
        load_params(lst)


def test_to_dict_round_trips(tmp_path):
    f = write(tmp_path, {"run": {"name": "x"}, "train": {"steps": [5, 9], "max_iter": 10}})
    p = load_params(f)
    again = params_from_dict(p.to_dict(), file="again", base=tmp_path)
    assert again.to_dict() == p.to_dict()


def test_infer_input_local_paths_resolve_and_urls_pass_through(tmp_path):
    (tmp_path / "clips").mkdir()
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump({"infer": {"input": "clips"}}))
    assert load_params(f).infer.input == str((tmp_path / "clips").resolve())
    url = "s3://bucket/videos/manifest.json"
    assert load_params(f, {"infer.input": url}).infer.input == url
    with pytest.raises(ParamsError, match="infer.input") as e:
        load_params(f, {"infer.input": "missing.mp4"})
    assert str(f) in str(e.value)
