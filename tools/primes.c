/*
 * primes: checks whether numbers are prime on a procpool pool of worker
 * processes (or in the master alone, as a baseline), and prints each
 * number with the time its worker spent on it.
 *
 * DESIGN
 * Every input is validated before any work starts: the numbers of the
 * command line and of files are read into one array, ranges are kept as
 * their two endpoints, and a cursor walks the array and then the ranges,
 * so that a range of any size costs constant memory. The cursor feeds
 * pp_map_gen() (ordered, in chunks for large inputs) or pp_submit() in two
 * alternating batches drained by pp_as_completed() (so the pool never runs
 * dry at a batch boundary). Each task sends back a fixed record: the number,
 * whether it is prime, and the seconds the worker spent on it.
 *
 * Ctrl-C sets a flag that the main loop checks between results, and also a
 * word in a page shared with the workers (mapped before they are forked):
 * trial division reads it now and then and gives up, so that a pool busy on
 * long numbers winds down in milliseconds instead of finishing them. The
 * tool then destroys the map and the pool and exits with status 130.
 *
 * --task-timeout kills a worker whose task runs too long; in map mode with
 * chunks the timeout bounds a whole chunk.
 */
#include "primes_core.h"

#include <procpool.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define EXIT_FAILED 1
#define EXIT_USAGE 2
#define EXIT_INTERRUPTED 130
#define CONTINUE (-1) /* parse_args(): no exit yet */

#define CHUNK_THRESHOLD 10000 /* inputs larger than this go in chunks */
#define CHUNKSIZE 256
#define BATCH 1024 /* futures per as_completed batch */
#define MAX_WORKERS 4096
#define MAX_RETRIES 100
#define PROGRESS_EVERY 0.2 /* seconds between progress redraws */
#define QUOTE_MAX 40       /* bytes of a bad input quoted in a message */
#define RANGE_HINT "expected A:B, the integers from A up to B excluded"

_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "the stop word must be lock-free");

enum mode { MODE_MAP, MODE_COMPLETED };
enum format { FORMAT_TEXT, FORMAT_CSV, FORMAT_JSON };

struct config {
  int workers; /* 0: online CPUs */
  int sequential;
  int use_mr;
  enum mode mode;
  enum format format;
  unsigned retries;
  double task_timeout; /* 0: none */
};

struct range {
  uint64_t a, b; /* [a, b) */
};

/* Every number to check: `list` first, then the ranges. */
struct inputs {
  pc_numbers list;
  struct range *ranges;
  size_t nranges;
  uint64_t count;
};

/* A walk over struct inputs; also the map's generator state. */
struct cursor {
  const struct inputs *in;
  size_t index;     /* in list */
  size_t range;     /* current range */
  uint64_t offset;  /* in the current range */
  uint64_t current; /* the generator's argument */
};

/* What a task sends back for one number. */
struct result {
  uint64_t n;
  uint8_t prime;
  double elapsed;
};

struct output {
  enum format format;
  int flush_each; /* small inputs: show each line at once */
  uint64_t rows;
  int progress;
  uint64_t total;
  double last_draw;
};

/* The futures of one as_completed batch and their numbers. */
struct batch {
  pp_future *f[BATCH];
  uint64_t n[BATCH];
  size_t count;
};

static volatile sig_atomic_t interrupted;
static atomic_int *stop_word; /* shared with the workers */

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------ tasks */

/* Checks n with the chosen algorithm and times it. */
static int timed_check(uint64_t n, int use_mr, struct result *r) {
  double t0 = now();
  int rc = use_mr ? pc_miller_rabin(n) : pc_trial_division(n, stop_word);

  memset(r, 0, sizeof *r);
  r->n = n;
  r->prime = rc == PC_PRIME;
  r->elapsed = now() - t0;
  return rc;
}

/* The body of both tasks: 8 bytes in, a struct result out. */
static int check_task(pp_task *task, const void *arg, size_t len, int use_mr) {
  struct result r;
  uint64_t n;

  if (len != sizeof n)
    return pp_task_fail(task, EINVAL, "expected 8 bytes, got %zu", len);
  memcpy(&n, arg, sizeof n);
  if (timed_check(n, use_mr, &r) == PC_STOPPED)
    return pp_task_fail(task, EINTR, "interrupted");
  return pp_task_return(task, &r, sizeof r);
}

