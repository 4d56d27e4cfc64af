"""Synaptic time constants from post-synaptic potentials, and the lmfit path for user models."""

import lmfit
import numpy as np
import pytest

from device_model.protocol import Trace
from observables import fit_with_lmfit, psp_time_constants, select_window
from observables.synthetic import psp_trace

EVENT = 15e-6
TAU_SYN = np.array([2e-6, 5e-6, 10e-6, 20e-6])
TAU_MEM = 0.5e-6


@pytest.mark.parametrize("tau_mem", [None, TAU_MEM])
def test_psp_fit_recovers_tau_syn_at_chip_noise(tau_mem):
    trace = psp_trace(TAU_MEM, TAU_SYN, 120e-6, onset=EVENT, seed=3)
    outcome = psp_time_constants(trace, EVENT, tau_mem=tau_mem)
    assert outcome.success.all(), outcome.failures()
    np.testing.assert_allclose(outcome["tau_syn"], TAU_SYN, rtol=0.04)
    np.testing.assert_allclose(outcome["tau_mem"], TAU_MEM, rtol=0.15)
    assert np.all(outcome["amplitude"] > 0)  # depolarising, reported with tau_syn the slower
    np.testing.assert_allclose(outcome["onset"], EVENT, atol=0.1e-6)


@pytest.mark.parametrize("kwargs", [{}, {"tau_mem": TAU_MEM}, {"fit": "tail"}])
def test_batch_and_lmfit_agree_within_one_percent(kwargs):
    # Nearly clean: a little noise so that rounding to codes does not leave a staircase.
    trace = psp_trace(TAU_MEM, TAU_SYN, 120e-6, onset=EVENT, noise_lsb=0.3, seed=1)
    batch = psp_time_constants(trace, EVENT, **kwargs)
    reference = psp_time_constants(trace, EVENT, method="lmfit", **kwargs)
    assert batch.success.all() and reference.success.all()
    np.testing.assert_allclose(batch["tau_syn"], reference["tau_syn"], rtol=0.01)


def test_tail_fit_measures_tau_syn_when_the_membrane_is_much_faster():
    tau_syn = np.array([5e-6, 10e-6, 20e-6])
    trace = psp_trace(0.3e-6, tau_syn, 120e-6, onset=EVENT, seed=2)
    outcome = psp_time_constants(trace, EVENT, fit="tail")
    assert outcome.success.all()
    np.testing.assert_allclose(outcome["tau_syn"], tau_syn, rtol=0.05)


def test_inhibitory_psp_has_a_negative_amplitude():
    trace = psp_trace(TAU_MEM, [5e-6, 8e-6], 100e-6, onset=EVENT, amplitude=-0.08, seed=4)
    outcome = psp_time_constants(trace, EVENT)
    assert outcome.success.all()
    assert np.all(outcome["amplitude"] < 0)
    np.testing.assert_allclose(outcome["tau_syn"], [5e-6, 8e-6], rtol=0.05)


def test_a_neuron_without_response_is_flagged_and_the_others_fit():
    trace = psp_trace(TAU_MEM, [4e-6, 6e-6], 100e-6, onset=EVENT, seed=5)
    codes = trace.codes.copy()
    codes[0] = np.round(codes[0].mean())
    outcome = psp_time_constants(Trace(trace.neurons, trace.times, codes, trace.valid), EVENT)
    assert outcome.reasons[0].startswith("flat trace")
    assert outcome.success[1]
    assert outcome["tau_syn"][1] == pytest.approx(6e-6, rel=0.05)


def test_bad_psp_arguments_raise_naming_them():
    trace = psp_trace(TAU_MEM, TAU_SYN, 60e-6, onset=EVENT)
    with pytest.raises(ValueError, match="tau_mem"):
        psp_time_constants(trace, EVENT, tau_mem=np.ones(3) * 1e-6)
    with pytest.raises(ValueError, match="tau_mem"):
        psp_time_constants(trace, EVENT, tau_mem=-1.0)
    with pytest.raises(ValueError, match="fit"):
        psp_time_constants(trace, EVENT, fit="peak")
    with pytest.raises(ValueError, match="method"):
        psp_time_constants(trace, EVENT, method="fast")
    with pytest.raises(ValueError, match="start_time"):
        psp_time_constants(trace, EVENT, start_time=EVENT + 1e-6)


def test_any_lmfit_model_fits_through_the_same_outcome():
    # A user model: the membrane ramps linearly after a current step switches on.
    trace = psp_trace(TAU_MEM, [5e-6, 9e-6], 60e-6, onset=EVENT, seed=6)
    window = select_window(trace, 10e-6)

    def ramp(t, offset, slope):
        return offset + slope * t

    model = lmfit.Model(ramp)

    def guess(values, times, row):
        slope, offset = np.polyfit(times, values, 1)
        return model.make_params(offset=offset, slope=slope)

    outcome = fit_with_lmfit(window, model, guess, key="slope", max_redchi=1e6)
    assert outcome.model == "Model(ramp)"
    assert set(outcome.params) == {"offset", "slope"}
    assert outcome.success.all()
    assert np.all(outcome.redchi > 2.0)  # a ramp does not describe a PSP: visibly poor
    strict = fit_with_lmfit(window, model, guess, key="slope")
    assert not strict.success.any()
    assert all(reason.startswith("poor fit") for reason in strict.reasons)


def test_fit_with_lmfit_rejects_what_is_not_a_one_variable_model():
    window = select_window(psp_trace(TAU_MEM, [5e-6], 60e-6, onset=EVENT), 10e-6)
    with pytest.raises(ValueError, match="model"):
        fit_with_lmfit(window, lambda t: t, lambda values, times, row: None)
    two_variables = lmfit.Model(lambda t, x, a: a * t * x, independent_vars=["t", "x"])
    with pytest.raises(ValueError, match="independent variable"):
        fit_with_lmfit(window, two_variables, lambda values, times, row: None)
