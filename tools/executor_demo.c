/*
 * executor-demo: three classic examples of Fluent Python's chapter on
 * concurrent executors, run on procpool.
 *
 * DESIGN
 *   One subcommand per example, each a short function over the public API
 *   with the engine picked by --engine, so that the same code runs on
 *   threads and on processes, which is the chapter's point. `map` is
 *   demo_executor_map.py: loiter tasks print as they start and end while
 *   the main program prints the results in order as pp_map_next() yields
 *   them. `futures` is flags_threadpool_futures.py: five downloads
 *   submitted one by one, their futures printed when scheduled and again
 *   as pp_as_completed() yields them. `overhead` times a trivial map on a
 *   fresh executor of each engine, and what a process pool takes to start
 *   and to give its first result.
 *
 *   Every line is written with one stdio call and flushed at once: the
 *   workers of the process engine share the master's stdout, possibly a
 *   pipe, and lines must interleave in time order as they do in Python.
 *   The master also flushes before creating a pool, so that forked workers
 *   inherit no buffered output.
 */
#include <procpool.h>

#include <curl/curl.h>

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PROG "executor-demo"
#define DEMO_WORKERS 3        /* max_workers=3, as in both classics */
#define LOITER_TASKS 5        /* range(5) */
#define FUTURES_CODES 5       /* cc_list[:5] */
#define SQRT_TASKS 20         /* square roots of 0..19 */
#define FETCH_TIMEOUT_MS 6100 /* the classics' timeout=6.1 */
#define LOCAL_URL "http://localhost:8000/flags"
#define MAX_SERVER 1024 /* longest -s accepted */
#define MAX_DIR 1024    /* longest -o accepted */
#define MAX_ERROR (MAX_SERVER + MAX_DIR + CURL_ERROR_SIZE + 64)

enum { OPT_ENGINE = 256 };

struct config {
  pp_engine engine;
  int engine_set;     /* --engine given */
  const char *server; /* futures: base URL */
  const char *dir;    /* futures: output directory */
  long runs;          /* overhead: runs per measurement */
};

struct command {
  const char *name;
  const char *shortopts; /* besides --engine and --help */
  int (*run)(const struct config *cfg);
};

static const struct option longopts[] = {
    {"engine", required_argument, NULL, OPT_ENGINE},
    {"help", no_argument, NULL, 'h'},
    {"server", required_argument, NULL, 's'},
    {"output", required_argument, NULL, 'o'},
    {"runs", required_argument, NULL, 'r'},
    {NULL, 0, NULL, 0}};

static const char usage_text[] =
    "usage: " PROG " map      [--engine E]\n"
    "       " PROG " futures  [--engine E] -s URL [-o DIR]\n"
    "       " PROG " overhead [--engine E] [-r N]\n"
    "       " PROG " --help\n"
    "Fluent Python's chapter-20 executor examples on procpool.\n"
    "  map       the loiter experiment (demo_executor_map.py)\n"
    "  futures   five flags by submit and as_completed\n"
    "            (flags_threadpool_futures.py)\n"
    "  overhead  what a thread and a process executor cost to start\n"
    "Options:\n"
    "  --engine E        threads or processes (map, futures: threads;\n"
    "                    overhead: both unless given)\n"
    "  -s, --server URL  flag server base URL; LOCAL means\n"
    "                    " LOCAL_URL "\n"
    "  -o, --output DIR  where the GIFs go (default: downloaded)\n"
    "  -r, --runs N      runs per measurement (default: 20)\n"
    "      --version     the version\n"
    "  -h, --help        this text\n";

static mode_t file_mode = 0644; /* for downloaded flags; set by futures */

