#!/usr/bin/env bash
# The test suite (CPU; about 8 minutes of tests on 2 cores). Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$ROOT"
exec python -m pytest "$@"
