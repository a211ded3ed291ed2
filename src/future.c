/*
 * Futures: what pp_submit() hands out. A future is resolved exactly once,
 * by the collector (or by a cancelling thread), under pool->mu; its result
 * fields are written before its state turns done (release), so a thread
 * that sees it done (acquire) reads them without the lock. That is also
 * why a done future stays usable after its pool is destroyed.
 *
 * References: the caller's (from submit), the pool's (until resolved and
 * its callbacks ran), and one per as_completed iterator holding it.
 */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

pp_future *future_new(pp_pool *p) {
  pp_future *f = calloc(1, sizeof *f);
  if (!f)
    return NULL;
  f->pool = p;
  atomic_init(&f->refs, 1);
  atomic_init(&f->state, PP_PENDING);
  return f;
}

static int is_done(const pp_future *f) {
  int st = atomic_load_explicit(&((pp_future *)f)->state, memory_order_acquire);
  return st == PP_FINISHED || st == PP_CANCELLED;
}

void outcome_set(struct outcome *o, int status, int code, const void *data,
                 size_t len, const char *msg) {
  o->status = status;
  o->code = code;
  if (status == 0 && len) {
    if ((o->data = malloc(len)) != NULL) {
      memcpy(o->data, data, len);
      o->len = len;
    } else {
      o->status = PP_ENOMEM;
    }
  }
  if (msg && *msg)
    o->message = strdup(msg);
}

void outcome_clear(struct outcome *o) {
  free(o->data);
  free(o->message);
  memset(o, 0, sizeof *o);
}

void future_resolve_locked(pp_future *f, int status, int code, const void *data,
                           size_t len, const char *msg, pp_future **done_list) {
  if (is_done(f))
    return;
  outcome_set(&f->out, status, code, data, len, msg);
  atomic_store_explicit(&f->state,
                        status == PP_ECANCELLED ? PP_CANCELLED : PP_FINISHED,
                        memory_order_release);
  for (struct watch *w = f->watches; w; w = w->next)
    completed_notify_locked(w->it, w->index);
  f->watches = NULL;
  f->next_done = *done_list;
  *done_list = f;
}

/* After mu is dropped: runs the done-callbacks of each resolved future and
 * drops the pool's reference to it. Callbacks were detached under mu when
 * the future turned done; a callback added later runs in its adder. */
void future_finish_list(pp_future *done) {
  while (done) {
    pp_future *f = done;
    struct callback *cb;
    done = f->next_done;
    pthread_mutex_lock(&f->pool->mu);
    cb = f->callbacks;
    f->callbacks = NULL;
    pthread_mutex_unlock(&f->pool->mu);
    while (cb) {
      struct callback *next = cb->next;
      cb->fn(f, cb->arg);
      free(cb);
      cb = next;
    }
    pp_future_release(f);
  }
}

pp_state pp_future_state(const pp_future *f) {
  pp_pool *p;
  uint64_t word;

  if (!f)
    return PP_PENDING;
  if (is_done(f))
    return (pp_state)atomic_load(&((pp_future *)f)->state);
  p = f->pool;
  word = pool_slot_word(p, id_slot(f->id));
  if (word_gen(word) == id_gen(f->id) &&
      (word_state(word) == SLOT_RUNNING || word_state(word) == SLOT_CLAIMED))
    return PP_RUNNING;
  return is_done(f) ? (pp_state)atomic_load(&((pp_future *)f)->state)
                    : PP_PENDING;
}

int pp_future_done(const pp_future *f) {
  return f && is_done(f);
}

int pp_future_running(const pp_future *f) {
  return pp_future_state(f) == PP_RUNNING;
}

int pp_future_cancelled(const pp_future *f) {
  return f && atomic_load(&((pp_future *)f)->state) == PP_CANCELLED;
}

