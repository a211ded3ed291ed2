/*
 * The pool's life (create, shutdown, destroy) and the master's half of the
 * task slots: allocating a slot, building its frame and queueing it.
 *
 * LOCKING
 * pool->mu guards the slots, the futures' fields and the pool's flags. It
 * may be held while taking a ring lock, never the other way round, and it
 * is never held while waiting for ring space: a submitter that finds the
 * ring full drops mu to wait, so the collector can go on taking results
 * (else workers blocked on a full result ring would never free task space).
 */
#include "internal.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define NO_SLOT UINT32_MAX
#define DEFAULT_MAX_PAYLOAD ((size_t)1 << 20)

void pp_options_init(pp_options *opts) {
  memset(opts, 0, sizeof *opts);
}

/* Resolves the defaults of `in` into `out`; PP_EINVAL for values that can
 * never work. */
static int resolve_options(const pp_options *in, pp_options *out) {
  if (in)
    *out = *in;
  else
    pp_options_init(out);
  if (out->workers < 0 || out->workers > PP_MAX_WORKERS)
    return PP_EINVAL;
  if (out->engine != PP_ENGINE_PROCESSES && out->engine != PP_ENGINE_THREADS)
    return PP_EINVAL;
  if (out->workers == 0) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    n = n < 1 ? 1 : n;
    if (out->engine == PP_ENGINE_THREADS) /* as Python's ThreadPoolExecutor */
      n = n + 4 > 32 ? 32 : n + 4;
    out->workers = n > PP_MAX_WORKERS ? PP_MAX_WORKERS : (int)n;
  }
  if (out->max_payload == 0)
    out->max_payload = DEFAULT_MAX_PAYLOAD;
  if (out->max_payload > UINT32_MAX - 4096)
    return PP_EINVAL;
  if (out->ring_capacity == 0)
    out->ring_capacity = 4 * out->max_payload;
  if (out->retries > 100)
    return PP_EINVAL;
  return 0;
}

/* The slot table: its own mapping, left out of every fork. Workers never
 * read it, and with the default ring it is 4 MiB: copying its page tables
 * into each worker, and taking copy-on-write faults on it afterwards, cost
 * a quarter of the time spent forking. */
static struct slot *map_slots(uint32_t n) {
  size_t len = (size_t)n * sizeof(struct slot);
  void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                 -1, 0);

  if (m == MAP_FAILED)
    return NULL;
  madvise(m, len, MADV_DONTFORK);
  return m;
}

/* The master-side allocations: slots on a free list, worker tables. */
static int alloc_master_side(pp_pool *p) {
  uint32_t n = p->sh->nslots;

  p->slots = map_slots(n);
  p->pids = calloc((size_t)p->nworkers, sizeof *p->pids);
  p->deathfds = malloc((size_t)p->nworkers * sizeof *p->deathfds);
  if (!p->slots || !p->pids || !p->deathfds)
    return PP_ENOMEM;
  for (uint32_t i = 0; i < n; i++)
    p->slots[i].next_free = i + 1 < n ? i + 1 : NO_SLOT;
  for (int i = 0; i < p->nworkers; i++)
    p->deathfds[i] = -1;
  p->free_head = 0;
  p->backlog_tail = &p->backlog;
  return 0;
}

static void free_master_side(pp_pool *p) {
  if (p->slots) {
    for (uint32_t i = 0; i < p->sh->nslots; i++)
      free(p->slots[i].frame);
    munmap(p->slots, (size_t)p->sh->nslots * sizeof *p->slots);
  }
  free(p->pids);
  free(p->deathfds);
}

/* Starts the collector with every signal blocked, so that the program's
 * signal handlers run in its own threads and forked workers start with
 * signals blocked until they have set themselves up. */
static int start_collector(pp_pool *p) {
  sigset_t all, old;
  int rc;

  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  rc = pthread_create(&p->collector, NULL, collector_main, p);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0)
    return rc == EAGAIN ? PP_ENOMEM : PP_ESYS;
  p->collector_running = 1;
  return 0;
}

/* Tells the collector to look at the pool's flags now. */
static void poke_collector(pp_pool *p) {
  uint64_t one = 1;
  ssize_t n = write(p->sh->wake_fd, &one, sizeof one);
  (void)n;
}

