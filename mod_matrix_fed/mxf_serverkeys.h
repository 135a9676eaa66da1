/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * Server Keys objects (server-server API, "Retrieving server keys"; digest
 * section 3): the answer of GET /_matrix/key/v2/server, as a server
 * publishes it and as other servers (or notaries) hand it to us.
 *
 *     {"server_name": "...", "valid_until_ts": ms,
 *      "verify_keys": {"ed25519:v": {"key": "<base64>"}},
 *      "old_verify_keys": {"ed25519:o": {"key": "<base64>", "expired_ts": ms}},
 *      "signatures": {"<server_name>": {"ed25519:v": "<sig>"}, "<notary>": {...}}}
 */
#ifndef mxf_serverkeys_h
#define mxf_serverkeys_h

#include <apr_pools.h>
#include <apr_errno.h>
#include <apr_tables.h>

#include "mxf_json.h"
#include "mxf_key.h"

/*
 * Receivers use the smaller of valid_until_ts and "seven days after the
 * response was obtained" (spec: "Retrieving server keys").
 */
#define MXF_SERVERKEYS_MAX_VALIDITY_MS (7LL * 24 * 3600 * 1000)

/* One public key of a server. */
typedef struct mxf_server_key {
    const char *key_id;                         /* "ed25519:<version>" */
    unsigned char pk[MXF_ED25519_PK_BYTES];
    apr_int64_t valid_until_ts;                 /* ms; current keys */
    apr_int64_t expired_ts;                     /* ms; 0 for a current key */
} mxf_server_key_t;

/*
 * Checks a Server Keys object received for @a server_name at time @a now_ms
 * and extracts its keys into *keys (an array of mxf_server_key_t from @a p):
 *   - server_name equals @a server_name; valid_until_ts an integer;
 *     verify_keys a non-empty object; its ed25519 keys with valid key IDs
 *     are {"key": base64 of 32 bytes}; old_verify_keys, when present, an
 *     object whose such keys are {"key", "expired_ts"} (an expired_ts of 0
 *     or less is taken as 1); keys of other algorithms or with unusable IDs
 *     are skipped;
 *   - self-signed: at least one signatures[server_name][key_id] with a
 *     key_id of verify_keys, and every such signature verifies (signatures
 *     by key IDs the object does not list cannot be checked and are
 *     ignored);
 *   - current keys get valid_until_ts = min(valid_until_ts, now_ms + 7 days);
 *     old keys get valid_until_ts = expired_ts.
 * Returns APR_SUCCESS, or APR_EINVAL with *why (from @a p).
 */
apr_status_t mxf_serverkeys_verify(apr_pool_t *p, const json_t *obj, const char *server_name,
                                   apr_int64_t now_ms, apr_array_header_t **keys,
                                   const char **why);

/*
 * Checks that @a obj carries a valid signature by @a signer made with the
 * public key @a pk (a notary whose key is pinned): at least one
 * signatures[signer][*] verifies with @a pk. Signatures by @a signer under
 * other key IDs are ignored (the notary may have several keys).
 * APR_SUCCESS, or APR_EACCES with *why.
 */
apr_status_t mxf_serverkeys_check_signer(apr_pool_t *p, const json_t *obj, const char *signer,
                                         const unsigned char pk[MXF_ED25519_PK_BYTES],
                                         const char **why);

/*
 * This server's Server Keys object: @a key as the only verify key,
 * @a old_keys (mxf_server_key_t, may be NULL) as old_verify_keys, the given
 * valid_until_ts, signed by @a key as @a server_name. Owned by @a p. NULL
 * with *why on failure.
 */
json_t *mxf_serverkeys_build(apr_pool_t *p, const char *server_name,
                             const mxf_signing_key_t *key, apr_int64_t valid_until_ts,
                             const apr_array_header_t *old_keys, const char **why);

/*
 * Finds @a key_id in @a keys (from mxf_serverkeys_verify()); NULL if absent.
 */
const mxf_server_key_t *mxf_serverkeys_find(const apr_array_header_t *keys,
                                            const char *key_id);

#endif /* mxf_serverkeys_h */
