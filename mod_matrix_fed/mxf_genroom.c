/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * Room generator: see mxf_genroom.h. Hashing, signing, redaction, event and
 * room IDs all come from mxf_event / mxf_sign / mxf_canonical; this file
 * only decides which events to make and keeps the state that decides it.
 */
#include <string.h>

#include <apr_strings.h>
#include <apr_thread_cond.h>
#include <apr_thread_mutex.h>
#include <apr_thread_proc.h>
#include <sodium.h>

#include "mxf_base64.h"
#include "mxf_canonical.h"
#include "mxf_event.h"
#include "mxf_genroom.h"
#include "mxf_roomver.h"
#include "mxf_sign.h"

#define ID_MAX   128       /* longest event ID we make is ~45 bytes */
#define RING     1024      /* recent messages kept as redaction targets */
#define ADMIN    0         /* user index of the creator/admin */
#define MOD_PL   50        /* power level of promoted users, invite/ban/kick level */
#define ADMIN_PL 100
#define CREATOR_PL (1 << 30) /* v12: creators' infinite power */
#define SAMPLE_HEAD 200
#define SAMPLE_LINES 1800
#define JOBS     256       /* PDUs in flight in the signing pipeline */

enum { MS_NONE = 0, MS_JOIN, MS_INVITE, MS_LEAVE, MS_BAN };
static const char *const ms_names[] = { "none", "join", "invite", "leave", "ban" };

enum { JR_PUBLIC = 0, JR_INVITE };
static const char *const jr_names[] = { "public", "invite" };

#define HV_COUNT 4
static const char *const hv_names[HV_COUNT] = { "shared", "invited", "joined",
                                                "world_readable" };

/* State keys with state_key "" that the generator sends. */
enum { K_CREATE = 0, K_PL, K_JR, K_HV, K_ACL, K_NAME, K_TOPIC, K_COUNT };
#define K_MEMBER  K_COUNT  /* m.room.member, state_key = target */
#define K_NONE    (-1)     /* not a state event */
static const char *const k_types[K_COUNT] = {
    "m.room.create", "m.room.power_levels", "m.room.join_rules",
    "m.room.history_visibility", "m.room.server_acl", "m.room.name", "m.room.topic"
};

#define DENIED_SERVER "denied.example"

typedef struct evref {
    char id[ID_MAX];        /* "" = none */
    char ref[48];           /* v1/v2: standard base64 reference hash */
    apr_int64_t depth;
} evref_t;

/* What the auth rules and the auth events selection need of a room state. */
typedef struct gstate {
    evref_t fixed[K_COUNT];
    int join_rule;
    int hv;                 /* index in hv_names; -1 before any event */
    unsigned char *ms;      /* membership per user */
    int *pl;                /* explicit "users" level per user, -1 = not listed */
    evref_t *mem;           /* member event per user */
} gstate_t;

typedef struct gserver {
    const char *name;
    mxf_signing_key_t *key;
    int first_user, nusers;
} gserver_t;

typedef struct guser {
    const char *id;
    const char *displayname;
    int server;
} guser_t;

/* An event to make. */
typedef struct gev {
    const char *type;
    int kind;               /* K_*, K_MEMBER or K_NONE */
    int sender;
    int target;             /* K_MEMBER: state_key's user */
    int ms;                 /* K_MEMBER: new membership */
    int pl_target, pl_value;/* K_PL: the users entry changed (-1 none; value -1 removes) */
    int jr, hv;             /* K_JR, K_HV: new value */
    json_t *content;        /* a new reference, handed over to the PDU */
    const char *redacts;
} gev_t;

/*
 * Signing pipeline: the main thread makes events and fixes their IDs (the
 * reference hash does not cover signatures); worker threads sign them and
 * encode the lines; the main thread writes the lines in order. A ring of
 * jobs: [head, tail) are in flight, [claim, tail) wait for a worker.
 */
typedef struct job {
    json_t *pdu;                /* owned by the job until done */
    const struct gserver *srv, *srv2;
    apr_pool_t *p;              /* own allocator: used by one thread at a time */
    mxf_buf_t line;
    int done;
    apr_status_t status;
    const char *why;
} job_t;

struct mxf_genroom {
    apr_pool_t *p;
    apr_pool_t *ep;         /* scratch, cleared per event */
    mxf_genroom_opts_t o;
    const mxf_roomver_t *rv;
    apr_uint64_t rng[4];
    int nservers;
    gserver_t *servers;
    int nusers;
    guser_t *users;
    char room_id[ID_MAX];
    gstate_t st, sa, sb;    /* main line, branch sides A and B */
    unsigned char *touched_b; /* users whose member event side B changed */
    unsigned touched_b_fixed; /* bit K_*: fixed keys side B changed */
    evref_t tips[2];
    int ntips;
    apr_int64_t ts;
    apr_uint64_t emitted;
    evref_t *ring;
    int ring_n;
    apr_uint64_t sample_every;  /* 0: every event */
    json_t *redacted;
    json_t *counts;
    apr_uint64_t branches, merges, conflict_forks;
    apr_int64_t max_depth;
    int ran;
    mxf_genroom_out_fn *out;
    void *baton;
    /* The pipeline. */
    job_t *jobs;
    apr_uint64_t head, tail, claim;
    int quit;
    int idle;                   /* workers waiting for work */
    int main_waiting;           /* the main thread waits for a job to finish */
    int nthreads;
    apr_thread_t **threads;
    apr_thread_mutex_t *mutex;
    apr_thread_cond_t *work_cv, *done_cv;
};

/* ------------------------------------------------------------------------
 * PRNG: xoshiro256** seeded through splitmix64 (public-domain algorithms by
 * Blackman and Vigna, written from their description).
 */
