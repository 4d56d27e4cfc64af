"""Calibration targets for the neurons of a NIR graph.

`targets_from_nir` reads a graph in the Neuromorphic Intermediate Representation (NIR), places
its neurons on chip neurons and turns their parameters into a `NeuronTarget`:

- times: NIR time constants are model (biological) seconds; hardware time = model / speedup.
  `tau` / `tau_mem` give `tau_mem`; `tau_syn` gives both `tau_syn_exc` and `tau_syn_inh`.
- potentials: one affine `VoltageMap` for the whole graph (fitted, or given) takes v_leak,
  v_reset and v_threshold to CADC LSB; a single map keeps the nodes' potentials comparable.
- what the chip cannot express is reported, never dropped silently: NIR parameters with no
  neuron-target equivalent (r, w_in, biases of Affine/Conv nodes) become notes on the result;
  neutral values (r = 1, w_in = 1, bias = 0) change nothing and get no note.
- approximations are stated in the notes:
  * IF has no leak; a chip neuron always leaks. IF neurons get the longest allowed tau_mem and
    a leak potential equal to their reset, so they integrate faithfully only over times well
    below that tau_mem.
  * LIF, IF and LI have instantaneous (delta) synapses; the chip's synaptic input always
    filters. Their tau_syn is the shortest allowed.
  * LI does not spike: its threshold is the top of the allowed range, its reset its leak.
  * NIR neurons have no refractory period; graph neurons keep the default refractory_time.
- infeasible graphs raise `NirMappingError` (a ValueError) naming every offending parameter;
  `clip=True` clips instead and warns with every clipped value.

Neurons are placed in graph order (the order of `graph.nodes`, nested graphs flattened with
dotted names, each node's neurons in C order) on chip neurons 0, 1, 2, ...; the other chip
neurons keep the default target. `calibrate(device, mapping.target)` calibrates the result.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nir
import numpy as np

from calib.core.plans import PLANS
from calib.core.targets import NeuronTarget
from calib.frontends.model_units import DEFAULT_SPEEDUP, VoltageMap, check_speedup
from device_model.protocol import N_NEURONS

TIME_FIELDS: dict[str, dict[str, tuple[str, ...]]] = {
    "LIF": {"tau": ("tau_mem",)},
    "CubaLIF": {"tau_mem": ("tau_mem",), "tau_syn": ("tau_syn_exc", "tau_syn_inh")},
    "IF": {},
    "LI": {"tau": ("tau_mem",)},
    "CubaLI": {"tau_mem": ("tau_mem",), "tau_syn": ("tau_syn_exc", "tau_syn_inh")},
}
"""NIR neuron type -> its time-constant fields -> the target quantities they set."""

POTENTIAL_FIELDS: dict[str, dict[str, str]] = {
    "LIF": {"v_leak": "leak", "v_reset": "reset", "v_threshold": "threshold"},
    "CubaLIF": {"v_leak": "leak", "v_reset": "reset", "v_threshold": "threshold"},
    "IF": {"v_reset": "reset", "v_threshold": "threshold"},
    "LI": {"v_leak": "leak"},
    "CubaLI": {"v_leak": "leak"},
}
"""NIR neuron type -> its potential fields -> the target quantity they set."""

SUPPORTED_TYPES = tuple(TIME_FIELDS)
UNSUPPORTED_NEURON_TYPES = {
    "I": "an integrator without leak, threshold or reset",
    "Threshold": "a stateless spiking nonlinearity",
}
"""NIR nodes that compute like neurons but have no chip-neuron counterpart here."""

NEUTRAL_FIELDS = {"r": 1.0, "w_in": 1.0}
"""NIR input-scaling fields with no neuron-target equivalent, and their neutral value."""

TIME_QUANTITIES = ("tau_mem", "tau_syn_exc", "tau_syn_inh")
GAP_PAIRS = (("threshold", "leak"), ("threshold", "reset"))
"""Potential pairs whose order matters; a gap below both tolerances may flip in calibration."""


class NirMappingError(ValueError):
    """A NIR graph that cannot be mapped onto the chip, and why.

    `problems` lists one line per offending parameter; `feasible_speedups` is the (low, high)
    speed-up range that would make every time constant of the graph fit, None when no single
    speed-up does or when the problem is not a time constant.
    """

    def __init__(
        self,
        message: str,
        problems: tuple[str, ...] = (),
        feasible_speedups: tuple[float, float] | None = None,
    ) -> None:
        super().__init__(message)
        self.problems = problems
        self.feasible_speedups = feasible_speedups


@dataclass(frozen=True, eq=False)
class Placement:
    """Where each graph neuron sits: entry i is the i-th graph neuron in graph order."""

    chip_neuron: np.ndarray
    """Chip neuron index of each graph neuron, shape (neuron_count,)."""
    node: tuple[str, ...]
    """Name of the (flattened) node each graph neuron comes from."""
    index_in_node: np.ndarray
    """Flat (C-order) index of each graph neuron within its node's shape."""

    def neurons_of(self, node_name: str) -> np.ndarray:
        """Chip neurons of one node, in the node's C order."""
        if node_name not in self.node:
            raise ValueError(
                f"node {node_name!r} is not a placed neuron node; "
                f"placed: {', '.join(sorted(set(self.node)))}"
            )
        return self.chip_neuron[np.asarray(self.node) == node_name]

    def to_dict(self) -> dict[str, Any]:
        return {
            "chip_neuron": self.chip_neuron.tolist(),
            "node": list(self.node),
            "index_in_node": self.index_in_node.tolist(),
        }


