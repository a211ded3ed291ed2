/*
 * The ordered, lazy map. A map keeps at most `window` arguments in flight:
 * it pulls arguments (from the array or the generator) only when earlier
 * results have been handed back, so memory stays constant however many
 * arguments there are. Results land in a circular array of at least
 * window + 1 items (a power of two, so that finding one costs no
 * division) indexed by argument number (the extra one is the result being
 * handed back); pp_map_next() hands them back in order.
 *
 * Arguments are gathered into a stage (copied, for a generator, since its
 * bytes live only until its next call) outside pool->mu, so that a
 * generator never runs under the pool's lock; the stage then becomes tasks
 * (chunks of up to `chunksize` arguments) under the lock, queued as one
 * batch. The window is topped up only when a whole chunk's room has opened
 * in it, so chunks stay whole, and, with the window the map chose, only
 * when an eighth of it has, so that tiny tasks travel in batches.
 *
 * DESIGN (speed)
 * A chunk's results arrive as one packed run (slots.h), copied once into a
 * map_chunk that its items point into: no allocation per item. Under the
 * lock, pp_map_next() notes how many consecutive results are ready; it then
 * hands those back without taking the lock (they are done, so no resolver
 * writes them), and takes it again only to release what was handed back,
 * submit the next chunk and wait. With no chunksize set (0), the map
 * chooses one from the time tasks take (as joblib's batch_size='auto'):
 * tiny tasks travel in chunks of up to AUTO_MAX, tasks of a millisecond or
 * more one per task.
 */
#include "future.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AUTO_MAX 1024           /* largest automatic chunk */
#define AUTO_TARGET_NS 200000.0 /* time an automatic chunk aims to take */
#define QUEUE_BATCH 64          /* tasks queued under one lock, at most */
/* How long a map takes results as they come before it sleeps. */
#define TAKE_SPIN_NS 20000u

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

#define INLINE_RUN 32 /* a run of one item this small is kept in the item */

/* One argument's result. `done` is written under pool->mu; a done item is
 * never written again until it is released. */
struct map_item {
  struct map_chunk *chunk;       /* its run, or NULL */
  const struct pp__item_hdr *ih; /* its header in chunk->bytes or inline */
  struct pp__outcome *single;    /* or an outcome of its own (failures) */
  int done;
  _Alignas(8) unsigned char inline_run[INLINE_RUN]; /* a small lone run */
};

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

static struct map_item *item_at(pp_map *m, size_t index) {
  return &m->items[index & m->items_mask];
}

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
  if (it->chunk && --it->chunk->refs == 0)
    chunk_free(m, it->chunk);
  if (it->single) {
    pp__outcome_clear(it->single);
    free(it->single);
  }
  it->chunk = NULL;
  it->ih = NULL;
  it->single = NULL;
  it->done = 0;
}

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

static const struct pp__owner_ops map_ops;

/* With mu held: turns `n` staged arguments from `off` on into a task in a
 * fresh slot, its word not yet QUEUED, into *index. With `wait` it may
 * wait for a slot. Returns 0, PP_ETIMEDOUT or the pool's failure. */
static int make_task_locked(pp_map *m, size_t off, size_t n, int wait,
                            uint32_t *index) {
  pp_pool *p = m->pool;
  int rc;

  if ((rc = pp__slot_alloc_locked(p, wait, m->deadline_ns, index)) != 0)
    return rc;
  pp__slot_own_locked(p, *index, &map_ops, m, m->submitted, m->task_timeout_ns);
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

/* How much room opens before the window is topped up: a whole chunk, and
 * with the window the map chose, an eighth of it, so that tiny tasks are
 * submitted in batches under one lock rather than one at a time. */
static size_t refill_need(const pp_map *m) {
  return m->chunksize > m->refill_step ? m->chunksize : m->refill_step;
}

/* How many arguments to stage: as many whole chunks as the room the
 * window is topped up at holds (its room, if less), so that a refill of
 * tiny tasks becomes one batch. */
static size_t stage_want(const pp_map *m) {
  size_t room = m->window - (m->submitted - m->yielded);
  size_t want = refill_need(m) < room ? refill_need(m) : room;

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
  if (m->staged == 0 && !window_has_room(m, refill_need(m)))
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

/* The slot owner callback: argument `index` ended as *r (the slot
 * table's failures). Answers for results already released, or already
 * had (a retried chunk answering again), are ignored. */
static void resolve_locked(void *owner, size_t index,
                           const struct pp__result *r,
                           struct pp__deferred **later) {
  pp_map *m = owner;
  struct map_item *it;

  (void)later;
  if (index < m->yielded || index >= m->submitted)
    return;
  it = item_at(m, index);
  if (it->done)
    return;
  if (!(it->single = calloc(1, sizeof *it->single)))
    return; /* stays pending: the map then times out, or waits */
  pp__outcome_set(it->single, r);
  it->done = 1;
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
 * most INLINE_RUN), copied into the item itself. */
static void resolve_inline_locked(pp_map *m, size_t index, const void *run,
                                  size_t len) {
  struct map_item *it;

  if (index < m->yielded || index >= m->submitted)
    return;
  it = item_at(m, index);
  if (it->done)
    return;
  memcpy(it->inline_run, run, len);
  it->ih = (const struct pp__item_hdr *)it->inline_run;
  it->done = 1;
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
    p += pp__item_size(ih);
    if (index < m->yielded || index >= m->submitted)
      continue;
    struct map_item *it = item_at(m, index);
    if (it->done)
      continue;
    it->chunk = c;
    it->ih = ih;
    it->done = 1;
    c->refs++;
  }
  if (c->refs == 0)
    chunk_free(m, c);
}

/* The slot owner callback: one of the map's tasks is gone. */
static void gone_locked(void *owner) {
  pp_map *m = owner;
  m->tasks--;
}

static const struct pp__owner_ops map_ops = {resolve_locked, resolve_run_locked,
                                             gone_locked};

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
  m->items = calloc(m->items_mask + 1, sizeof *m->items);
  m->stage_cap = refill_need(m) > m->max_chunk ? refill_need(m) : m->max_chunk;
  m->stage_args = malloc(m->stage_cap * sizeof *m->stage_args);
  m->stage_lens = malloc(m->stage_cap * sizeof *m->stage_lens);
  m->stage_copy = malloc(p->st.max_frame);
  if (!m->items || !m->stage_args || !m->stage_lens || !m->stage_copy) {
    pp_map_destroy(m);
    return PP_ENOMEM;
  }
  *out = m;
  return 0;
}

