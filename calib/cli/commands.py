"""The chip commands of `calib`: calibrate, show, history, export, check, report and friends.

Times on the command line are microseconds (µs) of hardware time, potentials CADC LSB. The
chip is the simulated chip (the default backend); its simulation settings are stored with each
result, so `calib check` rebuilds the same chip unless told to change it (e.g. to age it).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from calib.cli.app import (
    CLIError,
    CommandFailed,
    ExitCode,
    JsonOption,
    RunOption,
    StoreOption,
    app,
    check_chip,
    check_output_file,
    error_console,
    one_line,
    open_store,
    output_console,
    print_json,
)
from calib.cli.tables import ESSENTIAL, Column, fitted_table
from calib.cli.target_flags import TARGET_PANEL, TargetFlagsCommand, with_target_flags
from device_model.limits import MAX_DRIFT_HOURS, MAX_SCALE
from reports.text import terminal_safe

if TYPE_CHECKING:
    from calib.core.results import NeuronResult
    from results_store import ResultsStore, RunInfo

# numpy, the plans, the results and the store are imported inside the commands that use
# them, so that building the command line (and every --help) stays quick.


DEFAULT_MAX_FAILED = 0.03
DEFAULT_HISTORY_IN_REPORT = 50
"""Runs of the same chip and target an HTML report loads for its drift plots."""
NEURON_RESULT_KIND = "neuron_result"
MAC_RESULT_KIND = "mac_result"
CHECK_KIND = "check_record"
"""Store kinds (calib.core.results, calib.core.checks), named here so that building the
command line does not import them."""

SIMULATION_PANEL = "Simulated chip"
OUTPUT_PANEL = "Store and output"
DEVICE_PANEL = "Chip"
MAC_PANEL = "MAC mode (--mode mac)"


class CalibrationMode(StrEnum):
    host = "host"
    embedded = "embedded"
    mac = "mac"


DeviceOption = Annotated[
    str | None,
    typer.Option(
        "--device",
        metavar="HOST:PORT",
        rich_help_panel=DEVICE_PANEL,
        help="Work on the chip served at this address ('calib serve') instead of a simulated "
        "chip; the simulation options then do not apply.",
    ),
]
TokenFileOption = Annotated[
    Path | None,
    typer.Option(
        "--token-file",
        metavar="FILE",
        rich_help_panel=DEVICE_PANEL,
        help="With --device: the shared token a server on a non-loopback address asks for "
        "(default: $CALIB_DEVICE_TOKEN).",
    ),
]


def check_device_options(
    simulation: Simulation, address: str | None, token_file: Path | None
) -> None:
    """--device and the simulation options exclude each other (checked before anything is
    made)."""
    if address is None:
        if token_file is not None:
            raise CLIError("--token-file applies only with --device HOST:PORT")
    elif simulation != Simulation():
        raise CLIError(
            "--mismatch-scale, --noise-scale, --drift-hours, --seed and --faults "
            "describe a simulated chip; with --device they apply where the chip is "
            "served ('calib serve')"
        )


def open_chip(
    chip: str, simulation: Simulation, address: str | None, token_file: Path | None
) -> tuple[Any, dict[str, Any]]:
    """The device to work on and how to describe it in the result's provenance: the chip
    served at `address`, else the simulated chip."""
    check_device_options(simulation, address, token_file)
    if address is None:
        return simulation.chip(chip), {"simulation": simulation.to_dict()}
    from device_remote import open_device

    return (
        open_device(address, chip, token_file=token_file),
        {"device": {"backend": "remote", "address": address}},
    )


def close_device(device: Any) -> None:
    close = getattr(device, "close", None)
    if callable(close):
        close()


# -- shared arguments ---------------------------------------------------------------------------

ChipArgument = Annotated[
    str,
    typer.Argument(
        metavar="CHIP",
        callback=check_chip,
        help="Chip id: letters, digits, '.', '_' and '-', starting with a letter or digit.",
    ),
]


@dataclass(frozen=True)
class Simulation:
    """How the simulated chip is built; stored with every result for later checks."""

    seed: int | None = None
    mismatch_scale: float = 1.0
    noise_scale: float = 1.0
    drift_hours: float = 0.0
    faults: bool = False

    def chip(self, chip_id: str) -> Any:
        from device_model.chip import SimulatedChip
        from device_model.mismatch import Faults

        return SimulatedChip(
            chip_id,
            seed=self.seed,
            mismatch_scale=self.mismatch_scale,
            noise_scale=self.noise_scale,
            drift_hours=self.drift_hours,
            faults=Faults.typical() if self.faults else None,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"backend": "simulated", **asdict(self)}

    @classmethod
    def stored_with(cls, result: NeuronResult) -> Simulation:
        """The simulation a result was calibrated on (defaults when it was not recorded)."""
        stored = dict(result.provenance.extra.get("simulation") or {})
        known = {name: stored[name] for name in asdict(cls()) if name in stored}
        return cls(**known)

    def describe(self) -> str:
        seed = "from chip id" if self.seed is None else str(self.seed)
        return (
            f"simulated chip (seed {seed}, mismatch ×{self.mismatch_scale:g}, noise "
            f"×{self.noise_scale:g}, aged {self.drift_hours:g} h"
            f"{', typical faults' if self.faults else ''})"
        )


def _sim_option(flag: str, help_text: str, **kwargs: Any) -> Any:
    return typer.Option(flag, help=help_text, rich_help_panel=SIMULATION_PANEL, **kwargs)


MismatchOption = Annotated[
    float | None,
    _sim_option(
        "--mismatch-scale",
        "Multiplies every fixed-pattern spread (0: an ideal chip).",
        min=0.0,
        max=MAX_SCALE,
        metavar="SCALE",
    ),
]
NoiseOption = Annotated[
    float | None,
    _sim_option(
        "--noise-scale",
        "Multiplies every temporal noise (0: noiseless readouts).",
        min=0.0,
        max=MAX_SCALE,
        metavar="SCALE",
    ),
]
DriftOption = Annotated[
    float | None,
    _sim_option(
        "--drift-hours",
        "Age of the chip in hours: its offsets random-walk with age.",
        min=0.0,
        max=MAX_DRIFT_HOURS,
        metavar="HOURS",
    ),
]
SeedOption = Annotated[
    int | None,
    _sim_option(
        "--seed",
        "Seed of the chip's mismatch (default: derived from the chip id).",
        min=0,
        metavar="SEED",
    ),
]
FaultsOption = Annotated[
    bool | None,
    _sim_option(
        "--faults/--no-faults",
        "Inject typical faults: dead and stuck neurons, transient run failures.",
    ),
]


# -- loading stored results ---------------------------------------------------------------------


def neuron_runs(store: ResultsStore, chip: str) -> list[RunInfo]:
    """The neuron calibrations of `chip`, oldest first; a usage error when there are none."""
    runs = [info for info in store.history(chip) if info.kind == NEURON_RESULT_KIND]
    if not runs:
        chips = store.chips()
        known = f"; chips there: {', '.join(chips)}" if chips else "; the store is empty"
        raise CLIError(f"chip {chip!r} has no stored calibration in {store.location}{known}")
    return runs


def load_result(store: ResultsStore, chip: str, run: str | None) -> tuple[NeuronResult, str]:
    """The given run of `chip`, or its newest calibration, with its run id."""
    from calib.core.results import NeuronResult  # registers its store kind before the load

    if run is None:
        run = neuron_runs(store, chip)[-1].run_id
    result = store.get(chip, run)
    if not isinstance(result, NeuronResult):
        raise CLIError(f"run {run} of chip {chip!r} is not a neuron calibration")
    return result, run


def report_history(
    store: ResultsStore,
    chip: str,
    run_id: str,
    result: NeuronResult,
    limit: int = DEFAULT_HISTORY_IN_REPORT,
) -> list[tuple[Any, NeuronResult]]:
    """Up to `limit` calibrations of the chip for the same target, ending with `run_id`."""
    from results_store.ids import run_time

    fingerprint = result.target.fingerprint()
    earlier = [
        info
        for info in neuron_runs(store, chip)
        if info.target_fingerprint == fingerprint and info.run_id < run_id
    ]
    earlier = earlier[len(earlier) - (limit - 1) :] if limit > 1 else []
    return [
        *((info.saved_at, store.get(chip, info.run_id)) for info in earlier),
        (run_time(run_id), result),
    ]


def write_report(
    store: ResultsStore,
    chip: str,
    run_id: str,
    result: NeuronResult,
    path: Path,
    history_limit: int = DEFAULT_HISTORY_IN_REPORT,
) -> Path:
    from calib.core.checks import CheckRecord  # registers the check kind before the loads
    from reports import write_html_report

    history = report_history(store, chip, run_id, result, history_limit)
    fingerprint = result.target.fingerprint()
    infos = [
        info
        for info in store.history(chip)
        if info.kind == CHECK_KIND and info.attrs.get("checked_target_fingerprint") == fingerprint
    ]
    checks = [(info.saved_at, store.get(chip, info.run_id)) for info in infos[-history_limit:]]
    return write_html_report(
        result,
        path,
        history=history if len(history) > 1 else None,
        checks=[(time, check) for time, check in checks if isinstance(check, CheckRecord)],
    )


# -- calibrate ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetChoice:
    target: Any
    """A NeuronTarget, or a MacTarget in MAC mode."""
    source: str
    nir: Any = None
    """The NirMapping when the target came from a NIR graph."""


def choose_target(
    target_file: Path | None,
    flags: dict[str, Any],
    nir_file: Path | None,
    speedup: float | None,
    clip: bool = False,
) -> TargetChoice:
    """The target from a NIR graph, or a TOML file with command-line flags on top."""
    from calib.cli.target_file import build_target, read_target_file

    given = {name: value for name, value in flags.items() if value is not None}
    if nir_file is None:
        if speedup is not None or clip:
            raise CLIError(
                f"{'--speedup' if speedup is not None else '--clip'} applies only with --nir FILE"
            )
        values: dict[str, Any] = {}
        source = "defaults"
        if target_file is not None:
            values = read_target_file(target_file)
            source = str(target_file)
            build_target(values, source)  # report the file's own errors under its name
        values.update(given)
        if given:
            source = f"{source} + flags" if target_file is not None else "flags"
        return TargetChoice(build_target(values, None if given else source), source)
    if target_file is not None or given:
        raise CLIError("--nir sets the whole target: leave out --target and the target flags")
    mapping = map_nir_graph(nir_file, speedup, clip)
    return TargetChoice(mapping.target, f"NIR graph {mapping.graph_name!r}", mapping)


def mac_target_choice(
    target_file: Path | None,
    flags: dict[str, Any],
    nir_file: Path | None,
    speedup: float | None,
    clip: bool,
    mac_flags: dict[str, float | int | None],
) -> TargetChoice:
    """The MAC-mode target from its flags; the neuron-target options are errors here."""
    given = [
        name
        for name, value in (("--target", target_file), ("--nir", nir_file), ("--speedup", speedup))
        if value is not None
    ]
    given += ["--clip"] if clip else []
    given += [f"--{name.replace('_', '-')}" for name, value in flags.items() if value is not None]
    if given:
        raise CLIError(
            f"{', '.join(given)} set a neuron target; --mode mac takes the --mac-* options"
        )
    from calib.mac import MacTarget

    values: dict[str, Any] = {}
    for flag, field, scale in (
        ("--mac-baseline", "baseline", 1.0),
        ("--mac-amplitude", "amplitude", 1.0),
        ("--mac-gm-bias", "i_synin_gm", None),
        ("--mac-max-tau-syn", "max_tau_syn", 1e-6),
    ):
        value = mac_flags[flag]
        if value is not None:
            values[field] = value if scale is None else value * scale
    try:
        target = MacTarget(**values)
    except ValueError as error:
        raise CLIError(f"--mode mac: {error}") from None
    return TargetChoice(target, "MAC flags" if values else "MAC defaults")


def map_nir_graph(path: Path, speedup: float | None, clip: bool) -> Any:
    """The graph's NirMapping; errors name every offending parameter on one line."""
    from calib.frontends.model_units import DEFAULT_SPEEDUP
    from calib.frontends.nir import NirMappingError, targets_from_nir

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            mapping = targets_from_nir(
                path, speedup=DEFAULT_SPEEDUP if speedup is None else speedup, clip=clip
            )
        except NirMappingError as error:
            if not error.problems:
                raise
            headline = str(error).splitlines()[0].rstrip(":")
            hints = list(error.problems)
            if error.feasible_speedups is not None:
                low, high = error.feasible_speedups
                hints.append(
                    f"--speedup from {low:.4g} to {high:.4g} makes every time constant fit"
                )
            hints.append("--clip clips the values into range instead")
            raise CLIError(f"{headline}: {'; '.join(hints)}") from error
    for warning in caught:
        error_console().print(
            Text(f"warning: {one_line(str(warning.message))}", style="yellow"), soft_wrap=True
        )
    return mapping


