/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * Authorization rules: for each rule an event that passes and one that
 * fails, in every room version 1-12 where the rule has that outcome.
 *
 * The room: alice created it (a creator: power 100, infinite in v12),
 * bob (50) and carol (0) are joined, eve is banned, dave is not in it;
 * join rule public; invite 0, kick / ban / redact 50, state_default 50.
 */
#include <string.h>

#include <apr_hash.h>
#include <apr_strings.h>

#include "mxf_authrules.h"
#include "mxf_base64.h"
#include "mxf_key.h"
#include "mxf_sign.h"
#include "mxf_test.h"

#define ALICE "@alice:a.example"
#define BOB   "@bob:a.example"
#define CAROL "@carol:a.example"
#define DAVE  "@dave:a.example"
#define EVE   "@eve:a.example"

typedef struct room {
    const mxf_roomver_t *rv;
    int v;                      /* version number */
    const char *room_id;
    const char *create_id;
    apr_hash_t *state;          /* "type|sk" -> json_t (with "_id") */
} room_t;

static const json_t *room_lookup(void *baton, const char *type, const char *sk,
                                 const char **event_id)
{
    room_t *r = baton;
    json_t *e = apr_hash_get(r->state, apr_pstrcat(mxf_test_pool, type, "|", sk, NULL),
                             APR_HASH_KEY_STRING);

    if (e && event_id) {
        *event_id = json_string_value(json_object_get(e, "_id"));
    }
    return e;
}

static json_t *jparse(const char *text)
{
    json_error_t err;
    json_t *j = json_loads(text, 0, &err);

    ck_assert_msg(j != NULL, "bad JSON in test: %s", text);
    return mxf_json_own(mxf_test_pool, j);
}

/* An event of the room (not yet in its state). */
static json_t *mkev(room_t *r, const char *sender, const char *type, const char *sk,
                    const char *content)
{
    json_t *e = json_pack("{s:s, s:s, s:s, s:O, s:i, s:i, s:[s], s:[]}", "room_id", r->room_id,
                          "sender", sender, "type", type, "content", jparse(content),
                          "origin_server_ts", 1000, "depth", 10, "prev_events", "$prev",
                          "auth_events");

    if (sk) {
        json_object_set_new(e, "state_key", json_string(sk));
    }
    return mxf_json_own(mxf_test_pool, e);
}

static void put(room_t *r, json_t *e, const char *id)
{
    const char *type = json_string_value(json_object_get(e, "type"));
    const char *sk = json_string_value(json_object_get(e, "state_key"));

    json_object_set_new(e, "_id", json_string(id));
    apr_hash_set(r->state, apr_pstrcat(mxf_test_pool, type, "|", sk, NULL), APR_HASH_KEY_STRING,
                 e);
}

static void set_state(room_t *r, const char *sender, const char *type, const char *sk,
                      const char *content)
{
    put(r, mkev(r, sender, type, sk, content), apr_psprintf(mxf_test_pool, "$%s-%s:a.example",
                                                            type, sk));
}

static json_t *mkcreate(room_t *r, const char *extra)
{
    json_t *c;

    if (r->v >= 12) {
        c = jparse(apr_psprintf(mxf_test_pool, "{\"sender\":\"" ALICE "\",\"type\":\"m.room.create\","
                                "\"state_key\":\"\",\"content\":{\"room_version\":\"12\"%s},"
                                "\"prev_events\":[],\"auth_events\":[],\"depth\":1,"
                                "\"origin_server_ts\":1}", extra));
    }
    else {
        c = jparse(apr_psprintf(mxf_test_pool, "{\"sender\":\"" ALICE "\",\"type\":\"m.room.create\","
                                "\"state_key\":\"\",\"room_id\":\"%s\",\"content\":{"
                                "\"room_version\":\"%d\"%s%s},\"prev_events\":[],"
                                "\"auth_events\":[],\"depth\":1,\"origin_server_ts\":1}",
                                r->room_id, r->v, r->v <= 10 ? ",\"creator\":\"" ALICE "\"" : "",
                                extra));
    }
    return c;
}

static room_t *mkroom(int v, const char *create_extra)
{
    room_t *r = apr_pcalloc(mxf_test_pool, sizeof(*r));

    r->v = v;
    r->rv = mxf_roomver_get(apr_itoa(mxf_test_pool, v));
    r->state = apr_hash_make(mxf_test_pool);
    r->room_id = v >= 12 ? "!CREATEHASH" : "!room:a.example";
    r->create_id = v >= 12 ? "$CREATEHASH" : "$create:a.example";
    put(r, mkcreate(r, create_extra ? create_extra : ""), r->create_id);
    set_state(r, ALICE, "m.room.member", ALICE, "{\"membership\":\"join\"}");
    set_state(r, ALICE, "m.room.power_levels", "", v >= 12 ? "{\"users\":{\"" BOB "\":50}}"
              : "{\"users\":{\"" ALICE "\":100,\"" BOB "\":50}}");
    set_state(r, ALICE, "m.room.join_rules", "", "{\"join_rule\":\"public\"}");
    set_state(r, BOB, "m.room.member", BOB, "{\"membership\":\"join\"}");
    set_state(r, CAROL, "m.room.member", CAROL, "{\"membership\":\"join\"}");
    set_state(r, ALICE, "m.room.member", EVE, "{\"membership\":\"ban\"}");
    return r;
}

