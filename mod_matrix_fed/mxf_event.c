/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#include <string.h>

#include <apr_strings.h>
#include <sodium.h>

#include "mxf_base64.h"
#include "mxf_canonical.h"
#include "mxf_event.h"
#include "mxf_id.h"

/*
 * Canonical JSON flags for events of room version @a rv (NULL: lenient).
 * v6+: strict integers, no reals. v1-v5 events may hold reals and big
 * integers (the spec asks servers to cope); their hashes and signatures
 * were made by servers using Python's canonicaljson, so reals are written
 * the way it writes them (MXF_CANON_PYTHON_FLOATS), or they could never
 * verify.
 */
static unsigned canon_flags(const mxf_roomver_t *rv)
{
    return rv && rv->strict_canonical_json ? MXF_CANON_STRICT_INTS : MXF_CANON_PYTHON_FLOATS;
}

/* The string member @a key of @a obj, or NULL; its byte length in *len. */
static const char *str_member(const json_t *obj, const char *key, apr_size_t *len)
{
    json_t *v = json_object_get(obj, key);

    if (!json_is_string(v)) {
        return NULL;
    }
    if (len) {
        *len = json_string_length(v);
    }
    return json_string_value(v);
}

/* Whether member @a key of @a obj is the string @a want. */
static int str_member_is(const json_t *obj, const char *key, const char *want)
{
    apr_size_t len;
    const char *s = str_member(obj, key, &len);

    return s && len == strlen(want) && memcmp(s, want, len) == 0;
}

/* ------------------------------------------------------------------------
 * Content hash */

apr_status_t mxf_event_content_hash(apr_pool_t *p, const json_t *pdu,
                                    const mxf_roomver_t *rv,
                                    unsigned char hash[MXF_SHA256_BYTES],
                                    const char **why)
{
    json_t *copy;
    const char *bytes;
    apr_size_t len;

    if (!json_is_object(pdu)) {
        *why = "event is not a JSON object";
        return APR_EINVAL;
    }
    copy = mxf_json_own(p, json_copy((json_t *)pdu));
    if (copy == NULL) {
        *why = "out of memory";
        return APR_ENOMEM;
    }
    json_object_del(copy, "unsigned");
    json_object_del(copy, "signatures");
    json_object_del(copy, "hashes");
    /* Keys some servers once added at the top level after hashing; the
     * reference homeserver and gomatrixserverlib leave them out too. */
    json_object_del(copy, "age_ts");
    json_object_del(copy, "outlier");
    json_object_del(copy, "destinations");
    bytes = mxf_canonical_encode_ex(p, copy, canon_flags(rv), &len, why);
    if (bytes == NULL) {
        return APR_EINVAL;
    }
    mxf_sha256(hash, bytes, len);
    return APR_SUCCESS;
}

const char *mxf_event_content_hash_b64(apr_pool_t *p, const json_t *pdu,
                                       const mxf_roomver_t *rv, const char **why)
{
    unsigned char h[MXF_SHA256_BYTES];

    if (mxf_event_content_hash(p, pdu, rv, h, why) != APR_SUCCESS) {
        return NULL;
    }
    return mxf_b64_encode(p, h, sizeof(h), MXF_B64_STANDARD);
}

apr_status_t mxf_event_check_content_hash(apr_pool_t *p, const json_t *pdu,
                                          const mxf_roomver_t *rv, const char **why)
{
    unsigned char want[MXF_SHA256_BYTES], got[MXF_SHA256_BYTES];
    const char *b64;
    apr_size_t len;
    apr_status_t st;

    b64 = str_member(json_object_get(pdu, "hashes"), "sha256", &len);
    if (b64 == NULL) {
        *why = "event has no hashes.sha256 string";
        return APR_EINVAL;
    }
    if ((st = mxf_event_content_hash(p, pdu, rv, got, why)) != APR_SUCCESS) {
        return st;
    }
    /* A hash that is not one cannot match: the event is served redacted, as
     * for any other mismatch (the reference homeserver alike). */
    if (mxf_b64_decode_exact(b64, len, MXF_B64_ANY, want, sizeof(want)) != APR_SUCCESS) {
        *why = "hashes.sha256 is not base64 of 32 bytes (event was altered)";
        return APR_EMISMATCH;
    }
    if (sodium_memcmp(want, got, sizeof(want)) != 0) {
        *why = "content hash does not match hashes.sha256 (event was redacted or altered)";
        return APR_EMISMATCH;
    }
    return APR_SUCCESS;
}

