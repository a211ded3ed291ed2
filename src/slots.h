/*
 * The slot table: every task in flight owns a slot, named by its id (the
 * slot index in the low 32 bits, the slot's generation in the high 32, bumped
 * at each reuse, never 0 and below 2^31 so that bit 63 of an id is free
 * for a worker record's "doomed" mark).
 *
 * A slot has two halves. The master's half (struct pp__slot, guarded by
 * pool->mu) says who owns the task (a future or a map, reached only through
 * the owner's callbacks, so no engine knows either), its frame, timeout and
 * retries. The shared half is one word per slot, in memory every worker
 * process maps, holding (generation, state, worker):
 *
 *   QUEUED    a frame for it waits for a worker (the process engine keeps
 *             the invariant that every QUEUED slot's frame is in the task
 *             ring, so a claim happens under the ring lock);
 *   CLAIMED   a worker took it and will run it;
 *   RUNNING   the worker is running it;
 *   CANCELLED the master cancelled it before it ran.
 *
 * Workers move QUEUED -> CLAIMED -> RUNNING with compare-and-swap; the
 * master moves QUEUED or CLAIMED -> CANCELLED the same way, so exactly one
 * of "runs" and "is cancelled" wins. A frame whose id no longer matches the
 * word, or whose state is not QUEUED, is dropped.
 */
#ifndef PP_SLOTS_H
#define PP_SLOTS_H

#include "procpool.h"
#include "task.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

enum pp__slot_state {
  PP__SLOT_FREE,
  PP__SLOT_QUEUED,
  PP__SLOT_CLAIMED,
  PP__SLOT_RUNNING,
  PP__SLOT_CANCELLED
};

#define PP__GEN_MASK 0x7fffffffu

static inline uint64_t pp__slot_word(uint32_t gen, enum pp__slot_state st,
                                     int worker) {
  return ((uint64_t)gen << 32) | ((uint64_t)(worker + 1) << 8) | st;
}
static inline uint32_t pp__word_gen(uint64_t w) {
  return (uint32_t)(w >> 32);
}
static inline enum pp__slot_state pp__word_state(uint64_t w) {
  return (enum pp__slot_state)(w & 0xff);
}
static inline int pp__word_worker(uint64_t w) {
  return (int)((w >> 8) & 0xffffff) - 1;
}
static inline uint32_t pp__id_slot(uint64_t id) {
  return (uint32_t)id;
}
static inline uint32_t pp__id_gen(uint64_t id) {
  return (uint32_t)(id >> 32);
}
static inline uint64_t pp__make_id(uint32_t gen, uint32_t index) {
  return ((uint64_t)gen << 32) | index;
}

/* A task frame: [u64 length] (the ring's framing), this header, then
 * `count` items [u32 len][u32 pad][bytes] each padded to 8 (count is 1
 * unless the map sent a chunk). Every engine reads tasks in this form. */
struct pp__task_hdr {
  uint64_t id;
  uint64_t fn;    /* the pp_task_fn, valid in every forked worker */
  uint32_t count; /* items */
  uint32_t flags; /* PP__TASK_* */
};
#define PP__TASK_TIMED 1u /* may be killed for its timeout */

static inline size_t pp__pad8(size_t n) {
  return (n + 7) & ~(size_t)7;
}

/* A run of item outcomes, packed as every engine hands them over: per
 * item this header, then its result bytes (status 0) and its message bytes
 * (no NUL), padded to 8. A chunk's results travel and are kept this way,
 * so that no item costs an allocation of its own. */
struct pp__item_hdr {
  int32_t status;   /* 0, or the PP_E* the item failed with */
  int32_t code;     /* the task's return value, for PP_ETASK */
  uint32_t len;     /* result bytes */
  uint32_t msg_len; /* message bytes after the result bytes */
};

/* msg_len of a lone result that a worker left in a lent block of shared
 * memory (proc.h), `code` the block's number, and no bytes after the
 * header: the process engine's collector sees it, and either a map adopts
 * the block (adopt_block_locked) or the bytes are copied into a run of the
 * usual form. No other reader of runs ever meets one. */
