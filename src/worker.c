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
 * on its slot word (slots.h), so the master can tell, after this process
 * dies, which tasks it was running and which it merely held. Before a task
 * that may be killed for its timeout, the results held back are put, so
 * that the kill costs only that task.
 *
 * A large result goes without the output buffer: a lone one is put from
 * the task's buffer, and one built in a block of shared memory lent by
 * take_block() travels as the block's number, the block with it. A block
 * is marked as this worker's from the moment it is taken, so that the
 * reaper frees it if this process dies before the master has it.
 */
#include "proc.h"
#include "testhook.h"

#include <sched.h>
#include <signal.h>
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
#define SPIN_MIN_NS 10000u
#define LOOK_NS 50000u /* how often a worker looks for a dead peer, */
#define LOOK_PLACES 4u /* at how many places */

struct worker {
  struct pp__shared *sh;
  int index;
  struct pp__worker_record *rec;
  unsigned char *in; /* frames taken off the task ring */
  size_t in_cap;
  unsigned char *out; /* result frames not yet put */
  size_t out_cap, out_len, out_count;
  uint64_t out_since;        /* when the oldest unput result was made */
  uint64_t flushes;          /* flushes so far */
  size_t run_at;             /* where the open result frame starts in out */
  struct pp__result_hdr run; /* its header, written when it closes */
  uint64_t run_started;      /* when its first item started */
  size_t batch;              /* frames to take next time */
  uint64_t spin_ns;          /* how long to spin for tasks next time */
  uint64_t looked_ns;        /* when it last looked for a dead peer */
  uint32_t look_at;          /* the place it looked at last */
  struct pp_task task;
};

/* Claims a frame for this worker under the task ring's lock (see ring.h):
 * QUEUED -> CLAIMED, or drop a cancelled or stale frame. */
static int claim(void *ctx, void *payload, size_t len) {
  struct worker *w = ctx;
  struct pp__task_hdr hdr;
  uint64_t expect;

  if (len < sizeof hdr)
    return 0;
  memcpy(&hdr, payload, sizeof hdr);
  if (pp__id_slot(hdr.id) >= w->sh->nslots)
    return 0;
  expect = pp__slot_word(pp__id_gen(hdr.id), PP__SLOT_QUEUED, -1);
  return atomic_compare_exchange_strong(
      pp__word_at(w->sh->slot_words, pp__id_slot(hdr.id)), &expect,
      pp__slot_word(pp__id_gen(hdr.id), PP__SLOT_CLAIMED, w->index));
}

/* Puts `n` result frames, given in pieces, on the result ring and wakes
 * the collector. */
static void put_results(struct worker *w, const struct iovec *parts, int nparts,
                        size_t n) {
  if (pp__ring_putv(w->sh->results, parts, nparts, n, PP__NOWAIT) != 0) {
    /* Full: whoever takes results is busy elsewhere; the collector is
     * told to drain even while a master thread said it takes them. */
    pp__shared_poke_collector(w->sh);
    pp__ring_putv(w->sh->results, parts, nparts, n, PP__FOREVER);
  }
  w->flushes++;
  pp__shared_wake_collector(w->sh);
}

/* Puts the buffered result frames on the result ring. */
static void flush(struct worker *w) {
  struct iovec all = {w->out, w->out_len};

  if (w->out_count == 0)
    return;
  put_results(w, &all, 1, w->out_count);
  w->out_len = w->out_count = 0;
}

/* Puts the frame of the one large result *r that the frame just run (w->run)
 * made, from the task's own buffer rather than through the output buffer,
 * which would cost a copy of every byte: the frame's header, the result,
 * and its padding go in as three pieces. A result in a lent block goes as
 * its number alone (PP__ITEM_IN_BLOCK), and the block with it: the task
 * takes another next time. What was buffered goes first. */
static void put_large(struct worker *w, const struct pp__result *r) {
  static const unsigned char zeros[8];
  struct pp__item_hdr ih = {0, 0, (uint32_t)r->len, 0};
  unsigned char head[8 + sizeof w->run + sizeof ih];
  size_t bytes = r->in_block ? 0 : r->len;
  uint64_t len = sizeof w->run + sizeof ih + pp__pad8(bytes);
  struct iovec parts[3] = {{head, sizeof head},
                           {(void *)r->data, bytes},
                           {(void *)zeros, pp__pad8(bytes) - bytes}};

  flush(w);
  if (r->in_block) {
    ih.code = (int32_t)(r->in_block - 1);
    ih.msg_len = PP__ITEM_IN_BLOCK;
    w->task.block = NULL;
  }
  memcpy(head, &len, 8);
  memcpy(head + 8, &w->run, sizeof w->run);
  memcpy(head + 8 + sizeof w->run, &ih, sizeof ih);
  put_results(w, parts, 3, 1);
}

