/*
 * bench_engines: tiny-task throughput of procpool's two engines, side by
 * side.
 *
 * N tasks that square an int64 run on a pool of each engine with the same
 * number of workers, three ways: pp_map_gen() one argument per task,
 * pp_map_gen() in chunks, and pp_submit() of all N futures followed by
 * pp_as_completed(). Pool start-up is left out. When python3 is on the
 * PATH, concurrent.futures' ThreadPoolExecutor with as many workers runs
 * beside the thread engine (an inline script passed with -c, one run,
 * printing both rates): executor.map over a smaller N, which has no
 * chunked form worth measuring (ThreadPoolExecutor ignores chunksize), and
 * submit + as_completed over the same smaller N.
 */
#include "tiny.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { MAP_UNCHUNKED, MAP_CHUNKED, SUBMIT, NWAYS };

/* No single quotes: it goes inside '...' on a shell command line. */
static const char python_script[] =
    "import sys, time\n"
    "from concurrent.futures import ThreadPoolExecutor, as_completed\n"
    "def sq(x):\n"
    "    return x * x\n"
    "w, n = (int(a) for a in sys.argv[1:3])\n"
    "with ThreadPoolExecutor(max_workers=w) as ex:\n"
    "    list(ex.map(sq, range(4 * w)))\n"
    "    t0 = time.perf_counter()\n"
    "    s1 = sum(ex.map(sq, range(n)))\n"
    "    t1 = time.perf_counter()\n"
    "    fs = [ex.submit(sq, x) for x in range(n)]\n"
    "    s2 = sum(f.result() for f in as_completed(fs))\n"
    "    t2 = time.perf_counter()\n"
    "assert s1 == s2 == sum(x * x for x in range(n))\n"
    "print(n / (t1 - t0), n / (t2 - t1))\n";

/* Runs the three ways on a new pool of `engine`, into rate[NWAYS]. */
static void bench_engine(const struct tiny_config *cfg, pp_engine engine,
                         double *rate) {
  pp_options opts;
  pp_pool *pool;
  int rc;

  pp_options_init(&opts);
  opts.engine = engine;
  opts.workers = cfg->workers;
  if ((rc = pp_pool_create(&pool, &opts)) != 0)
    tiny_die("pp_pool_create", rc);
  rate[MAP_UNCHUNKED] = tiny_bench_map(pool, cfg->n, 1);
  rate[MAP_CHUNKED] = tiny_bench_map(pool, cfg->n, cfg->chunk);
  rate[SUBMIT] = tiny_bench_submit(pool, cfg->n);
  pp_pool_destroy(pool);
}

/* ThreadPoolExecutor's tasks per second, map then submit + as_completed,
 * into py[2]; returns 0, or -1 if the run failed. */
static int bench_python(const struct tiny_config *cfg, double py[2]) {
  char cmd[sizeof python_script + 128];
  int ok;
  FILE *f;

  snprintf(cmd, sizeof cmd, "python3 -c '%s' %d %ld", python_script,
           cfg->workers, cfg->py_n);
  if (!(f = popen(cmd, "r")))
    return -1;
  ok = fscanf(f, "%lf %lf", &py[0], &py[1]) == 2;
  if (pclose(f) != 0)
    ok = 0;
  return ok ? 0 : -1;
}

/* ------------------------------------------------------------- main */

static void usage(FILE *out) {
  fprintf(out, "usage: bench_engines [-n N] [-w W] [-c C] [-p P]\n"
               "  -n N  tasks per procpool run (default 200000)\n"
               "  -w W  workers of each engine and of Python (default 2)\n"
               "  -c C  chunksize of the chunked map (default 1000)\n"
               "  -p P  tasks per Python run (default 100000)\n"
               "  -h, --help  this text\n"
               "Prints tiny-task throughput of the thread and process engines\n"
               "side by side and, when python3 is on the PATH, of Python's\n"
               "ThreadPoolExecutor beside the thread engine, with ratios.\n");
}

/* Prints one row: both rates in tasks/s and threads / processes. */
static void print_row(const char *what, double threads, double procs) {
  char a[32], b[32];

  printf("%-30s %13s %13s %8.2fx\n", what, tiny_commas(threads, a, sizeof a),
         tiny_commas(procs, b, sizeof b), threads / procs);
}

/* Runs Python's ThreadPoolExecutor and prints it beside the thread
 * engine. */
static void python_section(const struct tiny_config *cfg, const double *thr) {
  char a[32], b[32];
  double py[2];

  if (!tiny_on_path("python3")) {
    printf("python3: not on PATH, comparison skipped\n");
    return;
  }
  if (bench_python(cfg, py) < 0) {
    printf("Python ThreadPoolExecutor: run failed, comparison skipped\n");
    return;
  }
  printf("\nPython ThreadPoolExecutor(max_workers=%d), N=%s:\n", cfg->workers,
         tiny_commas((double)cfg->py_n, a, sizeof a));
  printf("%-30s %13s %13s %8s\n", "tasks/s", "thread engine", "Python",
         "ratio");
  printf("%-30s %13s %13s %8.1fx\n", "map unchunked",
         tiny_commas(thr[MAP_UNCHUNKED], a, sizeof a),
         tiny_commas(py[0], b, sizeof b), thr[MAP_UNCHUNKED] / py[0]);
  printf("%-30s %13s %13s %8.1fx\n", "submit + as_completed",
         tiny_commas(thr[SUBMIT], a, sizeof a), tiny_commas(py[1], b, sizeof b),
         thr[SUBMIT] / py[1]);
}

int main(int argc, char **argv) {
  struct tiny_config cfg = {200000, 100000, 2, 1000};
  double thr[NWAYS], procs[NWAYS];
  char what[64], buf[32];

  tiny_parse_args(argc, argv, &cfg, usage);
  bench_engine(&cfg, PP_ENGINE_THREADS, thr);
  bench_engine(&cfg, PP_ENGINE_PROCESSES, procs);

  printf("procpool, %d workers each, N=%s tiny tasks (square an int64):\n",
         cfg.workers, tiny_commas((double)cfg.n, buf, sizeof buf));
  printf("%-30s %13s %13s %9s\n", "tasks/s", "threads", "processes",
         "thr/proc");
  print_row("pp_map_gen unchunked", thr[MAP_UNCHUNKED], procs[MAP_UNCHUNKED]);
  snprintf(what, sizeof what, "pp_map_gen chunksize %ld", cfg.chunk);
  print_row(what, thr[MAP_CHUNKED], procs[MAP_CHUNKED]);
  print_row("pp_submit + pp_as_completed", thr[SUBMIT], procs[SUBMIT]);
  fflush(stdout);
  python_section(&cfg, thr);
  return 0;
}
