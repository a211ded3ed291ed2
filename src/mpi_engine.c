/*
 * The MPI engine's table of operations (engine.h), on rank 0: the master,
 * whose futures, maps, windows and retries are the pool's own; the tasks
 * run on the other ranks, each a supervisor running a pool of processes
 * of its own (mpi_rank.c).
 *
 * DESIGN
 * One communication thread makes every MPI call of the process (so
 * MPI_THREAD_FUNNELED suffices: it also calls MPI_Init_thread and
 * MPI_Finalize). A queued slot's id goes on a FIFO; the thread hands
 * each queued slot to the rank with credit that holds fewest tasks for its
 * workers (a scan of the ranks per task), in batches of
 * at most the rank's message size (mpi_wire.h: under TCP's eager limit,
 * so that a batch leaves in one MPI_Isend, or larger to a rank on this
 * machine over shared memory), packing and sending round after round
 * until the FIFO is empty or no rank takes more, with up to
 * PP__MPI_SENDS batches on their way to a rank at once (MPI_Isend: the
 * ranks send back as freely, so no pair of blocking sends can deadlock). A slot
 * sent stays QUEUED (the FIFO, not the word, says it was sent) until the rank
 * answers STARTED: then its word goes QUEUED -> RUNNING (worker = the rank), so
 * that a future waiting in a rank's queue is pending, cancel answers PP_EBUSY
 * only once it runs, and cancel_running can act. Ranks answer in batches:
 * STARTED, runs of items' outcomes (handed to the slot table as they
 * came, or, for a crash with retries left, the slot is queued again for
 * any rank), and DONE, which gives the rank its credit back.
 *
 * A rank's window (its credits) adapts to the rate it finishes tasks at:
 * enough for WINDOW_S of work, from its workers (long tasks: none waits
 * in a rank's queue, so the next task goes to the first worker free, as
 * on one machine, and no last task is stuck behind a busy rank) up to its
 * slots (tiny tasks: many per message, many in flight). A slot cancelled
 * after it was sent is stopped on its rank too (the next batch says so;
 * one that started meanwhile runs on, its answer dropped as stale), and
 * killing one (cancel_running) is the rank's: the batch names it. The
 * rank's own pool enforces timeouts.
 *
 * With nothing to do the thread naps on a condition (a new task or a kill
 * wakes it at once), backing off while no message comes, to 100 us while
 * ranks hold tasks and 2 ms while none does (mpi_wire.h): MPI_Iprobe,
 * never a spinning blocking receive, so it does not starve workers on
 * shared cores, and an idle pool costs its ranks about 2% of a CPU.
 *
 * LOCKING
 * pool->mu guards the FIFO, the ranks' credits, windows and kill lists,
 * and the flags. The thread holds it to pack and to apply answers, never
 * across an MPI call.
 */
#include "mpi_wire.h"

#include <signal.h>
#include <stdio.h>

#define MAX_PAYLOAD ((size_t)1 << 30) /* a message's bytes fit an int */
#define WINDOW_S 0.01                 /* seconds of work a window holds */
#define RATE_NS 5000000u              /* a window is re-sized this often */
#define STALE_NS 1000000u /* a rank idle this long starts from its workers */

struct rank {
  int workers;
  uint32_t capacity;   /* most tasks it holds at once */
  uint32_t in_flight;  /* sent, not DONE */
  uint32_t window;     /* its credits: in_flight stays below */
  int batch_full;      /* pack_all_locked(): its batch takes no more */
  uint32_t done_since; /* DONE since since_ns */
  uint64_t since_ns;
  uint64_t idle_ns;           /* when in_flight fell to 0; 0 while busy */
  size_t message_bytes;       /* a batch's most (pp__mpi_message_sizes) */
  struct pp__mpi_buf out;     /* the batch being packed */
  struct pp__mpi_buf stops;   /* struct pp__mpi_stop for the next batch */
  struct pp__mpi_sends sends; /* batches on their way */
};