@dataclass(frozen=True)
class NodeSummary:
    """One neuron node of the graph as mapped."""

    name: str
    type: str
    count: int
    chip_neurons: tuple[int, int]
    """First chip neuron and one past the last (a contiguous block)."""
    shape: tuple[int, ...]
    hardware_times: dict[str, tuple[float, float]]
    """tau_mem, tau_syn_exc, tau_syn_inh: (min, max) over the node's neurons, hardware seconds."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "count": self.count,
            "chip_neurons": list(self.chip_neurons),
            "shape": list(self.shape),
            "hardware_times": {k: list(v) for k, v in self.hardware_times.items()},
        }


@dataclass(frozen=True, eq=False)
class NirMapping:
    """A NIR graph's neurons as calibration targets: feed `target` to `calibrate`."""

    target: NeuronTarget
    placement: Placement
    neuron_count: int
    nodes: tuple[NodeSummary, ...]
    voltage_map: VoltageMap
    speedup: float
    notes: list[str]
    graph_name: str
    content_hash: str
    """sha256 (first 16 hex digits) of the graph's content; the same for a file and the graph
    read from it."""
    source: str | None = None
    """The file the graph was read from, if any."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able provenance of the mapping."""
        return {
            "graph_name": self.graph_name,
            "content_hash": self.content_hash,
            "source": self.source,
            "speedup": self.speedup,
            "voltage_map": self.voltage_map.to_dict(),
            "neuron_count": self.neuron_count,
            "nodes": [node.to_dict() for node in self.nodes],
            "placement": self.placement.to_dict(),
            "notes": list(self.notes),
            "target": self.target.to_dict(),
        }

    def summary(self) -> str:
        """A table a person can read: nodes, placement, time constants, notes."""
        lines = [
            f"NIR graph '{self.graph_name}' ({self.content_hash}): {_neurons(self.neuron_count)} "
            f"on chip neurons 0..{self.neuron_count - 1} of {N_NEURONS}, "
            f"speed-up {self.speedup:g}",
            f"potentials: {self.voltage_map.describe()}",
            f"{'node':<20} {'type':<8} {'count':>5}  {'chip':<9} {'tau_mem':<22} tau_syn",
        ]
        for node in self.nodes:
            chip = f"{node.chip_neurons[0]}..{node.chip_neurons[1] - 1}"
            lines.append(
                f"{node.name:<20} {node.type:<8} {node.count:>5}  {chip:<9} "
                f"{_format_span(node.hardware_times['tau_mem']):<22} "
                f"{_format_span(node.hardware_times['tau_syn_exc'])}"
            )
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


