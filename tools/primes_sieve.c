/*
 * --count and --primes-only: the ranges cut into segments that the pool's
 * workers sieve with libprimesieve, merged by the master in order.
 *
 * DESIGN
 * The pool distributes, the library sieves: a task is one segment [a, b)
 * of a range, and its worker calls primesieve (set to one thread in each
 * worker, so that W workers use W cores) and sends back the count, or the
 * primes packed as the first one and 16-bit gaps (every gap between primes
 * below 2^64 is at most 1,550), two bytes a prime instead of eight. An
 * ordered pp_map_gen() over a generator of segments merges the results:
 * the master sums the counts, or prints the primes segment after segment.
 *
 * Segments for a count are cut so that each worker gets about eight
 * (balance), each at least 2^24 numbers (primesieve's setup, O(sqrt(b)),
 * costs nothing measurable next to it) and at most 2^30 (a few tenths of a
 * second, so that Ctrl-C, which waits for running segments, stops soon).
 * Segments for a list hold 2^22 numbers, so that a result has at most
 * 2^21 + 1 primes and the results in flight (two per worker) stay small.
 */
#include "primes.h"

#include <errno.h>
#include <inttypes.h>
#include <primesieve.h>
#include <stdlib.h>
#include <string.h>

#define COUNT_SEGMENTS_PER_WORKER 8
#define COUNT_SEGMENT_MIN ((uint64_t)1 << 24)
#define COUNT_SEGMENT_MAX ((uint64_t)1 << 30)
#define LIST_SEGMENT ((uint64_t)1 << 22)
#define LIST_WINDOW_PER_WORKER 2

/* A task's argument: the numbers [a, b). */
struct segment {
  uint64_t a, b;
};

/* The head of a packed list: `count` primes, the first one, then count - 1
 * gaps of type uint16_t. */
struct packed {
  uint64_t count;
  uint64_t first;
};

/* The largest list result: the head and a gap for every other number. */
#define LIST_PAYLOAD (sizeof(struct packed) + LIST_SEGMENT + 64)

/* The generator's walk over the ranges, segment by segment. */
struct segments {
  const struct inputs *in;
  size_t range;
  uint64_t next; /* start of the next segment in the current range */
  uint64_t size; /* numbers per segment */
  struct segment current;
};

/* ------------------------------------------------------------ tasks */

/* Each worker sieves on one thread: the pool gives the parallelism. */
static int one_thread(void *arg) {
  (void)arg;
  primesieve_set_num_threads(1);
  return 0;
}

/* The segment of a task's argument, or -1. */
static int read_segment(const void *arg, size_t len, struct segment *s) {
  if (len != sizeof *s)
    return -1;
  memcpy(s, arg, sizeof *s);
  return s->a < s->b ? 0 : -1;
}

/* The primes of [a, b); primesieve's interval is closed. */
static uint64_t count_segment(const struct segment *s) {
  return primesieve_count_primes(s->a, s->b - 1);
}

static int count_task(pp_task *task, const void *arg, size_t len) {
  struct segment s;
  uint64_t count;

  if (read_segment(arg, len, &s) != 0)
    return pp_task_fail(task, EINVAL, "not a segment");
  count = count_segment(&s);
  return pp_task_return(task, &count, sizeof count);
}

/* The primes of [a, b) packed into a new buffer of *len bytes (OUT); NULL
 * when out of memory or when primesieve failed. */
static void *pack_segment(const struct segment *s, size_t *len) {
  struct packed head = {0, 0};
  uint64_t *primes;
  size_t n = 0;
  char *buf;

  errno = 0;
  primes = primesieve_generate_primes(s->a, s->b - 1, &n, UINT64_PRIMES);
  if (!primes && errno)
    return NULL;
  *len = sizeof head + (n > 1 ? (n - 1) * sizeof(uint16_t) : 0);
  if ((buf = malloc(*len)) != NULL) {
    head.count = n;
    head.first = n ? primes[0] : 0;
    memcpy(buf, &head, sizeof head);
    for (size_t i = 1; i < n; i++) {
      uint16_t gap = (uint16_t)(primes[i] - primes[i - 1]);
      memcpy(buf + sizeof head + (i - 1) * sizeof gap, &gap, sizeof gap);
    }
  }
  primesieve_free(primes);
  return buf;
}

