"""The command line starts at once: building it imports neither the calibration code nor the
numerical, fitting, plotting, storage or cluster libraries (bench/cli_startup.py prints the
times)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = (
    "numpy",
    "scipy",
    "lmfit",
    "optuna",
    "matplotlib",
    "zarr",
    "xarray",
    "pandas",
    "dask",
    "distributed",
    "pydantic",
    "calib.routines",
    "results_store.store",
)


def imported_after(code: str) -> list[str]:
    """The HEAVY modules loaded after running `code` in a fresh interpreter."""
    probe = (
        f"import sys\n{code}\n"
        f"import json; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    output = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def test_importing_the_command_line_imports_no_heavy_module() -> None:
    assert imported_after("import calib.cli") == []


@pytest.mark.parametrize(
    "args",
    [["--help"], ["--version"], ["show", "--help"], ["nightly", "--help"], ["study", "--help"]],
)
def test_help_and_version_import_no_heavy_module(args: list[str]) -> None:
    code = (
        "import contextlib, io\n"
        f"sys.argv = ['calib', *{args!r}]\n"
        "from calib.cli import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    main()"
    )
    assert imported_after(code) == []


def test_the_calibrate_help_loads_the_plans_but_no_fitting_library() -> None:
    code = (
        "import contextlib, io\n"
        "sys.argv = ['calib', 'calibrate', '--help']\n"
        "from calib.cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(out):\n"
        "    main()\n"
        "assert '--tau-mem' in out.getvalue(), out.getvalue()"
    )
    loaded = imported_after(code)
    assert "calib.routines" in loaded
    assert not {"lmfit", "optuna", "scipy", "matplotlib", "zarr", "dask"} & set(loaded)


def test_the_plans_load_when_first_asked_for() -> None:
    code = (
        "import calib\n"
        "assert 'calib.routines' not in sys.modules\n"
        "assert 'tau_mem' in calib.PLANS.quantities()\n"
        "assert calib.NeuronTarget().tau_mem > 0"
    )
    assert "calib.routines" in imported_after(code)
