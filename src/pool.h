/*
 * The pool as the library's files share it: its lock, options, engine,
 * slot table and flags. Never installed.
 *
 * LOCKING
 * pool->mu guards the slot table, the futures' and maps' fields and the
 * flags below. It may be held while taking an engine's lock (a ring's
 * lock, a waiter's lock), never the other way round, and it is never held
 * while a task runs or a generator is called. pp__pool_lock() and
 * pp__pool_unlock() record the owner, so that every `_locked` function
 * asserts in debug builds that its caller holds mu (PP__ASSERT_LOCKED).
 */
#ifndef PP_POOL_H
#define PP_POOL_H

#include "clock.h"
#include "engine.h"
#include "procpool.h"
#include "slots.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define PP__MAX_WORKERS 4096

struct pp_pool {
  pthread_mutex_t mu;     /* see LOCKING above */
  pthread_cond_t changed; /* with mu: broadcast when an item resolves, a
                             slot frees up, workers start or leave, or the
                             pool closes */
  pp_options opts;        /* resolved: no zero defaults left */
  int nworkers;
  const struct pp__engine *engine; /* chosen once, at create */
  void *engine_state;              /* the engine's own */
  struct pp__slots st;
  int shutdown; /* no more submits */
  int broken;   /* PP_E* that fails every task from now on */
  int live;     /* workers running (engines keep it, under mu) */
#ifndef NDEBUG
  atomic_uintptr_t mu_owner; /* the thread holding mu, 0 when none */
#endif
};

#ifndef NDEBUG
#define PP__ASSERT_LOCKED(p)                                                   \
  assert(atomic_load(&(p)->mu_owner) == (uintptr_t)pthread_self())
#define PP__SET_OWNER(p, v) atomic_store(&(p)->mu_owner, (v))
#else
#define PP__ASSERT_LOCKED(p) ((void)0)
#define PP__SET_OWNER(p, v) ((void)0)
#endif

/* Takes mu (released by pp__pool_unlock()). */
static inline void pp__pool_lock(struct pp_pool *p) {
  pthread_mutex_lock(&p->mu);
  PP__SET_OWNER(p, (uintptr_t)pthread_self());
}

/* Releases mu (taken by pp__pool_lock()). */
static inline void pp__pool_unlock(struct pp_pool *p) {
  PP__SET_OWNER(p, 0);
  pthread_mutex_unlock(&p->mu);
}

/* With mu held: waits on `cond` (one made with CLOCK_MONOTONIC, like every
 * condition of the library) until signalled or `deadline_ns` (PP__FOREVER:
 * none). Returns 0 or ETIMEDOUT; mu is held again either way. */
static inline int pp__pool_wait(struct pp_pool *p, pthread_cond_t *cond,
                                uint64_t deadline_ns) {
  int rc;
  PP__ASSERT_LOCKED(p);
  PP__SET_OWNER(p, 0);
  if (deadline_ns == PP__FOREVER) {
    rc = pthread_cond_wait(cond, &p->mu);
  } else {
    struct timespec ts = pp__timespec(deadline_ns);
    rc = pthread_cond_timedwait(cond, &p->mu, &ts);
  }
  PP__SET_OWNER(p, (uintptr_t)pthread_self());
  return rc == ETIMEDOUT ? ETIMEDOUT : 0;
}

/* How long a thread about to sleep for results takes them itself first. */
#define PP__TAKE_SPIN_NS 20000u

/* Takes results on this thread as they come (the engine's take_results,
 * which must not be NULL), for up to PP__TAKE_SPIN_NS; returns whether it
 * took any. Between looks it yields the core rather than spinning on it:
 * with as many workers as cores, a spinning master thread takes a core
 * from them, a yielding one only what nobody else wants. Called without
 * mu. */
int pp__pool_take_results(struct pp_pool *p);

/* Queues the submits held back (slots.h), if any, before this thread
 * waits for a result. Called without mu. */
void pp__pool_release_held(struct pp_pool *p);

/* `len` zeroed bytes only the master touches, left out of every fork
 * (MADV_DONTFORK): a worker forked later neither copies their page tables
 * nor makes the master copy each page it writes next (copy-on-write after
 * a fork, a cost paid again at every replacement of a dead worker). NULL
 * on failure. Freed with pp__master_free(p, len). */
void *pp__master_alloc(size_t len);
void pp__master_free(void *p, size_t len);

/* Makes a condition variable on CLOCK_MONOTONIC. 0 or PP_ENOMEM. */
int pp__cond_init(pthread_cond_t *cond);

/* Starts a thread of the library (collector, worker thread, MPI
 * communication) with every signal blocked: signals are the program's to
 * handle in its own threads, and processes forked from it start blocked
 * until they have set themselves up. 0, PP_ENOMEM or PP_ESYS. */
int pp__thread_start(pthread_t *thread, void *(*fn)(void *), void *arg);

#endif
