"""The threshold of a firing neuron from the maxima of its random-phase CADC samples.

A neuron whose leak lies far above its threshold fires without pause; CADC samples at random
phases of its cycle spread over the rising trajectory, up to the threshold. With read noise
of sigma LSB, a read's maximum lies above the threshold by an amount that depends on sigma and
on the density of samples just below the threshold (where the membrane slows towards its
leak potential, the density rises). Both are measured from the samples themselves:

- The density near the top, from the counts in two bins below a level some LSB under the
  top. The membrane approaches its leak potential exponentially, so the density goes as
  1 / (v_leak - v): its reciprocal is extrapolated linearly, with the relative slope shared
  among neurons at similar levels (one neuron's bins give it too noisily).
- The noise, from how far the maximum of all reads lies above the mean of the single reads'
  maxima: for a given density, that gap grows in proportion to sigma and does not depend on
  the threshold. It is fitted across neurons at similar levels (a neighbourhood in level,
  before the channels' digital offsets), because the CADC's compressed top shrinks the noise
  there.

With constant density rho (fraction of samples per LSB) near the threshold theta, a sample
exceeds theta + sigma * u with probability rho * sigma * G(u), G(u) = phi(u) - u * Q(u), so
the maximum of n samples has P(max < theta + sigma * u) = exp(-n * rho * sigma * G(u)): its
mean is theta + sigma * m(n * rho * sigma) (`expected_maximum`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np

BAND_WIDTH = 8.0
"""Distance (LSB) below the top of the level the density is measured under, and the width
of the two bins below the level it is measured in."""
MIN_BAND_SAMPLES = 50
"""Samples the two bins need together for a neuron's density to count."""
MAX_DENSITY_RISE = 2.0
"""At most this factor between the density at the threshold and at the level."""
NOISE_NEIGHBOURHOOD = 10.0
"""LSB: the Gaussian width over threshold levels within which neurons share a noise fit."""
LIMITED_SHRINKAGE = 1.0
"""A neuron's density slope moves towards its neighbours' by at most this many standard
deviations of its own counts' noise."""
NOISE_ITERATIONS = 3
THRESHOLD_ITERATIONS = 2


@dataclass(frozen=True)
class TopCounts:
    """What the estimate needs of `reads` reads of `samples_per_read` samples each, per
    neuron: the mean of the reads' maxima, the maximum of all samples, and the counts of all
    samples at or above `top - BAND_WIDTH` (above) and in the two bins of BAND_WIDTH / 2 below
    it (near, then far)."""

    maxima: np.ndarray
    top: np.ndarray
    above: np.ndarray
    near: np.ndarray
    far: np.ndarray
    samples_per_read: int
    reads: int

    @property
    def level(self) -> np.ndarray:
        """The level the counts start at: a bin edge (a code k stands for k +- 0.5)."""
        return self.top - BAND_WIDTH - 0.5


def top_counts(codes: np.ndarray, reads: int) -> TopCounts:
    """`TopCounts` of CADC codes (reads * samples_per_read, n; integers), read after read."""
    codes = np.asarray(codes)
    samples_per_read = codes.shape[0] // reads
    maxima = codes.reshape(reads, samples_per_read, -1).max(axis=1).mean(axis=0)
    top = codes.max(axis=0).astype(np.int64)
    width, half = int(BAND_WIDTH), int(BAND_WIDTH) // 2

    def at_least(below_top: int) -> np.ndarray:
        # on integer codes, a level k - 0.5 is reached by the codes k and up
        level = np.clip(top - below_top, 0, None).astype(codes.dtype)
        return np.count_nonzero(codes >= level[None, :], axis=0).astype(float)

    above, band, bottom = at_least(width), at_least(width + half), at_least(2 * width)
    return TopCounts(
        maxima=maxima,
        top=top.astype(float),
        above=above,
        near=band - above,
        far=bottom - band,
        samples_per_read=samples_per_read,
        reads=reads,
    )


@cache
def _maximum_table() -> tuple[np.ndarray, np.ndarray]:
    # scipy on first use: the command line's help loads the plans without it
    from scipy.integrate import trapezoid
    from scipy.stats import norm

    u = np.linspace(-6.0, 8.0, 2801)
    tail = norm.pdf(u) - u * norm.sf(u)
    log_rates = np.linspace(np.log(0.05), np.log(1e5), 240)
    cdf = np.exp(-np.exp(log_rates)[:, None] * tail[None, :])
    mean = trapezoid(u[None, :] * np.gradient(cdf, u, axis=1), u, axis=1)
    return log_rates, mean


