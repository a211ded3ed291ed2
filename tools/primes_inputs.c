/*
 * The inputs of the primes tool: numbers of the command line, files (one
 * number per line) and ranges, all validated before any work starts, and
 * the cursor that walks them in order.
 *
 * DESIGN
 * The numbers of the command line and of files are read into one array,
 * ranges are kept as their two endpoints, and a cursor walks the array and
 * then the ranges, so that a range of any size costs constant memory.
 *
 * Files are parsed as they stream in and refused at their first bad line,
 * so that `primes -f /dev/zero` stops at once. What is held is bounded:
 * a line may have PC_LINE_MAX bytes, and the command line and the files
 * may give MAX_LISTED numbers in all (80 MB); past that the run is refused
 * before any work (a range has no such limit). Lines end in LF or CRLF and
 * one blank line may end a file.
 */
#include "primes.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define READ_SIZE 65536 /* bytes of a file parsed at a time */
#define QUOTE_MAX 40    /* bytes of a bad input quoted in a message */
#define RANGE_HINT "expected A:B, the integers from A up to B excluded"

/* The next numbers in input order, at most `most` (>= 1) of them: a listed
 * number alone, or as much of the current range as `most` allows. Returns
 * 1 with them in *s, 0 at the end. */
int cursor_span(struct cursor *c, uint64_t most, struct span *s) {
  const struct inputs *in = c->in;

  if (c->index < in->list.n) {
    *s = (struct span){in->list.v[c->index++], 1};
    return 1;
  }
  for (; c->range < in->nranges; c->range++, c->offset = 0) {
    const struct range *r = &in->ranges[c->range];
    uint64_t left = r->b - r->a - c->offset;
    if (left > 0) {
      *s = (struct span){r->a + c->offset, left < most ? left : most};
      c->offset += s->count;
      return 1;
    }
  }
  return 0;
}

/* The number at position i, to name a failed map item. */
uint64_t inputs_at(const struct inputs *in, uint64_t i) {
  if (i < in->list.n)
    return in->list.v[i];
  i -= in->list.n;
  for (size_t r = 0; r < in->nranges; r++) {
    uint64_t span = in->ranges[r].b - in->ranges[r].a;
    if (i < span)
      return in->ranges[r].a + i;
    i -= span;
  }
  return 0;
}

/* Writes s quoted, with unprintable bytes escaped and long ones cut. */
void put_quoted(FILE *f, const char *s, size_t len) {
  size_t shown = len > QUOTE_MAX ? QUOTE_MAX : len;

  fputc('\'', f);
  for (size_t i = 0; i < shown; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch >= 0x20 && ch < 0x7f && ch != '\\')
      fputc(ch, f);
    else
      fprintf(f, "\\x%02x", ch);
  }
  fputs(shown < len ? "...'" : "'", f);
}

/* Ends a message about a bad number: "'<text>' is not an integer ...". */
void put_not_integer(const char *text, size_t len) {
  put_quoted(stderr, text, len);
  fprintf(stderr, " is not an integer from 0 to %" PRIu64 "\n", UINT64_MAX);
}

/* Says why the file stopped being read; `rc` is a pc_lines_* code. */
static int file_refused(const char *name, const pc_lines *p,
                        const pc_bad_line *bad, int rc) {
  switch (rc) {
  case PC_EBAD:
    fprintf(stderr, "primes: %s:%zu: ", name, bad->line);
    put_not_integer(bad->text, bad->len);
    return EXIT_USAGE;
  case PC_ETOOMANY:
    fprintf(stderr,
            "primes: %s:%zu: more than %d numbers from the command line "
            "and files; split the input, or give a --range\n",
            name, p->lineno, MAX_LISTED);
    return EXIT_USAGE;
  default:
    fprintf(stderr, "primes: %s: out of memory\n", name);
    return EXIT_FAILED;
  }
}

/* Parses the file as it streams in, what each read() brings (stdio would
 * wait for a full buffer), and stops at the first bad line: a file without
 * newlines, or an endless one, costs no more than PC_LINE_MAX bytes and
 * MAX_LISTED numbers. */
