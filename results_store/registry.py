"""Decoders by record kind: how a stored record becomes its object again.

The store knows no result classes; a package that saves results declares, for its record
kind, a function `(arrays, attrs) -> object` (e.g. a `from_record` classmethod), either in its
distribution's metadata under the entry point group ENTRY_POINT_GROUP

    [project.entry-points."results_store.kinds"]
    neuron_result = "calib.core.results:NeuronResult.from_record"

which is looked up (and its module imported) only when a record of that kind is decoded, so
decoding does not depend on what was imported before; or at run time with `register_kind`.
Loads of a kind found in neither return a plain `StoredRecord`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import metadata
from typing import Any

import numpy as np

from results_store.records import check_kind

Decoder = Callable[[Mapping[str, np.ndarray], Mapping[str, Any]], object]
ENTRY_POINT_GROUP = "results_store.kinds"


def _same_function(first: Decoder, second: Decoder) -> bool:
    """Equal, or the same function re-created by a module reload."""
    if first == second:
        return True
    return all(
        getattr(first, name, None) == getattr(second, name, object())
        for name in ("__module__", "__qualname__")
    )


class KindRegistry:
    """A mapping from record kind to decoder; with `entry_points`, kinds registered nowhere
    else are looked up in the installed distributions' ENTRY_POINT_GROUP entry points."""

    def __init__(self, *, entry_points: bool = True) -> None:
        self._decoders: dict[str, Decoder] = {}
        self._entry_points = entry_points
        self._looked_up: set[str] = set()
        """Kinds already looked up in the entry points (found or not): looked up once."""

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
        """Forget `kind` (a declared decoder is looked up again when next needed)."""
        self._decoders.pop(kind, None)
        self._looked_up.discard(kind)

    def decoder(self, kind: str) -> Decoder | None:
        known = self._decoders.get(kind)
        if known is not None or not self._entry_points or kind in self._looked_up:
            return known
        self._looked_up.add(kind)
        declared = declared_decoder(kind)
        if declared is not None:
            self._decoders[kind] = declared
        return declared

    def kinds(self) -> list[str]:
        return sorted(self._decoders)


def declared_decoder(kind: str) -> Decoder | None:
    """The decoder an installed distribution declares for `kind`, loaded now; None if none
    does. Two distributions declaring one kind is a ValueError naming both."""
    declared = [
        point for point in metadata.entry_points(group=ENTRY_POINT_GROUP) if point.name == kind
    ]
    if not declared:
        return None
    if len({point.value for point in declared}) > 1:
        raise ValueError(
            f"kind {kind!r} is declared by several entry points: "
            f"{', '.join(sorted(point.value for point in declared))}"
        )
    decoder = declared[0].load()
    if not callable(decoder):
        raise ValueError(f"entry point {declared[0].value!r} for kind {kind!r} is not callable")
    return decoder


DEFAULT_REGISTRY = KindRegistry()
"""Used by every ResultsStore not given a registry of its own."""


def register_kind(kind: str, from_record: Decoder) -> None:
    """Register a decoder for `kind` in the default registry (see KindRegistry.register)."""
    DEFAULT_REGISTRY.register(kind, from_record)


def unregister_kind(kind: str) -> None:
    DEFAULT_REGISTRY.unregister(kind)
