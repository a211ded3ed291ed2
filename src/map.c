/*
 * The ordered, lazy map. A map keeps at most `window` arguments in flight:
 * it pulls arguments (from the array or the generator) only when earlier
 * results have been handed back, so memory stays constant however many
 * arguments there are. Results land in a circular array of at least
 * window + 1 items (a power of two, so that finding one costs no
 * division) indexed by argument number (the extra one is the result being
 * handed back); pp_map_next() hands them back in order. Arguments become
 * tasks in map_feed.c; map.h holds what the two halves share.
 *
 * DESIGN (speed)
 * A chunk's results arrive as one packed run (slots.h), copied once into a
 * map_chunk that its items (16 bytes each, map.h) point into: no
 * allocation per item. Under the lock, pp_map_next() notes how many
 * consecutive results are ready; it then hands those back without taking
 * the lock (they are done, so no resolver writes them), and takes it again
 * only to release what was handed back, submit the next chunk and wait.
 * With no chunksize set (0), the map chooses one from the time tasks take
 * (as joblib's batch_size='auto'): tiny tasks travel in chunks of up to
 * AUTO_MAX, tasks of a millisecond or more one per task.
 */
#include "map.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AUTO_MAX 1024           /* largest automatic chunk */
#define AUTO_TARGET_NS 200000.0 /* time an automatic chunk aims to take */

/* With mu held: a chunk of at least `len` bytes, from the spare list when
 * one there is large enough. */
static struct map_chunk *chunk_new(pp_map *m, size_t len) {
  struct map_chunk *c, **pp;

  for (pp = &m->spare; (c = *pp) != NULL; pp = &c->next)
    if (c->cap >= len) { /* first fit: the list is short */
      *pp = c->next;
      m->nspare--;
      m->spare_bytes -= c->cap;
      return c;
    }
  if (len < SPARE_MIN)
    len = SPARE_MIN;
  if ((c = malloc(sizeof *c + len)) != NULL)
    c->cap = len;
  return c;
}

/* With mu held: a chunk no item points into any more, kept for the next
 * run while the spare list is small: a large run (a batch's text, say)
 * then costs no allocation and no fresh pages. */
static void chunk_free(pp_map *m, struct map_chunk *c) {
  if (m->nspare < SPARE_MAX && m->spare_bytes + c->cap <= SPARE_KEEP) {
    c->next = m->spare;
    m->spare = c;
    m->nspare++;
    m->spare_bytes += c->cap;
    return;
  }
  free(c);
}

/* With mu held (or alone): forgets a result that was handed back. */
static void item_release(pp_map *m, struct map_item *it) {
  struct pp__outcome *single = pp__map_item_single(it);
  struct map_chunk *c = pp__map_item_chunk(it);
  uint32_t block;

  if (c && --c->refs == 0)
    chunk_free(m, c);
  if (pp__map_item_block(it, &block))
    m->pool->engine->free_block(m->pool, block);
  if (single) {
    pp__outcome_clear(single);
    free(single);
  }
  it->ih = NULL;
  it->ref = 0;
}

/* With mu held: item `index` if the map still waits for its result (in
 * the window and not done), else NULL: the answer is late, or repeated by
 * a retried chunk. */
static struct map_item *awaited_locked(pp_map *m, size_t index) {
  struct map_item *it;

  if (index < m->yielded || index >= m->submitted)
    return NULL;
  it = pp__map_item_at(m, index);
  return pp__map_item_done(it) ? NULL : it;
}

/* The slot owner callback: argument `index` ended as *r (the slot
 * table's failures). Answers for results already released, or already
 * had (a retried chunk answering again), are ignored. */
static void resolve_locked(void *owner, size_t index,
                           const struct pp__result *r,
                           struct pp__deferred **later) {
  pp_map *m = owner;
  struct pp__outcome *single;
  struct map_item *it;

  (void)later;
  if (!(it = awaited_locked(m, index)))
    return;
  if (!(single = calloc(1, sizeof *single)))
    return; /* stays pending: the map then times out, or waits */
  pp__outcome_set(single, r);
  it->ref = (uintptr_t)single | MAP_REF_SINGLE; /* malloc aligns to 16 */
}

