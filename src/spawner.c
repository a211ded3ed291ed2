/*
 * The spawner: a process the reaper forks when the pool starts, which forks
 * every worker on the master's behalf and is their parent.
 *
 * DESIGN
 * A fork of the master is dear, and dearer while the master works: it
 * copies the master's page tables and write-protects its pages, with a TLB
 * shootdown of the master's other threads, and every page the master
 * writes afterwards (the results it collects, its heap, its threads'
 * stacks) faults and is copied again, with another shootdown each. In
 * bench_faults that was most of what a worker's death cost the master: its
 * CPU time per death fell by about 60% once it stopped forking. The
 * spawner has one thread and writes almost nothing once started, so a fork
 * of it costs neither, and the master never forks again. So every worker,
 * a replacement too, starts as a copy of the master as it was when the pool
 * started.
 *
 * Only the reaper thread talks to it, over a socket pair, one request and
 * its answer at a time (struct spawn_msg):
 *  - SPAWN_FORK, a place, the write end of the worker's death pipe, and
 *    the pid of the dead worker it replaces (or 0): the spawner reaps the
 *    dead one, forks the new one and answers its pid (or -errno), with a
 *    pidfd of it where the kernel has them;
 *  - SPAWN_REAP, the pid of a dead worker: the spawner reaps it and
 *    answers its status;
 *  - SPAWN_EXIT: the spawner exits (the reaper has reaped every worker).
 * A replacement thus costs the reaper one round trip, and the dead worker
 * is reaped on the way. The reaper asks to reap only a worker whose place
 * (proc.h) reads empty, so the wait is short, and only once it has cleared
 * its pid, so the master never signals a recycled pid. A spawner killed
 * from outside takes its workers with it (PR_SET_PDEATHSIG): the master
 * hears of their deaths as ever, counts them killed, and the next fork
 * starts a new spawner; the pidfds keep its late kills from reaching
 * another process meanwhile. The spawner itself dies with the reaper
 * thread, which outlives every worker.
 */
#include "proc.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

enum { SPAWN_FORK = 1, SPAWN_REAP, SPAWN_EXIT };

struct spawn_msg {
  int32_t op;
  int32_t place;  /* SPAWN_FORK: the worker's place */
  int32_t pid;    /* asked: the dead worker to reap first (0: none);
                     answered: the worker forked or reaped, or -errno */
  int32_t status; /* answered: the reaped worker's status */
};

