"""The two-exponential tail fit (one constant known) on synthetic PSPs of a burst."""

from __future__ import annotations

import numpy as np
import pytest

from device_model.protocol import Trace
from observables.traces import select_window, volts_to_madc
from observables.two_decays import fit_known_and_free_decay

RATE = 29.4e6
BURST = 10e-6 + 20e-9 * np.arange(8)


def _burst_psp(tau_mem: float, tau_syn: float, rows: int, seed: int) -> tuple[Trace, np.ndarray]:
    times = np.arange(int((10e-6 + 7 * max(tau_syn, tau_mem)) * RATE)) / RATE
    s = np.fmax(times[None, :] - BURST[:, None], 0.0)
    shape = (np.exp(-s / tau_syn) - np.exp(-s / tau_mem)).sum(axis=0)
    volts = 0.4 + 0.15 * shape / shape.max()
    noise = 2.0 * np.random.default_rng(seed).standard_normal((rows, times.size))
    codes = np.clip(np.rint(volts_to_madc(volts)[None, :] + noise), 0, 1023)
    trace = Trace(neurons=np.arange(rows), times=times, codes=codes, valid=times >= 8e-6)
    return trace, np.full(rows, tau_mem)


@pytest.mark.parametrize(("tau_mem", "tau_syn"), [(0.2e-6, 1e-6), (1.4e-6, 7e-6)])
def test_tau_is_unbiased_after_the_burst(tau_mem, tau_syn):
    trace, known = _burst_psp(tau_mem, tau_syn, 64, seed=3)
    window = select_window(trace, 8e-6)
    out = fit_known_and_free_decay(
        window, BURST[-1], known, start_time=BURST[0], tau_range=(20e-9, 1e-3)
    )
    error = out["tau"] / tau_syn - 1
    assert out.success.all()
    assert abs(error.mean()) < 3 * error.std() / np.sqrt(error.size) + 1e-3
    assert 0.5 < error.std() / np.median(out.stderr["tau"] / tau_syn) < 2


def test_refitting_the_known_constant_removes_its_error():
    tau_mem, tau_syn = 0.4e-6, 2e-6
    trace, known = _burst_psp(tau_mem, tau_syn, 64, seed=4)
    window = select_window(trace, 8e-6)
    held = fit_known_and_free_decay(
        window, BURST[-1], 0.9 * known, start_time=BURST[0], tau_range=(20e-9, 1e-3)
    )
    refit = fit_known_and_free_decay(
        window,
        BURST[-1],
        0.9 * known,
        start_time=BURST[0],
        tau_range=(20e-9, 1e-3),
        refit_known=True,
    )
    assert abs(np.median(held["tau"]) / tau_syn - 1) > 0.01
    assert abs(np.median(refit["tau"]) / tau_syn - 1) < 0.005
    assert np.median(refit["tau_known"]) == pytest.approx(tau_mem, rel=0.03)
