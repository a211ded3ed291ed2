/*
 * The tiny-task measurement shared by bench_throughput and bench_engines:
 * a task that squares an int64, run through an unchunked or chunked map
 * and through submit + as_completed, with every result checked.
 */
#include "tiny.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double tiny_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void tiny_die(const char *what, int rc) {
  fprintf(stderr, "%s: %s: %s\n", program_invocation_short_name, what,
          pp_strerror(rc));
  exit(1);
}

/* Formats v with thousands separators ("1,234,567"). */
const char *tiny_commas(double v, char *buf, size_t size) {
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

int tiny_square(pp_task *t, const void *arg, size_t len) {
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

uint64_t tiny_read_u64(const void *data, size_t len) {
  uint64_t v = 0;
  if (len == sizeof v)
    memcpy(&v, data, sizeof v);
  return v;
}

/* -------------------------------------------------------- throughput */

/* Tasks per second of a map over 0 .. n-1 with `chunk` arguments a task. */
double tiny_bench_map(pp_pool *pool, long n, long chunk) {
  struct counter c = {0, n, 0};
  pp_map_options mo = {.chunksize = (size_t)chunk};
  uint64_t sum = 0;
  const void *data;
  size_t len;
  pp_map *m;
  double t0 = tiny_now();
  int rc;

  if ((rc = pp_map_gen(pool, tiny_square, counter_gen, &c, &mo, &m)) != 0)
    tiny_die("pp_map_gen", rc);
  while ((rc = pp_map_next(m, &data, &len)) == 0)
    sum += tiny_read_u64(data, len);
  if (rc != PP_EOF)
    tiny_die("pp_map_next", rc);
  pp_map_destroy(m);
  t0 = tiny_now() - t0;
  if (sum != expected_sum(n))
    tiny_die("map results", PP_EINVAL);
  return (double)n / t0;
}

/* Tasks per second of submitting n futures, then taking them as they
 * complete. */
double tiny_bench_submit(pp_pool *pool, long n) {
  pp_future **fs = malloc((size_t)n * sizeof *fs), *f;
  pp_completed *it;
  uint64_t sum = 0;
  const void *data;
  size_t len;
  double t0 = tiny_now();
  int rc;

  if (!fs)
    tiny_die("malloc", PP_ENOMEM);
  for (int64_t x = 0; x < n; x++)
    if ((rc = pp_submit(pool, tiny_square, &x, sizeof x, &fs[x])) != 0)
      tiny_die("pp_submit", rc);
  if ((rc = pp_as_completed(fs, (size_t)n, PP_FOREVER, &it)) != 0)
    tiny_die("pp_as_completed", rc);
  while ((rc = pp_completed_next(it, &f)) == 0) {
    if ((rc = pp_future_result(f, 0, &data, &len)) != 0)
      tiny_die("pp_future_result", rc);
    sum += tiny_read_u64(data, len);
  }
  pp_completed_destroy(it);
  for (long i = 0; i < n; i++)
    pp_future_release(fs[i]);
  t0 = tiny_now() - t0;
  free(fs);
  if (sum != expected_sum(n))
    tiny_die("as_completed results", PP_EINVAL);
  return (double)n / t0;
}

/* Whether `name` is an executable on the PATH. */
int tiny_on_path(const char *name) {
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

void tiny_parse_args(int argc, char **argv, struct tiny_config *cfg,
                     void (*usage)(FILE *out)) {
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
  if (optind < argc || cfg->n < 2 || cfg->workers < 1 || cfg->chunk < 1 ||
      cfg->py_n < 1) {
    usage(stderr);
    exit(2);
  }
}
