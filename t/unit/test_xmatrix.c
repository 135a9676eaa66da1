/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#include <string.h>

#include <apr_strings.h>

#include "mxf_canonical.h"
#include "mxf_key.h"
#include "mxf_xmatrix.h"
#include "mxf_test.h"

/* The spec's signing test key and the digest's X-Matrix vectors (9.5). */
#define SPEC_KEY_LINE "ed25519 1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
#define GET_URI "/_matrix/federation/v1/backfill/%21r%3Adomain?v=%240%3Adomain&limit=10"
#define GET_BYTES "{\"destination\":\"dest.example\",\"method\":\"GET\",\"origin\":\"domain\"," \
    "\"uri\":\"/_matrix/federation/v1/backfill/%21r%3Adomain?v=%240%3Adomain&limit=10\"}"
#define GET_SIG "LxVbZLgL2WmV22awSDrxiVcJ+YfoOpGXjbBjyjPKkXQMHW55Zzg26W1Jmyfz4wIm+vMfKY0azpBKvxSR88KDCg"
#define POST_URI "/_matrix/federation/v1/get_missing_events/%21r%3Adomain"
#define POST_BODY "{\"limit\": 10, \"min_depth\": 0, \"earliest_events\": [], " \
    "\"latest_events\": [\"$0:domain\"]}"
#define POST_BYTES "{\"content\":{\"earliest_events\":[],\"latest_events\":[\"$0:domain\"]," \
    "\"limit\":10,\"min_depth\":0},\"destination\":\"dest.example\",\"method\":\"POST\"," \
    "\"origin\":\"domain\",\"uri\":\"/_matrix/federation/v1/get_missing_events/%21r%3Adomain\"}"
#define POST_SIG "+LwkhxBw1gq2Jz7Zdo/RweCtKsGcbj6aJZ/R4GVz4r2dtZaC3KUlT9oF9CRA2IpzEquQzO2Ov7zZbtBFK5pkBQ"

static mxf_xmatrix_t *parse_ok(const char *hdr)
{
    mxf_xmatrix_t *xm = NULL;
    const char *why = NULL;
    apr_status_t rv = mxf_xmatrix_parse(mxf_test_pool, hdr, &xm, &why);

    ck_assert_msg(rv == APR_SUCCESS, "rejected [%s]: %s", hdr, why ? why : "(no reason)");
    ck_assert_ptr_nonnull(xm);
    return xm;
}

START_TEST(accepts_forms)
{
    static const struct {
        const char *hdr;
        const char *origin, *destination, *key;
    } ok[] = {
        /* The sender form the spec recommends. */
        { "X-Matrix origin=\"domain\",destination=\"dest.example\",key=\"ed25519:1\",sig=\""
          GET_SIG "\"", "domain", "dest.example", "ed25519:1" },
        /* Tokens, ':' in an unquoted value, no destination. */
        { "X-Matrix origin=origin.example:8448,key=ed25519:a_B9,sig=\"" GET_SIG "\"",
          "origin.example:8448", NULL, "ed25519:a_B9" },
        /* Case-insensitive scheme and names, any order, spaces and tabs around commas. */
        { "x-matrix SIG=\"" GET_SIG "\" ,\tKey=\"ed25519:1\"\t, Origin=\"domain\" ,"
          "DESTINATION=\"dest.example\"", "domain", "dest.example", "ed25519:1" },
        /* Unknown parameters ignored, empty list elements tolerated. */
        { "X-Matrix ,, origin=\"domain\",,foo=\"bar baz\", , key=\"ed25519:1\",sig=\""
          GET_SIG "\",unknown=tok,", "domain", NULL, "ed25519:1" },
        /* Backslash escapes are removed. */
        { "X-Matrix origin=\"do\\main\",key=\"ed25519:\\1\",sig=\"" GET_SIG "\"",
          "domain", NULL, "ed25519:1" },
        /* Padded signature, IPv6 literal origin. */
        { "X-Matrix origin=\"[1234:5678::abcd]:8448\",key=\"ed25519:1\",sig=\"" GET_SIG "==\"",
          "[1234:5678::abcd]:8448", NULL, "ed25519:1" },
        /* Unquoted base64 signature (contains '/' and '+'). */
        { "X-Matrix origin=domain,key=ed25519:1,sig=" POST_SIG, "domain", NULL, "ed25519:1" },
    };
    size_t i;

    for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        mxf_xmatrix_t *xm = parse_ok(ok[i].hdr);
        ck_assert_str_eq(xm->origin, ok[i].origin);
        if (ok[i].destination) {
            ck_assert_pstr_eq(xm->destination, ok[i].destination);
        }
        else {
            ck_assert_ptr_null(xm->destination);
        }
        ck_assert_str_eq(xm->key_id, ok[i].key);
        ck_assert_msg(strncmp(xm->sig, GET_SIG, 10) == 0 || strcmp(xm->sig, POST_SIG) == 0,
                      "sig %s", xm->sig);
    }
}
END_TEST

