#!/usr/bin/env bash
# Create the virtual environment (if missing) and install the project with its test extras.
# PyTorch comes first, pinned, so that pip never pulls a multi-GB CUDA build onto a machine
# without a GPU: a CUDA machine gets PyPI's default build, any other gets the CPU wheel.
set -euo pipefail
VENV=${VENV:-.venv}
EXTRAS=${EXTRAS:-dev,mujoco,sweep}
TORCH_VERSION=2.13.0
PYTHON=${PYTHON:-python3}

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
pip="$VENV/bin/python -m pip"
$pip install --quiet --upgrade pip

if ! "$VENV/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    $pip install --quiet "torch==$TORCH_VERSION"                    # CUDA build from PyPI
  elif $pip download --quiet --no-deps --no-index -d "$(mktemp -d)" "torch==$TORCH_VERSION" >/dev/null 2>&1; then
    $pip install --quiet "torch==$TORCH_VERSION"                    # a CPU wheel pip already finds locally
  else
    $pip install --quiet "torch==$TORCH_VERSION" --index-url https://download.pytorch.org/whl/cpu
  fi
fi
$pip install --quiet -e ".[$EXTRAS]"
"$VENV/bin/python" -c "import torch; print(f'torch {torch.__version__}, cuda available: {torch.cuda.is_available()}')"
