/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#include <stdio.h>
#include <string.h>

#include <apr_file_io.h>
#include <apr_hash.h>
#include <apr_strings.h>

#include "mxf_base64.h"
#include "mxf_cmd.h"
#include "mxf_cmd_pg.h"
#include "mxf_json.h"
#include "mxf_keystore.h"
#include "mxf_sign.h"

typedef struct known_key {
    unsigned char pk[MXF_ED25519_PK_BYTES];
    apr_int64_t valid_until_ts;
    apr_int64_t expired_ts;             /* 0: not expired */
} known_key_t;

struct mxf_keystore {
    apr_pool_t *p;
    PGconn *conn;
    apr_hash_t *keys;                   /* "server\x1fkey_id" -> known_key_t */
};

static const char *key_of(apr_pool_t *p, const char *server, const char *key_id)
{
    return apr_pstrcat(p, server, "\x1f", key_id, NULL);
}

mxf_keystore_t *mxf_keystore_open(apr_pool_t *p, PGconn *conn)
{
    mxf_keystore_t *ks = apr_pcalloc(p, sizeof(*ks));
    PGresult *res;
    int i;

    ks->p = p;
    ks->conn = conn;
    ks->keys = apr_hash_make(p);
    res = PQexec(conn, "SELECT server_name, key_id, encode(public_key, 'base64'),"
                       " valid_until_ts, coalesce(expired_ts, 0) FROM mxf_server_keys");
    if (!mxf_pg_ok(res, "reading server keys")) {
        return NULL;
    }
    for (i = 0; i < PQntuples(res); i++) {
        known_key_t *k = apr_pcalloc(p, sizeof(*k));
        const char *b64 = PQgetvalue(res, i, 2);
        if (mxf_b64_decode_exact(b64, strlen(b64), MXF_B64_STANDARD, k->pk,
                                 sizeof(k->pk)) != APR_SUCCESS) {
            continue;
        }
        k->valid_until_ts = apr_atoi64(PQgetvalue(res, i, 3));
        k->expired_ts = apr_atoi64(PQgetvalue(res, i, 4));
        apr_hash_set(ks->keys, key_of(p, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1)),
                     APR_HASH_KEY_STRING, k);
    }
    PQclear(res);
    return ks;
}

apr_status_t mxf_keystore_lookup(mxf_keystore_t *ks, const char *server, const char *key_id,
                                 apr_int64_t ts, int enforce_validity,
                                 unsigned char pk[MXF_ED25519_PK_BYTES])
{
    char buf[600];
    known_key_t *k;

    apr_snprintf(buf, sizeof(buf), "%s\x1f%s", server, key_id);
    k = apr_hash_get(ks->keys, buf, APR_HASH_KEY_STRING);
    if (!k || (k->expired_ts && ts > k->expired_ts)
        || (enforce_validity && k->valid_until_ts < ts)) {
        return APR_NOTFOUND;
    }
    memcpy(pk, k->pk, MXF_ED25519_PK_BYTES);
    return APR_SUCCESS;
}

