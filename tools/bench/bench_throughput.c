/*
 * bench_throughput: what one tiny task costs in procpool, on this machine.
 *
 * Throughput: N tasks that square an int64, through pp_map_gen() with
 * chunksize C (1000), with the automatic chunksize, with chunksize 1, and
 * through pp_submit() of all N futures followed by pp_as_completed(). The
 * ceiling, measured in the same run: two processes moving N tiny items
 * through a busy-polled single-producer, single-consumer ring in shared
 * memory (ceiling.c); every rate is printed as a fraction of it. When
 * python3 is on the PATH, the same work runs on concurrent.futures'
 * ProcessPoolExecutor with the same number of workers (an inline script
 * passed with -c): executor.map unchunked over a smaller N, and with the
 * same chunksize over N. Pool start-up is left out on both sides (Python's
 * workers are warmed up first).
 *
 * Latency: submit + result of one task on an idle pool, next to a 1-byte
 * ping-pong over two pipes between two processes, measured in the same
 * run; then the round trip again with every core kept busy by a spinning
 * process (its p99 is what a loaded machine sees).
 *
 * Targets (2 workers): chunksize 1000 at least 20M tasks/s and 10x
 * Python's chunked map; automatic chunks at least 10M; chunksize 1 at
 * least 3M; submit + as_completed at least 2M; the idle round trip no
 * slower than the pipe ping-pong.
 */
#include "tiny.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TARGET_CHUNKED 20e6
#define TARGET_CHUNKED_VS_PYTHON 10.0
#define TARGET_AUTO 10e6
#define TARGET_ONE 3e6
#define TARGET_SUBMIT 2e6
#define RT_WARMUP 200
#define RT_ROUNDS 2000
#define PIPE_ROUNDS 20000

/* No single quotes: it goes inside '...' on a shell command line. */
static const char python_script[] =
    "import multiprocessing, sys, time\n"
    "from concurrent.futures import ProcessPoolExecutor\n"
    "def sq(x):\n"
    "    return x * x\n"
    "w, n, chunk = (int(a) for a in sys.argv[1:4])\n"
    "ctx = multiprocessing.get_context(\"fork\")\n"
    "with ProcessPoolExecutor(max_workers=w, mp_context=ctx) as ex:\n"
    "    list(ex.map(sq, range(4 * w)))\n"
    "    t = time.perf_counter()\n"
    "    s = sum(ex.map(sq, range(n), chunksize=chunk))\n"
    "    dt = time.perf_counter() - t\n"
    "assert s == sum(x * x for x in range(n))\n"
    "print(n / dt)\n";

/* Tasks per second of ProcessPoolExecutor.map, or 0 on failure. */
static double bench_python(int workers, long n, long chunk) {
  char cmd[sizeof python_script + 128];
  double rate = 0;
  FILE *f;

  snprintf(cmd, sizeof cmd, "python3 -c '%s' %d %ld %ld", python_script,
           workers, n, chunk);
  if (!(f = popen(cmd, "r")))
    return 0;
  if (fscanf(f, "%lf", &rate) != 1)
    rate = 0;
  if (pclose(f) != 0)
    rate = 0;
  return rate;
}

/* ----------------------------------------------------------- latency */

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Sorts `v` and returns its p-th percentile (0..100). */
static double percentile(double *v, size_t n, double p) {
  size_t i;
  qsort(v, n, sizeof *v, cmp_double);
  i = (size_t)(p / 100 * (double)(n - 1) + 0.5);
  return v[i < n ? i : n - 1];
}

/* One task, submitted and waited for; returns its seconds. */
static double round_trip(pp_pool *pool, int64_t x) {
  pp_future *f;
  const void *data;
  size_t len;
  double t0 = tiny_now();
  int rc;

  if ((rc = pp_submit(pool, tiny_square, &x, sizeof x, &f)) != 0)
    tiny_die("pp_submit", rc);
  if ((rc = pp_future_result(f, PP_FOREVER, &data, &len)) != 0)
    tiny_die("pp_future_result", rc);
  t0 = tiny_now() - t0;
  if (tiny_read_u64(data, len) != (uint64_t)(x * x))
    tiny_die("round-trip result", PP_EINVAL);
  pp_future_release(f);
  return t0;
}

