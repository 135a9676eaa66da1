/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#include <string.h>
#include <strings.h>

#include <apr_strings.h>

#include "mxf_base64.h"
#include "mxf_canonical.h"
#include "mxf_id.h"
#include "mxf_sign.h"
#include "mxf_xmatrix.h"

/* One name=value pair (or a token68) of a credential. */
typedef struct {
    const char *name;          /* not NUL-terminated */
    apr_size_t name_len;
    const char *value;         /* unescaped, NUL-terminated, from the pool */
    apr_size_t value_len;      /* its length (what the limits bound) */
} xm_param_t;

/* One credential: a scheme and its parameters. */
typedef struct {
    const char *scheme;        /* not NUL-terminated */
    apr_size_t scheme_len;
    int token68;               /* the credential is "scheme token68" */
    apr_array_header_t *params;  /* of xm_param_t */
} xm_cred_t;

#define EXCERPT_LEN 24

/* A short printable excerpt of the input at @a s, for error messages. */
static const char *excerpt(apr_pool_t *p, const char *s, const char *end)
{
    apr_size_t n = (apr_size_t)(end - s);

    if (n == 0) {
        return "end of header";
    }
    return apr_psprintf(p, "'%.*s%s'", (int)(n > EXCERPT_LEN ? EXCERPT_LEN : n), s,
                        n > EXCERPT_LEN ? "..." : "");
}

/* RFC 9110 tchar. */
static int is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
        return 1;
    }
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* RFC 9110 token68 characters (before the trailing '='s). */
static int is_token68char(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
        return 1;
    }
    return c != '\0' && strchr("-._~+/", c) != NULL;
}

/* Characters of an unquoted value: tchar, plus ':' (spec) and '/', '[', ']' (lax peers). */
static int is_valuechar(unsigned char c)
{
    return is_tchar(c) || c == ':' || c == '/' || c == '[' || c == ']';
}

static const char *skip_ows(const char *s, const char *end)
{
    while (s < end && (*s == ' ' || *s == '\t')) {
        s++;
    }
    return s;
}

static const char *skip_token(const char *s, const char *end)
{
    while (s < end && is_tchar((unsigned char)*s)) {
        s++;
    }
    return s;
}

static int name_is(const xm_param_t *prm, const char *name)
{
    apr_size_t n = strlen(name);

    return prm->name_len == n && strncasecmp(prm->name, name, n) == 0;
}

/*
 * Reads the value at *s (a quoted-string or an unquoted value). On success
 * advances *s past it.
 */
static apr_status_t read_value(apr_pool_t *p, const char **s, const char *end,
                               xm_param_t *prm, const char **why)
{
    const char *q = *s;
    char *buf, *o;

    if (q < end && *q == '"') {
        const char *start = ++q;

        /* Unescaping never lengthens the text: the raw length bounds it. */
        while (q < end && *q != '"') {
            if (*q == '\\') {
                q++;
                if (q == end) {
                    break;
                }
            }
            q++;
        }
        if (q == end) {
            *why = apr_psprintf(p, "unterminated quoted string in parameter '%.*s'",
                                (int)prm->name_len, prm->name);
            return APR_EINVAL;
        }
        o = buf = apr_palloc(p, (apr_size_t)(q - start) + 1);
        for (q = start; *q != '"'; q++) {
            if (*q == '\\') {
                q++;
            }
            *o++ = *q;
        }
        *o = '\0';
        prm->value = buf;
        prm->value_len = (apr_size_t)(o - buf);
        *s = q + 1;
        return APR_SUCCESS;
    }
    while (q < end && is_valuechar((unsigned char)*q)) {
        q++;
    }
    if (q == *s) {
        *why = apr_psprintf(p, "parameter '%.*s' has no value (at %s)",
                            (int)prm->name_len, prm->name, excerpt(p, q, end));
        return APR_EINVAL;
    }
    prm->value_len = (apr_size_t)(q - *s);
    prm->value = apr_pstrmemdup(p, *s, prm->value_len);
    *s = q;
    return APR_SUCCESS;
}

