/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#include "mod_matrix_fed_private.h"

#include <sys/stat.h>
#include <errno.h>
#include <string.h>

#include <apr_global_mutex.h>
#include <apr_hash.h>
#include <apr_strings.h>
#include <apr_thread_mutex.h>
#include <ap_provider.h>
#include <ap_socache.h>
#include <http_core.h>
#include <http_protocol.h>
#include <util_mutex.h>

#include "mxf_base64.h"
#include "mxf_error.h"
#include "mxf_id.h"
#include "mxf_iprange.h"
#include "mxf_serverkeys.h"
#include "mxf_sign.h"
#include "mod_matrix_fed_config.h"
#include "mod_matrix_fed_db.h"
#include "mod_matrix_fed_http.h"
#include "mod_matrix_fed_keyfetch.h"
#include "mod_matrix_fed_keys.h"
#include "mod_matrix_fed_router.h"

#define UNSET (-1)
#define MUTEX_TYPE "matrix-fed-keys"
/* Most entries of the per-process cache before it is emptied. */
#define LOCAL_MAX 4096
/* Cached keys are re-read from the table at least this often. */
#define CACHE_MAX_AGE apr_time_from_sec(3600)

/* ================================================================ config */

mxf_keys_conf_t *mxf_keys_conf_create(apr_pool_t *p)
{
    mxf_keys_conf_t *kc = apr_pcalloc(p, sizeof(*kc));

    kc->validity_ms = UNSET;
    kc->tls_verify = UNSET;
    kc->fetch_timeout = UNSET;
    kc->retry_interval = UNSET;
    kc->notary = UNSET;
    kc->fetch_slots = UNSET;
    return kc;
}

mxf_keys_conf_t *mxf_keys_conf_merge(apr_pool_t *p, const mxf_keys_conf_t *base,
                                     const mxf_keys_conf_t *add)
{
    mxf_keys_conf_t *kc = apr_pcalloc(p, sizeof(*kc));

#define KMERGE(f, unset) kc->f = add->f != (unset) ? add->f : base->f
    KMERGE(validity_ms, UNSET);
    KMERGE(tls_verify, UNSET);
    KMERGE(fetch_timeout, UNSET);
    KMERGE(retry_interval, UNSET);
    KMERGE(notary, UNSET);
    KMERGE(fetch_slots, UNSET);
    KMERGE(fetch_deny, NULL);
    KMERGE(old_keys, NULL);
    KMERGE(notaries, NULL);
    KMERGE(key_urls, NULL);
    KMERGE(ca_file, NULL);
    KMERGE(cache_spec, NULL);
#undef KMERGE
    return kc;
}

apr_int64_t mxf_keys_validity_ms(const mxf_keys_conf_t *kc)
{
    return kc->validity_ms != UNSET ? kc->validity_ms : MXF_DEFAULT_KEY_VALIDITY_MS;
}

int mxf_keys_tls_verify(const mxf_keys_conf_t *kc)
{
    return kc->tls_verify != 0;
}

apr_interval_time_t mxf_keys_fetch_timeout(const mxf_keys_conf_t *kc)
{
    return kc->fetch_timeout != UNSET ? kc->fetch_timeout : MXF_DEFAULT_FETCH_TIMEOUT;
}

apr_interval_time_t mxf_keys_retry_interval(const mxf_keys_conf_t *kc)
{
    return kc->retry_interval != UNSET ? kc->retry_interval : MXF_DEFAULT_RETRY_INTERVAL;
}

int mxf_keys_notary(const mxf_keys_conf_t *kc)
{
    return kc->notary != 0;             /* On unless set Off */
}

const apr_array_header_t *mxf_keys_fetch_deny(const mxf_keys_conf_t *kc)
{
    return kc->fetch_deny;              /* the defaults where unset (keys_post_config) */
}

static mxf_keys_conf_t *kconf_of(cmd_parms *cmd)
{
    mxf_srv_conf_t *conf = ap_get_module_config(cmd->server->module_config,
                                                &matrix_fed_module);
    return conf->keys;
}

static const char *decode_pk(cmd_parms *cmd, const char *b64, unsigned char *pk)
{
    if (mxf_b64_decode_exact(b64, strlen(b64), MXF_B64_STANDARD, pk, MXF_ED25519_PK_BYTES)
            != APR_SUCCESS) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not the unpadded base64 of a "
                            "32-byte ed25519 public key", cmd->cmd->name, b64);
    }
    return NULL;
}

const char *mxf_keys_set_validity(cmd_parms *cmd, void *dconf, const char *arg)
{
    apr_interval_time_t t;
    const char *err = ap_check_cmd_context(cmd, NOT_IN_DIR_LOC_FILE);

    if (err || (err = mxf_config_parse_duration(cmd, arg, apr_time_from_sec(60),
                                                apr_time_from_sec(7 * 24 * 3600),
                                                "60s to 7 days (e.g. 86400, 24h)", &t))) {
        return err;
    }
    kconf_of(cmd)->validity_ms = apr_time_as_msec(t);
    return NULL;
}

const char *mxf_keys_set_old_key(cmd_parms *cmd, void *dconf, const char *key_id,
                                 const char *key, const char *expired_ts)
{
    mxf_keys_conf_t *kc = kconf_of(cmd);
    const char *err = ap_check_cmd_context(cmd, NOT_IN_DIR_LOC_FILE);
    mxf_server_key_t *k;
    char *end;
    apr_int64_t ts;

    if (err) {
        return err;
    }
    if (!mxf_id_key_id_valid(key_id, strlen(key_id))) {
        return apr_psprintf(cmd->pool, "MatrixFedOldVerifyKey: '%s' is not an ed25519 key "
                            "ID (ed25519:<[A-Za-z0-9_]+>)", key_id);
    }
    errno = 0;
    ts = apr_strtoi64(expired_ts, &end, 10);
    if (errno || *end || end == expired_ts || ts <= 0) {
        return apr_psprintf(cmd->pool, "MatrixFedOldVerifyKey: expired_ts '%s' is not a "
                            "positive time in milliseconds", expired_ts);
    }
    if (!kc->old_keys) {
        kc->old_keys = apr_array_make(cmd->pool, 2, sizeof(mxf_server_key_t));
    }
    k = apr_array_push(kc->old_keys);
    memset(k, 0, sizeof(*k));
    k->key_id = apr_pstrdup(cmd->pool, key_id);
    k->expired_ts = ts;
    k->valid_until_ts = ts;
    return decode_pk(cmd, key, k->pk);
}

