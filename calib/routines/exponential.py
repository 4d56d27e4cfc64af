"""AdEx exponential term: onset (rheobase) and a point of the f-I curve, set by i_bias_exp (the
slope factor Delta_T) and v_exp (the onset V_T of the exponential), searched together.

Both observables are measured on all neurons at once, with adaptation off and the leak
potential as the drive (a current step of the chip moves a 10 us membrane by ten LSB at most):
- onset (CADC LSB): the leak potential above which the neuron fires tonically. With the
  threshold comparator off, a neuron below its rheobase settles at a fixed point, one above it
  runs away to the supply rail; a bisection over the leak potential (CADC reads, no spikes
  needed) finds the boundary of every neuron to half a v_leak code. In the AdEx model it lies at
  V_T - Delta_T.
- rate (Hz): the firing rate with the leak potential at the threshold, where a plain LIF neuron
  stays silent: the exponential term alone carries the membrane across. Spike intervals from
  one MADC recording of all neurons after a reset release.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from calib.algorithms.base import MultiParameterRoutine
from calib.core.routine import ParameterRange
from calib.routines.adaptation import CODES_PER_LSB, RELEASE_TIME, drive_codes
from calib.routines.cadc import READ_AT_LOW, REFERENCE_LOW_CODE
from device_model.protocol import CAPMEM_MAX, N_NEURONS, Device
from device_model.stimuli import ResetRelease
from observables.spikes import isi_summary

ONSET_SPAN = 24.0
"""The bisection brackets the targeted onset by this many LSB each side; an onset outside reads
as the bracket's end (the search sees which way to go)."""
ONSET_SAMPLES = 4
RUNAWAY_READ = 230.0
"""A CADC reading above this is a membrane run away to the rail (a quiet neuron with its onset
below the top of the potential range reads at most about 205, through the CADC's compression)."""
RATE_INTERVALS = 3.0
"""Record this many intervals of the slowest targeted rate after the release."""
V_T_BELOW_ONSET = 14.0
V_T_ABOVE_ONSET = 32.0
"""v_exp is searched from this far below to this far above the targeted onsets (LSB): V_T lies
Delta_T (up to ~16 LSB) above the onset, give or take the onset's offset (3 sigma ~14 LSB)."""
EXPONENTIAL_OBSERVABLES = ("exp_onset", "exp_rate")


def potential_code(lsb: ArrayLike) -> np.ndarray:
    """The code of a potential cell without a follower (v_exp) that reads `lsb` on the CADC."""
    return REFERENCE_LOW_CODE + (np.asarray(lsb, dtype=float) - READ_AT_LOW) * CODES_PER_LSB


def v_exp_range(onset: np.ndarray) -> ParameterRange:
    """The v_exp codes worth searching for the targeted onsets."""
    low = int(np.floor(potential_code(np.min(onset) - V_T_BELOW_ONSET)))
    high = int(np.ceil(potential_code(np.max(onset) + V_T_ABOVE_ONSET)))
    return ParameterRange(max(low, 0), min(high, CAPMEM_MAX))


class ExponentialTerm(MultiParameterRoutine):
    """Onset and rate at the threshold drive, set together by i_bias_exp and v_exp.

    `v_leak`, `leak` and `threshold`: the calibrated leak codes, leak and threshold potentials
    (LSB) of every neuron, to place the drives. `onset` (LSB) centres the bisection and the v_exp
    range, `slowest_rate` (Hz) sets the recording. `observables` names what `measure` returns.
    """

    name = "exponential"
    parameters = ("i_bias_exp", "v_exp")

    def __init__(
        self,
        v_leak: np.ndarray,
        leak: np.ndarray,
        threshold: np.ndarray,
        onset: np.ndarray,
        slowest_rate: float,
        observables: tuple[str, ...] = EXPONENTIAL_OBSERVABLES,
    ) -> None:
        unknown = set(observables) - set(EXPONENTIAL_OBSERVABLES)
        if not observables or unknown:
            raise ValueError(
                f"observables must be some of {EXPONENTIAL_OBSERVABLES}, got {observables!r}"
            )

        def per_neuron(value: ArrayLike) -> np.ndarray:
            return np.broadcast_to(np.asarray(value, dtype=float), (N_NEURONS,))

        self.v_leak, self.leak = per_neuron(v_leak), per_neuron(leak)
        self.onset = per_neuron(onset)
        self.low = drive_codes(self.v_leak, self.leak, self.onset - ONSET_SPAN)
        self.high = drive_codes(self.v_leak, self.leak, self.onset + ONSET_SPAN)
        self.rate_drive = drive_codes(self.v_leak, self.leak, per_neuron(threshold))
        self.duration = RELEASE_TIME + RATE_INTERVALS / slowest_rate
        self.observables = tuple(observables)
        self.parameter_ranges = (ParameterRange(), v_exp_range(self.onset))

    def measurement_settings(self, device: Device) -> dict[str, ArrayLike]:
        return {
            "exponential_enable": 1,
            "adaptation_enable": 0,
            "reset_hold": 0,
            "threshold_enable": 0,
            "v_leak": self.rate_drive,
        }

    def apply(self, device: Device, codes: np.ndarray) -> None:
        """Written twice: one write's settling leaves 0.7 % of a jump, and a jump across the
        v_exp range would move the onset by a tenth of its tolerance."""
        super().apply(device, codes)
        super().apply(device, codes)

    def _runaway(self, device: Device, codes: np.ndarray) -> np.ndarray:
        device.write({"v_leak": codes})
        return device.read_cadc(ONSET_SAMPLES).astype(float).mean(axis=0) > RUNAWAY_READ

    def measure_onset(self, device: Device) -> np.ndarray:
        """Leak potential (LSB) where tonic firing starts, to half a v_leak code; the bracket's
        end where it lies outside."""
        device.write({"threshold_enable": 0})
        low, high = self.low.copy(), self.high.copy()
        below = self._runaway(device, low)
        above = ~self._runaway(device, high)
        # Invariant: `low` is quiet and `high` runs away (for neurons inside the bracket).
        while np.any(high - low > 1):
            middle = (low + high) // 2
            runaway = self._runaway(device, middle)
            high = np.where(runaway, middle, high)
            low = np.where(runaway, low, middle)
        boundary = np.where(below, self.low, np.where(above, self.high, 0.5 * (low + high)))
        return self.leak + (boundary - self.v_leak) / CODES_PER_LSB

    def measure_rate(self, device: Device) -> np.ndarray:
        """Firing rate (Hz) with the leak at the threshold; NaN with fewer than two spikes."""
        device.write({"v_leak": self.rate_drive, "threshold_enable": 1})
        trace = device.record_madc(
            np.arange(device.n_neurons), self.duration, ResetRelease(RELEASE_TIME)
        )
        return 1.0 / isi_summary(trace, start_time=RELEASE_TIME, min_spikes=2).mean

    def measure_all(self, device: Device) -> dict[str, np.ndarray]:
        values = {}
        if "exp_onset" in self.observables:
            values["exp_onset"] = self.measure_onset(device)
        if "exp_rate" in self.observables:
            values["exp_rate"] = self.measure_rate(device)
        return values

    def measure(self, device: Device) -> np.ndarray:
        values = self.measure_all(device)
        return np.stack([values[name] for name in self.observables], axis=1)


