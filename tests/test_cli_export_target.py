"""`calib export --format target`: a TOML target file that loads back as the same target."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from result_factory import make_result
from typer.testing import CliRunner

from calib.cli import app
from calib.cli.target_file import load_target_file, target_to_toml
from calib.core.plans import PLANS
from calib.core.targets import NeuronTarget
from results_store import ResultsStore

CHIP = "export-chip-2"


def per_neuron(name: str, seed: int) -> np.ndarray:
    """Values spread over the field's allowed range, with awkward decimals."""
    spec = PLANS.quantities()[name]
    rng = np.random.default_rng(seed)
    low, high = spec.low + 0.1 * (spec.high - spec.low), spec.high - 0.1 * (spec.high - spec.low)
    return rng.uniform(low, high, 512)


def test_a_target_with_per_neuron_arrays_round_trips_exactly(tmp_path: Path) -> None:
    target = NeuronTarget(
        leak=per_neuron("leak", 1),
        tau_mem=per_neuron("tau_mem", 2),
        tau_syn_exc=7.3e-6,
        refractory_time=per_neuron("refractory_time", 3),
        membrane_capacitance=41,
    )
    path = tmp_path / "target.toml"
    path.write_text(target_to_toml(target, header="a test\ntwo lines"), encoding="utf-8")
    loaded = load_target_file(path)
    assert loaded == target and loaded.fingerprint() == target.fingerprint()
    for name in ("leak", "tau_mem", "refractory_time"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(target, name))
    assert loaded.tau_syn_exc == target.tau_syn_exc
    assert loaded.membrane_capacitance == 41


def test_optional_quantities_round_trip_and_unset_ones_stay_unset(tmp_path: Path) -> None:
    optional = [name for name, spec in PLANS.quantities().items() if spec.optional]
    name = optional[0]
    spec = PLANS.quantities()[name]
    target = NeuronTarget(**{name: (spec.low + spec.high) / 3})
    path = tmp_path / "adex.toml"
    path.write_text(target_to_toml(target), encoding="utf-8")
    loaded = load_target_file(path)
    assert loaded == target
    assert all(getattr(loaded, other) is None for other in optional[1:])


def test_export_format_target_writes_the_stored_target(tmp_path: Path) -> None:
    store = tmp_path / "store"
    target = NeuronTarget(leak=per_neuron("leak", 4), tau_mem=11.7e-6)
    run_id = ResultsStore(store, create=True).save(make_result(chip_id=CHIP, target=target))
    shown = CliRunner().invoke(app, ["export", CHIP, "--format", "target", "--store", str(store)])
    assert shown.exit_code == 0, shown.output
    assert run_id in shown.stdout and "µs" in shown.stdout
    path = tmp_path / "exported.toml"
    written = CliRunner().invoke(
        app, ["export", CHIP, "-f", "target", "-o", str(path), "--store", str(store)]
    )
    assert written.exit_code == 0, written.output
    assert path.read_text(encoding="utf-8") == shown.stdout
    assert load_target_file(path) == target


TAU = PLANS.quantities()["tau_mem"]


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=TAU.low, max_value=TAU.high, allow_nan=False))
def test_any_time_in_range_round_trips_bit_for_bit(value: float) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "tau.toml"
        path.write_text(target_to_toml(NeuronTarget(tau_mem=value)), encoding="utf-8")
        assert load_target_file(path).tau_mem == value
