"""`calib serve` serves a chip until stopped and refuses what it must."""

from __future__ import annotations

import signal

import pytest
from typer.testing import CliRunner

from calib.cli import app
from device_remote import RemoteDevice
from tests.remote_helpers import spawn_server, stop_process


@pytest.mark.slow
def test_calib_serve_announces_its_address_serves_and_stops_on_sigterm() -> None:
    process, address = spawn_server(
        ["calib", "serve", "--chip", "cli-chip-0", "--port", "0", "--heartbeat-timeout", "2"]
    )
    try:
        assert address.startswith("127.0.0.1:")
        with RemoteDevice(address, "cli-chip-0") as device:
            device.write({"v_leak": 333})
            assert device.read_settings("v_leak")["v_leak"][0] == 333
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        stop_process(process, kill=True)


def test_calib_serve_beyond_loopback_without_a_token_is_a_usage_error(monkeypatch) -> None:
    monkeypatch.delenv("CALIB_DEVICE_TOKEN", raising=False)
    result = CliRunner().invoke(app, ["serve", "--chip", "cli-chip-0", "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "not a loopback address" in result.output


def test_calib_serve_with_a_missing_token_file_is_a_usage_error(tmp_path) -> None:
    result = CliRunner().invoke(
        app, ["serve", "--chip", "cli-chip-0", "--token-file", str(tmp_path / "missing")]
    )
    assert result.exit_code == 2
    assert "cannot be read" in result.output


def test_calib_serve_refuses_a_bad_chip_id_and_port() -> None:
    assert CliRunner().invoke(app, ["serve", "--chip", "../x"]).exit_code == 2
    assert CliRunner().invoke(app, ["serve", "--chip", "ok", "--port", "70000"]).exit_code == 2
