"""MacTarget, MacResult records and the multiply experiment's input checks (fast)."""

from __future__ import annotations

import numpy as np
import pytest

from calib.mac import MacResult, MacTarget, multiply
from calib.mac.multiply import signed_synapse_settings
from device_model import SimulatedChip


@pytest.mark.parametrize(
    "field, value",
    [("baseline", 300.0), ("amplitude", 0.0), ("i_synin_gm", 2000), ("offset_tolerance", -1.0)],
)
def test_target_out_of_range_names_the_field(field, value):
    with pytest.raises(ValueError, match=rf"^{field} = .* outside the allowed range"):
        MacTarget(**{field: value})


def test_target_round_trips_and_fingerprints():
    target = MacTarget(baseline=110.0, amplitude=30.0)
    assert MacTarget.from_dict(target.to_dict()) == target
    assert target.fingerprint() != MacTarget().fingerprint()


def test_signed_weights_split_into_excitatory_and_inhibitory_rows():
    weights = np.zeros((2, 512), dtype=int)
    weights[0, 5] = 7
    weights[1, 6] = -9
    settings = signed_synapse_settings(weights)
    synapses = settings["synapse_weight"]
    assert synapses[0, 5] == 7 and synapses[1, 5] == 0
    assert synapses[3, 6] == 9 and synapses[2, 6] == 0
    assert settings["row_mode"][:4].tolist() == [1, 2, 1, 2]


@pytest.mark.parametrize(
    "weights, activations, message",
    [
        (np.zeros((129, 512), dtype=int), np.zeros(129, dtype=int), r"weights: got shape"),
        (np.full((4, 512), 64), np.zeros(4, dtype=int), r"weights: value 64"),
        (np.zeros((4, 512), dtype=int), np.zeros(5, dtype=int), r"activations: got shape"),
        (np.zeros((4, 512), dtype=int), np.full(4, 32), r"activations: value 32"),
    ],
)
def test_multiply_refuses_bad_input_before_touching_the_device(weights, activations, message):
    chip = SimulatedChip("mac-api")
    with pytest.raises(ValueError, match=message):
        multiply(chip, weights, activations)
    assert chip.stats.writes == 0 and chip.stats.runs == 0


def test_record_of_another_schema_version_is_refused():
    result = MacResult(
        target=MacTarget(),
        codes={"v_reset": np.zeros(512, dtype=np.int64)},
        achieved={},
        before={},
        neuron_success=np.ones(512, bool),
        driver_success=np.ones(256, bool),
        neuron_reasons={},
        driver_reasons={},
        provenance={"chip_id": "c"},
    )
    arrays, attrs = result.to_record()
    assert attrs["kind"] == "mac_result"
    MacResult.from_record(arrays, attrs)
    with pytest.raises(ValueError, match="mac_schema_version 2"):
        MacResult.from_record(arrays, {**attrs, "mac_schema_version": 2})
