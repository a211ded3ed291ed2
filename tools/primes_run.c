/*
 * The run modes of the primes tool: the tasks the workers run, the signals
 * that stop a run, and the three ways of running (in the master alone, an
 * ordered map, or results as they complete).
 *
 * DESIGN
 * The cursor feeds pp_map_gen() (ordered), a batch of numbers per task:
 * one for small inputs under trial division, CHUNKSIZE for large ones, up
 * to MAX_BATCH for Miller-Rabin, whose fraction of a microsecond per
 * number would otherwise be lost in dispatch (and large batches let the
 * workers run on while the master, on a shared core, is descheduled).
 * A batch travels as spans of consecutive numbers (struct span), so that
 * the master walks a range a span at a time, not a number at a time, and
 * a batch of a range is 16 bytes, not 8 a number, to copy through the
 * pool. --mode completed submits one number per future, in two alternating
 * batches of futures drained by pp_as_completed() (so the pool never runs
 * dry at a batch boundary). Either way a task checks and times each of
 * its numbers and sends back their rows as text, already in the run's
 * format (see ROWS_HEADER), so that the master of a map over tens of
 * millions of numbers only writes bytes in order. --sequential runs the
 * same batches through the same code in the master, so that it is the
 * baseline of exactly the work the workers share.
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

#define CHUNKSIZE 256   /* trial division: numbers per task, large inputs */
#define MAX_BATCH 16384 /* Miller-Rabin: most numbers per task */
#define BATCH 1024      /* futures per as_completed batch */

/* The largest record of a task: MAX_BATCH rows of the longest kind. */
#define RECORD_MAX (ROWS_HEADER + (size_t)MAX_BATCH * PC_ROW_MAX)

_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "the stop word must be lock-free");

/* The futures of one as_completed batch and their numbers. */
struct batch {
  pp_future *f[BATCH];
  uint64_t n[BATCH];
  size_t count;
};

volatile sig_atomic_t interrupted;
static atomic_int *stop_word; /* shared with the workers */

/* The format the tasks write their rows in. Set by start_pool() before the
 * pool starts: the workers are forked after the options are parsed and this
 * is set, so each inherits its value, as the tasks already rely on for the
 * stop word's mapping; MPI ranks parse the same command line and set it in
 * their own start_pool() before forking theirs. */
static enum format task_format;

double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------ tasks */

/* The record of a batch run by --sequential; a task builds its own in its
 * result buffer (pp_task_buffer()), so that the pool takes it uncopied. */
static char record[RECORD_MAX];

/* The numbers of one batch, its outcomes and their times: one batch at a
 * time in each worker process or thread (--engine threads), so these are
 * per thread. */
static _Thread_local uint64_t number[MAX_BATCH];
static _Thread_local double elapsed[MAX_BATCH];
static _Thread_local uint8_t prime[MAX_BATCH];

/* Checks the numbers of span `s`, the batch's rows `done` onwards, with one
 * clock reading after each (the end of one number's time is the start of
 * the next one's: *t0, IN/OUT). Stops early when a trial division is
 * stopped by a signal (*stopped, OUT). Returns the rows done in all. */
static size_t check_span(struct span s, size_t done, int use_mr, double *t0,
                         int *stopped) {
  double t1;
  int rc;

  for (uint64_t i = 0; i < s.count; i++, done++) {
    number[done] = s.first + i;
    rc = use_mr ? pc_miller_rabin(number[done])
                : pc_trial_division(number[done], stop_word);
    if (rc == PC_STOPPED) {
      *stopped = 1;
      break;
    }
    t1 = now();
    elapsed[done] = t1 - *t0;
    prime[done] = rc == PC_PRIME;
    *t0 = t1;
  }
  return done;
}

/* Checks the `nspans` spans at `spans` (16 bytes each, in any alignment,
 * MAX_BATCH numbers at most) and writes the record of the numbers done at
 * `out` (room for ROWS_HEADER + PC_ROW_MAX bytes a number): all of them,
 * or those before a trial division stopped by a signal (*stopped, OUT).
 * The numbers are all checked first, then formatted, so that formatting is
 * in no number's time. Returns the record's length, or 0 if no number was
 * done. */
static size_t check_batch(char *out, const void *spans, size_t nspans,
                          int use_mr, int *stopped) {
  size_t done = 0, off = ROWS_HEADER;
  double t0 = now();
  struct span s;
  uint32_t rows;

  *stopped = 0;
  for (size_t i = 0; i < nspans && !*stopped; i++) {
    memcpy(&s, (const char *)spans + i * sizeof s, sizeof s);
    done = check_span(s, done, use_mr, &t0, stopped);
  }
  for (size_t i = 0; i < done; i++)
    off +=
        pc_format_row(out + off, task_format, number[i], prime[i], elapsed[i]);
  rows = (uint32_t)done;
  memcpy(out, &rows, sizeof rows);
  return done ? off : 0;
}