def nir_provenance(mapping: Any) -> dict[str, Any]:
    return {
        "graph_name": mapping.graph_name,
        "content_hash": mapping.content_hash,
        "source": mapping.source,
        "speedup": mapping.speedup,
        "neuron_count": mapping.neuron_count,
        "notes": list(mapping.notes),
    }


def calibrate_with_progress(
    device: Any,
    target: Any,
    extra: dict[str, Any],
    console: Console,
    mode: str = "host",
    options: Any = None,
) -> Any:
    """calibrate() (or, in MAC mode, calibrate_mac()) with a progress bar over its steps (on
    stderr)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    from calib.sequences.calibrate import calibrate

    columns = (
        SpinnerColumn(),
        TextColumn("[bold cyan]{task.fields[chip]}"),
        TextColumn("{task.description:<18}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("steps"),
        TimeElapsedColumn(),
    )
    step = "start"
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("starting", total=None, chip=device.chip_id)

        def on_step(name: str, index: int, total: int) -> None:
            nonlocal step
            step = name
            progress.update(task, description=name, completed=index, total=total)

        # Warnings printed mid-run would tear the progress bar; they are summed up after it.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            try:
                if mode == CalibrationMode.mac:
                    from calib.mac import calibrate_mac

                    result = calibrate_mac(device, target, progress=on_step, provenance_extra=extra)
                else:
                    result = calibrate(
                        device,
                        target,
                        progress=on_step,
                        provenance_extra=extra,
                        mode=mode,
                        options=options,
                    )
            except Exception as error:
                raise CommandFailed(
                    f"calibration of chip {device.chip_id!r} stopped in step {step!r}: "
                    f"{type(error).__name__}: {error}"
                ) from error
        total = progress.tasks[0].total or 1
        progress.update(task, description="done", completed=total, total=total)
    if caught:
        first = caught[0]
        console.print(
            Text(
                f"note: {len(caught)} warning{'s' if len(caught) != 1 else ''} during the "
                f"calibration, the first: {first.category.__name__}: {one_line(str(first.message))}"
                f" ({Path(first.filename).name}:{first.lineno})",
                style="yellow",
            ),
            soft_wrap=True,
        )
    return result


@app.command(rich_help_panel="Calibrate", cls=TargetFlagsCommand)
@with_target_flags
def calibrate(
    chip: Annotated[
        str,
        typer.Option(
            "--chip",
            metavar="CHIP",
            callback=check_chip,
            rich_help_panel="Chip",
            help="Chip id: letters, digits, '.', '_' and '-'; the same id is the same chip.",
        ),
    ],
    target_file: Annotated[
        Path | None,
        typer.Option(
            "--target",
            metavar="FILE.toml",
            rich_help_panel=TARGET_PANEL,
            help="TOML file of target fields in µs and CADC LSB; flags below override it.",
        ),
    ] = None,
    target_flags: dict[str, float | None] | None = None,
    nir_file: Annotated[
        Path | None,
        typer.Option(
            "--nir",
            metavar="FILE",
            rich_help_panel="Target from a NIR graph",
            help="Calibrate the neurons of a NIR graph (.nir file) instead of a target.",
        ),
    ] = None,
    speedup: Annotated[
        float | None,
        typer.Option(
            "--speedup",
            metavar="S",
            rich_help_panel="Target from a NIR graph",
            help="With --nir: model time / hardware time (default 1000).",
        ),
    ] = None,
    clip: Annotated[
        bool,
        typer.Option(
            "--clip",
            rich_help_panel="Target from a NIR graph",
            help="With --nir: clip values that do not fit the chip into range (with a warning) "
            "instead of refusing the graph.",
        ),
    ] = False,
    mode: Annotated[
        CalibrationMode,
        typer.Option(
            "--mode",
            rich_help_panel=DEVICE_PANEL,
            help="host: the spiking neuron calibration driven from the host; embedded: the same "
            "on the chip's embedded processors (CADC and spike counters only, no host in "
            "the loop); mac: the non-spiking matrix-multiply mode.",
        ),
    ] = CalibrationMode.host,
    embedded: Annotated[
        bool,
        typer.Option("--embedded", rich_help_panel=DEVICE_PANEL, help="Short for --mode embedded."),
    ] = False,
    threshold_method: Annotated[
        str,
        typer.Option(
            "--threshold-method",
            metavar="METHOD",
            rich_help_panel=DEVICE_PANEL,
            help="How the threshold is measured: cadc (default) or madc (MADC traces, "
            "cross-checked against the CADC in the result; slower).",
        ),
    ] = "cadc",
    device_address: DeviceOption = None,
    token_file: TokenFileOption = None,
    mac_baseline: Annotated[
        float | None,
        typer.Option(
            "--mac-baseline",
            metavar="LSB",
            rich_help_panel=MAC_PANEL,
            help="Membrane reading before integration, CADC LSB (default 120).",
        ),
    ] = None,
    mac_amplitude: Annotated[
        float | None,
        typer.Option(
            "--mac-amplitude",
            metavar="LSB",
            rich_help_panel=MAC_PANEL,
            help="Integrated reading of the reference pattern, CADC LSB (default: the chip's "
            "median).",
        ),
    ] = None,
    mac_gm_bias: Annotated[
        int | None,
        typer.Option(
            "--mac-gm-bias",
            metavar="CODE",
            rich_help_panel=MAC_PANEL,
            help="Synaptic input transconductance bias (default 450).",
        ),
    ] = None,
    mac_max_tau_syn: Annotated[
        float | None,
        typer.Option(
            "--mac-max-tau-syn",
            metavar="µs",
            rich_help_panel=MAC_PANEL,
            help="Longest synaptic time constant the mode accepts, µs (default 0.6).",
        ),
    ] = None,
    store: StoreOption = None,
    max_failed: Annotated[
        float,
        typer.Option(
            "--max-failed",
            metavar="FRACTION",
            min=0.0,
            max=1.0,
            rich_help_panel=OUTPUT_PANEL,
            help="Largest fraction of failed neurons that still counts as a complete "
            "calibration; above it the command exits 1.",
        ),
    ] = DEFAULT_MAX_FAILED,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            metavar="FILE",
            rich_help_panel=OUTPUT_PANEL,
            help="Also write the HTML report (plots, tables, drift over the chip's history).",
        ),
    ] = None,
    mismatch_scale: MismatchOption = 1.0,
    noise_scale: NoiseOption = 1.0,
    drift_hours: DriftOption = 0.0,
    seed: SeedOption = None,
    faults: FaultsOption = False,
) -> None:
    """Calibrate every neuron of a chip to a target and store the result.

    Times are in microseconds (µs) of hardware time, potentials in CADC LSB. The target is
    the default LIF target, a TOML file (--target), single fields (--tau-mem 12 ...), or the
    neurons of a NIR graph (--nir). Exits 1 when more than --max-failed of the neurons failed.
    """
    import numpy as np

    flags = dict(target_flags or {})
    out, err = output_console(), error_console()
    if embedded:
        if mode is not CalibrationMode.host and mode is not CalibrationMode.embedded:
            raise CLIError(f"--embedded is --mode embedded; it contradicts --mode {mode.value}")
        mode = CalibrationMode.embedded
    mac_flags = {
        "--mac-baseline": mac_baseline,
        "--mac-amplitude": mac_amplitude,
        "--mac-gm-bias": mac_gm_bias,
        "--mac-max-tau-syn": mac_max_tau_syn,
    }
    if mode is CalibrationMode.mac:
        choice = mac_target_choice(target_file, flags, nir_file, speedup, clip, mac_flags)
        if html is not None:
            raise CLIError(
                "--html: the HTML report covers neuron calibrations; a MAC "
                "calibration prints its summary"
            )
    else:
        given = [flag for flag, value in mac_flags.items() if value is not None]
        if given:
            raise CLIError(f"{', '.join(given)} apply only with --mode mac")
        choice = choose_target(target_file, flags, nir_file, speedup, clip)
        from calib.sequences.lif import check_target

        check_target(choice.target, mode.value)  # contradicting fields: before anything runs
    check_output_file(html, "--html")
    options = None
    if threshold_method != "cadc":
        from calib.sequences.session import THRESHOLD_METHOD_NAMES, CalibrationOptions

        if threshold_method not in THRESHOLD_METHOD_NAMES or mode is not CalibrationMode.host:
            raise CLIError(
                f"--threshold-method {threshold_method!r}: choose "
                f"{' or '.join(THRESHOLD_METHOD_NAMES)} (other than cadc only in host mode)"
            )
        options = CalibrationOptions(threshold_method=threshold_method)
    simulation = Simulation(
        seed=seed,
        mismatch_scale=1.0 if mismatch_scale is None else mismatch_scale,
        noise_scale=1.0 if noise_scale is None else noise_scale,
        drift_hours=drift_hours or 0.0,
        faults=bool(faults),
    )
    check_device_options(simulation, device_address, token_file)
    results = open_store(store, create=True)
    results.check_writable()  # a read-only store found now, not after the calibration
    device, described = open_chip(chip, simulation, device_address, token_file)
    extra: dict[str, Any] = {**described, "target_source": choice.source, "mode": mode.value}
    if choice.nir is not None:
        out.print(Text(choice.nir.summary()))
        extra["nir"] = nir_provenance(choice.nir)
    where = (
        f"the chip served at {escape(device_address)}"
        if device_address is not None
        else f"a {simulation.describe()}"
    )
    err.print(
        f"calibrating chip [bold cyan]{escape(chip)}[/] ({mode.value} mode) on {where}, "
        f"target from {escape(choice.source)}"
    )
    try:
        result = calibrate_with_progress(
            device, choice.target, extra, err, mode.value, options=options
        )
    finally:
        close_device(device)
    run_id = results.save(result)
    if mode is CalibrationMode.mac:
        out.print(Text(result.summary()))
        out.print(f"stored as run [bold]{run_id}[/] in {escape(results.location)}")
        failed = 1.0 - float(np.mean(result.neuron_success))
        if failed > max_failed:
            err.print(
                f"[bold red]calibration incomplete:[/] {100 * failed:.1f} % of the "
                f"neurons failed (allowed: {100 * max_failed:.1f} %, see --max-failed)"
            )
            raise typer.Exit(int(ExitCode.INCOMPLETE))
        return

    from reports import render_summary

    render_summary(result, out)
    out.print(f"stored as run [bold]{run_id}[/] in {escape(results.location)}")
    if html is not None:
        path = write_report(results, chip, run_id, result, html)
        out.print(f"HTML report: {escape(str(path))}")
    failed = 1.0 - float(np.mean(result.success))
    if failed > max_failed:
        err.print(
            f"[bold red]calibration incomplete:[/] {100 * failed:.1f} % of the neurons "
            f"failed (allowed: {100 * max_failed:.1f} %, see --max-failed)"
        )
        raise typer.Exit(int(ExitCode.INCOMPLETE))


# -- reading commands ---------------------------------------------------------------------------


def provenance_lines(result: NeuronResult, run_id: str) -> list[str]:
    """What a result says of where it comes from (stored text, shown safely)."""
    return [terminal_safe(line) for line in _provenance_lines(result, run_id)]


def _provenance_lines(result: NeuronResult, run_id: str) -> list[str]:
    extra = result.provenance.extra
    lines = [
        f"run {run_id} · target {result.target.fingerprint()}"
        f" ({extra.get('target_source', 'set through the API')})"
    ]
    if "simulation" in extra:
        lines.append(f"device: {Simulation.stored_with(result).describe()}")
    nir = extra.get("nir")
    if nir:
        lines.append(
            f"NIR graph {nir.get('graph_name')!r} ({nir.get('content_hash')}), "
            f"speed-up {nir.get('speedup')}, {nir.get('neuron_count')} neurons"
        )
    return lines


@app.command(rich_help_panel="Inspect")
def show(
    chip: ChipArgument,
    run: RunOption = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Summary of a chip's newest (or a given) calibration: targets, medians, spreads, failures."""
    results = open_store(store)
    if run is None:
        newest = [info for info in results.history(chip) if info.kind == MAC_RESULT_KIND]
        neuron = [info for info in results.history(chip) if info.kind == NEURON_RESULT_KIND]
        if newest and (not neuron or newest[-1].run_id > neuron[-1].run_id):
            run = newest[-1].run_id
    if run is not None and results.info(chip, run).kind == MAC_RESULT_KIND:
        show_mac(results, chip, run, as_json)
        return
    result, run_id = load_result(results, chip, run)
    if as_json:
        print_json(result_document(result, run_id))
        return
    from reports import render_summary

    out = output_console()
    for line in provenance_lines(result, run_id):
        out.print(Text(line, style="dim"))
    render_summary(result, out)


