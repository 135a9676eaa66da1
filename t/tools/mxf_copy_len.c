/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * Test-only driver of mxf_pg_copy() with a round of 2 GiB and more
 * (t/test_023_import_batches.py). PQputCopyData() takes an int length, so
 * a buffer that size must go in pieces: given whole, libpq sends nothing
 * (negative length) or a part (wrapped) and still reports success.
 *
 * The buffer is an anonymous mapping of 2 GiB + 1 MiB (pages never written
 * cost no memory): 1000 text rows, then NUL bytes, which PostgreSQL refuses.
 * Usage: mxf_copy_len CONNINFO. Exit 0 when mxf_pg_copy() reports the
 * failure (or the rows arrived), 1 when it reports success with the rows
 * lost, 2 on a setup error.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <apr_general.h>

#include "mxf_cmd.h"
#include "mxf_cmd_pg.h"

void mxf_cmd_error(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int main(int argc, char **argv)
{
    const apr_size_t big = ((apr_size_t)1 << 31) + ((apr_size_t)1 << 20);
    apr_pool_t *p;
    PGconn *conn;
    PGresult *res;
    mxf_copy_t c;
    char *m;
    long rows;
    int i, ok;

    if (argc != 2 || apr_initialize() != APR_SUCCESS || apr_pool_create(&p, NULL)) {
        return 2;
    }
    if ((conn = mxf_pg_connect(argv[1])) == NULL
        || !mxf_pg_exec(conn, "CREATE TEMP TABLE copy_len (v text)")) {
        return 2;
    }
    mxf_copy_init(&c, p, 0);
    for (i = 0; i < 1000; i++) {
        mxf_copy_str(&c, "a row of the round");
        mxf_copy_end(&c);
    }
    m = mmap(NULL, big, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
             -1, 0);
    if (m == MAP_FAILED) {
        return 2;
    }
    memcpy(m, c.buf.data, c.buf.len);
    c.buf.data = m;
    c.buf.len = big;
    c.buf.cap = big + 1;
    ok = mxf_pg_copy(conn, "COPY copy_len FROM STDIN", &c);
    if (ok) {
        res = PQexec(conn, "SELECT count(*) FROM copy_len");
        rows = PQresultStatus(res) == PGRES_TUPLES_OK ? atol(PQgetvalue(res, 0, 0)) : -1;
        PQclear(res);
    }
    else {
        rows = 0;
    }
    printf("mxf_pg_copy: %s; rows in the table: %ld of 1000\n", ok ? "success" : "failure",
           rows);
    PQfinish(conn);
    munmap(m, big);
    return ok && rows != 1000 ? 1 : 0;
}
