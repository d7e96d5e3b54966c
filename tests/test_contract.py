"""The output JSON Schema (draft 2020-12) and the cross-field rules."""
import copy
import json
from pathlib import Path

import jsonschema
import pytest

from yeay_nb.contract import ContractError, SCHEMA_VERSION, load_schema, validate_file, validate_output

CONTRACT = Path(__file__).resolve().parents[1].parent / "shared" / "contract"


def _doc():
    rle = {"counts": "PPYo0", "size": [4, 6]}  # any string: the schema checks shape, not RLE content
    return {
        "video_id": "v1", "video_loc": "/x/v1/video.mp4", "video_dim": [6, 4], "video_fps": 10.0,
        "video_fcnt": 5, "classifiedAt": "2026-11-26T18:00:00Z", "schema_version": SCHEMA_VERSION,
        "classesInDS": ["__background__", "shirt", "person"],
        "frame_indices": [0, 2, 4],
        "items": [[0, 1, 0.5, [0.0, 0.0, 2.0, 2.0]], [2, 2, 0.9, [1.0, 1.0, 3.0, 4.0]]],
        "blur_scores": [[[1.0]], [[0.5]], [[0.2]]],
        "top_N_frames": [2, 0, 4],
        "top_frames_each_class": [[-1, 0, 2], [None, [0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 4.0]]],
        "mask_classes": ["person"],
        "coco_rle_masks": [[[]], [[rle]], [[]]],
        "mask_scores": [[[]], [[0.9]], [[]]],
        "steps": ["clothing", "person"],
        "models": {"clothing": {"source": "m.pt"}},
    }


def test_schema_is_valid_draft_2020_12_and_says_0_based():
    schema = load_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    assert "0-based" in schema["description"]


def test_good_document_validates():
    validate_output(_doc())


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d.pop("video_fcnt"), "<root>"),
    (lambda d: d.__setitem__("video_dim", [6]), "video_dim"),
    (lambda d: d["items"].append([0, 1, 1.5, [0, 0, 1, 1]]), "items[2][2]"),
    (lambda d: d.__setitem__("classifiedAt", "2018-06-164T09:53:45UTC"), "classifiedAt"),  # the 2018 bug
    (lambda d: d["classesInDS"].__setitem__(0, "bg"), "classesInDS[0]"),
    (lambda d: d["top_frames_each_class"][1].__setitem__(1, [1, 2]), "top_frames_each_class[1][1]"),
])
def test_schema_errors_name_the_field(mutate, field):
    d = _doc()
    mutate(d)
    with pytest.raises(ContractError) as e:
        validate_output(d, file="v1.json")
    assert "v1.json" in str(e.value) and e.value.field == field


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d["blur_scores"].pop(), "blur_scores"),
    (lambda d: d["items"].append([1, 1, 0.5, [0, 0, 1, 1]]), "items[2][0]"),        # frame not processed
    (lambda d: d["items"].append([0, 3, 0.5, [0, 0, 1, 1]]), "items[2][1]"),        # class out of range
    (lambda d: d.__setitem__("frame_indices", [0, 2, 5]), "frame_indices"),          # beyond video_fcnt
    (lambda d: d["top_frames_each_class"][1].__setitem__(1, [0, 0, 2, 3]), "top_frames_each_class[1][1]"),
    (lambda d: d["coco_rle_masks"][1][0][0].__setitem__("size", [6, 4]), "coco_rle_masks[1][0][0].size"),
])
def test_semantic_rules(mutate, field):
    d = _doc()
    mutate(d)
    validate_output(copy.deepcopy(d), semantic=False)  # the schema alone cannot see these
    with pytest.raises(ContractError) as e:
        validate_output(d)
    assert e.value.field == field


def test_validate_file_names_the_file(tmp_path):
    bad = tmp_path / "v.json"
    bad.write_text("{not json")
    with pytest.raises(ContractError, match="v.json"):
        validate_file(bad)
    good = tmp_path / "g.json"
    good.write_text(json.dumps(_doc()))
    assert validate_file(good)["video_id"] == "v1"


def test_2018_sample_keeps_its_shapes_under_our_schema():
    """The 2018 output plus our new keys validates: downstream readers see the same shapes."""
    sample = CONTRACT / "sample_output_2018.json"
    if not sample.exists():
        pytest.skip(f"2018 contract sample not found at {sample}")
    d = json.loads(sample.read_text())
    d.pop("_note", None)
    d["classifiedAt"] = "2018-06-13T09:53:45Z"  # the 2018 string ("2018-06-164T...") was not ISO 8601
    d.update(schema_version=SCHEMA_VERSION, models={"clothing": {"source": "2018"}},
             frame_indices=list(range(len(d["blur_scores"]))))
    validate_output(d, semantic=False)  # the sample is trimmed, so cross-field rules cannot hold
    assert d["video_dim"] == [540, 960] and d["coco_rle_masks"][0][0][0]["size"] == [960, 540]
