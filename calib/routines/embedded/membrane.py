"""Membrane time constant from firing periods (embedded mode: spike counters and CADC only).

A LIF neuron whose leak potential V_l lies above its threshold V_th fires regularly. After a
spike it is held at the reset V_r for the hold time h (refractory time plus the reset pulse),
then rises as V(t) = V_l - (V_l - V_r) exp(-t / tau_mem) and spikes on reaching V_th, so its
period is

    T = h + tau_mem ln((V_l - V_r) / (V_l - V_th)).

Measured at two reset potentials V_r1 < V_r2 (same leak, threshold and hold), the difference

    T_1 - T_2 = tau_mem ln((V_l - V_r1) / (V_l - V_r2))

no longer holds h or V_th: tau_mem follows from two periods (spike counters) and three
potentials the CADC reads directly (V_l with spiking off, V_r1 and V_r2 with the neuron held in
reset). The threshold cancels, which matters: its CADC estimate (maxima of a firing neuron's
samples) is good to about 0.1 LSB, and through a single period that would be 0.2 % of tau_mem.
The leak, reset and threshold are calibrated first, so the set-up potentials sit where wanted
for every neuron (the set-up raises the leak and places the two resets around the calibrated
ones by code offsets: CapMem and CADC share one scale, 2.4 codes per LSB).

The per-step arithmetic is integer sums of counts and CADC codes, a division and a logarithm
(a table look-up on a vector unit) per neuron. The search is `SecantSearch` on the leak bias.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from calib.core.routine import Routine
from calib.routines.cadc import CODES_PER_LSB
from calib.routines.nominal import leak_switches, nominal_leak_bias, switches_after_probe
from device_model.protocol import CAPMEM_MAX, Device

SETUP_LEAK = 165.0
"""Leak potential of the set-up (LSB): high above threshold, below the CADC's compressed top
(channel offsets of up to 3 sigma included)."""
SETUP_RESETS = (40.0, 110.0)
"""The two reset potentials (LSB): low in the CADC's reliable range, and some 15 LSB below the
calibrated threshold."""
FAST_REFRACTORY = {"refractory_counter": 1, "refractory_clock_scale": 0}
"""Shortest hold: more spikes per run (the hold cancels in the difference anyway)."""
POTENTIAL_SAMPLES = 400
"""CADC samples per potential: ~0.05 LSB."""
PROBE_DURATION = 60e-6
"""A short run per reset that sizes the counted runs."""
COUNTED_SPIKES = 230
"""Spikes the fastest neurons reach in a counted run (the counters hold 255)."""
FAST_QUANTILE = 0.02
"""Counted runs are sized for this quantile of the probed periods; faster neurons overflow
and keep the probe's estimate."""
COARSE_RUNS = 6
FINE_RUNS = 40
"""Counted runs per reset: the threshold's run-to-run jitter (~0.24 LSB) moves each run's
period; averaged over FINE_RUNS it leaves ~0.15 % of tau_mem."""
FINE_WITHIN = 0.03
"""Fine runs once the median neuron is within this fraction of its target."""


