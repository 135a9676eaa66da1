/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#include <string.h>

#include <arpa/inet.h>

#include <apr_strings.h>

#include "mxf_id.h"

#define HASH_B64_CHARS 43   /* unpadded base64 of 32 bytes */

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

int mxf_id_utf8_valid(const char *s, apr_size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    apr_size_t i = 0;

    while (i < len) {
        unsigned c = u[i];
        unsigned cp, n, k;

        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1; cp = c & 0x1f;
        }
        else if (c >= 0xe0 && c <= 0xef) {
            n = 2; cp = c & 0x0f;
        }
        else if (c >= 0xf0 && c <= 0xf4) {
            n = 3; cp = c & 0x07;
        }
        else {
            return 0;               /* continuation byte, overlong lead or > U+13FFFF */
        }
        if (len - i <= n) {
            return 0;
        }
        for (k = 1; k <= n; k++) {
            if ((u[i + k] & 0xc0) != 0x80) {
                return 0;
            }
            cp = (cp << 6) | (u[i + k] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff))
            || (cp >= 0xd800 && cp <= 0xdfff)) {
            return 0;
        }
        i += n + 1;
    }
    return 1;
}

/* A decimal number of 1 to @a maxdigits digits; its value in *val. */
static int decimal(const char *s, apr_size_t len, apr_size_t maxdigits, unsigned long *val)
{
    apr_size_t i;

    if (len == 0 || len > maxdigits) {
        return 0;
    }
    *val = 0;
    for (i = 0; i < len; i++) {
        if (!is_digit(s[i])) {
            return 0;
        }
        *val = *val * 10 + (unsigned long)(s[i] - '0');
    }
    return 1;
}

/* Four dotted numbers of 1-3 digits: the shape of an IPv4 literal. */
static int ipv4_shaped(const char *s, apr_size_t len)
{
    apr_size_t i, run = 0, dots = 0;

    for (i = 0; i < len; i++) {
        if (s[i] == '.') {
            if (run == 0) {
                return 0;
            }
            dots++;
            run = 0;
        }
        else if (is_digit(s[i]) && run < 3) {
            run++;
        }
        else {
            return 0;
        }
    }
    return dots == 3 && run > 0;
}

static int ipv4_valid(const char *s, apr_size_t len)
{
    apr_size_t i, start = 0;
    unsigned long v;

    for (i = 0; i <= len; i++) {
        if (i == len || s[i] == '.') {
            if (!decimal(s + start, i - start, 3, &v) || v > 255) {
                return 0;
            }
            start = i + 1;
        }
    }
    return 1;
}

static int ipv6_valid(const char *s, apr_size_t len)
{
    char buf[46];
    unsigned char addr[16];
    apr_size_t i;

    if (len < 2 || len > 45) {
        return 0;
    }
    for (i = 0; i < len; i++) {
        char c = s[i];
        if (!(is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
              || c == ':' || c == '.')) {
            return 0;
        }
    }
    memcpy(buf, s, len);
    buf[len] = '\0';
    return inet_pton(AF_INET6, buf, addr) == 1;
}

int mxf_id_server_name_valid(const char *s, apr_size_t len)
{
    apr_size_t hostlen = len, i;

    if (s == NULL || len == 0 || len > MXF_ID_MAX_BYTES) {
        return 0;
    }
    if (s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (close == NULL || !ipv6_valid(s + 1, (apr_size_t)(close - s) - 1)) {
            return 0;
        }
        hostlen = (apr_size_t)(close - s) + 1;
        if (hostlen < len && s[hostlen] != ':') {
            return 0;
        }
    }
    else {
        const char *colon = memchr(s, ':', len);
        if (colon) {
            hostlen = (apr_size_t)(colon - s);
        }
        if (hostlen == 0) {
            return 0;
        }
        if (ipv4_shaped(s, hostlen)) {
            if (!ipv4_valid(s, hostlen)) {
                return 0;
            }
        }
        else {
            for (i = 0; i < hostlen; i++) {
                if (!(is_alpha(s[i]) || is_digit(s[i]) || s[i] == '-' || s[i] == '.')) {
                    return 0;
                }
            }
        }
    }
    if (hostlen < len) {
        unsigned long port;
        /* s[hostlen] is ':' */
        if (!decimal(s + hostlen + 1, len - hostlen - 1, 5, &port)
            || port < 1 || port > 65535) {
            return 0;
        }
    }
    return 1;
}

/*
 * sigil localpart ":" server_name, localpart UTF-8 without ":" or NUL,
 * of at least @a minlocal bytes.
 */
