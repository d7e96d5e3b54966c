"""Drawing stylized people wearing clothing: the one renderer behind images and videos.

Usage::

    import numpy as np
    from yeay_nb.synth.figures import random_scene, render_scene
    rng = np.random.default_rng(0)
    scene = random_scene(rng, width=320, height=256)
    out = render_scene(scene)       # out.image (BGR uint8), out.objects, out.person_masks

A :class:`Person` is a pose (feet position, height, limb angles, how far it has turned)
plus a list of :class:`Item` s. :func:`render_scene` paints people back to front into the
image and, in lock step, paints an *owner map* (uint16: which person/part/item owns each
pixel). Later paint overwrites earlier paint in both, so occlusion (people overlapping,
a coat over a belt, the image border) is handled by construction and every box comes
from the pixels that are still visible at the end: boxes are tight and fully occluded
items are dropped.

Figure coordinates: ``u`` to the right and ``v`` up, both in units of the person's
height, origin between the feet. ``u`` is multiplied by ``width_scale`` (a person
turning sideways gets narrower).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from .catalog import (BODY_NAMES, PERSON_NAMES, SCENE_NAMES, SLOT_PROBABILITY, VARIANTS_BY_KIND,
                      VARIANTS_BY_SLOT, Variant)

Colour = tuple[int, int, int]

# Owner map encoding: owner = (person_index + 1) * PERSON_STRIDE + part.
PERSON_STRIDE = 64
PART_BODY, PART_HEAD, PART_HAIR, PART_LHAND, PART_RHAND = 1, 2, 3, 4, 5
PART_ITEM0 = 8  # items get PART_ITEM0 + their index in Person.items
MIN_VISIBLE_PIXELS = 6
HEAD_SCALE, HEAD_CENTRE, HEAD_LIFT = 1.25, 0.905, 0.02  # fewer visible pixels than this: an annotator would not box it

SKIN = ((120, 160, 220), (90, 130, 190), (60, 95, 150), (45, 70, 110), (150, 185, 235))
HAIR = ((20, 20, 20), (30, 50, 80), (40, 90, 150), (60, 60, 60), (80, 140, 200), (10, 10, 40))

# A fixed noise tile for fabric textures (denim); fixed so textures are deterministic.
_NOISE = np.random.default_rng(12345).normal(0.0, 1.0, (64, 64)).astype(np.float32)


@dataclass
class Item:
    """One worn item: which variant, its VG name/synset, colours and pattern."""

    kind: str
    name: str
    synset: str
    colour: Colour
    colour2: Colour
    pattern: str = "plain"  # plain, stripes, plaid, dots, ribs, denim
    side: int = 1  # -1 left / +1 right, for one-sided items (a shoe, a bag, a watch)
    length: float = 0.0  # variant-specific shape parameter (coat length, skirt length, ...)
    open_front: bool = False  # coats: open, showing the top underneath

    @property
    def variant(self) -> Variant:
        return VARIANTS_BY_KIND[self.kind]


@dataclass
class Person:
    """A pose and an outfit. Angles are in radians; 0 means hanging straight down."""

    cx: float
    foot_y: float
    height: float
    width_scale: float = 1.0
    arm_angles: tuple[float, float] = (0.15, 0.15)  # (left, right), outward from hanging
    elbow_bends: tuple[float, float] = (0.1, 0.1)
    leg_angles: tuple[float, float] = (0.05, 0.05)  # (left, right), outward
    skin: Colour = SKIN[0]
    hair: Colour = HAIR[0]
    hair_style: str = "short"  # short, long, none
    items: list[Item] = field(default_factory=list)
    name: str = "person"
    name_synset: str = "person.n.01"


@dataclass
class Scene:
    """A background (already painted, with its own VG objects) and people to paint over it."""

    background: np.ndarray
    background_objects: list[dict]
    people: list[Person]
    noise_seed: int = 0
    noise_sigma: float = 2.5
    annotate_body: float = 0.5  # probability of emitting a face/hand/hair distractor box


@dataclass
class Rendered:
    """The painted image and everything visible in it."""

    image: np.ndarray  # H x W x 3 BGR uint8
    objects: list[dict]  # {"name", "synset", "class_name" (None = distractor), "box": [x, y, w, h], "person"}
    person_masks: list[np.ndarray]  # bool H x W, one per visible person (in scene.people order)
    person_indices: list[int]  # index into scene.people of each mask
    owners: np.ndarray  # uint16 owner map (see PERSON_STRIDE)


# --------------------------------------------------------------------------- painting
class _Painter:
    """Paints into the image and the owner map together, tracking each owner's extent."""

    def __init__(self, image: np.ndarray, owners: np.ndarray):
        self.image, self.owners = image, owners
        self.h, self.w = owners.shape
        self.extent: dict[int, list[int]] = {}

    def _grow(self, owner: int, x0: float, y0: float, x1: float, y1: float) -> None:
        x0, y0 = max(0, int(math.floor(x0)) - 1), max(0, int(math.floor(y0)) - 1)
        x1, y1 = min(self.w, int(math.ceil(x1)) + 2), min(self.h, int(math.ceil(y1)) + 2)
        if x1 <= x0 or y1 <= y0:
            return
        e = self.extent.get(owner)
        if e is None:
            self.extent[owner] = [x0, y0, x1, y1]
        else:
            e[0], e[1], e[2], e[3] = min(e[0], x0), min(e[1], y0), max(e[2], x1), max(e[3], y1)

    def poly(self, pts, colour, owner: int) -> None:
        p = np.round(np.asarray(pts, np.float64)).astype(np.int32)
        cv2.fillPoly(self.image, [p], colour)
        cv2.fillPoly(self.owners, [p], owner)
        self._grow(owner, p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max())

    def line(self, p0, p1, thickness: float, colour, owner: int) -> None:
        a, b = (int(round(p0[0])), int(round(p0[1]))), (int(round(p1[0])), int(round(p1[1])))
        t = max(1, int(round(thickness)))
        cv2.line(self.image, a, b, colour, t)
        cv2.line(self.owners, a, b, owner, t)
        r = t / 2 + 1
        self._grow(owner, min(a[0], b[0]) - r, min(a[1], b[1]) - r, max(a[0], b[0]) + r, max(a[1], b[1]) + r)

    def ellipse(self, c, axes, colour, owner: int, angle: float = 0.0, start: float = 0.0,
                end: float = 360.0, thickness: int = -1) -> None:
        cc = (int(round(c[0])), int(round(c[1])))
        ax = (max(1, int(round(axes[0]))), max(1, int(round(axes[1]))))
        cv2.ellipse(self.image, cc, ax, angle, start, end, colour, thickness)
        cv2.ellipse(self.owners, cc, ax, angle, start, end, owner, thickness)
        r = max(ax) + max(thickness, 0) + 1
        self._grow(owner, cc[0] - r, cc[1] - r, cc[0] + r, cc[1] + r)

    def pattern(self, owner: int, kind: str, colour2, period: int) -> None:
        """Texture the pixels this owner holds right now (so later paint can still cover them)."""
        e = self.extent.get(owner)
        if kind == "plain" or e is None:
            return
        x0, y0, x1, y1 = e
        mine = self.owners[y0:y1, x0:x1] == owner
        if not mine.any():
            return
        yy, xx = np.mgrid[y0:y1, x0:x1]
        region = self.image[y0:y1, x0:x1]
        p = max(2, period)
        if kind == "stripes":
            sel = mine & ((yy // p) % 2 == 0)
            region[sel] = colour2
        elif kind == "plaid":
            sel = mine & (((yy // p) % 3 == 0) | ((xx // p) % 3 == 0))
            region[sel] = (region[sel] * 0.45 + np.asarray(colour2) * 0.55).astype(np.uint8)
        elif kind == "dots":
            sel = mine & ((yy % p) < max(1, p // 3)) & ((xx % p) < max(1, p // 3))
            region[sel] = colour2
        elif kind == "ribs":
            sel = mine & ((xx % max(2, p // 2)) == 0)
            region[sel] = (region[sel] * 0.7).astype(np.uint8)
        elif kind == "denim":
            n = _NOISE[yy % 64, xx % 64][mine]
            region[mine] = np.clip(region[mine].astype(np.float32) + 14.0 * n[:, None], 0, 255).astype(np.uint8)


def _shade(c: Colour, f: float) -> Colour:
    return tuple(int(min(255, max(0, round(v * f)))) for v in c)  # type: ignore[return-value]


# --------------------------------------------------------------------------- one person
def _draw_person(pt: _Painter, person: Person, index: int) -> dict[int, Item]:
    """Paint one person; returns {owner: item} for the items painted."""
    H, ws = person.height, person.width_scale
    cx, fy = person.cx, person.foot_y
    base = (index + 1) * PERSON_STRIDE
    body, head_o, hair_o = base + PART_BODY, base + PART_HEAD, base + PART_HAIR
    hand_o = (base + PART_LHAND, base + PART_RHAND)
    tk = H * (0.55 + 0.45 * ws)  # thickness scale: a turned figure gets a bit slimmer

    def P(u: float, v: float) -> tuple[float, float]:
        return (cx + u * H * ws, fy - v * H)

    def poly(pts, colour, owner):
        pt.poly([P(u, v) for u, v in pts], colour, owner)

    by_slot: dict[str, tuple[int, Item]] = {}
    feet: list[tuple[int, Item]] = []
    for i, it in enumerate(person.items):
        o = base + PART_ITEM0 + i
        if it.variant.slot == "footwear":
            feet.append((o, it))
        else:
            by_slot[it.variant.slot] = (o, it)

    # Skeleton in figure coordinates.
    sides = (-1, 1)
    hips = [(s * 0.055, 0.50) for s in sides]
    knees, ankles = [], []
    for (hu, hv), s, a in zip(hips, sides, person.leg_angles):
        k = (hu + s * 0.235 * math.sin(a), hv - 0.235 * math.cos(a))
        a2 = a * 0.5
        knees.append(k)
        ankles.append((k[0] + s * 0.225 * math.sin(a2), k[1] - 0.225 * math.cos(a2)))
    shoulders = [(s * 0.125, 0.785) for s in sides]
    elbows, wrists = [], []
    for (su, sv), s, a, b in zip(shoulders, sides, person.arm_angles, person.elbow_bends):
        e = (su + s * 0.16 * math.sin(a) / ws, sv - 0.16 * math.cos(a))
        elbows.append(e)
        wrists.append((e[0] + s * 0.155 * math.sin(a + b) / ws, e[1] - 0.155 * math.cos(a + b)))

    def lerp(p, q, t):
        return (p[0] + (q[0] - p[0]) * t, p[1] + (q[1] - p[1]) * t)

    # 1. behind the body: backpack, long hair
    bag = by_slot.get("bag")
    if bag and bag[1].kind == "backpack":
        o, it = bag
        d = it.side * 0.06
        poly([(d - 0.15, 0.84), (d + 0.15, 0.84), (d + 0.16, 0.50), (d - 0.16, 0.50)], it.colour, o)
        poly([(d - 0.11, 0.64), (d + 0.11, 0.64), (d + 0.12, 0.53), (d - 0.12, 0.53)], it.colour2, o)
    if person.hair_style == "long":
        poly([(-0.075, 0.95), (0.075, 0.95), (0.085, 0.76), (-0.085, 0.76)], person.hair, hair_o)

    # 2. legs and feet (skin), bottoms, footwear
    for h, k, a in zip(hips, knees, ankles):
        pt.line(P(*h), P(*k), 0.075 * tk, person.skin, body)
        pt.line(P(*k), P(*a), 0.062 * tk, person.skin, body)
    if not feet:
        for s, a in zip(sides, ankles):
            pt.ellipse(P(a[0] + s * 0.012, a[1] - 0.012), (0.04 * H * ws, 0.018 * H), person.skin, body)
    bottom = by_slot.get("bottom")
    if bottom:
        o, it = bottom
        if it.kind in ("pants", "jeans", "shorts"):
            poly([(-0.107, 0.575), (0.107, 0.575), (0.115, 0.45), (-0.115, 0.45)], it.colour, o)
            for h, k, a in zip(hips, knees, ankles):
                if it.kind == "shorts":
                    pt.line(P(*h), P(*lerp(h, k, 0.55 + it.length)), 0.095 * tk, it.colour, o)
                else:
                    pt.line(P(*h), P(*k), 0.088 * tk, it.colour, o)
                    pt.line(P(*k), P(*lerp(k, a, 0.93)), 0.074 * tk, it.colour, o)
        else:  # skirt
            hem = 0.36 - it.length
            flare = 0.15 + it.length * 0.4
            poly([(-0.105, 0.575), (0.105, 0.575), (flare, hem), (-flare, hem)], it.colour, o)
        pt.pattern(o, it.pattern, it.colour2, int(0.025 * H))
    for (o, it), s, k, a in zip(feet, sides, knees, ankles):
        if it.kind == "boot":
            pt.line(P(*lerp(k, a, 0.45)), P(*a), 0.08 * tk, it.colour, o)
        pt.ellipse(P(a[0] + s * 0.016, a[1] - 0.018), (0.062 * H * ws, 0.032 * H), it.colour, o)
        if it.kind == "sneaker":
            pt.line(P(a[0] + s * 0.016 - 0.055, a[1] - 0.042), P(a[0] + s * 0.016 + 0.055, a[1] - 0.042),
                    0.016 * H, it.colour2, o)

    # 3. torso, arms (skin), the top
    torso = [(-0.14, 0.815), (0.14, 0.815), (0.115, 0.70), (0.105, 0.56), (0.11, 0.49),
             (-0.11, 0.49), (-0.105, 0.56), (-0.115, 0.70)]
    pt.line(P(0, 0.80), P(0, 0.87), 0.05 * tk, person.skin, body)
    poly(torso, person.skin, body)
    for s, e, w in zip(shoulders, elbows, wrists):
        pt.line(P(*s), P(*e), 0.055 * tk, person.skin, body)
        pt.line(P(*e), P(*w), 0.047 * tk, person.skin, body)

    def sleeves(o, colour, length, widen=1.0):
        for s, e, w in zip(shoulders, elbows, wrists):
            if length <= 0.5:
                pt.line(P(*s), P(*lerp(s, e, length * 2)), 0.072 * tk * widen, colour, o)
            else:
                pt.line(P(*s), P(*e), 0.068 * tk * widen, colour, o)
                pt.line(P(*e), P(*lerp(e, w, (length - 0.5) * 2)), 0.06 * tk * widen, colour, o)

    top = by_slot.get("top")
    if top:
        o, it = top
        if it.kind == "dress":
            poly(torso[:5] + [(0.105, 0.56), (-0.105, 0.56)] + torso[6:], it.colour, o)
            hem = 0.30 - it.length
            flare = 0.17 + it.length * 0.5
            poly([(-0.105, 0.565), (0.105, 0.565), (flare, hem), (-flare, hem)], it.colour, o)
            sleeves(o, it.colour, 0.25)
        else:
            poly([(-0.145, 0.82), (0.145, 0.82)] + torso[2:], it.colour, o)
            sleeves(o, it.colour, {"tshirt": 0.3, "shirt": 0.95, "sweater": 1.0}[it.kind])
        pt.pattern(o, it.pattern, it.colour2, int(0.03 * H))
        if it.kind == "shirt":  # collar
            poly([(-0.05, 0.83), (0.0, 0.79), (-0.01, 0.76), (-0.06, 0.80)], it.colour2, o)
            poly([(0.05, 0.83), (0.0, 0.79), (0.01, 0.76), (0.06, 0.80)], it.colour2, o)
        elif it.kind == "sweater":  # hem band and cuffs
            poly([(-0.112, 0.52), (0.112, 0.52), (0.11, 0.49), (-0.11, 0.49)], _shade(it.colour, 0.7), o)
    for w, s, o in zip(wrists, sides, hand_o):
        pt.ellipse(P(w[0] + s * 0.004, w[1] - 0.012), (0.028 * H * ws, 0.032 * H), person.skin, o)

    belt = by_slot.get("belt")
    if belt:
        o, it = belt
        poly([(-0.109, 0.572), (0.109, 0.572), (0.11, 0.532), (-0.11, 0.532)], it.colour, o)
        poly([(-0.024, 0.578), (0.024, 0.578), (0.024, 0.526), (-0.024, 0.526)], it.colour2, o)

    outer = by_slot.get("outer")
    if outer:
        o, it = outer
        hem = 0.44 - it.length
        gap = 0.03 if it.open_front else 0.0
        for s in sides:
            poly([(s * gap, 0.80), (s * 0.155, 0.83), (s * 0.128, 0.70), (s * 0.125, hem), (s * gap, hem)],
                 it.colour, o)
        sleeves(o, it.colour, 0.97, widen=1.18)
        if not it.open_front:
            pt.line(P(0, 0.80), P(0, hem), max(1.0, 0.006 * H), _shade(it.colour, 0.6), o)
        for w, s, ho in zip(wrists, sides, hand_o):  # hands stay in front of the sleeves
            pt.ellipse(P(w[0] + s * 0.004, w[1] - 0.012), (0.028 * H * ws, 0.032 * H), person.skin, ho)

    scarf = by_slot.get("scarf")
    if scarf:
        o, it = scarf
        poly([(-0.075, 0.855), (0.075, 0.855), (0.08, 0.80), (-0.08, 0.80)], it.colour, o)
        pt.line(P(it.side * 0.035, 0.81), P(it.side * 0.05, 0.62), 0.045 * tk, it.colour, o)
        pt.pattern(o, it.pattern, it.colour2, int(0.02 * H))

    # 4. head, face, hair, eyewear, headwear: drawn HEAD_SCALE times larger than life
    # (cartoon proportions) so glasses and hats are big enough to learn at small image sizes.
    HH = H * HEAD_SCALE

    def Q(u: float, v: float) -> tuple[float, float]:
        return P(u * HEAD_SCALE, HEAD_CENTRE + HEAD_LIFT + (v - HEAD_CENTRE) * HEAD_SCALE)

    def qpoly(pts, colour, owner):
        pt.poly([Q(u, v) for u, v in pts], colour, owner)

    pt.ellipse(Q(0, 0.905), (0.06 * HH * ws, 0.075 * HH), person.skin, head_o)
    dark = (30, 30, 30)
    for s in sides:
        pt.ellipse(Q(s * 0.022, 0.915), (max(1, 0.006 * HH), max(1, 0.006 * HH)), dark, head_o)
    pt.line(Q(-0.015, 0.868), Q(0.015, 0.868), max(1, 0.005 * HH), (60, 60, 150), head_o)
    if person.hair_style != "none":
        pt.ellipse(Q(0, 0.925), (0.064 * HH * ws, 0.062 * HH), person.hair, hair_o, start=180, end=360)
    eyew = by_slot.get("eyewear")
    if eyew:
        o, it = eyew
        r = (0.021 * HH * ws, 0.017 * HH)
        for s in sides:
            if it.kind == "sunglasses":
                pt.ellipse(Q(s * 0.024, 0.915), r, it.colour, o)
            else:
                pt.ellipse(Q(s * 0.024, 0.915), r, it.colour, o, thickness=max(1, int(0.008 * HH)))
        pt.line(Q(-0.006, 0.917), Q(0.006, 0.917), max(1, 0.006 * HH), it.colour, o)
    hw = by_slot.get("headwear")
    if hw:
        o, it = hw
        if it.kind == "hat":
            qpoly([(-0.065, 0.96), (0.065, 0.96), (0.055, 1.05), (-0.055, 1.05)], it.colour, o)
            qpoly([(-0.065, 0.985), (0.065, 0.985), (0.064, 0.965), (-0.064, 0.965)], it.colour2, o)
            pt.ellipse(Q(0, 0.962), (0.115 * HH * ws, 0.018 * HH), it.colour, o)
        elif it.kind == "cap":
            pt.ellipse(Q(0, 0.94), (0.066 * HH * ws, 0.062 * HH), it.colour, o, start=180, end=360)
            pt.ellipse(Q(it.side * 0.07, 0.945), (0.055 * HH * ws, 0.014 * HH), _shade(it.colour, 0.8), o)
        else:  # beanie
            pt.ellipse(Q(0, 0.935), (0.068 * HH * ws, 0.075 * HH), it.colour, o, start=180, end=360)
            qpoly([(-0.07, 0.955), (0.07, 0.955), (0.07, 0.925), (-0.07, 0.925)], it.colour2, o)
            pt.pattern(o, it.pattern, _shade(it.colour, 0.7), int(0.02 * HH))

    # 5. in front: watch, bag straps and bags
    watch = by_slot.get("watch")
    if watch:
        o, it = watch
        i = 0 if it.side < 0 else 1
        e, w = elbows[i], wrists[i]
        pt.line(P(*lerp(e, w, 0.74)), P(*lerp(e, w, 0.92)), 0.07 * tk, it.colour2, o)
        c = lerp(e, w, 0.83)
        pt.ellipse(P(*c), (0.027 * H * ws, 0.027 * H), it.colour, o)
    if bag:
        o, it = bag
        s = it.side
        if it.kind == "backpack":
            for ss in sides:
                pt.line(P(ss * 0.085, 0.815), P(ss * 0.095, 0.60), 0.03 * tk, it.colour, o)
        else:
            big = it.kind == "shoulder_bag"
            bw, bh, bv = (0.08, 0.13, 0.35) if big else (0.065, 0.095, 0.41)
            u0 = s * (0.19 if big else 0.17)
            strap_from = (s * 0.1, 0.80) if big else (-s * 0.09, 0.81)
            pt.line(P(*strap_from), P(u0, bv + bh), max(1.0, 0.012 * H), _shade(it.colour, 0.7), o)
            poly([(u0 - bw * 0.85, bv + bh), (u0 + bw * 0.85, bv + bh), (u0 + bw, bv), (u0 - bw, bv)], it.colour, o)
            poly([(u0 - bw * 0.85, bv + bh), (u0 + bw * 0.85, bv + bh), (u0 + bw * 0.9, bv + bh * 0.7),
                  (u0 - bw * 0.9, bv + bh * 0.7)], it.colour2, o)
    return {base + PART_ITEM0 + i: it for i, it in enumerate(person.items)}


# --------------------------------------------------------------------------- rendering
def _visible_box(owners: np.ndarray, owner: int, extent) -> list[int] | None:
    """Tight [x, y, w, h] around the pixels ``owner`` still holds (None when too few)."""
    if extent is None:
        return None
    x0, y0, x1, y1 = extent
    mine = owners[y0:y1, x0:x1] == owner
    if int(mine.sum()) < MIN_VISIBLE_PIXELS:
        return None
    rows = np.flatnonzero(mine.any(axis=1))
    cols = np.flatnonzero(mine.any(axis=0))
    return [int(x0 + cols[0]), int(y0 + rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]


def render_scene(scene: Scene, rng: np.random.Generator | None = None) -> Rendered:
    """Paint ``scene``; returns the image, the visible VG objects and person masks.

    ``rng`` decides which body parts get distractor boxes (face, hands, hair); by default
    it is seeded from ``scene.noise_seed`` so the same scene always renders the same.
    """
    rng = rng if rng is not None else np.random.default_rng(scene.noise_seed)
    image = scene.background.copy()
    h, w = image.shape[:2]
    owners = np.zeros((h, w), np.uint16)
    pt = _Painter(image, owners)
    order = sorted(range(len(scene.people)), key=lambda i: scene.people[i].foot_y)  # far to near
    items_of: dict[int, dict[int, Item]] = {}
    for i in order:
        items_of[i] = _draw_person(pt, scene.people[i], i)
    if scene.noise_sigma > 0:
        noise = np.random.default_rng(scene.noise_seed).normal(0.0, scene.noise_sigma, image.shape)
        image[:] = np.clip(image + noise, 0, 255).astype(np.uint8)

    objects = list(scene.background_objects)
    masks, mask_people = [], []
    person_part = owners // PERSON_STRIDE
    for i, person in enumerate(scene.people):
        items = items_of[i]
        bag_owners = [o for o, it in items.items() if it.variant.slot == "bag"]
        mask = person_part == i + 1
        for o in bag_owners:  # a carried bag is not part of the person's mask
            mask &= owners != o
        if int(mask.sum()) < MIN_VISIBLE_PIXELS:
            continue  # fully hidden or outside the image: no person, no items
        masks.append(mask)
        mask_people.append(i)
        for o, it in items.items():
            box = _visible_box(owners, o, pt.extent.get(o))
            if box is not None:
                objects.append({"name": it.name, "synset": it.synset, "class_name": it.variant.class_name,
                                "box": box, "person": i})
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        objects.append({"name": person.name, "synset": person.name_synset, "class_name": None, "person": i,
                        "box": [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]})
        base = (i + 1) * PERSON_STRIDE
        for part, key in ((PART_HEAD, "head"), (PART_HAIR, "hair"), (PART_LHAND, "hand"), (PART_RHAND, "hand")):
            if rng.random() >= scene.annotate_body:
                continue
            box = _visible_box(owners, base + part, pt.extent.get(base + part))
            if box is not None:
                name, synset = BODY_NAMES[key]
                objects.append({"name": name, "synset": synset, "class_name": None, "box": box, "person": i})
    return Rendered(image=image, objects=objects, person_masks=masks, person_indices=mask_people, owners=owners)


# --------------------------------------------------------------------------- random content
def _jitter(rng: np.random.Generator, c: Colour, amount: int = 18) -> Colour:
    return tuple(int(v) for v in np.clip(np.asarray(c) + rng.integers(-amount, amount + 1, 3), 0, 255))  # type: ignore


def _pick(rng: np.random.Generator, seq):
    return seq[int(rng.integers(len(seq)))]


def _pick_name(rng: np.random.Generator, v: Variant) -> tuple[str, str]:
    # The first name is the common one (VG: "shirt" far outnumbers "tee shirt").
    return v.names[0] if rng.random() < 0.55 else _pick(rng, v.names)


def random_item(rng: np.random.Generator, kind: str) -> Item:
    """A random item of one variant (colour, secondary colour, pattern, name)."""
    v = VARIANTS_BY_KIND[kind]
    name, synset = _pick_name(rng, v)
    colour = _jitter(rng, _pick(rng, v.colours))
    colour2 = _jitter(rng, _pick(rng, ((235, 235, 235), (30, 30, 30), (40, 180, 230), (60, 60, 200),
                                        (200, 120, 40))))
    pattern = "plain"
    r = rng.random()
    if kind in ("shirt", "tshirt"):
        pattern = "stripes" if r < 0.25 else "plaid" if r < 0.4 and kind == "shirt" else "plain"
    elif kind == "sweater":
        pattern = "ribs"
    elif kind in ("dress", "skirt", "scarf"):
        pattern = "dots" if r < 0.3 else "stripes" if r < 0.45 else "plain"
    elif kind == "jeans":
        pattern = "denim"
    elif kind == "beanie":
        pattern = "ribs"
    if kind == "belt":
        colour2 = _jitter(rng, _pick(rng, ((60, 170, 210), (190, 190, 190))), 10)
    if kind == "shirt" and pattern == "plain" and rng.random() < 0.5:
        colour2 = colour  # a collar in the shirt's own colour
    length = 0.0
    if kind == "coat":
        length = float(rng.uniform(0.0, 0.14))
    elif kind in ("skirt", "dress"):
        length = float(rng.uniform(-0.04, 0.08))
    elif kind == "shorts":
        length = float(rng.uniform(-0.1, 0.15))
    return Item(kind=kind, name=name, synset=synset, colour=colour, colour2=colour2, pattern=pattern,
                side=1 if rng.random() < 0.5 else -1, length=length, open_front=bool(rng.random() < 0.5))


def random_outfit(rng: np.random.Generator) -> list[Item]:
    """A random outfit: always a top, a bottom unless it is a dress, the rest by chance."""
    kinds = [_pick(rng, ("shirt", "tshirt", "tshirt", "sweater", "dress", "shirt"))]
    if kinds[0] != "dress":
        kinds.append(_pick(rng, ("pants", "jeans", "jeans", "shorts", "skirt", "pants")))
    for slot in ("outer", "headwear", "eyewear", "bag", "scarf", "belt", "watch"):
        if rng.random() < SLOT_PROBABILITY[slot]:
            kinds.append(_pick(rng, VARIANTS_BY_SLOT[slot]).kind)
    items = [random_item(rng, k) for k in kinds]
    if rng.random() < SLOT_PROBABILITY["footwear"]:
        shoe = random_item(rng, _pick(rng, VARIANTS_BY_SLOT["footwear"]).kind)
        items += [shoe, Item(**{**shoe.__dict__, "side": -shoe.side})]  # a pair: one object per foot
    return items


def random_person(rng: np.random.Generator, cx: float, foot_y: float, height: float) -> Person:
    """A person with a random outfit and relaxed pose at a given place and size."""
    items = random_outfit(rng)
    kinds = {it.kind for it in items}
    female = bool(kinds & {"dress", "skirt", "purse"}) or rng.random() < 0.3
    name, synset = _pick(rng, [n for n in PERSON_NAMES if (n[0] in ("woman", "girl")) == female
                               or n[0] in ("person", "people")])
    arms = [float(rng.uniform(0.05, 0.4)), float(rng.uniform(0.05, 0.4))]
    bends = [float(rng.uniform(0.0, 0.4)), float(rng.uniform(0.0, 0.4))]
    if rng.random() < 0.15:  # waving
        k = int(rng.integers(2))
        arms[k], bends[k] = float(rng.uniform(1.8, 2.6)), float(rng.uniform(0.3, 0.9))
    return Person(cx=float(cx), foot_y=float(foot_y), height=float(height),
                  width_scale=float(rng.uniform(0.8, 1.0)) if rng.random() < 0.7 else float(rng.uniform(0.55, 0.8)),
                  arm_angles=(arms[0], arms[1]), elbow_bends=(bends[0], bends[1]),
                  leg_angles=(float(rng.uniform(-0.03, 0.18)), float(rng.uniform(-0.03, 0.18))),
                  skin=_jitter(rng, _pick(rng, SKIN), 10), hair=_jitter(rng, _pick(rng, HAIR), 10),
                  hair_style=_pick(rng, ("short", "long", "long", "none") if female else ("short", "short", "none")),
                  items=items, name=name, name_synset=synset)


def random_background(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, list[dict]]:
    """A varied background (outdoor, wall, building, noise or shapes) and its VG objects."""
    w, h = width, height
    kind = _pick(rng, ("outdoor", "wall", "building", "noise", "shapes"))
    img = np.empty((h, w, 3), np.uint8)
    objs: list[dict] = []

    def obj(key, x0, y0, x1, y1):
        x0, y0, x1, y1 = max(0, int(x0)), max(0, int(y0)), min(w, int(x1)), min(h, int(y1))
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            name, synset = SCENE_NAMES[key]
            objs.append({"name": name, "synset": synset, "class_name": None,
                         "box": [x0, y0, x1 - x0, y1 - y0], "person": None})

    def gradient(y0, y1, c0, c1):
        t = np.linspace(0.0, 1.0, max(1, y1 - y0), dtype=np.float32)[:, None, None]
        img[y0:y1] = (np.asarray(c0, np.float32) * (1 - t) + np.asarray(c1, np.float32) * t).astype(np.uint8)

    if kind in ("outdoor", "building"):
        horizon = int(h * rng.uniform(0.3, 0.6))
        gradient(0, horizon, _jitter(rng, (230, 160, 90), 25), _jitter(rng, (250, 220, 190), 15))
        ground = _pick(rng, ("grass", "ground"))
        gradient(horizon, h, _jitter(rng, (60, 150, 80) if ground == "grass" else (120, 140, 150), 25),
                 _jitter(rng, (30, 100, 40) if ground == "grass" else (70, 90, 100), 25))
        obj("sky", 0, 0, w, horizon)
        obj(ground, 0, horizon, w, h)
        if kind == "outdoor":
            for _ in range(int(rng.integers(0, 3))):
                x, y, r = rng.uniform(0, w), rng.uniform(0, horizon * 0.6), rng.uniform(0.04, 0.1) * w
                cv2.ellipse(img, (int(x), int(y)), (int(r * 1.8), int(r)), 0, 0, 360, (245, 245, 245), -1)
                obj("cloud", x - r * 1.8, y - r, x + r * 1.8 + 1, y + r + 1)
            for _ in range(int(rng.integers(0, 4))):
                x, r = rng.uniform(0, w), rng.uniform(0.05, 0.12) * h
                yb = horizon + rng.uniform(0, 0.1) * h
                cv2.rectangle(img, (int(x - r * 0.2), int(yb - r * 1.6)), (int(x + r * 0.2), int(yb)),
                              _jitter(rng, (30, 60, 90), 10), -1)
                cv2.circle(img, (int(x), int(yb - r * 2.2)), int(r), _jitter(rng, (40, 120, 40), 25), -1)
                obj("tree", x - r, yb - r * 3.2, x + r + 1, yb + 1)
        else:
            x = rng.uniform(-0.2, 0.3) * w
            while x < w:
                bw, bh = rng.uniform(0.15, 0.35) * w, rng.uniform(0.3, 0.9) * horizon + horizon * 0.3
                c = _jitter(rng, _pick(rng, ((150, 150, 160), (90, 110, 140), (170, 190, 200))), 15)
                cv2.rectangle(img, (int(x), int(horizon - bh)), (int(x + bw), horizon), c, -1)
                obj("building", x, horizon - bh, x + bw, horizon)
                step = max(6, int(bw / 4))
                for wx in range(int(x + step / 2), int(x + bw - step / 2), step):
                    for wy in range(int(horizon - bh + step / 2), horizon - step, step):
                        cv2.rectangle(img, (wx, wy), (wx + step // 2, wy + step // 2), (90, 60, 40), -1)
                if rng.random() < 0.5 and bw > 2 * step:
                    wx = int(x + step / 2)
                    obj("window", wx, horizon - bh + step / 2, wx + step // 2 + 1, horizon - bh + step / 2 + step // 2 + 1)
                x += bw + rng.uniform(0.0, 0.1) * w
    elif kind == "wall":
        floor = int(h * rng.uniform(0.65, 0.9))
        base = _jitter(rng, _pick(rng, ((200, 210, 220), (170, 200, 230), (210, 190, 170), (120, 140, 160))), 20)
        img[:floor] = base
        period = int(rng.integers(6, 24))
        stripe = _shade(base, float(rng.uniform(0.75, 0.9)))
        if rng.random() < 0.6:
            for x in range(0, w, period * 2):
                img[:floor, x:x + period] = stripe
        else:
            for y in range(0, floor, period * 2):
                img[y:y + period] = stripe
        gradient(floor, h, _jitter(rng, (60, 90, 130), 20), _jitter(rng, (40, 60, 90), 20))
        obj("wall", 0, 0, w, floor)
        obj("floor", 0, floor, w, h)
        if rng.random() < 0.5:
            x, y = rng.uniform(0, 0.7) * w, rng.uniform(0.05, 0.3) * h
            ww, wh = rng.uniform(0.15, 0.3) * w, rng.uniform(0.2, 0.35) * h
            cv2.rectangle(img, (int(x), int(y)), (int(x + ww), int(y + wh)), (240, 220, 200), -1)
            cv2.rectangle(img, (int(x), int(y)), (int(x + ww), int(y + wh)), (80, 80, 80), 2)
            obj("window", x - 1, y - 1, x + ww + 2, y + wh + 2)
    elif kind == "noise":
        small = rng.uniform(0, 255, (int(rng.integers(3, 9)), int(rng.integers(3, 9)), 3)).astype(np.float32)
        small = 0.5 * small + 0.5 * small.mean(axis=2, keepdims=True)  # tone down: clothes should stand out
        img[:] = np.clip(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)
        fine = rng.normal(0, 12, (h // 4 + 1, w // 4 + 1, 1)).astype(np.float32)
        img[:] = np.clip(img + cv2.resize(fine, (w, h))[..., None], 0, 255).astype(np.uint8)
    else:  # shapes
        gradient(0, h, _jitter(rng, (180, 180, 180), 60), _jitter(rng, (100, 100, 100), 60))
        for _ in range(int(rng.integers(4, 12))):
            c = tuple(int(x) for x in rng.integers(0, 256, 3))
            x, y, r = int(rng.uniform(0, w)), int(rng.uniform(0, h)), int(rng.uniform(0.03, 0.15) * min(w, h))
            shape = rng.random()
            if shape < 0.4:
                cv2.circle(img, (x, y), r, c, -1)
                if rng.random() < 0.3:
                    obj("ball", x - r, y - r, x + r + 1, y + r + 1)
            elif shape < 0.8:
                cv2.rectangle(img, (x - r, y - r // 2), (x + r, y + r // 2), c, -1)
            else:
                tri = np.array([[x, y - r], [x + r, y + r], [x - r, y + r]], np.int32)
                cv2.fillPoly(img, [tri], c)
    return img, objs


def random_people(rng: np.random.Generator, width: int, height: int, count: int | None = None) -> list[Person]:
    """1-3 people of varied size and place: some close-ups cut by the bottom edge, some cut
    at the sides, some overlapping."""
    w, h = width, height
    n = count if count is not None else int(rng.choice([1, 2, 3], p=[0.45, 0.35, 0.2]))
    people: list[Person] = []
    for k in range(n):
        if rng.random() < 0.25:  # a close-up from the waist or knees up, like a selfie video
            size = h * rng.uniform(1.2, 1.8)
            foot_y = h * rng.uniform(0.0, 0.08) + size * 1.1
        else:
            size = h * rng.uniform(0.5, 0.95)
            foot_y = rng.uniform(size * 1.0, h * 1.04)
        if people and rng.random() < 0.45:  # stand next to (and partly in front of) someone
            prev = people[-1]
            cx = prev.cx + (1 if rng.random() < 0.5 else -1) * rng.uniform(0.12, 0.3) * max(size, prev.height)
        elif rng.random() < 0.12:  # cut by the left or right border
            cx = rng.uniform(-0.04, 0.06) * w
            cx = w - cx if rng.random() < 0.5 else cx
        else:
            cx = rng.uniform(0.12, 0.88) * w
        people.append(random_person(rng, cx, foot_y, size))
    return people


def random_scene(rng: np.random.Generator, width: int, height: int) -> Scene:
    """A random background with 1-3 random people: what one training image shows."""
    background, objs = random_background(rng, width, height)
    people = random_people(rng, width, height)
    return Scene(background=background, background_objects=objs, people=people,
                 noise_seed=int(rng.integers(2**31)))
