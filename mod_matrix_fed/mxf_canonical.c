/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_strings.h>

#include "mxf_canonical.h"

#define BUF_DEFAULT 256

void mxf_buf_init(mxf_buf_t *b, apr_pool_t *p, apr_size_t initial)
{
    b->p = p;
    b->cap = initial ? initial : BUF_DEFAULT;
    b->data = apr_palloc(p, b->cap);
    b->len = 0;
    b->data[0] = '\0';
}

static void buf_reserve(mxf_buf_t *b, apr_size_t n)
{
    if (b->cap - b->len <= n) {
        apr_size_t cap = b->cap * 2;
        char *data;

        while (cap - b->len <= n) {
            cap *= 2;
        }
        data = apr_palloc(b->p, cap);
        memcpy(data, b->data, b->len);
        b->data = data;
        b->cap = cap;
    }
}

void mxf_buf_append(mxf_buf_t *b, const void *data, apr_size_t n)
{
    buf_reserve(b, n);
    memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void buf_putc(mxf_buf_t *b, char c)
{
    buf_reserve(b, 1);
    b->data[b->len++] = c;
    b->data[b->len] = '\0';
}

/*
 * Length of the valid UTF-8 sequence at s (n bytes left), or 0 if it is
 * not one (RFC 3629: no overlong forms, no surrogates, at most U+10FFFF).
 */
static apr_size_t utf8_seq(const unsigned char *s, apr_size_t n)
{
    unsigned char c = s[0];

    if (c < 0x80) {
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        return (n >= 2 && (s[1] & 0xc0) == 0x80) ? 2 : 0;
    }
    if (c >= 0xe0 && c <= 0xef) {
        if (n < 3 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80) {
            return 0;
        }
        if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f)) {
            return 0;               /* overlong / surrogate */
        }
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (n < 4 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80
            || (s[3] & 0xc0) != 0x80) {
            return 0;
        }
        if ((c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] > 0x8f)) {
            return 0;               /* overlong / beyond U+10FFFF */
        }
        return 4;
    }
    return 0;
}

static apr_status_t put_string(mxf_buf_t *b, const char *str, apr_size_t n,
                               const char **why)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str;
    apr_size_t i = 0, run = 0;

    buf_putc(b, '"');
    while (i < n) {
        unsigned char c = s[i];
        char esc[6];
        apr_size_t elen = 2;

        if (c >= 0x20 && c != '"' && c != '\\') {
            apr_size_t k = c < 0x80 ? 1 : utf8_seq(s + i, n - i);

            if (k == 0) {
                *why = "string is not valid UTF-8";
                return APR_EINVAL;
            }
            i += k;
            run += k;
            continue;
        }
        if (run) {
            mxf_buf_append(b, s + i - run, run);
            run = 0;
        }
        esc[0] = '\\';
        switch (c) {
        case '"':  esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case 0x08: esc[1] = 'b'; break;
        case 0x09: esc[1] = 't'; break;
        case 0x0a: esc[1] = 'n'; break;
        case 0x0c: esc[1] = 'f'; break;
        case 0x0d: esc[1] = 'r'; break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 0xf];
            elen = 6;
            break;
        }
        mxf_buf_append(b, esc, elen);
        i++;
    }
    if (run) {
        mxf_buf_append(b, s + i - run, run);
    }
    buf_putc(b, '"');
    return APR_SUCCESS;
}

static void put_int(mxf_buf_t *b, long long v)
{
    char num[32];
    int n = snprintf(num, sizeof(num), "%lld", v);

    mxf_buf_append(b, num, (apr_size_t)n);
}

/*
 * Python's repr() of a finite double: the shortest digit string that reads
 * back as the same double (the correctly rounded one among equals), laid
 * out as float_repr_style 'short' does: positional when the decimal
 * exponent e (value = d.ddd x 10^e) is in [-4, 16), with ".0" added to
 * integral values; otherwise d[.ddd]e+XX / e-XX (at least two exponent
 * digits).
 */
