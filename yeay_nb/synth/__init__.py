"""Synthetic wardrobe: stylized people wearing clothing, as a Visual Genome data set
and as short videos, generated deterministically from a seed.

Usage::

    from yeay_nb.synth import make_wardrobe, make_videos
    files = make_wardrobe("work/synth", num_images=200, image_size=(320, 256), seed=0)
    # files.image_data_json, files.objects_json (VG v1.4), files.person_masks_json (COCO RLE)
    videos = make_videos("work/videos", num_videos=2, num_frames=48, size=(320, 256), fps=12)
    # work/videos/synth_000.mp4 + synth_000.truth.json (per-frame boxes, blurred frames)

The same drawing function (:func:`yeay_nb.synth.figures.render_scene`) paints images
and video frames, so video frames look like training images. The items, their VG
names/synsets and the clothing38 class each maps to are listed in
:mod:`yeay_nb.synth.catalog`.
"""
from .catalog import DISTRACTOR_NAMES, VARIANTS, intended_class
from .figures import Item, Person, Rendered, Scene, random_scene, render_scene
from .videos import make_videos
from .wardrobe import WardrobeFiles, make_wardrobe

__all__ = ["make_wardrobe", "WardrobeFiles", "make_videos", "render_scene", "random_scene", "Scene",
           "Person", "Item", "Rendered", "VARIANTS", "DISTRACTOR_NAMES", "intended_class"]
