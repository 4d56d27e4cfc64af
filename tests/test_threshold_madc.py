"""The threshold through the MADC: a second, selectable method that cross-checks the CADC."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from calib import NeuronTarget
from calib.cli import app
from calib.routines.neuron_potentials import ThresholdPotential
from calib.routines.threshold_madc import MadcThreshold, peak_potentials
from calib.sequences.lif import NeuronCalibration
from calib.sequences.session import CalibrationOptions
from device_model import SimulatedChip


def test_peaks_are_read_just_before_each_reset_with_half_a_step_added():
    times = np.arange(400)
    sawtooth = 100 + 2.0 * (times % 50)  # rises 2 codes a sample to 198, resets to 100
    codes = np.stack([sawtooth, np.full(400, 150.0)])
    valid = times >= 20
    peaks = peak_potentials(codes, valid)
    assert peaks[0] == pytest.approx(199.0)  # the crossing lies half a step above the sample
    assert np.isnan(peaks[1])  # no reset: no threshold reading


def test_an_unknown_method_names_the_option_and_the_choices():
    with pytest.raises(ValueError, match=r"threshold_method must be one of cadc, madc, got 'x'"):
        CalibrationOptions(threshold_method="x")


def test_the_command_line_selects_the_method():
    help_text = CliRunner().invoke(app, ["calibrate", "--help"], env={"COLUMNS": "200"})
    assert "--threshold-method" in help_text.output
    refused = CliRunner().invoke(
        app, ["calibrate", "--chip", "c1", "--threshold-method", "scope"], env={"COLUMNS": "200"}
    )
    assert refused.exit_code != 0
    assert "--threshold-method 'scope': choose cadc or madc" in refused.output


def test_the_madc_reads_the_threshold_of_a_hard_chip_as_its_ground_truth_and_the_cadc_do():
    chip = SimulatedChip("madc-unseen-5", mismatch_scale=1.3, noise_scale=1.5)
    calibration = NeuronCalibration(chip, NeuronTarget())
    dict(calibration.steps)["cadc"]()  # potentials in calibrated CADC LSB
    # ~75, ~60, ~130 LSB, tau_mem ~10 µs (a fast membrane holds its reset close to the threshold)
    settings = {
        "v_leak": 600,
        "v_reset": 560,
        "v_threshold": 340,
        "i_bias_leak": 540,
        "leak_divide": 1,
    }
    chip.write(settings)
    chip.write(settings)
    truth = chip.true_quantities()["threshold"]
    readings = {}
    for routine in (MadcThreshold(), ThresholdPotential()):
        routine.prelude(chip)
        readings[type(routine).__name__] = routine.measure(chip)
        routine.postlude(chip)
    madc, cadc = readings["MadcThreshold"], readings["ThresholdPotential"]
    assert np.mean(np.abs(madc - truth) < 1.5) > 0.95
    assert abs(np.nanmedian(madc - truth)) < 0.5
    assert np.mean(np.abs(madc - cadc) < 2.0) > 0.95  # the cross-check holds
