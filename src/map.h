/*
 * The map's internals, shared by its two halves: map_feed.c turns
 * arguments into tasks (the stage, the window's refills), map.c takes
 * results back (items, chunks, pp_map_next()). Never included elsewhere.
 */
#ifndef PP_MAP_H
#define PP_MAP_H

#include "future.h"

/* One run of results, copied whole; freed with its last item (small
 * ones are kept on the map's spare list for the next run). */
struct map_chunk {
  size_t refs;            /* items pointing into it; under pool->mu */
  size_t cap;             /* bytes[] allocated */
  struct map_chunk *next; /* on the spare list */
  unsigned char bytes[];
};

#define SPARE_MIN 256         /* the smallest chunk made */
#define SPARE_MAX 64          /* chunks kept for reuse, at most */
#define SPARE_KEEP (8u << 20) /* and their bytes, at most */

/* A lone run this small is kept in the map's inline runs, not in a chunk
 * of its own. */
#define INLINE_RUN 32

/* One argument's result, 16 bytes: four to a cache line, since a chunked
 * map writes, scans, reads and releases one per result (at 64 bytes each,
 * the comm thread and the consumer missed on every one). Written under
 * pool->mu; a done item is never written again until it is released.
 * Done: `ih` is its header, in the chunk `ref` names or in the map's
 * inline runs (ref 0). A failure has an outcome of its own instead:
 * `ih` NULL, `ref` that outcome's address with its low bit set. A result
 * left in an engine's shared block (adopt_block_locked) has its header
 * and the bytes' address in the item's inline run (struct map_in_block),
 * and `ref` the block's number, shifted, with the second bit set. */
struct map_item {
  const struct pp__item_hdr *ih;
  uintptr_t ref;
};

#define MAP_REF_SINGLE ((uintptr_t)1) /* ref's tag: an outcome, not a chunk */
#define MAP_REF_BLOCK ((uintptr_t)2)  /* ref's tag: a block's number */
#define MAP_REF_TAGS ((uintptr_t)3)

/* What an item's inline run holds for a result left in a block. */
struct map_in_block {
  struct pp__item_hdr ih;
  const void *data;
};

static inline int pp__map_item_done(const struct map_item *it) {
  return it->ih != NULL || it->ref != 0;
}

static inline struct pp__outcome *
pp__map_item_single(const struct map_item *it) {
  return (it->ref & MAP_REF_TAGS) == MAP_REF_SINGLE
             ? (struct pp__outcome *)(it->ref & ~MAP_REF_SINGLE)
             : NULL;
}

static inline struct map_chunk *pp__map_item_chunk(const struct map_item *it) {
  return it->ref & MAP_REF_TAGS ? NULL : (struct map_chunk *)it->ref;
}

/* Whether the item's result lies in a block of the engine's: then
 * *block (OUT) is its number. */
static inline int pp__map_item_block(const struct map_item *it,
                                     uint32_t *block) {
  *block = (uint32_t)(it->ref >> 2);
  return (it->ref & MAP_REF_TAGS) == MAP_REF_BLOCK;
}

struct pp_map {
  pp_pool *pool;
  pp_task_fn fn;
  const void *const *args; /* array source, or NULL */
  const size_t *lens;
  size_t n;
  pp_gen_fn gen; /* generator source, or NULL */
  void *gen_state;
  size_t chunksize;  /* arguments per task now; the consumer's */
  size_t chunk_next; /* what the measurements ask for next (under mu) */
  int auto_chunk;    /* chunksize follows the measured task time */
  double item_ns;    /* measured time of one item (auto), 0: none yet */
  size_t max_chunk;  /* largest chunksize */
  size_t stage_cap;  /* arguments the stage holds */
  size_t window;
  size_t refill_step; /* top the window up once this much room opens */
  uint64_t deadline_ns;
  uint64_t task_timeout_ns; /* 0: none */
  size_t submitted;         /* arguments turned into tasks (under mu) */
  size_t yielded;           /* results out of the window (under mu) */
  size_t released;          /* results [released, cursor) were handed
                               back and are still kept */
  size_t cursor;            /* the next result to hand back */
  size_t ready_end;         /* results [cursor, ready_end) are done */
  size_t tasks;             /* tasks in flight */
  int refilled;             /* topped the window up before this sleep */
  int taking;               /* said taking_results(1) (the consumer's) */
  int source_done;
  int source_err;
  struct map_item *items; /* [items_mask + 1], at least window + 1 */
  size_t items_mask;
  unsigned char (*inline_runs)[INLINE_RUN]; /* [items_mask + 1]: item i's
                                               small lone run, if any */
  struct map_chunk *spare; /* small chunks to reuse; under mu */
  size_t nspare, spare_bytes;
  /* The stage: the next task's arguments. */
  const void **stage_args;
  size_t *stage_lens;
  size_t staged, stage_bytes;
  unsigned char *stage_copy; /* generator bytes, max_frame long */
  const void *held_arg;      /* a generator argument for the next stage */
  size_t held_len;
  int held;
  /* What the last pp_map_next() answered. */
  size_t current_index;
  int current_code;
  char current_msg[PP__MESSAGE_MAX];
};

/* With the circular array's mask: finding an item costs no division. */
static inline struct map_item *pp__map_item_at(pp_map *m, size_t index) {
  return &m->items[index & m->items_mask];
}

/* How much room opens before the window is topped up: a whole chunk, and
 * with the window the map chose, an eighth of it, so that tiny tasks are
 * submitted in batches under one lock rather than one at a time. */
static inline size_t pp__map_refill_need(const pp_map *m) {
  return m->chunksize > m->refill_step ? m->chunksize : m->refill_step;
}

/* map.c: the slot owner callbacks of a map's tasks. */
extern const struct pp__owner_ops pp__map_ops;

/* map_feed.c: with mu held, submits what the window allows; a failure to
 * submit ends the map (kept for pp_map_next() to report once the results
 * in flight are out). Drops mu to run the generator. */
void pp__map_refill_or_stop_locked(pp_map *m);

#endif
