"""Fleet operation: nightly maintenance of many chips in parallel on Dask, one task per chip.

Each chip is maintained the way a calibration graph maintains a node: first a cheap check of
its newest stored result for the target (a few device runs, no search); when the check finds
stale quantities, only those (and what they disturb) are recalibrated, starting from the stored
result (`calib.sequences.calibrate.recalibrate`); a chip with nothing stored, or whose check
cannot run, gets a whole calibration. Every task opens
the results store itself and saves its own result (the store takes concurrent writers); a task
that fails returns its error instead of raising, so one bad chip never stops the others.

Chip specs name many chips at once: comma-separated ids, where a bracketed numeric range
expands, e.g. ``rack1-chip[0-7]`` -> rack1-chip0 .. rack1-chip7 and ``rack[1-2]-chip[00-15]``
-> rack1-chip00 .. rack2-chip15 (a range whose start has a leading zero keeps its width).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import socket
import time
import traceback
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from calib.core.checks import CHECK_KIND
from calib.core.results import NeuronResult
from calib.core.targets import NeuronTarget
from calib.operations.compare import compare_results
from calib.operations.defaults import CONNECT_TIMEOUT, DEFAULT_WORKERS
from calib.sequences.calibrate import CalibrationOptions, calibrate, recalibrate
from calib.sequences.check import CheckReport, check_result
from device_model import Faults, SimulatedChip
from device_model.protocol import Device
from results_store import ResultsStore, check_chip_id
from results_store.errors import DamagedRunWarning

DeviceFactory = Callable[[str], Device]
"""chip id -> Device; must be picklable (a top-level class or function) to reach the workers."""

MAX_CHIPS = 10_000
"""Most chips one spec may name (a typo such as chip[0-99999] should not start a cluster job)."""
SINGLE_THREADED = {"OMP_NUM_THREADS": 1, "MKL_NUM_THREADS": 1, "OPENBLAS_NUM_THREADS": 1}
"""Each worker runs one chip at a time on one core; BLAS threads would only compete."""

DEGRADED_SUCCESS = 0.90
"""A calibrated chip with fewer successful neurons than this is reported 'degraded'."""
DEGRADED_NEWLY_FAILED = 0.01
"""... and so is one where more than this fraction of its neurons failed anew since last night."""

STATUSES = ("calibrated", "recalibrated", "ok, checked", "failed")
"""calibrated: first result for this chip and target; recalibrated: the stored result was stale
(or its check failed); ok, checked: the stored result still holds, nothing recalibrated;
failed: no result tonight (see `error`)."""

_RANGE = re.compile(r"\[(\d+)-(\d+)\]")
_ITEM = re.compile(r"[A-Za-z0-9._\-\[\]]+")


# -- chip specs -------------------------------------------------------------------------------


def _expand_item(item: str) -> list[str]:
    if not _ITEM.fullmatch(item):
        raise ValueError(
            f"chip spec item {item!r} is malformed: use letters, digits, '.', '_', '-' and "
            "numeric ranges such as [0-7]"
        )
    pieces = _RANGE.split(item)
    literals = pieces[::3]
    if any("[" in text or "]" in text for text in literals):
        raise ValueError(
            f"chip spec item {item!r} is malformed: a bracket must hold a numeric range "
            "start-stop, e.g. rack1-chip[0-7]"
        )
    choices: list[list[str]] = []
    for start_text, stop_text in zip(pieces[1::3], pieces[2::3], strict=True):
        start, stop = int(start_text), int(stop_text)
        if start > stop:
            raise ValueError(
                f"chip spec range [{start_text}-{stop_text}] in {item!r} runs backwards: "
                "the start must not exceed the stop"
            )
        if stop - start + 1 > MAX_CHIPS:
            raise ValueError(
                f"chip spec range [{start_text}-{stop_text}] in {item!r} names "
                f"{stop - start + 1} chips; at most {MAX_CHIPS} are allowed"
            )
        width = len(start_text) if start_text.startswith("0") and len(start_text) > 1 else 0
        choices.append([str(number).zfill(width) for number in range(start, stop + 1)])
    ids = []
    for numbers in itertools.product(*choices):
        ids.append(
            "".join(
                itertools.chain.from_iterable(
                    itertools.zip_longest(literals, numbers, fillvalue="")
                )
            )
        )
        if len(ids) > MAX_CHIPS:
            raise ValueError(f"chip spec item {item!r} names more than {MAX_CHIPS} chips")
    return ids


def parse_chip_spec(spec: str) -> list[str]:
    """The chip ids a spec names, in order: comma-separated ids with numeric ranges in
    brackets (``rack1-chip[0-7],spare3``). Empty, malformed or duplicate names raise
    ValueError naming the offending part."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(
            f"chip spec = {spec!r} is empty: name at least one chip, "
            "e.g. 'rack1-chip[0-7]' or 'chip-a,chip-b'"
        )
    ids: list[str] = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            raise ValueError(f"chip spec = {spec!r} has an empty item between commas")
        ids.extend(_expand_item(item))
        if len(ids) > MAX_CHIPS:
            raise ValueError(f"chip spec = {spec!r} names more than {MAX_CHIPS} chips")
    return check_chip_ids(ids)


