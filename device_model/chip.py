"""`SimulatedChip`: a mismatch-aware BrainScaleS-2-like chip behind the device protocol.

State is the written codes, the CapMem cells' settling towards them, an emulated clock and the
seeded random streams. Derived physical parameters are kept per node (see `circuit.py`) and
recomputed only downstream of cells that changed, or that are still settling.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import numpy as np
from numpy.typing import ArrayLike

from device_model import compartments
from device_model import params as p
from device_model.circuit import evaluate
from device_model.dynamics import (
    Drive,
    Membrane,
    clip_rails,
    count_constant,
    fires,
    initial_state,
    integrate,
    linear_response,
    phase_potential,
    steady_potential,
)
from device_model.limits import MAX_DRIFT_HOURS, MAX_SCALE
from device_model.mismatch import (
    STREAM_NOISE,
    STREAM_RUNS,
    ChipTruth,
    Faults,
    draw_truth,
    stable_seed,
    stream,
)
from device_model.oracle import ALL_QUANTITY_CELLS, ideal_codes, true_quantities
from device_model.protocol import (
    CELLS,
    MADC_INVALID_TIME,
    MADC_NEURONS_PER_RUN,
    N_NEURONS,
    SPIKE_COUNTER_MAX,
    DeviceStats,
    SpikeCounts,
    StimulusArg,
    Trace,
    TransientRunError,
    validate_settings,
)
from device_model.readout import cadc_codes, cadc_continuous, madc_codes, madc_times
from device_model.stimuli import (
    CompartmentConnect,
    MacActivations,
    RowEvents,
    as_stimulus_tuple,
)
from device_model.synapses import (
    ideal_driver_offsets,
    ideal_ramp_codes,
    integrated_potential,
    row_activations,
    row_event_trains,
    run_time,
)


def _check_duration(field: str, value: float, limit: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise ValueError(f"{field} must be a number of seconds, got {value!r}")
    value = float(value)
    if not (math.isfinite(value) and 0 < value <= limit):
        raise ValueError(f"{field} = {value!r} s is outside the allowed range (0, {limit:g}] s")
    return value


def _grid(end: float, step: float) -> np.ndarray:
    """Regular grid from 0 with at most MAX_GRID_POINTS points, ending exactly at `end`."""
    count = min(max(math.ceil(end / step), 1), p.MAX_GRID_POINTS)
    return np.linspace(0.0, end, count + 1)


class SimulatedChip:
    """A simulated chip with fixed-pattern mismatch, temporal noise, drift and faults.

    `seed` defaults to a stable hash of `chip_id`; `mismatch_scale` multiplies every
    fixed-pattern spread (0: an ideal chip), `noise_scale` every temporal noise (0:
    deterministic readouts), `drift_hours` ages the chip's offsets, `faults` injects transient
    run failures, dead and stuck neurons. `truth` is the ground truth, for studies only.
    """

    n_neurons: int = N_NEURONS

    def __init__(
        self,
        chip_id: str,
        seed: int | None = None,
        mismatch_scale: float = 1.0,
        noise_scale: float = 1.0,
        drift_hours: float = 0.0,
        faults: Faults | None = None,
    ) -> None:
        if not isinstance(chip_id, str) or not chip_id:
            raise ValueError(f"chip_id must be a non-empty string, got {chip_id!r}")
        for name, value, high in (
            ("mismatch_scale", mismatch_scale, MAX_SCALE),
            ("noise_scale", noise_scale, MAX_SCALE),
            ("drift_hours", drift_hours, MAX_DRIFT_HOURS),
        ):
            if isinstance(value, bool) or not (
                isinstance(value, int | float) and math.isfinite(value) and 0 <= value <= high
            ):
                raise ValueError(f"{name} = {value!r} is outside the allowed range 0..{high:g}")
        if seed is not None and (
            isinstance(seed, bool)
            or not isinstance(seed, int | np.integer)
            or not 0 <= seed < 2**64
        ):
            raise ValueError(
                f"seed = {seed!r} must be an integer 0..2**64-1 (or None: from the chip id)"
            )
        if faults is not None and not isinstance(faults, Faults):
            raise ValueError(f"faults must be a Faults instance or None, got {faults!r}")
        self.chip_id = chip_id
        self.seed = stable_seed(chip_id) if seed is None else int(seed)
        self.mismatch_scale = float(mismatch_scale)
        self.noise_scale = float(noise_scale)
        self.drift_hours = float(drift_hours)
        self.faults = faults or Faults()
        self.truth: ChipTruth = draw_truth(self.seed, self.mismatch_scale, self.drift_hours, faults)
        self._noise = stream(self.seed, STREAM_NOISE)
        self._runs = stream(self.seed, STREAM_RUNS)
        self._stats = DeviceStats()
        self._clock = 0.0
        self._codes = {
            name: np.full(spec.shape, spec.default, dtype=np.int64) for name, spec in CELLS.items()
        }
        self._settling: dict[str, tuple[np.ndarray, float]] = {}
        """Analog cells still approaching their code: (value at write, clock at write)."""
        self._values: dict[str, np.ndarray] = {
            name: codes.astype(float) for name, codes in self._codes.items()
        }
        evaluate(self._values, self.truth)
        self._changed: set[str] = set()
        self._embedded = False

    # --- configuration ------------------------------------------------------------------

    @property
    def stats(self) -> DeviceStats:
        """A copy of the counters: runs, writes and emulated hardware time."""
        return self._stats.copy()

    def write(self, settings: Mapping[str, ArrayLike]) -> None:
        """Set cells; everything is validated before anything is applied."""
        checked = validate_settings(settings)
        if not checked:
            return
        if checked.keys() & {compartments.RIGHT, compartments.DOWN}:
            compartments.connections({**self._codes, **checked})
        analog = False
        for name, codes in checked.items():
            if CELLS[name].kind == "analog":
                analog = True
                current = self._effective(name)
                if not np.array_equal(current, codes):
                    self._settling[name] = (current, self._clock)
            else:
                self._values[name] = codes.astype(float)
            self._codes[name] = codes.copy()
            self._changed.add(name)
        wait = p.CAPMEM_SETTLING_WAIT if analog else p.DIGITAL_WRITE_TIME
        if any(CELLS[name].scope == "synapse" for name in checked):
            wait += p.SYNAPSE_ARRAY_WRITE_TIME
        self._stats.writes += 1
        self._advance(wait)

    def read_settings(self, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Copies of the codes last written (the defaults before any write)."""
        if names is None:
            chosen = list(CELLS)
        else:
            chosen = [names] if isinstance(names, str) else list(names)
        for name in chosen:
            if name not in CELLS:
                raise ValueError(f"unknown cell {name!r}; known cells: {', '.join(sorted(CELLS))}")
        return {name: self._codes[name].copy() for name in chosen}

    def _effective(self, name: str) -> np.ndarray:
        """An analog cell's present value (float codes), settling included."""
        target = self._codes[name].astype(float)
        if name not in self._settling:
            return target
        start, written_at = self._settling[name]
        return target + (start - target) * math.exp(
            -(self._clock - written_at) / p.CAPMEM_SETTLING_TAU
        )

    def _advance(self, seconds: float) -> None:
        self._clock += seconds
        self._stats.hardware_time += seconds

    def _refresh(self) -> dict[str, np.ndarray]:
        """Bring the derived parameters up to date with the codes at the present clock."""
        for name in list(self._settling):
            value = self._effective(name)
            if np.max(np.abs(value - self._codes[name])) < p.CAPMEM_SETTLED_RESIDUAL:
                value = self._codes[name].astype(float)
                del self._settling[name]
            self._values[name] = value
            self._changed.add(name)
        if self._changed:
            evaluate(self._values, self.truth, self._changed)
            self._changed.clear()
        return self._values

    def _membrane(self) -> Membrane:
        return Membrane.from_values(self._refresh(), self.truth.dead, self.truth.stuck)

    # --- embedded processor: runs without the host (docs/embedded.md) --------------------

    @contextmanager
    def embedded_program(self) -> Iterator[None]:
        """Operations inside run as a program on the chip's embedded processor: its runs have
        no host round trip (`stats.embedded_runs`), writes still wait for CapMem settling.
        Loading the program and fetching its results cost a host transfer each."""
        if self._embedded:
            raise RuntimeError(f"chip {self.chip_id!r} runs an embedded program already")
        self._advance(p.EMBEDDED_PROGRAM_LOAD)
        self._embedded = True
        try:
            yield
        finally:
            self._embedded = False
            self._advance(p.EMBEDDED_PROGRAM_LOAD)

    @property
    def embedded(self) -> bool:
        """Whether an embedded program is running (see `embedded_program`)."""
        return self._embedded

    def _run(self, duration: float, runs: int = 1) -> None:
        """Account one device call of `runs` runs of `duration` each.

        A transient failure is drawn once per call from the run stream (so a sequence of calls
        repeats); it strikes one of the call's runs, and the runs up to it are spent. Drawing
        per call keeps a 256-run MADC recording as reliable as a single CADC read.
        """
        failed = self._runs.uniform() < self.faults.run_failure_rate
        spent = int(self._runs.integers(runs)) + 1 if failed else runs
        self._stats.runs += spent
        overhead = p.RUN_OVERHEAD
        if self._embedded:
            self._stats.embedded_runs += spent
            overhead = p.EMBEDDED_RUN_OVERHEAD
        self._advance(spent * (overhead + duration))
        if failed:
            raise TransientRunError(
                f"chip {self.chip_id!r}: run {self._stats.runs} failed (transient); retry"
            )

    def _phase(self) -> np.ndarray:
        """Phase of each neuron's firing cycle when a run opens (0.5 without noise)."""
        if self.noise_scale > 0:
            return self._noise.uniform(size=N_NEURONS)
        return np.full(N_NEURONS, 0.5)

    def _threshold(self, m: Membrane) -> np.ndarray:
        """This run's effective threshold: the comparator's run-to-run jitter included."""
        jitter = p.THRESHOLD_NOISE * self.noise_scale
        if jitter == 0:
            return m.v_threshold
        return m.v_threshold + jitter * self._noise.standard_normal(m.v_threshold.shape)

    # --- readouts -------------------------------------------------------------------------

    def read_cadc(
        self, samples: int = 1, stimulus: StimulusArg = None, read_time: float | None = None
    ) -> np.ndarray:
        """CADC codes, uint8 (samples, 512).

        Without `read_time` each sample is an unrelated moment: the resting potential of a quiet
        neuron (current steps of `stimulus` count as switched on; releases and event trains are
        transients and leave no trace), a uniformly random phase of the cycle of a firing one.
        With `read_time` every sample converts that long after the stimulus starts, each in a
        repetition of the stimulus (independent read noise, same membrane trajectory).
        """
        if (
            isinstance(samples, bool)
            or not isinstance(samples, int | np.integer)
            or not (1 <= samples <= p.MAX_CADC_SAMPLES)
        ):
            raise ValueError(
                f"samples = {samples!r} is outside the allowed range 1..{p.MAX_CADC_SAMPLES}"
            )
        samples = int(samples)
        if read_time is not None:
            read_time = _check_duration("read_time", read_time, p.MAX_RUN_DURATION)
        stimuli = as_stimulus_tuple(stimulus)
        if any(isinstance(s, MacActivations) for s in stimuli):
            return self._read_mac(stimuli, samples, read_time)
        drive = self._drive(stimuli)
        m = self._membrane()
        values = self._values
        if read_time is None:
            duration = samples * p.CADC_SAMPLE_TIME + drive.end
        else:
            duration = samples * (p.CADC_SAMPLE_TIME + read_time)
        self._run(duration)
        if read_time is None:
            volts = self._unrelated_potentials(m, drive, samples)
        else:
            volts = self._potential_at(m, drive, read_time)
        reference = values["cadc_connect_reference"] > 0
        if reference.any():
            volts = np.where(reference, values["v_reference"], volts)
        return cadc_codes(
            volts,
            values,
            self.truth.cadc_channel_offset,
            samples,
            p.CADC_READ_NOISE * self.noise_scale,
            self._noise,
        )

    # --- MAC mode (device_model/synapses.py) -----------------------------------------------

    def _read_mac(self, stimuli: tuple, samples: int, read_time: float | None) -> np.ndarray:
        """`samples` MAC integrations of one activation vector, each converted by the CADC."""
        if len(stimuli) != 1:
            kinds = ", ".join(type(s).__name__ for s in stimuli)
            raise ValueError(
                f"a MacActivations stimulus runs alone: got {len(stimuli)} stimuli ({kinds})"
            )
        if read_time is not None:
            raise ValueError(
                "read_time does not apply to MacActivations: the CADC converts "
                "after the integration"
            )
        m = self._membrane()
        values = self._values
        mac = stimuli[0]
        self._run(samples * (run_time(mac.sends) + p.CADC_SAMPLE_TIME))
        volts = integrated_potential(
            row_activations(mac.activations), values, self.truth.synapses, m, mac.sends
        )
        noise = p.MAC_INTEGRATION_NOISE * self.noise_scale
        if noise > 0:
            volts = clip_rails(volts + noise * self._noise.standard_normal((samples, N_NEURONS)))
        reference = values["cadc_connect_reference"] > 0
        if reference.any():
            volts = np.where(reference, values["v_reference"], volts)
        return cadc_codes(
            volts,
            values,
            self.truth.cadc_channel_offset,
            samples,
            p.CADC_READ_NOISE * self.noise_scale,
            self._noise,
        )

    def _drive(self, stimuli: tuple) -> Drive:
        """The run's drive; addressed row events become per-neuron weighted trains through
        the synapse array as configured now (device_model/synapses.py)."""
        rows = [s for s in stimuli if isinstance(s, RowEvents)]
        if not rows:
            return Drive.from_stimuli(stimuli)
        return Drive.from_stimuli(
            stimuli, row_event_trains(rows, self._refresh(), self.truth.synapses)
        )

    def _unrelated_potentials(self, m: Membrane, drive: Drive, samples: int) -> np.ndarray:
        v_inf = steady_potential(m, drive.steady_current)
        firing = fires(m, v_inf)
        if not firing.any():
            return clip_rails(v_inf)
        if self.noise_scale > 0:
            phase = self._noise.uniform(size=(samples, N_NEURONS))
        else:
            phase = np.broadcast_to(
                ((np.arange(samples) + 0.5) / samples)[:, None], (samples, N_NEURONS)
            )
        cycling = phase_potential(m, v_inf, phase)
        return clip_rails(np.where(firing, cycling, v_inf))

    def _potential_at(
        self, m: Membrane, drive: Drive, read_time: float, phase: np.ndarray | None = None
    ) -> np.ndarray:
        """Noise-free potential of every neuron `read_time` after the stimulus starts (firing
        neurons from this run's `phase`, drawn when not given)."""
        volts = np.empty(N_NEURONS)
        phase = self._phase() if phase is None else phase
        nonlinear = m.nonlinear
        linear = np.flatnonzero(~nonlinear)
        if linear.size:
            sub, sub_drive = m.take(linear), drive.take(linear)
            spiking = bool(np.any(sub.threshold_on & ~sub.clamped))
            times = _grid(read_time, p.SPIKE_GRID_STEP) if spiking else np.array([read_time])
            trace, _ = linear_response(
                sub, sub_drive, times, sub.v_threshold, initial_state(sub, sub_drive, phase[linear])
            )
            volts[linear] = trace[-1]
        index = np.flatnonzero(nonlinear)
        if index.size:
            sub, sub_drive = m.take(index), drive.take(index)
            _, _, final = integrate(
                sub,
                sub_drive,
                _grid(read_time, p.INTEGRATION_STEP),
                sub.v_threshold,
                record=False,
                initial=initial_state(sub, sub_drive, phase[index]),
            )
            volts[index] = final
        return volts

    def record_madc(
        self, neurons: Sequence[int], duration: float, stimulus: StimulusArg = None
    ) -> Trace:
        """MADC traces of `neurons` (two per run, so ceil(n / 2) runs) over `duration` s."""
        index = np.asarray(neurons)
        if index.ndim != 1 or index.size == 0 or not np.issubdtype(index.dtype, np.integer):
            raise ValueError(
                f"neurons must be a non-empty sequence of neuron indices "
                f"0..{N_NEURONS - 1}, got {neurons!r}"
            )
        if index.size > N_NEURONS:
            raise ValueError(f"neurons: {index.size} indices, at most {N_NEURONS} per recording")
        if index.min() < 0 or index.max() >= N_NEURONS:
            bad = int(index[(index < 0) | (index >= N_NEURONS)][0])
            raise ValueError(
                f"neurons: index {bad} is outside the allowed range 0..{N_NEURONS - 1}"
            )
        duration = _check_duration("duration", duration, p.MAX_MADC_DURATION)
        drive = self._drive(as_stimulus_tuple(stimulus))
        m = self._membrane()
        self._run(duration, runs=math.ceil(index.size / MADC_NEURONS_PER_RUN))
        times = madc_times(duration)
        volts = np.empty((index.size, times.size))
        threshold = self._threshold(m)
        phase = self._phase()
        per_batch = max(p.MAX_BATCH_ELEMENTS // times.size, 1)
        for begin in range(0, index.size, per_batch):
            batch = index[begin : begin + per_batch]
            volts[begin : begin + batch.size] = self._traces(
                m.take(batch), drive.take(batch), times, threshold[batch], phase[batch]
            )
        volts = self._coupled(volts, index, times, as_stimulus_tuple(stimulus), m)
        codes = madc_codes(volts, times, p.MADC_NOISE * self.noise_scale, self._noise)
        return Trace(
            neurons=index.astype(np.int64),
            times=times,
            codes=codes,
            valid=times >= MADC_INVALID_TIME,
        )

    def _coupled(
        self,
        volts: np.ndarray,
        index: np.ndarray,
        times: np.ndarray,
        stimuli: tuple,
        m: Membrane,
    ) -> np.ndarray:
        """`volts` with the recorded neurons of closed inter-compartment connections replaced
        by their pair's traces (device_model/compartments.py)."""
        owners, partners = compartments.connections(self._codes)
        if not owners.size or self.truth.compartments is None:
            return volts
        live = ~(m.dead | m.clamped)
        keep = live[owners] & live[partners]
        owners, partners = owners[keep], partners[keep]
        recorded = np.isin(owners, index) | np.isin(partners, index)
        owners, partners = owners[recorded], partners[recorded]
        if not owners.size:
            return volts
        connects = [s.time for s in stimuli if isinstance(s, CompartmentConnect)]
        conductance = compartments.g_icc(self._values, self.truth.compartments)[owners]
        first, second = compartments.pair_traces(
            m, owners, partners, conductance, times, max(connects) if connects else None
        )
        volts = volts.copy()
        for traces, members in ((first, owners), (second, partners)):
            rows, columns = np.nonzero(index[:, None] == members[None, :])
            volts[rows] = traces[columns]
        return volts

    def _traces(
        self, m: Membrane, drive: Drive, times: np.ndarray, threshold: np.ndarray, phase: np.ndarray
    ) -> np.ndarray:
        """(n, T) noise-free potentials of a few neurons on the MADC's sample times."""
        out = np.empty((m.e_rest.size, times.size))
        nonlinear = m.nonlinear
        for mask, linear in ((~nonlinear, True), (nonlinear, False)):
            chosen = np.flatnonzero(mask)
            if chosen.size == 0:
                continue
            sub, sub_drive = m.take(chosen), drive.take(chosen)
            initial = initial_state(sub, sub_drive, phase[chosen])
            if linear:
                trace, _ = linear_response(sub, sub_drive, times, threshold[chosen], initial)
            else:
                trace, _, _ = integrate(
                    sub, sub_drive, times, threshold[chosen], record=True, initial=initial
                )
            out[chosen] = trace.T
        return out

    def count_spikes(self, duration: float, stimulus: StimulusArg = None) -> SpikeCounts:
        """Spikes of every neuron within `duration` s: 8-bit counts and an overflow flag."""
        duration = _check_duration("duration", duration, p.MAX_RUN_DURATION)
        drive = self._drive(as_stimulus_tuple(stimulus))
        m = self._membrane()
        self._run(duration)
        threshold = self._threshold(m)
        counts = np.zeros(N_NEURONS)
        nonlinear = m.nonlinear
        linear = np.flatnonzero(~nonlinear)
        analytic = drive.event_count == 0 and all(
            s.on_time <= (drive.release_time or 0.0) and s.off_time >= duration for s in drive.steps
        )
        phase = self._phase()
        if linear.size and analytic:
            sub = m.take(linear)
            v_inf = steady_potential(sub, drive.steady_current)
            counts[linear] = count_constant(
                sub, v_inf, duration, phase[linear], threshold[linear], drive.release_time
            )
        elif linear.size:
            times = _grid(duration, p.SPIKE_GRID_STEP)
            per_batch = max(p.MAX_BATCH_ELEMENTS // times.size, 1)
            for begin in range(0, linear.size, per_batch):
                batch = linear[begin : begin + per_batch]
                sub, sub_drive = m.take(batch), drive.take(batch)
                _, found = linear_response(
                    sub,
                    sub_drive,
                    times,
                    threshold[batch],
                    initial_state(sub, sub_drive, phase[batch]),
                    max_spikes=SPIKE_COUNTER_MAX + 1,
                )
                counts[batch] = found
        index = np.flatnonzero(nonlinear)
        if index.size:
            sub, sub_drive = m.take(index), drive.take(index)
            _, found, _ = integrate(
                sub,
                sub_drive,
                _grid(duration, p.INTEGRATION_STEP),
                threshold[index],
                record=False,
                initial=initial_state(sub, sub_drive, phase[index]),
            )
            counts[index] = found
        counts = np.where(m.threshold_on & ~m.clamped, counts, 0)
        return SpikeCounts(
            counts=np.minimum(counts, SPIKE_COUNTER_MAX).astype(np.int64),
            overflow=counts > SPIKE_COUNTER_MAX,
        )

    # --- ground truth (studies and benchmarks only) ---------------------------------------

    def true_quantities(
        self, settings: Mapping[str, ArrayLike] | None = None
    ) -> dict[str, np.ndarray]:
        """Noise-free per-neuron leak, reset, threshold (CADC LSB, continuous, through the
        present CADC configuration), tau_mem, tau_syn_exc, tau_syn_inh, refractory_time (s),
        psp_per_weight_exc, psp_per_weight_inh (CADC LSB per weight unit of an event through a
        nominal synapse, the input connected), e_coba_exc, e_coba_inh (effective reversal
        potentials, CADC LSB on the linear scale; NaN with the COBA bias at 0), tau_icc (s, while a
        compartment connection is closed; NaN for neurons outside one), for the present codes
        (fully settled) overridden by `settings`."""
        return true_quantities(self._settled_codes(settings), self.truth)

    def true_potentials(
        self,
        settings: Mapping[str, ArrayLike] | None = None,
        stimulus: StimulusArg = None,
        read_time: float | None = None,
    ) -> np.ndarray:
        """Noise-free CADC reading (LSB, continuous; NaN for a dead neuron) of every quiet
        neuron: its resting potential, or its potential `read_time` after `stimulus` starts,
        for the present codes (fully settled) overridden by `settings`. The ground truth of a
        potential reading such as a PSP amplitude; no device time passes, no noise is drawn."""
        values = evaluate(self._settled_codes(settings), self.truth)
        m = Membrane.from_values(values, self.truth.dead, self.truth.stuck)
        drive = Drive.from_stimuli(as_stimulus_tuple(stimulus))
        if read_time is None:
            volts = steady_potential(m, drive.steady_current)
        else:
            read_time = _check_duration("read_time", read_time, p.MAX_RUN_DURATION)
            volts = self._potential_at(m, drive, read_time, np.full(N_NEURONS, 0.5))
        volts = np.clip(volts, *p.MEMBRANE_RAILS)
        return np.where(
            self.truth.dead, np.nan, cadc_continuous(volts, values, self.truth.cadc_channel_offset)
        )

    def ideal_codes(
        self, quantity: str, target: ArrayLike, settings: Mapping[str, ArrayLike] | None = None
    ) -> np.ndarray:
        """The best code of `quantity`'s cell for each neuron on the ground truth (all 1023
        codes evaluated at once), every other cell as it is (or as `settings` says)."""
        if quantity not in ALL_QUANTITY_CELLS:
            raise ValueError(
                f"unknown quantity {quantity!r}; known: {', '.join(ALL_QUANTITY_CELLS)}"
            )
        return ideal_codes(quantity, target, self._settled_codes(settings), self.truth)

    def true_mac(
        self,
        activations: ArrayLike,
        settings: Mapping[str, ArrayLike] | None = None,
        sends: int = 1,
    ) -> np.ndarray:
        """Noise-free (512,) CADC reading (LSB, continuous) after a MAC integration of
        `activations` ((256,) or (2, 256)), for the present codes (settled) or `settings`."""
        stimulus = MacActivations(np.asarray(activations), sends)
        values = evaluate(self._settled_codes(settings), self.truth)
        m = Membrane.from_values(values, self.truth.dead, self.truth.stuck)
        volts = integrated_potential(
            row_activations(stimulus.activations), values, self.truth.synapses, m, sends
        )
        return cadc_continuous(volts, values, self.truth.cadc_channel_offset)

    def true_mac_gains(
        self, settings: Mapping[str, ArrayLike] | None = None
    ) -> dict[str, np.ndarray]:
        """Per neuron, the noise-free charge gain of each synaptic input in MAC mode (V per
        weight unit and unit pulse): 'mac_gain_exc', 'mac_gain_inh'."""
        values = evaluate(self._settled_codes(settings), self.truth)
        return {name: np.asarray(values[name]).copy() for name in ("mac_gain_exc", "mac_gain_inh")}

    def ideal_driver_offsets(self) -> np.ndarray:
        """(256,) driver_hagen_offset codes that make each driver's activation -> charge
        proportional (its offset a0 closest to 0), from the ground truth."""
        return ideal_driver_offsets(self.truth.synapses)

    def ideal_ramp_codes(self) -> np.ndarray:
        """(4,) stp_i_ramp codes that give the drivers of every CapMem block the same mean
        activation slope (the median block's at the reference code), from the ground truth."""
        spec = CELLS["stp_i_ramp"]
        return ideal_ramp_codes(self.truth.synapses, spec.low, spec.high)

    def _settled_codes(self, settings: Mapping[str, ArrayLike] | None) -> dict[str, np.ndarray]:
        codes = {name: value.astype(float) for name, value in self._codes.items()}
        if settings:
            codes.update(
                {name: value.astype(float) for name, value in validate_settings(settings).items()}
            )
        return codes

    def __repr__(self) -> str:
        return (
            f"SimulatedChip({self.chip_id!r}, seed={self.seed}, "
            f"mismatch_scale={self.mismatch_scale}, noise_scale={self.noise_scale}, "
            f"drift_hours={self.drift_hours}, faults={self.faults})"
        )
