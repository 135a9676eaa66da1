/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#include <string.h>

#include <apr_strings.h>

#include "mxf_base64.h"
#include "mxf_canonical.h"
#include "mxf_event.h"
#include "mxf_id.h"
#include "mxf_json.h"
#include "mxf_key.h"
#include "mxf_roomver.h"
#include "mxf_sign.h"
#include "mxf_test.h"

/* Spec appendices "Signing details" / digest section 9.5. */
#define SPEC_SEED   "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"

#define EV1_IN "{\"room_id\":\"!x:domain\",\"sender\":\"@a:domain\",\"origin\":\"domain\"," \
    "\"origin_server_ts\":1000000,\"signatures\":{},\"hashes\":{},\"type\":\"X\"," \
    "\"content\":{},\"prev_events\":[],\"auth_events\":[],\"depth\":3," \
    "\"unsigned\":{\"age_ts\":1000000}}"
#define EV1_HASH "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"
#define EV1_SIG  "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg"
#define EV2_IN "{\"content\":{\"body\":\"Here is the message content\"},\"event_id\":\"$0:domain\"," \
    "\"origin\":\"domain\",\"origin_server_ts\":1000000,\"type\":\"m.room.message\"," \
    "\"room_id\":\"!r:domain\",\"sender\":\"@u:domain\",\"signatures\":{}," \
    "\"unsigned\":{\"age_ts\":1000000}}"
#define EV2_HASH "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"
#define EV2_SIG  "Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eYHYMGCA5McEiVPdhzBA"

/* A real v10 event (/work/shared/spec/vectors/v10-message-event-id.json). */
#define V10_EVENT "{\"auth_events\":[\"$gbHO7IPUHybc7ULFnT7P0r3iWlZFHGmr6zBfEYCUyKw\"," \
    "\"$hy1eZFYcgNxMFNNBgCD5fyOzyWRcBkxfNcrUI5ZpZlE\",\"$Nt_z68EwFfPqBeHjzEHGsp461Z4EfNEzR-KH5bOYdOY\"]," \
    "\"prev_events\":[\"$4FbpZrgPQTwoLD9H5y7jcikucCypUOn78mXhQX7WliY\"],\"type\":\"m.room.message\"," \
    "\"room_id\":\"!DHmIIVvxFASSFgDGzr:localhost:8008\",\"sender\":\"@tester_b:localhost:8008\"," \
    "\"content\":{\"msgtype\":\"m.text\",\"body\":\"invited people can see history\",\"m.mentions\":{}}," \
    "\"depth\":24,\"origin\":\"localhost:8008\",\"origin_server_ts\":1731769874137," \
    "\"hashes\":{\"sha256\":\"FoYV1w3TW/B2mVT0gX2/BZKpCwrrvGXqXFdUhN9LZYU\"}," \
    "\"signatures\":{\"localhost:8008\":{\"ed25519:a_phSE\":" \
    "\"G8cfk/m97sndxMNrEZ2nMMSXkVeJE05G7if4JiVzAwGfD3TwnF/jfSHt2acWrpNqv/aEhZug3WLofc2id+rVBw\"}}," \
    "\"unsigned\":{\"age_ts\":1731769874137}}"

typedef struct keyring keyring_t;
static keyring_t *spec_keyring(void);
static apr_status_t lookup(void *baton, apr_pool_t *p, const char *server_name,
                           const char *key_id, apr_int64_t ts, const mxf_roomver_t *r,
                           unsigned char pk[MXF_ED25519_PK_BYTES]);

static const char *const ALL_VERSIONS[] = {
    "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"
};

static const mxf_roomver_t *rv(const char *id)
{
    const mxf_roomver_t *r = mxf_roomver_get(id);

    ck_assert_ptr_nonnull(r);
    return r;
}


static mxf_signing_key_t *spec_key(void)
{
    mxf_signing_key_t *key = NULL;
    const char *why = NULL;

    ck_assert_int_eq(mxf_key_parse(mxf_test_pool, "ed25519 1 " SPEC_SEED, &key, &why),
                     APR_SUCCESS);
    return key;
}

static json_t *signed_event(const char *text, const char *version)
{
    json_t *ev = mxf_test_parse(text);
    const char *why = NULL;

    ck_assert_msg(mxf_event_sign(mxf_test_pool, ev, rv(version), "domain", spec_key(), &why)
                  == APR_SUCCESS, "%s", why);
    return ev;
}

/* ------------------------------------------------------------------------
 * Spec vectors */

START_TEST(spec_event_signing_vectors)
{
    json_t *ev;

    ev = signed_event(EV1_IN, "1");
    ck_assert_str_eq(mxf_test_canon(ev),
                     "{\"auth_events\":[],\"content\":{},\"depth\":3,\"hashes\":{\"sha256\":\""
                     EV1_HASH "\"},\"origin\":\"domain\",\"origin_server_ts\":1000000,"
                     "\"prev_events\":[],\"room_id\":\"!x:domain\",\"sender\":\"@a:domain\","
                     "\"signatures\":{\"domain\":{\"ed25519:1\":\"" EV1_SIG "\"}},\"type\":\"X\","
                     "\"unsigned\":{\"age_ts\":1000000}}");

    /* The content is not stripped; only the signature covers the redacted form. */
    ev = signed_event(EV2_IN, "1");
    ck_assert_str_eq(mxf_test_canon(ev),
                     "{\"content\":{\"body\":\"Here is the message content\"},"
                     "\"event_id\":\"$0:domain\",\"hashes\":{\"sha256\":\"" EV2_HASH "\"},"
                     "\"origin\":\"domain\",\"origin_server_ts\":1000000,\"room_id\":\"!r:domain\","
                     "\"sender\":\"@u:domain\",\"signatures\":{\"domain\":{\"ed25519:1\":\""
                     EV2_SIG "\"}},\"type\":\"m.room.message\",\"unsigned\":{\"age_ts\":1000000}}");
}
END_TEST