def show_mac(results: ResultsStore, chip: str, run_id: str, as_json: bool) -> None:
    """`calib show` of a MAC-mode calibration."""
    import numpy as np

    from calib.mac import MacResult

    result = results.get(chip, run_id)
    if not isinstance(result, MacResult):
        raise CLIError(f"run {run_id} of chip {chip!r} is not a MAC calibration")
    if as_json:
        print_json(
            {
                "chip": result.chip_id,
                "run_id": run_id,
                "kind": MAC_RESULT_KIND,
                "target_fingerprint": result.target.fingerprint(),
                "neuron_success_fraction": float(np.mean(result.neuron_success)),
                "driver_success_fraction": float(np.mean(result.driver_success)),
                "failures": {str(key): value for key, value in result.failures().items()},
            }
        )
        return
    out = output_console()
    out.print(Text(f"run {run_id} · MAC target {result.target.fingerprint()}", style="dim"))
    out.print(Text(result.summary()))
    failures = result.failures()
    if failures:
        out.print(
            Text(
                f"{len(failures)} failures, the first: "
                + "; ".join(f"{key}: {why}" for key, why in list(failures.items())[:3])
            )
        )


def result_document(result: NeuronResult, run_id: str) -> dict[str, Any]:
    """What `calib show` prints, as data: values in the quantities' stored units."""
    from calib.core.plans import PLANS
    from reports.summary import summarize

    summary = summarize(result)
    specs = PLANS.quantities()
    extra = result.provenance.extra
    return {
        "chip": result.chip_id,
        "run_id": run_id,
        "kind": NEURON_RESULT_KIND,
        "created": summary.created,
        "target_fingerprint": result.target.fingerprint(),
        "target_source": extra.get("target_source"),
        "simulation": extra.get("simulation"),
        "algorithm": summary.algorithm,
        "neurons": summary.n_neurons,
        "successful_neurons": summary.n_success,
        "success_fraction": summary.success_fraction,
        "device_runs": summary.device_runs,
        "hardware_time_s": summary.hardware_time,
        "host_time_s": summary.duration,
        "quantities": {
            row.name: {
                "unit": specs[row.name].unit if row.name in specs else None,
                "target_median": row.target_median,
                "achieved_median": row.achieved_median,
                "std_before": row.std_before,
                "std_after": row.std_after,
                "within_tolerance": row.within_tolerance,
                "failed": row.failed,
            }
            for row in summary.rows
        },
        "failures": [
            {"neurons": list(group.neurons), "reason": group.label}
            for group in summary.failure_groups
        ],
    }


