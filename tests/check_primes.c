/*
 * Tests of the primes tool. The unit tests call primes_core.c directly:
 * the parsers on every kind of bad input, isqrt and both primality tests
 * at the edges of 64 bits, and the two algorithms against each other and
 * against a sieve. The CLI tests run the built binary (PRIMES_PATH) with
 * its standard streams on temporary files: output shape, refused inputs
 * (exit 2, the input and line named, nothing printed on stdout), equal
 * results across modes and algorithms, and Ctrl-C (exit 130, no worker
 * left behind).
 *
 * The fixture is checked with --algo mr, which is instant; trial division
 * is checked on numbers that cost it little, except for two numbers near
 * 2^64 that make sure its square root bound is exact there.
 */
#include "primes_core.h"
#include "toolutil.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

__extension__ typedef unsigned __int128 u128;

#define MAX_U64_TEXT "18446744073709551615"
#define NOT_INTEGER " is not an integer from 0 to " MAX_U64_TEXT

/* The primes of the fixture, verified with Miller-Rabin and by the five
 * composites being squares of primes (57735047^2, 66666667^2, 74535583^2,
 * 81649661^2, 88191709^2). */
static const uint64_t fixture_primes[] = {2u,
                                          142702110479723u,
                                          299593572317531u,
                                          3333333333333301u,
                                          4444444444444423u,
                                          5555555555555503u,
                                          6666666666666719u,
                                          7777777777777753u,
                                          9999999999999917u};
#define N_FIXTURE_PRIMES (sizeof fixture_primes / sizeof fixture_primes[0])

static const uint64_t square_roots[] = {57735047u, 66666667u, 74535583u,
                                        81649661u, 88191709u};

static int is_fixture_prime(uint64_t n) {
  for (size_t i = 0; i < N_FIXTURE_PRIMES; i++)
    if (fixture_primes[i] == n)
      return 1;
  return 0;
}

#ifdef PRIMES_PATH /* the CLI tests' clock */
static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_s(double s) {
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  nanosleep(&ts, NULL);
}
#endif

/* ------------------------------------------------------------ parsing */

static int parses(const char *s, uint64_t *out) {
  return pc_parse_u64(s, strlen(s), out) == PC_OK;
}

START_TEST(parse_accepts_every_u64) {
  uint64_t x;

  ck_assert(parses("0", &x) && x == 0);
  ck_assert(parses("7", &x) && x == 7);
  ck_assert(parses("007", &x) && x == 7);
  ck_assert(parses(MAX_U64_TEXT, &x) && x == UINT64_MAX);
  ck_assert(parses("18446744073709551614", &x) && x == UINT64_MAX - 1);
  ck_assert(parses("00018446744073709551615", &x) && x == UINT64_MAX);
}
END_TEST

START_TEST(parse_refuses_the_rest) {
  static const char *bad[] = {"",
                              "-1",
                              "+1",
                              " 1",
                              "1 ",
                              "1 2",
                              "12a",
                              "a12",
                              "0x10",
                              "1e3",
                              "1.0",
                              "1\r",
                              "18446744073709551616",
                              "18446744073709551620",
                              "99999999999999999999",
                              "184467440737095516150"};
  uint64_t x = 42;

  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    ck_assert_msg(!parses(bad[i], &x), "accepted '%s'", bad[i]);
    ck_assert(x == 42);
  }
  ck_assert_int_eq(pc_parse_u64("12\0"
                                "3",
                                4, &x),
                   PC_EBAD);
}
END_TEST

/* Runs pc_parse_lines and returns its code; the numbers go to *nums. */
static int parse_text(const char *text, pc_numbers *nums, pc_bad_line *bad) {
  memset(nums, 0, sizeof *nums);
  return pc_parse_lines(text, strlen(text), nums, bad);
}

START_TEST(lines_good) {
  pc_numbers nums;
  pc_bad_line bad;

  ck_assert_int_eq(parse_text("3\n1\n2\n", &nums, &bad), PC_OK);
  ck_assert_uint_eq(nums.n, 3);
  ck_assert(nums.v[0] == 3 && nums.v[1] == 1 && nums.v[2] == 2);
  pc_numbers_free(&nums);
  ck_assert_int_eq(parse_text("3\n1\n2", &nums, &bad), PC_OK);
  ck_assert_uint_eq(nums.n, 3);
  pc_numbers_free(&nums);
  ck_assert_int_eq(parse_text("", &nums, &bad), PC_OK);
  ck_assert_uint_eq(nums.n, 0);
  pc_numbers_free(&nums);
}
END_TEST

/* Expects text to fail at `line` with the bytes `what`. */
static void expect_bad_line(const char *text, size_t line, const char *what) {
  pc_numbers nums;
  pc_bad_line bad;

  ck_assert_int_eq(parse_text(text, &nums, &bad), PC_EBAD);
  ck_assert_uint_eq(bad.line, line);
  ck_assert_uint_eq(bad.len, strlen(what));
  ck_assert(memcmp(bad.text, what, bad.len) == 0);
  pc_numbers_free(&nums);
}

START_TEST(lines_bad) {
  expect_bad_line("1\n2\n12a\n", 3, "12a");
  expect_bad_line("1\n\n3\n", 2, "");
  expect_bad_line("1\n2\n\n\n", 3, "");
  expect_bad_line("5\n-3\n", 2, "-3");
  expect_bad_line("5\r\r\n6\r\n", 1, "5\r\r");
  expect_bad_line(" 5\n", 1, " 5");
  expect_bad_line("1\n18446744073709551616\n", 2, "18446744073709551616");
}
END_TEST

/* Lines fed as they stream: the same numbers whatever the cuts, CRLF and
 * one blank line at the end accepted, a long line refused at once. */
START_TEST(lines_stream) {
  static const char text[] = "11\r\n4\n18446744073709551557\r\n\r\n";
  pc_numbers nums;
  pc_bad_line bad;
  pc_lines p;
  char longline[PC_LINE_MAX + 10];

  for (size_t cut = 1; cut <= sizeof text - 1; cut++) {
    memset(&nums, 0, sizeof nums);
    pc_lines_init(&p);
    for (size_t at = 0; at < sizeof text - 1; at += cut) {
      size_t n = sizeof text - 1 - at < cut ? sizeof text - 1 - at : cut;
      ck_assert_int_eq(pc_lines_feed(&p, text + at, n, &nums, &bad), PC_OK);
    }
    ck_assert_int_eq(pc_lines_end(&p, &nums, &bad), PC_OK);
    ck_assert_uint_eq(nums.n, 3);
    ck_assert(nums.v[0] == 11 && nums.v[1] == 4 &&
              nums.v[2] == 18446744073709551557u);
    pc_numbers_free(&nums);
  }
  ck_assert_int_eq(parse_text("1\n2\n\n", &nums, &bad), PC_OK);
  ck_assert_uint_eq(nums.n, 2);
  pc_numbers_free(&nums);
  ck_assert_int_eq(parse_text("5\r\n6\r\n", &nums, &bad), PC_OK);
  ck_assert_uint_eq(nums.n, 2);
  pc_numbers_free(&nums);
  ck_assert_int_eq(parse_text("\n", &nums, &bad), PC_OK);
  ck_assert_uint_eq(nums.n, 0);
  pc_numbers_free(&nums);
  expect_bad_line("1\r\n\r\n\r\n", 2, "");
  expect_bad_line("1\n\r\n5", 2, "");

  /* A line without end is refused after PC_LINE_MAX bytes. */
  memset(longline, '0', sizeof longline);
  memset(&nums, 0, sizeof nums);
  pc_lines_init(&p);
  ck_assert_int_eq(pc_lines_feed(&p, longline, sizeof longline, &nums, &bad),
                   PC_EBAD);
  ck_assert_uint_eq(bad.line, 1);
  ck_assert_uint_eq(bad.len, PC_LINE_MAX);
  pc_numbers_free(&nums);
}
END_TEST

/* The array stops at its limit, and never holds more room than that. */
START_TEST(numbers_limit) {
  pc_numbers nums = {.limit = 100};
  pc_bad_line bad;

  for (uint64_t i = 0; i < 100; i++)
    ck_assert_int_eq(pc_numbers_push(&nums, i), PC_OK);
  ck_assert_int_eq(pc_numbers_push(&nums, 100), PC_ETOOMANY);
  ck_assert_uint_eq(nums.cap, 100);
  pc_numbers_free(&nums);
  nums.limit = 2;
  ck_assert_int_eq(pc_parse_lines("1\n2\n3\n", 6, &nums, &bad), PC_ETOOMANY);
  ck_assert_uint_eq(nums.n, 2);
  pc_numbers_free(&nums);
}
END_TEST

