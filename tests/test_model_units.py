"""PyNN-style model units (mV, ms) and voltage maps to neuron targets."""

from __future__ import annotations

import numpy as np
import pytest
from fakes import QUANTITIES

from calib.frontends.model_units import (
    POTENTIAL_MARGIN,
    UNSCALED_LSB_PER_UNIT,
    VoltageMap,
    map_model_units,
    target_from_model_units,
)
from device_model.protocol import N_NEURONS

PYNN = {
    "v_rest": -65.0,
    "v_reset": -70.0,
    "v_thresh": -50.0,
    "tau_m": 10.0,
    "tau_syn_E": 5.0,
    "tau_syn_I": 3.0,
    "tau_refrac": 2.0,
}
"""A PyNN IF_curr_exp-like neuron (mV, ms) that fits the chip at speed-up 1000."""


def pynn(**changes: object) -> dict[str, object]:
    return {**PYNN, **changes}


def test_voltage_map_round_trips_between_model_and_chip() -> None:
    vmap = VoltageMap(scale=3.0, offset=250.0)
    model = np.array([-70.0, -50.0, 0.0])
    assert np.allclose(vmap.to_chip(model), 3.0 * model + 250.0)
    assert np.allclose(vmap.to_model(vmap.to_chip(model)), model)
    assert isinstance(vmap.to_chip(-60.0), float)


@pytest.mark.parametrize("scale", [0.0, -1.0, np.inf, np.nan])
def test_voltage_map_rejects_a_scale_that_is_not_positive_and_finite(scale: float) -> None:
    with pytest.raises(ValueError, match="scale"):
        VoltageMap(scale=scale, offset=0.0)


def test_fitted_map_keeps_every_potential_inside_its_range_with_margin() -> None:
    leak, reset, threshold = np.array([-65.0, -60.0]), np.array([-80.0]), np.array([-52.0, -40.0])
    vmap = VoltageMap.fit(leak=leak, reset=reset, threshold=threshold)
    for name, values in (("leak", leak), ("reset", reset), ("threshold", threshold)):
        chip = np.asarray(vmap.to_chip(values))
        spec = QUANTITIES[name]
        assert np.all(chip >= spec.low + POTENTIAL_MARGIN - 1e-9), name
        assert np.all(chip <= spec.high - POTENTIAL_MARGIN + 1e-9), name


def test_fitted_map_uses_the_largest_scale_the_ranges_allow() -> None:
    vmap = VoltageMap.fit(leak=[-65.0], reset=[-70.0], threshold=[-50.0])
    bigger = VoltageMap(scale=vmap.scale * 1.01, offset=vmap.offset)
    low = QUANTITIES["reset"].low + POTENTIAL_MARGIN
    high = QUANTITIES["threshold"].high - POTENTIAL_MARGIN
    # Reset (lowest) and threshold (highest) bind: they sit on the narrowed range ends.
    assert vmap.to_chip(-70.0) == pytest.approx(low)
    assert vmap.to_chip(-50.0) == pytest.approx(high)
    assert bigger.to_chip(-50.0) - bigger.to_chip(-70.0) > high - low


def test_fitted_map_of_a_single_value_centres_it_at_the_unscaled_scale() -> None:
    vmap = VoltageMap.fit(leak=[-65.0], reset=[-65.0])
    assert vmap.scale == UNSCALED_LSB_PER_UNIT
    spec = QUANTITIES["leak"]
    assert vmap.to_chip(-65.0) == pytest.approx(0.5 * (spec.low + spec.high))


def test_fit_without_values_raises() -> None:
    with pytest.raises(ValueError, match="at least one"):
        VoltageMap.fit()


def test_model_units_become_hardware_times_and_mapped_potentials() -> None:
    mapping = map_model_units(**pynn(), speedup=1000)
    target, vmap = mapping.target, mapping.voltage_map
    assert target.tau_mem == pytest.approx(PYNN["tau_m"] * 1e-3 / 1000)
    assert target.tau_syn_exc == pytest.approx(PYNN["tau_syn_E"] * 1e-3 / 1000)
    assert target.tau_syn_inh == pytest.approx(PYNN["tau_syn_I"] * 1e-3 / 1000)
    assert target.refractory_time == pytest.approx(PYNN["tau_refrac"] * 1e-3 / 1000)
    assert target.leak == pytest.approx(vmap.to_chip(PYNN["v_rest"]))
    assert target.reset == pytest.approx(vmap.to_chip(PYNN["v_reset"]))
    assert target.threshold == pytest.approx(vmap.to_chip(PYNN["v_thresh"]))
    assert target.reset < target.leak < target.threshold


