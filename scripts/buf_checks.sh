#!/usr/bin/env bash
# API governance: buf lint (STANDARD, from buf.yaml), then buf breaking (FILE rules) against the
# v1 baseline, so that no release breaks what v1 callers were given.
#
# Baseline: the first commit that touched protos/ (the original v1 contract), read offline from
# the local git repository. In a shallow clone that commit is not available, so the annotated
# tag api/v1.0.0 is used if present, else the committed image of that release,
# api/v1.0.0.binpb (made with `buf build .git#ref=<first commit> -o api/v1.0.0.binpb`).
# Releases of the API are tagged api/v1.x (e.g. `git tag -a api/v1.1.0`); this script creates
# no tags.
set -euo pipefail
cd "$(dirname "$0")/.."
buf=${BUF:-.tools/node_modules/.bin/buf}
if [[ ! -x "$buf" ]]; then
  scripts/generate.sh --tools-only
fi

echo "buf lint"
"$buf" lint

git_dir=$(cd "$(git rev-parse --git-common-dir)" && pwd)
if [[ "$(git rev-parse --is-shallow-repository)" == "true" ]]; then
  if git rev-parse -q --verify "refs/tags/api/v1.0.0" >/dev/null; then
    against="$git_dir#tag=api/v1.0.0"
    baseline="tag api/v1.0.0 (shallow clone: the first commit of protos/ is not available)"
  elif [[ -f api/v1.0.0.binpb ]]; then
    against="api/v1.0.0.binpb"
    baseline="the committed image api/v1.0.0.binpb (shallow clone)"
  else
    echo "buf breaking: shallow clone, no tag api/v1.0.0 and no api/v1.0.0.binpb; run" \
      "'git fetch --unshallow' so the v1 baseline can be read" >&2
    exit 1
  fi
else
  first=$(git log --format=%H -- protos | tail -n 1)
  if [[ -z "$first" ]]; then
    echo "buf breaking: no commit touches protos/ yet; nothing to compare with" >&2
    exit 1
  fi
  against="$git_dir#ref=$first"
  baseline="commit $(git log -1 --format='%h (%s)' "$first"), the first to touch protos/"
fi

echo "buf breaking against $baseline"
"$buf" breaking --against "$against"
echo "buf lint and buf breaking passed"