const char *mxf_keys_set_notary(cmd_parms *cmd, void *dconf, const char *name,
                                const char *key)
{
    mxf_keys_conf_t *kc = kconf_of(cmd);
    const char *err = ap_check_cmd_context(cmd, NOT_IN_DIR_LOC_FILE);
    mxf_notary_t *n;

    if (err) {
        return err;
    }
    if (!mxf_id_server_name_valid(name, strlen(name))) {
        return apr_psprintf(cmd->pool, "MatrixFedTrustedKeyServer: '%s' is not a valid "
                            "server name", name);
    }
    if (!kc->notaries) {
        kc->notaries = apr_array_make(cmd->pool, 2, sizeof(mxf_notary_t));
    }
    n = apr_array_push(kc->notaries);
    n->name = apr_pstrdup(cmd->pool, name);
    return decode_pk(cmd, key, n->pk);
}

const char *mxf_keys_set_key_url(cmd_parms *cmd, void *dconf, const char *name,
                                 const char *url)
{
    mxf_keys_conf_t *kc = kconf_of(cmd);
    const char *err = ap_check_cmd_context(cmd, NOT_IN_DIR_LOC_FILE);
    char *u;
    apr_size_t n;

    if (err) {
        return err;
    }
    if (!mxf_id_server_name_valid(name, strlen(name))) {
        return apr_psprintf(cmd->pool, "MatrixFedKeyServerURL: '%s' is not a valid "
                            "server name", name);
    }
    if (strncasecmp(url, "https://", 8) != 0 || !url[8] || strpbrk(url, "?# ")) {
        return apr_psprintf(cmd->pool, "MatrixFedKeyServerURL: '%s' is not an https:// "
                            "base URL (https://host[:port][/prefix])", url);
    }
    u = apr_pstrdup(cmd->pool, url);
    for (n = strlen(u); n > 8 && u[n - 1] == '/'; n--) {
        u[n - 1] = '\0';
    }
    if (!kc->key_urls) {
        kc->key_urls = apr_table_make(cmd->pool, 4);
    }
    apr_table_set(kc->key_urls, name, u);
    return NULL;
}

const char *mxf_keys_set_tls_verify(cmd_parms *cmd, void *dconf, int flag)
{
    const char *err = ap_check_cmd_context(cmd, NOT_IN_DIR_LOC_FILE);

    if (err) {
        return err;
    }
    kconf_of(cmd)->tls_verify = flag ? 1 : 0;
    return NULL;
}

const char *mxf_keys_set_notary_on(cmd_parms *cmd, void *dconf, int flag)
{
    const char *err = ap_check_cmd_context(cmd, NOT_IN_DIR_LOC_FILE);

    if (err) {
        return err;
    }
    kconf_of(cmd)->notary = flag ? 1 : 0;
    return NULL;
}

/* MatrixFedKeyFetchDeny range... | none: each argument in turn (ITERATE). */
const char *mxf_keys_set_fetch_deny(cmd_parms *cmd, void *dconf, const char *arg)
{
    mxf_keys_conf_t *kc = kconf_of(cmd);
    const char *err = ap_check_cmd_context(cmd, NOT_IN_DIR_LOC_FILE);
    mxf_iprange_t r;

    if (err) {
        return err;
    }
    /* Given here, the list replaces the default one; "default" puts that back in. */
    if (!kc->fetch_deny) {
        kc->fetch_deny = apr_array_make(cmd->pool, 8, sizeof(mxf_iprange_t));
    }
    if (ap_cstr_casecmp(arg, "none") == 0) {
        if (kc->fetch_deny->nelts) {
            return "MatrixFedKeyFetchDeny: none cannot be combined with ranges";
        }
        kc->fetch_deny_none = 1;
        return NULL;                    /* an empty list: key fetches go anywhere */
    }
    if (kc->fetch_deny_none) {
        return "MatrixFedKeyFetchDeny: none cannot be combined with ranges";
    }
    if (ap_cstr_casecmp(arg, "default") == 0) {
        apr_array_cat(kc->fetch_deny, mxf_iprange_defaults(cmd->pool));
        return NULL;
    }
    if (mxf_iprange_parse(arg, &r) != APR_SUCCESS) {
        return apr_psprintf(cmd->pool, "MatrixFedKeyFetchDeny '%s': expected an IP address "
                            "range (e.g. 10.0.0.0/8, fc00::/7), default or none", arg);
    }
    *(mxf_iprange_t *)apr_array_push(kc->fetch_deny) = r;
    return NULL;
}

const char *mxf_keys_set_ca_file(cmd_parms *cmd, void *dconf, const char *path)
{
    const char *err = ap_check_cmd_context(cmd, NOT_IN_DIR_LOC_FILE);
    const char *full;
    apr_finfo_t fi;

    if (err) {
        return err;
    }
    full = ap_server_root_relative(cmd->pool, path);
    if (!full || apr_stat(&fi, full, APR_FINFO_TYPE, cmd->temp_pool) != APR_SUCCESS
        || fi.filetype != APR_REG) {
        return apr_psprintf(cmd->pool, "MatrixFedKeyFetchCAFile: '%s' is not a readable "
                            "file", path);
    }
    kconf_of(cmd)->ca_file = full;
    return NULL;
}

const char *mxf_keys_set_interval(cmd_parms *cmd, void *dconf, const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, NOT_IN_DIR_LOC_FILE);
    mxf_keys_conf_t *kc = kconf_of(cmd);

    if (err) {
        return err;
    }
    if (cmd->info == (void *)1) {
        return mxf_config_parse_duration(cmd, arg, apr_time_from_msec(100), apr_time_from_sec(120),
                                         "100ms to 120s", &kc->fetch_timeout);
    }
    return mxf_config_parse_duration(cmd, arg, apr_time_from_sec(1), apr_time_from_sec(86400),
                                     "1s to 1 day", &kc->retry_interval);
}

const char *mxf_keys_set_fetch_slots(cmd_parms *cmd, void *dconf, const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    long n;

    if (err || (err = mxf_config_parse_count(cmd, arg, 1, 1000, &n)) != NULL) {
        return err;
    }
    kconf_of(cmd)->fetch_slots = (int)n;
    return NULL;
}

const char *mxf_keys_set_cache(cmd_parms *cmd, void *dconf, const char *spec)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    const char *colon = strchr(spec, ':');
    const char *name = colon ? apr_pstrmemdup(cmd->temp_pool, spec,
                                              (apr_size_t)(colon - spec)) : spec;

    if (err) {
        return err;
    }
    if (strcasecmp(spec, "none") != 0
        && !ap_lookup_provider(AP_SOCACHE_PROVIDER_GROUP, name,
                               AP_SOCACHE_PROVIDER_VERSION)) {
        return apr_psprintf(cmd->pool, "MatrixFedKeyCache: unknown cache type '%s' "
                            "(load mod_socache_%s before this directive, or use none)",
                            name, name);
    }
    kconf_of(cmd)->cache_spec = apr_pstrdup(cmd->pool, spec);
    return NULL;
}

