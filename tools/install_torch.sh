#!/usr/bin/env bash
# Install PyTorch without pulling CUDA wheels on a CPU-only machine, and the default (CUDA) build on a GPU one.
#   GPU machine (nvidia-smi lists a device): pip install torch==$TORCH_VERSION         (PyPI's CUDA build)
#   CPU machine: pip install torch==$TORCH_VERSION from PyTorch's CPU index when it is reachable, otherwise from
#   pip's configured sources (e.g. a local find-links folder holding the CPU wheel, as on the CI machines).
set -euo pipefail
PY=${1:?usage: install_torch.sh PYTHON}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
CPU_INDEX=${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}
if "$PY" -c "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '$TORCH_VERSION' else 1)" 2>/dev/null; then
  echo "torch $TORCH_VERSION already installed"; exit 0
fi
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "GPU found: installing torch==$TORCH_VERSION (CUDA build)"
  "$PY" -m pip install "torch==$TORCH_VERSION"
elif "$PY" - "$CPU_INDEX" <<'PYEOF' 2>/dev/null
import sys, urllib.request
urllib.request.urlopen(sys.argv[1] + "/torch/", timeout=5)
PYEOF
then
  echo "no GPU: installing torch==$TORCH_VERSION from the CPU index $CPU_INDEX"
  "$PY" -m pip install "torch==$TORCH_VERSION" --index-url "$CPU_INDEX" --extra-index-url https://pypi.org/simple
else
  echo "no GPU and no CPU index reachable: installing torch==$TORCH_VERSION from pip's configured sources"
  "$PY" -m pip install "torch==$TORCH_VERSION"
fi
"$PY" -c "import torch; assert not torch.version.cuda or torch.cuda.is_available(), 'CUDA wheel on a CPU machine'; print('torch', torch.__version__)"
