/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#ifndef mod_matrix_fed_config_h
#define mod_matrix_fed_config_h

#include "mxf_key.h"

/* Per-server configuration. Unset values are -1 / NULL until merged. */
typedef struct mxf_srv_conf {
    server_rec *s;                      /* the server this record was made for */
    int enabled;                        /* MatrixFederation */
    const char *server_name;            /* MatrixFedServerName */
    const char *signing_key_file;       /* MatrixFedSigningKey */
    mxf_signing_key_t *signing_key;     /* loaded from signing_key_file */
    struct mxf_keys_conf *keys;         /* key and key-fetching directives (mod_matrix_fed_keys.h) */
    apr_off_t max_body;                 /* MatrixFedMaxBodySize */
    int gme_limit;                      /* MatrixFedMissingEventsLimit */
    int backfill_limit;                 /* MatrixFedBackfillLimit */
    int query_slots;                    /* MatrixFedQueryConcurrency (0: off; main server) */
    apr_interval_time_t query_wait;     /* MatrixFedQueryWait (main server) */
    apr_interval_time_t query_timeout;  /* MatrixFedQueryTimeout (main server) */
    apr_interval_time_t stream_timeout; /* MatrixFedStreamTimeout (main server) */
} mxf_srv_conf_t;

/* Defaults of the directives above. */
#define MXF_DEFAULT_MAX_BODY        65536
#define MXF_DEFAULT_GME_LIMIT       20
#define MXF_DEFAULT_BACKFILL_LIMIT  100
#define MXF_DEFAULT_QUERY_WAIT      apr_time_from_sec(5)
#define MXF_DEFAULT_QUERY_TIMEOUT   apr_time_from_sec(10)
#define MXF_DEFAULT_STREAM_TIMEOUT  apr_time_from_sec(60)

extern const command_rec mxf_cmds[];

void *mxf_config_create_srv(apr_pool_t *p, server_rec *s);
void *mxf_config_merge_srv(apr_pool_t *p, void *basev, void *addv);

/* The effective configuration of server @a s. */
const mxf_srv_conf_t *mxf_config_get(const server_rec *s);

int mxf_config_enabled(const mxf_srv_conf_t *conf);

/* Whether MatrixFederation is On for @a s or any virtual host after it. */
int mxf_config_any_enabled(server_rec *s);

/* Typed getters: the configured value or the default. */
apr_off_t mxf_config_max_body(const mxf_srv_conf_t *conf);
int mxf_config_gme_limit(const mxf_srv_conf_t *conf);
int mxf_config_backfill_limit(const mxf_srv_conf_t *conf);
int mxf_config_query_slots(const mxf_srv_conf_t *conf);
apr_interval_time_t mxf_config_query_wait(const mxf_srv_conf_t *conf);
apr_interval_time_t mxf_config_query_timeout(const mxf_srv_conf_t *conf);
apr_interval_time_t mxf_config_stream_timeout(const mxf_srv_conf_t *conf);

/*
 * A whole number in [@a lo, @a hi] (digits only: no sign, no spaces) for
 * directive @a cmd into *@a out; NULL, or the error message.
 */
const char *mxf_config_parse_count(cmd_parms *cmd, const char *arg, long lo, long hi,
                                   long *out);

/*
 * A duration for directive @a cmd (a number of seconds, or with a unit:
 * ms, s, mi, h) in [lo, hi], into *out; or an error message naming the
 * directive, the value and @a range (how the bounds read, e.g. "0 to 300s").
 */
const char *mxf_config_parse_duration(cmd_parms *cmd, const char *arg, apr_interval_time_t lo,
                                      apr_interval_time_t hi, const char *range,
                                      apr_interval_time_t *out);

/*
 * Checks every virtual host with MatrixFederation On at start-up. Logs and
 * returns a non-OK status when one cannot serve.
 */
int mxf_config_check(apr_pool_t *ptemp, server_rec *s);

#endif /* mod_matrix_fed_config_h */
