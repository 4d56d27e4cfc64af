"""Fitting search: sweep, fit per unit, invert, verify; curves kept."""

import lmfit
import numpy as np
import pytest
from fakes import CurveRoutine, FakeDevice, assert_within_quantisation

from calib.algorithms.binary_search import BinarySearch
from calib.algorithms.fitting import (
    FittingSearch,
    InverseModel,
    LinearModel,
    LmfitModel,
    curves_from_params,
)
from calib.algorithms.prediction import PolynomialModel, TransferCurves
from calib.core.routine import ParameterRange


@pytest.mark.parametrize(
    ("algorithm", "shape", "inverted"),
    [
        (FittingSearch(model="polynomial", sweep=5), "linear", False),
        (FittingSearch(PolynomialModel(1), sweep=5), "linear", True),
        (FittingSearch("linear"), "linear", False),
        (FittingSearch("linear"), "linear", True),
        (FittingSearch("inverse"), "inverse", True),
    ],
)
def test_reaches_the_target_within_quantisation_on_a_noiseless_curve(algorithm, shape, inverted):
    routine = CurveRoutine(shape=shape, inverted=inverted)
    target = routine.reachable_target(0.3)
    outcome = algorithm.run(routine, FakeDevice(), target)
    assert_within_quantisation(routine, outcome.codes, target)


def test_fitting_search_matches_binary_search_residuals_with_fewer_runs():
    routine = CurveRoutine(shape="inverse", noise=2e-4)
    target = routine.reachable_target(0.4)
    fitting = FittingSearch("inverse", correct=True).run(routine, FakeDevice(), target)
    binary = BinarySearch().run(routine, FakeDevice(), target)

    def rms(codes):
        return np.sqrt(np.mean((routine.truth(codes) - target) ** 2))

    assert fitting.steps < binary.steps
    assert rms(fitting.codes) <= 1.05 * rms(binary.codes)


def test_fitting_search_keeps_its_curves_and_predicts_a_new_target_without_a_sweep():
    routine = CurveRoutine(shape="inverse")
    device = FakeDevice()
    search = FittingSearch("inverse")
    outcome = search.run(routine, device, routine.reachable_target(0.3))
    runs = device.stats.runs
    new_target = routine.reachable_target(0.7)
    codes = search.predict(new_target)
    assert device.stats.runs == runs
    assert_within_quantisation(routine, codes, new_target)
    assert set(outcome.models) == {"a", "b", "c0"}
    assert all(values.shape == (512,) for values in outcome.models.values())


def test_stored_model_parameters_rebuild_the_curves():
    routine = CurveRoutine(shape="linear")
    outcome = FittingSearch("linear").run(routine, FakeDevice(), routine.reachable_target())
    rebuilt = TransferCurves(LinearModel(), outcome.models, ParameterRange())
    target = routine.reachable_target(0.7)
    assert_within_quantisation(routine, rebuilt.predict(target), target)


@pytest.mark.parametrize("model", ["linear", "inverse", "polynomial"])
def test_stored_parameters_name_their_model(model):
    routine = CurveRoutine(shape="inverse" if model == "inverse" else "linear")
    search = FittingSearch(model)
    outcome = search.run(routine, FakeDevice(), routine.reachable_target())
    curves = curves_from_params(outcome.models, ParameterRange())
    assert type(curves.model) is type(search.model)
    target = routine.reachable_target(0.6)
    np.testing.assert_array_equal(curves.predict(target), search.predict(target))


def test_unknown_stored_parameters_are_refused():
    with pytest.raises(ValueError, match="match no built-in model"):
        curves_from_params({"gain": np.ones(3)}, ParameterRange())


def test_inverse_model_recovers_the_parameters_of_an_exact_curve():
    rng = np.random.default_rng(1)
    truth = {
        "a": rng.uniform(200, 900, 64),
        "b": rng.uniform(0.0, 0.3, 64),
        "c0": rng.uniform(-80, -5, 64),
    }
    codes = np.array([0, 200, 400, 700, 1022])
    model = InverseModel()
    values = model.evaluate(truth, np.broadcast_to(codes[:, None], (5, 64)))
    fitted = model.fit(codes, values)
    for name in ("a", "b", "c0"):
        np.testing.assert_allclose(fitted[name], truth[name], rtol=1e-3, atol=1e-3)


