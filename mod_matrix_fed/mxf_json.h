/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * JSON values of the core: jansson's json_t, with lifetimes tied to APR
 * pools so callers never count references by hand.
 */
#ifndef mxf_json_h
#define mxf_json_h

#include <apr_pools.h>
#include <apr_errno.h>

/* jansson's inline helpers trip -Wunused-function under -Werror. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include <jansson.h>
#pragma GCC diagnostic pop

/*
 * Hands one reference of @a j over to pool @a p: it is released when the pool
 * is cleared or destroyed. Returns @a j (NULL stays NULL).
 */
json_t *mxf_json_own(apr_pool_t *p, json_t *j);

/*
 * Compact JSON text of @a j, allocated from @a p, for response envelopes.
 * Not canonical JSON: never use it for bytes that are hashed or signed.
 * Returns NULL only if @a j cannot be encoded (e.g. it holds an invalid
 * UTF-8 string); *len receives the length when len is not NULL.
 */
const char *mxf_json_dump(apr_pool_t *p, const json_t *j, apr_size_t *len);

/* ------------------------------------------------------------------------
 * Strict parsing of federation input.
 *
 * mxf_json_parse() always:
 *   - rejects duplicate object keys (jansson JSON_REJECT_DUPLICATES), so two
 *     parties can never read different values out of one signed object;
 *   - rejects invalid UTF-8, lone surrogate escapes (\ud800) and anything
 *     after the document;
 *   - rejects "\u0000" in strings unless MXF_JSON_ALLOW_NUL is given (NUL
 *     in object keys is always rejected: jansson cannot hold it);
 *   - rejects integers outside the 64-bit range jansson stores (json_int_t);
 *   - rejects nesting deeper than MXF_JSON_MAX_DEPTH objects/arrays;
 *   - keeps integers as integers and reals as reals (never
 *     JSON_DECODE_INT_AS_REAL).
 */

/*
 * Room versions 6 and later: every number must be an integer within
 * [-(2^53)+1, (2^53)-1]; reals (anything written with a fraction or an
 * exponent, even 1.0 or 1e3) are rejected. Without this flag (room versions
 * 1-5, which may contain such values) reals and integers beyond 2^53 are
 * kept as parsed.
 */
#define MXF_JSON_STRICT_INTS  0x01u
/* Accept any JSON value at the top level; without it only an object is. */
#define MXF_JSON_ANY          0x02u
/*
 * Accept U+0000 inside string values (test tools only; Matrix input never
 * needs it). Use json_string_length(), not strlen(), on such strings.
 */
#define MXF_JSON_ALLOW_NUL    0x04u

/* Deepest nesting of objects/arrays mxf_json_parse() accepts (top = 1). */
#define MXF_JSON_MAX_DEPTH    128

/* The canonical JSON integer range: |n| <= 2^53 - 1. */
#define MXF_JSON_INT_MAX      9007199254740991LL

/*
 * Parses the JSON document in @a buf (@a len bytes, need not be
 * NUL-terminated) under @a flags (MXF_JSON_*). On success *out holds the
 * value, owned by @a p. On failure sets *why (from @a p) to the reason with
 * its byte position and returns APR_EINVAL for text that is not JSON, or
 * APR_ERANGE for JSON refused (an integer jansson cannot hold, a duplicate
 * key, U+0000 without MXF_JSON_ALLOW_NUL, nesting too deep, a number the
 * flags rule out); a document that is not an object without MXF_JSON_ANY
 * is APR_EINVAL.
 */
apr_status_t mxf_json_parse(apr_pool_t *p, const char *buf, apr_size_t len,
                            unsigned flags, json_t **out, const char **why);

/*
 * Checks the room version 6+ number rule on @a j and everything inside it:
 * no reals, integers within +-MXF_JSON_INT_MAX. Returns APR_EINVAL with a
 * static *why on the first offending number.
 */
apr_status_t mxf_json_check_ints(const json_t *j, const char **why);

/* Whether @a j holds a real number (JSON number with a fraction or exponent) anywhere. */
int mxf_json_has_real(const json_t *j);

#endif /* mxf_json_h */
