/*
 * check_semantics, executors: what CPython's test_concurrent_futures checks
 * in test_shutdown, test_init, test_deadlock and executor.py, as C tests of
 * the same behaviours, wherever the C API has an equivalent. Where procpool
 * deliberately differs (the header says so at the function), the test
 * checks procpool's documented behaviour and says so.
 */
#include "semantics.h"

#include <stdio.h>
#include <stdlib.h>

/* ---------------------------------------------------- test_shutdown */

/* test_run_after_shutdown: submits fail with PP_ESHUTDOWN. */
START_TEST(test_py_shutdown_run_after) {
  pp_pool *p = pool_n(1);
  pp_future *f = (void *)1;
  int64_t v = 2;

  ck_assert_int_eq(pp_pool_shutdown(p, 1, 0), 0);
  ck_assert_int_eq(pp_submit(p, task_square, &v, sizeof v, &f), PP_ESHUTDOWN);
  ck_assert_ptr_null(f);
  pp_pool_destroy(p);
}
END_TEST

/* test_hang_issue12364 and test_processes_terminate: a waiting shutdown
 * with 50 tasks queued returns once all are done and the workers exited. */
START_TEST(test_py_shutdown_hang_12364) {
  enum { N = 50 };
  pp_pool *p = pool_n(2);
  pp_future *fs[N];

  for (int i = 0; i < N; i++)
    fs[i] = submit_i64(p, task_sleep, 10);
  ck_assert_int_eq(pp_pool_shutdown(p, 1, 0), 0);
  ck_assert_int_eq(tu_children(), 0);
  for (int i = 0; i < N; i++) {
    ck_assert(pp_future_done(fs[i]));
    ck_assert_int_eq(result_i64(fs[i]), 10);
    pp_future_release(fs[i]);
  }
  pp_pool_destroy(p);
}
END_TEST

/* test_cancel_futures: shutdown(cancel_pending) with 50 tasks on 2
 * workers cancels more than 20; the rest finish without error. */
START_TEST(test_py_shutdown_cancel_futures) {
  enum { N = 50 };
  pp_pool *p = pool_n(2);
  pp_future *fs[N];
  int cancelled = 0;

  for (int i = 0; i < N; i++)
    fs[i] = submit_i64(p, task_sleep, 100);
  ck_assert(eventually(is_running, fs[0], 10));
  ck_assert_int_eq(pp_pool_shutdown(p, 1, 1), 0);
  for (int i = 0; i < N; i++) {
    ck_assert(pp_future_done(fs[i]));
    if (pp_future_cancelled(fs[i]))
      cancelled++;
    else
      ck_assert_int_eq(result_i64(fs[i]), 100);
    pp_future_release(fs[i]);
  }
  ck_assert_int_gt(cancelled, 20);
  ck_assert_int_lt(cancelled, N);
  pp_pool_destroy(p);
}
END_TEST

static void do_shutdown_wait(void *p) {
  pp_pool_shutdown(p, 1, 0);
}

/* test_hang_gh94440: a task submitted and at once cancelled right before a
 * waiting shutdown does not hang it. */
START_TEST(test_py_shutdown_gh94440) {
  pp_pool *p = pool_n(1);
  pp_future *f = submit_i64(p, task_square, 1);
  struct bg b;

  ck_assert_int_eq(result_i64(f), 1);
  pp_future_release(f);
  f = submit_i64(p, task_square, 2);
  pp_future_cancel(f);
  bg_start(&b, do_shutdown_wait, p);
  ck_assert_msg(bg_finished_within(&b, 10), "shutdown(wait) hangs");
  ck_assert(pp_future_done(f));
  pp_future_release(f);
  pp_pool_destroy(p);
}
END_TEST

/* An array map over 0..n-1 (values kept in `vals`). */
static pp_map *map_range(pp_pool *p, pp_task_fn fn, int64_t *vals,
                         const void **args, size_t *lens, size_t n,
                         const pp_map_options *mo) {
  pp_map *m = NULL;
  for (size_t i = 0; i < n; i++) {
    vals[i] = (int64_t)i;
    args[i] = &vals[i];
    lens[i] = sizeof vals[i];
  }
  ck_assert_int_eq(pp_map_array(p, fn, args, lens, n, mo, &m), 0);
  return m;
}

