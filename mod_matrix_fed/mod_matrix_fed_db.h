/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * Database access of the module through mod_dbd. Every statement the module
 * runs is listed once in mod_matrix_fed_db.c and prepared when the
 * configuration is read; requests only execute them.
 */
#ifndef mod_matrix_fed_db_h
#define mod_matrix_fed_db_h

#include <apr_dbd.h>
#include <mod_dbd.h>

typedef enum {
    MXF_STMT_SCHEMA_VERSION = 0,
    MXF_STMT__COUNT
} mxf_stmt_t;

/*
 * Registers all statements with mod_dbd for cmd->server. Returns an error
 * message when mod_dbd is not loaded.
 */
const char *mxf_db_prepare_statements(cmd_parms *cmd);

/* Whether mod_dbd's functions were found (checked again at post_config). */
int mxf_db_available(void);

/*
 * The request's pooled connection, or NULL (logged, rate-limited) when the
 * database cannot be reached: answer 503 then.
 */
ap_dbd_t *mxf_db_acquire(request_rec *r);

/* The prepared statement @a id on @a dbd, or NULL (logged). */
apr_dbd_prepared_t *mxf_db_stmt(request_rec *r, ap_dbd_t *dbd, mxf_stmt_t id);

#endif /* mod_matrix_fed_db_h */
