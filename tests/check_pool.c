/*
 * The pool's semantics through the public API: submit and results, task
 * errors, ordered maps (array and generator, chunked), as_completed, waits
 * and timeouts, cancellation, done-callbacks, printable futures, the
 * shutdown variants, payload limits, many tiny tasks through a small ring,
 * initializers, worker recycling and use from several threads.
 *
 * Workers are forked from the test process, so tasks are functions of this
 * file. A page of MAP_SHARED memory, mapped by the fixture before any pool
 * forks, lets tasks say that they ran and lets the test hold them (a gate).
 */
#include "procpool.h"
#include "testhook.h"
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#define GATE_MAX_S 10.0

/* What tests and tasks share across the fork. */
struct page {
  atomic_int gate; /* gate tasks wait until it is set */
  atomic_int init_count;
  atomic_int init_pids[64];
  atomic_int next_worker_id; /* see worker_id() */
  atomic_int ran[256];       /* ran[i]: a marking task of index i ran */
};

static struct page *page;
static int live_pools;

/* The engine every pool of this run uses: main() runs the whole suite once
 * with each, so both engines meet the same semantics. */
static pp_engine engine;

/* A number naming the worker (process or thread) that runs the caller,
 * unique across workers: pids cannot tell threads apart. */
static int64_t worker_id(void) {
  static _Thread_local int64_t id;
  if (id == 0)
    id = atomic_fetch_add(&page->next_worker_id, 1) + 1;
  return id;
}
static int shm_before;

/* ------------------------------------------------------------ fixture */

