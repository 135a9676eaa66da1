/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#include <string.h>

#include "mxf_pduinput.h"
#include "mxf_test.h"

typedef struct expect {
    const char *text;
    long line;
    const char *where;
} expect_t;

/* Splits @a input and checks every item found against @a want (ended by a NULL text). */
static void check_split(const char *input, const expect_t *want)
{
    apr_array_header_t *items = apr_array_make(mxf_test_pool, 4, sizeof(mxf_pdu_item_t));
    const char *why = NULL;
    long err_line = 0;
    int i, n = 0;

    ck_assert_msg(mxf_pdu_input_split(mxf_test_pool, input, strlen(input), items, &err_line,
                                      &why) == APR_SUCCESS,
                  "%s: line %ld: %s", input, err_line, why);
    while (want[n].text) {
        n++;
    }
    ck_assert_msg(items->nelts == n, "%s: %d items, want %d", input, items->nelts, n);
    for (i = 0; i < n; i++) {
        const mxf_pdu_item_t *it = &APR_ARRAY_IDX(items, i, mxf_pdu_item_t);
        ck_assert_msg(it->len == strlen(want[i].text)
                      && memcmp(it->text, want[i].text, it->len) == 0,
                      "item %d: '%.*s', want '%s'", i, (int)it->len, it->text, want[i].text);
        ck_assert_int_eq(it->line, want[i].line);
        if (want[i].where) {
            ck_assert_ptr_nonnull(it->where);
            ck_assert_str_eq(it->where, want[i].where);
        }
        else {
            ck_assert_ptr_null(it->where);
        }
    }
}

static void check_refused(const char *input, long line, const char *why_has)
{
    apr_array_header_t *items = apr_array_make(mxf_test_pool, 4, sizeof(mxf_pdu_item_t));
    const char *why = NULL;
    long err_line = 0;

    ck_assert_int_eq(mxf_pdu_input_split(mxf_test_pool, input, strlen(input), items,
                                         &err_line, &why), APR_EINVAL);
    ck_assert_int_eq(err_line, line);
    ck_assert_ptr_nonnull(why);
    ck_assert_msg(strstr(why, why_has) != NULL, "'%s' does not say '%s'", why, why_has);
}

START_TEST(json_lines)
{
    /* One PDU per line, kept byte for byte (spaces inside included);
     * blank lines, CRLF and a byte order mark skipped. */
    static const expect_t want[] = {
        { "{\"type\": \"a\", \"content\": {}}", 1, NULL },
        { "{\"type\":\"b\"}", 3, NULL },
        { "{\"type\":\"c\",\"x\":[1, 2]}", 5, NULL },
        { NULL, 0, NULL }
    };
    check_split("\xef\xbb\xbf{\"type\": \"a\", \"content\": {}}\r\n\n  {\"type\":\"b\"}  \n"
                " \t \n{\"type\":\"c\",\"x\":[1, 2]}", want);
}
END_TEST

START_TEST(json_lines_bad_line_handed_on)
{
    /* A line that is not one whole value goes to the parser as it is; the lines
     * after it are still read one by one. */
    static const expect_t want[] = {
        { "{\"type\":\"a\"}", 1, NULL },
        { "{\"type\":\"b\"", 2, NULL },
        { "{\"type\":\"c\"} trailing", 3, NULL },
        { "42", 4, NULL },
        { "{\"type\":\"d\"}", 5, NULL },
        { NULL, 0, NULL }
    };
    check_split("{\"type\":\"a\"}\n{\"type\":\"b\"\n{\"type\":\"c\"} trailing\n42\n"
                "{\"type\":\"d\"}\n", want);
}
END_TEST

