/*
 * Waiting on several futures: pp_wait() (a condition over a set) and the
 * as_completed iterator (each distinct future once, in the order they
 * finish). Both are built on a waiter: a lock and a condition of its own,
 * and a watch hung on each pending future. Resolving a future (under its
 * pool's mu) fires its watches, which push the future's index on the
 * waiter's ready queue under the waiter's lock. So the futures may come
 * from any number of pools, nothing scans, and nothing naps.
 *
 * LOCKING
 * A pool's mu may be held while taking a waiter's lock, never the other
 * way round: a waiter takes pools' locks only to hang or unhook watches,
 * with its own lock not held.
 */
#include "future.h"

#include <stdlib.h>
#include <string.h>

struct pp__waiter {
  pthread_mutex_t mu;  /* guards the fields below */
  pthread_cond_t cond; /* signalled when a future is pushed */
  pp_future **futures; /* [n], referenced by as_completed only */
  size_t n;
  size_t *ready; /* indices of done futures not yet taken */
  size_t ready_head, ready_tail;
  size_t raised;             /* done futures that failed (not cancelled) */
  struct pp__watch *watches; /* [n]; .w is NULL where none was hung */
  pp_pool *pool;             /* the one pool of the pending futures, or NULL */
};

struct pp_completed {
  struct pp__waiter w;
  size_t yielded;
  uint64_t deadline_ns;
};

/* With the waiter's lock held: future `index` is done. */
static void push_ready(struct pp__waiter *w, size_t index, int raised) {
  w->ready[w->ready_tail] = index;
  /* published for has_ready(), a hint read without the lock */
  __atomic_store_n(&w->ready_tail, w->ready_tail + 1, __ATOMIC_RELEASE);
  w->raised += raised != 0;
}

/* The watch (and its waiter) may be freed as soon as `fired` is set and
 * the waiter's lock dropped: nothing of it is read after that. */
void pp__watch_fire_locked(struct pp__watch *watches, int raised) {
  struct pp__watch *x = watches, *next;
  for (; x; x = next) {
    struct pp__waiter *w = x->w;
    next = x->next;
    pthread_mutex_lock(&w->mu);
    push_ready(w, x->index, raised);
    x->fired = 1;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->mu);
  }
}

/* Makes a waiter over futures fs[0..n) (NULL: the caller fills
 * w->futures). 0 or PP_ENOMEM. */
static int waiter_init(struct pp__waiter *w, pp_future *const *fs, size_t n) {
  memset(w, 0, sizeof *w);
  w->n = n;
  w->futures = malloc((n ? n : 1) * sizeof *w->futures);
  w->ready = malloc((n ? n : 1) * sizeof *w->ready);
  w->watches = calloc(n ? n : 1, sizeof *w->watches);
  if (!w->futures || !w->ready || !w->watches)
    goto out_free;
  if (pthread_mutex_init(&w->mu, NULL) != 0)
    goto out_free;
  if (pp__cond_init(&w->cond) != 0) {
    pthread_mutex_destroy(&w->mu);
    goto out_free;
  }
  if (fs)
    memcpy(w->futures, fs, n * sizeof *fs);
  return 0;

out_free:
  free(w->futures);
  free(w->ready);
  free(w->watches);
  return PP_ENOMEM;
}

/* Hangs a watch on each pending future (under its pool's lock, so that no
 * resolution is missed) and queues the done ones; with `refs`, takes a
 * reference to each as well (in the same pass over them). */
