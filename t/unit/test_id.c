/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#include <string.h>

#include <apr_strings.h>

#include "mxf_id.h"
#include "mxf_test.h"

#define H43 "acR1l0raoZnm60CBwAVgqbZqoO_mYU81xysh1u7XcJk"   /* URL-safe, 43 chars */
#define S43 "acR1l0raoZnm60CBwAVgqbZqoO/mYU81xysh1u7XcJk"   /* standard, 43 chars */
#define N43 "acR1l0raoZnm60CBwAVgqbZqoOAmYU81xysh1u7XcJk"   /* valid in both */

/* A string of @a n copies of @a c. */
static char *rep(char c, apr_size_t n)
{
    char *s = apr_palloc(mxf_test_pool, n + 1);

    memset(s, c, n);
    s[n] = '\0';
    return s;
}

#define CHECK_TABLE(fn, tab, expect) do {                                      \
        apr_size_t i_;                                                           \
        for (i_ = 0; i_ < sizeof(tab) / sizeof(tab[0]); i_++) {                 \
            ck_assert_msg(fn(tab[i_], strlen(tab[i_])) == (expect),              \
                          "%s('%s') != %d", #fn, tab[i_], (expect));             \
        }                                                                        \
    } while (0)

START_TEST(server_names)
{
    static const char *const good[] = {
        "matrix.org", "matrix.org:8888", "1.2.3.4", "1.2.3.4:1234", "[1234:5678::abcd]",
        "[1234:5678::abcd]:5678", "localhost", "localhost:8008", "a", "MATRIX.ORG",
        "x-y.z", "-", "a..b", "255.255.255.255", "0.0.0.0", "1.2.3", "1.2.3.4.5",
        "1.2.3.0256" /* not IPv4-shaped (4 digits): a dns-name */, "[::1]", "[::]:1",
        "[::ffff:1.2.3.4]", "[ABCD::EF]", "example.com:65535", "example.com:1",
        "example.com:00080",
    };
    static const char *const bad[] = {
        "", ":80", "matrix.org:", "matrix.org:0", "matrix.org:65536", "matrix.org:123456",
        "matrix.org:8a", "matrix.org:-1", "matrix.org:80:80", "matrix_org", "matrix org",
        "ma/trix", "1.2.3.256", "256.1.1.1", "[1234:5678::abcd", "1234:5678::abcd",
        "[]", "[1]", "[::g]", "[1:2:3:4:5:6:7:8:9]", "[::1]x", "[::1]:", "[::1]:0",
        "[fe80::1%eth0]", "host\xc3\xa9", "a b", "[::1]]",
    };
    char *s;

    CHECK_TABLE(mxf_id_server_name_valid, good, 1);
    CHECK_TABLE(mxf_id_server_name_valid, bad, 0);
    /* Embedded NUL. */
    ck_assert(!mxf_id_server_name_valid("ab\0c", 4));
    /* 255-byte cap. */
    s = rep('a', 255);
    ck_assert(mxf_id_server_name_valid(s, 255));
    s = rep('a', 256);
    ck_assert(!mxf_id_server_name_valid(s, 256));
    s = apr_pstrcat(mxf_test_pool, rep('a', 250), ":8448", NULL);
    ck_assert(mxf_id_server_name_valid(s, 255));
    s = apr_pstrcat(mxf_test_pool, rep('a', 251), ":8448", NULL);
    ck_assert(!mxf_id_server_name_valid(s, 256));
}
END_TEST

START_TEST(user_ids)
{
    static const char *const good[] = {
        "@alice:example.org", "@a:b", "@alice:example.org:8448", "@a.b_c=d-e/f+g:1.2.3.4",
        "@:example.org" /* historical: empty localpart */, "@Alice:example.org",
        "@\xc3\xa9l\xc3\xa8ve:example.org", "@a b*#!$:example.org", "@\x01:example.org",
        "@a:[::1]:8448",
    };
    static const char *const bad[] = {
        "", "@", "@alice", "alice:example.org", "#alice:example.org", "@alice:",
        "@alice:exa mple.org", "@alice:example.org:0", "@\xed\xa0\x80:example.org",
        "@\xc0\xaf:example.org", "@\xff:example.org", "@\xe2\x82:example.org",
    };
    static const char *const strict_good[] = {
        "@alice:example.org", "@a.b_c=d-e/f+g:1.2.3.4", "@0:x",
    };
    static const char *const strict_bad[] = {
        "@:example.org", "@Alice:example.org", "@a b:example.org", "@\xc3\xa9:x", "@a*:x",
        "@a:b:c:d",
    };
    char *s;

    CHECK_TABLE(mxf_id_user_valid, good, 1);
    CHECK_TABLE(mxf_id_user_valid, bad, 0);
    CHECK_TABLE(mxf_id_user_valid_strict, strict_good, 1);
    CHECK_TABLE(mxf_id_user_valid_strict, strict_bad, 0);
    ck_assert(!mxf_id_user_valid("@a\0b:example.org", 16));
    /* 255-byte cap: "@" + local + ":" + "example.org" (11). */
    s = apr_pstrcat(mxf_test_pool, "@", rep('u', 242), ":example.org", NULL);
    ck_assert_uint_eq(strlen(s), 255);
    ck_assert(mxf_id_user_valid(s, 255));
    ck_assert(mxf_id_user_valid_strict(s, 255));
    s = apr_pstrcat(mxf_test_pool, "@", rep('u', 243), ":example.org", NULL);
    ck_assert(!mxf_id_user_valid(s, 256));
    ck_assert(!mxf_id_user_valid_strict(s, 256));
}
END_TEST

