/*
 * flagserver: serves flag GIFs over HTTP for the flags downloader, fast,
 * slow or failing on purpose, like the classic slow_server.
 *
 * DESIGN. Every image is loaded (--directory) or drawn (gifgen) into memory
 * at startup, and each gets one persistent MHD response that every request
 * for it reuses. Requests are matched against that in-memory table only:
 * no request path is ever turned into a file-system path, so "..",
 * encoded or not, and absolute paths cannot reach a file by construction.
 * They are still refused with 400, as are targets over MAX_TARGET bytes
 * (414) and methods other than GET and HEAD (405), so that a client learns
 * it asked for something wrong.
 *
 * One libmicrohttpd daemon per site (one site, or three with --labels),
 * each with its own polling thread. A delayed request is never slept on:
 * the handler suspends its connection and pushes its wake-up time onto a
 * min-heap; one timer thread, shared by all sites, resumes each connection
 * when its time comes, and MHD then calls the handler again to answer.
 * So 1,000 requests delayed by 1 s are all answered after about 1 s.
 *
 * Threads and locks: each site's counters and random state are touched
 * only by its daemon's polling thread (and read by main after the daemon
 * has stopped). The timer's lock guards the heap and `stopping`; it is
 * held while suspending a connection (so a stopping timer cannot miss it)
 * but never while resuming one, so it never nests inside MHD's own locks.
 * SIGINT and SIGTERM are blocked in every thread and taken by sigwait() in
 * main, which stops accepting, stops the timer (so parked requests are
 * answered at once), waits briefly for answers under way, stops the
 * daemons, prints the summary and frees everything.
 */
#include "country_codes.h"
#include "gifgen.h"

#include <procpool.h> /* PP_VERSION_STRING only: the server links no pool */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_TARGET 256            /* longest request target we answer */
#define MAX_FLAG_BYTES (16 << 20) /* refuse to load bigger "flags" */
#define MAX_DELAY 3600.0          /* seconds */
#define CONNECTION_LIMIT 4096     /* per site, fds permitting */
#define IDLE_TIMEOUT 60           /* seconds an idle keep-alive may last */
#define MAX_SITES 3
#define DRAIN_SECONDS 2.0 /* at exit, for answers already under way */
#define TEAPOT 418
#define EXIT_USAGE 2

/* One image, held in memory for the life of the process. */
struct flag {
  char cc[3];          /* lower-case code */
  unsigned char *data; /* GIF bytes, owned */
  size_t len;
  struct MHD_Response *resp; /* persistent response over data */
};

/* Every image we serve, with a lookup table by code. */
struct flagset {
  struct flag *v;
  size_t n, cap;
  int index[26 * 26]; /* position in v of "aa".."zz", or -1 */
};

/* Answers that are not flags, shared by all sites. */
struct canned {
  struct MHD_Response *bad_request, *not_found, *not_allowed, *too_long,
      *teapot, *unavailable;
};

/* A parked connection and when to resume it. */
struct wakeup {
  uint64_t at; /* CLOCK_MONOTONIC, ns */
  struct MHD_Connection *conn;
};

/* The timer thread that resumes suspended connections. */
struct timer {
  pthread_mutex_t lock; /* guards heap, n, cap, stopping */
  pthread_cond_t cond;  /* signalled on push and on stop */
  struct wakeup *heap;  /* min-heap on `at` */
  size_t n, cap;
  int stopping; /* no more parking; resume everything now */
  pthread_t thread;
};

struct server;

/* One listening daemon with its behaviour and its counters. */
struct site {
  struct server *srv;
  const char *label; /* "LOCAL", "DELAY", "ERROR", or NULL */
  double delay_min, delay_max, error_rate;
  int fd; /* listening socket, owned by daemon once started */
  unsigned port;
  struct MHD_Daemon *daemon;
  uint64_t rng;                                 /* polling thread only */
  unsigned long served, ok, not_found, teapots; /* polling thread only */
};

/* What one request gets; lives from the URI callback to completion. */
struct request {
  size_t target_len; /* length of the raw request target */
  int encoded_nul;   /* raw target holds %00 */
  int decided;       /* status and resp below are set */
  int refused;       /* answer at once, no delay, no teapot */
  int parked;        /* was suspended for its delay; answer on resume */
  unsigned status;
  struct MHD_Response *resp;
  double delay; /* seconds */
};

/* Command line. */
struct options {
  const char *directory; /* NULL: generate the flags */
  const char *bind;
  long port; /* -1: default */
  double delay_min, delay_max, error_rate;
  int delay_set, error_set, labels, verbose;
};

/* The whole process. */
struct server {
  struct options opt;
  struct flagset flags;
  struct canned canned;
  struct timer timer;
  struct site sites[MAX_SITES];
  int nsites;
  atomic_long inflight; /* requests between on_uri and on_completed */
};

