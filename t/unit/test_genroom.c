/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#include <string.h>

#include <apr_hash.h>
#include <apr_strings.h>

#include "mxf_canonical.h"
#include "mxf_event.h"
#include "mxf_genroom.h"
#include "mxf_json.h"
#include "mxf_roomver.h"
#include "mxf_sign.h"
#include "mxf_test.h"

typedef struct sink {
    mxf_buf_t room, expect;
    int fail_after;     /* > 0: fail the n-th room line */
    int lines;
} sink_t;

static apr_status_t collect(void *baton, mxf_genroom_stream_t stream,
                            const char *data, apr_size_t len)
{
    sink_t *s = baton;

    if (stream == MXF_GENROOM_OUT_ROOM) {
        if (s->fail_after && ++s->lines >= s->fail_after) {
            return APR_EGENERAL;
        }
        mxf_buf_append(&s->room, data, len);
    }
    else {
        mxf_buf_append(&s->expect, data, len);
    }
    return APR_SUCCESS;
}

static mxf_genroom_t *run(const char *version, apr_uint64_t events, apr_uint64_t seed,
                          int threads, sink_t *s)
{
    mxf_genroom_opts_t o;
    mxf_genroom_t *g = NULL;
    const char *why = NULL;
    apr_status_t rv;

    mxf_genroom_opts_default(&o);
    o.room_version = version;
    o.events = events;
    o.seed = seed;
    o.threads = threads;
    o.branchiness = 0.25;
    memset(s, 0, sizeof(*s));
    mxf_buf_init(&s->room, mxf_test_pool, 0);
    mxf_buf_init(&s->expect, mxf_test_pool, 0);
    rv = mxf_genroom_create(mxf_test_pool, &o, &g, &why);
    ck_assert_msg(rv == APR_SUCCESS, "create: %s", why ? why : "");
    rv = mxf_genroom_run(g, collect, s, &why);
    ck_assert_msg(rv == APR_SUCCESS, "run: %s", why ? why : "");
    return g;
}

/* The lines of @a b as parsed JSON objects. */
static apr_array_header_t *lines_of(const mxf_buf_t *b, unsigned flags)
{
    apr_array_header_t *arr = apr_array_make(mxf_test_pool, 64, sizeof(json_t *));
    const char *p = b->data, *end = b->data + b->len;

    while (p < end) {
        const char *nl = memchr(p, '\n', (apr_size_t)(end - p));
        const char *why = NULL;
        json_t *j = NULL;

        ck_assert_ptr_nonnull(nl);
        ck_assert_msg(mxf_json_parse(mxf_test_pool, p, (apr_size_t)(nl - p), flags, &j, &why)
                      == APR_SUCCESS, "bad line: %s", why);
        APR_ARRAY_PUSH(arr, json_t *) = j;
        p = nl + 1;
    }
    return arr;
}

START_TEST(deterministic)
{
    sink_t a, b, c;

    run("10", 400, 5, 2, &a);
    run("10", 400, 5, 0, &b);
    run("10", 400, 6, 2, &c);
    ck_assert_uint_gt(a.room.len, 0);
    ck_assert_uint_eq(a.room.len, b.room.len);
    ck_assert(memcmp(a.room.data, b.room.data, a.room.len) == 0);
    ck_assert_uint_eq(a.expect.len, b.expect.len);
    ck_assert(memcmp(a.expect.data, b.expect.data, a.expect.len) == 0);
    ck_assert(a.room.len != c.room.len || memcmp(a.room.data, c.room.data, a.room.len) != 0);
}
END_TEST

