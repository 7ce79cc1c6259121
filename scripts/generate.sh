#!/usr/bin/env bash
# Regenerate every language's code from protos/: Python (scripts/gen_python.sh), then Go,
# TypeScript and Java (buf generate with buf.gen.yaml), then docs/api.md.
#
# Idempotent: generated directories are emptied first, so the output depends only on the protos
# and the pinned tool versions below. The tools are installed into .tools/ (git-ignored) when
# missing or at another version:
#   buf, protoc-gen-es      npm, pinned in .tools/package.json / package-lock.json
#   protoc-gen-go(-grpc)    go install at the versions below, into .tools/bin
#   protoc, grpc-java       the release binaries from the Maven repository, into .tools/bin
#
# Usage: scripts/generate.sh [--tools-only]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

PROTOC_GEN_GO_VERSION=v1.36.12      # google.golang.org/protobuf
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2   # google.golang.org/grpc/cmd/protoc-gen-go-grpc
PROTOC_VERSION=4.36.2               # com.google.protobuf:protoc (protoc 36.2); matches protobuf-java in clients/java
GRPC_JAVA_PLUGIN_VERSION=1.83.1     # io.grpc:protoc-gen-grpc-java (newest with a served binary); runtime is newer
MAVEN_DEPENDENCY_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1

bin=$root/.tools/bin
buf=$root/.tools/node_modules/.bin/buf
mkdir -p "$bin"

log() { printf '[generate] %s\n' "$*" >&2; }
# sha256 of a file, with coreutils or (macOS) perl's shasum.
file_hash() { { sha256sum "$1" 2>/dev/null || shasum -a 256 "$1"; } | cut -d' ' -f1; }

# True when the stamp file for tool $1 records version $2 and the binary exists.
have() { [[ -x "$bin/$1" && -f "$bin/.$1.version" && "$(cat "$bin/.$1.version")" == "$2" ]]; }
stamp() { printf '%s\n' "$2" >"$bin/.$1.version"; }

install_npm_tools() {
  local want
  want=$(file_hash .tools/package-lock.json)
  if [[ -x "$buf" && -x .tools/node_modules/.bin/protoc-gen-es \
        && "$(cat .tools/node_modules/.lock-sha256 2>/dev/null)" == "$want" ]]; then
    return
  fi
  log "npm ci (.tools)"
  npm ci --prefix .tools --no-audit --no-fund --silent >&2
  printf '%s\n' "$want" >.tools/node_modules/.lock-sha256
}

install_go_plugin() { # name module version
  have "$1" "$3" && return
  log "go install $2@$3"
  GOBIN=$bin go install "$2@$3" >&2
  stamp "$1" "$3"
}

maven_classifier() {
  local os arch
  case "$(uname -s)" in
    Linux) os=linux ;;
    Darwin) os=osx ;;
    *) log "unsupported OS $(uname -s) for the protoc binaries"; exit 1 ;;
  esac
  case "$(uname -m)" in
    x86_64 | amd64) arch=x86_64 ;;
    aarch64 | arm64) arch=aarch_64 ;;
    *) log "unsupported CPU $(uname -m) for the protoc binaries"; exit 1 ;;
  esac
  printf '%s-%s' "$os" "$arch"
}

install_maven_binary() { # name groupId:artifactId version
  have "$1" "$3" && return
  local tmp classifier
  classifier=$(maven_classifier)
  tmp=$(mktemp -d)
  log "fetch $2:$3:exe:$classifier"
  if ! mvn -B -ntp -q "$MAVEN_DEPENDENCY_PLUGIN:copy" \
    -Dartifact="$2:$3:exe:$classifier" -DoutputDirectory="$tmp" >"$tmp/mvn.log" 2>&1; then
    cat "$tmp/mvn.log" >&2
    exit 1
  fi
  install -m 755 "$tmp"/*.exe "$bin/$1"
  rm -rf "$tmp"
  stamp "$1" "$3"
}

install_tools() {
  install_npm_tools
  install_go_plugin protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go "$PROTOC_GEN_GO_VERSION"
  install_go_plugin protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC_VERSION"
  install_maven_binary protoc com.google.protobuf:protoc "$PROTOC_VERSION"
  install_maven_binary protoc-gen-grpc-java io.grpc:protoc-gen-grpc-java "$GRPC_JAVA_PLUGIN_VERSION"
}

install_tools
[[ "${1:-}" == "--tools-only" ]] && exit 0

log "python"
scripts/gen_python.sh

log "go, typescript, java"
rm -rf clients/go/gen clients/typescript/src/gen clients/java/src/generated
"$buf" generate
"$buf" generate --template clients/typescript/buf.gen.googleapis.yaml

log "docs/api.md"
"${PYTHON:-.venv/bin/python}" scripts/gen_api_docs.py --buf "$buf" --out docs/api.md