static int init_sync(pp_pool *p) {
  pthread_condattr_t ca;
  int rc;

  if (pthread_mutex_init(&p->mu, NULL) != 0)
    return PP_ENOMEM;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  rc = pthread_cond_init(&p->changed, &ca);
  pthread_condattr_destroy(&ca);
  if (rc != 0) {
    pthread_mutex_destroy(&p->mu);
    return PP_ENOMEM;
  }
  return 0;
}

/* Stops the collector (which reaps every worker) or the worker threads,
 * and frees everything. */
static void teardown(pp_pool *p) {
  threads_stop(p);
  if (p->collector_running) {
    pthread_mutex_lock(&p->mu);
    p->stop_collector = 1;
    p->sh->closing = 1; /* under mu: the collector reads it there */
    pthread_mutex_unlock(&p->mu);
    ring_wake_all(p->sh->tasks);
    poke_collector(p);
    pthread_join(p->collector, NULL);
  }
  free_master_side(p);
  shared_destroy(p->sh);
  pthread_cond_destroy(&p->changed);
  pthread_mutex_destroy(&p->mu);
  free(p);
}

int pp_pool_create(pp_pool **out, const pp_options *opts) {
  pp_pool *p;
  int rc;

  if (!out)
    return PP_EINVAL;
  *out = NULL;
  if (!(p = calloc(1, sizeof *p)))
    return PP_ENOMEM;
  if ((rc = resolve_options(opts, &p->opts)) != 0 || (rc = init_sync(p)) != 0) {
    free(p);
    return rc;
  }
  p->nworkers = p->opts.workers;
  if ((rc = shared_create(&p->sh, p->nworkers, p->opts.max_payload,
                          p->opts.ring_capacity, pool_threaded(p))) != 0)
    goto out_sync;
  p->sh->master = getpid();
  if ((rc = alloc_master_side(p)) != 0)
    goto out_teardown;
  if (pool_threaded(p)) {
    if ((rc = threads_start(p)) != 0)
      goto out_teardown;
    *out = p;
    return 0;
  }
  if ((rc = start_collector(p)) != 0)
    goto out_teardown;
  /* The collector forks the workers (so that they live as long as it
   * does: PR_SET_PDEATHSIG follows the forking thread) and reports here
   * once every initializer has answered, or, starting in the background,
   * once it has what it needs to fork them. */
  pthread_mutex_lock(&p->mu);
  while (!p->started && p->create_status == 0 &&
         !(p->opts.start_in_background && p->collector_ready))
    pthread_cond_wait(&p->changed, &p->mu);
  rc = p->create_status;
  pthread_mutex_unlock(&p->mu);
  if (rc != 0)
    goto out_teardown;
  *out = p;
  return 0;

out_teardown:
  teardown(p);
  return rc;
out_sync:
  pthread_cond_destroy(&p->changed);
  pthread_mutex_destroy(&p->mu);
  free(p);
  return rc;
}

/* With mu held: cancels every task that has not started. */
static void cancel_all_pending_locked(pp_pool *p, pp_future **done) {
  for (uint32_t i = 0; i < p->sh->nslots; i++)
    if (p->slots[i].kind)
      pool_cancel_slot(p, ((uint64_t)p->slots[i].gen << 32) | i, done);
}

int pp_pool_shutdown(pp_pool *p, int wait, int cancel_pending) {
  pp_future *done = NULL;

  if (!p)
    return PP_EINVAL;
  pthread_mutex_lock(&p->mu);
  p->shutdown = 1;
  if (cancel_pending)
    cancel_all_pending_locked(p, &done);
  if (pool_threaded(p))
    threads_close_locked(p);
  else
    p->sh->closing = 1; /* under mu: the collector reads it there */
  pthread_mutex_unlock(&p->mu);
  future_finish_list(done);
  if (!pool_threaded(p)) {
    ring_wake_all(p->sh->tasks);
    poke_collector(p);
  }
  if (wait) {
    pthread_mutex_lock(&p->mu);
    while (p->in_flight > 0 || p->live > 0)
      pthread_cond_wait(&p->changed, &p->mu);
    pthread_mutex_unlock(&p->mu);
  }
  return 0;
}

void pp_pool_destroy(pp_pool *p) {
  if (!p)
    return;
  pp_pool_shutdown(p, 1, 0);
  teardown(p);
}