@dataclass(frozen=True, eq=False)
class _NeuronNode:
    """A neuron node of the flattened graph with its parameters as flat arrays."""

    name: str
    type: str
    shape: tuple[int, ...]
    values: dict[str, np.ndarray]
    reset_absent: bool

    @property
    def count(self) -> int:
        return int(np.prod(self.shape, dtype=int))


@dataclass(eq=False)
class _Entry:
    """One NIR field of one node on its way to the chip (model and chip values per neuron)."""

    node: _NeuronNode
    parameter: str
    quantities: tuple[str, ...]
    model: np.ndarray
    chip: np.ndarray
    is_time: bool
    clipped: list[str] = field(default_factory=list)

    @property
    def spec_range(self) -> tuple[float, float]:
        specs = [PLANS.quantities()[q] for q in self.quantities]
        return max(s.low for s in specs), min(s.high for s in specs)


def targets_from_nir(
    path_or_graph: str | os.PathLike[str] | nir.NIRGraph,
    *,
    speedup: float = DEFAULT_SPEEDUP,
    voltage_map: VoltageMap | None = None,
    clip: bool = False,
) -> NirMapping:
    """Map the neurons of a NIR graph (a .nir file or a `nir.NIRGraph`) onto the chip.

    Raises `NirMappingError` when the file does not load, the graph has more neurons than the
    chip, or a time constant or potential falls outside the chip's ranges (unless `clip`, which
    clips and warns with every clipped value). See the module docstring for the conventions.
    """
    speedup = check_speedup(speedup)
    graph, source, reset_absent = _load(path_or_graph)
    graph_name = Path(source).stem if source else _metadata_name(graph)
    neuron_nodes, other_nodes = _split_nodes(graph, reset_absent)
    neuron_count = sum(node.count for node in neuron_nodes)
    _check_count(graph_name, neuron_nodes, neuron_count)

    fitted = voltage_map is None
    if voltage_map is None:
        voltage_map = _fit_voltage_map(neuron_nodes)
    entries = _entries(neuron_nodes, speedup, voltage_map)
    _enforce_ranges(graph_name, entries, speedup, voltage_map, clip)

    starts = np.cumsum([0] + [node.count for node in neuron_nodes])
    blocks = {
        node.name: slice(int(a), int(b))
        for node, a, b in zip(neuron_nodes, starts[:-1], starts[1:], strict=True)
    }
    # Unplaced chip neurons keep the default target.
    quantities = NeuronTarget().quantities()
    for node in neuron_nodes:
        for name, value in _node_chip_values(node, entries).items():
            quantities[name][blocks[node.name]] = value
    target = NeuronTarget(
        **{name: quantities[name] for name in ("leak", "reset", "threshold", *TIME_QUANTITIES)}
    )

    notes = _notes(neuron_nodes, other_nodes, voltage_map, fitted, speedup, target, blocks)
    return NirMapping(
        target=target,
        placement=_placement(neuron_nodes),
        neuron_count=neuron_count,
        nodes=tuple(_summary(node, blocks[node.name], target) for node in neuron_nodes),
        voltage_map=voltage_map,
        speedup=speedup,
        notes=notes,
        graph_name=graph_name,
        content_hash=content_hash(graph),
        source=source,
    )


# -- loading ------------------------------------------------------------------------------


