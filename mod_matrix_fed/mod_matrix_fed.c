/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * mod_matrix_fed: the Matrix server-server API for room history, served
 * from a PostgreSQL room DAG through mod_dbd.
 *
 * Request flow: translate_name claims the paths of the endpoints the module
 * implements (before mod_proxy and mod_alias see them), map_to_storage keeps
 * httpd off the file system for them, <Location> configuration still
 * applies, and the handler answers. Everything else is left to the rest of
 * httpd untouched.
 */
#include "mod_matrix_fed_private.h"

#include <apr_strings.h>
#include <http_core.h>
#include <http_protocol.h>
#include <http_request.h>
#include <jansson.h>
#include <sodium.h>

#include "mod_matrix_fed.h"
#include "mxf_version.h"
#include "mod_matrix_fed_config.h"
#include "mod_matrix_fed_auth.h"
#include "mod_matrix_fed_db.h"
#include "mod_matrix_fed_keys.h"
#include "mod_matrix_fed_router.h"

/* ------------------------------------------------------------------ logging */

static int log_is_level(void *baton, mxf_log_level_t level)
{
    server_rec *s = baton;

    return APLOG_IS_LEVEL(s, (int)level);
}

static void log_print(const char *file, int line, mxf_log_level_t level,
                      apr_status_t rv, void *baton, apr_pool_t *p,
                      const char *fmt, va_list ap)
    __attribute__((format(printf, 7, 0)));

static void log_print(const char *file, int line, mxf_log_level_t level,
                      apr_status_t rv, void *baton, apr_pool_t *p,
                      const char *fmt, va_list ap)
{
    server_rec *s = baton;
    apr_pool_t *tmp;
    const char *msg;

    /* Format into a short-lived pool: the caller's may live for the process. */
    apr_pool_create(&tmp, p);
    msg = apr_pvsprintf(tmp, fmt, ap);
    ap_log_error(file, line, APLOG_MODULE_INDEX, (int)level, rv, s, "%s", msg);
    apr_pool_destroy(tmp);
}

/* ------------------------------------------------------------------ hooks */

/*
 * Checks of the whole configuration that need every virtual host merged.
 * In check_config, not post_config: "apachectl configtest" runs them too, so
 * a configuration that would not start is caught before a reload takes
 * the running server down.
 */
static int mxf_check_config(apr_pool_t *pconf, apr_pool_t *plog,
                            apr_pool_t *ptemp, server_rec *s)
{
    return mxf_config_check(ptemp, s);
}

static int mxf_post_config(apr_pool_t *pconf, apr_pool_t *plog,
                           apr_pool_t *ptemp, server_rec *s)
{
    if (sodium_init() < 0) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, 0, s, MXFLOGNO(20007)
                     "libsodium could not be initialised");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    /*
     * jansson's hash seed, chosen here, in the parent, before any request
     * thread (jansson would otherwise seed at the first object it makes).
     */
    json_object_seed(0);
    mxf_log_set(log_is_level, log_print, s);
    ap_add_version_component(pconf, MXF_PACKAGE_NAME "/" MXF_PACKAGE_VERSION);
    return OK;
}

static mxf_req_t *claimed(request_rec *r)
{
    return ap_get_module_config(r->request_config, &matrix_fed_module);
}

/*
 * Takes @a r as the module's: every answer to it, errors included, carries
 * the CORS headers the client-server spec asks of homeservers (so that a
 * browser-based tool can read /version or the keys, as from the homeserver
 * behind) and, as the homeserver's answers do, is not to be cached.
 */
static void claim(request_rec *r, mxf_req_t *req)
{
    const char *cl = apr_table_get(r->headers_in, "Content-Length");
    apr_off_t announced = 0;
    char *end;

    ap_set_module_config(r->request_config, &matrix_fed_module, req);
    /*
     * A body only POST and PUT routes read (mxf_http_read_body()): any other
     * announced body is left unread, and httpd would hold the answer until
     * it has discarded that body or Timeout has passed. Close instead, as
     * for a body refused for its size.
     */
    if (cl && (apr_strtoff(&announced, cl, &end, 10) != APR_SUCCESS || *end)) {
        announced = 1;                  /* malformed: httpd refuses it anyway */
    }
    /* Not ap_request_has_body(): false for a HEAD, whose body httpd still reads. */
    if ((announced > 0 || apr_table_get(r->headers_in, "Transfer-Encoding"))
        && !(req->route && (r->method_number == M_POST || r->method_number == M_PUT))) {
        r->connection->keepalive = AP_CONN_CLOSE;
    }
    apr_table_setn(r->err_headers_out, "Access-Control-Allow-Origin", "*");
    apr_table_setn(r->err_headers_out, "Access-Control-Allow-Methods",
                   "GET, POST, PUT, DELETE, OPTIONS");
    apr_table_setn(r->err_headers_out, "Access-Control-Allow-Headers",
                   "X-Requested-With, Content-Type, Authorization");
    apr_table_setn(r->headers_out, "Cache-Control", "no-cache, no-store, must-revalidate");
}

