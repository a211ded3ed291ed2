/*
 * The pool's calls on the MPI engine, run by CTest under
 * `mpirun --oversubscribe -np 3` (one master, two supervisor ranks), over
 * shared memory and over TCP. Ranks 1 and 2 serve inside pp_pool_create()
 * and exit there; everything after it runs on rank 0.
 *
 * One MPI pool lives as long as the program (the header's rule), so the
 * tests share it and run in order, without Check's fork (CK_FORK=no):
 * each leaves the pool idle for the next. Its options exercise what they
 * can at once: an initializer, a retry, max_tasks_per_worker.
 *
 * Tasks on the supervisors' workers share a page with the master through
 * a file (argv[1]) every rank maps: gates and counters, as
 * check_semantics shares an anonymous page with its forked workers. No
 * test measures speed: bounds are ten times or more what the right
 * behaviour takes.
 *
 * `check_mpi FILE manifest` and `check_mpi FILE killrank` are the
 * programs of check_mpi_faults.c, which runs mpirun itself: the first
 * expects pp_pool_create() to refuse (a rank lacks tasks), the second
 * has a task kill its supervisor rank.
 */
#include "procpool.h"
#include "testutil.h"

#include <fcntl.h>
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>

#define WORKERS 2 /* per supervisor rank */
#define RANKS 2
/* The pool's max_payload: larger than any MPI message the engine packs
 * (240 KiB over shared memory, 60 KiB over TCP), so that a task or a
 * result alone can outgrow one. */
#define MAX_PAYLOAD ((size_t)256 << 10)

struct page {
  atomic_int gate;
  atomic_int crashes; /* task_crash_once: runs that crashed */
  atomic_int ran;     /* task_count: runs */
};

static const char *page_path;
static struct page *page; /* mapped in every process that touches it */
static pp_pool *pool;
static int init_value;