START_TEST(range_parsing) {
  uint64_t a, b;
  const char *bad = NULL;
  size_t len = 0;

  ck_assert_int_eq(pc_parse_range("5:10", &a, &b, &bad, &len), PC_OK);
  ck_assert(a == 5 && b == 10);
  ck_assert_int_eq(pc_parse_range("0:" MAX_U64_TEXT, &a, &b, &bad, &len),
                   PC_OK);
  ck_assert(a == 0 && b == UINT64_MAX);
  ck_assert_int_eq(pc_parse_range("10:5", &a, &b, &bad, &len), PC_EEMPTY);
  ck_assert_int_eq(pc_parse_range("5:5", &a, &b, &bad, &len), PC_EEMPTY);
  ck_assert_int_eq(pc_parse_range("5", &a, &b, &bad, &len), PC_ESYNTAX);
  ck_assert_int_eq(pc_parse_range("x:5", &a, &b, &bad, &len), PC_EBAD);
  ck_assert(len == 1 && bad[0] == 'x');
  ck_assert_int_eq(pc_parse_range("5:", &a, &b, &bad, &len), PC_EBAD);
  ck_assert_uint_eq(len, 0);
  ck_assert_int_eq(pc_parse_range("-1:5", &a, &b, &bad, &len), PC_EBAD);
  ck_assert(len == 2 && memcmp(bad, "-1", 2) == 0);
  ck_assert_int_eq(pc_parse_range("1:2:3", &a, &b, &bad, &len), PC_EBAD);
  ck_assert_int_eq(pc_parse_range("1:18446744073709551616", &a, &b, &bad, &len),
                   PC_EBAD);
}
END_TEST

/* -------------------------------------------------------------- isqrt */

static void expect_isqrt(uint64_t n) {
  u128 r = pc_isqrt(n);
  ck_assert_msg(r * r <= n && (r + 1) * (r + 1) > n, "isqrt(%" PRIu64 ")", n);
}

START_TEST(isqrt_exact) {
  static const uint64_t edges[] = {0,
                                   1,
                                   2,
                                   3,
                                   4,
                                   15,
                                   16,
                                   17,
                                   (uint64_t)1 << 32,
                                   ((uint64_t)1 << 32) + 1,
                                   18446744030759878681u, /* 4294967291^2 */
                                   18446744030759878680u,
                                   18446744030759878682u,
                                   18446744065119617025u, /* (2^32-1)^2 */
                                   18446744065119617024u,
                                   18446744065119617026u,
                                   UINT64_MAX - 1,
                                   UINT64_MAX};
  uint64_t x = 88172645463325252u;

  for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++)
    expect_isqrt(edges[i]);
  ck_assert(pc_isqrt(UINT64_MAX) == 4294967295u);
  ck_assert(pc_isqrt(18446744030759878681u) == 4294967291u);
  ck_assert(pc_isqrt(18446744030759878680u) == 4294967290u);
  for (int i = 0; i < 100000; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    expect_isqrt(x);
    expect_isqrt(x >> (i % 64));
  }
  for (uint64_t r = 1; r < 100000; r++) {
    expect_isqrt(r * r);
    expect_isqrt(r * r - 1);
  }
}
END_TEST

/* ------------------------------------------------------ primality */

/* Both tests must give `want` for n. */
static void expect_both(uint64_t n, int want) {
  ck_assert_msg(pc_miller_rabin(n) == want, "mr(%" PRIu64 ")", n);
  ck_assert_msg(pc_trial_division(n, NULL) == want, "trial(%" PRIu64 ")", n);
}

START_TEST(edges_small) {
  expect_both(0, PC_COMPOSITE);
  expect_both(1, PC_COMPOSITE);
  expect_both(2, PC_PRIME);
  expect_both(3, PC_PRIME);
  expect_both(4, PC_COMPOSITE);
  expect_both(9, PC_COMPOSITE);
  expect_both(25, PC_COMPOSITE);
  expect_both(37, PC_PRIME);
  expect_both(41, PC_PRIME);
  expect_both(561, PC_COMPOSITE);                  /* Carmichael */
  expect_both(3215031751u, PC_COMPOSITE);          /* spsp to 2, 3, 5, 7 */
  expect_both(3825123056546413051u, PC_COMPOSITE); /* spsp to 2 .. 23 */
  expect_both(4294967291u, PC_PRIME);              /* largest below 2^32 */
  expect_both(4294967297u, PC_COMPOSITE);          /* 641 * 6700417 */
  expect_both(65521u * 65521u, PC_COMPOSITE);
  expect_both(UINT64_MAX, PC_COMPOSITE);
  expect_both(UINT64_MAX - 1, PC_COMPOSITE);
  ck_assert(pc_miller_rabin(18446744073709551557u) == PC_PRIME);
  ck_assert(pc_miller_rabin(18446744030759878681u) == PC_COMPOSITE);
  ck_assert(pc_miller_rabin(18446744073709551533u) == PC_PRIME);
}
END_TEST

/* The two slow ones: trial division must reach exactly 2^32 - 5. */
START_TEST(edges_trial_near_2_64) {
  ck_assert(pc_trial_division(18446744030759878681u, NULL) == PC_COMPOSITE);
  ck_assert(pc_trial_division(18446744073709551557u, NULL) == PC_PRIME);
}
END_TEST

START_TEST(fixture_marks) {
  size_t primes = 0;

  for (size_t i = 0; i < PC_FIXTURE_COUNT; i++) {
    int want = is_fixture_prime(pc_fixture[i]) ? PC_PRIME : PC_COMPOSITE;
    ck_assert_msg(pc_miller_rabin(pc_fixture[i]) == want, "%" PRIu64,
                  pc_fixture[i]);
    primes += want == PC_PRIME;
    if (i > 0)
      ck_assert(pc_fixture[i] < pc_fixture[i - 1]);
  }
  ck_assert_uint_eq(primes, N_FIXTURE_PRIMES);
  for (size_t i = 0; i < sizeof square_roots / sizeof square_roots[0]; i++) {
    uint64_t sq = square_roots[i] * square_roots[i];
    ck_assert(pc_miller_rabin(square_roots[i]) == PC_PRIME);
    expect_both(sq, PC_COMPOSITE);
  }
}
END_TEST

START_TEST(agree_with_sieve) {
  enum { LIMIT = 2000000 };
  unsigned char *composite = calloc(LIMIT, 1);

  ck_assert_ptr_nonnull(composite);
  composite[0] = composite[1] = 1;
  for (uint64_t i = 2; i * i < LIMIT; i++)
    if (!composite[i])
      for (uint64_t j = i * i; j < LIMIT; j += i)
        composite[j] = 1;
  for (uint64_t n = 0; n < LIMIT; n++) {
    int want = composite[n] ? PC_COMPOSITE : PC_PRIME;
    ck_assert_msg(pc_miller_rabin(n) == want, "mr(%" PRIu64 ")", n);
    if (n < 200000)
      ck_assert_msg(pc_trial_division(n, NULL) == want, "trial(%" PRIu64 ")",
                    n);
  }
  free(composite);
}
END_TEST

START_TEST(agree_100000_near_1e12) {
  const uint64_t base = 1000000000000u;
  size_t primes = 0;

  for (uint64_t n = base; n < base + 100000; n++) {
    int mr = pc_miller_rabin(n);
    ck_assert_msg(pc_trial_division(n, NULL) == mr, "%" PRIu64, n);
    primes += mr == PC_PRIME;
  }
  /* About 100000 / ln(10^12) = 3619. */
  ck_assert(primes > 3000 && primes < 4300);
}
END_TEST

/* --------------------------------------------- Miller-Rabin at 64 bits */

/* Strong pseudoprimes to the first few prime bases, and Carmichael
 * numbers: composites that fool the weaker tests (the last: the largest
 * base-2 strong pseudoprime below 2^64). */
static const uint64_t pseudoprimes[] = {2047u,
                                        3277u,
                                        4033u,
                                        4681u,
                                        8321u,
                                        1373653u,
                                        25326001u,
                                        3215031751u,
                                        2152302898747u,
                                        3474749660383u,
                                        341550071728321u,
                                        3825123056546413051u,
                                        561u,
                                        41041u,
                                        825265u,
                                        321197185u,
                                        5394826801u,
                                        232250619601u,
                                        9746347772161u,
                                        1436697831295441u,
                                        60977817398996785u,
                                        7156857700403137441u,
                                        18446744066047760377u};

/* xorshift64*: the same numbers on every run. */
static uint64_t next_random(uint64_t *x) {
  *x ^= *x >> 12;
  *x ^= *x << 25;
  *x ^= *x >> 27;
  return *x * 2685821657736338717u;
}

