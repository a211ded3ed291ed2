/*
 * bench_primes: how close procpool comes to the ideal on the classic
 * 20-number fixture with trial division, and how it compares with Python's
 * ProcessPoolExecutor doing the same work.
 *
 * One run of pp_map over the fixture (largest first) gives three numbers:
 * the sequential time (the sum of the task times the workers report), the
 * wall time (from pp_pool_create() to the last result), and the ideal
 * makespan, max(longest task, sum / workers), which no schedule can beat.
 * When python3 is on the PATH, the same fixture runs on ProcessPoolExecutor
 * with the same number of workers, timed the same way, with the classic
 * is_prime() from Fluent Python; the script is inline, passed with -c.
 * Targets: wall <= 1.05 * ideal, and Python at least 10 times slower.
 *
 * Then, in the same run, the fast paths (`bench_primes PART...` runs only
 * the parts named: fixture, count, mr, range):
 * - Counting the primes of [10^12, 10^12 + 10^10) with `primes --count`
 *   on 1 and 2 workers against the `primesieve` command (Debian's
 *   primesieve package) on as many threads, each timed from the outside
 *   (process start to exit) and run three times, alternating, the median
 *   compared. Targets: primes at most 1.00x primesieve's time at each
 *   thread count, and 1 to 2 workers a speed-up of at least 1.85x.
 * - Miller-Rabin over a million random odd 64-bit numbers, in batches of
 *   MR_BATCH numbers per task, on 1 and 2 workers. Target: at least 3M
 *   numbers a second per worker.
 * - The 10M numbers of [10^12, 10^12 + 10^7) through the tool, `primes
 *   --algo mr --format csv` with its output to /dev/null (a row a number,
 *   formatted by the workers), on 2 workers against --sequential, timed
 *   from the outside, three alternating runs, the medians compared, with
 *   the CPU time of each run beside its wall time. Target: 2 workers at
 *   least 1.8x faster.
 */
#include "primes_core.h"

#include <procpool.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define IDEAL_TARGET 1.05
#define PYTHON_TARGET 10.0
#define COUNT_TARGET 1.00   /* primes --count / primesieve, at most */
#define SPEEDUP_TARGET 1.85 /* 1 to 2 workers, at least */
#define MR_TARGET 3e6       /* numbers a second per worker, at least */
#define COUNT_START "1e12"
#define COUNT_RANGE "1000000000000:1010000000000"
#define COUNT_RUNS 3
#define MR_NUMBERS 1000000
#define MR_BATCH 16384
#define RANGE_TARGET 1.8 /* --sequential / 2 workers, at least */
#define RANGE "1000000000000:1000010000000"

#ifndef PRIMES_PATH
#define PRIMES_PATH "primes"
#endif

/* No single quotes: it goes inside '...' on a shell command line. */
static const char python_script[] =
    "import math, sys, time\n"
    "from concurrent.futures import ProcessPoolExecutor\n"
    "\n"
    "def is_prime(n):\n"
    "    if n < 2:\n"
    "        return False\n"
    "    if n == 2:\n"
    "        return True\n"
    "    if n % 2 == 0:\n"
    "        return False\n"
    "    root = math.isqrt(n)\n"
    "    for i in range(3, root + 1, 2):\n"
    "        if n % i == 0:\n"
    "            return False\n"
    "    return True\n"
    "\n"
    "def check(n):\n"
    "    t0 = time.perf_counter()\n"
    "    return n, is_prime(n), time.perf_counter() - t0\n"
    "\n"
    "if __name__ == \"__main__\":\n"
    "    workers = int(sys.argv[1])\n"
    "    numbers = [int(a) for a in sys.argv[2:]]\n"
    "    t0 = time.perf_counter()\n"
    "    with ProcessPoolExecutor(workers) as executor:\n"
    "        results = list(executor.map(check, numbers))\n"
    "        wall = time.perf_counter() - t0\n"
    "    print(wall, sum(r[2] for r in results), sum(r[1] for r in results))\n";

/* What trial_task() sends back for one number. */
struct result {
  uint64_t n;
  uint8_t prime;
  double elapsed;
};

