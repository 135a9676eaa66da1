/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * The federation history endpoints: get_missing_events, backfill, event,
 * state, state_ids, event_auth and timestamp_to_event.
 *
 * Every handler follows the same path: check the request's parameters
 * (400), then the room: the origin must currently have a joined member in
 * it and, on the endpoints the spec lists, the room's server ACL must allow
 * it (403); then one query that walks the DAG inside the database and
 * returns the PDU texts to serve - as stored, or their stored redacted copy
 * where the origin may not see the event. The answer is put together from
 * those texts; event JSON is never parsed or serialised again here.
 *
 * /event, get_missing_events and backfill fetch the room's access columns
 * in the same statement as their events, so that they take one round trip:
 * /event always (finding the event costs no more than finding the room),
 * the walks when the importer found the ACL to allow the origin (for any
 * other origin the access is checked before the walk; see
 * access_and_walk()). The access decision itself is always made here, from
 * the room's ACL as stored.
 */
#include "mod_matrix_fed_private.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include <apr_strings.h>
#include <http_protocol.h>

#include "mxf_acl.h"
#include "mxf_error.h"
#include "mxf_id.h"
#include "mxf_json.h"
#include "mod_matrix_fed_db.h"
#include "mod_matrix_fed_http.h"
#include "mod_matrix_fed_router.h"

#define DEFAULT_GME_LIMIT 10

/* ------------------------------------------------------------------ helpers */

/* The room of the request, once access has been granted. */
typedef struct room_ctx {
    const char *room_id;
    const char *nid;                    /* room number, as text for statements */
    const char *version;
} room_ctx_t;

/* The origin of the request (authenticated), or a safe placeholder. */
static const char *origin_of(const mxf_req_t *req)
{
    return req->origin ? req->origin : "";
}

static int bad_room_id(mxf_req_t *req, const char *room_id, apr_size_t len)
{
    if (!mxf_id_room_valid(room_id, len, NULL)) {
        return mxf_http_send_error(req->r, HTTP_BAD_REQUEST, MXF_M_INVALID_PARAM,
                                   "Malformed room ID"), HTTP_BAD_REQUEST;
    }
    return OK;
}

/*
 * Grants or refuses access to @a room_id from the access columns of a row
 * (room_nid, room_version, current_acl, member from column @a col of row 0;
 * no row: unknown room): the origin must have a joined member in the room
 * now (403), and with @a check_acl the room's server ACL must allow it
 * (403). Returns OK with @a ctx filled in, or the status of the error
 * already sent.
 */
static int access_from_row(mxf_req_t *req, const char *room_id, mxf_db_rows_t *rows, int col,
                           int check_acl, room_ctx_t *ctx)
{
    const char *acl_text, *member = rows->nrows ? mxf_db_get(rows, 0, col + 3) : NULL;

    if (!member || strcmp(member, "t") != 0) {
        return mxf_http_send_error(req->r, HTTP_FORBIDDEN, MXF_M_FORBIDDEN,
                                   "Server %s is not in room %s", origin_of(req), room_id),
               HTTP_FORBIDDEN;
    }
    acl_text = mxf_db_get(rows, 0, col + 2);
    if (check_acl && acl_text) {
        json_t *acl = mxf_json_own(req->r->pool, json_loads(acl_text, 0, NULL));
        if (!acl || !mxf_acl_allows(acl, origin_of(req))) {
            return mxf_http_send_error(req->r, HTTP_FORBIDDEN, MXF_M_FORBIDDEN,
                                       "Server %s is denied by the server ACL of room %s",
                                       origin_of(req), room_id), HTTP_FORBIDDEN;
        }
    }
    ctx->room_id = room_id;
    ctx->nid = mxf_db_get(rows, 0, col);
    ctx->version = mxf_db_get(rows, 0, col + 1);
    return OK;
}

