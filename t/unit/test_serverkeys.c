/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#include <string.h>

#include <apr_strings.h>

#include "mxf_base64.h"
#include "mxf_serverkeys.h"
#include "mxf_sign.h"
#include "mxf_test.h"

#define SPEC_SEED "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
#define SPEC_PUBKEY "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI"
#define NOW 1700000000000LL

static mxf_signing_key_t *spec_key(void)
{
    mxf_signing_key_t *key = NULL;
    const char *why = NULL;

    ck_assert_int_eq(mxf_key_parse(mxf_test_pool, "ed25519 1 " SPEC_SEED, &key, &why),
                     APR_SUCCESS);
    return key;
}

/* A freshly generated key, not the spec's. */
static mxf_signing_key_t *another_key(void)
{
    mxf_signing_key_t *other = NULL;
    const char *why = NULL;

    ck_assert_int_eq(mxf_key_generate(mxf_test_pool, "x", &other, &why), APR_SUCCESS);
    return other;
}

/* example.org's Server Keys object with @a key, valid for a second after NOW. */
static json_t *spec_keys_object(const mxf_signing_key_t *key)
{
    const char *why = NULL;
    json_t *obj = mxf_serverkeys_build(mxf_test_pool, "example.org", key, NOW + 1000, NULL,
                                       &why);

    ck_assert_ptr_nonnull(obj);
    return obj;
}

/* @a obj, signed again with @a signer alone, is refused: signed by none of its keys. */
static void assert_signed_by_none(json_t *obj, const mxf_signing_key_t *signer)
{
    apr_array_header_t *keys = NULL;
    const char *why = NULL;

    json_object_del(obj, "signatures");
    ck_assert_int_eq(mxf_sign_json(mxf_test_pool, obj, "example.org", signer, &why),
                     APR_SUCCESS);
    ck_assert_int_eq(mxf_serverkeys_verify(mxf_test_pool, obj, "example.org", NOW, &keys,
                                           &why), APR_EINVAL);
    ck_assert_ptr_nonnull(strstr(why, "not signed by any"));
}

static apr_array_header_t *one_old_key(void)
{
    apr_array_header_t *old = apr_array_make(mxf_test_pool, 1, sizeof(mxf_server_key_t));
    mxf_server_key_t *k = apr_array_push(old);

    memset(k, 0, sizeof(*k));
    k->key_id = "ed25519:old";
    memset(k->pk, 7, sizeof(k->pk));
    k->expired_ts = 1500000000000LL;
    return old;
}

START_TEST(build_and_verify)
{
    mxf_signing_key_t *key = spec_key();
    apr_array_header_t *keys = NULL;
    const mxf_server_key_t *k;
    const char *why = NULL;
    json_t *obj = mxf_serverkeys_build(mxf_test_pool, "example.org", key,
                                       NOW + 3600000, one_old_key(), &why);

    ck_assert_ptr_nonnull(obj);
    ck_assert_str_eq(json_string_value(json_object_get(
        json_object_get(json_object_get(obj, "verify_keys"), "ed25519:1"), "key")),
        SPEC_PUBKEY);
    ck_assert_int_eq(json_integer_value(json_object_get(
        json_object_get(json_object_get(obj, "old_verify_keys"), "ed25519:old"),
        "expired_ts")), 1500000000000LL);
    ck_assert_int_eq(mxf_verify_json(mxf_test_pool, obj, "example.org", "ed25519:1",
                                     key->pk, &why), APR_SUCCESS);
    ck_assert_int_eq(mxf_serverkeys_verify(mxf_test_pool, obj, "example.org", NOW, &keys,
                                           &why), APR_SUCCESS);
    ck_assert_int_eq(keys->nelts, 2);
    k = mxf_serverkeys_find(keys, "ed25519:1");
    ck_assert_ptr_nonnull(k);
    ck_assert_int_eq(k->valid_until_ts, NOW + 3600000);
    ck_assert_int_eq(k->expired_ts, 0);
    ck_assert_int_eq(memcmp(k->pk, key->pk, 32), 0);
    k = mxf_serverkeys_find(keys, "ed25519:old");
    ck_assert_ptr_nonnull(k);
    ck_assert_int_eq(k->expired_ts, 1500000000000LL);
    ck_assert_ptr_null(mxf_serverkeys_find(keys, "ed25519:nope"));
}
END_TEST

