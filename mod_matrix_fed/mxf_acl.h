/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * Server ACLs (m.room.server_acl): whether a server may make requests about
 * a room. Matching is case-insensitive, against the server name without its
 * port; "*" matches any run of characters and "?" exactly one.
 */
#ifndef mxf_acl_h
#define mxf_acl_h

#include "mxf_json.h"

/*
 * Whether @a server_name is allowed by the ACL event content @a content
 * (NULL: the room has no ACL, everyone is allowed). Order: an IP literal
 * when allow_ip_literals is false is denied; a deny match is denied; an
 * allow match is allowed; anything else is denied (a missing "allow"
 * denies all).
 */
int mxf_acl_allows(const json_t *content, const char *server_name);

/* Glob match, ASCII case-insensitive ("*", "?"), on @a len bytes of @a s. */
int mxf_acl_glob(const char *pattern, const char *s, apr_size_t len);

/* Whether the host part of @a server_name (port removed) is an IP literal. */
int mxf_acl_is_ip_literal(const char *host, apr_size_t len);

#endif /* mxf_acl_h */