static void waiter_watch(struct pp__waiter *w, int refs) {
  struct pp__deferred *later = NULL; /* of releasing held submits */
  pp_pool *locked = NULL;            /* held across futures of the same pool */
  size_t pushed = 0;                 /* done futures queued under w->mu, held */
  int pools = 0;

  for (size_t i = 0; i < w->n; i++) {
    pp_future *f = w->futures[i];
    if (refs)
      atomic_fetch_add(&f->refs, 1);
    if (!pp__future_is_done(f)) {
      if (pools == 0 || (pools == 1 && f->pool != w->pool))
        pools++, w->pool = f->pool;
      if (locked != f->pool) {
        if (pushed) /* a pool's lock is never taken under a waiter's */
          pthread_mutex_unlock(&w->mu), pushed = 0;
        if (locked)
          pp__pool_unlock(locked);
        pp__pool_lock(locked = f->pool); /* alive: the future is pending */
        /* Submits held back are queued now: these may be among them. */
        pp__slots_release_held_locked(locked, &later);
      }
      if (!pp__future_is_done(f)) {
        w->watches[i] = (struct pp__watch){w, i, f->watches, 0};
        f->watches = &w->watches[i];
      }
    }
    if (!w->watches[i].w) {
      /* Runs of done futures are queued under one taking of the lock,
       * given up now and then for the watches that fire meanwhile. */
      if (pushed == 0)
        pthread_mutex_lock(&w->mu);
      push_ready(w, i, pp__future_raised(f));
      if (++pushed == 1024)
        pthread_mutex_unlock(&w->mu), pushed = 0;
    }
  }
  if (pushed)
    pthread_mutex_unlock(&w->mu); /* taken in the loop */
  if (locked)
    pp__pool_unlock(locked);
  pp__deferred_run(later);
  if (pools != 1)
    w->pool = NULL; /* nothing pending, or several pools: nobody to help */
}

/* Whether the waiter has a future ready, read as a hint for help_wait. */
static int has_ready(const void *arg) {
  const struct pp__waiter *w = arg;
  return __atomic_load_n(&w->ready_tail, __ATOMIC_ACQUIRE) != w->ready_head;
}

/* Unhooks the watch on future `i` if it has not fired; returns 0 if it
 * has fired or is firing (the future is done). */
static int unhook(struct pp__waiter *w, size_t i) {
  pp_future *f = w->futures[i];
  int unhooked = 0;

  if (pp__future_is_done(f))
    return 0;
  pp__pool_lock(f->pool); /* alive: the future is pending */
  if (!pp__future_is_done(f))
    for (struct pp__watch **pp = &f->watches; *pp; pp = &(*pp)->next)
      if (*pp == &w->watches[i]) {
        *pp = w->watches[i].next;
        unhooked = 1;
        break;
      }
  pp__pool_unlock(f->pool);
  return unhooked;
}

/* Unhooks the watches of futures still pending, waits for those being
 * fired (a resolver may be between "done" and the push), drops the
 * waiter's references when it holds some (`release`), and frees it. */
static void waiter_destroy(struct pp__waiter *w, int release) {
  for (size_t i = 0; i < w->n; i++) {
    if (!w->watches[i].w || unhook(w, i))
      continue;
    pthread_mutex_lock(&w->mu);
    while (!w->watches[i].fired)
      pthread_cond_wait(&w->cond, &w->mu);
    pthread_mutex_unlock(&w->mu);
  }
  for (size_t i = 0; release && i < w->n; i++)
    pp_future_release(w->futures[i]);
  pthread_cond_destroy(&w->cond);
  pthread_mutex_destroy(&w->mu);
  free(w->futures);
  free(w->ready);
  free(w->watches);
}

/* With the waiter's lock held: sleeps until signalled or `deadline_ns`.
 * Returns 0 or ETIMEDOUT. */
static int waiter_sleep(struct pp__waiter *w, uint64_t deadline_ns) {
  if (deadline_ns == PP__FOREVER)
    return pthread_cond_wait(&w->cond, &w->mu);
  struct timespec ts = pp__timespec(deadline_ns);
  return pthread_cond_timedwait(&w->cond, &w->mu, &ts) == ETIMEDOUT ? ETIMEDOUT
                                                                    : 0;
}

/* With the waiter's lock held: whether `when` holds. */
static int condition_met(const struct pp__waiter *w, pp_return_when when) {
  size_t done = w->ready_tail;
  switch (when) {
  case PP_FIRST_COMPLETED:
    return done > 0 || w->n == 0;
  case PP_FIRST_EXCEPTION:
    return w->raised > 0 || done == w->n;
  case PP_ALL_COMPLETED:
    return done == w->n;
  }
  return 1;
}