/* The numbers of the `nspans` spans at `spans`, or 0 if a span is empty,
 * wraps past 2^64-1, or they hold more than MAX_BATCH numbers. */
static uint64_t spans_numbers(const void *spans, size_t nspans) {
  uint64_t total = 0;
  struct span s;

  for (size_t i = 0; i < nspans; i++) {
    memcpy(&s, (const char *)spans + i * sizeof s, sizeof s);
    if (s.count == 0 || s.count > MAX_BATCH - total ||
        s.first + (s.count - 1) < s.first)
      return 0;
    total += s.count;
  }
  return total;
}

/* The body of both tasks: a batch of spans in, their record out, built in
 * the task's result buffer. */
static int check_task(pp_task *task, const void *arg, size_t len, int use_mr) {
  size_t nspans = len / sizeof(struct span), rlen;
  uint64_t numbers = len % sizeof(struct span) ? 0 : spans_numbers(arg, nspans);
  void *out;
  int stopped, rc;

  if (numbers == 0)
    return pp_task_fail(task, EINVAL,
                        "expected 16-byte spans of 1 to %d numbers in all, "
                        "got %zu bytes",
                        MAX_BATCH, len);
  rc = pp_task_buffer(task, ROWS_HEADER + (size_t)numbers * PC_ROW_MAX, &out);
  if (rc != 0)
    return rc;
  rlen = check_batch(out, arg, nspans, use_mr, &stopped);
  if (stopped)
    return pp_task_fail(task, EINTR, "interrupted");
  return pp_task_return(task, out, rlen);
}

/* The two tasks: the algorithm is chosen by which function is submitted,
 * so that workers need no state of their own. */
static int trial_task(pp_task *task, const void *arg, size_t len) {
  return check_task(task, arg, len, 0);
}

static int mr_task(pp_task *task, const void *arg, size_t len) {
  return check_task(task, arg, len, 1);
}

/* Named, so that MPI ranks find them (harmless on the other engines). */
PP_TASK(trial, trial_task);
PP_TASK(mr, mr_task);

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

/* A failure of one item, after which a map goes on. */
static int is_item_failure(int rc) {
  return rc == PP_ETASK || rc == PP_ECRASHED || rc == PP_EDEADLINE ||
         rc == PP_ECANCELLED || rc == PP_ETOOBIG;
}

/* The map's generator: the cursor's numbers, `size` at a time, as spans
 * (consecutive listed numbers join one span). */
struct batches {
  struct cursor cur;
  size_t size;
  struct span spans[MAX_BATCH];
};

/* pp_gen_fn over the batches. */
static int gen_batches(void *state, const void **arg, size_t *len) {
  struct batches *g = state;
  size_t k = 0, nspans = 0;
  struct span s, *last = NULL;

  while (k < g->size && cursor_span(&g->cur, g->size - k, &s)) {
    k += s.count;
    if (last && last->first + last->count == s.first && s.first > last->first)
      last->count += s.count;
    else
      *(last = &g->spans[nspans++]) = s;
  }
  *arg = g->spans;
  *len = nspans * sizeof g->spans[0];
  return k > 0;
}

/* Numbers per task: trial division one at a time for small inputs (so
 * that each shows as it comes and the workers balance) and CHUNKSIZE for
 * large ones; Miller-Rabin, well under a microsecond a number, in batches
 * of up to MAX_BATCH, about eight per worker. Never more than the rows
 * that fit in the pool's max_payload (all of MAX_BATCH by default). */
static size_t batch_size(const struct config *cfg, uint64_t count, int workers,
                         size_t max_payload) {
  uint64_t size, fit = (max_payload - ROWS_HEADER) / PC_ROW_MAX;
  uint64_t most = fit < MAX_BATCH ? fit : MAX_BATCH;

  if (!cfg->use_mr)
    size = count > CHUNK_THRESHOLD ? CHUNKSIZE : 1;
  else
    size = count / ((uint64_t)workers * 8);
  if (size > most)
    size = most;
  return size < 1 ? 1 : (size_t)size;
}

/* The baseline: every number in this process, in order, in the batches a
 * worker would get and through the same check_batch(); a stopped batch
 * still writes the rows it has. */
