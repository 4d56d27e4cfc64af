"""Decoders by record kind: how a stored record becomes its object again.

The store knows no result classes; a package that saves results registers, for its record
kind, a function `(arrays, attrs) -> object` (e.g. a `from_record` classmethod). Loads of an
unregistered kind return a plain `StoredRecord`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from results_store.records import check_kind

Decoder = Callable[[Mapping[str, np.ndarray], Mapping[str, Any]], object]


def _same_function(first: Decoder, second: Decoder) -> bool:
    """Equal, or the same function re-created by a module reload."""
    if first == second:
        return True
    return all(
        getattr(first, name, None) == getattr(second, name, object())
        for name in ("__module__", "__qualname__")
    )


class KindRegistry:
    """A mapping from record kind to decoder."""

    def __init__(self) -> None:
        self._decoders: dict[str, Decoder] = {}

    def register(self, kind: str, from_record: Decoder) -> None:
        """Decode records of `kind` with `from_record(arrays, attrs)`.

        Registering another function for a kind already taken is a ValueError (two packages
        claiming one kind is a bug); registering the same function again is harmless.
        """
        check_kind(kind)
        if not callable(from_record):
            raise ValueError(f"from_record for kind {kind!r} must be callable, got {from_record!r}")
        known = self._decoders.get(kind)
        if known is not None and not _same_function(known, from_record):
            raise ValueError(
                f"kind {kind!r} is already registered to {known!r}; unregister it first"
            )
        self._decoders[kind] = from_record

    def unregister(self, kind: str) -> None:
        self._decoders.pop(kind, None)

    def decoder(self, kind: str) -> Decoder | None:
        return self._decoders.get(kind)

    def kinds(self) -> list[str]:
        return sorted(self._decoders)


DEFAULT_REGISTRY = KindRegistry()
"""Used by every ResultsStore not given a registry of its own."""


def register_kind(kind: str, from_record: Decoder) -> None:
    """Register a decoder for `kind` in the default registry (see KindRegistry.register)."""
    DEFAULT_REGISTRY.register(kind, from_record)


def unregister_kind(kind: str) -> None:
    DEFAULT_REGISTRY.unregister(kind)
