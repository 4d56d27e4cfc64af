"""Search algorithms: each proposes codes and consumes observations; `Algorithm.run` drives."""

from calib.algorithms.base import (
    Algorithm,
    MultiParameterRoutine,
    RoutineFailed,
    SearchOutcome,
)
from calib.algorithms.binary_search import BinarySearch, NoiseRobustBinarySearch

__all__ = [
    "Algorithm",
    "BinarySearch",
    "MultiParameterRoutine",
    "NoiseRobustBinarySearch",
    "RoutineFailed",
    "SearchOutcome",
]
