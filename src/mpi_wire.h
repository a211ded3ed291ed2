/*
 * What the two sides of the MPI engine share: the messages between rank 0
 * (mpi_engine.c, the master) and the supervisor ranks (mpi_rank.c), and a
 * growable byte buffer to batch them in.
 *
 * Every message is bytes (MPI_BYTE), little-endian as the machines are
 * (Open MPI's ranks of one job share the architecture). A receiver checks
 * every length against what it got before it reads.
 *
 *   MANIFEST (0 -> r)  struct pp__mpi_manifest, then the task names
 *   HELLO    (r -> 0)  struct pp__mpi_hello: ready, or why not
 *   TASKS    (0 -> r)  struct pp__mpi_batch, nstop struct pp__mpi_stop,
 *                      then ntasks of: struct pp__mpi_task and a frame
 *                      (slots.h; hdr.fn is ignored, fn_index names it)
 *   RESULTS  (r -> 0)  records struct pp__mpi_result, each followed by
 *                      its run of items (slots.h), padded to 8
 *   SHUTDOWN (0 -> r)  empty: destroy the local pool and leave
 */
#ifndef PP_MPI_WIRE_H
#define PP_MPI_WIRE_H

#include "pool.h"
#include "registry.h"

#include <mpi.h>
#include <stdlib.h>
#include <string.h>

enum pp__mpi_tag {
  PP__MPI_MANIFEST = 1,
  PP__MPI_HELLO,
  PP__MPI_TASKS,
  PP__MPI_RESULTS,
  PP__MPI_SHUTDOWN
};

struct pp__mpi_manifest {
  uint64_t max_payload; /* the master's: every rank's pool takes as much */
  uint64_t names_len;
};

struct pp__mpi_hello {
  int32_t status;    /* 0, or the PP_E* this rank failed with */
  int32_t workers;   /* of its local pool */
  uint32_t capacity; /* most tasks it can hold at once (its slots) */
  uint32_t unused;
  char msg[PP__MESSAGE_MAX]; /* why not, when status is not 0 */
};

struct pp__mpi_batch {
  uint32_t nstop;
  uint32_t ntasks;
};

/* What becomes of a task the rank holds. */
enum pp__mpi_how {
  PP__MPI_CANCEL = 1, /* cancelled by the master: drop it unless running */
  PP__MPI_KILL        /* cancel_running: kill its worker */
};

struct pp__mpi_stop {
  uint64_t id;
  uint64_t how; /* enum pp__mpi_how */
};

struct pp__mpi_task {
  uint64_t timeout_ns; /* 0: none */
  uint32_t attempt;    /* the slot's attempts when sent, echoed back */
  uint32_t fn_index;   /* the task's index in the manifest */
};

enum pp__mpi_kind {
  PP__MPI_STARTED = 1, /* the task is running on a worker */
  PP__MPI_ITEMS,       /* items' outcomes: a run (slots.h) of `count` */
  PP__MPI_DONE         /* the task left the rank: a credit comes back */
};

struct pp__mpi_result {
  uint64_t id;
  uint32_t item; /* the run's first item */
  uint8_t kind;  /* enum pp__mpi_kind */
  uint8_t attempt;
  uint16_t unused;
  uint32_t count; /* items in the run */
  uint32_t len;   /* bytes of the run, after this header */
};

/* A growable buffer of bytes. */
struct pp__mpi_buf {
  unsigned char *data;
  size_t len, cap;
};

/* Room for `more` bytes at data + len, or NULL (out of memory). */
static inline unsigned char *pp__mpi_buf_room(struct pp__mpi_buf *b,
                                              size_t more) {
  if (b->len + more > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    unsigned char *grown;
    while (cap < b->len + more)
      cap *= 2;
    if (!(grown = realloc(b->data, cap)))
      return NULL;
    b->data = grown;
    b->cap = cap;
  }
  return b->data + b->len;
}

