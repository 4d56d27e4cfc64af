"""AdEx calibration: subthreshold adaptation, spike-frequency adaptation and the exponential term,
on top of a calibrated LIF working point (leak, threshold, reset, tau_mem, refractory time).

The plans at the bottom declare the AdEx quantities; they run after the refractory time and
before the final leak step when a target asks for them, and are verified and judged like every
quantity.
Each part is measured with the others switched off (its definition in `calib.core.targets`), then
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
from typing import TYPE_CHECKING, Any

import numpy as np

from calib.algorithms import BayesianSearch, NoiseRobustBinarySearch
from calib.algorithms.base import (
    Algorithm,
    MultiParameterRoutine,
    SearchOutcome,
    at_bounds,
    measure_once,
    with_retries,
)
from calib.core.failures import Failure, FailureKind
from calib.core.plans import PLANS, CalibrationContext, Plan, QuantitySpec, register_plan
from calib.core.routine import ParameterRange, Routine
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
from device_model.protocol import CAPMEM_MAX, N_NEURONS, Device

if TYPE_CHECKING:
    from calib.core.targets import NeuronTarget

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
WINDOWS = {
    "adaptation": ((0.4, 0.4), (40, 16)),
    "exponential": ((0.5, 0.0), (150, 12)),
}
"""Search window around the first guess per part: (fraction of the guessed code, fewest codes)
each side, per parameter (the guesses land within about a quarter of the needed codes; v_exp
within a few codes, its onset being nearly linear in it)."""


def bayesian_search(part: str) -> Callable[[NeuronTarget], Algorithm]:
    """The default search of a two-quantity part: Bayesian, aiming inside the tolerances."""

    def build(target: NeuronTarget) -> Algorithm:
        names = [name for name in PART_QUANTITIES[part] if getattr(target, name) is not None]
        return BayesianSearch(
            budget=BAYESIAN_BUDGET, tolerance=search_tolerance(target, names), relative=True, seed=0
        )

    return build


def search_tolerance(target: NeuronTarget, names: list[str]) -> np.ndarray:
    """Relative tolerances for a search over `names`: SEARCH_TOLERANCE_FRACTION of the stated
    ones, an absolute tolerance taken relative to the largest target (the strictest)."""
    tolerances = []
    for name in names:
        spec = PLANS.quantities()[name]
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
            f"{EXP_ONSET_MARGIN:g} LSB above the leak and below the threshold)"
        )


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

    def __init__(
        self,
        routine: MultiParameterRoutine,
        centre: np.ndarray,
        fractions: tuple[float, ...],
        minimums: tuple[int, ...],
    ) -> None:
        self.routine = routine
        self.name = routine.name
        self.parameters = routine.parameters
        self.centre = np.asarray(centre, dtype=float)
        half = np.maximum(np.array(minimums, dtype=float), np.array(fractions) * self.centre)
        self.step = np.maximum(half / self.STEPS, 1.0)
        self.parameter_ranges = tuple(ParameterRange(0, 2 * self.STEPS) for _ in self.parameters)

    def codes(self, offsets: np.ndarray) -> np.ndarray:
        """Cell codes of window offsets (n_units, n_params)."""
        codes = self.centre + (np.asarray(offsets, dtype=float) - self.STEPS) * self.step
        return np.stack(
            [limits.clip(codes[:, j]) for j, limits in enumerate(self.routine.parameter_ranges)],
            axis=1,
        )

    def prelude(self, device: Device) -> None:
        self.routine.prelude(device)

    def apply(self, device: Device, codes: np.ndarray) -> None:
        self.routine.apply(device, self.codes(codes))

    def measure(self, device: Device) -> np.ndarray:
        return self.routine.measure(device)

    def postlude(self, device: Device) -> None:
        self.routine.postlude(device)


class AdExParts:
    """The AdEx steps of one neuron calibration, on its context (device, goals, codes)."""

    def __init__(self, session: CalibrationContext) -> None:
        self.session = session
        self.target = session.target
        self.goals = session.goals
        self.outcomes: dict[str, SearchOutcome] = {}
        """Routine name -> its search's outcome (codes, last measured values, steps)."""
        self.drive_clipped: dict[str, np.ndarray] = {}

    @classmethod
    def of(cls, session: CalibrationContext) -> AdExParts:
        """The context's AdEx parts (made on first use)."""
        parts = session.state.get("adex")
        if parts is None:
            parts = session.state["adex"] = cls(session)
        return parts

    def algorithm(self, part: str) -> Algorithm:
        return self.session.algorithm(part, PLANS[part])

    @property
    def device(self) -> Device:
        return self.session.device

    def targeted(self, part: str) -> tuple[str, ...]:
        return tuple(name for name in PART_QUANTITIES[part] if name in self.target.adex)

    # -- routines built from the LIF working point ----------------------------------------------

    def _beyond_leak_range(self, part: str, codes: np.ndarray, *potentials: np.ndarray) -> None:
        """Note the neurons whose leak cannot be raised to every drive of `part`."""
        highest = np.max(np.stack(potentials), axis=0)
        self.drive_clipped[part] = codes + (highest - self.goals["leak"]) * CODES_PER_LSB > (
            CAPMEM_MAX + 0.5
        )

    def adaptation_routine(self) -> SpikeFrequencyAdaptation:
        codes = self.device.read_settings(["v_leak"])["v_leak"]
        drive = reference_drive(self.goals["threshold"], self.goals["reset"])
        self._beyond_leak_range("adaptation", codes, drive)
        longest = float(np.max(self.goals.get("adaptation_time", np.full(N_NEURONS, GUESS_TIME))))
        return SpikeFrequencyAdaptation(
            drive_codes(codes, self.goals["leak"], drive), longest, self.targeted("adaptation")
        )

    def exponential_routine(self, observables: tuple[str, ...] | None = None) -> ExponentialTerm:
        codes = self.device.read_settings(["v_leak"])["v_leak"]
        onset = self.goals.get("exp_onset")
        if onset is None:  # only the rate targeted: centre the bisection between the potentials
            onset = 0.5 * (self.goals["leak"] + self.goals["threshold"])
        rate = self.goals.get("exp_rate", np.full(N_NEURONS, GUESS_RATE))
        self._beyond_leak_range("exponential", codes, onset, self.goals["threshold"])
        return ExponentialTerm(
            codes,
            self.goals["leak"],
            self.goals["threshold"],
            onset,
            0.5 * float(np.min(rate)),
            observables or self.targeted("exponential"),
        )

    # -- steps ----------------------------------------------------------------------------------

    def calibrate_a(self) -> None:
        routine = SubthresholdAdaptation()
        goal = self.goals["adaptation_a"]
        outcome = self.algorithm("adaptation_a").run(routine, self.device, goal)
        # a = 0 is code 0 exactly: no search needed, and the bound is no failure there.
        codes = np.where(goal > 0, outcome.codes, 0)
        self.session.write({routine.parameter: codes})
        bound = routine.parameter_range.at_bound(codes)
        self._record(
            routine,
            SearchOutcome(
                codes,
                outcome.measured,
                outcome.steps,
                np.where(goal > 0, bound, 0),
                outcome.reasons,
                notes=outcome.notes,
            ),
        )

    def calibrate_adaptation(self) -> None:
        routine = self.adaptation_routine()
        names = self.targeted("adaptation")
        goal = np.stack([self.goals[name] for name in names], axis=1)
        ratio = self.goals.get("adaptation_ratio", np.full(N_NEURONS, GUESS_RATIO))
        time = self.goals.get("adaptation_time", np.full(N_NEURONS, GUESS_TIME))
        guess = self._given_initial("adaptation")
        if guess is None:
            guess = self._guess(
                routine, lambda: adaptation_guess(routine, self.device, ratio, time)
            )
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
            guess = self._guess(
                guessing, lambda: exponential_guess(guessing, self.device, onset, rate)
            )
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
        algorithm = self.session.overrides.get(part)
        initial = getattr(algorithm, "initial", None) if algorithm is not None else None
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

    def _search(
        self, routine: MultiParameterRoutine, part: str, goal: np.ndarray, guess: np.ndarray
    ) -> None:
        """The part's search in a window around the guess (which it tries first)."""
        fractions, minimums = WINDOWS[part]
        window = LocalWindow(routine, guess, fractions, minimums)
        algorithm = self.algorithm(part)
        if isinstance(algorithm, BayesianSearch):  # the guess, at the window's centre, first
            algorithm = copy.copy(algorithm)
            algorithm.initial = np.full(guess.shape, LocalWindow.STEPS)
        found = algorithm.run(window, self.device, goal)
        codes = window.codes(found.codes)
        outcome = SearchOutcome(
            codes,
            found.measured,
            found.steps,
            at_bounds(routine.parameter_ranges, codes),
            found.reasons,
            notes=found.notes,
        )
        self.session.write({name: codes[:, j] for j, name in enumerate(routine.parameters)})
        self._record(routine, outcome)

    def _record(self, routine: Routine, outcome: SearchOutcome) -> None:
        """Codes, bound flags and the spread with every neuron at the median code."""
        self.outcomes[routine.name] = outcome
        self.session.record(PLANS[routine.name], routine, outcome)

    # -- verification and judgement --------------------------------------------------------------

    def unreachable(self) -> list[Failure]:
        """Neurons whose leak cannot be raised to a drive of a part (their part cannot be
        measured as defined)."""
        return [
            Failure(
                int(neuron),
                part,
                FailureKind.UNREACHABLE,
                note="a drive lies above the leak's range",
            )
            for part, clipped in self.drive_clipped.items()
            for neuron in np.flatnonzero(clipped)
        ]