static const char usage_text[] =
    "Usage: flagserver [OPTIONS]\n"
    "Serve flag images at /flags/<cc>/<cc>.gif (GET and HEAD).\n"
    "\n"
    "  -d, --directory DIR   serve DIR/<cc>/<cc>.gif (codes from\n"
    "                        DIR/country_codes.txt when present); default:\n"
    "                        194 generated flags\n"
    "  -D, --delay MIN[:MAX] wait MIN to MAX seconds before each answer\n"
    "  -e, --error-rate P    answer a fraction P (0..1) with 418 I'm a Teapot\n"
    "  -b, --bind ADDR       address to listen on (default 127.0.0.1)\n"
    "  -p, --port N          port (default 8000; 0 picks a free one)\n"
    "  -l, --labels          serve LOCAL on PORT (no delay), DELAY on PORT+1\n"
    "                        (0.5-5 s) and ERROR on PORT+2 (0.5-5 s, 25%\n"
    "                        418s); PORT defaults to 8000\n"
    "  -v, --verbose         log each request to stderr\n"
    "  -h, --help            show this help\n"
    "      --version         show the version and exit\n"
    "\n"
    "Prints 'Serving flags on http://ADDR:PORT/flags' per site once ready.\n"
    "SIGINT or SIGTERM stops it and prints to stderr:\n"
    "  served N requests: A ok, B not found, C errors(418)\n";

/* Prints a usage error naming the input and exits with EXIT_USAGE. */
static void die_usage(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));
static void die_usage(const char *fmt, ...) {
  va_list ap;
  fputs("flagserver: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  exit(EXIT_USAGE);
}

/* Monotonic time in nanoseconds. */
static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A uniform double in [0, 1) from xorshift64*; state must not be 0. */
static double rng_next(uint64_t *s) {
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return (double)((*s * 0x2545F4914F6CDD1DULL) >> 11) * 0x1.0p-53;
}

/* True for a lower-case ASCII letter, whatever the locale. */
static int is_lower(char c) {
  return c >= 'a' && c <= 'z';
}

/* ---- flags in memory ---- */

/* Adds an image for `cc` (two lower-case letters), taking ownership of
 * data. Returns 0, or -1 (ENOMEM; data is freed). */
static int flagset_add(struct flagset *fs, const char *cc, unsigned char *data,
                       size_t len) {
  struct flag *f;
  if (fs->n == fs->cap) {
    size_t cap = fs->cap ? fs->cap * 2 : 256;
    struct flag *v = realloc(fs->v, cap * sizeof *v);
    if (!v)
      goto out_free_data;
    fs->v = v;
    fs->cap = cap;
  }
  f = &fs->v[fs->n];
  f->resp = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_PERSISTENT);
  if (!f->resp)
    goto out_free_data;
  if (MHD_add_response_header(f->resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                              "image/gif") != MHD_YES)
    goto out_destroy_resp;
  memcpy(f->cc, cc, 3);
  f->data = data;
  f->len = len;
  fs->index[(cc[0] - 'a') * 26 + (cc[1] - 'a')] = (int)fs->n++;
  return 0;

out_destroy_resp:
  MHD_destroy_response(f->resp);
out_free_data:
  free(data);
  errno = ENOMEM;
  return -1;
}

/* The image for `cc` (two lower-case letters), or NULL. */
static struct flag *flagset_find(struct flagset *fs, const char *cc) {
  int i = fs->index[(cc[0] - 'a') * 26 + (cc[1] - 'a')];
  return i < 0 ? NULL : &fs->v[i];
}

/* Frees every image and its response; the set is empty afterwards. */
static void flagset_free(struct flagset *fs) {
  for (size_t i = 0; i < fs->n; i++) {
    MHD_destroy_response(fs->v[i].resp);
    free(fs->v[i].data);
  }
  free(fs->v);
  fs->v = NULL;
  fs->n = fs->cap = 0;
  memset(fs->index, -1, sizeof fs->index);
}

/* Draws the 194 flags of country_codes. Returns 0, or -1 with a message. */
static int generate_flags(struct flagset *fs) {
  for (int i = 0; i < COUNTRY_CODE_COUNT; i++) {
    char cc[3] = {(char)(country_codes[i][0] | 0x20),
                  (char)(country_codes[i][1] | 0x20), 0};
    unsigned char *data;
    size_t len;
    if (gifgen_flag(cc, &data, &len) < 0 || flagset_add(fs, cc, data, len)) {
      fprintf(stderr, "flagserver: cannot draw flag %s: %s\n", cc,
              strerror(errno));
      return -1;
    }
  }
  return 0;
}

/* Reads all of a regular file of at most `max` bytes into *out (OUT,
 * malloc'd). Returns 0, or -1 with errno. */
