/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * matrix-fed export: writes a room's PDUs back as JSON lines, exactly as
 * they were received, in the order the importer stored them (a topological
 * order). Importing the output again and exporting gives the same bytes.
 */
#include <stdio.h>
#include <string.h>

#include <libpq-fe.h>

#include "mxf_cmd.h"
#include "mxf_cmd_pg.h"

static void export_usage(FILE *out)
{
    fputs("Usage: matrix-fed export --db CONNINFO --room ROOM_ID [--out FILE]\n"
          "  Writes the room's events, one PDU per line as received, oldest first.\n", out);
}

int mxf_cmd_export(apr_pool_t *p, int argc, const char *const *argv)
{
    const char *conninfo = NULL, *room = NULL, *out = NULL;
    const char *params[1];
    PGconn *conn;
    PGresult *res;
    FILE *f = stdout;
    int i, rc = MXF_EXIT_OK;

    if (argc < 2) {
        export_usage(stderr);
        return MXF_EXIT_USAGE;
    }
    for (i = 1; i < argc; i++) {
        int got;

        if ((got = mxf_cmd_opt_value(argc, argv, &i, "--db", &conninfo)) != 0
            || (got = mxf_cmd_opt_value(argc, argv, &i, "--room", &room)) != 0
            || (got = mxf_cmd_opt_value(argc, argv, &i, "--out", &out)) != 0) {
            if (got < 0) {
                return MXF_EXIT_USAGE;
            }
        }
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            export_usage(stdout);
            return MXF_EXIT_OK;
        }
        else {
            mxf_cmd_error("export: unexpected argument '%s'", argv[i]);
            export_usage(stderr);
            return MXF_EXIT_USAGE;
        }
    }
    if (!conninfo || !room) {
        mxf_cmd_error("export needs --db CONNINFO and --room ROOM_ID");
        return MXF_EXIT_USAGE;
    }
    if (!(conn = mxf_pg_connect(conninfo))) {
        return MXF_EXIT_FAILURE;
    }
    params[0] = room;
    res = mxf_pg_query(conn, "SELECT 1 FROM mxf_rooms WHERE room_id = $1", 1, params);
    if (!res) {
        PQfinish(conn);
        return MXF_EXIT_FAILURE;
    }
    if (PQntuples(res) == 0) {
        mxf_cmd_error("export: no room %s in the database", room);
        PQclear(res);
        PQfinish(conn);
        return MXF_EXIT_FAILURE;
    }
    PQclear(res);
    /* Row by row, so a room of any size streams through constant memory. */
    if (!PQsendQueryParams(conn, "SELECT e.pdu FROM mxf_events e JOIN mxf_rooms r USING (room_nid)"
                                 " WHERE r.room_id = $1 ORDER BY e.event_nid",
                           1, NULL, params, NULL, NULL, 0)
        || !PQsetSingleRowMode(conn)) {
        mxf_cmd_error("export failed: %s", PQerrorMessage(conn));
        PQfinish(conn);
        return MXF_EXIT_FAILURE;
    }
    if (out && !(f = fopen(out, "w"))) {
        mxf_cmd_error("export: cannot write %s", out);
        PQfinish(conn);
        return MXF_EXIT_FAILURE;
    }
    while ((res = PQgetResult(conn)) != NULL) {
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_SINGLE_TUPLE) {
            fwrite(PQgetvalue(res, 0, 0), 1, (size_t)PQgetlength(res, 0, 0), f);
            fputc('\n', f);
        }
        else if (st != PGRES_TUPLES_OK) {
            mxf_cmd_error("export failed: %s", PQresultErrorMessage(res));
            rc = MXF_EXIT_FAILURE;
        }
        PQclear(res);
    }
    /* A write that failed in a flush before the last one shows only here. */
    if (ferror(f)) {
        mxf_cmd_error("export: write error");
        rc = MXF_EXIT_FAILURE;
        if (f != stdout) {
            fclose(f);
        }
    }
    else if ((f != stdout && fclose(f) != 0) || (f == stdout && fflush(f) != 0)) {
        mxf_cmd_error("export: write error");
        rc = MXF_EXIT_FAILURE;
    }
    PQfinish(conn);
    return rc;
}
