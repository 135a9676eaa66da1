/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * A gate with a fixed number of slots, shared by every process that
 * inherits it (a System V semaphore): at most that many holders at once in
 * all of them together, the others waiting in arrival order (first come,
 * first served, as the kernel queues them) for at most a given time.
 *
 * The module puts its short database statements behind one gate for the
 * whole server (MatrixFedQueryConcurrency), made in the parent before it
 * starts its children: when more requests want the database than the
 * machine has cores to run their statements, letting them all in makes
 * every one of them slow (PostgreSQL's backends share the cores by time
 * slices, so the unlucky ones wait many slices) and the slowest very slow;
 * queueing them in order keeps each statement's own time short and the
 * wait fair, whichever child process a request reached.
 *
 * A holder that dies gives its slots back (the kernel undoes its
 * operations), so a child killed mid-request does not shrink the gate.
 */
#ifndef mxf_gate_h
#define mxf_gate_h

#include <apr_pools.h>
#include <apr_time.h>

typedef struct mxf_gate mxf_gate_t;

/*
 * A gate of @a slots slots (1 to 10000). The process calling this owns it:
 * when @a pool is cleared in that process the semaphore is removed (the
 * processes it forked see the gate as gone: APR_ENOENT below). Returns
 * APR_SUCCESS, or the error of creating the semaphore or the mutex.
 */
apr_status_t mxf_gate_create(mxf_gate_t **out, int slots, apr_pool_t *pool);

/*
 * Hands the gate to @a uid and @a gid (the user the processes that use it
 * run as, when its creator is root and they are not). Returns APR_SUCCESS
 * or the error of the change.
 */
apr_status_t mxf_gate_give(mxf_gate_t *gate, long uid, long gid);

/* The semaphore's ID (for logs and tests). */
int mxf_gate_id(const mxf_gate_t *gate);

/*
 * Takes a slot, waiting up to @a timeout (<= 0: no wait) behind those who
 * came first. Returns APR_SUCCESS (holding a slot: mxf_gate_leave() it),
 * APR_TIMEUP (no slot in time; the caller holds none), APR_ENOENT (the gate
 * was removed: its owner made a new one on a restart; none held), or
 * another error (none held).
 */
apr_status_t mxf_gate_enter(mxf_gate_t *gate, apr_interval_time_t timeout);

/* Gives back a slot taken by mxf_gate_enter(); the longest waiter gets it. */
void mxf_gate_leave(mxf_gate_t *gate);

/*
 * Slots in use and waiters, at this moment, in all processes (for logs
 * and tests). Both -1 when the gate is gone.
 */
void mxf_gate_stats(mxf_gate_t *gate, int *busy, int *waiting);

/*
 * Counts a refusal (a caller whose mxf_gate_enter() timed out) at @a now,
 * in this process. Returns how many refusals to report, this one included,
 * when the last report is at least @a every old (or there was none); 0
 * otherwise: the caller reports at most once per @a every, however many
 * are refused.
 */
unsigned mxf_gate_refused(mxf_gate_t *gate, apr_time_t now, apr_interval_time_t every);

#endif /* mxf_gate_h */