static apr_status_t check(room_t *r, const json_t *e, const char **why)
{
    *why = NULL;
    return mxf_auth_check(mxf_test_pool, r->rv, e, room_lookup, r, why);
}

/* ------------------------------------------------------------------------
 * The table: state changes, the event, and its outcome in versions from..to.
 */
typedef struct row {
    const char *name;
    int from, to, pass;
    const char *st[3];          /* "sender|type|state_key|content" */
    const char *sender, *type, *sk, *content;
} row_t;

#define ALL 1, 12
#define M(x) "{\"membership\":\"" x "\"}"
#define PLC(x) ALICE "|m.room.power_levels||" x
#define JR(x) ALICE "|m.room.join_rules||{\"join_rule\":\"" x "\"}"

static const row_t rows[] = {
    /* 5.3 join */
    { "join public", ALL, 1, { NULL }, DAVE, "m.room.member", DAVE, M("join") },
    { "join for someone else", ALL, 0, { NULL }, BOB, "m.room.member", DAVE, M("join") },
    { "join while banned", ALL, 0, { NULL }, EVE, "m.room.member", EVE, M("join") },
    { "join invite-only uninvited", ALL, 0, { JR("invite") }, DAVE, "m.room.member", DAVE, M("join") },
    { "join invite-only invited", ALL, 1, { JR("invite"), BOB "|m.room.member|" DAVE "|" M("invite") },
      DAVE, "m.room.member", DAVE, M("join") },
    { "join knock rule invited (v7+)", 7, 12, 1,
      { JR("knock"), BOB "|m.room.member|" DAVE "|" M("invite") }, DAVE, "m.room.member", DAVE, M("join") },
    { "join knock rule invited (before v7)", 1, 6, 0,
      { JR("knock"), BOB "|m.room.member|" DAVE "|" M("invite") }, DAVE, "m.room.member", DAVE, M("join") },
    { "join private rule", ALL, 0, { JR("private") }, DAVE, "m.room.member", DAVE, M("join") },
    /* No join_rule in the join rules event (nor an event): "invite", as the reference
     * homeserver reads it; a join_rule that is no string is no rule. */
    { "join no join_rule invited", ALL, 1,
      { ALICE "|m.room.join_rules||{}", BOB "|m.room.member|" DAVE "|" M("invite") },
      DAVE, "m.room.member", DAVE, M("join") },
    { "join no join_rule uninvited", ALL, 0, { ALICE "|m.room.join_rules||{}" },
      DAVE, "m.room.member", DAVE, M("join") },
    { "join join_rule not a string", ALL, 0,
      { ALICE "|m.room.join_rules||{\"join_rule\":5}", BOB "|m.room.member|" DAVE "|" M("invite") },
      DAVE, "m.room.member", DAVE, M("join") },
    { "restricted join via a member who may invite (v8+)", 8, 12, 1, { JR("restricted") },
      DAVE, "m.room.member", DAVE, "{\"membership\":\"join\",\"join_authorised_via_users_server\":\"" BOB "\"}" },
    { "restricted join (before v8)", 1, 7, 0, { JR("restricted") },
      DAVE, "m.room.member", DAVE, "{\"membership\":\"join\",\"join_authorised_via_users_server\":\"" BOB "\"}" },
    { "restricted join without authoriser", 8, 12, 0, { JR("restricted") },
      DAVE, "m.room.member", DAVE, M("join") },
    { "restricted join via a user below the invite level", 8, 12, 0,
      { JR("restricted"), PLC("{\"invite\":10,\"users\":{\"" BOB "\":50}}") },
      DAVE, "m.room.member", DAVE, "{\"membership\":\"join\",\"join_authorised_via_users_server\":\"" CAROL "\"}" },
    { "restricted join via a user not joined", 8, 12, 0, { JR("restricted") },
      DAVE, "m.room.member", DAVE, "{\"membership\":\"join\",\"join_authorised_via_users_server\":\"" EVE "\"}" },
    { "restricted join when invited needs no authoriser", 8, 12, 1,
      { JR("restricted"), BOB "|m.room.member|" DAVE "|" M("invite") }, DAVE, "m.room.member", DAVE, M("join") },
    { "knock_restricted join via authoriser (v10+)", 10, 12, 1, { JR("knock_restricted") },
      DAVE, "m.room.member", DAVE, "{\"membership\":\"join\",\"join_authorised_via_users_server\":\"" BOB "\"}" },
    { "knock_restricted join (before v10)", 1, 9, 0, { JR("knock_restricted") },
      DAVE, "m.room.member", DAVE, "{\"membership\":\"join\",\"join_authorised_via_users_server\":\"" BOB "\"}" },
    /* 5.4 invite */
    { "invite", ALL, 1, { NULL }, BOB, "m.room.member", DAVE, M("invite") },
    { "invite by a non-member", ALL, 0, { NULL }, DAVE, "m.room.member", "@frank:a.example", M("invite") },
    { "invite a joined user", ALL, 0, { NULL }, BOB, "m.room.member", CAROL, M("invite") },
    { "invite a banned user", ALL, 0, { NULL }, BOB, "m.room.member", EVE, M("invite") },
    { "invite below the invite level", 1, 12, 0, { PLC("{\"invite\":60,\"users\":{\"" BOB "\":50}}") },
      BOB, "m.room.member", DAVE, M("invite") },
    /* 5.5 leave */
    { "leave", ALL, 1, { NULL }, CAROL, "m.room.member", CAROL, M("leave") },
    { "leave without membership", ALL, 0, { NULL }, DAVE, "m.room.member", DAVE, M("leave") },
    { "reject an invite", ALL, 1, { BOB "|m.room.member|" DAVE "|" M("invite") },
      DAVE, "m.room.member", DAVE, M("leave") },
    { "retract a knock (v7+)", 7, 12, 1, { DAVE "|m.room.member|" DAVE "|" M("knock") },
      DAVE, "m.room.member", DAVE, M("leave") },
    { "retract a knock (before v7)", 1, 6, 0, { DAVE "|m.room.member|" DAVE "|" M("knock") },
      DAVE, "m.room.member", DAVE, M("leave") },
    { "kick", ALL, 1, { NULL }, BOB, "m.room.member", CAROL, M("leave") },
    { "kick below the kick level", ALL, 0, { NULL }, CAROL, "m.room.member", BOB, M("leave") },
    { "kick a higher user", ALL, 0, { NULL }, BOB, "m.room.member", ALICE, M("leave") },
    { "kick by a non-member", ALL, 0, { NULL }, DAVE, "m.room.member", CAROL, M("leave") },
    { "unban", ALL, 1, { NULL }, ALICE, "m.room.member", EVE, M("leave") },
    { "unban below the ban level", ALL, 0, { PLC("{\"ban\":60,\"users\":{\"" BOB "\":50}}") },
      BOB, "m.room.member", EVE, M("leave") },
    /* 5.6 ban */
    { "ban", ALL, 1, { NULL }, BOB, "m.room.member", CAROL, M("ban") },
    { "ban below the ban level", ALL, 0, { NULL }, CAROL, "m.room.member", BOB, M("ban") },
    { "ban a higher user", ALL, 0, { NULL }, BOB, "m.room.member", ALICE, M("ban") },
    /* 5.7 knock */
    { "knock (v7+)", 7, 12, 1, { JR("knock") }, DAVE, "m.room.member", DAVE, M("knock") },
    { "knock (before v7: unknown membership)", 1, 6, 0, { JR("knock") }, DAVE, "m.room.member", DAVE, M("knock") },
    { "knock on a public room", ALL, 0, { NULL }, DAVE, "m.room.member", DAVE, M("knock") },
    { "knock on knock_restricted (v10+)", 10, 12, 1, { JR("knock_restricted") }, DAVE, "m.room.member", DAVE, M("knock") },
    { "knock on knock_restricted (v7-v9)", 7, 9, 0, { JR("knock_restricted") }, DAVE, "m.room.member", DAVE, M("knock") },
    { "knock for someone else", 7, 12, 0, { JR("knock") }, BOB, "m.room.member", DAVE, M("knock") },
    { "knock while invited", 7, 12, 0, { JR("knock"), BOB "|m.room.member|" DAVE "|" M("invite") },
      DAVE, "m.room.member", DAVE, M("knock") },
    { "unknown membership", ALL, 0, { NULL }, DAVE, "m.room.member", DAVE, M("frobnicate") },
    { "member without membership", ALL, 0, { NULL }, DAVE, "m.room.member", DAVE, "{}" },
    /* 6 - 9 */
    { "message by a member", ALL, 1, { NULL }, CAROL, "m.room.message", NULL, "{}" },
    { "message by a non-member", ALL, 0, { NULL }, DAVE, "m.room.message", NULL, "{}" },
    { "message below events level", ALL, 0, { PLC("{\"events\":{\"m.room.message\":10}}") },
      CAROL, "m.room.message", NULL, "{}" },
    { "state below state_default", ALL, 0, { NULL }, CAROL, "m.room.name", "", "{}" },
    { "state at state_default", ALL, 1, { NULL }, BOB, "m.room.name", "", "{}" },
    { "third_party_invite event", ALL, 1, { NULL }, CAROL, "m.room.third_party_invite", "tok", "{}" },
    { "third_party_invite below the invite level", ALL, 0, { PLC("{\"invite\":10}") },
      CAROL, "m.room.third_party_invite", "tok", "{}" },
    { "state_key of another user", ALL, 0, { NULL }, BOB, "m.custom", CAROL, "{}" },
    { "state_key of the sender", ALL, 1, { NULL }, BOB, "m.custom", BOB, "{}" },
    /* 10 power levels */
    { "power levels: users not an object", ALL, 0, { NULL }, ALICE, "m.room.power_levels", "",
      "{\"users\":[]}" },
    { "power levels: bad user ID", ALL, 0, { NULL }, ALICE, "m.room.power_levels", "",
      "{\"users\":{\"bob\":50}}" },
    { "power levels: string user level (before v10)", 1, 9, 1, { NULL }, ALICE,
      "m.room.power_levels", "", "{\"users\":{\"" BOB "\":\" +050 \"}}" },
    { "power levels: string user level (v10+)", 10, 12, 0, { NULL }, ALICE,
      "m.room.power_levels", "", "{\"users\":{\"" BOB "\":\"50\"}}" },
    { "power levels: string ban level (before v10)", 1, 9, 1, { NULL }, ALICE,
      "m.room.power_levels", "", "{\"ban\":\"50\",\"users\":{\"" BOB "\":50}}" },
    { "power levels: string ban level (v10+)", 10, 12, 0, { NULL }, ALICE,
      "m.room.power_levels", "", "{\"ban\":\"50\",\"users\":{\"" BOB "\":50}}" },
    { "power levels: string events level (v10+)", 10, 12, 0, { NULL }, ALICE,
      "m.room.power_levels", "", "{\"events\":{\"m.room.name\":\"50\"},\"users\":{\"" BOB "\":50}}" },
    /* Before v10 rule 10 checks users only; other levels that are not numbers are defaults. */
    { "power levels: non-numeric ban level (before v10)", 1, 9, 1, { NULL }, ALICE,
      "m.room.power_levels", "", "{\"ban\":\"abc\",\"users\":{\"" BOB "\":50}}" },
    { "power levels: non-numeric ban level (v10+)", 10, 12, 0, { NULL }, ALICE,
      "m.room.power_levels", "", "{\"ban\":\"abc\",\"users\":{\"" BOB "\":50}}" },
    { "power levels: events not an object (before v10)", 1, 9, 1, { NULL }, ALICE,
      "m.room.power_levels", "", "{\"events\":[1],\"users\":{\"" BOB "\":50}}" },
    { "power levels: events not an object (v10+)", 10, 12, 0, { NULL }, ALICE,
      "m.room.power_levels", "", "{\"events\":[1],\"users\":{\"" BOB "\":50}}" },
    { "power levels: non-numeric events level (before v10)", 1, 9, 1, { NULL }, ALICE,
      "m.room.power_levels", "", "{\"events\":{\"m.room.topic\":\"x\"},\"users\":{\"" BOB
      "\":50}}" },
    { "power levels: non-numeric string", 1, 9, 0, { NULL }, ALICE,
      "m.room.power_levels", "", "{\"users\":{\"" BOB "\":\"fifty\"}}" },
    /* Before v10, what the reference homeserver's int() reads. */
    { "power levels: underscores between digits (before v10)", 1, 9, 1, { NULL }, ALICE,
      "m.room.power_levels", "", "{\"users\":{\"" BOB "\":\"-1_0\"}}" },
    { "power levels: many leading zeroes (before v10)", 1, 9, 1, { NULL }, ALICE,
      "m.room.power_levels", "", "{\"users\":{\"" BOB "\":\"00000000000000000000000000000000050\"}}" },
    { "power levels: double underscore", 1, 9, 0, { NULL }, ALICE,
      "m.room.power_levels", "", "{\"users\":{\"" BOB "\":\"1__0\"}}" },
    { "power levels: leading underscore", 1, 9, 0, { NULL }, ALICE,
      "m.room.power_levels", "", "{\"users\":{\"" BOB "\":\"_10\"}}" },
    { "power levels: trailing underscore", 1, 9, 0, { NULL }, ALICE,
      "m.room.power_levels", "", "{\"users\":{\"" BOB "\":\"10_\"}}" },
    { "power levels: beyond 64 bits", 1, 9, 0, { NULL }, ALICE,
      "m.room.power_levels", "", "{\"users\":{\"" BOB "\":\"99999999999999999999\"}}" },
    { "power levels: boolean user level (before v10)", 1, 9, 1, { NULL }, ALICE,
      "m.room.power_levels", "", "{\"users\":{\"" BOB "\":true}}" },
    { "power levels: boolean user level (v10+)", 10, 12, 0, { NULL }, ALICE,
      "m.room.power_levels", "", "{\"users\":{\"" BOB "\":true}}" },
    { "power levels: raise own level", ALL, 0, { NULL }, BOB, "m.room.power_levels", "",
      "{\"users\":{\"" ALICE "\":100,\"" BOB "\":60}}" },
    { "power levels: grant up to own level", 1, 11, 1, { NULL }, BOB, "m.room.power_levels", "",
      "{\"users\":{\"" ALICE "\":100,\"" BOB "\":50,\"" CAROL "\":50}}" },
    { "power levels: grant above own level", 1, 11, 0, { NULL }, BOB, "m.room.power_levels", "",
      "{\"users\":{\"" ALICE "\":100,\"" BOB "\":50,\"" CAROL "\":51}}" },
    { "power levels: demote a higher user", 1, 11, 0, { NULL }, BOB, "m.room.power_levels", "",
      "{\"users\":{\"" ALICE "\":10,\"" BOB "\":50}}" },
    { "power levels: demote an equal user", 1, 11, 0,
      { PLC("{\"users\":{\"" ALICE "\":100,\"" BOB "\":50,\"" CAROL "\":50}}") }, BOB,
      "m.room.power_levels", "", "{\"users\":{\"" ALICE "\":100,\"" BOB "\":50,\"" CAROL "\":0}}" },
    { "power levels: lower own level", 1, 11, 1, { NULL }, BOB, "m.room.power_levels", "",
      "{\"users\":{\"" ALICE "\":100,\"" BOB "\":40}}" },
    { "power levels: change a level above own", 1, 11, 0, { PLC("{\"ban\":60,\"users\":{\"" ALICE "\":100,\"" BOB "\":50}}") },
      BOB, "m.room.power_levels", "", "{\"ban\":40,\"users\":{\"" ALICE "\":100,\"" BOB "\":50}}" },
    { "power levels: change a level to own", 1, 11, 1, { NULL }, BOB, "m.room.power_levels", "",
      "{\"kick\":20,\"users_default\":50,\"users\":{\"" ALICE "\":100,\"" BOB "\":50}}" },
    { "power levels: events entry above own", 1, 11, 0, { NULL }, BOB, "m.room.power_levels", "",
      "{\"events\":{\"m.room.name\":60},\"users\":{\"" ALICE "\":100,\"" BOB "\":50}}" },
    { "power levels: notifications above own (v6+)", 6, 11, 0, { NULL }, BOB, "m.room.power_levels", "",
      "{\"notifications\":{\"room\":60},\"users\":{\"" ALICE "\":100,\"" BOB "\":50}}" },
    { "power levels: notifications not checked (before v6)", 1, 5, 1, { NULL }, BOB,
      "m.room.power_levels", "", "{\"notifications\":{\"room\":60},\"users\":{\"" ALICE "\":100,\"" BOB "\":50}}" },
    { "power levels: v12 creator may not be listed", 12, 12, 0, { NULL }, ALICE,
      "m.room.power_levels", "", "{\"users\":{\"" ALICE "\":100}}" },
    { "power levels: v12 creator has infinite power", 12, 12, 1, { NULL }, ALICE,
      "m.room.power_levels", "", "{\"users\":{\"" BOB "\":9007199254740991}}" },
    { "power levels: v12 grant up to own level", 12, 12, 1, { NULL }, BOB, "m.room.power_levels", "",
      "{\"users\":{\"" BOB "\":50,\"" CAROL "\":50}}" },
    { "power levels: v12 grant above own level", 12, 12, 0, { NULL }, BOB, "m.room.power_levels", "",
      "{\"users\":{\"" BOB "\":50,\"" CAROL "\":51}}" },
    /* 4 aliases (v1-v5) */
    { "aliases for the sender's domain (v1-v5)", 1, 5, 1, { NULL }, DAVE, "m.room.aliases", "a.example", "{}" },
    { "aliases by a non-member (v6+)", 6, 12, 0, { NULL }, DAVE, "m.room.aliases", "a.example", "{}" },
    { "aliases for another domain", 1, 5, 0, { NULL }, DAVE, "m.room.aliases", "b.example", "{}" },
    /* 3 m.federate */
    { NULL, 0, 0, 0, { NULL }, NULL, NULL, NULL, NULL }
};

