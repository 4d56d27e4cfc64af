"""The device protocol: the only way calibration code touches a chip.

A hardware backend and `SimulatedChip` implement the same protocol. Everything is vectorised:
one call configures or measures all neurons. The cell table below is the contract between
routines and devices: every name a routine may write, with its range and scope.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike

from device_model.stimuli import Stimulus

N_NEURONS = 512
N_QUADRANTS = 4
NEURONS_PER_QUADRANT = N_NEURONS // N_QUADRANTS
CAPMEM_MAX = 1022
"""Highest code of an analog parameter cell (CapMem, 10 bit; 1023 is reserved)."""

CADC_MAX = 255
MADC_MAX = 1023
SPIKE_COUNTER_MAX = 255
MADC_SAMPLE_RATE = 29.4e6
"""MADC samples per second (BrainScaleS-2)."""
MADC_INVALID_TIME = 8e-6
"""The first 8 µs of every MADC recording are invalid."""
MADC_NEURONS_PER_RUN = 2

# --- Synapse array and synapse drivers (BSS-2 geometry; see device_model/synapses.py) -------
N_HEMISPHERES = 2
ROWS_PER_HEMISPHERE = 256
"""Synapse rows of one hemisphere's array; each feeds that hemisphere's 256 neuron columns."""
COLUMNS_PER_HEMISPHERE = N_NEURONS // N_HEMISPHERES
N_ROWS = N_HEMISPHERES * ROWS_PER_HEMISPHERE
"""Rows of the whole chip: row index h * 256 + r (hemisphere h, row r of its array)."""
ROWS_PER_DRIVER = 2
DRIVERS_PER_HEMISPHERE = ROWS_PER_HEMISPHERE // ROWS_PER_DRIVER
N_DRIVERS = N_HEMISPHERES * DRIVERS_PER_HEMISPHERE
"""Synapse drivers: driver index h * 128 + d drives rows 2d and 2d + 1 of hemisphere h."""
N_DRIVER_BLOCKS = 4
"""CapMem blocks that bias the drivers (64 drivers each): see `driver_block`."""
SYNAPSE_WEIGHT_MAX = 63
SYNAPSE_ADDRESS_MAX = 63
ACTIVATION_MAX = 31
"""MAC input activations are 5 bit."""
ROW_DISABLED, ROW_EXCITATORY, ROW_INHIBITORY = 0, 1, 2
"""Values of the `row_mode` cell."""


class DeviceError(RuntimeError):
    """A device operation failed."""


class TransientRunError(DeviceError):
    """A run failed for a transient reason (a retry may succeed)."""


Scope = Literal["neuron", "quadrant", "synapse", "driver", "row"]
Kind = Literal["analog", "digital"]


@dataclass(frozen=True)
class CellSpec:
    """One configurable cell: its allowed codes, scope and meaning."""

    name: str
    low: int
    high: int
    scope: Scope
    kind: Kind
    default: int
    description: str

    @property
    def shape(self) -> tuple[int, ...]:
        return SCOPE_SHAPES[self.scope]


SCOPE_SHAPES: dict[str, tuple[int, ...]] = {
    "neuron": (N_NEURONS,),
    "quadrant": (N_QUADRANTS,),
    "synapse": (ROWS_PER_HEMISPHERE, N_NEURONS),
    "driver": (N_DRIVERS,),
    "row": (N_ROWS,),
}
"""Array shape of a cell of each scope. A synapse cell is indexed [row r, neuron column n]:
the synapse in row r of hemisphere n // 256 at column n % 256."""


def _analog(name: str, default: int, description: str, scope: Scope = "neuron") -> CellSpec:
    return CellSpec(name, 0, CAPMEM_MAX, scope, "analog", default, description)


def _switch(name: str, description: str, default: int = 0) -> CellSpec:
    return CellSpec(name, 0, 1, "neuron", "digital", default, description)


