"""NIR graphs to neuron targets: the NIR paper's real graphs and synthetic ones."""

from __future__ import annotations

import json
import warnings
from itertools import pairwise
from pathlib import Path

import nir
import numpy as np
import pytest
from fakes import QUANTITIES

from calib.core.targets import NeuronTarget
from calib.frontends.model_units import POTENTIAL_MARGIN, VoltageMap
from calib.frontends.nir import NirMapping, NirMappingError, content_hash, targets_from_nir
from device_model.protocol import N_NEURONS

GRAPHS = Path(__file__).resolve().parent / "data" / "nir-graphs"
TWO_LIF = "paper_01_lif_debug_spike_representation_two_lif_neurons.nir"
NORSE = "paper_01_lif_lif_norse.nir"
ROCKPOOL = "paper_01_lif_lif_rockpool.nir"
SINABS = "paper_02_cnn_cnn_sinabs.nir"
BRAILLE = (
    "paper_03_rnn_braille_noDelay_bias_zero.nir",
    "paper_03_rnn_braille_noDelay_noBias_subtract.nir",
)
NEURON_TYPES = (nir.LIF, nir.CubaLIF, nir.IF, nir.LI, nir.CubaLI)


def real_graph(name: str) -> Path:
    """A graph from tests/data; a missing file fails the test, never skips."""
    path = GRAPHS / name
    assert path.is_file(), f"NIR test graph missing: {path} (tests/data/nir-graphs)"
    return path


def neuron_nodes(graph: nir.NIRGraph) -> dict[str, nir.NIRNode]:
    """Neuron nodes of a (flat) graph read independently of the code under test."""
    return {name: node for name, node in graph.nodes.items() if isinstance(node, NEURON_TYPES)}


def lif_graph(
    n: int = 4,
    *,
    tau: float | np.ndarray = 10e-3,
    v_leak: float | np.ndarray = 0.0,
    v_reset: float | np.ndarray = 0.0,
    v_threshold: float | np.ndarray = 1.0,
    r: float = 1.0,
) -> nir.NIRGraph:
    def full(value: float | np.ndarray) -> np.ndarray:
        return np.broadcast_to(np.asarray(value, dtype=float), (n,)).copy()

    lif = nir.LIF(
        tau=full(tau),
        r=full(r),
        v_leak=full(v_leak),
        v_reset=full(v_reset),
        v_threshold=full(v_threshold),
    )
    return chain({"lif": lif}, n)


def chain(nodes: dict[str, nir.NIRNode], n: int) -> nir.NIRGraph:
    """Input -> nodes in order -> Output, all of width n."""
    names = ["input", *nodes, "output"]
    every = {"input": nir.Input(np.array([n])), **nodes, "output": nir.Output(np.array([n]))}
    return nir.NIRGraph(nodes=every, edges=list(pairwise(names)))


def assert_inside_ranges(mapping: NirMapping) -> None:
    for name in ("leak", "reset", "threshold", "tau_mem", "tau_syn_exc", "tau_syn_inh"):
        spec = QUANTITIES[name]
        values = np.asarray(getattr(mapping.target, name))
        assert values.shape == (N_NEURONS,), name
        assert np.all((values >= spec.low) & (values <= spec.high)), name


# -- the NIR paper's graphs ---------------------------------------------------------------


@pytest.mark.parametrize("name", [TWO_LIF, NORSE])
def test_real_lif_graph_maps_with_its_neuron_count_and_time_constants(name: str) -> None:
    path = real_graph(name)
    lifs = neuron_nodes(nir.read(path))
    mapping = targets_from_nir(path, speedup=1000)
    assert mapping.neuron_count == sum(node.tau.size for node in lifs.values())
    assert_inside_ranges(mapping)
    for node_name, node in lifs.items():
        placed = mapping.placement.neurons_of(node_name)
        assert np.allclose(np.asarray(mapping.target.tau_mem)[placed], node.tau / 1000)


def test_two_lif_graph_reports_its_absent_resets_and_close_threshold() -> None:
    mapping = targets_from_nir(real_graph(TWO_LIF))
    for node in ("lif1", "lif2"):
        assert any(f"v_reset is absent on node '{node}'" in note for note in mapping.notes)
    # lif1's leak (1.2) sits just above its threshold (1.0): the note warns that the order
    # may not survive calibration.
    assert any("node 'lif1', threshold - leak" in note for note in mapping.notes)
    leak, threshold = np.asarray(mapping.target.leak), np.asarray(mapping.target.threshold)
    lif1 = mapping.placement.neurons_of("lif1")
    assert np.all(leak[lif1] > threshold[lif1])


