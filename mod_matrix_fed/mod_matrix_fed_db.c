/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#include "mod_matrix_fed_private.h"

#include <apr_optional.h>
#include <apr_strings.h>
#include <ap_mpm.h>
#include <http_core.h>
#include <http_protocol.h>
#include <errno.h>
#include <libpq-fe.h>
#include <mod_status.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <unixd.h>

#include "mxf_error.h"
#include "mxf_gate.h"
#include "mod_matrix_fed_config.h"
#include "mod_matrix_fed_db.h"
#include "mod_matrix_fed_http.h"
#include "mod_matrix_fed_router.h"

/*
 * All SQL of the module. Labels are the names the statements are prepared
 * under on each connection: lower case, with the module's prefix (the
 * connections are mod_dbd's, shared with every other DBD user). Arguments
 * are written %s; prepare_one() numbers them.
 */
/*
 * The room access of an origin, as a derived table "a": the room's number,
 * version and ACL text, whether the origin has a joined member in it
 * ("member"), and whether the importer found the ACL to allow it ("go":
 * member, and no ACL or acl_allowed; see sql/009). Args: origin, room ID.
 * The statements that check access start their columns with room_nid,
 * room_version, current_acl, member: the history handlers read them there.
 */
#define ROOM_ACCESS_FROM \
    "(SELECT r.room_nid, r.room_version, r.current_acl," \
    "        s.server_name IS NOT NULL AS member," \
    "        s.server_name IS NOT NULL AND (r.current_acl IS NULL OR s.acl_allowed) AS go" \
    "   FROM mxf_rooms r" \
    "   LEFT JOIN mxf_room_servers s ON s.room_nid = r.room_nid AND s.server_name = %s" \
    "  WHERE r.room_id = %s) a"

/* The served copy of event e for the origin, with e's visibility rows. */
#define PDU_FOR_JOINS \
    "  LEFT JOIN mxf_visibility vb ON vb.vis_id = e.vis_id" \
    "  LEFT JOIN mxf_visibility va ON va.vis_id = e.vis_after_id"

/*
 * The head of a statement that reads the access and walks (the walk's
 * function call and the ordering follow): the access columns, go, then
 * the served PDU and number of each event the walk returns. Args: origin,
 * room ID, origin.
 */
#define ACCESS_AND_WALK_HEAD \
    "SELECT a.room_nid, a.room_version, a.current_acl, a.member, a.go, w.pdu, w.event_nid" \
    "  FROM " ROOM_ACCESS_FROM \
    "  LEFT JOIN LATERAL (" \
    "    SELECT mxf_pdu_for(e, vb, va, %s) AS pdu, e.depth, e.event_nid"

