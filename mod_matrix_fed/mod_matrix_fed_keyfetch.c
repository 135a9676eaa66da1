/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#include "mod_matrix_fed_private.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netinet/in.h>
#include <resolv.h>
#include <string.h>

#include <apr_lib.h>
#include <apr_strings.h>
#include <curl/curl.h>

#include "mxf_id.h"
#include "mxf_iprange.h"
#include "mxf_json.h"
#include "mxf_serverkeys.h"
#include "mxf_version.h"
#include "mod_matrix_fed_keyfetch.h"

/* ------------------------------------------------------------------ libcurl */

static apr_status_t curl_cleanup(void *unused)
{
    curl_global_cleanup();
    return APR_SUCCESS;
}

apr_status_t mxf_keyfetch_global_init(apr_pool_t *pconf, const char **why)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        *why = "curl_global_init failed";
        return APR_EGENERAL;
    }
    apr_pool_cleanup_register(pconf, NULL, curl_cleanup, apr_pool_cleanup_null);
    return APR_SUCCESS;
}

typedef struct {
    char *buf;
    apr_size_t len, cap;
    apr_pool_t *p;
    int too_large;
} sink_t;

static size_t sink_write(char *data, size_t size, size_t n, void *baton)
{
    sink_t *s = baton;
    apr_size_t add = size * n;

    if (s->len + add > s->cap) {
        s->too_large = 1;
        return 0;                       /* aborts the transfer */
    }
    memcpy(s->buf + s->len, data, add);
    s->len += add;
    return add;
}

/* What one HTTPS GET is to do. */
typedef struct {
    const mxf_keys_conf_t *kc;
    apr_time_t deadline;                /* of the whole fetch */
    int follow;                         /* follow redirects (.well-known) */
    const char *connect_to;             /* "host:port:target:tport" or NULL */
    const apr_array_header_t *deny;     /* addresses not to connect to (NULL: none) */
} get_opts_t;

/* The connections of one GET, checked against MatrixFedKeyFetchDeny. */
typedef struct {
    const apr_array_header_t *deny;
    char refused[INET6_ADDRSTRLEN];     /* the first address refused, "" if none */
} sock_guard_t;

/*
 * Opens the socket of each connection libcurl makes (redirects, every
 * address of a name): the address actually connected to is checked, so a
 * name that resolves (or is made to resolve) inside the network is refused.
 */
static curl_socket_t guarded_socket(void *baton, curlsocktype purpose,
                                    struct curl_sockaddr *a)
{
    sock_guard_t *g = baton;

    if (purpose == CURLSOCKTYPE_IPCXN && g->deny && mxf_iprange_any(g->deny, &a->addr)) {
        if (!g->refused[0]) {
            const void *in = a->family == AF_INET6
                ? (const void *)&((const struct sockaddr_in6 *)&a->addr)->sin6_addr
                : (const void *)&((const struct sockaddr_in *)&a->addr)->sin_addr;
            if (!inet_ntop(a->family, in, g->refused, sizeof(g->refused))) {
                strcpy(g->refused, "?");
            }
        }
        return CURL_SOCKET_BAD;
    }
    return socket(a->family, a->socktype, a->protocol);
}

/*
 * GETs @a url; on HTTP 200 with a body, parses it as a JSON object into
 * *out. APR_SUCCESS, or APR_EGENERAL with *why.
 */
