/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#include <stdlib.h>
#include <string.h>

#include <apr_hash.h>
#include <apr_strings.h>

#include "mxf_cmd.h"
#include "mxf_cmd_pg.h"
#include "mxf_roomstate.h"

/* In memory, every MXF_RS_MATERIALIZE-th state holds its full map. */
#define MXF_RS_MATERIALIZE 32

typedef struct vis {
    apr_int64_t id;                     /* 0 until numbered */
    const char *history_visibility;
    apr_array_header_t *joined;         /* sorted server names */
    apr_array_header_t *invited;
} vis_t;

struct mxf_rs_room {
    apr_int64_t nid;
    const mxf_roomver_t *rv;
};

struct mxf_rs_state {
    mxf_rs_room_t *room;
    mxf_rs_state_t *parent;             /* NULL: a root (empty or loaded) */
    apr_hash_t *delta;                  /* key -> mxf_rs_value_t *, change over parent */
    apr_hash_t *full;                   /* key -> value, when materialised (roots always) */
    int hops;                           /* deltas to the nearest materialised ancestor */
    apr_int64_t gen;                    /* distance from the root */
    apr_hash_t *joins, *invites;        /* server -> int * (members with that membership) */
    vis_t *vis;
    apr_int64_t id;                     /* group number, 0 until numbered */
    int db_chain;                       /* deltas in the database before a snapshot */
};

struct mxf_rs_ctx {
    apr_pool_t *p;
    PGconn *conn;
    apr_int64_t next_group, next_vis;
    apr_hash_t *by_id;                  /* group number -> state */
    apr_array_header_t *pending_groups; /* mxf_rs_state_t *, in numbering order */
    apr_array_header_t *pending_vis;    /* (vis_t *, room nid) */
    apr_hash_t *vis_room;               /* vis_t * -> room */
    apr_hash_t *merges;                 /* sorted parent states -> their merge */
};

static const char *state_key_of(apr_pool_t *p, const char *type, const char *state_key)
{
    return apr_pstrcat(p, type, "\x1f", state_key, NULL);
}

mxf_rs_ctx_t *mxf_rs_create(apr_pool_t *p, PGconn *conn)
{
    mxf_rs_ctx_t *ctx = apr_pcalloc(p, sizeof(*ctx));
    PGresult *res;

    ctx->p = p;
    ctx->conn = conn;
    ctx->by_id = apr_hash_make(p);
    ctx->pending_groups = apr_array_make(p, 256, sizeof(mxf_rs_state_t *));
    ctx->pending_vis = apr_array_make(p, 64, sizeof(vis_t *));
    ctx->vis_room = apr_hash_make(p);
    ctx->merges = apr_hash_make(p);
    res = PQexec(conn, "SELECT (SELECT coalesce(max(group_id), 0) + 1 FROM mxf_state_groups),"
                       "       (SELECT coalesce(max(vis_id), 0) + 1 FROM mxf_visibility)");
    if (!mxf_pg_ok(res, "reading state group numbers")) {
        return NULL;
    }
    ctx->next_group = apr_atoi64(PQgetvalue(res, 0, 0));
    ctx->next_vis = apr_atoi64(PQgetvalue(res, 0, 1));
    PQclear(res);
    return ctx;
}

mxf_rs_room_t *mxf_rs_room(mxf_rs_ctx_t *ctx, apr_int64_t room_nid, const mxf_roomver_t *rv)
{
    mxf_rs_room_t *room = apr_pcalloc(ctx->p, sizeof(*room));

    room->nid = room_nid;
    room->rv = rv;
    return room;
}

/* ------------------------------------------------------------------ lookups */

static const mxf_rs_value_t *lookup(const mxf_rs_state_t *s, const char *key)
{
    for (; s; s = s->parent) {
        const mxf_rs_value_t *v;
        if (s->full) {
            return apr_hash_get(s->full, key, APR_HASH_KEY_STRING);
        }
        if ((v = apr_hash_get(s->delta, key, APR_HASH_KEY_STRING)) != NULL) {
            return v;
        }
    }
    return NULL;
}

