/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * Logging shim of the server-independent core.
 *
 * The core never sees a server_rec. The module installs a callback at
 * post_config that forwards to ap_log_perror(); the CLI and the unit tests
 * install one that writes to stderr (or nothing at all).
 */
#ifndef mxf_log_h
#define mxf_log_h

#include <stdarg.h>
#include <apr_pools.h>
#include <apr_errno.h>

/* Same numbering as httpd's APLOG_* levels so the glue can pass them on. */
typedef enum {
    MXF_LOG_EMERG = 0,
    MXF_LOG_ALERT,
    MXF_LOG_CRIT,
    MXF_LOG_ERR,
    MXF_LOG_WARNING,
    MXF_LOG_NOTICE,
    MXF_LOG_INFO,
    MXF_LOG_DEBUG,
    MXF_LOG_TRACE1,
    MXF_LOG_TRACE2
} mxf_log_level_t;

/*
 * Log tags of this module: "MXFnnnnn: ", the same shape as httpd's APLOGNO().
 * The next free number is kept in mod_matrix_fed/next-logno; never reuse one.
 */
#define MXFLOGNO(n) "MXF" #n ": "

#define MXF_LOG_MARK __FILE__, __LINE__

typedef void mxf_log_print_cb(const char *file, int line, mxf_log_level_t level,
                              apr_status_t rv, void *baton, apr_pool_t *p,
                              const char *fmt, va_list ap);
typedef int mxf_log_level_cb(void *baton, mxf_log_level_t level);

/* Installed once per process at configuration time, before any thread runs. */
void mxf_log_set(mxf_log_level_cb *level_cb, mxf_log_print_cb *print_cb, void *baton);

int mxf_log_is_level(mxf_log_level_t level);

void mxf_log_perror(const char *file, int line, mxf_log_level_t level,
                    apr_status_t rv, apr_pool_t *p, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

#endif /* mxf_log_h */
