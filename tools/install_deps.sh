#!/usr/bin/env bash
# Install this project (editable, with the dev extras) into the environment of PYTHON, after tools/install_torch.sh.
# uv resolves and downloads the ~100 packages in parallel: on the 2-core development machine it took 11 s (3.5 s to
# install uv itself) where pip took 116 s (README, "`make demo`"). uv does not read pip's configuration (pip.conf's
# index or find-links): where uv cannot be installed or its install fails, the same install runs with pip, which
# does. INSTALL_WITH_PIP=1 skips uv. torch is already installed by then and satisfies every requirement on it, so
# neither tool replaces it.
set -euo pipefail
PY=${1:?usage: install_deps.sh PYTHON}
case "$PY" in  # absolute, before moving to the repository root
  */*) PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")" ;;
  *) PY="$(command -v "$PY")" ;;
esac
cd "$(dirname "$0")/.."
# The OS certificate store, as pip uses: uv's bundled roots reject a TLS-inspecting proxy's certificate (seen on a
# machine whose environment did not carry SSL_CERT_FILE).
export UV_SYSTEM_CERTS="${UV_SYSTEM_CERTS:-1}"
if [ "${INSTALL_WITH_PIP:-0}" != 1 ]; then
  if "$PY" -m pip install -q "uv>=0.13" && "$PY" -m uv pip install --python "$PY" -e ".[dev]"; then
    exit 0
  fi
  echo "install_deps.sh: uv could not install the project; installing with pip instead" >&2
fi
"$PY" -m pip install -e ".[dev]"