/* BWS around "=", several spaces after the scheme, unknown params ignored. */
START_TEST(bws_and_unknown)
{
    mxf_xmatrix_t *xm;

    xm = parse_ok("X-MATRIX   origin = \"domain\", key\t=\t\"ed25519:k\", key2=x,"
                  " sig =\"" GET_SIG "\", key_x=1");
    ck_assert_str_eq(xm->origin, "domain");
    ck_assert_str_eq(xm->key_id, "ed25519:k");
    ck_assert_str_eq(xm->sig, GET_SIG);
}
END_TEST

/* Each malformed header is rejected with a reason containing @a frag. */
START_TEST(rejects)
{
    static const struct {
        const char *hdr;
        const char *frag;
    } bad[] = {
        { "", "empty" },
        { "Bearer abc", "not X-Matrix" },
        { "X-Matrix", "missing parameter 'origin'" },
        { "X-Matrix origin=\"domain,key=\"ed25519:1\",sig=\"" GET_SIG "\"", "expected ','" },
        { "X-Matrix origin=\"domain\",key=\"ed25519:1\",sig=\"" GET_SIG "\",x=\"", "unterminated" },
        { "X-Matrix origin=\"domain\",key=\"ed25519:1\",sig=\"" GET_SIG, "unterminated" },
        { "X-Matrix origin=\"domain\",key=\"ed25519:1\",sig=\"" GET_SIG "\\", "unterminated" },
        { "X-Matrix key=\"ed25519:1\",sig=\"" GET_SIG "\"", "missing parameter 'origin'" },
        { "X-Matrix origin=domain,sig=\"" GET_SIG "\"", "missing parameter 'key'" },
        { "X-Matrix origin=domain,key=\"ed25519:1\"", "missing parameter 'sig'" },
        { "X-Matrix origin=domain,ORIGIN=domain,key=\"ed25519:1\",sig=\"" GET_SIG "\"",
          "duplicated parameter 'origin'" },
        { "X-Matrix origin=domain,key=ed25519:1,key=ed25519:1,sig=\"" GET_SIG "\"",
          "duplicated parameter 'key'" },
        { "X-Matrix origin=domain,key=ed25519:1,sig=\"" GET_SIG "\",Sig=\"" GET_SIG "\"",
          "duplicated parameter 'sig'" },
        { "X-Matrix origin=domain,destination=a,destination=b,key=ed25519:1,sig=\"" GET_SIG "\"",
          "duplicated parameter 'destination'" },
        { "X-Matrix origin=domain,key=\"rsa:1\",sig=\"" GET_SIG "\"",
          "not of a supported algorithm (ed25519)" },
        { "X-Matrix origin=domain,key=\"ed25519:\",sig=\"" GET_SIG "\"", "key is not a key ID" },
        { "X-Matrix origin=domain,key=\"ed25519:a-b\",sig=\"" GET_SIG "\"", "key is not a key ID" },
        { "X-Matrix origin=domain,key=\"ed25519\",sig=\"" GET_SIG "\"", "key is not a key ID" },
        { "X-Matrix origin=domain,key=ed25519:1,sig=\"Zm9v\"", "64-byte" },
        { "X-Matrix origin=domain,key=ed25519:1,sig=\"" GET_SIG "AA\"", "64-byte" },
        { "X-Matrix origin=domain,key=ed25519:1,sig=\"" GET_SIG "!\"", "64-byte" },
        { "X-Matrix origin=\"\",key=ed25519:1,sig=\"" GET_SIG "\"", "origin is not a valid server name" },
        { "X-Matrix origin=\"do main\",key=ed25519:1,sig=\"" GET_SIG "\"", "origin is not a valid" },
        { "X-Matrix origin=\"domain:99999\",key=ed25519:1,sig=\"" GET_SIG "\"", "origin is not a valid" },
        { "X-Matrix origin=\"dom_ain\",key=ed25519:1,sig=\"" GET_SIG "\"", "origin is not a valid" },
        { "X-Matrix origin=domain,destination=\"a b\",key=ed25519:1,sig=\"" GET_SIG "\"",
          "destination is not a valid" },
        { "X-Matrix origin=domain,key=ed25519:1,sig=\"" GET_SIG "\",x=\"a\tb\001\"", "control character" },
        { "X-Matrix origin=\"dom\x7f\",key=ed25519:1,sig=\"" GET_SIG "\"", "control character" },
        { "X-Matrix origin=domain\r\n,key=ed25519:1,sig=\"" GET_SIG "\"", "control character" },
        { "X-Matrix origin=domain,key=ed25519:1,sig=", "has no value" },
        { "X-Matrix origin=domain,key=ed25519:1 sig=\"" GET_SIG "\"", "expected ','" },
        { "X-Matrix origin=domain;key=ed25519:1,sig=\"" GET_SIG "\"", "expected ','" },
        { "X-Matrix origin domain", "expected '='" },
        { "X-Matrix =domain", "expected a parameter name" },
        { "X-Matrix\torigin=domain,key=ed25519:1,sig=\"" GET_SIG "\"", "space after the scheme" },
        { "X-Matrix abc==", "token68" },
        { "X-Matrix origin=domain,key=ed25519:1,sig=\"" GET_SIG "\", X-Matrix origin=a",
          "several credentials" },
        { "\"X-Matrix\" origin=domain", "expected an authentication scheme" },
    };
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        mxf_xmatrix_t *xm = NULL;
        const char *why = NULL;
        apr_status_t rv = mxf_xmatrix_parse(mxf_test_pool, bad[i].hdr, &xm, &why);

        ck_assert_msg(rv == APR_EINVAL, "accepted [%s]", bad[i].hdr);
        ck_assert_msg(why && strstr(why, bad[i].frag),
                      "[%s]: reason '%s' lacks '%s'", bad[i].hdr, why ? why : "(null)",
                      bad[i].frag);
    }
}
END_TEST

