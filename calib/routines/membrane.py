"""Membrane time constant: the decay back to the leak potential after a reset release, recorded
with the MADC and fitted with an exponential; the leak bias sets it.

The leak divide/multiply switches are chosen per neuron from the target so that the bias code
lands mid-range, where its resolution is best.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from calib.algorithms.fitting import FittingSearch
from calib.core.plans import CalibrationContext, Plan, QuantitySpec, register_plan
from calib.core.routine import Routine
from calib.routines.nominal import (
    DIVIDE_FACTOR,
    leak_bias_code,
    leak_switches,
    per_neuron,
    switch_strength,
    switches_after_probe,
)
from device_model.protocol import CAPMEM_MAX, MADC_INVALID_TIME, MADC_SAMPLE_RATE, N_NEURONS, Device
from device_model.stimuli import ResetRelease
from observables import decay_time_constants
from observables.cadc_decay import cadc_decay_time_constants
from observables.traces import bin_trace

RELEASE_TIME = MADC_INVALID_TIME + 2e-6
RECORDED_TIME_CONSTANTS = 5.0
"""Record this many target time constants after the release."""
BIN_FRACTION = 0.1
"""Fitted points are MADC means over this fraction of the shortest expected time constant."""
SHORTEST_FRACTION = 0.25
"""Time constants down to this fraction of the target are fitted without loss."""
RESET_BELOW_LEAK = 150
"""Reset code this far below the leak code, so the decay spans ~60 CADC LSB."""
LOWEST_DECAY_RESET = 460
"""Lowest reset code a decay starts from: about 0.1 V on a nominal neuron (code x 1.76 mV less
the 0.7 V follower drop), clear of the membrane's lower rail. Below a low leak there is no room,
and the decay starts this far above it instead (it runs downwards)."""


def decay_reset(v_leak: ArrayLike) -> np.ndarray:
    """Reset codes a decay back to the leak is recorded from: RESET_BELOW_LEAK below the leak
    code, or as far above it where that would reach the lower rail."""
    v_leak = np.asarray(v_leak, dtype=np.int64)
    below = v_leak - RESET_BELOW_LEAK
    return np.where(
        below >= LOWEST_DECAY_RESET, below, np.minimum(v_leak + RESET_BELOW_LEAK, CAPMEM_MAX)
    )


PROBE_SAMPLES = 64
"""CADC repetitions per read of the switch probe: about 1 % per neuron, ample for a choice
between switch settings."""
PROBE_MARGIN = 0.05
"""A neuron within this fraction of its target at the strongest bias also takes the stronger
switches: its code would sit at the top of the range, where the probe's error could leave it
just short."""
PROBE_FASTEST = 0.2
"""The probe reads decays down to this fraction of the target (faster ones need no switch)."""
SWEEP_SAMPLES = 128
"""CADC repetitions per read of a sweep's decays: about 0.4 % per neuron (median), where the
sweep only places the model."""
SWEEP_FASTEST, SWEEP_SLOWEST = 0.4, 2.5
"""A sweep's CADC reads cover time constants from this fraction to this multiple of the
target: the sweep codes' spread and the neurons' gains (tau_syn's sweep reads the same span)."""


def bin_factor(shortest_time_constant: float) -> int:
    """MADC samples averaged per fitted point: bins of a tenth of the shortest constant."""
    return max(1, int(BIN_FRACTION * shortest_time_constant * MADC_SAMPLE_RATE))


def record_decays(
    device: Device, duration: float, shortest: float, neurons: np.ndarray | None = None
) -> np.ndarray:
    """Fitted decay time constant of every neuron (NaN where the fit failed, and for those
    not among `neurons` where given: only they are recorded); `shortest` is the shortest time
    constant expected, which sets how finely the trace is fitted."""
    recorded = np.arange(device.n_neurons) if neurons is None else np.asarray(neurons)
    tau = np.full(device.n_neurons, np.nan)
    if recorded.size == 0:
        return tau
    stimulus = ResetRelease(release_time=RELEASE_TIME)
    trace = device.record_madc(recorded, RELEASE_TIME + duration, stimulus)
    binned = bin_trace(trace, bin_factor(shortest))
    tau[recorded] = decay_time_constants(binned, start_time=RELEASE_TIME)["tau"]
    return tau


def probe_decays(device: Device, target: np.ndarray) -> np.ndarray:
    """A coarse decay time constant of every neuron read with the CADC in a few runs (an MADC
    recording of all neurons costs 256 runs), for decays around `target` and faster."""
    expected = np.concatenate([PROBE_FASTEST * np.atleast_1d(target), np.atleast_1d(target)])
    return cadc_decay_time_constants(device, expected, PROBE_SAMPLES, RELEASE_TIME)


CADC_PRECISE_UP_TO = 1.5e-6
"""Targets up to this are read with the CADC's decays for the search and the verdict too: at
0.5 / 1 us about 0.6 / 0.5 % per neuron (harder chip), where the MADC's fit, with 15 to 30
samples a time constant, gives 2.5 / 1.5 %, at a quarter of its hardware time. From about 2 us
on the MADC is as fine or finer (its fit gains samples, the CADC's ladder of reads does not)."""
PRECISE_CADC_SAMPLES = 512
"""CADC repetitions per read of a precise decay reading."""
PRECISE_SPAN = (0.8, 1.25)
"""A precise reading's ladder covers decays from this fraction to this multiple of the target:
it is taken near the target (the sweep placed the model)."""
PRECISE_CONSISTENCY = 0.05
"""A precise CADC reading whose fit moves by more than this fraction without its earliest
read (a decay starting at the membrane's rail: one neuron read 0.99 us for a truth of
0.83 us) is recorded on the MADC instead."""
CADC_USABLE_FRACTION = 0.5
"""At least this fraction of neurons must yield a CADC decay for it to stand; fewer (an
uncalibrated CADC, potentials outside its range) fall back to the MADC recording."""


def cadc_decays_usable(values: np.ndarray) -> bool:
    """Whether a CADC decay reading served (see CADC_USABLE_FRACTION)."""
    return bool(np.mean(np.isfinite(values)) >= CADC_USABLE_FRACTION)


class MembraneTimeConstant(Routine):
    """tau_mem = C / g_leak, set by i_bias_leak (higher bias: faster)."""

    name = "tau_mem"
    parameter = "i_bias_leak"
    inverted = True
    kept_settings = ("leak_divide", "leak_multiply", "membrane_capacitance")
    """The switches belong to the calibrated configuration."""

    def __init__(
        self, target: ArrayLike, membrane_capacitance: int, *, choose_switches: bool = True
    ) -> None:
        """With `choose_switches` False the routine only measures, with the switches as set."""
        self.target = per_neuron(target)
        self.membrane_capacitance = membrane_capacitance
        self.choose_switches = choose_switches

    HINT_SPREAD = (1.6, 1.0, 0.6)
    """Sweep codes as factors of the nominal code: they bracket the per-neuron gain spread
    (lognormal, sigma ~0.25). In order from the fast end (next to the prelude's last code),
    so that each write jumps little: a large jump leaves a CapMem settling error in the read
    after it."""

    def sweep_hint(self, target: ArrayLike, device: Device | None = None) -> np.ndarray:
        """Leak bias codes worth sweeping for `target`, shape (len(HINT_SPREAD), N_NEURONS): a
        nominal neuron's code for it, spread. The switches and capacitance are read from
        `device` where given (as the prelude left them), else taken as the target sets them."""
        target = per_neuron(target)
        if device is not None:
            settings = device.read_settings(
                ["leak_divide", "leak_multiply", "membrane_capacitance"]
            )
        else:
            settings = {
                **leak_switches(target),
                "membrane_capacitance": np.full(N_NEURONS, self.membrane_capacitance),
            }
        code = np.minimum(
            leak_bias_code(
                target,
                settings["membrane_capacitance"],
                settings["leak_divide"],
                settings["leak_multiply"],
            ),
            1e6,
        )
        if self.probed_code is not None:
            # Where the probe puts a neuron outside what the spread brackets, it is trusted.
            ratio = self.probed_code / code
            outside = np.isfinite(ratio) & (
                (ratio < min(self.HINT_SPREAD)) | (ratio > max(self.HINT_SPREAD))
            )
            code = np.where(outside, self.probed_code, code)
        return self.parameter_range.clip(np.outer(self.HINT_SPREAD, code))

    def measurement_settings(self, device: Device) -> dict[str, ArrayLike]:
        v_leak = device.read_settings(["v_leak"])["v_leak"]
        settings: dict[str, ArrayLike] = {
            "threshold_enable": 0,
            "reset_hold": 0,
            "v_reset": decay_reset(v_leak),
        }
        if self.choose_switches:
            settings["membrane_capacitance"] = self.membrane_capacitance
            settings.update(leak_switches(self.target))
        return settings

    def prelude(self, device: Device) -> None:
        """Nominal switches from the target, then one probe at the strongest leak bias: a neuron
        that stays slower than its target there moves to the next stronger switch setting."""
        super().prelude(device)
        if (self.target <= CADC_PRECISE_UP_TO).any():
            # The CADC reads each time of its ladder in other runs: a reset still settling
            # from the prelude's step would change the decay's start from read to read.
            device.write(self.measurement_settings(device))
        if not self.choose_switches:
            return
        device.write({self.parameter: self.parameter_range.high})
        probed = probe_decays(device, self.target)
        if not cadc_decays_usable(probed):
            probed = self.measure(device)
        chosen = switches_after_probe(self.target, probed, PROBE_MARGIN)
        device.write(chosen)
        steps = switch_strength(chosen) - switch_strength(leak_switches(self.target))
        # The probe's reading at the top code, carried over to the chosen switches, places a
        # neuron far from the nominal (a gross gain defect) where its code must be.
        fastest = probed * DIVIDE_FACTOR**steps
        with np.errstate(invalid="ignore", divide="ignore"):
            self.probed_code = self.parameter_range.high * fastest / self.target

    probed_code: np.ndarray | None = None
    """Per neuron, the code the prelude's probe points to (NaN where it read nothing)."""

    def measure(self, device: Device) -> np.ndarray:
        return self.measure_neurons(device, np.arange(device.n_neurons))

    def measure_neurons(self, device: Device, neurons: np.ndarray) -> np.ndarray:
        """The decays of `neurons` (NaN for the others): read with the CADC where the target
        is short (`CADC_PRECISE_UP_TO`), recorded with the MADC elsewhere and wherever the
        CADC read nothing."""
        neurons = np.asarray(neurons, dtype=np.int64)
        tau = np.full(device.n_neurons, np.nan)
        short = neurons[self.target[neurons] <= CADC_PRECISE_UP_TO]
        if short.size:
            expected = np.concatenate(
                [PRECISE_SPAN[0] * self.target[short], PRECISE_SPAN[1] * self.target[short]]
            )
            decays = cadc_decay_time_constants(
                device, expected, PRECISE_CADC_SAMPLES, RELEASE_TIME, PRECISE_CONSISTENCY
            )
            tau[short] = decays[short]
        recorded = neurons[np.isnan(tau[neurons])]
        if recorded.size:
            # A search passes through codes far faster than the target: fit finely enough.
            shortest = SHORTEST_FRACTION * float(self.target[recorded].min())
            duration = RECORDED_TIME_CONSTANTS * float(self.target[recorded].max())
            tau[recorded] = record_decays(device, duration, shortest, recorded)[recorded]
        return tau

    def measure_coarse(self, device: Device) -> np.ndarray:
        """The decays read with the CADC (tens of ms where an MADC recording of all neurons
        takes about 0.27 s), for a sweep that only places the model; the MADC recording where
        the CADC reads too few neurons."""
        expected = np.concatenate([SWEEP_FASTEST * self.target, SWEEP_SLOWEST * self.target])
        decays = cadc_decay_time_constants(device, expected, SWEEP_SAMPLES, RELEASE_TIME)
        return decays if cadc_decays_usable(decays) else self.measure(device)


# -- plan -----------------------------------------------------------------------------------

TIME_CONSTANT_REFINEMENTS = 3
"""Fitting search's local refinements of tau_mem after its coarse (CADC) sweep: four MADC
recordings near the target in all, where a binary search takes ten (bench/calibrate_lif.py)."""
TIME_CONSTANT_FOLLOW_UPS = 1
"""Further reads of the few neurons the refinements leave more than a code step off
(`FittingSearch.follow_ups`; each records only those neurons)."""


def _tau_mem(context: CalibrationContext, *, choose_switches: bool = True) -> MembraneTimeConstant:
    return MembraneTimeConstant(
        context.goals["tau_mem"],
        context.target.membrane_capacitance,
        choose_switches=choose_switches,
    )


def _verify_tau_mem(context: CalibrationContext) -> dict[str, np.ndarray]:
    """Measured with the switches the calibration chose."""
    return {"tau_mem": context.measure(_tau_mem(context, choose_switches=False))}


TAU_MEM = register_plan(
    Plan(
        name="tau_mem",
        rank=3,
        quantities=(
            QuantitySpec(
                "tau_mem",
                "s",
                0.5e-6,
                60e-6,
                0.10,
                relative=True,
                default=10e-6,
                description="membrane time constant C / g_leak",
                long_name="membrane time constant",
            ),
        ),
        cells=("i_bias_leak", "leak_divide", "leak_multiply"),
        routine=_tau_mem,
        algorithm=lambda target: FittingSearch(
            refine=TIME_CONSTANT_REFINEMENTS,
            coarse_sweep=True,
            follow_ups=TIME_CONSTANT_FOLLOW_UPS,
        ),
        after=("leak",),
        disturbs=("leak",),  # the leak conductance moves the resting potential
        verify=_verify_tau_mem,
    )
)
