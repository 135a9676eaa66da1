/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <apr_hash.h>
#include <apr_strings.h>

#include "mxf_authrules.h"
#include "mxf_base64.h"
#include "mxf_id.h"
#include "mxf_sign.h"

#define T_CREATE "m.room.create"
#define T_MEMBER "m.room.member"
#define T_JR     "m.room.join_rules"
#define T_PL     "m.room.power_levels"
#define T_TPI    "m.room.third_party_invite"
#define T_ALIAS  "m.room.aliases"
#define T_REDACT "m.room.redaction"

/* ------------------------------------------------------------------------
 * What differs between room versions, rule by rule. Read from the room
 * version table (mxf_roomver.c); each line names the rule of the room
 * version pages it changes.
 */
typedef struct rules {
    /* 1.2  v1-v11: the room_id's domain is the sender's; v12: no room_id at all,
     * the room ID is the create event's ID (rule 2), and m.room.create is not
     * among auth_events (rule 3.2). */
    unsigned create_names_room:1;
    /* 1.4  v1-v10: m.room.create content must have "creator". */
    unsigned create_needs_creator:1;
    /* 1.4  v12: additional_creators is an array of user IDs; creators
     * (sender + additional_creators) have infinite power (10.4). */
    unsigned creators:1;
    /* 5.3.1, "creator" in power levels: v11+: the create event's sender. */
    unsigned creator_is_sender:1;
    /* 4    v1-v5: m.room.aliases has its own rule. */
    unsigned aliases_rule:1;
    /* 11   v1, v2: m.room.redaction needs the redact level or the same domain. */
    unsigned redaction_rule:1;
    /* 10.4/10.5 v6+: "notifications" levels are checked like "events". */
    unsigned notifications:1;
    /* 5.3.4, 5.5.1, 5.7 v7+: the knock join rule and membership. */
    unsigned knock:1;
    /* 5.3.5 v8+: the restricted join rule. */
    unsigned restricted:1;
    /* 5.3.5, 5.7.1 v10+: the knock_restricted join rule. */
    unsigned knock_restricted:1;
    /* 10.1/10.2 v10+: every level is a JSON integer (no strings). */
    unsigned int_levels:1;
    /* v1-v5 (no canonical JSON): levels may be floats, truncated. */
    unsigned float_levels:1;
} rules_t;

static rules_t rules_for(const mxf_roomver_t *rv)
{
    rules_t r;

    memset(&r, 0, sizeof(r));
    r.create_names_room = rv->room_id_is_create_hash;
    r.create_needs_creator = !rv->implicit_creator;
    r.creators = rv->room_id_is_create_hash;
    r.creator_is_sender = rv->implicit_creator;
    r.aliases_rule = rv->aliases_auth_rule;
    r.redaction_rule = rv->redaction_auth_rule;
    r.notifications = rv->notifications_pl_auth;
    r.knock = rv->knock;
    r.restricted = rv->restricted;
    r.knock_restricted = rv->knock_restricted;
    r.int_levels = rv->int_power_levels;
    r.float_levels = !rv->strict_canonical_json;
    return r;
}

/* ------------------------------------------------------------------------
 * Small JSON readers.
 */
static const char *jstr(const json_t *o, const char *key)
{
    const json_t *v = json_is_object(o) ? json_object_get(o, key) : NULL;

    return json_is_string(v) ? json_string_value(v) : NULL;
}

static const json_t *jobj(const json_t *o, const char *key)
{
    const json_t *v = json_is_object(o) ? json_object_get(o, key) : NULL;

    return json_is_object(v) ? v : NULL;
}

static int streq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

static const char *domain_of(apr_pool_t *p, const char *id)
{
    return id ? mxf_id_server_of(p, id) : NULL;
}

apr_array_header_t *mxf_auth_event_refs(apr_pool_t *p, const json_t *pdu, const char *field)
{
    const json_t *list = json_is_object(pdu) ? json_object_get(pdu, field) : NULL;
    apr_array_header_t *out = apr_array_make(p, 4, sizeof(const char *));
    size_t i;

    if (!json_is_array(list)) {
        return out;
    }
    for (i = 0; i < json_array_size(list); i++) {
        const json_t *e = json_array_get(list, i);
        if (json_is_array(e)) {
            e = json_array_get(e, 0);
        }
        if (json_is_string(e)) {
            APR_ARRAY_PUSH(out, const char *) = json_string_value(e);
        }
    }
    return out;
}

const char *mxf_auth_create_id(apr_pool_t *p, const char *room_id)
{
    if (room_id == NULL || room_id[0] != '!') {
        return NULL;
    }
    return apr_pstrcat(p, "$", room_id + 1, NULL);
}

