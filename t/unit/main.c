/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>
#include <sodium.h>

#include "mxf_canonical.h"
#include "mxf_test.h"

apr_pool_t *mxf_test_pool;

void mxf_test_setup(void)
{
    apr_pool_create(&mxf_test_pool, NULL);
}

void mxf_test_teardown(void)
{
    apr_pool_destroy(mxf_test_pool);
    mxf_test_pool = NULL;
}

json_t *mxf_test_parse(const char *text)
{
    json_t *j = NULL;
    const char *why = NULL;

    ck_assert_msg(mxf_json_parse(mxf_test_pool, text, strlen(text), 0, &j, &why)
                  == APR_SUCCESS, "%s: %s", text, why);
    return j;
}

const char *mxf_test_canon(const json_t *j)
{
    const char *why = NULL;
    const char *out = mxf_canonical_encode(mxf_test_pool, j, NULL, &why);

    ck_assert_msg(out != NULL, "%s", why);
    return out;
}

TCase *mxf_test_case(const char *name)
{
    TCase *tc = tcase_create(name);

    tcase_add_checked_fixture(tc, mxf_test_setup, mxf_test_teardown);
    return tc;
}

int main(void)
{
    SRunner *sr;
    int failed;

    if (apr_initialize() != APR_SUCCESS || sodium_init() < 0) {
        return EXIT_FAILURE;
    }
    sr = srunner_create(mxf_suite_json());
    srunner_add_suite(sr, mxf_suite_base64());
    srunner_add_suite(sr, mxf_suite_key());
    srunner_add_suite(sr, mxf_suite_acl());
    srunner_add_suite(sr, mxf_suite_gate());
    srunner_add_suite(sr, mxf_suite_iprange());
    srunner_add_suite(sr, mxf_suite_genroom());
    srunner_add_suite(sr, mxf_suite_canonical());
    srunner_add_suite(sr, mxf_suite_sign());
    srunner_add_suite(sr, mxf_suite_xmatrix());
    srunner_add_suite(sr, mxf_suite_serverkeys());
    srunner_add_suite(sr, mxf_suite_roomver());
    srunner_add_suite(sr, mxf_suite_id());
    srunner_add_suite(sr, mxf_suite_event());
    srunner_add_suite(sr, mxf_suite_stateres());
    srunner_add_suite(sr, mxf_suite_authrules());
    srunner_add_suite(sr, mxf_suite_pduinput());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    apr_terminate();
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
