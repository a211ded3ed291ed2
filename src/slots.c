/*
 * The slot table (slots.h): allocation and ids, task frames, queueing and
 * the backlog of slots waiting for room, cancellation, and the one
 * resolver every engine calls with each item's outcome. The resolver
 * reaches the future or the map through the owner callbacks stored in the
 * slot, so that neither this file nor any engine includes their code.
 *
 * Every function named _locked runs with pool->mu held, and asserts it.
 */
#include "pool.h"
#include "testhook.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Frames up to this size stay with their slot, for the next task; larger
 * ones too while all those kept add up to FRAME_KEEP_TOTAL at most (a map
 * of chunks reuses a few slots, each with a frame of 16 KiB or more). */
#define FRAME_KEEP 4096
#define FRAME_KEEP_TOTAL (8u << 20)
#define FRAME_SMALL 512     /* larger frames get pages of their own, */
#define FRAME_PAGED_MAX 256 /* so many at most, */
#define FRAME_PAGE 4096u    /* in pages of this size */

/* A frame of at least `len` bytes; *cap and *paged (OUT) say its true
 * size and kind. A frame of over FRAME_SMALL bytes (a chunk's, say) gets
 * whole pages of its own, left out of every fork (pp__master_alloc()),
 * while fewer than FRAME_PAGED_MAX have them: the master writes a frame
 * for every task, and in malloc's heap, after each fork of a dead
 * worker's replacement, every page written faults and is copied again
 * (about 40 faults a kill in bench_faults). Small frames, and frames past
 * that count, share malloc's pages (so that many tasks in flight cost
 * neither a page nor a mapping each). NULL on failure. */
static void *frame_alloc(struct pp__slots *t, size_t len, size_t *cap,
                         uint8_t *paged) {
  size_t pages = (len + FRAME_PAGE - 1) & ~(size_t)(FRAME_PAGE - 1);
  void *f;

  if (len > FRAME_SMALL && t->paged_frames < FRAME_PAGED_MAX &&
      (f = pp__master_alloc(pages)) != NULL) {
    t->paged_frames++;
    *cap = pages;
    *paged = 1;
    return f;
  }
  *cap = len;
  *paged = 0;
  return malloc(len);
}

/* Frees slot s's frame, made by frame_alloc(), and forgets it. */
static void frame_free(struct pp__slots *t, struct pp__slot *s) {
  if (s->frame_paged) {
    t->paged_frames--;
    pp__master_free(s->frame, s->frame_cap);
  } else {
    free(s->frame);
  }
  s->frame = NULL;
  s->frame_cap = 0;
  s->frame_paged = 0;
}

uint32_t pp__slots_count(size_t ring_capacity, size_t max_payload) {
  size_t frame = 8 + pp__pad8(pp__max_frame(max_payload)), cap = 64, n = 256;
  if (ring_capacity < frame)
    ring_capacity = frame;
  while (cap < ring_capacity && cap < ((size_t)1 << 62))
    cap <<= 1; /* the ring's size, as shared.c rounds it */
  while (n < cap / 64 && n < 65536)
    n <<= 1;
  return (uint32_t)n;
}

size_t pp__max_frame(size_t max_payload) {
  size_t task = sizeof(struct pp__task_hdr) + 8 + pp__pad8(max_payload);
  /* a result frame of one item: ids and counts, the item's header, its
   * bytes and a message (64 bytes cover both headers) */
  size_t result = 64 + pp__pad8(max_payload + PP__MESSAGE_MAX);
  return task > result ? task : result;
}

/* The master's half lives in its own private mapping, left out of every
 * fork: workers never read it, and copying its page tables into each
 * worker cost a quarter of the time spent forking. The words are shared
 * with every worker forked later. */
int pp__slots_init(struct pp__slots *t, uint32_t n, size_t max_payload) {
  size_t len = (size_t)n * sizeof *t->slots;
  void *m;

  memset(t, 0, sizeof *t);
  m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
           0);
  if (m == MAP_FAILED)
    return PP_ENOMEM;
  madvise(m, len, MADV_DONTFORK);
  t->slots = m;
  m = mmap(NULL, (size_t)n * PP__WORD_STRIDE * sizeof *t->words,
           PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) {
    munmap(t->slots, len);
    t->slots = NULL;
    return PP_ESHM;
  }
  t->words = m;
  t->n = n;
  for (uint32_t i = 0; i < n; i++)
    t->slots[i].next_free = i + 1 < n ? i + 1 : PP__NO_SLOT;
  t->free_head = 0;
  if (!(t->used = calloc(n / 64, sizeof *t->used))) {
    pp__slots_destroy(t);
    return PP_ENOMEM;
  }
  t->max_payload = max_payload;
  t->max_frame = pp__max_frame(max_payload);
  t->backlog_tail = &t->backlog;
  return 0;
}

