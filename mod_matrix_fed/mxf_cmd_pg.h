/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * libpq helpers of the matrix-fed tool: statements with parameters (never
 * SQL built from input), COPY in text or binary format, and error
 * reporting. Every
 * failure is reported on stderr and returned as 0 / NULL.
 */
#ifndef mxf_cmd_pg_h
#define mxf_cmd_pg_h

#include <apr_pools.h>
#include <apr_tables.h>
#include <libpq-fe.h>

#include "mxf_canonical.h"   /* mxf_buf_t */

/* Advisory lock keys: schema changes, and imports (one at a time). */
#define MXF_PG_SCHEMA_LOCK "7249018340512"
#define MXF_PG_IMPORT_LOCK "7249018340513"

/* Connects; NULL (reported) on failure. Refuses non-UTF8 databases. */
PGconn *mxf_pg_connect(const char *conninfo);

/* 1 if @a res succeeded; otherwise reports "@a what failed: ...", clears @a res, 0. */
int mxf_pg_ok(PGresult *res, const char *what);

/* Runs @a sql (no parameters, no rows wanted). */
int mxf_pg_exec(PGconn *conn, const char *sql);

/* Runs @a sql with text parameters, no rows wanted. */
int mxf_pg_params(PGconn *conn, const char *sql, int n, const char *const *params);

/* Runs @a sql with text parameters; the rows, or NULL. PQclear() the result. */
PGresult *mxf_pg_query(PGconn *conn, const char *sql, int n, const char *const *params);

/* Rows for a COPY in text format, or in binary format. */
typedef struct mxf_copy {
    mxf_buf_t buf;
    int fields;                 /* fields in the current row so far */
    long rows;
    int binary;
    apr_size_t row_start;       /* binary: where the current row's field count goes */
} mxf_copy_t;

void mxf_copy_init(mxf_copy_t *c, apr_pool_t *p, apr_size_t initial);

/*
 * Rows for a COPY ... WITH (FORMAT binary): each field is sent in its
 * column type's binary form, so the calls must match the columns' types:
 * mxf_copy_int() and mxf_copy_nullable_int() for bigint, mxf_copy_bool()
 * for boolean, the string calls for text. Fewer bytes for PostgreSQL to
 * parse, and no escaping.
 */
void mxf_copy_init_binary(mxf_copy_t *c, apr_pool_t *p, apr_size_t initial);

/* COPY ... FROM STDIN with the rows in @a data (in the format @a sql names). */
int mxf_pg_copy(PGconn *conn, const char *sql, const mxf_copy_t *data);

/* COPY of a one-column table from a list of strings. */
int mxf_pg_copy_strings(PGconn *conn, const char *sql, const apr_array_header_t *strings);

/* Fields of a COPY text-format row; mxf_copy_end() ends the row. */
void mxf_copy_str(mxf_copy_t *b, const char *s);          /* NULL: \N */
void mxf_copy_strn(mxf_copy_t *b, const char *s, apr_size_t n);
void mxf_copy_int(mxf_copy_t *b, apr_int64_t v);
void mxf_copy_nullable_int(mxf_copy_t *b, apr_int64_t v); /* 0: \N */
void mxf_copy_bool(mxf_copy_t *b, int v);
void mxf_copy_end(mxf_copy_t *b);

/* Whether @a needle occurs in the @a len bytes at @a hay. */
int mxf_memmem(const char *hay, apr_size_t len, const char *needle);

#endif /* mxf_cmd_pg_h */