/* The automatic chunksize after a run of `count` items that took
 * `run_ns`: aims for chunks of AUTO_TARGET_NS, growing at most fourfold
 * at a time, and no larger than half of each worker's share of the
 * window. */
static void adapt_chunk_locked(pp_map *m, uint32_t count, uint64_t run_ns) {
  double per = (double)run_ns / count, want;
  size_t cap = m->window / (2 * (size_t)m->pool->nworkers);

  m->item_ns = m->item_ns > 0 ? 0.75 * m->item_ns + 0.25 * per : per;
  want = m->item_ns > 0 ? AUTO_TARGET_NS / m->item_ns : (double)AUTO_MAX;
  if (want > 4.0 * (double)m->chunk_next)
    want = 4.0 * (double)m->chunk_next;
  if (cap > m->max_chunk)
    cap = m->max_chunk;
  m->chunk_next = want < 1             ? 1
                  : want > (double)cap ? (cap ? cap : 1)
                                       : (size_t)want;
}

/* With mu held: result `index`, a run of one item of `len` bytes (at
 * most INLINE_RUN), copied into the item's inline run. */
static void resolve_inline_locked(pp_map *m, size_t index, const void *run,
                                  size_t len) {
  unsigned char *inline_run = m->inline_runs[index & m->items_mask];
  struct map_item *it;

  if (!(it = awaited_locked(m, index)))
    return;
  memcpy(inline_run, run, len);
  it->ih = (const struct pp__item_hdr *)inline_run;
}

/* The slot owner callback: results index .. index + count - 1 arrived as
 * one packed run, kept whole. */
static void resolve_run_locked(void *owner, size_t index, uint32_t count,
                               const void *run, size_t len, uint64_t run_ns,
                               struct pp__deferred **later) {
  pp_map *m = owner;
  struct map_chunk *c;
  const unsigned char *p;

  (void)later;
  if (m->auto_chunk && run_ns)
    adapt_chunk_locked(m, count, run_ns);
  if (count == 1 && len <= INLINE_RUN) {
    /* A tiny task's result (chunksize 1): no allocation. */
    resolve_inline_locked(m, index, run, len);
    return;
  }
  c = chunk_new(m, len);
  if (!c)
    return; /* they stay pending: the map then times out, or waits */
  memcpy(c->bytes, run, len);
  c->refs = 0;
  p = c->bytes;
  for (uint32_t i = 0; i < count; i++, index++) {
    const struct pp__item_hdr *ih = (const void *)p;
    struct map_item *it = awaited_locked(m, index);
    p += pp__item_size(ih);
    if (!it)
      continue;
    it->ih = ih;
    it->ref = (uintptr_t)c;
    c->refs++;
  }
  if (c->refs == 0)
    chunk_free(m, c);
}

/* The slot owner callback: result `index` is the `len` bytes at `data`,
 * in the engine's block `block`, kept there (so never copied) until it has
 * been handed back. A late answer is left to be copied and ignored. */
static int adopt_block_locked(void *owner, size_t index, const void *data,
                              size_t len, uint32_t block, uint64_t run_ns) {
  pp_map *m = owner;
  struct map_in_block *in;
  struct map_item *it;

  if (!(it = awaited_locked(m, index)))
    return 0;
  if (m->auto_chunk && run_ns)
    adapt_chunk_locked(m, 1, run_ns);
  in = (struct map_in_block *)(void *)m->inline_runs[index & m->items_mask];
  in->ih = (struct pp__item_hdr){0, 0, (uint32_t)len, 0};
  in->data = data;
  it->ih = &in->ih;
  it->ref = ((uintptr_t)block << 2) | MAP_REF_BLOCK;
  return 1;
}

_Static_assert(sizeof(struct map_in_block) <= INLINE_RUN,
               "a block's result fits an item's inline run");

/* The slot owner callback: one of the map's tasks is gone. */
static void gone_locked(void *owner) {
  pp_map *m = owner;
  m->tasks--;
}

const struct pp__owner_ops pp__map_ops = {resolve_locked, resolve_run_locked,
                                          gone_locked, adopt_block_locked};

/* The chunking an options struct asks for: a fixed chunksize, or the
 * automatic one (0), which a per-task timeout turns off (it would time a
 * whole chunk). */
