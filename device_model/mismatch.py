"""Fixed-pattern mismatch, drift and faults of one simulated chip, drawn once from its seed.

`ChipTruth` is the chip's ground truth: every per-neuron and per-quadrant deviation the model
uses. It exists for studies and benchmarks; calibration code must never read it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields

import numpy as np

from device_model import params as p
from device_model.coba import CobaTruth, draw_coba_truth
from device_model.compartments import CompartmentTruth, draw_compartment_truth
from device_model.holdoff import HoldoffTruth, draw_holdoff_truth
from device_model.protocol import N_NEURONS, N_QUADRANTS, NEURONS_PER_QUADRANT
from device_model.synapses import SynapseTruth, draw_synapse_truth

_STREAM_MISMATCH = 0
_STREAM_DRIFT = 1
_STREAM_FAULTS = 2
STREAM_NOISE = 3
STREAM_RUNS = 4

OUTLIER_KINDS = tuple(p.OUTLIER_KIND_WEIGHTS)
"""Index into this tuple is `ChipTruth.outlier_kind` (-1: not an outlier)."""


def stable_seed(chip_id: str) -> int:
    """A seed from the chip id that is the same in every process (sha256, not hash())."""
    return int.from_bytes(hashlib.sha256(chip_id.encode()).digest()[:8], "little")


def stream(seed: int, kind: int, *extra: int) -> np.random.Generator:
    """An independent random stream of the chip: mismatch, drift, faults, noise or runs."""
    return np.random.default_rng([seed, kind, *extra])


@dataclass(frozen=True)
class Faults:
    """Injected faults: transient run failures, dead neurons and neurons stuck in reset.

    `run_failure_rate` is the probability that a device call (a CADC read, a spike count, an
    MADC recording however many runs it takes) fails with TransientRunError; the fractions
    select dead and stuck neurons once, from the chip's seed.
    """

    run_failure_rate: float = 0.0
    dead_fraction: float = 0.0
    stuck_fraction: float = 0.0

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
                raise ValueError(f"{field.name} = {value!r} is outside the allowed range 0..1")
        if self.dead_fraction + self.stuck_fraction > 1.0:
            raise ValueError("dead_fraction + stuck_fraction must not exceed 1")

    @classmethod
    def typical(cls) -> Faults:
        """About 0.5 % dead, 0.5 % stuck neurons and 1 % of runs failing transiently."""
        return cls(
            p.FAULT_PRESET_RUN_FAILURE_RATE,
            p.FAULT_PRESET_DEAD_FRACTION,
            p.FAULT_PRESET_STUCK_FRACTION,
        )


@dataclass(frozen=True)
class ChipTruth:
    """Ground truth of one chip. Arrays of shape (512,) unless marked (4,) (per quadrant).

    Offsets and drops in volts, gains relative (1 = nominal), codes in CapMem codes.
    """

    capmem_gain: np.ndarray
    """(4,) relative CapMem gain error of each quadrant (V = c * 1.76 mV * (1 + gain))."""
    leak_drop: np.ndarray
    leak_offset: np.ndarray
    """Leak follower offset, including drift and outlier defects."""
    leak_beta: np.ndarray
    """Coefficient (V) of ln(g_l / g_ref) in the leak potential."""
    reset_drop: np.ndarray
    reset_offset: np.ndarray
    threshold_offset: np.ndarray
    leak_gain: np.ndarray
    leak_dead_zone: np.ndarray
    leak_parallel: np.ndarray
    """Parasitic leak conductance (S)."""
    leak_divide: np.ndarray
    """Actual factor of the divide switch (about 1/8)."""
    leak_multiply: np.ndarray
    membrane_intrinsic: np.ndarray
    """Intrinsic membrane capacitance (F)."""
    reset_gain: np.ndarray
    syn_exc_tau_gain: np.ndarray
    syn_inh_tau_gain: np.ndarray
    syn_exc_dead_zone: np.ndarray
    syn_inh_dead_zone: np.ndarray
    syn_exc_parallel: np.ndarray
    syn_inh_parallel: np.ndarray
    syn_exc_high_resistance: np.ndarray
    syn_inh_high_resistance: np.ndarray
    syn_exc_gm_gain: np.ndarray
    syn_inh_gm_gain: np.ndarray
    syn_dac_gain: np.ndarray
    """(4,) synapse DAC gain of each quadrant."""
    syn_exc_cancel_code: np.ndarray
    """Shift code at which the excitatory input's offset current vanishes."""
    syn_inh_cancel_code: np.ndarray
    syn_exc_offset_gain: np.ndarray
    syn_inh_offset_gain: np.ndarray
    adapt_a_gain: np.ndarray
    adapt_b_gain: np.ndarray
    adapt_tau_gain: np.ndarray
    exp_slope_gain: np.ndarray
    exp_onset_offset: np.ndarray
    cadc_ramp_offset_error: np.ndarray
    """(4,) error (V) of each quadrant's ramp start."""
    cadc_ramp_slope_gain: np.ndarray
    """(4,) relative gain of each quadrant's ramp slope."""
    cadc_channel_offset: np.ndarray
    """Per-channel CADC offset (LSB), including drift."""
    outlier_kind: np.ndarray
    """Index into OUTLIER_KINDS of a neuron's gross defect, -1 for none."""
    dead: np.ndarray
    stuck: np.ndarray
    synapses: SynapseTruth | None = None
    """Synapse array and synapse drivers (device_model/synapses.py); drawn from a stream of
    its own, so the neurons are the same with or without it."""
    coba: CobaTruth | None = None
    """COBA OTAs of the synaptic inputs (device_model/coba.py); drawn from a stream of its
    own, like the synapses."""
    compartments: CompartmentTruth | None = None
    """Inter-compartment conductances (device_model/compartments.py); a stream of their own."""
    holdoff: HoldoffTruth | None = None
    """Release latency of the reset holdoff (device_model/holdoff.py); a stream of its own."""

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, np.ndarray):
                value.flags.writeable = False  # ground truth is read-only

    @property
    def outlier(self) -> np.ndarray:
        return self.outlier_kind >= 0

    def per_neuron(self, quadrant_values: np.ndarray) -> np.ndarray:
        """Expand a (4,) per-quadrant array to (512,)."""
        return np.repeat(quadrant_values, NEURONS_PER_QUADRANT, axis=-1)


