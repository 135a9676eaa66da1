/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * Included first by every httpd glue file (mod_matrix_fed*.c), so that
 * per-module log levels ("LogLevel matrix_fed:debug") work across them all.
 */
#ifndef mod_matrix_fed_private_h
#define mod_matrix_fed_private_h

#include <httpd.h>
#include <http_config.h>
#include <http_log.h>

#include "mxf_log.h"

extern module AP_MODULE_DECLARE_DATA matrix_fed_module;

APLOG_USE_MODULE(matrix_fed);

#endif /* mod_matrix_fed_private_h */