START_TEST(rejects_long_values)
{
    char *name255, *name256, *hdr;
    mxf_xmatrix_t *xm = NULL;
    const char *why = NULL;
    char labels[260];

    /* A valid 255-byte server name is accepted, 256 bytes are not. */
    memset(labels, 'a', sizeof(labels));
    labels[63] = labels[127] = labels[191] = '.';
    name255 = apr_pstrmemdup(mxf_test_pool, labels, 255);
    name256 = apr_pstrmemdup(mxf_test_pool, labels, 256);
    parse_ok(apr_pstrcat(mxf_test_pool, "X-Matrix origin=\"", name255,
                         "\",key=ed25519:1,sig=\"" GET_SIG "\"", NULL));
    hdr = apr_pstrcat(mxf_test_pool, "X-Matrix origin=\"", name256,
                      "\",key=ed25519:1,sig=\"" GET_SIG "\"", NULL);
    ck_assert_int_eq(mxf_xmatrix_parse(mxf_test_pool, hdr, &xm, &why), APR_EINVAL);
    ck_assert_ptr_nonnull(strstr(why, "longer than 255"));
    /* Unknown parameters are ignored whatever their length (the spec: "Unknown
     * parameters are ignored"); the header as a whole is bounded by httpd. */
    parse_ok(apr_pstrcat(mxf_test_pool, "X-Matrix origin=domain,key=ed25519:1,sig=\"" GET_SIG
                         "\",junk=\"", name256, name256, "\"", NULL));
    /* A key ID of 248 version characters is within 255 bytes and valid. */
    memset(labels, 'k', sizeof(labels));
    hdr = apr_psprintf(mxf_test_pool, "X-Matrix origin=domain,key=ed25519:%.*s,sig=\"%s\"",
                       247, labels, GET_SIG);
    parse_ok(hdr);
    hdr = apr_psprintf(mxf_test_pool, "X-Matrix origin=domain,key=ed25519:%.*s,sig=\"%s\"",
                       248, labels, GET_SIG);
    ck_assert_int_eq(mxf_xmatrix_parse(mxf_test_pool, hdr, &xm, &why), APR_EINVAL);
    /* The sig cap. */
    hdr = apr_psprintf(mxf_test_pool, "X-Matrix origin=domain,key=ed25519:1,sig=\"%s%.*s\"",
                       GET_SIG, 60, labels);
    ck_assert_int_eq(mxf_xmatrix_parse(mxf_test_pool, hdr, &xm, &why), APR_EINVAL);
    ck_assert_ptr_nonnull(strstr(why, "'sig' is longer than 128"));
    /* The limits bound values as unescaped: a sig written with every character
     * escaped (172 bytes on the wire) is still the 86-byte signature. */
    {
        const char *sig = GET_SIG;
        char escaped[2 * sizeof(GET_SIG)], *o = escaped;
        for (; *sig; sig++) {
            *o++ = '\\';
            *o++ = *sig;
        }
        *o = '\0';
        hdr = apr_pstrcat(mxf_test_pool, "X-Matrix origin=domain,key=ed25519:1,sig=\"",
                          escaped, "\"", NULL);
        xm = parse_ok(hdr);
        ck_assert_str_eq(xm->sig, GET_SIG);
    }
    /* Too many empty list elements. */
    hdr = apr_pstrcat(mxf_test_pool, "X-Matrix origin=domain,key=ed25519:1,sig=\"" GET_SIG "\"",
                      ",,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,", NULL);
    ck_assert_int_eq(mxf_xmatrix_parse(mxf_test_pool, hdr, &xm, &why), APR_EINVAL);
    ck_assert_ptr_nonnull(strstr(why, "list elements"));
}
END_TEST