/* ------------------------------------------------------------------------
 * Redaction */

/* Top-level keys every algorithm keeps. */
static const char *const top_keys[] = {
    "event_id", "type", "room_id", "sender", "state_key", "content", "hashes",
    "signatures", "depth", "prev_events", "auth_events", "origin_server_ts", NULL
};
/* Also kept before v11. */
static const char *const top_keys_pre_v11[] = {
    "origin", "membership", "prev_state", NULL
};

static const char *const member_keys_v1[] = { "membership", NULL };
static const char *const member_keys_v9[] = {
    "membership", "join_authorised_via_users_server", NULL
};
static const char *const create_keys_v1[] = { "creator", NULL };
static const char *const join_rules_keys_v1[] = { "join_rule", NULL };
static const char *const join_rules_keys_v8[] = { "join_rule", "allow", NULL };
static const char *const power_levels_keys_v1[] = {
    "ban", "events", "events_default", "kick", "redact", "state_default", "users",
    "users_default", NULL
};
static const char *const power_levels_keys_v11[] = {
    "ban", "events", "events_default", "invite", "kick", "redact", "state_default",
    "users", "users_default", NULL
};
static const char *const aliases_keys_v1[] = { "aliases", NULL };
static const char *const history_visibility_keys[] = { "history_visibility", NULL };
static const char *const redaction_keys_v11[] = { "redacts", NULL };

/* Content keys kept for @a type under @a algo; NULL: none. *all set: keep everything. */
static const char *const *content_keys(const char *type, apr_size_t typelen,
                                       mxf_redact_algo_t algo, int *all)
{
    *all = 0;
    if (type == NULL || memchr(type, '\0', typelen)) {
        return NULL;
    }
    if (strcmp(type, "m.room.member") == 0) {
        return algo >= MXF_REDACT_V9 ? member_keys_v9 : member_keys_v1;
    }
    if (strcmp(type, "m.room.create") == 0) {
        if (algo >= MXF_REDACT_V11) {
            *all = 1;
            return NULL;
        }
        return create_keys_v1;
    }
    if (strcmp(type, "m.room.join_rules") == 0) {
        return algo >= MXF_REDACT_V8 ? join_rules_keys_v8 : join_rules_keys_v1;
    }
    if (strcmp(type, "m.room.power_levels") == 0) {
        return algo >= MXF_REDACT_V11 ? power_levels_keys_v11 : power_levels_keys_v1;
    }
    if (strcmp(type, "m.room.aliases") == 0) {
        return algo == MXF_REDACT_V1 ? aliases_keys_v1 : NULL;
    }
    if (strcmp(type, "m.room.history_visibility") == 0) {
        return history_visibility_keys;
    }
    if (strcmp(type, "m.room.redaction") == 0) {
        return algo >= MXF_REDACT_V11 ? redaction_keys_v11 : NULL;
    }
    return NULL;
}

/* Copies (@a deep) or shares the members @a keys of @a from into @a to. */
static int copy_keys(json_t *to, const json_t *from, const char *const *keys, int deep)
{
    for (; keys && *keys; keys++) {
        json_t *v = json_object_get(from, *keys);
        if (v && json_object_set_new(to, *keys, deep ? json_deep_copy(v) : json_incref(v)) != 0) {
            return -1;
        }
    }
    return 0;
}

static json_t *redact_content(const json_t *pdu, const json_t *content,
                              const mxf_roomver_t *rv, int deep)
{
    apr_size_t typelen = 0;
    const char *type = str_member(pdu, "type", &typelen);
    const char *const *keys;
    json_t *out;
    int all;

    keys = content_keys(type, typelen, rv->redaction, &all);
    if (all) {
        return deep ? json_deep_copy(content) : json_incref((json_t *)content);
    }
    if ((out = json_object()) == NULL || copy_keys(out, content, keys, deep) != 0) {
        json_decref(out);
        return NULL;
    }
    if (rv->redaction >= MXF_REDACT_V11 && str_member_is(pdu, "type", "m.room.member")) {
        /* An object third_party_invite survives reduced to its "signed" member, as {}
         * without one (as the reference homeserver and gomatrixserverlib redact). */
        const json_t *given = json_object_get(content, "third_party_invite");
        json_t *signed_ = json_object_get(given, "signed");
        if (json_is_object(given)) {
            json_t *tpi = json_object();
            /* Both calls take the reference they are given, failing or not. */
            if (json_object_set_new(out, "third_party_invite", tpi) != 0
                || (signed_
                    && json_object_set_new(tpi, "signed",
                                           deep ? json_deep_copy(signed_) : json_incref(signed_))
                       != 0)) {
                json_decref(out);
                return NULL;
            }
        }
    }
    return out;
}

