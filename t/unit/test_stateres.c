/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * State resolution against the reference scenarios homeservers share
 * (ban vs power levels, join rule evasion, off-topic power levels, topic
 * reset, topic basic, topic, mainline sort; the v2.1 state-reset cases),
 * recreated here as fixtures: events in a table, edges as chains of
 * prev_events, the graph built the same way (events in lexicographic
 * topological order, origin_server_ts counting up, auth events chosen by
 * the auth events selection from the state before, every merge resolved),
 * and the state at END compared exactly.
 */
#include <string.h>

#include <apr_hash.h>
#include <apr_strings.h>

#include "mxf_authrules.h"
#include "mxf_stateres.h"
#include "mxf_test.h"

#define ALICE   "@alice:example.com"
#define BOB     "@bob:example.com"
#define CHARLIE "@charlie:example.com"
#define EVELYN  "@evelyn:example.com"
#define ZARA    "@zara:example.com"
#define ROOM    "!test:example.com"

#define JOIN "{\"membership\":\"join\"}"
#define BAN  "{\"membership\":\"ban\"}"

/* An event of a scenario: node name, sender, type, state_key (NULL: not state), content. */
typedef struct fx_ev {
    const char *node;
    const char *sender;
    const char *type;
    const char *sk;
    const char *content;
} fx_ev_t;

/* Events every graph starts with, and the chain START -> ... -> CREATE. */
static const fx_ev_t initial[] = {
    { "CREATE", ALICE, "m.room.create", "", "{\"creator\":\"" ALICE "\"}" },
    { "IMA", ALICE, "m.room.member", ALICE, JOIN },
    { "IPOWER", ALICE, "m.room.power_levels", "", "{\"users\":{\"" ALICE "\":100}}" },
    { "IJR", ALICE, "m.room.join_rules", "", "{\"join_rule\":\"public\"}" },
    { "IMB", BOB, "m.room.member", BOB, JOIN },
    { "IMC", CHARLIE, "m.room.member", CHARLIE, JOIN },
    { "IMZ", ZARA, "m.room.member", ZARA, JOIN },
    { "START", ZARA, "m.room.message", NULL, "{}" },
    { "END", ZARA, "m.room.message", NULL, "{}" },
    { NULL, NULL, NULL, NULL, NULL }
};
static const char *const initial_chain[] = {
    "START", "IMZ", "IMC", "IMB", "IJR", "IPOWER", "IMA", "CREATE", NULL
};

/* ------------------------------------------------------------------------
 * The graph and the provider.
 */
typedef struct fx_node {
    const fx_ev_t *ev;
    const char *event_id;
    apr_array_header_t *prevs;      /* fx_node_t * */
    int done;
    apr_int64_t seq;
    json_t *pdu;
    apr_hash_t *state_after;
} fx_node_t;

typedef struct fx {
    apr_pool_t *p;
    const mxf_roomver_t *rv;
    apr_hash_t *nodes;              /* node name -> fx_node_t */
    apr_hash_t *by_id;              /* event ID -> fx_node_t */
    int use_seq;
    long fetched;
} fx_t;

static const json_t *fx_get_event(void *baton, const char *event_id, int *rejected)
{
    fx_t *f = baton;
    fx_node_t *n = apr_hash_get(f->by_id, event_id, APR_HASH_KEY_STRING);

    *rejected = 0;
    f->fetched++;
    return n ? n->pdu : NULL;
}

static apr_int64_t fx_seq(void *baton, const char *event_id)
{
    fx_t *f = baton;
    fx_node_t *n = apr_hash_get(f->by_id, event_id, APR_HASH_KEY_STRING);

    return n ? n->seq : -1;
}

/* The state events built so far citing @a event_id, in building order. */
static const char *const *fx_children(void *baton, const char *event_id, int *n)
{
    fx_t *f = baton;
    apr_array_header_t *kids = apr_array_make(f->p, 4, sizeof(fx_node_t *));
    const char **out;
    apr_hash_index_t *hi;
    int i, j;

    for (hi = apr_hash_first(f->p, f->by_id); hi; hi = apr_hash_next(hi)) {
        fx_node_t *c = apr_hash_this_val(hi);
        json_t *auth = c->pdu ? json_object_get(c->pdu, "auth_events") : NULL;
        if (!c->ev->sk || !auth) {
            continue;
        }
        for (j = 0; j < (int)json_array_size(auth); j++) {
            json_t *a = json_array_get(auth, (size_t)j);
            const char *id = json_is_string(a) ? json_string_value(a)
                             : json_string_value(json_array_get(a, 0));
            if (id && strcmp(id, event_id) == 0) {
                APR_ARRAY_PUSH(kids, fx_node_t *) = c;
                break;
            }
        }
    }
    /* building order = sequence order */
    for (i = 1; i < kids->nelts; i++) {
        for (j = i; j > 0 && APR_ARRAY_IDX(kids, j - 1, fx_node_t *)->seq
                             > APR_ARRAY_IDX(kids, j, fx_node_t *)->seq; j--) {
            fx_node_t *t = APR_ARRAY_IDX(kids, j, fx_node_t *);
            APR_ARRAY_IDX(kids, j, fx_node_t *) = APR_ARRAY_IDX(kids, j - 1, fx_node_t *);
            APR_ARRAY_IDX(kids, j - 1, fx_node_t *) = t;
        }
    }
    out = apr_palloc(f->p, sizeof(char *) * (apr_size_t)(kids->nelts + 1));
    for (i = 0; i < kids->nelts; i++) {
        out[i] = APR_ARRAY_IDX(kids, i, fx_node_t *)->event_id;
    }
    *n = kids->nelts;
    return out;
}

static mxf_sr_provider_t fx_provider(fx_t *f)
{
    mxf_sr_provider_t prov;

    memset(&prov, 0, sizeof(prov));
    prov.get_event = fx_get_event;
    prov.seq = f->use_seq ? fx_seq : NULL;
    prov.children = f->use_seq > 1 ? fx_children : NULL;
    prov.baton = f;
    return prov;
}

static fx_node_t *fx_node(fx_t *f, const char *name)
{
    fx_node_t *n = apr_hash_get(f->nodes, name, APR_HASH_KEY_STRING);

    ck_assert_msg(n != NULL, "no node %s", name);
    return n;
}

static void fx_add(fx_t *f, const fx_ev_t *ev)
{
    fx_node_t *n = apr_pcalloc(f->p, sizeof(*n));

    n->ev = ev;
    n->event_id = apr_psprintf(f->p, "$%s:example.com", ev->node);
    n->prevs = apr_array_make(f->p, 2, sizeof(fx_node_t *));
    apr_hash_set(f->nodes, ev->node, APR_HASH_KEY_STRING, n);
    apr_hash_set(f->by_id, n->event_id, APR_HASH_KEY_STRING, n);
}

static void fx_edge(fx_t *f, const char *from, const char *to)
{
    fx_node_t *a = fx_node(f, from), *b = fx_node(f, to);
    int i;

    for (i = 0; i < a->prevs->nelts; i++) {
        if (APR_ARRAY_IDX(a->prevs, i, fx_node_t *) == b) {
            return;
        }
    }
    APR_ARRAY_PUSH(a->prevs, fx_node_t *) = b;
}

