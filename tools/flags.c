/*
 * flags: downloads country flags over HTTP, as the Fluent Python flags2
 * scripts do, in one of four modes: sequential, threads, processes (a
 * procpool whose workers each keep a curl handle) or async (the curl multi
 * interface on one thread).
 *
 * DESIGN
 *   This file is the command line and main(). Arguments are checked
 *   and the codes expanded (each two ASCII letters, so that no argument can
 *   name a file outside the output directory) before anything is fetched;
 *   a usage error prints the usage line, then "*** Usage error: ...", and
 *   exits 2. The run itself belongs to the mode (flags_modes.c,
 *   flags_async.c, flags_procs.c), which hands each result to fl_report()
 *   (flags_report.c).
 *   Exit status: 0 when every flag was downloaded or not found, 1 on
 *   errors, 2 on usage errors, 128 + the signal when stopped by SIGINT
 *   (130), SIGTERM (143) or SIGHUP (129), which are handled alike: what
 *   `timeout`, `kill`, systemd or a closed terminal send leaves no
 *   temporary file behind, as Ctrl-C does not.
 */
#include "country_codes.h"
#include "flags.h"

#include <procpool.h>

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_CONCUR 1000
#define NCODES (26 * 26)

static const char usage_line[] =
    "usage: flags [-h] [-a] [-e] [-l N] [-m CONCURRENT] [-s LABEL] [-v]\n"
    "             [-o DIR] [--mode MODE] [--timeout S] [--simple]\n"
    "             [CC ...]\n";

static const char help_text[] =
    "\n"
    "Download flags for country codes. Default: top 20 countries by "
    "population.\n"
    "\n"
    "positional arguments:\n"
    "  CC                    country code or 1st letter (eg. B for BA...BZ)\n"
    "\n"
    "options:\n"
    "  -h, --help            show this help message and exit\n"
    "  --version             show the version and exit\n"
    "  -a, --all             get all available flags (AD to ZW)\n"
    "  -e, --every           get flags for every possible code (AA...ZZ)\n"
    "  -l N, --limit N       limit to N first codes\n"
    "  -m CONCURRENT, --max_req CONCURRENT\n"
    "                        maximum concurrent requests (default: 1 for\n"
    "                        sequential, 30 for threads and processes, 5 "
    "for\n"
    "                        async)\n"
    "  -s LABEL, --server LABEL\n"
    "                        Server to hit; one of DELAY, ERROR, LOCAL, "
    "REMOTE,\n"
    "                        or a URL starting with http:// or https://\n"
    "                        (default=LOCAL)\n"
    "  -v, --verbose         output detailed progress info\n"
    "  -o DIR, --output DIR  directory for the flags (default: downloaded)\n"
    "  --mode MODE           sequential, threads, processes or async\n"
    "                        (default: processes)\n"
    "  --timeout S           seconds allowed for each download (default: "
    "6.1)\n"
    "  --simple              print only the codes as they arrive and the "
    "time\n";

static const char *const pop20[] = {"CN", "IN", "US", "ID", "BR", "PK", "NG",
                                    "BD", "RU", "JP", "MX", "PH", "VN", "ET",
                                    "EG", "DE", "IR", "TR", "CD", "FR"};

static const struct {
  const char *label, *url;
} servers[] = {
    {"DELAY", "http://localhost:8001/flags"},
    {"ERROR", "http://localhost:8002/flags"},
    {"LOCAL", "http://localhost:8000/flags"},
    {"REMOTE", "https://www.fluentpython.com/data/flags"},
};

static const char *const mode_names[] = {"sequential", "threads", "processes",
                                         "async"};
static const int default_concur[] = {1, 30, 30, 5};

/* The options as given, before the codes are expanded. */
struct args {
  int all, every, verbose, simple;
  long limit;  /* -1: none */
  long concur; /* -1: the mode's default */
  const char *server;
  const char *dir;
  double timeout;
  enum fl_mode mode;
};

