import pytest

from yeay_nb.errors import TaxonomyError
from yeay_nb.taxonomy import load_taxonomy, normalize_name, singular_forms, taxonomy_from_dict

SEED_CLASSES = [
    "__background__", "accessories", "bag", "belts", "chicken wings", "clothing", "coats", "costume",
    "dress shirt", "dress", "electronics", "eyewear", "fanny pack", "footwear", "handwear", "headwear",
    "jeans", "jump suit", "leggings", "logos", "neckwear", "pajamas", "pants", "scarves", "shirt parts",
    "shorts", "skirt", "snowgear", "sportswear", "street_clothes", "suits", "sweater", "swimwear",
    "underwear", "uniform", "wallet", "watch", "nike",
]


def test_default_taxonomy_reproduces_the_2018_classes_in_order():
    assert load_taxonomy().classes == SEED_CLASSES


@pytest.mark.parametrize("names, expected", [
    (["shirt"], "dress shirt"), (["T-Shirt"], "dress shirt"), (["blouse"], "dress shirt"),
    (["pants"], "pants"), (["trousers"], "pants"), (["jeans"], "jeans"), (["Blue Jeans"], "jeans"),
    (["jacket"], "coats"), (["coat"], "coats"), (["blazer"], "coats"),
    (["shoe"], "footwear"), (["shoes"], "footwear"), (["sneakers"], "footwear"), (["boots"], "footwear"),
    (["sandals"], "footwear"), (["glasses"], "eyewear"), (["sunglasses"], "eyewear"),
    (["goggles"], "eyewear"), (["hat"], "headwear"), (["cap"], "headwear"), (["helmet"], "headwear"),
    (["beanie"], "headwear"), (["bag"], "bag"), (["backpack"], "bag"), (["purse"], "bag"),
    (["handbag"], "bag"), (["tie"], "neckwear"), (["necktie"], "neckwear"), (["bow tie"], "neckwear"),
    (["glove"], "handwear"), (["mittens"], "handwear"), (["dresses"], "dress"), (["scarves"], "scarves"),
    (["watches"], "watch"), (["belt"], "belts"),
])
def test_names_map_to_the_expected_class(names, expected):
    tax = load_taxonomy()
    idx = tax.class_for(names)
    assert idx is not None, names
    assert tax.classes[idx] == expected


def test_synsets_map_when_no_name_does():
    tax = load_taxonomy()
    assert tax.classes[tax.class_for(["thing nobody knows"], ["trouser.n.01"])] == "pants"
    assert tax.class_for(["tree"], ["tree.n.01"]) is None


def test_names_win_over_synsets():
    tax = load_taxonomy()
    # VG often labels jeans with the synset jean.n.01 but "pants" with trouser.n.01
    assert tax.classes[tax.class_for(["jeans"], ["trouser.n.01"])] == "jeans"


def test_normalization_and_singulars():
    assert normalize_name("  Blue   Jeans. ") == "blue jeans"
    assert "dress" in singular_forms("dresses")
    assert "watch" in singular_forms("watches")
    assert "accessory" in singular_forms("accessories")
    assert singular_forms("glass") == []  # "ss" is not a plural


def test_duplicate_class_is_a_clear_error():
    with pytest.raises(TaxonomyError, match="duplicate class 'bag'"):
        taxonomy_from_dict({"classes": ["__background__", "bag", "shoe", "bag"]}, source="t.yaml")


def test_name_under_two_classes_is_a_clear_error():
    data = {"classes": ["__background__", {"name": "a", "names": ["x"]}, {"name": "b", "names": ["X"]}]}
    with pytest.raises(TaxonomyError, match="'x' is listed under both 'a' and 'b'"):
        taxonomy_from_dict(data, source="t.yaml")


def test_background_must_come_first_and_unknown_keys_are_errors():
    with pytest.raises(TaxonomyError, match="first class must be '__background__'"):
        taxonomy_from_dict({"classes": ["bag", "__background__"]})
    with pytest.raises(TaxonomyError, match="unknown keys"):
        taxonomy_from_dict({"classes": ["__background__", {"name": "bag", "nmes": []}]})


def test_smaller_taxonomy_from_a_file(tmp_path):
    f = tmp_path / "three.yaml"
    f.write_text("classes:\n  - __background__\n  - name: top\n    names: [shirt, coat]\n"
                 "  - name: shoe\n    synsets: [shoe.n.01]\n")
    tax = load_taxonomy(f)
    assert tax.num_classes == 3
    assert tax.class_for(["coats"]) == 1 and tax.class_for(["x"], ["shoe.n.01"]) == 2
    assert [c["id"] for c in tax.coco_categories()] == [1, 2]


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(TaxonomyError, match="not found"):
        load_taxonomy(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("classes: [a, b\n")
    with pytest.raises(TaxonomyError, match="not valid YAML"):
        load_taxonomy(bad)