static void fx_chain(fx_t *f, const char *const *chain)
{
    int i;

    for (i = 0; chain[i] && chain[i + 1]; i++) {
        fx_edge(f, chain[i], chain[i + 1]);
    }
}

/* The next node in lexicographic topological order (all prevs done, smallest name). */
static fx_node_t *fx_next(fx_t *f)
{
    apr_hash_index_t *hi;
    fx_node_t *best = NULL;

    for (hi = apr_hash_first(f->p, f->nodes); hi; hi = apr_hash_next(hi)) {
        void *v;
        fx_node_t *n;
        int i, ready = 1;
        apr_hash_this(hi, NULL, NULL, &v);
        n = v;
        if (n->done) {
            continue;
        }
        for (i = 0; i < n->prevs->nelts; i++) {
            ready = ready && APR_ARRAY_IDX(n->prevs, i, fx_node_t *)->done;
        }
        if (ready && (best == NULL || strcmp(n->ev->node, best->ev->node) < 0)) {
            best = n;
        }
    }
    return best;
}

static apr_hash_t *fx_resolve(fx_t *f, apr_hash_t **states, int n, mxf_sr_stats_t *st)
{
    mxf_sr_provider_t prov = fx_provider(f);
    apr_hash_t *out = NULL;
    const char *why = NULL;

    ck_assert_int_eq(mxf_stateres_resolve(f->p, f->rv, ROOM, states, n, &prov, &out, st, &why),
                     APR_SUCCESS);
    return out;
}

/* Builds the PDU of @a n from the state before it and records the state after it. */
static void fx_build(fx_t *f, fx_node_t *n, apr_int64_t ts)
{
    apr_hash_t *before;
    apr_array_header_t *sel;
    json_t *pdu, *prev = json_array(), *auth = json_array(), *content;
    json_error_t err;
    apr_int64_t depth = 0;
    int i;

    if (n->prevs->nelts == 0) {
        before = apr_hash_make(f->p);
    }
    else if (n->prevs->nelts == 1) {
        before = apr_hash_copy(f->p, APR_ARRAY_IDX(n->prevs, 0, fx_node_t *)->state_after);
    }
    else {
        apr_hash_t **states = apr_palloc(f->p, sizeof(apr_hash_t *) * (apr_size_t)n->prevs->nelts);
        for (i = 0; i < n->prevs->nelts; i++) {
            states[i] = APR_ARRAY_IDX(n->prevs, i, fx_node_t *)->state_after;
        }
        before = fx_resolve(f, states, n->prevs->nelts, NULL);
    }
    for (i = 0; i < n->prevs->nelts; i++) {
        fx_node_t *pn = APR_ARRAY_IDX(n->prevs, i, fx_node_t *);
        json_array_append_new(prev, json_string(pn->event_id));
        if (json_integer_value(json_object_get(pn->pdu, "depth")) > depth) {
            depth = json_integer_value(json_object_get(pn->pdu, "depth"));
        }
    }
    content = json_loads(n->ev->content, 0, &err);
    ck_assert_msg(content != NULL, "bad fixture content %s", n->ev->content);
    pdu = json_pack("{s:s, s:s, s:s, s:s, s:o, s:I, s:I, s:o}",
                    "event_id", n->event_id, "room_id", ROOM, "sender", n->ev->sender,
                    "type", n->ev->type, "content", content, "origin_server_ts", (json_int_t)ts,
                    "depth", (json_int_t)(depth + 1), "prev_events", prev);
    if (n->ev->sk) {
        json_object_set_new(pdu, "state_key", json_string(n->ev->sk));
    }
    sel = mxf_auth_selection(f->p, f->rv, pdu);
    for (i = 0; i < sel->nelts; i++) {
        const mxf_auth_key_t *k = &APR_ARRAY_IDX(sel, i, mxf_auth_key_t);
        const char *id = mxf_sr_get(before, k->type, k->state_key);
        if (id) {
            json_array_append_new(auth, json_string(id));
        }
    }
    json_object_set_new(pdu, "auth_events", auth);
    n->pdu = mxf_json_own(f->p, pdu);
    n->seq = ts;
    n->state_after = before;
    if (n->ev->sk) {
        mxf_sr_set(f->p, n->state_after, n->ev->type, n->ev->sk, n->event_id);
    }
    n->done = 1;
}

static fx_t *fx_graph(const char *version, int use_seq, const fx_ev_t *events,
                      const char *const *const *chains)
{
    fx_t *f = apr_pcalloc(mxf_test_pool, sizeof(*f));
    fx_node_t *n;
    apr_int64_t ts = 0;
    int i;

    f->p = mxf_test_pool;
    f->rv = mxf_roomver_get(version);
    f->nodes = apr_hash_make(f->p);
    f->by_id = apr_hash_make(f->p);
    f->use_seq = use_seq;
    for (i = 0; initial[i].node; i++) {
        fx_add(f, &initial[i]);
    }
    for (i = 0; events[i].node; i++) {
        fx_add(f, &events[i]);
    }
    fx_chain(f, initial_chain);
    for (i = 0; chains[i]; i++) {
        fx_chain(f, chains[i]);
    }
    while ((n = fx_next(f)) != NULL) {
        fx_build(f, n, ts++);
    }
    return f;
}

/*
 * The state at END, less the keys unchanged since START unless expected,
 * must be exactly @a expected (node names).
 */
static void fx_check(const char *version, int use_seq, const fx_ev_t *events,
                     const char *const *const *chains, const char *const *expected)
{
    fx_t *f = fx_graph(version, use_seq, events, chains);
    apr_hash_t *end = fx_node(f, "END")->state_after, *start = fx_node(f, "START")->state_after;
    apr_hash_t *want = apr_hash_make(f->p);
    apr_hash_index_t *hi;
    unsigned got_n = 0;
    int i;

    for (i = 0; expected[i]; i++) {
        fx_node_t *n = fx_node(f, expected[i]);
        mxf_sr_set(f->p, want, n->ev->type, n->ev->sk, n->event_id);
    }
    for (hi = apr_hash_first(f->p, end); hi; hi = apr_hash_next(hi)) {
        const void *k;
        apr_ssize_t klen;
        void *v;
        const char *type, *sk, *w;
        apr_hash_this(hi, &k, &klen, &v);
        mxf_sr_key_split(k, klen, &type, &sk);
        w = apr_hash_get(want, k, klen);
        if (w == NULL) {
            const char *s0 = apr_hash_get(start, k, klen);
            ck_assert_msg(s0 && strcmp(s0, v) == 0, "v%s: (%s, %s) = %s, not in the expected state",
                          version, type, sk, (const char *)v);
            continue;
        }
        ck_assert_msg(strcmp(w, v) == 0, "v%s: (%s, %s) = %s, expected %s", version, type, sk,
                      (const char *)v, w);
        got_n++;
    }
    ck_assert_uint_eq(got_n, apr_hash_count(want));
}