/* The two tasks: the algorithm is chosen by which function is submitted,
 * so that workers need no state of their own. */
static int trial_task(pp_task *task, const void *arg, size_t len) {
  return check_task(task, arg, len, 0);
}

static int mr_task(pp_task *task, const void *arg, size_t len) {
  return check_task(task, arg, len, 1);
}

/* ---------------------------------------------------------- signals */

/* Ctrl-C: the main loop sees `interrupted`, running trial divisions see
 * the stop word. Only async-signal-safe stores. */
static void on_sigint(int sig) {
  (void)sig;
  interrupted = 1;
  atomic_store(stop_word, 1);
}

/* Maps the stop word where forked workers see it, then catches Ctrl-C. */
static int catch_interrupts(void) {
  struct sigaction sa;
  void *page = mmap(NULL, sizeof *stop_word, PROT_READ | PROT_WRITE,
                    MAP_SHARED | MAP_ANONYMOUS, -1, 0);

  if (page == MAP_FAILED)
    return -1;
  stop_word = page;
  atomic_init(stop_word, 0);
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  return sigaction(SIGINT, &sa, NULL);
}

/* ----------------------------------------------------------- inputs */

/* The next number in input order: 1 with it in *n, 0 at the end. */
static int cursor_next(struct cursor *c, uint64_t *n) {
  const struct inputs *in = c->in;

  if (c->index < in->list.n) {
    *n = in->list.v[c->index++];
    return 1;
  }
  for (; c->range < in->nranges; c->range++, c->offset = 0) {
    const struct range *r = &in->ranges[c->range];
    if (c->offset < r->b - r->a) {
      *n = r->a + c->offset++;
      return 1;
    }
  }
  return 0;
}

/* pp_gen_fn over a cursor. */
static int gen_numbers(void *state, const void **arg, size_t *len) {
  struct cursor *c = state;

  if (!cursor_next(c, &c->current))
    return 0;
  *arg = &c->current;
  *len = sizeof c->current;
  return 1;
}

/* The number at position i, to name a failed map item. */
static uint64_t inputs_at(const struct inputs *in, uint64_t i) {
  if (i < in->list.n)
    return in->list.v[i];
  i -= in->list.n;
  for (size_t r = 0; r < in->nranges; r++) {
    uint64_t span = in->ranges[r].b - in->ranges[r].a;
    if (i < span)
      return in->ranges[r].a + i;
    i -= span;
  }
  return 0;
}

/* Writes s quoted, with unprintable bytes escaped and long ones cut. */
static void put_quoted(FILE *f, const char *s, size_t len) {
  size_t shown = len > QUOTE_MAX ? QUOTE_MAX : len;

  fputc('\'', f);
  for (size_t i = 0; i < shown; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch >= 0x20 && ch < 0x7f && ch != '\\')
      fputc(ch, f);
    else
      fprintf(f, "\\x%02x", ch);
  }
  fputs(shown < len ? "...'" : "'", f);
}

/* Ends a message about a bad number: "'<text>' is not an integer ...". */
static void put_not_integer(const char *text, size_t len) {
  put_quoted(stderr, text, len);
  fprintf(stderr, " is not an integer from 0 to %" PRIu64 "\n", UINT64_MAX);
}

/* Reads all of f into a new buffer; 0 or an errno. */
static int read_all(FILE *f, char **buf, size_t *len) {
  size_t cap = 4096, n = 0, got;
  char *b = malloc(cap), *grown;

  if (!b)
    return ENOMEM;
  while ((got = fread(b + n, 1, cap - n, f)) > 0) {
    n += got;
    if (n == cap) {
      if (!(grown = realloc(b, cap * 2))) {
        free(b);
        return ENOMEM;
      }
      b = grown;
      cap *= 2;
    }
  }
  if (ferror(f)) {
    free(b);
    return errno ? errno : EIO;
  }
  *buf = b;
  *len = n;
  return 0;
}

