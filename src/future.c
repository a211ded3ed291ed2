/*
 * Futures: what pp_submit() hands out. A future is resolved exactly once,
 * under pool->mu, by the slot table on behalf of an engine or a cancelling
 * thread; its outcome is written before its state turns done (release), so
 * a thread that sees it done (acquire) reads the outcome without the lock.
 * That is also why a done future stays usable after its pool is destroyed.
 *
 * References: the caller's (from submit), the pool's (until resolved and
 * its callbacks ran), and one per waiter (as_completed) holding it.
 */
#include "future.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pp_callback {
  pp_done_fn fn;
  void *arg;
  struct pp_callback *next;
};

static void run_callbacks(struct pp__deferred *d);

pp_future *pp__future_new(pp_pool *p) {
  pp_future *f = calloc(1, sizeof *f);
  if (!f)
    return NULL;
  f->pool = p;
  atomic_init(&f->refs, 1);
  atomic_init(&f->state, PP_PENDING);
  f->later.run = run_callbacks;
  return f;
}

void pp__outcome_set(struct pp__outcome *o, const struct pp__result *r) {
  o->status = r->status;
  o->code = r->code;
  if (r->status == 0 && r->len <= sizeof o->small) {
    /* small results (a number, a flag) need no allocation of their own */
    memcpy(o->small, r->data, r->len);
    o->data = o->small;
    o->len = r->len;
  } else if (r->status == 0) {
    if ((o->data = malloc(r->len)) != NULL) {
      memcpy(o->data, r->data, r->len);
      o->len = r->len;
    } else {
      o->status = PP_ENOMEM;
    }
  }
  if (r->msg && *r->msg)
    o->message = strdup(r->msg);
}

void pp__outcome_clear(struct pp__outcome *o) {
  if (o->data != o->small)
    free(o->data);
  free(o->message);
  memset(o, 0, sizeof *o);
}

/* The slot owner callback: the future's task ended as *r. Wakes its
 * waiters at once and defers its done-callbacks until mu is dropped. */
static void resolve_locked(void *owner, size_t index,
                           const struct pp__result *r,
                           struct pp__deferred **later) {
  pp_future *f = owner;

  (void)index;
  if (pp__future_is_done(f))
    return;
  pp__outcome_set(&f->out, r);
  atomic_store_explicit(&f->state,
                        r->status == PP_ECANCELLED ? PP_CANCELLED : PP_FINISHED,
                        memory_order_release);
  pp__watch_fire_locked(f->watches, pp__future_raised(f));
  f->watches = NULL;
  f->later.next = *later;
  *later = &f->later;
}

/* The slot owner callback for a run: a future's task has one item. */
static void resolve_run_locked(void *owner, size_t index, uint32_t count,
                               const void *run, size_t len, uint64_t run_ns,
                               struct pp__deferred **later) {
  struct pp__item_hdr h;
  char msg[PP__MESSAGE_MAX];
  const char *bytes = (const char *)run + sizeof h;

  (void)count;
  (void)len;
  (void)run_ns;
  memcpy(&h, run, sizeof h);
  msg[0] = '\0';
  if (h.msg_len)
    snprintf(msg, sizeof msg, "%.*s", (int)h.msg_len, bytes + h.len);
  resolve_locked(owner, index,
                 &(struct pp__result){h.status, h.code, bytes, h.len, msg, 0},
                 later);
}

const struct pp__owner_ops pp__future_ops = {
    resolve_locked, resolve_run_locked, NULL, NULL}; /* results are copied */

/* After mu is dropped: runs the done-callbacks of a resolved future and
 * drops the pool's reference to it. Callbacks were detached under mu; a
 * callback added after that runs in its adder. */
static void run_callbacks(struct pp__deferred *d) {
  pp_future *f = (pp_future *)((char *)d - offsetof(pp_future, later));
  struct pp_callback *cb;

  if (f->had_callbacks) { /* else none can have been added: see below */
    pp__pool_lock(f->pool);
    cb = f->callbacks;
    f->callbacks = NULL;
    pp__pool_unlock(f->pool);
  } else {
    cb = NULL;
  }
  while (cb) {
    struct pp_callback *next = cb->next;
    cb->fn(f, cb->arg);
    free(cb);
    cb = next;
  }
  pp_future_release(f);
}

pp_state pp_future_state(const pp_future *f) {
  uint64_t word;
  enum pp__slot_state st;

  if (!f)
    return PP_PENDING;
  if (pp__future_is_done(f))
    return (pp_state)atomic_load(&((pp_future *)f)->state);
  word = pp__slot_word_of(&f->pool->st, pp__id_slot(f->id));
  st = pp__word_state(word);
  if (pp__word_gen(word) == pp__id_gen(f->id) &&
      (st == PP__SLOT_RUNNING || st == PP__SLOT_CLAIMED))
    return PP_RUNNING;
  return pp__future_is_done(f) ? (pp_state)atomic_load(&((pp_future *)f)->state)
                               : PP_PENDING;
}

