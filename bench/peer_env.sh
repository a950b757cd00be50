#!/usr/bin/env bash
# The virtual environment of the StarDist peer baseline (bench/peer_stardist.py): StarDist and
# TensorFlow (CPU build) in .peer-venv at the project root, apart from morphoscope's .venv, so
# that TensorFlow never enters morphoscope's dependencies. Scoring runs in the main .venv.
#
#   bash bench/peer_env.sh            # create or update .peer-venv
#   PYTHON=python3.12 bash bench/peer_env.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
PEER=${PEER_VENV:-.peer-venv}
# The versions the smoke run in docs/evaluation.md used (TensorFlow 2.16+ brings Keras 3, which
# csbdeep 0.8 supports).
STARDIST_SPEC=${STARDIST_SPEC:-"stardist==0.9.2 csbdeep==0.8.2"}
TF_SPEC=${TF_SPEC:-"tensorflow-cpu==2.21.0"}

test -x "$PEER/bin/python" || "$PYTHON" -m venv "$PEER"
# never committed, whatever the project's .gitignore says
echo '*' > "$PEER/.gitignore"
"$PEER/bin/python" -m pip install -q --upgrade pip
# shellcheck disable=SC2086
# tensorboard: the recipe's Config2D logs to it (train_tensorboard=True)
"$PEER/bin/python" -m pip install -q $TF_SPEC $STARDIST_SPEC tensorboard tifffile pillow
"$PEER/bin/python" - <<'PY'
import csbdeep, stardist, tensorflow as tf
print(f"peer venv ready: stardist {stardist.__version__}, csbdeep {csbdeep.__version__}, "
      f"tensorflow {tf.__version__}, GPUs visible: {len(tf.config.list_physical_devices('GPU'))}")
PY
