/*
 * The run modes of the primes tool: the tasks the workers run, the signals
 * that stop a run, and the three ways of running (in the master alone, an
 * ordered map, or results as they complete).
 *
 * DESIGN
 * The cursor feeds pp_map_gen() (ordered), a batch of numbers per task:
 * one for small inputs under trial division, CHUNKSIZE for large ones, up
 * to MAX_BATCH for Miller-Rabin, whose microsecond per number would
 * otherwise be lost in dispatch. --mode completed submits one number per
 * future, in two alternating batches of futures drained by
 * pp_as_completed() (so the pool never runs dry at a batch boundary). For
 * each number a task sends back a fixed record: the number, whether it is
 * prime, and the seconds the worker spent on it.
 *
 * Ctrl-C sets a flag that the main loop checks between results, and also a
 * word in a page shared with the workers (mapped before they are forked):
 * trial division reads it now and then and gives up, so that a pool busy on
 * long numbers winds down in milliseconds instead of finishing them. The
 * tool then destroys the map and the pool, flushes the whole lines it has
 * and exits with status 130. SIGTERM and SIGHUP do the same (143, 129).
 *
 * --task-timeout kills a worker whose task runs too long; in map mode with
 * batches the timeout bounds a whole batch.
 */
#include "primes.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define CHUNKSIZE 256  /* trial division: numbers per task, large inputs */
#define MAX_BATCH 1024 /* Miller-Rabin: most numbers per task */
#define BATCH 1024     /* futures per as_completed batch */

_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "the stop word must be lock-free");

/* The futures of one as_completed batch and their numbers. */
struct batch {
  pp_future *f[BATCH];
  uint64_t n[BATCH];
  size_t count;
};

volatile sig_atomic_t interrupted;
static atomic_int *stop_word; /* shared with the workers */

double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------ tasks */

/* Checks n with the chosen algorithm and times it. */
static int timed_check(uint64_t n, int use_mr, struct result *r) {
  double t0 = now();
  int rc = use_mr ? pc_miller_rabin(n) : pc_trial_division(n, stop_word);

  memset(r, 0, sizeof *r);
  r->n = n;
  r->prime = rc == PC_PRIME;
  r->elapsed = now() - t0;
  return rc;
}

/* The body of both tasks: a batch of numbers in (8 bytes each), a struct
 * result for each out. */
static int check_task(pp_task *task, const void *arg, size_t len, int use_mr) {
  struct result r[MAX_BATCH];
  size_t count = len / sizeof(uint64_t);
  uint64_t n;

  if (len % sizeof n || count == 0 || count > MAX_BATCH)
    return pp_task_fail(task, EINVAL, "expected 1 to %d numbers, got %zu bytes",
                        MAX_BATCH, len);
  for (size_t i = 0; i < count; i++) {
    memcpy(&n, (const char *)arg + i * sizeof n, sizeof n);
    if (timed_check(n, use_mr, &r[i]) == PC_STOPPED)
      return pp_task_fail(task, EINTR, "interrupted");
  }
  return pp_task_return(task, r, count * sizeof r[0]);
}

/* The two tasks: the algorithm is chosen by which function is submitted,
 * so that workers need no state of their own. */
static int trial_task(pp_task *task, const void *arg, size_t len) {
  return check_task(task, arg, len, 0);
}

static int mr_task(pp_task *task, const void *arg, size_t len) {
  return check_task(task, arg, len, 1);
}

/* ---------------------------------------------------------- signals */

/* Ctrl-C, SIGTERM, SIGHUP: the main loop sees `interrupted`, running
 * trial divisions see the stop word. Only async-signal-safe stores. */
static void on_signal(int sig) {
  interrupted = sig;
  atomic_store(stop_word, 1);
}

/* Maps the stop word where forked workers see it, then catches the
 * signals that stop a run (what Ctrl-C, kill, timeout, systemd and
 * container stops send), so that each ends the run the same way. */
static int catch_signals(void) {
  static const int stoppers[] = {SIGINT, SIGTERM, SIGHUP};
  struct sigaction sa;
  void *page = mmap(NULL, sizeof *stop_word, PROT_READ | PROT_WRITE,
                    MAP_SHARED | MAP_ANONYMOUS, -1, 0);

  if (page == MAP_FAILED)
    return -1;
  stop_word = page;
  atomic_init(stop_word, 0);
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  for (size_t i = 0; i < sizeof stoppers / sizeof stoppers[0]; i++)
    if (sigaction(stoppers[i], &sa, NULL) != 0)
      return -1;
  return 0;
}

/* After a run stopped by a signal: the whole lines printed so far go out,
 * the reason goes to stderr, and the status is 128 + the signal. */
