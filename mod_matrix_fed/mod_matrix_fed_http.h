/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * Response and request-body plumbing. Every answer the module produces,
 * errors included, goes out as application/json through these helpers; a
 * handler returns their result (OK) and never an HTTP error code, which
 * httpd would turn into an HTML page.
 */
#ifndef mod_matrix_fed_http_h
#define mod_matrix_fed_http_h

#include "mxf_json.h"

/* Sends @a len bytes of JSON text with status @a status. Returns OK. */
int mxf_http_send_raw(request_rec *r, int status, const char *body, apr_size_t len);

/* Sends @a json (compact). Returns OK. */
int mxf_http_send_json(request_rec *r, int status, const json_t *json);

/* Sends {"errcode": errcode, "error": <formatted message>}. Returns OK. */
int mxf_http_send_error(request_rec *r, int status, const char *errcode,
                        const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif /* mod_matrix_fed_http_h */
