/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * Federation request authentication: the "X-Matrix" Authorization scheme
 * (server-server API, "Request Authentication"; digest section 2).
 *
 * Grammar (RFC 9110 section 11.4 and 5.6):
 *
 *     credentials = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
 *     auth-param  = token BWS "=" BWS ( token / quoted-string )
 *     #element    = [ element ] *( OWS "," OWS [ element ] )
 *
 * The scheme and the parameter names are case-insensitive; empty list
 * elements are skipped; unknown parameters are ignored. Quoted values are
 * unescaped (backslash + char -> char). As the spec asks of receivers, an
 * unquoted value may also contain ':'; this parser further accepts '/',
 * '[' and ']' there (unquoted base64 signatures and IPv6 literal server
 * names from lax senders). Control characters are rejected everywhere.
 *
 * Several Authorization headers: httpd joins repeated request headers into
 * one value separated by ", ", so the value the module sees may hold several
 * credentials ("X-Matrix origin=a,key=...,sig=..., X-Matrix origin=b,...").
 * A new credential is recognised, as RFC 9110 intends, by a token followed
 * by a space where a parameter ("token BWS =") would otherwise be expected.
 * mxf_xmatrix_parse_all() splits such values, parses every X-Matrix
 * credential on its own and returns all of them (other schemes are skipped);
 * the module then tries each and accepts the request if any one verifies
 * (see the digest, 2.2 [PRACTICE]). One malformed X-Matrix credential makes
 * the whole request fail: a sender that emits garbage is not guessed at.
 */
#ifndef mxf_xmatrix_h
#define mxf_xmatrix_h

#include <apr_pools.h>
#include <apr_errno.h>
#include <apr_tables.h>

#include "mxf_json.h"
#include "mxf_key.h"

/*
 * Longest accepted parameter value (every parameter, unknown ones too),
 * counted on the wire: backslash escapes included, enclosing quotes not.
 */
#define MXF_XMATRIX_VALUE_MAX 255
/* Longest accepted sig value: 86 base64 chars, 88 padded, with a margin. */
#define MXF_XMATRIX_SIG_MAX 128
/* Most credentials accepted in one request (several Authorization headers). */
#define MXF_XMATRIX_MAX_CREDENTIALS 16
/* Most list elements (parameters, empty ones included) in one credential. */
#define MXF_XMATRIX_MAX_PARAMS 32

/* One parsed X-Matrix credential; strings are unescaped, from the pool. */
typedef struct mxf_xmatrix {
    const char *origin;        /* a valid server name */
    const char *destination;   /* NULL when the sender did not send it */
    const char *key_id;        /* "ed25519:<version>" */
    const char *sig;           /* base64 text as sent (decodes to 64 bytes) */
} mxf_xmatrix_t;

/*
 * Parses one Authorization header value holding exactly one X-Matrix
 * credential. Returns APR_SUCCESS and sets *out, or APR_EINVAL with *why
 * saying what is wrong (never echoing more than a short excerpt of the
 * input). Checks: origin, key and sig present and not repeated; origin (and
 * destination when present) a valid server name; key "ed25519:" +
 * [A-Za-z0-9_]; sig base64 of 64 bytes; value lengths.
 */
apr_status_t mxf_xmatrix_parse(apr_pool_t *p, const char *header_value,
                               mxf_xmatrix_t **out, const char **why);

/*
 * Parses the Authorization header value(s) of one request: @a values holds
 * @a nvalues header values (one per header line, or httpd's ", "-joined
 * value; both work). Every X-Matrix credential is parsed separately and
 * appended to *out, an array of mxf_xmatrix_t * from @a p. Credentials of
 * other schemes, and X-Matrix credentials whose key is of an algorithm
 * other than ed25519 ("alg:version"), are skipped. Returns APR_ENOENT
 * (with *why) when there is no X-Matrix credential at all, APR_EINVAL when
 * any X-Matrix credential or the list itself is malformed or there are too
 * many, or when every X-Matrix credential is of another algorithm.
 */
apr_status_t mxf_xmatrix_parse_all(apr_pool_t *p, const char *const *values,
                                   int nvalues, apr_array_header_t **out,
                                   const char **why);

/*
 * The header value "X-Matrix origin=\"...\",destination=\"...\",key=\"...\",sig=\"...\""
 * in the form the spec asks senders to use (lower-case names, no spaces
 * around commas, quoted values). @a destination may be NULL (omitted).
 */
char *mxf_xmatrix_build(apr_pool_t *p, const char *origin, const char *destination,
                        const char *key_id, const char *sig);

/*
 * The JSON object a federation request signature covers:
 * {"method", "uri", "origin", "destination", "content"}. @a content is the
 * parsed request body, or NULL for a request without one (then "content" is
 * left out). @a destination NULL leaves "destination" out (only for old,
 * pre-v1.3 peers). @a uri is the request target exactly as sent. The result
 * is owned by @a p (it holds a reference to @a content, which it does not
 * modify). NULL if an argument is NULL where it may not be.
 */
json_t *mxf_xmatrix_request_json(apr_pool_t *p, const char *method, const char *uri,
                                 const char *origin, const char *destination,
                                 const json_t *content);

/*
 * Signs a request as @a origin with @a key and sets *header to the full
 * Authorization header value (mxf_xmatrix_build()). APR_EINVAL with *why if
 * the request object cannot be encoded as canonical JSON.
 */
apr_status_t mxf_xmatrix_sign_request(apr_pool_t *p, const char *method, const char *uri,
                                      const char *origin, const char *destination,
                                      const json_t *content, const mxf_signing_key_t *key,
                                      const char **header, const char **why);

/*
 * Verifies the parsed credential @a hdr of a received request with the
 * ed25519 public key @a pk (the key @a hdr->key_id of @a hdr->origin, looked
 * up by the caller). @a destination is OUR server name: the signed object is
 * rebuilt with it whether or not the header carries one, and a header
 * destination that differs from it fails. @a content is the parsed body or
 * NULL. Returns APR_SUCCESS; APR_EACCES (with *why) for a wrong destination
 * or a signature that does not verify; APR_EINVAL for unusable input.
 */
apr_status_t mxf_xmatrix_verify_request(apr_pool_t *p, const mxf_xmatrix_t *hdr,
                                        const char *method, const char *uri,
                                        const char *destination, const json_t *content,
                                        const unsigned char pk[MXF_ED25519_PK_BYTES],
                                        const char **why);

#endif /* mxf_xmatrix_h */
