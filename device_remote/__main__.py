"""`python -m device_remote --chip ID [--host H] [--port N] ...`: serve one simulated chip
(the same server as `calib serve`, without the calib package)."""

from __future__ import annotations

import argparse
import sys

from device_remote.auth import TOKEN_ENV, resolve_token
from device_remote.serve import serve_forever, simulated_chip
from device_remote.server import DEFAULT_HEARTBEAT_TIMEOUT, DEFAULT_HOST


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m device_remote", description=__doc__)
    parser.add_argument("--chip", required=True, help="chip id of the simulated chip")
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port (0: a free one)")
    parser.add_argument("--token-file", help=f"shared token (default: ${TOKEN_ENV})")
    parser.add_argument("--heartbeat-timeout", type=float, default=DEFAULT_HEARTBEAT_TIMEOUT)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--mismatch-scale", type=float, default=1.0)
    parser.add_argument("--noise-scale", type=float, default=1.0)
    parser.add_argument("--drift-hours", type=float, default=0.0)
    parser.add_argument("--faults", action="store_true")
    args = parser.parse_args(argv)
    try:
        chip = simulated_chip(
            args.chip,
            seed=args.seed,
            mismatch_scale=args.mismatch_scale,
            noise_scale=args.noise_scale,
            drift_hours=args.drift_hours,
            faults=args.faults,
        )
        token = resolve_token(None, args.token_file)
        serve_forever(
            chip,
            args.host,
            args.port,
            token=token,
            heartbeat_timeout=args.heartbeat_timeout,
            announce=lambda line: print(line, flush=True),
        )
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
