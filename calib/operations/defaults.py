"""Settings of the fleet operations that the command line shows in its help: a module of plain
constants, so that building the command line does not import Dask or the calibration code."""

DEFAULT_WORKERS = 2
"""Worker processes of a local cluster."""
CONNECT_TIMEOUT = 3.0
"""Seconds to wait for a scheduler before giving up."""
DEFAULT_GRID = "leak=50:160:12,tau_mem=2:40:8"
"""Targets a mismatch study computes the yield at, unless told otherwise."""