#define PP__ITEM_IN_BLOCK UINT32_MAX

/* Bytes an item takes in a run, header included. */
static inline size_t pp__item_size(const struct pp__item_hdr *h) {
  return sizeof *h + pp__pad8((size_t)h->len + h->msg_len);
}

/* Bytes the outcome *r takes in a run; *msg_len (OUT) is the length of
 * its message, which only failures carry. */
static inline size_t pp__item_need(const struct pp__result *r,
                                   size_t *msg_len) {
  *msg_len = r->status ? strnlen(r->msg, PP__MESSAGE_MAX - 1) : 0;
  return sizeof(struct pp__item_hdr) + pp__pad8(r->len + *msg_len);
}

/* Writes the outcome *r into a run at `dst` (`need` bytes, as
 * pp__item_need() said), padding included. */
static inline void pp__item_write(unsigned char *dst,
                                  const struct pp__result *r, size_t msg_len,
                                  size_t need) {
  struct pp__item_hdr ih = {r->status, r->code, (uint32_t)r->len,
                            (uint32_t)msg_len};
  memset(dst + need - 8, 0, 8); /* the padding, before what covers it */
  memcpy(dst, &ih, sizeof ih);
  if (r->len == 8) /* the common tiny result, copied inline */
    memcpy(dst + sizeof ih, r->data, 8);
  else if (r->len)
    memcpy(dst + sizeof ih, r->data, r->len);
  if (msg_len)
    memcpy(dst + sizeof ih + r->len, r->msg, msg_len);
}

/* Checks that `len` bytes at `run` hold `count` whole items; returns 0 or
 * -1 (a run that does not parse is dropped whole). */
int pp__items_check(const void *run, size_t len, uint32_t count);

/* Callbacks run after pool->mu is dropped (done-callbacks of futures), as
 * a list that resolvers build under the lock. */
struct pp__deferred {
  void (*run)(struct pp__deferred *d);
  struct pp__deferred *next;
};

/* Runs and empties a deferred list; call with no lock held. */
void pp__deferred_run(struct pp__deferred *list);

/* What owns a slot's task: a future or a map. The slot table reaches the
 * owner only through these, under pool->mu. */
struct pp__owner_ops {
  /* Item `index` (the map's argument number: base + item) has ended as
   * *r; the owner copies what it keeps. Ignores answers it already has. */
  void (*resolve_locked)(void *owner, size_t index, const struct pp__result *r,
                         struct pp__deferred **later);
  /* Items index .. index + count - 1 ended as the packed `run` of `len`
   * bytes (checked), which took `run_ns` to compute (0: unknown); the
   * owner copies what it keeps, in one piece. */
  void (*resolve_run_locked)(void *owner, size_t index, uint32_t count,
                             const void *run, size_t len, uint64_t run_ns,
                             struct pp__deferred **later);
  /* The slot is freed: the owner has no task there any more (may be NULL). */
  void (*gone_locked)(void *owner);
  /* Item `index` ended as the `len` bytes at `data`, in block `block` of
   * the engine's shared memory, which took `run_ns`: returns 1 if the
   * owner keeps them there (and gives the block back with the engine's
   * free_block() once it is done with them), 0 if they must be copied
   * for it. NULL: always copied. */
  int (*adopt_block_locked)(void *owner, size_t index, const void *data,
                            size_t len, uint32_t block, uint64_t run_ns);
};

/* The master's half of a slot (guarded by pool->mu). */
struct pp__slot {
  uint32_t gen;
  uint8_t used;           /* 0 when free */
  uint8_t cancel_running; /* the master killed its worker to cancel it */
  uint8_t expired;        /* the master killed its worker for its timeout */
  uint8_t attempts;       /* runs that ended with the worker's death */
  uint32_t next_free;     /* free list link */
  uint32_t items;         /* items in the task */
  uint32_t items_left;    /* items with no result yet */
  uint64_t timeout_ns;    /* 0: none */
  const struct pp__owner_ops *ops;
  void *owner; /* the pp_future, or the pp_map */
  size_t base; /* map: index of the task's first argument */
  void *frame; /* the task frame, kept to queue it again */
  size_t frame_len;
  size_t frame_cap;    /* bytes allocated at frame, kept across uses */
  uint8_t frame_paged; /* frame has pages of its own (slots.c) */
};

