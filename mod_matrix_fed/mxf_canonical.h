/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * Canonical JSON (appendices, "Canonical JSON"): the bytes that are hashed
 * and signed. Hand-written; never use json_dumps() for these bytes.
 *
 * Output rules:
 *   - no insignificant whitespace;
 *   - object keys sorted by Unicode code point, i.e. memcmp() of their UTF-8
 *     bytes (a key that is a prefix of another sorts first);
 *   - strings as raw UTF-8 (no \u escapes for non-ASCII, U+2028/U+2029
 *     included); escaped are exactly '"' -> \", '\' -> \\, U+0008 \b,
 *     U+0009 \t, U+000A \n, U+000C \f, U+000D \r, and the other
 *     U+0000-U+001F as \u00xx with lower-case hex. '/' and DEL (0x7f) are
 *     written raw. This is byte for byte what python canonicaljson emits.
 *     Strings (and keys) that are not valid UTF-8 (overlong forms,
 *     surrogates, > U+10FFFF, truncated) make the encoding fail;
 *   - integers in plain decimal (-0 cannot occur: it parses as integer 0).
 *     Integers beyond +-(2^53-1) (room versions 1-5) are written as they
 *     are unless MXF_CANON_STRICT_INTS is given;
 *   - reals (only possible from room versions 1-5, or built by hand): by
 *     default a real with an integral value within +-(2^53-1) is written as
 *     that integer ("-0.0" as 0, 1e10 as 10000000000), as the spec's example
 *     {"a": -0, "b": 1e10} -> {"a":0,"b":10000000000} demands. Any other real
 *     fails. NOTE: python canonicaljson (Synapse) differs here: it writes
 *     every float with Python's repr(), so 1e10 becomes 10000000000.0 and
 *     1.5 stays 1.5. MXF_CANON_PYTHON_FLOATS reproduces that byte for byte,
 *     for checking hashes/signatures that Synapse made over legacy events.
 */
#ifndef mxf_canonical_h
#define mxf_canonical_h

#include <apr_pools.h>
#include <apr_errno.h>

#include "mxf_json.h"

/* Fail on integers outside +-(2^53-1) (and, by default, on all reals). */
#define MXF_CANON_STRICT_INTS    0x01u
/*
 * Write every finite real the way Python's repr() does (shortest
 * round-trip digits; "10000000000.0", "1.5", "1e-05", "1e+16"): the
 * python canonicaljson behaviour, not the spec's. Overrides the default
 * real rule; combined with MXF_CANON_STRICT_INTS reals still fail.
 */
#define MXF_CANON_PYTHON_FLOATS  0x02u

/* Deepest nesting the encoder follows (guards against cycles, too). */
#define MXF_CANON_MAX_DEPTH      1024

/* A growable byte buffer allocated from a pool (grows by doubling). */
typedef struct mxf_buf {
    apr_pool_t *p;
    char *data;         /* always NUL-terminated after an append */
    apr_size_t len;
    apr_size_t cap;
} mxf_buf_t;

/* Sets up @a b on pool @a p with room for @a initial bytes (0: a default). */
void mxf_buf_init(mxf_buf_t *b, apr_pool_t *p, apr_size_t initial);

/* Appends @a n bytes. */
void mxf_buf_append(mxf_buf_t *b, const void *data, apr_size_t n);

/*
 * Canonical JSON of @a j (any JSON value), NUL-terminated, from @a p; *len
 * (if not NULL) receives its length. Returns NULL and sets *why on failure
 * (invalid UTF-8, a real the default rule refuses, nesting deeper than
 * MXF_CANON_MAX_DEPTH).
 */
char *mxf_canonical_encode(apr_pool_t *p, const json_t *j, apr_size_t *len,
                           const char **why);

/* Same with MXF_CANON_* @a flags. */
char *mxf_canonical_encode_ex(apr_pool_t *p, const json_t *j, unsigned flags,
                              apr_size_t *len, const char **why);

/*
 * Appends the canonical JSON of @a j to @a b. On failure returns APR_EINVAL
 * with *why set; @a b then holds a partial encoding.
 */
apr_status_t mxf_canonical_append(mxf_buf_t *b, const json_t *j, unsigned flags,
                                  const char **why);

#endif /* mxf_canonical_h */
