/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * matrix-fed db init: creates or upgrades the schema. Each migration runs in
 * its own transaction, under an advisory lock so that two runs at once
 * cannot interleave, and is recorded in mxf_schema_migrations; running it
 * again applies only what is missing.
 */
#include <stdio.h>
#include <string.h>

#include <libpq-fe.h>

#include "mxf_cmd.h"
#include "mxf_cmd_pg.h"

static int applied(PGconn *conn, int version, int *is_applied)
{
    char v[16];
    const char *params[1] = { v };
    PGresult *res;

    snprintf(v, sizeof(v), "%d", version);
    res = mxf_pg_query(conn, "SELECT 1 FROM mxf_schema_migrations WHERE version = $1::int",
                       1, params);
    if (!res) {
        return 0;
    }
    *is_applied = PQntuples(res) > 0;
    PQclear(res);
    return 1;
}

static int record(PGconn *conn, const mxf_migration_t *m)
{
    char v[16];
    const char *params[2] = { v, m->name };

    snprintf(v, sizeof(v), "%d", m->version);
    return mxf_pg_params(conn,
                         "INSERT INTO mxf_schema_migrations (version, name) VALUES ($1::int, $2)",
                         2, params);
}

/* Runs one migration, naming it (not its whole text) if it fails. */
static int run_migration(PGconn *conn, const mxf_migration_t *m)
{
    PGresult *res = PQexec(conn, m->sql);

    if (!mxf_pg_ok(res, m->name)) {
        return 0;
    }
    PQclear(res);
    return 1;
}

static int migrate(PGconn *conn, int *count)
{
    const mxf_migration_t *m;

    if (!mxf_pg_exec(conn, "SET client_min_messages = warning")
        || !mxf_pg_exec(conn, "SELECT pg_advisory_lock(" MXF_PG_SCHEMA_LOCK ")")
        || !mxf_pg_exec(conn,
                        "CREATE TABLE IF NOT EXISTS mxf_schema_migrations ("
                        " version int PRIMARY KEY,"
                        " name text NOT NULL,"
                        " applied_at timestamptz NOT NULL DEFAULT now())")) {
        return 0;
    }
    for (m = mxf_migrations; m->name; m++) {
        int done = 0;

        if (!applied(conn, m->version, &done)) {
            return 0;
        }
        if (done) {
            continue;
        }
        if (!mxf_pg_exec(conn, "BEGIN")) {
            return 0;
        }
        if (!run_migration(conn, m) || !record(conn, m)) {
            mxf_pg_exec(conn, "ROLLBACK");
            return 0;
        }
        if (!mxf_pg_exec(conn, "COMMIT")) {
            return 0;
        }
        printf("applied %s\n", m->name);
        (*count)++;
    }
    return 1;
}

static void db_usage(FILE *out)
{
    fputs("Usage: matrix-fed db init --db CONNINFO\n"
          "  Creates the mod_matrix_fed schema in the database, or upgrades it to\n"
          "  this version's. Safe to run again: applied migrations are skipped.\n", out);
}

int mxf_cmd_db(apr_pool_t *p, int argc, const char *const *argv)
{
    const char *conninfo = NULL;
    PGconn *conn;
    int i, count = 0, ok;

    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        db_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? MXF_EXIT_USAGE : MXF_EXIT_OK;
    }
    if (strcmp(argv[1], "init") != 0) {
        mxf_cmd_error("unknown db command '%s'", argv[1]);
        db_usage(stderr);
        return MXF_EXIT_USAGE;
    }
    for (i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            db_usage(stdout);
            return MXF_EXIT_OK;
        }
        if (!strcmp(argv[i], "--db") && i + 1 < argc) {
            conninfo = argv[++i];
        }
        else if (!strncmp(argv[i], "--db=", 5)) {
            conninfo = argv[i] + 5;
        }
        else {
            mxf_cmd_error("unexpected argument '%s'", argv[i]);
            db_usage(stderr);
            return MXF_EXIT_USAGE;
        }
    }
    if (!conninfo) {
        mxf_cmd_error("db init needs --db CONNINFO");
        return MXF_EXIT_USAGE;
    }
    if (!(conn = mxf_pg_connect(conninfo))) {
        return MXF_EXIT_FAILURE;
    }
    ok = migrate(conn, &count);
    PQfinish(conn);
    if (!ok) {
        return MXF_EXIT_FAILURE;
    }
    if (count == 0) {
        printf("schema is up to date\n");
    }
    return MXF_EXIT_OK;
}