def failed_neurons(attrs: dict[str, Any]) -> set[int]:
    """The neurons a stored run's metadata names as failed (records of version 2, or the text
    reasons of version 1): every failed neuron has at least one."""
    records = attrs.get("failures")
    if records is not None:
        return {int(record["neuron"]) for record in records if "neuron" in record}
    return {int(neuron) for neuron in attrs.get("reasons") or {}}


@dataclass(frozen=True)
class RunRow:
    """What `calib history` shows of one run, read from its metadata alone (no arrays)."""

    saved: str
    run_id: str
    kind: str
    """'calibration' or 'check'."""
    target: str
    success: float | None
    """Fraction of calibrated neurons (None for a check)."""
    holds: bool | None
    """Whether a check found the calibration holding (None for a calibration)."""
    hardware_time: float | None
    source: str
    """Where the target came from; for a check, the run it checked and what moved."""
    quantities: dict[str, Any]
    """A check's per-quantity figures (median shift, spread, out of tolerance)."""
    checked_run: str | None = None

    @classmethod
    def of(cls, info: RunInfo) -> RunRow:
        attrs = info.attrs
        saved = info.saved_at.strftime("%Y-%m-%d %H:%M")
        if info.kind == CHECK_KIND:
            quantities = dict(attrs.get("quantities") or {})
            stale = [name for name, item in quantities.items() if item.get("stale")]
            return cls(
                saved=saved,
                run_id=info.run_id,
                kind="check",
                target=str(attrs.get("checked_target_fingerprint") or "-"),
                success=None,
                holds=bool(attrs.get("holds")),
                hardware_time=None,
                source=(
                    f"check of {attrs.get('checked_run') or '-'}"
                    + (f"; stale: {', '.join(stale)}" if stale else "")
                ),
                checked_run=attrs.get("checked_run"),
                quantities=quantities,
            )
        mac = info.kind == MAC_RESULT_KIND
        spec = info.arrays.get("success/neurons" if mac else "success")
        n_neurons = spec.shape[0] if spec is not None and spec.shape else 0
        failed = len(attrs.get("neuron_reasons") or {}) if mac else len(failed_neurons(attrs))
        provenance = attrs.get("provenance") or {}
        extra = provenance.get("extra") or {}
        nir = extra.get("nir") or {}
        return cls(
            saved=saved,
            run_id=info.run_id,
            kind="MAC calibration" if mac else "calibration",
            target=str(info.target_fingerprint or "-"),
            success=(n_neurons - failed) / n_neurons if n_neurons else float("nan"),
            holds=None,
            hardware_time=(provenance.get("device_stats") or {}).get("hardware_time"),
            source=(
                terminal_safe(
                    f"NIR {nir.get('graph_name')}" if nir else extra.get("target_source", "-")
                )
            ),
            quantities={},
        )

    def outcome(self) -> str:
        if self.kind == "check":
            return "holds" if self.holds else "drifted"
        return "-" if self.success is None else f"{100 * self.success:.1f} %"

    def cells(self) -> tuple[str, ...]:
        from reports.units import format_duration

        return (
            self.saved,
            self.run_id,
            self.kind,
            self.target,
            self.outcome(),
            format_duration(self.hardware_time),
            self.source,
        )

    def to_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "saved": self.saved,
            "run_id": self.run_id,
            "kind": self.kind,
            "target_fingerprint": None if self.target == "-" else self.target,
        }
        if self.kind == "check":
            document.update(holds=self.holds, quantities=self.quantities, detail=self.source)
        else:
            document.update(
                success_fraction=self.success,
                hardware_time_s=self.hardware_time,
                target_source=self.source,
            )
        return document


