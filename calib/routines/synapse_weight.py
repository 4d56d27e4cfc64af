"""Synaptic input strength through the synapse array: the PSP per weight unit (spiking mode).

The synaptic gain routine (`synaptic_input.py`) defines the strength by a train of events sent
to every neuron at one weight. Here the events travel the way an experiment's spikes do: as
addressed events through synapse rows (`RowEvents`), each synapse passing its own weight. The
quantity is the PSP height per weight unit, in CADC LSB: a volley through `rows` rows whose
synapses all hold `PSP_WEIGHT`, read by the CADC at the PSP's nominal peak, divided by the
weight units it carried. Averaging over the rows leaves the per-synapse current mismatch (a
few %) at a fraction of it.

How it is calibrated: the input's transconductance bias sets both this and the train's PSP,
in proportion (both are one current jump integrated by the same membrane), so the step
measures both at one bias and hands the synaptic gain search a per-neuron train goal that
yields the asked PSP per weight. The quantity is then verified and judged on its own
measurement through the array.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from calib.core.plans import CalibrationContext, Plan, QuantitySpec, register_plan
from calib.core.routine import Routine
from calib.core.targets import NeuronTarget
from calib.routines.nominal import per_neuron
from calib.routines.synaptic_input import (
    FEASIBLE_SPREAD,
    NOMINAL_GM_EXPONENT,
    NOMINAL_GM_REFERENCE,
    NOMINAL_PSP_PER_SECOND,
    SynapticGain,
    input_switches,
)
from device_model.protocol import (
    CAPMEM_MAX,
    N_DRIVERS,
    N_NEURONS,
    ROW_EXCITATORY,
    ROW_INHIBITORY,
    ROWS_PER_DRIVER,
    ROWS_PER_HEMISPHERE,
    Device,
)
from device_model.stimuli import MAX_SYNAPTIC_WEIGHT, RowEvents
from observables.cadc import cadc_mean, timed_group_means, unclipped

PSP_WEIGHT = 32
"""Weight of every synapse of the measured rows (the middle of the 6-bit range 0..63)."""
AIMED_HEIGHT = 30.0
"""PSP height (CADC LSB) the volley is sized for at the target: well above the read noise,
and inside the reliable CADC range from a leak near 80 in either direction."""
MAX_ROWS = 64
"""At most this many rows per hemisphere carry the volley."""
VOLLEY_TIME = 2e-6
"""The volley arrives this long after the run starts (the membrane is at rest by then)."""
PSP_SAMPLES = 40
BASELINE_SAMPLES = 100
MAX_READ_GROUPS = 8
"""At most this many timed reads per measurement; finer peak time differences share one."""


def _prefix(inhibitory: bool) -> str:
    return "syn_inh" if inhibitory else "syn_exc"


def response_peak(tau_mem: ArrayLike, tau_syn: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """(peak time, peak) of the membrane's response tau_m tau_s / (tau_m - tau_s) (exp(-s/tau_m)
    - exp(-s/tau_s)) to one event of unit charge rate; tau / e at s = tau for equal constants."""
    m, s = np.broadcast_arrays(np.asarray(tau_mem, float), np.asarray(tau_syn, float))
    near = np.abs(m - s) < 1e-6 * m
    m_safe, s_safe = np.where(near, 1.0, m), np.where(near, 2.0, s)
    time = m_safe * s_safe / (m_safe - s_safe) * np.log(m_safe / s_safe)
    peak = m_safe * s_safe / (m_safe - s_safe) * (np.exp(-time / m_safe) - np.exp(-time / s_safe))
    mean = 0.5 * (m + s)
    return np.where(near, mean, time), np.where(near, mean / np.e, peak)


def nominal_per_weight(tau_mem: ArrayLike, tau_syn: ArrayLike, gm_code: float) -> np.ndarray:
    """PSP height per weight unit (CADC LSB) of a nominal neuron at `gm_code`, from the
    synaptic gain's design figures (a train of weight-63 events)."""
    strength = (gm_code / NOMINAL_GM_REFERENCE) ** NOMINAL_GM_EXPONENT
    return (
        NOMINAL_PSP_PER_SECOND / MAX_SYNAPTIC_WEIGHT * response_peak(tau_mem, tau_syn)[1] * strength
    )


