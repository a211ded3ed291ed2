/*
 * Parsing and primality tests of the primes tool (see primes_core.h).
 *
 * The parsers work on byte ranges rather than C strings, and the line
 * parser is fed a file as it streams in, holding one line at most, so that
 * a file is checked without being held whole; they report where they
 * stopped so that the tool can name the line. Every arithmetic step
 * is written to stay exact up to 2^64-1: the parser checks for overflow
 * before it happens, isqrt never squares past 2^64, and Miller-Rabin
 * works in Montgomery form: 64x64->128-bit products reduced without any
 * division per step.
 */
#include "primes_core.h"

#include <stdlib.h>
#include <string.h>

__extension__ typedef unsigned __int128 u128;

/* Trial division reads the stop flag once per this many divisors. */
#define STOP_EVERY ((uint64_t)1 << 18)

const uint64_t pc_fixture[PC_FIXTURE_COUNT] = {
    9999999999999999u, 9999999999999917u, 7777777777777777u, 7777777777777753u,
    7777777536340681u, 6666667141414921u, 6666666666666719u, 6666666666666666u,
    5555555555555555u, 5555555555555503u, 5555553133149889u, 4444444488888889u,
    4444444444444444u, 4444444444444423u, 3333335652092209u, 3333333333333333u,
    3333333333333301u, 299593572317531u,  142702110479723u,  2u};

/* Decimal digits only, at least one, at most 2^64-1. */
int pc_parse_u64(const char *s, size_t len, uint64_t *out) {
  uint64_t v = 0;

  if (len == 0)
    return PC_EBAD;
  for (size_t i = 0; i < len; i++) {
    unsigned digit = (unsigned char)s[i] - '0';
    if (digit > 9 || v > (UINT64_MAX - digit) / 10)
      return PC_EBAD;
    v = v * 10 + digit;
  }
  *out = v;
  return PC_OK;
}

/* Doubles the capacity as needed, so that pushing n numbers costs O(n),
 * but never past the limit. */
int pc_numbers_push(pc_numbers *nums, uint64_t x) {
  if (nums->limit && nums->n >= nums->limit)
    return PC_ETOOMANY;
  if (nums->n == nums->cap) {
    size_t cap = nums->cap ? nums->cap * 2 : 64;
    uint64_t *grown;
    if (nums->limit && cap > nums->limit)
      cap = nums->limit;
    if (cap > SIZE_MAX / sizeof *grown)
      return PC_ENOMEM;
    if (!(grown = realloc(nums->v, cap * sizeof *grown)))
      return PC_ENOMEM;
    nums->v = grown;
    nums->cap = cap;
  }
  nums->v[nums->n++] = x;
  return PC_OK;
}

void pc_numbers_free(pc_numbers *nums) {
  free(nums->v);
  memset(nums, 0, sizeof *nums);
}

void pc_lines_init(pc_lines *p) {
  memset(p, 0, sizeof *p);
  p->lineno = 1;
}

/* Names line `line`, whose first `len` bytes are `text`, as bad. */
static int bad_line(pc_bad_line *bad, size_t line, const char *text,
                    size_t len) {
  bad->line = line;
  bad->len = len;
  memcpy(bad->text, text, len);
  return PC_EBAD;
}

/* One whole line, its '\n' taken off: a CR before it goes too. A blank
 * line is held until the next line shows it was not the last. */
static int end_line(pc_lines *p, pc_numbers *nums, pc_bad_line *bad) {
  size_t whole = p->len, len = whole;
  uint64_t x;
  int rc;

  if (len > 0 && p->line[len - 1] == '\r')
    len--;
  p->len = 0;
  if (p->blank)
    return bad_line(bad, p->blank, "", 0);
  if (len == 0) {
    p->blank = p->lineno++;
    return PC_OK;
  }
  if (pc_parse_u64(p->line, len, &x) != PC_OK)
    return bad_line(bad, p->lineno, p->line, whole);
  if ((rc = pc_numbers_push(nums, x)) == PC_OK)
    p->lineno++;
  return rc;
}

/* Copies each line into p->line, so that a line cut between two reads is
 * parsed whole, and a line that does not fit is bad at once. */
int pc_lines_feed(pc_lines *p, const char *buf, size_t len, pc_numbers *nums,
                  pc_bad_line *bad) {
  while (len > 0) {
    const char *nl = memchr(buf, '\n', len);
    size_t piece = nl ? (size_t)(nl - buf) : len;
    int rc;

    if (piece > PC_LINE_MAX - p->len) {
      memcpy(p->line + p->len, buf, PC_LINE_MAX - p->len);
      return bad_line(bad, p->lineno, p->line, PC_LINE_MAX);
    }
    memcpy(p->line + p->len, buf, piece);
    p->len += piece;
    if (!nl)
      return PC_OK;
    if ((rc = end_line(p, nums, bad)) != PC_OK)
      return rc;
    buf += piece + 1;
    len -= piece + 1;
  }
  return PC_OK;
}

