"""A result in a notebook: a compact HTML summary and an xarray Dataset with units."""

from __future__ import annotations

import numpy as np
import pytest
from result_factory import make_result

from calib.core.plans import PLANS


def test_the_html_summary_has_a_row_per_quantity_in_display_units() -> None:
    result = make_result(failures=4)
    html = result._repr_html_()
    assert html.startswith("<table") and html.count("<tr>") == len(result.achieved) + 1
    assert f"{int(result.success.sum())}/512 neurons calibrated" in html
    good = result.achieved["tau_mem"][result.success]
    assert f"{np.median(good) * 1e6:.4g}" in html  # tau_mem shown in µs
    assert "µs" in html


def test_the_html_summary_escapes_the_chip_id() -> None:
    result = make_result(chip_id="chip-<b>")  # not a valid store id, but a result may hold it
    assert "chip-&lt;b&gt;" in result._repr_html_()


def test_to_xarray_has_named_dimensions_units_and_long_names() -> None:
    result = make_result()
    dataset = result.to_xarray()
    assert dataset.sizes["neuron"] == 512
    tau = dataset["achieved.tau_mem"]
    assert tau.dims == ("neuron",)
    assert tau.attrs["units"] == PLANS.quantities()["tau_mem"].unit == "s"
    assert tau.attrs["long_name"]
    np.testing.assert_array_equal(tau.values, result.achieved["tau_mem"])
    np.testing.assert_array_equal(dataset["success"].values, result.success)
    target = dataset["target.tau_mem"]
    assert np.all(target.values == result.target.tau_mem)
    per_quadrant = [cell for cell, codes in result.codes.items() if np.asarray(codes).size == 4]
    if per_quadrant:
        assert dataset[f"codes.{per_quadrant[0]}"].dims == ("quadrant",)
    assert int(dataset["neuron_quadrant"].sel(neuron=300)) == 2
    assert dataset.attrs["target_fingerprint"] == result.target.fingerprint()


def test_to_xarray_selects_by_quadrant_like_a_user_would() -> None:
    result = make_result()
    dataset = result.to_xarray()
    by_quadrant = dataset["achieved.leak"].groupby("neuron_quadrant").median()
    expected = [np.nanmedian(result.achieved["leak"][q * 128 : (q + 1) * 128]) for q in range(4)]
    assert by_quadrant.values == pytest.approx(expected)