static void choose_chunking(pp_map *m, const pp_map_options *opts) {
  size_t asked = opts ? opts->chunksize : 0;
  size_t window = opts ? opts->window : 0;

  m->auto_chunk = asked == 0 && m->task_timeout_ns == 0;
  m->max_chunk = asked ? asked : 1;
  if (m->auto_chunk) {
    /* An explicit window is kept: chunks then fit twice per worker. */
    size_t fit = window / (2 * (size_t)m->pool->nworkers);
    m->max_chunk = !window          ? AUTO_MAX
                   : fit < 1        ? 1
                   : fit > AUTO_MAX ? AUTO_MAX
                                    : fit;
  }
  m->chunksize = m->auto_chunk ? 1 : m->max_chunk;
  m->chunk_next = m->chunksize;
}

/* The window: as asked, else four chunks of the largest size (at least 64
 * arguments) per worker; never under two chunks, nor over what the slots
 * can hold. */
static size_t choose_window(const pp_map *m, const pp_map_options *opts) {
  size_t per = m->max_chunk > 64 ? m->max_chunk : 64;
  size_t w = opts && opts->window ? opts->window
                                  : (size_t)4 * (size_t)m->pool->nworkers * per;
  if (w < 2 * m->max_chunk)
    w = 2 * m->max_chunk;
  if (w > (size_t)m->pool->st.n * m->max_chunk)
    w = (size_t)m->pool->st.n * m->max_chunk;
  return w;
}

/* Bytes of the circular array of items. */
static size_t items_bytes(const pp_map *m) {
  return (m->items_mask + 1) * sizeof *m->items;
}

/* Bytes of the items' inline runs (untouched pages cost nothing: only a map
 * of lone small results writes them). */
static size_t inline_runs_bytes(const pp_map *m) {
  return (m->items_mask + 1) * sizeof *m->inline_runs;
}

/* Shared constructor of both sources. */
static int map_new(pp_pool *p, pp_task_fn fn, const pp_map_options *opts,
                   pp_map **out) {
  pp_map *m;
  int rc;

  if (out)
    *out = NULL;
  if (!p || !fn || !out ||
      (opts && (opts->timeout != opts->timeout ||
                opts->task_timeout != opts->task_timeout)))
    return PP_EINVAL;
  if (opts && opts->task_timeout > 0 && !pp__engine_can_kill(p->engine))
    return PP_ENOTSUP;
  if (p->engine->check_task && (rc = p->engine->check_task(fn)) != 0)
    return rc; /* an unregistered task, said at the call as pp_submit does */
  if (!(m = calloc(1, sizeof *m)))
    return PP_ENOMEM;
  m->pool = p;
  m->fn = fn;
  m->deadline_ns =
      pp__deadline_ns(opts && opts->timeout > 0 ? opts->timeout : PP_FOREVER);
  m->task_timeout_ns = opts && opts->task_timeout > 0
                           ? pp__seconds_to_ns(opts->task_timeout)
                           : 0;
  choose_chunking(m, opts);
  m->window = choose_window(m, opts);
  m->refill_step = opts && opts->window ? 1 : m->window / 8;
  while (m->items_mask < m->window) /* items_mask + 1 > window */
    m->items_mask = m->items_mask * 2 + 1;
  /* The items and the stage are the master's alone, written all the time:
   * out of every fork, so that replacing a dead worker costs no copies of
   * their pages (pp__master_alloc()). */
  m->items = pp__master_alloc(items_bytes(m));
  m->inline_runs = pp__master_alloc(inline_runs_bytes(m));
  m->stage_cap = pp__map_refill_need(m) > m->max_chunk ? pp__map_refill_need(m)
                                                       : m->max_chunk;
  m->stage_args = pp__master_alloc(m->stage_cap * sizeof *m->stage_args);
  m->stage_lens = pp__master_alloc(m->stage_cap * sizeof *m->stage_lens);
  m->stage_copy = pp__master_alloc(p->st.max_frame);
  if (!m->items || !m->inline_runs || !m->stage_args || !m->stage_lens ||
      !m->stage_copy) {
    pp_map_destroy(m);
    return PP_ENOMEM;
  }
  *out = m;
  return 0;
}