START_TEST(parse_all_joined)
{
    const char *values[3];
    apr_array_header_t *arr = NULL;
    const char *why = NULL;
    mxf_xmatrix_t *a, *b, *c, *xm;

    /* Two headers joined by httpd, a third header line, another scheme in between. */
    values[0] = "X-Matrix origin=\"domain\",key=\"ed25519:1\",sig=\"" GET_SIG "\", "
                "Bearer abc.def=, X-Matrix origin=other.example,destination=\"dest.example\","
                "key=ed25519:2,sig=\"" POST_SIG "\"";
    values[1] = NULL;
    values[2] = "x-matrix key=ed25519:3, origin=third.example ,sig=\"" GET_SIG "\"";
    ck_assert_int_eq(mxf_xmatrix_parse_all(mxf_test_pool, values, 3, &arr, &why), APR_SUCCESS);
    ck_assert_int_eq(arr->nelts, 3);
    a = APR_ARRAY_IDX(arr, 0, mxf_xmatrix_t *);
    b = APR_ARRAY_IDX(arr, 1, mxf_xmatrix_t *);
    c = APR_ARRAY_IDX(arr, 2, mxf_xmatrix_t *);
    ck_assert_str_eq(a->origin, "domain");
    ck_assert_ptr_null(a->destination);
    ck_assert_str_eq(b->origin, "other.example");
    ck_assert_str_eq(b->destination, "dest.example");
    ck_assert_str_eq(b->key_id, "ed25519:2");
    ck_assert_str_eq(b->sig, POST_SIG);
    ck_assert_str_eq(c->origin, "third.example");
    ck_assert_str_eq(c->key_id, "ed25519:3");

    /* No X-Matrix at all. */
    values[0] = "Bearer abc";
    ck_assert_int_eq(mxf_xmatrix_parse_all(mxf_test_pool, values, 1, &arr, &why), APR_ENOENT);
    ck_assert_int_eq(mxf_xmatrix_parse_all(mxf_test_pool, values, 0, &arr, &why), APR_ENOENT);
    /* One good, one malformed: the request fails. */
    values[0] = "X-Matrix origin=\"domain\",key=\"ed25519:1\",sig=\"" GET_SIG "\", "
                "X-Matrix origin=other.example,key=ed25519:2";
    why = NULL;
    ck_assert_int_eq(mxf_xmatrix_parse_all(mxf_test_pool, values, 1, &arr, &why), APR_EINVAL);
    ck_assert_ptr_nonnull(strstr(why, "credential 2: missing parameter 'sig'"));
    /* A credential signed with another algorithm is ignored, the ed25519 one used. */
    values[0] = "X-Matrix origin=domain,key=\"curve448:1\",sig=\"c2lnbmF0dXJl\", "
                "X-Matrix origin=\"domain\",key=\"ed25519:1\",sig=\"" GET_SIG "\"";
    ck_assert_int_eq(mxf_xmatrix_parse_all(mxf_test_pool, values, 1, &arr, &why), APR_SUCCESS);
    ck_assert_int_eq(arr->nelts, 1);
    ck_assert_str_eq(APR_ARRAY_IDX(arr, 0, mxf_xmatrix_t *)->key_id, "ed25519:1");
    /* Only other algorithms: nothing to verify, and said so. */
    values[0] = "X-Matrix origin=domain,key=\"curve448:1\",sig=\"c2lnbmF0dXJl\"";
    why = NULL;
    ck_assert_int_eq(mxf_xmatrix_parse_all(mxf_test_pool, values, 1, &arr, &why), APR_EINVAL);
    ck_assert_ptr_nonnull(strstr(why, "supported algorithm"));
    /* A malformed ed25519 key ID is still malformed, beside a good credential. */
    values[0] = "X-Matrix origin=\"domain\",key=\"ed25519:1\",sig=\"" GET_SIG "\", "
                "X-Matrix origin=domain,key=\"ed25519:a-b\",sig=\"" GET_SIG "\"";
    ck_assert_int_eq(mxf_xmatrix_parse_all(mxf_test_pool, values, 1, &arr, &why), APR_EINVAL);
    ck_assert_int_eq(mxf_xmatrix_parse(mxf_test_pool,
                                       "X-Matrix origin=domain,key=\"curve448:1\",sig=\"eA\"",
                                       &xm, &why), APR_EINVAL);
    /* Too many credentials. */
    {
        const char *many = "";
        int i;

        for (i = 0; i <= MXF_XMATRIX_MAX_CREDENTIALS; i++) {
            many = apr_pstrcat(mxf_test_pool, many, i ? ", " : "",
                               "X-Matrix origin=domain,key=ed25519:1,sig=\"" GET_SIG "\"",
                               NULL);
        }
        values[0] = many;
        ck_assert_int_eq(mxf_xmatrix_parse_all(mxf_test_pool, values, 1, &arr, &why),
                         APR_EINVAL);
        ck_assert_ptr_nonnull(strstr(why, "more than"));
    }
}
END_TEST

