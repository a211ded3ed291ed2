/*
 * toolutil: helpers the suites of the tools share; see toolutil.h.
 *
 * DESIGN. Captured streams go to unlinked temporary files rather than
 * pipes, so that a chatty program never blocks on a full pipe while the
 * test waits for it, and what it wrote can be read after it exited. The
 * HTTP client speaks just enough HTTP/1.1 to check a server byte for byte:
 * Content-Length bodies, bodies to EOF, keep-alive and HEAD.
 */
#include "toolutil.h"
#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>

pid_t tu_spawn(char *const argv[], int in_fd, int out_fd, int err_fd,
               const char *cwd) {
  pid_t parent = getpid(), pid = fork();

  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
      _exit(127);
    if ((in_fd >= 0 && dup2(in_fd, 0) < 0) ||
        (out_fd >= 0 && dup2(out_fd, 1) < 0) ||
        (err_fd >= 0 && dup2(err_fd, 2) < 0) || (cwd && chdir(cwd) < 0))
      _exit(126);
    execv(argv[0], argv);
    _exit(127);
  }
  return pid;
}

int tu_wait(pid_t pid, double seconds) {
  double end = tu_now() + seconds;
  struct timespec tick = {0, 5 * 1000 * 1000};
  int st;

  for (;;) {
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid)
      return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if ((r < 0 && errno != EINTR) || tu_now() > end)
      return -1;
    nanosleep(&tick, NULL);
  }
}

char *tu_read_fd(int fd, size_t *len) {
  size_t cap = 65536, n = 0;
  char *buf = malloc(cap);
  ssize_t r;

  ck_assert_ptr_nonnull(buf);
  for (;;) {
    if (n + 1 == cap)
      ck_assert_ptr_nonnull(buf = realloc(buf, cap *= 2));
    r = pread(fd, buf + n, cap - n - 1, (off_t)n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    n += (size_t)r;
  }
  buf[n] = '\0';
  if (len)
    *len = n;
  return buf;
}

char *tu_read_file(const char *path, size_t *len) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  char *text;

  if (fd < 0)
    return NULL;
  text = tu_read_fd(fd, len);
  close(fd);
  return text;
}

/* An unlinked temporary file, open for reading and writing. */
static int temp_fd(void) {
  char path[] = "/tmp/toolutil.XXXXXX";
  int fd = mkostemp(path, O_CLOEXEC);

  ck_assert_msg(fd >= 0, "mkstemp: %s", strerror(errno));
  unlink(path);
  return fd;
}

void tu_run(struct tu_run *r, char *const argv[], const char *input,
            const char *cwd, double seconds) {
  int in = temp_fd(), out = temp_fd(), err = temp_fd();
  double t0 = tu_now();
  pid_t pid;

  if (input)
    tu_send_all(in, input, strlen(input));
  lseek(in, 0, SEEK_SET);
  pid = tu_spawn(argv, in, out, err, cwd);
  r->status = tu_wait(pid, seconds);
  r->wall = tu_now() - t0;
  if (r->status < 0) {
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
  }
  r->out = tu_read_fd(out, NULL);
  r->err = tu_read_fd(err, NULL);
  close(in);
  close(out);
  close(err);
  ck_assert_msg(r->status >= 0, "%s did not finish within %g s; stderr:\n%s",
                argv[0], seconds, r->err);
}

void tu_run_free(struct tu_run *r) {
  free(r->out);
  free(r->err);
  r->out = r->err = NULL;
}

int tu_descendants_of(pid_t pid, pid_t *out, int cap) {
  int n = tu_child_pids_of(pid, out, cap);

  ck_assert_int_ge(n, 0);
  n = n < cap ? n : cap;
  for (int i = 0; i < n; i++) { /* out grows behind i: a walk of the tree */
    int more = tu_child_pids_of(out[i], out + n, cap - n);
    n += more < cap - n ? more : cap - n;
  }
  return n;
}

int tu_listen_local(int *port, int listening) {
  struct sockaddr_in sa = {.sin_family = AF_INET};
  socklen_t len = sizeof sa;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

  ck_assert_int_ge(fd, 0);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  if (listening)
    ck_assert_int_eq(listen(fd, 128), 0);
  ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
  *port = ntohs(sa.sin_port);
  return fd;
}

void tu_send_all(int fd, const void *buf, size_t len) {
  const char *p = buf;
  while (len > 0) {
    ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
    if (n < 0 && errno == ENOTSOCK)
      n = write(fd, p, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return;
    p += n;
    len -= (size_t)n;
  }
}

/* ---- the HTTP client ---- */

void tu_client_open(struct tu_client *c, int port) {
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)port),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  struct timeval tv = {15, 0};

  c->len = 0;
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ck_assert_int_ge(c->fd, 0);
  setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  ck_assert_msg(connect(c->fd, (struct sockaddr *)&sa, sizeof sa) == 0,
                "connect to port %d: %s", port, strerror(errno));
}

void tu_client_close(struct tu_client *c) {
  close(c->fd);
  c->fd = -1;
}

void tu_client_send(struct tu_client *c, const char *text, size_t len) {
  while (len > 0) {
    ssize_t n = send(c->fd, text, len, MSG_NOSIGNAL);
    ck_assert_msg(n > 0, "send: %s", strerror(errno));
    text += n;
    len -= (size_t)n;
  }
}

