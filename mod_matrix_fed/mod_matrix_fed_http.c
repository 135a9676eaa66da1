/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#include "mod_matrix_fed_private.h"

#include <apr_strings.h>
#include <http_protocol.h>
#include <util_filter.h>

#include "mxf_error.h"
#include "mod_matrix_fed_http.h"
#include "mod_matrix_fed_router.h"

int mxf_http_send_raw(request_rec *r, int status, const char *body, apr_size_t len)
{
    apr_bucket_brigade *bb;

    r->status = status;
    ap_set_content_type(r, "application/json");
    ap_set_content_length(r, (apr_off_t)len);
    if (r->header_only) {
        return OK;
    }
    bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_immortal_create(body, len, bb->bucket_alloc));
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_eos_create(bb->bucket_alloc));
    if (ap_pass_brigade(r->output_filters, bb) != APR_SUCCESS) {
        /* The client went away; nothing more can be told to it. */
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, MXFLOGNO(20005)
                      "could not send the response");
    }
    return OK;
}

int mxf_http_send_brigade(request_rec *r, int status, apr_bucket_brigade *bb)
{
    apr_off_t len = 0;

    r->status = status;
    ap_set_content_type(r, "application/json");
    apr_brigade_length(bb, 1, &len);
    ap_set_content_length(r, len);
    if (r->header_only) {
        apr_brigade_cleanup(bb);
    }
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_eos_create(bb->bucket_alloc));
    if (ap_pass_brigade(r->output_filters, bb) != APR_SUCCESS) {
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, MXFLOGNO(20010)
                      "could not send the response");
    }
    return OK;
}

void mxf_http_put_json_string(request_rec *r, apr_bucket_brigade *bb, const char *s)
{
    json_t *str;
    apr_size_t len = 0;
    const char *text, *c;

    /* Printable ASCII without quote or backslash (event IDs, nearly always)
     * needs no escaping: written as it is, into the brigade's last buffer. */
    for (c = s; *c >= 0x20 && *c < 0x7f && *c != '"' && *c != '\\'; c++) {
    }
    if (*c == '\0') {
        apr_brigade_putc(bb, NULL, NULL, '"');
        apr_brigade_write(bb, NULL, NULL, s, (apr_size_t)(c - s));
        apr_brigade_putc(bb, NULL, NULL, '"');
        return;
    }
    str = json_string(s);
    text = str ? mxf_json_dump(r->pool, str, &len) : NULL;

    json_decref(str);
    if (!text) {
        text = "\"\"";            /* not UTF-8: cannot be told as JSON */
        len = 2;
    }
    apr_brigade_write(bb, NULL, NULL, text, len);
}

int mxf_http_send_json(request_rec *r, int status, const json_t *json)
{
    apr_size_t len;
    const char *body = mxf_json_dump(r->pool, json, &len);

    if (!body) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, MXFLOGNO(20006)
                      "could not encode a response as JSON");
        return mxf_http_send_error(r, HTTP_INTERNAL_SERVER_ERROR, MXF_M_UNKNOWN,
                                   "Internal error while encoding the response");
    }
    return mxf_http_send_raw(r, status, body, len);
}

int mxf_http_send_error(request_rec *r, int status, const char *errcode,
                        const char *fmt, ...)
{
    va_list ap;
    const char *msg, *body;
    json_t *err;
    apr_size_t len = 0;

    va_start(ap, fmt);
    msg = apr_pvsprintf(r->pool, fmt, ap);
    va_end(ap);
    err = mxf_json_own(r->pool, json_pack("{s:s, s:s}", "errcode", errcode,
                                          "error", msg));
    body = err ? mxf_json_dump(r->pool, err, &len) : NULL;
    if (!body) {
        /* The message held bytes JSON cannot carry: fall back to the code. */
        body = apr_psprintf(r->pool, "{\"errcode\":\"%s\",\"error\":\"%s\"}",
                            errcode, errcode);
        len = strlen(body);
    }
    return mxf_http_send_raw(r, status, body, len);
}