static void apply_row_state(room_t *r, const row_t *row)
{
    int i;

    for (i = 0; i < 3 && row->st[i]; i++) {
        char *s = apr_pstrdup(mxf_test_pool, row->st[i]);
        char *f[4];
        int k;
        for (k = 0; k < 3; k++) {
            f[k] = s;
            s = strchr(s, '|');
            ck_assert_ptr_nonnull(s);
            *s++ = '\0';
        }
        f[3] = s;
        /* v12: alice may not be listed in power levels */
        if (r->v >= 12 && strcmp(f[1], "m.room.power_levels") == 0) {
            json_t *c = jparse(f[3]);
            json_object_del(json_object_get(c, "users"), ALICE);
            f[3] = (char *)mxf_json_dump(mxf_test_pool, c, NULL);
        }
        set_state(r, f[0], f[1], f[2], f[3]);
    }
}

START_TEST(rule_table)
{
    int i, v;
    unsigned tested = 0;

    for (i = 0; rows[i].name; i++) {
        for (v = rows[i].from; v <= rows[i].to; v++) {
            room_t *r = mkroom(v, NULL);
            json_t *e;
            const char *why;
            apr_status_t rv;
            const char *content = rows[i].content;

            apply_row_state(r, &rows[i]);
            if (v >= 12 && strcmp(rows[i].type, "m.room.power_levels") == 0
                && rows[i].from < 12) {
                json_t *c = jparse(content);
                json_object_del(json_object_get(c, "users"), ALICE);
                content = mxf_json_dump(mxf_test_pool, c, NULL);
            }
            e = mkev(r, rows[i].sender, rows[i].type, rows[i].sk, content);
            rv = check(r, e, &why);
            ck_assert_msg(rows[i].pass ? rv == APR_SUCCESS : rv == MXF_AUTH_REJECTED,
                          "v%d %s: %s (%s)", v, rows[i].name, rv == APR_SUCCESS ? "allowed" : "rejected",
                          why ? why : "");
            if (!rows[i].pass) {
                ck_assert_ptr_nonnull(why);
            }
            tested++;
        }
    }
    ck_assert_uint_gt(tested, 500);
}
END_TEST

