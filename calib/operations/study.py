"""Monte Carlo mismatch studies: many simulated chips, calibrated in parallel, summarised.

A study draws `n_chips` simulated chips (ids '<name>-000', '<name>-001', ...; the same name is
the same chips), calibrates each to the study's target on a Dask cluster (one task per chip)
and gathers, per chip:

- the spread of every quantity before calibration (every neuron at one code) and after it,
  over the successful neurons (the result's `before` and `achieved`);
- the measured success of the real calibration at the study's target, per quantity and overall;
- yield over a grid of targets by PHYSICAL REACHABILITY, a cheap stand-in for calibrating at
  every grid point: a neuron reaches a grid target when, on the chip's ground truth, the code
  closest to it (every other cell as calibrated, switches chosen as the calibration would)
  lies inside the cell's range, not at a bound, and gives a value within the quantity's
  tolerance. It ignores measurement noise and search errors, so it is an upper bound on what
  a calibration achieves; the reachability at the study's own target is kept beside the
  measured success there, so the two can be compared.

Target grids: ``QUANTITY=START:STOP:COUNT[,QUANTITY=...]``, e.g. ``tau_mem=2:40:8`` (eight
targets from 2 to 40 µs) or ``leak=60:140:5,tau_syn_exc=1:20:6``; times in µs, potentials in
CADC LSB, rates in kHz; quantities: leak, reset, threshold, tau_mem, tau_syn_exc, tau_syn_inh,
e_coba_exc, e_coba_inh, tau_icc (with a compartment layout), firing_rate (with a target that
sets a firing rate).
"""

from __future__ import annotations

import json
import os
import re
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from calib.core.plans import PLANS
from calib.core.results import NeuronResult
from calib.core.routine import ParameterRange
from calib.core.targets import NeuronTarget
from calib.operations.defaults import CONNECT_TIMEOUT, DEFAULT_GRID, DEFAULT_WORKERS
from calib.operations.fleet import check_workers, dask_client
from calib.routines.compartments import switch_modes
from calib.routines.nominal import HIGH_RESISTANCE_ABOVE, leak_switches
from calib.sequences.calibrate import CalibrationOptions, calibrate
from device_model import SimulatedChip
from device_model.oracle import ALL_QUANTITY_CELLS
from results_store import check_chip_id

CELL_OF = {
    name: PLANS.plan_of(name).cells[0] for name in ALL_QUANTITY_CELLS if name in PLANS.quantities()
}
"""The quantities the oracle knows the ground truth of, and the cell their plan sets."""
"""The quantities a target grid may scan, and the cell that sets each."""
CELL_RANGE = ParameterRange()
MAX_GRID_POINTS = 100
MAX_CHIPS = 10_000
YIELD_METHOD = (
    "physical reachability on the chip's ground truth: the best code per neuron is inside the "
    "cell range (not at a bound) and reaches the target within tolerance; an upper bound on "
    "calibration yield (no noise, no search errors)"
)
EXPORT_SUFFIXES = (".nc", ".zarr")

_GRID_ITEM = re.compile(r"\s*(\w+)\s*=\s*([^:]+):([^:]+):([^:]+)\s*")


# -- target grids -----------------------------------------------------------------------------