def read_time_groups(tau_mem: ArrayLike, tau_syn: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """(read times after the volley, group per neuron): each neuron's nominal peak time,
    grouped into at most MAX_READ_GROUPS reads."""
    times = np.broadcast_to(response_peak(tau_mem, tau_syn)[0], (N_NEURONS,))
    unique, inverse = np.unique(times, return_inverse=True)
    if unique.size > MAX_READ_GROUPS:
        edges = np.quantile(unique, np.linspace(0, 1, MAX_READ_GROUPS + 1)[1:-1])
        bins = np.digitize(unique, edges)
        labels = np.unique(bins)
        unique = np.array([np.median(unique[bins == b]) for b in labels])
        inverse = np.searchsorted(labels, bins)[inverse]
    return unique, np.asarray(inverse).reshape(-1)


def volley_rows(target: ArrayLike) -> int:
    """Rows per hemisphere that carry the volley: enough weight units for AIMED_HEIGHT at the
    median target, at most MAX_ROWS, whole drivers."""
    units = AIMED_HEIGHT / float(np.nanmedian(per_neuron(target)))
    rows = int(np.clip(np.ceil(units / PSP_WEIGHT), ROWS_PER_DRIVER, MAX_ROWS))
    return rows + rows % ROWS_PER_DRIVER


class RowPsp(Routine):
    """PSP height per weight unit of a volley through synapse rows, set by the input's gm bias.

    The prelude writes the measured rows (weight PSP_WEIGHT, address 0, the input's row mode,
    their drivers enabled) and the rest of the array to weight 0; the postlude restores the
    array as it was.
    """

    def __init__(
        self, target: ArrayLike, inhibitory: bool, tau_mem: ArrayLike, tau_syn: ArrayLike
    ) -> None:
        self.inhibitory = inhibitory
        self.name = f"psp_per_weight_{'inh' if inhibitory else 'exc'}"
        self.parameter = f"i_bias_{_prefix(inhibitory)}_gm"
        self.rows = volley_rows(target)
        self.read_times, self.groups = read_time_groups(tau_mem, tau_syn)
        both = np.arange(self.rows)
        self.stimulus = RowEvents.volley(
            VOLLEY_TIME, np.concatenate([both, ROWS_PER_HEMISPHERE + both])
        )

    @property
    def weight_units(self) -> int:
        return self.rows * PSP_WEIGHT

    def measurement_settings(self, device: Device) -> dict[str, ArrayLike]:
        weights = np.zeros((ROWS_PER_HEMISPHERE, N_NEURONS), dtype=np.int64)
        weights[: self.rows] = PSP_WEIGHT
        mode = np.tile(np.arange(ROWS_PER_HEMISPHERE) < self.rows, 2)
        kind = ROW_INHIBITORY if self.inhibitory else ROW_EXCITATORY
        drivers = np.tile(np.arange(N_DRIVERS // 2) < self.rows // ROWS_PER_DRIVER, 2)
        return {
            "threshold_enable": 0,
            "reset_hold": 0,
            **input_switches(self.inhibitory),
            "synapse_weight": weights,
            "synapse_address": 0,
            "row_mode": np.where(mode, kind, 0),
            "driver_enable": drivers.astype(np.int64),
        }

    def measure(self, device: Device) -> np.ndarray:
        baseline = cadc_mean(device, BASELINE_SAMPLES)
        peak = timed_group_means(
            device, PSP_SAMPLES, self.stimulus, self.read_times, self.groups, VOLLEY_TIME
        )
        amplitude = np.abs(peak - baseline) / self.weight_units
        return np.where(unclipped(baseline, peak), amplitude, np.nan)


# -- plans ----------------------------------------------------------------------------------


def _names(inhibitory: bool) -> tuple[str, str, str]:
    kind = "inh" if inhibitory else "exc"
    return kind, f"psp_per_weight_{kind}", f"psp_amplitude_{kind}"


def check_per_weight(target: NeuronTarget) -> None:
    """ValueError naming the fields when a PSP per weight is asked together with the same
    input's PSP amplitude (both set one bias), or beyond what the neurons reach with the
    target's time constants (before any device run)."""
    for inhibitory in (False, True):
        kind, name, amplitude = _names(inhibitory)
        asked = getattr(target, name)
        if asked is None:
            continue
        if getattr(target, amplitude) is not None:
            raise ValueError(
                f"{name} and {amplitude} both set the {kind} input's strength; give one of them"
            )
        largest = (
            nominal_per_weight(target.tau_mem, getattr(target, f"tau_syn_{kind}"), CAPMEM_MAX)
            * FEASIBLE_SPREAD
        )
        asked_array = np.broadcast_to(np.asarray(asked, float), (N_NEURONS,))
        largest = np.broadcast_to(largest, (N_NEURONS,))
        bad = np.flatnonzero(asked_array > largest)
        if bad.size:
            n = int(bad[0])
            where = "" if np.ndim(asked) == 0 else f" (neuron {n}, {bad.size} neurons in all)"
            raise ValueError(
                f"{name} = {asked_array[n]:g} LSB per weight unit{where} is beyond "
                f"what the time constants can carry: reachable up to "
                f"{largest[n]:.3g}; ask for less or slower time constants"
            )


def _routine(context: CalibrationContext, inhibitory: bool) -> RowPsp:
    kind, name, _ = _names(inhibitory)
    return RowPsp(
        context.goals[name], inhibitory, context.goals["tau_mem"], context.goals[f"tau_syn_{kind}"]
    )


def _plan(inhibitory: bool, rank: float) -> Plan:
    kind, name, amplitude = _names(inhibitory)
    word = "inhibitory" if inhibitory else "excitatory"

    def hand_over(context: CalibrationContext, plan: Plan) -> None:
        """Measure the PSP per weight and the gain train's PSP at one bias; give the gain
        search the train goal that carries the asked PSP per weight on every neuron."""
        goal = context.goals[name]
        routine = _routine(context, inhibitory)
        train = SynapticGain(
            np.nan, inhibitory, context.goals["tau_mem"], context.goals[f"tau_syn_{kind}"]
        )
        context.write({routine.parameter: context.target.synaptic_gm_bias})
        per_weight = context.measure(routine)
        train_height = context.measure(train)
        ratio = np.where(
            per_weight > 0, train_height / np.where(per_weight > 0, per_weight, 1), np.nan
        )
        # A neuron without a usable reading gets the chip's ratio; its verification shows it.
        ratio = np.where(np.isfinite(ratio), ratio, np.nanmedian(ratio))
        context.goals[amplitude] = goal * ratio
        context.models[name] = {"train_per_weight": ratio, "at_gm_bias": per_weight}
        context.models.setdefault(amplitude, {})["target"] = goal * ratio

    return Plan(
        name=name,
        rank=rank,
        quantities=(
            QuantitySpec(
                name,
                "CADC LSB/weight",
                0.005,
                0.5,
                0.10,
                relative=True,
                default=None,
                description=f"{word} PSP height per weight unit of events sent through synapse "
                f"rows (spiking mode); sets the {word} PSP amplitude, not set with it",
                long_name=f"{word} PSP per synapse weight",
            ),
        ),
        cells=(f"i_bias_{_prefix(inhibitory)}_gm",),
        routine=lambda context: _routine(context, inhibitory),
        action=hand_over,
        after=(f"reference_{kind}",),
        disturbs=(amplitude,),
        applies=lambda target: getattr(target, name) is not None,
        extra={"check_before_run": check_per_weight},
    )


PSP_PER_WEIGHT_EXC = register_plan(_plan(False, 7))
PSP_PER_WEIGHT_INH = register_plan(_plan(True, 8))