/* The redaction of @a pdu: a copy (@a deep), or new objects sharing @a pdu's values. */
static json_t *redact(apr_pool_t *p, const json_t *pdu, const mxf_roomver_t *rv, int deep)
{
    json_t *out, *content, *rc;

    if (!json_is_object(pdu) || rv == NULL || (out = json_object()) == NULL) {
        return NULL;
    }
    if (copy_keys(out, pdu, top_keys, deep) != 0
        || (rv->redaction < MXF_REDACT_V11
            && copy_keys(out, pdu, top_keys_pre_v11, deep) != 0)) {
        json_decref(out);
        return NULL;
    }
    /*
     * The redacted form always has a content object, {} where the event has
     * none (or one that is not an object): the spec's signing example of an
     * event without content is signed so, as Synapse and gomatrixserverlib
     * redact.
     */
    content = json_object_get(pdu, "content");
    rc = json_is_object(content) ? redact_content(pdu, content, rv, deep) : json_object();
    if (rc == NULL || json_object_set_new(out, "content", rc) != 0) {
        json_decref(out);
        return NULL;
    }
    return mxf_json_own(p, out);
}

json_t *mxf_event_redact(apr_pool_t *p, const json_t *pdu, const mxf_roomver_t *rv)
{
    return redact(p, pdu, rv, 1);
}

/* ------------------------------------------------------------------------
 * Reference hash, event IDs, room IDs */

json_t *mxf_event_reference_input(apr_pool_t *p, const json_t *pdu, const mxf_roomver_t *rv)
{
    /* Read only, and most events are hashed once: values are shared, not copied. */
    json_t *r = redact(p, pdu, rv, 0);

    if (r) {
        json_object_del(r, "signatures");
        /* Not protected, so already gone; dropped explicitly all the same. */
        json_object_del(r, "unsigned");
        json_object_del(r, "age_ts");
    }
    return r;
}

apr_status_t mxf_event_reference_hash(apr_pool_t *p, const json_t *pdu,
                                      const mxf_roomver_t *rv,
                                      unsigned char hash[MXF_SHA256_BYTES],
                                      const char **why)
{
    json_t *r;
    const char *bytes;
    apr_size_t len;

    if (rv == NULL) {
        *why = "unknown room version";
        return APR_EINVAL;
    }
    if ((r = mxf_event_reference_input(p, pdu, rv)) == NULL) {
        *why = "event is not a JSON object";
        return APR_EINVAL;
    }
    bytes = mxf_canonical_encode_ex(p, r, canon_flags(rv), &len, why);
    if (bytes == NULL) {
        return APR_EINVAL;
    }
    mxf_sha256(hash, bytes, len);
    return APR_SUCCESS;
}

const char *mxf_event_id_compute(apr_pool_t *p, const json_t *pdu,
                                 const mxf_roomver_t *rv, const char **why)
{
    unsigned char h[MXF_SHA256_BYTES];
    const char *id;
    apr_size_t len;

    if (rv == NULL) {
        *why = "unknown room version";
        return NULL;
    }
    if (rv->event_id_format == MXF_EVID_CARRIED) {
        id = str_member(pdu, "event_id", &len);
        if (id == NULL) {
            *why = apr_psprintf(p, "room version %s events must carry an event_id string",
                                rv->id);
            return NULL;
        }
        if (!mxf_id_event_valid(id, len, rv)) {
            *why = "event_id is not a valid \"$opaque:server\" event ID";
            return NULL;
        }
        return apr_pstrmemdup(p, id, len);
    }
    if (mxf_event_reference_hash(p, pdu, rv, h, why) != APR_SUCCESS) {
        return NULL;
    }
    return apr_pstrcat(p, "$",
                       mxf_b64_encode(p, h, sizeof(h),
                                      rv->event_id_format == MXF_EVID_HASH_STD
                                      ? MXF_B64_STANDARD : MXF_B64_URLSAFE),
                       NULL);
}

