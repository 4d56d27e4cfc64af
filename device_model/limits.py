"""Bounds of the simulated chip's options, in a module light enough for the command line to
import while it builds its options."""

MAX_SCALE = 10.0
"""Largest mismatch or noise scale a simulated chip takes (beyond it the model leaves the
regime it describes)."""
MAX_DRIFT_HOURS = 1e5
"""Largest age (h, about 11 years) a simulated chip takes."""
