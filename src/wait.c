/*
 * Waiting on several futures: pp_wait() (a condition over a set) and the
 * as_completed iterator (each future once, in the order they finish).
 *
 * as_completed must stay cheap over a million futures, so it does not scan:
 * it hangs a watch on each pending future, and the collector, resolving a
 * future, pushes the watch's index on the iterator's ready queue (under
 * pool->mu, like everything the collector touches).
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>

struct pp_completed {
  pp_pool *pool;       /* NULL when every future was done at the start */
  pp_future **futures; /* referenced copies of the caller's array */
  size_t n;
  size_t *ready; /* indices of done futures not yet yielded */
  size_t ready_head, ready_tail;
  size_t yielded;
  uint64_t deadline_ns;
  struct watch *watches; /* [n] */
};

static int is_done(const pp_future *f) {
  return pp_future_done(f);
}

/* The one pool a set of futures waits on, NULL when all are done, or
 * (pp_pool *)-1 when they belong to several pools. */
static pp_pool *common_pool(pp_future *const *fs, size_t n) {
  pp_pool *p = NULL;
  for (size_t i = 0; i < n; i++) {
    if (!fs[i] || is_done(fs[i]))
      continue;
    if (p && fs[i]->pool != p)
      return (pp_pool *)-1;
    p = fs[i]->pool;
  }
  return p;
}

/* Whether `when` holds; counts the done futures into *ndone. */
static int condition_met(pp_future *const *fs, size_t n, pp_return_when when,
                         size_t *ndone) {
  size_t done = 0, failed = 0;
  for (size_t i = 0; i < n; i++) {
    if (!fs[i] || !is_done(fs[i]))
      continue;
    done++;
    if (!pp_future_cancelled(fs[i]) && pp_future_result(fs[i], 0, NULL, NULL))
      failed++;
  }
  *ndone = done;
  switch (when) {
  case PP_FIRST_COMPLETED:
    return done > 0 || n == 0;
  case PP_FIRST_EXCEPTION:
    return failed > 0 || done == n;
  case PP_ALL_COMPLETED:
    return done == n;
  }
  return 1;
}

/* Sleeps on the pool's condition (or in short naps when the futures span
 * several pools) until `deadline_ns`. Returns 0 or ETIMEDOUT. */
static int nap(pp_pool *p, uint64_t deadline_ns) {
  struct timespec ts;

  if (p == (pp_pool *)-1) {
    struct timespec two_ms = {0, 2000000};
    if (deadline_ns != RING_FOREVER && deadline_ns <= pp_now_ns())
      return ETIMEDOUT;
    nanosleep(&two_ms, NULL);
    return 0;
  }
  if (deadline_ns == RING_FOREVER)
    return pthread_cond_wait(&p->changed, &p->mu);
  ts = pp_timespec(deadline_ns);
  return pthread_cond_timedwait(&p->changed, &p->mu, &ts);
}

int pp_wait(pp_future *const *fs, size_t n, double timeout, pp_return_when when,
            unsigned char *done) {
  uint64_t deadline = pp_deadline_ns(timeout);
  pp_pool *p;
  size_t ndone = 0;

  if ((n && !fs) || when > PP_ALL_COMPLETED)
    return PP_EINVAL;
  p = common_pool(fs, n);
  if (p && p != (pp_pool *)-1)
    pthread_mutex_lock(&p->mu);
  while (!condition_met(fs, n, when, &ndone) && p) {
    if (timeout == 0 || nap(p, deadline) == ETIMEDOUT) {
      condition_met(fs, n, when, &ndone);
      break;
    }
  }
  if (p && p != (pp_pool *)-1)
    pthread_mutex_unlock(&p->mu);
  for (size_t i = 0; done && i < n; i++)
    done[i] = fs[i] && is_done(fs[i]);
  return (int)ndone;
}

/* ---------------------------------------------------------- as_completed */

void completed_notify_locked(pp_completed *it, size_t index) {
  it->ready[it->ready_tail++] = index;
}

int pp_as_completed(pp_future *const *fs, size_t n, double timeout,
                    pp_completed **out) {
  pp_completed *it;

  if (!out || (n && !fs))
    return PP_EINVAL;
  *out = NULL;
  for (size_t i = 0; i < n; i++)
    if (!fs[i])
      return PP_EINVAL;
  if (!(it = calloc(1, sizeof *it)))
    return PP_ENOMEM;
  it->pool = common_pool(fs, n);
  if (it->pool == (pp_pool *)-1) {
    free(it);
    return PP_EINVAL;
  }
  it->n = n;
  it->deadline_ns = pp_deadline_ns(timeout);
  it->futures = malloc((n ? n : 1) * sizeof *it->futures);
  it->ready = malloc((n ? n : 1) * sizeof *it->ready);
  it->watches = calloc(n ? n : 1, sizeof *it->watches);
  if (!it->futures || !it->ready || !it->watches) {
    free(it->futures);
    free(it->ready);
    free(it->watches);
    free(it);
    return PP_ENOMEM;
  }
  if (it->pool)
    pthread_mutex_lock(&it->pool->mu);
  for (size_t i = 0; i < n; i++) {
    pp_future *f = fs[i];
    atomic_fetch_add(&f->refs, 1);
    it->futures[i] = f;
    if (is_done(f)) {
      it->ready[it->ready_tail++] = i;
    } else {
      struct watch *w = &it->watches[i];
      w->it = it;
      w->index = i;
      w->next = f->watches;
      f->watches = w;
    }
  }
  if (it->pool)
    pthread_mutex_unlock(&it->pool->mu);
  *out = it;
  return 0;
}

int pp_completed_next(pp_completed *it, pp_future **out) {
  int rc = 0;

  if (!it || !out)
    return PP_EINVAL;
  *out = NULL;
  if (it->yielded == it->n)
    return PP_EOF;
  if (it->pool)
    pthread_mutex_lock(&it->pool->mu);
  while (it->ready_head == it->ready_tail) {
    if (it->deadline_ns != RING_FOREVER && pp_now_ns() >= it->deadline_ns) {
      rc = PP_ETIMEDOUT;
      break;
    }
    nap(it->pool, it->deadline_ns);
  }
  if (rc == 0) {
    *out = it->futures[it->ready[it->ready_head++]];
    it->yielded++;
  }
  if (it->pool)
    pthread_mutex_unlock(&it->pool->mu);
  return rc;
}

/* Unhooks this iterator's watch from a future still pending. */
static void unwatch_locked(pp_future *f, struct watch *w) {
  for (struct watch **pp = &f->watches; *pp; pp = &(*pp)->next)
    if (*pp == w) {
      *pp = w->next;
      return;
    }
}

void pp_completed_destroy(pp_completed *it) {
  if (!it)
    return;
  if (it->pool)
    pthread_mutex_lock(&it->pool->mu);
  for (size_t i = 0; i < it->n; i++)
    if (it->watches[i].it && !is_done(it->futures[i]))
      unwatch_locked(it->futures[i], &it->watches[i]);
  if (it->pool)
    pthread_mutex_unlock(&it->pool->mu);
  for (size_t i = 0; i < it->n; i++)
    pp_future_release(it->futures[i]);
  free(it->futures);
  free(it->ready);
  free(it->watches);
  free(it);
}
