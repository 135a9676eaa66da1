/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <apr_strings.h>

#include "mxf_base64.h"
#include "mxf_key.h"
#include "mxf_test.h"

/* The spec's signing test key (appendices, "Signing details"). */
#define SPEC_SEED "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
#define SPEC_PUBKEY "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI"

START_TEST(parse_spec_key)
{
    mxf_signing_key_t *key = NULL;
    const char *why = NULL;

    ck_assert_int_eq(mxf_key_parse(mxf_test_pool, "ed25519 1 " SPEC_SEED, &key, &why),
                     APR_SUCCESS);
    ck_assert_str_eq(key->key_id, "ed25519:1");
    ck_assert_str_eq(mxf_b64_encode(mxf_test_pool, key->pk, sizeof(key->pk),
                                    MXF_B64_STANDARD), SPEC_PUBKEY);
    /* The spec's seed has non-zero unused bits; the canonical text ends in 0. */
    ck_assert_str_eq(mxf_key_format(mxf_test_pool, key),
                     "ed25519 1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA0\n");
}
END_TEST

START_TEST(parse_rejects)
{
    static const char *const bad[] = {
        "", "ed25519", "ed25519 1", "rsa 1 " SPEC_SEED, "ed25519 a:b " SPEC_SEED,
        "ed25519 1 " SPEC_SEED " extra", "ed25519 1 Zm9v", "ed25519 1 " SPEC_SEED "AA",
    };
    mxf_signing_key_t *key;
    const char *why;
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why = NULL;
        ck_assert_msg(mxf_key_parse(mxf_test_pool, bad[i], &key, &why) == APR_EINVAL,
                      "accepted '%s'", bad[i]);
        ck_assert_ptr_nonnull(why);
        ck_assert_msg(strstr(why, SPEC_SEED) == NULL, "secret in message");
    }
}
END_TEST

START_TEST(load_file_first_key)
{
    char path[] = "/tmp/mxf-key-XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    mxf_signing_key_t *key = NULL;
    const char *why = NULL;

    fputs("\ned25519 a_Bc1 " SPEC_SEED "\ned25519 old " SPEC_SEED "\n", f);
    fclose(f);
    ck_assert_int_eq(mxf_key_load_file(mxf_test_pool, path, &key, &why), APR_SUCCESS);
    ck_assert_str_eq(key->key_id, "ed25519:a_Bc1");
    unlink(path);
    ck_assert_int_ne(mxf_key_load_file(mxf_test_pool, path, &key, &why), APR_SUCCESS);
    ck_assert_ptr_nonnull(strstr(why, path));
}
END_TEST

START_TEST(generate_round_trips)
{
    mxf_signing_key_t *key = NULL, *again = NULL;
    const char *why = NULL;
    char *line;

    ck_assert_int_eq(mxf_key_generate(mxf_test_pool, "k1", &key, &why), APR_SUCCESS);
    line = mxf_key_format(mxf_test_pool, key);
    line[strlen(line) - 1] = '\0';
    ck_assert_int_eq(mxf_key_parse(mxf_test_pool, line, &again, &why), APR_SUCCESS);
    ck_assert(memcmp(key->pk, again->pk, sizeof(key->pk)) == 0);
    ck_assert_int_eq(mxf_key_generate(mxf_test_pool, "bad version", &key, &why), APR_EINVAL);
}
END_TEST

Suite *mxf_suite_key(void)
{
    Suite *s = suite_create("key");
    TCase *tc = mxf_test_case("keyfile");

    tcase_add_test(tc, parse_spec_key);
    tcase_add_test(tc, parse_rejects);
    tcase_add_test(tc, load_file_first_key);
    tcase_add_test(tc, generate_round_trips);
    suite_add_tcase(s, tc);
    return s;
}
