/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#include "mod_matrix_fed_private.h"

#include <apr_fnmatch.h>
#include <apr_lib.h>
#include <apr_strings.h>
#include <http_protocol.h>
#include <http_request.h>
#include <mod_auth.h>
#include <util_filter.h>

#include "mxf_canonical.h"
#include "mxf_error.h"
#include "mxf_sign.h"
#include "mxf_xmatrix.h"
#include "mod_matrix_fed_auth.h"
#include "mod_matrix_fed_config.h"
#include "mod_matrix_fed_db.h"
#include "mod_matrix_fed_http.h"
#include "mod_matrix_fed_keys.h"
#include "mod_matrix_fed_router.h"

#define JSON_ERROR_FILTER "MXF_JSON_ERROR"

static mxf_req_t *req_of(request_rec *r)
{
    return ap_get_module_config(r->request_config, &matrix_fed_module);
}

/* Whether @a req is a claimed request of a route that needs X-Matrix. */
static int needs_auth(const mxf_req_t *req)
{
    return req && req->route && !(req->route->flags & MXF_ROUTE_PUBLIC);
}

static int fail(mxf_req_t *req, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Sends 401 M_UNAUTHORIZED with the formatted reason; returns 401. */
static int fail(mxf_req_t *req, const char *fmt, ...)
{
    request_rec *r = req->r;
    va_list ap;
    const char *msg;

    va_start(ap, fmt);
    msg = apr_pvsprintf(r->pool, fmt, ap);
    va_end(ap);
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, MXFLOGNO(25050)
                  "X-Matrix authentication failed for %s %s: %s", r->method, r->uri, msg);
    apr_table_setn(r->err_headers_out, "WWW-Authenticate", MXF_AUTH_TYPE);
    mxf_http_send_error(r, HTTP_UNAUTHORIZED, MXF_M_UNAUTHORIZED, "%s", msg);
    return HTTP_UNAUTHORIZED;
}

static int collect_header(void *baton, const char *key, const char *value)
{
    APR_ARRAY_PUSH((apr_array_header_t *)baton, const char *) = value;
    return 1;
}

/* The request target as sent, from "/" on (an absolute-form target loses its scheme and host). */
static const char *signed_uri(request_rec *r)
{
    const char *u = r->unparsed_uri, *s;

    if (u && u[0] != '/' && (s = strstr(u, "://")) != NULL) {
        s = strchr(s + 3, '/');
        return s ? s : "/";
    }
    return u;
}

/*
 * Verifies credential @a c. A body with reals is also checked the way
 * senders written in Python encode them (canonicaljson: repr() of the
 * float, so 1.0 stays "1.0" where canonical JSON has "1"), when canonical
 * JSON cannot encode it or its check fails, so that such a request is
 * authenticated and its handler can judge the value.
 */
static apr_status_t verify(request_rec *r, const mxf_xmatrix_t *c, const char *our_name,
                           const json_t *content, const unsigned char *pk, const char **why)
{
    apr_status_t rv = mxf_xmatrix_verify_request(r->pool, c, r->method, signed_uri(r),
                                                 our_name, content, pk, why);
    const char *bytes, *again = NULL;
    apr_size_t len = 0;

    if (rv == APR_SUCCESS || !content
        || !(rv == APR_EINVAL || (rv == APR_EACCES && mxf_json_has_real(content)))) {
        return rv;
    }
    bytes = mxf_canonical_encode_ex(r->pool,
                                    mxf_xmatrix_request_json(r->pool, r->method, signed_uri(r),
                                                             c->origin, our_name, content),
                                    MXF_CANON_PYTHON_FLOATS, &len, &again);
    if (!bytes) {
        if (rv == APR_EINVAL) {
            *why = again;
        }
        return rv;
    }
    if (mxf_verify_bytes(bytes, len, c->sig, pk, &again) == APR_SUCCESS) {
        return APR_SUCCESS;
    }
    if (rv == APR_EINVAL) {
        *why = again;
    }
    return APR_EACCES;
}

