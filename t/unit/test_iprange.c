/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "mxf_iprange.h"
#include "mxf_test.h"

static struct sockaddr_storage sa_of(const char *text)
{
    struct sockaddr_storage ss;

    memset(&ss, 0, sizeof(ss));
    if (inet_pton(AF_INET, text, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
        ss.ss_family = AF_INET;
    }
    else {
        ck_assert_int_eq(inet_pton(AF_INET6, text, &((struct sockaddr_in6 *)&ss)->sin6_addr), 1);
        ss.ss_family = AF_INET6;
    }
    return ss;
}

START_TEST(parse)
{
    static const char *const good[] = { "10.0.0.0/8", "127.0.0.1", "0.0.0.0/0", "::1/128",
                                        "fe80::/10", "::/0", "2001:db8::/32", "1.2.3.4/32" };
    static const char *const bad[] = { "", "10.0.0.0/33", "10.1.0.0/8", "10.0.0.0/", "/8",
                                       "10.0.0.0/8x", "fe80::1/10", "::1/129", "host.example",
                                       "10.0.0.0/-1", "1.2.3" };
    mxf_iprange_t r;
    apr_size_t i;

    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        ck_assert_msg(mxf_iprange_parse(good[i], &r) == APR_SUCCESS, "%s", good[i]);
    }
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(mxf_iprange_parse(bad[i], &r) == APR_EINVAL, "%s", bad[i]);
    }
    ck_assert_int_eq(mxf_iprange_parse("172.16.0.0/12", &r), APR_SUCCESS);
    ck_assert_int_eq(r.family, AF_INET);
    ck_assert_int_eq(r.bits, 12);
    /* Every default range parses. */
    for (i = 0; mxf_iprange_default_deny[i]; i++) {
        ck_assert_msg(mxf_iprange_parse(mxf_iprange_default_deny[i], &r) == APR_SUCCESS, "%s",
                      mxf_iprange_default_deny[i]);
    }
    ck_assert_int_eq(mxf_iprange_defaults(mxf_test_pool)->nelts, (int)i);
}
END_TEST

START_TEST(match)
{
    static const struct {
        const char *addr;
        int denied;                     /* by the default list */
    } tab[] = {
        { "127.0.0.1", 1 }, { "127.255.0.9", 1 }, { "10.20.30.40", 1 }, { "172.16.0.1", 1 },
        { "172.31.255.255", 1 }, { "172.32.0.1", 0 }, { "192.168.1.1", 1 },
        { "169.254.169.254", 1 }, { "100.64.0.1", 1 }, { "100.128.0.1", 0 },
        { "0.0.0.0", 1 }, { "224.0.0.1", 1 }, { "8.8.8.8", 0 }, { "1.1.1.1", 0 },
        { "::1", 1 }, { "::", 1 }, { "fe80::1", 1 }, { "fd00::5", 1 }, { "fc00::1", 1 },
        { "2001:db8::1", 1 }, { "2606:4700::1111", 0 }, { "ff02::1", 1 },
        { "::ffff:127.0.0.1", 1 }, { "::ffff:10.1.2.3", 1 }, { "::ffff:8.8.8.8", 0 },
    };
    apr_array_header_t *deny = mxf_iprange_defaults(mxf_test_pool);
    apr_size_t i;
    mxf_iprange_t r;

    for (i = 0; i < sizeof(tab) / sizeof(tab[0]); i++) {
        struct sockaddr_storage ss = sa_of(tab[i].addr);
        ck_assert_msg(mxf_iprange_any(deny, (struct sockaddr *)&ss) == tab[i].denied, "%s",
                      tab[i].addr);
    }
    /* Prefix boundaries not on a byte. */
    ck_assert_int_eq(mxf_iprange_parse("203.0.113.64/26", &r), APR_SUCCESS);
    {
        unsigned char in[4] = { 203, 0, 113, 127 }, out[4] = { 203, 0, 113, 128 };
        ck_assert(mxf_iprange_match(&r, AF_INET, in));
        ck_assert(!mxf_iprange_match(&r, AF_INET, out));
    }
    /* An empty list denies nothing; a family it does not know is refused. */
    {
        struct sockaddr_storage ss = sa_of("127.0.0.1");
        struct sockaddr un;
        ck_assert(!mxf_iprange_any(apr_array_make(mxf_test_pool, 1, sizeof(r)),
                                   (struct sockaddr *)&ss));
        memset(&un, 0, sizeof(un));
        un.sa_family = AF_UNIX;
        ck_assert(mxf_iprange_any(deny, &un));
    }
}
END_TEST

Suite *mxf_suite_iprange(void)
{
    Suite *s = suite_create("iprange");
    TCase *tc = mxf_test_case("iprange");

    tcase_add_test(tc, parse);
    tcase_add_test(tc, match);
    suite_add_tcase(s, tc);
    return s;
}
