/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#include <string.h>

#include <apr_strings.h>

#include "mxf_json.h"
#include "mxf_test.h"

START_TEST(own_releases_with_pool)
{
    apr_pool_t *sub;
    json_t *j = json_object();

    apr_pool_create(&sub, mxf_test_pool);
    json_incref(j);                         /* keep one for ourselves */
    ck_assert_ptr_eq(mxf_json_own(sub, j), j);
    ck_assert_int_eq(j->refcount, 2);
    apr_pool_destroy(sub);
    ck_assert_int_eq(j->refcount, 1);
    json_decref(j);
    ck_assert_ptr_null(mxf_json_own(mxf_test_pool, NULL));
}
END_TEST

START_TEST(dump_is_compact)
{
    apr_size_t len = 0;
    json_t *j = mxf_json_own(mxf_test_pool,
                             json_pack("{s:{s:s}}", "server", "name", "mod_matrix_fed"));
    const char *text = mxf_json_dump(mxf_test_pool, j, &len);

    ck_assert_str_eq(text, "{\"server\":{\"name\":\"mod_matrix_fed\"}}");
    ck_assert_uint_eq(len, strlen(text));
}
END_TEST

START_TEST(dump_rejects_invalid_utf8)
{
    json_t *j = mxf_json_own(mxf_test_pool, json_object());

    /* jansson refuses invalid UTF-8 on creation, so build via stringn_nocheck. */
    json_object_set_new(j, "k", json_stringn_nocheck("\xff", 1));
    ck_assert_ptr_null(mxf_json_dump(mxf_test_pool, j, NULL));
}
END_TEST

static apr_status_t try_parse(const char *text, apr_size_t len, unsigned flags, json_t **j,
                              const char **why)
{
    *why = NULL;
    return mxf_json_parse(mxf_test_pool, text, len, flags, j, why);
}

START_TEST(parse_accepts)
{
    static const struct { const char *text; unsigned flags; } good[] = {
        { "{}", 0 },
        { " {\"a\": [1, -2, {\"b\": null}], \"c\": \"\\u65E5\"} ", 0 },
        { "{\"max\":9007199254740991,\"min\":-9007199254740991}", MXF_JSON_STRICT_INTS },
        { "{\"a\":-0}", MXF_JSON_STRICT_INTS },
        /* Rooms v1-v5: reals and big ints are kept. */
        { "{\"a\":1.5,\"b\":1e10,\"c\":9223372036854775807}", 0 },
        { "[1]", MXF_JSON_ANY },
        { "\"x\"", MXF_JSON_ANY },
        { "{\"a\":\"x\\u0000y\"}", MXF_JSON_ALLOW_NUL },
    };
    size_t i;

    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        json_t *j = NULL;
        const char *why;

        ck_assert_msg(try_parse(good[i].text, strlen(good[i].text), good[i].flags, &j, &why)
                      == APR_SUCCESS, "rejected %s: %s", good[i].text, why);
        ck_assert_ptr_nonnull(j);
    }
}
END_TEST

START_TEST(parse_keeps_types)
{
    json_t *j = NULL;
    const char *why;
    const char *text = "{\"i\":9007199254740993,\"r\":1e10,\"z\":-0,\"s\":\"a\\u0000b\"}";

    ck_assert_int_eq(try_parse(text, strlen(text), MXF_JSON_ALLOW_NUL, &j, &why), APR_SUCCESS);
    ck_assert(json_is_integer(json_object_get(j, "i")));
    ck_assert(json_integer_value(json_object_get(j, "i")) == 9007199254740993LL);
    ck_assert(json_is_real(json_object_get(j, "r")));
    ck_assert(json_is_integer(json_object_get(j, "z")));
    ck_assert_uint_eq(json_string_length(json_object_get(j, "s")), 3);
}
END_TEST

