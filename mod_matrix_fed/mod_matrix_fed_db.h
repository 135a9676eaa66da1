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
    MXF_STMT_ROOM_ACCESS = 0,
    MXF_STMT_MISSING_EVENTS,
    MXF_STMT_MISSING_EVENTS_IN,
    MXF_STMT_BACKFILL,
    MXF_STMT_BACKFILL_IN,
    MXF_STMT_EVENT,
    MXF_STMT_STATE_AT,
    MXF_STMT_STATE_IDS_AT,
    MXF_STMT_EVENT_AUTH,
    MXF_STMT_TS_FORWARD,
    MXF_STMT_TS_BACKWARD,
    MXF_STMT_KEY_GET,
    MXF_STMT_KEY_PUT,
    MXF_STMT_KEY_RESPONSE_GET,
    MXF_STMT_KEY_RESPONSE_PUT,
    MXF_STMT_KEY_DOCS_GET,
    MXF_STMT__COUNT
} mxf_stmt_t;

/*
 * Sends 503 M_UNKNOWN with Retry-After: the database could not be had, or
 * (@a answered) failed to answer. Returns HTTP_SERVICE_UNAVAILABLE.
 */
int mxf_db_unavailable(request_rec *r, int answered);

struct mxf_req;

/* The rows of one query, valid for the request's lifetime. */
typedef struct mxf_db_rows {
    struct pg_result *res;              /* libpq's result, cleared with the request */
    int nrows;
} mxf_db_rows_t;

/*
 * Runs statement @a id with @a nargs text arguments on the request's pooled
 * connection (acquired once per request), after waiting its turn when
 * MatrixFedQueryConcurrency is set. On success returns OK with the rows in
 * *out. Otherwise the error answer is already sent (503 with Retry-After
 * when no connection can be had, no turn came within MatrixFedQueryWait,
 * the query failed or went unanswered for MatrixFedQueryTimeout) and its
 * status is returned; the handler returns OK. A statement that failed
 * because the connection was reset (database restarted) is prepared again
 * and retried once.
 */
int mxf_db_select(struct mxf_req *req, mxf_stmt_t id, int nargs, const char **args,
                  mxf_db_rows_t **out);

/*
 * The same on a connection of its own, given back to the pool as soon as
 * the rows are read (they stay valid), for statements made around a slow
 * step such as a key fetch: the request holds no connection while it
 * waits, so it cannot starve the others of the pool.
 */
int mxf_db_select_brief(struct mxf_req *req, mxf_stmt_t id, int nargs, const char **args,
                        mxf_db_rows_t **out);

/*
 * Statement @a id on a connection of its own, given back at once, without
 * answering the request: for the key table, read and written around key
 * fetches. A query when @a out is not NULL (its rows in *out), else a
 * command. APR_SUCCESS, or APR_EGENERAL when no connection could be had or
 * the statement failed (logged).
 */
apr_status_t mxf_db_brief(request_rec *r, mxf_stmt_t id, int nargs, const char **args,
                          mxf_db_rows_t **out);

/* Column @a col of row @a row (0-based); NULL for SQL NULL. */
const char *mxf_db_get(const mxf_db_rows_t *rows, int row, int col);

/*
 * Rows one at a time, for answers too large to hold (the state of a big
 * room): the statement runs on the request's pooled connection in libpq's
 * single-row mode (through the pgsql driver's native handle), so neither
 * libpq nor the module holds more than the current row. Opening fails like
 * mxf_db_select() (error answer sent, its status returned). Streams do not
 * wait for a turn under MatrixFedQueryConcurrency (they take as long as
 * their answer is big). A stream left
 * before its end is cancelled and drained when the request ends, so the
 * connection goes back to mod_dbd idle.
 */
typedef struct mxf_db_stream mxf_db_stream_t;

int mxf_db_stream_open(struct mxf_req *req, mxf_stmt_t id, int nargs, const char **args,
                       mxf_db_stream_t **out);

/* The next row: 1 (see mxf_db_stream_get()), 0 after the last, -1 on failure (logged). */
int mxf_db_stream_next(mxf_db_stream_t *s);

/* Column @a col of the current row, valid until the next call; NULL for SQL NULL. */
const char *mxf_db_stream_get(const mxf_db_stream_t *s, int col);

/* Its length in bytes. */
apr_size_t mxf_db_stream_len(const mxf_db_stream_t *s, int col);

/* Hooks of the database layer (MatrixFedQueryConcurrency's gate, statement time limits). */
void mxf_db_register_hooks(apr_pool_t *p);

/*
 * Looks up mod_dbd's functions while the configuration is read. Returns an
 * error message when mod_dbd is not loaded. (The module's statements are
 * prepared on each connection at their first use, within
 * MatrixFedQueryTimeout, not registered with mod_dbd.)
 */
const char *mxf_db_find_dbd(cmd_parms *cmd);

/*
 * The request's pooled connection, or NULL (logged, rate-limited) when the
 * database cannot be reached: answer 503 then.
 */
ap_dbd_t *mxf_db_acquire(request_rec *r);

/*
 * A connection of the pool for one short use, not tied to the request:
 * give it back with mxf_db_close() as soon as the statement's rows are
 * read. NULL (logged) when the database cannot be reached.
 */
ap_dbd_t *mxf_db_open(request_rec *r);
void mxf_db_close(request_rec *r, ap_dbd_t *dbd);

#endif /* mod_matrix_fed_db_h */
