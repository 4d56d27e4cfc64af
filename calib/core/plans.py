"""Calibration plans: every calibrated quantity declared once, in its routine module.

A `QuantitySpec` says what a target field is: its unit, allowed range, tolerance, default and how
people read it. A `Plan` says how a calibration step runs: the routine it builds from the target,
its default algorithm, what must be calibrated before it, what it disturbs and how it is
verified. Plans register themselves in `PLANS` when their module is imported (`calib.routines`
imports every routine module); the target fields, the calibration sequence, partial
recalibration, verification, judging, the command line's flags and target-file keys, report
units and exports are all derived from the registered plans.

The registry fills itself on first use: a package names the modules that register its plans
with `PLANS.add_source(module)` (the `calib` package names `calib.routines`), and the first
read of the registry imports them. Importing `calib` therefore costs nothing until a plan, a
target field or a unit is asked for (the command line starts at once).

A plan with no quantities is an internal step (the CADC, the working point, the synaptic
references): it runs in the sequence but is no target field.

A plan belongs to one or more calibration modes (`Plan.modes`): "host" (the default: the host
drives every step and may use every readout) and "embedded" (the chip's embedded processor
drives it with the CADC and the spike counters only, docs/embedded.md). Two plans may declare
the same quantity when they share no mode.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import import_module
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np

    from calib.algorithms.base import Algorithm, SearchOutcome
    from calib.core.failures import Failure
    from calib.core.routine import Routine
    from calib.core.targets import NeuronTarget
    from device_model.protocol import Device


@dataclass(frozen=True)
class DisplayUnit:
    """How people read a quantity: stored values times `scale`, labelled `label`."""

    label: str
    scale: float = 1.0

    def __call__(self, value: Any) -> Any:
        """`value` (a number or an array) in this unit."""
        return value * self.scale

    def stored(self, value: Any) -> Any:
        """`value` in this unit back in the stored unit."""
        return value / self.scale


MICROSECONDS = DisplayUnit("µs", 1e6)
KILOHERTZ = DisplayUnit("kHz", 1e-3)
_DISPLAY_BY_UNIT = {"s": MICROSECONDS, "Hz": KILOHERTZ, "CADC LSB": DisplayUnit("LSB")}


@dataclass(frozen=True)
class QuantitySpec:
    """A target field: its unit, allowed target range, success tolerance and default."""

    name: str
    unit: str
    """Stored (SI or chip) unit: 's', 'Hz', 'CADC LSB', or a ratio such as 'g_leak'."""
    low: float
    high: float
    tolerance: float
    relative: bool
    """Whether `tolerance` is a fraction of the target (True) or absolute, in `unit` (False)."""
    default: float | None = None
    """Value of a target that does not set the field; None: not calibrated unless asked."""
    description: str = ""
    long_name: str = ""
    """A few words for plots and exports (CF `long_name`); the name when empty."""
    unset: str = "not calibrated"
    """What a target that leaves the field unset (None) gets."""
    alternative_to: tuple[str, ...] = ()
    """Fields this one replaces (e.g. a firing rate instead of a threshold potential): a target
    that sets this field leaves their defaults aside, and one that sets both is an error."""

    def __post_init__(self) -> None:
        if not self.low <= self.high:
            raise ValueError(f"quantity {self.name}: low {self.low} above high {self.high}")
        if self.default is not None and not self.low <= self.default <= self.high:
            raise ValueError(f"quantity {self.name}: default {self.default} outside its range")

    @property
    def optional(self) -> bool:
        return self.default is None

    @property
    def display(self) -> DisplayUnit:
        """The unit people read (µs for seconds, kHz for Hz, LSB for CADC LSB)."""
        return _DISPLAY_BY_UNIT.get(self.unit, DisplayUnit(self.unit))

    @property
    def label(self) -> str:
        """'tau_mem [µs]'."""
        return f"{self.name} [{self.display.label}]" if self.display.label else self.name

    def tolerance_for(self, target: np.ndarray) -> np.ndarray:
        import numpy as np

        target = np.asarray(target, dtype=float)
        if self.relative:
            return self.tolerance * np.abs(target)
        return np.full_like(target, self.tolerance, dtype=float)


@dataclass(frozen=True)
class SettingSpec:
    """A target field that is set, not calibrated: an integer code with its range."""

    name: str
    low: int
    high: int
    default: int
    unit: str = "code"
    description: str = ""

    def check(self, value: Any) -> int:
        import numpy as np  # building the command line does not load numpy

        if (
            isinstance(value, bool | np.bool_)
            or not isinstance(value, int | np.integer)
            or not (self.low <= int(value) <= self.high)
        ):
            raise ValueError(
                f"{self.name} = {value!r} is outside the allowed range "
                f"{self.low}..{self.high} (an integer)"
            )
        return int(value)


UNMEASURED_STATE = "unmeasured"
"""`CalibrationContext.state` key of {quantity: {neuron: why}}: where a plan's verification
reads NaN, the reason it knows, shown in the neuron's failure."""