void pp__slots_destroy(struct pp__slots *t) {
  if (t->slots) {
    for (uint32_t i = 0; i < t->n; i++)
      frame_free(t, &t->slots[i]);
    munmap(t->slots, (size_t)t->n * sizeof *t->slots);
  }
  if (t->words)
    munmap((void *)t->words, (size_t)t->n * PP__WORD_STRIDE * sizeof *t->words);
  while (t->backlog) {
    struct pp__backlog *b = t->backlog;
    t->backlog = b->next;
    free(b);
  }
  free(t->used);
  memset(t, 0, sizeof *t);
}

void pp__deferred_run(struct pp__deferred *list) {
  while (list) {
    struct pp__deferred *d = list;
    list = d->next;
    d->run(d);
  }
}

/* Takes a free slot, waiting (when `wait`) until `deadline_ns` for one.
 * Returns 0, PP_ETIMEDOUT, or the pool's failure. */
int pp__slot_alloc_locked(pp_pool *p, int wait, uint64_t deadline_ns,
                          uint32_t *index) {
  struct pp__slots *t = &p->st;
  struct pp__slot *s;
  int took_nothing = 0;

  PP__ASSERT_LOCKED(p);
  while (t->free_head == PP__NO_SLOT && !p->broken) {
    if (!wait)
      return PP_ETIMEDOUT;
    if (!took_nothing && p->engine->take_results) {
      /* Results free their slots here as they come, sparing the
       * collector's wake-up and this thread's, and a wake-up per slot:
       * a burst of them frees a burst of slots. */
      pp__pool_unlock(p);
      if (p->engine->taking_results) /* the collector stands back */
        p->engine->taking_results(p, 1);
      took_nothing = !pp__pool_take_results(p);
      if (p->engine->taking_results)
        p->engine->taking_results(p, 0); /* said above */
      pp__pool_lock(p);
      continue;
    }
    took_nothing = 0;
    if (pp__pool_wait(p, &p->changed, deadline_ns) == ETIMEDOUT)
      return PP_ETIMEDOUT;
  }
  if (p->broken)
    return p->broken;
  *index = t->free_head;
  s = &t->slots[*index];
  t->free_head = s->next_free;
  t->used[*index / 64] |= (uint64_t)1 << (*index % 64);
  s->gen = (s->gen + 1) & PP__GEN_MASK;
  if (s->gen == 0)
    s->gen = 1;
  s->used = 1;
  s->attempts = s->expired = s->cancel_running = 0;
  s->timeout_ns = 0;
  s->ops = NULL;
  s->owner = NULL;
  t->in_flight++;
  return 0;
}

/* Returns slot `index` to the free list and tells its owner. */
void pp__slot_free_locked(pp_pool *p, uint32_t index) {
  struct pp__slots *t = &p->st;
  struct pp__slot *s = &t->slots[index];

  PP__ASSERT_LOCKED(p);
  assert(s->used && t->in_flight > 0);
  if (s->timeout_ns)
    t->timed--;
  if (s->ops && s->ops->gone_locked)
    s->ops->gone_locked(s->owner);
  if (s->frame_cap > FRAME_KEEP && t->large_frames > FRAME_KEEP_TOTAL) {
    t->large_frames -= s->frame_cap;
    frame_free(t, s);
  }
  s->used = 0;
  s->ops = NULL;
  s->owner = NULL;
  t->used[index / 64] &= ~((uint64_t)1 << (index % 64));
  atomic_store(pp__word_at(t->words, index), 0);
  s->next_free = t->free_head;
  t->free_head = index;
  t->in_flight--;
  pthread_cond_broadcast(&p->changed);
}

/* Gives slot `index` to `owner`, for the items from argument `base` on,
 * with a timeout (0: none). */