/*
 * Parses the credentials list @a s .. @a end (one header value, possibly
 * several joined ones) into @a creds (of xm_cred_t).
 */
static apr_status_t parse_credentials(apr_pool_t *p, const char *s, const char *end,
                                      apr_array_header_t *creds, const char **why)
{
    const char *q;
    int leading = 0;

    for (q = s; q < end; q++) {
        unsigned char c = (unsigned char)*q;
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            *why = apr_psprintf(p, "control character 0x%02x in the Authorization header", c);
            return APR_EINVAL;
        }
    }
    /* Leading empty list elements. */
    for (;;) {
        s = skip_ows(s, end);
        if (s < end && *s == ',') {
            if (++leading > MXF_XMATRIX_MAX_PARAMS) {
                *why = "too many empty list elements in the Authorization header";
                return APR_EINVAL;
            }
            s++;
            continue;
        }
        break;
    }
    while (s < end) {
        xm_cred_t *cred;
        int elements = 0, first = 1;

        if (creds->nelts >= MXF_XMATRIX_MAX_CREDENTIALS) {
            *why = apr_psprintf(p, "more than %d credentials in the Authorization header",
                                MXF_XMATRIX_MAX_CREDENTIALS);
            return APR_EINVAL;
        }
        q = skip_token(s, end);
        if (q == s) {
            *why = apr_psprintf(p, "expected an authentication scheme at %s",
                                excerpt(p, s, end));
            return APR_EINVAL;
        }
        cred = &APR_ARRAY_PUSH(creds, xm_cred_t);
        cred->scheme = s;
        cred->scheme_len = (apr_size_t)(q - s);
        cred->token68 = 0;
        cred->params = apr_array_make(p, 4, sizeof(xm_param_t));
        s = q;
        if (s < end && *s != ',') {
            const char *t;

            if (*s != ' ') {
                *why = apr_psprintf(p, "expected a space after the scheme '%.*s'",
                                    (int)cred->scheme_len, cred->scheme);
                return APR_EINVAL;
            }
            s = skip_ows(s, end);
            /* token68: 1*token68char *"=" followed by the end or a comma. */
            t = s;
            while (t < end && is_token68char((unsigned char)*t)) {
                t++;
            }
            if (t > s) {
                while (t < end && *t == '=') {
                    t++;
                }
                t = skip_ows(t, end);
                if (t == end || *t == ',') {
                    cred->token68 = 1;
                    s = t;
                    first = 0;
                }
            }
        }
        /* #auth-param; a token not followed by "=" after a comma starts a new credential. */
        for (;;) {
            xm_param_t *prm;
            const char *name;

            s = skip_ows(s, end);
            if (s == end) {
                break;
            }
            if (*s == ',') {
                if (++elements > MXF_XMATRIX_MAX_PARAMS) {
                    *why = apr_psprintf(p, "more than %d list elements in one credential",
                                        MXF_XMATRIX_MAX_PARAMS);
                    return APR_EINVAL;
                }
                s++;
                first = 0;
                continue;
            }
            name = s;
            q = skip_token(s, end);
            if (q == s) {
                *why = apr_psprintf(p, "expected a parameter name at %s", excerpt(p, s, end));
                return APR_EINVAL;
            }
            s = skip_ows(q, end);
            if (s == end || *s != '=') {
                if (!first) {
                    s = name;          /* the next credential's scheme */
                    break;
                }
                *why = apr_psprintf(p, "expected '=' after parameter name '%.*s'",
                                    (int)(q - name), name);
                return APR_EINVAL;
            }
            if (cred->token68) {
                *why = apr_psprintf(p, "parameters after the token68 of scheme '%.*s'",
                                    (int)cred->scheme_len, cred->scheme);
                return APR_EINVAL;
            }
            if (++elements > MXF_XMATRIX_MAX_PARAMS) {
                *why = apr_psprintf(p, "more than %d list elements in one credential",
                                    MXF_XMATRIX_MAX_PARAMS);
                return APR_EINVAL;
            }
            prm = &APR_ARRAY_PUSH(cred->params, xm_param_t);
            prm->name = name;
            prm->name_len = (apr_size_t)(q - name);
            s = skip_ows(s + 1, end);
            if (read_value(p, &s, end, prm, why) != APR_SUCCESS) {
                return APR_EINVAL;
            }
            s = skip_ows(s, end);
            if (s < end && *s != ',') {
                *why = apr_psprintf(p, "expected ',' after the value of '%.*s', found %s",
                                    (int)prm->name_len, prm->name, excerpt(p, s, end));
                return APR_EINVAL;
            }
            first = 0;
        }
    }
    return APR_SUCCESS;
}

