/*
 * flagserver from the outside: each test starts the built binary with
 * --port 0 in a child, learns the port from its first stdout line, talks
 * HTTP/1.1 over plain sockets (toolutil's small client; no libcurl), and kills
 * and reaps the server in teardown. A server also dies with its test
 * process (PR_SET_PDEATHSIG), so a failed or timed-out test leaves none.
 * Ports 8000-8002 are never used; --labels runs with --port 0.
 */
#include "testutil.h"
#include "toolutil.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef FLAGSERVER_PATH
#error "FLAGSERVER_PATH must name the flagserver binary"
#endif

#define SHARED_FLAGS_DIR "/work/shared/flags"
#define MAX_PROCS 4
#define MAX_ARGS 16

Suite *make_flagserver_suite(void);

/* A running (or exited) flagserver. */
struct proc {
  pid_t pid;   /* 0 once reaped */
  int out;     /* read end of its stdout */
  int err;     /* its stderr: an unlinked temp file */
  int port[3]; /* from its "Serving flags on" lines */
  int status;  /* wait status once reaped */
};

static struct proc procs[MAX_PROCS];
static int nprocs;

/* ---- server processes ---- */

/* Starts flagserver with args (NULL-terminated) without waiting for it;
 * `nofile`, when not 0, is its RLIMIT_NOFILE (soft and hard), set by a
 * shell that then execs the server. */
static struct proc *spawn_limited(const char *const *args, int nofile) {
  struct proc *p;
  char errpath[] = "/tmp/check_flagserver_XXXXXX", script[64];
  const char *argv[MAX_ARGS + 6];
  int fds[2], n = 0;

  ck_assert_int_lt(nprocs, MAX_PROCS);
  p = &procs[nprocs++];
  memset(p, 0, sizeof *p);
  snprintf(script, sizeof script, "ulimit -n %d && exec \"$0\" \"$@\"", nofile);
  if (nofile) {
    argv[n++] = "/bin/sh";
    argv[n++] = "-c";
    argv[n++] = script;
  }
  argv[n++] = FLAGSERVER_PATH;
  for (int i = 0; args[i]; i++) {
    ck_assert_int_lt(i, MAX_ARGS);
    argv[n++] = args[i];
  }
  argv[n] = NULL;
  ck_assert_int_eq(pipe2(fds, O_CLOEXEC), 0);
  p->err = mkstemp(errpath);
  ck_assert_int_ge(p->err, 0);
  unlink(errpath);
  p->pid = tu_spawn((char *const *)argv, -1, fds[1], p->err, NULL);
  close(fds[1]);
  p->out = fds[0];
  return p;
}

/* spawn_limited() with the inherited file limit. */
static struct proc *spawn(const char *const *args) {
  return spawn_limited(args, 0);
}

/* Reads one line of p's stdout into buf, waiting up to `secs`. Returns 0,
 * or -1 on EOF or timeout. */
static int read_line(struct proc *p, char *buf, size_t size, double secs) {
  double deadline = tu_now() + secs;
  size_t n = 0;
  while (n + 1 < size) {
    struct pollfd pfd = {p->out, POLLIN, 0};
    int left = (int)((deadline - tu_now()) * 1000);
    if (left <= 0 || poll(&pfd, 1, left) <= 0)
      return -1;
    if (read(p->out, buf + n, 1) != 1)
      return -1;
    if (buf[n] == '\n')
      break;
    n++;
  }
  buf[n] = 0;
  return 0;
}

static struct proc *start_limited(const char *const *args, int lines,
                                  int nofile);

/* Starts flagserver with args and waits for its `lines` port lines. */
static struct proc *start_n(const char *const *args, int lines) {
  return start_limited(args, lines, 0);
}

/* start_n() with RLIMIT_NOFILE `nofile` (0: inherited). */
static struct proc *start_limited(const char *const *args, int lines,
                                  int nofile) {
  struct proc *p = spawn_limited(args, nofile);
  for (int i = 0; i < lines; i++) {
    char line[256];
    ck_assert_msg(read_line(p, line, sizeof line, 30) == 0,
                  "flagserver printed no 'Serving flags on' line");
    ck_assert_msg(sscanf(line, "Serving flags on http://127.0.0.1:%d/flags",
                         &p->port[i]) == 1,
                  "unexpected first line: %s", line);
    ck_assert_int_gt(p->port[i], 0);
  }
  return p;
}

/* Starts a one-site flagserver on a free port with the extra args. */
static struct proc *start(const char *a1, const char *a2, const char *a3,
                          const char *a4) {
  const char *args[] = {"--port", "0", a1, a2, a3, a4, NULL};
  return start_n(args, 1);
}

/* Waits up to `secs` for p to exit; returns its wait status or -1. */
static int reap(struct proc *p, double secs) {
  double deadline = tu_now() + secs;
  while (p->pid) {
    pid_t r = waitpid(p->pid, &p->status, WNOHANG);
    if (r == p->pid) {
      p->pid = 0;
      break;
    }
    if (r < 0 && errno != EINTR)
      return -1;
    if (tu_now() > deadline)
      return -1;
    usleep(10000);
  }
  return p->status;
}