/* A message's bytes, at most, to a peer reached over the network: under
 * the eager limit of Open MPI's TCP transport (64 KiB with its header),
 * so that one MPI_Isend puts it all on the wire without waiting for the
 * receiver to answer (a larger one waits for a round trip through both
 * loops' naps). A single task or result larger than this goes alone. */
#define PP__MPI_MESSAGE_BYTES ((size_t)60 << 10)

/* ... and to a peer on this machine over shared memory, where the
 * receiver takes a large message in one copy: fewer, larger messages
 * then cost fewer calls and wake-ups (half the context switches of 60 KiB
 * ones with tiny tasks). */
#define PP__MPI_LOCAL_MESSAGE_BYTES ((size_t)240 << 10)

/* Messages in flight to one peer: each buffer stays until its MPI_Isend
 * completes, so that a message goes while the last ones travel (over
 * shared memory, a large one completes only once the peer has taken it). */
#define PP__MPI_SENDS 16

struct pp__mpi_sends {
  struct pp__mpi_buf buf[PP__MPI_SENDS];
  MPI_Request req[PP__MPI_SENDS]; /* MPI_REQUEST_NULL: buf is free */
  int n;                          /* sends in flight */
};

/* Makes s empty (before any other call). */
static inline void pp__mpi_sends_init(struct pp__mpi_sends *s) {
  memset(s, 0, sizeof *s);
  for (int i = 0; i < PP__MPI_SENDS; i++)
    s->req[i] = MPI_REQUEST_NULL;
}

/* Notices the sends that completed, in one MPI_Testsome: each MPI call
 * that finds nothing to do yields the CPU when Open MPI runs
 * oversubscribed (mpi_yield_when_idle), so one call, not one a send.
 * Returns how many completed. */
static inline int pp__mpi_sends_test(struct pp__mpi_sends *s) {
  int done = 0, idx[PP__MPI_SENDS];

  if (s->n == 0)
    return 0;
  MPI_Testsome(PP__MPI_SENDS, s->req, &done, idx, MPI_STATUSES_IGNORE);
  if (done == MPI_UNDEFINED)
    done = 0;
  s->n -= done;
  return done;
}

/* A free buffer of s (emptied), or NULL while PP__MPI_SENDS are in
 * flight. */
static inline struct pp__mpi_buf *pp__mpi_sends_free(struct pp__mpi_sends *s) {
  for (int i = 0; i < PP__MPI_SENDS && s->n < PP__MPI_SENDS; i++)
    if (s->req[i] == MPI_REQUEST_NULL) {
      s->buf[i].len = 0;
      return &s->buf[i];
    }
  return NULL;
}

/* Sends b, a buffer pp__mpi_sends_free() gave, to `dest` with `tag`. */
static inline void pp__mpi_sends_start(struct pp__mpi_sends *s,
                                       struct pp__mpi_buf *b, int dest, int tag,
                                       MPI_Comm comm) {
  int i = (int)(b - s->buf);

  MPI_Isend(b->data, (int)b->len, MPI_BYTE, dest, tag, comm, &s->req[i]);
  s->n++;
}

/* Waits for every send in flight (at the end). */
static inline void pp__mpi_sends_wait(struct pp__mpi_sends *s) {
  MPI_Waitall(PP__MPI_SENDS, s->req, MPI_STATUSES_IGNORE);
  s->n = 0;
}

/* Frees the buffers (none in flight). */
static inline void pp__mpi_sends_free_all(struct pp__mpi_sends *s) {
  for (int i = 0; i < PP__MPI_SENDS; i++)
    free(s->buf[i].data);
}

/* Appends one record of the RESULTS stream, with its run of rec->len
 * bytes (NULL when 0); 0 or PP_ENOMEM. */