/* Every number of `v` against GNU coreutils' factor: prime when factor
 * prints the number alone. */
static void expect_factor_agrees(const uint64_t *v, size_t n) {
  char path[] = "/tmp/check_primes_XXXXXX", cmd[64], *line = NULL;
  int fd = mkstemp(path);
  size_t cap = 0, checked = 0;
  FILE *f, *out;

  ck_assert_msg(system("command -v factor >/dev/null 2>&1") == 0,
                "GNU factor is missing: install coreutils");
  ck_assert_int_ge(fd, 0);
  ck_assert_ptr_nonnull(f = fdopen(fd, "w"));
  for (size_t i = 0; i < n; i++)
    fprintf(f, "%" PRIu64 "\n", v[i]);
  fclose(f);
  snprintf(cmd, sizeof cmd, "factor < %s", path);
  ck_assert_ptr_nonnull(out = popen(cmd, "r"));
  while (getline(&line, &cap, out) > 0 && checked < n) {
    uint64_t x = strtoull(line, NULL, 10), first;
    char *colon = strchr(line, ':'), *end;
    int prime;
    ck_assert(colon && x == v[checked]);
    first = strtoull(colon + 1, &end, 10);
    prime = x >= 2 && first == x && (*end == '\n' || *end == '\0');
    ck_assert_msg(pc_miller_rabin(x) == prime, "mr(%" PRIu64 ") != factor", x);
    checked++;
  }
  free(line);
  ck_assert_int_eq(pclose(out), 0);
  unlink(path);
  ck_assert_uint_eq(checked, n);
}

START_TEST(mr_agrees_with_factor) {
  enum { RANDOM = 20000, NEAR = 3000, SEMI = 2000 };
  size_t n = 0, total = RANDOM + 2 * NEAR + SEMI + 64;
  uint64_t *v = malloc(total * sizeof *v), x = 88172645463325252u;

  ck_assert_ptr_nonnull(v);
  for (size_t i = 0; i < RANDOM; i++)
    v[n++] = next_random(&x);
  for (uint64_t i = 1; i <= NEAR; i++) {
    v[n++] = UINT64_MAX - i + 1; /* the top of 64 bits */
    v[n++] = ((uint64_t)1 << 63) + i;
  }
  /* Products of two primes just below 2^32, which only the last bases and
   * the exact arithmetic near 2^64 can tell apart. */
  for (uint64_t p = 4294967291u, q = p; n < RANDOM + 2 * NEAR + SEMI; q -= 2)
    if (pc_miller_rabin(q) == PC_PRIME)
      v[n++] = p * q;
  for (size_t i = 0; i < sizeof pseudoprimes / sizeof pseudoprimes[0]; i++)
    v[n++] = pseudoprimes[i];
  expect_factor_agrees(v, n);
  for (size_t i = 0; i < sizeof pseudoprimes / sizeof pseudoprimes[0]; i++)
    ck_assert_msg(pc_miller_rabin(pseudoprimes[i]) == PC_COMPOSITE, "%" PRIu64,
                  pseudoprimes[i]);
  free(v);
}
END_TEST

START_TEST(trial_stops_when_asked) {
  atomic_int stop;

  atomic_init(&stop, 1);
  ck_assert_int_eq(pc_trial_division(18446744073709551557u, &stop), PC_STOPPED);
  ck_assert_int_eq(pc_trial_division(97, &stop), PC_PRIME);
  atomic_store(&stop, 0);
  ck_assert_int_eq(pc_trial_division(9999999999999917u, &stop), PC_PRIME);
}
END_TEST

/* ------------------------------------------------------ result rows */

/* pc_format_seconds(x, width) against printf's "%*.6f". */
static void expect_seconds(double x, int width) {
  char want[64], got[64];
  size_t len = pc_format_seconds(got, x, width);

  got[len] = '\0';
  snprintf(want, sizeof want, "%*.6f", width, x);
  ck_assert_msg(strcmp(got, want) == 0, "%.17g: '%s', printf '%s'", x, got,
                want);
}

/* The three rows of (n, prime, x) against printf with the formats that
 * output_row() used. */
static void expect_rows(uint64_t n, int prime, double x) {
  char want[256], got[PC_ROW_MAX + 1];
  size_t len;

  len = pc_format_row(got, FORMAT_TEXT, n, prime, x);
  got[len] = '\0';
  snprintf(want, sizeof want, "%16" PRIu64 "  %c %9.6fs\n", n,
           prime ? 'P' : ' ', x);
  ck_assert_str_eq(got, want);
  len = pc_format_row(got, FORMAT_CSV, n, prime, x);
  got[len] = '\0';
  snprintf(want, sizeof want, "%" PRIu64 ",%d,%.6f\n", n, prime, x);
  ck_assert_str_eq(got, want);
  len = pc_format_row(got, FORMAT_JSON, n, prime, x);
  got[len] = '\0';
  snprintf(want, sizeof want,
           ",\n  {\"n\": %" PRIu64 ", \"prime\": %s, "
           "\"elapsed\": %.6f}",
           n, prime ? "true" : "false", x);
  ck_assert_str_eq(got, want);
}

/* Given values, ties, near-ties and random doubles of every magnitude the
 * clock can give, against printf. */
START_TEST(seconds_like_printf) {
  static const double given[] = {0,         1e-7,
                                 0.0000005, 0.0000015,
                                 0.0000025, 0.9999995,
                                 1.5,       123.456789,
                                 9.9999995, 99.9999995,
                                 0.0078125, 0.0234375,
                                 1e-6,      4.94065645841246544e-324,
                                 1e-300,    12345678.9,
                                 1e12,      9999999999999.99};
  uint64_t x = 88172645463325252u;

  for (size_t i = 0; i < sizeof given / sizeof given[0]; i++) {
    expect_seconds(given[i], 0);
    expect_seconds(given[i], 9);
  }
  expect_seconds(nextafter(PC_ELAPSED_LIMIT, 0), 0); /* the largest */
  /* Exact ties are j / 128 for odd j (x * 10^6 = k + 1/2 with x a binary
   * fraction): printf rounds them to even. */
  for (uint64_t j = 1; j < (1 << 20); j += 2)
    expect_seconds((double)j / 128, 0);
  for (int i = 0; i < 200000; i++) {
    uint64_t r = next_random(&x);
    double k = (double)(r % 10000000000000u);
    /* the doubles nearest to a midpoint, just above or below it */
    expect_seconds((k + 0.5) / 1e6, 0);
    /* and any double from 2^-40 to 2^43 */
    expect_seconds(ldexp((double)(r >> 11), (int)(r % 84) - 93), 9);
  }
}
END_TEST

/* The corners where printf would print something else, all out of reach
 * of a monotonic clock's difference. */
START_TEST(seconds_out_of_range) {
  char buf[PC_ROW_MAX];
  size_t len;

  ck_assert_uint_eq(pc_micros(-0.0), 0);
  ck_assert_uint_eq(pc_micros(-1e-9), 0);
  ck_assert_uint_eq(pc_micros(-5), 0);
  ck_assert_uint_eq(pc_micros(NAN), 0);
  ck_assert_uint_eq(pc_micros(PC_ELAPSED_LIMIT), 9999999999999999999u);
  ck_assert_uint_eq(pc_micros(INFINITY), 9999999999999999999u);
  ck_assert_uint_eq(pc_micros(1e300), 9999999999999999999u);
  len = pc_format_seconds(buf, -0.0, 0);
  ck_assert(len == 8 && memcmp(buf, "0.000000", 8) == 0);
  len = pc_format_seconds(buf, 1e20, 0);
  ck_assert(len == 20 && memcmp(buf, "9999999999999.999999", 20) == 0);
  /* the longest row fits PC_ROW_MAX */
  ck_assert_uint_eq(pc_format_row(buf, FORMAT_JSON, UINT64_MAX, 0, 1e20), 80);
  ck_assert_uint_le(80, PC_ROW_MAX);
  ck_assert_uint_eq(pc_format_row(buf, FORMAT_TEXT, UINT64_MAX, 1, 1e20), 46);
  ck_assert_uint_eq(pc_format_row(buf, FORMAT_CSV, UINT64_MAX, 1, 1e20), 44);
}
END_TEST

/* Numbers at every length and digit boundary, both marks, in the three
 * formats. */
START_TEST(rows_like_printf) {
  uint64_t x = 88172645463325252u, p = 1;

  expect_rows(0, 0, 0);
  expect_rows(UINT64_MAX, 1, 0.0000005);
  for (int i = 0; i < 20; i++, p *= 10) {
    expect_rows(p, i & 1, 1e-7 * i);
    expect_rows(p - 1, 1, 0.9999995);
    expect_rows(p + 1, 0, 123.456789);
    expect_rows(p * 5 - 1, 1, 12345678.9);
  }
  for (int i = 0; i < 20000; i++) {
    uint64_t r = next_random(&x);
    expect_rows(r >> (r % 64), (int)(r & 1), (double)(r % 100000000) / 1e7);
  }
}
END_TEST

