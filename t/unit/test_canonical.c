/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#include <string.h>

#include "mxf_canonical.h"
#include "mxf_json.h"
#include "mxf_test.h"

/* Parses @a in (tolerant: any value, reals kept) and returns its canonical text. */
static const char *canon_flags(const char *in, unsigned flags)
{
    json_t *j = NULL;
    const char *why = NULL;
    apr_size_t len = 0;
    char *out;

    ck_assert_msg(mxf_json_parse(mxf_test_pool, in, strlen(in),
                                 MXF_JSON_ANY | MXF_JSON_ALLOW_NUL, &j, &why)
                  == APR_SUCCESS, "parse of %s failed: %s", in, why);
    out = mxf_canonical_encode_ex(mxf_test_pool, j, flags, &len, &why);
    ck_assert_msg(out != NULL, "encode of %s failed: %s", in, why);
    ck_assert_uint_eq(len, strlen(out));
    return out;
}

static const char *canon(const char *in)
{
    return canon_flags(in, 0);
}

/* Every example of the spec's appendix "Canonical JSON", copied exactly. */
START_TEST(spec_examples)
{
    static const char *const cases[][2] = {
        { "{}", "{}" },
        { "{\n    \"one\": 1,\n    \"two\": \"Two\"\n}", "{\"one\":1,\"two\":\"Two\"}" },
        { "{\n    \"b\": \"2\",\n    \"a\": \"1\"\n}", "{\"a\":\"1\",\"b\":\"2\"}" },
        { "{\"b\":\"2\",\"a\":\"1\"}", "{\"a\":\"1\",\"b\":\"2\"}" },
        { "{\n"
          "    \"auth\": {\n"
          "        \"success\": true,\n"
          "        \"mxid\": \"@john.doe:example.com\",\n"
          "        \"profile\": {\n"
          "            \"display_name\": \"John Doe\",\n"
          "            \"three_pids\": [\n"
          "                {\n"
          "                    \"medium\": \"email\",\n"
          "                    \"address\": \"john.doe@example.org\"\n"
          "                },\n"
          "                {\n"
          "                    \"medium\": \"msisdn\",\n"
          "                    \"address\": \"123456789\"\n"
          "                }\n"
          "            ]\n"
          "        }\n"
          "    }\n"
          "}",
          "{\"auth\":{\"mxid\":\"@john.doe:example.com\",\"profile\":{\"display_name\":"
          "\"John Doe\",\"three_pids\":[{\"address\":\"john.doe@example.org\",\"medium\":"
          "\"email\"},{\"address\":\"123456789\",\"medium\":\"msisdn\"}]},\"success\":true}}" },
        { "{\n    \"a\": \"日本語\"\n}", "{\"a\":\"日本語\"}" },
        { "{\n    \"本\": 2,\n    \"日\": 1\n}", "{\"日\":1,\"本\":2}" },
        { "{\n    \"a\": \"\\u65E5\"\n}", "{\"a\":\"日\"}" },
        { "{\n    \"a\": null\n}", "{\"a\":null}" },
        { "{\n    \"a\": -0,\n    \"b\": 1e10\n}", "{\"a\":0,\"b\":10000000000}" },
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ck_assert_str_eq(canon(cases[i][0]), cases[i][1]);
    }
}
END_TEST

/* Every control character, quote, backslash, '/', DEL, U+2028/9, astral. */
START_TEST(string_escapes)
{
    static const char *const expect[32] = {
        "\\u0000", "\\u0001", "\\u0002", "\\u0003", "\\u0004", "\\u0005", "\\u0006",
        "\\u0007", "\\b", "\\t", "\\n", "\\u000b", "\\f", "\\r", "\\u000e", "\\u000f",
        "\\u0010", "\\u0011", "\\u0012", "\\u0013", "\\u0014", "\\u0015", "\\u0016",
        "\\u0017", "\\u0018", "\\u0019", "\\u001a", "\\u001b", "\\u001c", "\\u001d",
        "\\u001e", "\\u001f",
    };
    char in[32], out[32];
    int c;

    for (c = 0; c < 32; c++) {
        snprintf(in, sizeof(in), "\"a\\u%04Xb\"", c);     /* upper-case input */
        snprintf(out, sizeof(out), "\"a%sb\"", expect[c]);
        ck_assert_str_eq(canon(in), out);
    }
    ck_assert_str_eq(canon("\"\\\"\\\\\\/\""), "\"\\\"\\\\/\"");
    ck_assert_str_eq(canon("\"\\u007f\x7f\""), "\"\x7f\x7f\"");
    ck_assert_str_eq(canon("\"\\u2028\\u2029\""), "\"\xe2\x80\xa8\xe2\x80\xa9\"");
    ck_assert_str_eq(canon("\"\\ud83d\\ude00\\u00e9\""), "\"\xf0\x9f\x98\x80\xc3\xa9\"");
    ck_assert_str_eq(canon("{\"a\":\"\\u0000\"}"), "{\"a\":\"\\u0000\"}");
}
END_TEST

