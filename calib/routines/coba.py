"""Conductance-based (COBA) synaptic inputs: the effective reversal potential of each input.

With COBA on, an OTA compares the membrane potential with a reference potential and modulates
the input's strength (BSS-2; calix spiking/synapse.py): the PSP amplitude falls linearly as the
membrane nears the reversal potential and extrapolates to zero there. The quantity is that
potential, in CADC LSB on the CADC's linear scale (a point the membrane need not reach).

Two steps per input, after its PSP amplitude (the strength at the leak):

- Reference (`CobaReference`, cell v_syn_<kind>_coba_reference): the potential where the OTA
  leaves the input's strength unchanged is brought to the leak, so the PSP amplitude at rest
  stays the calibrated one. Measured as the PSP amplitude at rest with COBA on over the same
  amplitude with the COBA bias at 0 (read once in the prelude); the goal is 1.
- Reversal potential (`ReversalPotential`, cell i_bias_syn_<kind>_coba): PSP amplitudes at two
  resting potentials (the calibrated leak, and the leak moved LEVER LSB away from the reversal
  potential by the v_leak cell) give the line through the two; where it reaches zero is the
  reversal potential. A stronger bias brings it closer to the reference.

Feasible targets: the reversal potential lies MIN_DISTANCE..MAX_DISTANCE LSB from the leak, the
excitatory one above the threshold, the inhibitory one below the leak. Nearer, the strongest
bias does not reach it; farther, the two amplitudes differ too little for a 3 LSB reading.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from calib.algorithms import NoiseRobustBinarySearch
from calib.core.plans import CalibrationContext, Plan, QuantitySpec, register_plan
from calib.core.routine import ParameterRange, Routine
from calib.core.targets import NeuronTarget
from calib.routines.nominal import per_neuron
from calib.routines.synapse_weight import read_time_groups, response_peak
from calib.routines.synaptic_input import input_switches, train_response
from device_model.protocol import CAPMEM_MAX, N_NEURONS, Device
from device_model.stimuli import MAX_SYNAPTIC_WEIGHT, SynapticEvents
from observables.cadc import cadc_mean, timed_group_means, unclipped

NOMINAL_LSB_VOLTS = 4.224e-3
"""Volts per CADC LSB of a calibrated CADC (its 20..220 range over CapMem codes 70..550)."""
LEAK_LSB_PER_CODE = 1.76e-3 / NOMINAL_LSB_VOLTS
"""Resting potential (LSB) per v_leak code of a nominal neuron: how far to move the leak."""
NOMINAL_SLOPE_PER_CODE = 0.02
"""Relative change of the input's strength per volt of membrane, per COBA bias code (design
figure): the reversal potential lies 1 / (slope * code) volts from the reference."""
BIAS_RANGE = ParameterRange(20, CAPMEM_MAX)
"""COBA bias codes searched: below 20 the reversal potential lies volts away (no COBA to
speak of) and its reading is noise."""

LEVER = 40.0
"""LSB the second resting potential lies from the leak, away from the reversal potential: the
lever of the extrapolation (its error grows as (distance / lever))."""
LOWEST_REST, HIGHEST_REST = 12.0, 180.0
"""The moved resting potential stays inside this part of the CADC's range."""
AIMED_PSP = 50.0
"""Height (LSB) the larger of the two PSPs is sized for: far above the read noise, and inside
the CADC's linear range from either resting potential."""
MAX_VOLLEY_EVENTS = 40
TYPICAL_PSP_AMPLITUDE = 20.0
"""PSP amplitude (LSB) of the gain train assumed where no goal says it (a recalibration of the
reversal potential alone): about the chip median at the default gm bias."""
VOLLEY_TIME = 2e-6
"""The volley (events at one moment: one PSP) arrives this long after the run starts."""
PSP_SAMPLES = 1000
BASELINE_SAMPLES = 1000
"""Reads per potential: an amplitude to about 0.045 LSB, a reversal potential to about 1 LSB
at MAX_DISTANCE (the reads cost little beside the leak's CapMem settling)."""
FAR_AWAY = 1000.0
"""Reading (LSB from the leak) of an input whose two amplitudes do not fall towards a reversal
potential: none within reach (the search then strengthens the bias)."""
MIN_DISTANCE = 20.0
MAX_DISTANCE = 120.0
"""Distance (LSB) of a reversal potential target from the leak target."""