static int run_sequential(const struct config *cfg, const struct inputs *in,
                          struct output *o) {
  static struct batches g;
  const void *arg;
  size_t len, rlen;
  int stopped = 0;

  g.cur = (struct cursor){.in = in};
  g.size = batch_size(cfg, in->count, 1, sizeof record);
  while (!interrupted && !stopped && gen_batches(&g, &arg, &len)) {
    rlen = check_batch(record, arg, len / sizeof g.spans[0], cfg->use_mr,
                       &stopped);
    if (rlen)
      output_record(o, record, rlen);
  }
  return interrupted ? EXIT_INTERRUPTED : 0;
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
  g.size = batch_size(cfg, in->count, workers, pp_pool_max_payload(pool));
  /* Eight batches a worker queued ahead: the workers run on while the
   * master, on a shared core, waits for its turn. */
  if (g.size > 1)
    mo.window = 8 * (size_t)workers;
  if ((rc = pp_map_gen(pool, fn, gen_batches, &g, &mo, &map)) != 0) {
    fprintf(stderr, "primes: cannot start the map: %s\n", pp_strerror(rc));
    return EXIT_FAILED;
  }
  while (!interrupted && (rc = pp_map_next(map, &data, &len)) != PP_EOF) {
    if (interrupted)
      break;
    if (rc == 0 && output_record(o, data, len) == 0)
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

/* Submits up to BATCH numbers from the cursor, one a task. */
static int submit_batch(pp_pool *pool, pp_task_fn fn, double timeout,
                        struct cursor *cur, struct batch *b) {
  struct span s;
  int rc;

  while (b->count < BATCH && !interrupted && cursor_span(cur, 1, &s)) {
    rc = pp_submit_timeout(pool, fn, &s, sizeof s, timeout, &b->f[b->count]);
    if (rc != 0)
      return rc;
    b->n[b->count++] = s.first;
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
    if (rc == 0 && output_record(o, data, len) == 0)
      continue;
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

/* What pp_pool_create() answers with --engine mpi that needs saying how. */
static void explain_mpi(int rc) {
  if (rc == PP_ENOTSUP)
    fputs("primes: --engine mpi: this procpool was built without the MPI "
          "engine: install openmpi-bin libopenmpi-dev, then configure and "
          "build again\n",
          stderr);
  else if (rc == PP_EINVAL)
    fputs("primes: --engine mpi: run it under mpirun with at least two "
          "ranks, e.g. 'mpirun -np 3 primes --engine mpi'\n",
          stderr);
  else
    fprintf(stderr, "primes: --engine mpi: cannot start the ranks: %s\n",
            pp_strerror(rc));
}

/* The pool's sizes for checking numbers: a payload of the largest record
 * (1.5 MiB), and rings of one such record (the pool rounds them up to a
 * power of two, 2 MiB), rather than the default 1 MiB payload and 4 MiB
 * rings. A batch's record is a few hundred KiB, so the smaller rings still
 * hold several, and every process in the pool touches (and faults in) half
 * the shared pages; the results ring also stays warmer in the caches. */
static void check_options(pp_options *opts) {
  opts->max_payload = RECORD_MAX;
  opts->ring_capacity = RECORD_MAX;
}

/* Catches the signals, then starts the pool for cfg: its engine, workers
 * and retries, and the sieve's options when it sieves. With --sequential
 * *pool stays NULL. The tasks' format is set first, so that forked workers
 * inherit it and MPI ranks, which parse the same command line, set it too.
 * Returns CONTINUE, or the exit status after saying why. With --engine mpi
 * only rank 0 returns. */
int start_pool(const struct config *cfg, pp_pool **pool) {
  pp_options opts;
  int rc;

  *pool = NULL;
  task_format = cfg->format;
  if (catch_signals() != 0) {
    fprintf(stderr, "primes: cannot catch Ctrl-C: %s\n", strerror(errno));
    return EXIT_FAILED;
  }
  if (cfg->sequential)
    return CONTINUE;
  pp_options_init(&opts);
  opts.engine = cfg->engine;
  opts.workers = cfg->workers;
  opts.retries = cfg->retries;
  if (cfg->sieve)
    sieve_options(cfg, &opts);
  else
    check_options(&opts);
  if ((rc = pp_pool_create(pool, &opts)) == 0)
    return CONTINUE;
  if (cfg->engine != PP_ENGINE_MPI) {
    fprintf(stderr, "primes: cannot start the workers: %s\n", pp_strerror(rc));
    return EXIT_FAILED;
  }
  explain_mpi(rc);
  return rc == PP_ENOTSUP || rc == PP_EINVAL ? EXIT_USAGE : EXIT_FAILED;
}

/* Runs the chosen mode on `pool` (NULL: sequential), prints, and destroys
 * the pool. t0: when the run started, for the total time. */
int run(const struct config *cfg, const struct inputs *in, pp_pool *pool,
        double t0) {
  pp_task_fn fn = cfg->use_mr ? mr_task : trial_task;
  struct output o;
  int status;

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