START_TEST(structure)
{
    static const char *const versions[] = { "1", "2", "3", "5", "9", "11", "12" };
    const char *version = versions[_i];
    const mxf_roomver_t *rv = mxf_roomver_get(version);
    apr_hash_t *depth = apr_hash_make(mxf_test_pool);
    apr_array_header_t *pdus, *expect;
    mxf_genroom_t *g;
    sink_t s;
    int i, merges = 0;
    const char *raw;

    g = run(version, 250, 3, 2, &s);
    raw = s.room.data;
    pdus = lines_of(&s.room, rv->strict_canonical_json ? MXF_JSON_STRICT_INTS : 0);
    expect = lines_of(&s.expect, 0);
    ck_assert_int_eq(pdus->nelts, 250);
    ck_assert_int_eq(expect->nelts, 250);
    for (i = 0; i < pdus->nelts; i++) {
        json_t *pdu = APR_ARRAY_IDX(pdus, i, json_t *);
        json_t *x = APR_ARRAY_IDX(expect, i, json_t *);
        json_t *prevs = json_object_get(pdu, "prev_events");
        const char *why = NULL, *id = mxf_event_id_compute(mxf_test_pool, pdu, rv, &why);
        json_int_t d = json_integer_value(json_object_get(pdu, "depth")), max = 0;
        apr_size_t k, len;
        char *line;

        ck_assert_msg(id != NULL, "event %d: %s", i, why);
        ck_assert_str_eq(id, json_string_value(json_object_get(x, "event_id")));
        ck_assert_int_eq(mxf_event_check_content_hash(mxf_test_pool, pdu, rv, &why),
                         APR_SUCCESS);
        ck_assert_int_eq(json_object_get(pdu, "event_id") != NULL,
                         rv->event_id_format == MXF_EVID_CARRIED);
        /* Lines are the canonical JSON of the PDUs. */
        line = mxf_canonical_encode(mxf_test_pool, pdu, &len, &why);
        ck_assert_ptr_nonnull(line);
        ck_assert(memcmp(line, raw, len) == 0 && raw[len] == '\n');
        raw += len + 1;
        if (i == 0) {
            ck_assert_str_eq(json_string_value(json_object_get(pdu, "type")), "m.room.create");
            ck_assert_int_eq(json_array_size(prevs), 0);
            ck_assert_int_eq(d, 1);
            ck_assert_int_eq(json_object_get(pdu, "room_id") == NULL,
                             rv->room_id_is_create_hash);
            ck_assert_int_eq(json_object_get(json_object_get(pdu, "content"), "creator")
                             == NULL, rv->implicit_creator);
        }
        else {
            ck_assert_uint_ge(json_array_size(prevs), 1);
            ck_assert_str_eq(json_string_value(json_object_get(pdu, "room_id")),
                             mxf_genroom_room_id(g));
        }
        for (k = 0; k < json_array_size(prevs); k++) {
            json_t *e = json_array_get(prevs, k);
            const char *pid = json_string_value(rv->ref_pairs ? json_array_get(e, 0) : e);
            json_int_t *pd = apr_hash_get(depth, pid, APR_HASH_KEY_STRING);

            ck_assert_msg(pd != NULL, "event %d: prev %s not earlier", i, pid);
            if (*pd > max) {
                max = *pd;
            }
        }
        if (i > 0) {
            ck_assert_int_eq(d, max + 1);
        }
        merges += json_array_size(prevs) == 2;
        {
            json_int_t *dp = apr_palloc(mxf_test_pool, sizeof(*dp));
            *dp = d;
            apr_hash_set(depth, apr_pstrdup(mxf_test_pool, id), APR_HASH_KEY_STRING, dp);
        }
    }
    ck_assert_int_gt(merges, 0);
    if (rv->room_id_is_create_hash) {
        const char *why = NULL;
        const char *room_id = mxf_event_room_id_from_create(
            mxf_test_pool, APR_ARRAY_IDX(pdus, 0, json_t *), rv, &why);
        ck_assert_str_eq(room_id, mxf_genroom_room_id(g));
    }
}
END_TEST

START_TEST(signatures_verify)
{
    const mxf_roomver_t *rv = mxf_roomver_get("11");
    apr_array_header_t *pdus;
    mxf_genroom_t *g;
    sink_t s;
    int i, j, n;

    g = run("11", 120, 9, 1, &s);
    pdus = lines_of(&s.room, MXF_JSON_STRICT_INTS);
    n = mxf_genroom_server_count(g);
    ck_assert_int_eq(n, 4);
    for (i = 0; i < pdus->nelts; i++) {
        json_t *pdu = APR_ARRAY_IDX(pdus, i, json_t *);
        json_t *redacted = mxf_event_redact(mxf_test_pool, pdu, rv);
        const char *sender = json_string_value(json_object_get(pdu, "sender"));
        int checked = 0;

        for (j = 0; j < n; j++) {
            const char *name = mxf_genroom_server_name(g, j);
            const mxf_signing_key_t *key = mxf_genroom_server_key(g, j);
            const char *why = NULL;

            if (!json_object_get(json_object_get(pdu, "signatures"), name)) {
                continue;
            }
            ck_assert_msg(mxf_verify_json(mxf_test_pool, redacted, name, key->key_id,
                                          key->pk, &why) == APR_SUCCESS,
                          "event %d by %s: %s", i, name, why);
            checked += !strcmp(strchr(sender, ':') + 1, name);
        }
        ck_assert_int_eq(checked, 1);
    }
}
END_TEST