static const struct {
    const char *label;
    const char *sql;
} statements[MXF_STMT__COUNT] = {
    /* args: origin, room ID */
    [MXF_STMT_ROOM_ACCESS] = {
        "mxf_room_access",
        "SELECT a.room_nid, a.room_version, a.current_acl, a.member FROM " ROOM_ACCESS_FROM
    },
    /* args: origin, room nid, earliest (JSON array), latest (JSON array), limit, min_depth */
    [MXF_STMT_MISSING_EVENTS] = {
        "mxf_missing_events",
        "SELECT mxf_pdu_for(e, vb, va, %s)"
        "  FROM mxf_missing_events(%s::bigint,"
        "         ARRAY(SELECT jsonb_array_elements_text(%s::jsonb)),"
        "         ARRAY(SELECT jsonb_array_elements_text(%s::jsonb)),"
        "         %s::int, %s::bigint) m"
        "  JOIN mxf_events e ON e.event_nid = m"
        PDU_FOR_JOINS
        " ORDER BY e.depth, e.event_nid"
    },
    /*
     * The access and the walk in one statement (one row of NULLs after the
     * access columns when there are no events). The walk runs (its limit
     * is not 0) only when "go"; otherwise the module decides and walks with
     * the statement above.
     * args: origin, room ID, origin, earliest, latest, limit, min_depth
     */
    [MXF_STMT_MISSING_EVENTS_IN] = {
        "mxf_missing_events_in",
        ACCESS_AND_WALK_HEAD
        "      FROM mxf_missing_events(a.room_nid,"
        "             ARRAY(SELECT jsonb_array_elements_text(%s::jsonb)),"
        "             ARRAY(SELECT jsonb_array_elements_text(%s::jsonb)),"
        "             CASE WHEN a.go THEN %s::int ELSE 0 END, %s::bigint) m"
        "      JOIN mxf_events e ON e.event_nid = m"
        PDU_FOR_JOINS
        "  ) w ON true"
        " ORDER BY w.depth, w.event_nid"
    },
    /* args: origin, room nid, v (JSON array), limit */
    [MXF_STMT_BACKFILL] = {
        "mxf_backfill",
        "SELECT mxf_pdu_for(e, vb, va, %s)"
        "  FROM mxf_backfill(%s::bigint, ARRAY(SELECT jsonb_array_elements_text(%s::jsonb)),"
        "                    %s::int) b (nid)"
        "  JOIN mxf_events e ON e.event_nid = b.nid"
        PDU_FOR_JOINS
        " ORDER BY e.depth DESC, e.event_nid DESC"
    },
    /* The same for backfill. args: origin, room ID, origin, v, limit */
    [MXF_STMT_BACKFILL_IN] = {
        "mxf_backfill_in",
        ACCESS_AND_WALK_HEAD
        "      FROM mxf_backfill(a.room_nid, ARRAY(SELECT jsonb_array_elements_text(%s::jsonb)),"
        "                        CASE WHEN a.go THEN %s::int ELSE 0 END) b (nid)"
        "      JOIN mxf_events e ON e.event_nid = b.nid"
        PDU_FOR_JOINS
        "  ) w ON true"
        " ORDER BY w.depth DESC, w.event_nid DESC"
    },
    /*
     * The event, then its room's access columns (from column 3).
     * args: origin, origin, event ID
     */
    [MXF_STMT_EVENT] = {
        "mxf_event",
        "SELECT r.room_id, mxf_pdu_for(e, vb, va, %s), e.rejected_reason IS NOT NULL,"
        "       r.room_nid, r.room_version, r.current_acl, s.server_name IS NOT NULL"
        "  FROM mxf_events e JOIN mxf_rooms r USING (room_nid)"
        "  LEFT JOIN mxf_room_servers s ON s.room_nid = r.room_nid AND s.server_name = %s"
        PDU_FOR_JOINS
        " WHERE e.event_id = %s"
    },
    /* args: room nid, event ID. Streamed: the auth chain ('a'), then the state ('p'). */
    [MXF_STMT_STATE_AT] = {
        "mxf_state_at",
        "SELECT kind, event_id, pdu FROM mxf_state_at(%s::bigint, %s, true) ORDER BY kind"
    },
    /*
     * args: room nid, event ID. Streamed, in the same order, which the
     * function returns them in: ordinality keeps it without a sort.
     */
    [MXF_STMT_STATE_IDS_AT] = {
        "mxf_state_ids_at",
        "SELECT s.kind, s.event_id FROM mxf_state_ids_at(%s::bigint, %s) WITH ORDINALITY s"
        " ORDER BY s.ordinality"
    },
    /* args: room nid, event ID */
    [MXF_STMT_EVENT_AUTH] = {
        "mxf_event_auth",
        "SELECT kind, event_id, pdu FROM mxf_event_auth(%s::bigint, %s)"
    },
    /* args: room nid, ts. Ties on the timestamp go to the shallower event
     * forward and to the deeper one backward, as the reference homeserver
     * breaks them; then to arrival. */
    [MXF_STMT_TS_FORWARD] = {
        "mxf_ts_forward",
        "SELECT event_id, origin_server_ts FROM mxf_events"
        " WHERE room_nid = %s::bigint AND origin_server_ts >= %s::bigint"
        "   AND rejected_reason IS NULL AND NOT outlier"
        " ORDER BY origin_server_ts, depth, event_nid LIMIT 1"
    },
    [MXF_STMT_TS_BACKWARD] = {
        "mxf_ts_backward",
        "SELECT event_id, origin_server_ts FROM mxf_events"
        " WHERE room_nid = %s::bigint AND origin_server_ts <= %s::bigint"
        "   AND rejected_reason IS NULL AND NOT outlier"
        " ORDER BY origin_server_ts DESC, depth DESC, event_nid DESC LIMIT 1"
    },
    /*
     * args: server name, key ID (mod_matrix_fed_keys.c). Valid until the
     * lesser of valid_until_ts and 7 days after the key was obtained (the
     * spec's MUST), whether fetched or imported from a file.
     */
    [MXF_STMT_KEY_GET] = {
        "mxf_key_get",
        "SELECT encode(public_key, 'hex'), least(valid_until_ts, fetched_ts + 604800000),"
        "       coalesce(expired_ts, 0)"
        " FROM mxf_server_keys WHERE server_name = %s AND key_id = %s"
    },
    /* args: server name, key ID, hex public key, valid_until_ts, expired_ts
     * (NULL for a current key), source, fetched_ts */
    [MXF_STMT_KEY_PUT] = {
        "mxf_key_put",
        "INSERT INTO mxf_server_keys (server_name, key_id, public_key, valid_until_ts,"
        "  expired_ts, source, fetched_ts)"
        " VALUES (%s, %s, decode(%s, 'hex'), %s::bigint, %s::bigint, %s, %s::bigint)"
        " ON CONFLICT (server_name, key_id) DO UPDATE"
        "  SET public_key = EXCLUDED.public_key,"
        "      valid_until_ts = greatest(mxf_server_keys.valid_until_ts,"
        "                                EXCLUDED.valid_until_ts),"
        "      expired_ts = EXCLUDED.expired_ts, source = EXCLUDED.source,"
        "      fetched_ts = EXCLUDED.fetched_ts"
    },
    /* args: server name (mod_matrix_fed_keys.c: the notary endpoints) */
    /*
     * args: server name (mod_matrix_fed_keys.c: the notary endpoints); the
     * third column is until when the kept response is fresh: half its
     * lifetime (the spec's advice to notaries), taken at most 7 days.
     */
    [MXF_STMT_KEY_RESPONSE_GET] = {
        "mxf_key_response_get",
        "SELECT response, valid_until_ts,"
        "       fetched_ts + greatest(least(valid_until_ts - fetched_ts, 604800000), 0) / 2"
        " FROM mxf_server_key_responses WHERE server_name = %s"
    },
    /*
     * args: server name, response, valid_until_ts, fetched_ts; the latest
     * kept (after a key rotation the new document, whatever the old one's
     * valid_until_ts said)
     */
    [MXF_STMT_KEY_RESPONSE_PUT] = {
        "mxf_key_response_put",
        "INSERT INTO mxf_server_key_responses (server_name, response, valid_until_ts,"
        "  fetched_ts) VALUES (%s, %s, %s::bigint, %s::bigint)"
        " ON CONFLICT (server_name) DO UPDATE"
        "  SET response = EXCLUDED.response, valid_until_ts = EXCLUDED.valid_until_ts,"
        "      fetched_ts = EXCLUDED.fetched_ts"
        "  WHERE EXCLUDED.fetched_ts >= mxf_server_key_responses.fetched_ts"
    },
    /*
     * args: server name, key IDs (JSON array): the kept objects that listed
     * them in verify_keys (sql/020), newest first
     */
    [MXF_STMT_KEY_DOCS_GET] = {
        "mxf_key_docs_get",
        "SELECT b.response FROM mxf_server_key_bodies b"
        " WHERE b.server_name = %s AND b.sha256 IN ("
        "   SELECT d.sha256 FROM mxf_server_key_docs d"
        "    WHERE d.server_name = b.server_name"
        "      AND d.key_id IN (SELECT jsonb_array_elements_text(%s::jsonb)))"
        " ORDER BY b.fetched_ts DESC"
    },
};

