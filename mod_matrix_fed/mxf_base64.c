/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#include <stdlib.h>
#include <string.h>

#include <apr_base64.h>

#include <sodium.h>

#include "mxf_base64.h"

static int variant_of(mxf_b64_alphabet_t alphabet)
{
    return alphabet == MXF_B64_URLSAFE ? sodium_base64_VARIANT_URLSAFE_NO_PADDING
                                       : sodium_base64_VARIANT_ORIGINAL_NO_PADDING;
}

char *mxf_b64_encode(apr_pool_t *p, const unsigned char *data, apr_size_t len,
                     mxf_b64_alphabet_t alphabet)
{
    int variant = variant_of(alphabet);
    size_t need = sodium_base64_encoded_len(len, variant);
    char *out = apr_palloc(p, need);

    sodium_bin2base64(out, need, data, len, variant);
    return out;
}

/* Length of @a text without up to two trailing '=' that complete a quantum. */
static apr_status_t strip_padding(const char *text, apr_size_t *textlen)
{
    apr_size_t n = *textlen, pad = 0;

    while (n > 0 && text[n - 1] == '=' && pad < 2) {
        n--;
        pad++;
    }
    if (pad && (*textlen % 4) != 0) {
        return APR_EINVAL;          /* padding must complete a 4-char group */
    }
    if (memchr(text, '=', n)) {
        return APR_EINVAL;
    }
    *textlen = n;
    return APR_SUCCESS;
}

/*
 * Decoding is lenient in one way only, as the reference implementations are:
 * unused low bits of the last character need not be zero (the spec's own
 * test seed has them set). libsodium insists on zero bits, so the checked
 * text is handed to APR's decoder, with the URL-safe alphabet mapped first.
 */
static apr_status_t decode_into(const char *text, apr_size_t textlen,
                                mxf_b64_alphabet_t alphabet, unsigned char *out,
                                apr_size_t max, apr_size_t *outlen)
{
    const char *c62 = alphabet == MXF_B64_URLSAFE ? "-" : alphabet == MXF_B64_ANY ? "+-" : "+";
    const char *c63 = alphabet == MXF_B64_URLSAFE ? "_" : alphabet == MXF_B64_ANY ? "/_" : "/";
    char stackbuf[256], *tmp = stackbuf;
    apr_size_t i, need;
    int n;

    if (strip_padding(text, &textlen) != APR_SUCCESS || textlen % 4 == 1) {
        return APR_EINVAL;
    }
    need = textlen / 4 * 3 + (textlen % 4 ? textlen % 4 - 1 : 0);
    if (need > max) {
        return APR_EINVAL;
    }
    if (textlen >= sizeof(stackbuf) && (tmp = malloc(textlen + 1)) == NULL) {
        return APR_ENOMEM;
    }
    for (i = 0; i < textlen; i++) {
        char c = text[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
            tmp[i] = c;
        }
        else if (c && strchr(c62, c)) {
            tmp[i] = '+';
        }
        else if (c && strchr(c63, c)) {
            tmp[i] = '/';
        }
        else {
            break;
        }
    }
    tmp[i] = '\0';
    if (i == textlen) {
        n = apr_base64_decode_binary(out, tmp);
    }
    else {
        n = -1;
    }
    if (tmp != stackbuf) {
        free(tmp);
    }
    if (n < 0 || (apr_size_t)n != need) {
        return APR_EINVAL;
    }
    *outlen = need;
    return APR_SUCCESS;
}

apr_status_t mxf_b64_decode(apr_pool_t *p, const char *text, apr_size_t textlen,
                            mxf_b64_alphabet_t alphabet,
                            unsigned char **out, apr_size_t *outlen)
{
    apr_size_t max = textlen / 4 * 3 + 3;
    unsigned char *buf = apr_palloc(p, max + 1);
    apr_status_t rv = decode_into(text, textlen, alphabet, buf, max, outlen);

    if (rv == APR_SUCCESS) {
        buf[*outlen] = 0;
        *out = buf;
    }
    return rv;
}

apr_status_t mxf_b64_decode_exact(const char *text, apr_size_t textlen,
                                  mxf_b64_alphabet_t alphabet,
                                  unsigned char *out, apr_size_t want)
{
    apr_size_t got = 0;

    /* Text of exactly @a want bytes is at most 4*ceil(want/3) characters. */
    if (textlen > (want + 2) / 3 * 4) {
        return APR_EINVAL;
    }
    if (decode_into(text, textlen, alphabet, out, want, &got) != APR_SUCCESS
        || got != want) {
        return APR_EINVAL;
    }
    return APR_SUCCESS;
}