/* Sends sig to p and returns its exit code (-1 if it did not exit 0..255
 * within 10 s). */
static int stop(struct proc *p, int sig) {
  int st;
  ck_assert_int_ne(p->pid, 0);
  kill(p->pid, sig);
  st = reap(p, 10);
  return st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Everything p wrote to stderr, NUL-terminated, in a static buffer. */
static const char *stderr_of(struct proc *p) {
  static char text[65536];
  ssize_t n = pread(p->err, text, sizeof text - 1, 0);
  text[n > 0 ? n : 0] = 0;
  return text;
}

/* Checked teardown: kills and reaps every server of the test. */
static void teardown(void) {
  for (int i = 0; i < nprocs; i++) {
    struct proc *p = &procs[i];
    if (p->pid) {
      kill(p->pid, SIGKILL);
      reap(p, 10);
    }
    close(p->out);
    close(p->err);
  }
  nprocs = 0;
}

/* Checked setup: a closed socket must not kill the test. */
static void setup(void) {
  signal(SIGPIPE, SIG_IGN);
  nprocs = 0;
}

/* The status of GET path on a fresh connection. */
static int get_status(int port, const char *path) {
  struct tu_resp r;
  tu_fetch(port, "GET", path, &r);
  free(r.body);
  return r.status;
}

/* Checks that r is a complete GIF answer. */
static void assert_gif(const struct tu_resp *r) {
  ck_assert_int_eq(r->status, 200);
  ck_assert_str_eq(r->content_type, "image/gif");
  ck_assert_int_eq(r->content_length, (long)r->body_len);
  ck_assert_uint_ge(r->body_len, 6);
  ck_assert_msg(!memcmp(r->body, "GIF89a", 6) || !memcmp(r->body, "GIF87a", 6),
                "body does not start with a GIF signature");
}

/* ---- tests ---- */

START_TEST(test_get_flags) {
  static const char *const paths[] = {"/flags/br/br.gif", "/flags/us/us.gif",
                                      "/flags/jp/jp.gif", "/flags/zw/zw.gif"};
  struct proc *p = start(NULL, NULL, NULL, NULL);
  struct tu_client c;
  tu_client_open(&c, p->port[0]);
  for (size_t i = 0; i < 4; i++) {
    struct tu_resp r;
    tu_client_request(&c, "GET", paths[i], NULL, NULL);
    tu_client_response(&c, 0, &r);
    assert_gif(&r);
    free(r.body);
  }
  tu_client_close(&c);
}
END_TEST

START_TEST(test_generated_sizes_deterministic) {
  static const char *const codes[] = {
      "ad", "ae", "af", "ag", "al", "am", "ao", "ar", "at", "au", "az", "ba",
      "bb", "bd", "be", "bf", "bg", "bh", "bi", "bj", "bn", "bo", "br", "bs",
      "bt", "bw", "by", "bz", "ca", "cd", "cf", "cg", "ch", "ci", "cl", "cm",
      "cn", "co", "cr", "cu", "cv", "cy", "cz", "de", "dj", "dk", "dm", "dz",
      "ec", "ee", "eg", "er", "es", "et", "fi", "fj", "fm", "fr", "ga", "gb",
      "gd", "ge", "gh", "gm", "gn", "gq", "gr", "gt", "gw", "gy", "hn", "hr",
      "ht", "hu", "id", "ie", "il", "in", "iq", "ir", "is", "it", "jm", "jo",
      "jp", "ke", "kg", "kh", "ki", "km", "kn", "kp", "kr", "kw", "kz", "la",
      "lb", "lc", "li", "lk", "lr", "ls", "lt", "lu", "lv", "ly", "ma", "mc",
      "md", "me", "mg", "mh", "mk", "ml", "mm", "mn", "mr", "mt", "mu", "mv",
      "mw", "mx", "my", "mz", "na", "ne", "ng", "ni", "nl", "no", "np", "nr",
      "nz", "om", "pa", "pe", "pg", "ph", "pk", "pl", "pt", "pw", "py", "qa",
      "ro", "rs", "ru", "rw", "sa", "sb", "sc", "sd", "se", "sg", "si", "sk",
      "sl", "sm", "sn", "so", "sr", "ss", "st", "sv", "sy", "sz", "td", "tg",
      "th", "tj", "tl", "tm", "tn", "to", "tr", "tt", "tv", "tw", "tz", "ua",
      "ug", "us", "uy", "uz", "va", "vc", "ve", "vn", "vu", "ws", "ye", "za",
      "zm", "zw"};
  struct proc *a = start(NULL, NULL, NULL, NULL);
  struct proc *b = start(NULL, NULL, NULL, NULL);
  struct tu_client ca, cb;
  size_t distinct_sizes = 0, last = 0;

  ck_assert_uint_eq(sizeof codes / sizeof codes[0], 194);
  tu_client_open(&ca, a->port[0]);
  tu_client_open(&cb, b->port[0]);
  for (size_t i = 0; i < 194; i++) {
    char path[32];
    struct tu_resp ra, rb;
    snprintf(path, sizeof path, "/flags/%s/%s.gif", codes[i], codes[i]);
    tu_client_request(&ca, "GET", path, NULL, NULL);
    tu_client_request(&cb, "GET", path, NULL, NULL);
    tu_client_response(&ca, 0, &ra);
    tu_client_response(&cb, 0, &rb);
    assert_gif(&ra);
    ck_assert_msg(ra.body_len >= 1024 && ra.body_len <= 40 * 1024,
                  "%s is %zu bytes, not 1-40 KB", path, ra.body_len);
    ck_assert_msg(ra.body_len == rb.body_len &&
                      !memcmp(ra.body, rb.body, ra.body_len),
                  "%s differs between two servers", path);
    distinct_sizes += ra.body_len != last;
    last = ra.body_len;
    free(ra.body);
    free(rb.body);
  }
  ck_assert_uint_gt(distinct_sizes, 150);
  tu_client_close(&ca);
  tu_client_close(&cb);
}
END_TEST

START_TEST(test_head) {
  struct proc *p = start(NULL, NULL, NULL, NULL);
  struct tu_client c;
  struct tu_resp get, head, after;

  tu_client_open(&c, p->port[0]);
  tu_client_request(&c, "GET", "/flags/fr/fr.gif", NULL, NULL);
  tu_client_response(&c, 0, &get);
  assert_gif(&get);
  tu_client_request(&c, "HEAD", "/flags/fr/fr.gif", NULL, NULL);
  tu_client_response(&c, 1, &head);
  ck_assert_int_eq(head.status, 200);
  ck_assert_str_eq(head.content_type, "image/gif");
  ck_assert_int_eq(head.content_length, (long)get.body_len);
  /* Had HEAD sent a body, it would now be read as the next response. */
  tu_client_request(&c, "GET", "/flags/de/de.gif", NULL, NULL);
  tu_client_response(&c, 0, &after);
  assert_gif(&after);
  ck_assert_uint_eq(c.len, 0);
  free(get.body);
  free(after.body);
  tu_client_close(&c);
}
END_TEST

START_TEST(test_not_found) {
  static const char *const paths[] = {"/flags/xx/xx.gif",
                                      "/flags/BR/BR.gif",
                                      "/flags/br/us.gif",
                                      "/flags/br/br.png",
                                      "/flags/br/br.gif/",
                                      "/flags/br/",
                                      "/flags",
                                      "/",
                                      "/br/br.gif",
                                      "/flags/bra/bra.gif"};
  struct proc *p = start(NULL, NULL, NULL, NULL);
  for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
    int status = get_status(p->port[0], paths[i]);
    ck_assert_msg(status == 404, "%s gave %d", paths[i], status);
  }
}
END_TEST