/* Power levels as floats: truncated in v1-v5, refused from v6. */
START_TEST(float_power_levels)
{
    int v;

    for (v = 1; v <= 11; v++) {
        room_t *r = mkroom(v, NULL);
        json_t *e = mkev(r, ALICE, "m.room.power_levels", "", "{\"users\":{}}");
        const char *why;
        json_t *users = json_object_get(json_object_get(e, "content"), "users");

        json_object_set_new(users, ALICE, json_integer(100));
        json_object_set_new(users, BOB, json_real(50.57));
        ck_assert_int_eq(check(r, e, &why), v <= 5 ? APR_SUCCESS : MXF_AUTH_REJECTED);
        if (v <= 5) {
            /* bob at 50.57 counts as 50: he may set carol to 50, not 51 */
            json_t *e2 = mkev(r, BOB, "m.room.power_levels", "", "{}");
            put(r, e, "$pl2:a.example");
            users = json_deep_copy(users);
            json_object_set_new(json_object_get(e2, "content"), "users", users);
            json_object_set_new(users, CAROL, json_integer(50));
            ck_assert_int_eq(check(r, e2, &why), APR_SUCCESS);
            json_object_set_new(users, CAROL, json_integer(51));
            ck_assert_int_eq(check(r, e2, &why), MXF_AUTH_REJECTED);
        }
    }
}
END_TEST