/* Prints a usage error and exits 2. */
static void usage_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));
static void usage_error(const char *fmt, ...) {
  va_list ap;

  fputs(PROG ": ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputs("\nTry '" PROG " --help'.\n", stderr);
  exit(2);
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *engine_name(pp_engine engine) {
  return engine == PP_ENGINE_THREADS ? "threads" : "processes";
}

/* Python's display(): "[HH:MM:SS] " and the message, as one write. */
static void display(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void display(const char *fmt, ...) {
  char stamp[16], msg[256];
  time_t t = time(NULL);
  struct tm tm;
  va_list ap;

  localtime_r(&t, &tm);
  strftime(stamp, sizeof stamp, "[%H:%M:%S]", &tm);
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  printf("%s %s\n", stamp, msg);
  fflush(stdout);
}

/* Creates a pool of `workers` (0: the engine's default) on `engine`;
 * prints why on failure. */
static int make_pool(pp_engine engine, int workers, pp_pool **pool) {
  pp_options opts;
  int rc;

  pp_options_init(&opts);
  opts.engine = engine;
  opts.workers = workers;
  fflush(stdout);
  if ((rc = pp_pool_create(pool, &opts)) < 0)
    fprintf(stderr, PROG ": cannot create a %s pool: %s\n", engine_name(engine),
            pp_strerror(rc));
  return rc;
}

/* ---------------------------------------------------------------- map */

/* The classic loiter(n): says it starts, sleeps n seconds, says it is
 * done, returns n * 10. */
static int loiter_task(pp_task *task, const void *arg, size_t len) {
  static const char tabs[] = "\t\t\t\t\t\t\t\t";
  int64_t n;

  if (len != sizeof n)
    return pp_task_fail(task, 1, "malformed argument");
  memcpy(&n, arg, sizeof n);
  if (n < 0 || n >= (int64_t)sizeof tabs)
    return pp_task_fail(task, 1, "n out of range: %" PRId64, n);
  display("%.*sloiter(%d): doing nothing for %ds...", (int)n, tabs, (int)n,
          (int)n);
  sleep((unsigned)n);
  display("%.*sloiter(%d): done.", (int)n, tabs, (int)n);
  n *= 10;
  return pp_task_return(task, &n, sizeof n);
}

/* Prints the results of `map` in order as they become available; returns
 * the number of failed items, or -1 if the map itself failed. */
static int print_results(pp_map *map) {
  const void *data;
  size_t len;
  int64_t v;
  int rc, failed = 0;

  while ((rc = pp_map_next(map, &data, &len)) != PP_EOF) {
    if (rc == 0 && len == sizeof v) {
      memcpy(&v, data, sizeof v);
      display("result %zu: %" PRId64, pp_map_index(map), v);
      continue;
    }
    if (rc == 0 || rc == PP_ETASK || rc == PP_ECRASHED) {
      display("result %zu failed: %s %s", pp_map_index(map), pp_errname(rc),
              pp_map_message(map));
      failed++;
      continue;
    }
    fprintf(stderr, PROG ": map: %s\n", pp_strerror(rc));
    return -1;
  }
  return failed;
}

static int cmd_map(const struct config *cfg) {
  int64_t n[LOITER_TASKS];
  const void *args[LOITER_TASKS];
  size_t lens[LOITER_TASKS];
  pp_pool *pool;
  pp_map *map;
  int rc;

  for (int i = 0; i < LOITER_TASKS; i++) {
    n[i] = i;
    args[i] = &n[i];
    lens[i] = sizeof n[i];
  }
  display("Script starting.");
  if (make_pool(cfg->engine, DEMO_WORKERS, &pool) < 0)
    return 1;
  if ((rc = pp_map_array(pool, loiter_task, args, lens, LOITER_TASKS, NULL,
                         &map)) < 0) {
    fprintf(stderr, PROG ": pp_map_array: %s\n", pp_strerror(rc));
    pp_pool_destroy(pool);
    return 1;
  }
  display("results: <pp_map at %p>", (void *)map);
  display("Waiting for individual results:");
  rc = print_results(map);
  pp_map_destroy(map);
  pp_pool_destroy(pool);
  return rc == 0 ? 0 : 1;
}

/* ------------------------------------------------------------ futures */

/* A download's argument: "CC\0BASE\0DIR\0". Finds the three strings;
 * returns 0 if the bytes are malformed. */
static int unpack(const void *arg, size_t len, const char **cc,
                  const char **base, const char **dir) {
  const char *p = arg, *end = p + len;

  if (len < 4 || p[len - 1] != '\0' || strlen(p) != 2)
    return 0;
  *cc = p;
  *base = p + 3;
  if (*base >= end)
    return 0;
  *dir = *base + strlen(*base) + 1;
  return *dir < end;
}

/* Downloads BASE/cc/cc.gif into DIR/cc.gif (cc in lower case) on a new
 * easy handle, through a temporary file renamed into place once the whole
 * body is in. Returns 0, or -1 with the reason in err. */
static int download_flag(const char *cc, const char *base, const char *dir,
                         char *err, size_t errsize) {
  char lc[3] = {(char)tolower((unsigned char)cc[0]),
                (char)tolower((unsigned char)cc[1]), '\0'};
  char url[MAX_SERVER + 16], tmp[MAX_DIR + 16], dest[MAX_DIR + 16];
  char curlerr[CURL_ERROR_SIZE] = "";
  CURL *easy = curl_easy_init();
  FILE *f = NULL;
  CURLcode res;
  long http = 0;
  int fd = -1, rc = -1;

  snprintf(url, sizeof url, "%s/%s/%s.gif", base, lc, lc);
  snprintf(dest, sizeof dest, "%s/%s.gif", dir, lc);
  snprintf(tmp, sizeof tmp, "%s/.%s.gif.XXXXXX", dir, lc);
  if (!easy) {
    snprintf(err, errsize, "cannot create a curl handle");
    goto out;
  }
  if ((fd = mkstemp(tmp)) < 0 || fchmod(fd, file_mode) < 0 ||
      !(f = fdopen(fd, "wb"))) {
    snprintf(err, errsize, "%s: %s", tmp, strerror(errno));
    goto out;
  }
  curl_easy_setopt(easy, CURLOPT_URL, url);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, f);
  curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, curlerr);
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long)FETCH_TIMEOUT_MS);
  res = curl_easy_perform(easy);
  curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &http);
  if (res != CURLE_OK)
    snprintf(err, errsize, "%s: %s", url,
             *curlerr ? curlerr : curl_easy_strerror(res));
  else if (http != 200)
    snprintf(err, errsize, "HTTP %ld for %s", http, url);
  else if (fflush(f) != 0 || rename(tmp, dest) < 0)
    snprintf(err, errsize, "%s: %s", dest, strerror(errno));
  else
    rc = 0;
