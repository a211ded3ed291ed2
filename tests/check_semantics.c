/*
 * Python's concurrent.futures semantics, to the letter, and the defects of
 * issue 10, through the public API on both engines.
 *
 * Two families of tests:
 *  - test_dNN_*: one per defect NN of issue 10 (items 1-12), each on every
 *    engine it concerns. They fail on the code the issue describes; a test
 *    that would hang there is bounded (a helper thread and a deadline, or
 *    the tcase timeout), so it fails instead of blocking the run.
 *  - test_py_*: what CPython's Lib/test/test_concurrent_futures/ checks
 *    (test_future, test_wait, test_as_completed, test_shutdown, test_init,
 *    test_deadlock, executor.py), wherever the C API has an equivalent.
 *    Where procpool deliberately differs (the header says so), the test
 *    checks procpool's documented behaviour.
 *
 * main() runs the whole suite once per engine, as check_pool does; tests
 * that only mean something for processes (killing, signals, timeouts) are
 * registered for that engine only (the thread engine answers PP_ENOTSUP
 * there, which check_pool's test_engine_limits checks).
 *
 * Workers are forked from the test process, so tasks are functions of this
 * file; a page of MAP_SHARED memory, mapped before any pool forks, is what
 * tasks and tests share (gates, counters). No test measures speed: where
 * one must tell "at once" from "never", the bound is ten times or more what
 * the right behaviour takes.
 */
#include "procpool.h"
#include "testutil.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>

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

static struct page *page;
static pp_engine engine; /* the engine of this run of the suite */
static int init_value;   /* set by init_set, read by task_init_value */

/* ------------------------------------------------------------ helpers */

