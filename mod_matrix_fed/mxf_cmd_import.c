/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * matrix-fed import: loads federation-format PDUs (one per line, any order,
 * one or several rooms) into the room DAG schema.
 *
 * The whole import is one transaction: it either lands completely or leaves
 * the database as it was. Steps:
 *   1. read the input; find the rooms' m.room.create events (room versions);
 *   2. parse and check every line (strict JSON for the room version, size
 *      limits, event ID, content hash, signatures of the required servers);
 *      every bad line is reported with its number before anything is written;
 *   3. order the events topologically (ties: input order), skipping events
 *      the database already has;
 *   4. compute the state before and after each event and the visibility
 *      stretch it belongs to (mxf_roomstate), writing rows in batches;
 *   5. apply redactions, link edges to events that arrived late, and set
 *      each room's current state, ACL and joined servers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <apr_hash.h>
#include <apr_strings.h>
#include <apr_tables.h>
#include <libpq-fe.h>

#include "mxf_base64.h"
#include "mxf_canonical.h"
#include "mxf_cmd.h"
#include "mxf_cmd_pg.h"
#include "mxf_event.h"
#include "mxf_json.h"
#include "mxf_keystore.h"
#include "mxf_roomstate.h"
#include "mxf_roomver.h"

/* Events written per COPY round. */
#define BATCH_EVENTS 5000
/* Bad lines reported before giving up on listing more. */
#define MAX_REPORTED 50

typedef struct room {
    const char *room_id;
    apr_int64_t nid;
    const mxf_roomver_t *rv;
    int is_new;
    int touched;
    mxf_rs_room_t *rs;
} room_t;

typedef struct ev {
    const char *event_id;
    apr_int64_t nid;
    room_t *room;
    json_t *json;
    const char *type, *state_key, *sender, *membership, *redacts;
    apr_int64_t depth, ts;
    const char *pdu;
    apr_size_t pdu_len;
    long line;
    apr_array_header_t *prevs;          /* const char * */
    apr_array_header_t *auths;          /* const char * */
    apr_array_header_t *children;       /* struct ev * (in this import) */
    int pending;                        /* parents in this import not yet ordered */
    int known;                          /* already in the database */
    int hash_mismatch;
    int sigs_verified;
    apr_int64_t db_state_after;         /* known events: their state group (0: none) */
    mxf_rs_state_t *before, *after;     /* NULL: state unknown */
    const char *redacted_pdu, *redacted_because;
    int redaction_by_power;
} ev_t;

typedef struct importer {
    apr_pool_t *p;
    PGconn *conn;
    mxf_keystore_t *keys;
    int require_signatures;
    int progress;
    const char *source;
    apr_hash_t *rooms;                  /* room_id -> room_t */
    apr_hash_t *events;                 /* event_id -> ev_t (new and known) */
    apr_array_header_t *order;          /* ev_t *, new events in input order */
    int errors;
    /* ids */
    apr_int64_t next_event_nid, next_room_nid;
    mxf_rs_ctx_t *rs;
    /* summary */
    long n_lines, n_new, n_known, n_dup, n_redacted_hash, n_redacted_by_event,
         n_sig_verified, n_sig_unverifiable;
} importer_t;

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
    fprintf(stderr, "matrix-fed: import: %s:%ld: ", im->source, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* ------------------------------------------------------------------ input */

static apr_status_t read_input(apr_pool_t *p, const char *path, char **buf, apr_size_t *len)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    apr_size_t cap = 1 << 20, n = 0;
    char *data;

    if (!f) {
        mxf_cmd_error("cannot open %s", path);
        return APR_ENOENT;
    }
    data = malloc(cap);
    for (;;) {
        size_t got;
        if (n + 1 >= cap) {
            char *bigger = realloc(data, cap * 2);
            if (!bigger) {
                free(data);
                mxf_cmd_error("out of memory reading %s", path);
                return APR_ENOMEM;
            }
            data = bigger;
            cap *= 2;
        }
        got = fread(data + n, 1, cap - n - 1, f);
        if (got == 0) {
            break;
        }
        n += got;
    }
    if (ferror(f)) {
        free(data);
        mxf_cmd_error("cannot read %s", path);
        return APR_EGENERAL;
    }
    if (f != stdin) {
        fclose(f);
    }
    data[n] = '\0';
    /* The buffer lives as long as the import; hand it to the pool. */
    *buf = apr_pmemdup(p, data, n + 1);
    free(data);
    *len = n;
    return APR_SUCCESS;
}

typedef struct line {
    const char *text;
    apr_size_t len;
    long no;
} line_t;

static apr_array_header_t *split_lines(apr_pool_t *p, const char *buf, apr_size_t len)
{
    apr_array_header_t *lines = apr_array_make(p, 1024, sizeof(line_t));
    const char *s = buf, *end = buf + len;
    long no = 0;

    while (s < end) {
        const char *nl = memchr(s, '\n', (apr_size_t)(end - s));
        const char *e = nl ? nl : end;
        line_t *l;

        no++;
        if (e > s && e[-1] == '\r') {
            e--;
        }
        if (e > s) {
            l = apr_array_push(lines);
            l->text = s;
            l->len = (apr_size_t)(e - s);
            l->no = no;
        }
        s = nl ? nl + 1 : end;
    }
    return lines;
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
    return 1;
}

