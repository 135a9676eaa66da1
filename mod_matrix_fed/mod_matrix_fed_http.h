/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * Response and request-body plumbing. Every answer the module produces,
 * errors included, goes out as application/json through these helpers; a
 * handler returns their result (OK) and never an HTTP error code, which
 * httpd would turn into an HTML page.
 */
#ifndef mod_matrix_fed_http_h
#define mod_matrix_fed_http_h

#include <apr_buckets.h>
#include <apr_tables.h>

#include "mxf_json.h"

/* Sends @a len bytes of JSON text with status @a status. Returns OK. */
int mxf_http_send_raw(request_rec *r, int status, const char *body, apr_size_t len);

/*
 * Sends the JSON text in @a bb (status @a status, Content-Length from the
 * brigade); an EOS is added. Returns OK.
 */
int mxf_http_send_brigade(request_rec *r, int status, apr_bucket_brigade *bb);

/* Appends @a s as a JSON string literal (escaped) to @a bb. */
void mxf_http_put_json_string(request_rec *r, apr_bucket_brigade *bb, const char *s);

/* Sends @a json (compact). Returns OK. */
int mxf_http_send_json(request_rec *r, int status, const json_t *json);

/* Sends {"errcode": errcode, "error": <formatted message>}. Returns OK. */
int mxf_http_send_error(request_rec *r, int status, const char *errcode,
                        const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

struct mxf_req;

/*
 * Reads the request body (once; later calls return the first result) into
 * req->body, at most the server's MatrixFedMaxBodySize bytes, and parses a
 * non-empty body as a JSON object into req->body_json (strict: duplicate
 * keys rejected). Returns OK, or the status of an error response it has
 * already sent (413 M_TOO_LARGE, 400 M_NOT_JSON, 400 on a broken upload):
 * the handler then returns OK without sending anything else. A failure
 * httpd's filters already answered is passed on as returned.
 */
int mxf_http_read_body(struct mxf_req *req);

/* mxf_http_query_values() flags. */
#define MXF_QUERY_SPLIT_COMMAS 0x1u     /* a value with literal ',' also gives its parts */

/*
 * The query-string values of @a name (percent-decoded; '+' stays '+', as
 * Matrix IDs need), in order. Empty array when absent. Values whose
 * percent-encoding is malformed or encodes a NUL are left out and counted
 * in *malformed (when not NULL). With MXF_QUERY_SPLIT_COMMAS, a value
 * holding literal commas (the form style of OpenAPI lists) is given whole
 * and then each of its parts, decoded apart: an encoded comma (%2C)
 * separates nothing.
 */
apr_array_header_t *mxf_http_query_values(request_rec *r, const char *name, unsigned flags,
                                          int *malformed);

#endif /* mod_matrix_fed_http_h */
