/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#include "mod_matrix_fed_private.h"

#include <errno.h>
#include <stdlib.h>

#include <apr_lib.h>
#include <apr_strings.h>
#include <http_core.h>

#include "mxf_id.h"
#include "mod_matrix_fed_config.h"
#include "mod_matrix_fed_db.h"
#include "mod_matrix_fed_keys.h"

#define UNSET_INT (-1)

#define MERGE_PTR(field) conf->field = add->field ? add->field : base->field
#define MERGE_INT(field) \
    conf->field = add->field != UNSET_INT ? add->field : base->field

void *mxf_config_create_srv(apr_pool_t *p, server_rec *s)
{
    mxf_srv_conf_t *conf = apr_pcalloc(p, sizeof(*conf));

    conf->s = s;
    conf->enabled = UNSET_INT;
    conf->keys = mxf_keys_conf_create(p);
    conf->max_body = UNSET_INT;
    conf->gme_limit = UNSET_INT;
    conf->backfill_limit = UNSET_INT;
    conf->query_slots = UNSET_INT;
    conf->query_wait = UNSET_INT;
    conf->query_timeout = UNSET_INT;
    conf->stream_timeout = UNSET_INT;
    return conf;
}

void *mxf_config_merge_srv(apr_pool_t *p, void *basev, void *addv)
{
    const mxf_srv_conf_t *base = basev, *add = addv;
    mxf_srv_conf_t *conf = apr_pcalloc(p, sizeof(*conf));

    conf->s = add->s;
    MERGE_INT(enabled);
    MERGE_PTR(server_name);
    conf->keys = mxf_keys_conf_merge(p, base->keys, add->keys);
    /* Retired keys belong to a server name: a host that is another Matrix
     * server does not publish the main server's. */
    if (!add->keys->old_keys && add->server_name && base->server_name
        && strcmp(add->server_name, base->server_name) != 0) {
        conf->keys->old_keys = NULL;
    }
    MERGE_INT(max_body);
    MERGE_INT(gme_limit);
    MERGE_INT(backfill_limit);
    /* Global only: only the main server's values are ever read. */
    MERGE_INT(query_slots);
    MERGE_INT(query_wait);
    MERGE_INT(query_timeout);
    MERGE_INT(stream_timeout);
    /* The key file and the key loaded from it always travel together. */
    if (add->signing_key_file) {
        conf->signing_key_file = add->signing_key_file;
        conf->signing_key = add->signing_key;
    }
    else {
        conf->signing_key_file = base->signing_key_file;
        conf->signing_key = base->signing_key;
    }
    return conf;
}

const mxf_srv_conf_t *mxf_config_get(const server_rec *s)
{
    return ap_get_module_config(s->module_config, &matrix_fed_module);
}

int mxf_config_enabled(const mxf_srv_conf_t *conf)
{
    return conf->enabled == 1;
}

apr_off_t mxf_config_max_body(const mxf_srv_conf_t *conf)
{
    return conf->max_body != UNSET_INT ? conf->max_body : MXF_DEFAULT_MAX_BODY;
}

int mxf_config_gme_limit(const mxf_srv_conf_t *conf)
{
    return conf->gme_limit != UNSET_INT ? conf->gme_limit : MXF_DEFAULT_GME_LIMIT;
}

int mxf_config_backfill_limit(const mxf_srv_conf_t *conf)
{
    return conf->backfill_limit != UNSET_INT ? conf->backfill_limit : MXF_DEFAULT_BACKFILL_LIMIT;
}

int mxf_config_query_slots(const mxf_srv_conf_t *conf)
{
    return conf->query_slots != UNSET_INT ? conf->query_slots : 0;
}

apr_interval_time_t mxf_config_query_wait(const mxf_srv_conf_t *conf)
{
    return conf->query_wait != UNSET_INT ? conf->query_wait : MXF_DEFAULT_QUERY_WAIT;
}

apr_interval_time_t mxf_config_query_timeout(const mxf_srv_conf_t *conf)
{
    return conf->query_timeout != UNSET_INT ? conf->query_timeout : MXF_DEFAULT_QUERY_TIMEOUT;
}

apr_interval_time_t mxf_config_stream_timeout(const mxf_srv_conf_t *conf)
{
    return conf->stream_timeout != UNSET_INT ? conf->stream_timeout
                                             : MXF_DEFAULT_STREAM_TIMEOUT;
}