static int list_task(pp_task *task, const void *arg, size_t len) {
  struct segment s;
  size_t out_len;
  void *out;
  int rc;

  if (read_segment(arg, len, &s) != 0)
    return pp_task_fail(task, EINVAL, "not a segment");
  if (!(out = pack_segment(&s, &out_len)))
    return pp_task_fail(task, ENOMEM, "cannot list the primes");
  rc = pp_task_return(task, out, out_len);
  free(out);
  return rc;
}

/* Named, so that MPI ranks find them (harmless on the other engines). */
PP_TASK(count, count_task);
PP_TASK(list, list_task);

/* --------------------------------------------------------- segments */

/* Numbers per segment for this run. */
static uint64_t segment_size(const struct config *cfg, uint64_t total,
                             int workers) {
  uint64_t size;

  if (cfg->sieve == SIEVE_PRIMES)
    return LIST_SEGMENT;
  size = total / ((uint64_t)workers * COUNT_SEGMENTS_PER_WORKER) + 1;
  if (size < COUNT_SEGMENT_MIN)
    size = COUNT_SEGMENT_MIN;
  return size > COUNT_SEGMENT_MAX ? COUNT_SEGMENT_MAX : size;
}

/* The next segment in range order: 1 with it in *s, 0 at the end. */
static int next_segment(struct segments *g, struct segment *s) {
  const struct inputs *in = g->in;

  for (; g->range < in->nranges; g->range++) {
    const struct range *r = &in->ranges[g->range];
    if (g->next < r->a)
      g->next = r->a;
    if (g->next < r->b) {
      s->a = g->next;
      s->b = r->b - g->next > g->size ? g->next + g->size : r->b;
      g->next = s->b;
      return 1;
    }
    g->next = 0;
  }
  return 0;
}

/* pp_gen_fn over the segments. */
static int gen_segments(void *state, const void **arg, size_t *len) {
  struct segments *g = state;

  if (!next_segment(g, &g->current))
    return 0;
  *arg = &g->current;
  *len = sizeof g->current;
  return 1;
}

/* ------------------------------------------------------------ merge */

/* What the master has merged so far. */
struct merge {
  enum format format;
  uint64_t count; /* primes counted or printed */
  int incomplete; /* a segment failed: no count can be given */
};

/* Prints the primes of a packed list; -1 if it is malformed. */
static int merge_list(struct merge *m, const void *data, size_t len) {
  const char *gaps = (const char *)data + sizeof(struct packed);
  struct packed head;
  uint64_t p;

  if (len < sizeof head)
    return -1;
  memcpy(&head, data, sizeof head);
  if (len != sizeof head + (head.count ? head.count - 1 : 0) * 2)
    return -1;
  p = head.first;
  for (uint64_t i = 0; i < head.count; i++) {
    uint16_t gap;
    if (i > 0) {
      memcpy(&gap, gaps + (i - 1) * sizeof gap, sizeof gap);
      p += gap;
    }
    output_prime(m->format, p, m->count++ == 0);
  }
  return 0;
}

/* Adds one segment's result to the merge; -1 if it is malformed. */
static int merge_result(struct merge *m, enum sieve sieve, const void *data,
                        size_t len) {
  uint64_t count;

  if (sieve == SIEVE_PRIMES)
    return merge_list(m, data, len);
  if (len != sizeof count)
    return -1;
  memcpy(&count, data, sizeof count);
  m->count += count;
  return 0;
}

/* The segment at `index` of the walk, to name a failed one. */
static struct segment segment_at(const struct segments *g, size_t index) {
  struct segments again = {.in = g->in, .size = g->size};
  struct segment s = {0, 0};

  for (size_t i = 0; i <= index && next_segment(&again, &s); i++)
    ;
  return s;
}

