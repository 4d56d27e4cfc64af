"""AdEx adaptation: the subthreshold coupling a, and spike-frequency adaptation set by b and tau_w.

Subthreshold adaptation (`SubthresholdAdaptation`, cell i_bias_adapt_a) adds a conductance a in
parallel to the leak once the adaptation current has settled: the steady response of the
membrane to a current step shrinks from I / g_l to I / (g_l + a). Two CADC reads (a positive and
a negative step, so offsets cancel) with a = 0 and with the candidate code give a / g_l.

Spike-frequency adaptation (`SpikeFrequencyAdaptation`, cells i_bias_adapt_b and
i_bias_adapt_tau, searched together) is measured on the firing of every neuron under the
reference drive: the neuron is held in reset, then released with its leak potential raised to
threshold + (threshold - reset), where without adaptation it fires every t_ref + tau_mem ln 2.
From the MADC spike times of all neurons (one recording of all of them per evaluation):
- adaptation ratio f_inf / f_0: the adapted rate (mean interval of the last 30 % of the
  recording) over the rate without adaptation. Until its first spike a released neuron has no
  adaptation current, so its first spike comes one unadapted interval less the hold after a
  spike; the hold is measured once, in the prelude, with adaptation off. Taking f_0 from the
  same run cancels the comparator's run-to-run jitter, which would otherwise move f_0 against
  f_inf by half a percent and the adaptation time by several;
- adaptation time: the extra spikes of the onset transient (intervals counted minus the spikes
  the adapted rate gives in the same time) over the rate drop f_0 - f_inf. For a rate relaxing
  exponentially from f_0 to f_inf that is exactly its time constant; an integral, it is far less
  sensitive to the MADC's sampling of spike times than a fit of the first few intervals.
The subthreshold coupling is off while spike-frequency adaptation is measured: with the leak
raised as the drive, a (V - E_l) would pull the membrane up instead of holding it back.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from calib.algorithms.base import MultiParameterRoutine
from calib.core.routine import ParameterRange, Routine
from calib.routines.cadc import CODES_PER_LSB
from device_model.protocol import CAPMEM_MAX, MADC_INVALID_TIME, N_NEURONS, Device, Trace
from device_model.stimuli import CurrentStep, ResetRelease
from observables.spikes import isi_summary, spike_times

# --- subthreshold adaptation a ---------------------------------------------------------------

STEP_SAMPLES = 1600
"""CADC samples per steady-state read: read noise (~1 LSB) falls to 0.025 LSB, and a / g_leak
reads to about 0.003."""
STEP_SWING = 20.0
"""Aimed peak-to-peak response (CADC LSB) to the +/- current steps without adaptation."""
PROBE_CURRENT = 2e-9
MAX_CURRENT = 10e-9
"""The current step stimulus's limit."""
STEP_DURATION = 200e-6
"""Each read waits this long into the step: with the fastest adaptation time constant (the bias
at its top code, about 25 us) the adaptation current has settled."""
FAST_ADAPTATION_CODE = CAPMEM_MAX


def _steady_swing(device: Device, amplitude: float) -> np.ndarray:
    """Peak-to-peak steady response (CADC LSB) to current steps of +/- `amplitude`."""
    reads = [
        device.read_cadc(STEP_SAMPLES, CurrentStep(sign * amplitude, off_time=STEP_DURATION))
        .astype(float)
        .mean(axis=0)
        for sign in (1.0, -1.0)
    ]
    return reads[0] - reads[1]


