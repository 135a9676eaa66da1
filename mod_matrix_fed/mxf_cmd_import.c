/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * matrix-fed import: loads federation-format PDUs (one per line, any order,
 * one or several rooms; or arrays of them and federation responses holding
 * them, see mxf_pduinput.h) into the room DAG schema.
 *
 * The whole import is one transaction: it either lands completely or leaves
 * the database as it was. Steps:
 *   1. read the input (mapped, not copied) and find its PDUs; find the
 *      rooms' m.room.create events (room versions);
 *   2. parse and check every line in worker threads (strict JSON for the
 *      room version, size limits, event ID, content hash, which signatures
 *      of the required servers can be checked), keeping only the fields
 *      the later steps need, and the redacted form of events in rooms
 *      whose history visibility can be restricted; every bad line is
 *      reported with its number before anything is written. The Ed25519
 *      verifications, most of the checking's CPU, then run in worker
 *      threads alongside steps 3 to 5, whose output does not depend on
 *      them: a signature that does not verify fails the import before it
 *      commits (its line reported);
 *   3. look up the events the database already has (read as stored from
 *      here on, with their stored redaction status, whatever copy of them
 *      the input gives), and the events whose state was unknown (missing
 *      prev_events) that this import can now complete; order everything
 *      topologically (ties: input order);
 *   4. compute the state before each event (the merge of the states after
 *      its prev_events, resolved by the room version's state resolution
 *      where they differ), check the event against the authorization rules
 *      (its auth events, then the state before it), and the state after it
 *      and the visibility stretch it belongs to (mxf_roomstate), writing
 *      rows in batches: a writer thread sends one batch (COPY; binary
 *      format for the events and edges) while the main thread computes the
 *      next, so that PostgreSQL's work overlaps the importer's; the main
 *      thread waits for it before any other use of the connection (one
 *      transaction, one connection);
 *   5. apply redactions, link edges to events that arrived late, and set
 *      each room's current state, ACL and joined servers.
 *
 * The state before an event is known when every one of its prev_events is
 * known with its state (or it is the room's m.room.create); otherwise it is
 * NULL, the edge of known history, until the missing events arrive.
 *
 * Authorization (server-server API, "Checks performed on receipt of a
 * PDU", steps 4 and 5): an event whose state before is known must pass the
 * rules on its auth_events list, the authorization rules against its auth
 * events, and the rules against the state before it. Otherwise it is
 * stored as rejected (rejected_reason, never served; state after = state
 * before). An auth event that is neither in the input nor in the database
 * cannot be fetched by an import, so the event is rejected (as a server
 * that cannot fetch it would); so is an event citing a rejected auth event.
 * An event whose state is unknown is checked against its auth events only
 * (step 4; an auth event not known yet leaves it unchecked), and against
 * the state when a later import makes its state known (the same pass that
 * fills its state in, which takes rejected events too: their state after
 * is the state before them, which the events after them need). The
 * ordering puts every event after its prev_events and its auth events of
 * the same import, so the checks see their outcome.
 * Known limitation: an auth event whose own state is still unknown (not
 * yet checked) counts as accepted.
 *
 * State resolution takes events from this import (their PDUs re-parsed
 * from the input line, a small cache of them kept) or from the database,
 * numbered so that numbers grow along auth edges: this import's events by
 * their position in its order, after every stored event's number.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <apr_hash.h>
#include <apr_strings.h>
#include <apr_tables.h>
#include <libpq-fe.h>
#include <sodium.h>

#include "mxf_acl.h"
#include "mxf_authrules.h"
#include "mxf_base64.h"
#include "mxf_canonical.h"
#include "mxf_cmd.h"
#include "mxf_cmd_pg.h"
#include "mxf_event.h"
#include "mxf_id.h"
#include "mxf_json.h"
#include "mxf_keystore.h"
#include "mxf_pduinput.h"
#include "mxf_roomstate.h"
#include "mxf_roomver.h"
#include "mxf_sign.h"
#include "mxf_stateres.h"

/* Events written per COPY round (default of --batch-events), and the most. */
#define BATCH_EVENTS 5000
#define MAX_BATCH_EVENTS 1000000
/* Bad lines reported before giving up on listing more. */
#define MAX_REPORTED 50
/* Lines a checker thread takes at a time. */
#define CHECK_CHUNK 64
/* Most checker threads. */
#define MAX_THREADS 32
/* Parsed PDUs kept for the auth checks and state resolution before the cache is emptied. */
#define JSON_CACHE_MAX 20000
/*
 * How PDUs are parsed: with U+0000 in strings, which senders' content may
 * hold and the reference homeserver keeps; check_line() refuses it where
 * the importer reads a string (see nul_where_read()).
 */
#define PDU_PARSE MXF_JSON_ALLOW_NUL

typedef struct room {
    const char *room_id;
    apr_int64_t nid;
    const mxf_roomver_t *rv;
    int is_new;
    int touched;
    int depth_broken;                   /* an event of this import is not deeper than a prev */
    int may_restrict;                   /* history visibility "invited" or "joined" occurs */
    mxf_rs_room_t *rs;
} room_t;

typedef struct ev {
    const char *event_id;
    room_t *room;
    const char *type, *state_key, *sender, *membership, *redacts;
    const char *pdu;                    /* NULL: read from the database (ev_json()); an event
                                         * the database has is read as stored, given again
                                         * or not (see load_known(), load_refills()) */
    const char **prevs, **auths;        /* event IDs */
    json_t *content;                    /* state events the state engine reads; else NULL */
    mxf_rs_state_t *before, *after;     /* NULL: state unknown */
    apr_array_header_t *given_state;    /* /send_join: the state before it (event IDs) */
    const char *redacted_pdu;           /* while its batch is being written */
    const char *redacted_pre;           /* its redaction, encoded by its checker (see check_line) */
    const char *signed_bytes;           /* what its signatures cover (see verify_event()), */
    apr_size_t signed_len;              /* or NULL: redacted_pre less [sig_cut, + sig_cut_len) */
    apr_size_t sig_cut, sig_cut_len;
    struct sig_check *sigs;             /* the signatures to verify */
    int n_sigs;
    const char *sig_error;              /* why a signature does not verify, or NULL */
    const char *redacted_because;
    apr_int64_t nid, depth, ts;
    apr_int64_t db_state_after;         /* known events: their state group (0: none) */
    apr_size_t pdu_len;
    long line;                          /* input line; refilled events: after the last */
    int n_prevs, n_auths;
    int pending;                        /* parents in this import not yet ordered */
    int child0, n_children;             /* children: im->children[child0 ..] */
    int akid0, n_akids;                 /* state events citing it: im->auth_kids[akid0 ..] */
    unsigned known:1;                   /* already in the database, left as it is */
    unsigned kids_indexed:1;            /* in this import's order: akid0/n_akids are its */
    unsigned refill:1;                  /* in the database, state unknown: computed now */
    unsigned had_redacted:1;            /* refill: redacted_pdu already stored */
    unsigned hash_mismatch:1;
    unsigned sigs_verified:1;
    unsigned by_power:1;                /* redaction: the sender's power sufficed */
    unsigned redacted_now:1;            /* redacted_because set by this import */
    unsigned rejected:1;                /* rejected (by this import, or in the database) */
    unsigned accepted_child:1;          /* an accepted event of this import lists it as a prev */
    unsigned event_id_taken:1;          /* its PDU carried its (v3+) event_id: taken off */
    unsigned local_taken:1;             /* take_local_values() took something off */
    unsigned outlier:1;                 /* only in answers of /state, /event_auth, /send_join */
    unsigned pruned:1;                  /* redacted by a redaction processed before: the auth
                                         * checks read its redacted form (ev_json_auth()) */
    json_t *json;                       /* the parsed PDU while cached (im->cache) */
    const char *rejected_reason;        /* why this import rejects it */
    apr_int64_t seq;                    /* grows along auth edges (state resolution) */
    apr_int64_t prio;                   /* topo_order(): among events ready at once, the
                                         * lowest first: refilled events (they arrived
                                         * before) by arrival, then the input's by line */
    apr_int64_t arrival;                /* refilled: its place in the input of the import
                                         * that stored it (sql/021) */
    apr_int64_t chain_id;               /* auth chain index position (0: none) */
    int chain_seq;
} ev_t;

/* A signature of a required server by a known key, verified after checking. */
typedef struct sig_check {
    const char *server, *key_id;
    unsigned char pk[MXF_ED25519_PK_BYTES];
    unsigned char sig[crypto_sign_BYTES];
} sig_check_t;

typedef struct line {
    const char *text;                   /* one PDU (mxf_pduinput.h) */
    apr_size_t len;
    long no;                            /* its number in the input, from 1 */
    long src_line;                      /* the input line it starts on */
    const char *where;                  /* NULL, or its place in a response */
    int response;                       /* the response holding it, or 0 */
    mxf_pdu_role_t role;                /* /send_join: of its "state", or its "event" */
    int snapshot;                       /* of /state, /event_auth or /send_join */
} line_t;

typedef struct importer importer_t;

/*
 * The writer thread of the ordered pass: while it sends one batch's COPY
 * data (the connection is its own until the batch is written), the main
 * thread computes the next batch, so that PostgreSQL's work overlaps the
 * importer's. The main thread waits for it before any other use of the
 * connection (writer_idle()). At most two batches exist at a time.
 */
typedef struct batch batch_t;
typedef struct writer {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t tid;
    PGconn *conn;
    batch_t *job;                       /* being written; NULL: idle */
    int stop, failed;
    long batches;                       /* handed over */
    apr_time_t waited;                  /* the main thread's waits for it */
} writer_t;

static int writer_idle(importer_t *im);
static double thread_cpu_now(void);

/* A checker thread's memory: results in pool, per-line scratch. */
typedef struct checker {
    importer_t *im;
    apr_pool_t *pool;                   /* own allocator: used by this thread only */
    apr_pool_t *scratch;
    pthread_t tid;
    int started;
    double cpu;                         /* verifiers: thread CPU seconds */
    unsigned char *buf;                 /* verifiers: signed bytes put back together */
    apr_size_t buf_cap;
} checker_t;

struct importer {
    apr_pool_t *p;
    apr_pool_t *scratch;                /* main thread, cleared often */
    PGconn *conn;
    writer_t *writer;                   /* during write_events(): owns conn while busy */
    mxf_keystore_t *keys;
    int require_signatures;
    int progress;
    int threads;
    int batch_events;                   /* events per COPY round */
    const char *source;
    apr_hash_t *rooms;                  /* room_id -> room_t */
    apr_hash_t *events;                 /* event_id -> ev_t (new, known and refilled) */
    apr_array_header_t *order;          /* ev_t *, new and refilled events in input order */
    apr_array_header_t *lines;          /* line_t */
    ev_t **checked;                     /* per line: the event, or NULL */
    const char **line_errors;           /* per line: why it is bad, or NULL */
    atomic_long next_line;
    atomic_long lines_done;
    /* signature verification (see verify_start()) */
    ev_t **verify_list;
    long n_verify;
    atomic_long next_verify;
    atomic_int sig_failed;
    struct checker *verifiers;
    int n_verifiers;
    double c_verify;                    /* CPU seconds of the verifying threads */
    ev_t **children;
    const char **auth_kids;             /* see ev_t.akid0 */
    apr_int64_t sr_seq_limit;           /* the seq of the event whose state is resolved */
    /* the auth chain index (sql/006): chains this import starts, numbered
     * from first_chain; chain_len[i] = length of chain first_chain + i;
     * chain_links: (origin chain, target chain) -> highest target seq linked */
    apr_int64_t first_chain;
    apr_array_header_t *chain_len;      /* int */
    apr_hash_t *chain_links;
    long n_chains, n_chain_links;
    int errors;
    apr_int64_t next_event_nid, next_room_nid;
    apr_int64_t arrival_base;           /* this import's number << 32 (sql/021) */
    mxf_rs_ctx_t *rs;
    apr_hash_t *rs_rooms;               /* mxf_rs_room_t * -> room_t * */
    apr_pool_t *cache;                  /* parsed PDUs (ev_t.json) */
    apr_array_header_t *cached;         /* ev_t * whose json is set */
    apr_pool_t *authp;                  /* one auth check's memory */
    apr_hash_t *absent;                 /* event IDs neither here nor in the database */
    int db_failed;                      /* a look-up during state resolution failed */
    long n_rejected, n_rejected_unknown_auth, n_sr_fetched, n_sr_full_conflicted;
    long n_rooms_gap;                   /* current state left events of unknown state out */
    /* summary */
    long n_lines, n_new, n_known, n_dup, n_redacted_hash, n_redacted_by_event,
         n_sig_verified, n_sig_unverifiable;
    long n_refilled;                    /* stored events of unknown state taken up again */
    long n_refill_known;                /* of them, those whose state is known now */
    long n_unredacted;                  /* their redactions' targets served whole again */
    long n_dup_other;                   /* repeated with other bytes (one copy kept) */
    long n_event_id_taken;              /* v3+ PDUs that carried their event_id */
    long n_local_taken;                 /* PDUs that carried values not shared (take_local_values) */
    long n_given_state;                 /* events given their state by a /send_join answer */
    long n_altered_kept;                /* stored as altered copies, given with matching content */
    long n_sig_now_verified;            /* stored unverified, their signatures verified now */
    long n_id_clash;                    /* v1/v2 events whose ID another room's event has */
    apr_time_t t_start, t_checked, t_ordered, t_written;
    double c_start, c_checked, c_ordered, c_written;    /* process CPU seconds */
    double c_resolving;                 /* main thread's CPU seconds in state resolution */
    long n_batches;                     /* rounds written by the writer thread */
    apr_time_t t_writer_waits;          /* the main thread waited for them */
};

static void bad_line(importer_t *im, long line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void bad_line(importer_t *im, long line, const char *fmt, ...)
{
    va_list ap;

    if (++im->errors > MAX_REPORTED) {
        if (im->errors == MAX_REPORTED + 1) {
            fprintf(stderr, "matrix-fed: import: more errors not shown\n");
        }
        return;
    }
    if (line < 0) {                     /* the input itself, at a line */
        fprintf(stderr, "matrix-fed: import: %s:%ld: ", im->source, -line);
    }
    else if (im->lines && line >= 1 && line <= im->lines->nelts) {
        const line_t *l = &APR_ARRAY_IDX(im->lines, line - 1, line_t);
        fprintf(stderr, "matrix-fed: import: %s:%ld: %s%s%s", im->source, l->src_line,
                l->where ? "(" : "", l->where ? l->where : "", l->where ? ") " : "");
    }
    else {                              /* an event already in the database */
        fprintf(stderr, "matrix-fed: import: (database): ");
    }
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* Canonical JSON flags of a room version (as the core hashes and signs). */
static unsigned canon_flags(const mxf_roomver_t *rv)
{
    return rv->strict_canonical_json ? MXF_CANON_STRICT_INTS : MXF_CANON_PYTHON_FLOATS;
}

/* ------------------------------------------------------------------ input */

typedef struct input {
    char *data;
    apr_size_t len;
    int mapped;
} input_t;

static apr_status_t input_release(void *data)
{
    input_t *in = data;

    if (in->mapped) {
        munmap(in->data, in->len);
    }
    else {
        free(in->data);
    }
    return APR_SUCCESS;
}

/*
 * The input, mapped when it is a regular file (the page cache holds it, not
 * the heap), read otherwise. Released with @a p.
 */
static apr_status_t read_input(apr_pool_t *p, const char *path, const char **buf,
                               apr_size_t *len)
{
    input_t *in = apr_pcalloc(p, sizeof(*in));
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    apr_size_t cap = 1 << 20, n = 0;
    struct stat st;

    if (!f) {
        mxf_cmd_error("cannot open %s", path);
        return APR_ENOENT;
    }
    if (f != stdin && fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
        void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fileno(f), 0);
        if (m != MAP_FAILED) {
            madvise(m, (size_t)st.st_size, MADV_SEQUENTIAL);
            in->data = m;
            in->len = (apr_size_t)st.st_size;
            in->mapped = 1;
            fclose(f);
            apr_pool_cleanup_register(p, in, input_release, apr_pool_cleanup_null);
            *buf = in->data;
            *len = in->len;
            return APR_SUCCESS;
        }
    }
    in->data = malloc(cap);
    for (;;) {
        size_t got;
        if (!in->data) {
            mxf_cmd_error("out of memory reading %s", path);
            return APR_ENOMEM;
        }
        if (n + 1 >= cap) {
            char *bigger = realloc(in->data, cap * 2);
            if (!bigger) {
                free(in->data);
                in->data = NULL;
                continue;
            }
            in->data = bigger;
            cap *= 2;
        }
        got = fread(in->data + n, 1, cap - n - 1, f);
        if (got == 0) {
            break;
        }
        n += got;
    }
    if (ferror(f)) {
        free(in->data);
        mxf_cmd_error("cannot read %s", path);
        return APR_EGENERAL;
    }
    if (f != stdin) {
        fclose(f);
    }
    in->data[n] = '\0';
    in->len = n;
    apr_pool_cleanup_register(p, in, input_release, apr_pool_cleanup_null);
    *buf = in->data;
    *len = n;
    return APR_SUCCESS;
}

/*
 * The PDUs of the input (mxf_pduinput.h), numbered from 1 in input order;
 * bad_line() reports them by the line they start on. NULL when the input is
 * not well formed, or holds a partial-state /send_join answer (reported).
 *
 * A partial-state answer ("members_omitted": true, from a join with
 * omit_members) leaves the other members' m.room.member events out of its
 * "state" and "auth_chain": taken as the state before the join, it would
 * have the events after the join judged against a room without their
 * senders, and a state given by an answer is never judged again. It is
 * refused; the full answer is what can be imported.
 */
static apr_array_header_t *split_input(importer_t *im, const char *buf, apr_size_t len)
{
    apr_array_header_t *items = apr_array_make(im->p, 1024, sizeof(mxf_pdu_item_t));
    apr_array_header_t *lines;
    const char *why = NULL;
    long err_line = 0;
    int i, partial_response = 0;

    if (mxf_pdu_input_split(im->p, buf, len, items, &err_line, &why) != APR_SUCCESS) {
        bad_line(im, -err_line, "%s", why);
        return NULL;
    }
    lines = apr_array_make(im->p, items->nelts ? items->nelts : 1, sizeof(line_t));
    for (i = 0; i < items->nelts; i++) {
        const mxf_pdu_item_t *it = &APR_ARRAY_IDX(items, i, mxf_pdu_item_t);
        line_t *l = apr_array_push(lines);

        l->text = it->text;
        l->len = it->len;
        l->no = i + 1;
        l->src_line = it->line;
        l->where = it->where;
        l->response = it->response;
        l->role = it->role;
        l->snapshot = it->snapshot;
        if (it->partial_line && it->response != partial_response) {
            partial_response = it->response;
            bad_line(im, -it->partial_line, "a partial-state /send_join answer"
                     " (\"members_omitted\": true: the members' m.room.member events are"
                     " left out of its state) cannot be imported, as its state would be"
                     " taken for the whole state before the join; save the answer of a"
                     " /send_join without omit_members (or with omit_members=false)");
        }
    }
    return im->errors ? NULL : lines;
}

/* ------------------------------------------------------------------ rooms */

static room_t *room_get(importer_t *im, const char *room_id)
{
    return apr_hash_get(im->rooms, room_id, APR_HASH_KEY_STRING);
}

static int load_rooms(importer_t *im)
{
    PGresult *res = PQexec(im->conn, "SELECT room_nid, room_id, room_version FROM mxf_rooms");
    int i;

    if (!mxf_pg_ok(res, "reading rooms")) {
        return 0;
    }
    for (i = 0; i < PQntuples(res); i++) {
        room_t *r = apr_pcalloc(im->p, sizeof(*r));
        r->nid = apr_atoi64(PQgetvalue(res, i, 0));
        r->room_id = apr_pstrdup(im->p, PQgetvalue(res, i, 1));
        r->rv = mxf_roomver_get(PQgetvalue(res, i, 2));
        if (!r->rv) {
            mxf_cmd_error("room %s in the database has unknown room version %s",
                          r->room_id, PQgetvalue(res, i, 2));
            PQclear(res);
            return 0;
        }
        apr_hash_set(im->rooms, r->room_id, APR_HASH_KEY_STRING, r);
    }
    PQclear(res);
    res = PQexec(im->conn,
                 "SELECT r.room_id FROM mxf_rooms r WHERE EXISTS (SELECT 1 FROM mxf_visibility v"
                 " WHERE v.room_nid = r.room_nid AND v.history_visibility IN ('invited', 'joined'))");
    if (!mxf_pg_ok(res, "reading rooms")) {
        return 0;
    }
    for (i = 0; i < PQntuples(res); i++) {
        room_t *r = room_get(im, PQgetvalue(res, i, 0));
        if (r) {
            r->may_restrict = 1;
        }
    }
    PQclear(res);
    return 1;
}

static const char *jstr(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

static int is_create(const json_t *pdu)
{
    const char *t = jstr(pdu, "type");

    return t && !strcmp(t, "m.room.create");
}

/* Finds the m.room.create events of the input: they give room versions. */
static void scan_creates(importer_t *im)
{
    int i;

    for (i = 0; i < im->lines->nelts; i++) {
        line_t *l = &APR_ARRAY_IDX(im->lines, i, line_t);
        json_t *j;
        const char *why, *version, *room_id;
        const mxf_roomver_t *rv;
        room_t *r;
        apr_pool_t *tmp = im->scratch;

        if (!mxf_memmem(l->text, l->len, "\"m.room.create\"")
            && !mxf_memmem(l->text, l->len, "\\u")) {
            continue;                   /* (a type may be written with \u escapes) */
        }
        if (mxf_json_parse(tmp, l->text, l->len, PDU_PARSE, &j, &why) != APR_SUCCESS
            || !jstr(j, "type") || strcmp(jstr(j, "type"), "m.room.create") != 0
            || !jstr(j, "state_key") || *jstr(j, "state_key")) {
            apr_pool_clear(tmp);
            continue;                   /* reported in the main pass */
        }
        version = json_is_object(json_object_get(j, "content"))
                  ? jstr(json_object_get(j, "content"), "room_version") : NULL;
        if (!version) {
            version = "1";             /* the spec's default */
        }
        if ((rv = mxf_roomver_get(version)) == NULL) {
            bad_line(im, l->no, "m.room.create names unknown room version '%s'", version);
            apr_pool_clear(tmp);
            continue;
        }
        if (rv->event_id_format != MXF_EVID_CARRIED) {
            json_object_del(j, "event_id");     /* see take_event_id() */
        }
        room_id = rv->room_id_is_create_hash
                  ? mxf_event_room_id_from_create(tmp, j, rv, &why)
                  : jstr(j, "room_id");
        if (!room_id) {
            bad_line(im, l->no, "m.room.create without a usable room ID%s%s",
                     rv->room_id_is_create_hash ? ": " : "",
                     rv->room_id_is_create_hash ? why : "");
            apr_pool_clear(tmp);
            continue;
        }
        r = room_get(im, room_id);
        if (r && r->rv != rv) {
            bad_line(im, l->no, "room %s is version %s, but this m.room.create says %s",
                     room_id, r->rv->id, rv->id);
        }
        else if (!r) {
            r = apr_pcalloc(im->p, sizeof(*r));
            r->room_id = apr_pstrdup(im->p, room_id);
            r->rv = rv;
            r->is_new = 1;
            apr_hash_set(im->rooms, r->room_id, APR_HASH_KEY_STRING, r);
        }
        apr_pool_clear(tmp);
    }
}

/*
 * Marks the rooms of the input that may have a restricted history
 * visibility ("invited" or "joined"): their events may have to be served
 * redacted, so their checkers encode the redacted form while the PDU is
 * parsed (compute_events() falls back to encoding it there). Only the few
 * lines that look like such an event are parsed.
 */
static void scan_visibility(importer_t *im)
{
    int i;

    for (i = 0; i < im->lines->nelts; i++) {
        const line_t *l = &APR_ARRAY_IDX(im->lines, i, line_t);
        const char *why;
        json_t *j;
        room_t *r;

        if (!mxf_memmem(l->text, l->len, "\"m.room.history_visibility\"")
            || !(mxf_memmem(l->text, l->len, "\"invited\"")
                 || mxf_memmem(l->text, l->len, "\"joined\""))) {
            continue;
        }
        if (mxf_json_parse(im->scratch, l->text, l->len, PDU_PARSE, &j, &why) == APR_SUCCESS
            && (r = room_get(im, jstr(j, "room_id") ? jstr(j, "room_id") : "")) != NULL) {
            r->may_restrict = 1;
        }
        apr_pool_clear(im->scratch);
    }
}

/* ------------------------------------------------------------------ events */

/* Event IDs listed in prev_events / auth_events (pairs in v1 and v2), copied into @a p. */
static const char **ref_list(apr_pool_t *p, const json_t *list, int pairs, int *n,
                             const char **why)
{
    const char **out;
    size_t i;
    json_t *item;

    if (!json_is_array(list)) {
        *why = "is not an array";
        return NULL;
    }
    *n = (int)json_array_size(list);
    out = apr_palloc(p, sizeof(*out) * (apr_size_t)(*n + 1));
    json_array_foreach(list, i, item) {
        const char *id;
        if (pairs) {
            if (!json_is_array(item) || json_array_size(item) < 1) {
                *why = "holds an entry that is not an [event_id, hashes] pair";
                return NULL;
            }
            item = json_array_get(item, 0);
        }
        if ((id = json_string_value(item)) == NULL || id[0] != '$') {
            *why = "holds an entry that is not an event ID";
            return NULL;
        }
        out[i] = apr_pstrmemdup(p, id, json_string_length(item));
    }
    return out;
}

static int int_field(const json_t *pdu, const char *key, apr_int64_t *out)
{
    const json_t *v = json_object_get(pdu, key);

    if (!json_is_integer(v)) {
        return 0;
    }
    *out = json_integer_value(v);
    return 1;
}

/*
 * The fields of @a j that the later steps need, copied into @a p. 0 with
 * *why (from @a tmp) if one is missing or malformed.
 */
static int extract_fields(apr_pool_t *p, apr_pool_t *tmp, json_t *j, ev_t *e,
                          const char **why)
{
    const mxf_roomver_t *rv = e->room->rv;
    json_t *content;
    const char *s;

    if (!(s = jstr(j, "sender"))) {
        *why = "no \"sender\"";
        return 0;
    }
    e->sender = apr_pstrdup(p, s);
    if (!int_field(j, "depth", &e->depth) || e->depth < 0) {
        *why = "\"depth\" is missing or not a non-negative integer";
        return 0;
    }
    if (!int_field(j, "origin_server_ts", &e->ts)) {
        *why = "\"origin_server_ts\" is missing or not an integer";
        return 0;
    }
    if (json_object_get(j, "state_key")) {
        if (!(s = jstr(j, "state_key"))) {
            *why = "\"state_key\" is not a string";
            return 0;
        }
        e->state_key = apr_pstrdup(p, s);
    }
    content = json_object_get(j, "content");
    if (!json_is_object(content)) {
        *why = "\"content\" is missing or not an object";
        return 0;
    }
    if (!(e->prevs = ref_list(p, json_object_get(j, "prev_events"), rv->ref_pairs,
                              &e->n_prevs, why))) {
        *why = apr_pstrcat(tmp, "\"prev_events\" ", *why, NULL);
        return 0;
    }
    if (!(e->auths = ref_list(p, json_object_get(j, "auth_events"), rv->ref_pairs,
                              &e->n_auths, why))) {
        *why = apr_pstrcat(tmp, "\"auth_events\" ", *why, NULL);
        return 0;
    }
    /*
     * A member event without a string content.membership is well formed as
     * a PDU: the authorization rules reject it (no membership, or one that
     * is not known), and it is kept as rejected like any other.
     */
    if (!strcmp(e->type, "m.room.member") && e->state_key
        && (s = jstr(content, "membership"))) {
        e->membership = apr_pstrdup(p, s);
    }
    if (!strcmp(e->type, "m.room.redaction")) {
        s = rv->redacts_in_content ? jstr(content, "redacts") : jstr(j, "redacts");
        e->redacts = s ? apr_pstrdup(p, s) : NULL;
    }
    if (e->state_key && mxf_rs_keeps_content(e->type)) {
        /* Outlives the parsed event, which goes with its scratch pool. */
        e->content = mxf_json_own(p, json_incref(content));
    }
    return 1;
}

/*
 * Event @a e (PDU @a j, fields extracted) whose content hash does not
 * match: processed redacted (checks on receipt, step 3), its fields taken
 * from its redacted form - in room versions 1-10 a redaction has no
 * "redacts" there, and the content the state engine keeps is the redacted
 * one (in @a p).
 */
static void processed_redacted(apr_pool_t *p, apr_pool_t *tmp, json_t *j, ev_t *e)
{
    e->hash_mismatch = 1;
    if (!e->room->rv->redacts_in_content) {
        e->redacts = NULL;
    }
    if (e->content) {
        json_t *red = mxf_event_redact(tmp, j, e->room->rv);
        json_t *rc = red ? json_object_get(red, "content") : NULL;
        e->content = rc ? mxf_json_own(p, json_incref(rc)) : NULL;
    }
}

/*
 * Checks the signatures of every server that must sign @a j over @a bytes
 * (its redacted form less signatures): each must have signed with at least
 * one ed25519 key, and every signature by a key we know must verify.
 * *verified is 0 when some server signed only with keys we do not know.
 * 0 with *why on a bad or missing signature.
 */
static int check_signatures(checker_t *c, json_t *j, const mxf_roomver_t *rv, ev_t *e,
                            const char *bytes, apr_size_t len, int *verified, const char **why)
{
    apr_array_header_t *servers;
    apr_array_header_t *checks = NULL;
    const json_t *sigs = json_object_get(j, "signatures");
    int i;

    *verified = 1;
    if (!json_is_object(sigs)) {
        *why = "\"signatures\" is missing or not an object";
        return 0;
    }
    if (mxf_event_required_signers(c->scratch, j, rv, &servers, why) != APR_SUCCESS) {
        return 0;
    }
    for (i = 0; i < servers->nelts; i++) {
        const char *server = APR_ARRAY_IDX(servers, i, const char *), *key_id;
        const json_t *mine = json_object_get(sigs, server);
        json_t *sig;
        int ed25519 = 0, known = 0;

        if (!json_is_object(mine)) {
            *why = apr_psprintf(c->scratch, "not signed by %s, which must sign it", server);
            return 0;
        }
        json_object_foreach((json_t *)mine, key_id, sig) {
            unsigned char pk[MXF_ED25519_PK_BYTES];
            sig_check_t *sc;
            apr_status_t st;

            if (!mxf_id_key_id_is_ed25519(key_id)) {
                continue;               /* algorithm not understood: skipped */
            }
            ed25519++;
            if (!json_is_string(sig)) {
                *why = apr_psprintf(c->scratch, "signature %s of %s is not a string",
                                    key_id, server);
                return 0;
            }
            st = mxf_keystore_lookup(c->im->keys, server, key_id, e->ts,
                                     rv->enforce_key_validity, pk);
            if (st != APR_SUCCESS) {
                continue;               /* unknown or expired key */
            }
            known++;
            if (!checks) {
                checks = apr_array_make(c->scratch, 2, sizeof(sig_check_t));
            }
            sc = apr_array_push(checks);
            if (mxf_b64_decode_exact(json_string_value(sig), json_string_length(sig),
                                     MXF_B64_ANY, sc->sig, sizeof(sc->sig))
                != APR_SUCCESS) {
                *why = apr_psprintf(c->scratch, "signature %s of %s does not verify: "
                                    "signature is not base64 of 64 bytes", key_id, server);
                return 0;
            }
            memcpy(sc->pk, pk, sizeof(pk));
            sc->server = server;
            sc->key_id = key_id;
        }
        if (ed25519 == 0) {
            *why = apr_psprintf(c->scratch, "no ed25519 signature of %s, which must sign it",
                                server);
            return 0;
        }
        if (known == 0) {
            *verified = 0;
            if (c->im->require_signatures) {
                *why = apr_psprintf(c->scratch, "cannot check the signature of %s: its key "
                                    "is not known (--keys FILE)", server);
                return 0;
            }
        }
    }
    if (checks) {
        /* Verified later, alongside the writing (verify_event()). */
        e->n_sigs = checks->nelts;
        e->sigs = apr_pmemdup(c->pool, checks->elts, sizeof(sig_check_t) * (apr_size_t)e->n_sigs);
        for (i = 0; i < e->n_sigs; i++) {
            e->sigs[i].server = apr_pstrdup(c->pool, e->sigs[i].server);
            e->sigs[i].key_id = apr_pstrdup(c->pool, e->sigs[i].key_id);
        }
        e->signed_bytes = bytes;        /* check_line() keeps them */
        e->signed_len = len;
    }
    return 1;
}

/*
 * End of the JSON value at @a i of canonical JSON @a t (our encoder's: no
 * white space), or 0 if it runs past @a n.
 */
static apr_size_t skip_value(const char *t, apr_size_t i, apr_size_t n)
{
    int depth = 0;

    while (i < n) {
        switch (t[i++]) {
        case '"':
            while (i < n && t[i] != '"') {
                i += t[i] == '\\' ? 2 : 1;
            }
            if (i >= n) {
                return 0;
            }
            i++;                        /* past the closing quote */
            break;
        case '{':
        case '[':
            depth++;
            continue;
        case '}':
        case ']':
            depth--;
            break;
        case ':':
        case ',':
            continue;                   /* between members or elements */
        default:
            while (i < n && t[i] != ',' && t[i] != '}' && t[i] != ']') {
                i++;                    /* the rest of a number or literal */
            }
            break;
        }
        if (depth <= 0) {
            return depth == 0 ? i : 0;
        }
    }
    return 0;
}

/*
 * The redacted form from the signed bytes @a sb (the canonical JSON of the
 * redacted event less its signatures) and the canonical JSON @a sigs of its
 * signatures: the member "signatures" goes in where canonical JSON's key
 * order puts it. Sets e->redacted_pre and the cut that gives @a sb back;
 * 0 if @a sb is not as expected (the caller encodes the whole form).
 */
static int splice_signatures(apr_pool_t *p, ev_t *e, const char *sb, apr_size_t n,
                             const char *sigs, apr_size_t sigs_len)
{
    static const char key[] = "\"signatures\":";
    apr_size_t i = 1, at, klen = sizeof(key) - 1;
    char *out;
    int before;

    if (n < 2 || sb[0] != '{' || sb[n - 1] != '}') {
        return 0;
    }
    for (;;) {
        apr_size_t k;
        if (i == n - 1) {               /* the end: after the last member */
            at = i;
            before = 0;
            break;
        }
        if (sb[i] != '"') {
            return 0;
        }
        for (k = i + 1; k < n && sb[k] != '"' && sb[k] != '\\'; k++) {
        }
        if (k >= n || sb[k] != '"' || k + 1 >= n || sb[k + 1] != ':') {
            return 0;                   /* escapes in a key: not ours to judge */
        }
        {
            apr_size_t kl = k - (i + 1);
            int c = memcmp(sb + i + 1, "signatures", kl < 10 ? kl : 10);
            if (c > 0 || (c == 0 && kl > 10)) {
                at = i;                 /* before the first key after "signatures" */
                before = 1;
                break;
            }
            if (c == 0 && kl == 10) {
                return 0;               /* already there */
            }
        }
        if ((i = skip_value(sb, k + 2, n - 1)) == 0) {
            return 0;
        }
        if (sb[i] == ',') {
            i++;
        }
        else if (i != n - 1) {
            return 0;
        }
    }
    /* Inserted: ["," when after a member] "signatures":S ["," when before one]. */
    e->sig_cut_len = klen + sigs_len + (at > 1 && !before) + before;
    out = apr_palloc(p, n + e->sig_cut_len + 1);
    memcpy(out, sb, at);
    i = at;
    if (at > 1 && !before) {
        out[i++] = ',';
    }
    memcpy(out + i, key, klen);
    memcpy(out + i + klen, sigs, sigs_len);
    i += klen + sigs_len;
    if (before) {
        out[i++] = ',';
    }
    memcpy(out + i, sb + at, n - at);
    out[n + e->sig_cut_len] = '\0';
    e->redacted_pre = out;
    e->sig_cut = at;
    return 1;
}

/*
 * Keeps what @a e's signatures cover. The redacted form is those bytes
 * with the signatures added: where there is one, the signed bytes are
 * kept as the part of it to leave out (checked here to give exactly the
 * signed bytes back), not a second copy of the event.
 */
static void keep_signed_bytes(ev_t *e, apr_pool_t *p)
{
    const char *red = e->redacted_pre, *sb = e->signed_bytes;
    apr_size_t n = e->signed_len, red_len = red ? strlen(red) : 0, pre = 0;

    if (red && red_len > n) {
        while (pre < n && red[pre] == sb[pre]) {
            pre++;
        }
        if (memcmp(red + pre + (red_len - n), sb + pre, n - pre) == 0) {
            e->sig_cut = pre;
            e->sig_cut_len = red_len - n;
            e->signed_bytes = NULL;
            return;
        }
    }
    e->signed_bytes = apr_pmemdup(p, sb, n);
}

/* Whether a string anywhere in @a v holds U+0000. */
static int has_nul(const json_t *v)
{
    const char *key;
    json_t *x;
    size_t i;

    if (json_is_string(v)) {
        return strlen(json_string_value(v)) != json_string_length(v);
    }
    if (json_is_array(v)) {
        json_array_foreach((json_t *)v, i, x) {
            if (has_nul(x)) {
                return 1;
            }
        }
    }
    else if (json_is_object(v)) {
        json_object_foreach((json_t *)v, key, x) {
            if (has_nul(x)) {
                return 1;
            }
        }
    }
    return 0;
}

/*
 * Whether @a j holds U+0000 where the importer reads strings as C strings
 * (and a NUL would cut them short): a top-level value, or anything in a
 * state event or a redaction (whose content the authorization rules and
 * the state read). The content of other events is only hashed and served.
 */
static const char *nul_where_read(const json_t *j)
{
    const char *key, *type = jstr(j, "type");
    json_t *x;

    if (json_object_get(j, "state_key") || (type && !strcmp(type, "m.room.redaction"))) {
        return has_nul(j) ? "U+0000 in a string of a state event or a redaction" : NULL;
    }
    json_object_foreach((json_t *)j, key, x) {
        if (strcmp(key, "content") != 0 && strcmp(key, "unsigned") != 0 && has_nul(x)) {
            return "U+0000 in a string outside the event's content";
        }
    }
    return NULL;
}

/*
 * Takes "event_id" off a PDU of a room version whose event IDs are hashes
 * (3 and later). Such PDUs must not carry one, but dumps of rooms often add
 * it, as other tools do, and a receiving server strips it before hashing;
 * the caller accepts the PDU when the ID it carried is the one computed
 * without it. Returns 1 if it was there, with its value (NULL if not a
 * string) in *carried.
 */
static int take_event_id(apr_pool_t *tmp, json_t *j, const char **carried)
{
    json_t *v = json_object_get(j, "event_id");

    if (v == NULL) {
        return 0;
    }
    *carried = json_is_string(v) ? apr_pstrdup(tmp, json_string_value(v)) : NULL;
    json_object_del(j, "event_id");
    return 1;
}

/*
 * Takes off what a PDU carries that is not shared over federation, as the
 * reference homeserver does on receipt: the top-level "age_ts", "outlier"
 * and "destinations" old servers added after hashing (no hash or signature
 * covers them), and in "unsigned" everything but an m.room.member's
 * stripped room state ("invite_room_state", "knock_room_state"). Dumps of
 * rooms carry there the sending client's transaction ID, copies of earlier
 * state ("prev_content", "replaces_state") that would outlive its
 * redaction or history visibility, a redaction with its reason, and an
 * "age" that would go out stale. 1 when anything was taken off.
 */
static int take_local_values(json_t *j, const char *type)
{
    static const char *const top[] = { "age_ts", "outlier", "destinations", NULL };
    json_t *u = json_object_get(j, "unsigned"), *v;
    const char *key;
    void *next;
    int taken = 0, i;

    for (i = 0; top[i]; i++) {
        if (json_object_get(j, top[i])) {
            json_object_del(j, top[i]);
            taken = 1;
        }
    }
    if (u == NULL) {
        return taken;
    }
    if (json_is_object(u) && !strcmp(type, "m.room.member")) {
        json_object_foreach_safe(u, next, key, v) {
            if (strcmp(key, "invite_room_state") && strcmp(key, "knock_room_state")) {
                json_object_del(u, key);
                taken = 1;
            }
        }
        if (json_object_size(u) > 0) {
            return taken;
        }
    }
    json_object_del(j, "unsigned");
    return 1;
}

/*
 * Parses and checks one line (any thread). NULL with *why (in the
 * checker's scratch pool) when it cannot be imported.
 */
static ev_t *check_line(checker_t *c, const line_t *l, const char **why)
{
    importer_t *im = c->im;
    apr_pool_t *p = c->pool, *tmp = c->scratch;
    ev_t *e;
    const char *room_id, *s, *bytes;
    json_t *j, *ref, *checked;
    room_t *r;
    apr_size_t len;
    apr_status_t rv;
    int verified, has_carried = 0, had_local, dropped_unsigned = 0;
    const char *carried = NULL;

    *why = NULL;
    rv = mxf_json_parse(tmp, l->text, l->len, PDU_PARSE, &j, why);
    if (rv == APR_ERANGE
        && mxf_pdu_drop_member(tmp, l->text, l->len, "unsigned", &bytes, &len) == APR_SUCCESS
        && mxf_json_parse(tmp, bytes, len, PDU_PARSE, &j, &s) == APR_SUCCESS) {
        /* Refused only for what its "unsigned" carried, which is taken off anyway. */
        dropped_unsigned = 1;
    }
    else if (rv != APR_SUCCESS) {
        *why = rv == APR_ERANGE ? *why : apr_pstrcat(tmp, "not a JSON object: ", *why, NULL);
        return NULL;
    }
    if ((*why = nul_where_read(j)) != NULL) {
        return NULL;
    }
    if (!(s = jstr(j, "type"))) {
        *why = "no \"type\"";
        return NULL;
    }
    room_id = jstr(j, "room_id");
    if (!room_id && !strcmp(s, "m.room.create")) {
        /* v12: the create event carries no room ID; it is its hash. */
        apr_hash_index_t *hi;
        has_carried = take_event_id(tmp, j, &carried);
        for (hi = apr_hash_first(tmp, im->rooms); hi; hi = apr_hash_next(hi)) {
            room_t *cand = apr_hash_this_val(hi);
            if (cand->rv->room_id_is_create_hash) {
                const char *derived = mxf_event_room_id_from_create(tmp, j, cand->rv, why);
                if (derived && !strcmp(derived, cand->room_id)) {
                    room_id = cand->room_id;
                    break;
                }
            }
        }
    }
    if (!room_id) {
        *why = "no \"room_id\"";
        return NULL;
    }
    if ((r = room_get(im, room_id)) == NULL) {
        *why = apr_psprintf(tmp, "room %s has no m.room.create event in the input or the "
                            "database", room_id);
        return NULL;
    }
    if (r->rv->event_id_format != MXF_EVID_CARRIED && !has_carried) {
        has_carried = take_event_id(tmp, j, &carried);
    }
    had_local = take_local_values(j, s) || dropped_unsigned;
    /*
     * The event as its receivers check it: without "unsigned", which is not
     * signed, which other servers strip (or reduce to a few known keys)
     * before the JSON and size checks, and which may carry copies of other
     * events (prev_content, redacted_because) as their senders wrote them.
     */
    checked = j;
    if (json_object_get(j, "unsigned")) {
        if ((checked = mxf_json_own(tmp, json_copy(j))) == NULL) {
            *why = "out of memory";
            return NULL;
        }
        json_object_del(checked, "unsigned");
    }
    if (r->rv->strict_canonical_json && mxf_json_check_ints(checked, why) != APR_SUCCESS) {
        *why = apr_psprintf(tmp, "not canonical JSON for room version %s: %s", r->rv->id, *why);
        return NULL;
    }
    /*
     * Canonical JSON is never longer than the JSON text it was parsed from
     * when that has no floats (strict versions have none: checked above):
     * a line within the size limit needs no encoding to show it.
     */
    if (mxf_event_check_limits(tmp, checked, r->rv, MXF_EVENT_LIMITS_NO_EDGE_COUNTS
                               | (r->rv->strict_canonical_json && l->len <= MXF_EVENT_MAX_BYTES
                                  ? MXF_EVENT_LIMITS_SIZE_KNOWN : 0u), why)
        != APR_SUCCESS) {
        return NULL;
    }
    /*
     * The redacted form less signatures: the reference hash's input and
     * the bytes the signatures cover, encoded once for both.
     */
    if ((ref = mxf_event_reference_input(tmp, j, r->rv)) == NULL
        || (bytes = mxf_canonical_encode_ex(tmp, ref, canon_flags(r->rv), &len, why)) == NULL) {
        *why = apr_pstrcat(tmp, "cannot encode the redacted event: ",
                           *why ? *why : "not an object", NULL);
        return NULL;
    }

    e = apr_pcalloc(p, sizeof(*e));
    e->line = l->no;
    e->pdu = l->text;
    e->pdu_len = l->len;
    if (has_carried || had_local) {
        /* Stored, served and exported as the PDU should have been sent. */
        if ((e->pdu = mxf_json_dump(p, j, &e->pdu_len)) == NULL) {
            *why = "cannot encode the PDU without what it should not carry";
            return NULL;
        }
        e->event_id_taken = has_carried != 0;
        e->local_taken = had_local != 0;
    }
    e->room = r;
    e->type = apr_pstrdup(p, s);
    if (r->rv->event_id_format == MXF_EVID_CARRIED) {
        if ((s = mxf_event_id_compute(tmp, j, r->rv, why)) == NULL) {
            *why = apr_pstrcat(tmp, "event ID: ", *why, NULL);
            return NULL;
        }
    }
    else {
        unsigned char h[MXF_SHA256_BYTES];
        mxf_sha256(h, bytes, len);
        s = apr_pstrcat(tmp, "$", mxf_b64_encode(tmp, h, sizeof(h),
                                                 r->rv->event_id_format == MXF_EVID_HASH_STD
                                                 ? MXF_B64_STANDARD : MXF_B64_URLSAFE), NULL);
        if (has_carried && (carried == NULL || strcmp(carried, s) != 0)) {
            *why = apr_psprintf(tmp, "event ID: the PDU carries \"event_id\" %s, but its "
                                "event ID in room version %s, the reference hash of the PDU "
                                "without it, is %s", carried ? carried : "(not a string)",
                                r->rv->id, s);
            return NULL;
        }
    }
    e->event_id = apr_pstrdup(p, s);
    if (!extract_fields(p, tmp, j, e, why)) {
        return NULL;
    }
    rv = mxf_event_check_content_hash(tmp, j, r->rv, why);
    if (rv == APR_EMISMATCH) {
        processed_redacted(p, tmp, j, e);  /* and served redacted, as the spec says */
    }
    else if (rv != APR_SUCCESS) {
        return NULL;
    }
    if (!check_signatures(c, j, r->rv, e, bytes, len, &verified, why)) {
        *why = apr_psprintf(tmp, "signature check failed for %s: %s", e->event_id, *why);
        return NULL;
    }
    e->sigs_verified = verified != 0;
    if (r->may_restrict || e->hash_mismatch) {
        /*
         * The redacted form is the reference input with the signatures: the
         * signed bytes with the signatures' canonical JSON put in, or else
         * encoded whole (in scratch space, kept at its size: there are many).
         */
        json_t *sigs = json_object_get(j, "signatures");
        apr_size_t slen;
        const char *stext = mxf_canonical_encode_ex(tmp, sigs, canon_flags(r->rv), &slen, why);
        if (stext && splice_signatures(p, e, bytes, len, stext, slen)) {
            if (e->n_sigs) {
                e->signed_bytes = NULL;     /* the cut gives them back */
            }
            return e;
        }
        json_object_set(ref, "signatures", sigs);
        if (!(s = mxf_canonical_encode_ex(tmp, ref, canon_flags(r->rv), &len, why))) {
            *why = apr_pstrcat(tmp, "cannot encode the redacted event: ", *why, NULL);
            return NULL;
        }
        e->redacted_pre = apr_pstrmemdup(p, s, len);
    }
    if (e->n_sigs) {
        keep_signed_bytes(e, p);
    }
    return e;
}

/* Checks chunks of lines until none are left; the main thread reports progress. */
static void checker_run(checker_t *c, int report)
{
    importer_t *im = c->im;
    long n = im->lines->nelts;

    for (;;) {
        long start = atomic_fetch_add(&im->next_line, CHECK_CHUNK), i;
        if (start >= n) {
            break;
        }
        for (i = start; i < start + CHECK_CHUNK && i < n; i++) {
            const char *why = NULL;
            im->checked[i] = check_line(c, &APR_ARRAY_IDX(im->lines, i, line_t), &why);
            if (!im->checked[i]) {
                im->line_errors[i] = apr_pstrdup(c->pool, why ? why : "cannot be imported");
            }
            apr_pool_clear(c->scratch);
        }
        atomic_fetch_add(&im->lines_done, i - start);
        if (report && (start / CHECK_CHUNK) % 64 == 0) {
            fprintf(stderr, "\rmatrix-fed: import: checked %ld/%ld lines",
                    atomic_load(&im->lines_done), n);
        }
    }
}

static void *checker_main(void *data)
{
    checker_run(data, 0);
    return NULL;
}

/* ------------------------------------------------------------------ signatures */

/*
 * The Ed25519 verifications, most of the checking's time, run after the
 * lines are checked: alongside ordering and writing, which do not depend
 * on their outcome (which keys are known, and so signatures_verified, is
 * decided while checking). A signature that does not verify fails the
 * import before it commits, naming the line.
 */
static void verify_event(checker_t *c, ev_t *e)
{
    const unsigned char *bytes = (const unsigned char *)e->signed_bytes;
    int k;

    if (e->n_sigs == 0) {
        return;                         /* no key known: nothing to verify */
    }
    if (!bytes) {
        /* Cut out of the redacted form (keep_signed_bytes()). */
        if (c->buf_cap < e->signed_len) {
            c->buf_cap = e->signed_len * 2;
            c->buf = apr_palloc(c->pool, c->buf_cap);
        }
        memcpy(c->buf, e->redacted_pre, e->sig_cut);
        memcpy(c->buf + e->sig_cut, e->redacted_pre + e->sig_cut + e->sig_cut_len,
               e->signed_len - e->sig_cut);
        bytes = c->buf;
    }
    for (k = 0; k < e->n_sigs; k++) {
        const sig_check_t *sc = &e->sigs[k];
        if (crypto_sign_verify_detached(sc->sig, bytes, e->signed_len, sc->pk) != 0) {
            e->sig_error = apr_psprintf(c->pool, "signature %s of %s does not verify: "
                                        "signature does not verify", sc->key_id, sc->server);
            atomic_store(&c->im->sig_failed, 1);
            return;
        }
    }
}

static void verifier_run(checker_t *c)
{
    importer_t *im = c->im;
    double c0 = thread_cpu_now();

    for (;;) {
        long start = atomic_fetch_add(&im->next_verify, CHECK_CHUNK), i;
        if (start >= im->n_verify) {
            break;
        }
        for (i = start; i < start + CHECK_CHUNK && i < im->n_verify; i++) {
            if (im->verify_list[i]) {
                verify_event(c, im->verify_list[i]);
            }
        }
    }
    c->cpu += thread_cpu_now() - c0;
}

static void *verifier_main(void *data)
{
    verifier_run(data);
    return NULL;
}

/* Starts verifying the signatures of @a n events (NULL entries skipped). */
static int verify_start(importer_t *im, ev_t **list, long n)
{
    int t;

    im->verify_list = list;
    im->n_verify = n;
    atomic_store(&im->next_verify, 0);
    im->n_verifiers = im->threads;
    im->verifiers = apr_pcalloc(im->p, sizeof(checker_t) * (apr_size_t)im->n_verifiers);
    for (t = 0; t < im->n_verifiers; t++) {
        checker_t *c = &im->verifiers[t];
        apr_allocator_t *alloc;
        c->im = im;
        /* Each thread's pool has an allocator of its own. */
        if (apr_allocator_create(&alloc) != APR_SUCCESS
            || apr_pool_create_ex(&c->pool, im->p, NULL, alloc) != APR_SUCCESS) {
            mxf_cmd_error("out of memory");
            im->verifiers = NULL;       /* no thread started yet */
            return 0;
        }
        apr_allocator_owner_set(alloc, c->pool);
    }
    for (t = 0; t < im->n_verifiers; t++) {
        checker_t *c = &im->verifiers[t];
        /* One that does not start leaves its share to verify_finish(). */
        c->started = pthread_create(&c->tid, NULL, verifier_main, c) == 0;
    }
    return 1;
}

/*
 * Waits for the verifications (doing what is left in this thread) and
 * reports (if @a report) the lines whose signatures do not verify. 0 if
 * there are any.
 */
static int verify_finish(importer_t *im, int report)
{
    long i;
    int t;

    if (!im->verifiers) {
        return 1;
    }
    for (t = 0; t < im->n_verifiers; t++) {
        if (im->verifiers[t].started) {
            pthread_join(im->verifiers[t].tid, NULL);
            im->verifiers[t].started = 0;
        }
    }
    verifier_run(&im->verifiers[0]);    /* none left, unless a thread did not start */
    for (t = 0; t < im->n_verifiers; t++) {
        im->c_verify += im->verifiers[t].cpu;
    }
    im->verifiers = NULL;
    if (!atomic_load(&im->sig_failed)) {
        return 1;
    }
    for (i = 0; report && i < im->n_verify; i++) {
        ev_t *e = im->verify_list[i];
        if (e && e->sig_error) {
            bad_line(im, e->line, "signature check failed for %s: %s", e->event_id,
                     e->sig_error);
        }
    }
    return 0;
}

/*
 * A /send_join answer gives the state before its "event" (the resolved
 * state the joining server starts from): kept on that event, for when the
 * state before it cannot be computed (its prev_events are not known).
 * The events of answers that are snapshots rather than history - /state,
 * /event_auth, and /send_join's "state" and "auth_chain" - are outliers,
 * as servers store them: never forward extremities, walked or looked up by
 * time, unless the input also has them as history (or a later import does).
 */
static void given_states(importer_t *im)
{
    apr_hash_t *joins = apr_hash_make(im->p), *regular;
    int i, n = im->lines->nelts, snapshots = 0;

    for (i = 0; i < n; i++) {
        const line_t *l = &APR_ARRAY_IDX(im->lines, i, line_t);
        snapshots += l->snapshot;
        if (l->role == MXF_PDU_EVENT && im->checked[i]) {
            ev_t *e = apr_hash_get(im->events, im->checked[i]->event_id, APR_HASH_KEY_STRING);
            e->given_state = apr_array_make(im->p, 64, sizeof(const char *));
            apr_hash_set(joins, &l->response, sizeof(l->response), e);
        }
    }
    if (!snapshots) {
        return;                         /* JSON lines, transactions, backfill: all history */
    }
    regular = apr_hash_make(im->p);
    for (i = 0; i < n; i++) {
        const line_t *l = &APR_ARRAY_IDX(im->lines, i, line_t);
        const char *id = im->checked[i] ? im->checked[i]->event_id : NULL;
        ev_t *e;
        if (!id) {
            continue;
        }
        if (l->role == MXF_PDU_STATE
            && (e = apr_hash_get(joins, &l->response, sizeof(l->response))) != NULL) {
            APR_ARRAY_PUSH(e->given_state, const char *) = id;
        }
        if (l->snapshot && l->role != MXF_PDU_EVENT) {
            if (!apr_hash_get(regular, id, APR_HASH_KEY_STRING)) {
                ((ev_t *)apr_hash_get(im->events, id, APR_HASH_KEY_STRING))->outlier = 1;
            }
        }
        else {
            apr_hash_set(regular, id, APR_HASH_KEY_STRING, id);
            ((ev_t *)apr_hash_get(im->events, id, APR_HASH_KEY_STRING))->outlier = 0;
        }
    }
}

/*
 * Checks every line in im->threads threads (the calling thread is one),
 * then reports bad lines in input order and collects the events.
 */
static int check_all(importer_t *im)
{
    int nthreads = im->threads, t, i;
    checker_t *cs = apr_pcalloc(im->p, sizeof(*cs) * (apr_size_t)nthreads);
    long n = im->lines->nelts;

    im->checked = apr_pcalloc(im->p, sizeof(ev_t *) * (apr_size_t)(n + 1));
    im->line_errors = apr_pcalloc(im->p, sizeof(const char *) * (apr_size_t)(n + 1));
    atomic_store(&im->next_line, 0);
    atomic_store(&im->lines_done, 0);
    /* jansson's hash seed is set once, before any thread makes an object. */
    json_object_seed(0);
    for (t = 0; t < nthreads; t++) {
        apr_allocator_t *alloc;
        cs[t].im = im;
        /* Each thread's pools have an allocator of their own. */
        if (apr_allocator_create(&alloc) != APR_SUCCESS
            || apr_pool_create_ex(&cs[t].pool, im->p, NULL, alloc) != APR_SUCCESS) {
            mxf_cmd_error("out of memory");
            return 0;
        }
        apr_allocator_owner_set(alloc, cs[t].pool);
        apr_pool_create(&cs[t].scratch, cs[t].pool);
    }
    for (t = 1; t < nthreads; t++) {
        cs[t].started = pthread_create(&cs[t].tid, NULL, checker_main, &cs[t]) == 0;
    }
    checker_run(&cs[0], im->progress);   /* the calling thread checks too */
    for (t = 1; t < nthreads; t++) {
        if (cs[t].started) {
            pthread_join(cs[t].tid, NULL);
        }
    }
    if (im->progress) {
        fprintf(stderr, "\rmatrix-fed: import: checked %ld lines                \n", n);
    }
    for (t = 0; t < nthreads; t++) {
        apr_pool_destroy(cs[t].scratch);
    }
    for (i = 0; i < n && !im->line_errors[i]; i++) {
    }
    if (i < n) {
        /* The import fails: its signatures are verified now, so that every bad line is named. */
        if (!verify_start(im, im->checked, n)) {
            return 0;
        }
        verify_finish(im, 0);           /* reported below, with the other lines */
        for (i = 0; i < n; i++) {
            if (im->checked[i] && im->checked[i]->sig_error) {
                im->line_errors[i] = apr_psprintf(im->p, "signature check failed for %s: %s",
                                                  im->checked[i]->event_id,
                                                  im->checked[i]->sig_error);
                im->checked[i] = NULL;
            }
        }
    }

    for (i = 0; i < n; i++) {
        const line_t *l = &APR_ARRAY_IDX(im->lines, i, line_t);
        ev_t *e = im->checked[i], *seen;
        if (!e) {
            bad_line(im, l->no, "%s", im->line_errors[i]);
            continue;
        }
        if ((seen = apr_hash_get(im->events, e->event_id, APR_HASH_KEY_STRING)) != NULL) {
            if (seen->pdu_len != e->pdu_len || memcmp(seen->pdu, e->pdu, e->pdu_len) != 0) {
                /*
                 * Another copy of the event (its ID and signatures cover only
                 * the redacted form and unsigned is not covered at all), as
                 * servers pass events on: like a homeserver, keep one - the
                 * one whose content hash matches, else the first.
                 */
                if (seen->room != e->room) {
                    im->n_id_clash++;   /* v1/v2: IDs chosen by servers (see the summary) */
                }
                else {
                    if (seen->hash_mismatch && !e->hash_mismatch) {
                        *seen = *e;
                    }
                    im->n_dup_other++;
                }
            }
            im->n_dup++;
            continue;
        }
        apr_hash_set(im->events, e->event_id, APR_HASH_KEY_STRING, e);
        APR_ARRAY_PUSH(im->order, ev_t *) = e;
        im->n_event_id_taken += e->event_id_taken;
        im->n_local_taken += e->local_taken;
    }
    if (im->errors == 0) {
        given_states(im);
    }
    return im->errors == 0;
}

/* ------------------------------------------------------------------ known events */

static ev_t *ev_get(importer_t *im, const char *id)
{
    return apr_hash_get(im->events, id, APR_HASH_KEY_STRING);
}

/* Whether @a e is an event of the input (else one loaded from the database). */
static int in_input(const importer_t *im, const ev_t *e)
{
    return e->line >= 1 && e->line <= im->n_lines;
}

/*
 * An event of the input that the database already has: from here on it is
 * read as stored (ev_json() reads its stored PDU and redaction status when
 * it is needed), not as the input gives it - the stored copy is the one
 * the events after it were judged by and the one served, and an input copy
 * may be another (altered in transit, or not), or miss a redaction that an
 * earlier import applied. Its type, sender, state_key, prev_events and
 * auth_events are those of the stored copy (from room version 3 its event
 * ID covers them; in versions 1 and 2 an event of another room given the
 * same ID keeps the input copy's, and the stored one's count only through
 * the database); what comes from its content is forgotten. Its input copy
 * stays for the signature verification, which may be running.
 */
static void forget_input_copy(ev_t *e)
{
    e->pdu = NULL;
    e->pdu_len = 0;
    e->json = NULL;
    e->hash_mismatch = 0;
    e->pruned = 0;
    e->membership = NULL;
    e->redacts = NULL;
    e->content = NULL;
}

/*
 * A stored event's place in an order that follows auth edges (ev_t.seq,
 * sql/022): its number shifted by SEQ_SHIFT, or the row an import that
 * completed it wrote (assign_numbers()); from mxf_events e and mxf_event_seq s.
 */
#define SEQ_SHIFT 24
#define STORED_SEQ "coalesce(s.seq, e.event_nid << " APR_STRINGIFY(SEQ_SHIFT) ")"

/*
 * Whether the m.room.redaction that redacted stored event e (its
 * redacted_because) counts for the authorization rules: its own state is
 * known (mark_pruned()). A column, and the join it reads.
 */
#define REDACTION_STATE_KNOWN "coalesce(re.state_before IS NOT NULL, false)"
#define JOIN_REDACTION " LEFT JOIN mxf_events re ON re.event_id = e.redacted_because" \
                       " AND re.room_nid = e.room_nid"

/*
 * The columns every lookup of a stored event reads, in this order, from
 * mxf_events e, mxf_rooms r, mxf_auth_chain_pos c and mxf_event_seq s.
 */
#define KNOWN_COLUMNS "e.event_nid, r.room_id, e.rejected_reason IS NOT NULL," \
                      " coalesce(e.state_after, 0), e.depth, coalesce(c.chain_id, 0)," \
                      " coalesce(c.seq, 0), " STORED_SEQ

/*
 * The stored event @a id, from row @a row of @a res whose KNOWN_COLUMNS
 * start at column @a col, as a known event of this import (without its PDU).
 */
static ev_t *known_from_row(importer_t *im, const char *id, const PGresult *res, int row,
                            int col)
{
    ev_t *e = apr_pcalloc(im->p, sizeof(*e));

    e->event_id = apr_pstrdup(im->p, id);
    e->known = 1;
    e->nid = apr_atoi64(PQgetvalue(res, row, col));
    e->room = room_get(im, PQgetvalue(res, row, col + 1));
    e->rejected = PQgetvalue(res, row, col + 2)[0] == 't';
    e->db_state_after = apr_atoi64(PQgetvalue(res, row, col + 3));
    e->depth = apr_atoi64(PQgetvalue(res, row, col + 4));
    e->chain_id = apr_atoi64(PQgetvalue(res, row, col + 5));
    e->chain_seq = atoi(PQgetvalue(res, row, col + 6));
    e->seq = apr_atoi64(PQgetvalue(res, row, col + 7));
    apr_hash_set(im->events, e->event_id, APR_HASH_KEY_STRING, e);
    return e;
}

/*
 * Marks the events the database already has (forgetting the input's copy
 * of those it gives again), and loads the ones the input refers to as
 * prev_events or auth_events without carrying them (parents at the edge
 * of this import, auth events imported before). Leaves their IDs in the
 * temporary table mxf_import_ids.
 */
static int load_known(importer_t *im)
{
    apr_hash_t *missing = apr_hash_make(im->p);
    apr_array_header_t *ids = apr_array_make(im->p, im->order->nelts + 16, sizeof(const char *));
    apr_array_header_t *history = apr_array_make(im->p, 16, sizeof(const char *));
    mxf_copy_t verified, arrivals;
    PGresult *res;
    int i, k, empty;

    if (!mxf_pg_exec(im->conn, "CREATE TEMP TABLE mxf_import_ids (event_id text) ON COMMIT DROP")) {
        return 0;
    }
    /* An empty database knows none of them (this import holds the import lock). */
    res = PQexec(im->conn, "SELECT NOT EXISTS (SELECT 1 FROM mxf_events)");
    if (!mxf_pg_ok(res, "looking up known events")) {
        return 0;
    }
    empty = PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    if (empty) {
        return 1;
    }
    for (i = 0; i < im->order->nelts; i++) {
        ev_t *e = APR_ARRAY_IDX(im->order, i, ev_t *);
        APR_ARRAY_PUSH(ids, const char *) = e->event_id;
        for (k = 0; k < e->n_prevs + e->n_auths; k++) {
            const char *id = k < e->n_prevs ? e->prevs[k] : e->auths[k - e->n_prevs];
            if (!ev_get(im, id) && !apr_hash_get(missing, id, APR_HASH_KEY_STRING)) {
                apr_hash_set(missing, id, APR_HASH_KEY_STRING, id);
                APR_ARRAY_PUSH(ids, const char *) = id;
            }
        }
    }
    if (!mxf_pg_copy_strings(im->conn, "COPY mxf_import_ids FROM STDIN", ids)
        || !mxf_pg_exec(im->conn, "ANALYZE mxf_import_ids")) {
        return 0;
    }
    res = PQexec(im->conn,
                 "SELECT e.event_id, e.event_nid, r.room_id, coalesce(e.state_after, 0),"
                 "       e.depth, e.rejected_reason IS NOT NULL, coalesce(c.chain_id, 0),"
                 "       coalesce(c.seq, 0), e.outlier,"
                 "       coalesce(e.redacted_because = 'content-hash', false),"
                 "       e.signatures_verified, " STORED_SEQ
                 "  FROM mxf_import_ids i JOIN mxf_events e USING (event_id)"
                 "  JOIN mxf_rooms r USING (room_nid)"
                 "  LEFT JOIN mxf_auth_chain_pos c ON c.event_nid = e.event_nid"
                 "  LEFT JOIN mxf_event_seq s ON s.event_nid = e.event_nid");
    if (!mxf_pg_ok(res, "looking up known events")) {
        return 0;
    }
    mxf_copy_init(&verified, im->p, 1024);
    for (i = 0; i < PQntuples(res); i++) {
        const char *id = PQgetvalue(res, i, 0);
        ev_t *e = ev_get(im, id);
        if (!e) {
            e = apr_pcalloc(im->p, sizeof(*e));
            e->event_id = apr_pstrdup(im->p, id);
            apr_hash_set(im->events, e->event_id, APR_HASH_KEY_STRING, e);
        }
        else if (e->pdu && e->room != room_get(im, PQgetvalue(res, i, 2))) {
            im->n_id_clash++;           /* v1/v2: taken by an event of another room */
            forget_input_copy(e);
        }
        else if (e->pdu) {
            /* Given again. */
            if (!e->outlier && PQgetvalue(res, i, 8)[0] == 't') {
                /* An outlier of an earlier snapshot answer, given here as an
                 * event of the room's history: one no longer (below). */
                APR_ARRAY_PUSH(history, const char *) = e->event_id;
            }
            if (!e->hash_mismatch && PQgetvalue(res, i, 9)[0] == 't') {
                /*
                 * Stored as a copy altered in transit, given here with its
                 * matching content: the stored copy stays (it was processed
                 * redacted, and the events after it judged so); counted.
                 */
                im->n_altered_kept++;
            }
            if (e->sigs_verified && PQgetvalue(res, i, 10)[0] != 't') {
                /*
                 * Stored unverified (no key was known), its signatures
                 * verified now: the stored row says so (below) when it is
                 * the same PDU (equal as JSON). A signature that does not
                 * verify fails the import, and this with it.
                 */
                mxf_copy_str(&verified, e->event_id);
                mxf_copy_strn(&verified, e->pdu, e->pdu_len);
                mxf_copy_end(&verified);
            }
            forget_input_copy(e);
        }
        e->known = 1;
        e->nid = apr_atoi64(PQgetvalue(res, i, 1));
        e->room = room_get(im, PQgetvalue(res, i, 2));
        e->db_state_after = apr_atoi64(PQgetvalue(res, i, 3));
        e->depth = apr_atoi64(PQgetvalue(res, i, 4));
        e->rejected = PQgetvalue(res, i, 5)[0] == 't';
        e->chain_id = apr_atoi64(PQgetvalue(res, i, 6));
        e->chain_seq = atoi(PQgetvalue(res, i, 7));
        e->seq = apr_atoi64(PQgetvalue(res, i, 11));
    }
    PQclear(res);
    if (verified.rows > 0) {
        if (!mxf_pg_exec(im->conn, "CREATE TEMP TABLE mxf_import_verified (event_id text,"
                                   " pdu text) ON COMMIT DROP")
            || !mxf_pg_copy(im->conn, "COPY mxf_import_verified FROM STDIN", &verified)) {
            return 0;
        }
        /*
         * The same PDU, however written (key order, spacing, escapes, as
         * another server's encoder writes it): equal as JSON, unsigned
         * aside. A stored copy with other signatures stays unverified.
         */
        res = PQexec(im->conn, "UPDATE mxf_events e SET signatures_verified = true"
                               "  FROM mxf_import_verified v"
                               " WHERE e.event_id = v.event_id AND NOT e.signatures_verified"
                               "   AND (e.pdu::jsonb - 'unsigned') = (v.pdu::jsonb - 'unsigned')");
        if (!mxf_pg_ok(res, "marking stored events verified")) {
            return 0;
        }
        im->n_sig_now_verified = atol(PQcmdTuples(res));
        PQclear(res);
    }
    if (history->nelts == 0) {
        return 1;
    }
    /*
     * Events of the room's history from now on: those whose state is not
     * known get their place in this input (mxf_event_arrival), as the new
     * events whose state is not known do.
     */
    mxf_copy_init(&arrivals, im->p, 1024);
    for (i = 0; i < history->nelts; i++) {
        const ev_t *e = ev_get(im, APR_ARRAY_IDX(history, i, const char *));
        mxf_copy_str(&arrivals, e->event_id);
        mxf_copy_int(&arrivals, im->arrival_base + e->line);
        mxf_copy_end(&arrivals);
    }
    return mxf_pg_exec(im->conn, "CREATE TEMP TABLE mxf_import_history (event_id text,"
                                 " arrival bigint) ON COMMIT DROP")
           && mxf_pg_copy(im->conn, "COPY mxf_import_history FROM STDIN", &arrivals)
           && mxf_pg_exec(im->conn, "UPDATE mxf_events e SET outlier = false"
                                    "  FROM mxf_import_history h"
                                    " WHERE e.event_id = h.event_id")
           && mxf_pg_exec(im->conn, "INSERT INTO mxf_event_arrival (event_nid, arrival)"
                                    " SELECT e.event_nid, h.arrival"
                                    "   FROM mxf_import_history h JOIN mxf_events e USING (event_id)"
                                    "  WHERE e.state_before IS NULL"
                                    " ON CONFLICT (event_nid) DO NOTHING");
}

/*
 * The stored events that the refilled events @a ids cite as prev_events
 * or auth_events and that load_known() did not load (no input event cites
 * them): loaded as known events, so that a refilled event's state is
 * computed from its stored parents' states as a new event's is.
 */
static int load_refill_parents(importer_t *im, const apr_array_header_t *ids)
{
    apr_hash_t *seen = apr_hash_make(im->p);
    apr_array_header_t *want = apr_array_make(im->p, 16, sizeof(const char *));
    PGresult *res;
    int i, k;

    for (i = 0; i < ids->nelts; i++) {
        const ev_t *e = ev_get(im, APR_ARRAY_IDX(ids, i, const char *));
        for (k = 0; e && k < e->n_prevs + e->n_auths; k++) {
            const char *id = k < e->n_prevs ? e->prevs[k] : e->auths[k - e->n_prevs];
            if (!ev_get(im, id) && !apr_hash_get(seen, id, APR_HASH_KEY_STRING)) {
                apr_hash_set(seen, id, APR_HASH_KEY_STRING, id);
                APR_ARRAY_PUSH(want, const char *) = id;
            }
        }
    }
    if (want->nelts == 0) {
        return 1;
    }
    if (!mxf_pg_exec(im->conn, "CREATE TEMP TABLE mxf_import_parents (event_id text)"
                               " ON COMMIT DROP")
        || !mxf_pg_copy_strings(im->conn, "COPY mxf_import_parents FROM STDIN", want)) {
        return 0;
    }
    res = PQexec(im->conn, "SELECT e.event_id, " KNOWN_COLUMNS
                           "  FROM mxf_import_parents p JOIN mxf_events e USING (event_id)"
                           "  JOIN mxf_rooms r USING (room_nid)"
                           "  LEFT JOIN mxf_auth_chain_pos c USING (event_nid)"
                           "  LEFT JOIN mxf_event_seq s USING (event_nid)");
    if (!mxf_pg_ok(res, "looking up the stored parents of events of unknown state")) {
        return 0;
    }
    for (i = 0; i < PQntuples(res); i++) {
        known_from_row(im, PQgetvalue(res, i, 0), res, i, 1);
    }
    PQclear(res);
    return 1;
}

/*
 * Events of the database whose state was unknown (a prev_event was
 * missing) in the rooms where this import brings such a missing event:
 * they are ordered and their state computed with the new events, and
 * their rows updated. Each is read as stored, given again in the input or
 * not: its stored PDU, processed redacted when its content hash did not
 * match, read redacted by the auth checks when a redaction applied to it
 * (as ev_json() reads stored events); its stored PDU is not rewritten.
 * Their IDs join mxf_import_ids.
 */
static int load_refills(importer_t *im)
{
    apr_array_header_t *ids = apr_array_make(im->p, 16, sizeof(const char *));
    PGresult *rooms;
    int i, k;

    rooms = PQexec(im->conn,
                   "SELECT DISTINCT c.room_nid FROM mxf_event_edges x"
                   "  JOIN mxf_events c ON c.event_nid = x.event_nid"
                   "  JOIN mxf_import_ids i ON i.event_id = x.prev_id"
                   " WHERE x.prev_nid IS NULL AND c.state_before IS NULL AND NOT c.outlier");
    if (!mxf_pg_ok(rooms, "looking for events of unknown state")) {
        return 0;
    }
    for (k = 0; k < PQntuples(rooms); k++) {
        const char *params[1] = { PQgetvalue(rooms, k, 0) };
        PGresult *res = mxf_pg_query(im->conn,
                                     "SELECT e.event_nid, e.event_id, e.pdu, r.room_id,"
                                     "       e.redacted_pdu IS NOT NULL, e.redacted_because, "
                                     REDACTION_STATE_KNOWN ", coalesce(a.arrival, e.event_nid)"
                                     "  FROM mxf_events e JOIN mxf_rooms r USING (room_nid)"
                                     JOIN_REDACTION
                                     "  LEFT JOIN mxf_event_arrival a ON a.event_nid = e.event_nid"
                                     " WHERE e.room_nid = $1::bigint AND e.state_before IS NULL"
                                     "   AND NOT e.outlier"
                                     " ORDER BY e.event_nid", 1, params);
        if (!res) {
            PQclear(rooms);
            return 0;
        }
        for (i = 0; i < PQntuples(res); i++) {
            const char *id = PQgetvalue(res, i, 1), *why = NULL;
            ev_t *e = ev_get(im, id);
            room_t *r = room_get(im, PQgetvalue(res, i, 3));
            int from_input;
            json_t *j;

            if (!r) {
                continue;
            }
            /* Given again (then ordered already, and known: load_known()), or not. */
            from_input = e && in_input(im, e);
            if (!e) {
                e = apr_pcalloc(im->p, sizeof(*e));
                e->event_id = apr_pstrdup(im->p, id);
                apr_hash_set(im->events, e->event_id, APR_HASH_KEY_STRING, e);
            }
            e->room = r;
            e->pdu_len = (apr_size_t)PQgetlength(res, i, 2);
            e->pdu = apr_pstrmemdup(im->p, PQgetvalue(res, i, 2), e->pdu_len);
            e->json = NULL;
            e->state_key = e->membership = e->redacts = NULL;
            e->content = NULL;
            e->hash_mismatch = e->pruned = 0;
            if (mxf_json_parse(im->scratch, e->pdu, e->pdu_len, PDU_PARSE, &j, &why)
                    != APR_SUCCESS
                || !jstr(j, "type")
                || (e->type = apr_pstrdup(im->p, jstr(j, "type")),
                    !extract_fields(im->p, im->scratch, j, e, &why))) {
                mxf_cmd_error("stored event %s cannot be read again: %s", id,
                              why ? why : "no type");
                PQclear(res);
                PQclear(rooms);
                return 0;
            }
            if (!PQgetisnull(res, i, 5)) {
                if (!strcmp(PQgetvalue(res, i, 5), "content-hash")) {
                    processed_redacted(im->p, im->scratch, j, e);
                }
                else if (!is_create(j) && PQgetvalue(res, i, 6)[0] == 't') {
                    /* by a redaction of an earlier import whose state is known
                     * (one of unknown state is refilled too: mark_pruned()) */
                    e->pruned = 1;
                }
            }
            apr_pool_clear(im->scratch);
            e->known = 0;
            e->refill = 1;
            e->had_redacted = PQgetvalue(res, i, 4)[0] == 't';
            e->nid = apr_atoi64(PQgetvalue(res, i, 0));
            e->arrival = apr_atoi64(PQgetvalue(res, i, 7));
            im->n_refilled++;
            if (!from_input) {
                e->line = im->n_lines + im->n_refilled;
                APR_ARRAY_PUSH(im->order, ev_t *) = e;
            }
            APR_ARRAY_PUSH(ids, const char *) = e->event_id;
        }
        PQclear(res);
    }
    PQclear(rooms);
    return ids->nelts == 0
           || (mxf_pg_copy_strings(im->conn, "COPY mxf_import_ids FROM STDIN", ids)
               && load_refill_parents(im, ids));
}

static const char *server_of(const char *id)
{
    const char *colon = strchr(id, ':');
    return colon ? colon + 1 : "";
}

/*
 * Whether an accepted redaction applies to its target: in room versions 1
 * and 2 accepted is enough (auth rule 11 judged the event IDs' domains);
 * from 3 on its sender had the redact level (@a by_power) or is of the
 * target's sender's server.
 */
static int redaction_applies(const mxf_roomver_t *rv, int by_power,
                             const char *redaction_sender, const char *target_sender)
{
    return (rv && rv->redaction_auth_rule) || by_power
           || !strcmp(server_of(redaction_sender), server_of(target_sender));
}

/*
 * New events of this import that an m.room.redaction
 * stored by an earlier import redacts (it arrived before its target): read
 * redacted by the auth checks of the events after them, as a one-go import
 * that processes the redaction first reads them (mark_pruned()) and as the
 * reference homeserver reads an event whose redaction it has stored
 * (redaction_applies(), as apply_redactions()); never an m.room.create.
 * Only a redaction whose state is known counts (as in mark_pruned()); one
 * this import judges again (refilled: its state is not known yet) counts
 * in its turn, in mark_pruned().
 */
static int prune_by_stored_redactions(importer_t *im)
{
    PGresult *res = PQexec(im->conn,
                           "SELECT r.redacts, re.sender, r.allowed_by_power, rm.room_id"
                           "  FROM mxf_redactions r"
                           "  JOIN mxf_import_ids i ON i.event_id = r.redacts"
                           "  JOIN mxf_events re ON re.event_nid = r.event_nid"
                           "  JOIN mxf_rooms rm ON rm.room_nid = r.room_nid"
                           " WHERE re.rejected_reason IS NULL AND re.state_before IS NOT NULL");
    int i;

    if (!mxf_pg_ok(res, "looking up stored redactions")) {
        return 0;
    }
    for (i = 0; i < PQntuples(res); i++) {
        ev_t *t = ev_get(im, PQgetvalue(res, i, 0));

        if (!t || t->known || t->refill || !in_input(im, t) || !t->room
            || strcmp(t->room->room_id, PQgetvalue(res, i, 3)) != 0
            || !strcmp(t->type, "m.room.create")) {
            continue;
        }
        if (redaction_applies(t->room->rv, PQgetvalue(res, i, 2)[0] == 't',
                              PQgetvalue(res, i, 1), t->sender)) {
            t->pruned = 1;
        }
    }
    PQclear(res);
    return 1;
}

/* ------------------------------------------------------------------ ordering */

typedef struct heap {
    ev_t **a;
    int n;
} heap_t;

static void heap_push(heap_t *h, ev_t *e)
{
    int i = h->n++;

    while (i > 0) {
        int parent = (i - 1) / 2;
        if (h->a[parent]->prio <= e->prio) {
            break;
        }
        h->a[i] = h->a[parent];
        i = parent;
    }
    h->a[i] = e;
}

static ev_t *heap_pop(heap_t *h)
{
    ev_t *top = h->a[0], *last = h->a[--h->n];
    int i = 0;

    for (;;) {
        int c = 2 * i + 1;
        if (c >= h->n) {
            break;
        }
        if (c + 1 < h->n && h->a[c + 1]->prio < h->a[c]->prio) {
            c++;
        }
        if (h->a[c]->prio >= last->prio) {
            break;
        }
        h->a[i] = h->a[c];
        i = c;
    }
    if (h->n > 0) {
        h->a[i] = last;
    }
    return top;
}

/*
 * Reference @a k of @a e (its prev_events, then its auth_events), if it is
 * an event this import orders (new or refilled) of the same room; or NULL.
 */
static ev_t *ordered_parent(importer_t *im, const ev_t *e, int k)
{
    ev_t *parent = ev_get(im, k < e->n_prevs ? e->prevs[k] : e->auths[k - e->n_prevs]);

    return parent && !parent->known && parent->room == e->room ? parent : NULL;
}

/*
 * The new and refilled events in topological order (after their
 * prev_events and auth_events), ties broken by arrival: refilled events
 * (stored by earlier imports) first, by their place in those imports'
 * inputs (mxf_event_arrival), then the input's in input order - as a
 * one-file import of the parts, one after another, orders them.
 */
static apr_array_header_t *topo_order(importer_t *im)
{
    apr_array_header_t *out = apr_array_make(im->p, im->order->nelts + 1, sizeof(ev_t *));
    heap_t h;
    int i, k, total = 0;

    /* Children lists, laid out one after another in im->children. */
    for (i = 0; i < im->order->nelts; i++) {
        ev_t *e = APR_ARRAY_IDX(im->order, i, ev_t *);
        e->n_children = e->pending = 0;
        e->prio = e->refill ? e->arrival : im->arrival_base + e->line;
    }
    for (i = 0; i < im->order->nelts; i++) {
        ev_t *e = APR_ARRAY_IDX(im->order, i, ev_t *), *parent;
        for (k = 0; !e->known && k < e->n_prevs + e->n_auths; k++) {
            if ((parent = ordered_parent(im, e, k)) != NULL) {
                parent->n_children++;
                e->pending++;
                total++;
            }
        }
    }
    im->children = apr_palloc(im->p, sizeof(ev_t *) * (apr_size_t)(total + 1));
    total = 0;
    for (i = 0; i < im->order->nelts; i++) {
        ev_t *e = APR_ARRAY_IDX(im->order, i, ev_t *);
        e->child0 = total;
        total += e->n_children;
        e->n_children = 0;
    }
    for (i = 0; i < im->order->nelts; i++) {
        ev_t *e = APR_ARRAY_IDX(im->order, i, ev_t *), *parent;
        for (k = 0; !e->known && k < e->n_prevs + e->n_auths; k++) {
            if ((parent = ordered_parent(im, e, k)) != NULL) {
                im->children[parent->child0 + parent->n_children++] = e;
            }
        }
    }

    h.a = apr_palloc(im->p, sizeof(ev_t *) * (apr_size_t)(im->order->nelts + 1));
    h.n = 0;
    for (i = 0; i < im->order->nelts; i++) {
        ev_t *e = APR_ARRAY_IDX(im->order, i, ev_t *);
        if (!e->known && e->pending == 0) {
            heap_push(&h, e);
        }
    }
    while (h.n > 0) {
        ev_t *e = heap_pop(&h);
        APR_ARRAY_PUSH(out, ev_t *) = e;
        for (k = 0; k < e->n_children; k++) {
            ev_t *c = im->children[e->child0 + k];
            if (--c->pending == 0) {
                heap_push(&h, c);
            }
        }
    }
    for (i = 0; i < im->order->nelts; i++) {
        ev_t *e = APR_ARRAY_IDX(im->order, i, ev_t *);
        if (!e->known && e->pending > 0) {
            bad_line(im, e->line, "%s is part of a prev_events / auth_events cycle",
                     e->event_id);
        }
    }
    return out;
}

/* ------------------------------------------------------------------ events by ID */

static int ref_seen_before(const char **refs, int k)
{
    int j;

    for (j = 0; j < k; j++) {
        if (!strcmp(refs[j], refs[k])) {
            return 1;
        }
    }
    return 0;
}


/*
 * The event @a id of this import or of the database (then loaded as a
 * known event, without its PDU), or NULL when neither has it. Sets
 * im->db_failed on a database error.
 */
static ev_t *ev_find(importer_t *im, const char *id)
{
    ev_t *e = ev_get(im, id);
    const char *params[1];
    PGresult *res;

    if (e || apr_hash_get(im->absent, id, APR_HASH_KEY_STRING)) {
        return e;
    }
    if (!writer_idle(im)) {
        im->db_failed = 1;
        return NULL;
    }
    params[0] = id;
    res = mxf_pg_query(im->conn,
                       "SELECT " KNOWN_COLUMNS
                       "  FROM mxf_events e JOIN mxf_rooms r USING (room_nid)"
                       "  LEFT JOIN mxf_auth_chain_pos c USING (event_nid)"
                       "  LEFT JOIN mxf_event_seq s USING (event_nid)"
                       " WHERE e.event_id = $1", 1, params);
    if (!res) {
        im->db_failed = 1;
        return NULL;
    }
    if (PQntuples(res) == 0) {
        const char *copy = apr_pstrdup(im->p, id);
        apr_hash_set(im->absent, copy, APR_HASH_KEY_STRING, copy);
        PQclear(res);
        return NULL;
    }
    e = known_from_row(im, id, res, 0, 0);
    PQclear(res);
    return e;
}

/* Empties the cache of parsed PDUs when it is large (only between events). */
static void cache_trim(importer_t *im)
{
    int i;

    if (im->cached->nelts < JSON_CACHE_MAX) {
        return;
    }
    for (i = 0; i < im->cached->nelts; i++) {
        APR_ARRAY_IDX(im->cached, i, ev_t *)->json = NULL;
    }
    apr_array_clear(im->cached);
    apr_pool_clear(im->cache);
}

/*
 * The parsed PDU of @a e (as processed: redacted if its content hash did
 * not match), cached; for a stored event (other than a refilled one, whose
 * stored PDU load_refills() took) read from the database, given again in
 * the input or not. NULL if it cannot be had (im->db_failed set on a
 * database error).
 */
static json_t *ev_json(importer_t *im, ev_t *e)
{
    const char *why = NULL, *text = e->pdu;
    apr_size_t len = e->pdu_len;
    PGresult *res = NULL;
    json_t *j;

    if (e->json) {
        return e->json;
    }
    if (!text) {
        char nid[32];
        const char *params[1] = { nid };
        apr_snprintf(nid, sizeof(nid), "%" APR_INT64_T_FMT, e->nid);
        res = writer_idle(im)
              ? mxf_pg_query(im->conn, "SELECT e.pdu, e.redacted_because, "
                                       REDACTION_STATE_KNOWN
                                       "  FROM mxf_events e" JOIN_REDACTION
                                       " WHERE e.event_nid = $1::bigint", 1, params)
              : NULL;
        if (!res || PQntuples(res) != 1) {
            im->db_failed = 1;
            PQclear(res);
            return NULL;
        }
        text = PQgetvalue(res, 0, 0);
        len = (apr_size_t)PQgetlength(res, 0, 0);
        /*
         * Redacted by an earlier import: by its content hash (processed
         * redacted), or by an m.room.redaction (read redacted by auth
         * checks). Read again after cache_trim(): what mark_pruned() set
         * (a redaction of this import) stays.
         */
        if (!PQgetisnull(res, 0, 1)) {
            if (!strcmp(PQgetvalue(res, 0, 1), "content-hash")) {
                e->hash_mismatch = 1;
            }
            else if (PQgetvalue(res, 0, 2)[0] == 't') {
                e->pruned = 1;          /* a redaction of unknown state does not count */
            }
        }
    }
    if (mxf_json_parse(im->cache, text, len, PDU_PARSE, &j, &why) != APR_SUCCESS) {
        j = NULL;
    }
    PQclear(res);
    if (j && e->hash_mismatch && e->room) {
        j = mxf_event_redact(im->cache, j, e->room->rv);
    }
    if (j && e->pruned && !e->pdu && is_create(j)) {
        e->pruned = 0;                  /* see mark_pruned() */
    }
    if (j) {
        e->json = j;
        APR_ARRAY_PUSH(im->cached, ev_t *) = e;
    }
    return j;
}

/*
 * The PDU of @a e as the authorization rules read it: redacted when an
 * m.room.redaction processed before has redacted it, as the reference
 * homeserver reads auth events (its state resolution reads them as they
 * are: prov_event() uses ev_json()). The redacted copy is made in @a p.
 */
static const json_t *ev_json_auth(importer_t *im, ev_t *e, apr_pool_t *p)
{
    json_t *j = ev_json(im, e);

    if (j && e->pruned && e->room) {
        return mxf_event_redact(p, j, e->room->rv);
    }
    return j;
}

/*
 * What the auth rules read of a non-state event of this import, built
 * without parsing its PDU: type, sender, room_id, event_id, redacts
 * (top-level and in content) and an empty content otherwise.
 */
static json_t *ev_stub(apr_pool_t *p, const ev_t *e)
{
    json_t *j = mxf_json_own(p, json_object()), *content = json_object();

    json_object_set_new(j, "type", json_string(e->type));
    json_object_set_new(j, "sender", json_string(e->sender));
    json_object_set_new(j, "room_id", json_string(e->room->room_id));
    json_object_set_new(j, "event_id", json_string(e->event_id));
    if (e->redacts) {
        json_object_set_new(j, "redacts", json_string(e->redacts));
        json_object_set_new(content, "redacts", json_string(e->redacts));
    }
    json_object_set_new(j, "content", content);
    return j;
}

/* ------------------------------------------------------------------ auth checks */

/* The room's m.room.create (room version 12 names it by the room ID), or NULL. */
static ev_t *room_create_event(importer_t *im, room_t *r)
{
    const char *id = mxf_auth_create_id(im->authp, r->room_id);

    return id ? ev_find(im, id) : NULL;
}

typedef struct auth_list {
    importer_t *im;
    room_t *room;
    ev_t **evs;
    const json_t **pdus;
    int n;
} auth_list_t;

/* mxf_auth_state_fn over an event's auth events. */
static const json_t *lookup_auth_list(void *baton, const char *type, const char *state_key,
                                      const char **event_id)
{
    auth_list_t *l = baton;
    int k;

    for (k = 0; k < l->n; k++) {
        const ev_t *a = l->evs[k];
        const char *t = jstr(l->pdus[k], "type"), *sk = jstr(l->pdus[k], "state_key");
        if (t && sk && !strcmp(t, type) && !strcmp(sk, state_key)) {
            if (event_id) {
                *event_id = a->event_id;
            }
            return l->pdus[k];
        }
    }
    if (l->room->rv->room_id_is_create_hash && !strcmp(type, "m.room.create")
        && !*state_key) {
        ev_t *c = room_create_event(l->im, l->room);
        if (c && !c->rejected) {
            if (event_id) {
                *event_id = c->event_id;
            }
            return ev_json(l->im, c);
        }
    }
    return NULL;
}

typedef struct state_lookup {
    importer_t *im;
    mxf_rs_state_t *state;
} state_lookup_t;

/* mxf_auth_state_fn over a state of the engine. */
static const json_t *lookup_state(void *baton, const char *type, const char *state_key,
                                  const char **event_id)
{
    state_lookup_t *l = baton;
    const mxf_rs_value_t *v = mxf_rs_get(l->state, type, state_key);
    ev_t *e;

    if (!v || !v->event_id || !(e = ev_find(l->im, v->event_id))) {
        return NULL;
    }
    if (event_id) {
        *event_id = e->event_id;
    }
    return ev_json_auth(l->im, e, l->im->authp);
}

/*
 * Checks @a e against the authorization rules: its auth_events list, the
 * rules against its auth events, then (with @a state_known) the rules
 * against the state before it. Sets e->rejected and e->rejected_reason
 * when it fails. Without the state before it (behind a gap), an auth event
 * that is not known yet leaves it unchecked: a later import may bring it.
 * 0 (reported) on a database error.
 */
static int check_auth(importer_t *im, ev_t *e, int state_known)
{
    apr_pool_t *p = im->authp;
    const mxf_roomver_t *rv = e->room->rv;
    auth_list_t al;
    state_lookup_t sl;
    const char *why = NULL, *reason = NULL;
    json_t *j;
    int k;

    /*
     * A depth beyond the canonical JSON integers (room versions 1-5 parse
     * it): the reference homeserver drops such PDUs on receipt and never
     * serves them, so they are kept out of the room.
     */
    if (e->depth > MXF_JSON_INT_MAX) {
        reason = "depth beyond 2^53 - 1 (the canonical JSON integers)";
        goto rejected;
    }
    /* Within 255 code points but over 255 bytes, in a version that keeps such events. */
    if (rv->lenient_byte_limits
        && (mxf_event_check_field_bytes(p, "sender", e->sender, &why) != APR_SUCCESS
            || mxf_event_check_field_bytes(p, "room_id", e->room->room_id, &why) != APR_SUCCESS
            || mxf_event_check_field_bytes(p, "event_id", e->event_id, &why) != APR_SUCCESS
            || mxf_event_check_field_bytes(p, "type", e->type, &why) != APR_SUCCESS
            || mxf_event_check_field_bytes(p, "state_key", e->state_key, &why) != APR_SUCCESS)) {
        reason = apr_pstrcat(p, "size limits: ", why, NULL);
        goto rejected;
    }
    j = e->state_key ? ev_json(im, e) : ev_stub(p, e);
    if (!j) {
        if (im->db_failed) {
            return 0;
        }
        reason = "its PDU cannot be read";
        goto rejected;
    }
    al.im = im;
    al.room = e->room;
    al.n = 0;
    al.evs = apr_palloc(p, sizeof(ev_t *) * (apr_size_t)(e->n_auths + 1));
    al.pdus = apr_palloc(p, sizeof(json_t *) * (apr_size_t)(e->n_auths + 1));
    for (k = 0; k < e->n_auths; k++) {
        ev_t *a;
        const json_t *aj;
        if (ref_seen_before(e->auths, k)) {
            reason = apr_psprintf(p, "auth_events lists %s twice", e->auths[k]);
            goto rejected;
        }
        if (!(a = ev_find(im, e->auths[k]))) {
            if (im->db_failed) {
                return 0;
            }
            if (!state_known) {
                apr_pool_clear(p);
                return 1;
            }
            im->n_rejected_unknown_auth++;
            reason = apr_psprintf(p, "auth event %s is unknown (neither in the input nor in "
                                  "the database)", e->auths[k]);
            goto rejected;
        }
        if (a->rejected) {
            reason = apr_psprintf(p, "auth event %s was rejected", a->event_id);
            goto rejected;
        }
        if (!(aj = ev_json_auth(im, a, p))) {
            if (im->db_failed) {
                return 0;
            }
            reason = apr_psprintf(p, "auth event %s cannot be read", a->event_id);
            goto rejected;
        }
        al.evs[al.n] = a;
        al.pdus[al.n++] = aj;
    }
    if (mxf_auth_check_auth_events(p, rv, j, al.pdus, (apr_size_t)al.n, &why) != APR_SUCCESS) {
        reason = apr_pstrcat(p, "auth events: ", why, NULL);
        goto rejected;
    }
    if (mxf_auth_check(p, rv, j, lookup_auth_list, &al, &why) != APR_SUCCESS) {
        reason = apr_pstrcat(p, "against its auth events: ", why, NULL);
        goto rejected;
    }
    sl.im = im;
    sl.state = e->before;
    if (state_known && mxf_auth_check(p, rv, j, lookup_state, &sl, &why) != APR_SUCCESS) {
        reason = apr_pstrcat(p, "against the state before it: ", why, NULL);
        goto rejected;
    }
    apr_pool_clear(p);
    return !im->db_failed;

rejected:
    if (im->db_failed) {
        return 0;
    }
    e->rejected = 1;
    e->rejected_reason = apr_pstrdup(im->p, reason);
    im->n_rejected++;
    apr_pool_clear(p);
    return 1;
}

/* ------------------------------------------------------------------ state resolution */

static const json_t *prov_event(void *baton, const char *event_id, int *rejected)
{
    importer_t *im = baton;
    ev_t *e = ev_find(im, event_id);

    if (!e) {
        return NULL;
    }
    *rejected = e->rejected;
    return ev_json(im, e);
}

static apr_int64_t prov_seq(void *baton, const char *event_id)
{
    importer_t *im = baton;
    ev_t *e = ev_find(im, event_id);

    return e && e->nid ? e->seq : -1;
}

/*
 * The state events citing @a event_id: complete only for a room this
 * import creates (index_auth_kids() indexes the events this import orders,
 * never a known one), else NULL.
 */
static const char *const *prov_children(void *baton, const char *event_id, int *n)
{
    importer_t *im = baton;
    ev_t *e = ev_get(im, event_id);

    if (!e || !e->kids_indexed || !e->room->is_new) {
        return NULL;
    }
    *n = e->n_akids;
    return im->auth_kids + e->akid0;
}

/*
 * Indexes the state events of this import under the auth events they cite,
 * for the auth events of this import (@a topo) only: an earlier import's
 * have no slots (prov_children() does not read them).
 */
static void index_auth_kids(importer_t *im, apr_array_header_t *topo)
{
    apr_size_t total = 0;
    int i, k;

    for (i = 0; i < topo->nelts; i++) {
        ev_t *e = APR_ARRAY_IDX(topo, i, ev_t *);
        e->kids_indexed = 1;
        e->n_akids = 0;
    }
    for (i = 0; i < topo->nelts; i++) {
        ev_t *e = APR_ARRAY_IDX(topo, i, ev_t *);
        for (k = 0; e->state_key && k < e->n_auths; k++) {
            ev_t *a = ev_get(im, e->auths[k]);
            if (a && a->kids_indexed) {
                a->n_akids++;
                total++;
            }
        }
    }
    im->auth_kids = apr_palloc(im->p, sizeof(const char *) * (total + 1));
    total = 0;
    for (i = 0; i < topo->nelts; i++) {
        ev_t *e = APR_ARRAY_IDX(topo, i, ev_t *);
        e->akid0 = (int)total;
        total += (apr_size_t)e->n_akids;
        e->n_akids = 0;
    }
    /* in topological order: the oldest citing event first */
    for (i = 0; i < topo->nelts; i++) {
        ev_t *e = APR_ARRAY_IDX(topo, i, ev_t *);
        for (k = 0; e->state_key && k < e->n_auths; k++) {
            ev_t *a = ev_get(im, e->auths[k]);
            if (a && a->kids_indexed) {
                im->auth_kids[a->akid0 + a->n_akids++] = e->event_id;
            }
        }
    }
}

static double clock_secs(clockid_t clock)
{
    struct timespec ts;

    if (clock_gettime(clock, &ts) != 0) {
        return 0;
    }
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU time of the whole process (all threads) in seconds. */
static double cpu_now(void)
{
    return clock_secs(CLOCK_PROCESS_CPUTIME_ID);
}

/* CPU time of the calling thread in seconds. */
static double thread_cpu_now(void)
{
    return clock_secs(CLOCK_THREAD_CPUTIME_ID);
}

static apr_status_t rs_resolve(void *baton, apr_pool_t *p, mxf_rs_room_t *room,
                               apr_hash_t *const *maps, int n, apr_hash_t **out,
                               const char **why)
{
    importer_t *im = baton;
    room_t *r = apr_hash_get(im->rs_rooms, &room, sizeof(room));
    mxf_sr_provider_t prov;
    mxf_sr_stats_t st;
    apr_status_t rv;

    double c0 = thread_cpu_now();

    prov.get_event = prov_event;
    prov.seq = prov_seq;
    prov.children = prov_children;
    prov.seq_limit = im->sr_seq_limit;
    prov.baton = im;
    rv = mxf_stateres_resolve(p, r->rv, r->room_id, maps, n, &prov, out, &st, why);
    im->c_resolving += thread_cpu_now() - c0;
    im->n_sr_fetched += (long)st.fetched;
    im->n_sr_full_conflicted += (long)st.full_conflicted;
    if (rv == APR_SUCCESS && im->db_failed) {
        *why = "reading events for state resolution failed";
        rv = APR_EGENERAL;
    }
    return rv;
}

static int rs_value_of(void *baton, mxf_rs_room_t *room, const char *event_id,
                       mxf_rs_value_t *v)
{
    importer_t *im = baton;
    ev_t *e = ev_find(im, event_id);
    json_t *j = e && e->nid ? ev_json(im, e) : NULL;
    json_t *content = j ? json_object_get(j, "content") : NULL;

    (void)room;
    if (!j) {
        return 0;
    }
    v->nid = e->nid;
    v->event_id = e->event_id;
    v->sender = jstr(j, "sender");
    v->membership = json_is_object(content) ? jstr(content, "membership") : NULL;
    v->content = json_is_object(content) ? content : NULL;
    return 1;
}

/* ------------------------------------------------------------------ state */

static mxf_rs_state_t *state_of_parent(importer_t *im, ev_t *parent, int *failed)
{
    if (!parent->known) {
        return parent->after;
    }
    if (!parent->db_state_after) {
        return NULL;
    }
    if (!parent->after) {
        if (!writer_idle(im)) {
            *failed = 1;
            return NULL;
        }
        parent->after = mxf_rs_load(im->rs, parent->room->rs, parent->db_state_after);
        *failed = parent->after == NULL;
    }
    return parent->after;
}

/*
 * The state a /send_join answer gave for @a e, from its state events (those
 * of another room, or not state events, left out). NULL when none is left.
 */
static mxf_rs_state_t *given_state(importer_t *im, ev_t *e)
{
    int n = e->given_state->nelts, k, m = 0;
    const char **types = apr_palloc(im->authp, sizeof(*types) * (apr_size_t)n);
    const char **keys = apr_palloc(im->authp, sizeof(*keys) * (apr_size_t)n);
    const mxf_rs_value_t **values = apr_palloc(im->authp, sizeof(*values) * (apr_size_t)n);
    mxf_rs_state_t *s = NULL;

    for (k = 0; k < n; k++) {
        ev_t *g = ev_get(im, APR_ARRAY_IDX(e->given_state, k, const char *));
        mxf_rs_value_t *v;
        if (!g || !g->state_key || g->room != e->room) {
            continue;
        }
        v = apr_pcalloc(im->authp, sizeof(*v));
        if (g->known) {
            /* Stored before: as stored (its content is not the input's). */
            if (!rs_value_of(im, e->room->rs, g->event_id, v)) {
                continue;               /* a database error: im->db_failed, seen by the caller */
            }
        }
        else {
            v->nid = g->nid;
            v->event_id = g->event_id;
            v->membership = g->membership;
            v->sender = g->sender;
            v->content = g->content;
        }
        types[m] = g->type;
        keys[m] = g->state_key;
        values[m++] = v;
    }
    if (m > 0) {
        s = mxf_rs_apply_many(im->rs, e->room->rs, mxf_rs_empty(im->rs, e->room->rs), m,
                              types, keys, values);
    }
    apr_pool_clear(im->authp);
    return s;
}

/*
 * Computes e->before (NULL when a prev_event is missing or its state
 * unknown), checks the event against the auth rules (without the state
 * before it when that is unknown: checks on receipt, step 4, need only its
 * auth events), and sets e->after. 0 (reported) on failure.
 */
static int compute_state(importer_t *im, ev_t *e, apr_array_header_t *parents)
{
    const char *why = NULL;
    int k, failed = 0;

    e->before = e->after = NULL;
    e->rejected = 0;
    e->rejected_reason = NULL;
    if (!strcmp(e->type, "m.room.create") && e->state_key && !*e->state_key
        && e->n_prevs == 0) {
        e->before = mxf_rs_empty(im->rs, e->room->rs);
    }
    else {
        apr_array_clear(parents);
        for (k = 0; k < e->n_prevs; k++) {
            ev_t *parent = ev_get(im, e->prevs[k]);
            mxf_rs_state_t *s;
            if (!parent || parent->room != e->room) {
                goto unknown;           /* edge of known history */
            }
            if ((s = state_of_parent(im, parent, &failed)) == NULL) {
                if (failed) {
                    return 0;           /* could not be loaded */
                }
                goto unknown;
            }
            APR_ARRAY_PUSH(parents, mxf_rs_state_t *) = s;
        }
        if (parents->nelts == 0) {
            goto unknown;
        }
        im->sr_seq_limit = e->seq;
        e->before = mxf_rs_merge(im->rs, e->room->rs, parents, &why);
        im->sr_seq_limit = 0;
        if (!e->before) {
            bad_line(im, e->line, "%s: the state before it cannot be resolved: %s",
                     e->event_id, why ? why : "unknown error");
            return 0;
        }
    }
known:
    if (!check_auth(im, e, 1)) {
        mxf_cmd_error("reading events from the database failed while checking %s",
                      e->event_id);
        return 0;
    }
    if (e->state_key && !e->rejected) {
        mxf_rs_value_t v;
        memset(&v, 0, sizeof(v));
        v.nid = e->nid;
        v.event_id = e->event_id;
        v.membership = e->membership;
        v.sender = e->sender;
        v.content = e->content;
        e->after = mxf_rs_apply(im->rs, e->room->rs, e->before, e->type, e->state_key, &v);
    }
    else {
        e->after = e->before;
    }
    return 1;

unknown:
    if (e->given_state && e->given_state->nelts && (e->before = given_state(im, e)) != NULL) {
        im->n_given_state++;
        goto known;
    }
    /* The state before it is not known: its auth events still judge it. */
    if (!check_auth(im, e, 0)) {
        mxf_cmd_error("reading events from the database failed while checking %s",
                      e->event_id);
        return 0;
    }
    return 1;
}

/* ------------------------------------------------------------------ redaction */

/* The room version's redaction of @a pdu as canonical JSON in @a p; NULL (reported). */
static const char *redacted_text(importer_t *im, apr_pool_t *p, const char *event_id,
                                 const char *pdu, apr_size_t pdu_len, const mxf_roomver_t *rv)
{
    const char *why = NULL;
    json_t *j, *red;
    const char *text = NULL;

    if (mxf_json_parse(im->scratch, pdu, pdu_len, PDU_PARSE, &j, &why) == APR_SUCCESS
        && (red = mxf_event_redact(im->scratch, j, rv)) != NULL) {
        text = mxf_canonical_encode_ex(p, red, canon_flags(rv), NULL, &why);
    }
    if (!text) {
        mxf_cmd_error("cannot redact %s: %s", event_id, why ? why : "unknown error");
    }
    apr_pool_clear(im->scratch);
    return text;
}

/* Whether the redacter's power level in the state before it reaches "redact". */
static int redaction_by_power(ev_t *r)
{
    return r->before && mxf_rs_power_at_least(r->before, r->sender, "redact", 50);
}

/*
 * After the accepted redaction @a r, whose state is known: its target,
 * when the redaction applies to it (room versions 1 and 2: accepted is
 * enough; from 3 on: the sender
 * had the redact level, or is of the target's sender's server), is read
 * redacted by the auth checks of the events after it, as the reference
 * homeserver reads it once the redaction is known. Not an m.room.create:
 * that homeserver ignores redactions of it when it reads events. A
 * redaction of unknown state (judged by its auth events alone, it may yet
 * be rejected) is not read so: in a one-file import of the parts, the
 * events whose history a part holds whole come before it.
 * 0 on a database error.
 */
static int mark_pruned(importer_t *im, ev_t *r)
{
    ev_t *t = ev_find(im, r->redacts);
    json_t *j;
    const char *sender;

    if (!t) {
        return !im->db_failed;
    }
    if (t->room != r->room || t->pruned) {
        return 1;
    }
    if (!(j = ev_json(im, t))) {
        return !im->db_failed;
    }
    sender = jstr(j, "sender");
    if (is_create(j) || !sender) {
        return 1;
    }
    if (redaction_applies(r->room->rv, r->by_power, r->sender, sender)) {
        t->pruned = 1;
    }
    return 1;
}

/* ------------------------------------------------------------------ writing */

struct batch {
    apr_pool_t *pool;                   /* its rows (cleared when it is reused) */
    mxf_copy_t events, edges, auths, redactions, refills, arrivals, chain_pos, chain_links;
    mxf_rs_rows_t rs;                   /* state groups and visibility rows numbered so far */
    int n;
};

static void batch_reset(batch_t *b, apr_pool_t *p)
{
    b->pool = p;
    memset(&b->rs, 0, sizeof(b->rs));
    /* The three big ones in binary format (see add_event_row() for the types). */
    mxf_copy_init_binary(&b->events, p, 1 << 20);
    mxf_copy_init_binary(&b->edges, p, 1 << 16);
    mxf_copy_init_binary(&b->auths, p, 1 << 16);
    mxf_copy_init(&b->redactions, p, 1 << 10);
    mxf_copy_init(&b->refills, p, 1 << 10);
    mxf_copy_init(&b->arrivals, p, 1 << 10);
    mxf_copy_init(&b->chain_pos, p, 1 << 14);
    mxf_copy_init(&b->chain_links, p, 1 << 14);
    b->n = 0;
}

/* vis_after_id: for membership and history visibility changes that change it. */
static apr_int64_t vis_after(importer_t *im, const ev_t *e)
{
    apr_int64_t va;

    if (!e->after || !e->before
        || !(e->membership || !strcmp(e->type, "m.room.history_visibility"))) {
        return 0;
    }
    va = mxf_rs_vis_id(im->rs, e->after);
    return va == mxf_rs_vis_id(im->rs, e->before) ? 0 : va;
}

/* Appends a link row unless an earlier link from the same chain reaches as far. */
static void add_chain_link(importer_t *im, batch_t *b, const ev_t *e, const ev_t *a)
{
    apr_int64_t key[2];
    int *top;

    key[0] = e->chain_id;
    key[1] = a->chain_id;
    top = apr_hash_get(im->chain_links, key, sizeof(key));
    if (top && *top >= a->chain_seq) {
        return;
    }
    if (!top) {
        top = apr_palloc(im->p, sizeof(*top));
        apr_hash_set(im->chain_links, apr_pmemdup(im->p, key, sizeof(key)), sizeof(key), top);
    }
    *top = a->chain_seq;
    mxf_copy_int(&b->chain_links, e->chain_id);
    mxf_copy_int(&b->chain_links, e->chain_seq);
    mxf_copy_int(&b->chain_links, a->chain_id);
    mxf_copy_int(&b->chain_links, a->chain_seq);
    mxf_copy_end(&b->chain_links);
    im->n_chain_links++;
}

/*
 * The auth chain index position of state event @a e (its auth events are
 * placed already: topological order), and its links (see sql/006). It
 * continues the chain of an auth event at the top of a chain this import
 * started, preferring the event it replaces (same type and state_key),
 * else starts a chain.
 */
static void add_chain_rows(importer_t *im, batch_t *b, ev_t *e)
{
    ev_t *pred = NULL;
    int k;

    for (k = 0; k < e->n_auths; k++) {
        ev_t *a = ev_get(im, e->auths[k]);
        int same;
        if (!a || a->room != e->room || !a->chain_id || a->chain_id < im->first_chain
            || APR_ARRAY_IDX(im->chain_len, a->chain_id - im->first_chain, int) != a->chain_seq) {
            continue;
        }
        same = a->type && a->state_key && !strcmp(a->type, e->type)
               && !strcmp(a->state_key, e->state_key);
        if (!pred || same) {
            pred = a;
            if (same) {
                break;
            }
        }
    }
    if (pred) {
        e->chain_id = pred->chain_id;
        e->chain_seq = pred->chain_seq + 1;
    }
    else {
        e->chain_id = im->first_chain + im->chain_len->nelts;
        e->chain_seq = 1;
        APR_ARRAY_PUSH(im->chain_len, int) = 0;
        im->n_chains++;
    }
    APR_ARRAY_IDX(im->chain_len, e->chain_id - im->first_chain, int) = e->chain_seq;
    mxf_copy_int(&b->chain_pos, e->nid);
    mxf_copy_int(&b->chain_pos, e->chain_id);
    mxf_copy_int(&b->chain_pos, e->chain_seq);
    mxf_copy_str(&b->chain_pos, e->event_id);
    mxf_copy_end(&b->chain_pos);
    for (k = 0; k < e->n_auths; k++) {
        ev_t *a = ev_get(im, e->auths[k]);
        if (a && a->room == e->room && a->chain_id && a->chain_id != e->chain_id
            && !ref_seen_before(e->auths, k)) {
            add_chain_link(im, b, e, a);
        }
    }
}

/*
 * The rows of a new event. Binary COPY: bigint columns take mxf_copy_int()
 * (or _nullable_int()), text columns the string calls, boolean ones
 * mxf_copy_bool().
 */
static void add_event_row(importer_t *im, batch_t *b, ev_t *e)
{
    int k;

    mxf_copy_int(&b->events, e->nid);
    mxf_copy_str(&b->events, e->event_id);
    mxf_copy_int(&b->events, e->room->nid);
    mxf_copy_str(&b->events, e->type);
    mxf_copy_str(&b->events, e->state_key);
    mxf_copy_str(&b->events, e->sender);
    mxf_copy_str(&b->events, e->membership);
    mxf_copy_int(&b->events, e->depth);
    mxf_copy_int(&b->events, e->ts);
    mxf_copy_strn(&b->events, e->pdu, e->pdu_len);
    mxf_copy_str(&b->events, e->redacted_pdu);
    mxf_copy_str(&b->events, e->redacted_because);
    mxf_copy_bool(&b->events, e->sigs_verified);
    mxf_copy_str(&b->events, e->rejected_reason);
    mxf_copy_nullable_int(&b->events, e->before ? mxf_rs_state_id(im->rs, e->before) : 0);
    mxf_copy_nullable_int(&b->events, e->after ? mxf_rs_state_id(im->rs, e->after) : 0);
    mxf_copy_nullable_int(&b->events, e->before ? mxf_rs_vis_id(im->rs, e->before) : 0);
    mxf_copy_nullable_int(&b->events, vis_after(im, e));
    mxf_copy_bool(&b->events, e->outlier);
    mxf_copy_end(&b->events);

    for (k = 0; k < e->n_prevs; k++) {
        ev_t *parent = ev_get(im, e->prevs[k]);
        if (ref_seen_before(e->prevs, k)) {
            continue;
        }
        if (parent && parent->room == e->room && parent->depth >= e->depth) {
            e->room->depth_broken = 1;
        }
        mxf_copy_int(&b->edges, e->nid);
        mxf_copy_str(&b->edges, e->prevs[k]);
        mxf_copy_nullable_int(&b->edges, parent && parent->room == e->room ? parent->nid : 0);
        mxf_copy_end(&b->edges);
    }
    for (k = 0; k < e->n_auths; k++) {
        ev_t *a = ev_get(im, e->auths[k]);
        if (ref_seen_before(e->auths, k)) {
            continue;
        }
        mxf_copy_int(&b->auths, e->nid);
        mxf_copy_str(&b->auths, e->auths[k]);
        mxf_copy_nullable_int(&b->auths, a && a->room == e->room ? a->nid : 0);
        mxf_copy_end(&b->auths);
    }
    if (e->state_key) {
        add_chain_rows(im, b, e);
    }
    if (e->redacts && !e->rejected) {
        mxf_copy_int(&b->redactions, e->nid);
        mxf_copy_int(&b->redactions, e->room->nid);
        mxf_copy_str(&b->redactions, e->redacts);
        mxf_copy_str(&b->redactions, e->by_power ? "t" : "f");
        mxf_copy_end(&b->redactions);
    }
    if (!e->before && !e->outlier) {
        /* state unknown: its place in the input, for the import that completes it */
        mxf_copy_int(&b->arrivals, e->nid);
        mxf_copy_int(&b->arrivals, im->arrival_base + e->line);
        mxf_copy_end(&b->arrivals);
    }
    b->n++;
}

/* A stored event whose state is now known: its new columns. */
static void add_refill_row(importer_t *im, batch_t *b, ev_t *e)
{
    mxf_copy_int(&b->refills, e->nid);
    mxf_copy_nullable_int(&b->refills, e->before ? mxf_rs_state_id(im->rs, e->before) : 0);
    mxf_copy_nullable_int(&b->refills, e->after ? mxf_rs_state_id(im->rs, e->after) : 0);
    mxf_copy_nullable_int(&b->refills, e->before ? mxf_rs_vis_id(im->rs, e->before) : 0);
    mxf_copy_nullable_int(&b->refills, vis_after(im, e));
    mxf_copy_str(&b->refills, e->redacted_pdu);
    mxf_copy_str(&b->refills, e->redacts ? (e->by_power ? "t" : "f") : NULL);
    mxf_copy_str(&b->refills, e->rejected_reason);
    mxf_copy_str(&b->refills, e->redacts);
    mxf_copy_int(&b->refills, e->seq);
    mxf_copy_end(&b->refills);
    b->n++;
}

/* Writes a batch (state rows first: events refer to their groups). Any thread. */
static int write_batch(PGconn *conn, const batch_t *b)
{
    if (!mxf_rs_write_rows(conn, &b->rs)) {
        return 0;
    }
    if (b->n == 0) {
        return 1;
    }
    return mxf_pg_copy(conn,
                       "COPY mxf_events (event_nid, event_id, room_nid, type, state_key, sender,"
                       " membership, depth, origin_server_ts, pdu, redacted_pdu, redacted_because,"
                       " signatures_verified, rejected_reason, state_before, state_after, vis_id,"
                       " vis_after_id, outlier)"
                       " FROM STDIN WITH (FORMAT binary)", &b->events)
        && mxf_pg_copy(conn, "COPY mxf_event_edges (event_nid, prev_id, prev_nid) FROM STDIN"
                       " WITH (FORMAT binary)", &b->edges)
        && mxf_pg_copy(conn, "COPY mxf_auth_edges (event_nid, auth_id, auth_nid) FROM STDIN"
                       " WITH (FORMAT binary)", &b->auths)
        && mxf_pg_copy(conn,
                       "COPY mxf_redactions (event_nid, room_nid, redacts, allowed_by_power)"
                       " FROM STDIN", &b->redactions)
        && mxf_pg_copy(conn, "COPY mxf_import_refill FROM STDIN", &b->refills)
        && mxf_pg_copy(conn, "COPY mxf_event_arrival (event_nid, arrival) FROM STDIN",
                       &b->arrivals)
        && mxf_pg_copy(conn, "COPY mxf_auth_chain_pos (event_nid, chain_id, seq, event_id)"
                       " FROM STDIN",
                       &b->chain_pos)
        && mxf_pg_copy(conn,
                       "COPY mxf_auth_chain_links (origin_chain, origin_seq, target_chain,"
                       " target_seq) FROM STDIN", &b->chain_links);
}

static void *writer_main(void *data)
{
    writer_t *w = data;

    pthread_mutex_lock(&w->mu);
    for (;;) {
        batch_t *b;
        int ok;
        while (!w->job && !w->stop) {
            pthread_cond_wait(&w->cv, &w->mu);
        }
        if (!w->job) {
            break;
        }
        b = w->job;
        pthread_mutex_unlock(&w->mu);
        ok = write_batch(w->conn, b);
        pthread_mutex_lock(&w->mu);
        w->failed |= !ok;
        w->job = NULL;
        pthread_cond_broadcast(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/*
 * Waits until the writer thread (if any) has written its batch, so that
 * the connection is the caller's. 0 if a write failed (reported).
 */
static int writer_idle(importer_t *im)
{
    writer_t *w = im->writer;
    int failed;

    if (!w) {
        return 1;
    }
    pthread_mutex_lock(&w->mu);
    if (w->job) {
        apr_time_t t0 = apr_time_now();
        while (w->job) {
            pthread_cond_wait(&w->cv, &w->mu);
        }
        w->waited += apr_time_now() - t0;
    }
    failed = w->failed;
    pthread_mutex_unlock(&w->mu);
    return !failed;
}

/*
 * Hands @a b, with the state rows numbered so far, to be written: by the
 * writer thread, or here when there is none. 0 if this or an earlier
 * write failed (reported). @a b must stay untouched until writer_idle().
 */
static int submit_batch(importer_t *im, batch_t *b)
{
    writer_t *w = im->writer;

    mxf_rs_take_rows(im->rs, b->pool, &b->rs);
    if (!writer_idle(im)) {
        return 0;
    }
    if (!w) {
        return write_batch(im->conn, b);
    }
    pthread_mutex_lock(&w->mu);
    w->job = b;
    w->batches++;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return 1;
}

static int writer_start(importer_t *im, writer_t *w)
{
    memset(w, 0, sizeof(*w));
    w->conn = im->conn;
    if (pthread_mutex_init(&w->mu, NULL) != 0) {
        return 0;
    }
    if (pthread_cond_init(&w->cv, NULL) != 0) {
        pthread_mutex_destroy(&w->mu);
        return 0;
    }
    if (pthread_create(&w->tid, NULL, writer_main, w) != 0) {
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
        return 0;
    }
    im->writer = w;
    return 1;
}

/* Waits for the last batch, ends the writer thread; 0 if a write failed. */
static int writer_stop(importer_t *im)
{
    writer_t *w = im->writer;
    int ok;

    if (!w) {
        return 1;
    }
    ok = writer_idle(im);
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->tid, NULL);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    im->writer = NULL;
    im->n_batches = w->batches;
    im->t_writer_waits = w->waited;
    return ok;
}

/* Stored events of unknown state that this import completed. */
static int update_refilled(importer_t *im)
{
    return im->n_refilled == 0
        || (mxf_pg_exec(im->conn,
                        "UPDATE mxf_events e SET state_before = r.state_before,"
                        "  state_after = r.state_after, vis_id = r.vis_id,"
                        "  vis_after_id = r.vis_after_id, rejected_reason = r.rejected_reason,"
                        "  redacted_pdu = coalesce(e.redacted_pdu, r.redacted_pdu)"
                        "  FROM mxf_import_refill r WHERE e.event_nid = r.event_nid")
            && mxf_pg_exec(im->conn,
                           "DELETE FROM mxf_event_arrival a USING mxf_import_refill r"
                           " WHERE a.event_nid = r.event_nid AND r.state_before IS NOT NULL")
            && mxf_pg_exec(im->conn,
                           "INSERT INTO mxf_event_seq (event_nid, seq)"
                           " SELECT event_nid, seq FROM mxf_import_refill"
                           " ON CONFLICT (event_nid) DO UPDATE SET seq = EXCLUDED.seq")
            && mxf_pg_exec(im->conn,
                           "UPDATE mxf_redactions x SET allowed_by_power = r.by_power"
                           "  FROM mxf_import_refill r"
                           " WHERE x.event_nid = r.event_nid AND r.by_power IS NOT NULL")
            /* A redaction its first import rejected, accepted now: its row. */
            && mxf_pg_exec(im->conn,
                           "INSERT INTO mxf_redactions (event_nid, room_nid, redacts,"
                           "                            allowed_by_power)"
                           " SELECT r.event_nid, e.room_nid, r.redacts, r.by_power"
                           "   FROM mxf_import_refill r JOIN mxf_events e USING (event_nid)"
                           "  WHERE r.redacts IS NOT NULL AND r.rejected_reason IS NULL"
                           "    AND NOT EXISTS (SELECT 1 FROM mxf_redactions x"
                           "                     WHERE x.event_nid = r.event_nid)"));
}

static int write_rooms(importer_t *im)
{
    apr_hash_index_t *hi;

    for (hi = apr_hash_first(im->p, im->rooms); hi; hi = apr_hash_next(hi)) {
        room_t *r = apr_hash_this_val(hi);
        char nid[32];
        const char *params[3];

        if (!r->is_new || !r->touched) {
            continue;
        }
        apr_snprintf(nid, sizeof(nid), "%" APR_INT64_T_FMT, r->nid);
        params[0] = nid;
        params[1] = r->room_id;
        params[2] = r->rv->id;
        if (!mxf_pg_params(im->conn,
                           "INSERT INTO mxf_rooms (room_nid, room_id, room_version,"
                           "                       auth_chains_indexed, depth_monotone)"
                           " VALUES ($1::bigint, $2, $3, true, true)", 3, params)) {
            return 0;
        }
    }
    return 1;
}

/*
 * Takes back the redactions of refilled m.room.redaction events that no
 * longer apply now that their state is known: applied by an earlier import
 * that judged them by their auth events alone, they are rejected now, or
 * their sender turned out to lack the redact level (room versions 3 on, a
 * sender of another server than the target's). The targets are served
 * whole again, and apply_redactions() looks at their other redactions
 * (mxf_import_unredacted). (The authorization rules never read a target
 * redacted by a redaction of unknown state: mark_pruned().) Sets *@a out
 * to the targets' IDs (NULL when there are none).
 */
static int unapply_refilled_redactions(importer_t *im, apr_hash_t **out)
{
    apr_array_header_t *ids = apr_array_make(im->p, 4, sizeof(const char *));
    PGresult *res;
    int i;

    *out = NULL;
    if (im->n_refilled == 0) {
        return 1;
    }
    res = PQexec(im->conn,
                 "SELECT t.event_id, re.rejected_reason IS NOT NULL, r.allowed_by_power,"
                 "       re.sender, t.sender, tr.room_version"
                 "  FROM mxf_import_refill f"
                 "  JOIN mxf_redactions r ON r.event_nid = f.event_nid"
                 "  JOIN mxf_events re ON re.event_nid = r.event_nid"
                 "  JOIN mxf_events t ON t.event_id = r.redacts AND t.room_nid = r.room_nid"
                 "                   AND t.redacted_because = re.event_id"
                 "  JOIN mxf_rooms tr ON tr.room_nid = t.room_nid");
    if (!mxf_pg_ok(res, "looking up redactions of refilled events")) {
        return 0;
    }
    for (i = 0; i < PQntuples(res); i++) {
        const mxf_roomver_t *rv = mxf_roomver_get(PQgetvalue(res, i, 5));
        if (PQgetvalue(res, i, 1)[0] == 't'
            || !redaction_applies(rv, PQgetvalue(res, i, 2)[0] == 't', PQgetvalue(res, i, 3),
                                  PQgetvalue(res, i, 4))) {
            const char *id = apr_pstrdup(im->p, PQgetvalue(res, i, 0));
            if (!*out) {
                *out = apr_hash_make(im->p);
            }
            APR_ARRAY_PUSH(ids, const char *) = id;
            apr_hash_set(*out, id, APR_HASH_KEY_STRING, id);
        }
    }
    PQclear(res);
    return ids->nelts == 0
           || (mxf_pg_exec(im->conn, "CREATE TEMP TABLE mxf_import_unredacted (event_id text)"
                                     " ON COMMIT DROP")
               && mxf_pg_copy_strings(im->conn, "COPY mxf_import_unredacted FROM STDIN", ids)
               /* The redacted copy stays where the visibility needs it, as
                * write_events() keeps one. */
               && mxf_pg_exec(im->conn,
                              "UPDATE mxf_events e SET redacted_because = NULL,"
                              "       redacted_pdu = CASE WHEN EXISTS ("
                              "           SELECT 1 FROM mxf_visibility v"
                              "            WHERE v.vis_id IN (e.vis_id, e.vis_after_id)"
                              "              AND v.history_visibility IN ('invited', 'joined'))"
                              "       THEN e.redacted_pdu END"
                              "  FROM mxf_import_unredacted u"
                              " WHERE e.event_id = u.event_id"));
}

typedef struct redaction_row {
    apr_int64_t pos;
    int row;
} redaction_row_t;

static int redaction_row_cmp(const void *a, const void *b)
{
    const redaction_row_t *x = a, *y = b;

    return x->pos < y->pos ? -1 : x->pos > y->pos ? 1 : x->row - y->row;
}

/*
 * The rows of apply_redactions()'s statement (column 1: the redaction's
 * number, column 2: its ID) in the order the redactions came: those this
 * import ordered (new or refilled) by that order (ev_t.seq), after those
 * stored before, by number (on the same scale) - so that of two
 * redactions of one event the first recorded is the one a one-file import
 * of the parts records, but where a redaction taken up again applies only
 * now (README: a known exception).
 */
static const redaction_row_t *redaction_order(importer_t *im, const PGresult *res)
{
    int i, n = PQntuples(res);
    redaction_row_t *out = apr_palloc(im->p, sizeof(*out) * (apr_size_t)(n + 1));

    for (i = 0; i < n; i++) {
        const ev_t *re = ev_get(im, PQgetvalue(res, i, 2));
        out[i].row = i;
        out[i].pos = re && !re->known && re->seq
                     ? re->seq : apr_atoi64(PQgetvalue(res, i, 1)) << SEQ_SHIFT;
    }
    qsort(out, (size_t)n, sizeof(*out), redaction_row_cmp);
    return out;
}

/*
 * Applies m.room.redaction events whose targets are known, in either
 * direction: redactions of this import, and earlier redactions of events
 * that arrived now (or whose state, and so the redacter's power, became
 * known now).
 */
static int apply_redactions(importer_t *im, apr_int64_t first_new_nid)
{
    PGresult *res;
    const redaction_row_t *order;
    apr_hash_t *unredacted;
    int i;
    mxf_copy_t rows;
    char first[32];
    const char *params[1];

    if (!unapply_refilled_redactions(im, &unredacted)) {
        return 0;
    }
    im->n_unredacted = unredacted ? apr_hash_count(unredacted) : 0;
    mxf_copy_init(&rows, im->p, 1 << 12);
    apr_snprintf(first, sizeof(first), "%" APR_INT64_T_FMT, first_new_nid);
    params[0] = first;
    /*
     * Redactions and targets of this import have numbers from first_new_nid
     * on; refilled events are listed in mxf_import_refill. (mxf_redactions
     * is small next to mxf_events: every redaction is looked at.) Not of an
     * m.room.create: the reference homeserver ignores those, and a create
     * event served redacted loses its room_version (up to room version 10),
     * which its receivers would then read as "1".
     */
    res = mxf_pg_query(im->conn, apr_pstrcat(im->p,
                 "SELECT t.event_id, r.event_nid, re.event_id, re.sender, r.allowed_by_power,"
                 "       t.sender, t.pdu, tr.room_version"
                 "  FROM mxf_redactions r"
                 "  JOIN mxf_events t ON t.event_id = r.redacts AND t.room_nid = r.room_nid"
                 "  JOIN mxf_events re ON re.event_nid = r.event_nid"
                 "  JOIN mxf_rooms tr ON tr.room_nid = t.room_nid"
                 " WHERE t.redacted_because IS NULL AND re.rejected_reason IS NULL"
                 "   AND t.type <> 'm.room.create'"
                 "   AND (r.event_nid >= $1::bigint OR t.event_nid >= $1::bigint",
                 im->n_refilled
                 ? "        OR r.event_nid IN (SELECT event_nid FROM mxf_import_refill)"
                   "        OR t.event_nid IN (SELECT event_nid FROM mxf_import_refill)" : "",
                 unredacted
                 ? "        OR t.event_id IN (SELECT event_id FROM mxf_import_unredacted)" : "",
                 ")"
                 " ORDER BY r.event_nid", NULL), 1, params);
    if (!res) {
        return 0;
    }
    order = redaction_order(im, res);
    for (i = 0; i < PQntuples(res); i++) {
        int row = order[i].row;
        const char *target_id = PQgetvalue(res, row, 0);
        const char *redaction_id = PQgetvalue(res, row, 2);
        int by_power = PQgetvalue(res, row, 4)[0] == 't';
        const mxf_roomver_t *rv = mxf_roomver_get(PQgetvalue(res, row, 7));
        ev_t *t = ev_get(im, target_id);
        const char *text;

        if (!redaction_applies(rv, by_power, PQgetvalue(res, row, 3), PQgetvalue(res, row, 5))) {
            continue;
        }
        if (t && t->redacted_now) {
            continue;                   /* an earlier redaction applied */
        }
        /* The redacted form encoded while checking, unless the target was
         * stored before (then of its input copy, which is not the one kept). */
        text = t && t->redacted_pre && !t->known && !t->refill ? t->redacted_pre
               : rv ? redacted_text(im, im->p, target_id, PQgetvalue(res, row, 6),
                                    (apr_size_t)PQgetlength(res, row, 6), rv) : NULL;
        if (!text) {
            PQclear(res);
            return 0;
        }
        if (!t) {
            t = apr_pcalloc(im->p, sizeof(*t));
            t->event_id = apr_pstrdup(im->p, target_id);
            apr_hash_set(im->events, t->event_id, APR_HASH_KEY_STRING, t);
        }
        t->redacted_now = 1;
        t->redacted_because = apr_pstrdup(im->p, redaction_id);
        if (unredacted && apr_hash_get(unredacted, target_id, APR_HASH_KEY_STRING)) {
            im->n_unredacted--;         /* redacted by another: not served whole */
        }
        mxf_copy_str(&rows, target_id);
        mxf_copy_str(&rows, text);
        mxf_copy_str(&rows, redaction_id);
        mxf_copy_end(&rows);
        im->n_redacted_by_event++;
    }
    PQclear(res);
    if (rows.rows == 0) {
        return 1;
    }
    return mxf_pg_exec(im->conn,
                       "CREATE TEMP TABLE mxf_import_redact (event_id text, pdu text, because text)"
                       " ON COMMIT DROP")
        && mxf_pg_copy(im->conn, "COPY mxf_import_redact FROM STDIN", &rows)
        && mxf_pg_exec(im->conn,
                       "UPDATE mxf_events e SET redacted_pdu = x.pdu, redacted_because = x.because"
                       "  FROM mxf_import_redact x WHERE e.event_id = x.event_id");
}

/*
 * Links edges to events that arrived in this import (and records in
 * mxf_rooms.depth_monotone a prev_event that is not shallower than its
 * event, here or among this import's own edges).
 */
static int link_edges(importer_t *im)
{
    apr_hash_index_t *hi;

    for (hi = apr_hash_first(im->scratch, im->rooms); hi; hi = apr_hash_next(hi)) {
        room_t *r = apr_hash_this_val(hi);
        char nid[32];
        const char *params[1];
        if (!r->depth_broken || !r->nid) {
            continue;
        }
        apr_snprintf(nid, sizeof(nid), "%" APR_INT64_T_FMT, r->nid);
        params[0] = nid;
        if (!mxf_pg_params(im->conn, "UPDATE mxf_rooms SET depth_monotone = false"
                                     " WHERE room_nid = $1::bigint", 1, params)) {
            return 0;
        }
    }
    return mxf_pg_exec(im->conn,
                       "WITH linked AS ("
                       "  UPDATE mxf_event_edges x SET prev_nid = p.event_nid"
                       "    FROM mxf_events p, mxf_events c"
                       "   WHERE x.prev_nid IS NULL AND p.event_id = x.prev_id"
                       "     AND c.event_nid = x.event_nid AND c.room_nid = p.room_nid"
                       "  RETURNING c.room_nid, c.depth AS depth, p.depth AS prev_depth)"
                       "UPDATE mxf_rooms r SET depth_monotone = false"
                       "  FROM linked l"
                       " WHERE r.room_nid = l.room_nid AND l.prev_depth >= l.depth"
                       "   AND r.depth_monotone")
        && mxf_pg_exec(im->conn,
                       /* and, in the auth chain index, the links they make */
                       "WITH linked AS ("
                       "  UPDATE mxf_auth_edges x SET auth_nid = p.event_nid"
                       "    FROM mxf_events p, mxf_events c"
                       "   WHERE x.auth_nid IS NULL AND p.event_id = x.auth_id"
                       "     AND c.event_nid = x.event_nid AND c.room_nid = p.room_nid"
                       "  RETURNING x.event_nid, x.auth_nid)"
                       "INSERT INTO mxf_auth_chain_links"
                       "  SELECT o.chain_id, o.seq, t.chain_id, t.seq FROM linked l"
                       "    JOIN mxf_auth_chain_pos o ON o.event_nid = l.event_nid"
                       "    JOIN mxf_auth_chain_pos t ON t.event_nid = l.auth_nid"
                       "   WHERE o.chain_id <> t.chain_id");
}

/*
 * mxf_room_servers.acl_allowed of room @a nid (sql/009): the room's current
 * server ACL decided for each server with joined members, as the module
 * decides it (an ACL text that does not parse denies everyone). Nothing to
 * do for a room without an ACL.
 */
static int write_acl_decisions(importer_t *im, const char *nid)
{
    const char *params[2] = { nid, NULL };
    json_t *acl, *allowed;
    PGresult *res;
    int i;

    res = mxf_pg_query(im->conn,
                       "SELECT r.current_acl, s.server_name FROM mxf_rooms r"
                       "  JOIN mxf_room_servers s USING (room_nid)"
                       " WHERE r.room_nid = $1::bigint AND r.current_acl IS NOT NULL", 1, params);
    if (!res) {
        return 0;
    }
    if (PQntuples(res) == 0) {
        PQclear(res);
        return 1;
    }
    acl = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    allowed = json_array();
    for (i = 0; i < PQntuples(res); i++) {
        if (acl && mxf_acl_allows(acl, PQgetvalue(res, i, 1))) {
            json_array_append_new(allowed, json_string(PQgetvalue(res, i, 1)));
        }
    }
    PQclear(res);
    json_decref(acl);
    params[1] = mxf_json_dump(im->p, allowed, NULL);
    json_decref(allowed);
    return params[1] != NULL
           && mxf_pg_params(im->conn,
                            "UPDATE mxf_room_servers"
                            "   SET acl_allowed = server_name = ANY"
                            "       (ARRAY(SELECT jsonb_array_elements_text($2::jsonb)))"
                            " WHERE room_nid = $1::bigint", 2, params);
}

/*
 * The states after the last events of known state of room @a r (stored,
 * accepted, not outliers; no accepted child of known state), pushed onto
 * @a states: the room's last known state when forward extremities are
 * behind a gap. None when no event's state is known.
 */
static int push_last_known_states(importer_t *im, room_t *r, const char *nid,
                                  apr_array_header_t *states)
{
    const char *params[1] = { nid };
    PGresult *res = mxf_pg_query(im->conn,
                                 "SELECT DISTINCT e.state_after FROM mxf_events e"
                                 " WHERE e.room_nid = $1::bigint AND e.state_after IS NOT NULL"
                                 "   AND e.rejected_reason IS NULL AND NOT e.outlier"
                                 "   AND NOT EXISTS (SELECT 1 FROM mxf_event_edges x"
                                 "                     JOIN mxf_events c"
                                 "                       ON c.event_nid = x.event_nid"
                                 "                    WHERE x.prev_nid = e.event_nid"
                                 "                      AND c.rejected_reason IS NULL"
                                 "                      AND c.state_after IS NOT NULL)"
                                 " ORDER BY 1", 1, params);
    int i;

    if (!res) {
        return 0;
    }
    for (i = 0; i < PQntuples(res); i++) {
        apr_int64_t g = apr_atoi64(PQgetvalue(res, i, 0));
        mxf_rs_state_t *st = mxf_rs_find(im->rs, r->rs, g);
        if (!st && !(st = mxf_rs_load(im->rs, r->rs, g))) {
            PQclear(res);
            return 0;
        }
        APR_ARRAY_PUSH(states, mxf_rs_state_t *) = st;
    }
    PQclear(res);
    return 1;
}

/*
 * The current state of each room the import touched: the merge of the
 * states after its forward extremities (for a room new in this import,
 * its events without children; otherwise looked up), or when some are
 * behind a gap, after its last events of known state.
 */
static int update_current_state(importer_t *im, apr_array_header_t *topo)
{
    apr_hash_index_t *hi;
    int i;

    for (hi = apr_hash_first(im->p, im->rooms); hi; hi = apr_hash_next(hi)) {
        room_t *r = apr_hash_this_val(hi);
        char nid[32], gid[32], cnid[32];
        const char *params[2];
        apr_int64_t create_nid = 0;
        int unknown = 0;
        apr_array_header_t *states;
        mxf_rs_state_t *cur;
        const char *why = NULL;

        if (!r->touched) {
            continue;
        }
        states = apr_array_make(im->p, 4, sizeof(mxf_rs_state_t *));
        apr_snprintf(nid, sizeof(nid), "%" APR_INT64_T_FMT, r->nid);
        params[0] = nid;
        if (r->is_new) {
            /* All its events are this import's: the ones without children. */
            for (i = 0; i < topo->nelts; i++) {
                ev_t *e = APR_ARRAY_IDX(topo, i, ev_t *);
                if (e->room == r && !e->rejected && !e->accepted_child && !e->outlier) {
                    if (e->after) {
                        APR_ARRAY_PUSH(states, mxf_rs_state_t *) = e->after;
                    }
                    else {
                        unknown++;
                    }
                }
                if (e->room == r && !strcmp(e->type, "m.room.create") && e->state_key
                    && !*e->state_key) {
                    create_nid = e->nid;
                }
            }
        }
        else {
            PGresult *res = mxf_pg_query(im->conn,
                               "SELECT DISTINCT coalesce(e.state_after, 0) FROM mxf_events e"
                               " WHERE e.room_nid = $1::bigint"
                               "   AND e.rejected_reason IS NULL AND NOT e.outlier"
                               "   AND NOT EXISTS (SELECT 1 FROM mxf_event_edges x"
                               "                     JOIN mxf_events c ON c.event_nid = x.event_nid"
                               "                    WHERE x.prev_nid = e.event_nid"
                               "                      AND c.rejected_reason IS NULL)"
                               " ORDER BY 1", 1, params);
            if (!res) {
                return 0;
            }
            for (i = 0; i < PQntuples(res); i++) {
                apr_int64_t g = apr_atoi64(PQgetvalue(res, i, 0));
                mxf_rs_state_t *s = g ? mxf_rs_find(im->rs, r->rs, g) : NULL;
                if (g && !s && !(s = mxf_rs_load(im->rs, r->rs, g))) {
                    PQclear(res);
                    return 0;
                }
                if (s) {
                    APR_ARRAY_PUSH(states, mxf_rs_state_t *) = s;
                }
                else {
                    unknown++;
                }
            }
            PQclear(res);
        }
        if (create_nid) {
            apr_snprintf(cnid, sizeof(cnid), "%" APR_INT64_T_FMT, create_nid);
            params[1] = cnid;
            if (!mxf_pg_params(im->conn, "UPDATE mxf_rooms SET create_event_nid = $2::bigint"
                                         " WHERE room_nid = $1::bigint", 2, params)) {
                return 0;
            }
        }
        if (unknown) {
            /*
             * Forward extremities whose state is not known (behind a gap in
             * the history imported so far): the room's state is the last
             * one known, from the last events whose state is known - the
             * other forward extremities, and the last events before each
             * gap (a branch whose end is behind a gap counts as far as it
             * is known).
             */
            im->n_rooms_gap++;
            apr_array_clear(states);
            if (!push_last_known_states(im, r, nid, states)) {
                return 0;
            }
        }
        if (states->nelts == 0) {
            /* No event with a known state: the room's is not known. */
            if (!mxf_pg_params(im->conn,
                               "UPDATE mxf_rooms SET current_state_group = NULL,"
                               "  current_acl = NULL WHERE room_nid = $1::bigint", 1, params)
                || !mxf_pg_params(im->conn,
                                  "DELETE FROM mxf_room_servers WHERE room_nid = $1::bigint",
                                  1, params)) {
                return 0;
            }
            continue;
        }
        cur = mxf_rs_merge(im->rs, r->rs, states, &why);
        if (!cur) {
            mxf_cmd_error("the current state of %s cannot be resolved: %s", r->room_id,
                          why ? why : "unknown error");
            return 0;
        }
        apr_snprintf(gid, sizeof(gid), "%" APR_INT64_T_FMT, mxf_rs_state_id(im->rs, cur));
        if (!mxf_rs_flush(im->rs, im->conn)) {
            return 0;
        }
        params[1] = gid;
        if (!mxf_pg_params(im->conn,
                           "UPDATE mxf_rooms SET current_state_group = $2::bigint,"
                           "  current_acl = (SELECT ((CASE WHEN e.redacted_because IS NULL"
                           "                                THEN e.pdu ELSE e.redacted_pdu END)"
                           "                           ::jsonb -> 'content')::text"
                           "                   FROM mxf_state_of($2::bigint) s"
                           "                   JOIN mxf_events e USING (event_nid)"
                           "                  WHERE s.type = 'm.room.server_acl' AND s.state_key = '')"
                           " WHERE room_nid = $1::bigint", 2, params)
            || !mxf_pg_params(im->conn, "DELETE FROM mxf_room_servers WHERE room_nid = $1::bigint",
                              1, params)
            || !mxf_pg_params(im->conn,
                              "INSERT INTO mxf_room_servers (room_nid, server_name, joined)"
                              " SELECT $1::bigint,"
                              "        substr(s.state_key, strpos(s.state_key, ':') + 1), count(*)"
                              "   FROM mxf_state_of($2::bigint) s JOIN mxf_events e USING (event_nid)"
                              "  WHERE s.type = 'm.room.member' AND e.membership = 'join'"
                              "    AND strpos(s.state_key, ':') > 0"
                              "  GROUP BY 2", 2, params)
            || !write_acl_decisions(im, nid)) {
            return 0;
        }
    }
    return 1;
}

/* ------------------------------------------------------------------ main */


static double secs_since(apr_time_t t0)
{
    return (double)(apr_time_now() - t0) / APR_USEC_PER_SEC;
}

static void progress(importer_t *im, long done, long total, apr_time_t start, int final)
{
    double secs = secs_since(start);
    double rate = secs > 0 ? done / secs : 0;

    if (!im->progress) {
        return;
    }
    fprintf(stderr, "\rmatrix-fed: import: wrote %ld/%ld events, %.0f events/s, ETA %.0f s   %s",
            done, total, rate, rate > 0 ? (total - done) / rate : 0.0, final ? "\n" : "");
}

/*
 * State, visibility and redacted form of each ordered event, in batches
 * handed to the writer thread (two batches: one written, one filled).
 */
static int compute_events(importer_t *im, apr_array_header_t *topo, batch_t *batches)
{
    apr_array_header_t *parents = apr_array_make(im->p, 8, sizeof(mxf_rs_state_t *));
    batch_t *cur = &batches[0];
    apr_time_t start = apr_time_now();
    int i;

    for (i = 0; i < topo->nelts; i++) {
        ev_t *e = APR_ARRAY_IDX(topo, i, ev_t *);
        int restricted, need_text, k;

        if (atomic_load(&im->sig_failed)) {
            return 0;                   /* reported by verify_finish() */
        }
        cache_trim(im);
        if (!compute_state(im, e, parents)) {
            return 0;
        }
        for (k = 0; !e->rejected && k < e->n_prevs; k++) {
            ev_t *parent = ev_get(im, e->prevs[k]);
            if (parent && parent->room == e->room) {
                parent->accepted_child = 1;
            }
        }
        if (e->redacts) {
            e->by_power = redaction_by_power(e) != 0;
            if (!e->rejected && e->before && !mark_pruned(im, e)) {
                mxf_cmd_error("reading events from the database failed while applying %s",
                              e->event_id);
                return 0;
            }
        }
        /* Served redacted when its visibility is restricted (an event whose
         * state is not known, behind a gap, is served whole: sql/014). */
        restricted = (e->before && mxf_rs_vis_restricted(e->before))
                     || (e->after && mxf_rs_vis_restricted(e->after));
        if (e->refill) {
            need_text = restricted && !e->had_redacted;
        }
        else {
            if (e->hash_mismatch) {
                e->redacted_because = "content-hash";
                im->n_redacted_hash++;
            }
            need_text = e->hash_mismatch || restricted;
            im->n_sig_verified += e->sigs_verified;
            im->n_sig_unverifiable += !e->sigs_verified;
        }
        e->redacted_pdu = NULL;
        if (need_text && e->redacted_pre && !e->refill) {
            e->redacted_pdu = e->redacted_pre;  /* (a refill's is of its input copy) */
        }
        else if (need_text
                 && !(e->redacted_pdu = redacted_text(im, cur->pool, e->event_id, e->pdu,
                                                      e->pdu_len, e->room->rv))) {
            return 0;
        }
        if (e->refill) {
            im->n_refill_known += e->before != NULL;
            add_refill_row(im, cur, e);
        }
        else {
            add_event_row(im, cur, e);
        }
        if (cur->n >= im->batch_events) {
            if (!submit_batch(im, cur)) {
                return 0;
            }
            /* The other batch was written (submit_batch() waited for it). */
            cur = cur == &batches[0] ? &batches[1] : &batches[0];
            apr_pool_clear(cur->pool);
            batch_reset(cur, cur->pool);
            progress(im, i + 1, topo->nelts, start, 0);
        }
        e->redacted_pdu = NULL;         /* gone with the batch */
    }
    if (!submit_batch(im, cur)) {
        return 0;
    }
    progress(im, topo->nelts, topo->nelts, start, 1);
    return 1;
}

/* compute_events() with the writer thread; then the refilled events' rows. */
static int write_events(importer_t *im, apr_array_header_t *topo)
{
    batch_t batches[2];
    writer_t writer;
    apr_pool_t *pools[2];
    int ok, k;

    if (im->n_refilled
        && !mxf_pg_exec(im->conn,
                        "CREATE TEMP TABLE mxf_import_refill (event_nid bigint, state_before bigint,"
                        " state_after bigint, vis_id bigint, vis_after_id bigint,"
                        " redacted_pdu text, by_power boolean, rejected_reason text,"
                        " redacts text, seq bigint)"
                        " ON COMMIT DROP")) {
        return 0;
    }
    for (k = 0; k < 2; k++) {
        apr_pool_create(&pools[k], im->p);
        batch_reset(&batches[k], pools[k]);
    }
    if (!writer_start(im, &writer)) {
        im->writer = NULL;              /* no thread: batches written in turn */
    }
    ok = compute_events(im, topo, batches);
    ok = writer_stop(im) && ok;
    for (k = 0; k < 2; k++) {
        apr_pool_destroy(pools[k]);
    }
    return ok && update_refilled(im);
}

/*
 * Numbers the new events of @a topo (in its order, from @a first_new_nid)
 * and gives every event of it its place in the order of auth edges
 * (ev_t.seq, sql/022), above every stored event's: a new event's number
 * shifted by SEQ_SHIFT, as later imports read it; a refilled event (which
 * keeps its number) one above the event before it, which later imports
 * read from the row update_refilled() writes. Events of unknown state
 * stored by earlier imports may cite auth events stored after them: so
 * their numbers alone did not follow auth edges.
 */
static int assign_numbers(importer_t *im, apr_array_header_t *topo, apr_int64_t first_new_nid)
{
    apr_int64_t last = (first_new_nid - 1) << SEQ_SHIFT, step = 0, top;
    PGresult *res = PQexec(im->conn, "SELECT coalesce(max(seq), 0) FROM mxf_event_seq");
    int i;

    if (!mxf_pg_ok(res, "reading the order of stored events")) {
        return 0;
    }
    top = apr_atoi64(PQgetvalue(res, 0, 0));
    PQclear(res);
    if (top > last) {
        step = top - last;              /* refilled events of an earlier import, last */
    }
    for (i = 0; i < topo->nelts; i++) {
        ev_t *e = APR_ARRAY_IDX(topo, i, ev_t *);
        if (!e->refill) {
            e->nid = im->next_event_nid++;
            e->seq = last = e->nid << SEQ_SHIFT;
            step = 0;
            im->n_new++;
        }
        else if (++step >= ((apr_int64_t)1 << SEQ_SHIFT)) {
            mxf_cmd_error("more than %ld stored events to take up again before one new event",
                          (long)(((apr_int64_t)1 << SEQ_SHIFT) - 1));
            return 0;
        }
        else {
            e->seq = last + step;
        }
        e->room->touched = 1;
    }
    return 1;
}

static int run_import(importer_t *im, const char *buf, apr_size_t len)
{
    apr_array_header_t *topo;
    apr_hash_index_t *hi;
    apr_int64_t first_new_nid;
    PGresult *res;
    int i;

    if ((im->lines = split_input(im, buf, len)) == NULL) {
        return 0;
    }
    im->n_lines = im->lines->nelts;
    if (!load_rooms(im)) {
        return 0;
    }
    scan_creates(im);
    scan_visibility(im);
    if (!check_all(im)) {
        return 0;
    }
    im->t_checked = apr_time_now();
    im->c_checked = cpu_now();
    /* im->order only grows from here on (refills, which have nothing to verify). */
    if (!verify_start(im, (ev_t **)im->order->elts, im->order->nelts)) {
        return 0;
    }
    /* Above every recorded arrival (those of sql/021's own rows included). */
    res = PQexec(im->conn, "SELECT coalesce(max(arrival >> 32), 0) + 1 FROM mxf_event_arrival");
    if (!mxf_pg_ok(res, "reading import numbers")) {
        return 0;
    }
    im->arrival_base = apr_atoi64(PQgetvalue(res, 0, 0)) << 32;
    PQclear(res);
    if (!load_known(im) || !load_refills(im) || !prune_by_stored_redactions(im)) {
        return 0;
    }
    topo = topo_order(im);
    if (im->errors) {
        return 0;
    }

    /* Identifiers: this import holds the import lock, so max + 1 is ours. */
    res = PQexec(im->conn, "SELECT coalesce(max(event_nid), 0) + 1 FROM mxf_events");
    if (!mxf_pg_ok(res, "reading event numbers")) {
        return 0;
    }
    first_new_nid = im->next_event_nid = apr_atoi64(PQgetvalue(res, 0, 0));
    PQclear(res);
    res = PQexec(im->conn, "SELECT coalesce(max(room_nid), 0) + 1 FROM mxf_rooms");
    if (!mxf_pg_ok(res, "reading room numbers")) {
        return 0;
    }
    im->next_room_nid = apr_atoi64(PQgetvalue(res, 0, 0));
    PQclear(res);
    res = PQexec(im->conn, "SELECT coalesce(max(chain_id), 0) + 1 FROM mxf_auth_chain_pos");
    if (!mxf_pg_ok(res, "reading auth chain numbers")) {
        return 0;
    }
    im->first_chain = apr_atoi64(PQgetvalue(res, 0, 0));
    PQclear(res);
    im->chain_len = apr_array_make(im->p, 1024, sizeof(int));
    im->chain_links = apr_hash_make(im->p);
    if (!(im->rs = mxf_rs_create(im->p, im->conn))) {
        return 0;
    }
    {
        mxf_rs_resolver_t resolver;
        resolver.resolve = rs_resolve;
        resolver.value_of = rs_value_of;
        resolver.baton = im;
        mxf_rs_set_resolver(im->rs, &resolver);
    }
    for (hi = apr_hash_first(im->p, im->rooms); hi; hi = apr_hash_next(hi)) {
        room_t *r = apr_hash_this_val(hi);
        mxf_rs_room_t **key;
        if (r->is_new) {
            r->nid = im->next_room_nid++;
        }
        r->rs = mxf_rs_room(im->rs, r->nid, r->rv);
        key = apr_pmemdup(im->p, &r->rs, sizeof(r->rs));
        apr_hash_set(im->rs_rooms, key, sizeof(*key), r);
    }
    if (!assign_numbers(im, topo, first_new_nid)) {
        return 0;
    }
    index_auth_kids(im, topo);
    for (i = 0; i < im->order->nelts; i++) {
        ev_t *e = APR_ARRAY_IDX(im->order, i, ev_t *);
        im->n_known += e->known || (e->refill && e->line <= im->n_lines);
    }
    im->t_ordered = apr_time_now();
    im->c_ordered = cpu_now();
    if (!write_rooms(im) || !write_events(im, topo)) {
        return 0;
    }
    im->t_written = apr_time_now();
    im->c_written = cpu_now();
    return apply_redactions(im, first_new_nid) && link_edges(im)
           && update_current_state(im, topo);
}

/*
 * Takes the import lock (imports into one database run one at a time: the
 * identifiers and the look-ups of known events assume no other import
 * writes meanwhile). When another import holds it, says so - with that
 * import's PostgreSQL backend, for pg_stat_activity or pg_terminate_backend()
 * - and waits. 0 (reported) on failure.
 */
static int take_import_lock(PGconn *conn)
{
    PGresult *res = PQexec(conn, "SELECT pg_try_advisory_xact_lock(" MXF_PG_IMPORT_LOCK ")");
    int got;

    if (!mxf_pg_ok(res, "taking the import lock")) {
        return 0;
    }
    got = PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    if (got) {
        return 1;
    }
    /*
     * Who holds it (a bigint key is shown as its high half, classid, and
     * low half, objid), in a savepoint: a failure here loses only the pid.
     */
    if (!mxf_pg_exec(conn, "SAVEPOINT mxf_lock_holder")) {
        return 0;
    }
    res = PQexec(conn, "SELECT pid FROM pg_locks"
                       " WHERE locktype = 'advisory' AND granted AND objsubid = 1"
                       "   AND database = (SELECT oid FROM pg_database"
                       "                    WHERE datname = current_database())"
                       "   AND (classid::bigint << 32 | objid::bigint) = " MXF_PG_IMPORT_LOCK
                       "   AND pid IS NOT NULL LIMIT 1");
    if (res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
        fprintf(stderr, "matrix-fed: import: waiting for another import into this database"
                " (PostgreSQL backend pid %s) to end\n", PQgetvalue(res, 0, 0));
    }
    else {
        fprintf(stderr, "matrix-fed: import: waiting for another import into this database"
                " to end\n");
    }
    got = res && PQresultStatus(res) == PGRES_TUPLES_OK;
    PQclear(res);
    fflush(stderr);
    if (!mxf_pg_exec(conn, got ? "RELEASE SAVEPOINT mxf_lock_holder"
                               : "ROLLBACK TO SAVEPOINT mxf_lock_holder")) {
        return 0;
    }
    return mxf_pg_exec(conn, "SELECT pg_advisory_xact_lock(" MXF_PG_IMPORT_LOCK ")");
}

static void import_usage(FILE *out)
{
    fputs("Usage: matrix-fed import --db CONNINFO [--keys FILE ...] [--require-signatures]\n"
          "                         [--threads N] [--batch-events N] [--quiet]\n"
          "                         [FILE.jsonl | FILE.json | -]\n"
          "  Loads federation PDUs, in any order, into the database: one JSON object\n"
          "  per line, or JSON arrays of PDUs and federation responses holding them\n"
          "  (\"pdus\", \"auth_chain\", \"state\", \"events\", \"event\"), on one line\n"
          "  or over many. --keys FILE holds /_matrix/key/v2/server or notary\n"
          "  (/_matrix/key/v2/query) responses (one JSON object, an array of them, or\n"
          "  one per line); they are verified and stored. --require-signatures\n"
          "  refuses a PDU whose signatures cannot be checked (a signing server's\n"
          "  key not known); without it, such a PDU is stored as unverified.\n"
          "  --quiet: no progress display (the summary is still printed).\n"
          "  Lines are checked in N threads (1-32, default: one per CPU). Rows are\n"
          "  written in rounds of --batch-events events (1-1000000, default 5000),\n"
          "  each while the next is computed.\n"
          "  The import is one transaction: on any error nothing is written. Imports\n"
          "  into one database run one at a time (a waiting import says so).\n", out);
}

int mxf_cmd_import(apr_pool_t *p, int argc, const char *const *argv)
{
    importer_t im;
    const char *conninfo = NULL, *input = NULL;
    apr_array_header_t *keyfiles = apr_array_make(p, 2, sizeof(const char *));
    const char *buf;
    apr_size_t len;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int i, ok, quiet = 0;
    double total;

    memset(&im, 0, sizeof(im));
    im.threads = ncpu > 0 ? (int)(ncpu < MAX_THREADS ? ncpu : MAX_THREADS) : 1;
    im.batch_events = BATCH_EVENTS;
    for (i = 1; i < argc; i++) {
        const char *v = NULL;
        int got;

        if ((got = mxf_cmd_opt_value(argc, argv, &i, "--db", &v)) != 0) {
            if (got < 0) {
                return MXF_EXIT_USAGE;
            }
            conninfo = v;
        }
        else if ((got = mxf_cmd_opt_value(argc, argv, &i, "--keys", &v)) != 0) {
            if (got < 0) {
                return MXF_EXIT_USAGE;
            }
            APR_ARRAY_PUSH(keyfiles, const char *) = v;
        }
        else if ((got = mxf_cmd_opt_value(argc, argv, &i, "--threads", &v)) != 0) {
            char *end;
            long n = got < 0 ? 0 : strtol(v, &end, 10);
            if (got < 0) {
                return MXF_EXIT_USAGE;
            }
            if (*end || n < 1 || n > MAX_THREADS) {
                mxf_cmd_error("import: --threads takes 1 to %d", MAX_THREADS);
                return MXF_EXIT_USAGE;
            }
            im.threads = (int)n;
        }
        else if ((got = mxf_cmd_opt_value(argc, argv, &i, "--batch-events", &v)) != 0) {
            char *end;
            long n = got < 0 ? 0 : strtol(v, &end, 10);
            if (got < 0) {
                return MXF_EXIT_USAGE;
            }
            if (*end || n < 1 || n > MAX_BATCH_EVENTS) {
                mxf_cmd_error("import: --batch-events takes 1 to %d", MAX_BATCH_EVENTS);
                return MXF_EXIT_USAGE;
            }
            im.batch_events = (int)n;
        }
        else if (!strcmp(argv[i], "--require-signatures")) {
            im.require_signatures = 1;
        }
        else if (!strcmp(argv[i], "--quiet") || !strcmp(argv[i], "-q")) {
            quiet = 1;
        }
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            import_usage(stdout);
            return MXF_EXIT_OK;
        }
        else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            mxf_cmd_error("import: unknown option '%s'", argv[i]);
            import_usage(stderr);
            return MXF_EXIT_USAGE;
        }
        else if (!input) {
            input = argv[i];
        }
        else {
            mxf_cmd_error("import: only one input file");
            return MXF_EXIT_USAGE;
        }
    }
    if (!conninfo) {
        mxf_cmd_error("import needs --db CONNINFO");
        import_usage(stderr);
        return MXF_EXIT_USAGE;
    }
    input = input ? input : "-";
    im.p = p;
    apr_pool_create(&im.scratch, p);
    im.source = strcmp(input, "-") ? input : "<stdin>";
    im.progress = !quiet && isatty(2);
    im.rooms = apr_hash_make(p);
    im.events = apr_hash_make(p);
    im.order = apr_array_make(p, 1024, sizeof(ev_t *));
    im.rs_rooms = apr_hash_make(p);
    im.absent = apr_hash_make(p);
    im.cached = apr_array_make(p, 1024, sizeof(ev_t *));
    apr_pool_create(&im.cache, p);
    apr_pool_create(&im.authp, p);
    im.t_start = apr_time_now();
    im.c_start = cpu_now();

    if (read_input(p, input, &buf, &len) != APR_SUCCESS) {
        return MXF_EXIT_FAILURE;
    }
    if (!(im.conn = mxf_pg_connect(conninfo))) {
        return MXF_EXIT_FAILURE;
    }
    ok = mxf_pg_exec(im.conn, "BEGIN")
         && take_import_lock(im.conn);
    if (ok) {
        im.keys = mxf_keystore_open(p, im.conn);
        ok = im.keys != NULL;
    }
    for (i = 0; ok && i < keyfiles->nelts; i++) {
        ok = mxf_keystore_add_file(im.keys, APR_ARRAY_IDX(keyfiles, i, const char *));
    }
    ok = ok && run_import(&im, buf, len);
    if (!ok && !atomic_load(&im.sig_failed)) {
        /* Failed for another reason: the verifications left are of no use. */
        atomic_store(&im.next_verify, im.n_verify);
    }
    ok = verify_finish(&im, 1) && ok;
    if (ok) {
        ok = mxf_pg_exec(im.conn, "COMMIT");
        /*
         * Fresh planner statistics: the read path's walks get bad plans on
         * tables that grew a lot since they were last analysed (autovacuum
         * would get there, but only later). A failure here loses nothing.
         */
        if (ok && im.n_new > 0
            && !mxf_pg_exec(im.conn, "ANALYZE mxf_events, mxf_event_edges, mxf_auth_edges,"
                                     " mxf_state_groups, mxf_state_entries, mxf_visibility,"
                                     " mxf_redactions, mxf_rooms, mxf_room_servers,"
                                     " mxf_auth_chain_pos, mxf_auth_chain_links")) {
            mxf_cmd_error("the import is complete, but ANALYZE failed; run it by hand");
        }
    }
    else {
        PQclear(PQexec(im.conn, "ROLLBACK"));
    }
    PQfinish(im.conn);
    if (!ok) {
        mxf_cmd_error("import failed%s; the database is unchanged",
                      im.errors ? apr_psprintf(p, " (%d bad line%s)", im.errors,
                                               im.errors == 1 ? "" : "s") : "");
        return MXF_EXIT_FAILURE;
    }
    total = secs_since(im.t_start);
    printf("imported %ld new events (%ld PDUs; %ld already known, %ld repeated in the input)\n"
           "  redacted: %ld by content hash mismatch, %ld by m.room.redaction\n"
           "  signatures: %ld verified, %ld unverifiable (no key known)\n",
           im.n_new, im.n_lines, im.n_known, im.n_dup, im.n_redacted_hash,
           im.n_redacted_by_event, im.n_sig_verified, im.n_sig_unverifiable);
    {
        long resolved = 0, differing = 0;
        if (im.rs) {
            mxf_rs_merge_stats(im.rs, &resolved, &differing);
        }
        printf("  auth rules: %ld rejected (%ld for auth events not known)\n"
               "  state resolution: %ld merges of differing states (%ld keys differing,"
               " %ld events in full conflicted sets, %ld events read)\n",
               im.n_rejected, im.n_rejected_unknown_auth, resolved, differing,
               im.n_sr_full_conflicted, im.n_sr_fetched);
    }
    if (im.n_chains || im.n_chain_links) {
        printf("  auth chain index: %ld new chains, %ld links\n", im.n_chains,
               im.n_chain_links);
    }
    if (im.n_refilled) {
        printf("  state now known for %ld of the %ld stored events that were missing"
               " prev_events\n", im.n_refill_known, im.n_refilled);
    }
    if (im.n_unredacted) {
        printf("  redactions taken back: %ld events that redactions judged again now no"
               " longer redact\n", im.n_unredacted);
    }
    if (im.n_dup_other) {
        printf("  %ld event%s repeated with other bytes: one copy kept (the one whose content"
               " hash matches, else the first)\n", im.n_dup_other, im.n_dup_other == 1 ? "" : "s");
    }
    if (im.n_altered_kept) {
        printf("  %ld event%s stored as altered cop%s (content hash mismatch) given again with"
               " %s matching content: the stored cop%s kept, served redacted (see README)\n",
               im.n_altered_kept, im.n_altered_kept == 1 ? "" : "s",
               im.n_altered_kept == 1 ? "y" : "ies", im.n_altered_kept == 1 ? "its" : "their",
               im.n_altered_kept == 1 ? "y is" : "ies are");
    }
    if (im.n_sig_now_verified) {
        printf("  %ld event%s stored before with signatures unverified (no key known then):"
               " verified now, and marked so\n", im.n_sig_now_verified,
               im.n_sig_now_verified == 1 ? "" : "s");
    }
    if (im.n_event_id_taken) {
        printf("  %ld PDUs of room version 3 or later carried their event_id: stored"
               " without it\n", im.n_event_id_taken);
    }
    if (im.n_id_clash) {
        printf("  %ld event%s of room version 1 or 2 with the ID of another room's event:"
               " dropped (the first one known keeps the ID)\n", im.n_id_clash,
               im.n_id_clash == 1 ? "" : "s");
    }
    if (im.n_given_state) {
        printf("  %ld event%s given the state before %s by a /send_join answer (%s prev_events"
               " not known)\n", im.n_given_state, im.n_given_state == 1 ? "" : "s",
               im.n_given_state == 1 ? "it" : "them", im.n_given_state == 1 ? "its" : "their");
    }
    if (im.n_local_taken) {
        printf("  %ld PDUs carried values servers do not share (in unsigned, or top-level"
               " age_ts, outlier, destinations): stored without them\n", im.n_local_taken);
    }
    if (im.n_rooms_gap) {
        printf("  current state: %ld room(s) with forward extremities behind missing"
               " prev_events, resolved from the last events of known state\n",
               im.n_rooms_gap);
    }
    printf("  time: %.2f s (checked %.2f s with %d threads, ordered %.2f s, written %.2f s,"
           " finished %.2f s); %.0f events/s\n", total,
           (double)(im.t_checked - im.t_start) / APR_USEC_PER_SEC, im.threads,
           (double)(im.t_ordered - im.t_checked) / APR_USEC_PER_SEC,
           (double)(im.t_written - im.t_ordered) / APR_USEC_PER_SEC,
           secs_since(im.t_written), total > 0 ? im.n_new / total : 0.0);
    printf("  cpu: %.2f s of the importer (checked %.2f s, ordered %.2f s, written %.2f s"
           " of which state resolution %.2f s, finished %.2f s; signatures verified alongside"
           " the ordering and writing: %.2f s; PostgreSQL's not included)\n",
           cpu_now() - im.c_start, im.c_checked - im.c_start, im.c_ordered - im.c_checked,
           im.c_written - im.c_ordered, im.c_resolving, cpu_now() - im.c_written, im.c_verify);
    if (im.n_batches) {
        printf("  writing: %ld rounds of up to %d events, each while the next was computed;"
               " waited %.2f s for them\n", im.n_batches, im.batch_events,
               (double)im.t_writer_waits / APR_USEC_PER_SEC);
    }
    if (im.n_new == 0 && im.n_refilled == 0) {
        printf("nothing new: the database already had every event\n");
    }
    return MXF_EXIT_OK;
}
