/*
 * The process engine's table of operations (engine.h): forked workers fed
 * through shared-memory rings, with a collector thread (collector.c) and a
 * reaper thread (reaper.c) in the master, and the workers' loop (worker.c).
 * This file starts and stops the engine and queues, kills and waits for tasks
 * on behalf of the pool and the slot table.
 */
#include "proc.h"
#include "testhook.h"

#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* Wakes the thread that sleeps on eventfd `fd` (the collector's wake_fd,
 * the reaper's reap_fd), asleep or not. */
static void poke(int fd) {
  uint64_t one = 1;
  ssize_t n = write(fd, &one, sizeof one);
  (void)n;
}

/* Makes what the engine's threads use, so that neither can fail to set
 * itself up. Returns 0, PP_ENOMEM, PP_ESHM or PP_ESYS. */
static int procs_state_create(pp_pool *p, struct pp__procs *e) {
  size_t n = (size_t)p->nworkers;
  int rc;

  e->reap_fd = -1;
  e->spawner_fd = -1;
  if (pthread_mutex_init(&e->drain_mu, NULL) != 0)
    return PP_ENOMEM;
  e->drain_mu_made = 1;
  if ((rc = pp__shared_create(&e->sh, p)) != 0)
    return rc;
  e->drain_cap =
      e->sh->max_frame + 8 > 256 * 1024 ? e->sh->max_frame + 8 : 256 * 1024;
  e->drain_buf = malloc(e->drain_cap);
  if (e->sh->nblocks && !(e->block_run = malloc(sizeof(struct pp__item_hdr) +
                                                e->sh->block_size + 8)))
    return PP_ENOMEM;
  e->pids = calloc(n, sizeof *e->pids);
  e->pidfds = malloc(n * sizeof *e->pidfds);
  e->deathfds = malloc(n * sizeof *e->deathfds);
  e->unreaped = calloc(n, 1);
  e->reap_fds = malloc((n + 1) * sizeof *e->reap_fds);
  if (!e->drain_buf || !e->pids || !e->pidfds || !e->deathfds || !e->unreaped ||
      !e->reap_fds)
    return PP_ENOMEM;
  for (size_t i = 0; i < n; i++)
    e->deathfds[i] = e->pidfds[i] = -1;
  if ((e->reap_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
    return PP_ESYS;
  return 0;
}

/* Starts the collector, then the reaper, which forks the workers (so that
 * they live as long as it does: PR_SET_PDEATHSIG follows the forking
 * thread). Both start with every signal blocked (pp__thread_start()):
 * workers forked start blocked until they have set themselves up. Waits
 * until every initializer has answered, unless starting in the
 * background. */
static int procs_start(pp_pool *p) {
  struct pp__procs *e = calloc(1, sizeof *e);
  int rc;

  if (!e)
    return PP_ENOMEM;
  p->engine_state = e;
  if ((rc = procs_state_create(p, e)) != 0)
    return rc;
  if ((rc = pp__thread_start(&e->collector, pp__collector_main, p)) != 0)
    return rc;
  e->collector_running = 1;
  if ((rc = pp__thread_start(&e->reaper, pp__reaper_main, p)) != 0)
    return rc;
  e->reaper_running = 1;
  if (p->opts.start_in_background)
    return 0;
  pp__pool_lock(p);
  while (!e->started && e->create_status == 0)
    pp__pool_wait(p, &p->changed, PP__FOREVER);
  rc = e->create_status;
  pp__pool_unlock(p);
  return rc;
}

/* With mu held: workers leave once the task ring is empty. */
static void procs_close_locked(pp_pool *p) {
  struct pp__procs *e = pp__procs_of(p);

  PP__ASSERT_LOCKED(p);
  if (!e || !e->sh)
    return;
  atomic_store(&e->sh->closing, 1);
  pp__ring_wake_all(e->sh->tasks);
  poke(e->sh->wake_fd);
}

/* Stops the collector and the reaper, which reaps every worker (the
 * collector kills those that do not leave), and frees the engine. */
static void procs_stop(pp_pool *p) {
  struct pp__procs *e = pp__procs_of(p);

  if (!e)
    return;
  if (e->collector_running || e->reaper_running) {
    pp__pool_lock(p);
    e->stop = 1;
    procs_close_locked(p);
    pp__pool_unlock(p);
  }
  if (e->reaper_running) {
    poke(e->reap_fd);
    pthread_join(e->reaper, NULL);
  }
  if (e->collector_running)
    pthread_join(e->collector, NULL);
  free(e->drain_buf);
  free(e->block_run);
  free(e->pids);
  free(e->pidfds);
  free(e->deathfds);
  free(e->unreaped);
  free(e->reap_fds);
  if (e->reap_fd >= 0)
    close(e->reap_fd);
  pp__shared_destroy(e->sh);
  if (e->drain_mu_made)
    pthread_mutex_destroy(&e->drain_mu);
  free(e);
  p->engine_state = NULL;
}

/* For compaction: keeps the frames of tasks still queued. */
static int frame_queued(void *ctx, const void *payload, size_t len) {
  pp_pool *p = ctx;
  struct pp__task_hdr hdr;
  uint32_t index;

  if (len < sizeof hdr)
    return 0;
  memcpy(&hdr, payload, sizeof hdr);
  index = pp__id_slot(hdr.id);
  return index < p->st.n &&
         pp__slot_word_of(&p->st, index) ==
             pp__slot_word(pp__id_gen(hdr.id), PP__SLOT_QUEUED, -1);
}

/* With mu and the task ring's lock held: puts slot s's frame on the ring
 * if it fits, first squeezing out cancelled frames when some hold room. */
static int put_frame_ring_locked(pp_pool *p, struct pp__ring *r,
                                 struct pp__slot *s) {
  struct pp__procs *e = pp__procs_of(p);
  int put = pp__ring_put_locked(r, s->frame, s->frame_len, 1);

  if (!put && e->dead_frames) {
    pp__ring_compact_locked(r, frame_queued, p);
    e->dead_frames = 0;
    put = pp__ring_put_locked(r, s->frame, s->frame_len, 1);
  }
  return put;
}

/* With mu held: puts slot s's frame on the task ring if it fits. */
static int put_frame_locked(pp_pool *p, struct pp__slot *s) {
  struct pp__ring *r = pp__procs_of(p)->sh->tasks;
  int put;

  pp__ring_lock(r);
  put = put_frame_ring_locked(p, r, s);
  pp__ring_unlock(r); /* taken above */
  return put;
}

/* With mu held: see engine.h. Four frames a worker, not counting the
 * cancelled ones (they bring back no result that would release what is
 * held), is work for a while. */
static int procs_busy_locked(pp_pool *p) {
  struct pp__procs *e = pp__procs_of(p);
  uint64_t queued = pp__ring_peek_count(e->sh->tasks);

  return queued >= e->dead_frames + 4 * (uint64_t)p->nworkers;
}

/* With mu held: see engine.h. */
static int procs_requeue_locked(pp_pool *p, uint32_t index) {
  struct pp__ring *r = pp__procs_of(p)->sh->tasks;
  struct pp__slot *s = &p->st.slots[index];
  int put;

  pp__ring_lock(r);
  put = pp__ring_put_front_locked(r, s->frame, s->frame_len);
  pp__ring_unlock(r); /* taken above */
  return put || put_frame_locked(p, s) ? 0 : PP_ETIMEDOUT;
}

/* With mu held: see engine.h. One lock of the task ring for the batch. */
static size_t procs_queue_batch_locked(pp_pool *p, const uint32_t *index,
                                       size_t n) {
  struct pp__ring *r = pp__procs_of(p)->sh->tasks;
  size_t k = 0;

  PP__ASSERT_LOCKED(p);
  pp__ring_lock(r);
  while (k < n && put_frame_ring_locked(p, r, &p->st.slots[index[k]]))
    k++;
  pp__ring_unlock(r); /* taken above */
  return k;
}

/* With mu held: see engine.h. Waiting for room drops mu, so that the
 * collector can go on taking results (else workers blocked on a full
 * result ring would never free task space). */
static int procs_queue_locked(pp_pool *p, uint32_t index, int wait,
                              uint64_t deadline_ns) {
  struct pp__slot *s = &p->st.slots[index];
  uint32_t gen = s->gen;
  int rc;

  PP__ASSERT_LOCKED(p);
  for (;;) {
    if (put_frame_locked(p, s))
      return 0;
    if (!wait)
      return PP_ETIMEDOUT;
    pp__pool_unlock(p);
    rc = pp__ring_wait_space(pp__procs_of(p)->sh->tasks, s->frame_len,
                             deadline_ns);
    pp__pool_lock(p);
    if (s->gen != gen || !s->used)
      return 1;
    if (rc != 0)
      return PP_ETIMEDOUT;
  }
}

/* With mu held: a cancelled frame stays in the ring until a worker drops
 * it, or a full ring squeezes it out (put_frame_locked). */
static void procs_unqueue_locked(pp_pool *p, uint32_t index) {
  (void)index;
  pp__procs_of(p)->dead_frames++;
}

static int procs_kill_locked(pp_pool *p, uint64_t id, int worker) {
  return pp__collector_kill_locked(p, worker, id);
}

/* With mu held: the collector naps briefly while timed tasks run. */
static void procs_timers_changed_locked(pp_pool *p) {
  poke(pp__procs_of(p)->sh->wake_fd);
}

/* Applies what the result ring holds on the caller's thread, into the
 * engine's own buffer (engine.h); gives way if another thread drains. */
static size_t procs_take_results(pp_pool *p) {
  struct pp__procs *e = pp__procs_of(p);

  if (pp__ring_peek_count(e->sh->results) == 0)
    return 0; /* a hint, spares the ring's lock: a caller about to sleep
                 looks again under it (taking_results(p, 0)) */
  return pp__collector_drain(p, 0);
}

/* While a master thread takes results itself, workers skip waking the
 * collector (shared.c); when it stops, it wakes the collector for what
 * was put meanwhile. */
static void procs_taking_results(pp_pool *p, int on) {
  struct pp__shared *sh = pp__procs_of(p)->sh;
  int waiting;

  if (on) {
    atomic_fetch_add(&sh->helpers, 1);
    return;
  }
  atomic_fetch_sub(&sh->helpers, 1); /* added above, in the paired call */
  pp__ring_lock(sh->results);
  waiting = pp__ring_count_locked(sh->results) > 0;
  pp__ring_unlock(sh->results);
  if (waiting) /* put while the workers thought this thread would take it */
    poke(sh->wake_fd);
}

/* Takes results itself for a moment before the caller sleeps: a small
 * result then reaches it without waking the collector. */
static void procs_help_wait(pp_pool *p, int (*done)(const void *),
                            const void *arg) {
  uint64_t until = pp__now_ns() + PP__SPIN_NS;

  procs_taking_results(p, 1);
  for (unsigned i = 1; !done(arg); i++) {
    if (i % 16 == 0 && pp__now_ns() >= until) /* the clock costs 20 ns */
      break;
    if (procs_take_results(p) == 0) /* the ring's lock only for results */
      pp__cpu_relax();
  }
  procs_taking_results(p, 0);
}

static int procs_worker_pids_locked(pp_pool *p, int *pids, int cap) {
  struct pp__procs *e = pp__procs_of(p);
  int n = 0;

  for (int i = 0; i < p->nworkers && n < cap; i++)
    if (e->pids[i] > 0)
      pids[n++] = e->pids[i];
  return n;
}

/* One worker process per online CPU. */
static int procs_default_workers(int cpus) {
  return cpus;
}

/* The engine's free_block(): a map has handed out the result in it. The
 * release pairs with the acquire of the worker's CAS that takes it next,
 * so the master's reads of it are done before it is filled again. */
static void procs_free_block(pp_pool *p, uint32_t block) {
  struct pp__shared *sh = pp__procs_of(p)->sh;

  assert(block < sh->nblocks);
  atomic_store_explicit(&sh->block_owner[block], PP__BLOCK_FREE,
                        memory_order_release);
}

#ifdef PP_TEST_HOOKS
int pp_test_free_blocks(pp_pool *p, int *total) {
  struct pp__shared *sh;
  int n = 0;

  *total = 0;
  if (p->engine != &pp__engine_processes)
    return 0;
  sh = pp__procs_of(p)->sh;
  *total = (int)sh->nblocks;
  for (uint32_t b = 0; b < sh->nblocks; b++)
    n += atomic_load(&sh->block_owner[b]) == PP__BLOCK_FREE;
  return n;
}
#endif

const struct pp__engine pp__engine_processes = {
    .name = "processes",
    .default_workers = procs_default_workers,
    .start = procs_start,
    .stop = procs_stop,
    .close_locked = procs_close_locked,
    .queue_locked = procs_queue_locked,
    .queue_batch_locked = procs_queue_batch_locked,
    .requeue_locked = procs_requeue_locked,
    .busy_locked = procs_busy_locked,
    .unqueue_locked = procs_unqueue_locked,
    .kill_locked = procs_kill_locked,
    .timers_changed_locked = procs_timers_changed_locked,
    .help_wait = procs_help_wait,
    .take_results = procs_take_results,
    .taking_results = procs_taking_results,
    .worker_pids_locked = procs_worker_pids_locked,
    .free_block = procs_free_block,
};