/* 1: m.room.create. */
START_TEST(create_rules)
{
    int v;

    for (v = 1; v <= 12; v++) {
        room_t *r = mkroom(v, NULL);
        json_t *c = mkcreate(r, "");
        const char *why;

        ck_assert_int_eq(check(r, c, &why), APR_SUCCESS);
        c = mkcreate(r, "");
        json_array_append_new(json_object_get(c, "prev_events"), json_string("$x"));
        ck_assert_int_eq(check(r, c, &why), MXF_AUTH_REJECTED);
        c = mkcreate(r, "");
        json_object_set_new(json_object_get(c, "content"), "room_version", json_string("99"));
        ck_assert_int_eq(check(r, c, &why), MXF_AUTH_REJECTED);
        c = mkcreate(r, "");
        json_object_del(json_object_get(c, "content"), "creator");
        ck_assert_int_eq(check(r, c, &why), v <= 10 ? MXF_AUTH_REJECTED : APR_SUCCESS);
        c = mkcreate(r, "");
        if (v <= 11) {
            json_object_set_new(c, "room_id", json_string("!room:b.example"));
            ck_assert_int_eq(check(r, c, &why), MXF_AUTH_REJECTED);
        }
        else {
            json_object_set_new(c, "room_id", json_string(r->room_id));
            ck_assert_int_eq(check(r, c, &why), MXF_AUTH_REJECTED);
            c = mkcreate(r, ",\"additional_creators\":[\"" CAROL "\"]");
            ck_assert_int_eq(check(r, c, &why), APR_SUCCESS);
            c = mkcreate(r, ",\"additional_creators\":[\"carol\"]");
            ck_assert_int_eq(check(r, c, &why), MXF_AUTH_REJECTED);
            c = mkcreate(r, ",\"additional_creators\":\"" CAROL "\"");
            ck_assert_int_eq(check(r, c, &why), MXF_AUTH_REJECTED);
        }
    }
}
END_TEST

