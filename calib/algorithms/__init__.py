"""Search algorithms: each proposes codes and consumes observations; `Algorithm.run` drives."""

from calib.algorithms.base import (
    Algorithm,
    MultiParameterRoutine,
    RoutineFailed,
    SearchOutcome,
)
from calib.algorithms.bayesian import BayesianSearch
from calib.algorithms.binary_search import BinarySearch, LocalScan, NoiseRobustBinarySearch
from calib.algorithms.fitting import (
    FittingSearch,
    InverseModel,
    LinearModel,
    LmfitModel,
    curves_from_params,
)
from calib.algorithms.linear_search import LinearSearch
from calib.algorithms.prediction import (
    PolynomialModel,
    TransferCurves,
    TransferModel,
)

__all__ = [
    "Algorithm",
    "BayesianSearch",
    "BinarySearch",
    "FittingSearch",
    "InverseModel",
    "LinearModel",
    "LinearSearch",
    "LmfitModel",
    "LocalScan",
    "MultiParameterRoutine",
    "NoiseRobustBinarySearch",
    "PolynomialModel",
    "RoutineFailed",
    "SearchOutcome",
    "TransferCurves",
    "TransferModel",
    "curves_from_params",
]