/* test_shutdown_no_wait (and test_del_shutdown): a map's results are all
 * there after shutdown(wait=0). Also test_shutdown_race_issue12456 (a map
 * of workers + 1 tasks, then a waiting shutdown, does not hang). */
START_TEST(test_py_shutdown_with_map) {
  enum { N = 10 };
  pp_pool *p = pool_n(2);
  int64_t vals[N];
  const void *args[N];
  size_t lens[N];
  pp_map *m = map_range(p, task_square, vals, args, lens, N, NULL);
  struct bg b;

  ck_assert_int_eq(pp_pool_shutdown(p, 0, 0), 0);
  for (int i = 0; i < N; i++)
    ck_assert_int_eq(map_next_i64(m), i * i);
  ck_assert_int_eq(pp_map_next(m, NULL, NULL), PP_EOF);
  pp_map_destroy(m);
  pp_pool_destroy(p);

  p = pool_n(2);
  m = map_range(p, task_square, vals, args, lens, 3, NULL);
  bg_start(&b, do_shutdown_wait, p);
  ck_assert_msg(bg_finished_within(&b, 10), "shutdown after a map hangs");
  for (int i = 0; i < 3; i++)
    ck_assert_int_eq(map_next_i64(m), i * i);
  pp_map_destroy(m);
  pp_pool_destroy(p);
}
END_TEST

/* test_shutdown_gh_132969: one task per worker, a failing task, then
 * shutdown(wait=0): results are right and the pool ends. */
START_TEST(test_py_shutdown_gh132969) {
  pp_options o;
  pp_pool *p = NULL;
  pp_future *f1, *f2, *f3;

  pp_options_init(&o);
  o.engine = engine;
  o.workers = 2;
  o.max_tasks_per_worker = 1;
  ck_assert_int_eq(pp_pool_create(&p, &o), 0);
  f1 = submit_i64(p, task_sleep, 100);
  f2 = submit_i64(p, task_fail, 0);
  f3 = submit_i64(p, task_sleep, 300);
  ck_assert_int_eq(result_i64(f1), 100);
  ck_assert_int_eq(pp_future_result(f2, 30, NULL, NULL), PP_ETASK);
  ck_assert_int_eq(pp_pool_shutdown(p, 0, 0), 0);
  pp_pool_destroy(p);
  ck_assert_int_eq(result_i64(f3), 300);
  pp_future_release(f1);
  pp_future_release(f2);
  pp_future_release(f3);
}
END_TEST

/* -------------------------------------------------------- test_init */

static int init_set(void *arg) {
  init_value = *(int *)arg;
  atomic_fetch_add(&page->init_count, 1);
  return 0;
}

/* InitializerMixin.test_initializer: every worker ran the initializer
 * before its tasks. */
START_TEST(test_py_initializer) {
  static int seven = 7;
  pp_options o;
  pp_pool *p = NULL;
  pp_future *fs[2];

  pp_options_init(&o);
  o.engine = engine;
  o.workers = 2;
  o.initializer = init_set;
  o.initarg = &seven;
  ck_assert_int_eq(pp_pool_create(&p, &o), 0);
  for (int i = 0; i < 2; i++)
    fs[i] = submit_i64(p, task_init_value, 0);
  for (int i = 0; i < 2; i++) {
    ck_assert_int_eq(result_i64(fs[i]), 7);
    pp_future_release(fs[i]);
  }
  ck_assert_int_eq(atomic_load(&page->init_count), 2);
  pp_pool_destroy(p);
}
END_TEST

/* Sleeps a moment (so that tasks get queued), then fails. */
static int init_fail_late(void *arg) {
  (void)arg;
  sleep_ms(100);
  return 1;
}

/* FailingInitializerMixin.test_initializer: procpool's pp_pool_create()
 * answers PP_EINIT (documented). Starting in the background (processes),
 * a task fails with PP_EINIT, or its submit does; once the pool knows, every
 * submit fails with PP_EINIT, as Python's BrokenExecutor. */