START_TEST(spec_content_hash)
{
    static const char input1[] =
        "{\"auth_events\":[],\"content\":{},\"depth\":3,\"origin\":\"domain\","
        "\"origin_server_ts\":1000000,\"prev_events\":[],\"room_id\":\"!x:domain\","
        "\"sender\":\"@a:domain\",\"type\":\"X\"}";
    unsigned char h[MXF_SHA256_BYTES], want[MXF_SHA256_BYTES];
    const char *why = NULL;
    json_t *ev = mxf_test_parse(EV1_IN);

    /* Derived vector: the exact content-hash input of event 1. */
    mxf_sha256(want, input1, strlen(input1));
    ck_assert_int_eq(mxf_event_content_hash(mxf_test_pool, ev, rv("1"), h, &why), APR_SUCCESS);
    ck_assert_mem_eq(h, want, sizeof(h));
    ck_assert_str_eq(mxf_event_content_hash_b64(mxf_test_pool, ev, NULL, &why), EV1_HASH);
    ck_assert_str_eq(mxf_event_content_hash_b64(mxf_test_pool, mxf_test_parse(EV2_IN), NULL, &why),
                     EV2_HASH);

    /* check: missing or not a string (refused), not a hash (a mismatch: served
     * redacted), matching in either alphabet, mismatching. */
    ck_assert_int_eq(mxf_event_check_content_hash(mxf_test_pool, ev, NULL, &why), APR_EINVAL);
    json_object_set_new(ev, "hashes", json_pack("{s:i}", "sha256", 5));
    ck_assert_int_eq(mxf_event_check_content_hash(mxf_test_pool, ev, NULL, &why), APR_EINVAL);
    json_object_set_new(ev, "hashes", json_pack("{s:s}", "sha256", "abc"));
    ck_assert_int_eq(mxf_event_check_content_hash(mxf_test_pool, ev, NULL, &why), APR_EMISMATCH);
    json_object_set_new(ev, "hashes", json_pack("{s:s}", "sha256", ""));
    ck_assert_int_eq(mxf_event_check_content_hash(mxf_test_pool, ev, NULL, &why), APR_EMISMATCH);
    json_object_set_new(ev, "hashes",
                        json_pack("{s:s}", "sha256", "5jM4wQpv6lnBo7CLIghJuHdW-s2CMBJPUOGOC89ncos"));
    ck_assert_int_eq(mxf_event_check_content_hash(mxf_test_pool, ev, NULL, &why), APR_SUCCESS);
    json_object_set_new(ev, "hashes", json_pack("{s:s}", "sha256", EV1_HASH));
    ck_assert_int_eq(mxf_event_check_content_hash(mxf_test_pool, ev, NULL, &why), APR_SUCCESS);
    /* unsigned and signatures are not covered. */
    json_object_set_new(ev, "unsigned", json_pack("{s:i}", "age", 5));
    json_object_set_new(ev, "signatures", json_pack("{s:{s:s}}", "x", "ed25519:1", "AAAA"));
    ck_assert_int_eq(mxf_event_check_content_hash(mxf_test_pool, ev, NULL, &why), APR_SUCCESS);
    /* Everything else is, redactable content included. */
    json_object_set_new(json_object_get(ev, "content"), "body", json_string("x"));
    why = NULL;
    ck_assert_int_eq(mxf_event_check_content_hash(mxf_test_pool, ev, NULL, &why), APR_EMISMATCH);
    ck_assert_ptr_nonnull(why);
}
END_TEST

START_TEST(spec_signed_bytes_and_reference_hashes)
{
    json_t *ev = signed_event(EV1_IN, "1");
    unsigned char h[MXF_SHA256_BYTES];
    const char *why = NULL, *id;
    apr_size_t i;

    /* Derived vector: the exact bytes signed for event 1. */
    ck_assert_str_eq(mxf_test_canon(mxf_event_reference_input(mxf_test_pool, ev, rv("1"))),
                     "{\"auth_events\":[],\"content\":{},\"depth\":3,\"hashes\":{\"sha256\":\""
                     EV1_HASH "\"},\"origin\":\"domain\",\"origin_server_ts\":1000000,"
                     "\"prev_events\":[],\"room_id\":\"!x:domain\",\"sender\":\"@a:domain\","
                     "\"type\":\"X\"}");
    /* Derived vectors: reference hash as event ID under v1-v10 and v11+ rules. */
    for (i = 0; i < 12; i++) {
        const mxf_roomver_t *r = rv(ALL_VERSIONS[i]);
        const char *want = i < 10 ? "$8yif6p8EqgoSten2BLje9ntKm720NyFLWQv9tn8memc"
                                  : "$70O_oKlXzFbkfu0KE88USi98DjSWrOELrPj-8tisl8I";
        ck_assert_int_eq(mxf_event_reference_hash(mxf_test_pool, ev, r, h, &why), APR_SUCCESS);
        ck_assert_str_eq(apr_pstrcat(mxf_test_pool, "$",
                                     mxf_b64_encode(mxf_test_pool, h, 32, MXF_B64_URLSAFE),
                                     NULL), want);
        id = mxf_event_id_compute(mxf_test_pool, ev, r, &why);
        if (i < 2) {
            ck_assert_ptr_null(id);          /* v1/v2: no event_id field */
            ck_assert_ptr_nonnull(why);
        }
        else {
            ck_assert_str_eq(id, want);
            ck_assert(mxf_id_event_valid(id, strlen(id), r));
        }
    }
}
END_TEST

START_TEST(v10_real_event)
{
    json_t *ev = mxf_test_parse(V10_EVENT);
    const char *why = NULL;

    ck_assert_int_eq(mxf_event_check_content_hash(mxf_test_pool, ev, rv("10"), &why),
                     APR_SUCCESS);
    ck_assert_str_eq(mxf_event_content_hash_b64(mxf_test_pool, ev, rv("10"), &why),
                     "FoYV1w3TW/B2mVT0gX2/BZKpCwrrvGXqXFdUhN9LZYU");
    ck_assert_str_eq(mxf_event_id_compute(mxf_test_pool, ev, rv("10"), &why),
                     "$zRz9jjiT9wZc3Hl9ij_74aCmTjqV3YMlj9sj3Uqxg6o");
    ck_assert_str_eq(mxf_event_id_compute(mxf_test_pool, ev, rv("4"), &why),
                     "$zRz9jjiT9wZc3Hl9ij_74aCmTjqV3YMlj9sj3Uqxg6o");
    ck_assert_str_eq(mxf_event_id_compute(mxf_test_pool, ev, rv("3"), &why),
                     "$zRz9jjiT9wZc3Hl9ij/74aCmTjqV3YMlj9sj3Uqxg6o");
    /* v11 rules drop "origin": a different ID. */
    ck_assert_str_ne(mxf_event_id_compute(mxf_test_pool, ev, rv("11"), &why),
                     "$zRz9jjiT9wZc3Hl9ij_74aCmTjqV3YMlj9sj3Uqxg6o");
    /* Served redacted: same event ID, content hash no longer matches. */
    {
        json_t *red = mxf_event_redact(mxf_test_pool, ev, rv("10"));
        ck_assert_str_eq(mxf_event_id_compute(mxf_test_pool, red, rv("10"), &why),
                         "$zRz9jjiT9wZc3Hl9ij_74aCmTjqV3YMlj9sj3Uqxg6o");
        ck_assert_int_eq(mxf_event_check_content_hash(mxf_test_pool, red, rv("10"), &why),
                         APR_EMISMATCH);
        ck_assert_ptr_nonnull(json_object_get(red, "signatures"));
        ck_assert_ptr_nonnull(json_object_get(red, "hashes"));
        ck_assert_ptr_null(json_object_get(red, "unsigned"));
    }
}
END_TEST

