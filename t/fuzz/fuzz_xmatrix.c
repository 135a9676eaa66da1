/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * libFuzzer target for the X-Matrix Authorization header parser.
 *
 * Every input is parsed as one header value (mxf_xmatrix_parse) and, split
 * at newlines, as several header values of one request
 * (mxf_xmatrix_parse_all). Properties checked:
 *   - a failure always comes with a reason;
 *   - an accepted credential has the required fields, valid by the
 *     parser's own rules, and survives a round trip through
 *     mxf_xmatrix_build() unchanged;
 *   - one value accepted alone is accepted by parse_all as well.
 *
 * Developer run (longer than the bounded run of t/test_013_fuzz_smoke.py):
 *   CC=clang ./configure --enable-fuzzers && make t/fuzz/fuzz_xmatrix
 *   mkdir -p /tmp/xm-corpus && ./t/fuzz/fuzz_xmatrix -max_total_time=600 \
 *       -max_len=2048 /tmp/xm-corpus <srcdir>/t/fuzz/corpus/xmatrix
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>
#include <apr_strings.h>

#include "mxf_xmatrix.h"

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

static int same(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

/* An accepted credential must be complete and rebuild to itself. */
static void check_credential(apr_pool_t *p, const mxf_xmatrix_t *xm)
{
    mxf_xmatrix_t *again = NULL;
    const char *why = NULL;
    char *hdr;

    if (!xm->origin || !xm->key_id || !xm->sig || strncmp(xm->key_id, "ed25519:", 8) != 0
        || strlen(xm->origin) > MXF_XMATRIX_VALUE_MAX || strlen(xm->sig) > MXF_XMATRIX_SIG_MAX) {
        abort();
    }
    hdr = mxf_xmatrix_build(p, xm->origin, xm->destination, xm->key_id, xm->sig);
    if (mxf_xmatrix_parse(p, hdr, &again, &why) != APR_SUCCESS
        || !same(again->origin, xm->origin) || !same(again->destination, xm->destination)
        || !same(again->key_id, xm->key_id) || !same(again->sig, xm->sig)) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *p;
    char *text, *line, *state = NULL;
    const char *values[MXF_XMATRIX_MAX_CREDENTIALS + 4];
    mxf_xmatrix_t *xm = NULL;
    apr_array_header_t *all = NULL;
    const char *why = NULL;
    apr_status_t rv;
    int n = 0, i;

    apr_pool_create(&p, root);
    text = apr_pstrmemdup(p, (const char *)data, size);   /* stops at a NUL, like headers */

    why = NULL;
    rv = mxf_xmatrix_parse(p, text, &xm, &why);
    if (rv == APR_SUCCESS) {
        check_credential(p, xm);
        if (mxf_xmatrix_parse_all(p, (const char *const *)&text, 1, &all, &why) != APR_SUCCESS
            || all->nelts != 1) {
            abort();
        }
    }
    else if (!why) {
        abort();
    }

    /* The same bytes as several header lines of one request. */
    for (line = apr_strtok(apr_pstrdup(p, text), "\n", &state);
         line && n < (int)(sizeof(values) / sizeof(values[0]));
         line = apr_strtok(NULL, "\n", &state)) {
        values[n++] = line;
    }
    why = NULL;
    rv = mxf_xmatrix_parse_all(p, values, n, &all, &why);
    if (rv == APR_SUCCESS) {
        if (all->nelts < 1 || all->nelts > MXF_XMATRIX_MAX_CREDENTIALS) {
            abort();
        }
        for (i = 0; i < all->nelts; i++) {
            check_credential(p, APR_ARRAY_IDX(all, i, mxf_xmatrix_t *));
        }
    }
    else if (!why || (rv != APR_EINVAL && rv != APR_ENOENT)) {
        abort();
    }
    apr_pool_destroy(p);
    return 0;
}