def test_classmethod_delegates_to_map_model_units() -> None:
    vmap = VoltageMap(scale=4.0, offset=340.0)
    direct = map_model_units(**pynn(), speedup=500, voltage_map=vmap).target
    via_class = target_from_model_units(**pynn(), speedup=500, voltage_map=vmap)
    assert via_class == direct
    assert via_class.leak == pytest.approx(4.0 * PYNN["v_rest"] + 340.0)


def test_a_lower_speedup_maps_the_same_model_time_to_a_longer_hardware_time() -> None:
    fast = target_from_model_units(**pynn(), speedup=1000)
    slow = target_from_model_units(**pynn(), speedup=250)
    assert slow.tau_mem == pytest.approx(4 * fast.tau_mem)


def test_too_short_time_names_the_pynn_field_value_and_model_range() -> None:
    with pytest.raises(ValueError, match=r"tau_m = 0\.1 ms .* 0\.5\.\.60 ms at speed-up 1000"):
        target_from_model_units(**pynn(tau_m=0.1), speedup=1000)


def test_the_allowed_model_time_range_follows_the_speedup() -> None:
    with pytest.raises(ValueError, match=r"tau_syn_E = 40\.0 ms .* 0\.03\.\.3 ms at speed-up 100"):
        target_from_model_units(**pynn(tau_syn_E=40.0, tau_m=1.0), speedup=100)


def test_potential_outside_the_map_names_the_field_and_model_range() -> None:
    vmap = VoltageMap(scale=4.0, offset=340.0)
    spec = QUANTITIES["threshold"]
    low, high = vmap.to_model(spec.low), vmap.to_model(spec.high)
    with pytest.raises(ValueError, match=rf"v_thresh = 0\.0 mV .*{low:.4g}\.\.{high:.4g} mV"):
        target_from_model_units(**pynn(v_thresh=0.0), voltage_map=vmap)


def test_zero_refractory_time_is_rejected_with_its_range() -> None:
    with pytest.raises(ValueError, match=r"tau_refrac = 0\.0 ms .* 0\.04\.\.32 ms"):
        target_from_model_units(**pynn(tau_refrac=0.0))


def test_range_ends_are_accepted_despite_rounding_in_the_conversion() -> None:
    spec = QUANTITIES["tau_mem"]
    for tau_m in (spec.low * 1e6, spec.high * 1e6):  # ms of model time at speed-up 1000
        target = target_from_model_units(**pynn(tau_m=tau_m), speedup=1000)
        assert spec.low <= target.tau_mem <= spec.high


def test_per_neuron_arrays_map_element_wise_and_errors_name_the_neuron() -> None:
    tau_m = np.linspace(1.0, 50.0, N_NEURONS)
    target = target_from_model_units(**pynn(tau_m=tau_m))
    assert np.allclose(target.tau_mem, tau_m * 1e-6)
    tau_m[17] = 100.0
    with pytest.raises(ValueError, match=r"tau_m = 100\.0 ms \(neuron 17\)"):
        target_from_model_units(**pynn(tau_m=tau_m))


def test_per_neuron_potentials_share_one_fitted_map() -> None:
    v_rest = np.full(N_NEURONS, -65.0)
    v_rest[::2] = -60.0
    mapping = map_model_units(**pynn(v_rest=v_rest))
    chip = np.asarray(mapping.target.leak)
    assert np.allclose(chip, mapping.voltage_map.to_chip(v_rest))
    assert chip[0] - chip[1] == pytest.approx(5.0 * mapping.voltage_map.scale)


def test_wrong_shape_is_rejected_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"v_rest: a per-neuron value must have shape \(512,\)"):
        target_from_model_units(**pynn(v_rest=np.zeros(3)))


def test_non_finite_value_is_rejected_naming_the_field() -> None:
    with pytest.raises(ValueError, match="v_reset = nan"):
        target_from_model_units(**pynn(v_reset=np.nan))


@pytest.mark.parametrize("speedup", [0.0, -10.0, np.inf])
def test_speedup_must_be_positive_and_finite(speedup: float) -> None:
    with pytest.raises(ValueError, match="speedup"):
        target_from_model_units(**pynn(), speedup=speedup)