START_TEST(build_roundtrip)
{
    char *h = mxf_xmatrix_build(mxf_test_pool, "domain", "dest.example", "ed25519:1", GET_SIG);
    mxf_xmatrix_t *xm;

    ck_assert_str_eq(h, "X-Matrix origin=\"domain\",destination=\"dest.example\","
                        "key=\"ed25519:1\",sig=\"" GET_SIG "\"");
    xm = parse_ok(h);
    ck_assert_str_eq(xm->destination, "dest.example");
    h = mxf_xmatrix_build(mxf_test_pool, "domain", NULL, "ed25519:1", GET_SIG);
    ck_assert_str_eq(h, "X-Matrix origin=\"domain\",key=\"ed25519:1\",sig=\"" GET_SIG "\"");
    /* Quotes and backslashes are escaped (and survive a round trip). */
    h = mxf_xmatrix_build(mxf_test_pool, "a\"b\\c", NULL, "k", "s");
    ck_assert_str_eq(h, "X-Matrix origin=\"a\\\"b\\\\c\",key=\"k\",sig=\"s\"");
}
END_TEST

static mxf_signing_key_t *spec_key(void)
{
    mxf_signing_key_t *key = NULL;
    const char *why = NULL;

    ck_assert_int_eq(mxf_key_parse(mxf_test_pool, SPEC_KEY_LINE, &key, &why), APR_SUCCESS);
    return key;
}

