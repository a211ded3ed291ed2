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
#include <procpool.h>

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { MAP_UNCHUNKED, MAP_CHUNKED, SUBMIT, NWAYS };

struct config {
  long n;    /* tasks per procpool run */
  long py_n; /* tasks per Python run */
  int workers;
  long chunk;
};

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

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int rc) {
  fprintf(stderr, "bench_engines: %s: %s\n", what, pp_strerror(rc));
  exit(1);
}

/* Formats v with thousands separators ("1,234,567"). */
static const char *commas(double v, char *buf, size_t size) {
  char digits[32];
  int n = snprintf(digits, sizeof digits, "%.0f", v), out = 0;

  for (int i = 0; i < n && out + 2 < (int)size; i++) {
    if (i > 0 && (n - i) % 3 == 0)
      buf[out++] = ',';
    buf[out++] = digits[i];
  }
  buf[out] = '\0';
  return buf;
}

/* ------------------------------------------------------------- tasks */

static int task_square(pp_task *t, const void *arg, size_t len) {
  int64_t x;
  if (len != sizeof x)
    return 1;
  memcpy(&x, arg, sizeof x);
  x *= x;
  return pp_task_return(t, &x, sizeof x);
}

struct counter {
  int64_t next, n, cur;
};

/* Yields 0 .. n-1. */
static int counter_gen(void *state, const void **arg, size_t *len) {
  struct counter *c = state;
  if (c->next >= c->n)
    return 0;
  c->cur = c->next++;
  *arg = &c->cur;
  *len = sizeof c->cur;
  return 1;
}

/* Sum of x * x over 0 .. n-1, wrapping, to check the results. */
static uint64_t expected_sum(long n) {
  uint64_t s = 0;
  for (long x = 0; x < n; x++)
    s += (uint64_t)x * (uint64_t)x;
  return s;
}

static uint64_t read_u64(const void *data, size_t len) {
  uint64_t v = 0;
  if (len == sizeof v)
    memcpy(&v, data, sizeof v);
  return v;
}

/* -------------------------------------------------------- throughput */

/* Tasks per second of a map over 0 .. n-1 with `chunk` arguments a task. */
static double bench_map(pp_pool *pool, long n, long chunk) {
  struct counter c = {0, n, 0};
  pp_map_options mo = {.chunksize = (size_t)chunk};
  uint64_t sum = 0;
  const void *data;
  size_t len;
  pp_map *m;
  double t0 = now();
  int rc;

  if ((rc = pp_map_gen(pool, task_square, counter_gen, &c, &mo, &m)) != 0)
    die("pp_map_gen", rc);
  while ((rc = pp_map_next(m, &data, &len)) == 0)
    sum += read_u64(data, len);
  if (rc != PP_EOF)
    die("pp_map_next", rc);
  pp_map_destroy(m);
  t0 = now() - t0;
  if (sum != expected_sum(n))
    die("map results", PP_EINVAL);
  return (double)n / t0;
}

/* Tasks per second of submitting n futures, then taking them as they
 * complete. */
static double bench_submit(pp_pool *pool, long n) {
  pp_future **fs = malloc((size_t)n * sizeof *fs), *f;
  pp_completed *it;
  uint64_t sum = 0;
  const void *data;
  size_t len;
  double t0 = now();
  int rc;

  if (!fs)
    die("malloc", PP_ENOMEM);
  for (int64_t x = 0; x < n; x++)
    if ((rc = pp_submit(pool, task_square, &x, sizeof x, &fs[x])) != 0)
      die("pp_submit", rc);
  if ((rc = pp_as_completed(fs, (size_t)n, PP_FOREVER, &it)) != 0)
    die("pp_as_completed", rc);
  while ((rc = pp_completed_next(it, &f)) == 0) {
    if ((rc = pp_future_result(f, 0, &data, &len)) != 0)
      die("pp_future_result", rc);
    sum += read_u64(data, len);
  }
  pp_completed_destroy(it);
  for (long i = 0; i < n; i++)
    pp_future_release(fs[i]);
  t0 = now() - t0;
  free(fs);
  if (sum != expected_sum(n))
    die("as_completed results", PP_EINVAL);
  return (double)n / t0;
}