/* The task's take_block(): lends it a free block, marked as this
 * worker's, so that the master frees it if the worker dies with it. The
 * search starts at a place of the worker's own, so that workers seldom
 * race for one. 0, or -1 when every block is taken. */
static int take_block(struct pp_task *t) {
  struct worker *w = t->engine;
  struct pp__shared *sh = w->sh;

  for (uint32_t i = 0; i < sh->nblocks; i++) {
    uint32_t b = (uint32_t)(w->index * 2 + i) % sh->nblocks;
    uint32_t expect = PP__BLOCK_FREE;
    if (atomic_load_explicit(&sh->block_owner[b], memory_order_relaxed) ==
            PP__BLOCK_FREE &&
        atomic_compare_exchange_strong(&sh->block_owner[b], &expect,
                                       1 + (uint32_t)w->index)) {
      t->block = pp__block_at(sh, b);
      t->block_cap = sh->block_size;
      t->block_no = b;
      return 0;
    }
  }
  return -1;
}

/* Opens a result frame for task `id` from item `first` on, in the output
 * buffer; items are appended by add_item() and the frame closed by
 * close_run(). */
static void open_run(struct worker *w, uint64_t id, uint32_t first,
                     uint64_t now) {
  size_t need = 8 + sizeof(struct pp__result_hdr) + sizeof(struct pp__item_hdr);

  if (w->out_cap - w->out_len < need)
    flush(w);
  w->run_started = now;
  if (w->out_count == 0)
    w->out_since = w->run_started;
  w->run_at = w->out_len;
  w->run = (struct pp__result_hdr){id, first, 0, 0};
  w->out_len += 8 + sizeof(struct pp__result_hdr);
}

/* Closes the open result frame at time `now`: its length, item count and
 * time. */
static void close_run(struct worker *w, uint64_t now) {
  unsigned char *f = w->out + w->run_at;
  uint64_t len = w->out_len - w->run_at - 8;

  w->run.run_ns = now - w->run_started;
  memcpy(f, &len, 8);
  memcpy(f + 8, &w->run, sizeof w->run);
  w->out_count++;
}

/* Appends the outcome of the next item of the open frame; a full buffer
 * closes the frame, puts it, and opens the next one at this item. */
static void add_item(struct worker *w, uint64_t id, uint32_t item,
                     const struct pp__result *r) {
  size_t msg_len, need = pp__item_need(r, &msg_len);

  if (w->out_cap - w->out_len < need) {
    uint64_t now = pp__now_ns();
    close_run(w, now);
    flush(w);
    open_run(w, id, item, now);
  }
  pp__item_write(w->out + w->out_len, r, msg_len, need);
  w->out_len += need;
  w->run.count++;
}

/* The master has claimed the right to kill this worker (PP__DOOMED): it
 * reports nothing more of that task, takes no other, and waits for the
 * SIGKILL that is on its way. */
static void __attribute__((noreturn)) await_kill(void) {
  for (;;)
    pause();
}

/* Says the worker is done with task `id`: 0, or -1 if the master doomed
 * it meanwhile. */
static int end_task(struct worker *w, uint64_t id) {
  uint64_t expect = id;
  return atomic_compare_exchange_strong(&w->rec->current, &expect, 0) ? 0 : -1;
}

/* Runs every item of one claimed task frame, unless the master cancelled it
 * meanwhile (CLAIMED -> CANCELLED). Returns the nanoseconds it took. The
 * clock is read once a frame, not per item: *now is when the frame before
 * ended, taken as this one's start (a timed task reads it afresh, since
 * its start decides when it is killed), and is set to this one's end. */
