/*
 * The thread engine's table of operations (engine.h): the same pool,
 * futures and iterators, with POSIX threads of the master as workers.
 *
 * DESIGN
 * A queued slot's index goes on an in-memory queue (a doubly linked list
 * through arrays indexed by slot, so that a cancelled slot leaves it at
 * once), and a worker thread runs the task on the slot's own copy of the
 * argument (the one copy pp_submit() promises) and hands each item's
 * outcome to the slot table itself (the one copy of the result). No ring,
 * no collector, no shared memory. A thread cannot be killed, so the table
 * has no kill operation: timeouts and cancelling a running task answer
 * PP_ENOTSUP.
 *
 * LOCKING
 * pool->mu guards the queue, `closing` and the thread table, as it guards
 * the slots. A worker holds it to take an index and to hand over an
 * outcome, never while it runs a task.
 */
#include "pool.h"

#include <stdlib.h>
#include <string.h>

#define NONE UINT32_MAX

struct threads {
  pthread_cond_t work; /* with pool->mu: queue not empty, or closing */
  uint32_t *next;      /* [nslots]: queue links by slot index */
  uint32_t *prev;
  uint32_t head, tail;         /* NONE when empty */
  int closing;                 /* threads exit once the queue is empty */
  pthread_t *threads;          /* [nworkers]: the live thread of each place */
  char *joinable;              /* [nworkers]: threads[i] was created */
  enum pp__init_outcome *init; /* [nworkers] */
};

struct thread_arg {
  pp_pool *p;
  int index;
};

/* A worker thread's packed run of outcomes (slots.h), reused. */
struct run_buf {
  unsigned char *bytes;
  size_t len, cap;
};

#define RUN_BYTES (64 * 1024)

static struct threads *threads_of(pp_pool *p) {
  return p->engine_state;
}

/* Appends one item's outcome to the packed run in `buf`. Returns 0 or
 * PP_ENOMEM. */
static int append_item(struct run_buf *buf, const struct pp__result *r) {
  size_t msg_len, need = pp__item_need(r, &msg_len);
  unsigned char *p;

  if (buf->cap - buf->len < need) {
    size_t cap = buf->cap ? buf->cap : 4096;
    while (cap - buf->len < need)
      cap *= 2;
    if (!(p = realloc(buf->bytes, cap)))
      return PP_ENOMEM;
    buf->bytes = p;
    buf->cap = cap;
  }
  pp__item_write(buf->bytes + buf->len, r, msg_len, need);
  buf->len += need;
  return 0;
}

/* With no lock held: hands the run of items first .. first + count - 1 of
 * slot `index` (generation `gen`) to the slot table. */
static void hand_over(pp_pool *p, uint32_t index, uint32_t gen, uint32_t first,
                      uint32_t count, struct run_buf *buf, uint64_t run_ns) {
  struct pp__deferred *later = NULL;

  pp__pool_lock(p);
  if (pp__slot_by_id(&p->st, pp__make_id(gen, index)))
    pp__slot_resolve_run_locked(p, index, first, count, buf->bytes, buf->len,
                                run_ns, &later);
  pp__pool_unlock(p);
  pp__deferred_run(later);
  buf->len = 0;
}

/* With no lock held: fails what is left of slot `index` (out of memory). */
static void fail_slot(pp_pool *p, uint32_t index, uint32_t gen) {
  struct pp__deferred *later = NULL;

  pp__pool_lock(p);
  if (pp__slot_by_id(&p->st, pp__make_id(gen, index)))
    pp__slot_fail_locked(p, index, PP_ENOMEM, "out of memory", &later);
  pp__pool_unlock(p);
  pp__deferred_run(later);
}

/* Runs slot `index` (taken off the queue, word QUEUED -> RUNNING done):
 * each item of its frame, handing the outcomes over as one run (or in
 * runs of RUN_BYTES when they are large, or out of memory one by one). */
