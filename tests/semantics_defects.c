/*
 * check_semantics: one test per defect NN of issue 10 (test_dNN_*, items
 * 1-12), each on every engine it concerns, each failing on the code the
 * issue describes. A test that would hang there is bounded (a helper thread
 * and a deadline, or the tcase timeout), so that it fails instead. Defects
 * of killing and per-task timeouts concern the process engine only (the
 * thread engine answers PP_ENOTSUP there, as check_pool checks).
 */
#include "semantics.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* A thread waiting for a future for ever, in one of three calls. */
enum wait_in { IN_RESULT, IN_WAIT, IN_AS_COMPLETED };

struct waiter {
  pp_future *f;
  enum wait_in in;
  int rc; /* the future's result once the wait returned */
};

static void wait_forever(void *arg) {
  struct waiter *w = arg;
  pp_completed *it;
  pp_future *got;

  if (w->in == IN_WAIT) {
    pp_wait(&w->f, 1, PP_FOREVER, PP_ALL_COMPLETED, NULL);
  } else if (w->in == IN_AS_COMPLETED &&
             pp_as_completed(&w->f, 1, PP_FOREVER, &it) == 0) {
    pp_completed_next(it, &got);
    pp_completed_destroy(it);
  }
  w->rc = pp_future_result(w->f, PP_FOREVER, NULL, NULL);
}

static const char *const wait_names[] = {"pp_future_result()", "pp_wait()",
                                         "pp_completed_next()"};

/* How a cancel reaches the waiter: pp_future_cancel() or a shutdown. */
enum cancel_by { BY_CANCEL, BY_SHUTDOWN };

/* 1. A waiter (PP_FOREVER) on an idle pool (its one worker held by a gate)
 * is woken at once when another thread cancels the future. The bug wakes it
 * only when an unrelated task ends: the gate is opened after 2 s, so that
 * the test fails rather than hangs. */
static void check_cancel_wakes_waiter(enum cancel_by how, enum wait_in in) {
  pp_pool *p = pool_n(1);
  pp_future *g = submit_i64(p, task_gate, 0);
  struct waiter w = {NULL, in, 1};
  struct bg b;
  int woke;

  ck_assert(eventually(is_running, g, 10));
  w.f = submit_i64(p, task_echo, 1);
  bg_start(&b, wait_forever, &w);
  sleep_ms(100); /* the waiter is asleep by now */
  if (how == BY_CANCEL)
    ck_assert_int_eq(pp_future_cancel(w.f), 0);
  else
    ck_assert_int_eq(pp_pool_shutdown(p, 0, 1), 0);
  woke = bg_finished_within(&b, 2);
  atomic_store(&page->gate, 1);
  if (!woke)
    ck_assert(bg_finished_within(&b, 30));
  ck_assert_msg(woke,
                "a waiter in %s was not woken by %s of its future (it "
                "woke only when an unrelated task finished)",
                wait_names[in],
                how == BY_CANCEL ? "pp_future_cancel()"
                                 : "pp_pool_shutdown(cancel_pending)");
  ck_assert_int_eq(w.rc, PP_ECANCELLED);
  ck_assert_int_eq(result_i64(g), 0);
  pp_future_release(g);
  pp_future_release(w.f);
  pp_pool_destroy(p);
}

START_TEST(test_d01_cancel_wakes_waiter) {
  check_cancel_wakes_waiter(BY_CANCEL, IN_RESULT);
}
END_TEST

/* 1, the same cause: pp_wait() and as_completed sleep on the same
 * condition as pp_future_result(). */
START_TEST(test_d01_cancel_wakes_pp_wait) {
  check_cancel_wakes_waiter(BY_CANCEL, IN_WAIT);
}
END_TEST

START_TEST(test_d01_cancel_wakes_as_completed) {
  check_cancel_wakes_waiter(BY_CANCEL, IN_AS_COMPLETED);
}
END_TEST

START_TEST(test_d01_shutdown_cancel_wakes_waiter) {
  check_cancel_wakes_waiter(BY_SHUTDOWN, IN_RESULT);
}
END_TEST