static uint64_t run_frame(struct worker *w, const unsigned char *frame,
                          uint64_t *now) {
  struct pp__task_hdr hdr;
  _Atomic uint64_t *word;
  uint64_t expect;
  const unsigned char *p = frame + sizeof hdr;
  size_t mark_len, mark_count;
  uint64_t flushes, start, end;
  struct pp__result r;
  int large = 0;
  pp_task_fn fn;

  memcpy(&hdr, frame, sizeof hdr);
  if (hdr.flags & PP__TASK_TIMED)
    flush(w); /* a kill for its timeout then loses only this task */
  mark_len = w->out_len;
  mark_count = w->out_count;
  flushes = w->flushes;
  word = pp__word_at(w->sh->slot_words, pp__id_slot(hdr.id));
  expect = pp__slot_word(pp__id_gen(hdr.id), PP__SLOT_CLAIMED, w->index);
  /* current and started_ns are set before the word says RUNNING, so the
   * master, seeing RUNNING, can trust them for timeouts and kills. */
  start = hdr.flags & PP__TASK_TIMED ? pp__now_ns() : *now;
  atomic_store(&w->rec->started_ns, start);
  atomic_store(&w->rec->current, hdr.id);
  if (!atomic_compare_exchange_strong(
          word, &expect,
          pp__slot_word(pp__id_gen(hdr.id), PP__SLOT_RUNNING, w->index))) {
    if (end_task(w, hdr.id) != 0)
      await_kill();
    return 0;
  }
  fn = (pp_task_fn)(uintptr_t)hdr.fn;
  open_run(w, hdr.id, 0, start);
  if (w->flushes != flushes) /* what came before this frame is out */
    mark_len = mark_count = 0, flushes = w->flushes;
  for (uint32_t i = 0; i < hdr.count; i++) {
    uint32_t len;
    memcpy(&len, p, 4);
    pp__task_run(&w->task, fn, p + 8, len, &r);
    large = hdr.count == 1 && r.status == 0 && r.len >= PP__LARGE_RESULT;
    if (!large)
      add_item(w, hdr.id, i, &r);
    if (w->flushes != flushes) /* what came before this item is out */
      mark_len = mark_count = 0, flushes = w->flushes;
    p += 8 + pp__pad8(len);
  }
  end = *now = pp__now_ns();
  if (large) { /* the open frame is put by put_large(), not buffered */
    w->out_len = w->run_at;
    w->run.count = 1;
    w->run.run_ns = end - w->run_started;
  } else {
    close_run(w, end);
  }
  if (end_task(w, hdr.id) != 0) {
    /* Doomed: what this frame holds back is dropped, the rest put. */
    w->out_len = mark_len;
    w->out_count = mark_count;
    flush(w);
    await_kill();
  }
  if (large)
    put_large(w, &r);
  if (end - w->out_since > FLUSH_NS)
    flush(w);
  return end - start;
}

/* Puts the claimed, unstarted frames after `off` back on the task ring
 * (CLAIMED -> QUEUED, under the ring lock so that the frame is in the ring
 * whenever the word says QUEUED). Frames that do not fit are run here. */
static void give_back(struct worker *w, size_t off, size_t len) {
  void *payload;
  size_t plen;

  while (pp__ring_frame_next(w->in, len, &off, &payload, &plen)) {
    struct pp__task_hdr hdr;
    uint64_t expect;
    int put;
    memcpy(&hdr, payload, sizeof hdr);
    expect = pp__slot_word(pp__id_gen(hdr.id), PP__SLOT_CLAIMED, w->index);
    pp__ring_lock(w->sh->tasks);
    put = pp__ring_put_locked(w->sh->tasks, (unsigned char *)payload - 8,
                              pp__ring_frame_size(plen), 1);
    if (put)
      atomic_compare_exchange_strong(
          pp__word_at(w->sh->slot_words, pp__id_slot(hdr.id)), &expect,
          pp__slot_word(pp__id_gen(hdr.id), PP__SLOT_QUEUED, -1));
    pp__ring_unlock(w->sh->tasks);
    if (!put) {
      uint64_t now;
      flush(w);
      now = pp__now_ns();
      run_frame(w, payload, &now);
    }
  }
}

/* Spins a moment while the task ring is empty, so that a task submitted
 * right after the last one finds this worker awake. The spin adapts (as
 * the LMAX Disruptor's and folly's wait strategies do): it doubles, up to
 * PP__SPIN_NS, after a spin that found work, and halves after one that did
 * not. */
