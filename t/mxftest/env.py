# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Where things are: the build directory, the httpd binary, the module."""
import configparser
import os
import socket


class BuildEnv:
    def __init__(self):
        self.builddir = os.environ.get("MXF_BUILDDIR")
        if not self.builddir:
            raise RuntimeError("MXF_BUILDDIR is not set: run the tests with 'make check'")
        ini = os.path.join(self.builddir, "t", "config.ini")
        cfg = configparser.ConfigParser()
        if not cfg.read(ini):
            raise RuntimeError(f"{ini} is missing: run ./configure first")
        self.version = cfg["build"]["version"]
        self.srcdir = cfg["build"]["abs_top_srcdir"]
        self.asan = cfg["build"]["asan"] == "yes"
        self.asan_runtime = cfg["build"]["asan_runtime"]
        self.httpd = cfg["httpd"]["binary"]
        self.moduledir = cfg["httpd"]["moduledir"]
        self.module = os.path.join(self.builddir, ".libs", "mod_matrix_fed.so")
        self.cli = os.path.join(self.builddir, "matrix-fed")

    def system_module(self, name):
        """Path of one of httpd's own modules (mod_dbd, mod_proxy, ...)."""
        return os.path.join(self.moduledir, f"mod_{name}.so")

    def sanitizer_env(self, logdir):
        """Environment for a process running sanitized code (ASan builds)."""
        env = dict(os.environ)
        if self.asan:
            env["LD_PRELOAD"] = self.asan_runtime
            env["ASAN_OPTIONS"] = (f"log_path={logdir}/asan:detect_leaks=0:"
                                   "abort_on_error=0:halt_on_error=1")
            env["UBSAN_OPTIONS"] = f"log_path={logdir}/ubsan:print_stacktrace=1:halt_on_error=1"
        return env


def free_port():
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def core_tool_path():
    """The test-only driver of the core (t/tools/mxf_core_tool) in the build."""
    import pytest
    builddir = os.environ.get("MXF_BUILDDIR")
    if not builddir:
        pytest.fail("MXF_BUILDDIR is not set (run through 'make check')")
    path = os.path.join(builddir, "t", "tools", "mxf_core_tool")
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} not built (make t/tools/mxf_core_tool)")
    return path
