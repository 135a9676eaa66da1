# Licensed under the Apache License, Version 2.0 (see LICENSE).
"""Test harness of mod_matrix_fed: a throwaway PostgreSQL cluster, a real
httpd loading the module from the build tree, and small HTTP helpers."""
