/*
 * The reaper: one thread per pool run by processes, in the master, that
 *  - has the spawner (spawner.c) fork the workers; it forked the spawner,
 *    which dies with it (PR_SET_PDEATHSIG follows the thread that forked),
 *    so it outlives every worker;
 *  - notices a worker's death through its pipe, fails or retries what it
 *    was running, queues again what it had claimed, and has it reaped and
 *    a replacement forked (one request to the spawner), or tries again
 *    after a failed fork.
 *
 * DESIGN
 * It sleeps in ppoll() on one death pipe per worker and on its own eventfd
 * (written when the pool stops): a worker holds the only write end of its
 * pipe, so the read end reports end-of-file when it exits, however it
 * exits. (pidfds would do the same, but valgrind and older kernels lack
 * them.) A worker is signalled only while it has not been reaped, and by
 * its pidfd where it has one, so the signal cannot reach another process.
 *
 * Deaths have a thread of their own, apart from the collector, because
 * they are urgent and the collector is not: the collector runs as
 * SCHED_BATCH, so as not to preempt the threads it serves, and a wake-up
 * of it may then wait a whole scheduler slice (3 ms) for a core. The
 * reaper, an ordinary thread, gets one sooner. It may still be queued
 * behind a busy SCHED_BATCH worker until that worker's slice ends, so the
 * workers give way while a peer's place is empty (worker.c, give_way()),
 * and a dead worker's place is filled within a fraction of a millisecond.
 * A fork is asked for outside pool->mu, so that the master's threads go
 * on meanwhile; a place being forked belongs to the reaper until
 * place_worker_locked() publishes it.
 */
#include "proc.h"
#include "testhook.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RESPAWN_BACKOFF_NS 100000000u
#define REAP_AGAIN_NS 20000u /* a worker whose pipe ended is reaped soon */

/* ------------------------------------------------------ forking */

/* Has a worker forked for empty place `i`, `dead` (the pid of the dead
 * worker it replaces, or 0) reaped on the way; *pid, *pidfd and *deathfd
 * (OUT) are its pid, its pidfd (-1: none) and the read end of its death
 * pipe. Needs no lock: only the reaper forks, and the place is its own
 * until place_worker_locked() publishes it. Returns 0 or PP_EFORK, `dead`
 * reaped either way. */
static int fork_worker(pp_pool *p, int i, pid_t dead, pid_t *pid, int *pidfd,
                       int *deathfd) {
  struct pp__worker_record *rec = &pp__procs_of(p)->sh->workers[i];
  int death[2], lost = 1, status;

  atomic_store(&rec->init, PP__INIT_RUNNING);
  atomic_store(&rec->current, 0);
  atomic_store(&rec->pid, 0);
  atomic_store(&rec->waiting, 0);
  if (PP_TEST_FORK_FAILS())
    goto fail;
  /* A spawner found gone is replaced once (the dead worker went with it).
   * It is started before the pipe is made, else it would hold a write end
   * and the pipe never end. */
  for (int tries = 0; tries < 2 && lost; tries++) {
    if (pp__spawner_start(p) != 0 || pipe2(death, O_CLOEXEC) != 0)
      goto fail;
    int rc = pp__spawner_fork(p, i, death[1], dead, pid, pidfd, &lost);
    close(death[1]); /* the worker holds the only write end */
    if (rc == 0) {
      *deathfd = death[0];
      return 0;
    }
    close(death[0]);
    dead = 0; /* reaped by the spawner, or gone with it */
  }
fail:
  if (dead)
    pp__spawner_reap(p, dead, &status);
  return PP_EFORK;
}

