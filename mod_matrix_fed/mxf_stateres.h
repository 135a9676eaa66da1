/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * State resolution (spec: room versions 1, 2 and 12, "State resolution"):
 *   - v1's algorithm for room version 1;
 *   - v2 for room versions 2 to 11: unconflicted state map and conflicted
 *     state set, auth difference, power events sorted by the reverse
 *     topological power ordering, iterative auth checks from the
 *     unconflicted state, the other events by mainline ordering, then the
 *     unconflicted state on top;
 *   - v2.1 for room version 12: v2 with the conflicted state subgraph in the
 *     full conflicted set, and the first iterative auth checks starting from
 *     the empty state.
 *
 * Storage is the caller's: states come in as maps (type, state_key) ->
 * event ID (apr_hash_t built with mxf_sr_set(), keys from mxf_sr_key()),
 * events through a provider callback. The importer's merge is:
 *
 *     states[i] = the state after prev_events[i]
 *     mxf_stateres_resolve(p, rv, room_id, states, n, &provider, &before, NULL, &why)
 *
 * Cost. Splitting the states costs one hash look-up per entry. The auth
 * chains are walked from the conflicted events downwards, in descending
 * order of a sequence number the provider gives (seq(a) < seq(e) for every
 * auth event a of e: the order events were stored in satisfies it, since an
 * event is stored after its auth events).
 *   - With the children callback, the walk starts at the conflicted events
 *     only and stops at every event in the auth chain of the unconflicted
 *     state U (such an event, and all below it, is in every state's chain):
 *     whether an event x is in it is answered by looking upwards, through
 *     the events citing x, for an event of U (nearly always a step or two:
 *     the next event of the same user or the power levels that replaced
 *     x). The cost then follows the conflict: the events since the fork,
 *     however old the conflicted values are. If the provider cannot list
 *     some children, or an upward search grows large, the resolution falls
 *     back to the walk below (same result).
 *   - Without it, the walk starts at every state event and stops as soon as
 *     every event still to visit is in the auth chain of every state (then
 *     nothing below it can be in the auth difference): it visits the events
 *     since the oldest conflicted value. Unconflicted events are fetched
 *     only when the walk reaches their sequence number.
 *   - Without a sequence callback the whole auth ancestry of the states is
 *     walked once to number it.
 *
 * Interpretations where the spec text leaves room (as Synapse, the
 * reference implementation, does):
 *   - "auth chain of P which also belong to the full conflicted set" and
 *     the ordering's DAG follow auth_events edges between events of the
 *     full conflicted set only;
 *   - the auth chain difference counts each state's own events as part of
 *     its auth chain (the spec's words, "the union of the auth chains for
 *     each event", read literally leave them out; counting them also keeps
 *     unconflicted state events out of the difference, and in room version
 *     12 the two readings can resolve differently: the reference homeserver
 *     counts them, and so does this code);
 *   - events the provider does not know are left out of the full
 *     conflicted set; rejected events are re-checked like any other but
 *     never used as auth events (spec "Rejected events");
 *   - v1: a key missing from some states is not a conflict; the member
 *     conflicts are each resolved against the state after the join-rules
 *     pass (not against one another); among other conflicts, if none
 *     passes auth, the last in the order is taken.
 */
#ifndef mxf_stateres_h
#define mxf_stateres_h

#include <apr_pools.h>
#include <apr_errno.h>
#include <apr_hash.h>

#include "mxf_json.h"
#include "mxf_roomver.h"

/* ------------------------------------------------------------------------
 * State maps: apr_hash_t, key = type NUL state_key (see mxf_sr_key()),
 * value = const char *event_id.
 */

/* The map key of (@a type, @a state_key), from @a p; *klen its length. */
const char *mxf_sr_key(apr_pool_t *p, const char *type, const char *state_key,
                       apr_ssize_t *klen);

/* The type and state_key of map key @a key of length @a klen (pointers into it). */
void mxf_sr_key_split(const void *key, apr_ssize_t klen, const char **type,
                      const char **state_key);

/* Sets (@a type, @a state_key) -> @a event_id; the key is copied into @a p, the ID is not. */
void mxf_sr_set(apr_pool_t *p, apr_hash_t *state, const char *type, const char *state_key,
                const char *event_id);

/* The event ID at (@a type, @a state_key), or NULL. */
const char *mxf_sr_get(apr_hash_t *state, const char *type, const char *state_key);

/* ------------------------------------------------------------------------
 * The event provider.
 */

/*
 * The PDU of @a event_id (parsed, with type, state_key, sender, content,
 * auth_events, origin_server_ts, depth, room_id), or NULL if unknown. Sets
 * *rejected to 1 if the event was rejected (it is then never used as an
 * auth event). The PDU must stay valid for the duration of the resolution.
 */
typedef const json_t *mxf_sr_event_fn(void *baton, const char *event_id, int *rejected);

/*
 * A number that grows along auth edges: for every auth event a of e,
 * seq(a) < seq(e). -1 for an unknown event. Optional (see "Cost" above).
 */
typedef apr_int64_t mxf_sr_seq_fn(void *baton, const char *event_id);

/*
 * The state events whose auth_events cite @a event_id (*n of them), or
 * NULL if the provider cannot list them all. Optional; with seq it lets the
 * auth difference stop at the unconflicted state (see "Cost" above).
 */
typedef const char *const *mxf_sr_children_fn(void *baton, const char *event_id, int *n);

typedef struct mxf_sr_provider {
    mxf_sr_event_fn *get_event;   /* required */
    mxf_sr_seq_fn *seq;           /* optional */
    mxf_sr_children_fn *children; /* optional, used with seq */
    /* Events with seq >= seq_limit cannot be in the states (0: no limit). */
    apr_int64_t seq_limit;
    void *baton;
} mxf_sr_provider_t;

/* What one resolution did (for tests and benchmarks). */
typedef struct mxf_sr_stats {
    apr_size_t conflicted_keys;
    apr_size_t conflicted_events;   /* the conflicted state set */
    apr_size_t auth_difference;
    apr_size_t subgraph;            /* v2.1: the conflicted state subgraph */
    apr_size_t full_conflicted;     /* the full conflicted set */
    apr_size_t power_events;        /* sorted by the reverse topological power ordering */
    apr_size_t fetched;             /* events fetched from the provider */
    int walked_all;                 /* the auth difference walked from every state event */
} mxf_sr_stats_t;

/*
 * Resolves the @a nstates states @a states (maps as above) of room
 * @a room_id in room version @a rv. On success *out is a new map (from
 * @a p; event ID strings are shared with the inputs). @a room_id may be
 * NULL except in room version 12, where it names the create event. @a stats
 * (optional) receives counts. Any number of states is taken (the
 * forward extremities of a room can be hundreds). APR_EINVAL with *why for
 * no provider; an auth failure is never an error.
 */
apr_status_t mxf_stateres_resolve(apr_pool_t *p, const mxf_roomver_t *rv, const char *room_id,
                                  apr_hash_t *const *states, int nstates,
                                  const mxf_sr_provider_t *prov, apr_hash_t **out,
                                  mxf_sr_stats_t *stats, const char **why);

#endif /* mxf_stateres_h */