START_TEST(event_id_v1_v2_field)
{
    json_t *ev = mxf_test_parse(EV2_IN);
    const char *why = NULL;

    ck_assert_str_eq(mxf_event_id_compute(mxf_test_pool, ev, rv("1"), &why), "$0:domain");
    ck_assert_str_eq(mxf_event_id_compute(mxf_test_pool, ev, rv("2"), &why), "$0:domain");
    json_object_set_new(ev, "event_id", json_string("$nodomain"));
    ck_assert_ptr_null(mxf_event_id_compute(mxf_test_pool, ev, rv("1"), &why));
    json_object_set_new(ev, "event_id", json_integer(1));
    ck_assert_ptr_null(mxf_event_id_compute(mxf_test_pool, ev, rv("2"), &why));
    ck_assert_ptr_null(mxf_event_id_compute(mxf_test_pool, ev, NULL, &why));
}
END_TEST

/* v1-v5 events may hold reals and big integers; v6+ must not. */
START_TEST(legacy_numbers)
{
    static const char ev[] = "{\"type\":\"m.room.power_levels\",\"content\":"
        "{\"ban\":50.0,\"x\":1.5,\"users_default\":9007199254740993}}";
    static const char hashed[] = "{\"content\":{\"ban\":50.0,\"users_default\":"
        "9007199254740993,\"x\":1.5},\"type\":\"m.room.power_levels\"}";
    static const char refd[] = "{\"content\":{\"ban\":50.0,\"users_default\":"
        "9007199254740993},\"type\":\"m.room.power_levels\"}";
    unsigned char h[MXF_SHA256_BYTES], want[MXF_SHA256_BYTES];
    const char *why = NULL;
    json_t *j = mxf_test_parse(ev);
    apr_size_t i;

    for (i = 0; i < 12; i++) {
        const mxf_roomver_t *r = rv(ALL_VERSIONS[i]);
        apr_status_t st = mxf_event_content_hash(mxf_test_pool, j, r, h, &why);
        if (i < 5) {
            ck_assert_int_eq(st, APR_SUCCESS);
            mxf_sha256(want, hashed, strlen(hashed));
            ck_assert_mem_eq(h, want, sizeof(h));
            ck_assert_int_eq(mxf_event_reference_hash(mxf_test_pool, j, r, h, &why),
                             APR_SUCCESS);
            mxf_sha256(want, refd, strlen(refd));
            ck_assert_mem_eq(h, want, sizeof(h));
        }
        else {
            ck_assert_int_eq(st, APR_EINVAL);
            ck_assert_int_eq(mxf_event_reference_hash(mxf_test_pool, j, r, h, &why),
                             APR_EINVAL);
            ck_assert_int_eq(mxf_event_sign(mxf_test_pool, j, r, "domain", spec_key(), &why),
                             APR_EINVAL);
        }
    }
    /* Signing and verifying agree on the legacy encoding. */
    {
        keyring_t *k = spec_keyring();
        json_object_set_new(j, "sender", json_string("@a:domain"));
        ck_assert_int_eq(mxf_event_sign(mxf_test_pool, j, rv("4"), "domain", spec_key(), &why),
                         APR_SUCCESS);
        ck_assert_int_eq(mxf_event_verify_signatures(mxf_test_pool, j, rv("4"), lookup, k,
                                                     &why), APR_SUCCESS);
    }
}
END_TEST

/* ------------------------------------------------------------------------
 * Redaction tables, by hand from the spec's per-version redaction rules. */

/* Every top-level key: protected ones, the pre-v11-only ones and droppable ones. */
#define ENVELOPE_IN "{\"event_id\":\"$e:x\",\"type\":\"%s\",\"room_id\":\"!r:x\"," \
    "\"sender\":\"@u:x\",\"state_key\":\"\",\"content\":%s,\"hashes\":{\"sha256\":\"h\"}," \
    "\"signatures\":{\"x\":{\"ed25519:1\":\"s\"}},\"depth\":5,\"prev_events\":[\"$p\"]," \
    "\"auth_events\":[\"$a\"],\"origin\":\"x\",\"origin_server_ts\":7,\"membership\":\"join\"," \
    "\"prev_state\":[],\"unsigned\":{\"age\":1},\"redacts\":\"$t\",\"age_ts\":3," \
    "\"extra\":\"drop me\",\"room_version\":\"1\",\"outlier\":true}"
#define ENVELOPE_V1 "{\"event_id\":\"$e:x\",\"type\":\"%s\",\"room_id\":\"!r:x\"," \
    "\"sender\":\"@u:x\",\"state_key\":\"\",\"content\":%s,\"hashes\":{\"sha256\":\"h\"}," \
    "\"signatures\":{\"x\":{\"ed25519:1\":\"s\"}},\"depth\":5,\"prev_events\":[\"$p\"]," \
    "\"auth_events\":[\"$a\"],\"origin\":\"x\",\"origin_server_ts\":7,\"membership\":\"join\"," \
    "\"prev_state\":[]}"
#define ENVELOPE_V11 "{\"event_id\":\"$e:x\",\"type\":\"%s\",\"room_id\":\"!r:x\"," \
    "\"sender\":\"@u:x\",\"state_key\":\"\",\"content\":%s,\"hashes\":{\"sha256\":\"h\"}," \
    "\"signatures\":{\"x\":{\"ed25519:1\":\"s\"}},\"depth\":5,\"prev_events\":[\"$p\"]," \
    "\"auth_events\":[\"$a\"],\"origin_server_ts\":7}"

#define MEMBER_IN "{\"membership\":\"join\",\"displayname\":\"A\",\"avatar_url\":\"mxc://x/y\"," \
    "\"join_authorised_via_users_server\":\"@j:y\",\"reason\":\"r\",\"is_direct\":false," \
    "\"third_party_invite\":{\"display_name\":\"D\",\"signed\":{\"mxid\":\"@u:x\"," \
    "\"token\":\"t\",\"signatures\":{\"z\":{\"ed25519:0\":\"q\"}}}}}"
