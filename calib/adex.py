"""AdEx calibration: subthreshold adaptation, spike-frequency adaptation and the exponential term,
on top of a calibrated LIF working point (leak, threshold, reset, tau_mem, refractory time).

`LIFCalibration` runs these steps after the refractory time and before the final leak
refinement when its target asks for AdEx quantities, and adds their verification and judgement.
Each part is measured with the others switched off (its definition in `calib.targets`), then
switched on in the final configuration; parts the target leaves out stay off.

Searches: a / g_leak by noise-robust binary search (one code, monotonic, CADC reads). The
two-parameter quantities by `BayesianSearch` (one study per neuron, every neuron in one device
run per step) in a window of codes around a per-neuron first guess measured on the chip (the
linear theory of adaptation; Newton steps for the exponential term), the guess tried first. The
search aims at SEARCH_TOLERANCE_FRACTION of the stated tolerance, so that a neuron it stops on
stays within tolerance when measured again.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from calib.algorithms import BayesianSearch, NoiseRobustBinarySearch
from calib.algorithms.base import (
    Algorithm,
    MultiParameterRoutine,
    SearchOutcome,
    at_bounds,
    measure_once,
    parameter_names,
    search_ranges,
    with_retries,
)
from calib.routine import ParameterRange, Routine
from calib.routines.adaptation import (
    ADAPTATION_OBSERVABLES,
    CODES_PER_LSB,
    GUESS_RATIO,
    GUESS_TIME,
    SpikeFrequencyAdaptation,
    SubthresholdAdaptation,
    adaptation_guess,
    drive_codes,
    reference_drive,
)
from calib.routines.exponential import (
    EXPONENTIAL_OBSERVABLES,
    GUESS_RATE,
    ExponentialTerm,
    exponential_guess,
)
from calib.targets import ADEX_QUANTITIES, NeuronTarget
from device_model.protocol import CAPMEM_MAX, N_NEURONS, Device

SEARCH_TOLERANCE_FRACTION = 0.6
"""The searches aim at this fraction of each quantity's tolerance (measurement noise: the
adaptation time reads with 2 to 4.5 % scatter, its tolerance is 12 %)."""
BAYESIAN_BUDGET = 20
"""Trials per neuron after the first guess (most neurons stop at the guess or soon after)."""
EXP_ONSET_MARGIN = 5.0
"""The exponential onset lies at least this far (LSB) above the leak and below the threshold:
closer, the resting neuron sits on the exponential, or the hard threshold fires first."""
ADAPTATION_SWITCHES = ("adaptation_enable", "exponential_enable")
PART_QUANTITIES = {
    "adaptation_a": ("adaptation_a",),
    "adaptation": ADAPTATION_OBSERVABLES,
    "exponential": EXPONENTIAL_OBSERVABLES,
}
"""Routine name -> the target quantities it calibrates."""
ADEX_ROUTINES = tuple(PART_QUANTITIES)
WINDOWS = {
    "adaptation": ((0.4, 0.4), (40, 16)),
    "exponential": ((0.5, 0.0), (150, 12)),
}
"""Search window around the first guess per part: (fraction of the guessed code, fewest codes)
each side, per parameter (the guesses land within about a quarter of the needed codes; v_exp
within a few codes, its onset being nearly linear in it)."""


def default_adex_algorithms(target: NeuronTarget) -> dict[str, Algorithm]:
    """The search for each AdEx routine: binary search for a, Bayesian for the two pairs."""
    algorithms: dict[str, Algorithm] = {"adaptation_a": NoiseRobustBinarySearch()}
    for part in ("adaptation", "exponential"):
        names = [name for name in PART_QUANTITIES[part] if getattr(target, name) is not None]
        if names:
            algorithms[part] = BayesianSearch(
                budget=BAYESIAN_BUDGET, tolerance=search_tolerance(target, names),
                relative=True, seed=0)
    return algorithms


def search_tolerance(target: NeuronTarget, names: list[str]) -> np.ndarray:
    """Relative tolerances for a search over `names`: SEARCH_TOLERANCE_FRACTION of the stated
    ones, an absolute tolerance taken relative to the largest target (the strictest)."""
    tolerances = []
    for name in names:
        spec = ADEX_QUANTITIES[name]
        largest = float(np.max(np.abs(getattr(target, name))))
        tolerances.append(spec.tolerance if spec.relative else spec.tolerance / largest)
    return SEARCH_TOLERANCE_FRACTION * np.array(tolerances)


def check_adex_target(target: NeuronTarget) -> None:
    """What one field's range cannot say: the exponential onset between leak and threshold."""
    if target.exp_onset is None:
        return
    onset = np.broadcast_to(target.exp_onset, (N_NEURONS,))
    low = np.broadcast_to(target.leak, (N_NEURONS,)) + EXP_ONSET_MARGIN
    high = np.broadcast_to(target.threshold, (N_NEURONS,)) - EXP_ONSET_MARGIN
    bad = (onset < low) | (onset > high)
    if bad.any():
        neuron = int(np.flatnonzero(bad)[0])
        where = "" if np.ndim(target.exp_onset) == 0 else f" (neuron {neuron})"
        raise ValueError(
            f"exp_onset = {float(onset[neuron])!r}{where} is outside the allowed range "
            f"{low[neuron]:g}..{high[neuron]:g} CADC LSB for this target (at least "
            f"{EXP_ONSET_MARGIN:g} LSB above the leak and below the threshold)")