const char *mxf_event_room_id_from_create(apr_pool_t *p, const json_t *create,
                                          const mxf_roomver_t *rv, const char **why)
{
    unsigned char h[MXF_SHA256_BYTES];

    if (rv == NULL || !rv->room_id_is_create_hash) {
        *why = "room IDs of this room version are not derived from the create event";
        return NULL;
    }
    if (!str_member_is(create, "type", "m.room.create")
        || !str_member_is(create, "state_key", "")) {
        *why = "not an m.room.create event with an empty state_key";
        return NULL;
    }
    if (json_object_get(create, "room_id")) {
        *why = "the m.room.create event of this room version must not carry a room_id";
        return NULL;
    }
    if (mxf_event_reference_hash(p, create, rv, h, why) != APR_SUCCESS) {
        return NULL;
    }
    return apr_pstrcat(p, "!", mxf_b64_encode(p, h, sizeof(h), MXF_B64_URLSAFE), NULL);
}

/* ------------------------------------------------------------------------
 * Signatures */

static void add_server(apr_array_header_t *servers, const char *name)
{
    int i;

    for (i = 0; i < servers->nelts; i++) {
        if (strcmp(APR_ARRAY_IDX(servers, i, const char *), name) == 0) {
            return;
        }
    }
    APR_ARRAY_PUSH(servers, const char *) = name;
}

/* The server of user ID member @a key of @a obj, or NULL with *why. */
static const char *user_server(apr_pool_t *p, const json_t *obj, const char *key,
                               const char **why)
{
    apr_size_t len;
    const char *uid = str_member(obj, key, &len);

    if (uid == NULL || !mxf_id_user_valid(uid, len)) {
        *why = apr_psprintf(p, "%s is missing or not a valid user ID", key);
        return NULL;
    }
    return mxf_id_server_of(p, uid);
}

apr_status_t mxf_event_required_signers(apr_pool_t *p, const json_t *pdu,
                                        const mxf_roomver_t *rv,
                                        apr_array_header_t **servers,
                                        const char **why)
{
    const json_t *content = json_object_get(pdu, "content");
    const char *sender_server, *s;
    int is_member = str_member_is(pdu, "type", "m.room.member");
    apr_array_header_t *out;

    if (rv == NULL || !json_is_object(pdu)) {
        *why = rv ? "event is not a JSON object" : "unknown room version";
        return APR_EINVAL;
    }
    out = apr_array_make(p, 3, sizeof(const char *));
    if ((sender_server = user_server(p, pdu, "sender", why)) == NULL) {
        return APR_EINVAL;
    }
    if (!(is_member && str_member_is(content, "membership", "invite")
          && json_is_object(json_object_get(content, "third_party_invite")))) {
        add_server(out, sender_server);
    }
    if (rv->event_id_format == MXF_EVID_CARRIED) {
        apr_size_t len;
        const char *id = str_member(pdu, "event_id", &len);
        if (id == NULL || !mxf_id_event_valid(id, len, rv)
            || (s = mxf_id_server_of(p, id)) == NULL) {
            *why = "event_id is missing or not a valid \"$opaque:server\" event ID";
            return APR_EINVAL;
        }
        if (strcmp(s, sender_server) != 0) {
            add_server(out, s);
        }
    }
    if (rv->restricted && is_member && str_member_is(content, "membership", "join")
        && json_object_get(content, "join_authorised_via_users_server")) {
        if ((s = user_server(p, content, "join_authorised_via_users_server", why)) == NULL) {
            return APR_EINVAL;
        }
        add_server(out, s);
    }
    *servers = out;
    return APR_SUCCESS;
}

static apr_status_t verify_server(apr_pool_t *p, const json_t *pdu, const mxf_roomver_t *rv,
                                  const char *bytes, apr_size_t len, const char *server,
                                  mxf_event_key_lookup_cb *lookup, void *baton,
                                  const char **why)
{
    json_t *sigs = json_object_get(json_object_get(pdu, "signatures"), server);
    json_t *ts = json_object_get(pdu, "origin_server_ts");
    apr_int64_t origin_ts = json_is_integer(ts) ? (apr_int64_t)json_integer_value(ts) : 0;
    const char *key_id;
    json_t *sig;
    int known = 0;

    if (!json_is_object(sigs)) {
        *why = apr_psprintf(p, "no signatures from %s", server);
        return MXF_SIG_MISSING;
    }
    json_object_foreach((json_t *)sigs, key_id, sig) {
        unsigned char pk[MXF_ED25519_PK_BYTES];
        const char *vwhy = NULL;
        apr_status_t st;

        if (!mxf_id_key_id_is_ed25519(key_id)) {
            continue;                    /* algorithm not understood: skipped */
        }
        st = lookup(baton, p, server, key_id, origin_ts, rv, pk);
        if (st == APR_NOTFOUND) {
            continue;                    /* unknown or expired key: skipped */
        }
        if (st != APR_SUCCESS) {
            *why = apr_psprintf(p, "cannot look up key %s of %s", key_id, server);
            return st;
        }
        known++;
        if (!json_is_string(sig)) {
            *why = apr_psprintf(p, "signature %s of %s is not a string", key_id, server);
            return MXF_SIG_MALFORMED;
        }
        st = mxf_verify_bytes(bytes, len, json_string_value(sig), pk, &vwhy);
        if (st != APR_SUCCESS) {
            *why = apr_psprintf(p, "signature %s of %s: %s", key_id, server, vwhy);
            return st;
        }
    }
    if (known == 0) {
        *why = apr_psprintf(p, "no signature from %s by a known key", server);
        return MXF_SIG_MISSING;
    }
    return APR_SUCCESS;
}