/* -------------------------------------------------------------- CLI */

#ifdef PRIMES_PATH

struct run {
  int status; /* exit status, or 128 + signal */
  char *out, *err;
};

/* Runs primes with argv (NULL-terminated) and `input` on standard input. */
static void run_argv(struct run *r, const char *input, const char **argv) {
  struct tu_run t;

  tu_run(&t, (char *const *)argv, input, NULL, 300);
  r->status = t.status;
  r->out = t.out;
  r->err = t.err;
}

/* run_argv() with the arguments listed after `input`, up to a NULL. */
static void run_primes(struct run *r, const char *input, ...) {
  const char *argv[32];
  const char *a;
  int argc = 0;
  va_list ap;

  argv[argc++] = PRIMES_PATH;
  va_start(ap, input);
  while ((a = va_arg(ap, const char *)) != NULL && argc < 31)
    argv[argc++] = a;
  va_end(ap);
  argv[argc] = NULL;
  run_argv(r, input, argv);
}

static void run_free(struct run *r) {
  free(r->out);
  free(r->err);
}

/* Splits text into its lines, in place; returns how many. */
static size_t split_lines(char *text, char **lines, size_t cap) {
  size_t n = 0;
  char *save = NULL;

  for (char *l = strtok_r(text, "\n", &save); l && n < cap;
       l = strtok_r(NULL, "\n", &save))
    lines[n++] = l;
  return n;
}

/* Checks one text result line and returns its number and mark. */
static uint64_t parse_row(const char *line, char *mark) {
  char head[17];
  uint64_t n;
  double elapsed;

  ck_assert_msg(strlen(line) == 30, "row '%s'", line);
  ck_assert(line[16] == ' ' && line[17] == ' ' && line[19] == ' ');
  ck_assert(line[18] == 'P' || line[18] == ' ');
  ck_assert(line[29] == 's');
  n = strtoull(line, NULL, 10);
  snprintf(head, sizeof head, "%16" PRIu64, n);
  ck_assert(memcmp(head, line, 16) == 0);
  ck_assert(sscanf(line + 20, "%lf", &elapsed) == 1 && elapsed >= 0);
  *mark = line[18];
  return n;
}

START_TEST(cli_fixture_shape) {
  struct run r;
  char *lines[64];
  double total;
  size_t n;

  run_primes(&r, NULL, "--algo", "mr", "-w", "2", NULL);
  ck_assert_int_eq(r.status, 0);
  n = split_lines(r.out, lines, 64);
  ck_assert_uint_eq(n, 22);
  ck_assert_str_eq(lines[0], "Checking 20 numbers with 2 processes:");
  for (size_t i = 1; i <= 20; i++) {
    char mark;
    uint64_t x = parse_row(lines[i], &mark);
    ck_assert(x == pc_fixture[i - 1]); /* descending */
    ck_assert_int_eq(mark == 'P', is_fixture_prime(x));
  }
  ck_assert(sscanf(lines[21], "Total time: %lfs", &total) == 1);
  ck_assert(strncmp(lines[21], "Total time: ", 12) == 0);
  ck_assert(strchr(lines[21], '.') && strlen(strchr(lines[21], '.')) == 4);
  ck_assert_str_eq(r.err, "");
  run_free(&r);
}
END_TEST

START_TEST(cli_headers) {
  struct run r;

  run_primes(&r, NULL, "--algo", "mr", "--sequential", NULL);
  ck_assert_int_eq(r.status, 0);
  ck_assert(strncmp(r.out, "Checking 20 numbers sequentially:\n", 34) == 0);
  run_free(&r);
  run_primes(&r, NULL, "-w", "1", "97", NULL);
  ck_assert_int_eq(r.status, 0);
  ck_assert(strncmp(r.out,
                    "Checking 1 number with 1 process:\n"
                    "              97  P ",
                    54) == 0);
  run_free(&r);
  run_primes(&r, NULL, "--sequential", "8", NULL);
  ck_assert(strncmp(r.out,
                    "Checking 1 number sequentially:\n"
                    "               8    ",
                    52) == 0);
  run_free(&r);
  run_primes(&r, NULL, "--workers=3", "--mode", "completed", "8", "9", NULL);
  ck_assert(strncmp(r.out, "Checking 2 numbers with 3 processes:\n", 37) == 0);
  run_free(&r);
}
END_TEST

/* Drops the elapsed column of CSV output: "n,prime" per line, in order. */
static void strip_csv(char *s) {
  char *w = s;

  while (*s) {
    char *comma = strchr(s, ',');
    char *nl = strchr(s, '\n');
    char *cut = comma ? strchr(comma + 1, ',') : NULL;
    size_t keep = cut && nl && cut < nl ? (size_t)(cut - s) : (size_t)(nl - s);
    memmove(w, s, keep);
    w += keep;
    *w++ = '\n';
    s = nl + 1;
  }
  *w = '\0';
}

/* Explicit numbers keep their order; files and stdin are read. */
START_TEST(cli_inputs_keep_order) {
  char path[] = "/tmp/check_primes_XXXXXX";
  int fd = mkstemp(path);
  struct run r;

  ck_assert_int_ge(fd, 0);
  ck_assert(write(fd, "11\n4\n18446744073709551557", 25) == 25);
  close(fd);
  run_primes(&r, "10\n3\n", "--algo", "mr", "--format", "csv", "5", "2", "-f",
             path, "--file", "-", "--range", "20:23", NULL);
  ck_assert_int_eq(r.status, 0);
  strip_csv(r.out);
  ck_assert_str_eq(r.out, "n,prime\n"
                          "5,1\n"
                          "2,1\n"
                          "11,1\n"
                          "4,0\n"
                          "18446744073709551557,1\n"
                          "10,0\n"
                          "3,1\n"
                          "20,0\n"
                          "21,0\n"
                          "22,0\n");
  run_free(&r);
  unlink(path);
}
END_TEST

/* A bad input: exit 2, nothing on stdout, and `want` in the message. */
static void expect_refused(struct run *r, const char *want) {
  ck_assert_msg(r->status == 2, "status %d for '%s'", r->status, want);
  ck_assert_str_eq(r->out, "");
  ck_assert_msg(strstr(r->err, want) != NULL, "'%s' not in '%s'", want, r->err);
  run_free(r);
}

START_TEST(cli_bad_numbers) {
  struct run r;

  run_primes(&r, NULL, "7", "12a", NULL);
  expect_refused(&r, "primes: argument 2: '12a'" NOT_INTEGER "\n");
  run_primes(&r, NULL, "+5", NULL);
  expect_refused(&r, "primes: argument 1: '+5'" NOT_INTEGER);
  run_primes(&r, NULL, "1 2", NULL);
  expect_refused(&r, "argument 1: '1 2'" NOT_INTEGER);
  run_primes(&r, NULL, "", NULL);
  expect_refused(&r, "argument 1: ''" NOT_INTEGER);
  run_primes(&r, NULL, "18446744073709551616", NULL);
  expect_refused(&r, "argument 1: '18446744073709551616'" NOT_INTEGER);
  run_primes(&r, NULL, "-5", NULL);
  expect_refused(&r, "'-5'" NOT_INTEGER);
  run_primes(&r, NULL, "3", "--", "-5", NULL);
  expect_refused(&r, "argument 2: '-5'" NOT_INTEGER);
}
END_TEST

START_TEST(cli_bad_files) {
  char path[] = "/tmp/check_primes_XXXXXX", want[128];
  int fd = mkstemp(path);
  struct run r;

  ck_assert_int_ge(fd, 0);
  ck_assert(write(fd, "1\n2\n12a\n", 8) == 8);
  close(fd);
  run_primes(&r, NULL, "-f", path, NULL);
  snprintf(want, sizeof want, "primes: %s:3: '12a'" NOT_INTEGER "\n", path);
  expect_refused(&r, want);
  run_primes(&r, "5\n\n6\n", "-f", "-", NULL);
  expect_refused(&r, "primes: <stdin>:2: ''" NOT_INTEGER);
  run_primes(&r, "5\n6\n\n\n", "-f", "-", NULL);
  expect_refused(&r, "primes: <stdin>:3: ''" NOT_INTEGER);
  run_primes(&r, "5\n-6\n", "-f", "-", NULL);
  expect_refused(&r, "primes: <stdin>:2: '-6'" NOT_INTEGER);
  run_primes(&r, "1\n99999999999999999999\n", "-f", "-", NULL);
  expect_refused(&r, "<stdin>:2: '99999999999999999999'" NOT_INTEGER);
  run_primes(&r, "7\r\r\n", "-f", "-", NULL);
  expect_refused(&r, "<stdin>:1: '7\\x0d\\x0d'" NOT_INTEGER);
  run_primes(&r, "", "-f", "-", NULL);
  expect_refused(&r, "<stdin>: no numbers");
  unlink(path);
  run_primes(&r, NULL, "-f", path, NULL);
  snprintf(want, sizeof want, "primes: %s: No such file", path);
  expect_refused(&r, want);
}
END_TEST

