/*
 * check_flags: the flags downloader, run as a program against a flagserver
 * that each test starts on a free port (--port 0) and stops in teardown,
 * and against tiny fake servers for what a real server does not do
 * (closing mid-body, over-size bodies, never answering).
 *
 * DESIGN
 *   Each test gets a fresh temporary directory; flags runs with its output
 *   there and with its stdout and stderr in files, so that the reports can
 *   be parsed. What the server serves is fetched again with a minimal HTTP
 *   client of the test's own, so that "byte-identical" does not trust the
 *   tool under test. The binaries come from compile definitions; if one is
 *   missing the tests fail saying so, they never skip.
 */
#include "country_codes.h"
#include "testutil.h"
#include "toolutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#ifndef FLAGS_PATH
#define FLAGS_PATH ""
#endif
#ifndef FLAGSERVER_PATH
#define FLAGSERVER_PATH ""
#endif

#define MAX_ARGS 32

/* A flagserver started by a test. */
struct server {
  pid_t pid;
  int port;
  char url[64];
  char out[300]; /* its stdout and stderr */
  char err[300];
};

static char tmpdir[256];
static struct server srv;

/* ------------------------------------------------------------- helpers */

static void sleep_s(double s) {
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  nanosleep(&ts, NULL);
}

static void path_in(char *buf, size_t size, const char *name) {
  snprintf(buf, size, "%s/%s", tmpdir, name);
}

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(path);
}

/* The test case's directory, made and removed in the runner's process
 * (unchecked fixture), so that it goes even when a failed check ends the
 * test's process at once, skipping the checked teardown; the flagserver
 * then dies with that process (PR_SET_PDEATHSIG). */
static char casedir[200];

static void setup_case(void) {
  snprintf(casedir, sizeof casedir, "/tmp/check_flags.XXXXXX");
  ck_assert_msg(mkdtemp(casedir) != NULL, "mkdtemp: %s", strerror(errno));
}

