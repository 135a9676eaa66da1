/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#include <string.h>

#include "mxf_acl.h"
#include "mxf_test.h"

static json_t *acl(const char *text)
{
    json_t *j = json_loads(text, 0, NULL);

    ck_assert_ptr_nonnull(j);
    return mxf_json_own(mxf_test_pool, j);
}

START_TEST(glob_matching)
{
    ck_assert(mxf_acl_glob("*", "anything.example", 16));
    ck_assert(mxf_acl_glob("*", "", 0));
    ck_assert(mxf_acl_glob("*.example", "a.b.example", 11));
    ck_assert(!mxf_acl_glob("*.example", "example", 7));
    ck_assert(mxf_acl_glob("ev?l.com", "evil.com", 8));
    ck_assert(!mxf_acl_glob("ev?l.com", "evl.com", 7));
    ck_assert(mxf_acl_glob("EVIL.com", "evil.COM", 8));
    ck_assert(mxf_acl_glob("a*b*c", "aXXbYYc", 7));
    ck_assert(!mxf_acl_glob("a*b*c", "aXXbYY", 6));
    ck_assert(mxf_acl_glob("**a", "ba", 2));
    /* Only the first len bytes count (the port is cut off by the caller). */
    ck_assert(mxf_acl_glob("host", "host:8448", 4));
}
END_TEST

START_TEST(ip_literals)
{
    ck_assert(mxf_acl_is_ip_literal("1.2.3.4", 7));
    ck_assert(mxf_acl_is_ip_literal("[::1]", 5));
    ck_assert(!mxf_acl_is_ip_literal("1.2.3.example", 13));
    ck_assert(!mxf_acl_is_ip_literal("example.org", 11));
    ck_assert(mxf_acl_is_ip_literal("[2001:DB8::1]", 13));
    /* Shaped like addresses but not addresses: names (as the reference homeserver
     * reads them); the ACL's lists decide. */
    ck_assert(!mxf_acl_is_ip_literal("1234.5.6.7", 10));
    ck_assert(!mxf_acl_is_ip_literal("01.2.3.4", 8));
    ck_assert(!mxf_acl_is_ip_literal("300.1.1.1", 9));
    ck_assert(!mxf_acl_is_ip_literal("1..2.3", 6));
    ck_assert(!mxf_acl_is_ip_literal("[not-v6]", 8));
    ck_assert(!mxf_acl_is_ip_literal("", 0));
    /* Only the first len bytes count. */
    ck_assert(mxf_acl_is_ip_literal("1.2.3.4:8448", 7));
}
END_TEST

START_TEST(evaluation_order)
{
    /* No ACL: everyone. */
    ck_assert(mxf_acl_allows(NULL, "any.example"));
    /* Missing allow: nobody. */
    ck_assert(!mxf_acl_allows(acl("{}"), "any.example"));
    ck_assert(!mxf_acl_allows(acl("{\"deny\": []}"), "any.example"));
    /* Deny wins over allow; matching ignores the port and case. */
    json_t *a = acl("{\"allow\": [\"*\"], \"deny\": [\"evil.example\", \"*.bad.example\"]}");
    ck_assert(!mxf_acl_allows(a, "evil.example"));
    ck_assert(!mxf_acl_allows(a, "evil.example:8448"));
    ck_assert(!mxf_acl_allows(a, "EVIL.Example"));
    ck_assert(!mxf_acl_allows(a, "x.bad.example:1234"));
    ck_assert(mxf_acl_allows(a, "good.example"));
    /* IP literals: allowed by default, denied when allow_ip_literals is false. */
    ck_assert(mxf_acl_allows(a, "1.2.3.4:8448"));
    ck_assert(mxf_acl_allows(a, "[2001:db8::1]:8448"));
    a = acl("{\"allow\": [\"*\"], \"allow_ip_literals\": false}");
    ck_assert(!mxf_acl_allows(a, "1.2.3.4"));
    ck_assert(!mxf_acl_allows(a, "[2001:db8::1]"));
    ck_assert(mxf_acl_allows(a, "ok.example"));
    /* A non-boolean allow_ip_literals counts as true. */
    a = acl("{\"allow\": [\"*\"], \"allow_ip_literals\": \"no\"}");
    ck_assert(mxf_acl_allows(a, "1.2.3.4"));
    /* Non-string entries are ignored. */
    a = acl("{\"allow\": [1, null, \"ok.example\"]}");
    ck_assert(mxf_acl_allows(a, "ok.example"));
    ck_assert(!mxf_acl_allows(a, "other.example"));
}
END_TEST

Suite *mxf_suite_acl(void)
{
    Suite *s = suite_create("acl");
    TCase *tc = mxf_test_case("server_acl");

    tcase_add_test(tc, glob_matching);
    tcase_add_test(tc, ip_literals);
    tcase_add_test(tc, evaluation_order);
    suite_add_tcase(s, tc);
    return s;
}