static mxf_srv_conf_t *conf_of(cmd_parms *cmd)
{
    return ap_get_module_config(cmd->server->module_config, &matrix_fed_module);
}

static const char *set_enabled(cmd_parms *cmd, void *dconf, int flag)
{
    mxf_srv_conf_t *conf = conf_of(cmd);
    const char *err = ap_check_cmd_context(cmd, NOT_IN_DIR_LOC_FILE);

    if (err) {
        return err;
    }
    conf->enabled = flag ? 1 : 0;
    if (flag) {
        return mxf_db_find_dbd(cmd);
    }
    return NULL;
}

/*
 * A server name as the spec's grammar has it: a DNS name, an IPv4 literal or
 * a bracketed IPv6 literal, with an optional port of 1-65535 (the core's
 * check, which requests' origins pass too).
 */
static const char *check_server_name(apr_pool_t *p, const char *name)
{
    const char *c;

    if (!*name || strlen(name) > 255) {
        return "must be 1 to 255 characters";
    }
    for (c = name; *c; c++) {
        if (!apr_isalnum(*c) && !strchr("-.:[]", *c)) {
            return apr_psprintf(p, "contains the character '%c', not allowed in a server name", *c);
        }
    }
    if (!mxf_id_server_name_valid(name, strlen(name))) {
        return "is not a server name (hostname, IPv4 or [IPv6] literal, optional :port "
               "of 1-65535)";
    }
    return NULL;
}

static const char *set_server_name(cmd_parms *cmd, void *dconf, const char *name)
{
    const char *err = ap_check_cmd_context(cmd, NOT_IN_DIR_LOC_FILE);
    const char *why;

    if (err) {
        return err;
    }
    if ((why = check_server_name(cmd->temp_pool, name)) != NULL) {
        return apr_psprintf(cmd->pool, "MatrixFedServerName '%s' %s", name, why);
    }
    conf_of(cmd)->server_name = apr_pstrdup(cmd->pool, name);
    return NULL;
}

static const char *set_signing_key(cmd_parms *cmd, void *dconf, const char *path)
{
    mxf_srv_conf_t *conf = conf_of(cmd);
    const char *err = ap_check_cmd_context(cmd, NOT_IN_DIR_LOC_FILE);
    const char *full, *why = NULL;

    if (err) {
        return err;
    }
    full = ap_server_root_relative(cmd->pool, path);
    if (!full) {
        return apr_psprintf(cmd->pool, "MatrixFedSigningKey: invalid path '%s'", path);
    }
    if (mxf_key_load_file(cmd->pool, full, &conf->signing_key, &why) != APR_SUCCESS) {
        return apr_psprintf(cmd->pool, "MatrixFedSigningKey: %s", why);
    }
    if ((err = mxf_keys_check_key_file(cmd->pool, full)) != NULL) {
        return err;
    }
    conf->signing_key_file = full;
    return NULL;
}

const char *mxf_config_parse_count(cmd_parms *cmd, const char *arg, long lo, long hi,
                                   long *out)
{
    char *end;
    long v;

    errno = 0;
    v = apr_isdigit(*arg) ? strtol(arg, &end, 10) : (end = (char *)arg, 0);
    if (errno || end == arg || *end || v < lo || v > hi) {
        return apr_psprintf(cmd->pool, "%s must be a whole number from %ld to %ld, not '%s'",
                            cmd->cmd->name, lo, hi, arg);
    }
    *out = v;
    return NULL;
}

const char *mxf_config_parse_duration(cmd_parms *cmd, const char *arg, apr_interval_time_t lo,
                                      apr_interval_time_t hi, const char *range,
                                      apr_interval_time_t *out)
{
    apr_interval_time_t t;

    if (ap_timeout_parameter_parse(arg, &t, "s") != APR_SUCCESS || t < lo || t > hi) {
        return apr_psprintf(cmd->pool, "%s '%s': expected a duration from %s",
                            cmd->cmd->name, arg, range);
    }
    *out = t;
    return NULL;
}

static const char *set_max_body(cmd_parms *cmd, void *dconf, const char *arg)
{
    long v;
    const char *err = ap_check_cmd_context(cmd, NOT_IN_DIR_LOC_FILE);

    if (err || (err = mxf_config_parse_count(cmd, arg, 1024, 16 * 1024 * 1024, &v))) {
        return err;
    }
    conf_of(cmd)->max_body = v;
    return NULL;
}