apr_status_t mxf_event_verify_signatures(apr_pool_t *p, const json_t *pdu,
                                         const mxf_roomver_t *rv,
                                         mxf_event_key_lookup_cb *lookup,
                                         void *baton, const char **why)
{
    apr_array_header_t *servers;
    json_t *redacted;
    const char *bytes;
    apr_size_t len;
    apr_status_t st;
    int i;

    if ((st = mxf_event_required_signers(p, pdu, rv, &servers, why)) != APR_SUCCESS) {
        return st;
    }
    if ((redacted = mxf_event_redact(p, pdu, rv)) == NULL) {
        *why = "cannot redact event";
        return APR_EINVAL;
    }
    bytes = mxf_sign_signable_bytes(p, redacted, canon_flags(rv), &len, why);
    if (bytes == NULL) {
        return MXF_SIG_MALFORMED;
    }
    for (i = 0; i < servers->nelts; i++) {
        st = verify_server(p, pdu, rv, bytes, len, APR_ARRAY_IDX(servers, i, const char *),
                           lookup, baton, why);
        if (st != APR_SUCCESS) {
            return st;
        }
    }
    return APR_SUCCESS;
}

apr_status_t mxf_event_sign(apr_pool_t *p, json_t *pdu, const mxf_roomver_t *rv,
                            const char *server_name, const mxf_signing_key_t *key,
                            const char **why)
{
    const char *hash, *bytes, *sig;
    json_t *hashes, *redacted, *sigs, *mine;
    apr_size_t len;

    if (rv == NULL || !json_is_object(pdu)) {
        *why = rv ? "event is not a JSON object" : "unknown room version";
        return APR_EINVAL;
    }
    if ((hash = mxf_event_content_hash_b64(p, pdu, rv, why)) == NULL) {
        return APR_EINVAL;
    }
    hashes = json_object_get(pdu, "hashes");
    hashes = json_is_object(hashes) ? json_copy(hashes) : json_object();
    if (hashes == NULL
        || json_object_set_new(hashes, "sha256", json_string(hash)) != 0
        || json_object_set_new(pdu, "hashes", hashes) != 0) {
        *why = "out of memory";
        return APR_ENOMEM;
    }
    if ((redacted = mxf_event_redact(p, pdu, rv)) == NULL) {
        *why = "cannot redact event";
        return APR_EINVAL;
    }
    /* Signed bytes: the redacted form less signatures, encoded as verifiers will. */
    bytes = mxf_sign_signable_bytes(p, redacted, canon_flags(rv), &len, why);
    if (bytes == NULL) {
        return APR_EINVAL;
    }
    sig = mxf_sign_bytes(p, key, bytes, len);
    /* Copies, so objects shared with other values are never changed. */
    sigs = json_object_get(pdu, "signatures");
    sigs = json_is_object(sigs) ? json_deep_copy(sigs) : json_object();
    mine = json_object_get(sigs, server_name);
    if (mine && !json_is_object(mine)) {
        json_decref(sigs);
        *why = apr_psprintf(p, "signatures of %s is not an object", server_name);
        return APR_EINVAL;
    }
    if (mine == NULL) {
        json_object_set_new(sigs, server_name, mine = json_object());
    }
    if (mine == NULL || json_object_set_new(mine, key->key_id, json_string(sig)) != 0
        || json_object_set_new(pdu, "signatures", sigs) != 0) {
        *why = "out of memory";
        return APR_ENOMEM;
    }
    return APR_SUCCESS;
}