START_TEST(test_method_not_allowed) {
  static const char *const methods[] = {"POST", "PUT", "DELETE", "OPTIONS"};
  struct proc *p = start(NULL, NULL, NULL, NULL);
  for (size_t i = 0; i < 4; i++) {
    struct tu_client c;
    struct tu_resp r;
    tu_client_open(&c, p->port[0]);
    tu_client_request(&c, methods[i], "/flags/br/br.gif",
                      "Connection: close\r\n", i == 0 ? "cc=br" : NULL);
    tu_client_response(&c, 0, &r);
    ck_assert_msg(r.status == 405, "%s gave %d", methods[i], r.status);
    ck_assert_str_eq(r.allow, "GET, HEAD");
    free(r.body);
    tu_client_close(&c);
  }
  ck_assert_int_eq(get_status(p->port[0], "/flags/br/br.gif"), 200);
}
END_TEST

START_TEST(test_traversal_refused) {
  char long_path[400] = "/flags/br/br.gif?";
  const char *const paths[] = {"/flags/../etc/passwd",
                               "/flags/%2e%2e/%2e%2e/etc/passwd",
                               "/flags/%2E%2E/%2E%2E/etc/passwd",
                               "//etc/passwd",
                               "/flags/br/..%2f..%2f..%2fetc%2fpasswd",
                               "/flags/br/br.gif%00.txt",
                               "/flags//br/br.gif",
                               "/flags/br\\..\\..\\etc\\passwd",
                               "etc/passwd",
                               long_path};
  struct proc *p = start(NULL, NULL, NULL, NULL);

  memset(long_path + strlen(long_path), 'a', 300);
  for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
    int status = get_status(p->port[0], paths[i]);
    ck_assert_msg(status >= 400 && status < 500, "%.40s gave %d", paths[i],
                  status);
    ck_assert_msg(status != 200, "%.40s was served", paths[i]);
  }
  ck_assert_int_eq(get_status(p->port[0], long_path), 414);
  ck_assert_int_eq(get_status(p->port[0], "/flags/../etc/passwd"), 400);
  ck_assert_int_eq(get_status(p->port[0], "/flags/br/br.gif"), 200);
}
END_TEST

/* Every GET is the classic teapot, "418 I'm a Teapot" (not MHD's
 * "Non-Standard Status"), after which the server closes the connection. */