def expected_maximum(rate: np.ndarray) -> np.ndarray:
    """Mean maximum, in units of sigma above the threshold, of samples with `rate` samples
    per sigma of constant density just below it (and none above), each with Gaussian noise."""
    log_rates, mean = _maximum_table()
    return np.interp(np.log(np.clip(rate, 1e-12, None)), log_rates, mean)


def threshold_estimate(counts: TopCounts, channel_offset: np.ndarray | None = None) -> np.ndarray:
    """Per neuron, the noise-free threshold (LSB) the counts point at.

    `channel_offset`: the CADC channels' digital offsets (LSB), added after the conversion and
    its compressed top, so the noise is fitted over neurons at similar codes less their offset.

    A neuron without a usable density (too few samples near the top, e.g. one that does not
    fire) is read as its mean maximum less the median bias of the usable ones; with no usable
    neuron at all, as its mean maximum.
    """
    half = BAND_WIDTH / 2
    level = counts.level
    ramp_level = level if channel_offset is None else level - channel_offset
    with np.errstate(invalid="ignore", divide="ignore"):
        # 1 / density (LSB per sample) at the bins' centres, linear in the potential
        inverse_near, inverse_far = half / counts.near, half / counts.far
        slope = (inverse_near - inverse_far) / half
        at_level = inverse_near + slope * half / 2
    counted = (
        (counts.near + counts.far >= MIN_BAND_SAMPLES)
        & np.isfinite(slope)
        & np.isfinite(at_level)
        & (at_level > 0)
    )
    if not counted.any():
        return counts.maxima.copy()
    curvature = _pooled_curvature(counts, slope, at_level, ramp_level, counted)
    at_level = _inverse_density_at_level(counts.near + counts.far, curvature)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        slope = curvature * at_level  # NaN where the bins are empty (not `counted`)
        curved = np.abs(slope) > 1e-9 * np.abs(at_level)
        # above = ln(1 + slope * x / at_level) / slope for the distance x from the level
        distance = np.where(
            curved,
            at_level * np.expm1(slope * counts.above) / np.where(curved, slope, 1.0),
            at_level * counts.above,
        )
    usable = counted & np.isfinite(distance) & (distance > 0) & (distance < 3 * BAND_WIDTH)
    if not usable.any():
        return counts.maxima.copy()
    at_level, slope = np.where(usable, at_level, 1.0), np.where(usable, slope, 0.0)
    distance = np.where(usable, distance, 1.0)

    def rate_per_read(distance: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        # Noisy bins can put the extrapolation's pole just above the level; the membrane's
        # slowing near the top of the threshold reading stays well short of it.
        inverse = np.maximum(at_level + slope * distance, at_level / MAX_DENSITY_RISE)
        return sigma / (inverse * counts.reads)

    theta = np.where(usable, level + distance, counts.maxima)
    ramp = theta if channel_offset is None else theta - channel_offset
    sigma = _noise(counts, ramp, usable, lambda s: rate_per_read(distance, s))
    for _ in range(THRESHOLD_ITERATIONS):
        inside = np.clip(theta - level, 0.5, 3 * BAND_WIDTH)
        theta = counts.maxima - sigma * expected_maximum(rate_per_read(inside, sigma))
    bias = counts.maxima - theta
    fallback = float(np.median(bias[usable]))
    return np.where(usable, theta, counts.maxima - fallback)


def _noise(counts: TopCounts, theta: np.ndarray, usable: np.ndarray, rate) -> np.ndarray:
    """Per neuron, the read noise (LSB) near its top, fitted over its neighbours in level:
    top - maxima = sigma * (m(reads * rate) - m(rate)), a least-squares ratio whose sums are
    Gaussian-weighted over levels (`_level_neighbourhoods`)."""
    sigma = np.ones_like(theta)
    if not usable.any():
        return sigma
    smoothed = _level_neighbourhoods(theta, usable)
    gap = smoothed(counts.top - counts.maxima)
    for _ in range(NOISE_ITERATIONS):
        per_read = rate(sigma)
        gain = expected_maximum(counts.reads * per_read) - expected_maximum(per_read)
        with np.errstate(invalid="ignore", divide="ignore"):
            fitted = gap / smoothed(gain)
        sigma = np.where(np.isfinite(fitted) & (fitted > 0), fitted, 1.0)
    return sigma


def _level_neighbourhoods(
    levels: np.ndarray, usable: np.ndarray
) -> Callable[[np.ndarray], np.ndarray]:
    """A function of per-neuron values: their sums over the usable neurons, Gaussian-weighted
    by level (NOISE_NEIGHBOURHOOD), at each neuron's level. Taken on a 1 LSB grid: the
    weights vary over 10 LSB."""
    low = np.floor(levels[usable].min())
    slot = np.clip(np.rint(np.where(usable, levels, low) - low), 0, None).astype(np.int64)
    size = int(slot.max()) + 1
    grid = np.arange(size, dtype=float)
    smooth = np.exp(-0.5 * ((grid[:, None] - grid[None, :]) / NOISE_NEIGHBOURHOOD) ** 2)

    def smoothed(values: np.ndarray) -> np.ndarray:
        return (smooth @ np.bincount(slot[usable], values[usable], minlength=size))[slot]

    return smoothed


def _pooled_curvature(
    counts: TopCounts,
    slope: np.ndarray,
    at_level: np.ndarray,
    level: np.ndarray,
    usable: np.ndarray,
) -> np.ndarray:
    """Per neuron, the relative slope of 1 / density (per LSB): its own, shrunk towards that
    of its neighbours in level.

    One neuron's two bins give its slope with Poisson noise that the extrapolation to the top
    amplifies into the threshold's bias (0.13 LSB a read at the defaults, half the read's own
    scatter). Neighbours in level mostly share it (the approach to the same leak at the top,
    1 / (v_leak - v), and the CADC's compressed top). The shrinkage weighs the spread of the
    neighbours' slopes beyond their noise against this neuron's noise (empirical Bayes), and
    moves a slope by at most LIMITED_SHRINKAGE of its own noise: a neuron whose leak barely
    clears its threshold (a steep top; the chips' median top lies ~100 LSB above the level)
    keeps part of its own slope, and reads at most ~0.12 LSB high."""
    smoothed = _level_neighbourhoods(level, usable)
    weight = smoothed(usable.astype(float))
    with np.errstate(invalid="ignore", divide="ignore"):
        own = slope / at_level
        # var(1 / n) ~ 1 / n**3 for a Poisson count n, in both bins
        noise = (1.0 / counts.near**3 + 1.0 / counts.far**3) / at_level**2
        # (the sums take the usable neurons alone)
        shared = smoothed(slope) / smoothed(at_level)
        spread = smoothed((own - shared) ** 2 - noise) / weight
        spread = np.clip(np.where(np.isfinite(spread), spread, 0.0), 0.0, None)
        trust = np.where(usable, spread / (spread + noise), 0.0)
        curvature = np.where(np.isfinite(shared), shared, 0.0)
        curvature = curvature + np.where(np.isfinite(own), trust * (own - curvature), 0.0)
        # ... but by no more than its own noise: a neuron far off its neighbours keeps most
        # of its slope (limited translation)
        reach = LIMITED_SHRINKAGE * np.sqrt(noise)
        curvature = np.where(
            np.isfinite(own) & np.isfinite(reach),
            np.clip(curvature, own - reach, own + reach),
            curvature,
        )
    # 1 / density stays positive over the bins (a pole below the level is no approach)
    return np.minimum(curvature, 0.5 / BAND_WIDTH)


def _inverse_density_at_level(samples: np.ndarray, curvature: np.ndarray) -> np.ndarray:
    """1 / density (LSB per sample) at the level from the `samples` in the BAND_WIDTH below
    it, for 1 / density = at_level * (1 + curvature * x) at the distance x from the level."""
    flat = np.abs(curvature) < 1e-9
    with np.errstate(invalid="ignore", divide="ignore"):
        # samples = -ln(1 - curvature * BAND_WIDTH) / (curvature * at_level)
        span = np.where(
            flat, BAND_WIDTH, -np.log1p(-curvature * BAND_WIDTH) / np.where(flat, 1.0, curvature)
        )
        return span / samples