CELLS: dict[str, CellSpec] = {
    spec.name: spec
    for spec in (
        # Neuron potentials (CapMem voltages).
        _analog("v_leak", 400, "leak potential"),
        _analog("v_reset", 300, "reset potential"),
        _analog("v_threshold", 600, "spike threshold (comparator reference)"),
        _analog("v_exp", 700, "onset potential of the exponential term"),
        # Neuron bias currents.
        _analog("i_bias_leak", 500, "leak conductance"),
        _analog("i_bias_reset", 1000, "reset conductance"),
        _analog("i_bias_syn_exc_tau", 500, "excitatory synaptic time constant (higher: faster)"),
        _analog("i_bias_syn_inh_tau", 500, "inhibitory synaptic time constant (higher: faster)"),
        _analog("i_bias_syn_exc_gm", 500, "excitatory synaptic input transconductance"),
        _analog("i_bias_syn_inh_gm", 500, "inhibitory synaptic input transconductance"),
        _analog("i_bias_syn_exc_shift", 300, "excitatory input reference (cancels its offset)"),
        _analog("i_bias_syn_inh_shift", 300, "inhibitory input reference (cancels its offset)"),
        _analog("i_bias_adapt_a", 0, "subthreshold adaptation strength a"),
        _analog("i_bias_adapt_b", 0, "spike-triggered adaptation increment b"),
        _analog("i_bias_adapt_tau", 500, "adaptation time constant (higher: faster)"),
        _analog("i_bias_exp", 500, "slope factor of the exponential term"),
        # Per-quadrant cells of the columnar ADC.
        _analog("cadc_ramp_offset", 400, "CADC ramp start voltage", scope="quadrant"),
        _analog("cadc_ramp_slope", 500, "CADC ramp slope (higher: steeper)", scope="quadrant"),
        _analog("v_cadc_reference", 400, "reference voltage for CADC calibration", "quadrant"),
        # Digital configuration.
        CellSpec("cadc_channel_offset", -128, 127, "neuron", "digital", 0, "CADC digital offset"),
        CellSpec("membrane_capacitance", 0, 63, "neuron", "digital", 63, "membrane capacitance"),
        CellSpec("refractory_counter", 0, 255, "neuron", "digital", 20, "refractory counter"),
        CellSpec("refractory_clock_scale", 0, 15, "neuron", "digital", 2, "refractory clock"),
        _switch("cadc_connect_reference", "CADC channel reads v_cadc_reference"),
        _switch("leak_divide", "divide the leak conductance by about 8"),
        _switch("leak_multiply", "multiply the leak conductance by about 8"),
        _switch("syn_exc_enable", "excitatory synaptic input connected"),
        _switch("syn_inh_enable", "inhibitory synaptic input connected"),
        _switch("syn_exc_high_resistance", "excitatory tau_syn about 5x longer"),
        _switch("syn_inh_high_resistance", "inhibitory tau_syn about 5x longer"),
        _switch("threshold_enable", "spiking enabled", default=1),
        _switch("reset_hold", "neuron held in reset permanently"),
        _switch("adaptation_enable", "adaptation current enabled"),
        _switch("exponential_enable", "exponential term enabled"),
        # --- Synapse array, synapse drivers and their biases (device_model/synapses.py) ---
        CellSpec(
            "synapse_weight", 0, SYNAPSE_WEIGHT_MAX, "synapse", "digital", 0, "6-bit synapse weight"
        ),
        CellSpec(
            "synapse_address",
            0,
            SYNAPSE_ADDRESS_MAX,
            "synapse",
            "digital",
            0,
            "6-bit synapse address: the synapse answers events with this address",
        ),
        CellSpec(
            "row_mode",
            0,
            2,
            "row",
            "digital",
            ROW_EXCITATORY,
            "row drives the excitatory (1) or inhibitory (2) input, or nothing (0)",
        ),
        CellSpec("driver_enable", 0, 1, "driver", "digital", 1, "synapse driver receives events"),
        CellSpec(
            "driver_hagen_offset",
            0,
            63,
            "driver",
            "digital",
            32,
            "offset of the driver's activation-to-pulse-length DAC (higher: shorter)",
        ),
        _analog(
            "syn_i_bias_dac",
            800,
            "synapse DAC bias current: charge per weight unit",
            scope="quadrant",
        ),
        # --- Multi-compartment neurons (device_model/compartments.py) ---
        _switch("icc_connect_right", "connect this neuron's membrane to its right neighbour"),
        _switch("icc_connect_down", "connect this neuron's membrane to the one 256 below"),
        _analog("i_bias_icc", 500, "inter-compartment conductance of this neuron's connection"),
        _switch("icc_divide", "divide the inter-compartment conductance by about 8"),
        _switch("icc_multiply", "multiply the inter-compartment conductance by about 8"),
        _analog(
            "stp_i_ramp",
            500,
            "drivers' STP ramp current per CapMem block (higher: longer pulses per activation)",
            scope="quadrant",
        ),
        # --- Conductance-based synaptic inputs (device_model/coba.py) ---
        _analog(
            "v_syn_exc_coba_reference",
            400,
            "excitatory COBA reference: the membrane potential the OTA leaves the input at",
        ),
        _analog(
            "v_syn_inh_coba_reference",
            400,
            "inhibitory COBA reference: the membrane potential the OTA leaves the input at",
        ),
        _analog("i_bias_syn_exc_coba", 0, "excitatory COBA OTA bias (0: current-based input)"),
        _analog("i_bias_syn_inh_coba", 0, "inhibitory COBA OTA bias (0: current-based input)"),
        # --- Reset holdoff (device_model/holdoff.py) ---
        CellSpec(
            "reset_holdoff",
            0,
            255,
            "neuron",
            "digital",
            0,
            "holdoff at the end of the refractory time (16 ns per code): membrane released, "
            "spikes blocked",
        ),
    )
}


