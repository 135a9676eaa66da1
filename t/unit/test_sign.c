/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#include <string.h>

#include <apr_strings.h>

#include "mxf_base64.h"
#include "mxf_canonical.h"
#include "mxf_json.h"
#include "mxf_key.h"
#include "mxf_sign.h"
#include "mxf_test.h"

/* Spec digest section 9.5: the test signing key. */
#define SPEC_SEED   "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
#define SPEC_PUBKEY "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI"
#define SIG_EMPTY   "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"
#define SIG_ONE_TWO "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"

static mxf_signing_key_t *spec_key(void)
{
    mxf_signing_key_t *key = NULL;
    const char *why = NULL;

    ck_assert_int_eq(mxf_key_parse(mxf_test_pool, "ed25519 1 " SPEC_SEED, &key, &why),
                     APR_SUCCESS);
    ck_assert_str_eq(mxf_b64_encode(mxf_test_pool, key->pk, 32, MXF_B64_STANDARD),
                     SPEC_PUBKEY);
    return key;
}


/* The two JSON signing vectors of the spec, exactly. */
START_TEST(spec_json_vectors)
{
    mxf_signing_key_t *key = spec_key();
    const char *why = NULL;
    json_t *j;

    j = mxf_test_parse("{}");
    ck_assert_int_eq(mxf_sign_json(mxf_test_pool, j, "domain", key, &why), APR_SUCCESS);
    ck_assert_str_eq(mxf_test_canon(j),
                     "{\"signatures\":{\"domain\":{\"ed25519:1\":\"" SIG_EMPTY "\"}}}");
    ck_assert_int_eq(mxf_verify_json(mxf_test_pool, j, "domain", "ed25519:1", key->pk, &why),
                     APR_SUCCESS);

    j = mxf_test_parse("{\"one\": 1, \"two\": \"Two\"}");
    ck_assert_int_eq(mxf_sign_json(mxf_test_pool, j, "domain", key, &why), APR_SUCCESS);
    ck_assert_str_eq(mxf_test_canon(j),
                     "{\"one\":1,\"signatures\":{\"domain\":{\"ed25519:1\":\"" SIG_ONE_TWO
                     "\"}},\"two\":\"Two\"}");
    ck_assert_int_eq(mxf_verify_json(mxf_test_pool, j, "domain", "ed25519:1", key->pk, &why),
                     APR_SUCCESS);
}
END_TEST

/* Existing signatures and `unsigned` stay; neither is covered. */
START_TEST(sign_keeps_others)
{
    mxf_signing_key_t *key = spec_key();
    const char *why = NULL;
    json_t *j = mxf_test_parse("{\"two\":\"Two\",\"unsigned\":{\"age_ts\":5},\"one\":1,"
                      "\"signatures\":{\"other.example\":{\"ed25519:x\":\"abc\"},"
                      "\"domain\":{\"ed25519:0\":\"old\"}}}");
    json_t *orig_sigs = json_object_get(j, "signatures");

    json_incref(orig_sigs);
    ck_assert_int_eq(mxf_sign_json(mxf_test_pool, j, "domain", key, &why), APR_SUCCESS);
    ck_assert_str_eq(mxf_test_canon(j),
                     "{\"one\":1,\"signatures\":{\"domain\":{\"ed25519:0\":\"old\","
                     "\"ed25519:1\":\"" SIG_ONE_TWO "\"},\"other.example\":"
                     "{\"ed25519:x\":\"abc\"}},\"two\":\"Two\",\"unsigned\":{\"age_ts\":5}}");
    /* The previous signatures object was not modified in place. */
    ck_assert_str_eq(mxf_test_canon(orig_sigs),
                     "{\"domain\":{\"ed25519:0\":\"old\"},\"other.example\":"
                     "{\"ed25519:x\":\"abc\"}}");
    json_decref(orig_sigs);
    ck_assert_int_eq(mxf_verify_json(mxf_test_pool, j, "domain", "ed25519:1", key->pk, &why),
                     APR_SUCCESS);
}
END_TEST