START_TEST(test_py_initializer_fails) {
  pp_options o;
  pp_pool *p = NULL;
  pp_future *f = NULL;
  int64_t v = 1;
  int rc;

  pp_options_init(&o);
  o.engine = engine;
  o.workers = 2;
  o.initializer = init_fail_late;
  ck_assert_int_eq(pp_pool_create(&p, &o), PP_EINIT);
  ck_assert_ptr_null(p);
  if (engine == PP_ENGINE_THREADS)
    return; /* always waits for its initializers: see start_in_background */
  o.start_in_background = 1;
  ck_assert_int_eq(pp_pool_create(&p, &o), 0);
  rc = pp_submit(p, task_square, &v, sizeof v, &f);
  if (rc == 0)
    rc = pp_future_result(f, 30, NULL, NULL);
  ck_assert_int_eq(rc, PP_EINIT);
  pp_future_release(f);
  f = NULL;
  ck_assert_int_eq(pp_submit(p, task_square, &v, sizeof v, &f), PP_EINIT);
  ck_assert_ptr_null(f);
  pp_pool_destroy(p);
}
END_TEST

/* ---------------------------------------------------- test_deadlock */

/* _check_error for a crash, an exit and an error in the task: the future
 * fails (PP_ECRASHED naming the cause, PP_ETASK) instead of hanging, and,
 * unlike Python's broken pool, the pool replaces the worker and goes on
 * (the header: "which is replaced"). */
START_TEST(test_py_deadlock_task_dies) {
  pp_pool *p = pool_n(2);
  pp_future *crash = submit_i64(p, task_crash, 0);
  pp_future *ex = submit_i64(p, task_exit, 0);
  pp_future *err = submit_i64(p, task_fail, 0), *after;

  ck_assert_int_eq(pp_future_result(crash, 30, NULL, NULL), PP_ECRASHED);
  /* "killed by signal 11", or under a sanitizer that catches SIGSEGV, an
   * exit status: either way the message names the worker's end. */
  ck_assert_ptr_nonnull(strstr(pp_future_message(crash), "worker"));
  ck_assert_int_eq(pp_future_result(ex, 30, NULL, NULL), PP_ECRASHED);
  ck_assert_ptr_nonnull(strstr(pp_future_message(ex), "status 1"));
  ck_assert_int_eq(pp_future_result(err, 30, NULL, NULL), PP_ETASK);
  ck_assert_int_eq(pp_future_task_code(err), 42);
  ck_assert_str_eq(pp_future_message(err), "error 42");
  after = submit_i64(p, task_square, 5);
  ck_assert_int_eq(result_i64(after), 25);
  pp_future_release(crash);
  pp_future_release(ex);
  pp_future_release(err);
  pp_future_release(after);
  pp_pool_destroy(p);
}
END_TEST

/* test_shutdown_deadlock: a worker that dies after a waiting shutdown began
 * does not hang it; its task fails. */
START_TEST(test_py_deadlock_crash_after_shutdown) {
  pp_pool *p = pool_n(2);
  pp_future *f = submit_i64(p, task_crash, 100);
  struct bg b;

  bg_start(&b, do_shutdown_wait, p);
  ck_assert_msg(bg_finished_within(&b, 30), "shutdown hangs after a crash");
  ck_assert_int_eq(pp_future_result(f, 0, NULL, NULL), PP_ECRASHED);
  pp_future_release(f);
  pp_pool_destroy(p);
}
END_TEST

/* test_crash_big_data: workers crash holding big arguments; every item of
 * the map fails (procpool's map goes on after a failed item). */
START_TEST(test_py_deadlock_crash_big_data) {
  enum { N = 10, BIG = 200 * 1024 };
  pp_pool *p = pool_with(2, 256 * 1024, 0);
  char *big = calloc(1, BIG);
  const void *args[N];
  size_t lens[N];
  pp_map *m;

  ck_assert_ptr_nonnull(big);
  for (int i = 0; i < N; i++) {
    args[i] = big;
    lens[i] = BIG;
  }
  ck_assert_int_eq(pp_map_array(p, task_crash, args, lens, N, NULL, &m), 0);
  for (int i = 0; i < N; i++)
    ck_assert_int_eq(pp_map_next(m, NULL, NULL), PP_ECRASHED);
  ck_assert_int_eq(pp_map_next(m, NULL, NULL), PP_EOF);
  pp_map_destroy(m);
  free(big);
  pp_pool_destroy(p);
}
END_TEST

/* ------------------------------------------------------- executor.py */