/*
 * Each scenario holds for room versions 2 to 11, without sequence numbers,
 * with them, and with them and the children (the two auth difference walks).
 */
static void fx_check_v2(const fx_ev_t *events, const char *const *const *chains,
                        const char *const *expected)
{
    static const char *const versions[] = { "2", "3", "6", "7", "8", "10", "11", NULL };
    int i, seq;

    for (i = 0; versions[i]; i++) {
        for (seq = 0; seq < 3; seq++) {
            fx_check(versions[i], seq, events, chains, expected);
        }
    }
}

#define CHAIN(...) ((const char *const []){ __VA_ARGS__, NULL })
#define CHAINS(...) ((const char *const *const []){ __VA_ARGS__, NULL })
#define NAMES(...) ((const char *const []){ __VA_ARGS__, NULL })
#define PL(users) "{\"users\":{" users "}}"
#define U(who, n) "\"" who "\":" #n

/* ------------------------------------------------------------------------
 * v2 scenarios.
 */
START_TEST(ban_vs_power_levels)
{
    static const fx_ev_t ev[] = {
        { "PA", ALICE, "m.room.power_levels", "", PL(U(ALICE, 100) "," U(BOB, 50)) },
        { "MA", ALICE, "m.room.member", ALICE, JOIN },
        { "MB", ALICE, "m.room.member", BOB, BAN },
        { "PB", BOB, "m.room.power_levels", "", PL(U(ALICE, 100) "," U(BOB, 50)) },
        { NULL, NULL, NULL, NULL, NULL }
    };

    fx_check_v2(ev, CHAINS(CHAIN("END", "MB", "MA", "PA", "START"), CHAIN("END", "PB", "PA")),
                NAMES("PA", "MA", "MB"));
}
END_TEST

START_TEST(join_rule_evasion)
{
    /* "join_rules" (sic) instead of "join_rule": no join rule, so not public */
    static const fx_ev_t ev[] = {
        { "JR", ALICE, "m.room.join_rules", "", "{\"join_rules\":\"private\"}" },
        { "ME", EVELYN, "m.room.member", EVELYN, JOIN },
        { NULL, NULL, NULL, NULL, NULL }
    };

    fx_check_v2(ev, CHAINS(CHAIN("END", "JR", "START"), CHAIN("END", "ME", "START")),
                NAMES("JR"));
}
END_TEST

START_TEST(offtopic_power_levels)
{
    static const fx_ev_t ev[] = {
        { "PA", ALICE, "m.room.power_levels", "", PL(U(ALICE, 100) "," U(BOB, 50)) },
        { "PB", BOB, "m.room.power_levels", "",
          PL(U(ALICE, 100) "," U(BOB, 50) "," U(CHARLIE, 50)) },
        { "PC", CHARLIE, "m.room.power_levels", "",
          PL(U(ALICE, 100) "," U(BOB, 50) "," U(CHARLIE, 0)) },
        { NULL, NULL, NULL, NULL, NULL }
    };

    fx_check_v2(ev, CHAINS(CHAIN("END", "PC", "PB", "PA", "START"), CHAIN("END", "PA")),
                NAMES("PC"));
}
END_TEST

START_TEST(topic_basic)
{
    static const fx_ev_t ev[] = {
        { "T1", ALICE, "m.room.topic", "", "{}" },
        { "PA1", ALICE, "m.room.power_levels", "", PL(U(ALICE, 100) "," U(BOB, 50)) },
        { "T2", ALICE, "m.room.topic", "", "{}" },
        { "PA2", ALICE, "m.room.power_levels", "", PL(U(ALICE, 100) "," U(BOB, 0)) },
        { "PB", BOB, "m.room.power_levels", "", PL(U(ALICE, 100) "," U(BOB, 50)) },
        { "T3", BOB, "m.room.topic", "", "{}" },
        { NULL, NULL, NULL, NULL, NULL }
    };

    fx_check_v2(ev, CHAINS(CHAIN("END", "PA2", "T2", "PA1", "T1", "START"),
                           CHAIN("END", "T3", "PB", "PA1")),
                NAMES("PA2", "T2"));
}
END_TEST

START_TEST(topic_reset)
{
    static const fx_ev_t ev[] = {
        { "T1", ALICE, "m.room.topic", "", "{}" },
        { "PA", ALICE, "m.room.power_levels", "", PL(U(ALICE, 100) "," U(BOB, 50)) },
        { "T2", BOB, "m.room.topic", "", "{}" },
        { "MB", ALICE, "m.room.member", BOB, BAN },
        { NULL, NULL, NULL, NULL, NULL }
    };

    fx_check_v2(ev, CHAINS(CHAIN("END", "MB", "T2", "PA", "T1", "START"), CHAIN("END", "T1")),
                NAMES("T1", "MB", "PA"));
}
END_TEST

START_TEST(topic)
{
    static const fx_ev_t ev[] = {
        { "T1", ALICE, "m.room.topic", "", "{}" },
        { "PA1", ALICE, "m.room.power_levels", "", PL(U(ALICE, 100) "," U(BOB, 50)) },
        { "T2", ALICE, "m.room.topic", "", "{}" },
        { "PA2", ALICE, "m.room.power_levels", "", PL(U(ALICE, 100) "," U(BOB, 0)) },
        { "PB", BOB, "m.room.power_levels", "", PL(U(ALICE, 100) "," U(BOB, 50)) },
        { "T3", BOB, "m.room.topic", "", "{}" },
        { "MZ1", ZARA, "m.room.message", NULL, "{}" },
        { "T4", ALICE, "m.room.topic", "", "{}" },
        { NULL, NULL, NULL, NULL, NULL }
    };

    fx_check_v2(ev, CHAINS(CHAIN("END", "T4", "MZ1", "PA2", "T2", "PA1", "T1", "START"),
                           CHAIN("END", "MZ1", "T3", "PB", "PA1")),
                NAMES("T4", "PA2"));
}
END_TEST

START_TEST(mainline_sort)
{
    /* T3 wins although T4 came later: T4 cites an older power levels event */
    static const fx_ev_t ev[] = {
        { "T1", ALICE, "m.room.topic", "", "{}" },
        { "PA1", ALICE, "m.room.power_levels", "", PL(U(ALICE, 100) "," U(BOB, 50)) },
        { "T2", ALICE, "m.room.topic", "", "{}" },
        { "PA2", ALICE, "m.room.power_levels", "",
          "{\"users\":{" U(ALICE, 100) "," U(BOB, 50) "},\"events\":{\"m.room.power_levels\":100}}" },
        { "PB", BOB, "m.room.power_levels", "", PL(U(ALICE, 100) "," U(BOB, 50)) },
        { "T3", BOB, "m.room.topic", "", "{}" },
        { "T4", ALICE, "m.room.topic", "", "{}" },
        { NULL, NULL, NULL, NULL, NULL }
    };

    fx_check_v2(ev, CHAINS(CHAIN("END", "T3", "PA2", "T2", "PA1", "T1", "START"),
                           CHAIN("END", "T4", "PB", "PA1")),
                NAMES("T3", "PA2"));
}
END_TEST