static int is_xmatrix(const xm_cred_t *cred)
{
    return cred->scheme_len == 8 && strncasecmp(cred->scheme, "X-Matrix", 8) == 0;
}

/* Server names of the header: length then grammar. */
static apr_status_t check_server_name(apr_pool_t *p, const char *what, const char *v,
                                      const char **why)
{
    if (!mxf_id_server_name_valid(v, strlen(v))) {
        *why = apr_psprintf(p, "%s is not a valid server name", what);
        return APR_EINVAL;
    }
    return APR_SUCCESS;
}

/* Turns one X-Matrix credential into an mxf_xmatrix_t. */
static apr_status_t xmatrix_from_cred(apr_pool_t *p, const xm_cred_t *cred,
                                      mxf_xmatrix_t **out, const char **why)
{
    static const char *const names[] = { "origin", "destination", "key", "sig" };
    const char *vals[4] = { NULL, NULL, NULL, NULL };
    unsigned char sig[MXF_ED25519_SIG_BYTES];
    mxf_xmatrix_t *xm;
    int i, k;

    if (cred->token68) {
        *why = "X-Matrix takes parameters, not a token68";
        return APR_EINVAL;
    }
    for (i = 0; i < cred->params->nelts; i++) {
        const xm_param_t *prm = &APR_ARRAY_IDX(cred->params, i, xm_param_t);
        apr_size_t max = MXF_XMATRIX_VALUE_MAX;

        for (k = 0; k < 4; k++) {
            if (name_is(prm, names[k])) {
                break;
            }
        }
        if (k == 4) {
            continue;          /* unknown parameters are ignored, whatever their length */
        }
        if (k == 3) {
            max = MXF_XMATRIX_SIG_MAX;
        }
        if (prm->value_len > max) {     /* escapes are not counted: they are unescaped */
            *why = apr_psprintf(p, "value of parameter '%.*s' is longer than %" APR_SIZE_T_FMT
                                " bytes", (int)prm->name_len, prm->name, max);
            return APR_EINVAL;
        }
        if (vals[k]) {
            *why = apr_psprintf(p, "duplicated parameter '%s'", names[k]);
            return APR_EINVAL;
        }
        vals[k] = prm->value;
    }
    for (k = 0; k < 4; k++) {
        if (k != 1 && !vals[k]) {
            *why = apr_psprintf(p, "missing parameter '%s'", names[k]);
            return APR_EINVAL;
        }
    }
    if (check_server_name(p, "origin", vals[0], why) != APR_SUCCESS
        || (vals[1] && check_server_name(p, "destination", vals[1], why) != APR_SUCCESS)) {
        return APR_EINVAL;
    }
    if (!mxf_id_key_id_valid(vals[2], strlen(vals[2]))) {
        const char *colon = strchr(vals[2], ':');
        if (colon && colon != vals[2] && colon[1] && !mxf_id_key_id_is_ed25519(vals[2])) {
            /* Another algorithm's key ("alg:version"): not ours to check. */
            *why = apr_psprintf(p, "key %s is not of a supported algorithm (ed25519)", vals[2]);
            return APR_ENOTIMPL;
        }
        *why = "key is not a key ID 'ed25519:' + [A-Za-z0-9_]";
        return APR_EINVAL;
    }
    if (mxf_b64_decode_exact(vals[3], strlen(vals[3]), MXF_B64_ANY, sig,
                             sizeof(sig)) != APR_SUCCESS) {
        *why = "sig is not base64 of a 64-byte ed25519 signature";
        return APR_EINVAL;
    }
    xm = apr_pcalloc(p, sizeof(*xm));
    xm->origin = vals[0];
    xm->destination = vals[1];
    xm->key_id = vals[2];
    xm->sig = vals[3];
    *out = xm;
    return APR_SUCCESS;
}