int mxf_auth_is_power_event(const json_t *event)
{
    const char *type = jstr(event, "type");
    const char *sk = jstr(event, "state_key");
    const char *membership;

    if (type == NULL || sk == NULL) {
        return 0;
    }
    if (strcmp(type, T_PL) == 0 || strcmp(type, T_JR) == 0) {
        return sk[0] == '\0';
    }
    if (strcmp(type, T_MEMBER) == 0) {
        membership = jstr(jobj(event, "content"), "membership");
        return (streq(membership, "leave") || streq(membership, "ban"))
            && !streq(jstr(event, "sender"), sk);
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Power levels.
 */

/*
 * A level as the version allows it: integer; before v10 also what the
 * reference homeserver's int() takes: an integer string ([ws] [+|-] digits
 * [ws], leading zeroes and single underscores between digits allowed) and
 * true or false (1, 0); float (truncated) in v1-v5. 1 if readable. (int()
 * also takes non-ASCII digits and spaces; those are not read here.)
 */
static int level_value(const rules_t *r, const json_t *v, apr_int64_t *out)
{
    if (json_is_integer(v)) {
        *out = (apr_int64_t)json_integer_value(v);
        return 1;
    }
    if (json_is_boolean(v) && !r->int_levels) {
        *out = json_is_true(v) ? 1 : 0;
        return 1;
    }
    if (json_is_string(v) && !r->int_levels) {
        const char *s = json_string_value(v);
        char digits[32], *end;
        apr_size_t n = 0, sign;
        long long value;

        if (json_string_length(v) != strlen(s)) {
            return 0;
        }
        while (*s == ' ' || (*s >= '\t' && *s <= '\r')) {
            s++;
        }
        if (*s == '+' || *s == '-') {
            digits[n++] = *s++;
        }
        sign = n;
        if (*s < '0' || *s > '9') {
            return 0;
        }
        for (; (*s >= '0' && *s <= '9') || *s == '_'; s++) {
            if (*s == '_' && !(s[1] >= '0' && s[1] <= '9')) {
                return 0;               /* "1_", "1__0" */
            }
            if (*s == '_' || (*s == '0' && n == sign)) {
                continue;               /* leading zeroes */
            }
            if (n + 1 >= sizeof(digits)) {
                return 0;               /* beyond 64 bits */
            }
            digits[n++] = *s;
        }
        if (n == sign) {
            digits[n++] = '0';
        }
        digits[n] = '\0';
        while (*s == ' ' || (*s >= '\t' && *s <= '\r')) {
            s++;
        }
        if (*s != '\0') {
            return 0;
        }
        errno = 0;
        value = strtoll(digits, &end, 10);
        if (errno == ERANGE || *end != '\0') {
            return 0;
        }
        *out = (apr_int64_t)value;
        return 1;
    }
    if (json_is_real(v) && r->float_levels) {
        double d = json_real_value(v);
        if (!isfinite(d) || d >= 9223372036854775807.0 || d <= -9223372036854775807.0) {
            return 0;
        }
        *out = (apr_int64_t)trunc(d);
        return 1;
    }
    return 0;
}

/* @a key of object @a o as a level, or @a def when absent or unreadable. */
static apr_int64_t level_or(const rules_t *r, const json_t *o, const char *key, apr_int64_t def)
{
    apr_int64_t v;
    const json_t *j = json_is_object(o) ? json_object_get(o, key) : NULL;

    return (j && level_value(r, j, &v)) ? v : def;
}

static mxf_auth_level_t lvl_finite(apr_int64_t v)
{
    mxf_auth_level_t l;

    l.value = v;
    l.infinite = 0;
    return l;
}

int mxf_auth_level_cmp(mxf_auth_level_t a, mxf_auth_level_t b)
{
    if (a.infinite || b.infinite) {
        return a.infinite - b.infinite;
    }
    return a.value < b.value ? -1 : a.value > b.value;
}

static int level_ge(mxf_auth_level_t a, apr_int64_t b)
{
    return mxf_auth_level_cmp(a, lvl_finite(b)) >= 0;
}

/* Whether @a user_id is a creator (v12): the create event's sender or in additional_creators. */
static int is_v12_creator(const json_t *create, const char *user_id)
{
    const json_t *more;
    size_t i;

    if (create == NULL || user_id == NULL) {
        return 0;
    }
    if (streq(jstr(create, "sender"), user_id)) {
        return 1;
    }
    more = json_object_get(jobj(create, "content"), "additional_creators");
    if (json_is_array(more)) {
        for (i = 0; i < json_array_size(more); i++) {
            const json_t *u = json_array_get(more, i);
            if (json_is_string(u) && strcmp(json_string_value(u), user_id) == 0) {
                return 1;
            }
        }
    }
    return 0;
}

/* The one creator of v1-v11: content.creator (v1-v10) or the sender (v11). */
static const char *single_creator(const rules_t *r, const json_t *create)
{
    if (create == NULL) {
        return NULL;
    }
    return r->creator_is_sender ? jstr(create, "sender") : jstr(jobj(create, "content"), "creator");
}

static mxf_auth_level_t user_level(const rules_t *r, const json_t *pl, const json_t *create,
                                   const char *user_id)
{
    const json_t *content;
    mxf_auth_level_t inf;

    if (r->creators && is_v12_creator(create, user_id)) {
        inf.value = 0;
        inf.infinite = 1;
        return inf;
    }
    if (pl) {
        content = jobj(pl, "content");
        return lvl_finite(level_or(r, jobj(content, "users"), user_id,
                               level_or(r, content, "users_default", 0)));
    }
    return lvl_finite(streq(single_creator(r, create), user_id) ? 100 : 0);
}

mxf_auth_level_t mxf_auth_user_level(const mxf_roomver_t *rv, const json_t *pl,
                                     const json_t *create, const char *user_id)
{
    rules_t r = rules_for(rv);

    return user_level(&r, pl, create, user_id);
}

/* ------------------------------------------------------------------------
 * The check.
 */
typedef struct ctx {
    apr_pool_t *p;
    const mxf_roomver_t *rv;
    rules_t r;
    mxf_auth_state_fn *lookup;
    void *baton;
    const json_t *ev;
    const char *type, *sender, *state_key;
    const json_t *content;
    const json_t *create;       /* the room's m.room.create */
    const char *create_id;
    const json_t *pl;           /* current m.room.power_levels or NULL */
    const char **why;
} ctx_t;

static apr_status_t reject(ctx_t *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static apr_status_t reject(ctx_t *c, const char *fmt, ...)
{
    va_list ap;

    if (c->why) {
        va_start(ap, fmt);
        *c->why = apr_pvsprintf(c->p, fmt, ap);
        va_end(ap);
    }
    return MXF_AUTH_REJECTED;
}

static const json_t *state(ctx_t *c, const char *type, const char *sk)
{
    const char *id = NULL;

    return (sk && c->lookup) ? c->lookup(c->baton, type, sk, &id) : NULL;
}

/* The membership of @a user in the state ("join", ...), or NULL when none. */
static const char *membership_of(ctx_t *c, const char *user)
{
    return jstr(jobj(state(c, T_MEMBER, user), "content"), "membership");
}

static mxf_auth_level_t level_of(ctx_t *c, const char *user)
{
    return user_level(&c->r, c->pl, c->create, user);
}

/* invite (0), kick / ban / redact (50) from the current power levels. */
static apr_int64_t named_level(ctx_t *c, const char *name)
{
    apr_int64_t def = strcmp(name, "invite") == 0 ? 0 : 50;

    return c->pl ? level_or(&c->r, jobj(c->pl, "content"), name, def) : def;
}

/* The event type's required power level. */
static apr_int64_t required_level(ctx_t *c)
{
    const json_t *content = c->pl ? jobj(c->pl, "content") : NULL;
    apr_int64_t def = c->state_key ? level_or(&c->r, content, "state_default", 50)
                                   : level_or(&c->r, content, "events_default", 0);

    return level_or(&c->r, jobj(content, "events"), c->type, def);
}

/* Rule 1: m.room.create. */
static apr_status_t check_create(ctx_t *c)
{
    const json_t *prev = json_object_get(c->ev, "prev_events");
    const json_t *ver = json_object_get(c->content, "room_version");
    const json_t *more;
    size_t i;

    if (json_is_array(prev) && json_array_size(prev) > 0) {
        return reject(c, "m.room.create has prev_events");
    }
    if (c->r.create_names_room) {
        if (json_object_get(c->ev, "room_id")) {
            return reject(c, "m.room.create has a room_id (v12: the room ID is its event ID)");
        }
    }
    else {
        const char *rd = domain_of(c->p, jstr(c->ev, "room_id"));
        if (rd == NULL || !streq(rd, domain_of(c->p, c->sender))) {
            return reject(c, "m.room.create: the room ID's domain is not the sender's");
        }
    }
    if (ver && !(json_is_string(ver) && mxf_roomver_get(json_string_value(ver)))) {
        return reject(c, "m.room.create: content.room_version is not a known room version");
    }
    if (c->r.create_needs_creator && !json_object_get(c->content, "creator")) {
        return reject(c, "m.room.create has no content.creator");
    }
    if (c->r.creators && (more = json_object_get(c->content, "additional_creators"))) {
        if (!json_is_array(more)) {
            return reject(c, "m.room.create: additional_creators is not an array");
        }
        for (i = 0; i < json_array_size(more); i++) {
            const json_t *u = json_array_get(more, i);
            if (!json_is_string(u)
                || !mxf_id_user_valid(json_string_value(u), json_string_length(u))) {
                return reject(c, "m.room.create: additional_creators holds an invalid user ID");
            }
        }
    }
    return APR_SUCCESS;
}

/* Rule 5.4.1.7: a signature in @a signed by any key of the third-party invite. */
static int tpi_signature_ok(ctx_t *c, const json_t *signed_, const json_t *tpi)
{
    const json_t *tc = jobj(tpi, "content");
    const json_t *sigs = jobj(signed_, "signatures");
    const json_t *keys = json_object_get(tc, "public_keys");
    apr_array_header_t *pks = apr_array_make(c->p, 2, sizeof(const char *));
    const char *server, *key_id, *pk_b64;
    const json_t *per_server, *sig;
    unsigned char pk[MXF_ED25519_PK_BYTES];
    int i;
    size_t k;

    if (sigs == NULL) {
        return 0;
    }
    if ((pk_b64 = jstr(tc, "public_key")) != NULL) {
        APR_ARRAY_PUSH(pks, const char *) = pk_b64;
    }
    if (json_is_array(keys)) {
        for (k = 0; k < json_array_size(keys); k++) {
            if ((pk_b64 = jstr(json_array_get(keys, k), "public_key")) != NULL) {
                APR_ARRAY_PUSH(pks, const char *) = pk_b64;
            }
        }
    }
    for (i = 0; i < pks->nelts; i++) {
        pk_b64 = APR_ARRAY_IDX(pks, i, const char *);
        if (mxf_b64_decode_exact(pk_b64, strlen(pk_b64), MXF_B64_ANY, pk, sizeof(pk))
            != APR_SUCCESS) {
            continue;
        }
        json_object_foreach((json_t *)sigs, server, per_server) {
            if (!json_is_object(per_server)) {
                continue;
            }
            json_object_foreach((json_t *)per_server, key_id, sig) {
                const char *vwhy;
                /* Signatures of algorithms other than ed25519 are set aside
                 * (appendices, "Checking for a Signature"; Synapse too). */
                if (!mxf_id_key_id_is_ed25519(key_id)) {
                    continue;
                }
                if (mxf_verify_json(c->p, signed_, server, key_id, pk, &vwhy) == APR_SUCCESS) {
                    return 1;
                }
            }
        }
    }
    return 0;
}

/* Rule 5 (v6-v11: 4): m.room.member. */
static apr_status_t check_member(ctx_t *c)
{
    const char *target = c->state_key;
    const char *membership = jstr(c->content, "membership");
    const char *sender_m, *target_m, *jr;
    int self = streq(c->sender, target);

    if (target == NULL || membership == NULL) {
        return reject(c, "m.room.member without state_key or content.membership");
    }
    target_m = membership_of(c, target);
    sender_m = self ? target_m : membership_of(c, c->sender);
    {
        /* No join rules event, or one without join_rule: "invite", as the
         * reference homeserver reads it (a value that is no string stays none). */
        const json_t *jr_content = jobj(state(c, T_JR, ""), "content");
        jr = json_object_get(jr_content, "join_rule") ? jstr(jr_content, "join_rule")
                                                      : "invite";
    }

    if (strcmp(membership, "join") == 0) {
        apr_array_header_t *prev = mxf_auth_event_refs(c->p, c->ev, "prev_events");
        const char *creator = single_creator(&c->r, c->create);

        /* 5.3.1 the creator's first join, right after m.room.create */
        if (prev->nelts == 1 && streq(APR_ARRAY_IDX(prev, 0, const char *), c->create_id)
            && streq(target, creator)) {
            return APR_SUCCESS;
        }
        if (!self) {
            return reject(c, "join: sender is not the state_key");
        }
        if (streq(target_m, "ban")) {
            return reject(c, "join: the sender is banned");
        }
        if (streq(jr, "invite") || (c->r.knock && streq(jr, "knock"))) {
            if (streq(target_m, "invite") || streq(target_m, "join")) {
                return APR_SUCCESS;
            }
            return reject(c, "join: join rule \"%s\" and the sender is not invited", jr);
        }
        if ((c->r.restricted && streq(jr, "restricted"))
            || (c->r.knock_restricted && streq(jr, "knock_restricted"))) {
            const char *via = jstr(c->content, "join_authorised_via_users_server");
            if (streq(target_m, "invite") || streq(target_m, "join")) {
                return APR_SUCCESS;
            }
            if (via == NULL) {
                return reject(c, "restricted join without join_authorised_via_users_server");
            }
            if (!streq(membership_of(c, via), "join")) {
                return reject(c, "restricted join: the authorising user is not joined");
            }
            if (!level_ge(level_of(c, via), named_level(c, "invite"))) {
                return reject(c, "restricted join: the authorising user may not invite");
            }
            return APR_SUCCESS;
        }
        if (streq(jr, "public")) {
            return APR_SUCCESS;
        }
        return reject(c, "join: join rule is \"%s\"", jr ? jr : "(none)");
    }

    if (strcmp(membership, "invite") == 0) {
        const json_t *tpi_c = json_object_get(c->content, "third_party_invite");
        if (tpi_c) {
            const json_t *signed_ = jobj(tpi_c, "signed");
            const char *mxid = jstr(signed_, "mxid"), *token = jstr(signed_, "token");
            const json_t *tpi;
            if (streq(target_m, "ban")) {
                return reject(c, "third-party invite: the target is banned");
            }
            if (signed_ == NULL) {
                return reject(c, "third-party invite without \"signed\"");
            }
            if (mxid == NULL || token == NULL) {
                return reject(c, "third-party invite: \"signed\" lacks mxid or token");
            }
            if (strcmp(mxid, target) != 0) {
                return reject(c, "third-party invite: mxid is not the state_key");
            }
            if ((tpi = state(c, T_TPI, token)) == NULL) {
                return reject(c, "third-party invite: no m.room.third_party_invite for the token");
            }
            if (!streq(jstr(tpi, "sender"), c->sender)) {
                return reject(c, "third-party invite: sender differs from the "
                              "m.room.third_party_invite's");
            }
            if (tpi_signature_ok(c, signed_, tpi)) {
                return APR_SUCCESS;
            }
            return reject(c, "third-party invite: no signature by the invite's public keys");
        }
        if (!streq(sender_m, "join")) {
            return reject(c, "invite: the sender is not joined");
        }
        if (streq(target_m, "join") || streq(target_m, "ban")) {
            return reject(c, "invite: the target is %s", target_m);
        }
        if (level_ge(level_of(c, c->sender), named_level(c, "invite"))) {
            return APR_SUCCESS;
        }
        return reject(c, "invite: the sender's power level is below the invite level");
    }

    if (strcmp(membership, "leave") == 0) {
        mxf_auth_level_t sl;
        if (self) {
            if (streq(target_m, "invite") || streq(target_m, "join")
                || (c->r.knock && streq(target_m, "knock"))) {
                return APR_SUCCESS;
            }
            return reject(c, "leave: the sender's membership is %s",
                          target_m ? target_m : "(none)");
        }
        if (!streq(sender_m, "join")) {
            return reject(c, "kick: the sender is not joined");
        }
        sl = level_of(c, c->sender);
        if (streq(target_m, "ban") && !level_ge(sl, named_level(c, "ban"))) {
            return reject(c, "unban: the sender's power level is below the ban level");
        }
        if (level_ge(sl, named_level(c, "kick"))
            && mxf_auth_level_cmp(level_of(c, target), sl) < 0) {
            return APR_SUCCESS;
        }
        return reject(c, "kick: not enough power");
    }

    if (strcmp(membership, "ban") == 0) {
        mxf_auth_level_t sl;
        if (!streq(sender_m, "join")) {
            return reject(c, "ban: the sender is not joined");
        }
        sl = level_of(c, c->sender);
        if (level_ge(sl, named_level(c, "ban"))
            && mxf_auth_level_cmp(level_of(c, target), sl) < 0) {
            return APR_SUCCESS;
        }
        return reject(c, "ban: not enough power");
    }

    if (c->r.knock && strcmp(membership, "knock") == 0) {
        if (!streq(jr, "knock") && !(c->r.knock_restricted && streq(jr, "knock_restricted"))) {
            return reject(c, "knock: the join rule does not allow knocking");
        }
        if (!self) {
            return reject(c, "knock: sender is not the state_key");
        }
        if (streq(target_m, "ban") || streq(target_m, "invite") || streq(target_m, "join")) {
            return reject(c, "knock: the sender is %s", target_m);
        }
        return APR_SUCCESS;
    }
    return reject(c, "unknown membership \"%s\"", membership);
}

/* Whether @a v is an object whose values are all levels. */
static int levels_object(const rules_t *r, const json_t *v, int user_keys)
{
    const char *k;
    const json_t *x;
    apr_int64_t n;

    if (!json_is_object(v)) {
        return 0;
    }
    json_object_foreach((json_t *)v, k, x) {
        if (!level_value(r, x, &n)) {
            return 0;
        }
        if (user_keys && !mxf_id_user_valid(k, strlen(k))) {
            return 0;
        }
    }
    return 1;
}

static const char *const top_levels[] = {
    "users_default", "events_default", "state_default", "ban", "redact", "kick", "invite", NULL
};

/* Compares one level of the old and new content: 10.6 - 10.10. */
static apr_status_t pl_change(ctx_t *c, const json_t *old_o, const json_t *new_o,
                              const char *key, int is_user, mxf_auth_level_t sl)
{
    apr_int64_t ov = 0, nv = 0;
    const json_t *oj = json_is_object(old_o) ? json_object_get(old_o, key) : NULL;
    const json_t *nj = json_is_object(new_o) ? json_object_get(new_o, key) : NULL;
    int has_o = oj && level_value(&c->r, oj, &ov);
    int has_n = nj && level_value(&c->r, nj, &nv);

    if (has_o && has_n && ov == nv) {
        return APR_SUCCESS;
    }
    if (is_user && has_o && !streq(key, c->sender) && mxf_auth_level_cmp(lvl_finite(ov), sl) >= 0) {
        return reject(c, "power levels: may not change the level of %s, not below the sender's", key);
    }
    if (has_o && !level_ge(sl, ov)) {
        return reject(c, "power levels: %s is above the sender's level", key);
    }
    if (has_n && !level_ge(sl, nv)) {
        return reject(c, "power levels: new %s is above the sender's level", key);
    }
    return APR_SUCCESS;
}

/* The changes of one nested object (users, events, notifications). */
static apr_status_t pl_changes(ctx_t *c, const json_t *old_o, const json_t *new_o,
                               int is_user, mxf_auth_level_t sl)
{
    const char *k;
    const json_t *x;
    apr_status_t rv;

    if (json_is_object(old_o)) {
        json_object_foreach((json_t *)old_o, k, x) {
            if ((rv = pl_change(c, old_o, new_o, k, is_user, sl)) != APR_SUCCESS) {
                return rv;
            }
        }
    }
    if (json_is_object(new_o)) {
        json_object_foreach((json_t *)new_o, k, x) {
            if (json_is_object(old_o) && json_object_get(old_o, k)) {
                continue;   /* done above */
            }
            if ((rv = pl_change(c, old_o, new_o, k, is_user, sl)) != APR_SUCCESS) {
                return rv;
            }
        }
    }
    return APR_SUCCESS;
}

/* Rule 10 (v6-v11: 9): m.room.power_levels. */
static apr_status_t check_power_levels(ctx_t *c)
{
    const json_t *users = json_object_get(c->content, "users");
    const json_t *old, *oc;
    mxf_auth_level_t sl;
    apr_int64_t n;
    apr_status_t rv;
    int i;

    /*
     * 10.1, 10.2: v10+ only. Before v10 the rules check users alone (10.3);
     * a level that is not an integer (or a string of one) is read as its
     * default wherever it is used (level_or()). (The reference homeserver's
     * int() raises on such a level and drops the event, which the rules do
     * not ask for: README.)
     */
    for (i = 0; c->r.int_levels && top_levels[i]; i++) {
        const json_t *v = json_object_get(c->content, top_levels[i]);
        if (v && !level_value(&c->r, v, &n)) {
            return reject(c, "power levels: %s is not an integer", top_levels[i]);
        }
    }
    if (c->r.int_levels && json_object_get(c->content, "events")
        && !levels_object(&c->r, json_object_get(c->content, "events"), 0)) {
        return reject(c, "power levels: events is not an object of integers");
    }
    if (c->r.int_levels && c->r.notifications && json_object_get(c->content, "notifications")
        && !levels_object(&c->r, json_object_get(c->content, "notifications"), 0)) {
        return reject(c, "power levels: notifications is not an object of integers");
    }
    /* 10.3 */
    if (users && !levels_object(&c->r, users, 1)) {
        return reject(c, "power levels: users is not an object of user IDs to integers");
    }
    /* 10.4 v12: creators are not listed */
    if (c->r.creators && users) {
        const char *k;
        const json_t *x;
        json_object_foreach((json_t *)users, k, x) {
            if (is_v12_creator(c->create, k)) {
                return reject(c, "power levels: users lists the room creator %s", k);
            }
        }
    }
    /* 10.5 */
    if ((old = c->pl) == NULL) {
        return APR_SUCCESS;
    }
    oc = jobj(old, "content");
    sl = level_of(c, c->sender);
    /* 10.6 */
    for (i = 0; top_levels[i]; i++) {
        if ((rv = pl_change(c, oc, c->content, top_levels[i], 0, sl)) != APR_SUCCESS) {
            return rv;
        }
    }
    /* 10.7, 10.8 */
    if ((rv = pl_changes(c, jobj(oc, "events"), jobj(c->content, "events"), 0, sl))
        != APR_SUCCESS) {
        return rv;
    }
    if (c->r.notifications
        && (rv = pl_changes(c, jobj(oc, "notifications"), jobj(c->content, "notifications"),
                            0, sl)) != APR_SUCCESS) {
        return rv;
    }
    /* 10.9, 10.10 */
    return pl_changes(c, jobj(oc, "users"), jobj(c->content, "users"), 1, sl);
}

apr_status_t mxf_auth_check(apr_pool_t *p, const mxf_roomver_t *rv, const json_t *event,
                            mxf_auth_state_fn *lookup, void *baton, const char **why)
{
    ctx_t c;
    const json_t *cc;
    const char *room_id;

    memset(&c, 0, sizeof(c));
    c.p = p;
    c.rv = rv;
    c.r = rules_for(rv);
    c.lookup = lookup;
    c.baton = baton;
    c.ev = event;
    c.why = why;
    c.type = jstr(event, "type");
    c.sender = jstr(event, "sender");
    c.state_key = jstr(event, "state_key");
    c.content = jobj(event, "content");
    room_id = jstr(event, "room_id");
    if (c.type == NULL || c.sender == NULL || c.content == NULL
        || (json_object_get(event, "state_key") && c.state_key == NULL)) {
        return reject(&c, "malformed event (type, sender, content or state_key)");
    }

    /* 1 */
    if (strcmp(c.type, T_CREATE) == 0) {
        return check_create(&c);
    }

    /* v12 rule 2 / v1-v11 rule 2.4: the room's m.room.create */
    c.create = lookup ? lookup(baton, T_CREATE, "", &c.create_id) : NULL;
    if (c.create == NULL) {
        return reject(&c, "no m.room.create event in the state");
    }
    if (c.create_id == NULL) {
        c.create_id = jstr(c.create, "event_id");   /* v1, v2 carry it */
    }
    if (c.r.create_names_room) {
        const char *want = mxf_auth_create_id(p, room_id);
        if (c.create_id == NULL) {
            c.create_id = want;
        }
        if (want == NULL || !streq(c.create_id, want)) {
            return reject(&c, "the room ID does not name the room's m.room.create");
        }
    }
    else if (!streq(jstr(c.create, "room_id"), room_id)) {
        return reject(&c, "m.room.create belongs to another room");
    }

    /* 3 (v12: 4) m.federate */
    cc = json_object_get(jobj(c.create, "content"), "m.federate");
    if (json_is_false(cc)
        && !streq(domain_of(p, c.sender), domain_of(p, jstr(c.create, "sender")))) {
        return reject(&c, "the room is not federated and the sender is from another server");
    }

    /* 4 (v1-v5) m.room.aliases */
    if (c.r.aliases_rule && strcmp(c.type, T_ALIAS) == 0) {
        if (c.state_key == NULL) {
            return reject(&c, "m.room.aliases without state_key");
        }
        if (!streq(domain_of(p, c.sender), c.state_key)) {
            return reject(&c, "m.room.aliases: state_key is not the sender's domain");
        }
        return APR_SUCCESS;
    }

    c.pl = state(&c, T_PL, "");

    /* 5 m.room.member */
    if (strcmp(c.type, T_MEMBER) == 0) {
        return check_member(&c);
    }

    /* 6 */
    if (!streq(membership_of(&c, c.sender), "join")) {
        return reject(&c, "the sender is not joined to the room");
    }

    /* 7 m.room.third_party_invite */
    if (strcmp(c.type, T_TPI) == 0) {
        if (level_ge(level_of(&c, c.sender), named_level(&c, "invite"))) {
            return APR_SUCCESS;
        }
        return reject(&c, "m.room.third_party_invite: below the invite level");
    }

    /* 8 */
    if (!level_ge(level_of(&c, c.sender), required_level(&c))) {
        return reject(&c, "the sender's power level is below the level required for %s",
                      c.type);
    }

    /* 9 */
    if (c.state_key && c.state_key[0] == '@' && strcmp(c.state_key, c.sender) != 0) {
        return reject(&c, "state_key starts with @ and is not the sender");
    }

    /* 10 */
    if (strcmp(c.type, T_PL) == 0) {
        return check_power_levels(&c);
    }

    /* 11 (v1, v2) m.room.redaction */
    if (c.r.redaction_rule && strcmp(c.type, T_REDACT) == 0) {
        const char *rd;
        if (level_ge(level_of(&c, c.sender), named_level(&c, "redact"))) {
            return APR_SUCCESS;
        }
        rd = domain_of(p, jstr(event, "redacts"));
        if (rd && streq(rd, domain_of(p, jstr(event, "event_id")))) {
            return APR_SUCCESS;
        }
        return reject(&c, "m.room.redaction: below the redact level and another server's event");
    }

    return APR_SUCCESS;
}

/* ------------------------------------------------------------------------
 * Auth events selection.
 */
static void add_key(apr_array_header_t *a, const char *type, const char *sk)
{
    int i;
    mxf_auth_key_t *k;

    if (sk == NULL) {
        return;
    }
    for (i = 0; i < a->nelts; i++) {
        k = &APR_ARRAY_IDX(a, i, mxf_auth_key_t);
        if (strcmp(k->type, type) == 0 && strcmp(k->state_key, sk) == 0) {
            return;
        }
    }
    k = apr_array_push(a);
    k->type = type;
    k->state_key = sk;
}

apr_array_header_t *mxf_auth_selection(apr_pool_t *p, const mxf_roomver_t *rv,
                                       const json_t *event)
{
    apr_array_header_t *a = apr_array_make(p, 6, sizeof(mxf_auth_key_t));
    const char *type = jstr(event, "type");
    const json_t *content = jobj(event, "content");
    const char *membership;

    if (type == NULL || strcmp(type, T_CREATE) == 0) {
        return a;
    }
    if (!rv->room_id_is_create_hash) {
        add_key(a, T_CREATE, "");
    }
    add_key(a, T_PL, "");
    add_key(a, T_MEMBER, jstr(event, "sender"));
    if (strcmp(type, T_MEMBER) == 0) {
        membership = jstr(content, "membership");
        add_key(a, T_MEMBER, jstr(event, "state_key"));
        if (streq(membership, "join") || streq(membership, "invite")
            || (rv->knock && streq(membership, "knock"))) {
            add_key(a, T_JR, "");
        }
        if (streq(membership, "invite")) {
            add_key(a, T_TPI, jstr(jobj(jobj(content, "third_party_invite"), "signed"), "token"));
        }
        if (rv->restricted && streq(membership, "join")) {
            add_key(a, T_MEMBER, jstr(content, "join_authorised_via_users_server"));
        }
    }
    return a;
}

apr_status_t mxf_auth_check_auth_events(apr_pool_t *p, const mxf_roomver_t *rv,
                                        const json_t *event, const json_t *const *auth,
                                        apr_size_t nauth, const char **why)
{
    apr_array_header_t *sel = mxf_auth_selection(p, rv, event);
    apr_hash_t *seen = apr_hash_make(p);
    const char *room_id = jstr(event, "room_id");
    int have_create = 0, i;
    apr_size_t n;

    for (n = 0; n < nauth; n++) {
        const char *type = jstr(auth[n], "type"), *sk = jstr(auth[n], "state_key");
        const char *key;
        int ok = 0;

        if (type == NULL || sk == NULL) {
            *why = "an auth event is not a state event";
            return MXF_AUTH_REJECTED;
        }
        key = apr_pstrcat(p, type, "|", sk, NULL);
        if (apr_hash_get(seen, key, APR_HASH_KEY_STRING)) {
            *why = apr_psprintf(p, "auth_events hold two events for (%s, %s)", type, sk);
            return MXF_AUTH_REJECTED;
        }
        apr_hash_set(seen, key, APR_HASH_KEY_STRING, key);
        for (i = 0; i < sel->nelts && !ok; i++) {
            const mxf_auth_key_t *k = &APR_ARRAY_IDX(sel, i, mxf_auth_key_t);
            ok = strcmp(k->type, type) == 0 && strcmp(k->state_key, sk) == 0;
        }
        if (!ok) {
            *why = apr_psprintf(p, "auth event (%s, %s) is not one the auth events "
                                "selection allows", type, sk);
            return MXF_AUTH_REJECTED;
        }
        if (strcmp(type, T_CREATE) == 0) {
            have_create = 1;
        }
        if (!(rv->room_id_is_create_hash && strcmp(type, T_CREATE) == 0)
            && !streq(jstr(auth[n], "room_id"), room_id)) {
            *why = apr_psprintf(p, "auth event (%s, %s) is from another room", type, sk);
            return MXF_AUTH_REJECTED;
        }
    }
    if (!rv->room_id_is_create_hash && !have_create && !streq(jstr(event, "type"), T_CREATE)) {
        *why = "auth_events hold no m.room.create";
        return MXF_AUTH_REJECTED;
    }
    return APR_SUCCESS;
}