/*
 * mod_dbd's entry points, looked up while the configuration is read (before
 * any child exists) and only read afterwards.
 */
static APR_OPTIONAL_FN_TYPE(ap_dbd_acquire) *dbd_acquire_fn;
static APR_OPTIONAL_FN_TYPE(ap_dbd_open) *dbd_open_fn;
static APR_OPTIONAL_FN_TYPE(ap_dbd_close) *dbd_close_fn;

/*
 * The statements are not registered with mod_dbd (ap_dbd_prepare): mod_dbd
 * prepares those on every connection it opens, synchronously and with no
 * time limit, so a table locked by a migration or a VACUUM FULL would hold
 * every request that opens a connection for as long as the lock. Each is
 * prepared on first use on a connection instead, within
 * MatrixFedQueryTimeout (ensure_prepared()).
 */
const char *mxf_db_find_dbd(cmd_parms *cmd)
{
    (void)cmd;
    if (!dbd_acquire_fn || !dbd_open_fn || !dbd_close_fn) {
        dbd_acquire_fn = APR_RETRIEVE_OPTIONAL_FN(ap_dbd_acquire);
        dbd_open_fn = APR_RETRIEVE_OPTIONAL_FN(ap_dbd_open);
        dbd_close_fn = APR_RETRIEVE_OPTIONAL_FN(ap_dbd_close);
    }
    if (!dbd_acquire_fn || !dbd_open_fn || !dbd_close_fn) {
        return "MatrixFederation needs mod_dbd: load it before this directive "
               "(LoadModule dbd_module modules/mod_dbd.so) and configure "
               "DBDriver pgsql and DBDParams";
    }
    return NULL;
}

/*
 * MatrixFedQueryConcurrency: the server's gate in front of the database
 * (NULL: no limit), opened by the parent in post_config before it starts
 * the children, which inherit it; reset when the configuration's pool is
 * cleared. How long a request waits at it, and the statement time limits,
 * set per process in child_init. All are only read by request threads.
 */
static mxf_gate_t *db_gate;
static apr_interval_time_t db_gate_wait;

/* MatrixFedQueryTimeout and MatrixFedStreamTimeout, set with them. */
static apr_interval_time_t db_query_timeout = MXF_DEFAULT_QUERY_TIMEOUT;
static apr_interval_time_t db_stream_timeout = MXF_DEFAULT_STREAM_TIMEOUT;

/*
 * The gate's semaphore, kept by the parent over restarts (httpd's retained
 * data: the module's code and configuration are reloaded at each one): the
 * children of the generation before keep using it while they finish, in the
 * same queue as the new ones. A restart that changes the number of slots,
 * or turns the limit off, removes it; so does stopping.
 */
#define GATE_KEPT_KEY "mod_matrix_fed-query-gate"

typedef struct {
    int semid;                          /* -1: none */
    int slots;
    pid_t owner;                        /* the process that removes it */
} gate_kept_t;

static apr_status_t db_gate_cleanup(void *data)
{
    gate_kept_t *kept = data;

    db_gate = NULL;
    /* Not on a restart (the next generation takes the semaphore over), and
     * only in the parent (a process it forked may clear its copy too). */
    if (kept->semid >= 0 && ap_state_query(AP_SQ_MAIN_STATE) != AP_SQ_MS_DESTROY_CONFIG
        && getpid() == kept->owner) {
        mxf_gate_remove(kept->semid);
        kept->semid = -1;
    }
    return APR_SUCCESS;
}

static int db_post_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp,
                          server_rec *s)
{
    const mxf_srv_conf_t *conf = mxf_config_get(s);
    int slots = mxf_config_query_slots(conf);
    gate_kept_t *kept;
    const char *how = "kept";
    apr_status_t rv;

    /* The first pass over the configuration at start-up serves no requests. */
    if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG) {
        return OK;
    }
    kept = ap_retained_data_get(GATE_KEPT_KEY);
    if (!kept) {
        kept = ap_retained_data_create(GATE_KEPT_KEY, sizeof(*kept));
        kept->semid = -1;
    }
    if (kept->semid >= 0 && kept->slots != slots) {
        /* The old generation's requests go on unqueued while it finishes. */
        mxf_gate_remove(kept->semid);
        kept->semid = -1;
    }
    apr_pool_cleanup_register(pconf, kept, db_gate_cleanup, apr_pool_cleanup_null);
    if (slots <= 0) {
        return OK;
    }
    if (kept->semid < 0) {
        rv = mxf_gate_make(slots, &kept->semid);
        if (rv != APR_SUCCESS) {
            kept->semid = -1;
            ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s, MXFLOGNO(25078)
                         "MatrixFedQueryConcurrency %d: cannot make the System V semaphore "
                         "the child processes share (see ipcs -s and the kernel's limits, "
                         "sysctl kernel.sem)", slots);
            return HTTP_INTERNAL_SERVER_ERROR;
        }
        kept->slots = slots;
        kept->owner = getpid();
        how = "new";
    }
    /* Made by root, used by the children under User and Group (which a
     * restart may have changed). */
    if (geteuid() == 0
        && (rv = mxf_gate_give(kept->semid, (long)ap_unixd_config.user_id,
                               (long)ap_unixd_config.group_id)) != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s, MXFLOGNO(25075)
                     "MatrixFedQueryConcurrency %d: cannot hand the semaphore to the "
                     "user the child processes run as", slots);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if ((rv = mxf_gate_open(&db_gate, kept->semid, slots, pconf)) != APR_SUCCESS) {
        db_gate = NULL;
        ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s, MXFLOGNO(25079)
                     "MatrixFedQueryConcurrency %d: cannot create the gate's mutex", slots);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s, MXFLOGNO(25076)
                 "MatrixFedQueryConcurrency %d: one queue for all child processes "
                 "(System V semaphore %d, %s)", slots, kept->semid, how);
    return OK;
}

