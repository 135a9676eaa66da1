/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * JSON values of the core: jansson's json_t, with lifetimes tied to APR
 * pools so callers never count references by hand.
 */
#ifndef mxf_json_h
#define mxf_json_h

#include <apr_pools.h>

/* jansson's inline helpers trip -Wunused-function under -Werror. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include <jansson.h>
#pragma GCC diagnostic pop

/*
 * Hands one reference of @a j over to pool @a p: it is released when the pool
 * is cleared or destroyed. Returns @a j (NULL stays NULL).
 */
json_t *mxf_json_own(apr_pool_t *p, json_t *j);

/*
 * Compact JSON text of @a j, allocated from @a p, for response envelopes.
 * Not canonical JSON: never use it for bytes that are hashed or signed.
 * Returns NULL only if @a j cannot be encoded (e.g. it holds an invalid
 * UTF-8 string); *len receives the length when len is not NULL.
 */
const char *mxf_json_dump(apr_pool_t *p, const json_t *j, apr_size_t *len);

#endif /* mxf_json_h */