const char *mxf_keys_check_key_file(apr_pool_t *p, const char *path)
{
    struct stat st;

    if (stat(path, &st) != 0) {
        return apr_psprintf(p, "MatrixFedSigningKey: cannot stat %s: %s", path,
                            strerror(errno));
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        return apr_psprintf(p, "MatrixFedSigningKey: the key file %s is accessible by "
                            "group or others (mode %04o); the secret key must be private "
                            "to its owner: chmod 600 %s", path,
                            (unsigned)(st.st_mode & 07777), path);
    }
    return NULL;
}

/* ================================================================ our key endpoint */

/*
 * This server's Server Keys object, signed now (one ed25519 signature), for
 * /key/v2/server and the notary endpoints; NULL (logged) if it cannot be built.
 */
static json_t *own_keys(request_rec *r, const mxf_srv_conf_t *conf)
{
    const char *why = NULL;
    json_t *obj = mxf_serverkeys_build(r->pool, conf->server_name, conf->signing_key,
                                       apr_time_as_msec(apr_time_now())
                                       + mxf_keys_validity_ms(conf->keys),
                                       conf->keys->old_keys, &why);

    if (!obj) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, MXFLOGNO(25010)
                      "cannot build the key response: %s", why);
    }
    return obj;
}

/* GET /_matrix/key/v2/server[/{keyId}]: signed per request. */
int mxf_handle_server_keys(mxf_req_t *req)
{
    request_rec *r = req->r;
    json_t *obj = own_keys(r, req->conf);

    if (!obj) {
        return mxf_http_send_error(r, HTTP_INTERNAL_SERVER_ERROR, MXF_M_UNKNOWN,
                                   "Cannot build the key response");
    }
    apr_table_setn(r->headers_out, "Cache-Control", "no-cache");
    return mxf_http_send_json(r, HTTP_OK, obj);
}

/* ================================================================ process-wide state */

/* A cached key. */
typedef struct {
    apr_int64_t valid_until_ts;
    unsigned char pk[MXF_ED25519_PK_BYTES];
} centry_t;

/* Per-server fetch state, shared by all children. */
enum { MARK_FETCHING = 1, MARK_FAILED, MARK_DONE, MARK_BUSY };
typedef struct {
    apr_int64_t until_ms;
    int state;
    char reason[400];
} marker_t;

typedef struct {
    apr_time_t expires;
    apr_size_t len;
    unsigned char data[];
} lentry_t;

typedef struct {
    const ap_socache_provider_t *sc_prov;
    ap_socache_instance_t *sc;
    apr_global_mutex_t *gmutex;         /* guards sc (and the markers in it) */
    /* Per child (child_init): */
    apr_thread_mutex_t *tmutex;         /* guards local */
    apr_pool_t *local_pool;
    apr_hash_t *local;
    int nlocal;
    int fetching;                       /* fetches under way in this child (tmutex) */
    int fetch_slots;                    /* MatrixFedKeyFetchConcurrency */
} keys_global_t;

/* The one process-wide record, from pconf; reset when pconf goes. */
static keys_global_t *keys_g;

static apr_status_t keys_g_reset(void *unused)
{
    keys_g = NULL;
    return APR_SUCCESS;
}

static apr_status_t socache_destroy(void *data)
{
    keys_global_t *g = data;

    if (g->sc) {
        g->sc_prov->destroy(g->sc, NULL);
        g->sc = NULL;
    }
    return APR_SUCCESS;
}

/* ---- per-process cache; caller holds tmutex */

static int local_get(const char *id, void *buf, apr_size_t len)
{
    lentry_t *e = apr_hash_get(keys_g->local, id, APR_HASH_KEY_STRING);

    if (!e || e->len != len || e->expires < apr_time_now()) {
        return 0;
    }
    memcpy(buf, e->data, len);
    return 1;
}

static void local_put(const char *id, const void *buf, apr_size_t len, apr_time_t expires)
{
    lentry_t *e;

    if (keys_g->nlocal >= LOCAL_MAX) {
        apr_pool_clear(keys_g->local_pool);
        keys_g->local = apr_hash_make(keys_g->local_pool);
        keys_g->nlocal = 0;
    }
    e = apr_hash_get(keys_g->local, id, APR_HASH_KEY_STRING);
    if (!e || e->len != len) {
        e = apr_palloc(keys_g->local_pool, sizeof(*e) + len);
        apr_hash_set(keys_g->local, apr_pstrdup(keys_g->local_pool, id),
                     APR_HASH_KEY_STRING, e);
        keys_g->nlocal++;
    }
    e->expires = expires;
    e->len = len;
    memcpy(e->data, buf, len);
}

/* ---- shared store: the socache, or the per-process cache without one */

static void shared_lock(void)
{
    if (keys_g->sc) {
        apr_global_mutex_lock(keys_g->gmutex);
    }
    else {
        apr_thread_mutex_lock(keys_g->tmutex);
    }
}

static void shared_unlock(void)
{
    if (keys_g->sc) {
        apr_global_mutex_unlock(keys_g->gmutex);
    }
    else {
        apr_thread_mutex_unlock(keys_g->tmutex);
    }
}

/* Caller holds the shared lock. */
static int shared_get(request_rec *r, const char *id, void *buf, apr_size_t len)
{
    unsigned int n = (unsigned int)len;

    if (!keys_g->sc) {
        return local_get(id, buf, len);
    }
    return keys_g->sc_prov->retrieve(keys_g->sc, r->server, (const unsigned char *)id,
                                     (unsigned int)strlen(id), buf, &n, r->pool)
               == APR_SUCCESS && n == len;
}

static void shared_put(request_rec *r, const char *id, const void *buf, apr_size_t len,
                       apr_time_t expires)
{
    if (!keys_g->sc) {
        local_put(id, buf, len, expires);
        return;
    }
    if (keys_g->sc_prov->store(keys_g->sc, r->server, (const unsigned char *)id,
                               (unsigned int)strlen(id), expires, (unsigned char *)buf,
                               (unsigned int)len, r->pool) != APR_SUCCESS) {
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, MXFLOGNO(25011)
                      "could not store %s in the key cache (full?)", id);
    }
}

/* ---- keys */

static const char *key_cache_id(apr_pool_t *p, const char *server, const char *key_id)
{
    return apr_pstrcat(p, "mxfk\x1f", server, "\x1f", key_id, NULL);
}

/* Until when a cache keeps @a e: its validity, but at most CACHE_MAX_AGE. */
static apr_time_t key_cache_expiry(const centry_t *e)
{
    apr_time_t exp = apr_time_from_msec(e->valid_until_ts);
    apr_time_t cap = apr_time_now() + CACHE_MAX_AGE;

    return exp > cap ? cap : exp;
}