class SubthresholdAdaptation(Routine):
    """a / g_leak, set by i_bias_adapt_a (a grows linearly with the code)."""

    name = "adaptation_a"
    parameter = "i_bias_adapt_a"

    amplitude: float = MAX_CURRENT
    reference_swing: np.ndarray | None = None
    """Swing with a = 0, measured in the prelude."""

    def measurement_settings(self, device: Device) -> dict[str, ArrayLike]:
        return {
            "threshold_enable": 0,
            "reset_hold": 0,
            "adaptation_enable": 1,
            "exponential_enable": 0,
            "i_bias_adapt_tau": FAST_ADAPTATION_CODE,
        }

    def prelude(self, device: Device) -> None:
        """Set the measurement up and measure the swing without adaptation; the current step
        is scaled so that it moves the membrane about STEP_SWING LSB (all neurons share it)."""
        super().prelude(device)
        saved = device.read_settings([self.parameter])
        device.write({self.parameter: 0})
        probe = float(np.nanmedian(_steady_swing(device, PROBE_CURRENT)))
        scale = STEP_SWING / probe if np.isfinite(probe) and probe > 0 else 1.0
        self.amplitude = float(np.clip(PROBE_CURRENT * scale, PROBE_CURRENT, MAX_CURRENT))
        self.reference_swing = _steady_swing(device, self.amplitude)
        device.write(saved)

    def measure(self, device: Device) -> np.ndarray:
        if self.reference_swing is None:
            raise RuntimeError("SubthresholdAdaptation.measure called before prelude")
        swing = _steady_swing(device, self.amplitude)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = self.reference_swing / swing - 1.0
        return np.where(swing > 0, ratio, np.nan)


# --- spike-frequency adaptation b, tau_w -----------------------------------------------------

RELEASE_TIME = MADC_INVALID_TIME + 0.5e-6
"""The neurons leave reset just after the MADC's invalid start."""
SETTLING_TIME_CONSTANTS = 5.0
"""Record this many (longest targeted) adaptation times after the release: the last interval
is then within about 1 % of the rate drop of the adapted one."""
TAIL_FRACTION = 0.3
"""The adapted rate is the mean rate over this last fraction of the recording (several
intervals: one interval's sampling jitter would dominate the adaptation time)."""
MIN_RATE_DROP = 0.01
"""Below this relative rate drop the adaptation time is not defined (NaN)."""
TAU_CODE_LOW = 50
"""Lowest i_bias_adapt_tau searched: tau_w of about 140 us on a nominal neuron, several times
the adaptation times targeted (a neuron with a weak b needs a long tau_w)."""
ADAPTATION_OBSERVABLES = ("adaptation_ratio", "adaptation_time")


def drive_codes(v_leak: np.ndarray, leak: np.ndarray, drive: np.ndarray) -> np.ndarray:
    """v_leak codes that move a leak calibrated to `leak` (LSB, at codes `v_leak`) to `drive`."""
    codes = np.asarray(v_leak, dtype=float) + (np.asarray(drive) - np.asarray(leak)) * CODES_PER_LSB
    return np.clip(np.rint(codes), 0, CAPMEM_MAX).astype(np.int64)


def reference_drive(threshold: np.ndarray, reset: np.ndarray) -> np.ndarray:
    """The adaptation drive (LSB): threshold + (threshold - reset); without adaptation the neuron
    then fires every t_ref + tau_mem ln 2."""
    return 2.0 * np.asarray(threshold, dtype=float) - np.asarray(reset, dtype=float)


def first_spike_delay(trace: Trace) -> np.ndarray:
    """Per recorded neuron: time from the release to its first spike (NaN without one)."""
    rows = spike_times(trace, start_time=RELEASE_TIME)
    first = np.array([row[0] if row.size else np.nan for row in rows])
    return first - RELEASE_TIME


