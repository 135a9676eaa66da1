/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * Events (PDUs): content hashes, the redaction algorithm, reference hashes
 * and event IDs, v12 room IDs, signing and signature checks, size limits.
 * Spec: server-server API "Signing Events", "Validating hashes and
 * signatures on received events", "Calculating the reference hash",
 * "Calculating the content hash"; client-server API "Redactions" and
 * "Size limits"; the room version pages for what changes per version.
 *
 * PDUs are jansson objects as parsed from the wire (see mxf_json_parse();
 * room versions 6+ with MXF_JSON_STRICT_INTS). Nothing here modifies its
 * input except mxf_event_sign(). Results are allocated from, or owned by,
 * the pool passed in.
 */
#ifndef mxf_event_h
#define mxf_event_h

#include <apr_pools.h>
#include <apr_errno.h>
#include <apr_tables.h>

#include "mxf_json.h"
#include "mxf_key.h"
#include "mxf_roomver.h"
#include "mxf_sign.h"   /* MXF_SHA256_BYTES, MXF_SIG_* */

/* Largest PDU: canonical JSON of the complete federation-format event. */
#define MXF_EVENT_MAX_BYTES 65536
/* Per-key caps (bytes) for type and state_key. */
#define MXF_EVENT_MAX_KEY_BYTES 255
/* Most prev_events / auth_events a PDU may list. */
#define MXF_EVENT_MAX_PREV_EVENTS 20
#define MXF_EVENT_MAX_AUTH_EVENTS 10

/* ------------------------------------------------------------------------
 * Content hash: SHA-256 of the canonical JSON of the event without
 * "unsigned", "signatures" and "hashes" (the unredacted event; in v1/v2 that
 * includes "event_id"), nor the top-level "age_ts", "outlier" and
 * "destinations" that old servers added after hashing (left out by the
 * reference homeserver and gomatrixserverlib alike).
 *
 * Number encoding, here and for every hash or signature below: in rooms
 * with strict canonical JSON (v6+) a real or an integer beyond +-(2^53-1)
 * makes it fail. Otherwise (v1-v5, or @a rv NULL) such numbers are
 * encoded as Python's canonicaljson writes them (MXF_CANON_PYTHON_FLOATS:
 * big integers as they are, reals via repr(), e.g. 50.0 stays "50.0"),
 * since the hashes and signatures of legacy events were made that way.
 */
apr_status_t mxf_event_content_hash(apr_pool_t *p, const json_t *pdu,
                                    const mxf_roomver_t *rv,
                                    unsigned char hash[MXF_SHA256_BYTES],
                                    const char **why);

/* The content hash as standard unpadded base64 (the hashes.sha256 value); NULL and *why on failure. */
const char *mxf_event_content_hash_b64(apr_pool_t *p, const json_t *pdu,
                                       const mxf_roomver_t *rv, const char **why);

/*
 * Checks hashes.sha256 against the computed content hash. APR_SUCCESS on a
 * match; APR_EMISMATCH (*why says so) on a mismatch, which per the spec means
 * the event must be replaced by its redacted form (also when hashes.sha256
 * is a string but not base64 of 32 bytes, in either alphabet); APR_EINVAL
 * when hashes or hashes.sha256 is missing or not a string, or the event
 * cannot be encoded.
 */
apr_status_t mxf_event_check_content_hash(apr_pool_t *p, const json_t *pdu,
                                          const mxf_roomver_t *rv, const char **why);

/* ------------------------------------------------------------------------
 * Redaction.
 *
 * A new object (a deep copy, owned by @a p) holding only what the room
 * version's redaction algorithm keeps: the protected top-level keys
 * (event_id, type, room_id, sender, state_key, content, hashes, signatures,
 * depth, prev_events, auth_events, origin_server_ts; plus origin,
 * membership and prev_state before v11) and, inside an object "content",
 * only the keys protected for the event type in that version. "hashes" and
 * "signatures" are kept; "unsigned" is not. This is the form that is
 * signed (less "signatures"), hashed for the reference hash, and served
 * for redacted events. A "content" that is not an object is kept as it is
 * (such an event fails format checks anyway). Returns NULL only on
 * allocation failure or if @a pdu is not an object.
 */
json_t *mxf_event_redact(apr_pool_t *p, const json_t *pdu, const mxf_roomver_t *rv);

/* ------------------------------------------------------------------------
 * Reference hash and event IDs.
 */

/*
 * The redacted event without "signatures" (and without "unsigned" and
 * "age_ts", which redaction already drops): the object whose canonical JSON
 * is the reference hash input. Owned by @a p. Its members and the members
 * of its "content" are @a pdu's own values (shared, not copied): add or
 * remove members of the object and of its "content", change nothing below.
 */
json_t *mxf_event_reference_input(apr_pool_t *p, const json_t *pdu, const mxf_roomver_t *rv);

/* SHA-256 of the canonical JSON of mxf_event_reference_input(). */
apr_status_t mxf_event_reference_hash(apr_pool_t *p, const json_t *pdu,
                                      const mxf_roomver_t *rv,
                                      unsigned char hash[MXF_SHA256_BYTES],
                                      const char **why);

/*
 * The event ID of @a pdu in room version @a rv: v1/v2 the "event_id" field,
 * validated as "$opaque:server"; v3 "$" + standard unpadded base64 of the
 * reference hash; v4+ "$" + URL-safe unpadded base64. A v3+ PDU that
 * carries an "event_id" key gets the hash-derived ID all the same (the key
 * is protected, so it is part of the hash). NULL with *why on failure.
 */
const char *mxf_event_id_compute(apr_pool_t *p, const json_t *pdu,
                                 const mxf_roomver_t *rv, const char **why);

