/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * The authorization rules of room versions 1 to 12 (spec: the
 * "Authorization rules" section of each room version page, and
 * server-server API "Auth events selection" and "Definitions").
 *
 * The rules are checked against a room state handed in as a lookup
 * function: for (type, state_key), the event in the state the event is
 * checked against (its auth events, the state before it, or the state
 * being built by state resolution). The checker reads nothing else, so
 * the same code serves every one of those checks.
 *
 * What differs between room versions is written in one table in
 * mxf_authrules.c (auth_rules[]), from the flags of mxf_roomver_t. In
 * short:
 *   v1, v2   m.room.redaction has its own rule (redact level, or the same
 *            event ID domain); m.room.aliases has its own rule.
 *   v3-v5    no redaction rule; m.room.aliases keeps its own rule.
 *   v6       no aliases rule; "notifications" power levels are checked.
 *   v7       knock membership and join rule; leave allowed from knock.
 *   v8, v9   restricted join rule and join_authorised_via_users_server.
 *   v10      knock_restricted; power levels must be integers (no strings).
 *   v11      the creator is the sender of m.room.create (no "creator").
 *   v12      creators (sender + additional_creators) have infinite power
 *            and cannot appear in power levels; m.room.create has no
 *            room_id and is never in auth_events: the room ID names it.
 *   v1-v5    power level values may be floats (truncated) or strings;
 *   v6-v9    strings, not floats.
 *
 * Not checked here (they are checks on receipt, before the auth rules):
 * signatures, including the join_authorised_via_users_server server's
 * signature (rule "4.2"/"5.2"; mxf_event_required_signers() requires it),
 * hashes, and the event format.
 *
 * Before v10 the rules require only the "users" values of a new
 * m.room.power_levels event to be integers (or integer strings); any other
 * level that is not (a top-level level, "events", "notifications") is read
 * as its default wherever it is used, as the reference homeserver reads it.
 *
 * State resolution (mxf_stateres.c) reads two places of the spec as the
 * reference homeserver does: a state event counts in the auth chain of its
 * own state, and the power events' auth chains are followed only through
 * events of the full conflicted set.
 */
#ifndef mxf_authrules_h
#define mxf_authrules_h

#include <apr_pools.h>
#include <apr_errno.h>
#include <apr_tables.h>

#include "mxf_json.h"
#include "mxf_roomver.h"

/* Status of an event the rules reject (with *why saying which rule). */
#define MXF_AUTH_REJECTED APR_EACCES

/*
 * The state an event is checked against: the event for (@a type,
 * @a state_key), or NULL if there is none. When @a event_id is not NULL,
 * set *event_id to the event's ID (needed for m.room.create: the creator's
 * first join must follow it directly). The returned PDU must stay valid
 * for the duration of the check.
 *
 * Room version 12: (m.room.create, "") must yield the room's create event
 * even though it is never among auth_events (its ID is the room ID with
 * "$" for "!"; mxf_auth_create_id() gives it).
 */
typedef const json_t *mxf_auth_state_fn(void *baton, const char *type,
                                        const char *state_key, const char **event_id);

/*
 * Checks @a event against the authorization rules of room version @a rv,
 * with the room state given by @a lookup / @a baton. Every rule that
 * depends on the state is checked, plus the rules on the event alone
 * (m.room.create: no prev_events, room ID / sender domains, known
 * room_version, creator / additional_creators). The rules on the
 * auth_events list itself are mxf_auth_check_auth_events().
 *
 * APR_SUCCESS if allowed; MXF_AUTH_REJECTED with *why (from @a p) naming
 * the rule otherwise. Malformed events (no type, sender not a string,
 * ...) are rejected too, never a crash.
 */
apr_status_t mxf_auth_check(apr_pool_t *p, const mxf_roomver_t *rv, const json_t *event,
                            mxf_auth_state_fn *lookup, void *baton, const char **why);

/* ------------------------------------------------------------------------
 * Auth events selection.
 */

/* A state key: (type, state_key). */
typedef struct mxf_auth_key {
    const char *type;
    const char *state_key;
} mxf_auth_key_t;

/*
 * The (type, state_key) pairs an event's auth_events are selected from
 * (server-server API "Auth events selection"): m.room.create (not in
 * v12), m.room.power_levels, the sender's m.room.member; for
 * m.room.member also the target's membership, m.room.join_rules for
 * join / invite / knock, the m.room.third_party_invite of
 * content.third_party_invite.signed.token for a third-party invite, and
 * for a join with join_authorised_via_users_server (v8+) that user's
 * membership. Empty for m.room.create. An array of mxf_auth_key_t from
 * @a p, without duplicates.
 */
apr_array_header_t *mxf_auth_selection(apr_pool_t *p, const mxf_roomver_t *rv,
                                       const json_t *event);

/*
 * The rules on an event's auth_events (v1-v11 rule 2, v12 rule 3):
 * @a auth (@a nauth PDUs, the events its auth_events name, in any order)
 * hold no two events with the same (type, state_key), only keys from
 * mxf_auth_selection(), an m.room.create (v1-v11; never in v12), and only
 * events of the same room. Whether an auth event was rejected is the
 * caller's to know. APR_SUCCESS or MXF_AUTH_REJECTED with *why.
 */
apr_status_t mxf_auth_check_auth_events(apr_pool_t *p, const mxf_roomver_t *rv,
                                        const json_t *event, const json_t *const *auth,
                                        apr_size_t nauth, const char **why);

/* ------------------------------------------------------------------------
 * Helpers shared with state resolution.
 */

/*
 * The event IDs listed in @a pdu's "prev_events" or "auth_events"
 * (@a field), plain strings or [id, hashes] pairs (v1, v2). An array of
 * const char * from @a p; entries that are neither are skipped.
 */
apr_array_header_t *mxf_auth_event_refs(apr_pool_t *p, const json_t *pdu, const char *field);

/* v12: the create event ID of room @a room_id ("!x" -> "$x"); NULL if not a "!" ID. */
const char *mxf_auth_create_id(apr_pool_t *p, const char *room_id);

/*
 * Whether @a event is a "power event" (state resolution v2): a state
 * event of type m.room.power_levels or m.room.join_rules, or an
 * m.room.member kick or ban (membership leave or ban, sender != state_key).
 */
int mxf_auth_is_power_event(const json_t *event);

/* A power level: a number, or infinite (v12 creators). */
typedef struct mxf_auth_level {
    apr_int64_t value;
    int infinite;
} mxf_auth_level_t;

/*
 * The power level of @a user_id in a state with power levels event
 * @a pl (NULL if none) and create event @a create (NULL if unknown):
 * infinite for v12 creators; users[user] or users_default (0) when @a pl
 * exists; else 100 for the creator (content.creator before v11, the
 * create event's sender from v11) and 0 for everyone else.
 */
mxf_auth_level_t mxf_auth_user_level(const mxf_roomver_t *rv, const json_t *pl,
                                     const json_t *create, const char *user_id);

/* -1, 0, 1 as @a a is below, equal to or above @a b. */
int mxf_auth_level_cmp(mxf_auth_level_t a, mxf_auth_level_t b);

#endif /* mxf_authrules_h */