void pp__slot_own_locked(pp_pool *p, uint32_t index,
                         const struct pp__owner_ops *ops, void *owner,
                         size_t base, uint64_t timeout_ns) {
  struct pp__slot *s = &p->st.slots[index];

  PP__ASSERT_LOCKED(p);
  s->ops = ops;
  s->owner = owner;
  s->base = base;
  s->timeout_ns = timeout_ns;
  if (timeout_ns)
    p->st.timed++;
}

/* Makes slot s's frame hold a payload of `body` bytes (the task header
 * and its items), growing it when it is too small, and sets frame_len.
 * Returns 0, PP_ETOOBIG or PP_ENOMEM. */
static int frame_room(struct pp__slots *t, struct pp__slot *s, size_t body) {
  size_t cap;
  uint8_t paged;
  void *f;

  if (body > t->max_frame)
    return PP_ETOOBIG;
  s->frame_len = 8 + pp__pad8(body);
  if (s->frame_cap < s->frame_len) {
    if (!(f = frame_alloc(t, s->frame_len, &cap, &paged)))
      return PP_ENOMEM;
    if (s->frame_cap > FRAME_KEEP)
      t->large_frames -= s->frame_cap;
    frame_free(t, s);
    if (cap > FRAME_KEEP)
      t->large_frames += cap;
    s->frame = f;
    s->frame_cap = cap;
    s->frame_paged = paged;
  }
  return 0;
}

/* Builds the frame of slot `index` for fn over `n` arguments and keeps it
 * in the slot (to queue it again after a crash). Returns 0, PP_ETOOBIG or
 * PP_ENOMEM. */
int pp__slot_frame_locked(pp_pool *p, uint32_t index, pp_task_fn fn,
                          const void *const *args, const size_t *lens,
                          size_t n) {
  struct pp__slot *s = &p->st.slots[index];
  struct pp__task_hdr hdr = {pp__make_id(s->gen, index),
                             (uint64_t)(uintptr_t)fn, (uint32_t)n,
                             s->timeout_ns ? PP__TASK_TIMED : 0};
  size_t body = sizeof hdr, off;
  unsigned char *f;
  int rc;

  PP__ASSERT_LOCKED(p);
  for (size_t i = 0; i < n; i++)
    body += 8 + pp__pad8(lens[i]);
  if ((rc = frame_room(&p->st, s, body)) != 0)
    return rc;
  f = s->frame;
  memcpy(f, &(uint64_t){body}, 8);
  memcpy(f + 8, &hdr, sizeof hdr);
  off = 8 + sizeof hdr;
  for (size_t i = 0; i < n; i++) {
    uint32_t len = (uint32_t)lens[i];
    uint64_t head = len; /* [u32 len][u32 pad] */
    memcpy(f + off, &head, 8);
    if (len == 8) /* the common tiny argument, copied inline */
      memcpy(f + off + 8, args[i], 8);
    else if (len)
      memcpy(f + off + 8, args[i], len);
    if (len % 8)
      memset(f + off + 8 + len, 0, 8 - len % 8);
    off += 8 + pp__pad8(len);
  }
  s->items = s->items_left = (uint32_t)n;
  return 0;
}

/* Copies `frame` (frame_len bytes: its length word, a task header and its
 * items, whole, as the caller checked) into slot `index` as the slot's
 * own: its id, fn and flags are this slot's, the items are the frame's.
 * A supervisor rank so hands on a task frame it got over MPI in one copy,
 * not item by item. Returns 0, PP_ETOOBIG or PP_ENOMEM. */
int pp__slot_frame_copy_locked(pp_pool *p, uint32_t index, pp_task_fn fn,
                               const void *frame, size_t frame_len) {
  struct pp__slot *s = &p->st.slots[index];
  struct pp__task_hdr hdr;
  uint64_t body;
  int rc;

  PP__ASSERT_LOCKED(p);
  memcpy(&body, frame, 8);
  memcpy(&hdr, (const unsigned char *)frame + 8, sizeof hdr);
  if (frame_len != 8 + pp__pad8(body) || body < sizeof hdr)
    return PP_EINVAL;
  if ((rc = frame_room(&p->st, s, body)) != 0)
    return rc;
  memcpy(s->frame, frame, frame_len);
  hdr.id = pp__make_id(s->gen, index);
  hdr.fn = (uint64_t)(uintptr_t)fn;
  hdr.flags = s->timeout_ns ? PP__TASK_TIMED : 0;
  memcpy((unsigned char *)s->frame + 8, &hdr, sizeof hdr);
  s->items = s->items_left = hdr.count;
  return 0;
}

