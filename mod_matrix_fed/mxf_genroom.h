/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * Generator of realistic, fully signed Matrix rooms, for tests and
 * benchmarks of the room store and importer (`matrix-fed gen-room`).
 *
 * Several homeservers "hs1.example" .. "hsS.example", each with its own
 * ed25519 key derived from the seed and its name, have users
 * "@userJ:hsK.example"; "@admin:hs1.example" creates the room (v12: the
 * room ID is the create event's reference hash; v1-v10: content.creator;
 * v11+: the sender is the creator), joins, and sends m.room.power_levels,
 * m.room.join_rules (public), m.room.history_visibility (shared) and an
 * m.room.server_acl (allow "*", deny "denied.example", which has no
 * members, no IP literals). Then, picked by a PRNG: messages, joins (public
 * room, or after an invite), leaves, invites by members with power >= the
 * invite level (50: the admin and promoted users), kicks, bans and unbans
 * by the admin, history visibility moving through shared -> invited ->
 * joined -> world_readable -> shared, power level changes (promote to 50 /
 * demote), join rule changes (public <-> invite), topic and name changes,
 * and m.room.redaction events by the admin redacting earlier messages
 * (v1-v10: top-level "redacts"; v11+: content.redacts).
 *
 * Every event passes the room version's authorization rules against the
 * state before it, and lists the auth events the spec's "auth events
 * selection" picks (create (not in v12), power levels, the sender's member
 * event, and for m.room.member the target's member event and, for join and
 * invite, the join rules). Depth = max(prev depths) + 1; origin_server_ts
 * grows by 100..2000 ms per event from a base derived from the seed.
 * "origin" is present in v1-v10 and omitted in v11+. v1/v2 PDUs carry
 * "event_id" ("$<random>:<sender's server>") and [id, {"sha256": ...}]
 * edges; v3+ PDUs never carry "event_id". Each event is hashed and signed
 * by the sender's server (invites also by the invitee's server).
 *
 * Concurrent branches: at each step, with probability "branchiness", two
 * different servers each send a chain of 1-3 events with the same
 * prev_events (the current tip, or both tips of an earlier fork, in which
 * case those first events are merges themselves), and the next event
 * merges them (prev_events = both tips). Branch events are written
 * interleaved (A1 B1 A2 ...), still in topological order.
 * Ordinary branches do not conflict in state: each side only sends
 * messages and its own server's users' joins and leaves, so the state
 * before the merge is the union of both sides (what state resolution gives
 * for that case).
 *
 * Conflicting branches (o->conflicts, room versions 2 and later): with that
 * probability a fork is a conflicting one instead. Side A's first event and
 * side B's first event are one of these pairs (the rest of each side is
 * messages), each authorised against the state before it on its own side:
 *   topic:  two users with the topic level, of the two servers, set the topic;
 *   power:  the admin changes power levels on both sides (different users);
 *   ban:    the admin bans a member of side B's server, who changes their
 *           member event (join -> join) on side B;
 *   join:   the admin makes the room invite-only, and a user of side B's
 *           server joins the (so far public) room on side B.
 * The state after the merge is then NOT the union: it is what state
 * resolution v2 / v2.1 gives for these pairs, predicted by the generator
 * from the rules (topic, power: the later event by origin_server_ts, then
 * event ID, wins; ban: the ban wins; join: the join rule wins and the user
 * keeps the membership it had before the fork). These predictions are
 * checked against the core's state resolution by the import tests; the
 * summary says how many conflicting forks there are ("counts":
 * "conflicts/<kind>").
 *
 * Same options and seed => byte-identical output, whatever o->threads. The
 * seed and the room version drive one PRNG (xoshiro256**), so rooms of two
 * versions made with one seed differ (room IDs included). Memory stays bounded:
 * events are written as they are made; only the current state, the tips
 * and a ring of recent messages (redaction targets) are kept.
 *
 * Output streams (see mxf_genroom_out_fn):
 *
 * MXF_GENROOM_OUT_ROOM ("room.jsonl"): one PDU per line, as the canonical
 * JSON of the complete federation-format event, in topological order.
 *
 * MXF_GENROOM_OUT_EXPECT ("expected.jsonl"): one JSON object per line for
 * every event of a room of at most MXF_GENROOM_SAMPLE_ALL events, or else
 * for a sample (the first 200 events and every k-th event after them,
 * about 2000 lines in all):
 *   {"i": index in room.jsonl (0-based),
 *    "event_id": "$...", "type": "...", "state_key": "..." (state events only),
 *    "sender": "@...", "depth": n, "origin_server_ts": n,
 *    "prev_events": ["$..."], "auth_events": ["$..."],
 *    "redacts": "$..." (m.room.redaction only),
 *    "history_visibility": the value in the state before the event
 *                          ("shared" before any m.room.history_visibility),
 *    "joined_servers": [servers with a joined member, state before the event],
 *    "invited_servers": [servers with an invited member, state before],
 *    "state_before": {"type|state_key": event_id, ...},
 *    "state_after":  {"type|state_key": event_id, ...}}
 * State before an event is the state after its prev event(s) (for a merge,
 * the union of both branches); state after differs only for state events.
 *
 * The summary (mxf_genroom_summary(), "expected.json"):
 *   {"room_id", "room_version", "seed" (decimal string), "events": N,
 *    "servers": [{"server_name", "key_id", "public_key"}],
 *    "creator": "@admin:hs1.example", "denied_server": "denied.example",
 *    "sampled": "all" | "first 200, then every <k>th", "sample_every": k
 *               (sampled rooms only; lines i < 200 and (i - 200) % k == 0),
 *    "counts": {"<type>": n, ..., "m.room.member/<membership>": n (own),
 *               "m.room.member/<membership>/other": n (invites, kicks, bans,
 *               unbans), "branches": forks with two non-empty sides,
 *               "merges": events with two prev_events},
 *    "redacted": {"<target event_id>": "<redaction event_id>"},
 *    "final_state": {"type|state_key": event_id}, "forward_extremities": [...],
 *    "max_depth": n, "history_visibility": final value,
 *    "joined_servers": [...], "invited_servers": [...]}   (final state)
 */