struct timings {
  int workers;
  int primes;
  double wall, sum, longest;
};

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Trial division of one number, timed inside the worker. */
static int trial_task(pp_task *task, const void *arg, size_t len) {
  struct result r;
  double t0;

  if (len != sizeof r.n)
    return pp_task_fail(task, 1, "expected 8 bytes");
  memset(&r, 0, sizeof r);
  memcpy(&r.n, arg, sizeof r.n);
  t0 = now();
  r.prime = pc_trial_division(r.n, NULL) == PC_PRIME;
  r.elapsed = now() - t0;
  return pp_task_return(task, &r, sizeof r);
}

/* Runs the fixture through pp_map with the default workers. Returns 0 or a
 * PP_E* code. */
static int run_procpool(struct timings *t) {
  const void *args[PC_FIXTURE_COUNT];
  size_t lens[PC_FIXTURE_COUNT];
  pp_pool *pool;
  pp_map *map;
  const void *data;
  size_t len;
  int rc;

  for (size_t i = 0; i < PC_FIXTURE_COUNT; i++) {
    args[i] = &pc_fixture[i];
    lens[i] = sizeof pc_fixture[i];
  }
  memset(t, 0, sizeof *t);
  t->wall = now();
  if ((rc = pp_pool_create(&pool, NULL)) != 0)
    return rc;
  t->workers = pp_pool_workers(pool);
  if ((rc = pp_map_array(pool, trial_task, args, lens, PC_FIXTURE_COUNT, NULL,
                         &map)) != 0)
    goto out_destroy_pool;
  while ((rc = pp_map_next(map, &data, &len)) == 0) {
    struct result r;
    memcpy(&r, data, sizeof r);
    t->sum += r.elapsed;
    t->primes += r.prime;
    if (r.elapsed > t->longest)
      t->longest = r.elapsed;
  }
  t->wall = now() - t->wall;
  rc = rc == PP_EOF ? 0 : rc;
  pp_map_destroy(map);
out_destroy_pool:
  pp_pool_destroy(pool);
  return rc;
}

/* Runs the fixture on ProcessPoolExecutor; 0 with *wall and *primes, or -1
 * when python3 is missing or failed. */
static int run_python(int workers, double *wall, int *primes) {
  char cmd[sizeof python_script + 32 * PC_FIXTURE_COUNT + 64];
  size_t off;
  double sum;
  FILE *p;
  int ok;

  if (system("command -v python3 >/dev/null 2>&1") != 0)
    return -1;
  off = (size_t)snprintf(cmd, sizeof cmd, "python3 -c '%s' %d", python_script,
                         workers);
  for (size_t i = 0; i < PC_FIXTURE_COUNT; i++)
    off += (size_t)snprintf(cmd + off, sizeof cmd - off, " %" PRIu64,
                            pc_fixture[i]);
  if (!(p = popen(cmd, "r")))
    return -1;
  ok = fscanf(p, "%lf %lf %d", wall, &sum, primes) == 3;
  return pclose(p) == 0 && ok ? 0 : -1;
}

/* ------------------------------------------------ counting a range */

/* Runs a shell command that prints a count; 0 with the wall time and the
 * count, or -1. */
