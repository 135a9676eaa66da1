/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#include <string.h>

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

Suite *mxf_suite_json(void)
{
    Suite *s = suite_create("json");
    TCase *tc = mxf_test_case("wrapper");

    tcase_add_test(tc, own_releases_with_pool);
    tcase_add_test(tc, dump_is_compact);
    tcase_add_test(tc, dump_rejects_invalid_utf8);
    suite_add_tcase(s, tc);
    return s;
}