static inline int pp__mpi_put_result(struct pp__mpi_buf *b,
                                     const struct pp__mpi_result *rec,
                                     const void *run) {
  size_t size = sizeof *rec + pp__pad8(rec->len);
  unsigned char *at = pp__mpi_buf_room(b, size);

  if (!at)
    return PP_ENOMEM;
  memcpy(at, rec, sizeof *rec);
  if (rec->len)
    memcpy(at + sizeof *rec, run, rec->len);
  memset(at + sizeof *rec + rec->len, 0, size - sizeof *rec - rec->len);
  b->len += size;
  return 0;
}

/* Appends a record of one item whose outcome is *r; 0 or PP_ENOMEM. */
static inline int pp__mpi_put_item(struct pp__mpi_buf *b, uint64_t id,
                                   uint32_t item, uint8_t attempt,
                                   const struct pp__result *r) {
  size_t msg_len, need = pp__item_need(r, &msg_len);
  struct pp__mpi_result rec = {id, item, PP__MPI_ITEMS, attempt,
                               0,  1,    (uint32_t)need};
  unsigned char *at = pp__mpi_buf_room(b, sizeof rec + need);

  if (!at)
    return PP_ENOMEM;
  memcpy(at, &rec, sizeof rec);
  pp__item_write(at + sizeof rec, r, msg_len, need);
  b->len += sizeof rec + need;
  return 0;
}

/* Receives the next message from `source` with `tag` into b (replacing
 * its bytes); returns the sender. */
int pp__mpi_recv(MPI_Comm comm, int source, int tag, struct pp__mpi_buf *b);

/* Initializes MPI unless the program did (then *finalize is left 0),
 * makes *comm, the engine's own copy of MPI_COMM_WORLD, and says this
 * process's rank and the job's size (OUT). Returns 0 or why not, printed. */
int pp__mpi_init(MPI_Comm *comm, int *rank, int *size, int *finalize);

/* Collective: the largest message this rank sends to each rank r, into
 * bytes[r] (OUT, [size]): PP__MPI_LOCAL_MESSAGE_BYTES to the ranks on
 * this machine while Open MPI may use shared memory between them (its
 * "btl" selection, read through MPI_T, leaves vader or sm in), else
 * PP__MPI_MESSAGE_BYTES. With bytes NULL (out of memory) it still takes
 * part, so that the other ranks do not wait for ever. */
void pp__mpi_message_sizes(MPI_Comm comm, int size, size_t *bytes);

/* Rank 0: sends the manifest and max_payload to ranks 1 .. size - 1 and
 * takes their hellos into hellos[1 .. size) (OUT). Returns 0, or the first
 * rank's failure (every refusal printed, naming its rank). */
int pp__mpi_handshake(MPI_Comm comm, int size, const struct pp__registry *reg,
                      uint64_t max_payload, struct pp__mpi_hello *hellos);

/* Serves as supervisor rank `rank` of the pool p (whose options are this
 * rank's own), sending rank 0 messages of up to `message_bytes`, until
 * rank 0 shuts it down; then finalizes MPI when `finalize` and exits. */
void pp__mpi_serve(pp_pool *p, MPI_Comm comm, const struct pp__registry *reg,
                   int rank, size_t message_bytes, int finalize)
    __attribute__((noreturn));

/* The naps of a communication loop with nothing to do: it backs off from
 * the first, never spinning, up to the second while answers are due (a
 * message is noticed within it), or the third while nothing is in flight
 * (what comes then, a new task, wakes rank 0 at once). */
#define PP__MPI_NAP_MIN_NS 20000u
#define PP__MPI_NAP_BUSY_NS 100000u
#define PP__MPI_NAP_IDLE_NS 2000000u

/* The next nap after `nap`, doubled up to its cap. */
static inline uint64_t pp__mpi_next_nap(uint64_t nap, int busy) {
  uint64_t cap = busy ? PP__MPI_NAP_BUSY_NS : PP__MPI_NAP_IDLE_NS;
  return nap * 2 > cap ? cap : nap * 2;
}

#endif
