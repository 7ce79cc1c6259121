#!/usr/bin/env bash
# Make sure redis-server is installed (Debian package); the tests start their own instances.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then exit 0; fi
echo "setup: installing redis-server"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq redis-server >/dev/null 2>&1 || {
  apt-get update -qq >/dev/null
  apt-get install -y -qq redis-server >/dev/null
}
# The package starts a system instance; the tests use their own.
(service redis-server stop || true) >/dev/null 2>&1
command -v redis-server >/dev/null