void tu_client_request(struct tu_client *c, const char *method,
                       const char *target, const char *extra,
                       const char *body) {
  size_t cap = strlen(target) + 512 + (extra ? strlen(extra) : 0) +
               (body ? strlen(body) : 0);
  char *req = malloc(cap);
  int n;

  ck_assert_ptr_nonnull(req);
  n = snprintf(req, cap, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s", method,
               target, extra ? extra : "");
  if (body)
    n += snprintf(req + n, cap - (size_t)n, "Content-Length: %zu\r\n",
                  strlen(body));
  n += snprintf(req + n, cap - (size_t)n, "\r\n%s", body ? body : "");
  tu_client_send(c, req, (size_t)n);
  free(req);
}

/* Reads more bytes into the buffer; returns how many (0 at EOF). */
static size_t client_fill(struct tu_client *c) {
  ssize_t n;
  ck_assert_uint_lt(c->len, sizeof c->buf);
  do
    n = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
  while (n < 0 && errno == EINTR);
  ck_assert_msg(n >= 0, "recv: %s", strerror(errno));
  c->len += (size_t)n;
  return (size_t)n;
}

/* Copies the value of header `name` from the header block into out. */
static void header_value(const char *head, const char *name, char *out,
                         size_t size) {
  size_t nl = strlen(name);
  out[0] = 0;
  for (const char *l = strstr(head, "\r\n"); l; l = strstr(l, "\r\n")) {
    l += 2;
    if (!strncasecmp(l, name, nl) && l[nl] == ':') {
      const char *v = l + nl + 1, *e = strstr(v, "\r\n");
      while (*v == ' ')
        v++;
      snprintf(out, size, "%.*s", (int)(e ? e - v : (long)strlen(v)), v);
      return;
    }
  }
}

/* Fills the status, reason and headers of r from a header block. */
static void parse_head(const char *head, struct tu_resp *r) {
  const char *eol = strstr(head, "\r\n");
  char cl[32];
  int at = 0;

  ck_assert_msg(sscanf(head, "HTTP/1.%*d %d %n", &r->status, &at) == 1,
                "bad status line: %.80s", head);
  if (at > 0 && head + at < eol)
    snprintf(r->reason, sizeof r->reason, "%.*s", (int)(eol - head - at),
             head + at);
  header_value(head, "Content-Length", cl, sizeof cl);
  r->content_length = cl[0] ? atol(cl) : -1;
  header_value(head, "Content-Type", r->content_type, sizeof r->content_type);
  header_value(head, "Allow", r->allow, sizeof r->allow);
  header_value(head, "Location", r->location, sizeof r->location);
}

void tu_client_response(struct tu_client *c, int head, struct tu_resp *r) {
  char *end, head_text[8192];
  size_t hlen, want;

  memset(r, 0, sizeof *r);
  while (!(end = memmem(c->buf, c->len, "\r\n\r\n", 4)))
    ck_assert_msg(client_fill(c) > 0, "connection closed before headers");
  hlen = (size_t)(end - (char *)c->buf) + 4;
  ck_assert_uint_lt(hlen, sizeof head_text);
  memcpy(head_text, c->buf, hlen);
  head_text[hlen] = 0;
  parse_head(head_text, r);
  memmove(c->buf, c->buf + hlen, c->len - hlen);
  c->len -= hlen;
  if (head || r->content_length == 0)
    return;
  want = r->content_length > 0 ? (size_t)r->content_length : SIZE_MAX;
  while (c->len < want && client_fill(c) > 0)
    ;
  r->body_len = c->len < want ? c->len : want;
  r->body = malloc(r->body_len + 1);
  ck_assert_ptr_nonnull(r->body);
  memcpy(r->body, c->buf, r->body_len);
  r->body[r->body_len] = 0;
  memmove(c->buf, c->buf + r->body_len, c->len - r->body_len);
  c->len -= r->body_len;
}

int tu_client_fill_eof(struct tu_client *c) {
  char byte;
  ssize_t n;
  do
    n = recv(c->fd, &byte, 1, 0);
  while (n < 0 && errno == EINTR);
  return n == 0 || (n < 0 && errno == ECONNRESET);
}

void tu_fetch(int port, const char *method, const char *target,
              struct tu_resp *r) {
  struct tu_client c;
  tu_client_open(&c, port);
  tu_client_request(&c, method, target, "Connection: close\r\n", NULL);
  tu_client_response(&c, !strcmp(method, "HEAD"), r);
  tu_client_close(&c);
}

int tu_try_status(int port, const char *target, double seconds) {
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)port),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  double end = tu_now() + seconds;
  char req[512], buf[64];
  size_t n = 0;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), status = -1;

  ck_assert_int_ge(fd, 0);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
    goto out_close;
  snprintf(req, sizeof req,
           "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
           target);
  if (send(fd, req, strlen(req), MSG_NOSIGNAL) != (ssize_t)strlen(req))
    goto out_close;
  while (n < sizeof buf - 1 && !memchr(buf, '\n', n)) {
    struct pollfd p = {fd, POLLIN, 0};
    int left = (int)((end - tu_now()) * 1000);
    ssize_t r;
    if (left <= 0 || poll(&p, 1, left) <= 0)
      goto out_close;
    if ((r = recv(fd, buf + n, sizeof buf - 1 - n, 0)) <= 0)
      goto out_close;
    n += (size_t)r;
  }
  buf[n] = '\0';
  if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
    status = -1;
out_close:
  close(fd);
  return status;
}