static void teardown_case(void) {
  nftw(casedir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Each test gets a fresh directory inside the case's. */
static void setup_dir(void) {
  static int seq;
  snprintf(tmpdir, sizeof tmpdir, "%s/%d.%d", casedir, (int)getpid(), seq++);
  ck_assert_msg(mkdir(tmpdir, 0700) == 0, "mkdir %s: %s", tmpdir,
                strerror(errno));
  srv.pid = 0;
}

/* Kills the server and removes the test's directory. */
static void teardown_dir(void) {
  if (srv.pid > 0) {
    kill(srv.pid, SIGKILL);
    waitpid(srv.pid, NULL, 0);
    srv.pid = 0;
  }
  nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Fails the test unless `path` is an executable built by this project. */
static void need_binary(const char *path, const char *target) {
  ck_assert_msg(path[0] != '\0',
                "the %s target was not configured with this suite (no "
                "path compiled in): configure with -DPP_BUILD_TOOLS=ON "
                "(and libcurl, libmicrohttpd, giflib installed), then "
                "cmake --build . --target %s",
                target, target);
  ck_assert_msg(access(path, X_OK) == 0, "%s missing at %s: %s", target, path,
                strerror(errno));
}

/* Starts argv with stdout and stderr in the files `out` and `err`. */
static pid_t spawn(char *const argv[], const char *out, const char *err,
                   const char *cwd) {
  int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int fe = open(err, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  pid_t pid;

  ck_assert_msg(fo >= 0 && fe >= 0, "cannot create %s: %s", out,
                strerror(errno));
  pid = tu_spawn(argv, -1, fo, fe, cwd);
  close(fo);
  close(fe);
  return pid;
}

/* ----------------------------------------------------------- flagserver */

/* Starts a flagserver on a free port with the given extra arguments
 * (NULL-terminated) and waits for its "Serving flags on" line. */
static void server_start(const char *arg, ...) {
  char *argv[MAX_ARGS] = {FLAGSERVER_PATH, "--port", "0"};
  int argc = 3;
  va_list ap;

  need_binary(FLAGSERVER_PATH, "flagserver");
  va_start(ap, arg);
  for (const char *a = arg; a && argc < MAX_ARGS - 1; a = va_arg(ap, char *))
    argv[argc++] = (char *)a;
  va_end(ap);
  path_in(srv.out, sizeof srv.out, "server.out");
  path_in(srv.err, sizeof srv.err, "server.err");
  srv.pid = spawn(argv, srv.out, srv.err, NULL);
  for (double end = tu_now() + 10; tu_now() < end; sleep_s(0.02)) {
    char *text = tu_read_file(srv.out, NULL);
    char *nl = text ? strchr(text, '\n') : NULL;
    int port = 0;
    if (nl && sscanf(text, "Serving flags on http://127.0.0.1:%d/flags",
                     &port) == 1) {
      free(text);
      srv.port = port;
      snprintf(srv.url, sizeof srv.url, "http://127.0.0.1:%d/flags", port);
      return;
    }
    ck_assert_msg(!nl,
                  "flagserver's first line is not 'Serving flags on "
                  "http://127.0.0.1:PORT/flags': %s",
                  text);
    free(text);
    ck_assert_msg(waitpid(srv.pid, NULL, WNOHANG) == 0,
                  "flagserver exited at once");
  }
  ck_abort_msg("flagserver did not print its address within 10 s");
}

/* Stops the flagserver with SIGTERM and reads its summary line. */
static void server_stop(long *total, long *ok, long *notfound, long *errors) {
  char *text, *line;

  kill(srv.pid, SIGTERM);
  ck_assert_msg(tu_wait(srv.pid, 10) >= 0, "flagserver ignored SIGTERM");
  srv.pid = 0;
  text = tu_read_file(srv.err, NULL);
  ck_assert_ptr_nonnull(text);
  line = strstr(text, "served ");
  ck_assert_msg(line && sscanf(line,
                               "served %ld requests: %ld ok, %ld not found, "
                               "%ld errors(418)",
                               total, ok, notfound, errors) == 4,
                "no summary line from flagserver: %s", text);
  free(text);
}

/* ---------------------------------------------------------------- flags */

/* Runs flags with the given arguments (NULL-terminated) in `cwd` (NULL:
 * the test directory), waiting up to 120 s. */
static void run_flags(struct tu_run *r, const char *cwd, const char *arg, ...) {
  char *argv[MAX_ARGS] = {FLAGS_PATH};
  int argc = 1;
  va_list ap;

  need_binary(FLAGS_PATH, "flags");
  va_start(ap, arg);
  for (const char *a = arg; a && argc < MAX_ARGS - 1; a = va_arg(ap, char *))
    argv[argc++] = (char *)a;
  va_end(ap);
  tu_run(r, argv, NULL, cwd ? cwd : tmpdir, 120);
}

/* The number on the report line ending with `tail` (" downloaded.",
 * " not found.", " error"), 0 if there is none, as in the classic report. */
static long report_count(const char *out, const char *tail) {
  for (const char *p = out; p && *p;
       p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
    const char *end = strchr(p, '\n');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    char line[256];
    long n;
    if (len >= sizeof line)
      continue;
    memcpy(line, p, len);
    line[len] = '\0';
    if (sscanf(line, "%ld", &n) == 1 && strstr(line, tail))
      return n;
  }
  return 0;
}

/* Number of lines of `text` containing `needle`. */
static int count_lines(const char *text, const char *needle) {
  int n = 0;
  for (const char *p = text; (p = strstr(p, needle)) != NULL; p++)
    n++;
  return n;
}

/* Names in `dir`: flags (*.gif, not hidden) and anything else. */
static void list_dir(const char *dir, int *gifs, int *others) {
  DIR *d = opendir(dir);
  struct dirent *e;

  *gifs = *others = 0;
  if (!d)
    return;
  while ((e = readdir(d)) != NULL) {
    size_t len = strlen(e->d_name);
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
      continue;
    if (len == 6 && e->d_name[0] != '.' && !strcmp(e->d_name + 2, ".gif"))
      (*gifs)++;
    else
      (*others)++;
  }
  closedir(d);
}

#define ASSERT_RUN(r, cond)                                                    \
  ck_assert_msg(cond, "%s\nexit %d\n--- stdout:\n%s\n--- stderr:\n%s", #cond,  \
                (r)->status, (r)->out, (r)->err)

/* ----------------------------------------------------- fake HTTP servers */

enum fake_kind {
  FAKE_TRUNCATED,  /* Content-Length 1000, 10 bytes, close */
  FAKE_BIG_LENGTH, /* announces and sends 2 MiB */
  FAKE_BIG_STREAM, /* no length, sends 1.5 MiB, closes */
  FAKE_SILENT,     /* reads the request, never answers */
  FAKE_RAW         /* sends `raw` as it is, then closes */
};

struct fake {
  enum fake_kind kind;
  int fd;
  int port;
  const char *raw; /* FAKE_RAW's whole answer */
  size_t raw_len;
  int held[64]; /* connections FAKE_SILENT keeps open */
  int nheld;
  atomic_int stop;
  atomic_int requests;
  pthread_t thread;
};

/* Reads a request's head (up to the blank line, or what arrives). */
static void read_request(int fd) {
  char buf[4096];
  size_t n = 0;
  while (n < sizeof buf - 1) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 2000) <= 0)
      return;
    ssize_t r = recv(fd, buf + n, sizeof buf - 1 - n, 0);
    if (r <= 0)
      return;
    n += (size_t)r;
    buf[n] = '\0';
    if (strstr(buf, "\r\n\r\n"))
      return;
  }
}

/* Answers one connection as the fake's kind says. */
static void fake_answer(struct fake *fk, int fd) {
  static char body[2 * 1024 * 1024];
  char head[256];
  int n;

  read_request(fd);
  atomic_fetch_add(&fk->requests, 1);
  memset(body, 'G', sizeof body);
  memcpy(body, "GIF89a", 6);
  switch (fk->kind) {
  case FAKE_TRUNCATED:
    n = snprintf(head, sizeof head,
                 "HTTP/1.1 200 OK\r\nContent-Type: image/gif\r\n"
                 "Content-Length: 1000\r\n\r\n");
    tu_send_all(fd, head, (size_t)n);
    tu_send_all(fd, body, 10);
    break;
  case FAKE_BIG_LENGTH:
    n = snprintf(head, sizeof head,
                 "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", sizeof body);
    tu_send_all(fd, head, (size_t)n);
    tu_send_all(fd, body, sizeof body);
    break;
  case FAKE_BIG_STREAM:
    n = snprintf(head, sizeof head,
                 "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
    tu_send_all(fd, head, (size_t)n);
    tu_send_all(fd, body, 3 * sizeof body / 4);
    break;
  case FAKE_RAW:
    tu_send_all(fd, fk->raw, fk->raw_len);
    break;
  case FAKE_SILENT:
    if (fk->nheld < 64) {
      fk->held[fk->nheld++] = fd;
      return;
    }
    break;
  }
  close(fd);
}

static void *fake_main(void *arg) {
  struct fake *fk = arg;
  while (!atomic_load(&fk->stop)) {
    struct pollfd p = {fk->fd, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0)
      continue;
    int c = accept(fk->fd, NULL, NULL);
    if (c >= 0)
      fake_answer(fk, c);
  }
  return NULL;
}

static void fake_start(struct fake *fk, enum fake_kind kind) {
  memset(fk, 0, sizeof *fk);
  fk->kind = kind;
  fk->fd = tu_listen_local(&fk->port, 1);
  ck_assert_int_eq(pthread_create(&fk->thread, NULL, fake_main, fk), 0);
}

/* A FAKE_RAW server answering every request with the `len` bytes of raw
 * (which must outlive it). */
static void fake_start_raw(struct fake *fk, const char *raw, size_t len) {
  memset(fk, 0, sizeof *fk);
  fk->kind = FAKE_RAW;
  fk->raw = raw;
  fk->raw_len = len;
  fk->fd = tu_listen_local(&fk->port, 1);
  ck_assert_int_eq(pthread_create(&fk->thread, NULL, fake_main, fk), 0);
}

static void fake_stop(struct fake *fk) {
  atomic_store(&fk->stop, 1);
  pthread_join(fk->thread, NULL);
  for (int i = 0; i < fk->nheld; i++)
    close(fk->held[i]);
  close(fk->fd);
}

/* ------------------------------------------------- our own HTTP client */

/* Checks that each *.gif in dir is what the server serves for it, and that
 * nothing else is there; returns the number of flags. */
static int check_against_server(const char *dir) {
  DIR *d = opendir(dir);
  struct dirent *e;
  int n = 0;

  ck_assert_msg(d != NULL, "no output directory %s", dir);
  while ((e = readdir(d)) != NULL) {
    char path[600], url[64], *got;
    struct tu_resp want;
    size_t glen;
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
      continue;
    ck_assert_msg(strlen(e->d_name) == 6 && !strcmp(e->d_name + 2, ".gif"),
                  "unexpected file %s in %s", e->d_name, dir);
    snprintf(url, sizeof url, "/flags/%.2s/%.2s.gif", e->d_name, e->d_name);
    tu_fetch(srv.port, "GET", url, &want);
    ck_assert_int_eq(want.status, 200);
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    got = tu_read_file(path, &glen);
    ck_assert_msg(got && glen == want.body_len &&
                      memcmp(got, want.body, glen) == 0,
                  "%s differs from what the server serves (%zu vs %zu bytes)",
                  path, glen, want.body_len);
    free(want.body);
    free(got);
    n++;
  }
  closedir(d);
  return n;
}

static const char *const modes[] = {"sequential", "threads", "processes",
                                    "async"};

/* ---------------------------------------------------------------- tests */

/* Every mode downloads all 194 flags, byte-identical to the server's. */
START_TEST(test_modes_download_identical) {
  char dir[300];
  struct tu_run r;

  server_start(NULL);
  path_in(dir, sizeof dir, modes[_i]);
  run_flags(&r, NULL, "--mode", modes[_i], "-a", "-s", srv.url, "-o", dir,
            NULL);
  ASSERT_RUN(&r, r.status == 0);
  ASSERT_RUN(&r, strstr(r.out, "Searching for 194 flags: from AD to ZW\n"));
  ASSERT_RUN(&r, report_count(r.out, " flags downloaded.") == 194);
  ASSERT_RUN(&r, !strstr(r.out, "not found") && !strstr(r.out, "error"));
  ck_assert_int_eq(check_against_server(dir), 194);
  tu_run_free(&r);
}
END_TEST

/* Without CC, the 20 most populous, into downloaded/ (created) in the
 * working directory; the concurrency line is min(m, codes). */
START_TEST(test_default_codes) {
  char dir[300];
  struct tu_run r;
  int gifs, others;

  server_start(NULL);
  run_flags(&r, NULL, "-s", srv.url, NULL);
  ASSERT_RUN(&r, r.status == 0);
  ASSERT_RUN(&r, strstr(r.out, "CUSTOM site: ") || strstr(r.out, " site: "));
  ASSERT_RUN(&r, strstr(r.out, "Searching for 20 flags: from BD to VN\n"));
  ASSERT_RUN(&r, strstr(r.out, "\n20 concurrent connections will be used.\n"));
  ASSERT_RUN(&r, strstr(r.out, "\n--------------------\n 20 flags "
                               "downloaded.\nElapsed time: "));
  path_in(dir, sizeof dir, "downloaded");
  list_dir(dir, &gifs, &others);
  ck_assert_int_eq(gifs, 20);
  ck_assert_int_eq(others, 0);
  ck_assert_int_eq(access(strcat(dir, "/br.gif"), R_OK), 0);
  tu_run_free(&r);
}
END_TEST

/* -e asks for all 676 codes: 194 found, 482 not found, exit 0; the
 * server agrees on every count. */
START_TEST(test_every_not_found) {
  char dir[300];
  struct tu_run r;
  long total, ok, nf, errs;

  server_start(NULL);
  path_in(dir, sizeof dir, "out");
  run_flags(&r, NULL, "--mode", modes[_i], "-e", "-m", "20", "-s", srv.url,
            "-o", dir, NULL);
  ASSERT_RUN(&r, r.status == 0);
  ASSERT_RUN(&r, strstr(r.out, "Searching for 676 flags: from AA to ZZ\n"));
  ASSERT_RUN(&r, report_count(r.out, " flags downloaded.") == 194);
  ASSERT_RUN(&r, report_count(r.out, " not found.") == 676 - 194);
  ASSERT_RUN(&r, !strstr(r.out, "error"));
  server_stop(&total, &ok, &nf, &errs);
  ck_assert_int_eq(total, 676);
  ck_assert_int_eq(ok, 194);
  ck_assert_int_eq(nf, 482);
  ck_assert_int_eq(errs, 0);
  tu_run_free(&r);
}
END_TEST

/* Number of the 194 codes starting with `letter`. */
static int codes_starting(char letter) {
  int n = 0;
  for (int i = 0; i < COUNTRY_CODE_COUNT; i++)
    n += country_codes[i][0] == letter;
  return n;
}

/* Letters, codes, -a and -l expand and sort as the classic scripts do. */
START_TEST(test_expansion) {
  char dir[300], want[128];
  struct tu_run r;

  server_start(NULL);
  path_in(dir, sizeof dir, "out");

  run_flags(&r, NULL, "-s", srv.url, "-o", dir, "z", "B", NULL);
  ASSERT_RUN(&r, strstr(r.out, "Searching for 52 flags: from BA to ZZ\n"));
  ASSERT_RUN(&r, report_count(r.out, " downloaded.") ==
                     codes_starting('B') + codes_starting('Z'));
  ASSERT_RUN(&r, report_count(r.out, " not found.") ==
                     52 - codes_starting('B') - codes_starting('Z'));
  tu_run_free(&r);

  run_flags(&r, NULL, "-s", srv.url, "-o", dir, "-a", "-l", "5", NULL);
  ASSERT_RUN(&r, strstr(r.out, "Searching for 5 flags: AD, AE, AF, AG, AL\n"));
  ASSERT_RUN(&r, strstr(r.out, "\n5 concurrent connections will be used.\n"));
  ASSERT_RUN(&r, report_count(r.out, " downloaded.") == 5);
  tu_run_free(&r);

  run_flags(&r, NULL, "-s", srv.url, "-o", dir, "-e", "-l", "30", NULL);
  ASSERT_RUN(&r, strstr(r.out, "Searching for 30 flags: from AA to BD\n"));
  tu_run_free(&r);

  run_flags(&r, NULL, "-s", srv.url, "-o", dir, "-l", "3", NULL);
  ASSERT_RUN(&r, strstr(r.out, "Searching for 3 flags: BD, BR, CD\n"));
  tu_run_free(&r);

  run_flags(&r, NULL, "-s", srv.url, "-o", dir, "us", "US", "-m", "4", NULL);
  ASSERT_RUN(&r, r.status == 0);
  ASSERT_RUN(&r, strstr(r.out, "Searching for 1 flag: US\n"));
  ASSERT_RUN(&r, strstr(r.out, "\n1 connection will be used.\n"));
  ASSERT_RUN(&r, strstr(r.out, "\n  1 flag downloaded.\n"));
  tu_run_free(&r);

  snprintf(want, sizeof want, "Searching for %d flags: from AA to AZ\n", 26);
  run_flags(&r, NULL, "-s", srv.url, "-o", dir, "-v", "a", NULL);
  ASSERT_RUN(&r, strstr(r.out, want));
  ASSERT_RUN(&r, strstr(r.out, "\nAD OK\n") && strstr(r.out, "\nAA not found"));
  ASSERT_RUN(&r, count_lines(r.out, " OK\n") == codes_starting('A'));
  ASSERT_RUN(&r, !strstr(r.err, "|"));
  tu_run_free(&r);
}
END_TEST

/* --simple prints the codes on one line and "N downloads in T s". */
START_TEST(test_simple_output) {
  char dir[300];
  struct tu_run r;

  server_start(NULL);
  path_in(dir, sizeof dir, "out");
  run_flags(&r, NULL, "--simple", "--mode", "async", "-s", srv.url, "-o", dir,
            NULL);
  ASSERT_RUN(&r, r.status == 0);
  ASSERT_RUN(&r, strstr(r.out, "BR ") && strstr(r.out, "CN "));
  ASSERT_RUN(&r, strstr(r.out, "\n20 downloads in "));
  ASSERT_RUN(&r, !strstr(r.out, "Searching"));
  tu_run_free(&r);
}
END_TEST

/* --error-rate 1: every request is a 418, each an error, exit 1. */
START_TEST(test_all_errors) {
  char dir[300];
  struct tu_run r;
  int gifs, others;

  server_start("--error-rate", "1", NULL);
  path_in(dir, sizeof dir, "out");
  run_flags(&r, NULL, "--mode", modes[_i], "-v", "-s", srv.url, "-o", dir,
            NULL);
  ASSERT_RUN(&r, r.status == 1);
  ASSERT_RUN(&r, report_count(r.out, " errors.") == 20);
  ASSERT_RUN(&r, report_count(r.out, " downloaded.") == 0);
  ASSERT_RUN(
      &r, count_lines(r.out, " error: HTTP error 418 - I'm a Teapot\n") == 20);
  list_dir(dir, &gifs, &others);
  ck_assert_int_eq(gifs + others, 0);
  tu_run_free(&r);
}
END_TEST

/* --error-rate 0.5: the counts match the server's own exactly. */
START_TEST(test_half_errors_match_server) {
  char dir[300];
  struct tu_run r;
  long total, ok, nf, errs;

  server_start("--error-rate", "0.5", NULL);
  path_in(dir, sizeof dir, "out");
  run_flags(&r, NULL, "--mode", modes[_i], "-e", "-s", srv.url, "-o", dir,
            NULL);
  server_stop(&total, &ok, &nf, &errs);
  ASSERT_RUN(&r, r.status == 1);
  ck_assert_int_eq(total, 676);
  ck_assert_int_gt(errs, 0);
  ASSERT_RUN(&r, report_count(r.out, " errors.") == errs);
  ASSERT_RUN(&r, report_count(r.out, " downloaded.") == ok);
  ASSERT_RUN(&r, report_count(r.out, " not found.") == nf);
  tu_run_free(&r);
}
END_TEST

/* A body cut short (Content-Length 1000, 10 bytes sent) is an error and
 * leaves no file, not even a temporary one. */
START_TEST(test_truncated_body) {
  char dir[300], url[64];
  struct fake fk;
  struct tu_run r;
  int gifs, others;

  fake_start(&fk, FAKE_TRUNCATED);
  snprintf(url, sizeof url, "http://127.0.0.1:%d/flags", fk.port);
  path_in(dir, sizeof dir, "out");
  run_flags(&r, NULL, "--mode", modes[_i], "-v", "-s", url, "-o", dir, "BR",
            "US", "CN", NULL);
  fake_stop(&fk);
  ASSERT_RUN(&r, r.status == 1);
  ASSERT_RUN(&r, report_count(r.out, " errors.") == 3);
  ASSERT_RUN(&r, count_lines(r.out, " error: ") == 3);
  list_dir(dir, &gifs, &others);
  ck_assert_int_eq(gifs, 0);
  ck_assert_int_eq(others, 0);
  tu_run_free(&r);
}
END_TEST

/* Over-size bodies, announced or not, are errors and leave no file. */
START_TEST(test_oversize_body) {
  enum fake_kind kinds[] = {FAKE_BIG_LENGTH, FAKE_BIG_STREAM};
  char dir[300], url[64];
  struct fake fk;
  struct tu_run r;
  int gifs, others;

  path_in(dir, sizeof dir, "out");
  for (int k = 0; k < 2; k++) {
    fake_start(&fk, kinds[k]);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/flags", fk.port);
    run_flags(&r, NULL, "--mode", modes[_i], "-v", "-s", url, "-o", dir, "BR",
              NULL);
    fake_stop(&fk);
    ASSERT_RUN(&r, r.status == 1);
    ASSERT_RUN(&r, report_count(r.out, " error.") == 1);
    ASSERT_RUN(&r, strstr(r.out, "BR error: response body larger than 1 MiB"));
    list_dir(dir, &gifs, &others);
    ck_assert_int_eq(gifs + others, 0);
    tu_run_free(&r);
  }
}
END_TEST

/* A refused connection is an error for each code; exit 1. */
START_TEST(test_refused) {
  char dir[300], url[64];
  struct tu_run r;
  int port, fd = tu_listen_local(&port, 0);

  snprintf(url, sizeof url, "http://127.0.0.1:%d/flags", port);
  path_in(dir, sizeof dir, "out");
  run_flags(&r, NULL, "--mode", modes[_i], "-s", url, "-o", dir, "A", NULL);
  close(fd);
  ASSERT_RUN(&r, r.status == 1);
  ASSERT_RUN(&r, report_count(r.out, " errors.") == 26);
  ASSERT_RUN(&r, report_count(r.out, " downloaded.") == 0);
  tu_run_free(&r);
}
END_TEST

/* A server that never answers: each download fails after --timeout. */
START_TEST(test_timeout) {
  char dir[300], url[64];
  struct fake fk;
  struct tu_run r;

  fake_start(&fk, FAKE_SILENT);
  snprintf(url, sizeof url, "http://127.0.0.1:%d/flags", fk.port);
  path_in(dir, sizeof dir, "out");
  run_flags(&r, NULL, "--mode", modes[_i], "--timeout", "0.5", "-m", "4", "-v",
            "-s", url, "-o", dir, "BR", "US", "CN", "IN", NULL);
  fake_stop(&fk);
  ASSERT_RUN(&r, r.status == 1);
  ASSERT_RUN(&r, report_count(r.out, " errors.") == 4);
  ASSERT_RUN(&r, r.wall < 5.0);
  tu_run_free(&r);
}
END_TEST

/* A server delay of 0.5 s does not serialise the downloads: 20 flags with
 * -m 20 take about 0.5 s, far less than 20 x 0.5 s. */
START_TEST(test_delay_concurrent) {
  static const char *const concurrent[] = {"threads", "processes", "async"};
  char dir[300];
  struct tu_run r;

  server_start("--delay", "0.5", NULL);
  path_in(dir, sizeof dir, "out");
  run_flags(&r, NULL, "--mode", concurrent[_i], "-m", "20", "-s", srv.url, "-o",
            dir, NULL);
  ASSERT_RUN(&r, r.status == 0);
  ASSERT_RUN(&r, report_count(r.out, " downloaded.") == 20);
  ASSERT_RUN(&r, r.wall >= 0.5 && r.wall < 5.0);
  tu_run_free(&r);
}
END_TEST

/* A 1x1 GIF, and the same gzip-compressed. */
static const unsigned char tiny_gif[] = {
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80,
    0x00, 0x00, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x21, 0xf9, 0x04,
    0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00, 0x01,
    0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b};
static const unsigned char tiny_gif_gz[] = {
    0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0x73, 0xf7,
    0x74, 0xb3, 0xb0, 0x4c, 0x64, 0x64, 0x60, 0x64, 0x68, 0x60, 0x60, 0xf8,
    0xff, 0xff, 0x3f, 0x03, 0x03, 0x83, 0xe2, 0x4f, 0x16, 0x46, 0x20, 0xc5,
    0xa0, 0x03, 0x22, 0x40, 0x32, 0x0c, 0x4c, 0x4c, 0x2e, 0x8c, 0x0c, 0xd6,
    0x00, 0xb1, 0xea, 0xcc, 0x9a, 0x2b, 0x00, 0x00, 0x00};

/* Runs flags -v for BR in mode modes[m] into `dir` against a FAKE_RAW
 * server that answers with the `len` bytes of `answer`. */
static void run_against_raw(struct tu_run *r, int m, const char *dir,
                            const char *answer, size_t len) {
  struct fake fk;
  char url[64];

  fake_start_raw(&fk, answer, len);
  snprintf(url, sizeof url, "http://127.0.0.1:%d/flags", fk.port);
  run_flags(r, NULL, "--mode", modes[m], "-v", "-s", url, "-o", dir, "BR",
            NULL);
  fake_stop(&fk);
}

/* A 200 whose body is no flag (an HTML page, nothing, a GIF type over
 * HTML) is an error that leaves the flag already there alone. */
START_TEST(test_body_not_gif) {
  static const char *const answers[] = {
      "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 28\r\n"
      "Connection: close\r\n\r\n<html>Captive portal</html>\n",
      "HTTP/1.1 200 OK\r\nContent-Type: image/gif\r\nContent-Length: 0\r\n"
      "Connection: close\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 16\r\nConnection: close\r\n\r\n"
      "<!DOCTYPE html>\n",
      "HTTP/1.1 200 OK\r\nContent-Type: image/gif\r\nContent-Length: 16\r\n"
      "Connection: close\r\n\r\n<!DOCTYPE html>\n",
      "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n"
      "Connection: close\r\n\r\nGIF89a"};
  static const char old[] = "GIF89a the good flag";
  char dir[300], path[400], *kept;
  struct tu_run r;
  int gifs, others;

  path_in(dir, sizeof dir, "out");
  ck_assert_int_eq(mkdir(dir, 0700), 0);
  snprintf(path, sizeof path, "%s/br.gif", dir);
  for (size_t i = 0; i < sizeof answers / sizeof *answers; i++) {
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(old, f);
    fclose(f);
    run_against_raw(&r, _i, dir, answers[i], strlen(answers[i]));
    ASSERT_RUN(&r, r.status == 1);
    ASSERT_RUN(&r, report_count(r.out, " error.") == 1);
    ASSERT_RUN(&r, report_count(r.out, " downloaded.") == 0);
    ASSERT_RUN(&r, strstr(r.out, "BR error: not a GIF image"));
    kept = tu_read_file(path, NULL);
    ck_assert_msg(kept && !strcmp(kept, old), "answer %zu replaced br.gif", i);
    free(kept);
    list_dir(dir, &gifs, &others);
    ck_assert_int_eq(gifs, 1);
    ck_assert_int_eq(others, 0);
    tu_run_free(&r);
  }
}
END_TEST

/* A gzip body the client did not ask for is decoded, not saved as is. */
START_TEST(test_body_gzip_unasked) {
  static char answer[512];
  char dir[300], path[400], *got;
  struct tu_run r;
  size_t len;
  int n = snprintf(answer, sizeof answer,
                   "HTTP/1.1 200 OK\r\nContent-Type: image/gif\r\n"
                   "Content-Encoding: gzip\r\nContent-Length: %zu\r\n"
                   "Connection: close\r\n\r\n",
                   sizeof tiny_gif_gz);

  memcpy(answer + n, tiny_gif_gz, sizeof tiny_gif_gz);
  path_in(dir, sizeof dir, "out");
  run_against_raw(&r, _i, dir, answer, (size_t)n + sizeof tiny_gif_gz);
  ASSERT_RUN(&r, r.status == 0);
  ASSERT_RUN(&r, strstr(r.out, "BR OK\n"));
  snprintf(path, sizeof path, "%s/br.gif", dir);
  got = tu_read_file(path, &len);
  ck_assert_ptr_nonnull(got);
  ck_assert_msg(len == sizeof tiny_gif && !memcmp(got, tiny_gif, len),
                "br.gif holds %zu bytes, not the 43 of the decoded GIF", len);
  free(got);
  tu_run_free(&r);
}
END_TEST

/* A reason phrase with terminal escapes is shown masked. */
START_TEST(test_reason_masked) {
  static const char answer[] =
      "HTTP/1.1 499 Evil\033[2J\033]0;owned\007\r\nContent-Length: 0\r\n"
      "Connection: close\r\n\r\n";
  char dir[300];
  struct tu_run r;

  path_in(dir, sizeof dir, "out");
  run_against_raw(&r, _i, dir, answer, sizeof answer - 1);
  ASSERT_RUN(&r, r.status == 1);
  ASSERT_RUN(&r, strstr(r.out, "BR error: HTTP error 499 - Evil?[2J"));
  ASSERT_RUN(&r, !strchr(r.out, '\033') && !strchr(r.out, '\007'));
  ASSERT_RUN(&r, !strchr(r.err, '\033') && !strchr(r.err, '\007'));
  tu_run_free(&r);
}
END_TEST

/* A redirect to ftp:// is not followed: the ftp port is never dialled. */
START_TEST(test_redirect_ftp_refused) {
  static char answer[256];
  char dir[300];
  struct tu_run r;
  struct pollfd p;
  int ftp_port, ftp = tu_listen_local(&ftp_port, 1);

  snprintf(answer, sizeof answer,
           "HTTP/1.1 302 Found\r\nLocation: ftp://127.0.0.1:%d/br.gif\r\n"
           "Content-Length: 0\r\nConnection: close\r\n\r\n",
           ftp_port);
  path_in(dir, sizeof dir, "out");
  run_against_raw(&r, _i, dir, answer, strlen(answer));
  p = (struct pollfd){ftp, POLLIN, 0};
  ck_assert_msg(poll(&p, 1, 0) == 0, "flags followed the redirect to ftp://");
  close(ftp);
  ASSERT_RUN(&r, r.status == 1);
  ASSERT_RUN(&r, report_count(r.out, " error.") == 1);
  tu_run_free(&r);
}
END_TEST

/* A 404 into a folder where no file can be made is still a 404. */
START_TEST(test_not_found_unwritable_dir) {
  static const char answer[] = "HTTP/1.1 404 Not Found\r\nContent-Length: 0"
                               "\r\nConnection: close\r\n\r\n";
  struct tu_run r;

  /* /proc takes no new files, even from root, who ignores chmod. */
  run_against_raw(&r, _i, "/proc", answer, sizeof answer - 1);
  ASSERT_RUN(&r, r.status == 0);
  ASSERT_RUN(&r, report_count(r.out, " not found.") == 1);
  ASSERT_RUN(&r, strstr(r.out, "BR not found: "));
  ASSERT_RUN(&r, !strstr(r.out, "temporary"));
  tu_run_free(&r);
}
END_TEST

/* The classic scripts' words: -v names the URL not found; one connection
 * is "1 connection", and sequential announces the one it uses. */
START_TEST(test_classic_wording) {
  char dir[300], want[200];
  struct tu_run r;

  server_start(NULL);
  path_in(dir, sizeof dir, "out");
  run_flags(&r, NULL, "-v", "-s", srv.url, "-o", dir, "AA", "BR", NULL);
  ASSERT_RUN(&r, r.status == 0);
  snprintf(want, sizeof want, "\nAA not found: %s/aa/aa.gif\n", srv.url);
  ASSERT_RUN(&r, strstr(r.out, want));
  tu_run_free(&r);

  run_flags(&r, NULL, "-s", srv.url, "-o", dir, "BR", NULL);
  ASSERT_RUN(&r, strstr(r.out, "\n1 connection will be used.\n"));
  tu_run_free(&r);

  run_flags(&r, NULL, "--mode", "sequential", "-m", "5", "-s", srv.url, "-o",
            dir, NULL);
  ASSERT_RUN(&r, r.status == 0);
  ASSERT_RUN(&r, strstr(r.out, "\n1 connection will be used.\n"));
  tu_run_free(&r);
}
END_TEST

/* `sig` stops mode modes[m] quickly with status 128 + sig, leaves no
 * partial or temporary file and, in processes mode, no worker. */
static void expect_stop_by(int m, int sig) {
  char *argv[MAX_ARGS] = {FLAGS_PATH, "--mode", (char *)modes[m], "-a", "-m",
                          "10",       "-s",     srv.url,          "-o", NULL,
                          NULL};
  char dir[300], out[300], err[300];
  pid_t pid, kids[64];
  int nkids, gifs, others, status;
  double t0;

  need_binary(FLAGS_PATH, "flags");
  server_start("--delay", "1", NULL);
  path_in(dir, sizeof dir, "out");
  path_in(out, sizeof out, "flags.out");
  path_in(err, sizeof err, "flags.err");
  argv[9] = dir;
  pid = spawn(argv, out, err, tmpdir);
  sleep_s(1.5);
  nkids = tu_descendants_of(pid, kids, 64);
  if (m == 2)
    ck_assert_int_eq(nkids, 11); /* 10 workers and their spawner */
  t0 = tu_now();
  kill(pid, sig);
  status = tu_wait(pid, 10);
  ck_assert_msg(status == 128 + sig, "exit status %d after %s, not %d", status,
                strsignal(sig), 128 + sig);
  ck_assert_msg(tu_now() - t0 < 3.0, "took %.2f s to stop", tu_now() - t0);
  sleep_s(0.2);
  for (int i = 0; i < nkids; i++)
    ck_assert_msg(kill(kids[i], 0) < 0 && errno == ESRCH,
                  "worker %d outlived flags", kids[i]);
  list_dir(dir, &gifs, &others);
  ck_assert_msg(others == 0, "%d temporary files left", others);
  ck_assert_int_lt(gifs, 194);
}

START_TEST(test_sigint) {
  expect_stop_by(_i, SIGINT);
}
END_TEST

START_TEST(test_sigterm_sighup) {
  expect_stop_by(_i, SIGTERM);
  teardown_dir();
  setup_dir();
  expect_stop_by(_i, SIGHUP);
}
END_TEST

/* Sets the size of the terminal whose master side is `master`. */
static void set_columns(int master, int cols) {
  struct winsize ws = {.ws_row = 24, .ws_col = (unsigned short)cols};
  ck_assert_int_eq(ioctl(master, TIOCSWINSZ, &ws), 0);
}

/* Appends what the pseudo-terminal holds to text (len bytes so far, room
 * for cap). */
static void drain_pty(int master, char *text, size_t *len, size_t cap) {
  struct pollfd p = {master, POLLIN, 0};
  while (*len < cap - 1 && poll(&p, 1, 0) > 0) {
    ssize_t n = read(master, text + *len, cap - 1 - *len);
    if (n <= 0)
      break;
    *len += (size_t)n;
  }
  text[*len] = '\0';
}

/* The last of the `\r`-separated bars of text that starts before `end`,
 * copied into out; its length, or -1 if there is none. */
static int bar_before(const char *text, const char *end, char *out,
                      size_t size) {
  const char *bar = NULL;
  for (const char *p = text; (p = strchr(p, '\r')) && p < end; p++)
    if (strstr(p, "%|") || strstr(p, "% "))
      bar = p + 1;
  if (!bar)
    return -1;
  size_t n = strcspn(bar, "\r\n");
  snprintf(out, size, "%.*s", (int)n, bar);
  while (n > 0 && out[n - 1] == ' ') /* blanks over a longer line */
    out[--n] = '\0';
  return (int)n;
}

/* On a terminal the bar fits its width and follows a resize (SIGWINCH),
 * and shows seconds per item when items are slow, as tqdm does. */
START_TEST(test_progress_bar_fits) {
  char *argv[] = {FLAGS_PATH, "--mode", "sequential", "-s", srv.url, "-o",
                  NULL,       "BR",     "CN",         "US", NULL};
  static char text[16384];
  char dir[300], out[300], first[256], last[256], *mark;
  size_t len = 0;
  int master, slave, status, wide, narrow;
  pid_t pid;

  need_binary(FLAGS_PATH, "flags");
  server_start("--delay", "1.1", NULL);
  path_in(dir, sizeof dir, "out");
  path_in(out, sizeof out, "flags.out");
  argv[6] = dir;
  master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  ck_assert_int_ge(master, 0);
  ck_assert(grantpt(master) == 0 && unlockpt(master) == 0);
  slave = open(ptsname(master), O_RDWR | O_NOCTTY | O_CLOEXEC);
  ck_assert_int_ge(slave, 0);
  set_columns(master, 50);
  int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  pid = tu_spawn(argv, -1, fo, slave, tmpdir);
  close(fo);
  for (double t0 = tu_now(); tu_now() - t0 < 1.6; sleep_s(0.05))
    drain_pty(master, text, &len, sizeof text);
  mark = text + len;
  set_columns(master, 30);
  kill(pid, SIGWINCH);
  status = tu_wait(pid, 30);
  drain_pty(master, text, &len, sizeof text);
  close(slave);
  close(master);
  ck_assert_msg(status == 0, "flags exited %d", status);
  wide = bar_before(text, mark, first, sizeof first);
  narrow = bar_before(text, text + len, last, sizeof last);
  ck_assert_msg(wide > 30 && wide <= 49, "bar at 50 columns: '%s'", first);
  ck_assert_msg(narrow > 0 && narrow <= 29, "bar at 30 columns: '%s'", last);
  ck_assert_msg(strstr(last, "s/it"), "no seconds per item: '%s'", last);
  ck_assert_msg(strstr(last, "3/3"), "last bar not at 3/3: '%s'", last);
}
END_TEST

/* Usage errors: the usage line, then the classic message; exit 2. */
START_TEST(test_usage_errors) {
  static const char *const cases[][3] = {
      {"-m", "0",
       "*** Usage error: Invalid CONCURRENT value: 0 (must be 1 <= "
       "CONCURRENT <= 1000)"},
      {"-m", "1001", "*** Usage error: Invalid CONCURRENT value: 1001"},
      {"-m", "x", "*** Usage error: Invalid CONCURRENT value: x"},
      {"-l", "0", "*** Usage error: Invalid LIMIT value: 0"},
      {"-l", "-3", "*** Usage error: Invalid LIMIT value: -3"},
      {"-s", "NOWHERE", "*** Usage error: Invalid SERVER: NOWHERE"},
      {"-s", "ftp://x/flags", "*** Usage error: Invalid SERVER: ftp://x"},
      {"ABC", NULL,
       "*** Usage error: each CC argument must be A to Z or AA to ZZ."},
      {"B1", NULL, "*** Usage error: each CC argument must be A to Z or AA"},
      {"../", NULL, "*** Usage error: each CC argument must be A to Z or AA"},
      {"--mode", "fibers", "*** Usage error: Invalid MODE: fibers"},
      {"--timeout", "0", "*** Usage error: Invalid TIMEOUT value: 0"},
      {"--timeout", "1e9",
       "*** Usage error: Invalid TIMEOUT value: 1e9 (must be > 0 and <= "
       "86400 seconds)"},
      {"-s", "http://", "*** Usage error: Invalid SERVER: http:// (not a URL"},
      {"-x", NULL, "*** Usage error: "},
  };
  struct tu_run r;

  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    run_flags(&r, NULL, cases[i][0], cases[i][1], NULL);
    ASSERT_RUN(&r, r.status == 2);
    ASSERT_RUN(&r, strncmp(r.err,
                           "usage: flags [-h] [-a] [-e] [-l N] [-m "
                           "CONCURRENT] [-s LABEL] [-v]",
                           60) == 0);
    ASSERT_RUN(&r, strstr(r.err, cases[i][2]) != NULL);
    ASSERT_RUN(&r, r.out[0] == '\0');
    tu_run_free(&r);
  }
  run_flags(&r, NULL, "--help", NULL);
  ASSERT_RUN(&r, r.status == 0 && strstr(r.out, "usage: flags") &&
                     strstr(r.out, "--mode"));
  tu_run_free(&r);
}
END_TEST

static Suite *make_flags_suite(void) {
  Suite *s = suite_create("flags");
  struct {
    const char *name;
    const TTest *test;
    int from, to, timeout;
  } cases[] = {
      {"modes", test_modes_download_identical, 0, 4, 120},
      {"default", test_default_codes, 0, 1, 60},
      {"every", test_every_not_found, 0, 4, 120},
      {"expansion", test_expansion, 0, 1, 120},
      {"simple", test_simple_output, 0, 1, 60},
      {"all_errors", test_all_errors, 0, 4, 60},
      {"half_errors", test_half_errors_match_server, 0, 4, 120},
      {"truncated", test_truncated_body, 0, 4, 60},
      {"oversize", test_oversize_body, 0, 4, 60},
      {"refused", test_refused, 0, 4, 60},
      {"timeout", test_timeout, 0, 4, 60},
      {"delay", test_delay_concurrent, 0, 3, 60},
      {"sigint", test_sigint, 0, 4, 60},
      {"sigterm_sighup", test_sigterm_sighup, 0, 4, 60},
      {"body_not_gif", test_body_not_gif, 0, 4, 60},
      {"body_gzip", test_body_gzip_unasked, 0, 4, 60},
      {"reason_masked", test_reason_masked, 0, 4, 60},
      {"redirect_ftp", test_redirect_ftp_refused, 0, 4, 60},
      {"not_found_unwritable", test_not_found_unwritable_dir, 0, 4, 60},
      {"classic_wording", test_classic_wording, 0, 1, 60},
      {"progress_bar", test_progress_bar_fits, 0, 1, 60},
      {"usage", test_usage_errors, 0, 1, 60},
  };

  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    TCase *tc = tcase_create(cases[i].name);
    tcase_add_unchecked_fixture(tc, setup_case, teardown_case);
    tcase_add_checked_fixture(tc, setup_dir, teardown_dir);
    tcase_set_timeout(tc, cases[i].timeout);
    tcase_add_loop_test(tc, cases[i].test, cases[i].from, cases[i].to);
    suite_add_tcase(s, tc);
  }
  return s;
}

TU_MAIN(make_flags_suite)
