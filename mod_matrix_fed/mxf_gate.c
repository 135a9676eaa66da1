/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE                     /* semtimedop() */
#endif
#include "mxf_gate.h"

#include <errno.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <sys/types.h>

#include <apr_errno.h>
#include <apr_thread_mutex.h>

/*
 * One System V semaphore counting the free slots. Every operation on it
 * is SEM_UNDO: the kernel gives back what a process holds when it exits,
 * however it exits. Waiters on one semaphore are served in the order they
 * came (Linux queues blocked operations and grants them from the front).
 */
struct mxf_gate {
    int semid;
    int slots;
    apr_thread_mutex_t *mutex;          /* guards the three below, per process */
    unsigned refused;                   /* refusals not reported yet */
    apr_time_t reported;                /* when they last were (0: never) */
    int gone_reported;
};

/* semctl()'s fourth argument, which the caller declares. */
union gate_semun {
    int val;
    struct semid_ds *buf;
    unsigned short *array;
};

apr_status_t mxf_gate_make(int slots, int *id)
{
    union gate_semun arg;
    apr_status_t rv;
    int semid;

    if (slots < 1 || slots > 10000) {
        return APR_EINVAL;
    }
    semid = semget(IPC_PRIVATE, 1, 0600);
    if (semid < 0) {
        return APR_FROM_OS_ERROR(errno);
    }
    arg.val = slots;
    if (semctl(semid, 0, SETVAL, arg) < 0) {
        rv = APR_FROM_OS_ERROR(errno);
        mxf_gate_remove(semid);
        return rv;
    }
    *id = semid;
    return APR_SUCCESS;
}

apr_status_t mxf_gate_remove(int id)
{
    return semctl(id, 0, IPC_RMID) < 0 ? APR_FROM_OS_ERROR(errno) : APR_SUCCESS;
}

apr_status_t mxf_gate_give(int id, long uid, long gid)
{
    struct semid_ds ds;
    union gate_semun arg;

    arg.buf = &ds;
    if (semctl(id, 0, IPC_STAT, arg) < 0) {
        return APR_FROM_OS_ERROR(errno);
    }
    ds.sem_perm.uid = (uid_t)uid;
    ds.sem_perm.gid = (gid_t)gid;
    ds.sem_perm.mode = 0600;
    if (semctl(id, 0, IPC_SET, arg) < 0) {
        return APR_FROM_OS_ERROR(errno);
    }
    return APR_SUCCESS;
}

apr_status_t mxf_gate_open(mxf_gate_t **out, int id, int slots, apr_pool_t *pool)
{
    mxf_gate_t *gate = apr_pcalloc(pool, sizeof(*gate));
    apr_status_t rv;

    rv = apr_thread_mutex_create(&gate->mutex, APR_THREAD_MUTEX_DEFAULT, pool);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    gate->semid = id;
    gate->slots = slots;
    *out = gate;
    return APR_SUCCESS;
}

int mxf_gate_id(const mxf_gate_t *gate)
{
    return gate->semid;
}

int mxf_gate_slots(const mxf_gate_t *gate)
{
    return gate->slots;
}

apr_status_t mxf_gate_enter(mxf_gate_t *gate, apr_interval_time_t timeout)
{
    const apr_time_t deadline = apr_time_now() + timeout;
    struct sembuf op;

    op.sem_num = 0;
    op.sem_op = -1;
    for (;;) {
        apr_interval_time_t left = deadline - apr_time_now();
        int rc;

        if (left <= 0) {
            /* No wait allowed (or none left): a free slot or nothing. */
            op.sem_flg = SEM_UNDO | IPC_NOWAIT;
            rc = semop(gate->semid, &op, 1);
        }
        else {
            struct timespec ts;

            ts.tv_sec = (time_t)apr_time_sec(left);
            ts.tv_nsec = (long)apr_time_usec(left) * 1000;
            op.sem_flg = SEM_UNDO;
            rc = semtimedop(gate->semid, &op, 1, &ts);
        }
        if (rc == 0) {
            return APR_SUCCESS;
        }
        switch (errno) {
        case EINTR:                     /* a signal: wait what is left, */
                                        /* at the back of the queue */
            if (left <= 0) {
                return APR_TIMEUP;
            }
            continue;
        case EAGAIN:                    /* no slot in time */
            return APR_TIMEUP;
        case EIDRM:                     /* removed while waiting, */
        case EINVAL:                    /* or before */
            return APR_ENOENT;
        default:
            return APR_FROM_OS_ERROR(errno);
        }
    }
}

void mxf_gate_leave(mxf_gate_t *gate)
{
    struct sembuf op;

    op.sem_num = 0;
    op.sem_op = 1;
    op.sem_flg = SEM_UNDO;
    /* Fails only when the gate is gone, and then nobody waits on it. */
    (void)semop(gate->semid, &op, 1);
}

int mxf_gate_first_gone(mxf_gate_t *gate)
{
    int first;

    apr_thread_mutex_lock(gate->mutex);
    first = !gate->gone_reported;
    gate->gone_reported = 1;
    apr_thread_mutex_unlock(gate->mutex);
    return first;
}

void mxf_gate_stats(mxf_gate_t *gate, int *busy, int *waiting)
{
    int free_slots = semctl(gate->semid, 0, GETVAL);
    int n = semctl(gate->semid, 0, GETNCNT);

    if (free_slots < 0 || n < 0) {
        *busy = *waiting = -1;
        return;
    }
    *busy = gate->slots - free_slots;
    *waiting = n;
}

unsigned mxf_gate_refused(mxf_gate_t *gate, apr_time_t now, apr_interval_time_t every)
{
    unsigned n = 0;

    apr_thread_mutex_lock(gate->mutex);
    gate->refused++;
    if (!gate->reported || now - gate->reported >= every) {
        n = gate->refused;
        gate->refused = 0;
        gate->reported = now;
    }
    apr_thread_mutex_unlock(gate->mutex);
    return n;
}