/* 5.3.1: the creator's first join follows the create event directly. */
START_TEST(creator_first_join)
{
    int v;

    for (v = 1; v <= 12; v++) {
        room_t *r = mkroom(v, NULL);
        json_t *e;
        const char *why;

        r->state = apr_hash_make(mxf_test_pool);
        put(r, mkcreate(r, ""), r->create_id);
        e = mkev(r, ALICE, "m.room.member", ALICE, M("join"));
        json_array_set_new(json_object_get(e, "prev_events"), 0, json_string(r->create_id));
        ck_assert_msg(check(r, e, &why) == APR_SUCCESS, "v%d: %s", v, why);
        /* someone else, or not right after the create event: no join rule, rejected */
        e = mkev(r, BOB, "m.room.member", BOB, M("join"));
        json_array_set_new(json_object_get(e, "prev_events"), 0, json_string(r->create_id));
        ck_assert_int_eq(check(r, e, &why), MXF_AUTH_REJECTED);
        e = mkev(r, ALICE, "m.room.member", ALICE, M("join"));
        ck_assert_int_eq(check(r, e, &why), MXF_AUTH_REJECTED);
    }
}
END_TEST

/* v12: additional creators have infinite power too; v12 room ID must name the create event. */
START_TEST(v12_creators)
{
    room_t *r = mkroom(12, ",\"additional_creators\":[\"" CAROL "\"]");
    room_t *r11 = mkroom(11, NULL);
    const char *why;

    ck_assert_int_eq(check(r, mkev(r, CAROL, "m.room.member", BOB, M("ban")), &why), APR_SUCCESS);
    ck_assert_int_eq(check(r, mkev(r, BOB, "m.room.member", CAROL, M("leave")), &why),
                     MXF_AUTH_REJECTED);
    /* two creators: equal (infinite) power, neither may kick the other */
    ck_assert_int_eq(check(r, mkev(r, CAROL, "m.room.member", ALICE, M("leave")), &why),
                     MXF_AUTH_REJECTED);
    ck_assert_int_eq(check(r, mkev(r, ALICE, "m.room.member", CAROL, M("ban")), &why),
                     MXF_AUTH_REJECTED);
    ck_assert_int_eq(check(r11, mkev(r11, CAROL, "m.room.member", BOB, M("ban")), &why),
                     MXF_AUTH_REJECTED);
    /* an event of another room */
    {
        json_t *e = mkev(r, CAROL, "m.room.message", NULL, "{}");
        ck_assert_int_eq(check(r, e, &why), APR_SUCCESS);
        json_object_set_new(e, "room_id", json_string("!OTHER"));
        ck_assert_int_eq(check(r, e, &why), MXF_AUTH_REJECTED);
    }
}
END_TEST