/* Looks the room's access up, then as access_from_row(). */
static int room_access(mxf_req_t *req, const char *room_id, int check_acl, room_ctx_t *ctx)
{
    const char *args[2] = { origin_of(req), room_id };
    mxf_db_rows_t *rows;
    int status;

    if ((status = mxf_db_select(req, MXF_STMT_ROOM_ACCESS, 2, args, &rows)) != OK) {
        return status;
    }
    return access_from_row(req, room_id, rows, 0, check_acl, ctx);
}

/* What access_and_walk() found: the rows to serve and where to read them. */
typedef struct walk_rows {
    mxf_db_rows_t *rows;
    int col;                            /* the PDU column */
    int present;                        /* the column NULL in a row standing for no
                                         * events (-1: every row is an event) */
} walk_rows_t;

/*
 * get_missing_events and backfill: one statement (@a id) checks the access
 * and walks (columns: the access columns, go, PDU, event number), the walk
 * running only where the importer found the room's ACL to allow the origin
 * ("go", sql/009). The access is decided here all the same; where the
 * statement did not walk but access is granted, the walk follows as a
 * statement of its own (@a walk_id). @a args are @a id's: origin, room ID,
 * origin, then the walk's own; @a walk_id takes origin, room number, then
 * the same. Returns OK with *out filled in, or the status of the error
 * already sent.
 */
static int access_and_walk(mxf_req_t *req, const char *room_id, mxf_stmt_t id,
                           mxf_stmt_t walk_id, int nargs, const char **args, walk_rows_t *out)
{
    room_ctx_t room;
    const char *go, **walk_args;
    int status;

    if ((status = mxf_db_select(req, id, nargs, args, &out->rows)) != OK
        || (status = access_from_row(req, room_id, out->rows, 0, 1, &room)) != OK) {
        return status;
    }
    go = mxf_db_get(out->rows, 0, 4);
    if (go && !strcmp(go, "t")) {
        out->col = 5;
        out->present = 6;
        return OK;
    }
    walk_args = apr_palloc(req->r->pool, (nargs - 1) * sizeof(*walk_args));
    walk_args[0] = args[0];
    walk_args[1] = room.nid;
    memcpy(walk_args + 2, args + 3, (nargs - 3) * sizeof(*walk_args));
    out->col = 0;
    out->present = -1;
    return mxf_db_select(req, walk_id, nargs - 1, walk_args, &out->rows);
}

/*
 * Parses a non-negative decimal integer query value, clamped to 2^53 - 1
 * (a limit or timestamp beyond any in a room means "all"). Returns 1 on
 * success, 0 when it is not a string of decimal digits.
 */
static int parse_uint(const char *s, apr_int64_t *out)
{
    char *end;
    long long v;

    if (!s || !*s || !(*s >= '0' && *s <= '9')) {
        return 0;
    }
    errno = 0;
    v = strtoll(s, &end, 10);
    if (*end) {
        return 0;
    }
    *out = errno == ERANGE || v > MXF_JSON_INT_MAX ? MXF_JSON_INT_MAX : v;
    return 1;
}

/*
 * The whole number JSON number @a v stands for: an integer, or a real
 * without a fraction (Python senders may write 10.0), clamped to
 * +-(2^53 - 1), the range of numbers in events. 0 for a fraction or a
 * number that is not finite.
 */
static int json_whole(const json_t *v, apr_int64_t *out)
{
    double d;

    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        *out = i > MXF_JSON_INT_MAX ? MXF_JSON_INT_MAX
             : i < -MXF_JSON_INT_MAX ? -MXF_JSON_INT_MAX : i;
        return 1;
    }
    d = json_real_value(v);
    if (!json_is_real(v) || !isfinite(d)) {
        return 0;
    }
    if (d > (double)MXF_JSON_INT_MAX || d < -(double)MXF_JSON_INT_MAX) {
        *out = d > 0 ? MXF_JSON_INT_MAX : -MXF_JSON_INT_MAX;     /* no fraction this big */
        return 1;
    }
    *out = (apr_int64_t)d;
    return (double)*out == d;
}

