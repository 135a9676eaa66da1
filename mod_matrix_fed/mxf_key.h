/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * Ed25519 signing keys in the homeserver key-file format:
 *
 *     ed25519 <version> <unpadded base64 32-byte seed>
 *
 * one key per line; the key ID is "ed25519:<version>". The first key of a
 * file is the one used to sign. Secret bytes live in memory that is wiped
 * when the owning pool is cleared.
 */
#ifndef mxf_key_h
#define mxf_key_h

#include <apr_pools.h>
#include <apr_errno.h>

#define MXF_ED25519_SEED_BYTES 32
#define MXF_ED25519_PK_BYTES   32
#define MXF_ED25519_SK_BYTES   64
#define MXF_ED25519_SIG_BYTES  64

typedef struct mxf_signing_key {
    const char *key_id;                          /* "ed25519:<version>" */
    unsigned char pk[MXF_ED25519_PK_BYTES];
    unsigned char *sk;                           /* MXF_ED25519_SK_BYTES, wiped on cleanup */
} mxf_signing_key_t;

/*
 * Parses one key line. On failure returns APR_EINVAL and sets *why to a
 * message that names what is wrong (never the secret itself).
 */
apr_status_t mxf_key_parse(apr_pool_t *p, const char *line,
                           mxf_signing_key_t **key, const char **why);

/* Reads the first key of @a path. *why explains any failure. */
apr_status_t mxf_key_load_file(apr_pool_t *p, const char *path,
                               mxf_signing_key_t **key, const char **why);

/* A new random key with key ID "ed25519:<version>". */
apr_status_t mxf_key_generate(apr_pool_t *p, const char *version,
                              mxf_signing_key_t **key, const char **why);

/* The key-file line of @a key (secret: wipe it after use). */
char *mxf_key_format(apr_pool_t *p, const mxf_signing_key_t *key);

/* Whether @a version is a valid key version: [A-Za-z0-9_]+, at most 64 chars. */
int mxf_key_version_valid(const char *version, apr_size_t len);

#endif /* mxf_key_h */