static void put_python_float(mxf_buf_t *b, double d)
{
    char tmp[64], digits[24];
    int prec, nd = 0, exp10 = 0, decpt, i;
    const char *s;

    if (signbit(d)) {
        buf_putc(b, '-');
        d = -d;
    }
    if (d == 0.0) {
        mxf_buf_append(b, "0.0", 3);
        return;
    }
    for (prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof(tmp), "%.*e", prec - 1, d);
        if (strtod(tmp, NULL) == d) {
            break;
        }
    }
    /* tmp is "D[<point>DDD]e<sign>XX"; the point is locale-specific. */
    for (s = tmp; *s && *s != 'e'; s++) {
        if (*s >= '0' && *s <= '9' && nd < (int)sizeof(digits) - 1) {
            digits[nd++] = *s;
        }
    }
    if (*s == 'e') {
        exp10 = atoi(s + 1);
    }
    while (nd > 1 && digits[nd - 1] == '0') {
        nd--;
    }
    digits[nd] = '\0';
    decpt = exp10 + 1;              /* digits are 0.DDD x 10^decpt */

    if (decpt > -4 && decpt <= 16) {
        if (decpt <= 0) {
            mxf_buf_append(b, "0.", 2);
            for (i = 0; i < -decpt; i++) {
                buf_putc(b, '0');
            }
            mxf_buf_append(b, digits, (apr_size_t)nd);
        }
        else if (decpt < nd) {
            mxf_buf_append(b, digits, (apr_size_t)decpt);
            buf_putc(b, '.');
            mxf_buf_append(b, digits + decpt, (apr_size_t)(nd - decpt));
        }
        else {
            mxf_buf_append(b, digits, (apr_size_t)nd);
            for (i = nd; i < decpt; i++) {
                buf_putc(b, '0');
            }
            mxf_buf_append(b, ".0", 2);
        }
    }
    else {
        int n;

        buf_putc(b, digits[0]);
        if (nd > 1) {
            buf_putc(b, '.');
            mxf_buf_append(b, digits + 1, (apr_size_t)(nd - 1));
        }
        n = snprintf(tmp, sizeof(tmp), "e%c%02d", exp10 < 0 ? '-' : '+',
                     exp10 < 0 ? -exp10 : exp10);
        mxf_buf_append(b, tmp, (apr_size_t)n);
    }
}

static apr_status_t put_real(mxf_buf_t *b, double d, unsigned flags, const char **why)
{
    if (!isfinite(d)) {
        *why = "NaN or infinite number";
        return APR_EINVAL;
    }
    if (flags & MXF_CANON_STRICT_INTS) {
        *why = "real number in canonical JSON (only integers are allowed)";
        return APR_EINVAL;
    }
    if (flags & MXF_CANON_PYTHON_FLOATS) {
        put_python_float(b, d);
        return APR_SUCCESS;
    }
    if (d > (double)MXF_JSON_INT_MAX || d < -(double)MXF_JSON_INT_MAX) {
        *why = "real number out of the canonical JSON integer range";
        return APR_EINVAL;
    }
    if ((double)(long long)d != d) {
        *why = "real number with a fraction in canonical JSON";
        return APR_EINVAL;
    }
    put_int(b, (long long)d);       /* -0.0 becomes 0 */
    return APR_SUCCESS;
}

typedef struct {
    const char *key;
    size_t len;
    json_t *value;
} member_t;

static int member_cmp(const void *a, const void *b)
{
    const member_t *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->key, y->key, n);

    if (c != 0) {
        return c;
    }
    return x->len < y->len ? -1 : (x->len > y->len ? 1 : 0);
}

static apr_status_t put_value(mxf_buf_t *b, const json_t *j, unsigned flags,
                              int depth, const char **why);