#define MEMBER_V1 "{\"membership\":\"join\"}"
#define MEMBER_V9 "{\"membership\":\"join\",\"join_authorised_via_users_server\":\"@j:y\"}"
#define MEMBER_V11 "{\"membership\":\"join\",\"join_authorised_via_users_server\":\"@j:y\"," \
    "\"third_party_invite\":{\"signed\":{\"mxid\":\"@u:x\",\"token\":\"t\"," \
    "\"signatures\":{\"z\":{\"ed25519:0\":\"q\"}}}}}"
#define MEMBER2_IN "{\"membership\":\"invite\",\"third_party_invite\":{\"display_name\":\"D\"}}"
#define MEMBER2_OUT "{\"membership\":\"invite\"}"
#define MEMBER2_V11 "{\"membership\":\"invite\",\"third_party_invite\":{}}"
#define CREATE_IN "{\"creator\":\"@u:x\",\"room_version\":\"1\",\"m.federate\":true," \
    "\"predecessor\":{\"room_id\":\"!o:x\",\"event_id\":\"$o\"},\"additional_creators\":[\"@c:x\"]," \
    "\"type\":\"m.space\"}"
#define CREATE_V1 "{\"creator\":\"@u:x\"}"
#define JR_IN "{\"join_rule\":\"restricted\",\"allow\":[{\"type\":\"m.room_membership\"," \
    "\"room_id\":\"!a:x\"}],\"other\":1}"
#define JR_V1 "{\"join_rule\":\"restricted\"}"
#define JR_V8 "{\"join_rule\":\"restricted\",\"allow\":[{\"type\":\"m.room_membership\"," \
    "\"room_id\":\"!a:x\"}]}"
#define PL_IN "{\"ban\":50,\"events\":{\"m.room.name\":100},\"events_default\":0,\"invite\":0," \
    "\"kick\":50,\"redact\":50,\"state_default\":50,\"users\":{\"@u:x\":100}," \
    "\"users_default\":0,\"notifications\":{\"room\":50},\"historical\":100}"
#define PL_V1 "{\"ban\":50,\"events\":{\"m.room.name\":100},\"events_default\":0," \
    "\"kick\":50,\"redact\":50,\"state_default\":50,\"users\":{\"@u:x\":100},\"users_default\":0}"
#define PL_V11 "{\"ban\":50,\"events\":{\"m.room.name\":100},\"events_default\":0,\"invite\":0," \
    "\"kick\":50,\"redact\":50,\"state_default\":50,\"users\":{\"@u:x\":100},\"users_default\":0}"
#define ALIASES_IN "{\"aliases\":[\"#a:x\"],\"other\":1}"
#define ALIASES_V1 "{\"aliases\":[\"#a:x\"]}"
#define HV_IN "{\"history_visibility\":\"shared\",\"other\":1}"
#define HV_OUT "{\"history_visibility\":\"shared\"}"
#define REDACTION_IN "{\"redacts\":\"$t\",\"reason\":\"spam\"}"
#define REDACTION_V11 "{\"redacts\":\"$t\"}"
#define MESSAGE_IN "{\"body\":\"hi\",\"msgtype\":\"m.text\",\"membership\":\"join\"," \
    "\"creator\":\"@u:x\",\"redacts\":\"$t\"}"
#define E "{}"

static const struct {
    const char *type, *in, *out[12];      /* out[i]: room version i + 1 */
} redaction_table[] = {
    { "m.room.member", MEMBER_IN,
      { MEMBER_V1, MEMBER_V1, MEMBER_V1, MEMBER_V1, MEMBER_V1, MEMBER_V1, MEMBER_V1,
        MEMBER_V1, MEMBER_V9, MEMBER_V9, MEMBER_V11, MEMBER_V11 } },
    { "m.room.member", MEMBER2_IN,
      { MEMBER2_OUT, MEMBER2_OUT, MEMBER2_OUT, MEMBER2_OUT, MEMBER2_OUT, MEMBER2_OUT,
        MEMBER2_OUT, MEMBER2_OUT, MEMBER2_OUT, MEMBER2_OUT, MEMBER2_V11, MEMBER2_V11 } },
    { "m.room.create", CREATE_IN,
      { CREATE_V1, CREATE_V1, CREATE_V1, CREATE_V1, CREATE_V1, CREATE_V1, CREATE_V1,
        CREATE_V1, CREATE_V1, CREATE_V1, CREATE_IN, CREATE_IN } },
    { "m.room.join_rules", JR_IN,
      { JR_V1, JR_V1, JR_V1, JR_V1, JR_V1, JR_V1, JR_V1, JR_V8, JR_V8, JR_V8, JR_V8, JR_V8 } },
    { "m.room.power_levels", PL_IN,
      { PL_V1, PL_V1, PL_V1, PL_V1, PL_V1, PL_V1, PL_V1, PL_V1, PL_V1, PL_V1,
        PL_V11, PL_V11 } },
    { "m.room.aliases", ALIASES_IN,
      { ALIASES_V1, ALIASES_V1, ALIASES_V1, ALIASES_V1, ALIASES_V1, E, E, E, E, E, E, E } },
    { "m.room.history_visibility", HV_IN,
      { HV_OUT, HV_OUT, HV_OUT, HV_OUT, HV_OUT, HV_OUT, HV_OUT, HV_OUT, HV_OUT, HV_OUT,
        HV_OUT, HV_OUT } },
    { "m.room.redaction", REDACTION_IN,
      { E, E, E, E, E, E, E, E, E, E, REDACTION_V11, REDACTION_V11 } },
    { "m.room.message", MESSAGE_IN, { E, E, E, E, E, E, E, E, E, E, E, E } },
    { "m.room.name", "{\"name\":\"n\"}", { E, E, E, E, E, E, E, E, E, E, E, E } },
    { "m.room.third_party_invite", "{\"display_name\":\"d\",\"key_validity_url\":\"u\"}",
      { E, E, E, E, E, E, E, E, E, E, E, E } },
    /* Type matching is exact. */
    { "m.room.member.x", MEMBER_IN, { E, E, E, E, E, E, E, E, E, E, E, E } },
    { "M.room.create", CREATE_IN, { E, E, E, E, E, E, E, E, E, E, E, E } },
};

