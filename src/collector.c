/*
 * The collector: one thread per pool run by processes, in the master, that
 *  - takes result frames off the result ring and hands each item's outcome
 *    to the slot table (then runs the deferred callbacks, outside the lock);
 *  - forks the workers, notices a worker's death through its pipe, reaps
 *    it, fails or retries what it was running, queues again what it had
 *    claimed, and forks a replacement;
 *  - kills the worker of a task that ran past its timeout, and, once the
 *    pool closes with nothing left to run, any worker that does not leave
 *    within LEAVE_NS (a stopped one, say).
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
#include "proc.h"
#include "testhook.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define DRAIN_MAX 4096
#define RESPAWN_BACKOFF_NS 100000000u
#define LEAVE_NS 2000000000u /* 2 s for idle workers to exit when closing */

struct collector {
  pp_pool *p;
  struct pp__procs *e;
  unsigned char *buf;
  size_t cap;
  struct pollfd *fds;
  char *hung_up; /* [nworkers]: death pipe at end-of-file, not reaped yet
                    (the worker is exiting, or a task closed the pipe) */
};

/* ------------------------------------------------------ resolving */

/* With mu held: applies one result frame. */
static void apply_result(pp_pool *p, const unsigned char *frame, size_t len,
                         struct pp__deferred **later) {
  struct pp__result_hdr rh;

  if (len < sizeof rh)
    return;
  memcpy(&rh, frame, sizeof rh);
  if (!pp__slot_by_id(&p->st, rh.id))
    return; /* a late answer for a slot already failed or reused */
  pp__slot_resolve_run_locked(p, pp__id_slot(rh.id), rh.first, rh.count,
                              frame + sizeof rh, len - sizeof rh, rh.run_ns,
                              later);
}

/* Applies the result frames on the ring (`buf`, of `cap` bytes, holds one
 * that wraps around its end), then runs the deferred callbacks. Called by the
 * collector (`wait`), and by a thread waiting for a result, which thereby
 * skips a wake-up of the collector (it gives way when another thread is
 * draining). Taking frames off and applying them happen under drain_mu, so
 * that once a drain returns, every frame put before it is applied: reap()
 * relies on it, or a result in another thread's hands would be a crash.
 * Returns the number of frames. */
struct applying {
  pp_pool *p;
  struct pp__deferred *later;
};

/* pp__ring_consume()'s callback: applies a frame where it lies. */
static void apply_in_place(void *ctx, void *payload, size_t len) {
  struct applying *a = ctx;
  apply_result(a->p, payload, len, &a->later);
}

size_t pp__collector_drain(pp_pool *p, void *buf, size_t cap, int wait) {
  struct pp__procs *e = pp__procs_of(p);
  size_t total = 0, n;

  if (wait)
    pthread_mutex_lock(&e->drain_mu);
  else if (pthread_mutex_trylock(&e->drain_mu) != 0)
    return 0;
  do {
    struct applying a = {p, NULL};
    /* Frames are applied where they lie in the ring (drain_mu makes this
     * thread its only consumer), then head moves past them: no copy. */
    pp__pool_lock(p);
    n = pp__ring_consume(e->sh->results, buf, cap, DRAIN_MAX, apply_in_place,
                         &a);
    /* Results came back: the workers are getting through what is queued,
     * so what was held joins it. */
    pp__slots_release_held_locked(p, &a.later);
    pp__pool_unlock(p);
    pp__deferred_run(a.later);
    total += n;
  } while (n > 0);
  pthread_mutex_unlock(&e->drain_mu); /* taken above */
  return total;
}

static size_t drain_results(struct collector *c) {
  return pp__collector_drain(c->p, c->buf, c->cap, 1);
}

/* ------------------------------------------------------ workers */

/* Forks a worker for empty place `i`; *pid and *deathfd (OUT) are its pid
 * and the read end of its death pipe. Needs no lock: only the collector
 * forks, and the place is the collector's until place_worker_locked()
 * publishes it. Returns 0 or PP_EFORK. */
