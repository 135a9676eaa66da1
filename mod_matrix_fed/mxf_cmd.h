/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/* The matrix-fed command-line tool: shared declarations of its subcommands. */
#ifndef mxf_cmd_h
#define mxf_cmd_h

#include <apr_pools.h>

/* One schema migration, compiled in from sql/NNN_name.sql. */
typedef struct mxf_migration {
    int version;
    const char *name;
    const char *sql;
} mxf_migration_t;

/* Terminated by an entry with name NULL. */
extern const mxf_migration_t mxf_migrations[];

/* A subcommand: argv[0] is its own name. Returns the process exit status. */
typedef int mxf_cmd_fn(apr_pool_t *p, int argc, const char *const *argv);

mxf_cmd_fn mxf_cmd_db;
mxf_cmd_fn mxf_cmd_import;
mxf_cmd_fn mxf_cmd_export;
mxf_cmd_fn mxf_cmd_genroom;
mxf_cmd_fn mxf_cmd_keygen;
mxf_cmd_fn mxf_cmd_pubkey;
mxf_cmd_fn mxf_cmd_sign_request;
mxf_cmd_fn mxf_cmd_verify_event;

/*
 * Matches option @a name at argv[*i], as "--name VALUE" or "--name=VALUE".
 * Returns 1 and sets *value (advancing *i past a separate value), 0 if
 * argv[*i] is another argument, -1 (reported) if the value is missing.
 */
int mxf_cmd_opt_value(int argc, const char *const *argv, int *i, const char *name,
                      const char **value);

/* Prints a message prefixed with "matrix-fed: " to stderr. */
void mxf_cmd_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Exit statuses. */
#define MXF_EXIT_OK      0
#define MXF_EXIT_FAILURE 1
#define MXF_EXIT_USAGE   2

#endif /* mxf_cmd_h */
