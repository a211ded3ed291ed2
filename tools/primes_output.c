/*
 * The output formats of the primes tool: text (the seed's rows and total),
 * CSV and JSON, one row per result, with a progress line on a terminal for
 * large inputs, and failures on standard error.
 *
 * Rows are formatted by pc_format_row() (primes_core.c) a batch at a time,
 * by the workers or, with --sequential, by the master (primes_run.c), and
 * arrive here as records of text to write in order.
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

/* Writes `rows` rows of text as pc_format_row() made them, dropping the
 * ',' that starts the first JSON row of the array, then flushes or redraws
 * the progress line as the output asks. */
static void output_rows(struct output *o, const char *text, size_t len,
                        uint64_t rows) {
  if (o->format == FORMAT_JSON && o->rows == 0 && len && text[0] == ',') {
    text++;
    len--;
  }
  fwrite(text, 1, len, stdout);
  o->rows += rows;
  if (o->flush_each)
    fflush(stdout);
  if (o->progress)
    draw_progress(o);
}

/* A batch's record (see ROWS_HEADER): its text goes out as it is. Returns
 * 0, or -1 if the record is malformed. */
int output_record(struct output *o, const void *data, size_t len) {
  uint32_t rows;

  if (len <= ROWS_HEADER)
    return -1;
  memcpy(&rows, data, sizeof rows);
  if (rows == 0)
    return -1;
  output_rows(o, (const char *)data + ROWS_HEADER, len - ROWS_HEADER, rows);
  return 0;
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
  char buf[24];
  size_t len = pc_format_u64(buf, p);

  if (format == FORMAT_JSON)
    fputs(first ? "\n  " : ",\n  ", stdout);
  else
    buf[len++] = '\n';
  fwrite(buf, 1, len, stdout);
}

void output_primes_end(enum format format, int any) {
  if (format == FORMAT_JSON)
    puts(any ? "\n]" : "]");
  fflush(stdout);
}

/* The count alone in text; with its time in CSV and JSON. */
void output_count(enum format format, uint64_t count, double seconds) {
  char elapsed[24];

  elapsed[pc_format_seconds(elapsed, seconds, 0)] = '\0';
  if (format == FORMAT_CSV)
    printf("count,elapsed\n%" PRIu64 ",%s\n", count, elapsed);
  else if (format == FORMAT_JSON)
    printf("{\"count\": %" PRIu64 ", \"elapsed\": %s}\n", count, elapsed);
  else
    printf("%" PRIu64 "\n", count);
  fflush(stdout);
}