def test_units_with_unusable_reads_are_reported_and_keep_a_measured_code():
    class DeadUnits(CurveRoutine):
        def measure(self, device):
            values = super().measure(device)
            values[:3] = np.nan
            return values

    routine = DeadUnits(shape="linear")
    outcome = FittingSearch("linear").run(routine, FakeDevice(), routine.reachable_target())
    assert {0, 1, 2} <= set(outcome.reasons)
    assert "linear fit failed" in outcome.reasons[0]
    assert np.all(np.isnan(outcome.models["slope"][:3]))


@pytest.mark.parametrize("inverted", [False, True])
def test_unreachable_units_end_at_the_bound(inverted):
    routine = CurveRoutine(inverted=inverted, unreachable=5)
    outcome = FittingSearch("linear").run(routine, FakeDevice(), routine.reachable_target())
    np.testing.assert_array_equal(np.flatnonzero(outcome.at_bound), np.arange(5))


def test_runs_sweep_plus_verification_and_optional_correction():
    routine = CurveRoutine()
    target = routine.reachable_target()
    search = FittingSearch(model="polynomial", sweep=4, repeats=2)
    assert search.run(routine, FakeDevice(), target).steps == 4 * 2 + 2
    assert (
        FittingSearch("linear", sweep=3, correct=True).run(routine, FakeDevice(), target).steps
        == 3 + 1 + 1
    )


def test_is_reusable():
    search = FittingSearch("inverse")
    routine = CurveRoutine(shape="inverse", noise=1e-3)
    target = routine.reachable_target()
    first = search.run(routine, FakeDevice(), target).codes
    search.run(CurveRoutine(shape="inverse", seed=9), FakeDevice(), target)
    np.testing.assert_array_equal(first, search.run(routine, FakeDevice(), target).codes)


def test_an_lmfit_model_is_fitted_and_inverted():
    def inverse(code, a, b, c0):
        return a / (code - c0) + b

    model = LmfitModel(
        lmfit.Model(inverse), hints={"a": (500.0, 1.0, 1e5), "b": 0.0, "c0": (-10.0, -1000.0, -0.5)}
    )
    routine = CurveRoutine(n_units=16, shape="inverse")
    target = routine.reachable_target()
    search = FittingSearch(model)
    outcome = search.run(routine, FakeDevice(16), target)
    assert_within_quantisation(routine, outcome.codes, target)
    assert set(outcome.models) == {"a", "b", "c0"}


@pytest.mark.parametrize(
    ("make", "named"),
    [
        (lambda: FittingSearch("cubic-spline"), "model"),
        (lambda: FittingSearch("linear", sweep=1), "sweep"),
        (lambda: FittingSearch(repeats=0), "repeats"),
        (lambda: PolynomialModel(0), "degree"),
        (lambda: LmfitModel(lmfit.Model(lambda code, a: a * code), hints={"z": 1.0}), "hints"),
    ],
)
def test_bad_options_name_the_option(make, named):
    with pytest.raises(ValueError, match=named):
        make()


def test_sweep_codes_outside_the_range_are_refused():
    routine = CurveRoutine(n_units=2, parameter_range=ParameterRange(100, 200))
    with pytest.raises(ValueError, match="sweep codes"):
        FittingSearch("linear", sweep=[0, 150]).run(routine, FakeDevice(2), np.zeros(2))


def test_predict_before_any_run_is_refused():
    with pytest.raises(ValueError, match="run the algorithm once"):
        FittingSearch().predict(np.zeros(3))


def test_a_unit_with_one_usable_read_borrows_the_others_pole_and_offset():
    codes = np.array([[100.0, 100.0, 100.0], [200.0, 200.0, 200.0], [400.0, 400.0, 400.0]])
    truth = 1e-3 / (codes - 10.0) + 1e-7
    values = truth.copy()
    values[1:, 2] = np.nan  # the third unit read only at code 100
    params = InverseModel().fit(codes, values)
    assert np.all(np.isfinite([params[name][2] for name in ("a", "b", "c0")]))
    predicted = InverseModel().evaluate(params, np.array([[100.0] * 3, [150.0] * 3]))
    assert predicted[0, 2] == pytest.approx(truth[0, 2], rel=1e-6)  # through its one point
    assert predicted[1, 2] == pytest.approx(1e-3 / 140.0 + 1e-7, rel=0.05)


