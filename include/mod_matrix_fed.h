/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * mod_matrix_fed: public interface for other httpd modules.
 *
 * The module serves the Matrix server-server (federation) API for room
 * history from a PostgreSQL room DAG. Requests it claims carry the handler
 * name below, so other modules (and mod_status, mod_info) can tell them apart.
 */
#ifndef MOD_MATRIX_FED_H
#define MOD_MATRIX_FED_H

/* r->handler of every request the module answers. */
#define MATRIX_FED_HANDLER "matrix-federation"

#endif /* MOD_MATRIX_FED_H */
