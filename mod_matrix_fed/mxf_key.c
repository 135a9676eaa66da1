/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#include <string.h>

#include <apr_strings.h>
#include <apr_file_io.h>
#include <sodium.h>

#include "mxf_base64.h"
#include "mxf_key.h"

/* Key files are one or a few short lines; anything bigger is not one. */
#define KEY_FILE_MAX 4096

static apr_status_t wipe_secret(void *data)
{
    sodium_memzero(data, MXF_ED25519_SK_BYTES);
    return APR_SUCCESS;
}

static mxf_signing_key_t *key_alloc(apr_pool_t *p)
{
    mxf_signing_key_t *key = apr_pcalloc(p, sizeof(*key));

    key->sk = apr_pcalloc(p, MXF_ED25519_SK_BYTES);
    apr_pool_cleanup_register(p, key->sk, wipe_secret, apr_pool_cleanup_null);
    return key;
}

int mxf_key_version_valid(const char *version, apr_size_t len)
{
    apr_size_t i;

    if (len == 0 || len > 64) {
        return 0;
    }
    for (i = 0; i < len; i++) {
        char c = version[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '_')) {
            return 0;
        }
    }
    return 1;
}

static const char *next_field(const char **s, apr_size_t *len)
{
    const char *start;

    while (**s == ' ' || **s == '\t') {
        (*s)++;
    }
    start = *s;
    while (**s && **s != ' ' && **s != '\t' && **s != '\r' && **s != '\n') {
        (*s)++;
    }
    *len = (apr_size_t)(*s - start);
    return *len ? start : NULL;
}

apr_status_t mxf_key_parse(apr_pool_t *p, const char *line,
                           mxf_signing_key_t **key, const char **why)
{
    const char *alg, *version, *seed, *rest = line;
    apr_size_t alg_len, version_len, seed_len, trailing_len;
    unsigned char seedbuf[MXF_ED25519_SEED_BYTES];
    mxf_signing_key_t *k;

    alg = next_field(&rest, &alg_len);
    version = next_field(&rest, &version_len);
    seed = next_field(&rest, &seed_len);
    if (!alg || !version || !seed) {
        *why = "expected 'ed25519 <key version> <unpadded base64 seed>'";
        return APR_EINVAL;
    }
    if (next_field(&rest, &trailing_len)) {
        *why = "unexpected text after the seed";
        return APR_EINVAL;
    }
    if (alg_len != 7 || memcmp(alg, "ed25519", 7) != 0) {
        *why = apr_psprintf(p, "unsupported key algorithm '%.*s' (only ed25519)",
                            (int)alg_len, alg);
        return APR_EINVAL;
    }
    if (!mxf_key_version_valid(version, version_len)) {
        *why = "key version must be 1 to 64 characters of [A-Za-z0-9_]";
        return APR_EINVAL;
    }
    if (mxf_b64_decode_exact(seed, seed_len, MXF_B64_STANDARD, seedbuf,
                             sizeof(seedbuf)) != APR_SUCCESS) {
        *why = "the seed is not unpadded base64 of 32 bytes";
        return APR_EINVAL;
    }
    k = key_alloc(p);
    crypto_sign_seed_keypair(k->pk, k->sk, seedbuf);
    sodium_memzero(seedbuf, sizeof(seedbuf));
    k->key_id = apr_pstrcat(p, "ed25519:", apr_pstrmemdup(p, version, version_len), NULL);
    *key = k;
    return APR_SUCCESS;
}

apr_status_t mxf_key_load_file(apr_pool_t *p, const char *path,
                               mxf_signing_key_t **key, const char **why)
{
    apr_file_t *f;
    char *buf;
    apr_size_t n = KEY_FILE_MAX;
    apr_status_t rv;
    char *line, *eol;

    rv = apr_file_open(&f, path, APR_FOPEN_READ, APR_FPROT_OS_DEFAULT, p);
    if (rv != APR_SUCCESS) {
        char err[256];
        *why = apr_psprintf(p, "cannot open %s: %s", path,
                            apr_strerror(rv, err, sizeof(err)));
        return rv;
    }
    buf = apr_palloc(p, KEY_FILE_MAX + 1);
    rv = apr_file_read_full(f, buf, KEY_FILE_MAX, &n);
    apr_file_close(f);
    if (rv != APR_SUCCESS && rv != APR_EOF) {
        *why = apr_psprintf(p, "cannot read %s", path);
        return rv;
    }
    if (n == KEY_FILE_MAX) {
        sodium_memzero(buf, n);
        *why = apr_psprintf(p, "%s is too large to be a signing key file", path);
        return APR_EINVAL;
    }
    buf[n] = '\0';
    /* The first non-blank line is the signing key. */
    line = buf;
    while (*line == '\n' || *line == '\r' || *line == ' ' || *line == '\t') {
        line++;
    }
    if ((eol = strpbrk(line, "\r\n")) != NULL) {
        *eol = '\0';
    }
    if (*line == '\0') {
        *why = apr_psprintf(p, "%s holds no key", path);
        rv = APR_EINVAL;
    }
    else {
        rv = mxf_key_parse(p, line, key, why);
        if (rv != APR_SUCCESS) {
            *why = apr_psprintf(p, "%s: %s", path, *why);
        }
    }
    sodium_memzero(buf, KEY_FILE_MAX + 1);
    return rv;
}

apr_status_t mxf_key_generate(apr_pool_t *p, const char *version,
                              mxf_signing_key_t **key, const char **why)
{
    mxf_signing_key_t *k;

    if (!mxf_key_version_valid(version, strlen(version))) {
        *why = "key version must be 1 to 64 characters of [A-Za-z0-9_]";
        return APR_EINVAL;
    }
    k = key_alloc(p);
    crypto_sign_keypair(k->pk, k->sk);
    k->key_id = apr_pstrcat(p, "ed25519:", version, NULL);
    *key = k;
    return APR_SUCCESS;
}

char *mxf_key_format(apr_pool_t *p, const mxf_signing_key_t *key)
{
    unsigned char seed[MXF_ED25519_SEED_BYTES];
    char *line;

    crypto_sign_ed25519_sk_to_seed(seed, key->sk);
    line = apr_pstrcat(p, "ed25519 ", key->key_id + sizeof("ed25519:") - 1, " ",
                       mxf_b64_encode(p, seed, sizeof(seed), MXF_B64_STANDARD),
                       "\n", NULL);
    sodium_memzero(seed, sizeof(seed));
    return line;
}