class CalibrationContext(Protocol):
    """What a plan's callables see of a running calibration (`calib.sequences.session`)."""

    @property
    def device(self) -> Device: ...

    target: NeuronTarget
    goals: dict[str, np.ndarray]
    """Quantity -> per-neuron target value (the target's fields that are set)."""
    codes: dict[str, np.ndarray]
    options: Any
    models: dict[str, dict[str, np.ndarray]]
    state: dict[str, Any]
    """Plan-owned scratch space: what one step leaves for a later one (e.g. AdEx guesses)."""

    def write(self, settings: Mapping[str, Any]) -> None: ...

    def search(
        self, plan: Plan, routine: Routine, goal: np.ndarray, *, record_before: bool | None = None
    ) -> SearchOutcome: ...

    def record(
        self,
        plan: Plan,
        routine: Routine,
        outcome: SearchOutcome,
        *,
        record_before: bool | None = None,
        write: bool = False,
    ) -> None: ...

    @property
    def overrides(self) -> dict[str, Algorithm]: ...

    def algorithm(self, routine_name: str, plan: Plan) -> Algorithm: ...

    def measure(self, routine: Routine) -> np.ndarray: ...


RoutineFactory = Callable[["CalibrationContext"], "Routine"]
GoalFunction = Callable[["CalibrationContext"], "np.ndarray"]
StepAction = Callable[["CalibrationContext", "Plan"], None]
Verifier = Callable[["CalibrationContext"], "dict[str, np.ndarray]"]
Judge = Callable[["CalibrationContext", "dict[str, np.ndarray]"], list["Failure"]]


def always(target: NeuronTarget) -> bool:
    return True


HOST = "host"
EMBEDDED = "embedded"
MODES = (HOST, EMBEDDED)
"""Calibration modes: the host in the loop, or the embedded processor alone."""