const mxf_rs_value_t *mxf_rs_get(const mxf_rs_state_t *s, const char *type,
                                 const char *state_key)
{
    char buf[1024];

    if (strlen(type) + strlen(state_key) + 2 > sizeof(buf)) {
        return NULL;
    }
    apr_snprintf(buf, sizeof(buf), "%s\x1f%s", type, state_key);
    return lookup(s, buf);
}

/* The full map of @a s, built from its ancestors. */
static apr_hash_t *full_map(apr_pool_t *p, const mxf_rs_state_t *s)
{
    apr_array_header_t *path = apr_array_make(p, 64, sizeof(const mxf_rs_state_t *));
    apr_hash_t *map;
    int i;

    for (; !s->full; s = s->parent) {
        APR_ARRAY_PUSH(path, const mxf_rs_state_t *) = s;
    }
    map = apr_hash_copy(p, s->full);
    for (i = path->nelts - 1; i >= 0; i--) {
        const mxf_rs_state_t *d = APR_ARRAY_IDX(path, i, const mxf_rs_state_t *);
        map = apr_hash_overlay(p, d->delta, map);
    }
    return map;
}

/* ------------------------------------------------------------------ visibility */

static const char *server_of(const char *user_id)
{
    const char *colon = strchr(user_id, ':');
    return colon ? colon + 1 : NULL;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static apr_array_header_t *servers_of(apr_pool_t *p, apr_hash_t *counts)
{
    apr_array_header_t *out = apr_array_make(p, (int)apr_hash_count(counts), sizeof(const char *));
    apr_hash_index_t *hi;

    for (hi = apr_hash_first(p, counts); hi; hi = apr_hash_next(hi)) {
        if (*(int *)apr_hash_this_val(hi) > 0) {
            APR_ARRAY_PUSH(out, const char *) = apr_hash_this_key(hi);
        }
    }
    qsort(out->elts, (size_t)out->nelts, sizeof(const char *), cmp_str);
    return out;
}

static int same_list(const apr_array_header_t *a, const apr_array_header_t *b)
{
    int i;

    if (a->nelts != b->nelts) {
        return 0;
    }
    for (i = 0; i < a->nelts; i++) {
        if (strcmp(APR_ARRAY_IDX(a, i, const char *), APR_ARRAY_IDX(b, i, const char *))) {
            return 0;
        }
    }
    return 1;
}

/* The history visibility a state says (unknown values count as "shared"). */
static const char *history_visibility(const mxf_rs_state_t *s)
{
    const mxf_rs_value_t *v = lookup(s, "m.room.history_visibility\x1f");
    const char *hv = v && v->content
                     ? json_string_value(json_object_get(v->content, "history_visibility"))
                     : NULL;

    if (hv && (!strcmp(hv, "world_readable") || !strcmp(hv, "shared")
               || !strcmp(hv, "invited") || !strcmp(hv, "joined"))) {
        return hv;
    }
    return "shared";
}

/* Gives @a s its visibility, reusing @a prev's when nothing it says changed. */
static void set_vis(mxf_rs_ctx_t *ctx, mxf_rs_state_t *s, const vis_t *prev)
{
    const char *hv = history_visibility(s);
    apr_array_header_t *joined = servers_of(ctx->p, s->joins);
    apr_array_header_t *invited = servers_of(ctx->p, s->invites);
    vis_t *v;

    if (prev && !strcmp(prev->history_visibility, hv) && same_list(prev->joined, joined)
        && same_list(prev->invited, invited)) {
        s->vis = (vis_t *)prev;
        return;
    }
    v = apr_pcalloc(ctx->p, sizeof(*v));
    v->history_visibility = apr_pstrdup(ctx->p, hv);
    v->joined = joined;
    v->invited = invited;
    s->vis = v;
}

static void count_add(apr_pool_t *p, apr_hash_t *counts, const char *server, int delta)
{
    int *n = apr_hash_get(counts, server, APR_HASH_KEY_STRING);

    if (!n) {
        n = apr_pcalloc(p, sizeof(*n));
        apr_hash_set(counts, apr_pstrdup(p, server), APR_HASH_KEY_STRING, n);
    }
    *n += delta;
}

/*
 * Updates the membership counts of @a s (copied from its parent's on first
 * change) for a member key going from @a old to @a new.
 */
static void recount(mxf_rs_ctx_t *ctx, mxf_rs_state_t *s, const char *key,
                    const mxf_rs_value_t *old, const mxf_rs_value_t *new)
{
    const char *user = strchr(key, '\x1f') + 1;
    const char *server = server_of(user);
    const char *m0 = old ? old->membership : NULL, *m1 = new ? new->membership : NULL;
    int dj = (m1 && !strcmp(m1, "join")) - (m0 && !strcmp(m0, "join"));
    int di = (m1 && !strcmp(m1, "invite")) - (m0 && !strcmp(m0, "invite"));

    if (!server || (dj == 0 && di == 0)) {
        return;
    }
    if (s->parent && s->joins == s->parent->joins) {
        apr_hash_index_t *hi;
        apr_hash_t *j = apr_hash_make(ctx->p), *i = apr_hash_make(ctx->p);
        for (hi = apr_hash_first(ctx->p, s->parent->joins); hi; hi = apr_hash_next(hi)) {
            if (*(int *)apr_hash_this_val(hi) > 0) {
                count_add(ctx->p, j, apr_hash_this_key(hi), *(int *)apr_hash_this_val(hi));
            }
        }
        for (hi = apr_hash_first(ctx->p, s->parent->invites); hi; hi = apr_hash_next(hi)) {
            if (*(int *)apr_hash_this_val(hi) > 0) {
                count_add(ctx->p, i, apr_hash_this_key(hi), *(int *)apr_hash_this_val(hi));
            }
        }
        s->joins = j;
        s->invites = i;
    }
    if (dj) {
        count_add(ctx->p, s->joins, server, dj);
    }
    if (di) {
        count_add(ctx->p, s->invites, server, di);
    }
}

static int is_member_key(const char *key)
{
    return !strncmp(key, "m.room.member\x1f", 14);
}

/* ------------------------------------------------------------------ states */

static mxf_rs_state_t *new_root(mxf_rs_ctx_t *ctx, mxf_rs_room_t *room, apr_hash_t *full)
{
    mxf_rs_state_t *s = apr_pcalloc(ctx->p, sizeof(*s));
    apr_hash_index_t *hi;

    s->room = room;
    s->full = full;
    s->delta = apr_hash_make(ctx->p);
    s->joins = apr_hash_make(ctx->p);
    s->invites = apr_hash_make(ctx->p);
    for (hi = apr_hash_first(ctx->p, full); hi; hi = apr_hash_next(hi)) {
        const char *key = apr_hash_this_key(hi);
        if (is_member_key(key)) {
            recount(ctx, s, key, NULL, apr_hash_this_val(hi));
        }
    }
    set_vis(ctx, s, NULL);
    return s;
}

mxf_rs_state_t *mxf_rs_empty(mxf_rs_ctx_t *ctx, mxf_rs_room_t *room)
{
    return new_root(ctx, room, apr_hash_make(ctx->p));
}

/* A child of @a parent with @a delta; counts and visibility follow. */
static mxf_rs_state_t *new_child(mxf_rs_ctx_t *ctx, mxf_rs_state_t *parent, apr_hash_t *delta)
{
    mxf_rs_state_t *s = apr_pcalloc(ctx->p, sizeof(*s));
    apr_hash_index_t *hi;

    s->room = parent->room;
    s->parent = parent;
    s->delta = delta;
    s->gen = parent->gen + 1;
    s->joins = parent->joins;
    s->invites = parent->invites;
    for (hi = apr_hash_first(ctx->p, delta); hi; hi = apr_hash_next(hi)) {
        const char *key = apr_hash_this_key(hi);
        if (is_member_key(key)) {
            recount(ctx, s, key, lookup(parent, key), apr_hash_this_val(hi));
        }
    }
    s->hops = parent->full ? 1 : parent->hops + 1;
    if (s->hops >= MXF_RS_MATERIALIZE) {
        s->full = full_map(ctx->p, s);
        s->hops = 0;
    }
    set_vis(ctx, s, parent->vis);
    return s;
}

int mxf_rs_keeps_content(const char *type)
{
    return !strcmp(type, "m.room.power_levels") || !strcmp(type, "m.room.history_visibility")
           || !strcmp(type, "m.room.create") || !strcmp(type, "m.room.server_acl")
           || !strcmp(type, "m.room.join_rules");
}

static mxf_rs_value_t *copy_value(mxf_rs_ctx_t *ctx, const char *type, const mxf_rs_value_t *v)
{
    mxf_rs_value_t *c = apr_pmemdup(ctx->p, v, sizeof(*v));

    c->membership = v->membership ? apr_pstrdup(ctx->p, v->membership) : NULL;
    c->sender = v->sender ? apr_pstrdup(ctx->p, v->sender) : NULL;
    c->content = mxf_rs_keeps_content(type) && v->content
                 ? mxf_json_own(ctx->p, json_deep_copy(v->content)) : NULL;
    return c;
}

mxf_rs_state_t *mxf_rs_apply(mxf_rs_ctx_t *ctx, mxf_rs_room_t *room, mxf_rs_state_t *before,
                             const char *type, const char *state_key,
                             const mxf_rs_value_t *v)
{
    apr_hash_t *delta = apr_hash_make(ctx->p);
    const char *key = state_key_of(ctx->p, type, state_key);
    mxf_rs_value_t *c = copy_value(ctx, type, v);

    c->replaced = lookup(before, key);
    c->from_db = 0;
    apr_hash_set(delta, key, APR_HASH_KEY_STRING, c);
    return new_child(ctx, before, delta);
}

/*
 * Whether event @a older_nid is in the history of @a key's values in the
 * database, starting at the state before event @a nid.
 */
static int db_in_history(mxf_rs_ctx_t *ctx, apr_int64_t nid, apr_int64_t older_nid,
                         const char *key, int *failed)
{
    const char *sep = strchr(key, '\x1f');
    char a[32], b[32];
    const char *params[4];
    PGresult *res;
    int found;

    apr_snprintf(a, sizeof(a), "%" APR_INT64_T_FMT, nid);
    apr_snprintf(b, sizeof(b), "%" APR_INT64_T_FMT, older_nid);
    params[0] = a;
    params[1] = b;
    params[2] = apr_pstrmemdup(ctx->p, key, (apr_size_t)(sep - key));
    params[3] = sep + 1;
    res = mxf_pg_query(ctx->conn,
                       "WITH RECURSIVE h (nid, d) AS ("
                       "  SELECT $1::bigint, 0"
                       "  UNION ALL"
                       "  SELECT (SELECT s.event_nid FROM mxf_events e"
                       "            CROSS JOIN LATERAL mxf_state_of(e.state_before) s"
                       "           WHERE e.event_nid = h.nid AND s.type = $3"
                       "             AND s.state_key = $4), h.d + 1"
                       "    FROM h WHERE h.nid IS NOT NULL AND h.nid <> $2::bigint"
                       "     AND h.d < 100000)"
                       " SELECT count(*) FROM h WHERE nid = $2::bigint", 4, params);
    if (!res) {
        *failed = 1;
        return 0;
    }
    found = atoi(PQgetvalue(res, 0, 0)) > 0;
    PQclear(res);
    return found;
}

/* Whether @a older is @a newer or among the values @a newer replaced, directly or not. */
static int in_history(mxf_rs_ctx_t *ctx, const mxf_rs_value_t *newer,
                      const mxf_rs_value_t *older, const char *key, int *failed)
{
    const mxf_rs_value_t *v;

    for (v = newer; v; v = v->replaced) {
        if (v->nid == older->nid) {
            return 1;
        }
        if (v->from_db) {
            return db_in_history(ctx, v->nid, older->nid, key, failed);
        }
    }
    return 0;
}

/* The nearest common ancestor of @a a and @a b in the delta tree, or NULL. */
static mxf_rs_state_t *common_ancestor(mxf_rs_state_t *a, mxf_rs_state_t *b)
{
    while (a && b && a != b) {
        if (a->gen >= b->gen) {
            a = a->parent;
        }
        else {
            b = b->parent;
        }
    }
    return a == b ? a : NULL;
}

/* Keys changed between @a from and its ancestor @a to (exclusive). */
static void changed_keys(apr_pool_t *p, const mxf_rs_state_t *from, const mxf_rs_state_t *to,
                         apr_hash_t *out)
{
    for (; from && from != to; from = from->parent) {
        apr_hash_index_t *hi;
        for (hi = apr_hash_first(p, from->delta); hi; hi = apr_hash_next(hi)) {
            apr_hash_set(out, apr_hash_this_key(hi), APR_HASH_KEY_STRING, from);
        }
    }
}

static const char *describe(apr_pool_t *p, const char *key, const mxf_rs_value_t *a,
                            const mxf_rs_value_t *b)
{
    const char *sep = strchr(key, '\x1f');

    return apr_psprintf(p, "(%.*s, \"%s\") is event #%" APR_INT64_T_FMT " on one branch and %s"
                        " on another", (int)(sep - key), key, sep + 1, a ? a->nid : 0,
                        b ? apr_psprintf(p, "event #%" APR_INT64_T_FMT, b->nid) : "unset");
}

static int cmp_ptr(const void *a, const void *b)
{
    const void *x = *(const void *const *)a, *y = *(const void *const *)b;
    return x < y ? -1 : x > y;
}

mxf_rs_state_t *mxf_rs_merge(mxf_rs_ctx_t *ctx, mxf_rs_room_t *room,
                             apr_array_header_t *states, const char **why)
{
    mxf_rs_state_t *base = APR_ARRAY_IDX(states, 0, mxf_rs_state_t *), *result;
    apr_hash_t *merged = apr_hash_make(ctx->p);
    mxf_rs_state_t **sorted;
    int i, n = 0;

    /*
     * The same parents always give the same merged state object: concurrent
     * events that merge the same tips then share one state, and a later
     * merge of their descendants finds it as the common ancestor.
     */
    sorted = apr_palloc(ctx->p, sizeof(*sorted) * (apr_size_t)states->nelts);
    for (i = 0; i < states->nelts; i++) {
        sorted[i] = APR_ARRAY_IDX(states, i, mxf_rs_state_t *);
    }
    qsort(sorted, (size_t)states->nelts, sizeof(*sorted), cmp_ptr);
    for (i = 0; i < states->nelts; i++) {
        if (n == 0 || sorted[n - 1] != sorted[i]) {
            sorted[n++] = sorted[i];
        }
    }
    if (n == 1) {
        return sorted[0];
    }
    if ((result = apr_hash_get(ctx->merges, sorted, sizeof(*sorted) * (apr_size_t)n)) != NULL) {
        return result;
    }

    for (i = 1; i < states->nelts; i++) {
        mxf_rs_state_t *s = APR_ARRAY_IDX(states, i, mxf_rs_state_t *);
        mxf_rs_state_t *lca;
        apr_hash_t *mine, *theirs;
        apr_hash_index_t *hi;

        if (s == base) {
            continue;
        }
        lca = common_ancestor(base, s);
        mine = apr_hash_make(ctx->p);
        theirs = apr_hash_make(ctx->p);
        if (lca) {
            changed_keys(ctx->p, base, lca, mine);
            changed_keys(ctx->p, s, lca, theirs);
        }
        else {
            /* Unrelated roots (loaded from the database): compare in full. */
            apr_hash_t *fb = full_map(ctx->p, base), *fs = full_map(ctx->p, s);
            for (hi = apr_hash_first(ctx->p, fs); hi; hi = apr_hash_next(hi)) {
                apr_hash_set(theirs, apr_hash_this_key(hi), APR_HASH_KEY_STRING, s);
            }
            for (hi = apr_hash_first(ctx->p, fb); hi; hi = apr_hash_next(hi)) {
                apr_hash_set(mine, apr_hash_this_key(hi), APR_HASH_KEY_STRING, base);
            }
        }
        for (hi = apr_hash_first(ctx->p, theirs); hi; hi = apr_hash_next(hi)) {
            const char *key = apr_hash_this_key(hi);
            const mxf_rs_value_t *vt = lookup(s, key), *vb = lookup(base, key);
            const mxf_rs_value_t *vm = apr_hash_get(merged, key, APR_HASH_KEY_STRING);
            apr_int64_t nt = vt ? vt->nid : 0, nb = vb ? vb->nid : 0;
            int failed = 0;

            if (nt == nb) {
                continue;
            }
            if (!lca && vb && vt) {
                /* No common ancestor in memory: the newer value wins. */
                if (in_history(ctx, vb, vt, key, &failed)) {
                    continue;           /* base changed it after their value */
                }
                if (!failed && !in_history(ctx, vt, vb, key, &failed) && !failed) {
                    *why = describe(ctx->p, key, vb, vt);
                    return NULL;
                }
                if (failed) {
                    *why = "cannot read the history of a state from the database";
                    return NULL;
                }
            }
            else if (apr_hash_get(mine, key, APR_HASH_KEY_STRING) && (lca || vb)) {
                *why = describe(ctx->p, key, vb, vt);
                return NULL;
            }
            if (!vt) {
                continue;               /* unset there, set here */
            }
            if (vm && vm->nid != nt) {
                *why = describe(ctx->p, key, vm, vt);
                return NULL;
            }
            apr_hash_set(merged, key, APR_HASH_KEY_STRING, vt);
        }
    }
    result = apr_hash_count(merged) == 0 ? base : new_child(ctx, base, merged);
    apr_hash_set(ctx->merges, sorted, sizeof(*sorted) * (apr_size_t)n, result);
    return result;
}

mxf_rs_state_t *mxf_rs_find(mxf_rs_ctx_t *ctx, mxf_rs_room_t *room, apr_int64_t group_id)
{
    return apr_hash_get(ctx->by_id, &group_id, sizeof(group_id));
}

mxf_rs_state_t *mxf_rs_load(mxf_rs_ctx_t *ctx, mxf_rs_room_t *room, apr_int64_t group_id)
{
    mxf_rs_state_t *s = mxf_rs_find(ctx, room, group_id);
    apr_hash_t *full;
    char gid[32];
    const char *params[1] = { gid };
    PGresult *res;
    int i;

    if (s) {
        return s;
    }
    apr_snprintf(gid, sizeof(gid), "%" APR_INT64_T_FMT, group_id);
    res = mxf_pg_query(ctx->conn,
                       "SELECT s.type, s.state_key, s.event_nid, e.membership, e.sender,"
                       "       CASE WHEN s.type IN ('m.room.power_levels',"
                       "            'm.room.history_visibility', 'm.room.create',"
                       "            'm.room.server_acl', 'm.room.join_rules')"
                       "            THEN (e.pdu::jsonb -> 'content')::text END"
                       "  FROM mxf_state_of($1::bigint) s JOIN mxf_events e USING (event_nid)",
                       1, params);
    if (!res) {
        return NULL;
    }
    full = apr_hash_make(ctx->p);
    for (i = 0; i < PQntuples(res); i++) {
        mxf_rs_value_t *v = apr_pcalloc(ctx->p, sizeof(*v));
        v->nid = apr_atoi64(PQgetvalue(res, i, 2));
        if (!PQgetisnull(res, i, 3)) {
            v->membership = apr_pstrdup(ctx->p, PQgetvalue(res, i, 3));
        }
        v->sender = apr_pstrdup(ctx->p, PQgetvalue(res, i, 4));
        v->from_db = 1;
        if (!PQgetisnull(res, i, 5)) {
            v->content = mxf_json_own(ctx->p, json_loads(PQgetvalue(res, i, 5), 0, NULL));
        }
        apr_hash_set(full, state_key_of(ctx->p, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1)),
                     APR_HASH_KEY_STRING, v);
    }
    PQclear(res);
    s = new_root(ctx, room, full);
    s->id = group_id;
    {
        /* Already in the database: its chain there is unknown, so snapshot next. */
        apr_int64_t *key = apr_pmemdup(ctx->p, &group_id, sizeof(group_id));
        s->db_chain = MXF_RS_CHAIN_MAX;
        apr_hash_set(ctx->by_id, key, sizeof(*key), s);
    }
    /* Its visibility row exists too, but is not known here: number anew when used. */
    return s;
}

