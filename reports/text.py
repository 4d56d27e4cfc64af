"""Text read from a store, made safe to show on a terminal."""

from __future__ import annotations

_CONTROL = {
    code: f"\\x{code:02x}"
    for code in (*range(0x20), 0x7F, *range(0x80, 0xA0))
    if chr(code) not in "\n\t"
}
"""Control characters (ESC and the rest of C0 and C1, but newline and tab) and their visible
escapes: text read from a store is shown, never obeyed by the terminal."""


def terminal_safe(text: object) -> str:
    """`text` with every control character shown as an escape (`\\x1b` for ESC)."""
    return str(text).translate(_CONTROL)