def _lognormal(rng: np.random.Generator, sigma: float, scale: float, size: int) -> np.ndarray:
    return np.exp(sigma * scale * rng.standard_normal(size))


def draw_truth(
    seed: int, mismatch_scale: float, drift_hours: float, faults: Faults | None
) -> ChipTruth:
    """The chip's ground truth. The draw order is fixed so a seed always gives the same chip,
    and every spread is a standard draw times its sigma times `mismatch_scale`."""
    rng = stream(seed, _STREAM_MISMATCH)
    s = mismatch_scale
    n, q = N_NEURONS, N_QUADRANTS

    def normal(sigma: float, size: int = n, mean: float = 0.0) -> np.ndarray:
        return mean + sigma * s * rng.standard_normal(size)

    def uniform(low: float, high: float, size: int = n) -> np.ndarray:
        mid = 0.5 * (low + high)
        return mid + s * (rng.uniform(low, high, size) - mid)

    capmem_gain = normal(p.CAPMEM_QUADRANT_GAIN_SPREAD, q)
    leak_drop_std = rng.standard_normal(n)
    reset_drop_std = p.RESET_DROP_CORRELATION * leak_drop_std + np.sqrt(
        1 - p.RESET_DROP_CORRELATION**2
    ) * rng.standard_normal(n)
    leak_drop = p.LEAK_DROP_MEAN + p.LEAK_DROP_SPREAD * s * leak_drop_std
    reset_drop = p.LEAK_DROP_MEAN + p.RESET_DROP_SPREAD * s * reset_drop_std
    leak_offset = normal(p.LEAK_OFFSET_SPREAD)
    leak_beta = normal(p.LEAK_BETA_SPREAD)
    reset_offset = normal(p.RESET_OFFSET_SPREAD)
    threshold_offset = normal(p.THRESHOLD_OFFSET_SPREAD)
    leak_gain = _lognormal(rng, p.LEAK_GAIN_SIGMA, s, n)
    leak_dead_zone = normal(p.LEAK_DEAD_ZONE_SPREAD)
    leak_parallel = uniform(*p.LEAK_PARALLEL_RANGE)
    leak_divide = p.LEAK_DIVIDE_FACTOR * (1 + normal(p.LEAK_SWITCH_SPREAD))
    leak_multiply = p.LEAK_MULTIPLY_FACTOR * (1 + normal(p.LEAK_SWITCH_SPREAD))
    membrane_intrinsic = np.maximum(
        normal(p.MEMBRANE_INTRINSIC_SPREAD, mean=p.MEMBRANE_INTRINSIC_CAPACITANCE),
        p.MEMBRANE_INTRINSIC_FLOOR,
    )
    reset_gain = _lognormal(rng, p.RESET_GAIN_SIGMA, s, n)
    syn: dict[str, np.ndarray] = {}
    for kind in ("exc", "inh"):
        syn[f"syn_{kind}_tau_gain"] = _lognormal(rng, p.SYN_GAIN_SIGMA, s, n)
        syn[f"syn_{kind}_dead_zone"] = normal(p.SYN_DEAD_ZONE_SPREAD)
        syn[f"syn_{kind}_parallel"] = uniform(*p.SYN_PARALLEL_RANGE)
        syn[f"syn_{kind}_high_resistance"] = p.SYN_HIGH_RESISTANCE_FACTOR * (
            1 + normal(p.SYN_HIGH_RESISTANCE_SPREAD)
        )
        syn[f"syn_{kind}_gm_gain"] = _lognormal(rng, p.SYN_GM_SIGMA, s, n)
        syn[f"syn_{kind}_cancel_code"] = np.clip(
            normal(p.SYN_CANCEL_CODE_SPREAD, mean=p.SYN_CANCEL_CODE_MEAN),
            *p.SYN_CANCEL_CODE_RANGE,
        )
        syn[f"syn_{kind}_offset_gain"] = _lognormal(rng, p.SYN_OFFSET_GAIN_SIGMA, s, n)
    syn_dac_gain = _lognormal(rng, p.SYN_DAC_SIGMA, s, q)
    adapt_a_gain = _lognormal(rng, p.ADEX_SIGMA, s, n)
    adapt_b_gain = _lognormal(rng, p.ADEX_SIGMA, s, n)
    adapt_tau_gain = _lognormal(rng, p.ADEX_SIGMA, s, n)
    exp_slope_gain = _lognormal(rng, p.ADEX_SIGMA, s, n)
    exp_onset_offset = normal(p.EXP_ONSET_OFFSET_SPREAD)
    cadc_ramp_offset_error = normal(p.CADC_RAMP_OFFSET_SPREAD, q)
    cadc_ramp_slope_gain = _lognormal(rng, p.CADC_RAMP_SLOPE_SIGMA, s, q)
    cadc_channel_offset = normal(p.CADC_CHANNEL_OFFSET_SPREAD)

    # Gross outliers: a fixed uniform draw selects them, so none exist at mismatch_scale 0.
    outlier_draw = rng.uniform(size=n)
    kind_draw = rng.choice(
        len(OUTLIER_KINDS), size=n, p=np.array(list(p.OUTLIER_KIND_WEIGHTS.values()))
    )
    sign = np.where(rng.uniform(size=n) < 0.5, -1.0, 1.0)
    magnitude = rng.uniform(size=n)
    outlier_kind = np.where((outlier_draw < p.OUTLIER_FRACTION) & (s > 0), kind_draw, -1)
    potential_defect = s * sign * np.interp(magnitude, [0, 1], p.OUTLIER_POTENTIAL_OFFSET)
    threshold_defect = s * np.interp(magnitude, [0, 1], p.OUTLIER_THRESHOLD_OFFSET)
    leak_offset = leak_offset + np.where(outlier_kind == 0, potential_defect, 0.0)
    reset_offset = reset_offset + np.where(outlier_kind == 1, potential_defect, 0.0)
    threshold_offset = threshold_offset + np.where(outlier_kind == 2, threshold_defect, 0.0)
    leak_gain = np.where(
        outlier_kind == 3, leak_gain * p.OUTLIER_LEAK_GAIN ** min(s, 1.0), leak_gain
    )

    drift = drift_offsets(seed, drift_hours, 4)
    leak_offset = leak_offset + drift[0]
    reset_offset = reset_offset + drift[1]
    threshold_offset = threshold_offset + drift[2]
    cadc_channel_offset = cadc_channel_offset + drift[3] / p.CADC_NOMINAL_LSB

    dead, stuck = draw_faulty_neurons(seed, faults)
    return ChipTruth(
        capmem_gain=capmem_gain,
        leak_drop=leak_drop,
        leak_offset=leak_offset,
        leak_beta=leak_beta,
        reset_drop=reset_drop,
        reset_offset=reset_offset,
        threshold_offset=threshold_offset,
        leak_gain=leak_gain,
        leak_dead_zone=leak_dead_zone,
        leak_parallel=leak_parallel,
        leak_divide=leak_divide,
        leak_multiply=leak_multiply,
        membrane_intrinsic=membrane_intrinsic,
        reset_gain=reset_gain,
        **syn,
        syn_dac_gain=syn_dac_gain,
        adapt_a_gain=adapt_a_gain,
        adapt_b_gain=adapt_b_gain,
        adapt_tau_gain=adapt_tau_gain,
        exp_slope_gain=exp_slope_gain,
        exp_onset_offset=exp_onset_offset,
        cadc_ramp_offset_error=cadc_ramp_offset_error,
        cadc_ramp_slope_gain=cadc_ramp_slope_gain,
        cadc_channel_offset=cadc_channel_offset,
        outlier_kind=outlier_kind,
        dead=dead,
        stuck=stuck,
        synapses=draw_synapse_truth(seed, mismatch_scale),
        coba=draw_coba_truth(seed, mismatch_scale),
        compartments=draw_compartment_truth(seed, mismatch_scale),
        holdoff=draw_holdoff_truth(seed, mismatch_scale),
    )