START_TEST(test_error_rate_one) {
  struct proc *p = start("--error-rate", "1", "-v", NULL);
  for (int i = 0; i < 20; i++) {
    struct tu_client c;
    struct tu_resp r;
    tu_client_open(&c, p->port[0]);
    tu_client_request(&c, "GET", "/flags/br/br.gif", NULL, NULL);
    tu_client_response(&c, 0, &r);
    ck_assert_int_eq(r.status, 418);
    ck_assert_str_eq(r.reason, "I'm a Teapot");
    ck_assert_str_eq((char *)r.body, "I'm a Teapot\n");
    ck_assert_uint_eq(tu_client_fill_eof(&c), 1);
    free(r.body);
    tu_client_close(&c);
  }
  ck_assert_int_eq(stop(p, SIGTERM), 0);
  ck_assert_msg(!strstr(stderr_of(p), "error,"), "-v log: %s", stderr_of(p));
  ck_assert_ptr_nonnull(strstr(stderr_of(p), "GET /flags/br/br.gif 418"));
}
END_TEST

START_TEST(test_error_rate_quarter_and_summary) {
  struct proc *p = start("--error-rate", "0.25", NULL, NULL);
  struct tu_client c;
  int ok = 0, not_found = 0, teapots = 0, refused = 0, total = 0;
  int s_total, s_ok, s_not_found, s_teapots;
  const char *line;

  tu_client_open(&c, p->port[0]);
  for (int i = 0; i < 440; i++) {
    struct tu_resp r;
    const char *path = i % 11 == 10 ? "/flags/xx/xx.gif" : "/flags/ca/ca.gif";
    tu_client_request(&c, "GET", path, NULL, NULL);
    tu_client_response(&c, 0, &r);
    ok += r.status == 200;
    not_found += r.status == 404;
    teapots += r.status == 418;
    total++;
    free(r.body);
    if (r.status == 418) { /* the teapot closes the connection */
      tu_client_close(&c);
      tu_client_open(&c, p->port[0]);
    }
  }
  tu_client_close(&c);
  for (int i = 0; i < 3; i++, total++, refused++)
    ck_assert_int_eq(get_status(p->port[0], "/flags/../x"), 400);
  ck_assert_int_eq(ok + not_found + teapots + refused, total);
  ck_assert_msg(teapots >= 66 && teapots <= 154,
                "%d of 440 were 418, expected about 110", teapots);

  ck_assert_int_eq(stop(p, SIGTERM), 0);
  line = strstr(stderr_of(p), "served ");
  ck_assert_ptr_nonnull(line);
  ck_assert_int_eq(sscanf(line,
                          "served %d requests: %d ok, %d not found, "
                          "%d errors(418)",
                          &s_total, &s_ok, &s_not_found, &s_teapots),
                   4);
  ck_assert_int_eq(s_total, total);
  ck_assert_int_eq(s_ok, ok);
  ck_assert_int_eq(s_not_found, not_found);
  ck_assert_int_eq(s_teapots, teapots);
}
END_TEST

/* Sends GET br on `n` non-blocking connections at once and returns the
 * seconds until all n answers are in (each asserted 200). */
static double concurrent_gets(int port, int n) {
  static const char req[] = "GET /flags/br/br.gif HTTP/1.1\r\n"
                            "Host: 127.0.0.1\r\nConnection: close\r\n\r\n";
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)port),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  struct pollfd *pfd = calloc((size_t)n, sizeof *pfd);
  size_t *sent = calloc((size_t)n, sizeof *sent);
  char(*head)[16] = calloc((size_t)n, sizeof *head);
  size_t *got = calloc((size_t)n, sizeof *got);
  double t0 = tu_now(), deadline = t0 + 30;
  int left = n;

  ck_assert(pfd && sent && head && got);
  for (int i = 0; i < n; i++) {
    pfd[i].fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    ck_assert_int_ge(pfd[i].fd, 0);
    int rc = connect(pfd[i].fd, (struct sockaddr *)&sa, sizeof sa);
    ck_assert(rc == 0 || errno == EINPROGRESS);
    pfd[i].events = POLLOUT;
  }
  while (left > 0) {
    ck_assert_msg(tu_now() < deadline, "%d of %d answers missing", left, n);
    ck_assert_int_ge(poll(pfd, (nfds_t)n, 1000), 0);
    for (int i = 0; i < n; i++) {
      char buf[65536];
      ssize_t r;
      if (pfd[i].fd < 0 || !pfd[i].revents)
        continue;
      if (pfd[i].events == POLLOUT) {
        r = send(pfd[i].fd, req + sent[i], sizeof req - 1 - sent[i],
                 MSG_NOSIGNAL);
        ck_assert_msg(r > 0 || errno == EAGAIN, "send: %s", strerror(errno));
        sent[i] += r > 0 ? (size_t)r : 0;
        if (sent[i] == sizeof req - 1)
          pfd[i].events = POLLIN;
        continue;
      }
      r = recv(pfd[i].fd, buf, sizeof buf, 0);
      if (r < 0 && errno == EAGAIN)
        continue;
      ck_assert_msg(r >= 0, "recv: %s", strerror(errno));
      if (got[i] < sizeof head[i] - 1) {
        size_t k = sizeof head[i] - 1 - got[i];
        memcpy(head[i] + got[i], buf, (size_t)r < k ? (size_t)r : k);
      }
      got[i] += (size_t)r;
      if (r == 0) {
        ck_assert_msg(!strncmp(head[i], "HTTP/1.1 200", 12),
                      "connection %d got '%.12s'", i, head[i]);
        close(pfd[i].fd);
        pfd[i].fd = -1;
        left--;
      }
    }
  }
  free(pfd);
  free(sent);
  free(head);
  free(got);
  return tu_now() - t0;
}

