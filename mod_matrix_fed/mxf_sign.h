/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * Signing JSON (appendices, "Signing JSON" / "Checking for a Signature"),
 * ed25519 detached signatures and SHA-256, all through libsodium.
 *
 * Signatures and hashes travel as unpadded Base64 (standard alphabet for
 * signatures; hashes in either alphabet). Canonical JSON is mxf_canonical's
 * default mode (the spec's rules).
 */
#ifndef mxf_sign_h
#define mxf_sign_h

#include <apr_pools.h>
#include <apr_errno.h>

#include "mxf_base64.h"
#include "mxf_json.h"
#include "mxf_key.h"

#define MXF_SHA256_BYTES 32

/* Status codes of the verify functions (each with a *why). */
#define MXF_SIG_MISSING    APR_ENOENT    /* no signatures[server][key_id] */
#define MXF_SIG_MALFORMED  APR_EINVAL    /* not a string, bad base64, wrong length,
                                            object not encodable, not an object */
#define MXF_SIG_BAD        APR_EMISMATCH /* signature does not verify */

/* SHA-256 of @a len bytes into @a out. */
void mxf_sha256(unsigned char out[MXF_SHA256_BYTES], const void *data, apr_size_t len);

/* Unpadded Base64 (alphabet @a a) of the SHA-256 of @a len bytes, from @a p. */
char *mxf_sha256_b64(apr_pool_t *p, const void *data, apr_size_t len,
                     mxf_b64_alphabet_t a);

/* Unpadded standard Base64 of the ed25519 signature of @a len bytes. */
char *mxf_sign_bytes(apr_pool_t *p, const mxf_signing_key_t *key,
                     const void *data, apr_size_t len);

/*
 * Verifies @a sig_b64 (unpadded or padded standard Base64 of 64 bytes) over
 * @a len bytes with public key @a pk. APR_SUCCESS, MXF_SIG_MALFORMED or
 * MXF_SIG_BAD; *why (static) says which.
 */
apr_status_t mxf_verify_bytes(const void *data, apr_size_t len, const char *sig_b64,
                              const unsigned char pk[MXF_ED25519_PK_BYTES],
                              const char **why);

/*
 * The "signable" form of object @a obj: a shallow copy without the
 * `signatures` and `unsigned` members, owned by @a p. NULL if @a obj is
 * not an object. Members are shared with @a obj: do not modify them.
 */
json_t *mxf_sign_signable(apr_pool_t *p, const json_t *obj);

/*
 * Canonical JSON of the signable form of @a obj with MXF_CANON_* @a flags
 * (0 for the spec's rules), i.e. the exact bytes a signature covers. NULL
 * with *why on failure.
 */
char *mxf_sign_signable_bytes(apr_pool_t *p, const json_t *obj, unsigned flags,
                              apr_size_t *len, const char **why);

/*
 * Signs object @a obj as @a server_name with @a key: sets
 * obj.signatures[server_name][key->key_id], keeping every other signature
 * and leaving `unsigned` as it is. The `signatures` object and the
 * server's entry are replaced by modified copies, so objects shared with
 * other values are never changed. APR_EINVAL with *why if @a obj is not an
 * object, its `signatures` (or the server's entry) is not an object, or it
 * cannot be encoded as canonical JSON.
 */
apr_status_t mxf_sign_json(apr_pool_t *p, json_t *obj, const char *server_name,
                           const mxf_signing_key_t *key, const char **why);

/*
 * Checks obj.signatures[server_name][key_id] with ed25519 public key @a pk
 * over the canonical signable form. APR_SUCCESS, MXF_SIG_MISSING,
 * MXF_SIG_MALFORMED or MXF_SIG_BAD, with *why (from @a p) explaining.
 */
apr_status_t mxf_verify_json(apr_pool_t *p, const json_t *obj, const char *server_name,
                             const char *key_id, const unsigned char pk[32],
                             const char **why);

#endif /* mxf_sign_h */