/* Sends `m`, with descriptor `fd` when it is not -1. Returns 0 or -1. */
static int send_msg(int sock, const struct spawn_msg *m, int fd) {
  union {
    char bytes[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } ctl;
  struct iovec io = {(void *)m, sizeof *m};
  struct msghdr mh = {.msg_iov = &io, .msg_iovlen = 1};
  ssize_t n;

  if (fd >= 0) {
    memset(&ctl, 0, sizeof ctl);
    mh.msg_control = ctl.bytes;
    mh.msg_controllen = sizeof ctl.bytes;
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  while ((n = sendmsg(sock, &mh, MSG_NOSIGNAL)) < 0 && errno == EINTR)
    ;
  return n == (ssize_t)sizeof *m ? 0 : -1;
}

/* Receives a message into *m, and into *fd (OUT) the descriptor it
 * carried, or -1. Returns 0, or -1 at the end or on an error. */
static int recv_msg(int sock, struct spawn_msg *m, int *fd) {
  union {
    char bytes[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } ctl;
  struct iovec io = {m, sizeof *m};
  struct msghdr mh = {.msg_iov = &io,
                      .msg_iovlen = 1,
                      .msg_control = ctl.bytes,
                      .msg_controllen = sizeof ctl.bytes};
  struct cmsghdr *c;
  ssize_t n;

  *fd = -1;
  while ((n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
    ;
  c = n > 0 ? CMSG_FIRSTHDR(&mh) : NULL;
  if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
      c->cmsg_len == CMSG_LEN(sizeof(int)))
    memcpy(fd, CMSG_DATA(c), sizeof *fd);
  if (n == (ssize_t)sizeof *m)
    return 0;
  if (*fd >= 0)
    close(*fd);
  *fd = -1;
  return -1;
}

/* A pidfd of child `pid` (not reaped yet, so it is that process), or -1
 * where the kernel (or valgrind) has none: then kill() must do. */
static int pidfd_of(pid_t pid) {
#ifdef SYS_pidfd_open
  return (int)syscall(SYS_pidfd_open, pid, 0);
#else
  (void)pid;
  return -1;
#endif
}

/* ------------------------------------------------- the spawner's side */

/* Reaps dead worker `pid` (its place's lock says it died, so it is a
 * zombie now or in a moment); returns waitpid()'s answer (or -errno), and
 * its *status (OUT). */
static pid_t reap_dead(pid_t pid, int *status) {
  pid_t got;

  *status = 0;
  while ((got = waitpid(pid, status, 0)) < 0 && errno == EINTR)
    ;
  return got >= 0 ? got : -errno;
}

/* Reaps the dead worker `m` names, if any, forks the worker for the place
 * it names, its death pipe's write end `death`, and answers its pid. */
static void answer_fork(pp_pool *p, int sock, struct spawn_msg *m, int death,
                        pid_t self) {
  pid_t pid;
  int pidfd;

  m->status = 0;
  if (m->pid > 0)
    (void)reap_dead(m->pid, &m->status);
  pid = death >= 0 ? fork() : (errno = EBADF, -1);
  if (pid == 0) {
    close(sock);
    pp__worker_main(pp__procs_of(p)->sh, m->place, self, p->opts.initializer,
                    p->opts.initarg, p->opts.max_tasks_per_worker);
  }
  m->pid = pid > 0 ? pid : -errno;
  if (death >= 0)
    close(death);
  pidfd = pid > 0 ? pidfd_of(pid) : -1;
  (void)send_msg(sock, m, pidfd); /* a lost master ends the loop */
  if (pidfd >= 0)
    close(pidfd);
}

/* The spawner's life: it dies with the reaper thread, keeps its children
 * until asked to reap them (SIGCHLD at its default, whatever the master
 * set), and answers requests until told to exit or the master is gone.
 * Every signal stays blocked, as in the reaper: Ctrl-C is for the
 * master. */
static void __attribute__((noreturn))
serve(pp_pool *p, int sock, pid_t master) {
  pid_t self = getpid();
  struct spawn_msg m;
  int fd;

  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != master)
    _exit(1);
  signal(SIGCHLD, SIG_DFL);
  while (recv_msg(sock, &m, &fd) == 0) {
    if (m.op == SPAWN_FORK) {
      answer_fork(p, sock, &m, fd, self);
      continue;
    }
    if (fd >= 0)
      close(fd);
    if (m.op != SPAWN_REAP)
      break;
    m.pid = reap_dead(m.pid, &m.status);
    (void)send_msg(sock, &m, -1);
  }
  _exit(0);
}

/* ------------------------------------------------- the master's side */

int pp__spawner_start(pp_pool *p) {
  struct pp__procs *e = pp__procs_of(p);
  pid_t master = getpid();
  int sv[2];

  if (e->spawner_fd >= 0)
    return 0;
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
    return PP_EFORK;
  e->spawner_pid = fork();
  if (e->spawner_pid == 0) {
    close(sv[0]);
    serve(p, sv[1], master);
  }
  close(sv[1]);
  if (e->spawner_pid < 0) {
    close(sv[0]);
    e->spawner_pid = 0;
    return PP_EFORK;
  }
  e->spawner_fd = sv[0];
  return 0;
}

/* The spawner stopped answering (it was killed, or is lost): it is killed
 * if need be and reaped; its workers die with it. */
static void spawner_lost(pp_pool *p) {
  struct pp__procs *e = pp__procs_of(p);
  int status;

  close(e->spawner_fd);
  e->spawner_fd = -1;
  kill(e->spawner_pid, SIGKILL); /* not reaped yet, so still it */
  while (waitpid(e->spawner_pid, &status, 0) < 0 && errno == EINTR)
    ;
  e->spawner_pid = 0;
}

/* Sends request *m (with descriptor `fd`, or -1) and reads the answer into
 * *m and *got (OUT: a descriptor it carried, or -1). Returns 0, or -1 when
 * the spawner is gone. */
static int ask(pp_pool *p, struct spawn_msg *m, int fd, int *got) {
  struct pp__procs *e = pp__procs_of(p);
  int32_t op = m->op;

  *got = -1;
  if (e->spawner_fd < 0)
    return -1;
  if (send_msg(e->spawner_fd, m, fd) == 0 &&
      recv_msg(e->spawner_fd, m, got) == 0 && m->op == op)
    return 0;
  if (*got >= 0)
    close(*got);
  *got = -1;
  spawner_lost(p);
  return -1;
}

int pp__spawner_fork(pp_pool *p, int place, int death, pid_t dead, pid_t *pid,
                     int *pidfd, int *lost) {
  struct spawn_msg m = {.op = SPAWN_FORK, .place = place, .pid = dead};

  *lost = ask(p, &m, death, pidfd) != 0;
  if (*lost)
    return PP_EFORK;
  *pid = m.pid;
  if (m.pid > 0)
    return 0;
  if (*pidfd >= 0)
    close(*pidfd);
  *pidfd = -1;
  return PP_EFORK;
}

void pp__spawner_reap(pp_pool *p, pid_t pid, int *status) {
  struct spawn_msg m = {.op = SPAWN_REAP, .pid = pid};
  int fd;

  if (ask(p, &m, -1, &fd) == 0 && m.pid > 0) {
    *status = m.status;
    return;
  }
  if (fd >= 0)
    close(fd);
  /* Its spawner is gone, or was (a new one does not know it): the worker
   * died of PR_SET_PDEATHSIG, and init reaped it. */
  *status = SIGKILL;
}

void pp__spawner_stop(pp_pool *p) {
  struct pp__procs *e = pp__procs_of(p);
  struct spawn_msg m = {.op = SPAWN_EXIT};
  int status;

  if (e->spawner_fd < 0)
    return;
  (void)send_msg(e->spawner_fd, &m, -1);
  close(e->spawner_fd);
  e->spawner_fd = -1;
  while (waitpid(e->spawner_pid, &status, 0) < 0 && errno == EINTR)
    ;
  e->spawner_pid = 0;
}

int pp__spawner_kill(int pid, int pidfd) {
#ifdef SYS_pidfd_send_signal
  if (pidfd >= 0)
    return (int)syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
#endif
  return kill(pid, SIGKILL);
}