START_TEST(concurrent_joins_merge)
{
    /* Bob and Charlie's joins on two branches: both kept (no conflict) */
    static const fx_ev_t ev[] = {
        { "ME", EVELYN, "m.room.member", EVELYN, JOIN },
        { "T1", ZARA, "m.room.message", NULL, "{}" },
        { NULL, NULL, NULL, NULL, NULL }
    };

    fx_check_v2(ev, CHAINS(CHAIN("END", "ME", "START"), CHAIN("END", "T1", "START")),
                NAMES("ME"));
}
END_TEST

/* ------------------------------------------------------------------------
 * Hand-made states: the auth chain difference and v2.1.
 */
typedef struct hs_ev {
    const char *id;
    const char *sender;
    const char *type;
    const char *sk;
    const char *content;
    const char *const *auth;    /* event IDs */
    int rejected;
    int depth;                  /* 0: the creation index */
} hs_ev_t;

typedef struct hs {
    apr_hash_t *by_id;          /* id -> json_t */
    apr_hash_t *seq;            /* id -> apr_int64_t * */
    apr_hash_t *rejected;
    apr_hash_t *kids;           /* id -> apr_array_header_t of const char *, in order */
    int use_seq;                /* 0: none, 1: seq, 2: seq and children */
} hs_t;

static const json_t *hs_get_event(void *baton, const char *event_id, int *rejected)
{
    hs_t *h = baton;

    *rejected = apr_hash_get(h->rejected, event_id, APR_HASH_KEY_STRING) != NULL;
    return apr_hash_get(h->by_id, event_id, APR_HASH_KEY_STRING);
}

static const char *const *hs_children(void *baton, const char *event_id, int *n)
{
    hs_t *h = baton;
    apr_array_header_t *k = apr_hash_get(h->kids, event_id, APR_HASH_KEY_STRING);

    *n = k ? k->nelts : 0;
    return k ? (const char *const *)k->elts : (const char *const *)"";
}

static apr_int64_t hs_seq(void *baton, const char *event_id)
{
    hs_t *h = baton;
    apr_int64_t *s = apr_hash_get(h->seq, event_id, APR_HASH_KEY_STRING);

    return s ? *s : -1;
}

/* Events in creation order (ts and seq 1, 2, ...); room_id @a room except for a v12 create. */
static hs_t *hs_make(const hs_ev_t *ev, const char *room, int v12, int use_seq)
{
    hs_t *h = apr_pcalloc(mxf_test_pool, sizeof(*h));
    int i, j;

    h->by_id = apr_hash_make(mxf_test_pool);
    h->seq = apr_hash_make(mxf_test_pool);
    h->rejected = apr_hash_make(mxf_test_pool);
    h->kids = apr_hash_make(mxf_test_pool);
    h->use_seq = use_seq;
    for (i = 0; ev[i].id; i++) {
        json_error_t err;
        json_t *auth = json_array();
        json_t *content = json_loads(ev[i].content, 0, &err);
        json_t *pdu;
        apr_int64_t *s = apr_palloc(mxf_test_pool, sizeof(*s));

        ck_assert_ptr_nonnull(content);
        for (j = 0; ev[i].auth && ev[i].auth[j]; j++) {
            apr_array_header_t *k = apr_hash_get(h->kids, ev[i].auth[j], APR_HASH_KEY_STRING);
            json_array_append_new(auth, json_string(ev[i].auth[j]));
            if (k == NULL) {
                k = apr_array_make(mxf_test_pool, 2, sizeof(const char *));
                apr_hash_set(h->kids, ev[i].auth[j], APR_HASH_KEY_STRING, k);
            }
            APR_ARRAY_PUSH(k, const char *) = ev[i].id;
        }
        pdu = json_pack("{s:s, s:s, s:s, s:o, s:I, s:I, s:o, s:[]}",
                        "sender", ev[i].sender, "type", ev[i].type, "state_key", ev[i].sk,
                        "content", content, "origin_server_ts", (json_int_t)(i + 1),
                        "depth", (json_int_t)(ev[i].depth ? ev[i].depth : i + 1),
                        "auth_events", auth, "prev_events");
        json_object_set_new(pdu, "event_id", json_string(ev[i].id));
        if (!(v12 && strcmp(ev[i].type, "m.room.create") == 0)) {
            json_object_set_new(pdu, "room_id", json_string(room));
        }
        *s = i + 1;
        apr_hash_set(h->by_id, ev[i].id, APR_HASH_KEY_STRING, mxf_json_own(mxf_test_pool, pdu));
        apr_hash_set(h->seq, ev[i].id, APR_HASH_KEY_STRING, s);
        if (ev[i].rejected) {
            apr_hash_set(h->rejected, ev[i].id, APR_HASH_KEY_STRING, "");
        }
    }
    return h;
}

/* A state from "type|state_key=id" strings. */
static apr_hash_t *hs_state(const char *const *entries)
{
    apr_hash_t *st = apr_hash_make(mxf_test_pool);
    int i;

    for (i = 0; entries[i]; i++) {
        char *e = apr_pstrdup(mxf_test_pool, entries[i]);
        char *bar = strchr(e, '|'), *eq = strrchr(e, '=');
        ck_assert(bar && eq);
        *bar = '\0';
        *eq = '\0';
        mxf_sr_set(mxf_test_pool, st, e, bar + 1, eq + 1);
    }
    return st;
}

static apr_hash_t *hs_resolve(hs_t *h, const char *version, const char *room,
                              apr_hash_t **states, int n, mxf_sr_stats_t *st)
{
    mxf_sr_provider_t prov;
    apr_hash_t *out = NULL;
    const char *why = NULL;

    memset(&prov, 0, sizeof(prov));
    prov.get_event = hs_get_event;
    prov.seq = h->use_seq ? hs_seq : NULL;
    prov.children = h->use_seq > 1 ? hs_children : NULL;
    prov.baton = h;
    ck_assert_int_eq(mxf_stateres_resolve(mxf_test_pool, mxf_roomver_get(version), room, states,
                                          n, &prov, &out, st, &why), APR_SUCCESS);
    return out;
}

static void hs_expect(apr_hash_t *got, apr_hash_t *want)
{
    apr_hash_index_t *hi;

    ck_assert_uint_eq(apr_hash_count(got), apr_hash_count(want));
    for (hi = apr_hash_first(mxf_test_pool, want); hi; hi = apr_hash_next(hi)) {
        const void *k;
        apr_ssize_t klen;
        void *v;
        const char *type, *sk, *g;
        apr_hash_this(hi, &k, &klen, &v);
        mxf_sr_key_split(k, klen, &type, &sk);
        g = apr_hash_get(got, k, klen);
        ck_assert_msg(g && strcmp(g, v) == 0, "(%s, %s) = %s, expected %s", type, sk,
                      g ? g : "(none)", (const char *)v);
    }
}

#define IDS(...) ((const char *const []){ __VA_ARGS__, NULL })

