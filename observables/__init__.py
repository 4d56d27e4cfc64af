"""Measurement procedures: raw readouts -> one value per neuron, with fit details and flags.

Every procedure keeps the recorded neurons in the order of the trace, flags bad neurons with a
reason and goes on with the others. Values of flagged neurons are NaN.

MADC traces (observables.traces):
    select_window(trace, start_time, stop_time=None, *, min_samples=10, check_signal=True)
        -> TraceWindow (volts, usable-sample mask, noise estimate, per-neuron reasons)
    madc_to_volts(codes), volts_to_madc(volts)

Time constants (observables.time_constants), each -> FitOutcome:
    decay_time_constants(trace, start_time, *, stop_time=None, method="batch"|"lmfit",
                         max_redchi=5.0, min_samples=10)                  params: tau, ...
    psp_time_constants(trace, event_time, *, tau_mem=None, fit="psp"|"tail", start_time=None,
                       stop_time=None, method="batch"|"lmfit", ...)      params: tau_syn, ...

Fitting: fit_exponential_batch / fit_psp_batch (all neurons at once, observables.batch_fit);
    the lmfit reference and any user model: fit_with_lmfit(window, model, guess, *, key=None),
    ExponentialDecayModel, PostSynapticPotentialModel (observables.fitting).
FitOutcome: params / stderr (NaN for flagged neurons), fitted (raw), redchi, success, reasons,
    failures() -> {neuron: reason}, per_neuron(name, n_neurons).

CADC (observables.cadc): cadc_mean(device, samples=10, **read_kwargs),
    cadc_max(device, samples=100, **read_kwargs), cadc_standard_error(...) -> (n_neurons,)
Spikes (observables.spikes): spike_rate(counts, duration) -> SpikeRates (NaN + reason on
    counter overflow); spike_times(trace, ...), inter_spike_intervals(times),
    isi_summary(trace, *, start_time, stop_time, ...) -> IsiSummary (first/last/mean ISI, rate,
    adaptation index).
Synthetic traces with known parameters for tests and studies: observables.synthetic.

The lmfit names (observables.fitting) are imported on first use: lmfit is slow to import and
only the reference fits need it.
"""

from typing import Any

from observables.batch_fit import fit_exponential_batch, fit_psp_batch
from observables.cadc import cadc_max, cadc_mean, cadc_standard_error
from observables.outcome import FitOutcome
from observables.spikes import (
    IsiSummary,
    SpikeRates,
    inter_spike_intervals,
    isi_summary,
    spike_rate,
    spike_times,
)
from observables.time_constants import decay_time_constants, psp_time_constants
from observables.traces import TraceWindow, madc_to_volts, select_window, volts_to_madc

__all__ = [
    "ExponentialDecayModel",
    "FitOutcome",
    "IsiSummary",
    "PostSynapticPotentialModel",
    "SpikeRates",
    "TraceWindow",
    "cadc_max",
    "cadc_mean",
    "cadc_standard_error",
    "decay_time_constants",
    "fit_exponential_batch",
    "fit_exponential_lmfit",
    "fit_psp_batch",
    "fit_psp_lmfit",
    "fit_with_lmfit",
    "inter_spike_intervals",
    "isi_summary",
    "madc_to_volts",
    "psp_time_constants",
    "select_window",
    "spike_rate",
    "spike_times",
    "volts_to_madc",
]

_LMFIT_NAMES = frozenset(
    {
        "ExponentialDecayModel",
        "PostSynapticPotentialModel",
        "fit_exponential_lmfit",
        "fit_psp_lmfit",
        "fit_with_lmfit",
    }
)


def __getattr__(name: str) -> Any:
    if name in _LMFIT_NAMES:
        from observables import fitting

        return getattr(fitting, name)
    raise AttributeError(f"module 'observables' has no attribute {name!r}")
