#!/usr/bin/env bash
# The virtual environment of the Cellpose peer baseline (bench/peer_cellpose.py): Cellpose 3 (the
# small U-Net family that trains on a CPU; Cellpose 4's ViT does not) in .cellpose-venv, apart
# from morphoscope's .venv. Scoring runs in the main .venv.
#
#   bash bench/cellpose_env.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
PEER=${CELLPOSE_VENV:-.cellpose-venv}
CELLPOSE_SPEC=${CELLPOSE_SPEC:-"cellpose==3.1.1.3"}
TORCH_SPEC=${TORCH_SPEC:-"torch==2.14.1"}

test -x "$PEER/bin/python" || "$PYTHON" -m venv "$PEER"
echo '*' > "$PEER/.gitignore"  # never committed
"$PEER/bin/python" -m pip install -q --upgrade pip
# shellcheck disable=SC2086
"$PEER/bin/python" -m pip install -q $TORCH_SPEC $CELLPOSE_SPEC pillow scikit-image
"$PEER/bin/python" -c "import cellpose, torch; from cellpose import version; print(f'cellpose venv ready: cellpose {version}, torch {torch.__version__}')"
