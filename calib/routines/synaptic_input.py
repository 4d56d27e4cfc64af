"""Synaptic inputs, excitatory and inhibitory: time constant, gain and reference.

- Time constant: the membrane's response to short bursts of events, recorded with the MADC,
  folded over the burst period and averaged, and fitted after the burst as two exponentials
  (observables.two_decays), the membrane's measured once in the prelude with the same settings
  and refitted where the sampling resolves it. The membrane is made faster than the target and
  its capacitance is chosen from the target so the PSP is about equally high at every tau_syn.
  The high-resistance switch is chosen from the target.
- Gain: the PSP amplitude of a fixed event train, read on the CADC at the response's peak time.
- Reference: enabling an input shifts the resting potential by an offset current; the input's
  shift cell cancels it, so the resting potential with the input on equals the leak target.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import ArrayLike

from calib.algorithms import BinarySearch
from calib.algorithms.fitting import FittingSearch
from calib.core.plans import (
    PLANS,
    CalibrationContext,
    Plan,
    QuantitySpec,
    SettingSpec,
    register_plan,
)
from calib.core.routine import Routine
from calib.core.targets import NeuronTarget
from calib.routines.cadc import CODES_PER_LSB
from calib.routines.membrane import (
    RELEASE_TIME,
    SWEEP_FASTEST,
    SWEEP_SLOWEST,
    bin_factor,
    cadc_decays_usable,
    decay_reset,
    record_decays,
)
from calib.routines.nominal import (
    CAPACITANCE_UNIT,
    HIGH_RESISTANCE_ABOVE,
    INTRINSIC_CAPACITANCE,
    MAX_MEMBRANE_CAPACITANCE,
    leak_bias_code,
    leak_switches,
    membrane_capacitance,
    one_step_stronger,
    per_neuron,
    synapse_bias_code,
)
from device_model.protocol import (
    CAPMEM_MAX,
    MADC_INVALID_TIME,
    MADC_SAMPLE_RATE,
    N_NEURONS,
    Device,
    Trace,
)
from device_model.stimuli import SynapticEvents
from observables.cadc import cadc_mean, timed_group_means, unclipped
from observables.cadc_decay import cadc_decay_time_constants
from observables.cadc_psp import cadc_psp_time_constants
from observables.traces import bin_trace, select_window
from observables.two_decays import fit_known_and_free_decay

EVENT_TIME = MADC_INVALID_TIME + 2e-6
BURST_EVENTS = 8
BURST_SPACING = 20e-9
"""A short burst acts as one strong event and lifts the PSP well above the MADC noise. The fit
starts after its last event, where the response is exactly two exponentials (the burst's
shape only sets their amplitudes)."""
BURST_PERIOD_TIME_CONSTANTS = 7.0
"""Bursts repeat every this many of the longest target time constant; the recording is folded
over the period and averaged (the earlier bursts' tails are exponentials of the same two time
constants, so the average keeps the model exact)."""
BURSTS_RECORDED_TIME = 200e-6
"""Bursts are repeated to fill about this long a recording: a run's fixed cost dominates a
short recording, so short time constants get many bursts averaged for the price of one."""
SHORT_RECORDING_BELOW = 1e-6
"""Below this tau_syn the membrane capacitance is already at its least (`membrane_capacitance_
for`), so the PSP, and with it the fit's precision, falls in proportion to the constant
(0.25 % a read at 1 us, 1.1 % at 0.3 us on a noisier chip): a group whose shortest target
lies below records for the square of the ratio longer, which keeps the precision."""
MAX_RECORDING_FACTOR = 8.0
"""At most this factor longer (0.4 % at 0.3 us; each MADC recording of all neurons then
takes about 0.67 s instead of 0.31 s, its runs' fixed cost shared)."""
MEMBRANE_FRACTION = 0.2
"""The membrane is made this much faster than the tau_syn target: the PSP's tail then decays
with tau_syn, and an error of the membrane constant hardly moves the fitted tau_syn."""
PSP_GOAL = 100.0
"""Nominal PSP height (MADC LSB) the membrane capacitance is chosen for: high above the noise,
and with the neurons' spread still inside the MADC range (an inhibitory PSP goes down)."""
NOMINAL_TAIL_PER_SECOND = 5.5e6
"""Nominal PSP height (MADC LSB) per second of tau_syn with the full membrane capacitance, the
strongest gm bias, the burst and MEMBRANE_FRACTION (design figure): the charge grows with
tau_syn, the height falls with the capacitance."""
INHIBITORY_HEADROOM = 250
"""Leak codes (about 0.44 V) the inhibitory input's measurement raises the leak by, where the
leak's level is not known."""
INHIBITORY_LEAK = 184.0
"""Leak potential (CADC LSB) the inhibitory input's measurement raises every neuron to where
its calibrated leak is known (the default leak 80 raised by INHIBITORY_HEADROOM): room for the
PSP below, and the membrane reading below the CADC's compressed top (above about 200 LSB),
whatever the leak target."""
SLOW_MEMBRANE = 1.3
"""A measurement membrane slower than this many times its plan gets a corrective step."""
MEMBRANE_CORRECTIONS = 2
"""Corrective steps at most: a membrane far slower than planned reads faster than it is on
a ladder set for the plan (41 us where it was near 190 us), and one step scaled by that
reading left it at 4.5x the plan, where its two decays blur: a 30 us tau_syn search read NaN
or 10 % off there and ended at 25.8 us."""
BLURRED_MEMBRANE = 2.5
"""... the second only where a membrane is still this many times slower than planned (its
decay nears the synaptic one's): each step costs a write and a ladder in every prelude."""
MEMBRANE_SAMPLES = 256
"""CADC repetitions per read of the fast membrane's decay: about 0.5 % per neuron."""
FAST_MEMBRANE_LADDER = 0.25
"""Neurons the membrane reading leaves without a value are read again with the ladder of read
times at this fraction of the plan: a membrane a few times faster than planned (a strong leak
conductance) has decayed before the ladder's later reads. Given the median instead, such a
neuron's tau_syn came out 4 to 6 % short (a ladder costs about 20 ms)."""
MEMBRANE_RECORDINGS = 6.0
"""Where the CADC cannot read it, the fast membrane's decay is recorded with the MADC for
this many of its target time constants."""
SWEEP_SAMPLES = 128
"""CADC repetitions per read of a sweep's PSP tails at SWEEP_REFERENCE and longer: about 0.6 %
per neuron (median), where the sweep only places the model."""
COARSE_EVENT_TIME = 1e-6
"""The coarse reading's burst comes this soon after a run starts (the CADC has no invalid
start like the MADC's): every repetition of a read lasts until its read time."""
SWEEP_REFERENCE = 2e-6
"""Shorter targets get proportionally more repetitions (a short tail spans fewer CADC steps;
its reads are short, so the extra repetitions cost little): about 1 % at 0.3 us."""
REFIT_MEMBRANE_SAMPLES = 3.0
"""A membrane constant of at least this many MADC samples is fitted along with tau_syn (its
measurement's error then drops out); a faster one is held at its measured value."""


def membrane_capacitance_for(tau_syn: ArrayLike) -> np.ndarray:
    """Capacitance units per neuron giving a PSP of about PSP_GOAL for its tau_syn target."""
    full = NOMINAL_TAIL_PER_SECOND * per_neuron(tau_syn)
    ratio = np.clip(full / PSP_GOAL, 0.0, 1.0)
    farad = ratio * float(membrane_capacitance(MAX_MEMBRANE_CAPACITANCE))
    units = (farad - INTRINSIC_CAPACITANCE) / CAPACITANCE_UNIT
    return np.clip(np.rint(units), 0, MAX_MEMBRANE_CAPACITANCE).astype(np.int64)


GAIN_TRAIN_START = 2e-6
GAIN_TRAIN_EVENTS = 5
GAIN_TRAIN_SPACING = 1e-6
GAIN_SAMPLES = 40
"""Timed CADC reads per PSP reading at the least: ample for a PSP of about 10 LSB or more."""
BASELINE_SAMPLES = 100
PSP_READ_NOISE = 1.5
"""CADC read noise (LSB) a PSP reading's sample count is sized for: the design's 1 LSB, with
room for noisier chips."""
PSP_PRECISION = 0.02
"""A PSP reading's noise as a fraction of the PSP: about an eighth of the 15 % tolerance, so
that only a neuron on the edge of tolerance can be read across it (a 2 LSB PSP takes ~2800
reads)."""
MAX_GAIN_SAMPLES = 4000
VERIFY_SAMPLE_FACTOR = 4
"""The verification reads a PSP amplitude with this many times the search's repetitions."""
REFERENCE_SAMPLES = 200
PSP_ROOM = 20.0
"""CADC LSB an inhibitory PSP twice as large as expected must leave above the CADC's bottom
at the neuron's leak; with less room it is read from a raised leak (`SynapticGain`)."""


def _prefix(inhibitory: bool) -> str:
    return "syn_inh" if inhibitory else "syn_exc"


def _bias(inhibitory: bool, kind: str) -> str:
    return f"i_bias_{_prefix(inhibitory)}_{kind}"


def raised_leak(device: Device, leak: np.ndarray | None) -> np.ndarray:
    """Leak codes that lift every neuron from its calibrated `leak` (CADC LSB) to
    INHIBITORY_LEAK, or by INHIBITORY_HEADROOM codes where the leak is not known: room below
    for an inhibitory PSP."""
    v_leak = device.read_settings(["v_leak"])["v_leak"]
    raised = (
        np.full(N_NEURONS, float(INHIBITORY_HEADROOM))
        if leak is None
        else np.rint(np.maximum(INHIBITORY_LEAK - leak, 0.0) * CODES_PER_LSB)
    )
    return np.clip(v_leak + raised.astype(np.int64), 0, CAPMEM_MAX)


def input_switches(inhibitory: bool) -> dict[str, int]:
    """Only the input under calibration connected."""
    return {"syn_inh_enable": int(inhibitory), "syn_exc_enable": int(not inhibitory)}


class SynapticTimeConstant(Routine):
    """tau_syn = C_syn / g_syn, set by the input's tau bias (higher bias: faster)."""

    inverted = True

    def __init__(self, target: ArrayLike, inhibitory: bool, leak: ArrayLike | None = None) -> None:
        """`leak`: the calibrated leak potential (CADC LSB), which sets how far the inhibitory
        measurement raises it (INHIBITORY_LEAK; unknown: INHIBITORY_HEADROOM codes)."""
        self.inhibitory = inhibitory
        self.leak = None if leak is None else per_neuron(leak)
        self.name = f"tau_{_prefix(inhibitory)}"
        self.parameter = _bias(inhibitory, "tau")
        self.kept_settings = (f"{_prefix(inhibitory)}_high_resistance",)
        self.target = per_neuron(target)
        groups = time_constant_groups(self.target)
        self.recordings = [BurstRecording.for_targets(g, self.target[g]) for g in groups]
        # The sweep only places the model: where it falls back on the MADC it records for
        # the base time, however short the targets.
        self.sweep_recordings = [
            BurstRecording.for_targets(g, self.target[g], precise=False) for g in groups
        ]
        self.tau_mem: np.ndarray | None = None
        membrane_tau = MEMBRANE_FRACTION * self.target
        capacitance = membrane_capacitance_for(self.target)
        switches = leak_switches(membrane_tau)
        code = leak_bias_code(
            membrane_tau, capacitance, switches["leak_divide"], switches["leak_multiply"]
        )
        self.membrane = {
            **switches,
            "i_bias_leak": np.clip(np.rint(np.minimum(code, CAPMEM_MAX)), 1, CAPMEM_MAX).astype(
                np.int64
            ),
            "membrane_capacitance": capacitance,
        }

    HINT_SPREAD = (1.6, 1.0, 0.6)
    """Sweep codes as factors of the nominal code: they bracket the per-neuron gain spread
    (lognormal, sigma ~0.25). In order from the fast end (next to the prelude's last code),
    so that each write jumps little: a large jump leaves a CapMem settling error in the read
    after it."""

    def sweep_hint(self, target: ArrayLike, device: Device | None = None) -> np.ndarray:
        """Tau bias codes worth sweeping for `target`, shape (len(HINT_SPREAD), N_NEURONS): a
        nominal input's code for it, spread. The high-resistance switch is read from `device`
        where given, else taken as the target sets it."""
        target = per_neuron(target)
        switch = f"{_prefix(self.inhibitory)}_high_resistance"
        high = (
            device.read_settings([switch])[switch]
            if device is not None
            else target > HIGH_RESISTANCE_ABOVE
        )
        code = synapse_bias_code(target, high)
        return self.parameter_range.clip(np.outer(self.HINT_SPREAD, code))

    def measurement_settings(self, device: Device) -> dict[str, ArrayLike]:
        high = (self.target > HIGH_RESISTANCE_ABOVE).astype(np.int64)
        settings: dict[str, ArrayLike] = {
            "threshold_enable": 0,
            "reset_hold": 0,
            **input_switches(self.inhibitory),
            f"{_prefix(self.inhibitory)}_high_resistance": high,
            _bias(self.inhibitory, "gm"): CAPMEM_MAX,
            **self.membrane,
        }
        if self.inhibitory:
            # An inhibitory PSP goes down, towards the lower rail a few hundred mV below a
            # usual leak; a strong input clipped there no longer has the two decays' shape.
            settings["v_leak"] = raised_leak(device, self.leak)
        return settings

    def prelude(self, device: Device) -> None:
        super().prelude(device)
        v_leak = device.read_settings(["v_leak"])["v_leak"]
        saved_reset = device.read_settings(["v_reset"])
        device.write({"v_reset": decay_reset(v_leak)})
        membrane = MEMBRANE_FRACTION * self.target
        # Read with the CADC: a few runs where an MADC recording takes 256; the PSP fit
        # refines it where the membrane spans enough MADC samples (REFIT_MEMBRANE_SAMPLES).
        tau_mem = cadc_decay_time_constants(device, membrane, MEMBRANE_SAMPLES, RELEASE_TIME)
        present, aim = None, None
        for step in range(MEMBRANE_CORRECTIONS):
            limit = SLOW_MEMBRANE if step == 0 else BLURRED_MEMBRANE
            if not (cadc_decays_usable(tau_mem) and np.any(tau_mem > limit * membrane)):
                break
            # A neuron whose membrane stays far slower than planned blurs its two decays
            # into one: a corrective step on its leak settings, then read again.
            present, aim = self.faster_membrane(tau_mem, membrane, present, aim)
            device.write(present)
            tau_mem = cadc_decay_time_constants(device, membrane, MEMBRANE_SAMPLES, RELEASE_TIME)
        if cadc_decays_usable(tau_mem) and not np.all(np.isfinite(tau_mem)):
            faster = cadc_decay_time_constants(
                device, FAST_MEMBRANE_LADDER * membrane, MEMBRANE_SAMPLES, RELEASE_TIME
            )
            tau_mem = np.where(np.isfinite(tau_mem), tau_mem, faster)
        if not cadc_decays_usable(tau_mem):
            tau_mem = record_decays(
                device, MEMBRANE_RECORDINGS * float(membrane.max()), 0.5 * float(membrane.min())
            )
        device.write(saved_reset)
        # A neuron without a valid membrane fit gets the median; its PSP fit will show it.
        self.tau_mem = np.where(np.isfinite(tau_mem), tau_mem, np.nanmedian(tau_mem))

    def faster_membrane(
        self,
        measured: np.ndarray,
        wanted: np.ndarray,
        present: dict[str, np.ndarray] | None = None,
        aim: np.ndarray | None = None,
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Leak settings for the neurons whose measurement membrane came out slower than
        SLOW_MEMBRANE x `wanted` with the `present` settings (default: the plan's), set for
        `aim` (default `wanted`): the nominal code for the aim scaled by the neuron's
        shortfall (its conductance gain), with stronger switches, a step at a time, where that
        code lies beyond the range; the others keep theirs. Returns the settings and the new aim."""
        present = present or {
            name: self.membrane[name] for name in ("i_bias_leak", "leak_divide", "leak_multiply")
        }
        aim = wanted if aim is None else aim
        slow = np.isfinite(measured) & (measured > SLOW_MEMBRANE * wanted)
        aim = np.where(slow, aim * wanted / np.where(slow, measured, 1.0), aim)
        capacitance = self.membrane["membrane_capacitance"]
        switches = {name: present[name] for name in ("leak_divide", "leak_multiply")}
        code = leak_bias_code(aim, capacitance, switches["leak_divide"], switches["leak_multiply"])
        for _ in range(2):  # divide -> neither -> multiply, as far as the code needs
            beyond = slow & ~(code <= CAPMEM_MAX)
            if not beyond.any():
                break
            switches = one_step_stronger(switches, beyond)
            code = leak_bias_code(
                aim, capacitance, switches["leak_divide"], switches["leak_multiply"]
            )
        new_code = np.clip(np.rint(np.minimum(code, CAPMEM_MAX)), 1, CAPMEM_MAX).astype(np.int64)
        return {"i_bias_leak": np.where(slow, new_code, present["i_bias_leak"]), **switches}, aim

    def measure_coarse(self, device: Device) -> np.ndarray:
        """The tails of single bursts read with the CADC (tens of ms where the MADC recordings
        of all neurons take about 0.3 s), for a sweep that only places the model; the MADC
        recordings where the CADC reads too few neurons."""
        assert self.tau_mem is not None
        burst = COARSE_EVENT_TIME + BURST_SPACING * np.arange(BURST_EVENTS)
        stimulus = SynapticEvents(tuple(burst), inhibitory=self.inhibitory)
        expected = np.concatenate([SWEEP_FASTEST * self.target, SWEEP_SLOWEST * self.target])
        samples = round(SWEEP_SAMPLES * max(1.0, SWEEP_REFERENCE / float(self.target.min())))
        tau = cadc_psp_time_constants(device, stimulus, self.tau_mem, expected, samples)
        if cadc_decays_usable(tau):
            return tau
        return self._record(device, np.arange(device.n_neurons), self.sweep_recordings)

    def measure(self, device: Device) -> np.ndarray:
        """One recording per group of neurons with similar targets (each records only its
        neurons, so the groups together cost about the runs of one recording of all)."""
        return self.measure_neurons(device, np.arange(device.n_neurons))

    def measure_neurons(self, device: Device, neurons: np.ndarray) -> np.ndarray:
        """As `measure`, recording only `neurons` (NaN for the others)."""
        return self._record(device, neurons, self.recordings)

    def _record(
        self, device: Device, neurons: np.ndarray, recordings: list[BurstRecording]
    ) -> np.ndarray:
        assert self.tau_mem is not None
        tau = np.full(device.n_neurons, np.nan)
        for recording in recordings:
            chosen = np.intersect1d(recording.neurons, neurons)
            if chosen.size == 0:
                continue
            subset = replace(recording, neurons=chosen)
            tau[chosen] = subset.fit(device, self.tau_mem[chosen], inhibitory=self.inhibitory)
        return tau


GROUP_RATIO = 8.0
"""Neurons whose tau_syn targets lie within this factor share a recording: its burst period
follows the group's longest target, so a short target among long ones would get one burst
where a recording of its own averages many."""


def time_constant_groups(target: np.ndarray) -> list[np.ndarray]:
    """Neuron indices grouped by target, each group spanning at most GROUP_RATIO."""
    order = np.argsort(target, kind="stable")
    ordered = target[order]
    groups, start = [], 0
    while start < ordered.size:
        end = int(np.searchsorted(ordered, ordered[start] * GROUP_RATIO, side="right"))
        groups.append(np.sort(order[start:end]))
        start = end
    return groups


def recording_time(target: np.ndarray) -> float:
    """How long the bursts of a group with these targets are recorded for (s)."""
    ratio = SHORT_RECORDING_BELOW / float(np.min(target))
    return BURSTS_RECORDED_TIME * float(np.clip(ratio**2, 1.0, MAX_RECORDING_FACTOR))


@dataclass(frozen=True)
class BurstRecording:
    """The burst recording of one group of neurons: bursts every `period` (BURST_PERIOD_
    TIME_CONSTANTS of its longest target), as many as fill BURSTS_RECORDED_TIME (longer for
    short targets, `recording_time`)."""

    neurons: np.ndarray
    period_samples: int
    bursts: int

    @classmethod
    def for_targets(
        cls, neurons: np.ndarray, target: np.ndarray, precise: bool = True
    ) -> BurstRecording:
        """`precise`: recorded for `recording_time(target)`, else for BURSTS_RECORDED_TIME."""
        samples = max(
            1, round(BURST_PERIOD_TIME_CONSTANTS * float(target.max()) * MADC_SAMPLE_RATE)
        )
        period = samples / MADC_SAMPLE_RATE
        recorded = recording_time(target) if precise else BURSTS_RECORDED_TIME
        return cls(neurons, samples, max(1, int(recorded // period)))

    @property
    def period(self) -> float:
        return self.period_samples / MADC_SAMPLE_RATE

    @property
    def duration(self) -> float:
        return EVENT_TIME + self.bursts * self.period

    def fit(self, device: Device, tau_mem: np.ndarray, *, inhibitory: bool) -> np.ndarray:
        """tau_syn of the group's neurons (NaN where the fit failed), their membrane constants
        `tau_mem` known."""
        burst = BURST_SPACING * np.arange(BURST_EVENTS)
        starts = EVENT_TIME + self.period * np.arange(self.bursts)
        stimulus = SynapticEvents(
            tuple((starts[:, None] + burst[None, :]).ravel()), inhibitory=inhibitory
        )
        trace = device.record_madc(self.neurons, self.duration, stimulus)
        folded = fold_bursts(trace, EVENT_TIME, self.period_samples, self.bursts)
        shortest = float(np.min(tau_mem))
        binned = bin_trace(folded, bin_factor(shortest))
        interval = 1.0 / MADC_SAMPLE_RATE
        return fit_known_and_free_decay(
            select_window(binned, EVENT_TIME),
            EVENT_TIME + float(burst[-1]),
            tau_mem,
            start_time=EVENT_TIME,
            refit_known=tau_mem >= REFIT_MEMBRANE_SAMPLES * interval,
            tau_range=(0.5 * interval, 20 * self.period),
        )["tau"]


def fold_bursts(trace: Trace, start: float, period_samples: int, bursts: int) -> Trace:
    """The recording from `start` on, cut into `bursts` periods of `period_samples` samples
    and averaged: one period's response, at the times of the first."""
    first = int(np.searchsorted(trace.times, start - 0.5 / MADC_SAMPLE_RATE))
    used = first + bursts * period_samples
    codes = np.asarray(trace.codes[:, first:used], dtype=float)
    codes = codes.reshape(codes.shape[0], bursts, period_samples).mean(axis=1)
    valid = np.asarray(trace.valid)
    valid = (
        valid[first:used].reshape(bursts, period_samples).all(axis=0)
        if valid.ndim == 1
        else valid[:, first:used].reshape(-1, bursts, period_samples).all(axis=1)
    )
    return Trace(
        neurons=trace.neurons,
        times=trace.times[first : first + period_samples],
        codes=codes,
        valid=valid,
    )


def train_curve(tau_mem: float, tau_syn: float) -> tuple[np.ndarray, np.ndarray]:
    """(times after the train's start, nominal membrane response per unit charge rate) to the
    gain train: the sum over its events of tau_m tau_s / (tau_m - tau_s)
    (exp(-s/tau_m) - exp(-s/tau_s))."""
    t = np.linspace(0.0, GAIN_TRAIN_SPACING * GAIN_TRAIN_EVENTS + 5 * max(tau_mem, tau_syn), 4000)
    response = np.zeros_like(t)
    for k in range(GAIN_TRAIN_EVENTS):
        s = np.clip(t - k * GAIN_TRAIN_SPACING, 0.0, None)
        if np.isclose(tau_mem, tau_syn):
            response += s * np.exp(-s / tau_syn)
        else:
            response += (
                tau_mem
                * tau_syn
                / (tau_mem - tau_syn)
                * (np.exp(-s / tau_mem) - np.exp(-s / tau_syn))
            )
    return t, response


def psp_peak_time(tau_mem: float, tau_syn: float) -> float:
    """Time after the train's start at which the nominal response to the gain train peaks."""
    t, response = train_curve(tau_mem, tau_syn)
    return float(t[np.argmax(np.abs(response))])


class SynapticGain(Routine):
    """PSP amplitude of a fixed train, set by the input's transconductance bias.

    The CADC converts at the response's peak; neurons with other target time constants peak
    at other times, so there is one timed read per group of neurons sharing a read time.
    """

    def __init__(
        self,
        target: ArrayLike,
        inhibitory: bool,
        tau_mem: ArrayLike,
        tau_syn: ArrayLike,
        leak: ArrayLike | None = None,
    ) -> None:
        """`leak`: the calibrated leak potential (CADC LSB); an inhibitory PSP is then read
        with the leak raised to INHIBITORY_LEAK where it leaves less than PSP_ROOM below
        twice the expected PSP (the input is current-based, its PSP the same at any resting
        level): a strong one from a low leak would read clipped at the CADC's bottom and pass
        short while the input is far too strong. Without it the reading stays at the leak as
        set."""
        self.inhibitory = inhibitory
        self.leak = None if leak is None else per_neuron(leak)
        self.name = f"psp_amplitude_{'inh' if inhibitory else 'exc'}"
        self.parameter = _bias(inhibitory, "gm")
        self.read_times, self.groups = read_time_groups(tau_mem, tau_syn)
        target = np.broadcast_to(np.asarray(target, dtype=float), (N_NEURONS,))
        expected = np.where(
            np.isfinite(target), target, median_psp_at(DEFAULT_GM_BIAS, tau_mem, tau_syn)
        )
        self.samples = gain_samples(expected)
        self.raised = np.zeros(N_NEURONS, dtype=bool)
        if inhibitory and self.leak is not None:
            self.raised = self.leak - 2.0 * expected < PSP_ROOM
        self.stimulus = SynapticEvents.regular(
            GAIN_TRAIN_START, GAIN_TRAIN_SPACING, GAIN_TRAIN_EVENTS, inhibitory=inhibitory
        )

    def measurement_settings(self, device: Device) -> dict[str, ArrayLike]:
        settings: dict[str, ArrayLike] = {
            "threshold_enable": 0,
            "reset_hold": 0,
            **input_switches(self.inhibitory),
        }
        if self.raised.any():
            v_leak = device.read_settings(["v_leak"])["v_leak"]
            settings["v_leak"] = np.where(self.raised, raised_leak(device, self.leak), v_leak)
        return settings

    def prelude(self, device: Device) -> None:
        super().prelude(device)
        if self.raised.any():
            # The raised leak is a large step, still ~0.7 % unsettled after one write's wait:
            # it would drift between the baseline and the peak reads of a small PSP.
            device.write({"v_leak": device.read_settings(["v_leak"])["v_leak"]})

    def measure(self, device: Device) -> np.ndarray:
        baseline = cadc_mean(device, max(BASELINE_SAMPLES, self.samples))
        peak = timed_group_means(device, self.samples, self.stimulus, self.read_times, self.groups)
        return np.where(unclipped(baseline, peak), np.abs(peak - baseline), np.nan)


NOMINAL_PSP_PER_SECOND = 1.1e6
"""Nominal PSP amplitude (CADC LSB) of the gain train per second of `train_response` at the
reference gm bias, characterised on the design's mismatch-free chip."""
NOMINAL_GM_REFERENCE = 500.0
NOMINAL_GM_EXPONENT = 0.8
"""The amplitude grows about as (gm code / reference) ** exponent (design figure)."""
FEASIBLE_SPREAD = 1.5
"""Neurons reach up to about this factor above a nominal neuron (gm and DAC mismatch)."""
DEFAULT_GM_BIAS = 500
"""Transconductance bias whose chip median sets a PSP amplitude left None (as calix matches
the synaptic input to the chip's median at a given bias by default)."""


def train_response(tau_mem: float, tau_syn: float) -> float:
    """Peak (s) of the nominal membrane response to the gain train, per unit charge rate."""
    return float(train_curve(tau_mem, tau_syn)[1].max())


def largest_psp(tau_mem: ArrayLike, tau_syn: ArrayLike) -> np.ndarray:
    """The largest PSP amplitude (CADC LSB) a nominal neuron reaches with these constants."""
    pairs = np.stack(
        np.broadcast_arrays(np.asarray(tau_mem, float), np.asarray(tau_syn, float)), axis=-1
    ).reshape(-1, 2)
    unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
    peak = np.array([train_response(m, s) for m, s in unique])[np.asarray(inverse).reshape(-1)]
    strongest = (CAPMEM_MAX / NOMINAL_GM_REFERENCE) ** NOMINAL_GM_EXPONENT
    return NOMINAL_PSP_PER_SECOND * peak * strongest


def median_psp_at(gm_code: float, tau_mem: ArrayLike, tau_syn: ArrayLike) -> np.ndarray:
    """A nominal neuron's PSP amplitude (CADC LSB) at transconductance bias `gm_code`."""
    scale = (gm_code / CAPMEM_MAX) ** NOMINAL_GM_EXPONENT
    return largest_psp(tau_mem, tau_syn) * scale


def gain_samples(expected: ArrayLike) -> int:
    """Timed reads per PSP reading for PSPs of about `expected` LSB (the smallest counts): the
    reading's noise is then about PSP_PRECISION of the PSP."""
    smallest = float(np.nanmin(np.abs(np.asarray(expected, dtype=float))))
    if not np.isfinite(smallest) or smallest <= 0:
        return MAX_GAIN_SAMPLES
    # the peak and the baseline reading both carry the read noise
    needed = 2 * (PSP_READ_NOISE / (PSP_PRECISION * smallest)) ** 2
    return int(np.clip(np.ceil(needed), GAIN_SAMPLES, MAX_GAIN_SAMPLES))


def check_psp_feasible(target: NeuronTarget) -> None:
    """ValueError naming the fields when a PSP amplitude asked for is beyond what the chip's
    neurons reach with the target's time constants (before any device run)."""
    for kind in ("exc", "inh"):
        name = f"psp_amplitude_{kind}"
        asked = getattr(target, name)
        if asked is None:
            continue
        scalar = all(
            np.ndim(v) == 0 for v in (asked, target.tau_mem, getattr(target, f"tau_syn_{kind}"))
        )
        tau_mem = np.broadcast_to(np.asarray(target.tau_mem, float), (N_NEURONS,))
        tau_syn = np.broadcast_to(
            np.asarray(getattr(target, f"tau_syn_{kind}"), float), (N_NEURONS,)
        )
        asked = np.broadcast_to(np.asarray(asked, float), (N_NEURONS,))
        largest = largest_psp(tau_mem, tau_syn) * FEASIBLE_SPREAD
        bad = np.flatnonzero(asked > largest)
        if bad.size:
            n = int(bad[0])
            where = "" if scalar else f" (neuron {n}, {bad.size} neurons in all)"
            raise ValueError(
                f"{name} = {asked[n]:g} LSB{where} is beyond what tau_mem = "
                f"{tau_mem[n] * 1e6:g} µs and tau_syn_{kind} = {tau_syn[n] * 1e6:g} µs can "
                f"carry: reachable 2..{largest[n]:.3g} LSB; ask for less, slower time "
                f"constants, or leave {name} unset (matched to the chip's median)"
            )


MAX_READ_GROUPS = 8
"""At most this many timed reads per gain measurement; finer differences share a read."""


def read_time_groups(tau_mem: ArrayLike, tau_syn: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """(read times, group index per neuron): the nominal peak time of each neuron's response,
    grouped into at most MAX_READ_GROUPS reads."""
    pairs = np.stack(
        np.broadcast_arrays(np.asarray(tau_mem, float), np.asarray(tau_syn, float)), axis=1
    ).reshape(-1, 2)
    unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
    peaks = GAIN_TRAIN_START + np.array([psp_peak_time(m, s) for m, s in unique])
    if peaks.size > MAX_READ_GROUPS:
        edges = np.quantile(peaks, np.linspace(0, 1, MAX_READ_GROUPS + 1)[1:-1])
        bins = np.digitize(peaks, edges)
        centres = np.array([np.median(peaks[bins == b]) for b in np.unique(bins)])
        peaks, relabel = centres, np.searchsorted(np.unique(bins), bins)
        inverse = relabel[inverse]
    return peaks, np.asarray(inverse).reshape(-1)


class SynapticReference(Routine):
    """Resting potential with the input connected, moved by the input's shift cell.

    The cell's direction is not assumed: the prelude measures it at two codes.
    """

    PROBE_CODES = (200, 800)

    def __init__(self, inhibitory: bool) -> None:
        self.inhibitory = inhibitory
        self.name = f"reference_{'inh' if inhibitory else 'exc'}"
        self.parameter = _bias(inhibitory, "shift")

    def measurement_settings(self, device: Device) -> dict[str, ArrayLike]:
        return {"threshold_enable": 0, "reset_hold": 0, **input_switches(self.inhibitory)}

    def is_inverted(self, device: Device) -> bool:
        """Measured at two codes: whether the higher one gives the lower resting potential."""
        low, high = self.PROBE_CODES
        device.write({self.parameter: low})
        at_low = np.median(self.measure(device))
        device.write({self.parameter: high})
        at_high = np.median(self.measure(device))
        return bool(at_high < at_low)

    def measure(self, device: Device) -> np.ndarray:
        return cadc_mean(device, REFERENCE_SAMPLES)


# -- plans ----------------------------------------------------------------------------------

TIME_CONSTANT_REFINEMENTS = 1
"""Fitting search's local refinements (as for tau_mem; bench/fitting_search.py)."""
TIME_CONSTANT_FOLLOW_UPS = 1
"""Further reads of the few neurons the refinements leave more than a code step off
(`FittingSearch.follow_ups`; each records only those neurons)."""


GM_BIAS_SETTING = SettingSpec(
    "synaptic_gm_bias",
    1,
    CAPMEM_MAX,
    DEFAULT_GM_BIAS,
    description="transconductance bias whose chip median sets a PSP amplitude left unset",
)


def psp_goal(context: CalibrationContext, inhibitory: bool) -> np.ndarray | None:
    """The PSP amplitude to reach: the target's, or (unset) the chip's median strength at the
    target's gm bias, scaled to each neuron's nominal response to its own time constants (so
    that neurons asked for other constants get their share of it). Kept in the goals and in
    the result's models[name]['target'].

    None where an unset amplitude's chip median lies below the smallest PSP the quantity
    allows (very short time constants carry little charge at the bias): a reading cannot
    resolve it, so the inputs stay at the bias and the amplitude is not judged (the median is
    kept in models[name]['chip_median']). Likewise per neuron: NaN where a neuron's share lies
    below that smallest PSP (its time constants differ from the others')."""
    kind = "inh" if inhibitory else "exc"
    name = f"psp_amplitude_{kind}"
    if name in context.goals:
        return context.goals[name]
    routine = _gain(context, inhibitory)
    context.write({routine.parameter: context.target.synaptic_gm_bias})
    shape = largest_psp(context.goals["tau_mem"], context.goals[f"tau_syn_{kind}"])
    measured = context.measure(routine)
    goal = np.nanmedian(measured / shape) * shape
    median = float(np.nanmedian(measured))
    if not median >= PLANS.quantities()[name].low:
        context.models.setdefault(name, {})["chip_median"] = np.full(N_NEURONS, median)
        return None
    goal = np.where(goal >= PLANS.quantities()[name].low, goal, np.nan)
    context.goals[name] = goal
    context.models.setdefault(name, {})["target"] = goal
    return goal


def _gain(context: CalibrationContext, inhibitory: bool) -> SynapticGain:
    kind = "inh" if inhibitory else "exc"
    return SynapticGain(
        context.goals.get(f"psp_amplitude_{kind}", np.nan),
        inhibitory,
        context.goals["tau_mem"],
        context.goals[f"tau_syn_{kind}"],
        context.goals["leak"],
    )


def _verify_gain(context: CalibrationContext, inhibitory: bool) -> dict[str, np.ndarray]:
    """The PSP amplitude read with VERIFY_SAMPLE_FACTOR times the search's repetitions: the
    verdict of a neuron the search left near the tolerance's edge (often one at its limit)
    should not rest on one noise draw."""
    routine = _gain(context, inhibitory)
    routine.samples = min(
        VERIFY_SAMPLE_FACTOR * routine.samples, VERIFY_SAMPLE_FACTOR * MAX_GAIN_SAMPLES
    )
    return {routine.name: context.measure(routine)}


def _plans(inhibitory: bool, rank: float) -> tuple[Plan, Plan, Plan]:
    kind = "inh" if inhibitory else "exc"
    word = "inhibitory" if inhibitory else "excitatory"
    tau, amplitude = f"tau_syn_{kind}", f"psp_amplitude_{kind}"

    def calibrate_strength(context: CalibrationContext, plan: Plan) -> None:
        goal = psp_goal(context, inhibitory)
        if goal is None:
            return
        routine = _gain(context, inhibitory)
        unresolvable = ~np.isfinite(goal)
        if not unresolvable.any():
            context.search(plan, routine, goal)
            return
        # Neurons whose share of an unset amplitude no reading resolves stay at the bias
        # (searched along towards the smallest PSP, then put back), and are not judged.
        smallest = PLANS.quantities()[amplitude].low
        outcome = context.search(plan, routine, np.where(unresolvable, smallest, goal))
        bias = context.target.synaptic_gm_bias
        codes = np.where(unresolvable, bias, outcome.codes)
        context.record(plan, routine, replace(outcome, codes=codes, at_bound=None), write=True)

    time_constant = Plan(
        name=tau,
        rank=rank,
        quantities=(
            QuantitySpec(
                tau,
                "s",
                0.3e-6,
                30e-6,
                0.10,
                relative=True,
                default=10e-6,
                description=f"{word} synaptic input's time constant",
                long_name=f"{word} synaptic time constant",
            ),
        ),
        cells=(_bias(inhibitory, "tau"), f"{_prefix(inhibitory)}_high_resistance"),
        routine=lambda context: SynapticTimeConstant(
            context.goals[tau], inhibitory, context.goals["leak"]
        ),
        algorithm=lambda target: FittingSearch(
            refine=TIME_CONSTANT_REFINEMENTS,
            coarse_sweep=True,
            follow_ups=TIME_CONSTANT_FOLLOW_UPS,
        ),
        after=("tau_mem", "leak"),
    )
    # The reference first: an input's uncancelled offset moves the resting potential the PSP
    # rides on towards the CADC's ends, where the PSP reads clipped.
    reference = Plan(
        name=f"reference_{kind}",
        rank=rank + 2,
        cells=(_bias(inhibitory, "shift"),),
        routine=lambda context: SynapticReference(inhibitory),
        goal=lambda context: context.goals["leak"],
        # Only roughly: it keeps the PSP's baseline off the CADC's ends, and the final leak
        # step, with both inputs connected, sets the resting potential exactly.
        algorithm=lambda target: BinarySearch(),
        after=(tau,),
        recalibratable=False,
        extra={"bounds_are_failures": False},  # the final leak check covers them
    )
    strength = Plan(
        name=amplitude,
        rank=rank + 4,
        quantities=(
            QuantitySpec(
                amplitude,
                "CADC LSB",
                2.0,
                60.0,
                0.15,
                relative=True,
                default=None,
                unset="chip median",
                description=f"peak of the {word} PSP of a fixed event train; unset: every "
                "neuron matched to the chip's median at synaptic_gm_bias",
                long_name=f"{word} PSP amplitude",
            ),
        ),
        settings=(GM_BIAS_SETTING,) if not inhibitory else (),
        cells=(_bias(inhibitory, "gm"),),
        routine=lambda context: _gain(context, inhibitory),
        action=calibrate_strength,
        verify=lambda context: _verify_gain(context, inhibitory),
        algorithm=lambda target: BinarySearch(),
        after=(f"reference_{kind}",),
        extra={"check_before_run": check_psp_feasible},
    )
    return time_constant, reference, strength


TAU_SYN_EXC, REFERENCE_EXC, PSP_AMPLITUDE_EXC = map(register_plan, _plans(False, 4))
TAU_SYN_INH, REFERENCE_INH, PSP_AMPLITUDE_INH = map(register_plan, _plans(True, 5))