out:
  if (f)
    fclose(f);
  else if (fd >= 0)
    close(fd);
  if (rc < 0 && fd >= 0)
    unlink(tmp);
  curl_easy_cleanup(easy);
  return rc;
}

/* The classic download_one(cc): fetches and saves the flag, prints the
 * code, returns it. */
static int download_task(pp_task *task, const void *arg, size_t len) {
  const char *cc, *base, *dir;
  char err[MAX_ERROR];

  if (!unpack(arg, len, &cc, &base, &dir))
    return pp_task_fail(task, 1, "malformed argument");
  if (download_flag(cc, base, dir, err, sizeof err) < 0)
    return pp_task_fail(task, 1, "%s", err);
  printf("%s ", cc);
  fflush(stdout);
  return pp_task_return(task, cc, 2);
}

static int compare_codes(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Gives a worker a moment to take `fut`, as Python's submit() does by
 * starting a thread per call while fewer than max_workers run: the first
 * futures then print as running, the later ones as pending. */
static void let_start(pp_future *fut) {
  struct timespec pause = {0, 200000};

  for (int i = 0; i < 100 && pp_future_state(fut) == PP_PENDING; i++)
    nanosleep(&pause, NULL);
}

/* Submits a download of each code, printing each future as scheduled;
 * returns how many were submitted. */
static size_t submit_all(pp_pool *pool, const struct config *cfg,
                         const char **codes, pp_future **futures) {
  char arg[MAX_SERVER + MAX_DIR + 8], buf[256];
  size_t i;

  for (i = 0; i < FUTURES_CODES; i++) {
    int len = snprintf(arg, sizeof arg, "%s%c%s%c%s", codes[i], '\0',
                       cfg->server, '\0', cfg->dir);
    int rc = pp_submit(pool, download_task, arg, (size_t)len + 1, &futures[i]);
    if (rc < 0) {
      fprintf(stderr, PROG ": cannot submit %s: %s\n", codes[i],
              pp_strerror(rc));
      break;
    }
    if (i < DEMO_WORKERS)
      let_start(futures[i]);
    pp_future_format(futures[i], buf, sizeof buf);
    printf("Scheduled for %s: %s\n", codes[i], buf);
    fflush(stdout);
  }
  return i;
}

/* Prints each of futures[0..n) as it completes, with its result; returns
 * how many succeeded. */
static int print_completed(pp_future **futures, size_t n) {
  pp_completed *it;
  pp_future *fut;
  const void *data;
  size_t len;
  char buf[MAX_ERROR + 128];
  int ok = 0, rc = pp_as_completed(futures, n, PP_FOREVER, &it);

  if (rc < 0) {
    fprintf(stderr, PROG ": pp_as_completed: %s\n", pp_strerror(rc));
    return 0;
  }
  while (pp_completed_next(it, &fut) == 0) {
    pp_future_format(fut, buf, sizeof buf);
    if (pp_future_result(fut, 0, &data, &len) == 0) {
      printf("%s result: '%.*s'\n", buf, (int)len, (const char *)data);
      ok++;
    } else {
      printf("%s\n", buf);
    }
    fflush(stdout);
  }
  pp_completed_destroy(it);
  return ok;
}

static int cmd_futures(const struct config *cfg) {
  static const char *const pop20_head[FUTURES_CODES] = {"CN", "IN", "US", "ID",
                                                        "BR"};
  const char *codes[FUTURES_CODES];
  pp_future *futures[FUTURES_CODES];
  pp_pool *pool;
  size_t submitted;
  mode_t mask;
  double t0;
  int ok;

  memcpy(codes, pop20_head, sizeof codes);
  qsort(codes, FUTURES_CODES, sizeof *codes, compare_codes);
  mask = umask(0);
  umask(mask);
  file_mode = 0666 & ~mask;
  if (mkdir(cfg->dir, 0777) < 0 && errno != EEXIST) {
    fprintf(stderr, PROG ": cannot create %s: %s\n", cfg->dir, strerror(errno));
    return 1;
  }
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    fprintf(stderr, PROG ": cannot initialise libcurl\n");
    return 1;
  }
  t0 = now();
  if (make_pool(cfg->engine, DEMO_WORKERS, &pool) < 0) {
    curl_global_cleanup();
    return 1;
  }
  submitted = submit_all(pool, cfg, codes, futures);
  ok = print_completed(futures, submitted);
  for (size_t i = 0; i < submitted; i++)
    pp_future_release(futures[i]);
  pp_pool_destroy(pool);
  printf("\n%d downloads in %.2fs\n", ok, now() - t0);
  curl_global_cleanup();
  return ok == FUTURES_CODES ? 0 : 1;
}