static void db_child_init(apr_pool_t *pchild, server_rec *s)
{
    const mxf_srv_conf_t *conf = mxf_config_get(s);

    db_query_timeout = mxf_config_query_timeout(conf);
    db_stream_timeout = mxf_config_stream_timeout(conf);
    db_gate_wait = mxf_config_query_wait(conf);
}

/*
 * mod_status's page (server-status): the gate's slots, how many are taken
 * and how many requests wait for one, all child processes together (read
 * from the semaphore). Nothing without MatrixFedQueryConcurrency.
 */
static int db_status_hook(request_rec *r, int flags)
{
    int busy, waiting;

    if (!db_gate) {
        return OK;
    }
    mxf_gate_stats(db_gate, &busy, &waiting);
    if (flags & AP_STATUS_SHORT) {
        ap_rprintf(r, "MatrixQuerySlots: %d\n", mxf_gate_slots(db_gate));
        if (busy >= 0) {
            ap_rprintf(r, "MatrixQueryBusy: %d\nMatrixQueryWaiting: %d\n", busy, waiting);
        }
        return OK;
    }
    ap_rputs("<hr />\n<h2>mod_matrix_fed</h2>\n", r);
    if (busy >= 0) {
        ap_rprintf(r, "<dl><dt>MatrixFedQueryConcurrency %d: %d statement(s) in the "
                   "database, %d request(s) waiting for a turn (all child processes)"
                   "</dt></dl>\n", mxf_gate_slots(db_gate), busy, waiting);
    }
    else {
        ap_rprintf(r, "<dl><dt>MatrixFedQueryConcurrency %d: the semaphore (%d) was removed; "
                   "statements run unqueued until the next restart</dt></dl>\n",
                   mxf_gate_slots(db_gate), mxf_gate_id(db_gate));
    }
    return OK;
}

void mxf_db_register_hooks(apr_pool_t *p)
{
    ap_hook_post_config(db_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(db_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    APR_OPTIONAL_HOOK(ap, status_hook, db_status_hook, NULL, NULL, APR_HOOK_MIDDLE);
}

/*
 * Takes a turn at the gate (when there is one). Returns OK, with *held
 * set when a turn is held (gate_leave() it), or sends 503 (the server is
 * busy) and returns its status.
 */
static int gate_enter(request_rec *r, mxf_stmt_t id, int *held)
{
    apr_status_t rv;

    *held = 0;
    if (!db_gate) {
        return OK;
    }
    rv = mxf_gate_enter(db_gate, db_gate_wait);
    if (rv == APR_SUCCESS) {
        *held = 1;
        return OK;
    }
    if (rv == APR_ENOENT) {
        /* Removed by a restart that changed the number of slots (this
         * process is on its way out), or by someone else (ipcrm). */
        int state = 0, level;

        ap_mpm_query(AP_MPMQ_MPM_STATE, &state);
        level = state != AP_MPMQ_STOPPING && mxf_gate_first_gone(db_gate)
                ? APLOG_WARNING : APLOG_DEBUG;
        ap_log_rerror(APLOG_MARK, level, 0, r, MXFLOGNO(25077)
                      "statement %s: the semaphore of MatrixFedQueryConcurrency (%d) was "
                      "removed; this process runs its statements unqueued%s",
                      statements[id].label, mxf_gate_id(db_gate),
                      state == AP_MPMQ_STOPPING ? " while it finishes"
                                                : " until the next restart");
        return OK;
    }
    if (rv != APR_TIMEUP) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, rv, r, MXFLOGNO(25063)
                      "statement %s: waiting for a turn at the database failed; answered 503",
                      statements[id].label);
    }
    else {
        /* Under overload every request could be refused: one warning per
         * child every 10 s, with the count, and each refusal at info. */
        unsigned n = mxf_gate_refused(db_gate, apr_time_now(), apr_time_from_sec(10));

        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, MXFLOGNO(25064)
                      "statement %s: no turn at the database within %" APR_TIME_T_FMT " ms; "
                      "answered 503", statements[id].label, apr_time_as_msec(db_gate_wait));
        if (n) {
            ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, MXFLOGNO(25062)
                          "%u request(s) answered 503 since the last such message: no turn at "
                          "the database within %" APR_TIME_T_FMT " ms (MatrixFedQueryConcurrency, "
                          "MatrixFedQueryWait)", n, apr_time_as_msec(db_gate_wait));
        }
    }
    apr_table_setn(r->err_headers_out, "Retry-After", "1");
    mxf_http_send_error(r, HTTP_SERVICE_UNAVAILABLE, MXF_M_UNKNOWN,
                        "The server is busy; try again later");
    return HTTP_SERVICE_UNAVAILABLE;
}

static void gate_leave(int held)
{
    if (held && db_gate) {
        mxf_gate_leave(db_gate);
    }
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

ap_dbd_t *mxf_db_open(request_rec *r)
{
    ap_dbd_t *dbd = dbd_open_fn ? dbd_open_fn(r->pool, r->server) : NULL;

    if (!dbd) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, MXFLOGNO(25067)
                      "no database connection available (see mod_dbd's messages)");
    }
    return dbd;
}

void mxf_db_close(request_rec *r, ap_dbd_t *dbd)
{
    if (dbd && dbd_close_fn) {
        dbd_close_fn(r->server, dbd);
    }
}

