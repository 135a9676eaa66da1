/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#include <string.h>

#include <apr_strings.h>

#include "mxf_base64.h"
#include "mxf_id.h"
#include "mxf_serverkeys.h"
#include "mxf_sign.h"

/* Decodes {"key": "<base64 of 32 bytes>"}; 0 when malformed. */
static int decode_entry_key(const json_t *entry, unsigned char pk[MXF_ED25519_PK_BYTES])
{
    const json_t *k = json_is_object(entry) ? json_object_get(entry, "key") : NULL;

    return json_is_string(k)
        && mxf_b64_decode_exact(json_string_value(k), json_string_length(k),
                                MXF_B64_ANY, pk, MXF_ED25519_PK_BYTES) == APR_SUCCESS;
}

/*
 * Whether a key of a key response is one this server can use: an ed25519 key
 * with a well-formed ID. Others (keys of algorithms a server may add later)
 * are skipped, not a reason to refuse the response, as the reference
 * homeserver does.
 */
static int usable_key_id(const char *key_id)
{
    return mxf_id_key_id_valid(key_id, strlen(key_id));
}

apr_status_t mxf_serverkeys_verify(apr_pool_t *p, const json_t *obj, const char *server_name,
                                   apr_int64_t now_ms, apr_array_header_t **keys,
                                   const char **why)
{
    const json_t *name, *valid, *verify, *old, *sigs, *own, *entry;
    const char *key_id, *reason = NULL;
    apr_array_header_t *out;
    apr_int64_t until;
    int nsigned = 0;

    if (!json_is_object(obj)) {
        *why = "the key response is not a JSON object";
        return APR_EINVAL;
    }
    name = json_object_get(obj, "server_name");
    if (!json_is_string(name) || strcmp(json_string_value(name), server_name) != 0) {
        *why = apr_psprintf(p, "the key response is for '%s', not '%s'",
                            json_is_string(name) ? json_string_value(name) : "(none)",
                            server_name);
        return APR_EINVAL;
    }
    valid = json_object_get(obj, "valid_until_ts");
    if (!json_is_integer(valid)) {
        *why = "valid_until_ts is missing or not an integer";
        return APR_EINVAL;
    }
    verify = json_object_get(obj, "verify_keys");
    if (!json_is_object(verify) || json_object_size(verify) == 0) {
        *why = "verify_keys is missing, empty or not an object";
        return APR_EINVAL;
    }
    old = json_object_get(obj, "old_verify_keys");
    if (old && !json_is_object(old)) {
        *why = "old_verify_keys is not an object";
        return APR_EINVAL;
    }
    until = json_integer_value(valid);
    if (until > now_ms + MXF_SERVERKEYS_MAX_VALIDITY_MS) {
        until = now_ms + MXF_SERVERKEYS_MAX_VALIDITY_MS;
    }

    out = apr_array_make(p, (int)json_object_size(verify) + 2, sizeof(mxf_server_key_t));
    json_object_foreach((json_t *)verify, key_id, entry) {
        mxf_server_key_t *k;
        if (!usable_key_id(key_id)) {
            continue;
        }
        k = apr_array_push(out);
        memset(k, 0, sizeof(*k));
        if (!decode_entry_key(entry, k->pk)) {
            *why = apr_psprintf(p, "verify key %s is not base64 of 32 bytes", key_id);
            return APR_EINVAL;
        }
        k->key_id = apr_pstrdup(p, key_id);
        k->valid_until_ts = until;
    }
    if (old) {
        json_object_foreach((json_t *)old, key_id, entry) {
            const json_t *exp = json_is_object(entry) ? json_object_get(entry, "expired_ts")
                                                      : NULL;
            mxf_server_key_t *k;
            if (json_object_get(verify, key_id) || !usable_key_id(key_id)) {
                continue;               /* listed as current too (current wins), or unusable */
            }
            k = apr_array_push(out);
            memset(k, 0, sizeof(*k));
            if (!decode_entry_key(entry, k->pk) || !json_is_integer(exp)) {
                *why = apr_psprintf(p, "old verify key '%.64s' is malformed", key_id);
                return APR_EINVAL;
            }
            k->key_id = apr_pstrdup(p, key_id);
            /* 0 means current here: an old key expired at 0 or before expired at 1 */
            k->expired_ts = json_integer_value(exp) > 0 ? json_integer_value(exp) : 1;
            k->valid_until_ts = k->expired_ts;
        }
    }

    /* Self-signature: every signature by a listed current key must verify. */
    sigs = json_object_get(obj, "signatures");
    own = json_is_object(sigs) ? json_object_get(sigs, server_name) : NULL;
    if (!json_is_object(own)) {
        *why = apr_psprintf(p, "the key response is not signed by %s", server_name);
        return APR_EINVAL;
    }
    json_object_foreach((json_t *)own, key_id, entry) {
        const mxf_server_key_t *k;
        if (!json_object_get(verify, key_id) || !(k = mxf_serverkeys_find(out, key_id))) {
            continue;                   /* not a current key, or one not of ed25519 */
        }
        if (mxf_verify_json(p, obj, server_name, key_id, k->pk, &reason) != APR_SUCCESS) {
            *why = apr_psprintf(p, "the key response's self-signature does not verify: %s",
                                reason);
            return APR_EINVAL;
        }
        nsigned++;
    }
    if (nsigned == 0) {
        *why = apr_psprintf(p, "the key response is not signed by any of the verify "
                            "keys of %s", server_name);
        return APR_EINVAL;
    }
    *keys = out;
    return APR_SUCCESS;
}

