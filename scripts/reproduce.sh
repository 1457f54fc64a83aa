#!/usr/bin/env bash
# The main job: the paper's length-extrapolation experiment on the built-in corpus.
# Extra arguments go to `lexformer reproduce` (e.g. --preset smoke --out runs/smoke).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
exec lexformer reproduce "$@"