static int key_cache_get(request_rec *r, const char *server, const char *key_id,
                         centry_t *e)
{
    const char *id = key_cache_id(r->pool, server, key_id);
    int found;

    apr_thread_mutex_lock(keys_g->tmutex);
    found = local_get(id, e, sizeof(*e));
    apr_thread_mutex_unlock(keys_g->tmutex);
    if (found || !keys_g->sc) {
        return found;
    }
    shared_lock();
    found = shared_get(r, id, e, sizeof(*e));
    shared_unlock();
    if (found) {
        /* Capped like key_cache_put()'s: a key changed in the table since is
         * read again within the hour in every child. */
        apr_time_t exp = key_cache_expiry(e);
        apr_thread_mutex_lock(keys_g->tmutex);
        local_put(id, e, sizeof(*e), exp);
        apr_thread_mutex_unlock(keys_g->tmutex);
    }
    return found;
}

static void key_cache_put(request_rec *r, const char *server, const char *key_id,
                          const centry_t *e)
{
    const char *id = key_cache_id(r->pool, server, key_id);
    apr_time_t exp = key_cache_expiry(e);

    apr_thread_mutex_lock(keys_g->tmutex);
    local_put(id, e, sizeof(*e), exp);
    apr_thread_mutex_unlock(keys_g->tmutex);
    if (keys_g->sc) {
        shared_lock();
        shared_put(r, id, e, sizeof(*e), exp);
        shared_unlock();
    }
}

/* ---- fetch markers */

static const char *marker_id(apr_pool_t *p, const char *server)
{
    return apr_pstrcat(p, "mxfm\x1f", server, NULL);
}

/*
 * Claims the fetch of @a server for this request (returns 1), unless a live
 * marker says someone is fetching it or did so recently (returns 0, *m).
 */
static int marker_claim(request_rec *r, const char *server, apr_interval_time_t budget,
                        marker_t *m)
{
    const char *id = marker_id(r->pool, server);
    apr_int64_t now = apr_time_as_msec(apr_time_now());
    int claimed = 0;

    shared_lock();
    if (!shared_get(r, id, m, sizeof(*m)) || m->until_ms <= now) {
        memset(m, 0, sizeof(*m));
        m->state = MARK_FETCHING;
        m->until_ms = now + apr_time_as_msec(budget) + 1000;
        shared_put(r, id, m, sizeof(*m), apr_time_from_msec(m->until_ms));
        claimed = 1;
    }
    shared_unlock();
    return claimed;
}

static void marker_set(request_rec *r, const char *server, int state, const char *reason,
                       apr_interval_time_t ttl)
{
    marker_t m;

    memset(&m, 0, sizeof(m));
    m.state = state;
    m.until_ms = apr_time_as_msec(apr_time_now() + ttl);
    apr_cpystrn(m.reason, reason ? reason : "", sizeof(m.reason));
    shared_lock();
    shared_put(r, marker_id(r->pool, server), &m, sizeof(m), apr_time_now() + ttl);
    shared_unlock();
}

static int marker_get(request_rec *r, const char *server, marker_t *m)
{
    int found;

    shared_lock();
    found = shared_get(r, marker_id(r->pool, server), m, sizeof(*m));
    shared_unlock();
    return found && m->until_ms > apr_time_as_msec(apr_time_now());
}

/* ================================================================ key table */

static int hexnib(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/*
 * Reads (server, key_id) from the key table: 1 if found (*e, *expired_ts),
 * 0 if not, -1 if the database cannot be asked (logged). Each key-table
 * statement runs on a connection given back at once: a key fetch may
 * follow, and the request must not hold a connection while it waits.
 */
static int db_key_get(request_rec *r, const char *server, const char *key_id, centry_t *e,
                      apr_int64_t *expired_ts)
{
    const char *args[2] = { server, key_id }, *hex, *v;
    mxf_db_rows_t *rows;
    int i;

    if (mxf_db_brief(r, MXF_STMT_KEY_GET, 2, args, &rows) != APR_SUCCESS) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, MXFLOGNO(25012)
                      "reading the key %s of %s from the key table failed", key_id, server);
        return -1;
    }
    if (rows->nrows < 1) {
        return 0;
    }
    hex = mxf_db_get(rows, 0, 0);
    if (!hex || strlen(hex) != 2 * MXF_ED25519_PK_BYTES) {
        return 0;
    }
    for (i = 0; i < MXF_ED25519_PK_BYTES; i++) {
        int hi = hexnib(hex[2 * i]), lo = hexnib(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            return 0;
        }
        e->pk[i] = (unsigned char)(hi * 16 + lo);
    }
    v = mxf_db_get(rows, 0, 1);
    e->valid_until_ts = v ? apr_atoi64(v) : 0;
    v = mxf_db_get(rows, 0, 2);
    *expired_ts = v ? apr_atoi64(v) : 0;
    return 1;
}

static void db_key_put(request_rec *r, const char *server, const mxf_server_key_t *k,
                       const char *source)
{
    static const char hexdigits[] = "0123456789abcdef";
    char hex[2 * MXF_ED25519_PK_BYTES + 1];
    const char *args[7];
    int i;

    for (i = 0; i < MXF_ED25519_PK_BYTES; i++) {
        hex[2 * i] = hexdigits[k->pk[i] >> 4];
        hex[2 * i + 1] = hexdigits[k->pk[i] & 15];
    }
    hex[2 * MXF_ED25519_PK_BYTES] = '\0';
    args[0] = server;
    args[1] = k->key_id;
    args[2] = hex;
    args[3] = apr_psprintf(r->pool, "%" APR_INT64_T_FMT, k->valid_until_ts);
    args[4] = k->expired_ts ? apr_psprintf(r->pool, "%" APR_INT64_T_FMT, k->expired_ts)
                            : NULL;
    args[5] = source;
    args[6] = apr_psprintf(r->pool, "%" APR_INT64_T_FMT, apr_time_as_msec(apr_time_now()));
    if (mxf_db_brief(r, MXF_STMT_KEY_PUT, 7, args, NULL) != APR_SUCCESS) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, MXFLOGNO(25013)
                      "storing the key %s of %s in the key table failed", k->key_id, server);
    }
}

/* Keeps the Server Keys object @a obj of @a server (verified) for the notary endpoints. */
static void db_key_response_put(request_rec *r, const char *server, const json_t *obj)
{
    const json_t *valid = json_object_get(obj, "valid_until_ts");
    const char *args[4];

    if (!json_is_integer(valid) || !(args[1] = mxf_json_dump(r->pool, obj, NULL))) {
        return;
    }
    args[0] = server;
    args[2] = apr_psprintf(r->pool, "%" APR_INT64_T_FMT,
                           (apr_int64_t)json_integer_value(valid));
    args[3] = apr_psprintf(r->pool, "%" APR_INT64_T_FMT, apr_time_as_msec(apr_time_now()));
    if (mxf_db_brief(r, MXF_STMT_KEY_RESPONSE_PUT, 4, args, NULL) != APR_SUCCESS) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, MXFLOGNO(25065)
                      "storing the key response of %s failed", server);
    }
}

