#!/usr/bin/env bash
# Creates .venv (first time, or when pyproject.toml changes) and installs lexformer with
# its test, reference and Hugging Face extras. Sourced by scripts/reproduce.sh and scripts/test.sh.
# torch==2.13.0 (the CPU wheel of this machine) is installed first, on its own: pyproject.toml
# asks only for a range, which that wheel satisfies, so pip never resolves a multi-GB CUDA build.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
STAMP="$VENV/.lexformer-setup"
WANT="$(cat "$ROOT/pyproject.toml" "$ROOT/scripts/setup.sh" | sha256sum | cut -c1-16)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  echo "lexformer: setting up $VENV (first run only) ..." >&2
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "torch==2.13.0" 2>&1 \
    | grep -v "^WARNING: Location" >&2 || true
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT[dev,ref,hf,lmeval]" 2>&1 \
    | grep -v "^WARNING: Location" >&2 || true
  # torchscale's XPOS is a parity reference; its declared deps (timm, fairscale, a CUDA
  # torch) are not needed for the one module we import, so install it without them.
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps torchscale 2>&1 \
    | grep -v "^WARNING: Location" >&2 || true
  "$VENV/bin/python" -c "import torch, lexformer; assert torch.__version__.startswith('2.13.0'), torch.__version__" \
    || { echo "lexformer: set-up failed (see pip's messages above)" >&2; exit 1; }
  # Fetch the default corpus now so that later runs work offline.
  "$VENV/bin/python" -c "from lexformer.data import load_corpus; load_corpus('shakespeare')" \
    || echo "lexformer: could not fetch the shakespeare corpus now; it will be retried on use" >&2
  echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