def _load(path_or_graph: Any) -> tuple[nir.NIRGraph, str | None, set[str]]:
    if isinstance(path_or_graph, nir.NIRGraph):
        return path_or_graph, None, set()
    if not isinstance(path_or_graph, str | os.PathLike):
        raise TypeError(
            f"targets_from_nir takes a path to a .nir file or a nir.NIRGraph, "
            f"got {type(path_or_graph).__name__}"
        )
    path = Path(path_or_graph)
    try:
        graph = nir.read(path)
    # nir raises many kinds (OSError, ValueError, KeyError, AssertionError): report them all.
    except Exception as error:
        raise NirMappingError(
            f"could not load NIR graph from file '{path}' with nir {nir.version}: "
            f"{type(error).__name__}: {error}{_type_check_hint(path)}"
        ) from error
    return graph, str(path), _nodes_without_reset(path)


def _type_check_hint(path: Path) -> str:
    """If only nir's type check rejects the file, say how to load it anyway."""
    try:
        nir.read(path, type_check=False)
    except Exception:
        return ""
    return (
        ". It loads with nir.read(path, type_check=False), which skips nir's check of "
        "shapes between nodes; pass that graph here if you trust it"
    )


def _nodes_without_reset(path: Path) -> set[str]:
    """Dotted names of LIF/CubaLIF/IF nodes stored without v_reset (older NIR files);
    nir fills in 0 when reading them, so only the file itself tells."""
    import h5py  # a dependency of nir; only needed to look into the file

    missing: set[str] = set()

    def visit(group: Any, prefix: str) -> None:
        for name, child in group["nodes"].items():
            kind = child["type"][()]
            kind = kind.decode() if isinstance(kind, bytes) else str(kind)
            if kind == "NIRGraph":
                visit(child, f"{prefix}{name}.")
            elif "v_threshold" in child and "v_reset" not in child:
                missing.add(f"{prefix}{name}")

    with h5py.File(path, "r") as file:
        visit(file["node"], "")
    return missing


def _metadata_name(graph: nir.NIRGraph) -> str:
    name = graph.metadata.get("name") if isinstance(graph.metadata, dict) else None
    return name if isinstance(name, str) and name else "graph"


def _flatten(graph: nir.NIRGraph, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            yield from _flatten(node, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", node


def _split_nodes(
    graph: nir.NIRGraph, reset_absent: set[str]
) -> tuple[list[_NeuronNode], list[tuple[str, Any]]]:
    neurons, others = [], []
    for name, node in _flatten(graph):
        kind = type(node).__name__
        if kind in UNSUPPORTED_NEURON_TYPES:
            raise NirMappingError(
                f"node '{name}' has type {kind} ({UNSUPPORTED_NEURON_TYPES[kind]}), which has "
                f"no chip-neuron counterpart here; supported neuron types: "
                f"{', '.join(SUPPORTED_TYPES)}"
            )
        if kind in SUPPORTED_TYPES:
            neurons.append(_neuron_node(name, kind, node, name in reset_absent))
        else:
            others.append((name, node))
    return neurons, others


def _neuron_node(name: str, kind: str, node: Any, reset_absent: bool) -> _NeuronNode:
    fields = [*TIME_FIELDS[kind], *POTENTIAL_FIELDS[kind], *NEUTRAL_FIELDS]
    raw = {f: getattr(node, f, None) for f in fields}
    if "v_reset" in POTENTIAL_FIELDS[kind] and raw["v_reset"] is None:
        reset_absent = True
        raw["v_reset"] = 0.0
    raw = {f: v for f, v in raw.items() if v is not None}
    try:
        arrays = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in raw.values()))
    except ValueError as error:
        raise NirMappingError(
            f"node '{name}' ({kind}): parameter shapes do not agree: "
            + ", ".join(f"{f} {np.shape(v)}" for f, v in raw.items())
        ) from error
    shape = arrays[0].shape if arrays else ()
    values = {f: np.ravel(a) for f, a in zip(raw, arrays, strict=True)}
    for f, value in values.items():
        bad = ~np.isfinite(value)
        if f in TIME_FIELDS[kind]:
            bad |= value <= 0
        if bad.any():
            raise NirMappingError(
                f"node '{name}' ({kind}): {f} = {float(value[bad][0])!r} must be finite"
                + (" and > 0 (a time constant)" if f in TIME_FIELDS[kind] else "")
            )
    return _NeuronNode(name, kind, tuple(int(s) for s in shape), values, reset_absent)