int pp_pool_workers(const pp_pool *p) {
  return p ? p->nworkers : 0;
}

size_t pp_pool_max_payload(const pp_pool *p) {
  return p ? p->opts.max_payload : 0;
}

int pp_pool_worker_pids(pp_pool *p, int *pids, int cap) {
  int n = 0;
  if (!p || (!pids && cap > 0))
    return PP_EINVAL;
  pthread_mutex_lock(&p->mu);
  for (int i = 0; i < p->nworkers && n < cap; i++)
    if (p->pids[i] > 0)
      pids[n++] = p->pids[i];
  pthread_mutex_unlock(&p->mu);
  return n;
}

/* ------------------------------------------------------------- slots */

/* With mu held: takes a free slot, waiting (when `wait`) until
 * `deadline_ns` for one. Returns 0, PP_ETIMEDOUT, or the pool's failure. */
int pool_alloc_slot(pp_pool *p, int wait, uint64_t deadline_ns,
                    uint32_t *index) {
  struct slot *s;

  while (p->free_head == NO_SLOT && !p->broken) {
    if (!wait)
      return PP_ETIMEDOUT;
    if (deadline_ns == RING_FOREVER) {
      pthread_cond_wait(&p->changed, &p->mu);
    } else {
      struct timespec ts = pp_timespec(deadline_ns);
      if (pthread_cond_timedwait(&p->changed, &p->mu, &ts) == ETIMEDOUT)
        return PP_ETIMEDOUT;
    }
  }
  if (p->broken)
    return p->broken;
  *index = p->free_head;
  s = &p->slots[*index];
  p->free_head = s->next_free;
  if (++s->gen == 0)
    s->gen = 1;
  s->attempts = s->expired = s->cancel_running = 0;
  s->timeout = 0;
  p->in_flight++;
  return 0;
}

/* With mu held: returns a resolved slot to the free list. */
void pool_free_slot(pp_pool *p, uint32_t index) {
  struct slot *s = &p->slots[index];

  if (s->timeout > 0)
    p->timed_tasks--;
  free(s->frame);
  s->frame = NULL;
  s->kind = 0;
  s->owner = NULL;
  atomic_store(&p->sh->slot_words[index], 0);
  s->next_free = p->free_head;
  p->free_head = index;
  p->in_flight--;
}

/* With mu held: builds the ring frame of slot `index` for fn over `n`
 * arguments and keeps it in the slot (to queue it again after a crash).
 * Returns 0, PP_ETOOBIG or PP_ENOMEM. */
int pool_task_frame(pp_pool *p, uint32_t index, pp_task_fn fn,
                    const void *const *args, const size_t *lens, size_t n) {
  struct slot *s = &p->slots[index];
  struct task_hdr hdr = {((uint64_t)s->gen << 32) | index,
                         (uint64_t)(uintptr_t)fn, (uint32_t)n, 0};
  size_t body = sizeof hdr, off;
  unsigned char *f;

  for (size_t i = 0; i < n; i++)
    body += 8 + pad8(lens[i]);
  if (body > p->sh->max_frame)
    return PP_ETOOBIG;
  s->frame_len = ring_frame_size(body);
  if (!(f = malloc(s->frame_len)))
    return PP_ENOMEM;
  memset(f, 0, s->frame_len);
  memcpy(f, &(uint64_t){body}, 8);
  memcpy(f + 8, &hdr, sizeof hdr);
  off = 8 + sizeof hdr;
  for (size_t i = 0; i < n; i++) {
    uint32_t len = (uint32_t)lens[i];
    memcpy(f + off, &len, 4);
    if (len)
      memcpy(f + off + 8, args[i], len);
    off += 8 + pad8(len);
  }
  s->frame = f;
  s->items = s->items_left = (uint32_t)n;
  return 0;
}

/* With mu held: marks slot `index` QUEUED and puts its frame on the task
 * ring. With `wait`, waits for room with mu dropped; returns 0 once queued,
 * 1 if the slot was resolved (cancelled) while mu was dropped, or
 * PP_ETIMEDOUT when `deadline_ns` passed or (without `wait`) the ring is
 * full. The word is QUEUED before the frame is in: that is safe because
 * only frames lead workers to slots, and mu keeps the slot alive. */