/* Counts itself and fails with a negative code. */
static int init_negative(void *arg) {
  (void)arg;
  atomic_fetch_add(&page->init_count, 1);
  return -1;
}

struct create_call {
  pp_options o;
  pp_pool *p;
  int rc;
};

static void do_create(void *arg) {
  struct create_call *c = arg;
  c->rc = pp_pool_create(&c->p, &c->o);
}

/* 2. Any non-zero return of the initializer is a failure: -1 makes
 * pp_pool_create() return PP_EINIT, at once, on both engines. */
START_TEST(test_d02_init_negative_fails_create) {
  struct create_call c = {.p = (void *)1, .rc = 1};
  struct bg b;

  pp_options_init(&c.o);
  c.o.engine = engine;
  c.o.workers = 2;
  c.o.initializer = init_negative;
  bg_start(&b, do_create, &c);
  ck_assert_msg(bg_finished_within(&b, 10),
                "pp_pool_create() hangs when the initializer returns -1");
  ck_assert_int_eq(c.rc, PP_EINIT);
  ck_assert_ptr_null(c.p);
}
END_TEST

/* 2, starting in the background: the first task fails with PP_EINIT and
 * the pool does not fork replacements in a loop. (The thread engine always
 * waits, so its pp_pool_create() answers PP_EINIT.) */
START_TEST(test_d02_init_negative_background) {
  enum { WORKERS = 2 };
  pp_options o;
  pp_pool *p = NULL;
  pp_future *f = NULL;
  int64_t v = 3;
  int rc, forks;

  pp_options_init(&o);
  o.engine = engine;
  o.workers = WORKERS;
  o.initializer = init_negative;
  o.start_in_background = 1;
  if (engine == PP_ENGINE_THREADS) {
    ck_assert_int_eq(pp_pool_create(&p, &o), PP_EINIT);
    return;
  }
  ck_assert_int_eq(pp_pool_create(&p, &o), 0);
  sleep_ms(500);
  forks = atomic_load(&page->init_count);
  ck_assert_msg(forks <= 2 * WORKERS,
                "%d initializers ran in 0.5 s for %d workers: replacements "
                "are forked in a loop",
                forks, WORKERS);
  rc = pp_submit(p, task_echo, &v, sizeof v, &f);
  if (rc == 0)
    rc = pp_future_result(f, 5, NULL, NULL);
  ck_assert_msg(rc == PP_EINIT, "the first task got %s, not PP_EINIT",
                pp_errname(rc));
  pp_future_release(f);
  pp_pool_destroy(p);
}
END_TEST

/* Counts the futures of fs[0..n) that did not succeed; *first (OUT) says
 * how the first of them failed. */
static int count_failed(pp_future **fs, int n, char *first, size_t size) {
  int bad = 0;
  for (int i = 0; i < n; i++) {
    int rc = pp_future_result(fs[i], 60, NULL, NULL);
    if (rc != 0 && bad++ == 0)
      snprintf(first, size, "%s: %s", pp_errname(rc), pp_future_message(fs[i]));
  }
  return bad;
}

/* 3. A timeout of 60 s never kills a task that runs for microseconds, while
 * submits keep the pool's lock busy (the collector must not read the clock
 * before it takes the lock and a worker's start time after). The race is
 * narrow: up to 5 rounds of 20000 tasks, stopping at the first failure. */
START_TEST(test_d03_timeout_spares_short_tasks) {
  enum { N = 20000, ROUNDS = 5 };
  pp_pool *p = pool_n(2);
  pp_future **fs = calloc(N, sizeof *fs);
  char first[300] = "";
  int64_t us = 20;
  int bad = 0, round;

  ck_assert_ptr_nonnull(fs);
  for (round = 0; round < ROUNDS && bad == 0; round++) {
    for (int i = 0; i < N; i++)
      ck_assert_int_eq(
          pp_submit_timeout(p, task_spin_us, &us, sizeof us, 60, &fs[i]), 0);
    bad = count_failed(fs, N, first, sizeof first);
    for (int i = 0; i < N; i++)
      pp_future_release(fs[i]);
  }
  ck_assert_msg(bad == 0,
                "round %d: %d of %d tasks of 20 us with a 60 s timeout "
                "failed; first %s",
                round, bad, N, first);
  free(fs);
  pp_pool_destroy(p);
}
END_TEST

