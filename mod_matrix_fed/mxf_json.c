/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#include <string.h>

#include <apr_strings.h>

#include "mxf_json.h"

static apr_status_t json_release(void *data)
{
    json_decref((json_t *)data);
    return APR_SUCCESS;
}

json_t *mxf_json_own(apr_pool_t *p, json_t *j)
{
    if (j) {
        apr_pool_cleanup_register(p, j, json_release, apr_pool_cleanup_null);
    }
    return j;
}

const char *mxf_json_dump(apr_pool_t *p, const json_t *j, apr_size_t *len)
{
    size_t need = json_dumpb(j, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY);
    char *buf;

    if (need == 0) {
        return NULL;
    }
    buf = apr_palloc(p, need + 1);
    if (json_dumpb(j, buf, need, JSON_COMPACT | JSON_ENCODE_ANY) != need) {
        return NULL;
    }
    buf[need] = '\0';
    if (len) {
        *len = need;
    }
    return buf;
}

/*
 * Walks @a j checking nesting depth and, with @a strict, the v6+ number
 * rule. Recursion is bounded by jansson's own parser depth limit and by
 * MXF_JSON_MAX_DEPTH (we stop descending beyond it).
 */
static apr_status_t check_value(const json_t *j, int depth, int strict, const char **why)
{
    apr_status_t rv;

    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        const char *key;
        json_t *v;

        if (depth > MXF_JSON_MAX_DEPTH) {
            *why = "JSON nested too deeply";
            return APR_EINVAL;
        }
        json_object_foreach((json_t *)j, key, v) {
            if ((rv = check_value(v, depth + 1, strict, why)) != APR_SUCCESS) {
                return rv;
            }
        }
        return APR_SUCCESS;
    }
    case JSON_ARRAY: {
        size_t i;

        if (depth > MXF_JSON_MAX_DEPTH) {
            *why = "JSON nested too deeply";
            return APR_EINVAL;
        }
        for (i = 0; i < json_array_size(j); i++) {
            if ((rv = check_value(json_array_get(j, i), depth + 1, strict, why))
                != APR_SUCCESS) {
                return rv;
            }
        }
        return APR_SUCCESS;
    }
    case JSON_REAL:
        if (strict) {
            *why = "numbers must be integers (no fraction or exponent)";
            return APR_EINVAL;
        }
        return APR_SUCCESS;
    case JSON_INTEGER:
        if (strict) {
            json_int_t v = json_integer_value(j);
            if (v > MXF_JSON_INT_MAX || v < -MXF_JSON_INT_MAX) {
                *why = "integer out of the range -(2**53)+1 .. (2**53)-1";
                return APR_EINVAL;
            }
        }
        return APR_SUCCESS;
    default:
        return APR_SUCCESS;
    }
}

apr_status_t mxf_json_check_ints(const json_t *j, const char **why)
{
    return check_value(j, 1, 1, why);
}

int mxf_json_has_real(const json_t *j)
{
    const char *key;
    json_t *v;
    size_t i;

    if (json_is_real(j)) {
        return 1;
    }
    if (json_is_object(j)) {
        json_object_foreach((json_t *)j, key, v) {
            if (mxf_json_has_real(v)) {
                return 1;
            }
        }
    }
    else if (json_is_array(j)) {
        json_array_foreach(j, i, v) {
            if (mxf_json_has_real(v)) {
                return 1;
            }
        }
    }
    return 0;
}

apr_status_t mxf_json_parse(apr_pool_t *p, const char *buf, apr_size_t len,
                            unsigned flags, json_t **out, const char **why)
{
    json_error_t err;
    size_t jflags = JSON_REJECT_DUPLICATES;
    const char *reason = NULL;
    json_t *j;

    *out = NULL;
    if (flags & MXF_JSON_ANY) {
        jflags |= JSON_DECODE_ANY;
    }
    if (flags & MXF_JSON_ALLOW_NUL) {
        jflags |= JSON_ALLOW_NUL;
    }
    j = json_loadb(buf, len, jflags, &err);
    if (!j) {
        *why = apr_psprintf(p, "invalid JSON at byte %d: %s", err.position, err.text);
        switch (json_error_code(&err)) {
        case json_error_numeric_overflow:
        case json_error_duplicate_key:
        case json_error_null_character:
        case json_error_null_byte_in_key:
        case json_error_stack_overflow:
            /* The grammar allows it; the parser refuses it. */
            *why = apr_psprintf(p, "JSON refused at byte %d: %s", err.position, err.text);
            return APR_ERANGE;
        default:
            return APR_EINVAL;
        }
    }
    mxf_json_own(p, j);
    if (!(flags & MXF_JSON_ANY) && !json_is_object(j)) {
        *why = "JSON document is not an object";
        return APR_EINVAL;
    }
    if (check_value(j, 1, (flags & MXF_JSON_STRICT_INTS) != 0, &reason) != APR_SUCCESS) {
        *why = reason;
        return APR_ERANGE;
    }
    *out = j;
    return APR_SUCCESS;
}