int mxf_db_unavailable(request_rec *r, int answered)
{
    apr_table_setn(r->err_headers_out, "Retry-After", "5");
    mxf_http_send_error(r, HTTP_SERVICE_UNAVAILABLE, MXF_M_UNKNOWN,
                        answered ? "The database could not answer; try again later"
                                 : "The database is not available; try again later");
    return HTTP_SERVICE_UNAVAILABLE;
}

/* The libpq connection of @a dbd, or NULL (logged) when the driver is not pgsql. */
static PGconn *native_conn(request_rec *r, ap_dbd_t *dbd)
{
    if (strcmp(apr_dbd_name(dbd->driver), "pgsql") != 0) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, MXFLOGNO(25055)
                      "the DBD driver is %s; the module needs pgsql", apr_dbd_name(dbd->driver));
        return NULL;
    }
    return apr_dbd_native_handle(dbd->driver, dbd->handle);
}

static apr_status_t clear_result(void *res)
{
    PQclear(res);
    return APR_SUCCESS;
}

/* The time limit a wait is under, for its log message. */
typedef struct {
    const char *directive;
    apr_interval_time_t value;
} limit_t;

static limit_t query_limit(void)
{
    limit_t l = { "MatrixFedQueryTimeout", db_query_timeout };

    return l;
}

/*
 * Waits until libpq can hand over the next result of @a pg without
 * blocking, or @a deadline passes (@a limit says which limit it is). 1:
 * ready (or the connection broke, which PQgetResult() then reports at
 * once). 0: no answer in time; the connection is then shut down under
 * libpq, which sees it broken (mod_dbd resets it before it hands it out
 * again), and its results are dropped. The statement on the server ends
 * when the backend notices its client is gone: when it next writes, or at
 * once with PostgreSQL's client_connection_check_interval (see the README).
 *
 * Over TLS, the rest of a record libpq has taken only part of waits in
 * OpenSSL's buffer, where poll() on the socket cannot see it: libpq reads
 * it first (SSL_pending() of the connection's SSL). Were libpq built with
 * another TLS library, the wait is cut into slices of TLS_POLL_SLICE
 * instead, after each of which libpq reads what it can.
 */
#define TLS_POLL_SLICE apr_time_from_msec(20)

static int wait_ready(request_rec *r, PGconn *pg, apr_time_t deadline, limit_t limit,
                      const char *verb, mxf_stmt_t id)
{
    PGresult *res;
    int tls = PQsslInUse(pg), i;
    SSL *ssl = tls ? PQsslStruct(pg, "OpenSSL") : NULL;

    while (PQisBusy(pg)) {
        apr_interval_time_t left = deadline - apr_time_now(), wait = left;
        struct pollfd pfd;
        int n;

        if (ssl && SSL_pending(ssl) > 0) {
            if (!PQconsumeInput(pg)) {
                return 1;
            }
            continue;
        }
        if (tls && !ssl && wait > TLS_POLL_SLICE) {
            wait = TLS_POLL_SLICE;
        }
        pfd.fd = PQsocket(pg);
        pfd.events = POLLIN;
        pfd.revents = 0;
        n = left > 0 && pfd.fd >= 0 ? poll(&pfd, 1, (int)((wait + 999) / 1000)) : 0;
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n == 0 && wait < left) {
            /* a slice over TLS: take what OpenSSL may hold, then wait on */
            if (!PQconsumeInput(pg)) {
                return 1;
            }
            continue;
        }
        if (n <= 0) {
            ap_log_rerror(APLOG_MARK, APLOG_ERR, n < 0 ? errno : 0, r, MXFLOGNO(25069)
                          "%s %s: no answer from the database within %" APR_TIME_T_FMT
                          " ms (%s); the connection is dropped",
                          verb, statements[id].label, apr_time_as_msec(limit.value),
                          limit.directive);
            if (pfd.fd >= 0) {
                shutdown(pfd.fd, SHUT_RDWR);
            }
            /* Read what came before the shutdown up to its end, so that
             * libpq marks the connection broken (bounded: each read takes
             * what is buffered, then the end). */
            for (i = 0; i < 64 && PQconsumeInput(pg); i++) {
            }
            while ((res = PQgetResult(pg)) != NULL) {
                PQclear(res);
            }
            return 0;
        }
        if (!PQconsumeInput(pg)) {
            return 1;
        }
    }
    return 1;
}

/* How a statement ended. */
typedef enum {
    RUN_OK,
    RUN_FAILED,         /* an error answer, on a sound connection */
    RUN_NOT_PREPARED,   /* the statement is not prepared on this connection (26000) */
    RUN_EXISTS,         /* preparing: it is already prepared there (42P05) */
    RUN_BROKEN,         /* the connection is broken */
    RUN_TIMED_OUT       /* no answer in time: the connection was dropped */
} run_t;

/* Whether @a res has SQLSTATE @a code. */
static int sqlstate_is(const PGresult *res, const char *code)
{
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

    return state && strcmp(state, code) == 0;
}

/* Whether @a res says the prepared statement does not exist. */
static int not_prepared(const PGresult *res)
{
    return sqlstate_is(res, "26000");
}

/*
 * Collects the results of what was sent on @a pg for statement @a id (@a
 * verb says what: "statement", "preparing"), each waited for until @a
 * deadline: the last one in *out (owned by r->pool) on RUN_OK.
 */