apr_status_t mxf_xmatrix_parse(apr_pool_t *p, const char *header_value,
                               mxf_xmatrix_t **out, const char **why)
{
    apr_array_header_t *creds = apr_array_make(p, 1, sizeof(xm_cred_t));
    const xm_cred_t *cred;

    if (!header_value) {
        *why = "no Authorization header";
        return APR_EINVAL;
    }
    if (parse_credentials(p, header_value, header_value + strlen(header_value),
                          creds, why) != APR_SUCCESS) {
        return APR_EINVAL;
    }
    if (creds->nelts == 0) {
        *why = "empty Authorization header";
        return APR_EINVAL;
    }
    if (creds->nelts > 1) {
        *why = "several credentials in one Authorization header value";
        return APR_EINVAL;
    }
    cred = &APR_ARRAY_IDX(creds, 0, xm_cred_t);
    if (!is_xmatrix(cred)) {
        *why = apr_psprintf(p, "authentication scheme '%.*s' is not X-Matrix",
                            (int)(cred->scheme_len > 32 ? 32 : cred->scheme_len),
                            cred->scheme);
        return APR_EINVAL;
    }
    return xmatrix_from_cred(p, cred, out, why) == APR_SUCCESS ? APR_SUCCESS : APR_EINVAL;
}

apr_status_t mxf_xmatrix_parse_all(apr_pool_t *p, const char *const *values,
                                   int nvalues, apr_array_header_t **out,
                                   const char **why)
{
    apr_array_header_t *creds = apr_array_make(p, 2, sizeof(xm_cred_t));
    apr_array_header_t *res;
    const char *other = NULL;
    int i;

    for (i = 0; i < nvalues; i++) {
        if (values[i] && parse_credentials(p, values[i], values[i] + strlen(values[i]),
                                           creds, why) != APR_SUCCESS) {
            return APR_EINVAL;
        }
    }
    res = apr_array_make(p, creds->nelts ? creds->nelts : 1, sizeof(mxf_xmatrix_t *));
    for (i = 0; i < creds->nelts; i++) {
        const xm_cred_t *cred = &APR_ARRAY_IDX(creds, i, xm_cred_t);
        mxf_xmatrix_t *xm;
        apr_status_t rv;

        if (!is_xmatrix(cred)) {
            continue;
        }
        if ((rv = xmatrix_from_cred(p, cred, &xm, &other)) == APR_ENOTIMPL) {
            continue;           /* signed with an algorithm we do not know: ignored */
        }
        if (rv != APR_SUCCESS) {
            *why = creds->nelts > 1
                 ? apr_psprintf(p, "X-Matrix credential %d: %s", i + 1, other) : other;
            return APR_EINVAL;
        }
        APR_ARRAY_PUSH(res, mxf_xmatrix_t *) = xm;
    }
    if (res->nelts == 0) {
        if (other) {
            *why = other;       /* only credentials of other algorithms */
            return APR_EINVAL;
        }
        *why = "no X-Matrix credential in the Authorization header";
        return APR_ENOENT;
    }
    *out = res;
    return APR_SUCCESS;
}

/* A quoted-string of @a v (escaping '"' and '\', which valid values never hold). */
static char *quote(apr_pool_t *p, const char *v)
{
    apr_size_t n = strlen(v), i;
    char *buf = apr_palloc(p, 2 * n + 3), *o = buf;

    *o++ = '"';
    for (i = 0; i < n; i++) {
        if (v[i] == '"' || v[i] == '\\') {
            *o++ = '\\';
        }
        *o++ = v[i];
    }
    *o++ = '"';
    *o = '\0';
    return buf;
}