static void setup(void) {
  page = mmap(NULL, sizeof *page, PROT_READ | PROT_WRITE,
              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ck_assert_ptr_ne(page, MAP_FAILED);
  init_value = 0;
}

static void teardown(void) {
  ck_assert_msg(tu_wait_no_children(5), "a worker process outlived its pool");
  munmap(page, sizeof *page);
}

static void sleep_ms(double ms) {
  time_t sec = (time_t)(ms / 1000);
  struct timespec ts = {sec, (long)((ms - (double)sec * 1000) * 1e6)};
  nanosleep(&ts, NULL);
}

/* Polls `cond(arg)` for up to `seconds`. */
static int eventually(int (*cond)(void *), void *arg, double seconds) {
  double end = tu_now() + seconds;
  while (!cond(arg)) {
    if (tu_now() > end)
      return 0;
    sleep_ms(1);
  }
  return 1;
}

static int is_running(void *f) {
  return pp_future_running(f);
}

static int flag_set(void *flag) {
  return atomic_load((atomic_int *)flag) != 0;
}

static pp_pool *pool_with(int workers, size_t max_payload, size_t ring) {
  pp_options o;
  pp_pool *p = NULL;
  pp_options_init(&o);
  o.engine = engine;
  o.workers = workers;
  o.max_payload = max_payload;
  o.ring_capacity = ring;
  ck_assert_int_eq(pp_pool_create(&p, &o), 0);
  return p;
}

static pp_pool *pool_n(int workers) {
  return pool_with(workers, 0, 0);
}

static int64_t arg_i64(const void *arg, size_t len) {
  int64_t v = 0;
  if (len == sizeof v)
    memcpy(&v, arg, sizeof v);
  return v;
}

static pp_future *submit_i64(pp_pool *p, pp_task_fn fn, int64_t v) {
  pp_future *f = NULL;
  ck_assert_int_eq(pp_submit(p, fn, &v, sizeof v, &f), 0);
  ck_assert_ptr_nonnull(f);
  return f;
}

/* The int64 result of f, which must succeed within 30 s. */
static int64_t result_i64(pp_future *f) {
  const void *data;
  size_t len;
  int64_t v;
  int rc = pp_future_result(f, 30, &data, &len);
  ck_assert_msg(rc == 0, "result failed: %s (%s)", pp_errname(rc),
                pp_future_message(f));
  ck_assert_uint_eq(len, sizeof v);
  memcpy(&v, data, sizeof v);
  return v;
}

/* A call run in a thread of its own, so that a test can give up on a call
 * that hangs (the test then fails; Check's fork ends the thread). */
struct bg {
  void (*fn)(void *);
  void *arg;
  atomic_int done;
  pthread_t thread;
};

static void *bg_main(void *arg) {
  struct bg *b = arg;
  b->fn(b->arg);
  atomic_store(&b->done, 1);
  return NULL;
}

static void bg_start(struct bg *b, void (*fn)(void *), void *arg) {
  b->fn = fn;
  b->arg = arg;
  atomic_init(&b->done, 0);
  ck_assert_int_eq(pthread_create(&b->thread, NULL, bg_main, b), 0);
}

/* Whether the call returned within `seconds` (then the thread is joined). */
static int bg_finished_within(struct bg *b, double seconds) {
  if (!eventually(flag_set, &b->done, seconds))
    return 0;
  pthread_join(b->thread, NULL);
  return 1;
}

/* -------------------------------------------------------------- tasks */

static int task_echo(pp_task *t, const void *arg, size_t len) {
  return pp_task_return(t, arg, len);
}

/* Fails with code 42 and a message, like a raised exception. */
static int task_fail(pp_task *t, const void *arg, size_t len) {
  (void)arg;
  (void)len;
  return pp_task_fail(t, 42, "error %d", 42);
}

/* Sleeps `arg` ms and returns it. */
static int task_sleep(pp_task *t, const void *arg, size_t len) {
  sleep_ms((double)arg_i64(arg, len));
  return pp_task_return(t, arg, len);
}

/* Waits for page->gate (at most GATE_MAX_S), then returns its argument. */
static int task_gate(pp_task *t, const void *arg, size_t len) {
  double end = tu_now() + GATE_MAX_S;
  while (!atomic_load(&page->gate))
    if (tu_now() > end)
      return pp_task_fail(t, 99, "gate never opened");
    else
      sleep_ms(1);
  return pp_task_return(t, arg, len);
}

/* Waits for `flag` (at most GATE_MAX_S), then returns its argument. */
static int wait_flag(pp_task *t, atomic_int *flag, const void *arg,
                     size_t len) {
  double end = tu_now() + GATE_MAX_S;
  while (!atomic_load(flag) && tu_now() < end)
    sleep_ms(1);
  return pp_task_return(t, arg, len);
}

static int task_gate2(pp_task *t, const void *arg, size_t len) {
  return wait_flag(t, &page->gate2, arg, len);
}

/* The same on page->hold, for make_done()'s own pool. */
static int task_hold(pp_task *t, const void *arg, size_t len) {
  return wait_flag(t, &page->hold, arg, len);
}

/* Waits for page->gate, then fails with code 42. */
static int task_gate_fail(pp_task *t, const void *arg, size_t len) {
  wait_flag(t, &page->gate, arg, len);
  return pp_task_fail(t, 42, "error %d", 42);
}

/* Returns n * n. */
static int task_square(pp_task *t, const void *arg, size_t len) {
  int64_t n = arg_i64(arg, len), sq = n * n;
  return pp_task_return(t, &sq, sizeof sq);
}

/* Spins about `arg` microseconds: a short task that still takes time. */
static int task_spin_us(pp_task *t, const void *arg, size_t len) {
  double end = tu_now() + (double)arg_i64(arg, len) / 1e6;
  while (tu_now() < end)
    ;
  return pp_task_return(t, arg, len);
}

/* Returns a result one byte over the pool's limit, the README's way. */
static int task_return_too_big(pp_task *t, const void *arg, size_t len) {
  size_t n = (size_t)arg_i64(arg, len) + 1;
  char *buf = calloc(1, n);
  int rc = pp_task_return(t, buf, n);
  free(buf);
  return rc;
}

/* Sets a result one byte over the limit, then returns 0. */
static int task_set_too_big(pp_task *t, const void *arg, size_t len) {
  task_return_too_big(t, arg, len);
  return 0;
}

static int task_crash(pp_task *t, const void *arg, size_t len) {
  (void)t;
  sleep_ms((double)arg_i64(arg, len));
  raise(SIGSEGV);
  return 0;
}

static int task_exit(pp_task *t, const void *arg, size_t len) {
  (void)t;
  (void)arg;
  (void)len;
  _exit(1);
}

static int task_init_value(pp_task *t, const void *arg, size_t len) {
  int64_t v = init_value;
  (void)arg;
  (void)len;
  return pp_task_return(t, &v, sizeof v);
}

/* The already-done futures of CPython's util.py (SUCCESSFUL_FUTURE,
 * EXCEPTION_FUTURE, CANCELLED_AND_NOTIFIED_FUTURE), made by a pool of their
 * own and outliving it, as the header promises. */
struct done3 {
  pp_future *ok, *err, *cancelled;
};

static struct done3 make_done(void) {
  struct done3 d;
  pp_pool *p = pool_n(1);
  pp_future *hold = submit_i64(p, task_hold, 0);

  d.cancelled = submit_i64(p, task_echo, 1);
  ck_assert_int_eq(pp_future_cancel(d.cancelled), 0);
  d.ok = submit_i64(p, task_echo, 42);
  d.err = submit_i64(p, task_fail, 0);
  atomic_store(&page->hold, 1);
  ck_assert_int_eq(result_i64(hold), 0);
  ck_assert_int_eq(result_i64(d.ok), 42);
  ck_assert_int_eq(pp_future_result(d.err, 30, NULL, NULL), PP_ETASK);
  pp_future_release(hold);
  pp_pool_destroy(p);
  return d;
}

static void release_done(struct done3 *d) {
  pp_future_release(d->ok);
  pp_future_release(d->err);
  pp_future_release(d->cancelled);
}

/* ============================================ the defects of issue 10 */

/* A thread waiting for a future for ever. */
struct waiter {
  pp_future *f;
  int rc;
};

static void wait_forever(void *arg) {
  struct waiter *w = arg;
  w->rc = pp_future_result(w->f, PP_FOREVER, NULL, NULL);
}

/* How a cancel reaches the waiter: pp_future_cancel() or a shutdown. */
enum cancel_by { BY_CANCEL, BY_SHUTDOWN };

/* 1. A waiter in pp_future_result(PP_FOREVER) on an idle pool (its one
 * worker held by a gate) is woken at once when another thread cancels the
 * future. The bug wakes it only when an unrelated task ends: the gate is
 * opened after 2 s, so that the test fails rather than hangs. */
static void check_cancel_wakes_waiter(enum cancel_by how) {
  pp_pool *p = pool_n(1);
  pp_future *g = submit_i64(p, task_gate, 0);
  struct waiter w = {NULL, 1};
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
                "a waiter was not woken by %s of its future (it woke "
                "only when an unrelated task finished)",
                how == BY_CANCEL ? "pp_future_cancel()"
                                 : "pp_pool_shutdown(cancel_pending)");
  ck_assert_int_eq(w.rc, PP_ECANCELLED);
  ck_assert_int_eq(result_i64(g), 0);
  pp_future_release(g);
  pp_future_release(w.f);
  pp_pool_destroy(p);
}

