"""The results store under crashes and concurrent writers.

A writer process is killed with SIGKILL in the middle of a save (held at a chosen point by a
hook in the child process only); the store must still open, earlier runs must load
bit-identically, the partial run must stay invisible, and `repair` must remove what the writer
left. Several processes saving at once must lose nothing.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from results_store import KindRegistry, ResultsStore

CHIP = "chip-crash"
ARRAYS_IN_KILLED_SAVE = 40
SIGNAL_TIMEOUT = 30.0

# Runs in a child interpreter. It saves one large record; the hook in LocalStore lets the save
# run until the chosen point, then announces it (the parent kills the child there) and waits.
WRITER = """
import asyncio, sys, uuid
from pathlib import Path

import numpy as np
from zarr.storage import LocalStore

from results_store import ResultsStore

store_path, announce, stop_at, chip_id = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4]
n_arrays = int(sys.argv[5])
original_set, original_set_if_not_exists = LocalStore.set, LocalStore.set_if_not_exists
started = completed = 0


async def stop_here(key):
    announce.write_text(key)
    await asyncio.Event().wait()


async def set(self, key, value):
    # 'half': the run file half written to its temporary name, as LocalStore writes it.
    if stop_at == "half" and key.endswith("/run.zarr.zip"):
        target = Path(self.root) / key
        target.parent.mkdir(parents=True, exist_ok=True)
        data = value.to_bytes()
        target.with_suffix(f".{uuid.uuid4().hex}.partial").write_bytes(data[: len(data) // 2])
        await stop_here(key)
    await original_set(self, key, value)


async def set_if_not_exists(self, key, value):
    if stop_at == "commit" and key.count("/") == 2 and key.endswith("/zarr.json"):
        await stop_here(key)
    await original_set_if_not_exists(self, key, value)


LocalStore.set, LocalStore.set_if_not_exists = set, set_if_not_exists


class Record:
    def to_record(self):
        arrays = {f"block/a{i:03d}": np.full(512, i, dtype=np.float64) for i in range(n_arrays)}
        meta = {path: {"dims": ["neuron"], "units": "1", "long_name": path} for path in arrays}
        return arrays, {"kind": "demo", "chip_id": chip_id, "array_meta": meta}


if stop_at == "loop":
    announce.write_text("started")
    while True:
        ResultsStore(store_path).save(Record())
ResultsStore(store_path).save(Record())
"""


class Record:
    def __init__(self, arrays: dict[str, np.ndarray], attrs: dict) -> None:
        self.arrays, self.attrs = arrays, attrs

    def to_record(self) -> tuple[dict[str, np.ndarray], dict]:
        meta = {path: {"dims": ["neuron"], "units": "1", "long_name": path} for path in self.arrays}
        return self.arrays, {**self.attrs, "array_meta": meta}


def earlier_record(seed: int, chip_id: str = CHIP) -> Record:
    rng = np.random.default_rng(seed)
    arrays = {
        "codes/v_leak": rng.integers(0, 1023, 512),
        "achieved/leak": rng.normal(80, 3, 512),
        "success": rng.random(512) > 0.05,
    }
    return Record(arrays, {"kind": "demo", "chip_id": chip_id, "seed": seed})


def start_writer(store_path: Path, announce: Path, stop_at: str) -> subprocess.Popen:
    args = [str(store_path), str(announce), stop_at, CHIP, str(ARRAYS_IN_KILLED_SAVE)]
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def wait_for(announce: Path, writer: subprocess.Popen) -> None:
    deadline = time.monotonic() + SIGNAL_TIMEOUT
    while not announce.exists():
        if writer.poll() is not None:
            raise AssertionError(f"writer exited early: {writer.stderr.read().decode()}")
        if time.monotonic() > deadline:
            writer.kill()
            raise AssertionError("writer never reached the point where it is to be killed")
        time.sleep(0.01)


def kill(writer: subprocess.Popen) -> None:
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(timeout=SIGNAL_TIMEOUT)
    assert writer.returncode == -signal.SIGKILL


def assert_bit_identical(store: ResultsStore, run_id: str, record: Record) -> None:
    loaded = store.get(CHIP, run_id)
    assert loaded.attrs == record.attrs
    assert set(loaded.arrays) == set(record.arrays)
    for path, values in record.arrays.items():
        assert loaded.arrays[path].dtype == values.dtype
        assert loaded.arrays[path].tobytes() == values.tobytes()


@pytest.fixture
def populated(tmp_path: Path) -> tuple[Path, dict[str, Record]]:
    """A store holding two complete runs of CHIP and one of another chip."""
    path = tmp_path / "store"
    store = ResultsStore(path, create=True)
    records = {store.save(record): record for record in (earlier_record(1), earlier_record(2))}
    store.save(earlier_record(3, "chip-other"))
    return path, records


@pytest.mark.parametrize("stop_at", ["half", "commit"])
def test_a_writer_killed_mid_save_leaves_earlier_runs_intact_and_no_visible_run(
    populated, tmp_path: Path, stop_at: str
) -> None:
    path, records = populated
    writer = start_writer(path, tmp_path / "announce", stop_at)
    wait_for(tmp_path / "announce", writer)
    kill(writer)

    partial = [run for run in (path / CHIP).iterdir() if run.is_dir() and run.name not in records]
    assert len(partial) == 1, "the killed save left no trace: it was not killed mid-write"
    written = sorted(file.name for file in partial[0].rglob("*") if file.is_file())
    if stop_at == "half":
        assert len(written) == 1 and written[0].endswith(".partial")
    else:
        assert written == ["run.zarr.zip"]

    store = ResultsStore(path, registry=KindRegistry())
    assert [info.run_id for info in store.history(CHIP)] == sorted(records)
    for run_id, record in records.items():
        assert_bit_identical(store, run_id, record)
    assert store.latest(CHIP).run_id == max(records)
    assert store.chips() == ["chip-crash", "chip-other"]
    new_run = store.save(earlier_record(4))
    assert store.latest(CHIP).run_id == new_run

    report = store.verify()
    assert report.ok and [problem.run_id for problem in report.partial] == [partial[0].name]
    assert store.repair(older_than=timedelta(days=1)).removed_partial == []  # may be in progress
    repaired = store.repair(older_than=timedelta(0))
    assert [problem.run_id for problem in repaired.removed_partial] == [partial[0].name]
    assert not partial[0].exists()
    assert store.verify().partial == []
    assert [info.run_id for info in store.history(CHIP)] == [*sorted(records), new_run]


def test_every_visible_run_is_whole_after_a_writer_is_killed_at_any_moment(
    populated, tmp_path: Path
) -> None:
    path, records = populated
    writer = start_writer(path, tmp_path / "announce", "loop")
    wait_for(tmp_path / "announce", writer)
    time.sleep(np.random.default_rng().uniform(0.3, 1.0))
    kill(writer)

    store = ResultsStore(path, registry=KindRegistry())
    history = store.history(CHIP)
    assert [info.run_id for info in history[:2]] == sorted(records)
    for run_id, record in records.items():
        assert_bit_identical(store, run_id, record)
    for info in history[2:]:  # whatever the writer completed must load completely
        loaded = store.get(CHIP, info.run_id)
        assert len(loaded.arrays) == ARRAYS_IN_KILLED_SAVE
        np.testing.assert_array_equal(loaded.arrays["block/a007"], np.full(512, 7.0))


# -- concurrent writers ----------------------------------------------------------------------------

WORKERS = 3
RUNS_PER_WORKER = 6
SHARED_CHIP = "chip-shared"


def worker_record(worker: int, index: int) -> Record:
    chip_id = SHARED_CHIP if index % 2 == 0 else f"chip-w{worker}"
    arrays = {"codes/v_leak": np.full(512, 100 * worker + index), "success": np.ones(512, bool)}
    return Record(arrays, {"kind": "demo", "chip_id": chip_id, "worker": worker, "index": index})


def save_runs(store_path: str, worker: int, start, results) -> None:
    """A writer process: open (creating if needed) at the same moment as the others, save."""
    start.wait()
    store = ResultsStore(store_path, create=True, registry=KindRegistry())
    saved = []
    for index in range(RUNS_PER_WORKER):
        record = worker_record(worker, index)
        saved.append((record.attrs["chip_id"], store.save(record), index))
    results.put((worker, saved))


def test_concurrent_writers_on_same_and_different_chips_lose_nothing(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(WORKERS), context.Queue()
    path = str(tmp_path / "store")  # created by the writers themselves, all at once
    processes = [
        context.Process(target=save_runs, args=(path, worker, start, results))
        for worker in range(WORKERS)
    ]
    for process in processes:
        process.start()
    saved = dict(results.get(timeout=60) for _ in processes)
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0

    store = ResultsStore(path, registry=KindRegistry())
    expected: dict[str, list[str]] = {}
    for worker, runs in saved.items():
        for chip_id, run_id, index in runs:
            expected.setdefault(chip_id, []).append(run_id)
            loaded = store.get(chip_id, run_id)
            assert (loaded.attrs["worker"], loaded.attrs["index"]) == (worker, index)
            np.testing.assert_array_equal(
                loaded.arrays["codes/v_leak"], worker_record(worker, index).arrays["codes/v_leak"]
            )
    assert sorted(store.chips()) == sorted(expected)
    assert len(expected[SHARED_CHIP]) == WORKERS * RUNS_PER_WORKER // 2
    for chip_id, run_ids in expected.items():
        assert [info.run_id for info in store.history(chip_id)] == sorted(run_ids)