int pc_lines_end(pc_lines *p, pc_numbers *nums, pc_bad_line *bad) {
  return p->len > 0 ? end_line(p, nums, bad) : PC_OK;
}

int pc_parse_lines(const char *buf, size_t len, pc_numbers *nums,
                   pc_bad_line *bad) {
  pc_lines p;
  int rc;

  pc_lines_init(&p);
  if ((rc = pc_lines_feed(&p, buf, len, nums, bad)) != PC_OK)
    return rc;
  return pc_lines_end(&p, nums, bad);
}

/* "A:B" with A < B; an endpoint that is not a number is named in *bad. */
int pc_parse_range(const char *s, uint64_t *a, uint64_t *b, const char **bad,
                   size_t *bad_len) {
  const char *colon = strchr(s, ':');
  const char *tail;

  if (!colon)
    return PC_ESYNTAX;
  tail = colon + 1;
  if (pc_parse_u64(s, (size_t)(colon - s), a) != PC_OK) {
    *bad = s;
    *bad_len = (size_t)(colon - s);
    return PC_EBAD;
  }
  if (pc_parse_u64(tail, strlen(tail), b) != PC_OK) {
    *bad = tail;
    *bad_len = strlen(tail);
    return PC_EBAD;
  }
  return *a < *b ? PC_OK : PC_EEMPTY;
}

/* Newton's method from a power of two at or above the root: the iterates
 * decrease to the root and x + n / x <= 2^33, so nothing overflows. */
uint64_t pc_isqrt(uint64_t n) {
  uint64_t x, y;
  int bits;

  if (n < 2)
    return n;
  bits = 64 - __builtin_clzll(n);
  x = (uint64_t)1 << ((bits + 1) / 2);
  y = (x + n / x) / 2;
  while (y < x) {
    x = y;
    y = (x + n / x) / 2;
  }
  return x;
}

/* The classic is_prime(): n < 2, n == 2, even n, then odd divisors. The
 * divisors run in blocks so that the stop flag costs nothing per step. */
int pc_trial_division(uint64_t n, const atomic_int *stop) {
  uint64_t root, d = 3;

  if (n < 2)
    return PC_COMPOSITE;
  if (n == 2)
    return PC_PRIME;
  if (n % 2 == 0)
    return PC_COMPOSITE;
  root = pc_isqrt(n);
  while (d <= root) {
    uint64_t last = root - d > STOP_EVERY ? d + STOP_EVERY : root;
    for (; d <= last; d += 2)
      if (n % d == 0)
        return PC_COMPOSITE;
    if (d <= root && stop && atomic_load_explicit(stop, memory_order_relaxed))
      return PC_STOPPED;
  }
  return PC_PRIME;
}

/* ------------------------------------------------------ Miller-Rabin */

/* Bit n set: n < 64 is prime. */
#define PRIMES_BELOW_64 UINT64_C(0x28208a20a08a28ac)

#define NBASES 6 /* the bases after 2 */

/* Odd n >= 64 divisible by a prime from 3 to 53. Constant divisors, so that
 * the compiler tests each with a multiplication, not a division. */
static int has_small_factor(uint64_t n) {
  return n % 3 == 0 || n % 5 == 0 || n % 7 == 0 || n % 11 == 0 || n % 13 == 0 ||
         n % 17 == 0 || n % 19 == 0 || n % 23 == 0 || n % 29 == 0 ||
         n % 31 == 0 || n % 37 == 0 || n % 41 == 0 || n % 43 == 0 ||
         n % 47 == 0 || n % 53 == 0;
}

/* Montgomery arithmetic modulo an odd n, with R = 2^64: x is held as
 * xR mod n, always in [0, n), so that equal numbers have equal forms. */
struct mont {
  uint64_t n;
  uint64_t inv;       /* n^-1 mod 2^64 */
  uint64_t one;       /* R mod n */
  uint64_t minus_one; /* n - one: the form of n - 1 */
};

/* n^-1 mod 2^64 by Newton's iteration: 3n ^ 2 is right in 5 bits, and
 * each step doubles them (5, 10, 20, 40, 80). */
static uint64_t inverse_mod_2_64(uint64_t n) {
  uint64_t x = (3 * n) ^ 2;

  for (int i = 0; i < 4; i++)
    x *= 2 - n * x;
  return x;
}