/* ----------------------------------------------------------- overhead */

struct stats {
  double mean, stdev; /* milliseconds */
};

/* Mean and sample standard deviation of v[0..n), seconds to ms. */
static struct stats stats_ms(const double *v, long n) {
  struct stats s = {0, 0};
  double ss = 0;

  for (long i = 0; i < n; i++)
    s.mean += v[i] * 1e3;
  s.mean /= (double)n;
  for (long i = 0; i < n; i++)
    ss += (v[i] * 1e3 - s.mean) * (v[i] * 1e3 - s.mean);
  s.stdev = n > 1 ? sqrt(ss / (double)(n - 1)) : 0;
  return s;
}

static int sqrt_task(pp_task *task, const void *arg, size_t len) {
  double x;

  if (len != sizeof x)
    return pp_task_fail(task, 1, "malformed argument");
  memcpy(&x, arg, sizeof x);
  x = sqrt(x);
  return pp_task_return(task, &x, sizeof x);
}

/* Takes every result of `map`, checking each against sqrt(i). */
static int collect_roots(pp_map *map) {
  const void *data;
  size_t len;
  double r;
  int rc;

  while ((rc = pp_map_next(map, &data, &len)) == 0) {
    if (len != sizeof r)
      return PP_EINVAL;
    memcpy(&r, data, sizeof r);
    if (r != sqrt((double)pp_map_index(map)))
      return PP_EINVAL;
  }
  return rc == PP_EOF ? 0 : rc;
}

/* One run: creates an executor on `engine`, maps sqrt over 0..19,
 * collects, destroys. Stores its seconds in *secs and its workers in
 * *workers; returns 0 or a PP_E* code. */
