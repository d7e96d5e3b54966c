"""Tests of the synthetic wardrobe: formats, determinism, taxonomy mapping, tight boxes,
occlusion, person masks and the synthetic videos."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_util

from yeay_nb.errors import ParamsError
from yeay_nb.synth import DISTRACTOR_NAMES, VARIANTS, intended_class, make_videos, make_wardrobe
from yeay_nb.synth.catalog import PERSON_NAMES
from yeay_nb.synth.figures import Scene, random_person, random_scene, render_scene
from yeay_nb.taxonomy import load_taxonomy

PERSON_WORDS = {n for n, _ in PERSON_NAMES}
# pycocotools 2.0.x on numpy 2 warns about __array__(copy=...) on every decode; not ours.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def wardrobe(tmp_path_factory):
    out = tmp_path_factory.mktemp("wardrobe")
    return make_wardrobe(out, num_images=40, image_size=(200, 160), seed=3, progress=False)


@pytest.fixture(scope="module")
def taxonomy():
    return load_taxonomy()


def _load(path: Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- images
def test_determinism_same_seed_same_bytes(tmp_path):
    a = make_wardrobe(tmp_path / "a", num_images=5, image_size=(128, 96), seed=11, progress=False)
    b = make_wardrobe(tmp_path / "b", num_images=5, image_size=(128, 96), seed=11, progress=False)
    make_wardrobe(tmp_path / "c", num_images=5, image_size=(128, 96), seed=12, progress=False)
    for name in ("image_data.json", "objects.json", "person_masks.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    for k in range(1, 6):
        assert (a.images_dir / f"{k}.jpg").read_bytes() == (b.images_dir / f"{k}.jpg").read_bytes()
    assert (tmp_path / "a" / "objects.json").read_bytes() != (tmp_path / "c" / "objects.json").read_bytes()
    assert a.num_objects == b.num_objects
    # No temporary files are left behind by the atomic writes.
    assert not [p for p in (tmp_path / "a").rglob("*") if p.name.startswith(".")]


def test_finished_wardrobe_is_reused_and_changed_arguments_redraw(tmp_path):
    a = make_wardrobe(tmp_path, num_images=3, image_size=(128, 96), seed=1, progress=False)
    stamp = a.objects_json.stat().st_mtime_ns
    again = make_wardrobe(tmp_path, num_images=3, image_size=(128, 96), seed=1, progress=False)
    assert again == a and a.objects_json.stat().st_mtime_ns == stamp
    (a.images_dir / "2.jpg").unlink()  # incomplete: drawn again
    make_wardrobe(tmp_path, num_images=3, image_size=(128, 96), seed=1, progress=False)
    assert (a.images_dir / "2.jpg").exists()
    before = a.objects_json.read_bytes()
    b = make_wardrobe(tmp_path, num_images=3, image_size=(128, 96), seed=2, progress=False)
    assert b.objects_json.read_bytes() != before
    assert _load(tmp_path / "wardrobe.json")["seed"] == 2


def test_image_does_not_depend_on_num_images(tmp_path):
    a = make_wardrobe(tmp_path / "a", num_images=2, image_size=(128, 96), seed=5, progress=False)
    b = make_wardrobe(tmp_path / "b", num_images=4, image_size=(128, 96), seed=5, progress=False)
    assert (a.images_dir / "2.jpg").read_bytes() == (b.images_dir / "2.jpg").read_bytes()
    assert _load(a.objects_json)[1]["objects"] == _load(b.objects_json)[1]["objects"]


def test_vg_format(wardrobe):
    images = _load(wardrobe.image_data_json)
    objects = _load(wardrobe.objects_json)
    assert len(images) == len(objects) == wardrobe.num_images == 40
    assert sum(len(o["objects"]) for o in objects) == wardrobe.num_objects
    seen_ids, no_synset = set(), 0
    for img, rec in zip(images, objects):
        assert set(img) == {"image_id", "width", "height", "url", "coco_id", "flickr_id"}
        assert img["url"] == f"https://cs.stanford.edu/people/rak248/VG_100K/{img['image_id']}.jpg"
        assert rec["image_id"] == img["image_id"]
        jpg = cv2.imread(str(wardrobe.images_dir / f"{img['image_id']}.jpg"))
        assert jpg.shape == (img["height"], img["width"], 3) == (160, 200, 3)
        for o in rec["objects"]:
            assert set(o) == {"object_id", "names", "synsets", "x", "y", "w", "h", "merged_object_ids"}
            assert len(o["names"]) == 1 and len(o["synsets"]) <= 1 and o["merged_object_ids"] == []
            if not o["synsets"]:  # like real VG, some distractors have no synset
                assert o["names"][0] in DISTRACTOR_NAMES
                no_synset += 1
            assert all(isinstance(o[k], int) for k in ("x", "y", "w", "h"))
            assert o["w"] >= 1 and o["h"] >= 1 and o["x"] >= 0 and o["y"] >= 0
            assert o["x"] + o["w"] <= img["width"] and o["y"] + o["h"] <= img["height"]
            assert o["object_id"] not in seen_ids
            seen_ids.add(o["object_id"])
    assert no_synset >= 1


def test_some_exact_duplicates_like_real_vg(wardrobe):
    dups = 0
    for rec in _load(wardrobe.objects_json):
        keys = [(o["names"][0], o["x"], o["y"], o["w"], o["h"]) for o in rec["objects"]]
        dups += len(keys) - len(set(keys))
    assert dups >= 1


def test_person_masks_match_person_boxes(wardrobe):
    images = {i["image_id"]: i for i in _load(wardrobe.image_data_json)}
    masks = _load(wardrobe.person_masks_json)
    assert set(masks) == {str(i) for i in images}
    total = 0
    for rec in _load(wardrobe.objects_json):
        img = images[rec["image_id"]]
        rles = masks[str(rec["image_id"])]
        boxes_from_masks = set()
        for rle in rles:
            assert isinstance(rle["counts"], str) and rle["size"] == [img["height"], img["width"]]
            m = mask_util.decode({"size": rle["size"], "counts": rle["counts"].encode()})
            assert m.shape == (img["height"], img["width"]) and m.sum() > 0
            assert int(mask_util.area(rle | {"counts": rle["counts"].encode()})) == int(m.sum())
            ys, xs = np.nonzero(m)
            boxes_from_masks.add((int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1),
                                  int(ys.max() - ys.min() + 1)))
        person_boxes = {(o["x"], o["y"], o["w"], o["h"]) for o in rec["objects"] if o["names"][0] in PERSON_WORDS}
        assert person_boxes == boxes_from_masks  # one person object per mask, same extent
        total += len(rles)
    assert total >= 40  # 1-3 people per image


def test_names_map_to_intended_classes(wardrobe, taxonomy):
    # Every name/synset the catalog can emit maps where it is meant to ...
    for v in VARIANTS:
        for name, synset in v.names:
            got = taxonomy.class_for([name], [synset])
            assert got == taxonomy.index(v.class_name), (name, synset, got)
    # ... and so does everything actually emitted; distractors map to nothing.
    emitted_classes, distractors = set(), set()
    for rec in _load(wardrobe.objects_json):
        for o in rec["objects"]:
            name, synset = o["names"][0], (o["synsets"] or [""])[0]
            got = taxonomy.class_for([name], o["synsets"])
            if name in DISTRACTOR_NAMES:
                assert got is None, (name, synset, taxonomy.classes[got])
                distractors.add(name)
            else:
                want = intended_class(name, synset)
                assert want is not None, f"emitted a name not in the catalog: {name} / {synset}"
                assert got == taxonomy.index(want), (name, synset)
                emitted_classes.add(want)
    intended = {v.class_name for v in VARIANTS}
    assert len(emitted_classes) >= len(intended) - 1, intended - emitted_classes
    assert {"face", "hand"} <= distractors and distractors & PERSON_WORDS


def _no_noise(scene: Scene) -> Scene:
    s = copy.deepcopy(scene)
    s.noise_sigma = 0.0
    return s


def _shift(c):
    return tuple((int(x) + 128) % 256 for x in c)


def test_boxes_are_tight_around_visible_item_pixels():
    """Recolour one item and re-render: the changed pixels are exactly that item's visible
    pixels (an independent check of the owner-map bookkeeping), so their extent must be the box."""
    checked = 0
    for seed in range(6):
        scene = _no_noise(random_scene(np.random.default_rng(seed), 200, 160))
        base = render_scene(scene, np.random.default_rng(0))
        items = [o for o in base.objects if o["class_name"] is not None]
        for o in items[:4]:
            person = scene.people[o["person"]]
            matches = [i for i, it in enumerate(person.items) if it.name == o["name"] and it.synset == o["synset"]]
            for i in matches:
                other = copy.deepcopy(scene)
                it = other.people[o["person"]].items[i]
                it.colour, it.colour2 = _shift(it.colour), _shift(it.colour2)
                r = render_scene(other, np.random.default_rng(0))
                diff = np.any(r.image != base.image, axis=2)
                if not diff.any():
                    continue
                ys, xs = np.nonzero(diff)
                box = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
                same_item_boxes = [b["box"] for b in base.objects if b["person"] == o["person"]
                                   and b["name"] == o["name"] and b["synset"] == o["synset"]]
                assert box in same_item_boxes, (o, box)
                checked += 1
    assert checked >= 10


def test_fully_occluded_person_and_items_are_dropped():
    rng = np.random.default_rng(1)
    front = random_person(rng, cx=100, foot_y=150, height=120)
    back = copy.deepcopy(front)  # same pose and outfit, drawn first (stable order) -> fully hidden
    for it in back.items:
        it.colour = _shift(it.colour)
    scene = Scene(background=np.full((160, 200, 3), 127, np.uint8), background_objects=[], people=[back, front],
                  noise_sigma=0.0, annotate_body=1.0)
    r = render_scene(scene)
    assert r.person_indices == [1] and len(r.person_masks) == 1
    assert all(o["person"] == 1 for o in r.objects)
    assert sum(o["class_name"] is not None for o in r.objects) >= 2
    # A person entirely outside the image is dropped too.
    away = random_person(rng, cx=-500, foot_y=150, height=100)
    r2 = render_scene(Scene(background=scene.background, background_objects=[], people=[away, front],
                            noise_sigma=0.0))
    assert r2.person_indices == [1]


def test_bad_input_names_the_field(tmp_path):
    with pytest.raises(ParamsError, match="image_size"):
        make_wardrobe(tmp_path, num_images=1, image_size=(32, 32), progress=False)
    with pytest.raises(ParamsError, match="seed"):
        make_wardrobe(tmp_path, num_images=1, seed=-1, progress=False)
    with pytest.raises(ParamsError, match="num_images"):
        make_wardrobe(tmp_path, num_images=0, progress=False)
    with pytest.raises(ParamsError, match="size"):
        make_videos(tmp_path, size=(161, 128))
    with pytest.raises(ParamsError, match="layout"):
        make_videos(tmp_path, layout="nested")
    with pytest.raises(ParamsError, match="rotation"):
        make_videos(tmp_path, rotation=45)


# --------------------------------------------------------------------------- videos
def _decode_pyav(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]


def _decode_cv2(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def _sharpness(bgr: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var())


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    out = tmp_path_factory.mktemp("videos")
    return make_videos(out, num_videos=2, num_frames=30, size=(160, 128), fps=10, seed=2)


def test_videos_decode_with_pyav_and_opencv(videos):
    assert [p.name for p in videos] == ["synth_000.mp4", "synth_001.mp4"]
    for path in videos:
        truth = _load(path.with_name(path.stem + ".truth.json"))
        assert truth["num_frames"] == 30 and len(truth["frames"]) == 30
        assert [f["frame_index"] for f in truth["frames"]] == list(range(30))
        a, b = _decode_pyav(path), _decode_cv2(path)
        assert len(a) == len(b) == 30
        assert a[0].shape == b[0].shape == (128, 160, 3)
        # Both decoders see the same picture.
        assert np.abs(a[5].astype(int) - b[5].astype(int)).mean() < 3.0
        with av.open(str(path)) as c:
            assert float(c.streams.video[0].average_rate) == pytest.approx(10.0)


def test_video_truth_boxes(videos):
    for path in videos:
        truth = _load(path.with_name(path.stem + ".truth.json"))
        assert "person" in truth["classes"] and len(truth["classes"]) >= 3
        for f in truth["frames"]:
            assert f["boxes"].get("person"), f"frame {f['frame_index']} has no person"
            for cls, boxes in f["boxes"].items():
                for x1, y1, x2, y2 in boxes:
                    assert 0 <= x1 < x2 <= 160 and 0 <= y1 < y2 <= 128, (cls, f["frame_index"])
            assert len(f["person_masks"]) == len(f["boxes"]["person"])
            for rle, (x1, y1, x2, y2) in zip(f["person_masks"], f["boxes"]["person"]):
                m = mask_util.decode({"size": rle["size"], "counts": rle["counts"].encode()})
                ys, xs = np.nonzero(m)
                assert m.shape == (128, 160) and [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == [x1, y1, x2, y2]
        moving = [f["boxes"]["person"][0] for f in truth["frames"]]
        assert len({tuple(b) for b in moving}) > 1  # people move


def test_blurred_frames_are_less_sharp_than_neighbours(videos):
    n_blurred = 0
    for path in videos:
        truth = _load(path.with_name(path.stem + ".truth.json"))
        frames = _decode_pyav(path)
        blurred = truth["blurred_frames"]
        assert blurred and all(truth["frames"][t]["blurred"] in ("motion", "defocus") for t in blurred)
        assert all(truth["frames"][t]["blurred"] is None for t in range(30) if t not in blurred)
        for t in blurred:
            assert 0 < t < 29 and t - 1 not in blurred and t + 1 not in blurred
            s = _sharpness(frames[t])
            assert s < 0.5 * _sharpness(frames[t - 1]) and s < 0.5 * _sharpness(frames[t + 1]), t
            n_blurred += 1
    assert n_blurred >= 2


def test_folders_layout_and_rotation(tmp_path):
    paths = make_videos(tmp_path, num_videos=2, num_frames=6, size=(160, 128), fps=6, seed=0,
                        layout="folders", rotation=90, blur_frames=False)
    assert paths == [tmp_path / "synth_000" / "video.mp4", tmp_path / "synth_001" / "video.mp4"]
    rotated = _load(paths[0].with_name("video.truth.json"))
    plain = _load(paths[1].with_name("video.truth.json"))
    assert rotated["rotation"] == 90 and plain["rotation"] == 0
    assert (rotated["display_width"], rotated["display_height"]) == (128, 160)
    assert rotated["blurred_frames"] == []
    with av.open(str(paths[0])) as c:
        first = next(c.decode(video=0))
        assert (first.width, first.height) == (160, 128)  # stored size
        assert first.rotation % 360 == 270  # counter-clockwise, i.e. turn 90 degrees clockwise to show
        stored = first.to_ndarray(format="bgr24")
    with av.open(str(paths[1])) as c:
        assert next(c.decode(video=0)).rotation == 0
    shown = _decode_cv2(paths[0])  # OpenCV applies the display matrix by default
    assert len(shown) == 6 and shown[0].shape == (160, 128, 3)
    upright = cv2.rotate(stored, cv2.ROTATE_90_CLOCKWISE)
    assert np.abs(upright.astype(int) - shown[0].astype(int)).mean() < 3.0
    # Drawn upright at the display size: the same video made unrotated at 128x160 shows the
    # same picture and has the same truth boxes (so boxes are in display coordinates).
    same = make_videos(tmp_path / "upright", num_videos=1, num_frames=6, size=(128, 160), fps=6, seed=0,
                       blur_frames=False)[0]
    assert _load(same.with_name("synth_000.truth.json"))["frames"] == rotated["frames"]
    assert np.abs(_decode_pyav(same)[0].astype(int) - shown[0].astype(int)).mean() < 3.0


def test_opencv_mp4v_fallback_decodes_with_both(tmp_path, monkeypatch):
    """Where PyAV has no libx264, videos are written as mp4v through OpenCV."""
    import yeay_nb.synth.videos as videos_mod
    from yeay_nb.errors import VideoError

    monkeypatch.setattr(videos_mod, "pick_encoder", lambda: "mp4v")
    path = make_videos(tmp_path, num_videos=1, num_frames=8, size=(160, 128), fps=8)[0]
    assert _load(path.with_name(path.stem + ".truth.json"))["encoder"] == "mp4v"
    a, b = _decode_pyav(path), _decode_cv2(path)
    assert len(a) == len(b) == 8 and a[0].shape == b[0].shape == (128, 160, 3)
    with pytest.raises(VideoError, match="rotation"):
        make_videos(tmp_path / "rot", num_videos=1, num_frames=4, size=(160, 128), rotation=90)
    assert not list((tmp_path / "rot").glob("*.mp4")) and not list((tmp_path / "rot").glob(".*"))