START_TEST(parse_rejects)
{
    /* EINVAL: not JSON; ERANGE: JSON, but refused. */
    static const struct { const char *text; unsigned flags; apr_status_t rv; } bad[] = {
        { "{\"a\":1,\"a\":2}", 0, APR_ERANGE },          /* duplicate keys */
        { "{\"a\":{\"b\":1,\"b\":1}}", MXF_JSON_ANY, APR_ERANGE },
        { "{\"a\":\"x\\u0000\"}", 0, APR_ERANGE },      /* NUL needs ALLOW_NUL */
        { "{\"a\\u0000\":1}", MXF_JSON_ALLOW_NUL, APR_ERANGE },  /* never in keys */
        { "{\"a\":\"\xff\"}", 0, APR_EINVAL },          /* invalid UTF-8 */
        { "{\"a\":\"\xc0\xaf\"}", 0, APR_EINVAL },      /* overlong */
        { "{\"a\":\"\xed\xa0\x80\"}", 0, APR_EINVAL },  /* encoded surrogate */
        { "{\"a\":\"\\ud800\"}", 0, APR_EINVAL },       /* lone surrogate escape */
        { "{\"a\":9007199254740992}", MXF_JSON_STRICT_INTS, APR_ERANGE },
        { "{\"a\":-9007199254740992}", MXF_JSON_STRICT_INTS, APR_ERANGE },
        { "{\"a\":[1,{\"b\":1.0}]}", MXF_JSON_STRICT_INTS, APR_ERANGE },
        { "{\"a\":1e3}", MXF_JSON_STRICT_INTS, APR_ERANGE },
        { "{\"a\":9223372036854775808}", 0, APR_ERANGE },  /* beyond json_int_t */
        { "{\"a\":1e400}", 0, APR_ERANGE },
        { "{\"a\":NaN}", 0, APR_EINVAL },
        { "[1]", 0, APR_EINVAL },                       /* object required */
        { "\"x\"", 0, APR_EINVAL },
        { "{} {}", 0, APR_EINVAL },                     /* trailing data */
        { "{\"a\":1,}", 0, APR_EINVAL },
        { "", 0, APR_EINVAL },
    };
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *j = NULL;
        const char *why;

        ck_assert_msg(try_parse(bad[i].text, strlen(bad[i].text), bad[i].flags, &j, &why)
                      == bad[i].rv, "%s: not refused as expected", bad[i].text);
        ck_assert_ptr_null(j);
        ck_assert_ptr_nonnull(why);
    }
}
END_TEST

START_TEST(parse_uses_length)
{
    json_t *j = NULL;
    const char *why;

    /* Not NUL-terminated: only the first 2 bytes count. */
    ck_assert_int_eq(try_parse("{}garbage", 2, 0, &j, &why), APR_SUCCESS);
    /* A NUL byte outside a string is an error, not the end. */
    ck_assert_int_eq(try_parse("{}\0", 3, 0, &j, &why), APR_EINVAL);
}
END_TEST

START_TEST(parse_depth_cap)
{
    char *text = apr_palloc(mxf_test_pool, 2 * MXF_JSON_MAX_DEPTH + 3);
    json_t *j = NULL;
    const char *why;
    int n;

    for (n = MXF_JSON_MAX_DEPTH; n <= MXF_JSON_MAX_DEPTH + 1; n++) {
        memset(text, '[', (size_t)n);
        memset(text + n, ']', (size_t)n);
        ck_assert_int_eq(try_parse(text, 2 * (apr_size_t)n, MXF_JSON_ANY, &j, &why),
                         n <= MXF_JSON_MAX_DEPTH ? APR_SUCCESS : APR_ERANGE);
    }
}
END_TEST

START_TEST(check_ints_walks)
{
    json_t *j = mxf_json_own(mxf_test_pool, json_pack("{s:[i,{s:I}]}", "a", 1, "b",
                                                       (json_int_t)9007199254740991LL));
    const char *why = NULL;

    ck_assert_int_eq(mxf_json_check_ints(j, &why), APR_SUCCESS);
    json_object_set_new(json_array_get(json_object_get(j, "a"), 1), "c",
                        json_integer(-9007199254740992LL));
    ck_assert_int_eq(mxf_json_check_ints(j, &why), APR_EINVAL);
    ck_assert_ptr_nonnull(why);
    ck_assert_int_eq(mxf_json_check_ints(json_array_get(json_object_get(j, "a"), 0), &why),
                     APR_SUCCESS);
    j = mxf_json_own(mxf_test_pool, json_real(2.0));
    ck_assert_int_eq(mxf_json_check_ints(j, &why), APR_EINVAL);
}
END_TEST

Suite *mxf_suite_json(void)
{
    Suite *s = suite_create("json");
    TCase *tc = mxf_test_case("wrapper");

    tcase_add_test(tc, own_releases_with_pool);
    tcase_add_test(tc, dump_is_compact);
    tcase_add_test(tc, dump_rejects_invalid_utf8);
    suite_add_tcase(s, tc);
    tc = mxf_test_case("parse");
    tcase_add_test(tc, parse_accepts);
    tcase_add_test(tc, parse_keeps_types);
    tcase_add_test(tc, parse_rejects);
    tcase_add_test(tc, parse_uses_length);
    tcase_add_test(tc, parse_depth_cap);
    tcase_add_test(tc, check_ints_walks);
    suite_add_tcase(s, tc);
    return s;
}