def _check_count(graph_name: str, nodes: list[_NeuronNode], count: int) -> None:
    if count == 0:
        raise NirMappingError(
            f"NIR graph '{graph_name}' has no neuron nodes ({', '.join(SUPPORTED_TYPES)})"
        )
    if count > N_NEURONS:
        per_node = ", ".join(f"'{n.name}' ({n.type}): {n.count}" for n in nodes)
        raise NirMappingError(
            f"NIR graph '{graph_name}' has {count} neurons, more than the chip's {N_NEURONS} "
            f"({per_node})"
        )


# -- values -------------------------------------------------------------------------------


def _fit_voltage_map(nodes: list[_NeuronNode]) -> VoltageMap:
    gathered: dict[str, list[np.ndarray]] = {"leak": [], "reset": [], "threshold": []}
    for node in nodes:
        for field_name, quantity in POTENTIAL_FIELDS[node.type].items():
            gathered[quantity].append(node.values[field_name])
    return VoltageMap.fit(**{q: np.concatenate(v) if v else () for q, v in gathered.items()})


def _entries(nodes: list[_NeuronNode], speedup: float, vmap: VoltageMap) -> list[_Entry]:
    entries = []
    for node in nodes:
        for name, quantities in TIME_FIELDS[node.type].items():
            model = node.values[name]
            entries.append(_Entry(node, name, quantities, model, model / speedup, True))
        for name, quantity in POTENTIAL_FIELDS[node.type].items():
            model = node.values[name]
            chip = np.asarray(vmap.to_chip(model), dtype=float)
            entries.append(_Entry(node, name, (quantity,), model, chip, False))
    return entries


def _node_chip_values(node: _NeuronNode, entries: list[_Entry]) -> dict[str, np.ndarray]:
    """Every potential and time quantity of one node in chip units, derived ones included."""
    values: dict[str, np.ndarray] = {}
    for entry in entries:
        if entry.node is node:
            for quantity in entry.quantities:
                values[quantity] = entry.chip
    if "leak" not in values:  # IF: the leak pulls towards the reset, where IF starts anyway
        values["leak"] = values["reset"]
    if "reset" not in values:  # LI never resets
        values["reset"] = values["leak"]
    if "threshold" not in values:  # LI never spikes
        values["threshold"] = np.full(node.count, PLANS.quantities()["threshold"].high)
    if "tau_mem" not in values:  # IF: closest the chip gets to no leak
        values["tau_mem"] = np.full(node.count, PLANS.quantities()["tau_mem"].high)
    for quantity in ("tau_syn_exc", "tau_syn_inh"):  # delta synapses: shortest filter
        values.setdefault(quantity, np.full(node.count, PLANS.quantities()[quantity].low))
    return values