START_TEST(test_delay_does_not_serialise) {
  struct proc *p = start("--delay", "1", NULL, NULL);
  double secs = concurrent_gets(p->port[0], 200);
  ck_assert_msg(secs >= 0.9, "200 delayed answers came in %.2f s", secs);
  ck_assert_msg(secs < 3.0, "200 answers delayed 1 s took %.2f s", secs);
}
END_TEST

START_TEST(test_delay_range) {
  struct proc *p = start("--delay", "0.2:0.4", NULL, NULL);
  for (int i = 0; i < 3; i++) {
    double t0 = tu_now(), secs;
    ck_assert_int_eq(get_status(p->port[0], "/flags/br/br.gif"), 200);
    secs = tu_now() - t0;
    ck_assert_msg(secs >= 0.19 && secs < 2.0, "answer took %.3f s", secs);
  }
}
END_TEST

/* Writes len bytes of data to path. */
static void write_file(const char *path, const void *data, size_t len) {
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  ck_assert_uint_eq(fwrite(data, 1, len, f), len);
  ck_assert_int_eq(fclose(f), 0);
}

/* Makes a temp folder with two fake flags (br, fr), an unlisted one (de)
 * and a country_codes.txt naming BR and FR; writes its path into dir. */
static void make_fake_dir(char *dir) {
  static const char *const codes[] = {"br", "fr", "de"};
  char path[256];
  ck_assert_ptr_nonnull(mkdtemp(dir));
  for (int i = 0; i < 3; i++) {
    char data[64];
    int n = snprintf(data, sizeof data, "GIF89a fake flag of %s\n", codes[i]);
    snprintf(path, sizeof path, "%s/%s", dir, codes[i]);
    ck_assert_int_eq(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/%s/%s.gif", dir, codes[i], codes[i]);
    write_file(path, data, (size_t)n);
  }
  snprintf(path, sizeof path, "%s/country_codes.txt", dir);
  write_file(path, "BR FR\n", 6);
}

/* Removes what make_fake_dir made. */
static void remove_fake_dir(const char *dir) {
  static const char *const codes[] = {"br", "fr", "de"};
  char path[256];
  for (int i = 0; i < 3; i++) {
    snprintf(path, sizeof path, "%s/%s/%s.gif", dir, codes[i], codes[i]);
    unlink(path);
    snprintf(path, sizeof path, "%s/%s", dir, codes[i]);
    rmdir(path);
  }
  snprintf(path, sizeof path, "%s/country_codes.txt", dir);
  unlink(path);
  rmdir(dir);
}

/* Checks that the server on port serves DIR/<cc>/<cc>.gif byte for byte. */
static void assert_serves_file(int port, const char *dir, const char *cc) {
  char path[512], url[32];
  FILE *f;
  long len;
  unsigned char *want;
  struct tu_resp r;

  snprintf(path, sizeof path, "%s/%s/%s.gif", dir, cc, cc);
  snprintf(url, sizeof url, "/flags/%s/%s.gif", cc, cc);
  f = fopen(path, "rb");
  ck_assert_ptr_nonnull(f);
  fseek(f, 0, SEEK_END);
  len = ftell(f);
  rewind(f);
  want = malloc((size_t)len);
  ck_assert_ptr_nonnull(want);
  ck_assert_uint_eq(fread(want, 1, (size_t)len, f), (size_t)len);
  fclose(f);
  tu_fetch(port, "GET", url, &r);
  ck_assert_int_eq(r.status, 200);
  ck_assert_str_eq(r.content_type, "image/gif");
  ck_assert_int_eq(r.content_length, len);
  ck_assert_msg(r.body_len == (size_t)len && !memcmp(r.body, want, r.body_len),
                "%s differs from %s", url, path);
  free(want);
  free(r.body);
}

START_TEST(test_directory_fake) {
  char dir[] = "/tmp/check_flagserver_dir_XXXXXX";
  struct proc *p;
  make_fake_dir(dir);
  p = start("--directory", dir, NULL, NULL);
  assert_serves_file(p->port[0], dir, "br");
  assert_serves_file(p->port[0], dir, "fr");
  ck_assert_int_eq(get_status(p->port[0], "/flags/de/de.gif"), 404);
  ck_assert_int_eq(get_status(p->port[0], "/flags/us/us.gif"), 404);
  remove_fake_dir(dir);
}
END_TEST

START_TEST(test_directory_shared) {
  struct stat st;
  char probe[256];
  snprintf(probe, sizeof probe, "%s/br/br.gif", SHARED_FLAGS_DIR);
  if (stat(probe, &st) == 0) {
    struct proc *p = start("--directory", SHARED_FLAGS_DIR, NULL, NULL);
    assert_serves_file(p->port[0], SHARED_FLAGS_DIR, "br");
    assert_serves_file(p->port[0], SHARED_FLAGS_DIR, "cn");
    assert_serves_file(p->port[0], SHARED_FLAGS_DIR, "zw");
    ck_assert_int_eq(get_status(p->port[0], "/flags/xx/xx.gif"), 404);
  } else {
    char dir[] = "/tmp/check_flagserver_dir_XXXXXX";
    struct proc *p;
    make_fake_dir(dir);
    p = start("--directory", dir, NULL, NULL);
    assert_serves_file(p->port[0], dir, "br");
    remove_fake_dir(dir);
  }
}
END_TEST

/* Runs flagserver with args, which must exit with `code` within 30 s
 * printing `needle` to stderr (or stdout for code 0). */
static void assert_exits(const char *const *args, int code,
                         const char *needle) {
  struct proc *p = spawn(args);
  char out[4096] = "";
  ssize_t n;
  int st = reap(p, 30);
  ck_assert_msg(st >= 0 && WIFEXITED(st), "%s %s did not exit", args[0],
                args[1] ? args[1] : "");
  ck_assert_msg(WEXITSTATUS(st) == code, "%s %s exited %d, not %d", args[0],
                args[1] ? args[1] : "", WEXITSTATUS(st), code);
  n = read(p->out, out, sizeof out - 1);
  out[n > 0 ? n : 0] = 0;
  ck_assert_msg(strstr(code ? stderr_of(p) : out, needle),
                "%s %s: '%s' not in output: %s", args[0],
                args[1] ? args[1] : "", needle, code ? stderr_of(p) : out);
}

START_TEST(test_bad_options) {
  char empty[] = "/tmp/check_flagserver_empty_XXXXXX";
  static const struct {
    const char *args[4];
    const char *needle;
  } cases[] = {
      {{"--bogus"}, "'--bogus'"},
      {{"--delay", "abc"}, "--delay must be MIN or MIN:MAX seconds"},
      {{"--delay", "2:1"}, "got '2:1'"},
      {{"--delay", "-1"}, "got '-1'"},
      {{"--error-rate", "2"},
       "flagserver: --error-rate must be between 0 and 1, got '2'"},
      {{"--error-rate", "-0.1"}, "got '-0.1'"},
      {{"--error-rate", "x"}, "got 'x'"},
      {{"--port", "70000"}, "--port must be an integer from 0 to 65535"},
      {{"--port", "80x"}, "got '80x'"},
      {{"--directory", "/nonexistent/flags"}, "'/nonexistent/flags'"},
      {{"--labels", "--delay", "1"}, "--labels"},
      {{"--port", "0", "stray"}, "'stray'"},
      {{"--port"}, "needs a value"},
      {{"--delay", "0x10"}, "got '0x10'"},
      {{"--delay", "1:0x10"}, "got '1:0x10'"},
      {{"--error-rate", "0x0.4"}, "got '0x0.4'"},
      {{"--port", "0", "8002"}, "given twice"},
      {{"0", "8002"}, "unexpected argument"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    assert_exits(cases[i].args, 2, cases[i].needle);
    teardown();
  }
  ck_assert_ptr_nonnull(mkdtemp(empty));
  {
    const char *args[] = {"--directory", empty, NULL};
    assert_exits(args, 2, "holds no flags");
    teardown();
  }
  rmdir(empty);
  {
    const char *args[] = {"--help", NULL};
    assert_exits(args, 0, "Usage: flagserver");
  }
}
END_TEST

START_TEST(test_signals_stop_cleanly) {
  struct proc *p = start("-v", NULL, NULL, NULL);
  ck_assert_int_eq(get_status(p->port[0], "/flags/br/br.gif"), 200);
  ck_assert_int_eq(stop(p, SIGTERM), 0);
  ck_assert_ptr_nonnull(strstr(stderr_of(p), "GET /flags/br/br.gif 200"));
  ck_assert_ptr_nonnull(strstr(
      stderr_of(p), "served 1 requests: 1 ok, 0 not found, 0 errors(418)"));

  p = start(NULL, NULL, NULL, NULL);
  ck_assert_int_eq(stop(p, SIGINT), 0);
  ck_assert_ptr_nonnull(strstr(stderr_of(p), "served 0 requests"));
}
END_TEST

/* Requests parked for their delay are answered at once on SIGTERM. */
START_TEST(test_stop_with_parked_requests) {
  struct proc *p = start("--delay", "20", NULL, NULL);
  struct tu_client c[5];
  double t0;
  for (int i = 0; i < 5; i++) {
    tu_client_open(&c[i], p->port[0]);
    tu_client_request(&c[i], "GET", "/flags/br/br.gif", NULL, NULL);
  }
  usleep(300000);
  t0 = tu_now();
  ck_assert_int_eq(stop(p, SIGTERM), 0);
  ck_assert_msg(tu_now() - t0 < 5, "stopping took %.1f s", tu_now() - t0);
  for (int i = 0; i < 5; i++) {
    struct tu_resp r;
    tu_client_response(&c[i], 0, &r);
    assert_gif(&r);
    free(r.body);
    tu_client_close(&c[i]);
  }
  ck_assert_ptr_nonnull(strstr(stderr_of(p), "served 5 requests: 5 ok"));
}
END_TEST

START_TEST(test_labels_on_free_ports) {
  static const char *const args[] = {"--labels", "--port", "0", NULL};
  struct proc *p = start_n(args, 3);
  double t0;
  int status;

  ck_assert_int_eq(get_status(p->port[0], "/flags/br/br.gif"), 200);
  t0 = tu_now();
  ck_assert_int_eq(get_status(p->port[1], "/flags/br/br.gif"), 200);
  ck_assert_msg(tu_now() - t0 >= 0.45, "DELAY answered in %.2f s",
                tu_now() - t0);
  status = get_status(p->port[2], "/flags/br/br.gif");
  ck_assert(status == 200 || status == 418);
  ck_assert_int_eq(stop(p, SIGTERM), 0);
}
END_TEST

/* The classic command line: a lone positional port. */
START_TEST(test_positional_port) {
  static const char *const args[] = {"0", "--error-rate", ".25", NULL};
  struct proc *p = start_n(args, 1);
  int status = get_status(p->port[0], "/flags/br/br.gif");
  ck_assert(status == 200 || status == 418);
}
END_TEST

/* An absolute-form target (RFC 9112, 3.2.2) is served by its path. */
START_TEST(test_absolute_form) {
  struct proc *p = start(NULL, NULL, NULL, NULL);
  char target[96];
  struct tu_resp r;

  snprintf(target, sizeof target, "http://127.0.0.1:%d/flags/br/br.gif",
           p->port[0]);
  tu_fetch(p->port[0], "GET", target, &r);
  assert_gif(&r);
  free(r.body);
  tu_fetch(p->port[0], "GET", "http://127.0.0.1/flags/../etc/passwd", &r);
  ck_assert_int_eq(r.status, 400);
  free(r.body);
}
END_TEST

/* /flags/ lists every flag for a browser, at once. */
START_TEST(test_listing) {
  struct proc *p = start("--delay", "30", "--error-rate", "1");
  double t0 = tu_now();
  struct tu_resp r;

  tu_fetch(p->port[0], "GET", "/flags/", &r);
  ck_assert_msg(tu_now() - t0 < 5, "listing took %.2f s", tu_now() - t0);
  ck_assert_int_eq(r.status, 200);
  ck_assert_str_eq(r.content_type, "text/html; charset=utf-8");
  ck_assert_ptr_nonnull(strstr((char *)r.body, "href=\"br/br.gif\""));
  ck_assert_ptr_nonnull(strstr((char *)r.body, "href=\"zw/zw.gif\""));
  free(r.body);
}
END_TEST

/* HEAD is answered at once, never with a teapot, as the classic does. */
START_TEST(test_head_at_once) {
  struct proc *p = start("--delay", "30", "--error-rate", "1");
  for (int i = 0; i < 5; i++) {
    double t0 = tu_now();
    struct tu_resp r;
    tu_fetch(p->port[0], "HEAD", "/flags/br/br.gif", &r);
    ck_assert_msg(tu_now() - t0 < 5, "HEAD took %.2f s", tu_now() - t0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.content_type, "image/gif");
  }
}
END_TEST

/* -v masks what it logs from the request line: an escape in the method
 * or target never reaches the terminal. */
START_TEST(test_verbose_masks_request) {
  static const char req[] = "\033[2JGET /flags/\033]0;x\007 HTTP/1.1\r\n"
                            "Host: 127.0.0.1\r\nConnection: close\r\n\r\n";
  struct proc *p = start("-v", NULL, NULL, NULL);
  struct tu_client c;

  tu_client_open(&c, p->port[0]);
  tu_client_send(&c, req, sizeof req - 1);
  tu_client_fill_eof(&c); /* whatever the answer, until the close */
  tu_client_close(&c);
  ck_assert_int_eq(get_status(p->port[0], "/flags/br/br.gif"), 200);
  ck_assert_int_eq(stop(p, SIGTERM), 0);
  ck_assert_msg(!strchr(stderr_of(p), '\033') && !strchr(stderr_of(p), '\007'),
                "escape logged: %s", stderr_of(p));
  ck_assert_ptr_nonnull(strstr(stderr_of(p), "GET /flags/br/br.gif 200"));
}
END_TEST

/* A flag that is a symbolic link out of the folder is not served. */
START_TEST(test_directory_symlink_escape) {
  char dir[] = "/tmp/check_flagserver_dir_XXXXXX", path[256], link[256];
  struct proc *p;

  make_fake_dir(dir);
  snprintf(path, sizeof path, "%s/zz", dir);
  ck_assert_int_eq(mkdir(path, 0700), 0);
  snprintf(link, sizeof link, "%s/zz/zz.gif", dir);
  ck_assert_int_eq(symlink("/etc/passwd", link), 0);
  snprintf(path, sizeof path, "%s/country_codes.txt", dir);
  write_file(path, "BR FR ZZ\n", 9);
  p = start("--directory", dir, NULL, NULL);
  ck_assert_int_eq(get_status(p->port[0], "/flags/zz/zz.gif"), 404);
  assert_serves_file(p->port[0], dir, "br");
  ck_assert_ptr_nonnull(strstr(stderr_of(p), "resolves outside the folder"));
  unlink(link);
  snprintf(path, sizeof path, "%s/zz", dir);
  rmdir(path);
  remove_fake_dir(dir);
}
END_TEST

/* Opens a connection and sends the first `len` bytes of a request. */
static int slow_client(int port, const char *start, size_t len) {
  struct tu_client c;
  tu_client_open(&c, port);
  tu_client_send(&c, start, len);
  return c.fd;
}

/* A client that sends its request head a byte a second is cut off after
 * HEADER_TIMEOUT (10 s), not kept as long as it keeps sending. */
START_TEST(test_slow_header_cut) {
  static const char start_line[] = "GET /flags/br/br.gif HTTP/1.1\r\n";
  struct proc *p = start(NULL, NULL, NULL, NULL);
  int fd = slow_client(p->port[0], start_line, sizeof start_line - 1);
  double t0 = tu_now();
  int closed = 0;

  while (!closed && tu_now() - t0 < 16) {
    struct pollfd pfd = {fd, POLLIN, 0};
    if (poll(&pfd, 1, 1000) > 0) {
      char buf[256];
      closed = recv(fd, buf, sizeof buf, 0) <= 0;
      ck_assert_msg(closed, "answered an incomplete request");
    } else {
      closed = send(fd, "X", 1, MSG_NOSIGNAL) < 0;
    }
  }
  ck_assert_msg(closed, "a slow request head held its connection 16 s");
  ck_assert_msg(tu_now() - t0 > 5, "cut after %.1f s", tu_now() - t0);
  close(fd);
}
END_TEST

/* With every connection held by slow request heads, a normal GET is still
 * answered soon: near the cap, slow heads get PRESSED_HEADER_TIMEOUT. */
START_TEST(test_slow_headers_near_cap) {
  static const char *const args[] = {"--port", "0", NULL};
  /* 100 descriptors leave (100 - 64) = 36 connections to the site. */
  struct proc *p = start_limited(args, 1, 100);
  int fds[40], status = -1;
  double t0;

  for (int i = 0; i < 40; i++)
    fds[i] = slow_client(p->port[0], "GET /fl", 7);
  t0 = tu_now();
  while (status != 200 && tu_now() - t0 < 15)
    status = tu_try_status(p->port[0], "/flags/br/br.gif", 2);
  ck_assert_msg(status == 200, "no answer within 15 s at the cap (last %d)",
                status);
  for (int i = 0; i < 40; i++)
    close(fds[i]);
}
END_TEST

Suite *make_flagserver_suite(void) {
  Suite *s = suite_create("flagserver");
  TCase *serve = tcase_create("serve");
  TCase *faults = tcase_create("faults");
  TCase *delay = tcase_create("delay");
  TCase *cli = tcase_create("cli");
  TCase *slow = tcase_create("slow_clients");

  tcase_add_checked_fixture(serve, setup, teardown);
  tcase_set_timeout(serve, 60);
  tcase_add_test(serve, test_get_flags);
  tcase_add_test(serve, test_generated_sizes_deterministic);
  tcase_add_test(serve, test_head);
  tcase_add_test(serve, test_not_found);
  tcase_add_test(serve, test_method_not_allowed);
  tcase_add_test(serve, test_traversal_refused);
  tcase_add_test(serve, test_directory_fake);
  tcase_add_test(serve, test_directory_shared);
  tcase_add_test(serve, test_absolute_form);
  tcase_add_test(serve, test_listing);
  tcase_add_test(serve, test_head_at_once);
  tcase_add_test(serve, test_directory_symlink_escape);
  suite_add_tcase(s, serve);

  tcase_add_checked_fixture(faults, setup, teardown);
  tcase_set_timeout(faults, 60);
  tcase_add_test(faults, test_error_rate_one);
  tcase_add_test(faults, test_error_rate_quarter_and_summary);
  suite_add_tcase(s, faults);

  tcase_add_checked_fixture(delay, setup, teardown);
  tcase_set_timeout(delay, 90);
  tcase_add_test(delay, test_delay_does_not_serialise);
  tcase_add_test(delay, test_delay_range);
  tcase_add_test(delay, test_stop_with_parked_requests);
  tcase_add_test(delay, test_labels_on_free_ports);
  suite_add_tcase(s, delay);

  tcase_add_checked_fixture(cli, setup, teardown);
  tcase_set_timeout(cli, 120);
  tcase_add_test(cli, test_bad_options);
  tcase_add_test(cli, test_signals_stop_cleanly);
  tcase_add_test(cli, test_positional_port);
  tcase_add_test(cli, test_verbose_masks_request);
  suite_add_tcase(s, cli);

  tcase_add_checked_fixture(slow, setup, teardown);
  tcase_set_timeout(slow, 60);
  tcase_add_test(slow, test_slow_header_cut);
  tcase_add_test(slow, test_slow_headers_near_cap);
  suite_add_tcase(s, slow);
  return s;
}

TU_MAIN(make_flagserver_suite)
