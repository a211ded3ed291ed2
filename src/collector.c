/*
 * The collector: one thread per pool run by processes, in the master, that
 *  - takes result frames off the result ring and hands each item's outcome
 *    to the slot table (then runs the deferred callbacks, outside the lock);
 *  - kills the worker of a task that ran past its timeout, and, once the
 *    pool closes with nothing left to run, any worker that does not leave
 *    within LEAVE_NS (a stopped one, say);
 *  - marks the pool started once the first workers' initializers passed,
 *    and queues held submits and the backlog.
 * The reaper (reaper.c) forks, reaps and replaces the workers.
 *
 * DESIGN
 * It sleeps in poll() on an eventfd, written by a worker that puts results
 * while the collector sleeps, or by a master thread or the reaper that
 * wants its attention, or until its next timer.
 */
#include "proc.h"

#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#define DRAIN_MAX 4096
#define LEAVE_NS 2000000000u /* 2 s for idle workers to exit when closing */

/* ------------------------------------------------------ resolving */

/* With mu held: applies the result that a worker left in block `b` (`len`
 * bytes, the lone item of frame *rh): the slot's owner keeps it there, or
 * it is copied for the owner, and the block is free again. A frame that
 * names a block not lent to the worker of its task, or a length past the
 * block (a worker's memory scribbled on), is dropped: the task then waits
 * for a retry, or for its worker's death. */
static void apply_block(pp_pool *p, const struct pp__result_hdr *rh, uint32_t b,
                        size_t len, struct pp__deferred **later) {
  struct pp__procs *e = pp__procs_of(p);
  struct pp__shared *sh = e->sh;
  struct pp__item_hdr ih = {0, 0, (uint32_t)len, 0};
  uint32_t owner, slot = pp__id_slot(rh->id);
  int live = pp__slot_by_id(&p->st, rh->id) != NULL;
  const unsigned char *data;

  if (b >= sh->nblocks || len > sh->block_size)
    return;
  owner = atomic_load(&sh->block_owner[b]);
  if (owner == PP__BLOCK_FREE || owner == PP__BLOCK_MASTER ||
      (live &&
       owner != 1 + (uint32_t)pp__word_worker(pp__slot_word_of(&p->st, slot))))
    return;
  data = pp__block_at(sh, b);
  /* The master's before a map may hand it out (and give it back). */
  atomic_store(&sh->block_owner[b], PP__BLOCK_MASTER);
  if (live &&
      pp__slot_adopt_block_locked(p, slot, rh->first, data, len, b, rh->run_ns))
    return;
  if (live) { /* copied for an owner that keeps no blocks */
    memcpy(e->block_run, &ih, sizeof ih);
    memcpy(e->block_run + sizeof ih, data, len);
    memset(e->block_run + sizeof ih + len, 0, pp__pad8(len) - len);
    pp__slot_resolve_run_locked(p, slot, rh->first, 1, e->block_run,
                                sizeof ih + pp__pad8(len), rh->run_ns, later);
  }
  atomic_store(&sh->block_owner[b], PP__BLOCK_FREE);
}

/* With mu held: applies one result frame. */
static void apply_result(pp_pool *p, const unsigned char *frame, size_t len,
                         struct pp__deferred **later) {
  struct pp__result_hdr rh;
  struct pp__item_hdr ih;

  if (len < sizeof rh)
    return;
  memcpy(&rh, frame, sizeof rh);
  if (rh.count == 1 && len == sizeof rh + sizeof ih) {
    memcpy(&ih, frame + sizeof rh, sizeof ih);
    if (ih.status == 0 && ih.msg_len == PP__ITEM_IN_BLOCK) {
      apply_block(p, &rh, (uint32_t)ih.code, ih.len, later);
      return;
    }
  }
  if (!pp__slot_by_id(&p->st, rh.id))
    return; /* a late answer for a slot already failed or reused */
  pp__slot_resolve_run_locked(p, pp__id_slot(rh.id), rh.first, rh.count,
                              frame + sizeof rh, len - sizeof rh, rh.run_ns,
                              later);
}

/* Applies the result frames on the ring (the engine's drain_buf holds one
 * that wraps around its end), then runs the deferred callbacks. Called by the
 * collector (`wait`), and by a thread waiting for a result, which thereby
 * skips a wake-up of the collector (it gives way when another thread is
 * draining), and by the reaper before it settles a dead worker's tasks. Taking
 * frames off and applying them happen under drain_mu, so that once a drain
 * returns, every frame put before it is applied: reap() relies on it, or a
 * result in another thread's hands would be a crash. Returns the number of
 * frames. */
struct applying {
  pp_pool *p;
  struct pp__deferred *later;
};

/* pp__ring_consume()'s callback: applies a frame where it lies. */
static void apply_in_place(void *ctx, void *payload, size_t len) {
  struct applying *a = ctx;
  apply_result(a->p, payload, len, &a->later);
}