START_TEST(cli_bad_ranges) {
  struct run r;

  run_primes(&r, NULL, "--range", "5:3", NULL);
  expect_refused(&r, "--range '5:3': the range is empty");
  run_primes(&r, NULL, "--range", "5:5", NULL);
  expect_refused(&r, "--range '5:5': the range is empty");
  run_primes(&r, NULL, "--range", "5", NULL);
  expect_refused(&r, "--range '5': expected A:B");
  run_primes(&r, NULL, "--range", "1:x", NULL);
  expect_refused(&r, "--range '1:x': 'x'" NOT_INTEGER);
  run_primes(&r, NULL, "--range=-1:5", NULL);
  expect_refused(&r, "--range '-1:5': '-1'" NOT_INTEGER);
  run_primes(&r, NULL, "--range", "0:18446744073709551616", NULL);
  expect_refused(&r, "'18446744073709551616'" NOT_INTEGER);
  run_primes(&r, NULL, "--range", "0:" MAX_U64_TEXT, "--range",
             "0:" MAX_U64_TEXT, NULL);
  expect_refused(&r, "more than " MAX_U64_TEXT " numbers");
}
END_TEST

START_TEST(cli_bad_options) {
  struct run r;

  run_primes(&r, NULL, "--bogus", NULL);
  expect_refused(&r, "unknown option '--bogus'; see 'primes --help'");
  run_primes(&r, NULL, "-x", NULL);
  expect_refused(&r, "unknown option '-x'");
  run_primes(&r, NULL, "--range", NULL);
  expect_refused(&r, "option '--range' needs a value");
  run_primes(&r, NULL, "-w", "0", NULL);
  expect_refused(&r, "--workers '0': expected a number of processes");
  run_primes(&r, NULL, "-w", "two", NULL);
  expect_refused(&r, "--workers 'two'");
  run_primes(&r, NULL, "--mode", "fast", NULL);
  expect_refused(&r, "--mode 'fast': expected 'map' or 'completed'");
  run_primes(&r, NULL, "--algo", "aks", NULL);
  expect_refused(&r, "--algo 'aks': expected 'trial' or 'mr'");
  run_primes(&r, NULL, "--format", "xml", NULL);
  expect_refused(&r, "--format 'xml': expected 'text', 'csv' or 'json'");
  run_primes(&r, NULL, "--retries", "-1", NULL);
  expect_refused(&r, "--retries '-1'");
  run_primes(&r, NULL, "--mode", "completed", "--task-timeout", "0", NULL);
  expect_refused(&r, "--task-timeout '0'");
  run_primes(&r, NULL, "--sequential", "--task-timeout", "5", NULL);
  expect_refused(&r, "--task-timeout needs worker processes");
  run_primes(&r, NULL, "--help", NULL);
  ck_assert_int_eq(r.status, 0);
  ck_assert(strstr(r.out, "Usage: primes") && strstr(r.out, "--task-timeout"));
  run_free(&r);
}
END_TEST

/* The options that belong to fault tolerance are accepted. */
START_TEST(cli_fault_options) {
  struct run r;

  run_primes(&r, NULL, "--retries", "0", "--mode", "completed",
             "--task-timeout", "30", "--algo", "mr", "97", NULL);
  ck_assert_int_eq(r.status, 0);
  ck_assert(strstr(r.out, "              97  P "));
  run_free(&r);
}
END_TEST

/* A task past --task-timeout fails alone, in either mode: named on stderr,
 * exit 1. */
START_TEST(cli_task_timeout) {
  struct run r;

  run_primes(&r, NULL, "--mode", _i ? "completed" : "map", "--task-timeout",
             "0.3", "--retries", "0", "18446744073709551557", "7", NULL);
  ck_assert_int_eq(r.status, 1);
  ck_assert(strstr(r.out, "               7  P "));
  ck_assert(!strstr(r.out, "18446744073709551557"));
  ck_assert(strstr(r.err, "primes: 18446744073709551557: "));
  ck_assert(strstr(r.err, "PP_EDEADLINE"));
  run_free(&r);
}
END_TEST

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The lines of a text run without elapsed times, sorted. */
static size_t sorted_rows(char *out, char **rows, size_t cap) {
  size_t n = split_lines(out, rows, cap);

  ck_assert_uint_ge(n, 2);
  n -= 2; /* header and total */
  memmove(rows, rows + 1, n * sizeof *rows);
  for (size_t i = 0; i < n; i++)
    rows[i][19] = '\0';
  qsort(rows, n, sizeof *rows, cmp_str);
  return n;
}

START_TEST(cli_modes_same_lines) {
  struct run a, b, c;
  char *ra[32], *rb[32], *rc[32];
  size_t na, nb, nc;

  run_primes(&a, NULL, "--algo", "mr", "--mode", "map", NULL);
  run_primes(&b, NULL, "--algo", "mr", "--mode", "completed", NULL);
  run_primes(&c, NULL, "--algo", "mr", "--sequential", NULL);
  ck_assert(a.status == 0 && b.status == 0 && c.status == 0);
  na = sorted_rows(a.out, ra, 32);
  nb = sorted_rows(b.out, rb, 32);
  nc = sorted_rows(c.out, rc, 32);
  ck_assert(na == 20 && nb == 20 && nc == 20);
  for (size_t i = 0; i < na; i++) {
    ck_assert_str_eq(ra[i], rb[i]);
    ck_assert_str_eq(ra[i], rc[i]);
  }
  run_free(&a);
  run_free(&b);
  run_free(&c);
}
END_TEST

/* A chunked map (over 10,000 numbers) keeps the order, and every mode and
 * both algorithms find the same primes. */
START_TEST(cli_large_range_agrees) {
  enum { ROWS = 30000 };
  const char *range = "1000000000000:1000000030000";
  char **expect = calloc(ROWS + 2, sizeof *expect);
  char **got = calloc(ROWS + 2, sizeof *got);
  struct run r[4];

  ck_assert(expect && got);

  run_primes(&r[0], NULL, "--range", range, "--format", "csv", NULL);
  run_primes(&r[1], NULL, "--range", range, "--format", "csv", "--algo", "mr",
             NULL);
  run_primes(&r[2], NULL, "--range", range, "--format", "csv", "--algo", "mr",
             "--sequential", NULL);
  run_primes(&r[3], NULL, "--range", range, "--format", "csv", "--algo", "mr",
             "--mode", "completed", NULL);
  for (int i = 0; i < 4; i++) {
    ck_assert_int_eq(r[i].status, 0);
    strip_csv(r[i].out);
  }
  ck_assert_str_eq(r[0].out, r[1].out);
  ck_assert_str_eq(r[0].out, r[2].out);
  ck_assert_uint_eq(split_lines(r[0].out, expect, ROWS + 2), ROWS + 1);
  ck_assert_uint_eq(split_lines(r[3].out, got, ROWS + 2), ROWS + 1);
  for (size_t i = 1; i <= ROWS; i++)
    ck_assert(strtoull(expect[i], NULL, 10) == 1000000000000u + i - 1);
  qsort(expect, ROWS + 1, sizeof *expect, cmp_str);
  qsort(got, ROWS + 1, sizeof *got, cmp_str);
  for (size_t i = 0; i <= ROWS; i++)
    ck_assert_str_eq(expect[i], got[i]);
  free(expect);
  free(got);
  for (int i = 0; i < 4; i++)
    run_free(&r[i]);
}
END_TEST

/* Masks what differs between runs of the same numbers: each elapsed time
 * (digits, '.', six digits) becomes '#', and the text format's header and
 * total lines, which name the mode and the run's time, are dropped. */
static void mask_run(char *s, const char *format) {
  char *w = s, *r = s;

  if (strcmp(format, "text") == 0) {
    char *total = strstr(s, "Total time: ");
    ck_assert_ptr_nonnull(total);
    *total = '\0';
    ck_assert_ptr_nonnull(r = strchr(s, '\n'));
    r++;
  }
  while (*r) {
    size_t digits = strspn(r, "0123456789");
    if (digits && r[digits] == '.' &&
        strspn(r + digits + 1, "0123456789") == 6) {
      *w++ = '#';
      r += digits + 7;
    } else {
      size_t keep = digits ? digits : 1;
      memmove(w, r, keep);
      w += keep;
      r += keep;
    }
  }
  *w = '\0';
}