static run_t collect(request_rec *r, PGconn *pg, apr_time_t deadline, const char *verb,
                     mxf_stmt_t id, PGresult **out)
{
    PGresult *res, *last = NULL;
    run_t rv = RUN_OK;

    for (;;) {
        if (!wait_ready(r, pg, deadline, query_limit(), verb, id)) {
            PQclear(last);
            return RUN_TIMED_OUT;
        }
        if ((res = PQgetResult(pg)) == NULL) {
            break;
        }
        if (PQresultStatus(res) != PGRES_TUPLES_OK && PQresultStatus(res) != PGRES_COMMAND_OK
            && rv == RUN_OK) {
            rv = PQstatus(pg) != CONNECTION_OK ? RUN_BROKEN
                 : not_prepared(res) ? RUN_NOT_PREPARED
                 : sqlstate_is(res, "42P05") ? RUN_EXISTS : RUN_FAILED;
            /* Not prepared: the connection was reset since (the database
             * restarted); recover() prepares it again. Already prepared:
             * this module's flags had been cleared by such a reset. */
            ap_log_rerror(APLOG_MARK, rv == RUN_FAILED ? APLOG_ERR
                                      : rv == RUN_BROKEN ? APLOG_WARNING
                                      : rv == RUN_NOT_PREPARED ? APLOG_INFO : APLOG_DEBUG,
                          0, r, MXFLOGNO(20008) "%s %s failed: %s", verb, statements[id].label,
                          PQresultErrorMessage(res));
        }
        PQclear(last);
        last = res;
    }
    if (rv == RUN_OK && !last) {
        rv = PQstatus(pg) != CONNECTION_OK ? RUN_BROKEN : RUN_FAILED;
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, MXFLOGNO(20009)
                      "%s %s failed: %s", verb, statements[id].label, PQerrorMessage(pg));
    }
    if (rv != RUN_OK) {
        PQclear(last);
        return rv;
    }
    apr_pool_cleanup_register(r->pool, last, clear_result, apr_pool_cleanup_null);
    *out = last;
    return RUN_OK;
}

/*
 * Prepares statement @a id on @a pg (its %s arguments as $1, $2, ... of
 * type varchar, as mod_dbd's pgsql driver would), answered by @a deadline.
 */
static run_t prepare_one(request_rec *r, PGconn *pg, mxf_stmt_t id, apr_time_t deadline)
{
    const char *sql = statements[id].sql, *p;
    char *native = apr_palloc(r->pool, strlen(sql) * 2 + 1), *q = native;
    Oid types[16];
    int n = 0;
    PGresult *res = NULL;
    run_t rv;

    for (p = sql; *p; p++) {
        if (p[0] == '%' && p[1] == 's' && n < (int)(sizeof(types) / sizeof(types[0]))) {
            types[n++] = 1043;          /* varchar */
            q += apr_snprintf(q, 8, "$%d", n);
            p++;
        }
        else {
            *q++ = *p;
        }
    }
    *q = '\0';
    if (!PQsendPrepare(pg, statements[id].label, native, n, types)) {
        return PQstatus(pg) != CONNECTION_OK ? RUN_BROKEN : RUN_FAILED;
    }
    rv = collect(r, pg, deadline, "preparing", id, &res);
    return rv == RUN_EXISTS ? RUN_OK : rv;
}

/*
 * Which of the module's statements are prepared on connection @a dbd, as
 * far as this module knows: one flag per statement, kept in the
 * connection's own pool (it lives as long as the connection). A connection
 * that libpq reset loses its statements; its first statement then fails
 * with 26000 and recover() starts afresh.
 */
static unsigned char *prepared_flags(ap_dbd_t *dbd)
{
    void *flags = NULL;

    apr_pool_userdata_get(&flags, "mxf_db_prepared", dbd->pool);
    if (!flags) {
        flags = apr_pcalloc(dbd->pool, MXF_STMT__COUNT);
        apr_pool_userdata_setn(flags, "mxf_db_prepared", NULL, dbd->pool);
    }
    return flags;
}

/* Prepares statement @a id on @a dbd unless it is already, by @a deadline. */
static run_t ensure_prepared(request_rec *r, ap_dbd_t *dbd, PGconn *pg, mxf_stmt_t id,
                             apr_time_t deadline)
{
    unsigned char *flags = prepared_flags(dbd);
    run_t rv;

    if (flags[id]) {
        return RUN_OK;
    }
    if ((rv = prepare_one(r, pg, id, deadline)) == RUN_OK) {
        flags[id] = 1;
    }
    return rv;
}

/*
 * After statement @a id failed with @a why: a connection that broke (the
 * database restarted) is reset, which loses every prepared statement; a
 * statement that is not prepared (mod_dbd reset the connection when it
 * handed it out) is prepared again. Returns 1 when that was done, so a
 * retry makes sense. A statement that failed otherwise on a sound
 * connection (a lock or statement timeout, a cancel), or timed out, is not
 * run again: 0.
 */
static int recover(request_rec *r, ap_dbd_t *dbd, PGconn *pg, mxf_stmt_t id, run_t why,
                   apr_time_t deadline)
{
    if (why == RUN_BROKEN) {
        /* libpq reconnects (bounded by connect_timeout). */
        if (apr_dbd_check_conn(dbd->driver, r->pool, dbd->handle) != APR_SUCCESS) {
            return 0;
        }
        why = RUN_NOT_PREPARED;
    }
    if (why != RUN_NOT_PREPARED) {
        return 0;
    }
    /* What was prepared on this connection before its reset went with it
     * (what was prepared since is found again: RUN_EXISTS). */
    memset(prepared_flags(dbd), 0, MXF_STMT__COUNT);
    return ensure_prepared(r, dbd, pg, id, deadline) == RUN_OK;
}

/*
 * Runs statement @a id on @a dbd (a query or a command), its result in
 * *out, answered within MatrixFedQueryTimeout (libpq's asynchronous calls:
 * apr_dbd's would wait for ever on a database that stopped answering). A
 * statement that failed because the connection was reset is prepared again
 * and retried once within the same time (recover()); one that timed out is
 * not. 0 on success.
 */