/* The first value of query parameter @a name (repeats are ignored, as the
 * reference homeserver ignores them), or NULL. */
/*
 * The first value of query parameter @a name (servers repeating it mean
 * the first), or NULL when absent; *malformed counts the values whose
 * percent-encoding is malformed or encodes a NUL (see bad_query()).
 */
static const char *query_one(request_rec *r, const char *name, int *malformed)
{
    apr_array_header_t *v = mxf_http_query_values(r, name, 0, malformed);

    return v->nelts ? APR_ARRAY_IDX(v, 0, const char *) : NULL;
}

/* The answer to a query parameter given with a malformed percent-encoding. */
static int bad_query(request_rec *r, const char *name)
{
    return mxf_http_send_error(r, HTTP_BAD_REQUEST, MXF_M_INVALID_PARAM,
                               "Malformed percent-encoding in query parameter %s", name);
}

/*
 * Appends the PDU texts of column @a col of @a rows as the JSON array
 * members (comma-separated). Rows whose column @a present is NULL stand
 * for no event and are skipped (@a present -1: every row is an event). A
 * missing text (an event whose redacted copy is absent) is left out and
 * logged.
 */
static void put_pdus(mxf_req_t *req, apr_bucket_brigade *bb, mxf_db_rows_t *rows, int col,
                     int present)
{
    int i, n = 0;

    for (i = 0; i < rows->nrows; i++) {
        const char *pdu;
        if (present >= 0 && mxf_db_get(rows, i, present) == NULL) {
            continue;
        }
        if ((pdu = mxf_db_get(rows, i, col)) == NULL) {
            ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, req->r, MXFLOGNO(20011)
                          "an event to serve has no stored redacted copy; left out "
                          "(re-import the room)");
            continue;
        }
        if (n++) {
            APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_immortal_create(",", 1, bb->bucket_alloc));
        }
        /* The text lives in the query result, which lives as long as the request. */
        APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_pool_create(pdu, strlen(pdu), req->r->pool,
                                                           bb->bucket_alloc));
    }
}

static apr_bucket_brigade *new_bb(request_rec *r)
{
    return apr_brigade_create(r->pool, r->connection->bucket_alloc);
}

/* {"origin": <us>, "origin_server_ts": <now>, "pdus": [ */
static void transaction_head(mxf_req_t *req, apr_bucket_brigade *bb)
{
    apr_brigade_puts(bb, NULL, NULL, "{\"origin\":");
    mxf_http_put_json_string(req->r, bb, req->conf->server_name);
    apr_brigade_printf(bb, NULL, NULL, ",\"origin_server_ts\":%" APR_INT64_T_FMT ",\"pdus\":[",
                       (apr_int64_t)apr_time_as_msec(apr_time_now()));
}

/* A JSON array text of the strings in @a list, for statements taking one. */
static const char *json_list(mxf_req_t *req, const json_t *list)
{
    return mxf_json_dump(req->r->pool, list, NULL);
}

/* Whether @a v is an array of strings. */
static int string_array(const json_t *v)
{
    size_t i;
    json_t *item;

    if (!json_is_array(v)) {
        return 0;
    }
    json_array_foreach(v, i, item) {
        if (!json_is_string(item)) {
            return 0;
        }
    }
    return 1;
}

/* ------------------------------------------------------------------ get_missing_events */

