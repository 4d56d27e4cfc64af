"""The working point every neuron measurement starts from: switches, capacitance, a nominal
leak bias for the target time constant, inputs and spiking off, the refractory setting."""

from __future__ import annotations

from calib.core.plans import CalibrationContext, Plan, SettingSpec, register_plan
from calib.routines.nominal import MAX_MEMBRANE_CAPACITANCE, leak_switches, nominal_leak_bias
from calib.routines.refractory import refractory_settings


def configure_working_point(context: CalibrationContext, plan: Plan) -> None:
    tau_mem = context.goals["tau_mem"]
    capacitance = context.target.membrane_capacitance
    context.write(
        {
            "membrane_capacitance": capacitance,
            **leak_switches(tau_mem),
            "i_bias_leak": nominal_leak_bias(tau_mem, capacitance),
            "threshold_enable": 0,
            "reset_hold": 0,
            "syn_exc_enable": 0,
            "syn_inh_enable": 0,
            **refractory_settings(context.goals["refractory_time"]),
        }
    )


WORKING_POINT = register_plan(
    Plan(
        name="working_point",
        rank=1,
        settings=(
            SettingSpec(
                "membrane_capacitance",
                0,
                MAX_MEMBRANE_CAPACITANCE,
                MAX_MEMBRANE_CAPACITANCE,
                unit="units",
                description="capacitance units set on every neuron; not calibrated, "
                "it scales tau_mem",
            ),
        ),
        cells=("membrane_capacitance", "leak_divide", "leak_multiply", "i_bias_leak"),
        action=configure_working_point,
        after=("cadc",),
        recalibratable=False,
    )
)
