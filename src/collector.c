/*
 * The collector: one thread per pool, in the master, that
 *  - takes result frames off the result ring and resolves futures and map
 *    items (then runs done-callbacks, outside the lock);
 *  - forks the workers, notices a worker's death through its pipe, reaps
 *    it, fails or retries what it was running, queues again what it had
 *    claimed, and forks a replacement;
 *  - kills the worker of a task that ran past its timeout.
 *
 * DESIGN
 * It sleeps in poll() on an eventfd (written by a worker that puts results
 * while the collector sleeps, or by a master thread that wants attention)
 * and on one death pipe per worker: the worker holds the only write end, so
 * the read end reports end-of-file when it exits, however it exits. (pidfds
 * would do the same, but valgrind and older kernels lack them.) A worker is
 * signalled only while it has not been reaped, so its pid cannot have been
 * recycled.
 */
#include "internal.h"
#include "testhook.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define DRAIN_MAX 4096
#define RESPAWN_BACKOFF_NS 100000000u

struct collector {
  pp_pool *p;
  unsigned char *buf;
  size_t cap;
  struct pollfd *fds;
  char *hung_up; /* [nworkers]: death pipe at end-of-file, not reaped yet
                    (the worker is exiting, or a task closed the pipe) */
};

/* ------------------------------------------------------ resolving */

/* With mu held: fails every unresolved item of slot `index` with `status`
 * and frees the slot. */
void collector_fail_slot_locked(pp_pool *p, uint32_t index, int status,
                                const char *msg, pp_future **done) {
  struct slot *s = &p->slots[index];

  if (s->kind == SLOT_FUTURE) {
    future_resolve_locked(s->owner, status, 0, NULL, 0, msg, done);
  } else if (s->kind == SLOT_MAP) {
    for (uint32_t i = 0; i < s->items; i++)
      map_resolve_locked(s->owner, s->base + i, status, 0, NULL, 0, msg);
    map_task_gone_locked(s->owner);
  }
  pool_free_slot(p, index);
}

/* With mu held: applies one result frame. */
static void apply_result(pp_pool *p, const unsigned char *frame, size_t len,
                         pp_future **done) {
  struct result_hdr rh;
  struct result_item ri;
  const unsigned char *data = frame + sizeof rh + sizeof ri;
  char msg[PP_MESSAGE_MAX];
  struct slot *s;
  uint32_t index;

  if (len < sizeof rh + sizeof ri)
    return;
  memcpy(&rh, frame, sizeof rh);
  memcpy(&ri, frame + sizeof rh, sizeof ri);
  index = id_slot(rh.id);
  if (index >= p->sh->nslots)
    return;
  s = &p->slots[index];
  if (!s->kind || s->gen != id_gen(rh.id) || rh.item >= s->items)
    return; /* a late answer for a slot already failed or reused */
  snprintf(msg, sizeof msg, "%.*s", (int)ri.msg_len, data + ri.len);
  if (s->kind == SLOT_FUTURE) {
    future_resolve_locked(s->owner, ri.status, ri.code, data, ri.len, msg,
                          done);
    pool_free_slot(p, index);
  } else {
    map_resolve_locked(s->owner, s->base + rh.item, ri.status, ri.code, data,
                       ri.len, msg);
    if (--s->items_left == 0) {
      map_task_gone_locked(s->owner);
      pool_free_slot(p, index);
    }
  }
}

/* Takes result frames off the ring (those that fit `cap` bytes of `buf`)
 * and applies them, then runs the callbacks. Called by the collector, and
 * by a thread waiting for a future, which thereby skips a wake-up of the
 * collector. Returns the number of frames. */
size_t collector_drain(pp_pool *p, void *buf, size_t cap) {
  size_t total = 0, len, off, plen;
  void *payload;
  int n;

  while ((n = ring_get(p->sh->results, buf, cap, DRAIN_MAX, &len, RING_NOWAIT,
                       NULL)) > 0) {
    pp_future *done = NULL;
    off = 0;
    pthread_mutex_lock(&p->mu);
    while (ring_frame_next(buf, len, &off, &payload, &plen))
      apply_result(p, payload, plen, &done);
    pthread_cond_broadcast(&p->changed);
    pthread_mutex_unlock(&p->mu);
    future_finish_list(done);
    total += (size_t)n;
  }
  return total;
}