int pp_wait(pp_future *const *fs, size_t n, double timeout, pp_return_when when,
            unsigned char *done) {
  uint64_t deadline = pp__deadline_ns(timeout);
  struct pp__waiter w;
  size_t ndone = 0;

  if ((n && !fs) || when > PP_ALL_COMPLETED)
    return PP_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (!fs[i])
      return PP_EINVAL;
  if (waiter_init(&w, fs, n) != 0)
    return PP_ENOMEM;
  waiter_watch(&w, 0);
  pthread_mutex_lock(&w.mu);
  while (!condition_met(&w, when) && timeout != 0 &&
         waiter_sleep(&w, deadline) != ETIMEDOUT)
    ;
  pthread_mutex_unlock(&w.mu);
  waiter_destroy(&w, 0);
  for (size_t i = 0; i < n; i++) {
    int d = pp__future_is_done(fs[i]);
    ndone += d != 0;
    if (done)
      done[i] = (unsigned char)d;
  }
  return (int)ndone;
}

/* ---------------------------------------------------------- as_completed */

/* The distinct futures of fs[0..n), in their first order, into uniq (OUT,
 * n long) and *nout: an open-addressing set of addresses, so that a
 * million futures cost a million probes, not a sort. Returns 0 or
 * PP_ENOMEM. */
static int distinct(pp_future *const *fs, size_t n, pp_future **uniq,
                    size_t *nout) {
  size_t cap = 16, k = 0;
  const pp_future **set;

  while (cap < 2 * n)
    cap *= 2;
  if (!(set = calloc(cap, sizeof *set)))
    return PP_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    uintptr_t h = (uintptr_t)fs[i];
    size_t at = (size_t)((h >> 4) * 0x9E3779B97F4A7C15ull) & (cap - 1);
    while (set[at] && set[at] != fs[i])
      at = (at + 1) & (cap - 1);
    if (!set[at]) {
      set[at] = fs[i];
      uniq[k++] = fs[i];
    }
  }
  free(set);
  *nout = k;
  return 0;
}

int pp_as_completed(pp_future *const *fs, size_t n, double timeout,
                    pp_completed **out) {
  pp_completed *it;
  size_t k = 0;
  int rc;

  if (!out || (n && !fs))
    return PP_EINVAL;
  *out = NULL;
  for (size_t i = 0; i < n; i++)
    if (!fs[i])
      return PP_EINVAL;
  if (!(it = calloc(1, sizeof *it)))
    return PP_ENOMEM;
  if ((rc = waiter_init(&it->w, NULL, n)) == 0 &&
      (rc = distinct(fs, n, it->w.futures, &k)) != 0)
    waiter_destroy(&it->w, 0);
  if (rc != 0) {
    free(it);
    return rc;
  }
  it->w.n = k;
  it->deadline_ns = pp__deadline_ns(timeout);
  waiter_watch(&it->w, 1);
  *out = it;
  return 0;
}

int pp_completed_next(pp_completed *it, pp_future **out) {
  struct pp__waiter *w;
  int rc = 0;

  if (!it || !out)
    return PP_EINVAL;
  *out = NULL;
  w = &it->w;
  if (it->yielded == w->n)
    return PP_EOF;
  if (w->ready_head == __atomic_load_n(&w->ready_tail, __ATOMIC_ACQUIRE) &&
      w->pool && w->pool->engine->help_wait)
    w->pool->engine->help_wait(w->pool, has_ready, w);
  pthread_mutex_lock(&w->mu);
  while (w->ready_head == w->ready_tail) {
    if (it->deadline_ns != PP__FOREVER && pp__now_ns() >= it->deadline_ns) {
      rc = PP_ETIMEDOUT;
      break;
    }
    waiter_sleep(w, it->deadline_ns);
  }
  if (rc == 0) {
    *out = w->futures[w->ready[w->ready_head++]];
    it->yielded++;
  }
  pthread_mutex_unlock(&w->mu);
  return rc;
}

void pp_completed_destroy(pp_completed *it) {
  if (!it)
    return;
  waiter_destroy(&it->w, 1);
  free(it);
}
