/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#include "mod_matrix_fed_private.h"

#include <apr_hash.h>
#include <apr_optional.h>
#include <apr_strings.h>

#include "mod_matrix_fed_db.h"

/*
 * All SQL of the module. Labels are lower case (the pgsql driver PREPAREs
 * them unquoted) and carry the module's prefix (they share mod_dbd's
 * namespace with every other DBD user). Placeholders are APR DBD's.
 */
static const struct {
    const char *label;
    const char *sql;
} statements[MXF_STMT__COUNT] = {
    [MXF_STMT_SCHEMA_VERSION] = {
        "mxf_schema_version",
        "SELECT coalesce(max(version), 0) FROM mxf_schema_migrations"
    },
};

/*
 * mod_dbd's entry points, looked up while the configuration is read (before
 * any child exists) and only read afterwards.
 */
static APR_OPTIONAL_FN_TYPE(ap_dbd_prepare) *dbd_prepare_fn;
static APR_OPTIONAL_FN_TYPE(ap_dbd_acquire) *dbd_acquire_fn;

const char *mxf_db_prepare_statements(cmd_parms *cmd)
{
    int i;

    if (!dbd_prepare_fn || !dbd_acquire_fn) {
        dbd_prepare_fn = APR_RETRIEVE_OPTIONAL_FN(ap_dbd_prepare);
        dbd_acquire_fn = APR_RETRIEVE_OPTIONAL_FN(ap_dbd_acquire);
    }
    if (!dbd_prepare_fn || !dbd_acquire_fn) {
        return "MatrixFederation needs mod_dbd: load it before this directive "
               "(LoadModule dbd_module modules/mod_dbd.so) and configure "
               "DBDriver pgsql and DBDParams";
    }
    for (i = 0; i < MXF_STMT__COUNT; i++) {
        dbd_prepare_fn(cmd->server, statements[i].sql, statements[i].label);
    }
    return NULL;
}

int mxf_db_available(void)
{
    return dbd_prepare_fn && dbd_acquire_fn;
}

ap_dbd_t *mxf_db_acquire(request_rec *r)
{
    ap_dbd_t *dbd = dbd_acquire_fn ? dbd_acquire_fn(r) : NULL;

    if (!dbd) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, MXFLOGNO(20003)
                      "no database connection available (see mod_dbd's messages)");
    }
    return dbd;
}

apr_dbd_prepared_t *mxf_db_stmt(request_rec *r, ap_dbd_t *dbd, mxf_stmt_t id)
{
    apr_dbd_prepared_t *stmt = apr_hash_get(dbd->prepared, statements[id].label,
                                            APR_HASH_KEY_STRING);
    if (!stmt) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, MXFLOGNO(20004)
                      "statement %s is not prepared on this connection",
                      statements[id].label);
    }
    return stmt;
}