/* POST /_matrix/federation/v1/get_missing_events/{roomId} */
int mxf_handle_get_missing_events(mxf_req_t *req)
{
    request_rec *r = req->r;
    const char *room_id = req->params[0];
    const json_t *body, *earliest, *latest, *limit, *min_depth;
    apr_int64_t lim = DEFAULT_GME_LIMIT, depth = 0;
    char lim_s[32], depth_s[32];
    const char *args[7];
    walk_rows_t walk;
    apr_bucket_brigade *bb;
    int status;

    if (bad_room_id(req, room_id, req->param_lens[0]) != OK) {
        return OK;
    }
    if ((status = mxf_http_read_body(req)) != OK) {
        /* A filter that already answered (AP_FILTER_ERROR) is passed on. */
        return status == AP_FILTER_ERROR ? status : OK;
    }
    if (!(body = req->body_json)) {
        return mxf_http_send_error(r, HTTP_BAD_REQUEST, MXF_M_NOT_JSON,
                                   "Expected a JSON object body");
    }
    earliest = json_object_get(body, "earliest_events");
    latest = json_object_get(body, "latest_events");
    limit = json_object_get(body, "limit");
    min_depth = json_object_get(body, "min_depth");
    /* Absent lists are empty (peers send "{}" and expect an answer). */
    if (!earliest) {
        earliest = mxf_json_own(r->pool, json_array());
    }
    if (!latest) {
        latest = mxf_json_own(r->pool, json_array());
    }
    if (!string_array(earliest) || !string_array(latest)) {
        return mxf_http_send_error(r, HTTP_BAD_REQUEST, MXF_M_BAD_JSON,
                                   "earliest_events and latest_events must be arrays of "
                                   "event IDs");
    }
    if (limit && !json_is_null(limit)) {
        if (!json_is_number(limit)) {
            return mxf_http_send_error(r, HTTP_BAD_REQUEST, MXF_M_BAD_JSON,
                                       "limit must be an integer");
        }
        if (!json_whole(limit, &lim) || lim < 1) {
            return mxf_http_send_error(r, HTTP_BAD_REQUEST, MXF_M_INVALID_PARAM,
                                       "limit must be a positive integer");
        }
    }
    if (min_depth && !json_is_null(min_depth)) {
        if (!json_is_number(min_depth)) {
            return mxf_http_send_error(r, HTTP_BAD_REQUEST, MXF_M_BAD_JSON,
                                       "min_depth must be an integer");
        }
        if (!json_whole(min_depth, &depth) || depth < 0) {
            return mxf_http_send_error(r, HTTP_BAD_REQUEST, MXF_M_INVALID_PARAM,
                                       "min_depth must be a non-negative integer");
        }
    }
    if (lim > mxf_config_gme_limit(req->conf)) {
        lim = mxf_config_gme_limit(req->conf);
    }
    apr_snprintf(lim_s, sizeof(lim_s), "%" APR_INT64_T_FMT, lim);
    apr_snprintf(depth_s, sizeof(depth_s), "%" APR_INT64_T_FMT, depth);
    args[0] = origin_of(req);
    args[1] = room_id;
    args[2] = origin_of(req);
    args[3] = json_list(req, earliest);
    args[4] = json_list(req, latest);
    args[5] = lim_s;
    args[6] = depth_s;
    if (access_and_walk(req, room_id, MXF_STMT_MISSING_EVENTS_IN, MXF_STMT_MISSING_EVENTS, 7,
                        args, &walk) != OK) {
        return OK;
    }
    bb = new_bb(r);
    apr_brigade_puts(bb, NULL, NULL, "{\"events\":[");
    put_pdus(req, bb, walk.rows, walk.col, walk.present);
    apr_brigade_puts(bb, NULL, NULL, "]}");
    return mxf_http_send_brigade(r, HTTP_OK, bb);
}

/* ------------------------------------------------------------------ backfill */