START_TEST(key_order_is_bytewise)
{
    /* U+FFFF sorts before U+10000 by code point (UTF-16 order differs). */
    ck_assert_str_eq(canon("{\"\\ud800\\udc00\":1,\"\\uffff\":2,\"\":3,\"a\":4,\"ab\":5,"
                           "\"B\":6,\"\\u00e9\":7}"),
                     "{\"\":3,\"B\":6,\"a\":4,\"ab\":5,\"\xc3\xa9\":7,\"\xef\xbf\xbf\":2,"
                     "\"\xf0\x90\x80\x80\":1}");
    /* Many keys: the heap path of the sorter. */
    ck_assert_str_eq(canon("{\"q\":1,\"p\":1,\"o\":1,\"n\":1,\"m\":1,\"l\":1,\"k\":1,"
                           "\"j\":1,\"i\":1,\"h\":1,\"g\":1,\"f\":1,\"e\":1,\"d\":1,"
                           "\"c\":1,\"b\":1,\"a\":[{\"z\":[],\"y\":{}}]}"),
                     "{\"a\":[{\"y\":{},\"z\":[]}],\"b\":1,\"c\":1,\"d\":1,\"e\":1,\"f\":1,"
                     "\"g\":1,\"h\":1,\"i\":1,\"j\":1,\"k\":1,\"l\":1,\"m\":1,\"n\":1,"
                     "\"o\":1,\"p\":1,\"q\":1}");
}
END_TEST

START_TEST(numbers)
{
    ck_assert_str_eq(canon("[9007199254740991,-9007199254740991,0,-0,true,false,null]"),
                     "[9007199254740991,-9007199254740991,0,0,true,false,null]");
    /* Legacy rooms: big ints are written as they are, unless strict. */
    ck_assert_str_eq(canon("9223372036854775807"), "9223372036854775807");
    ck_assert_str_eq(canon("-9223372036854775808"), "-9223372036854775808");
    ck_assert_str_eq(canon("[1.0,-0.0,1E2,-9007199254740991.0]"),
                     "[1,0,100,-9007199254740991]");
}
END_TEST

START_TEST(rejects)
{
    static const struct { const char *in; unsigned flags; } bad[] = {
        { "1.5", 0 },
        { "[1e-7]", 0 },
        { "9007199254740992.0", 0 },
        { "-1e300", 0 },
        { "9007199254740992", MXF_CANON_STRICT_INTS },
        { "-9007199254740992", MXF_CANON_STRICT_INTS },
        { "1.0", MXF_CANON_STRICT_INTS },
        { "1.5", MXF_CANON_STRICT_INTS | MXF_CANON_PYTHON_FLOATS },
    };
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *j = NULL;
        const char *why = NULL;

        ck_assert_int_eq(mxf_json_parse(mxf_test_pool, bad[i].in, strlen(bad[i].in),
                                        MXF_JSON_ANY, &j, &why), APR_SUCCESS);
        ck_assert_msg(mxf_canonical_encode_ex(mxf_test_pool, j, bad[i].flags, NULL, &why)
                      == NULL, "encoded %s", bad[i].in);
        ck_assert_ptr_nonnull(why);
    }
    ck_assert_str_eq(canon_flags("9007199254740991", MXF_CANON_STRICT_INTS),
                     "9007199254740991");
}
END_TEST