int mxf_auth_authenticate(mxf_req_t *req)
{
    request_rec *r = req->r;
    const mxf_srv_conf_t *conf = req->conf;
    apr_array_header_t *values = apr_array_make(r->pool, 2, sizeof(const char *));
    apr_array_header_t *creds = NULL;
    const char *why = NULL, *origin, *skipped = NULL, *busy = NULL;
    unsigned char pk[MXF_ED25519_PK_BYTES];
    int status, i, verified = 0, no_database = 0;
    apr_status_t rv;

    /*
     * The body is signed as "content" where the method has one: a body
     * sent with any other method (GET) is not part of the request, as in
     * the reference homeserver, which reads bodies of POST and PUT only.
     */
    if ((r->method_number == M_POST || r->method_number == M_PUT)
        && (status = mxf_http_read_body(req)) != OK) {
        return status;
    }
    apr_table_do(collect_header, values, r->headers_in, "Authorization", NULL);
    rv = mxf_xmatrix_parse_all(r->pool, (const char *const *)values->elts, values->nelts,
                               &creds, &why);
    if (rv == APR_ENOENT) {
        return fail(req, "Missing X-Matrix Authorization header");
    }
    if (rv != APR_SUCCESS) {
        return fail(req, "Malformed X-Matrix Authorization header: %s", why);
    }
    origin = APR_ARRAY_IDX(creds, 0, mxf_xmatrix_t *)->origin;
    for (i = 0; i < creds->nelts; i++) {
        const mxf_xmatrix_t *c = APR_ARRAY_IDX(creds, i, mxf_xmatrix_t *);
        if (strcmp(c->origin, origin) != 0) {
            return fail(req, "X-Matrix credentials name different origins (%s, %s)",
                        origin, c->origin);
        }
        if (c->destination && strcmp(c->destination, conf->server_name) != 0) {
            return fail(req, "Wrong destination: this server is %s, the request was "
                        "signed for %s", conf->server_name, c->destination);
        }
    }
    /* Any one valid signature suffices; an invalid one with a known key fails. */
    for (i = 0; i < creds->nelts; i++) {
        const mxf_xmatrix_t *c = APR_ARRAY_IDX(creds, i, mxf_xmatrix_t *);
        rv = mxf_keys_get(r, conf, origin, c->key_id, pk, &why);
        if (rv == MXF_KEY_NO_DATABASE) {
            no_database = 1;
            continue;
        }
        if (rv == MXF_KEY_BUSY) {
            busy = why;
            continue;
        }
        if (rv != APR_SUCCESS) {
            if (!skipped) {
                skipped = rv == MXF_KEY_UNKNOWN
                    ? apr_pstrcat(r->pool, "Unknown key: ", why, NULL)
                    : rv == MXF_KEY_EXPIRED
                    ? apr_pstrcat(r->pool, "Expired key: ", why, NULL)
                    : apr_pstrcat(r->pool, "Key unavailable: ", why, NULL);
            }
            continue;
        }
        if (verify(r, c, conf->server_name, req->body_json, pk, &why) != APR_SUCCESS) {
            return fail(req, "Bad signature by %s with key %s: %s", origin, c->key_id,
                        why);
        }
        verified++;
    }
    if (!verified && no_database) {
        /* Not the requester's fault: 503, as any request the database cannot answer. */
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, MXFLOGNO(25068)
                      "X-Matrix keys of %s cannot be looked up: the database is not "
                      "available", origin);
        return mxf_db_unavailable(r, 0);
    }
    if (!verified && busy) {
        /* This server's limit, not the requester's fault: try again shortly. */
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, MXFLOGNO(25073)
                      "X-Matrix keys of %s not available now: %s", origin, busy);
        apr_table_setn(r->err_headers_out, "Retry-After", "1");
        mxf_http_send_error(r, HTTP_SERVICE_UNAVAILABLE, MXF_M_UNKNOWN,
                            "This server is fetching too many keys at once; "
                            "try again later");
        return HTTP_SERVICE_UNAVAILABLE;
    }
    if (!verified) {
        return fail(req, "%s", skipped ? skipped : "No usable X-Matrix credential");
    }
    req->origin = origin;
    r->user = (char *)origin;
    r->ap_auth_type = (char *)MXF_AUTH_TYPE;
    ap_log_rerror(APLOG_MARK, APLOG_TRACE1, 0, r, "authenticated origin %s", origin);
    return OK;
}

int mxf_auth_ensure(mxf_req_t *req)
{
    int status;

    if (req->origin) {
        return OK;
    }
    if (req->r->main) {
        fail(req, "Subrequests are not authenticated");
        return DONE;                    /* answered: the handler must not run */
    }
    status = mxf_auth_authenticate(req);
    return status == OK ? OK : status == AP_FILTER_ERROR ? status : DONE;
}