/* ================================================================ lookup */

/*
 * Makes sure the keys of @a server were fetched recently: fetches them (if
 * no one else is), or waits for the fetch under way. APR_SUCCESS, or
 * APR_EGENERAL with *why when the (possibly earlier) fetch failed.
 */
static apr_status_t refresh_server(request_rec *r, const mxf_srv_conf_t *conf,
                                   const char *server, const char **why)
{
    const mxf_keys_conf_t *kc = conf->keys;
    apr_interval_time_t timeout = mxf_keys_fetch_timeout(kc);
    apr_interval_time_t budget = timeout * (2 + (kc->notaries ? kc->notaries->nelts : 0));
    apr_array_header_t *keys = NULL;
    const json_t *obj = NULL;
    const char *source = NULL, *reason = NULL;
    marker_t m;
    apr_status_t rv;
    int i, busy;

    if (!marker_claim(r, server, budget, &m)) {
        while (m.state == MARK_FETCHING) {
            apr_sleep(apr_time_from_msec(25));
            if (!marker_get(r, server, &m)) {
                break;                  /* the fetcher's marker ran out */
            }
        }
        if (m.state == MARK_FAILED) {
            *why = apr_pstrcat(r->pool, m.reason, " (failure remembered; retried later)",
                               NULL);
            return APR_EGENERAL;
        }
        if (m.state == MARK_BUSY) {
            *why = apr_pstrdup(r->pool, m.reason);
            return APR_EBUSY;
        }
        if (m.state == MARK_FETCHING) {
            *why = "another request's fetch of these keys did not finish in time";
            return APR_EGENERAL;
        }
        return APR_SUCCESS;
    }
    /*
     * MatrixFedKeyFetchConcurrency: requests naming ever new origins would
     * otherwise each hold a worker for the whole budget. Past it, the fetch
     * is not made; the marker says so for a second (the requests waiting on
     * it get the same answer), then the next request may fetch.
     */
    apr_thread_mutex_lock(keys_g->tmutex);
    busy = keys_g->fetching >= keys_g->fetch_slots;
    if (!busy) {
        keys_g->fetching++;
    }
    apr_thread_mutex_unlock(keys_g->tmutex);
    if (busy) {
        reason = apr_psprintf(r->pool, "%d key fetches are under way in this process "
                              "(MatrixFedKeyFetchConcurrency)", keys_g->fetch_slots);
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, MXFLOGNO(25072)
                      "the keys of %s are not fetched now: %s", server, reason);
        marker_set(r, server, MARK_BUSY, reason, apr_time_from_sec(1));
        *why = reason;
        return APR_EBUSY;
    }
    rv = mxf_keyfetch(r, kc, server, budget, &keys, &obj, &source, &reason);
    apr_thread_mutex_lock(keys_g->tmutex);
    keys_g->fetching--;
    apr_thread_mutex_unlock(keys_g->tmutex);
    if (rv != APR_SUCCESS) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, MXFLOGNO(25014)
                      "could not fetch the keys of %s: %s", server, reason);
        marker_set(r, server, MARK_FAILED, reason, mxf_keys_retry_interval(kc));
        *why = reason;
        return APR_EGENERAL;
    }
    for (i = 0; i < keys->nelts; i++) {
        const mxf_server_key_t *k = &APR_ARRAY_IDX(keys, i, mxf_server_key_t);
        db_key_put(r, server, k, source);
        if (!k->expired_ts) {
            centry_t e;
            memset(&e, 0, sizeof(e));
            e.valid_until_ts = k->valid_until_ts;
            memcpy(e.pk, k->pk, sizeof(e.pk));
            key_cache_put(r, server, k->key_id, &e);
        }
    }
    db_key_response_put(r, server, obj);
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, MXFLOGNO(25015)
                  "fetched %d key(s) of %s (%s)", keys->nelts, server, source);
    marker_set(r, server, MARK_DONE, NULL, mxf_keys_retry_interval(kc));
    return APR_SUCCESS;
}

/*
 * Cache, then table: 1 if a key valid at @a now was found. *db_down is set
 * when the table could not be read.
 */
static int lookup_known(request_rec *r, const char *server, const char *key_id,
                        apr_int64_t now, centry_t *e, apr_int64_t *expired_ts, int *known,
                        int *db_down)
{
    int found;

    *expired_ts = 0;
    if (key_cache_get(r, server, key_id, e) && e->valid_until_ts >= now) {
        return 1;
    }
    if ((found = db_key_get(r, server, key_id, e, expired_ts)) < 0) {
        *db_down = 1;
    }
    else if (found) {
        *known = 1;
        if (!*expired_ts && e->valid_until_ts >= now) {
            key_cache_put(r, server, key_id, e);
            return 1;
        }
    }
    return 0;
}

apr_status_t mxf_keys_get(request_rec *r, const mxf_srv_conf_t *conf,
                          const char *server, const char *key_id,
                          unsigned char pk[MXF_ED25519_PK_BYTES], const char **why)
{
    apr_int64_t now = apr_time_as_msec(apr_time_now()), expired_ts = 0;
    const char *reason = NULL;
    centry_t e;
    int known = 0, db_down = 0, i;
    apr_status_t rv;

    if (strcmp(server, conf->server_name) == 0) {
        if (conf->signing_key && strcmp(key_id, conf->signing_key->key_id) == 0) {
            memcpy(pk, conf->signing_key->pk, MXF_ED25519_PK_BYTES);
            return APR_SUCCESS;
        }
        for (i = 0; conf->keys->old_keys && i < conf->keys->old_keys->nelts; i++) {
            if (!strcmp(APR_ARRAY_IDX(conf->keys->old_keys, i, mxf_server_key_t).key_id,
                        key_id)) {
                *why = apr_psprintf(r->pool, "key %s of %s is an old, expired key",
                                    key_id, server);
                return MXF_KEY_EXPIRED;
            }
        }
        *why = apr_psprintf(r->pool, "%s (this server) has no key %s", server, key_id);
        return MXF_KEY_UNKNOWN;
    }
    if (!keys_g || !keys_g->tmutex) {
        *why = "the key cache is not initialised";
        return MXF_KEY_UNAVAILABLE;
    }
    memset(&e, 0, sizeof(e));
    if (lookup_known(r, server, key_id, now, &e, &expired_ts, &known, &db_down)) {
        memcpy(pk, e.pk, MXF_ED25519_PK_BYTES);
        return APR_SUCCESS;
    }
    if (db_down) {
        /* Every request that needs a key needs the database too: no fetch. */
        *why = apr_psprintf(r->pool, "the key table cannot be read (key %s of %s)", key_id,
                            server);
        return MXF_KEY_NO_DATABASE;
    }
    rv = refresh_server(r, conf, server, &reason);
    now = apr_time_as_msec(apr_time_now());
    if (lookup_known(r, server, key_id, now, &e, &expired_ts, &known, &db_down)) {
        memcpy(pk, e.pk, MXF_ED25519_PK_BYTES);
        return APR_SUCCESS;
    }
    if (rv == APR_EBUSY && !expired_ts) {
        /* Known but due again, and not fetched for this server's own limit. */
        *why = apr_psprintf(r->pool, "the keys of %s could not be fetched now: %s", server,
                            reason);
        return MXF_KEY_BUSY;
    }
    if (known) {
        *why = expired_ts
            ? apr_psprintf(r->pool, "key %s of %s expired at %" APR_INT64_T_FMT
                           " (an old_verify_key may not sign requests)", key_id, server,
                           expired_ts)
            : apr_psprintf(r->pool, "key %s of %s expired at %" APR_INT64_T_FMT
                           " (valid_until_ts) and no fresher copy could be had%s%s",
                           key_id, server, e.valid_until_ts, reason ? ": " : "",
                           reason ? reason : "");
        return MXF_KEY_EXPIRED;
    }
    if (rv != APR_SUCCESS) {
        *why = apr_psprintf(r->pool, "the keys of %s could not be fetched: %s", server,
                            reason);
        return db_down ? MXF_KEY_NO_DATABASE : MXF_KEY_UNAVAILABLE;
    }
    *why = apr_psprintf(r->pool, "%s does not publish a key %s", server, key_id);
    return MXF_KEY_UNKNOWN;
}