def parse_target_grid(spec: str) -> dict[str, np.ndarray]:
    """Quantity -> grid of targets in stored units (seconds, CADC LSB) from a spec such as
    'tau_mem=2:40:8' (µs for times, CADC LSB for potentials); ValueError names what is wrong."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(
            f"target grid = {spec!r} is empty: use QUANTITY=START:STOP:COUNT, e.g. tau_mem=2:40:8"
        )
    grid: dict[str, np.ndarray] = {}
    for item in spec.split(","):
        match = _GRID_ITEM.fullmatch(item)
        if match is None:
            raise ValueError(
                f"target grid item {item.strip()!r} is malformed: use "
                "QUANTITY=START:STOP:COUNT, e.g. tau_mem=2:40:8"
            )
        name, start_text, stop_text, count_text = match.groups()
        if name not in CELL_OF:
            raise ValueError(f"target grid quantity {name!r} is not one of {', '.join(CELL_OF)}")
        if name in grid:
            raise ValueError(f"target grid names {name!r} twice")
        spec_q = PLANS.quantities()[name]
        unit = spec_q.display
        low, high = unit(spec_q.low), unit(spec_q.high)
        bounds = []
        for label, text in (("start", start_text), ("stop", stop_text)):
            try:
                value = float(text)
            except ValueError:
                raise ValueError(
                    f"target grid {name} {label} = {text.strip()!r} is not a number"
                ) from None
            if not (np.isfinite(value) and low <= value <= high):
                raise ValueError(
                    f"target grid {name} {label} = {value:g} {unit.label} is "
                    f"outside the allowed range {low:g}..{high:g} {unit.label}"
                )
            bounds.append(value)
        try:
            count = int(count_text)
        except ValueError:
            raise ValueError(
                f"target grid {name} count = {count_text.strip()!r} is not an integer"
            ) from None
        if not 1 <= count <= MAX_GRID_POINTS:
            raise ValueError(
                f"target grid {name} count = {count} is outside the allowed range "
                f"1..{MAX_GRID_POINTS}"
            )
        if bounds[0] > bounds[1]:
            raise ValueError(
                f"target grid {name} start = {bounds[0]:g} exceeds stop = {bounds[1]:g}"
            )
        if count == 1 and bounds[0] != bounds[1]:
            raise ValueError(
                f"target grid {name} count = 1 needs start = stop, got {bounds[0]:g}:{bounds[1]:g}"
            )
        values = np.linspace(bounds[0], bounds[1], count) / unit.scale
        grid[name] = np.clip(values, spec_q.low, spec_q.high)  # no rounding past the range
    return grid


def study_chip_ids(name: str, n_chips: int) -> list[str]:
    """'<name>-000', '<name>-001', ...: the same study name always gives the same chips."""
    if (
        isinstance(n_chips, bool)
        or not isinstance(n_chips, int | np.integer)
        or not (1 <= n_chips <= MAX_CHIPS)
    ):
        raise ValueError(f"n_chips = {n_chips!r} is outside the allowed range 1..{MAX_CHIPS}")
    width = max(3, len(str(n_chips - 1)))
    ids = [f"{name}-{index:0{width}d}" for index in range(int(n_chips))]
    try:
        check_chip_id(ids[-1])
    except ValueError:
        raise ValueError(
            f"study name = {name!r} does not make valid chip ids (such as "
            f"{ids[-1]!r}): use letters, digits, '.', '_' and '-'"
        ) from None
    return ids


# -- reachability (ground truth, studies only) ------------------------------------------------


def _switch_variants(quantity: str, target: float) -> list[dict[str, Any]]:
    """The switch settings the calibration would try for `target`: its first choice and, for
    tau_mem, the next stronger leak setting it falls back to for neurons that are too slow."""
    if quantity == "tau_mem":
        nominal = {name: int(value[0]) for name, value in leak_switches(np.array([target])).items()}
        fallback = (
            {"leak_divide": 0, "leak_multiply": 0}
            if nominal["leak_divide"]
            else {"leak_divide": 0, "leak_multiply": 1}
        )
        return [nominal] if fallback == nominal else [nominal, fallback]
    if quantity in ("tau_syn_exc", "tau_syn_inh"):
        prefix = "syn_exc" if quantity == "tau_syn_exc" else "syn_inh"
        return [{f"{prefix}_high_resistance": int(target > HIGH_RESISTANCE_ABOVE)}]
    return [{}]


def reachable(
    chip: SimulatedChip, settings: Mapping[str, np.ndarray], quantity: str, target: float
) -> np.ndarray:
    """Per neuron: can `quantity` reach `target` with every other cell at `settings`?"""
    cell = CELL_OF[quantity]
    tolerance = PLANS.quantities()[quantity].tolerance_for(np.array([target]))[0]
    ok = np.zeros(chip.n_neurons, dtype=bool)
    variants = _switch_variants(quantity, target)
    if quantity == "tau_icc":  # the conductance switches the calibration picks for `target`
        units = int(np.median(settings["membrane_capacitance"]))
        variants = [dict(switch_modes(target, units))]
    for switches in variants:
        context = {**settings, **switches}
        codes = chip.ideal_codes(quantity, target, context)
        value = chip.true_quantities({**context, cell: codes})[quantity]
        inside = CELL_RANGE.at_bound(codes) == 0
        ok |= inside & np.isfinite(value) & (np.abs(value - target) <= tolerance)
    return ok


# -- one chip ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChipStudy:
    """One chip of a study: its calibration and the reachability of every grid target."""

    result: NeuronResult
    reachable: dict[str, np.ndarray]
    """Quantity -> bool (n_grid, n_neurons)."""
    reachable_at_target: dict[str, np.ndarray]
    """Quantity -> bool (n_neurons,): reachability at the study's own target."""

    @property
    def chip_id(self) -> str:
        return self.result.chip_id

    def measured_success(self) -> dict[str, float]:
        """Per quantity, the fraction of neurons whose failure reasons do not name it."""
        failed = self.result.failed_quantities()
        n = self.result.success.size
        return {name: 1.0 - len(failed.get(name, ())) / n for name in self.result.achieved}