START_TEST(redaction_tables)
{
    apr_size_t i, v;

    for (i = 0; i < sizeof(redaction_table) / sizeof(redaction_table[0]); i++) {
        const char *type = redaction_table[i].type;
        json_t *in = mxf_test_parse(apr_psprintf(mxf_test_pool, ENVELOPE_IN, type,
                                        redaction_table[i].in));
        const char *in_before = mxf_test_canon(in);

        for (v = 0; v < 12; v++) {
            json_t *want = mxf_test_parse(apr_psprintf(mxf_test_pool,
                                              v < 10 ? ENVELOPE_V1 : ENVELOPE_V11, type,
                                              redaction_table[i].out[v]));
            json_t *got = mxf_event_redact(mxf_test_pool, in, rv(ALL_VERSIONS[v]));

            ck_assert_ptr_nonnull(got);
            ck_assert_msg(json_equal(got, want), "%s v%s:\n got  %s\n want %s", type,
                          ALL_VERSIONS[v], mxf_test_canon(got), mxf_test_canon(want));
            /* Reference input: the same without signatures. */
            json_object_del(want, "signatures");
            ck_assert(json_equal(mxf_event_reference_input(mxf_test_pool, in,
                                                           rv(ALL_VERSIONS[v])), want));
        }
        /* The input is left untouched. */
        ck_assert_str_eq(mxf_test_canon(in), in_before);
    }
}
END_TEST

START_TEST(redaction_edge_cases)
{
    const mxf_roomver_t *v11 = rv("11"), *v1 = rv("1");
    json_t *in, *out;

    /* The copy is deep: changing it leaves the input alone. */
    in = mxf_test_parse("{\"type\":\"m.room.power_levels\",\"content\":{\"users\":{\"@a:b\":1}},"
               "\"signatures\":{\"b\":{\"ed25519:1\":\"x\"}}}");
    out = mxf_event_redact(mxf_test_pool, in, v1);
    json_object_set_new(json_object_get(json_object_get(out, "content"), "users"), "@c:d",
                        json_integer(2));
    json_object_set_new(json_object_get(out, "signatures"), "c", json_object());
    ck_assert_str_eq(mxf_test_canon(in), "{\"content\":{\"users\":{\"@a:b\":1}},\"signatures\":"
                                "{\"b\":{\"ed25519:1\":\"x\"}},\"type\":\"m.room.power_levels\"}");
    /* No content, or content that is not an object: the redacted form has {}
     * (as Synapse's prune_event_dict and the spec's signing example). */
    out = mxf_event_redact(mxf_test_pool, mxf_test_parse("{\"type\":\"m.room.member\",\"x\":1}"), v11);
    ck_assert_str_eq(mxf_test_canon(out), "{\"content\":{},\"type\":\"m.room.member\"}");
    out = mxf_event_redact(mxf_test_pool, mxf_test_parse("{\"type\":\"X\",\"content\":[1]}"), v1);
    ck_assert_str_eq(mxf_test_canon(out), "{\"content\":{},\"type\":\"X\"}");
    /* No type: content emptied. Non-string type too. */
    out = mxf_event_redact(mxf_test_pool, mxf_test_parse("{\"content\":{\"membership\":\"join\"}}"), v1);
    ck_assert_str_eq(mxf_test_canon(out), "{\"content\":{}}");
    out = mxf_event_redact(mxf_test_pool,
                           mxf_test_parse("{\"type\":1,\"content\":{\"membership\":\"join\"}}"), v1);
    ck_assert_str_eq(mxf_test_canon(out), "{\"content\":{},\"type\":1}");
    /* v11: third_party_invite that is not an object, or whose signed is null. */
    out = mxf_event_redact(mxf_test_pool,
                           mxf_test_parse("{\"type\":\"m.room.member\",\"content\":{\"membership\":"
                                 "\"invite\",\"third_party_invite\":\"x\"}}"), v11);
    ck_assert_str_eq(mxf_test_canon(out), "{\"content\":{\"membership\":\"invite\"},"
                                 "\"type\":\"m.room.member\"}");
    out = mxf_event_redact(mxf_test_pool,
                           mxf_test_parse("{\"type\":\"m.room.member\",\"content\":{"
                                 "\"third_party_invite\":{\"signed\":null,\"a\":1}}}"), v11);
    ck_assert_str_eq(mxf_test_canon(out), "{\"content\":{\"third_party_invite\":{\"signed\":null}},"
                                 "\"type\":\"m.room.member\"}");
    /* Not an object / no version. */
    ck_assert_ptr_null(mxf_event_redact(mxf_test_pool,
                                       mxf_json_own(mxf_test_pool, json_pack("[i]", 1)), v1));
    ck_assert_ptr_null(mxf_event_redact(mxf_test_pool, mxf_test_parse("{}"), NULL));
}
END_TEST

/* ------------------------------------------------------------------------
 * Signatures */

struct keyring {
    const char *server, *key_id;
    unsigned char pk[MXF_ED25519_PK_BYTES];
    apr_status_t fail;           /* returned for any lookup when not 0 */
    int calls;
};

static apr_status_t lookup(void *baton, apr_pool_t *p, const char *server_name,
                           const char *key_id, apr_int64_t ts, const mxf_roomver_t *r,
                           unsigned char pk[MXF_ED25519_PK_BYTES])
{
    keyring_t *k = baton;

    (void)p; (void)ts; (void)r;
    k->calls++;
    if (k->fail) {
        return k->fail;
    }
    if (strcmp(server_name, k->server) == 0 && strcmp(key_id, k->key_id) == 0) {
        memcpy(pk, k->pk, MXF_ED25519_PK_BYTES);
        return APR_SUCCESS;
    }
    return APR_NOTFOUND;
}

static keyring_t *spec_keyring(void)
{
    keyring_t *k = apr_pcalloc(mxf_test_pool, sizeof(*k));

    k->server = "domain";
    k->key_id = "ed25519:1";
    memcpy(k->pk, spec_key()->pk, sizeof(k->pk));
    return k;
}