static int store_key(mxf_keystore_t *ks, const char *server, const char *key_id,
                     const known_key_t *k)
{
    char valid[32], expired[32], now[32];
    const char *params[6];

    apr_snprintf(valid, sizeof(valid), "%" APR_INT64_T_FMT, k->valid_until_ts);
    apr_snprintf(expired, sizeof(expired), "%" APR_INT64_T_FMT, k->expired_ts);
    apr_snprintf(now, sizeof(now), "%" APR_INT64_T_FMT, apr_time_as_msec(apr_time_now()));
    params[0] = server;
    params[1] = key_id;
    {
        static const char hexdigits[] = "0123456789abcdef";
        char *hex = apr_palloc(ks->p, 2 * sizeof(k->pk) + 1);
        apr_size_t i;
        for (i = 0; i < sizeof(k->pk); i++) {
            hex[2 * i] = hexdigits[k->pk[i] >> 4];
            hex[2 * i + 1] = hexdigits[k->pk[i] & 15];
        }
        hex[2 * sizeof(k->pk)] = '\0';
        params[2] = hex;
    }
    params[3] = valid;
    params[4] = k->expired_ts ? expired : NULL;
    params[5] = now;
    return mxf_pg_params(ks->conn,
                         "INSERT INTO mxf_server_keys (server_name, key_id, public_key,"
                         "  valid_until_ts, expired_ts, source, fetched_ts)"
                         " VALUES ($1, $2, decode($3, 'hex'), $4::bigint, $5::bigint,"
                         "  'file', $6::bigint)"
                         " ON CONFLICT (server_name, key_id) DO UPDATE"
                         "  SET public_key = EXCLUDED.public_key,"
                         "      valid_until_ts = greatest(mxf_server_keys.valid_until_ts,"
                         "                                EXCLUDED.valid_until_ts),"
                         "      expired_ts = EXCLUDED.expired_ts, source = EXCLUDED.source,"
                         "      fetched_ts = EXCLUDED.fetched_ts", 6, params);
}

/*
 * Keeps the verified response for the module's notary endpoints: the latest
 * one stored (after a key rotation, the new document).
 */
static int store_response(mxf_keystore_t *ks, const char *server, const json_t *resp,
                          apr_int64_t valid_until_ts)
{
    char valid[32], now[32];
    const char *params[4];

    apr_snprintf(valid, sizeof(valid), "%" APR_INT64_T_FMT, valid_until_ts);
    apr_snprintf(now, sizeof(now), "%" APR_INT64_T_FMT, apr_time_as_msec(apr_time_now()));
    params[0] = server;
    params[1] = mxf_json_dump(ks->p, resp, NULL);
    params[2] = valid;
    params[3] = now;
    if (!params[1]) {
        mxf_cmd_error("the key response of %s cannot be encoded", server);
        return 0;
    }
    return mxf_pg_params(ks->conn,
                         "INSERT INTO mxf_server_key_responses (server_name, response,"
                         "  valid_until_ts, fetched_ts) VALUES ($1, $2, $3::bigint, $4::bigint)"
                         " ON CONFLICT (server_name) DO UPDATE"
                         "  SET response = EXCLUDED.response,"
                         "      valid_until_ts = EXCLUDED.valid_until_ts,"
                         "      fetched_ts = EXCLUDED.fetched_ts"
                         "  WHERE EXCLUDED.fetched_ts"
                         "        >= mxf_server_key_responses.fetched_ts", 4, params);
}

static int decode_key(const json_t *entry, unsigned char pk[MXF_ED25519_PK_BYTES])
{
    const char *b64 = json_string_value(json_object_get(entry, "key"));

    return b64 && mxf_b64_decode_exact(b64, strlen(b64), MXF_B64_STANDARD, pk,
                                       MXF_ED25519_PK_BYTES) == APR_SUCCESS;
}