def check_chip_ids(chip_ids: Iterable[str]) -> list[str]:
    """The ids as a list, each a valid store name, none twice; ValueError otherwise."""
    if isinstance(chip_ids, str):
        raise ValueError(
            f"chip_ids = {chip_ids!r} is one string; pass a list of chip ids "
            "(or parse a spec with parse_chip_spec)"
        )
    ids = [check_chip_id(chip_id) for chip_id in chip_ids]
    if not ids:
        raise ValueError("chip_ids is empty: name at least one chip")
    seen: set[str] = set()
    for chip_id in ids:
        if chip_id in seen:
            raise ValueError(f"chip id {chip_id!r} is named twice")
        seen.add(chip_id)
    return ids


# -- cluster ----------------------------------------------------------------------------------


class ClusterUnavailable(ConnectionError):
    """The scheduler named by an address cannot be reached."""


def check_workers(workers: int) -> int:
    if isinstance(workers, bool) or not isinstance(workers, int | np.integer) or workers < 1:
        raise ValueError(f"workers = {workers!r} is outside the allowed range >= 1")
    return int(workers)


def _probe(address: str, timeout: float) -> None:
    """Fail fast, and without the noise of a half-built Client, when nothing listens."""
    from distributed.comm import parse_address, parse_host_port

    try:
        scheme, location = parse_address(address)
    except ValueError as error:
        raise ValueError(
            f"scheduler = {address!r} is not a scheduler address (e.g. tcp://host:8786): {error}"
        ) from None
    if scheme not in ("tcp", "tls"):
        return
    try:
        host, port = parse_host_port(location)
    except ValueError as error:
        raise ValueError(
            f"scheduler = {address!r} is not a scheduler address (e.g. tcp://host:8786): {error}"
        ) from None
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as error:
        raise ClusterUnavailable(
            f"scheduler {address} is unreachable within {timeout:g} s: {error}"
        ) from None
    # Something listens; a Client would wait without limit for it to speak, so ask first.
    try:
        asyncio.run(_identify(address, timeout))
    except (OSError, TimeoutError) as error:
        raise ClusterUnavailable(
            f"scheduler {address} does not answer within {timeout:g} s ({type(error).__name__})"
        ) from None


async def _identify(address: str, timeout: float) -> dict[str, Any]:
    from distributed.core import rpc

    async def ask() -> dict[str, Any]:
        async with rpc(address) as remote:
            return await remote.identity()

    return await asyncio.wait_for(ask(), timeout)