static apr_status_t put_object(mxf_buf_t *b, const json_t *j, unsigned flags,
                               int depth, const char **why)
{
    size_t n = json_object_size(j), i = 0;
    member_t stack_members[16], *m = stack_members;
    const char *key;
    size_t key_len;
    json_t *v;
    apr_status_t rv;

    if (n > sizeof(stack_members) / sizeof(stack_members[0])) {
        m = malloc(n * sizeof(*m));
        if (!m) {
            *why = "out of memory";
            return APR_ENOMEM;
        }
    }
    json_object_keylen_foreach((json_t *)j, key, key_len, v) {
        m[i].key = key;
        m[i].len = key_len;
        m[i].value = v;
        i++;
    }
    qsort(m, n, sizeof(*m), member_cmp);
    rv = APR_SUCCESS;
    buf_putc(b, '{');
    for (i = 0; i < n && rv == APR_SUCCESS; i++) {
        if (i) {
            buf_putc(b, ',');
        }
        rv = put_string(b, m[i].key, m[i].len, why);
        if (rv == APR_SUCCESS) {
            buf_putc(b, ':');
            rv = put_value(b, m[i].value, flags, depth + 1, why);
        }
    }
    if (m != stack_members) {
        free(m);
    }
    if (rv == APR_SUCCESS) {
        buf_putc(b, '}');
    }
    return rv;
}

static apr_status_t put_value(mxf_buf_t *b, const json_t *j, unsigned flags,
                              int depth, const char **why)
{
    apr_status_t rv;
    size_t i;

    if (!j) {
        *why = "no JSON value";
        return APR_EINVAL;
    }
    switch (json_typeof(j)) {
    case JSON_OBJECT:
    case JSON_ARRAY:
        if (depth > MXF_CANON_MAX_DEPTH) {
            *why = "JSON nested too deeply to encode";
            return APR_EINVAL;
        }
        if (json_is_object(j)) {
            return put_object(b, j, flags, depth, why);
        }
        buf_putc(b, '[');
        for (i = 0; i < json_array_size(j); i++) {
            if (i) {
                buf_putc(b, ',');
            }
            if ((rv = put_value(b, json_array_get(j, i), flags, depth + 1, why))
                != APR_SUCCESS) {
                return rv;
            }
        }
        buf_putc(b, ']');
        return APR_SUCCESS;
    case JSON_STRING:
        return put_string(b, json_string_value(j), json_string_length(j), why);
    case JSON_INTEGER: {
        json_int_t v = json_integer_value(j);

        if ((flags & MXF_CANON_STRICT_INTS)
            && (v > MXF_JSON_INT_MAX || v < -MXF_JSON_INT_MAX)) {
            *why = "integer out of the canonical JSON range";
            return APR_EINVAL;
        }
        put_int(b, (long long)v);
        return APR_SUCCESS;
    }
    case JSON_REAL:
        return put_real(b, json_real_value(j), flags, why);
    case JSON_TRUE:
        mxf_buf_append(b, "true", 4);
        return APR_SUCCESS;
    case JSON_FALSE:
        mxf_buf_append(b, "false", 5);
        return APR_SUCCESS;
    case JSON_NULL:
        mxf_buf_append(b, "null", 4);
        return APR_SUCCESS;
    }
    *why = "unknown JSON type";
    return APR_EINVAL;
}

apr_status_t mxf_canonical_append(mxf_buf_t *b, const json_t *j, unsigned flags,
                                  const char **why)
{
    return put_value(b, j, flags, 1, why);
}

char *mxf_canonical_encode_ex(apr_pool_t *p, const json_t *j, unsigned flags,
                              apr_size_t *len, const char **why)
{
    mxf_buf_t b;

    mxf_buf_init(&b, p, 0);
    if (mxf_canonical_append(&b, j, flags, why) != APR_SUCCESS) {
        return NULL;
    }
    if (len) {
        *len = b.len;
    }
    return b.data;
}

char *mxf_canonical_encode(apr_pool_t *p, const json_t *j, apr_size_t *len,
                           const char **why)
{
    return mxf_canonical_encode_ex(p, j, 0, len, why);
}