def adaptation_observables(
    n_spikes: np.ndarray,
    mean_interval: np.ndarray,
    adapted_interval: np.ndarray,
    unadapted: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(ratio f_inf / f_0, adaptation time in s) per neuron from its spike count and mean
    interval since the release, its adapted interval and its unadapted rate (Hz)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        adapted = 1.0 / adapted_interval
        ratio = adapted / unadapted
        intervals = n_spikes - 1.0
        excess = intervals * (1.0 - mean_interval / adapted_interval)
        drop = unadapted - adapted
        time = np.where(drop > MIN_RATE_DROP * unadapted, excess / drop, np.nan)
    return ratio, time


class SpikeFrequencyAdaptation(MultiParameterRoutine):
    """Adaptation ratio and time, set together by i_bias_adapt_b and i_bias_adapt_tau.

    `observables` names what `measure` returns, in order (one or both of
    ADAPTATION_OBSERVABLES). `drive` holds the per-neuron v_leak codes of the reference drive;
    `longest_time` (s) sets the recording.
    """

    name = "adaptation"
    parameters = ("i_bias_adapt_b", "i_bias_adapt_tau")
    parameter_ranges = (ParameterRange(), ParameterRange(TAU_CODE_LOW, CAPMEM_MAX))

    def __init__(
        self,
        drive: np.ndarray,
        longest_time: float,
        observables: tuple[str, ...] = ADAPTATION_OBSERVABLES,
    ) -> None:
        unknown = set(observables) - set(ADAPTATION_OBSERVABLES)
        if not observables or unknown:
            raise ValueError(
                f"observables must be some of {ADAPTATION_OBSERVABLES}, got {observables!r}"
            )
        self.drive = np.broadcast_to(np.asarray(drive, dtype=np.int64), (N_NEURONS,))
        self.duration = RELEASE_TIME + SETTLING_TIME_CONSTANTS * longest_time
        self.observables = tuple(observables)
        self.hold: np.ndarray | None = None
        """Per neuron: the unadapted interval less the first spike's delay after the release."""

    def measurement_settings(self, device: Device) -> dict[str, ArrayLike]:
        return {
            "v_leak": self.drive,
            "threshold_enable": 1,
            "reset_hold": 0,
            "adaptation_enable": 1,
            "i_bias_adapt_a": 0,
            "exponential_enable": 0,
        }

    def prelude(self, device: Device) -> None:
        """Configure the drive; measure the hold after a spike with adaptation off (the
        interval less the first spike's delay after the release)."""
        super().prelude(device)
        # The drive again: one write's settling leaves 0.7 % of the leak's jump to the drive.
        device.write({"v_leak": self.drive, "adaptation_enable": 0})
        trace = self._record(device)
        interval = isi_summary(trace, start_time=RELEASE_TIME).mean
        self.hold = interval - first_spike_delay(trace)
        device.write({"adaptation_enable": 1})

    def _record(self, device: Device) -> Trace:
        return device.record_madc(
            np.arange(device.n_neurons), self.duration, ResetRelease(RELEASE_TIME)
        )

    def apply(self, device: Device, codes: np.ndarray) -> None:
        """Write the codes twice: a search jumps across the range, and one write's settling
        wait leaves 0.7 % of the jump, several codes, which the rates feel."""
        super().apply(device, codes)
        super().apply(device, codes)

    def measure_all(self, device: Device) -> dict[str, np.ndarray]:
        """Both observables of every neuron from one MADC recording of all of them."""
        if self.hold is None:
            raise RuntimeError("SpikeFrequencyAdaptation.measure called before prelude")
        trace = self._record(device)
        onward = isi_summary(trace, start_time=RELEASE_TIME)
        tail_start = self.duration - TAIL_FRACTION * (self.duration - RELEASE_TIME)
        tail = isi_summary(trace, start_time=tail_start, min_spikes=2)
        unadapted = 1.0 / (first_spike_delay(trace) + self.hold)
        ratio, time = adaptation_observables(onward.n_spikes, onward.mean, tail.mean, unadapted)
        return {"adaptation_ratio": ratio, "adaptation_time": time}

    def measure(self, device: Device) -> np.ndarray:
        values = self.measure_all(device)
        return np.stack([values[name] for name in self.observables], axis=1)


# --- a first guess from the linear theory of adaptation --------------------------------------

NOMINAL_TAU_CAPACITANCE = 3e-12
NOMINAL_TAU_CONDUCTANCE_PER_CODE = 0.45e-9
NOMINAL_TAU_SATURATION = 400.0
NOMINAL_TAU_PARALLEL = 1e-9
"""Nominal shape of the adaptation time constant's bias, tau_w = C / (k c / (1 + c / s) + g_p):
only a starting point; each neuron's gain on k is measured."""
PROBE_CODES = ((400, 300), (800, 150))
"""(i_bias_adapt_b, i_bias_adapt_tau) probed for the first guess: mid-range adaptation."""
GUESS_RATIO = 0.8
GUESS_TIME = 30e-6
"""Stand-ins for an observable that is not targeted (the guess needs both)."""


def _tau_w_conductance(code: np.ndarray) -> np.ndarray:
    code = np.asarray(code, dtype=float)
    return NOMINAL_TAU_CONDUCTANCE_PER_CODE * code / (1 + code / NOMINAL_TAU_SATURATION)


def _tau_code(gain: np.ndarray, tau_w: np.ndarray) -> np.ndarray:
    """The i_bias_adapt_tau code giving `tau_w` with the neuron's `gain` (inverse of the form;
    beyond the saturation, the top code)."""
    needed = (NOMINAL_TAU_CAPACITANCE / tau_w - NOMINAL_TAU_PARALLEL) / (
        gain * NOMINAL_TAU_CONDUCTANCE_PER_CODE
    )
    room = 1 - needed / NOMINAL_TAU_SATURATION
    return np.where(room > 0, needed / np.where(room > 0, room, 1.0), CAPMEM_MAX)


def _linear_theory(
    codes: np.ndarray, ratio: np.ndarray, time: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(tau bias gain, adaptation strength per b code and second) per neuron from one
    measurement. Linear theory: ratio = 1 / (1 + beta b tau_w) and time = tau_w ratio."""
    with np.errstate(divide="ignore", invalid="ignore"):
        tau_w = time / ratio
        gain = (NOMINAL_TAU_CAPACITANCE / tau_w - NOMINAL_TAU_PARALLEL) / _tau_w_conductance(
            codes[:, 1]
        )
        strength = (1 / ratio - 1) / (codes[:, 0] * tau_w)
    usable = (gain > 0) & (strength > 0)
    return np.where(usable, gain, np.nan), np.where(usable, strength, np.nan)


def _finite_mean(values: np.ndarray) -> np.ndarray:
    """Mean over the first axis of the finite entries; NaN where there are none."""
    finite = np.isfinite(values)
    count = finite.sum(axis=0)
    total = np.where(finite, values, 0.0).sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def adaptation_guess(
    routine: SpikeFrequencyAdaptation,
    device: Device,
    ratio: np.ndarray,
    time: np.ndarray,
    refinements: int = 2,
) -> np.ndarray:
    """Per-neuron (b, tau) codes expected to give `ratio` and `time`, from the linear theory of
    adaptation fitted to each neuron at PROBE_CODES, then refined at its own guess
    `refinements` times. Call between `routine.prelude` and `routine.postlude`."""
    ratio, time = (np.broadcast_to(np.asarray(v, dtype=float), (N_NEURONS,)) for v in (ratio, time))
    tau_w = time / ratio
    b_range, tau_range = routine.parameter_ranges

    def measured(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        routine.apply(device, codes)
        values = routine.measure_all(device)
        return _linear_theory(codes, values["adaptation_ratio"], values["adaptation_time"])

    def invert(gain: np.ndarray, strength: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            b = (1 / ratio - 1) / (strength * tau_w)
            tau = _tau_code(gain, tau_w)
        codes = np.stack([b, tau], axis=1)
        fallback = np.nanmedian(np.where(np.isfinite(codes), codes, np.nan), axis=0)
        codes = np.where(np.isfinite(codes), codes, np.nan_to_num(fallback, nan=500.0))
        return np.stack([b_range.clip(codes[:, 0]), tau_range.clip(codes[:, 1])], axis=1)

    fits = [measured(np.tile(probe, (N_NEURONS, 1))) for probe in PROBE_CODES]
    codes = invert(*(_finite_mean(np.stack(values)) for values in zip(*fits, strict=True)))
    for _ in range(refinements):
        gain, strength = measured(codes)
        refined = invert(gain, strength)
        codes = np.where(
            np.isfinite(gain)[:, None] & np.isfinite(strength)[:, None], refined, codes
        )
    return codes
