"""Every constant of the simulated chip's model, with its meaning and source.

Sources: "BSS-2" = BrainScaleS-2 public software and documentation (geometry, bit widths,
clock rates); "[E]" = our estimate, chosen to match the published behaviour qualitatively and
the numbers in the project's design document. Voltages in volts, currents in amperes,
conductances in siemens, capacitances in farads, times in seconds.

The model (see `circuit.py` for the code -> physics mapping, `dynamics.py` for the membrane):
- CapMem voltage: V(c) = c * CAPMEM_VOLTS_PER_CODE * (1 + quadrant gain error).
- Leak potential: E_l = V(c_leak) - drop + offset + beta * ln(g_l / LEAK_REFERENCE_CONDUCTANCE).
- Conductance cells: g(c) = G * max(c - c0, 0) / (1 + c / saturation) + g_parallel.
- tau_mem = (MEMBRANE_UNIT_CAPACITANCE * units + C_intrinsic) / g_l.
- CADC: code = clip(round(compress(20 + (V - V0) / lsb + o_ch + noise) + digital offset)).
"""

from __future__ import annotations

# --- Geometry, time accounting --------------------------------------------------------------
CAPMEM_VOLTS_PER_CODE = 1.76e-3
"""Volts per CapMem code (1.8 V over 1023 codes). [E]"""
CAPMEM_QUADRANT_GAIN_SPREAD = 0.01
"""Relative gain error of a quadrant's CapMem voltages (normal sigma). [E]"""
CAPMEM_SETTLING_TAU = 4e-3
"""CapMem cells approach a newly written value with this time constant. [E]"""
CAPMEM_SETTLING_WAIT = 20e-3
"""Emulated wait after every write that touches analog cells (residual exp(-5)). BSS-2 / [E]"""
CAPMEM_SETTLED_RESIDUAL = 1e-3
"""Residual (in codes) below which a cell counts as settled and stops being recomputed."""
DIGITAL_WRITE_TIME = 50e-6
"""Emulated time of a write touching only digital cells. [E]"""
RUN_OVERHEAD = 1e-3
"""Host round trip of one experiment run. [E]"""
EMBEDDED_RUN_OVERHEAD = 5e-6
"""A run started by the embedded processor: it triggers the playback and reads the CADC or the
spike counters over its own bus, no host round trip. [E]"""
EMBEDDED_PROGRAM_LOAD = 5e-3
"""Host time to upload and start an embedded program, and to fetch its results (each). [E]"""
CADC_SAMPLE_TIME = 4e-6
"""Emulated time of one CADC sample (a conversion and its readout). [E]"""
CROSSTALK_COEFFICIENT = 0.005
"""Codes of shift of a quadrant's voltage cells of one kind per code their quadrant mean lies
away from CROSSTALK_CENTER (all 128 cells at 1022 shift the quadrant by about 2.6 codes). [E]"""
CROSSTALK_CENTER = 511.0

# --- Potentials ----------------------------------------------------------------------------
LEAK_DROP_MEAN = 0.70
"""Source-follower drop between the v_leak cell and the leak potential. [E]"""
LEAK_DROP_SPREAD = 15e-3
LEAK_OFFSET_SPREAD = 20e-3
"""Per-neuron offset of the leak potential (normal sigma). [E]"""
LEAK_BETA_SPREAD = 3e-3
"""Per-neuron coefficient of ln(g_l / g_ref) in the leak potential (normal sigma, mean 0). [E]"""
LEAK_REFERENCE_CONDUCTANCE = 240e-9
"""g_ref of the ln term: the leak conductance of a 10 us membrane at full capacitance. [E]"""
RESET_DROP_CORRELATION = 0.5
"""Correlation of the reset follower drop with the leak follower drop. [E]"""
RESET_DROP_SPREAD = 15e-3
RESET_OFFSET_SPREAD = 20e-3
THRESHOLD_OFFSET_SPREAD = 30e-3
"""Comparator offset of the spike threshold (normal sigma). [E]"""
DEAD_NEURON_POTENTIAL = 0.05
"""Fixed membrane potential of a dead neuron (below the CADC range). [E]"""

