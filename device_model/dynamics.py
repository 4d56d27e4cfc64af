"""Membrane dynamics, vectorised over neurons.

Three ways to the membrane potential, from fastest to most general:
- closed forms for constant input: resting potential, the LIF inter-spike interval
  t_ref + tau ln((V_inf - V_hold) / (V_inf - V_th)), random phases of the firing cycle;
- superposition for linear (LIF) neurons under time-varying input: the free response to the
  input in closed form on a time grid, then each clamp (reset release, spike + refractory
  time) adds a deviation that decays with tau_mem; exact between grid points, spike times
  interpolated;
- exponential-Euler integration for neurons with adaptation or the exponential term.

Model: C dV/dt = -g_l (V - E_rest) + g_l Delta_T exp((V - V_T) / Delta_T) - w + I_exc + I_inh
+ I_stim; tau_syn dI/dt = -I with a jump of weight * jump per event; tau_w dw/dt =
a (V - E_l) - w, w += b per spike; after a spike V is held at V_hold for the refractory time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import numpy as np

from device_model import params as p
from device_model.stimuli import CurrentStep, ResetRelease, Stimulus, SynapticEvents


@dataclass(frozen=True)
class Membrane:
    """Per-neuron parameters of the membrane, as arrays of one shape (a subset of neurons)."""

    e_rest: np.ndarray
    e_leak: np.ndarray
    v_hold: np.ndarray
    v_threshold: np.ndarray
    threshold_on: np.ndarray
    clamped: np.ndarray
    """Held in reset permanently (reset_hold switch or a stuck neuron)."""
    dead: np.ndarray
    capacitance: np.ndarray
    g_leak: np.ndarray
    tau_mem: np.ndarray
    tau_syn_exc: np.ndarray
    tau_syn_inh: np.ndarray
    jump_exc: np.ndarray
    jump_inh: np.ndarray
    refractory: np.ndarray
    """Hold time after a spike: the reset pulse plus the refractory time."""
    adapt_a: np.ndarray
    adapt_b: np.ndarray
    tau_w: np.ndarray
    exponential: np.ndarray
    delta_t: np.ndarray
    v_t: np.ndarray
    holdoff: np.ndarray | float = 0.0
    """End part of `refractory` in which the membrane is free but cannot fire
    (device_model/holdoff.py); the clamp lasts `refractory - holdoff`."""

    @classmethod
    def from_values(
        cls, values: dict[str, np.ndarray], dead: np.ndarray, stuck: np.ndarray
    ) -> Membrane:
        adaptation = values["adaptation_enable"] > 0
        return cls(
            e_rest=values["e_rest"],
            e_leak=values["e_leak"],
            v_hold=values["v_hold"],
            v_threshold=values["v_threshold_volts"],
            threshold_on=(values["threshold_enable"] > 0) & ~dead & ~stuck,
            clamped=(values["reset_hold"] > 0) | stuck,
            dead=dead,
            capacitance=values["capacitance"],
            g_leak=values["g_leak"],
            tau_mem=values["tau_mem"],
            tau_syn_exc=values["tau_syn_exc"],
            tau_syn_inh=values["tau_syn_inh"],
            jump_exc=values["jump_exc"],
            jump_inh=values["jump_inh"],
            refractory=values["refractory_time"] + p.RESET_PULSE,
            adapt_a=np.where(adaptation, values["adapt_a"], 0.0),
            adapt_b=np.where(adaptation, values["adapt_b"], 0.0),
            tau_w=values["tau_w"],
            exponential=values["exponential_enable"] > 0,
            delta_t=values["delta_t"],
            v_t=values["v_t"],
            holdoff=values.get("holdoff_time", 0.0),
        )

    def take(self, index: np.ndarray) -> Membrane:
        return Membrane(**{f.name: _take(getattr(self, f.name), index) for f in fields(self)})

    @property
    def release(self) -> np.ndarray:
        """Time after a spike at which the clamp lets the membrane go (the holdoff before the
        end of the refractory time)."""
        return self.refractory - self.holdoff

    @property
    def nonlinear(self) -> np.ndarray:
        """Neurons that need numerical integration (adaptation or exponential term)."""
        return ((self.adapt_a != 0) | (self.adapt_b != 0) | self.exponential) & ~self.dead


def _take(value: np.ndarray | float, index: np.ndarray) -> np.ndarray | float:
    return value[index] if isinstance(value, np.ndarray) and value.ndim else value


@dataclass(frozen=True)
class NeuronEvents:
    """Events whose weight differs per neuron (addressed events through synapse rows): weights
    (events, neurons), 0 where a neuron does not receive the event."""

    times: np.ndarray
    weights: np.ndarray
    inhibitory: bool


@dataclass(frozen=True)
class Drive:
    """The stimuli of one run, shared by every neuron.

    Event weights are (events,) when every neuron receives the same weight, (events, neurons)
    when some train's weights differ per neuron (`NeuronEvents`); `take` subsets the neurons
    like `Membrane.take`.
    """

    release_time: float | None
    steps: tuple[CurrentStep, ...]
    exc_times: np.ndarray
    exc_weights: np.ndarray
    inh_times: np.ndarray
    inh_weights: np.ndarray

    @classmethod
    def from_stimuli(
        cls, stimuli: Sequence[Stimulus], neuron_events: Sequence[NeuronEvents] = ()
    ) -> Drive:
        releases = [s.release_time for s in stimuli if isinstance(s, ResetRelease)]
        steps = tuple(s for s in stimuli if isinstance(s, CurrentStep))
        trains = [s for s in stimuli if isinstance(s, SynapticEvents)]

        def events(inhibitory: bool) -> tuple[np.ndarray, np.ndarray]:
            chosen = [s for s in trains if s.inhibitory == inhibitory]
            times = np.array([t for s in chosen for t in s.times], dtype=float)
            weights = np.array([s.weight for s in chosen for _ in s.times], dtype=float)
            own = [e for e in neuron_events if e.inhibitory == inhibitory and len(e.times)]
            if own:
                n = own[0].weights.shape[1]
                weights = np.concatenate(
                    [np.broadcast_to(weights[:, None], (len(times), n))] + [e.weights for e in own]
                )
                times = np.concatenate([times] + [e.times for e in own])
            order = np.argsort(times, kind="stable")
            return times[order], weights[order]

        exc_times, exc_weights = events(False)
        inh_times, inh_weights = events(True)
        return cls(
            max(releases) if releases else None,
            steps,
            exc_times,
            exc_weights,
            inh_times,
            inh_weights,
        )

    def take(self, index: np.ndarray) -> Drive:
        """The drive of a subset of neurons (per-neuron weights subset, shared ones kept)."""
        if self.exc_weights.ndim == 1 and self.inh_weights.ndim == 1:
            return self
        return replace(
            self,
            **{
                name: getattr(self, name)[:, index]
                for name in ("exc_weights", "inh_weights")
                if getattr(self, name).ndim == 2
            },
        )

    @property
    def event_count(self) -> int:
        return len(self.exc_times) + len(self.inh_times)

    @property
    def end(self) -> float:
        """Time of the last change of the input."""
        times = [0.0, self.release_time or 0.0]
        times += [s.off_time for s in self.steps]
        times += list(self.exc_times) + list(self.inh_times)
        return max(times)

    @property
    def steady_current(self) -> float:
        """Current with every step switched on (the input seen at unrelated moments)."""
        return float(sum(s.amplitude for s in self.steps))


def fast_exp(x: np.ndarray) -> np.ndarray:
    """exp in single precision (several times faster on large arrays; 1e-7 relative error,
    far below any readout's resolution) for decays of arguments <= 0."""
    return np.exp(np.maximum(x, -80.0).astype(np.float32))


def clip_rails(volts: np.ndarray) -> np.ndarray:
    return np.clip(volts, *p.MEMBRANE_RAILS)


# --- Closed forms for constant input ---------------------------------------------------------


def steady_potential(m: Membrane, current: float | np.ndarray = 0.0) -> np.ndarray:
    """Fixed point of the membrane under a constant current; +inf where there is none (the
    exponential term runs away). Clamped neurons sit at V_hold, dead ones at their level."""
    g, a = m.g_leak, m.adapt_a
    linear = (g * m.e_rest + a * m.e_leak + current) / (g + a)
    v = linear
    if m.exponential.any():
        dt = m.delta_t
        # f(V) = -(g + a) (V - linear) + g dT exp((V - V_T) / dT) is convex; its minimum sits at
        # V* = V_T + dT ln((g + a) / g). Positive there: no fixed point. Otherwise Newton from
        # the linear rest converges monotonically to the lower (stable) root.
        v_star = m.v_t + dt * np.log((g + a) / g)

        def f(x: np.ndarray) -> np.ndarray:
            return -(g + a) * (x - linear) + g * dt * np.exp(
                np.minimum((x - m.v_t) / dt, p.EXP_MAX_EXPONENT)
            )

        runaway = m.exponential & (f(v_star) > 0)
        v = linear.copy()
        for _ in range(40):
            slope = -(g + a) + g * np.exp(np.minimum((v - m.v_t) / dt, p.EXP_MAX_EXPONENT))
            step = np.where(m.exponential & ~runaway & (slope < 0), -f(v) / slope, 0.0)
            v = v + step
            if np.all(np.abs(step) < 1e-7):
                break
        v = np.where(runaway, np.inf, v)
    v = np.where(m.clamped, m.v_hold, v)
    return np.where(m.dead, p.DEAD_NEURON_POTENTIAL, v)


def fires(m: Membrane, v_inf: np.ndarray, v_threshold: np.ndarray | None = None) -> np.ndarray:
    """Neurons whose steady input drives them across threshold: they fire regularly."""
    threshold = m.v_threshold if v_threshold is None else v_threshold
    return m.threshold_on & ~m.clamped & (v_inf > threshold)


def interspike_interval(
    m: Membrane, v_inf: np.ndarray, v_threshold: np.ndarray | None = None
) -> np.ndarray:
    """LIF interval t_ref + tau ln((V_inf - V_hold) / (V_inf - V_th)); inf where quiet."""
    threshold = m.v_threshold if v_threshold is None else v_threshold
    firing = fires(m, v_inf, threshold)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (v_inf - m.v_hold) / (v_inf - threshold)
        rise = np.where(np.isinf(v_inf), 0.0, m.tau_mem * np.log(np.maximum(ratio, 1.0)))
    # released `holdoff` before the hold ends; a threshold crossed inside it fires at its end
    return np.where(firing, m.refractory + np.maximum(rise - m.holdoff, 0.0), np.inf)


def phase_potential(m: Membrane, v_inf: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Potential at `phase` (0..1, shape (samples, n)) of the firing cycle (LIF trajectory)."""
    isi = interspike_interval(m, v_inf)
    t = phase * np.where(np.isfinite(isi), isi, 0.0)
    release = m.release
    with np.errstate(invalid="ignore", over="ignore"):
        rising = v_inf + (m.v_hold - v_inf) * np.exp(-(t - release) / m.tau_mem)
    rising = np.where(np.isinf(v_inf), m.v_threshold, rising)
    # inside the holdoff the free membrane may pass the threshold (spikes are blocked)
    free = np.where(t < m.refractory, rising, np.minimum(rising, m.v_threshold))
    return np.where(t < release, m.v_hold, free)


def count_constant(
    m: Membrane,
    v_inf: np.ndarray,
    duration: float,
    phase: np.ndarray,
    v_threshold: np.ndarray,
    start: float | None,
) -> np.ndarray:
    """Spikes within `duration` under constant input (float counts, not yet clipped).

    Without `start` a neuron is free-running and the window opens at `phase` (0..1) of its
    cycle; with `start` it leaves the reset clamp at that time.
    """
    isi = interspike_interval(m, v_inf, v_threshold)
    finite = np.isfinite(isi)
    safe = np.where(finite, isi, 1.0)
    if start is None:
        count = np.floor(duration / safe + phase)
    else:
        # after a reset release no holdoff: the first spike comes a full rise after it
        first = start + (safe - m.refractory)
        if np.any(m.holdoff):
            full = interspike_interval(replace(m, holdoff=0.0), v_inf, v_threshold)
            first = np.where(
                m.holdoff > 0, start + (np.where(finite, full, 1.0) - m.refractory), first
            )
        count = np.where(first <= duration, 1 + np.floor((duration - first) / safe), 0.0)
    return np.where(finite, count, 0.0)


def initial_state(m: Membrane, drive: Drive, phase: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(free_from, v_start): when each neuron leaves its first clamp and from which potential.

    A quiet neuron starts at rest; a neuron that fires under the input present at t = 0 is
    free-running and the run opens at `phase` (0..1) of its cycle (inside the refractory
    hold, or on the rising trajectory). A reset release holds everyone until it.
    """
    current = sum(s.amplitude for s in drive.steps if s.on_time == 0)
    v_inf = steady_potential(m, current)
    firing = fires(m, v_inf)
    isi = interspike_interval(m, v_inf)
    elapsed = phase * np.where(np.isfinite(isi), isi, 0.0)
    in_hold = firing & (elapsed < m.release)
    free_from = np.where(in_hold, m.release - elapsed, 0.0)
    v_start = np.where(
        firing, phase_potential(m, v_inf, phase), np.where(np.isfinite(v_inf), v_inf, m.v_hold)
    )
    if drive.release_time is not None:
        free_from = np.full_like(free_from, drive.release_time)
        v_start = m.v_hold
    return free_from, np.where(free_from > 0, m.v_hold, v_start)


# --- Superposition for linear neurons --------------------------------------------------------


def _psc_kernel(s: np.ndarray, tau_m: np.ndarray, tau_s: np.ndarray) -> np.ndarray:
    """Membrane response (s, per unit charge rate) to a current jump decaying with tau_s:
    (exp(-s/tau_s) - exp(-s/tau_m)) / (1/tau_m - 1/tau_s), and s exp(-s/tau) at equal taus."""
    s = np.maximum(s, 0.0)
    rate = 1.0 / tau_m - 1.0 / tau_s
    near = np.abs(rate) * tau_m < 1e-6
    safe = np.where(near, 1.0, rate)
    mean_rate = 0.5 * (1.0 / tau_m + 1.0 / tau_s)
    return np.where(
        near, s * np.exp(-s * mean_rate), (np.exp(-s / tau_s) - np.exp(-s / tau_m)) / safe
    )


def _uniform_step(times: np.ndarray) -> float | None:
    """The grid step if `times` (T, 1) is a uniform grid of at least 3 points, else None."""
    if times.ndim != 2 or times.shape[1] != 1 or times.shape[0] < 3:
        return None
    steps = np.diff(times[:, 0])
    return float(steps[0]) if np.allclose(steps, steps[0], rtol=1e-9, atol=1e-15) else None


def _safe_rate(tau_m: np.ndarray, tau_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """1/tau_m - 1/tau_s kept away from 0 (nudging tau_s by 1e-4 where the taus coincide, a
    negligible change) and the matching tau_s."""
    rate = 1.0 / tau_m - 1.0 / tau_s
    near = np.abs(rate) * tau_m < 1e-4
    rate = np.where(near, 1e-4 / tau_m, rate)
    return rate, 1.0 / (1.0 / tau_m - rate)


def _exponential_sources(
    m: Membrane, drive: Drive
) -> tuple[list[tuple[float, np.ndarray]], list[tuple[np.ndarray, list[tuple[float, np.ndarray]]]]]:
    """The free response as level steps plus decaying exponentials.

    Returns (steps, decays): `steps` are (time, level) jumps of the potential; `decays` are,
    per time constant array, (time, amplitude) terms amplitude * exp(-(t - time) / tau) for
    t > time. A current step is a level jump minus a tau_mem decay; a synaptic event is the
    difference of a tau_syn and a tau_mem decay.
    """
    steps: list[tuple[float, np.ndarray]] = []
    membrane: list[tuple[float, np.ndarray]] = []
    decays: list[tuple[np.ndarray, list[tuple[float, np.ndarray]]]] = [(m.tau_mem, membrane)]
    for current_step in drive.steps:
        for edge, sign in ((current_step.on_time, 1.0), (current_step.off_time, -1.0)):
            level = sign * current_step.amplitude / m.g_leak
            steps.append((edge, level))
            membrane.append((edge, -level))
    for event_times, weights, jump, tau in (
        (drive.exc_times, drive.exc_weights, m.jump_exc, m.tau_syn_exc),
        (drive.inh_times, drive.inh_weights, m.jump_inh, m.tau_syn_inh),
    ):
        if not np.any(jump) or len(event_times) == 0:
            continue
        rate, tau_s = _safe_rate(m.tau_mem, tau)
        synaptic: list[tuple[float, np.ndarray]] = []
        for time, weight in zip(event_times, weights, strict=True):
            amplitude = weight * jump / m.capacitance / rate
            synaptic.append((float(time), amplitude))
            membrane.append((float(time), -amplitude))
        decays.append((tau_s, synaptic))
    return steps, decays


def free_potential(m: Membrane, drive: Drive, times: np.ndarray) -> np.ndarray:
    """Membrane potential without any clamp or spike, at rest before the run starts.

    `times` broadcasts against the neuron axis (last): shape (T, 1) or (T, n) or (1, n). On a
    uniform grid each time constant's decay is tabulated once; between two input changes the
    summed exponentials of all earlier terms are one coefficient times the table, so the cost
    is O(T n) however many events there are.
    """
    shape = np.broadcast_shapes(times.shape, m.e_rest.shape)
    v = np.broadcast_to(m.e_rest, shape).copy()
    steps, decays = _exponential_sources(m, drive)
    grid_step = _uniform_step(times)
    if grid_step is None:
        for edge, level in steps:
            v += np.where(times > edge, level, 0.0)
        for tau, terms in decays:
            for edge, amplitude in terms:
                s = times - edge
                v += np.where(s > 0, amplitude * np.exp(-np.maximum(s, 0) / tau), 0.0)
        return v
    grid = times[:, 0]
    count = grid.size
    for edge, level in steps:
        v[np.searchsorted(grid, edge, side="right") :] += level
    for tau, terms in decays:
        if not terms:
            continue
        table = fast_exp(-(grid[:, None] - grid[0]) / tau)
        firsts = np.searchsorted(grid, [edge for edge, _ in terms], side="right")
        order = np.argsort(firsts, kind="stable")
        coefficient = np.zeros(shape[1:])
        current = None
        for position, index in enumerate(order):
            first = int(firsts[index])
            if first >= count:
                break
            edge, amplitude = terms[index]
            if current is not None and first != current:
                coefficient = coefficient * table[first - current]
            current = first
            coefficient = coefficient + amplitude * np.exp(-(grid[first] - edge) / tau)
            following = order[position + 1] if position + 1 < len(order) else None
            end = count if following is None else int(firsts[following])
            if end > first:
                v[first:end] += coefficient * table[: end - first]
    return v


def linear_response(
    m: Membrane,
    drive: Drive,
    times: np.ndarray,
    v_threshold: np.ndarray,
    initial: tuple[np.ndarray, np.ndarray] | None = None,
    max_spikes: int = p.MAX_TRACE_SPIKES,
) -> tuple[np.ndarray, np.ndarray]:
    """Potential on the time grid `times` (T,) and spike counts of linear neurons.

    `initial` is (free_from, v_start) from `initial_state` (default: phase 0.5 of a firing
    cycle, at rest, or held until a reset release). Each clamp (the start, each spike with its
    hold) restarts the membrane; the deviation from the free response then decays with
    tau_mem. The grid is walked in chunks so each spike costs one chunk, not the whole run.
    Spike times are interpolated between grid points. `max_spikes` stops following a neuron
    once it has fired that often (its counter overflows anyway).
    """
    free = free_potential(m, drive, times[:, None])
    n = m.e_rest.shape[0]
    if initial is None:
        initial = initial_state(m, drive, np.full(n, 0.5))
    start, v_start = (np.array(a, dtype=float) for a in initial)
    deviation = v_start - free_potential(m, drive, start[None, :])[0]
    v_at_start = v_start.copy()
    ready = start.copy()  # when each neuron may fire next (after a spike: its holdoff's end)
    counts = np.zeros(n, dtype=np.int64)
    # Below threshold everywhere (free response, start and reset potentials): never fires,
    # since the potential always lies between the free response and a restart value.
    reachable = (
        (free.max(axis=0) >= v_threshold) | (v_start >= v_threshold) | (m.v_hold >= v_threshold)
    )
    can_fire = m.threshold_on & ~m.clamped & reachable
    out = np.empty_like(free)
    total = times.size
    for first in range(0, total, p.SPIKE_CHUNK):
        last = min(first + p.SPIKE_CHUNK, total)
        low = max(first - 1, 0)  # one point of overlap: the previous point of a crossing
        tt = times[low:last, None]
        seg = _segment(free[low:last], tt, m.tau_mem, m.v_hold, start, deviation)
        while True:
            index = np.flatnonzero(can_fire & (counts < max_spikes))
            if index.size == 0:
                break
            own = tt[first - low :]
            crossed = (own >= ready[index]) & (seg[first - low :, index] >= v_threshold[index])
            has = crossed.any(axis=0)
            if not has.any():
                break
            index = index[has]
            k = crossed[:, has].argmax(axis=0) + (first - low)
            t_k, v_k = tt[k, 0], seg[k, index]
            previous = np.maximum(k - 1, 0)
            use_previous = (k > 0) & (tt[previous, 0] >= ready[index])
            t_prev = np.where(use_previous, tt[previous, 0], ready[index])
            v_prev = np.where(use_previous, seg[previous, index], v_at_start[index])
            with np.errstate(divide="ignore", invalid="ignore"):
                fraction = np.clip((v_threshold[index] - v_prev) / (v_k - v_prev), 0.0, 1.0)
            spike = np.where(
                v_prev >= v_threshold[index],
                t_prev,
                t_prev + np.nan_to_num(fraction) * (t_k - t_prev),
            )
            counts[index] += 1
            sub = m.take(index)
            start[index] = spike + sub.release
            deviation[index] = (
                m.v_hold[index] - free_potential(sub, drive.take(index), start[index][None, :])[0]
            )
            v_at_start[index] = m.v_hold[index]
            if np.any(sub.holdoff):
                # no crossing counts before the holdoff ends; from there on the membrane is
                # where its free rise took it
                ready[index] = spike + sub.refractory
                at_ready = free_potential(sub, drive.take(index), ready[index][None, :])[0]
                v_at_start[index] = at_ready + deviation[index] * np.exp(
                    -(ready[index] - start[index]) / sub.tau_mem
                )
            else:
                ready[index] = start[index]
            restarted = _segment(
                free[low:last, index],
                tt,
                m.tau_mem[index],
                m.v_hold[index],
                start[index],
                deviation[index],
            )
            seg[:, index] = np.where(tt >= spike, restarted, seg[:, index])
        out[first:last] = seg[first - low :]
    out = np.where(m.clamped, m.v_hold, out)
    out = np.where(m.dead, p.DEAD_NEURON_POTENTIAL, out)
    return clip_rails(out), counts


def _segment(
    free: np.ndarray,
    tt: np.ndarray,
    tau: np.ndarray,
    v_hold: np.ndarray,
    start: np.ndarray,
    deviation: np.ndarray,
) -> np.ndarray:
    """Potential on `tt` of neurons last restarted at `start`: held at V_hold before it, the
    free response plus a decaying deviation after it."""
    since = tt - start
    restarted = free + deviation * fast_exp(-np.maximum(since, 0.0) / tau)
    return np.where(since < 0, v_hold, restarted)


# --- Numerical integration (adaptation, exponential term) -------------------------------------


def _event_sums(index: np.ndarray, weights: np.ndarray, count: int) -> np.ndarray:
    """Summed event weights per grid step: (count,) for shared weights, (count, neurons) for
    per-neuron ones."""
    if weights.ndim == 1:
        return np.bincount(index, weights, minlength=count)
    sums = np.zeros((count, weights.shape[1]))
    np.add.at(sums, index, weights)
    return sums


def integrate(
    m: Membrane,
    drive: Drive,
    times: np.ndarray,
    v_threshold: np.ndarray,
    record: bool,
    initial: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Exponential-Euler integration on the grid `times` (from 0); returns the potential at
    every grid time (if `record`), the spike counts and the final potential.

    The linear part (leak, synaptic currents) uses exact propagators over each step; the
    exponential and adaptation currents are held constant within a step.
    """
    n = m.e_rest.shape[0]
    if initial is None:
        initial = initial_state(m, drive, np.full(n, 0.5))
    free_at, v = (np.array(a, dtype=float) for a in initial)
    w = m.adapt_a * (v - m.e_leak)
    i_exc = np.zeros(n)
    i_inh = np.zeros(n)
    counts = np.zeros(n, dtype=np.int64)
    trace = np.empty((len(times), n)) if record else None
    exc_index = np.searchsorted(times, drive.exc_times, side="left")
    inh_index = np.searchsorted(times, drive.inh_times, side="left")
    exc_add = _event_sums(exc_index, drive.exc_weights, len(times) + 1)
    inh_add = _event_sums(inh_index, drive.inh_weights, len(times) + 1)
    exc_at = np.any(exc_add.reshape(len(times) + 1, -1) != 0, axis=1)
    inh_at = np.any(inh_add.reshape(len(times) + 1, -1) != 0, axis=1)
    adaptive = bool(np.any(m.adapt_a) or np.any(m.adapt_b))
    holdoff = bool(np.any(m.holdoff))
    blocked_until = free_at.copy()
    exponential = bool(m.exponential.any())
    cache: dict[float, tuple[np.ndarray, ...]] = {}
    previous_time = times[0]
    for k, time in enumerate(times):
        if k > 0:
            dt = time - previous_time
            key = round(dt, 15)
            if key not in cache:
                cache[key] = (
                    np.exp(-dt / m.tau_mem),
                    _psc_kernel(np.full(n, dt), m.tau_mem, m.tau_syn_exc) / m.capacitance,
                    _psc_kernel(np.full(n, dt), m.tau_mem, m.tau_syn_inh) / m.capacitance,
                    np.exp(-dt / m.tau_syn_exc),
                    np.exp(-dt / m.tau_syn_inh),
                    np.exp(-dt / m.tau_w),
                )
            decay, gain_exc, gain_inh, decay_exc, decay_inh, decay_w = cache[key]
            current = sum(
                s.amplitude for s in drive.steps if s.on_time <= previous_time < s.off_time
            )
            extra = current - w
            if exponential:
                extra = extra + np.where(
                    m.exponential,
                    m.g_leak
                    * m.delta_t
                    * np.exp(np.minimum((v - m.v_t) / m.delta_t, p.EXP_MAX_EXPONENT)),
                    0.0,
                )
            target = m.e_rest + extra / m.g_leak
            v_new = target + (v - target) * decay + i_exc * gain_exc + i_inh * gain_inh
            i_exc = i_exc * decay_exc
            i_inh = i_inh * decay_inh
            if adaptive:
                w_target = m.adapt_a * (v - m.e_leak)
                w = w_target + (w - w_target) * decay_w
            v = np.minimum(v_new, p.MEMBRANE_RAILS[1])
            previous_time = time
        held = (time < free_at) | m.clamped
        v = np.where(held, m.v_hold, v)
        spike = m.threshold_on & ~held & (v >= v_threshold)
        if holdoff:
            spike &= time >= blocked_until
        if spike.any():
            counts += spike
            w = w + np.where(spike, m.adapt_b, 0.0)
            free_at = np.where(spike, time + m.release, free_at)
            if holdoff:
                blocked_until = np.where(spike, time + m.refractory, blocked_until)
            v = np.where(spike, m.v_hold, v)
        if exc_at[k]:
            i_exc = i_exc + exc_add[k] * m.jump_exc
        if inh_at[k]:
            i_inh = i_inh + inh_add[k] * m.jump_inh
        if record:
            trace[k] = v
    if record:
        trace = np.where(m.clamped, m.v_hold, trace)
        trace = clip_rails(np.where(m.dead, p.DEAD_NEURON_POTENTIAL, trace))
    v = clip_rails(np.where(m.dead, p.DEAD_NEURON_POTENTIAL, np.where(m.clamped, m.v_hold, v)))
    return trace, counts, v