HISTORY_COLUMNS = (
    Column("saved (UTC)", priority=10),  # the run id starts with the same time: dropped first
    Column("run id", priority=ESSENTIAL),
    Column("kind", priority=ESSENTIAL),
    Column("target", priority=40),
    Column("success", justify="right", priority=ESSENTIAL),
    Column("hw time", justify="right", priority=20),
    Column("target from / note", wrap=True, min_width=16, priority=30),
)


def history_runs(store: ResultsStore, chip: str) -> list[RunInfo]:
    """The calibrations and checks of `chip`, oldest first; a usage error when it has no
    calibration."""
    runs = [
        info
        for info in store.history(chip)
        if info.kind in (NEURON_RESULT_KIND, MAC_RESULT_KIND, CHECK_KIND)
    ]
    if not any(info.kind != CHECK_KIND for info in runs):
        neuron_runs(store, chip)  # the error naming the known chips
    return runs


@app.command(rich_help_panel="Inspect")
def history(
    chip: ChipArgument,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", min=1, help="Show only the newest N runs.")
    ] = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Table of a chip's stored calibrations and checks, oldest first."""
    results = open_store(store)
    runs = history_runs(results, chip)
    shown = runs if limit is None else runs[-limit:]
    rows = [RunRow.of(info) for info in shown]
    if as_json:
        print_json(
            {
                "chip": chip,
                "store": results.location,
                "runs_stored": len(runs),
                "runs": [row.to_dict() for row in rows],
            }
        )
        return
    out = output_console()
    cells = []
    calibration = None
    for row in rows:
        text = list(row.cells())
        if row.kind == "calibration":
            calibration = row.run_id
        elif row.checked_run is not None and row.checked_run == calibration:
            text[-1] = text[-1].replace(f"check of {calibration}", "checks the calibration above")
        cells.append([escape(cell) for cell in text])
    checks = sum(1 for info in runs if info.kind == CHECK_KIND)
    title = (
        f"history of chip {escape(chip)}: {len(runs) - checks} calibration"
        f"{'s' if len(runs) - checks != 1 else ''}, {checks} check"
        f"{'s' if checks != 1 else ''}"
    )
    out.print(fitted_table(out, HISTORY_COLUMNS, cells, title=title, collapse_padding=True))


