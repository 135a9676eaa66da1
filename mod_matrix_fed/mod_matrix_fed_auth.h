/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * X-Matrix request authentication as httpd authentication.
 *
 * On a request the module claimed for a route without MXF_ROUTE_PUBLIC:
 *   - force_authn makes httpd run authentication even where no Require
 *     line applies (zero configuration);
 *   - check_user_id (registered with ap_hook_check_authn, AP_AUTH_INTERNAL_
 *     PER_URI, first) reads the body once (mxf_http_read_body(): 413
 *     M_TOO_LARGE, 400 M_NOT_JSON), parses the Authorization header(s),
 *     checks the destination, finds the origin's key valid now
 *     (mxf_keys_get()) and verifies the signature over method, the request
 *     target exactly as received (r->unparsed_uri), origin, our server name
 *     and the parsed body. Success: r->user = req->origin = the origin
 *     server, r->ap_auth_type = "X-Matrix". Failure: a 401 M_UNAUTHORIZED
 *     JSON answer is sent from the hook, which then returns DONE;
 *   - the authz provider "matrix-origin" lets Require rules allow or deny
 *     origins by name pattern (apr_fnmatch, case-insensitive):
 *         Require matrix-origin *.example.org example.org
 *         Require not matrix-origin evil.example
 *     It is AUTHZ_NEUTRAL on requests the module does not authenticate;
 *   - error responses httpd itself produces for a claimed request (a
 *     Require denial, say) are rewritten into Matrix JSON errors.
 * The handler dispatch calls mxf_auth_ensure() as a safety net for
 * configurations that skip the authentication phase (Satisfy Any).
 */
#ifndef mod_matrix_fed_auth_h
#define mod_matrix_fed_auth_h

struct mxf_req;

/* The authentication scheme name (r->ap_auth_type, WWW-Authenticate). */
#define MXF_AUTH_TYPE "X-Matrix"

/*
 * Authenticates @a req (see above). Returns OK with req->origin and r->user
 * set, or the status of the error answer already sent (AP_FILTER_ERROR
 * when httpd's filters answered).
 */
int mxf_auth_authenticate(struct mxf_req *req);

/*
 * For the handler dispatch: OK when @a req is authenticated (authenticating
 * it now if the authentication phase did not run), otherwise the value the
 * handler is to return (the error answer has been sent).
 */
int mxf_auth_ensure(struct mxf_req *req);

/* Registers the hooks, the authz provider and the JSON error filter. */
void mxf_auth_register_hooks(apr_pool_t *p);

#endif /* mod_matrix_fed_auth_h */