static void run_slot(pp_pool *p, uint32_t index, uint32_t gen, pp_task *t,
                     struct run_buf *buf) {
  const unsigned char *frame = p->st.slots[index].frame;
  struct pp__task_hdr hdr;
  const unsigned char *arg;
  uint32_t first = 0;
  uint64_t t0 = pp__now_ns();
  pp_task_fn fn;

  memcpy(&hdr, frame + 8, sizeof hdr);
  fn = (pp_task_fn)(uintptr_t)hdr.fn;
  arg = frame + 8 + sizeof hdr;
  for (uint32_t i = 0; i < hdr.count; i++) {
    struct pp__result r;
    uint32_t len;
    memcpy(&len, arg, 4);
    pp__task_run(t, fn, arg + 8, len, &r);
    if (append_item(buf, &r) != 0) {
      r = (struct pp__result){PP_ENOMEM, 0, NULL, 0, "out of memory", 0};
      if (buf->len)
        hand_over(p, index, gen, first, i - first, buf, 0);
      first = i;
      if (append_item(buf, &r) != 0) {
        fail_slot(p, index, gen);
        return;
      }
    }
    if (buf->len >= RUN_BYTES || i + 1 == hdr.count) {
      hand_over(p, index, gen, first, i + 1 - first, buf, pp__now_ns() - t0);
      first = i + 1;
      t0 = pp__now_ns();
    }
    arg += 8 + pp__pad8(len);
  }
}

/* With mu held: unlinks slot `index` from the queue. */
static void unlink_locked(struct threads *te, uint32_t index) {
  uint32_t n = te->next[index], pv = te->prev[index];
  if (pv == NONE)
    te->head = n;
  else
    te->next[pv] = n;
  if (n == NONE)
    te->tail = pv;
  else
    te->prev[n] = pv;
}

/* With mu held: takes the next queued slot, moving its word QUEUED ->
 * RUNNING. Returns 0 when closing and empty. */
static int take_locked(pp_pool *p, int worker, uint32_t *index, uint32_t *gen) {
  struct threads *te = threads_of(p);

  PP__ASSERT_LOCKED(p);
  for (;;) {
    while (te->head == NONE && !te->closing)
      pp__pool_wait(p, &te->work, PP__FOREVER);
    if (te->head == NONE)
      return 0;
    *index = te->head;
    unlink_locked(te, *index);
    *gen = p->st.slots[*index].gen;
    uint64_t expect = pp__slot_word(*gen, PP__SLOT_QUEUED, -1);
    if (p->st.slots[*index].used &&
        atomic_compare_exchange_strong(
            pp__word_at(p->st.words, *index), &expect,
            pp__slot_word(*gen, PP__SLOT_RUNNING, worker)))
      return 1;
  }
}

static int start_thread(pp_pool *p, int index);

/* A worker thread: runs its initializer, then tasks, until closing or
 * max_tasks_per_worker, when it starts its replacement and leaves. */