/* One /_matrix/key/v2/server response. */
static int add_response(mxf_keystore_t *ks, const char *path, const json_t *resp)
{
    const char *server = json_string_value(json_object_get(resp, "server_name"));
    const json_t *verify = json_object_get(resp, "verify_keys");
    const json_t *old = json_object_get(resp, "old_verify_keys");
    const json_t *valid = json_object_get(resp, "valid_until_ts");
    const char *key_id, *why = NULL;
    json_t *entry;

    if (!server || !json_is_object(verify) || json_object_size(verify) == 0
        || !json_is_integer(valid)) {
        mxf_cmd_error("%s: not a key server response (server_name, verify_keys, "
                      "valid_until_ts)", path);
        return 0;
    }
    /* Every current key must have signed the response. */
    json_object_foreach((json_t *)verify, key_id, entry) {
        known_key_t k;
        memset(&k, 0, sizeof(k));
        if (!decode_key(entry, k.pk)) {
            mxf_cmd_error("%s: %s key %s is not base64 of 32 bytes", path, server, key_id);
            return 0;
        }
        if (mxf_verify_json(ks->p, resp, server, key_id, k.pk, &why) != APR_SUCCESS) {
            mxf_cmd_error("%s: the response of %s is not signed by %s: %s", path, server,
                          key_id, why);
            return 0;
        }
    }
    json_object_foreach((json_t *)verify, key_id, entry) {
        known_key_t *k = apr_pcalloc(ks->p, sizeof(*k));
        decode_key(entry, k->pk);
        k->valid_until_ts = json_integer_value(valid);
        apr_hash_set(ks->keys, key_of(ks->p, server, key_id), APR_HASH_KEY_STRING, k);
        if (!store_key(ks, server, key_id, k)) {
            return 0;
        }
    }
    if (!store_response(ks, server, resp, json_integer_value(valid))) {
        return 0;
    }
    if (json_is_object(old)) {
        json_object_foreach((json_t *)old, key_id, entry) {
            known_key_t *k = apr_pcalloc(ks->p, sizeof(*k));
            if (!decode_key(entry, k->pk)
                || !json_is_integer(json_object_get(entry, "expired_ts"))) {
                mxf_cmd_error("%s: old key %s of %s is malformed", path, key_id, server);
                return 0;
            }
            k->expired_ts = json_integer_value(json_object_get(entry, "expired_ts"));
            k->valid_until_ts = k->expired_ts;
            apr_hash_set(ks->keys, key_of(ks->p, server, key_id), APR_HASH_KEY_STRING, k);
            if (!store_key(ks, server, key_id, k)) {
                return 0;
            }
        }
    }
    return 1;
}

int mxf_keystore_add_file(mxf_keystore_t *ks, const char *path)
{
    char *text;
    apr_size_t len;
    apr_file_t *f;
    apr_finfo_t fi;
    json_t *doc;
    const char *why = NULL;
    size_t i;

    if (apr_file_open(&f, path, APR_FOPEN_READ, APR_FPROT_OS_DEFAULT, ks->p) != APR_SUCCESS
        || apr_file_info_get(&fi, APR_FINFO_SIZE, f) != APR_SUCCESS) {
        mxf_cmd_error("cannot read key file %s", path);
        return 0;
    }
    len = (apr_size_t)fi.size;
    text = apr_palloc(ks->p, len + 1);
    if (apr_file_read_full(f, text, len, &len) != APR_SUCCESS && len != (apr_size_t)fi.size) {
        mxf_cmd_error("cannot read key file %s", path);
        apr_file_close(f);
        return 0;
    }
    apr_file_close(f);
    text[len] = '\0';
    if (mxf_json_parse(ks->p, text, len, MXF_JSON_ANY, &doc, &why) == APR_SUCCESS) {
        if (json_is_object(doc) && json_is_array(json_object_get(doc, "server_keys"))) {
            /* A notary's /_matrix/key/v2/query answer. */
            doc = json_object_get(doc, "server_keys");
        }
        else if (json_is_object(doc)) {
            return add_response(ks, path, doc);
        }
        if (json_is_array(doc)) {
            json_t *item;
            json_array_foreach(doc, i, item) {
                if (!add_response(ks, path, item)) {
                    return 0;
                }
            }
            return 1;
        }
        mxf_cmd_error("%s: expected key server responses", path);
        return 0;
    }
    /* One response per line. */
    {
        char *line = text, *nl;
        long no = 0;
        for (; *line; line = nl ? nl + 1 : line + strlen(line)) {
            nl = strchr(line, '\n');
            no++;
            if (nl) {
                *nl = '\0';
            }
            if (!*line) {
                if (!nl) break;
                continue;
            }
            if (mxf_json_parse(ks->p, line, strlen(line), 0, &doc, &why) != APR_SUCCESS) {
                mxf_cmd_error("%s:%ld: %s", path, no, why);
                return 0;
            }
            if (!add_response(ks, path, doc)) {
                return 0;
            }
            if (!nl) {
                break;
            }
        }
    }
    return 1;
}