/* A segment whose task failed goes to standard error. */
static void report_segment(const struct segment *s, int rc, const char *msg) {
  fprintf(stderr, "primes: segment %" PRIu64 ":%" PRIu64 ": %s (%s)%s%s\n",
          s->a, s->b, pp_strerror(rc), pp_errname(rc), *msg ? ": " : "", msg);
}

/* ------------------------------------------------------------ modes */

/* The baseline: every segment in this process, on one thread. */
static int sieve_sequential(const struct config *cfg, struct segments *g,
                            struct merge *m) {
  struct segment s;
  size_t len;
  void *data;

  one_thread(NULL);
  while (!interrupted && next_segment(g, &s)) {
    uint64_t count;
    if (cfg->sieve == SIEVE_COUNT) {
      count = count_segment(&s);
      merge_result(m, cfg->sieve, &count, sizeof count);
      continue;
    }
    if (!(data = pack_segment(&s, &len))) {
      fputs("primes: out of memory\n", stderr);
      return EXIT_FAILED;
    }
    merge_result(m, cfg->sieve, data, len);
    free(data);
  }
  return interrupted ? EXIT_INTERRUPTED : 0;
}

/* The segments on the pool, merged in order. */
static int sieve_map(const struct config *cfg, pp_pool *pool,
                     struct segments *g, struct merge *m) {
  pp_map_options mo = {.task_timeout = cfg->task_timeout};
  pp_task_fn fn = cfg->sieve == SIEVE_COUNT ? count_task : list_task;
  struct segment s;
  const void *data;
  size_t len;
  pp_map *map;
  int rc, status = 0;

  if (cfg->sieve == SIEVE_PRIMES)
    mo.window = (size_t)LIST_WINDOW_PER_WORKER * (size_t)pp_pool_workers(pool);
  if ((rc = pp_map_gen(pool, fn, gen_segments, g, &mo, &map)) != 0) {
    fprintf(stderr, "primes: cannot start the map: %s\n", pp_strerror(rc));
    return EXIT_FAILED;
  }
  while (!interrupted && (rc = pp_map_next(map, &data, &len)) != PP_EOF) {
    if (interrupted)
      break;
    if (rc == 0 && merge_result(m, cfg->sieve, data, len) == 0)
      continue;
    status = EXIT_FAILED;
    m->incomplete = 1;
    s = segment_at(g, pp_map_index(map));
    report_segment(&s, rc ? rc : PP_ETASK, pp_map_message(map));
  }
  pp_map_destroy(map);
  return interrupted ? EXIT_INTERRUPTED : status;
}

/* The pool's options for a sieve: one thread in each worker (also in the
 * workers of MPI ranks, each of which passes its own one_thread), and room
 * for a segment's list of primes. */
void sieve_options(const struct config *cfg, pp_options *opts) {
  opts->initializer = one_thread;
  if (cfg->sieve == SIEVE_PRIMES) {
    opts->max_payload = LIST_PAYLOAD;
    opts->ring_capacity = 2 * LIST_PAYLOAD;
  }
}

/* Sieves on `pool` (NULL: sequential), prints the count or the end of the
 * list, and destroys the pool. t0: when the run started. */
int run_sieve(const struct config *cfg, const struct inputs *in, pp_pool *pool,
              double t0) {
  struct segments g = {.in = in};
  struct merge m = {.format = cfg->format};
  int status;

  g.size = segment_size(cfg, in->count, pool ? pp_pool_workers(pool) : 1);
  if (cfg->sieve == SIEVE_PRIMES)
    output_primes_begin(cfg->format);
  status = pool ? sieve_map(cfg, pool, &g, &m) : sieve_sequential(cfg, &g, &m);
  pp_pool_destroy(pool);
  if (status == EXIT_INTERRUPTED)
    return stopped_by_signal(0);
  if (cfg->sieve == SIEVE_PRIMES)
    output_primes_end(cfg->format, m.count > 0);
  else if (m.incomplete)
    fputs("primes: a segment failed: no count\n", stderr);
  else
    output_count(cfg->format, m.count, now() - t0);
  return status;
}