/* GET /_matrix/federation/v1/backfill/{roomId}?v=...&limit=... */
int mxf_handle_backfill(mxf_req_t *req)
{
    request_rec *r = req->r;
    const char *room_id = req->params[0], *limit_s;
    int bad_v, bad_limit, i;
    /*
     * v repeated (v=$a&v=$b, as servers send it) or comma-separated
     * (v=$a,$b, the spec's form with explode: false). A value with commas
     * is taken whole and in its parts: IDs that are not events of the room
     * are ignored, so an ID that itself holds a comma still works.
     */
    apr_array_header_t *v = mxf_http_query_values(r, "v", MXF_QUERY_SPLIT_COMMAS, &bad_v);
    apr_int64_t lim;
    char lim_buf[32];
    const char *args[5];
    json_t *vlist;
    walk_rows_t walk;
    apr_bucket_brigade *bb;

    if (bad_room_id(req, room_id, req->param_lens[0]) != OK) {
        return OK;
    }
    if (bad_v) {
        return bad_query(r, "v");
    }
    if (v->nelts == 0) {
        return mxf_http_send_error(r, HTTP_BAD_REQUEST, MXF_M_MISSING_PARAM,
                                   "Missing v: the event IDs to backfill from");
    }
    limit_s = query_one(r, "limit", &bad_limit);
    if (bad_limit) {
        return bad_query(r, "limit");
    }
    if (!limit_s) {
        return mxf_http_send_error(r, HTTP_BAD_REQUEST, MXF_M_MISSING_PARAM, "Missing limit");
    }
    if (!parse_uint(limit_s, &lim) || lim < 1) {
        return mxf_http_send_error(r, HTTP_BAD_REQUEST, MXF_M_INVALID_PARAM,
                                   "limit must be a positive integer");
    }
    if (lim > mxf_config_backfill_limit(req->conf)) {
        lim = mxf_config_backfill_limit(req->conf);
    }
    vlist = mxf_json_own(r->pool, json_array());
    for (i = 0; i < v->nelts; i++) {
        /* NULL for a value that is not UTF-8: no event has such an ID. */
        json_t *id = json_string(APR_ARRAY_IDX(v, i, const char *));
        if (id == NULL || json_array_append_new(vlist, id) != 0) {
            return mxf_http_send_error(r, HTTP_BAD_REQUEST, MXF_M_INVALID_PARAM,
                                       "v must be event IDs");
        }
    }
    apr_snprintf(lim_buf, sizeof(lim_buf), "%" APR_INT64_T_FMT, lim);
    args[0] = origin_of(req);
    args[1] = room_id;
    args[2] = origin_of(req);
    args[3] = json_list(req, vlist);
    args[4] = lim_buf;
    if (!args[3]) {
        return mxf_http_send_error(r, HTTP_BAD_REQUEST, MXF_M_INVALID_PARAM,
                                   "v must be event IDs");
    }
    if (access_and_walk(req, room_id, MXF_STMT_BACKFILL_IN, MXF_STMT_BACKFILL, 5, args,
                        &walk) != OK) {
        return OK;
    }
    bb = new_bb(r);
    transaction_head(req, bb);
    put_pdus(req, bb, walk.rows, walk.col, walk.present);
    apr_brigade_puts(bb, NULL, NULL, "]}");
    return mxf_http_send_brigade(r, HTTP_OK, bb);
}

/* ------------------------------------------------------------------ event */

/* GET /_matrix/federation/v1/event/{eventId} */
int mxf_handle_event(mxf_req_t *req)
{
    request_rec *r = req->r;
    const char *event_id = req->params[0];
    const char *args[3];
    mxf_db_rows_t *rows;
    room_ctx_t room;
    apr_bucket_brigade *bb;

    if (!mxf_id_event_plausible(event_id, req->param_lens[0])) {
        return mxf_http_send_error(r, HTTP_BAD_REQUEST, MXF_M_INVALID_PARAM,
                                   "Malformed event ID");
    }
    args[0] = origin_of(req);
    args[1] = origin_of(req);
    args[2] = event_id;
    if (mxf_db_select(req, MXF_STMT_EVENT, 3, args, &rows) != OK) {
        return OK;
    }
    if (rows->nrows == 0 || strcmp(mxf_db_get(rows, 0, 2), "t") == 0) {
        return mxf_http_send_error(r, HTTP_NOT_FOUND, MXF_M_NOT_FOUND,
                                   "Could not find event %s", event_id);
    }
    if (access_from_row(req, mxf_db_get(rows, 0, 0), rows, 3, 1, &room) != OK) {
        return OK;
    }
    bb = new_bb(r);
    transaction_head(req, bb);
    put_pdus(req, bb, rows, 1, -1);
    apr_brigade_puts(bb, NULL, NULL, "]}");
    return mxf_http_send_brigade(r, HTTP_OK, bb);
}