/* Submits the first window at once, as Python's map submits at the call,
 * so work starts before the first pp_map_next(). A failure to submit is
 * kept for pp_map_next() to report. */
static void start_map(pp_map *m) {
  pp__pool_lock(m->pool);
  pp__map_refill_or_stop_locked(m);
  pp__pool_unlock(m->pool);
}

int pp_map_array(pp_pool *p, pp_task_fn fn, const void *const *args,
                 const size_t *lens, size_t n, const pp_map_options *opts,
                 pp_map **out) {
  int rc;
  if (n && (!args || !lens))
    return PP_EINVAL;
  if ((rc = map_new(p, fn, opts, out)) != 0)
    return rc;
  (*out)->args = args;
  (*out)->lens = lens;
  (*out)->n = n;
  (*out)->source_done = n == 0;
  start_map(*out);
  return 0;
}

int pp_map_gen(pp_pool *p, pp_task_fn fn, pp_gen_fn gen, void *state,
               const pp_map_options *opts, pp_map **out) {
  int rc;
  if (!gen)
    return PP_EINVAL;
  if ((rc = map_new(p, fn, opts, out)) != 0)
    return rc;
  (*out)->gen = gen;
  (*out)->gen_state = state;
  start_map(*out);
  return 0;
}

/* With mu held: releases the results handed back since the last time
 * (the caller's last one is valid until this call), and counts them out of
 * the window. */
static void release_handed_locked(pp_map *m) {
  for (size_t i = m->released; i < m->cursor; i++)
    item_release(m, pp__map_item_at(m, i));
  m->released = m->cursor;
  if (m->cursor > m->yielded)
    m->yielded = m->cursor;
}

/* Says whether the consumer takes the map's results itself (between
 * its first pp_map_next() and the end, but not while it sleeps): the
 * engine then leaves them on the ring for it instead of waking its
 * collector for each. Called without mu. */
static void set_taking(pp_map *m, int on) {
  if (m->taking == on || !m->pool->engine->taking_results)
    return;
  m->taking = on;
  m->pool->engine->taking_results(m->pool, on);
}

/* With mu held: waits until result `cursor` is done, or the map ends or
 * times out; then notes how many consecutive results are ready. Returns 0
 * or PP_EOF, the source's error, PP_ETIMEDOUT. */
static int wait_ready_locked(pp_map *m) {
  int took_nothing = 0;

  for (;;) {
    if (m->cursor == m->submitted) {
      pp__map_refill_or_stop_locked(m);
      if (m->cursor == m->submitted)
        return m->source_err ? m->source_err : PP_EOF;
    }
    if (pp__map_item_done(pp__map_item_at(m, m->cursor)))
      break;
    if (m->deadline_ns != PP__FOREVER && pp__now_ns() >= m->deadline_ns)
      return PP_ETIMEDOUT;
    if (!m->refilled) {
      /* Not ready: keep the workers fed with what the window allows. */
      m->refilled = 1;
      pp__map_refill_or_stop_locked(m);
      continue;
    }
    if (!took_nothing && m->pool->engine->take_results) {
      /* Results are taken here as they come for a moment, sparing the
       * collector's wake-up and this thread's; then everything is looked
       * at again, since results may have landed meanwhile. */
      pp__pool_unlock(m->pool);
      took_nothing = !pp__pool_take_results(m->pool);
      pp__pool_lock(m->pool);
      if (!took_nothing)
        m->refilled = 0;
      continue;
    }
    m->refilled = 0;
    took_nothing = 0;
    /* Asleep: the collector wakes it, so it is told to look. */
    pp__pool_unlock(m->pool);
    set_taking(m, 0);
    pp__pool_lock(m->pool);
    if (pp__map_item_done(pp__map_item_at(m, m->cursor)))
      continue;
    pp__pool_wait(m->pool, &m->pool->changed, m->deadline_ns);
  }
  m->refilled = 0;
  /* Scanned on from where the last scan stopped: amortised O(1). */
  if (m->ready_end <= m->cursor)
    m->ready_end = m->cursor + 1;
  while (m->ready_end < m->submitted &&
         pp__map_item_done(pp__map_item_at(m, m->ready_end)))
    m->ready_end++;
  return 0;
}