def _kind(inhibitory: bool) -> str:
    return "inh" if inhibitory else "exc"


def reference_cell(inhibitory: bool) -> str:
    return f"v_syn_{_kind(inhibitory)}_coba_reference"


def bias_cell(inhibitory: bool) -> str:
    return f"i_bias_syn_{_kind(inhibitory)}_coba"


def nominal_bias(reversal: ArrayLike, leak: ArrayLike) -> np.ndarray:
    """COBA bias codes that put a nominal neuron's reversal potential at `reversal` with its
    reference at `leak` (both LSB)."""
    distance = np.abs(per_neuron(reversal) - per_neuron(leak)) * NOMINAL_LSB_VOLTS
    return BIAS_RANGE.clip(1.0 / (NOMINAL_SLOPE_PER_CODE * np.maximum(distance, 1e-3)))


def volley_events(
    psp_amplitude: ArrayLike, tau_mem: ArrayLike, tau_syn: ArrayLike, far: float
) -> int:
    """Events of weight 63 in the volley so that the larger PSP is about AIMED_PSP: from the
    calibrated amplitude of the gain train (at the leak) and the nominal shapes, `far` the
    ratio of the larger PSP to the one at the leak."""
    membrane, synapse = float(np.median(tau_mem)), float(np.median(tau_syn))
    known = np.asarray(psp_amplitude, dtype=float)
    known = known[np.isfinite(known)]
    amplitude = float(np.median(known)) if known.size else TYPICAL_PSP_AMPLITUDE
    single = amplitude * response_peak(membrane, synapse)[1] / train_response(membrane, synapse)
    wanted = AIMED_PSP / max(float(single) * far, 1e-3)
    return int(np.clip(np.rint(wanted), 1, MAX_VOLLEY_EVENTS))


class _Volley:
    """One PSP of a volley, read at each neuron's nominal peak (groups share a read)."""

    def __init__(self, inhibitory: bool, events: int, tau_mem: ArrayLike, tau_syn: ArrayLike):
        self.stimulus = SynapticEvents(
            (VOLLEY_TIME,) * events, weight=MAX_SYNAPTIC_WEIGHT, inhibitory=inhibitory
        )
        self.read_times, self.groups = read_time_groups(tau_mem, tau_syn)

    def measure(self, device: Device) -> tuple[np.ndarray, np.ndarray]:
        """(resting potential, PSP amplitude) per neuron, LSB."""
        baseline = cadc_mean(device, BASELINE_SAMPLES)
        peak = timed_group_means(
            device, PSP_SAMPLES, self.stimulus, self.read_times, self.groups, VOLLEY_TIME
        )
        return baseline, np.where(unclipped(baseline, peak), np.abs(peak - baseline), np.nan)


class _CobaRoutine(Routine):
    def __init__(
        self,
        inhibitory: bool,
        reversal: ArrayLike,
        leak: ArrayLike,
        psp_amplitude: ArrayLike,
        tau_mem: ArrayLike,
        tau_syn: ArrayLike,
    ) -> None:
        self.inhibitory = inhibitory
        self.reversal = per_neuron(reversal)
        self.leak = per_neuron(leak)
        distance = float(np.median(np.abs(self.reversal - self.leak)))
        far = (distance + LEVER) / max(distance, 1.0)
        self.volley = _Volley(
            inhibitory, volley_events(psp_amplitude, tau_mem, tau_syn, far), tau_mem, tau_syn
        )
        self.start_bias = nominal_bias(self.reversal, self.leak)

    def measurement_settings(self, device: Device) -> dict[str, ArrayLike]:
        return {"threshold_enable": 0, "reset_hold": 0, **input_switches(self.inhibitory)}

    def _write_twice(self, device: Device, settings: dict[str, ArrayLike]) -> None:
        # A resting potential read twice (baseline, then peak) must not move between the reads:
        # a second wait leaves a CapMem step settled to exp(-10).
        device.write(settings)
        device.write(settings)