class CoarseCurveRoutine(CurveRoutine):
    """A curve with a coarse reading (biased by 3 %, so that its use shows) besides the
    precise one, counting which served."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.reads: list[str] = []

    def measure(self, device):
        self.reads.append("precise")
        return super().measure(device)

    def measure_coarse(self, device):
        self.reads.append("coarse")
        return 1.03 * super().measure(device)


def test_a_coarse_sweep_reads_coarsely_only_the_sweep_and_still_lands_precisely():
    routine = CoarseCurveRoutine(shape="inverse")
    target = routine.reachable_target(0.4)
    outcome = FittingSearch("inverse", sweep=4, refine=2, coarse_sweep=True).run(
        routine, FakeDevice(), target
    )
    assert routine.reads == ["coarse"] * 4 + ["precise"] * 3
    # the sweep's bias only places the model: the precise reads near the target decide
    assert_within_quantisation(routine, outcome.codes, target)


def test_without_a_coarse_sweep_every_read_is_precise():
    routine = CoarseCurveRoutine(shape="inverse")
    FittingSearch("inverse", sweep=4, refine=1).run(
        routine, FakeDevice(), routine.reachable_target(0.4)
    )
    assert set(routine.reads) == {"precise"}


def test_a_coarse_sweep_of_a_routine_without_a_coarse_reading_reads_precisely():
    routine = CurveRoutine(shape="inverse")
    target = routine.reachable_target(0.4)
    outcome = FittingSearch("inverse", sweep=4, coarse_sweep=True).run(
        routine, FakeDevice(), target
    )
    assert_within_quantisation(routine, outcome.codes, target)


def test_a_coarse_sweep_far_off_the_precise_reads_does_not_send_a_unit_to_a_bound():
    # Units whose coarse reading runs 40 % high (a defective neuron's CADC decay): the line
    # through the sweep and one precise read would point the wrong way.
    routine = CoarseCurveRoutine(shape="inverse")
    factor = np.where(np.arange(512) < 20, 1.4, 1.0)
    routine.measure_coarse = lambda device: factor * CurveRoutine.measure(routine, device)
    target = routine.reachable_target(0.4)
    outcome = FittingSearch("inverse", sweep=4, refine=2, coarse_sweep=True).run(
        routine, FakeDevice(), target
    )
    assert not outcome.at_bound[:20].any()
    error = np.abs(routine.truth(outcome.codes) / target - 1)
    assert error[:20].max() < 0.02


class SubsetCurveRoutine(CoarseCurveRoutine):
    """A coarse reading that misses the first 20 units (NaN, as a CADC decay a neuron does not
    show), and a precise one that can read a subset, recording which units it read."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.subsets: list[np.ndarray] = []

    def measure_coarse(self, device):
        values = super().measure_coarse(device)
        values[:20] = np.nan
        return values

    def measure_neurons(self, device, neurons):
        self.subsets.append(np.asarray(neurons))
        values = np.full(512, np.nan)
        values[neurons] = CurveRoutine.measure(self, device)[neurons]
        return values


def test_units_a_blind_sweep_left_far_off_are_followed_up_alone():
    outcomes, routines = {}, {}
    for follow_ups in (0, 2):
        routine = SubsetCurveRoutine(shape="inverse")
        target = routine.reachable_target(0.4)
        search = FittingSearch(
            "inverse", sweep=4, refine=1, coarse_sweep=True, follow_ups=follow_ups
        )
        outcomes[follow_ups] = search.run(routine, FakeDevice(), target)
        routines[follow_ups] = routine
    errors = {n: np.abs(routines[n].truth(outcomes[n].codes) / target - 1) for n in outcomes}
    # the refinement alone leaves some of the blind units far off
    assert routines[0].subsets == [] and errors[0][:20].max() > 0.02
    # a few units are read again, the blind ones among them, and those land near the target
    assert 1 <= len(routines[2].subsets) <= 2
    again = np.unique(np.concatenate(routines[2].subsets))
    assert again.size < 256 and np.isin(np.flatnonzero(errors[0][:20] > 0.02), again).all()
    assert errors[2][:20].max() < 0.02
    # the others keep what the search without follow-ups chose
    others = ~np.isin(np.arange(512), again)
    np.testing.assert_array_equal(outcomes[2].codes[others], outcomes[0].codes[others])
