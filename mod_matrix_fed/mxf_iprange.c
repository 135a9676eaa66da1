/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#include "mxf_iprange.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <apr_strings.h>

const char *const mxf_iprange_default_deny[] = {
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
    "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    "::/128", "::1/128", "64:ff9b::/96", "100::/64", "2001:db8::/32", "fc00::/7",
    "fe80::/10", "fec0::/10", "ff00::/8",
    NULL
};

apr_status_t mxf_iprange_parse(const char *text, mxf_iprange_t *out)
{
    char buf[64], *slash, *end;
    long bits;
    int max, i;

    if (!text || strlen(text) >= sizeof(buf)) {
        return APR_EINVAL;
    }
    strcpy(buf, text);
    memset(out, 0, sizeof(*out));
    if ((slash = strchr(buf, '/')) != NULL) {
        *slash++ = '\0';
    }
    if (inet_pton(AF_INET, buf, out->addr) == 1) {
        out->family = AF_INET;
        max = 32;
    }
    else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
        out->family = AF_INET6;
        max = 128;
    }
    else {
        return APR_EINVAL;
    }
    bits = max;
    if (slash) {
        errno = 0;
        bits = strtol(slash, &end, 10);
        if (!*slash || *end || errno || bits < 0 || bits > max) {
            return APR_EINVAL;
        }
    }
    out->bits = (int)bits;
    /* No host bits below the prefix: "10.1.0.0/8" is a typo, not a range. */
    for (i = 0; i < max / 8; i++) {
        int keep = out->bits - 8 * i;
        unsigned char mask = keep >= 8 ? 0xff : keep <= 0 ? 0 : (unsigned char)(0xff << (8 - keep));
        if (out->addr[i] & ~mask) {
            return APR_EINVAL;
        }
    }
    return APR_SUCCESS;
}

int mxf_iprange_match(const mxf_iprange_t *range, int family, const unsigned char *addr)
{
    static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
    int full, rest;

    if (family == AF_INET6 && range->family == AF_INET && memcmp(addr, mapped, 12) == 0) {
        family = AF_INET;
        addr += 12;
    }
    if (family != range->family) {
        return 0;
    }
    full = range->bits / 8;
    rest = range->bits % 8;
    if (memcmp(addr, range->addr, (size_t)full) != 0) {
        return 0;
    }
    return rest == 0
           || ((addr[full] ^ range->addr[full]) & (unsigned char)(0xff << (8 - rest))) == 0;
}

int mxf_iprange_any(const apr_array_header_t *ranges, const struct sockaddr *sa)
{
    const unsigned char *addr;
    int i;

    if (sa->sa_family == AF_INET) {
        addr = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
    }
    else if (sa->sa_family == AF_INET6) {
        addr = (const unsigned char *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
    }
    else {
        return 1;                       /* not an IP connection: refused */
    }
    for (i = 0; ranges && i < ranges->nelts; i++) {
        if (mxf_iprange_match(&APR_ARRAY_IDX(ranges, i, mxf_iprange_t), sa->sa_family, addr)) {
            return 1;
        }
    }
    return 0;
}

apr_array_header_t *mxf_iprange_defaults(apr_pool_t *p)
{
    apr_array_header_t *a = apr_array_make(p, 32, sizeof(mxf_iprange_t));
    int i;

    for (i = 0; mxf_iprange_default_deny[i]; i++) {
        mxf_iprange_t *r = apr_array_push(a);
        if (mxf_iprange_parse(mxf_iprange_default_deny[i], r) != APR_SUCCESS) {
            apr_array_pop(a);           /* cannot happen: the table is checked by the tests */
        }
    }
    return a;
}
