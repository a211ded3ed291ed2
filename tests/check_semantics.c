/*
 * Python's concurrent.futures semantics, to the letter, and the defects of
 * issue 10, through the public API on both engines.
 *
 * Two families of tests:
 *  - test_dNN_* (semantics_defects.c): one per defect NN of issue 10 (items
 *    1-12), each on every engine it concerns, each failing on the code the
 *    issue describes; a test that would hang there is bounded (a helper
 *    thread and a deadline, or the tcase timeout), so it fails instead of
 *    blocking the run. Each defect is a tcase: CK_RUN_CASE=d04 runs one.
 *  - test_py_* (semantics_futures.c, semantics_executor.c): what CPython's
 *    Lib/test/test_concurrent_futures/ checks, wherever the C API has an
 *    equivalent; where procpool deliberately differs (the header says so),
 *    the test checks procpool's documented behaviour.
 *
 * This file holds the fixture, the helpers and tasks the others share
 * (semantics.h), and main(), which runs the whole suite once per engine, as
 * check_pool does. Tests that only mean something for processes (killing,
 * signals, per-task timeouts) are registered for that engine only.
 *
 * Workers are forked from the test process, so tasks are functions of this
 * program; a page of MAP_SHARED memory, mapped before any pool forks, is
 * what tasks and tests share (gates, counters). No test measures speed:
 * where one must tell "at once" from "never", the bound is ten times or
 * more what the right behaviour takes.
 */
#include "semantics.h"

#include <sys/mman.h>

struct page *page;
pp_engine engine;
_Thread_local int init_value;

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

void sleep_ms(double ms) {
  time_t sec = (time_t)(ms / 1000);
  struct timespec ts = {sec, (long)((ms - (double)sec * 1000) * 1e6)};
  nanosleep(&ts, NULL);
}

/* Polls `cond(arg)` for up to `seconds`. */
int eventually(int (*cond)(void *), void *arg, double seconds) {
  double end = tu_now() + seconds;
  while (!cond(arg)) {
    if (tu_now() > end)
      return 0;
    sleep_ms(1);
  }
  return 1;
}

int is_running(void *f) {
  return pp_future_running(f);
}

int flag_set(void *flag) {
  return atomic_load((atomic_int *)flag) != 0;
}