def _enforce_ranges(
    graph_name: str, entries: list[_Entry], speedup: float, vmap: VoltageMap, clip: bool
) -> None:
    problems = []
    time_problem = False
    for entry in entries:
        low, high = entry.spec_range
        bad = (entry.chip < low) | (entry.chip > high)
        if not bad.any():
            continue
        problems.append(_problem_line(entry, bad, speedup, vmap))
        time_problem |= entry.is_time
        if clip:
            for model in np.unique(entry.model[bad]):
                count = int(np.count_nonzero(entry.model[bad] == model))
                before = entry.chip[entry.model == model][0]
                after = float(np.clip(before, low, high))
                entry.clipped.append(
                    f"node '{entry.node.name}' {entry.parameter} = {_model_text(entry, model)} "
                    f"({_neurons(count)}): {_chip_text(entry, before)} clipped to "
                    f"{_chip_text(entry, after)}"
                )
            entry.chip = np.clip(entry.chip, low, high)
    if not problems:
        return
    if clip:
        clipped = [line for entry in entries for line in entry.clipped]
        warnings.warn(
            f"NIR graph '{graph_name}': clipped {len(clipped)} value"
            f"{'' if len(clipped) == 1 else 's'} into the chip's ranges:\n"
            + "\n".join(f"  - {line}" for line in clipped),
            stacklevel=3,
        )
        return
    feasible = _feasible_speedups([e for e in entries if e.is_time])
    footer = []
    if time_problem:
        if feasible is None:
            footer.append("no single speed-up makes every time constant of the graph fit")
        else:
            footer.append(
                f"speed-ups from {feasible[0]:.4g} to {feasible[1]:.4g} make every time "
                f"constant of the graph fit (this mapping used {speedup:g})"
            )
    footer.append("pass clip=True to clip these values into range instead (with a warning)")
    raise NirMappingError(
        f"NIR graph '{graph_name}' does not fit the chip:\n"
        + "\n".join(f"  - {line}" for line in problems)
        + "\n"
        + "\n".join(footer),
        problems=tuple(problems),
        feasible_speedups=feasible,
    )


def _feasible_speedups(times: list[_Entry]) -> tuple[float, float] | None:
    """Speed-ups S with low <= t / S <= high for every model time constant t."""
    if not times:
        return None
    needed_low = max(float(e.model.max()) / e.spec_range[1] for e in times)
    needed_high = min(float(e.model.min()) / e.spec_range[0] for e in times)
    return (needed_low, needed_high) if needed_low <= needed_high else None


def _problem_line(entry: _Entry, bad: np.ndarray, speedup: float, vmap: VoltageMap) -> str:
    low, high = entry.spec_range
    model = entry.model[bad]
    quantity = "/".join(entry.quantities)
    head = (
        f"node '{entry.node.name}' ({entry.node.type}) {entry.parameter} = "
        f"{_model_span(entry, model)} ({model.size} of {entry.model.size} neurons) "
        f"would need {quantity} = {_chip_span(entry, entry.chip[bad])}; "
    )
    if entry.is_time:
        return head + (
            f"allowed {_format_seconds(low)}..{_format_seconds(high)}, i.e. "
            f"{_format_seconds(low * speedup)}..{_format_seconds(high * speedup)} of model "
            f"time at speed-up {speedup:g}; this parameter fits for speed-ups "
            f"{model.max() / high:.4g}..{model.min() / low:.4g}"
        )
    return head + (
        f"allowed {low:g}..{high:g} CADC LSB, i.e. {entry.parameter} "
        f"{vmap.to_model(low):.4g}..{vmap.to_model(high):.4g} under {vmap.describe()}"
    )


# -- results ------------------------------------------------------------------------------


def _placement(nodes: list[_NeuronNode]) -> Placement:
    count = sum(node.count for node in nodes)
    chip = np.arange(count)
    index = np.concatenate([np.arange(node.count) for node in nodes])
    names = tuple(name for node in nodes for name in [node.name] * node.count)
    for array in (chip, index):
        array.flags.writeable = False
    return Placement(chip, names, index)


def _summary(node: _NeuronNode, block: slice, target: NeuronTarget) -> NodeSummary:
    times = {}
    for quantity in TIME_QUANTITIES:
        values = np.asarray(getattr(target, quantity))[block]
        times[quantity] = (float(values.min()), float(values.max()))
    return NodeSummary(
        node.name, node.type, node.count, (block.start, block.stop), node.shape, times
    )