class CobaReference(_CobaRoutine):
    """PSP amplitude at rest with COBA on over the same with the COBA bias at 0: 1 where the
    reference (as the OTA sees it) sits at the resting potential. A higher reference raises the
    excitatory input's strength at rest and lowers the inhibitory one's."""

    def __init__(self, inhibitory: bool, *args: ArrayLike) -> None:
        super().__init__(inhibitory, *args)
        self.name = f"coba_reference_{_kind(inhibitory)}"
        self.parameter = reference_cell(inhibitory)
        self.inverted = inhibitory
        self.current_based: np.ndarray | None = None

    def measurement_settings(self, device: Device) -> dict[str, ArrayLike]:
        return {**super().measurement_settings(device), bias_cell(self.inhibitory): 0}

    def prelude(self, device: Device) -> None:
        super().prelude(device)
        self.current_based = self.volley.measure(device)[1]
        device.write({bias_cell(self.inhibitory): self.start_bias})

    def measure(self, device: Device) -> np.ndarray:
        assert self.current_based is not None
        amplitude = self.volley.measure(device)[1]
        usable = self.current_based > 0
        return np.where(usable, amplitude / np.where(usable, self.current_based, 1.0), np.nan)


class ReversalPotential(_CobaRoutine):
    """Effective reversal potential (LSB): where the line through the PSP amplitudes at the
    leak and at a resting potential LEVER LSB farther from the reversal reaches zero. A higher
    COBA bias brings it closer to the reference (lower for excitatory input)."""

    parameter_range = BIAS_RANGE

    def __init__(self, inhibitory: bool, *args: ArrayLike) -> None:
        super().__init__(inhibitory, *args)
        self.name = f"e_coba_{_kind(inhibitory)}"
        self.parameter = bias_cell(inhibitory)
        self.inverted = not inhibitory
        self.rest_codes: np.ndarray | None = None
        self.moved_codes: np.ndarray | None = None

    def prelude(self, device: Device) -> None:
        super().prelude(device)
        self.rest_codes = device.read_settings(["v_leak"])["v_leak"]
        away = 1.0 if self.inhibitory else -1.0
        moved = np.clip(self.leak + away * LEVER, LOWEST_REST, HIGHEST_REST)
        shift = (moved - self.leak) / LEAK_LSB_PER_CODE
        self.moved_codes = np.clip(np.rint(self.rest_codes + shift), 0, CAPMEM_MAX).astype(np.int64)

    def measure(self, device: Device) -> np.ndarray:
        assert self.rest_codes is not None and self.moved_codes is not None
        self._write_twice(device, {"v_leak": self.moved_codes})
        moved_rest, moved_psp = self.volley.measure(device)
        self._write_twice(device, {"v_leak": self.rest_codes})
        rest, psp = self.volley.measure(device)
        return extrapolated_zero(rest, psp, moved_rest, moved_psp, self.inhibitory)


def extrapolated_zero(
    rest: np.ndarray,
    psp: np.ndarray,
    moved_rest: np.ndarray,
    moved_psp: np.ndarray,
    inhibitory: bool,
) -> np.ndarray:
    """Where the line through (rest, psp) and (moved_rest, moved_psp) reaches amplitude 0: the
    reversal potential. The moved point lies farther from it, so its PSP is the larger; where
    it is not, no reversal potential is within reach and the reading is FAR_AWAY LSB off."""
    grows = moved_psp - psp
    lever = rest - moved_rest
    towards = np.sign(lever) == (-1.0 if inhibitory else 1.0)
    usable = (grows > 0) & towards & np.isfinite(grows)
    with np.errstate(divide="ignore", invalid="ignore"):
        zero = rest + psp * lever / np.where(usable, grows, 1.0)
    far = rest + (-FAR_AWAY if inhibitory else FAR_AWAY)
    zero = np.where(usable, zero, far)
    beyond = np.abs(zero - rest) > FAR_AWAY
    return np.where(beyond, far, zero)


# -- plans ----------------------------------------------------------------------------------

UNIT = "CADC LSB"


