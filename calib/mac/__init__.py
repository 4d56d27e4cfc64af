"""MAC ("hagen") mode: calibration of the synapse drivers, synapse DAC and integrating neurons,
and the matrix-vector multiplication experiment.

    result = calibrate_mac(chip, MacTarget())
    result.apply(chip)
    outputs = multiply(chip, weights, activations)   # (n_vectors, 512) CADC LSB
"""

from calib.mac.multiply import exact_product, multiply
from calib.mac.result import MAC_SCHEMA_VERSION, RECORD_KIND, MacResult
from calib.mac.sequence import MacCalibration, calibrate_mac
from calib.mac.target import MacTarget

__all__ = [
    "MAC_SCHEMA_VERSION",
    "RECORD_KIND",
    "MacCalibration",
    "MacResult",
    "MacTarget",
    "calibrate_mac",
    "exact_product",
    "multiply",
]