size_t pp__collector_drain(pp_pool *p, int wait) {
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
    n = pp__ring_consume(e->sh->results, e->drain_buf, e->drain_cap, DRAIN_MAX,
                         apply_in_place, &a);
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

/* With mu held: SIGKILLs worker place `worker` for task `id` (0: whatever
 * it does), unless it has finished that task: then PP_EINVAL. The doomed
 * mark (proc.h) keeps the worker from going on to another task first. Its
 * pid is not reaped yet (pids[] is cleared when it is), so it cannot name
 * another process (spawner.c). A worker runs tasks before the reaper has
 * heard back from the spawner and published it: then the pid it wrote in
 * its record names it (the spawner reaps nobody the reaper has not asked
 * it to). */
int pp__collector_kill_locked(pp_pool *p, int worker, uint64_t id) {
  struct pp__procs *e = pp__procs_of(p);
  pid_t pid;

  PP__ASSERT_LOCKED(p);
  if (worker < 0 || worker >= p->nworkers)
    return PP_EINVAL;
  pid = e->pids[worker];
  if (pid <= 0 && id)
    pid = atomic_load(&e->sh->workers[worker].pid);
  if (pid <= 0)
    return PP_EINVAL;
  if (id) {
    uint64_t expect = id;
    if (!atomic_compare_exchange_strong(&e->sh->workers[worker].current,
                                        &expect, id | PP__DOOMED))
      return PP_EINVAL;
  }
  return pp__spawner_kill(pid, e->pidfds[worker]) == 0 ? 0 : PP_ESYS;
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
  uint64_t id;

  for (int w = 0; w < p->nworkers && p->st.timed; w++)
    if (overdue_locked(p, w, &id) && pp__collector_kill_locked(p, w, id) == 0)
      pp__slot_by_id(&p->st, id)->expired = 1;
}

/* With mu held: marks the pool started once every first worker has been
 * placed by the reaper and its initializer passed (a worker may report
 * before the reaper's fork() has returned). */
static void check_started_locked(pp_pool *p) {
  struct pp__procs *e = pp__procs_of(p);
  int all = 1;

  if (e->started || e->create_status)
    return;
  for (int i = 0; i < p->nworkers; i++) /* forked, placed and set up */
    all &= e->pids[i] > 0 &&
           atomic_load(&e->sh->workers[i].init) == PP__INIT_PASSED;
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

/* Sleeps until results, a poke or the next timer. See shared.c for why
 * results put meanwhile cannot be missed. */
static void sleep_once(struct pp__shared *sh, int timeout_ms) {
  struct pollfd wake = {sh->wake_fd, POLLIN, 0};
  int pending;
  uint64_t v;

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
  if (!pending && poll(&wake, 1, timeout_ms) > 0 && (wake.revents & POLLIN) &&
      read(sh->wake_fd, &v, sizeof v) < 0)
    v = 0; /* nothing to do: the eventfd only wakes */
  atomic_store(&sh->collector_asleep, 0);
}

/* One round of the collector's duties besides results, under mu. Returns
 * how long the next sleep may last (timers need short naps), or -1 when
 * the collector may stop: asked to, and every worker reaped. */
static int duties(pp_pool *p) {
  struct pp__procs *e = pp__procs_of(p);
  struct pp__deferred *later = NULL;
  int nap;

  pp__pool_lock(p);
  if (e->stop && p->live == 0 && e->forking == 0) {
    pp__pool_unlock(p);
    return -1;
  }
  check_started_locked(p);
  if (p->st.timed)
    enforce_timeouts_locked(p);
  pp__slots_release_held_locked(p, &later);
  pp__slots_flush_backlog_locked(p);
  hurry_leavers_locked(p);
  kill_busy_locked(p);
  nap = p->st.timed > 0 || p->st.backlog || !e->started || e->leave_by_ns
            ? 5
            : 1000;
  if (atomic_load(&p->st.nheld)) /* held submits are queued within 1 ms */
    nap = 1;
  pp__pool_unlock(p);
  pp__deferred_run(later);
  return nap;
}

/* The collector wakes often, for moments: as SCHED_BATCH it does not
 * preempt the thread it wakes beside (the scheduler often puts it on the
 * core of the master thread that submits, the workers on the other), yet
 * it keeps its fair share of the CPU. It forks nothing: the reaper, an
 * ordinary thread, forks the workers. Best effort: an error changes
 * nothing but speed. */
static void stand_back(void) {
#ifdef SCHED_BATCH
  struct sched_param none = {0};
  (void)sched_setscheduler(0, SCHED_BATCH, &none);
#endif
}

void *pp__collector_main(void *arg) {
  pp_pool *p = arg;
  struct pp__shared *sh = pp__procs_of(p)->sh;
  int nap;

  stand_back();
  while ((nap = duties(p)) >= 0) {
    size_t n = pp__collector_drain(p, 1);
    sleep_once(sh, n ? 0 : nap);
  }
  return NULL;
}
