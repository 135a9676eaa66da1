/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#include <stdlib.h>
#include <string.h>

#include <apr_sha1.h>
#include <apr_strings.h>

#include "mxf_authrules.h"
#include "mxf_stateres.h"

#define T_CREATE "m.room.create"
#define T_MEMBER "m.room.member"
#define T_JR     "m.room.join_rules"
#define T_PL     "m.room.power_levels"

/* ------------------------------------------------------------------------
 * State maps.
 */
const char *mxf_sr_key(apr_pool_t *p, const char *type, const char *state_key,
                       apr_ssize_t *klen)
{
    apr_size_t tl = strlen(type), sl = strlen(state_key);
    char *k = apr_palloc(p, tl + sl + 2);

    memcpy(k, type, tl + 1);
    memcpy(k + tl + 1, state_key, sl + 1);
    *klen = (apr_ssize_t)(tl + 1 + sl);
    return k;
}

void mxf_sr_key_split(const void *key, apr_ssize_t klen, const char **type,
                      const char **state_key)
{
    const char *k = key;

    (void)klen;
    *type = k;
    *state_key = k + strlen(k) + 1;
}

void mxf_sr_set(apr_pool_t *p, apr_hash_t *state, const char *type, const char *state_key,
                const char *event_id)
{
    apr_ssize_t klen;
    const char *k = mxf_sr_key(p, type, state_key, &klen);

    apr_hash_set(state, k, klen, event_id);
}

const char *mxf_sr_get(apr_hash_t *state, const char *type, const char *state_key)
{
    char buf[512];
    apr_size_t tl = strlen(type), sl = strlen(state_key);

    if (tl + sl + 2 > sizeof(buf)) {
        apr_pool_t *p;
        const char *k, *v;
        apr_ssize_t klen;
        apr_pool_create(&p, NULL);
        k = mxf_sr_key(p, type, state_key, &klen);
        v = apr_hash_get(state, k, klen);
        apr_pool_destroy(p);
        return v;
    }
    memcpy(buf, type, tl + 1);
    memcpy(buf + tl + 1, state_key, sl + 1);
    return apr_hash_get(state, buf, (apr_ssize_t)(tl + 1 + sl));
}

/* ------------------------------------------------------------------------
 * Events as the algorithm sees them.
 */
typedef struct node node_t;
struct node {
    const char *id;
    apr_int64_t seq;
    unsigned loaded:1, missing:1, rejected:1;
    const json_t *pdu;
    const char *type, *sk, *sender;
    apr_int64_t ts, depth;
    apr_array_header_t *auth;       /* const char * */
    /* auth difference: the states whose auth chain holds it (NULL: none) */
    apr_uint64_t *mask;
    unsigned in_heap:1, done:1, numbered:1;
    /* in the auth chain of the unconflicted state (ru_known: decided) */
    unsigned ru_known:1, ru:1;
    unsigned visit;                 /* upward search generation */
    /* conflicted state subgraph */
    unsigned sg_state:2, reach:1;
    unsigned conflicted:1, in_fcs:1, in_x:1;
    /* orderings */
    mxf_auth_level_t power;
    apr_int64_t mainline;
    unsigned mainline_known:1, on_path:1;
    int outdeg;
    apr_array_header_t *parents;    /* node_t *, the events of X citing this one */
};

typedef struct sr {
    apr_pool_t *p;
    apr_pool_t *scratch;
    const mxf_roomver_t *rv;
    const mxf_sr_provider_t *prov;
    apr_hash_t *nodes;
    const char *room_id;
    const char *create_id;          /* v12 */
    mxf_sr_stats_t *st;
    unsigned visit;                 /* last upward search generation */
    int mwords;                     /* words of a set of states (bit i: states[i]) */
    apr_uint64_t *full;             /* the set of all states */
} sr_t;

static apr_int64_t jint(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);

    if (json_is_integer(v)) {
        return (apr_int64_t)json_integer_value(v);
    }
    if (json_is_real(v)) {
        return (apr_int64_t)json_real_value(v);
    }
    return 0;
}

