"""`calib serve`: one chip behind a device server (gRPC), for `RemoteDevice` clients.

The server itself lives in the `device_remote` package; this module only parses options.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from calib.cli.app import app, check_chip, error_console, output_console
from calib.cli.commands import DriftOption, FaultsOption, MismatchOption, NoiseOption, SeedOption

SERVER_PANEL = "Server"


@app.command(rich_help_panel="Serve")
def serve(
    chip: Annotated[
        str,
        typer.Option(
            "--chip",
            metavar="CHIP",
            callback=check_chip,
            rich_help_panel="Chip",
            help="Chip id of the served (simulated) chip; the same id is the same chip.",
        ),
    ],
    host: Annotated[
        str,
        typer.Option(
            "--host",
            metavar="ADDRESS",
            rich_help_panel=SERVER_PANEL,
            help="Address to listen on (default loopback); any other address needs a token.",
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option(
            "--port",
            metavar="N",
            min=0,
            max=65535,
            rich_help_panel=SERVER_PANEL,
            help="Port to listen on (0..65535; 0 picks a free port, printed at start).",
        ),
    ] = 0,
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            metavar="FILE",
            rich_help_panel=SERVER_PANEL,
            help="File whose first line is the shared token clients must send (default: "
            "$CALIB_DEVICE_TOKEN; required for a non-loopback --host).",
        ),
    ] = None,
    heartbeat_timeout: Annotated[
        float,
        typer.Option(
            "--heartbeat-timeout",
            metavar="SECONDS",
            min=0.05,
            max=3600.0,
            rich_help_panel=SERVER_PANEL,
            help="A client silent this long loses its lease (0.05..3600 s).",
        ),
    ] = 10.0,
    mismatch_scale: MismatchOption = 1.0,
    noise_scale: NoiseOption = 1.0,
    drift_hours: DriftOption = 0.0,
    seed: SeedOption = None,
    faults: FaultsOption = False,
) -> None:
    """Serve a simulated chip over the network until stopped (Ctrl-C or SIGTERM).

    One client holds the chip at a time; a client silent for --heartbeat-timeout loses it.
    Prints 'serving chip CHIP at HOST:PORT ...' once it listens.
    """
    from device_remote.auth import resolve_token
    from device_remote.serve import serve_forever, simulated_chip

    token = resolve_token(None, token_file)
    device = simulated_chip(
        chip,
        seed=seed,
        mismatch_scale=mismatch_scale,
        noise_scale=noise_scale,
        drift_hours=drift_hours,
        faults=faults,
    )
    out = output_console()
    serve_forever(
        device,
        host,
        port,
        token=token,
        heartbeat_timeout=heartbeat_timeout,
        announce=lambda line: out.print(escape(line), soft_wrap=True),
    )
    error_console().print(f"stopped serving chip {escape(chip)}")