/* Median and p99 of RT_ROUNDS idle round trips, in seconds. */
static void bench_round_trip(pp_pool *pool, double *median, double *p99) {
  static double t[RT_ROUNDS];

  for (int i = 0; i < RT_WARMUP; i++)
    round_trip(pool, i);
  for (int i = 0; i < RT_ROUNDS; i++)
    t[i] = round_trip(pool, i);
  *median = percentile(t, RT_ROUNDS, 50);
  *p99 = percentile(t, RT_ROUNDS, 99);
}

/* Median seconds of a 1-byte ping-pong with a child over two pipes. */
static double bench_pipe(void) {
  static double t[PIPE_ROUNDS];
  int to_child[2], to_parent[2];
  char b = 'x';
  pid_t pid;

  if (pipe(to_child) != 0 || pipe(to_parent) != 0)
    tiny_die("pipe", PP_ESYS);
  if ((pid = fork()) < 0)
    tiny_die("fork", PP_EFORK);
  if (pid == 0) {
    close(to_child[1]);
    close(to_parent[0]);
    while (read(to_child[0], &b, 1) == 1 && write(to_parent[1], &b, 1) == 1)
      ;
    _exit(0);
  }
  close(to_child[0]);
  close(to_parent[1]);
  for (int i = -RT_WARMUP; i < PIPE_ROUNDS; i++) {
    double t0 = tiny_now();
    if (write(to_child[1], &b, 1) != 1 || read(to_parent[0], &b, 1) != 1)
      tiny_die("ping-pong", PP_ESYS);
    if (i >= 0)
      t[i] = tiny_now() - t0;
  }
  close(to_child[1]);
  close(to_parent[0]);
  waitpid(pid, NULL, 0);
  return percentile(t, PIPE_ROUNDS, 50);
}

/* ------------------------------------------------------------- main */

static void usage(FILE *out) {
  fprintf(out,
          "usage: bench_throughput [-n N] [-w W] [-c C] [-p P]\n"
          "  -n N  tasks per throughput run (default 1000000)\n"
          "  -w W  workers (default 2)\n"
          "  -c C  chunksize of the chunked runs (default 1000)\n"
          "  -p P  tasks of the unchunked Python run (default 100000)\n"
          "  -h, --help  this text\n"
          "Prints tiny-task throughput (procpool, and Python's\n"
          "ProcessPoolExecutor when python3 is on the PATH), the idle\n"
          "round-trip latency next to a pipe ping-pong (also with every\n"
          "core busy), the ceiling of a bare SPSC ring, and the targets.\n");
}

/* Rates of the procpool runs, in the order they are printed. */
enum { R_CHUNKED, R_AUTO, R_ONE, R_SUBMIT, R_COUNT };

static void print_rate(const char *what, double rate, double ceiling) {
  char buf[32];
  printf("  %-36s %14s tasks/s  %5.1f%% of ceiling\n", what,
         tiny_commas(rate, buf, sizeof buf), 100.0 * rate / ceiling);
}

/* Runs Python's chunked map; returns its rate (0 when not run). */
static double python_section(const struct tiny_config *cfg,
                             const double *rate) {
  char what[64], buf[32];
  double py_one, py_chunked;

  if (!tiny_on_path("python3")) {
    printf("python3: not on PATH, comparison skipped\n");
    return 0;
  }
  printf("Python ProcessPoolExecutor, %d workers:\n", cfg->workers);
  py_one = bench_python(cfg->workers, cfg->py_n, 1);
  py_chunked = bench_python(cfg->workers, cfg->n, cfg->chunk);
  snprintf(what, sizeof what, "executor.map unchunked (N=%s)",
           tiny_commas((double)cfg->py_n, buf, sizeof buf));
  printf("  %-36s %14s tasks/s\n", what, tiny_commas(py_one, buf, sizeof buf));
  snprintf(what, sizeof what, "executor.map chunksize %ld", cfg->chunk);
  printf("  %-36s %14s tasks/s\n", what,
         tiny_commas(py_chunked, buf, sizeof buf));
  if (py_one > 0)
    printf("  ratio procpool/Python, chunksize 1   %10.1fx\n",
           rate[R_ONE] / py_one);
  if (py_chunked > 0)
    printf("  ratio procpool/Python, chunksize %-4ld%10.1fx\n", cfg->chunk,
           rate[R_CHUNKED] / py_chunked);
  return py_chunked;
}

/* Starts one spinning process per online CPU (a loaded machine); they die
 * with SIGKILL from stop_load(). */
