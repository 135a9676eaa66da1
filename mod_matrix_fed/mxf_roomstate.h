/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * Room state for the importer: the state before and after each event, kept
 * as a tree of deltas in memory and written as state groups (a delta over
 * the parent group, or a full snapshot every MXF_RS_CHAIN_MAX groups), with
 * the visibility stretch of each state (history visibility and the servers
 * with joined / invited members).
 *
 * Merging the states of several prev_events: the keys whose values may
 * differ are found from what the branches changed since they forked (their
 * nearest common ancestor in the delta tree), so states that agree cost in
 * proportion to those changes, not to the size of the room's state. States
 * that differ in any key are resolved by the resolver the caller sets
 * (mxf_rs_set_resolver(): the room version's state resolution), which gets
 * the full maps; the result is stored as a delta over the first state (a
 * key it removes forces a full snapshot in the database, which stores no
 * removals). States loaded from the database have no common ancestor in
 * memory and are compared in full.
 *
 * Part of the matrix-fed tool (it reads and writes through libpq).
 */
#ifndef mxf_roomstate_h
#define mxf_roomstate_h

#include <apr_pools.h>
#include <apr_tables.h>
#include <libpq-fe.h>

#include "mxf_cmd_pg.h"
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
    const char *event_id;       /* the event's ID */
    const char *membership;     /* m.room.member: content.membership */
    const char *sender;         /* the event's sender */
    json_t *content;            /* content (kept for the types the engine reads) */
} mxf_rs_value_t;

/*
 * The merge of states that differ, set by the caller (the importer runs
 * the room version's state resolution):
 *   resolve: @a n full maps (mxf_sr_key() keys, "type" NUL "state_key",
 *            values const char * event IDs) -> *out, a map of the same
 *            kind from @a p; APR_SUCCESS or a status with *why.
 *   value_of: fills *v for @a event_id (an event of the result that is in
 *            none of the merged states); 0 if unknown.
 */
typedef struct mxf_rs_resolver {
    apr_status_t (*resolve)(void *baton, apr_pool_t *p, mxf_rs_room_t *room,
                            apr_hash_t *const *maps, int n, apr_hash_t **out,
                            const char **why);
    int (*value_of)(void *baton, mxf_rs_room_t *room, const char *event_id,
                    mxf_rs_value_t *v);
    void *baton;
} mxf_rs_resolver_t;

/* Sets the resolver (copied); without one, a merge of states that differ fails. */
void mxf_rs_set_resolver(mxf_rs_ctx_t *ctx, const mxf_rs_resolver_t *r);

/* The room's version and number. */
const mxf_roomver_t *mxf_rs_room_version(const mxf_rs_room_t *room);
apr_int64_t mxf_rs_room_nid(const mxf_rs_room_t *room);

/* Merges that needed the resolver, and the keys that differed in them. */
void mxf_rs_merge_stats(const mxf_rs_ctx_t *ctx, long *resolved, long *differing_keys);

/* Whether the engine keeps the content of state events of @a type (it reads them). */
int mxf_rs_keeps_content(const char *type);

/* Reads the next free group and visibility numbers. NULL (reported) on error. */
mxf_rs_ctx_t *mxf_rs_create(apr_pool_t *p, PGconn *conn);

mxf_rs_room_t *mxf_rs_room(mxf_rs_ctx_t *ctx, apr_int64_t room_nid, const mxf_roomver_t *rv);

/* The empty state (before a room's m.room.create). */
mxf_rs_state_t *mxf_rs_empty(mxf_rs_ctx_t *ctx, mxf_rs_room_t *room);

/*
 * A state group already in the database, its events' content as processed
 * (redacted where the content hash did not match); NULL (reported) on error.
 */
mxf_rs_state_t *mxf_rs_load(mxf_rs_ctx_t *ctx, mxf_rs_room_t *room, apr_int64_t group_id);

/* A state of this run or one loaded before, by its group number; NULL if none. */
mxf_rs_state_t *mxf_rs_find(mxf_rs_ctx_t *ctx, mxf_rs_room_t *room, apr_int64_t group_id);

/* The state with (@a type, @a state_key) set to @a v (copied; v->nid must not be 0). */
mxf_rs_state_t *mxf_rs_apply(mxf_rs_ctx_t *ctx, mxf_rs_room_t *room, mxf_rs_state_t *before,
                             const char *type, const char *state_key,
                             const mxf_rs_value_t *v);

/*
 * The state with the @a n entries (@a types[i], @a state_keys[i]) set to
 * @a values[i] (copied; nid not 0; a later entry for the same key wins), in
 * one step: a state given whole, such as a /send_join answer's.
 */
mxf_rs_state_t *mxf_rs_apply_many(mxf_rs_ctx_t *ctx, mxf_rs_room_t *room,
                                  mxf_rs_state_t *before, int n, const char *const *types,
                                  const char *const *state_keys,
                                  const mxf_rs_value_t *const *values);

/*
 * The merge of @a states (mxf_rs_state_t *): the common state when they
 * agree, else the resolver's result. The same set of states always gives
 * the same state object. NULL with *why when the resolver fails (or there
 * is none).
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

/* COPY rows of state groups, their entries and visibility records. */
typedef struct mxf_rs_rows {
    mxf_copy_t groups, entries, vis;
} mxf_rs_rows_t;

/*
 * Takes the queued groups and visibility rows as COPY data in @a p
 * (empty when nothing is queued), so that they can be written later,
 * from another thread, by mxf_rs_write_rows() (which touches no state of
 * @a ctx). mxf_rs_flush() is take + write.
 */
void mxf_rs_take_rows(mxf_rs_ctx_t *ctx, apr_pool_t *p, mxf_rs_rows_t *rows);

/* Writes rows taken by mxf_rs_take_rows(). 0 (reported) on error. */
int mxf_rs_write_rows(PGconn *conn, const mxf_rs_rows_t *rows);

#endif /* mxf_roomstate_h */
