"""The chip's converters: CADC (8 bit, one channel per neuron) and MADC (10 bit)."""

from __future__ import annotations

import numpy as np

from device_model import params as p
from device_model.protocol import CADC_MAX, MADC_INVALID_TIME, MADC_MAX, MADC_SAMPLE_RATE


def compress(raw: np.ndarray) -> np.ndarray:
    """The CADC's compressed top: linear up to the knee, then tanh towards 255."""
    knee, scale = p.CADC_COMPRESSION_KNEE, p.CADC_COMPRESSION_SCALE
    above = raw > knee
    if not above.any():
        return raw
    out = np.array(raw, copy=True)
    out[above] = knee + scale * np.tanh((out[above] - knee) / scale)
    return out


def cadc_ramp_count(
    volts: np.ndarray, values: dict[str, np.ndarray], channel_offset: np.ndarray
) -> np.ndarray:
    """Noise-free ramp count before compression: 20 + (V - V0) / lsb + channel offset."""
    return p.CADC_BASELINE + (volts - values["cadc_v0"]) / values["cadc_lsb"] + channel_offset


def cadc_continuous(
    volts: np.ndarray, values: dict[str, np.ndarray], channel_offset: np.ndarray
) -> np.ndarray:
    """Noise-free CADC reading (LSB), neither rounded nor clipped: the truth's unit."""
    return compress(cadc_ramp_count(volts, values, channel_offset)) + values["cadc_channel_offset"]


def cadc_codes(
    volts: np.ndarray,
    values: dict[str, np.ndarray],
    channel_offset: np.ndarray,
    samples: int,
    noise_lsb: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """uint8 codes (samples, n) of potentials `volts` ((n,) or (samples, n)).

    Read noise enters before the compressed top; the ramp count clips at 0..255, then the
    digital channel offset is added and the sum clips again. Single precision is ample here
    (codes are integers below 256) and halves the cost of the noise draws.
    """
    count = cadc_ramp_count(volts, values, channel_offset).astype(np.float32)
    shape = (samples, count.shape[-1])
    if noise_lsb > 0:
        count = count + np.float32(noise_lsb) * rng.standard_normal(shape, dtype=np.float32)
    else:
        count = np.broadcast_to(count, shape)
    count = np.clip(np.rint(compress(count)), 0, CADC_MAX)
    return np.clip(count + values["cadc_channel_offset"].astype(np.float32), 0, CADC_MAX).astype(
        np.uint8
    )


def madc_times(duration: float) -> np.ndarray:
    """Sample times of a recording of `duration` seconds."""
    count = max(int(np.floor(duration * MADC_SAMPLE_RATE + 1e-9)), 1)
    return np.arange(count) / MADC_SAMPLE_RATE


def madc_codes(
    volts: np.ndarray, times: np.ndarray, noise_lsb: float, rng: np.random.Generator
) -> np.ndarray:
    """uint16 codes (0..1023) of potentials (n, T); the samples before MADC_INVALID_TIME carry
    a start-up artefact. Single precision: codes are integers below 1024."""
    ideal = ((volts + p.MADC_OFFSET_VOLTS) / p.MADC_VOLTS_PER_LSB).astype(np.float32)
    artefact = p.MADC_GARBAGE_AMPLITUDE * np.sin(2 * np.pi * times / p.MADC_GARBAGE_PERIOD)
    ideal += np.where(times < MADC_INVALID_TIME, artefact, 0.0).astype(np.float32)
    if noise_lsb > 0:
        ideal += np.float32(noise_lsb) * rng.standard_normal(ideal.shape, dtype=np.float32)
    return np.clip(np.rint(ideal), 0, MADC_MAX).astype(np.uint16)