static int read_file(const char *path, size_t max, unsigned char **out,
                     size_t *len) {
  struct stat st;
  unsigned char *buf;
  size_t got = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  if (fstat(fd, &st) < 0)
    goto out_close;
  if (!S_ISREG(st.st_mode) || (size_t)st.st_size > max) {
    errno = S_ISREG(st.st_mode) ? EFBIG : EISDIR;
    goto out_close;
  }
  if (!(buf = malloc((size_t)st.st_size + 1)))
    goto out_close;
  while (got < (size_t)st.st_size) {
    ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0) {
      errno = r < 0 ? errno : EIO;
      goto out_free_buf;
    }
    got += (size_t)r;
  }
  buf[got] = 0;
  close(fd);
  *out = buf;
  *len = got;
  return 0;

out_free_buf:
  free(buf);
out_close : {
  int saved = errno;
  close(fd);
  errno = saved;
}
  return -1;
}

/* Appends the code `cc` (two letters, any case) in lower case to codes[]
 * (room for all 26 * 26) unless already there. */
static void add_code(char (*codes)[3], int *n, const char *cc) {
  char lc[3] = {(char)(cc[0] | 0x20), (char)(cc[1] | 0x20), 0};
  for (int i = 0; i < *n; i++)
    if (!strcmp(codes[i], lc))
      return;
  memcpy(codes[(*n)++], lc, 3);
}

/* Codes listed in DIR/country_codes.txt. Returns how many, 0 if there is no
 * such file; exits with a usage error on a token that is not a code. */
static int codes_from_list(const char *dir, char (*codes)[3]) {
  char path[4096];
  unsigned char *text;
  size_t len;
  int n = 0;

  snprintf(path, sizeof path, "%s/country_codes.txt", dir);
  if (read_file(path, 1 << 20, &text, &len) < 0)
    return 0;
  for (char *save, *tok = strtok_r((char *)text, " \t\r\n", &save); tok;
       tok = strtok_r(NULL, " \t\r\n", &save)) {
    char lc0 = (char)(tok[0] | 0x20), lc1 = (char)(tok[1] | 0x20);
    if (!is_lower(lc0) || !is_lower(lc1) || tok[2]) {
      fprintf(stderr,
              "flagserver: %s: '%.40s' is not a two-letter country code; "
              "fix or delete that file\n",
              path, tok);
      free(text);
      exit(EXIT_USAGE);
    }
    add_code(codes, &n, tok);
  }
  free(text);
  return n;
}

/* Codes of the two-lower-case-letter entries of DIR, for a folder without
 * country_codes.txt. */
static int codes_from_entries(const char *dir, char (*codes)[3]) {
  DIR *d = opendir(dir);
  struct dirent *e;
  int n = 0;
  if (!d)
    return 0;
  while ((e = readdir(d)) != NULL)
    if (is_lower(e->d_name[0]) && is_lower(e->d_name[1]) && !e->d_name[2])
      add_code(codes, &n, e->d_name);
  closedir(d);
  return n;
}

/* Loads DIR/<cc>/<cc>.gif for every code the folder names. Exits with a
 * usage error if DIR is not a folder or holds no flags; returns 0, or -1
 * (out of memory). */
static int load_directory(struct flagset *fs, const char *dir) {
  static char codes[26 * 26][3];
  struct stat st;
  int n;

  errno = 0;
  if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
    die_usage("--directory '%s': %s; give a folder holding <cc>/<cc>.gif "
              "files, or omit it to serve generated flags",
              dir, strerror(errno ? errno : ENOTDIR));
  n = codes_from_list(dir, codes);
  if (n == 0)
    n = codes_from_entries(dir, codes);
  for (int i = 0; i < n; i++) {
    char path[4096];
    unsigned char *data;
    size_t len;
    snprintf(path, sizeof path, "%s/%s/%s.gif", dir, codes[i], codes[i]);
    if (read_file(path, MAX_FLAG_BYTES, &data, &len) < 0) {
      fprintf(stderr, "flagserver: warning: not serving %s: %s: %s\n", codes[i],
              path, strerror(errno));
      continue;
    }
    if (flagset_add(fs, codes[i], data, len) < 0)
      return -1;
  }
  if (fs->n == 0)
    die_usage("--directory '%s' holds no flags (expected <cc>/<cc>.gif, "
              "e.g. br/br.gif); point it at a folder of flags or omit it "
              "to serve generated ones",
              dir);
  return 0;
}

/* ---- canned answers ---- */

/* A persistent text/plain response over the literal `body`, or NULL. */
static struct MHD_Response *text_response(const char *body) {
  struct MHD_Response *r = MHD_create_response_from_buffer(
      strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
  if (r && MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                                   "text/plain; charset=utf-8") != MHD_YES) {
    MHD_destroy_response(r);
    r = NULL;
  }
  return r;
}

/* Destroys every canned response that exists. */
static void canned_free(struct canned *c) {
  struct MHD_Response **all[] = {&c->bad_request, &c->not_found,
                                 &c->not_allowed, &c->too_long,
                                 &c->teapot,      &c->unavailable};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
    if (*all[i])
      MHD_destroy_response(*all[i]);
    *all[i] = NULL;
  }
}