/* ------------------------------------------------------------------ hooks */

static int auth_force_authn(request_rec *r)
{
    return needs_auth(req_of(r)) && !r->main ? OK : DECLINED;
}

static int auth_check_user_id(request_rec *r)
{
    mxf_req_t *req = req_of(r);
    int status;

    if (!needs_auth(req) || r->main) {
        return DECLINED;
    }
    if (req->origin) {
        r->user = (char *)req->origin;
        r->ap_auth_type = (char *)MXF_AUTH_TYPE;
        return OK;
    }
    status = mxf_auth_authenticate(req);
    /* The error answer is out already: DONE makes httpd just finish it. */
    return status == OK ? OK : status == AP_FILTER_ERROR ? status : DONE;
}

/* Require matrix-origin <pattern> ... */
static authz_status origin_check(request_rec *r, const char *require_line,
                                 const void *parsed)
{
    mxf_req_t *req = req_of(r);
    const char *t = require_line, *w;

    if (!needs_auth(req) || r->main) {
        return AUTHZ_NEUTRAL;
    }
    if (!req->origin) {
        return AUTHZ_DENIED_NO_USER;
    }
    while (*(w = ap_getword_conf(r->pool, &t))) {
        if (apr_fnmatch(w, req->origin, APR_FNM_CASE_BLIND) == APR_SUCCESS) {
            return AUTHZ_GRANTED;
        }
    }
    return AUTHZ_DENIED;
}

static const char *origin_parse(cmd_parms *cmd, const char *require_line,
                                const void **parsed)
{
    const char *t = require_line;

    if (!*ap_getword_conf(cmd->temp_pool, &t)) {
        return "Require matrix-origin needs at least one server name pattern";
    }
    return NULL;
}

static const authz_provider origin_provider = { origin_check, origin_parse };

/* ------------------------------------------------------------------ JSON error pages */

static const char *errcode_of(int status)
{
    switch (status) {
    case HTTP_UNAUTHORIZED:             return MXF_M_UNAUTHORIZED;
    case HTTP_FORBIDDEN:                return MXF_M_FORBIDDEN;
    case HTTP_NOT_FOUND:                return MXF_M_NOT_FOUND;
    case HTTP_METHOD_NOT_ALLOWED:       return MXF_M_UNRECOGNIZED;
    case HTTP_REQUEST_ENTITY_TOO_LARGE: return MXF_M_TOO_LARGE;
    case HTTP_TOO_MANY_REQUESTS:        return MXF_M_LIMIT_EXCEEDED;
    default:                            return MXF_M_UNKNOWN;
    }
}

/*
 * The path of the request target as received (signed_uri() less its
 * query), or NULL. A request line httpd refused before parsing it (longer
 * than LimitRequestLine: 414) is read for its target as far as httpd kept
 * it, so a path under /_matrix/ is still told.
 */
static const char *raw_path(request_rec *r)
{
    const char *u = r->unparsed_uri ? signed_uri(r) : NULL, *q;

    if (u == NULL && r->the_request != NULL) {
        const char *t = ap_strchr_c(r->the_request, ' ');
        if (t != NULL && t[1] == '/') {
            u = t + 1;
            q = u + strcspn(u, " ?");
            return apr_pstrmemdup(r->pool, u, (apr_size_t)(q - u));
        }
        return NULL;
    }
    q = u ? strchr(u, '?') : NULL;
    return q ? apr_pstrmemdup(r->pool, u, (apr_size_t)(q - u)) : u;
}

/*
 * Error pages httpd itself makes under /_matrix/ on a host with
 * MatrixFederation On are Matrix errors: for the module's requests, for
 * those under its paths that httpd refused before it could claim them (a
 * path httpd cannot normalise, say), and for every other /_matrix/ path
 * (no such endpoint here, the homeserver behind ProxyPass unreachable).
 * Answers that other handlers make, the homeserver's included, pass
 * untouched.
 */
typedef struct matrix_error {
    const char *errcode, *error;        /* NULL: by the status */
} matrix_error_t;

static const matrix_error_t unrecognized = { MXF_M_UNRECOGNIZED, NULL };
static const matrix_error_t bad_escape = {
    MXF_M_INVALID_PARAM, "Malformed percent-encoding in the path"
};