static int fork_worker(pp_pool *p, int i, pid_t *pid, int *deathfd) {
  struct pp__shared *sh = pp__procs_of(p)->sh;
  struct pp__worker_record *rec = &sh->workers[i];
  sigset_t all, old;
  int death[2];

  if (pipe2(death, O_CLOEXEC) != 0)
    return PP_EFORK;
  atomic_store(&rec->init, PP__INIT_RUNNING);
  atomic_store(&rec->current, 0);
  atomic_store(&rec->pid, 0);
  atomic_store(&rec->waiting, 0);
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  *pid = PP_TEST_FORK_FAILS() ? -1 : fork();
  if (*pid == 0) {
    close(death[0]);
    pp__worker_main(sh, i, p->opts.initializer, p->opts.initarg,
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
  struct pp__procs *e = pp__procs_of(p);
  PP__ASSERT_LOCKED(p);
  e->pids[i] = pid;
  e->deathfds[i] = deathfd;
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

/* With mu held: SIGKILLs worker place `worker` for task `id` (0: whatever
 * it does), unless it has finished that task: then PP_EINVAL. The doomed
 * mark (proc.h) keeps the worker from going on to another task first. Its
 * pid is not reaped yet (pids[] is cleared when it is), so it cannot name
 * another process. */
int pp__collector_kill_locked(pp_pool *p, int worker, uint64_t id) {
  struct pp__procs *e = pp__procs_of(p);

  PP__ASSERT_LOCKED(p);
  if (worker < 0 || worker >= p->nworkers || e->pids[worker] <= 0)
    return PP_EINVAL;
  if (id) {
    uint64_t expect = id;
    if (!atomic_compare_exchange_strong(&e->sh->workers[worker].current,
                                        &expect, id | PP__DOOMED))
      return PP_EINVAL;
  }
  return kill(e->pids[worker], SIGKILL) == 0 ? 0 : PP_ESYS;
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

/* With mu held: what becomes of a task whose worker died running it. */
static void settle_running_locked(pp_pool *p, uint32_t index, const char *cause,
                                  struct pp__deferred **later) {
  struct pp__slot *s = &p->st.slots[index];
  char msg[PP__MESSAGE_MAX];

  if (s->cancel_running) {
    pp__slot_fail_locked(p, index, PP_ECANCELLED, "cancelled while running",
                         later);
  } else if (s->expired) {
    snprintf(msg, sizeof msg, "ran past its timeout of %gs; worker killed",
             (double)s->timeout_ns / 1e9);
    pp__slot_fail_locked(p, index, PP_EDEADLINE, msg, later);
  } else if (s->attempts < p->opts.retries) {
    s->attempts++;
    s->items_left = s->items;
    pp__slot_requeue_locked(p, index, later);
  } else {
    pp__slot_fail_locked(p, index, PP_ECRASHED, cause, later);
  }
}

/* With mu held: every task whose word names dead worker `w` is settled:
 * RUNNING ones failed or retried, CLAIMED ones queued again. */
static void settle_worker_tasks_locked(pp_pool *p, int w, const char *cause,
                                       struct pp__deferred **later) {
  for (uint32_t i = pp__slots_used_from(&p->st, 0); i != PP__NO_SLOT;
       i = pp__slots_used_from(&p->st, i + 1)) {
    uint64_t word = pp__slot_word_of(&p->st, i);
    enum pp__slot_state st = pp__word_state(word);
    struct pp__slot *s = &p->st.slots[i];
    if ((st != PP__SLOT_RUNNING && st != PP__SLOT_CLAIMED) ||
        pp__word_worker(word) != w || s->gen != pp__word_gen(word))
      continue;
    if (st == PP__SLOT_RUNNING)
      settle_running_locked(p, i, cause, later);
    else
      pp__slot_requeue_locked(p, i, later);
  }
}

/* Whether a dead worker's place must be filled: always while the pool
 * runs; after shutdown only while tasks wait. */
static int wants_worker_locked(pp_pool *p) {
  struct pp__procs *e = pp__procs_of(p);
  int queued;

  PP__ASSERT_LOCKED(p);
  if (e->stop || p->broken)
    return 0;
  if (!atomic_load(&e->sh->closing))
    return 1;
  pp__ring_lock(e->sh->tasks);
  queued = pp__ring_count_locked(e->sh->tasks) > 0;
  pp__ring_unlock(e->sh->tasks);
  return queued || p->st.backlog != NULL;
}

/* With mu held: a worker's initializer failed. Python's executor calls that
 * a broken pool, and so do we, unless pp_pool_create() is still waiting to
 * say so. */
static void init_failed_locked(pp_pool *p, int code,
                               struct pp__deferred **later) {
  struct pp__procs *e = pp__procs_of(p);
  char msg[64];

  snprintf(msg, sizeof msg, "worker initializer failed (%d)", code);
  if (!e->started && !p->opts.start_in_background)
    e->create_status = PP_EINIT;
  else
    pp__slots_break_locked(p, PP_EINIT, msg, later);
}

/* With mu held: forks the replacement of dead worker `w` when one is
 * wanted; a failed fork is retried after a backoff. */
static void replace_locked(pp_pool *p, int w, struct pp__deferred **later) {
  struct pp__procs *e = pp__procs_of(p);
  if (!wants_worker_locked(p) || !(e->started || p->opts.start_in_background))
    return;
  if (spawn_locked(p, w) != 0) {
    e->next_spawn_ns = pp__now_ns() + RESPAWN_BACKOFF_NS;
    if (p->live == 0)
      pp__slots_break_locked(p, PP_EFORK, "could not fork a worker", later);
  }
}

/* Reaps worker `w` if it has exited, and deals with the consequences. */
static void reap(struct collector *c, int w) {
  pp_pool *p = c->p;
  struct pp__procs *e = c->e;
  struct pp__worker_record *rec = &e->sh->workers[w];
  char cause[PP__MESSAGE_MAX];
  struct pp__deferred *later = NULL;
  int init, status = 0;
  pid_t got;

  /* End-of-file on the death pipe comes as the worker exits, a moment
   * before it can be reaped: until then, poll() is told to look again. */
  while ((got = waitpid(e->pids[w], &status, WNOHANG)) < 0 && errno == EINTR)
    ;
  if (got == 0) {
    c->hung_up[w] = 1;
    return;
  }
  c->hung_up[w] = 0;
  describe_exit(cause, sizeof cause, e->pids[w], status);
  if (atomic_load(&rec->waiting))
    pp__ring_forget_reader(e->sh->tasks);
  drain_results(c); /* what it put before dying counts */
  init = atomic_load(&rec->init);
  pp__pool_lock(p);
  close(e->deathfds[w]);
  e->deathfds[w] = -1;
  e->pids[w] = 0;
  p->live--;
  settle_worker_tasks_locked(p, w, cause, &later);
  /* A worker killed from outside during its initializer, once the pool
   * has started, is just replaced; before, it counts as a failure. */
  if (init == PP__INIT_FAILED || (init == PP__INIT_RUNNING && !e->started))
    init_failed_locked(p, atomic_load(&rec->init_code), &later);
  replace_locked(p, w, &later);
  pthread_cond_broadcast(&p->changed);
  pp__pool_unlock(p);
  pp__deferred_run(later);
}

/* With mu held: forks the workers missing after a failed fork, once the
 * backoff ends. */
static void respawn_missing_locked(pp_pool *p) {
  struct pp__procs *e = pp__procs_of(p);

  if (e->next_spawn_ns && pp__now_ns() >= e->next_spawn_ns) {
    e->next_spawn_ns = 0;
    for (int i = 0; i < p->nworkers; i++)
      if (e->pids[i] == 0 && wants_worker_locked(p) && spawn_locked(p, i) != 0)
        e->next_spawn_ns = pp__now_ns() + RESPAWN_BACKOFF_NS;
  }
}

/* With mu held: whether worker `w` has run its task past its timeout;
 * *id (OUT) is that task. The record is read as a pair: started_ns is only
 * trusted if current still names the same task after it was read, and the
 * clock is read last, so a task that starts meanwhile never looks old. */
static int overdue_locked(pp_pool *p, int w, uint64_t *id) {
  struct pp__worker_record *rec = &pp__procs_of(p)->sh->workers[w];
  struct pp__slot *s;
  uint64_t started, now;

  *id = atomic_load(&rec->current);
  if (!*id || (*id & PP__DOOMED) || !(s = pp__slot_by_id(&p->st, *id)) ||
      !s->timeout_ns || s->expired || s->cancel_running)
    return 0;
  started = atomic_load(&rec->started_ns);
  if (atomic_load(&rec->current) != *id)
    return 0;
  now = pp__now_ns();
  return now > started && now - started > s->timeout_ns;
}

/* With mu held: kills the workers of tasks that ran past their timeout. */
static void enforce_timeouts_locked(pp_pool *p) {
  struct pp__procs *e = pp__procs_of(p);
  uint64_t id;

  for (int w = 0; w < p->nworkers && p->st.timed; w++)
    if (e->pids[w] && overdue_locked(p, w, &id) &&
        pp__collector_kill_locked(p, w, id) == 0)
      pp__slot_by_id(&p->st, id)->expired = 1;
}

/* With mu held: marks the pool started once every first worker's
 * initializer passed. */
static void check_started_locked(pp_pool *p) {
  struct pp__procs *e = pp__procs_of(p);
  int all = 1;

  if (e->started || e->create_status)
    return;
  for (int i = 0; i < p->nworkers; i++)
    all &= atomic_load(&e->sh->workers[i].init) == PP__INIT_PASSED;
  if (all) {
    e->started = 1;
    pthread_cond_broadcast(&p->changed);
  }
}

/* With mu held: once the pool is closing with nothing in flight, workers
 * leave by themselves; one that has not within LEAVE_NS (stopped, or
 * wedged) is killed, so that shutdown and destroy never wait for ever. */
static void hurry_leavers_locked(pp_pool *p) {
  struct pp__procs *e = pp__procs_of(p);
  uint64_t now;

  if (!atomic_load(&e->sh->closing) || p->st.in_flight > 0 || p->live == 0) {
    e->leave_by_ns = 0;
    return;
  }
  now = pp__now_ns();
  if (e->leave_by_ns == 0) {
    e->leave_by_ns = now + LEAVE_NS;
    return;
  }
  if (now < e->leave_by_ns)
    return;
  for (int i = 0; i < p->nworkers; i++)
    if (e->pids[i])
      pp__collector_kill_locked(p, i, 0);
}

/* With mu held, once stopping with nothing in flight: a worker still inside
 * a task (one doomed, or whose task was failed meanwhile) is killed at
 * once; the others get LEAVE_NS to exit. */
static void kill_busy_locked(pp_pool *p) {
  struct pp__procs *e = pp__procs_of(p);

  if (!e->stop || p->st.in_flight > 0)
    return;
  for (int i = 0; i < p->nworkers; i++)
    if (e->pids[i] && atomic_load(&e->sh->workers[i].current) != 0)
      pp__collector_kill_locked(p, i, 0);
}

/* ------------------------------------------------------ the loop */

/* Sleeps until results, a death, a poke or the next timer. See shared.c
 * for why results put meanwhile cannot be missed. */
static void sleep_once(struct collector *c, int timeout_ms) {
  pp_pool *p = c->p;
  struct pp__shared *sh = c->e->sh;
  int n = 0, pending;

  c->fds[n++] = (struct pollfd){sh->wake_fd, POLLIN, 0};
  for (int i = 0; i < p->nworkers; i++) {
    int fd = c->hung_up[i] ? -1 : c->e->deathfds[i];
    c->fds[n++] = (struct pollfd){fd, POLLIN, 0};
    if (c->hung_up[i])
      timeout_ms = 1;
  }
  atomic_store(&sh->collector_asleep, 1);
  pp__ring_lock(sh->results);
  pending = pp__ring_count_locked(sh->results) > 0;
  pp__ring_unlock(sh->results);
  if (atomic_load(&sh->helpers) > 0) {
    /* A master thread takes results itself and nobody wakes this one for
     * them: it looks every millisecond, for the pool's other waiters. */
    pending = 0;
    timeout_ms = 1;
  }
  if (!pending && poll(c->fds, (nfds_t)n, timeout_ms) > 0 &&
      (c->fds[0].revents & POLLIN)) {
    uint64_t v;
    ssize_t r = read(sh->wake_fd, &v, sizeof v);
    (void)r;
  }
  atomic_store(&sh->collector_asleep, 0);
  for (int i = 0; i < p->nworkers; i++)
    if (c->hung_up[i] ||
        (c->fds[1 + i].fd >= 0 && (c->fds[1 + i].revents & (POLLIN | POLLHUP))))
      reap(c, i);
}

/* One round of the collector's duties besides results, under mu. Returns
 * how long the next sleep may last (timers need short naps), or -1 when
 * the collector may stop: asked to, and every worker reaped. */
static int duties(pp_pool *p) {
  struct pp__procs *e = pp__procs_of(p);
  struct pp__deferred *later = NULL;
  int nap;

  pp__pool_lock(p);
  if (e->stop && p->live == 0) {
    pp__pool_unlock(p);
    return -1;
  }
  check_started_locked(p);
  if (p->st.timed)
    enforce_timeouts_locked(p);
  pp__slots_release_held_locked(p, &later);
  pp__slots_flush_backlog_locked(p);
  respawn_missing_locked(p);
  hurry_leavers_locked(p);
  kill_busy_locked(p);
  nap = p->st.timed > 0 || p->st.backlog || e->next_spawn_ns || !e->started ||
                e->leave_by_ns
            ? 5
            : 1000;
  if (atomic_load(&p->st.nheld)) /* held submits are queued within 1 ms */
    nap = 1;
  pp__pool_unlock(p);
  pp__deferred_run(later);
  return nap;
}

/* Forks the first workers. While pp_pool_create() waits, a failed fork is
 * its error. Starting in the background, a failed fork is tried again later
 * as after a death, and breaks the pool if no worker runs; forks happen
 * outside the lock, so that tasks are queued and taken meanwhile. */
static void spawn_all(pp_pool *p) {
  struct pp__procs *e = pp__procs_of(p);
  struct pp__deferred *later = NULL;
  pid_t pid;
  int deathfd;

  pp__pool_lock(p);
  for (int i = 0; i < p->nworkers && wants_worker_locked(p); i++) {
    pp__pool_unlock(p);
    int rc = fork_worker(p, i, &pid, &deathfd);
    pp__pool_lock(p);
    if (rc == 0) {
      place_worker_locked(p, i, pid, deathfd);
    } else if (!p->opts.start_in_background) {
      e->create_status = PP_EFORK;
      break;
    } else {
      e->next_spawn_ns = pp__now_ns() + RESPAWN_BACKOFF_NS;
    }
  }
  if (p->live == 0 && !e->create_status && wants_worker_locked(p))
    pp__slots_break_locked(p, PP_EFORK, "could not fork a worker", &later);
  pthread_cond_broadcast(&p->changed);
  pp__pool_unlock(p);
  pp__deferred_run(later);
}

/* Makes the collector's buffers; tells pp_pool_create() either way. */
static int collector_setup(struct collector *c) {
  pp_pool *p = c->p;
  int rc = 0;

  c->cap = c->e->sh->max_frame + 8 > 256 * 1024 ? c->e->sh->max_frame + 8
                                                : 256 * 1024;
  c->buf = malloc(c->cap);
  c->fds = malloc(((size_t)p->nworkers + 1) * sizeof *c->fds);
  c->hung_up = calloc((size_t)p->nworkers, 1);
  pp__pool_lock(p);
  if (!c->buf || !c->fds || !c->hung_up) {
    c->e->create_status = PP_ENOMEM;
    c->e->stop = 1;
    rc = PP_ENOMEM;
  } else {
    c->e->collector_ready = 1;
  }
  pthread_cond_broadcast(&p->changed);
  pp__pool_unlock(p);
  return rc;
}

/* The collector wakes often, for moments: as SCHED_BATCH it does not
 * preempt the thread it wakes beside (the scheduler often puts it on the
 * core of the master thread that submits, the workers on the other), yet
 * it keeps its fair share of the CPU. SCHED_RESET_ON_FORK: the workers it
 * forks are ordinary threads again. Best effort: an error changes nothing
 * but speed. */
static void stand_back(void) {
#if defined(SCHED_BATCH) && defined(SCHED_RESET_ON_FORK)
  struct sched_param none = {0};
  (void)sched_setscheduler(0, SCHED_BATCH | SCHED_RESET_ON_FORK, &none);
#endif
}

void *pp__collector_main(void *arg) {
  struct collector c = {.p = arg, .e = pp__procs_of(arg)};
  pp_pool *p = c.p;
  int nap = 0;

  stand_back();
  if (collector_setup(&c) == 0)
    spawn_all(p);
  while ((nap = duties(p)) >= 0) {
    size_t n = drain_results(&c);
    sleep_once(&c, n ? 0 : nap);
  }
  free(c.hung_up);
  free(c.fds);
  free(c.buf);
  return NULL;
}