def check_coba(target: NeuronTarget) -> None:
    """Reversal potentials that contradict the leak or the threshold: one ValueError naming
    both fields, before any device run. The excitatory one must lie above the threshold (below
    it, excitation could never make the neuron fire), the inhibitory one below the leak, each
    MIN_DISTANCE..MAX_DISTANCE LSB from the leak."""
    leak = per_neuron(target.leak)
    for inhibitory in (False, True):
        name = f"e_coba_{_kind(inhibitory)}"
        asked = getattr(target, name)
        if asked is None:
            continue
        value = per_neuron(asked)
        distance = leak - value if inhibitory else value - leak
        rules = [
            (
                "leak",
                leak,
                (distance < MIN_DISTANCE) | (distance > MAX_DISTANCE),
                f"must lie {MIN_DISTANCE:g}..{MAX_DISTANCE:g} LSB "
                + ("below" if inhibitory else "above")
                + " the leak",
            )
        ]
        if not inhibitory:
            threshold = per_neuron(target.threshold)
            rules.insert(
                0,
                (
                    "threshold",
                    threshold,
                    value <= threshold,
                    "must lie above the threshold (below it, excitation cannot make the neuron "
                    "fire)",
                ),
            )
        for other, other_values, bad, why in rules:
            wrong = np.flatnonzero(bad)
            if wrong.size:
                n = int(wrong[0])
                scalar = np.ndim(asked) == 0 and np.ndim(getattr(target, other)) == 0
                where = "" if scalar else f" (neuron {n}, {wrong.size} neurons in all)"
                raise ValueError(
                    f"{name} = {value[n]:g} LSB and {other} = {other_values[n]:g} LSB{where}: "
                    f"the {'inhibitory' if inhibitory else 'excitatory'} reversal potential {why}"
                )


def _arguments(context: CalibrationContext, inhibitory: bool) -> tuple[np.ndarray, ...]:
    kind = _kind(inhibitory)
    amplitude = context.goals.get(f"psp_amplitude_{kind}")
    if amplitude is None:  # recalibrated alone: the strength step left no goal
        amplitude = np.full(N_NEURONS, np.nan)
    return (
        context.goals[f"e_coba_{kind}"],
        context.goals["leak"],
        amplitude,
        context.goals["tau_mem"],
        context.goals[f"tau_syn_{kind}"],
    )


def _plans(inhibitory: bool, rank: float, display_rank: float) -> tuple[Plan, Plan]:
    kind = _kind(inhibitory)
    word = "inhibitory" if inhibitory else "excitatory"
    name = f"e_coba_{kind}"

    def asked(target: NeuronTarget) -> bool:
        return getattr(target, name) is not None

    reference = Plan(
        name=f"coba_reference_{kind}",
        rank=rank,
        cells=(reference_cell(inhibitory),),
        routine=lambda context: CobaReference(inhibitory, *_arguments(context, inhibitory)),
        goal=lambda context: np.ones(N_NEURONS),
        algorithm=lambda target: NoiseRobustBinarySearch(),
        after=(f"psp_amplitude_{kind}", f"psp_per_weight_{kind}", "leak"),
        applies=asked,
        recalibratable=False,
        extra={"bounds_are_failures": False},  # the reversal potential's judgement covers it
    )
    reversal = Plan(
        name=name,
        rank=rank + 0.05,
        display_rank=display_rank,
        quantities=(
            QuantitySpec(
                name,
                UNIT,
                (-MAX_DISTANCE + 50.0) if inhibitory else 50.0 + MIN_DISTANCE,
                (160.0 - MIN_DISTANCE) if inhibitory else 160.0 + MAX_DISTANCE,
                3.0,
                relative=False,
                default=None,
                unset="current-based",
                description=f"effective reversal potential of the {word} input (COBA): where "
                "its PSP amplitude extrapolates to zero; unset: current-based input",
                long_name=f"{word} reversal potential",
            ),
        ),
        cells=(bias_cell(inhibitory),),
        routine=lambda context: ReversalPotential(inhibitory, *_arguments(context, inhibitory)),
        algorithm=lambda target: NoiseRobustBinarySearch(),
        after=(f"coba_reference_{kind}",),
        applies=asked,
        extra={"check_before_run": check_coba},
    )
    return reference, reversal


# After the LIF parts (the threshold bounds the excitatory target), before the AdEx parts.
COBA_REFERENCE_EXC, E_COBA_EXC = map(register_plan, _plans(False, 12.4, 9.5))
COBA_REFERENCE_INH, E_COBA_INH = map(register_plan, _plans(True, 12.6, 9.6))