static int run_on(request_rec *r, ap_dbd_t *dbd, mxf_stmt_t id, int nargs, const char **args,
                  PGresult **out)
{
    PGconn *pg = native_conn(r, dbd);
    apr_time_t deadline = apr_time_now() + db_query_timeout;
    int attempt;
    run_t rv;

    for (attempt = 0; pg && attempt < 2; attempt++) {
        *out = NULL;
        /* Preparing shares the statement's time, and its retry. */
        rv = ensure_prepared(r, dbd, pg, id, deadline);
        if (rv == RUN_OK) {
            if (!PQsendQueryPrepared(pg, statements[id].label, nargs, args, NULL, NULL, 0)) {
                ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, MXFLOGNO(25070)
                              "statement %s could not be sent: %s", statements[id].label,
                              PQerrorMessage(pg));
                rv = PQstatus(pg) != CONNECTION_OK ? RUN_BROKEN : RUN_FAILED;
            }
            else {
                rv = collect(r, pg, deadline, "statement", id, out);
            }
        }
        if (rv == RUN_OK) {
            return 0;
        }
        if (attempt > 0 || !recover(r, dbd, pg, id, rv, deadline)) {
            break;
        }
    }
    return -1;
}

/* The rows of @a res (which lives as long as r->pool). */
static mxf_db_rows_t *rows_of(request_rec *r, PGresult *res)
{
    mxf_db_rows_t *rows = apr_pcalloc(r->pool, sizeof(*rows));

    rows->res = res;
    rows->nrows = PQntuples(res);
    return rows;
}

/* mxf_db_select() on connection @a dbd. */
static int select_on(mxf_req_t *req, ap_dbd_t *dbd, mxf_stmt_t id, int nargs,
                     const char **args, mxf_db_rows_t **out)
{
    request_rec *r = req->r;
    PGresult *res = NULL;
    int held, rv;

    if ((rv = gate_enter(r, id, &held)) != OK) {
        return rv;
    }
    rv = run_on(r, dbd, id, nargs, args, &res);
    /* Every row is in libpq's result now: the statement is done. */
    gate_leave(held);
    if (rv != 0) {
        return mxf_db_unavailable(r, 1);
    }
    *out = rows_of(r, res);
    return OK;
}

apr_status_t mxf_db_brief(request_rec *r, mxf_stmt_t id, int nargs, const char **args,
                          mxf_db_rows_t **out)
{
    ap_dbd_t *dbd = mxf_db_open(r);
    PGresult *res = NULL;
    int rv;

    if (!dbd) {
        return APR_EGENERAL;
    }
    rv = run_on(r, dbd, id, nargs, args, &res);
    if (rv == 0 && out) {
        *out = rows_of(r, res);
    }
    mxf_db_close(r, dbd);
    return rv == 0 ? APR_SUCCESS : APR_EGENERAL;
}

int mxf_db_select(mxf_req_t *req, mxf_stmt_t id, int nargs, const char **args,
                  mxf_db_rows_t **out)
{
    ap_dbd_t *dbd = mxf_db_acquire(req->r);

    return dbd ? select_on(req, dbd, id, nargs, args, out) : mxf_db_unavailable(req->r, 0);
}

int mxf_db_select_brief(mxf_req_t *req, mxf_stmt_t id, int nargs, const char **args,
                        mxf_db_rows_t **out)
{
    ap_dbd_t *dbd = mxf_db_open(req->r);
    int status;

    if (!dbd) {
        return mxf_db_unavailable(req->r, 0);
    }
    status = select_on(req, dbd, id, nargs, args, out);
    mxf_db_close(req->r, dbd);
    return status;
}

const char *mxf_db_get(const mxf_db_rows_t *rows, int row, int col)
{
    if (row < 0 || row >= rows->nrows || col < 0 || col >= PQnfields(rows->res)
        || PQgetisnull(rows->res, row, col)) {
        return NULL;
    }
    return PQgetvalue(rows->res, row, col);
}

/* ------------------------------------------------------------------ streams */

struct mxf_db_stream {
    request_rec *r;
    PGconn *conn;
    mxf_stmt_t id;
    PGresult *row;                      /* the current row's result */
    int idx;                            /* the current row in it */
    int last;                           /* it is the final result (all rows at once) */
    PGresult *first;                    /* the first result, until mxf_db_stream_next() */
    int done;                           /* every result read: the connection is idle */
};

static limit_t stream_limit(void)
{
    limit_t l = { "MatrixFedStreamTimeout", db_stream_timeout };

    return l;
}

/*
 * Reads what is left of the query's results, so the connection is idle;
 * within MatrixFedQueryTimeout, else the connection is dropped (wait_ready()).
 */
static void stream_drain(mxf_db_stream_t *s)
{
    apr_time_t deadline = apr_time_now() + db_query_timeout;
    PGresult *res;

    while (wait_ready(s->r, s->conn, deadline, query_limit(), "draining", s->id)
           && (res = PQgetResult(s->conn)) != NULL) {
        PQclear(res);
    }
    s->done = 1;
}

static apr_status_t stream_cleanup(void *data)
{
    mxf_db_stream_t *s = data;

    PQclear(s->row);
    PQclear(s->first);
    s->row = s->first = NULL;
    if (!s->done) {
        /* Left before the end (client gone, error): stop the query, then drain. */
        PGcancel *cancel = PQgetCancel(s->conn);
        char err[256];
        if (cancel) {
            PQcancel(cancel, err, (int)sizeof(err));
            PQfreeCancel(cancel);
        }
        stream_drain(s);
    }
    return APR_SUCCESS;
}

/*
 * Sends statement @a id (prepared first if need be); its first result,
 * which must come within MatrixFedStreamTimeout, or NULL (logged) if it
 * failed, with *why.
 */