/* ------------------------------------------------------------------------
 * Size limits */

/* Code points of @a len bytes of UTF-8 (jansson has checked the encoding). */
static apr_size_t utf8_code_points(const char *s, apr_size_t len)
{
    apr_size_t i, n = 0;

    for (i = 0; i < len; i++) {
        n += ((unsigned char)s[i] & 0xc0) != 0x80;
    }
    return n;
}

/*
 * The cap of @a key: over @a cap bytes fails, unless the room version is
 * lenient and the value is within @a cap code points (the importer rejects
 * such an event instead, see mxf_event_check_field_bytes()).
 */
static apr_status_t check_str_cap(apr_pool_t *p, const json_t *pdu, const char *key,
                                  apr_size_t cap, const mxf_roomver_t *rv, const char **why)
{
    apr_size_t len;
    const char *s = str_member(pdu, key, &len);

    if (s && len > cap && !(rv && rv->lenient_byte_limits && utf8_code_points(s, len) <= cap)) {
        *why = apr_psprintf(p, "%s is %" APR_SIZE_T_FMT " bytes long, over the limit of %"
                            APR_SIZE_T_FMT, key, len, cap);
        return APR_EINVAL;
    }
    return APR_SUCCESS;
}

apr_status_t mxf_event_check_field_bytes(apr_pool_t *p, const char *key, const char *value,
                                         const char **why)
{
    apr_size_t len = value ? strlen(value) : 0;

    if (len > MXF_EVENT_MAX_KEY_BYTES) {
        *why = apr_psprintf(p, "%s is %" APR_SIZE_T_FMT " bytes long, over the limit of %d",
                            key, len, MXF_EVENT_MAX_KEY_BYTES);
        return APR_EINVAL;
    }
    return APR_SUCCESS;
}

static apr_status_t check_count(apr_pool_t *p, const json_t *pdu, const char *key,
                                apr_size_t cap, const char **why)
{
    json_t *a = json_object_get(pdu, key);

    if (json_is_array(a) && json_array_size(a) > cap) {
        *why = apr_psprintf(p, "%s lists %" APR_SIZE_T_FMT " events, over the limit of %"
                            APR_SIZE_T_FMT, key, (apr_size_t)json_array_size(a), cap);
        return APR_EINVAL;
    }
    return APR_SUCCESS;
}

apr_status_t mxf_event_check_limits(apr_pool_t *p, const json_t *pdu,
                                    const mxf_roomver_t *rv, unsigned flags,
                                    const char **why)
{
    apr_size_t len;

    if (!json_is_object(pdu)) {
        *why = "event is not a JSON object";
        return APR_EINVAL;
    }
    if (check_str_cap(p, pdu, "sender", MXF_ID_MAX_BYTES, rv, why) != APR_SUCCESS
        || check_str_cap(p, pdu, "room_id", MXF_ID_MAX_BYTES, rv, why) != APR_SUCCESS
        || check_str_cap(p, pdu, "event_id", MXF_ID_MAX_BYTES, rv, why) != APR_SUCCESS
        || check_str_cap(p, pdu, "type", MXF_EVENT_MAX_KEY_BYTES, rv, why) != APR_SUCCESS
        || check_str_cap(p, pdu, "state_key", MXF_EVENT_MAX_KEY_BYTES, rv, why)
           != APR_SUCCESS) {
        return APR_EINVAL;
    }
    if (!(flags & MXF_EVENT_LIMITS_NO_EDGE_COUNTS)
        && (check_count(p, pdu, "prev_events", MXF_EVENT_MAX_PREV_EVENTS, why) != APR_SUCCESS
            || check_count(p, pdu, "auth_events", MXF_EVENT_MAX_AUTH_EVENTS, why)
               != APR_SUCCESS)) {
        return APR_EINVAL;
    }
    if (flags & MXF_EVENT_LIMITS_SIZE_KNOWN) {
        return APR_SUCCESS;
    }
    if (mxf_canonical_encode_ex(p, pdu, canon_flags(rv), &len, why) == NULL) {
        return APR_EINVAL;
    }
    if (len > MXF_EVENT_MAX_BYTES) {
        *why = apr_psprintf(p, "event is %" APR_SIZE_T_FMT " bytes of canonical JSON, over "
                            "the limit of %d", len, MXF_EVENT_MAX_BYTES);
        return APR_EINVAL;
    }
    return APR_SUCCESS;
}
