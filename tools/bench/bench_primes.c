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
 */
#include "primes_core.h"

#include <procpool.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define IDEAL_TARGET 1.05
#define PYTHON_TARGET 10.0

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

/* What the task sends back, as in tools/primes.c. */
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

int main(void) {
  struct timings t;
  double ideal, python;
  int rc, python_primes;

  printf("primes fixture: %d numbers, trial division\n", PC_FIXTURE_COUNT);
  if ((rc = run_procpool(&t)) != 0) {
    fprintf(stderr, "bench_primes: procpool failed: %s\n", pp_strerror(rc));
    return 1;
  }
  ideal = t.sum / t.workers > t.longest ? t.sum / t.workers : t.longest;
  printf("workers:                        %d\n", t.workers);
  printf("primes found:                   %d\n", t.primes);
  printf("sequential (sum of task times): %8.3f s\n", t.sum);
  printf("longest task:                   %8.3f s\n", t.longest);
  printf("ideal makespan:                 %8.3f s\n", ideal);
  printf("procpool wall time:             %8.3f s\n", t.wall);
  printf("procpool / ideal:               %8.3f   (target <= %.2f: %s)\n",
         t.wall / ideal, IDEAL_TARGET,
         t.wall / ideal <= IDEAL_TARGET ? "met" : "MISSED");
  fflush(stdout);
  if (run_python(t.workers, &python, &python_primes) != 0) {
    printf("python ProcessPoolExecutor:     skipped (no working python3)\n");
    return 0;
  }
  printf("python ProcessPoolExecutor:     %8.3f s (%d primes)\n", python,
         python_primes);
  printf("python / procpool:              %8.1f   (target >= %.0f: %s)\n",
         python / t.wall, PYTHON_TARGET,
         python / t.wall >= PYTHON_TARGET ? "met" : "MISSED");
  return 0;
}
