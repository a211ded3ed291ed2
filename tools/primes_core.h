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
#define PC_EBAD (-1)     /* not an integer from 0 to 2^64-1 */
#define PC_ENOMEM (-2)   /* out of memory */
#define PC_ESYNTAX (-3)  /* a range without its ':' */
#define PC_EEMPTY (-4)   /* a range with A >= B */
#define PC_ETOOMANY (-5) /* more numbers than the array's limit */

/* Parses the `len` bytes at `s` as a number into *out. Returns PC_OK or
 * PC_EBAD. */
int pc_parse_u64(const char *s, size_t len, uint64_t *out);

/* A growing array of numbers, of at most `limit` when that is set. */
typedef struct pc_numbers {
  uint64_t *v;
  size_t n, cap;
  size_t limit; /* 0: none */
} pc_numbers;

/* Appends `x`; PC_OK, PC_ETOOMANY (already `limit` numbers) or PC_ENOMEM.
 * The array never grows past `limit`. */
int pc_numbers_push(pc_numbers *nums, uint64_t x);

void pc_numbers_free(pc_numbers *nums);

/* The longest line of a file, its line ending included: a number has at
 * most 20 digits, the rest is room for leading zeros. */
#define PC_LINE_MAX 64

/* Where the line parser stopped: the 1-based line and its first bytes. */
typedef struct pc_bad_line {
  size_t line;
  char text[PC_LINE_MAX];
  size_t len;
} pc_bad_line;

/* A parser of lines fed as they stream in, holding at most one line: one
 * number per line, LF or CRLF endings, and one blank line allowed at the
 * end (as editors on Windows leave). A blank line followed by anything,
 * and a line longer than PC_LINE_MAX, are bad. */
typedef struct pc_lines {
  char line[PC_LINE_MAX]; /* the line read so far */
  size_t len;
  size_t lineno; /* 1-based number of the line being read */
  size_t blank;  /* a blank line that must be the last: its number, or 0 */
} pc_lines;

void pc_lines_init(pc_lines *p);

/* Parses the `len` bytes at `buf`, appending the numbers of the lines they
 * complete to `nums`. Returns PC_OK, PC_ENOMEM, PC_ETOOMANY, or PC_EBAD
 * with *bad (OUT) set; after an error the parser must not be fed again. */
int pc_lines_feed(pc_lines *p, const char *buf, size_t len, pc_numbers *nums,
                  pc_bad_line *bad);

/* Ends the input: a last line without a newline counts. Same returns. */
int pc_lines_end(pc_lines *p, pc_numbers *nums, pc_bad_line *bad);

/* The two together over a whole buffer. */
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