START_TEST(sign_rejects)
{
    mxf_signing_key_t *key = spec_key();
    const char *why;
    json_t *j;

    why = NULL;
    j = mxf_json_own(mxf_test_pool, json_array());
    ck_assert_int_eq(mxf_sign_json(mxf_test_pool, j, "domain", key, &why), APR_EINVAL);
    ck_assert_ptr_nonnull(why);
    why = NULL;
    j = mxf_test_parse("{\"signatures\":[]}");
    ck_assert_int_eq(mxf_sign_json(mxf_test_pool, j, "domain", key, &why), APR_EINVAL);
    ck_assert_ptr_nonnull(why);
    why = NULL;
    j = mxf_test_parse("{\"signatures\":{\"domain\":\"x\"}}");
    ck_assert_int_eq(mxf_sign_json(mxf_test_pool, j, "domain", key, &why), APR_EINVAL);
    ck_assert_ptr_nonnull(why);
    why = NULL;
    j = mxf_json_own(mxf_test_pool, json_pack("{s:f}", "x", 0.5));
    ck_assert_int_eq(mxf_sign_json(mxf_test_pool, j, "domain", key, &why), APR_EINVAL);
    ck_assert_ptr_nonnull(why);
    ck_assert_ptr_null(json_object_get(j, "signatures"));
}
END_TEST

START_TEST(verify_failures)
{
    mxf_signing_key_t *key = spec_key();
    static const struct { const char *json; apr_status_t want; } cases[] = {
        { "{\"one\":1,\"two\":\"Two\"}", MXF_SIG_MISSING },
        { "{\"one\":1,\"two\":\"Two\",\"signatures\":{}}", MXF_SIG_MISSING },
        { "{\"one\":1,\"two\":\"Two\",\"signatures\":{\"domain\":{}}}", MXF_SIG_MISSING },
        { "{\"one\":1,\"two\":\"Two\",\"signatures\":{\"domain\":{\"ed25519:2\":\""
          SIG_ONE_TWO "\"}}}", MXF_SIG_MISSING },
        { "{\"one\":1,\"two\":\"Two\",\"signatures\":[]}", MXF_SIG_MALFORMED },
        { "{\"one\":1,\"two\":\"Two\",\"signatures\":{\"domain\":[]}}", MXF_SIG_MALFORMED },
        { "{\"one\":1,\"two\":\"Two\",\"signatures\":{\"domain\":{\"ed25519:1\":1}}}",
          MXF_SIG_MALFORMED },
        { "{\"one\":1,\"two\":\"Two\",\"signatures\":{\"domain\":{\"ed25519:1\":\"!!\"}}}",
          MXF_SIG_MALFORMED },
        { "{\"one\":1,\"two\":\"Two\",\"signatures\":{\"domain\":{\"ed25519:1\":\"Zm9v\"}}}",
          MXF_SIG_MALFORMED },
        /* A changed value, a signature of other bytes. */
        { "{\"one\":2,\"two\":\"Two\",\"signatures\":{\"domain\":{\"ed25519:1\":\""
          SIG_ONE_TWO "\"}}}", MXF_SIG_BAD },
        { "{\"one\":1,\"two\":\"Two\",\"signatures\":{\"domain\":{\"ed25519:1\":\""
          SIG_EMPTY "\"}}}", MXF_SIG_BAD },
        /* unsigned is not covered; padded base64 is accepted. */
        { "{\"one\":1,\"two\":\"Two\",\"unsigned\":{\"x\":1},\"signatures\":{\"domain\":"
          "{\"ed25519:1\":\"" SIG_ONE_TWO "==\"}}}", APR_SUCCESS },
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *why = NULL;
        apr_status_t rv = mxf_verify_json(mxf_test_pool, mxf_test_parse(cases[i].json), "domain",
                                          "ed25519:1", key->pk, &why);

        ck_assert_msg(rv == cases[i].want, "case %u: got %d (%s)", (unsigned)i, rv,
                      why ? why : "-");
        if (rv != APR_SUCCESS) {
            ck_assert_ptr_nonnull(why);
        }
    }
}
END_TEST

