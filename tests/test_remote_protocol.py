"""Every method of the device protocol works through a device server, errors included."""

from __future__ import annotations

import re
import threading

import numpy as np
import pytest

from device_model import CurrentStep, DeviceError, Faults, SimulatedChip, TransientRunError
from device_remote import RemoteDevice
from device_remote.serve import open_device, parse_addresses
from tests.remote_helpers import call_sequence, identical, served


def test_every_call_returns_what_the_chip_in_process_returns() -> None:
    local = call_sequence(SimulatedChip("remote-0"))
    with served(SimulatedChip("remote-0")) as server, RemoteDevice(server.address) as device:
        remote = call_sequence(device)
    assert len(remote) == len(local)
    for index, (a, b) in enumerate(zip(local, remote, strict=True)):
        assert identical(a, b), f"call result {index} differs"


def test_remote_device_reports_the_served_chip() -> None:
    with served(SimulatedChip("remote-7")) as server, RemoteDevice(server.address) as device:
        assert (device.chip_id, device.n_neurons) == ("remote-7", 512)
        assert device.device_type == "SimulatedChip"


BAD_CALLS = {
    "unknown cell": lambda d: d.write({"v_nothing": 3}),
    "code out of range": lambda d: d.write({"v_leak": 1023}),
    "negative code": lambda d: d.write({"v_reset": np.full(512, -1)}),
    "wrong shape": lambda d: d.write({"v_leak": np.zeros(7, dtype=int)}),
    "fractional code": lambda d: d.write({"v_leak": 3.5}),
    "object value": lambda d: d.write({"v_leak": None}),
    "string value": lambda d: d.write({"v_leak": "abc"}),
    "second cell bad": lambda d: d.write({"v_leak": 3, "v_reset": 5000}),
    "unknown cell read": lambda d: d.read_settings(["v_leak", "nope"]),
    "zero samples": lambda d: d.read_cadc(0),
    "boolean samples": lambda d: d.read_cadc(True),
    "text samples": lambda d: d.read_cadc("3"),
    "negative read time": lambda d: d.read_cadc(1, None, -1e-6),
    "infinite read time": lambda d: d.read_cadc(1, None, float("inf")),
    "bad stimulus": lambda d: d.read_cadc(1, "step"),
    "no neurons": lambda d: d.record_madc([], 1e-5),
    "neuron out of range": lambda d: d.record_madc([3, 600], 1e-5),
    "nested neurons": lambda d: d.record_madc([[0, 1]], 1e-5),
    "madc too long": lambda d: d.record_madc([0], 1.0),
    "nan duration": lambda d: d.count_spikes(np.float64("nan")),
    "duration too long": lambda d: d.count_spikes(5.0),
    "text duration": lambda d: d.count_spikes("1e-5", CurrentStep(1e-9, 1e-5)),
}


@pytest.mark.parametrize("name", sorted(BAD_CALLS))
def test_validation_errors_arrive_with_the_same_type_and_message(name: str) -> None:
    call = BAD_CALLS[name]
    with pytest.raises(Exception) as local:
        call(SimulatedChip("remote-0"))
    with served() as server, RemoteDevice(server.address) as device:
        with pytest.raises(Exception) as remote:
            call(device)
        assert device.read_cadc().shape == (1, 512)  # the lease and the server survive
    assert type(remote.value) is type(local.value)
    assert str(remote.value) == str(local.value)


def test_a_persistent_transient_failure_arrives_as_transient_run_error_after_retries() -> None:
    chip = SimulatedChip("remote-0", faults=Faults(run_failure_rate=1.0))
    with (
        served(chip) as server,
        RemoteDevice(server.address, transient_retries=2, backoff=0.0) as device,
    ):
        with pytest.raises(TransientRunError, match=r"chip 'remote-0': run \d+ failed"):
            device.read_cadc()
        assert chip.stats.runs == 3  # the first attempt and two retries


def test_transient_failures_are_retried_until_a_run_succeeds() -> None:
    chip = SimulatedChip("remote-0", faults=Faults(run_failure_rate=0.5))
    with (
        served(chip) as server,
        RemoteDevice(server.address, transient_retries=20, backoff=0.0) as device,
    ):
        reads = [device.read_cadc() for _ in range(10)]
    assert all(read.shape == (1, 512) for read in reads)
    assert chip.stats.runs > 10  # some runs failed and were repeated