/* Prints the usage line and the message, and exits 2. */
static void usage_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));
static void usage_error(const char *fmt, ...) {
  va_list ap;
  fputs(usage_line, stderr);
  fputs("*** Usage error: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  exit(2);
}

/* Parses a whole decimal integer; 0 if `s` is not one. */
static int parse_long(const char *s, long *out) {
  char *end;
  errno = 0;
  *out = strtol(s, &end, 10);
  return end != s && *end == '\0' && errno == 0;
}

/* -m: 1 to MAX_CONCUR, as the classic scripts allow. */
static void parse_concur(const char *s, struct args *a) {
  if (!parse_long(s, &a->concur) || a->concur < 1 || a->concur > MAX_CONCUR)
    usage_error("Invalid CONCURRENT value: %s "
                "(must be 1 <= CONCURRENT <= %d)",
                s, MAX_CONCUR);
}

/* -l: at least 1. */
static void parse_limit(const char *s, struct args *a) {
  if (!parse_long(s, &a->limit) || a->limit < 1)
    usage_error("Invalid LIMIT value: %s (must be >= 1)", s);
}

/* --mode: one of mode_names, in any case. */
static void parse_mode(const char *s, struct args *a) {
  for (size_t i = 0; i < sizeof mode_names / sizeof *mode_names; i++)
    if (strcasecmp(s, mode_names[i]) == 0) {
      a->mode = (enum fl_mode)i;
      return;
    }
  usage_error("Invalid MODE: %s "
              "(must be one of sequential, threads, processes, async)",
              s);
}

/* --timeout: positive seconds, at most a day. */
static void parse_timeout(const char *s, struct args *a) {
  char *end;
  a->timeout = strtod(s, &end);
  if (end == s || *end || !(a->timeout > 0) || a->timeout > FL_MAX_TIMEOUT)
    usage_error("Invalid TIMEOUT value: %s (must be > 0 and <= %g seconds)", s,
                FL_MAX_TIMEOUT);
}

/* Parses the options into `a`; returns the index of the first CC. */
static int parse_options(int argc, char **argv, struct args *a) {
  enum { OPT_MODE = 256, OPT_TIMEOUT, OPT_SIMPLE };
  static const struct option longopts[] = {
      {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, 'V'},
      {"all", no_argument, NULL, 'a'},
      {"every", no_argument, NULL, 'e'},
      {"limit", required_argument, NULL, 'l'},
      {"max_req", required_argument, NULL, 'm'},
      {"max-req", required_argument, NULL, 'm'},
      {"server", required_argument, NULL, 's'},
      {"verbose", no_argument, NULL, 'v'},
      {"output", required_argument, NULL, 'o'},
      {"mode", required_argument, NULL, OPT_MODE},
      {"timeout", required_argument, NULL, OPT_TIMEOUT},
      {"simple", no_argument, NULL, OPT_SIMPLE},
      {NULL, 0, NULL, 0}};
  int c;

  opterr = 0;
  while ((c = getopt_long(argc, argv, ":haevl:m:s:o:", longopts, NULL)) != -1) {
    switch (c) {
    case 'h':
      fputs(usage_line, stdout);
      fputs(help_text, stdout);
      exit(0);
    case 'V':
      printf("flags (procpool) %s\n", pp_version());
      exit(0);
    case 'a':
      a->all = 1;
      break;
    case 'e':
      a->every = 1;
      break;
    case 'l':
      parse_limit(optarg, a);
      break;
    case 'm':
      parse_concur(optarg, a);
      break;
    case 's':
      a->server = optarg;
      break;
    case 'v':
      a->verbose = 1;
      break;
    case 'o':
      a->dir = optarg;
      break;
    case OPT_MODE:
      parse_mode(optarg, a);
      break;
    case OPT_TIMEOUT:
      parse_timeout(optarg, a);
      break;
    case OPT_SIMPLE:
      a->simple = 1;
      break;
    case ':':
      if (optopt && optopt < 256)
        usage_error("argument -%c: expected one argument", optopt);
      usage_error("argument %s: expected one argument", argv[optind - 1]);
    default:
      if (optopt)
        usage_error("unrecognized arguments: -%c", optopt);
      usage_error("unrecognized arguments: %s", argv[optind - 1]);
    }
  }
  return optind;
}

/* Non-zero if libcurl's URL parser reads `s` as a URL naming a host. */
static int url_has_host(const char *s) {
  CURLU *u = curl_url();
  char *host = NULL;
  int ok = u && curl_url_set(u, CURLUPART_URL, s, 0) == CURLUE_OK &&
           curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK && host &&
           host[0];
  curl_free(host);
  curl_url_cleanup(u);
  return ok;
}

/* Resolves -s into a label and a base URL without a trailing slash (a new
 * string, owned by the caller). */
static char *resolve_server(const char *s, const char **label) {
  size_t len;
  char *url;

  for (size_t i = 0; i < sizeof servers / sizeof *servers; i++)
    if (strcasecmp(s, servers[i].label) == 0) {
      *label = servers[i].label;
      return strdup(servers[i].url);
    }
  if (strncasecmp(s, "http://", 7) != 0 && strncasecmp(s, "https://", 8) != 0)
    usage_error("Invalid SERVER: %s (must be one of DELAY, ERROR, LOCAL, "
                "REMOTE, or a URL starting with http:// or https://)",
                s);
  if (!url_has_host(s))
    usage_error("Invalid SERVER: %s (not a URL with a host, such as "
                "http://localhost:8000/flags)",
                s);
  len = strlen(s);
  if (len > FL_MAX_URL)
    usage_error("Invalid SERVER: URL longer than %d bytes", FL_MAX_URL);
  for (size_t i = 0; i < len; i++)
    if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f)
      usage_error("Invalid SERVER: %s (URL contains a space or a control "
                  "character)",
                  s);
  while (len > 0 && s[len - 1] == '/')
    len--;
  *label = "CUSTOM";
  url = strndup(s, len);
  return url;
}

