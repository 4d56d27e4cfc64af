"""TOML target files and command-line target values: units, ranges, unknown keys."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fakes import QUANTITIES

from calib.cli.commands import choose_target
from calib.cli.target_file import build_target, cli_range, load_target_file
from calib.core.targets import NeuronTarget
from device_model.protocol import N_NEURONS

NO_FLAGS: dict[str, float | None] = {}


def write(tmp_path: Path, text: str, name: str = "target.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_times_in_a_target_file_are_microseconds(tmp_path: Path) -> None:
    target = load_target_file(write(tmp_path, "tau_mem = 12.5\nrefractory_time = 0.5\n"))
    assert target.tau_mem == pytest.approx(12.5e-6)
    assert target.refractory_time == pytest.approx(0.5e-6)


def test_potentials_in_a_target_file_are_cadc_lsb(tmp_path: Path) -> None:
    target = load_target_file(write(tmp_path, "leak = 90\nthreshold = 140.5\n"))
    assert (target.leak, target.threshold) == (90.0, 140.5)


def test_fields_left_out_keep_their_defaults(tmp_path: Path) -> None:
    target = load_target_file(write(tmp_path, "leak = 90\n"))
    default = NeuronTarget()
    assert target.reset == default.reset
    assert target.tau_syn_exc == default.tau_syn_exc
    assert target.membrane_capacitance == default.membrane_capacitance


def test_a_list_of_512_values_is_a_per_neuron_target(tmp_path: Path) -> None:
    values = ", ".join(str(8.0 + (n % 5)) for n in range(N_NEURONS))
    target = load_target_file(write(tmp_path, f"tau_mem = [{values}]\n"))
    assert isinstance(target.tau_mem, np.ndarray)
    assert target.tau_mem[3] == pytest.approx(11e-6)
    assert target.tau_mem[5] == pytest.approx(8e-6)


def test_a_per_neuron_list_of_the_wrong_length_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"tau_mem: a per-neuron target needs 512 values, got 3"):
        load_target_file(write(tmp_path, "tau_mem = [10, 11, 12]\n"))


def test_an_unknown_key_is_an_error_naming_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, "leak = 80\ntau_membrane = 10\n")
    with pytest.raises(ValueError, match=r"unknown key 'tau_membrane'; allowed keys: leak, "):
        load_target_file(path)


def test_a_sub_table_is_an_unknown_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown key 'neuron' \(a table\)"):
        load_target_file(write(tmp_path, "[neuron]\nleak = 80\n"))


def test_a_value_out_of_range_names_field_value_and_range_in_file_units(tmp_path: Path) -> None:
    path = write(tmp_path, "tau_mem = 200\n")
    with pytest.raises(ValueError) as caught:
        load_target_file(path)
    assert str(caught.value) == (f"{path}: tau_mem = 200 is outside the allowed range 0.5..60 µs")


def test_one_bad_neuron_of_a_list_is_named(tmp_path: Path) -> None:
    values = ["10"] * N_NEURONS
    values[17] = "90"
    path = write(tmp_path, f"tau_syn_exc = [{', '.join(values)}]\n")
    with pytest.raises(ValueError, match=r"tau_syn_exc\[17\] = 90 is outside .* 0\.3\.\.30 µs"):
        load_target_file(path)


def test_a_value_that_is_not_a_number_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"leak = 'high' is not a number"):
        load_target_file(write(tmp_path, 'leak = "high"\n'))
    with pytest.raises(ValueError, match=r"leak = True is not a number"):
        load_target_file(write(tmp_path, "leak = true\n"))


def test_membrane_capacitance_must_be_an_integer_in_range(tmp_path: Path) -> None:
    assert (
        load_target_file(write(tmp_path, "membrane_capacitance = 20\n")).membrane_capacitance == 20
    )
    with pytest.raises(ValueError, match=r"membrane_capacitance = 64 is outside .* 0\.\.63"):
        load_target_file(write(tmp_path, "membrane_capacitance = 64\n"))
    with pytest.raises(ValueError, match=r"membrane_capacitance = 20\.5"):
        load_target_file(write(tmp_path, "membrane_capacitance = 20.5\n"))


def test_malformed_toml_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "leak = = 80\n")
    with pytest.raises(ValueError, match=r"target\.toml: not a valid TOML target file"):
        load_target_file(path)


@pytest.mark.parametrize("name", list(QUANTITIES))
def test_command_line_ranges_are_the_target_ranges_in_command_line_units(name: str) -> None:
    spec = QUANTITIES[name]
    low, high = cli_range(name)
    scale = 1e-6 if spec.unit == "s" else 1.0
    assert low * scale == pytest.approx(spec.low)
    assert high * scale == pytest.approx(spec.high)
    build_target({name: low})
    build_target({name: high})


def test_flags_override_the_target_file(tmp_path: Path) -> None:
    path = write(tmp_path, "leak = 90\ntau_mem = 20\n")
    choice = choose_target(path, {"tau_mem": 15.0, "reset": None}, None, None)
    assert choice.target.leak == 90.0
    assert choice.target.tau_mem == pytest.approx(15e-6)
    assert choice.source == f"{path} + flags"


def test_without_file_or_flags_the_target_is_the_default() -> None:
    choice = choose_target(None, NO_FLAGS, None, None)
    assert choice.target == NeuronTarget()
    assert choice.source == "defaults"