/* Creates the canned responses. Returns 0, or -1 (out of memory). */
static int canned_init(struct canned *c) {
  c->bad_request = text_response("Bad request: only /flags/<cc>/<cc>.gif "
                                 "is served\n");
  c->not_found = text_response("Not found\n");
  c->not_allowed = text_response("Method not allowed: use GET or HEAD\n");
  c->too_long = text_response("URI too long\n");
  c->teapot = text_response("I'm a Teapot\n");
  c->unavailable = text_response("Out of memory\n");
  if (!c->bad_request || !c->not_found || !c->not_allowed || !c->too_long ||
      !c->teapot || !c->unavailable ||
      MHD_add_response_header(c->not_allowed, MHD_HTTP_HEADER_ALLOW,
                              "GET, HEAD") != MHD_YES) {
    canned_free(c);
    return -1;
  }
  return 0;
}

/* ---- timer ---- */

/* Swaps heap entries i and j. */
static void heap_swap(struct timer *t, size_t i, size_t j) {
  struct wakeup w = t->heap[i];
  t->heap[i] = t->heap[j];
  t->heap[j] = w;
}

/* Pushes a wake-up; caller holds t->lock. Returns 0, or -1 (ENOMEM). */
static int heap_push(struct timer *t, uint64_t at, struct MHD_Connection *c) {
  size_t i;
  if (t->n == t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 1024;
    struct wakeup *h = realloc(t->heap, cap * sizeof *h);
    if (!h)
      return -1;
    t->heap = h;
    t->cap = cap;
  }
  i = t->n++;
  t->heap[i] = (struct wakeup){at, c};
  for (; i > 0 && t->heap[(i - 1) / 2].at > t->heap[i].at; i = (i - 1) / 2)
    heap_swap(t, i, (i - 1) / 2);
  return 0;
}

/* Removes and returns the earliest wake-up; caller holds t->lock and
 * t->n > 0. */
static struct MHD_Connection *heap_pop(struct timer *t) {
  struct MHD_Connection *c = t->heap[0].conn;
  size_t i = 0;
  t->heap[0] = t->heap[--t->n];
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < t->n && t->heap[l].at < t->heap[m].at)
      m = l;
    if (r < t->n && t->heap[r].at < t->heap[m].at)
      m = r;
    if (m == i)
      break;
    heap_swap(t, i, m);
    i = m;
  }
  return c;
}

/* Timer thread: resumes each parked connection at its wake-up time, all of
 * them at once when stopping. Resumes in batches outside the lock. */
static void *timer_main(void *arg) {
  struct timer *t = arg;
  struct MHD_Connection *due[256];

  pthread_mutex_lock(&t->lock);
  while (t->n > 0 || !t->stopping) {
    size_t k = 0;
    uint64_t now = now_ns();
    while (t->n > 0 && k < 256 && (t->stopping || t->heap[0].at <= now))
      due[k++] = heap_pop(t);
    if (k > 0) {
      pthread_mutex_unlock(&t->lock);
      for (size_t i = 0; i < k; i++)
        MHD_resume_connection(due[i]);
      pthread_mutex_lock(&t->lock);
    } else if (t->n > 0) {
      struct timespec ts = {(time_t)(t->heap[0].at / 1000000000u),
                            (long)(t->heap[0].at % 1000000000u)};
      pthread_cond_timedwait(&t->cond, &t->lock, &ts);
    } else {
      pthread_cond_wait(&t->cond, &t->lock);
    }
  }
  pthread_mutex_unlock(&t->lock);
  return NULL;
}

/* Starts the timer thread. Returns 0, or an errno value. */
static int timer_start(struct timer *t) {
  pthread_condattr_t ca;
  int rc;

  memset(t, 0, sizeof *t);
  if ((rc = pthread_condattr_init(&ca)) != 0)
    return rc;
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  rc = pthread_cond_init(&t->cond, &ca);
  pthread_condattr_destroy(&ca);
  if (rc != 0)
    return rc;
  if ((rc = pthread_mutex_init(&t->lock, NULL)) != 0)
    goto out_destroy_cond;
  if ((rc = pthread_create(&t->thread, NULL, timer_main, t)) != 0)
    goto out_destroy_lock;
  return 0;

out_destroy_lock:
  pthread_mutex_destroy(&t->lock);
out_destroy_cond:
  pthread_cond_destroy(&t->cond);
  return rc;
}

/* Resumes everything still parked, stops and joins the thread, frees the
 * heap. No connection is suspended by us afterwards. */
static void timer_stop(struct timer *t) {
  pthread_mutex_lock(&t->lock);
  t->stopping = 1;
  pthread_cond_signal(&t->cond);
  pthread_mutex_unlock(&t->lock);
  pthread_join(t->thread, NULL);
  pthread_cond_destroy(&t->cond);
  pthread_mutex_destroy(&t->lock);
  free(t->heap);
  t->heap = NULL;
}