/*
 * The room ID that a v12+ m.room.create event defines: "!" + URL-safe
 * unpadded base64 of its reference hash. Fails (NULL, *why) unless @a rv
 * has room_id_is_create_hash and @a create is an m.room.create event with
 * state_key "" and no "room_id".
 */
const char *mxf_event_room_id_from_create(apr_pool_t *p, const json_t *create,
                                          const mxf_roomver_t *rv, const char **why);

/* ------------------------------------------------------------------------
 * Signatures.
 */

/*
 * The servers that must have signed @a pdu (spec: "Validating hashes and
 * signatures on received events"), as an array of const char *, without
 * duplicates, into *servers:
 *   - the server of "sender", except for third-party invites
 *     (m.room.member, membership "invite", content.third_party_invite an
 *     object), whose sender is checked against the invite by the auth rules
 *     instead;
 *   - v1/v2: the server of "event_id" when it differs;
 *   - rooms with restricted joins (v8+): for an m.room.member join whose
 *     content has "join_authorised_via_users_server", that user's server
 *     (an auth-rule requirement, checked here with the others).
 * APR_EINVAL with *why if a needed ID is missing or malformed. The array
 * can be empty (a third-party invite in v3+).
 */
apr_status_t mxf_event_required_signers(apr_pool_t *p, const json_t *pdu,
                                        const mxf_roomver_t *rv,
                                        apr_array_header_t **servers,
                                        const char **why);

/*
 * Key lookup for mxf_event_verify_signatures(): copy the Ed25519 public
 * key of (@a server_name, @a key_id) into @a pk and return APR_SUCCESS;
 * return APR_NOTFOUND if the key is unknown, or known to have expired
 * before @a origin_server_ts (or, where the room version enforces it,
 * valid_until_ts < origin_server_ts): such signatures are skipped. Any
 * other status is an error (e.g. the key store failed) that fails the
 * check. @a p is a scratch pool.
 */
typedef apr_status_t mxf_event_key_lookup_cb(void *baton, apr_pool_t *p,
                                             const char *server_name,
                                             const char *key_id,
                                             apr_int64_t origin_server_ts,
                                             const mxf_roomver_t *rv,
                                             unsigned char pk[MXF_ED25519_PK_BYTES]);

/*
 * Checks the signatures of @a pdu over its redacted form ("Checking for a
 * signature"): for every required server, signatures[server] must exist,
 * hold at least one "ed25519:" key ID whose key @a lookup knows, and every
 * such known key's signature must verify. Key IDs of other algorithms and
 * unknown keys are skipped; signatures of servers that are not required
 * (e.g. policy servers) are ignored. Succeeds whether @a pdu is the full
 * event or a redacted copy.
 *
 * APR_SUCCESS if all hold; otherwise *why names the server (and key):
 * MXF_SIG_MISSING when a required server has no signature by a known key,
 * MXF_SIG_BAD when a signature does not verify, MXF_SIG_MALFORMED
 * (APR_EINVAL) for a malformed event or signature; a lookup error status
 * is passed on.
 */
apr_status_t mxf_event_verify_signatures(apr_pool_t *p, const json_t *pdu,
                                         const mxf_roomver_t *rv,
                                         mxf_event_key_lookup_cb *lookup,
                                         void *baton, const char **why);

/*
 * Hashes and signs @a pdu in place (spec: "Adding hashes and signatures to
 * outgoing events"): sets hashes.sha256 to the content hash, signs the
 * redacted form as @a server_name with @a key, and stores the signature
 * in pdu.signatures[server_name][key->key_id] (other signatures kept; the
 * "signatures" object is replaced by a modified copy). "unsigned" and all
 * other keys are left as they are.
 */
apr_status_t mxf_event_sign(apr_pool_t *p, json_t *pdu, const mxf_roomver_t *rv,
                            const char *server_name, const mxf_signing_key_t *key,
                            const char **why);

/* ------------------------------------------------------------------------
 * Size limits (client-server API "Size limits").
 */

/* Backfill responses are exempt from the prev_events/auth_events counts. */
#define MXF_EVENT_LIMITS_NO_EDGE_COUNTS 0x01u
/*
 * The caller knows the canonical JSON is within MXF_EVENT_MAX_BYTES (the
 * event was parsed from at most that many bytes of JSON without floats:
 * canonical JSON is never longer than such text), so it is not encoded.
 */
#define MXF_EVENT_LIMITS_SIZE_KNOWN 0x02u

/*
 * Checks @a pdu against the size limits: canonical JSON of the whole
 * event (signatures and unsigned included) at most MXF_EVENT_MAX_BYTES;
 * "sender" (user ID), "room_id" (room ID) and "event_id" (event ID) at most
 * 255 bytes, "type" and "state_key" at most 255 bytes (in room versions
 * with lenient_byte_limits: at most 255 code points, the bytes being left
 * to mxf_event_check_field_bytes()); unless @a flags has
 * MXF_EVENT_LIMITS_NO_EDGE_COUNTS, at most 20 prev_events and 10
 * auth_events. Only sizes are judged here, not grammar. APR_SUCCESS or
 * APR_EINVAL with *why.
 */
apr_status_t mxf_event_check_limits(apr_pool_t *p, const json_t *pdu,
                                    const mxf_roomver_t *rv, unsigned flags,
                                    const char **why);

/*
 * The byte limit (255) of one of the fields above, @a value (NULL: absent)
 * under the name @a key: APR_SUCCESS, or APR_EINVAL with *why. An event
 * that passed mxf_event_check_limits() leniently and fails this is kept as
 * rejected.
 */
apr_status_t mxf_event_check_field_bytes(apr_pool_t *p, const char *key, const char *value,
                                         const char **why);

#endif /* mxf_event_h */