int mxf_http_read_body(mxf_req_t *req)
{
    request_rec *r = req->r;
    apr_off_t max = mxf_config_max_body(req->conf);
    apr_bucket_brigade *bb;
    apr_size_t total = 0, cap;
    int seen_eos = 0;
    char *buf, *end;
    const char *why = NULL, *cl;
    apr_off_t announced;
    apr_status_t parsed;

    if (req->body_read) {
        return req->body_read == 1 ? OK : req->body_read;
    }
    req->body_read = 1;
    if ((cl = apr_table_get(r->headers_in, "Content-Length")) != NULL
        && !apr_table_get(r->headers_in, "Transfer-Encoding")
        && apr_strtoff(&announced, cl, &end, 10) == APR_SUCCESS && !*end && announced > max) {
        /*
         * Refused before reading: waiting for a body that will be refused
         * anyway would hold a worker until Timeout. httpd does not read the
         * rest of it: a 413 closes the connection.
         */
        req->body_read = HTTP_REQUEST_ENTITY_TOO_LARGE;
        r->connection->keepalive = AP_CONN_CLOSE;
        return mxf_http_send_error(r, HTTP_REQUEST_ENTITY_TOO_LARGE, MXF_M_TOO_LARGE,
                                   "Request body exceeds %" APR_OFF_T_FMT " bytes", max),
               HTTP_REQUEST_ENTITY_TOO_LARGE;
    }
    /*
     * As much as the body announces, or grown as it arrives (chunked): not
     * MatrixFedMaxBodySize for every request with a body.
     */
    cap = (apr_size_t)(max < 8192 ? max : 8192);
    if (cl && !apr_table_get(r->headers_in, "Transfer-Encoding")
        && apr_strtoff(&announced, cl, &end, 10) == APR_SUCCESS && !*end
        && announced >= 0 && announced <= max) {
        cap = (apr_size_t)announced;
    }
    buf = apr_palloc(r->pool, cap + 1);
    bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    do {
        apr_bucket *b;
        apr_status_t rv = ap_get_brigade(r->input_filters, bb, AP_MODE_READBYTES,
                                         APR_BLOCK_READ, HUGE_STRING_LEN);
        if (rv != APR_SUCCESS) {
            int status = ap_map_http_request_error(rv, HTTP_BAD_REQUEST);
            if (status == AP_FILTER_ERROR) {
                req->body_read = status;
                return status;
            }
            req->body_read = status;
            if (status == HTTP_REQUEST_ENTITY_TOO_LARGE) {
                return mxf_http_send_error(r, status, MXF_M_TOO_LARGE,
                                           "Request body too large"), status;
            }
            return mxf_http_send_error(r, status, MXF_M_UNKNOWN,
                                       "Could not read the request body"), status;
        }
        for (b = APR_BRIGADE_FIRST(bb); b != APR_BRIGADE_SENTINEL(bb);
             b = APR_BUCKET_NEXT(b)) {
            const char *data;
            apr_size_t n;
            if (APR_BUCKET_IS_EOS(b)) {
                seen_eos = 1;
                break;
            }
            if (APR_BUCKET_IS_METADATA(b)) {
                continue;
            }
            if (apr_bucket_read(b, &data, &n, APR_BLOCK_READ) != APR_SUCCESS) {
                req->body_read = HTTP_BAD_REQUEST;
                return mxf_http_send_error(r, HTTP_BAD_REQUEST, MXF_M_UNKNOWN,
                                           "Could not read the request body"), HTTP_BAD_REQUEST;
            }
            if (total + n > (apr_size_t)max) {
                req->body_read = HTTP_REQUEST_ENTITY_TOO_LARGE;
                return mxf_http_send_error(r, HTTP_REQUEST_ENTITY_TOO_LARGE, MXF_M_TOO_LARGE,
                                           "Request body exceeds %" APR_OFF_T_FMT " bytes",
                                           max), HTTP_REQUEST_ENTITY_TOO_LARGE;
            }
            if (total + n > cap) {
                /* Doubled, up to the limit: at most twice the body in all. */
                char *more;
                cap = total + n > cap * 2 ? total + n : cap * 2;
                if (cap > (apr_size_t)max) {
                    cap = (apr_size_t)max;
                }
                more = apr_palloc(r->pool, cap + 1);
                memcpy(more, buf, total);
                buf = more;
            }
            memcpy(buf + total, data, n);
            total += n;
        }
        apr_brigade_cleanup(bb);
    } while (!seen_eos);
    buf[total] = '\0';
    if (total == 0) {
        return OK;
    }
    req->body = buf;
    req->body_len = total;
    if ((parsed = mxf_json_parse(r->pool, buf, total, MXF_JSON_ANY, &req->body_json, &why))
        != APR_SUCCESS) {
        /* JSON the parser refuses (integers beyond 64 bits, duplicate keys,
         * U+0000) is JSON all the same: M_BAD_JSON, not M_NOT_JSON. */
        req->body_json = NULL;
        req->body_read = HTTP_BAD_REQUEST;
        return mxf_http_send_error(r, HTTP_BAD_REQUEST,
                                   parsed == APR_ERANGE ? MXF_M_BAD_JSON : MXF_M_NOT_JSON,
                                   "Request body is %s: %s",
                                   parsed == APR_ERANGE ? "JSON this server does not take"
                                                    : "not valid JSON", why),
               HTTP_BAD_REQUEST;
    }
    if (!json_is_object(req->body_json)) {
        /* JSON, but not what any endpoint takes (M_BAD_JSON, as for wrong shapes). */
        req->body_json = NULL;
        req->body_read = HTTP_BAD_REQUEST;
        return mxf_http_send_error(r, HTTP_BAD_REQUEST, MXF_M_BAD_JSON,
                                   "Request body must be a JSON object"), HTTP_BAD_REQUEST;
    }
    return OK;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decodes @a n bytes; NULL for a bad escape or an encoded NUL. */
static char *query_decode(apr_pool_t *p, const char *s, apr_size_t n)
{
    char *out = apr_palloc(p, n + 1);
    apr_size_t i, j = 0;

    for (i = 0; i < n; i++) {
        if (s[i] == '%') {
            int hi, lo;
            if (i + 2 >= n) {
                return NULL;
            }
            hi = hexval(s[i + 1]);
            lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                return NULL;
            }
            out[j++] = (char)(hi * 16 + lo);
            i += 2;
        }
        else {
            out[j++] = s[i];
        }
    }
    out[j] = '\0';
    return out;
}

