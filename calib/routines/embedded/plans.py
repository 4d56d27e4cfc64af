"""The plans of the embedded mode: the LIF calibration with the CADC and spike counters only.

Every step the host mode measures with the CADC (the CADC itself, the potentials, the PSP
amplitudes, the synaptic references) or computes (the working point, the refractory time) runs
here as a twin of its host plan: the same routine and judgement, registered for the embedded
mode under `<name>_embedded` and recorded under the host plan's name (so `after` names, step
costs and reports read the same in both modes). The time constants get their own routines:
tau_mem from firing periods (`membrane.py`), tau_syn from timed CADC reads of the integrated
input (`synaptic_input.py`). Their searches are secant searches from a nominal first guess.

Order: CADC, working point, leak, reset, threshold, then tau_mem (its set-up needs the
potentials calibrated), the leak again (the leak bias moves it), the synaptic inputs, the
refractory time and the final leak.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from calib.algorithms.secant import SecantSearch
from calib.core.plans import EMBEDDED, CalibrationContext, Plan, register_plan
from calib.core.targets import NeuronTarget
from calib.routines.cadc import CADC, READ_AT_LOW, REFERENCE_LOW_CODE
from calib.routines.embedded.membrane import CODES_PER_LSB, FINE_RUNS, FiringRateTimeConstant
from calib.routines.embedded.synaptic_input import FINE_SAMPLES, IntegratedInputTimeConstant
from calib.routines.membrane import TAU_MEM
from calib.routines.neuron_potentials import LEAK, LEAK_FINAL, RESET, THRESHOLD, ThresholdPotential
from calib.routines.nominal import nominal_leak_bias
from calib.routines.refractory import REFRACTORY_TIME
from calib.routines.synaptic_input import (
    PSP_AMPLITUDE_EXC,
    PSP_AMPLITUDE_INH,
    REFERENCE_EXC,
    REFERENCE_INH,
    TAU_SYN_EXC,
    TAU_SYN_INH,
    SynapticTimeConstant,
)
from calib.routines.working_point import WORKING_POINT

SUFFIX = "_embedded"
TIME_CONSTANT_STEPS = 7
"""Secant search measurements for a time constant: a proportional step from the nominal code,
then secant steps (the coarse ones with few runs, the last ones with many)."""
TAU_MEM_STATE = "tau_mem_measured"
"""Where the tau_mem step leaves its per-neuron measurement for the synaptic steps."""


def twin(plan: Plan, **changes: Any) -> Plan:
    """`plan` for the embedded mode, recorded under its host name."""
    disturbs = tuple(name + SUFFIX for name in plan.disturbs)
    fields: dict[str, Any] = {
        "name": plan.name + SUFFIX,
        "records": plan.recorded_as,
        "modes": (EMBEDDED,),
        "disturbs": disturbs,
        "recalibratable": False,
        "extra": {**plan.extra, "searches": ()},
    }
    fields.update(changes)
    return replace(plan, **fields)


# -- tau_mem --------------------------------------------------------------------------------


def _tau_mem(context: CalibrationContext, **kwargs: Any) -> FiringRateTimeConstant:
    return FiringRateTimeConstant(
        context.goals["tau_mem"],
        context.target.membrane_capacitance,
        context.goals["leak"],
        context.goals["reset"],
        **kwargs,
    )


def _tau_mem_search(target: NeuronTarget) -> SecantSearch:
    goals = target.quantities()
    guess = nominal_leak_bias(goals["tau_mem"], target.membrane_capacitance)
    return SecantSearch(guess, steps=TIME_CONSTANT_STEPS, exponent=-1.0)


def _calibrate_tau_mem(context: CalibrationContext, plan: Plan) -> None:
    outcome = context.search(plan, _tau_mem(context), context.goals["tau_mem"])
    context.state[TAU_MEM_STATE] = np.asarray(outcome.measured, dtype=float)


def _verify_tau_mem(context: CalibrationContext) -> dict[str, np.ndarray]:
    measured = context.measure(_tau_mem(context, choose_switches=False, runs=FINE_RUNS))
    context.state[TAU_MEM_STATE] = measured
    return {"tau_mem": measured}


TAU_MEM_EMBEDDED = register_plan(
    twin(
        TAU_MEM,
        routine=_tau_mem,
        action=_calibrate_tau_mem,
        algorithm=_tau_mem_search,
        after=("threshold",),
        disturbs=("leak" + SUFFIX,),
        verify=_verify_tau_mem,
        extra={"searches": ()},
    )
)


# -- tau_syn --------------------------------------------------------------------------------


def _tau_syn_plan(host: Plan, inhibitory: bool) -> Plan:
    quantity = host.quantities[0].name

    def routine(context: CalibrationContext, **kwargs: Any) -> IntegratedInputTimeConstant:
        tau_mem = context.state.get(TAU_MEM_STATE, context.goals["tau_mem"])
        tau_mem = np.where(np.isfinite(tau_mem), tau_mem, context.goals["tau_mem"])
        return IntegratedInputTimeConstant(
            context.goals[quantity], inhibitory, tau_mem, context.goals["leak"], **kwargs
        )

    def search(target: NeuronTarget) -> SecantSearch:
        goal = target.quantities()[quantity]
        hint = SynapticTimeConstant(goal, inhibitory)
        guess = hint.sweep_hint(goal)[list(hint.HINT_SPREAD).index(1.0)]
        return SecantSearch(guess, steps=TIME_CONSTANT_STEPS, exponent=-1.0)

    def verify(context: CalibrationContext) -> dict[str, np.ndarray]:
        return {quantity: context.measure(routine(context, samples=FINE_SAMPLES))}

    return twin(host, routine=routine, algorithm=search, verify=verify)


TAU_SYN_EXC_EMBEDDED = register_plan(_tau_syn_plan(TAU_SYN_EXC, inhibitory=False))
TAU_SYN_INH_EMBEDDED = register_plan(_tau_syn_plan(TAU_SYN_INH, inhibitory=True))


# -- the CADC steps and the computed ones, as in the host mode ------------------------------

POTENTIAL_STEPS = 6
POTENTIAL_AVERAGE = 4
"""Secant search measurements for a potential: the nominal code, a step along the CapMem-CADC
scale, then secant steps; the last POTENTIAL_AVERAGE are averaged for the final code."""
THRESHOLD_SAMPLE_FACTOR = 2
"""The threshold's reads are noisier than the resting potentials': twice the samples."""
FOLLOWER_DROP_CODES = round(0.70 / 1.76e-3)
"""The design's source-follower drop of the leak and reset potentials (0.70 V) in CapMem codes
(1.76 mV each): the nominal codes of a leak or reset target sit this far above a threshold's."""


