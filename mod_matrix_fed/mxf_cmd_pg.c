/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#include <stdio.h>
#include <string.h>

#include <apr_strings.h>

#include "mxf_cmd.h"
#include "mxf_cmd_pg.h"

PGconn *mxf_pg_connect(const char *conninfo)
{
    PGconn *conn = PQconnectdb(conninfo);
    const char *enc;

    if (PQstatus(conn) != CONNECTION_OK) {
        mxf_cmd_error("cannot connect to the database: %s", PQerrorMessage(conn));
        PQfinish(conn);
        return NULL;
    }
    enc = PQparameterStatus(conn, "server_encoding");
    if (!enc || strcmp(enc, "UTF8") != 0) {
        mxf_cmd_error("the database encoding is %s; mod_matrix_fed needs UTF8 "
                      "(CREATE DATABASE ... ENCODING 'UTF8')", enc ? enc : "unknown");
        PQfinish(conn);
        return NULL;
    }
    if (PQsetClientEncoding(conn, "UTF8") != 0) {
        mxf_cmd_error("cannot use UTF8 as the client encoding");
        PQfinish(conn);
        return NULL;
    }
    PQclear(PQexec(conn, "SET client_min_messages = warning"));
    return conn;
}

int mxf_pg_ok(PGresult *res, const char *what)
{
    ExecStatusType st = PQresultStatus(res);

    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_COPY_IN) {
        return 1;
    }
    mxf_cmd_error("%s failed: %s", what, PQresultErrorMessage(res));
    PQclear(res);
    return 0;
}

int mxf_pg_exec(PGconn *conn, const char *sql)
{
    PGresult *res = PQexec(conn, sql);

    if (!mxf_pg_ok(res, sql)) {
        return 0;
    }
    PQclear(res);
    return 1;
}

PGresult *mxf_pg_query(PGconn *conn, const char *sql, int n, const char *const *params)
{
    PGresult *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);

    return mxf_pg_ok(res, sql) ? res : NULL;
}

int mxf_pg_params(PGconn *conn, const char *sql, int n, const char *const *params)
{
    PGresult *res = mxf_pg_query(conn, sql, n, params);

    if (!res) {
        return 0;
    }
    PQclear(res);
    return 1;
}

void mxf_copy_init(mxf_copy_t *c, apr_pool_t *p, apr_size_t initial)
{
    mxf_buf_init(&c->buf, p, initial);
    c->fields = 0;
    c->rows = 0;
    c->binary = 0;
    c->row_start = 0;
}

/* The binary format's signature, flags (none) and header extension length (0). */
static const char copy_binary_header[19] = "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0";

void mxf_copy_init_binary(mxf_copy_t *c, apr_pool_t *p, apr_size_t initial)
{
    mxf_copy_init(c, p, initial);
    c->binary = 1;
}

static void put_be16(mxf_copy_t *b, apr_uint16_t v)
{
    unsigned char x[2] = { (unsigned char)(v >> 8), (unsigned char)v };
    mxf_buf_append(&b->buf, x, 2);
}

static void put_be32(mxf_copy_t *b, apr_uint32_t v)
{
    unsigned char x[4] = { (unsigned char)(v >> 24), (unsigned char)(v >> 16),
                           (unsigned char)(v >> 8), (unsigned char)v };
    mxf_buf_append(&b->buf, x, 4);
}

/*
 * PQputCopyData() takes an int length: a round's rows (2 GiB and more with a
 * large --batch-events and big PDUs) go in pieces of at most 1 MiB. Given
 * whole, a length of 2 GiB or more would be negative or wrapped, and libpq
 * sends nothing (or a part) yet reports success.
 */
static int put_copy_data(PGconn *conn, const char *data, apr_size_t len)
{
    const apr_size_t piece = (apr_size_t)1 << 20;

    while (len > 0) {
        apr_size_t n = len < piece ? len : piece;
        if (PQputCopyData(conn, data, (int)n) != 1) {
            return 0;
        }
        data += n;
        len -= n;
    }
    return 1;
}