/* Suspends `conn` for `delay` seconds. Returns 1 if parked, 0 if the timer
 * is stopping or out of memory (answer now instead). */
static int timer_park(struct timer *t, struct MHD_Connection *conn,
                      double delay) {
  uint64_t at = now_ns() + (uint64_t)(delay * 1e9);
  int parked = 0;

  /* Suspend under the lock: timer_stop() then either sees the entry and
   * resumes it, or has set `stopping` and we do not suspend at all. */
  pthread_mutex_lock(&t->lock);
  if (!t->stopping && heap_push(t, at, conn) == 0) {
    MHD_suspend_connection(conn);
    if (t->heap[0].conn == conn)
      pthread_cond_signal(&t->cond);
    parked = 1;
  }
  pthread_mutex_unlock(&t->lock);
  return parked;
}

/* ---- requests ---- */

/* MHD URI callback: allocates the request's state and notes what MHD's
 * decoding would hide (raw length, encoded NUL). NULL if out of memory. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn) {
  struct site *s = cls;
  struct request *rq = calloc(1, sizeof *rq);
  (void)conn;
  if (rq) {
    rq->target_len = strlen(uri);
    rq->encoded_nul = strstr(uri, "%00") != NULL;
    atomic_fetch_add(&s->srv->inflight, 1);
  }
  return rq;
}

/* MHD completion callback: frees the request's state. */
static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe) {
  struct site *s = cls;
  (void)conn;
  (void)toe;
  if (*req_cls)
    atomic_fetch_sub(&s->srv->inflight, 1);
  free(*req_cls);
  *req_cls = NULL;
}

/* 0 if the decoded path `url` may be looked up, else the 4xx to refuse it
 * with: too long, traversal, absolute or odd paths. */
static unsigned refusal(const struct request *rq, const char *url) {
  if (rq->target_len > MAX_TARGET)
    return MHD_HTTP_URI_TOO_LONG;
  if (url[0] != '/' || url[1] == '/' || strstr(url, "..") ||
      strstr(url, "//") || strchr(url, '\\') || rq->encoded_nul)
    return MHD_HTTP_BAD_REQUEST;
  for (const char *p = url; *p; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f)
      return MHD_HTTP_BAD_REQUEST;
  return 0;
}

/* The image "/flags/<cc>/<cc>.gif" names (same lower-case code twice), or
 * NULL for any other path. */
static struct flag *route(struct flagset *fs, const char *url) {
  const char *cc;
  if (strncmp(url, "/flags/", 7))
    return NULL;
  cc = url + 7;
  if (!is_lower(cc[0]) || !is_lower(cc[1]) || cc[2] != '/' ||
      strncmp(cc + 3, cc, 2) || strcmp(cc + 5, ".gif"))
    return NULL;
  return flagset_find(fs, cc);
}

/* Decides status, response and delay of a request. Refusals are immediate;
 * lookups get the site's delay and may draw a teapot. */
static void decide(struct site *s, struct request *rq, const char *url,
                   const char *method) {
  struct canned *c = &s->srv->canned;
  struct flag *f;

  rq->decided = 1;
  rq->refused = 1;
  if (strcmp(method, MHD_HTTP_METHOD_GET) &&
      strcmp(method, MHD_HTTP_METHOD_HEAD)) {
    rq->status = MHD_HTTP_METHOD_NOT_ALLOWED;
    rq->resp = c->not_allowed;
  } else if ((rq->status = refusal(rq, url)) != 0) {
    rq->resp =
        rq->status == MHD_HTTP_URI_TOO_LONG ? c->too_long : c->bad_request;
  } else {
    rq->refused = 0;
    rq->delay =
        s->delay_min + (s->delay_max - s->delay_min) * rng_next(&s->rng);
    if (rng_next(&s->rng) < s->error_rate) {
      rq->status = TEAPOT;
      rq->resp = c->teapot;
    } else if ((f = route(&s->srv->flags, url)) != NULL) {
      rq->status = MHD_HTTP_OK;
      rq->resp = f->resp;
    } else {
      rq->status = MHD_HTTP_NOT_FOUND;
      rq->resp = c->not_found;
    }
  }
}

/* Writes one -v line: label, method, path (cut, control bytes masked),
 * status and delay. */
static void log_request(const struct site *s, const char *method,
                        const char *url, unsigned status, double delay) {
  char path[121];
  size_t i;
  for (i = 0; url[i] && i < sizeof path - 1; i++)
    path[i] = (unsigned char)url[i] < 0x20 || url[i] == 0x7f ? '?' : url[i];
  path[i] = 0;
  fprintf(stderr, "flagserver: %s%s%s%.16s %s%s %u %.3fs\n",
          s->label ? "[" : "", s->label ? s->label : "", s->label ? "] " : "",
          method, path, url[i] ? "..." : "", status, delay);
}