START_TEST(room_ids)
{
    const mxf_roomver_t *v1 = mxf_roomver_get("1"), *v11 = mxf_roomver_get("11"),
                        *v12 = mxf_roomver_get("12");
    static const char *const any_good[] = {
        "!abc:example.org", "!DHmIIVvxFASSFgDGzr:localhost:8008", "!:x", "!a\xc3\xa9:x",
        "!" H43, "!" N43,
    };
    static const char *const any_bad[] = {
        "", "!", "!abc", "$abc:example.org", "!abc:", "!abc:bad host", "!" S43,
        "!" H43 "A", "!acR1l0raoZnm60CBwAVgqbZqoO_mYU81xysh1u7XcJ",
    };
    apr_size_t i;
    char *s;

    for (i = 0; i < sizeof(any_good) / sizeof(any_good[0]); i++) {
        ck_assert_msg(mxf_id_room_valid(any_good[i], strlen(any_good[i]), NULL), "%s",
                      any_good[i]);
    }
    for (i = 0; i < sizeof(any_bad) / sizeof(any_bad[0]); i++) {
        ck_assert_msg(!mxf_id_room_valid(any_bad[i], strlen(any_bad[i]), NULL), "%s",
                      any_bad[i]);
        ck_assert(!mxf_id_room_valid(any_bad[i], strlen(any_bad[i]), v1));
        ck_assert(!mxf_id_room_valid(any_bad[i], strlen(any_bad[i]), v12));
    }
    /* Per version: v1-v11 need a server part, v12 a hash. */
    ck_assert(mxf_id_room_valid("!abc:example.org", 16, v1));
    ck_assert(mxf_id_room_valid("!abc:example.org", 16, v11));
    ck_assert(!mxf_id_room_valid("!abc:example.org", 16, v12));
    ck_assert(!mxf_id_room_valid("!" H43, 44, v11));
    ck_assert(mxf_id_room_valid("!" H43, 44, v12));
    ck_assert(!mxf_id_room_valid("!a\0b:x", 6, v1));
    /* 255-byte cap. */
    s = apr_pstrcat(mxf_test_pool, "!", rep('r', 241), ":example.org", NULL);
    ck_assert_uint_eq(strlen(s), 254);
    ck_assert(mxf_id_room_valid(s, 254, v1));
    s = apr_pstrcat(mxf_test_pool, "!", rep('r', 242), ":example.org", NULL);
    ck_assert(mxf_id_room_valid(s, 255, v1));
    s = apr_pstrcat(mxf_test_pool, "!", rep('r', 243), ":example.org", NULL);
    ck_assert(!mxf_id_room_valid(s, 256, v1));
}
END_TEST

