#!/bin/sh
# Licensed under the Apache License, Version 2.0 (see LICENSE).
# matrix-fed import benchmark (not a test): generates two rooms once (cached
# under bench/cache/import/): a conflict-free one and one with frequent
# conflicting merges; imports each into a fresh database of a throwaway
# PostgreSQL (the test harness's), and prints events/s of both side by side,
# the importer's peak RSS and the database size per event.
# Usage: bench/import.sh [EVENTS [ROOM_VERSION]]   (default: 1000000 10)
#   MXF_BUILDDIR: the build directory (default: .); MXF_BENCH_THREADS: the
#   importer's --threads (default: one per CPU).
set -e
here=$(cd "$(dirname "$0")" && pwd)
builddir=$(cd "${MXF_BUILDDIR:-.}" && pwd)
make -C "$builddir" -s matrix-fed
MXF_BUILDDIR="$builddir" exec /usr/bin/python3 "$here/import_bench.py" "$@"