/* Queues the decided answer and counts it. */
static enum MHD_Result answer(struct site *s, struct MHD_Connection *conn,
                              const char *method, const char *url,
                              unsigned status, struct MHD_Response *resp,
                              double delay) {
  if (MHD_queue_response(conn, status, resp) != MHD_YES)
    return MHD_NO;
  s->served++;
  s->ok += status == MHD_HTTP_OK;
  s->not_found += status == MHD_HTTP_NOT_FOUND;
  s->teapots += status == TEAPOT;
  if (s->srv->opt.verbose)
    log_request(s, method, url, status, delay);
  return MHD_YES;
}

/* MHD access handler: decide on the first call and refuse at once;
 * otherwise swallow any body, park for the delay, and answer when resumed.
 * Lookups are not answered on the first call because MHD closes the
 * connection after such an early answer, and keep-alive matters here. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
                                  const char *url, const char *method,
                                  const char *version, const char *upload,
                                  size_t *upload_size, void **req_cls) {
  struct site *s = cls;
  struct request *rq = *req_cls;
  (void)version;
  (void)upload;

  if (!rq)
    return answer(s, conn, method, url, MHD_HTTP_SERVICE_UNAVAILABLE,
                  s->srv->canned.unavailable, 0);
  if (!rq->decided) {
    decide(s, rq, url, method);
    if (rq->refused)
      return answer(s, conn, method, url, rq->status, rq->resp, 0);
    return MHD_YES;
  }
  if (*upload_size) {
    *upload_size = 0;
    return MHD_YES;
  }
  if (rq->delay > 0 && !rq->parked) {
    rq->parked = 1;
    if (timer_park(&s->srv->timer, conn, rq->delay))
      return MHD_YES;
  }
  return answer(s, conn, method, url, rq->status, rq->resp, rq->delay);
}

/* ---- sites ---- */

/* Opens a non-blocking listening socket on addr:port for s, noting the port
 * actually bound. Exits with a usage error if addr is no address; returns
 * 0, or -1 with a message. */
static int site_listen(struct site *s, const char *addr, unsigned port) {
  struct addrinfo hints = {.ai_flags = AI_PASSIVE | AI_NUMERICSERV,
                           .ai_socktype = SOCK_STREAM};
  struct addrinfo *ai;
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  char serv[8];
  int one = 1, rc;

  snprintf(serv, sizeof serv, "%u", port);
  if ((rc = getaddrinfo(addr, serv, &hints, &ai)) != 0)
    die_usage("--bind must be an address to listen on, such as 127.0.0.1 "
              "or ::1, got '%s' (%s)",
              addr, gai_strerror(rc));
  s->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s->fd < 0 ||
      setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
      bind(s->fd, ai->ai_addr, ai->ai_addrlen) < 0 ||
      listen(s->fd, CONNECTION_LIMIT) < 0 ||
      getsockname(s->fd, (struct sockaddr *)&ss, &sl) < 0)
    goto out_close;
  s->port =
      ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                     : ((struct sockaddr_in *)&ss)->sin_port);
  freeaddrinfo(ai);
  return 0;

out_close:
  fprintf(stderr,
          "flagserver: cannot listen on %s port %u: %s; pick another "
          "--port (0 picks a free one)\n",
          addr, port, strerror(errno));
  if (s->fd >= 0)
    close(s->fd);
  s->fd = -1;
  freeaddrinfo(ai);
  return -1;
}

/* Starts s's daemon over its listening socket, which it then owns.
 * Returns 0, or -1 with a message. */
static int site_start(struct site *s, unsigned conn_limit) {
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_ALLOW_SUSPEND_RESUME;
  flags |= MHD_is_feature_supported(MHD_FEATURE_EPOLL) == MHD_YES
               ? MHD_USE_EPOLL
               : MHD_USE_POLL;
  if (s->srv->opt.verbose)
    flags |= MHD_USE_ERROR_LOG;
  s->daemon = MHD_start_daemon(
      flags, 0, NULL, NULL, on_request, s, MHD_OPTION_LISTEN_SOCKET, s->fd,
      MHD_OPTION_CONNECTION_LIMIT, conn_limit, MHD_OPTION_CONNECTION_TIMEOUT,
      (unsigned)IDLE_TIMEOUT, MHD_OPTION_URI_LOG_CALLBACK, on_uri, s,
      MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_END);
  if (!s->daemon) {
    fprintf(stderr, "flagserver: cannot start the HTTP daemon on port %u\n",
            s->port);
    close(s->fd);
    s->fd = -1;
    return -1;
  }
  return 0;
}

/* Prints the line a client waits for to learn the port. */
static void site_announce(const struct site *s, const char *addr) {
  int v6 = strchr(addr, ':') != NULL;
  printf("Serving flags on http://%s%s%s:%u/flags", v6 ? "[" : "", addr,
         v6 ? "]" : "", s->port);
  if (s->label && s->delay_max == 0)
    printf(" (%s: no delay)", s->label);
  else if (s->label && s->error_rate == 0)
    printf(" (%s: %g-%g s delay)", s->label, s->delay_min, s->delay_max);
  else if (s->label)
    printf(" (%s: %g-%g s delay, %g%% errors)", s->label, s->delay_min,
           s->delay_max, s->error_rate * 100);
  printf("\n");
  fflush(stdout);
}

