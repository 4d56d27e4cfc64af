"""Calibration runs: the session, the sequence derived from the plans, verification and
judgement (`lif`), the functional API (`calibrate`, `recalibrate`), quick checks and `ensure`."""
