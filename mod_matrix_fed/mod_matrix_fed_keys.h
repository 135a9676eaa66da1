/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * Server keys: this server's key endpoint (GET /_matrix/key/v2/server) and
 * the public keys of other servers, looked up for request authentication.
 *
 * Lookup of (server, key ID), valid now:
 *   1. this server's own key (no lookup at all);
 *   2. the per-process cache (no lock but a thread mutex);
 *   3. the cross-process cache (mod_socache, "MatrixFedKeyCache", default
 *      shmcb when mod_socache_shmcb is loaded), so a hot origin costs no
 *      database round trip in any child;
 *   4. the key table mxf_server_keys (prepared statement through mod_dbd),
 *      which the matrix-fed tool and every child share;
 *   5. a fetch over HTTPS (mod_matrix_fed_keyfetch.c): directly from the
 *      server, then from the configured notaries. One fetch per server at a
 *      time across all children (a marker in the shared cache, set under a
 *      global mutex that is never held while fetching); other requests for
 *      that server wait for its outcome, requests for other servers do not
 *      wait at all. Outcomes (failures, and successes that did not yield the
 *      key) are remembered for MatrixFedKeyFetchRetryInterval, so a dead or
 *      lying server cannot make every request wait or fetch. Fetched keys go
 *      into the key table and both caches.
 * Cached entries expire at the key's valid_until_ts (capped at fetch time
 * plus seven days, as the spec demands).
 */
#ifndef mod_matrix_fed_keys_h
#define mod_matrix_fed_keys_h

#include <apr_tables.h>

#include "mxf_key.h"
#include "mxf_serverkeys.h"

struct mxf_srv_conf;

/* A notary (MatrixFedTrustedKeyServer) and its pinned key. */
typedef struct mxf_notary {
    const char *name;
    unsigned char pk[MXF_ED25519_PK_BYTES];
} mxf_notary_t;

/* The key and key-fetching part of the per-server configuration. */
typedef struct mxf_keys_conf {
    apr_int64_t validity_ms;            /* MatrixFedKeyValidity, -1 unset */
    apr_array_header_t *old_keys;       /* MatrixFedOldVerifyKey (mxf_server_key_t) */
    apr_array_header_t *notaries;       /* MatrixFedTrustedKeyServer (mxf_notary_t) */
    apr_table_t *key_urls;              /* MatrixFedKeyServerURL: name -> https base URL */
    int tls_verify;                     /* MatrixFedKeyFetchTLSVerify, -1 unset */
    const char *ca_file;                /* MatrixFedKeyFetchCAFile */
    apr_interval_time_t fetch_timeout;  /* MatrixFedKeyFetchTimeout, -1 unset */
    apr_interval_time_t retry_interval; /* MatrixFedKeyFetchRetryInterval, -1 unset */
    const char *cache_spec;             /* MatrixFedKeyCache (main server only) */
    int fetch_slots;                    /* MatrixFedKeyFetchConcurrency (main server), -1 unset */
    int notary;                         /* MatrixFedNotary, -1 unset */
    apr_array_header_t *fetch_deny;     /* MatrixFedKeyFetchDeny (mxf_iprange_t); NULL unset */
    int fetch_deny_none;                /* "none" given: no range may follow (parsing only) */
} mxf_keys_conf_t;

#define MXF_DEFAULT_KEY_VALIDITY_MS   (24LL * 3600 * 1000)
#define MXF_DEFAULT_FETCH_TIMEOUT     apr_time_from_sec(10)
#define MXF_DEFAULT_RETRY_INTERVAL    apr_time_from_sec(60)
#define MXF_DEFAULT_FETCH_SLOTS       8

mxf_keys_conf_t *mxf_keys_conf_create(apr_pool_t *p);
mxf_keys_conf_t *mxf_keys_conf_merge(apr_pool_t *p, const mxf_keys_conf_t *base,
                                     const mxf_keys_conf_t *add);

/* Typed getters with defaults. */
apr_int64_t mxf_keys_validity_ms(const mxf_keys_conf_t *kc);
int mxf_keys_tls_verify(const mxf_keys_conf_t *kc);
apr_interval_time_t mxf_keys_fetch_timeout(const mxf_keys_conf_t *kc);
apr_interval_time_t mxf_keys_retry_interval(const mxf_keys_conf_t *kc);
int mxf_keys_notary(const mxf_keys_conf_t *kc);
/* The address ranges key fetches may not connect to (the defaults when unset). */
const apr_array_header_t *mxf_keys_fetch_deny(const mxf_keys_conf_t *kc);

/* Directive setters, listed in mxf_cmds[] (mod_matrix_fed_config.c). */
const char *mxf_keys_set_validity(cmd_parms *cmd, void *dconf, const char *arg);
const char *mxf_keys_set_old_key(cmd_parms *cmd, void *dconf, const char *key_id,
                                 const char *key, const char *expired_ts);
const char *mxf_keys_set_notary(cmd_parms *cmd, void *dconf, const char *name,
                                const char *key);
const char *mxf_keys_set_key_url(cmd_parms *cmd, void *dconf, const char *name,
                                 const char *url);
const char *mxf_keys_set_tls_verify(cmd_parms *cmd, void *dconf, int flag);
const char *mxf_keys_set_notary_on(cmd_parms *cmd, void *dconf, int flag);
const char *mxf_keys_set_fetch_deny(cmd_parms *cmd, void *dconf, const char *arg);
const char *mxf_keys_set_ca_file(cmd_parms *cmd, void *dconf, const char *path);
const char *mxf_keys_set_interval(cmd_parms *cmd, void *dconf, const char *arg);
const char *mxf_keys_set_cache(cmd_parms *cmd, void *dconf, const char *spec);
const char *mxf_keys_set_fetch_slots(cmd_parms *cmd, void *dconf, const char *arg);


/*
 * Hooks of the key subsystem: post_config (shared cache, mutex, libcurl,
 * start-up notices), child_init, pre_config (mutex registration).
 */
void mxf_keys_register_hooks(apr_pool_t *p);

/*
 * Checks the signing key file @a path at start-up: refuses a key file that
 * group or others may read. NULL or an error message.
 */
const char *mxf_keys_check_key_file(apr_pool_t *p, const char *path);

/* Status codes of mxf_keys_get() besides APR_SUCCESS. */
#define MXF_KEY_UNKNOWN      APR_NOTFOUND   /* the server does not publish it */
#define MXF_KEY_EXPIRED      APR_TIMEUP     /* known, but not valid now */
#define MXF_KEY_UNAVAILABLE  APR_EGENERAL   /* the server's keys could not be fetched */
#define MXF_KEY_NO_DATABASE  APR_EAGAIN     /* the key table cannot be read (no fetch made) */
#define MXF_KEY_BUSY         APR_EBUSY      /* MatrixFedKeyFetchConcurrency fetches under way */

/*
 * The public key @a key_id of @a server, valid now, for verifying a request
 * (old_verify_keys never qualify). APR_SUCCESS, or one of the MXF_KEY_*
 * codes with *why (from r->pool). May fetch over the network (bounded by
 * MatrixFedKeyFetchTimeout).
 */
apr_status_t mxf_keys_get(request_rec *r, const struct mxf_srv_conf *conf,
                          const char *server, const char *key_id,
                          unsigned char pk[MXF_ED25519_PK_BYTES], const char **why);

#endif /* mod_matrix_fed_keys_h */
