/*
 * flags: the pieces of the downloader and how they meet.
 *
 * DESIGN
 *   flags.c reads the command line into a struct fl_job (what to fetch,
 *   from where, into which directory, how many at once); flags_report.c
 *   prints the reports. flags_fetch.c downloads one flag on a curl easy
 *   handle, into a temporary file renamed into place only when the whole
 *   body arrived, and describes the outcome in a struct fl_result. The four
 *   modes run many fetches: flags_modes.c (sequential), flags_async.c (one
 *   thread on the multi interface) and flags_procs.c (threads and
 *   processes: a procpool of either engine). Every mode hands each result to
 * fl_report(), which counts it and shows it.
 *
 *   Ctrl-C sets a flag in a shared anonymous mapping made before any thread
 *   or worker exists, so that threads and forked workers alike see it: a
 *   transfer in progress aborts from its progress callback, and tasks not
 *   yet started return at once. Nothing is left half-written.
 */
#ifndef FLAGS_H
#define FLAGS_H

#include <pthread.h>
#include <stddef.h>
#include <sys/types.h>

#include <curl/curl.h>

#define FL_MAX_BODY (1024L * 1024) /* larger bodies are an error */
#define FL_MAX_URL 2048            /* longest base URL accepted */
#define FL_MAX_DIR 1024            /* longest output directory accepted */
#define FL_MAX_TIMEOUT 86400.0     /* longest --timeout, seconds */

enum fl_status { FL_OK, FL_NOT_FOUND, FL_ERROR, FL_INTERRUPTED };

enum fl_mode { FL_SEQUENTIAL, FL_THREADS, FL_PROCESSES, FL_ASYNC };

/* The outcome of one download; plain bytes, so that a worker process can
 * return it as a task result. */
struct fl_result {
  int status;      /* enum fl_status */
  long http;       /* HTTP status code, 0 if none arrived */
  long long bytes; /* body bytes received */
  char cc[3];      /* the code, upper case */
  char error[256]; /* why, for FL_ERROR */
};

/* One download in progress on an easy handle: set up by fl_fetch_begin(),
 * ended by fl_fetch_finish() whichever way the transfer ended. */
struct fl_fetch {
  CURL *easy;
  int fd;                       /* the temporary file, -1 if not open */
  int made;                     /* tmp exists and is ours to remove */
  int create_errno;             /* making the temporary file failed */
  int caller_prepares;          /* fl_fetch_prepare() is the caller's job */
  long http;                    /* response code, kept by fl_fetch_detach() */
  int oversize;                 /* the body passed FL_MAX_BODY */
  int write_errno;              /* a write to the temporary file failed */
  int not_gif;                  /* the 200's body is no GIF image */
  unsigned char head[6];        /* first bytes of the 200's body */
  size_t head_len;              /* how many of them arrived */
  char type[64];                /* Content-Type of the answer, "" if none */
  long long bytes;              /* body bytes written so far */
  char cc[3];                   /* upper case */
  char tmp[FL_MAX_DIR + 32];    /* temporary name (mkstemp template) */
  char dest[FL_MAX_DIR + 32];   /* final name, DIR/cc.gif */
  char url[FL_MAX_URL + 32];    /* BASE/cc/cc.gif */
  char reason[64];              /* reason phrase of the last status line */
  char errbuf[CURL_ERROR_SIZE]; /* curl's detailed error text */
};

/* What to download and how; filled by the command line, read-only once the
 * download starts, except the tally, which fl_report() guards. */
struct fl_job {
  char (*codes)[3];     /* upper-case codes, sorted */
  size_t n;             /* number of codes */
  const char *label;    /* LOCAL, DELAY, ERROR, REMOTE or CUSTOM */
  const char *base_url; /* without a trailing slash */
  const char *dir;      /* output directory */
  double timeout;       /* seconds per download */
  int concurrency;      /* -m, at most n */
  enum fl_mode mode;
  int verbose;  /* one line per code */
  int simple;   /* the first script's output */
  int progress; /* draw a bar on stderr */

  pthread_mutex_t lock; /* guards what follows (every mode reports from
                           the master thread today; the lock keeps that
                           from being a requirement) */
  size_t done;          /* results reported */
  size_t count[3];      /* per enum fl_status, but FL_INTERRUPTED */
  double t0;            /* start, on the monotonic clock */
};

/* Seconds on the monotonic clock. */
double fl_now(void);

/* Sets up the stop flag; call once, before any thread or worker starts.
 * Returns 0, or -1 with errno set. */
int fl_stop_init(void);

/* Asks every download to stop; async-signal-safe. */
void fl_stop(void);

/* Non-zero once fl_stop() was called, in any process of the program. */
int fl_stopping(void);

/* Sets the permission bits given to finished flags (0666 less the umask).
 * Call once, before any download. */
void fl_fetch_set_mode(mode_t mode);

/* Prepares a download of flag `cc` from `base_url` into `dir` on `easy`,
 * setting the handle's options. The temporary file is made later, by
 * fl_fetch_prepare() once the request is out, so that making it overlaps
 * the wait for the answer, or at the latest when a 200's body starts. */
void fl_fetch_begin(struct fl_fetch *f, CURL *easy, const char *base_url,
                    const char *dir, const char *cc, double timeout,
                    struct fl_result *out);

/* Makes the download's temporary file if its request is out and it has
 * none yet. The progress callback calls it, unless the caller set
 * f->caller_prepares to call it at better moments (the async loop, between
 * sending requests and sleeping). */
void fl_fetch_prepare(struct fl_fetch *f);

/* Lets go of the easy handle of a transfer that is over, keeping what
 * fl_fetch_finish() needs, so that the handle can carry the next download
 * before this one is finished. */
void fl_fetch_detach(struct fl_fetch *f);

/* Ends a download begun by fl_fetch_begin() whose transfer returned `rc`:
 * renames the file into place on success, removes it otherwise, and
 * describes the outcome in `out`. */
void fl_fetch_finish(struct fl_fetch *f, CURLcode rc, struct fl_result *out);

/* Downloads one flag on `easy` with curl_easy_perform(). */
void fl_fetch_one(CURL *easy, const char *base_url, const char *dir,
                  const char *cc, double timeout, struct fl_result *out);

/* Prints the classic report before the downloads: site, codes (listed up
 * to 10, else "from X to Y") and connections. */
void fl_initial_report(const struct fl_job *job);

/* Prints the classic report after: counts (lines for zero not-found or
 * errors left out) and time, or with --simple the first script's line. */
void fl_final_report(const struct fl_job *job, double elapsed);

/* Follows the size of the terminal the bar is drawn on (SIGWINCH).
 * Returns 0, or -1 with errno set. */
int fl_watch_terminal(void);

/* Redraws the progress bar on stderr, in place, ending the line at 100%;
 * the caller holds the job's lock or runs alone. */
void fl_draw_bar(struct fl_job *job, double now);

/* Counts a result and shows it (verbose line, code or bar); may be called
 * from any thread. Interrupted downloads are neither counted nor shown. */
void fl_report(struct fl_job *job, const struct fl_result *r);

/* The modes. Each runs every code of the job, reporting each result, and
 * returns 0, or -1 after printing why it could not run at all. */
int fl_run_sequential(struct fl_job *job);
int fl_run_threads(struct fl_job *job);
int fl_run_async(struct fl_job *job);
int fl_run_processes(struct fl_job *job);

#endif
