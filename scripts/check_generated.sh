#!/usr/bin/env bash
# Fail when committed generated code is stale: regenerate every language's code and
# docs/api.md (scripts/generate.sh), then require no difference from what git holds and no new
# untracked files in the generated directories. Run it on a clean tree: it rewrites those paths.
set -euo pipefail
cd "$(dirname "$0")/.."

generated=(
  clients/python/quorum/route/v1
  clients/go/gen
  clients/typescript/src/gen
  clients/java/src/generated
  docs/api.md
)

scripts/generate.sh

stale=0
if ! git diff --quiet -- "${generated[@]}"; then
  echo "Generated code differs from the committed code:"
  git diff --stat -- "${generated[@]}"
  git diff -- "${generated[@]}" | head -n 60 || true
  stale=1
fi
untracked=$(git ls-files --others --exclude-standard -- "${generated[@]}")
if [[ -n "$untracked" ]]; then
  echo "Generated files not committed:"
  printf '  %s\n' $untracked
  stale=1
fi
if ((stale)); then
  echo "Run scripts/generate.sh and commit the result."
  exit 1
fi
echo "generated code is up to date (${generated[*]})"