/* C -> B -> A: states {A, B} and {C}: the difference is {C}. */
START_TEST(auth_difference_chain)
{
    const hs_ev_t ev[] = {
        { "$A", ALICE, "a", "", "{}", NULL, 0, 0 },
        { "$B", ALICE, "b", "", "{}", IDS("$A"), 0, 0 },
        { "$C", ALICE, "c", "", "{}", IDS("$B"), 0, 0 },
        { "$D", ALICE, "d", "", "{}", IDS("$C"), 0, 0 },
        { "$E", ALICE, "e", "", "{}", IDS("$C", "$B"), 0, 0 },
        { NULL, NULL, NULL, NULL, NULL, NULL, 0, 0 }
    };
    int seq;

    for (seq = 0; seq < 3; seq++) {
        hs_t *h = hs_make(ev, ROOM, 0, seq);
        mxf_sr_stats_t st;
        apr_hash_t *s1[2];

        s1[0] = hs_state(IDS("a|=$A", "b|=$B"));
        s1[1] = hs_state(IDS("c|=$C"));
        hs_resolve(h, "10", ROOM, s1, 2, &st);
        ck_assert_uint_eq(st.auth_difference, 1);     /* {C} */
        ck_assert_uint_eq(st.conflicted_events, 3);

        s1[1] = hs_state(IDS("c|=$C", "d|=$D"));
        hs_resolve(h, "10", ROOM, s1, 2, &st);
        ck_assert_uint_eq(st.auth_difference, 2);     /* {C, D} */

        s1[0] = hs_state(IDS("a|=$A", "b|=$B", "e|=$E"));
        hs_resolve(h, "10", ROOM, s1, 2, &st);
        ck_assert_uint_eq(st.auth_difference, 2);     /* {D, E} */
        ck_assert_uint_eq(st.full_conflicted, 5);
    }
}
END_TEST

#define R12 "!CREATE"
#define C12 "$CREATE"

/* v2.1: an event citing old power levels must not reset them (conflicted state subgraph). */
START_TEST(v21_replay_conflicted_subgraph)
{
    const hs_ev_t ev[] = {
        { C12, ALICE, "m.room.create", "", "{}", NULL, 0, 0 },
        { "$MA", ALICE, "m.room.member", ALICE, JOIN, NULL, 0, 0 },
        { "$P1", ALICE, "m.room.power_levels", "", "{\"users\":{}}", IDS("$MA"), 0, 0 },
        { "$JR", ALICE, "m.room.join_rules", "", "{\"join_rule\":\"public\"}",
          IDS("$MA", "$P1"), 0, 0 },
        { "$MB", BOB, "m.room.member", BOB, JOIN, IDS("$P1", "$JR"), 0, 0 },
        { "$MC", CHARLIE, "m.room.member", CHARLIE, JOIN, IDS("$P1", "$JR"), 0, 0 },
        { "$P2", ALICE, "m.room.power_levels", "", PL(U(BOB, 50)), IDS("$MA", "$P1"), 0, 0 },
        { "$P3", BOB, "m.room.power_levels", "", PL(U(BOB, 50) "," U(CHARLIE, 50)),
          IDS("$MB", "$P2"), 0, 0 },
        { "$ME1", EVELYN, "m.room.member", EVELYN, JOIN, IDS("$P3", "$JR"), 0, 0 },
        { "$ME2", EVELYN, "m.room.member", EVELYN, JOIN, IDS("$P1", "$JR", "$ME1"), 0, 0 },
        { "$MZ", ZARA, "m.room.member", ZARA, JOIN, IDS("$P3", "$JR"), 0, 0 },
        { NULL, NULL, NULL, NULL, NULL, NULL, 0, 0 }
    };
    int seq;

    for (seq = 0; seq < 3; seq++) {
        hs_t *h = hs_make(ev, R12, 1, seq);
        mxf_sr_stats_t st;
        apr_hash_t *s[2], *got;
        const char *common[] = {
            "m.room.create|=" C12, "m.room.member|" ALICE "=$MA", "m.room.member|" BOB "=$MB",
            "m.room.member|" CHARLIE "=$MC", "m.room.join_rules|=$JR", NULL
        };
        apr_hash_t *base = hs_state(common);

        s[0] = apr_hash_copy(mxf_test_pool, base);
        mxf_sr_set(mxf_test_pool, s[0], "m.room.member", EVELYN, "$ME2");
        mxf_sr_set(mxf_test_pool, s[0], "m.room.power_levels", "", "$P1");
        s[1] = apr_hash_copy(mxf_test_pool, base);
        mxf_sr_set(mxf_test_pool, s[1], "m.room.member", ZARA, "$MZ");
        mxf_sr_set(mxf_test_pool, s[1], "m.room.power_levels", "", "$P3");

        got = hs_resolve(h, "12", R12, s, 2, &st);
        {
            apr_hash_t *want = apr_hash_copy(mxf_test_pool, base);
            mxf_sr_set(mxf_test_pool, want, "m.room.member", EVELYN, "$ME1");
            mxf_sr_set(mxf_test_pool, want, "m.room.member", ZARA, "$MZ");
            mxf_sr_set(mxf_test_pool, want, "m.room.power_levels", "", "$P3");
            hs_expect(got, want);
        }
        /* the subgraph ($JR $MB $P2 $ME1) is in, the create event is not */
        ck_assert_uint_eq(st.subgraph, 4);
        ck_assert_uint_eq(st.full_conflicted, 8);
        /* order independence */
        {
            apr_hash_t *r[2];
            r[0] = s[1];
            r[1] = s[0];
            hs_expect(hs_resolve(h, "12", R12, r, 2, NULL), got);
        }
    }
}
END_TEST

/* v2.1 starts from the empty state: conflicting join rules by a creator who left since. */
START_TEST(v21_start_empty)
{
    const hs_ev_t ev[] = {
        { C12, ALICE, "m.room.create", "", "{}", NULL, 0, 0 },
        { "$MA1", ALICE, "m.room.member", ALICE, JOIN, NULL, 0, 0 },
        { "$P", ALICE, "m.room.power_levels", "", PL(U(BOB, 100)), IDS("$MA1"), 0, 0 },
        { "$JR1", ALICE, "m.room.join_rules", "", "{\"join_rule\":\"public\"}",
          IDS("$MA1", "$P"), 0, 0 },
        { "$MB", BOB, "m.room.member", BOB, JOIN, IDS("$P", "$JR1"), 0, 0 },
        { "$JR2", ALICE, "m.room.join_rules", "", "{\"join_rule\":\"invite\"}",
          IDS("$MA1", "$P"), 0, 0 },
        { "$MA2", ALICE, "m.room.member", ALICE, "{\"membership\":\"leave\"}",
          IDS("$P", "$MA1"), 0, 0 },
        { NULL, NULL, NULL, NULL, NULL, NULL, 0, 0 }
    };
    int seq;

    for (seq = 0; seq < 3; seq++) {
        hs_t *h = hs_make(ev, R12, 1, seq);
        const char *common[] = {
            "m.room.create|=" C12, "m.room.member|" ALICE "=$MA2", "m.room.member|" BOB "=$MB",
            "m.room.power_levels|=$P", NULL
        };
        apr_hash_t *s[2], *want, *got;

        s[0] = hs_state(common);
        mxf_sr_set(mxf_test_pool, s[0], "m.room.join_rules", "", "$JR2");
        s[1] = hs_state(common);
        mxf_sr_set(mxf_test_pool, s[1], "m.room.join_rules", "", "$JR1");
        want = apr_hash_copy(mxf_test_pool, s[0]);
        got = hs_resolve(h, "12", R12, s, 2, NULL);
        hs_expect(got, want);
    }
}
END_TEST