static void *thread_main(void *arg) {
  struct thread_arg ta = *(struct thread_arg *)arg;
  pp_pool *p = ta.p;
  struct threads *te = threads_of(p);
  pp_task task = {.max_payload = p->opts.max_payload};
  struct run_buf buf = {NULL, 0, 0};
  enum pp__init_outcome init;
  unsigned ran = 0;
  uint32_t index, gen;
  int retire = 0, code;

  free(arg);
  init = pp__init_run(p->opts.initializer, p->opts.initarg, &code);
  pp__pool_lock(p);
  te->init[ta.index] = init;
  pthread_cond_broadcast(&p->changed);
  while (init == PP__INIT_PASSED && take_locked(p, ta.index, &index, &gen)) {
    pp__pool_unlock(p);
    run_slot(p, index, gen, &task, &buf);
    pp__pool_lock(p);
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
  pp__pool_unlock(p);
  pp__task_clear(&task);
  free(buf.bytes);
  return NULL;
}

/* With mu held (or before any thread runs): starts the thread of place
 * `index`. Signals are blocked in it: they are the program's to handle. */
static int start_thread(pp_pool *p, int index) {
  struct threads *te = threads_of(p);
  struct thread_arg *ta = malloc(sizeof *ta);
  int rc;

  if (!ta)
    return PP_ENOMEM;
  ta->p = p;
  ta->index = index;
  te->init[index] = PP__INIT_RUNNING;
  if ((rc = pp__thread_start(&te->threads[index], thread_main, ta)) != 0) {
    free(ta);
    return rc;
  }
  te->joinable[index] = 1;
  p->live++;
  return 0;
}

/* With mu held: waits until every initializer answered; PP_EINIT if one
 * failed. */
static int wait_started_locked(pp_pool *p) {
  struct threads *te = threads_of(p);
  for (;;) {
    int pending = 0;
    for (int i = 0; i < p->nworkers; i++) {
      if (te->init[i] == PP__INIT_FAILED)
        return PP_EINIT;
      pending |= te->init[i] == PP__INIT_RUNNING;
    }
    if (!pending)
      return 0;
    pp__pool_wait(p, &p->changed, PP__FOREVER);
  }
}

static int threads_start(pp_pool *p) {
  struct threads *te = calloc(1, sizeof *te);
  size_t n = p->st.n;
  int rc = 0;

  if (!te)
    return PP_ENOMEM;
  p->engine_state = te;
  te->head = te->tail = NONE;
  te->next = malloc(n * sizeof *te->next);
  te->prev = malloc(n * sizeof *te->prev);
  te->threads = calloc((size_t)p->nworkers, sizeof *te->threads);
  te->init = calloc((size_t)p->nworkers, sizeof *te->init);
  te->joinable = calloc((size_t)p->nworkers, 1);
  if (!te->next || !te->prev || !te->threads || !te->init || !te->joinable)
    return PP_ENOMEM; /* stop() frees what was made */
  if (pp__cond_init(&te->work) != 0) {
    free(te->joinable);
    te->joinable = NULL; /* tells stop() the condition was not made */
    return PP_ENOMEM;
  }
  pp__pool_lock(p);
  for (int i = 0; i < p->nworkers && rc == 0; i++)
    rc = start_thread(p, i);
  if (rc == 0)
    rc = wait_started_locked(p);
  pp__pool_unlock(p);
  return rc;
}

/* With mu held: appends slot `index` to the queue. The queue has a place
 * for every slot, so it is never full. */
static int threads_queue_locked(pp_pool *p, uint32_t index, int wait,
                                uint64_t deadline_ns) {
  struct threads *te = threads_of(p);

  PP__ASSERT_LOCKED(p);
  (void)wait;
  (void)deadline_ns;
  te->next[index] = NONE;
  te->prev[index] = te->tail;
  if (te->tail == NONE)
    te->head = index;
  else
    te->next[te->tail] = index;
  te->tail = index;
  pthread_cond_signal(&te->work);
  return 0;
}

/* With mu held: a cancelled slot leaves the queue at once. */
static void threads_unqueue_locked(pp_pool *p, uint32_t index) {
  PP__ASSERT_LOCKED(p);
  unlink_locked(threads_of(p), index);
}

static void threads_close_locked(pp_pool *p) {
  struct threads *te = threads_of(p);

  PP__ASSERT_LOCKED(p);
  if (!te || !te->joinable)
    return;
  te->closing = 1;
  pthread_cond_broadcast(&te->work);
}

static void threads_stop(pp_pool *p) {
  struct threads *te = threads_of(p);

  if (!te)
    return;
  if (te->joinable) {
    pp__pool_lock(p);
    threads_close_locked(p);
    while (p->live > 0) /* retired threads are detached: wait, not join */
      pp__pool_wait(p, &p->changed, PP__FOREVER);
    pp__pool_unlock(p);
    for (int i = 0; i < p->nworkers; i++)
      if (te->joinable[i])
        pthread_join(te->threads[i], NULL);
    pthread_cond_destroy(&te->work);
  }
  free(te->next);
  free(te->prev);
  free(te->threads);
  free(te->init);
  free(te->joinable);
  free(te);
  p->engine_state = NULL;
}

/* As Python's ThreadPoolExecutor: min(32, CPUs + 4). */
static int threads_default_workers(int cpus) {
  return cpus + 4 > 32 ? 32 : cpus + 4;
}

const struct pp__engine pp__engine_threads = {
    .name = "threads",
    .default_workers = threads_default_workers,
    .start = threads_start,
    .stop = threads_stop,
    .close_locked = threads_close_locked,
    .queue_locked = threads_queue_locked,
    .unqueue_locked = threads_unqueue_locked,
};