/* Hands back result `cursor` (done): its status, bytes and message. */
static int hand_back(pp_map *m, const void **data, size_t *len) {
  struct map_item *it = pp__map_item_at(m, m->cursor);
  struct pp__outcome *single = pp__map_item_single(it);
  int status;

  m->current_index = m->cursor++;
  m->current_msg[0] = '\0';
  if (single) {
    status = single->status;
    m->current_code = single->code;
    snprintf(m->current_msg, sizeof m->current_msg, "%s",
             single->message ? single->message : "");
    if (status == 0) {
      *data = single->data;
      *len = single->len;
    }
    return status;
  }
  status = it->ih->status;
  m->current_code = it->ih->code;
  if (status == 0) {
    uint32_t block;
    *data = pp__map_item_block(it, &block)
                ? ((const struct map_in_block *)(const void *)it->ih)->data
                : (const char *)(it->ih + 1);
    *len = it->ih->len;
  } else {
    snprintf(m->current_msg, sizeof m->current_msg, "%.*s",
             (int)it->ih->msg_len, (const char *)(it->ih + 1) + it->ih->len);
  }
  return status;
}

int pp_map_next(pp_map *m, const void **data, size_t *len) {
  const void *d = NULL;
  size_t l = 0;
  int rc;

  if (!m)
    return PP_EINVAL;
  /* Fast path: a ready result, while the window has not opened the room
   * it is topped up at (then that is submitted first, under the lock). */
  if (m->cursor < m->ready_end &&
      m->cursor + 1 - m->yielded < pp__map_refill_need(m)) {
    rc = hand_back(m, &d, &l);
  } else {
    set_taking(m, 1);
    pp__pool_lock(m->pool);
    release_handed_locked(m);
    rc = wait_ready_locked(m);
    if (rc == 0) {
      /* The window is topped up before this result is handed back, as
       * Python's map (with buffersize) submits as it yields. */
      m->yielded = m->cursor + 1;
      pp__map_refill_or_stop_locked(m);
    }
    pp__pool_unlock(m->pool);
    if (rc == 0) {
      rc = hand_back(m, &d, &l);
    } else {
      set_taking(m, 0);
      m->current_code = 0, m->current_msg[0] = '\0';
    }
  }
  if (data)
    *data = rc == 0 ? d : NULL;
  if (len)
    *len = rc == 0 ? l : 0;
  return rc;
}

size_t pp_map_index(const pp_map *m) {
  return m ? m->current_index : 0;
}

const char *pp_map_message(const pp_map *m) {
  return m ? m->current_msg : "";
}

int pp_map_task_code(const pp_map *m) {
  return m ? m->current_code : 0;
}

void pp_map_destroy(pp_map *m) {
  struct pp__deferred *none = NULL; /* map items defer nothing */
  pp_pool *p;

  if (!m)
    return;
  p = m->pool;
  set_taking(m, 0);
  pp__pool_lock(p);
  for (uint32_t i = pp__slots_used_from(&p->st, 0);
       i != PP__NO_SLOT && m->tasks; i = pp__slots_used_from(&p->st, i + 1)) {
    if (p->st.slots[i].owner == m)
      pp__slot_cancel_locked(p, pp__make_id(p->st.slots[i].gen, i), &none);
  }
  while (m->tasks > 0)
    pp__pool_wait(p, &p->changed, PP__FOREVER);
  if (m->items)
    for (size_t i = 0; i <= m->items_mask; i++)
      item_release(m, &m->items[i]);
  pp__pool_unlock(p);
  assert(none == NULL);
  while (m->spare) {
    struct map_chunk *c = m->spare;
    m->spare = c->next;
    free(c);
  }
  pp__master_free(m->items, items_bytes(m));
  pp__master_free(m->inline_runs, inline_runs_bytes(m));
  pp__master_free(m->stage_args, m->stage_cap * sizeof *m->stage_args);
  pp__master_free(m->stage_lens, m->stage_cap * sizeof *m->stage_lens);
  pp__master_free(m->stage_copy, m->pool->st.max_frame);
  free(m);
}