class ExportFormat(StrEnum):
    json = "json"
    netcdf = "netcdf"
    zarr = "zarr"
    target = "target"


@app.command(rich_help_panel="Inspect")
def export(
    chip: ChipArgument,
    export_format: Annotated[
        ExportFormat,
        typer.Option(
            "--format",
            "-f",
            case_sensitive=False,
            help="json: arrays as lists and all metadata; netcdf: an xarray dataset "
            "(h5netcdf) with neuron and quadrant dimensions; zarr (with --history): a zarr "
            "v3 store; target: the calibration's target as a TOML target file (µs, CADC "
            "LSB) for --target.",
        ),
    ],
    run: RunOption = None,
    history_export: Annotated[
        bool,
        typer.Option(
            "--history",
            help="Every calibration of the chip as one dataset with dimensions "
            "(run, neuron); --format netcdf or zarr.",
        ),
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="Where to write. Default: JSON and target files to stdout, netCDF to "
            "CHIP-RUN.nc here.",
        ),
    ] = None,
    store: StoreOption = None,
) -> None:
    """Export a stored calibration as JSON, netCDF or a target file, or the chip's history
    (--history)."""
    results = open_store(store)
    # -- the history of the chip (--history) --
    if history_export:
        from calib.cli.store_commands import export_history

        neuron_runs(results, chip)  # a usage error naming the store when there are none
        export_history(results, chip, export_format.value, run, output, NEURON_RESULT_KIND)
        return
    if export_format is ExportFormat.zarr:
        raise CLIError("--format zarr exports a history: add --history")
    if output is not None and output.is_dir():
        raise CLIError(f"--output {output} is a directory")
    if run is not None and results.info(chip, run).kind == MAC_RESULT_KIND:
        if export_format is ExportFormat.target:
            raise CLIError(
                "--format target exports a neuron target; a MAC calibration exports "
                "as json or netcdf"
            )
        run_id = run  # a MAC calibration: its arrays and metadata as stored
    else:
        result, run_id = load_result(results, chip, run)
    err = error_console()
    if export_format is ExportFormat.target:
        from calib.cli.target_file import target_to_toml

        text = target_to_toml(
            result.target,
            header=(
                f"target of run {run_id} of chip {chip} (fingerprint "
                f"{result.target.fingerprint()}); potentials in CADC LSB, times in µs"
            ),
        )
        if output is None:
            typer.echo(text, nl=False)
            return
        output.write_text(text, encoding="utf-8")
    elif export_format is ExportFormat.json:
        text = results.export_json(chip, run_id)
        if output is None:
            typer.echo(text)
            return
        output.write_text(text + "\n", encoding="utf-8")
    else:
        output = output or Path(f"{chip}-{run_id}.nc")
        dataset = results.to_xarray(chip, run_id)
        dataset.to_netcdf(output, engine="h5netcdf")
    err.print(f"wrote run {run_id} of chip {escape(chip)} to {escape(str(output))}")