/* ------------------------------------------------------------------ numbering */

apr_int64_t mxf_rs_state_id(mxf_rs_ctx_t *ctx, mxf_rs_state_t *s)
{
    apr_int64_t *key;

    if (s->id) {
        return s->id;
    }
    if (s->parent) {
        mxf_rs_state_id(ctx, s->parent);
        s->db_chain = s->parent->db_chain + 1;
    }
    if (!s->parent || s->db_chain > MXF_RS_CHAIN_MAX) {
        s->db_chain = 0;
    }
    s->id = ctx->next_group++;
    key = apr_pmemdup(ctx->p, &s->id, sizeof(s->id));
    apr_hash_set(ctx->by_id, key, sizeof(*key), s);
    APR_ARRAY_PUSH(ctx->pending_groups, mxf_rs_state_t *) = s;
    return s->id;
}

apr_int64_t mxf_rs_vis_id(mxf_rs_ctx_t *ctx, mxf_rs_state_t *s)
{
    if (!s->vis->id) {
        s->vis->id = ctx->next_vis++;
        APR_ARRAY_PUSH(ctx->pending_vis, vis_t *) = s->vis;
        apr_hash_set(ctx->vis_room, s->vis, sizeof(vis_t *), s->room);
    }
    return s->vis->id;
}