/* 3, in a map: no item of a chunked map with task_timeout 60 fails. */
START_TEST(test_d03_map_timeout_spares_short_tasks) {
  enum { N = 20000 };
  pp_pool *p = pool_n(2);
  pp_map_options mo = {.chunksize = 4, .task_timeout = 60};
  const void **args = calloc(N, sizeof *args);
  size_t *lens = calloc(N, sizeof *lens);
  int64_t us = 20;
  pp_map *m;
  int rc, bad = 0;
  char first[300] = "";

  ck_assert(args && lens);
  for (int i = 0; i < N; i++) {
    args[i] = &us;
    lens[i] = sizeof us;
  }
  for (int round = 0; round < 5 && bad == 0; round++) { /* as above */
    ck_assert_int_eq(pp_map_array(p, task_spin_us, args, lens, N, &mo, &m), 0);
    for (int i = 0; (rc = pp_map_next(m, NULL, NULL)) != PP_EOF; i++) {
      ck_assert_int_lt(i, N);
      if (rc != 0 && bad++ == 0)
        snprintf(first, sizeof first, "round %d, item %zu: %s: %s", round + 1,
                 pp_map_index(m), pp_errname(rc), pp_map_message(m));
    }
    pp_map_destroy(m);
  }
  ck_assert_msg(bad == 0,
                "%d of %d map items with task_timeout 60 failed; first %s", bad,
                N, first);
  free(args);
  free(lens);
  pp_pool_destroy(p);
}
END_TEST

/* Blocks the thread that runs it (the collector) until release_cb. */
static void cb_block(pp_future *f, void *arg) {
  double end = tu_now() + GATE_MAX_S;
  (void)f;
  (void)arg;
  atomic_store(&page->in_cb, 1);
  while (!atomic_load(&page->release_cb) && tu_now() < end)
    sleep_ms(1);
}

/* 4. pp_future_cancel_running() on a task that has finished, its result not
 * yet collected, must not kill the worker's next task; and it either
 * cancels the task (0) or says it is done (PP_EINVAL), never both 0 and a
 * result. The collector is held in a done-callback so that the finished
 * task's result stays uncollected while its worker runs the next one. */
START_TEST(test_d04_cancel_running_finished_task) {
  pp_pool *p = pool_n(1);
  pp_future *x = submit_i64(p, task_sleep, 200), *a, *b;
  int rc, ra, rb;

  ck_assert_int_eq(pp_future_add_done_callback(x, cb_block, NULL), 0);
  ck_assert(eventually(flag_set, &page->in_cb, 10)); /* collector held */
  a = submit_i64(p, task_echo, 7);
  b = submit_i64(p, task_gate, 8);
  ck_assert(eventually(is_running, b, 10));
  ck_assert_msg(!pp_future_done(a), "setup: a's result was collected");
  rc = pp_future_cancel_running(a);
  atomic_store(&page->release_cb, 1);
  atomic_store(&page->gate, 1);
  rb = pp_future_result(b, 30, NULL, NULL);
  ra = pp_future_result(a, 30, NULL, NULL);
  ck_assert_msg(rb == 0,
                "cancelling a finished task killed its worker's next task: "
                "%s (%s)",
                pp_errname(rb), pp_future_message(b));
  if (rc == 0)
    ck_assert_msg(ra == PP_ECANCELLED,
                  "pp_future_cancel_running() returned 0 but the task got %s",
                  pp_errname(ra));
  else
    ck_assert_msg(rc == PP_EINVAL && ra == 0,
                  "cancel_running gave %s, the task %s", pp_errname(rc),
                  pp_errname(ra));
  pp_future_release(x);
  pp_future_release(a);
  pp_future_release(b);
  pp_pool_destroy(p);
}
END_TEST

/* 5. A huge per-task timeout, INFINITY included, means no timeout: it must
 * not overflow into "already expired". */