/* Appends the numbers of a file ("-": standard input). Returns CONTINUE
 * or an exit status. */
static int add_file(const char *path, struct inputs *in) {
  const char *name = strcmp(path, "-") ? path : "<stdin>";
  FILE *f = strcmp(path, "-") ? fopen(path, "r") : stdin;
  size_t before = in->list.n, len;
  pc_bad_line bad;
  char *buf;
  int err, status = CONTINUE;

  if (!f) {
    fprintf(stderr, "primes: %s: %s\n", name, strerror(errno));
    return EXIT_USAGE;
  }
  err = read_all(f, &buf, &len);
  if (f != stdin)
    fclose(f);
  if (err) {
    fprintf(stderr, "primes: %s: %s\n", name, strerror(err));
    return EXIT_USAGE;
  }
  switch (pc_parse_lines(buf, len, &in->list, &bad)) {
  case PC_OK:
    if (in->list.n == before) {
      fprintf(stderr, "primes: %s: no numbers in it\n", name);
      status = EXIT_USAGE;
    }
    break;
  case PC_EBAD:
    fprintf(stderr, "primes: %s:%zu: ", name, bad.line);
    put_not_integer(bad.text, bad.len);
    status = EXIT_USAGE;
    break;
  default:
    fprintf(stderr, "primes: %s: out of memory\n", name);
    status = EXIT_FAILED;
  }
  free(buf);
  return status;
}

/* Appends the range of "A:B". */
static int add_range(const char *text, struct inputs *in) {
  struct range r;
  const char *bad;
  size_t bad_len;

  switch (pc_parse_range(text, &r.a, &r.b, &bad, &bad_len)) {
  case PC_OK:
    in->ranges[in->nranges++] = r;
    return CONTINUE;
  case PC_EBAD:
    fputs("primes: --range ", stderr);
    put_quoted(stderr, text, strlen(text));
    fputs(": ", stderr);
    put_not_integer(bad, bad_len);
    return EXIT_USAGE;
  case PC_EEMPTY:
    fprintf(stderr,
            "primes: --range '%s': the range is empty; " RANGE_HINT
            " and A < B\n",
            text);
    return EXIT_USAGE;
  default:
    fprintf(stderr, "primes: --range '%s': " RANGE_HINT "\n", text);
    return EXIT_USAGE;
  }
}

/* Appends the numbers of the command line, naming a bad one by position. */
static int add_arguments(char **args, int n, struct inputs *in) {
  uint64_t x;

  for (int i = 0; i < n; i++) {
    if (pc_parse_u64(args[i], strlen(args[i]), &x) != PC_OK) {
      fprintf(stderr, "primes: argument %d: ", i + 1);
      put_not_integer(args[i], strlen(args[i]));
      return EXIT_USAGE;
    }
    if (pc_numbers_push(&in->list, x) != PC_OK) {
      fputs("primes: out of memory\n", stderr);
      return EXIT_FAILED;
    }
  }
  return CONTINUE;
}

/* The fixture when nothing was given; then the total, which must fit. */
static int finish_inputs(struct inputs *in, int given) {
  uint64_t total;

  for (size_t i = 0; !given && i < PC_FIXTURE_COUNT; i++)
    if (pc_numbers_push(&in->list, pc_fixture[i]) != PC_OK) {
      fputs("primes: out of memory\n", stderr);
      return EXIT_FAILED;
    }
  total = in->list.n;
  for (size_t r = 0; r < in->nranges; r++)
    if (__builtin_add_overflow(total, in->ranges[r].b - in->ranges[r].a,
                               &total)) {
      fprintf(stderr,
              "primes: the ranges hold more than %" PRIu64 " numbers in all\n",
              UINT64_MAX);
      return EXIT_USAGE;
    }
  in->count = total;
  return CONTINUE;
}

static void free_inputs(struct inputs *in) {
  pc_numbers_free(&in->list);
  free(in->ranges);
}

/* ---------------------------------------------------------- options */

enum {
  OPT_MODE = 256,
  OPT_SEQUENTIAL,
  OPT_ALGO,
  OPT_FORMAT,
  OPT_RANGE,
  OPT_RETRIES,
  OPT_TASK_TIMEOUT
};