def _notes(
    nodes: list[_NeuronNode],
    others: list[tuple[str, Any]],
    vmap: VoltageMap,
    fitted: bool,
    speedup: float,
    target: NeuronTarget,
    blocks: dict[str, slice],
) -> list[str]:
    notes = [_voltage_note(nodes, vmap, fitted)]
    for node in nodes:
        notes += _node_notes(node, speedup)
        notes += _gap_notes(node, target, blocks[node.name])
    notes += _other_node_notes(others, vmap)
    refractory = PLANS.quantities()["refractory_time"]
    notes.append(
        f"NIR neurons have no refractory period; graph neurons keep the default "
        f"refractory_time {_format_seconds(float(NeuronTarget().refractory_time))} "
        f"({_format_seconds(float(NeuronTarget().refractory_time) * speedup)} of model time; "
        f"the chip allows down to {_format_seconds(refractory.low)})"
    )
    return notes


def _voltage_note(nodes: list[_NeuronNode], vmap: VoltageMap, fitted: bool) -> str:
    if not fitted:
        return f"potentials use the given voltage map: {vmap.describe()}"
    distinct = np.unique(
        np.concatenate([node.values[f] for node in nodes for f in POTENTIAL_FIELDS[node.type]])
    )
    if distinct.size == 1:
        return (
            f"every potential of the graph is {distinct[0]:g}, which fixes no voltage scale: "
            f"chose {vmap.describe()}; pass voltage_map= to choose another"
        )
    return (
        f"potentials use a fitted voltage map, {vmap.describe()}: the largest scale that "
        f"keeps leak, reset and threshold inside their allowed ranges with a margin; "
        f"synaptic weights in model voltage units scale by the same {vmap.scale:.6g}"
    )


def _node_notes(node: _NeuronNode, speedup: float) -> list[str]:
    notes = []
    where = f"on node '{node.name}'"
    if node.reset_absent:
        notes.append(f"v_reset is absent {where} ({node.type}): assumed 0, as nir does")
    for name, neutral in NEUTRAL_FIELDS.items():
        value = node.values.get(name)
        if value is not None and np.any(value != neutral):
            notes.append(
                f"{name} = {_describe(value)} {where} has no chip equivalent: the chip's input "
                "scale is set by synaptic weights and the synaptic gain (psp_amplitude_exc/inh),"
                " which this mapping leaves at their defaults"
            )
    if node.type == "IF":
        tau = PLANS.quantities()["tau_mem"].high
        notes.append(
            f"node '{node.name}' is IF (no leak) but a chip neuron always leaks: mapped to the "
            f"longest tau_mem, {_format_seconds(tau)} ({_format_seconds(tau * speedup)} of "
            "model time), with the leak potential at the reset; it integrates faithfully only "
            "over times well below that"
        )
    if "tau_syn" not in TIME_FIELDS[node.type]:
        tau = PLANS.quantities()["tau_syn_exc"].low
        notes.append(
            f"node '{node.name}' ({node.type}) has instantaneous synapses but the chip's "
            f"synaptic input always filters: tau_syn set to the shortest allowed, "
            f"{_format_seconds(tau)} ({_format_seconds(tau * speedup)} of model time)"
        )
    if "v_threshold" not in POTENTIAL_FIELDS[node.type]:
        notes.append(
            f"node '{node.name}' ({node.type}) does not spike: threshold set to the top of its "
            f"range, {PLANS.quantities()['threshold'].high:g} LSB, reset to the leak; a membrane "
            "driven above that would still spike on the chip"
        )
    return notes


def _gap_notes(node: _NeuronNode, target: NeuronTarget, block: slice) -> list[str]:
    notes = []
    model_quantities = set(POTENTIAL_FIELDS[node.type].values())
    for upper, lower in GAP_PAIRS:
        if not {upper, lower} <= model_quantities:
            continue
        gap = np.asarray(getattr(target, upper))[block] - np.asarray(getattr(target, lower))[block]
        specs = PLANS.quantities()
        tolerance = specs[upper].tolerance + specs[lower].tolerance
        close = np.abs(gap) < tolerance
        if close.any():
            notes.append(
                f"on node '{node.name}', {upper} - {lower} = {_describe(gap[close])} LSB for "
                f"{_neurons(int(close.sum()))}, within the calibration tolerances "
                f"(±{specs[upper].tolerance:g} and ±{specs[lower].tolerance:g} LSB): "
                "their order may not survive calibration"
            )
    return notes