def period(device: Device, duration: float, runs: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean period per neuron, overflow) over `runs` counted runs of `duration`."""
    total = np.zeros(device.n_neurons, dtype=np.int64)
    overflow = np.zeros(device.n_neurons, dtype=bool)
    for _ in range(runs):
        counts = device.count_spikes(duration)
        total += counts.counts
        overflow |= counts.overflow
    with np.errstate(divide="ignore"):
        mean = np.where(total > 0, runs * duration / np.maximum(total, 1), np.nan)
    return mean, overflow


class FiringRateTimeConstant(Routine):
    """tau_mem from the firing periods at two reset potentials, set by i_bias_leak."""

    name = "tau_mem"
    parameter = "i_bias_leak"
    inverted = True
    kept_settings = ("leak_divide", "leak_multiply", "membrane_capacitance")

    def __init__(
        self,
        target: ArrayLike,
        membrane_capacitance: int,
        leak_goal: ArrayLike,
        reset_goal: ArrayLike,
        *,
        choose_switches: bool = True,
        runs: int | None = None,
    ) -> None:
        self.target = np.broadcast_to(np.asarray(target, dtype=float), (512,))
        self.membrane_capacitance = membrane_capacitance
        self.leak_goal = np.broadcast_to(np.asarray(leak_goal, dtype=float), (512,))
        self.reset_goal = np.broadcast_to(np.asarray(reset_goal, dtype=float), (512,))
        self.choose_switches = choose_switches
        self.runs = runs
        self._resets: list[np.ndarray] = []
        self._order = 0
        self._close = False
        self.potentials: dict[str, np.ndarray] = {}
        """The last measurement's set-up potentials (LSB): leak, reset_low, reset_high."""

    def guess(self) -> np.ndarray:
        """A nominal neuron's leak bias for the target (the search's first code)."""
        return nominal_leak_bias(self.target, self.membrane_capacitance)

    def measurement_settings(self, device: Device) -> dict[str, ArrayLike]:
        codes = device.read_settings(["v_leak", "v_reset"])
        raise_leak = np.rint((SETUP_LEAK - self.leak_goal) * CODES_PER_LSB)
        self._resets = [
            np.clip(
                codes["v_reset"] + np.rint((level - self.reset_goal) * CODES_PER_LSB), 0, CAPMEM_MAX
            ).astype(np.int64)
            for level in SETUP_RESETS
        ]
        settings: dict[str, ArrayLike] = {
            "threshold_enable": 1,
            "reset_hold": 0,
            "v_leak": np.clip(codes["v_leak"] + raise_leak, 0, CAPMEM_MAX).astype(np.int64),
            "v_reset": self._resets[0],
            **FAST_REFRACTORY,
        }
        if self.choose_switches:
            settings["membrane_capacitance"] = self.membrane_capacitance
            settings.update(leak_switches(self.target))
        return settings

    def prelude(self, device: Device) -> None:
        """The set-up, the nominal switches from the target, then one probe at the strongest
        leak bias: a neuron still slower than its target there moves to the next stronger
        switch setting (as the host mode's routine does)."""
        super().prelude(device)
        if not self.choose_switches:
            return
        device.write({self.parameter: self.parameter_range.high})
        device.write(switches_after_probe(self.target, self.measure(device)))
        self._close = False

    def _runs(self) -> int:
        if self.runs is not None:
            return self.runs
        return FINE_RUNS if self._close else COARSE_RUNS

    def _level(self, device: Device, reset: np.ndarray, runs: int) -> tuple[np.ndarray, ...]:
        """(reset potential, period) at one reset code."""
        device.write({"v_reset": reset})
        device.write({"v_reset": reset})  # a large step is ~0.7 % unsettled after one wait
        device.write({"reset_hold": 1, "threshold_enable": 0})
        v_reset = device.read_cadc(samples=POTENTIAL_SAMPLES).mean(axis=0)
        device.write({"reset_hold": 0, "threshold_enable": 1})
        probe, _ = period(device, PROBE_DURATION, 1)
        fast = np.nanquantile(probe, FAST_QUANTILE) if np.isfinite(probe).any() else 1e-6
        duration = float(np.clip(COUNTED_SPIKES * fast, 2 * PROBE_DURATION, 50e-3))
        counted, overflow = period(device, duration, runs)
        return v_reset, np.where(overflow, probe, counted)

    def measure(self, device: Device) -> np.ndarray:
        runs = self._runs()
        # Alternate the order: the reset code left from the last measurement is used first.
        order = (0, 1) if self._order % 2 == 0 else (1, 0)
        self._order += 1
        levels = {index: self._level(device, self._resets[index], runs) for index in order}
        # The leak is read last: by then the prelude's large step of v_leak has settled.
        device.write({"threshold_enable": 0})
        v_leak = device.read_cadc(samples=POTENTIAL_SAMPLES).mean(axis=0)
        device.write({"threshold_enable": 1})
        (v_low, t_low), (v_high, t_high) = levels[0], levels[1]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = (v_leak - v_low) / (v_leak - v_high)
            tau = (t_low - t_high) / np.log(ratio)
        valid = (v_low < v_high) & (v_high < v_leak) & (t_low > t_high) & (ratio > 1)
        tau = np.where(valid, tau, np.nan)
        self.potentials = {"leak": v_leak, "reset_low": v_low, "reset_high": v_high}
        self._close = bool(np.nanmedian(np.abs(tau / self.target - 1)) < FINE_WITHIN)
        return tau