/* Drops a ',' that ends each line (JSON's separators, which follow the
 * order of the rows), then sorts the lines. */
static void sort_rows(char **lines, size_t n) {
  for (size_t i = 0; i < n; i++) {
    size_t len = strlen(lines[i]);
    if (len && lines[i][len - 1] == ',')
      lines[i][len - 1] = '\0';
  }
  qsort(lines, n, sizeof *lines, cmp_str);
}

/* The lines of `a` and `b` are the same up to their order. */
static void expect_same_lines(char *a, char *b, const char *what) {
  size_t cap = strlen(a) + 2, na, nb;
  char **la = calloc(cap, sizeof *la), **lb = calloc(cap, sizeof *lb);

  ck_assert(la && lb);
  na = split_lines(a, la, cap);
  nb = split_lines(b, lb, cap);
  ck_assert_msg(na == nb, "%s: %zu lines, then %zu", what, na, nb);
  sort_rows(la, na);
  sort_rows(lb, nb);
  for (size_t i = 0; i < na; i++)
    ck_assert_msg(strcmp(la[i], lb[i]) == 0, "%s: '%s' or '%s'", what, la[i],
                  lb[i]);
  free(la);
  free(lb);
}

/* --engine: refused values and combinations (exit 2, nothing printed), and
 * the thread engine's output is the processes engine's, elapsed masked.
 * Across MPI ranks: the primes_mpi test. */
START_TEST(cli_engines) {
  const char *mr[] = {"--algo", "mr", "--range", "1000000:1020000"};
  struct run a, b;

  run_primes(&a, NULL, "--engine", "gpu", NULL);
  expect_refused(&a, "--engine 'gpu': expected 'processes', 'threads' or "
                     "'mpi'");
  run_primes(&a, NULL, "--engine", "threads", "--task-timeout", "1", NULL);
  expect_refused(&a, "--task-timeout kills a worker process");
  for (int i = 0; i < 2; i++) {
    const char *format = i ? "csv" : "json";
    run_primes(&a, NULL, mr[0], mr[1], mr[2], mr[3], "--format", format, NULL);
    run_primes(&b, NULL, mr[0], mr[1], mr[2], mr[3], "--format", format,
               "--engine", "threads", NULL);
    ck_assert(a.status == 0 && b.status == 0);
    ck_assert_uint_gt(strlen(a.out), 20000);
    mask_run(a.out, format);
    mask_run(b.out, format);
    ck_assert_str_eq(a.out, b.out);
    run_free(&a);
    run_free(&b);
  }
  run_primes(&a, NULL, "--count", "--range", "0:100000000", "--engine",
             "threads", NULL);
  ck_assert_int_eq(a.status, 0);
  ck_assert_str_eq(a.out, "5761455\n");
  run_free(&a);
}
END_TEST

/* --engine mpi outside mpirun (or in a build without MPI) says how to run
 * it, and a refused command line is still refused first. Open MPI 4.1
 * leaks in MPI_Init(), which these runs reach: in a sanitized build their
 * leaks are not checked (every access still is), as in the MPI tests. */
START_TEST(cli_mpi_outside_mpirun) {
  const char *asan = getenv("ASAN_OPTIONS");
  char opts[512];
  struct run r;

  snprintf(opts, sizeof opts, "%s%sdetect_leaks=0", asan ? asan : "",
           asan ? ":" : "");
  ck_assert_int_eq(setenv("ASAN_OPTIONS", opts, 1), 0);
  run_primes(&r, NULL, "--engine", "mpi", "--sequential", NULL);
  expect_refused(&r, "--sequential checks in this process alone");
  run_primes(&r, NULL, "--engine", "mpi", "7", NULL);
  expect_refused(&r, "primes: --engine mpi: ");
}
END_TEST

/* A JSON array of rows: no ',' before the first, one before each other. */
static void expect_json_array(const char *out) {
  size_t objects = 0, separators = 0;

  ck_assert_msg(strncmp(out, "[\n  {\"n\": ", 10) == 0, "'%.20s'", out);
  ck_assert(strcmp(out + strlen(out) - 4, "}\n]\n") == 0);
  for (const char *p = out; (p = strstr(p, "{\"n\": ")) != NULL; p++)
    objects++;
  for (const char *p = out; (p = strstr(p, "},\n  {\"n\": ")) != NULL; p++)
    separators++;
  ck_assert_uint_eq(separators + 1, objects);
}

/* The bytes a map writes (its rows made in the workers, a batch at a time)
 * are those of the master's own rows (--sequential), elapsed times aside,
 * in every format: for a large range (many rows a batch, JSON's first ','
 * dropped once), the fixture (a number a batch) and a list. --mode
 * completed writes the same lines, in the order the results come. */
START_TEST(cli_map_bytes_match) {
  static const char *const formats[] = {"text", "csv", "json"};
  static const char *const inputs[][3] = {
      {"--range", "1000000000000:1000000030000", NULL},
      {"--algo", "mr", NULL},
      {"0", "18446744073709551557", "9999999999999999"}};
  char what[64];
  struct run r[3];

  for (size_t f = 0; f < 3; f++)
    for (size_t i = 0; i < 3; i++) {
      const char *const *in = inputs[i];
      run_primes(&r[0], NULL, "--algo", "mr", "--format", formats[f], "-w", "2",
                 in[0], in[1], in[2], NULL);
      run_primes(&r[1], NULL, "--algo", "mr", "--format", formats[f],
                 "--sequential", in[0], in[1], in[2], NULL);
      run_primes(&r[2], NULL, "--algo", "mr", "--format", formats[f], "--mode",
                 "completed", in[0], in[1], in[2], NULL);
      for (int k = 0; k < 3; k++) {
        ck_assert_msg(r[k].status == 0, "run %d: %s", k, r[k].err);
        if (f == 2)
          expect_json_array(r[k].out);
        mask_run(r[k].out, formats[f]);
      }
      snprintf(what, sizeof what, "%s, input %zu", formats[f], i);
      ck_assert_uint_gt(strlen(r[0].out), 20);
      ck_assert_msg(strcmp(r[0].out, r[1].out) == 0,
                    "%s: map and --sequential differ", what);
      expect_same_lines(r[0].out, r[2].out, what);
      for (int k = 0; k < 3; k++)
        run_free(&r[k]);
    }
}
END_TEST

START_TEST(cli_json_and_csv) {
  struct run r;
  size_t objects = 0;

  run_primes(&r, NULL, "--algo", "mr", "--format", "json", NULL);
  ck_assert_int_eq(r.status, 0);
  ck_assert(r.out[0] == '[');
  ck_assert(strcmp(r.out + strlen(r.out) - 3, "\n]\n") == 0);
  for (char *p = r.out; (p = strstr(p, "{\"n\": ")) != NULL; p++)
    objects++;
  ck_assert_uint_eq(objects, 20);
  ck_assert(strstr(r.out, "{\"n\": 9999999999999917, \"prime\": true, "
                          "\"elapsed\": "));
  ck_assert(strstr(r.out, "{\"n\": 2, \"prime\": true, \"elapsed\": "));
  if (system("command -v python3 >/dev/null 2>&1") == 0) {
    FILE *py = popen("python3 -c 'import json,sys; d=json.load(sys.stdin); "
                     "assert len(d)==20 and sum(x[\"prime\"] for x in d)==9'",
                     "w");
    ck_assert_ptr_nonnull(py);
    fputs(r.out, py);
    ck_assert_int_eq(pclose(py), 0);
  }
  run_free(&r);
  run_primes(&r, NULL, "--algo", "mr", "--format", "csv", "4", "5", NULL);
  ck_assert_int_eq(r.status, 0);
  ck_assert(strncmp(r.out, "n,prime,elapsed\n4,0,", 20) == 0);
  ck_assert(strstr(r.out, "\n5,1,"));
  run_free(&r);
}
END_TEST

static int alive(pid_t pid) {
  return kill(pid, 0) == 0 || errno != ESRCH;
}

/* Starts primes on a huge range, interrupts it once its workers run, and
 * expects exit 130 soon after, with every worker gone. */