/* test_submit, test_map (with and without chunks), and
 * test_gh105829 (a map of 100 tasks finishes). */
START_TEST(test_py_executor_submit_map) {
  enum { N = 100 };
  static const size_t chunks[] = {1, 3};
  pp_pool *p = pool_n(2);
  pp_future *f = submit_i64(p, task_square, 16);
  int64_t vals[N];
  const void *args[N];
  size_t lens[N];

  ck_assert_int_eq(result_i64(f), 256);
  pp_future_release(f);
  for (int k = 0; k < 2; k++) {
    pp_map_options mo = {.chunksize = chunks[k]};
    pp_map *m = map_range(p, task_square, vals, args, lens, N, &mo);
    for (int i = 0; i < N; i++) {
      ck_assert_int_eq(map_next_i64(m), i * i);
      ck_assert_uint_eq(pp_map_index(m), i);
    }
    ck_assert_int_eq(pp_map_next(m, NULL, NULL), PP_EOF);
    pp_map_destroy(m);
  }
  pp_pool_destroy(p);
}
END_TEST

static int task_fail_on_2(pp_task *t, const void *arg, size_t len) {
  return arg_i64(arg, len) == 2 ? task_fail(t, arg, len)
                                : task_square(t, arg, len);
}

/* test_map_exception: the failed item reports its error; unlike Python,
 * the map goes on (documented at pp_map_next()). */
START_TEST(test_py_executor_map_exception) {
  pp_pool *p = pool_n(2);
  int64_t vals[4];
  const void *args[4];
  size_t lens[4];
  pp_map *m = map_range(p, task_fail_on_2, vals, args, lens, 4, NULL);

  ck_assert_int_eq(map_next_i64(m), 0);
  ck_assert_int_eq(map_next_i64(m), 1);
  ck_assert_int_eq(pp_map_next(m, NULL, NULL), PP_ETASK);
  ck_assert_int_eq(pp_map_task_code(m), 42);
  ck_assert_str_eq(pp_map_message(m), "error 42");
  ck_assert_int_eq(map_next_i64(m), 9);
  ck_assert_int_eq(pp_map_next(m, NULL, NULL), PP_EOF);
  pp_map_destroy(m);
  pp_pool_destroy(p);
}
END_TEST

/* test_map_timeout: sleeps of 0, 0 and 1.5 s with a 0.3 s timeout give two
 * results, then PP_ETIMEDOUT. */
START_TEST(test_py_executor_map_timeout) {
  pp_pool *p = pool_n(3);
  int64_t ms[3] = {0, 0, 1500};
  const void *args[3] = {&ms[0], &ms[1], &ms[2]};
  size_t lens[3] = {8, 8, 8};
  pp_map_options mo = {.timeout = 0.3};
  pp_map *m;

  ck_assert_int_eq(pp_map_array(p, task_sleep, args, lens, 3, &mo, &m), 0);
  ck_assert_int_eq(map_next_i64(m), 0);
  ck_assert_int_eq(map_next_i64(m), 0);
  ck_assert_int_eq(pp_map_next(m, NULL, NULL), PP_ETIMEDOUT);
  pp_map_destroy(m);
  pp_pool_destroy(p);
}
END_TEST

/* test_max_workers_negative: a negative count is refused; procpool reads 0
 * as "the default" (documented). */
START_TEST(test_py_executor_max_workers) {
  pp_options o;
  pp_pool *p = (void *)1;

  pp_options_init(&o);
  o.engine = engine;
  o.workers = -1;
  ck_assert_int_eq(pp_pool_create(&p, &o), PP_EINVAL);
  ck_assert_ptr_null(p);
  o.workers = 0;
  ck_assert_int_eq(pp_pool_create(&p, &o), 0);
  ck_assert_int_gt(pp_pool_workers(p), 0);
  pp_pool_destroy(p);
}
END_TEST

/* test_map_buffersize (windows 1, 2, 4, 8 over 4 arguments),
 * ..._on_infinite_iterable, ..._on_empty_iterable and ..._when_buffer_is_full
 * (the call pulls only `window` arguments). */