static void mont_init(struct mont *m, uint64_t n) {
  m->n = n;
  m->inv = inverse_mod_2_64(n);
  m->one = (0 - n) % n; /* 2^64 mod n, in one 64-bit division */
  m->minus_one = n - m->one;
}

/* abR^-1 mod n for a, b < n (REDC): with q = lo(ab) * n^-1, qn has the low
 * word of ab, so (ab - qn) / R is hi(ab) - hi(qn), in (-n, n). Three
 * multiplications, no division. */
static uint64_t mont_mul(const struct mont *m, uint64_t a, uint64_t b) {
  u128 t = (u128)a * b;
  uint64_t q = (uint64_t)t * m->inv;
  uint64_t hi = (uint64_t)(t >> 64);
  uint64_t qn_hi = (uint64_t)(((u128)q * m->n) >> 64);

  return hi >= qn_hi ? hi - qn_hi : hi - qn_hi + m->n;
}

/* R^2 mod n, to bring numbers into Montgomery form: the one 128-bit
 * division per number, and only for numbers that pass base 2. */
static uint64_t mont_r2(const struct mont *m) {
  return (uint64_t)(((u128)m->one << 64) % m->n);
}

/* 2x mod n for x < n, without overflow. */
static uint64_t mont_double(const struct mont *m, uint64_t x) {
  return x >= m->n - x ? x - (m->n - x) : x + x;
}

/* 2^e in Montgomery form: multiplying by 2 is a doubling, so that only
 * the squarings cost a multiplication (base 2 runs on most numbers). */
static uint64_t mont_pow2(const struct mont *m, uint64_t e) {
  uint64_t r = mont_double(m, m->one);

  for (int bit = 62 - __builtin_clzll(e); bit >= 0; bit--) {
    r = mont_mul(m, r, r);
    if ((e >> bit) & 1)
      r = mont_double(m, r);
  }
  return r;
}

/* x[i]^e for three bases at once: the three chains of multiplications
 * are independent, so that the processor overlaps them (one chain waits on
 * each product's latency; three cost little more than one). */
static void mont_pow3(const struct mont *m, uint64_t x[3], uint64_t e) {
  uint64_t r[3] = {x[0], x[1], x[2]};

  for (int bit = 62 - __builtin_clzll(e); bit >= 0; bit--) {
    for (int i = 0; i < 3; i++)
      r[i] = mont_mul(m, r[i], r[i]);
    if ((e >> bit) & 1)
      for (int i = 0; i < 3; i++)
        r[i] = mont_mul(m, r[i], x[i]);
  }
  for (int i = 0; i < 3; i++)
    x[i] = r[i];
}

/* The end of one round, from x = a^d (Montgomery form): does base a fail
 * to witness that n = d * 2^s + 1 is composite? */
static int strong_probable_prime(const struct mont *m, uint64_t x, int s) {
  if (x == m->one || x == m->minus_one)
    return 1;
  while (--s > 0) {
    x = mont_mul(m, x, x);
    if (x == m->minus_one)
      return 1;
    if (x == m->one)
      return 0;
  }
  return 0;
}

/* Small n by a bit mask, then the primes to 53 (which settle n < 59^2),
 * then Miller-Rabin with Jim Sinclair's seven bases, proven exact for every
 * n < 2^64 (a base that is 0 mod n is skipped). Base 2 goes first: its
 * powers need doublings, not multiplications, and most composites fail
 * it; the six others, which every prime must pass, run three at a time. */
int pc_miller_rabin(uint64_t n) {
  static const uint64_t bases[NBASES] = {325,    9375,    28178,
                                         450775, 9780504, 1795265022};
  uint64_t d, r2;
  struct mont m;
  int s;

  if (n < 64)
    return (int)((PRIMES_BELOW_64 >> n) & 1);
  if (n % 2 == 0 || has_small_factor(n))
    return PC_COMPOSITE;
  if (n < 59 * 59)
    return PC_PRIME;
  mont_init(&m, n);
  s = __builtin_ctzll(n - 1);
  d = (n - 1) >> s;
  if (!strong_probable_prime(&m, mont_pow2(&m, d), s))
    return PC_COMPOSITE;
  r2 = mont_r2(&m);
  for (size_t i = 0; i < NBASES; i += 3) {
    uint64_t x[3];
    for (int j = 0; j < 3; j++)
      x[j] = mont_mul(&m, bases[i + j] % n, r2);
    mont_pow3(&m, x, d);
    for (int j = 0; j < 3; j++)
      if (bases[i + j] % n != 0 && !strong_probable_prime(&m, x[j], s))
        return PC_COMPOSITE;
  }
  return PC_PRIME;
}
