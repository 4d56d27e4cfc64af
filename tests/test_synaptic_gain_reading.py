"""The inhibitory PSP amplitude's reading on a harder chip, against the truth: a strong input
from a low leak is read with room below, not clipped at the CADC's bottom."""

from __future__ import annotations

import numpy as np

from calib import NeuronTarget
from calib.algorithms.base import measure_once
from calib.routines.cadc import CODES_PER_LSB
from calib.routines.synaptic_input import INHIBITORY_LEAK, SynapticGain
from calib.sequences.lif import NeuronCalibration
from device_model import SimulatedChip

US = 1e-6


def true_amplitude(chip: SimulatedChip, routine: SynapticGain) -> np.ndarray:
    """The noise-free reading of the routine's train at its read times, less the rest, in the
    routine's configuration (neither clipped nor rounded by the CADC; the input is
    current-based, so the leak it is read at does not change it, except where the membrane
    would leave its rails)."""
    settings = routine.measurement_settings(chip)
    rest = chip.true_potentials(settings)
    peak = np.full(512, np.nan)
    for group, read_time in enumerate(routine.read_times):
        reading = chip.true_potentials(settings, routine.stimulus, float(read_time))
        peak = np.where(routine.groups == group, reading, peak)
    return np.abs(peak - rest)


def inhibitory_chip(chip_id: str, gm: int) -> SimulatedChip:
    """A harder chip with a calibrated CADC, leaks at 50 LSB, membranes at 10 us, inhibitory
    inputs at 20 us with the gm bias at `gm`."""
    chip = SimulatedChip(chip_id, mismatch_scale=1.3, noise_scale=1.5)
    dict(NeuronCalibration(chip, NeuronTarget()).steps)["cadc"]()
    chip.write({"v_leak": chip.ideal_codes("leak", LOW_LEAK)})
    chip.write({"i_bias_leak": chip.ideal_codes("tau_mem", 10 * US)})
    chip.write({"i_bias_syn_inh_tau": chip.ideal_codes("tau_syn_inh", 20 * US)})
    chip.write({"i_bias_syn_inh_gm": np.full(512, gm)})
    return chip


LOW_LEAK = np.full(512, 50.0)
TAU_MEM, TAU_SYN = np.full(512, 10 * US), np.full(512, 20 * US)


def test_a_strong_inhibitory_psp_from_a_low_leak_is_read_unclipped():
    chip = inhibitory_chip("gain-reading-31", 1022)
    leak, tau_mem, tau_syn = LOW_LEAK, TAU_MEM, TAU_SYN
    goal = np.full(512, 50.0)
    raised = SynapticGain(goal, True, tau_mem, tau_syn, leak)
    truth = true_amplitude(chip, raised)
    healthy = ~chip.truth.outlier & ~chip.truth.dead
    strong = healthy & (truth > leak)  # from the leak the PSP would reach below code 0
    assert strong.sum() > 50
    # read where the leak is (a leak already at the raised level is not moved): clipped short
    in_place = measure_once(SynapticGain(goal, True, tau_mem, tau_syn, INHIBITORY_LEAK), chip)
    assert np.nanmedian(in_place[strong] / truth[strong]) < 0.9
    measured = measure_once(raised, chip)
    relative = np.abs(measured / truth - 1)[healthy]
    assert np.nanquantile(relative, 0.99) < 0.05
    v_leak = chip.read_settings(["v_leak"])["v_leak"]
    lifted = raised.measurement_settings(chip)["v_leak"] - v_leak
    np.testing.assert_allclose(lifted, np.rint((INHIBITORY_LEAK - leak) * CODES_PER_LSB), atol=1)
    # without a calibrated leak the reading stays where the leak is
    assert "v_leak" not in SynapticGain(goal, True, tau_mem, tau_syn).measurement_settings(chip)


def test_an_inhibitory_psp_is_read_at_a_settled_raised_leak():
    # The leak's raise is a large CapMem step: unsettled, it drifts between the baseline and
    # the peak reads by about 0.3 LSB, some 8 % of the small PSP a search passes through on
    # its way to the 16 LSB goal.
    chip = inhibitory_chip("gain-reading-32", 80)
    routine = SynapticGain(np.full(512, 16.0), True, TAU_MEM, TAU_SYN, LOW_LEAK)
    assert routine.raised.all()  # 50 LSB leave less than 20 below twice the 16 expected
    truth = true_amplitude(chip, routine)
    healthy = ~chip.truth.outlier & ~chip.truth.dead
    assert 2.0 < np.nanmedian(truth[healthy]) < 8.0
    ratio = measure_once(routine, chip)[healthy] / truth[healthy]
    assert abs(np.nanmedian(ratio) - 1) < 0.03


def test_an_inhibitory_psp_with_room_below_is_read_where_the_leak_is():
    tau = np.full(512, 10 * US)
    routine = SynapticGain(np.full(512, 20.0), True, tau, tau, np.full(512, 80.0))
    assert not routine.raised.any()
    assert "v_leak" not in routine.measurement_settings(SimulatedChip("gain-reading-33"))
