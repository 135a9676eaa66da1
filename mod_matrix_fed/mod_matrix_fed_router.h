/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * Which requests the module answers, and the handler of each.
 *
 * Each route's leading literal segments are a prefix the module claims on a
 * vhost with MatrixFederation On: a request under a claimed prefix is
 * answered here (404 M_UNRECOGNIZED if no route matches it, 405 if only the
 * method is wrong); every other request falls through to the rest of httpd
 * (typically a ProxyPass to the homeserver).
 */
#ifndef mod_matrix_fed_router_h
#define mod_matrix_fed_router_h

#include "mxf_json.h"
#include "mod_matrix_fed_config.h"

#define MXF_ROUTE_MAX_PARAMS 4

struct mxf_route;

typedef struct mxf_req {
    request_rec *r;
    const mxf_srv_conf_t *conf;
    const struct mxf_route *route;      /* NULL: claimed but unrecognised */
    int allowed;                        /* AP_METHOD_BIT mask of matching routes */
    const char *params[MXF_ROUTE_MAX_PARAMS];  /* percent-decoded path parameters */
    apr_size_t param_lens[MXF_ROUTE_MAX_PARAMS];
    int nparams;
    /*
     * The authenticated origin server (from the X-Matrix signature, also in
     * r->user), or NULL on routes that need no authentication.
     */
    const char *origin;
    /*
     * The request body, read once by mxf_http_read_body() (capped by
     * MatrixFedMaxBodySize), and its parse; NULL when there is none.
     */
    const char *body;
    apr_size_t body_len;
    json_t *body_json;
    int body_read;                      /* mxf_http_read_body() ran */
} mxf_req_t;

typedef int mxf_handler_fn(mxf_req_t *req);

/* Route flags. */
#define MXF_ROUTE_PUBLIC 0x01           /* no X-Matrix authentication (version, keys) */
#define MXF_ROUTE_SLASH  0x02           /* also with one trailing "/" (as the reference
                                         * homeserver routes it) */
#define MXF_ROUTE_NOTARY 0x04           /* only with MatrixFedNotary On */

typedef struct mxf_route {
    int method;                         /* M_GET (HEAD included) or M_POST */
    const char *pattern;                /* literal segments and "{}" parameters */
    mxf_handler_fn *handler;
    unsigned flags;                     /* MXF_ROUTE_* */
} mxf_route_t;

/*
 * Matches @a r against the route table. Returns NULL when the request is not
 * under a prefix the module claims; otherwise a request record with the
 * route (or NULL route, see above) and decoded parameters.
 */
mxf_req_t *mxf_router_match(request_rec *r, const mxf_srv_conf_t *conf);

/*
 * Whether @a path (the request target's path, percent-encoded as received)
 * is under a prefix the module claims; for requests httpd refuses before
 * the module has matched them (its error pages are then made Matrix errors).
 */
int mxf_router_claims(apr_pool_t *p, const mxf_srv_conf_t *conf, const char *path);

/* Answers a claimed request: runs its handler or sends 404/405/400. */
int mxf_router_dispatch(mxf_req_t *req);

/* Handlers (one file per endpoint family). */
mxf_handler_fn mxf_handle_version;
mxf_handler_fn mxf_handle_server_keys;    /* mod_matrix_fed_keys.c */
mxf_handler_fn mxf_handle_key_query;      /* mod_matrix_fed_keys.c */
mxf_handler_fn mxf_handle_get_missing_events;
mxf_handler_fn mxf_handle_backfill;
mxf_handler_fn mxf_handle_event;
mxf_handler_fn mxf_handle_state;
mxf_handler_fn mxf_handle_state_ids;
mxf_handler_fn mxf_handle_event_auth;
mxf_handler_fn mxf_handle_timestamp_to_event;

#endif /* mod_matrix_fed_router_h */
