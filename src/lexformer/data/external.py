"""Running the external tools that fetch built-in corpora (``pip``, ``apt-get``, ``dpkg``),
with any failure turned into one line that says what failed, why, and what to do."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ..errors import LexformerError

#: Longest a download may take before it is given up.
TOOL_TIMEOUT_S = 900
_ERROR_PREFIXES = ("ERROR", "E:", "dpkg", "error")


def failure_line(output: str, limit: int = 200) -> str:
    """The line of a tool's output that best says why it failed: the last error line, else
    the last line."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith(_ERROR_PREFIXES)]
    line = (errors or lines or ["no output"])[-1]
    return line if len(line) <= limit else line[:limit] + "..."


def run_tool(cmd: list[str], failed: str, hint: str,
             cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``cmd``; if it cannot start, times out or exits non-zero, raise
    ``LexformerError("<failed> (<why>); <hint>")``."""
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True,
                              timeout=TOOL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        why = f"no result within {TOOL_TIMEOUT_S // 60} minutes"
        raise LexformerError(f"{failed} ({why}); {hint}") from None
    except OSError as e:
        raise LexformerError(f"{failed} ({e}); {hint}") from None
    if proc.returncode != 0:
        why = failure_line(proc.stderr + "\n" + proc.stdout)
        raise LexformerError(f"{failed} ({why}); {hint}")
    return proc


__all__ = ["failure_line", "run_tool"]
