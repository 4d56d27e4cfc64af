"""Integrity of stored runs: every byte sealed, damage contained to the damaged run, verify and
repair, writability checked before work, and the run index that a killed writer cannot break."""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from store_damage import (
    altered,
    edit_document,
    edit_run_file,
    get_leaf,
    leaf_paths,
    read_document,
    run_directory,
    set_leaf,
    write_document,
)
from test_results_store import make_result
from zarr.storage import LocalStore

from results_store import (
    DamagedRunWarning,
    KindRegistry,
    ResultsStore,
    StoreError,
)
from results_store.index import COMPACT_AFTER, INDEX_NAME
from results_store.records import parse_run_document
from results_store.runfile import RUN_FILE_NAME

CHIP = "chip-0"


@pytest.fixture
def store(tmp_path: Path) -> ResultsStore:
    return ResultsStore(tmp_path / "store", create=True, registry=KindRegistry())


@pytest.fixture
def run_id(store: ResultsStore) -> str:
    return store.save(make_result(CHIP))


def refused(store: ResultsStore, run_id: str) -> StoreError:
    """The error a load of the run raises (it must raise one naming the run)."""
    with pytest.raises(StoreError, match=run_id) as error:
        store.get(CHIP, run_id)
    return error.value


# -- the sealed run document -----------------------------------------------------------------------


def test_the_run_document_seal_covers_every_metadata_field(store, run_id) -> None:
    """Target, failure reasons, provenance (extra included), manifest, run file, run id, kind:
    changing any one field, even in the store's own spelling, is refused naming the run."""
    original = read_document(store, CHIP, run_id)
    fields = [("attributes", *path) for path in leaf_paths(original["attributes"])]
    assert ("attributes", "record", "target", "tau_mem") in fields
    assert ("attributes", "record", "reasons", "3") in fields
    assert ("attributes", "record", "provenance", "note") in fields
    assert ("attributes", "manifest", "achieved/tau_mem", "sha256") in fields
    assert ("attributes", "manifest", "achieved/tau_mem", "units") in fields
    for path in fields:
        content = json.loads(json.dumps(original))
        set_leaf(content, path, altered(get_leaf(content, path)))
        write_document(store, CHIP, run_id, content, reseal=False)
        refused(store, run_id)
    write_document(store, CHIP, run_id, original, reseal=False)
    assert store.get(CHIP, run_id).run_id == run_id


@pytest.mark.parametrize("key", ["reasons", "provenance", "target"])
def test_emptying_a_record_field_is_refused(store, run_id, key) -> None:
    edit_document(store, CHIP, run_id, lambda attrs: attrs["record"].update({key: {}}))
    assert "seal" in str(refused(store, run_id))


def test_any_single_changed_byte_of_the_run_document_is_refused(store, run_id) -> None:
    document = (run_directory(store, CHIP, run_id) / "zarr.json").read_bytes()
    parse_run_document(CHIP, run_id, document)  # the untouched document is accepted
    for position in range(len(document)):
        for flip in (0x01, 0x20):
            damaged = bytearray(document)
            damaged[position] ^= flip
            with pytest.raises(StoreError, match=run_id):
                parse_run_document(CHIP, run_id, bytes(damaged))


def test_a_respelled_but_equal_document_is_refused(store, run_id) -> None:
    """Whitespace or key order that parse to the same values still count as a change."""
    path = run_directory(store, CHIP, run_id) / "zarr.json"
    path.write_text(json.dumps(json.loads(path.read_bytes()), indent=1))
    assert "spelling" in str(refused(store, run_id))


def test_changed_bytes_of_the_run_file_are_refused(store, run_id) -> None:
    path = run_directory(store, CHIP, run_id) / RUN_FILE_NAME
    data = path.read_bytes()
    for position in np.linspace(0, len(data) - 1, 48).astype(int):
        damaged = bytearray(data)
        damaged[position] ^= 0x01
        path.write_bytes(bytes(damaged))
        assert "run file" in str(refused(store, run_id))
    path.write_bytes(data[:-1])
    refused(store, run_id)
    path.write_bytes(data)
    assert store.get(CHIP, run_id).run_id == run_id