/* ------------------------------------------------------------------ state, state_ids, streamed answers */

/* Bytes of a streamed answer collected before they are passed on. */
#define STREAM_CHUNK (64 * 1024)

/*
 * The answer of /state, /state_ids and /event_auth, streamed as the rows
 * come: at a million events the state and its auth chain are about a
 * hundred thousand events, far too much to hold per request. The rows come
 * ordered by kind: the auth chain ('a') under @a head_a, then (if @a
 * head_p) the state ('p') under @a head_p; event IDs only, or PDUs.
 */
static int stream_answer(mxf_req_t *req, mxf_db_stream_t *st, const char *head_a,
                         const char *head_p, int ids_only, int rc)
{
    request_rec *r = req->r;
    apr_bucket_brigade *bb = new_bb(r);
    apr_size_t pending = 0;
    char section = 'a';
    long n = 0;

    r->status = HTTP_OK;
    ap_set_content_type(r, "application/json");
    if (r->header_only) {
        APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_eos_create(bb->bucket_alloc));
        ap_pass_brigade(r->output_filters, bb);
        return OK;
    }
    apr_brigade_puts(bb, NULL, NULL, head_a);
    for (; rc == 1; rc = mxf_db_stream_next(st)) {
        const char *kind = mxf_db_stream_get(st, 0), *v;
        apr_size_t len;

        if (!kind || (kind[0] != section && !(section == 'a' && kind[0] == 'p' && head_p))) {
            ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, MXFLOGNO(25057)
                          "answer rows out of order (kind %s after %c)", kind ? kind : "NULL",
                          section);
            rc = -1;
            break;
        }
        if (kind[0] != section) {
            apr_brigade_puts(bb, NULL, NULL, head_p);
            section = 'p';
            n = 0;
        }
        if (ids_only) {
            if (n++) {
                apr_brigade_putc(bb, NULL, NULL, ',');
            }
            mxf_http_put_json_string(r, bb, mxf_db_stream_get(st, 1));
            pending += mxf_db_stream_len(st, 1) + 3;
        }
        else if ((v = mxf_db_stream_get(st, 2)) != NULL) {
            if (n++) {
                apr_brigade_putc(bb, NULL, NULL, ',');
            }
            len = mxf_db_stream_len(st, 2);
            apr_brigade_write(bb, NULL, NULL, v, len);
            pending += len + 1;
        }
        else {
            ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, MXFLOGNO(25058)
                          "an event to serve has no stored redacted copy; left out "
                          "(re-import the room)");
        }
        if (pending >= STREAM_CHUNK) {
            if (ap_pass_brigade(r->output_filters, bb) != APR_SUCCESS || r->connection->aborted) {
                ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, MXFLOGNO(25059)
                              "client gone while the answer was sent");
                return OK;              /* the query is cancelled with the request */
            }
            apr_brigade_cleanup(bb);
            pending = 0;
        }
    }
    if (rc < 0) {
        /* Too late for an error answer: end without the last chunk, as a broken proxy would. */
        APR_BRIGADE_INSERT_TAIL(bb, ap_bucket_error_create(HTTP_BAD_GATEWAY, NULL, r->pool,
                                                           bb->bucket_alloc));
    }
    else {
        if (section == 'a' && head_p) {
            apr_brigade_puts(bb, NULL, NULL, head_p);
        }
        apr_brigade_puts(bb, NULL, NULL, "]}");
    }
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_eos_create(bb->bucket_alloc));
    if (ap_pass_brigade(r->output_filters, bb) != APR_SUCCESS) {
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, MXFLOGNO(25060)
                      "could not send the end of the answer");
    }
    return OK;
}

