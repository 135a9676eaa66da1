/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * In-process benchmark of X-Matrix request verification with the origin's
 * key already known (the cached case): per request, parse the
 * Authorization header, rebuild the signed object (method, URI, origin,
 * destination, content), encode it as canonical JSON and check one Ed25519
 * signature. Prints verifications per second for a GET and for a POST with
 * a typical get_missing_events body. Not a test: see bench/auth.sh.
 *
 *     bench_auth [seconds per case, default 2]
 */
#include <stdio.h>
#include <stdlib.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <apr_time.h>
#include <sodium.h>

#include "mxf_json.h"
#include "mxf_key.h"
#include "mxf_xmatrix.h"

static void run(const char *label, const mxf_signing_key_t *key, const char *method,
                const char *uri, json_t *content, double seconds, apr_pool_t *p)
{
    const char *header = NULL, *why = NULL;
    apr_pool_t *iter;
    apr_time_t start, stop;
    long n = 0;

    if (mxf_xmatrix_sign_request(p, method, uri, "origin.example", "dest.example", content,
                                 key, &header, &why) != APR_SUCCESS) {
        fprintf(stderr, "sign: %s\n", why);
        exit(1);
    }
    apr_pool_create(&iter, p);
    start = apr_time_now();
    stop = start + (apr_interval_time_t)(seconds * APR_USEC_PER_SEC);
    do {
        int i;
        for (i = 0; i < 100; i++, n++) {
            apr_array_header_t *creds = NULL;
            const char *values[1] = { header };
            if (mxf_xmatrix_parse_all(iter, values, 1, &creds, &why) != APR_SUCCESS
                || mxf_xmatrix_verify_request(iter, APR_ARRAY_IDX(creds, 0, mxf_xmatrix_t *),
                                              method, uri, "dest.example", content, key->pk,
                                              &why) != APR_SUCCESS) {
                fprintf(stderr, "verify: %s\n", why);
                exit(1);
            }
            apr_pool_clear(iter);
        }
    } while (apr_time_now() < stop);
    {
        double secs = (double)(apr_time_now() - start) / APR_USEC_PER_SEC;
        printf("%-34s %10.0f verifications/s  %7.2f us each\n", label, n / secs,
               secs * 1e6 / n);
    }
}

int main(int argc, char **argv)
{
    apr_pool_t *p;
    mxf_signing_key_t *key = NULL;
    const char *why = NULL;
    double seconds = argc > 1 ? atof(argv[1]) : 2.0;
    json_t *body;

    apr_initialize();
    atexit(apr_terminate);
    if (sodium_init() < 0) {
        return 1;
    }
    apr_pool_create(&p, NULL);
    if (mxf_key_generate(p, "bench", &key, &why) != APR_SUCCESS) {
        fprintf(stderr, "%s\n", why);
        return 1;
    }
    run("GET /event/{eventId}", key, "GET",
        "/_matrix/federation/v1/event/%24Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg", NULL,
        seconds, p);
    body = mxf_json_own(p, json_pack("{s:[s,s,s], s:[s], s:i, s:i}", "earliest_events",
                                     "$aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                                     "$bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
                                     "$ccccccccccccccccccccccccccccccccccccccccccc",
                                     "latest_events",
                                     "$ddddddddddddddddddddddddddddddddddddddddddd",
                                     "limit", 10, "min_depth", 0));
    run("POST /get_missing_events (body)", key, "POST",
        "/_matrix/federation/v1/get_missing_events/%21room%3Aorigin.example", body, seconds, p);
    return 0;
}