/* ------------------------------------------------------------------------
 * Room version 1.
 */
#define RV1 "!r:a.example"
#define A1 "@alice:a.example"
#define B1 "@bob:a.example"

static const char *const v1_base[] = {
    "m.room.create|=$C:a.example", "m.room.member|" A1 "=$MA:a.example",
    "m.room.join_rules|=$JR:a.example", "m.room.member|" B1 "=$MB:a.example", NULL
};

static hs_t *v1_room(int seq)
{
    const hs_ev_t ev[] = {
        { "$C:a.example", A1, "m.room.create", "", "{\"creator\":\"" A1 "\"}", NULL, 0, 1 },
        { "$MA:a.example", A1, "m.room.member", A1, JOIN, IDS("$C:a.example"), 0, 2 },
        { "$P0:a.example", A1, "m.room.power_levels", "", PL(U(A1, 100) "," U(B1, 50)),
          IDS("$C:a.example", "$MA:a.example"), 0, 3 },
        { "$JR:a.example", A1, "m.room.join_rules", "", "{\"join_rule\":\"public\"}",
          IDS("$C:a.example", "$MA:a.example", "$P0:a.example"), 0, 4 },
        { "$MB:a.example", B1, "m.room.member", B1, JOIN,
          IDS("$C:a.example", "$JR:a.example", "$P0:a.example"), 0, 5 },
        /* Alice demotes Bob; Bob raises Charlie */
        { "$P1:a.example", A1, "m.room.power_levels", "", PL(U(A1, 100) "," U(B1, 0)),
          IDS("$C:a.example", "$MA:a.example", "$P0:a.example"), 0, 6 },
        { "$P2:a.example", B1, "m.room.power_levels", "",
          PL(U(A1, 100) "," U(B1, 50) "," U("@charlie:a.example", 50)),
          IDS("$C:a.example", "$MB:a.example", "$P0:a.example"), 0, 6 },
        { "$T1:a.example", A1, "m.room.topic", "", "{\"topic\":\"a\"}",
          IDS("$C:a.example", "$MA:a.example", "$P1:a.example"), 0, 7 },
        { "$T2:a.example", B1, "m.room.topic", "", "{\"topic\":\"b\"}",
          IDS("$C:a.example", "$MB:a.example", "$P2:a.example"), 0, 8 },
        { "$TA:a.example", A1, "m.room.topic", "", "{\"topic\":\"A\"}",
          IDS("$C:a.example", "$MA:a.example", "$P0:a.example"), 0, 9 },
        { "$TB:a.example", A1, "m.room.topic", "", "{\"topic\":\"B\"}",
          IDS("$C:a.example", "$MA:a.example", "$P0:a.example"), 0, 9 },
        { NULL, NULL, NULL, NULL, NULL, NULL, 0, 0 }
    };

    return hs_make(ev, RV1, 0, seq);
}

/* Power levels first: Bob's topic fails under the power levels that win, Alice's older one stays. */
START_TEST(v1_power_levels_then_topic)
{
    hs_t *h = v1_room(0);
    apr_hash_t *s[2], *want;

    s[0] = hs_state(v1_base);
    mxf_sr_set(mxf_test_pool, s[0], "m.room.power_levels", "", "$P1:a.example");
    mxf_sr_set(mxf_test_pool, s[0], "m.room.topic", "", "$T1:a.example");
    s[1] = hs_state(v1_base);
    mxf_sr_set(mxf_test_pool, s[1], "m.room.power_levels", "", "$P2:a.example");
    mxf_sr_set(mxf_test_pool, s[1], "m.room.topic", "", "$T2:a.example");
    want = apr_hash_copy(mxf_test_pool, s[0]);
    hs_expect(hs_resolve(h, "1", RV1, s, 2, NULL), want);

    /* the same power levels on both sides: the deeper topic wins */
    mxf_sr_set(mxf_test_pool, s[0], "m.room.power_levels", "", "$P0:a.example");
    mxf_sr_set(mxf_test_pool, s[1], "m.room.power_levels", "", "$P0:a.example");
    want = apr_hash_copy(mxf_test_pool, s[1]);
    hs_expect(hs_resolve(h, "1", RV1, s, 2, NULL), want);
}
END_TEST

/* Equal depth: the lower sha1(event_id) wins; a key missing on one side is no conflict. */
START_TEST(v1_sha1_tiebreak_and_missing_keys)
{
    hs_t *h = v1_room(0);
    apr_hash_t *s[2], *want, *r[2];

    s[0] = hs_state(v1_base);
    mxf_sr_set(mxf_test_pool, s[0], "m.room.power_levels", "", "$P0:a.example");
    mxf_sr_set(mxf_test_pool, s[0], "m.room.topic", "", "$TB:a.example");
    s[1] = hs_state(v1_base);
    mxf_sr_set(mxf_test_pool, s[1], "m.room.power_levels", "", "$P0:a.example");
    mxf_sr_set(mxf_test_pool, s[1], "m.room.topic", "", "$TA:a.example");
    want = apr_hash_copy(mxf_test_pool, s[1]);      /* sha1 4293e1... < 9db15c... */
    hs_expect(hs_resolve(h, "1", RV1, s, 2, NULL), want);
    r[0] = s[1];
    r[1] = s[0];
    hs_expect(hs_resolve(h, "1", RV1, r, 2, NULL), want);

    /* Bob's topic only on one side: kept in v1 although it fails auth under $P1 */
    s[0] = hs_state(v1_base);
    mxf_sr_set(mxf_test_pool, s[0], "m.room.power_levels", "", "$P1:a.example");
    s[1] = hs_state(v1_base);
    mxf_sr_set(mxf_test_pool, s[1], "m.room.power_levels", "", "$P1:a.example");
    mxf_sr_set(mxf_test_pool, s[1], "m.room.topic", "", "$T2:a.example");
    want = apr_hash_copy(mxf_test_pool, s[1]);
    hs_expect(hs_resolve(h, "1", RV1, s, 2, NULL), want);
    /* ...while v2 re-checks it and drops it */
    want = apr_hash_copy(mxf_test_pool, s[0]);
    hs_expect(hs_resolve(h, "2", RV1, s, 2, NULL), want);
}
END_TEST

/* ------------------------------------------------------------------------
 * Cost: a room of many members with a small conflict at its tip.
 */