struct master {
  pthread_t thread;
  int running;
  pthread_cond_t wake; /* with mu: a task, a kill, or closing */
  uint64_t *fifo;      /* ids of queued slots (stale ones are skipped) */
  int32_t *sent_to;    /* [slots]: the rank a slot was last sent to */
  size_t fifo_cap, fifo_head, fifo_len;
  int closing, started, start_rc, finalize;
  int nranks;
  struct rank *ranks; /* [nranks]; 0 is this one, unused */
  int next_rank;      /* where ties start (pack_all_locked) */
  MPI_Comm comm;
  struct pp__registry reg;
  struct pp__mpi_buf in;
};

static atomic_int mpi_used; /* one MPI pool in a program's life */

static struct master *master_of(pp_pool *p) {
  return p->engine_state;
}

/* ------------------------------------------------------------ start */

/* Sends the manifest and records each rank's answer. Returns 0 or the
 * first failure (each printed by pp__mpi_handshake, naming its rank). */
static int start_ranks(pp_pool *p, struct master *m) {
  struct pp__mpi_hello *h = calloc((size_t)m->nranks, sizeof *h);
  int rc = h ? 0 : PP_ENOMEM, workers = 0;

  if (rc == 0)
    rc = pp__mpi_handshake(m->comm, m->nranks, &m->reg, p->opts.max_payload, h);
  for (int r = 1; r < m->nranks && rc == 0; r++) {
    struct rank *rk = &m->ranks[r];
    rk->workers = h[r].workers;
    rk->capacity = h[r].capacity;
    rk->window = (uint32_t)rk->workers < rk->capacity ? (uint32_t)rk->workers
                                                      : rk->capacity;
    workers += rk->workers;
  }
  free(h);
  if (rc == 0) {
    pp__pool_lock(p);
    p->nworkers = workers;
    p->live = workers;
    pp__pool_unlock(p);
  }
  return rc;
}

/* ------------------------------------------------------------ sending */

/* With mu held: starts rank r's next batch with its kill list, unless the
 * last one waits to be sent. */
static void begin_batch_locked(struct rank *rk) {
  struct pp__mpi_batch hdr = {
      (uint32_t)(rk->stops.len / sizeof(struct pp__mpi_stop)), 0};

  if (rk->out.len)
    return;
  if (!pp__mpi_buf_room(&rk->out, sizeof hdr + rk->stops.len))
    return; /* out of memory: the stops wait for the next batch */
  memcpy(rk->out.data, &hdr, sizeof hdr);
  if (rk->stops.len)
    memcpy(rk->out.data + sizeof hdr, rk->stops.data, rk->stops.len);
  rk->out.len = sizeof hdr + rk->stops.len;
  rk->stops.len = 0;
}

/* Tasks in rank r's batch being packed. */
static uint32_t batch_tasks(const struct rank *rk) {
  struct pp__mpi_batch hdr;

  memcpy(&hdr, rk->out.data, sizeof hdr);
  return hdr.ntasks;
}

/* With mu held: claims the next live queued slot for rank r and appends
 * it to the rank's batch. Returns 0 when the FIFO has none, or when it
 * would take the batch past the rank's message_bytes. A function that is not
 * registered fails its slot here (a map's tasks reach no other check). */
static int pack_one_locked(pp_pool *p, struct master *m, int r,
                           struct pp__deferred **later) {
  struct rank *rk = &m->ranks[r];

  while (m->fifo_len) {
    uint64_t id = m->fifo[m->fifo_head];
    struct pp__slot *s = pp__slot_by_id(&p->st, id);
    uint32_t index = pp__id_slot(id);
    struct pp__mpi_task t = {0};
    struct pp__task_hdr hdr;
    int64_t fn_index;
    unsigned char *at;

    if (s && s->frame &&
        pp__slot_word_of(&p->st, index) ==
            pp__slot_word(pp__id_gen(id), PP__SLOT_QUEUED, -1)) {
      if (batch_tasks(rk) &&
          rk->out.len + sizeof t + s->frame_len > rk->message_bytes)
        return 0; /* it starts the next batch */
      if (!(at = pp__mpi_buf_room(&rk->out, sizeof t + s->frame_len)))
        return 0; /* out of memory: it stays first, for the next batch */
    } else {
      s = NULL; /* cancelled, or done: a stale id */
    }
    m->fifo_head = (m->fifo_head + 1) % m->fifo_cap;
    m->fifo_len--;
    if (!s)
      continue;
    memcpy(&hdr, (unsigned char *)s->frame + 8, sizeof hdr);
    fn_index = pp__registry_index(&m->reg, (pp_task_fn)(uintptr_t)hdr.fn);
    if (fn_index < 0) {
      pp__slot_fail_locked(p, index, PP_EUNREGISTERED,
                           "task function is not registered with PP_TASK",
                           later);
      continue;
    }
    t = (struct pp__mpi_task){s->timeout_ns, s->attempts, (uint32_t)fn_index};
    memcpy(at, &t, sizeof t);
    memcpy(at + sizeof t, s->frame, s->frame_len);
    rk->out.len += sizeof t + s->frame_len;
    ((struct pp__mpi_batch *)rk->out.data)->ntasks++;
    rk->in_flight++;
    rk->idle_ns = 0;
    if (rk->since_ns == 0) /* the rate is measured from the first send */
      rk->since_ns = pp__now_ns();
    m->sent_to[index] = r;
    return 1;
  }
  return 0;
}