@contextmanager
def dask_client(
    scheduler: str | None = None,
    *,
    workers: int = DEFAULT_WORKERS,
    connect_timeout: float = CONNECT_TIMEOUT,
) -> Iterator[Any]:
    """A distributed.Client: connected to `scheduler` (an address such as tcp://host:8786), or
    to a LocalCluster of `workers` single-threaded worker processes made for the occasion and
    closed afterwards."""
    import dask
    from distributed import Client, LocalCluster

    if scheduler is not None:
        if not isinstance(scheduler, str) or not scheduler.strip():
            raise ValueError(
                f"scheduler = {scheduler!r} is not a scheduler address (e.g. tcp://host:8786)"
            )
        _probe(scheduler, connect_timeout)
        try:
            client = Client(scheduler, timeout=connect_timeout)
        except (OSError, TimeoutError) as error:
            raise ClusterUnavailable(
                f"scheduler {scheduler} is unreachable within {connect_timeout:g} s: {error}"
            ) from None
        try:
            yield client
        finally:
            client.close()
        return
    workers = check_workers(workers)
    environ = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), **SINGLE_THREADED}
    # Dask sets a malloc trim threshold against fragmentation; setting it at all turns off
    # glibc's adaptive mmap threshold, so every large temporary array of the simulation is
    # mapped and unmapped afresh: twice the host time per chip. Keep glibc's default.
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    with (
        dask.config.set({"distributed.nanny.pre-spawn-environ": environ}),
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def store_location(path: str | os.PathLike[str]) -> str:
    """A location every worker resolves the same way: local paths made absolute, URLs kept."""
    text = os.fspath(path)
    if not text:
        raise ValueError("store path is empty")
    return text if "://" in text else os.path.abspath(text)


# -- devices ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimulatedFleet:
    """A picklable device factory: chip id -> SimulatedChip, the same settings for every chip,
    with per-chip ageing (`aged`: chip -> drift hours) and faults (`faulty`: chip -> Faults)
    for drills and tests."""

    mismatch_scale: float = 1.0
    noise_scale: float = 1.0
    drift_hours: float = 0.0
    aged: Mapping[str, float] = field(default_factory=dict)
    faulty: Mapping[str, Faults] = field(default_factory=dict)

    def __call__(self, chip_id: str) -> SimulatedChip:
        return SimulatedChip(
            chip_id,
            mismatch_scale=self.mismatch_scale,
            noise_scale=self.noise_scale,
            drift_hours=self.aged.get(chip_id, self.drift_hours),
            faults=self.faulty.get(chip_id),
        )

    def simulation(self, chip_id: str) -> dict[str, Any]:
        """How chip `chip_id` is simulated, as the CLI records it with a result."""
        return {
            "backend": "simulated",
            "seed": None,
            "mismatch_scale": self.mismatch_scale,
            "noise_scale": self.noise_scale,
            "drift_hours": self.aged.get(chip_id, self.drift_hours),
            "faults": chip_id in self.faulty,
        }


PERSISTENT_FAILURE = Faults(run_failure_rate=1.0)
"""Every device run fails: a chip that cannot be calibrated at all."""


# -- one chip ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChipOutcome:
    """What a night did to one chip (plain data, so it travels between processes)."""

    chip_id: str
    status: str
    detail: str
    """What was done and why, in one line."""
    success_fraction: float | None = None
    run_id: str | None = None
    """The stored run now in effect: the new one, or the one the check confirmed."""
    drift: dict[str, float | None] = field(default_factory=dict)
    """Quantity -> median shift since the previous stored result (stored units): measured now
    minus stored for a checked chip; new minus previous calibration (compare_results) for a
    recalibrated one; empty for a first calibration or a failure."""
    check: dict[str, dict[str, float | bool]] = field(default_factory=dict)
    """Quantity -> median_shift, out_of_tolerance and stale, from the check (if one ran)."""
    stale: tuple[str, ...] = ()
    newly_failed: tuple[int, ...] = ()
    recovered: tuple[int, ...] = ()
    comparison: dict[str, Any] | None = None
    """compare_results(previous, new) for a recalibrated chip."""
    error: str | None = None
    """The traceback of a failed chip."""
    host_seconds: float = 0.0
    n_neurons: int = 0

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(
                f"status = {self.status!r} for chip {self.chip_id!r} is not one of "
                f"{', '.join(STATUSES)}"
            )

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    @property
    def report_status(self) -> str:
        """The fleet report's status: ok, degraded (few successful neurons, or many newly
        failed ones) or failed."""
        if self.failed:
            return "failed"
        if self.success_fraction is not None and self.success_fraction < DEGRADED_SUCCESS:
            return "degraded"
        if len(self.newly_failed) > DEGRADED_NEWLY_FAILED * self.n_neurons:
            return "degraded"
        return "ok"

    @property
    def action(self) -> str:
        """What was done to the chip, e.g. 'checked, still holds'."""
        return self.status if self.error or not self.detail else f"{self.status}: {self.detail}"


def _since_last_check(
    store: ResultsStore, chip_id: str, run_id: str, report: CheckReport
) -> dict[str, float]:
    """Per quantity, the median change since the last stored check of the same calibration
    (night over night); empty when there is none."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DamagedRunWarning)  # a damaged check: no baseline
        last = store.latest(chip_id, kind=CHECK_KIND)
    if last is None or getattr(last, "checked_run", None) != run_id:
        return {}
    drift = {}
    for name, check in report.quantities.items():
        before = last.measured.get(name)
        if check.measured is None or before is None:
            continue
        change = np.asarray(check.measured, float) - np.asarray(before, float)
        change = change[np.isfinite(change)]
        if change.size:
            drift[name] = float(np.median(change))
    return drift


def _check_summary(report: CheckReport) -> dict[str, dict[str, float | bool]]:
    return {
        name: {
            "median_shift": check.median_shift,
            "spread": check.spread,
            "out_of_tolerance": check.out_of_tolerance,
            "stale": check.stale,
        }
        for name, check in report.quantities.items()
    }


def _recalibrate(
    device: Device,
    target: NeuronTarget,
    previous: NeuronResult | None,
    stale: Sequence[str],
    why: str,
    options: CalibrationOptions | None,
    extra: Mapping[str, Any],
) -> tuple[NeuronResult, str]:
    """Only the stale quantities (and what they disturb) when a check named them; the whole
    chip when there is no previous result or its check could not run."""
    if previous is not None and stale:
        result = recalibrate(device, previous, list(stale), options=options, provenance_extra=extra)
        redone = [step for step in result.provenance.steps if step != "verify"] or stale
        return result, f"{why}; recalibrated {', '.join(redone)}, kept the rest"
    result = calibrate(device, target, options=options, provenance_extra=extra)
    return result, why if previous is None else f"{why}; recalibrated the whole chip"


def _simulation_extra(device_factory: DeviceFactory, chip_id: str) -> dict[str, Any]:
    """The simulated chip's settings, when the factory describes them."""
    describe = getattr(device_factory, "simulation", None)
    return {"simulation": describe(chip_id)} if callable(describe) else {}


def maintain_chip(
    chip_id: str,
    store_location: str,
    device_factory: DeviceFactory = SimulatedChip,
    target: Mapping[str, Any] | None = None,
    *,
    check_first: bool = True,
    options: CalibrationOptions | None = None,
) -> ChipOutcome:
    """One chip's night (the task each worker runs): check the newest stored result for
    `target` (a NeuronTarget's `to_dict()`), recalibrate if it is stale, missing or its check
    fails, save a new result in the store at `store_location`. Never raises: a failure comes
    back as an outcome with status 'failed' and the traceback."""
    started = time.perf_counter()
    try:
        return _maintain(
            chip_id,
            store_location,
            device_factory,
            NeuronTarget.from_dict(dict(target or {})),
            check_first,
            options,
            started,
        )
    except Exception as error:
        return ChipOutcome(
            chip_id,
            "failed",
            detail=f"{type(error).__name__}: {error}",
            error=traceback.format_exc(),
            host_seconds=time.perf_counter() - started,
        )


def _maintain(
    chip_id: str,
    location: str,
    device_factory: DeviceFactory,
    target: NeuronTarget,
    check_first: bool,
    options: CalibrationOptions | None,
    started: float,
) -> ChipOutcome:
    store = ResultsStore(location)
    device = device_factory(chip_id)
    if device.chip_id != chip_id:
        raise ValueError(f"the device factory made chip {device.chip_id!r} for chip id {chip_id!r}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DamagedRunWarning)
        stored = store.latest(chip_id, target, decode=False)
    damaged = [str(w.message) for w in caught if issubclass(w.category, DamagedRunWarning)]
    previous = None if stored is None else NeuronResult.from_record(stored.arrays, stored.attrs)
    check: dict[str, dict[str, float | bool]] = {}
    stale: list[str] = []
    if damaged:
        # A newer run than the one found is unreadable: what the chip holds is not known, so
        # it gets a whole calibration (stored as the newest intact run).
        previous = None
        why = f"stored run damaged ({damaged[0]})"
    elif previous is None:
        why = "no stored result for this target"
    elif not check_first:
        why = "recalibration asked for (no check)"
    else:
        try:
            report = check_result(device, previous)
        except Exception as error:  # a device that cannot even be checked gets a calibration
            why = f"check failed ({type(error).__name__}: {error})"
        else:
            check = _check_summary(report)
            since = _since_last_check(store, chip_id, stored.run_id, report)
            store.save(
                report.record(
                    previous,
                    stored.run_id,
                    {  # the night's check, kept
                        "checked_by": "nightly",
                        **_simulation_extra(device_factory, chip_id),
                    },
                )
            )
            if report.holds:
                return ChipOutcome(
                    chip_id,
                    "ok, checked",
                    detail=f"stored result holds ({report.runs} device runs), not recalibrated",
                    success_fraction=float(np.mean(previous.success)),
                    run_id=stored.run_id,
                    drift=since
                    or {name: float(item["median_shift"]) for name, item in check.items()},
                    check=check,
                    host_seconds=time.perf_counter() - started,
                    n_neurons=int(previous.success.size),
                )
            stale = report.stale
            why = f"stale: {', '.join(stale)}"
    extra: dict[str, Any] = {"fleet": {"reason": why}, "target_source": "nightly"}
    extra.update(_simulation_extra(device_factory, chip_id))
    result, detail = _recalibrate(device, target, previous, stale, why, options, extra)
    run_id = store.save(result)
    comparison = None if previous is None else compare_results(previous, result)
    return ChipOutcome(
        chip_id,
        "calibrated" if previous is None else "recalibrated",
        detail=detail,
        success_fraction=float(np.mean(result.success)),
        run_id=run_id,
        drift={}
        if comparison is None
        else {name: item["median_shift"] for name, item in comparison["quantities"].items()},
        check=check,
        stale=tuple(stale),
        newly_failed=() if comparison is None else tuple(comparison["newly_failed"]),
        recovered=() if comparison is None else tuple(comparison["recovered"]),
        comparison=comparison,
        host_seconds=time.perf_counter() - started,
        n_neurons=int(result.success.size),
    )


# -- the fleet --------------------------------------------------------------------------------


def run_nightly(
    chip_ids: Iterable[str],
    store_path: str | os.PathLike[str],
    *,
    client: Any = None,
    scheduler: str | None = None,
    workers: int = DEFAULT_WORKERS,
    device_factory: DeviceFactory = SimulatedChip,
    target: NeuronTarget | None = None,
    check_first: bool = True,
    options: CalibrationOptions | None = None,
    connect_timeout: float = CONNECT_TIMEOUT,
    on_outcome: Callable[[ChipOutcome], None] | None = None,
) -> list[ChipOutcome]:
    """Maintain every chip (see `maintain_chip`) in parallel, one Dask task per chip, and
    return their outcomes in the order of `chip_ids`.

    The cluster is `client` if given, else the scheduler at `scheduler`, else a LocalCluster of
    `workers` single-threaded processes. The store at `store_path` is created if needed, after
    every argument is checked and the cluster is reached, so bad input writes nothing.
    `on_outcome` is called with each outcome as its chip finishes.
    """
    ids = check_chip_ids(chip_ids)
    target = NeuronTarget() if target is None else target
    if not isinstance(target, NeuronTarget):
        raise ValueError(f"target must be a NeuronTarget, got {type(target).__name__}")
    if not callable(device_factory):
        raise ValueError(f"device_factory = {device_factory!r} is not callable")
    location = store_location(store_path)
    if client is None:
        check_workers(workers)
        with dask_client(scheduler, workers=workers, connect_timeout=connect_timeout) as made:
            return _run(
                made, ids, location, device_factory, target, check_first, options, on_outcome
            )
    return _run(client, ids, location, device_factory, target, check_first, options, on_outcome)


def _run(
    client: Any,
    ids: list[str],
    location: str,
    device_factory: DeviceFactory,
    target: NeuronTarget,
    check_first: bool,
    options: CalibrationOptions | None,
    on_outcome: Callable[[ChipOutcome], None] | None,
) -> list[ChipOutcome]:
    from distributed import as_completed

    ResultsStore(location, create=True)
    night = uuid.uuid4().hex[:8]
    futures = {
        client.submit(
            maintain_chip,
            chip_id,
            location,
            device_factory,
            target.to_dict(),
            check_first=check_first,
            options=options,
            key=f"nightly-{night}-{chip_id}",
            pure=False,
            retries=0,
        ): chip_id
        for chip_id in ids
    }
    outcomes: dict[str, ChipOutcome] = {}
    for future in as_completed(futures):
        chip_id = futures[future]
        try:
            outcome = future.result()
        except Exception as error:  # the task itself died (e.g. its worker was killed)
            outcome = ChipOutcome(
                chip_id,
                "failed",
                detail=f"{type(error).__name__}: {error}",
                error="".join(traceback.format_exception(error)),
            )
        outcomes[chip_id] = outcome
        if on_outcome is not None:
            on_outcome(outcome)
    return [outcomes[chip_id] for chip_id in ids]