int mxf_rs_vis_restricted(const mxf_rs_state_t *s)
{
    return !strcmp(s->vis->history_visibility, "invited")
           || !strcmp(s->vis->history_visibility, "joined");
}

static long level_of(const json_t *v, long dflt)
{
    if (json_is_integer(v)) {
        return (long)json_integer_value(v);
    }
    if (json_is_real(v)) {
        return (long)json_real_value(v);
    }
    if (json_is_string(v)) {
        return strtol(json_string_value(v), NULL, 10);   /* v1-v9 allow strings */
    }
    return dflt;
}

int mxf_rs_power_at_least(const mxf_rs_state_t *s, const char *user, const char *action,
                          long dflt)
{
    const mxf_rs_value_t *pl = lookup(s, "m.room.power_levels\x1f");
    const mxf_rs_value_t *create = lookup(s, "m.room.create\x1f");
    long have, need;

    if (create && s->room->rv->room_id_is_create_hash) {
        /* v12: the creators have unlimited power. */
        const json_t *more = create->content ? json_object_get(create->content,
                                                               "additional_creators") : NULL;
        size_t i;
        json_t *c;
        if (create->sender && !strcmp(create->sender, user)) {
            return 1;
        }
        json_array_foreach(more, i, c) {
            if (json_is_string(c) && !strcmp(json_string_value(c), user)) {
                return 1;
            }
        }
    }
    if (!pl || !pl->content) {
        /* No power levels yet: the creator has 100, everyone else 0. */
        have = create && create->sender && !strcmp(create->sender, user) ? 100 : 0;
        return have >= dflt;
    }
    have = level_of(json_object_get(json_object_get(pl->content, "users"), user),
                    level_of(json_object_get(pl->content, "users_default"), 0));
    need = level_of(json_object_get(pl->content, action), dflt);
    return have >= need;
}

