/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * Fetching other servers' keys over HTTPS with libcurl.
 *
 * Where a server is reached (spec "Resolving server names"), unless
 * MatrixFedKeyServerURL names a base URL for it:
 *   - an IP literal, or a host name with an explicit port: that address;
 *   - otherwise GET https://<name>/.well-known/matrix/server (redirects
 *     followed, at most 3, HTTPS only); with a delegated name
 *     "host[:port]": an IP literal or explicit port is used as is, else
 *     SRV _matrix-fed._tcp.<host>, then the deprecated _matrix._tcp.<host>,
 *     else <host>:8448 - the certificate must be valid for <host>;
 *   - without .well-known: the same SRV lookups for <name>, else
 *     <name>:8448 - the certificate must be valid for <name>.
 * Every HTTP request is limited in time (MatrixFedKeyFetchTimeout) and
 * size (MXF_KEYFETCH_MAX_RESPONSE), speaks HTTPS only, and verifies the
 * peer's certificate unless MatrixFedKeyFetchTLSVerify Off.
 */
#ifndef mod_matrix_fed_keyfetch_h
#define mod_matrix_fed_keyfetch_h

#include <apr_tables.h>

#include "mod_matrix_fed_keys.h"

/* Largest key-server (or .well-known) response accepted. */
#define MXF_KEYFETCH_MAX_RESPONSE (256 * 1024)

/* Global libcurl set-up; call once in the parent at post_config. */
apr_status_t mxf_keyfetch_global_init(apr_pool_t *pconf, const char **why);

/*
 * Fetches the keys of @a server: from the server itself, then (if that
 * fails) from each configured notary, whose pinned signature is required.
 * Every response must be self-signed by @a server (mxf_serverkeys_verify()).
 * On success *keys holds mxf_server_key_t entries, *obj the verified Server
 * Keys object they came in (with the notary's signature, when from one)
 * and *source says where they came from ("direct" or "notary:<name>"). On
 * failure *why says why (all attempts). @a budget bounds the time of all
 * requests together.
 */
apr_status_t mxf_keyfetch(request_rec *r, const mxf_keys_conf_t *kc, const char *server,
                          apr_interval_time_t budget, apr_array_header_t **keys,
                          const json_t **obj, const char **source, const char **why);

#endif /* mod_matrix_fed_keyfetch_h */