START_TEST(verify_spec_events)
{
    keyring_t *k = spec_keyring();
    const char *why = NULL;
    json_t *ev1 = mxf_test_parse(EV1_IN), *ev2 = mxf_test_parse(EV2_IN);
    apr_size_t i;

    json_object_set_new(ev1, "hashes", json_pack("{s:s}", "sha256", EV1_HASH));
    json_object_set_new(ev1, "signatures", json_pack("{s:{s:s}}", "domain", "ed25519:1", EV1_SIG));
    json_object_set_new(ev2, "hashes", json_pack("{s:s}", "sha256", EV2_HASH));
    json_object_set_new(ev2, "signatures", json_pack("{s:{s:s}}", "domain", "ed25519:1", EV2_SIG));

    /* Event 2 carries an event_id: all versions through v10 accept it. */
    for (i = 0; i < 10; i++) {
        ck_assert_msg(mxf_event_verify_signatures(mxf_test_pool, ev2, rv(ALL_VERSIONS[i]),
                                                  lookup, k, &why) == APR_SUCCESS,
                      "v%s: %s", ALL_VERSIONS[i], why);
    }
    /* Event 1 has none: v1/v2 cannot tell the event ID server. */
    ck_assert_int_eq(mxf_event_verify_signatures(mxf_test_pool, ev1, rv("1"), lookup, k, &why),
                     APR_EINVAL);
    ck_assert_int_eq(mxf_event_verify_signatures(mxf_test_pool, ev1, rv("3"), lookup, k, &why),
                     APR_SUCCESS);
    /* v11 rules drop "origin" from the signed form: the v1-style signature fails. */
    why = NULL;
    ck_assert_int_eq(mxf_event_verify_signatures(mxf_test_pool, ev1, rv("11"), lookup, k, &why),
                     MXF_SIG_BAD);
    ck_assert_ptr_nonnull(strstr(why, "ed25519:1"));

    /* A redacted copy still verifies; unprotected changes do not matter. */
    ck_assert_int_eq(mxf_event_verify_signatures(mxf_test_pool,
                                                 mxf_event_redact(mxf_test_pool, ev2, rv("5")),
                                                 rv("5"), lookup, k, &why), APR_SUCCESS);
    json_object_set_new(json_object_get(ev2, "content"), "body", json_string("changed"));
    json_object_set_new(ev2, "unsigned", json_object());
    ck_assert_int_eq(mxf_event_verify_signatures(mxf_test_pool, ev2, rv("5"), lookup, k, &why),
                     APR_SUCCESS);
    /* A protected change does. */
    json_object_set_new(ev2, "origin_server_ts", json_integer(1000001));
    ck_assert_int_eq(mxf_event_verify_signatures(mxf_test_pool, ev2, rv("5"), lookup, k, &why),
                     MXF_SIG_BAD);
}
END_TEST

START_TEST(verify_missing_unknown_and_errors)
{
    keyring_t *k = spec_keyring();
    const char *why = NULL;
    json_t *ev = signed_event(EV1_IN, "4");
    json_t *sigs;

    /* An extra signature by an unknown key or another algorithm is skipped. */
    sigs = json_object_get(json_object_get(ev, "signatures"), "domain");
    json_object_set_new(sigs, "ed25519:other", json_string("AAAA"));
    json_object_set_new(sigs, "curve25519:1", json_string("AAAA"));
    /* Servers that are not required (e.g. a policy server) are ignored. */
    json_object_set_new(json_object_get(ev, "signatures"), "policy.example",
                        json_pack("{s:s}", "ed25519:policy_server", "garbage"));
    ck_assert_int_eq(mxf_event_verify_signatures(mxf_test_pool, ev, rv("4"), lookup, k, &why),
                     APR_SUCCESS);

    /* A known key with a malformed signature fails. */
    k->key_id = "ed25519:other";
    ck_assert_int_eq(mxf_event_verify_signatures(mxf_test_pool, ev, rv("4"), lookup, k, &why),
                     MXF_SIG_MALFORMED);
    /* No known key at all fails. */
    k->key_id = "ed25519:nope";
    why = NULL;
    ck_assert_int_eq(mxf_event_verify_signatures(mxf_test_pool, ev, rv("4"), lookup, k, &why),
                     MXF_SIG_MISSING);
    ck_assert_ptr_nonnull(strstr(why, "domain"));
    /* Lookup errors are passed on. */
    k->key_id = "ed25519:1";
    k->fail = APR_EGENERAL;
    ck_assert_int_eq(mxf_event_verify_signatures(mxf_test_pool, ev, rv("4"), lookup, k, &why),
                     APR_EGENERAL);
    k->fail = 0;
    /* No signatures from the sender's server. */
    json_object_del(json_object_get(ev, "signatures"), "domain");
    ck_assert_int_eq(mxf_event_verify_signatures(mxf_test_pool, ev, rv("4"), lookup, k, &why),
                     MXF_SIG_MISSING);
    json_object_del(ev, "signatures");
    ck_assert_int_eq(mxf_event_verify_signatures(mxf_test_pool, ev, rv("4"), lookup, k, &why),
                     MXF_SIG_MISSING);
}
END_TEST

static const char *signers(const char *text, const char *version)
{
    apr_array_header_t *s = NULL;
    const char *why = NULL;

    if (mxf_event_required_signers(mxf_test_pool, mxf_test_parse(text), rv(version), &s, &why)
        != APR_SUCCESS) {
        ck_assert_ptr_nonnull(why);
        return "ERROR";
    }
    return apr_array_pstrcat(mxf_test_pool, s, ',');
}

START_TEST(required_signers)
{
    /* v3+: the sender's server only. */
    ck_assert_str_eq(signers("{\"sender\":\"@a:one\",\"event_id\":\"$x:two\"}", "3"), "one");
    /* v1/v2: also the event ID's server, once. */
    ck_assert_str_eq(signers("{\"sender\":\"@a:one\",\"event_id\":\"$x:two\"}", "1"), "one,two");
    ck_assert_str_eq(signers("{\"sender\":\"@a:one\",\"event_id\":\"$x:one\"}", "2"), "one");
    ck_assert_str_eq(signers("{\"sender\":\"@a:one\"}", "1"), "ERROR");
    ck_assert_str_eq(signers("{\"sender\":\"@a:one\",\"event_id\":\"$x\"}", "1"), "ERROR");
    ck_assert_str_eq(signers("{\"event_id\":\"$x:one\"}", "1"), "ERROR");
    ck_assert_str_eq(signers("{\"sender\":\"a:one\"}", "5"), "ERROR");
    ck_assert_str_eq(signers("{\"sender\":\"@a:one:0\"}", "5"), "ERROR");
    /* Restricted joins (v8+): the authorising user's server as well. */
#define JAV "{\"type\":\"m.room.member\",\"sender\":\"@a:one\",\"state_key\":\"@a:one\"," \
    "\"content\":{\"membership\":\"%s\",\"join_authorised_via_users_server\":\"%s\"}}"
    ck_assert_str_eq(signers(apr_psprintf(mxf_test_pool, JAV, "join", "@b:three"), "8"),
                     "one,three");
    ck_assert_str_eq(signers(apr_psprintf(mxf_test_pool, JAV, "join", "@b:three"), "12"),
                     "one,three");
    ck_assert_str_eq(signers(apr_psprintf(mxf_test_pool, JAV, "join", "@b:one"), "9"), "one");
    ck_assert_str_eq(signers(apr_psprintf(mxf_test_pool, JAV, "join", "@b:three"), "7"), "one");
    ck_assert_str_eq(signers(apr_psprintf(mxf_test_pool, JAV, "leave", "@b:three"), "9"), "one");
    ck_assert_str_eq(signers(apr_psprintf(mxf_test_pool, JAV, "join", "nope"), "9"), "ERROR");
    /* Third-party invites: the sender's server is not required. */
#define TPI "{\"type\":\"m.room.member\",\"sender\":\"@a:one\",\"event_id\":\"$e:two\"," \
    "\"content\":{\"membership\":\"%s\",\"third_party_invite\":%s}}"
    ck_assert_str_eq(signers(apr_psprintf(mxf_test_pool, TPI, "invite", "{}"), "10"), "");
    ck_assert_str_eq(signers(apr_psprintf(mxf_test_pool, TPI, "invite", "{}"), "1"), "two");
    ck_assert_str_eq(signers(apr_psprintf(mxf_test_pool, TPI, "join", "{}"), "10"), "one");
    ck_assert_str_eq(signers(apr_psprintf(mxf_test_pool, TPI, "invite", "\"x\""), "10"), "one");
}
END_TEST