static int start_load(pid_t *pids, int cap) {
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  int n = 0;

  for (long i = 0; i < cpus && n < cap; i++) {
    pid_t pid = fork();
    if (pid == 0)
      for (volatile unsigned long spin = 0;; spin++)
        ;
    if (pid > 0)
      pids[n++] = pid;
  }
  return n;
}

static void stop_load(const pid_t *pids, int n) {
  for (int i = 0; i < n; i++) {
    kill(pids[i], SIGKILL);
    waitpid(pids[i], NULL, 0);
  }
}

static void target(const char *what, int met) {
  printf("target %s: %s\n", what, met ? "met" : "missed");
}

int main(int argc, char **argv) {
  struct tiny_config cfg = {1000000, 100000, 2, 1000};
  double rate[R_COUNT], ceiling, py_chunked, rt_median, rt_p99, busy_median,
      busy_p99, pipe_median;
  char what[64], buf[32];
  pid_t load[64];
  pp_options opts;
  pp_pool *pool;
  int rc, nload;

  tiny_parse_args(argc, argv, &cfg, usage);
  pp_options_init(&opts);
  opts.workers = cfg.workers;
  if ((rc = pp_pool_create(&pool, &opts)) != 0)
    tiny_die("pp_pool_create", rc);

  ceiling = tiny_bench_ceiling(cfg.n > 10000000 ? cfg.n : 10000000);
  printf("ceiling: SPSC shared-memory ring, 2 processes, busy-polled, "
         "published per item:\n  %-36s %14s items/s\n",
         "", tiny_commas(ceiling, buf, sizeof buf));
  printf("procpool, %d workers, N=%s tiny tasks (square an int64):\n",
         cfg.workers, tiny_commas((double)cfg.n, buf, sizeof buf));
  rate[R_CHUNKED] = tiny_bench_map(pool, cfg.n, cfg.chunk);
  snprintf(what, sizeof what, "pp_map_gen chunksize %ld", cfg.chunk);
  print_rate(what, rate[R_CHUNKED], ceiling);
  rate[R_AUTO] = tiny_bench_map(pool, cfg.n, 0);
  print_rate("pp_map_gen automatic chunksize", rate[R_AUTO], ceiling);
  rate[R_ONE] = tiny_bench_map(pool, cfg.n, 1);
  print_rate("pp_map_gen chunksize 1", rate[R_ONE], ceiling);
  rate[R_SUBMIT] = tiny_bench_submit(pool, cfg.n);
  print_rate("pp_submit + pp_as_completed", rate[R_SUBMIT], ceiling);
  fflush(stdout);
  py_chunked = python_section(&cfg, rate);

  bench_round_trip(pool, &rt_median, &rt_p99);
  nload = start_load(load, 64);
  bench_round_trip(pool, &busy_median, &busy_p99);
  stop_load(load, nload);
  pp_pool_destroy(pool);
  pipe_median = bench_pipe();
  printf("Latency:\n");
  printf("  idle round trip (submit + result, %d runs): median %.1f us, "
         "p99 %.1f us\n",
         RT_ROUNDS, rt_median * 1e6, rt_p99 * 1e6);
  printf("  the same with %d cores kept busy:          median %.1f us, "
         "p99 %.1f us\n",
         nload, busy_median * 1e6, busy_p99 * 1e6);
  printf("  pipe ping-pong (1 byte, %d round trips):   median %.1f us\n",
         PIPE_ROUNDS, pipe_median * 1e6);
  printf("  ratio round trip / ping-pong: %.2f\n", rt_median / pipe_median);

  snprintf(what, sizeof what, "chunksize %ld >= 20M tasks/s", cfg.chunk);
  target(what, rate[R_CHUNKED] >= TARGET_CHUNKED);
  if (py_chunked > 0) {
    snprintf(what, sizeof what, "chunksize %ld >= 10x Python's", cfg.chunk);
    target(what, rate[R_CHUNKED] >= TARGET_CHUNKED_VS_PYTHON * py_chunked);
  }
  target("automatic chunksize >= 10M tasks/s", rate[R_AUTO] >= TARGET_AUTO);
  target("chunksize 1 >= 3M tasks/s", rate[R_ONE] >= TARGET_ONE);
  target("submit + as_completed >= 2M tasks/s",
         rate[R_SUBMIT] >= TARGET_SUBMIT);
  target("idle round trip <= pipe ping-pong", rt_median <= pipe_median);
  return 0;
}