static void spin_for_tasks(struct worker *w) {
  uint64_t until = pp__now_ns() + w->spin_ns;
  for (unsigned i = 1;
       pp__ring_peek_count(w->sh->tasks) == 0 && !atomic_load(&w->sh->closing);
       i++) {
    if (i % 32 == 0 && pp__now_ns() >= until) { /* the clock costs 20 ns */
      /* In vain: spin less next time, so that a worker waiting for a slow
       * producer leaves it the core. */
      w->spin_ns = w->spin_ns / 2 > SPIN_MIN_NS ? w->spin_ns / 2 : SPIN_MIN_NS;
      return;
    }
    if (i % 256 == 0)
      sched_yield();
    else
      pp__cpu_relax();
  }
  w->spin_ns = w->spin_ns * 2 < PP__SPIN_NS ? w->spin_ns * 2 : PP__SPIN_NS;
}

/* See proc.h. */
void pp__place_take(struct pp__worker_record *rec) {
  if (pthread_mutex_lock(&rec->alive) == EOWNERDEAD) /* its last one died */
    pthread_mutex_consistent(&rec->alive);
}

/* See proc.h. Trying the lock takes it only when nobody holds it, and
 * then for a moment. */
int pp__place_empty(struct pp__worker_record *rec) {
  int rc = pthread_mutex_trylock(&rec->alive);

  if (rc == EBUSY)
    return 0;
  if (rc == EOWNERDEAD)
    pthread_mutex_consistent(&rec->alive);
  if (rc == 0 || rc == EOWNERDEAD)
    pthread_mutex_unlock(&rec->alive); /* taken just above */
  return 1;
}

/* While a peer's place is empty, gives up the core between batches. A
 * worker's death wakes the reaper, which the scheduler often queues
 * behind a busy worker and leaves there until that worker's slice ends (a
 * tick: up to 4 ms here) while the dead worker's core sits idle; a yield
 * of the busy worker lets the reaper run at once, and the spawner fork
 * the replacement (in bench_faults it halved the idle time a kill costs).
 * Looks every LOOK_NS at most, at LOOK_PLACES places in turn: trying a
 * peer's lock takes its cache line, which must stay cheap in a large
 * pool. */
static void give_way(struct worker *w, uint64_t now) {
  uint32_t n = w->sh->nworkers;

  if (n < 2 || now - w->looked_ns < LOOK_NS)
    return;
  w->looked_ns = now;
  for (uint32_t k = 0; k < LOOK_PLACES && k < n - 1; k++) {
    uint32_t i = w->look_at = (w->look_at + 1) % n;
    if ((int)i == w->index)
      i = w->look_at = (i + 1) % n;
    if (pp__place_empty(&w->sh->workers[i])) {
      sched_yield();
      return;
    }
  }
}

/* See proc.h. */
int pp__cpu_to_take(const cpu_set_t *free_cpus, int here, int preferred) {
  int cpu;

  if (CPU_COUNT(free_cpus) == 0 ||
      (here >= 0 && here < CPU_SETSIZE && CPU_ISSET(here, free_cpus)))
    return -1;
  if (preferred >= 0 && preferred < CPU_SETSIZE &&
      CPU_ISSET(preferred, free_cpus))
    return preferred;
  for (cpu = 0; !CPU_ISSET(cpu, free_cpus); cpu++)
    ;
  return cpu;
}

/* Moves a starting worker to an allowed CPU where no live peer ran last,
 * if it is not on one, then allows it every CPU again: a hint, which the
 * scheduler keeps while that CPU stays free. A replacement is forked while
 * its dead predecessor is still being torn down on the CPU it leaves free,
 * so the kernel often placed it beside the live peer, and the two shared a
 * core while the other sat idle until the load balancer moved one: up to
 * 10 ms, as a perf sched trace of bench_faults showed. It prefers the CPU
 * its predecessor last ran on. Nothing changes with more workers than
 * CPUs, or if a call fails. */