def study_chip(
    chip_id: str,
    mismatch_scale: float,
    target: Mapping[str, Any],
    grid: Mapping[str, Sequence[float]],
    options: CalibrationOptions | None = None,
) -> dict[str, Any]:
    """One chip's share of a study (the task each worker runs), as plain data:
    {"chip_id", "record": (arrays, attrs), "reachable": {...}, "reachable_at_target": {...}}
    or {"chip_id", "error"}. Never raises."""
    try:
        chip = SimulatedChip(chip_id, mismatch_scale=mismatch_scale)
        neuron_target = NeuronTarget.from_dict(dict(target))
        result = calibrate(
            chip,
            neuron_target,
            options=options,
            provenance_extra={"study": {"mismatch_scale": mismatch_scale}},
        )
        goals = neuron_target.quantities()
        return {
            "chip_id": chip_id,
            "record": result.to_record(),
            "reachable": {
                name: np.array(
                    [reachable(chip, result.codes, name, float(value)) for value in values]
                )
                for name, values in grid.items()
            },
            "reachable_at_target": {
                name: reachable(chip, result.codes, name, float(np.median(goals[name])))
                for name in grid
            },
        }
    except Exception:
        return {"chip_id": chip_id, "error": traceback.format_exc()}


# -- the study --------------------------------------------------------------------------------


