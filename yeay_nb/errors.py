"""Typed errors that carry their context (which file, which key, which record).

Every error a user can cause derives from :class:`YeayError`; the CLI prints its
message and exits with status 2 instead of showing a traceback.
"""
from __future__ import annotations


class YeayError(Exception):
    """Base class: a problem with the user's input, described in plain words."""


class ParamsError(YeayError):
    """A params file has an unknown key, a wrong type or a missing path."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None):
        self.file, self.key = file, key
        where = ", ".join(x for x in (f"file {file}" if file else "", f"key '{key}'" if key else "") if x)
        super().__init__(f"{where}: {message}" if where else message)


class AnnotationError(YeayError):
    """An annotation file is missing, malformed or inconsistent."""

    def __init__(self, message: str, *, file: str | None = None, record: str | int | None = None,
                 offset: int | None = None):
        self.file, self.record, self.offset = file, record, offset
        parts = [f"file {file}" if file else ""]
        if record is not None:
            parts.append(f"record {record}")
        if offset is not None:
            parts.append(f"byte offset {offset}")
        where = ", ".join(p for p in parts if p)
        super().__init__(f"{where}: {message}" if where else message)


class TaxonomyError(YeayError):
    """A taxonomy YAML is malformed (duplicate class, a name under two classes, ...)."""


class VideoError(YeayError):
    """A video cannot be opened, decoded or is empty."""


class CheckpointError(YeayError):
    """A checkpoint or weights file is missing or does not fit the request."""