int mxf_pg_copy(PGconn *conn, const char *sql, const mxf_copy_t *copy)
{
    const mxf_buf_t *data = &copy->buf;
    PGresult *res;

    if (data->len == 0) {
        return 1;
    }
    res = PQexec(conn, sql);
    if (PQresultStatus(res) != PGRES_COPY_IN) {
        mxf_pg_ok(res, sql);
        return 0;
    }
    PQclear(res);
    if ((copy->binary && PQputCopyData(conn, copy_binary_header,
                                       (int)sizeof(copy_binary_header)) != 1)
        || !put_copy_data(conn, data->data, data->len)
        || (copy->binary && PQputCopyData(conn, "\377\377", 2) != 1)   /* trailer: -1 */
        || PQputCopyEnd(conn, NULL) != 1) {
        mxf_cmd_error("%s failed: %s", sql, PQerrorMessage(conn));
        return 0;
    }
    res = PQgetResult(conn);
    if (!mxf_pg_ok(res, sql)) {
        while ((res = PQgetResult(conn)) != NULL) {
            PQclear(res);
        }
        return 0;
    }
    PQclear(res);
    while ((res = PQgetResult(conn)) != NULL) {
        PQclear(res);
    }
    return 1;
}

int mxf_pg_copy_strings(PGconn *conn, const char *sql, const apr_array_header_t *strings)
{
    mxf_copy_t b;
    int i;

    mxf_copy_init(&b, strings->pool, 1 << 16);
    for (i = 0; i < strings->nelts; i++) {
        mxf_copy_str(&b, APR_ARRAY_IDX(strings, i, const char *));
        mxf_copy_end(&b);
    }
    return mxf_pg_copy(conn, sql, &b);
}

/*
 * COPY text format: fields separated by tabs; backslash escapes. Binary
 * format: each row a 16-bit field count (filled in by mxf_copy_end()),
 * each field a 32-bit length (-1: NULL) and its bytes, big-endian.
 */
static void field_sep(mxf_copy_t *b)
{
    if (b->binary) {
        if (b->fields++ == 0) {
            b->row_start = b->buf.len;
            put_be16(b, 0);
        }
        return;
    }
    if (b->fields++ > 0) {
        mxf_buf_append(&b->buf, "\t", 1);
    }
}

void mxf_copy_strn(mxf_copy_t *b, const char *s, apr_size_t n)
{
    apr_size_t i, start = 0;

    field_sep(b);
    if (b->binary) {
        put_be32(b, (apr_uint32_t)n);
        mxf_buf_append(&b->buf, s, n);
        return;
    }
    for (i = 0; i < n; i++) {
        const char *esc = NULL;
        switch (s[i]) {
        case '\\': esc = "\\\\"; break;
        case '\t': esc = "\\t"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        default: break;
        }
        if (esc) {
            mxf_buf_append(&b->buf, s + start, i - start);
            mxf_buf_append(&b->buf, esc, 2);
            start = i + 1;
        }
    }
    mxf_buf_append(&b->buf, s + start, n - start);
}

void mxf_copy_str(mxf_copy_t *b, const char *s)
{
    if (!s) {
        field_sep(b);
        if (b->binary) {
            put_be32(b, 0xffffffffu);
        }
        else {
            mxf_buf_append(&b->buf, "\\N", 2);
        }
        return;
    }
    mxf_copy_strn(b, s, strlen(s));
}

void mxf_copy_int(mxf_copy_t *b, apr_int64_t v)
{
    char num[32];
    int n;

    field_sep(b);
    if (b->binary) {
        apr_uint64_t u = (apr_uint64_t)v;
        put_be32(b, 8);
        put_be32(b, (apr_uint32_t)(u >> 32));
        put_be32(b, (apr_uint32_t)u);
        return;
    }
    n = apr_snprintf(num, sizeof(num), "%" APR_INT64_T_FMT, v);
    mxf_buf_append(&b->buf, num, (apr_size_t)n);
}

void mxf_copy_bool(mxf_copy_t *b, int v)
{
    if (b->binary) {
        field_sep(b);
        put_be32(b, 1);
        mxf_buf_append(&b->buf, v ? "\1" : "\0", 1);
        return;
    }
    mxf_copy_str(b, v ? "t" : "f");
}

void mxf_copy_nullable_int(mxf_copy_t *b, apr_int64_t v)
{
    if (v == 0) {
        mxf_copy_str(b, NULL);
    }
    else {
        mxf_copy_int(b, v);
    }
}

void mxf_copy_end(mxf_copy_t *b)
{
    if (b->binary) {
        b->buf.data[b->row_start] = (char)(b->fields >> 8);
        b->buf.data[b->row_start + 1] = (char)b->fields;
        b->fields = 0;
        b->rows++;
        return;
    }
    mxf_buf_append(&b->buf, "\n", 1);
    b->fields = 0;
    b->rows++;
}

int mxf_memmem(const char *hay, apr_size_t len, const char *needle)
{
    return memmem(hay, len, needle, strlen(needle)) != NULL;
}