static void expect_interrupt(const char *mode) {
  pid_t pid, workers[8];
  int n = 0, st;
  double t0;

  pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    int null = open("/dev/null", O_WRONLY);
    dup2(null, 1);
    dup2(null, 2);
    execl(PRIMES_PATH, PRIMES_PATH, "-w", "2", "--mode", mode, "--range",
          "1000000000000:2000000000000", (char *)NULL);
    _exit(127);
  }
  for (t0 = now(); now() - t0 < 10 && n < 3; sleep_s(0.01))
    n = tu_descendants_of(pid, workers, 8);
  ck_assert_int_ge(n, 3); /* the spawner and 2 workers */
  sleep_s(0.3);
  ck_assert_int_eq(kill(pid, SIGINT), 0);
  for (t0 = now(); waitpid(pid, &st, WNOHANG) == 0; sleep_s(0.01))
    if (now() - t0 > 10) {
      kill(pid, SIGKILL);
      ck_abort_msg("primes --mode %s ignored SIGINT", mode);
    }
  ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 130, "status %#x", st);
  ck_assert_msg(now() - t0 < 3, "took %.2fs to stop", now() - t0);
  for (int i = 0; i < n; i++)
    ck_assert_msg(!alive(workers[i]), "worker %d left behind", workers[i]);
}

START_TEST(cli_interrupt_map) {
  expect_interrupt("map");
}
END_TEST

START_TEST(cli_interrupt_completed) {
  expect_interrupt("completed");
}
END_TEST

/* Files made on Windows: CRLF endings and a blank last line. */
START_TEST(cli_files_crlf) {
  struct run r;

  run_primes(&r, "5\r\n8\r\n\r\n", "--algo", "mr", "--format", "csv", "-f", "-",
             NULL);
  ck_assert_int_eq(r.status, 0);
  strip_csv(r.out);
  ck_assert_str_eq(r.out, "n,prime\n5,1\n8,0\n");
  run_free(&r);
  run_primes(&r, "5\n6\n\n", "--algo", "mr", "-f", "-", NULL);
  ck_assert_int_eq(r.status, 0);
  ck_assert(strstr(r.out, "Checking 2 numbers"));
  run_free(&r);
}
END_TEST

/* A bad first line is refused at once, without waiting for the rest:
 * here the rest never comes (the pipe stays open). */
START_TEST(cli_file_stops_at_bad_line) {
  int fds[2];
  char path[64];
  struct run r;

  ck_assert_int_eq(pipe(fds), 0);
  ck_assert_int_eq(write(fds[1], "7\nseven\n8\n", 11), 11);
  snprintf(path, sizeof path, "/dev/fd/%d", fds[0]);
  run_primes(&r, NULL, "-f", path, NULL);
  close(fds[0]);
  close(fds[1]);
  ck_assert(strstr(r.err, ":2: 'seven'" NOT_INTEGER));
  expect_refused(&r, "primes: /dev/fd/");
}
END_TEST

/* Endless inputs are refused with bounded memory: a line without end,
 * and more numbers than MAX_LISTED. */
START_TEST(cli_file_bounded) {
  enum { LINES = 10000001 };
  char *lots = malloc(2 * LINES + 1);
  struct run r;

  run_primes(&r, NULL, "-f", "/dev/zero", NULL);
  expect_refused(&r, "primes: /dev/zero:1: '\\x00\\x00");
  ck_assert_ptr_nonnull(lots);
  for (size_t i = 0; i < LINES; i++)
    memcpy(lots + 2 * i, "7\n", 2);
  lots[2 * LINES] = '\0';
  run_primes(&r, lots, "--algo", "mr", "-f", "-", NULL);
  expect_refused(&r, "primes: <stdin>:10000001: more than 10000000 numbers");
  free(lots);
}
END_TEST

START_TEST(cli_task_timeout_limit) {
  struct run r;

  run_primes(&r, NULL, "--task-timeout", "1e10", NULL);
  expect_refused(&r, "--task-timeout '1e10': expected a positive number of "
                     "seconds, at most 1000000000\n");
  run_primes(&r, NULL, "--task-timeout", "inf", NULL);
  expect_refused(&r, "at most 1000000000");
}
END_TEST

/* Runs primes with argv, its stdout on `out`, sends `sig` once its two
 * workers run, and returns its wait status; every worker must be gone. */
static int signal_run(const char *const *argv, int sig, FILE *out) {
  pid_t pid, workers[8];
  int n = 0, st;
  double t0;

  pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    int null = open("/dev/null", O_WRONLY);
    dup2(out ? fileno(out) : null, 1);
    dup2(null, 2);
    execv(PRIMES_PATH, (char *const *)argv);
    _exit(127);
  }
  for (t0 = now(); now() - t0 < 10 && n < 3; sleep_s(0.01))
    n = tu_descendants_of(pid, workers, 8);
  ck_assert_int_ge(n, 3); /* the spawner and 2 workers */
  sleep_s(0.3);
  ck_assert_int_eq(kill(pid, sig), 0);
  for (t0 = now(); waitpid(pid, &st, WNOHANG) == 0; sleep_s(0.01))
    if (now() - t0 > 20) {
      kill(pid, SIGKILL);
      ck_abort_msg("primes ignored signal %d", sig);
    }
  for (int i = 0; i < n; i++)
    ck_assert_msg(!alive(workers[i]), "worker %d left behind", workers[i]);
  return st;
}

static const int stop_signals[] = {SIGINT, SIGTERM, SIGHUP};

/* SIGTERM and SIGHUP stop a run as Ctrl-C does: exit 128 + the signal,
 * every worker gone, and the output ends with a whole line. */
START_TEST(cli_stop_signals) {
  static const char *argv[] = {
      PRIMES_PATH, "-w",      "2",
      "--algo",    "mr",      "--format",
      "csv",       "--range", "1000000000000:2000000000000",
      NULL};
  int sig = stop_signals[_i], st;
  FILE *out = tmpfile();
  char *text;
  size_t len;

  ck_assert_ptr_nonnull(out);
  st = signal_run(argv, sig, out);
  ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 128 + sig,
                "signal %d: status %#x", sig, st);
  fflush(out);
  text = tu_read_fd(fileno(out), NULL);
  len = strlen(text);
  ck_assert_uint_gt(len, 1000);
  ck_assert_msg(text[len - 1] == '\n', "last line cut: '%s'",
                text + (len > 40 ? len - 40 : 0));
  free(text);
  fclose(out);
}
END_TEST

/* ------------------------------------------- --count and --primes-only */

/* The primes that --algo mr marks in csv output, one per line. */
static char *primes_of_csv(const char *csv) {
  char *list = calloc(strlen(csv) + 1, 1), *w = list;
  const char *line = strchr(csv, '\n') + 1;

  ck_assert_ptr_nonnull(list);
  for (; *line; line = strchr(line, '\n') + 1) {
    const char *comma = strchr(line, ',');
    if (comma[1] == '1') {
      memcpy(w, line, (size_t)(comma - line));
      w += comma - line;
      *w++ = '\n';
    }
  }
  return list;
}

/* Lines as a JSON array of numbers, the way --format json prints them
 * (in a static buffer). */
static const char *json_of_lines(const char *lines) {
  static char json[1 << 20];
  char *w = json;

  w += sprintf(w, "[");
  for (const char *l = lines; *l; l = strchr(l, '\n') + 1)
    w += sprintf(w, "%s\n  %.*s", l == lines ? "" : ",",
                 (int)(strchr(l, '\n') - l), l);
  sprintf(w, "%s]\n", w == json + 1 ? "" : "\n");
  return json;
}

/* The sieve lists the same primes as Miller-Rabin finds, in order, in all
 * three formats, across segment and range boundaries. */
START_TEST(cli_primes_only) {
  const char *range = "1000000000000:1000000030000";
  struct run mr, text, csv, json;
  char *want;

  run_primes(&mr, NULL, "--range", range, "--algo", "mr", "--format", "csv",
             NULL);
  run_primes(&text, NULL, "--range", range, "--primes-only", NULL);
  run_primes(&csv, NULL, "--range", range, "--primes-only", "--format", "csv",
             NULL);
  run_primes(&json, NULL, "--range", range, "--primes-only", "--format", "json",
             NULL);
  ck_assert(mr.status == 0 && text.status == 0 && csv.status == 0 &&
            json.status == 0);
  want = primes_of_csv(mr.out);
  ck_assert_uint_gt(strlen(want), 1000);
  ck_assert_str_eq(text.out, want);
  ck_assert(strncmp(csv.out, "n\n", 2) == 0);
  ck_assert_str_eq(csv.out + 2, want);
  ck_assert_str_eq(json.out, json_of_lines(want));
  free(want);
  run_free(&mr);
  run_free(&text);
  run_free(&csv);
  run_free(&json);

  run_primes(&text, NULL, "--range", "100:130", "--range", "0:12", "--range",
             "18446744073709551500:" MAX_U64_TEXT, "--primes-only", "-w", "2",
             NULL);
  ck_assert_int_eq(text.status, 0);
  ck_assert_str_eq(text.out, "101\n103\n107\n109\n113\n127\n2\n3\n5\n7\n11\n"
                             "18446744073709551521\n18446744073709551533\n"
                             "18446744073709551557\n");
  run_free(&text);
  run_primes(&json, NULL, "--range", "24:29", "--primes-only", "--format",
             "json", NULL);
  ck_assert_str_eq(json.out, "[]\n");
  run_free(&json);
}
END_TEST