static int time_map_run(pp_engine engine, double *secs, int *workers) {
  double x[SQRT_TASKS], t0 = now();
  const void *args[SQRT_TASKS];
  size_t lens[SQRT_TASKS];
  pp_pool *pool;
  pp_map *map;
  int rc;

  for (int i = 0; i < SQRT_TASKS; i++) {
    x[i] = i;
    args[i] = &x[i];
    lens[i] = sizeof x[i];
  }
  if ((rc = make_pool(engine, 0, &pool)) < 0)
    return rc;
  *workers = pp_pool_workers(pool);
  rc = pp_map_array(pool, sqrt_task, args, lens, SQRT_TASKS, NULL, &map);
  if (rc == 0) {
    rc = collect_roots(map);
    pp_map_destroy(map);
  }
  pp_pool_destroy(pool);
  *secs = now() - t0;
  return rc;
}

/* Times pp_pool_create() of a process pool, then one task from submit to
 * result, into *create and *first (seconds). */
static int time_first_result(double *create, double *first) {
  double x = 2, t0 = now();
  pp_future *fut;
  pp_pool *pool;
  int rc;

  if ((rc = make_pool(PP_ENGINE_PROCESSES, 0, &pool)) < 0)
    return rc;
  *create = now() - t0;
  t0 = now();
  if ((rc = pp_submit(pool, sqrt_task, &x, sizeof x, &fut)) == 0) {
    rc = pp_future_result(fut, PP_FOREVER, NULL, NULL);
    pp_future_release(fut);
  }
  *first = now() - t0;
  pp_pool_destroy(pool);
  return rc;
}

/* Times `runs` map runs on `engine` and prints them; returns the mean in
 * ms, or -1. */
static double report_engine(pp_engine engine, double *t, long runs) {
  struct stats s;
  int workers = 0, rc;

  for (long i = 0; i < runs; i++)
    if ((rc = time_map_run(engine, &t[i], &workers)) < 0) {
      fprintf(stderr, PROG ": %s run: %s\n", engine_name(engine),
              pp_strerror(rc));
      return -1;
    }
  s = stats_ms(t, runs);
  printf("%-10s mean %.2f ms  stdev %.2f ms  (%ld runs, %d workers)\n",
         engine == PP_ENGINE_THREADS ? "threads:" : "processes:", s.mean,
         s.stdev, runs, workers);
  return s.mean;
}

/* Times the process pool's start and first result and prints them. */
static int report_latency(double *create, double *first, long runs) {
  struct stats c, f;
  int rc;

  for (long i = 0; i < runs; i++)
    if ((rc = time_first_result(&create[i], &first[i])) < 0) {
      fprintf(stderr, PROG ": first result: %s\n", pp_strerror(rc));
      return -1;
    }
  c = stats_ms(create, runs);
  f = stats_ms(first, runs);
  printf("process pool creation (pp_pool_create):    mean %.2f ms  stdev "
         "%.2f ms\n",
         c.mean, c.stdev);
  printf("process pool first result (submit..result): mean %.2f ms  stdev "
         "%.2f ms\n",
         f.mean, f.stdev);
  return 0;
}

static int cmd_overhead(const struct config *cfg) {
  int threads = !cfg->engine_set || cfg->engine == PP_ENGINE_THREADS;
  int procs = !cfg->engine_set || cfg->engine == PP_ENGINE_PROCESSES;
  double *a = calloc((size_t)cfg->runs, sizeof *a);
  double *b = calloc((size_t)cfg->runs, sizeof *b);
  double mean[2] = {0, 0};
  int rc = 1;

  if (!a || !b) {
    fprintf(stderr, PROG ": out of memory\n");
    goto out;
  }
  printf("sqrt of 0..%d on a new executor per run (create, map, collect, "
         "destroy):\n",
         SQRT_TASKS - 1);
  if (threads && (mean[0] = report_engine(PP_ENGINE_THREADS, a, cfg->runs)) < 0)
    goto out;
  if (procs && (mean[1] = report_engine(PP_ENGINE_PROCESSES, a, cfg->runs)) < 0)
    goto out;
  if (procs && report_latency(a, b, cfg->runs) < 0)
    goto out;
  if (threads && procs && mean[0] > 0)
    printf("processes / threads: %.1fx\n", mean[1] / mean[0]);
  printf("Lesson: processes cost more to start; their worth is CPU-bound "
         "work.\n");
  rc = 0;
out:
  free(a);
  free(b);
  return rc;
}