START_TEST(signable_copy)
{
    json_t *j = mxf_test_parse("{\"a\":1,\"signatures\":{},\"unsigned\":{},\"b\":{\"c\":2}}");
    json_t *s = mxf_sign_signable(mxf_test_pool, j);

    ck_assert_str_eq(mxf_test_canon(s), "{\"a\":1,\"b\":{\"c\":2}}");
    ck_assert_str_eq(mxf_test_canon(j), "{\"a\":1,\"b\":{\"c\":2},\"signatures\":{},\"unsigned\":{}}");
    ck_assert_ptr_eq(json_object_get(s, "b"), json_object_get(j, "b"));   /* shallow */
    ck_assert_ptr_null(mxf_sign_signable(mxf_test_pool, json_true()));
}
END_TEST

/* Derived vectors of the digest (9.5): event 1, X-Matrix requests. */
START_TEST(bytes_vectors)
{
    static const struct { const char *bytes, *sig; } cases[] = {
        { "{\"auth_events\":[],\"content\":{},\"depth\":3,\"hashes\":{\"sha256\":"
          "\"5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos\"},\"origin\":\"domain\","
          "\"origin_server_ts\":1000000,\"prev_events\":[],\"room_id\":\"!x:domain\","
          "\"sender\":\"@a:domain\",\"type\":\"X\"}",
          "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg" },
        { "{\"destination\":\"dest.example\",\"method\":\"GET\",\"origin\":\"domain\","
          "\"uri\":\"/_matrix/federation/v1/backfill/%21r%3Adomain?v=%240%3Adomain&limit=10\"}",
          "LxVbZLgL2WmV22awSDrxiVcJ+YfoOpGXjbBjyjPKkXQMHW55Zzg26W1Jmyfz4wIm+vMfKY0azpBKvxSR88KDCg" },
        { "{\"content\":{\"earliest_events\":[],\"latest_events\":[\"$0:domain\"],\"limit\":10,"
          "\"min_depth\":0},\"destination\":\"dest.example\",\"method\":\"POST\","
          "\"origin\":\"domain\",\"uri\":\"/_matrix/federation/v1/get_missing_events/"
          "%21r%3Adomain\"}",
          "+LwkhxBw1gq2Jz7Zdo/RweCtKsGcbj6aJZ/R4GVz4r2dtZaC3KUlT9oF9CRA2IpzEquQzO2Ov7zZbtBFK5pkBQ" },
    };
    mxf_signing_key_t *key = spec_key();
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *why = NULL;
        const char *b = cases[i].bytes;

        /* The bytes are canonical already: re-encoding must not change them. */
        ck_assert_str_eq(mxf_test_canon(mxf_test_parse(b)), b);
        ck_assert_str_eq(mxf_sign_bytes(mxf_test_pool, key, b, strlen(b)), cases[i].sig);
        ck_assert_int_eq(mxf_verify_bytes(b, strlen(b), cases[i].sig, key->pk, &why),
                         APR_SUCCESS);
        ck_assert_int_eq(mxf_verify_bytes(b, strlen(b) - 1, cases[i].sig, key->pk, &why),
                         MXF_SIG_BAD);
    }
}
END_TEST

START_TEST(sha256)
{
    static const char content[] =
        "{\"auth_events\":[],\"content\":{},\"depth\":3,\"origin\":\"domain\","
        "\"origin_server_ts\":1000000,\"prev_events\":[],\"room_id\":\"!x:domain\","
        "\"sender\":\"@a:domain\",\"type\":\"X\"}";

    ck_assert_str_eq(mxf_sha256_b64(mxf_test_pool, content, strlen(content),
                                    MXF_B64_STANDARD),
                     "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos");
    ck_assert_str_eq(mxf_sha256_b64(mxf_test_pool, "", 0, MXF_B64_STANDARD),
                     "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU");
    ck_assert_str_eq(mxf_sha256_b64(mxf_test_pool, "", 0, MXF_B64_URLSAFE),
                     "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU");
}
END_TEST

Suite *mxf_suite_sign(void)
{
    Suite *s = suite_create("sign");
    TCase *tc = mxf_test_case("json");

    tcase_add_test(tc, spec_json_vectors);
    tcase_add_test(tc, sign_keeps_others);
    tcase_add_test(tc, sign_rejects);
    tcase_add_test(tc, verify_failures);
    tcase_add_test(tc, signable_copy);
    tcase_add_test(tc, bytes_vectors);
    tcase_add_test(tc, sha256);
    suite_add_tcase(s, tc);
    return s;
}