# --- Conductances and capacitances -----------------------------------------------------------
MEMBRANE_UNIT_CAPACITANCE = 36e-15
"""One of the 63 membrane capacitance units. BSS-2 (approximate) / [E]"""
MEMBRANE_INTRINSIC_CAPACITANCE = 0.15e-12
MEMBRANE_INTRINSIC_SPREAD = 0.03e-12
MEMBRANE_INTRINSIC_FLOOR = 0.01e-12
"""Least intrinsic capacitance: a normal draw 3.9 sigma low at mismatch 1.3 went negative (a
negative time constant at the smallest capacitance setting, NaN potentials, readouts cast
from NaN). [E]"""
LEAK_SATURATION_CODE = 4000.0
"""Saturation of g_l(c). The design appendix's 400 puts 10 us at code 540 with the divide
switch only 1.25x below the top of the range, so every neuron with a gain below 0.8 (about
20 %) could not reach 10 us; this milder saturation leaves room down to a gain of about 0.6
and still gives about 0.75 us at code 1022 without switches. [E]"""
LEAK_DIVIDE_FACTOR = 1.0 / 8.0
LEAK_MULTIPLY_FACTOR = 8.0
LEAK_NOMINAL_CODE = 540
LEAK_NOMINAL_TAU = 10e-6
LEAK_CONDUCTANCE_PER_CODE = (
    (63 * MEMBRANE_UNIT_CAPACITANCE + MEMBRANE_INTRINSIC_CAPACITANCE)
    / LEAK_NOMINAL_TAU
    / LEAK_DIVIDE_FACTOR
    * (1 + LEAK_NOMINAL_CODE / LEAK_SATURATION_CODE)
    / LEAK_NOMINAL_CODE
)
"""Leak conductance per bias code (about 4 nS) before saturation: tau_mem = 10 us at code 540
with the divide switch and 63 capacitance units. [E]"""
LEAK_GAIN_SIGMA = 0.22
"""Lognormal sigma of the per-neuron leak conductance gain (uncalibrated tau CV ~23 %). [E]"""
LEAK_DEAD_ZONE_SPREAD = 3.0
"""Per-neuron code offset c0 of the leak bias (normal sigma, codes). [E]"""
LEAK_PARALLEL_RANGE = (1e-9, 3e-9)
"""Parasitic conductance in parallel to the leak (uniform). [E]"""
LEAK_SWITCH_SPREAD = 0.05
"""Relative mismatch of the divide / multiply factors. [E]"""
RESET_CONDUCTANCE_PER_CODE = 34e-9
"""Reset clamp conductance per code: about 4x the leak, so the clamp is strong but finite. [E]"""
RESET_SATURATION_CODE = 400.0
RESET_GAIN_SIGMA = 0.25

# --- Synaptic inputs -------------------------------------------------------------------------
SYN_CAPACITANCE = 1e-12
"""Capacitance of the synaptic input's current integrator (tau_syn = C_s / g_s). [E]"""
SYN_SATURATION_CODE = 2000.0
"""Saturation of g_s(c); larger than the leak's so long tau_syn keep a useful resolution. [E]"""
SYN_TAU_AT_920 = 0.3e-6
"""Nominal tau_syn at bias code 920 without the high-resistance switch. [E]"""
SYN_CONDUCTANCE_PER_CODE = SYN_CAPACITANCE / SYN_TAU_AT_920 * (1 + 920 / SYN_SATURATION_CODE) / 920
SYN_GAIN_SIGMA = 0.25
SYN_DEAD_ZONE_SPREAD = 3.0
SYN_PARALLEL_RANGE = (5e-9, 15e-9)
"""Parasitic conductance of the synaptic integrator: longest tau_syn 70..200 us. [E]"""
SYN_HIGH_RESISTANCE_FACTOR = 5.0
SYN_HIGH_RESISTANCE_SPREAD = 0.05
SYN_GM_EXPONENT = 0.8
"""Input transconductance grows as (code / SYN_GM_REFERENCE_CODE) ** exponent. [E]"""
SYN_GM_REFERENCE_CODE = 500.0
SYN_GM_SIGMA = 0.2
SYN_DAC_SIGMA = 0.1
"""Lognormal sigma of the per-quadrant synapse DAC gain. [E]"""
SYN_CURRENT_PER_WEIGHT = 0.172e-9
"""Jump of the synaptic current per weight unit at the reference gm code: with leak 80 LSB,
tau_mem = tau_syn = 10 us, five weight-63 events 1 us apart peak about 20 CADC LSB. [E]"""
SYN_OFFSET_CURRENT_PER_CODE = 50e-12
"""Offset current of an enabled input per shift code away from its cancelling code; a higher
shift code pushes the membrane up (both inputs). [E]"""
SYN_OFFSET_GAIN_SIGMA = 0.2
SYN_CANCEL_CODE_MEAN = 500.0
SYN_CANCEL_CODE_SPREAD = 80.0
SYN_CANCEL_CODE_RANGE = (150.0, 850.0)