/* Waits with mu held until f is done or deadline_ns passes. */
static int wait_done_locked(pp_future *f, uint64_t deadline_ns) {
  pp_pool *p = f->pool;
  while (!is_done(f)) {
    if (deadline_ns == RING_FOREVER) {
      pthread_cond_wait(&p->changed, &p->mu);
    } else {
      struct timespec ts = pp_timespec(deadline_ns);
      if (pthread_cond_timedwait(&p->changed, &p->mu, &ts) == ETIMEDOUT &&
          !is_done(f))
        return PP_ETIMEDOUT;
    }
  }
  return 0;
}

/* Before sleeping, takes results off the ring itself for a moment: a
 * small result then reaches this thread without waking the collector. */
static void spin_for_result(pp_future *f) {
  unsigned char buf[4096];
  uint64_t until = pp_now_ns() + PP_SPIN_NS;

  while (!is_done(f) && pp_now_ns() < until)
    if (collector_drain(f->pool, buf, sizeof buf) == 0)
      pp_cpu_relax();
}

int pp_future_result(pp_future *f, double timeout, const void **data,
                     size_t *len) {
  int rc = 0;

  if (data)
    *data = NULL;
  if (len)
    *len = 0;
  if (!f)
    return PP_EINVAL;
  if (!is_done(f)) {
    if (timeout == 0)
      return PP_ETIMEDOUT;
    if (!pool_threaded(f->pool))
      spin_for_result(f);
  }
  if (!is_done(f)) {
    pthread_mutex_lock(&f->pool->mu);
    rc = wait_done_locked(f, pp_deadline_ns(timeout));
    pthread_mutex_unlock(&f->pool->mu);
    if (rc != 0)
      return rc;
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
  return f && is_done(f) && f->out.message ? f->out.message : "";
}

int pp_future_task_code(const pp_future *f) {
  return f && is_done(f) ? f->out.code : 0;
}

int pp_future_cancel(pp_future *f) {
  pp_future *done = NULL;
  int rc;

  if (!f)
    return PP_EINVAL;
  if (is_done(f))
    return pp_future_cancelled(f) ? 0 : PP_EINVAL;
  pthread_mutex_lock(&f->pool->mu);
  rc = is_done(f) ? (pp_future_cancelled(f) ? 0 : PP_EINVAL)
                  : pool_cancel_slot(f->pool, f->id, &done);
  pthread_mutex_unlock(&f->pool->mu);
  future_finish_list(done);
  return rc;
}

int pp_future_cancel_running(pp_future *f) {
  pp_pool *p;
  int rc;

  if (!f)
    return PP_EINVAL;
  rc = pp_future_cancel(f);
  if (rc != PP_EBUSY)
    return rc;
  p = f->pool;
  if (pool_threaded(p))
    return PP_ENOTSUP;
  pthread_mutex_lock(&p->mu);
  if (!is_done(f)) {
    uint32_t index = id_slot(f->id);
    uint64_t word = pool_slot_word(p, index);
    if (word_gen(word) == id_gen(f->id) && word_state(word) == SLOT_RUNNING) {
      p->slots[index].cancel_running = 1;
      rc = collector_kill_worker_locked(p, word_worker(word));
    }
  }
  pthread_mutex_unlock(&p->mu);
  return rc == PP_EBUSY ? 0 : rc;
}

int pp_future_add_done_callback(pp_future *f, pp_done_fn fn, void *arg) {
  struct callback *cb;
  int now = 0;

  if (!f || !fn)
    return PP_EINVAL;
  if (!is_done(f)) {
    if (!(cb = malloc(sizeof *cb)))
      return PP_ENOMEM;
    cb->fn = fn;
    cb->arg = arg;
    pthread_mutex_lock(&f->pool->mu);
    if (!is_done(f) || f->callbacks) {
      /* Not done, or done with callbacks the collector has yet to run:
       * join them, so that callbacks keep their order. */
      struct callback **tail = &f->callbacks;
      while (*tail)
        tail = &(*tail)->next;
      cb->next = NULL;
      *tail = cb;
    } else {
      now = 1;
      free(cb);
    }
    pthread_mutex_unlock(&f->pool->mu);
  } else {
    now = 1;
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
    struct callback *next = f->callbacks->next;
    free(f->callbacks);
    f->callbacks = next;
  }
  outcome_clear(&f->out);
  free(f);
}