def test_a_missing_run_file_is_an_error_naming_the_run(store, run_id) -> None:
    (run_directory(store, CHIP, run_id) / RUN_FILE_NAME).unlink()
    assert "missing" in str(refused(store, run_id))


def test_a_deleted_checksum_entry_is_refused(store, run_id) -> None:
    edit_document(store, CHIP, run_id, lambda attrs: attrs["manifest"].pop("achieved/tau_mem"))
    refused(store, run_id)


def test_a_deleted_checksum_entry_is_refused_even_when_resealed(store, run_id) -> None:
    """The array is never silently dropped: the run file holds an array the manifest lacks."""
    edit_document(
        store, CHIP, run_id, lambda attrs: attrs["manifest"].pop("achieved/tau_mem"), reseal=True
    )
    error = refused(store, run_id)
    assert "achieved/tau_mem" in str(error) and "no entry in the manifest" in str(error)


def test_an_array_missing_from_a_resealed_run_file_is_refused(store, run_id) -> None:
    def drop(entries: dict[str, bytes]) -> None:
        for name in [name for name in entries if name.startswith("achieved/tau_mem/")]:
            del entries[name]

    error = refused_after(store, run_id, drop)
    assert "achieved/tau_mem" in str(error) and "missing" in str(error)


def refused_after(store, run_id, edit) -> StoreError:
    edit_run_file(store, CHIP, run_id, edit)
    return refused(store, run_id)


def test_altered_array_values_in_a_resealed_run_file_are_refused(store, run_id) -> None:
    other = ResultsStore(Path(store.location).parent / "other", create=True)
    other_id = other.save(make_result(CHIP, seed=1))
    with zipfile.ZipFile(run_directory(other, CHIP, other_id) / RUN_FILE_NAME) as archive:
        chunk = archive.read("achieved/tau_mem/c/0")

    def swap(entries: dict[str, bytes]) -> None:
        entries["achieved/tau_mem/c/0"] = chunk

    error = refused_after(store, run_id, swap)
    assert "achieved/tau_mem" in str(error) and "checksum" in str(error)


def test_garbled_chunk_bytes_in_a_resealed_run_file_are_refused(store, run_id) -> None:
    def garble(entries: dict[str, bytes]) -> None:
        entries["achieved/tau_mem/c/0"] = b"not zstd data"

    assert "cannot be read" in str(refused_after(store, run_id, garble))


# -- damage contained ------------------------------------------------------------------------------


def damage(store: ResultsStore, run_id: str) -> None:
    edit_document(store, CHIP, run_id, lambda attrs: attrs["record"]["target"].update(x=1))


def test_lookups_skip_a_damaged_old_run_with_a_warning_naming_it(store: ResultsStore) -> None:
    old, middle, newest = (store.save(make_result(CHIP, seed=seed)) for seed in range(3))
    damage(store, middle)
    reopened = ResultsStore(store.location, registry=KindRegistry())
    with pytest.warns(DamagedRunWarning, match=middle):
        assert [info.run_id for info in reopened.history(CHIP)] == [old, newest]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert reopened.latest(CHIP).run_id == newest
    assert reopened.chips() == [CHIP]


def test_latest_returns_the_newest_intact_run_when_the_newest_is_damaged(store) -> None:
    older = store.save(make_result(CHIP, seed=0))
    newest = store.save(make_result(CHIP, seed=1))
    (run_directory(store, CHIP, newest) / RUN_FILE_NAME).write_bytes(b"damaged")
    with pytest.warns(DamagedRunWarning, match=newest):
        assert store.latest(CHIP).run_id == older
    with pytest.warns(DamagedRunWarning, match=newest):
        assert store.as_of(CHIP, datetime.now(UTC)).run_id == older


def test_latest_is_none_when_every_run_is_damaged(store, run_id) -> None:
    damage(store, run_id)
    with pytest.warns(DamagedRunWarning):
        assert store.latest(CHIP) is None


def test_a_run_damaged_after_it_was_indexed_is_skipped_by_latest(store: ResultsStore) -> None:
    runs = [store.save(make_result(CHIP, seed=seed)) for seed in range(COMPACT_AFTER + 1)]
    store.history(CHIP)  # writes the index
    assert (Path(store.location) / CHIP / INDEX_NAME).exists()
    damage(store, runs[-1])
    with pytest.warns(DamagedRunWarning, match=runs[-1]):
        assert store.latest(CHIP).run_id == runs[-2]