/* Keeps slot `index` for later: the collector's backlog queues it when the
 * engine has room. */
static void backlog_locked(pp_pool *p, uint32_t index,
                           struct pp__deferred **later) {
  struct pp__slots *t = &p->st;
  struct pp__backlog *b = malloc(sizeof *b);

  if (!b) {
    pp__slot_fail_locked(p, index, PP_ENOMEM, "out of memory", later);
    return;
  }
  b->id = pp__make_id(t->slots[index].gen, index);
  b->next = NULL;
  *t->backlog_tail = b;
  t->backlog_tail = &b->next;
}

/* Marks slot `index` QUEUED and hands it to the engine, waiting (with
 * `wait`) until `deadline_ns` for room; what finds no room goes on the
 * backlog (or, when even that fails, the slot fails with PP_ENOMEM).
 * Returns 0, or 1 if the slot was resolved meanwhile. */
int pp__slot_queue_locked(pp_pool *p, uint32_t index, int wait,
                          uint64_t deadline_ns, struct pp__deferred **later) {
  struct pp__slot *s = &p->st.slots[index];
  int rc;

  PP__ASSERT_LOCKED(p);
  pp__slots_release_held_locked(p, later); /* they came first */
  atomic_store(pp__word_at(p->st.words, index),
               pp__slot_word(s->gen, PP__SLOT_QUEUED, -1));
  rc = p->engine->queue_locked(p, index, wait, deadline_ns);
  if (rc == PP_ETIMEDOUT) {
    backlog_locked(p, index, later);
    rc = 0;
  }
  return rc;
}

/* Hands slots index[0..n), their words already QUEUED, to the engine in
 * that order, as many at once as it takes; the rest wait in the backlog,
 * in order. */
static void hand_batch_locked(pp_pool *p, const uint32_t *index, size_t n,
                              struct pp__deferred **later) {
  size_t k = 0;

  if (p->engine->queue_batch_locked)
    k = p->engine->queue_batch_locked(p, index, n);
  for (; k < n; k++)
    if (p->engine->queue_locked(p, index[k], 0, PP__NOWAIT) == PP_ETIMEDOUT)
      break;
  for (; k < n; k++) /* after one that did not fit: in order, later */
    backlog_locked(p, index[k], later);
}

int pp__slot_submit_locked(pp_pool *p, uint32_t index,
                           struct pp__deferred **later) {
  struct pp__slots *t = &p->st;
  struct pp__slot *s = &t->slots[index];
  uint32_t n = atomic_load_explicit(&t->nheld, memory_order_relaxed);

  PP__ASSERT_LOCKED(p);
  if (p->engine->busy_locked && n < PP__HELD_MAX && p->engine->busy_locked(p)) {
    atomic_store(pp__word_at(t->words, index),
                 pp__slot_word(s->gen, PP__SLOT_QUEUED, -1));
    t->held[n++] = pp__make_id(s->gen, index);
    atomic_store_explicit(&t->nheld, n, memory_order_relaxed);
    if (n == PP__HELD_MAX)
      pp__slots_release_held_locked(p, later);
    return 0;
  }
  return pp__slot_queue_locked(p, index, 1, PP__FOREVER, later);
}

void pp__slots_release_held_locked(pp_pool *p, struct pp__deferred **later) {
  struct pp__slots *t = &p->st;
  uint32_t n = atomic_load_explicit(&t->nheld, memory_order_relaxed);
  uint32_t batch[PP__HELD_MAX];
  size_t k = 0;

  PP__ASSERT_LOCKED(p);
  if (n == 0)
    return;
  atomic_store_explicit(&t->nheld, 0, memory_order_relaxed);
  for (uint32_t i = 0; i < n; i++) {
    uint32_t index = pp__id_slot(t->held[i]);
    /* Cancelled meanwhile: its slot is free, or already someone else's. */
    if (pp__slot_by_id(t, t->held[i]) &&
        pp__word_state(pp__slot_word_of(t, index)) == PP__SLOT_QUEUED)
      batch[k++] = index;
  }
  if (k) /* their words say QUEUED since they were held */
    hand_batch_locked(p, batch, k, later);
}

/* Queues slot `index` again after its worker died, without waiting, and
 * ahead of the rest where the engine can: results after it wait for it in
 * an ordered map. */
