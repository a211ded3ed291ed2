/*
 * The ordered, lazy map. A map keeps at most `window` arguments in flight:
 * it pulls arguments (from the array or the generator) only when an earlier
 * result has been handed back, so memory stays constant however many
 * arguments there are. Results land in a circular array of `window` items
 * indexed by argument number; pp_map_next() hands them back in order.
 *
 * Arguments are gathered into a stage (copied, for a generator, since its
 * bytes live only until its next call) outside pool->mu, so that a
 * generator never runs under the pool's lock; the stage then becomes one
 * task (a chunk of up to `chunksize` arguments) under the lock.
 */
#include "future.h"

#include <stdlib.h>
#include <string.h>

struct map_item {
  struct pp__outcome out;
  int done;
};

struct pp_map {
  pp_pool *pool;
  pp_task_fn fn;
  const void *const *args; /* array source, or NULL */
  const size_t *lens;
  size_t n;
  pp_gen_fn gen; /* generator source, or NULL */
  void *gen_state;
  size_t chunksize, window;
  uint64_t deadline_ns;
  uint64_t task_timeout_ns; /* 0: none */
  size_t submitted;         /* arguments turned into tasks */
  size_t yielded;           /* results handed back */
  size_t tasks;             /* tasks in flight */
  int source_done;
  int source_err;
  struct map_item *items; /* [window] */
  /* The stage: the next task's arguments. */
  const void **stage_args;
  size_t *stage_lens;
  size_t staged, stage_bytes;
  unsigned char *stage_copy; /* generator bytes, max_frame long */
  const void *held_arg;      /* a generator argument for the next stage */
  size_t held_len;
  int held;
  /* What the last pp_map_next() returned, owned by the map. */
  struct map_item current;
  size_t current_index;
};

