"""Errors of the results store; each names the store, chip or run it concerns."""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every error the results store raises about stored data."""


class StoreNotFoundError(StoreError, FileNotFoundError):
    """No results store at a location opened for reading (and `create` was not asked for)."""


class RunNotFoundError(StoreError, LookupError):
    """A chip or run that the store does not hold (or holds only an incomplete write of)."""


class CorruptRunError(StoreError):
    """A stored run does not match what its own metadata declares (tampered or damaged)."""


class UnsupportedSchemaError(StoreError):
    """A run written with a schema version this code cannot read."""


class DecodeError(StoreError):
    """A registered decoder could not turn a stored record back into its object."""


class DamagedRunWarning(UserWarning):
    """A lookup skipped a run it could not read (the message names it), or ignored a damaged
    index; `ResultsStore.verify()` lists such runs and `repair()` quarantines them."""
