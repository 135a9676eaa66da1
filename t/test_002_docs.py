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