/*
 * Claims the module's requests before httpd percent-decodes the path, and
 * keeps it from doing so (DONE): the router decodes each path segment
 * itself, so an event ID holding "/" (room version 3, sent as %2F) reaches
 * its endpoint whatever AllowEncodedSlashes says, and a malformed escape
 * gets a Matrix error instead of httpd's error page.
 */
#if AP_MODULE_MAGIC_AT_LEAST(20120211, 109)    /* httpd 2.4.49: pre_translate_name */
static int mxf_pre_translate_name(request_rec *r)
{
    const mxf_srv_conf_t *conf = mxf_config_get(r->server);
    mxf_req_t *req;

    if (!mxf_config_enabled(conf) || r->proxyreq) {
        return DECLINED;
    }
    if ((req = mxf_router_match(r, conf)) == NULL) {
        return DECLINED;
    }
    claim(r, req);
    return DONE;
}
#endif

static int mxf_translate_name(request_rec *r)
{
    const mxf_srv_conf_t *conf = mxf_config_get(r->server);
    mxf_req_t *req = claimed(r);

    if (!mxf_config_enabled(conf) || r->proxyreq) {
        return DECLINED;
    }
#if AP_MODULE_MAGIC_AT_LEAST(20120211, 109)
    /* pre_translate_name ran for this request and matched it already. */
    if (!req) {
        return DECLINED;
    }
#else
    if ((req = mxf_router_match(r, conf)) == NULL) {
        return DECLINED;
    }
    claim(r, req);
#endif
    r->handler = MATRIX_FED_HANDLER;
    r->filename = apr_pstrcat(r->pool, MATRIX_FED_HANDLER ":", r->uri, NULL);
    return OK;
}

/*
 * An ErrorDocument of the host would otherwise answer httpd's own errors
 * under /_matrix/ (a Require in a <Location>, LimitRequestBody, the
 * homeserver unreachable) with an HTML page or a redirect: a request-level
 * custom response, which overrides ErrorDocument, keeps them httpd's own
 * error pages, which the JSON error filter turns into Matrix errors.
 */
static int mxf_post_read_request(request_rec *r)
{
    static const int statuses[] = {
        400, 401, 403, 404, 405, 406, 408, 411, 412, 413, 414, 415, 416, 417, 421, 429, 431,
        500, 501, 502, 503, 504
    };
    const char *path = r->parsed_uri.path;
    apr_size_t i;

    if (r->proxyreq || !path || strncmp(path, "/_matrix/", 9) != 0
        || !mxf_config_enabled(mxf_config_get(r->server))) {
        return DECLINED;
    }
    for (i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
        ap_custom_response(r, statuses[i], "\"");
    }
    return DECLINED;
}

static int mxf_map_to_storage(request_rec *r)
{
    /* Our endpoints are not files: skip the <Directory>/<Files> walk. */
    return claimed(r) ? OK : DECLINED;
}

static int mxf_handler(request_rec *r)
{
    mxf_req_t *req = claimed(r);

    if (!req) {
        return DECLINED;
    }
    /* Keyed on our own claim, not r->handler: a SetHandler or ProxyPass in
     * a surrounding <Location> must not take our endpoints away. */
    r->handler = MATRIX_FED_HANDLER;
    return mxf_router_dispatch(req);
}

static void mxf_register_hooks(apr_pool_t *p)
{
    static const char *const before_proxy[] = { "mod_proxy.c", "mod_alias.c", NULL };

    ap_hook_check_config(mxf_check_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(mxf_post_config, NULL, NULL, APR_HOOK_MIDDLE);
#if AP_MODULE_MAGIC_AT_LEAST(20120211, 109)
    ap_hook_pre_translate_name(mxf_pre_translate_name, NULL, before_proxy, APR_HOOK_FIRST);
#endif
    ap_hook_translate_name(mxf_translate_name, NULL, before_proxy, APR_HOOK_FIRST);
    ap_hook_post_read_request(mxf_post_read_request, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_map_to_storage(mxf_map_to_storage, NULL, NULL, APR_HOOK_FIRST);
    ap_hook_handler(mxf_handler, NULL, NULL, APR_HOOK_REALLY_FIRST);
    mxf_auth_register_hooks(p);
    mxf_keys_register_hooks(p);
    mxf_db_register_hooks(p);
}

module AP_MODULE_DECLARE_DATA matrix_fed_module = {
    STANDARD20_MODULE_STUFF,
    NULL,                       /* per-directory config creator */
    NULL,                       /* per-directory config merger */
    mxf_config_create_srv,      /* per-server config creator */
    mxf_config_merge_srv,       /* per-server config merger */
    mxf_cmds,                   /* command table */
    mxf_register_hooks,
#if defined(AP_MODULE_FLAG_ALWAYS_MERGE)
    AP_MODULE_FLAG_ALWAYS_MERGE
#endif
};
