/*
 * Futures and the waiters that watch them (wait.c), as future.c, wait.c
 * and map.c share them. Engines never include this: they reach a future
 * through its slot's owner callbacks.
 */
#ifndef PP_FUTURE_H
#define PP_FUTURE_H

#include "pool.h"

/* How a task (or one argument of a chunk) ended, as the master keeps it. */
struct pp__outcome {
  int status; /* 0 or the PP_E* it failed with */
  int code;   /* what the task returned, for PP_ETASK */
  void *data; /* the result bytes (status 0): owned, or `small` */
  size_t len;
  char *message;           /* NULL or owned */
  unsigned char small[16]; /* the bytes of a result this small */
};

/* Fills `o` with copies of *r (status PP_ENOMEM when they cannot be
 * made). */
void pp__outcome_set(struct pp__outcome *o, const struct pp__result *r);
void pp__outcome_clear(struct pp__outcome *o);

struct pp__waiter;

/* A waiter's interest in one future (wait.c). */
struct pp__watch {
  struct pp__waiter *w;
  size_t index;           /* which of the waiter's futures */
  struct pp__watch *next; /* under the future's pool->mu */
  int fired;              /* under the waiter's lock: its last touch */
};

struct pp_callback;

struct pp_future {
  pp_pool *pool;     /* used only while pending: a done future outlives it */
  atomic_int refs;   /* caller, pool (until done), waiters */
  uint64_t id;       /* its slot while in flight */
  _Atomic int state; /* pp_state; RUNNING is read from the slot word */
  struct pp__outcome out;        /* written once, before state turns done */
  struct pp_callback *callbacks; /* under pool->mu */
  int had_callbacks;         /* under pool->mu: one was added while pending */
  struct pp__watch *watches; /* under pool->mu */
  struct pp__deferred later; /* callbacks to run after unlock */
};

/* Whether f is done (acquire: its outcome may then be read unlocked). */
static inline int pp__future_is_done(const pp_future *f) {
  int st = atomic_load_explicit(&((pp_future *)f)->state, memory_order_acquire);
  return st == PP_FINISHED || st == PP_CANCELLED;
}

/* Whether a done future failed (for FIRST_EXCEPTION: not if cancelled). */
static inline int pp__future_raised(const pp_future *f) {
  return atomic_load(&((pp_future *)f)->state) == PP_FINISHED &&
         f->out.status != 0;
}

/* wait.c: called under the future's pool->mu when it turns done. */
void pp__watch_fire_locked(struct pp__watch *watches, int raised);

/* future.c: a pending future of pool p, and the slot owner callbacks that
 * resolve it. */
pp_future *pp__future_new(pp_pool *p);
extern const struct pp__owner_ops pp__future_ops;

#endif