static apr_status_t https_get_json(request_rec *r, const get_opts_t *o, const char *url,
                                   json_t **out, const char **why)
{
    CURL *c;
    CURLcode cc;
    struct curl_slist *connect_to = NULL;
    char errbuf[CURL_ERROR_SIZE] = "";
    sink_t sink;
    sock_guard_t guard;
    long code = 0;
    apr_interval_time_t left = o->deadline - apr_time_now();
    apr_interval_time_t limit = mxf_keys_fetch_timeout(o->kc);
    const char *reason = NULL;

    if (left <= 0) {
        *why = apr_psprintf(r->pool, "%s: no time left for the request", url);
        return APR_EGENERAL;
    }
    if (left < limit) {
        limit = left;
    }
    if (!(c = curl_easy_init())) {
        *why = "curl_easy_init failed";
        return APR_EGENERAL;
    }
    sink.p = r->pool;
    sink.cap = MXF_KEYFETCH_MAX_RESPONSE;
    sink.buf = apr_palloc(r->pool, sink.cap + 1);
    sink.len = 0;
    sink.too_large = 0;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    /*
     * No proxy from the environment (https_proxy, ALL_PROXY in httpd's
     * envvars): MatrixFedKeyFetchDeny would check the proxy's address, not
     * the server's, and the proxy would connect wherever it is told.
     */
    curl_easy_setopt(c, CURLOPT_PROXY, "");
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "https");
#else
    curl_easy_setopt(c, CURLOPT_PROTOCOLS, (long)CURLPROTO_HTTPS);
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS, (long)CURLPROTO_HTTPS);
#endif
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, o->follow ? 1L : 0L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 3L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)apr_time_as_msec(limit) + 1);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)apr_time_as_msec(limit) + 1);
    curl_easy_setopt(c, CURLOPT_MAXFILESIZE, (long)MXF_KEYFETCH_MAX_RESPONSE);
    curl_easy_setopt(c, CURLOPT_USERAGENT, MXF_PACKAGE_NAME "/" MXF_PACKAGE_VERSION);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, mxf_keys_tls_verify(o->kc) ? 1L : 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, mxf_keys_tls_verify(o->kc) ? 2L : 0L);
    if (o->kc->ca_file) {
        curl_easy_setopt(c, CURLOPT_CAINFO, o->kc->ca_file);
    }
    if (o->connect_to) {
        connect_to = curl_slist_append(NULL, o->connect_to);
        curl_easy_setopt(c, CURLOPT_CONNECT_TO, connect_to);
    }
    guard.deny = o->deny;
    guard.refused[0] = '\0';
    curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, guarded_socket);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, &guard);
    cc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(c);
    curl_slist_free_all(connect_to);

    if (sink.too_large || cc == CURLE_FILESIZE_EXCEEDED) {
        *why = apr_psprintf(r->pool, "%s: response larger than %d bytes", url,
                            MXF_KEYFETCH_MAX_RESPONSE);
        return APR_EGENERAL;
    }
    if (cc != CURLE_OK && guard.refused[0]) {
        *why = apr_psprintf(r->pool, "%s: not fetched: its address %s is in a range "
                            "MatrixFedKeyFetchDeny denies", url, guard.refused);
        return APR_EGENERAL;
    }
    if (cc != CURLE_OK) {
        *why = apr_psprintf(r->pool, "%s: %s", url, *errbuf ? errbuf : curl_easy_strerror(cc));
        return APR_EGENERAL;
    }
    if (code != 200) {
        *why = apr_psprintf(r->pool, "%s: HTTP status %ld", url, code);
        return APR_EGENERAL;
    }
    if (mxf_json_parse(r->pool, sink.buf, sink.len, 0, out, &reason) != APR_SUCCESS) {
        *why = apr_psprintf(r->pool, "%s: not a JSON object: %s", url, reason);
        return APR_EGENERAL;
    }
    return APR_SUCCESS;
}

/* ------------------------------------------------------------------ discovery */

/* Splits "host[:port]" ("[v6]:port" too); *port 0 when absent. */
static void split_host_port(apr_pool_t *p, const char *name, const char **host, int *port)
{
    const char *colon;

    *port = 0;
    if (name[0] == '[') {
        const char *close = strchr(name, ']');
        *host = close ? apr_pstrmemdup(p, name, (apr_size_t)(close - name + 1)) : name;
        if (close && close[1] == ':') {
            *port = atoi(close + 2);
        }
        return;
    }
    colon = strrchr(name, ':');
    if (colon) {
        *host = apr_pstrmemdup(p, name, (apr_size_t)(colon - name));
        *port = atoi(colon + 1);
    }
    else {
        *host = name;
    }
}

static int is_ip_literal(const char *host)
{
    struct in_addr a4;

    return host[0] == '[' || inet_pton(AF_INET, host, &a4) == 1;
}

/*
 * The best SRV target of @a name ("target:port" in *target), by lowest
 * priority then highest weight. APR_NOTFOUND when there is none.
 */