static const char *jstr(const json_t *o, const char *key)
{
    const json_t *v = json_is_object(o) ? json_object_get(o, key) : NULL;

    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* The node of @a id (created on first use, not yet loaded). */
static node_t *node_get(sr_t *s, const char *id)
{
    node_t *n = apr_hash_get(s->nodes, id, APR_HASH_KEY_STRING);

    if (n == NULL) {
        n = apr_pcalloc(s->p, sizeof(*n));
        n->id = id;
        n->seq = -1;
        if (s->prov->seq) {
            n->seq = s->prov->seq(s->prov->baton, id);
            if (n->seq < 0) {
                n->missing = 1;
                n->loaded = 1;
            }
        }
        apr_hash_set(s->nodes, id, APR_HASH_KEY_STRING, n);
    }
    return n;
}

/* Loads the event of @a n; 0 if the provider does not know it. */
static int node_load(sr_t *s, node_t *n)
{
    int rejected = 0;

    if (!n->loaded) {
        n->loaded = 1;
        n->pdu = s->prov->get_event(s->prov->baton, n->id, &rejected);
        if (s->st) {
            s->st->fetched++;
        }
        if (n->pdu == NULL || !json_is_object(n->pdu)) {
            n->missing = 1;
            n->pdu = NULL;
        }
        else {
            n->rejected = rejected != 0;
            n->type = jstr(n->pdu, "type");
            n->sk = jstr(n->pdu, "state_key");
            n->sender = jstr(n->pdu, "sender");
            n->ts = jint(n->pdu, "origin_server_ts");
            n->depth = jint(n->pdu, "depth");
            n->auth = mxf_auth_event_refs(s->p, n->pdu, "auth_events");
        }
    }
    return !n->missing;
}

static node_t *node_loaded(sr_t *s, const char *id)
{
    node_t *n = node_get(s, id);

    return node_load(s, n) ? n : NULL;
}

static int is_key(const node_t *n, const char *type, const char *sk)
{
    return n->type && n->sk && strcmp(n->type, type) == 0 && strcmp(n->sk, sk) == 0;
}

/* The auth event of @a n with (@a type, @a sk), or NULL. */
static node_t *auth_event_of(sr_t *s, node_t *n, const char *type, const char *sk)
{
    int i;

    for (i = 0; n->auth && i < n->auth->nelts; i++) {
        node_t *a = node_loaded(s, APR_ARRAY_IDX(n->auth, i, const char *));
        if (a && is_key(a, type, sk)) {
            return a;
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------------
 * A binary heap of pointers.
 */
typedef int heap_cmp_fn(const void *a, const void *b);   /* < 0: a comes out first */

typedef struct heap {
    apr_pool_t *p;
    void **v;
    int n, cap;
    heap_cmp_fn *cmp;
} heap_t;

static void heap_init(heap_t *h, apr_pool_t *p, heap_cmp_fn *cmp)
{
    h->p = p;
    h->n = 0;
    h->cap = 16;
    h->v = apr_palloc(p, sizeof(void *) * (apr_size_t)h->cap);
    h->cmp = cmp;
}

static void heap_push(heap_t *h, void *x)
{
    int i;

    if (h->n == h->cap) {
        void **nv = apr_palloc(h->p, sizeof(void *) * (apr_size_t)h->cap * 2);
        memcpy(nv, h->v, sizeof(void *) * (apr_size_t)h->n);
        h->v = nv;
        h->cap *= 2;
    }
    i = h->n++;
    while (i > 0 && h->cmp(x, h->v[(i - 1) / 2]) < 0) {
        h->v[i] = h->v[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->v[i] = x;
}

static void *heap_pop(heap_t *h)
{
    void *top, *last;
    int i = 0;

    if (h->n == 0) {
        return NULL;
    }
    top = h->v[0];
    last = h->v[--h->n];
    for (;;) {
        int c = 2 * i + 1;
        if (c >= h->n) {
            break;
        }
        if (c + 1 < h->n && h->cmp(h->v[c + 1], h->v[c]) < 0) {
            c++;
        }
        if (h->cmp(h->v[c], last) >= 0) {
            break;
        }
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n > 0) {
        h->v[i] = last;
    }
    return top;
}

/* Highest sequence number first. */
static int cmp_seq_desc(const void *a, const void *b)
{
    const node_t *x = a, *y = b;

    if (x->seq != y->seq) {
        return x->seq > y->seq ? -1 : 1;
    }
    return strcmp(x->id, y->id);
}

/* ------------------------------------------------------------------------
 * Sequence numbers when the provider has none: number the auth ancestry
 * of @a seeds in post-order (auth events first).
 */
static void number_ancestry(sr_t *s, apr_array_header_t *seeds)
{
    typedef struct frame { node_t *n; int i; } frame_t;
    apr_array_header_t *stack = apr_array_make(s->p, 64, sizeof(frame_t));
    apr_int64_t next = 0;
    int k;

    for (k = 0; k < seeds->nelts; k++) {
        node_t *root = APR_ARRAY_IDX(seeds, k, node_t *);
        frame_t *f;

        if (root->numbered) {
            continue;
        }
        root->numbered = 1;
        f = apr_array_push(stack);
        f->n = root;
        f->i = 0;
        while (stack->nelts > 0) {
            frame_t *top = &APR_ARRAY_IDX(stack, stack->nelts - 1, frame_t);
            node_t *n = top->n;

            if (!node_load(s, n) || top->i >= n->auth->nelts) {
                n->seq = n->missing ? -1 : next++;
                stack->nelts--;
                continue;
            }
            {
                node_t *a = node_get(s, APR_ARRAY_IDX(n->auth, top->i, const char *));
                top->i++;
                if (!a->numbered) {
                    a->numbered = 1;
                    f = apr_array_push(stack);
                    f->n = a;
                    f->i = 0;
                }
            }
        }
    }
}

/* ------------------------------------------------------------------------
 * Sets of states, as bit sets of s->mwords words: as many states as the
 * caller gives (the forward extremities of a room can be hundreds).
 */
static apr_uint64_t *mask_new(sr_t *s)
{
    return apr_pcalloc(s->p, sizeof(apr_uint64_t) * (apr_size_t)s->mwords);
}

static void mask_add_state(apr_uint64_t *m, int i)
{
    m[i / 64] |= (apr_uint64_t)1 << (i % 64);
}

static int mask_is_full(const sr_t *s, const apr_uint64_t *m)
{
    return m != NULL && memcmp(m, s->full, sizeof(apr_uint64_t) * (apr_size_t)s->mwords) == 0;
}

/* n's set |= m */
static void mask_or(sr_t *s, node_t *n, const apr_uint64_t *m)
{
    int w;

    if (m == NULL) {
        return;
    }
    if (n->mask == NULL) {
        n->mask = mask_new(s);
    }
    for (w = 0; w < s->mwords; w++) {
        n->mask[w] |= m[w];
    }
}

static void mask_init(sr_t *s, int nstates)
{
    int i;

    s->mwords = (nstates + 63) / 64;
    s->full = mask_new(s);
    for (i = 0; i < nstates; i++) {
        mask_add_state(s->full, i);
    }
}

/*
 * Pushes the mask of @a x (just taken from @a h) down to its auth events,
 * queueing those not queued yet (and recording them in @a touched, if
 * given); *partial counts the queued events whose mask is not full.
 */
static void mask_down(sr_t *s, heap_t *h, node_t *x, long *partial,
                      apr_array_header_t *touched)
{
    int i;

    if (!node_load(s, x)) {
        return;
    }
    for (i = 0; i < x->auth->nelts; i++) {
        node_t *a = node_get(s, APR_ARRAY_IDX(x->auth, i, const char *));
        int was_full;
        if (a->missing || a->done) {
            continue;   /* unknown, or a sequence number out of order */
        }
        was_full = mask_is_full(s, a->mask);
        mask_or(s, a, x->mask);
        if (!a->in_heap) {
            a->in_heap = 1;
            heap_push(h, a);
            if (touched) {
                APR_ARRAY_PUSH(touched, node_t *) = a;
            }
            *partial += !mask_is_full(s, a->mask);
        }
        else if (!was_full && mask_is_full(s, a->mask)) {
            (*partial)--;
        }
    }
}

/* ------------------------------------------------------------------------
 * Auth difference: every event in the auth chain (the state events
 * themselves included) of some state but not of all. mask(x) = the states
 * whose auth chain holds x, pushed down the auth edges in descending
 * sequence order, so each mask is complete when its event is taken.
 * Once all events left to take are in every chain, none below can be in
 * the difference, and the walk stops.
 */
static void auth_difference(sr_t *s, apr_hash_t *seedmask, apr_array_header_t *diff)
{
    apr_hash_index_t *hi;
    heap_t h;
    long partial = 0;

    heap_init(&h, s->p, cmp_seq_desc);
    for (hi = apr_hash_first(s->p, seedmask); hi; hi = apr_hash_next(hi)) {
        const void *k;
        void *v;
        node_t *n;
        apr_hash_this(hi, &k, NULL, &v);
        n = node_get(s, k);
        if (n->missing) {
            continue;
        }
        mask_or(s, n, v);
        n->in_heap = 1;
        heap_push(&h, n);
        if (!mask_is_full(s, n->mask)) {
            partial++;
        }
    }
    while (partial > 0) {
        node_t *x = heap_pop(&h);
        if (x == NULL) {
            break;
        }
        x->done = 1;
        if (!mask_is_full(s, x->mask)) {    /* in some auth chains, not all */
            partial--;
            APR_ARRAY_PUSH(diff, node_t *) = x;
        }
        mask_down(s, &h, x, &partial, NULL);
    }
}

/* ------------------------------------------------------------------------
 * Auth difference from the conflicted events (provider with children).
 * U: the unconflicted state map. An event of U, or one below an event of
 * U, is in the auth chain of every state; the others reached from the
 * conflicted events are in the difference unless every state's conflicted
 * events reach them.
 */

/* Most events one upward search may visit before giving up. */
#define RU_SEARCH_MAX 20000

/* @a n is the event U holds for its (type, state_key). */
static int in_unconflicted(sr_t *s, apr_hash_t *u, node_t *n)
{
    const char *id;

    if (!node_load(s, n) || n->type == NULL || n->sk == NULL) {
        return 0;
    }
    id = mxf_sr_get(u, n->type, n->sk);
    return id != NULL && strcmp(id, n->id) == 0;
}

/*
 * Whether @a x is in the auth chain of U (itself in U included): some
 * event citing it, directly or not, is in U. Searches upwards through the
 * children the provider lists, depth first, newest child first (towards
 * the present, where the events of U are). What it learns is kept for the
 * rest of the resolution. -1 if the provider cannot list some children or
 * the search passes RU_SEARCH_MAX events.
 */
static int in_unconflicted_chain(sr_t *s, apr_hash_t *u, node_t *x)
{
    apr_array_header_t *stack, *seen;
    int found = 0, i;

    if (x->ru_known) {
        return x->ru;
    }
    stack = apr_array_make(s->scratch, 16, sizeof(node_t *));
    seen = apr_array_make(s->scratch, 16, sizeof(node_t *));
    s->visit++;
    x->visit = s->visit;
    APR_ARRAY_PUSH(stack, node_t *) = x;
    while (stack->nelts > 0 && !found) {
        node_t *z = APR_ARRAY_IDX(stack, --stack->nelts, node_t *);
        const char *const *kids;
        int nk = 0;

        if (z->ru_known) {
            found = z->ru;
            continue;
        }
        if (in_unconflicted(s, u, z)) {
            found = 1;
            break;
        }
        APR_ARRAY_PUSH(seen, node_t *) = z;
        if (seen->nelts > RU_SEARCH_MAX
            || (kids = s->prov->children(s->prov->baton, z->id, &nk)) == NULL) {
            apr_pool_clear(s->scratch);
            return -1;
        }
        for (i = 0; i < nk; i++) {
            node_t *c = node_get(s, kids[i]);
            if (c->missing || c->visit == s->visit
                || (s->prov->seq_limit > 0 && c->seq >= s->prov->seq_limit)) {
                continue;
            }
            c->visit = s->visit;
            APR_ARRAY_PUSH(stack, node_t *) = c;
        }
    }
    x->ru_known = 1;
    x->ru = found != 0;
    if (!found) {
        /* nothing above any of them is in U */
        for (i = 0; i < seen->nelts; i++) {
            node_t *z = APR_ARRAY_IDX(seen, i, node_t *);
            z->ru_known = 1;
            z->ru = 0;
        }
    }
    apr_pool_clear(s->scratch);
    return found != 0;
}

/*
 * The auth difference (as auth_difference() defines it), walking down from
 * the conflicted events in descending sequence order. mask(x) = the states
 * whose conflicted events reach x; an event in the auth chain of U, or
 * below one whose mask is full, is in every state's chain (its mask is set
 * full and pushed down like the others). The walk stops when no event left
 * to visit can be in the difference. 0 if the provider's children do not
 * suffice (nothing pushed to @a diff; the caller falls back to
 * auth_difference()).
 */
static int auth_difference_from_conflict(sr_t *s, apr_hash_t *u, apr_hash_t *cmask,
                                         apr_array_header_t *conflicted,
                                         apr_array_header_t *diff)
{
    apr_array_header_t *out = apr_array_make(s->p, 16, sizeof(node_t *));
    apr_array_header_t *touched = apr_array_make(s->p, 16, sizeof(node_t *));
    heap_t h;
    long partial = 0;
    int i, ok = 1;

    heap_init(&h, s->p, cmp_seq_desc);
    for (i = 0; i < conflicted->nelts; i++) {
        node_t *c = APR_ARRAY_IDX(conflicted, i, node_t *);
        apr_uint64_t *m = apr_hash_get(cmask, c->id, APR_HASH_KEY_STRING);
        if (c->missing || c->in_heap) {
            continue;
        }
        mask_or(s, c, m);
        c->in_heap = 1;
        heap_push(&h, c);
        APR_ARRAY_PUSH(touched, node_t *) = c;
        partial += !mask_is_full(s, c->mask);
    }
    while (partial > 0) {
        node_t *x = heap_pop(&h);
        int r;

        if (x == NULL) {
            break;
        }
        x->done = 1;
        if (!mask_is_full(s, x->mask)) {
            partial--;
            if ((r = in_unconflicted_chain(s, u, x)) < 0) {
                ok = 0;
                break;
            }
            if (r) {
                x->mask = s->full;  /* in every chain, and so is all below it */
            }
            else {
                APR_ARRAY_PUSH(out, node_t *) = x;
            }
        }
        mask_down(s, &h, x, &partial, touched);
    }
    if (!ok) {
        for (i = 0; i < touched->nelts; i++) {
            node_t *n = APR_ARRAY_IDX(touched, i, node_t *);
            n->mask = NULL;
            n->in_heap = n->done = 0;
        }
        return 0;
    }
    apr_array_cat(diff, out);
    return 1;
}

/* ------------------------------------------------------------------------
 * v2.1 conflicted state subgraph: the events on auth_events paths between
 * conflicted events. An event below the lowest conflicted sequence number
 * cannot lead to one, so the walk stops there.
 */
static void conflicted_subgraph(sr_t *s, apr_array_header_t *conflicted,
                                apr_array_header_t *out)
{
    typedef struct frame { node_t *n; int i; } frame_t;
    apr_array_header_t *stack = apr_array_make(s->p, 64, sizeof(frame_t));
    apr_int64_t minseq = -1;
    int k;

    for (k = 0; k < conflicted->nelts; k++) {
        node_t *c = APR_ARRAY_IDX(conflicted, k, node_t *);
        if (minseq < 0 || c->seq < minseq) {
            minseq = c->seq;
        }
    }
    for (k = 0; k < conflicted->nelts; k++) {
        node_t *root = APR_ARRAY_IDX(conflicted, k, node_t *);
        frame_t *f;

        if (root->sg_state) {
            continue;
        }
        root->sg_state = 1;
        f = apr_array_push(stack);
        f->n = root;
        f->i = 0;
        while (stack->nelts > 0) {
            frame_t *top = &APR_ARRAY_IDX(stack, stack->nelts - 1, frame_t);
            node_t *n = top->n, *a;

            if (!node_load(s, n) || top->i >= n->auth->nelts) {
                n->reach = n->reach || n->conflicted;
                n->sg_state = 2;
                if (n->reach) {
                    APR_ARRAY_PUSH(out, node_t *) = n;
                }
                stack->nelts--;
                if (stack->nelts > 0 && n->reach) {
                    APR_ARRAY_IDX(stack, stack->nelts - 1, frame_t).n->reach = 1;
                }
                continue;
            }
            a = node_get(s, APR_ARRAY_IDX(n->auth, top->i, const char *));
            top->i++;
            if (a->missing || a->seq < minseq) {
                continue;
            }
            if (a->sg_state == 2) {
                n->reach = n->reach || a->reach;
            }
            else if (a->sg_state == 0) {
                a->sg_state = 1;
                f = apr_array_push(stack);
                f->n = a;
                f->i = 0;
            }
            /* sg_state 1: a cycle; ignored */
        }
    }
}

/* ------------------------------------------------------------------------
 * Orderings.
 */

/* The room's create event (v12: named by the room ID). */
static node_t *room_create(sr_t *s, node_t *ev)
{
    if (s->create_id) {
        return node_loaded(s, s->create_id);
    }
    return auth_event_of(s, ev, T_CREATE, "");
}

/* The power of @a n's sender, looking at its auth events. */
static mxf_auth_level_t sender_power(sr_t *s, node_t *n)
{
    node_t *pl = auth_event_of(s, n, T_PL, "");
    node_t *create = room_create(s, n);

    return mxf_auth_user_level(s->rv, pl ? pl->pdu : NULL, create ? create->pdu : NULL,
                               n->sender);
}

/* Reverse topological power ordering: highest power, then earliest, then smallest ID. */
static int cmp_power(const void *a, const void *b)
{
    const node_t *x = a, *y = b;
    int c = mxf_auth_level_cmp(x->power, y->power);

    if (c != 0) {
        return -c;
    }
    if (x->ts != y->ts) {
        return x->ts < y->ts ? -1 : 1;
    }
    return strcmp(x->id, y->id);
}

/* Mainline ordering: earliest mainline position, then earliest, then smallest ID. */
static int cmp_mainline(const void *a, const void *b)
{
    const node_t *x = *(node_t *const *)a, *y = *(node_t *const *)b;

    if (x->mainline != y->mainline) {
        return x->mainline < y->mainline ? -1 : 1;
    }
    if (x->ts != y->ts) {
        return x->ts < y->ts ? -1 : 1;
    }
    return strcmp(x->id, y->id);
}

/*
 * The power events of the full conflicted set with their auth chains in
 * it, in reverse topological power ordering (Kahn's algorithm, taking the
 * smallest ready event each time). The auth chains are followed through
 * events of the full conflicted set only (an ancestor reached only through
 * events outside it is left out), as the reference homeserver follows
 * them; the spec's "events in the auth chain of P which also belong to the
 * full conflicted set" could also be read as every such ancestor.
 */
static apr_array_header_t *sorted_power_events(sr_t *s, apr_array_header_t *fcs)
{
    apr_array_header_t *x = apr_array_make(s->p, 16, sizeof(node_t *));
    apr_array_header_t *stack = apr_array_make(s->p, 16, sizeof(node_t *));
    apr_array_header_t *out = apr_array_make(s->p, 16, sizeof(node_t *));
    heap_t h;
    int i, j;

    for (i = 0; i < fcs->nelts; i++) {
        node_t *n = APR_ARRAY_IDX(fcs, i, node_t *);
        if (!n->in_x && mxf_auth_is_power_event(n->pdu)) {
            n->in_x = 1;
            APR_ARRAY_PUSH(stack, node_t *) = n;
        }
        while (stack->nelts > 0) {
            node_t *m = APR_ARRAY_IDX(stack, --stack->nelts, node_t *);
            APR_ARRAY_PUSH(x, node_t *) = m;
            for (j = 0; j < m->auth->nelts; j++) {
                node_t *a = apr_hash_get(s->nodes, APR_ARRAY_IDX(m->auth, j, const char *),
                                         APR_HASH_KEY_STRING);
                if (a && a->in_fcs && !a->in_x) {
                    a->in_x = 1;
                    APR_ARRAY_PUSH(stack, node_t *) = a;
                }
            }
        }
    }
    for (i = 0; i < x->nelts; i++) {
        node_t *m = APR_ARRAY_IDX(x, i, node_t *);
        m->power = sender_power(s, m);
        for (j = 0; j < m->auth->nelts; j++) {
            node_t *a = apr_hash_get(s->nodes, APR_ARRAY_IDX(m->auth, j, const char *),
                                     APR_HASH_KEY_STRING);
            if (a && a->in_x && a != m) {
                m->outdeg++;
                if (a->parents == NULL) {
                    a->parents = apr_array_make(s->p, 4, sizeof(node_t *));
                }
                APR_ARRAY_PUSH(a->parents, node_t *) = m;
            }
        }
    }
    heap_init(&h, s->p, cmp_power);
    for (i = 0; i < x->nelts; i++) {
        node_t *m = APR_ARRAY_IDX(x, i, node_t *);
        if (m->outdeg == 0) {
            heap_push(&h, m);
        }
    }
    while (h.n > 0) {
        node_t *m = heap_pop(&h);
        APR_ARRAY_PUSH(out, node_t *) = m;
        for (j = 0; m->parents && j < m->parents->nelts; j++) {
            node_t *q = APR_ARRAY_IDX(m->parents, j, node_t *);
            if (--q->outdeg == 0) {
                heap_push(&h, q);
            }
        }
    }
    if (s->st) {
        s->st->power_events = (apr_size_t)out->nelts;
    }
    return out;   /* events on an auth cycle (impossible for hashed IDs) are left out */
}

/*
 * The mainline: the resolved power levels event, the one it cites, and so
 * on. It is walked only as far down as the events being sorted need (by
 * sequence number: an event is on it iff it is there once the walk has
 * passed its number), so its length, which grows with the room's history,
 * does not count. Positions are counted from the top: an event's mainline
 * value is -1 - (distance from the resolved event) of the nearest mainline
 * event among its power levels ancestors, MAINLINE_NONE if there is none;
 * ascending values are then ascending mainline depth.
 */
#define MAINLINE_NONE APR_INT64_MIN

typedef struct mainline {
    node_t *next;                   /* the next event to put on the line, or NULL */
    apr_int64_t len;
} mainline_t;

/* Walks the mainline down past sequence number @a seq. */
static void mainline_extend(sr_t *s, mainline_t *ml, apr_int64_t seq)
{
    while (ml->next && (ml->next->seq >= seq || ml->next->seq < 0)) {
        node_t *pl = ml->next;
        if (pl->mainline_known) {   /* a cycle (impossible for hashed IDs) */
            ml->next = NULL;
            break;
        }
        pl->mainline_known = 1;
        pl->mainline = -1 - ml->len++;
        ml->next = auth_event_of(s, pl, T_PL, "");
    }
}

/* The mainline value of power levels event @a pl (see above). */
static apr_int64_t mainline_depth(sr_t *s, mainline_t *ml, node_t *pl)
{
    apr_array_header_t *path = apr_array_make(s->scratch, 8, sizeof(node_t *));
    apr_int64_t d = MAINLINE_NONE;
    int i;

    while (pl) {
        mainline_extend(s, ml, pl->seq);
        if (pl->mainline_known) {
            d = pl->mainline;
            break;
        }
        if (pl->on_path) {          /* on this path already: a cycle */
            break;
        }
        pl->on_path = 1;
        APR_ARRAY_PUSH(path, node_t *) = pl;
        pl = auth_event_of(s, pl, T_PL, "");
    }
    for (i = 0; i < path->nelts; i++) {
        node_t *n = APR_ARRAY_IDX(path, i, node_t *);
        n->on_path = 0;
        n->mainline_known = 1;
        n->mainline = d;
    }
    return d;
}

static void mainline_sort(sr_t *s, apr_array_header_t *events, apr_hash_t *state)
{
    const char *pl_id = mxf_sr_get(state, T_PL, "");
    mainline_t ml;
    int i;

    ml.next = pl_id ? node_loaded(s, pl_id) : NULL;
    ml.len = 0;
    for (i = 0; i < events->nelts; i++) {
        node_t *e = APR_ARRAY_IDX(events, i, node_t *);
        node_t *epl = auth_event_of(s, e, T_PL, "");
        e->mainline = epl ? mainline_depth(s, &ml, epl) : MAINLINE_NONE;
    }
    qsort(events->elts, (size_t)events->nelts, sizeof(node_t *), cmp_mainline);
}

/* ------------------------------------------------------------------------
 * Iterative auth checks.
 */
typedef struct ia_baton {
    sr_t *s;
    node_t *ev;
    apr_hash_t *state;
    int use_auth_events;    /* v2: fall back to the event's auth events */
} ia_baton_t;

static const json_t *ia_lookup(void *baton, const char *type, const char *sk,
                               const char **event_id)
{
    ia_baton_t *b = baton;
    const char *id;
    node_t *n;
    int i;

    if (b->s->create_id && strcmp(type, T_CREATE) == 0 && sk[0] == '\0') {
        n = node_loaded(b->s, b->s->create_id);
        if (n && event_id) {
            *event_id = n->id;
        }
        return n ? n->pdu : NULL;
    }
    if ((id = mxf_sr_get(b->state, type, sk)) != NULL) {
        n = node_loaded(b->s, id);
        if (n && !n->rejected) {
            if (event_id) {
                *event_id = n->id;
            }
            return n->pdu;
        }
    }
    if (!b->use_auth_events) {
        return NULL;
    }
    for (i = 0; i < b->ev->auth->nelts; i++) {
        n = node_loaded(b->s, APR_ARRAY_IDX(b->ev->auth, i, const char *));
        if (n && !n->rejected && is_key(n, type, sk)) {
            if (event_id) {
                *event_id = n->id;
            }
            return n->pdu;
        }
    }
    return NULL;
}

static int passes(sr_t *s, node_t *n, apr_hash_t *state, int use_auth_events)
{
    ia_baton_t b;
    const char *why;
    apr_status_t rv;

    b.s = s;
    b.ev = n;
    b.state = state;
    b.use_auth_events = use_auth_events;
    rv = mxf_auth_check(s->scratch, s->rv, n->pdu, ia_lookup, &b, &why);
    apr_pool_clear(s->scratch);
    return rv == APR_SUCCESS;
}

static void iterative_auth_checks(sr_t *s, apr_array_header_t *events, apr_hash_t *state)
{
    int i;

    for (i = 0; i < events->nelts; i++) {
        node_t *n = APR_ARRAY_IDX(events, i, node_t *);
        if (n->missing || n->type == NULL || n->sk == NULL) {
            continue;
        }
        if (passes(s, n, state, 1)) {
            mxf_sr_set(s->p, state, n->type, n->sk, n->id);
        }
    }
}

/* ------------------------------------------------------------------------
 * Splitting the states.
 */
typedef struct split {
    apr_hash_t *unconflicted;   /* key -> id */
    apr_hash_t *conflicted;     /* key -> apr_array_header_t of const char * (distinct) */
} split_t;

static void add_distinct(apr_pool_t *p, apr_array_header_t *a, const char *id)
{
    int i;

    for (i = 0; i < a->nelts; i++) {
        if (strcmp(APR_ARRAY_IDX(a, i, const char *), id) == 0) {
            return;
        }
    }
    APR_ARRAY_PUSH(a, const char *) = id;
    (void)p;
}

/*
 * v2: a key is unconflicted when every state has it with the same event.
 * v1 (@a missing_ok): when every state that has it agrees.
 */
static void split_states(apr_pool_t *p, apr_hash_t *const *states, int n, int missing_ok,
                         split_t *sp)
{
    apr_hash_t *seen = apr_hash_make(p);
    apr_hash_index_t *hi;
    int i, j;

    sp->unconflicted = apr_hash_make(p);
    sp->conflicted = apr_hash_make(p);
    for (i = 0; i < n; i++) {
        for (hi = apr_hash_first(p, states[i]); hi; hi = apr_hash_next(hi)) {
            const void *k;
            apr_ssize_t klen;
            void *v;
            const char *id0 = NULL;
            int same = 1;
            apr_array_header_t *vals = NULL;

            apr_hash_this(hi, &k, &klen, &v);
            if (apr_hash_get(seen, k, klen)) {
                continue;
            }
            apr_hash_set(seen, k, klen, k);
            for (j = 0; j < n; j++) {
                const char *id = apr_hash_get(states[j], k, klen);
                if (id == NULL) {
                    if (!missing_ok) {
                        same = 0;
                    }
                    continue;
                }
                if (id0 == NULL) {
                    id0 = id;
                }
                else if (strcmp(id0, id) != 0) {
                    same = 0;
                }
            }
            if (same) {
                apr_hash_set(sp->unconflicted, k, klen, id0);
                continue;
            }
            vals = apr_array_make(p, 2, sizeof(const char *));
            for (j = 0; j < n; j++) {
                const char *id = apr_hash_get(states[j], k, klen);
                if (id) {
                    add_distinct(p, vals, id);
                }
            }
            apr_hash_set(sp->conflicted, k, klen, vals);
        }
    }
}

/* ------------------------------------------------------------------------
 * v2 and v2.1.
 */
static apr_hash_t *resolve_v2(sr_t *s, apr_hash_t *const *states, int nstates)
{
    int v21 = s->rv->state_res == MXF_STATERES_V2_1;
    split_t sp;
    apr_hash_t *cmask = apr_hash_make(s->p);
    apr_array_header_t *conflicted = apr_array_make(s->p, 8, sizeof(node_t *));
    apr_array_header_t *diff = apr_array_make(s->p, 16, sizeof(node_t *));
    apr_array_header_t *sub = apr_array_make(s->p, 16, sizeof(node_t *));
    apr_array_header_t *fcs = apr_array_make(s->p, 16, sizeof(node_t *));
    apr_array_header_t *power, *rest;
    apr_hash_t *partial, *result;
    apr_hash_index_t *hi;
    int i, j;

    split_states(s->p, states, nstates, 0, &sp);
    if (apr_hash_count(sp.conflicted) == 0) {
        return sp.unconflicted;
    }

    /* the conflicted events, each with the states holding it */
    for (hi = apr_hash_first(s->p, sp.conflicted); hi; hi = apr_hash_next(hi)) {
        const void *k;
        apr_ssize_t klen;
        void *v;
        apr_array_header_t *vals;
        apr_hash_this(hi, &k, &klen, &v);
        vals = v;
        if (s->st) {
            s->st->conflicted_keys++;
        }
        for (j = 0; j < vals->nelts; j++) {
            node_t *n = node_get(s, APR_ARRAY_IDX(vals, j, const char *));
            if (node_load(s, n) && !n->conflicted) {
                n->conflicted = 1;
                APR_ARRAY_PUSH(conflicted, node_t *) = n;
            }
        }
        for (i = 0; i < nstates; i++) {
            const char *id = apr_hash_get(states[i], k, klen);
            apr_uint64_t *m;
            if (id == NULL) {
                continue;
            }
            if ((m = apr_hash_get(cmask, id, APR_HASH_KEY_STRING)) == NULL) {
                m = mask_new(s);
                apr_hash_set(cmask, id, APR_HASH_KEY_STRING, m);
            }
            mask_add_state(m, i);
        }
    }
    if (s->st) {
        s->st->conflicted_events = (apr_size_t)conflicted->nelts;
    }

    if (!(s->prov->seq && s->prov->children
          && auth_difference_from_conflict(s, sp.unconflicted, cmask, conflicted, diff))) {
        /* seeds: each state event with the states holding it */
        apr_hash_t *seedmask = apr_hash_make(s->p);
        for (i = 0; i < nstates; i++) {
            for (hi = apr_hash_first(s->p, states[i]); hi; hi = apr_hash_next(hi)) {
                void *v;
                apr_uint64_t *m;
                apr_hash_this(hi, NULL, NULL, &v);
                m = apr_hash_get(seedmask, v, APR_HASH_KEY_STRING);
                if (m == NULL) {
                    m = mask_new(s);
                    apr_hash_set(seedmask, v, APR_HASH_KEY_STRING, m);
                }
                mask_add_state(m, i);
            }
        }
        if (s->prov->seq == NULL) {
            apr_array_header_t *seeds = apr_array_make(s->p, 64, sizeof(node_t *));
            for (hi = apr_hash_first(s->p, seedmask); hi; hi = apr_hash_next(hi)) {
                const void *k;
                apr_hash_this(hi, &k, NULL, NULL);
                APR_ARRAY_PUSH(seeds, node_t *) = node_get(s, k);
            }
            number_ancestry(s, seeds);
        }
        auth_difference(s, seedmask, diff);
        if (s->st) {
            s->st->walked_all = 1;
        }
    }
    if (v21) {
        conflicted_subgraph(s, conflicted, sub);
    }

    /* the full conflicted set, in a stable order */
    for (i = 0; i < 3; i++) {
        apr_array_header_t *part = i == 0 ? conflicted : i == 1 ? diff : sub;
        for (j = 0; j < part->nelts; j++) {
            node_t *n = APR_ARRAY_IDX(part, j, node_t *);
            if (!n->in_fcs && node_load(s, n)) {
                n->in_fcs = 1;
                APR_ARRAY_PUSH(fcs, node_t *) = n;
            }
        }
    }
    if (s->st) {
        s->st->auth_difference = (apr_size_t)diff->nelts;
        for (j = 0; j < sub->nelts; j++) {
            s->st->subgraph += !APR_ARRAY_IDX(sub, j, node_t *)->conflicted;
        }
        s->st->full_conflicted = (apr_size_t)fcs->nelts;
    }

    /* 1, 2 */
    power = sorted_power_events(s, fcs);
    partial = v21 ? apr_hash_make(s->p) : apr_hash_copy(s->p, sp.unconflicted);
    iterative_auth_checks(s, power, partial);

    /* 3, 4 */
    rest = apr_array_make(s->p, fcs->nelts, sizeof(node_t *));
    for (i = 0; i < fcs->nelts; i++) {
        node_t *n = APR_ARRAY_IDX(fcs, i, node_t *);
        if (!n->in_x) {
            APR_ARRAY_PUSH(rest, node_t *) = n;
        }
    }
    mainline_sort(s, rest, partial);
    iterative_auth_checks(s, rest, partial);

    /* 5 */
    result = partial;
    for (hi = apr_hash_first(s->p, sp.unconflicted); hi; hi = apr_hash_next(hi)) {
        const void *k;
        apr_ssize_t klen;
        void *v;
        apr_hash_this(hi, &k, &klen, &v);
        apr_hash_set(result, k, klen, v);
    }
    return result;
}

/* ------------------------------------------------------------------------
 * v1.
 */
static void sha1_of(const char *s, unsigned char out[APR_SHA1_DIGESTSIZE])
{
    apr_sha1_ctx_t c;

    apr_sha1_init(&c);
    apr_sha1_update_binary(&c, (const unsigned char *)s, (unsigned int)strlen(s));
    apr_sha1_final(out, &c);
}

typedef struct v1ev {
    node_t *n;
    unsigned char sha[APR_SHA1_DIGESTSIZE];
} v1ev_t;

/* Ascending depth, then descending sha1(event_id). */
static int cmp_v1_asc(const void *a, const void *b)
{
    const v1ev_t *x = a, *y = b;

    if (x->n->depth != y->n->depth) {
        return x->n->depth < y->n->depth ? -1 : 1;
    }
    return -memcmp(x->sha, y->sha, APR_SHA1_DIGESTSIZE);
}

/* Descending depth, then ascending sha1(event_id). */
static int cmp_v1_desc(const void *a, const void *b)
{
    return -cmp_v1_asc(a, b);
}

static v1ev_t *v1_events(sr_t *s, apr_array_header_t *ids, int *count)
{
    v1ev_t *ev = apr_pcalloc(s->p, sizeof(*ev) * (apr_size_t)(ids->nelts + 1));
    int i, k = 0;

    for (i = 0; i < ids->nelts; i++) {
        node_t *n = node_loaded(s, APR_ARRAY_IDX(ids, i, const char *));
        if (n && n->type && n->sk) {
            ev[k].n = n;
            sha1_of(n->id, ev[k].sha);
            k++;
        }
    }
    *count = k;
    return ev;
}

/* The power levels / join rules / member passes: the longest run that passes auth. */
static node_t *v1_resolve_auth(sr_t *s, apr_array_header_t *ids, apr_hash_t *base)
{
    int n, i;
    v1ev_t *ev = v1_events(s, ids, &n);
    apr_hash_t *st;
    node_t *prev;

    if (n == 0) {
        return NULL;
    }
    qsort(ev, (size_t)n, sizeof(*ev), cmp_v1_asc);
    st = apr_hash_copy(s->p, base);
    prev = ev[0].n;
    for (i = 1; i < n; i++) {
        mxf_sr_set(s->p, st, prev->type, prev->sk, prev->id);
        if (!passes(s, ev[i].n, st, 0)) {
            return prev;
        }
        prev = ev[i].n;
    }
    return prev;
}

/* Other conflicts: the first by descending depth that passes auth, else the last. */
static node_t *v1_resolve_normal(sr_t *s, apr_array_header_t *ids, apr_hash_t *base)
{
    int n, i;
    v1ev_t *ev = v1_events(s, ids, &n);

    if (n == 0) {
        return NULL;
    }
    qsort(ev, (size_t)n, sizeof(*ev), cmp_v1_desc);
    for (i = 0; i < n; i++) {
        if (passes(s, ev[i].n, base, 0)) {
            return ev[i].n;
        }
    }
    return ev[n - 1].n;
}

static apr_hash_t *resolve_v1(sr_t *s, apr_hash_t *const *states, int nstates)
{
    split_t sp;
    apr_hash_t *r, *pass;
    apr_hash_index_t *hi;
    int phase;

    split_states(s->p, states, nstates, 1, &sp);
    r = apr_hash_copy(s->p, sp.unconflicted);
    if (s->st) {
        s->st->conflicted_keys = apr_hash_count(sp.conflicted);
    }
    /* phase 0: power levels, 1: join rules, 2: members, 3: the rest */
    for (phase = 0; phase < 4; phase++) {
        pass = apr_hash_make(s->p);
        for (hi = apr_hash_first(s->p, sp.conflicted); hi; hi = apr_hash_next(hi)) {
            const void *k;
            apr_ssize_t klen;
            void *v;
            const char *type, *sk;
            int kp;
            node_t *win;

            apr_hash_this(hi, &k, &klen, &v);
            mxf_sr_key_split(k, klen, &type, &sk);
            kp = (strcmp(type, T_PL) == 0 && sk[0] == '\0') ? 0
                 : strcmp(type, T_JR) == 0 ? 1 : strcmp(type, T_MEMBER) == 0 ? 2 : 3;
            if (kp != phase) {
                continue;
            }
            win = phase < 3 ? v1_resolve_auth(s, v, r) : v1_resolve_normal(s, v, r);
            if (win) {
                apr_hash_set(pass, k, klen, win->id);
            }
        }
        for (hi = apr_hash_first(s->p, pass); hi; hi = apr_hash_next(hi)) {
            const void *k;
            apr_ssize_t klen;
            void *v;
            apr_hash_this(hi, &k, &klen, &v);
            apr_hash_set(r, k, klen, v);
        }
    }
    return r;
}

/* ------------------------------------------------------------------------ */

apr_status_t mxf_stateres_resolve(apr_pool_t *p, const mxf_roomver_t *rv, const char *room_id,
                                  apr_hash_t *const *states, int nstates,
                                  const mxf_sr_provider_t *prov, apr_hash_t **out,
                                  mxf_sr_stats_t *stats, const char **why)
{
    sr_t s;

    if (prov == NULL || prov->get_event == NULL || rv == NULL) {
        *why = "state resolution needs a room version and an event provider";
        return APR_EINVAL;
    }
    if (nstates < 0) {
        *why = "state resolution of a negative number of states";
        return APR_EINVAL;
    }
    if (stats) {
        memset(stats, 0, sizeof(*stats));
    }
    if (nstates == 0) {
        *out = apr_hash_make(p);
        return APR_SUCCESS;
    }
    if (nstates == 1) {
        *out = apr_hash_copy(p, states[0]);
        return APR_SUCCESS;
    }
    memset(&s, 0, sizeof(s));
    s.p = p;
    s.rv = rv;
    s.prov = prov;
    s.nodes = apr_hash_make(p);
    s.room_id = room_id;
    s.st = stats;
    if (rv->room_id_is_create_hash) {
        if ((s.create_id = mxf_auth_create_id(p, room_id)) == NULL) {
            *why = "room version 12 state resolution needs the room ID";
            return APR_EINVAL;
        }
    }
    apr_pool_create(&s.scratch, p);
    mask_init(&s, nstates);
    *out = rv->state_res == MXF_STATERES_V1 ? resolve_v1(&s, states, nstates)
                                             : resolve_v2(&s, states, nstates);
    apr_pool_destroy(s.scratch);
    return APR_SUCCESS;
}