/* Maps the shared page (once per process). */
static struct page *shared_page(void) {
  if (!page) {
    int fd = open(page_path, O_RDWR);
    void *m;
    if (fd < 0)
      return NULL;
    m = mmap(NULL, sizeof *page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    page = m == MAP_FAILED ? NULL : m;
  }
  return page;
}

static void sleep_ms(double ms) {
  struct timespec ts = {(time_t)(ms / 1000), (long)(fmod(ms, 1000) * 1e6)};
  nanosleep(&ts, NULL);
}

static int64_t arg_i64(const void *arg, size_t len) {
  int64_t v = 0;
  if (len == sizeof v)
    memcpy(&v, arg, sizeof v);
  return v;
}

/* ------------------------------------------------------------ tasks */

static int task_square(pp_task *t, const void *arg, size_t len) {
  int64_t v = arg_i64(arg, len);
  v *= v;
  return pp_task_return(t, &v, sizeof v);
}

/* Returns the MPI rank the worker serves. */
static int task_rank(pp_task *t, const void *arg, size_t len) {
  const char *r = getenv("OMPI_COMM_WORLD_RANK");
  int64_t v = r ? atoi(r) : -1;
  (void)arg;
  (void)len;
  return pp_task_return(t, &v, sizeof v);
}

static int task_pid(pp_task *t, const void *arg, size_t len) {
  int64_t v = getpid();
  (void)arg;
  (void)len;
  return pp_task_return(t, &v, sizeof v);
}

/* Waits for the gate (30 s at most: longer than becomes_running() polls,
 * so that a task waiting behind a gated one never seems to run), then
 * echoes its argument. */
static int task_gate(pp_task *t, const void *arg, size_t len) {
  struct page *pg = shared_page();
  for (int i = 0; pg && i < 30000 && !atomic_load(&pg->gate); i++)
    sleep_ms(1);
  return pp_task_return(t, arg, len);
}

static int task_sleep(pp_task *t, const void *arg, size_t len) {
  sleep_ms((double)arg_i64(arg, len));
  return pp_task_return(t, arg, len);
}

static int task_fail(pp_task *t, const void *arg, size_t len) {
  (void)arg;
  (void)len;
  return pp_task_fail(t, 42, "failed on purpose");
}

static int task_init_value(pp_task *t, const void *arg, size_t len) {
  int64_t v = init_value;
  (void)arg;
  (void)len;
  return pp_task_return(t, &v, sizeof v);
}

/* Dies of SIGKILL, every time. */
static int task_crash(pp_task *t, const void *arg, size_t len) {
  (void)t;
  (void)arg;
  (void)len;
  raise(SIGKILL);
  return 0;
}

/* Dies of SIGKILL the first time it runs anywhere, then succeeds. */
static int task_crash_once(pp_task *t, const void *arg, size_t len) {
  struct page *pg = shared_page();
  if (pg && atomic_fetch_add(&pg->crashes, 1) == 0)
    raise(SIGKILL);
  return pp_task_return(t, arg, len);
}

/* Counts its runs in the page. */
static int task_count(pp_task *t, const void *arg, size_t len) {
  struct page *pg = shared_page();
  if (pg)
    atomic_fetch_add(&pg->ran, 1);
  return pp_task_return(t, arg, len);
}

static int task_too_big(pp_task *t, const void *arg, size_t len) {
  static char big[MAX_PAYLOAD + 1];
  (void)arg;
  (void)len;
  return pp_task_return(t, big, sizeof big);
}

/* Returns its argument with every byte plus one. */
static int task_bump(pp_task *t, const void *arg, size_t len) {
  static unsigned char out[MAX_PAYLOAD];
  for (size_t i = 0; i < len && i < sizeof out; i++)
    out[i] = (unsigned char)(((const unsigned char *)arg)[i] + 1);
  return pp_task_return(t, out, len);
}

/* Each rank's pid, taken before pp_pool_create(): a worker is a copy of
 * its supervisor rank as the pool started (its parent is the pool's
 * spawner). */
static pid_t rank_pid;

/* Kills the supervisor rank it runs under. */
static int task_kill_supervisor(pp_task *t, const void *arg, size_t len) {
  (void)t;
  (void)arg;
  (void)len;
  kill(rank_pid, SIGKILL);
  sleep_ms(10000);
  return 0;
}

static int not_registered(pp_task *t, const void *arg, size_t len) {
  return pp_task_return(t, arg, len);
}

PP_TASK(square, task_square);
PP_TASK(rank, task_rank);
PP_TASK(pid, task_pid);
PP_TASK(gate, task_gate);
PP_TASK(sleep, task_sleep);
PP_TASK(fail, task_fail);
PP_TASK(init_value, task_init_value);
PP_TASK(crash, task_crash);
PP_TASK(crash_once, task_crash_once);
PP_TASK(too_big, task_too_big);
PP_TASK(bump, task_bump);
PP_TASK(count, task_count);
PP_TASK(kill_supervisor, task_kill_supervisor);

static int init_worker(void *arg) {
  init_value = *(int *)arg;
  return 0;
}

/* ------------------------------------------------------------ helpers */

static pp_future *submit(pp_task_fn fn, int64_t v) {
  pp_future *f = NULL;
  ck_assert_int_eq(pp_submit(pool, fn, &v, sizeof v, &f), 0);
  return f;
}

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

/* Polls until f runs (10 s at most). */
static int becomes_running(pp_future *f) {
  for (int i = 0; i < 10000; i++) {
    if (pp_future_running(f))
      return 1;
    sleep_ms(1);
  }
  return 0;
}

/* Fills every worker with a gated task, running. The pool is idle first
 * for 20 ms, 20 times what makes a rank's window its workers again
 * (mpi_engine.c, STALE_NS): then no rank can hold a gated task it has no
 * worker for, even while another's answers are on their way. */
static void fill_workers(pp_future **gated) {
  sleep_ms(20);
  atomic_store(&page->gate, 0);
  for (int i = 0; i < WORKERS * RANKS; i++)
    gated[i] = submit(task_gate, i);
  for (int i = 0; i < WORKERS * RANKS; i++)
    ck_assert_msg(becomes_running(gated[i]), "gated task %d never ran", i);
}

static void open_gate(pp_future **gated) {
  atomic_store(&page->gate, 1);
  for (int i = 0; i < WORKERS * RANKS; i++) {
    ck_assert_int_eq(result_i64(gated[i]), i);
    pp_future_release(gated[i]);
  }
}

/* ------------------------------------------------------------ tests */

START_TEST(test_submit_result) {
  ck_assert_int_eq(pp_pool_workers(pool), WORKERS * RANKS);
  ck_assert_int_eq(pp_pool_worker_pids(pool, NULL, 0), 0);
  for (int64_t i = 0; i < 10; i++) {
    pp_future *g = submit(task_square, i);
    ck_assert_int_eq(result_i64(g), i * i);
    ck_assert_int_eq(pp_future_state(g), PP_FINISHED);
    pp_future_release(g);
  }
}
END_TEST

/* Every worker of both ranks runs a task at once. */
START_TEST(test_all_workers_run) {
  pp_future *f[WORKERS * RANKS];

  fill_workers(f);
  open_gate(f);
}
END_TEST

/* Long tasks right after tiny ones, while the ranks' windows are still
 * wide, spread one a worker: each goes to the rank holding fewest. (Taken
 * in turn, a first task packed alone and three more together went 3 to 1,
 * and the fourth waited behind a busy rank while the other had a worker
 * idle.) */
START_TEST(test_long_after_tiny) {
  enum { TINY = 3000 };
  static pp_future *tiny[TINY];
  pp_future *gated[WORKERS * RANKS];

  for (int i = 0; i < TINY; i++)
    tiny[i] = submit(task_square, i);
  for (int i = 0; i < TINY; i++) {
    ck_assert_int_eq(result_i64(tiny[i]), (int64_t)i * i);
    pp_future_release(tiny[i]);
  }
  atomic_store(&page->gate, 0);
  for (int i = 0; i < WORKERS * RANKS; i++) {
    gated[i] = submit(task_gate, i);
    if (i == 0)
      sleep_ms(2); /* the first goes alone, the rest together */
  }
  for (int i = 0; i < WORKERS * RANKS; i++)
    ck_assert_msg(becomes_running(gated[i]), "gated task %d never ran", i);
  open_gate(gated);
}
END_TEST

START_TEST(test_result_timeout) {
  pp_future *f;
  double t0;

  atomic_store(&page->gate, 0);
  f = submit(task_gate, 7);
  t0 = tu_now();
  ck_assert_int_eq(pp_future_result(f, 0.2, NULL, NULL), PP_ETIMEDOUT);
  ck_assert(tu_now() - t0 >= 0.19 && tu_now() - t0 < 5);
  atomic_store(&page->gate, 1);
  ck_assert_int_eq(result_i64(f), 7);
  pp_future_release(f);
}
END_TEST

START_TEST(test_cancel) {
  pp_future *gated[WORKERS * RANKS], *f;

  fill_workers(gated);
  f = submit(task_square, 3);
  ck_assert_int_eq(pp_future_cancel(gated[0]), PP_EBUSY);
  ck_assert_int_eq(pp_future_cancel(f), 0);
  ck_assert(pp_future_cancelled(f));
  ck_assert_int_eq(pp_future_result(f, 0, NULL, NULL), PP_ECANCELLED);
  ck_assert_int_eq(pp_future_cancel(f), 0); /* cancelled: done */
  open_gate(gated);
  pp_future_release(f);
}
END_TEST

/* Cancelled tasks do not run, also those a rank already holds: many
 * queued behind busy workers, so that windows fill. (A task cancelled
 * while the word is on its way may start first: the header says so.) */
START_TEST(test_cancelled_never_run) {
  enum { N = 200 };
  pp_future *gated[WORKERS * RANKS], *f[N], *last;

  atomic_store(&page->ran, 0);
  fill_workers(gated);
  for (int i = 0; i < N; i++)
    f[i] = submit(task_count, i);
  sleep_ms(50); /* let batches reach the ranks */
  for (int i = 0; i < N; i++) {
    char was[160];
    int rc;
    pp_future_format(f[i], was, sizeof was);
    rc = pp_future_cancel(f[i]);
    ck_assert_msg(rc == 0, "cancel of task %d: %s, where it was %s", i,
                  pp_errname(rc), was);
  }
  sleep_ms(100); /* the cancels reach the ranks (in about 1 ms) */
  open_gate(gated);
  last = submit(task_sleep, 1);
  result_i64(last);
  sleep_ms(200);
  int ran = atomic_load(&page->ran);
  ck_assert_int_eq(ran, 0);
  for (int i = 0; i < N; i++)
    pp_future_release(f[i]);
  pp_future_release(last);
}
END_TEST

START_TEST(test_cancel_running) {
  pp_future *f, *other;
  double t0;

  atomic_store(&page->gate, 0);
  f = submit(task_gate, 1);
  other = submit(task_sleep, 100);
  ck_assert(becomes_running(f));
  t0 = tu_now();
  ck_assert_int_eq(pp_future_cancel_running(f), 0);
  ck_assert_int_eq(pp_future_result(f, 30, NULL, NULL), PP_ECANCELLED);
  ck_assert(tu_now() - t0 < 5); /* not the gate's 10 s */
  ck_assert_int_eq(result_i64(other), 100);
  ck_assert_int_eq(pp_future_cancel_running(f), 0); /* cancelled, done */
  pp_future_release(f);
  pp_future_release(other);
}
END_TEST

START_TEST(test_task_timeout) {
  pp_future *f, *g;
  int64_t ms = 20000;
  double t0 = tu_now();

  ck_assert_int_eq(pp_submit_timeout(pool, task_sleep, &ms, 8, 0.3, &f), 0);
  ms = 10;
  ck_assert_int_eq(pp_submit_timeout(pool, task_sleep, &ms, 8, 10, &g), 0);
  ck_assert_int_eq(pp_future_result(f, 30, NULL, NULL), PP_EDEADLINE);
  ck_assert(tu_now() - t0 < 10);
  ck_assert_msg(strstr(pp_future_message(f), "timeout"), "message: %s",
                pp_future_message(f));
  ck_assert_int_eq(result_i64(g), 10);
  pp_future_release(f);
  pp_future_release(g);
}
END_TEST

START_TEST(test_task_errors) {
  pp_future *f = submit(task_fail, 0), *g = submit(task_too_big, 0);

  ck_assert_int_eq(pp_future_result(f, 30, NULL, NULL), PP_ETASK);
  ck_assert_int_eq(pp_future_task_code(f), 42);
  ck_assert_str_eq(pp_future_message(f), "failed on purpose");
  ck_assert_int_eq(pp_future_result(g, 30, NULL, NULL), PP_ETOOBIG);
  pp_future_release(f);
  pp_future_release(g);
}
END_TEST

START_TEST(test_unregistered) {
  pp_future *f = NULL;
  int64_t v = 1;
  pp_map *m;
  const void *args[1] = {&v};
  size_t lens[1] = {8};

  ck_assert_int_eq(pp_submit(pool, not_registered, &v, 8, &f),
                   PP_EUNREGISTERED);
  ck_assert_ptr_null(f);
  ck_assert_str_eq(pp_task_name(task_square), "square");
  ck_assert_ptr_null(pp_task_name(not_registered));
  m = (pp_map *)&v; /* a map is refused at the call, as a submit is */
  ck_assert_int_eq(pp_map_array(pool, not_registered, args, lens, 1, NULL, &m),
                   PP_EUNREGISTERED);
  ck_assert_ptr_null(m);
}
END_TEST

static void count_cb(pp_future *f, void *arg) {
  (void)f;
  atomic_fetch_add((atomic_int *)arg, 1);
}

START_TEST(test_callbacks) {
  atomic_int called = 0;
  pp_future *f[20];

  for (int i = 0; i < 20; i++) {
    f[i] = submit(task_square, i);
    ck_assert_int_eq(pp_future_add_done_callback(f[i], count_cb, &called), 0);
  }
  for (int i = 0; i < 20; i++)
    result_i64(f[i]);
  for (int i = 0; i < 1000 && atomic_load(&called) < 20; i++)
    sleep_ms(1);
  ck_assert_int_eq(atomic_load(&called), 20);
  ck_assert_int_eq(pp_future_add_done_callback(f[0], count_cb, &called), 0);
  ck_assert_int_eq(atomic_load(&called), 21); /* at once when done */
  for (int i = 0; i < 20; i++)
    pp_future_release(f[i]);
}
END_TEST

START_TEST(test_wait) {
  pp_future *f[2];
  unsigned char done[2];

  atomic_store(&page->gate, 0);
  f[0] = submit(task_gate, 0);
  f[1] = submit(task_square, 5);
  ck_assert_int_eq(pp_wait(f, 2, 30, PP_FIRST_COMPLETED, done), 1);
  ck_assert(done[1] && !done[0]);
  ck_assert_int_eq(pp_wait(f, 2, 0.1, PP_ALL_COMPLETED, done), 1);
  atomic_store(&page->gate, 1);
  ck_assert_int_eq(pp_wait(f, 2, 30, PP_ALL_COMPLETED, done), 2);
  pp_future_release(f[0]);
  pp_future_release(f[1]);
}
END_TEST

START_TEST(test_as_completed) {
  enum { N = 500 };
  static pp_future *f[N];
  static char yielded[N];
  pp_completed *it;
  pp_future *g;
  int n = 0;

  memset(yielded, 0, sizeof yielded);
  for (int i = 0; i < N; i++)
    f[i] = submit(task_square, i);
  ck_assert_int_eq(pp_as_completed(f, N, 60, &it), 0);
  while (pp_completed_next(it, &g) == 0) {
    for (int i = 0; i < N; i++)
      if (f[i] == g) {
        ck_assert(!yielded[i]);
        yielded[i] = 1;
        ck_assert_int_eq(result_i64(g), (int64_t)i * i);
      }
    n++;
  }
  ck_assert_int_eq(n, N);
  pp_completed_destroy(it);
  for (int i = 0; i < N; i++)
    pp_future_release(f[i]);
}
END_TEST

/* Maps squares over 0..n-1 with the given chunk and window. */
static void check_map(size_t n, size_t chunk, size_t window) {
  int64_t *v = calloc(n + 1, sizeof *v);
  const void **args = calloc(n + 1, sizeof *args);
  size_t *lens = calloc(n + 1, sizeof *lens);
  pp_map_options mo = {.chunksize = chunk, .window = window};
  const void *data;
  size_t len;
  pp_map *m;

  for (size_t i = 0; i < n; i++) {
    v[i] = (int64_t)i;
    args[i] = &v[i];
    lens[i] = 8;
  }
  ck_assert_int_eq(pp_map_array(pool, task_square, args, lens, n, &mo, &m), 0);
  for (size_t i = 0; i < n; i++) {
    int64_t r;
    ck_assert_int_eq(pp_map_next(m, &data, &len), 0);
    ck_assert_uint_eq(pp_map_index(m), i);
    memcpy(&r, data, 8);
    ck_assert_int_eq(r, (int64_t)(i * i));
  }
  ck_assert_int_eq(pp_map_next(m, &data, &len), PP_EOF);
  pp_map_destroy(m);
  free(v);
  free(args);
  free(lens);
}

START_TEST(test_map) {
  check_map(2000, 1, 0);
  check_map(100000, 1000, 0);
  check_map(10000, 100, 500);
  check_map(0, 10, 0);
}
END_TEST

/* Whether data holds len bytes of (i + j) % 251 + 1 for byte j. */
static int bumped(const void *data, size_t len, size_t want, size_t i) {
  const unsigned char *d = data;
  if (len != want)
    return 0;
  for (size_t j = 0; j < len; j++)
    if (d[j] != (unsigned char)((i + j) % 251 + 1))
      return 0;
  return 1;
}

/* Tasks and results larger than any one MPI message, alone and in
 * chunks that mix them with small ones: each goes whole, in order. */
START_TEST(test_large_payloads) {
  enum { N = 24 };
  static unsigned char bytes[N][MAX_PAYLOAD];
  const void *args[N], *data;
  size_t lens[N], len;
  pp_map_options mo = {.chunksize = 4};
  pp_future *f;
  pp_map *m;

  for (size_t i = 0; i < N; i++) {
    lens[i] = i % 3 == 0 ? MAX_PAYLOAD : i % 3 == 1 ? 100000 : 8;
    for (size_t j = 0; j < lens[i]; j++)
      bytes[i][j] = (unsigned char)((i + j) % 251);
    args[i] = bytes[i];
  }
  ck_assert_int_eq(pp_submit(pool, task_bump, args[0], lens[0], &f), 0);
  ck_assert_int_eq(pp_future_result(f, 30, &data, &len), 0);
  ck_assert(bumped(data, len, lens[0], 0));
  pp_future_release(f);
  ck_assert_int_eq(pp_map_array(pool, task_bump, args, lens, N, &mo, &m), 0);
  for (size_t i = 0; i < N; i++) {
    ck_assert_int_eq(pp_map_next(m, &data, &len), 0);
    ck_assert_msg(bumped(data, len, lens[i], i), "item %zu came back wrong", i);
  }
  ck_assert_int_eq(pp_map_next(m, &data, &len), PP_EOF);
  pp_map_destroy(m);
}
END_TEST

START_TEST(test_initializer) {
  for (int i = 0; i < 8; i++) {
    pp_future *f = submit(task_init_value, 0);
    ck_assert_int_eq(result_i64(f), 77);
    pp_future_release(f);
  }
}
END_TEST

START_TEST(test_max_tasks_per_worker) {
  enum { N = 40 };
  int64_t pids[N];
  int distinct = 0;

  for (int i = 0; i < N; i++) {
    pp_future *f = submit(task_pid, 0);
    pids[i] = result_i64(f);
    pp_future_release(f);
  }
  for (int i = 0; i < N; i++) {
    int first = 1;
    for (int j = 0; j < i; j++)
      first &= pids[j] != pids[i];
    distinct += first;
  }
  /* 4 workers, replaced after 5 tasks each: at least 8 pids for 40 */
  ck_assert_msg(distinct >= N / 5, "%d distinct workers", distinct);
}
END_TEST

START_TEST(test_crash_fails_only_its_task) {
  pp_future *crash = submit(task_crash, 0), *ok[8];

  for (int i = 0; i < 8; i++)
    ok[i] = submit(task_sleep, 20);
  ck_assert_int_eq(pp_future_result(crash, 30, NULL, NULL), PP_ECRASHED);
  ck_assert_msg(strstr(pp_future_message(crash), "rank "), "message: %s",
                pp_future_message(crash));
  for (int i = 0; i < 8; i++) {
    ck_assert_int_eq(result_i64(ok[i]), 20);
    pp_future_release(ok[i]);
  }
  pp_future_release(crash);
}
END_TEST

START_TEST(test_crash_is_retried) {
  pp_future *f;

  atomic_store(&page->crashes, 0);
  f = submit(task_crash_once, 9);
  ck_assert_int_eq(result_i64(f), 9); /* retries = 1 */
  ck_assert_int_eq(atomic_load(&page->crashes), 2);
  pp_future_release(f);
}
END_TEST

START_TEST(test_shutdown) {
  pp_future *f = submit(task_sleep, 100), *g = NULL;

  ck_assert_int_eq(pp_pool_shutdown(pool, 1, 0), 0);
  ck_assert(pp_future_done(f));
  ck_assert_int_eq(result_i64(f), 100);
  ck_assert_int_eq(pp_submit(pool, task_square, &(int64_t){1}, 8, &g),
                   PP_ESHUTDOWN);
  pp_future_release(f);
}
END_TEST

/* ------------------------------------------------------------ main */

/* The master's half of the manifest test: a rank lacks tasks. */
static int expect_refusal(void) {
  pp_options o;
  pp_pool *p = NULL;
  int rc;

  pp_options_init(&o);
  o.engine = PP_ENGINE_MPI;
  o.workers = 1;
  rc = pp_pool_create(&p, &o);
  printf("pp_pool_create: %s\n", pp_errname(rc));
  return rc == PP_EUNREGISTERED && !p ? 0 : 1;
}

/* The master's half of the rank-death test: a task kills its supervisor
 * rank, and the job must end (Open MPI aborts it); this never returns. */
static int kill_a_rank(void) {
  pp_options o;
  pp_pool *p = NULL;
  pp_future *f;

  pp_options_init(&o);
  o.engine = PP_ENGINE_MPI;
  o.workers = 1;
  rank_pid = getpid();
  if (pp_pool_create(&p, &o) != 0 ||
      pp_submit(p, task_kill_supervisor, NULL, 0, &f) != 0)
    return 1;
  pp_future_result(f, 120, NULL, NULL);
  printf("the job outlived its rank\n");
  return 1;
}

/* Makes the page file every rank maps (rank 0 only: the others open it
 * when a task first needs it, after the pool started). */
static void make_page(void) {
  const char *r = getenv("OMPI_COMM_WORLD_RANK");
  int fd;

  if (r && strcmp(r, "0") != 0)
    return;
  fd = open(page_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (fd < 0 || ftruncate(fd, sizeof *page) != 0) {
    perror(page_path);
    exit(2);
  }
  close(fd);
  if (!shared_page())
    exit(2);
}

int main(int argc, char **argv) {
  static int init_arg = 77;
  pp_options o;
  Suite *s;
  SRunner *sr;
  TCase *tc;
  int failed, rc;

  if (argc < 2) {
    fprintf(stderr, "usage: mpirun -np 3 %s PAGE_FILE [manifest]\n", argv[0]);
    return 2;
  }
  page_path = argv[1];
  if (argc > 2 && strcmp(argv[2], "manifest") == 0)
    return expect_refusal();
  if (argc > 2 && strcmp(argv[2], "killrank") == 0)
    return kill_a_rank();
  make_page();
  pp_options_init(&o);
  o.engine = PP_ENGINE_MPI;
  o.workers = WORKERS;
  o.initializer = init_worker;
  o.initarg = &init_arg;
  o.retries = 1;
  o.max_tasks_per_worker = 5;
  o.max_payload = MAX_PAYLOAD;
  if ((rc = pp_pool_create(&pool, &o)) != 0) {
    fprintf(stderr, "pp_pool_create: %s\n", pp_strerror(rc));
    return 1;
  }
  s = suite_create("mpi");
  tc = tcase_create("calls");
  tcase_set_timeout(tc, 0); /* without fork; CTest bounds the run */
  tcase_add_test(tc, test_submit_result);
  tcase_add_test(tc, test_all_workers_run);
  tcase_add_test(tc, test_long_after_tiny);
  tcase_add_test(tc, test_result_timeout);
  tcase_add_test(tc, test_cancel);
  tcase_add_test(tc, test_cancelled_never_run);
  tcase_add_test(tc, test_cancel_running);
  tcase_add_test(tc, test_task_timeout);
  tcase_add_test(tc, test_task_errors);
  tcase_add_test(tc, test_unregistered);
  tcase_add_test(tc, test_callbacks);
  tcase_add_test(tc, test_wait);
  tcase_add_test(tc, test_as_completed);
  tcase_add_test(tc, test_map);
  tcase_add_test(tc, test_large_payloads);
  tcase_add_test(tc, test_initializer);
  tcase_add_test(tc, test_max_tasks_per_worker);
  tcase_add_test(tc, test_crash_fails_only_its_task);
  tcase_add_test(tc, test_crash_is_retried);
  tcase_add_test(tc, test_shutdown); /* last: the pool takes no more */
  suite_add_tcase(s, tc);
  sr = srunner_create(s);
  srunner_set_fork_status(sr, CK_NOFORK);
  srunner_run_all(sr, CK_NORMAL);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  pp_pool_destroy(pool);
  unlink(page_path);
  return failed == 0 ? 0 : 1;
}