# --- Refractory, adaptation, exponential -----------------------------------------------------
REFRACTORY_CLOCK = 250e6
"""Base clock of the refractory counter: t_ref = counter * 2**(scale + 1) / clock. BSS-2"""
ADEX_SIGMA = 0.25
"""Lognormal sigma of a, b, tau_w and Delta_T. [E]"""
ADAPT_A_PER_CODE = 0.2e-9
"""Subthreshold adaptation conductance a per code of i_bias_adapt_a. [E]"""
ADAPT_B_PER_CODE = 10e-12
"""Spike-triggered adaptation increment b per code of i_bias_adapt_b. [E]"""
ADAPT_CAPACITANCE = 3e-12
"""tau_w = ADAPT_CAPACITANCE / g_w(c), g_w in the conductance form below. [E]"""
ADAPT_CONDUCTANCE_PER_CODE = 0.45e-9
ADAPT_SATURATION_CODE = 400.0
ADAPT_PARALLEL_CONDUCTANCE = 1e-9
EXP_DELTA_T_BASE = 4e-3
EXP_DELTA_T_PER_CODE = 0.03e-3
"""Delta_T = base + per_code * code (19 mV at 500). [E]"""
EXP_ONSET_OFFSET_SPREAD = 20e-3
"""Offset of the exponential term's onset V_T from V(v_exp) (normal sigma). [E]"""
EXP_MAX_EXPONENT = 20.0
"""The exponential term's argument is capped here (the membrane spikes long before). [E]"""

# --- CADC --------------------------------------------------------------------------------------
CADC_BASELINE = 20.0
"""Code of a voltage equal to the ramp start V0. BSS-2 calibration convention"""
CADC_NOMINAL_LSB = (550 - 70) * CAPMEM_VOLTS_PER_CODE / 200
"""Volts per LSB at ramp slope code 500: V(70) reads 20 and V(550) reads 220. [E]"""
CADC_SLOPE_CODE_OFFSET = 50.0
"""lsb(c) = CADC_NOMINAL_LSB * (c + offset) / (500 + offset): monotonic, never zero. [E]"""
CADC_RAMP_OFFSET_SPREAD = 10e-3
"""Per-quadrant error of the ramp start voltage (normal sigma). [E]"""
CADC_RAMP_SLOPE_SIGMA = 0.03
"""Per-quadrant lognormal sigma of the ramp slope. [E]"""
CADC_CHANNEL_OFFSET_SPREAD = 8.0
"""Per-channel offset in LSB (normal sigma). [E]"""
CADC_READ_NOISE = 1.0
"""Temporal read noise in LSB (normal sigma). [E]"""
CADC_COMPRESSION_KNEE = 200.0
CADC_COMPRESSION_SCALE = 55.0
"""Above the knee x -> knee + scale * tanh((x - knee) / scale): 220 reads ~219, never > 255. [E]"""

# --- MADC --------------------------------------------------------------------------------------
MADC_OFFSET_VOLTS = 0.17
MADC_VOLTS_PER_LSB = 1.6e-3
MADC_NOISE = 1.5
"""MADC temporal noise in LSB (normal sigma). [E]"""
MADC_GARBAGE_AMPLITUDE = 300.0
MADC_GARBAGE_PERIOD = 1.3e-6
"""The invalid first 8 us carry a ringing start-up artefact of this amplitude (codes). [E]"""

