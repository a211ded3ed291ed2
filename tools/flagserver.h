/*
 * flagserver: the pieces of the server and how they meet.
 *
 * DESIGN. flagserver.c holds main() and the sites (one libmicrohttpd
 * daemon each); flagserver_flagset.c loads or draws the images into
 * memory; flagserver_canned.c makes the answers that are not flags;
 * flagserver_handler.c decides and queues each answer; flagserver_timer.c
 * parks delayed requests on a min-heap and resumes them;
 * flagserver_guard.c cuts off clients slow to send a request head;
 * flagserver_options.c reads the command line. See flagserver.c for
 * the threads and locks.
 */
#ifndef FLAGSERVER_H
#define FLAGSERVER_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define MAX_TARGET 256            /* longest request target we answer */
#define MAX_FLAG_BYTES (16 << 20) /* refuse to load bigger "flags" */
#define MAX_DELAY 3600.0          /* seconds */
#define CONNECTION_LIMIT 4096     /* per site, fds permitting */
#define IDLE_TIMEOUT 60           /* seconds an idle keep-alive may last */
#define HEADER_TIMEOUT 10         /* seconds to send a request head */
#define PRESSED_HEADER_TIMEOUT 1  /* the same, near the connection cap */
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
      *unavailable;
  struct MHD_Response *listing; /* HTML index of /flags/, over text */
  char *listing_text;           /* owned */
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

/* One connection of a site, watched for slow request heads. */
struct watch {
  struct watch *prev, *next; /* in the guard's list */
  int fd;                    /* the connection's socket, owned by MHD */
  int waiting;               /* no complete request head yet */
  uint64_t since;            /* CLOCK_MONOTONIC ns when waiting began */
};

/* A site's connections, for the slow-header bound (flagserver_guard.c). */
struct guard {
  pthread_mutex_t lock; /* guards the list, count and every watch */
  struct watch head;    /* sentinel of a circular list */
  unsigned count;       /* connections open */
  unsigned cap;         /* the site's connection limit */
};

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
  struct guard guard;
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

/* Prints "flagserver: " and the message to stderr, exits with EXIT_USAGE. */
void fs_die_usage(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

/* Monotonic time in nanoseconds. */
uint64_t fs_now_ns(void);

/* True for a lower-case ASCII letter, whatever the locale. */
static inline int fs_is_lower(char c) {
  return c >= 'a' && c <= 'z';
}

/* Fills *o from argv; exits 0 after --help and 2 on any bad input. */
void fs_parse_options(int argc, char **argv, struct options *o);

/* The image for `cc` (two lower-case letters), or NULL. */
struct flag *fs_flagset_find(struct flagset *fs, const char *cc);

/* Frees every image and its response; the set is empty afterwards. */
void fs_flagset_free(struct flagset *fs);

/* Draws the 194 flags of country_codes. Returns 0, or -1 with a message. */
int fs_generate_flags(struct flagset *fs);

/* Loads DIR/<cc>/<cc>.gif for every code the folder names. Exits with a
 * usage error if DIR is not a folder or holds no flags; returns 0, or -1
 * (out of memory). */
int fs_load_directory(struct flagset *fs, const char *dir);

/* Creates the canned responses. Returns 0, or -1 (out of memory). */
int fs_canned_init(struct canned *c);

/* Destroys every canned response that exists. */
void fs_canned_free(struct canned *c);

/* MHD callbacks of a site (cls is the struct site). */
void *fs_on_uri(void *cls, const char *uri, struct MHD_Connection *conn);
void fs_on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                     enum MHD_RequestTerminationCode toe);
enum MHD_Result fs_on_request(void *cls, struct MHD_Connection *conn,
                              const char *url, const char *method,
                              const char *version, const char *upload,
                              size_t *upload_size, void **req_cls);

/* Creates the canned HTML index of the flags in fs. Returns 0, or -1. */
int fs_canned_listing(struct canned *c, const struct flagset *fs);

/* Sets up an empty guard for a site of `cap` connections; 0 or errno. */
int fs_guard_init(struct guard *g, unsigned cap);
void fs_guard_destroy(struct guard *g);

/* MHD connection callback (cls is the struct site): watches each
 * connection from its start to its close. */
void fs_on_connection(void *cls, struct MHD_Connection *conn,
                      void **socket_context,
                      enum MHD_ConnectionNotificationCode toe);

/* Marks conn as waiting for a request head (since now), or not. */
void fs_guard_mark(struct guard *g, struct MHD_Connection *conn, int waiting);

/* Shuts down every connection that waited too long for its request head;
 * called a few times a second by the main thread. */
void fs_guard_sweep(struct guard *g);

/* MHD's logger under -v (MHD_OPTION_EXTERNAL_LOGGER). */
void fs_on_mhd_log(void *cls, const char *fmt, va_list ap);

/* Starts the timer thread. Returns 0, or an errno value. */
int fs_timer_start(struct timer *t);

/* Resumes everything still parked, stops and joins the thread, frees the
 * heap. No connection is suspended by us afterwards. */
void fs_timer_stop(struct timer *t);

/* Suspends `conn` for `delay` seconds. Returns 1 if parked, 0 if the timer
 * is stopping or out of memory (answer now instead). */
int fs_timer_park(struct timer *t, struct MHD_Connection *conn, double delay);

#endif
