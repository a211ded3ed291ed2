/*
 * The output formats of the primes tool: text (the seed's rows and total),
 * CSV and JSON, one row per result, with a progress line on a terminal for
 * large inputs, and failures on standard error.
 */
#include "primes.h"

#include <inttypes.h>
#include <string.h>
#include <unistd.h>

#define PROGRESS_EVERY 0.2 /* seconds between progress redraws */

/* Small inputs are flushed line by line, so that --mode completed shows
 * each result as it comes even through a pipe; large ones get a progress
 * line instead, only on a terminal that is not also taking the results. */
void output_init(struct output *o, const struct config *cfg, uint64_t total) {
  memset(o, 0, sizeof *o);
  o->format = cfg->format;
  o->total = total;
  o->flush_each = total <= CHUNK_THRESHOLD;
  o->progress = total > CHUNK_THRESHOLD && isatty(STDERR_FILENO) &&
                !isatty(STDOUT_FILENO);
  o->last_draw = now();
}

/* workers == 0: sequential. */
void output_begin(struct output *o, int workers) {
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
void output_row(struct output *o, const void *data) {
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
void output_end(struct output *o, double seconds) {
  if (o->progress)
    fputs("\r\033[K", stderr);
  if (o->format == FORMAT_JSON)
    puts(o->rows ? "\n]" : "]");
  else if (o->format == FORMAT_TEXT)
    printf("Total time: %.2fs\n", seconds);
  fflush(stdout);
}

/* A number whose task failed goes to standard error; the rest goes on. */
void report_failure(uint64_t n, int rc, const char *msg) {
  fprintf(stderr, "primes: %" PRIu64 ": %s (%s)%s%s\n", n, pp_strerror(rc),
          pp_errname(rc), *msg ? ": " : "", msg);
}

/* ------------------------------------------------ --primes-only, --count */

/* Text is one prime a line and nothing else, for pipes; CSV has its
 * header; JSON is an array of numbers. */
void output_primes_begin(enum format format) {
  if (format == FORMAT_CSV)
    fputs("n\n", stdout);
  else if (format == FORMAT_JSON)
    fputs("[", stdout);
}

/* One prime, written without printf (lists run to millions of lines). */
void output_prime(enum format format, uint64_t p, int first) {
  char buf[24], *s = buf + sizeof buf;

  *--s = '\n';
  do
    *--s = (char)('0' + p % 10);
  while ((p /= 10) != 0);
  if (format == FORMAT_JSON)
    fputs(first ? "\n  " : ",\n  ", stdout);
  fwrite(s, 1, (size_t)(buf + sizeof buf - s) - (format == FORMAT_JSON),
         stdout);
}

void output_primes_end(enum format format, int any) {
  if (format == FORMAT_JSON)
    puts(any ? "\n]" : "]");
  fflush(stdout);
}

/* The count alone in text; with its time in CSV and JSON. */
void output_count(enum format format, uint64_t count, double seconds) {
  if (format == FORMAT_CSV)
    printf("count,elapsed\n%" PRIu64 ",%.6f\n", count, seconds);
  else if (format == FORMAT_JSON)
    printf("{\"count\": %" PRIu64 ", \"elapsed\": %.6f}\n", count, seconds);
  else
    printf("%" PRIu64 "\n", count);
  fflush(stdout);
}