START_TEST(test_d05_huge_timeouts) {
  static const double huge[] = {1.85e10, 1e11, 1e300, INFINITY};
  pp_pool *p = pool_n(2);
  int64_t ms = 300;

  for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
    pp_future *f = NULL;
    const void *arg = &ms;
    size_t len = sizeof ms;
    pp_map_options mo = {.task_timeout = huge[i]};
    pp_map *m;
    int rc;

    ck_assert_int_eq(
        pp_submit_timeout(p, task_sleep, &ms, sizeof ms, huge[i], &f), 0);
    rc = pp_future_result(f, 30, NULL, NULL);
    ck_assert_msg(rc == 0, "timeout %g: the task got %s (%s)", huge[i],
                  pp_errname(rc), pp_future_message(f));
    pp_future_release(f);
    ck_assert_int_eq(pp_map_array(p, task_sleep, &arg, &len, 1, &mo, &m), 0);
    rc = pp_map_next(m, NULL, NULL);
    ck_assert_msg(rc == 0, "map task_timeout %g: the item got %s (%s)", huge[i],
                  pp_errname(rc), pp_map_message(m));
    pp_map_destroy(m);
  }
  pp_pool_destroy(p);
}
END_TEST

struct pairs {
  pp_pool *p;
  int n;
  int bad; /* pairs whose submit or cancel did not answer 0 */
};

static void submit_cancel_pairs(void *arg) {
  struct pairs *pr = arg;
  for (int i = 0; i < pr->n; i++) {
    pp_future *f = NULL;
    int64_t v = i;
    if (pp_submit(pr->p, task_echo, &v, sizeof v, &f) != 0 ||
        pp_future_cancel(f) != 0)
      pr->bad++;
    pp_future_release(f);
  }
}

/* 6. Many submit + cancel pairs while the only worker is busy: submits
 * never block (cancelled tasks give their room back) and the task
 * submitted before them still runs. The ring holds ~80 frames and the pool
 * 256 slots; 1000 pairs take milliseconds. */
START_TEST(test_d06_submit_cancel_pairs_while_busy) {
  pp_pool *p = pool_with(1, 256, 4096);
  pp_future *g = submit_i64(p, task_gate, 0), *a;
  struct pairs pr = {p, 1000, 0};
  struct bg b;
  int finished, rc;

  ck_assert(eventually(is_running, g, 10));
  a = submit_i64(p, task_echo, 5);
  bg_start(&b, submit_cancel_pairs, &pr);
  finished = bg_finished_within(&b, 5);
  atomic_store(&page->gate, 1);
  if (!finished)
    ck_assert(bg_finished_within(&b, 30));
  ck_assert_msg(finished, "pp_submit() blocked: cancelled tasks keep their "
                          "room in the task ring");
  ck_assert_int_eq(pr.bad, 0);
  rc = pp_future_result(a, 5, NULL, NULL);
  ck_assert_msg(rc == 0, "the task submitted before the pairs got %s: lost",
                pp_errname(rc));
  ck_assert_int_eq(result_i64(a), 5);
  ck_assert_int_eq(result_i64(g), 0);
  pp_future_release(a);
  pp_future_release(g);
  pp_pool_destroy(p);
}
END_TEST

/* A pool of the other engine than this run's. */
static pp_pool *other_engine_pool(void) {
  pp_options o;
  pp_pool *q = NULL;
  pp_options_init(&o);
  o.engine =
      engine == PP_ENGINE_THREADS ? PP_ENGINE_PROCESSES : PP_ENGINE_THREADS;
  o.workers = 1;
  ck_assert_int_eq(pp_pool_create(&q, &o), 0);
  return q;
}

/* 7. as_completed takes pending futures of two pools (a thread pool and a
 * process pool), as pp_wait() does and as Python does. */
