/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#include <string.h>

#include "mxf_base64.h"
#include "mxf_test.h"

/* RFC 4648 section 10 vectors, unpadded. */
static const char *const plain[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar" };
static const char *const coded[] = { "", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy" };
static const char *const padded[] = { "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy" };

START_TEST(rfc4648_vectors)
{
    int i = _i;
    unsigned char *out;
    apr_size_t outlen;

    ck_assert_str_eq(mxf_b64_encode(mxf_test_pool, (const unsigned char *)plain[i],
                                    strlen(plain[i]), MXF_B64_STANDARD), coded[i]);
    ck_assert_int_eq(mxf_b64_decode(mxf_test_pool, coded[i], strlen(coded[i]),
                                    MXF_B64_STANDARD, &out, &outlen), APR_SUCCESS);
    ck_assert_uint_eq(outlen, strlen(plain[i]));
    ck_assert(memcmp(out, plain[i], outlen) == 0);
    ck_assert_int_eq(mxf_b64_decode(mxf_test_pool, padded[i], strlen(padded[i]),
                                    MXF_B64_STANDARD, &out, &outlen), APR_SUCCESS);
    ck_assert_uint_eq(outlen, strlen(plain[i]));
    ck_assert(memcmp(out, plain[i], outlen) == 0);
}
END_TEST

START_TEST(alphabets)
{
    static const unsigned char bytes[] = { 0xfb, 0xff, 0xbf };
    unsigned char *out;
    apr_size_t outlen;

    ck_assert_str_eq(mxf_b64_encode(mxf_test_pool, bytes, 3, MXF_B64_STANDARD), "+/+/");
    ck_assert_str_eq(mxf_b64_encode(mxf_test_pool, bytes, 3, MXF_B64_URLSAFE), "-_-_");
    ck_assert_int_eq(mxf_b64_decode(mxf_test_pool, "-_-_", 4, MXF_B64_STANDARD,
                                    &out, &outlen), APR_EINVAL);
    ck_assert_int_eq(mxf_b64_decode(mxf_test_pool, "+/+/", 4, MXF_B64_URLSAFE,
                                    &out, &outlen), APR_EINVAL);
    /* Either alphabet, even mixed, when decoding what others send. */
    {
        static const char *const any[] = { "+/+/", "-_-_", "+_-/" };
        size_t i;
        for (i = 0; i < sizeof(any) / sizeof(any[0]); i++) {
            ck_assert_int_eq(mxf_b64_decode(mxf_test_pool, any[i], 4, MXF_B64_ANY,
                                            &out, &outlen), APR_SUCCESS);
            ck_assert_uint_eq(outlen, 3);
            ck_assert_mem_eq(out, bytes, 3);
        }
        ck_assert_int_eq(mxf_b64_decode(mxf_test_pool, "+/.-", 4, MXF_B64_ANY,
                                        &out, &outlen), APR_EINVAL);
    }
}
END_TEST

START_TEST(rejects_malformed)
{
    static const char *const bad[] = { "Z", "Zg=", "Zg===", "Z=g=", "Zm9v\n", "Zm 9v", "Zm9v=" };
    unsigned char *out;
    apr_size_t outlen;
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(mxf_b64_decode(mxf_test_pool, bad[i], strlen(bad[i]), MXF_B64_STANDARD,
                                     &out, &outlen) == APR_EINVAL, "accepted '%s'", bad[i]);
    }
}
END_TEST

START_TEST(decode_exact_length)
{
    unsigned char buf[3];

    ck_assert_int_eq(mxf_b64_decode_exact("Zm9v", 4, MXF_B64_STANDARD, buf, 3), APR_SUCCESS);
    ck_assert(memcmp(buf, "foo", 3) == 0);
    ck_assert_int_eq(mxf_b64_decode_exact("Zm8", 3, MXF_B64_STANDARD, buf, 3), APR_EINVAL);
    ck_assert_int_eq(mxf_b64_decode_exact("Zm9vYg", 6, MXF_B64_STANDARD, buf, 3), APR_EINVAL);
}
END_TEST

Suite *mxf_suite_base64(void)
{
    Suite *s = suite_create("base64");
    TCase *tc = mxf_test_case("unpadded");

    tcase_add_loop_test(tc, rfc4648_vectors, 0, 7);
    tcase_add_test(tc, alphabets);
    tcase_add_test(tc, rejects_malformed);
    tcase_add_test(tc, decode_exact_length);
    suite_add_tcase(s, tc);
    return s;
}