/* 3: m.federate false keeps other servers out; no create event: rejected. */
START_TEST(federate_and_missing_create)
{
    int v;

    for (v = 1; v <= 12; v++) {
        room_t *r = mkroom(v, ",\"m.federate\":false");
        const char *why;

        ck_assert_int_eq(check(r, mkev(r, DAVE, "m.room.member", DAVE, M("join")), &why),
                         APR_SUCCESS);
        ck_assert_int_eq(check(r, mkev(r, "@dave:b.example", "m.room.member", "@dave:b.example",
                                       M("join")), &why), MXF_AUTH_REJECTED);
        r->state = apr_hash_make(mxf_test_pool);
        ck_assert_int_eq(check(r, mkev(r, DAVE, "m.room.member", DAVE, M("join")), &why),
                         MXF_AUTH_REJECTED);
    }
}
END_TEST

/* 11 (v1, v2): redactions need the redact level or the same domain. */
START_TEST(redaction_rule)
{
    int v;

    for (v = 1; v <= 12; v++) {
        room_t *r = mkroom(v, NULL);
        json_t *e = mkev(r, CAROL, "m.room.redaction", NULL, "{}");
        const char *why;

        json_object_set_new(e, "event_id", json_string("$r1:a.example"));
        json_object_set_new(e, "redacts", json_string("$x:a.example"));
        ck_assert_int_eq(check(r, e, &why), APR_SUCCESS);
        json_object_set_new(e, "redacts", json_string("$x:b.example"));
        ck_assert_int_eq(check(r, e, &why), v <= 2 ? MXF_AUTH_REJECTED : APR_SUCCESS);
        e = mkev(r, BOB, "m.room.redaction", NULL, "{}");
        json_object_set_new(e, "event_id", json_string("$r2:a.example"));
        json_object_set_new(e, "redacts", json_string("$x:b.example"));
        ck_assert_int_eq(check(r, e, &why), APR_SUCCESS);
    }
}
END_TEST

/* 5.4.1: third-party invites are checked against the invite's public keys. */
START_TEST(third_party_invite)
{
    mxf_signing_key_t *key, *other;
    const char *why;
    int v;

    ck_assert_int_eq(mxf_key_generate(mxf_test_pool, "t", &key, &why), APR_SUCCESS);
    ck_assert_int_eq(mxf_key_generate(mxf_test_pool, "o", &other, &why), APR_SUCCESS);
    for (v = 1; v <= 12; v++) {
        room_t *r = mkroom(v, NULL);
        const char *pk = mxf_b64_encode(mxf_test_pool, key->pk, sizeof(key->pk), MXF_B64_STANDARD);
        json_t *signed_, *e;

        set_state(r, BOB, "m.room.third_party_invite", "tok",
                  apr_psprintf(mxf_test_pool, "{\"public_key\":\"AAAA\",\"public_keys\":"
                               "[{\"public_key\":\"%s\"}]}", pk));
        signed_ = jparse("{\"mxid\":\"" DAVE "\",\"token\":\"tok\"}");
        ck_assert_int_eq(mxf_sign_json(mxf_test_pool, signed_, "id.example", key, &why), APR_SUCCESS);
        e = mkev(r, BOB, "m.room.member", DAVE, M("invite"));
        json_object_set_new(json_object_get(e, "content"), "third_party_invite",
                            json_pack("{s:O}", "signed", signed_));
        ck_assert_msg(check(r, e, &why) == APR_SUCCESS, "v%d: %s", v, why);
        /* by someone else than the invite's sender */
        json_object_set_new(e, "sender", json_string(CAROL));
        ck_assert_int_eq(check(r, e, &why), MXF_AUTH_REJECTED);
        json_object_set_new(e, "sender", json_string(BOB));
        /* for someone else than mxid */
        json_object_set_new(e, "state_key", json_string(EVE));
        ck_assert_int_eq(check(r, e, &why), MXF_AUTH_REJECTED);
        json_object_set_new(e, "state_key", json_string(DAVE));
        /* signed by a key the invite does not hold */
        json_object_del(signed_, "signatures");
        ck_assert_int_eq(mxf_sign_json(mxf_test_pool, signed_, "id.example", other, &why), APR_SUCCESS);
        ck_assert_int_eq(check(r, e, &why), MXF_AUTH_REJECTED);
        /* no m.room.third_party_invite for the token */
        json_object_set_new(signed_, "token", json_string("nope"));
        ck_assert_int_eq(check(r, e, &why), MXF_AUTH_REJECTED);
        /* no signed */
        json_object_set_new(json_object_get(e, "content"), "third_party_invite", json_object());
        ck_assert_int_eq(check(r, e, &why), MXF_AUTH_REJECTED);
    }
}
END_TEST

/* ------------------------------------------------------------------------
 * Auth events selection and the auth_events rules.
 */
static int has_key(apr_array_header_t *a, const char *type, const char *sk)
{
    int i;

    for (i = 0; i < a->nelts; i++) {
        const mxf_auth_key_t *k = &APR_ARRAY_IDX(a, i, mxf_auth_key_t);
        if (strcmp(k->type, type) == 0 && strcmp(k->state_key, sk) == 0) {
            return 1;
        }
    }
    return 0;
}