def test_device_errors_keep_their_type() -> None:
    class Broken(SimulatedChip):
        def count_spikes(self, duration, stimulus=None):  # type: ignore[no-untyped-def]
            raise DeviceError("spike counters offline")

        def read_cadc(self, samples=1, stimulus=None, read_time=None):  # type: ignore[no-untyped-def]
            raise KeyError("ramp")

    with served(Broken("remote-0")) as server, RemoteDevice(server.address) as device:
        with pytest.raises(DeviceError, match=r"^spike counters offline$"):
            device.count_spikes(1e-5)
        with pytest.raises(DeviceError, match="device raised KeyError: 'ramp'"):
            device.read_cadc()


def test_open_device_without_an_address_is_the_simulated_chip() -> None:
    device = open_device(None, "remote-3", noise_scale=0.0)
    assert isinstance(device, SimulatedChip)
    assert (device.chip_id, device.noise_scale) == ("remote-3", 0.0)


def test_open_device_refuses_simulation_options_for_a_served_chip() -> None:
    with pytest.raises(ValueError, match="drift_hours describe a simulated chip"):
        open_device("127.0.0.1:1", "remote-0", drift_hours=3.0)


def test_open_device_checks_the_served_chip_id() -> None:
    with served() as server:
        with pytest.raises(ValueError, match="serves chip 'remote-0', not 'other-chip'"):
            open_device(server.address, "other-chip")
        with open_device(server.address, "remote-0") as device:  # the lease was released
            assert device.chip_id == "remote-0"


def test_a_device_spec_maps_chips_to_addresses() -> None:
    assert parse_addresses("a=127.0.0.1:5001, b=[::1]:5002") == {
        "a": "127.0.0.1:5001",
        "b": "[::1]:5002",
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "device spec is empty"),
        ("a", "must be CHIP=HOST:PORT"),
        ("a=127.0.0.1", "address of chip 'a' '127.0.0.1' must be HOST:PORT with a port 1..65535"),
        ("a=127.0.0.1:0", "port 1..65535"),
        ("a=h:1,a=h:2", "names chip 'a' twice"),
    ],
)
def test_a_bad_device_spec_is_refused(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_addresses(spec)


def test_threads_sharing_a_remote_device_each_get_their_own_answers() -> None:
    cells = ["v_leak", "v_reset", "v_threshold", "v_exp"]
    wrong: list[str] = []

    def work(device: RemoteDevice, cell: str, offset: int) -> None:
        try:
            for code in range(offset, offset + 20):
                device.write({cell: code})
                if device.read_settings([cell])[cell][0] != code:
                    wrong.append(f"{cell}: read another code")
        except Exception as error:  # a refused or confused call
            wrong.append(f"{cell}: {error}")

    with served() as server, RemoteDevice(server.address) as device:
        threads = [
            threading.Thread(target=work, args=(device, cell, 100 * index))
            for index, cell in enumerate(cells)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert wrong == []


def test_mac_activations_and_row_events_travel_and_read_as_in_process() -> None:
    from device_model.stimuli import MacActivations, RowEvents

    activations = MacActivations(np.arange(256) % 32)
    events = RowEvents.volley(12e-6, np.arange(8), address=0)
    local = SimulatedChip("remote-mac-0")
    with served(SimulatedChip("remote-mac-0")) as server, RemoteDevice(server.address) as device:
        for chip in (local, device):
            chip.write({"synapse_weight": 40})
        for stimulus in (activations, events):
            np.testing.assert_array_equal(
                device.read_cadc(samples=2, stimulus=stimulus),
                local.read_cadc(samples=2, stimulus=stimulus),
            )


def test_a_compartment_connection_travels_and_records_as_in_process() -> None:
    from device_model.stimuli import CompartmentConnect

    def connect(chip) -> None:
        chip.write({"icc_connect_right": np.where(np.arange(512) == 0, 1, 0)})
        v_leak = np.full(512, 500)
        v_leak[1] = 800
        chip.write({"i_bias_icc": 200, "v_leak": v_leak, "threshold_enable": 0})

    local = SimulatedChip("remote-icc-0")
    with served(SimulatedChip("remote-icc-0")) as server, RemoteDevice(server.address) as device:
        for chip in (local, device):
            connect(chip)
        stimulus = CompartmentConnect(10e-6)
        remote = device.record_madc([0, 1], 30e-6, stimulus)
        np.testing.assert_array_equal(
            remote.codes, local.record_madc([0, 1], 30e-6, stimulus).codes
        )
