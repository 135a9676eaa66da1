/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#include "mod_matrix_fed_private.h"

#include <apr_strings.h>
#include <http_protocol.h>
#include <util_filter.h>

#include "mxf_error.h"
#include "mod_matrix_fed_http.h"

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
