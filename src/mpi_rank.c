/*
 * A supervisor rank of the MPI engine: every rank but 0 serves here,
 * inside its pp_pool_create(), until rank 0 shuts the pool down.
 *
 * DESIGN
 * The rank runs procpool's own process engine: a nested pool of
 * PP_ENGINE_PROCESSES with this rank's options (workers, initializer,
 * max_tasks_per_worker) and the master's max_payload. Each task of a
 * TASKS batch becomes a slot of the local pool, holding a copy of the
 * frame (checked, then copied whole, not item by item) with the function
 * the manifest index names here, owned by a `struct job`,
 * whose owner callbacks (run by the local collector, local mu held)
 * append each run of outcomes as the collector hands it over (slots.h:
 * one record for a chunk's items, copied once), and DONE when the slot is
 * freed, to an outbox. Timeouts and kills are the local pool's: a task is
 * queued with its timeout, and a kill is pp__slot_cancel_running_locked() on
 * the local slot, so a crash, a timeout or a cancel fails exactly that task, as
 * on one machine. The local pool does not retry: the master does, on any rank.
 *
 * One thread (the communication thread, the one that called
 * MPI_Init_thread) makes every MPI call: it probes for batches from rank
 * 0, feeds them to the local pool, notices tasks that started (their
 * local word turned RUNNING), and sends the outbox as RESULTS batches of
 * at most its message size to rank 0 (pp__mpi_message_sizes()), up to
 * PP__MPI_SENDS of them on their way at once (mpi_wire.h). With nothing to do
 * it naps on the outbox's condition, which the callbacks signal, backing off as
 * the master's loop does.
 *
 * LOCKING
 * local->mu, then sup->mu (the outbox, the job list), never the other way
 * round. The job list changes only with both held, so either lock alone
 * is enough to walk it.
 */
#include "mpi_wire.h"

#include <stdio.h>
#include <unistd.h>

/* Naps stay short this long after a batch: long enough to span a
 * program's pause between two maps (bench_mpi's setup of its next 2M
 * arguments takes ~20 ms), whose first batch then waits a short nap, not
 * up to PP__MPI_NAP_IDLE_NS (its first round trip took ~4 ms, not
 * ~0.5 ms, after a 10 ms linger). */
#define LINGER_NS 50000000u

struct sup;

/* One task of the master in the local pool. */
struct job {
  uint64_t id; /* the master's */
  uint32_t local_index, local_gen;
  uint32_t items;
  uint8_t attempt;
  uint8_t started;
  struct sup *sup;
  struct job *prev, *next;
  unsigned char answered[]; /* a bit per item */
};

struct sup {
  pp_pool *local;
  MPI_Comm comm;
  int rank;
  const struct pp__registry *reg;
  pthread_mutex_t mu;
  pthread_cond_t changed;    /* with mu: the outbox grew */
  struct pp__mpi_buf outbox; /* records not sent yet, from outbox_off on */
  size_t outbox_off;
  struct pp__mpi_sends sends; /* RESULTS batches on their way */
  size_t message_bytes;       /* a batch's most (pp__mpi_message_sizes) */
  struct job *jobs;
};

/* ------------------------------------------------------------ outbox */

/* With sup->mu held: after appending to the outbox (rc from the append):
 * out of memory aborts the job, as an answer lost would hang the master;
 * the first record of an empty outbox wakes the communication thread (the
 * others find it awake). */
