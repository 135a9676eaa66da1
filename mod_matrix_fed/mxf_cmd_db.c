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

/* An arbitrary constant identifying this schema's advisory lock. */
#define MXF_SCHEMA_LOCK_KEY "7249018340512"

static int exec_ok(PGconn *conn, const char *sql, const char *what)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;

    if (!ok) {
        mxf_cmd_error("%s failed: %s", what, PQresultErrorMessage(res));
    }
    PQclear(res);
    return ok;
}

static int applied(PGconn *conn, int version, int *is_applied)
{
    char v[16];
    const char *params[1] = { v };
    PGresult *res;

    snprintf(v, sizeof(v), "%d", version);
    res = PQexecParams(conn, "SELECT 1 FROM mxf_schema_migrations WHERE version = $1::int",
                       1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        mxf_cmd_error("reading mxf_schema_migrations failed: %s", PQresultErrorMessage(res));
        PQclear(res);
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
    PGresult *res;
    int ok;

    snprintf(v, sizeof(v), "%d", m->version);
    res = PQexecParams(conn,
                       "INSERT INTO mxf_schema_migrations (version, name) VALUES ($1::int, $2)",
                       2, NULL, params, NULL, NULL, 0);
    ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok) {
        mxf_cmd_error("recording migration %s failed: %s", m->name, PQresultErrorMessage(res));
    }
    PQclear(res);
    return ok;
}

static int migrate(PGconn *conn, int *count)
{
    const mxf_migration_t *m;

    if (!exec_ok(conn, "SET client_min_messages = warning", "setting up the session")
        || !exec_ok(conn, "SELECT pg_advisory_lock(" MXF_SCHEMA_LOCK_KEY ")",
                    "taking the schema lock")
        || !exec_ok(conn,
                    "CREATE TABLE IF NOT EXISTS mxf_schema_migrations ("
                    " version int PRIMARY KEY,"
                    " name text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())",
                    "creating mxf_schema_migrations")) {
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
        if (!exec_ok(conn, "BEGIN", "starting a transaction")) {
            return 0;
        }
        if (!exec_ok(conn, m->sql, m->name) || !record(conn, m)) {
            exec_ok(conn, "ROLLBACK", "rolling back");
            return 0;
        }
        if (!exec_ok(conn, "COMMIT", m->name)) {
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
    conn = PQconnectdb(conninfo);
    if (PQstatus(conn) != CONNECTION_OK) {
        mxf_cmd_error("cannot connect to the database: %s", PQerrorMessage(conn));
        PQfinish(conn);
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