START_TEST(cost_follows_the_conflict)
{
    enum { MEMBERS = 3000 };
    hs_ev_t *ev = apr_pcalloc(mxf_test_pool, sizeof(hs_ev_t) * (MEMBERS + 8));
    const char **ids = apr_pcalloc(mxf_test_pool, sizeof(char *) * (MEMBERS + 8));
    /* member joins cite create, power levels and join rules */
    const char *const member_auth[] = { "$c", "$pl", "$jr", NULL };
    int i, n = 0, seq;

    ev[n++] = (hs_ev_t){ "$c", ALICE, "m.room.create", "", "{\"creator\":\"" ALICE "\"}",
                         NULL, 0, 0 };
    ev[n++] = (hs_ev_t){ "$ma", ALICE, "m.room.member", ALICE, JOIN, IDS("$c"), 0, 0 };
    ev[n++] = (hs_ev_t){ "$pl", ALICE, "m.room.power_levels", "", PL(U(ALICE, 100)),
                         IDS("$c", "$ma"), 0, 0 };
    ev[n++] = (hs_ev_t){ "$jr", ALICE, "m.room.join_rules", "", "{\"join_rule\":\"public\"}",
                         IDS("$c", "$ma", "$pl"), 0, 0 };
    for (i = 0; i < MEMBERS; i++) {
        const char *u = apr_psprintf(mxf_test_pool, "@u%d:example.com", i);
        ids[i] = apr_psprintf(mxf_test_pool, "$m%d", i);
        ev[n++] = (hs_ev_t){ ids[i], u, "m.room.member", u, JOIN, member_auth, 0, 0 };
    }
    ev[n++] = (hs_ev_t){ "$t1", ALICE, "m.room.topic", "", "{\"topic\":\"1\"}",
                         IDS("$c", "$ma", "$pl"), 0, 0 };
    ev[n++] = (hs_ev_t){ "$t2", ALICE, "m.room.topic", "", "{\"topic\":\"2\"}",
                         IDS("$c", "$ma", "$pl"), 0, 0 };
    ev[n] = (hs_ev_t){ NULL, NULL, NULL, NULL, NULL, NULL, 0, 0 };

    for (seq = 2; seq >= 0; seq--) {
        hs_t *h = hs_make(ev, ROOM, 0, seq);
        apr_hash_t *s[2], *got;
        mxf_sr_stats_t st;

        s[0] = hs_state(IDS("m.room.create|=$c", "m.room.member|" ALICE "=$ma",
                            "m.room.power_levels|=$pl", "m.room.join_rules|=$jr"));
        for (i = 0; i < MEMBERS; i++) {
            mxf_sr_set(mxf_test_pool, s[0], "m.room.member",
                       apr_psprintf(mxf_test_pool, "@u%d:example.com", i), ids[i]);
        }
        s[1] = apr_hash_copy(mxf_test_pool, s[0]);
        mxf_sr_set(mxf_test_pool, s[0], "m.room.topic", "", "$t1");
        mxf_sr_set(mxf_test_pool, s[1], "m.room.topic", "", "$t2");
        got = hs_resolve(h, "10", ROOM, s, 2, &st);
        ck_assert_str_eq(mxf_sr_get(got, "m.room.topic", ""), "$t2");
        ck_assert_uint_eq(apr_hash_count(got), MEMBERS + 5);
        ck_assert_uint_eq(st.full_conflicted, 2);
        if (seq) {
            ck_assert_msg(st.fetched < 10, "fetched %lu events", (unsigned long)st.fetched);
        }
        else {
            ck_assert_uint_ge(st.fetched, MEMBERS);
        }
    }
}
END_TEST

/*
 * An old value against a new one: the topic set before 3000 joins against
 * the topic set after them, and 500 power levels changes since the room
 * began (the mainline). With the children, the walk stops at the
 * unconflicted state and the mainline is walked only as far as needed.
 */
START_TEST(cost_old_value_long_mainline)
{
    enum { MEMBERS = 3000, PLS = 500 };
    hs_ev_t *ev = apr_pcalloc(mxf_test_pool, sizeof(hs_ev_t) * (MEMBERS + PLS + 8));
    const char **ids = apr_pcalloc(mxf_test_pool, sizeof(char *) * (MEMBERS + 8));
    const char *const member_auth[] = { "$c", "$pl0", "$jr", NULL };
    const char *pl = "$pl0";
    int i, n = 0, seq;

    ev[n++] = (hs_ev_t){ "$c", ALICE, "m.room.create", "", "{\"creator\":\"" ALICE "\"}",
                         NULL, 0, 0 };
    ev[n++] = (hs_ev_t){ "$ma", ALICE, "m.room.member", ALICE, JOIN, IDS("$c"), 0, 0 };
    ev[n++] = (hs_ev_t){ "$pl0", ALICE, "m.room.power_levels", "", PL(U(ALICE, 100)),
                         IDS("$c", "$ma"), 0, 0 };
    ev[n++] = (hs_ev_t){ "$jr", ALICE, "m.room.join_rules", "", "{\"join_rule\":\"public\"}",
                         IDS("$c", "$ma", "$pl0"), 0, 0 };
    ev[n++] = (hs_ev_t){ "$t1", ALICE, "m.room.topic", "", "{\"topic\":\"1\"}",
                         IDS("$c", "$ma", "$pl0"), 0, 0 };
    for (i = 0; i < MEMBERS; i++) {
        const char *u = apr_psprintf(mxf_test_pool, "@u%d:example.com", i);
        ids[i] = apr_psprintf(mxf_test_pool, "$m%d", i);
        ev[n++] = (hs_ev_t){ ids[i], u, "m.room.member", u, JOIN, member_auth, 0, 0 };
    }
    for (i = 1; i <= PLS; i++) {
        const char *id = apr_psprintf(mxf_test_pool, "$pl%d", i);
        const char **auth = apr_pcalloc(mxf_test_pool, sizeof(char *) * 4);
        auth[0] = "$c";
        auth[1] = "$ma";
        auth[2] = pl;
        ev[n++] = (hs_ev_t){ id, ALICE, "m.room.power_levels", "",
                             apr_psprintf(mxf_test_pool, "{\"users\":{\"" ALICE "\":100},"
                                          "\"ban\":%d}", i), auth, 0, 0 };
        pl = id;
    }
    {
        const char **auth = apr_pcalloc(mxf_test_pool, sizeof(char *) * 4);
        auth[0] = "$c";
        auth[1] = "$ma";
        auth[2] = pl;
        ev[n++] = (hs_ev_t){ "$t2", ALICE, "m.room.topic", "", "{\"topic\":\"2\"}", auth, 0, 0 };
        ev[n++] = (hs_ev_t){ "$t3", ALICE, "m.room.topic", "", "{\"topic\":\"3\"}", auth, 0, 0 };
    }
    ev[n] = (hs_ev_t){ NULL, NULL, NULL, NULL, NULL, NULL, 0, 0 };

    for (seq = 5; seq >= 0; seq--) {
        int recent = seq % 2;       /* $t3 against $t2, else $t1 against $t2 */
        hs_t *h = hs_make(ev, ROOM, 0, seq / 2);
        apr_hash_t *s[2], *got;
        mxf_sr_stats_t st;

        s[0] = hs_state(IDS("m.room.create|=$c", "m.room.member|" ALICE "=$ma",
                            "m.room.join_rules|=$jr"));
        mxf_sr_set(mxf_test_pool, s[0], "m.room.power_levels", "", pl);
        for (i = 0; i < MEMBERS; i++) {
            mxf_sr_set(mxf_test_pool, s[0], "m.room.member",
                       apr_psprintf(mxf_test_pool, "@u%d:example.com", i), ids[i]);
        }
        s[1] = apr_hash_copy(mxf_test_pool, s[0]);
        mxf_sr_set(mxf_test_pool, s[0], "m.room.topic", "", recent ? "$t3" : "$t1");
        mxf_sr_set(mxf_test_pool, s[1], "m.room.topic", "", "$t2");
        got = hs_resolve(h, "10", ROOM, s, 2, &st);
        /* mainline order: $t1 (under $pl0) before $t2; $t2 and $t3 by timestamp: $t3 wins */
        ck_assert_str_eq(mxf_sr_get(got, "m.room.topic", ""), recent ? "$t3" : "$t2");
        ck_assert_uint_eq(apr_hash_count(got), MEMBERS + 5);
        ck_assert_uint_eq(st.auth_difference, 2);
        ck_assert_uint_eq(st.full_conflicted, 2);
        if (seq / 2 == 2) {
            /* the topics, their auth events and the mainline down to the older
             * topic's power levels: not the members */
            apr_size_t most = recent ? 30 : PLS + 30;
            ck_assert_msg(st.fetched < most, "fetched %lu events", (unsigned long)st.fetched);
            ck_assert_int_eq(st.walked_all, 0);
        }
        else {
            /* from every state event, down to the older topic */
            ck_assert_int_eq(st.walked_all, 1);
            if (!recent || seq / 2 == 0) {
                ck_assert_uint_ge(st.fetched, MEMBERS);
            }
        }
    }
}
END_TEST