/* Whether rank r may take a task into its batch now. */
static int has_credit(const struct rank *rk) {
  return rk->in_flight < rk->window && rk->out.len < rk->message_bytes;
}

/* Whether a batch to rank r could go now. */
static int can_send(const struct rank *rk) {
  return rk->sends.n < PP__MPI_SENDS;
}

/* A rank idle for STALE_NS has a rate that says nothing of the tasks to
 * come (long ones after tiny ones would all go at once, one rank getting
 * more than its share): its window starts again from its workers. */
static void forget_rate(struct rank *rk, uint64_t now) {
  if (now - rk->idle_ns < STALE_NS)
    return;
  rk->window = (uint32_t)rk->workers < rk->capacity ? (uint32_t)rk->workers
                                                    : rk->capacity;
  rk->since_ns = 0;
  rk->done_since = 0;
  rk->idle_ns = 0;
}

/* Whether rank a holds fewer tasks than rank b for its workers. */
static int lighter(const struct rank *a, const struct rank *b) {
  return (uint64_t)a->in_flight * (uint64_t)b->workers <
         (uint64_t)b->in_flight * (uint64_t)a->workers;
}

/* With mu held: the rank the next task goes to, the one holding fewest
 * tasks for its workers among those that may take one (0: none). Ties go
 * round, from next_rank. */
static int lightest_rank_locked(const struct master *m, size_t share) {
  int best = 0;

  for (int i = 0; i < m->nranks - 1; i++) {
    int r = 1 + (m->next_rank + i) % (m->nranks - 1);
    const struct rank *rk = &m->ranks[r];
    if (rk->batch_full || !rk->out.len || !has_credit(rk) ||
        batch_tasks(rk) >= share)
      continue;
    if (!best || lighter(rk, &m->ranks[best]))
      best = r;
  }
  return best;
}

/* With mu held: packs every rank's batch, each task to the lightest rank.
 * Returns whether any batch has something to send. */
static int pack_all_locked(pp_pool *p, struct master *m,
                           struct pp__deferred **later) {
  /* Each task goes to the rank that holds fewest for its workers, so that
   * long tasks after tiny ones (whose windows are still wide) spread one
   * a worker: taken in turn, four tasks of which the first left alone
   * went 3 to 1, and the fourth waited behind a busy rank while the other
   * had a worker idle. No rank takes more than its share of what waits,
   * so one whose batches are all on their way gets its share in the next
   * round, instead of another rank taking every task. */
  size_t share =
      (m->fifo_len + (size_t)m->nranks - 2) / (size_t)(m->nranks - 1);
  int any = 0, r;

  for (r = 1; r < m->nranks; r++) {
    if (m->ranks[r].idle_ns && m->fifo_len)
      forget_rate(&m->ranks[r], pp__now_ns());
    begin_batch_locked(&m->ranks[r]);
    m->ranks[r].batch_full = 0;
  }
  while (m->fifo_len && (r = lightest_rank_locked(m, share)) != 0) {
    if (!pack_one_locked(p, m, r, later))
      m->ranks[r].batch_full = 1; /* or the FIFO held only stale ids */
    m->next_rank = (m->next_rank + 1) % (m->nranks - 1);
  }
  for (r = 1; r < m->nranks; r++) {
    struct rank *rk = &m->ranks[r];
    struct pp__mpi_batch hdr;
    if (rk->out.len < sizeof hdr)
      continue;
    memcpy(&hdr, rk->out.data, sizeof hdr);
    if (hdr.nstop == 0 && hdr.ntasks == 0)
      rk->out.len = 0;
    any |= rk->out.len > 0;
  }
  return any;
}