static void appended_locked(struct sup *s, int rc, int was_empty) {
  if (rc != 0) {
    fprintf(stderr, "procpool: rank %d: out of memory for results\n", s->rank);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  if (was_empty)
    pthread_cond_signal(&s->changed);
}

/* With sup->mu held: appends a record and its run. */
static void put_locked(struct sup *s, const struct pp__mpi_result *rec,
                       const void *run) {
  int was_empty = s->outbox.len == s->outbox_off;
  appended_locked(s, pp__mpi_put_result(&s->outbox, rec, run), was_empty);
}

/* With sup->mu held: appends a record of one item. */
static void put_item_locked(struct sup *s, uint64_t id, uint32_t item,
                            uint8_t attempt, const struct pp__result *r) {
  int was_empty = s->outbox.len == s->outbox_off;
  appended_locked(s, pp__mpi_put_item(&s->outbox, id, item, attempt, r),
                  was_empty);
}

/* Marks items [first, first + count) of j answered; 0 if one already was
 * (a failed slot reports every item, answered or not: each goes once). */
static int answer(struct job *j, size_t first, uint32_t count) {
  if (first >= j->items || count > j->items - first)
    return 0;
  for (size_t i = first; i < first + count; i++)
    if (j->answered[i / 8] & (1u << i % 8))
      return 0;
  for (size_t i = first; i < first + count; i++)
    j->answered[i / 8] |= (unsigned char)(1u << i % 8);
  return 1;
}

/* Local mu held: an item of job `owner` ended (the local pool fails a
 * slot item by item). A crash says where: there are many machines. */
static void job_resolve_locked(void *owner, size_t item,
                               const struct pp__result *r,
                               struct pp__deferred **later) {
  struct job *j = owner;
  struct sup *s = j->sup;
  char crashed[PP__MESSAGE_MAX];
  struct pp__result where = *r;

  (void)later;
  if (!answer(j, item, 1))
    return;
  if (r->status == PP_ECRASHED) {
    snprintf(crashed, sizeof crashed, "rank %d: %s", s->rank,
             r->msg ? r->msg : "");
    where.msg = crashed;
  }
  pthread_mutex_lock(&s->mu);
  put_item_locked(s, j->id, (uint32_t)item, j->attempt, &where);
  pthread_mutex_unlock(&s->mu);
}

/* Local mu held: items of job `owner` ended as a run, which goes up as
 * it came, in one record. */
static void job_resolve_run_locked(void *owner, size_t first, uint32_t count,
                                   const void *run, size_t len, uint64_t run_ns,
                                   struct pp__deferred **later) {
  struct job *j = owner;
  struct sup *s = j->sup;
  struct pp__mpi_result rec = {
      j->id, (uint32_t)first, PP__MPI_ITEMS, j->attempt,
      0,     count,           (uint32_t)len};

  (void)run_ns;
  (void)later;
  if (!answer(j, first, count))
    return;
  pthread_mutex_lock(&s->mu);
  put_locked(s, &rec, run);
  pthread_mutex_unlock(&s->mu);
}

/* Local mu held: job `owner` left the local pool; its credit goes back. */
static void job_gone_locked(void *owner) {
  struct job *j = owner;
  struct sup *s = j->sup;
  struct pp__mpi_result rec = {
      .id = j->id, .kind = PP__MPI_DONE, .attempt = j->attempt};

  pthread_mutex_lock(&s->mu);
  put_locked(s, &rec, NULL);
  if (j->prev)
    j->prev->next = j->next;
  else
    s->jobs = j->next;
  if (j->next)
    j->next->prev = j->prev;
  pthread_mutex_unlock(&s->mu);
  free(j);
}

static const struct pp__owner_ops job_ops = {
    job_resolve_locked, job_resolve_run_locked, job_gone_locked,
    NULL}; /* results are copied into the outbox */

/* With sup->mu held: a STARTED record for each job whose local word has
 * turned RUNNING since the last look. */
static void note_started_locked(struct sup *s) {
  for (struct job *j = s->jobs; j; j = j->next) {
    uint64_t w;
    if (j->started)
      continue;
    w = pp__slot_word_of(&s->local->st, j->local_index);
    if (pp__word_gen(w) == j->local_gen &&
        pp__word_state(w) == PP__SLOT_RUNNING) {
      struct pp__mpi_result rec = {
          .id = j->id, .kind = PP__MPI_STARTED, .attempt = j->attempt};
      j->started = 1;
      put_locked(s, &rec, NULL);
    }
  }
}

/* With sup->mu held: the bytes of the outbox's leading records that make
 * one message: up to message_bytes, or one record larger. */
static size_t next_message_locked(const struct sup *s) {
  size_t off = s->outbox_off, end = s->outbox.len;

  while (off < end) {
    struct pp__mpi_result rec;
    size_t size;
    memcpy(&rec, s->outbox.data + off, sizeof rec);
    size = sizeof rec + pp__pad8(rec.len);
    if (off > s->outbox_off && off + size - s->outbox_off > s->message_bytes)
      break;
    off += size;
  }
  return off - s->outbox_off;
}

/* With sup->mu held: moves the next message of the outbox into b, the
 * whole outbox by swapping buffers, else by copying. Returns 0, or -1 out
 * of memory (the records stay). */
static int take_message_locked(struct sup *s, struct pp__mpi_buf *b) {
  size_t n = next_message_locked(s);

  if (s->outbox_off == 0 && n == s->outbox.len) {
    struct pp__mpi_buf t = *b;
    *b = s->outbox;
    s->outbox = t;
    s->outbox.len = 0;
    return 0;
  }
  if (!pp__mpi_buf_room(b, n))
    return -1;
  memcpy(b->data, s->outbox.data + s->outbox_off, n);
  b->len = n;
  s->outbox_off += n;
  if (s->outbox_off == s->outbox.len)
    s->outbox.len = s->outbox_off = 0;
  return 0;
}

/* Sends the outbox, a message at a time while sends are free. Returns
 * whether anything moved. */
static int flush_outbox(struct sup *s) {
  int moved = pp__mpi_sends_test(&s->sends) > 0;
  struct pp__mpi_buf *b;

  pthread_mutex_lock(&s->mu);
  note_started_locked(s);
  while (s->outbox.len > s->outbox_off &&
         (b = pp__mpi_sends_free(&s->sends)) != NULL &&
         take_message_locked(s, b) == 0) {
    pthread_mutex_unlock(&s->mu);
    pp__mpi_sends_start(&s->sends, b, 0, PP__MPI_RESULTS, s->comm);
    moved = 1;
    pthread_mutex_lock(&s->mu);
  }
  pthread_mutex_unlock(&s->mu);
  return moved;
}

/* ------------------------------------------------------------ tasks */

/* Answers every item of a task that could not be queued here, and gives
 * its credit back. */
static void refuse_task(struct sup *s, uint64_t id, uint32_t attempt,
                        uint32_t items, int status, const char *msg) {
  struct pp__result r = {status, 0, NULL, 0, msg, 0};
  struct pp__mpi_result done = {.id = id, .kind = PP__MPI_DONE};

  pthread_mutex_lock(&s->mu);
  for (uint32_t i = 0; i < items; i++)
    put_item_locked(s, id, i, (uint8_t)attempt, &r);
  put_locked(s, &done, NULL);
  pthread_mutex_unlock(&s->mu);
}

/* Reads the header of a task frame into *hdr and checks that its items
 * fill the frame, whole (the workers trust a frame's lengths). Returns the
 * count, or -1 when the frame is malformed. */
static int64_t check_items(const unsigned char *frame, size_t frame_len,
                           struct pp__task_hdr *hdr) {
  size_t off = 8 + sizeof *hdr;

  memcpy(hdr, frame + 8, sizeof *hdr);
  for (uint32_t i = 0; i < hdr->count; i++) {
    uint32_t len;
    if (off + 8 > frame_len)
      return -1;
    memcpy(&len, frame + off, 4);
    if (len > frame_len - off - 8)
      return -1;
    off += 8 + pp__pad8(len);
  }
  return hdr->count;
}

/* Local mu held: makes job j the owner of a fresh local slot holding the
 * task, and queues it. Returns 0 or why not. */
static int queue_local_locked(struct sup *s, struct job *j, pp_task_fn fn,
                              uint64_t timeout_ns, const unsigned char *frame,
                              size_t frame_len, struct pp__deferred **later) {
  pp_pool *lp = s->local;
  uint32_t index;
  int rc;

  if ((rc = pp__slot_alloc_locked(lp, 1, PP__FOREVER, &index)) != 0)
    return rc;
  pp__slot_own_locked(lp, index, &job_ops, j, 0, timeout_ns);
  rc = pp__slot_frame_copy_locked(lp, index, fn, frame, frame_len);
  if (rc != 0) {
    lp->st.slots[index].ops = NULL; /* no DONE: the caller answers */
    pp__slot_free_locked(lp, index);
    return rc;
  }
  j->local_index = index;
  j->local_gen = lp->st.slots[index].gen;
  pthread_mutex_lock(&s->mu);
  j->next = s->jobs;
  if (s->jobs)
    s->jobs->prev = j;
  s->jobs = j;
  pthread_mutex_unlock(&s->mu);
  pp__slot_queue_locked(lp, index, 1, PP__FOREVER, later);
  if (timeout_ns && lp->engine->timers_changed_locked)
    lp->engine->timers_changed_locked(lp);
  return 0;
}

/* Hands one task of a batch to the local pool. */
static void take_task(struct sup *s, const struct pp__mpi_task *t,
                      const unsigned char *frame, size_t frame_len) {
  struct pp__deferred *later = NULL;
  struct pp__task_hdr hdr;
  int64_t items = check_items(frame, frame_len, &hdr);
  struct job *j;
  int rc;

  if (items < 0 || t->fn_index >= s->reg->n) {
    refuse_task(s, hdr.id, t->attempt, items < 0 ? 1 : (uint32_t)items,
                PP_EINVAL, "malformed task from rank 0");
    return;
  }
  if (!(j = calloc(1, sizeof *j + ((size_t)items + 7) / 8))) {
    refuse_task(s, hdr.id, t->attempt, (uint32_t)items, PP_ENOMEM,
                "out of memory");
    return;
  }
  *j = (struct job){.id = hdr.id,
                    .items = (uint32_t)items,
                    .attempt = (uint8_t)t->attempt,
                    .sup = s};
  pp__pool_lock(s->local);
  rc = queue_local_locked(s, j, s->reg->by_name[t->fn_index]->fn, t->timeout_ns,
                          frame, frame_len, &later);
  pp__pool_unlock(s->local);
  pp__deferred_run(later);
  if (rc != 0) {
    free(j);
    refuse_task(s, hdr.id, t->attempt, (uint32_t)items, rc, pp_strerror(rc));
  }
}

/* Stops the tasks `stops` names that are still here: kills the worker
 * of one running (a task that finished keeps its result), or cancels one
 * not started (one started runs on: the master drops its answer). */
static void stop_tasks(struct sup *s, const unsigned char *stops, uint32_t n) {
  struct pp__deferred *later = NULL;

  pp__pool_lock(s->local); /* the job list holds still */
  for (uint32_t i = 0; i < n; i++) {
    struct pp__mpi_stop st;
    memcpy(&st, stops + sizeof st * (size_t)i, sizeof st);
    for (struct job *j = s->jobs; j; j = j->next) {
      uint64_t local_id = pp__make_id(j->local_gen, j->local_index);
      if (j->id != st.id)
        continue;
      if (st.how == PP__MPI_KILL)
        pp__slot_cancel_running_locked(s->local, local_id);
      else
        pp__slot_cancel_locked(s->local, local_id, &later);
      break; /* j may be gone */
    }
  }
  pp__pool_unlock(s->local);
  pp__deferred_run(later);
}

/* Applies a TASKS batch: its stops, then its tasks. Lengths are checked
 * against the message; a malformed batch aborts the job. */
static void take_batch(struct sup *s, const unsigned char *b, size_t n) {
  struct pp__mpi_batch hdr;
  size_t off = sizeof hdr;

  if (n < sizeof hdr)
    goto out_malformed;
  memcpy(&hdr, b, sizeof hdr);
  if ((n - off) / sizeof(struct pp__mpi_stop) < hdr.nstop)
    goto out_malformed;
  stop_tasks(s, b + off, hdr.nstop);
  off += sizeof(struct pp__mpi_stop) * (size_t)hdr.nstop;
  for (uint32_t i = 0; i < hdr.ntasks; i++) {
    struct pp__mpi_task t;
    uint64_t body;
    size_t frame_len;
    if (n - off < sizeof t + 8 + sizeof(struct pp__task_hdr))
      goto out_malformed;
    memcpy(&t, b + off, sizeof t);
    memcpy(&body, b + off + sizeof t, 8);
    if (body > n - off - sizeof t - 8)
      goto out_malformed;
    frame_len = 8 + pp__pad8(body);
    if (frame_len > n - off - sizeof t)
      goto out_malformed;
    take_task(s, &t, b + off + sizeof t, frame_len);
    off += sizeof t + frame_len;
  }
  return;

out_malformed:
  fprintf(stderr, "procpool: rank %d: malformed batch from rank 0\n", s->rank);
  MPI_Abort(MPI_COMM_WORLD, 1);
}

/* ------------------------------------------------------------ serving */

/* Serves batches until SHUTDOWN, napping (backing off) while nothing
 * moves: a result wakes it at once, a batch from rank 0 within a nap,
 * which stays short while this rank holds tasks or got some within
 * LINGER_NS (tiny tasks leave it empty between batches: the next one is
 * on its way). */
static void serve_batches(struct sup *s) {
  struct pp__mpi_buf in = {0};
  uint64_t nap = PP__MPI_NAP_MIN_NS, last_batch_ns = 0;

  for (;;) {
    int moved = 0, flag;
    MPI_Status st;
    for (int i = 0; i < 16; i++) {
      MPI_Iprobe(0, MPI_ANY_TAG, s->comm, &flag, &st);
      if (!flag)
        break;
      pp__mpi_recv(s->comm, 0, st.MPI_TAG, &in);
      if (st.MPI_TAG == PP__MPI_SHUTDOWN)
        goto out_free;
      if (st.MPI_TAG == PP__MPI_TASKS) {
        take_batch(s, in.data, in.len);
        last_batch_ns = pp__now_ns();
      }
      moved = 1;
    }
    moved |= flush_outbox(s);
    if (moved) {
      nap = PP__MPI_NAP_MIN_NS;
      continue;
    }
    pthread_mutex_lock(&s->mu);
    if (s->outbox.len == s->outbox_off || s->sends.n == PP__MPI_SENDS) {
      struct timespec ts = pp__timespec(pp__now_ns() + nap);
      pthread_cond_timedwait(&s->changed, &s->mu, &ts);
    }
    nap = pp__mpi_next_nap(nap, s->jobs != NULL ||
                                    pp__now_ns() - last_batch_ns < LINGER_NS);
    pthread_mutex_unlock(&s->mu);
  }
out_free:
  free(in.data);
}

/* Checks the master's manifest and makes the local pool. Returns 0, or
 * the failure with msg saying why. */
static int start_local(struct sup *s, pp_pool *p, const struct pp__mpi_buf *b,
                       char *msg, size_t cap) {
  struct pp__mpi_manifest mf;
  pp_options o = p->opts;
  int rc;

  if (b->len < sizeof mf ||
      (memcpy(&mf, b->data, sizeof mf), mf.names_len != b->len - sizeof mf) ||
      (mf.names_len && b->data[b->len - 1] != '\0')) {
    snprintf(msg, cap, "malformed manifest from rank 0");
    return PP_EINVAL;
  }
  rc = pp__registry_compare(s->reg, (const char *)b->data + sizeof mf,
                            mf.names_len, msg, cap);
  if (rc != 0)
    return rc;
  o.engine = PP_ENGINE_PROCESSES;
  o.max_payload = mf.max_payload;
  o.ring_capacity = 0;
  o.retries = 0; /* the master retries, on any rank */
  o.start_in_background = 0;
  if ((rc = pp_pool_create(&s->local, &o)) != 0)
    snprintf(msg, cap, "its pool of processes failed: %s", pp_strerror(rc));
  return rc;
}

void pp__mpi_serve(pp_pool *p, MPI_Comm comm, const struct pp__registry *reg,
                   int rank, size_t message_bytes, int finalize) {
  struct sup s = {.comm = comm, .rank = rank, .reg = reg};
  struct pp__mpi_hello h = {0};
  struct pp__mpi_buf b = {0};

  pp__mpi_sends_init(&s.sends);
  s.message_bytes = message_bytes;
  pthread_mutex_init(&s.mu, NULL);
  pp__cond_init(&s.changed);
  pp__mpi_recv(comm, 0, PP__MPI_MANIFEST, &b);
  h.status = start_local(&s, p, &b, h.msg, sizeof h.msg);
  if (h.status == 0) {
    h.workers = pp_pool_workers(s.local);
    h.capacity = s.local->st.n;
  } else {
    /* Rank 0 reports it: its pp_pool_create() returns the failure. This
     * rank then exits 0, since a non-zero exit makes mpirun abort rank 0
     * before that can happen. */
    fprintf(stderr, "procpool: rank %d refuses the pool: %s\n", rank, h.msg);
  }
  MPI_Send(&h, sizeof h, MPI_BYTE, 0, PP__MPI_HELLO, comm);
  if (h.status == 0)
    serve_batches(&s);
  else
    pp__mpi_recv(comm, 0, PP__MPI_SHUTDOWN, &b);
  pp_pool_destroy(s.local);
  pp__mpi_sends_wait(&s.sends);
  pp__mpi_sends_free_all(&s.sends);
  MPI_Comm_free(&comm);
  if (finalize)
    MPI_Finalize();
  exit(0);
}
