"""Firing rate: the threshold set so that a neuron under its own leak fires at a target rate.

An alternative to a threshold potential (`QuantitySpec.alternative_to`): the leak lies above
the threshold, so the neuron fires regularly without input, at

    rate = 1 / (t_hold + tau_mem * ln((E_l - V_hold) / (E_l - V_th)))

with t_hold the reset pulse plus the refractory time. The rate falls as the threshold rises,
so the threshold's code is searched, the spike counters of all neurons counting in one run.
This is the leak-over-threshold calibration of calix (`calix/spiking/neuron_threshold.py`,
`LeakOverThresholdCalib`), which also counts spikes and moves the threshold.

The rate depends on the leak, the reset, tau_mem and the refractory time, so the step runs
after all of them (after the final leak step, in the configuration the neuron is used in).
Each neuron counts in a window of about TARGET_SPIKES periods of its target rate; neurons whose
targets need different windows are counted in separate runs.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from calib.algorithms import NoiseRobustBinarySearch
from calib.core.plans import Plan, QuantitySpec, register_plan
from calib.core.routine import Routine
from calib.core.targets import NeuronTarget
from device_model.protocol import N_NEURONS, SPIKE_COUNTER_MAX, Device

TARGET_SPIKES = 160
"""Spikes a neuron at its target rate fires in its counting window: a count resolves the rate
to well below 1 % (the window opens at a random phase, so the mean count is unbiased), and a
rate up to 1.1 .. 2.2 times the target (the window is rounded) fits the 8-bit counter."""
WINDOW_STEP = 2.0
"""Windows are rounded to powers of this factor, so that few runs serve every target."""
COUNT_RUNS = 4
"""Counting runs per measurement: the comparator's run-to-run jitter moves a run's rate by
about 1 % (more on a steep part of the curve); the mean of four runs halves it."""
OVERFLOWED = SPIKE_COUNTER_MAX + 1
"""Spikes reported for a window whose counter overflowed: a lower bound of the rate, far
enough above the target to steer a search and to fail a verification."""


def counting_windows(target: ArrayLike) -> np.ndarray:
    """Per neuron, a window (s) of about TARGET_SPIKES periods of its target rate (Hz)."""
    wanted = TARGET_SPIKES / np.broadcast_to(np.asarray(target, dtype=float), (N_NEURONS,))
    return WINDOW_STEP ** np.round(np.log(wanted) / np.log(WINDOW_STEP))


class FiringRate(Routine):
    """Regular firing rate of every neuron under its own leak, set by v_threshold."""

    name = "firing_rate"
    parameter = "v_threshold"
    inverted = True

    def __init__(self, target: ArrayLike, runs: int = COUNT_RUNS) -> None:
        self.target = np.broadcast_to(np.asarray(target, dtype=float), (N_NEURONS,)).copy()
        self.windows = counting_windows(self.target)
        self.runs = runs

    def measurement_settings(self, device: Device) -> dict[str, ArrayLike]:
        return {"threshold_enable": 1, "reset_hold": 0}

    def measure(self, device: Device) -> np.ndarray:
        """Spikes per second of every neuron: one set of runs per distinct window."""
        rate = np.empty(N_NEURONS)
        for window in np.unique(self.windows):
            members = self.windows == window
            readouts = [device.count_spikes(float(window)) for _ in range(self.runs)]
            counts = np.mean([r.counts for r in readouts], axis=0)
            overflow = np.any([r.overflow for r in readouts], axis=0)
            rate[members] = (np.where(overflow, OVERFLOWED, counts) / window)[members]
        return rate


def check_rate_target(target: NeuronTarget) -> None:
    """A rate the neuron cannot fire at whatever its threshold: one ValueError naming the
    fields. The leak must lie above the reset (otherwise the membrane never rises from the
    reset towards a threshold), and the period of the rate must be longer than the
    refractory time (the neuron is held that long after every spike)."""
    rate = np.broadcast_to(np.asarray(target.firing_rate, float), (N_NEURONS,))
    leak = np.broadcast_to(np.asarray(target.leak, float), (N_NEURONS,))
    reset = np.broadcast_to(np.asarray(target.reset, float), (N_NEURONS,))
    refractory = np.broadcast_to(np.asarray(target.refractory_time, float), (N_NEURONS,))

    def where(bad: np.ndarray, *fields: str) -> str:
        scalar = all(np.ndim(getattr(target, name)) == 0 for name in fields)
        return "" if scalar else f" (neuron {int(bad[0])}, {bad.size} neurons in all)"

    bad = np.flatnonzero(leak <= reset)
    if bad.size:
        n = int(bad[0])
        raise ValueError(
            f"firing_rate needs the leak above the reset: leak = {leak[n]:g} is not above "
            f"reset = {reset[n]:g}{where(bad, 'leak', 'reset')}"
        )
    bad = np.flatnonzero(1.0 / rate <= refractory)
    if bad.size:
        n = int(bad[0])
        raise ValueError(
            f"firing_rate = {rate[n] * 1e-3:g} kHz asks for a period of "
            f"{1e6 / rate[n]:.3g} µs, not longer than refractory_time = "
            f"{refractory[n] * 1e6:g} µs{where(bad, 'firing_rate', 'refractory_time')}"
        )


def check_rate_is_lif(target: NeuronTarget) -> None:
    """A rate is calibrated on the LIF neuron: the AdEx parts place themselves against a
    threshold potential, so a target with them sets the threshold instead."""
    if target.adex:
        raise ValueError(
            f"firing_rate and {target.adex[0]}: the AdEx parts need a threshold potential; "
            "set threshold instead of firing_rate"
        )


FIRING_RATE = register_plan(
    Plan(
        name="firing_rate",
        rank=101,
        display_rank=2.25,
        quantities=(
            QuantitySpec(
                "firing_rate",
                "Hz",
                10e3,
                200e3,
                0.05,
                relative=True,
                default=None,
                description="regular firing rate under the neuron's own leak (leak above the "
                "threshold), set by the threshold: instead of a threshold potential",
                long_name="firing rate",
                alternative_to=("threshold",),
            ),
        ),
        cells=("v_threshold",),
        routine=lambda context: FiringRate(context.goals["firing_rate"]),
        algorithm=lambda target: NoiseRobustBinarySearch(),
        after=("leak_final", "reset", "tau_mem", "refractory_time", "holdoff_time"),
        applies=lambda target: target.firing_rate is not None,
        # a neuron that never fires counts nothing at every code: its search ends anywhere
        extra={
            "check_before_run": check_rate_target,
            "check_target": check_rate_is_lif,
            "flat_out_of_range": True,
        },
    )
)