/* Notices the batches sent and sends the packed ones (the buffer of a
 * batch on its way is swapped for a free one); *moved is set when
 * anything moved. Returns the number of batches sent. */
static int send_batches(struct master *m, int *moved) {
  int sent = 0;

  for (int r = 1; r < m->nranks; r++) {
    struct rank *rk = &m->ranks[r];
    struct pp__mpi_buf *b, t;
    if (pp__mpi_sends_test(&rk->sends) > 0)
      *moved = 1;
    if (!rk->out.len || !(b = pp__mpi_sends_free(&rk->sends)))
      continue;
    t = *b;
    *b = rk->out;
    rk->out = t;
    pp__mpi_sends_start(&rk->sends, b, r, PP__MPI_TASKS, m->comm);
    *moved = 1;
    sent++;
  }
  return sent;
}

/* ------------------------------------------------------------ answers */

/* With mu held: re-sizes rank r's window from the rate it finished tasks
 * at over the last RATE_NS. */
static void adapt_window_locked(struct rank *rk, uint64_t now) {
  double rate;
  uint32_t want;

  if (rk->since_ns == 0 || now - rk->since_ns < RATE_NS)
    return;
  rate = rk->done_since / ((double)(now - rk->since_ns) / 1e9);
  want = rate * WINDOW_S > rk->capacity ? rk->capacity
                                        : (uint32_t)(rate * WINDOW_S);
  if (want < (uint32_t)rk->workers)
    want = (uint32_t)rk->workers;
  rk->window = want < rk->capacity ? want : rk->capacity;
  rk->done_since = 0;
  rk->since_ns = rk->in_flight ? now : 0;
}

/* With mu held: a run of items' outcomes from a rank, handed to the
 * slot table as it came (which checks it). A crash (a one-item run: the
 * rank fails a slot item by item) with retries left queues the whole task
 * again, for any rank; the answers of an older attempt are dropped. */
static void apply_items_locked(pp_pool *p, const struct pp__mpi_result *rec,
                               const unsigned char *run,
                               struct pp__deferred **later) {
  struct pp__slot *s = pp__slot_by_id(&p->st, rec->id);
  uint32_t index = pp__id_slot(rec->id);
  struct pp__item_hdr first;

  if (!s || s->attempts != rec->attempt || rec->len < sizeof first)
    return;
  memcpy(&first, run, sizeof first);
  if (rec->count == 1 && first.status == PP_ECRASHED &&
      s->attempts < p->opts.retries) {
    s->attempts++;
    s->items_left = s->items;
    pp__slot_requeue_locked(p, index, later);
    return;
  }
  pp__slot_resolve_run_locked(p, index, rec->item, rec->count, run, rec->len, 0,
                              later);
}

/* With mu held: the task of rec->id started on rank r. */
static void apply_started_locked(pp_pool *p, const struct pp__mpi_result *rec,
                                 int r) {
  struct pp__slot *s = pp__slot_by_id(&p->st, rec->id);
  uint32_t gen = pp__id_gen(rec->id);
  uint64_t want = pp__slot_word(gen, PP__SLOT_QUEUED, -1);

  if (s && s->attempts == rec->attempt)
    atomic_compare_exchange_strong(
        pp__word_at(p->st.words, pp__id_slot(rec->id)), &want,
        pp__slot_word(gen, PP__SLOT_RUNNING, r));
}

/* With mu held: applies a RESULTS batch from rank r, checking every
 * length against the message. */