/* --------------------------------------------------------------- main */

static const struct command commands[] = {
    {"map", "h", cmd_map},
    {"futures", "hs:o:", cmd_futures},
    {"overhead", "hr:", cmd_overhead},
};

static const struct command *find_command(const char *name) {
  for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
    if (strcmp(name, commands[i].name) == 0)
      return &commands[i];
  return NULL;
}

/* The long name of option `c`, for messages. */
static const char *option_name(int c) {
  for (const struct option *o = longopts; o->name; o++)
    if (o->val == c)
      return o->name;
  return "?";
}

/* Reads one option of `cmd` into cfg; exits on --help or a bad value. */
static void parse_option(const struct command *cmd, int c, const char *arg,
                         struct config *cfg) {
  char *end;

  if (c != OPT_ENGINE && !strchr(cmd->shortopts, c))
    usage_error("option --%s does not apply to '%s'", option_name(c),
                cmd->name);
  switch (c) {
  case OPT_ENGINE:
    if (strcmp(arg, "threads") != 0 && strcmp(arg, "processes") != 0)
      usage_error("invalid engine '%s' (threads or processes)", arg);
    cfg->engine = arg[0] == 't' ? PP_ENGINE_THREADS : PP_ENGINE_PROCESSES;
    cfg->engine_set = 1;
    break;
  case 's':
    cfg->server = strcmp(arg, "LOCAL") == 0 ? LOCAL_URL : arg;
    break;
  case 'o':
    cfg->dir = arg;
    break;
  case 'r':
    errno = 0;
    cfg->runs = strtol(arg, &end, 10);
    if (end == arg || *end || errno || cfg->runs < 1 || cfg->runs > 100000)
      usage_error("invalid number of runs '%s' (1 to 100000)", arg);
    break;
  case 'h':
    fputs(usage_text, stdout);
    exit(0);
  }
}

/* Reads the command line into cfg; returns the subcommand. */
static const struct command *parse_command_line(int argc, char **argv,
                                                struct config *cfg) {
  const struct command *cmd;
  int c;

  if (argc < 2)
    usage_error("missing subcommand (map, futures or overhead)");
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    fputs(usage_text, stdout);
    exit(0);
  }
  if (strcmp(argv[1], "--version") == 0) {
    printf(PROG " (procpool) %s\n", pp_version());
    exit(0);
  }
  if (argv[1][0] == '-')
    usage_error("the subcommand (map, futures or overhead) comes first");
  if (!(cmd = find_command(argv[1])))
    usage_error("unknown subcommand '%s' (map, futures or overhead)", argv[1]);
  optind = 1;
  opterr = 0;
  while ((c = getopt_long(argc - 1, argv + 1, ":hs:o:r:", longopts, NULL)) !=
         -1) {
    if (c == ':')
      usage_error("option '%s' needs a value", argv[optind]);
    if (c == '?')
      usage_error("unknown option '%s' for '%s'", argv[optind], cmd->name);
    parse_option(cmd, c, optarg, cfg);
  }
  if (optind < argc - 1)
    usage_error("unexpected argument '%s'", argv[optind + 1]);
  if (cmd->run == cmd_futures && !cfg->server)
    usage_error("futures needs a flag server: -s URL (or -s LOCAL)");
  if (cmd->run == cmd_futures && strlen(cfg->server) > MAX_SERVER)
    usage_error("server URL longer than %d bytes", MAX_SERVER);
  if (cmd->run == cmd_futures && (!*cfg->dir || strlen(cfg->dir) > MAX_DIR))
    usage_error("output directory must be 1 to %d bytes", MAX_DIR);
  return cmd;
}

int main(int argc, char **argv) {
  struct config cfg = {
      .engine = PP_ENGINE_THREADS, .dir = "downloaded", .runs = 20};

  return parse_command_line(argc, argv, &cfg)->run(&cfg);
}
