#!/usr/bin/env bash
# Set up everything on a fresh machine and run the main job.
#   ./setup.sh            create .venv, install the project with test tools and Ray, run the main job
#   ./setup.sh --no-run   set up only (what CI does)
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
run_main_job=1
[ "${1:-}" = "--no-run" ] && run_main_job=0

if ! "$PYTHON" -c 'import sys; sys.exit(not ((3, 10) <= sys.version_info[:2] <= (3, 11)))'; then
  echo "setup: $PYTHON is $("$PYTHON" -V 2>&1); mxnet 1.9.1 needs Python 3.10 or 3.11 (set PYTHON=...)" >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test,ray]"  # ray: build-index --engine ray and its tests
.venv/bin/python -c 'import mxnet, faiss, cv2, awsiot' || { echo "setup: installed packages do not import" >&2; exit 1; }
# the demo model: the installed ImageNet EfficientNet-Lite0 weights + the committed trained head
.venv/bin/visual-search assemble-featurizer models/demo-featurizer
echo "setup: .venv ready ($(.venv/bin/visual-search --version))"

if [ "$run_main_job" = 1 ]; then
  exec .venv/bin/visual-search demo   # the whole kiosk on this machine; Ctrl-C stops it
fi
