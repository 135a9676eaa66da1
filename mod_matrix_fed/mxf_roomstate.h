/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * Room state for the importer: the state before and after each event, kept
 * as a tree of deltas in memory and written as state groups (a delta over
 * the parent group, or a full snapshot every MXF_RS_CHAIN_MAX groups), with
 * the visibility stretch of each state (history visibility and the servers
 * with joined / invited members).
 *
 * Merging the states of several prev_events costs in proportion to what the
 * branches changed since they forked, not to the size of the room's state.
 * Branches that set the same (type, state_key) to different events are a
 * conflict: without state resolution the merge fails and says which key.
 * States loaded from the database have no common ancestor in memory; for
 * those, a key whose values differ takes the value whose history (the
 * chain of values it replaced, read from the database where needed)
 * holds the other one, and is a conflict otherwise.
 *
 * Part of the matrix-fed tool (it reads and writes through libpq).
 */
#ifndef mxf_roomstate_h
#define mxf_roomstate_h

#include <apr_pools.h>
#include <apr_tables.h>
#include <libpq-fe.h>

#include "mxf_json.h"
#include "mxf_roomver.h"

/* Longest run of delta groups in the database before a full snapshot. */
#define MXF_RS_CHAIN_MAX 64

typedef struct mxf_rs_ctx mxf_rs_ctx_t;
typedef struct mxf_rs_room mxf_rs_room_t;
typedef struct mxf_rs_state mxf_rs_state_t;

/* What the state engine keeps of a state event. */
typedef struct mxf_rs_value {
    apr_int64_t nid;            /* the event's number */
    const char *membership;     /* m.room.member: content.membership */
    const char *sender;         /* the event's sender */
    json_t *content;            /* content (kept for the types the engine reads) */
    /* Set by the engine: the value this one replaced in the state before
     * its event (NULL: the key was unset), or from_db when that history is
     * in the database (values of states loaded from it). */
    const struct mxf_rs_value *replaced;
    int from_db;
} mxf_rs_value_t;

/* Whether the engine keeps the content of state events of @a type (it reads them). */
int mxf_rs_keeps_content(const char *type);

/* Reads the next free group and visibility numbers. NULL (reported) on error. */
mxf_rs_ctx_t *mxf_rs_create(apr_pool_t *p, PGconn *conn);

mxf_rs_room_t *mxf_rs_room(mxf_rs_ctx_t *ctx, apr_int64_t room_nid, const mxf_roomver_t *rv);

/* The empty state (before a room's m.room.create). */
mxf_rs_state_t *mxf_rs_empty(mxf_rs_ctx_t *ctx, mxf_rs_room_t *room);

/* A state group already in the database; NULL (reported) on error. */
mxf_rs_state_t *mxf_rs_load(mxf_rs_ctx_t *ctx, mxf_rs_room_t *room, apr_int64_t group_id);

/* A state of this run or one loaded before, by its group number; NULL if none. */
mxf_rs_state_t *mxf_rs_find(mxf_rs_ctx_t *ctx, mxf_rs_room_t *room, apr_int64_t group_id);

/* The state with (@a type, @a state_key) set to @a v (copied). */
mxf_rs_state_t *mxf_rs_apply(mxf_rs_ctx_t *ctx, mxf_rs_room_t *room, mxf_rs_state_t *before,
                             const char *type, const char *state_key,
                             const mxf_rs_value_t *v);

/*
 * The merge of @a states (mxf_rs_state_t *). NULL with *why naming the
 * conflicting key and events when branches disagree.
 */
mxf_rs_state_t *mxf_rs_merge(mxf_rs_ctx_t *ctx, mxf_rs_room_t *room,
                             apr_array_header_t *states, const char **why);

/* The value of (@a type, @a state_key) in @a s, or NULL. */
const mxf_rs_value_t *mxf_rs_get(const mxf_rs_state_t *s, const char *type,
                                 const char *state_key);

/* The state's group number, assigning one (and queueing the group) if needed. */
apr_int64_t mxf_rs_state_id(mxf_rs_ctx_t *ctx, mxf_rs_state_t *s);

/* The number of the state's visibility stretch, assigning one if needed. */
apr_int64_t mxf_rs_vis_id(mxf_rs_ctx_t *ctx, mxf_rs_state_t *s);

/* Whether history in @a s is "invited" or "joined" (some servers see redacted copies). */
int mxf_rs_vis_restricted(const mxf_rs_state_t *s);

/*
 * Whether @a user's power level in @a s reaches the level of @a action
 * (a top-level power_levels key such as "redact"; @a dflt when absent).
 */
int mxf_rs_power_at_least(const mxf_rs_state_t *s, const char *user, const char *action,
                          long dflt);

/* Writes the queued groups and visibility rows. 0 (reported) on error. */
int mxf_rs_flush(mxf_rs_ctx_t *ctx, PGconn *conn);

#endif /* mxf_roomstate_h */
