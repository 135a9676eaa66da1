/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * The server-key table (mxf_server_keys) as the matrix-fed tool sees it:
 * loaded once, looked up per signature, extended from files holding
 * /_matrix/key/v2/server responses (verified before they are trusted).
 */
#ifndef mxf_keystore_h
#define mxf_keystore_h

#include <apr_pools.h>
#include <libpq-fe.h>

#include "mxf_key.h"

typedef struct mxf_keystore mxf_keystore_t;

/* Loads the key table; NULL (reported) on failure. */
mxf_keystore_t *mxf_keystore_open(apr_pool_t *p, PGconn *conn);

/*
 * The public key of (@a server, @a key_id) usable for something signed at
 * @a ts: APR_NOTFOUND when unknown, expired before @a ts, or (with
 * @a enforce_validity) past its valid_until_ts at @a ts.
 */
apr_status_t mxf_keystore_lookup(mxf_keystore_t *ks, const char *server, const char *key_id,
                                 apr_int64_t ts, int enforce_validity,
                                 unsigned char pk[MXF_ED25519_PK_BYTES]);

/*
 * Reads key-server responses from @a path (one JSON object, an array of
 * them, a notary answer {"server_keys": [...]}, or one per line), checks each is signed by every key it lists, and
 * stores the keys in memory and in the table. 0 (reported) on failure.
 */
int mxf_keystore_add_file(mxf_keystore_t *ks, const char *path);

#endif /* mxf_keystore_h */
