"""results_store: a zarr-backed, append-only store of calibration results, one group per chip.

Results enter as plain data (`to_record() -> (arrays, attrs)`, attrs[ARRAY_META_KEY] giving
every array's dims, units and long name) and come back decoded by the function declared for
their kind (entry point group 'results_store.kinds', or `register_kind`), or as a
`StoredRecord`. This package knows no result classes. Layout, schema versions, integrity and
the index: docs/results_store.md.
"""

from results_store.errors import (
    CorruptRunError,
    DamagedRunWarning,
    DecodeError,
    RunNotFoundError,
    StoreError,
    StoreNotFoundError,
    UnsupportedSchemaError,
)
from results_store.export import DEFAULT_DIMS, history_to_xarray, run_to_json, run_to_xarray
from results_store.ids import CHIP_ID_PATTERN, RUN_ID_PATTERN, check_chip_id
from results_store.maintenance import RepairReport, RunProblem, VerifyReport
from results_store.records import (
    ARRAY_META_KEY,
    SCHEMA_VERSION,
    SUPPORTED_SCHEMA_VERSIONS,
    ArrayMeta,
    ArraySpec,
    RunInfo,
    StoredRecord,
    SupportsFingerprint,
    SupportsRecord,
)
from results_store.registry import (
    DEFAULT_REGISTRY,
    ENTRY_POINT_GROUP,
    KindRegistry,
    register_kind,
    unregister_kind,
)
from results_store.store import ResultsStore

__all__ = [
    "ARRAY_META_KEY",
    "CHIP_ID_PATTERN",
    "DEFAULT_DIMS",
    "DEFAULT_REGISTRY",
    "ENTRY_POINT_GROUP",
    "RUN_ID_PATTERN",
    "SCHEMA_VERSION",
    "SUPPORTED_SCHEMA_VERSIONS",
    "ArrayMeta",
    "ArraySpec",
    "CorruptRunError",
    "DamagedRunWarning",
    "DecodeError",
    "KindRegistry",
    "RepairReport",
    "ResultsStore",
    "RunInfo",
    "RunNotFoundError",
    "RunProblem",
    "StoreError",
    "StoreNotFoundError",
    "StoredRecord",
    "SupportsFingerprint",
    "SupportsRecord",
    "UnsupportedSchemaError",
    "VerifyReport",
    "check_chip_id",
    "history_to_xarray",
    "register_kind",
    "run_to_json",
    "run_to_xarray",
    "unregister_kind",
]