static int sigil_local_server(const char *s, apr_size_t len, char sigil, apr_size_t minlocal)
{
    const char *colon;
    apr_size_t local;

    if (s == NULL || len < 3 || len > MXF_ID_MAX_BYTES || s[0] != sigil) {
        return 0;
    }
    colon = memchr(s + 1, ':', len - 1);
    if (colon == NULL) {
        return 0;
    }
    local = (apr_size_t)(colon - s) - 1;
    if (local < minlocal || memchr(s + 1, '\0', local)
        || !mxf_id_utf8_valid(s + 1, local)) {
        return 0;
    }
    return mxf_id_server_name_valid(colon + 1, len - local - 2);
}

/* sigil + 43 characters of the alphabet, decoding to 32 bytes. */
static int sigil_hash(const char *s, apr_size_t len, char sigil, int urlsafe)
{
    apr_size_t i;

    if (s == NULL || len != 1 + HASH_B64_CHARS || s[0] != sigil) {
        return 0;
    }
    for (i = 1; i < len; i++) {
        char c = s[i];
        if (is_alpha(c) || is_digit(c)) {
            continue;
        }
        if (urlsafe ? (c == '-' || c == '_') : (c == '+' || c == '/')) {
            continue;
        }
        return 0;
    }
    return 1;
}

int mxf_id_user_valid(const char *s, apr_size_t len)
{
    return sigil_local_server(s, len, '@', 0);
}

int mxf_id_user_valid_strict(const char *s, apr_size_t len)
{
    apr_size_t i;

    if (!sigil_local_server(s, len, '@', 1)) {
        return 0;
    }
    for (i = 1; s[i] != ':'; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || is_digit(c) || c == '.' || c == '_' || c == '='
              || c == '-' || c == '/' || c == '+')) {
            return 0;
        }
    }
    return 1;
}

int mxf_id_room_valid(const char *s, apr_size_t len, const mxf_roomver_t *rv)
{
    if (rv == NULL) {
        return sigil_local_server(s, len, '!', 0) || sigil_hash(s, len, '!', 1);
    }
    if (rv->room_id_is_create_hash) {
        return sigil_hash(s, len, '!', 1);
    }
    return sigil_local_server(s, len, '!', 0);
}

int mxf_id_event_valid(const char *s, apr_size_t len, const mxf_roomver_t *rv)
{
    if (rv == NULL) {
        return sigil_local_server(s, len, '$', 1) || sigil_hash(s, len, '$', 0)
               || sigil_hash(s, len, '$', 1);
    }
    switch (rv->event_id_format) {
    case MXF_EVID_CARRIED:
        return sigil_local_server(s, len, '$', 1);
    case MXF_EVID_HASH_STD:
        return sigil_hash(s, len, '$', 0);
    case MXF_EVID_HASH_URLSAFE:
        return sigil_hash(s, len, '$', 1);
    }
    return 0;
}

int mxf_id_event_plausible(const char *s, apr_size_t len)
{
    return s != NULL && len >= 2 && len <= MXF_ID_MAX_BYTES && s[0] == '$'
           && memchr(s, '\0', len) == NULL && mxf_id_utf8_valid(s, len);
}

int mxf_id_alias_valid(const char *s, apr_size_t len)
{
    return sigil_local_server(s, len, '#', 0);
}

#define ED25519_PREFIX "ed25519:"

int mxf_id_key_id_is_ed25519(const char *key_id)
{
    return key_id != NULL && strncmp(key_id, ED25519_PREFIX, sizeof(ED25519_PREFIX) - 1) == 0;
}

int mxf_id_key_id_valid(const char *s, apr_size_t len)
{
    apr_size_t i, n = sizeof(ED25519_PREFIX) - 1;

    if (s == NULL || len <= n || len > MXF_ID_MAX_BYTES || memcmp(s, ED25519_PREFIX, n) != 0) {
        return 0;
    }
    for (i = n; i < len; i++) {
        if (!(is_alpha(s[i]) || is_digit(s[i]) || s[i] == '_')) {
            return 0;
        }
    }
    return 1;
}

const char *mxf_id_server_of(apr_pool_t *p, const char *id)
{
    const char *colon;

    if (id == NULL || !(id[0] == '@' || id[0] == '!' || id[0] == '$' || id[0] == '#')) {
        return NULL;
    }
    colon = strchr(id + 1, ':');
    if (colon == NULL || !mxf_id_server_name_valid(colon + 1, strlen(colon + 1))) {
        return NULL;
    }
    return apr_pstrdup(p, colon + 1);
}