static const struct option long_options[] = {
    {"file", required_argument, NULL, 'f'},
    {"workers", required_argument, NULL, 'w'},
    {"mode", required_argument, NULL, OPT_MODE},
    {"sequential", no_argument, NULL, OPT_SEQUENTIAL},
    {"algo", required_argument, NULL, OPT_ALGO},
    {"format", required_argument, NULL, OPT_FORMAT},
    {"range", required_argument, NULL, OPT_RANGE},
    {"retries", required_argument, NULL, OPT_RETRIES},
    {"task-timeout", required_argument, NULL, OPT_TASK_TIMEOUT},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0}};

/* --help: the whole interface, with the defaults and exit statuses. */
static void usage(FILE *f) {
  fprintf(
      f,
      "Usage: primes [OPTION]... [NUMBER]...\n"
      "Check whether numbers are prime on a pool of worker processes.\n"
      "\n"
      "Numbers are integers from 0 to %" PRIu64 ", taken from the\n"
      "command line, then from each FILE, then from each range. With none,\n"
      "the classic 20-number fixture is checked, in descending order.\n"
      "\n"
      "  -f, --file FILE        one number per line ('-': standard input)\n"
      "      --range A:B        every integer from A up to B excluded\n"
      "  -w, --workers N        worker processes (default: online CPUs)\n"
      "      --mode MODE        map: results in input order (default);\n"
      "                         completed: each result as soon as known\n"
      "      --sequential       check in this process alone (a baseline)\n"
      "      --algo ALGO        trial: trial division (default, slow on\n"
      "                         purpose); mr: Miller-Rabin\n"
      "      --format FORMAT    text (default), csv or json\n"
      "      --retries N        reruns of a task whose worker died "
      "(default 2)\n"
      "      --task-timeout S   kill a task's worker after S seconds (the\n"
      "                         number fails; a chunk's numbers all do)\n"
      "  -h, --help             show this help\n"
      "      --version          show the version and exit\n"
      "\n"
      "Exit status: 0 done, 1 some number could not be checked, 2 bad\n"
      "usage or input (nothing was checked), 130 interrupted.\n",
      UINT64_MAX);
}

/* A whole number from lo to hi, or -1. */
static long long parse_bounded(const char *s, long long lo, long long hi) {
  uint64_t x;

  if (pc_parse_u64(s, strlen(s), &x) != PC_OK || x < (uint64_t)lo ||
      x > (uint64_t)hi)
    return -1;
  return (long long)x;
}

/* A positive, finite number of seconds, or -1. */
static double parse_seconds(const char *s) {
  char *end;
  double x;

  errno = 0;
  x = strtod(s, &end);
  if (end == s || *end || errno || !(x > 0) || x > 1e9)
    return -1;
  return x;
}

/* The argument that made getopt see option `-<digit>`: a negative number,
 * refused as a number. */
static const char *negative_number(int argc, char **argv, int digit) {
  for (int i = 1; i < argc; i++)
    if (argv[i][0] == '-' && argv[i][1] == digit)
      return argv[i];
  return "-";
}

/* Names the option that getopt refused and the way out. */
static int bad_option(int code, int argc, char **argv) {
  const char *arg = argv[optind - 1];

  if (code == ':') {
    fprintf(stderr, "primes: option '%s' needs a value; see 'primes --help'\n",
            arg);
  } else if (optopt >= '0' && optopt <= '9') {
    arg = negative_number(argc, argv, optopt);
    fputs("primes: command line: ", stderr);
    put_not_integer(arg, strlen(arg));
  } else if (optopt) {
    fprintf(stderr, "primes: unknown option '-%c'; see 'primes --help'\n",
            optopt);
  } else {
    fprintf(stderr, "primes: unknown option '%s'; see 'primes --help'\n", arg);
  }
  return EXIT_USAGE;
}

