/*
 * The pure logic of the primes tool: what counts as a number, the two
 * primality tests, and the classic fixture. Nothing here touches the pool,
 * files or the terminal, so that the Check suite can test it directly.
 *
 * Numbers are every integer from 0 to 2^64-1 written in decimal digits
 * only: no sign, no spaces, no base prefix. Trial division is deliberately
 * the slow textbook algorithm (odd divisors up to the integer square root)
 * so that the tool's work stays CPU-bound; Miller-Rabin is the fast,
 * deterministic one for 64-bit integers.
 */
#ifndef PRIMES_CORE_H
#define PRIMES_CORE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define PC_FIXTURE_COUNT 20

/* The classic 20 numbers, in descending order. */
extern const uint64_t pc_fixture[PC_FIXTURE_COUNT];

/* Results of the primality tests. */
#define PC_COMPOSITE 0
#define PC_PRIME 1
#define PC_STOPPED (-1)

/* Errors of the parsers. */
#define PC_OK 0
#define PC_EBAD (-1)    /* not an integer from 0 to 2^64-1 */
#define PC_ENOMEM (-2)  /* out of memory */
#define PC_ESYNTAX (-3) /* a range without its ':' */
#define PC_EEMPTY (-4)  /* a range with A >= B */

/* Parses the `len` bytes at `s` as a number into *out. Returns PC_OK or
 * PC_EBAD. */
int pc_parse_u64(const char *s, size_t len, uint64_t *out);

/* A growing array of numbers. */
typedef struct pc_numbers {
  uint64_t *v;
  size_t n, cap;
} pc_numbers;

/* Appends `x`; PC_OK or PC_ENOMEM. */
int pc_numbers_push(pc_numbers *nums, uint64_t x);

void pc_numbers_free(pc_numbers *nums);

/* Where pc_parse_lines() stopped: the 1-based line and its bytes. */
typedef struct pc_bad_line {
  size_t line;
  const char *text; /* points into the buffer */
  size_t len;
} pc_bad_line;

/* Appends the numbers of `buf`, one per line, to `nums`. Every line must be
 * a number, empty ones included, except that the buffer may end with one
 * newline. Returns PC_OK, PC_ENOMEM, or PC_EBAD with *bad (OUT) set. */
int pc_parse_lines(const char *buf, size_t len, pc_numbers *nums,
                   pc_bad_line *bad);

/* Parses "A:B", the integers of [A, B). Returns PC_OK, PC_ESYNTAX,
 * PC_EEMPTY, or PC_EBAD with *bad and *bad_len (OUT) naming the endpoint. */
int pc_parse_range(const char *s, uint64_t *a, uint64_t *b, const char **bad,
                   size_t *bad_len);

/* The largest r with r * r <= n. */
uint64_t pc_isqrt(uint64_t n);

/* Trial division by 2 and the odd numbers up to pc_isqrt(n). When `stop`
 * is given, it is read now and then, and PC_STOPPED is returned once it is
 * set. */
int pc_trial_division(uint64_t n, const atomic_int *stop);

/* Deterministic Miller-Rabin: exact for every 64-bit n. */
int pc_miller_rabin(uint64_t n);

#endif
