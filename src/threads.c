/*
 * The thread engine: the same pool, futures and iterators, with POSIX
 * threads of the master as workers.
 *
 * DESIGN
 * Everything master-side is shared with the process engine (slots, slot
 * words, futures, maps, wait). What differs is transport: a queued slot's
 * index goes on an in-memory queue, and a worker thread runs the task on
 * the slot's own copy of the argument (the one copy pp_submit() promises)
 * and resolves the future or map item itself (the one copy of the result).
 * No ring, no collector, no shared memory. A thread cannot be killed, so
 * timeouts and cancelling a running task answer PP_ENOTSUP.
 *
 * LOCKING
 * pool->mu guards the queue, `closing` and the thread table, as it guards
 * the slots. A worker holds it to take an index and to apply a result,
 * never while it runs a task.
 */
#include "internal.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

struct thread_engine {
  pthread_cond_t work; /* with pool->mu: queue not empty, or closing */
  uint32_t *queue;     /* slot indices, a ring of nslots entries: never
                          more than the slots in flight */
  uint32_t head, tail; /* tail - head entries, indices taken mod nslots */
  int closing;         /* threads exit once the queue is empty */
  pthread_t *threads;  /* [nworkers]: the live thread of each place */
  char *joinable;      /* [nworkers]: threads[i] was created */
  int *init_status;    /* [nworkers]: 1 until the initializer answered */
};

struct thread_arg {
  pp_pool *p;
  int index;
};

/* With mu held: applies one item's result, as the collector does for a
 * result frame. */
static void apply_locked(pp_pool *p, uint32_t index, uint32_t gen,
                         uint32_t item, int status, int code, pp_task *t,
                         pp_future **done) {
  struct slot *s = &p->slots[index];
  const char *msg = t->msg;

  if (!s->kind || s->gen != gen)
    return;
  if (s->kind == SLOT_FUTURE) {
    future_resolve_locked(s->owner, status, code, t->result, t->len, msg, done);
    pool_free_slot(p, index);
  } else {
    map_resolve_locked(s->owner, s->base + item, status, code, t->result,
                       t->len, msg);
    if (--s->items_left == 0) {
      map_task_gone_locked(s->owner);
      pool_free_slot(p, index);
    }
  }
}

/* Runs slot `index` (taken off the queue, word QUEUED -> RUNNING done):
 * each item of its frame, applying each result. */
static void run_slot(pp_pool *p, uint32_t index, uint32_t gen, pp_task *t) {
  const unsigned char *frame = p->slots[index].frame;
  struct task_hdr hdr;
  const unsigned char *arg;
  pp_task_fn fn;

  memcpy(&hdr, frame + 8, sizeof hdr);
  fn = (pp_task_fn)(uintptr_t)hdr.fn;
  arg = frame + 8 + sizeof hdr;
  for (uint32_t i = 0; i < hdr.count; i++) {
    pp_future *done = NULL;
    uint32_t len;
    int rc, status;
    memcpy(&len, arg, 4);
    t->len = 0;
    t->too_big = 0;
    t->msg[0] = '\0';
    rc = fn(t, arg + 8, len);
    status = rc != 0 ? PP_ETASK : (t->too_big ? PP_ETOOBIG : 0);
    pthread_mutex_lock(&p->mu);
    apply_locked(p, index, gen, i, status, rc, t, &done);
    pthread_cond_broadcast(&p->changed);
    pthread_mutex_unlock(&p->mu);
    future_finish_list(done);
    arg += 8 + pad8(len);
  }
}

/* With mu held: takes the next index whose word moves QUEUED -> RUNNING
 * (a cancelled one is skipped). Returns 0 when closing and empty. */
static int take_locked(pp_pool *p, int worker, uint32_t *index, uint32_t *gen) {
  struct thread_engine *te = p->te;
  for (;;) {
    while (te->head == te->tail && !te->closing)
      pthread_cond_wait(&te->work, &p->mu);
    if (te->head == te->tail)
      return 0;
    *index = te->queue[te->head++ % p->sh->nslots];
    *gen = p->slots[*index].gen;
    uint64_t expect = slot_word(*gen, SLOT_QUEUED, -1);
    if (p->slots[*index].kind &&
        atomic_compare_exchange_strong(&p->sh->slot_words[*index], &expect,
                                       slot_word(*gen, SLOT_RUNNING, worker)))
      return 1;
  }
}

static int start_thread(pp_pool *p, int index);

/* A worker thread: runs its initializer, then tasks, until closing or
 * max_tasks_per_worker, when it starts its replacement and leaves. */
