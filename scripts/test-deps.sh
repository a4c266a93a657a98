#!/usr/bin/env bash
# What the test suite needs from the system beyond Python: Debian's chromium (the browser
# tests drive it; no browser is ever downloaded), node/npm (the browser tests build their
# page from the SDK sources with esbuild, `npm ci` in clients/js on first use) and
# PostgreSQL's server binaries (the suite runs its own server with initdb/pg_ctl),
# Debian's redis-server (Redis 7: the Redis-facing tests run on it as well as on the
# embedded 6.2; its service is not needed, the suite starts its own servers) and
# libfaketime (tests/test_model.py moves its redis-server's clock forward) and libjemalloc2
# (the embedded Redis runs on it where the machine has it: tests/redis/
# test_embedded_allocator.py). Installs
# only what is missing, so it is instant on a machine that has them.
set -euo pipefail

missing=()
[ -x "${PRESENCE_TEST_CHROMIUM:-/usr/bin/chromium}" ] || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
  || missing+=(postgresql)
# Debian's redis-server: Redis 7 for the Redis-facing tests, and the binary the Docker
# image uses (tests/deploy/test_container.py).
[ -x /usr/bin/redis-server ] || missing+=(redis-server)
ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1 || missing+=(libfaketime)
ls /usr/lib/*/libjemalloc.so.2 >/dev/null 2>&1 || missing+=(libjemalloc2)
[ ${#missing[@]} -eq 0 ] && exit 0

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
echo "installing ${missing[*]} (apt-get) for the test suite" >&2
as_root apt-get update -qq
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