START_TEST(sign_then_verify_all_versions)
{
    keyring_t *k = spec_keyring();
    apr_size_t i;

    for (i = 0; i < 12; i++) {
        const mxf_roomver_t *r = rv(ALL_VERSIONS[i]);
        json_t *ev = mxf_test_parse("{\"type\":\"m.room.member\",\"sender\":\"@a:domain\","
                           "\"state_key\":\"@a:domain\",\"event_id\":\"$1:domain\","
                           "\"room_id\":\"!r:domain\",\"origin\":\"domain\",\"depth\":2,"
                           "\"origin_server_ts\":5,\"prev_events\":[],\"auth_events\":[],"
                           "\"content\":{\"membership\":\"join\",\"displayname\":\"A\"},"
                           "\"signatures\":{\"other\":{\"ed25519:x\":\"keep\"}},"
                           "\"unsigned\":{\"age\":3}}");
        const char *why = NULL;

        ck_assert_int_eq(mxf_event_sign(mxf_test_pool, ev, r, "domain", spec_key(), &why),
                         APR_SUCCESS);
        ck_assert_int_eq(mxf_event_check_content_hash(mxf_test_pool, ev, r, &why), APR_SUCCESS);
        ck_assert_msg(mxf_event_verify_signatures(mxf_test_pool, ev, r, lookup, k, &why)
                      == APR_SUCCESS, "v%s: %s", r->id, why);
        /* Other signatures and unsigned survive; content is not stripped. */
        ck_assert_str_eq(json_string_value(json_object_get(json_object_get(
            json_object_get(ev, "signatures"), "other"), "ed25519:x")), "keep");
        ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(ev, "unsigned"),
                                                            "age")), 3);
        ck_assert_str_eq(json_string_value(json_object_get(json_object_get(ev, "content"),
                                                           "displayname")), "A");
    }
}
END_TEST

/* ------------------------------------------------------------------------
 * v12 room IDs, limits */

START_TEST(v12_room_id)
{
    const mxf_roomver_t *v12 = rv("12");
    json_t *create = mxf_test_parse("{\"type\":\"m.room.create\",\"state_key\":\"\",\"sender\":\"@a:x\","
                           "\"content\":{\"room_version\":\"12\"},\"depth\":1,"
                           "\"origin_server_ts\":1,\"prev_events\":[],\"auth_events\":[]}");
    const char *why = NULL, *room_id, *event_id;

    json_object_set_new(create, "hashes", json_pack("{s:s}", "sha256",
        mxf_event_content_hash_b64(mxf_test_pool, create, v12, &why)));
    room_id = mxf_event_room_id_from_create(mxf_test_pool, create, v12, &why);
    event_id = mxf_event_id_compute(mxf_test_pool, create, v12, &why);
    ck_assert_ptr_nonnull(room_id);
    ck_assert_ptr_nonnull(event_id);
    ck_assert_int_eq(room_id[0], '!');
    ck_assert_str_eq(room_id + 1, event_id + 1);
    ck_assert(mxf_id_room_valid(room_id, strlen(room_id), v12));
    ck_assert_ptr_null(mxf_id_server_of(mxf_test_pool, room_id));
    /* Signatures do not change it. */
    json_object_set_new(create, "signatures", json_pack("{s:{s:s}}", "x", "ed25519:1", "s"));
    ck_assert_str_eq(mxf_event_room_id_from_create(mxf_test_pool, create, v12, &why), room_id);
    /* Refusals. */
    ck_assert_ptr_null(mxf_event_room_id_from_create(mxf_test_pool, create, rv("11"), &why));
    json_object_set_new(create, "room_id", json_string(room_id));
    ck_assert_ptr_null(mxf_event_room_id_from_create(mxf_test_pool, create, v12, &why));
    json_object_del(create, "room_id");
    json_object_set_new(create, "state_key", json_string("x"));
    ck_assert_ptr_null(mxf_event_room_id_from_create(mxf_test_pool, create, v12, &why));
    json_object_set_new(create, "state_key", json_string(""));
    json_object_set_new(create, "type", json_string("m.room.member"));
    why = NULL;
    ck_assert_ptr_null(mxf_event_room_id_from_create(mxf_test_pool, create, v12, &why));
    ck_assert_ptr_nonnull(why);
}
END_TEST

static char *rep(char c, apr_size_t n)
{
    char *s = apr_palloc(mxf_test_pool, n + 1);

    memset(s, c, n);
    s[n] = '\0';
    return s;
}