/* With mu held: records the worker forked for place `i`. */
static void place_worker_locked(pp_pool *p, int i, pid_t pid, int pidfd,
                                int deathfd) {
  struct pp__procs *e = pp__procs_of(p);
  PP__ASSERT_LOCKED(p);
  e->pids[i] = pid;
  e->pidfds[i] = pidfd;
  e->deathfds[i] = deathfd;
  p->live++;
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

/* With mu held: place `i` is empty and must be filled; marks the fork
 * under way (it happens outside the lock, in spawn()). */
static int claims_place_locked(pp_pool *p, int i) {
  struct pp__procs *e = pp__procs_of(p);

  PP__ASSERT_LOCKED(p);
  if (e->pids[i] != 0 || !wants_worker_locked(p))
    return 0;
  e->forking++; /* until spawn() publishes the place */
  return 1;
}

/* Has the worker for place `i`, claimed by claims_place_locked(), forked
 * (reaping `dead`, as fork_worker()) and publishes it. A failed fork is
 * pp_pool_create()'s error while it waits, else tried again after a
 * backoff. Returns 0 or PP_EFORK. */
static int spawn(pp_pool *p, int i, pid_t dead) {
  struct pp__procs *e = pp__procs_of(p);
  pid_t pid;
  int pidfd, deathfd, poke;
  int rc = fork_worker(p, i, dead, &pid, &pidfd, &deathfd);

  pp__pool_lock(p);
  e->forking--; /* claimed in claims_place_locked() */
  if (rc == 0)
    place_worker_locked(p, i, pid, pidfd, deathfd);
  else if (!e->started && !p->opts.start_in_background)
    e->create_status = PP_EFORK;
  else
    e->next_spawn_ns = pp__now_ns() + RESPAWN_BACKOFF_NS;
  /* Its initializer may have passed already: the collector looks again. */
  poke = rc == 0 && !e->started;
  pthread_cond_broadcast(&p->changed);
  pp__pool_unlock(p);
  if (poke)
    pp__shared_poke_collector(e->sh);
  return rc;
}

/* After a failed fork: a pool with no worker, and tasks to run, is broken
 * (Python's executor would hang instead). */
static void break_if_none(pp_pool *p) {
  struct pp__procs *e = pp__procs_of(p);
  struct pp__deferred *later = NULL;

  pp__pool_lock(p);
  if (p->live == 0 && e->forking == 0 && !e->create_status &&
      wants_worker_locked(p))
    pp__slots_break_locked(p, PP_EFORK, "could not fork a worker", &later);
  pp__pool_unlock(p);
  pp__deferred_run(later);
}

/* Forks the workers of every empty place; after the first fork failed
 * while pp_pool_create() waits, no more. Returns how many forks failed. */
static int spawn_missing(pp_pool *p) {
  struct pp__procs *e = pp__procs_of(p);
  int failed = 0;

  for (int i = 0; i < p->nworkers; i++) {
    pp__pool_lock(p);
    int claimed = !e->create_status && claims_place_locked(p, i);
    pp__pool_unlock(p);
    if (claimed && spawn(p, i, 0) != 0)
      failed++;
  }
  return failed;
}

/* Forks the workers missing after a failed fork, once the backoff ends. */
static void respawn_missing(pp_pool *p) {
  struct pp__procs *e = pp__procs_of(p);
  int due;

  pp__pool_lock(p);
  due = e->next_spawn_ns && pp__now_ns() >= e->next_spawn_ns;
  if (due)
    e->next_spawn_ns = 0;
  pp__pool_unlock(p);
  if (due && spawn_missing(p) > 0)
    break_if_none(p);
}

/* ------------------------------------------------------ deaths */

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

/* A dead worker, reaped only when a failure must say how it ended, or
 * else as its replacement is forked: one round trip to the spawner. */
struct death {
  pp_pool *pool;
  pid_t pid;
  int reaped;
  char cause[PP__MESSAGE_MAX];
};

/* With mu held: reaps d's worker unless it was, and says how it ended. */
static const char *reap_cause_locked(struct death *d) {
  int status;

  if (!d->reaped) {
    pp__spawner_reap(d->pool, d->pid, &status);
    describe_exit(d->cause, sizeof d->cause, d->pid, status);
    d->reaped = 1;
  }
  return d->cause;
}

/* With mu held: what becomes of a task whose worker died running it. */
static void settle_running_locked(pp_pool *p, uint32_t index, struct death *d,
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
    pp__slot_fail_locked(p, index, PP_ECRASHED, reap_cause_locked(d), later);
  }
}

/* With mu held: every task whose word names dead worker `w` is settled:
 * RUNNING ones failed or retried, CLAIMED ones queued again. */
static void settle_worker_tasks_locked(pp_pool *p, int w, struct death *d,
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
      settle_running_locked(p, i, d, later);
    else
      pp__slot_requeue_locked(p, i, later);
  }
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

/* After dead worker `w`'s results were applied: the blocks still lent to
 * it held nothing on its way (a result it was building, or a block kept
 * for the next), so the workers may take them again. */
static void free_blocks_of(struct pp__shared *sh, int w) {
  for (uint32_t b = 0; b < sh->nblocks; b++) {
    uint32_t expect = 1 + (uint32_t)w;
    atomic_compare_exchange_strong(&sh->block_owner[b], &expect,
                                   PP__BLOCK_FREE);
  }
}

/* Deals with the death of worker `w`, whose pipe ended, and has it reaped
 * and replaced when a replacement is wanted. Its place's lock (proc.h)
 * says whether it died: the kernel releases it early in the worker's exit,
 * before the pipe ends, and a worker takes it before it runs a task.
 * Returns 0, or 1 when the worker lives on (a task closed its pipe): then
 * the reaper looks again soon. */
