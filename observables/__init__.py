"""Measurement procedures: raw readouts -> one value per neuron, with fit details and flags.

Traces (MADC):
    select_window(trace, start_time, stop_time=None, *, min_samples=10) -> TraceWindow
    madc_to_volts(codes) -> volts
Time constants (each returns a FitOutcome, one row per recorded neuron, trace order):
    decay_time_constants(trace, start_time, *, stop_time=None, method="batch"|"lmfit",
                         max_redchi=5.0, min_samples=10)
FitOutcome: params / stderr (NaN for flagged neurons), redchi, success, reasons,
    failures() -> {neuron: reason}, per_neuron(name, n_neurons).
"""

from observables.outcome import FitOutcome
from observables.time_constants import decay_time_constants
from observables.traces import TraceWindow, madc_to_volts, select_window

__all__ = [
    "FitOutcome",
    "TraceWindow",
    "decay_time_constants",
    "madc_to_volts",
    "select_window",
]