int stopped_by_signal(int progress) {
  const char *how = interrupted == SIGTERM  ? " by SIGTERM"
                    : interrupted == SIGHUP ? " by SIGHUP"
                                            : "";

  fflush(stdout);
  fprintf(stderr, "%sprimes: interrupted%s\n", progress ? "\r\033[K" : "", how);
  return 128 + interrupted;
}

/* ------------------------------------------------------------ modes */

/* The baseline: every number in this process, in order. */
static int run_sequential(const struct config *cfg, const struct inputs *in,
                          struct output *o) {
  struct cursor cur = {.in = in};
  struct result r;
  uint64_t n;

  while (!interrupted && cursor_next(&cur, &n)) {
    if (timed_check(n, cfg->use_mr, &r) == PC_STOPPED)
      break;
    output_row(o, &r);
  }
  return interrupted ? EXIT_INTERRUPTED : 0;
}

/* A failure of one item, after which a map goes on. */
static int is_item_failure(int rc) {
  return rc == PP_ETASK || rc == PP_ECRASHED || rc == PP_EDEADLINE ||
         rc == PP_ECANCELLED || rc == PP_ETOOBIG;
}

/* The map's generator: the cursor's numbers, `size` at a time. */
struct batches {
  struct cursor cur;
  size_t size;
  uint64_t n[MAX_BATCH];
};

/* pp_gen_fn over the batches. */
static int gen_batches(void *state, const void **arg, size_t *len) {
  struct batches *g = state;
  size_t k = 0;

  while (k < g->size && cursor_next(&g->cur, &g->n[k]))
    k++;
  *arg = g->n;
  *len = k * sizeof g->n[0];
  return k > 0;
}

/* Numbers per task: trial division one at a time for small inputs (so
 * that each shows as it comes and the workers balance) and CHUNKSIZE for
 * large ones; Miller-Rabin, a microsecond a number, in batches of up to
 * MAX_BATCH, about eight per worker. */
static size_t batch_size(const struct config *cfg, uint64_t count,
                         int workers) {
  uint64_t size;

  if (!cfg->use_mr)
    return count > CHUNK_THRESHOLD ? CHUNKSIZE : 1;
  size = count / ((uint64_t)workers * 8);
  return size < 1 ? 1 : size > MAX_BATCH ? MAX_BATCH : (size_t)size;
}

/* Prints the results of one batch; -1 if they are malformed. */
static int output_batch(struct output *o, const void *data, size_t len) {
  if (len == 0 || len % sizeof(struct result))
    return -1;
  for (size_t off = 0; off < len; off += sizeof(struct result))
    output_row(o, (const char *)data + off);
  return 0;
}

/* Names each number of the failed batch at `index`. */
static void report_batch(const struct inputs *in, size_t size, size_t index,
                         int rc, const char *msg) {
  uint64_t first = (uint64_t)index * size;

  for (uint64_t i = first; i < first + size && i < in->count; i++)
    report_failure(inputs_at(in, i), rc, msg);
}

/* --mode map: ordered results over the cursor, in batches. */
static int run_map(pp_pool *pool, const struct config *cfg,
                   const struct inputs *in, struct output *o) {
  struct batches g;
  pp_map_options mo = {.task_timeout = cfg->task_timeout};
  pp_task_fn fn = cfg->use_mr ? mr_task : trial_task;
  int workers = pp_pool_workers(pool);
  const void *data;
  size_t len;
  pp_map *map;
  int rc, status = 0;

  g.cur = (struct cursor){.in = in};
  g.size = batch_size(cfg, in->count, workers);
  if (g.size > 1)
    mo.window = 4 * (size_t)workers;
  if ((rc = pp_map_gen(pool, fn, gen_batches, &g, &mo, &map)) != 0) {
    fprintf(stderr, "primes: cannot start the map: %s\n", pp_strerror(rc));
    return EXIT_FAILED;
  }
  while (!interrupted && (rc = pp_map_next(map, &data, &len)) != PP_EOF) {
    if (interrupted)
      break;
    if (rc == 0 && output_batch(o, data, len) == 0)
      continue;
    status = EXIT_FAILED;
    if (rc != 0 && !is_item_failure(rc)) {
      fprintf(stderr, "primes: the map failed: %s\n", pp_strerror(rc));
      break;
    }
    report_batch(in, g.size, pp_map_index(map), rc ? rc : PP_ETASK,
                 pp_map_message(map));
  }
  pp_map_destroy(map);
  return interrupted ? EXIT_INTERRUPTED : status;
}