# --- a first guess: Newton steps on a per-neuron Jacobian ------------------------------------

NOMINAL_DELTA_T = 4.5
"""Delta_T (LSB) of a nominal neuron at the starting i_bias_exp code."""
GUESS_START_EXP = 500
PROBE_STEPS = (500, 24)
"""Finite-difference steps (i_bias_exp, v_exp codes) of the Jacobian: large against the
onset's resolution (0.42 LSB) and the rate's curvature."""
GUESS_RATE = 60e3
"""Stand-in rate for the guess when only the onset is targeted."""


def _linearised(values: dict[str, np.ndarray]) -> np.ndarray:
    """(onset, ln rate): the onset is nearly linear in both codes, the rate far from it."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.stack([values["exp_onset"], np.log(values["exp_rate"])], axis=1)


def exponential_guess(
    routine: ExponentialTerm,
    device: Device,
    onset: np.ndarray,
    rate: np.ndarray,
    iterations: int = 4,
) -> np.ndarray:
    """Per-neuron (i_bias_exp, v_exp) codes expected to give `onset` and `rate`: a Jacobian from
    two finite differences at a nominal start, then `iterations` Newton steps with Broyden
    updates. Call between `routine.prelude` and `routine.postlude`; `routine` must measure both
    observables."""
    goal = np.stack(
        [
            np.broadcast_to(np.asarray(onset, dtype=float), (N_NEURONS,)),
            np.log(np.broadcast_to(np.asarray(rate, dtype=float), (N_NEURONS,))),
        ],
        axis=1,
    )
    ranges = routine.parameter_ranges

    def clip(codes: np.ndarray) -> np.ndarray:
        return np.stack([r.clip(codes[:, j]) for j, r in enumerate(ranges)], axis=1)

    def measured(codes: np.ndarray) -> np.ndarray:
        routine.apply(device, codes)
        return _linearised(routine.measure_all(device))

    start = np.stack(
        [np.full(N_NEURONS, float(GUESS_START_EXP)), potential_code(goal[:, 0] + NOMINAL_DELTA_T)],
        axis=1,
    )
    codes = clip(start)
    values = measured(codes)
    jacobian = np.empty((N_NEURONS, 2, 2))
    for j, step in enumerate(PROBE_STEPS):
        probe = codes.astype(float).copy()
        probe[:, j] += step
        probe = clip(probe)
        shift = probe[:, j] - codes[:, j]
        with np.errstate(divide="ignore", invalid="ignore"):
            jacobian[:, :, j] = (measured(probe) - values) / shift[:, None]
    for _ in range(iterations):
        usable = np.all(np.isfinite(jacobian), axis=(1, 2)) & np.all(np.isfinite(values), axis=1)
        usable &= np.abs(np.linalg.det(np.where(usable[:, None, None], jacobian, 1.0))) > 0
        safe = np.where(usable[:, None, None], jacobian, np.eye(2))
        step = np.linalg.solve(safe, np.where(usable[:, None], goal - values, 0.0)[..., None])
        new_codes = clip(codes + step[..., 0])
        new_values = measured(new_codes)
        # Broyden: correct the Jacobian along the step actually taken.
        taken = (new_codes - codes).astype(float)
        norm = np.sum(taken**2, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            miss = new_values - values - np.einsum("nij,nj->ni", jacobian, taken)
            update = miss[:, :, None] * taken[:, None, :] / norm[:, None, None]
        good = (norm > 0) & np.all(np.isfinite(update), axis=(1, 2))
        jacobian = np.where(good[:, None, None], jacobian + np.nan_to_num(update), jacobian)
        finite = np.all(np.isfinite(new_values), axis=1)
        codes = np.where(finite[:, None], new_codes, codes)
        values = np.where(finite[:, None], new_values, values)
    return codes
