"""results_store: a zarr-backed, append-only store of calibration results, one group per chip.

Results enter as plain data (`to_record() -> (arrays, attrs)`) and come back decoded by the
function registered for their kind, or as a `StoredRecord`. This package knows no result
classes; whoever defines one registers it with `register_kind`.
"""

from results_store.errors import (
    CorruptRunError,
    DecodeError,
    RunNotFoundError,
    StoreError,
    StoreNotFoundError,
    UnsupportedSchemaError,
)
from results_store.export import DEFAULT_DIMS, run_to_json, run_to_xarray
from results_store.ids import CHIP_ID_PATTERN, RUN_ID_PATTERN, check_chip_id
from results_store.records import (
    SCHEMA_VERSION,
    SUPPORTED_SCHEMA_VERSIONS,
    ArraySpec,
    RunInfo,
    StoredRecord,
    SupportsFingerprint,
    SupportsRecord,
)
from results_store.registry import DEFAULT_REGISTRY, KindRegistry, register_kind, unregister_kind
from results_store.store import ResultsStore

__all__ = [
    "CHIP_ID_PATTERN",
    "DEFAULT_DIMS",
    "DEFAULT_REGISTRY",
    "RUN_ID_PATTERN",
    "SCHEMA_VERSION",
    "SUPPORTED_SCHEMA_VERSIONS",
    "ArraySpec",
    "CorruptRunError",
    "DecodeError",
    "KindRegistry",
    "ResultsStore",
    "RunInfo",
    "RunNotFoundError",
    "StoreError",
    "StoreNotFoundError",
    "StoredRecord",
    "SupportsFingerprint",
    "SupportsRecord",
    "UnsupportedSchemaError",
    "check_chip_id",
    "register_kind",
    "run_to_json",
    "run_to_xarray",
    "unregister_kind",
]
