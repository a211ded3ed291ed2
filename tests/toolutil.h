/*
 * toolutil: what the suites of the command-line tools (check_flags,
 * check_flagserver, check_primes) share to drive a built program from the
 * outside: spawning it with its streams captured, waiting for it, reading
 * what it wrote, listing its children, and a small HTTP/1.1 client and
 * listening socket on loopback.
 *
 * DESIGN. Every helper fails the running Check test (ck_assert) when the
 * machine, not the program under test, lets it down (fork, socket, a
 * missing file), so that callers stay short; helpers whose failure is
 * the thing under test (tu_try_status, tu_wait) return it instead. A
 * spawned child dies with the test process (PR_SET_PDEATHSIG), so a failed
 * or timed-out test leaves no program running.
 */
#ifndef PP_TOOLUTIL_H
#define PP_TOOLUTIL_H

#include <stddef.h>
#include <sys/types.h>

/* One finished run of a program. */
struct tu_run {
  int status;  /* exit status, or 128 + signal */
  double wall; /* seconds from spawn to exit */
  char *out;   /* all of its stdout, NUL-terminated, malloc'd */
  char *err;   /* all of its stderr, likewise */
};

/* Starts argv[0] (a path) with argv, its stdin, stdout and stderr on the
 * given descriptors (-1: inherit) and in `cwd` (NULL: ours). The child is
 * killed when the test process dies. Returns its pid. */
pid_t tu_spawn(char *const argv[], int in_fd, int out_fd, int err_fd,
               const char *cwd);

/* Waits up to `seconds` for pid; returns its exit status (128 + signal
 * when killed), or -1 on timeout (the child is left running). */
int tu_wait(pid_t pid, double seconds);

/* Runs argv with `input` (NULL: empty) on stdin in `cwd` (NULL: ours),
 * waiting up to `seconds`, and fills *r (OUT). A run past its time is
 * killed and fails the test. Free *r with tu_run_free(). */
void tu_run(struct tu_run *r, char *const argv[], const char *input,
            const char *cwd, double seconds);
void tu_run_free(struct tu_run *r);

/* All of a file, NUL-terminated (malloc'd); *len (OUT) may be NULL.
 * NULL if it cannot be opened. */
char *tu_read_file(const char *path, size_t *len);

/* All of what descriptor fd holds from offset 0, NUL-terminated. */
char *tu_read_fd(int fd, size_t *len);

/* Pids of the live (not zombie) descendants of pid (its children, theirs,
 * and so on), up to cap; returns how many. */
int tu_descendants_of(pid_t pid, pid_t *out, int cap);

/* A socket bound to a free port of 127.0.0.1, its port in *port (OUT);
 * listening unless `listening` is 0 (then connections are refused). */
int tu_listen_local(int *port, int listening);

/* Writes all of buf to a socket (never raising SIGPIPE) or a file,
 * giving up quietly if the peer went away. */
void tu_send_all(int fd, const void *buf, size_t len);

/* ---- a small HTTP/1.1 client ---- */

/* A client connection with its read buffer. */
struct tu_client {
  int fd;
  unsigned char buf[65536];
  size_t len;
};

/* One response as the client saw it. */
struct tu_resp {
  int status;
  char reason[128];    /* the reason phrase of the status line */
  long content_length; /* -1 if absent */
  char content_type[64];
  char allow[64];
  char location[256];
  unsigned char *body; /* malloc'd, NUL-terminated; NULL if none */
  size_t body_len;
};

/* Connects to 127.0.0.1:port with 15 s send and receive timeouts. */
void tu_client_open(struct tu_client *c, int port);
void tu_client_close(struct tu_client *c);

/* Sends len bytes as they are. */
void tu_client_send(struct tu_client *c, const char *text, size_t len);

/* Sends "METHOD target HTTP/1.1" with a Host header, `extra` header lines
 * (each ending in \r\n, may be NULL) and a body (may be NULL). */
void tu_client_request(struct tu_client *c, const char *method,
                       const char *target, const char *extra, const char *body);

/* Reads one response; a HEAD response (head != 0) has no body whatever
 * its Content-Length; without one the body runs to EOF. */
void tu_client_response(struct tu_client *c, int head, struct tu_resp *r);

/* Non-zero if the server closes the connection (EOF or reset) within
 * 15 s without sending anything more. */
int tu_client_fill_eof(struct tu_client *c);

/* One request on a fresh connection ("Connection: close"); free r->body. */
void tu_fetch(int port, const char *method, const char *target,
              struct tu_resp *r);

/* The status of GET target on a fresh connection, or -1 if the server
 * closed or reset it, or sent no status line within `seconds`. */
int tu_try_status(int port, const char *target, double seconds);

#endif