/* Ten million numbers cut into several list segments: pi(10^7) primes,
 * the last one right, and the same count from --count. */
START_TEST(cli_primes_only_segments) {
  struct run r;
  size_t lines = 0;
  char *last;

  run_primes(&r, NULL, "--range", "0:10000000", "--primes-only", "-w", "2",
             NULL);
  ck_assert_int_eq(r.status, 0);
  for (char *p = r.out; (p = strchr(p, '\n')) != NULL; p++)
    lines++;
  ck_assert_uint_eq(lines, 664579);
  r.out[strlen(r.out) - 1] = '\0';
  last = strrchr(r.out, '\n') + 1;
  ck_assert_str_eq(last, "9999991");
  run_free(&r);
}
END_TEST

START_TEST(cli_count) {
  struct run r;
  double elapsed;
  unsigned long long count;

  run_primes(&r, NULL, "--range", "1000000000000:1000010000000", "--count",
             NULL);
  ck_assert_int_eq(r.status, 0);
  ck_assert_str_eq(r.out, "361726\n");
  run_free(&r);
  run_primes(&r, NULL, "--range", "0:1000000000", "--count", "--format", "json",
             "-w", "2", NULL);
  ck_assert_int_eq(r.status, 0);
  ck_assert_msg(sscanf(r.out, "{\"count\": %llu, \"elapsed\": %lf}\n", &count,
                       &elapsed) == 2,
                "'%s'", r.out);
  ck_assert_uint_eq(count, 50847534);
  ck_assert(elapsed > 0);
  run_free(&r);
  run_primes(&r, NULL, "--range", "0:1000000000", "--count", "--format", "csv",
             "--sequential", NULL);
  ck_assert_int_eq(r.status, 0);
  ck_assert(strncmp(r.out, "count,elapsed\n50847534,", 23) == 0);
  run_free(&r);
  run_primes(&r, NULL, "--range", "0:2", "--range", "2:3", "--range",
             "18446744073709551558:" MAX_U64_TEXT, "--count", NULL);
  ck_assert_str_eq(r.out, "1\n");
  run_free(&r);
}
END_TEST

/* A segment that fails (here: each runs 50 times past --task-timeout) is
 * named, and no count is printed. */
START_TEST(cli_count_failed_segment) {
  struct run r;

  run_primes(&r, NULL, "--range", "1000000000000:1020000000000", "--count",
             "--task-timeout", "0.005", "--retries", "0", NULL);
  ck_assert_int_eq(r.status, 1);
  ck_assert_str_eq(r.out, "");
  ck_assert(strstr(r.err, "primes: segment 1000000000000:"));
  ck_assert(strstr(r.err, "(PP_EDEADLINE)"));
  ck_assert(strstr(r.err, "primes: a segment failed: no count\n"));
  run_free(&r);
}
END_TEST

START_TEST(cli_sieve_refusals) {
  struct run r;

  run_primes(&r, NULL, "--count", "7", "--range", "1:9", NULL);
  expect_refused(&r, "--count sieves ranges only: give --range A:B, without "
                     "numbers or files");
  run_primes(&r, "7\n", "--primes-only", "-f", "-", "--range", "1:9", NULL);
  expect_refused(&r, "--primes-only sieves ranges only");
  run_primes(&r, NULL, "--count", NULL);
  expect_refused(&r, "--count needs --range A:B");
  run_primes(&r, NULL, "--count", "--primes-only", "--range", "1:9", NULL);
  expect_refused(&r, "--count and --primes-only exclude each other");
  run_primes(&r, NULL, "--count", "--algo", "mr", "--range", "1:9", NULL);
  expect_refused(&r, "--count sieves with libprimesieve: drop --algo");
  run_primes(&r, NULL, "--primes-only", "--mode", "completed", "--range", "1:9",
             NULL);
  expect_refused(&r, "--primes-only merges the segments in order: drop --mode");
  run_primes(&r, NULL, "--count", "--range", "9:1", NULL);
  expect_refused(&r, "the range is empty");
}
END_TEST

/* Ctrl-C stops a long count soon: the running segments are short. */
START_TEST(cli_count_interrupt) {
  static const char *argv[] = {PRIMES_PATH, "-w",
                               "2",         "--count",
                               "--range",   "1000000000000:1000000000000000",
                               NULL};
  double t0 = now();
  int st = signal_run(argv, SIGINT, NULL);

  ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 130, "status %#x", st);
  ck_assert_msg(now() - t0 < 10, "took %.1fs", now() - t0);
}
END_TEST

#else
/* Without the tool, its command-line tests cannot run: say so, never
 * pass in silence. */
START_TEST(cli_needs_the_tool) {
  ck_abort_msg("the primes tool was not configured with this suite, so its "
               "command-line tests cannot run: configure with "
               "-DPP_BUILD_TOOLS=ON and build again");
}
END_TEST
#endif /* PRIMES_PATH */

static Suite *primes_suite(void) {
  Suite *s = suite_create("primes");
  TCase *tc = tcase_create("core");

  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, parse_accepts_every_u64);
  tcase_add_test(tc, parse_refuses_the_rest);
  tcase_add_test(tc, lines_good);
  tcase_add_test(tc, lines_bad);
  tcase_add_test(tc, lines_stream);
  tcase_add_test(tc, numbers_limit);
  tcase_add_test(tc, range_parsing);
  tcase_add_test(tc, isqrt_exact);
  tcase_add_test(tc, edges_small);
  tcase_add_test(tc, fixture_marks);
  tcase_add_test(tc, agree_with_sieve);
  tcase_add_test(tc, agree_100000_near_1e12);
  tcase_add_test(tc, trial_stops_when_asked);
  tcase_add_test(tc, mr_agrees_with_factor);
  tcase_add_test(tc, seconds_like_printf);
  tcase_add_test(tc, seconds_out_of_range);
  tcase_add_test(tc, rows_like_printf);
  suite_add_tcase(s, tc);
  tc = tcase_create("slow");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, edges_trial_near_2_64);
  suite_add_tcase(s, tc);
#ifdef PRIMES_PATH
  tc = tcase_create("cli");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, cli_fixture_shape);
  tcase_add_test(tc, cli_headers);
  tcase_add_test(tc, cli_inputs_keep_order);
  tcase_add_test(tc, cli_bad_numbers);
  tcase_add_test(tc, cli_bad_files);
  tcase_add_test(tc, cli_bad_ranges);
  tcase_add_test(tc, cli_bad_options);
  tcase_add_test(tc, cli_fault_options);
  tcase_add_loop_test(tc, cli_task_timeout, 0, 2);
  tcase_add_test(tc, cli_modes_same_lines);
  tcase_add_test(tc, cli_engines);
  tcase_add_test(tc, cli_mpi_outside_mpirun);
  tcase_add_test(tc, cli_large_range_agrees);
  tcase_add_test(tc, cli_json_and_csv);
  tcase_add_test(tc, cli_map_bytes_match);
  tcase_add_test(tc, cli_interrupt_map);
  tcase_add_test(tc, cli_interrupt_completed);
  tcase_add_test(tc, cli_files_crlf);
  tcase_add_test(tc, cli_file_bounded);
  tcase_add_test(tc, cli_task_timeout_limit);
  tcase_add_loop_test(tc, cli_stop_signals, 0, 3);
  tcase_add_test(tc, cli_primes_only);
  tcase_add_test(tc, cli_primes_only_segments);
  tcase_add_test(tc, cli_count);
  tcase_add_test(tc, cli_count_failed_segment);
  tcase_add_test(tc, cli_sieve_refusals);
  tcase_add_test(tc, cli_count_interrupt);
  suite_add_tcase(s, tc);
  /* Before the fix, this one waited for ever: bound it tightly. */
  tc = tcase_create("cli_stream");
  tcase_set_timeout(tc, 20);
  tcase_add_test(tc, cli_file_stops_at_bad_line);
  suite_add_tcase(s, tc);
#else
  tc = tcase_create("cli");
  tcase_add_test(tc, cli_needs_the_tool);
  suite_add_tcase(s, tc);
#endif
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(primes_suite());
  int failed;

  srunner_run_all(sr, CK_NORMAL);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
