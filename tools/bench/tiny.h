/* The tiny-task measurement shared by the benchmarks (tiny.c). */
#ifndef TINY_H
#define TINY_H

#include <procpool.h>

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

/* What the throughput benchmarks take on the command line. */
struct tiny_config {
  long n;      /* -n: tasks per procpool run */
  long py_n;   /* -p: tasks per Python run */
  int workers; /* -w */
  long chunk;  /* -c: chunksize of the chunked runs */
};

/* Parses -n -w -c -p -h into *cfg (holding the defaults); prints usage()
 * and exits 0 on --help, 2 on a bad option. */
void tiny_parse_args(int argc, char **argv, struct tiny_config *cfg,
                     void (*usage)(FILE *out));

/* Monotonic seconds. */
double tiny_now(void);

/* Prints "<program>: what: <pp_strerror(rc)>" and exits 1. */
void tiny_die(const char *what, int rc) __attribute__((noreturn));

/* Formats v with thousands separators ("1,234,567") into buf. */
const char *tiny_commas(double v, char *buf, size_t size);

/* Tasks per second squaring 0 .. n-1 through a map with `chunk` arguments a
 * task (0: the automatic chunksize), and through n futures taken with
 * as_completed. Both check every
 * result and exit on a wrong one. */
double tiny_bench_map(pp_pool *pool, long n, long chunk);
double tiny_bench_submit(pp_pool *pool, long n);

/* Items per second that two processes move through a busy-polled
 * single-producer, single-consumer ring in shared memory, published per
 * item: the ceiling procpool is measured against (ceiling.c). */
double tiny_bench_ceiling(long n);

/* The task: squares the int64 argument. */
int tiny_square(pp_task *t, const void *arg, size_t len);

/* An 8-byte result as a u64 (0 for any other length). */
uint64_t tiny_read_u64(const void *data, size_t len);

/* Whether `name` is an executable on the PATH. */
int tiny_on_path(const char *name);

#endif