/* ================================================================ notary endpoints */

/*
 * At most this many servers in one /key/v2/query request (the reference
 * homeserver asks for every server it is missing keys of at once, hundreds
 * after joining a big room; each costs a lookup and a signature here), and
 * key fetches for it.
 */
#define NOTARY_MAX_SERVERS 1000
#define NOTARY_MAX_FETCHES 3

/* The kept Server Keys object @a text parsed (NULL, logged, when it does not parse). */
static json_t *parse_kept(request_rec *r, const char *server, const char *text)
{
    json_t *obj = NULL;
    const char *why = NULL;

    if (mxf_json_parse(r->pool, text, strlen(text), 0, &obj, &why) != APR_SUCCESS) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, MXFLOGNO(25066)
                      "the kept key response of %s cannot be served: %s", server, why);
        return NULL;
    }
    return obj;
}

/*
 * The key IDs of @a wanted (const char *) that the Server Keys object
 * @a obj (NULL: none) lists neither in verify_keys nor in old_verify_keys,
 * as a JSON array text; NULL when it lacks none (or none is wanted).
 */
static const char *missing_key_ids(apr_pool_t *p, const json_t *obj,
                                   const apr_array_header_t *wanted)
{
    json_t *missing;
    int i;

    if (!wanted || !wanted->nelts) {
        return NULL;
    }
    missing = mxf_json_own(p, json_array());
    for (i = 0; i < wanted->nelts; i++) {
        const char *key_id = APR_ARRAY_IDX(wanted, i, const char *);
        if (!json_object_get(json_object_get(obj, "verify_keys"), key_id)
            && !json_object_get(json_object_get(obj, "old_verify_keys"), key_id)) {
            json_array_append_new(missing, json_string(key_id));
        }
    }
    return json_array_size(missing) ? mxf_json_dump(p, missing, NULL) : NULL;
}

/* Appends the kept Server Keys object @a obj of @a server, signed by this server too. */
static void serve_kept(request_rec *r, const mxf_srv_conf_t *conf, const char *server,
                       json_t *obj, json_t *list)
{
    const char *why = NULL;

    if (mxf_sign_json(r->pool, obj, conf->server_name, conf->signing_key, &why)
        != APR_SUCCESS) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, MXFLOGNO(25074)
                      "the kept key response of %s cannot be signed: %s", server, why);
        return;
    }
    json_array_append(list, obj);
}

/*
 * Appends the Server Keys objects of @a server to hand out to @a list, each
 * signed by this server too (none: nothing known). Ours is built afresh.
 * Another's is the latest kept, fetched again first when it is valid for
 * less than @a min_valid, past half its lifetime (at most 7 days) since it
 * was fetched, or without one of the key IDs @a wanted (the server may have
 * a new key since; the reference homeserver's notary counts a key ID it has
 * not seen as a miss too): at most *fetches_left fetches, and a server
 * fetched, or whose fetch failed, within MatrixFedKeyFetchRetryInterval is
 * not asked again. The latest object is served as kept when the fetch
 * fails (the spec asks notaries to keep serving the last answer). For the
 * key IDs wanted that it still lacks, the latest objects that listed them
 * follow (sql/020), expired or not: the requester needs the key to check
 * what was signed with it. Returns OK, or the status of the database error
 * already sent.
 */
static int notary_answer(mxf_req_t *req, const char *server, apr_int64_t min_valid,
                         const apr_array_header_t *wanted, int *fetches_left, json_t *list)
{
    request_rec *r = req->r;
    const mxf_srv_conf_t *conf = req->conf;
    const char *args[2] = { server, NULL }, *latest, *missing, *why = NULL;
    mxf_db_rows_t *rows;
    json_t *obj;
    int status, i;

    if (strcmp(server, conf->server_name) == 0) {
        json_t *own = own_keys(r, conf);
        if (own) {
            json_array_append(list, own);
        }
        return OK;
    }
    if ((status = mxf_db_select_brief(req, MXF_STMT_KEY_RESPONSE_GET, 1, args, &rows)) != OK) {
        return status;
    }
    latest = rows->nrows ? mxf_db_get(rows, 0, 0) : NULL;
    obj = latest ? parse_kept(r, server, latest) : NULL;
    if ((!latest || apr_atoi64(mxf_db_get(rows, 0, 1)) < min_valid
         || apr_atoi64(mxf_db_get(rows, 0, 2)) <= apr_time_as_msec(apr_time_now())
         || missing_key_ids(r->pool, obj, wanted))
        && *fetches_left > 0 && keys_g && keys_g->tmutex) {
        (*fetches_left)--;
        if (refresh_server(r, conf, server, &why) == APR_SUCCESS) {
            if ((status = mxf_db_select_brief(req, MXF_STMT_KEY_RESPONSE_GET, 1, args,
                                              &rows)) != OK) {
                return status;
            }
            latest = rows->nrows ? mxf_db_get(rows, 0, 0) : NULL;
            obj = latest ? parse_kept(r, server, latest) : NULL;
        }
    }
    if (obj) {
        serve_kept(r, conf, server, obj, list);
    }
    if (!(missing = missing_key_ids(r->pool, obj, wanted))) {
        return OK;
    }
    args[1] = missing;
    if ((status = mxf_db_select_brief(req, MXF_STMT_KEY_DOCS_GET, 2, args, &rows)) != OK) {
        return status;
    }
    for (i = 0; i < rows->nrows; i++) {
        const char *text = mxf_db_get(rows, i, 0);
        json_t *older;
        if (text && (!latest || strcmp(text, latest) != 0)
            && (older = parse_kept(r, server, text)) != NULL) {
            serve_kept(r, conf, server, older, list);
        }
    }
    return OK;
}