static const char *jstr(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

/* Finds the m.room.create events of the input: they give room versions. */
static void scan_creates(importer_t *im, apr_array_header_t *lines)
{
    int i;

    for (i = 0; i < lines->nelts; i++) {
        line_t *l = &APR_ARRAY_IDX(lines, i, line_t);
        json_t *j;
        const char *why, *version, *room_id;
        const mxf_roomver_t *rv;
        room_t *r;
        apr_pool_t *tmp;

        if (!mxf_memmem(l->text, l->len, "\"m.room.create\"")) {
            continue;
        }
        apr_pool_create(&tmp, im->p);
        if (mxf_json_parse(tmp, l->text, l->len, 0, &j, &why) != APR_SUCCESS
            || !jstr(j, "type") || strcmp(jstr(j, "type"), "m.room.create") != 0
            || !jstr(j, "state_key") || *jstr(j, "state_key")) {
            apr_pool_destroy(tmp);
            continue;                   /* reported in the main pass */
        }
        version = json_is_object(json_object_get(j, "content"))
                  ? jstr(json_object_get(j, "content"), "room_version") : NULL;
        if (!version) {
            version = "1";             /* the spec's default */
        }
        if ((rv = mxf_roomver_get(version)) == NULL) {
            bad_line(im, l->no, "m.room.create names unknown room version '%s'", version);
            apr_pool_destroy(tmp);
            continue;
        }
        room_id = rv->room_id_is_create_hash
                  ? mxf_event_room_id_from_create(im->p, j, rv, &why)
                  : jstr(j, "room_id");
        if (!room_id) {
            bad_line(im, l->no, "m.room.create without a usable room ID%s%s",
                     rv->room_id_is_create_hash ? ": " : "",
                     rv->room_id_is_create_hash ? why : "");
            apr_pool_destroy(tmp);
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
        apr_pool_destroy(tmp);
    }
}

/* ------------------------------------------------------------------ events */

/* Event IDs listed in prev_events / auth_events (pairs in v1 and v2). */
static apr_array_header_t *ref_list(importer_t *im, const json_t *list, int pairs,
                                    const char **why)
{
    apr_array_header_t *out;
    size_t i;
    json_t *item;

    if (!json_is_array(list)) {
        *why = "is not an array";
        return NULL;
    }
    out = apr_array_make(im->p, (int)json_array_size(list), sizeof(const char *));
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
        APR_ARRAY_PUSH(out, const char *) = id;
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

static apr_status_t key_lookup(void *baton, apr_pool_t *p, const char *server_name,
                               const char *key_id, apr_int64_t ts,
                               const mxf_roomver_t *rv,
                               unsigned char pk[MXF_ED25519_PK_BYTES])
{
    importer_t *im = baton;

    return mxf_keystore_lookup(im->keys, server_name, key_id, ts,
                               rv->enforce_key_validity, pk);
}

/* Parses and checks one line; NULL (reported) when it cannot be imported. */
static ev_t *check_line(importer_t *im, const line_t *l)
{
    ev_t *e = apr_pcalloc(im->p, sizeof(*e));
    const char *why = NULL, *room_id;
    json_t *j, *content;
    room_t *r;
    apr_status_t rv;

    e->line = l->no;
    e->pdu = l->text;
    e->pdu_len = l->len;
    if (mxf_json_parse(im->p, l->text, l->len, 0, &j, &why) != APR_SUCCESS) {
        bad_line(im, l->no, "not a JSON object: %s", why);
        return NULL;
    }
    e->json = j;
    e->type = jstr(j, "type");
    if (!e->type) {
        bad_line(im, l->no, "no \"type\"");
        return NULL;
    }
    room_id = jstr(j, "room_id");
    if (!room_id && !strcmp(e->type, "m.room.create")) {
        /* v12: the create event carries no room ID; it is its hash. */
        apr_hash_index_t *hi;
        for (hi = apr_hash_first(im->p, im->rooms); hi; hi = apr_hash_next(hi)) {
            room_t *cand = apr_hash_this_val(hi);
            if (cand->rv->room_id_is_create_hash) {
                const char *derived = mxf_event_room_id_from_create(im->p, j, cand->rv, &why);
                if (derived && !strcmp(derived, cand->room_id)) {
                    room_id = cand->room_id;
                    break;
                }
            }
        }
    }
    if (!room_id) {
        bad_line(im, l->no, "no \"room_id\"");
        return NULL;
    }
    if ((r = room_get(im, room_id)) == NULL) {
        bad_line(im, l->no, "room %s has no m.room.create event in the input or the database",
                 room_id);
        return NULL;
    }
    e->room = r;
    if (r->rv->strict_canonical_json && mxf_json_check_ints(j, &why) != APR_SUCCESS) {
        bad_line(im, l->no, "not canonical JSON for room version %s: %s", r->rv->id, why);
        return NULL;
    }
    if (mxf_event_check_limits(im->p, j, r->rv, MXF_EVENT_LIMITS_NO_EDGE_COUNTS, &why)
        != APR_SUCCESS) {
        bad_line(im, l->no, "%s", why);
        return NULL;
    }
    if ((e->event_id = mxf_event_id_compute(im->p, j, r->rv, &why)) == NULL) {
        bad_line(im, l->no, "event ID: %s", why);
        return NULL;
    }
    e->sender = jstr(j, "sender");
    if (!e->sender) {
        bad_line(im, l->no, "no \"sender\"");
        return NULL;
    }
    if (!int_field(j, "depth", &e->depth) || e->depth < 0) {
        bad_line(im, l->no, "\"depth\" is missing or not a non-negative integer");
        return NULL;
    }
    if (!int_field(j, "origin_server_ts", &e->ts)) {
        bad_line(im, l->no, "\"origin_server_ts\" is missing or not an integer");
        return NULL;
    }
    if (json_object_get(j, "state_key")) {
        if (!(e->state_key = jstr(j, "state_key"))) {
            bad_line(im, l->no, "\"state_key\" is not a string");
            return NULL;
        }
    }
    content = json_object_get(j, "content");
    if (!json_is_object(content)) {
        bad_line(im, l->no, "\"content\" is missing or not an object");
        return NULL;
    }
    if (!(e->prevs = ref_list(im, json_object_get(j, "prev_events"), r->rv->ref_pairs, &why))) {
        bad_line(im, l->no, "\"prev_events\" %s", why);
        return NULL;
    }
    if (!(e->auths = ref_list(im, json_object_get(j, "auth_events"), r->rv->ref_pairs, &why))) {
        bad_line(im, l->no, "\"auth_events\" %s", why);
        return NULL;
    }
    if (!strcmp(e->type, "m.room.member") && e->state_key) {
        e->membership = jstr(content, "membership");
        if (!e->membership) {
            bad_line(im, l->no, "m.room.member without content.membership");
            return NULL;
        }
    }
    if (!strcmp(e->type, "m.room.redaction")) {
        e->redacts = r->rv->redacts_in_content ? jstr(content, "redacts") : jstr(j, "redacts");
    }

    rv = mxf_event_check_content_hash(im->p, j, r->rv, &why);
    if (rv == APR_EMISMATCH) {
        e->hash_mismatch = 1;           /* served redacted, as the spec says */
    }
    else if (rv != APR_SUCCESS) {
        bad_line(im, l->no, "%s", why);
        return NULL;
    }
    rv = mxf_event_verify_signatures(im->p, j, r->rv, key_lookup, im, &why);
    if (rv == APR_SUCCESS) {
        e->sigs_verified = 1;
    }
    else if (rv == MXF_SIG_MISSING && !im->require_signatures) {
        e->sigs_verified = 0;           /* no key known for a required server */
    }
    else {
        bad_line(im, l->no, "signature check failed for %s: %s", e->event_id, why);
        return NULL;
    }
    return e;
}

/* ------------------------------------------------------------------ known events */

/*
 * Marks the events the database already has, and loads the ones the input
 * refers to without carrying (parents at the edge of this import).
 */
static int load_known(importer_t *im)
{
    apr_hash_t *want = apr_hash_make(im->p);
    apr_array_header_t *ids = apr_array_make(im->p, im->order->nelts, sizeof(const char *));
    apr_hash_index_t *hi;
    PGresult *res;
    int i, k;

    for (i = 0; i < im->order->nelts; i++) {
        ev_t *e = APR_ARRAY_IDX(im->order, i, ev_t *);
        apr_hash_set(want, e->event_id, APR_HASH_KEY_STRING, e);
        for (k = 0; k < e->prevs->nelts; k++) {
            const char *id = APR_ARRAY_IDX(e->prevs, k, const char *);
            if (!apr_hash_get(want, id, APR_HASH_KEY_STRING)) {
                apr_hash_set(want, id, APR_HASH_KEY_STRING, im);  /* placeholder */
            }
        }
    }
    for (hi = apr_hash_first(im->p, want); hi; hi = apr_hash_next(hi)) {
        APR_ARRAY_PUSH(ids, const char *) = apr_hash_this_key(hi);
    }
    if (!mxf_pg_exec(im->conn, "CREATE TEMP TABLE mxf_import_ids (event_id text) ON COMMIT DROP")
        || !mxf_pg_copy_strings(im->conn, "COPY mxf_import_ids FROM STDIN", ids)) {
        return 0;
    }
    res = PQexec(im->conn,
                 "SELECT e.event_id, e.event_nid, r.room_id, coalesce(e.state_after, 0),"
                 "       e.depth"
                 "  FROM mxf_import_ids i JOIN mxf_events e USING (event_id)"
                 "  JOIN mxf_rooms r USING (room_nid)");
    if (!mxf_pg_ok(res, "looking up known events")) {
        return 0;
    }
    for (i = 0; i < PQntuples(res); i++) {
        const char *id = PQgetvalue(res, i, 0);
        ev_t *e = apr_hash_get(im->events, id, APR_HASH_KEY_STRING);
        if (!e) {
            e = apr_pcalloc(im->p, sizeof(*e));
            e->event_id = apr_pstrdup(im->p, id);
            apr_hash_set(im->events, e->event_id, APR_HASH_KEY_STRING, e);
        }
        e->known = 1;
        e->nid = apr_atoi64(PQgetvalue(res, i, 1));
        e->room = room_get(im, PQgetvalue(res, i, 2));
        e->db_state_after = apr_atoi64(PQgetvalue(res, i, 3));
        e->depth = apr_atoi64(PQgetvalue(res, i, 4));
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
        if (h->a[parent]->line <= e->line) {
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
        if (c + 1 < h->n && h->a[c + 1]->line < h->a[c]->line) {
            c++;
        }
        if (h->a[c]->line >= last->line) {
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

/* The new events in topological order, ties broken by input order. */
static apr_array_header_t *topo_order(importer_t *im)
{
    apr_array_header_t *out = apr_array_make(im->p, im->order->nelts, sizeof(ev_t *));
    heap_t h;
    int i, k;

    h.a = apr_palloc(im->p, sizeof(ev_t *) * (apr_size_t)(im->order->nelts + 1));
    h.n = 0;
    for (i = 0; i < im->order->nelts; i++) {
        ev_t *e = APR_ARRAY_IDX(im->order, i, ev_t *);
        if (e->known) {
            continue;
        }
        for (k = 0; k < e->prevs->nelts; k++) {
            ev_t *parent = apr_hash_get(im->events, APR_ARRAY_IDX(e->prevs, k, const char *),
                                        APR_HASH_KEY_STRING);
            if (parent && !parent->known && parent->room == e->room) {
                if (!parent->children) {
                    parent->children = apr_array_make(im->p, 2, sizeof(ev_t *));
                }
                APR_ARRAY_PUSH(parent->children, ev_t *) = e;
                e->pending++;
            }
        }
    }
    for (i = 0; i < im->order->nelts; i++) {
        ev_t *e = APR_ARRAY_IDX(im->order, i, ev_t *);
        if (!e->known && e->pending == 0) {
            heap_push(&h, e);
        }
    }
    while (h.n > 0) {
        ev_t *e = heap_pop(&h);
        APR_ARRAY_PUSH(out, ev_t *) = e;
        if (e->children) {
            for (k = 0; k < e->children->nelts; k++) {
                ev_t *c = APR_ARRAY_IDX(e->children, k, ev_t *);
                if (--c->pending == 0) {
                    heap_push(&h, c);
                }
            }
        }
    }
    for (i = 0; i < im->order->nelts; i++) {
        ev_t *e = APR_ARRAY_IDX(im->order, i, ev_t *);
        if (!e->known && e->pending > 0) {
            bad_line(im, e->line, "%s is part of a prev_events cycle", e->event_id);
        }
    }
    return out;
}

/* ------------------------------------------------------------------ state */

static mxf_rs_state_t *state_of_parent(importer_t *im, ev_t *parent)
{
    if (!parent->known) {
        return parent->after;
    }
    if (!parent->db_state_after) {
        return NULL;
    }
    if (!parent->after) {
        parent->after = mxf_rs_load(im->rs, parent->room->rs, parent->db_state_after);
    }
    return parent->after;
}

/* Computes e->before and e->after. 0 (reported) on a conflict or failure. */
static int compute_state(importer_t *im, ev_t *e)
{
    apr_array_header_t *parents = apr_array_make(im->p, e->prevs->nelts, sizeof(mxf_rs_state_t *));
    const char *why = NULL;
    int k;

    if (!strcmp(e->type, "m.room.create") && e->state_key && !*e->state_key
        && e->prevs->nelts == 0) {
        e->before = mxf_rs_empty(im->rs, e->room->rs);
    }
    else {
        for (k = 0; k < e->prevs->nelts; k++) {
            ev_t *parent = apr_hash_get(im->events, APR_ARRAY_IDX(e->prevs, k, const char *),
                                        APR_HASH_KEY_STRING);
            mxf_rs_state_t *s;
            if (!parent || parent->room != e->room) {
                continue;               /* edge of known history, or another room's */
            }
            if ((s = state_of_parent(im, parent)) == NULL) {
                if (parent->known && parent->db_state_after == 0) {
                    continue;
                }
                if (!parent->known) {
                    continue;
                }
                return 0;
            }
            APR_ARRAY_PUSH(parents, mxf_rs_state_t *) = s;
        }
        if (parents->nelts == 0) {
            e->before = e->after = NULL;   /* state unknown: edge of history */
            return 1;
        }
        e->before = mxf_rs_merge(im->rs, e->room->rs, parents, &why);
        if (!e->before) {
            bad_line(im, e->line, "%s merges branches whose state conflicts (%s); "
                     "state resolution is not available in this version", e->event_id, why);
            return 0;
        }
    }
    if (e->state_key) {
        mxf_rs_value_t v;
        memset(&v, 0, sizeof(v));
        v.nid = e->nid;
        v.membership = e->membership;
        v.sender = e->sender;
        v.content = json_object_get(e->json, "content");
        e->after = mxf_rs_apply(im->rs, e->room->rs, e->before, e->type, e->state_key, &v);
    }
    else {
        e->after = e->before;
    }
    return 1;
}

/* ------------------------------------------------------------------ redaction */

static const char *redacted_text(importer_t *im, ev_t *e)
{
    const char *why = NULL;
    json_t *red;
    char *text;

    if (!e->json && mxf_json_parse(im->p, e->pdu, e->pdu_len, 0, &e->json, &why) != APR_SUCCESS) {
        return NULL;
    }
    red = mxf_event_redact(im->p, e->json, e->room->rv);
    text = red ? mxf_canonical_encode_ex(im->p, red, 0, NULL, &why) : NULL;
    if (!text) {
        mxf_cmd_error("cannot redact %s: %s", e->event_id, why ? why : "unknown error");
    }
    return text;
}

/* Whether the redacter's power level in the state before it reaches "redact". */
static int redaction_by_power(ev_t *r)
{
    return r->before && mxf_rs_power_at_least(r->before, r->sender, "redact", 50);
}

static const char *server_of(const char *id)
{
    const char *colon = strchr(id, ':');
    return colon ? colon + 1 : "";
}

/* ------------------------------------------------------------------ writing */

typedef struct batch {
    mxf_copy_t events, edges, auths, redactions;
    int n;
} batch_t;

static void batch_reset(importer_t *im, batch_t *b, apr_pool_t *p)
{
    mxf_copy_init(&b->events, p, 1 << 20);
    mxf_copy_init(&b->edges, p, 1 << 16);
    mxf_copy_init(&b->auths, p, 1 << 16);
    mxf_copy_init(&b->redactions, p, 1 << 10);
    b->n = 0;
}

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
    mxf_copy_str(&b->events, e->sigs_verified ? "t" : "f");
    mxf_copy_nullable_int(&b->events, e->before ? mxf_rs_state_id(im->rs, e->before) : 0);
    mxf_copy_nullable_int(&b->events, e->after ? mxf_rs_state_id(im->rs, e->after) : 0);
    mxf_copy_nullable_int(&b->events, e->before ? mxf_rs_vis_id(im->rs, e->before) : 0);
    {
        apr_int64_t va = 0;
        if (e->after && e->before && (e->membership || !strcmp(e->type, "m.room.history_visibility"))) {
            va = mxf_rs_vis_id(im->rs, e->after);
            if (va == mxf_rs_vis_id(im->rs, e->before)) {
                va = 0;
            }
        }
        mxf_copy_nullable_int(&b->events, va);
    }
    mxf_copy_end(&b->events);

    for (k = 0; k < e->prevs->nelts; k++) {
        const char *id = APR_ARRAY_IDX(e->prevs, k, const char *);
        ev_t *parent = apr_hash_get(im->events, id, APR_HASH_KEY_STRING);
        int dup = 0, j;
        for (j = 0; j < k; j++) {
            dup |= !strcmp(id, APR_ARRAY_IDX(e->prevs, j, const char *));
        }
        if (dup) {
            continue;
        }
        mxf_copy_int(&b->edges, e->nid);
        mxf_copy_str(&b->edges, id);
        mxf_copy_nullable_int(&b->edges, parent && parent->room == e->room ? parent->nid : 0);
        mxf_copy_end(&b->edges);
    }
    for (k = 0; k < e->auths->nelts; k++) {
        const char *id = APR_ARRAY_IDX(e->auths, k, const char *);
        ev_t *a = apr_hash_get(im->events, id, APR_HASH_KEY_STRING);
        int dup = 0, j;
        for (j = 0; j < k; j++) {
            dup |= !strcmp(id, APR_ARRAY_IDX(e->auths, j, const char *));
        }
        if (dup) {
            continue;
        }
        mxf_copy_int(&b->auths, e->nid);
        mxf_copy_str(&b->auths, id);
        mxf_copy_nullable_int(&b->auths, a && a->room == e->room && (a->nid) ? a->nid : 0);
        mxf_copy_end(&b->auths);
    }
    if (e->redacts) {
        mxf_copy_int(&b->redactions, e->nid);
        mxf_copy_int(&b->redactions, e->room->nid);
        mxf_copy_str(&b->redactions, e->redacts);
        mxf_copy_str(&b->redactions, e->redaction_by_power ? "t" : "f");
        mxf_copy_end(&b->redactions);
    }
    b->n++;
}

static int flush_batch(importer_t *im, batch_t *b)
{
    if (!mxf_rs_flush(im->rs, im->conn)) {
        return 0;
    }
    if (b->n == 0) {
        return 1;
    }
    return mxf_pg_copy(im->conn,
                       "COPY mxf_events (event_nid, event_id, room_nid, type, state_key, sender,"
                       " membership, depth, origin_server_ts, pdu, redacted_pdu, redacted_because,"
                       " signatures_verified, state_before, state_after, vis_id, vis_after_id)"
                       " FROM STDIN", &b->events)
        && mxf_pg_copy(im->conn, "COPY mxf_event_edges (event_nid, prev_id, prev_nid) FROM STDIN",
                       &b->edges)
        && mxf_pg_copy(im->conn, "COPY mxf_auth_edges (event_nid, auth_id, auth_nid) FROM STDIN",
                       &b->auths)
        && mxf_pg_copy(im->conn,
                       "COPY mxf_redactions (event_nid, room_nid, redacts, allowed_by_power)"
                       " FROM STDIN", &b->redactions);
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
                           "INSERT INTO mxf_rooms (room_nid, room_id, room_version)"
                           " VALUES ($1::bigint, $2, $3)", 3, params)) {
            return 0;
        }
    }
    return 1;
}

/*
 * Applies m.room.redaction events whose targets are known, in either
 * direction: redactions of this import, and earlier redactions of events
 * that arrived now.
 */
static int apply_redactions(importer_t *im)
{
    PGresult *res;
    int i;
    mxf_copy_t rows;

    mxf_copy_init(&rows, im->p, 1 << 12);
    res = PQexec(im->conn,
                 "SELECT t.event_id, r.event_nid, re.event_id, re.sender, r.allowed_by_power,"
                 "       t.sender"
                 "  FROM mxf_redactions r"
                 "  JOIN mxf_events t ON t.event_id = r.redacts AND t.room_nid = r.room_nid"
                 "  JOIN mxf_events re ON re.event_nid = r.event_nid"
                 " WHERE t.redacted_because IS NULL"
                 "   AND (t.event_id IN (SELECT event_id FROM mxf_import_ids)"
                 "        OR re.event_id IN (SELECT event_id FROM mxf_import_ids))"
                 " ORDER BY r.event_nid");
    if (!mxf_pg_ok(res, "finding redactions")) {
        return 0;
    }
    for (i = 0; i < PQntuples(res); i++) {
        const char *target_id = PQgetvalue(res, i, 0);
        const char *redaction_id = PQgetvalue(res, i, 2);
        int by_power = PQgetvalue(res, i, 4)[0] == 't';
        ev_t *t = apr_hash_get(im->events, target_id, APR_HASH_KEY_STRING);
        const char *text;

        /* Same server as the target's sender, or enough power. */
        if (!by_power && strcmp(server_of(PQgetvalue(res, i, 3)),
                                server_of(PQgetvalue(res, i, 5))) != 0) {
            continue;
        }
        if (t && !t->known) {
            if (t->redacted_because) {
                continue;
            }
            text = t->redacted_pdu ? t->redacted_pdu : redacted_text(im, t);
        }
        else {
            /* A target imported earlier: redact its stored PDU. */
            const char *params[1] = { target_id };
            PGresult *pr = mxf_pg_query(im->conn,
                                        "SELECT e.pdu, r.room_version FROM mxf_events e"
                                        " JOIN mxf_rooms r USING (room_nid) WHERE e.event_id = $1",
                                        1, params);
            ev_t tmp;
            room_t troom;
            if (!pr) {
                PQclear(res);
                return 0;
            }
            if (PQntuples(pr) == 0) {
                PQclear(pr);
                continue;
            }
            memset(&tmp, 0, sizeof(tmp));
            memset(&troom, 0, sizeof(troom));
            troom.rv = mxf_roomver_get(PQgetvalue(pr, 0, 1));
            tmp.event_id = target_id;
            tmp.pdu = apr_pstrdup(im->p, PQgetvalue(pr, 0, 0));
            tmp.pdu_len = strlen(tmp.pdu);
            tmp.room = &troom;
            text = troom.rv ? redacted_text(im, &tmp) : NULL;
            PQclear(pr);
        }
        if (!text) {
            PQclear(res);
            return 0;
        }
        if (t) {
            t->redacted_because = apr_pstrdup(im->p, redaction_id);
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

/* Links edges to events that arrived in this import. */
static int link_edges(importer_t *im)
{
    return mxf_pg_exec(im->conn,
                       "UPDATE mxf_event_edges x SET prev_nid = p.event_nid"
                       "  FROM mxf_events p, mxf_events c"
                       " WHERE x.prev_nid IS NULL AND p.event_id = x.prev_id"
                       "   AND c.event_nid = x.event_nid AND c.room_nid = p.room_nid")
        && mxf_pg_exec(im->conn,
                       "UPDATE mxf_auth_edges x SET auth_nid = p.event_nid"
                       "  FROM mxf_events p, mxf_events c"
                       " WHERE x.auth_nid IS NULL AND p.event_id = x.auth_id"
                       "   AND c.event_nid = x.event_nid AND c.room_nid = p.room_nid");
}

/*
 * The current state of each room the import touched: the merge of the
 * states after its forward extremities.
 */
static int update_current_state(importer_t *im)
{
    apr_hash_index_t *hi;

    for (hi = apr_hash_first(im->p, im->rooms); hi; hi = apr_hash_next(hi)) {
        room_t *r = apr_hash_this_val(hi);
        char nid[32], gid[32];
        const char *params[2];
        PGresult *res;
        apr_array_header_t *states;
        mxf_rs_state_t *cur;
        const char *why = NULL;
        int i;

        if (!r->touched) {
            continue;
        }
        apr_snprintf(nid, sizeof(nid), "%" APR_INT64_T_FMT, r->nid);
        params[0] = nid;
        res = mxf_pg_query(im->conn,
                           "SELECT DISTINCT e.state_after FROM mxf_events e"
                           " WHERE e.room_nid = $1::bigint AND e.state_after IS NOT NULL"
                           "   AND e.rejected_reason IS NULL AND NOT e.outlier"
                           "   AND NOT EXISTS (SELECT 1 FROM mxf_event_edges x"
                           "                    WHERE x.prev_nid = e.event_nid)",
                           1, params);
        if (!res) {
            return 0;
        }
        states = apr_array_make(im->p, PQntuples(res), sizeof(mxf_rs_state_t *));
        for (i = 0; i < PQntuples(res); i++) {
            mxf_rs_state_t *s = mxf_rs_find(im->rs, r->rs, apr_atoi64(PQgetvalue(res, i, 0)));
            if (!s) {
                s = mxf_rs_load(im->rs, r->rs, apr_atoi64(PQgetvalue(res, i, 0)));
            }
            if (!s) {
                PQclear(res);
                return 0;
            }
            APR_ARRAY_PUSH(states, mxf_rs_state_t *) = s;
        }
        PQclear(res);
        if (states->nelts == 0) {
            continue;
        }
        cur = mxf_rs_merge(im->rs, r->rs, states, &why);
        if (!cur) {
            mxf_cmd_error("the forward extremities of %s have conflicting state (%s); "
                          "state resolution is not available in this version", r->room_id, why);
            return 0;
        }
        if (!mxf_rs_flush(im->rs, im->conn)) {
            return 0;
        }
        apr_snprintf(gid, sizeof(gid), "%" APR_INT64_T_FMT, mxf_rs_state_id(im->rs, cur));
        params[1] = gid;
        if (!mxf_pg_params(im->conn,
                           "UPDATE mxf_rooms SET current_state_group = $2::bigint,"
                           "  create_event_nid = (SELECT event_nid FROM mxf_state_of($2::bigint)"
                           "                       WHERE type = 'm.room.create' AND state_key = ''),"
                           "  current_acl = (SELECT (e.pdu::jsonb -> 'content')::text"
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
                              "  GROUP BY 2", 2, params)) {
            return 0;
        }
    }
    return 1;
}

/* ------------------------------------------------------------------ main */

static void progress(importer_t *im, long done, long total, apr_time_t start, int final)
{
    double secs = (double)(apr_time_now() - start) / APR_USEC_PER_SEC;
    double rate = secs > 0 ? done / secs : 0;

    if (!im->progress) {
        return;
    }
    fprintf(stderr, "\rmatrix-fed: import: %ld/%ld events, %.0f events/s, ETA %.0f s   %s",
            done, total, rate, rate > 0 ? (total - done) / rate : 0.0, final ? "\n" : "");
}

static int run_import(importer_t *im, const char *buf, apr_size_t len)
{
    apr_array_header_t *lines = split_lines(im->p, buf, len), *topo;
    apr_hash_index_t *hi;
    apr_time_t start = apr_time_now();
    batch_t batch;
    apr_pool_t *batch_pool;
    PGresult *res;
    int i;

    im->n_lines = lines->nelts;
    if (!load_rooms(im)) {
        return 0;
    }
    scan_creates(im, lines);
    for (i = 0; i < lines->nelts; i++) {
        line_t *l = &APR_ARRAY_IDX(lines, i, line_t);
        ev_t *e = check_line(im, l), *seen;
        if (!e) {
            continue;
        }
        if ((seen = apr_hash_get(im->events, e->event_id, APR_HASH_KEY_STRING)) != NULL) {
            if (seen->pdu_len != e->pdu_len || memcmp(seen->pdu, e->pdu, e->pdu_len) != 0) {
                bad_line(im, l->no, "%s appears again (line %ld) with other content",
                         e->event_id, seen->line);
            }
            im->n_dup++;
            continue;
        }
        apr_hash_set(im->events, e->event_id, APR_HASH_KEY_STRING, e);
        APR_ARRAY_PUSH(im->order, ev_t *) = e;
        if (im->progress && i % 10000 == 0) {
            fprintf(stderr, "\rmatrix-fed: import: checked %d/%d lines", i, lines->nelts);
        }
    }
    if (im->progress) {
        fprintf(stderr, "\rmatrix-fed: import: checked %d lines            \n", lines->nelts);
    }
    if (im->errors) {
        return 0;
    }
    if (!load_known(im)) {
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
    im->next_event_nid = apr_atoi64(PQgetvalue(res, 0, 0));
    PQclear(res);
    res = PQexec(im->conn, "SELECT coalesce(max(room_nid), 0) + 1 FROM mxf_rooms");
    if (!mxf_pg_ok(res, "reading room numbers")) {
        return 0;
    }
    im->next_room_nid = apr_atoi64(PQgetvalue(res, 0, 0));
    PQclear(res);
    if (!(im->rs = mxf_rs_create(im->p, im->conn))) {
        return 0;
    }
    for (hi = apr_hash_first(im->p, im->rooms); hi; hi = apr_hash_next(hi)) {
        room_t *r = apr_hash_this_val(hi);
        if (r->is_new) {
            r->nid = im->next_room_nid++;
        }
        r->rs = mxf_rs_room(im->rs, r->nid, r->rv);
    }
    for (i = 0; i < topo->nelts; i++) {
        ev_t *e = APR_ARRAY_IDX(topo, i, ev_t *);
        e->nid = im->next_event_nid++;
        e->room->touched = 1;
    }
    im->n_known = 0;
    for (i = 0; i < im->order->nelts; i++) {
        im->n_known += APR_ARRAY_IDX(im->order, i, ev_t *)->known;
    }
    if (!write_rooms(im)) {
        return 0;
    }

    apr_pool_create(&batch_pool, im->p);
    batch_reset(im, &batch, batch_pool);
    for (i = 0; i < topo->nelts; i++) {
        ev_t *e = APR_ARRAY_IDX(topo, i, ev_t *);
        int restricted;

        if (!compute_state(im, e)) {
            return 0;
        }
        if (e->redacts) {
            e->redaction_by_power = redaction_by_power(e);
        }
        restricted = (e->before && mxf_rs_vis_restricted(e->before))
                     || (e->after && mxf_rs_vis_restricted(e->after));
        if (e->hash_mismatch) {
            e->redacted_because = "content-hash";
            im->n_redacted_hash++;
        }
        if (e->hash_mismatch || restricted) {
            if (!(e->redacted_pdu = redacted_text(im, e))) {
                return 0;
            }
        }
        im->n_sig_verified += e->sigs_verified;
        im->n_sig_unverifiable += !e->sigs_verified;
        add_event_row(im, &batch, e);
        if (batch.n >= BATCH_EVENTS) {
            if (!flush_batch(im, &batch)) {
                return 0;
            }
            apr_pool_clear(batch_pool);
            batch_reset(im, &batch, batch_pool);
            progress(im, i + 1, topo->nelts, start, 0);
        }
    }
    if (!flush_batch(im, &batch)) {
        return 0;
    }
    progress(im, topo->nelts, topo->nelts, start, 1);
    im->n_new = topo->nelts;
    return apply_redactions(im) && link_edges(im) && update_current_state(im);
}

static void import_usage(FILE *out)
{
    fputs("Usage: matrix-fed import --db CONNINFO [--keys FILE ...] [--require-signatures]\n"
          "                         [--quiet] [FILE.jsonl | -]\n"
          "  Loads federation PDUs, one JSON object per line in any order, into the\n"
          "  database. --keys FILE holds /_matrix/key/v2/server responses (one JSON\n"
          "  object, an array of them, or one per line); they are verified and stored.\n"
          "  The import is one transaction: on any error nothing is written.\n", out);
}

int mxf_cmd_import(apr_pool_t *p, int argc, const char *const *argv)
{
    importer_t im;
    const char *conninfo = NULL, *input = NULL;
    apr_array_header_t *keyfiles = apr_array_make(p, 2, sizeof(const char *));
    char *buf;
    apr_size_t len;
    int i, ok, quiet = 0;

    memset(&im, 0, sizeof(im));
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--db") && i + 1 < argc) {
            conninfo = argv[++i];
        }
        else if (!strcmp(argv[i], "--keys") && i + 1 < argc) {
            APR_ARRAY_PUSH(keyfiles, const char *) = argv[++i];
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
    im.source = strcmp(input, "-") ? input : "<stdin>";
    im.progress = !quiet && isatty(2);
    im.rooms = apr_hash_make(p);
    im.events = apr_hash_make(p);
    im.order = apr_array_make(p, 1024, sizeof(ev_t *));

    if (read_input(p, input, &buf, &len) != APR_SUCCESS) {
        return MXF_EXIT_FAILURE;
    }
    if (!(im.conn = mxf_pg_connect(conninfo))) {
        return MXF_EXIT_FAILURE;
    }
    ok = mxf_pg_exec(im.conn, "BEGIN")
         && mxf_pg_exec(im.conn, "SELECT pg_advisory_xact_lock(" MXF_PG_IMPORT_LOCK ")");
    if (ok) {
        im.keys = mxf_keystore_open(p, im.conn);
        ok = im.keys != NULL;
    }
    for (i = 0; ok && i < keyfiles->nelts; i++) {
        ok = mxf_keystore_add_file(im.keys, APR_ARRAY_IDX(keyfiles, i, const char *));
    }
    ok = ok && run_import(&im, buf, len);
    if (ok) {
        ok = mxf_pg_exec(im.conn, "COMMIT");
    }
    else {
        PQexec(im.conn, "ROLLBACK");
    }
    PQfinish(im.conn);
    if (!ok) {
        mxf_cmd_error("import failed%s; the database is unchanged",
                      im.errors ? apr_psprintf(p, " (%d bad line%s)", im.errors,
                                               im.errors == 1 ? "" : "s") : "");
        return MXF_EXIT_FAILURE;
    }
    printf("imported %ld new events (%ld lines; %ld already known, %ld repeated in the input)\n"
           "  redacted: %ld by content hash mismatch, %ld by m.room.redaction\n"
           "  signatures: %ld verified, %ld unverifiable (no key known)\n",
           im.n_new, im.n_lines, im.n_known, im.n_dup, im.n_redacted_hash,
           im.n_redacted_by_event, im.n_sig_verified, im.n_sig_unverifiable);
    if (im.n_new == 0) {
        printf("nothing new: the database already had every event\n");
    }
    return MXF_EXIT_OK;
}