void pp__slot_requeue_locked(pp_pool *p, uint32_t index,
                             struct pp__deferred **later) {
  struct pp__slot *s = &p->st.slots[index];

  if (!p->engine->requeue_locked) {
    pp__slot_queue_locked(p, index, 0, PP__NOWAIT, later);
    return;
  }
  PP__ASSERT_LOCKED(p);
  atomic_store(pp__word_at(p->st.words, index),
               pp__slot_word(s->gen, PP__SLOT_QUEUED, -1));
  if (p->engine->requeue_locked(p, index) == PP_ETIMEDOUT)
    backlog_locked(p, index, later);
}

void pp__slots_queue_batch_locked(pp_pool *p, const uint32_t *index, size_t n,
                                  struct pp__deferred **later) {
  PP__ASSERT_LOCKED(p);
  pp__slots_release_held_locked(p, later); /* they came first */
  for (size_t i = 0; i < n; i++)
    atomic_store(pp__word_at(p->st.words, index[i]),
                 pp__slot_word(p->st.slots[index[i]].gen, PP__SLOT_QUEUED, -1));
  hand_batch_locked(p, index, n, later);
}

/* Queues what waited for room, in order, until the engine is full. */
void pp__slots_flush_backlog_locked(pp_pool *p) {
  struct pp__slots *t = &p->st;

  PP__ASSERT_LOCKED(p);
  while (t->backlog) {
    struct pp__backlog *b = t->backlog;
    uint32_t index = pp__id_slot(b->id);
    if (pp__slot_by_id(t, b->id) &&
        pp__word_state(pp__slot_word_of(t, index)) == PP__SLOT_QUEUED &&
        p->engine->queue_locked(p, index, 0, PP__NOWAIT) != 0)
      return;
    t->backlog = b->next;
    if (!t->backlog)
      t->backlog_tail = &t->backlog;
    free(b);
  }
}

/* Cancels the task of `id` if it has not started. Returns 0 (resolved as
 * cancelled, slot freed), PP_EBUSY (running) or PP_EINVAL (not in
 * flight). */
int pp__slot_cancel_locked(pp_pool *p, uint64_t id,
                           struct pp__deferred **later) {
  struct pp__slots *t = &p->st;
  uint32_t index = pp__id_slot(id), gen = pp__id_gen(id);
  uint64_t word;
  enum pp__slot_state st;

  PP__ASSERT_LOCKED(p);
  if (!pp__slot_by_id(t, id))
    return PP_EINVAL;
  word = pp__slot_word_of(t, index);
  st = pp__word_state(word);
  while (pp__word_gen(word) == gen &&
         (st == PP__SLOT_QUEUED || st == PP__SLOT_CLAIMED)) {
    if (atomic_compare_exchange_weak(
            pp__word_at(t->words, index), &word,
            pp__slot_word(gen, PP__SLOT_CANCELLED, -1))) {
      if (st == PP__SLOT_QUEUED && p->engine->unqueue_locked)
        p->engine->unqueue_locked(p, index);
      pp__slot_fail_locked(p, index, PP_ECANCELLED, "cancelled", later);
      return 0;
    }
    st = pp__word_state(word);
  }
  return st == PP__SLOT_RUNNING ? PP_EBUSY : PP_EINVAL;
}

/* Stops the running task of `id` by killing its worker. Returns 0 (it
 * will fail with PP_ECANCELLED), PP_EINVAL (it finished first, or is not
 * running), or PP_ENOTSUP (the engine cannot kill). */
int pp__slot_cancel_running_locked(pp_pool *p, uint64_t id) {
  struct pp__slot *s = pp__slot_by_id(&p->st, id);
  uint64_t word;
  int rc;

  PP__ASSERT_LOCKED(p);
  if (!pp__engine_can_kill(p->engine))
    return PP_ENOTSUP;
  if (!s)
    return PP_EINVAL;
  word = pp__slot_word_of(&p->st, pp__id_slot(id));
  if (pp__word_gen(word) != pp__id_gen(id) ||
      pp__word_state(word) != PP__SLOT_RUNNING)
    return PP_EINVAL;
  if (s->cancel_running || s->expired)
    return 0; /* already being killed */
  if ((rc = p->engine->kill_locked(p, id, pp__word_worker(word))) == 0)
    s->cancel_running = 1;
  return rc;
}

