/*
 * The engine seam: what runs the tasks, as a table of operations chosen
 * once, in pp_pool_create() (as Redis picks ae_epoll.c or ae_kqueue.c). The
 * pool, the slot table, futures, maps and waits call only these; nothing
 * outside an engine's own files asks which engine runs. An operation an
 * engine cannot do is NULL, and the caller answers PP_ENOTSUP for it in
 * one place (pp__engine_can_kill()).
 *
 * Every engine keeps the same contract with the slot table: it takes a
 * slot whose word is QUEUED, moves the word to RUNNING when a worker starts
 * it, runs each item through pp__task_run(), and reports each item with
 * pp__slot_resolve_locked() (or the whole slot with pp__slot_fail_locked()
 * when its worker died), then runs the deferred list after unlocking.
 */
#ifndef PP_ENGINE_H
#define PP_ENGINE_H

#include "procpool.h"

#include <stdint.h>

struct pp_pool;

struct pp__engine {
  const char *name;
  /* The number of workers when the options leave it 0, for `cpus` online
   * CPUs. */
  int (*default_workers)(int cpus);
  /* Makes the engine's state and starts the workers. Returns what
   * pp_pool_create() returns; on failure the pool calls stop(). */
  int (*start)(struct pp_pool *p);
  /* After close_locked(): waits for the workers (killing any that will not
   * leave within a bounded time), reaps them and frees the state. */
  void (*stop)(struct pp_pool *p);
  /* With mu held: no task will come any more; workers leave once nothing
   * is queued. */
  void (*close_locked)(struct pp_pool *p);
  /* With mu held: hands slot `index`, its word QUEUED, to the workers.
   * Returns 0; 1 if the slot was resolved while waiting with mu dropped;
   * PP_ETIMEDOUT when there is no room (without `wait`, or by
   * `deadline_ns`). */
  int (*queue_locked)(struct pp_pool *p, uint32_t index, int wait,
                      uint64_t deadline_ns);
  /* With mu held: hands slots index[0..n), their words QUEUED, to the
   * workers in that order, as queue_locked() without waiting, under one
   * lock of the engine's queue. Returns how many it took (the first ones):
   * the rest did not fit. NULL: they are queued one by one. */
  size_t (*queue_batch_locked)(struct pp_pool *p, const uint32_t *index,
                               size_t n);
  /* With mu held: hands slot `index`, its word QUEUED, back to the workers
   * ahead of what is queued (the worker that took it died: an ordered map
   * waits for it), without waiting. Returns 0, or PP_ETIMEDOUT when there
   * is no room. NULL: queue_locked() without waiting. */
  int (*requeue_locked)(struct pp_pool *p, uint32_t index);
  /* With mu held: whether the workers have plenty queued, so that a
   * submit may be held back to be queued with the next ones (slots.h).
   * NULL: never. */
  int (*busy_locked)(struct pp_pool *p);
  /* With mu held: queued slot `index` was cancelled; give its room back.
   * NULL: the engine drops cancelled slots as it meets them. */
  void (*unqueue_locked)(struct pp_pool *p, uint32_t index);
  /* With mu held: kills the worker `worker` running task `id`, unless the
   * task has already finished (then PP_EINVAL, and its result stands).
   * NULL: running tasks cannot be stopped, so timeouts and
   * pp_future_cancel_running() answer PP_ENOTSUP. */
  int (*kill_locked)(struct pp_pool *p, uint64_t id, int worker);
  /* With mu held: a task with a timeout was queued. May be NULL. */
  void (*timers_changed_locked)(struct pp_pool *p);
  /* Before a caller sleeps until done(arg): takes results itself for a
   * moment, to spare a wake-up. No lock held. May be NULL. */
  void (*help_wait)(struct pp_pool *p, int (*done)(const void *),
                    const void *arg);
  /* Applies the results that are ready, on the caller's thread and
   * without waiting: a caller about to sleep for one is then spared two
   * wake-ups (the collector's and its own). Returns how many frames it
   * applied. No lock held. May be NULL. */
  size_t (*take_results)(struct pp_pool *p);
  /* A thread says it takes results itself (on = 1) until it says it no
   * longer does (on = 0), the calls paired: meanwhile the engine need not
   * wake its collector for each result, and serves other waiters within
   * a millisecond instead. No lock held. NULL when take_results is. */
  void (*taking_results)(struct pp_pool *p, int on);
  /* With mu held: pids of live worker processes into pids[0..cap).
   * NULL: the workers are not processes (the count is 0). */
  int (*worker_pids_locked)(struct pp_pool *p, int *pids, int cap);
  /* Whether the engine can run `fn`: 0, or the PP_E* that pp_submit()
   * answers (PP_EUNREGISTERED). NULL: any function runs. */
  int (*check_task)(pp_task_fn fn);
  /* A block of shared memory that an owner kept a result in
   * (adopt_block_locked, slots.h) is done with: the workers may fill it
   * again. Any lock or none. NULL for engines that lend no blocks. */
  void (*free_block)(struct pp_pool *p, uint32_t block);
};

/* The engines. */
extern const struct pp__engine pp__engine_processes;
extern const struct pp__engine pp__engine_threads;
#ifdef PP_HAVE_MPI
extern const struct pp__engine pp__engine_mpi;
#endif

/* Whether the engine can stop a running task (timeouts, cancel_running). */
static inline int pp__engine_can_kill(const struct pp__engine *e) {
  return e->kill_locked != 0;
}

#endif