static PGresult *stream_start(request_rec *r, ap_dbd_t *dbd, PGconn *conn, mxf_stmt_t id,
                              int nargs, const char **args, int attempt, run_t *why)
{
    PGresult *res;

    if ((*why = ensure_prepared(r, dbd, conn, id, apr_time_now() + db_query_timeout))
        != RUN_OK) {
        return NULL;
    }
    if (!PQsendQueryPrepared(conn, statements[id].label, nargs, args, NULL, NULL, 0)) {
        ap_log_rerror(APLOG_MARK, attempt ? APLOG_ERR : APLOG_WARNING, 0, r, MXFLOGNO(25052)
                      "statement %s could not be sent: %s", statements[id].label,
                      PQerrorMessage(conn));
        *why = PQstatus(conn) != CONNECTION_OK ? RUN_BROKEN : RUN_FAILED;
        return NULL;
    }
    if (!PQsetSingleRowMode(conn)) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, MXFLOGNO(25053)
                      "statement %s: single-row mode refused; rows come all at once",
                      statements[id].label);
    }
    /* The function behind the statement computes its whole answer before
     * the first row: that is what the limit bounds. */
    if (!wait_ready(r, conn, apr_time_now() + db_stream_timeout, stream_limit(),
                    "streamed statement", id)) {
        *why = RUN_TIMED_OUT;
        return NULL;
    }
    res = PQgetResult(conn);
    switch (PQresultStatus(res)) {
    case PGRES_SINGLE_TUPLE:
    case PGRES_TUPLES_OK:
        return res;
    default:
        ap_log_rerror(APLOG_MARK, attempt ? APLOG_ERR : APLOG_WARNING, 0, r, MXFLOGNO(25054)
                      "statement %s failed: %s", statements[id].label,
                      res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
        *why = PQstatus(conn) != CONNECTION_OK ? RUN_BROKEN
               : res && not_prepared(res) ? RUN_NOT_PREPARED : RUN_FAILED;
        PQclear(res);
        while ((res = PQgetResult(conn)) != NULL) {
            PQclear(res);
        }
        return NULL;
    }
}

int mxf_db_stream_open(mxf_req_t *req, mxf_stmt_t id, int nargs, const char **args,
                       mxf_db_stream_t **out)
{
    request_rec *r = req->r;
    ap_dbd_t *dbd = mxf_db_acquire(r);
    mxf_db_stream_t *s;
    PGresult *first = NULL;
    PGconn *pg = dbd ? native_conn(r, dbd) : NULL;
    int attempt;

    if (!pg) {
        return mxf_db_unavailable(r, 0);
    }
    s = apr_pcalloc(r->pool, sizeof(*s));
    s->r = r;
    s->conn = pg;
    s->id = id;
    s->done = 1;
    /* Not behind MatrixFedQueryConcurrency's gate: these statements take as
     * long as their answer is big (seconds in a big room), and holding a
     * turn that long would stall the short statements queued behind it. */
    for (attempt = 0; attempt < 2; attempt++) {
        run_t why = RUN_FAILED;
        if ((first = stream_start(r, dbd, s->conn, id, nargs, args, attempt, &why)) != NULL) {
            break;
        }
        if (attempt == 0
            && !recover(r, dbd, pg, id, why, apr_time_now() + db_query_timeout)) {
            break;
        }
    }
    if (!first) {
        return mxf_db_unavailable(r, 1);
    }
    s->done = 0;
    s->first = first;
    /* A pre-cleanup: it must run while the connection is still there. With
     * DBDPersist Off it lives in a subpool of r->pool, which is destroyed
     * (and the connection closed) before r->pool's own cleanups run. */
    apr_pool_pre_cleanup_register(r->pool, s, stream_cleanup);
    *out = s;
    return OK;
}

int mxf_db_stream_next(mxf_db_stream_t *s)
{
    PGresult *res;

    if (s->row) {
        if (++s->idx < PQntuples(s->row)) {
            return 1;
        }
        PQclear(s->row);
        s->row = NULL;
        if (s->last) {
            stream_drain(s);
            return 0;
        }
    }
    if (s->first) {
        res = s->first;
        s->first = NULL;
    }
    else if (s->done) {
        return 0;
    }
    else {
        /* Rows follow one another at once, unless the database stalls. */
        if (!wait_ready(s->r, s->conn, apr_time_now() + db_stream_timeout, stream_limit(),
                        "streamed statement", s->id)) {
            s->done = 1;
            return -1;
        }
        res = PQgetResult(s->conn);
    }
    switch (PQresultStatus(res)) {
    case PGRES_SINGLE_TUPLE:
        s->row = res;
        s->idx = 0;
        return 1;
    case PGRES_TUPLES_OK:
        /* The end: no rows, or all of them (had single-row mode been refused). */
        if (PQntuples(res) > 0) {
            s->row = res;
            s->idx = 0;
            s->last = 1;
            return 1;
        }
        PQclear(res);
        stream_drain(s);
        return 0;
    default:
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, s->r, MXFLOGNO(25056)
                      "reading rows failed: %s",
                      res ? PQresultErrorMessage(res) : PQerrorMessage(s->conn));
        PQclear(res);
        stream_drain(s);
        return -1;
    }
}

const char *mxf_db_stream_get(const mxf_db_stream_t *s, int col)
{
    if (!s->row || col < 0 || col >= PQnfields(s->row) || PQgetisnull(s->row, s->idx, col)) {
        return NULL;
    }
    return PQgetvalue(s->row, s->idx, col);
}

apr_size_t mxf_db_stream_len(const mxf_db_stream_t *s, int col)
{
    if (!s->row || col < 0 || col >= PQnfields(s->row)) {
        return 0;
    }
    return (apr_size_t)PQgetlength(s->row, s->idx, col);
}
