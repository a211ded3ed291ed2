/*
 * bench_faults: what worker deaths cost. Runs the same map of tiny tasks
 * twice in one process, once undisturbed and once with a random worker
 * SIGKILLed every 10 ms (and retried), and prints both throughputs and
 * their ratio. Target: the faulty run keeps at least 0.9 of the fault-free
 * throughput. With -m, the master holds that many MiB of heap, written
 * after the pool started, as a program that keeps its data does: what a
 * replacement costs must not grow with it.
 */
#include <procpool.h>

#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct killer {
  pp_pool *pool;
  int period_us;
  volatile int stop;
  int kills;
};

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The work: a few microseconds of arithmetic, so that a run lasts long
 * enough for many deaths. */
static int work(pp_task *t, const void *arg, size_t len) {
  uint64_t x;
  (void)len;
  memcpy(&x, arg, 8);
  for (int i = 0; i < 2000; i++)
    x = x * 6364136223846793005u + 1442695040888963407u;
  return pp_task_return(t, &x, 8);
}

static int count_up(void *state, const void **arg, size_t *len) {
  uint64_t *s = state;
  static uint64_t v;
  if (s[0] >= s[1])
    return 0;
  v = s[0]++;
  *arg = &v;
  *len = 8;
  return 1;
}

static void *kill_loop(void *arg) {
  struct killer *k = arg;
  unsigned seed = 1;
  while (!k->stop) {
    int pids[64];
    int n = pp_pool_worker_pids(k->pool, pids, 64);
    if (n > 0 && kill(pids[rand_r(&seed) % n], SIGKILL) == 0)
      k->kills++;
    usleep((useconds_t)k->period_us);
  }
  return NULL;
}

/* Maps `n` tasks, with a killer when period_us > 0; returns tasks/s and
 * counts the failed items into *failed. */
static double run(int workers, uint64_t n, int period_us, size_t heap_mib,
                  int *kills, uint64_t *failed) {
  pp_options o;
  pp_pool *p;
  pp_map *m;
  uint64_t state[2] = {0, n}, got = 0;
  struct killer k = {0};
  pthread_t th;
  char *heap = NULL;
  const void *d;
  size_t len;
  int rc;
  double t0, t;

  pp_options_init(&o);
  o.workers = workers;
  o.retries = 5;
  if ((rc = pp_pool_create(&p, &o)) != 0) {
    fprintf(stderr, "bench_faults: %s\n", pp_strerror(rc));
    exit(1);
  }
  if (heap_mib && (heap = malloc(heap_mib << 20)) == NULL) {
    fprintf(stderr, "bench_faults: no memory for -m %zu\n", heap_mib);
    exit(1);
  }
  if (heap)
    memset(heap, 1, heap_mib << 20);
  k.pool = p;
  k.period_us = period_us;
  *failed = 0;
  t0 = now();
  if (period_us > 0)
    pthread_create(&th, NULL, kill_loop, &k);
  pp_map_gen(p, work, count_up, state, NULL, &m);
  while ((rc = pp_map_next(m, &d, &len)) != PP_EOF) {
    if (rc != 0)
      (*failed)++;
    got++;
  }
  t = now() - t0;
  if (period_us > 0) {
    k.stop = 1;
    pthread_join(th, NULL);
  }
  pp_map_destroy(m);
  pp_pool_destroy(p);
  free(heap);
  *kills = k.kills;
  return (double)got / t;
}

static void usage(FILE *f) {
  fprintf(f, "usage: bench_faults [-n TASKS] [-w WORKERS] [-k MS] [-m MIB]\n"
             "  -n  tasks per run (default 300000)\n"
             "  -w  workers (default 2)\n"
             "  -k  milliseconds between kills (default 10)\n"
             "  -m  MiB of heap the master writes after the pool starts "
             "(default 0)\n");
}

int main(int argc, char **argv) {
  uint64_t n = 300000, failed_clean, failed_faulty;
  int workers = 2, period_ms = 10, kills_clean, kills, c;
  size_t heap_mib = 0;

  while ((c = getopt(argc, argv, "n:w:k:m:h")) != -1) {
    switch (c) {
    case 'n':
      n = strtoull(optarg, NULL, 10);
      break;
    case 'w':
      workers = atoi(optarg);
      break;
    case 'k':
      period_ms = atoi(optarg);
      break;
    case 'm':
      heap_mib = strtoull(optarg, NULL, 10);
      break;
    case 'h':
      usage(stdout);
      return 0;
    default:
      usage(stderr);
      return 2;
    }
  }
  if (n == 0 || workers < 1 || period_ms < 1) {
    usage(stderr);
    return 2;
  }
  double clean = run(workers, n, 0, heap_mib, &kills_clean, &failed_clean);
  double faulty =
      run(workers, n, period_ms * 1000, heap_mib, &kills, &failed_faulty);
  printf("tasks %llu, workers %d, retries 5, master heap %zu MiB\n",
         (unsigned long long)n, workers, heap_mib);
  printf("fault-free       %10.0f tasks/s\n", clean);
  printf("kill every %3dms %10.0f tasks/s  (%d workers killed, %llu items "
         "failed)\n",
         period_ms, faulty, kills, (unsigned long long)failed_faulty);
  printf("ratio            %10.2f  (target >= 0.90: %s)\n", faulty / clean,
         faulty / clean >= 0.9 ? "met" : "NOT met");
  return 0;
}
