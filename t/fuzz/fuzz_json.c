/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * libFuzzer target for the strict JSON parser and the canonical encoder.
 *
 * For every input: parse it in tolerant mode; if that succeeds, encode it
 * canonically (spec rules and Python-float rules), re-parse the output and
 * check that it re-encodes to the same bytes (and, for Python-float output,
 * that the re-parsed value equals the original). A strict parse that
 * succeeds must give a value whose strict canonical encoding succeeds too.
 *
 *   CC=clang ./configure --enable-fuzzers && make t/fuzz/fuzz_json
 *   ./t/fuzz/fuzz_json -max_total_time=20 <srcdir>/t/fuzz/corpus/json
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>

#include "mxf_canonical.h"
#include "mxf_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static apr_pool_t *root;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    if (apr_initialize() != APR_SUCCESS || apr_pool_create(&root, NULL) != APR_SUCCESS) {
        abort();
    }
    return 0;
}

/* Encodes @a j with @a flags; if that works, re-parses and re-encodes. */
static void roundtrip(apr_pool_t *p, const json_t *j, unsigned flags)
{
    const char *why = NULL;
    apr_size_t len, len2;
    char *out = mxf_canonical_encode_ex(p, j, flags, &len, &why), *out2;
    json_t *back = NULL;

    if (!out) {
        if (!why) {
            abort();                    /* failures must say why */
        }
        return;
    }
    if (mxf_json_parse(p, out, len, MXF_JSON_ANY | MXF_JSON_ALLOW_NUL, &back, &why)
        != APR_SUCCESS) {
        abort();                        /* canonical output must parse */
    }
    out2 = mxf_canonical_encode_ex(p, back, flags, &len2, &why);
    if (!out2 || len2 != len || memcmp(out, out2, len) != 0) {
        abort();                        /* encoding must be a fixed point */
    }
    if ((flags & MXF_CANON_PYTHON_FLOATS) && !json_equal((json_t *)j, back)) {
        abort();                        /* lossless when reals stay reals */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *p;
    json_t *j = NULL;
    const char *why = NULL;

    apr_pool_create(&p, root);
    if (mxf_json_parse(p, (const char *)data, size, MXF_JSON_ANY | MXF_JSON_ALLOW_NUL,
                       &j, &why) == APR_SUCCESS) {
        roundtrip(p, j, 0);
        roundtrip(p, j, MXF_CANON_PYTHON_FLOATS);
    }
    else if (!why) {
        abort();
    }
    if (mxf_json_parse(p, (const char *)data, size, MXF_JSON_ANY | MXF_JSON_STRICT_INTS,
                       &j, &why) == APR_SUCCESS) {
        if (mxf_json_check_ints(j, &why) != APR_SUCCESS
            || !mxf_canonical_encode_ex(p, j, MXF_CANON_STRICT_INTS, NULL, &why)) {
            abort();                    /* strict input is always encodable */
        }
        roundtrip(p, j, MXF_CANON_STRICT_INTS);
    }
    apr_pool_destroy(p);
    return 0;
}
