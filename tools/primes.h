/*
 * The parts of the primes tool shared by its files: the configuration the
 * command line builds, the inputs and the walk over them, the record a task
 * sends back, and the output state.
 *
 * The files, one concern each:
 *   primes.c         the command line: options, --help, main()
 *   primes_inputs.c  numbers, files (read as they stream) and ranges
 *   primes_output.c  the text, CSV and JSON formats, progress, failures
 *   primes_run.c     the tasks, the signals and the run modes
 *   primes_sieve.c   --count and --primes-only: ranges sieved in segments
 *   primes_core.c    parsing and the primality tests (pure, unit-tested)
 */
#ifndef PRIMES_H
#define PRIMES_H

#include "primes_core.h"

#include <procpool.h>

#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#define EXIT_FAILED 1
#define EXIT_USAGE 2
#define EXIT_INTERRUPTED 130 /* the modes: stopped by a signal */
#define CONTINUE (-1)        /* parse_args() and the inputs: no exit yet */

#define CHUNK_THRESHOLD 10000 /* inputs larger than this go in chunks */
#define MAX_WORKERS 4096
#define MAX_LISTED 10000000 /* numbers from the command line and files */

enum mode { MODE_MAP, MODE_COMPLETED };
enum sieve {
  SIEVE_NONE,
  SIEVE_COUNT,
  SIEVE_PRIMES
}; /* --count, --primes-only */

struct config {
  pp_engine engine; /* --engine; -w counts per rank with MPI */
  int workers;      /* 0: online CPUs */
  int sequential;
  int use_mr;
  enum mode mode;
  enum format format;
  unsigned retries;
  double task_timeout; /* 0: none */
  enum sieve sieve;    /* ranges sieved with libprimesieve */
  int algo_given, mode_given;
  const char **files; /* -f, read after the options (and, with MPI, once
                         the pool has started) */
  size_t nfiles;
  int given; /* numbers, files or ranges: no fixture */
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

/* Consecutive numbers: first, first + 1, ..., first + count - 1 (count >=
 * 1, no wrap past 2^64-1). A task's argument is an array of them, so that
 * a piece of a range travels as 16 bytes however many numbers it holds. */
struct span {
  uint64_t first, count;
};

/* A walk over struct inputs, in order. */
struct cursor {
  const struct inputs *in;
  size_t index;    /* in list */
  size_t range;    /* current range */
  uint64_t offset; /* in the current range */
};

/* What a batch of numbers gives, as one record: the number of
 * rows (a uint32_t, in the master's byte order: workers are its forks),
 * then their text in the run's format, as pc_format_row() writes it. */
#define ROWS_HEADER sizeof(uint32_t)

struct output {
  enum format format;
  int flush_each; /* small inputs: show each line at once */
  uint64_t rows;
  int progress;
  uint64_t total;
  double last_draw;
};

/* Set by the signal handler (the signal's number), read by the loops. */
extern volatile sig_atomic_t interrupted;

/* Seconds on the monotonic clock. */
double now(void);

/* primes_inputs.c */
int cursor_span(struct cursor *c, uint64_t most, struct span *s);
uint64_t inputs_at(const struct inputs *in, uint64_t i);
void put_quoted(FILE *f, const char *s, size_t len);
void put_not_integer(const char *text, size_t len);
int add_file(const char *path, struct inputs *in);
int add_range(const char *text, struct inputs *in);
int add_arguments(char **args, int n, struct inputs *in);
int finish_inputs(struct inputs *in, int given);
void free_inputs(struct inputs *in);

/* primes_output.c */
void output_init(struct output *o, const struct config *cfg, uint64_t total);
void output_begin(struct output *o, int workers);
int output_record(struct output *o, const void *data, size_t len);
void output_end(struct output *o, double seconds);
void report_failure(uint64_t n, int rc, const char *msg);
void output_primes_begin(enum format format);
void output_prime(enum format format, uint64_t p, int first);
void output_primes_end(enum format format, int any);
void output_count(enum format format, uint64_t count, double seconds);

/* primes_run.c */
int start_pool(const struct config *cfg, pp_pool **pool);
int stopped_by_signal(int progress);
int run(const struct config *cfg, const struct inputs *in, pp_pool *pool,
        double t0);

/* primes_sieve.c */
void sieve_options(const struct config *cfg, pp_options *opts);
int run_sieve(const struct config *cfg, const struct inputs *in, pp_pool *pool,
              double t0);

#endif
