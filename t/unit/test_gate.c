/* Licensed under the Apache License, Version 2.0 (see LICENSE). */
#include <apr_thread_mutex.h>
#include <apr_thread_proc.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mxf_gate.h"
#include "mxf_test.h"

static apr_status_t remove_semaphore(void *data)
{
    mxf_gate_remove(*(int *)data);
    return APR_SUCCESS;
}

/* A gate of @a slots slots; its semaphore is removed with the test's pool. */
static mxf_gate_t *new_gate(int slots)
{
    int *id = apr_palloc(mxf_test_pool, sizeof(*id));
    mxf_gate_t *gate = NULL;

    ck_assert_int_eq(mxf_gate_make(slots, id), APR_SUCCESS);
    apr_pool_cleanup_register(mxf_test_pool, id, remove_semaphore, apr_pool_cleanup_null);
    ck_assert_int_eq(mxf_gate_open(&gate, *id, slots, mxf_test_pool), APR_SUCCESS);
    ck_assert_int_eq(mxf_gate_id(gate), *id);
    return gate;
}

/* Waits (up to 5 s) until @a gate has @a n waiters. */
static void wait_for_waiters(mxf_gate_t *gate, int n)
{
    int busy, waiting, i;

    for (i = 0; i < 5000; i++) {
        mxf_gate_stats(gate, &busy, &waiting);
        if (waiting == n) {
            return;
        }
        apr_sleep(apr_time_from_msec(1));
    }
    ck_abort_msg("%d waiters expected, %d there", n, waiting);
}

START_TEST(slots_and_timeouts)
{
    mxf_gate_t *gate = new_gate(2);
    int busy, waiting;
    apr_time_t t0;

    ck_assert_int_eq(mxf_gate_enter(gate, 0), APR_SUCCESS);
    ck_assert_int_eq(mxf_gate_enter(gate, 0), APR_SUCCESS);
    mxf_gate_stats(gate, &busy, &waiting);
    ck_assert_int_eq(busy, 2);
    ck_assert_int_eq(waiting, 0);

    /* Full: no wait allowed, or a short one that runs out. */
    ck_assert_int_eq(mxf_gate_enter(gate, 0), APR_TIMEUP);
    t0 = apr_time_now();
    ck_assert_int_eq(mxf_gate_enter(gate, apr_time_from_msec(50)), APR_TIMEUP);
    ck_assert_int_ge(apr_time_now() - t0, apr_time_from_msec(50));
    mxf_gate_stats(gate, &busy, &waiting);
    ck_assert_int_eq(busy, 2);
    ck_assert_int_eq(waiting, 0);           /* the one who gave up left the queue */

    mxf_gate_leave(gate);
    ck_assert_int_eq(mxf_gate_enter(gate, 0), APR_SUCCESS);
    mxf_gate_leave(gate);
    mxf_gate_leave(gate);
    mxf_gate_stats(gate, &busy, &waiting);
    ck_assert_int_eq(busy, 0);
}
END_TEST

/* Refusals are reported at most once per interval, with their count. */
START_TEST(refusals_reported_at_intervals)
{
    mxf_gate_t *gate = new_gate(1);
    const apr_interval_time_t every = apr_time_from_sec(10);
    const apr_time_t t0 = apr_time_from_sec(1000);

    ck_assert_uint_eq(mxf_gate_refused(gate, t0, every), 1);       /* the first: at once */
    ck_assert_uint_eq(mxf_gate_refused(gate, t0 + 1, every), 0);
    ck_assert_uint_eq(mxf_gate_refused(gate, t0 + every - 1, every), 0);
    ck_assert_uint_eq(mxf_gate_refused(gate, t0 + every, every), 3);
    ck_assert_uint_eq(mxf_gate_refused(gate, t0 + every + 5, every), 0);
    ck_assert_uint_eq(mxf_gate_refused(gate, t0 + 5 * every, every), 2);
}
END_TEST

#define NTHREADS 6

typedef struct {
    mxf_gate_t *gate;
    apr_thread_mutex_t *mutex;
    int order[NTHREADS];
    int norder;
    apr_interval_time_t timeout[NTHREADS];
    apr_status_t result[NTHREADS];
} fifo_t;

typedef struct {
    fifo_t *f;
    int idx;
} arg_t;

static void *APR_THREAD_FUNC waiter(apr_thread_t *thd, void *data)
{
    arg_t *a = data;
    fifo_t *f = a->f;
    apr_status_t rv;

    rv = mxf_gate_enter(f->gate, f->timeout[a->idx]);
    f->result[a->idx] = rv;
    if (rv == APR_SUCCESS) {
        apr_thread_mutex_lock(f->mutex);
        f->order[f->norder++] = a->idx;
        apr_thread_mutex_unlock(f->mutex);
        apr_sleep(apr_time_from_msec(2));
        mxf_gate_leave(f->gate);
    }
    apr_thread_exit(thd, APR_SUCCESS);
    return NULL;
}

/*
 * One slot, held; threads queue one after another (each starts once the
 * one before it waits), one of them with a wait too short to be served.
 * Once the slot is given back they get it in the order they came, and the
 * one who gave up is skipped.
 */