char *mxf_xmatrix_build(apr_pool_t *p, const char *origin, const char *destination,
                        const char *key_id, const char *sig)
{
    return apr_pstrcat(p, "X-Matrix origin=", quote(p, origin),
                       destination ? ",destination=" : "",
                       destination ? quote(p, destination) : "",
                       ",key=", quote(p, key_id), ",sig=", quote(p, sig), NULL);
}

json_t *mxf_xmatrix_request_json(apr_pool_t *p, const char *method, const char *uri,
                                 const char *origin, const char *destination,
                                 const json_t *content)
{
    json_t *obj;

    if (!method || !uri || !origin) {
        return NULL;
    }
    obj = json_object();
    if (!obj) {
        return NULL;
    }
    mxf_json_own(p, obj);
    if (json_object_set_new(obj, "method", json_string(method))
        || json_object_set_new(obj, "uri", json_string(uri))
        || json_object_set_new(obj, "origin", json_string(origin))
        || (destination && json_object_set_new(obj, "destination", json_string(destination)))
        /* jansson takes a reference; the object never modifies content. */
        || (content && json_object_set(obj, "content", (json_t *)content))) {
        return NULL;
    }
    return obj;
}

/* Canonical bytes of the request object. */
static const char *request_bytes(apr_pool_t *p, const char *method, const char *uri,
                                 const char *origin, const char *destination,
                                 const json_t *content, apr_size_t *len, const char **why)
{
    json_t *obj = mxf_xmatrix_request_json(p, method, uri, origin, destination, content);
    const char *bytes;

    if (!obj) {
        *why = "cannot build the request object (invalid UTF-8 or missing field)";
        return NULL;
    }
    bytes = mxf_canonical_encode(p, obj, len, why);
    if (!bytes) {
        *why = apr_psprintf(p, "request is not canonical-JSON encodable: %s",
                            *why ? *why : "unknown reason");
    }
    return bytes;
}

apr_status_t mxf_xmatrix_sign_request(apr_pool_t *p, const char *method, const char *uri,
                                      const char *origin, const char *destination,
                                      const json_t *content, const mxf_signing_key_t *key,
                                      const char **header, const char **why)
{
    const char *bytes;
    apr_size_t len = 0;

    *why = NULL;
    bytes = request_bytes(p, method, uri, origin, destination, content, &len, why);
    if (!bytes) {
        return APR_EINVAL;
    }
    *header = mxf_xmatrix_build(p, origin, destination, key->key_id,
                                mxf_sign_bytes(p, key, bytes, len));
    return APR_SUCCESS;
}

apr_status_t mxf_xmatrix_verify_request(apr_pool_t *p, const mxf_xmatrix_t *hdr,
                                        const char *method, const char *uri,
                                        const char *destination, const json_t *content,
                                        const unsigned char pk[MXF_ED25519_PK_BYTES],
                                        const char **why)
{
    const char *bytes;
    apr_size_t len = 0;
    apr_status_t rv;

    *why = NULL;
    if (!destination) {
        *why = "no destination server name to verify against";
        return APR_EINVAL;
    }
    if (hdr->destination && strcmp(hdr->destination, destination) != 0) {
        *why = "the request is addressed to another server (destination)";
        return APR_EACCES;
    }
    bytes = request_bytes(p, method, uri, hdr->origin, destination, content, &len, why);
    if (!bytes) {
        return APR_EINVAL;
    }
    rv = mxf_verify_bytes(bytes, len, hdr->sig, pk, why);
    if (rv == MXF_SIG_BAD) {
        *why = apr_psprintf(p, "signature by %s of %s does not verify", hdr->key_id,
                            hdr->origin);
        return APR_EACCES;
    }
    return rv == APR_SUCCESS ? APR_SUCCESS : APR_EINVAL;
}
