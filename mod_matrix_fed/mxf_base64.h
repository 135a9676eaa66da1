/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * Unpadded Base64 as Matrix uses it (appendices, "Unpadded Base64"): output
 * is never padded; input is accepted padded or unpadded. Standard and
 * URL-safe alphabets. Backed by libsodium.
 */
#ifndef mxf_base64_h
#define mxf_base64_h

#include <apr_pools.h>
#include <apr_errno.h>

typedef enum {
    MXF_B64_STANDARD = 0,   /* A-Z a-z 0-9 + / */
    MXF_B64_URLSAFE,        /* A-Z a-z 0-9 - _ */
    /* Decoding only: either alphabet, as the reference implementations
     * decode what other servers send (signatures, hashes, keys). */
    MXF_B64_ANY
} mxf_b64_alphabet_t;

/* Unpadded Base64 text of @a len bytes, NUL-terminated, from @a p
 * (MXF_B64_ANY encodes as MXF_B64_STANDARD). */
char *mxf_b64_encode(apr_pool_t *p, const unsigned char *data, apr_size_t len,
                     mxf_b64_alphabet_t alphabet);

/*
 * Decodes @a text (padded or unpadded; no whitespace; the alphabets
 * mixed only with MXF_B64_ANY). On success *out (from @a p) and *outlen are set. Returns
 * APR_EINVAL for text that is not Base64 of the alphabet.
 */
apr_status_t mxf_b64_decode(apr_pool_t *p, const char *text, apr_size_t textlen,
                            mxf_b64_alphabet_t alphabet,
                            unsigned char **out, apr_size_t *outlen);

/*
 * Decodes into a caller buffer that must receive exactly @a want bytes
 * (keys, signatures, hashes). APR_EINVAL for anything else.
 */
apr_status_t mxf_b64_decode_exact(const char *text, apr_size_t textlen,
                                  mxf_b64_alphabet_t alphabet,
                                  unsigned char *out, apr_size_t want);

#endif /* mxf_base64_h */