/*
 * The minimum_valid_until_ts of one server's key criteria ({key ID: {...}}):
 * the latest asked for, the current time where none is given. 0 when a
 * criterion is malformed.
 */
static int criteria_min_valid(const json_t *crit, apr_int64_t now, apr_int64_t *min_valid)
{
    const char *key_id;
    json_t *c;

    *min_valid = now;
    if (!json_is_object(crit)) {
        return 0;
    }
    json_object_foreach((json_t *)crit, key_id, c) {
        const json_t *m = json_object_get(c, "minimum_valid_until_ts");
        if (!json_is_object(c) || (m && !json_is_null(m) && !json_is_integer(m))) {
            return 0;
        }
        if (json_is_integer(m) && json_integer_value(m) > *min_valid) {
            *min_valid = json_integer_value(m);
        }
    }
    return 1;
}

/*
 * GET /_matrix/key/v2/query/{serverName}[?minimum_valid_until_ts=] and
 * POST /_matrix/key/v2/query {"server_keys": {name: {key ID: criteria}}}:
 * {"server_keys": [Server Keys object...]}, each as its server signed it
 * and signed by this server as notary; servers with nothing known are left
 * out.
 */
int mxf_handle_key_query(mxf_req_t *req)
{
    request_rec *r = req->r;
    apr_int64_t now = apr_time_as_msec(apr_time_now()), min_valid;
    apr_array_header_t *names = apr_array_make(r->pool, 4, sizeof(const char *));
    apr_array_header_t *mins = apr_array_make(r->pool, 4, sizeof(apr_int64_t));
    /* per server, the key IDs asked for (an empty array: all of them) */
    apr_array_header_t *wants = apr_array_make(r->pool, 4, sizeof(apr_array_header_t *));
    json_t *list = mxf_json_own(r->pool, json_array());
    int fetches_left = NOTARY_MAX_FETCHES, status, i;

    if (r->method_number == M_POST) {
        const json_t *sk, *crit;
        const char *name;

        if ((status = mxf_http_read_body(req)) != OK) {
            return status == AP_FILTER_ERROR ? status : OK;
        }
        if (!req->body_json) {
            return mxf_http_send_error(r, HTTP_BAD_REQUEST, MXF_M_NOT_JSON,
                                       "Expected a JSON object body");
        }
        sk = json_object_get(req->body_json, "server_keys");
        if (!json_is_object(sk)) {
            return mxf_http_send_error(r, HTTP_BAD_REQUEST, MXF_M_BAD_JSON,
                                       "server_keys must be an object of server names");
        }
        if (json_object_size(sk) > NOTARY_MAX_SERVERS) {
            return mxf_http_send_error(r, HTTP_BAD_REQUEST, MXF_M_INVALID_PARAM,
                                       "At most %d servers per request", NOTARY_MAX_SERVERS);
        }
        json_object_foreach((json_t *)sk, name, crit) {
            apr_array_header_t *ids;
            const char *key_id;
            json_t *c;
            if (!criteria_min_valid(crit, now, &min_valid)) {
                return mxf_http_send_error(r, HTTP_BAD_REQUEST, MXF_M_BAD_JSON,
                                           "server_keys.%s must map key IDs to objects with "
                                           "an integer minimum_valid_until_ts", name);
            }
            ids = apr_array_make(r->pool, 1, sizeof(const char *));
            json_object_foreach((json_t *)crit, key_id, c) {
                APR_ARRAY_PUSH(ids, const char *) = key_id;
            }
            APR_ARRAY_PUSH(names, const char *) = name;
            APR_ARRAY_PUSH(mins, apr_int64_t) = min_valid;
            APR_ARRAY_PUSH(wants, apr_array_header_t *) = ids;
        }
    }
    else {
        int bad;
        /* Given twice, the first value counts (README; the reference homeserver). */
        apr_array_header_t *v = mxf_http_query_values(r, "minimum_valid_until_ts", 0,
                                                      &bad);
        const char *m = v->nelts ? APR_ARRAY_IDX(v, 0, const char *) : NULL;
        char *end = NULL;

        min_valid = now;
        if (m || bad) {
            errno = 0;
            min_valid = m ? apr_strtoi64(m, &end, 10) : -1;
            if (bad || !*m || *end || errno || min_valid < 0) {
                return mxf_http_send_error(r, HTTP_BAD_REQUEST, MXF_M_INVALID_PARAM,
                                           "minimum_valid_until_ts must be a timestamp in "
                                           "milliseconds");
            }
        }
        APR_ARRAY_PUSH(names, const char *) = req->params[0];
        APR_ARRAY_PUSH(mins, apr_int64_t) = min_valid;
        /* the deprecated /query/{serverName}/{keyId} names one key */
        APR_ARRAY_PUSH(wants, apr_array_header_t *) = apr_array_make(r->pool, 1,
                                                                     sizeof(const char *));
        if (req->nparams > 1 && *req->params[1]) {
            APR_ARRAY_PUSH(APR_ARRAY_IDX(wants, 0, apr_array_header_t *), const char *) =
                req->params[1];
        }
    }
    for (i = 0; i < names->nelts; i++) {
        const char *name = APR_ARRAY_IDX(names, i, const char *);
        if (!mxf_id_server_name_valid(name, strlen(name))) {
            continue;                   /* no such server: nothing to say of it */
        }
        if ((status = notary_answer(req, name, APR_ARRAY_IDX(mins, i, apr_int64_t),
                                    APR_ARRAY_IDX(wants, i, apr_array_header_t *),
                                    &fetches_left, list)) != OK) {
            return OK;                  /* the database error was answered */
        }
    }
    apr_table_setn(r->headers_out, "Cache-Control", "no-cache");
    return mxf_http_send_json(r, HTTP_OK, mxf_json_own(r->pool,
                                                       json_pack("{s:O}", "server_keys", list)));
}

/* ================================================================ hooks */

static int keys_pre_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp)
{
    return ap_mutex_register(pconf, MUTEX_TYPE, NULL, APR_LOCK_DEFAULT, 0) == APR_SUCCESS
               ? OK : HTTP_INTERNAL_SERVER_ERROR;
}

