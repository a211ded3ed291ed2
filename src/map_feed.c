/*
 * The map's feeding half: arguments become tasks. Arguments are gathered
 * into a stage (copied, for a generator, since its bytes live only until
 * its next call) outside pool->mu, so that a generator never runs under
 * the pool's lock; the stage then becomes tasks (chunks of up to
 * `chunksize` arguments) under the lock, queued as one batch. The window
 * is topped up only when a whole chunk's room has opened in it, so chunks
 * stay whole, and, with the window the map chose, only when an eighth of
 * it has, so that tiny tasks travel in batches.
 */
#include "map.h"

#include <string.h>

#define QUEUE_BATCH 64 /* tasks queued under one lock, at most */

/* Pulls the next argument from the source: 1 with it, 0 at the end, or a
 * negative PP_E* from the generator. */
static int next_arg(pp_map *m, const void **arg, size_t *len) {
  int rc;
  if (m->held) {
    m->held = 0;
    *arg = m->held_arg;
    *len = m->held_len;
    return 1;
  }
  if (m->args) {
    if (m->submitted + m->staged >= m->n)
      return 0;
    *arg = m->args[m->submitted + m->staged];
    *len = m->lens[m->submitted + m->staged];
    return 1;
  }
  rc = m->gen(m->gen_state, arg, len);
  return rc > 0 ? 1 : (rc < 0 ? rc : 0);
}

/* Fills the stage, outside the lock, up to `want` arguments, what one
 * frame holds, and the window. Returns 0 or a PP_E* that ends the map. */
static int fill_stage(pp_map *m, size_t want) {
  size_t max_frame = m->pool->st.max_frame - sizeof(struct pp__task_hdr);
  const void *arg;
  size_t len;
  int rc;

  while (!m->source_done && m->staged < want &&
         m->submitted + m->staged - m->yielded < m->window) {
    if ((rc = next_arg(m, &arg, &len)) <= 0) {
      m->source_done = 1;
      return rc;
    }
    if (len > m->pool->opts.max_payload)
      return PP_ETOOBIG;
    if (m->staged && m->stage_bytes + 8 + pp__pad8(len) > max_frame) {
      m->held = 1; /* starts the next chunk */
      m->held_arg = arg;
      m->held_len = len;
      break;
    }
    if (m->gen && len) {
      if (len == 8) /* the common tiny argument, copied inline */
        memcpy(m->stage_copy + m->stage_bytes, arg, 8);
      else
        memcpy(m->stage_copy + m->stage_bytes, arg, len);
      arg = m->stage_copy + m->stage_bytes;
    }
    m->stage_args[m->staged] = arg;
    m->stage_lens[m->staged++] = len;
    m->stage_bytes += 8 + pp__pad8(len);
  }
  return 0;
}

/* With mu held: turns `n` staged arguments from `off` on into a task in a
 * fresh slot, its word not yet QUEUED, into *index. With `wait` it may
 * wait for a slot. Returns 0, PP_ETIMEDOUT or the pool's failure. */
static int make_task_locked(pp_map *m, size_t off, size_t n, int wait,
                            uint32_t *index) {
  pp_pool *p = m->pool;
  int rc;

  if ((rc = pp__slot_alloc_locked(p, wait, m->deadline_ns, index)) != 0)
    return rc;
  pp__slot_own_locked(p, *index, &pp__map_ops, m, m->submitted,
                      m->task_timeout_ns);
  m->tasks++; /* until the slot is gone */
  rc = pp__slot_frame_locked(p, *index, m->fn, m->stage_args + off,
                             m->stage_lens + off, n);
  if (rc != 0) {
    pp__slot_free_locked(p, *index);
    return rc;
  }
  m->submitted += n;
  return 0;
}

/* Forgets the first `n` staged arguments, now tasks. */
static void unstage(pp_map *m, size_t n) {
  m->staged -= n;
  memmove(m->stage_args, m->stage_args + n, m->staged * sizeof *m->stage_args);
  memmove(m->stage_lens, m->stage_lens + n, m->staged * sizeof *m->stage_lens);
  if (m->staged == 0)
    m->stage_bytes = 0; /* else kept: the copies stay where they are */
}