/* Fills the sites from the options: one, or the three classic labels. */
static void sites_configure(struct server *srv) {
  static const struct {
    const char *label;
    double dmin, dmax, err;
  } classic[MAX_SITES] = {
      {"LOCAL", 0, 0, 0}, {"DELAY", 0.5, 5, 0}, {"ERROR", 0.5, 5, 0.25}};
  const struct options *o = &srv->opt;
  uint64_t seed = now_ns() ^ ((uint64_t)getpid() << 32);

  srv->nsites = o->labels ? MAX_SITES : 1;
  for (int i = 0; i < srv->nsites; i++) {
    struct site *s = &srv->sites[i];
    s->srv = srv;
    s->fd = -1;
    s->rng = (seed + 0x9E3779B97F4A7C15ULL * (uint64_t)(i + 1)) | 1;
    s->label = o->labels ? classic[i].label : NULL;
    s->delay_min = o->labels ? classic[i].dmin : o->delay_min;
    s->delay_max = o->labels ? classic[i].dmax : o->delay_max;
    s->error_rate = o->labels ? classic[i].err : o->error_rate;
  }
}

/* Raises the soft RLIMIT_NOFILE to the hard one and returns how many
 * connections each site may then hold. */
static unsigned connection_limit(int nsites) {
  struct rlimit rl;
  rlim_t per_site;
  if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
    return 256;
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  getrlimit(RLIMIT_NOFILE, &rl);
  per_site = rl.rlim_cur > 64 ? (rl.rlim_cur - 64) / (rlim_t)nsites : 16;
  return per_site < CONNECTION_LIMIT ? (unsigned)per_site : CONNECTION_LIMIT;
}

/* ---- options ---- */

/* Parses "MIN" or "MIN:MAX" seconds; exits with a usage error if bad. */
static void parse_delay(const char *arg, struct options *o) {
  char *end;
  o->delay_min = strtod(arg, &end);
  o->delay_max = o->delay_min;
  if (end != arg && *end == ':') {
    const char *max = end + 1;
    o->delay_max = strtod(max, &end);
    if (end == max)
      end = (char *)arg;
  }
  if (end == arg || *end || !isfinite(o->delay_min) ||
      !isfinite(o->delay_max) || o->delay_min < 0 ||
      o->delay_max < o->delay_min || o->delay_max > MAX_DELAY)
    die_usage("--delay must be MIN or MIN:MAX seconds with 0 <= MIN <= MAX "
              "<= %g, got '%s'",
              MAX_DELAY, arg);
  o->delay_set = 1;
}

/* Parses the error rate; exits with a usage error if not in [0, 1]. */
static void parse_error_rate(const char *arg, struct options *o) {
  char *end;
  o->error_rate = strtod(arg, &end);
  if (end == arg || *end || !(o->error_rate >= 0 && o->error_rate <= 1))
    die_usage("--error-rate must be between 0 and 1, got '%s'", arg);
  o->error_set = 1;
}

/* Parses the port; exits with a usage error if not in [0, 65535]. */
static void parse_port(const char *arg, struct options *o) {
  char *end;
  errno = 0;
  o->port = strtol(arg, &end, 10);
  if (end == arg || *end || errno || o->port < 0 || o->port > 65535)
    die_usage("--port must be an integer from 0 to 65535 (0 picks a free "
              "port), got '%s'",
              arg);
}

/* Fills *o from argv; exits 0 after --help and 2 on any bad input. */
static void parse_options(int argc, char **argv, struct options *o) {
  static const struct option longopts[] = {
      {"directory", required_argument, NULL, 'd'},
      {"delay", required_argument, NULL, 'D'},
      {"error-rate", required_argument, NULL, 'e'},
      {"bind", required_argument, NULL, 'b'},
      {"port", required_argument, NULL, 'p'},
      {"labels", no_argument, NULL, 'l'},
      {"verbose", no_argument, NULL, 'v'},
      {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, 'V'},
      {NULL, 0, NULL, 0}};
  int c;

  *o = (struct options){.bind = "127.0.0.1", .port = -1};
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":d:D:e:b:p:lvh", longopts, NULL)) !=
         -1) {
    switch (c) {
    case 'd':
      o->directory = optarg;
      break;
    case 'D':
      parse_delay(optarg, o);
      break;
    case 'e':
      parse_error_rate(optarg, o);
      break;
    case 'b':
      o->bind = optarg;
      break;
    case 'p':
      parse_port(optarg, o);
      break;
    case 'l':
      o->labels = 1;
      break;
    case 'v':
      o->verbose = 1;
      break;
    case 'h':
      fputs(usage_text, stdout);
      exit(0);
    case 'V':
      printf("flagserver (procpool) %s\n", PP_VERSION_STRING);
      exit(0);
    case ':':
      die_usage("option '%s' needs a value; see flagserver --help",
                argv[optind - 1]);
    default:
      if (optopt)
        die_usage("unknown option '-%c'; see flagserver --help", optopt);
      die_usage("unknown option '%s'; see flagserver --help", argv[optind - 1]);
    }
  }
  if (optind < argc)
    die_usage("unexpected argument '%s'; see flagserver --help", argv[optind]);
  if (o->labels && (o->delay_set || o->error_set))
    die_usage("--labels sets its own delays and error rates; drop --delay "
              "and --error-rate, or drop --labels");
  if (o->port < 0)
    o->port = 8000;
  if (o->labels && o->port > 65535 - (MAX_SITES - 1))
    die_usage("--labels uses ports PORT to PORT+2, so --port must be at "
              "most %d, got '%ld'",
              65535 - (MAX_SITES - 1), o->port);
}

