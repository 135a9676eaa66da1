#!/bin/sh
# Licensed under the Apache License, Version 2.0 (see LICENSE).
# X-Matrix authentication benchmark (not a test):
#   1. verifications per second in-process (bench/bench_auth, the core only);
#   2. the latency authentication adds to a request served by a real httpd
#      (bench/auth_latency.py through the test harness; needs PostgreSQL).
# Usage: bench/auth.sh [BUILDDIR]   (default: $MXF_BUILDDIR, else .)
set -e
here=$(cd "$(dirname "$0")" && pwd)
builddir=$(cd "${1:-${MXF_BUILDDIR:-.}}" && pwd)
make -C "$builddir" -s bench/bench_auth all
echo "== in-process verification (header parse + canonical JSON + Ed25519)"
"$builddir/bench/bench_auth" "${MXF_BENCH_SECONDS:-2}"
echo "== latency added to a served request"
MXF_BUILDDIR="$builddir" /usr/bin/python3 "$here/auth_latency.py"