int pool_queue_frame(pp_pool *p, uint32_t index, uint64_t deadline_ns) {
  struct slot *s = &p->slots[index];
  uint32_t gen = s->gen;
  int put;

  if (pool_threaded(p)) {
    atomic_store(&p->sh->slot_words[index], slot_word(gen, SLOT_QUEUED, -1));
    threads_push_locked(p, index);
    return 0;
  }
  for (;;) {
    atomic_store(&p->sh->slot_words[index], slot_word(gen, SLOT_QUEUED, -1));
    ring_lock(p->sh->tasks);
    put = ring_put_locked(p->sh->tasks, s->frame, s->frame_len, 1);
    ring_unlock(p->sh->tasks);
    if (put)
      return 0;
    if (deadline_ns == RING_NOWAIT)
      return PP_ETIMEDOUT;
    pthread_mutex_unlock(&p->mu);
    int rc = ring_wait_space(p->sh->tasks, s->frame_len, deadline_ns);
    pthread_mutex_lock(&p->mu);
    if (s->gen != gen || !s->kind)
      return 1;
    if (rc != 0)
      return PP_ETIMEDOUT;
  }
}

/* With mu held: cancels the task of `id` if it has not started. Returns 0
 * (resolved as cancelled, slot freed; a future goes on *done for
 * future_finish_list() after unlock), PP_EBUSY (running) or PP_EINVAL (not
 * in flight). */
int pool_cancel_slot(pp_pool *p, uint64_t id, pp_future **done) {
  uint32_t index = id_slot(id), gen = id_gen(id);
  struct slot *s = &p->slots[index];
  uint64_t word;
  enum slot_state st;

  if (index >= p->sh->nslots || !s->kind || s->gen != gen)
    return PP_EINVAL;
  word = atomic_load(&p->sh->slot_words[index]);
  st = word_state(word);
  while (word_gen(word) == gen && (st == SLOT_QUEUED || st == SLOT_CLAIMED)) {
    if (atomic_compare_exchange_weak(&p->sh->slot_words[index], &word,
                                     slot_word(gen, SLOT_CANCELLED, -1))) {
      collector_fail_slot_locked(p, index, PP_ECANCELLED, "cancelled", done);
      return 0;
    }
    st = word_state(word);
  }
  return st == SLOT_RUNNING ? PP_EBUSY : PP_EINVAL;
}

/* ------------------------------------------------------------ submit */

int pp_submit(pp_pool *p, pp_task_fn fn, const void *arg, size_t arg_len,
              pp_future **out) {
  return pp_submit_timeout(p, fn, arg, arg_len, 0, out);
}

int pp_submit_timeout(pp_pool *p, pp_task_fn fn, const void *arg,
                      size_t arg_len, double timeout, pp_future **out) {
  pp_future *f;
  uint32_t index;
  int rc;

  if (out)
    *out = NULL;
  if (!p || !fn || !out || (arg_len && !arg) || timeout != timeout)
    return PP_EINVAL;
  if (arg_len > p->opts.max_payload)
    return PP_ETOOBIG;
  if (timeout > 0 && pool_threaded(p))
    return PP_ENOTSUP;
  if (!(f = future_new(p)))
    return PP_ENOMEM;
  pthread_mutex_lock(&p->mu);
  rc = p->shutdown ? PP_ESHUTDOWN : p->broken;
  if (rc == 0)
    rc = pool_alloc_slot(p, 1, RING_FOREVER, &index);
  if (rc != 0)
    goto out_unlock;
  if ((rc = pool_task_frame(p, index, fn, &arg, &arg_len, 1)) != 0) {
    pool_free_slot(p, index);
    goto out_unlock;
  }
  p->slots[index].kind = SLOT_FUTURE;
  p->slots[index].owner = f;
  p->slots[index].timeout = timeout > 0 ? timeout : 0;
  if (timeout > 0)
    p->timed_tasks++;
  f->id = ((uint64_t)p->slots[index].gen << 32) | index;
  atomic_fetch_add(&f->refs, 1); /* the pool's, until the task resolves */
  rc = pool_queue_frame(p, index, RING_FOREVER);
  if (rc == 1)
    rc = 0;
  if (timeout > 0)
    poke_collector(p);
out_unlock:
  pthread_mutex_unlock(&p->mu);
  if (rc != 0) {
    pp_future_release(f);
    return rc;
  }
  *out = f;
  return 0;
}