static int time_count(const char *cmd, double *wall, uint64_t *count) {
  double t0 = now();
  FILE *p = popen(cmd, "r");
  int ok;

  if (!p)
    return -1;
  ok = fscanf(p, "%" SCNu64, count) == 1;
  ok = pclose(p) == 0 && ok;
  *wall = now() - t0;
  return ok ? 0 : -1;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* The median of the COUNT_RUNS times of v (sorted in place). */
static double median(double *v) {
  qsort(v, COUNT_RUNS, sizeof v[0], cmp_double);
  return v[COUNT_RUNS / 2];
}

/* Three alternating runs of primes and primesieve on `workers` threads;
 * the medians in pp[] and ps[] (ps < 0: no primesieve). 0 or -1. */
static int bench_count(int workers, int have_primesieve, double *pp,
                       double *ps) {
  double a[COUNT_RUNS], b[COUNT_RUNS];
  char cmd_pp[256], cmd_ps[128];
  uint64_t n_pp = 0, n_ps = 0;

  snprintf(cmd_pp, sizeof cmd_pp, "'%s' --range %s --count -w %d", PRIMES_PATH,
           COUNT_RANGE, workers);
  snprintf(cmd_ps, sizeof cmd_ps, "primesieve %s --dist=1e10 -t %d -q",
           COUNT_START, workers);
  for (int i = 0; i < COUNT_RUNS; i++) {
    if (time_count(cmd_pp, &a[i], &n_pp) != 0)
      return -1;
    if (have_primesieve && time_count(cmd_ps, &b[i], &n_ps) != 0)
      return -1;
    printf("  %d worker%s, run %d: primes %.3f s", workers,
           workers == 1 ? "" : "s", i + 1, a[i]);
    if (have_primesieve)
      printf(", primesieve %.3f s", b[i]);
    printf(" (%" PRIu64 " primes)\n", n_pp);
    fflush(stdout);
  }
  if (have_primesieve && n_pp != n_ps) {
    fprintf(stderr,
            "bench_primes: primes counted %" PRIu64 ", primesieve %" PRIu64
            "\n",
            n_pp, n_ps);
    return -1;
  }
  *pp = median(a);
  *ps = have_primesieve ? median(b) : -1;
  return 0;
}

static const char *verdict(int met) {
  return met ? "met" : "MISSED";
}

/* The count on 1 and 2 workers against primesieve; 0 or -1. */
static int report_count(void) {
  int have = system("command -v primesieve >/dev/null 2>&1") == 0;
  double pp[3], ps[3];

  printf("\ncounting the primes of [10^12, 10^12 + 10^10), median of %d "
         "alternating runs:\n",
         COUNT_RUNS);
  if (!have)
    printf("  primesieve command: not installed (apt-get install "
           "primesieve); no comparison\n");
  for (int w = 1; w <= 2; w++)
    if (bench_count(w, have, &pp[w], &ps[w]) != 0) {
      fprintf(stderr, "bench_primes: the count failed\n");
      return -1;
    }
  for (int w = 1; w <= 2 && have; w++)
    printf("primes / primesieve, %d thread%s: %6.3f   (target <= %.2f: %s)\n",
           w, w == 1 ? " " : "s", pp[w] / ps[w], COUNT_TARGET,
           verdict(pp[w] / ps[w] <= COUNT_TARGET));
  printf("speed-up 1 -> 2 workers:        %6.3f   (target >= %.2f: %s)\n",
         pp[1] / pp[2], SPEEDUP_TARGET,
         verdict(pp[1] / pp[2] >= SPEEDUP_TARGET));
  return 0;
}

/* ----------------------------------------------------- Miller-Rabin */

/* A batch of numbers in, how many of them are prime out. */
static int mr_task(pp_task *task, const void *arg, size_t len) {
  uint64_t n, primes = 0;

  for (size_t off = 0; off + sizeof n <= len; off += sizeof n) {
    memcpy(&n, (const char *)arg + off, sizeof n);
    primes += pc_miller_rabin(n) == PC_PRIME;
  }
  return pp_task_return(task, &primes, sizeof primes);
}

/* The numbers in batches through pp_map on `workers` workers; 0 with the
 * wall time and the primes found, or a PP_E* code. */
static int run_mr(const uint64_t *v, int workers, double *wall,
                  uint64_t *primes) {
  enum { BATCHES = (MR_NUMBERS + MR_BATCH - 1) / MR_BATCH };
  const void *args[BATCHES];
  size_t lens[BATCHES];
  pp_options opts;
  const void *data;
  pp_pool *pool;
  pp_map *map;
  size_t len;
  int rc;

  for (size_t i = 0; i < BATCHES; i++) {
    size_t left = MR_NUMBERS - i * MR_BATCH;
    args[i] = v + i * MR_BATCH;
    lens[i] = (left < MR_BATCH ? left : MR_BATCH) * sizeof *v;
  }
  pp_options_init(&opts);
  opts.workers = workers;
  if ((rc = pp_pool_create(&pool, &opts)) != 0)
    return rc;
  *primes = 0;
  *wall = now();
  if ((rc = pp_map_array(pool, mr_task, args, lens, BATCHES, NULL, &map)) != 0)
    goto out_destroy_pool;
  while ((rc = pp_map_next(map, &data, &len)) == 0) {
    uint64_t p;
    memcpy(&p, data, sizeof p);
    *primes += p;
  }
  *wall = now() - *wall;
  rc = rc == PP_EOF ? 0 : rc;
  pp_map_destroy(map);
out_destroy_pool:
  pp_pool_destroy(pool);
  return rc;
}

/* A million random odd 64-bit numbers (xorshift64*, fixed seed) on 1 and
 * 2 workers, and once in this process for reference; 0 or -1. */
static int report_mr(void) {
  uint64_t *v = malloc(MR_NUMBERS * sizeof *v), x = 88172645463325252u;
  uint64_t primes = 0;
  double t0, wall;
  int rc = 0;

  if (!v)
    return -1;
  for (size_t i = 0; i < MR_NUMBERS; i++) {
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    v[i] = (x * 2685821657736338717u) | 1;
  }
  printf("\nMiller-Rabin, %d random odd 64-bit numbers, %d per task:\n",
         MR_NUMBERS, MR_BATCH);
  t0 = now();
  for (size_t i = 0; i < MR_NUMBERS; i++)
    primes += pc_miller_rabin(v[i]) == PC_PRIME;
  printf("  in this process:  %6.2fM numbers/s (%" PRIu64 " primes)\n",
         MR_NUMBERS / (now() - t0) / 1e6, primes);
  for (int w = 1; w <= 2 && rc == 0; w++) {
    double per_worker;
    if ((rc = run_mr(v, w, &wall, &primes)) != 0) {
      fprintf(stderr, "bench_primes: Miller-Rabin failed: %s\n",
              pp_strerror(rc));
      break;
    }
    per_worker = MR_NUMBERS / wall / w;
    printf("  %d worker%s:        %6.2fM numbers/s per worker (%.3f s)   "
           "(target >= %.0fM: %s)\n",
           w, w == 1 ? " " : "s", per_worker / 1e6, wall, MR_TARGET / 1e6,
           verdict(per_worker >= MR_TARGET));
  }
  free(v);
  return rc == 0 ? 0 : -1;
}

/* ------------------------------------------- a range through the tool */

/* The user + system seconds of this process's waited-for children so far
 * (the shell of system() and what it ran). */
static double children_cpu(void) {
  struct rusage ru;

  if (getrusage(RUSAGE_CHILDREN, &ru) != 0)
    return 0;
  return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* Runs a shell command (its output sent to /dev/null by the command); 0
 * with the wall time and the CPU time it took (user + system, all its
 * processes), or -1 if it failed. */
static int time_run(const char *cmd, double *wall, double *cpu) {
  double c0 = children_cpu(), t0 = now();
  int rc = system(cmd);

  *wall = now() - t0;
  *cpu = children_cpu() - c0;
  return rc == 0 ? 0 : -1;
}

/* The 10M-number range as CSV on 2 workers and with --sequential, three
 * alternating runs; 0 or -1. The CPU times tell the pool's own cost (what
 * it spends beyond the sequential work) from the wall time lost to other
 * jobs on the machine: two cores kept busy would give 2 * sequential CPU /
 * pool CPU at best. */
static int report_range(void) {
  double pool[COUNT_RUNS], seq[COUNT_RUNS], pool_cpu[COUNT_RUNS],
      seq_cpu[COUNT_RUNS], ratio, cpu_ratio;
  char cmd_pool[256], cmd_seq[256];
  static const char args[] = "--algo mr --range " RANGE " --format csv";

  snprintf(cmd_pool, sizeof cmd_pool, "'%s' %s -w 2 >/dev/null", PRIMES_PATH,
           args);
  snprintf(cmd_seq, sizeof cmd_seq, "'%s' %s --sequential >/dev/null",
           PRIMES_PATH, args);
  printf("\nprimes %s >/dev/null, median of %d alternating runs:\n", args,
         COUNT_RUNS);
  for (int i = 0; i < COUNT_RUNS; i++) {
    if (time_run(cmd_pool, &pool[i], &pool_cpu[i]) != 0 ||
        time_run(cmd_seq, &seq[i], &seq_cpu[i]) != 0) {
      fprintf(stderr, "bench_primes: the range failed\n");
      return -1;
    }
    printf("  run %d: 2 workers %.3f s (CPU %.3f s), --sequential %.3f s "
           "(CPU %.3f s)\n",
           i + 1, pool[i], pool_cpu[i], seq[i], seq_cpu[i]);
    fflush(stdout);
  }
  ratio = median(seq) / median(pool);
  cpu_ratio = median(pool_cpu) / median(seq_cpu);
  printf("CPU of 2 workers / --sequential: %6.3f   (two busy cores allow at "
         "most %.3fx)\n",
         cpu_ratio, 2 / cpu_ratio);
  printf("--sequential / 2 workers:       %6.3f   (target 2 workers >= %.1fx "
         "--sequential: %s)\n",
         ratio, RANGE_TARGET, verdict(ratio >= RANGE_TARGET));
  return 0;
}

/* The fixture against its ideal makespan and Python; 0 or -1. */
static int report_fixture(void) {
  struct timings t;
  double ideal, python;
  int rc, python_primes;

  printf("primes fixture: %d numbers, trial division\n", PC_FIXTURE_COUNT);
  if ((rc = run_procpool(&t)) != 0) {
    fprintf(stderr, "bench_primes: procpool failed: %s\n", pp_strerror(rc));
    return -1;
  }
  ideal = t.sum / t.workers > t.longest ? t.sum / t.workers : t.longest;
  printf("workers:                        %d\n", t.workers);
  printf("primes found:                   %d\n", t.primes);
  printf("sequential (sum of task times): %8.3f s\n", t.sum);
  printf("longest task:                   %8.3f s\n", t.longest);
  printf("ideal makespan:                 %8.3f s\n", ideal);
  printf("procpool wall time:             %8.3f s\n", t.wall);
  printf("procpool / ideal:               %8.3f   (target <= %.2f: %s)\n",
         t.wall / ideal, IDEAL_TARGET, verdict(t.wall / ideal <= IDEAL_TARGET));
  fflush(stdout);
  if (run_python(t.workers, &python, &python_primes) != 0) {
    printf("python ProcessPoolExecutor:     skipped (no working python3)\n");
  } else {
    printf("python ProcessPoolExecutor:     %8.3f s (%d primes)\n", python,
           python_primes);
    printf("python / procpool:              %8.1f   (target >= %.0f: %s)\n",
           python / t.wall, PYTHON_TARGET,
           verdict(python / t.wall >= PYTHON_TARGET));
  }
  fflush(stdout);
  return 0;
}

/* The parts, in the order a full run goes through them. */
static const struct part {
  const char *name;
  int (*report)(void);
} parts[] = {
    {"fixture", report_fixture},
    {"count", report_count},
    {"mr", report_mr},
    {"range", report_range},
};

#define NPARTS (sizeof parts / sizeof parts[0])

/* The part named `name`, or NULL. */
static const struct part *part_named(const char *name) {
  for (size_t i = 0; i < NPARTS; i++)
    if (strcmp(parts[i].name, name) == 0)
      return &parts[i];
  return NULL;
}

/* bench_primes [PART]...: the parts named (fixture, count, mr, range), in
 * the order given; all of them without arguments. */
static void usage(FILE *out) {
  fprintf(out, "usage: bench_primes [PART]...\n"
               "Runs the parts named, in that order, or all of them:\n"
               "  fixture  the 20-number fixture against the ideal makespan "
               "and Python\n"
               "  count    primes --count against the primesieve command\n"
               "  mr       Miller-Rabin over a million random numbers\n"
               "  range    the 10M-number range, 2 workers against "
               "--sequential\n"
               "  -h, --help  this text\n");
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      usage(stdout);
      return 0;
    }
    if (!part_named(argv[i])) {
      fprintf(stderr,
              "bench_primes: unknown part '%s': expected fixture, count, mr "
              "or range (--help lists them)\n",
              argv[i]);
      return 2;
    }
  }
  for (size_t i = 0; argc == 1 && i < NPARTS; i++)
    if (parts[i].report() != 0)
      return 1;
  for (int i = 1; i < argc; i++)
    if (part_named(argv[i])->report() != 0)
      return 1;
  return 0;
}
