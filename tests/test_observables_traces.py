"""MADC trace handling: windows, volts, noise estimate and per-neuron flags."""

import ast
from pathlib import Path

import numpy as np
import pytest

import observables
from device_model.protocol import MADC_INVALID_TIME, Trace
from observables.synthetic import decay_trace
from observables.traces import (
    MADC_VOLTS_AT_CODE_ZERO,
    MADC_VOLTS_PER_CODE,
    madc_to_volts,
    select_window,
    volts_to_madc,
)


def test_codes_convert_to_volts_with_the_named_constants():
    np.testing.assert_allclose(madc_to_volts([0, 1000]), [-0.17, 1000 * 1.6e-3 - 0.17])
    assert MADC_VOLTS_PER_CODE == pytest.approx(1.6e-3)
    assert MADC_VOLTS_AT_CODE_ZERO == pytest.approx(-0.17)
    np.testing.assert_allclose(volts_to_madc(madc_to_volts([3.0, 512.0])), [3.0, 512.0])


def test_window_keeps_only_valid_samples_after_the_start():
    trace = decay_trace([5e-6, 5e-6], 40e-6, release_time=2e-6)
    window = select_window(trace, 2e-6)  # the start lies inside the invalid first 8 us
    assert window.times[0] >= MADC_INVALID_TIME
    assert window.mask.all()
    window = select_window(trace, 20e-6, 30e-6)
    assert window.times[0] >= 20e-6 and window.times[-1] <= 30e-6
    np.testing.assert_allclose(
        window.volts, madc_to_volts(trace.codes[:, (trace.times >= 20e-6) & (trace.times <= 30e-6)])
    )


def test_noise_estimate_matches_the_added_noise_even_on_fast_decays():
    trace = decay_trace([0.2e-6, 2e-6, 20e-6], 60e-6, noise_lsb=3.0, seed=3)
    window = select_window(trace, 10e-6)
    np.testing.assert_allclose(window.noise / MADC_VOLTS_PER_CODE, 3.0, rtol=0.1)


def test_bad_rows_are_flagged_and_the_others_stay_usable():
    trace = decay_trace([3e-6] * 4, 40e-6)
    codes = trace.codes.copy()
    codes[0, 400] = np.nan
    codes[1] = 500.0  # flat: a neuron that does not respond
    valid = np.broadcast_to(trace.valid, codes.shape).copy()
    valid[2, 300:] = False  # only a handful of valid samples left after the start
    window = select_window(Trace(trace.neurons, trace.times, codes, valid), 10e-6, min_samples=20)
    assert window.reasons[0] == "NaN in trace"
    assert window.reasons[1].startswith("flat trace")
    assert window.reasons[2].startswith("too few valid samples")
    assert window.reasons[3] == ""
    np.testing.assert_array_equal(window.usable, [False, False, False, True])


def test_clipped_traces_are_flagged():
    trace = decay_trace([3e-6], 40e-6, reset=-0.3)  # below the MADC range at the start
    assert select_window(trace, 10e-6).reasons[0].startswith("trace clipped")


@pytest.mark.parametrize(
    ("field", "trace"),
    [
        ("trace.codes", Trace(np.arange(2), np.arange(5.0), np.zeros(5), np.ones(5, bool))),
        ("trace.times", Trace(np.arange(2), np.arange(4.0), np.zeros((2, 5)), np.ones(5, bool))),
        ("trace.neurons", Trace(np.arange(3), np.arange(5.0), np.zeros((2, 5)), np.ones(5, bool))),
        ("trace.valid", Trace(np.arange(2), np.arange(5.0), np.zeros((2, 5)), np.ones(4, bool))),
    ],
)
def test_wrong_shapes_raise_naming_the_field(field, trace):
    with pytest.raises(ValueError, match=field):
        select_window(trace, 0.0)


def test_bad_window_arguments_raise_naming_them():
    trace = decay_trace([3e-6], 40e-6)
    with pytest.raises(ValueError, match="stop_time"):
        select_window(trace, 20e-6, 10e-6)
    with pytest.raises(ValueError, match="start_time"):
        select_window(trace, float("nan"))
    with pytest.raises(ValueError, match="min_samples"):
        select_window(trace, 10e-6, min_samples=1)


def test_observables_never_import_calib():
    # Data flows one way: calib uses observables, never the reverse.
    for path in Path(observables.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            assert not any(name.split(".")[0] == "calib" for name in names), path.name
