"""Recorded sessions: every call and its result in zarr, played back exactly, and any
difference in the calls reported with its index, the expected and the actual call."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from calib import calibrate
from device_model import CurrentStep, SimulatedChip, TransientRunError
from device_model.mismatch import Faults
from device_remote import RemoteDevice
from device_remote.recording import (
    RecordingDevice,
    ReplayDevice,
    ReplayMismatchError,
    SessionFormatError,
    read_session,
)
from tests.remote_helpers import call_sequence, identical, served


def test_a_replayed_session_returns_what_the_chip_returned(tmp_path) -> None:
    path = tmp_path / "session.zarr"
    with RecordingDevice(SimulatedChip("remote-0"), path, flush_every=5) as recording:
        recorded = call_sequence(recording)
    replay = ReplayDevice(path)
    assert (replay.chip_id, replay.n_neurons, replay.complete) == ("remote-0", 512, True)
    with replay:
        replayed = call_sequence(replay)
    assert all(identical(a, b) for a, b in zip(recorded, replayed, strict=True))


def test_the_session_is_zarr_with_a_schema_version(tmp_path) -> None:
    path = tmp_path / "session.zarr"
    with RecordingDevice(SimulatedChip("remote-0"), path) as recording:
        recording.read_cadc(2)
    attrs = zarr.open_group(str(path), mode="r").attrs
    assert attrs["schema_version"] == 1
    assert attrs["format"] == "analog-calib device session"
    assert (attrs["calls"], attrs["segments"]) == (1, 1)


def test_errors_are_recorded_and_raised_again(tmp_path) -> None:
    path = tmp_path / "session.zarr"
    chip = SimulatedChip("remote-0", faults=Faults(run_failure_rate=1.0))
    with RecordingDevice(chip, path) as recording:
        with pytest.raises(ValueError) as bad:
            recording.write({"v_leak": 2000})
        with pytest.raises(TransientRunError) as transient:
            recording.read_cadc()
    with ReplayDevice(path) as replay:
        with pytest.raises(ValueError) as bad_again:
            replay.write({"v_leak": 2000})
        with pytest.raises(TransientRunError) as transient_again:
            replay.read_cadc()
    assert str(bad_again.value) == str(bad.value)
    assert str(transient_again.value) == str(transient.value)


def _recorded(tmp_path) -> ReplayDevice:
    path = tmp_path / "session.zarr"
    with RecordingDevice(SimulatedChip("remote-0"), path) as recording:
        recording.write({"v_leak": 300})
        recording.read_cadc(5, CurrentStep(1e-9, 20e-6))
        recording.count_spikes(1e-5)
    return ReplayDevice(path)


def test_a_differing_argument_names_the_call_and_both_versions(tmp_path) -> None:
    replay = _recorded(tmp_path)
    replay.write({"v_leak": 300})
    with pytest.raises(
        ReplayMismatchError,
        match=(
            r"call 1 differs \(argument 'samples' differs\): expected read_cadc\(samples=5, "
            r"stimulus=CurrentStep\(.*\), read_time=None\), got read_cadc\(samples=6, "
        ),
    ):
        replay.read_cadc(6, CurrentStep(1e-9, 20e-6))
    with pytest.raises(ReplayMismatchError, match="call 1 differs"):  # stays failed
        replay.count_spikes(1e-5)


def test_a_differing_array_or_method_is_a_mismatch(tmp_path) -> None:
    replay = _recorded(tmp_path)
    with pytest.raises(
        ReplayMismatchError,
        match=r"call 0 differs \(argument 'settings' differs\): "
        r"expected write\(settings=\{'v_leak': 300\}\), "
        r"got write\(settings=\{'v_leak': 301\}\)",
    ):
        replay.write({"v_leak": 301})
    replay = ReplayDevice(tmp_path / "session.zarr")
    with pytest.raises(
        ReplayMismatchError,
        match=r"got write\(settings=\{'v_leak': int64\[512\] "
        r"\[300 300 300 \.\.\. 300 300 300\]\}\)",
    ):
        replay.write({"v_leak": np.full(512, 300)})
    replay = ReplayDevice(tmp_path / "session.zarr")
    with pytest.raises(ReplayMismatchError, match=r"call 0 differs: expected write\(.*got stats"):
        replay.stats  # noqa: B018


def test_a_call_past_the_end_and_calls_left_over_are_mismatches(tmp_path) -> None:
    replay = _recorded(tmp_path)
    replay.write({"v_leak": 300})
    with pytest.raises(
        ReplayMismatchError, match="2 of 3 recorded calls were not made; call 1 expected: read_cadc"
    ):
        replay.assert_finished()
    replay = ReplayDevice(tmp_path / "session.zarr")
    replay.write({"v_leak": 300})
    replay.read_cadc(5, CurrentStep(1e-9, 20e-6))
    replay.count_spikes(1e-5)
    with pytest.raises(
        ReplayMismatchError,
        match=r"call 3 is stats\(\), but the \(complete\) "
        "recording ends after 3 calls",
    ):
        replay.stats  # noqa: B018


def test_a_recorder_that_died_keeps_its_complete_segments(tmp_path) -> None:
    path = tmp_path / "session.zarr"
    recording = RecordingDevice(SimulatedChip("remote-0"), path, flush_every=2)
    for _ in range(5):
        recording.read_cadc()
    recording._finalizer.detach()  # the process dies: no close()
    attrs, entries, _ = read_session(path)
    assert (attrs["complete"], len(entries)) == (False, 4)
    replay = ReplayDevice(path)
    for _ in range(4):
        replay.read_cadc()
    with pytest.raises(ReplayMismatchError, match=r"\(incomplete\) recording ends after 4"):
        replay.read_cadc()


def test_an_unknown_schema_version_or_path_is_refused(tmp_path) -> None:
    path = tmp_path / "session.zarr"
    with RecordingDevice(SimulatedChip("remote-0"), path) as recording:
        recording.read_cadc()
    zarr.open_group(str(path), mode="r+").attrs["schema_version"] = 99
    with pytest.raises(SessionFormatError, match="has schema_version 99; this version reads 1"):
        ReplayDevice(path)
    with pytest.raises(SessionFormatError, match="no recorded session"):
        ReplayDevice(tmp_path / "missing.zarr")
    with pytest.raises(FileExistsError, match="already exists"):
        RecordingDevice(SimulatedChip("remote-0"), path)


@pytest.mark.slow
def test_a_calibration_over_the_network_replays_bit_identically(tmp_path) -> None:
    path = tmp_path / "calibration.zarr"
    recording = RecordingDevice(SimulatedChip("replay-0"), path)
    with served(recording) as server, RemoteDevice(server.address) as device:
        remote = calibrate(device)
    recording.close()
    with ReplayDevice(path) as replay:
        replayed = calibrate(replay)
    assert list(replayed.codes) == list(remote.codes)
    for cell, codes in remote.codes.items():
        assert identical(codes, replayed.codes[cell]), cell
    for quantity, values in remote.achieved.items():
        assert identical(values, replayed.achieved[quantity]), quantity
    assert identical(remote.success, replayed.success)
    assert remote.reasons == replayed.reasons
    assert remote.provenance.device_stats == replayed.provenance.device_stats
