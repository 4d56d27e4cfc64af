"""One retry policy for every device call a calibration, its verification and a check make.

`RetryingDevice` wraps a device: a transient run failure is retried with a short exponential
backoff, a persistent one raises `DeviceRunFailed` naming the step and the chip. Retries are
counted per step for the result's provenance.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from calib.core.routine import RoutineFailed
from device_model.protocol import Device, DeviceError, DeviceStats, TransientRunError

T = TypeVar("T")

MAX_ATTEMPTS = 5
"""Tries of one device call before a transient failure counts as persistent."""
FIRST_BACKOFF = 0.001
"""Seconds before the first retry; doubled for each further one."""
MAX_BACKOFF = 0.5


class DeviceRunFailed(RoutineFailed, DeviceError):
    """A device call kept failing: the step and the chip are named."""


class RetryingDevice:
    """`device` with transient failures retried; every other attribute passes through."""

    def __init__(
        self,
        device: Device,
        *,
        attempts: int = MAX_ATTEMPTS,
        first_backoff: float = FIRST_BACKOFF,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.device: Device = device.device if isinstance(device, RetryingDevice) else device
        self.chip_id: str = device.chip_id
        self.n_neurons: int = device.n_neurons
        self.attempts = attempts
        self.first_backoff = first_backoff
        self.sleep = sleep
        self.step = "calibration"
        self.retries: dict[str, int] = {}
        """Step -> transient failures retried in it."""

    # -- the protocol ------------------------------------------------------------------------

    @property
    def stats(self) -> DeviceStats:
        return self.device.stats

    def write(self, settings: Mapping[str, Any]) -> None:
        self._call(self.device.write, settings)

    def read_settings(self, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        return self._call(self.device.read_settings, names)

    def read_cadc(self, *args: Any, **kwargs: Any) -> np.ndarray:
        return self._call(self.device.read_cadc, *args, **kwargs)

    def record_madc(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(self.device.record_madc, *args, **kwargs)

    def count_spikes(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(self.device.count_spikes, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.device, name)

    # -- the policy --------------------------------------------------------------------------

    def _call(self, action: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        backoff = self.first_backoff
        for attempt in range(1, self.attempts + 1):
            try:
                return action(*args, **kwargs)
            except TransientRunError as error:
                if attempt == self.attempts:
                    raise DeviceRunFailed(
                        f"chip {self.chip_id!r}, step {self.step!r}: device call "
                        f"{getattr(action, '__name__', 'call')} failed {attempt} times: {error}"
                    ) from error
                self.retries[self.step] = self.retries.get(self.step, 0) + 1
                self.sleep(backoff)
                backoff = min(2 * backoff, MAX_BACKOFF)
        raise AssertionError("unreachable")


def retrying(device: Device) -> RetryingDevice:
    """`device` under the retry policy (a device already wrapped is wrapped once)."""
    return device if isinstance(device, RetryingDevice) else RetryingDevice(device)
