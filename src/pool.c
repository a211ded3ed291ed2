/*
 * The pool's life (create, shutdown, destroy) and submit. What runs the
 * tasks is the engine chosen here, once (engine.h); the tasks in flight
 * are the slot table's (slots.c).
 */
#include "future.h"

#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define DEFAULT_MAX_PAYLOAD ((size_t)1 << 20)

void pp_options_init(pp_options *opts) {
  if (opts)
    memset(opts, 0, sizeof *opts);
}

/* The engine an option names, or NULL. */
static const struct pp__engine *engine_for(pp_engine e) {
  switch (e) {
  case PP_ENGINE_PROCESSES:
    return &pp__engine_processes;
  case PP_ENGINE_THREADS:
    return &pp__engine_threads;
  case PP_ENGINE_MPI:
#ifdef PP_HAVE_MPI
    return &pp__engine_mpi;
#else
    return NULL;
#endif
  }
  return NULL;
}

/* The default number of workers of an engine. */
static int default_workers(const struct pp__engine *e) {
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  int n = e->default_workers(cpus < 1 ? 1 : cpus > 65536 ? 65536 : (int)cpus);
  return n > PP__MAX_WORKERS ? PP__MAX_WORKERS : n;
}

/* Resolves the defaults of `in` into `out`; PP_EINVAL for values that can
 * never work. */
static int resolve_options(const pp_options *in, pp_options *out) {
  if (in)
    *out = *in;
  else
    pp_options_init(out);
  if (out->engine == PP_ENGINE_MPI && !engine_for(out->engine))
    return PP_ENOTSUP; /* a build without Open MPI */
  if (out->workers < 0 || out->workers > PP__MAX_WORKERS ||
      !engine_for(out->engine) || out->retries > 100)
    return PP_EINVAL;
  if (out->workers == 0)
    out->workers = default_workers(engine_for(out->engine));
  if (out->max_payload == 0)
    out->max_payload = DEFAULT_MAX_PAYLOAD;
  if (out->max_payload > UINT32_MAX - 4096)
    return PP_EINVAL;
  if (out->ring_capacity == 0)
    out->ring_capacity = 4 * out->max_payload;
  return 0;
}

int pp__cond_init(pthread_cond_t *cond) {
  pthread_condattr_t ca;
  int rc;

  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  rc = pthread_cond_init(cond, &ca);
  pthread_condattr_destroy(&ca);
  return rc == 0 ? 0 : PP_ENOMEM;
}

int pp__pool_take_results(pp_pool *p) {
  uint64_t until = pp__now_ns() + PP__TAKE_SPIN_NS;

  do {
    if (p->engine->take_results(p))
      return 1;
    sched_yield();
  } while (pp__now_ns() < until);
  return 0;
}

void *pp__master_alloc(size_t len) {
  void *m = mmap(NULL, len ? len : 1, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

  if (m == MAP_FAILED)
    return NULL;
  madvise(m, len ? len : 1, MADV_DONTFORK); /* best effort */
  return m;
}

void pp__master_free(void *p, size_t len) {
  if (p)
    munmap(p, len ? len : 1);
}

void pp__pool_release_held(pp_pool *p) {
  struct pp__deferred *later = NULL;

  if (atomic_load_explicit(&p->st.nheld, memory_order_relaxed) == 0)
    return; /* a hint: mu is taken only when submits may be held */
  pp__pool_lock(p);
  pp__slots_release_held_locked(p, &later);
  pp__pool_unlock(p);
  pp__deferred_run(later);
}

int pp__thread_start(pthread_t *thread, void *(*fn)(void *), void *arg) {
  sigset_t all, old;
  int rc;

  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  rc = pthread_create(thread, NULL, fn, arg);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0)
    return rc == EAGAIN ? PP_ENOMEM : PP_ESYS;
  return 0;
}

/* Frees a pool whose engine has stopped (or never started). */
static void free_pool(pp_pool *p) {
  pp__slots_destroy(&p->st);
  pthread_cond_destroy(&p->changed);
  pthread_mutex_destroy(&p->mu);
  free(p);
}

/* Tells the engine that no task will come, and has it stop its workers. */
static void stop_engine(pp_pool *p) {
  struct pp__deferred *later = NULL;

  pp__pool_lock(p);
  p->shutdown = 1;
  pp__slots_release_held_locked(p, &later); /* workers leave once empty */
  p->engine->close_locked(p);
  pp__pool_unlock(p);
  pp__deferred_run(later);
  p->engine->stop(p);
}