/* Sets one option of cfg from its value; CONTINUE or EXIT_USAGE. */
static int set_option(int code, const char *val, struct config *cfg) {
  long long x;

  switch (code) {
  case 'w':
    if ((x = parse_bounded(val, 1, MAX_WORKERS)) < 0)
      goto bad_value;
    cfg->workers = (int)x;
    return CONTINUE;
  case OPT_RETRIES:
    if ((x = parse_bounded(val, 0, MAX_RETRIES)) < 0)
      goto bad_value;
    cfg->retries = (unsigned)x;
    return CONTINUE;
  case OPT_TASK_TIMEOUT:
    if ((cfg->task_timeout = parse_seconds(val)) < 0)
      goto bad_value;
    return CONTINUE;
  case OPT_MODE:
    if (strcmp(val, "map") && strcmp(val, "completed"))
      goto bad_value;
    cfg->mode = strcmp(val, "map") ? MODE_COMPLETED : MODE_MAP;
    return CONTINUE;
  case OPT_ALGO:
    if (strcmp(val, "trial") && strcmp(val, "mr"))
      goto bad_value;
    cfg->use_mr = strcmp(val, "mr") == 0;
    return CONTINUE;
  case OPT_FORMAT:
    if (!strcmp(val, "text"))
      cfg->format = FORMAT_TEXT;
    else if (!strcmp(val, "csv"))
      cfg->format = FORMAT_CSV;
    else if (!strcmp(val, "json"))
      cfg->format = FORMAT_JSON;
    else
      goto bad_value;
    return CONTINUE;
  }
  return CONTINUE;

bad_value:
  switch (code) {
  case 'w':
    fprintf(stderr,
            "primes: --workers '%s': expected a number of processes "
            "from 1 to %d\n",
            val, MAX_WORKERS);
    break;
  case OPT_RETRIES:
    fprintf(stderr, "primes: --retries '%s': expected a number from 0 to %d\n",
            val, MAX_RETRIES);
    break;
  case OPT_TASK_TIMEOUT:
    fprintf(stderr,
            "primes: --task-timeout '%s': expected a positive number "
            "of seconds\n",
            val);
    break;
  case OPT_MODE:
    fprintf(stderr, "primes: --mode '%s': expected 'map' or 'completed'\n",
            val);
    break;
  case OPT_ALGO:
    fprintf(stderr, "primes: --algo '%s': expected 'trial' or 'mr'\n", val);
    break;
  default:
    fprintf(stderr,
            "primes: --format '%s': expected 'text', 'csv' or "
            "'json'\n",
            val);
  }
  return EXIT_USAGE;
}

/* Reads the command line into cfg and in. Returns CONTINUE, or the exit
 * status when the program must stop here (--help, bad usage or input). */
static int parse_args(int argc, char **argv, struct config *cfg,
                      struct inputs *in) {
  const char **files = calloc((size_t)argc, sizeof *files);
  size_t nfiles = 0;
  int code, status = CONTINUE;

  in->ranges = calloc((size_t)argc, sizeof *in->ranges);
  if (!files || !in->ranges) {
    fputs("primes: out of memory\n", stderr);
    status = EXIT_FAILED;
    goto out_free_files;
  }
  opterr = 0;
  while (status == CONTINUE &&
         (code = getopt_long(argc, argv, ":f:w:h", long_options, NULL)) != -1) {
    if (code == 'h') {
      usage(stdout);
      status = EXIT_SUCCESS;
    } else if (code == 'V') {
      printf("primes (procpool) %s\n", pp_version());
      status = EXIT_SUCCESS;
    } else if (code == '?' || code == ':') {
      status = bad_option(code, argc, argv);
    } else if (code == 'f') {
      files[nfiles++] = optarg;
    } else if (code == OPT_RANGE) {
      status = add_range(optarg, in);
    } else if (code == OPT_SEQUENTIAL) {
      cfg->sequential = 1;
    } else {
      status = set_option(code, optarg, cfg);
    }
  }
  if (status == CONTINUE && cfg->task_timeout > 0 && cfg->sequential) {
    fputs("primes: --task-timeout needs worker processes: drop --sequential\n",
          stderr);
    status = EXIT_USAGE;
  }
  if (status == CONTINUE)
    status = add_arguments(argv + optind, argc - optind, in);
  for (size_t i = 0; status == CONTINUE && i < nfiles; i++)
    status = add_file(files[i], in);
  if (status == CONTINUE)
    status = finish_inputs(in, optind < argc || nfiles || in->nranges);
out_free_files:
  free(files);
  return status;
}