static void take_a_free_cpu(struct worker *w) {
  cpu_set_t allowed, free_cpus, one;
  int here = sched_getcpu(), want;

  if (here < 0 || sched_getaffinity(0, sizeof allowed, &allowed) != 0)
    return;
  free_cpus = allowed;
  for (uint32_t i = 0; i < w->sh->nworkers; i++) {
    int c = atomic_load(&w->sh->workers[i].cpu) - 1;
    if ((int)i != w->index && c >= 0 && c < CPU_SETSIZE &&
        !pp__place_empty(&w->sh->workers[i]))
      CPU_CLR(c, &free_cpus);
  }
  want = pp__cpu_to_take(&free_cpus, here, atomic_load(&w->rec->cpu) - 1);
  if (want < 0)
    return;
  CPU_ZERO(&one);
  CPU_SET(want, &one);
  if (sched_setaffinity(0, sizeof one, &one) == 0) /* moves it now */
    (void)sched_setaffinity(0, sizeof allowed, &allowed);
}

/* Takes up to `limit` frames and runs them, adapting w->batch; returns the
 * number of frames taken, 0 when the pool is closing and the ring is
 * empty. */
static size_t run_batch(struct worker *w, size_t limit) {
  /* A worker takes at most an eighth of its share of what is queued: tiny
   * tasks still come in batches off a long queue, while a short queue
   * (where one task might be long) is spread over all the workers. */
  struct pp__ring_reader rd = {&w->sh->closing, &w->rec->waiting, claim, w,
                               w->sh->nworkers * 8};
  size_t len, off = 0, plen, ran = 0;
  uint64_t spent = 0, t, now;
  void *payload;
  int n;

  spin_for_tasks(w);
  n = pp__ring_get(w->sh->tasks, w->in, w->in_cap, limit, &len, PP__FOREVER,
                   &rd);
  if (n <= 0)
    return 0;
  now = pp__now_ns();
  while (pp__ring_frame_next(w->in, len, &off, &payload, &plen)) {
    t = run_frame(w, payload, &now);
    spent += t;
    ran++;
    if (t > LONG_NS && off < len) {
      give_back(w, off, len);
      break;
    }
  }
  flush(w);
  give_way(w, now);
  atomic_store_explicit(&w->rec->cpu, sched_getcpu() + 1, memory_order_relaxed);
  t = ran ? spent / ran : LONG_NS;
  w->batch =
      t < TINY_NS ? (w->batch * 2 > BATCH_MAX ? BATCH_MAX : w->batch * 2) : 1;
  return (size_t)n;
}

/* Cuts the worker loose from the master's signal setup: Ctrl-C is for the
 * master to handle, and the worker must die with its `parent`, the
 * spawner, which dies with the master (spawner.c). It runs as
 * SCHED_BATCH, what the scheduler offers for CPU-bound work: a worker
 * woken for tasks then does not preempt the master's threads that feed it
 * (maps ran 8-12% faster so). Best effort: an error changes nothing but
 * speed. */
static void detach_from_master(pid_t parent) {
  sigset_t all;
#ifdef SCHED_BATCH
  struct sched_param none = {0};
  (void)sched_setscheduler(0, SCHED_BATCH, &none);
#endif
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent)
    _exit(1);
  signal(SIGINT, SIG_IGN);
  signal(SIGPIPE, SIG_DFL);
  sigemptyset(&all);
  sigprocmask(SIG_SETMASK, &all, NULL);
}

void pp__worker_main(struct pp__shared *sh, int index, pid_t parent,
                     pp_init_fn init, void *initarg, unsigned max_tasks) {
  struct worker w = {.sh = sh,
                     .index = index,
                     .rec = &sh->workers[index],
                     .batch = 1,
                     .spin_ns = PP__SPIN_NS};
  enum pp__init_outcome init_outcome;
  size_t done = 0;
  int init_code;

  detach_from_master(parent);
#ifdef PP_TEST_HOOKS
  pp_test_is_worker = 1;
#endif
  w.task.max_payload = sh->max_payload;
  w.task.take_block = sh->nblocks ? take_block : NULL;
  w.task.engine = &w;
  atomic_store(&w.rec->pid, (int32_t)getpid());
  pp__place_take(w.rec);
  take_a_free_cpu(&w);
  atomic_store(&w.rec->cpu, sched_getcpu() + 1);
  init_outcome = pp__init_run(init, initarg, &init_code);
  atomic_store(&w.rec->init_code, init_code);
  atomic_store(&w.rec->init, (int32_t)init_outcome);
  pp__shared_wake_collector(sh);
  if (init_outcome != PP__INIT_PASSED)
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
  pp__task_clear(&w.task);
  _exit(0);
}