static void apply_batch_locked(pp_pool *p, struct master *m, int r,
                               const unsigned char *b, size_t n,
                               struct pp__deferred **later) {
  struct rank *rk = &m->ranks[r];
  struct pp__mpi_result rec;
  uint64_t now = pp__now_ns();
  size_t off = 0, size;

  while (off + sizeof rec <= n) {
    memcpy(&rec, b + off, sizeof rec);
    size = sizeof rec + pp__pad8(rec.len);
    if (size > n - off)
      break;
    if (rec.kind == PP__MPI_ITEMS)
      apply_items_locked(p, &rec, b + off + sizeof rec, later);
    else if (rec.kind == PP__MPI_STARTED)
      apply_started_locked(p, &rec, r);
    else if (rec.kind == PP__MPI_DONE && rk->in_flight > 0) {
      rk->in_flight--;
      rk->done_since++;
    }
    off += size;
  }
  adapt_window_locked(rk, now);
  if (rk->in_flight == 0 && rk->idle_ns == 0)
    rk->idle_ns = now;
  pthread_cond_signal(&m->wake); /* credits came back */
}

/* Takes the RESULTS batches that have come (a few at a time, so that
 * packing gets its turn). Returns whether there was one. */
static int receive_batches(pp_pool *p, struct master *m) {
  int got = 0, flag;
  MPI_Status st;

  for (int i = 0; i < 16; i++) {
    struct pp__deferred *later = NULL;
    int r;
    MPI_Iprobe(MPI_ANY_SOURCE, PP__MPI_RESULTS, m->comm, &flag, &st);
    if (!flag)
      break;
    r = pp__mpi_recv(m->comm, st.MPI_SOURCE, PP__MPI_RESULTS, &m->in);
    pp__pool_lock(p);
    if (r > 0 && r < m->nranks)
      apply_batch_locked(p, m, r, m->in.data, m->in.len, &later);
    pp__pool_unlock(p);
    pp__deferred_run(later);
    got = 1;
  }
  return got;
}

/* ------------------------------------------------------------ the loop */

/* With mu held: whether every rank is idle and nothing will come. */
static int finished_locked(const struct master *m) {
  if (!m->closing || m->fifo_len)
    return 0;
  for (int r = 1; r < m->nranks; r++)
    if (m->ranks[r].in_flight || m->ranks[r].sends.n || m->ranks[r].stops.len ||
        m->ranks[r].out.len)
      return 0;
  return 1;
}

/* With mu held: whether a rank holds tasks, so answers are due. */
static int any_in_flight_locked(const struct master *m) {
  for (int r = 1; r < m->nranks; r++)
    if (m->ranks[r].in_flight)
      return 1;
  return 0;
}

/* With mu held: whether packing now would send something. */
static int has_work_locked(const struct master *m) {
  for (int r = 1; r < m->nranks; r++) {
    const struct rank *rk = &m->ranks[r];
    if (can_send(rk) &&
        (rk->stops.len || rk->out.len || (m->fifo_len && has_credit(rk))))
      return 1;
  }
  return 0;
}

/* With mu held (dropped to send): packs and sends batches, one a rank at
 * a time, until the FIFO is empty or no rank takes another, so that a
 * long queue leaves at once rather than a batch a rank per turn of the
 * loop. *done (OUT) says whether the pool has finished. Returns whether
 * anything moved. */
static int pack_and_send_locked(pp_pool *p, struct master *m, int *done) {
  int moved = 0, sent;

  do {
    struct pp__deferred *later = NULL;
    moved |= pack_all_locked(p, m, &later);
    *done = finished_locked(m);
    pp__pool_unlock(p);
    pp__deferred_run(later);
    sent = send_batches(m, &moved);
    pp__pool_lock(p);
  } while (sent && m->fifo_len);
  return moved;
}

/* Packs, sends and receives until the pool closes and every rank is
 * idle, napping (backing off) while nothing moves. */
static void serve_master(pp_pool *p, struct master *m) {
  uint64_t nap = PP__MPI_NAP_MIN_NS;
  int done = 0;

  pp__pool_lock(p);
  while (!done) {
    int moved = pack_and_send_locked(p, m, &done);
    pp__pool_unlock(p);
    moved |= receive_batches(p, m);
    pp__pool_lock(p);
    if (moved || has_work_locked(m)) {
      nap = PP__MPI_NAP_MIN_NS;
      continue;
    }
    if (!finished_locked(m))
      pp__pool_wait(p, &m->wake, pp__now_ns() + nap);
    nap = pp__mpi_next_nap(nap, any_in_flight_locked(m));
  }
  pp__pool_unlock(p);
}