static int read_numbers(int fd, const char *name, struct inputs *in) {
  char buf[READ_SIZE];
  pc_bad_line bad;
  pc_lines p;
  ssize_t got;
  int rc = PC_OK;

  pc_lines_init(&p);
  in->list.limit = MAX_LISTED;
  while (rc == PC_OK && (got = read(fd, buf, sizeof buf)) != 0) {
    if (got < 0 && errno == EINTR)
      continue;
    if (got < 0) {
      fprintf(stderr, "primes: %s: %s\n", name, strerror(errno));
      return EXIT_USAGE;
    }
    rc = pc_lines_feed(&p, buf, (size_t)got, &in->list, &bad);
  }
  if (rc == PC_OK)
    rc = pc_lines_end(&p, &in->list, &bad);
  return rc == PC_OK ? CONTINUE : file_refused(name, &p, &bad, rc);
}

/* Appends the numbers of a file ("-": standard input). Returns CONTINUE
 * or an exit status. */
int add_file(const char *path, struct inputs *in) {
  int is_stdin = strcmp(path, "-") == 0;
  const char *name = is_stdin ? "<stdin>" : path;
  int fd = is_stdin ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
  size_t before = in->list.n;
  int status;

  if (fd < 0) {
    fprintf(stderr, "primes: %s: %s\n", name, strerror(errno));
    return EXIT_USAGE;
  }
  status = read_numbers(fd, name, in);
  if (!is_stdin)
    close(fd);
  if (status == CONTINUE && in->list.n == before) {
    fprintf(stderr, "primes: %s: no numbers in it\n", name);
    status = EXIT_USAGE;
  }
  return status;
}

/* Appends the range of "A:B". */
int add_range(const char *text, struct inputs *in) {
  struct range r;
  const char *bad;
  size_t bad_len;

  switch (pc_parse_range(text, &r.a, &r.b, &bad, &bad_len)) {
  case PC_OK:
    in->ranges[in->nranges++] = r;
    return CONTINUE;
  case PC_EBAD:
    fputs("primes: --range ", stderr);
    put_quoted(stderr, text, strlen(text));
    fputs(": ", stderr);
    put_not_integer(bad, bad_len);
    return EXIT_USAGE;
  case PC_EEMPTY:
    fprintf(stderr,
            "primes: --range '%s': the range is empty; " RANGE_HINT
            " and A < B\n",
            text);
    return EXIT_USAGE;
  default:
    fprintf(stderr, "primes: --range '%s': " RANGE_HINT "\n", text);
    return EXIT_USAGE;
  }
}

/* Appends the numbers of the command line, naming a bad one by position. */
int add_arguments(char **args, int n, struct inputs *in) {
  uint64_t x;

  for (int i = 0; i < n; i++) {
    if (pc_parse_u64(args[i], strlen(args[i]), &x) != PC_OK) {
      fprintf(stderr, "primes: argument %d: ", i + 1);
      put_not_integer(args[i], strlen(args[i]));
      return EXIT_USAGE;
    }
    if (pc_numbers_push(&in->list, x) != PC_OK) {
      fputs("primes: out of memory\n", stderr);
      return EXIT_FAILED;
    }
  }
  return CONTINUE;
}

/* The fixture when nothing was given; then the total, which must fit. */
int finish_inputs(struct inputs *in, int given) {
  uint64_t total;

  for (size_t i = 0; !given && i < PC_FIXTURE_COUNT; i++)
    if (pc_numbers_push(&in->list, pc_fixture[i]) != PC_OK) {
      fputs("primes: out of memory\n", stderr);
      return EXIT_FAILED;
    }
  total = in->list.n;
  for (size_t r = 0; r < in->nranges; r++)
    if (__builtin_add_overflow(total, in->ranges[r].b - in->ranges[r].a,
                               &total)) {
      fprintf(stderr,
              "primes: the ranges hold more than %" PRIu64 " numbers in all\n",
              UINT64_MAX);
      return EXIT_USAGE;
    }
  in->count = total;
  return CONTINUE;
}

void free_inputs(struct inputs *in) {
  pc_numbers_free(&in->list);
  free(in->ranges);
}
