"""Calibration results: what was asked, what was reached, what failed and why.

Results turn themselves into plain arrays and JSON-able metadata (`to_record`) and back
(`from_record`); the results store knows only those, never these classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from calib.core.failures import (
    Failure,
    by_quantity,
    legacy_failures,
    reason_texts,
)
from calib.core.plans import PLANS
from calib.core.targets import NeuronTarget
from device_model.protocol import (
    CELLS,
    N_DRIVERS,
    N_NEURONS,
    N_QUADRANTS,
    NEURONS_PER_QUADRANT,
    Device,
    DeviceStats,
)


def apply_settings(device: Device, settings: Mapping[str, np.ndarray], n_neurons: int) -> None:
    """Write a result's cell codes to `device` (of `n_neurons` neurons) twice: a large step (a
    chip fresh at its default codes) is still ~0.7 % short after one write's settling wait; the
    second write's wait lets the cells settle."""
    if device.n_neurons != n_neurons:
        raise ValueError(
            f"result has {n_neurons} neurons, device {device.chip_id!r} has {device.n_neurons}"
        )
    device.write(settings)
    device.write(settings)


class ResultsStoreLike(Protocol):
    """What calibrate() and ensure() need of a results store (`results_store.ResultsStore`)."""

    def save(self, result: Any) -> str: ...

    def latest(self, chip_id: str, target: Any = None) -> Any: ...


RECORD_KIND = "neuron_result"
RECORD_VERSION = 2
"""Layout of a neuron result's record: 2 stores failures as structured records and the
searches' notes; 1 (still read) stored one reason string per failed neuron."""