START_TEST(test_d01_cancel_wakes_waiter) {
  check_cancel_wakes_waiter(BY_CANCEL);
}
END_TEST

START_TEST(test_d01_shutdown_cancel_wakes_waiter) {
  check_cancel_wakes_waiter(BY_SHUTDOWN);
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
  ck_assert_int_eq(pp_map_array(p, task_spin_us, args, lens, N, &mo, &m), 0);
  for (int i = 0; (rc = pp_map_next(m, NULL, NULL)) != PP_EOF; i++) {
    ck_assert_int_lt(i, N);
    if (rc != 0 && bad++ == 0)
      snprintf(first, sizeof first, "item %zu: %s: %s", pp_map_index(m),
               pp_errname(rc), pp_map_message(m));
  }
  ck_assert_msg(bad == 0,
                "%d of %d map items with task_timeout 60 failed; "
                "first %s",
                bad, N, first);
  pp_map_destroy(m);
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

/* A generator of 0, 1, 2, ... (up to `limit`, or for ever when negative)
 * that counts what it hands out. */
struct counter {
  int64_t next, cur;
  int64_t limit;
  int pulls;
};

static int gen_count(void *state, const void **arg, size_t *len) {
  struct counter *c = state;
  if (c->limit >= 0 && c->next >= c->limit)
    return 0;
  c->cur = c->next++;
  c->pulls++;
  *arg = &c->cur;
  *len = sizeof c->cur;
  return 1;
}

static int64_t map_next_i64(pp_map *m) {
  const void *data;
  size_t len;
  int64_t v;
  int rc = pp_map_next(m, &data, &len);
  ck_assert_msg(rc == 0, "pp_map_next: %s", pp_errname(rc));
  ck_assert_uint_eq(len, sizeof v);
  memcpy(&v, data, sizeof v);
  return v;
}

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

/* The state letter of process `pid` in /proc, or 0. */
static char proc_state(int pid) {
  char path[64], buf[512], *p, st = 0;
  FILE *f;
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  if (!(f = fopen(path, "r")))
    return 0;
  if (fgets(buf, sizeof buf, f) && (p = strrchr(buf, ')')))
    sscanf(p + 1, " %c", &st);
  fclose(f);
  return st;
}

static int is_stopped(void *pid) {
  return proc_state(*(int *)pid) == 'T';
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

/* ================================= CPython's test_concurrent_futures */

/* ------------------------------------------------------ test_future */

struct cb_record {
  atomic_int calls;
  int rc;
  int cancelled;
};

static void cb_record(pp_future *f, void *arg) {
  struct cb_record *r = arg;
  r->rc = pp_future_result(f, 0, NULL, NULL);
  r->cancelled = pp_future_cancelled(f);
  atomic_fetch_add(&r->calls, 1);
}

static int called(void *r) {
  return atomic_load(&((struct cb_record *)r)->calls) > 0;
}

/* test_done_callback_with_{result,exception,cancel}: a callback added to a
 * pending future runs once it resolves, and sees how it ended; a cancel
 * runs it before pp_future_cancel() returns. */
START_TEST(test_py_done_callback_pending) {
  pp_pool *p = pool_n(1);
  pp_future *g = submit_i64(p, task_gate, 0);
  pp_future *ok = submit_i64(p, task_echo, 5);
  pp_future *err = submit_i64(p, task_fail, 0);
  pp_future *can = submit_i64(p, task_echo, 6);
  struct cb_record r[3] = {0};

  ck_assert_int_eq(pp_future_add_done_callback(ok, cb_record, &r[0]), 0);
  ck_assert_int_eq(pp_future_add_done_callback(err, cb_record, &r[1]), 0);
  ck_assert_int_eq(pp_future_add_done_callback(can, cb_record, &r[2]), 0);
  ck_assert_int_eq(pp_future_cancel(can), 0);
  ck_assert_int_eq(atomic_load(&r[2].calls), 1);
  ck_assert(r[2].cancelled);
  ck_assert_int_eq(r[2].rc, PP_ECANCELLED);
  atomic_store(&page->gate, 1);
  ck_assert(eventually(called, &r[0], 30) && eventually(called, &r[1], 30));
  ck_assert_int_eq(r[0].rc, 0);
  ck_assert_int_eq(r[1].rc, PP_ETASK);
  ck_assert(!r[0].cancelled && !r[1].cancelled);
  ck_assert_int_eq(atomic_load(&r[0].calls) + atomic_load(&r[1].calls), 2);
  pp_future_release(g);
  pp_future_release(ok);
  pp_future_release(err);
  pp_future_release(can);
  pp_pool_destroy(p);
}
END_TEST

/* test_done_callback_already_{successful,failed,cancelled}: a callback
 * added to a done future runs at once, in the caller. */
START_TEST(test_py_done_callback_already_done) {
  struct done3 d = make_done();
  struct cb_record r[3] = {0};

  ck_assert_int_eq(pp_future_add_done_callback(d.ok, cb_record, &r[0]), 0);
  ck_assert_int_eq(pp_future_add_done_callback(d.err, cb_record, &r[1]), 0);
  ck_assert_int_eq(pp_future_add_done_callback(d.cancelled, cb_record, &r[2]),
                   0);
  for (int i = 0; i < 3; i++)
    ck_assert_int_eq(atomic_load(&r[i].calls), 1);
  ck_assert_int_eq(r[0].rc, 0);
  ck_assert_int_eq(r[1].rc, PP_ETASK);
  ck_assert_int_eq(r[2].rc, PP_ECANCELLED);
  ck_assert(r[2].cancelled && !r[0].cancelled && !r[1].cancelled);
  release_done(&d);
}
END_TEST

static void check_format(const pp_future *f, const char *state) {
  char buf[256];
  pp_future_format(f, buf, sizeof buf);
  ck_assert_msg(strncmp(buf, "<Future at 0x", 13) == 0 && strstr(buf, state),
                "\"%s\" lacks \"%s\"", buf, state);
}

/* test_repr, for every state. */
START_TEST(test_py_future_repr) {
  pp_pool *p = pool_n(1);
  pp_future *g = submit_i64(p, task_gate, 0);
  pp_future *pend = submit_i64(p, task_echo, 1);
  struct done3 d = make_done();

  ck_assert(eventually(is_running, g, 10));
  check_format(pend, " state=pending>");
  check_format(g, " state=running>");
  check_format(d.cancelled, " state=cancelled>");
  check_format(d.ok, " state=finished returned 8 bytes>");
  check_format(d.err, " state=finished raised PP_ETASK: error 42>");
  atomic_store(&page->gate, 1);
  ck_assert_int_eq(result_i64(pend), 1);
  pp_future_release(g);
  pp_future_release(pend);
  release_done(&d);
  pp_pool_destroy(p);
}
END_TEST

/* test_cancel, test_cancelled, test_done, test_running, and
 * test_result_with_timeout / test_exception_with_timeout (a zero timeout
 * never waits) for a future in each state. */
START_TEST(test_py_future_states) {
  pp_pool *p = pool_n(1);
  pp_future *run = submit_i64(p, task_gate, 0);
  pp_future *pend = submit_i64(p, task_echo, 1);
  pp_future *pend2 = submit_i64(p, task_echo, 2);
  struct done3 d = make_done();
  const void *data;
  size_t len;

  ck_assert(eventually(is_running, run, 10));
  /* pending */
  ck_assert(!pp_future_done(pend) && !pp_future_running(pend) &&
            !pp_future_cancelled(pend));
  ck_assert_int_eq(pp_future_state(pend), PP_PENDING);
  ck_assert_int_eq(pp_future_result(pend, 0, NULL, NULL), PP_ETIMEDOUT);
  ck_assert_int_eq(pp_future_result(pend, 0.05, NULL, NULL), PP_ETIMEDOUT);
  /* running: cannot be cancelled, stays running */
  ck_assert(!pp_future_done(run) && pp_future_running(run) &&
            !pp_future_cancelled(run));
  ck_assert_int_eq(pp_future_result(run, 0, NULL, NULL), PP_ETIMEDOUT);
  ck_assert_int_eq(pp_future_cancel(run), PP_EBUSY);
  ck_assert_int_eq(pp_future_state(run), PP_RUNNING);
  /* pending -> cancelled; cancelling again still answers 0 */
  ck_assert_int_eq(pp_future_cancel(pend2), 0);
  ck_assert_int_eq(pp_future_state(pend2), PP_CANCELLED);
  ck_assert_int_eq(pp_future_cancel(pend2), 0);
  ck_assert_int_eq(pp_future_cancel(d.cancelled), 0);
  ck_assert(pp_future_done(d.cancelled) && pp_future_cancelled(d.cancelled) &&
            !pp_future_running(d.cancelled));
  ck_assert_int_eq(pp_future_result(d.cancelled, 0, NULL, NULL), PP_ECANCELLED);
  /* finished, raised or returned: cannot be cancelled */
  ck_assert_int_eq(pp_future_cancel(d.err), PP_EINVAL);
  ck_assert_int_eq(pp_future_state(d.err), PP_FINISHED);
  ck_assert(pp_future_done(d.err) && !pp_future_cancelled(d.err) &&
            !pp_future_running(d.err));
  ck_assert_int_eq(pp_future_result(d.err, 0, NULL, NULL), PP_ETASK);
  ck_assert_int_eq(pp_future_task_code(d.err), 42);
  ck_assert_int_eq(pp_future_cancel(d.ok), PP_EINVAL);
  ck_assert_int_eq(pp_future_state(d.ok), PP_FINISHED);
  ck_assert(pp_future_done(d.ok) && !pp_future_cancelled(d.ok));
  ck_assert_int_eq(pp_future_result(d.ok, 0, &data, &len), 0);
  ck_assert_int_eq(arg_i64(data, len), 42);
  atomic_store(&page->gate, 1);
  ck_assert_int_eq(result_i64(pend), 1);
  pp_future_release(run);
  pp_future_release(pend);
  pp_future_release(pend2);
  release_done(&d);
  pp_pool_destroy(p);
}
END_TEST

static void open_gate_later(void *arg) {
  (void)arg;
  sleep_ms(100);
  atomic_store(&page->gate, 1);
}

/* test_result_with_success: a waiter with a timeout gets the result that
 * arrives while it waits. (test_result_with_cancel is test_d01.) */
START_TEST(test_py_result_with_success) {
  pp_pool *p = pool_n(1);
  pp_future *f = submit_i64(p, task_gate, 9);
  const void *data;
  size_t len;
  struct bg b;

  bg_start(&b, open_gate_later, NULL);
  ck_assert_int_eq(pp_future_result(f, 10, &data, &len), 0);
  ck_assert_int_eq(arg_i64(data, len), 9);
  ck_assert(bg_finished_within(&b, 10));
  pp_future_release(f);
  pp_pool_destroy(p);
}
END_TEST

/* -------------------------------------------------------- test_wait */

/* test_20369: the same future twice, ALL_COMPLETED, returns. */
START_TEST(test_py_wait_duplicate) {
  pp_pool *p = pool_n(1);
  pp_future *f = submit_i64(p, task_square, 2);
  pp_future *fs[2] = {f, f};
  unsigned char done[2] = {0, 0};
  int n = pp_wait(fs, 2, 30, PP_ALL_COMPLETED, done);

  ck_assert(n == 1 || n == 2);
  ck_assert(done[0] && done[1]);
  ck_assert_int_eq(result_i64(f), 4);
  pp_future_release(f);
  pp_pool_destroy(p);
}
END_TEST

/* test_first_completed and ..._some_already_completed. procpool counts a
 * cancelled future as done (Python's CANCELLED_AND_NOTIFIED). */
START_TEST(test_py_wait_first_completed) {
  pp_pool *p = pool_n(2);
  pp_future *f1 = submit_i64(p, task_square, 21),
            *f2 = submit_i64(p, task_gate, 0);
  struct done3 d = make_done();
  pp_future *a[2] = {f1, f2}, *b[3] = {d.cancelled, d.ok, f2};
  unsigned char done[3];

  ck_assert_int_eq(pp_wait(a, 2, 30, PP_FIRST_COMPLETED, done), 1);
  ck_assert(done[0] && !done[1]);
  ck_assert_int_eq(pp_wait(b, 3, 30, PP_FIRST_COMPLETED, done), 2);
  ck_assert(done[0] && done[1] && !done[2]);
  atomic_store(&page->gate, 1);
  ck_assert_int_eq(result_i64(f2), 0);
  pp_future_release(f1);
  pp_future_release(f2);
  release_done(&d);
  pp_pool_destroy(p);
}
END_TEST

static void release_gate_after(void *f) {
  result_i64(f);
  atomic_store(&page->gate, 1);
}

/* test_first_exception: f1 succeeds, then f2 fails; f3 still runs. Then
 * ..._some_already_complete and ..._one_already_failed. */
START_TEST(test_py_wait_first_exception) {
  pp_pool *p = pool_n(3);
  pp_future *f1 = submit_i64(p, task_square, 2);
  pp_future *f2 = submit_i64(p, task_gate_fail, 0);
  pp_future *f3 = submit_i64(p, task_gate2, 0);
  pp_future *a[3] = {f1, f2, f3};
  struct done3 d = make_done();
  unsigned char done[4];
  struct bg b;

  bg_start(&b, release_gate_after, f1);
  ck_assert_int_eq(pp_wait(a, 3, 30, PP_FIRST_EXCEPTION, done), 2);
  ck_assert(done[0] && done[1] && !done[2]);
  ck_assert(bg_finished_within(&b, 30));
  {
    pp_future *c[4] = {d.ok, d.cancelled, f2, f3};
    ck_assert_int_eq(pp_wait(c, 4, 30, PP_FIRST_EXCEPTION, done), 3);
    ck_assert(done[0] && done[1] && done[2] && !done[3]);
  }
  {
    pp_future *e[2] = {d.err, f3};
    ck_assert_int_eq(pp_wait(e, 2, 30, PP_FIRST_EXCEPTION, done), 1);
    ck_assert(done[0] && !done[1]);
  }
  atomic_store(&page->gate2, 1);
  ck_assert_int_eq(result_i64(f3), 0);
  pp_future_release(f1);
  pp_future_release(f2);
  pp_future_release(f3);
  release_done(&d);
  pp_pool_destroy(p);
}
END_TEST

/* test_all_completed and test_timeout (ALL_COMPLETED with a short timeout
 * returns what is done). */
START_TEST(test_py_wait_all_completed_and_timeout) {
  pp_pool *p = pool_n(2);
  pp_future *f1 = submit_i64(p, task_fail, 0),
            *f2 = submit_i64(p, task_square, 3);
  struct done3 d = make_done();
  pp_future *a[5] = {d.ok, d.cancelled, d.err, f1, f2};
  pp_future *g = submit_i64(p, task_gate, 0);
  pp_future *b[4] = {d.cancelled, d.err, d.ok, g};
  unsigned char done[5];
  double t0;

  ck_assert_int_eq(pp_wait(a, 5, 30, PP_ALL_COMPLETED, done), 5);
  for (int i = 0; i < 5; i++)
    ck_assert(done[i]);
  t0 = tu_now();
  ck_assert_int_eq(pp_wait(b, 4, 0.05, PP_ALL_COMPLETED, done), 3);
  ck_assert_double_ge(tu_now() - t0, 0.045);
  ck_assert(done[0] && done[1] && done[2] && !done[3]);
  atomic_store(&page->gate, 1);
  ck_assert_int_eq(result_i64(g), 0);
  pp_future_release(f1);
  pp_future_release(f2);
  pp_future_release(g);
  release_done(&d);
  pp_pool_destroy(p);
}
END_TEST

/* test_pending_calls_race: 100 tasks released at once, ALL_COMPLETED. */
START_TEST(test_py_wait_pending_calls_race) {
  enum { N = 100 };
  pp_pool *p = pool_n(4);
  pp_future *fs[N];

  for (int i = 0; i < N; i++)
    fs[i] = submit_i64(p, task_gate, i);
  atomic_store(&page->gate, 1);
  ck_assert_int_eq(pp_wait(fs, N, 30, PP_ALL_COMPLETED, NULL), N);
  for (int i = 0; i < N; i++) {
    ck_assert_int_eq(result_i64(fs[i]), i);
    pp_future_release(fs[i]);
  }
  pp_pool_destroy(p);
}
END_TEST

/* ------------------------------------------------ test_as_completed */

/* test_no_timeout: done and pending futures, each yielded once. */
START_TEST(test_py_as_completed_no_timeout) {
  pp_pool *p = pool_n(2);
  pp_future *f1 = submit_i64(p, task_square, 21),
            *f2 = submit_i64(p, task_square, 6);
  struct done3 d = make_done();
  pp_future *fs[5] = {d.cancelled, d.err, d.ok, f1, f2}, *got;
  int seen[5] = {0}, rc;
  pp_completed *it;

  ck_assert_int_eq(pp_as_completed(fs, 5, 30, &it), 0);
  while ((rc = pp_completed_next(it, &got)) == 0)
    for (int i = 0; i < 5; i++)
      seen[i] += got == fs[i];
  ck_assert_int_eq(rc, PP_EOF);
  for (int i = 0; i < 5; i++)
    ck_assert_int_eq(seen[i], 1);
  pp_completed_destroy(it);
  pp_future_release(f1);
  pp_future_release(f2);
  release_done(&d);
  pp_pool_destroy(p);
}
END_TEST

/* test_future_times_out, with timeouts 0 and 0.1: the done ones come, then
 * PP_ETIMEDOUT, and the pending one never. */
START_TEST(test_py_as_completed_times_out) {
  static const double timeouts[] = {0, 0.1};
  pp_pool *p = pool_n(1);
  pp_future *g = submit_i64(p, task_gate, 0), *got;
  struct done3 d = make_done();
  pp_future *fs[4] = {d.cancelled, d.err, d.ok, g};

  for (int k = 0; k < 2; k++) {
    pp_completed *it;
    int n = 0, rc;
    ck_assert_int_eq(pp_as_completed(fs, 4, timeouts[k], &it), 0);
    while ((rc = pp_completed_next(it, &got)) == 0) {
      ck_assert_ptr_ne(got, g);
      n++;
    }
    ck_assert_int_eq(rc, PP_ETIMEDOUT);
    ck_assert_int_eq(n, 3);
    pp_completed_destroy(it);
  }
  atomic_store(&page->gate, 1);
  ck_assert_int_eq(result_i64(g), 0);
  pp_future_release(g);
  release_done(&d);
  pp_pool_destroy(p);
}
END_TEST

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
  ck_assert_ptr_nonnull(strstr(pp_future_message(crash), "signal 11"));
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

/* -------------------------------------------------------------- suite */

static TCase *tcase(Suite *s, const char *name, double timeout) {
  TCase *tc = tcase_create(name);
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, timeout);
  suite_add_tcase(s, tc);
  return tc;
}

static Suite *make_semantics_suite(void) {
  int procs = engine == PP_ENGINE_PROCESSES;
  Suite *s =
      suite_create(procs ? "semantics (processes)" : "semantics (threads)");
  TCase *tc;

  /* Issue 10's defects, a case each (CK_RUN_CASE=d04 runs one); those of
   * killing and timeouts concern processes only. */
  tcase_add_test(tcase(s, "d01", 30), test_d01_cancel_wakes_waiter);
  tcase_add_test(tcase(s, "d01", 30), test_d01_shutdown_cancel_wakes_waiter);
  tc = tcase(s, "d02", 30);
  tcase_add_test(tc, test_d02_init_negative_fails_create);
  tcase_add_test(tc, test_d02_init_negative_background);
  if (procs) {
    tc = tcase(s, "d03", 120);
    tcase_add_test(tc, test_d03_timeout_spares_short_tasks);
    tcase_add_test(tc, test_d03_map_timeout_spares_short_tasks);
    tcase_add_test(tcase(s, "d04", 30), test_d04_cancel_running_finished_task);
    tcase_add_test(tcase(s, "d05", 30), test_d05_huge_timeouts);
  }
  tcase_add_test(tcase(s, "d06", 60), test_d06_submit_cancel_pairs_while_busy);
  tcase_add_test(tcase(s, "d07", 30), test_d07_as_completed_two_pools);
  tcase_add_test(tcase(s, "d08", 30), test_d08_as_completed_duplicates);
  tcase_add_test(tcase(s, "d09", 30), test_d09_map_window_topped_up);
  tc = tcase(s, "d10", 30);
  tcase_add_test(tc, test_d10_return_too_big_idiom);
  tcase_add_test(tc, test_d10_too_big_message);
  if (procs)
    tcase_add_test(tcase(s, "d11", 60), test_d11_destroy_with_stopped_worker);
  tc = tcase(s, "d12", 120);
  tcase_add_test(tc, test_d12_timed_tasks_from_threads);
  tcase_add_test(tc, test_d12_shutdown_races_submits);

  tc = tcase(s, "test_future", 30);
  tcase_add_test(tc, test_py_done_callback_pending);
  tcase_add_test(tc, test_py_done_callback_already_done);
  tcase_add_test(tc, test_py_future_repr);
  tcase_add_test(tc, test_py_future_states);
  tcase_add_test(tc, test_py_result_with_success);

  tc = tcase(s, "test_wait+as_completed", 30);
  tcase_add_test(tc, test_py_wait_duplicate);
  tcase_add_test(tc, test_py_wait_first_completed);
  tcase_add_test(tc, test_py_wait_first_exception);
  tcase_add_test(tc, test_py_wait_all_completed_and_timeout);
  tcase_add_test(tc, test_py_wait_pending_calls_race);
  tcase_add_test(tc, test_py_as_completed_no_timeout);
  tcase_add_test(tc, test_py_as_completed_times_out);

  tc = tcase(s, "test_shutdown+init", 30);
  tcase_add_test(tc, test_py_shutdown_run_after);
  tcase_add_test(tc, test_py_shutdown_hang_12364);
  tcase_add_test(tc, test_py_shutdown_cancel_futures);
  tcase_add_test(tc, test_py_shutdown_gh94440);
  tcase_add_test(tc, test_py_shutdown_with_map);
  tcase_add_test(tc, test_py_shutdown_gh132969);
  tcase_add_test(tc, test_py_initializer);
  tcase_add_test(tc, test_py_initializer_fails);

  tc = tcase(s, "test_deadlock+executor", 30);
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
  return s;
}

/* Runs the suite once per engine, as check_pool does. */
int main(void) {
  int failed = 0;
  for (int e = 0; e < 2; e++) {
    SRunner *sr;
    engine = e ? PP_ENGINE_THREADS : PP_ENGINE_PROCESSES;
    sr = srunner_create(make_semantics_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed += srunner_ntests_failed(sr);
    srunner_free(sr);
  }
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
