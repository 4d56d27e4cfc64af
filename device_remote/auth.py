"""Where a device server may listen and the shared token that guards it."""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path

TOKEN_ENV = "CALIB_DEVICE_TOKEN"
"""Environment variable holding the shared token (when no token file is given)."""
MIN_TOKEN_LENGTH = 16


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or a name) means only this machine."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def resolve_token(
    token: str | None = None, token_file: str | os.PathLike[str] | None = None
) -> str | None:
    """The shared token: `token`, else the first line of `token_file`, else $CALIB_DEVICE_TOKEN,
    else None."""
    if token is not None:
        return token.strip()
    if token_file is not None:
        path = Path(token_file)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise OSError(f"token file {str(path)!r} cannot be read: {error.strerror}") from error
        lines = text.strip().splitlines()
        if not lines:
            raise ValueError(f"token file {str(path)!r} is empty")
        return lines[0].strip()
    value = os.environ.get(TOKEN_ENV)
    return value.strip() if value else None


def check_token(token: str | None, host: str) -> str | None:
    """The token a server on `host` requires: at least MIN_TOKEN_LENGTH characters, and
    mandatory when `host` is not a loopback address."""
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise ValueError(f"token must be at least {MIN_TOKEN_LENGTH} characters, got {len(token)}")
    if token is None and not is_loopback(host):
        raise ValueError(
            f"host {host!r} is not a loopback address: serving beyond this machine needs a "
            f"shared token (a token file, or the environment variable {TOKEN_ENV})"
        )
    return token