static void setup(void) {
  shm_before = tu_shm_entries();
  live_pools = 0;
  page = mmap(NULL, sizeof *page, PROT_READ | PROT_WRITE,
              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ck_assert_ptr_ne(page, MAP_FAILED);
}

static void teardown(void) {
  ck_assert_int_eq(live_pools, 0);
  ck_assert(tu_wait_no_children(5));
  ck_assert_int_le(tu_shm_entries(), shm_before);
  munmap(page, sizeof *page);
}

static pp_pool *new_pool(const pp_options *opts) {
  pp_pool *p = NULL;
  ck_assert_int_eq(pp_pool_create(&p, opts), 0);
  ck_assert_ptr_nonnull(p);
  live_pools++;
  return p;
}

static pp_pool *new_pool_n(int workers) {
  pp_options o;
  pp_options_init(&o);
  o.engine = engine;
  o.workers = workers;
  return new_pool(&o);
}

static void end_pool(pp_pool *p) {
  pp_pool_destroy(p);
  live_pools--;
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

static int64_t as_i64(const void *data, size_t len) {
  int64_t v;
  ck_assert_uint_eq(len, sizeof v);
  memcpy(&v, data, sizeof v);
  return v;
}

static uint32_t rng_state = 12345;

static uint32_t rng(void) {
  rng_state = rng_state * 1103515245u + 12345u;
  return rng_state >> 16;
}

/* -------------------------------------------------------------- tasks */

static int task_echo(pp_task *t, const void *arg, size_t len) {
  return pp_task_return(t, arg, len);
}

static int task_fail(pp_task *t, const void *arg, size_t len) {
  (void)arg;
  (void)len;
  return pp_task_fail(t, 42, "bad %d", 7);
}

static int64_t arg_i64(const void *arg, size_t len) {
  int64_t v = 0;
  if (len == sizeof v)
    memcpy(&v, arg, sizeof v);
  return v;
}

/* Sleeps `arg` ms and returns it. */
static int task_sleep(pp_task *t, const void *arg, size_t len) {
  sleep_ms((double)arg_i64(arg, len));
  return pp_task_return(t, arg, len);
}

/* Sleeps (n % 5) * 2 ms and returns n, so that tasks finish out of order. */
static int task_order(pp_task *t, const void *arg, size_t len) {
  int64_t n = arg_i64(arg, len);
  sleep_ms((double)(n % 5) * 2);
  return pp_task_return(t, &n, sizeof n);
}

/* As task_order, but items n % 10 == 3 fail with code 100 + n. */
static int task_order_fail(pp_task *t, const void *arg, size_t len) {
  int64_t n = arg_i64(arg, len);
  if (n % 10 == 3)
    return pp_task_fail(t, 100 + (int)n, "item %d failed", (int)n);
  return task_order(t, arg, len);
}

/* Waits for the gate to open, at most GATE_MAX_S: 1 if it did. */
static int gate_opened(void) {
  double end = tu_now() + GATE_MAX_S;
  while (!atomic_load(&page->gate))
    if (tu_now() > end)
      return 0;
    else
      sleep_ms(1);
  return 1;
}

/* Marks ran[n], then waits for the gate. */
static int task_gate(pp_task *t, const void *arg, size_t len) {
  int64_t n = arg_i64(arg, len);
  atomic_store(&page->ran[n], 1);
  if (!gate_opened())
    return pp_task_fail(t, 99, "gate never opened");
  return pp_task_return(t, &n, sizeof n);
}

/* Waits for the gate, then returns its argument. */
static int task_gated_echo(pp_task *t, const void *arg, size_t len) {
  if (!gate_opened())
    return pp_task_fail(t, 99, "gate never opened");
  return pp_task_return(t, arg, len);
}

/* Marks ran[n] and returns n. */
static int task_mark(pp_task *t, const void *arg, size_t len) {
  int64_t n = arg_i64(arg, len);
  atomic_store(&page->ran[n], 1);
  return pp_task_return(t, &n, sizeof n);
}

/* Returns `arg` bytes of a known pattern (the result may be too big). */
static int task_sized(pp_task *t, const void *arg, size_t len) {
  size_t n = (size_t)arg_i64(arg, len);
  unsigned char *buf = malloc(n ? n : 1);
  if (!buf)
    return 1;
  for (size_t i = 0; i < n; i++)
    buf[i] = (unsigned char)(i * 7 + 3);
  pp_task_return(t, buf, n);
  free(buf);
  return 0;
}

/* Builds `n` bytes of task_sized's pattern in place (pp_task_buffer()),
 * `n % 5` bytes into the buffer, so that pp_task_return() moves them down
 * rather than copying them in. */
static int task_in_place(pp_task *t, const void *arg, size_t len) {
  size_t n = (size_t)arg_i64(arg, len), shift = n % 5;
  unsigned char *buf;
  void *got;
  int rc = pp_task_buffer(t, n + shift, &got);

  if (rc != 0)
    return rc;
  buf = (unsigned char *)got + shift;
  for (size_t i = 0; i < n; i++)
    buf[i] = (unsigned char)(i * 7 + 3);
  return pp_task_return(t, buf, n);
}

/* Whether `len` bytes at `data` are task_sized's pattern. */
static int is_pattern(const void *data, size_t len) {
  const unsigned char *b = data;
  for (size_t i = 0; i < len; i++)
    if (b[i] != (unsigned char)(i * 7 + 3))
      return 0;
  return 1;
}

static int task_pid(pp_task *t, const void *arg, size_t len) {
  int64_t pid = worker_id();
  (void)arg;
  (void)len;
  return pp_task_return(t, &pid, sizeof pid);
}

/* Returns {n, n * n}. */
static int task_square(pp_task *t, const void *arg, size_t len) {
  int64_t n = arg_i64(arg, len), out[2] = {n, n * n};
  return pp_task_return(t, out, sizeof out);
}

/* Releases fs[0..n). */
static void release_futures(pp_future **fs, int n) {
  for (int i = 0; i < n; i++)
    pp_future_release(fs[i]);
}

static pp_future *submit_i64(pp_pool *p, pp_task_fn fn, int64_t v) {
  pp_future *f = NULL;
  ck_assert_int_eq(pp_submit(p, fn, &v, sizeof v, &f), 0);
  ck_assert_ptr_nonnull(f);
  return f;
}

static int64_t result_i64(pp_future *f) {
  const void *data;
  size_t len;
  ck_assert_int_eq(pp_future_result(f, 30, &data, &len), 0);
  return as_i64(data, len);
}

/* ------------------------------------------------------ submit/result */

START_TEST(test_submit_roundtrip) {
  pp_pool *p = new_pool_n(2);
  unsigned char arg[1000];
  const void *data;
  size_t len;
  pp_future *f;

  for (size_t i = 0; i < sizeof arg; i++)
    arg[i] = (unsigned char)rng();
  ck_assert_int_eq(pp_submit(p, task_echo, arg, sizeof arg, &f), 0);
  ck_assert_int_eq(pp_future_result(f, 30, &data, &len), 0);
  ck_assert_uint_eq(len, sizeof arg);
  ck_assert_mem_eq(data, arg, sizeof arg);
  ck_assert(pp_future_done(f));
  ck_assert_int_eq(pp_future_state(f), PP_FINISHED);
  ck_assert(!pp_future_cancelled(f));
  ck_assert_str_eq(pp_future_message(f), "");
  pp_future_release(f);
  end_pool(p);
}
END_TEST

START_TEST(test_task_error) {
  pp_pool *p = new_pool_n(2);
  const void *data = (void *)1;
  size_t len = 1;
  pp_future *f;

  ck_assert_int_eq(pp_submit(p, task_fail, NULL, 0, &f), 0);
  ck_assert_int_eq(pp_future_result(f, 30, &data, &len), PP_ETASK);
  ck_assert_int_eq(pp_future_task_code(f), 42);
  ck_assert_str_eq(pp_future_message(f), "bad 7");
  ck_assert_int_eq(pp_future_state(f), PP_FINISHED);
  pp_future_release(f);
  f = submit_i64(p, task_order, 8);
  ck_assert_int_eq(result_i64(f), 8);
  pp_future_release(f);
  end_pool(p);
}
END_TEST

/* -------------------------------------------------------------- maps */

struct counter_gen {
  int64_t next, n, cur;
};

/* Yields 0 .. n-1 as int64. */
static int counter_gen(void *state, const void **arg, size_t *len) {
  struct counter_gen *g = state;
  if (g->next >= g->n)
    return 0;
  g->cur = g->next++;
  *arg = &g->cur;
  *len = sizeof g->cur;
  return 1;
}

/* Reads every result of `m` and checks order, values and failures (items
 * n % 10 == 3 fail when `failing`). */
static void check_map(pp_map *m, int64_t n, int failing) {
  const void *data;
  size_t len;
  int rc;

  for (int64_t i = 0; i < n; i++) {
    rc = pp_map_next(m, &data, &len);
    ck_assert_uint_eq(pp_map_index(m), (size_t)i);
    if (failing && i % 10 == 3) {
      ck_assert_int_eq(rc, PP_ETASK);
      ck_assert_int_eq(pp_map_task_code(m), 100 + i);
      ck_assert_int_eq(atoi(pp_map_message(m) + 5), (int)i);
      ck_assert(strncmp(pp_map_message(m), "item ", 5) == 0);
      continue;
    }
    ck_assert_int_eq(rc, 0);
    ck_assert_int_eq(as_i64(data, len), i);
    ck_assert_int_eq(pp_map_task_code(m), 0);
    ck_assert_str_eq(pp_map_message(m), "");
  }
  ck_assert_int_eq(pp_map_next(m, &data, &len), PP_EOF);
}

static void map_array_case(pp_pool *p, pp_task_fn fn, size_t chunk,
                           int failing) {
  enum { N = 60 };
  int64_t vals[N];
  const void *args[N];
  size_t lens[N];
  pp_map_options mo = {.chunksize = chunk, .window = 8};
  pp_map *m;

  for (int i = 0; i < N; i++) {
    vals[i] = i;
    args[i] = &vals[i];
    lens[i] = sizeof vals[i];
  }
  ck_assert_int_eq(pp_map_array(p, fn, args, lens, N, &mo, &m), 0);
  check_map(m, N, failing);
  pp_map_destroy(m);
}

static void map_gen_case(pp_pool *p, pp_task_fn fn, size_t chunk, int failing) {
  struct counter_gen g = {0, 60, 0};
  pp_map_options mo = {.chunksize = chunk, .window = 8};
  pp_map *m;

  ck_assert_int_eq(pp_map_gen(p, fn, counter_gen, &g, &mo, &m), 0);
  check_map(m, 60, failing);
  pp_map_destroy(m);
}

START_TEST(test_map_array_order) {
  pp_pool *p = new_pool_n(2);
  map_array_case(p, task_order, 1, 0);
  map_array_case(p, task_order, 7, 0);
  end_pool(p);
}
END_TEST

START_TEST(test_map_gen_order) {
  pp_pool *p = new_pool_n(2);
  map_gen_case(p, task_order, 1, 0);
  map_gen_case(p, task_order, 7, 0);
  end_pool(p);
}
END_TEST

START_TEST(test_map_failed_item) {
  pp_pool *p = new_pool_n(2);
  map_array_case(p, task_order_fail, 1, 1);
  map_array_case(p, task_order_fail, 7, 1);
  map_gen_case(p, task_order_fail, 1, 1);
  map_gen_case(p, task_order_fail, 7, 1);
  end_pool(p);
}
END_TEST

/* ------------------------------------------------------ as_completed */

START_TEST(test_as_completed_all) {
  enum { N = 100 };
  pp_pool *p = new_pool_n(2);
  pp_future *fs[N], *f;
  unsigned char seen[N] = {0};
  int64_t sleeps[N];
  pp_completed *it;

  for (int i = 0; i < N; i++)
    fs[i] = submit_i64(p, task_sleep, sleeps[i] = rng() % 10);
  ck_assert_int_eq(pp_as_completed(fs, N, PP_FOREVER, &it), 0);
  for (int k = 0; k < N; k++) {
    int i;
    ck_assert_int_eq(pp_completed_next(it, &f), 0);
    for (i = 0; i < N && fs[i] != f; i++)
      ;
    ck_assert_int_lt(i, N);
    ck_assert(!seen[i]);
    seen[i] = 1;
    ck_assert(pp_future_done(f));
    ck_assert_int_eq(result_i64(f), sleeps[i]);
  }
  ck_assert_int_eq(pp_completed_next(it, &f), PP_EOF);
  ck_assert_ptr_null(f);
  ck_assert_int_eq(pp_completed_next(it, &f), PP_EOF);
  pp_completed_destroy(it);
  release_futures(fs, N);
  end_pool(p);
}
END_TEST

/* Ten futures done before the iterator exists, ten held by the gate: the
 * done ones come first, a timeout fires while the rest are held. */
START_TEST(test_as_completed_some_done) {
  enum { N = 20 };
  pp_pool *p = new_pool_n(2);
  pp_future *fs[N], *f;
  unsigned char seen[N] = {0};
  pp_completed *it, *it2;
  double t0;

  for (int i = 0; i < N / 2; i++)
    fs[i] = submit_i64(p, task_order, i);
  ck_assert_int_eq(pp_wait(fs, N / 2, 30, PP_ALL_COMPLETED, NULL), N / 2);
  for (int i = N / 2; i < N; i++)
    fs[i] = submit_i64(p, task_gate, i);
  ck_assert_int_eq(pp_as_completed(fs, N, PP_FOREVER, &it), 0);
  ck_assert_int_eq(pp_as_completed(fs, N, 0.1, &it2), 0);
  for (int k = 0; k < N / 2; k++) {
    ck_assert_int_eq(pp_completed_next(it, &f), 0);
    int i;
    for (i = 0; i < N / 2 && fs[i] != f; i++)
      ;
    ck_assert_int_lt(i, N / 2); /* one of the done ones */
    ck_assert(!seen[i]);
    seen[i] = 1;
    ck_assert_int_eq(pp_completed_next(it2, &f), 0);
  }
  t0 = tu_now();
  ck_assert_int_eq(pp_completed_next(it2, &f), PP_ETIMEDOUT);
  ck_assert_double_lt(tu_now() - t0, 0.9);
  ck_assert_ptr_null(f);
  pp_completed_destroy(it2);
  atomic_store(&page->gate, 1);
  for (int k = N / 2; k < N; k++) {
    int i;
    ck_assert_int_eq(pp_completed_next(it, &f), 0);
    for (i = N / 2; i < N && fs[i] != f; i++)
      ;
    ck_assert_int_lt(i, N);
    ck_assert(!seen[i]);
    seen[i] = 1;
    ck_assert_int_eq(result_i64(f), i);
  }
  ck_assert_int_eq(pp_completed_next(it, &f), PP_EOF);
  pp_completed_destroy(it);
  release_futures(fs, N);
  end_pool(p);
}
END_TEST

/* ---------------------------------------------------------- timeouts */

START_TEST(test_timeouts) {
  pp_pool *p = new_pool_n(2);
  pp_future *f = submit_i64(p, task_sleep, 1000), *g;
  int64_t v[2] = {1000, 1000};
  const void *args[2] = {&v[0], &v[1]};
  size_t lens[2] = {sizeof v[0], sizeof v[1]};
  pp_map_options mo = {.chunksize = 1, .timeout = 0.05};
  unsigned char done = 9;
  pp_completed *it;
  const void *data;
  pp_map *m;
  double t0;

  t0 = tu_now();
  ck_assert_int_eq(pp_future_result(f, 0.05, &data, NULL), PP_ETIMEDOUT);
  ck_assert_double_lt(tu_now() - t0, 0.9);
  ck_assert_double_ge(tu_now() - t0, 0.04);
  ck_assert_ptr_null(data);
  ck_assert(!pp_future_done(f));

  ck_assert_int_eq(pp_as_completed(&f, 1, 0.05, &it), 0);
  t0 = tu_now();
  ck_assert_int_eq(pp_completed_next(it, &g), PP_ETIMEDOUT);
  ck_assert_double_lt(tu_now() - t0, 0.9);
  pp_completed_destroy(it);

  t0 = tu_now();
  ck_assert_int_eq(pp_wait(&f, 1, 0.05, PP_ALL_COMPLETED, &done), 0);
  ck_assert_double_lt(tu_now() - t0, 0.9);
  ck_assert_int_eq(done, 0);

  ck_assert_int_eq(pp_map_array(p, task_sleep, args, lens, 2, &mo, &m), 0);
  t0 = tu_now();
  ck_assert_int_eq(pp_map_next(m, &data, NULL), PP_ETIMEDOUT);
  ck_assert_double_lt(tu_now() - t0, 0.9);
  pp_map_destroy(m);

  ck_assert_int_eq(result_i64(f), 1000);
  pp_future_release(f);
  end_pool(p);
}
END_TEST

/* -------------------------------------------------------------- wait */

START_TEST(test_wait_modes) {
  pp_pool *p = new_pool_n(4);
  pp_future *g1 = submit_i64(p, task_gate, 1),
            *g2 = submit_i64(p, task_gate, 2);
  pp_future *fast = submit_i64(p, task_order, 5), *bad, *fast2;
  unsigned char done[4];
  double t0;

  pp_future *first[3] = {g1, fast, g2};
  ck_assert_int_eq(pp_wait(first, 3, 30, PP_FIRST_COMPLETED, done), 1);
  ck_assert(!done[0] && done[1] && !done[2]);

  ck_assert_int_eq(pp_submit(p, task_fail, NULL, 0, &bad), 0);
  pp_future *exc[4] = {g1, fast, bad, g2};
  ck_assert_int_eq(pp_wait(exc, 4, 30, PP_FIRST_EXCEPTION, done), 2);
  ck_assert(!done[0] && done[1] && done[2] && !done[3]);

  fast2 = submit_i64(p, task_order, 6);
  pp_future *ok[2] = {fast, fast2};
  ck_assert_int_eq(pp_wait(ok, 2, 30, PP_FIRST_EXCEPTION, done), 2);
  ck_assert(done[0] && done[1]);

  t0 = tu_now();
  ck_assert_int_eq(pp_wait(exc, 4, 0.1, PP_ALL_COMPLETED, done), 2);
  ck_assert_double_lt(tu_now() - t0, 0.9);
  ck_assert(!done[0] && !done[3]);

  atomic_store(&page->gate, 1);
  ck_assert_int_eq(pp_wait(exc, 4, 30, PP_ALL_COMPLETED, done), 4);
  ck_assert(done[0] && done[1] && done[2] && done[3]);
  ck_assert_int_eq(result_i64(g1), 1);
  ck_assert_int_eq(result_i64(g2), 2);
  pp_future_release(g1);
  pp_future_release(g2);
  pp_future_release(fast);
  pp_future_release(fast2);
  pp_future_release(bad);
  end_pool(p);
}
END_TEST

/* ------------------------------------------------------------ cancel */

START_TEST(test_cancel) {
  pp_pool *p = new_pool_n(1);
  pp_future *lng = submit_i64(p, task_gate, 0), *f[4];
  const void *data = (void *)1;

  for (int i = 1; i <= 3; i++)
    f[i] = submit_i64(p, task_mark, i);
  ck_assert(eventually(is_running, lng, 10));
  ck_assert_int_eq(pp_future_cancel(f[2]), 0);
  ck_assert_int_eq(pp_future_state(f[2]), PP_CANCELLED);
  ck_assert(pp_future_cancelled(f[2]));
  ck_assert(pp_future_done(f[2]));
  ck_assert_int_eq(pp_future_result(f[2], 0, &data, NULL), PP_ECANCELLED);
  ck_assert_ptr_null(data);
  ck_assert_int_eq(pp_future_cancel(lng), PP_EBUSY);
  ck_assert(!pp_future_done(lng));

  atomic_store(&page->gate, 1);
  ck_assert_int_eq(result_i64(lng), 0);
  ck_assert_int_eq(result_i64(f[1]), 1);
  ck_assert_int_eq(result_i64(f[3]), 3);
  ck_assert_int_eq(pp_future_cancel(f[1]), PP_EINVAL);
  ck_assert_int_eq(pp_future_cancel(lng), PP_EINVAL);
  ck_assert(!pp_future_cancelled(f[1]));
  end_pool(p);
  ck_assert_int_eq(atomic_load(&page->ran[2]), 0);
  ck_assert_int_eq(atomic_load(&page->ran[1]), 1);
  ck_assert_int_eq(atomic_load(&page->ran[3]), 1);
  pp_future_release(lng);
  for (int i = 1; i <= 3; i++)
    pp_future_release(f[i]);
}
END_TEST

/* --------------------------------------------------------- callbacks */

struct cb_log {
  atomic_int taken; /* entries claimed */
  atomic_int calls; /* entries written: counted once their fields are */
  atomic_int order[8];
  atomic_int saw_done[8];
  pthread_t thread[8];
};

/* Logs a call. `calls` moves only after the entry is written, so a reader
 * that sees it move reads the whole entry (it used to move first, and
 * under TSan the test read saw_done before the callback had set it). */
static void record(struct cb_log *log, pp_future *f, int tag) {
  int k = atomic_fetch_add(&log->taken, 1);
  if (k < 8) {
    log->order[k] = tag;
    log->saw_done[k] = pp_future_done(f);
    log->thread[k] = pthread_self();
  }
  atomic_fetch_add(&log->calls, 1); /* after the entry: see two_calls() */
}

static void cb_a(pp_future *f, void *arg) {
  record(arg, f, 'A');
}

static void cb_b(pp_future *f, void *arg) {
  record(arg, f, 'B');
}

static void cb_c(pp_future *f, void *arg) {
  record(arg, f, 'C');
}

static int two_calls(void *log) {
  return atomic_load(&((struct cb_log *)log)->calls) >= 2;
}

START_TEST(test_done_callbacks) {
  pp_pool *p = new_pool_n(1);
  pp_future *f = submit_i64(p, task_gate, 0);
  static struct cb_log log;

  ck_assert_int_eq(pp_future_add_done_callback(f, cb_a, &log), 0);
  ck_assert_int_eq(pp_future_add_done_callback(f, cb_b, &log), 0);
  sleep_ms(20);
  ck_assert_int_eq(atomic_load(&log.calls), 0);
  atomic_store(&page->gate, 1);
  ck_assert_int_eq(result_i64(f), 0);
  ck_assert(eventually(two_calls, &log, 10));
  ck_assert_int_eq(log.order[0], 'A');
  ck_assert_int_eq(log.order[1], 'B');
  ck_assert(log.saw_done[0] && log.saw_done[1]);
  ck_assert(!pthread_equal(log.thread[0], pthread_self()));

  ck_assert_int_eq(pp_future_add_done_callback(f, cb_c, &log), 0);
  ck_assert_int_eq(atomic_load(&log.calls), 3);
  ck_assert_int_eq(log.order[2], 'C');
  ck_assert(log.saw_done[2]);
  ck_assert(pthread_equal(log.thread[2], pthread_self()));
  sleep_ms(20);
  ck_assert_int_eq(atomic_load(&log.calls), 3);
  end_pool(p);
  ck_assert_int_eq(atomic_load(&log.calls), 3);
  pp_future_release(f);
}
END_TEST

/* ------------------------------------------------------------ format */

static void check_format(pp_future *f, const char *want) {
  char buf[256];
  int n = pp_future_format(f, buf, sizeof buf);
  ck_assert_int_eq(n, (int)strlen(buf));
  ck_assert_msg(strncmp(buf, "<Future at ", 11) == 0, "got %s", buf);
  ck_assert_msg(strstr(buf, want) != NULL, "want %s in %s", want, buf);
  ck_assert_int_eq(buf[n - 1], '>');
}

START_TEST(test_format) {
  pp_pool *p = new_pool_n(1);
  pp_future *run = submit_i64(p, task_gate, 0);
  pp_future *pend = submit_i64(p, task_mark, 1), *bad;
  char small[8];
  int n;

  ck_assert(eventually(is_running, run, 10));
  check_format(run, " state=running>");
  check_format(pend, " state=pending>");
  ck_assert_int_eq(pp_future_cancel(pend), 0);
  check_format(pend, " state=cancelled>");
  atomic_store(&page->gate, 1);
  ck_assert_int_eq(result_i64(run), 0);
  check_format(run, " state=finished returned 8 bytes>");
  ck_assert_int_eq(pp_submit(p, task_fail, NULL, 0, &bad), 0);
  ck_assert_int_eq(pp_future_result(bad, 30, NULL, NULL), PP_ETASK);
  check_format(bad, " state=finished raised PP_ETASK: bad 7>");

  n = pp_future_format(run, small, sizeof small);
  ck_assert_int_gt(n, (int)sizeof small - 1);
  ck_assert_uint_eq(strlen(small), sizeof small - 1);
  end_pool(p);
  pp_future_release(run);
  pp_future_release(pend);
  pp_future_release(bad);
}
END_TEST

/* ---------------------------------------------------------- shutdown */

START_TEST(test_shutdown_wait) {
  enum { N = 20 };
  pp_pool *p = new_pool_n(2);
  pp_future *fs[N], *f = (void *)1;
  int64_t v = 1;

  for (int i = 0; i < N; i++)
    fs[i] = submit_i64(p, task_sleep, 5);
  ck_assert_int_eq(pp_pool_shutdown(p, 1, 0), 0);
  for (int i = 0; i < N; i++) {
    const void *data;
    size_t len;
    ck_assert(pp_future_done(fs[i]));
    ck_assert_int_eq(pp_future_result(fs[i], 0, &data, &len), 0);
    ck_assert_int_eq(as_i64(data, len), 5);
  }
  ck_assert_int_eq(tu_children(), 0); /* every worker has exited */
  ck_assert_int_eq(pp_submit(p, task_echo, &v, sizeof v, &f), PP_ESHUTDOWN);
  ck_assert_ptr_null(f);
  end_pool(p);
  release_futures(fs, N);
}
END_TEST

START_TEST(test_shutdown_cancel) {
  enum { N = 10 };
  pp_pool *p = new_pool_n(1);
  pp_future *lng = submit_i64(p, task_sleep, 200), *fs[N], *f;

  for (int i = 0; i < N; i++)
    fs[i] = submit_i64(p, task_mark, i);
  ck_assert(eventually(is_running, lng, 10));
  ck_assert_int_eq(pp_pool_shutdown(p, 1, 1), 0);
  ck_assert(pp_future_done(lng));
  ck_assert_int_eq(result_i64(lng), 200);
  for (int i = 0; i < N; i++) {
    ck_assert(pp_future_cancelled(fs[i]));
    ck_assert_int_eq(pp_future_result(fs[i], 0, NULL, NULL), PP_ECANCELLED);
    ck_assert_int_eq(atomic_load(&page->ran[i]), 0);
  }
  ck_assert_int_eq(pp_submit(p, task_echo, NULL, 0, &f), PP_ESHUTDOWN);
  end_pool(p);
  pp_future_release(lng);
  release_futures(fs, N);
}
END_TEST

START_TEST(test_shutdown_nowait) {
  enum { N = 4 };
  pp_pool *p = new_pool_n(2);
  pp_future *fs[N], *f;
  double t0;
  int done = 0;

  for (int i = 0; i < N; i++)
    fs[i] = submit_i64(p, task_sleep, 200);
  t0 = tu_now();
  ck_assert_int_eq(pp_pool_shutdown(p, 0, 0), 0);
  ck_assert_double_lt(tu_now() - t0, 0.15);
  for (int i = 0; i < N; i++)
    done += pp_future_done(fs[i]);
  ck_assert_int_lt(done, N);
  ck_assert_int_eq(pp_submit(p, task_echo, NULL, 0, &f), PP_ESHUTDOWN);
  end_pool(p);
  ck_assert_int_eq(tu_children(), 0);
  for (int i = 0; i < N; i++) {
    ck_assert(pp_future_done(fs[i]));
    ck_assert_int_eq(result_i64(fs[i]), 200);
    pp_future_release(fs[i]);
  }
  pp_pool_destroy(NULL);
}
END_TEST

/* ---------------------------------------------------------- payloads */

START_TEST(test_payload_empty) {
  pp_pool *p = new_pool_n(1);
  const void *data;
  size_t len = 99;
  pp_future *f;

  ck_assert_int_eq(pp_submit(p, task_echo, NULL, 0, &f), 0);
  ck_assert_int_eq(pp_future_result(f, 30, &data, &len), 0);
  ck_assert_uint_eq(len, 0);
  check_format(f, " state=finished returned 0 bytes>");
  pp_future_release(f);
  end_pool(p);
}
END_TEST

/* Round-trips exactly max bytes both ways, and one byte over each way. */
static void payload_limits(pp_pool *p, size_t max) {
  unsigned char *arg = malloc(max + 1);
  const void *data;
  size_t len;
  pp_future *f = (void *)1;

  ck_assert_ptr_nonnull(arg);
  ck_assert_uint_eq(pp_pool_max_payload(p), max);
  for (size_t i = 0; i <= max; i++)
    arg[i] = (unsigned char)rng();
  ck_assert_int_eq(pp_submit(p, task_echo, arg, max, &f), 0);
  ck_assert_int_eq(pp_future_result(f, 30, &data, &len), 0);
  ck_assert_uint_eq(len, max);
  ck_assert_mem_eq(data, arg, max);
  pp_future_release(f);

  ck_assert_int_eq(pp_submit(p, task_echo, arg, max + 1, &f), PP_ETOOBIG);
  ck_assert_ptr_null(f);

  f = submit_i64(p, task_sized, (int64_t)max);
  ck_assert_int_eq(pp_future_result(f, 30, &data, &len), 0);
  ck_assert_uint_eq(len, max);
  for (size_t i = 0; i < max; i++)
    arg[i] = (unsigned char)(i * 7 + 3);
  ck_assert_mem_eq(data, arg, max);
  pp_future_release(f);

  f = submit_i64(p, task_sized, (int64_t)max + 1);
  ck_assert_int_eq(pp_future_result(f, 30, &data, &len), PP_ETOOBIG);
  ck_assert_ptr_null(data);
  pp_future_release(f);
  free(arg);
}

START_TEST(test_payload_max_small) {
  pp_options o;
  pp_pool *p;

  pp_options_init(&o);
  o.engine = engine;
  o.workers = 2;
  o.max_payload = 4096;
  p = new_pool(&o);
  payload_limits(p, 4096);
  end_pool(p);
}
END_TEST

START_TEST(test_payload_max_default) {
  pp_pool *p = new_pool_n(2);
  payload_limits(p, (size_t)1 << 20);
  end_pool(p);
}
END_TEST

/* Results built in place by pp_task_buffer(): small and large ones (a
 * large one goes onto the result ring from the task's buffer, past those
 * buffered before it), in order through a map, and the limit as
 * pp_task_return() keeps it. */
START_TEST(test_payload_in_place) {
  /* The last, shifted by none (1048575 % 5), is one byte under 1 MiB. */
  static const int64_t sizes[] = {0,      13, 70000, 8,  200003,
                                  131072, 1,  99999, 64, 1048575};
  enum { N = sizeof sizes / sizeof sizes[0] };
  pp_map_options mo = {.window = 4};
  const void *args[N], *data;
  size_t lens[N], len;
  pp_pool *p = new_pool_n(2);
  pp_future *f;
  pp_map *m;

  for (size_t i = 0; i < N; i++) {
    args[i] = &sizes[i];
    lens[i] = sizeof sizes[i];
  }
  for (int round = 0; round < 3; round++) {
    ck_assert_int_eq(pp_map_array(p, task_in_place, args, lens, N, &mo, &m), 0);
    for (size_t i = 0; i < N; i++) {
      ck_assert_int_eq(pp_map_next(m, &data, &len), 0);
      ck_assert_uint_eq(len, (size_t)sizes[i]);
      ck_assert_msg(is_pattern(data, len),
                    "round %d: the %zu-byte result built in place differs",
                    round, len);
    }
    ck_assert_int_eq(pp_map_next(m, &data, &len), PP_EOF);
    pp_map_destroy(m);
  }
  f = submit_i64(p, task_in_place, ((int64_t)1 << 20) + 1);
  ck_assert_int_eq(pp_future_result(f, 30, &data, &len), PP_ETOOBIG);
  ck_assert_msg(strstr(pp_future_message(f), "1048576") != NULL,
                "the message \"%s\" does not name the limit",
                pp_future_message(f));
  pp_future_release(f);
  end_pool(p);
}
END_TEST

/* More large results built in place than the process engine has blocks
 * to lend (six for two workers), all done before the map hands one back:
 * those that found no block free are copied, and each arrives right, in
 * order; so do futures' (a future copies its result out of the block). */
START_TEST(test_payload_in_place_many) {
  enum { N = 40, NF = 12 };
  int64_t sizes[N];
  const void *args[N], *data;
  size_t lens[N], len;
  pp_map_options mo = {.chunksize = 1, .window = N};
  pp_future *fs[NF];
  pp_pool *p = new_pool_n(2);
  pp_map *m;

  for (size_t i = 0; i < N; i++) {
    sizes[i] = 100000 + (int64_t)i * 5; /* shifted by 0 */
    args[i] = &sizes[i];
    lens[i] = sizeof sizes[i];
  }
  ck_assert_int_eq(pp_map_array(p, task_in_place, args, lens, N, &mo, &m), 0);
  sleep_ms(300); /* the workers get through all of them meanwhile */
  for (size_t i = 0; i < N; i++) {
    ck_assert_int_eq(pp_map_next(m, &data, &len), 0);
    ck_assert_uint_eq(len, (size_t)sizes[i]);
    ck_assert_msg(is_pattern(data, len), "map result %zu differs", i);
  }
  ck_assert_int_eq(pp_map_next(m, &data, &len), PP_EOF);
  pp_map_destroy(m);
  for (int i = 0; i < NF; i++)
    fs[i] = submit_i64(p, task_in_place, 200000 + i * 5);
  for (int i = 0; i < NF; i++) {
    ck_assert_int_eq(pp_future_result(fs[i], 30, &data, &len), 0);
    ck_assert_uint_eq(len, (size_t)(200000 + i * 5));
    ck_assert_msg(is_pattern(data, len), "future %d's result differs", i);
    pp_future_release(fs[i]);
  }
  end_pool(p);
}
END_TEST

/* Byte `k` of argument `i` of round `round`. */
static unsigned char arg_byte(int round, int i, size_t k) {
  return (unsigned char)(k * 31 + (size_t)i * 7 + (size_t)round);
}

/* Many tasks held in flight at once, each with an argument over 512 bytes
 * (so a frame with pages of its own, for the first few hundred: slots.c),
 * then again with larger ones, so that reused slots replace their frames:
 * every argument comes back whole, and the frames with pages of their own
 * stay within their limit, which the first round reaches. */
START_TEST(test_payload_many_large_args) {
  enum { N = 600, ARG_MAX = 600 * 7 + 2 * 2000 + 600 };
  pp_future **fs = malloc(N * sizeof *fs);
  unsigned char *arg = malloc(ARG_MAX);
  pp_pool *p = new_pool_n(2);
  const void *data;
  int max, paged;
  size_t len;

  ck_assert(fs && arg);
  for (int round = 0; round < 3; round++) {
    atomic_store(&page->gate, 0);
    for (int i = 0; i < N; i++) {
      size_t n = 520 + (size_t)i * 7 + (size_t)round * 2000;
      for (size_t k = 0; k < n; k++)
        arg[k] = arg_byte(round, i, k);
      ck_assert_int_eq(pp_submit(p, task_gated_echo, arg, n, &fs[i]), 0);
    }
    paged = pp_test_paged_frames(p, &max);
    if (round == 0)
      ck_assert_int_eq(paged, max);
    atomic_store(&page->gate, 1);
    for (int i = 0; i < N; i++) {
      size_t n = 520 + (size_t)i * 7 + (size_t)round * 2000;
      ck_assert_int_eq(pp_future_result(fs[i], 30, &data, &len), 0);
      ck_assert_uint_eq(len, n);
      for (size_t k = 0; k < n; k++)
        if (((const unsigned char *)data)[k] != arg_byte(round, i, k))
          ck_abort_msg("round %d: byte %zu of argument %d came back wrong",
                       round, k, i);
      pp_future_release(fs[i]);
    }
    paged = pp_test_paged_frames(p, &max);
    ck_assert_int_le(paged, max);
  }
  ck_assert_int_gt(max, 0);
  free(arg);
  free(fs);
  end_pool(p);
}
END_TEST

/* ----------------------------------------------------- many tasks */

enum { MANY = 100000 };

static pp_pool *small_ring_pool(void) {
  pp_options o;
  pp_options_init(&o);
  o.engine = engine;
  o.workers = 2;
  o.ring_capacity = 512;
  o.max_payload = 64;
  return new_pool(&o);
}

START_TEST(test_many_map) {
  pp_pool *p = small_ring_pool();
  struct counter_gen g = {0, MANY, 0};
  const void *data;
  size_t len;
  pp_map *m;

  ck_assert_int_eq(pp_map_gen(p, task_square, counter_gen, &g, NULL, &m), 0);
  for (int64_t i = 0; i < MANY; i++) {
    int64_t out[2];
    ck_assert_int_eq(pp_map_next(m, &data, &len), 0);
    ck_assert_uint_eq(len, sizeof out);
    memcpy(out, data, sizeof out);
    if (out[0] != i || out[1] != i * i)
      ck_abort_msg("item %lld: got %lld %lld", (long long)i, (long long)out[0],
                   (long long)out[1]);
  }
  ck_assert_int_eq(pp_map_next(m, &data, &len), PP_EOF);
  pp_map_destroy(m);
  end_pool(p);
}
END_TEST

START_TEST(test_many_as_completed) {
  pp_pool *p = small_ring_pool();
  pp_future **fs = malloc(MANY * sizeof *fs), *f;
  unsigned char *seen = calloc(MANY, 1);
  pp_completed *it;
  const void *data;
  size_t len;

  ck_assert(fs && seen);
  for (int64_t i = 0; i < MANY; i++)
    ck_assert_int_eq(pp_submit(p, task_square, &i, sizeof i, &fs[i]), 0);
  ck_assert_int_eq(pp_as_completed(fs, MANY, PP_FOREVER, &it), 0);
  for (int k = 0; k < MANY; k++) {
    int64_t out[2];
    ck_assert_int_eq(pp_completed_next(it, &f), 0);
    ck_assert_int_eq(pp_future_result(f, 0, &data, &len), 0);
    ck_assert_uint_eq(len, sizeof out);
    memcpy(out, data, sizeof out);
    if (out[0] < 0 || out[0] >= MANY || seen[out[0]] || fs[out[0]] != f ||
        out[1] != out[0] * out[0])
      ck_abort_msg("bad or repeated result %lld", (long long)out[0]);
    seen[out[0]] = 1;
  }
  ck_assert_int_eq(pp_completed_next(it, &f), PP_EOF);
  pp_completed_destroy(it);
  release_futures(fs, MANY);
  free(fs);
  free(seen);
  end_pool(p);
}
END_TEST

/* ----------------------------------------------------------- workers */

/* Set by the initializer, in the worker: thread-local, so that with the
 * thread engine each worker thread has its own, as each process does. */
static _Thread_local int init_magic;

static int init_record(void *arg) {
  int k = atomic_fetch_add(&page->init_count, 1);
  if (k < 64)
    atomic_store(&page->init_pids[k], getpid());
  init_magic = *(int *)arg;
  return 0;
}

static int init_fail(void *arg) {
  (void)arg;
  return 5;
}

static int task_magic(pp_task *t, const void *arg, size_t len) {
  int64_t v = init_magic;
  (void)arg;
  (void)len;
  return pp_task_return(t, &v, sizeof v);
}

static int cmp_int(const void *a, const void *b) {
  return (*(const int *)a > *(const int *)b) -
         (*(const int *)a < *(const int *)b);
}

START_TEST(test_initializer) {
  static int magic = 4242;
  pp_options o;
  pp_pool *p;
  int pids[3], inits[3];

  pp_options_init(&o);
  o.engine = engine;
  o.workers = 3;
  o.initializer = init_record;
  o.initarg = &magic;
  p = new_pool(&o);
  ck_assert_int_eq(atomic_load(&page->init_count), 3);
  if (engine == PP_ENGINE_PROCESSES) { /* one initializer per process */
    ck_assert_int_eq(pp_pool_worker_pids(p, pids, 3), 3);
    for (int i = 0; i < 3; i++)
      inits[i] = atomic_load(&page->init_pids[i]);
    qsort(pids, 3, sizeof *pids, cmp_int);
    qsort(inits, 3, sizeof *inits, cmp_int);
    ck_assert_mem_eq(pids, inits, sizeof pids);
  } else { /* threads of this process */
    ck_assert_int_eq(pp_pool_worker_pids(p, pids, 3), 0);
  }
  for (int i = 0; i < 6; i++) {
    pp_future *f = submit_i64(p, task_magic, 0);
    ck_assert_int_eq(result_i64(f), 4242);
    pp_future_release(f);
  }
  ck_assert_int_eq(atomic_load(&page->init_count), 3);
  end_pool(p);
}
END_TEST

START_TEST(test_initializer_fails) {
  pp_options o;
  pp_pool *p = (void *)1;

  pp_options_init(&o);
  o.engine = engine;
  o.workers = 2;
  o.initializer = init_fail;
  ck_assert_int_eq(pp_pool_create(&p, &o), PP_EINIT);
  ck_assert_ptr_null(p);
  ck_assert_int_eq(tu_children(), 0);
  ck_assert_int_le(tu_shm_entries(), shm_before);
}
END_TEST

/* Waits for the gate, then counts itself: a pool that starts in the
 * background must not wait for it. */
static int init_gated(void *arg) {
  double end = tu_now() + GATE_MAX_S;
  (void)arg;
  while (!atomic_load(&page->gate) && tu_now() < end)
    sleep_ms(1);
  atomic_fetch_add(&page->init_count, 1);
  return 0;
}

static int all_forked(void *pool) {
  int pids[8];
  return pp_pool_worker_pids(pool, pids, 8) == pp_pool_workers(pool);
}

START_TEST(test_start_in_background) {
  enum { WORKERS = 4, N = 40 };
  pp_future *f[N];
  pp_options o;
  pp_pool *p;

  pp_options_init(&o);
  o.engine = engine;
  o.workers = WORKERS;
  o.initializer = init_gated;
  o.start_in_background = 1;
  if (engine == PP_ENGINE_THREADS) /* always waits: open the gate first */
    atomic_store(&page->gate, 1);
  p = new_pool(&o);
  if (engine == PP_ENGINE_PROCESSES) { /* returned with no initializer done */
    ck_assert_int_eq(atomic_load(&page->init_count), 0);
    /* Submits allocate: not while workers are forked (see procpool.h). */
    ck_assert(eventually(all_forked, p, 10));
  }
  for (int i = 0; i < N; i++)
    f[i] = submit_i64(p, task_echo, i);
  atomic_store(&page->gate, 1);
  for (int i = 0; i < N; i++) {
    ck_assert_int_eq(result_i64(f[i]), i);
    pp_future_release(f[i]);
  }
  end_pool(p);
  ck_assert_int_eq(atomic_load(&page->init_count), WORKERS);
}
END_TEST

static int init_gated_fail(void *arg) {
  init_gated(arg);
  return 5;
}

/* Starting in the background, a failing initializer fails the tasks (or,
 * once the pool knows, the submits) with PP_EINIT; the thread engine still
 * fails the creation. */
START_TEST(test_start_in_background_init_fails) {
  pp_options o;
  pp_pool *p = NULL;
  pp_future *f = NULL;
  int64_t v = 3;
  int rc;

  pp_options_init(&o);
  o.engine = engine;
  o.workers = 2;
  o.initializer = init_gated_fail;
  o.start_in_background = 1;
  if (engine == PP_ENGINE_THREADS) {
    atomic_store(&page->gate, 1);
    ck_assert_int_eq(pp_pool_create(&p, &o), PP_EINIT);
    ck_assert_ptr_null(p);
    return;
  }
  p = new_pool(&o);
  ck_assert(eventually(all_forked, p, 10)); /* then submit: see above */
  atomic_store(&page->gate, 1);
  rc = pp_submit(p, task_echo, &v, sizeof v, &f);
  if (rc == 0) {
    rc = pp_future_result(f, 30, NULL, NULL);
    ck_assert_str_eq(pp_future_message(f), "worker initializer failed (5)");
    pp_future_release(f);
  }
  ck_assert_int_eq(rc, PP_EINIT);
  end_pool(p);
}
END_TEST

START_TEST(test_max_tasks_per_worker) {
  enum { N = 30 };
  pp_options o;
  pp_pool *p;
  pp_future *fs[N];
  int pids[N], distinct = 0, run = 0;

  pp_options_init(&o);
  o.engine = engine;
  o.workers = 2;
  o.max_tasks_per_worker = 3;
  p = new_pool(&o);
  for (int i = 0; i < N; i++)
    fs[i] = submit_i64(p, task_pid, 0);
  for (int i = 0; i < N; i++) {
    pids[i] = (int)result_i64(fs[i]);
    pp_future_release(fs[i]);
  }
  qsort(pids, N, sizeof *pids, cmp_int);
  for (int i = 0; i < N; i++) {
    run = i > 0 && pids[i] == pids[i - 1] ? run + 1 : 1;
    distinct += run == 1;
    ck_assert_int_le(run, 3); /* no worker ran more than 3 tasks */
  }
  ck_assert_int_ge(distinct, N / 3);
  end_pool(p);
}
END_TEST

/* ------------------------------------------------------------ threads */

enum { THREADS = 4, PER_THREAD = 2000 };

struct thread_job {
  pp_pool *pool;
  int id;
  int errors;
};

/* Submits PER_THREAD tasks, then checks each result. */
static void *submitter(void *arg) {
  struct thread_job *j = arg;
  pp_future **fs = malloc(PER_THREAD * sizeof *fs);
  int64_t out[2];
  const void *data;
  size_t len;

  if (!fs) {
    j->errors = PER_THREAD;
    return NULL;
  }
  for (int i = 0; i < PER_THREAD; i++) {
    int64_t v = (int64_t)j->id * 1000000 + i;
    if (pp_submit(j->pool, task_square, &v, sizeof v, &fs[i]) != 0)
      fs[i] = NULL, j->errors++;
  }
  for (int i = 0; i < PER_THREAD; i++) {
    int64_t v = (int64_t)j->id * 1000000 + i;
    if (!fs[i])
      continue;
    if (pp_future_result(fs[i], 60, &data, &len) != 0 || len != sizeof out)
      j->errors++;
    else if (memcpy(out, data, sizeof out), out[0] != v || out[1] != v * v)
      j->errors++;
    pp_future_release(fs[i]);
  }
  free(fs);
  return NULL;
}

START_TEST(test_threads) {
  pp_pool *p = new_pool_n(2);
  struct thread_job jobs[THREADS];
  pthread_t th[THREADS];

  for (int i = 0; i < THREADS; i++) {
    jobs[i] = (struct thread_job){p, i, 0};
    ck_assert_int_eq(pthread_create(&th[i], NULL, submitter, &jobs[i]), 0);
  }
  for (int i = 0; i < THREADS; i++) {
    pthread_join(th[i], NULL);
    ck_assert_int_eq(jobs[i].errors, 0);
  }
  end_pool(p);
}
END_TEST

/* What another thread saw while the map's consumer was away. */
struct bystander {
  pp_pool *pool;
  int rc;           /* of pp_future_result() */
  int64_t square;   /* what the task returned */
  double seconds;   /* how long the result took */
  atomic_int fired; /* the done callback ran */
};

static void note_fired(pp_future *f, void *arg) {
  (void)f;
  atomic_store(&((struct bystander *)arg)->fired, 1);
}

/* Submits one task with a done callback and waits for it. */
static void *bystander_main(void *arg) {
  struct bystander *b = arg;
  int64_t v = 7, out[2] = {0, 0};
  const void *data = NULL;
  size_t len = 0;
  pp_future *f = NULL;
  double t0 = tu_now();

  b->rc = pp_submit(b->pool, task_square, &v, sizeof v, &f);
  if (b->rc == 0)
    b->rc = pp_future_add_done_callback(f, note_fired, b);
  if (b->rc == 0)
    b->rc = pp_future_result(f, 10, &data, &len);
  b->seconds = tu_now() - t0;
  if (b->rc == 0 && len == sizeof out)
    memcpy(out, data, sizeof out);
  b->square = out[1];
  pp_future_release(f);
  return NULL;
}

/* A map's consumer takes results itself between its first pp_map_next()
 * and its end, and the engine then skips waking its collector for them:
 * another thread's future and callback must still be served while that
 * consumer does something else. Served means within 2 s (about a
 * millisecond is expected; the fault would be the 10 s timeout). */
START_TEST(test_map_consumer_away) {
  pp_pool *p = new_pool_n(2);
  struct counter_gen g = {0, 1000, 0};
  pp_map_options mo = {.chunksize = 1};
  struct bystander b = {.pool = p};
  const void *data;
  size_t len;
  pthread_t th;
  pp_map *m;
  int n = 1;

  ck_assert_int_eq(pp_map_gen(p, task_square, counter_gen, &g, &mo, &m), 0);
  ck_assert_int_eq(pp_map_next(m, &data, &len), 0);
  ck_assert_int_eq(pthread_create(&th, NULL, bystander_main, &b), 0);
  pthread_join(th, NULL);
  ck_assert_int_eq(b.rc, 0);
  ck_assert_int_eq(b.square, 49);
  ck_assert_msg(b.seconds < 2.0,
                "a future of another thread took %.3f s while the map's "
                "consumer was away",
                b.seconds);
  for (int i = 0; i < 200 && !atomic_load(&b.fired); i++)
    usleep(10000);
  ck_assert_msg(atomic_load(&b.fired), "its done callback never ran");
  while (pp_map_next(m, &data, &len) == 0)
    n++;
  ck_assert_int_eq(n, 1000);
  pp_map_destroy(m);
  end_pool(p);
}
END_TEST

/* Counts the done callbacks that ran (its argument is the counter). */
static void count_done(pp_future *f, void *arg) {
  (void)f;
  atomic_fetch_add((atomic_int *)arg, 1);
}

/* Submits `n` tasks that sleep `ms` each, keeping the futures in fs. */
static void submit_sleepers(pp_pool *p, pp_future **fs, int n, int64_t ms) {
  for (int i = 0; i < n; i++)
    ck_assert_int_eq(pp_submit(p, task_sleep, &ms, sizeof ms, &fs[i]), 0);
}

/* Waits up to `s` seconds for *counter to reach `want`; returns it. */
static int wait_count(atomic_int *counter, int want, double s) {
  double end = tu_now() + s;
  while (atomic_load(counter) < want && tu_now() < end)
    sleep_ms(1);
  return atomic_load(counter);
}

/* A submit made while the workers have plenty queued may be held back,
 * to be queued with the next ones; it must still run, and its callback
 * fire, with nobody waiting for any result: expected within the 0.2 s the
 * sleepers ahead take, bounded at 10 s (held for ever, the fault). */
START_TEST(test_held_submits_run_unasked) {
  pp_pool *p = new_pool_n(2);
  pp_future *sleepers[20], *marks[5];
  atomic_int done = 0;

  submit_sleepers(p, sleepers, 20, 20);
  for (int64_t i = 0; i < 5; i++) {
    ck_assert_int_eq(pp_submit(p, task_mark, &i, sizeof i, &marks[i]), 0);
    ck_assert_int_eq(pp_future_add_done_callback(marks[i], count_done, &done),
                     0);
  }
  ck_assert_msg(wait_count(&done, 5, 10) == 5,
                "%d of 5 tasks submitted behind a busy queue ran, with "
                "nobody waiting",
                atomic_load(&done));
  release_futures(sleepers, 20);
  release_futures(marks, 5);
  end_pool(p);
}
END_TEST

/* The same when what is queued ahead is cancelled: cancelled tasks send
 * no result back, so nothing would come to queue what was held. */
START_TEST(test_held_submits_behind_cancelled) {
  pp_pool *p = new_pool_n(1);
  pp_future *gate, *queued[20], *mark;
  int64_t zero = 0, n = 30;
  atomic_int done = 0;

  ck_assert_int_eq(pp_submit(p, task_gate, &zero, sizeof zero, &gate), 0);
  while (!atomic_load(&page->ran[0]))
    sleep_ms(1);
  submit_sleepers(p, queued, 20, 1);
  for (int i = 0; i < 20; i++)
    ck_assert_int_eq(pp_future_cancel(queued[i]), 0);
  ck_assert_int_eq(pp_submit(p, task_mark, &n, sizeof n, &mark), 0);
  ck_assert_int_eq(pp_future_add_done_callback(mark, count_done, &done), 0);
  atomic_store(&page->gate, 1);
  ck_assert_msg(wait_count(&done, 1, 10) == 1,
                "a task submitted behind 20 cancelled ones never ran");
  ck_assert(atomic_load(&page->ran[30]));
  pp_future_release(gate);
  pp_future_release(mark);
  release_futures(queued, 20);
  end_pool(p);
}
END_TEST

/* A pool destroyed right after a burst of submits runs every one of them,
 * held or not. */
START_TEST(test_held_submits_run_at_destroy) {
  pp_pool *p = new_pool_n(2);
  pp_future *sleepers[20], *marks[40];

  submit_sleepers(p, sleepers, 20, 5);
  for (int64_t i = 0; i < 40; i++)
    ck_assert_int_eq(pp_submit(p, task_mark, &i, sizeof i, &marks[i]), 0);
  end_pool(p);
  for (int i = 0; i < 40; i++) {
    ck_assert_msg(atomic_load(&page->ran[i]), "task %d never ran", i);
    ck_assert_int_eq(pp_future_result(marks[i], 0, NULL, NULL), 0);
    pp_future_release(marks[i]);
  }
  release_futures(sleepers, 20);
}
END_TEST

/* ------------------------------------------------------------- errors */

START_TEST(test_strerror) {
  const char *msgs[16], *names[16];

  for (int c = PP_EINVAL; c >= PP_ESYS; c--) {
    int i = -c - 1;
    msgs[i] = pp_strerror(c);
    names[i] = pp_errname(c);
    ck_assert_ptr_nonnull(msgs[i]);
    ck_assert_ptr_nonnull(names[i]);
    ck_assert_uint_gt(strlen(msgs[i]), 0);
    ck_assert(strncmp(names[i], "PP_E", 4) == 0);
    for (int k = 0; k < i; k++) {
      ck_assert_str_ne(msgs[i], msgs[k]);
      ck_assert_str_ne(names[i], names[k]);
    }
  }
  ck_assert_str_eq(pp_errname(PP_ETIMEDOUT), "PP_ETIMEDOUT");
  ck_assert_ptr_nonnull(pp_strerror(12345));
  ck_assert_uint_gt(strlen(pp_strerror(12345)), 0);
  ck_assert_str_eq(pp_errname(12345), "PP_UNKNOWN");
}
END_TEST

START_TEST(test_create_args) {
  pp_options o;
  pp_pool *p = (void *)1;

  ck_assert_int_eq(pp_pool_create(NULL, NULL), PP_EINVAL);
  pp_options_init(&o);
  o.engine = engine;
  o.workers = -1;
  ck_assert_int_eq(pp_pool_create(&p, &o), PP_EINVAL);
  ck_assert_ptr_null(p);
  ck_assert_int_eq(tu_children(), 0);
  pp_pool_destroy(NULL);
}
END_TEST

/* -------------------------------------------------------------- suite */

static TCase *tcase(const char *name) {
  TCase *tc = tcase_create(name);
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 60);
  return tc;
}

/* What the thread engine cannot do, it refuses; the process engine does. */
START_TEST(test_engine_limits) {
  pp_pool *p = new_pool_n(1);
  pp_map_options mo = {.task_timeout = 5};
  int64_t v = 3;
  const void *arg = &v;
  size_t len = sizeof v;
  pp_future *f = NULL;
  pp_map *m = NULL;
  int rc, want = engine == PP_ENGINE_THREADS ? PP_ENOTSUP : 0;

  ck_assert_int_eq(pp_submit_timeout(p, task_square, &v, sizeof v, 5, &f),
                   want);
  pp_future_release(f);
  ck_assert_int_eq(pp_map_array(p, task_square, &arg, &len, 1, &mo, &m), want);
  pp_map_destroy(m);
  f = submit_i64(p, task_gate, 0);
  while (!pp_future_running(f))
    usleep(1000);
  rc = pp_future_cancel_running(f);
  ck_assert_int_eq(rc, want);
  atomic_store(&page->gate, 1);
  pp_future_result(f, 30, NULL, NULL);
  pp_future_release(f);
  end_pool(p);
}
END_TEST

static Suite *make_pool_suite(void) {
  Suite *s = suite_create(engine == PP_ENGINE_THREADS ? "pool (threads)"
                                                      : "pool (processes)");
  TCase *tc;

  tc = tcase("basics");
  tcase_add_test(tc, test_submit_roundtrip);
  tcase_add_test(tc, test_task_error);
  tcase_add_test(tc, test_strerror);
  tcase_add_test(tc, test_create_args);
  tcase_add_test(tc, test_engine_limits);
  suite_add_tcase(s, tc);

  tc = tcase("map");
  tcase_add_test(tc, test_map_array_order);
  tcase_add_test(tc, test_map_gen_order);
  tcase_add_test(tc, test_map_failed_item);
  suite_add_tcase(s, tc);

  tc = tcase("waiting");
  tcase_add_test(tc, test_as_completed_all);
  tcase_add_test(tc, test_as_completed_some_done);
  tcase_add_test(tc, test_timeouts);
  tcase_add_test(tc, test_wait_modes);
  suite_add_tcase(s, tc);

  tc = tcase("futures");
  tcase_add_test(tc, test_cancel);
  tcase_add_test(tc, test_done_callbacks);
  tcase_add_test(tc, test_format);
  suite_add_tcase(s, tc);

  tc = tcase("shutdown");
  tcase_add_test(tc, test_shutdown_wait);
  tcase_add_test(tc, test_shutdown_cancel);
  tcase_add_test(tc, test_shutdown_nowait);
  suite_add_tcase(s, tc);

  tc = tcase("payloads");
  tcase_add_test(tc, test_payload_empty);
  tcase_add_test(tc, test_payload_max_small);
  tcase_add_test(tc, test_payload_max_default);
  tcase_add_test(tc, test_payload_in_place);
  tcase_add_test(tc, test_payload_in_place_many);
  tcase_add_test(tc, test_payload_many_large_args);
  suite_add_tcase(s, tc);

  tc = tcase("load");
  tcase_set_timeout(tc, 30); /* ~2 s normally, ~7 s with sanitizers */
  tcase_add_test(tc, test_many_map);
  tcase_add_test(tc, test_map_consumer_away);
  tcase_add_test(tc, test_held_submits_run_unasked);
  tcase_add_test(tc, test_held_submits_behind_cancelled);
  tcase_add_test(tc, test_held_submits_run_at_destroy);
  tcase_add_test(tc, test_many_as_completed);
  tcase_add_test(tc, test_threads);
  suite_add_tcase(s, tc);

  tc = tcase("workers");
  tcase_add_test(tc, test_initializer);
  tcase_add_test(tc, test_initializer_fails);
  tcase_add_test(tc, test_start_in_background);
  tcase_add_test(tc, test_start_in_background_init_fails);
  tcase_add_test(tc, test_max_tasks_per_worker);
  suite_add_tcase(s, tc);
  return s;
}

/* Both engines meet the same semantics. */
TU_MAIN_ENGINES(make_pool_suite, engine)
