/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * Test-only driver of the core: reads one JSON request per line on stdin,
 * writes one JSON result per line on stdout (flushed after each), so that
 * pytest can cross-check the core against Python libraries through a pipe.
 *
 * Requests are parsed with the core's own parser in tolerant mode
 * (MXF_JSON_ALLOW_NUL, reals and big integers kept). Every request is an
 * object with "op"; every result is {"ok":true,...} or
 * {"ok":false,"error":"...",...}. An "id" member of the request, if any,
 * is copied into the result.
 *
 * Ops (add new ones to the ops[] table at the end):
 *   canonical  {"value":V, "python_floats":bool, "strict_ints":bool}
 *              -> {"canonical":"<canonical JSON text of V>"}
 *   parse      {"text":"...", "strict_ints":bool, "any":bool, "allow_nul":bool}
 *              -> {"canonical":"..."} of the parsed text (mxf_json_parse flags)
 *   sign       {"value":OBJ, "seed":"<b64>", "server":"...", "key_version":"..."}
 *              -> {"signed":OBJ', "public_key":"<b64>"}
 *   verify     {"value":OBJ, "server":"...", "key_id":"...", "public_key":"<b64>"}
 *              -> {} or {"ok":false,"status":"missing|malformed|bad"}
 *   sha256     {"data":"<text>"} or {"data_b64":"<b64>"}, "urlsafe":bool
 *              -> {"hash":"<unpadded b64>"}
 *   xmatrix_parse   {"headers":["<Authorization value>", ...]}
 *              -> {"credentials":[{"origin","destination"|null,"key_id","sig"}, ...]}
 *                 (mxf_xmatrix_parse_all; "status":"none" when no X-Matrix)
 *   xmatrix_verify  {"headers":[...], "method", "uri", "destination", "content"?,
 *                    "public_key":"<b64>"}
 *              -> {"verified":N}: every X-Matrix credential must verify
 *                 with public_key (mxf_xmatrix_verify_request); otherwise
 *                 {"ok":false,"status":"denied|malformed"}
 * Event ops (mxf_event.h); each takes "event":PDU and "room_version":"1".."12":
 *   content_hash  -> {"hash":"<b64>", "match":bool (hashes.sha256 agrees)}
 *   redact        -> {"redacted":OBJ} (the room version's redaction algorithm)
 *   event_id      -> {"event_id":"...", "reference_hash":"<std b64>"}, plus
 *                    "room_id" for a v12+ create event without room_id
 *   sign_event    {"seed","server","key_version"} -> {"signed":PDU'}
 *   verify_event  {"keys":{server:{key_id:"<b64 pk>"}}} -> {"required":[servers]}
 *                 or {"ok":false,"status":"missing|bad|malformed"}
 *   check_limits  {"no_edge_counts":bool} -> {} or {"ok":false,"error":...}
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <sodium.h>

#include "mxf_base64.h"
#include "mxf_canonical.h"
#include "mxf_event.h"
#include "mxf_json.h"
#include "mxf_key.h"
#include "mxf_roomver.h"
#include "mxf_sign.h"
#include "mxf_xmatrix.h"

/* One request: its pool, the parsed request and the result being built. */
typedef struct {
    apr_pool_t *p;
    json_t *req;
    json_t *res;
} tool_req_t;

/* An op fills t->res; on failure returns non-success and sets *why. */
typedef apr_status_t (*tool_op_fn)(tool_req_t *t, const char **why);

static int flag(const tool_req_t *t, const char *name)
{
    return json_is_true(json_object_get(t->req, name));
}

static const char *str(const tool_req_t *t, const char *name)
{
    return json_string_value(json_object_get(t->req, name));
}

static apr_status_t set_str(tool_req_t *t, const char *name, const char *s, apr_size_t len)
{
    json_object_set_new(t->res, name, json_stringn(s, len));
    return APR_SUCCESS;
}

static apr_status_t op_canonical(tool_req_t *t, const char **why)
{
    const json_t *v = json_object_get(t->req, "value");
    unsigned flags = 0;
    apr_size_t len;
    char *out;

    if (!v) {
        *why = "missing 'value'";
        return APR_EINVAL;
    }
    if (flag(t, "python_floats")) {
        flags |= MXF_CANON_PYTHON_FLOATS;
    }
    if (flag(t, "strict_ints")) {
        flags |= MXF_CANON_STRICT_INTS;
    }
    out = mxf_canonical_encode_ex(t->p, v, flags, &len, why);
    return out ? set_str(t, "canonical", out, len) : APR_EINVAL;
}

static apr_status_t op_parse(tool_req_t *t, const char **why)
{
    const json_t *text = json_object_get(t->req, "text");
    unsigned flags = 0;
    apr_size_t len;
    json_t *v;
    char *out;
    apr_status_t rv;

    if (!json_is_string(text)) {
        *why = "missing 'text'";
        return APR_EINVAL;
    }
    flags |= flag(t, "strict_ints") ? MXF_JSON_STRICT_INTS : 0;
    flags |= flag(t, "any") ? MXF_JSON_ANY : 0;
    flags |= flag(t, "allow_nul") ? MXF_JSON_ALLOW_NUL : 0;
    rv = mxf_json_parse(t->p, json_string_value(text), json_string_length(text), flags,
                        &v, why);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    out = mxf_canonical_encode(t->p, v, &len, why);
    return out ? set_str(t, "canonical", out, len) : APR_EINVAL;
}

static apr_status_t op_sign(tool_req_t *t, const char **why)
{
    json_t *v = json_object_get(t->req, "value");
    const char *seed = str(t, "seed"), *server = str(t, "server");
    const char *version = str(t, "key_version");
    mxf_signing_key_t *key;
    apr_status_t rv;

    if (!v || !seed || !server || !version) {
        *why = "need 'value', 'seed', 'server' and 'key_version'";
        return APR_EINVAL;
    }
    rv = mxf_key_parse(t->p, apr_pstrcat(t->p, "ed25519 ", version, " ", seed, NULL),
                       &key, why);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    if ((rv = mxf_sign_json(t->p, v, server, key, why)) != APR_SUCCESS) {
        return rv;
    }
    json_object_set(t->res, "signed", v);
    json_object_set_new(t->res, "public_key",
                        json_string(mxf_b64_encode(t->p, key->pk, sizeof(key->pk),
                                                   MXF_B64_STANDARD)));
    return APR_SUCCESS;
}

static apr_status_t op_verify(tool_req_t *t, const char **why)
{
    const json_t *v = json_object_get(t->req, "value");
    const char *server = str(t, "server"), *key_id = str(t, "key_id");
    const char *pk_b64 = str(t, "public_key");
    unsigned char pk[MXF_ED25519_PK_BYTES];
    apr_status_t rv;

    if (!v || !server || !key_id || !pk_b64) {
        *why = "need 'value', 'server', 'key_id' and 'public_key'";
        return APR_EINVAL;
    }
    if (mxf_b64_decode_exact(pk_b64, strlen(pk_b64), MXF_B64_STANDARD, pk, sizeof(pk))
        != APR_SUCCESS) {
        *why = "public_key is not base64 of 32 bytes";
        return APR_EINVAL;
    }
    rv = mxf_verify_json(t->p, v, server, key_id, pk, why);
    if (rv != APR_SUCCESS) {
        json_object_set_new(t->res, "status",
                            json_string(rv == MXF_SIG_MISSING ? "missing"
                                        : rv == MXF_SIG_BAD ? "bad" : "malformed"));
    }
    return rv;
}

static apr_status_t op_sha256(tool_req_t *t, const char **why)
{
    const json_t *data = json_object_get(t->req, "data");
    const char *data_b64 = str(t, "data_b64");
    mxf_b64_alphabet_t a = flag(t, "urlsafe") ? MXF_B64_URLSAFE : MXF_B64_STANDARD;
    unsigned char *bytes;
    apr_size_t len;
    const char *h;

    if (json_is_string(data)) {
        h = mxf_sha256_b64(t->p, json_string_value(data), json_string_length(data), a);
    }
    else if (data_b64) {
        if (mxf_b64_decode(t->p, data_b64, strlen(data_b64), MXF_B64_STANDARD, &bytes, &len)
            != APR_SUCCESS) {
            *why = "data_b64 is not base64";
            return APR_EINVAL;
        }
        h = mxf_sha256_b64(t->p, bytes, len, a);
    }
    else {
        *why = "need 'data' or 'data_b64'";
        return APR_EINVAL;
    }
    return set_str(t, "hash", h, strlen(h));
}

/* The "headers" array of strings of the request, as a C array. */
static apr_status_t header_values(tool_req_t *t, const char *const **values, int *n,
                                  const char **why)
{
    const json_t *arr = json_object_get(t->req, "headers");
    const char **v;
    size_t i;

    if (!json_is_array(arr)) {
        *why = "need 'headers', an array of strings";
        return APR_EINVAL;
    }
    v = apr_pcalloc(t->p, (json_array_size(arr) + 1) * sizeof(*v));
    for (i = 0; i < json_array_size(arr); i++) {
        v[i] = json_string_value(json_array_get(arr, i));
        if (!v[i]) {
            *why = "need 'headers', an array of strings";
            return APR_EINVAL;
        }
    }
    *values = v;
    *n = (int)json_array_size(arr);
    return APR_SUCCESS;
}

static apr_status_t op_xmatrix_parse(tool_req_t *t, const char **why)
{
    const char *const *values;
    apr_array_header_t *creds;
    json_t *list;
    apr_status_t rv;
    int i, n;

    if ((rv = header_values(t, &values, &n, why)) != APR_SUCCESS) {
        return rv;
    }
    rv = mxf_xmatrix_parse_all(t->p, values, n, &creds, why);
    if (rv != APR_SUCCESS) {
        json_object_set_new(t->res, "status",
                            json_string(rv == APR_ENOENT ? "none" : "malformed"));
        return rv;
    }
    list = json_array();
    for (i = 0; i < creds->nelts; i++) {
        const mxf_xmatrix_t *xm = APR_ARRAY_IDX(creds, i, mxf_xmatrix_t *);

        json_array_append_new(list, json_pack("{s:s, s:s?, s:s, s:s}", "origin", xm->origin,
                                              "destination", xm->destination,
                                              "key_id", xm->key_id, "sig", xm->sig));
    }
    json_object_set_new(t->res, "credentials", list);
    return APR_SUCCESS;
}

static apr_status_t op_xmatrix_verify(tool_req_t *t, const char **why)
{
    const char *method = str(t, "method"), *uri = str(t, "uri");
    const char *dest = str(t, "destination"), *pk_b64 = str(t, "public_key");
    const json_t *content = json_object_get(t->req, "content");
    unsigned char pk[MXF_ED25519_PK_BYTES];
    const char *const *values;
    apr_array_header_t *creds;
    apr_status_t rv;
    int i, n;

    if (!method || !uri || !dest || !pk_b64) {
        *why = "need 'method', 'uri', 'destination' and 'public_key'";
        return APR_EINVAL;
    }
    if (mxf_b64_decode_exact(pk_b64, strlen(pk_b64), MXF_B64_STANDARD, pk, sizeof(pk))
        != APR_SUCCESS) {
        *why = "public_key is not base64 of 32 bytes";
        return APR_EINVAL;
    }
    if ((rv = header_values(t, &values, &n, why)) != APR_SUCCESS) {
        return rv;
    }
    if ((rv = mxf_xmatrix_parse_all(t->p, values, n, &creds, why)) != APR_SUCCESS) {
        json_object_set_new(t->res, "status", json_string("malformed"));
        return rv;
    }
    for (i = 0; i < creds->nelts; i++) {
        rv = mxf_xmatrix_verify_request(t->p, APR_ARRAY_IDX(creds, i, mxf_xmatrix_t *),
                                        method, uri, dest, content, pk, why);
        if (rv != APR_SUCCESS) {
            json_object_set_new(t->res, "status",
                                json_string(rv == APR_EACCES ? "denied" : "malformed"));
            return rv;
        }
    }
    json_object_set_new(t->res, "verified", json_integer(creds->nelts));
    return APR_SUCCESS;
}

/* ---- events (mxf_event.h): the "event" member is the PDU, "room_version" its version. */

static apr_status_t event_args(tool_req_t *t, json_t **ev, const mxf_roomver_t **rv,
                               const char **why)
{
    *ev = json_object_get(t->req, "event");
    if (!json_is_object(*ev)) {
        *why = "need 'event', an object";
        return APR_EINVAL;
    }
    *rv = mxf_roomver_lookup(t->p, str(t, "room_version"), why);
    return *rv ? APR_SUCCESS : APR_EINVAL;
}

static apr_status_t op_content_hash(tool_req_t *t, const char **why)
{
    json_t *ev;
    const mxf_roomver_t *rv;
    const char *h;

    if (event_args(t, &ev, &rv, why) != APR_SUCCESS) {
        return APR_EINVAL;
    }
    if ((h = mxf_event_content_hash_b64(t->p, ev, rv, why)) == NULL) {
        return APR_EINVAL;
    }
    json_object_set_new(t->res, "match",
                        json_boolean(mxf_event_check_content_hash(t->p, ev, rv, why)
                                     == APR_SUCCESS));
    return set_str(t, "hash", h, strlen(h));
}

static apr_status_t op_redact(tool_req_t *t, const char **why)
{
    json_t *ev, *red;
    const mxf_roomver_t *rv;

    if (event_args(t, &ev, &rv, why) != APR_SUCCESS) {
        return APR_EINVAL;
    }
    if ((red = mxf_event_redact(t->p, ev, rv)) == NULL) {
        *why = "redaction failed";
        return APR_EINVAL;
    }
    json_object_set(t->res, "redacted", red);
    return APR_SUCCESS;
}

static apr_status_t op_event_id(tool_req_t *t, const char **why)
{
    unsigned char h[MXF_SHA256_BYTES];
    json_t *ev;
    const mxf_roomver_t *rv;
    const char *id;
    apr_status_t st;

    if (event_args(t, &ev, &rv, why) != APR_SUCCESS) {
        return APR_EINVAL;
    }
    if ((st = mxf_event_reference_hash(t->p, ev, rv, h, why)) != APR_SUCCESS) {
        return st;
    }
    json_object_set_new(t->res, "reference_hash",
                        json_string(mxf_b64_encode(t->p, h, sizeof(h), MXF_B64_STANDARD)));
    if ((id = mxf_event_id_compute(t->p, ev, rv, why)) == NULL) {
        return APR_EINVAL;
    }
    if (rv->room_id_is_create_hash && json_object_get(ev, "room_id") == NULL) {
        const char *room_id = mxf_event_room_id_from_create(t->p, ev, rv, why);
        if (room_id) {
            set_str(t, "room_id", room_id, strlen(room_id));
        }
    }
    return set_str(t, "event_id", id, strlen(id));
}

static apr_status_t op_sign_event(tool_req_t *t, const char **why)
{
    const char *seed = str(t, "seed"), *server = str(t, "server");
    const char *version = str(t, "key_version");
    mxf_signing_key_t *key;
    const mxf_roomver_t *rv;
    json_t *ev;
    apr_status_t st;

    if (event_args(t, &ev, &rv, why) != APR_SUCCESS) {
        return APR_EINVAL;
    }
    if (!seed || !server || !version) {
        *why = "need 'seed', 'server' and 'key_version'";
        return APR_EINVAL;
    }
    st = mxf_key_parse(t->p, apr_pstrcat(t->p, "ed25519 ", version, " ", seed, NULL),
                       &key, why);
    if (st != APR_SUCCESS || (st = mxf_event_sign(t->p, ev, rv, server, key, why))
                             != APR_SUCCESS) {
        return st;
    }
    json_object_set(t->res, "signed", ev);
    return APR_SUCCESS;
}

/* Key lookup over the request's "keys": {"server": {"ed25519:x": "<b64 public key>"}}. */
static apr_status_t tool_key_lookup(void *baton, apr_pool_t *p, const char *server_name,
                                    const char *key_id, apr_int64_t origin_server_ts,
                                    const mxf_roomver_t *rv,
                                    unsigned char pk[MXF_ED25519_PK_BYTES])
{
    const char *b64 = json_string_value(json_object_get(json_object_get(baton, server_name),
                                                        key_id));

    (void)p; (void)origin_server_ts; (void)rv;
    if (b64 == NULL) {
        return APR_NOTFOUND;
    }
    return mxf_b64_decode_exact(b64, strlen(b64), MXF_B64_STANDARD, pk,
                                MXF_ED25519_PK_BYTES);
}

static apr_status_t op_verify_event(tool_req_t *t, const char **why)
{
    json_t *ev, *keys = json_object_get(t->req, "keys");
    const mxf_roomver_t *rv;
    apr_array_header_t *signers;
    apr_status_t st;

    if (event_args(t, &ev, &rv, why) != APR_SUCCESS) {
        return APR_EINVAL;
    }
    if (!json_is_object(keys)) {
        *why = "need 'keys', {server: {key_id: public key}}";
        return APR_EINVAL;
    }
    if (mxf_event_required_signers(t->p, ev, rv, &signers, why) == APR_SUCCESS) {
        json_t *list = json_array();
        int i;
        for (i = 0; i < signers->nelts; i++) {
            json_array_append_new(list, json_string(APR_ARRAY_IDX(signers, i, const char *)));
        }
        json_object_set_new(t->res, "required", list);
    }
    st = mxf_event_verify_signatures(t->p, ev, rv, tool_key_lookup, keys, why);
    if (st != APR_SUCCESS) {
        json_object_set_new(t->res, "status",
                            json_string(st == MXF_SIG_MISSING ? "missing"
                                        : st == MXF_SIG_BAD ? "bad" : "malformed"));
    }
    return st;
}

static apr_status_t op_check_limits(tool_req_t *t, const char **why)
{
    json_t *ev;
    const mxf_roomver_t *rv;

    if (event_args(t, &ev, &rv, why) != APR_SUCCESS) {
        return APR_EINVAL;
    }
    return mxf_event_check_limits(t->p, ev, rv, flag(t, "no_edge_counts")
                                  ? MXF_EVENT_LIMITS_NO_EDGE_COUNTS : 0, why);
}

/* The dispatch table: add ops here. */
static const struct {
    const char *name;
    tool_op_fn fn;
} ops[] = {
    { "canonical", op_canonical },
    { "parse", op_parse },
    { "sign", op_sign },
    { "verify", op_verify },
    { "sha256", op_sha256 },
    { "xmatrix_parse", op_xmatrix_parse },
    { "xmatrix_verify", op_xmatrix_verify },
    { "content_hash", op_content_hash },
    { "redact", op_redact },
    { "event_id", op_event_id },
    { "sign_event", op_sign_event },
    { "verify_event", op_verify_event },
    { "check_limits", op_check_limits },
};

static void handle_line(apr_pool_t *p, const char *line, apr_size_t len)
{
    tool_req_t t;
    const char *why = NULL, *op, *out;
    apr_status_t rv = APR_EINVAL;
    size_t i;

    t.p = p;
    t.res = mxf_json_own(p, json_object());
    if (mxf_json_parse(p, line, len, MXF_JSON_ALLOW_NUL, &t.req, &why) == APR_SUCCESS) {
        json_t *id = json_object_get(t.req, "id");

        if (id) {
            json_object_set(t.res, "id", id);
        }
        op = str(&t, "op");
        why = "unknown or missing 'op'";
        for (i = 0; op && i < sizeof(ops) / sizeof(ops[0]); i++) {
            if (strcmp(op, ops[i].name) == 0) {
                why = NULL;
                rv = ops[i].fn(&t, &why);
                break;
            }
        }
    }
    json_object_set_new(t.res, "ok", json_boolean(rv == APR_SUCCESS));
    if (rv != APR_SUCCESS) {
        json_object_set_new(t.res, "error", json_string(why ? why : "failed"));
    }
    out = mxf_json_dump(p, t.res, NULL);
    if (!out) {
        out = "{\"ok\":false,\"error\":\"result not encodable\"}";
    }
    fputs(out, stdout);
    fputc('\n', stdout);
    fflush(stdout);
}

int main(void)
{
    apr_pool_t *root, *p;
    size_t cap = 1 << 16, len;
    char *line;

    if (apr_initialize() != APR_SUCCESS || sodium_init() < 0) {
        return EXIT_FAILURE;
    }
    apr_pool_create(&root, NULL);
    line = malloc(cap);
    if (!line) {
        return EXIT_FAILURE;
    }
    for (;;) {
        len = 0;
        /* Read a whole line of any length. */
        while (fgets(line + len, (int)(cap - len), stdin)) {
            len += strlen(line + len);
            if (len > 0 && line[len - 1] == '\n') {
                break;
            }
            if (cap - len < 2) {
                char *bigger = realloc(line, cap * 2);
                if (!bigger) {
                    free(line);
                    return EXIT_FAILURE;
                }
                line = bigger;
                cap *= 2;
            }
        }
        if (len == 0) {
            break;
        }
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) {
            len--;
        }
        if (len == 0) {
            continue;
        }
        apr_pool_create(&p, root);
        handle_line(p, line, len);
        apr_pool_destroy(p);
    }
    free(line);
    apr_pool_destroy(root);
    apr_terminate();
    return EXIT_SUCCESS;
}