# -- plans ----------------------------------------------------------------------------------
# Ranges: what the simulated chip reaches at the default LIF working point (tau_mem 10 us, 63
# capacitance units, refractory time 2 us). a / g_leak: up to 0.4 for nearly every neuron (a
# faster membrane, a larger g_leak, lowers that). Ratio and time: 95 to 99 % of the neurons
# anywhere in the box (the fewest at ratio 0.9, where the rate drop is small and the time
# scatters most). Onset: anywhere between leak and threshold (checked when the target is made).
# Rate: a band about +-8 % wide set by the onset: ~80 kHz at onset 95 LSB, 70 at 100, 60 at 105,
# 48 at 110. Tolerances: several times the measurements' scatter (a / g_leak 0.003, ratio
# 0.35 %, time 2 % at ratio 0.8 and 4.5 % at 0.9, onset 0.2 LSB, rate 0.2 %).

ADEX_AFTER = ("threshold", "refractory_time")
"""The AdEx parts are measured through spiking, on the calibrated LIF working point."""


def _targets(part: str) -> Callable[[NeuronTarget], bool]:
    return lambda target: any(getattr(target, name) is not None for name in PART_QUANTITIES[part])


def _verify_part(part: str) -> Callable[[CalibrationContext], dict[str, np.ndarray]]:
    def verify(context: CalibrationContext) -> dict[str, np.ndarray]:
        parts = AdExParts.of(context)
        if part == "adaptation_a":
            return {"adaptation_a": measure_once(SubthresholdAdaptation(), context.device)}
        routine = (
            parts.adaptation_routine() if part == "adaptation" else (parts.exponential_routine())
        )
        values = measure_once(routine, context.device)
        return dict(zip(routine.observables, values.T, strict=True))

    return verify