def drift_offsets(seed: int, hours: float, count: int) -> np.ndarray:
    """(count, 512) offsets (V) after `hours` of ageing: one Brownian path per offset.

    The path is drawn day by day (day endpoints from one stream) with hourly Brownian bridges
    inside the current day, so the chip at 30 h lies on the same path as at 24 h and 48 h.
    """
    if hours < 0 or not np.isfinite(hours):
        raise ValueError(f"drift_hours must be a finite number >= 0, got {hours!r}")
    if hours == 0:
        return np.zeros((count, N_NEURONS))
    day = p.DRIFT_DAY_HOURS
    days_done = int(hours // day)
    rng = stream(seed, _STREAM_DRIFT)
    day_steps = rng.standard_normal((days_done + 1, count, N_NEURONS)) * np.sqrt(day)
    start = day_steps[:days_done].sum(axis=0)
    end = start + day_steps[days_done]
    hourly = stream(seed, _STREAM_DRIFT, days_done + 1).standard_normal((day, count, N_NEURONS))
    walk = np.concatenate([np.zeros((1, count, N_NEURONS)), np.cumsum(hourly, axis=0)])
    fraction = np.arange(day + 1)[:, None, None] / day
    path = start + fraction * (end - start) + walk - fraction * walk[-1]
    within = hours - days_done * day
    hour = min(int(within), day - 1)
    position = path[hour] + (within - hour) * (path[hour + 1] - path[hour])
    return p.DRIFT_PER_SQRT_HOUR * position


def draw_faulty_neurons(seed: int, faults: Faults | None) -> tuple[np.ndarray, np.ndarray]:
    """Dead and stuck neuron masks (disjoint), from the chip's fault stream."""
    if faults is None:
        return np.zeros(N_NEURONS, bool), np.zeros(N_NEURONS, bool)
    draw = stream(seed, _STREAM_FAULTS).uniform(size=N_NEURONS)
    dead = draw < faults.dead_fraction
    stuck = (draw >= faults.dead_fraction) & (draw < faults.dead_fraction + faults.stuck_fraction)
    return dead, stuck