def test_graph_that_nir_cannot_load_names_the_file_and_nir_reason() -> None:
    path = real_graph(ROCKPOOL)
    with pytest.raises(NirMappingError) as caught:
        targets_from_nir(path)
    message = str(caught.value)
    assert ROCKPOOL in message
    assert "Type inference error" in message
    assert "type_check=False" in message


def test_graph_loaded_without_type_check_maps() -> None:
    graph = nir.read(real_graph(ROCKPOOL), type_check=False)
    mapping = targets_from_nir(graph)
    assert mapping.neuron_count == 1
    assert any("r = 24.0197" in note for note in mapping.notes)


def test_convolutional_graph_has_too_many_neurons() -> None:
    path = real_graph(SINABS)
    count = sum(node.r.size for node in neuron_nodes(nir.read(path)).values())
    assert count > N_NEURONS
    with pytest.raises(NirMappingError, match=rf"has {count} neurons, more than the chip's 512"):
        targets_from_nir(path)


@pytest.mark.parametrize("name", BRAILLE)
def test_braille_graph_needs_a_lower_speedup_and_says_which(name: str) -> None:
    path = real_graph(name)
    with pytest.raises(NirMappingError) as caught:
        targets_from_nir(path, speedup=1000)
    error = caught.value
    assert error.feasible_speedups is not None
    low, high = error.feasible_speedups
    assert 0 < low < high < 1000
    assert f"speed-ups from {low:.4g} to {high:.4g}" in str(error)
    assert any("tau_syn" in line and "allowed 300 ns..30 µs" in line for line in error.problems)


@pytest.mark.parametrize("name", BRAILLE)
def test_braille_graph_maps_at_a_speedup_from_the_reported_range(name: str) -> None:
    path = real_graph(name)
    with pytest.raises(NirMappingError) as caught:
        targets_from_nir(path)
    low, high = caught.value.feasible_speedups
    speedup = float(np.sqrt(low * high))
    mapping = targets_from_nir(path, speedup=speedup)
    cubas = neuron_nodes(nir.read(path))
    assert mapping.neuron_count == sum(node.tau_mem.size for node in cubas.values())
    assert_inside_ranges(mapping)
    for node_name, node in cubas.items():
        placed = mapping.placement.neurons_of(node_name)
        assert np.allclose(np.asarray(mapping.target.tau_mem)[placed], node.tau_mem / speedup)
        for quantity in ("tau_syn_exc", "tau_syn_inh"):
            values = np.asarray(getattr(mapping.target, quantity))[placed]
            assert np.allclose(values, node.tau_syn / speedup)
    with pytest.raises(NirMappingError):
        targets_from_nir(path, speedup=high * 1.01)


def test_placement_is_contiguous_in_graph_order_and_leaves_other_neurons_default() -> None:
    path = real_graph(BRAILLE[0])
    low, high = targets_error(path).feasible_speedups
    mapping = targets_from_nir(path, speedup=float(np.sqrt(low * high)))
    placement = mapping.placement
    assert np.array_equal(placement.chip_neuron, np.arange(mapping.neuron_count))
    names = list(dict.fromkeys(placement.node))
    assert names == list(neuron_nodes(nir.read(path)))
    assert [node.name for node in mapping.nodes] == names
    default = NeuronTarget().quantities()
    for name, values in mapping.target.quantities().items():
        assert np.allclose(values[mapping.neuron_count :], default[name][mapping.neuron_count :])


def targets_error(path: Path) -> NirMappingError:
    with pytest.raises(NirMappingError) as caught:
        targets_from_nir(path)
    return caught.value


def test_content_hash_is_the_same_for_a_file_and_the_graph_read_from_it() -> None:
    path = real_graph(NORSE)
    from_file = targets_from_nir(path)
    from_graph = targets_from_nir(nir.read(path))
    assert from_file.content_hash == from_graph.content_hash == content_hash(nir.read(path))
    assert from_file.source == str(path)
    assert from_graph.source is None
    assert from_file.graph_name == path.stem
    assert content_hash(nir.read(real_graph(TWO_LIF))) != from_file.content_hash


def test_mapping_is_json_able_and_summarises_itself() -> None:
    mapping = targets_from_nir(real_graph(TWO_LIF))
    record = json.loads(json.dumps(mapping.to_dict()))
    assert record["neuron_count"] == 2
    assert NeuronTarget.from_dict(record["target"]) == mapping.target
    assert VoltageMap.from_dict(record["voltage_map"]) == mapping.voltage_map
    text = mapping.summary()
    assert "lif1" in text and "lif2" in text and "10 µs" in text


