"""What the synthetic people can wear: item kinds, their Visual Genome names and synsets,
the clothing38 class each is meant to map to, and the colours they come in.

The names are VG-style on purpose (plurals, aliases, colour-prefixed names such as
"blue shirt" that only map through their synset) so the VG converter's name/synset
rules are exercised the way real VG data exercises them.

``tests/test_synth.py`` checks that every name emitted for an item maps to
``Variant.class_name`` through ``load_taxonomy().class_for([name], [synset])`` and that
every distractor name maps to nothing.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Variant:
    """One way to draw an item kind, with the VG names/synsets annotators used for it."""

    kind: str  # drawing routine: "shirt", "tshirt", "coat", ...
    slot: str  # body slot: headwear, eyewear, top, outer, bottom, footwear, bag, scarf, belt, watch
    class_name: str  # intended clothing38 class
    names: tuple[tuple[str, str], ...]  # (VG name, WordNet synset) choices
    colours: tuple[tuple[int, int, int], ...]  # BGR palette; a little jitter is added per item


# A few palettes (BGR, OpenCV order). Distinct palettes per kind make items learnable
# by colour as well as by shape and position; the jitter gives variation.
_BRIGHT = ((40, 40, 200), (200, 90, 30), (40, 170, 40), (30, 200, 230), (160, 60, 160),
           (230, 230, 230), (200, 160, 60), (60, 120, 250), (120, 200, 250))
_DARK = ((40, 40, 40), (70, 50, 30), (30, 60, 90), (90, 90, 90), (20, 40, 110), (60, 80, 40))
_EARTH = ((50, 90, 140), (40, 60, 90), (70, 110, 150), (30, 30, 60), (110, 130, 140))
_DENIM = ((140, 80, 30), (160, 100, 50), (110, 60, 25), (180, 130, 80))
_KHAKI = ((120, 170, 190), (60, 60, 60), (90, 60, 40), (130, 130, 130), (50, 40, 30))
_SHOE = ((25, 25, 25), (40, 50, 90), (240, 240, 240), (60, 60, 170), (30, 70, 110))
_METAL = ((60, 160, 200), (180, 180, 180), (30, 30, 30))

VARIANTS: tuple[Variant, ...] = (
    # headwear
    Variant("hat", "headwear", "headwear", (("hat", "hat.n.01"), ("hats", "hat.n.01"),
                                            ("straw hat", "hat.n.01")), _EARTH + ((60, 180, 220),)),
    Variant("cap", "headwear", "headwear", (("cap", "cap.n.01"), ("baseball cap", "baseball_cap.n.01"),
                                            ("red cap", "cap.n.01")), _BRIGHT),
    Variant("beanie", "headwear", "headwear", (("beanie", "beanie.n.01"), ("hat", "hat.n.01")), _BRIGHT),
    # eyewear
    Variant("glasses", "eyewear", "eyewear", (("glasses", "glasses.n.01"), ("eyeglasses", "glasses.n.01"),
                                              ("eye glasses", "glasses.n.01")), _DARK),
    Variant("sunglasses", "eyewear", "eyewear", (("sunglasses", "sunglasses.n.01"),
                                                 ("sun glasses", "sunglasses.n.01"),
                                                 ("shades", "sunglasses.n.01")), ((15, 15, 15), (60, 30, 10))),
    # tops
    Variant("shirt", "top", "dress shirt", (("shirt", "shirt.n.01"), ("white shirt", "shirt.n.01"),
                                            ("dress shirt", "dress_shirt.n.01"), ("Shirt", "shirt.n.01")),
            _BRIGHT),
    Variant("tshirt", "top", "dress shirt", (("t-shirt", "jersey.n.02"), ("shirt", "shirt.n.01"),
                                             ("tshirt", "jersey.n.02"), ("tee shirt", "jersey.n.02")),
            _BRIGHT),
    Variant("coat", "outer", "coats", (("jacket", "jacket.n.01"), ("coat", "coat.n.01"),
                                     ("black jacket", "jacket.n.01"), ("jackets", "jacket.n.01")),
            _DARK + _EARTH),
    Variant("sweater", "top", "sweater", (("sweater", "sweater.n.01"), ("pullover", "pullover.n.01"),
                                          ("red sweater", "sweater.n.01")), _BRIGHT),
    Variant("dress", "top", "dress", (("dress", "dress.n.01"), ("dresses", "dress.n.01"),
                                      ("blue dress", "dress.n.01")), _BRIGHT),
    # bottoms
    Variant("pants", "bottom", "pants", (("pants", "trouser.n.01"), ("trousers", "trouser.n.01"),
                                         ("black pants", "trouser.n.01"), ("slacks", "slacks.n.01")), _KHAKI),
    Variant("jeans", "bottom", "jeans", (("jeans", "jean.n.01"), ("blue jeans", "jean.n.01"),
                                         ("denim", "denim.n.02")), _DENIM),
    Variant("shorts", "bottom", "shorts", (("shorts", "short_pants.n.01"),
                                           ("short pants", "short_pants.n.01")), _KHAKI + _BRIGHT[:4]),
    Variant("skirt", "bottom", "skirt", (("skirt", "skirt.n.01"), ("skirts", "skirt.n.01"),
                                         ("pink skirt", "skirt.n.01")), _BRIGHT + _DARK[:2]),
    # footwear (one object per foot, as VG annotators mostly did)
    Variant("shoe", "footwear", "footwear", (("shoe", "shoe.n.01"), ("shoes", "shoe.n.01")), _SHOE),
    Variant("sneaker", "footwear", "footwear", (("sneakers", "sneaker.n.01"), ("sneaker", "sneaker.n.01"),
                                                ("tennis shoe", "gym_shoe.n.01")), _SHOE),
    Variant("boot", "footwear", "footwear", (("boots", "boot.n.01"), ("boot", "boot.n.01")), _EARTH[:4]),
    # bags
    Variant("purse", "bag", "bag", (("purse", "purse.n.01"), ("handbag", "bag.n.04")), _BRIGHT + _EARTH),
    Variant("shoulder_bag", "bag", "bag", (("bag", "bag.n.04"), ("shoulder bag", "bag.n.04"),
                                           ("bags", "bag.n.04")), _EARTH + _DARK),
    Variant("backpack", "bag", "bag", (("backpack", "backpack.n.01"), ("back pack", "backpack.n.01")),
            _BRIGHT + _DARK),
    # the rest
    Variant("scarf", "scarf", "scarves", (("scarf", "scarf.n.01"), ("scarves", "scarf.n.01")), _BRIGHT),
    Variant("belt", "belt", "belts", (("belt", "belt.n.02"), ("black belt", "belt.n.02")), _DARK[:3]),
    Variant("watch", "watch", "watch", (("watch", "watch.n.01"), ("wristwatch", "watch.n.01"),
                                        ("wrist watch", "watch.n.01")), _METAL),
)

VARIANTS_BY_SLOT: dict[str, tuple[Variant, ...]] = {}
for _v in VARIANTS:
    VARIANTS_BY_SLOT.setdefault(_v.slot, ())
    VARIANTS_BY_SLOT[_v.slot] += (_v,)
VARIANTS_BY_KIND: dict[str, Variant] = {v.kind: v for v in VARIANTS}

# Probability that a person wears something in each optional slot (tops and bottoms
# are always worn; a dress replaces the bottom).
SLOT_PROBABILITY = {"outer": 0.3, "headwear": 0.45, "eyewear": 0.4, "footwear": 0.9, "bag": 0.35, "scarf": 0.25,
                    "belt": 0.35, "watch": 0.35}

# Things VG annotators label that are not clothing: they must map to no class, so the
# converter's "unmapped names" table has content.
PERSON_NAMES = (("man", "man.n.01"), ("woman", "woman.n.01"), ("person", "person.n.01"),
                ("girl", "girl.n.01"), ("boy", "male_child.n.01"), ("people", "people.n.01"))
BODY_NAMES = {"head": ("face", "face.n.01"), "hair": ("hair", "hair.n.01"),
              "hand": ("hand", "hand.n.01")}
SCENE_NAMES = {"sky": ("sky", "sky.n.01"), "wall": ("wall", "wall.n.01"), "tree": ("tree", "tree.n.01"),
               "building": ("building", "building.n.01"), "window": ("window", "window.n.01"),
               "ground": ("ground", "land.n.04"), "grass": ("grass", "grass.n.01"),
               "floor": ("floor", "floor.n.01"), "cloud": ("cloud", "cloud.n.02"),
               "ball": ("ball", "ball.n.01")}

DISTRACTOR_NAMES: tuple[str, ...] = tuple(sorted(
    {n for n, _ in PERSON_NAMES} | {n for n, _ in BODY_NAMES.values()} | {n for n, _ in SCENE_NAMES.values()}))


def intended_class(name: str, synset: str) -> str | None:
    """The clothing38 class a (name, synset) pair emitted by the generator is meant to map to.

    Returns None for distractors (and for pairs the generator never emits).
    """
    for v in VARIANTS:
        if (name, synset) in v.names:
            return v.class_name
    return None
