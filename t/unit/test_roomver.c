/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#include <string.h>

#include "mxf_roomver.h"
#include "mxf_test.h"

/* Each property, per version 1..12, written from the room version pages. */
START_TEST(table_per_version)
{
    static const struct {
        const char *id;
        mxf_evid_format_t evid;
        mxf_redact_algo_t redact;
        mxf_stateres_t sr;
        int strict, pairs, keyvalid, knock, restricted, knock_r, intpl, v11, v12;
    } want[] = {
        { "1",  MXF_EVID_CARRIED,      MXF_REDACT_V1,  MXF_STATERES_V1,   0, 1, 0, 0, 0, 0, 0, 0, 0 },
        { "2",  MXF_EVID_CARRIED,      MXF_REDACT_V1,  MXF_STATERES_V2,   0, 1, 0, 0, 0, 0, 0, 0, 0 },
        { "3",  MXF_EVID_HASH_STD,     MXF_REDACT_V1,  MXF_STATERES_V2,   0, 0, 0, 0, 0, 0, 0, 0, 0 },
        { "4",  MXF_EVID_HASH_URLSAFE, MXF_REDACT_V1,  MXF_STATERES_V2,   0, 0, 0, 0, 0, 0, 0, 0, 0 },
        { "5",  MXF_EVID_HASH_URLSAFE, MXF_REDACT_V1,  MXF_STATERES_V2,   0, 0, 1, 0, 0, 0, 0, 0, 0 },
        { "6",  MXF_EVID_HASH_URLSAFE, MXF_REDACT_V6,  MXF_STATERES_V2,   1, 0, 1, 0, 0, 0, 0, 0, 0 },
        { "7",  MXF_EVID_HASH_URLSAFE, MXF_REDACT_V6,  MXF_STATERES_V2,   1, 0, 1, 1, 0, 0, 0, 0, 0 },
        { "8",  MXF_EVID_HASH_URLSAFE, MXF_REDACT_V8,  MXF_STATERES_V2,   1, 0, 1, 1, 1, 0, 0, 0, 0 },
        { "9",  MXF_EVID_HASH_URLSAFE, MXF_REDACT_V9,  MXF_STATERES_V2,   1, 0, 1, 1, 1, 0, 0, 0, 0 },
        { "10", MXF_EVID_HASH_URLSAFE, MXF_REDACT_V9,  MXF_STATERES_V2,   1, 0, 1, 1, 1, 1, 1, 0, 0 },
        { "11", MXF_EVID_HASH_URLSAFE, MXF_REDACT_V11, MXF_STATERES_V2,   1, 0, 1, 1, 1, 1, 1, 1, 0 },
        { "12", MXF_EVID_HASH_URLSAFE, MXF_REDACT_V11, MXF_STATERES_V2_1, 1, 0, 1, 1, 1, 1, 1, 1, 1 },
    };
    apr_size_t i, n;
    const mxf_roomver_t *all = mxf_roomver_all(&n);

    ck_assert_uint_eq(n, sizeof(want) / sizeof(want[0]));
    for (i = 0; i < n; i++) {
        const mxf_roomver_t *rv = mxf_roomver_get(want[i].id);
        ck_assert_ptr_nonnull(rv);
        ck_assert_ptr_eq(rv, &all[i]);
        ck_assert_str_eq(rv->id, want[i].id);
        ck_assert_int_eq(rv->event_id_format, want[i].evid);
        ck_assert_int_eq(rv->redaction, want[i].redact);
        ck_assert_int_eq(rv->state_res, want[i].sr);
        ck_assert_int_eq(rv->strict_canonical_json, want[i].strict);
        ck_assert_int_eq(rv->ref_pairs, want[i].pairs);
        ck_assert_int_eq(rv->enforce_key_validity, want[i].keyvalid);
        ck_assert_int_eq(rv->knock, want[i].knock);
        ck_assert_int_eq(rv->restricted, want[i].restricted);
        ck_assert_int_eq(rv->knock_restricted, want[i].knock_r);
        ck_assert_int_eq(rv->int_power_levels, want[i].intpl);
        ck_assert_int_eq(rv->redacts_in_content, want[i].v11);
        ck_assert_int_eq(rv->implicit_creator, want[i].v11);
        ck_assert_int_eq(rv->room_id_is_create_hash, want[i].v12);
        ck_assert_int_eq(rv->redaction_auth_rule, i < 2);
        ck_assert_int_eq(rv->aliases_auth_rule, i < 5);
        ck_assert_int_eq(rv->notifications_pl_auth, i >= 5);
        ck_assert_int_eq(rv->lenient_byte_limits, i < 10);
        ck_assert(rv->max_depth == (i < 5 ? 9223372036854775807LL : 9007199254740991LL));
    }
}
END_TEST

START_TEST(unknown_versions)
{
    static const char *const bad[] = {
        "", "0", "13", "01", "1.0", " 1", "1 ", "v1", "org.matrix.msc2176",
        "9999999999999999999999999999999999",
    };
    const char *why;
    apr_size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(mxf_roomver_get(bad[i]) == NULL, "'%s' known", bad[i]);
        why = NULL;
        ck_assert_ptr_null(mxf_roomver_lookup(mxf_test_pool, bad[i], &why));
        ck_assert_ptr_nonnull(why);
    }
    ck_assert_ptr_null(mxf_roomver_get(NULL));
    why = NULL;
    ck_assert_ptr_null(mxf_roomver_lookup(mxf_test_pool, "13", &why));
    ck_assert_str_eq(why, "unsupported room version \"13\" (supported: 1 to 12)");
    ck_assert_ptr_null(mxf_roomver_lookup(mxf_test_pool, "A\"b", &why));
    ck_assert_str_eq(why, "malformed room version string");
    ck_assert_ptr_nonnull(mxf_roomver_lookup(mxf_test_pool, "12", &why));
}
END_TEST

START_TEST(version_grammar)
{
    ck_assert(mxf_roomver_id_valid("1"));
    ck_assert(mxf_roomver_id_valid("org.matrix.msc2176"));
    ck_assert(mxf_roomver_id_valid("a-b.c9"));
    ck_assert(mxf_roomver_id_valid("12345678901234567890123456789012"));   /* 32 */
    ck_assert(!mxf_roomver_id_valid("123456789012345678901234567890123")); /* 33 */
    ck_assert(!mxf_roomver_id_valid(""));
    ck_assert(!mxf_roomver_id_valid(NULL));
    ck_assert(!mxf_roomver_id_valid("A"));
    ck_assert(!mxf_roomver_id_valid("a_b"));
    ck_assert(!mxf_roomver_id_valid("a b"));
}
END_TEST

Suite *mxf_suite_roomver(void)
{
    Suite *s = suite_create("roomver");
    TCase *tc = mxf_test_case("roomver");

    tcase_add_test(tc, table_per_version);
    tcase_add_test(tc, unknown_versions);
    tcase_add_test(tc, version_grammar);
    suite_add_tcase(s, tc);
    return s;
}