@contextmanager
def lif_only(device: Device) -> Iterator[None]:
    """Adaptation and exponential term switched off for the duration (the LIF part alone)."""
    saved = device.read_settings(list(ADAPTATION_SWITCHES))
    if any(saved[name].any() for name in ADAPTATION_SWITCHES):
        device.write(dict.fromkeys(ADAPTATION_SWITCHES, 0))
    try:
        yield
    finally:
        if any(saved[name].any() for name in ADAPTATION_SWITCHES):
            device.write(saved)


class LocalWindow(MultiParameterRoutine):
    """A multi-parameter routine searched in a window of codes around per-neuron centres.

    The search sees offsets 0..2 STEPS per parameter; offset k sets the cell to
    centre + (k - STEPS) * step, with per-neuron steps that span `fractions` of the centre code
    each side (at least `minimums` codes), clipped to the routine's ranges. A first guess puts most
    neurons close to their target: a search over the window needs far fewer trials than one
    over the whole range, where the target region is a thin sliver.
    """

    STEPS = 32

    def __init__(self, routine: MultiParameterRoutine, centre: np.ndarray,
                 fractions: tuple[float, ...], minimums: tuple[int, ...]) -> None:
        self.routine = routine
        self.name = routine.name
        self.parameters = routine.parameters
        self.centre = np.asarray(centre, dtype=float)
        half = np.maximum(np.array(minimums, dtype=float),
                          np.array(fractions) * self.centre)
        self.step = np.maximum(half / self.STEPS, 1.0)
        self.parameter_ranges = tuple(ParameterRange(0, 2 * self.STEPS) for _ in self.parameters)

    def codes(self, offsets: np.ndarray) -> np.ndarray:
        """Cell codes of window offsets (n_units, n_params)."""
        codes = self.centre + (np.asarray(offsets, dtype=float) - self.STEPS) * self.step
        return np.stack([limits.clip(codes[:, j])
                         for j, limits in enumerate(self.routine.parameter_ranges)], axis=1)

    def prelude(self, device: Device) -> None:
        self.routine.prelude(device)

    def apply(self, device: Device, codes: np.ndarray) -> None:
        self.routine.apply(device, self.codes(codes))

    def measure(self, device: Device) -> np.ndarray:
        return self.routine.measure(device)

    def postlude(self, device: Device) -> None:
        self.routine.postlude(device)


