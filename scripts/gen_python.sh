#!/usr/bin/env bash
# Regenerate the Python protobuf and gRPC modules (with type stubs) into clients/python.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
out=clients/python
rm -f "$out"/quorum/route/v1/*_pb2*.py "$out"/quorum/route/v1/*_pb2*.pyi
"$py" -m grpc_tools.protoc -I protos \
  --python_out="$out" --mypy_out="$out" \
  --grpc_python_out="$out" --mypy_grpc_out="$out" \
  --plugin=protoc-gen-mypy="$(dirname "$py")/protoc-gen-mypy" \
  --plugin=protoc-gen-mypy_grpc="$(dirname "$py")/protoc-gen-mypy_grpc" \
  protos/quorum/route/v1/*.proto