def validate_settings(settings: Mapping[str, ArrayLike]) -> dict[str, np.ndarray]:
    """Check every cell of `settings` and return them as full-shape int arrays.

    Raises ValueError naming the first offending cell, value and allowed range; nothing is
    applied by the caller unless every cell passes.
    """
    checked: dict[str, np.ndarray] = {}
    for name, value in settings.items():
        spec = CELLS.get(name)
        if spec is None:
            raise ValueError(f"unknown cell {name!r}; known cells: {', '.join(sorted(CELLS))}")
        array = np.asarray(value)
        if array.dtype == bool:
            if spec.kind == "analog":
                raise ValueError(
                    f"cell {name!r} takes integer codes {spec.low}..{spec.high}, got booleans"
                )
            array = array.astype(np.int64)
        if not np.issubdtype(array.dtype, np.integer):
            if not np.issubdtype(array.dtype, np.floating) or not np.all(
                np.isfinite(array) & (array == np.round(array))
            ):
                raise ValueError(
                    f"cell {name!r} takes integer codes {spec.low}..{spec.high} (a scalar or an "
                    f"array of shape {spec.shape}), got dtype {array.dtype}"
                )
        if array.ndim == 0:
            array = np.full(spec.shape, array)
        if array.shape != spec.shape:
            raise ValueError(
                f"cell {name!r} takes a scalar or an array of shape {spec.shape}, "
                f"got shape {array.shape} (codes {spec.low}..{spec.high})"
            )
        # Compared before the cast: a huge unsigned code must not wrap into the range.
        bad = (array < spec.low) | (array > spec.high)
        if bad.any():
            flat = int(np.flatnonzero(bad)[0])
            index = (
                flat
                if array.ndim == 1
                else tuple(int(i) for i in np.unravel_index(flat, array.shape))
            )
            raise ValueError(
                f"cell {name!r}: code {array.reshape(-1)[flat]} at index {index} outside the "
                f"allowed range {spec.low}..{spec.high}"
            )
        array = array.astype(np.int64)
        checked[name] = array
    return checked


@dataclass(frozen=True)
class Trace:
    """An MADC recording of a few neurons.

    `codes` has shape (len(neurons), len(times)); samples where `valid` is False (the first
    8 µs of each recording) carry no information.
    """

    neurons: np.ndarray
    times: np.ndarray
    codes: np.ndarray
    valid: np.ndarray


@dataclass(frozen=True)
class SpikeCounts:
    """Spike counter readout: 8-bit counts and an overflow flag per neuron."""

    counts: np.ndarray
    overflow: np.ndarray


@dataclass
class DeviceStats:
    """What a sequence of operations cost: runs, writes and emulated hardware time (s).

    `runs` counts every run; `embedded_runs` those the chip's embedded processor started (no
    host round trip), so `host_runs` = runs - embedded_runs.
    """

    runs: int = 0
    writes: int = 0
    hardware_time: float = 0.0
    # -- embedded processor (docs/embedded.md) --
    embedded_runs: int = 0

    @property
    def host_runs(self) -> int:
        return self.runs - self.embedded_runs

    def copy(self) -> DeviceStats:
        return DeviceStats(self.runs, self.writes, self.hardware_time, self.embedded_runs)

    def __sub__(self, other: DeviceStats) -> DeviceStats:
        return DeviceStats(
            self.runs - other.runs,
            self.writes - other.writes,
            self.hardware_time - other.hardware_time,
            self.embedded_runs - other.embedded_runs,
        )


StimulusArg = Stimulus | Sequence[Stimulus] | None


@runtime_checkable
class Device(Protocol):
    """What a chip offers to calibration code. All calls act on every neuron at once."""

    chip_id: str
    n_neurons: int

    @property
    def stats(self) -> DeviceStats: ...

    def write(self, settings: Mapping[str, ArrayLike]) -> None:
        """Set cells: each value a scalar or an array of the cell's shape."""

    def read_settings(self, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """The codes last written (the defaults before any write)."""

    def read_cadc(
        self, samples: int = 1, stimulus: StimulusArg = None, read_time: float | None = None
    ) -> np.ndarray:
        """CADC codes, uint8 of shape (samples, n_neurons).

        Without `read_time` each sample is taken at an unrelated moment (the resting state, or a
        random phase of a spiking neuron). With `read_time` every sample converts at that time
        after the stimulus starts, each in a repetition of the stimulus.
        """

    def record_madc(
        self, neurons: Sequence[int], duration: float, stimulus: StimulusArg = None
    ) -> Trace:
        """MADC traces of `neurons` (two per run) over `duration` seconds."""

    def count_spikes(self, duration: float, stimulus: StimulusArg = None) -> SpikeCounts:
        """Spikes of every neuron within `duration` seconds."""