START_TEST(size_limits)
{
    const mxf_roomver_t *v10 = rv("10");
    const char *why = NULL;
    json_t *ev, *a;
    apr_size_t base, i;
    static const char *const keys[] = { "type", "state_key", "sender", "room_id", "event_id" };

    ev = mxf_test_parse("{\"type\":\"m.room.message\",\"content\":{\"body\":\"\"},\"prev_events\":[],"
               "\"auth_events\":[]}");
    ck_assert_int_eq(mxf_event_check_limits(mxf_test_pool, ev, v10, 0, &why), APR_SUCCESS);

    /* 65536 bytes of canonical JSON pass, 65537 do not. */
    base = strlen(mxf_test_canon(ev));
    json_object_set_new(json_object_get(ev, "content"), "body",
                        json_string(rep('a', 65536 - base)));
    ck_assert_uint_eq(strlen(mxf_test_canon(ev)), 65536);
    ck_assert_int_eq(mxf_event_check_limits(mxf_test_pool, ev, v10, 0, &why), APR_SUCCESS);
    json_object_set_new(json_object_get(ev, "content"), "body",
                        json_string(rep('a', 65537 - base)));
    why = NULL;
    ck_assert_int_eq(mxf_event_check_limits(mxf_test_pool, ev, v10, 0, &why), APR_EINVAL);
    ck_assert_ptr_nonnull(why);
    /* Signatures and unsigned count too. */
    json_object_set_new(json_object_get(ev, "content"), "body",
                        json_string(rep('a', 65536 - base)));
    json_object_set_new(ev, "unsigned", json_object());
    ck_assert_int_eq(mxf_event_check_limits(mxf_test_pool, ev, v10, 0, &why), APR_EINVAL);
    json_object_del(ev, "unsigned");
    json_object_set_new(json_object_get(ev, "content"), "body", json_string(""));

    /* 255-byte keys. */
    for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        json_object_set_new(ev, keys[i], json_string(rep('k', 255)));
        ck_assert_int_eq(mxf_event_check_limits(mxf_test_pool, ev, v10, 0, &why), APR_SUCCESS);
        json_object_set_new(ev, keys[i], json_string(rep('k', 256)));
        why = NULL;
        ck_assert_int_eq(mxf_event_check_limits(mxf_test_pool, ev, v10, 0, &why), APR_EINVAL);
        ck_assert_ptr_nonnull(strstr(why, keys[i]));
        json_object_set_new(ev, keys[i], json_string("k"));
    }
    /* Multi-byte characters count in bytes: 128 x 2 bytes = 256. Up to v10 such a
     * value within 255 code points passes here, and the byte check fails it (the
     * importer keeps the event as rejected); from v11 it fails here. */
    {
        char *s = apr_palloc(mxf_test_pool, 257);
        for (i = 0; i < 128; i++) {
            s[2 * i] = '\xc3';
            s[2 * i + 1] = '\xa9';
        }
        s[256] = '\0';
        json_object_set_new(ev, "state_key", json_string(s));
        ck_assert_int_eq(mxf_event_check_limits(mxf_test_pool, ev, rv("11"), 0, &why),
                         APR_EINVAL);
        ck_assert_int_eq(mxf_event_check_limits(mxf_test_pool, ev, rv("12"), 0, &why),
                         APR_EINVAL);
        ck_assert_int_eq(mxf_event_check_limits(mxf_test_pool, ev, v10, 0, &why), APR_SUCCESS);
        ck_assert_int_eq(mxf_event_check_limits(mxf_test_pool, ev, rv("1"), 0, &why),
                         APR_SUCCESS);
        ck_assert_int_eq(mxf_event_check_field_bytes(mxf_test_pool, "state_key", s, &why),
                         APR_EINVAL);
        ck_assert_ptr_nonnull(strstr(why, "state_key is 256 bytes"));
        s[254] = '\0';
        ck_assert_int_eq(mxf_event_check_field_bytes(mxf_test_pool, "state_key", s, &why),
                         APR_SUCCESS);
        ck_assert_int_eq(mxf_event_check_field_bytes(mxf_test_pool, "state_key", NULL, &why),
                         APR_SUCCESS);
        /* 256 code points are too many in every version. */
        json_object_set_new(ev, "state_key", json_string(rep('k', 256)));
        ck_assert_int_eq(mxf_event_check_limits(mxf_test_pool, ev, rv("1"), 0, &why),
                         APR_EINVAL);
        json_object_set_new(ev, "state_key", json_string(""));
    }

    /* 20 prev_events and 10 auth_events; backfill is exempt. */
    a = json_object_get(ev, "prev_events");
    for (i = 0; i < 20; i++) {
        json_array_append_new(a, json_string("$p"));
    }
    ck_assert_int_eq(mxf_event_check_limits(mxf_test_pool, ev, v10, 0, &why), APR_SUCCESS);
    json_array_append_new(a, json_string("$p"));
    ck_assert_int_eq(mxf_event_check_limits(mxf_test_pool, ev, v10, 0, &why), APR_EINVAL);
    ck_assert_int_eq(mxf_event_check_limits(mxf_test_pool, ev, v10,
                                            MXF_EVENT_LIMITS_NO_EDGE_COUNTS, &why), APR_SUCCESS);
    json_array_remove(a, 0);
    a = json_object_get(ev, "auth_events");
    for (i = 0; i < 10; i++) {
        json_array_append_new(a, json_string("$a"));
    }
    ck_assert_int_eq(mxf_event_check_limits(mxf_test_pool, ev, v10, 0, &why), APR_SUCCESS);
    json_array_append_new(a, json_string("$a"));
    ck_assert_int_eq(mxf_event_check_limits(mxf_test_pool, ev, v10, 0, &why), APR_EINVAL);
    ck_assert_int_eq(mxf_event_check_limits(mxf_test_pool, ev, v10,
                                            MXF_EVENT_LIMITS_NO_EDGE_COUNTS, &why), APR_SUCCESS);
    ck_assert_int_eq(mxf_event_check_limits(mxf_test_pool,
                                            mxf_json_own(mxf_test_pool, json_array()), v10, 0, &why),
                     APR_EINVAL);
}
END_TEST

Suite *mxf_suite_event(void)
{
    Suite *s = suite_create("event");
    TCase *tc = mxf_test_case("event");

    tcase_add_test(tc, spec_event_signing_vectors);
    tcase_add_test(tc, spec_content_hash);
    tcase_add_test(tc, spec_signed_bytes_and_reference_hashes);
    tcase_add_test(tc, v10_real_event);
    tcase_add_test(tc, event_id_v1_v2_field);
    tcase_add_test(tc, legacy_numbers);
    tcase_add_test(tc, redaction_tables);
    tcase_add_test(tc, redaction_edge_cases);
    tcase_add_test(tc, verify_spec_events);
    tcase_add_test(tc, verify_missing_unknown_and_errors);
    tcase_add_test(tc, required_signers);
    tcase_add_test(tc, sign_then_verify_all_versions);
    tcase_add_test(tc, v12_room_id);
    tcase_add_test(tc, size_limits);
    suite_add_tcase(s, tc);
    return s;
}