/* ------------------------------------------------------------------ writing */

static void copy_array(mxf_copy_t *c, const apr_array_header_t *a)
{
    /* A PostgreSQL array literal of server names (which contain no quotes). */
    mxf_buf_t lit;
    int i;

    mxf_buf_init(&lit, c->buf.p, 64);
    mxf_buf_append(&lit, "{", 1);
    for (i = 0; i < a->nelts; i++) {
        const char *s = APR_ARRAY_IDX(a, i, const char *);
        const char *q;
        if (i) {
            mxf_buf_append(&lit, ",", 1);
        }
        mxf_buf_append(&lit, "\"", 1);
        for (q = s; *q; q++) {
            if (*q == '"' || *q == '\\') {
                mxf_buf_append(&lit, "\\", 1);
            }
            mxf_buf_append(&lit, q, 1);
        }
        mxf_buf_append(&lit, "\"", 1);
    }
    mxf_buf_append(&lit, "}", 1);
    mxf_copy_strn(c, lit.data, lit.len);
}

static void entry_row(mxf_copy_t *c, apr_int64_t gid, const char *key, const mxf_rs_value_t *v)
{
    const char *sep = strchr(key, '\x1f');

    mxf_copy_int(c, gid);
    mxf_copy_strn(c, key, (apr_size_t)(sep - key));
    mxf_copy_str(c, sep + 1);
    mxf_copy_int(c, v->nid);
    mxf_copy_end(c);
}