static size_t drain_results(struct collector *c) {
  return collector_drain(c->p, c->buf, c->cap);
}

/* ------------------------------------------------------ workers */

/* Forks a worker for empty place `i`; *pid and *deathfd (OUT) are its pid
 * and the read end of its death pipe. Needs no lock: only the collector
 * forks, and the place is the collector's until place_worker_locked()
 * publishes it. Returns 0 or PP_EFORK. */
static int fork_worker(pp_pool *p, int i, pid_t *pid, int *deathfd) {
  struct worker_record *rec = &p->sh->workers[i];
  sigset_t all, old;
  int death[2];

  if (pipe2(death, O_CLOEXEC) != 0)
    return PP_EFORK;
  atomic_store(&rec->init_status, 1);
  atomic_store(&rec->current, 0);
  atomic_store(&rec->pid, 0);
  rec->waiting = 0;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  *pid = PP_TEST_FORK_FAILS() ? -1 : fork();
  if (*pid == 0) {
    close(death[0]);
    worker_main(p->sh, i, p->opts.initializer, p->opts.initarg,
                p->opts.max_tasks_per_worker);
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  close(death[1]);
  if (*pid < 0) {
    close(death[0]);
    return PP_EFORK;
  }
  *deathfd = death[0];
  return 0;
}

/* With mu held: records the worker forked for place `i`. */
static void place_worker_locked(pp_pool *p, int i, pid_t pid, int deathfd) {
  p->pids[i] = pid;
  p->deathfds[i] = deathfd;
  p->live++;
}

/* With mu held: forks the worker for place `i`. Returns 0 or PP_EFORK. */
static int spawn_locked(pp_pool *p, int i) {
  pid_t pid;
  int deathfd, rc = fork_worker(p, i, &pid, &deathfd);
  if (rc == 0)
    place_worker_locked(p, i, pid, deathfd);
  return rc;
}

/* With mu held: SIGKILLs worker place `worker`. Its pid is not reaped yet
 * (pids[] is cleared when it is), so it cannot name another process. */
int collector_kill_worker_locked(pp_pool *p, int worker) {
  if (worker < 0 || worker >= p->nworkers || p->pids[worker] <= 0)
    return PP_EINVAL;
  return kill(p->pids[worker], SIGKILL) == 0 ? 0 : PP_ESYS;
}

/* Says how a worker ended, for the futures it fails. */
static void describe_exit(char *buf, size_t size, pid_t pid, int status) {
  if (WIFEXITED(status))
    snprintf(buf, size, "worker %d exited with status %d while running it",
             (int)pid, WEXITSTATUS(status));
  else if (WIFSIGNALED(status))
    snprintf(buf, size, "worker %d was killed by signal %d (%s)", (int)pid,
             WTERMSIG(status), strsignal(WTERMSIG(status)));
  else
    snprintf(buf, size, "worker %d ended", (int)pid);
}

/* With mu held: queues slot `index` again, or keeps it for later when the
 * ring is full. */
static void requeue_locked(pp_pool *p, uint32_t index) {
  struct backlog *b;

  if (pool_queue_frame(p, index, RING_NOWAIT) == 0)
    return;
  if ((b = malloc(sizeof *b)) == NULL) {
    pp_future *none = NULL;
    collector_fail_slot_locked(p, index, PP_ENOMEM, "out of memory", &none);
    return;
  }
  b->id = ((uint64_t)p->slots[index].gen << 32) | index;
  b->next = NULL;
  *p->backlog_tail = b;
  p->backlog_tail = &b->next;
}

/* With mu held: queues what waited for ring room. */
static void flush_backlog_locked(pp_pool *p) {
  while (p->backlog) {
    struct backlog *b = p->backlog;
    struct slot *s = &p->slots[id_slot(b->id)];
    if (s->kind && s->gen == id_gen(b->id) &&
        word_state(pool_slot_word(p, id_slot(b->id))) == SLOT_QUEUED &&
        pool_queue_frame(p, id_slot(b->id), RING_NOWAIT) != 0)
      return;
    p->backlog = b->next;
    if (!p->backlog)
      p->backlog_tail = &p->backlog;
    free(b);
  }
}

/* With mu held: what becomes of a task whose worker died running it. */
static void settle_running_locked(pp_pool *p, uint32_t index, const char *cause,
                                  pp_future **done) {
  struct slot *s = &p->slots[index];
  char msg[PP_MESSAGE_MAX];

  if (s->cancel_running) {
    collector_fail_slot_locked(p, index, PP_ECANCELLED,
                               "cancelled while running", done);
  } else if (s->expired) {
    snprintf(msg, sizeof msg, "ran past its timeout of %gs; worker killed",
             s->timeout);
    collector_fail_slot_locked(p, index, PP_EDEADLINE, msg, done);
  } else if (s->attempts < p->opts.retries) {
    s->attempts++;
    s->items_left = s->items;
    requeue_locked(p, index);
  } else {
    collector_fail_slot_locked(p, index, PP_ECRASHED, cause, done);
  }
}

/* With mu held: every task whose word names dead worker `w` is settled:
 * RUNNING ones failed or retried, CLAIMED ones queued again. */
static void settle_worker_tasks_locked(pp_pool *p, int w, const char *cause,
                                       pp_future **done) {
  for (uint32_t i = 0; i < p->sh->nslots; i++) {
    uint64_t word = pool_slot_word(p, i);
    enum slot_state st = word_state(word);
    struct slot *s = &p->slots[i];
    if ((st != SLOT_RUNNING && st != SLOT_CLAIMED) || word_worker(word) != w ||
        !s->kind || s->gen != word_gen(word))
      continue;
    if (st == SLOT_RUNNING)
      settle_running_locked(p, i, cause, done);
    else
      requeue_locked(p, i);
  }
}

/* With mu held: fails every task in flight, for a pool that cannot run
 * tasks any more. */
static void break_pool_locked(pp_pool *p, int status, const char *msg,
                              pp_future **done) {
  p->broken = status;
  for (uint32_t i = 0; i < p->sh->nslots; i++)
    if (p->slots[i].kind)
      collector_fail_slot_locked(p, i, status, msg, done);
}

/* Whether a dead worker's place must be filled: always while the pool
 * runs; after shutdown only while tasks wait in the ring. */
static int wants_worker_locked(pp_pool *p) {
  int queued;
  if (p->stop_collector || p->broken)
    return 0;
  if (!p->sh->closing)
    return 1;
  ring_lock(p->sh->tasks);
  queued = ring_count_locked(p->sh->tasks) > 0;
  ring_unlock(p->sh->tasks);
  return queued || p->backlog != NULL;
}

/* Reaps worker `w` if it has exited, and deals with the consequences. */
static void reap(struct collector *c, int w) {
  pp_pool *p = c->p;
  struct worker_record *rec = &p->sh->workers[w];
  char cause[PP_MESSAGE_MAX];
  pp_future *done = NULL;
  int init_status, status = 0;
  pid_t got;

  /* End-of-file on the death pipe comes as the worker exits, a moment
   * before it can be reaped: until then, poll() is told to look again. */
  while ((got = waitpid(p->pids[w], &status, WNOHANG)) < 0 && errno == EINTR)
    ;
  if (got == 0) {
    c->hung_up[w] = 1;
    return;
  }
  c->hung_up[w] = 0;
  describe_exit(cause, sizeof cause, p->pids[w], status);
  if (rec->waiting)
    ring_forget_reader(p->sh->tasks);
  drain_results(c); /* what it put before dying counts */
  init_status = atomic_load(&rec->init_status);
  pthread_mutex_lock(&p->mu);
  close(p->deathfds[w]);
  p->deathfds[w] = -1;
  p->pids[w] = 0;
  p->live--;
  settle_worker_tasks_locked(p, w, cause, &done);
  if (init_status > 1 || (init_status == 1 && !p->started)) {
    /* Its initializer failed (or, before the pool started, died): Python's
     * executor calls that a broken pool, and so do we, unless
     * pp_pool_create() is still waiting to say so. A worker killed from
     * outside during its initializer, later on, is just replaced. */
    snprintf(cause, sizeof cause, "worker initializer failed (%d)",
             init_status);
    if (!p->started && !p->opts.start_in_background)
      p->create_status = PP_EINIT;
    else
      break_pool_locked(p, PP_EINIT, cause, &done);
  }
  if (wants_worker_locked(p) && (p->started || p->opts.start_in_background) &&
      spawn_locked(p, w) != 0) {
    p->next_spawn_ns = pp_now_ns() + RESPAWN_BACKOFF_NS;
    if (p->live == 0)
      break_pool_locked(p, PP_EFORK, "could not fork a worker", &done);
  }
  pthread_cond_broadcast(&p->changed);
  pthread_mutex_unlock(&p->mu);
  future_finish_list(done);
}

/* Forks the workers missing after a failed fork, once the backoff ends. */
static void respawn_missing(pp_pool *p) {
  if (!p->next_spawn_ns || pp_now_ns() < p->next_spawn_ns)
    return;
  pthread_mutex_lock(&p->mu);
  p->next_spawn_ns = 0;
  for (int i = 0; i < p->nworkers; i++)
    if (p->pids[i] == 0 && wants_worker_locked(p) && spawn_locked(p, i) != 0)
      p->next_spawn_ns = pp_now_ns() + RESPAWN_BACKOFF_NS;
  pthread_mutex_unlock(&p->mu);
}

/* Kills the workers of tasks that ran past their timeout. */
static void enforce_timeouts(pp_pool *p) {
  uint64_t now = pp_now_ns();

  pthread_mutex_lock(&p->mu);
  for (int w = 0; w < p->nworkers && p->timed_tasks; w++) {
    struct worker_record *rec = &p->sh->workers[w];
    uint64_t id = atomic_load(&rec->current);
    uint64_t started = atomic_load(&rec->started_ns);
    struct slot *s = &p->slots[id_slot(id)];
    if (!id || p->pids[w] == 0 || !s->kind || s->gen != id_gen(id) ||
        s->timeout <= 0 || s->expired)
      continue;
    if (now - started > (uint64_t)(s->timeout * 1e9) &&
        atomic_load(&rec->current) == id) {
      s->expired = 1;
      collector_kill_worker_locked(p, w);
    }
  }
  pthread_mutex_unlock(&p->mu);
}

/* Marks the pool started once every first worker's initializer passed. */
static void check_started(pp_pool *p) {
  pthread_mutex_lock(&p->mu);
  if (!p->started && !p->create_status) {
    int all = 1;
    for (int i = 0; i < p->nworkers; i++)
      all &= atomic_load(&p->sh->workers[i].init_status) == 0;
    if (all) {
      p->started = 1;
      pthread_cond_broadcast(&p->changed);
    }
  }
  pthread_mutex_unlock(&p->mu);
}

/* ------------------------------------------------------ the loop */

/* Sleeps until results, a death, a poke or the next timer. See shared.c
 * for why results put meanwhile cannot be missed. */
static void sleep_once(struct collector *c, int timeout_ms) {
  pp_pool *p = c->p;
  int n = 0, pending;

  c->fds[n++] = (struct pollfd){p->sh->wake_fd, POLLIN, 0};
  for (int i = 0; i < p->nworkers; i++) {
    int fd = c->hung_up[i] ? -1 : p->deathfds[i];
    c->fds[n++] = (struct pollfd){fd, POLLIN, 0};
    if (c->hung_up[i])
      timeout_ms = 1;
  }
  atomic_store(&p->sh->collector_asleep, 1);
  ring_lock(p->sh->results);
  pending = ring_count_locked(p->sh->results) > 0;
  ring_unlock(p->sh->results);
  if (!pending && poll(c->fds, (nfds_t)n, timeout_ms) > 0 &&
      (c->fds[0].revents & POLLIN)) {
    uint64_t v;
    ssize_t r = read(p->sh->wake_fd, &v, sizeof v);
    (void)r;
  }
  atomic_store(&p->sh->collector_asleep, 0);
  for (int i = 0; i < p->nworkers; i++)
    if (c->hung_up[i] ||
        (c->fds[1 + i].fd >= 0 && (c->fds[1 + i].revents & (POLLIN | POLLHUP))))
      reap(c, i);
}

/* How long the next sleep may last: timers need short naps. */
static int nap_ms(pp_pool *p) {
  int timed;
  pthread_mutex_lock(&p->mu);
  timed = p->timed_tasks > 0 || p->backlog || p->next_spawn_ns || !p->started;
  pthread_mutex_unlock(&p->mu);
  return timed ? 5 : 1000;
}

/* Whether the collector may stop: asked to, and every worker reaped. */
static int finished(pp_pool *p) {
  int done;
  pthread_mutex_lock(&p->mu);
  done = p->stop_collector && p->live == 0;
  if (p->stop_collector && p->live > 0 && p->in_flight == 0) {
    /* Workers exit by themselves once closing; a wedged one is killed. */
    for (int i = 0; i < p->nworkers; i++)
      if (p->pids[i] && atomic_load(&p->sh->workers[i].current) != 0)
        collector_kill_worker_locked(p, i);
  }
  pthread_mutex_unlock(&p->mu);
  return done;
}

/* Forks the first workers. While pp_pool_create() waits, a failed fork is
 * its error. Starting in the background, a failed fork is tried again later
 * as after a death, and breaks the pool if no worker runs; forks happen
 * outside the lock, so that tasks are queued and taken meanwhile. */
static void spawn_all(pp_pool *p) {
  pp_future *done = NULL;
  pid_t pid;
  int deathfd;

  pthread_mutex_lock(&p->mu);
  for (int i = 0; i < p->nworkers && wants_worker_locked(p); i++) {
    pthread_mutex_unlock(&p->mu);
    int rc = fork_worker(p, i, &pid, &deathfd);
    pthread_mutex_lock(&p->mu);
    if (rc == 0) {
      place_worker_locked(p, i, pid, deathfd);
    } else if (!p->opts.start_in_background) {
      p->create_status = PP_EFORK;
      break;
    } else {
      p->next_spawn_ns = pp_now_ns() + RESPAWN_BACKOFF_NS;
    }
  }
  if (p->live == 0 && !p->create_status && wants_worker_locked(p))
    break_pool_locked(p, PP_EFORK, "could not fork a worker", &done);
  pthread_cond_broadcast(&p->changed);
  pthread_mutex_unlock(&p->mu);
  future_finish_list(done);
}

void *collector_main(void *arg) {
  struct collector c = {.p = arg};
  pp_pool *p = c.p;

  c.cap = p->sh->max_frame + 8 > 256 * 1024 ? p->sh->max_frame + 8 : 256 * 1024;
  c.buf = malloc(c.cap);
  c.fds = malloc(((size_t)p->nworkers + 1) * sizeof *c.fds);
  c.hung_up = calloc((size_t)p->nworkers, 1);
  if (!c.buf || !c.fds || !c.hung_up) {
    pthread_mutex_lock(&p->mu);
    p->create_status = PP_ENOMEM;
    pthread_cond_broadcast(&p->changed);
    pthread_mutex_unlock(&p->mu);
    p->stop_collector = 1;
  } else {
    pthread_mutex_lock(&p->mu);
    p->collector_ready = 1;
    pthread_cond_broadcast(&p->changed);
    pthread_mutex_unlock(&p->mu);
    spawn_all(p);
  }
  while (!finished(p)) {
    size_t n = drain_results(&c);
    check_started(p);
    if (p->timed_tasks)
      enforce_timeouts(p);
    pthread_mutex_lock(&p->mu);
    flush_backlog_locked(p);
    pthread_mutex_unlock(&p->mu);
    respawn_missing(p);
    sleep_once(&c, n ? 0 : nap_ms(p));
  }
  free(c.hung_up);
  free(c.fds);
  free(c.buf);
  return NULL;
}