static apr_uint64_t splitmix64(apr_uint64_t *x)
{
    apr_uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static apr_uint64_t rotl(apr_uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static apr_uint64_t rnd(mxf_genroom_t *g)
{
    apr_uint64_t *s = g->rng;
    apr_uint64_t result = rotl(s[1] * 5, 7) * 9;
    apr_uint64_t t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Uniform in [0, n) (n > 0; the modulo bias is irrelevant here). */
static apr_uint64_t rnd_below(mxf_genroom_t *g, apr_uint64_t n)
{
    return rnd(g) % n;
}

/* Uniform in [0, 1). */
static double rnd_unit(mxf_genroom_t *g)
{
    return (double)(rnd(g) >> 11) * (1.0 / 9007199254740992.0);
}

static void rnd_letters(mxf_genroom_t *g, char *out, int n)
{
    static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    int i;

    for (i = 0; i < n; i++) {
        out[i] = alpha[rnd_below(g, sizeof(alpha) - 1)];
    }
    out[n] = '\0';
}

/* ------------------------------------------------------------------------
 * Options, keys, set-up.
 */
void mxf_genroom_opts_default(mxf_genroom_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->room_version = "10";
    o->events = 1000;
    o->servers = 4;
    o->users_per_server = 5;
    o->branchiness = 0.1;
    o->redactions = 0.02;
    o->seed = 1;
    o->threads = 2;
}

apr_status_t mxf_genroom_derive_key(apr_pool_t *p, apr_uint64_t seed,
                                    const char *server_name,
                                    mxf_signing_key_t **key, const char **why)
{
    static const char tag[] = "mxf-genroom key";   /* the NUL is hashed too */
    static const char alnum[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    apr_size_t nlen = strlen(server_name);
    unsigned char *buf = apr_palloc(p, sizeof(tag) + 8 + nlen);
    unsigned char h[MXF_SHA256_BYTES], v[MXF_SHA256_BYTES];
    char version[9], *line;
    apr_status_t rv;
    int i;

    memcpy(buf, tag, sizeof(tag));
    for (i = 0; i < 8; i++) {
        buf[sizeof(tag) + i] = (unsigned char)(seed >> (56 - 8 * i));
    }
    memcpy(buf + sizeof(tag) + 8, server_name, nlen);
    mxf_sha256(h, buf, sizeof(tag) + 8 + nlen);
    mxf_sha256(v, h, sizeof(h));
    version[0] = 'a';
    version[1] = '_';
    for (i = 0; i < 6; i++) {
        version[2 + i] = alnum[v[i] % (sizeof(alnum) - 1)];
    }
    version[8] = '\0';
    line = apr_pstrcat(p, "ed25519 ", version, " ",
                       mxf_b64_encode(p, h, sizeof(h), MXF_B64_STANDARD), NULL);
    rv = mxf_key_parse(p, line, key, why);
    sodium_memzero(line, strlen(line));
    sodium_memzero(h, sizeof(h));
    return rv;
}

apr_status_t mxf_genroom_key_response(apr_pool_t *p, const char *server_name,
                                      const mxf_signing_key_t *key,
                                      apr_int64_t valid_until_ts,
                                      json_t **out, const char **why)
{
    json_t *obj = mxf_json_own(p, json_object());
    json_t *vk = json_object();
    apr_status_t rv;

    json_object_set_new(vk, key->key_id,
                        json_pack("{s:s}", "key",
                                  mxf_b64_encode(p, key->pk, sizeof(key->pk),
                                                 MXF_B64_STANDARD)));
    json_object_set_new(obj, "server_name", json_string(server_name));
    json_object_set_new(obj, "verify_keys", vk);
    json_object_set_new(obj, "old_verify_keys", json_object());
    json_object_set_new(obj, "valid_until_ts", json_integer(valid_until_ts));
    if ((rv = mxf_sign_json(p, obj, server_name, key, why)) != APR_SUCCESS) {
        return rv;
    }
    *out = obj;
    return APR_SUCCESS;
}

static void state_init(mxf_genroom_t *g, gstate_t *st)
{
    int i;

    memset(st->fixed, 0, sizeof(st->fixed));
    st->join_rule = JR_INVITE;
    st->hv = -1;
    st->ms = apr_pcalloc(g->p, (apr_size_t)g->nusers);
    st->pl = apr_palloc(g->p, sizeof(int) * (apr_size_t)g->nusers);
    st->mem = apr_pcalloc(g->p, sizeof(evref_t) * (apr_size_t)g->nusers);
    for (i = 0; i < g->nusers; i++) {
        st->pl[i] = -1;
    }
}

static void state_copy(const mxf_genroom_t *g, gstate_t *dst, const gstate_t *src)
{
    memcpy(dst->fixed, src->fixed, sizeof(dst->fixed));
    dst->join_rule = src->join_rule;
    dst->hv = src->hv;
    memcpy(dst->ms, src->ms, (apr_size_t)g->nusers);
    memcpy(dst->pl, src->pl, sizeof(int) * (apr_size_t)g->nusers);
    memcpy(dst->mem, src->mem, sizeof(evref_t) * (apr_size_t)g->nusers);
}

apr_status_t mxf_genroom_create(apr_pool_t *p, const mxf_genroom_opts_t *o,
                                mxf_genroom_t **out, const char **why)
{
    mxf_genroom_t *g;
    apr_uint64_t x;
    apr_status_t rv;
    int s, u, i;

    if (!(o->conflicts >= 0.0 && o->conflicts <= 1.0)) {
        *why = "conflicts must be between 0 and 1";
        return APR_EINVAL;
    }
    if (o->conflicts > 0 && o->room_version && !strcmp(o->room_version, "1")) {
        *why = "conflicting branches need room version 2 or later";
        return APR_ENOTIMPL;
    }
    g = apr_pcalloc(p, sizeof(*g));
    g->p = p;
    g->o = *o;
    g->nthreads = o->threads;
    if (!o->room_version || !(g->rv = mxf_roomver_lookup(p, o->room_version, why))) {
        if (!o->room_version) {
            *why = "no room version";
        }
        return APR_EINVAL;
    }
    if (o->events < 6) {
        *why = "a room needs at least 6 events (create, join, power levels, "
               "join rules, history visibility, server ACL)";
        return APR_EINVAL;
    }
    if (o->servers < 1 || o->servers > MXF_GENROOM_MAX_SERVERS) {
        *why = apr_psprintf(p, "servers must be 1 to %d", MXF_GENROOM_MAX_SERVERS);
        return APR_EINVAL;
    }
    if (o->users_per_server < 1 || o->users_per_server > MXF_GENROOM_MAX_USERS_PER_SERVER) {
        *why = apr_psprintf(p, "users per server must be 1 to %d",
                            MXF_GENROOM_MAX_USERS_PER_SERVER);
        return APR_EINVAL;
    }
    if (o->threads < 0 || o->threads > 64) {
        *why = "threads must be 0 to 64";
        return APR_EINVAL;
    }
    if (!(o->branchiness >= 0.0 && o->branchiness <= 1.0)
        || !(o->redactions >= 0.0 && o->redactions <= 1.0)) {
        *why = "branchiness and redactions must be between 0 and 1";
        return APR_EINVAL;
    }

    /*
     * The room version is mixed in, so that rooms of different versions do
     * not share a random stream (nor, in versions 1-11, a room ID): the
     * version's place among the known ones, relative to version 10's, goes
     * into the seed's top 16 bits, and the result through a fixed bijection
     * (the characters "10" mixed in, FNV style). So two rooms share a stream
     * only when their seeds and versions are equal (seeds below 2^48).
     * Version 10, the default, keeps the rooms of releases that mixed the
     * version's characters into the seed alone, which made seed 1 with
     * version 2 the room of seed 2 with version 1.
     */
    {
        apr_size_t n_versions;
        const mxf_roomver_t *all = mxf_roomver_all(&n_versions), *v10 = mxf_roomver_get("10");
        apr_uint64_t tag = (apr_uint64_t)(g->rv - all) ^ (apr_uint64_t)(v10 - all);

        x = o->seed ^ (tag << 48);
        for (i = 0; v10->id[i]; i++) {
            x = (x ^ (unsigned char)v10->id[i]) * 0x100000001b3ULL;
        }
    }
    for (i = 0; i < 4; i++) {
        g->rng[i] = splitmix64(&x);
    }
    g->nservers = o->servers;
    g->servers = apr_pcalloc(p, sizeof(gserver_t) * (apr_size_t)g->nservers);
    g->nusers = o->servers * o->users_per_server + 1;
    g->users = apr_pcalloc(p, sizeof(guser_t) * (apr_size_t)g->nusers);
    g->users[ADMIN].id = "@admin:hs1.example";
    g->users[ADMIN].displayname = "Admin";
    g->users[ADMIN].server = 0;
    u = 1;
    for (s = 0; s < g->nservers; s++) {
        gserver_t *srv = &g->servers[s];

        srv->name = apr_psprintf(p, "hs%d.example", s + 1);
        if ((rv = mxf_genroom_derive_key(p, o->seed, srv->name, &srv->key, why))
            != APR_SUCCESS) {
            return rv;
        }
        srv->first_user = u;
        srv->nusers = o->users_per_server;
        for (i = 0; i < o->users_per_server; i++, u++) {
            g->users[u].id = apr_psprintf(p, "@user%d:%s", i + 1, srv->name);
            g->users[u].displayname = apr_psprintf(p, "User %d of %s", i + 1, srv->name);
            g->users[u].server = s;
        }
    }
    state_init(g, &g->st);
    state_init(g, &g->sa);
    state_init(g, &g->sb);
    g->touched_b = apr_pcalloc(p, (apr_size_t)g->nusers);
    g->ring = apr_palloc(p, sizeof(evref_t) * RING);
    g->redacted = mxf_json_own(p, json_object());
    g->counts = mxf_json_own(p, json_object());
    if (o->events > MXF_GENROOM_SAMPLE_ALL) {
        g->sample_every = (o->events - SAMPLE_HEAD) / SAMPLE_LINES;
        if (g->sample_every < 1) {
            g->sample_every = 1;
        }
    }
    /* 2017-07-01 plus up to ~3 years, in whole seconds. */
    g->ts = 1498867200000LL + (apr_int64_t)rnd_below(g, 3ULL * 365 * 86400) * 1000;
    if (!g->rv->room_id_is_create_hash) {
        char opaque[19];

        rnd_letters(g, opaque, 18);
        apr_snprintf(g->room_id, sizeof(g->room_id), "!%s:%s", opaque, g->servers[0].name);
    }
    apr_pool_create(&g->ep, p);
    *out = g;
    return APR_SUCCESS;
}

const char *mxf_genroom_room_id(const mxf_genroom_t *g)
{
    return g->room_id;
}

int mxf_genroom_server_count(const mxf_genroom_t *g)
{
    return g->nservers;
}

const char *mxf_genroom_server_name(const mxf_genroom_t *g, int i)
{
    return (i >= 0 && i < g->nservers) ? g->servers[i].name : NULL;
}

const mxf_signing_key_t *mxf_genroom_server_key(const mxf_genroom_t *g, int i)
{
    return (i >= 0 && i < g->nservers) ? g->servers[i].key : NULL;
}

/* ------------------------------------------------------------------------
 * State helpers.
 */
static int has(const evref_t *r)
{
    return r->id[0] != '\0';
}

static int effective_pl(const mxf_genroom_t *g, const gstate_t *st, int u)
{
    if (u == ADMIN) {
        if (g->rv->room_id_is_create_hash) {
            return CREATOR_PL;
        }
        if (!has(&st->fixed[K_PL])) {
            return ADMIN_PL;    /* the creator, before any power levels */
        }
    }
    return st->pl[u] >= 0 ? st->pl[u] : 0;
}

/* What a user pick must satisfy. */
enum {
    W_JOINED,           /* membership join */
    W_JOINED_OTHER,     /* joined, not the admin */
    W_CAN_JOIN,         /* invited, or (public room and left / never joined) */
    W_CAN_LEAVE,        /* joined or invited, not the admin */
    W_INVITER,          /* joined with power >= invite level */
    W_INVITABLE,        /* never joined or left */
    W_BANNABLE,         /* not the admin, not banned */
    W_BANNED,
    W_PL_CHANGEABLE     /* not the admin; joined or listed in users */
};

static int user_ok(const mxf_genroom_t *g, const gstate_t *st, int u, int want)
{
    int m = st->ms[u];

    switch (want) {
    case W_JOINED:
        return m == MS_JOIN;
    case W_JOINED_OTHER:
        return u != ADMIN && m == MS_JOIN;
    case W_CAN_JOIN:
        return m == MS_INVITE
               || ((m == MS_NONE || m == MS_LEAVE) && st->join_rule == JR_PUBLIC);
    case W_CAN_LEAVE:
        return u != ADMIN && (m == MS_JOIN || m == MS_INVITE);
    case W_INVITER:
        return m == MS_JOIN && effective_pl(g, st, u) >= MOD_PL;
    case W_INVITABLE:
        return m == MS_NONE || m == MS_LEAVE;
    case W_BANNABLE:
        return u != ADMIN && m != MS_BAN;
    case W_BANNED:
        return m == MS_BAN;
    case W_PL_CHANGEABLE:
        return u != ADMIN && (m == MS_JOIN || st->pl[u] >= 0);
    }
    return 0;
}

/*
 * A random user satisfying @a want (of server @a server, or any if -1):
 * scans from a random start. -1 if there is none.
 */
static int pick_user(mxf_genroom_t *g, const gstate_t *st, int want, int server)
{
    int first = 0, n = g->nusers, i, start;

    if (server >= 0) {
        first = g->servers[server].first_user;
        n = g->servers[server].nusers;
    }
    start = (int)rnd_below(g, (apr_uint64_t)n);
    for (i = 0; i < n; i++) {
        int u = first + (start + i) % n;

        if (user_ok(g, st, u, want)) {
            return u;
        }
    }
    /* The admin lives on hs1 but is not in its user range. */
    if ((server < 0 || server == 0) && user_ok(g, st, ADMIN, want)) {
        return ADMIN;
    }
    return -1;
}

/* Servers with a member of membership @a m in @a st, as a JSON array. */
static json_t *servers_with(const mxf_genroom_t *g, const gstate_t *st, int m)
{
    json_t *arr = json_array();
    int s, u;

    for (s = 0; s < g->nservers; s++) {
        int found = (s == 0 && st->ms[ADMIN] == m);

        for (u = g->servers[s].first_user;
             !found && u < g->servers[s].first_user + g->servers[s].nusers; u++) {
            found = st->ms[u] == m;
        }
        if (found) {
            json_array_append_new(arr, json_string(g->servers[s].name));
        }
    }
    return arr;
}

static json_t *state_json(const mxf_genroom_t *g, const gstate_t *st)
{
    json_t *obj = json_object();
    char key[320];
    int k, u;

    for (k = 0; k < K_COUNT; k++) {
        if (has(&st->fixed[k])) {
            apr_snprintf(key, sizeof(key), "%s|", k_types[k]);
            json_object_set_new(obj, key, json_string(st->fixed[k].id));
        }
    }
    for (u = 0; u < g->nusers; u++) {
        if (has(&st->mem[u])) {
            apr_snprintf(key, sizeof(key), "m.room.member|%s", g->users[u].id);
            json_object_set_new(obj, key, json_string(st->mem[u].id));
        }
    }
    return obj;
}

static void apply(gstate_t *st, const gev_t *ev, const evref_t *ref)
{
    if (ev->kind == K_MEMBER) {
        st->ms[ev->target] = (unsigned char)ev->ms;
        st->mem[ev->target] = *ref;
        return;
    }
    if (ev->kind == K_NONE) {
        return;
    }
    st->fixed[ev->kind] = *ref;
    switch (ev->kind) {
    case K_PL:
        if (ev->pl_target >= 0) {
            st->pl[ev->pl_target] = ev->pl_value;
        }
        break;
    case K_JR:
        st->join_rule = ev->jr;
        break;
    case K_HV:
        st->hv = ev->hv;
        break;
    default:
        break;
    }
}

/* ------------------------------------------------------------------------
 * Contents.
 */
static json_t *pl_content(const mxf_genroom_t *g, const gstate_t *st,
                          int target, int value)
{
    json_t *users = json_object();
    int u;

    for (u = 0; u < g->nusers; u++) {
        int level = (u == target) ? value : st->pl[u];

        if (u == ADMIN && g->rv->room_id_is_create_hash) {
            continue;   /* v12: creators must not be listed */
        }
        if (level >= 0) {
            json_object_set_new(users, g->users[u].id, json_integer(level));
        }
    }
    return json_pack("{s:i, s:{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i}, s:i, s:i, s:i, "
                     "s:{s:i}, s:i, s:i, s:o, s:i}",
                     "ban", MOD_PL,
                     "events",
                     "m.room.avatar", MOD_PL,
                     "m.room.canonical_alias", MOD_PL,
                     "m.room.history_visibility", ADMIN_PL,
                     "m.room.join_rules", ADMIN_PL,
                     "m.room.name", MOD_PL,
                     "m.room.power_levels", ADMIN_PL,
                     "m.room.server_acl", ADMIN_PL,
                     "m.room.topic", MOD_PL,
                     "events_default", 0,
                     "invite", MOD_PL,
                     "kick", MOD_PL,
                     "notifications", "room", MOD_PL,
                     "redact", MOD_PL,
                     "state_default", MOD_PL,
                     "users", users,
                     "users_default", 0);
}

static const char *const words[] = {
    "hello", "federation", "matrix", "room", "event", "state", "graph", "depth",
    "server", "signature", "hash", "lunch", "coffee", "release", "bug", "fix",
    "tomorrow", "today", "meeting", "deploy", "backfill", "merge", "branch", "key"
};

static json_t *text(mxf_genroom_t *g, const char *prefix)
{
    char buf[256];
    apr_size_t len = (apr_size_t)apr_snprintf(buf, sizeof(buf), "%s", prefix);
    int n = 2 + (int)rnd_below(g, 10), i;

    for (i = 0; i < n && len < sizeof(buf) - 16; i++) {
        len += (apr_size_t)apr_snprintf(buf + len, sizeof(buf) - len, " %s",
                                        words[rnd_below(g, sizeof(words) / sizeof(words[0]))]);
    }
    return json_string(buf);
}

static void ev_init(gev_t *ev, const char *type, int kind, int sender)
{
    memset(ev, 0, sizeof(*ev));
    ev->type = type;
    ev->kind = kind;
    ev->sender = sender;
    ev->target = -1;
    ev->pl_target = -1;
}

static void ev_message(mxf_genroom_t *g, gev_t *ev, int sender)
{
    ev_init(ev, "m.room.message", K_NONE, sender);
    ev->content = json_object();
    json_object_set_new(ev->content, "msgtype", json_string("m.text"));
    json_object_set_new(ev->content, "body", text(g, "msg"));
}

static void ev_member(mxf_genroom_t *g, gev_t *ev, int sender, int target, int ms,
                      const char *reason)
{
    ev_init(ev, "m.room.member", K_MEMBER, sender);
    ev->target = target;
    ev->ms = ms;
    ev->content = json_object();
    json_object_set_new(ev->content, "membership", json_string(ms_names[ms]));
    if (ms == MS_JOIN || ms == MS_INVITE) {
        json_object_set_new(ev->content, "displayname",
                            json_string(g->users[target].displayname));
    }
    if (reason) {
        json_object_set_new(ev->content, "reason", json_string(reason));
    }
}

static void ev_fixed(gev_t *ev, int kind, int sender, json_t *content)
{
    ev_init(ev, k_types[kind], kind, sender);
    ev->content = content;
}

/* ------------------------------------------------------------------------
 * The signing pipeline.
 */

/* Signs and encodes one job's PDU (any thread). */
static void sign_job(const mxf_genroom_t *g, job_t *j)
{
    apr_pool_clear(j->p);
    j->why = NULL;
    j->status = mxf_event_sign(j->p, j->pdu, g->rv, j->srv->name, j->srv->key, &j->why);
    if (j->status == APR_SUCCESS && j->srv2) {
        j->status = mxf_event_sign(j->p, j->pdu, g->rv, j->srv2->name, j->srv2->key,
                                   &j->why);
    }
    if (j->status == APR_SUCCESS) {
        mxf_buf_init(&j->line, j->p, 2048);
        j->status = mxf_canonical_append(&j->line, j->pdu, 0, &j->why);
        mxf_buf_append(&j->line, "\n", 1);
    }
    json_decref(j->pdu);
    j->pdu = NULL;
}

static void *APR_THREAD_FUNC worker(apr_thread_t *t, void *data)
{
    mxf_genroom_t *g = data;

    apr_thread_mutex_lock(g->mutex);
    for (;;) {
        job_t *j;

        while (!g->quit && g->claim == g->tail) {
            g->idle++;
            apr_thread_cond_wait(g->work_cv, g->mutex);
            g->idle--;
        }
        if (g->claim == g->tail) {
            break;      /* quit, and nothing left */
        }
        j = &g->jobs[g->claim++ % JOBS];
        apr_thread_mutex_unlock(g->mutex);
        sign_job(g, j);
        apr_thread_mutex_lock(g->mutex);
        j->done = 1;
        if (g->main_waiting) {
            apr_thread_cond_signal(g->done_cv);
        }
    }
    apr_thread_mutex_unlock(g->mutex);
    apr_thread_exit(t, APR_SUCCESS);
    return NULL;
}

/* Writes the finished job at head (called without the lock held). */
static apr_status_t write_job(mxf_genroom_t *g, job_t *j, const char **why)
{
    apr_status_t status = j->status;

    if (status != APR_SUCCESS) {
        *why = apr_pstrdup(g->p, j->why ? j->why : "signing failed");
        return status;
    }
    if ((status = g->out(g->baton, MXF_GENROOM_OUT_ROOM, j->line.data, j->line.len))
        != APR_SUCCESS) {
        *why = "writing the room failed";
    }
    return status;
}

/*
 * Writes finished jobs from head on, in order. With @a wait_for, waits
 * until head has passed it.
 */
static apr_status_t flush(mxf_genroom_t *g, apr_uint64_t wait_for, const char **why)
{
    apr_status_t status = APR_SUCCESS;

    apr_thread_mutex_lock(g->mutex);
    while (g->head < g->tail && status == APR_SUCCESS) {
        job_t *j = &g->jobs[g->head % JOBS];

        if (!j->done) {
            if (g->head >= wait_for) {
                break;
            }
            g->main_waiting = 1;
            apr_thread_cond_wait(g->done_cv, g->mutex);
            g->main_waiting = 0;
            continue;
        }
        apr_thread_mutex_unlock(g->mutex);
        status = write_job(g, j, why);
        apr_thread_mutex_lock(g->mutex);
        j->done = 0;
        g->head++;
    }
    apr_thread_mutex_unlock(g->mutex);
    return status;
}

/* Hands @a pdu (a reference that the pipeline takes over) to be signed and written. */
static apr_status_t submit(mxf_genroom_t *g, json_t *pdu, const gserver_t *srv,
                           const gserver_t *srv2, const char **why)
{
    job_t *j;
    apr_status_t status;

    if (g->nthreads == 0) {
        j = &g->jobs[0];
        j->pdu = pdu;
        j->srv = srv;
        j->srv2 = srv2;
        sign_job(g, j);
        return write_job(g, j, why);
    }
    if (g->tail - g->head == JOBS
        && (status = flush(g, g->head + 1, why)) != APR_SUCCESS) {
        json_decref(pdu);
        return status;
    }
    apr_thread_mutex_lock(g->mutex);
    j = &g->jobs[g->tail % JOBS];
    j->pdu = pdu;
    j->srv = srv;
    j->srv2 = srv2;
    j->done = 0;
    g->tail++;
    if (g->idle) {
        apr_thread_cond_signal(g->work_cv);
    }
    apr_thread_mutex_unlock(g->mutex);
    /* Now and then, write what is ready without waiting. */
    return (g->tail % 32) ? APR_SUCCESS : flush(g, 0, why);
}

static apr_status_t pipeline_start(mxf_genroom_t *g, const char **why)
{
    apr_status_t status;
    int i, n = g->nthreads > 0 ? JOBS : 1;

    g->jobs = apr_pcalloc(g->p, sizeof(job_t) * (apr_size_t)n);
    for (i = 0; i < n; i++) {
        apr_allocator_t *a;

        if ((status = apr_allocator_create(&a)) != APR_SUCCESS
            || (status = apr_pool_create_ex(&g->jobs[i].p, g->p, NULL, a)) != APR_SUCCESS) {
            *why = "cannot create a pool";
            return status;
        }
        apr_allocator_owner_set(a, g->jobs[i].p);
    }
    if (g->nthreads == 0) {
        return APR_SUCCESS;
    }
    if ((status = apr_thread_mutex_create(&g->mutex, APR_THREAD_MUTEX_DEFAULT, g->p))
        != APR_SUCCESS
        || (status = apr_thread_cond_create(&g->work_cv, g->p)) != APR_SUCCESS
        || (status = apr_thread_cond_create(&g->done_cv, g->p)) != APR_SUCCESS) {
        *why = "cannot create the pipeline's locks";
        return status;
    }
    g->threads = apr_pcalloc(g->p, sizeof(apr_thread_t *) * (apr_size_t)g->nthreads);
    for (i = 0; i < g->nthreads; i++) {
        if ((status = apr_thread_create(&g->threads[i], NULL, worker, g, g->p))
            != APR_SUCCESS) {
            *why = "cannot start a signing thread";
            g->nthreads = i;
            return status;
        }
    }
    return APR_SUCCESS;
}

/*
 * Writes what is left (unless @a status is already a failure) and stops
 * the workers. Returns the first failure.
 */
static apr_status_t pipeline_stop(mxf_genroom_t *g, apr_status_t status, const char **why)
{
    apr_uint64_t i;
    int t;

    if (!g->mutex) {
        return status;
    }
    if (status == APR_SUCCESS) {
        status = flush(g, g->tail, why);
    }
    apr_thread_mutex_lock(g->mutex);
    g->quit = 1;
    apr_thread_cond_broadcast(g->work_cv);
    apr_thread_mutex_unlock(g->mutex);
    for (t = 0; t < g->nthreads; t++) {
        apr_status_t ts;

        apr_thread_join(&ts, g->threads[t]);
    }
    /* Jobs never written (after a failure) still hold nothing: workers
     * release each PDU once signed. */
    for (i = g->head; i < g->tail; i++) {
        g->jobs[i % JOBS].done = 0;
    }
    g->head = g->tail;
    g->nthreads = 0;
    return status;
}

/* ------------------------------------------------------------------------
 * Making, signing and writing one event.
 */
static json_t *edges(const mxf_genroom_t *g, const evref_t *const *refs, int n)
{
    json_t *arr = json_array();
    int i;

    for (i = 0; i < n; i++) {
        if (g->rv->ref_pairs) {
            json_array_append_new(arr, json_pack("[s, {s:s}]", refs[i]->id,
                                                 "sha256", refs[i]->ref));
        }
        else {
            json_array_append_new(arr, json_string(refs[i]->id));
        }
    }
    return arr;
}

static json_t *id_list(const evref_t *const *refs, int n)
{
    json_t *arr = json_array();
    int i;

    for (i = 0; i < n; i++) {
        json_array_append_new(arr, json_string(refs[i]->id));
    }
    return arr;
}

static void count(mxf_genroom_t *g, const char *what)
{
    json_t *c = json_object_get(g->counts, what);

    json_object_set_new(g->counts, what,
                        json_integer((c ? json_integer_value(c) : 0) + 1));
}

static int sampled(const mxf_genroom_t *g, apr_uint64_t i)
{
    return g->sample_every == 0 || i < SAMPLE_HEAD
           || (i - SAMPLE_HEAD) % g->sample_every == 0;
}

static apr_status_t write_expect(mxf_genroom_t *g, const gstate_t *before,
                                 const gev_t *ev, const evref_t *res, json_t *pdu,
                                 const evref_t *const *prevs, int nprev,
                                 const evref_t *const *auth, int nauth,
                                 const char **why)
{
    json_t *line = mxf_json_own(g->ep, json_object());
    json_t *sk = json_object_get(pdu, "state_key");
    const char *text_;
    apr_size_t len;
    char *buf;

    json_object_set_new(line, "i", json_integer((json_int_t)g->emitted));
    json_object_set_new(line, "event_id", json_string(res->id));
    json_object_set_new(line, "type", json_string(ev->type));
    if (sk) {
        json_object_set_new(line, "state_key", json_string(json_string_value(sk)));
    }
    json_object_set_new(line, "sender", json_string(g->users[ev->sender].id));
    json_object_set_new(line, "depth", json_integer(res->depth));
    json_object_set_new(line, "origin_server_ts",
                        json_integer(json_integer_value(json_object_get(pdu,
                                                                        "origin_server_ts"))));
    json_object_set_new(line, "prev_events", id_list(prevs, nprev));
    json_object_set_new(line, "auth_events", id_list(auth, nauth));
    if (ev->redacts) {
        json_object_set_new(line, "redacts", json_string(ev->redacts));
    }
    json_object_set_new(line, "history_visibility",
                        json_string(hv_names[before->hv >= 0 ? before->hv : 0]));
    json_object_set_new(line, "joined_servers", servers_with(g, before, MS_JOIN));
    json_object_set_new(line, "invited_servers", servers_with(g, before, MS_INVITE));
    json_object_set_new(line, "state_before", state_json(g, before));
    if (ev->kind == K_NONE) {
        json_object_set(line, "state_after", json_object_get(line, "state_before"));
    }
    else {
        json_t *sa = json_deep_copy(json_object_get(line, "state_before"));
        char key[320];

        apr_snprintf(key, sizeof(key), "%s|%s", ev->type, json_string_value(sk));
        json_object_set_new(sa, key, json_string(res->id));
        json_object_set_new(line, "state_after", sa);
    }
    if (!(text_ = mxf_json_dump(g->ep, line, &len))) {
        *why = "cannot encode an expectation line";
        return APR_EINVAL;
    }
    buf = apr_palloc(g->ep, len + 1);
    memcpy(buf, text_, len);
    buf[len] = '\n';
    return g->out(g->baton, MXF_GENROOM_OUT_EXPECT, buf, len + 1);
}

/*
 * Makes event @a ev on top of @a prevs in state @a st (the state before
 * it), writes it, applies it to @a st and returns its reference in @a res.
 */
static apr_status_t emit(mxf_genroom_t *g, gstate_t *st, const evref_t *const *prevs,
                         int nprev, apr_int64_t ts, gev_t *ev, evref_t *res,
                         const char **why)
{
    const mxf_roomver_t *rv = g->rv;
    apr_pool_t *ep = g->ep;
    const evref_t *auth[6];
    int nauth = 0, i, is_create = ev->kind == K_CREATE;
    const gserver_t *srv = &g->servers[g->users[ev->sender].server], *tsrv = NULL;
    json_t *pdu;
    const char *hash;
    apr_int64_t depth = 0;
    apr_status_t status;

    apr_pool_clear(ep);
    for (i = 0; i < nprev; i++) {
        if (prevs[i]->depth > depth) {
            depth = prevs[i]->depth;
        }
    }
    depth++;

    /* Auth events selection. */
    if (!is_create) {
        if (!rv->room_id_is_create_hash) {
            auth[nauth++] = &st->fixed[K_CREATE];
        }
        if (has(&st->fixed[K_PL])) {
            auth[nauth++] = &st->fixed[K_PL];
        }
        if (has(&st->mem[ev->sender])) {
            auth[nauth++] = &st->mem[ev->sender];
        }
        if (ev->kind == K_MEMBER) {
            if (ev->target != ev->sender && has(&st->mem[ev->target])) {
                auth[nauth++] = &st->mem[ev->target];
            }
            if ((ev->ms == MS_JOIN || ev->ms == MS_INVITE) && has(&st->fixed[K_JR])) {
                auth[nauth++] = &st->fixed[K_JR];
            }
        }
    }

    pdu = json_object();
    json_object_set_new(pdu, "auth_events", edges(g, auth, nauth));
    json_object_set_new(pdu, "content", ev->content);
    ev->content = NULL;
    json_object_set_new(pdu, "depth", json_integer(depth));
    if (rv->redaction != MXF_REDACT_V11) {
        json_object_set_new(pdu, "origin", json_string(srv->name));
    }
    json_object_set_new(pdu, "origin_server_ts", json_integer(ts));
    json_object_set_new(pdu, "prev_events", edges(g, prevs, nprev));
    if (!(is_create && rv->room_id_is_create_hash)) {
        json_object_set_new(pdu, "room_id", json_string(g->room_id));
    }
    json_object_set_new(pdu, "sender", json_string(g->users[ev->sender].id));
    if (ev->kind == K_MEMBER) {
        json_object_set_new(pdu, "state_key", json_string(g->users[ev->target].id));
    }
    else if (ev->kind != K_NONE) {
        json_object_set_new(pdu, "state_key", json_string(""));
    }
    json_object_set_new(pdu, "type", json_string(ev->type));
    if (ev->redacts && !rv->redacts_in_content) {
        json_object_set_new(pdu, "redacts", json_string(ev->redacts));
    }
    if (rv->event_id_format == MXF_EVID_CARRIED) {
        char opaque[21];

        rnd_letters(g, opaque, 20);
        apr_snprintf(res->id, sizeof(res->id), "$%s:%s", opaque, srv->name);
        json_object_set_new(pdu, "event_id", json_string(res->id));
    }
    if (ev->kind == K_MEMBER && ev->ms == MS_INVITE
        && g->users[ev->target].server != g->users[ev->sender].server) {
        /* The invited server countersigns (the /invite round trip). */
        tsrv = &g->servers[g->users[ev->target].server];
    }

    /*
     * The reference hash (event ID) covers hashes but not signatures: fix
     * the content hash and the ID here, and leave the signing (the costly
     * part) to the pipeline.
     */
    if (!(hash = mxf_event_content_hash_b64(ep, pdu, rv, why))) {
        json_decref(pdu);
        return APR_EINVAL;
    }
    json_object_set_new(pdu, "hashes", json_pack("{s:s}", "sha256", hash));
    if (rv->event_id_format == MXF_EVID_CARRIED) {
        unsigned char h[MXF_SHA256_BYTES];

        if ((status = mxf_event_reference_hash(ep, pdu, rv, h, why)) != APR_SUCCESS) {
            json_decref(pdu);
            return status;
        }
        apr_cpystrn(res->ref, mxf_b64_encode(ep, h, sizeof(h), MXF_B64_STANDARD),
                    sizeof(res->ref));
    }
    else {
        const char *id = mxf_event_id_compute(ep, pdu, rv, why);

        if (!id) {
            json_decref(pdu);
            return APR_EINVAL;
        }
        apr_cpystrn(res->id, id, sizeof(res->id));
        res->ref[0] = '\0';
    }
    res->depth = depth;
    if (is_create && rv->room_id_is_create_hash) {
        const char *room_id = mxf_event_room_id_from_create(ep, pdu, rv, why);

        if (!room_id) {
            json_decref(pdu);
            return APR_EINVAL;
        }
        apr_cpystrn(g->room_id, room_id, sizeof(g->room_id));
    }
    if (sampled(g, g->emitted)
        && (status = write_expect(g, st, ev, res, pdu, prevs, nprev, auth, nauth, why))
           != APR_SUCCESS) {
        json_decref(pdu);
        return status;
    }
    /* Drop this thread's references into the PDU before handing it over. */
    apr_pool_clear(ep);
    if ((status = submit(g, pdu, srv, tsrv, why)) != APR_SUCCESS) {
        return status;
    }
    apply(st, ev, res);
    if (ev->redacts) {
        json_object_set_new(g->redacted, ev->redacts, json_string(res->id));
    }
    if (!strcmp(ev->type, "m.room.message")) {
        if (g->ring_n < RING) {
            g->ring[g->ring_n++] = *res;
        }
        else {
            g->ring[rnd_below(g, RING)] = *res;
        }
    }
    if (ev->kind == K_MEMBER) {
        count(g, apr_pstrcat(ep, "m.room.member/", ms_names[ev->ms],
                             ev->sender != ev->target ? "/other" : "", NULL));
    }
    else {
        count(g, ev->type);
    }
    if (nprev > 1) {
        g->merges++;
    }
    if (depth > g->max_depth) {
        g->max_depth = depth;
    }
    g->emitted++;
    return APR_SUCCESS;
}

static apr_int64_t next_ts(mxf_genroom_t *g, apr_int64_t ts)
{
    return ts + 100 + (apr_int64_t)rnd_below(g, 1901);
}

/* A main-line event on top of the current tips. */
static apr_status_t emit_main(mxf_genroom_t *g, gev_t *ev, const char **why)
{
    const evref_t *prevs[2];
    evref_t res;
    apr_status_t status;
    int i;

    memset(&res, 0, sizeof(res));
    for (i = 0; i < g->ntips; i++) {
        prevs[i] = &g->tips[i];
    }
    g->ts = next_ts(g, g->ts);
    if ((status = emit(g, &g->st, prevs, g->ntips, g->ts, ev, &res, why)) != APR_SUCCESS) {
        return status;
    }
    g->tips[0] = res;
    g->ntips = 1;
    return APR_SUCCESS;
}

/* ------------------------------------------------------------------------
 * Choosing events.
 */
static apr_status_t setup(mxf_genroom_t *g, const char **why)
{
    gev_t ev;
    json_t *c;
    apr_status_t status;

    c = json_object();
    if (!g->rv->implicit_creator) {
        json_object_set_new(c, "creator", json_string(g->users[ADMIN].id));
    }
    json_object_set_new(c, "room_version", json_string(g->rv->id));
    ev_fixed(&ev, K_CREATE, ADMIN, c);
    g->ntips = 0;
    if ((status = emit_main(g, &ev, why)) != APR_SUCCESS) {
        return status;
    }
    ev_member(g, &ev, ADMIN, ADMIN, MS_JOIN, NULL);
    if ((status = emit_main(g, &ev, why)) != APR_SUCCESS) {
        return status;
    }
    ev_fixed(&ev, K_PL, ADMIN, pl_content(g, &g->st, ADMIN, ADMIN_PL));
    ev.pl_target = ADMIN;
    ev.pl_value = g->rv->room_id_is_create_hash ? -1 : ADMIN_PL;
    if ((status = emit_main(g, &ev, why)) != APR_SUCCESS) {
        return status;
    }
    ev_fixed(&ev, K_JR, ADMIN, json_pack("{s:s}", "join_rule", jr_names[JR_PUBLIC]));
    ev.jr = JR_PUBLIC;
    if ((status = emit_main(g, &ev, why)) != APR_SUCCESS) {
        return status;
    }
    ev_fixed(&ev, K_HV, ADMIN, json_pack("{s:s}", "history_visibility", hv_names[0]));
    ev.hv = 0;
    if ((status = emit_main(g, &ev, why)) != APR_SUCCESS) {
        return status;
    }
    ev_fixed(&ev, K_ACL, ADMIN,
             json_pack("{s:b, s:[s], s:[s]}", "allow_ip_literals", 0,
                       "allow", "*", "deny", DENIED_SERVER));
    return emit_main(g, &ev, why);
}

/* An action on the main line; falls back to a message when a pick fails. */
static void choose_main(mxf_genroom_t *g, gev_t *ev)
{
    gstate_t *st = &g->st;
    int u, v;
    double r;

    /* Weights: message 60, join 12, leave 3, invite 4, kick 1, ban 1,
     * unban 1, history visibility 1, power levels 2, join rules 1.5,
     * topic 1, name 0.5 (88 in all). */
    r = rnd_unit(g) * 88;
    if ((r -= 60) < 0) {
        goto message;
    }
    if ((r -= 12) < 0) {
        if ((u = pick_user(g, st, W_CAN_JOIN, -1)) >= 0) {
            ev_member(g, ev, u, u, MS_JOIN, NULL);
            return;
        }
        goto message;
    }
    if ((r -= 3) < 0) {
        if ((u = pick_user(g, st, W_CAN_LEAVE, -1)) >= 0) {
            ev_member(g, ev, u, u, MS_LEAVE, NULL);
            return;
        }
        goto message;
    }
    if ((r -= 4) < 0) {
        if ((u = pick_user(g, st, W_INVITER, -1)) >= 0
            && (v = pick_user(g, st, W_INVITABLE, -1)) >= 0) {
            ev_member(g, ev, u, v, MS_INVITE, NULL);
            return;
        }
        goto message;
    }
    if ((r -= 1) < 0) {
        if ((u = pick_user(g, st, W_JOINED_OTHER, -1)) >= 0) {
            ev_member(g, ev, ADMIN, u, MS_LEAVE, "kicked by the generator");
            return;
        }
        goto message;
    }
    if ((r -= 1) < 0) {
        if ((u = pick_user(g, st, W_BANNABLE, -1)) >= 0) {
            ev_member(g, ev, ADMIN, u, MS_BAN, "banned by the generator");
            return;
        }
        goto message;
    }
    if ((r -= 1) < 0) {
        if ((u = pick_user(g, st, W_BANNED, -1)) >= 0) {
            ev_member(g, ev, ADMIN, u, MS_LEAVE, NULL);
            return;
        }
        goto message;
    }
    if ((r -= 1) < 0) {
        int hv = (st->hv + 1) % HV_COUNT;

        ev_fixed(ev, K_HV, ADMIN, json_pack("{s:s}", "history_visibility", hv_names[hv]));
        ev->hv = hv;
        return;
    }
    if ((r -= 2) < 0) {
        if ((u = pick_user(g, st, W_PL_CHANGEABLE, -1)) >= 0) {
            int value = st->pl[u] >= MOD_PL ? -1 : MOD_PL;

            ev_fixed(ev, K_PL, ADMIN, pl_content(g, st, u, value));
            ev->pl_target = u;
            ev->pl_value = value;
            return;
        }
        goto message;
    }
    if ((r -= 1.5) < 0) {
        int jr = st->join_rule == JR_PUBLIC ? JR_INVITE : JR_PUBLIC;

        ev_fixed(ev, K_JR, ADMIN, json_pack("{s:s}", "join_rule", jr_names[jr]));
        ev->jr = jr;
        return;
    }
    if ((r -= 1) < 0) {
        if ((u = pick_user(g, st, W_INVITER, -1)) >= 0) {
            ev_fixed(ev, K_TOPIC, u, json_pack("{s:o}", "topic", text(g, "Topic:")));
            return;
        }
        goto message;
    }
    if ((u = pick_user(g, st, W_INVITER, -1)) >= 0) {
        ev_fixed(ev, K_NAME, u, json_pack("{s:o}", "name", text(g, "Room")));
        return;
    }
message:
    u = pick_user(g, st, W_JOINED, -1);
    ev_message(g, ev, u >= 0 ? u : ADMIN);
}

/*
 * An action of a branch side for server @a server in side state @a st:
 * only the server's own users' messages, joins and leaves, so the two
 * sides never touch the same state key. 0 if the server can do nothing.
 */
static int choose_side(mxf_genroom_t *g, gstate_t *st, int server, gev_t *ev)
{
    apr_uint64_t r = rnd_below(g, 100);
    int u;

    if (r < 15 && (u = pick_user(g, st, W_CAN_JOIN, server)) >= 0) {
        ev_member(g, ev, u, u, MS_JOIN, NULL);
        return 1;
    }
    if (r >= 15 && r < 27 && (u = pick_user(g, st, W_CAN_LEAVE, server)) >= 0) {
        ev_member(g, ev, u, u, MS_LEAVE, NULL);
        return 1;
    }
    if ((u = pick_user(g, st, W_JOINED, server)) >= 0) {
        ev_message(g, ev, u);
        return 1;
    }
    if ((u = pick_user(g, st, W_CAN_JOIN, server)) >= 0) {
        ev_member(g, ev, u, u, MS_JOIN, NULL);
        return 1;
    }
    return 0;
}

static int server_can_act(mxf_genroom_t *g, const gstate_t *st, int s)
{
    int u;

    if (s == 0 && st->ms[ADMIN] == MS_JOIN) {
        return 1;
    }
    for (u = g->servers[s].first_user;
         u < g->servers[s].first_user + g->servers[s].nusers; u++) {
        if (user_ok(g, st, u, W_JOINED) || user_ok(g, st, u, W_CAN_JOIN)) {
            return 1;
        }
    }
    return 0;
}

static int side_len(mxf_genroom_t *g)
{
    apr_uint64_t r = rnd_below(g, 10);

    return r < 6 ? 1 : r < 9 ? 2 : 3;
}

/* Lengths of the two sides of a fork, together at most @a remaining events. */
static void side_lengths(mxf_genroom_t *g, apr_uint64_t remaining, int *la, int *lb)
{
    *la = side_len(g);
    *lb = side_len(g);
    while ((apr_uint64_t)(*la + *lb) > remaining) {
        if (*la > *lb) {
            (*la)--;
        }
        else {
            (*lb)--;
        }
    }
}

/*
 * A fork: two servers send concurrently on top of the current tips; the
 * next main-line event merges them. Returns APR_EAGAIN (nothing made) if
 * no two servers can act.
 */
static apr_status_t branch(mxf_genroom_t *g, apr_uint64_t remaining, const char **why)
{
    const evref_t *prev_a[2], *prev_b[2];
    evref_t tip_a, tip_b;
    int a, b, la, lb, na, nb, i, n_a = 0, n_b = 0;
    apr_int64_t ts_a = g->ts, ts_b = g->ts;
    apr_status_t status;

    if (g->nservers < 2 || remaining < 2) {
        return APR_EAGAIN;
    }
    a = (int)rnd_below(g, (apr_uint64_t)g->nservers);
    b = (a + 1 + (int)rnd_below(g, (apr_uint64_t)g->nservers - 1)) % g->nservers;
    if (!server_can_act(g, &g->st, a) || !server_can_act(g, &g->st, b)) {
        return APR_EAGAIN;
    }
    side_lengths(g, remaining, &la, &lb);
    state_copy(g, &g->sa, &g->st);
    state_copy(g, &g->sb, &g->st);
    memset(g->touched_b, 0, (apr_size_t)g->nusers);
    g->touched_b_fixed = 0;
    for (i = 0; i < g->ntips; i++) {
        prev_a[i] = prev_b[i] = &g->tips[i];
    }
    na = nb = g->ntips;
    memset(&tip_a, 0, sizeof(tip_a));
    memset(&tip_b, 0, sizeof(tip_b));

    /* Interleaved, still topological: A1 B1 A2 B2 ... */
    for (i = 0; i < la || i < lb; i++) {
        gev_t ev;
        evref_t res;

        if (i < la && choose_side(g, &g->sa, a, &ev)) {
            memset(&res, 0, sizeof(res));
            ts_a = next_ts(g, ts_a);
            if ((status = emit(g, &g->sa, prev_a, na, ts_a, &ev, &res, why))
                != APR_SUCCESS) {
                return status;
            }
            tip_a = res;
            prev_a[0] = &tip_a;
            na = 1;
            n_a++;
        }
        if (i < lb && choose_side(g, &g->sb, b, &ev)) {
            memset(&res, 0, sizeof(res));
            ts_b = next_ts(g, ts_b);
            if ((status = emit(g, &g->sb, prev_b, nb, ts_b, &ev, &res, why))
                != APR_SUCCESS) {
                return status;
            }
            if (ev.kind == K_MEMBER) {
                g->touched_b[ev.target] = 1;
            }
            else if (ev.kind != K_NONE) {
                g->touched_b_fixed |= 1u << ev.kind;
            }
            tip_b = res;
            prev_b[0] = &tip_b;
            nb = 1;
            n_b++;
        }
    }
    if (n_a == 0 && n_b == 0) {
        return APR_EAGAIN;
    }
    /* Resolve: side A's state plus what side B changed (no conflicts). */
    for (i = 0; i < g->nusers; i++) {
        if (g->touched_b[i]) {
            g->sa.ms[i] = g->sb.ms[i];
            g->sa.mem[i] = g->sb.mem[i];
            g->sa.pl[i] = g->sb.pl[i];
        }
    }
    for (i = 0; i < K_COUNT; i++) {
        if (g->touched_b_fixed & (1u << i)) {
            g->sa.fixed[i] = g->sb.fixed[i];
        }
    }
    state_copy(g, &g->st, &g->sa);
    if (n_a && n_b) {
        g->tips[0] = tip_a;
        g->tips[1] = tip_b;
        g->ntips = 2;
        g->branches++;
    }
    else {
        g->tips[0] = n_a ? tip_a : tip_b;
        g->ntips = 1;
    }
    g->ts = ts_a > ts_b ? ts_a : ts_b;
    return APR_SUCCESS;
}

/* The later of two events by (origin_server_ts, event ID): 1 if the first. */
static int first_is_later(apr_int64_t ts1, const evref_t *r1, apr_int64_t ts2,
                          const evref_t *r2)
{
    if (ts1 != ts2) {
        return ts1 > ts2;
    }
    return strcmp(r1->id, r2->id) > 0;
}

enum { C_TOPIC = 0, C_POWER, C_BAN, C_JOIN, C_COUNT };
static const char *const c_names[C_COUNT] = { "topic", "power", "ban", "join" };

/*
 * Chooses the conflicting pair of kind @a kind for servers @a a and @a b
 * in the current state: 0 if it cannot be made. *who: the user the kind
 * is about (ban, join).
 */
static int choose_conflict(mxf_genroom_t *g, int kind, int a, int b, gev_t *ea, gev_t *eb,
                           int *who)
{
    const gstate_t *st = &g->st;
    int u, v, i;

    switch (kind) {
    case C_TOPIC:
        if ((u = pick_user(g, st, W_INVITER, a)) < 0 || (v = pick_user(g, st, W_INVITER, b)) < 0) {
            return 0;
        }
        ev_fixed(ea, K_TOPIC, u, json_pack("{s:o}", "topic", text(g, "Topic A:")));
        ev_fixed(eb, K_TOPIC, v, json_pack("{s:o}", "topic", text(g, "Topic B:")));
        return 1;
    case C_POWER:
        if (st->ms[ADMIN] != MS_JOIN || (u = pick_user(g, st, W_PL_CHANGEABLE, -1)) < 0) {
            return 0;
        }
        for (i = 0, v = -1; i < 8 && (v < 0 || v == u); i++) {
            v = pick_user(g, st, W_PL_CHANGEABLE, -1);
        }
        if (v < 0 || v == u) {
            return 0;
        }
        ev_fixed(ea, K_PL, ADMIN, pl_content(g, st, u, st->pl[u] >= MOD_PL ? -1 : MOD_PL));
        ea->pl_target = u;
        ea->pl_value = st->pl[u] >= MOD_PL ? -1 : MOD_PL;
        ev_fixed(eb, K_PL, ADMIN, pl_content(g, st, v, st->pl[v] >= MOD_PL ? -1 : MOD_PL));
        eb->pl_target = v;
        eb->pl_value = st->pl[v] >= MOD_PL ? -1 : MOD_PL;
        return 1;
    case C_BAN:
        if (st->ms[ADMIN] != MS_JOIN || (u = pick_user(g, st, W_JOINED_OTHER, b)) < 0) {
            return 0;
        }
        ev_member(g, ea, ADMIN, u, MS_BAN, "banned by the generator (conflict)");
        ev_member(g, eb, u, u, MS_JOIN, NULL);
        *who = u;
        return 1;
    case C_JOIN:
        if (st->ms[ADMIN] != MS_JOIN || st->join_rule != JR_PUBLIC
            || (u = pick_user(g, st, W_INVITABLE, b)) < 0 || u == ADMIN) {
            return 0;
        }
        ev_fixed(ea, K_JR, ADMIN, json_pack("{s:s}", "join_rule", jr_names[JR_INVITE]));
        ea->jr = JR_INVITE;
        ev_member(g, eb, u, u, MS_JOIN, NULL);
        *who = u;
        return 1;
    }
    return 0;
}

/*
 * A conflicting fork (see the header): side A's and side B's first events
 * conflict, the rest are messages; the state after it is the generator's
 * prediction of state resolution. APR_EAGAIN if none can be made.
 */
static apr_status_t conflict_branch(mxf_genroom_t *g, apr_uint64_t remaining,
                                    const char **why)
{
    const evref_t *prev_a[2], *prev_b[2];
    evref_t tip_a, tip_b;
    gev_t ea, eb;
    int a, b, kind = -1, k0, k, la, lb, i, who = -1, na, nb;
    apr_int64_t ts_a = g->ts, ts_b = g->ts, ts_ca, ts_cb;
    apr_status_t status;

    if (g->nservers < 2 || remaining < 4) {
        return APR_EAGAIN;
    }
    a = (int)rnd_below(g, (apr_uint64_t)g->nservers);
    b = (a + 1 + (int)rnd_below(g, (apr_uint64_t)g->nservers - 1)) % g->nservers;
    k0 = (int)rnd_below(g, C_COUNT);
    for (k = 0; k < C_COUNT && kind < 0; k++) {
        memset(&ea, 0, sizeof(ea));
        memset(&eb, 0, sizeof(eb));
        if (choose_conflict(g, (k0 + k) % C_COUNT, a, b, &ea, &eb, &who)) {
            kind = (k0 + k) % C_COUNT;
        }
        else {
            json_decref(ea.content);
            json_decref(eb.content);
        }
    }
    if (kind < 0) {
        return APR_EAGAIN;
    }
    side_lengths(g, remaining, &la, &lb);
    state_copy(g, &g->sa, &g->st);
    state_copy(g, &g->sb, &g->st);
    for (i = 0; i < g->ntips; i++) {
        prev_a[i] = prev_b[i] = &g->tips[i];
    }
    na = nb = g->ntips;
    memset(&tip_a, 0, sizeof(tip_a));
    memset(&tip_b, 0, sizeof(tip_b));
    ts_ca = ts_a = next_ts(g, ts_a);
    if ((status = emit(g, &g->sa, prev_a, na, ts_a, &ea, &tip_a, why)) != APR_SUCCESS) {
        json_decref(eb.content);
        return status;
    }
    ts_cb = ts_b = next_ts(g, ts_b);
    if ((status = emit(g, &g->sb, prev_b, nb, ts_b, &eb, &tip_b, why)) != APR_SUCCESS) {
        return status;
    }
    {
        /* Copies: the tips move on with the messages. */
        evref_t ca = tip_a, cb = tip_b;

        prev_a[0] = &tip_a;
        prev_b[0] = &tip_b;
        na = nb = 1;
        for (i = 1; i < la || i < lb; i++) {
            gev_t ev;
            evref_t res;
            int u;

            if (i < la && (u = pick_user(g, &g->sa, W_JOINED, a)) >= 0) {
                ev_message(g, &ev, u);
                memset(&res, 0, sizeof(res));
                ts_a = next_ts(g, ts_a);
                if ((status = emit(g, &g->sa, prev_a, na, ts_a, &ev, &res, why))
                    != APR_SUCCESS) {
                    return status;
                }
                tip_a = res;
            }
            if (i < lb && (u = pick_user(g, &g->sb, W_JOINED, b)) >= 0) {
                ev_message(g, &ev, u);
                memset(&res, 0, sizeof(res));
                ts_b = next_ts(g, ts_b);
                if ((status = emit(g, &g->sb, prev_b, nb, ts_b, &ev, &res, why))
                    != APR_SUCCESS) {
                    return status;
                }
                tip_b = res;
            }
        }

        /* The predicted resolution, on the state before the fork. */
        switch (kind) {
        case C_TOPIC:
            g->st.fixed[K_TOPIC] = first_is_later(ts_ca, &ca, ts_cb, &cb) ? ca : cb;
            break;
        case C_POWER:
            if (first_is_later(ts_ca, &ca, ts_cb, &cb)) {
                state_copy(g, &g->st, &g->sa);
            }
            else {
                state_copy(g, &g->st, &g->sb);
            }
            break;
        case C_BAN:
            apply(&g->st, &ea, &ca);
            break;
        case C_JOIN:
            apply(&g->st, &ea, &ca);
            (void)who;
            break;
        }
    }
    g->tips[0] = tip_a;
    g->tips[1] = tip_b;
    g->ntips = 2;
    g->branches++;
    g->conflict_forks++;
    count(g, apr_pstrcat(g->ep, "conflicts/", c_names[kind], NULL));
    g->ts = ts_a > ts_b ? ts_a : ts_b;
    return APR_SUCCESS;
}

static apr_status_t redaction(mxf_genroom_t *g, const char **why)
{
    apr_uint64_t i = rnd_below(g, (apr_uint64_t)g->ring_n);
    char target[ID_MAX];
    gev_t ev;

    memcpy(target, g->ring[i].id, sizeof(target));
    g->ring[i] = g->ring[--g->ring_n];
    ev_init(&ev, "m.room.redaction", K_NONE, ADMIN);
    ev.content = json_object();
    json_object_set_new(ev.content, "reason", json_string("redacted by the generator"));
    if (g->rv->redacts_in_content) {
        json_object_set_new(ev.content, "redacts", json_string(target));
    }
    ev.redacts = target;
    return emit_main(g, &ev, why);
}

apr_status_t mxf_genroom_run(mxf_genroom_t *g, mxf_genroom_out_fn *out, void *baton,
                             const char **why)
{
    apr_status_t status;

    if (g->ran) {
        *why = "the generator has already run";
        return APR_EINVAL;
    }
    g->ran = 1;
    g->out = out;
    g->baton = baton;
    if ((status = pipeline_start(g, why)) != APR_SUCCESS) {
        return pipeline_stop(g, status, why);
    }
    if ((status = setup(g, why)) != APR_SUCCESS) {
        return pipeline_stop(g, status, why);
    }
    while (g->emitted < g->o.events) {
        apr_uint64_t remaining = g->o.events - g->emitted;
        gev_t ev;

        if (g->o.branchiness > 0 && rnd_unit(g) < g->o.branchiness) {
            status = APR_EAGAIN;
            if (g->o.conflicts > 0 && rnd_unit(g) < g->o.conflicts) {
                status = conflict_branch(g, remaining, why);
            }
            if (status == APR_EAGAIN) {
                status = branch(g, remaining, why);
            }
            if (status == APR_SUCCESS) {
                continue;
            }
            if (status != APR_EAGAIN) {
                return pipeline_stop(g, status, why);
            }
        }
        if (g->o.redactions > 0 && g->ring_n > 0 && rnd_unit(g) < g->o.redactions) {
            status = redaction(g, why);
        }
        else {
            choose_main(g, &ev);
            status = emit_main(g, &ev, why);
        }
        if (status != APR_SUCCESS) {
            return pipeline_stop(g, status, why);
        }
    }
    apr_pool_clear(g->ep);
    return pipeline_stop(g, APR_SUCCESS, why);
}

json_t *mxf_genroom_summary(const mxf_genroom_t *g, apr_pool_t *p)
{
    json_t *sum = mxf_json_own(p, json_object());
    json_t *servers = json_array(), *tips = json_array(), *counts;
    int i;

    json_object_set_new(sum, "room_id", json_string(g->room_id));
    json_object_set_new(sum, "room_version", json_string(g->rv->id));
    json_object_set_new(sum, "seed",
                        json_string(apr_psprintf(p, "%" APR_UINT64_T_FMT, g->o.seed)));
    json_object_set_new(sum, "events", json_integer((json_int_t)g->emitted));
    for (i = 0; i < g->nservers; i++) {
        const mxf_signing_key_t *k = g->servers[i].key;

        json_array_append_new(servers,
                              json_pack("{s:s, s:s, s:s}", "server_name", g->servers[i].name,
                                        "key_id", k->key_id, "public_key",
                                        mxf_b64_encode(p, k->pk, sizeof(k->pk),
                                                       MXF_B64_STANDARD)));
    }
    json_object_set_new(sum, "servers", servers);
    json_object_set_new(sum, "creator", json_string(g->users[ADMIN].id));
    json_object_set_new(sum, "denied_server", json_string(DENIED_SERVER));
    if (g->sample_every == 0) {
        json_object_set_new(sum, "sampled", json_string("all"));
    }
    else {
        json_object_set_new(sum, "sampled",
                            json_string(apr_psprintf(p, "first %d, then every %"
                                                     APR_UINT64_T_FMT "th",
                                                     SAMPLE_HEAD, g->sample_every)));
        json_object_set_new(sum, "sample_every", json_integer((json_int_t)g->sample_every));
    }
    counts = json_deep_copy(g->counts);
    json_object_set_new(counts, "branches", json_integer((json_int_t)g->branches));
    json_object_set_new(counts, "merges", json_integer((json_int_t)g->merges));
    if (g->o.conflicts > 0) {
        json_object_set_new(counts, "conflicting_forks", json_integer((json_int_t)g->conflict_forks));
    }
    json_object_set_new(sum, "counts", counts);
    json_object_set_new(sum, "redacted", json_deep_copy(g->redacted));
    json_object_set_new(sum, "final_state", state_json(g, &g->st));
    for (i = 0; i < g->ntips; i++) {
        json_array_append_new(tips, json_string(g->tips[i].id));
    }
    json_object_set_new(sum, "forward_extremities", tips);
    json_object_set_new(sum, "max_depth", json_integer(g->max_depth));
    json_object_set_new(sum, "history_visibility",
                        json_string(hv_names[g->st.hv >= 0 ? g->st.hv : 0]));
    json_object_set_new(sum, "joined_servers", servers_with(g, &g->st, MS_JOIN));
    json_object_set_new(sum, "invited_servers", servers_with(g, &g->st, MS_INVITE));
    return sum;
}