START_TEST(test_py_executor_map_buffersize) {
  static const size_t windows[] = {1, 2, 4, 8};
  pp_pool *p = pool_n(2);
  pp_map *m;

  for (int k = 0; k < 4; k++) {
    struct counter c = {0, 0, 4, 0};
    pp_map_options mo = {.window = windows[k]};
    ck_assert_int_eq(pp_map_gen(p, task_echo, gen_count, &c, &mo, &m), 0);
    for (int i = 0; i < 4; i++)
      ck_assert_int_eq(map_next_i64(m), i);
    ck_assert_int_eq(pp_map_next(m, NULL, NULL), PP_EOF);
    pp_map_destroy(m);
  }
  {
    struct counter c = {0, 0, -1, 0};
    pp_map_options mo = {.window = 2};
    ck_assert_int_eq(pp_map_gen(p, task_echo, gen_count, &c, &mo, &m), 0);
    ck_assert_int_eq(c.pulls, 2);
    for (int i = 0; i < 3; i++)
      ck_assert_int_eq(map_next_i64(m), i);
    pp_map_destroy(m);
  }
  {
    struct counter c = {0, 0, 0, 0};
    ck_assert_int_eq(pp_map_gen(p, task_echo, gen_count, &c, NULL, &m), 0);
    ck_assert_int_eq(pp_map_next(m, NULL, NULL), PP_EOF);
    pp_map_destroy(m);
  }
  pp_pool_destroy(p);
}
END_TEST
/* Not Python's: a worker that exits right after each task (max 1 task a
 * worker) while the caller itself takes results off the ring. A result in
 * the caller's hands when the collector reaps its worker must still count:
 * it once made the task PP_ECRASHED ("exited with status 0 while running
 * it"), as flags --mode processes showed now and then. */
START_TEST(test_results_survive_worker_exit) {
  enum { N = 600 };
  static pp_future *fs[N];
  pp_completed *it;
  pp_future *f;
  pp_options o;
  pp_pool *p;
  int n = 0;

  pp_options_init(&o);
  o.engine = engine;
  o.workers = 4;
  o.max_tasks_per_worker = 1;
  ck_assert_int_eq(pp_pool_create(&p, &o), 0);
  for (int64_t i = 0; i < N; i++)
    fs[i] = submit_i64(p, task_echo, i);
  pp_pool_shutdown(p, 0, 0); /* workers leave as the queue empties */
  ck_assert_int_eq(pp_as_completed(fs, N, 60, &it), 0);
  while (pp_completed_next(it, &f) == 0) {
    int rc = pp_future_result(f, 0, NULL, NULL);
    ck_assert_msg(rc == 0, "a task: %s: %s", pp_errname(rc),
                  pp_future_message(f));
    n++;
  }
  ck_assert_int_eq(n, N);
  pp_completed_destroy(it);
  for (int i = 0; i < N; i++)
    pp_future_release(fs[i]);
  pp_pool_destroy(p);
}
END_TEST

void sem_add_python_executor_tests(Suite *s) {
  int procs = engine == PP_ENGINE_PROCESSES;
  TCase *tc;

  tc = sem_tcase(s, "test_shutdown+init", 30);
  tcase_add_test(tc, test_py_shutdown_run_after);
  tcase_add_test(tc, test_py_shutdown_hang_12364);
  tcase_add_test(tc, test_py_shutdown_cancel_futures);
  tcase_add_test(tc, test_py_shutdown_gh94440);
  tcase_add_test(tc, test_py_shutdown_with_map);
  tcase_add_test(tc, test_py_shutdown_gh132969);
  tcase_add_test(tc, test_py_initializer);
  tcase_add_test(tc, test_py_initializer_fails);

  tc = sem_tcase(s, "test_deadlock+executor", 30);
  if (procs) { /* a crashing task would take a thread pool's process */
    tcase_add_test(tc, test_py_deadlock_task_dies);
    tcase_add_test(tc, test_py_deadlock_crash_after_shutdown);
    tcase_add_test(tc, test_py_deadlock_crash_big_data);
  }
  tcase_add_test(tc, test_py_executor_submit_map);
  tcase_add_test(tc, test_py_executor_map_exception);
  tcase_add_test(tc, test_py_executor_map_timeout);
  tcase_add_test(tc, test_py_executor_max_workers);
  tcase_add_test(tc, test_py_executor_map_buffersize);
  tcase_add_test(tc, test_results_survive_worker_exit);
}
