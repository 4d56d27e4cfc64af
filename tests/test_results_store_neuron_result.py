"""A real calib NeuronResult through the store: saved, found by target, decoded bit-identically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from calib.core.failures import Failure, FailureKind
from calib.core.results import RECORD_KIND, NeuronResult, Provenance
from calib.core.targets import NeuronTarget
from device_model.protocol import CELLS, N_NEURONS
from results_store import KindRegistry, ResultsStore

CHIP = "w61-chip-07"


def neuron_result(seed: int = 0, target: NeuronTarget | None = None) -> NeuronResult:
    """A hand-built result: every field filled, a few neurons failed, NaN where unmeasured."""
    rng = np.random.default_rng(seed)
    tau_mem = rng.uniform(8e-6, 12e-6, N_NEURONS)
    target = target or NeuronTarget(leak=85.0, tau_mem=tau_mem)
    codes = {
        name: rng.integers(spec.low, spec.high + 1, spec.shape[0]).astype(np.int64)
        for name, spec in CELLS.items()
        if name
        in (
            "v_leak",
            "i_bias_leak",
            "cadc_ramp_offset",
            "cadc_channel_offset",
            "leak_divide",
            "refractory_counter",
        )
    }
    achieved = {
        "leak": rng.normal(85.0, 0.8, N_NEURONS),
        "tau_mem": tau_mem * rng.normal(1.0, 0.02, N_NEURONS),
    }
    achieved["tau_mem"][[5, 300]] = np.nan
    success = np.ones(N_NEURONS, dtype=bool)
    success[[5, 300]] = False
    return NeuronResult(
        target=target,
        codes=codes,
        achieved=achieved,
        success=success,
        failure_records=[
            Failure(
                5, "tau_mem", FailureKind.AT_BOUND, cell="i_bias_leak", value=1022.0, bound="upper"
            ),
            Failure(300, "neuron", FailureKind.DEAD, note="no response"),
        ],
        provenance=Provenance(
            chip_id=CHIP,
            created="2025-03-01T02:00:00+00:00",
            duration=12.5,
            versions={"calib": "0.1.0", "numpy": np.__version__},
            device_stats={"runs": 1200.0, "writes": 310.0, "hardware_time": 8.25},
            algorithm="binary_search",
            extra={"seed": seed},
        ),
        before={"leak": rng.normal(90.0, 10.0, N_NEURONS)},
        models={"tau_mem": {"slope": rng.normal(size=N_NEURONS), "offset": rng.normal(size=512)}},
    )


def assert_arrays_identical(loaded: dict, saved: dict) -> None:
    assert set(loaded) == set(saved)
    for name, values in saved.items():
        assert loaded[name].dtype == values.dtype, name
        assert loaded[name].shape == values.shape, name
        assert loaded[name].tobytes() == values.tobytes(), name


@pytest.fixture
def store(tmp_path: Path) -> ResultsStore:
    registry = KindRegistry()
    registry.register(RECORD_KIND, NeuronResult.from_record)
    return ResultsStore(tmp_path / "store", create=True, registry=registry)


def test_a_neuron_result_round_trips_bit_identically(store: ResultsStore) -> None:
    saved = neuron_result()
    loaded = store.get(CHIP, store.save(saved))
    assert isinstance(loaded, NeuronResult)
    assert loaded.target == saved.target
    assert loaded.target.to_dict() == saved.target.to_dict()
    assert_arrays_identical(loaded.codes, saved.codes)
    assert_arrays_identical(loaded.achieved, saved.achieved)
    assert_arrays_identical(loaded.before, saved.before)
    assert_arrays_identical({"success": loaded.success}, {"success": saved.success})
    assert set(loaded.models) == set(saved.models)
    assert_arrays_identical(loaded.models["tau_mem"], saved.models["tau_mem"])
    assert loaded.reasons == saved.reasons
    assert loaded.provenance.to_dict() == saved.provenance.to_dict()


def test_latest_finds_a_neuron_result_by_its_target(store: ResultsStore) -> None:
    default_target, other_target = NeuronTarget(), NeuronTarget(leak=100.0)
    for_default = store.save(neuron_result(1, default_target))
    store.save(neuron_result(2, other_target))
    found = store.latest(CHIP, default_target)
    assert found.provenance.extra == {"seed": 1}
    assert store.history(CHIP)[0].run_id == for_default
    assert store.latest(CHIP, NeuronTarget(leak=120.0)) is None


def test_a_neuron_result_exports_with_neuron_and_quadrant_axes(store: ResultsStore) -> None:
    saved = neuron_result()
    dataset = store.to_xarray(CHIP, store.save(saved))
    assert dataset["codes.cadc_ramp_offset"].dims == ("quadrant",)
    assert dataset["achieved.tau_mem"].dims == ("neuron",)
    np.testing.assert_array_equal(dataset["codes.v_leak"].values, saved.codes["v_leak"])
    assert dataset.attrs["kind"] == RECORD_KIND


def test_a_record_of_the_first_schema_loads_with_its_reasons_as_text() -> None:
    arrays, attrs = neuron_result().to_record()
    legacy = {
        key: value
        for key, value in attrs.items()
        if key not in ("failures", "notes", "record_version")
    }
    legacy["reasons"] = {"5": "tau_mem: code at upper bound 1022", "300": "dead neuron"}
    loaded = NeuronResult.from_record(arrays, legacy)
    assert loaded.reasons == {5: "tau_mem: code at upper bound 1022", 300: "dead neuron"}
    assert {f.kind for f in loaded.failure_records} == {FailureKind.UNSPECIFIED}
    assert loaded.failed_quantities()["tau_mem"] == {5}


def test_failure_records_round_trip_as_data() -> None:
    arrays, attrs = neuron_result().to_record()
    loaded = NeuronResult.from_record(arrays, attrs)
    assert loaded.failure_records == neuron_result().failure_records
    assert loaded.failure_records[0].kind is FailureKind.AT_BOUND
