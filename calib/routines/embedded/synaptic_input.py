"""Synaptic time constants from timed CADC reads of the integrated input (embedded mode).

A strong synaptic event (several events at once) at t = 0 into a LIF neuron at rest B makes a
current I(t) = J exp(-t / tau_syn) that the membrane integrates with its own tau_mem:

    u(t) = V(t) - B = A (exp(-t / tau_mem) - exp(-t / tau_syn))

(A = J tau_syn tau_mem / (C (tau_mem - tau_syn)); at tau_syn = tau_mem the shape is the limit
A' t exp(-t / tau), and everything below holds there too). With p = exp(-d / tau_mem) and
q = exp(-d / tau_syn), u(d) = A (p - q) and u(2 d) = A (p^2 - q^2) = u(d) (p + q), so

    q = u(2 d) / u(d) - p,    tau_syn = -d / ln q.

The CADC converts at a set time after the stimulus (each sample in a repetition of it): three
averaged reads per neuron (the rest B, u(d), u(2 d)) and the membrane time constant that the
embedded tau_mem step measured give tau_syn, with neither a fit nor the amplitude. The spacing d
is the target tau_syn (neurons with other targets get their own reads), where the read noise
weighs least. The arithmetic per neuron: sums of codes, one division, an exponential and a
logarithm (table look-ups on a vector unit).

The read of u(d) at d ~ tau_syn ~ tau_mem sees the response near its peak, so the input's gain
is set high enough for a PSP of some 40 LSB; inhibitory inputs start from a raised leak so that
their downward PSP stays in the CADC's reliable range. The PSP amplitude and the reference are
calibrated after this with the CADC routines of the host mode (`calib.routines.synaptic_input`).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from calib.core.routine import Routine
from calib.routines.embedded.membrane import CODES_PER_LSB
from calib.routines.synaptic_input import (
    HIGH_RESISTANCE_ABOVE,
    SynapticTimeConstant,
    input_switches,
)
from device_model.protocol import CAPMEM_MAX, Device
from device_model.stimuli import SynapticEvents

EVENT_TIME = 1e-6
EVENTS = 8
"""Events sent at once: a PSP of ~30..40 LSB at the gain below (nominal neuron, 10 us)."""
GAIN_CODE = 700
INHIBITORY_LEAK_RAISE = 50.0
"""LSB the leak is raised for the inhibitory input's downward PSP."""
COARSE_SAMPLES = 300
FINE_SAMPLES = 1600
"""CADC samples per read: ~0.025 LSB on a ~90 LSB scale; measured, one reading's tau_syn scatters
by about 1 % RMS over the neurons (tests/test_embedded.py)."""
FINE_WITHIN = 0.05
MAX_READ_GROUPS = 4
"""Distinct spacings read per measurement; finer target differences share one."""


def spacing_groups(target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(spacings, group per neuron): the target tau_syn, grouped into few reads."""
    unique, inverse = np.unique(target, return_inverse=True)
    if unique.size > MAX_READ_GROUPS:
        edges = np.quantile(target, np.linspace(0, 1, MAX_READ_GROUPS + 1)[1:-1])
        inverse = np.digitize(target, edges)
        unique = np.array(
            [
                np.median(target[inverse == g]) if np.any(inverse == g) else 1e-6
                for g in range(MAX_READ_GROUPS)
            ]
        )
    return unique, np.asarray(inverse).reshape(-1)


class IntegratedInputTimeConstant(Routine):
    """tau_syn from three timed CADC reads, set by the input's tau bias (higher: faster)."""

    inverted = True

    def __init__(
        self,
        target: ArrayLike,
        inhibitory: bool,
        tau_mem: ArrayLike,
        leak_goal: ArrayLike,
        *,
        samples: int | None = None,
    ) -> None:
        self.inhibitory = inhibitory
        prefix = "syn_inh" if inhibitory else "syn_exc"
        self.name = f"tau_{prefix}"
        self.parameter = f"i_bias_{prefix}_tau"
        self.switch = f"{prefix}_high_resistance"
        self.kept_settings = (self.switch,)
        self.target = np.broadcast_to(np.asarray(target, dtype=float), (512,))
        self.tau_mem = np.broadcast_to(np.asarray(tau_mem, dtype=float), (512,))
        self.leak_goal = np.broadcast_to(np.asarray(leak_goal, dtype=float), (512,))
        self.samples = samples
        self.spacings, self.groups = spacing_groups(self.target)
        self.stimulus = SynapticEvents((EVENT_TIME,) * EVENTS, inhibitory=inhibitory)
        self._close = False
        self._setup: dict[str, ArrayLike] = {}

    def guess(self) -> np.ndarray:
        """A nominal input's tau bias for the target (the search's first code)."""
        hint = SynapticTimeConstant(self.target, self.inhibitory)
        return hint.sweep_hint(self.target)[list(hint.HINT_SPREAD).index(1.0)]

    def measurement_settings(self, device: Device) -> dict[str, ArrayLike]:
        settings: dict[str, ArrayLike] = {
            "threshold_enable": 0,
            "reset_hold": 0,
            **input_switches(self.inhibitory),
            self.switch: (self.target > HIGH_RESISTANCE_ABOVE).astype(np.int64),
            f"i_bias_{'syn_inh' if self.inhibitory else 'syn_exc'}_gm": GAIN_CODE,
        }
        if self.inhibitory:
            v_leak = device.read_settings(["v_leak"])["v_leak"]
            raised = v_leak + np.rint(INHIBITORY_LEAK_RAISE * CODES_PER_LSB)
            settings["v_leak"] = np.clip(raised, 0, CAPMEM_MAX).astype(np.int64)
        self._setup = settings
        return settings

    def prelude(self, device: Device) -> None:
        """The set-up written twice: the raised leak is a large step, ~0.7 % unsettled after
        one write's wait, and the rest is read first."""
        super().prelude(device)
        device.write(self._setup)

    def measure(self, device: Device) -> np.ndarray:
        samples = self.samples or (FINE_SAMPLES if self._close else COARSE_SAMPLES)
        rest = device.read_cadc(samples=samples).mean(axis=0)
        tau = np.full(512, np.nan)
        for group, spacing in enumerate(self.spacings):
            members = self.groups == group
            first, second = (
                device.read_cadc(
                    samples=samples,
                    stimulus=self.stimulus,
                    read_time=EVENT_TIME + k * float(spacing),
                ).mean(axis=0)
                for k in (1, 2)
            )
            p = np.exp(-spacing / self.tau_mem)
            with np.errstate(divide="ignore", invalid="ignore"):
                q = (second - rest) / (first - rest) - p
                value = -spacing / np.log(q)
            valid = (q > 0) & (q < 1) & (np.abs(first - rest) > 1.0)
            tau[members] = np.where(valid, value, np.nan)[members]
        self._close = bool(np.nanmedian(np.abs(tau / self.target - 1)) < FINE_WITHIN)
        return tau
