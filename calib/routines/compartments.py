"""Multi-compartment neurons: the inter-compartment time constant tau_icc of connected pairs.

A target states a layout (`compartments`: which neighbouring neurons are connected) and the
time constant of each connection (`tau_icc`, a scalar or per neuron; both neurons of a pair
ask the same). The chip connects a neuron to its right neighbour in the same row (i, i + 1) or
to the neuron below it (i, i + 256); the connection's conductance is the inter-compartment
conductance bias (`i_bias_icc`) of the pair's lower neuron, with a divide and a multiply
switch. tau_icc = C / g_icc, C the membranes' harmonic mean (for equal membranes, calix's C).

How it is measured (the method of calix multicomp/neuron_icc_bias.py): the two neurons of a
pair rest at leak potentials far apart, their leak conductance at its smallest, spiking and
synaptic inputs off; the connection closes at a known time (`CompartmentConnect`) and the MADC
records both neurons of the pair in one run. Their difference decays as exp(-t / tau_total)
with 1 / tau_total = 2 / tau_icc + 1 / tau_leak; with the leak this small its term is a
correction from the design figures. One recording covers every pair (a run per pair).

The divide or multiply switch is chosen per connection from the design figures, so that the
nominal code of the target sits in the lower half of the range (room for the mismatch), and
the bias is found by binary search. Neurons outside the layout are not touched.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from calib.algorithms import BinarySearch
from calib.core.failures import Failure, FailureKind
from calib.core.plans import (
    CalibrationContext,
    Plan,
    QuantitySpec,
    TextSettingSpec,
    register_plan,
)
from calib.core.routine import Routine
from calib.core.targets import NeuronTarget
from device_model.compartments import connection_error
from device_model.protocol import (
    CAPMEM_MAX,
    CELLS,
    COLUMNS_PER_HEMISPHERE,
    MADC_INVALID_TIME,
    N_NEURONS,
    Device,
)
from device_model.stimuli import CompartmentConnect

# -- layouts ----------------------------------------------------------------------------------

NAMED_LAYOUTS = {
    "right": "every even neuron with its right neighbour (0+1, 2+3, ..., 510+511)",
    "down": f"every neuron of the top row with the one below it (i + {COLUMNS_PER_HEMISPHERE})",
}


def layout_pairs(layout: str) -> np.ndarray:
    """(n_pairs, 2) connected neurons of a canonical layout, lower neuron first."""
    if layout == "right":
        even = np.arange(0, N_NEURONS, 2)
        return np.stack([even, even + 1], axis=1)
    if layout == "down":
        top = np.arange(COLUMNS_PER_HEMISPHERE)
        return np.stack([top, top + COLUMNS_PER_HEMISPHERE], axis=1)
    pairs = [tuple(int(n) for n in item.split("+")) for item in layout.split(",")]
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def _pairs_from(value: Any) -> list[tuple[int, int]]:
    if isinstance(value, str):
        items = [item.strip() for item in value.split(",") if item.strip()]
        pairs = []
        for item in items:
            parts = item.split("+")
            if len(parts) != 2 or not all(part.strip().isdigit() for part in parts):
                raise ValueError(
                    f"compartments: {item!r} is no connection; write 'a+b' (neurons a and b), "
                    f"separated by commas, or one of {', '.join(NAMED_LAYOUTS)}"
                )
            pairs.append((int(parts[0]), int(parts[1])))
        return pairs
    try:
        pairs = [tuple(pair) for pair in value]
    except TypeError:
        raise ValueError(
            f"compartments: expected text or a sequence of neuron pairs, got {type(value).__name__}"
        ) from None
    for pair in pairs:
        if len(pair) != 2 or not all(
            isinstance(n, int | np.integer) and not isinstance(n, bool) for n in pair
        ):
            raise ValueError(f"compartments: {pair!r} is no pair of neuron indices")
    return [(int(a), int(b)) for a, b in pairs]


def parse_layout(value: Any) -> str:
    """The canonical text of a compartment layout: a named layout, or 'a+b,c+d,...' with
    each pair's lower neuron first, sorted. ValueError naming the neurons of a connection the
    chip cannot make, or of a neuron in two connections."""
    if isinstance(value, str) and value.strip() in NAMED_LAYOUTS:
        return value.strip()
    pairs = _pairs_from(value)
    if not pairs:
        raise ValueError("compartments: the layout names no connection")
    for first, second in pairs:
        why = connection_error(first, second)
        if why is not None:
            raise ValueError(
                f"compartments: the chip cannot connect neurons {first} and {second}: {why}"
            )
    ordered = sorted((min(a, b), max(a, b)) for a, b in pairs)
    seen: dict[int, tuple[int, int]] = {}
    for pair in ordered:
        for neuron in pair:
            if neuron in seen and seen[neuron] != pair:
                other = seen[neuron]
                raise ValueError(
                    f"compartments: neuron {neuron} is in two connections "
                    f"({other[0]}+{other[1]} and {pair[0]}+{pair[1]}); a neuron takes part "
                    "in one connection (compartments of two neurons)"
                )
            seen[neuron] = pair
    return ",".join(f"{a}+{b}" for a, b in dict.fromkeys(ordered))


def layout_switches(pairs: np.ndarray) -> dict[str, np.ndarray]:
    """The connection switches that close `pairs` (each pair's lower neuron owns it)."""
    right = np.zeros(N_NEURONS, dtype=np.int64)
    down = np.zeros(N_NEURONS, dtype=np.int64)
    low, high = pairs.min(axis=1), pairs.max(axis=1)
    horizontal = high - low == 1
    right[low[horizontal]] = 1
    down[low[~horizontal]] = 1
    return {"icc_connect_right": right, "icc_connect_down": down}


# -- design figures ---------------------------------------------------------------------------

NOMINAL_ICC_PER_CODE = 6e-9
"""Design inter-compartment conductance per bias code without switches (S)."""
NOMINAL_ICC_SATURATION = 4000.0
SWITCH_FACTORS = {"icc_divide": 1 / 8, "": 1.0, "icc_multiply": 8.0}
"""The conductance switches' design factors, tried in this order."""
MODE_CEILING_CODE = 450
"""The first switch setting whose nominal code for the target lies below this is taken: up to
a gain of about 0.45 (3 sigma of the mismatch) still reaches the target in range."""
UNIT_CAPACITANCE = 36e-15
"""Design capacitance of one membrane capacitance unit (F)."""
INTRINSIC_CAPACITANCE = 0.15e-12
"""Design capacitance of a membrane beside its units (F)."""


def nominal_code(tau: ArrayLike, capacitance_units: int, factor: float) -> np.ndarray:
    """Bias code of a nominal circuit for tau_icc `tau` with the switch factor `factor`."""
    capacitance = UNIT_CAPACITANCE * capacitance_units + INTRINSIC_CAPACITANCE
    per_code = capacitance / np.asarray(tau, float) / (factor * NOMINAL_ICC_PER_CODE)
    # g = G c / (1 + c / s)  <=>  c = x / (1 - x / s) for x = g / G
    with np.errstate(divide="ignore", invalid="ignore"):
        code = per_code / (1 - per_code / NOMINAL_ICC_SATURATION)
    return np.where(per_code < NOMINAL_ICC_SATURATION, code, np.inf)


def switch_modes(tau: ArrayLike, capacitance_units: int) -> dict[str, np.ndarray]:
    """Per neuron, the divide and multiply switches for a tau_icc target (`MODE_CEILING_CODE`)."""
    tau = np.broadcast_to(np.asarray(tau, float), (N_NEURONS,))
    chosen = np.full(N_NEURONS, "icc_multiply", dtype=object)
    for name in reversed(list(SWITCH_FACTORS)):
        fits = nominal_code(tau, capacitance_units, SWITCH_FACTORS[name]) < MODE_CEILING_CODE
        chosen = np.where(fits, name, chosen)
    return {
        "icc_divide": (chosen == "icc_divide").astype(np.int64),
        "icc_multiply": (chosen == "icc_multiply").astype(np.int64),
    }


# -- the routine ------------------------------------------------------------------------------

CONNECT_TIME = MADC_INVALID_TIME + 2e-6
"""The connection closes this long after the recording starts (after the MADC's invalid
start, with 2 us of both resting potentials before it)."""
LEAK_CODES = (500, 800)
"""v_leak of a pair's lower and upper neuron while measured: about 0.5 V apart, 300 MADC LSB
of difference to decay."""
DECAY_SPAN = 12.0
"""The recording lasts this many expected difference time constants after the connection."""
SETTLED_FROM = 8.0
"""Samples from this many expected difference time constants on give the settled difference."""
MIN_DECAY_RECORD = 4e-6
"""At least this long after the connection (enough settled samples for a fast pair)."""
MADC_USABLE = (120.0, 1000.0)
"""MADC codes between the membrane's rails (0 V reads about 106, the top clips at 1023): a pair
with a neuron resting outside cannot be measured (NaN, a failed measurement)."""
FIT_FLOOR = 0.05
"""Samples whose remaining difference fell below this fraction are not fitted (noise)."""
FAST_TARGET = 1e-6
FAST_REPEATS = 4
"""Recordings averaged when some target lies below FAST_TARGET: a fast decay spans few MADC
samples (one every 34 ns)."""


class InterCompartmentTime(Routine):
    """tau_icc of every connected pair, set by the pair's lower neuron's i_bias_icc."""

    name = "tau_icc"
    parameter = "i_bias_icc"
    inverted = True
    kept_settings = ("icc_divide", "icc_multiply")
    """The conductance switches belong to the calibrated configuration. The connections do
    too, but stay open while the chip is calibrated and verified (every other quantity
    describes a neuron on its own): the plan closes them last."""

    def __init__(self, target: ArrayLike, layout: str, capacitance_units: int) -> None:
        self.pairs = layout_pairs(layout)
        self.connected = np.zeros(N_NEURONS, dtype=bool)
        self.connected[self.pairs.reshape(-1)] = True
        goal = np.broadcast_to(np.asarray(target, float), (N_NEURONS,))
        self.target = np.where(self.connected, goal, np.nan)
        self.capacitance_units = capacitance_units
        self.modes = switch_modes(np.where(self.connected, goal, 1e-6), capacitance_units)
        for cell in self.modes:
            self.modes[cell] = np.where(self.connected, self.modes[cell], 0)
        self.expected = goal[self.pairs[:, 0]] / 2
        decay = max(DECAY_SPAN * float(self.expected.max()), MIN_DECAY_RECORD)
        self.duration = CONNECT_TIME + decay
        self.repeats = FAST_REPEATS if float(goal[self.connected].min()) < FAST_TARGET else 1

    def measurement_settings(self, device: Device) -> dict[str, ArrayLike]:
        v_leak = device.read_settings(["v_leak"])["v_leak"].copy()
        v_leak[self.pairs[:, 0]], v_leak[self.pairs[:, 1]] = LEAK_CODES
        return {
            "threshold_enable": 0,
            "reset_hold": 0,
            "syn_exc_enable": 0,
            "syn_inh_enable": 0,
            "adaptation_enable": 0,
            "exponential_enable": 0,
            "i_bias_leak": 0,
            "leak_divide": 1,
            "leak_multiply": 0,
            "v_leak": v_leak,
            **layout_switches(self.pairs),
            **self.modes,
        }

    def measure(self, device: Device) -> np.ndarray:
        order = self.pairs.reshape(-1)
        stimulus = CompartmentConnect(CONNECT_TIME)
        codes = np.zeros(0)
        for _ in range(self.repeats):
            trace = device.record_madc(order, self.duration, stimulus)
            codes = codes + trace.codes.astype(float) if codes.size else trace.codes.astype(float)
        codes = codes / self.repeats
        difference = codes[0::2] - codes[1::2]
        before = trace.valid & (trace.times < CONNECT_TIME)
        resting = codes[:, before].mean(axis=1)
        usable = (resting > MADC_USABLE[0]) & (resting < MADC_USABLE[1])
        usable = usable[0::2] & usable[1::2]
        rate, settled = decay_rate(
            difference, trace.times, trace.valid, CONNECT_TIME, self.expected
        )
        # The leak's share of the rate is the settled fraction of the difference: for equal
        # compartments rate = (2 g_icc + g_leak) / C and settled = g_leak / (g_leak + 2 g_icc).
        icc_rate = rate * (1 - settled) / 2
        with np.errstate(divide="ignore"):
            tau = np.where(icc_rate > 0, 1 / np.where(icc_rate > 0, icc_rate, 1), np.inf)
        tau = np.where(np.isfinite(rate) & usable, tau, np.nan)
        out = np.full(N_NEURONS, np.nan)
        out[self.pairs[:, 0]] = tau
        out[self.pairs[:, 1]] = tau
        return out


def decay_rate(
    difference: np.ndarray,
    times: np.ndarray,
    valid: np.ndarray,
    start: float,
    expected: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(n,) decay rate (1/s) and settled fraction (end level / start level) of traces (n, T)
    that hold a level until `start`, then relax exponentially to another; `expected` (n,) is
    the time constant they were recorded for.

    The start level is the mean before `start`, the end level the mean from SETTLED_FROM
    expected time constants on; the rate is the weighted least-squares slope of the log of the
    remaining fraction, through the origin at `start` (weights: the fraction squared, the
    inverse variance of its log). A recording that did not settle reads a slower decay than
    it has, never a faster one than the target, so a search still moves the right way.
    """
    since = times[None, :] - start
    before = valid[None, :] & (since < 0)
    settled = since >= SETTLED_FROM * expected[:, None]
    settled = np.where(settled.any(axis=1)[:, None], settled, since >= 0.75 * since.max())
    start_level = (difference * before).sum(axis=1) / before.sum(axis=1)
    end_level = (difference * settled).sum(axis=1) / settled.sum(axis=1)
    span = start_level - end_level
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = (difference - end_level[:, None]) / span[:, None]
        used = (since > 0) & ~settled & (fraction > FIT_FLOOR)
        weight = np.where(used, fraction**2, 0.0)
        log = np.log(np.where(used, fraction, 1.0))
        rate = -(weight * since * log).sum(axis=1) / (weight * since**2).sum(axis=1)
        settled_fraction = end_level / start_level
    return np.where(np.isfinite(rate), rate, np.nan), settled_fraction


# -- plan -------------------------------------------------------------------------------------

LAYOUT = TextSettingSpec(
    "compartments",
    0,
    N_NEURONS - 1,
    unit="neuron pairs",
    description="connected neurons: 'a+b,c+d' (right neighbours i+1 in a row, or i+256 "
    f"below), or {' / '.join(NAMED_LAYOUTS)}; needs tau_icc",
    parse=parse_layout,
)


def _asks(target: NeuronTarget) -> bool:
    return target.tau_icc is not None or target.compartments is not None


def check_layout_target(target: NeuronTarget) -> None:
    """tau_icc and the layout come together; a per-neuron tau_icc asks one value per pair."""
    if target.compartments is None:
        raise ValueError(
            "tau_icc needs a compartment layout: set compartments (e.g. 'right', 'down' or "
            "'0+1,2+3')"
        )
    if target.tau_icc is None:
        raise ValueError(f"compartments = {target.compartments!r} needs a tau_icc target")
    pairs = layout_pairs(target.compartments)
    tau = np.broadcast_to(np.asarray(target.tau_icc, float), (N_NEURONS,))
    differ = np.flatnonzero(tau[pairs[:, 0]] != tau[pairs[:, 1]])
    if differ.size:
        a, b = (int(n) for n in pairs[differ[0]])
        raise ValueError(
            f"tau_icc differs within the connection {a}+{b} ({tau[a] * 1e6:g} and "
            f"{tau[b] * 1e6:g} µs; {differ.size} pairs in all): a connection has one tau_icc"
        )


def _routine(context: CalibrationContext) -> InterCompartmentTime:
    target = context.target
    return InterCompartmentTime(
        context.goals["tau_icc"], target.compartments, target.membrane_capacitance
    )


def _calibrate(context: CalibrationContext, plan: Plan) -> None:
    """Search the pairs' biases; the partner of a pair keeps its owner's code (it is not
    used) and neurons outside the layout keep the cell's default. The connections close
    after the verification (`close_connections`)."""
    routine = _routine(context)
    context.search(plan, routine, routine.target)
    codes = np.asarray(context.codes["i_bias_icc"]).copy()
    pairs = routine.pairs
    codes[pairs[:, 1]] = codes[pairs[:, 0]]
    codes[~routine.connected] = CELLS["i_bias_icc"].default
    context.write({"i_bias_icc": codes})
    context.codes.update({cell: codes.copy() for cell, codes in routine.modes.items()})


def close_connections(context: CalibrationContext) -> None:
    """The layout's connections closed on the device: the calibrated configuration."""
    context.write(layout_switches(layout_pairs(context.target.compartments)))


def _judge(context: CalibrationContext, achieved: dict[str, np.ndarray]) -> list[Failure]:
    """Each connected neuron against its pair's tau_icc: a failed measurement, a target
    beyond the range its switches give (measured at both ends of the bias), or a miss."""
    values = achieved.get("tau_icc")
    if values is None:
        return []
    routine = _routine(context)
    goal, connected = routine.target, routine.connected
    unit = "s"
    tolerance = TAU_ICC.tolerance_for(np.where(connected, goal, 0.0))
    failed = connected & np.isnan(values)
    miss = connected & ~failed & ~(np.abs(values - goal) <= tolerance)
    failures = [
        Failure(int(n), "tau_icc", FailureKind.MEASUREMENT_FAILED, target=float(goal[n]), unit=unit)
        for n in np.flatnonzero(failed)
    ]
    unreachable = np.zeros(N_NEURONS, dtype=bool)
    if miss.any():
        low, high = _range(context, routine)
        unreachable = miss & ((goal < low) | (goal > high))
        failures += [
            Failure(
                int(n),
                "tau_icc",
                FailureKind.UNREACHABLE,
                target=float(goal[n]),
                unit=unit,
                note=f"{goal[n] * 1e6:.3g} µs outside this neuron's range "
                f"{low[n] * 1e6:.3g}..{high[n] * 1e6:.3g} µs",
            )
            for n in np.flatnonzero(unreachable)
        ]
    failures += [
        Failure(
            int(n),
            "tau_icc",
            FailureKind.OUT_OF_TOLERANCE,
            value=float(values[n]),
            target=float(goal[n]),
            tolerance=float(tolerance[n]),
            unit=unit,
        )
        for n in np.flatnonzero(miss & ~unreachable)
    ]
    return failures


def _range(context: CalibrationContext, routine: InterCompartmentTime) -> tuple[np.ndarray, ...]:
    """(shortest, longest) tau_icc per neuron: the bias at the top and at the bottom."""
    device = context.device
    saved = device.read_settings([routine.parameter])[routine.parameter]
    routine.prelude(device)
    try:
        ends = []
        for code in (CAPMEM_MAX, routine.parameter_range.low):
            routine.apply(device, np.full(N_NEURONS, code))
            ends.append(routine.measure(device))
    finally:
        routine.apply(device, saved)
        routine.postlude(device)
    return ends[0], ends[1]


TAU_ICC = QuantitySpec(
    "tau_icc",
    "s",
    0.1e-6,
    30e-6,
    0.05,
    relative=True,
    default=None,
    description="inter-compartment time constant C / g_icc of each connection of the "
    "compartments layout (both neurons of a pair)",
    long_name="inter-compartment time constant",
)

INTER_COMPARTMENT = register_plan(
    Plan(
        name="tau_icc",
        rank=101,
        display_rank=12.5,
        quantities=(TAU_ICC,),
        settings=(LAYOUT,),
        cells=("i_bias_icc", "icc_connect_right", "icc_connect_down", "icc_divide", "icc_multiply"),
        routine=_routine,
        action=_calibrate,
        algorithm=lambda target: BinarySearch(),
        after=("leak_final",),
        judge=_judge,
        applies=_asks,
        extra={
            "configure_after_verify": close_connections,
            "open_while_checked": ("icc_connect_right", "icc_connect_down"),
            "check_target": check_layout_target,
            "judged_by_plan": True,
            "bounds_are_failures": False,
        },
    )
)