# -- synthetic graphs ---------------------------------------------------------------------


def test_fitted_voltage_map_puts_potentials_inside_ranges_with_margin() -> None:
    graph = lif_graph(
        3,
        v_leak=[-65.0, -60.0, -70.0],
        v_reset=[-75.0, -70.0, -70.0],
        v_threshold=[-50.0, -52.0, -45.0],
    )
    mapping = targets_from_nir(graph)
    vmap = mapping.voltage_map
    lif = graph.nodes["lif"]
    for name, model in (
        ("leak", lif.v_leak),
        ("reset", lif.v_reset),
        ("threshold", lif.v_threshold),
    ):
        chip = np.asarray(getattr(mapping.target, name))[:3]
        spec = QUANTITIES[name]
        assert np.allclose(chip, vmap.scale * model + vmap.offset)
        assert np.all(chip >= spec.low + POTENTIAL_MARGIN - 1e-9)
        assert np.all(chip <= spec.high - POTENTIAL_MARGIN + 1e-9)
    assert any(vmap.describe() in note for note in mapping.notes)


def test_notes_report_r_w_in_and_bias_without_chip_equivalent() -> None:
    n = 3
    cuba = nir.CubaLIF(
        tau_syn=np.full(n, 5e-3),
        tau_mem=np.full(n, 10e-3),
        r=np.full(n, 2.0),
        v_leak=np.zeros(n),
        v_reset=np.zeros(n),
        v_threshold=np.ones(n),
        w_in=np.full(n, 3.0),
    )
    affine = nir.Affine(weight=np.eye(n), bias=np.array([0.5, 0.0, -0.5]))
    mapping = targets_from_nir(chain({"syn": affine, "cuba": cuba}, n))
    notes = "\n".join(mapping.notes)
    assert "r = 2 on node 'cuba' has no chip equivalent" in notes
    assert "w_in = 3 on node 'cuba' has no chip equivalent" in notes
    assert "bias = -0.5..0.5 (3 distinct values) on node 'syn'" in notes


def test_neutral_input_scaling_gets_no_note() -> None:
    mapping = targets_from_nir(lif_graph(2, r=1.0))
    assert not any(note.startswith(("r =", "w_in =", "bias =")) for note in mapping.notes)


def test_graph_with_more_neurons_than_the_chip_is_rejected() -> None:
    graph = chain({"a": lif_graph(300).nodes["lif"], "b": lif_graph(300).nodes["lif"]}, 300)
    with pytest.raises(NirMappingError, match=r"has 600 neurons, more than the chip's 512"):
        targets_from_nir(graph)


def test_clip_warns_with_every_clipped_value_and_clips_into_range() -> None:
    tau = np.array([0.1e-3, 10e-3, 100e-3, 100e-3])
    with pytest.warns(UserWarning) as record:
        mapping = targets_from_nir(lif_graph(4, tau=tau), clip=True)
    message = str(record[0].message)
    assert "clipped 2 values" in message
    assert "tau = 100 µs (1 neuron): 100 ns clipped to 500 ns" in message
    assert "tau = 100 ms (2 neurons): 100 µs clipped to 60 µs" in message
    spec = QUANTITIES["tau_mem"]
    assert np.allclose(
        np.asarray(mapping.target.tau_mem)[:4], [spec.low, 10e-6, spec.high, spec.high]
    )


def test_without_clip_out_of_range_times_raise_listing_each_parameter() -> None:
    with pytest.raises(NirMappingError) as caught:
        targets_from_nir(lif_graph(2, tau=[0.1e-3, 10e-3]))
    (line,) = caught.value.problems
    assert "node 'lif' (LIF) tau = 100 µs (1 of 2 neurons) would need tau_mem = 100 ns" in line
    assert "allowed 500 ns..60 µs" in line


def test_time_constants_no_single_speedup_fits_are_reported_so() -> None:
    # 0.1 ms needs a speed-up <= 200; 100 s needs one >= 1.7e6: no speed-up fits both.
    with pytest.raises(NirMappingError) as caught:
        targets_from_nir(lif_graph(2, tau=[0.1e-3, 100.0]))
    assert caught.value.feasible_speedups is None
    assert "no single speed-up" in str(caught.value)