START_TEST(responses_on_one_line)
{
    /* A transaction (or /backfill answer), a /state answer, /get_missing_events,
     * /event_auth and /send_join, one per line: their PDUs in member order. */
    static const expect_t want[] = {
        { "{\"type\":\"a\"}", 1, "pdus[0]" },
        { "{\"type\": \"b\"}", 1, "pdus[1]" },
        { "{\"type\":\"s\"}", 2, "pdus[0]" },
        { "{\"type\":\"c1\"}", 2, "auth_chain[0]" },
        { "{\"type\":\"m\"}", 3, "events[0]" },
        { "{\"type\":\"c2\"}", 4, "auth_chain[0]" },
        { "{\"type\":\"st\"}", 5, "state[0]" },
        { "{\"type\":\"ac\"}", 5, "auth_chain[0]" },
        { "{\"type\":\"join\"}", 5, "event" },
        { NULL, 0, NULL }
    };
    check_split("{\"origin\":\"hs\",\"origin_server_ts\":1,"
                "\"pdus\":[{\"type\":\"a\"}, {\"type\": \"b\"}]}\n"
                "{\"pdus\":[{\"type\":\"s\"}],\"auth_chain\":[{\"type\":\"c1\"}]}\n"
                "{\"events\":[{\"type\":\"m\"}]}\n"
                "{\"auth_chain\":[{\"type\":\"c2\"}]}\n"
                "{\"origin\":\"hs\",\"state\":[{\"type\":\"st\"}],"
                "\"auth_chain\":[{\"type\":\"ac\"}],"
                "\"event\":{\"type\":\"join\"},\"members_omitted\":false}\n", want);
}
END_TEST

START_TEST(responses_and_roles)
{
    /* PDUs say which response holds them, whether it is a snapshot (it has an
     * "auth_chain") rather than history, and a /send_join answer's whether
     * they are of its "state" or its "event". */
    static const char input[] =
        "{\"type\":\"loose\"}\n"
        "{\"pdus\":[{\"type\":\"p\"}],\"auth_chain\":[{\"type\":\"a\"}]}\n"
        "{\"state\":[{\"type\":\"s1\"},{\"type\":\"s2\"}],\"auth_chain\":[{\"type\":\"c\"}],"
        "\"event\":{\"type\":\"j\"}}\n"
        "{\"origin\":\"hs\",\"pdus\":[{\"type\":\"t\"}]}\n";
    static const struct {
        int response;
        mxf_pdu_role_t role;
        int snapshot;
    } want[] = { { 0, MXF_PDU_LOOSE, 0 }, { 1, MXF_PDU_LOOSE, 1 }, { 1, MXF_PDU_LOOSE, 1 },
                 { 2, MXF_PDU_STATE, 1 }, { 2, MXF_PDU_STATE, 1 }, { 2, MXF_PDU_LOOSE, 1 },
                 { 2, MXF_PDU_EVENT, 1 }, { 3, MXF_PDU_LOOSE, 0 } };
    apr_array_header_t *items = apr_array_make(mxf_test_pool, 4, sizeof(mxf_pdu_item_t));
    const char *why = NULL;
    long err_line = 0;
    int i;

    ck_assert_int_eq(mxf_pdu_input_split(mxf_test_pool, input, strlen(input), items, &err_line,
                                         &why), APR_SUCCESS);
    ck_assert_int_eq(items->nelts, 8);
    for (i = 0; i < 8; i++) {
        const mxf_pdu_item_t *it = &APR_ARRAY_IDX(items, i, mxf_pdu_item_t);
        ck_assert_int_eq(it->response, want[i].response);
        ck_assert_int_eq(it->role, want[i].role);
        ck_assert_int_eq(it->snapshot, want[i].snapshot);
    }
}
END_TEST

START_TEST(partial_state_answer)
{
    /* A /send_join answer with "members_omitted": true (a partial-state
     * answer) marks its PDUs with the line of that member; false, a PDU's
     * own member of that name, or another response, do not. */
    static const char input[] =
        "{\n"
        "  \"state\": [{\"type\": \"s\"}],\n"
        "  \"members_omitted\": true,\n"
        "  \"event\": {\"type\": \"j\"}\n"
        "}\n"
        "{\"members_omitted\":false,\"state\":[{\"type\":\"s\"}],\"event\":{\"type\":\"j\"}}\n"
        "{\"type\":\"loose\",\"members_omitted\":true}\n"
        "{\"pdus\":[{\"type\":\"p\"}]}\n"
        "{\"members_omitted\":true,\"state\":[{\"type\":\"s\"}]}\n";
    static const long want[] = { 3, 3, 0, 0, 0, 0, 9 };
    apr_array_header_t *items = apr_array_make(mxf_test_pool, 4, sizeof(mxf_pdu_item_t));
    const char *why = NULL;
    long err_line = 0;
    int i;

    ck_assert_int_eq(mxf_pdu_input_split(mxf_test_pool, input, strlen(input), items, &err_line,
                                         &why), APR_SUCCESS);
    ck_assert_int_eq(items->nelts, 7);
    for (i = 0; i < 7; i++) {
        ck_assert_int_eq(APR_ARRAY_IDX(items, i, mxf_pdu_item_t).partial_line, want[i]);
    }
}
END_TEST