/* Waiting room for slots an engine could not take yet (a full ring). */
struct pp__backlog {
  uint64_t id;
  struct pp__backlog *next;
};

#define PP__HELD_MAX 64 /* submits held back to be queued together */

/* The table (inside struct pp_pool; every field guarded by pool->mu,
 * except the words, which are atomics shared with workers). */
struct pp__slots {
  struct pp__slot *slots;  /* [n], a private mapping left out of forks */
  _Atomic uint64_t *words; /* [n * PP__WORD_STRIDE], MAP_SHARED: inherited
                              by workers; see pp__word_at() */
  uint32_t n;              /* a power of two */
  uint32_t free_head;      /* PP__NO_SLOT: none free */
  uint64_t *used;          /* [n / 64]: a bit per slot in flight, so that
                              scans need not read all n words (a cache
                              line each) nor a list in each slot (freeing
                              would touch a neighbour's cold line) */
  uint32_t in_flight;
  uint32_t timed; /* slots in flight with a timeout */
  size_t max_payload;
  size_t max_frame;      /* largest frame payload, header included */
  size_t large_frames;   /* bytes of slots' frames over FRAME_KEEP (slots.c) */
  uint32_t paged_frames; /* frames with pages of their own (slots.c) */
  struct pp__backlog *backlog;
  struct pp__backlog **backlog_tail;
  /* Submitted while the workers had plenty queued: held back, to be
   * queued together (pp__slots_release_held_locked()); ids, so that one
   * cancelled and freed meanwhile is told from its slot's next use. */
  uint64_t held[PP__HELD_MAX];
  _Atomic uint32_t nheld; /* written under mu; read without it as a hint */
};

#define PP__NO_SLOT UINT32_MAX

/* Slots for a pool whose rings hold `ring_capacity` bytes: one per 64
 * bytes of ring, from 256 to 65536. */
uint32_t pp__slots_count(size_t ring_capacity, size_t max_payload);

/* The largest frame payload for payloads of `max_payload` bytes. */
size_t pp__max_frame(size_t max_payload);

int pp__slots_init(struct pp__slots *t, uint32_t n, size_t max_payload);
void pp__slots_destroy(struct pp__slots *t);

struct pp_pool;

/* The table's calls, all with pool->mu held (asserted in debug builds). */
/* A free slot into *index: 0, PP_ETIMEDOUT (none free without `wait`, or
 * by `deadline_ns`) or the pool's failure. Waiting drops mu, and may apply
 * waiting results on this thread (the engine's take_results). */
int pp__slot_alloc_locked(struct pp_pool *p, int wait, uint64_t deadline_ns,
                          uint32_t *index);
void pp__slot_free_locked(struct pp_pool *p, uint32_t index);
int pp__slot_frame_locked(struct pp_pool *p, uint32_t index, pp_task_fn fn,
                          const void *const *args, const size_t *lens,
                          size_t n);
int pp__slot_frame_copy_locked(struct pp_pool *p, uint32_t index, pp_task_fn fn,
                               const void *frame, size_t frame_len);
void pp__slot_own_locked(struct pp_pool *p, uint32_t index,
                         const struct pp__owner_ops *ops, void *owner,
                         size_t base, uint64_t timeout_ns);
int pp__slot_queue_locked(struct pp_pool *p, uint32_t index, int wait,
                          uint64_t deadline_ns, struct pp__deferred **later);
void pp__slot_requeue_locked(struct pp_pool *p, uint32_t index,
                             struct pp__deferred **later);
/* Queues slots index[0..n) in that order without waiting, as many as fit
 * at once under one lock of the engine's queue; those that do not fit
 * wait in the backlog, in order. */