# --- Temporal noise, drift -------------------------------------------------------------------
THRESHOLD_NOISE = 1e-3
"""Run-to-run jitter of the effective threshold (normal sigma), spreads spike counts. [E]"""
DRIFT_PER_SQRT_HOUR = 0.5e-3
"""Offsets random-walk this many volts per sqrt(hour) of ageing. [E]"""
DRIFT_DAY_HOURS = 24
"""The drift path is drawn day by day, with hourly Brownian bridges inside a day."""

# --- Range-limited outliers and faults -------------------------------------------------------
OUTLIER_FRACTION = 0.01
"""Neurons with a gross defect that puts typical targets out of reach. [E]"""
OUTLIER_KIND_WEIGHTS = {"leak": 0.35, "reset": 0.15, "threshold": 0.25, "tau_mem": 0.25}
OUTLIER_POTENTIAL_OFFSET = (1.15, 1.4)
"""Magnitude (random sign) of a defective leak or reset follower offset. [E]"""
OUTLIER_THRESHOLD_OFFSET = (0.65, 0.85)
"""A defective comparator's (positive) offset: threshold 125 LSB needs a negative code. [E]"""
OUTLIER_LEAK_GAIN = 0.04
"""A defective leak bias's gain: tau_mem 10 us out of reach with the divide switch. [E]"""
FAULT_PRESET_RUN_FAILURE_RATE = 0.01
FAULT_PRESET_DEAD_FRACTION = 0.005
FAULT_PRESET_STUCK_FRACTION = 0.005

# --- Numerics and limits ---------------------------------------------------------------------
INTEGRATION_STEP = 20e-9
"""Step of the numerical integration (adaptation / exponential neurons). """
SPIKE_GRID_STEP = 20e-9
"""Time grid on which linear neurons with time-varying input are checked for spikes."""
SPIKE_CHUNK = 256
"""Grid points per chunk when following spikes of linear neurons."""
MAX_GRID_POINTS = 20000
"""Longer runs use a coarser grid rather than more points."""
MAX_RUN_DURATION = 0.1
"""Longest spike-count, stimulus or read_time run accepted (s)."""
MAX_MADC_DURATION = 10e-3
"""Longest MADC recording accepted (s)."""
MAX_CADC_SAMPLES = 100_000
MAX_BATCH_ELEMENTS = 1_000_000
"""Neurons x grid points simulated together (bounds host memory to a few 10 MB)."""
MEMBRANE_RAILS = (0.0, 1.8)
"""Supply rails: membrane potentials never leave this range (V). [E]"""
RESET_PULSE = 4e-9
"""Reset pulse of a spike, before the refractory counter runs: the hold after a spike is
RESET_PULSE + t_ref, so differences of firing periods measure t_ref exactly. [E]"""
MAX_TRACE_SPIKES = 4096
"""Spikes followed per neuron in a trace or a timed read (a guard against pathological
settings such as a reset above threshold)."""