/* Submits up to BATCH numbers from the cursor. */
static int submit_batch(pp_pool *pool, pp_task_fn fn, double timeout,
                        struct cursor *cur, struct batch *b) {
  int rc;

  while (b->count < BATCH && !interrupted &&
         cursor_next(cur, &b->n[b->count])) {
    rc = pp_submit_timeout(pool, fn, &b->n[b->count], sizeof b->n[0], timeout,
                           &b->f[b->count]);
    if (rc != 0)
      return rc;
    b->count++;
  }
  return 0;
}

/* Drops our references; tasks still pending go on (or are cancelled by a
 * shutdown). */
static void release_batch(struct batch *b) {
  for (size_t i = 0; i < b->count; i++)
    pp_future_release(b->f[i]);
  b->count = 0;
}

/* The number of a future of the batch, to name it when it failed. */
static uint64_t batch_number(const struct batch *b, const pp_future *f) {
  for (size_t i = 0; i < b->count; i++)
    if (b->f[i] == f)
      return b->n[i];
  return 0;
}

/* Prints the batch's results as they complete. Returns 0 or the PP_E* that
 * stopped it. */
static int drain_batch(struct batch *b, struct output *o, int *status) {
  pp_completed *it;
  pp_future *f;
  const void *data;
  size_t len;
  int rc;

  if (b->count == 0)
    return 0;
  if ((rc = pp_as_completed(b->f, b->count, PP_FOREVER, &it)) != 0)
    return rc;
  while (!interrupted && (rc = pp_completed_next(it, &f)) == 0) {
    if (interrupted)
      break;
    rc = pp_future_result(f, 0, &data, &len);
    if (rc == 0 && len == sizeof(struct result)) {
      output_row(o, data);
      continue;
    }
    *status = EXIT_FAILED;
    report_failure(batch_number(b, f), rc, pp_future_message(f));
  }
  pp_completed_destroy(it);
  return rc == PP_EOF || interrupted ? 0 : rc;
}

/* --mode completed: one batch drains while the next one runs. */
static int run_completed(pp_pool *pool, pp_task_fn fn, double timeout,
                         const struct inputs *in, struct output *o) {
  static struct batch b[2];
  struct cursor cur = {.in = in};
  int rc, status = 0, i = 0;

  rc = submit_batch(pool, fn, timeout, &cur, &b[0]);
  while (rc == 0 && b[i].count && !interrupted) {
    rc = submit_batch(pool, fn, timeout, &cur, &b[1 - i]);
    if (rc == 0)
      rc = drain_batch(&b[i], o, &status);
    release_batch(&b[i]);
    i = 1 - i;
  }
  release_batch(&b[0]);
  release_batch(&b[1]);
  if (interrupted) {
    pp_pool_shutdown(pool, 0, 1);
    return EXIT_INTERRUPTED;
  }
  if (rc != 0) {
    fprintf(stderr, "primes: cannot go on: %s\n", pp_strerror(rc));
    status = EXIT_FAILED;
  }
  return status;
}

/* Catches the signals, then starts the pool with `opts` and the workers
 * and retries of cfg; with --sequential, *pool stays NULL. Returns 0, or
 * -1 after saying why. */
int start_pool(const struct config *cfg, pp_options *opts, pp_pool **pool) {
  int rc;

  *pool = NULL;
  if (catch_signals() != 0) {
    fprintf(stderr, "primes: cannot catch Ctrl-C: %s\n", strerror(errno));
    return -1;
  }
  opts->workers = cfg->workers;
  opts->retries = cfg->retries;
  if (!cfg->sequential && (rc = pp_pool_create(pool, opts)) != 0) {
    fprintf(stderr, "primes: cannot start the workers: %s\n", pp_strerror(rc));
    return -1;
  }
  return 0;
}

/* Starts the pool (unless sequential), runs the chosen mode, prints. */
int run(const struct config *cfg, const struct inputs *in) {
  pp_task_fn fn = cfg->use_mr ? mr_task : trial_task;
  pp_pool *pool;
  pp_options opts;
  struct output o;
  double t0 = now();
  int status;

  pp_options_init(&opts);
  if (start_pool(cfg, &opts, &pool) != 0)
    return EXIT_FAILED;
  output_init(&o, cfg, in->count);
  output_begin(&o, pool ? pp_pool_workers(pool) : 0);
  if (cfg->sequential)
    status = run_sequential(cfg, in, &o);
  else if (cfg->mode == MODE_MAP)
    status = run_map(pool, cfg, in, &o);
  else
    status = run_completed(pool, fn, cfg->task_timeout, in, &o);
  pp_pool_destroy(pool);
  if (status == EXIT_INTERRUPTED)
    return stopped_by_signal(o.progress);
  output_end(&o, now() - t0);
  return status;
}
