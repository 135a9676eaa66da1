/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * Room versions 1 to 12 (spec: /rooms/v1 ... /rooms/v12): one table of
 * what each version changes that matters for reading, serving and
 * verifying events. Room version strings are opaque; an unknown one is an
 * error, never a guess at the nearest known version.
 */
#ifndef mxf_roomver_h
#define mxf_roomver_h

#include <apr_pools.h>

/* How an event's ID is obtained. */
typedef enum {
    MXF_EVID_CARRIED = 1,  /* v1, v2: "$opaque:server", chosen by the sender, in the PDU's event_id */
    MXF_EVID_HASH_STD,     /* v3: "$" + standard unpadded base64 of the reference hash */
    MXF_EVID_HASH_URLSAFE  /* v4+: "$" + URL-safe unpadded base64 of the reference hash */
} mxf_evid_format_t;

/*
 * Redaction algorithm variants, named by the first room version using each:
 *  V1:  v1-v5.  Keeps origin, membership, prev_state at the top level;
 *       m.room.aliases keeps "aliases".
 *  V6:  v6, v7. The m.room.aliases special case is gone.
 *  V8:  v8.     m.room.join_rules also keeps "allow".
 *  V9:  v9, v10. m.room.member also keeps "join_authorised_via_users_server".
 *  V11: v11, v12. origin, membership and prev_state are no longer kept;
 *       m.room.create keeps all of its content; power_levels keeps
 *       "invite"; m.room.redaction keeps "redacts"; m.room.member keeps
 *       third_party_invite reduced to its "signed" key.
 */
typedef enum {
    MXF_REDACT_V1 = 1,
    MXF_REDACT_V6,
    MXF_REDACT_V8,
    MXF_REDACT_V9,
    MXF_REDACT_V11
} mxf_redact_algo_t;

/* State resolution algorithm. */
typedef enum {
    MXF_STATERES_V1 = 1,   /* v1 */
    MXF_STATERES_V2,       /* v2 - v11 */
    MXF_STATERES_V2_1      /* v12: v2 amended (conflicted state subgraph, creators) */
} mxf_stateres_t;

typedef struct mxf_roomver {
    const char *id;                    /* "1" ... "12" */
    mxf_evid_format_t event_id_format;
    mxf_redact_algo_t redaction;
    mxf_stateres_t state_res;
    /* prev_events/auth_events are [event_id, {"sha256": ...}] pairs (v1, v2),
     * not plain lists of event IDs. */
    unsigned int ref_pairs:1;
    /* Canonical JSON is enforced: integers only, within +-(2^53 - 1) (v6+).
     * Callers parse with MXF_JSON_STRICT_INTS when set. */
    unsigned int strict_canonical_json:1;
    /* A signing key's valid_until_ts is enforced for events (v5+). */
    unsigned int enforce_key_validity:1;
    /* Redaction events are subject to auth rule 11 (v1, v2); from v3 on
     * they follow the "handling redactions" rules instead. */
    unsigned int redaction_auth_rule:1;
    /* m.room.aliases has its own auth rule (v1 - v5). */
    unsigned int aliases_auth_rule:1;
    /* The power-level "notifications" key is checked by the auth rules (v6+). */
    unsigned int notifications_pl_auth:1;
    /* "knock" membership and join rule (v7+). */
    unsigned int knock:1;
    /* "restricted" join rule and join_authorised_via_users_server (v8+). */
    unsigned int restricted:1;
    /* "knock_restricted" join rule (v10+). */
    unsigned int knock_restricted:1;
    /* Power-level values must be integers, not strings (v10+). */
    unsigned int int_power_levels:1;
    /* m.room.redaction carries "redacts" in content, not at the top level (v11+). */
    unsigned int redacts_in_content:1;
    /* New m.room.create events have no "creator"; the sender is the creator (v11+). */
    unsigned int implicit_creator:1;
    /* Room ID = "!" + URL-safe reference hash of the m.room.create event,
     * without a server part; the create event carries no room_id, is not
     * listed in auth_events, and its sender plus additional_creators have
     * infinite power (v12+). */
    unsigned int room_id_is_create_hash:1;
    /* The 255-byte limits of sender, room_id, event_id, type and state_key
     * were long enforced in code points by the reference homeserver, so
     * rooms hold events within 255 code points but over 255 bytes: such an
     * event is kept and rejected, not dropped, so that the room's history
     * stays whole (v1 - v10; later versions drop it, as the reference
     * homeserver and the spec do). */
    unsigned int lenient_byte_limits:1;
    /* Maximum depth: 2^63 - 1 (v1 - v5) or 2^53 - 1 (v6+). */
    long long max_depth;
} mxf_roomver_t;

/* The version @a id ("1".."12"), or NULL if it is not one this code knows. */
const mxf_roomver_t *mxf_roomver_get(const char *id);

/*
 * As mxf_roomver_get(), and on NULL sets *why (from @a p) to a message
 * naming the unsupported version (safely quoted and truncated).
 */
const mxf_roomver_t *mxf_roomver_lookup(apr_pool_t *p, const char *id, const char **why);

/* The known versions, in order; *count receives their number. */
const mxf_roomver_t *mxf_roomver_all(apr_size_t *count);

/*
 * Whether @a id has the grammar of a room version string: 1 to 32
 * characters of [a-z0-9.-] (known or not).
 */
int mxf_roomver_id_valid(const char *id);

#endif /* mxf_roomver_h */