int pp_future_done(const pp_future *f) {
  return f && pp__future_is_done(f);
}

int pp_future_running(const pp_future *f) {
  return pp_future_state(f) == PP_RUNNING;
}

int pp_future_cancelled(const pp_future *f) {
  return f && atomic_load(&((pp_future *)f)->state) == PP_CANCELLED;
}

static int done_cond(const void *f) {
  return pp__future_is_done(f);
}

int pp_future_result(pp_future *f, double timeout, const void **data,
                     size_t *len) {
  pp_pool *p;

  if (data)
    *data = NULL;
  if (len)
    *len = 0;
  if (!f)
    return PP_EINVAL;
  if (!pp__future_is_done(f)) {
    uint64_t deadline = pp__deadline_ns(timeout);
    if (timeout == 0)
      return PP_ETIMEDOUT;
    p = f->pool;
    pp__pool_release_held(p);
    if (p->engine->help_wait)
      p->engine->help_wait(p, done_cond, f);
    pp__pool_lock(p);
    while (!pp__future_is_done(f) &&
           pp__pool_wait(p, &p->changed, deadline) != ETIMEDOUT)
      ;
    pp__pool_unlock(p);
    if (!pp__future_is_done(f))
      return PP_ETIMEDOUT;
  }
  if (f->out.status == 0) {
    if (data)
      *data = f->out.data;
    if (len)
      *len = f->out.len;
  }
  return f->out.status;
}

const char *pp_future_message(const pp_future *f) {
  return f && pp__future_is_done(f) && f->out.message ? f->out.message : "";
}

int pp_future_task_code(const pp_future *f) {
  return f && pp__future_is_done(f) ? f->out.code : 0;
}

/* What cancelling a done future answers: 0 if it was cancelled. */
static int cancel_done(const pp_future *f) {
  return pp_future_cancelled(f) ? 0 : PP_EINVAL;
}

int pp_future_cancel(pp_future *f) {
  struct pp__deferred *later = NULL;
  int rc;

  if (!f)
    return PP_EINVAL;
  if (pp__future_is_done(f))
    return cancel_done(f);
  pp__pool_lock(f->pool);
  rc = pp__future_is_done(f) ? cancel_done(f)
                             : pp__slot_cancel_locked(f->pool, f->id, &later);
  pp__pool_unlock(f->pool);
  pp__deferred_run(later);
  return rc;
}

int pp_future_cancel_running(pp_future *f) {
  pp_pool *p;
  int rc;

  if (!f)
    return PP_EINVAL;
  if ((rc = pp_future_cancel(f)) != PP_EBUSY)
    return rc;
  p = f->pool;
  pp__pool_lock(p);
  rc = pp__future_is_done(f) ? cancel_done(f)
                             : pp__slot_cancel_running_locked(p, f->id);
  pp__pool_unlock(p);
  return rc;
}

int pp_future_add_done_callback(pp_future *f, pp_done_fn fn, void *arg) {
  struct pp_callback *cb;
  int now = 1;

  if (!f || !fn)
    return PP_EINVAL;
  if (!pp__future_is_done(f)) {
    if (!(cb = malloc(sizeof *cb)))
      return PP_ENOMEM;
    *cb = (struct pp_callback){fn, arg, NULL};
    pp__pool_lock(f->pool);
    if (!pp__future_is_done(f) || f->callbacks) {
      /* Not done, or done with callbacks yet to run: join them, so that
       * callbacks keep their order. */
      struct pp_callback **tail = &f->callbacks;
      while (*tail)
        tail = &(*tail)->next;
      *tail = cb;
      f->had_callbacks = 1; /* a done future's list stays empty without */
      now = 0;
    }
    pp__pool_unlock(f->pool);
    if (now)
      free(cb);
  }
  if (now)
    fn(f, arg);
  return 0;
}

int pp_future_format(const pp_future *f, char *buf, size_t size) {
  static const char *const names[] = {"pending", "running", "finished",
                                      "cancelled"};
  pp_state st;

  if (!f)
    return snprintf(buf, size, "<Future NULL>");
  st = pp_future_state(f);
  if (st != PP_FINISHED)
    return snprintf(buf, size, "<Future at %p state=%s>", (const void *)f,
                    names[st]);
  if (f->out.status == 0)
    return snprintf(buf, size,
                    "<Future at %p state=finished returned %zu bytes>",
                    (const void *)f, f->out.len);
  return snprintf(buf, size, "<Future at %p state=finished raised %s: %s>",
                  (const void *)f, pp_errname(f->out.status),
                  f->out.message ? f->out.message : pp_strerror(f->out.status));
}

void pp_future_release(pp_future *f) {
  if (!f || atomic_fetch_sub(&f->refs, 1) != 1)
    return;
  while (f->callbacks) {
    struct pp_callback *next = f->callbacks->next;
    free(f->callbacks);
    f->callbacks = next;
  }
  pp__outcome_clear(&f->out);
  free(f);
}