/* ASCII letters only: isalpha() would follow the locale. */
static int is_letter(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/* Marks in `want` the codes that the CC arguments name: a code, or a
 * letter for the 26 codes starting with it. */
static void mark_args(char **ccs, int n, unsigned char *want) {
  for (int i = 0; i < n; i++) {
    const char *s = ccs[i];
    size_t len = strlen(s);
    if (len < 1 || len > 2 || !is_letter(s[0]) ||
        (len == 2 && !is_letter(s[1])))
      usage_error("each CC argument must be A to Z or AA to ZZ.");
    int a = (s[0] | 0x20) - 'a';
    if (len == 1)
      memset(want + a * 26, 1, 26);
    else
      want[a * 26 + (s[1] | 0x20) - 'a'] = 1;
  }
}

/* Expands the selection into job->codes, sorted, cut to the limit. */
static void expand_codes(const struct args *a, char **ccs, int nccs,
                         struct fl_job *job) {
  unsigned char want[NCODES] = {0};
  size_t n = 0, limit = a->limit < 0 ? (size_t)-1 : (size_t)a->limit;

  mark_args(ccs, nccs, want);
  if (a->every) {
    memset(want, 1, sizeof want);
  } else if (a->all) {
    memset(want, 0, sizeof want);
    for (int i = 0; i < COUNTRY_CODE_COUNT; i++)
      want[(country_codes[i][0] - 'A') * 26 + country_codes[i][1] - 'A'] = 1;
  }
  if (!a->every && !a->all && nccs == 0)
    for (size_t i = 0; i < sizeof pop20 / sizeof *pop20; i++)
      want[(pop20[i][0] - 'A') * 26 + pop20[i][1] - 'A'] = 1;
  job->codes = malloc(NCODES * sizeof *job->codes);
  if (!job->codes) {
    fprintf(stderr, "flags: out of memory\n");
    exit(1);
  }
  for (int i = 0; i < NCODES && n < limit; i++)
    if (want[i]) {
      job->codes[n][0] = (char)('A' + i / 26);
      job->codes[n][1] = (char)('A' + i % 26);
      job->codes[n][2] = '\0';
      n++;
    }
  job->n = n;
}

/* Reads the command line into `job`; exits 2 on a usage error. */
static void parse_command_line(int argc, char **argv, struct fl_job *job) {
  struct args a = {.limit = -1,
                   .concur = -1,
                   .server = "LOCAL",
                   .dir = "downloaded",
                   .timeout = 6.1,
                   .mode = FL_PROCESSES};
  int first = parse_options(argc, argv, &a);
  long m;

  job->base_url = resolve_server(a.server, &job->label);
  if (!job->base_url) {
    fprintf(stderr, "flags: out of memory\n");
    exit(1);
  }
  if (strlen(a.dir) > FL_MAX_DIR || !*a.dir)
    usage_error("Invalid DIR: %s (must be 1 to %d bytes)", a.dir, FL_MAX_DIR);
  expand_codes(&a, argv + first, argc - first, job);
  m = a.concur > 0 && a.mode != FL_SEQUENTIAL ? a.concur
                                              : default_concur[a.mode];
  job->concurrency = (int)(m < (long)job->n ? m : (long)job->n);
  if (job->concurrency < 1)
    job->concurrency = 1;
  job->dir = a.dir;
  job->timeout = a.timeout;
  job->mode = a.mode;
  job->verbose = a.verbose;
  job->simple = a.simple;
  job->progress = !a.verbose && !a.simple && isatty(STDERR_FILENO);
}

/* Creates `dir` and any missing parents, like mkdir -p. */
static int make_dirs(const char *dir) {
  char path[FL_MAX_DIR + 1];
  size_t len = strlen(dir);

  memcpy(path, dir, len + 1);
  for (size_t i = 1; i <= len; i++) {
    if (path[i] != '/' && path[i] != '\0')
      continue;
    path[i] = '\0';
    if (mkdir(path, 0777) < 0 && errno != EEXIST)
      return -1;
    path[i] = i < len ? '/' : '\0';
  }
  struct stat st;
  if (stat(dir, &st) < 0)
    return -1;
  if (!S_ISDIR(st.st_mode)) {
    errno = ENOTDIR;
    return -1;
  }
  return 0;
}

static volatile sig_atomic_t stop_signal; /* the first stop signal */

/* SIGINT, SIGTERM, SIGHUP: asks every download to stop; a second one
 * kills at once (SA_RESETHAND). */
static void on_stop_signal(int sig) {
  if (!stop_signal)
    stop_signal = sig;
  fl_stop();
}

/* Installs on_stop_signal() without SA_RESTART, so that a blocking call in
 * the main thread returns early. */
static int install_stop_signals(void) {
  static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop_signal;
  sa.sa_flags = SA_RESETHAND;
  sigemptyset(&sa.sa_mask);
  for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++)
    if (sigaction(sigs[i], &sa, NULL) < 0)
      return -1;
  return 0;
}

