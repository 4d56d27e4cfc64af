"""Synaptic time constants read with the CADC: the tail of a PSP at a ladder of read times.

The CADC converts every neuron's potential a fixed time after a synaptic burst, in repetitions
of the burst (`read_cadc` with a `read_time`), one read time per run; a resting read before the
burst gives the baseline. After the burst's last event a linear membrane is two exponentials,
one of them the known membrane constant (see `two_decays`), so the reads are fitted with that
model as if they were the samples of a trace. One read of all 512 neurons costs one run where
an MADC recording costs one run per pair of neurons; the CADC's 8 bits and the few read times
make it coarser, so it serves where a few percent are enough (a sweep that only places a
model).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from device_model.protocol import Device
from device_model.stimuli import SynapticEvents
from observables.cadc import cadc_mean, cadc_standard_error
from observables.traces import TraceWindow
from observables.two_decays import fit_known_and_free_decay

LADDER_RATIO = 1.5
"""Ratio of successive read times after the burst."""
FIRST_READ = 0.05
"""The first read after the burst, as a fraction of the shortest expected time constant: where
the membrane's own decay still dominates, which pins its amplitude."""
LAST_READ = 3.0
"""The last read, as a multiple of the longest expected time constant."""
REST_SAMPLES = 400
"""Samples of the resting potential (unrelated moments, so cheap)."""
BASELINE_WEIGHT = 4
"""The resting read enters the fit this many times: it averages more samples than a timed one."""
MAX_REDUCED_CHI_SQUARE = 25.0
"""A coarse reading accepts more model error than an MADC fit (the CADC's steps, its gentle
nonlinearity); a flat or clipped neuron still fails."""


def tail_read_times(expected: ArrayLike) -> np.ndarray:
    """Read times after the burst's last event (s) for time constants `expected` (s)."""
    expected = np.asarray(expected, dtype=float)
    low = FIRST_READ * float(np.min(expected))
    high = LAST_READ * float(np.max(expected))
    steps = max(4, int(np.ceil(np.log(high / low) / np.log(LADDER_RATIO))) + 1)
    return np.geomspace(low, high, steps)


def cadc_psp_time_constants(
    device: Device,
    stimulus: SynapticEvents,
    tau_membrane: ArrayLike,
    expected: ArrayLike,
    samples: int,
) -> np.ndarray:
    """Synaptic time constant (s) of every neuron from the tail of its response to `stimulus`
    (a burst), its membrane constant `tau_membrane` (s, per neuron) known; NaN where the fit
    failed. `expected` (s) sets the read times, `samples` repetitions are averaged per read.
    The neurons must be quiet (threshold off)."""
    events = np.asarray(stimulus.times, dtype=float)
    start, end = float(events.min()), float(events.max())
    offsets = tail_read_times(expected)
    rest = cadc_mean(device, REST_SAMPLES)
    reads, errors = zip(
        *(
            cadc_standard_error(device, samples, stimulus=stimulus, read_time=end + float(offset))
            for offset in offsets
        ),
        strict=True,
    )
    volts = np.column_stack([np.repeat(rest[:, None], BASELINE_WEIGHT, axis=1), *reads])
    times = np.concatenate([np.full(BASELINE_WEIGHT, 0.5 * start), end + offsets])
    window = TraceWindow(
        neurons=np.arange(device.n_neurons),
        times=times,
        volts=volts,
        mask=np.isfinite(volts),
        noise=np.fmax(np.median(np.stack(errors), axis=0), 1e-3),
        reasons=("",) * device.n_neurons,
    )
    outcome = fit_known_and_free_decay(
        window,
        end,
        np.asarray(tau_membrane, dtype=float),
        start_time=start,
        tau_range=(0.2 * FIRST_READ * float(np.min(expected)), 10 * float(np.max(expected))),
        max_redchi=MAX_REDUCED_CHI_SQUARE,
    )
    tau = np.asarray(outcome.params["tau"], dtype=float)
    return np.where(outcome.success, tau, np.nan)