START_TEST(test_d07_as_completed_two_pools) {
  pp_pool *p = pool_n(1), *q = other_engine_pool();
  pp_future *fs[2] = {submit_i64(p, task_gate, 1), submit_i64(q, task_gate, 2)};
  pp_completed *it = NULL;
  pp_future *got[2] = {NULL, NULL}, *extra;
  int rc = pp_as_completed(fs, 2, 30, &it);

  ck_assert_msg(rc == 0, "pp_as_completed() over two pools: %s",
                pp_errname(rc));
  atomic_store(&page->gate, 1);
  ck_assert_int_eq(pp_completed_next(it, &got[0]), 0);
  ck_assert_int_eq(pp_completed_next(it, &got[1]), 0);
  ck_assert_ptr_ne(got[0], got[1]);
  ck_assert(got[0] == fs[0] || got[0] == fs[1]);
  ck_assert(got[1] == fs[0] || got[1] == fs[1]);
  ck_assert_int_eq(pp_completed_next(it, &extra), PP_EOF);
  pp_completed_destroy(it);
  ck_assert_int_eq(pp_wait(fs, 2, 30, PP_ALL_COMPLETED, NULL), 2);
  pp_future_release(fs[0]);
  pp_future_release(fs[1]);
  pp_pool_destroy(p);
  pp_pool_destroy(q);
}
END_TEST

/* Drains `it`, failing if it yields anything but `f`; returns the count. */
static int drain_only(pp_completed *it, pp_future *f) {
  pp_future *got;
  int n = 0, rc;
  while ((rc = pp_completed_next(it, &got)) == 0) {
    ck_assert_ptr_eq(got, f);
    n++;
  }
  ck_assert_int_eq(rc, PP_EOF);
  return n;
}

/* 8. The same future given three times is yielded once (CPython's
 * test_duplicate_futures), pending or done at the start. */
START_TEST(test_d08_as_completed_duplicates) {
  pp_pool *p = pool_n(1);
  pp_future *f = submit_i64(p, task_gate, 0);
  pp_future *fs[3] = {f, f, f};
  pp_completed *it;
  int n;

  ck_assert_int_eq(pp_as_completed(fs, 3, 30, &it), 0);
  atomic_store(&page->gate, 1);
  n = drain_only(it, f);
  ck_assert_msg(n == 1, "a pending future given 3 times was yielded %d times",
                n);
  pp_completed_destroy(it);
  ck_assert_int_eq(pp_as_completed(fs, 3, 30, &it), 0);
  n = drain_only(it, f);
  ck_assert_msg(n == 1, "a done future given 3 times was yielded %d times", n);
  pp_completed_destroy(it);
  pp_future_release(f);
  pp_pool_destroy(p);
}
END_TEST

/* 9. With a window of 2, the map has pulled 2 arguments at the call (as
 * Python 3.14's buffersize does) and, when pp_map_next() returns the first
 * result, it has already submitted the third. */
START_TEST(test_d09_map_window_topped_up) {
  pp_pool *p = pool_n(2);
  struct counter c = {0, 0, -1, 0};
  pp_map_options mo = {.window = 2};
  pp_map *m;

  ck_assert_int_eq(pp_map_gen(p, task_echo, gen_count, &c, &mo, &m), 0);
  ck_assert_int_eq(c.pulls, 2);
  ck_assert_int_eq(map_next_i64(m), 0);
  ck_assert_msg(c.pulls == 3,
                "after the first result the map had pulled %d arguments, "
                "not 3: the window is topped up one call late",
                c.pulls);
  ck_assert_int_eq(map_next_i64(m), 1);
  ck_assert_int_eq(c.pulls, 4);
  pp_map_destroy(m);
  pp_pool_destroy(p);
}
END_TEST

/* How a too-big result must fail: PP_ETOOBIG, naming the limit. */
static void check_too_big(pp_future *f, const char *how) {
  int rc = pp_future_result(f, 30, NULL, NULL);
  ck_assert_msg(rc == PP_ETOOBIG, "%s: got %s (task code %d, message \"%s\")",
                how, pp_errname(rc), pp_future_task_code(f),
                pp_future_message(f));
  ck_assert_msg(strstr(pp_future_message(f), "1024") != NULL,
                "%s: the message \"%s\" does not name the limit (1024)", how,
                pp_future_message(f));
}

/* 10. A task doing `return pp_task_return(t, buf, too_big)`, the README's
 * idiom, fails with PP_ETOOBIG (as the header says), not PP_ETASK with
 * code -3, and the message names the limit. */
START_TEST(test_d10_return_too_big_idiom) {
  pp_pool *p = pool_with(1, 1024, 0);
  pp_future *f = submit_i64(p, task_return_too_big, 1024);

  check_too_big(f, "return pp_task_return(too big)");
  pp_future_release(f);
  pp_pool_destroy(p);
}
END_TEST