/* Tells every rank to leave. */
static void shut_ranks(struct master *m) {
  for (int r = 1; r < m->nranks; r++)
    MPI_Send(NULL, 0, MPI_BYTE, r, PP__MPI_SHUTDOWN, m->comm);
}

/* The communication thread: initializes MPI; on a rank other than 0
 * serves as a supervisor (never returning); on rank 0 says how the start
 * went, runs the loop, and shuts the ranks down. */
static void *comm_main(void *arg) {
  pp_pool *p = arg;
  struct master *m = master_of(p);
  int rank = 0, rc = pp__mpi_init(&m->comm, &rank, &m->nranks, &m->finalize);
  size_t *bytes = NULL;

  if (rc == 0) { /* collective: every rank calls it, bytes or not */
    bytes = malloc((size_t)m->nranks * sizeof *bytes);
    pp__mpi_message_sizes(m->comm, m->nranks, bytes);
  }
  if (rc == 0 && rank != 0) {
    size_t to_master = bytes ? bytes[0] : PP__MPI_MESSAGE_BYTES;
    free(bytes);
    pp__mpi_serve(p, m->comm, &m->reg, rank, to_master, m->finalize);
  }
  if (rc == 0 && !bytes)
    rc = PP_ENOMEM;
  if (rc == 0 && !(m->ranks = calloc((size_t)m->nranks, sizeof *m->ranks)))
    rc = PP_ENOMEM;
  for (int r = 0; m->ranks && r < m->nranks; r++) {
    pp__mpi_sends_init(&m->ranks[r].sends);
    m->ranks[r].message_bytes = bytes ? bytes[r] : PP__MPI_MESSAGE_BYTES;
  }
  free(bytes);
  if (rc == 0)
    rc = start_ranks(p, m);
  pp__pool_lock(p);
  m->started = 1;
  m->start_rc = rc;
  pthread_cond_broadcast(&p->changed);
  pp__pool_unlock(p);
  if (rc == 0)
    serve_master(p, m);
  if (m->ranks)
    shut_ranks(m);
  if (m->comm != MPI_COMM_NULL)
    MPI_Comm_free(&m->comm);
  if (m->finalize)
    MPI_Finalize();
  pp__pool_lock(p);
  p->live = 0;
  pthread_cond_broadcast(&p->changed);
  pp__pool_unlock(p);
  return NULL;
}

/* ------------------------------------------------------------ the table */

static int mpi_start(pp_pool *p) {
  struct master *m;
  char msg[PP__MESSAGE_MAX];
  int rc;

  if (p->opts.max_payload > MAX_PAYLOAD)
    return PP_EINVAL;
  if (atomic_exchange(&mpi_used, 1))
    return PP_ESHUTDOWN;
  if (!(m = calloc(1, sizeof *m)))
    return PP_ENOMEM;
  p->engine_state = m;
  m->comm = MPI_COMM_NULL;
  if ((rc = pp__registry_load(&m->reg, msg, sizeof msg)) != 0) {
    fprintf(stderr, "procpool: %s\n", msg[0] ? msg : pp_strerror(rc));
    return rc;
  }
  m->fifo_cap = p->st.n;
  m->fifo = malloc(m->fifo_cap * sizeof *m->fifo);
  m->sent_to = calloc(p->st.n, sizeof *m->sent_to);
  if (!m->fifo || !m->sent_to)
    return PP_ENOMEM;
  if ((rc = pp__cond_init(&m->wake)) != 0)
    return rc;
  if ((rc = pp__thread_start(&m->thread, comm_main, p)) != 0)
    return rc;
  m->running = 1;
  pp__pool_lock(p);
  while (!m->started) /* for ever on a supervisor rank */
    pp__pool_wait(p, &p->changed, PP__FOREVER);
  rc = m->start_rc;
  pp__pool_unlock(p);
  return rc;
}

static void mpi_close_locked(pp_pool *p) {
  struct master *m = master_of(p);

  PP__ASSERT_LOCKED(p);
  if (!m || !m->running)
    return;
  m->closing = 1;
  pthread_cond_signal(&m->wake);
}