static json_t *post_body(void)
{
    json_error_t err;
    json_t *j = json_loads(POST_BODY, 0, &err);

    ck_assert_ptr_nonnull(j);
    return mxf_json_own(mxf_test_pool, j);
}

START_TEST(vector_get)
{
    mxf_signing_key_t *key = spec_key();
    const char *why = NULL, *header = NULL;
    json_t *obj;
    char *bytes;
    mxf_xmatrix_t *xm;

    obj = mxf_xmatrix_request_json(mxf_test_pool, "GET", GET_URI, "domain", "dest.example", NULL);
    ck_assert_ptr_nonnull(obj);
    bytes = mxf_canonical_encode(mxf_test_pool, obj, NULL, &why);
    ck_assert_str_eq(bytes, GET_BYTES);
    ck_assert_int_eq(mxf_xmatrix_sign_request(mxf_test_pool, "GET", GET_URI, "domain",
                                              "dest.example", NULL, key, &header, &why),
                     APR_SUCCESS);
    ck_assert_str_eq(header, "X-Matrix origin=\"domain\",destination=\"dest.example\","
                             "key=\"ed25519:1\",sig=\"" GET_SIG "\"");
    xm = parse_ok(header);
    ck_assert_int_eq(mxf_xmatrix_verify_request(mxf_test_pool, xm, "GET", GET_URI,
                                                "dest.example", NULL, key->pk, &why),
                     APR_SUCCESS);
}
END_TEST

START_TEST(vector_post)
{
    mxf_signing_key_t *key = spec_key();
    const char *why = NULL, *header = NULL;
    json_t *body = post_body();
    json_t *obj;
    char *bytes;
    mxf_xmatrix_t *xm;

    obj = mxf_xmatrix_request_json(mxf_test_pool, "POST", POST_URI, "domain", "dest.example",
                                   body);
    ck_assert_ptr_nonnull(obj);
    bytes = mxf_canonical_encode(mxf_test_pool, obj, NULL, &why);
    ck_assert_str_eq(bytes, POST_BYTES);
    ck_assert_int_eq(mxf_xmatrix_sign_request(mxf_test_pool, "POST", POST_URI, "domain",
                                              "dest.example", body, key, &header, &why),
                     APR_SUCCESS);
    xm = parse_ok(header);
    ck_assert_str_eq(xm->sig, POST_SIG);
    ck_assert_int_eq(mxf_xmatrix_verify_request(mxf_test_pool, xm, "POST", POST_URI,
                                                "dest.example", body, key->pk, &why),
                     APR_SUCCESS);
    /* The body was not modified by being signed over. */
    ck_assert_ptr_null(json_object_get(body, "signatures"));
    ck_assert_int_eq(json_object_size(body), 4);
}
END_TEST