def _check_table(report: Any) -> Table:
    from calib.cli.target_file import cli_unit
    from calib.core.plans import PLANS

    table = Table(header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    for column, justify in (
        ("quantity", "left"),
        ("unit", "left"),
        ("checked", "right"),
        ("median shift", "right"),
        ("spread now", "right"),
        ("tolerance", "right"),
        ("out of tol.", "right"),
        ("", "left"),
    ):
        table.add_column(column, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for check in report.quantities.values():
        unit = cli_unit(check.name) if check.name in PLANS.quantities() else None
        scale = unit.to_si if unit else 1.0
        table.add_row(
            check.name,
            unit.label if unit else "",
            str(check.checked_neurons),
            f"{check.median_shift / scale:+.3g}",
            f"{check.spread / scale:.3g}",
            f"{check.tolerance / scale:.3g}",
            f"{100 * check.out_of_tolerance:.1f} %",
            Text("STALE", style="bold red") if check.stale else Text("ok", style="green"),
        )
    return table


def recalibrate_hint(chip: str, result: NeuronResult, store: str | None) -> str:
    """The command that recalibrates `chip` to the checked result's target, in the same store."""
    import shlex

    words = ["calib", "calibrate", "--chip", chip]
    source = str(result.provenance.extra.get("target_source") or "")
    if source.endswith(".toml") and Path(source).is_file():
        words += ["--target", source]
    if store is not None and store.strip():
        words += ["--store", store]
    return shlex.join(words)


def check_document(report: Any, record: Any, run_id: str, saved_as: str | None) -> dict[str, Any]:
    """What `calib check` prints, as data (values in the quantities' stored units)."""
    from calib.core.plans import PLANS

    specs = PLANS.quantities()
    _, attrs = record.to_record()
    return {
        "chip": report.chip_id,
        "checked_run": run_id,
        "holds": report.holds,
        "stale": report.stale,
        "device_runs": report.runs,
        "saved_as": saved_as,
        "simulation": record.extra.get("simulation"),
        "quantities": {
            name: {"unit": specs[name].unit if name in specs else None, **item}
            for name, item in attrs["quantities"].items()
        },
    }


@app.command(rich_help_panel="Inspect")
def check(
    chip: ChipArgument,
    run: RunOption = None,
    store: StoreOption = None,
    drift_hours: DriftOption = None,
    mismatch_scale: MismatchOption = None,
    noise_scale: NoiseOption = None,
    seed: SeedOption = None,
    faults: FaultsOption = None,
    save: Annotated[
        bool,
        typer.Option(
            "--save/--no-save",
            rich_help_panel=OUTPUT_PANEL,
            help="Store the check (per quantity: median shift, spread, out-of-tolerance "
            "fraction) in the chip's history.",
        ),
    ] = True,
    as_json: JsonOption = False,
    device_address: DeviceOption = None,
    token_file: TokenFileOption = None,
) -> None:
    """Quick check that a stored calibration still holds on the chip (a few device runs).

    The simulated chip is rebuilt as it was calibrated; --drift-hours sets its age now, so a
    larger value shows an aged chip. The check is stored in the chip's history (see 'calib
    history'; --no-save does not). Exits 0 when the calibration holds, 1 when it drifted.
    """
    from calib.sequences.check import check_result

    results = open_store(store)
    result, run_id = load_result(results, chip, run)
    overrides = {
        "drift_hours": drift_hours,
        "mismatch_scale": mismatch_scale,
        "noise_scale": noise_scale,
        "seed": seed,
        "faults": faults,
    }
    out = output_console()
    if device_address is not None:
        given = [f"--{k.replace('_', '-')}" for k, v in overrides.items() if v is not None]
        if given:
            raise CLIError(
                f"{', '.join(given)} describe a simulated chip; with --device they "
                "apply where the chip is served ('calib serve')"
            )
        from device_remote import open_device

        device = open_device(device_address, chip, token_file=token_file)
        described: dict[str, Any] = {"device": {"backend": "remote", "address": device_address}}
        where = f"the chip served at {device_address}"
    else:
        if token_file is not None:
            raise CLIError("--token-file applies only with --device HOST:PORT")
        stored = Simulation.stored_with(result)
        simulation = replace(stored, **{k: v for k, v in overrides.items() if v is not None})
        device, described = simulation.chip(chip), {"simulation": simulation.to_dict()}
        where = f"a {simulation.describe()}"
    if not as_json:
        out.print(Text(f"checking run {run_id} of chip {chip} on {where}", style="dim"))
    try:
        report = check_result(device, result)
    except (ValueError, LookupError) as error:
        raise CommandFailed(f"check of chip {chip!r} failed: {error}") from error
    finally:
        close_device(device)
    record = report.record(result, run_id, {**described, "checked_by": "calib check"})
    saved_as = results.save(record) if save else None
    hint = recalibrate_hint(chip, result, store)
    if as_json:
        print_json(
            {
                **check_document(report, record, run_id, saved_as),
                "recalibrate": None if report.holds else hint,
            }
        )
    else:
        out.print(_check_table(report))
        if saved_as is not None:
            out.print(Text(f"stored as check {saved_as}", style="dim"))
        if report.holds:
            out.print(
                f"[bold green]holds[/]: chip {escape(chip)} still matches run {run_id} "
                f"({report.runs} device runs)"
            )
        else:
            out.print(
                f"[bold red]drifted[/]: {', '.join(report.stale)} moved away from the "
                f"target ({report.runs} device runs); recalibrate with "
                f"'{escape(hint)}'",
                soft_wrap=True,
            )
    if not report.holds:
        raise typer.Exit(int(ExitCode.INCOMPLETE))


@app.command(rich_help_panel="Inspect")
def report(
    chip: ChipArgument,
    run: RunOption = None,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            metavar="FILE",
            help="Where to write the HTML report (default: calib-report-CHIP.html here).",
        ),
    ] = None,
    history_runs: Annotated[
        int,
        typer.Option(
            "--history",
            metavar="N",
            min=1,
            help="Earlier runs of the same target shown in the drift plots.",
        ),
    ] = DEFAULT_HISTORY_IN_REPORT,
    store: StoreOption = None,
) -> None:
    """Terminal summary and a self-contained HTML report with plots of a calibration."""
    from reports import render_summary

    results = open_store(store)
    if run is not None and results.info(chip, run).kind == MAC_RESULT_KIND:
        if html is not None:
            raise CLIError(
                "--html: the HTML report covers neuron calibrations; this run is a "
                "MAC calibration (its summary follows without --html)"
            )
        show_mac(results, chip, run, as_json=False)
        return
    result, run_id = load_result(results, chip, run)
    out = output_console()
    for line in provenance_lines(result, run_id):
        out.print(Text(line, style="dim"))
    render_summary(result, out)
    path = write_report(
        results, chip, run_id, result, html or Path(f"calib-report-{chip}.html"), history_runs
    )
    out.print(f"HTML report: {escape(str(path))}")