static void mpi_stop(pp_pool *p) {
  struct master *m = master_of(p);

  if (!m)
    return;
  if (m->running) {
    pp__pool_lock(p);
    mpi_close_locked(p);
    pp__pool_unlock(p);
    pthread_join(m->thread, NULL);
    pthread_cond_destroy(&m->wake);
  }
  for (int r = 0; m->ranks && r < m->nranks; r++) {
    free(m->ranks[r].out.data);
    free(m->ranks[r].stops.data);
    pp__mpi_sends_free_all(&m->ranks[r].sends);
  }
  free(m->ranks);
  free(m->in.data);
  free(m->fifo);
  free(m->sent_to);
  pp__registry_free(&m->reg);
  free(m);
  p->engine_state = NULL;
}

/* With mu held: appends slot `index` to the FIFO (grown when stale ids of
 * cancelled slots fill it). */
static int mpi_queue_locked(pp_pool *p, uint32_t index, int wait,
                            uint64_t deadline_ns) {
  struct master *m = master_of(p);

  PP__ASSERT_LOCKED(p);
  (void)wait;
  (void)deadline_ns;
  if (m->fifo_len == m->fifo_cap) {
    uint64_t *grown = malloc(2 * m->fifo_cap * sizeof *grown);
    if (!grown)
      return PP_ETIMEDOUT; /* the backlog keeps it */
    for (size_t i = 0; i < m->fifo_len; i++)
      grown[i] = m->fifo[(m->fifo_head + i) % m->fifo_cap];
    free(m->fifo);
    m->fifo = grown;
    m->fifo_head = 0;
    m->fifo_cap *= 2;
  }
  m->fifo[(m->fifo_head + m->fifo_len++) % m->fifo_cap] =
      pp__make_id(p->st.slots[index].gen, index);
  pthread_cond_signal(&m->wake);
  return 0;
}

/* With mu held: has rank r stop task `id` as `how` says. */
static int stop_on_rank_locked(struct master *m, int r, uint64_t id,
                               enum pp__mpi_how how) {
  struct pp__mpi_stop st = {id, how};
  unsigned char *at;

  if (!(at = pp__mpi_buf_room(&m->ranks[r].stops, sizeof st)))
    return PP_ENOMEM;
  memcpy(at, &st, sizeof st);
  m->ranks[r].stops.len += sizeof st;
  pthread_cond_signal(&m->wake);
  return 0;
}

/* With mu held: asks rank `worker` to kill the worker running task `id`. */
static int mpi_kill_locked(pp_pool *p, uint64_t id, int worker) {
  struct master *m = master_of(p);

  PP__ASSERT_LOCKED(p);
  if (worker < 1 || worker >= m->nranks)
    return PP_EINVAL;
  return stop_on_rank_locked(m, worker, id, PP__MPI_KILL);
}

/* With mu held: queued slot `index` was cancelled. If a rank holds it, the
 * rank drops it unless it has started (then its answer is dropped here:
 * the id is stale). Its FIFO entry, if not sent, is skipped as stale. */
static void mpi_unqueue_locked(pp_pool *p, uint32_t index) {
  struct master *m = master_of(p);
  int r = m->sent_to[index];

  PP__ASSERT_LOCKED(p);
  m->sent_to[index] = 0;
  if (r > 0 && r < m->nranks)
    stop_on_rank_locked(m, r, pp__make_id(p->st.slots[index].gen, index),
                        PP__MPI_CANCEL);
}

/* Only named tasks can cross to another program. */
static int mpi_check_task(pp_task_fn fn) {
  return pp_task_name(fn) ? 0 : PP_EUNREGISTERED;
}

/* Workers of each supervisor rank: its CPUs. */
static int mpi_default_workers(int cpus) {
  return cpus;
}

const struct pp__engine pp__engine_mpi = {
    .name = "mpi",
    .default_workers = mpi_default_workers,
    .start = mpi_start,
    .stop = mpi_stop,
    .close_locked = mpi_close_locked,
    .queue_locked = mpi_queue_locked,
    .unqueue_locked = mpi_unqueue_locked,
    .kill_locked = mpi_kill_locked,
    .check_task = mpi_check_task,
};