START_TEST(keys_and_key_response)
{
    mxf_signing_key_t *k1, *k2, *k3;
    const char *why = NULL;
    json_t *resp = NULL;

    ck_assert_int_eq(mxf_genroom_derive_key(mxf_test_pool, 1, "hs1.example", &k1, &why),
                     APR_SUCCESS);
    ck_assert_int_eq(mxf_genroom_derive_key(mxf_test_pool, 1, "hs1.example", &k2, &why),
                     APR_SUCCESS);
    ck_assert_int_eq(mxf_genroom_derive_key(mxf_test_pool, 2, "hs1.example", &k3, &why),
                     APR_SUCCESS);
    ck_assert_str_eq(k1->key_id, k2->key_id);
    ck_assert(memcmp(k1->pk, k2->pk, sizeof(k1->pk)) == 0);
    ck_assert(memcmp(k1->pk, k3->pk, sizeof(k1->pk)) != 0);
    ck_assert(strncmp(k1->key_id, "ed25519:a_", 10) == 0);
    ck_assert_int_eq(mxf_genroom_key_response(mxf_test_pool, "hs1.example", k1,
                                              MXF_GENROOM_KEYS_VALID_UNTIL, &resp, &why),
                     APR_SUCCESS);
    ck_assert_int_eq(mxf_verify_json(mxf_test_pool, resp, "hs1.example", k1->key_id,
                                     k1->pk, &why), APR_SUCCESS);
    ck_assert_int_eq(json_object_size(json_object_get(resp, "old_verify_keys")), 0);
}
END_TEST

START_TEST(options_and_write_errors)
{
    mxf_genroom_opts_t o;
    mxf_genroom_t *g;
    const char *why = NULL;
    sink_t s;
    int t;

    mxf_genroom_opts_default(&o);
    o.events = 5;
    ck_assert_int_eq(mxf_genroom_create(mxf_test_pool, &o, &g, &why), APR_EINVAL);
    mxf_genroom_opts_default(&o);
    o.room_version = "13";
    ck_assert_int_eq(mxf_genroom_create(mxf_test_pool, &o, &g, &why), APR_EINVAL);
    mxf_genroom_opts_default(&o);
    o.conflicts = 0.5;
    o.room_version = "1";
    ck_assert_int_eq(mxf_genroom_create(mxf_test_pool, &o, &g, &why), APR_ENOTIMPL);
    mxf_genroom_opts_default(&o);
    o.conflicts = 1.5;
    ck_assert_int_eq(mxf_genroom_create(mxf_test_pool, &o, &g, &why), APR_EINVAL);

    /* A failing writer stops the run (threads or not) with its status. */
    for (t = 0; t <= 2; t += 2) {
        mxf_genroom_opts_default(&o);
        o.threads = t;
        o.events = 2000;
        memset(&s, 0, sizeof(s));
        mxf_buf_init(&s.room, mxf_test_pool, 0);
        mxf_buf_init(&s.expect, mxf_test_pool, 0);
        s.fail_after = 700;
        ck_assert_int_eq(mxf_genroom_create(mxf_test_pool, &o, &g, &why), APR_SUCCESS);
        ck_assert_int_eq(mxf_genroom_run(g, collect, &s, &why), APR_EGENERAL);
        ck_assert_ptr_nonnull(why);
    }
}
END_TEST

Suite *mxf_suite_genroom(void)
{
    Suite *s = suite_create("genroom");
    TCase *tc = mxf_test_case("genroom");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, deterministic);
    tcase_add_loop_test(tc, structure, 0, 7);
    tcase_add_test(tc, signatures_verify);
    tcase_add_test(tc, keys_and_key_response);
    tcase_add_test(tc, options_and_write_errors);
    suite_add_tcase(s, tc);
    return s;
}