@dataclass
class MismatchStudy:
    """A finished study: its settings, every chip's calibration and reachability, failures."""

    name: str
    mismatch_scale: float
    target: NeuronTarget
    grid: dict[str, np.ndarray]
    chips: list[ChipStudy]
    failures: dict[str, str] = field(default_factory=dict)
    """Chip id -> traceback, for chips whose calibration raised."""
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    host_seconds: float = 0.0

    def yield_fractions(self) -> dict[str, np.ndarray]:
        """Quantity -> (n_chips, n_grid): the fraction of each chip's neurons that can reach
        each grid target."""
        return (
            {
                name: np.array([chip.reachable[name].mean(axis=1) for chip in self.chips])
                for name in self.grid
            }
            if self.chips
            else {}
        )

    def parameters(self) -> dict[str, str]:
        """How the study was run, and the measured success beside the reachability."""
        lines = {
            "study": self.name,
            "mismatch scale": f"{self.mismatch_scale:g}",
            "chips calibrated": f"{len(self.chips)} of {len(self.chips) + len(self.failures)}",
            "yield method": YIELD_METHOD,
        }
        if self.failures:
            lines["chips failed"] = ", ".join(sorted(self.failures))
        goals = self.target.quantities()
        for name in self.grid:
            if not self.chips:
                break
            unit = PLANS.quantities()[name].display
            measured = np.mean([chip.measured_success()[name] for chip in self.chips])
            reach = np.mean([chip.reachable_at_target[name].mean() for chip in self.chips])
            lines[f"{name} at the study target {unit(np.median(goals[name])):g} {unit.label}"] = (
                f"calibrated (measured) {100 * measured:.1f} %, reachable {100 * reach:.1f} %"
            )
        return lines

    def to_dataset(self) -> Any:
        """The study as an xarray Dataset (dims chip, neuron and one grid axis per quantity)."""
        import xarray as xr

        ids = [chip.chip_id for chip in self.chips]
        n_neurons = self.chips[0].result.success.size if self.chips else 0
        data: dict[str, Any] = {
            "success": (
                ("chip", "neuron"),
                np.array([chip.result.success for chip in self.chips], dtype=bool).reshape(
                    len(ids), n_neurons
                ),
            ),
        }
        names = sorted({name for chip in self.chips for name in chip.result.achieved})
        for name in names:
            for kind in ("before", "achieved"):
                values = [
                    getattr(chip.result, kind).get(name, np.full(n_neurons, np.nan))
                    for chip in self.chips
                ]
                data[f"{kind}_{name}"] = (("chip", "neuron"), np.array(values, dtype=float))
            data[f"measured_success_{name}"] = (
                "chip",
                np.array([chip.measured_success()[name] for chip in self.chips], dtype=float),
            )
        # Variable-length strings: zarr v3 has a specified data type for them, not for fixed ones.
        coords: dict[str, Any] = {
            "chip": np.array(ids, dtype=object),
            "neuron": np.arange(n_neurons),
        }
        for name, values in self.grid.items():
            axis = f"grid_{name}"
            coords[axis] = (
                axis,
                np.asarray(values, dtype=float),
                {"units": PLANS.quantities()[name].unit},
            )
            reach = np.array([chip.reachable[name] for chip in self.chips], dtype=bool).reshape(
                len(ids), values.size, n_neurons
            )
            data[f"reachable_{name}"] = (("chip", axis, "neuron"), reach)
            data[f"yield_{name}"] = (("chip", axis), reach.mean(axis=2))
            data[f"reachable_at_target_{name}"] = (
                ("chip", "neuron"),
                np.array(
                    [chip.reachable_at_target[name] for chip in self.chips], dtype=bool
                ).reshape(len(ids), n_neurons),
            )
        attrs = {
            "study": self.name,
            "mismatch_scale": self.mismatch_scale,
            "target": json.dumps(self.target.to_dict()),
            "yield_method": YIELD_METHOD,
            "failed_chips": json.dumps(self.failures),
            "created": self.created,
        }
        return xr.Dataset(data, coords=coords, attrs=attrs)

    def export(self, path: str | os.PathLike[str]) -> Path:
        """Write the dataset as netCDF (.nc, h5netcdf) or zarr (.zarr); refuses to overwrite."""
        path = Path(path)
        suffix = check_export_path(path)
        if path.exists():
            raise FileExistsError(f"{path} exists; choose a new file for the study data")
        dataset = self.to_dataset()
        if suffix == ".nc":
            dataset.to_netcdf(path, engine="h5netcdf")
        else:
            dataset.to_zarr(path, mode="w-", consolidated=False)
        return path


def check_export_path(path: str | os.PathLike[str]) -> str:
    """The export format of `path` from its suffix (.nc or .zarr); ValueError otherwise."""
    suffix = Path(path).suffix.lower()
    if suffix not in EXPORT_SUFFIXES:
        raise ValueError(f"output = {os.fspath(path)!r} must end in .nc (netCDF) or .zarr")
    return suffix


def load_study(path: str | os.PathLike[str]) -> Any:
    """A study exported by `MismatchStudy.export`, as an xarray Dataset (loaded in memory)."""
    import xarray as xr

    suffix = check_export_path(path)
    if suffix == ".nc":
        with xr.open_dataset(path, engine="h5netcdf") as dataset:
            return dataset.load()
    return xr.open_zarr(path, consolidated=False).load()