START_TEST(validity_capped_at_seven_days)
{
    mxf_signing_key_t *key = spec_key();
    apr_array_header_t *keys = NULL;
    const char *why = NULL;
    json_t *obj = mxf_serverkeys_build(mxf_test_pool, "example.org", key,
                                       NOW + 30LL * 24 * 3600000, NULL, &why);

    ck_assert_int_eq(mxf_serverkeys_verify(mxf_test_pool, obj, "example.org", NOW, &keys,
                                           &why), APR_SUCCESS);
    ck_assert_int_eq(APR_ARRAY_IDX(keys, 0, mxf_server_key_t).valid_until_ts,
                     NOW + MXF_SERVERKEYS_MAX_VALIDITY_MS);
}
END_TEST

START_TEST(verify_rejects)
{
    mxf_signing_key_t *key = spec_key(), *other = another_key();
    apr_array_header_t *keys = NULL;
    const char *why = NULL;
    json_t *obj = spec_keys_object(key), *copy;

    /* Another server's name. */
    ck_assert_int_eq(mxf_serverkeys_verify(mxf_test_pool, obj, "evil.example", NOW, &keys,
                                           &why), APR_EINVAL);
    ck_assert_ptr_nonnull(strstr(why, "evil.example"));

    /* Tampered validity breaks the self-signature. */
    copy = mxf_json_own(mxf_test_pool, json_deep_copy(obj));
    json_object_set_new(copy, "valid_until_ts", json_integer(NOW + 2000));
    ck_assert_int_eq(mxf_serverkeys_verify(mxf_test_pool, copy, "example.org", NOW, &keys,
                                           &why), APR_EINVAL);
    ck_assert_ptr_nonnull(strstr(why, "does not verify"));

    /* No signatures at all. */
    copy = mxf_json_own(mxf_test_pool, json_deep_copy(obj));
    json_object_del(copy, "signatures");
    ck_assert_int_eq(mxf_serverkeys_verify(mxf_test_pool, copy, "example.org", NOW, &keys,
                                           &why), APR_EINVAL);

    /* Signed only by a key it does not list. */
    assert_signed_by_none(mxf_json_own(mxf_test_pool, json_deep_copy(obj)), other);

    /* Malformed key material and shapes. */
    copy = mxf_json_own(mxf_test_pool, json_deep_copy(obj));
    json_object_set_new(copy, "verify_keys", json_pack("{s:{s:s}}", "ed25519:1", "key", "AAAA"));
    ck_assert_int_eq(mxf_serverkeys_verify(mxf_test_pool, copy, "example.org", NOW, &keys,
                                           &why), APR_EINVAL);
    copy = mxf_json_own(mxf_test_pool, json_deep_copy(obj));
    json_object_set_new(copy, "verify_keys", json_object());
    ck_assert_int_eq(mxf_serverkeys_verify(mxf_test_pool, copy, "example.org", NOW, &keys,
                                           &why), APR_EINVAL);
    copy = mxf_json_own(mxf_test_pool, json_deep_copy(obj));
    json_object_set_new(copy, "valid_until_ts", json_string("soon"));
    ck_assert_int_eq(mxf_serverkeys_verify(mxf_test_pool, copy, "example.org", NOW, &keys,
                                           &why), APR_EINVAL);
    ck_assert_int_eq(mxf_serverkeys_verify(mxf_test_pool,
                                           mxf_json_own(mxf_test_pool, json_array()),
                                           "example.org", NOW,
                                           &keys, &why), APR_EINVAL);
}
END_TEST