START_TEST(event_ids)
{
    const mxf_roomver_t *v1 = mxf_roomver_get("1"), *v2 = mxf_roomver_get("2"),
                        *v3 = mxf_roomver_get("3"), *v4 = mxf_roomver_get("4"),
                        *v12 = mxf_roomver_get("12");
    static const struct {
        const char *id;
        int v1, v3, v4, any;
    } tab[] = {
        { "$0:domain",                 1, 0, 0, 1 },
        { "$abc:example.org:8448",     1, 0, 0, 1 },
        { "$\xc3\xa9:example.org",     1, 0, 0, 1 },
        { "$:example.org",             0, 0, 0, 0 },   /* empty opaque part */
        { "$abc",                      0, 0, 0, 0 },
        { "$abc:",                     0, 0, 0, 0 },
        { "$abc:bad host",             0, 0, 0, 0 },
        { "abc:example.org",           0, 0, 0, 0 },
        { "$" S43,                     0, 1, 0, 1 },
        { "$" H43,                     0, 0, 1, 1 },
        { "$" N43,                     0, 1, 1, 1 },
        { "$" H43 "A",                 0, 0, 0, 0 },
        { "$acR1l0raoZnm60CBwAVgqbZqoO", 0, 0, 0, 0 },
        { "$acR1l0raoZnm60CBwAVgqbZqoO=mYU81xysh1u7XcJk", 0, 0, 0, 0 },
        { "!" H43,                     0, 0, 0, 0 },
        { "",                          0, 0, 0, 0 },
    };
    apr_size_t i, n;
    char *s;

    for (i = 0; i < sizeof(tab) / sizeof(tab[0]); i++) {
        n = strlen(tab[i].id);
        ck_assert_msg(mxf_id_event_valid(tab[i].id, n, v1) == tab[i].v1, "v1 %s", tab[i].id);
        ck_assert_msg(mxf_id_event_valid(tab[i].id, n, v2) == tab[i].v1, "v2 %s", tab[i].id);
        ck_assert_msg(mxf_id_event_valid(tab[i].id, n, v3) == tab[i].v3, "v3 %s", tab[i].id);
        ck_assert_msg(mxf_id_event_valid(tab[i].id, n, v4) == tab[i].v4, "v4 %s", tab[i].id);
        ck_assert_msg(mxf_id_event_valid(tab[i].id, n, v12) == tab[i].v4, "v12 %s", tab[i].id);
        ck_assert_msg(mxf_id_event_valid(tab[i].id, n, NULL) == tab[i].any, "any %s",
                      tab[i].id);
    }
    /* 255-byte cap for v1/v2 IDs. */
    s = apr_pstrcat(mxf_test_pool, "$", rep('e', 242), ":example.org", NULL);
    ck_assert(mxf_id_event_valid(s, 255, v1));
    s = apr_pstrcat(mxf_test_pool, "$", rep('e', 243), ":example.org", NULL);
    ck_assert(!mxf_id_event_valid(s, 256, v1));
    ck_assert(!mxf_id_event_valid(s, 256, NULL));
}
END_TEST

START_TEST(event_ids_plausible)
{
    static const struct {
        const char *id;
        apr_size_t len;                 /* 0: strlen */
        int ok;
    } tab[] = {
        { "$idontexist", 0, 1 },        /* no room version's form, still an ID to look up */
        { "$0:domain", 0, 1 },
        { "$" H43, 0, 1 },
        { "$a/b+c=", 0, 1 },
        { "$\xc3\xa9", 0, 1 },
        { "$", 0, 0 },
        { "", 0, 0 },
        { "abc", 0, 0 },
        { "!room:x", 0, 0 },
        { "$\xc3", 0, 0 },              /* truncated UTF-8 */
        { "$\xed\xa0\x80", 0, 0 },     /* surrogate */
        { "$a\0b", 4, 0 },              /* NUL inside */
    };
    apr_size_t i;
    char *s;

    for (i = 0; i < sizeof(tab) / sizeof(tab[0]); i++) {
        apr_size_t n = tab[i].len ? tab[i].len : strlen(tab[i].id);
        ck_assert_msg(mxf_id_event_plausible(tab[i].id, n) == tab[i].ok, "%s", tab[i].id);
    }
    ck_assert(!mxf_id_event_plausible(NULL, 0));
    s = apr_pstrcat(mxf_test_pool, "$", rep('e', 254), NULL);
    ck_assert(mxf_id_event_plausible(s, 255));
    s = apr_pstrcat(mxf_test_pool, "$", rep('e', 255), NULL);
    ck_assert(!mxf_id_event_plausible(s, 256));
}
END_TEST