START_TEST(pretty_printed)
{
    /* Over many lines: each PDU starts where it says and is copied without the
     * whitespace between tokens; strings (spaces, escaped quotes and
     * backslashes, \u escapes) and numbers keep their bytes. */
    static const expect_t want[] = {
        { "{\"type\":\"m.room.message\","
          "\"content\":{\"body\":\"a  \\\" b\\\\\",\"n\":1.50e3}}", 2, "[0]" },
        { "{\"type\":\"x\",\"u\":\"\\u00e9 \\n\"}", 9, "[1]" },
        { NULL, 0, NULL }
    };
    check_split("[\n"
                "  {\n"
                "    \"type\": \"m.room.message\",\n"
                "    \"content\": {\n"
                "      \"body\": \"a  \\\" b\\\\\",\n"
                "      \"n\": 1.50e3\n"
                "    }\n"
                "  },\n"
                "  {\"type\": \"x\",\r\n   \"u\": \"\\u00e9 \\n\"}\n"
                "]\n", want);
}
END_TEST

START_TEST(pretty_printed_responses)
{
    /* A response over many lines, then an array of responses, then a PDU; a PDU
     * on one line keeps its bytes. */
    static const expect_t want[] = {
        { "{\"type\": \"a\"}", 3, "pdus[0]" },
        { "{\"type\": \"b\"}", 4, "auth_chain[0]" },
        { "{\"type\": \"c\"}", 6, "[0].events[0]" },
        { "{\"type\": \"d\"}", 6, "[1].pdus[0]" },
        { "{\"type\":\"e\"}", 7, NULL },
        { NULL, 0, NULL }
    };
    check_split("{\n"
                "  \"pdus\": [\n"
                "    {\"type\": \"a\"}],\n"
                "  \"auth_chain\": [{\"type\": \"b\"}]\n"
                "}\n"
                "[{\"events\": [{\"type\": \"c\"}]}, {\"pdus\": [{\"type\": \"d\"}]}]\n"
                "{\"type\":\n\"e\"}\n", want);
}
END_TEST

START_TEST(not_responses)
{
    /* A PDU with members named like a response's is a PDU ("type"); an object
     * with neither is handed on whole, as is one whose "pdus" is not an array;
     * elements of a response that are not objects are handed on (refused later). */
    static const expect_t want[] = {
        { "{\"type\":\"t\",\"pdus\":[{\"type\":\"in\"}]}", 1, NULL },
        { "{\"origin\":\"hs\"}", 2, NULL },
        { "{\"pdus\":5}", 3, NULL },
        { "{}", 4, NULL },
        { "1", 5, "pdus[0]" },
        { "\"x\"", 5, "pdus[1]" },
        { "[]", 5, "pdus[2]" },
        { NULL, 0, NULL }
    };
    check_split("{\"type\":\"t\",\"pdus\":[{\"type\":\"in\"}]}\n{\"origin\":\"hs\"}\n{\"pdus\":5}\n"
                "{}\n{\"pdus\":[1,\"x\",[]]}\n", want);
}
END_TEST

START_TEST(json_lines_with_a_bad_first_line)
{
    /* The first line is cut short: not one value over many lines, since the
     * lines after it are whole values, so every line is handed on as a line. */
    static const expect_t want[] = {
        { "{\"type\":\"a\",\"con", 1, NULL },
        { "{\"type\":\"b\"}", 2, NULL },
        { "{\"type\":\"c\"}", 3, NULL },
        { "{\"type\":", 5, NULL },
        { "{\"type\":\"e\"}", 6, NULL },
        { NULL, 0, NULL }
    };
    check_split("{\"type\":\"a\",\"con\n{\"type\":\"b\"}\n{\"type\":\"c\"}\n\n"
                "{\"type\":\n{\"type\":\"e\"}\n", want);
}
END_TEST