static void item_clear(struct map_item *it) {
  pp__outcome_clear(&it->out);
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

/* Fills the stage, outside the lock, up to chunksize arguments, what one
 * frame holds, and the window. Returns 0 or a PP_E* that ends the map. */
static int fill_stage(pp_map *m) {
  size_t max_frame = m->pool->st.max_frame - sizeof(struct pp__task_hdr);
  const void *arg;
  size_t len;
  int rc;

  while (!m->source_done && m->staged < m->chunksize &&
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

/* With mu held: turns the stage into a task. With `wait` it may wait for a
 * slot or ring room (only when nothing of this map is in flight, so a full
 * ring never keeps finished results from being handed back). Returns 0 when
 * queued, PP_ETIMEDOUT when it must wait, or the pool's failure. */
static int submit_stage_locked(pp_map *m, int wait) {
  pp_pool *p = m->pool;
  struct pp__deferred *none = NULL; /* map items defer nothing */
  uint32_t index;
  int rc;

  PP__ASSERT_LOCKED(p);
  if (p->shutdown)
    return PP_ESHUTDOWN;
  if ((rc = pp__slot_alloc_locked(p, wait, m->deadline_ns, &index)) != 0)
    return rc;
  pp__slot_own_locked(p, index, &map_ops, m, m->submitted, m->task_timeout_ns);
  m->tasks++; /* until the slot is gone */
  rc = pp__slot_frame_locked(p, index, m->fn, m->stage_args, m->stage_lens,
                             m->staged);
  if (rc != 0) {
    pp__slot_free_locked(p, index);
    return rc;
  }
  m->submitted += m->staged;
  m->staged = m->stage_bytes = 0;
  pp__slot_queue_locked(p, index, wait, m->deadline_ns, &none);
  if (m->task_timeout_ns && p->engine->timers_changed_locked)
    p->engine->timers_changed_locked(p);
  assert(none == NULL);
  return 0;
}

/* Submits as much as the window allows. Called and returns with mu held;
 * drops it to run the generator. */
static int refill_locked(pp_map *m) {
  int rc;

  PP__ASSERT_LOCKED(m->pool);
  while (!m->source_err) {
    int idle = m->tasks == 0;
    if (m->staged == 0) {
      pp__pool_unlock(m->pool);
      rc = fill_stage(m);
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
    if (m->submitted - m->yielded >= m->window)
      return 0;
  }
  return 0;
}

/* The slot owner callback: argument `index` ended as *r. Answers for
 * items already handed back, or already had (a retried chunk answering
 * again), are ignored. */
static void resolve_locked(void *owner, size_t index,
                           const struct pp__result *r,
                           struct pp__deferred **later) {
  pp_map *m = owner;
  struct map_item *it;

  (void)later;
  if (index < m->yielded || index >= m->submitted)
    return;
  it = &m->items[index % m->window];
  if (it->done)
    return;
  pp__outcome_set(&it->out, r);
  it->done = 1;
}

/* The slot owner callback: one of the map's tasks is gone. */
static void gone_locked(void *owner) {
  pp_map *m = owner;
  m->tasks--;
}

static const struct pp__owner_ops map_ops = {resolve_locked, gone_locked};

/* Shared constructor of both sources. */
static int map_new(pp_pool *p, pp_task_fn fn, const pp_map_options *opts,
                   pp_map **out) {
  pp_map *m;
  size_t chunk;

  if (out)
    *out = NULL;
  if (!p || !fn || !out ||
      (opts && (opts->timeout != opts->timeout ||
                opts->task_timeout != opts->task_timeout)))
    return PP_EINVAL;
  if (opts && opts->task_timeout > 0 && !pp__engine_can_kill(p->engine))
    return PP_ENOTSUP;
  if (!(m = calloc(1, sizeof *m)))
    return PP_ENOMEM;
  m->pool = p;
  m->fn = fn;
  chunk = opts && opts->chunksize > 1 ? opts->chunksize : 1;
  m->chunksize = chunk;
  m->window = opts && opts->window ? opts->window
                                   : (size_t)4 * (size_t)p->nworkers * 64;
  if (m->window < 2 * chunk)
    m->window = 2 * chunk;
  if (m->window > p->st.n * chunk)
    m->window = p->st.n * chunk;
  m->deadline_ns =
      pp__deadline_ns(opts && opts->timeout > 0 ? opts->timeout : PP_FOREVER);
  m->task_timeout_ns = opts && opts->task_timeout > 0
                           ? pp__seconds_to_ns(opts->task_timeout)
                           : 0;
  m->items = calloc(m->window, sizeof *m->items);
  m->stage_args = malloc(chunk * sizeof *m->stage_args);
  m->stage_lens = malloc(chunk * sizeof *m->stage_lens);
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

int pp_map_next(pp_map *m, const void **data, size_t *len) {
  struct map_item *it = NULL;
  int rc = 0;

  if (data)
    *data = NULL;
  if (len)
    *len = 0;
  if (!m)
    return PP_EINVAL;
  item_clear(&m->current);
  pp__pool_lock(m->pool);
  for (;;) {
    if (m->yielded == m->submitted) {
      refill_or_stop_locked(m);
      if (m->yielded == m->submitted) {
        rc = m->source_err ? m->source_err : PP_EOF;
        break;
      }
    }
    it = &m->items[m->yielded % m->window];
    if (it->done)
      break;
    if (m->deadline_ns != PP__FOREVER && pp__now_ns() >= m->deadline_ns) {
      rc = PP_ETIMEDOUT;
      break;
    }
    pp__pool_wait(m->pool, &m->pool->changed, m->deadline_ns);
  }
  if (rc == 0) {
    m->current = *it;
    memset(it, 0, sizeof *it);
    m->current_index = m->yielded++;
    rc = m->current.out.status;
    /* The window is topped up before this result is handed back, as
     * Python's map (with buffersize) submits the next argument as it
     * yields. */
    refill_or_stop_locked(m);
  }
  pp__pool_unlock(m->pool);
  if (rc == 0) {
    if (data)
      *data = m->current.out.data;
    if (len)
      *len = m->current.out.len;
  }
  return rc;
}

size_t pp_map_index(const pp_map *m) {
  return m ? m->current_index : 0;
}

const char *pp_map_message(const pp_map *m) {
  return m && m->current.out.message ? m->current.out.message : "";
}

int pp_map_task_code(const pp_map *m) {
  return m ? m->current.out.code : 0;
}

void pp_map_destroy(pp_map *m) {
  struct pp__deferred *none = NULL; /* map items defer nothing */
  pp_pool *p;

  if (!m)
    return;
  p = m->pool;
  pp__pool_lock(p);
  for (uint32_t i = 0; i < p->st.n && m->tasks; i++)
    if (p->st.slots[i].used && p->st.slots[i].owner == m)
      pp__slot_cancel_locked(p, pp__make_id(p->st.slots[i].gen, i), &none);
  while (m->tasks > 0)
    pp__pool_wait(p, &p->changed, PP__FOREVER);
  pp__pool_unlock(p);
  assert(none == NULL);
  if (m->items)
    for (size_t i = 0; i < m->window; i++)
      item_clear(&m->items[i]);
  item_clear(&m->current);
  free(m->items);
  free(m->stage_args);
  free(m->stage_lens);
  free(m->stage_copy);
  free(m);
}