def test_the_history_dataset_leaves_out_a_damaged_run(store: ResultsStore) -> None:
    runs = [store.save(make_result(CHIP, seed=seed)) for seed in range(3)]
    (run_directory(store, CHIP, runs[1]) / RUN_FILE_NAME).write_bytes(b"damaged")
    with pytest.warns(DamagedRunWarning, match=runs[1]):
        dataset = store.history_dataset(CHIP)
    assert list(dataset["run"].values) == [runs[0], runs[2]]


# -- verify and repair -----------------------------------------------------------------------------


def test_verify_reports_every_damaged_run_and_nothing_else(store: ResultsStore) -> None:
    runs = [store.save(make_result(CHIP, seed=seed)) for seed in range(4)]
    store.save(make_result("chip-1"))
    damage(store, runs[0])
    (run_directory(store, CHIP, runs[2]) / RUN_FILE_NAME).write_bytes(b"damaged")
    report = store.verify()
    assert report.checked == 5
    assert not report.ok
    assert sorted(problem.run_id for problem in report.damaged) == [runs[0], runs[2]]
    assert all(problem.chip_id == CHIP for problem in report.damaged)
    assert report.partial == [] and report.damaged_indexes == []


def test_verify_of_an_intact_store_is_ok(store: ResultsStore) -> None:
    for seed in range(3):
        store.save(make_result(CHIP, seed=seed))
    report = store.verify()
    assert report.ok and report.checked == 3