/* ----------------------------------------------------------- output */

/* Small inputs are flushed line by line, so that --mode completed shows
 * each result as it comes even through a pipe; large ones get a progress
 * line instead, only on a terminal that is not also taking the results. */
static void output_init(struct output *o, const struct config *cfg,
                        uint64_t total) {
  memset(o, 0, sizeof *o);
  o->format = cfg->format;
  o->total = total;
  o->flush_each = total <= CHUNK_THRESHOLD;
  o->progress = total > CHUNK_THRESHOLD && isatty(STDERR_FILENO) &&
                !isatty(STDOUT_FILENO);
  o->last_draw = now();
}

/* workers == 0: sequential. */
static void output_begin(struct output *o, int workers) {
  const char *s = o->total == 1 ? "" : "s";

  if (o->format == FORMAT_CSV)
    puts("n,prime,elapsed");
  else if (o->format == FORMAT_JSON)
    fputs("[", stdout);
  else if (workers == 0)
    printf("Checking %" PRIu64 " number%s sequentially:\n", o->total, s);
  else
    printf("Checking %" PRIu64 " number%s with %d process%s:\n", o->total, s,
           workers, workers == 1 ? "" : "es");
  fflush(stdout);
}

/* Redraws the progress line at most every PROGRESS_EVERY seconds. */
static void draw_progress(struct output *o) {
  double t = now();

  if (t - o->last_draw < PROGRESS_EVERY && o->rows < o->total)
    return;
  o->last_draw = t;
  fprintf(stderr, "\rprimes: %" PRIu64 " of %" PRIu64 " checked (%.0f%%)",
          o->rows, o->total, 100.0 * (double)o->rows / (double)o->total);
}

/* One result, in the chosen format; `data` is a struct result. */
static void output_row(struct output *o, const void *data) {
  struct result r;

  memcpy(&r, data, sizeof r);
  if (o->format == FORMAT_CSV)
    printf("%" PRIu64 ",%d,%.6f\n", r.n, r.prime, r.elapsed);
  else if (o->format == FORMAT_JSON)
    printf("%s\n  {\"n\": %" PRIu64 ", \"prime\": %s, \"elapsed\": %.6f}",
           o->rows ? "," : "", r.n, r.prime ? "true" : "false", r.elapsed);
  else
    printf("%16" PRIu64 "  %c %9.6fs\n", r.n, r.prime ? 'P' : ' ', r.elapsed);
  o->rows++;
  if (o->flush_each)
    fflush(stdout);
  if (o->progress)
    draw_progress(o);
}

/* Clears the progress line and closes the output (JSON's ']', or the
 * total time of the text format). */
static void output_end(struct output *o, double seconds) {
  if (o->progress)
    fputs("\r\033[K", stderr);
  if (o->format == FORMAT_JSON)
    puts(o->rows ? "\n]" : "]");
  else if (o->format == FORMAT_TEXT)
    printf("Total time: %.2fs\n", seconds);
  fflush(stdout);
}

/* A number whose task failed goes to standard error; the rest goes on. */
static void report_failure(uint64_t n, int rc, const char *msg) {
  fprintf(stderr, "primes: %" PRIu64 ": %s (%s)%s%s\n", n, pp_strerror(rc),
          pp_errname(rc), *msg ? ": " : "", msg);
}

/* ------------------------------------------------------------ modes */

/* The baseline: every number in this process, in order. */
static int run_sequential(const struct config *cfg, const struct inputs *in,
                          struct output *o) {
  struct cursor cur = {.in = in};
  struct result r;
  uint64_t n;

  while (!interrupted && cursor_next(&cur, &n)) {
    if (timed_check(n, cfg->use_mr, &r) == PC_STOPPED)
      break;
    output_row(o, &r);
  }
  return interrupted ? EXIT_INTERRUPTED : 0;
}

/* A failure of one item, after which a map goes on. */
static int is_item_failure(int rc) {
  return rc == PP_ETASK || rc == PP_ECRASHED || rc == PP_EDEADLINE ||
         rc == PP_ECANCELLED || rc == PP_ETOOBIG;
}

