"""Class lists and the rules that map Visual Genome names and synsets to them.

Usage::

    from yeay_nb.taxonomy import load_taxonomy
    tax = load_taxonomy()                  # the 2018 38-class default
    tax.classes[0]                         # '__background__'
    tax.class_for(["Sneakers"], [])        # index of 'footwear'

A taxonomy YAML (see ``taxonomies/clothing38.yaml``) lists classes in index order,
each with the object names and WordNet synsets that map to it. Any number of
classes works: everything downstream reads the class list from the data.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import yaml

from .errors import TaxonomyError

TAXONOMY_DIR = Path(__file__).parent / "taxonomies"
DEFAULT_TAXONOMY = TAXONOMY_DIR / "clothing38.yaml"
BACKGROUND = "__background__"

_SPACES = re.compile(r"\s+")


def normalize_name(name: str) -> str:
    """Lower-case, trim punctuation and collapse whitespace ("  Blue  Jeans." -> "blue jeans")."""
    return _SPACES.sub(" ", name.strip().lower().strip(".,;:!?\"'")).strip()


def singular_forms(name: str) -> list[str]:
    """Candidate singulars of an English noun phrase (last word only): "dresses" -> "dress"."""
    head, _, last = name.rpartition(" ")
    prefix = f"{head} " if head else ""
    out = []
    if last.endswith("ies") and len(last) > 4:
        out.append(prefix + last[:-3] + "y")
    if last.endswith(("ses", "xes", "ches", "shes", "zes")):
        out.append(prefix + last[:-2])
    if last.endswith("s") and not last.endswith("ss") and len(last) > 2:
        out.append(prefix + last[:-1])
    return out


@dataclass
class Taxonomy:
    """An ordered class list plus name/synset rules. ``classes[0]`` is the background."""

    name: str
    classes: list[str]
    names: dict[str, int] = field(default_factory=dict)
    synsets: dict[str, int] = field(default_factory=dict)
    source: str = "<memory>"

    @property
    def num_classes(self) -> int:
        """Number of classes including the background."""
        return len(self.classes)

    def index(self, class_name: str) -> int:
        """Index of a class by its name (KeyError names the taxonomy)."""
        try:
            return self.classes.index(class_name)
        except ValueError:
            raise KeyError(f"class '{class_name}' is not in taxonomy {self.name} ({self.source})") from None

    def class_for_name(self, name: str) -> int | None:
        """Class index for one object name, trying singular forms; None when unmapped."""
        n = normalize_name(name)
        hit = self.names.get(n)
        if hit is None:
            for s in singular_forms(n):
                hit = self.names.get(s)
                if hit is not None:
                    break
        return hit

    def class_for(self, names: Iterable[str], synsets: Iterable[str] = ()) -> int | None:
        """Class index for a VG object: names first (more specific), then synsets."""
        for n in names:
            hit = self.class_for_name(n)
            if hit is not None:
                return hit
        for s in synsets:
            hit = self.synsets.get(s.strip().lower())
            if hit is not None:
                return hit
        return None

    def coco_categories(self) -> list[dict]:
        """COCO ``categories`` in taxonomy order (id = index; the background is left out)."""
        return [{"id": i, "name": c, "supercategory": "clothing"} for i, c in enumerate(self.classes) if i > 0]


def taxonomy_from_dict(data: dict, source: str = "<memory>") -> Taxonomy:
    """Build and check a taxonomy from its YAML structure."""
    if not isinstance(data, dict) or not isinstance(data.get("classes"), list):
        raise TaxonomyError(f"{source}: expected a mapping with a 'classes' list")
    classes: list[str] = []
    names: dict[str, int] = {}
    synsets: dict[str, int] = {}
    for i, entry in enumerate(data["classes"]):
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"].strip():
            raise TaxonomyError(f"{source}: classes[{i}] needs a non-empty 'name'")
        unknown = set(entry) - {"name", "names", "synsets"}
        if unknown:
            raise TaxonomyError(f"{source}: classes[{i}] ({entry['name']}) has unknown keys {sorted(unknown)}")
        cname = entry["name"].strip()
        if cname in classes:
            raise TaxonomyError(f"{source}: duplicate class '{cname}' at classes[{i}] "
                                f"(first at classes[{classes.index(cname)}])")
        classes.append(cname)
        for key, table, norm in (("names", names, normalize_name), ("synsets", synsets, str.lower)):
            values = entry.get(key) or []
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise TaxonomyError(f"{source}: classes[{i}] ({cname}).{key} must be a list of strings")
            for v in values:
                v = norm(v.strip())
                if v in table and table[v] != i:
                    raise TaxonomyError(f"{source}: {key[:-1]} '{v}' is listed under both "
                                        f"'{classes[table[v]]}' and '{cname}'")
                table[v] = i
    if not classes or classes[0] != BACKGROUND:
        raise TaxonomyError(f"{source}: the first class must be '{BACKGROUND}'")
    if len(classes) < 2:
        raise TaxonomyError(f"{source}: a taxonomy needs at least one class besides the background")
    return Taxonomy(name=str(data.get("name") or Path(source).stem), classes=classes, names=names,
                    synsets=synsets, source=source)


def load_taxonomy(path: str | Path | None = None) -> Taxonomy:
    """Load a taxonomy YAML (the 38-class default when ``path`` is None)."""
    path = Path(path) if path else DEFAULT_TAXONOMY
    if not path.exists():
        raise TaxonomyError(f"taxonomy file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise TaxonomyError(f"{path}: not valid YAML: {e}") from None
    return taxonomy_from_dict(data, source=str(path))


def taxonomy_from_classes(classes: Sequence[str], name: str = "from-data") -> Taxonomy:
    """A rule-less taxonomy for a given class list (e.g. read back from a COCO json)."""
    return taxonomy_from_dict({"name": name, "classes": list(classes)})
