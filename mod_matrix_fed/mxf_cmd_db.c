/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * matrix-fed db init: creates or upgrades the schema. Each migration runs in
 * its own transaction, under an advisory lock so that two runs at once
 * cannot interleave, and is recorded in mxf_schema_migrations; running it
 * again applies only what is missing.
 *
 * A migration that changes a table waits for that table's lock, and every
 * statement reading the table queues behind it while it waits: on a serving
 * database a long reader (an export, an open session) would stall every
 * request. So each try waits at most --lock-timeout seconds for a lock; on
 * a lock time-out the migration is rolled back (the queued readers go on),
 * and tried again after a pause, at most --lock-tries times.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_lib.h>
#include <apr_time.h>
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

typedef struct lock_policy {
    long timeout_ms;                    /* per try; 0: wait as long as it takes */
    int tries;
} lock_policy_t;

#define LOCK_TIMEOUT_DEFAULT_S 5
#define LOCK_TRIES_DEFAULT     20
#define LOCK_PAUSE             apr_time_from_sec(1)
#define SQLSTATE_LOCK_NOT_AVAILABLE "55P03"
#define SQLSTATE_DEADLOCK_DETECTED  "40P01"

enum { MIG_FAILED, MIG_DONE, MIG_LOCK_TIMEOUT };

/*
 * Runs one migration in its own transaction and records it. Reports a lock
 * time-out or a deadlock (rolled back: worth another try) apart from other
 * failures, which it names (the migration's name, not its whole text).
 */
static int run_migration(PGconn *conn, const mxf_migration_t *m, const lock_policy_t *lp)
{
    char set[64];
    PGresult *res;
    const char *state;

    snprintf(set, sizeof(set), "SET LOCAL lock_timeout = %ld", lp->timeout_ms);
    if (!mxf_pg_exec(conn, "BEGIN") || !mxf_pg_exec(conn, set)) {
        return MIG_FAILED;
    }
    res = PQexec(conn, m->sql);
    state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    if (PQresultStatus(res) == PGRES_FATAL_ERROR && state
        && (!strcmp(state, SQLSTATE_LOCK_NOT_AVAILABLE)
            || !strcmp(state, SQLSTATE_DEADLOCK_DETECTED))) {
        PQclear(res);
        return mxf_pg_exec(conn, "ROLLBACK") ? MIG_LOCK_TIMEOUT : MIG_FAILED;
    }
    if (!mxf_pg_ok(res, m->name)) {
        mxf_pg_exec(conn, "ROLLBACK");
        return MIG_FAILED;
    }
    PQclear(res);
    if (!record(conn, m)) {
        mxf_pg_exec(conn, "ROLLBACK");
        return MIG_FAILED;
    }
    return mxf_pg_exec(conn, "COMMIT") ? MIG_DONE : MIG_FAILED;
}

static int migrate(PGconn *conn, const lock_policy_t *lp, int *count)
{
    const mxf_migration_t *m;
    int try;

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
        for (try = 1;; try++) {
            int r = run_migration(conn, m, lp);

            if (r == MIG_DONE) {
                break;
            }
            if (r == MIG_FAILED) {
                return 0;
            }
            if (try >= lp->tries) {
                mxf_cmd_error("%s: a table it changes stayed locked by another session"
                              " (%d tries of %ld s); nothing of it was applied. End the"
                              " long transaction (an export, an open session: see"
                              " pg_stat_activity) and run db init again", m->name,
                              lp->tries, lp->timeout_ms / 1000);
                return 0;
            }
            fprintf(stderr, "matrix-fed: %s: a table it changes is locked by another"
                            " session; rolled back after %ld s so that readers go on,"
                            " trying again (%d of %d)\n", m->name, lp->timeout_ms / 1000,
                    try + 1, lp->tries);
            apr_sleep(LOCK_PAUSE);
        }
        printf("applied %s\n", m->name);
        fflush(stdout);
        (*count)++;
    }
    return 1;
}

/* A whole number in [lo, hi] from @a s (digits only), or -1. */
static long parse_count(const char *s, long lo, long hi)
{
    char *end;
    long v;

    if (!apr_isdigit(*s)) {
        return -1;
    }
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        return -1;
    }
    return v;
}

/* --lock-timeout (@a is_timeout) or --lock-tries @a val into @a lp; 0 (said) if invalid. */
static int set_lock_option(lock_policy_t *lp, int is_timeout, const char *val)
{
    long v = parse_count(val, is_timeout ? 0 : 1, is_timeout ? 3600 : 1000);

    if (v < 0) {
        mxf_cmd_error("%s needs %s", is_timeout ? "--lock-timeout" : "--lock-tries",
                      is_timeout ? "a whole number of seconds, 0 to 3600"
                                 : "a whole number, 1 to 1000");
        return 0;
    }
    if (is_timeout) {
        lp->timeout_ms = v * 1000L;
    }
    else {
        lp->tries = (int)v;
    }
    return 1;
}

static void db_usage(FILE *out)
{
    fputs("Usage: matrix-fed db init --db CONNINFO [--lock-timeout SECONDS]"
          " [--lock-tries N]\n"
          "  Creates the mod_matrix_fed schema in the database, or upgrades it to\n"
          "  this version's. Safe to run again: applied migrations are skipped.\n"
          "  --lock-timeout S  a migration waits at most S seconds (default 5) for a\n"
          "                    table lock, then is rolled back, so that the requests\n"
          "                    queued behind it go on, and tried again; 0 waits as\n"
          "                    long as it takes\n"
          "  --lock-tries N    gives up after N tries (default 20), applying nothing\n"
          "                    of that migration\n", out);
}

int mxf_cmd_db(apr_pool_t *p, int argc, const char *const *argv)
{
    const char *conninfo = NULL;
    lock_policy_t lp = { LOCK_TIMEOUT_DEFAULT_S * 1000L, LOCK_TRIES_DEFAULT };
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
        const char *val = NULL;
        int got;

        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            db_usage(stdout);
            return MXF_EXIT_OK;
        }
        if ((got = mxf_cmd_opt_value(argc, argv, &i, "--db", &conninfo)) != 0) {
            if (got < 0) {
                return MXF_EXIT_USAGE;
            }
        }
        else if ((got = mxf_cmd_opt_value(argc, argv, &i, "--lock-timeout", &val)) != 0) {
            if (got < 0 || !set_lock_option(&lp, 1, val)) {
                return MXF_EXIT_USAGE;
            }
        }
        else if ((got = mxf_cmd_opt_value(argc, argv, &i, "--lock-tries", &val)) != 0) {
            if (got < 0 || !set_lock_option(&lp, 0, val)) {
                return MXF_EXIT_USAGE;
            }
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
    if (lp.timeout_ms == 0) {
        lp.tries = 1;                   /* it cannot time out */
    }
    ok = migrate(conn, &lp, &count);
    PQfinish(conn);
    if (!ok) {
        return MXF_EXIT_FAILURE;
    }
    if (count == 0) {
        printf("schema is up to date\n");
    }
    return MXF_EXIT_OK;
}