int pp_pool_create(pp_pool **out, const pp_options *opts) {
  pp_pool *p;
  int rc;

  if (!out)
    return PP_EINVAL;
  *out = NULL;
  if (!(p = calloc(1, sizeof *p)))
    return PP_ENOMEM;
  if ((rc = resolve_options(opts, &p->opts)) != 0)
    goto out_free;
  if (pthread_mutex_init(&p->mu, NULL) != 0) {
    rc = PP_ENOMEM;
    goto out_free;
  }
  if ((rc = pp__cond_init(&p->changed)) != 0)
    goto out_mutex;
  p->nworkers = p->opts.workers;
  p->engine = engine_for(p->opts.engine);
  rc = pp__slots_init(
      &p->st, pp__slots_count(p->opts.ring_capacity, p->opts.max_payload),
      p->opts.max_payload);
  if (rc != 0)
    goto out_pool;
  if ((rc = p->engine->start(p)) != 0) {
    stop_engine(p);
    goto out_pool;
  }
  *out = p;
  return 0;

out_pool:
  free_pool(p);
  return rc;
out_mutex:
  pthread_mutex_destroy(&p->mu);
out_free:
  free(p);
  return rc;
}

int pp_pool_shutdown(pp_pool *p, int wait, int cancel_pending) {
  struct pp__deferred *later = NULL;

  if (!p)
    return PP_EINVAL;
  pp__pool_lock(p);
  p->shutdown = 1;
  if (cancel_pending)
    pp__slots_cancel_all_locked(p, &later);
  pp__slots_release_held_locked(p, &later); /* workers leave once empty */
  p->engine->close_locked(p);
  pp__pool_unlock(p);
  pp__deferred_run(later);
  if (wait) {
    pp__pool_lock(p);
    while (p->st.in_flight > 0 || p->live > 0)
      pp__pool_wait(p, &p->changed, PP__FOREVER);
    pp__pool_unlock(p);
  }
  return 0;
}

void pp_pool_destroy(pp_pool *p) {
  if (!p)
    return;
  pp_pool_shutdown(p, 1, 0);
  p->engine->stop(p);
  free_pool(p);
}

int pp_pool_workers(const pp_pool *p) {
  return p ? p->nworkers : 0;
}

size_t pp_pool_max_payload(const pp_pool *p) {
  return p ? p->opts.max_payload : 0;
}

int pp_pool_worker_pids(pp_pool *p, int *pids, int cap) {
  int n = 0;

  if (!p || cap < 0 || (!pids && cap > 0))
    return PP_EINVAL;
  pp__pool_lock(p);
  if (p->engine->worker_pids_locked)
    n = p->engine->worker_pids_locked(p, pids, cap);
  pp__pool_unlock(p);
  return n;
}

/* ------------------------------------------------------------ submit */

int pp_submit(pp_pool *p, pp_task_fn fn, const void *arg, size_t arg_len,
              pp_future **out) {
  return pp_submit_timeout(p, fn, arg, arg_len, 0, out);
}

/* With mu held: puts fn(arg) in a fresh slot owned by f and queues it. */
static int submit_locked(pp_pool *p, pp_future *f, pp_task_fn fn,
                         const void *arg, size_t arg_len, uint64_t timeout_ns,
                         struct pp__deferred **later) {
  uint32_t index;
  int rc = p->shutdown ? PP_ESHUTDOWN : p->broken;

  if (rc == 0)
    rc = pp__slot_alloc_locked(p, 1, PP__FOREVER, &index);
  if (rc != 0)
    return rc;
  pp__slot_own_locked(p, index, &pp__future_ops, f, 0, timeout_ns);
  if ((rc = pp__slot_frame_locked(p, index, fn, &arg, &arg_len, 1)) != 0) {
    pp__slot_free_locked(p, index);
    return rc;
  }
  f->id = pp__make_id(p->st.slots[index].gen, index);
  atomic_fetch_add(&f->refs, 1); /* the pool's, until the task resolves */
  pp__slot_submit_locked(p, index, later);
  if (timeout_ns && p->engine->timers_changed_locked)
    p->engine->timers_changed_locked(p);
  return 0;
}

int pp_submit_timeout(pp_pool *p, pp_task_fn fn, const void *arg,
                      size_t arg_len, double timeout, pp_future **out) {
  struct pp__deferred *later = NULL;
  pp_future *f;
  int rc;

  if (out)
    *out = NULL;
  if (!p || !fn || !out || (arg_len && !arg) || timeout != timeout)
    return PP_EINVAL;
  if (arg_len > p->opts.max_payload)
    return PP_ETOOBIG;
  if (timeout > 0 && !pp__engine_can_kill(p->engine))
    return PP_ENOTSUP;
  if (p->engine->check_task && (rc = p->engine->check_task(fn)) != 0)
    return rc;
  if (!(f = pp__future_new(p)))
    return PP_ENOMEM;
  pp__pool_lock(p);
  rc = submit_locked(p, f, fn, arg, arg_len,
                     timeout > 0 ? pp__seconds_to_ns(timeout) : 0, &later);
  pp__pool_unlock(p);
  pp__deferred_run(later);
  if (rc != 0) {
    pp_future_release(f);
    return rc;
  }
  *out = f;
  return 0;
}
