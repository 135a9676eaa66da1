# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Bounded libFuzzer runs of the fuzz targets (t/fuzz/), so that they keep
building and a shallow bug shows up in every test run.

The targets are built with clang in a temporary out-of-tree build
(CC=clang <srcdir>/configure --enable-fuzzers), whatever the build under
test was configured with, and each runs for a few seconds from its seed
corpus. clang with libFuzzer is a build requirement of the test suite: if
it is missing this test fails rather than skips.

Longer developer runs: see the comment at the top of each t/fuzz/fuzz_*.c.
"""
import os
import shutil
import subprocess

import pytest

SRCDIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGETS = ["fuzz_json", "fuzz_xmatrix", "fuzz_pduinput"]
RUN_SECONDS = 5


@pytest.fixture(scope="module")
def fuzz_build(tmp_path_factory):
    clang = shutil.which("clang")
    if clang is None:
        pytest.fail("clang is not installed: the libFuzzer targets cannot be built")
    configure = os.path.join(SRCDIR, "configure")
    if not os.access(configure, os.X_OK):
        pytest.fail(f"{configure} is missing (run autoreconf -fi in the source tree)")
    build = tmp_path_factory.mktemp("fuzz-build")
    env = dict(os.environ, CC=clang)
    for k in ("CFLAGS", "LDFLAGS", "CPPFLAGS"):
        env.pop(k, None)

    def run(cmd):
        proc = subprocess.run(cmd, cwd=build, env=env, capture_output=True, text=True,
                              timeout=600, check=False)
        assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"

    run([configure, "-q", "--enable-fuzzers"])
    run(["make", "-j4", *[f"t/fuzz/{t}" for t in TARGETS]])
    return build


@pytest.mark.parametrize("target", TARGETS)
def test_013_001_fuzz_target_runs(fuzz_build, tmp_path, target):
    binary = os.path.join(fuzz_build, "t", "fuzz", target)
    assert os.access(binary, os.X_OK), binary
    seeds = os.path.join(SRCDIR, "t", "fuzz", "corpus", target[len("fuzz_"):])
    assert os.path.isdir(seeds) and os.listdir(seeds), f"no seed corpus in {seeds}"
    # New inputs go to the first (scratch) directory; the seed corpus is only read.
    work = tmp_path / "corpus"
    work.mkdir()
    proc = subprocess.run([binary, f"-max_total_time={RUN_SECONDS}", "-max_len=4096",
                           "-timeout=10", f"-artifact_prefix={tmp_path}/", str(work), seeds],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={k: v for k, v in os.environ.items() if k != "LD_PRELOAD"})
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert "Done" in proc.stderr, proc.stderr[-2000:]
    assert not [f for f in os.listdir(tmp_path) if f.startswith(("crash-", "leak-", "timeout-"))]
