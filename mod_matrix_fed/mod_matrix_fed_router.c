/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#include "mod_matrix_fed_private.h"

#include <apr_strings.h>
#include <http_protocol.h>

#include "mxf_error.h"
#include "mod_matrix_fed_auth.h"
#include "mod_matrix_fed_http.h"
#include "mod_matrix_fed_keys.h"
#include "mod_matrix_fed_router.h"

static const mxf_route_t routes[] = {
    { M_GET, "/_matrix/federation/v1/version", mxf_handle_version, MXF_ROUTE_PUBLIC },
    /* The deprecated /server/{keyId} form (and /server/) get the same full answer. */
    { M_GET, "/_matrix/key/v2/server", mxf_handle_server_keys, MXF_ROUTE_PUBLIC },
    { M_GET, "/_matrix/key/v2/server/", mxf_handle_server_keys, MXF_ROUTE_PUBLIC },
    { M_GET, "/_matrix/key/v2/server/{}", mxf_handle_server_keys, MXF_ROUTE_PUBLIC },
    /* Notary; the /query/{serverName}/{keyId} form (gone from the spec) answers all keys. */
    { M_POST, "/_matrix/key/v2/query", mxf_handle_key_query,
      MXF_ROUTE_PUBLIC | MXF_ROUTE_NOTARY },
    { M_GET, "/_matrix/key/v2/query/{}", mxf_handle_key_query,
      MXF_ROUTE_PUBLIC | MXF_ROUTE_NOTARY },
    { M_GET, "/_matrix/key/v2/query/{}/{}", mxf_handle_key_query,
      MXF_ROUTE_PUBLIC | MXF_ROUTE_NOTARY },
    { M_POST, "/_matrix/federation/v1/get_missing_events/{}", mxf_handle_get_missing_events,
      MXF_ROUTE_SLASH },
    { M_GET, "/_matrix/federation/v1/backfill/{}", mxf_handle_backfill, MXF_ROUTE_SLASH },
    { M_GET, "/_matrix/federation/v1/event/{}", mxf_handle_event, MXF_ROUTE_SLASH },
    { M_GET, "/_matrix/federation/v1/state/{}", mxf_handle_state, MXF_ROUTE_SLASH },
    { M_GET, "/_matrix/federation/v1/state_ids/{}", mxf_handle_state_ids, MXF_ROUTE_SLASH },
    { M_GET, "/_matrix/federation/v1/event_auth/{}/{}", mxf_handle_event_auth, 0 },
    { M_GET, "/_matrix/federation/v1/timestamp_to_event/{}", mxf_handle_timestamp_to_event,
      MXF_ROUTE_SLASH },
};

#define NROUTES (sizeof(routes) / sizeof(routes[0]))