static apr_status_t srv_lookup(apr_pool_t *p, const char *name, const char **target)
{
    struct __res_state st;
    /* The largest DNS message (over TCP); res_nquery() returns an answer's
     * full length even when it kept only what fits. */
    const int size = 65536;
    unsigned char *answer = apr_palloc(p, (apr_size_t)size);
    ns_msg msg;
    int len, i, best_prio = 65536, best_weight = -1;

    memset(&st, 0, sizeof(st));
    if (res_ninit(&st) != 0) {
        return APR_NOTFOUND;
    }
    st.retrans = 2;
    st.retry = 1;
    len = res_nquery(&st, name, ns_c_in, ns_t_srv, answer, size);
    res_nclose(&st);
    if (len <= 0 || len > size || ns_initparse(answer, len, &msg) < 0) {
        return APR_NOTFOUND;
    }
    *target = NULL;
    for (i = 0; i < ns_msg_count(msg, ns_s_an); i++) {
        ns_rr rr;
        const unsigned char *rd;
        char host[NS_MAXDNAME];
        int prio, weight, port;

        if (ns_parserr(&msg, ns_s_an, i, &rr) < 0 || ns_rr_type(rr) != ns_t_srv
            || ns_rr_rdlen(rr) < 7) {
            continue;
        }
        rd = ns_rr_rdata(rr);
        prio = (rd[0] << 8) | rd[1];
        weight = (rd[2] << 8) | rd[3];
        port = (rd[4] << 8) | rd[5];
        if (dn_expand(ns_msg_base(msg), ns_msg_end(msg), rd + 6, host, sizeof(host)) < 0
            || !host[0] || strcmp(host, ".") == 0 || port == 0) {
            continue;
        }
        if (prio < best_prio || (prio == best_prio && weight > best_weight)) {
            best_prio = prio;
            best_weight = weight;
            *target = apr_psprintf(p, "%s:%d", host, port);
        }
    }
    return *target ? APR_SUCCESS : APR_NOTFOUND;
}

/*
 * For a host name without a port: its SRV target, or port 8448. Sets the
 * base URL (certificate and Host: @a host) and the connect-to override.
 */
static void resolve_by_srv(apr_pool_t *p, const char *host, const char **base,
                           const char **connect_to)
{
    const char *target = NULL;

    if (srv_lookup(p, apr_pstrcat(p, "_matrix-fed._tcp.", host, NULL), &target)
            == APR_SUCCESS
        || srv_lookup(p, apr_pstrcat(p, "_matrix._tcp.", host, NULL), &target)
            == APR_SUCCESS) {
        *base = apr_pstrcat(p, "https://", host, NULL);
        *connect_to = apr_psprintf(p, "%s:443:%s", host, target);
        return;
    }
    *base = apr_psprintf(p, "https://%s:8448", host);
    *connect_to = NULL;
}

/*
 * Where to reach @a server: a base URL ("https://host[:port]") and an
 * optional CURLOPT_CONNECT_TO entry; *mapped_here set when the base URL is
 * the operator's (MatrixFedKeyServerURL), which MatrixFedKeyFetchDeny
 * does not apply to.
 */
static void resolve_server(request_rec *r, const mxf_keys_conf_t *kc, const char *server,
                           apr_time_t deadline, const char **base, const char **connect_to,
                           int *mapped_here)
{
    const char *host, *mapped = kc->key_urls ? apr_table_get(kc->key_urls, server) : NULL;
    const char *why = NULL;
    int port;
    json_t *wk = NULL;
    get_opts_t o = { kc, deadline, 1, NULL, mxf_keys_fetch_deny(kc) };

    *connect_to = NULL;
    *mapped_here = mapped != NULL;
    if (mapped) {
        *base = mapped;
        return;
    }
    split_host_port(r->pool, server, &host, &port);
    if (is_ip_literal(host) || port) {
        *base = apr_psprintf(r->pool, "https://%s:%d", host, port ? port : 8448);
        return;
    }
    if (https_get_json(r, &o, apr_pstrcat(r->pool, "https://", host,
                                          "/.well-known/matrix/server", NULL),
                       &wk, &why) == APR_SUCCESS) {
        const json_t *m = json_object_get(wk, "m.server");
        const char *dhost;
        int dport;
        if (json_is_string(m) && mxf_id_server_name_valid(json_string_value(m),
                                                          json_string_length(m))) {
            split_host_port(r->pool, json_string_value(m), &dhost, &dport);
            if (is_ip_literal(dhost) || dport) {
                *base = apr_psprintf(r->pool, "https://%s:%d", dhost, dport ? dport : 8448);
            }
            else {
                resolve_by_srv(r->pool, dhost, base, connect_to);
            }
            ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, MXFLOGNO(25000)
                          "%s delegates federation to %s: keys from %s", server,
                          json_string_value(m), *base);
            return;
        }
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, MXFLOGNO(25001)
                      "%s: .well-known/matrix/server has no valid m.server", server);
    }
    else {
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, MXFLOGNO(25002)
                      "%s: no .well-known delegation (%s)", server, why);
    }
    resolve_by_srv(r->pool, host, base, connect_to);
}

/* ------------------------------------------------------------------ fetching */