@app.command(rich_help_panel="Inspect")
def chips(store: StoreOption = None, as_json: JsonOption = False) -> None:
    """The chips in the store, with their newest calibration and newest check."""
    results = open_store(store)
    entries = []
    for chip_id in results.chips():
        infos = results.history(chip_id)
        runs = [info for info in infos if info.kind == NEURON_RESULT_KIND]
        if not runs:
            continue
        checks = [info for info in infos if info.kind == CHECK_KIND]
        entries.append(
            (chip_id, len(runs), RunRow.of(runs[-1]), RunRow.of(checks[-1]) if checks else None)
        )
    if as_json:
        print_json(
            {
                "store": results.location,
                "chips": [
                    {
                        "chip": chip_id,
                        "calibrations": count,
                        "newest": newest.to_dict(),
                        "newest_check": None if last_check is None else last_check.to_dict(),
                    }
                    for chip_id, count, newest, last_check in entries
                ],
            }
        )
        return
    out = output_console()
    columns = (
        Column("chip", priority=ESSENTIAL),
        Column("runs", "right", priority=60),
        Column("newest (UTC)", priority=50),
        Column("newest run", priority=ESSENTIAL),
        Column("success", "right", priority=ESSENTIAL),
        Column("last check", priority=40),
    )
    rows = [
        [
            escape(chip_id),
            str(count),
            newest.saved,
            newest.run_id,
            newest.outcome(),
            "-" if last_check is None else f"{last_check.saved} {last_check.outcome()}",
        ]
        for chip_id, count, newest, last_check in entries
    ]
    out.print(fitted_table(out, columns, rows, title=f"chips in {escape(results.location)}"))


@app.command(rich_help_panel="Calibrate")
def targets() -> None:
    """The target fields: units on the command line and in target files, defaults, ranges."""
    from calib.cli.target_file import (
        cli_range,
        cli_unit,
        setting_spec,
        target_as_cli_values,
        target_fields,
    )
    from calib.core.plans import quantity_spec
    from calib.core.targets import NeuronTarget

    table = Table(
        title="target fields (command line: --NAME with '-' for '_'; TOML: NAME = value)",
        title_justify="left",
        header_style="bold",
        box=box.SIMPLE_HEAD,
    )
    for column in ("field", "unit", "default", "allowed", "success tolerance"):
        table.add_column(column, justify="right" if column == "default" else "left")
    defaults = target_as_cli_values(NeuronTarget())
    for name in target_fields():
        low, high = cli_range(name)
        if setting_spec(name) is not None:
            tolerance = "not calibrated"
        else:
            spec = quantity_spec(name)
            tolerance = (
                f"± {100 * spec.tolerance:g} %"
                if spec.relative
                else f"± {spec.tolerance / cli_unit(name).to_si:.3g} {cli_unit(name).label}"
            )
        default = defaults[name]
        table.add_row(
            name,
            cli_unit(name).label,
            default if isinstance(default, str) else f"{default:g}",
            f"{low:g}..{high:g}",
            tolerance,
        )
    output_console().print(table)