START_TEST(aliases_and_key_ids)
{
    static const char *const alias_good[] = { "#room:example.org", "#:x", "#a b\xc3\xa9:x:1" };
    static const char *const alias_bad[] = { "#room", "room:example.org", "#room:", "@a:b" };
    static const char *const key_good[] = { "ed25519:1", "ed25519:a_phSE", "ed25519:_", "ed25519:ABCxyz_09" };
    static const char *const key_bad[] = {
        "ed25519:", "ed25519", "curve25519:1", "ed25519:a-b", "ed25519:a:b", "ed25519:a.b",
        "ED25519:1", "", "ed25519:\xc3\xa9",
    };
    char *s;

    CHECK_TABLE(mxf_id_alias_valid, alias_good, 1);
    CHECK_TABLE(mxf_id_alias_valid, alias_bad, 0);
    CHECK_TABLE(mxf_id_key_id_valid, key_good, 1);
    CHECK_TABLE(mxf_id_key_id_valid, key_bad, 0);
    s = apr_pstrcat(mxf_test_pool, "ed25519:", rep('k', 247), NULL);
    ck_assert(mxf_id_key_id_valid(s, 255));
    s = apr_pstrcat(mxf_test_pool, "ed25519:", rep('k', 248), NULL);
    ck_assert(!mxf_id_key_id_valid(s, 256));
    /* The algorithm alone: what the signature checks set aside. */
    ck_assert(mxf_id_key_id_is_ed25519("ed25519:1"));
    ck_assert(mxf_id_key_id_is_ed25519("ed25519:"));
    ck_assert(mxf_id_key_id_is_ed25519("ed25519:a-b"));
    ck_assert(!mxf_id_key_id_is_ed25519("ed25519"));
    ck_assert(!mxf_id_key_id_is_ed25519("ED25519:1"));
    ck_assert(!mxf_id_key_id_is_ed25519("curve25519:1"));
    ck_assert(!mxf_id_key_id_is_ed25519("0"));
    ck_assert(!mxf_id_key_id_is_ed25519(""));
    ck_assert(!mxf_id_key_id_is_ed25519(NULL));
    s = apr_pstrcat(mxf_test_pool, "#", rep('a', 243), ":example.org", NULL);
    ck_assert(!mxf_id_alias_valid(s, 256));
    s = apr_pstrcat(mxf_test_pool, "#", rep('a', 242), ":example.org", NULL);
    ck_assert(mxf_id_alias_valid(s, 255));
}
END_TEST

START_TEST(server_of)
{
    apr_pool_t *p = mxf_test_pool;

    ck_assert_str_eq(mxf_id_server_of(p, "@alice:example.org"), "example.org");
    ck_assert_str_eq(mxf_id_server_of(p, "@alice:example.org:8448"), "example.org:8448");
    ck_assert_str_eq(mxf_id_server_of(p, "!r:[::1]:80"), "[::1]:80");
    ck_assert_str_eq(mxf_id_server_of(p, "$0:domain"), "domain");
    ck_assert_str_eq(mxf_id_server_of(p, "#a:b"), "b");
    ck_assert_str_eq(mxf_id_server_of(p, "@:b"), "b");
    ck_assert_ptr_null(mxf_id_server_of(p, "$" H43));
    ck_assert_ptr_null(mxf_id_server_of(p, "!" H43));
    ck_assert_ptr_null(mxf_id_server_of(p, "alice:example.org"));
    ck_assert_ptr_null(mxf_id_server_of(p, "@alice"));
    ck_assert_ptr_null(mxf_id_server_of(p, "@alice:bad host"));
    ck_assert_ptr_null(mxf_id_server_of(p, ""));
    ck_assert_ptr_null(mxf_id_server_of(p, NULL));
}
END_TEST

START_TEST(utf8)
{
    ck_assert(mxf_id_utf8_valid("", 0));
    ck_assert(mxf_id_utf8_valid("a\0b", 3));
    ck_assert(mxf_id_utf8_valid("\xf0\x9f\x98\x80", 4));      /* U+1F600 */
    ck_assert(mxf_id_utf8_valid("\xf4\x8f\xbf\xbf", 4));      /* U+10FFFF */
    ck_assert(mxf_id_utf8_valid("\xee\x80\x80", 3));          /* U+E000 */
    ck_assert(!mxf_id_utf8_valid("\xf4\x90\x80\x80", 4));     /* > U+10FFFF */
    ck_assert(!mxf_id_utf8_valid("\xed\xbf\xbf", 3));         /* surrogate */
    ck_assert(!mxf_id_utf8_valid("\xe0\x9f\xbf", 3));         /* overlong */
    ck_assert(!mxf_id_utf8_valid("\xf0\x8f\xbf\xbf", 4));     /* overlong */
    ck_assert(!mxf_id_utf8_valid("\xc1\xbf", 2));             /* overlong */
    ck_assert(!mxf_id_utf8_valid("\x80", 1));
    ck_assert(!mxf_id_utf8_valid("\xc3", 1));
    ck_assert(!mxf_id_utf8_valid("\xf0\x9f\x98", 3));
}
END_TEST

Suite *mxf_suite_id(void)
{
    Suite *s = suite_create("id");
    TCase *tc = mxf_test_case("id");

    tcase_add_test(tc, server_names);
    tcase_add_test(tc, user_ids);
    tcase_add_test(tc, room_ids);
    tcase_add_test(tc, event_ids);
    tcase_add_test(tc, event_ids_plausible);
    tcase_add_test(tc, aliases_and_key_ids);
    tcase_add_test(tc, server_of);
    tcase_add_test(tc, utf8);
    suite_add_tcase(s, tc);
    return s;
}