/* --mode map: ordered results over the cursor, in chunks when large. */
static int run_map(pp_pool *pool, pp_task_fn fn, double task_timeout,
                   const struct inputs *in, struct output *o) {
  struct cursor cur = {.in = in};
  pp_map_options mo = {.task_timeout = task_timeout};
  const void *data;
  size_t len;
  pp_map *map;
  int rc, status = 0;

  if (in->count > CHUNK_THRESHOLD) {
    mo.chunksize = CHUNKSIZE;
    mo.window = (size_t)CHUNKSIZE * 4 * (size_t)pp_pool_workers(pool);
  }
  if ((rc = pp_map_gen(pool, fn, gen_numbers, &cur, &mo, &map)) != 0) {
    fprintf(stderr, "primes: cannot start the map: %s\n", pp_strerror(rc));
    return EXIT_FAILED;
  }
  while (!interrupted && (rc = pp_map_next(map, &data, &len)) != PP_EOF) {
    if (interrupted)
      break;
    if (rc == 0 && len == sizeof(struct result)) {
      output_row(o, data);
      continue;
    }
    status = EXIT_FAILED;
    if (!is_item_failure(rc)) {
      fprintf(stderr, "primes: the map failed: %s\n", pp_strerror(rc));
      break;
    }
    report_failure(inputs_at(in, pp_map_index(map)), rc, pp_map_message(map));
  }
  pp_map_destroy(map);
  return interrupted ? EXIT_INTERRUPTED : status;
}

/* Submits up to BATCH numbers from the cursor. */
static int submit_batch(pp_pool *pool, pp_task_fn fn, double timeout,
                        struct cursor *cur, struct batch *b) {
  int rc;

  while (b->count < BATCH && !interrupted &&
         cursor_next(cur, &b->n[b->count])) {
    rc = pp_submit_timeout(pool, fn, &b->n[b->count], sizeof b->n[0], timeout,
                           &b->f[b->count]);
    if (rc != 0)
      return rc;
    b->count++;
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
    if (rc == 0 && len == sizeof(struct result)) {
      output_row(o, data);
      continue;
    }
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

/* Starts the pool (unless sequential), runs the chosen mode, prints. */
static int run(const struct config *cfg, const struct inputs *in) {
  pp_task_fn fn = cfg->use_mr ? mr_task : trial_task;
  pp_pool *pool = NULL;
  pp_options opts;
  struct output o;
  double t0 = now();
  int rc, status;

  if (catch_interrupts() != 0) {
    fprintf(stderr, "primes: cannot catch Ctrl-C: %s\n", strerror(errno));
    return EXIT_FAILED;
  }
  pp_options_init(&opts);
  opts.workers = cfg->workers;
  opts.retries = cfg->retries;
  if (!cfg->sequential && (rc = pp_pool_create(&pool, &opts)) != 0) {
    fprintf(stderr, "primes: cannot start the workers: %s\n", pp_strerror(rc));
    return EXIT_FAILED;
  }
  output_init(&o, cfg, in->count);
  output_begin(&o, pool ? pp_pool_workers(pool) : 0);
  if (cfg->sequential)
    status = run_sequential(cfg, in, &o);
  else if (cfg->mode == MODE_MAP)
    status = run_map(pool, fn, cfg->task_timeout, in, &o);
  else
    status = run_completed(pool, fn, cfg->task_timeout, in, &o);
  pp_pool_destroy(pool);
  if (status == EXIT_INTERRUPTED) {
    fflush(stdout);
    fputs(o.progress ? "\r\033[Kprimes: interrupted\n"
                     : "primes: interrupted\n",
          stderr);
    return status;
  }
  output_end(&o, now() - t0);
  return status;
}

int main(int argc, char **argv) {
  struct config cfg = {.mode = MODE_MAP, .format = FORMAT_TEXT, .retries = 2};
  struct inputs in;
  int status;

  memset(&in, 0, sizeof in);
  status = parse_args(argc, argv, &cfg, &in);
  if (status == CONTINUE)
    status = run(&cfg, &in);
  free_inputs(&in);
  return status;
}