int mxf_rs_flush(mxf_rs_ctx_t *ctx, PGconn *conn)
{
    apr_pool_t *tmp;
    mxf_copy_t groups, entries, vis;
    int i, ok;

    if (ctx->pending_groups->nelts == 0 && ctx->pending_vis->nelts == 0) {
        return 1;
    }
    apr_pool_create(&tmp, ctx->p);
    mxf_copy_init(&groups, tmp, 1 << 14);
    mxf_copy_init(&entries, tmp, 1 << 16);
    mxf_copy_init(&vis, tmp, 1 << 12);
    for (i = 0; i < ctx->pending_groups->nelts; i++) {
        mxf_rs_state_t *s = APR_ARRAY_IDX(ctx->pending_groups, i, mxf_rs_state_t *);
        apr_hash_t *rows = s->db_chain == 0 ? full_map(tmp, s) : s->delta;
        apr_hash_index_t *hi;

        mxf_copy_int(&groups, s->id);
        mxf_copy_int(&groups, s->room->nid);
        mxf_copy_nullable_int(&groups, s->db_chain == 0 ? 0 : s->parent->id);
        mxf_copy_int(&groups, s->db_chain);
        mxf_copy_end(&groups);
        for (hi = apr_hash_first(tmp, rows); hi; hi = apr_hash_next(hi)) {
            entry_row(&entries, s->id, apr_hash_this_key(hi), apr_hash_this_val(hi));
        }
    }
    for (i = 0; i < ctx->pending_vis->nelts; i++) {
        vis_t *v = APR_ARRAY_IDX(ctx->pending_vis, i, vis_t *);
        mxf_rs_room_t *room = apr_hash_get(ctx->vis_room, v, sizeof(vis_t *));
        mxf_copy_int(&vis, v->id);
        mxf_copy_int(&vis, room->nid);
        mxf_copy_str(&vis, v->history_visibility);
        copy_array(&vis, v->joined);
        copy_array(&vis, v->invited);
        mxf_copy_end(&vis);
    }
    ok = mxf_pg_copy(conn, "COPY mxf_state_groups (group_id, room_nid, prev_group, chain_len)"
                           " FROM STDIN", &groups)
         && mxf_pg_copy(conn, "COPY mxf_state_entries (group_id, type, state_key, event_nid)"
                              " FROM STDIN", &entries)
         && mxf_pg_copy(conn, "COPY mxf_visibility (vis_id, room_nid, history_visibility,"
                              " joined_servers, invited_servers) FROM STDIN", &vis);
    apr_pool_destroy(tmp);
    apr_array_clear(ctx->pending_groups);
    apr_array_clear(ctx->pending_vis);
    return ok;
}
