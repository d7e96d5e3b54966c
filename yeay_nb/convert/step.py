"""The convert step as notebook 01 and ``yeay-nb pipeline`` run it: params in, coco.json out.

Usage::

    from yeay_nb.params import load_params
    from yeay_nb.convert.step import run_convert
    summary = run_convert(load_params("params/demo.yaml"))

For ``source: synth`` the synthetic wardrobe (images, Visual-Genome-format json, person
masks) and a few synthetic videos are generated under ``<work_dir>/synth`` and
``<work_dir>/videos`` first (reused when already there with the same settings), then
converted exactly like real Visual Genome files.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..atomic import write_json
from ..params import Params


def _stamp_matches(stamp: Path, settings: dict) -> bool:
    try:
        return json.loads(stamp.read_text()) == settings
    except (OSError, ValueError):
        return False


def make_synthetic_sources(p: Params, progress: bool = True) -> dict:
    """Generate (or reuse) the synthetic wardrobe and videos for ``p``; return their paths."""
    from .. import synth

    s = p.convert.synth
    synth_dir = Path(p.work_dir) / "synth"
    videos_dir = Path(p.work_dir) / "videos"
    settings = {"num_images": s.num_images, "image_size": list(s.image_size), "seed": s.seed}
    stamp = synth_dir / "settings.json"
    if not _stamp_matches(stamp, settings):
        files = synth.make_wardrobe(synth_dir, num_images=s.num_images, image_size=tuple(s.image_size),
                                    seed=s.seed, progress=progress)
        write_json(stamp, settings)  # written last: a killed generation is redone next time
    files = {
        "images_dir": synth_dir / "images",
        "image_data_json": synth_dir / "image_data.json",
        "objects_json": synth_dir / "objects.json",
        "person_masks_json": synth_dir / "person_masks.json",
    }
    vsettings = {"num_videos": s.num_videos, "num_frames": s.video_frames, "size": list(s.image_size),
                 "seed": s.seed}
    vstamp = videos_dir / "settings.json"
    if s.num_videos > 0 and not _stamp_matches(vstamp, vsettings):
        synth.make_videos(videos_dir, num_videos=s.num_videos, num_frames=s.video_frames,
                          size=tuple(s.image_size), seed=s.seed)
        write_json(vstamp, vsettings)
    files["videos_dir"] = videos_dir
    return files


def run_convert(p: Params, progress: bool = True) -> dict:
    """Convert the source named in ``p.convert`` to ``p.convert.coco_json``; return the summary."""
    c = p.convert
    if c.source == "ccp":
        from .ccp import convert_ccp

        return convert_ccp(c.ccp.root, c.coco_json, taxonomy=c.taxonomy, mapping=c.ccp.mapping,
                           min_component_area=c.ccp.min_component_area,
                           holdout_every=c.ccp.holdout_every, limit=c.limit,
                           workers=c.ccp.workers, progress=progress)
    from .vg import convert_vg

    if c.source == "synth":
        files = make_synthetic_sources(p, progress=progress)
        return convert_vg(files["image_data_json"], files["objects_json"], c.coco_json,
                          images_dir=files["images_dir"], taxonomy=c.taxonomy,
                          val_fraction=c.val_fraction, limit=c.limit,
                          person_masks=files["person_masks_json"], seed=p.run.seed, progress=progress)
    return convert_vg(c.vg.image_data, c.vg.objects, c.coco_json, images_dir=c.vg.images_dir,
                      taxonomy=c.taxonomy, val_fraction=c.val_fraction, aliases=c.vg.aliases,
                      limit=c.limit, seed=p.run.seed, progress=progress)