/* 10. A task that sets a too-big result and returns 0 fails with
 * PP_ETOOBIG and a message naming the limit, on both engines. */
START_TEST(test_d10_too_big_message) {
  pp_pool *p = pool_with(1, 1024, 0);
  pp_future *f = submit_i64(p, task_set_too_big, 1024);

  check_too_big(f, "pp_task_return(too big); return 0");
  pp_future_release(f);
  pp_pool_destroy(p);
}
END_TEST

static int is_stopped(void *pid) {
  return tu_proc_state(*(int *)pid, NULL) == 'T';
}

static void do_destroy(void *p) {
  pp_pool_destroy(p);
}

/* 11. The rule for a worker stopped (SIGSTOP) between tasks: the pool
 * kills it, so that pp_pool_destroy() returns within a few seconds, even
 * with timed tasks, and leaves no process behind. */
START_TEST(test_d11_destroy_with_stopped_worker) {
  pp_pool *p = pool_n(2);
  pp_future *f = NULL;
  int64_t v = 1;
  int pids[2], pid, finished;
  struct bg b;

  ck_assert_int_eq(pp_submit_timeout(p, task_echo, &v, sizeof v, 5, &f), 0);
  ck_assert_int_eq(result_i64(f), 1);
  pp_future_release(f);
  ck_assert_int_eq(pp_pool_worker_pids(p, pids, 2), 2);
  pid = pids[0];
  ck_assert_int_eq(kill(pid, SIGSTOP), 0);
  ck_assert(eventually(is_stopped, &pid, 5));
  bg_start(&b, do_destroy, p);
  finished = bg_finished_within(&b, 5);
  if (!finished) {
    kill(pid, SIGCONT);
    ck_assert(bg_finished_within(&b, 30));
  }
  ck_assert_msg(finished, "pp_pool_destroy() waits for ever for a stopped "
                          "worker");
  ck_assert_int_eq(tu_children(), 0);
  ck_assert_msg(kill(pid, 0) != 0 && errno == ESRCH,
                "the stopped worker %d is still there", pid);
}
END_TEST

/* Submits timed tasks (processes) or plain ones (threads), and cancels
 * some while they run where the engine can. */
struct load {
  pp_pool *p;
  int seed, bad;
  char first[300]; /* how the first bad task failed */
};

static void timed_load(void *arg) {
  struct load *l = arg;
  int timed = engine == PP_ENGINE_PROCESSES;
  for (int i = 0; i < 200; i++) {
    pp_future *f = NULL;
    int64_t v = (i + l->seed) % 3 == 0 ? 30 : 0; /* ms */
    int rc, cancel = timed && v && i % 2;
    if (pp_submit_timeout(l->p, task_sleep, &v, sizeof v, timed ? 30 : 0, &f) !=
        0) {
      l->bad++;
      continue;
    }
    if (cancel && eventually(is_running, f, 10))
      pp_future_cancel_running(f);
    rc = pp_future_result(f, 30, NULL, NULL);
    if (rc != 0 && !(cancel && rc == PP_ECANCELLED) && l->bad++ == 0)
      snprintf(l->first, sizeof l->first, "task %d (%s): %s: %s", i,
               cancel ? "cancelled while running" : "not cancelled",
               pp_errname(rc), pp_future_message(f));
    pp_future_release(f);
  }
}

/* 12. For the TSan run: timed tasks and cancels of running tasks from
 * several threads at once (the collector reads the count of timed tasks
 * that submitters write). */
START_TEST(test_d12_timed_tasks_from_threads) {
  pp_pool *p = pool_n(3);
  struct load l[3] = {{p, 0, 0, ""}, {p, 1, 0, ""}, {p, 2, 0, ""}};
  struct bg b[3];

  for (int i = 0; i < 3; i++)
    bg_start(&b[i], timed_load, &l[i]);
  for (int i = 0; i < 3; i++) {
    ck_assert(bg_finished_within(&b[i], 60));
    ck_assert_msg(l[i].bad == 0, "%d bad tasks; first %s", l[i].bad,
                  l[i].first);
  }
  pp_pool_destroy(p);
}
END_TEST