# --- Synapse array, synapse drivers, MAC mode (device_model/synapses.py) ---------------------
# Geometry and bit widths are BSS-2 (calix hagen/synapse_driver.py, hagen/multiplication.py;
# seed paper section 3.4: 5-bit activations, 6-bit weights, 8-bit results). The rest is [E].
SYNAPSE_GAIN_SPREAD = 0.03
"""Relative current mismatch of a single synapse (normal sigma; "a few %"). [E]"""
SYN_DAC_REFERENCE_CODE = 800.0
"""syn_i_bias_dac code at which the synapse DAC delivers its nominal current (calix starts its
DAC bias calibration at 800). The current is proportional to the code. [E]"""
STP_RAMP_REFERENCE_CODE = 500.0
"""stp_i_ramp code of the nominal activation-to-pulse slope (calix measures there first, and
searches 200..900). The pulse length per activation step is proportional to the code. [E]"""
STP_RAMP_BLOCK_SIGMA = 0.08
"""Lognormal sigma of the ramp slope of each CapMem block of drivers. [E]"""
DRIVER_GAIN_SIGMA = 0.03
"""Lognormal sigma of a driver's pulse length per activation step. [E]"""
DRIVER_THRESHOLD_SPREAD = 1.5
"""Per-driver offset of the activation encoding (normal sigma, activation units): the driver
emits a pulse proportional to max(a - a0, 0). [E]"""
HAGEN_OFFSET_CENTER = 32
"""driver_hagen_offset code that adds nothing to a0 (calix starts at the middle, 31). [E]"""
HAGEN_OFFSET_STEP = 0.125
"""a0 rises this many activation units per driver_hagen_offset code (higher code: shorter
pulses; calix's offset calibration is inverted). The 0..63 range spans +-4 units. [E]"""
MAC_CHARGE_PER_ACTIVATION = 0.5
"""Charge of one activation step of a MAC event, relative to the charge of a spiking event of
the same weight (jump * tau_syn). A nominal neuron (gm code 500, tau_syn 0.3 us, 63 capacitance
units) then moves ~10 uV per weight unit and activation unit: a product of 128 random signed
weights and activations spreads over some +-20 CADC LSB. [E]"""
MAC_EVENT_INTERVAL = 8e-9
"""Time between the events of successive rows in a MAC run: one FPGA clock at 125 MHz
(hxtorch's default wait_period of 1 cycle). BSS-2"""
MAC_RESET_TIME = 1e-6
"""Reset pulse before every integration. [E]"""
MAC_SETTLE_TIME = 2e-6
"""Wait after the last event before the CADC converts the membrane. [E]"""
MAC_INTEGRATION_NOISE = 5e-3
"""Temporal noise (V, normal sigma) of an integrated result, before the CADC's own read noise:
about 1.2 LSB. [E]"""
SYNAPSE_ARRAY_WRITE_TIME = 2e-3
"""Emulated time of a write that touches a whole synapse cell (256 x 512 entries). [E]"""

# --- Conductance-based (COBA) synaptic inputs (device_model/coba.py) -------------------------
# BSS-2 (calix spiking/synapse.py, COBA classes): an OTA compares the membrane with a reference
# potential and modulates the synaptic input's bias current accordingly. The numbers are [E].
COBA_REFERENCE_OFFSET_SPREAD = 15e-3
"""Input offset of the COBA OTA (normal sigma, V): the reference it acts at is moved by it."""
COBA_SLOPE_PER_CODE = 0.02
"""Relative change of the input's strength per volt of membrane potential, per code of the
COBA bias (1/V per code): code 1022 puts the reversal potential about 50 mV from the
reference, code 100 about 0.5 V. [E]"""
COBA_SLOPE_SIGMA = 0.2
"""Lognormal sigma of the per-neuron COBA OTA gain. [E]"""
# --- Multi-compartment neurons (device_model/compartments.py) --------------------------------
ICC_CONDUCTANCE_PER_CODE = 6e-9
"""Inter-compartment conductance per bias code without the divide or multiply switch: about
4.9 uS at code 1022 (tau_icc about 0.5 us at full capacitance), so that the multiply switch
reaches 0.1 us and the divide switch 30 us with room for the mismatch. [E]"""
ICC_SATURATION_CODE = 4000.0
"""Saturation of g_icc(c), of the leak's form. [E]"""
ICC_GAIN_SIGMA = 0.2
"""Lognormal sigma of each neuron circuit's inter-compartment conductance gain. [E]"""
ICC_DEAD_ZONE_SPREAD = 3.0
ICC_DIVIDE_FACTOR = 1.0 / 8.0
ICC_MULTIPLY_FACTOR = 8.0
ICC_SWITCH_SPREAD = 0.05
"""Lognormal sigma of the divide and multiply factors, per neuron circuit. [E]"""
# --- Reset holdoff (device_model/holdoff.py) --------------------------------------------------
HOLDOFF_STEP = 16e-9
"""Holdoff per code of the `reset_holdoff` counter (four cycles of the 250 MHz base clock):
0..255 codes span 0..4.08 us, calix's holdoff targets 0..4 us. [E]"""
HOLDOFF_LATENCY_MEAN = 40e-9
"""Mean delay of the reset switch's opening after the reset phase's digital end. [E]"""
HOLDOFF_LATENCY_SPREAD = 15e-9
"""Per-neuron spread of that delay (normal sigma; clipped at 0). [E]"""