START_TEST(first_come_first_served)
{
    fifo_t f = { 0 };
    arg_t args[NTHREADS];
    apr_thread_t *thr[NTHREADS];
    apr_status_t trv;
    int i, busy, waiting, expect = 0;
    const int gives_up = 2;

    f.gate = new_gate(1);
    ck_assert_int_eq(apr_thread_mutex_create(&f.mutex, APR_THREAD_MUTEX_DEFAULT,
                                             mxf_test_pool), APR_SUCCESS);
    ck_assert_int_eq(mxf_gate_enter(f.gate, 0), APR_SUCCESS);
    for (i = 0; i < NTHREADS; i++) {
        f.timeout[i] = i == gives_up ? apr_time_from_msec(500) : apr_time_from_sec(10);
        args[i].f = &f;
        args[i].idx = i;
        ck_assert_int_eq(apr_thread_create(&thr[i], NULL, waiter, &args[i], mxf_test_pool),
                         APR_SUCCESS);
        wait_for_waiters(f.gate, i + 1);
    }
    /* The impatient one leaves the queue on its own. */
    wait_for_waiters(f.gate, NTHREADS - 1);
    mxf_gate_leave(f.gate);
    for (i = 0; i < NTHREADS; i++) {
        apr_thread_join(&trv, thr[i]);
    }

    ck_assert_int_eq(f.result[gives_up], APR_TIMEUP);
    ck_assert_int_eq(f.norder, NTHREADS - 1);
    for (i = 0; i < NTHREADS; i++) {
        if (i == gives_up) {
            continue;
        }
        ck_assert_int_eq(f.result[i], APR_SUCCESS);
        ck_assert_msg(f.order[expect] == i, "turn %d went to thread %d, not %d",
                      expect, f.order[expect], i);
        expect++;
    }
    mxf_gate_stats(f.gate, &busy, &waiting);
    ck_assert_int_eq(busy, 0);
    ck_assert_int_eq(waiting, 0);
}
END_TEST

/* Runs @a fn in a forked process; returns its exit status (0: it passed). */
static int in_child(int (*fn)(mxf_gate_t *), mxf_gate_t *gate)
{
    int status = -1;
    pid_t pid = fork();

    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        _exit(fn(gate));
    }
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status), "the child did not exit");
    return WEXITSTATUS(status);
}

static int enter_refused(mxf_gate_t *gate)
{
    return mxf_gate_enter(gate, apr_time_from_msec(20)) == APR_TIMEUP ? 0 : 1;
}

/* Takes the slot and exits holding it. */
static int enter_and_die(mxf_gate_t *gate)
{
    return mxf_gate_enter(gate, 0) == APR_SUCCESS ? 0 : 1;
}

static int wait_until_gone(mxf_gate_t *gate)
{
    return mxf_gate_enter(gate, apr_time_from_sec(10)) == APR_ENOENT ? 0 : 1;
}

/*
 * The slots are counted across processes: a forked process finds the
 * parent's slot taken; one that dies holding a slot gives it back; removing
 * the semaphore sends those waiting on it away (APR_ENOENT), and later
 * callers too.
 */
START_TEST(shared_by_forked_processes)
{
    mxf_gate_t *gate = new_gate(1);
    int busy, waiting, i, status;
    pid_t pid;

    ck_assert_int_eq(mxf_gate_enter(gate, 0), APR_SUCCESS);
    ck_assert_int_eq(in_child(enter_refused, gate), 0);
    mxf_gate_leave(gate);

    ck_assert_int_eq(in_child(enter_and_die, gate), 0);
    mxf_gate_stats(gate, &busy, &waiting);
    ck_assert_int_eq(busy, 0);              /* the kernel gave it back */
    ck_assert_int_eq(mxf_gate_enter(gate, 0), APR_SUCCESS);

    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        _exit(wait_until_gone(gate));
    }
    waiting = 0;
    for (i = 0; i < 5000 && waiting < 1; i++) {
        apr_sleep(apr_time_from_msec(1));
        mxf_gate_stats(gate, &busy, &waiting);
    }
    ck_assert_int_eq(waiting, 1);
    ck_assert_int_eq(mxf_gate_remove(mxf_gate_id(gate)), APR_SUCCESS);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    ck_assert_int_eq(mxf_gate_enter(gate, apr_time_from_msec(10)), APR_ENOENT);
    mxf_gate_stats(gate, &busy, &waiting);
    ck_assert_int_eq(busy, -1);
    ck_assert_int_eq(waiting, -1);
    ck_assert_int_eq(mxf_gate_first_gone(gate), 1);
    ck_assert_int_eq(mxf_gate_first_gone(gate), 0);
}
END_TEST

START_TEST(slots_out_of_range)
{
    int id = -1;

    ck_assert_int_eq(mxf_gate_make(0, &id), APR_EINVAL);
    ck_assert_int_eq(mxf_gate_make(10001, &id), APR_EINVAL);
    ck_assert_int_eq(id, -1);
    ck_assert_int_eq(mxf_gate_make(10000, &id), APR_SUCCESS);
    ck_assert_int_eq(mxf_gate_remove(id), APR_SUCCESS);
    ck_assert_int_ne(mxf_gate_remove(id), APR_SUCCESS);
}
END_TEST

Suite *mxf_suite_gate(void)
{
    Suite *s = suite_create("gate");
    TCase *tc = mxf_test_case("gate");

    tcase_add_test(tc, slots_and_timeouts);
    tcase_add_test(tc, first_come_first_served);
    tcase_add_test(tc, refusals_reported_at_intervals);
    tcase_add_test(tc, shared_by_forked_processes);
    tcase_add_test(tc, slots_out_of_range);
    tcase_set_timeout(tc, 20);
    suite_add_tcase(s, tc);
    return s;
}