/*
 * Opens the stream of statement @a id (args: room nid, event ID) and reads
 * its first row before anything is sent, so that a failure (503) or an
 * unknown event (a '!' row: 404, "@a not_found <event ID>") still gets its
 * error answer. OK with *st and *rc (mxf_db_stream_next()'s) set;
 * otherwise the answer is sent.
 */
static int stream_first(mxf_req_t *req, mxf_stmt_t id, const char **args,
                        const char *not_found, mxf_db_stream_t **st, int *rc)
{
    request_rec *r = req->r;
    const char *kind;

    if (mxf_db_stream_open(req, id, 2, args, st) != OK) {
        return DONE;
    }
    *rc = mxf_db_stream_next(*st);
    if (*rc < 0) {
        mxf_db_unavailable(r, 1);
        return DONE;
    }
    if (*rc == 1 && (kind = mxf_db_stream_get(*st, 0)) != NULL && !strcmp(kind, "!")) {
        mxf_http_send_error(r, HTTP_NOT_FOUND, MXF_M_NOT_FOUND, "%s %s", not_found, args[1]);
        return DONE;
    }
    return OK;
}

static int state_common(mxf_req_t *req, int ids_only)
{
    request_rec *r = req->r;
    const char *room_id = req->params[0], *event_id;
    const char *args[2];
    mxf_db_stream_t *st;
    room_ctx_t room;
    int rc, bad;

    if (bad_room_id(req, room_id, req->param_lens[0]) != OK) {
        return OK;
    }
    event_id = query_one(r, "event_id", &bad);
    if (bad) {
        return bad_query(r, "event_id");
    }
    if (!event_id) {
        return mxf_http_send_error(r, HTTP_BAD_REQUEST, MXF_M_MISSING_PARAM,
                                   "Missing event_id");
    }
    if (!mxf_id_event_plausible(event_id, strlen(event_id))) {
        return mxf_http_send_error(r, HTTP_BAD_REQUEST, MXF_M_INVALID_PARAM,
                                   "Malformed event_id");
    }
    if (room_access(req, room_id, 1, &room) != OK) {
        return OK;
    }
    args[0] = room.nid;
    args[1] = event_id;
    if (stream_first(req, ids_only ? MXF_STMT_STATE_IDS_AT : MXF_STMT_STATE_AT, args,
                     "Could not find the state at event", &st, &rc) != OK) {
        return OK;
    }
    return ids_only ? stream_answer(req, st, "{\"auth_chain_ids\":[", "],\"pdu_ids\":[", 1, rc)
                    : stream_answer(req, st, "{\"auth_chain\":[", "],\"pdus\":[", 0, rc);
}

/* GET /_matrix/federation/v1/state/{roomId}?event_id= */
int mxf_handle_state(mxf_req_t *req)
{
    return state_common(req, 0);
}

/* GET /_matrix/federation/v1/state_ids/{roomId}?event_id= */
int mxf_handle_state_ids(mxf_req_t *req)
{
    return state_common(req, 1);
}

/* ------------------------------------------------------------------ event_auth */

/* GET /_matrix/federation/v1/event_auth/{roomId}/{eventId} */
int mxf_handle_event_auth(mxf_req_t *req)
{
    request_rec *r = req->r;
    const char *room_id = req->params[0], *event_id = req->params[1];
    const char *args[2];
    mxf_db_stream_t *st;
    room_ctx_t room;
    int rc;

    if (bad_room_id(req, room_id, req->param_lens[0]) != OK) {
        return OK;
    }
    if (!mxf_id_event_plausible(event_id, req->param_lens[1])) {
        return mxf_http_send_error(r, HTTP_BAD_REQUEST, MXF_M_INVALID_PARAM,
                                   "Malformed event ID");
    }
    if (room_access(req, room_id, 1, &room) != OK) {
        return OK;
    }
    args[0] = room.nid;
    args[1] = event_id;
    /* Streamed: an event's auth chain grows with the room's history of power and membership. */
    if (stream_first(req, MXF_STMT_EVENT_AUTH, args, "Could not find event", &st, &rc) != OK) {
        return OK;
    }
    return stream_answer(req, st, "{\"auth_chain\":[", NULL, 0, rc);
}

