/*
 * flags_report: what flags prints about a run, in the classic scripts'
 * words.
 *
 * DESIGN
 *   Before the run, the site, the codes and the number of connections;
 *   during it, per result, a line (-v), the code (--simple) or a progress
 *   bar redrawn in place on stderr when that is a terminal, in tqdm's
 *   format; after it, the counts and the time. Results may come from
 *   several threads at once: fl_report() holds the job's lock while it
 *   counts and prints, so that counts and lines never interleave.
 */
#include "flags.h"

#include <stdio.h>
#include <string.h>

#define BAR_WIDTH 30

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

void fl_draw_bar(struct fl_job *job, double now) {
  char bar[BAR_WIDTH + 1], spent[32], left[32];
  double elapsed = now - job->t0;
  double rate = elapsed > 0 ? (double)job->done / elapsed : 0;
  size_t fill = job->n ? job->done * BAR_WIDTH / job->n : BAR_WIDTH;

  memset(bar, '#', fill);
  memset(bar + fill, ' ', BAR_WIDTH - fill);
  bar[BAR_WIDTH] = '\0';
  fmt_clock(spent, sizeof spent, elapsed);
  if (rate > 0)
    fmt_clock(left, sizeof left, (double)(job->n - job->done) / rate);
  else
    snprintf(left, sizeof left, "?");
  fprintf(stderr, "\r%3zu%%|%s| %zu/%zu [%s<%s, %5.2fit/s]",
          job->n ? job->done * 100 / job->n : 100, bar, job->done, job->n,
          spent, left, rate);
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