class AdExCalibration:
    """The AdEx steps of one neuron calibration, sharing the LIF calibration's session.

    `session` is the LIF calibration's (device, codes, before, at_bound); `goals` its per-neuron
    targets. `algorithms` may name 'adaptation_a', 'adaptation' and 'exponential'.
    """

    def __init__(self, session: Any, target: NeuronTarget, goals: dict[str, np.ndarray],
                 algorithms: dict[str, Algorithm] | None = None) -> None:
        check_adex_target(target)
        self.session = session
        self.target = target
        self.goals = goals
        self.algorithms = {**default_adex_algorithms(target), **(algorithms or {})}
        self.outcomes: dict[str, SearchOutcome] = {}
        """Routine name -> its search's outcome (codes, last measured values, steps)."""
        self.cells: dict[str, tuple[tuple[str, ParameterRange], ...]] = {}
        """Routine name -> the cells it set and their ranges (for range-bound reasons)."""
        self.drive_clipped: dict[str, np.ndarray] = {}

    @property
    def device(self) -> Device:
        return self.session.device

    def targeted(self, part: str) -> tuple[str, ...]:
        return tuple(name for name in PART_QUANTITIES[part] if name in self.target.adex)

    @property
    def steps(self) -> list[tuple[str, Callable[[], None]]]:
        """The steps this target needs (none for a LIF target), then the final switches."""
        actions = {"adaptation_a": self.calibrate_a, "adaptation": self.calibrate_adaptation,
                   "exponential": self.calibrate_exponential}
        chosen = [(part, action) for part, action in actions.items() if self.targeted(part)]
        return [*chosen, ("adex_switches", self.switch_on)] if chosen else []

    # -- routines built from the LIF working point ----------------------------------------------

    def _beyond_leak_range(self, part: str, codes: np.ndarray, *potentials: np.ndarray) -> None:
        """Note the neurons whose leak cannot be raised to every drive of `part`."""
        highest = np.max(np.stack(potentials), axis=0)
        self.drive_clipped[part] = codes + (highest - self.goals["leak"]) * CODES_PER_LSB > (
            CAPMEM_MAX + 0.5)

    def adaptation_routine(self) -> SpikeFrequencyAdaptation:
        codes = self.device.read_settings(["v_leak"])["v_leak"]
        drive = reference_drive(self.goals["threshold"], self.goals["reset"])
        self._beyond_leak_range("adaptation", codes, drive)
        longest = float(np.max(self.goals.get("adaptation_time", np.full(N_NEURONS, GUESS_TIME))))
        return SpikeFrequencyAdaptation(
            drive_codes(codes, self.goals["leak"], drive), longest, self.targeted("adaptation"))

    def exponential_routine(self, observables: tuple[str, ...] | None = None) -> ExponentialTerm:
        codes = self.device.read_settings(["v_leak"])["v_leak"]
        onset = self.goals.get("exp_onset")
        if onset is None:  # only the rate targeted: centre the bisection between the potentials
            onset = 0.5 * (self.goals["leak"] + self.goals["threshold"])
        rate = self.goals.get("exp_rate", np.full(N_NEURONS, GUESS_RATE))
        self._beyond_leak_range("exponential", codes, onset, self.goals["threshold"])
        return ExponentialTerm(codes, self.goals["leak"], self.goals["threshold"], onset,
                               0.5 * float(np.min(rate)),
                               observables or self.targeted("exponential"))

    # -- steps ----------------------------------------------------------------------------------

    def calibrate_a(self) -> None:
        routine = SubthresholdAdaptation()
        goal = self.goals["adaptation_a"]
        outcome = self.algorithms["adaptation_a"].run(routine, self.device, goal)
        # a = 0 is code 0 exactly: no search needed, and the bound is no failure there.
        codes = np.where(goal > 0, outcome.codes, 0)
        self.session.write({routine.parameter: codes})
        bound = routine.parameter_range.at_bound(codes)
        self._record(routine, SearchOutcome(codes, outcome.measured, outcome.steps,
                                            np.where(goal > 0, bound, 0), outcome.reasons))

    def calibrate_adaptation(self) -> None:
        routine = self.adaptation_routine()
        names = self.targeted("adaptation")
        goal = np.stack([self.goals[name] for name in names], axis=1)
        ratio = self.goals.get("adaptation_ratio", np.full(N_NEURONS, GUESS_RATIO))
        time = self.goals.get("adaptation_time", np.full(N_NEURONS, GUESS_TIME))
        guess = self._given_initial("adaptation")
        if guess is None:
            guess = self._guess(routine, lambda: adaptation_guess(
                routine, self.device, ratio, time))
        self._search(routine, "adaptation", goal, guess)
        if "adaptation_a" not in self.target.adex:
            self.session.write({"i_bias_adapt_a": 0})

    def calibrate_exponential(self) -> None:
        names = self.targeted("exponential")
        goal = np.stack([self.goals[name] for name in names], axis=1)
        guessing = self.exponential_routine(EXPONENTIAL_OBSERVABLES)
        onset = self.goals.get("exp_onset", guessing.onset)
        rate = self.goals.get("exp_rate", np.full(N_NEURONS, GUESS_RATE))
        guess = self._given_initial("exponential")
        if guess is None:
            guess = self._guess(guessing, lambda: exponential_guess(
                guessing, self.device, onset, rate))
        self._search(self.exponential_routine(), "exponential", goal, guess)

    def switch_on(self) -> None:
        """The targeted parts on, the others off; spike-triggered adaptation off unless asked."""
        adaptation = bool(self.targeted("adaptation_a") or self.targeted("adaptation"))
        settings: dict[str, Any] = {
            "adaptation_enable": int(adaptation),
            "exponential_enable": int(bool(self.targeted("exponential"))),
        }
        if adaptation and not self.targeted("adaptation"):
            settings["i_bias_adapt_b"] = 0
        self.session.write(settings)

    def _given_initial(self, part: str) -> np.ndarray | None:
        """Codes (n_neurons, 2) the caller's Bayesian search was given to start from (e.g. an
        earlier calibration's): they replace the measured first guess."""
        initial = getattr(self.algorithms[part], "initial", None)
        if initial is None:
            return None
        codes = np.asarray(initial, dtype=float)
        if codes.shape == (N_NEURONS,):
            codes = codes[:, None]
        return np.broadcast_to(codes, (N_NEURONS, 2)).copy()

    def _guess(self, routine: Routine, guess: Callable[[], np.ndarray]) -> np.ndarray:
        with_retries(routine, routine.prelude, self.device)
        try:
            return with_retries(routine, guess)
        finally:
            routine.postlude(self.device)

    def _search(self, routine: MultiParameterRoutine, part: str, goal: np.ndarray,
                guess: np.ndarray) -> None:
        """The part's search in a window around the guess (which it tries first)."""
        fractions, minimums = WINDOWS[part]
        window = LocalWindow(routine, guess, fractions, minimums)
        algorithm = self.algorithms[part]
        if isinstance(algorithm, BayesianSearch):  # the guess, at the window's centre, first
            algorithm = copy.copy(algorithm)
            algorithm.initial = np.full(guess.shape, LocalWindow.STEPS)
        found = algorithm.run(window, self.device, goal)
        codes = window.codes(found.codes)
        outcome = SearchOutcome(codes, found.measured, found.steps,
                                at_bounds(routine.parameter_ranges, codes), found.reasons)
        self.session.write({name: codes[:, j] for j, name in enumerate(routine.parameters)})
        self._record(routine, outcome)

    def _record(self, routine: Routine, outcome: SearchOutcome) -> None:
        """Codes and bound flags into the session; the spread with every neuron at the median
        code ('before') for each quantity."""
        self.outcomes[routine.name] = outcome
        ranges = search_ranges(routine)
        range_list = (ranges,) if isinstance(ranges, ParameterRange) else ranges
        self.cells[routine.name] = tuple(zip(parameter_names(routine), range_list, strict=True))
        flags = outcome.at_bound if outcome.at_bound is not None else at_bounds(
            ranges, outcome.codes)
        self.session.at_bound[routine.name] = flags
        values = self.session.measure_uniform(routine, outcome.codes).reshape(N_NEURONS, -1)
        names = PART_QUANTITIES[routine.name]
        measured = getattr(routine, "observables", names)
        for column, name in enumerate(measured):
            if name in names:
                self.session.before[name] = values[:, column]

    # -- verification and judgement --------------------------------------------------------------

    def verify(self) -> dict[str, np.ndarray]:
        """Every targeted AdEx quantity measured again with the final configuration."""
        achieved: dict[str, np.ndarray] = {}
        if self.targeted("adaptation_a"):
            achieved["adaptation_a"] = measure_once(SubthresholdAdaptation(), self.device)
        if self.targeted("adaptation"):
            routine = self.adaptation_routine()
            values = measure_once(routine, self.device)
            achieved.update(zip(routine.observables, values.T, strict=True))
        if self.targeted("exponential"):
            routine = self.exponential_routine()
            values = measure_once(routine, self.device)
            achieved.update(zip(routine.observables, values.T, strict=True))
        return achieved

    def problems(self, achieved: dict[str, np.ndarray]) -> dict[int, list[str]]:
        """Neuron -> what is wrong with its AdEx part: off target, failed reads, codes on a
        range bound, a drive the leak cannot reach."""
        problems: dict[int, list[str]] = {}

        def flag(mask: np.ndarray, text: Callable[[int], str]) -> None:
            for neuron in np.flatnonzero(mask):
                problems.setdefault(int(neuron), []).append(text(int(neuron)))

        for name, values in achieved.items():
            if name not in ADEX_QUANTITIES:
                continue
            spec = ADEX_QUANTITIES[name]
            goal = self.goals[name]
            tolerance = spec.tolerance_for(goal)
            flag(~np.isfinite(values), lambda n, q=name: f"{q}: measurement failed")
            miss = np.isfinite(values) & (np.abs(values - goal) > tolerance)
            flag(miss, lambda n, q=name, v=values, g=goal, t=tolerance, u=spec.unit:
                 f"{q}: reached {_fmt(v[n], u)}, target {_fmt(g[n], u)} ± {_fmt(t[n], u)}")
        for part, cells in self.cells.items():
            bound = np.asarray(self.session.at_bound[part]).reshape(N_NEURONS, -1)
            for column, (cell, limits) in enumerate(cells):
                flag(bound[:, column] < 0, lambda n, p=part, c=cell, v=limits.low:
                     f"{p}: {c} at lower bound {v}")
                flag(bound[:, column] > 0, lambda n, p=part, c=cell, v=limits.high:
                     f"{p}: {c} at upper bound {v}")
        for part, clipped in self.drive_clipped.items():
            flag(clipped, lambda n, p=part: f"{p}: a drive lies above the leak's range")
        return problems


def _fmt(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1e6:.3g} us"
    if unit == "Hz":
        return f"{value / 1e3:.3g} kHz"
    return f"{value:.3g} {unit}"
