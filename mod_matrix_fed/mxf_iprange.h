/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * IP address ranges (CIDR), for the addresses key fetches may not connect
 * to (MatrixFedKeyFetchDeny): without such a list, anyone who can send a
 * request naming a server could make this server open connections inside
 * its own network.
 */
#ifndef mxf_iprange_h
#define mxf_iprange_h

#include <sys/socket.h>

#include <apr_errno.h>
#include <apr_pools.h>
#include <apr_tables.h>

typedef struct mxf_iprange {
    int family;                         /* AF_INET or AF_INET6 */
    unsigned char addr[16];             /* network byte order, 4 or 16 bytes used */
    int bits;                           /* prefix length */
} mxf_iprange_t;

/*
 * Parses "address/prefix" or a bare address (its full length) of either
 * family into *out. APR_EINVAL for anything else (a prefix longer than the
 * address, host bits set below it).
 */
apr_status_t mxf_iprange_parse(const char *text, mxf_iprange_t *out);

/*
 * Whether the address @a addr of @a family (4 or 16 bytes) is in @a range.
 * An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is matched as its IPv4
 * address.
 */
int mxf_iprange_match(const mxf_iprange_t *range, int family, const unsigned char *addr);

/* Whether the socket address @a sa is in any range of @a ranges (mxf_iprange_t). */
int mxf_iprange_any(const apr_array_header_t *ranges, const struct sockaddr *sa);

/*
 * The ranges denied when nothing is configured: loopback, private, shared,
 * link-local, documentation, benchmarking, multicast and reserved ranges of
 * both families, NULL-terminated.
 */
extern const char *const mxf_iprange_default_deny[];

/* mxf_iprange_default_deny parsed, from @a p. */
apr_array_header_t *mxf_iprange_defaults(apr_pool_t *p);

#endif /* mxf_iprange_h */