int pp__items_check(const void *run, size_t len, uint32_t count) {
  const unsigned char *p = run;
  size_t off = 0;

  for (uint32_t i = 0; i < count; i++) {
    struct pp__item_hdr h;
    if (len - off < sizeof h)
      return -1;
    memcpy(&h, p + off, sizeof h);
    if ((size_t)h.len + h.msg_len > len - off - sizeof h ||
        (h.status != 0 && h.len != 0))
      return -1;
    off += pp__item_size(&h);
    if (off > len)
      return -1;
  }
  return 0;
}

/* The bookkeeping of a slot after `count` of its items ended. */
static void items_ended_locked(pp_pool *p, uint32_t index, uint32_t count) {
  struct pp__slot *s = &p->st.slots[index];

  s->items_left = count >= s->items_left ? 0 : s->items_left - count;
  if (s->items_left == 0)
    pp__slot_free_locked(p, index);
  else
    pthread_cond_broadcast(&p->changed);
}

int pp__slot_adopt_block_locked(pp_pool *p, uint32_t index, uint32_t first,
                                const void *data, size_t len, uint32_t block,
                                uint64_t run_ns) {
  struct pp__slot *s = &p->st.slots[index];

  PP__ASSERT_LOCKED(p);
  if (!s->used || first >= s->items || !s->ops->adopt_block_locked ||
      !s->ops->adopt_block_locked(s->owner, s->base + first, data, len, block,
                                  run_ns))
    return 0;
  items_ended_locked(p, index, 1);
  return 1;
}

/* Applies the outcomes of items first .. first + count - 1 of slot
 * `index`, packed in `run`: the owner takes them in one piece, and the
 * slot is freed with its last item. Late answers (a slot failed or reused
 * meanwhile, an item of a retried chunk answering again) and runs that do
 * not parse are ignored. */
void pp__slot_resolve_run_locked(pp_pool *p, uint32_t index, uint32_t first,
                                 uint32_t count, const void *run, size_t len,
                                 uint64_t run_ns, struct pp__deferred **later) {
  struct pp__slot *s = &p->st.slots[index];

  PP__ASSERT_LOCKED(p);
  if (!s->used || first >= s->items || count > s->items - first || count == 0 ||
      pp__items_check(run, len, count) != 0)
    return;
  s->ops->resolve_run_locked(s->owner, s->base + first, count, run, len, run_ns,
                             later);
  items_ended_locked(p, index, count);
}

/* Fails every unresolved item of slot `index` with `status` and frees it. */
void pp__slot_fail_locked(pp_pool *p, uint32_t index, int status,
                          const char *msg, struct pp__deferred **later) {
  struct pp__slot *s = &p->st.slots[index];
  struct pp__result r = {status, 0, NULL, 0, msg, 0};

  PP__ASSERT_LOCKED(p);
  for (uint32_t i = 0; i < s->items; i++)
    s->ops->resolve_locked(s->owner, s->base + i, &r, later);
  pp__slot_free_locked(p, index);
}

/* Fails every task in flight, for a pool that cannot run tasks any more. */
void pp__slots_break_locked(pp_pool *p, int status, const char *msg,
                            struct pp__deferred **later) {
  PP__ASSERT_LOCKED(p);
  p->broken = status;
  for (uint32_t i = pp__slots_used_from(&p->st, 0); i != PP__NO_SLOT;
       i = pp__slots_used_from(&p->st, i + 1)) {
    if (p->st.slots[i].ops)
      pp__slot_fail_locked(p, i, status, msg, later);
  }
}

/* Cancels every task that has not started. */
void pp__slots_cancel_all_locked(pp_pool *p, struct pp__deferred **later) {
  PP__ASSERT_LOCKED(p);
  for (uint32_t i = pp__slots_used_from(&p->st, 0); i != PP__NO_SLOT;
       i = pp__slots_used_from(&p->st, i + 1)) {
    pp__slot_cancel_locked(p, pp__make_id(p->st.slots[i].gen, i), later);
  }
}

#ifdef PP_TEST_HOOKS
int pp_test_paged_frames(pp_pool *p, int *max) {
  int n;

  pp__pool_lock(p);
  n = (int)p->st.paged_frames;
  pp__pool_unlock(p);
  *max = FRAME_PAGED_MAX;
  return n;
}
#endif
