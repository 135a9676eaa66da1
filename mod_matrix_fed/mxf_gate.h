/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
/*
 * A gate with a fixed number of slots, shared by every process that
 * inherits it (a System V semaphore): at most that many holders at once in
 * all of them together, the others waiting in arrival order (first come,
 * first served, as the kernel queues them) for at most a given time.
 *
 * The module puts its short database statements behind one gate for the
 * whole server (MatrixFedQueryConcurrency), made in the parent before it
 * starts its children and kept over restarts: when more requests want the
 * database than the machine has cores to run their statements, letting
 * them all in makes every one of them slow (PostgreSQL's backends share
 * the cores by time slices, so the unlucky ones wait many slices) and the
 * slowest very slow; queueing them in order keeps each statement's own
 * time short and the wait fair, whichever child process a request reached.
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
 * Makes a semaphore of @a slots free slots (1 to 10000) and puts its ID in
 * @a id. It lasts until mxf_gate_remove(). Returns APR_SUCCESS or the
 * error of making it.
 */
apr_status_t mxf_gate_make(int slots, int *id);

/* Removes semaphore @a id: those waiting on it get APR_ENOENT, as do later
 * callers. */
apr_status_t mxf_gate_remove(int id);

/*
 * Hands semaphore @a id to @a uid and @a gid (the user the processes that
 * use it run as, when its maker is root and they are not), mode 0600.
 * Returns APR_SUCCESS or the error of the change.
 */
apr_status_t mxf_gate_give(int id, long uid, long gid);

/*
 * The gate of semaphore @a id, made with @a slots slots, for this process
 * and the processes it forks; its bookkeeping (not the semaphore) lives in
 * @a pool. Returns APR_SUCCESS or the error of creating its mutex.
 */
apr_status_t mxf_gate_open(mxf_gate_t **out, int id, int slots, apr_pool_t *pool);

/* The semaphore's ID (for logs and tests). */
int mxf_gate_id(const mxf_gate_t *gate);

/* The number of slots it was opened with. */
int mxf_gate_slots(const mxf_gate_t *gate);

/*
 * Takes a slot, waiting up to @a timeout (<= 0: no wait) behind those who
 * came first. Returns APR_SUCCESS (holding a slot: mxf_gate_leave() it),
 * APR_TIMEUP (no slot in time; the caller holds none), APR_ENOENT (the
 * semaphore was removed; none held), or another error (none held).
 */
apr_status_t mxf_gate_enter(mxf_gate_t *gate, apr_interval_time_t timeout);

/* Gives back a slot taken by mxf_gate_enter(); the longest waiter gets it. */
void mxf_gate_leave(mxf_gate_t *gate);

/*
 * Slots in use and waiters, at this moment, in all processes (for
 * mod_status and tests). Both -1 when the gate is gone.
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

/* 1 the first time it is called in this process for @a gate, 0 after (to
 * report a removed semaphore once). */
int mxf_gate_first_gone(mxf_gate_t *gate);

#endif /* mxf_gate_h */
