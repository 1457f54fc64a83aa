"""Running the real ``lexformer`` CLI in a subprocess, for tests of what a user sees.

Shared by every CLI test module (import it as ``from cli_harness import ...``; pytest puts
``tests/`` on the path). A bad input must end with exit code 2, one ``lexformer: error:``
line that names the problem, no traceback, and nothing already on disk changed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path


def run_cli(*args: str, cwd: str | Path | None = None, timeout: float = 600,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m lexformer ARGS`` with one torch thread and no progress bars' noise."""
    full_env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "lexformer", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=full_env)


def assert_clean_failure(proc: subprocess.CompletedProcess, *words: str) -> None:
    """Exit code 2, no traceback, and a message holding every one of ``words``
    (case-insensitive)."""
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, f"exit {proc.returncode}, expected 2:\n{out[-3000:]}"
    assert "Traceback" not in out, out[-3000:]
    lower = proc.stderr.lower()
    for w in words:
        assert w.lower() in lower, f"{w!r} not in the message:\n{proc.stderr[-2000:]}"


def tree_hashes(path: str | Path) -> dict[str, str]:
    """sha256 of every file under ``path`` (or of ``path`` itself), to show nothing changed."""
    path = Path(path)
    if path.is_file():
        return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()}
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}