/* With mu held: turns the stage into tasks of a chunk each, queued
 * together (the engine takes a batch under one lock of its ring). With
 * `wait` the first may wait for a slot or ring room (only when nothing of
 * this map is in flight, so a full ring never keeps finished results from
 * being handed back). Returns 0 when all are queued, PP_ETIMEDOUT when
 * the rest must wait, or the pool's failure. */
static int submit_stage_locked(pp_map *m, int wait) {
  pp_pool *p = m->pool;
  struct pp__deferred *none = NULL; /* map items defer nothing */
  uint32_t batch[QUEUE_BATCH], index;
  size_t k = 0, off = 0;
  int rc = 0;

  PP__ASSERT_LOCKED(p);
  if (p->shutdown)
    return PP_ESHUTDOWN;
  while (off < m->staged) {
    size_t n = m->staged - off < m->chunksize ? m->staged - off : m->chunksize;
    if ((rc = make_task_locked(m, off, n, wait, &index)) != 0)
      break;
    off += n;
    if (wait) { /* alone, as it may wait for room */
      pp__slot_queue_locked(p, index, 1, m->deadline_ns, &none);
      wait = 0;
      continue;
    }
    batch[k++] = index;
    if (k == QUEUE_BATCH) {
      pp__slots_queue_batch_locked(p, batch, k, &none);
      k = 0;
    }
  }
  if (k)
    pp__slots_queue_batch_locked(p, batch, k, &none);
  unstage(m, off);
  if (m->task_timeout_ns && p->engine->timers_changed_locked)
    p->engine->timers_changed_locked(p);
  assert(none == NULL);
  return rc;
}

/* Whether the window has `need` arguments' room, unless nothing is in
 * flight (then any room must do, to make progress). */
static int window_has_room(const pp_map *m, size_t need) {
  size_t in_flight = m->submitted - m->yielded;
  return in_flight + need <= m->window ||
         (m->tasks == 0 && in_flight < m->window);
}

/* How many arguments to stage: as many whole chunks as the room the
 * window is topped up at holds (its room, if less), so that a refill of
 * tiny tasks becomes one batch. */
static size_t stage_want(const pp_map *m) {
  size_t room = m->window - (m->submitted - m->yielded);
  size_t want = pp__map_refill_need(m) < room ? pp__map_refill_need(m) : room;

  if (want > m->stage_cap)
    want = m->stage_cap;
  if (want >= m->chunksize)
    want -= want % m->chunksize;
  return want;
}

/* Submits as much as the window allows. Called and returns with mu held;
 * drops it to run the generator. */
static int refill_locked(pp_map *m) {
  int rc;

  PP__ASSERT_LOCKED(m->pool);
  m->chunksize = m->chunk_next; /* the consumer's copy changes only here */
  if (m->staged == 0 && !window_has_room(m, pp__map_refill_need(m)))
    return 0;
  while (!m->source_err) {
    int idle = m->tasks == 0;
    if (m->staged == 0) {
      if (m->source_done || !window_has_room(m, m->chunksize))
        return 0;
      size_t want = stage_want(m);
      pp__pool_unlock(m->pool);
      rc = fill_stage(m, want);
      pp__pool_lock(m->pool);
      if (rc != 0) {
        m->source_err = rc;
        m->source_done = 1;
      }
      if (m->staged == 0)
        return 0;
    }
    rc = submit_stage_locked(m, idle);
    if (rc == PP_ETIMEDOUT && !idle)
      return 0;
    if (rc != 0)
      return rc;
  }
  return 0;
}

void pp__map_refill_or_stop_locked(pp_map *m) {
  int rc = refill_locked(m);
  if (rc != 0 && !m->source_err) {
    m->source_err = rc;
    m->source_done = 1;
  }
}
