/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <apr_lib.h>

#include "mxf_acl.h"

int mxf_acl_glob(const char *pattern, const char *s, apr_size_t len)
{
    const char *star_p = NULL;
    apr_size_t i = 0, star_i = 0;

    /* Iterative matching with backtracking to the last '*': linear-ish, no recursion. */
    while (i < len) {
        if (*pattern == '*') {
            star_p = ++pattern;
            star_i = i;
        }
        else if (*pattern && (*pattern == '?'
                              || apr_tolower((unsigned char)*pattern)
                                 == apr_tolower((unsigned char)s[i]))) {
            pattern++;
            i++;
        }
        else if (star_p) {
            pattern = star_p;
            i = ++star_i;
        }
        else {
            return 0;
        }
    }
    while (*pattern == '*') {
        pattern++;
    }
    return *pattern == '\0';
}

int mxf_acl_is_ip_literal(const char *host, apr_size_t len)
{
    char buf[INET6_ADDRSTRLEN + 1];
    unsigned char addr[sizeof(struct in6_addr)];

    /* What parses as an address is one: "1.2.3.4", "[::1]"; "01.2.3.4" or
     * "300.1.1.1" are names (as a resolver would not read them as addresses). */
    if (len >= 2 && host[0] == '[' && host[len - 1] == ']' && len - 2 < sizeof(buf)) {
        memcpy(buf, host + 1, len - 2);
        buf[len - 2] = '\0';
        return inet_pton(AF_INET6, buf, addr) == 1;
    }
    if (len > 0 && len < sizeof(buf)) {
        memcpy(buf, host, len);
        buf[len] = '\0';
        return inet_pton(AF_INET, buf, addr) == 1;
    }
    return 0;
}

/* The host part: the name without a trailing ":port" (brackets kept). */
static apr_size_t host_len(const char *name)
{
    const char *colon;

    if (name[0] == '[') {
        const char *close = strchr(name, ']');
        return close ? (apr_size_t)(close - name + 1) : strlen(name);
    }
    colon = strrchr(name, ':');
    return colon ? (apr_size_t)(colon - name) : strlen(name);
}

static int any_match(const json_t *list, const char *host, apr_size_t len)
{
    size_t i;
    json_t *item;

    if (!json_is_array(list)) {
        return 0;
    }
    json_array_foreach(list, i, item) {
        if (json_is_string(item) && mxf_acl_glob(json_string_value(item), host, len)) {
            return 1;
        }
    }
    return 0;
}

int mxf_acl_allows(const json_t *content, const char *server_name)
{
    apr_size_t len = host_len(server_name);
    const json_t *ip = json_object_get(content, "allow_ip_literals");

    if (!content) {
        return 1;
    }
    if (json_is_false(ip) && mxf_acl_is_ip_literal(server_name, len)) {
        return 0;
    }
    if (any_match(json_object_get(content, "deny"), server_name, len)) {
        return 0;
    }
    return any_match(json_object_get(content, "allow"), server_name, len);
}