static const char *set_limit(cmd_parms *cmd, void *dconf, const char *arg)
{
    long v;
    const char *err = ap_check_cmd_context(cmd, NOT_IN_DIR_LOC_FILE);
    mxf_srv_conf_t *conf = conf_of(cmd);

    if (err || (err = mxf_config_parse_count(cmd, arg, 1, 1000, &v))) {
        return err;
    }
    if (cmd->info == (void *)1) {
        conf->gme_limit = (int)v;
    }
    else {
        conf->backfill_limit = (int)v;
    }
    return NULL;
}

static const char *set_query_slots(cmd_parms *cmd, void *dconf, const char *arg)
{
    long v;
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    if (err) {
        return err;
    }
    if (ap_cstr_casecmp(arg, "off") == 0) {
        v = 0;
    }
    else if (mxf_config_parse_count(cmd, arg, 1, 10000, &v) != NULL) {
        return apr_psprintf(cmd->pool, "%s must be off or a whole number from 1 to 10000,"
                            " not '%s'", cmd->cmd->name, arg);
    }
    conf_of(cmd)->query_slots = (int)v;
    return NULL;
}

static const char *set_query_wait(cmd_parms *cmd, void *dconf, const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    if (err) {
        return err;
    }
    return mxf_config_parse_duration(cmd, arg, 0, apr_time_from_sec(300), "0 to 300s",
                                     &conf_of(cmd)->query_wait);
}

static const char *set_query_timeout(cmd_parms *cmd, void *dconf, const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    if (err) {
        return err;
    }
    return mxf_config_parse_duration(cmd, arg, apr_time_from_msec(100), apr_time_from_sec(3600),
                                     "100ms to 3600s", &conf_of(cmd)->query_timeout);
}

static const char *set_stream_timeout(cmd_parms *cmd, void *dconf, const char *arg)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    if (err) {
        return err;
    }
    return mxf_config_parse_duration(cmd, arg, apr_time_from_msec(100), apr_time_from_sec(3600),
                                     "100ms to 3600s", &conf_of(cmd)->stream_timeout);
}