static int reap(pp_pool *p, int w) {
  struct pp__procs *e = pp__procs_of(p);
  struct pp__worker_record *rec = &e->sh->workers[w];
  struct death d = {.pool = p, .pid = e->pids[w]};
  struct pp__deferred *later = NULL;
  int init, replace;

  if (!pp__place_empty(rec))
    return 1;
  if (atomic_load(&rec->waiting))
    pp__ring_forget_reader(e->sh->tasks);
  pp__collector_drain(p, 1); /* what it put before dying counts */
  free_blocks_of(e->sh, w);
  init = atomic_load(&rec->init);
  pp__pool_lock(p);
  close(e->deathfds[w]);
  e->deathfds[w] = -1;
  if (e->pidfds[w] >= 0)
    close(e->pidfds[w]);
  e->pidfds[w] = -1;
  e->pids[w] = 0;
  atomic_store(&rec->pid, 0); /* what kills fall back on: not it any more */
  p->live--;
  settle_worker_tasks_locked(p, w, &d, &later);
  /* A worker killed from outside during its initializer, once the pool
   * has started, is just replaced; before, it counts as a failure. */
  if (init == PP__INIT_FAILED || (init == PP__INIT_RUNNING && !e->started))
    init_failed_locked(p, atomic_load(&rec->init_code), &later);
  replace =
      (e->started || p->opts.start_in_background) && claims_place_locked(p, w);
  /* Not replaced, it is reaped now; the last worker of a pool that forks
   * no more takes the spawner with it, before pp_pool_shutdown() can see
   * the pool empty: once it returns, no process of the pool is left. */
  if (!replace)
    (void)reap_cause_locked(&d);
  if (!replace && p->live == 0 && e->forking == 0 && !wants_worker_locked(p))
    pp__spawner_stop(p);
  pthread_cond_broadcast(&p->changed);
  pp__pool_unlock(p);
  pp__deferred_run(later);
  if (replace && spawn(p, w, d.reaped ? 0 : d.pid) != 0)
    break_if_none(p);
  /* The collector's duties depend on who is alive: a stopping pool ends
   * with the last worker. */
  pp__shared_poke_collector(e->sh);
  return 0;
}

/* ------------------------------------------------------ the loop */

/* How long the reaper may sleep, in ns (-1: until woken): a worker whose
 * pipe ended is looked at again soon, a failed fork tried again after its
 * backoff. */
static int64_t next_look_ns(pp_pool *p, const char *unreaped) {
  struct pp__procs *e = pp__procs_of(p);
  int64_t ns = -1;
  uint64_t now;

  for (int i = 0; i < p->nworkers; i++)
    if (unreaped[i])
      return REAP_AGAIN_NS;
  pp__pool_lock(p);
  if (e->next_spawn_ns) {
    now = pp__now_ns();
    ns = e->next_spawn_ns > now ? (int64_t)(e->next_spawn_ns - now) : 0;
  }
  pp__pool_unlock(p);
  return ns;
}

/* Sleeps until a death, the stop or the next timer, then reaps who died.
 * `unreaped[i]`: worker i's pipe ended but it lives on (reap()); its
 * pipe is left out of the poll, which would only report it again. */
static void watch_once(pp_pool *p, struct pollfd *fds, char *unreaped) {
  struct pp__procs *e = pp__procs_of(p);
  int64_t ns = next_look_ns(p, unreaped);
  struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
  uint64_t v;

  fds[0] = (struct pollfd){e->reap_fd, POLLIN, 0};
  for (int i = 0; i < p->nworkers; i++)
    fds[1 + i] = (struct pollfd){unreaped[i] ? -1 : e->deathfds[i], POLLIN, 0};
  if (ppoll(fds, (nfds_t)p->nworkers + 1, ns < 0 ? NULL : &ts, NULL) > 0 &&
      (fds[0].revents & POLLIN) && read(e->reap_fd, &v, sizeof v) < 0)
    v = 0; /* nothing to do: the eventfd only wakes */
  for (int i = 0; i < p->nworkers; i++)
    if (unreaped[i] ||
        (fds[1 + i].fd >= 0 && (fds[1 + i].revents & (POLLIN | POLLHUP))))
      unreaped[i] = (char)reap(p, i);
}

/* Whether the reaper's work is over: the pool stops and every worker has
 * been reaped. */
static int reaper_done(pp_pool *p) {
  struct pp__procs *e = pp__procs_of(p);
  int done;

  pp__pool_lock(p);
  done = e->stop && p->live == 0 && e->forking == 0;
  pp__pool_unlock(p);
  return done;
}

void *pp__reaper_main(void *arg) {
  pp_pool *p = arg;
  struct pp__procs *e = pp__procs_of(p);

  if (spawn_missing(p) > 0)
    break_if_none(p);
  while (!reaper_done(p)) {
    watch_once(p, e->reap_fds, e->unreaped);
    respawn_missing(p);
  }
  pp__spawner_stop(p);
  return NULL;
}