def test_repair_moves_damaged_runs_to_the_quarantine(store: ResultsStore) -> None:
    kept = store.save(make_result(CHIP, seed=0))
    damaged = store.save(make_result(CHIP, seed=1))
    damage(store, damaged)
    report = store.repair(older_than=timedelta(hours=1))
    assert [problem.run_id for problem in report.quarantined] == [damaged]
    assert not run_directory(store, CHIP, damaged).exists()
    quarantined = Path(store.location) / "_quarantine" / CHIP / damaged
    assert sorted(path.name for path in quarantined.iterdir()) == [RUN_FILE_NAME, "zarr.json"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [info.run_id for info in store.history(CHIP)] == [kept]
        assert store.chips() == [CHIP]
    assert store.verify().ok


def test_repair_removes_old_temporary_files_and_keeps_fresh_ones(store, run_id) -> None:
    chip = Path(store.location) / CHIP
    old = chip / f"index.{'a' * 32}.partial"
    fresh = run_directory(store, CHIP, run_id) / f"zarr.{'b' * 32}.partial"
    for path in (old, fresh):
        path.write_bytes(b"half written")
    hours_ago = time.time() - 3 * 3600
    os.utime(old, (hours_ago, hours_ago))
    report = store.repair(older_than=timedelta(hours=1))
    assert report.removed_temporary == [f"{CHIP}/{old.name}"]
    assert not old.exists() and fresh.exists()
    assert store.get(CHIP, run_id).run_id == run_id


def test_repair_refuses_a_negative_age(store: ResultsStore) -> None:
    with pytest.raises(ValueError, match="older_than"):
        store.repair(older_than=timedelta(hours=-1))


def test_repair_of_a_read_only_store_is_refused(store, run_id) -> None:
    with pytest.raises(StoreError, match="read-only"):
        ResultsStore(store.location, read_only=True).repair()


# -- writable before work --------------------------------------------------------------------------


def test_check_writable_passes_on_a_writable_store_and_leaves_nothing(store) -> None:
    before = sorted(Path(store.location).rglob("*"))
    store.check_writable()
    assert sorted(Path(store.location).rglob("*")) == before


def test_check_writable_refuses_a_store_opened_read_only(store) -> None:
    with pytest.raises(StoreError, match="read-only"):
        ResultsStore(store.location, read_only=True).check_writable()


def test_check_writable_names_a_store_the_file_system_refuses(store, monkeypatch) -> None:
    async def refuse(self, key, value):
        raise PermissionError(13, "Permission denied", str(Path(self.root) / key))

    monkeypatch.setattr(LocalStore, "set", refuse)
    with pytest.raises(StoreError, match=rf"{store.location}.*not writable.*Permission denied"):
        store.check_writable()
    with pytest.raises(StoreError, match=rf"{store.location}.*nothing was committed"):
        store.save(make_result(CHIP))


# -- the run index ---------------------------------------------------------------------------------


def count_document_reads(monkeypatch) -> list[str]:
    reads: list[str] = []
    original = LocalStore.get_sync

    def get_sync(self, key, *args, **kwargs):
        if key.endswith("/zarr.json") and key.count("/") == 2:
            reads.append(key)
        return original(self, key, *args, **kwargs)

    monkeypatch.setattr(LocalStore, "get_sync", get_sync)
    return reads


def test_history_reads_no_run_document_once_the_index_covers_the_runs(store, monkeypatch):
    runs = [store.save(make_result(CHIP, seed=seed)) for seed in range(COMPACT_AFTER + 2)]
    assert [info.run_id for info in store.history(CHIP)] == runs  # writes the index
    reads = count_document_reads(monkeypatch)
    assert [info.run_id for info in store.history(CHIP)] == runs
    assert reads == []
    newer = store.save(make_result(CHIP, seed=99))
    assert [info.run_id for info in store.history(CHIP)] == [*runs, newer]
    assert reads == [f"{CHIP}/{newer}/zarr.json"]


def test_a_damaged_index_is_reported_ignored_with_a_warning_and_rewritten(store, monkeypatch):
    runs = [store.save(make_result(CHIP, seed=seed)) for seed in range(COMPACT_AFTER)]
    store.history(CHIP)
    index = Path(store.location) / CHIP / INDEX_NAME
    data = bytearray(index.read_bytes())
    data[len(data) // 2] ^= 0x01
    index.write_bytes(bytes(data))
    report = store.verify()
    assert [problem.chip_id for problem in report.damaged_indexes] == [CHIP]
    assert not report.ok
    with pytest.warns(DamagedRunWarning, match="index"):
        assert [info.run_id for info in store.history(CHIP)] == runs
    store.repair()
    assert store.verify().ok
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [info.run_id for info in store.history(CHIP)] == runs


def test_the_index_lists_no_run_that_is_gone(store: ResultsStore) -> None:
    runs = [store.save(make_result(CHIP, seed=seed)) for seed in range(COMPACT_AFTER)]
    store.history(CHIP)
    shutil.rmtree(run_directory(store, CHIP, runs[3]))
    assert [info.run_id for info in store.history(CHIP)] == runs[:3] + runs[4:]


def test_a_read_only_store_uses_but_never_writes_the_index(store: ResultsStore) -> None:
    runs = [store.save(make_result(CHIP, seed=seed)) for seed in range(COMPACT_AFTER)]
    reader = ResultsStore(store.location, read_only=True, registry=KindRegistry())
    assert [info.run_id for info in reader.history(CHIP)] == runs
    assert not (Path(store.location) / CHIP / INDEX_NAME).exists()


def test_latest_finds_an_old_match_through_the_index_and_checks_its_document(store) -> None:
    old = store.save(make_result(CHIP, target="rare"))
    for seed in range(COMPACT_AFTER + 4):
        store.save(make_result(CHIP, target="common", seed=seed))
    store.history(CHIP)  # writes the index
    assert store.latest(CHIP, "fp-rare").run_id == old
    damage(store, old)
    with pytest.warns(DamagedRunWarning, match=old):
        assert store.latest(CHIP, "fp-rare") is None


@pytest.mark.parametrize("cut", [0, 10, 0.5])
def test_a_truncated_index_is_ignored_and_the_runs_still_listed(store, cut) -> None:
    runs = [store.save(make_result(CHIP, seed=seed)) for seed in range(COMPACT_AFTER)]
    store.history(CHIP)
    index = Path(store.location) / CHIP / INDEX_NAME
    data = index.read_bytes()
    index.write_bytes(data[: int(cut * len(data)) if isinstance(cut, float) else cut])
    reader = ResultsStore(store.location, read_only=True, registry=KindRegistry())
    with pytest.warns(DamagedRunWarning, match="index"):
        assert [info.run_id for info in reader.history(CHIP)] == runs