/* Splits the raw (still percent-encoded) path after its leading '/'. */
static int split_path(apr_pool_t *p, const char *path, const char ***segs)
{
    apr_array_header_t *arr = apr_array_make(p, 8, sizeof(const char *));
    const char *start = path + 1, *slash;

    do {
        slash = strchr(start, '/');
        APR_ARRAY_PUSH(arr, const char *) =
            slash ? apr_pstrmemdup(p, start, (apr_size_t)(slash - start)) : start;
        start = slash ? slash + 1 : NULL;
    } while (start);
    *segs = (const char **)arr->elts;
    return arr->nelts;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/*
 * Percent-decodes one path segment ('%2F' becomes '/', '+' stays '+').
 * Returns 0 for a bad escape or an encoded NUL.
 */
static int decode_segment(apr_pool_t *p, const char *seg, const char **out,
                          apr_size_t *outlen)
{
    apr_size_t n = strlen(seg), i, j = 0;
    char *buf = apr_palloc(p, n + 1);

    for (i = 0; i < n; i++) {
        if (seg[i] == '%') {
            int hi, lo;
            if (i + 2 >= n) {
                return 0;
            }
            hi = hexval(seg[i + 1]);
            lo = hi < 0 ? -1 : hexval(seg[i + 2]);
            if (lo < 0 || (hi == 0 && lo == 0)) {
                return 0;
            }
            buf[j++] = (char)(hi * 16 + lo);
            i += 2;
        }
        else {
            buf[j++] = seg[i];
        }
    }
    buf[j] = '\0';
    *out = buf;
    *outlen = j;
    return 1;
}

/* The number of leading literal segments of @a pattern, and its segments. */
static int pattern_segments(apr_pool_t *p, const char *pattern, const char ***segs,
                            int *nliteral)
{
    int n = split_path(p, pattern, segs), i;

    for (i = 0; i < n && strcmp((*segs)[i], "{}") != 0; i++)
        ;
    *nliteral = i;
    return n;
}

/*
 * Whether route @a i is on under @a conf and the leading segments of @a segs
 * (@a nsegs of them) are its literal ones.
 */
static int under_route(apr_pool_t *p, const mxf_srv_conf_t *conf, apr_size_t i,
                       const char **segs, int nsegs, const char ***pat, int *npat, int *nlit)
{
    int k;

    if ((routes[i].flags & MXF_ROUTE_NOTARY) && !mxf_keys_notary(conf->keys)) {
        return 0;
    }
    *npat = pattern_segments(p, routes[i].pattern, pat, nlit);
    if (nsegs < *nlit) {
        return 0;
    }
    for (k = 0; k < *nlit; k++) {
        if (strcmp((*pat)[k], segs[k]) != 0) {
            return 0;
        }
    }
    return 1;
}

int mxf_router_claims(apr_pool_t *p, const mxf_srv_conf_t *conf, const char *path)
{
    const char **segs, **pat;
    int nsegs, npat, nlit;
    apr_size_t i;

    if (!path || strncmp(path, "/_matrix/", 9) != 0) {
        return 0;
    }
    nsegs = split_path(p, path, &segs);
    for (i = 0; i < NROUTES; i++) {
        if (under_route(p, conf, i, segs, nsegs, &pat, &npat, &nlit)) {
            return 1;
        }
    }
    return 0;
}

mxf_req_t *mxf_router_match(request_rec *r, const mxf_srv_conf_t *conf)
{
    const char *path = r->parsed_uri.path;
    const char **segs;
    int nsegs;
    apr_size_t i;
    mxf_req_t *req = NULL;

    if (!path || path[0] != '/' || strncmp(path, "/_matrix/", 9) != 0) {
        return NULL;
    }
    nsegs = split_path(r->pool, path, &segs);
    for (i = 0; i < NROUTES; i++) {
        const char **pat;
        int npat, nlit, k, ok = 1;

        if (!under_route(r->pool, conf, i, segs, nsegs, &pat, &npat, &nlit)) {
            continue;
        }
        if (!req) {
            req = apr_pcalloc(r->pool, sizeof(*req));
            req->r = r;
            req->conf = conf;
        }
        if (npat != nsegs
            && !((routes[i].flags & MXF_ROUTE_SLASH) && nsegs == npat + 1
                 && segs[npat][0] == '\0')) {
            continue;
        }
        for (k = nlit; k < npat && ok; k++) {
            if (strcmp(pat[k], "{}") != 0) {
                ok = strcmp(pat[k], segs[k]) == 0;
            }
            else {
                ok = segs[k][0] != '\0';
            }
        }
        if (!ok) {
            continue;
        }
        req->allowed |= (AP_METHOD_BIT << routes[i].method);
        if (routes[i].method == r->method_number
            || (routes[i].method == M_GET && r->header_only)) {
            int np = 0;
            req->route = &routes[i];
            for (k = nlit; k < npat; k++) {
                if (strcmp(pat[k], "{}") == 0 && np < MXF_ROUTE_MAX_PARAMS) {
                    if (!decode_segment(r->pool, segs[k], &req->params[np],
                                        &req->param_lens[np])) {
                        req->params[np] = NULL;   /* reported by dispatch */
                    }
                    np++;
                }
            }
            req->nparams = np;
        }
    }
    return req;
}

static const char *allow_header(request_rec *r, int allowed)
{
    const char *allow = NULL;

    if (allowed & (AP_METHOD_BIT << M_GET)) {
        allow = "GET, HEAD";
    }
    if (allowed & (AP_METHOD_BIT << M_POST)) {
        allow = allow ? apr_pstrcat(r->pool, allow, ", POST", NULL) : "POST";
    }
    return allow;
}

int mxf_router_dispatch(mxf_req_t *req)
{
    request_rec *r = req->r;
    int i;

    if (!req->route) {
        if (req->allowed && r->method_number == M_OPTIONS) {
            /* A CORS preflight (or a plain OPTIONS): the methods, no body. */
            apr_table_setn(r->headers_out, "Allow",
                           apr_pstrcat(r->pool, allow_header(r, req->allowed), ", OPTIONS",
                                       NULL));
            r->status = HTTP_NO_CONTENT;
            return OK;
        }
        if (req->allowed) {
            apr_table_setn(r->headers_out, "Allow", allow_header(r, req->allowed));
            return mxf_http_send_error(r, HTTP_METHOD_NOT_ALLOWED, MXF_M_UNRECOGNIZED,
                                       "Method %s is not allowed on this endpoint",
                                       r->method);
        }
        return mxf_http_send_error(r, HTTP_NOT_FOUND, MXF_M_UNRECOGNIZED,
                                   "Unrecognized request");
    }
    for (i = 0; i < req->nparams; i++) {
        if (!req->params[i]) {
            return mxf_http_send_error(r, HTTP_BAD_REQUEST, MXF_M_INVALID_PARAM,
                                       "Malformed percent-encoding in the request path");
        }
    }
    if (!(req->route->flags & MXF_ROUTE_PUBLIC) && !req->origin) {
        /*
         * Normally authenticated in check_user_id already (mod_matrix_fed_auth.c);
         * if that phase was skipped, authenticate now or answer 401: never serve
         * an unauthenticated request.
         */
        int status = mxf_auth_ensure(req);
        if (status != OK) {
            return status;
        }
    }
    return req->route->handler(req);
}