pp_pool *pool_with(int workers, size_t max_payload, size_t ring) {
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

pp_pool *pool_n(int workers) {
  return pool_with(workers, 0, 0);
}

int64_t arg_i64(const void *arg, size_t len) {
  int64_t v = 0;
  if (len == sizeof v)
    memcpy(&v, arg, sizeof v);
  return v;
}

pp_future *submit_i64(pp_pool *p, pp_task_fn fn, int64_t v) {
  pp_future *f = NULL;
  ck_assert_int_eq(pp_submit(p, fn, &v, sizeof v, &f), 0);
  ck_assert_ptr_nonnull(f);
  return f;
}

/* The int64 result of f, which must succeed within 30 s. */
int64_t result_i64(pp_future *f) {
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

static void *bg_main(void *arg) {
  struct bg *b = arg;
  b->fn(b->arg);
  atomic_store(&b->done, 1);
  return NULL;
}

void bg_start(struct bg *b, void (*fn)(void *), void *arg) {
  b->fn = fn;
  b->arg = arg;
  atomic_init(&b->done, 0);
  ck_assert_int_eq(pthread_create(&b->thread, NULL, bg_main, b), 0);
}

/* Whether the call returned within `seconds` (then the thread is joined). */
int bg_finished_within(struct bg *b, double seconds) {
  if (!eventually(flag_set, &b->done, seconds))
    return 0;
  pthread_join(b->thread, NULL);
  return 1;
}

/* -------------------------------------------------------------- tasks */

int task_echo(pp_task *t, const void *arg, size_t len) {
  return pp_task_return(t, arg, len);
}

/* Fails with code 42 and a message, like a raised exception. */
int task_fail(pp_task *t, const void *arg, size_t len) {
  (void)arg;
  (void)len;
  return pp_task_fail(t, 42, "error %d", 42);
}

/* Sleeps `arg` ms and returns it. */
int task_sleep(pp_task *t, const void *arg, size_t len) {
  sleep_ms((double)arg_i64(arg, len));
  return pp_task_return(t, arg, len);
}

/* Waits for page->gate (at most GATE_MAX_S), then returns its argument. */
int task_gate(pp_task *t, const void *arg, size_t len) {
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

int task_gate2(pp_task *t, const void *arg, size_t len) {
  return wait_flag(t, &page->gate2, arg, len);
}

/* The same on page->hold, for make_done()'s own pool. */
static int task_hold(pp_task *t, const void *arg, size_t len) {
  return wait_flag(t, &page->hold, arg, len);
}

/* Waits for page->gate, then fails with code 42. */
int task_gate_fail(pp_task *t, const void *arg, size_t len) {
  wait_flag(t, &page->gate, arg, len);
  return pp_task_fail(t, 42, "error %d", 42);
}

/* Returns n * n. */
int task_square(pp_task *t, const void *arg, size_t len) {
  int64_t n = arg_i64(arg, len), sq = n * n;
  return pp_task_return(t, &sq, sizeof sq);
}

/* Spins about `arg` microseconds: a short task that still takes time. */
int task_spin_us(pp_task *t, const void *arg, size_t len) {
  double end = tu_now() + (double)arg_i64(arg, len) / 1e6;
  while (tu_now() < end)
    ;
  return pp_task_return(t, arg, len);
}

/* Returns a result one byte over the pool's limit, the README's way. */
int task_return_too_big(pp_task *t, const void *arg, size_t len) {
  size_t n = (size_t)arg_i64(arg, len) + 1;
  char *buf = calloc(1, n);
  int rc = pp_task_return(t, buf, n);
  free(buf);
  return rc;
}

/* Sets a result one byte over the limit, then returns 0. */
int task_set_too_big(pp_task *t, const void *arg, size_t len) {
  task_return_too_big(t, arg, len);
  return 0;
}

int task_crash(pp_task *t, const void *arg, size_t len) {
  (void)t;
  sleep_ms((double)arg_i64(arg, len));
  raise(SIGSEGV);
  return 0;
}

int task_exit(pp_task *t, const void *arg, size_t len) {
  (void)t;
  (void)arg;
  (void)len;
  _exit(1);
}

int task_init_value(pp_task *t, const void *arg, size_t len) {
  int64_t v = init_value;
  (void)arg;
  (void)len;
  return pp_task_return(t, &v, sizeof v);
}

struct done3 make_done(void) {
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

void release_done(struct done3 *d) {
  pp_future_release(d->ok);
  pp_future_release(d->err);
  pp_future_release(d->cancelled);
}

int gen_count(void *state, const void **arg, size_t *len) {
  struct counter *c = state;
  if (c->limit >= 0 && c->next >= c->limit)
    return 0;
  c->cur = c->next++;
  c->pulls++;
  *arg = &c->cur;
  *len = sizeof c->cur;
  return 1;
}

int64_t map_next_i64(pp_map *m) {
  const void *data;
  size_t len;
  int64_t v;
  int rc = pp_map_next(m, &data, &len);
  ck_assert_msg(rc == 0, "pp_map_next: %s", pp_errname(rc));
  ck_assert_uint_eq(len, sizeof v);
  memcpy(&v, data, sizeof v);
  return v;
}

/* -------------------------------------------------------------- suite */

TCase *sem_tcase(Suite *s, const char *name, double timeout) {
  TCase *tc = tcase_create(name);
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, timeout);
  suite_add_tcase(s, tc);
  return tc;
}

static Suite *make_semantics_suite(void) {
  Suite *s =
      suite_create(engine == PP_ENGINE_PROCESSES ? "semantics (processes)"
                                                 : "semantics (threads)");
  sem_add_defect_tests(s);
  sem_add_python_future_tests(s);
  sem_add_python_executor_tests(s);
  return s;
}

/* Runs the suite once per engine. */
TU_MAIN_ENGINES(make_semantics_suite, engine)