/* Runs the job in its mode; returns the mode's answer. */
static int run(struct fl_job *job) {
  switch (job->mode) {
  case FL_SEQUENTIAL:
    return fl_run_sequential(job);
  case FL_THREADS:
    return fl_run_threads(job);
  case FL_PROCESSES:
    return fl_run_processes(job);
  case FL_ASYNC:
    return fl_run_async(job);
  }
  return -1;
}

int main(int argc, char **argv) {
  struct fl_job job = {.lock = PTHREAD_MUTEX_INITIALIZER};
  mode_t mask;
  int rc = 1;

  parse_command_line(argc, argv, &job);
  mask = umask(0);
  umask(mask);
  fl_fetch_set_mode(0666 & ~mask);
  if (fl_stop_init() < 0 || install_stop_signals() < 0) {
    fprintf(stderr, "flags: cannot set up Ctrl-C: %s\n", strerror(errno));
    goto out_free;
  }
  if (make_dirs(job.dir) < 0) {
    fprintf(stderr, "flags: cannot create directory %s: %s\n", job.dir,
            strerror(errno));
    goto out_free;
  }
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    fprintf(stderr, "flags: cannot initialise libcurl\n");
    goto out_free;
  }
  if (!job.simple)
    fl_initial_report(&job);
  job.t0 = fl_now();
  if (job.progress && fl_watch_terminal() < 0)
    job.progress = 0;
  if (job.progress)
    fl_draw_bar(&job, job.t0);
  if (run(&job) == 0) {
    if (job.progress && job.done < job.n)
      fputc('\n', stderr);
    fl_final_report(&job, fl_now() - job.t0);
    rc = job.count[FL_ERROR] ? 1 : 0;
  }
  if (fl_stopping()) {
    fprintf(stderr, "flags: interrupted\n");
    rc = 128 + (stop_signal ? stop_signal : SIGINT);
  }
  curl_global_cleanup();
out_free:
  free(job.codes);
  free((char *)job.base_url);
  return rc;
}
