"""Routines: one module per calibrated circuit, each declaring its plans.

Importing this package registers every plan in `calib.core.plans.PLANS`; the order below is
only the import order (the calibration's order comes from the plans' `after` and `rank`).

How to write a routine (the leak potential, `neuron_potentials.py`, is the template):

1. A `Routine` subclass (`calib.core.routine`): `name` (the quantity), `parameter` (the cell it
   sets, from `device_model.protocol.CELLS`), `inverted` when a higher code lowers the
   observable, `measurement_settings` for what its measurement needs configured (restored
   afterwards; list cells that belong to the calibrated configuration in `kept_settings`), and
   `measure`: one device run for all neurons, one value per neuron. Routines never search. Put
   numbers in named constants with their meaning; circuit models go in `nominal.py`.
2. A `Plan` at the bottom of the module, registered with `register_plan`: its `QuantitySpec`
   (unit, allowed range, tolerance, default; None for an optional quantity), `routine` (built
   from the calibration context: goals, options, target), the default `algorithm`, `after`
   (what must be calibrated first), `disturbs` (what it moves), and `verify` / `judge` where
   measuring the routine once and comparing with the tolerance does not say it all.
3. Import the module below. The target field, the sequence, partial recalibration, the
   command-line flag, the target-file key and the report units follow from the plan.
"""

from calib.routines import (  # noqa: F401  (each module registers its plans on import)
    adex,
    cadc,
    coba,
    compartments,
    embedded,
    firing_rate,
    holdoff,
    membrane,
    neuron_potentials,
    refractory,
    synapse_weight,
    synaptic_input,
    threshold_madc,
    working_point,
)
