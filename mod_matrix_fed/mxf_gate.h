/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * A gate with a fixed number of slots, shared by the threads of one
 * process: at most that many holders at once, the others wait in arrival
 * order (first come, first served) for at most a given time.
 *
 * The module puts its short database statements behind one gate per child
 * process (MatrixFedQueryConcurrency): when more requests want the
 * database than the machine has cores to run their statements, letting
 * them all in makes every one of them slow (PostgreSQL's backends share
 * the cores by time slices, so the unlucky ones wait many slices) and the
 * slowest very slow; queueing them in order keeps each statement's own time
 * short and the wait fair.
 */
#ifndef mxf_gate_h
#define mxf_gate_h

#include <apr_pools.h>
#include <apr_time.h>

typedef struct mxf_gate mxf_gate_t;

/*
 * A gate of @a slots slots (>= 1), living as long as @a pool. Returns
 * APR_SUCCESS, or the error of creating its mutex.
 */
apr_status_t mxf_gate_create(mxf_gate_t **out, int slots, apr_pool_t *pool);

/*
 * Takes a slot, waiting up to @a timeout (<= 0: no wait) behind those who
 * came first. @a pool (the caller's, e.g. the request's) holds what the
 * wait needs. Returns APR_SUCCESS (holding a slot: mxf_gate_leave() it),
 * APR_TIMEUP (no slot in time; the caller holds none), or another error.
 */
apr_status_t mxf_gate_enter(mxf_gate_t *gate, apr_interval_time_t timeout, apr_pool_t *pool);

/* Gives back a slot taken by mxf_gate_enter(); the longest waiter gets it. */
void mxf_gate_leave(mxf_gate_t *gate);

/* Slots in use and threads waiting, at this moment (for logs and tests). */
void mxf_gate_stats(mxf_gate_t *gate, int *busy, int *waiting);

/*
 * Counts a refusal (a caller whose mxf_gate_enter() timed out) at @a now.
 * Returns how many refusals to report, this one included, when the last
 * report is at least @a every old (or there was none); 0 otherwise: the
 * caller reports at most once per @a every, however many are refused.
 */
unsigned mxf_gate_refused(mxf_gate_t *gate, apr_time_t now, apr_interval_time_t every);

#endif /* mxf_gate_h */