START_TEST(verify_failures)
{
    mxf_signing_key_t *key = spec_key();
    const char *why = NULL;
    json_t *body = post_body();
    mxf_xmatrix_t *xm;
    unsigned char wrong_pk[MXF_ED25519_PK_BYTES];

    /* Header without destination: our own name is used for the signed object. */
    xm = parse_ok("X-Matrix origin=domain,key=ed25519:1,sig=\"" POST_SIG "\"");
    ck_assert_int_eq(mxf_xmatrix_verify_request(mxf_test_pool, xm, "POST", POST_URI,
                                                "dest.example", body, key->pk, &why),
                     APR_SUCCESS);
    /* Signed for dest.example, received by another server. */
    ck_assert_int_eq(mxf_xmatrix_verify_request(mxf_test_pool, xm, "POST", POST_URI,
                                                "other.example", body, key->pk, &why),
                     APR_EACCES);
    /* Header destination different from ours. */
    xm = parse_ok("X-Matrix origin=domain,destination=dest.example,key=ed25519:1,sig=\""
                  POST_SIG "\"");
    why = NULL;
    ck_assert_int_eq(mxf_xmatrix_verify_request(mxf_test_pool, xm, "POST", POST_URI,
                                                "dest.example2", body, key->pk, &why),
                     APR_EACCES);
    ck_assert_ptr_nonnull(strstr(why, "destination"));
    /* Another method, URI, body, origin or key. */
    ck_assert_int_eq(mxf_xmatrix_verify_request(mxf_test_pool, xm, "PUT", POST_URI,
                                                "dest.example", body, key->pk, &why),
                     APR_EACCES);
    ck_assert_int_eq(mxf_xmatrix_verify_request(mxf_test_pool, xm, "POST", POST_URI "?a=b",
                                                "dest.example", body, key->pk, &why),
                     APR_EACCES);
    ck_assert_int_eq(mxf_xmatrix_verify_request(mxf_test_pool, xm, "POST", POST_URI,
                                                "dest.example", NULL, key->pk, &why),
                     APR_EACCES);
    json_object_set_new(body, "limit", json_integer(11));
    ck_assert_int_eq(mxf_xmatrix_verify_request(mxf_test_pool, xm, "POST", POST_URI,
                                                "dest.example", body, key->pk, &why),
                     APR_EACCES);
    json_object_set_new(body, "limit", json_integer(10));
    ck_assert_int_eq(mxf_xmatrix_verify_request(mxf_test_pool, xm, "POST", POST_URI,
                                                "dest.example", body, key->pk, &why),
                     APR_SUCCESS);
    xm->origin = "domain2";
    ck_assert_int_eq(mxf_xmatrix_verify_request(mxf_test_pool, xm, "POST", POST_URI,
                                                "dest.example", body, key->pk, &why),
                     APR_EACCES);
    xm->origin = "domain";
    memcpy(wrong_pk, key->pk, sizeof(wrong_pk));
    wrong_pk[0] ^= 1;
    ck_assert_int_eq(mxf_xmatrix_verify_request(mxf_test_pool, xm, "POST", POST_URI,
                                                "dest.example", body, wrong_pk, &why),
                     APR_EACCES);
    /* The GET signature does not verify the POST request. */
    xm->sig = GET_SIG;
    ck_assert_int_eq(mxf_xmatrix_verify_request(mxf_test_pool, xm, "POST", POST_URI,
                                                "dest.example", body, key->pk, &why),
                     APR_EACCES);
}
END_TEST

START_TEST(request_json_shape)
{
    json_t *obj;

    obj = mxf_xmatrix_request_json(mxf_test_pool, "GET", "/x", "a", NULL, NULL);
    ck_assert_int_eq(json_object_size(obj), 3);
    ck_assert_ptr_null(json_object_get(obj, "destination"));
    ck_assert_ptr_null(json_object_get(obj, "content"));
    ck_assert_ptr_null(mxf_xmatrix_request_json(mxf_test_pool, NULL, "/x", "a", "b", NULL));
    /* Invalid UTF-8 cannot become a JSON string. */
    ck_assert_ptr_null(mxf_xmatrix_request_json(mxf_test_pool, "GET", "/\xff", "a", "b", NULL));
}
END_TEST

Suite *mxf_suite_xmatrix(void)
{
    Suite *s = suite_create("xmatrix");
    TCase *tc = mxf_test_case("xmatrix");

    tcase_add_test(tc, accepts_forms);
    tcase_add_test(tc, bws_and_unknown);
    tcase_add_test(tc, rejects);
    tcase_add_test(tc, rejects_long_values);
    tcase_add_test(tc, parse_all_joined);
    tcase_add_test(tc, build_roundtrip);
    tcase_add_test(tc, vector_get);
    tcase_add_test(tc, vector_post);
    tcase_add_test(tc, verify_failures);
    tcase_add_test(tc, request_json_shape);
    suite_add_tcase(s, tc);
    return s;
}