const command_rec mxf_cmds[] = {
    AP_INIT_FLAG("MatrixFederation", set_enabled, NULL, RSRC_CONF,
                 "On to answer the Matrix federation and key endpoints this module "
                 "implements on this virtual host (default Off)"),
    AP_INIT_TAKE1("MatrixFedServerName", set_server_name, NULL, RSRC_CONF,
                  "This server's Matrix server name, e.g. example.org"),
    AP_INIT_TAKE1("MatrixFedSigningKey", set_signing_key, NULL, RSRC_CONF,
                  "Path of the signing key file ('ed25519 <version> <base64 seed>')"),
    AP_INIT_TAKE1("MatrixFedMaxBodySize", set_max_body, NULL, RSRC_CONF,
                  "Largest request body accepted, in bytes (default 65536)"),
    AP_INIT_TAKE1("MatrixFedMissingEventsLimit", set_limit, (void *)1, RSRC_CONF,
                  "Most events one get_missing_events answer holds (default 20)"),
    AP_INIT_TAKE1("MatrixFedBackfillLimit", set_limit, (void *)2, RSRC_CONF,
                  "Most events one backfill answer holds (default 100)"),
    AP_INIT_TAKE1("MatrixFedQueryConcurrency", set_query_slots, NULL, RSRC_CONF,
                  "Most short database statements (not those of the streamed "
                  "answers) the server runs at once, all child processes together; "
                  "the others wait their turn in arrival order (default off: no limit)"),
    AP_INIT_TAKE1("MatrixFedQueryWait", set_query_wait, NULL, RSRC_CONF,
                  "How long a request waits for its turn under MatrixFedQueryConcurrency "
                  "before it is answered 503 (default 5s; suffixes ms, s, mi, h)"),
    AP_INIT_TAKE1("MatrixFedQueryTimeout", set_query_timeout, NULL, RSRC_CONF,
                  "How long a short database statement may take before the request is "
                  "answered 503 and the connection dropped (default 10s; suffixes ms, s, "
                  "mi, h)"),
    AP_INIT_TAKE1("MatrixFedStreamTimeout", set_stream_timeout, NULL, RSRC_CONF,
                  "How long the statement of a streamed answer (/state, /state_ids, "
                  "/event_auth) may take to give its first row, or the next, before the "
                  "request is answered 503 (or cut short) and the connection dropped "
                  "(default 60s; suffixes ms, s, mi, h)"),
    /* Server keys and key fetching (mod_matrix_fed_keys.c) */
    AP_INIT_TAKE1("MatrixFedKeyValidity", mxf_keys_set_validity, NULL, RSRC_CONF,
                  "How long the keys this server publishes stay valid (valid_until_ts "
                  "= now + this; default 1 day; suffixes ms, s, mi, h)"),
    AP_INIT_TAKE3("MatrixFedOldVerifyKey", mxf_keys_set_old_key, NULL, RSRC_CONF,
                  "A retired key of this server: <key ID> <base64 public key> "
                  "<expired_ts in ms>; repeatable"),
    AP_INIT_TAKE2("MatrixFedTrustedKeyServer", mxf_keys_set_notary, NULL, RSRC_CONF,
                  "A notary server to fetch keys from: <server name> <base64 ed25519 "
                  "public key> (its key is pinned); repeatable"),
    AP_INIT_TAKE2("MatrixFedKeyServerURL", mxf_keys_set_key_url, NULL, RSRC_CONF,
                  "Fetch the keys of <server name> from <https://host[:port]> instead "
                  "of discovering it; repeatable"),
    AP_INIT_FLAG("MatrixFedKeyFetchTLSVerify", mxf_keys_set_tls_verify, NULL, RSRC_CONF,
                 "Verify TLS certificates when fetching keys (default On)"),
    AP_INIT_TAKE1("MatrixFedKeyFetchCAFile", mxf_keys_set_ca_file, NULL, RSRC_CONF,
                  "CA certificates (PEM) for key fetching instead of the system's"),
    AP_INIT_TAKE1("MatrixFedKeyFetchTimeout", mxf_keys_set_interval, (void *)1, RSRC_CONF,
                  "Time limit of each key-fetch HTTP request (default 10s)"),
    AP_INIT_TAKE1("MatrixFedKeyFetchConcurrency", mxf_keys_set_fetch_slots, NULL, RSRC_CONF,
                  "Most key fetches one child process makes at once; past it a request "
                  "whose origin's keys are not known is answered 503 (default 8)"),
    AP_INIT_TAKE1("MatrixFedKeyFetchRetryInterval", mxf_keys_set_interval, (void *)2,
                  RSRC_CONF, "How long a key fetch's outcome (failed or not) is "
                  "remembered before the server is asked again (default 60s)"),
    AP_INIT_ITERATE("MatrixFedKeyFetchDeny", mxf_keys_set_fetch_deny, NULL, RSRC_CONF,
                    "IP address ranges key fetches may not connect to (CIDR; default for "
                    "the default list), or none (default: loopback, private, link-local "
                    "and other reserved ranges; MatrixFedKeyServerURL targets are exempt)"),
    AP_INIT_FLAG("MatrixFedNotary", mxf_keys_set_notary_on, NULL, RSRC_CONF,
                 "Answer the notary endpoints /_matrix/key/v2/query here (default On); "
                 "Off leaves them to whatever else serves the host"),
    AP_INIT_TAKE1("MatrixFedKeyCache", mxf_keys_set_cache, NULL, RSRC_CONF,
                  "Cross-process key cache: a mod_socache provider and its arguments "
                  "(default shmcb when loaded), or none"),
    { NULL }
};

int mxf_config_any_enabled(server_rec *s)
{
    for (; s; s = s->next) {
        if (mxf_config_enabled(mxf_config_get(s))) {
            return 1;
        }
    }
    return 0;
}

int mxf_config_check(apr_pool_t *ptemp, server_rec *s)
{
    int status = OK;

    for (; s; s = s->next) {
        const mxf_srv_conf_t *conf = mxf_config_get(s);

        if (!mxf_config_enabled(conf)) {
            continue;
        }
        const char *host = s->port ? apr_psprintf(ptemp, "%s:%u", s->server_hostname, s->port)
                                   : s->server_hostname;

        if (!conf->server_name) {
            ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, MXFLOGNO(20001)
                         "MatrixFederation is On for %s but MatrixFedServerName is not set",
                         host);
            status = HTTP_INTERNAL_SERVER_ERROR;
        }
        if (!conf->signing_key) {
            ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, MXFLOGNO(20002)
                         "MatrixFederation is On for %s but MatrixFedSigningKey is not set",
                         host);
            status = HTTP_INTERNAL_SERVER_ERROR;
        }
    }
    return status;
}
