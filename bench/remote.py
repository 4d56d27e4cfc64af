"""A full LIF calibration over a device server on loopback against the same chip in-process.

Prints the host time of both (and their ratio; goal <= 1.3), the number of protocol calls, the
latency a call gains over the network and the calls per second of small calls, and whether
both calibrations gave the same result bit for bit (codes, achieved values, success, reasons,
device statistics). The server is a separate process (`python -m device_remote`).

Then, with --kills N (default 10), the server is killed N times at a random moment of a
calibration and restarted on its port: each killed calibration must fail with an error within
the client's retry bound, store nothing, and the next calibration on the restarted server must
succeed. With --fleet, the nightly run of 4 chips on 2 Dask workers, each chip behind its own
server, against the same in-process; then the same night with one server dead (only its chip
may fail).

    python bench/remote.py [--chip ID] [--repeats R] [--kills N] [--fleet]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from calib import calibrate
from calib.core.results import NeuronResult
from calib.operations.fleet import dask_client, run_nightly
from device_model import SimulatedChip
from device_remote import RemoteDevice
from device_remote.serve import RemoteFleet
from results_store import ResultsStore

SMALL_CALLS = 300
"""Calls per latency figure."""
START_TIMEOUT = 60.0


class Server:
    """A `python -m device_remote` process serving one simulated chip."""

    def __init__(self, chip_id: str, port: int = 0) -> None:
        self.chip_id = chip_id
        self.process = subprocess.Popen(
            [sys.executable, "-m", "device_remote", "--chip", chip_id, "--port", str(port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        line: list[str] = []
        reader = threading.Thread(
            target=lambda: line.append(self.process.stdout.readline()), daemon=True
        )
        reader.start()
        reader.join(START_TIMEOUT)
        if not line or " at " not in line[0]:
            self.kill()
            raise SystemExit(f"server for {chip_id} did not start: {line!r}")
        self.address = line[0].split(" at ", 1)[1].split()[0]
        self.port = int(self.address.rsplit(":", 1)[1])

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)
        if self.process.stdout is not None:
            self.process.stdout.close()


class Counting:
    """A device wrapper that counts protocol calls (stats reads included)."""

    def __init__(self, device: Any) -> None:
        self.device, self.calls = device, 0
        self.chip_id, self.n_neurons = device.chip_id, device.n_neurons

    @property
    def stats(self) -> Any:
        self.calls += 1
        return self.device.stats

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.device, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return method(*args, **kwargs)

        return counted


def same_result(a: NeuronResult, b: NeuronResult) -> list[str]:
    """What differs between two results (empty: bit-identical)."""
    differs = [
        f"codes {cell}" for cell in a.codes if not np.array_equal(a.codes[cell], b.codes.get(cell))
    ]
    differs += [
        f"achieved {name}"
        for name, values in a.achieved.items()
        if values.tobytes() != b.achieved[name].tobytes()
    ]
    if not np.array_equal(a.success, b.success):
        differs.append("success")
    if a.reasons != b.reasons:
        differs.append("reasons")
    if a.provenance.device_stats != b.provenance.device_stats:
        differs.append("device stats")
    return differs


def timed_calibration(device: Any) -> tuple[NeuronResult, float]:
    started = time.perf_counter()
    result = calibrate(device)
    return result, time.perf_counter() - started


def latency(device: Any) -> tuple[float, float]:
    """Seconds per call of `stats` and of a one-sample CADC read."""
    figures = []
    for call in (lambda: device.stats, lambda: device.read_cadc()):
        call()
        started = time.perf_counter()
        for _ in range(SMALL_CALLS):
            call()
        figures.append((time.perf_counter() - started) / SMALL_CALLS)
    return figures[0], figures[1]


def compare(chip_id: str, repeats: int) -> None:
    local_times, remote_times, calls, differs = [], [], 0, []
    for _ in range(repeats):
        local, seconds = timed_calibration(SimulatedChip(chip_id))
        local_times.append(seconds)
        server = Server(chip_id)  # a fresh chip each time, as in-process
        try:
            with RemoteDevice(server.address, chip_id) as device:
                counting = Counting(device)
                remote, seconds = timed_calibration(counting)
                remote_times.append(seconds)
                calls = counting.calls
            with RemoteDevice(server.address, chip_id) as device:
                remote_stats, remote_read = latency(device)
        finally:
            server.kill()
        differs += [name for name in same_result(local, remote) if name not in differs]
    local_stats, local_read = latency(SimulatedChip(chip_id))
    local_best, remote_best = min(local_times), min(remote_times)
    print(f"chip {chip_id}: {calls} protocol calls per calibration, best of {repeats}")
    print(f"  in-process host time  {local_best:8.2f} s")
    print(
        f"  remote host time      {remote_best:8.2f} s   ratio {remote_best / local_best:.3f} "
        "(goal <= 1.3)"
    )
    print(f"  added per call        {1e3 * (remote_best - local_best) / calls:8.3f} ms")
    print(f"  same result           {'yes' if not differs else 'NO: ' + ', '.join(differs)}")
    print(
        f"  stats call            {1e3 * local_stats:8.3f} ms in-process, "
        f"{1e3 * remote_stats:.3f} ms remote ({1 / remote_stats:,.0f} calls/s)"
    )
    print(
        f"  read_cadc(1) call     {1e3 * local_read:8.3f} ms in-process, "
        f"{1e3 * remote_read:.3f} ms remote ({1 / remote_read:,.0f} calls/s)"
    )


def calibrate_into(
    address: str, chip_id: str, store: ResultsStore, outcome: list[BaseException | None]
) -> None:
    """Calibrate the served chip into `store`; append the error (None: it finished)."""
    try:
        with RemoteDevice(address, chip_id, call_timeout=30.0) as device:
            calibrate(device, store=store)
        outcome.append(None)
    except Exception as failure:  # reported by the caller
        outcome.append(failure)


def kills(chip_id: str, count: int, root: Path) -> None:
    print(f"\nkilling the server mid-calibration {count} times (chip {chip_id}):")
    print(f"{'kill':>5}{'at s':>7}{'failed after s':>16}  {'error':<60}{'next':>6}")
    server = Server(chip_id)
    full = None
    clean = 0
    try:
        for index in range(count):
            store = ResultsStore(root / f"kill-{index}", create=True)
            outcome: list[BaseException | None] = []

            thread = threading.Thread(
                target=calibrate_into, args=(server.address, chip_id, store, outcome), daemon=True
            )
            thread.start()
            at = random.uniform(0.2, 0.95 * full) if full else random.uniform(0.2, 5.0)
            time.sleep(at)
            server.kill()
            killed = time.perf_counter()
            server = Server(chip_id, server.port)
            thread.join(timeout=120)
            hung = thread.is_alive()
            failed_after = time.perf_counter() - killed
            error = outcome[0] if outcome else None
            nothing_stored = store.chips() == []
            with RemoteDevice(server.address, chip_id, wait=5.0) as device:
                next_started = time.perf_counter()
                result = calibrate(device, store=store)
                full = full or time.perf_counter() - next_started
            next_ok = result.success.mean() > 0.9 and len(store.history(chip_id)) == 1
            ok = not hung and error is not None and nothing_stored and next_ok
            clean += ok
            text = (
                "HUNG"
                if hung
                else (
                    f"{type(error).__name__}: {error}"
                    if error
                    else "no error (finished before the kill)"
                )
            )
            print(
                f"{index:>5}{at:>7.2f}{failed_after:>16.2f}  {text[:58]:<60}"
                f"{'ok' if next_ok else 'FAIL':>6}"
            )
    finally:
        server.kill()
    print(
        f"clean failures (error, nothing stored, no hang, next calibration fine): "
        f"{clean} of {count}"
    )


def fleet(root: Path) -> None:
    chip_ids = [f"bench-remote-fleet-{index}" for index in range(4)]
    print(f"\nnightly, {len(chip_ids)} chips on 2 Dask workers:")
    servers = [Server(chip_id) for chip_id in chip_ids]
    try:
        factory = RemoteFleet({server.chip_id: server.address for server in servers})
        with dask_client(workers=2) as client:
            for label, kwargs in (("in-process", {}), ("4 servers", {"device_factory": factory})):
                started = time.perf_counter()
                outcomes = run_nightly(chip_ids, root / f"fleet-{label}", client=client, **kwargs)
                wall = time.perf_counter() - started
                statuses = ", ".join(sorted({outcome.status for outcome in outcomes}))
                print(f"  {label:<12} {wall:8.1f} s wall, statuses: {statuses}")
            servers[0].kill()
            outcomes = run_nightly(
                chip_ids, root / "fleet-4 servers", client=client, device_factory=factory
            )
            print(
                "  one server dead: "
                + "; ".join(f"{outcome.chip_id} {outcome.status}" for outcome in outcomes)
            )
    finally:
        for server in servers:
            server.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chip", default="bench-remote-0")
    parser.add_argument("--repeats", type=int, default=1, help="calibrations of each kind")
    parser.add_argument("--kills", type=int, default=10, help="server kills (0: none)")
    parser.add_argument("--fleet", action="store_true", help="also the 4-server nightly run")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average before {os.getloadavg()[0]:.2f}")
    compare(args.chip, args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        if args.kills:
            kills(args.chip, args.kills, Path(tmp))
        if args.fleet:
            fleet(Path(tmp))
    print(f"load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