START_TEST(v1_send_join)
{
    /* PUT /send_join (v1) answers [200, {...}]: read as its object. */
    static const expect_t want[] = {
        { "{\"type\":\"s\"}", 1, "[1].state[0]" },
        { "{\"type\":\"c\"}", 1, "[1].auth_chain[0]" },
        { NULL, 0, NULL }
    };
    check_split("[200, {\"origin\":\"hs\",\"state\":[{\"type\":\"s\"}],"
                "\"auth_chain\":[{\"type\":\"c\"}]}]\n", want);
}
END_TEST

START_TEST(drop_member)
{
    static const struct {
        const char *in, *out;
    } ok[] = {
        { "{\"a\":1,\"unsigned\":{\"x\":[1,{\"y\":\"}\"}]},\"b\":2}", "{\"a\":1,\"b\":2}" },
        { "{\"unsigned\":{}, \"a\":1}", "{\"a\":1}" },
        { "{\"a\":1 , \"unsigned\" : 5 }", "{\"a\":1 }" },
        { " { \"unsigned\":\"x\" } ", " {  } " },
        { "{\"a\":1,\"unsi\\u0067ned\":2}", "{\"a\":1}" },
    };
    static const char *const none[] = {
        "{\"a\":1}", "[1]", "{\"a\":1,\"unsigned\":{}", "{\"unsigned\" 1}", "",
        "{\"x\":{\"unsigned\":1}}",
    };
    size_t i;

    for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        const char *out = NULL;
        apr_size_t len = 0;
        ck_assert_int_eq(mxf_pdu_drop_member(mxf_test_pool, ok[i].in, strlen(ok[i].in),
                                             "unsigned", &out, &len), APR_SUCCESS);
        ck_assert_int_eq(len, strlen(ok[i].out));
        ck_assert_str_eq(out, ok[i].out);
    }
    for (i = 0; i < sizeof(none) / sizeof(none[0]); i++) {
        const char *out = NULL;
        apr_size_t len = 0;
        ck_assert_int_eq(mxf_pdu_drop_member(mxf_test_pool, none[i], strlen(none[i]),
                                             "unsigned", &out, &len), APR_ENOENT);
    }
}
END_TEST

START_TEST(empty)
{
    static const expect_t none[] = { { NULL, 0, NULL } };

    check_split("", none);
    check_split("\n \r\n\t\n", none);
    check_split("{\"pdus\":[]}", none);
    check_split("[\n]", none);
}
END_TEST

START_TEST(not_well_formed)
{
    /* Read as JSON values (the first line is not one): where one does not end,
     * or its brackets do not match, the import is refused at its first line. */
    check_refused("{\n  \"type\": \"a\"\n", 1, "does not end");
    check_refused("[\n{\"type\":\"a\"},\n{\"type\":\"b\"]\n]", 1, "does not match");
    check_refused("\n\n[\n{\"type\":\"a\"} {\"type\":\"b\"}\n]", 3, "commas");
    check_refused("[\n{\"type\":\"a\"}\n]x", 3, "whitespace");
    check_refused("{\"pdus\": [\n {\"type\": \"a\\\"}]\n}", 1, "string does not end");
}
END_TEST

Suite *mxf_suite_pduinput(void)
{
    Suite *s = suite_create("pduinput");
    TCase *tc = mxf_test_case("split");

    tcase_add_test(tc, json_lines);
    tcase_add_test(tc, json_lines_bad_line_handed_on);
    tcase_add_test(tc, responses_on_one_line);
    tcase_add_test(tc, responses_and_roles);
    tcase_add_test(tc, partial_state_answer);
    tcase_add_test(tc, pretty_printed);
    tcase_add_test(tc, pretty_printed_responses);
    tcase_add_test(tc, not_responses);
    tcase_add_test(tc, json_lines_with_a_bad_first_line);
    tcase_add_test(tc, v1_send_join);
    tcase_add_test(tc, drop_member);
    tcase_add_test(tc, empty);
    tcase_add_test(tc, not_well_formed);
    suite_add_tcase(s, tc);
    return s;
}
