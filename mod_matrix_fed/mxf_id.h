/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * Identifier grammar (spec appendices: "Server Name", "Common Identifier
 * Format", "User Identifiers", "Room IDs", "Room Aliases", "Event IDs";
 * federation keys.yaml for key IDs).
 *
 * Every check takes a pointer and a length in bytes, so strings with
 * embedded NULs (which JSON allows) are judged whole, and returns 1 (valid)
 * or 0. Identifiers read from events are judged with the grammars servers
 * MUST accept (historical user IDs included), not the stricter ones for
 * generating new identifiers.
 */
#ifndef mxf_id_h
#define mxf_id_h

#include <apr_pools.h>

#include "mxf_roomver.h"

/* Byte cap of user IDs, room IDs, room aliases and event IDs (sigil and domain included). */
#define MXF_ID_MAX_BYTES 255

/*
 * server_name = hostname [ ":" port ], hostname = IPv4 / "[" IPv6 "]" /
 * dns-name. Port: 1 to 5 digits, value 1-65535. A dotted-quad hostname is
 * taken as an IPv4 literal and each number must be 0-255. IPv6 literals per
 * RFC 3513 section 2.2. dns-name: 1-255 of [A-Za-z0-9.-]. Case is kept
 * (server names are case-sensitive). At most 255 bytes in all.
 */
int mxf_id_server_name_valid(const char *s, apr_size_t len);

/*
 * User ID, as it must be accepted in events: "@" localpart ":" server_name,
 * where the localpart is any UTF-8 non-surrogate code points except ":"
 * and NUL (possibly empty: "Historical User IDs"); at most 255 bytes.
 */
int mxf_id_user_valid(const char *s, apr_size_t len);

/*
 * User ID with the current (v1.8+) grammar for new IDs: a non-empty
 * localpart of [a-z0-9._=/+-].
 */
int mxf_id_user_valid_strict(const char *s, apr_size_t len);

/*
 * Room ID for room version @a rv: "!" localpart ":" server_name (v1 - v11;
 * localpart any UTF-8 except ":" and NUL), or, where rv->room_id_is_create_hash
 * (v12+), "!" + 43 characters of URL-safe unpadded base64 (a 32-byte
 * reference hash) and no server part. @a rv NULL accepts either form.
 * At most 255 bytes.
 */
int mxf_id_room_valid(const char *s, apr_size_t len, const mxf_roomver_t *rv);

/*
 * Event ID for room version @a rv: "$" opaque ":" server_name (v1, v2;
 * non-empty opaque part, any UTF-8 except ":" and NUL); "$" + 43 characters
 * of standard unpadded base64 (v3); "$" + 43 characters of URL-safe
 * unpadded base64 (v4+). @a rv NULL accepts any of the forms. At most 255
 * bytes.
 */
int mxf_id_event_valid(const char *s, apr_size_t len, const mxf_roomver_t *rv);

/*
 * Whether @a s could name an event of some room, before its room version
 * is known: "$", at least one more byte, at most 255 bytes, well-formed
 * UTF-8, no NUL. For look-ups by ID: an ID that passes but names no event
 * is unknown (404), not malformed.
 */
int mxf_id_event_plausible(const char *s, apr_size_t len);

/* Room alias: "#" localpart ":" server_name, localpart any UTF-8 except ":" and NUL; <= 255 bytes. */
int mxf_id_alias_valid(const char *s, apr_size_t len);

/* Signing key ID: "ed25519:" + 1 or more of [a-zA-Z0-9_]; <= 255 bytes. */
int mxf_id_key_id_valid(const char *s, apr_size_t len);

/*
 * Whether key ID @a key_id (NUL-terminated) names the ed25519 algorithm,
 * the only one signatures are checked with: those of other algorithms are
 * set aside (appendices, "Checking for a Signature"). Says nothing of the
 * rest of the ID (mxf_id_key_id_valid()).
 */
int mxf_id_key_id_is_ed25519(const char *key_id);

/*
 * The server name of a user ID, room ID, room alias or event ID (the text
 * after the first ":"), copied into @a p; NULL when @a id (NUL-terminated)
 * has no sigil, no ":" or an invalid server name, as for v3+ event IDs and
 * v12 room IDs. The ID as a whole is not validated: use the checks above.
 */
const char *mxf_id_server_of(apr_pool_t *p, const char *id);

/*
 * Whether @a s (of @a len bytes) is well-formed UTF-8 without surrogates,
 * overlong forms or code points above U+10FFFF. NUL is allowed here.
 */
int mxf_id_utf8_valid(const char *s, apr_size_t len);

#endif /* mxf_id_h */