static void *thread_main(void *arg) {
  struct thread_arg ta = *(struct thread_arg *)arg;
  pp_pool *p = ta.p;
  struct thread_engine *te = p->te;
  pp_task task = {.sh = p->sh};
  unsigned ran = 0;
  uint32_t index, gen;
  int rc, retire = 0;

  free(arg);
  rc = p->opts.initializer ? p->opts.initializer(p->opts.initarg) : 0;
  pthread_mutex_lock(&p->mu);
  te->init_status[ta.index] = rc ? (rc == 1 ? 2 : rc) : 0;
  pthread_cond_broadcast(&p->changed);
  while (rc == 0 && take_locked(p, ta.index, &index, &gen)) {
    pthread_mutex_unlock(&p->mu);
    run_slot(p, index, gen, &task);
    pthread_mutex_lock(&p->mu);
    if (p->opts.max_tasks_per_worker && ++ran >= p->opts.max_tasks_per_worker &&
        !te->closing) {
      retire = start_thread(p, ta.index) == 0;
      break;
    }
  }
  if (retire)
    pthread_detach(pthread_self());
  p->live--;
  pthread_cond_broadcast(&p->changed);
  pthread_mutex_unlock(&p->mu);
  free(task.result);
  return NULL;
}

/* With mu held (or before any thread runs): starts the thread of place
 * `index`. Signals are blocked in it: they are the program's to handle. */
static int start_thread(pp_pool *p, int index) {
  struct thread_arg *ta = malloc(sizeof *ta);
  sigset_t all, old;
  int rc;

  if (!ta)
    return PP_ENOMEM;
  ta->p = p;
  ta->index = index;
  p->te->init_status[index] = 1;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  rc = pthread_create(&p->te->threads[index], NULL, thread_main, ta);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0) {
    free(ta);
    return PP_ENOMEM;
  }
  p->te->joinable[index] = 1;
  p->live++;
  return 0;
}

/* Waits, with mu held, until every initializer answered; PP_EINIT if one
 * failed. */
static int wait_started_locked(pp_pool *p) {
  for (;;) {
    int pending = 0;
    for (int i = 0; i < p->nworkers; i++) {
      if (p->te->init_status[i] > 1 || p->te->init_status[i] < 0)
        return PP_EINIT;
      pending |= p->te->init_status[i] == 1;
    }
    if (!pending)
      return 0;
    pthread_cond_wait(&p->changed, &p->mu);
  }
}

int threads_start(pp_pool *p) {
  struct thread_engine *te = calloc(1, sizeof *te);
  int rc = 0;

  if (!te)
    return PP_ENOMEM;
  p->te = te;
  te->queue = malloc(p->sh->nslots * sizeof *te->queue);
  te->threads = calloc((size_t)p->nworkers, sizeof *te->threads);
  te->init_status = calloc((size_t)p->nworkers, sizeof *te->init_status);
  te->joinable = calloc((size_t)p->nworkers, 1);
  if (!te->queue || !te->threads || !te->init_status || !te->joinable ||
      pthread_cond_init(&te->work, NULL) != 0)
    return PP_ENOMEM; /* threads_stop() frees what was made */
  pthread_mutex_lock(&p->mu);
  for (int i = 0; i < p->nworkers && rc == 0; i++)
    rc = start_thread(p, i);
  if (rc == 0)
    rc = wait_started_locked(p);
  p->started = rc == 0;
  pthread_mutex_unlock(&p->mu);
  return rc;
}

void threads_push_locked(pp_pool *p, uint32_t index) {
  struct thread_engine *te = p->te;
  te->queue[te->tail++ % p->sh->nslots] = index;
  pthread_cond_signal(&te->work);
}

void threads_close_locked(pp_pool *p) {
  p->te->closing = 1;
  pthread_cond_broadcast(&p->te->work);
}

void threads_stop(pp_pool *p) {
  struct thread_engine *te = p->te;

  if (!te)
    return;
  if (te->joinable) {
    pthread_mutex_lock(&p->mu);
    threads_close_locked(p);
    while (p->live > 0) /* retired threads are detached: wait, not join */
      pthread_cond_wait(&p->changed, &p->mu);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nworkers; i++)
      if (te->joinable[i])
        pthread_join(te->threads[i], NULL);
  }
  pthread_cond_destroy(&te->work);
  free(te->queue);
  free(te->threads);
  free(te->init_status);
  free(te->joinable);
  free(te);
  p->te = NULL;
}