apr_status_t mxf_serverkeys_check_signer(apr_pool_t *p, const json_t *obj, const char *signer,
                                         const unsigned char pk[MXF_ED25519_PK_BYTES],
                                         const char **why)
{
    const json_t *sigs = json_is_object(obj) ? json_object_get(obj, "signatures") : NULL;
    const json_t *mine = json_is_object(sigs) ? json_object_get(sigs, signer) : NULL;
    const char *key_id, *reason = NULL;
    const json_t *sig;

    if (!json_is_object(mine) || json_object_size(mine) == 0) {
        *why = apr_psprintf(p, "not signed by %s", signer);
        return APR_EACCES;
    }
    json_object_foreach((json_t *)mine, key_id, sig) {
        if (mxf_verify_json(p, obj, signer, key_id, pk, &reason) == APR_SUCCESS) {
            return APR_SUCCESS;
        }
    }
    *why = apr_psprintf(p, "no signature by %s verifies with its configured key (%s)",
                        signer, reason ? reason : "none");
    return APR_EACCES;
}

json_t *mxf_serverkeys_build(apr_pool_t *p, const char *server_name,
                             const mxf_signing_key_t *key, apr_int64_t valid_until_ts,
                             const apr_array_header_t *old_keys, const char **why)
{
    json_t *obj, *old;
    int i;

    obj = mxf_json_own(p, json_object());
    old = json_object();
    json_object_set_new(obj, "server_name", json_string(server_name));
    json_object_set_new(obj, "valid_until_ts", json_integer(valid_until_ts));
    json_object_set_new(obj, "verify_keys",
                        json_pack("{s:{s:s}}", key->key_id, "key",
                                  mxf_b64_encode(p, key->pk, sizeof(key->pk),
                                                 MXF_B64_STANDARD)));
    for (i = 0; old_keys && i < old_keys->nelts; i++) {
        const mxf_server_key_t *k = &APR_ARRAY_IDX(old_keys, i, mxf_server_key_t);
        json_object_set_new(old, k->key_id,
                            json_pack("{s:s, s:I}", "key",
                                      mxf_b64_encode(p, k->pk, sizeof(k->pk),
                                                     MXF_B64_STANDARD),
                                      "expired_ts", (json_int_t)k->expired_ts));
    }
    json_object_set_new(obj, "old_verify_keys", old);
    if (mxf_sign_json(p, obj, server_name, key, why) != APR_SUCCESS) {
        return NULL;
    }
    return obj;
}

const mxf_server_key_t *mxf_serverkeys_find(const apr_array_header_t *keys,
                                            const char *key_id)
{
    int i;

    for (i = 0; keys && i < keys->nelts; i++) {
        const mxf_server_key_t *k = &APR_ARRAY_IDX(keys, i, mxf_server_key_t);
        if (strcmp(k->key_id, key_id) == 0) {
            return k;
        }
    }
    return NULL;
}