/* ---- main ---- */

/* Opens and starts every site, printing one line each. Returns 0, or -1
 * with a message (sites already started stay for the caller to stop). */
static int start_sites(struct server *srv) {
  unsigned limit = connection_limit(srv->nsites);
  for (int i = 0; i < srv->nsites; i++) {
    struct site *s = &srv->sites[i];
    unsigned port = srv->opt.port ? (unsigned)srv->opt.port + (unsigned)i : 0;
    if (site_listen(s, srv->opt.bind, port) < 0 || site_start(s, limit) < 0)
      return -1;
  }
  for (int i = 0; i < srv->nsites; i++)
    site_announce(&srv->sites[i], srv->opt.bind);
  return 0;
}

/* Stops accepting connections, answers parked requests now instead of at
 * their wake-up time (the timer stops), and gives requests under way up to
 * DRAIN_SECONDS to finish, so that clients get answers rather than resets. */
static void drain_sites(struct server *srv) {
  uint64_t deadline = now_ns() + (uint64_t)(DRAIN_SECONDS * 1e9);
  struct timespec tick = {0, 10 * 1000 * 1000};
  for (int i = 0; i < srv->nsites; i++) {
    MHD_socket fd = MHD_quiesce_daemon(srv->sites[i].daemon);
    if (fd != MHD_INVALID_SOCKET)
      close(fd);
  }
  timer_stop(&srv->timer);
  while (atomic_load(&srv->inflight) > 0 && now_ns() < deadline)
    nanosleep(&tick, NULL);
}

/* Stops every started daemon. */
static void stop_sites(struct server *srv) {
  for (int i = 0; i < srv->nsites; i++) {
    if (srv->sites[i].daemon)
      MHD_stop_daemon(srv->sites[i].daemon);
    srv->sites[i].daemon = NULL;
  }
}

/* Prints what the sites answered, for tests to compare with what they saw;
 * N also counts refusals (400, 405, 414, 503). */
static void print_summary(const struct server *srv) {
  unsigned long served = 0, ok = 0, not_found = 0, teapots = 0;
  for (int i = 0; i < srv->nsites; i++) {
    const struct site *s = &srv->sites[i];
    served += s->served;
    ok += s->ok;
    not_found += s->not_found;
    teapots += s->teapots;
  }
  fprintf(stderr,
          "served %lu requests: %lu ok, %lu not found, %lu errors(418)\n",
          served, ok, not_found, teapots);
}

/* Blocks until SIGINT or SIGTERM (blocked in every thread). */
static void wait_for_stop(const sigset_t *stop) {
  int sig;
  while (sigwait(stop, &sig) != 0)
    ;
}

int main(int argc, char **argv) {
  static struct server srv;
  sigset_t stop;
  int rc = 1, err;

  parse_options(argc, argv, &srv.opt);
  memset(srv.flags.index, -1, sizeof srv.flags.index);
  signal(SIGPIPE, SIG_IGN);
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, NULL);

  if (srv.opt.directory ? load_directory(&srv.flags, srv.opt.directory)
                        : generate_flags(&srv.flags))
    goto out_free_flags;
  if (canned_init(&srv.canned) < 0) {
    fprintf(stderr, "flagserver: out of memory\n");
    goto out_free_flags;
  }
  if ((err = timer_start(&srv.timer)) != 0) {
    fprintf(stderr, "flagserver: cannot start timer: %s\n", strerror(err));
    goto out_free_canned;
  }
  sites_configure(&srv);
  if (start_sites(&srv) == 0) {
    wait_for_stop(&stop);
    drain_sites(&srv);
    rc = 0;
  } else {
    timer_stop(&srv.timer);
  }
  stop_sites(&srv);
  if (rc == 0)
    print_summary(&srv);
out_free_canned:
  canned_free(&srv.canned);
out_free_flags:
  flagset_free(&srv.flags);
  return rc;
}