def run_study(
    n_chips: int,
    *,
    name: str = "study",
    mismatch_scale: float = 1.0,
    target: NeuronTarget | None = None,
    grid: Mapping[str, Sequence[float]] | str | None = None,
    client: Any = None,
    scheduler: str | None = None,
    workers: int = DEFAULT_WORKERS,
    options: CalibrationOptions | None = None,
    connect_timeout: float = CONNECT_TIMEOUT,
    on_chip: ChipProgress | None = None,
) -> MismatchStudy:
    """Calibrate `n_chips` simulated chips (one Dask task each) and gather the study.

    `on_chip(chip_id, error, done, total)` is called as each chip finishes (error: None, or
    the traceback of a chip that failed).

    `grid` is a quantity -> targets mapping (stored units) or a spec string (see the module
    doc); default DEFAULT_GRID. The cluster is `client`, else the scheduler at `scheduler`,
    else a LocalCluster of `workers` single-threaded processes.
    """
    started = time.perf_counter()
    ids = study_chip_ids(name, n_chips)
    if not (
        isinstance(mismatch_scale, int | float)
        and np.isfinite(mismatch_scale)
        and mismatch_scale >= 0
    ):
        raise ValueError(f"mismatch_scale = {mismatch_scale!r} is outside the allowed range >= 0")
    target = NeuronTarget() if target is None else target
    if not isinstance(target, NeuronTarget):
        raise ValueError(f"target must be a NeuronTarget, got {type(target).__name__}")
    if grid is None or isinstance(grid, str):
        grid = parse_target_grid(DEFAULT_GRID if grid is None else grid)
    grid = {name_: np.asarray(values, dtype=float) for name_, values in grid.items()}
    for quantity, values in grid.items():
        if quantity == "tau_icc" and target.compartments is None:
            raise ValueError("grid tau_icc: the study target needs a compartments layout")
        if quantity not in CELL_OF:
            raise ValueError(f"grid quantity {quantity!r} is not one of {', '.join(CELL_OF)}")
        spec = PLANS.quantities()[quantity]
        if (
            values.ndim != 1
            or not values.size
            or np.any(~np.isfinite(values) | (values < spec.low) | (values > spec.high))
        ):
            raise ValueError(
                f"grid {quantity}: targets must be a non-empty 1-d grid inside "
                f"{spec.low:g}..{spec.high:g} {spec.unit}, got {values!r}"
            )
    if client is None:
        check_workers(workers)
        with dask_client(scheduler, workers=workers, connect_timeout=connect_timeout) as made:
            parts = _gather(made, ids, mismatch_scale, target, grid, options, on_chip)
    else:
        parts = _gather(client, ids, mismatch_scale, target, grid, options, on_chip)
    chips, failures = [], {}
    for part in parts:
        if "error" in part:
            failures[part["chip_id"]] = part["error"]
            continue
        arrays, attrs = part["record"]
        chips.append(
            ChipStudy(
                NeuronResult.from_record(arrays, attrs),
                part["reachable"],
                part["reachable_at_target"],
            )
        )
    return MismatchStudy(
        name,
        float(mismatch_scale),
        target,
        grid,
        chips,
        failures,
        host_seconds=time.perf_counter() - started,
    )


ChipProgress = Callable[[str, str | None, int, int], None]
"""(chip id, error or None, chips done, chips in all): called as each chip finishes."""


def _gather(
    client: Any,
    ids: list[str],
    mismatch_scale: float,
    target: NeuronTarget,
    grid: Mapping[str, np.ndarray],
    options: CalibrationOptions | None,
    on_chip: ChipProgress | None = None,
) -> list[dict[str, Any]]:
    from distributed import as_completed

    plain_grid = {name: values.tolist() for name, values in grid.items()}
    futures = {
        client.submit(
            study_chip,
            chip_id,
            mismatch_scale,
            target.to_dict(),
            plain_grid,
            options,
            key=f"study-{chip_id}-{time.time_ns()}",
            pure=False,
        ): chip_id
        for chip_id in ids
    }
    parts: dict[str, dict[str, Any]] = {}
    for done, future in enumerate(as_completed(futures), start=1):
        chip_id = futures[future]
        try:
            parts[chip_id] = future.result()
        except Exception as error:  # the task itself died (e.g. its worker was killed)
            parts[chip_id] = {
                "chip_id": chip_id,
                "error": "".join(traceback.format_exception(error)),
            }
        if on_chip is not None:
            on_chip(chip_id, parts[chip_id].get("error"), done, len(ids))
    return [parts[chip_id] for chip_id in ids]