/* A small deterministic generator (the tests must not depend on rand()). */
static apr_uint32_t rnd_next(apr_uint32_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    return *x;
}

/*
 * Random auth DAGs and random pairs and triples of states over them: both
 * auth difference walks and the sequence-less one give the same difference
 * and the same resolved state.
 */
START_TEST(walks_agree_on_random_graphs)
{
    enum { EVENTS = 120, KEYS = 12, ROUNDS = 60 };
    apr_uint32_t x = 2463534242u;
    apr_size_t total = 0;
    int round;

    for (round = 0; round < ROUNDS; round++) {
        hs_ev_t *ev = apr_pcalloc(mxf_test_pool, sizeof(hs_ev_t) * (EVENTS + 1));
        int keyof[EVENTS];
        int i, j, nstates = 2 + (int)(rnd_next(&x) % 2);
        apr_hash_t *states[3];
        apr_hash_t *res[3];
        apr_size_t diff[3];

        ev[0] = (hs_ev_t){ "$e0", ALICE, "m.room.create", "", "{\"creator\":\"" ALICE "\"}",
                           NULL, 0, 0 };
        keyof[0] = -1;
        for (i = 1; i < EVENTS; i++) {
            const char **auth = apr_pcalloc(mxf_test_pool, sizeof(char *) * 5);
            int na = 0, k = (int)(rnd_next(&x) % KEYS);
            auth[na++] = "$e0";
            for (j = 0; j < 3; j++) {
                /* mostly recent auth events, sometimes old ones */
                int back = 1 + (int)(rnd_next(&x) % (rnd_next(&x) % 4 == 0 ? (apr_uint32_t)i
                                                                            : 8u));
                int a = i - back < 1 ? 1 : i - back;
                int dup = 0, t;
                if (a >= i) {
                    continue;
                }
                for (t = 0; t < na; t++) {
                    dup |= strcmp(auth[t], ev[a].id) == 0;
                }
                if (!dup) {
                    auth[na++] = ev[a].id;
                }
            }
            keyof[i] = k;
            ev[i] = (hs_ev_t){ apr_psprintf(mxf_test_pool, "$e%d", i), ALICE, "x.k",
                               apr_psprintf(mxf_test_pool, "%d", k), "{}",
                               na > 0 ? auth : NULL, 0, 0 };
        }
        ev[EVENTS] = (hs_ev_t){ NULL, NULL, NULL, NULL, NULL, NULL, 0, 0 };
        /* states: a common base, then each state moves some keys to newer events */
        for (j = 0; j < nstates; j++) {
            states[j] = apr_hash_make(mxf_test_pool);
            mxf_sr_set(mxf_test_pool, states[j], "m.room.create", "", "$e0");
        }
        for (i = 1; i < EVENTS; i++) {
            for (j = 0; j < nstates; j++) {
                int take = i < EVENTS / 2 ? j == 0 || rnd_next(&x) % 8 != 0
                                          : rnd_next(&x) % 3 == 0;
                if (take) {
                    char sk[16];
                    apr_snprintf(sk, sizeof(sk), "%d", keyof[i]);
                    mxf_sr_set(mxf_test_pool, states[j], "x.k", sk, ev[i].id);
                }
            }
        }
        for (j = 0; j < 3; j++) {
            hs_t *h = hs_make(ev, ROOM, 0, j);
            mxf_sr_stats_t st;
            res[j] = hs_resolve(h, "10", ROOM, states, nstates, &st);
            diff[j] = st.auth_difference;
            if (j == 2) {
                ck_assert_int_eq(st.walked_all, 0);
            }
        }
        for (j = 1; j < 3; j++) {
            ck_assert_msg(diff[j] == diff[0], "round %d: difference %lu with walk %d, %lu without"
                          " sequence numbers", round, (unsigned long)diff[j], j,
                          (unsigned long)diff[0]);
            hs_expect(res[j], res[0]);
        }
        total += diff[0];
    }
    ck_assert_uint_gt(total, ROUNDS);   /* the graphs do have differences to find */
}
END_TEST

Suite *mxf_suite_stateres(void)
{
    Suite *s = suite_create("stateres");
    TCase *tc = mxf_test_case("v2");

    tcase_add_test(tc, ban_vs_power_levels);
    tcase_add_test(tc, join_rule_evasion);
    tcase_add_test(tc, offtopic_power_levels);
    tcase_add_test(tc, topic_basic);
    tcase_add_test(tc, topic_reset);
    tcase_add_test(tc, topic);
    tcase_add_test(tc, mainline_sort);
    tcase_add_test(tc, concurrent_joins_merge);
    tcase_add_test(tc, auth_difference_chain);
    suite_add_tcase(s, tc);
    tc = mxf_test_case("v2.1");
    tcase_add_test(tc, v21_replay_conflicted_subgraph);
    tcase_add_test(tc, v21_start_empty);
    suite_add_tcase(s, tc);
    tc = mxf_test_case("v1");
    tcase_add_test(tc, v1_power_levels_then_topic);
    tcase_add_test(tc, v1_sha1_tiebreak_and_missing_keys);
    suite_add_tcase(s, tc);
    tc = mxf_test_case("cost");
    tcase_add_test(tc, cost_follows_the_conflict);
    tcase_add_test(tc, cost_old_value_long_mainline);
    tcase_add_test(tc, walks_agree_on_random_graphs);
    suite_add_tcase(s, tc);
    return s;
}
