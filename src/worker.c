/*
 * A worker process: takes task frames off the task ring, runs them, and
 * puts one result frame per item on the result ring.
 *
 * DESIGN
 * Claims are batched to make tiny tasks cheap: a worker takes one frame at
 * first and doubles its batch (up to BATCH_MAX) while tasks take under
 * TINY_NS each, and results are flushed per batch (or every FLUSH_NS). Long
 * tasks keep the batch at one, so that work stays balanced; when a task
 * turns out long, the frames it claimed and has not started go back on the
 * ring for other workers. Every state change of a task is a compare-and-swap
 * on its slot word (see internal.h), so the master can tell, after this
 * process dies, which tasks it was running and which it merely held.
 */
#include "internal.h"
#include "testhook.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#define BATCH_MAX 64
#define TINY_NS 20000u
#define LONG_NS 1000000u
#define FLUSH_NS 2000000u
#define LOCAL_BUF (64 * 1024)

struct worker {
  struct shared *sh;
  int index;
  struct worker_record *rec;
  unsigned char *in; /* frames taken off the task ring */
  size_t in_cap;
  unsigned char *out; /* result frames not yet put */
  size_t out_cap, out_len, out_count;
  uint64_t out_since; /* when the oldest unput result was made */
  size_t batch;       /* frames to take next time */
  struct pp_task task;
};

int pp_task_return(pp_task *task, const void *data, size_t len) {
  if (len > task->sh->max_payload) {
    task->too_big = 1;
    return PP_ETOOBIG;
  }
  if (len > task->cap) {
    unsigned char *grown = realloc(task->result, len);
    if (!grown)
      return PP_ENOMEM;
    task->result = grown;
    task->cap = len;
  }
  if (len)
    memcpy(task->result, data, len);
  task->len = len;
  task->too_big = 0;
  return 0;
}

int pp_task_fail(pp_task *task, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(task->msg, sizeof task->msg, fmt, ap);
  va_end(ap);
  return code;
}

/* Claims a frame for this worker under the task ring's lock (see ring.h):
 * QUEUED -> CLAIMED, or drop a cancelled or stale frame. */
static int claim(void *ctx, void *payload, size_t len) {
  struct worker *w = ctx;
  struct task_hdr hdr;
  uint64_t expect;

  if (len < sizeof hdr)
    return 0;
  memcpy(&hdr, payload, sizeof hdr);
  if (id_slot(hdr.id) >= w->sh->nslots)
    return 0;
  expect = slot_word(id_gen(hdr.id), SLOT_QUEUED, -1);
  return atomic_compare_exchange_strong(
      &w->sh->slot_words[id_slot(hdr.id)], &expect,
      slot_word(id_gen(hdr.id), SLOT_CLAIMED, w->index));
}

/* Puts the buffered result frames on the result ring and wakes the
 * collector. */
static void flush(struct worker *w) {
  if (w->out_count == 0)
    return;
  ring_put(w->sh->results, w->out, w->out_len, w->out_count, RING_FOREVER);
  w->out_len = w->out_count = 0;
  shared_wake_collector(w->sh);
}

/* Buffers the result of item `item` of task `id`. */
static void add_result(struct worker *w, uint64_t id, uint32_t item, int status,
                       int code) {
  struct pp_task *t = &w->task;
  size_t msg_len = strnlen(t->msg, sizeof t->msg - 1);
  size_t data_len = status == 0 ? t->len : 0;
  struct result_hdr rh = {id, item, 0};
  struct result_item ri = {status, code, (uint32_t)data_len, (uint32_t)msg_len};
  struct iovec parts[4] = {{&rh, sizeof rh},
                           {&ri, sizeof ri},
                           {t->result, data_len},
                           {t->msg, msg_len}};
  size_t need = ring_frame_size(sizeof rh + sizeof ri + data_len + msg_len);

  if (w->out_cap - w->out_len < need)
    flush(w);
  if (w->out_count == 0)
    w->out_since = pp_now_ns();
  ring_frame_append(w->out, w->out_cap, &w->out_len, parts, 4);
  w->out_count++;
}

/* Runs every item of one claimed task frame, unless the master cancelled it
 * meanwhile (CLAIMED -> CANCELLED). */
static void run_frame(struct worker *w, const unsigned char *frame) {
  struct task_hdr hdr;
  _Atomic uint64_t *word;
  uint64_t expect;
  const unsigned char *p = frame + sizeof hdr;
  pp_task_fn fn;

  memcpy(&hdr, frame, sizeof hdr);
  word = &w->sh->slot_words[id_slot(hdr.id)];
  expect = slot_word(id_gen(hdr.id), SLOT_CLAIMED, w->index);
  /* current and started_ns are set before the word says RUNNING, so the
   * master, seeing RUNNING, can trust them for timeouts. */
  atomic_store(&w->rec->started_ns, pp_now_ns());
  atomic_store(&w->rec->current, hdr.id);
  if (!atomic_compare_exchange_strong(
          word, &expect, slot_word(id_gen(hdr.id), SLOT_RUNNING, w->index))) {
    atomic_store(&w->rec->current, 0);
    return;
  }
  fn = (pp_task_fn)(uintptr_t)hdr.fn;
  for (uint32_t i = 0; i < hdr.count; i++) {
    uint32_t len;
    int rc;
    memcpy(&len, p, 4);
    w->task.len = 0;
    w->task.too_big = 0;
    w->task.msg[0] = '\0';
    rc = fn(&w->task, p + 8, len);
    if (rc != 0)
      add_result(w, hdr.id, i, PP_ETASK, rc);
    else if (w->task.too_big)
      add_result(w, hdr.id, i,
                 (snprintf(w->task.msg, sizeof w->task.msg,
                           "result larger than max_payload (%zu bytes)",
                           w->sh->max_payload),
                  PP_ETOOBIG),
                 0);
    else
      add_result(w, hdr.id, i, 0, 0);
    if (pp_now_ns() - w->out_since > FLUSH_NS)
      flush(w);
    p += 8 + pad8(len);
  }
  atomic_store(&w->rec->current, 0);
}