/* Runs the three ways on a new pool of `engine`, into rate[NWAYS]. */
static void bench_engine(const struct config *cfg, pp_engine engine,
                         double *rate) {
  pp_options opts;
  pp_pool *pool;
  int rc;

  pp_options_init(&opts);
  opts.engine = engine;
  opts.workers = cfg->workers;
  if ((rc = pp_pool_create(&pool, &opts)) != 0)
    die("pp_pool_create", rc);
  rate[MAP_UNCHUNKED] = bench_map(pool, cfg->n, 1);
  rate[MAP_CHUNKED] = bench_map(pool, cfg->n, cfg->chunk);
  rate[SUBMIT] = bench_submit(pool, cfg->n);
  pp_pool_destroy(pool);
}

/* Whether `name` is an executable on the PATH. */
static int on_path(const char *name) {
  const char *path = getenv("PATH");
  char buf[4096];

  while (path && *path) {
    size_t len = strcspn(path, ":");
    snprintf(buf, sizeof buf, "%.*s/%s", (int)len, path, name);
    if (len && access(buf, X_OK) == 0)
      return 1;
    path += len + (path[len] == ':');
  }
  return 0;
}

/* ThreadPoolExecutor's tasks per second, map then submit + as_completed,
 * into py[2]; returns 0, or -1 if the run failed. */
static int bench_python(const struct config *cfg, double py[2]) {
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

/* Parses argv into *cfg; exits on --help or a bad option. */
static void parse_args(int argc, char **argv, struct config *cfg) {
  static const struct option longopts[] = {{"help", no_argument, NULL, 'h'},
                                           {NULL, 0, NULL, 0}};
  int c;

  while ((c = getopt_long(argc, argv, "n:w:c:p:h", longopts, NULL)) != -1) {
    switch (c) {
    case 'n':
      cfg->n = atol(optarg);
      break;
    case 'w':
      cfg->workers = atoi(optarg);
      break;
    case 'c':
      cfg->chunk = atol(optarg);
      break;
    case 'p':
      cfg->py_n = atol(optarg);
      break;
    case 'h':
      usage(stdout);
      exit(0);
    default:
      usage(stderr);
      exit(2);
    }
  }
  if (optind < argc || cfg->n < 1 || cfg->workers < 1 || cfg->chunk < 1 ||
      cfg->py_n < 1) {
    usage(stderr);
    exit(2);
  }
}

/* Prints one row: both rates in tasks/s and threads / processes. */
static void print_row(const char *what, double threads, double procs) {
  char a[32], b[32];

  printf("%-30s %13s %13s %8.2fx\n", what, commas(threads, a, sizeof a),
         commas(procs, b, sizeof b), threads / procs);
}

/* Runs Python's ThreadPoolExecutor and prints it beside the thread
 * engine. */
static void python_section(const struct config *cfg, const double *thr) {
  char a[32], b[32];
  double py[2];

  if (!on_path("python3")) {
    printf("python3: not on PATH, comparison skipped\n");
    return;
  }
  if (bench_python(cfg, py) < 0) {
    printf("Python ThreadPoolExecutor: run failed, comparison skipped\n");
    return;
  }
  printf("\nPython ThreadPoolExecutor(max_workers=%d), N=%s:\n", cfg->workers,
         commas((double)cfg->py_n, a, sizeof a));
  printf("%-30s %13s %13s %8s\n", "tasks/s", "thread engine", "Python",
         "ratio");
  printf("%-30s %13s %13s %8.1fx\n", "map unchunked",
         commas(thr[MAP_UNCHUNKED], a, sizeof a), commas(py[0], b, sizeof b),
         thr[MAP_UNCHUNKED] / py[0]);
  printf("%-30s %13s %13s %8.1fx\n", "submit + as_completed",
         commas(thr[SUBMIT], a, sizeof a), commas(py[1], b, sizeof b),
         thr[SUBMIT] / py[1]);
}

int main(int argc, char **argv) {
  struct config cfg = {200000, 100000, 2, 1000};
  double thr[NWAYS], procs[NWAYS];
  char what[64], buf[32];

  parse_args(argc, argv, &cfg);
  bench_engine(&cfg, PP_ENGINE_THREADS, thr);
  bench_engine(&cfg, PP_ENGINE_PROCESSES, procs);

  printf("procpool, %d workers each, N=%s tiny tasks (square an int64):\n",
         cfg.workers, commas((double)cfg.n, buf, sizeof buf));
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
