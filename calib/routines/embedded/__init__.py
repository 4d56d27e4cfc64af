"""Embedded mode: the LIF calibration driven by the chip's embedded processor alone.

Only the CADC and the spike counters are read, and each step's arithmetic is vectorised
integer or fixed-point work (sums, a division, a table look-up) that the processor's SIMD vector
unit does for all neurons at once. `plans` registers the mode's plans; `membrane` and
`synaptic_input` hold the indirect measurements of the time constants (docs/embedded.md).
"""

from calib.routines.embedded import plans  # noqa: F401  (registers the embedded plans)
