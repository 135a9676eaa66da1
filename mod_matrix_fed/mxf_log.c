/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#include <stdio.h>

#include "mxf_log.h"

/*
 * The sink is chosen once, while the configuration is read (single-threaded,
 * before children fork); afterwards it is only read.
 */
static mxf_log_level_cb *log_level_cb;
static mxf_log_print_cb *log_print_cb;
static void *log_baton;

void mxf_log_set(mxf_log_level_cb *level_cb, mxf_log_print_cb *print_cb, void *baton)
{
    log_level_cb = level_cb;
    log_print_cb = print_cb;
    log_baton = baton;
}

int mxf_log_is_level(mxf_log_level_t level)
{
    if (!log_print_cb) {
        return 0;
    }
    return log_level_cb ? log_level_cb(log_baton, level) : level <= MXF_LOG_WARNING;
}

void mxf_log_perror(const char *file, int line, mxf_log_level_t level,
                    apr_status_t rv, apr_pool_t *p, const char *fmt, ...)
{
    va_list ap;

    if (!mxf_log_is_level(level)) {
        return;
    }
    va_start(ap, fmt);
    log_print_cb(file, line, level, rv, log_baton, p, fmt, ap);
    va_end(ap);
}