def _other_node_notes(others: list[tuple[str, Any]], vmap: VoltageMap) -> list[str]:
    notes = []
    for name, node in others:
        bias = getattr(node, "bias", None)
        if bias is not None and np.any(np.asarray(bias) != 0):
            notes.append(
                f"bias = {_describe(np.asarray(bias, dtype=float))} on node '{name}' "
                f"({type(node).__name__}) has no chip equivalent in a neuron target: a constant "
                "input current; it is not mapped"
            )
        if isinstance(node, nir.Delay):
            notes.append(f"node '{name}' (Delay) has no chip equivalent: delays are not mapped")
    kinds = Counter(
        type(node).__name__ for _, node in others if not isinstance(node, nir.Input | nir.Output)
    )
    if kinds:
        listed = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
        notes.append(f"not part of a neuron target (synapses and structure): {listed}")
    return notes


# -- formatting and provenance ------------------------------------------------------------


def content_hash(graph: nir.NIRGraph) -> str:
    """sha256 (16 hex digits) of a graph's nodes, edges and metadata, independent of files."""
    hasher = hashlib.sha256()
    _feed(hasher, graph.to_dict())
    return hasher.hexdigest()[:16]


def _feed(hasher: Any, obj: Any) -> None:
    if isinstance(obj, dict):
        hasher.update(b"{")
        for key in sorted(obj, key=str):
            _feed(hasher, str(key))
            _feed(hasher, obj[key])
        hasher.update(b"}")
    elif isinstance(obj, list | tuple):
        hasher.update(b"[")
        for item in obj:
            _feed(hasher, item)
        hasher.update(b"]")
    elif isinstance(obj, np.ndarray | np.generic) and np.asarray(obj).dtype.kind in "biuf":
        array = np.ascontiguousarray(obj)
        hasher.update(f"a{array.dtype.str}{array.shape}".encode())
        hasher.update(array.tobytes())
    elif isinstance(obj, np.ndarray):
        _feed(hasher, obj.tolist())
    elif isinstance(obj, bytes):
        _feed(hasher, obj.decode("utf8", errors="replace"))
    else:
        hasher.update(f"{type(obj).__name__}:{obj!r};".encode())


def _neurons(count: int) -> str:
    return f"{count} neuron" if count == 1 else f"{count} neurons"


def _describe(values: np.ndarray) -> str:
    distinct = np.unique(values)
    if distinct.size == 1:
        return f"{distinct[0]:.6g}"
    return f"{distinct.min():.6g}..{distinct.max():.6g} ({distinct.size} distinct values)"


def _format_seconds(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if abs(seconds) >= scale:
            return f"{seconds / scale:.4g} {unit}"
    return f"{seconds / 1e-9:.4g} ns"


def _format_span(span: tuple[float, float]) -> str:
    low, high = span
    return (
        _format_seconds(low)
        if low == high
        else (f"{_format_seconds(low)}..{_format_seconds(high)}")
    )


def _model_text(entry: _Entry, value: float) -> str:
    return _format_seconds(value) if entry.is_time else f"{value:.6g}"


def _chip_text(entry: _Entry, value: float) -> str:
    return _format_seconds(value) if entry.is_time else f"{value:.4g} LSB"


def _model_span(entry: _Entry, values: np.ndarray) -> str:
    low, high = float(values.min()), float(values.max())
    if low == high:
        return _model_text(entry, low)
    return f"{_model_text(entry, low)}..{_model_text(entry, high)}"


def _chip_span(entry: _Entry, values: np.ndarray) -> str:
    low, high = float(values.min()), float(values.max())
    if low == high:
        return _chip_text(entry, low)
    return f"{_chip_text(entry, low)}..{_chip_text(entry, high)}"