#ifndef mxf_genroom_h
#define mxf_genroom_h

#include <apr_pools.h>
#include <apr_errno.h>

#include "mxf_json.h"
#include "mxf_key.h"

/* Rooms up to this many events get per-event expectations for all events. */
#define MXF_GENROOM_SAMPLE_ALL 5000

/* Most servers / users per server accepted. */
#define MXF_GENROOM_MAX_SERVERS 64
#define MXF_GENROOM_MAX_USERS_PER_SERVER 1000

/* valid_until_ts of the generated key responses: 2100-01-01T00:00:00Z. */
#define MXF_GENROOM_KEYS_VALID_UNTIL 4102444800000LL

typedef struct mxf_genroom_opts {
    const char *room_version;   /* "1".."12"; default "10" */
    apr_uint64_t events;        /* PDUs in all, >= 6; default 1000 */
    int servers;                /* default 4 */
    int users_per_server;       /* default 5 (hs1 also has the admin) */
    double branchiness;         /* per-step probability of a fork; default 0.1 */
    double redactions;          /* per-step probability of a redaction; default 0.02 */
    apr_uint64_t seed;          /* default 1 */
    int threads;                /* signing threads (output is the same); 0: sign
                                   inline; default 2 */
    double conflicts;           /* per-fork probability of a conflicting fork (room
                                   versions 2+); default 0 */
} mxf_genroom_opts_t;

/* Fills @a o with the defaults above. */
void mxf_genroom_opts_default(mxf_genroom_opts_t *o);

typedef enum {
    MXF_GENROOM_OUT_ROOM = 0,   /* a PDU line */
    MXF_GENROOM_OUT_EXPECT      /* an expectation line */
} mxf_genroom_stream_t;

/*
 * Receives one line (@a len bytes, ending in "\n") of @a stream. A status
 * other than APR_SUCCESS stops the generator, which returns it.
 */
typedef apr_status_t mxf_genroom_out_fn(void *baton, mxf_genroom_stream_t stream,
                                        const char *data, apr_size_t len);

typedef struct mxf_genroom mxf_genroom_t;

/*
 * Checks @a o and sets up a generator in @a p: server names, users and
 * their keys (derived from the seed). APR_EINVAL with *why for bad options,
 * APR_ENOTIMPL for o->conflicts in room version 1 (its state resolution
 * algorithm is not predicted).
 */
apr_status_t mxf_genroom_create(apr_pool_t *p, const mxf_genroom_opts_t *o,
                                mxf_genroom_t **g, const char **why);

/*
 * Generates the room, handing each line to @a out (always from the calling
 * thread, in order). Call once. With o->threads > 0, worker threads sign
 * the events; @a p must not be used by another thread meanwhile. Scratch
 * memory is a subpool cleared per event.
 */
apr_status_t mxf_genroom_run(mxf_genroom_t *g, mxf_genroom_out_fn *out, void *baton,
                             const char **why);

/* The room ID (after the create event has been made, for v12). */
const char *mxf_genroom_room_id(const mxf_genroom_t *g);

/* Number of servers, and the name and signing key of server @a i (0-based). */
int mxf_genroom_server_count(const mxf_genroom_t *g);
const char *mxf_genroom_server_name(const mxf_genroom_t *g, int i);
const mxf_signing_key_t *mxf_genroom_server_key(const mxf_genroom_t *g, int i);

/* The summary object described above (after mxf_genroom_run()), owned by @a p. */
json_t *mxf_genroom_summary(const mxf_genroom_t *g, apr_pool_t *p);

/*
 * The deterministic signing key of @a server_name for @a seed: ed25519
 * seed = SHA-256("mxf-genroom key" NUL, seed as 8 big-endian bytes,
 * server_name); key version "a_" + 6 characters derived from it.
 */
apr_status_t mxf_genroom_derive_key(apr_pool_t *p, apr_uint64_t seed,
                                    const char *server_name,
                                    mxf_signing_key_t **key, const char **why);

/*
 * The /_matrix/key/v2/server response of @a server_name publishing @a key:
 * {server_name, verify_keys {key_id: {key}}, old_verify_keys {},
 * valid_until_ts}, signed by itself. Owned by @a p.
 */
apr_status_t mxf_genroom_key_response(apr_pool_t *p, const char *server_name,
                                      const mxf_signing_key_t *key,
                                      apr_int64_t valid_until_ts,
                                      json_t **out, const char **why);

#endif /* mxf_genroom_h */