/* Queues slot `index` for pp_submit(): marks it QUEUED and, while the
 * engine says its workers have plenty queued (busy_locked), holds it back
 * with the submits after it, to be queued together under one lock of the
 * engine's queue once PP__HELD_MAX are held, results come back, a thread
 * waits for a result, or the collector looks (within a millisecond);
 * otherwise queues what is held and then it, waiting for room as
 * pp__slot_queue_locked() does. Returns as that does. */
int pp__slot_submit_locked(struct pp_pool *p, uint32_t index,
                           struct pp__deferred **later);

/* Queues the submits held back, in order. Called wherever a thread is
 * about to wait for results, where the collector looks at the pool, and
 * before anything else is queued or the pool closes. */
void pp__slots_release_held_locked(struct pp_pool *p,
                                   struct pp__deferred **later);

void pp__slots_queue_batch_locked(struct pp_pool *p, const uint32_t *index,
                                  size_t n, struct pp__deferred **later);
void pp__slots_flush_backlog_locked(struct pp_pool *p);
int pp__slot_cancel_locked(struct pp_pool *p, uint64_t id,
                           struct pp__deferred **later);
int pp__slot_cancel_running_locked(struct pp_pool *p, uint64_t id);
void pp__slot_resolve_run_locked(struct pp_pool *p, uint32_t index,
                                 uint32_t first, uint32_t count,
                                 const void *run, size_t len, uint64_t run_ns,
                                 struct pp__deferred **later);
/* Item `first` of slot `index` ended as `len` bytes in block `block` at
 * `data` (adopt_block_locked): 1 if its owner keeps them there, 0 if the
 * caller must resolve it with a copy. */
int pp__slot_adopt_block_locked(struct pp_pool *p, uint32_t index,
                                uint32_t first, const void *data, size_t len,
                                uint32_t block, uint64_t run_ns);
void pp__slot_fail_locked(struct pp_pool *p, uint32_t index, int status,
                          const char *msg, struct pp__deferred **later);
void pp__slots_break_locked(struct pp_pool *p, int status, const char *msg,
                            struct pp__deferred **later);
void pp__slots_cancel_all_locked(struct pp_pool *p,
                                 struct pp__deferred **later);

/* Slot words lie a cache line apart: a worker changing one slot's word
 * does not take the line from the master writing its neighbour's. */
#define PP__WORD_STRIDE (64 / sizeof(uint64_t))

/* Where slot `index`'s word lies in `words`. */
static inline _Atomic uint64_t *pp__word_at(_Atomic uint64_t *words,
                                            uint32_t index) {
  return &words[(size_t)index * PP__WORD_STRIDE];
}

/* The first slot in flight at or after `from`, or PP__NO_SLOT: scans go
 * for (i = pp__slots_used_from(t, 0); i != PP__NO_SLOT;
 *      i = pp__slots_used_from(t, i + 1)),
 * which may free the slot they are at. */
static inline uint32_t pp__slots_used_from(const struct pp__slots *t,
                                           uint32_t from) {
  for (uint32_t w = from / 64; w < t->n / 64; w++) {
    uint64_t bits = t->used[w];
    if (w == from / 64)
      bits &= ~(uint64_t)0 << (from % 64);
    if (bits)
      return w * 64 + (uint32_t)__builtin_ctzll(bits);
  }
  return PP__NO_SLOT;
}

/* The slot word of `index`, for state reads. */
static inline uint64_t pp__slot_word_of(const struct pp__slots *t,
                                        uint32_t index) {
  return atomic_load(pp__word_at(t->words, index));
}

/* The slot `id` names, or NULL when it is not in flight any more. */
static inline struct pp__slot *pp__slot_by_id(struct pp__slots *t,
                                              uint64_t id) {
  uint32_t index = pp__id_slot(id);
  if (index >= t->n || !t->slots[index].used ||
      t->slots[index].gen != pp__id_gen(id))
    return NULL;
  return &t->slots[index];
}

#endif
