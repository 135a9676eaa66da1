/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#include "mxf_gate.h"

#include <apr_thread_cond.h>
#include <apr_thread_mutex.h>

/*
 * Waiters queue in arrival order, each on its own condition variable, so
 * that a freed slot goes to exactly the longest waiter (handed over: the
 * count of busy slots does not change) and nobody else wakes up.
 */
typedef struct waiter {
    struct waiter *next;
    apr_thread_cond_t *cond;
    int granted;
} waiter_t;

struct mxf_gate {
    apr_thread_mutex_t *mutex;
    int slots;
    int busy;
    int nwaiting;
    waiter_t *head, *tail;
    unsigned refused;                   /* refusals not reported yet */
    apr_time_t reported;                /* when they last were (0: never) */
};

apr_status_t mxf_gate_create(mxf_gate_t **out, int slots, apr_pool_t *pool)
{
    mxf_gate_t *gate = apr_pcalloc(pool, sizeof(*gate));
    apr_status_t rv;

    rv = apr_thread_mutex_create(&gate->mutex, APR_THREAD_MUTEX_DEFAULT, pool);
    if (rv != APR_SUCCESS) {
        return rv;
    }
    gate->slots = slots > 0 ? slots : 1;
    *out = gate;
    return APR_SUCCESS;
}

static void unlink_waiter(mxf_gate_t *gate, waiter_t *w)
{
    waiter_t **pp, *prev = NULL;

    for (pp = &gate->head; *pp; prev = *pp, pp = &(*pp)->next) {
        if (*pp == w) {
            *pp = w->next;
            if (gate->tail == w) {
                gate->tail = prev;
            }
            gate->nwaiting--;
            return;
        }
    }
}

apr_status_t mxf_gate_enter(mxf_gate_t *gate, apr_interval_time_t timeout, apr_pool_t *pool)
{
    waiter_t w = { NULL, NULL, 0 };
    apr_time_t deadline;
    apr_status_t rv;

    apr_thread_mutex_lock(gate->mutex);
    if (gate->busy < gate->slots && !gate->head) {
        gate->busy++;
        apr_thread_mutex_unlock(gate->mutex);
        return APR_SUCCESS;
    }
    if (timeout <= 0) {
        apr_thread_mutex_unlock(gate->mutex);
        return APR_TIMEUP;
    }
    rv = apr_thread_cond_create(&w.cond, pool);
    if (rv != APR_SUCCESS) {
        apr_thread_mutex_unlock(gate->mutex);
        return rv;
    }
    if (gate->tail) {
        gate->tail->next = &w;
    }
    else {
        gate->head = &w;
    }
    gate->tail = &w;
    gate->nwaiting++;

    deadline = apr_time_now() + timeout;
    while (!w.granted) {
        apr_interval_time_t left = deadline - apr_time_now();
        if (left <= 0) {
            break;
        }
        /* Spurious wake-ups and timeouts alike: look at w.granted again. */
        apr_thread_cond_timedwait(w.cond, gate->mutex, left);
    }
    if (!w.granted) {
        unlink_waiter(gate, &w);
        rv = APR_TIMEUP;
    }
    apr_thread_mutex_unlock(gate->mutex);
    /* Nobody refers to w.cond any more: granted waiters were unlinked by the
     * one who granted, the others by themselves. */
    apr_thread_cond_destroy(w.cond);
    return rv;
}

void mxf_gate_leave(mxf_gate_t *gate)
{
    waiter_t *w;

    apr_thread_mutex_lock(gate->mutex);
    w = gate->head;
    if (w) {
        /* The slot goes straight to the longest waiter. */
        gate->head = w->next;
        if (!gate->head) {
            gate->tail = NULL;
        }
        gate->nwaiting--;
        w->next = NULL;
        w->granted = 1;
        apr_thread_cond_signal(w->cond);
    }
    else if (gate->busy > 0) {
        gate->busy--;
    }
    apr_thread_mutex_unlock(gate->mutex);
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

void mxf_gate_stats(mxf_gate_t *gate, int *busy, int *waiting)
{
    apr_thread_mutex_lock(gate->mutex);
    *busy = gate->busy;
    *waiting = gate->nwaiting;
    apr_thread_mutex_unlock(gate->mutex);
}