START_TEST(rejects_invalid_utf8)
{
    static const char *const bad[] = {
        "\xff", "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
        "\xe6\x97", "\x80", "a\xf0\x9f\x98",
    };
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *j = mxf_json_own(mxf_test_pool, json_object());
        const char *why = NULL;

        json_object_set_new(j, "k", json_stringn_nocheck(bad[i], strlen(bad[i])));
        ck_assert_ptr_null(mxf_canonical_encode(mxf_test_pool, j, NULL, &why));
        ck_assert_ptr_nonnull(why);
        /* ... and in keys. */
        j = mxf_json_own(mxf_test_pool, json_object());
        json_object_setn_nocheck(j, bad[i], strlen(bad[i]), json_true());
        ck_assert_ptr_null(mxf_canonical_encode(mxf_test_pool, j, NULL, &why));
    }
}
END_TEST

START_TEST(python_floats)
{
    static const char *const cases[][2] = {
        { "1e10", "10000000000.0" },  { "1.5", "1.5" },   { "-0.0", "-0.0" },
        { "0.0", "0.0" },             { "0.1", "0.1" },   { "1e16", "1e+16" },
        { "1e15", "1000000000000000.0" },                 { "0.0001", "0.0001" },
        { "0.00001", "1e-05" },       { "1.5e300", "1.5e+300" },
        { "-2.5e-7", "-2.5e-07" },    { "123456789.125", "123456789.125" },
        { "5e-324", "5e-324" },       { "1.7976931348623157e308", "1.7976931348623157e+308" },
        { "0.30000000000000004", "0.30000000000000004" },
        { "12345678901234567890.0", "1.2345678901234567e+19" },
        { "7", "7" },
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ck_assert_str_eq(canon_flags(cases[i][0], MXF_CANON_PYTHON_FLOATS), cases[i][1]);
    }
}
END_TEST

START_TEST(nesting_cap)
{
    json_t *top = mxf_json_own(mxf_test_pool, json_array()), *cur = top;
    const char *why = NULL;
    int i;

    for (i = 1; i < MXF_CANON_MAX_DEPTH; i++) {
        json_t *next = json_array();
        json_array_append_new(cur, next);
        cur = next;
    }
    ck_assert_ptr_nonnull(mxf_canonical_encode(mxf_test_pool, top, NULL, &why));
    json_array_append_new(cur, json_array());
    ck_assert_ptr_null(mxf_canonical_encode(mxf_test_pool, top, NULL, &why));
    ck_assert_ptr_nonnull(why);
}
END_TEST

START_TEST(append_to_buffer)
{
    mxf_buf_t b;
    const char *why = NULL;
    json_t *j = mxf_json_own(mxf_test_pool, json_pack("{s:i,s:s}", "z", 1, "a", "x"));
    int i;

    mxf_buf_init(&b, mxf_test_pool, 4);
    mxf_buf_append(&b, "[", 1);
    for (i = 0; i < 50; i++) {          /* forces several reallocations */
        ck_assert_int_eq(mxf_canonical_append(&b, j, 0, &why), APR_SUCCESS);
        mxf_buf_append(&b, ",", 1);
    }
    ck_assert_uint_eq(b.len, 1 + 50 * strlen("{\"a\":\"x\",\"z\":1},"));
    ck_assert_int_eq(strncmp(b.data, "[{\"a\":\"x\",\"z\":1},{\"a\"", 21), 0);
    ck_assert_uint_eq(strlen(b.data), b.len);
}
END_TEST

Suite *mxf_suite_canonical(void)
{
    Suite *s = suite_create("canonical");
    TCase *tc = mxf_test_case("encode");

    tcase_add_test(tc, spec_examples);
    tcase_add_test(tc, string_escapes);
    tcase_add_test(tc, key_order_is_bytewise);
    tcase_add_test(tc, numbers);
    tcase_add_test(tc, rejects);
    tcase_add_test(tc, rejects_invalid_utf8);
    tcase_add_test(tc, python_floats);
    tcase_add_test(tc, nesting_cap);
    tcase_add_test(tc, append_to_buffer);
    suite_add_tcase(s, tc);
    return s;
}