struct racer {
  pp_pool *p;
  pp_future *fs[3000];
  int n, last_rc;
};

static void submit_until_shutdown(void *arg) {
  struct racer *r = arg;
  double timeout = engine == PP_ENGINE_PROCESSES ? 30 : 0;
  for (r->n = 0; r->n < 3000; r->n++) {
    int64_t v = r->n;
    r->last_rc =
        pp_submit_timeout(r->p, task_echo, &v, sizeof v, timeout, &r->fs[r->n]);
    if (r->last_rc != 0)
      break;
  }
}

/* 12. For the TSan run: a shutdown (cancelling) races submits from three
 * threads; every submit answers 0 or PP_ESHUTDOWN and every future it gave
 * ends, finished or cancelled. */
START_TEST(test_d12_shutdown_races_submits) {
  pp_pool *p = pool_n(2);
  struct racer *r = calloc(3, sizeof *r);
  struct bg b[3];

  ck_assert_ptr_nonnull(r);
  for (int i = 0; i < 3; i++) {
    r[i].p = p;
    bg_start(&b[i], submit_until_shutdown, &r[i]);
  }
  sleep_ms(20);
  ck_assert_int_eq(pp_pool_shutdown(p, 0, 1), 0);
  for (int i = 0; i < 3; i++) {
    ck_assert(bg_finished_within(&b[i], 60));
    ck_assert(r[i].last_rc == 0 || r[i].last_rc == PP_ESHUTDOWN);
    for (int k = 0; k < r[i].n; k++) {
      int rc = pp_future_result(r[i].fs[k], 30, NULL, NULL);
      ck_assert_msg(rc == 0 || rc == PP_ECANCELLED, "future %d: %s", k,
                    pp_errname(rc));
      pp_future_release(r[i].fs[k]);
    }
  }
  pp_pool_destroy(p);
  free(r);
}
END_TEST

void sem_add_defect_tests(Suite *s) {
  int procs = engine == PP_ENGINE_PROCESSES;
  TCase *tc;

  /* Issue 10's defects, a case each (CK_RUN_CASE=d04 runs one); those of
   * killing and timeouts concern processes only. */
  tc = sem_tcase(s, "d01", 30);
  tcase_add_test(tc, test_d01_cancel_wakes_waiter);
  tcase_add_test(tc, test_d01_shutdown_cancel_wakes_waiter);
  tcase_add_test(tc, test_d01_cancel_wakes_pp_wait);
  tcase_add_test(tc, test_d01_cancel_wakes_as_completed);
  tc = sem_tcase(s, "d02", 30);
  tcase_add_test(tc, test_d02_init_negative_fails_create);
  tcase_add_test(tc, test_d02_init_negative_background);
  if (procs) {
    tc = sem_tcase(s, "d03", 120);
    tcase_add_test(tc, test_d03_timeout_spares_short_tasks);
    tcase_add_test(tc, test_d03_map_timeout_spares_short_tasks);
    tcase_add_test(sem_tcase(s, "d04", 30),
                   test_d04_cancel_running_finished_task);
    tcase_add_test(sem_tcase(s, "d05", 30), test_d05_huge_timeouts);
  }
  tcase_add_test(sem_tcase(s, "d06", 60),
                 test_d06_submit_cancel_pairs_while_busy);
  tcase_add_test(sem_tcase(s, "d07", 30), test_d07_as_completed_two_pools);
  tcase_add_test(sem_tcase(s, "d08", 30), test_d08_as_completed_duplicates);
  tcase_add_test(sem_tcase(s, "d09", 30), test_d09_map_window_topped_up);
  tc = sem_tcase(s, "d10", 30);
  tcase_add_test(tc, test_d10_return_too_big_idiom);
  tcase_add_test(tc, test_d10_too_big_message);
  if (procs)
    tcase_add_test(sem_tcase(s, "d11", 60),
                   test_d11_destroy_with_stopped_worker);
  tc = sem_tcase(s, "d12", 120);
  tcase_add_test(tc, test_d12_timed_tasks_from_threads);
  tcase_add_test(tc, test_d12_shutdown_races_submits);
}
