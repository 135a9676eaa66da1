/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#include <stdlib.h>
#include <string.h>

#include <apr_hash.h>
#include <apr_strings.h>

#include "mxf_cmd.h"
#include "mxf_cmd_pg.h"
#include "mxf_roomstate.h"
#include "mxf_stateres.h"

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
    int removes;                        /* the delta removes a key (a snapshot in the db) */
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
    mxf_rs_resolver_t resolver;
    long n_resolved, n_differing;
};

/* A delta entry that removes its key (nid 0, never a real event's number). */
static const mxf_rs_value_t removed_value;

static int is_removed(const mxf_rs_value_t *v)
{
    return v == &removed_value;
}

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

void mxf_rs_set_resolver(mxf_rs_ctx_t *ctx, const mxf_rs_resolver_t *r)
{
    ctx->resolver = *r;
}

void mxf_rs_merge_stats(const mxf_rs_ctx_t *ctx, long *resolved, long *differing_keys)
{
    *resolved = ctx->n_resolved;
    *differing_keys = ctx->n_differing;
}

const mxf_roomver_t *mxf_rs_room_version(const mxf_rs_room_t *room)
{
    return room->rv;
}

apr_int64_t mxf_rs_room_nid(const mxf_rs_room_t *room)
{
    return room->nid;
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
            return is_removed(v) ? NULL : v;
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
        apr_hash_index_t *hi;
        for (hi = apr_hash_first(p, d->delta); hi; hi = apr_hash_next(hi)) {
            const mxf_rs_value_t *v = apr_hash_this_val(hi);
            apr_hash_set(map, apr_hash_this_key(hi), APR_HASH_KEY_STRING,
                         is_removed(v) ? NULL : v);
        }
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
        const mxf_rs_value_t *v = apr_hash_this_val(hi);
        if (is_removed(v)) {
            s->removes = 1;
            v = NULL;
        }
        if (is_member_key(key)) {
            recount(ctx, s, key, lookup(parent, key), v);
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

    c->event_id = v->event_id ? apr_pstrdup(ctx->p, v->event_id) : NULL;
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

    apr_hash_set(delta, key, APR_HASH_KEY_STRING, c);
    return new_child(ctx, before, delta);
}

mxf_rs_state_t *mxf_rs_apply_many(mxf_rs_ctx_t *ctx, mxf_rs_room_t *room,
                                  mxf_rs_state_t *before, int n, const char *const *types,
                                  const char *const *state_keys,
                                  const mxf_rs_value_t *const *values)
{
    apr_hash_t *delta = apr_hash_make(ctx->p);
    int i;

    for (i = 0; i < n; i++) {
        apr_hash_set(delta, state_key_of(ctx->p, types[i], state_keys[i]), APR_HASH_KEY_STRING,
                     copy_value(ctx, types[i], values[i]));
    }
    return new_child(ctx, before, delta);
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

/* "type" 0x1f "state_key" -> "type" NUL "state_key" (mxf_sr_key()). */
static const char *to_sr_key(apr_pool_t *p, const char *key, apr_ssize_t *klen)
{
    apr_size_t len = strlen(key);
    char *k = apr_pmemdup(p, key, len + 1);
    char *sep = strchr(k, '\x1f');

    if (sep) {
        *sep = '\0';
    }
    *klen = (apr_ssize_t)len;
    return k;
}

static const char *from_sr_key(apr_pool_t *p, const void *key, apr_ssize_t klen)
{
    const char *type, *state_key;

    mxf_sr_key_split(key, klen, &type, &state_key);
    return state_key_of(p, type, state_key);
}

/*
 * The merge of @a n (> 1) distinct states that differ in @a ndiff keys:
 * the resolver's result as a delta over @a base. NULL with *why on failure.
 */
static mxf_rs_state_t *resolve(mxf_rs_ctx_t *ctx, mxf_rs_room_t *room, apr_pool_t *tmp,
                               mxf_rs_state_t *base, mxf_rs_state_t **states, int n,
                               const char **why)
{
    apr_hash_t **maps = apr_palloc(tmp, sizeof(*maps) * (apr_size_t)n);
    apr_hash_t *out = NULL, *fb, *delta = apr_hash_make(ctx->p);
    apr_hash_index_t *hi;
    apr_status_t st;
    int i;

    for (i = 0; i < n; i++) {
        apr_hash_t *fm = full_map(tmp, states[i]);
        maps[i] = apr_hash_make(tmp);
        for (hi = apr_hash_first(tmp, fm); hi; hi = apr_hash_next(hi)) {
            const mxf_rs_value_t *v = apr_hash_this_val(hi);
            apr_ssize_t klen;
            const char *k = to_sr_key(tmp, apr_hash_this_key(hi), &klen);
            apr_hash_set(maps[i], k, klen, v->event_id ? v->event_id : "");
        }
    }
    st = ctx->resolver.resolve(ctx->resolver.baton, tmp, room, maps, n, &out, why);
    if (st != APR_SUCCESS) {
        return NULL;
    }
    fb = full_map(tmp, base);
    for (hi = apr_hash_first(tmp, out); hi; hi = apr_hash_next(hi)) {
        const void *k;
        apr_ssize_t klen;
        void *val;
        const char *key, *id;
        const mxf_rs_value_t *vb, *v = NULL;
        const char *type, *state_key;

        apr_hash_this(hi, &k, &klen, &val);
        id = val;
        key = from_sr_key(tmp, k, klen);
        vb = apr_hash_get(fb, key, APR_HASH_KEY_STRING);
        if (vb && vb->event_id && !strcmp(vb->event_id, id)) {
            continue;
        }
        for (i = 0; i < n && !v; i++) {
            const mxf_rs_value_t *vi = lookup(states[i], key);
            if (vi && vi->event_id && !strcmp(vi->event_id, id)) {
                v = vi;
            }
        }
        mxf_sr_key_split(k, klen, &type, &state_key);
        if (!v) {
            mxf_rs_value_t got;
            memset(&got, 0, sizeof(got));
            if (!ctx->resolver.value_of
                || !ctx->resolver.value_of(ctx->resolver.baton, room, id, &got)
                || got.nid == 0) {
                *why = apr_psprintf(ctx->p, "state resolution chose %s, an unknown event", id);
                return NULL;
            }
            got.event_id = id;
            v = copy_value(ctx, type, &got);
        }
        apr_hash_set(delta, state_key_of(ctx->p, type, state_key), APR_HASH_KEY_STRING, v);
    }
    for (hi = apr_hash_first(tmp, fb); hi; hi = apr_hash_next(hi)) {
        const char *key = apr_hash_this_key(hi);
        apr_ssize_t klen;
        const char *k = to_sr_key(tmp, key, &klen);
        if (!apr_hash_get(out, k, klen)) {
            apr_hash_set(delta, apr_pstrdup(ctx->p, key), APR_HASH_KEY_STRING, &removed_value);
        }
    }
    return apr_hash_count(delta) == 0 ? base : new_child(ctx, base, delta);
}

mxf_rs_state_t *mxf_rs_merge(mxf_rs_ctx_t *ctx, mxf_rs_room_t *room,
                             apr_array_header_t *states, const char **why)
{
    mxf_rs_state_t *base = APR_ARRAY_IDX(states, 0, mxf_rs_state_t *), *result;
    mxf_rs_state_t **sorted;
    apr_hash_t *cand;
    apr_hash_index_t *hi;
    apr_pool_t *tmp;
    const char *first_diff = NULL;
    long ndiff = 0;
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

    /* The keys that may differ: changed on some branch since it forked from base. */
    apr_pool_create(&tmp, ctx->p);
    cand = apr_hash_make(tmp);
    for (i = 0; i < n; i++) {
        mxf_rs_state_t *s = sorted[i], *lca;
        if (s == base) {
            continue;
        }
        if ((lca = common_ancestor(base, s)) != NULL) {
            changed_keys(tmp, base, lca, cand);
            changed_keys(tmp, s, lca, cand);
        }
        else {
            /* Unrelated roots (loaded from the database): compare in full. */
            apr_hash_t *fb = full_map(tmp, base), *fs = full_map(tmp, s);
            for (hi = apr_hash_first(tmp, fs); hi; hi = apr_hash_next(hi)) {
                apr_hash_set(cand, apr_hash_this_key(hi), APR_HASH_KEY_STRING, s);
            }
            for (hi = apr_hash_first(tmp, fb); hi; hi = apr_hash_next(hi)) {
                apr_hash_set(cand, apr_hash_this_key(hi), APR_HASH_KEY_STRING, base);
            }
        }
    }
    for (hi = apr_hash_first(tmp, cand); hi; hi = apr_hash_next(hi)) {
        const char *key = apr_hash_this_key(hi);
        const mxf_rs_value_t *v0 = lookup(sorted[0], key);
        for (i = 1; i < n; i++) {
            const mxf_rs_value_t *vi = lookup(sorted[i], key);
            if ((v0 ? v0->nid : 0) != (vi ? vi->nid : 0)) {
                if (!first_diff) {
                    first_diff = describe(tmp, key, v0, vi);
                }
                ndiff++;
                break;
            }
        }
    }
    if (ndiff == 0) {
        result = base;
    }
    else if (!ctx->resolver.resolve) {
        *why = apr_pstrdup(ctx->p, first_diff);
        result = NULL;
    }
    else {
        ctx->n_resolved++;
        ctx->n_differing += ndiff;
        result = resolve(ctx, room, tmp, base, sorted, n, why);
        if (!result && *why) {
            *why = apr_pstrdup(ctx->p, *why);
        }
    }
    apr_pool_destroy(tmp);
    if (result) {
        apr_hash_set(ctx->merges, sorted, sizeof(*sorted) * (apr_size_t)n, result);
    }
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
                       "SELECT s.type, s.state_key, s.event_nid, e.membership, e.sender, e.event_id,"
                       "       CASE WHEN s.type IN ('m.room.power_levels',"
                       "            'm.room.history_visibility', 'm.room.create',"
                       "            'm.room.server_acl', 'm.room.join_rules')"
                       "            THEN ((CASE WHEN e.redacted_because = 'content-hash'"
                       "                        THEN coalesce(e.redacted_pdu, e.pdu)"
                       "                        ELSE e.pdu END)::jsonb -> 'content')::text END"
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
        v->event_id = apr_pstrdup(ctx->p, PQgetvalue(res, i, 5));
        if (!PQgetisnull(res, i, 6)) {
            v->content = mxf_json_own(ctx->p, json_loads(PQgetvalue(res, i, 6), 0, NULL));
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
    if (!s->parent || s->db_chain > MXF_RS_CHAIN_MAX || s->removes) {
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

void mxf_rs_take_rows(mxf_rs_ctx_t *ctx, apr_pool_t *p, mxf_rs_rows_t *rows)
{
    apr_pool_t *tmp;
    int i;

    mxf_copy_init(&rows->groups, p, 1 << 14);
    mxf_copy_init(&rows->entries, p, 1 << 16);
    mxf_copy_init(&rows->vis, p, 1 << 12);
    if (ctx->pending_groups->nelts == 0 && ctx->pending_vis->nelts == 0) {
        return;
    }
    apr_pool_create(&tmp, p);
    for (i = 0; i < ctx->pending_groups->nelts; i++) {
        mxf_rs_state_t *s = APR_ARRAY_IDX(ctx->pending_groups, i, mxf_rs_state_t *);
        apr_hash_t *rows_of = s->db_chain == 0 ? full_map(tmp, s) : s->delta;
        apr_hash_index_t *hi;

        mxf_copy_int(&rows->groups, s->id);
        mxf_copy_int(&rows->groups, s->room->nid);
        mxf_copy_nullable_int(&rows->groups, s->db_chain == 0 ? 0 : s->parent->id);
        mxf_copy_int(&rows->groups, s->db_chain);
        mxf_copy_end(&rows->groups);
        for (hi = apr_hash_first(tmp, rows_of); hi; hi = apr_hash_next(hi)) {
            entry_row(&rows->entries, s->id, apr_hash_this_key(hi), apr_hash_this_val(hi));
        }
    }
    for (i = 0; i < ctx->pending_vis->nelts; i++) {
        vis_t *v = APR_ARRAY_IDX(ctx->pending_vis, i, vis_t *);
        mxf_rs_room_t *room = apr_hash_get(ctx->vis_room, v, sizeof(vis_t *));
        mxf_copy_int(&rows->vis, v->id);
        mxf_copy_int(&rows->vis, room->nid);
        mxf_copy_str(&rows->vis, v->history_visibility);
        copy_array(&rows->vis, v->joined);
        copy_array(&rows->vis, v->invited);
        mxf_copy_end(&rows->vis);
    }
    apr_pool_destroy(tmp);
    apr_array_clear(ctx->pending_groups);
    apr_array_clear(ctx->pending_vis);
}

int mxf_rs_write_rows(PGconn *conn, const mxf_rs_rows_t *rows)
{
    return mxf_pg_copy(conn, "COPY mxf_state_groups (group_id, room_nid, prev_group, chain_len)"
                             " FROM STDIN", &rows->groups)
           && mxf_pg_copy(conn, "COPY mxf_state_entries (group_id, type, state_key, event_nid)"
                                " FROM STDIN", &rows->entries)
           && mxf_pg_copy(conn, "COPY mxf_visibility (vis_id, room_nid, history_visibility,"
                                " joined_servers, invited_servers) FROM STDIN", &rows->vis);
}

int mxf_rs_flush(mxf_rs_ctx_t *ctx, PGconn *conn)
{
    apr_pool_t *tmp;
    mxf_rs_rows_t rows;
    int ok;

    if (ctx->pending_groups->nelts == 0 && ctx->pending_vis->nelts == 0) {
        return 1;
    }
    apr_pool_create(&tmp, ctx->p);
    mxf_rs_take_rows(ctx, tmp, &rows);
    ok = mxf_rs_write_rows(conn, &rows);
    apr_pool_destroy(tmp);
    return ok;
}
