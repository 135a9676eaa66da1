/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#include <string.h>

#include <apr_strings.h>
#include <sodium.h>

#include "mxf_canonical.h"
#include "mxf_sign.h"

void mxf_sha256(unsigned char out[MXF_SHA256_BYTES], const void *data, apr_size_t len)
{
    crypto_hash_sha256(out, data, len);
}

char *mxf_sha256_b64(apr_pool_t *p, const void *data, apr_size_t len,
                     mxf_b64_alphabet_t a)
{
    unsigned char h[MXF_SHA256_BYTES];

    mxf_sha256(h, data, len);
    return mxf_b64_encode(p, h, sizeof(h), a);
}

char *mxf_sign_bytes(apr_pool_t *p, const mxf_signing_key_t *key,
                     const void *data, apr_size_t len)
{
    unsigned char sig[crypto_sign_BYTES];

    crypto_sign_detached(sig, NULL, data, len, key->sk);
    return mxf_b64_encode(p, sig, sizeof(sig), MXF_B64_STANDARD);
}

static apr_status_t verify_b64n(const void *data, apr_size_t len, const char *sig_b64,
                                apr_size_t sig_len, const unsigned char *pk,
                                const char **why)
{
    unsigned char sig[crypto_sign_BYTES];

    if (mxf_b64_decode_exact(sig_b64, sig_len, MXF_B64_ANY,
                             sig, sizeof(sig)) != APR_SUCCESS) {
        *why = "signature is not base64 of 64 bytes";
        return MXF_SIG_MALFORMED;
    }
    if (crypto_sign_verify_detached(sig, data, len, pk) != 0) {
        *why = "signature does not verify";
        return MXF_SIG_BAD;
    }
    return APR_SUCCESS;
}

apr_status_t mxf_verify_bytes(const void *data, apr_size_t len, const char *sig_b64,
                              const unsigned char pk[MXF_ED25519_PK_BYTES],
                              const char **why)
{
    return verify_b64n(data, len, sig_b64, strlen(sig_b64), pk, why);
}

json_t *mxf_sign_signable(apr_pool_t *p, const json_t *obj)
{
    json_t *copy;

    if (!json_is_object(obj)) {
        return NULL;
    }
    copy = mxf_json_own(p, json_copy((json_t *)obj));
    if (copy) {
        json_object_del(copy, "signatures");
        json_object_del(copy, "unsigned");
    }
    return copy;
}

char *mxf_sign_signable_bytes(apr_pool_t *p, const json_t *obj, unsigned flags,
                              apr_size_t *len, const char **why)
{
    json_t *signable = mxf_sign_signable(p, obj);

    if (!signable) {
        *why = "only JSON objects can be signed";
        return NULL;
    }
    return mxf_canonical_encode_ex(p, signable, flags, len, why);
}

apr_status_t mxf_sign_json(apr_pool_t *p, json_t *obj, const char *server_name,
                           const mxf_signing_key_t *key, const char **why)
{
    json_t *sigs, *entry, *old;
    apr_size_t len;
    const char *reason = NULL;
    char *bytes = mxf_sign_signable_bytes(p, obj, 0, &len, &reason);
    char *sig;

    if (!bytes) {
        *why = apr_psprintf(p, "cannot sign: %s", reason);
        return APR_EINVAL;
    }
    old = json_object_get(obj, "signatures");
    if (old && !json_is_object(old)) {
        *why = "cannot sign: 'signatures' is not an object";
        return APR_EINVAL;
    }
    entry = old ? json_object_get(old, server_name) : NULL;
    if (entry && !json_is_object(entry)) {
        *why = apr_psprintf(p, "cannot sign: signatures of '%s' are not an object",
                            server_name);
        return APR_EINVAL;
    }
    sig = mxf_sign_bytes(p, key, bytes, len);
    sigs = old ? json_copy(old) : json_object();
    entry = entry ? json_copy(entry) : json_object();
    if (!sigs || !entry
        || json_object_set_new(entry, key->key_id, json_string(sig)) != 0) {
        json_decref(entry);
        json_decref(sigs);
        *why = "cannot sign: key ID is not valid UTF-8, or out of memory";
        return APR_EINVAL;
    }
    /* json_object_set_new() consumes the value even when it fails. */
    if (json_object_set_new(sigs, server_name, entry) != 0) {
        json_decref(sigs);
        *why = "cannot sign: server name is not valid UTF-8, or out of memory";
        return APR_EINVAL;
    }
    if (json_object_set_new(obj, "signatures", sigs) != 0) {
        *why = "cannot sign: out of memory";
        return APR_EINVAL;
    }
    return APR_SUCCESS;
}

apr_status_t mxf_verify_json(apr_pool_t *p, const json_t *obj, const char *server_name,
                             const char *key_id, const unsigned char pk[32],
                             const char **why)
{
    const json_t *sigs, *entry, *sig;
    const char *reason = NULL;
    apr_size_t len;
    char *bytes;
    apr_status_t rv;

    if (!json_is_object(obj)) {
        *why = "only JSON objects carry signatures";
        return MXF_SIG_MALFORMED;
    }
    sigs = json_object_get(obj, "signatures");
    if (!sigs) {
        *why = "no signatures on this object";
        return MXF_SIG_MISSING;
    }
    if (!json_is_object(sigs)) {
        *why = "'signatures' is not an object";
        return MXF_SIG_MALFORMED;
    }
    entry = json_object_get(sigs, server_name);
    sig = json_is_object(entry) ? json_object_get(entry, key_id) : NULL;
    if (!entry || (json_is_object(entry) && !sig)) {
        *why = apr_psprintf(p, "no signature by %s with key %s", server_name, key_id);
        return MXF_SIG_MISSING;
    }
    if (!json_is_object(entry) || !json_is_string(sig)) {
        *why = apr_psprintf(p, "signature by %s with key %s is not a string",
                            server_name, key_id);
        return MXF_SIG_MALFORMED;
    }
    bytes = mxf_sign_signable_bytes(p, obj, 0, &len, &reason);
    if (!bytes) {
        *why = apr_psprintf(p, "cannot encode the signed object: %s", reason);
        return MXF_SIG_MALFORMED;
    }
    rv = verify_b64n(bytes, len, json_string_value(sig), json_string_length(sig), pk,
                     &reason);
    if (rv != APR_SUCCESS) {
        *why = apr_psprintf(p, "%s (%s, %s)", reason, server_name, key_id);
    }
    return rv;
}