@dataclass(frozen=True)
class Provenance:
    """Where a result comes from."""

    chip_id: str
    created: str
    """ISO 8601 time (UTC) the calibration finished."""
    duration: float
    """Host seconds the calibration took."""
    versions: dict[str, str]
    device_stats: dict[str, float]
    algorithm: str
    extra: dict[str, Any] = field(default_factory=dict)
    steps: dict[str, dict[str, float]] = field(default_factory=dict)
    """Step name -> runs, writes, hardware_time and host_time spent in it (repeats summed)."""
    retries: dict[str, int] = field(default_factory=dict)
    """Step name -> transient device failures retried in it."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "chip_id": self.chip_id,
            "created": self.created,
            "duration": self.duration,
            "versions": dict(self.versions),
            "device_stats": dict(self.device_stats),
            "algorithm": self.algorithm,
            "extra": dict(self.extra),
            "steps": {name: dict(cost) for name, cost in self.steps.items()},
            "retries": dict(self.retries),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Provenance:
        return cls(**dict(data))

    @staticmethod
    def stats_dict(stats: DeviceStats) -> dict[str, float]:
        return {"runs": stats.runs, "writes": stats.writes, "hardware_time": stats.hardware_time}


@dataclass(eq=False)
class NeuronResult:
    """A whole neuron calibration of one chip."""

    target: NeuronTarget
    codes: dict[str, np.ndarray]
    """Cell name -> codes (shape of the cell: per neuron or per quadrant)."""
    achieved: dict[str, np.ndarray]
    """Quantity -> per-neuron value measured with the final codes."""
    success: np.ndarray
    failure_records: list[Failure]
    """Every reason a neuron failed, one record per neuron, quantity and cause."""
    provenance: Provenance
    before: dict[str, np.ndarray] = field(default_factory=dict)
    """Quantity -> per-neuron value before calibration (every neuron at one code)."""
    models: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    """Quantity -> fitted transfer-curve parameters (per neuron), where an algorithm fitted one."""
    notes: dict[str, dict[int, str]] = field(default_factory=dict)
    """Search step -> neuron -> what the search noticed (e.g. a fit that failed)."""
    origin: str = "calibrated"
    """How this object came to be: 'calibrated', 'stored', or what `ensure` decided and why.
    Not stored: it describes this process's path, not the calibration."""

    @property
    def chip_id(self) -> str:
        return self.provenance.chip_id

    @property
    def reasons(self) -> dict[int, str]:
        """Failed neuron -> why, as text: 'tau_mem: i_bias_leak at upper bound 1022'."""
        return reason_texts(self.failure_records)

    def failures(self) -> dict[int, str]:
        """Failed neuron -> why, as text (`failure_records` holds them as data)."""
        return self.reasons

    def failed_quantities(self) -> dict[str, set[int]]:
        """Quantity (or step) -> the neurons failing on it."""
        return by_quantity(self.failure_records)

    def goals(self) -> dict[str, np.ndarray]:
        """Per quantity, the per-neuron value aimed at: the target's, or for a quantity the
        target left to the chip (a matched PSP amplitude) the value the calibration chose."""
        goals = {
            name: np.asarray(params["target"], dtype=float)
            for name, params in self.models.items()
            if "target" in params
        }
        return {**goals, **self.target.quantities()}

    def residuals(self) -> dict[str, np.ndarray]:
        goals = self.goals()
        return {
            name: values - goals[name] for name, values in self.achieved.items() if name in goals
        }

    def to_settings(self) -> dict[str, np.ndarray]:
        """The cell codes to write so that a chip behaves as calibrated."""
        return {name: np.array(codes, copy=True) for name, codes in self.codes.items()}

    def apply(self, device: Device) -> None:
        """Inject the calibration into `device`.

        Written twice: a large step (a chip fresh at its default codes) is still ~0.7 % short
        after one write's settling wait; the second write's wait lets the cells settle.
        """
        apply_settings(device, self.to_settings(), self.success.shape[0])

    def summary(self) -> str:
        """One table a person can read."""
        targets = self.goals()
        ok = self.success
        lines = [
            f"chip {self.chip_id}: {int(ok.sum())}/{ok.size} neurons calibrated "
            f"({100 * ok.mean():.1f} %)",
            f"{'quantity':<20}{'target':>12}{'median':>12}{'spread':>12}{'before':>12}",
        ]
        specs = PLANS.quantities()
        for name, values in self.achieved.items():
            spec = specs.get(name)
            scale = spec.display.scale if spec is not None else 1.0
            shown = spec.label if spec is not None else name
            good = values[ok] if ok.any() else values
            before = self.before.get(name)
            spread_before = f"{np.nanstd(before) * scale:12.3g}" if before is not None else ""
            lines.append(
                f"{shown:<20}{np.median(targets[name]) * scale:12.3g}"
                f"{np.nanmedian(good) * scale:12.3g}{np.nanstd(good) * scale:12.3g}"
                f"{spread_before}"
            )
        cross_check = self.models.get("threshold", {}).get("madc_minus_cadc")
        if cross_check is not None:  # the threshold measured through the MADC as well
            lines.append(
                f"threshold cross-check, MADC - CADC [LSB]: median "
                f"{np.nanmedian(cross_check):.3g}, spread {np.nanstd(cross_check):.3g}"
            )
        return "\n".join(lines)

    # -- notebooks ---------------------------------------------------------------------------

    def _repr_html_(self) -> str:
        """A compact summary table (Jupyter shows it for a result at the end of a cell)."""
        from html import escape

        targets = self.target.quantities()
        ok = np.asarray(self.success, dtype=bool)
        failed = self.failed_quantities()
        specs = PLANS.quantities()
        rows = []
        for name, values in self.achieved.items():
            spec = specs.get(name)
            unit = spec.display if spec is not None else None
            scale = unit.scale if unit is not None else 1.0
            good = np.asarray(values, dtype=float)[ok] if ok.any() else np.asarray(values)
            target = targets.get(name)
            cells = [
                escape(name),
                escape(unit.label if unit is not None else ""),
                "-" if target is None else f"{np.median(target) * scale:.4g}",
                _html_number(np.nanmedian(good) * scale if np.isfinite(good).any() else np.nan),
                _html_number(np.nanstd(good) * scale if np.isfinite(good).sum() > 1 else np.nan),
                str(len(failed.get(name, ()))),
            ]
            rows.append(
                "<tr>"
                + "".join(
                    f'<td style="text-align:{"left" if index < 2 else "right"}">{cell}</td>'
                    for index, cell in enumerate(cells)
                )
                + "</tr>"
            )
        header = "".join(
            f"<th>{title}</th>" for title in ("quantity", "unit", "target", "median", "σ", "failed")
        )
        caption = (
            f"chip {escape(self.chip_id)}: {int(ok.sum())}/{ok.size} neurons calibrated "
            f"({100 * ok.mean():.1f} %) · {escape(str(self.provenance.created))} · "
            f"median and σ over the successful neurons"
        )
        return (
            f'<table class="calib-result"><caption style="text-align:left">{caption}'
            f"</caption><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}"
            "</tbody></table>"
        )

    def to_xarray(self) -> Any:
        """The result as an xarray Dataset: dimensions `neuron` and `quadrant`, variables named
        as the store's export names them ('achieved.tau_mem', 'codes.v_leak', 'target.leak',
        'success'), each with `units` (the stored unit) and `long_name` from its plan."""
        import xarray

        from results_store.export import variable_name

        n_neurons = int(np.asarray(self.success).size)
        n_quadrants = N_QUADRANTS if n_neurons == N_NEURONS else None
        specs = PLANS.quantities()

        def dims(values: np.ndarray) -> tuple[str, ...]:
            if values.ndim == 1 and values.shape[0] == n_neurons:
                return ("neuron",)
            if values.ndim == 1 and values.shape[0] == n_quadrants:
                return ("quadrant",)
            return tuple(f"length_{length}" for length in values.shape)

        def quantity_attrs(name: str, what: str) -> dict[str, str]:
            spec = specs.get(name)
            if spec is None:
                return {"long_name": f"{name} ({what})"}
            return {
                "units": spec.unit,
                "long_name": f"{spec.long_name or spec.description or name} ({what})",
            }

        variables: dict[str, Any] = {
            "success": xarray.Variable(
                ("neuron",),
                np.asarray(self.success, dtype=bool),
                {"long_name": "neuron calibrated within tolerance"},
            )
        }
        targets = self.target.quantities()
        for group, data, what in (
            ("achieved", self.achieved, "achieved"),
            ("before", self.before, "before calibration"),
        ):
            for name, values in data.items():
                array = np.asarray(values, dtype=float)
                variables[variable_name(f"{group}/{name}")] = xarray.Variable(
                    dims(array), array, quantity_attrs(name, what)
                )
        for name, values in targets.items():
            array = np.broadcast_to(np.asarray(values, dtype=float), (n_neurons,))
            variables[variable_name(f"target/{name}")] = xarray.Variable(
                ("neuron",), np.array(array), quantity_attrs(name, "target")
            )
        for cell, codes in self.codes.items():
            array = np.asarray(codes, dtype=np.int64)
            variables[variable_name(f"codes/{cell}")] = xarray.Variable(
                dims(array), array, {"long_name": f"code of cell {cell}", "units": "1"}
            )
        coords: dict[str, Any] = {"neuron": np.arange(n_neurons)}
        if n_quadrants is not None:
            coords["quadrant"] = np.arange(n_quadrants)
            coords["neuron_quadrant"] = ("neuron", np.arange(n_neurons) // NEURONS_PER_QUADRANT)
        dataset = xarray.Dataset(
            variables,
            coords=coords,
            attrs={
                "chip_id": self.chip_id,
                "created": str(self.provenance.created),
                "algorithm": str(self.provenance.algorithm),
                "target_fingerprint": self.target.fingerprint(),
                "origin": self.origin,
            },
        )
        return dataset

    # -- plain-data form for storage -------------------------------------------------------

    def to_record(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(arrays, attrs): per-neuron arrays by path, and JSON-able metadata."""
        arrays: dict[str, np.ndarray] = {"success": np.asarray(self.success, dtype=bool)}
        for name, codes in self.codes.items():
            arrays[f"codes/{name}"] = np.asarray(codes, dtype=np.int64)
        for name, values in self.achieved.items():
            arrays[f"achieved/{name}"] = np.asarray(values, dtype=np.float64)
        for name, values in self.before.items():
            arrays[f"before/{name}"] = np.asarray(values, dtype=np.float64)
        for quantity, params in self.models.items():
            for param, values in params.items():
                arrays[f"models/{quantity}/{param}"] = np.asarray(values, dtype=np.float64)
        attrs = {
            "kind": RECORD_KIND,
            "chip_id": self.chip_id,
            "target": self.target.to_dict(),
            "target_fingerprint": self.target.fingerprint(),
            "record_version": RECORD_VERSION,
            "failures": [failure.to_dict() for failure in self.failure_records],
            "notes": {
                step: {str(n): note for n, note in notes.items()}
                for step, notes in self.notes.items()
            },
            "provenance": self.provenance.to_dict(),
            "array_meta": array_meta(arrays),
        }
        return arrays, attrs

    @classmethod
    def from_record(
        cls, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any]
    ) -> NeuronResult:
        if attrs.get("kind") != RECORD_KIND:
            raise ValueError(f"record kind {attrs.get('kind')!r} is not {RECORD_KIND!r}")
        groups: dict[str, dict[str, np.ndarray]] = {"codes": {}, "achieved": {}, "before": {}}
        models: dict[str, dict[str, np.ndarray]] = {}
        for path, values in arrays.items():
            head, _, rest = path.partition("/")
            if head == "models":
                quantity, _, param = rest.partition("/")
                models.setdefault(quantity, {})[param] = np.asarray(values)
            elif head in groups:
                groups[head][rest] = np.asarray(values)
        version = int(attrs.get("record_version", 1))
        if version > RECORD_VERSION:
            raise ValueError(
                f"neuron result record version {version} is newer than this "
                f"version of calib reads ({RECORD_VERSION})"
            )
        if version == 1:
            failures = legacy_failures(attrs.get("reasons") or {})
        else:
            failures = [Failure.from_dict(data) for data in attrs.get("failures") or []]
        unknown_cells = set(groups["codes"]) - set(CELLS)
        if unknown_cells:
            raise ValueError(f"record holds codes of unknown cells: {sorted(unknown_cells)}")
        return cls(
            target=NeuronTarget.from_dict(dict(attrs["target"])),
            codes=groups["codes"],
            achieved=groups["achieved"],
            success=np.asarray(arrays["success"], dtype=bool),
            failure_records=failures,
            provenance=Provenance.from_dict(attrs["provenance"]),
            before=groups["before"],
            models=models,
            notes={
                step: {int(n): str(note) for n, note in notes.items()}
                for step, notes in (attrs.get("notes") or {}).items()
            },
            origin="stored",
        )


def _html_number(value: float) -> str:
    return "-" if not np.isfinite(value) else f"{value:.4g}"


# -- what each stored array means (dims, units, long name), for the results store ---------

_ARRAY_GROUPS = {"achieved": "achieved", "before": "before calibration"}
SCOPE_DIMS = {
    "neuron": ["neuron"],
    "quadrant": ["quadrant"],
    "synapse": ["hemisphere_row", "neuron"],
    "driver": ["driver"],
    "row": ["row"],
}
"""Dimension names of a cell's codes, by the cell's scope."""
_DIMS_BY_LENGTH = {N_NEURONS: "neuron", N_QUADRANTS: "quadrant", N_DRIVERS: "driver"}


def _quantity_units(name: str) -> str:
    spec = PLANS.quantities().get(name)
    return spec.unit if spec is not None else "1"


def _dims(path: str, values: np.ndarray, known: list[str]) -> list[str]:
    dims = known[: values.ndim]
    if len(dims) < values.ndim:  # a shape without a declared meaning: axes named by position
        dims = [
            *dims,
            *(f"{path.replace('/', '_')}_axis{axis}" for axis in range(len(dims), values.ndim)),
        ]
    return dims


def array_meta(
    arrays: Mapping[str, np.ndarray],
    overrides: Mapping[str, tuple[list[str], str, str]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Path -> dims, units and long_name of every array of a record: codes unitless with the
    dims of their cell's scope, quantities in their stored units (seconds, CADC LSB), fitted
    model parameters unitless per neuron; `overrides` gives (dims, units, long_name) by path."""
    meta: dict[str, dict[str, Any]] = {}
    for path, values in arrays.items():
        head, _, rest = path.partition("/")
        if overrides and path in overrides:
            dims, units, long_name = overrides[path]
        elif path == "success":
            dims, units, long_name = ["neuron"], "1", "neuron within tolerance of its target"
        elif head == "codes":
            cell = CELLS.get(rest)
            dims = SCOPE_DIMS[cell.scope] if cell is not None else ["neuron"]
            long_name = f"code of cell {rest}: {cell.description if cell else rest}"
            units = "1"
        elif head in _ARRAY_GROUPS:
            spec = PLANS.quantities().get(rest)
            length = values.shape[0] if values.ndim else 0
            dims, units = [_DIMS_BY_LENGTH.get(length, "unit")], _quantity_units(rest)
            long_name = f"{spec.long_name or rest if spec else rest}, {_ARRAY_GROUPS[head]}"
        else:
            quantity, _, param = rest.partition("/")
            dims, units = ["neuron"], "1"
            long_name = f"parameter {param} of the fitted {quantity} transfer curve"
        meta[path] = {
            "dims": _dims(path, values, list(dims)),
            "units": units,
            "long_name": long_name,
        }
    return meta


def _register_with_store() -> None:
    from results_store import register_kind

    register_kind(RECORD_KIND, NeuronResult.from_record)


_register_with_store()
