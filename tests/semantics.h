/*
 * What the files of check_semantics share: the page tasks and tests share
 * across the fork, the helpers, and the tasks (functions of the test
 * program, so valid in every forked worker). See check_semantics.c.
 */
#ifndef PP_SEMANTICS_H
#define PP_SEMANTICS_H

#include "procpool.h"
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define GATE_MAX_S 10.0 /* a gated task gives up after this long */

/* What tests and tasks share across the fork. */
struct page {
  atomic_int gate;       /* task_gate waits until it is set */
  atomic_int gate2;      /* task_gate2 waits until it is set */
  atomic_int hold;       /* the same, for the helper pool of make_done() */
  atomic_int init_count; /* initializers run */
  atomic_int pulls;      /* arguments a map's generator handed out */
  atomic_int release_cb; /* a blocking done-callback may return */
  atomic_int in_cb;      /* a blocking done-callback is running */
};

extern struct page *page;
extern pp_engine engine; /* the engine of this run of the suite */
/* Set by an initializer, read by task_init_value: per worker thread (the
 * thread engine runs a worker's initializer and tasks in one thread). */
extern _Thread_local int init_value;

/* A case of the suite, with the fixture and a timeout in seconds. */
TCase *sem_tcase(Suite *s, const char *name, double timeout);
/* The tests of issue 10's defects, and those ported from CPython. */
void sem_add_defect_tests(Suite *s);
void sem_add_python_future_tests(Suite *s);
void sem_add_python_executor_tests(Suite *s);

void sleep_ms(double ms);
/* Polls `cond(arg)` for up to `seconds`. */
int eventually(int (*cond)(void *), void *arg, double seconds);
int is_running(void *future);
int flag_set(void *atomic_int_flag);
/* A pool of this run's engine (0: defaults), asserted created. */
pp_pool *pool_with(int workers, size_t max_payload, size_t ring);
pp_pool *pool_n(int workers);
int64_t arg_i64(const void *arg, size_t len);
pp_future *submit_i64(pp_pool *p, pp_task_fn fn, int64_t v);
/* The int64 result of f, which must succeed within 30 s. */
int64_t result_i64(pp_future *f);

/* A call run in a thread of its own, so that a test can give up on a call
 * that hangs (the test then fails; Check's fork ends the thread). */
struct bg {
  void (*fn)(void *);
  void *arg;
  atomic_int done;
  pthread_t thread;
};

void bg_start(struct bg *b, void (*fn)(void *), void *arg);
/* Whether the call returned within `seconds` (then the thread is joined). */
int bg_finished_within(struct bg *b, double seconds);

/* Tasks; an int64 argument unless said. */
int task_echo(pp_task *t, const void *arg, size_t len);
int task_fail(pp_task *t, const void *arg, size_t len);  /* code 42 */
int task_sleep(pp_task *t, const void *arg, size_t len); /* arg ms */
int task_gate(pp_task *t, const void *arg, size_t len);  /* page->gate */
int task_gate2(pp_task *t, const void *arg, size_t len); /* page->gate2 */
int task_gate_fail(pp_task *t, const void *arg, size_t len);
int task_square(pp_task *t, const void *arg, size_t len);
int task_spin_us(pp_task *t, const void *arg, size_t len); /* arg us */
int task_return_too_big(pp_task *t, const void *arg, size_t len);
int task_set_too_big(pp_task *t, const void *arg, size_t len);
int task_crash(pp_task *t, const void *arg, size_t len); /* SIGSEGV */
int task_exit(pp_task *t, const void *arg, size_t len);  /* _exit(1) */
int task_init_value(pp_task *t, const void *arg, size_t len);

/* The already-done futures of CPython's util.py (SUCCESSFUL_FUTURE,
 * EXCEPTION_FUTURE, CANCELLED_AND_NOTIFIED_FUTURE), made by a pool of their
 * own and outliving it, as the header promises. */
struct done3 {
  pp_future *ok, *err, *cancelled;
};

struct done3 make_done(void);
void release_done(struct done3 *d);

/* A generator of 0, 1, 2, ... (up to `limit`, or for ever when negative)
 * that counts what it hands out. */
struct counter {
  int64_t next, cur;
  int64_t limit;
  int pulls;
};

int gen_count(void *state, const void **arg, size_t *len);
/* The next int64 result of m, which must succeed. */
int64_t map_next_i64(pp_map *m);

#endif