def check_mode(mode: str) -> str:
    """`mode` if it is a known calibration mode, else ValueError naming the known ones."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


@dataclass(frozen=True)
class Plan:
    """One step of a calibration, and the target quantities it calibrates.

    A step either searches (`routine` builds the routine, the algorithm drives it to `goal`)
    or runs `action` (a step that computes or configures instead of searching). After the
    sequence every plan with quantities is verified (`verify`, by default the routine measured
    once) and judged: tolerance, range bounds, and `judge` for what only the plan knows.
    """

    name: str
    rank: float
    """Position among the steps that `after` leaves unordered (lower runs first)."""
    quantities: tuple[QuantitySpec, ...] = ()
    settings: tuple[SettingSpec, ...] = ()
    """Target fields the step uses as they are (e.g. the membrane capacitance)."""
    cells: tuple[str, ...] = ()
    """The cells the step sets (the first is the one a single-cell oracle scans)."""
    routine: RoutineFactory | None = None
    goal: GoalFunction | None = None
    """The search's goal; default: the target of the plan's one quantity."""
    algorithm: Callable[[NeuronTarget], Algorithm] | None = None
    """Default algorithm for a target (a factory: every calibration gets its own instance)."""
    rerun_algorithm: Callable[[NeuronTarget], Algorithm] | None = None
    """Algorithm for a routine the calibration has searched before (a disturbed step run
    again, a final pass): it may start from the present codes. Default: `algorithm`."""
    action: StepAction | None = None
    after: tuple[str, ...] = ()
    """Plans that must have run first (when they run at all)."""
    disturbs: tuple[str, ...] = ()
    """Plans whose result this step moves: run again after it (partial recalibration takes
    them along)."""
    verify: Verifier | None = None
    judge: Judge | None = None
    applies: Callable[[NeuronTarget], bool] = always
    """Whether the step runs for a target (optional quantities: only when asked)."""
    records: str | None = None
    """The quantity whose uncalibrated spread and bound flags this step records, when it is
    not the plan's own (a final re-run of the leak under another name)."""
    record_before: bool = True
    """Measure the uncalibrated spread (every neuron at the median code) after the search."""
    lif_part: bool = True
    """Verified with the AdEx parts switched off (it describes the LIF neuron)."""
    recalibratable: bool = True
    """Whether `recalibrate` may name it (internal steps follow what they serve)."""
    display_rank: float | None = None
    """Position of its quantities in tables and target listings (default: `rank`)."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    modes: tuple[str, ...] = (HOST,)
    """Calibration modes the plan runs in (`MODES`)."""

    def __post_init__(self) -> None:
        if self.action is None and self.routine is None:
            raise ValueError(f"plan {self.name}: give a routine to search or an action")
        for mode in self.modes:
            if mode not in MODES:
                raise ValueError(
                    f"plan {self.name}: unknown mode {mode!r}; known: {', '.join(MODES)}"
                )

    @property
    def quantity_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.quantities)

    @property
    def recorded_as(self) -> str:
        return self.records or self.name

    def goal_for(self, context: CalibrationContext) -> np.ndarray:
        if self.goal is not None:
            return self.goal(context)
        if len(self.quantities) != 1:
            raise ValueError(f"plan {self.name}: a search over several quantities needs a goal")
        return context.goals[self.quantities[0].name]


class PlanRegistry:
    """The registered plans, by name, in rank order."""

    def __init__(self) -> None:
        self._plans: dict[str, Plan] = {}
        self._sources: list[str] = []
        self._loading = False

    def add_source(self, module: str) -> None:
        """Import `module` (which registers plans) before the registry is first read."""
        if module not in self._sources:
            self._sources.append(module)

    def _load(self) -> None:
        """Import every source module not imported yet (each registers its plans)."""
        if self._loading or not self._sources:
            return
        self._loading = True
        try:
            while self._sources:
                import_module(self._sources[0])
                self._sources.pop(0)
        finally:
            self._loading = False

    def register(self, plan: Plan) -> Plan:
        """Add `plan`; a second plan of the same name or quantity is a ValueError."""
        self._load()
        if plan.name in self._plans and self._plans[plan.name] != plan:
            raise ValueError(f"a plan named {plan.name!r} is registered already")
        taken = {
            name: other.name
            for other in self._plans.values()
            if other.name != plan.name and set(other.modes) & set(plan.modes)
            for name in other.quantity_names
        }
        for name in plan.quantity_names:
            if name in taken:
                raise ValueError(
                    f"quantity {name!r} of plan {plan.name!r} is declared by "
                    f"plan {taken[name]!r} already"
                )
        known = {
            spec.name: spec
            for other in self._plans.values()
            if other.name != plan.name
            for spec in other.quantities
        }
        for spec in plan.quantities:
            if spec.name in known and known[spec.name] != spec:
                raise ValueError(
                    f"quantity {spec.name!r} of plan {plan.name!r} differs from "
                    "its declaration in another mode"
                )
        self._plans[plan.name] = plan
        return plan

    def unregister(self, name: str) -> None:
        self._plans.pop(name, None)

    def __getitem__(self, name: str) -> Plan:
        self._load()
        try:
            return self._plans[name]
        except KeyError:
            raise KeyError(f"no plan named {name!r}; known: {', '.join(self._plans)}") from None

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._plans

    def __iter__(self) -> Iterator[Plan]:
        self._load()
        return iter(sorted(self._plans.values(), key=lambda plan: plan.rank))

    def quantities(self) -> dict[str, QuantitySpec]:
        """Every target field, in display order (potentials first, then times, ...)."""
        plans = sorted(
            self, key=lambda plan: plan.rank if plan.display_rank is None else plan.display_rank
        )
        specs: dict[str, QuantitySpec] = {}
        for plan in plans:
            for spec in plan.quantities:
                specs.setdefault(spec.name, spec)
        return specs

    def alternatives(self) -> dict[str, set[str]]:
        """Field -> the fields it excludes (`QuantitySpec.alternative_to`, both ways)."""
        pairs: dict[str, set[str]] = {}
        for spec in self.quantities().values():
            for other in spec.alternative_to:
                pairs.setdefault(spec.name, set()).add(other)
                pairs.setdefault(other, set()).add(spec.name)
        return pairs

    def settings(self) -> dict[str, SettingSpec]:
        """Every target field that is set, not calibrated."""
        return {spec.name: spec for plan in self for spec in plan.settings}

    def plan_of(self, quantity: str, mode: str = HOST) -> Plan:
        """The plan that declares `quantity` in `mode`."""
        for plan in self:
            if quantity in plan.quantity_names and mode in plan.modes:
                return plan
        raise KeyError(f"no plan declares quantity {quantity!r}")

    @contextmanager
    def registered(self, *plans: Plan) -> Iterator[None]:
        """`plans` registered for the duration (tests, experiments with their own steps)."""
        for plan in plans:
            self.register(plan)
        try:
            yield
        finally:
            for plan in plans:
                self.unregister(plan.name)


PLANS = PlanRegistry()
"""Every plan of this installation; `calib.routines` fills it, imported on first use."""


def register_plan(plan: Plan) -> Plan:
    """Register `plan` in `PLANS` (call it at the bottom of the routine module)."""
    return PLANS.register(plan)


def quantity_spec(name: str) -> QuantitySpec:
    """The spec of a registered quantity; ValueError naming the known ones for another name."""
    specs = PLANS.quantities()
    if name not in specs:
        raise ValueError(f"unknown quantity {name!r}; known: {', '.join(specs)}")
    return specs[name]


def ordered_quantities(names: Iterable[str]) -> list[str]:
    """Registered quantities among `names` in plan order, then any others alphabetically."""
    names = set(names)
    order = list(PLANS.quantities())
    return [name for name in order if name in names] + sorted(names - set(order))


@dataclass(frozen=True)
class TextSettingSpec(SettingSpec):
    """A target field that is set, not calibrated, written as text (e.g. a layout of
    connected neurons); default None: left out of a target that does not set it, so such a
    target keeps its fingerprint. `parse` checks a value and returns its canonical text
    (ValueError naming the field otherwise)."""

    default: Any = None
    unit: str = "text"
    parse: Callable[[Any], str] | None = None

    def check(self, value: Any) -> Any:
        if value is None:
            return None
        if self.parse is None:
            if not isinstance(value, str):
                raise ValueError(f"{self.name}: expected text, got {type(value).__name__}")
            return value
        return self.parse(value)
