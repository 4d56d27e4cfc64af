"""Chip ids and run ids: what is allowed as a name in the store, and how run ids are made.

Chip and run ids become path components of the store, so both are checked against strict
patterns before they touch it: no separators, no traversal, bounded length.
"""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

CHIP_ID_MAX_LENGTH = 64
CHIP_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]*"
"""Letters, digits, '.', '_' and '-'; starts with a letter or digit; no '..' anywhere."""
_CHIP_ID = re.compile(CHIP_ID_PATTERN)

_RUN_TIME_FORMAT = "%Y%m%dT%H%M%S.%fZ"
RUN_ID_PATTERN = r"\d{8}T\d{6}\.\d{6}Z-[0-9a-f]{12}"
"""UTC save time to the microsecond, then 48 random bits: sorts by time, unique across
processes and machines without coordination."""
_RUN_ID = re.compile(RUN_ID_PATTERN)
RESERVED_PREFIX = "zarr."
"""Names zarr's own files take ('zarr.json' and its temporary copies) in every directory."""


def check_chip_id(chip_id: object) -> str:
    """`chip_id` if it is a safe store name, else ValueError naming the pattern."""
    if (
        not isinstance(chip_id, str)
        or len(chip_id) > CHIP_ID_MAX_LENGTH
        or not _CHIP_ID.fullmatch(chip_id)
        or ".." in chip_id
        or chip_id.lower().startswith(RESERVED_PREFIX)
    ):
        raise ValueError(
            f"chip_id = {chip_id!r} is not allowed: a chip id must match {CHIP_ID_PATTERN!r}, "
            f"contain no '..', not start with {RESERVED_PREFIX!r} and have at most "
            f"{CHIP_ID_MAX_LENGTH} characters"
        )
    return chip_id


def is_chip_id(name: str) -> bool:
    try:
        check_chip_id(name)
    except ValueError:
        return False
    return True


def is_run_id(name: str) -> bool:
    return _RUN_ID.fullmatch(name) is not None


def check_run_id(run_id: object) -> str:
    """`run_id` if it has the form the store gives run ids, else ValueError naming it."""
    if not isinstance(run_id, str) or not is_run_id(run_id):
        raise ValueError(f"run_id = {run_id!r} is not a run id: run ids match {RUN_ID_PATTERN!r}")
    return run_id


class RunIdClock:
    """Makes run ids from a time source; ids strictly increase even if the clock stands
    still or steps back, so two saves in a row always sort in the order they were made."""

    def __init__(self, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._now = now
        self._last = datetime.min.replace(tzinfo=UTC)
        self._lock = threading.Lock()

    def next_id(self) -> str:
        with self._lock:
            now = max(self._now().astimezone(UTC), self._last + timedelta(microseconds=1))
            self._last = now
        return f"{now.strftime(_RUN_TIME_FORMAT)}-{secrets.token_hex(6)}"


_CLOCK = RunIdClock()


def new_run_id() -> str:
    """A fresh run id for a save starting now."""
    return _CLOCK.next_id()


def run_time(run_id: str) -> datetime:
    """The UTC time a run's save started, read from its id."""
    stamp = check_run_id(run_id).partition("-")[0]
    return datetime.strptime(stamp, _RUN_TIME_FORMAT).replace(tzinfo=UTC)