/* Puts the claimed, unstarted frames after `off` back on the task ring
 * (CLAIMED -> QUEUED, under the ring lock so that the frame is in the ring
 * whenever the word says QUEUED). Frames that do not fit are run here. */
static void give_back(struct worker *w, size_t off, size_t len) {
  void *payload;
  size_t plen;

  while (ring_frame_next(w->in, len, &off, &payload, &plen)) {
    struct task_hdr hdr;
    uint64_t expect;
    int put;
    memcpy(&hdr, payload, sizeof hdr);
    expect = slot_word(id_gen(hdr.id), SLOT_CLAIMED, w->index);
    ring_lock(w->sh->tasks);
    put = ring_put_locked(w->sh->tasks, (unsigned char *)payload - 8,
                          ring_frame_size(plen), 1);
    if (put)
      atomic_compare_exchange_strong(
          &w->sh->slot_words[id_slot(hdr.id)], &expect,
          slot_word(id_gen(hdr.id), SLOT_QUEUED, -1));
    ring_unlock(w->sh->tasks);
    if (!put) {
      flush(w);
      run_frame(w, payload);
    }
  }
}

/* Spins a moment while the task ring is empty, so that a task submitted
 * right after the last one finds this worker awake. */
static void spin_for_tasks(struct worker *w) {
  uint64_t until = pp_now_ns() + PP_SPIN_NS;
  while (ring_peek_count(w->sh->tasks) == 0 && !w->sh->closing &&
         pp_now_ns() < until)
    pp_cpu_relax();
}

/* Takes up to `limit` frames and runs them, adapting w->batch; returns the
 * number of frames taken, 0 when the pool is closing and the ring is
 * empty. */
static size_t run_batch(struct worker *w, size_t limit) {
  /* A worker takes at most an eighth of its share of what is queued: tiny
   * tasks still come in batches off a long queue, while a short queue
   * (where one task might be long) is spread over all the workers. */
  struct ring_reader rd = {&w->sh->closing, &w->rec->waiting, claim, w,
                           w->sh->nworkers * 8};
  size_t len, off = 0, plen, ran = 0;
  uint64_t t0 = pp_now_ns(), t;
  void *payload;
  int n;

  spin_for_tasks(w);
  n = ring_get(w->sh->tasks, w->in, w->in_cap, limit, &len, RING_FOREVER, &rd);
  if (n <= 0)
    return 0;
  while (ring_frame_next(w->in, len, &off, &payload, &plen)) {
    t = pp_now_ns();
    run_frame(w, payload);
    ran++;
    if (pp_now_ns() - t > LONG_NS && off < len) {
      give_back(w, off, len);
      break;
    }
  }
  flush(w);
  t = ran ? (pp_now_ns() - t0) / ran : LONG_NS;
  w->batch =
      t < TINY_NS ? (w->batch * 2 > BATCH_MAX ? BATCH_MAX : w->batch * 2) : 1;
  return (size_t)n;
}

/* Cuts the worker loose from the master's signal setup: Ctrl-C is for the
 * master to handle, and the worker must die with the master. */
static void detach_from_master(struct shared *sh) {
  sigset_t all;
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != sh->master)
    _exit(1);
  signal(SIGINT, SIG_IGN);
  signal(SIGPIPE, SIG_DFL);
  sigemptyset(&all);
  sigprocmask(SIG_SETMASK, &all, NULL);
}

void worker_main(struct shared *sh, int index, pp_init_fn init, void *initarg,
                 unsigned max_tasks) {
  struct worker w = {
      .sh = sh, .index = index, .rec = &sh->workers[index], .batch = 1};
  size_t done = 0;
  int rc;

  detach_from_master(sh);
#ifdef PP_TEST_HOOKS
  pp_test_is_worker = 1;
#endif
  w.task.sh = sh;
  atomic_store(&w.rec->pid, (int32_t)getpid());
  rc = init ? init(initarg) : 0;
  atomic_store(&w.rec->init_status, rc ? (rc == 1 ? 2 : rc) : 0);
  shared_wake_collector(sh);
  if (rc)
    _exit(3);
  /* Buffers hold at least one frame of the largest size, and the result
   * buffer no more than the result ring, else a flush could never fit. */
  w.in_cap = sh->max_frame + 8 > LOCAL_BUF ? sh->max_frame + 8 : LOCAL_BUF;
  w.out_cap = w.in_cap < sh->results->cap ? w.in_cap : sh->results->cap;
  w.in = malloc(w.in_cap);
  w.out = malloc(w.out_cap);
  if (!w.in || !w.out)
    _exit(4);
  for (;;) {
    size_t limit = w.batch;
    if (max_tasks && limit > max_tasks - done)
      limit = max_tasks - done;
    size_t n = run_batch(&w, limit);
    if (n == 0)
      break;
    done += n;
    if (max_tasks && done >= max_tasks)
      break;
  }
  flush(&w);
  free(w.in);
  free(w.out);
  free(w.task.result);
  _exit(0);
}