START_TEST(selection)
{
    int v;

    for (v = 1; v <= 12; v++) {
        room_t *r = mkroom(v, NULL);
        json_t *join = mkev(r, DAVE, "m.room.member", DAVE,
                            "{\"membership\":\"join\",\"join_authorised_via_users_server\":\"" BOB "\"}");
        json_t *tpi = mkev(r, BOB, "m.room.member", DAVE,
                           "{\"membership\":\"invite\",\"third_party_invite\":{\"signed\":{\"token\":\"tok\"}}}");
        json_t *kick = mkev(r, BOB, "m.room.member", CAROL, M("leave"));
        json_t *msg = mkev(r, CAROL, "m.room.message", NULL, "{}");
        apr_array_header_t *a;

        a = mxf_auth_selection(mxf_test_pool, r->rv, join);
        ck_assert_int_eq(has_key(a, "m.room.create", ""), v < 12);
        ck_assert(has_key(a, "m.room.power_levels", "") && has_key(a, "m.room.member", DAVE));
        ck_assert(has_key(a, "m.room.join_rules", ""));
        ck_assert_int_eq(has_key(a, "m.room.member", BOB), v >= 8);
        ck_assert_int_eq(a->nelts, 3 + (v < 12) + (v >= 8));
        a = mxf_auth_selection(mxf_test_pool, r->rv, tpi);
        ck_assert(has_key(a, "m.room.third_party_invite", "tok") && has_key(a, "m.room.member", BOB));
        ck_assert_int_eq(a->nelts, 5 + (v < 12));
        a = mxf_auth_selection(mxf_test_pool, r->rv, kick);
        ck_assert(!has_key(a, "m.room.join_rules", "") && has_key(a, "m.room.member", CAROL));
        a = mxf_auth_selection(mxf_test_pool, r->rv, msg);
        ck_assert_int_eq(a->nelts, 2 + (v < 12));
        ck_assert_int_eq(mxf_auth_selection(mxf_test_pool, r->rv, mkcreate(r, ""))->nelts, 0);
    }
}
END_TEST

START_TEST(auth_events_list)
{
    int v;

    for (v = 1; v <= 12; v++) {
        room_t *r = mkroom(v, NULL);
        json_t *msg = mkev(r, CAROL, "m.room.message", NULL, "{}");
        const json_t *create = room_lookup(r, "m.room.create", "", NULL);
        const json_t *pl = room_lookup(r, "m.room.power_levels", "", NULL);
        const json_t *carol = room_lookup(r, "m.room.member", CAROL, NULL);
        const json_t *bob = room_lookup(r, "m.room.member", BOB, NULL);
        const json_t *ok11[] = { create, pl, carol };
        const json_t *ok12[] = { pl, carol };
        const json_t *dup[] = { pl, carol, pl };
        const json_t *extra[] = { pl, carol, bob };
        const json_t *nocreate[] = { pl, carol };
        const char *why;
        json_t *other;

        if (v < 12) {
            ck_assert_int_eq(mxf_auth_check_auth_events(mxf_test_pool, r->rv, msg, ok11, 3, &why),
                             APR_SUCCESS);
            ck_assert_int_eq(mxf_auth_check_auth_events(mxf_test_pool, r->rv, msg, nocreate, 2,
                                                        &why), MXF_AUTH_REJECTED);
        }
        else {
            ck_assert_int_eq(mxf_auth_check_auth_events(mxf_test_pool, r->rv, msg, ok12, 2, &why),
                             APR_SUCCESS);
            ck_assert_int_eq(mxf_auth_check_auth_events(mxf_test_pool, r->rv, msg, ok11, 3, &why),
                             MXF_AUTH_REJECTED);
        }
        ck_assert_int_eq(mxf_auth_check_auth_events(mxf_test_pool, r->rv, msg, dup, 3, &why),
                         MXF_AUTH_REJECTED);
        ck_assert_int_eq(mxf_auth_check_auth_events(mxf_test_pool, r->rv, msg, extra, 3, &why),
                         MXF_AUTH_REJECTED);
        other = json_deep_copy(carol);
        json_object_set_new(other, "room_id", json_string("!elsewhere:b.example"));
        mxf_json_own(mxf_test_pool, other);
        {
            const json_t *bad[] = { create, pl, other };
            ck_assert_int_eq(mxf_auth_check_auth_events(mxf_test_pool, r->rv, msg,
                                                        v < 12 ? bad : bad + 1, v < 12 ? 3 : 2,
                                                        &why), MXF_AUTH_REJECTED);
        }
    }
}
END_TEST

Suite *mxf_suite_authrules(void)
{
    Suite *s = suite_create("authrules");
    TCase *tc = mxf_test_case("rules");

    tcase_add_test(tc, rule_table);
    tcase_add_test(tc, float_power_levels);
    tcase_add_test(tc, create_rules);
    tcase_add_test(tc, creator_first_join);
    tcase_add_test(tc, v12_creators);
    tcase_add_test(tc, federate_and_missing_create);
    tcase_add_test(tc, redaction_rule);
    tcase_add_test(tc, third_party_invite);
    suite_add_tcase(s, tc);
    tc = mxf_test_case("auth events");
    tcase_add_test(tc, selection);
    tcase_add_test(tc, auth_events_list);
    suite_add_tcase(s, tc);
    return s;
}