/* ------------------------------------------------------------------ timestamp_to_event */

/* GET /_matrix/federation/v1/timestamp_to_event/{roomId}?ts=&dir=f|b */
int mxf_handle_timestamp_to_event(mxf_req_t *req)
{
    request_rec *r = req->r;
    const char *room_id = req->params[0], *ts_s, *dir;
    const char *args[2];
    apr_int64_t ts;
    mxf_db_rows_t *rows;
    room_ctx_t room;
    apr_bucket_brigade *bb;
    int bad_ts, bad_dir;

    if (bad_room_id(req, room_id, req->param_lens[0]) != OK) {
        return OK;
    }
    ts_s = query_one(r, "ts", &bad_ts);
    dir = query_one(r, "dir", &bad_dir);
    if (bad_ts || bad_dir) {
        return bad_query(r, bad_ts ? "ts" : "dir");
    }
    if (!ts_s || !dir) {
        return mxf_http_send_error(r, HTTP_BAD_REQUEST, MXF_M_MISSING_PARAM,
                                   "Missing %s", !ts_s ? "ts" : "dir");
    }
    if (!parse_uint(ts_s, &ts)) {
        return mxf_http_send_error(r, HTTP_BAD_REQUEST, MXF_M_INVALID_PARAM,
                                   "ts must be a timestamp in milliseconds");
    }
    if (strcmp(dir, "f") != 0 && strcmp(dir, "b") != 0) {
        return mxf_http_send_error(r, HTTP_BAD_REQUEST, MXF_M_INVALID_PARAM,
                                   "dir must be f or b");
    }
    /*
     * An unknown room has no event at any time (404, as the spec lists);
     * a known one answers only servers in it that its ACL allows (403).
     */
    args[0] = origin_of(req);
    args[1] = room_id;
    if (mxf_db_select(req, MXF_STMT_ROOM_ACCESS, 2, args, &rows) != OK) {
        return OK;
    }
    if (rows->nrows == 0) {
        return mxf_http_send_error(r, HTTP_NOT_FOUND, MXF_M_NOT_FOUND,
                                   "Unable to find event from %" APR_INT64_T_FMT
                                   " in %s direction: room %s is not known here", ts,
                                   dir[0] == 'f' ? "forward" : "backward", room_id);
    }
    if (access_from_row(req, room_id, rows, 0, 1, &room) != OK) {
        return OK;
    }
    args[0] = room.nid;
    args[1] = apr_psprintf(r->pool, "%" APR_INT64_T_FMT, ts);
    if (mxf_db_select(req, dir[0] == 'f' ? MXF_STMT_TS_FORWARD : MXF_STMT_TS_BACKWARD,
                      2, args, &rows) != OK) {
        return OK;
    }
    if (rows->nrows == 0) {
        return mxf_http_send_error(r, HTTP_NOT_FOUND, MXF_M_NOT_FOUND,
                                   "Unable to find event from %" APR_INT64_T_FMT
                                   " in %s direction", ts,
                                   dir[0] == 'f' ? "forward" : "backward");
    }
    bb = new_bb(r);
    apr_brigade_puts(bb, NULL, NULL, "{\"event_id\":");
    mxf_http_put_json_string(r, bb, mxf_db_get(rows, 0, 0));
    apr_brigade_printf(bb, NULL, NULL, ",\"origin_server_ts\":%s}", mxf_db_get(rows, 0, 1));
    return mxf_http_send_brigade(r, HTTP_OK, bb);
}