def test_explicit_voltage_map_is_honoured() -> None:
    vmap = VoltageMap(scale=2.0, offset=100.0)
    graph = lif_graph(2, v_leak=[-10.0, 0.0], v_reset=-15.0, v_threshold=[20.0, 30.0])
    mapping = targets_from_nir(graph, voltage_map=vmap)
    assert mapping.voltage_map == vmap
    assert np.allclose(np.asarray(mapping.target.leak)[:2], [80.0, 100.0])
    assert np.allclose(np.asarray(mapping.target.reset)[:2], [70.0, 70.0])
    assert np.allclose(np.asarray(mapping.target.threshold)[:2], [140.0, 160.0])
    assert any("given voltage map" in note for note in mapping.notes)


def test_explicit_voltage_map_that_misses_the_ranges_names_the_model_range() -> None:
    vmap = VoltageMap(scale=2.0, offset=100.0)
    graph = lif_graph(1, v_threshold=70.0)  # 240 LSB, above 220
    with pytest.raises(NirMappingError) as caught:
        targets_from_nir(graph, voltage_map=vmap)
    (line,) = caught.value.problems
    assert "v_threshold = 70 (1 of 1 neurons) would need threshold = 240 LSB" in line
    assert "v_threshold -25..60 under" in line
    with pytest.warns(UserWarning, match="240 LSB clipped to 220 LSB"):
        mapping = targets_from_nir(graph, voltage_map=vmap, clip=True)
    assert mapping.target.threshold[0] == QUANTITIES["threshold"].high


def test_nested_subgraphs_are_flattened_with_dotted_names() -> None:
    inner = lif_graph(3, tau=20e-3)
    outer = chain({"pre": nir.Linear(weight=np.eye(3)), "sub": inner}, 3)
    mapping = targets_from_nir(outer)
    assert mapping.neuron_count == 3
    assert [node.name for node in mapping.nodes] == ["sub.lif"]
    assert np.allclose(np.asarray(mapping.target.tau_mem)[:3], 20e-6)


def test_if_neurons_get_the_longest_tau_mem_and_a_note() -> None:
    n = 2
    if_node = nir.IF(r=np.ones(n), v_threshold=np.ones(n), v_reset=np.zeros(n))
    mapping = targets_from_nir(chain({"if": if_node}, n))
    spec = QUANTITIES["tau_mem"]
    assert np.allclose(np.asarray(mapping.target.tau_mem)[:n], spec.high)
    assert np.allclose(np.asarray(mapping.target.leak)[:n], np.asarray(mapping.target.reset)[:n])
    assert any("node 'if' is IF (no leak)" in note for note in mapping.notes)


def test_li_neurons_get_a_threshold_they_cannot_reach_by_leak_alone() -> None:
    n = 2
    li = nir.LI(tau=np.full(n, 5e-3), r=np.ones(n), v_leak=np.array([0.0, 1.0]))
    mapping = targets_from_nir(chain({"li": li}, n))
    assert np.allclose(np.asarray(mapping.target.threshold)[:n], QUANTITIES["threshold"].high)
    assert np.allclose(np.asarray(mapping.target.tau_mem)[:n], 5e-6)
    assert any("node 'li' (LI) does not spike" in note for note in mapping.notes)


def test_unsupported_neuron_type_is_an_error() -> None:
    with pytest.raises(NirMappingError, match=r"node 'int' has type I"):
        targets_from_nir(chain({"int": nir.I(r=np.ones(2))}, 2))


def test_graph_without_neurons_is_an_error() -> None:
    with pytest.raises(NirMappingError, match="has no neuron nodes"):
        targets_from_nir(chain({"w": nir.Linear(weight=np.eye(2))}, 2))


def test_missing_file_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "absent.nir"
    with pytest.raises(NirMappingError, match=r"could not load NIR graph from file .*absent\.nir"):
        targets_from_nir(path)


def test_graph_written_and_read_back_maps_like_the_graph(tmp_path: Path) -> None:
    graph = lif_graph(3, tau=[5e-3, 10e-3, 20e-3], v_reset=-0.5)
    path = tmp_path / "written.nir"
    nir.write(path, graph)
    from_graph, from_file = targets_from_nir(graph), targets_from_nir(path)
    assert from_file.target == from_graph.target
    assert np.allclose(np.asarray(from_file.target.tau_mem)[:3], [5e-6, 10e-6, 20e-6])
    assert not any("v_reset is absent" in note for note in from_file.notes)


def test_speedup_must_be_positive() -> None:
    with pytest.raises(ValueError, match="speedup"):
        targets_from_nir(lif_graph(1), speedup=0)


def test_no_warning_when_nothing_is_clipped() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        targets_from_nir(lif_graph(2), clip=True)
