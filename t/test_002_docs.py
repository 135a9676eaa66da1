# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""The documentation stays true to the code: every directive of the module
is documented in the README and in conf/matrix_fed.conf, and neither names
a directive that does not exist."""
import glob
import os
import re

from mxftest.env import BuildEnv


def directives(src):
    names = set()
    for path in glob.glob(os.path.join(src, "mod_matrix_fed", "mod_matrix_fed*.c")):
        names |= set(re.findall(r'AP_INIT_\w+\(\s*"(\w+)"', open(path).read()))
    return names


def mentioned(text):
    return set(re.findall(r"\b(Matrix(?:Fed\w*|Federation))\b", text))


def test_002_001_directives_documented():
    src = BuildEnv().srcdir
    names = directives(src)
    assert {"MatrixFederation", "MatrixFedServerName", "MatrixFedSigningKey"} <= names
    readme = open(os.path.join(src, "README")).read()
    conf = open(os.path.join(src, "conf", "matrix_fed.conf")).read()
    assert names - mentioned(readme) == set(), "directives missing from the README"
    assert names - mentioned(conf) == set(), "directives missing from conf/matrix_fed.conf"
    assert mentioned(readme) - names == set(), "README names directives that do not exist"
    assert mentioned(conf) - names == set(), "conf/matrix_fed.conf names unknown directives"


def log_tags(src):
    """Every MXFLOGNO tag in the sources, with where it is used."""
    found = {}
    for path in sorted(glob.glob(os.path.join(src, "mod_matrix_fed", "*.c"))):
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                for m in re.finditer(r"MXFLOGNO\(([^)]*)\)", line):
                    found.setdefault(m.group(1), []).append(f"{os.path.basename(path)}:{n}")
    return found


def test_002_002_log_tags_unique():
    """mxf_log.h: each log tag names one message, never reused; five digits,
    below the next free number in mod_matrix_fed/next-logno (README), so
    an operator's grep for a tag finds one line of code."""
    src = BuildEnv().srcdir
    tags = log_tags(src)
    assert len(tags) > 40
    assert {t: w for t, w in tags.items() if len(w) > 1} == {}, "log tags used twice"
    with open(os.path.join(src, "mod_matrix_fed", "next-logno")) as f:
        nxt = int(f.read().strip())
    for t, where in tags.items():
        assert re.fullmatch(r"\d{5}", t), (t, where)
        assert int(t) < nxt, (t, where)