/* Submits what the window allows; a failure to submit ends the map (kept
 * for pp_map_next() to report once the results in flight are out). */
static void refill_or_stop_locked(pp_map *m) {
  int rc = refill_locked(m);
  if (rc != 0 && !m->source_err) {
    m->source_err = rc;
    m->source_done = 1;
  }
}

/* Submits the first window at once, as Python's map submits at the call,
 * so work starts before the first pp_map_next(). A failure to submit is
 * kept for pp_map_next() to report. */
static void start_map(pp_map *m) {
  pp__pool_lock(m->pool);
  refill_or_stop_locked(m);
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
    item_release(m, item_at(m, i));
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

/* Takes results as they come, for up to TAKE_SPIN_NS; returns whether it
 * took any. Between looks it yields the core rather than spinning on it:
 * with as many workers as cores, a spinning consumer takes a core from
 * them (chunksize 1 ran a third slower), a yielding one only what nobody
 * else wants. Called without mu. */
static int take_results_for_a_while(pp_pool *p) {
  uint64_t until = pp__now_ns() + TAKE_SPIN_NS;

  do {
    if (p->engine->take_results(p))
      return 1;
    sched_yield();
  } while (pp__now_ns() < until);
  return 0;
}

/* With mu held: waits until result `cursor` is done, or the map ends or
 * times out; then notes how many consecutive results are ready. Returns 0
 * or PP_EOF, the source's error, PP_ETIMEDOUT. */
static int wait_ready_locked(pp_map *m) {
  int took_nothing = 0;

  for (;;) {
    if (m->cursor == m->submitted) {
      refill_or_stop_locked(m);
      if (m->cursor == m->submitted)
        return m->source_err ? m->source_err : PP_EOF;
    }
    if (item_at(m, m->cursor)->done)
      break;
    if (m->deadline_ns != PP__FOREVER && pp__now_ns() >= m->deadline_ns)
      return PP_ETIMEDOUT;
    if (!m->refilled) {
      /* Not ready: keep the workers fed with what the window allows. */
      m->refilled = 1;
      refill_or_stop_locked(m);
      continue;
    }
    if (!took_nothing && m->pool->engine->take_results) {
      /* Results are taken here as they come for a moment, sparing the
       * collector's wake-up and this thread's; then everything is looked
       * at again, since results may have landed meanwhile. */
      pp__pool_unlock(m->pool);
      took_nothing = !take_results_for_a_while(m->pool);
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
    if (item_at(m, m->cursor)->done)
      continue;
    pp__pool_wait(m->pool, &m->pool->changed, m->deadline_ns);
  }
  m->refilled = 0;
  /* Scanned on from where the last scan stopped: amortised O(1). */
  if (m->ready_end <= m->cursor)
    m->ready_end = m->cursor + 1;
  while (m->ready_end < m->submitted && item_at(m, m->ready_end)->done)
    m->ready_end++;
  return 0;
}

/* Hands back result `cursor` (done): its status, bytes and message. */
static int hand_back(pp_map *m, const void **data, size_t *len) {
  struct map_item *it = item_at(m, m->cursor);
  int status;

  m->current_index = m->cursor++;
  m->current_msg[0] = '\0';
  if (it->single) {
    status = it->single->status;
    m->current_code = it->single->code;
    snprintf(m->current_msg, sizeof m->current_msg, "%s",
             it->single->message ? it->single->message : "");
    if (status == 0) {
      *data = it->single->data;
      *len = it->single->len;
    }
    return status;
  }
  status = it->ih->status;
  m->current_code = it->ih->code;
  if (status == 0) {
    *data = (const char *)(it->ih + 1);
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
  if (m->cursor < m->ready_end && m->cursor + 1 - m->yielded < refill_need(m)) {
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
      refill_or_stop_locked(m);
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
  for (uint32_t i = 0; i < p->st.n && m->tasks; i++)
    if (p->st.slots[i].used && p->st.slots[i].owner == m)
      pp__slot_cancel_locked(p, pp__make_id(p->st.slots[i].gen, i), &none);
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
  free(m->items);
  free(m->stage_args);
  free(m->stage_lens);
  free(m->stage_copy);
  free(m);
}
