/*
 * flags_report: what flags prints about a run, in the classic scripts'
 * words.
 *
 * DESIGN
 *   Before the run, the site, the codes and the number of connections;
 *   during it, per result, a line (-v), the code (--simple) or a progress
 *   bar redrawn in place on stderr when that is a terminal, in tqdm's
 *   format: as wide as the terminal (TIOCGWINSZ, asked again after each
 *   SIGWINCH, so a resize is followed at the next redraw), never wider,
 *   so that a narrow pane does not fill with wrapped bars, and with the
 *   rate as seconds per item once items take more than a second; after
 *   it, the counts and the time. Results may come from
 *   several threads at once: fl_report() holds the job's lock while it
 *   counts and prints, so that counts and lines never interleave.
 */
#include "flags.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define DEFAULT_COLUMNS 80 /* when the terminal does not say */
#define MIN_BAR 4          /* narrower than this, no bar is drawn */

static volatile sig_atomic_t resized = 1; /* width to be asked again */
static int columns = DEFAULT_COLUMNS;     /* of the terminal on stderr */
static size_t last_len;                   /* of the line drawn last */

/* SIGWINCH: the terminal changed size; the next redraw asks it. */
static void on_winch(int sig) {
  (void)sig;
  resized = 1;
}

int fl_watch_terminal(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_winch;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  return sigaction(SIGWINCH, &sa, NULL);
}

/* The width of the terminal on stderr, asked again after a resize. */
static int terminal_columns(void) {
  struct winsize ws;
  if (resized) {
    resized = 0;
    columns = ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0
                  ? ws.ws_col
                  : DEFAULT_COLUMNS;
  }
  return columns;
}

void fl_initial_report(const struct fl_job *job) {
  printf("%s site: %s\n", job->label, job->base_url);
  printf("Searching for %zu flag%s: ", job->n, job->n == 1 ? "" : "s");
  if (job->n <= 10) {
    for (size_t i = 0; i < job->n; i++)
      printf("%s%s", i ? ", " : "", job->codes[i]);
    putchar('\n');
  } else {
    printf("from %s to %s\n", job->codes[0], job->codes[job->n - 1]);
  }
  if (job->concurrency == 1)
    printf("1 connection will be used.\n");
  else
    printf("%d concurrent connections will be used.\n", job->concurrency);
  fflush(stdout);
}

void fl_final_report(const struct fl_job *job, double elapsed) {
  size_t ok = job->count[FL_OK], nf = job->count[FL_NOT_FOUND],
         err = job->count[FL_ERROR];

  if (job->simple) {
    printf("\n%zu downloads in %.2fs\n", ok, elapsed);
    return;
  }
  printf("--------------------\n");
  printf("%3zu flag%s downloaded.\n", ok, ok == 1 ? "" : "s");
  if (nf)
    printf("%3zu not found.\n", nf);
  if (err)
    printf("%3zu error%s.\n", err, err == 1 ? "" : "s");
  printf("Elapsed time: %.2fs\n", elapsed);
}

/* Formats whole seconds as tqdm does: MM:SS, or H:MM:SS past an hour
 * (capped at 99:59:59). */
static void fmt_clock(char *buf, size_t size, double s) {
  int t = s < 0 ? 0 : s > 359999 ? 359999 : (int)s;
  if (t >= 3600)
    snprintf(buf, size, "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60);
  else
    snprintf(buf, size, "%02d:%02d", t / 60, t % 60);
}

/* Formats the rate as tqdm does: items per second, or seconds per item
 * once an item takes more than a second; "?" before the first. */
static void fmt_rate(char *buf, size_t size, size_t done, double elapsed) {
  if (done == 0 || elapsed <= 0)
    snprintf(buf, size, "?it/s");
  else if ((double)done < elapsed)
    snprintf(buf, size, "%5.2fs/it", elapsed / (double)done);
  else
    snprintf(buf, size, "%5.2fit/s", (double)done / elapsed);
}

void fl_draw_bar(struct fl_job *job, double now) {
  char left[16], right[128], spent[32], togo[32], rate[32], line[512];
  double elapsed = now - job->t0;
  size_t width = (size_t)terminal_columns() - 1, len, bar, fill;

  fmt_clock(spent, sizeof spent, elapsed);
  if (job->done > 0 && elapsed > 0)
    fmt_clock(togo, sizeof togo,
              (double)(job->n - job->done) * elapsed / (double)job->done);
  else
    snprintf(togo, sizeof togo, "?");
  fmt_rate(rate, sizeof rate, job->done, elapsed);
  snprintf(left, sizeof left, "%3zu%%|",
           job->n ? job->done * 100 / job->n : 100);
  snprintf(right, sizeof right, "| %zu/%zu [%s<%s, %s]", job->done, job->n,
           spent, togo, rate);
  if (width > sizeof line - 1)
    width = sizeof line - 1;
  bar = width > strlen(left) + strlen(right)
            ? width - strlen(left) - strlen(right)
            : 0;
  if (bar >= MIN_BAR) {
    fill = job->n ? job->done * bar / job->n : bar;
    len = (size_t)snprintf(line, sizeof line, "%s", left);
    memset(line + len, '#', fill);
    memset(line + len + fill, ' ', bar - fill);
    len += bar;
    len += (size_t)snprintf(line + len, sizeof line - len, "%s", right);
  } else {
    /* No room for a bar: the counts and times, else the counts and rate. */
    len = (size_t)snprintf(line, sizeof line, "%.*s%s", (int)strlen(left) - 1,
                           left, right + 1);
    if (len > width)
      len = (size_t)snprintf(line, sizeof line, "%.*s %zu/%zu %s",
                             (int)strlen(left) - 1, left, job->done, job->n,
                             rate);
  }
  if (len > width)
    len = width;
  line[len] = '\0';
  /* Blanks over what is left of a longer line drawn before. */
  fprintf(stderr, "\r%s%*s", line,
          (int)(last_len > len && last_len <= width ? last_len - len : 0), "");
  last_len = len;
  if (job->done == job->n)
    fputc('\n', stderr);
  fflush(stderr);
}

/* Shows one result in the form the options ask for; lock held. */
static void show(struct fl_job *job, const struct fl_result *r) {
  if (job->simple) {
    if (r->status == FL_OK)
      printf("%s ", r->cc);
    else if (r->status == FL_ERROR)
      fprintf(stderr, "%s error: %s\n", r->cc, r->error);
    fflush(stdout);
  } else if (job->verbose) {
    if (r->status == FL_OK)
      printf("%s OK\n", r->cc);
    else if (r->status == FL_NOT_FOUND)
      printf("%s not found: %s/%c%c/%c%c.gif\n", r->cc, job->base_url,
             r->cc[0] | 0x20, r->cc[1] | 0x20, r->cc[0] | 0x20,
             r->cc[1] | 0x20);
    else
      printf("%s error: %s\n", r->cc, r->error);
    fflush(stdout);
  } else if (job->progress) {
    fl_draw_bar(job, fl_now());
  }
}

void fl_report(struct fl_job *job, const struct fl_result *r) {
  if (r->status == FL_INTERRUPTED)
    return;
  /* The lock keeps the tally and the terminal consistent across threads. */
  pthread_mutex_lock(&job->lock);
  job->count[r->status]++;
  job->done++;
  show(job, r);
  pthread_mutex_unlock(&job->lock);
}