START_TEST(other_algorithms_skipped)
{
    mxf_signing_key_t *key = spec_key(), *other = another_key();
    apr_array_header_t *keys = NULL;
    const char *why = NULL;
    json_t *obj = spec_keys_object(key), *copy;
    /* Keys of another algorithm, or IDs this server cannot use, beside the ed25519 key;
     * an old key that expired at 0. Signed again after the change. */
    json_object_set_new(json_object_get(obj, "verify_keys"), "curve25519:x",
                        json_pack("{s:s}", "key", "not a key"));
    json_object_set_new(json_object_get(obj, "verify_keys"), "ed25519:a-b",
                        json_pack("{s:s}", "key", SPEC_PUBKEY));
    json_object_set_new(obj, "old_verify_keys",
                        json_pack("{s:{s:s,s:i},s:{s:s,s:I}}",
                                  "foo:o", "key", "AAAA", "expired_ts", 5,
                                  "ed25519:zero", "key", SPEC_PUBKEY, "expired_ts",
                                  (json_int_t)0));
    json_object_del(obj, "signatures");
    ck_assert_int_eq(mxf_sign_json(mxf_test_pool, obj, "example.org", key, &why),
                     APR_SUCCESS);
    ck_assert_int_eq(mxf_serverkeys_verify(mxf_test_pool, obj, "example.org", NOW, &keys,
                                           &why), APR_SUCCESS);
    ck_assert_int_eq(keys->nelts, 2);
    ck_assert_ptr_nonnull(mxf_serverkeys_find(keys, "ed25519:1"));
    ck_assert_ptr_null(mxf_serverkeys_find(keys, "curve25519:x"));
    ck_assert_ptr_null(mxf_serverkeys_find(keys, "ed25519:a-b"));
    ck_assert_ptr_null(mxf_serverkeys_find(keys, "foo:o"));
    /* Expired at 0: old (expired_ts 0 would mean current). */
    ck_assert_int_eq(mxf_serverkeys_find(keys, "ed25519:zero")->expired_ts, 1);

    /* A response whose only verify key is of another algorithm is signed by none. */
    copy = mxf_json_own(mxf_test_pool, json_deep_copy(obj));
    json_object_set_new(copy, "verify_keys",
                        json_pack("{s:{s:s}}", "curve25519:x", "key", SPEC_PUBKEY));
    assert_signed_by_none(copy, other);
}
END_TEST

START_TEST(notary_signature)
{
    mxf_signing_key_t *key = spec_key(), *notary = NULL, *wrong = NULL;
    apr_array_header_t *keys = NULL;
    const char *why = NULL;
    json_t *obj;

    ck_assert_int_eq(mxf_key_generate(mxf_test_pool, "n", &notary, &why), APR_SUCCESS);
    ck_assert_int_eq(mxf_key_generate(mxf_test_pool, "w", &wrong, &why), APR_SUCCESS);
    obj = mxf_serverkeys_build(mxf_test_pool, "example.org", key, NOW + 1000, NULL, &why);
    ck_assert_int_eq(mxf_serverkeys_check_signer(mxf_test_pool, obj, "notary.example",
                                                 notary->pk, &why), APR_EACCES);
    ck_assert_int_eq(mxf_sign_json(mxf_test_pool, obj, "notary.example", notary, &why),
                     APR_SUCCESS);
    ck_assert_int_eq(mxf_serverkeys_check_signer(mxf_test_pool, obj, "notary.example",
                                                 notary->pk, &why), APR_SUCCESS);
    ck_assert_int_eq(mxf_serverkeys_check_signer(mxf_test_pool, obj, "notary.example",
                                                 wrong->pk, &why), APR_EACCES);
    /* The notary's signature does not disturb the origin's self-signature. */
    ck_assert_int_eq(mxf_serverkeys_verify(mxf_test_pool, obj, "example.org", NOW, &keys,
                                           &why), APR_SUCCESS);
}
END_TEST

Suite *mxf_suite_serverkeys(void)
{
    Suite *s = suite_create("serverkeys");
    TCase *tc = mxf_test_case("serverkeys");

    tcase_add_test(tc, build_and_verify);
    tcase_add_test(tc, validity_capped_at_seven_days);
    tcase_add_test(tc, verify_rejects);
    tcase_add_test(tc, other_algorithms_skipped);
    tcase_add_test(tc, notary_signature);
    suite_add_tcase(s, tc);
    return s;
}
