/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#include <string.h>

#include <apr_strings.h>

#include "mxf_json.h"

static apr_status_t json_release(void *data)
{
    json_decref((json_t *)data);
    return APR_SUCCESS;
}

json_t *mxf_json_own(apr_pool_t *p, json_t *j)
{
    if (j) {
        apr_pool_cleanup_register(p, j, json_release, apr_pool_cleanup_null);
    }
    return j;
}

const char *mxf_json_dump(apr_pool_t *p, const json_t *j, apr_size_t *len)
{
    size_t need = json_dumpb(j, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY);
    char *buf;

    if (need == 0) {
        return NULL;
    }
    buf = apr_palloc(p, need + 1);
    if (json_dumpb(j, buf, need, JSON_COMPACT | JSON_ENCODE_ANY) != need) {
        return NULL;
    }
    buf[need] = '\0';
    if (len) {
        *len = need;
    }
    return buf;
}