/* Appends the decoded value of @a n bytes at @a s, or counts it as malformed. */
static void query_push(request_rec *r, apr_array_header_t *out, const char *s, apr_size_t n,
                       int *malformed)
{
    char *v = query_decode(r->pool, s, n);

    if (v) {
        APR_ARRAY_PUSH(out, const char *) = v;
    }
    else if (malformed) {
        ++*malformed;
    }
}

apr_array_header_t *mxf_http_query_values(request_rec *r, const char *name, unsigned flags,
                                          int *malformed)
{
    apr_array_header_t *out = apr_array_make(r->pool, 2, sizeof(const char *));
    const char *q = r->args, *amp;
    apr_size_t nlen = strlen(name);

    if (malformed) {
        *malformed = 0;
    }
    while (q && *q) {
        const char *eq;
        apr_size_t len;
        amp = strchr(q, '&');
        len = amp ? (apr_size_t)(amp - q) : strlen(q);
        eq = memchr(q, '=', len);
        if (eq && (apr_size_t)(eq - q) == nlen && !memcmp(q, name, nlen)) {
            const char *val = eq + 1, *end = q + len, *part, *comma;
            query_push(r, out, val, (apr_size_t)(end - val), malformed);
            if ((flags & MXF_QUERY_SPLIT_COMMAS) && memchr(val, ',', (apr_size_t)(end - val))) {
                for (part = val; part <= end; part = comma + 1) {
                    comma = memchr(part, ',', (apr_size_t)(end - part));
                    if (comma == NULL) {
                        comma = end;
                    }
                    if (comma > part) {
                        query_push(r, out, part, (apr_size_t)(comma - part), malformed);
                    }
                }
            }
        }
        q = amp ? amp + 1 : NULL;
    }
    return out;
}