def nominal_code(reading: np.ndarray, follower: bool) -> np.ndarray:
    """The CapMem code of a potential of `reading` CADC LSB on a nominal neuron."""
    code = REFERENCE_LOW_CODE + (np.asarray(reading, float) - READ_AT_LOW) * CODES_PER_LSB
    return np.rint(code + (FOLLOWER_DROP_CODES if follower else 0)).astype(np.int64)


def _potential_search(quantity: str, follower: bool) -> Any:
    def search(target: NeuronTarget) -> SecantSearch:
        guess = nominal_code(target.quantities()[quantity], follower)
        return SecantSearch(
            guess, steps=POTENTIAL_STEPS, slope=1 / CODES_PER_LSB, average=POTENTIAL_AVERAGE
        )

    return search


CADC_EMBEDDED = register_plan(twin(CADC))
WORKING_POINT_EMBEDDED = register_plan(twin(WORKING_POINT))
LEAK_EMBEDDED = register_plan(twin(LEAK, algorithm=_potential_search("leak", True)))
RESET_EMBEDDED = register_plan(twin(RESET, algorithm=_potential_search("reset", True)))
THRESHOLD_EMBEDDED = register_plan(
    twin(
        THRESHOLD,
        algorithm=_potential_search("threshold", False),
        routine=lambda context: ThresholdPotential(
            THRESHOLD_SAMPLE_FACTOR * context.options.threshold_samples
        ),
    )
)
PSP_AMPLITUDE_EXC_EMBEDDED = register_plan(twin(PSP_AMPLITUDE_EXC))
PSP_AMPLITUDE_INH_EMBEDDED = register_plan(twin(PSP_AMPLITUDE_INH))
REFERENCE_EXC_EMBEDDED = register_plan(twin(REFERENCE_EXC))
REFERENCE_INH_EMBEDDED = register_plan(twin(REFERENCE_INH))
REFRACTORY_TIME_EMBEDDED = register_plan(twin(REFRACTORY_TIME))
LEAK_FINAL_EMBEDDED = register_plan(twin(LEAK_FINAL))