def _judge_part(part: str) -> Callable[[CalibrationContext, dict[str, np.ndarray]], list[Failure]]:
    def judge(context: CalibrationContext, achieved: dict[str, np.ndarray]) -> list[Failure]:
        return [
            failure for failure in AdExParts.of(context).unreachable() if failure.quantity == part
        ]

    return judge


def _any_adex(target: NeuronTarget) -> bool:
    return any(
        getattr(target, name) is not None for names in PART_QUANTITIES.values() for name in names
    )


ADAPTATION_A = register_plan(
    Plan(
        name="adaptation_a",
        rank=13,
        quantities=(
            QuantitySpec(
                "adaptation_a",
                "g_leak",
                0.0,
                0.4,
                0.02,
                relative=False,
                description="subthreshold adaptation a as a fraction of the leak conductance "
                "(a / g_leak), from the membrane's steady response to a current step",
                long_name="subthreshold adaptation",
            ),
        ),
        cells=("i_bias_adapt_a",),
        action=lambda context, plan: AdExParts.of(context).calibrate_a(),
        algorithm=lambda target: NoiseRobustBinarySearch(),
        after=ADEX_AFTER,
        applies=_targets("adaptation_a"),
        verify=_verify_part("adaptation_a"),
        judge=_judge_part("adaptation_a"),
        lif_part=False,
    )
)
ADAPTATION = register_plan(
    Plan(
        name="adaptation",
        rank=14,
        quantities=(
            QuantitySpec(
                "adaptation_ratio",
                "f/f0",
                0.75,
                0.9,
                0.03,
                relative=True,
                description="spike-frequency adaptation: the adapted firing rate over the rate "
                "without adaptation, under the reference drive (the leak raised to "
                "threshold + (threshold - reset))",
                long_name="adaptation ratio",
            ),
            QuantitySpec(
                "adaptation_time",
                "s",
                28e-6,
                40e-6,
                0.12,
                relative=True,
                description="time constant of the firing rate's relaxation to its adapted value, "
                "same drive",
                long_name="adaptation time constant",
            ),
        ),
        cells=("i_bias_adapt_b", "i_bias_adapt_tau"),
        action=lambda context, plan: AdExParts.of(context).calibrate_adaptation(),
        algorithm=bayesian_search("adaptation"),
        after=(*ADEX_AFTER, "adaptation_a"),
        applies=_targets("adaptation"),
        verify=_verify_part("adaptation"),
        judge=_judge_part("adaptation"),
        lif_part=False,
    )
)
EXPONENTIAL = register_plan(
    Plan(
        name="exponential",
        rank=15,
        quantities=(
            QuantitySpec(
                "exp_onset",
                "CADC LSB",
                60.0,
                200.0,
                1.5,
                relative=False,
                description="exponential term: the leak potential above which the neuron fires "
                "tonically (its rheobase, as a potential); between leak and threshold",
                long_name="exponential onset",
            ),
            QuantitySpec(
                "exp_rate",
                "Hz",
                20e3,
                120e3,
                0.04,
                relative=True,
                description="exponential term: the firing rate with the leak potential at the "
                "threshold, where a plain LIF neuron stays silent",
                long_name="exponential firing rate",
            ),
        ),
        cells=("i_bias_exp", "v_exp"),
        action=lambda context, plan: AdExParts.of(context).calibrate_exponential(),
        algorithm=bayesian_search("exponential"),
        after=(*ADEX_AFTER, "adaptation"),
        applies=_targets("exponential"),
        verify=_verify_part("exponential"),
        judge=_judge_part("exponential"),
        lif_part=False,
        extra={"check_target": check_adex_target},
    )
)
ADEX_SWITCHES = register_plan(
    Plan(
        name="adex_switches",
        rank=16,
        action=lambda context, plan: AdExParts.of(context).switch_on(),
        after=("adaptation_a", "adaptation", "exponential"),
        applies=_any_adex,
        recalibratable=False,
        lif_part=False,
    )
)
