/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * matrix-fed: the operator's tool for mod_matrix_fed, built from the same
 * core as the module.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <sodium.h>

#include "mxf_cmd.h"
#include "mxf_log.h"
#include "mxf_version.h"

static const struct {
    const char *name;
    mxf_cmd_fn *fn;
    const char *usage;
} commands[] = {
    { "db", mxf_cmd_db,
      "db init --db CONNINFO [--lock-timeout S] [--lock-tries N]\n"
      "                             create or upgrade the database schema" },
    { "import", mxf_cmd_import,
      "import --db CONNINFO [--keys FILE]... [--require-signatures] [--threads N]\n"
      "       [--batch-events N] [--quiet] [FILE|-]\n"
      "                             load federation PDUs (JSON lines, arrays, federation\n"
      "                             responses) into the database" },
    { "export", mxf_cmd_export,
      "export --db CONNINFO --room ROOM_ID [--out FILE]\n"
      "                             write a room's PDUs as JSON lines, as received" },
    { "gen-room", mxf_cmd_genroom,
      "gen-room --out DIR [...]   generate a signed test room (see gen-room --help)" },
    { "keygen", mxf_cmd_keygen,
      "keygen [--key-version V] FILE\n"
      "                             create a signing key file (mode 0600, never overwritten)" },
    { "pubkey", mxf_cmd_pubkey,
      "pubkey FILE                print the key ID and public key of a key file" },
    { "sign-request", mxf_cmd_sign_request,
      "sign-request --key FILE --origin NAME --destination NAME [--method M] URI\n"
      "             [--body JSON|@FILE|@-]\n"
      "                             print an X-Matrix Authorization header value" },
    { "verify-event", mxf_cmd_verify_event,
      "verify-event --room-version V --server NAME --key-id ID --public-key B64 [FILE|-]\n"
      "                             check a PDU's content hash, event ID and signatures" },
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

void mxf_cmd_error(const char *fmt, ...)
{
    va_list ap;

    fputs("matrix-fed: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int mxf_cmd_opt_value(int argc, const char *const *argv, int *i, const char *name,
                      const char **value)
{
    apr_size_t n = strlen(name);
    const char *arg = argv[*i];

    if (strncmp(arg, name, n) != 0) {
        return 0;
    }
    if (arg[n] == '=') {
        *value = arg + n + 1;
        return 1;
    }
    if (arg[n] != '\0') {
        return 0;
    }
    if (*i + 1 >= argc) {
        mxf_cmd_error("option %s needs a value", name);
        return -1;
    }
    *value = argv[++*i];
    return 1;
}

static void log_print(const char *file, int line, mxf_log_level_t level,
                      apr_status_t rv, void *baton, apr_pool_t *p,
                      const char *fmt, va_list ap)
    __attribute__((format(printf, 7, 0)));

static void log_print(const char *file, int line, mxf_log_level_t level,
                      apr_status_t rv, void *baton, apr_pool_t *p,
                      const char *fmt, va_list ap)
{
    fputs("matrix-fed: ", stderr);
    vfprintf(stderr, fmt, ap);
    if (rv != APR_SUCCESS) {
        char buf[128];
        fprintf(stderr, " (%s)", apr_strerror(rv, buf, sizeof(buf)));
    }
    fputc('\n', stderr);
}

static void usage(FILE *out)
{
    apr_size_t i;

    fprintf(out,
            "Usage: matrix-fed COMMAND [OPTIONS]\n"
            "\n"
            "The command-line tool of mod_matrix_fed %s.\n"
            "\n"
            "Commands:\n", MXF_PACKAGE_VERSION);
    for (i = 0; i < NCOMMANDS; i++) {
        fprintf(out, "  %s\n", commands[i].usage);
    }
    fprintf(out,
            "\n"
            "Options:\n"
            "  -h, --help                 show this help\n"
            "  -V, --version              show the version\n"
            "\n"
            "CONNINFO is a libpq connection string or URI, e.g.\n"
            "  \"host=/run/postgresql dbname=matrix_fed\" or postgresql://user@host/db\n");
}

int main(int argc, const char *const *argv)
{
    apr_pool_t *pool;
    apr_size_t i;
    int rc = MXF_EXIT_USAGE;

    if (argc < 2) {
        usage(stderr);
        return MXF_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return MXF_EXIT_OK;
    }
    if (!strcmp(argv[1], "-V") || !strcmp(argv[1], "--version")) {
        printf("matrix-fed (%s) %s\n", MXF_PACKAGE_NAME, MXF_PACKAGE_VERSION);
        return MXF_EXIT_OK;
    }
    if (apr_app_initialize(&argc, &argv, NULL) != APR_SUCCESS || sodium_init() < 0) {
        fputs("matrix-fed: cannot initialise APR or libsodium\n", stderr);
        return MXF_EXIT_FAILURE;
    }
    atexit(apr_terminate);
    mxf_log_set(NULL, log_print, NULL);
    apr_pool_create(&pool, NULL);

    for (i = 0; i < NCOMMANDS; i++) {
        if (!strcmp(argv[1], commands[i].name)) {
            rc = commands[i].fn(pool, argc - 1, argv + 1);
            break;
        }
    }
    if (i == NCOMMANDS) {
        mxf_cmd_error("unknown command '%s' (see matrix-fed --help)", argv[1]);
    }
    apr_pool_destroy(pool);
    return rc;
}