static apr_status_t fetch_direct(request_rec *r, const mxf_keys_conf_t *kc,
                                 const char *server, apr_time_t deadline,
                                 apr_array_header_t **keys, const json_t **obj,
                                 const char **why)
{
    const char *base, *url, *reason = NULL;
    get_opts_t o = { kc, deadline, 0, NULL, NULL };
    json_t *resp = NULL;
    int mapped;

    resolve_server(r, kc, server, deadline, &base, &o.connect_to, &mapped);
    o.deny = mapped ? NULL : mxf_keys_fetch_deny(kc);   /* the operator's own URLs go */
    url = apr_pstrcat(r->pool, base, "/_matrix/key/v2/server", NULL);
    if (https_get_json(r, &o, url, &resp, why) != APR_SUCCESS) {
        return APR_EGENERAL;
    }
    if (mxf_serverkeys_verify(r->pool, resp, server, apr_time_as_msec(apr_time_now()),
                              keys, &reason) != APR_SUCCESS) {
        *why = apr_psprintf(r->pool, "%s: %s", url, reason);
        return APR_EGENERAL;
    }
    *obj = resp;
    return APR_SUCCESS;
}

static apr_status_t fetch_notary(request_rec *r, const mxf_keys_conf_t *kc,
                                 const mxf_notary_t *n, const char *server,
                                 apr_time_t deadline, apr_array_header_t **keys,
                                 const json_t **obj, const char **why)
{
    const char *base, *url, *reason = NULL;
    get_opts_t o = { kc, deadline, 0, NULL, NULL };
    apr_int64_t now = apr_time_as_msec(apr_time_now());
    int mapped;
    json_t *resp = NULL, *item;
    const json_t *list, *best = NULL;
    apr_int64_t best_until = 0;
    size_t i;

    resolve_server(r, kc, n->name, deadline, &base, &o.connect_to, &mapped);
    o.deny = mapped ? NULL : mxf_keys_fetch_deny(kc);
    url = apr_psprintf(r->pool, "%s/_matrix/key/v2/query/%s?minimum_valid_until_ts=%"
                       APR_INT64_T_FMT, base, ap_escape_uri(r->pool, server), now);
    if (https_get_json(r, &o, url, &resp, why) != APR_SUCCESS) {
        return APR_EGENERAL;
    }
    list = json_object_get(resp, "server_keys");
    if (!json_is_array(list)) {
        *why = apr_psprintf(r->pool, "%s: no server_keys array", url);
        return APR_EGENERAL;
    }
    /*
     * The notary may answer with several documents of the server: the one
     * that verifies and lives longest is taken; one that does not verify is
     * passed over, as the reference homeserver does.
     */
    *why = apr_psprintf(r->pool, "%s: no keys of %s in the answer", url, server);
    json_array_foreach(list, i, item) {
        const json_t *name = json_object_get(item, "server_name");
        const json_t *until = json_object_get(item, "valid_until_ts");
        apr_array_header_t *found = NULL;

        if (!json_is_string(name) || strcmp(json_string_value(name), server) != 0) {
            continue;
        }
        if (mxf_serverkeys_check_signer(r->pool, item, n->name, n->pk, &reason)
                != APR_SUCCESS
            || mxf_serverkeys_verify(r->pool, item, server, now, &found, &reason)
                != APR_SUCCESS) {
            if (!best) {
                *why = apr_psprintf(r->pool, "%s: %s", url, reason);
            }
            continue;
        }
        if (!best || json_integer_value(until) > best_until) {
            best = item;
            best_until = json_integer_value(until);
            *keys = found;
        }
    }
    if (!best) {
        return APR_EGENERAL;
    }
    *obj = best;
    return APR_SUCCESS;
}

apr_status_t mxf_keyfetch(request_rec *r, const mxf_keys_conf_t *kc, const char *server,
                          apr_interval_time_t budget, apr_array_header_t **keys,
                          const json_t **obj, const char **source, const char **why)
{
    apr_time_t start = apr_time_now();
    apr_interval_time_t timeout = mxf_keys_fetch_timeout(kc);
    const char *reason = NULL, *all;
    int i;

    /* The direct fetch (with discovery) gets up to two request timeouts. */
    if (fetch_direct(r, kc, server, start + (2 * timeout < budget ? 2 * timeout : budget),
                     keys, obj, &reason) == APR_SUCCESS) {
        *source = "direct";
        return APR_SUCCESS;
    }
    all = apr_pstrcat(r->pool, "direct: ", reason, NULL);
    for (i = 0; kc->notaries && i < kc->notaries->nelts; i++) {
        const mxf_notary_t *n = &APR_ARRAY_IDX(kc->notaries, i, mxf_notary_t);
        if (fetch_notary(r, kc, n, server, start + budget, keys, obj, &reason)
            == APR_SUCCESS) {
            *source = apr_pstrcat(r->pool, "notary:", n->name, NULL);
            return APR_SUCCESS;
        }
        all = apr_pstrcat(r->pool, all, "; notary ", n->name, ": ", reason, NULL);
    }
    *why = all;
    return APR_EGENERAL;
}