/* Whether @a path has a % not followed by two hex digits. */
static int has_bad_escape(const char *path)
{
    for (path = strchr(path, '%'); path; path = strchr(path + 1, '%')) {
        if (!apr_isxdigit(path[1]) || !apr_isxdigit(path[2])) {
            return 1;
        }
    }
    return 0;
}

static void auth_insert_error_filter(request_rec *r)
{
    const char *path;

    if (req_of(r)) {
        ap_add_output_filter(JSON_ERROR_FILTER, NULL, r, r->connection);
        return;
    }
    if (ap_is_HTTP_ERROR(r->status) && r->proxyreq != PROXYREQ_PROXY
        && mxf_config_enabled(mxf_config_get(r->server))
        && (path = raw_path(r)) != NULL && strncmp(path, "/_matrix/", 9) == 0) {
        const matrix_error_t *e = NULL;
        if (r->status == HTTP_BAD_REQUEST && has_bad_escape(path)) {
            /*
             * httpd refuses such a path before the module sees it; the
             * module's own answer to a bad escape (%00) is this one.
             */
            e = &bad_escape;
        }
        else if ((r->status == HTTP_NOT_FOUND || r->status == HTTP_METHOD_NOT_ALLOWED)
                 && !mxf_router_claims(r->pool, mxf_config_get(r->server), path)) {
            /* Outside the module's paths: no such endpoint here. */
            e = &unrecognized;
        }
        ap_add_output_filter(JSON_ERROR_FILTER, (void *)e, r, r->connection);
    }
}

/* Replaces the body of an error page httpd generates with a Matrix error. */
static apr_status_t json_error_filter(ap_filter_t *f, apr_bucket_brigade *bb)
{
    request_rec *r = f->r;
    apr_bucket *b, *next;

    for (b = APR_BRIGADE_FIRST(bb); b != APR_BRIGADE_SENTINEL(bb); b = next) {
        next = APR_BUCKET_NEXT(b);
        if (!APR_BUCKET_IS_METADATA(b)) {
            apr_bucket_delete(b);
        }
    }
    if (f->ctx != f) {
        const matrix_error_t *e = f->ctx;
        const char *reason = ap_get_status_line(r->status);
        const char *errcode = e && e->errcode ? e->errcode : errcode_of(r->status);
        const char *error = e && e->error ? e->error : reason ? reason + 4 : "Error";
        json_t *err = mxf_json_own(r->pool, json_pack("{s:s, s:s}", "errcode", errcode,
                                                      "error", error));
        apr_size_t len = 0;
        const char *body = err ? mxf_json_dump(r->pool, err, &len) : NULL;

        f->ctx = f;                     /* the body is in place */
        if (!body) {
            body = "{\"errcode\":\"M_UNKNOWN\",\"error\":\"Error\"}";
            len = strlen(body);
        }
        ap_set_content_type(r, "application/json");
        ap_set_content_length(r, (apr_off_t)len);
        if (!r->header_only) {
            APR_BRIGADE_INSERT_HEAD(bb, apr_bucket_pool_create(body, len, r->pool,
                                                               bb->bucket_alloc));
        }
    }
    return ap_pass_brigade(f->next, bb);
}

/* In check_config, so that configtest catches it (see mxf_check_config()). */
static int auth_check_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp,
                             server_rec *s)
{
    if (mxf_config_any_enabled(s) && !ap_find_linked_module("mod_authz_core.c")) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, MXFLOGNO(25051)
                     "MatrixFederation needs mod_authz_core for X-Matrix request "
                     "authentication: LoadModule authz_core_module");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    return OK;
}

void mxf_auth_register_hooks(apr_pool_t *p)
{
    ap_hook_check_authn(auth_check_user_id, NULL, NULL, APR_HOOK_FIRST,
                        AP_AUTH_INTERNAL_PER_URI);
    ap_hook_force_authn(auth_force_authn, NULL, NULL, APR_HOOK_FIRST);
    ap_register_auth_provider(p, AUTHZ_PROVIDER_GROUP, "matrix-origin",
                              AUTHZ_PROVIDER_VERSION, &origin_provider,
                              AP_AUTH_INTERNAL_PER_CONF);
    ap_hook_insert_error_filter(auth_insert_error_filter, NULL, NULL, APR_HOOK_MIDDLE);
    ap_register_output_filter(JSON_ERROR_FILTER, json_error_filter, NULL,
                              AP_FTYPE_CONTENT_SET);
    ap_hook_check_config(auth_check_config, NULL, NULL, APR_HOOK_MIDDLE);
}