/* MatrixFedKeyCache of the main server, or the default: shmcb when loaded, else none. */
static const char *cache_spec(server_rec *s)
{
    const char *spec = mxf_config_get(s)->keys->cache_spec;

    if (!spec) {
        spec = ap_lookup_provider(AP_SOCACHE_PROVIDER_GROUP, "shmcb",
                                  AP_SOCACHE_PROVIDER_VERSION) ? "shmcb" : "none";
    }
    return spec;
}

/* Splits "provider[:args]" into *name and *args (NULL when none). */
static void cache_split(apr_pool_t *p, const char *spec, const char **name, const char **args)
{
    const char *colon = strchr(spec, ':');

    *name = colon ? apr_pstrmemdup(p, spec, (apr_size_t)(colon - spec)) : spec;
    *args = colon ? colon + 1 : NULL;
}

/*
 * What configtest can tell of MatrixFedKeyCache (see mxf_check_config()):
 * that its provider is loaded and takes its arguments. The cache itself is
 * made in post_config.
 */
static int keys_check_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp,
                             server_rec *s)
{
    const ap_socache_provider_t *prov;
    ap_socache_instance_t *inst = NULL;
    const char *spec, *name, *args, *err;

    if (!mxf_config_any_enabled(s) || strcasecmp((spec = cache_spec(s)), "none") == 0) {
        return OK;
    }
    cache_split(ptemp, spec, &name, &args);
    prov = ap_lookup_provider(AP_SOCACHE_PROVIDER_GROUP, name, AP_SOCACHE_PROVIDER_VERSION);
    if (!prov) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, MXFLOGNO(25023)
                     "MatrixFedKeyCache: cache type %s is not available", name);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if ((err = prov->create(&inst, args, ptemp, ptemp)) != NULL) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, MXFLOGNO(25024)
                     "MatrixFedKeyCache %s: %s", spec, err);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    return OK;
}

static int keys_post_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp,
                            server_rec *s)
{
    const char *spec = mxf_config_get(s)->keys->cache_spec, *why = NULL, *err;
    const char *name, *args = NULL;
    int dry_run = ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG;
    int any = 0;
    server_rec *v;
    apr_status_t rv;
    struct ap_socache_hints hints = { 64, sizeof(marker_t), 60 };

    /* Hosts that set no MatrixFedKeyFetchDeny share the default ranges. */
    {
        apr_array_header_t *defaults = mxf_iprange_defaults(pconf);
        for (v = s; v; v = v->next) {
            mxf_keys_conf_t *kc = mxf_config_get(v)->keys;
            if (!kc->fetch_deny) {
                kc->fetch_deny = defaults;
            }
        }
    }
    for (v = s; v; v = v->next) {
        const mxf_srv_conf_t *conf = mxf_config_get(v);
        if (!mxf_config_enabled(conf)) {
            continue;
        }
        any = 1;
        if (!dry_run && !mxf_keys_tls_verify(conf->keys)) {
            ap_log_error(APLOG_MARK, APLOG_WARNING, 0, v, MXFLOGNO(25020)
                         "MatrixFedKeyFetchTLSVerify Off on %s:%u: keys fetched from "
                         "other servers are not protected by TLS certificate checks",
                         v->server_hostname, v->port);
        }
    }
    if (!any) {
        return OK;
    }
    keys_g = apr_pcalloc(pconf, sizeof(*keys_g));
    apr_pool_cleanup_register(pconf, NULL, keys_g_reset, apr_pool_cleanup_null);
    {
        const mxf_keys_conf_t *main_kc = mxf_config_get(s)->keys;
        keys_g->fetch_slots = main_kc->fetch_slots != UNSET ? main_kc->fetch_slots
                                                            : MXF_DEFAULT_FETCH_SLOTS;
    }
    if (mxf_keyfetch_global_init(pconf, &why) != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, MXFLOGNO(25021) "%s", why);
        return HTTP_INTERNAL_SERVER_ERROR;
    }

    if (!spec) {
        spec = cache_spec(s);
        if (!dry_run && strcmp(spec, "none") == 0) {
            ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s, MXFLOGNO(25022)
                         "mod_socache_shmcb is not loaded: other servers' keys are cached "
                         "per process only (see MatrixFedKeyCache)");
        }
    }
    if (strcasecmp(spec, "none") == 0) {
        return OK;
    }
    cache_split(ptemp, spec, &name, &args);
    /* keys_check_config() found the provider; it is still there. */
    keys_g->sc_prov = ap_lookup_provider(AP_SOCACHE_PROVIDER_GROUP, name,
                                         AP_SOCACHE_PROVIDER_VERSION);
    if (!keys_g->sc_prov) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if ((err = keys_g->sc_prov->create(&keys_g->sc, args, ptemp, pconf)) != NULL) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, MXFLOGNO(25071)
                     "MatrixFedKeyCache %s: %s", spec, err);
        keys_g->sc = NULL;
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if ((rv = keys_g->sc_prov->init(keys_g->sc, "mod_matrix_fed-keys", &hints, s, pconf))
            != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s, MXFLOGNO(25025)
                     "MatrixFedKeyCache %s: cannot initialise the cache", spec);
        keys_g->sc = NULL;
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    apr_pool_cleanup_register(pconf, keys_g, socache_destroy, apr_pool_cleanup_null);
    rv = ap_global_mutex_create(&keys_g->gmutex, NULL, MUTEX_TYPE, NULL, s, pconf, 0);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s, MXFLOGNO(25026)
                     "cannot create the key cache mutex");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (!dry_run) {
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s, MXFLOGNO(25027)
                     "other servers' keys are cached in %s", spec);
    }
    return OK;
}

static void keys_child_init(apr_pool_t *pchild, server_rec *s)
{
    apr_status_t rv;

    if (!keys_g) {
        return;
    }
    if (keys_g->gmutex) {
        rv = apr_global_mutex_child_init(&keys_g->gmutex,
                                         apr_global_mutex_lockfile(keys_g->gmutex), pchild);
        if (rv != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, MXFLOGNO(25028)
                         "cannot attach to the key cache mutex: shared key cache disabled");
            keys_g->sc = NULL;
        }
    }
    if (apr_thread_mutex_create(&keys_g->tmutex, APR_THREAD_MUTEX_DEFAULT, pchild)
            != APR_SUCCESS) {
        keys_g->tmutex = NULL;
        return;
    }
    apr_pool_create(&keys_g->local_pool, pchild);
    keys_g->local = apr_hash_make(keys_g->local_pool);
    keys_g->nlocal = 0;
}

void mxf_keys_register_hooks(apr_pool_t *p)
{
    ap_hook_pre_config(keys_pre_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_check_config(keys_check_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(keys_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(keys_child_init, NULL, NULL, APR_HOOK_MIDDLE);
}
