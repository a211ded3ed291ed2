/*
 * Internals shared by the library's files; never installed.
 *
 * A pool is three things:
 *  - the shared region (shared.c): two rings (tasks to workers, results to
 *    the master), a state word per task slot and a record per worker, in one
 *    anonymous MAP_SHARED mapping made before the first fork, so it has no
 *    name to leak;
 *  - the workers (worker.c): forked processes that take task frames, run
 *    them and put result frames;
 *  - the master side: pool.c (slots and submit), collector.c (the thread
 *    that takes results, reaps and replaces workers and enforces timeouts),
 *    future.c, wait.c and map.c (what callers hold).
 */
#ifndef PP_INTERNAL_H
#define PP_INTERNAL_H

#include "procpool.h"
#include "ring.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#define PP_MAX_WORKERS 4096
#define PP_MESSAGE_MAX 256 /* bytes of an error message, NUL included */

/* ------------------------------------------------------ the task slots */

/*
 * Every task in flight owns a slot, named by its id: the slot index in the
 * low 32 bits, the slot's generation (bumped at each reuse, never 0) in the
 * high 32. The slot's shared state word holds (generation, state, worker):
 *
 *   QUEUED   a frame for it is in the task ring (invariant: every QUEUED
 *            slot has a frame in the ring, so a claim must happen under the
 *            ring lock before head passes the frame);
 *   CLAIMED  a worker took it off the ring and will run it;
 *   RUNNING  the worker is running it;
 *   CANCELLED the master cancelled it before it ran.
 *
 * Workers move QUEUED -> CLAIMED -> RUNNING with compare-and-swap; the master
 * moves QUEUED or CLAIMED -> CANCELLED the same way, so exactly one of "runs"
 * and "is cancelled" wins. A frame whose id no longer matches the word (the
 * slot was reused) or whose state is not QUEUED is dropped: frames may be
 * taken twice after a reader died mid-get, and this makes that harmless.
 */
enum slot_state {
  SLOT_FREE,
  SLOT_QUEUED,
  SLOT_CLAIMED,
  SLOT_RUNNING,
  SLOT_CANCELLED
};

static inline uint64_t slot_word(uint32_t gen, enum slot_state st, int worker) {
  return ((uint64_t)gen << 32) | ((uint64_t)(worker + 1) << 8) | st;
}
static inline uint32_t word_gen(uint64_t w) {
  return (uint32_t)(w >> 32);
}
static inline enum slot_state word_state(uint64_t w) {
  return (enum slot_state)(w & 0xff);
}
static inline int word_worker(uint64_t w) {
  return (int)((w >> 8) & 0xffffff) - 1;
}
static inline uint32_t id_slot(uint64_t id) {
  return (uint32_t)id;
}
static inline uint32_t id_gen(uint64_t id) {
  return (uint32_t)(id >> 32);
}

/* --------------------------------------------------------- the frames */

/* A task frame: this header, then `count` items [u32 len][u32 pad][bytes]
 * each padded to 8 (count is 1 unless the map sent a chunk). */
struct task_hdr {
  uint64_t id;
  uint64_t fn;    /* the pp_task_fn, valid in every forked worker */
  uint32_t count; /* items */
  uint32_t unused;
};

/* A result frame, one per item: this header, a result_item, then the
 * result bytes and the message bytes. */
struct result_hdr {
  uint64_t id;
  uint32_t item; /* which item of the task (0 unless a chunk) */
  uint32_t unused;
};

struct result_item {
  int32_t status;   /* 0, PP_ETASK or PP_ETOOBIG */
  int32_t code;     /* the task's return value when status is PP_ETASK */
  uint32_t len;     /* result bytes */
  uint32_t msg_len; /* message bytes (no NUL) after the result bytes */
};

static inline size_t pad8(size_t n) {
  return (n + 7) & ~(size_t)7;
}

/* ------------------------------------------------- the shared region */

/* What the master knows of a worker, in shared memory so the worker can
 * say what it is doing without a message. */
struct worker_record {
  _Atomic int32_t pid;
  _Atomic int32_t init_status; /* 1 running the initializer, 0 done,
                                  else the initializer's failure */
  _Atomic uint64_t current;    /* id of the task it runs, 0 when idle */
  _Atomic uint64_t started_ns; /* when `current` started */
  volatile uint32_t waiting;   /* counted as a waiting task-ring reader */
  uint32_t unused;
};

struct shared {
  _Atomic int collector_asleep; /* the collector is (about to be) in poll() */
  volatile int closing;         /* workers exit once the task ring is empty */
  int wake_fd;                  /* eventfd the collector polls */
  pid_t master;                 /* workers exit if their parent is not it */
  uint32_t nslots;              /* task slots, a power of two */
  uint32_t nworkers;
  size_t max_payload;
  size_t max_frame;              /* largest frame payload either ring takes */
  _Atomic int test_die_budget;   /* see testhook.h */
  struct ring *tasks;            /* master -> workers */
  struct ring *results;          /* workers -> master */
  _Atomic uint64_t *slot_words;  /* [nslots] */
  struct worker_record *workers; /* [nworkers] */
  size_t map_len;
};

/* Maps and initialises the region; returns 0, PP_ESHM or PP_ENOMEM. */
int shared_create(struct shared **out, int nworkers, size_t max_payload,
                  size_t ring_capacity, int private_map);
void shared_destroy(struct shared *sh);

/* Wakes the collector if it sleeps (workers after putting results, the
 * master's threads after asking it for something). */
void shared_wake_collector(struct shared *sh);

/* ------------------------------------------------------- the workers */

/* What a task function writes its answer into (worker.c has the calls). */
struct pp_task {
  struct shared *sh;
  unsigned char *result; /* what the task returned, grown as needed */
  size_t len, cap;
  int too_big;
  char msg[PP_MESSAGE_MAX];
};

/* The body of a worker process; never returns. */
void worker_main(struct shared *sh, int index, pp_init_fn init, void *initarg,
                 unsigned max_tasks) __attribute__((noreturn));

/* --------------------------------------------------------- the master */

enum slot_kind { SLOT_FUTURE = 1, SLOT_MAP };

/* The master's half of a slot (guarded by pool->mu). */
struct slot {
  uint32_t gen;
  uint8_t kind;           /* 0 when free */
  uint8_t cancel_running; /* the master killed its worker to cancel it */
  uint8_t expired;        /* the master killed its worker for its timeout */
  uint8_t attempts;       /* runs that ended with the worker's death */
  uint32_t next_free;     /* free list link */
  uint32_t items;         /* items in the task */
  uint32_t items_left;    /* items with no result yet */
  double timeout;         /* seconds; 0: none */
  void *owner;            /* the pp_future, or the pp_map */
  size_t base;            /* map: index of the task's first argument */
  void *frame;            /* copy of the task frame, to queue it again */
  size_t frame_len;
};

/* How a task (or one argument of a chunk) ended, as the master keeps it. */
struct outcome {
  int status; /* 0 or the PP_E* it failed with */
  int code;   /* what the task returned, for PP_ETASK */
  void *data; /* the result bytes (status 0), owned */
  size_t len;
  char *message; /* NULL or owned */
};

/* future.c: fills `o` with copies (PP_ENOMEM when they cannot be made). */
void outcome_set(struct outcome *o, int status, int code, const void *data,
                 size_t len, const char *msg);
void outcome_clear(struct outcome *o);

struct pp_future {
  pp_pool *pool;      /* used only while pending: a done future outlives it */
  atomic_int refs;    /* caller, pool (until done), iterators */
  uint64_t id;        /* its slot while in flight */
  _Atomic int state;  /* pp_state; RUNNING is read from the slot word */
  struct outcome out; /* written once, before state turns done */
  struct callback *callbacks;
  struct watch *watches; /* as_completed iterators waiting for it */
  pp_future *next_done;  /* collector's list of futures to call back */
};

struct callback {
  pp_done_fn fn;
  void *arg;
  struct callback *next;
};

/* An as_completed iterator's interest in one future. */
struct watch {
  struct pp_completed *it;
  size_t index;
  struct watch *next;
};

struct pp_pool {
  pthread_mutex_t mu;     /* guards everything below and futures' fields */
  pthread_cond_t changed; /* broadcast when tasks resolve, slots free up,
                             workers start, or the pool closes */
  struct shared *sh;
  pp_options opts;
  int nworkers;
  /* Workers (indexed like sh->workers), touched by the collector only,
   * except pid reads under mu. */
  int *pids;           /* 0: no process in this place */
  int *deathfds;       /* read ends of the workers' death pipes */
  int collector_ready; /* the collector has its buffers and forks workers */
  int started;         /* all first workers reported their init */
  int create_status;   /* what pp_pool_create() returns */
  int broken;          /* PP_E* that fails every task from now on */
  struct slot *slots;
  uint32_t free_head; /* UINT32_MAX: no free slot */
  uint32_t in_flight;
  struct backlog *backlog; /* frames to queue again, when the ring has room */
  struct backlog **backlog_tail;
  int shutdown; /* no more submits */
  int stop_collector;
  pthread_t collector;
  int collector_running;
  uint64_t next_spawn_ns;   /* when a failed fork may be tried again */
  uint32_t timed_tasks;     /* slots in flight with a timeout */
  int live;                 /* workers running */
  struct thread_engine *te; /* the thread engine's state, or NULL */
};

struct backlog {
  uint64_t id;
  struct backlog *next;
};

/* pool.c */
int pool_alloc_slot(pp_pool *p, int wait, uint64_t deadline_ns,
                    uint32_t *index);
void pool_free_slot(pp_pool *p, uint32_t index);
int pool_queue_frame(pp_pool *p, uint32_t index, uint64_t deadline_ns);
int pool_cancel_slot(pp_pool *p, uint64_t id, pp_future **done);
int pool_task_frame(pp_pool *p, uint32_t index, pp_task_fn fn,
                    const void *const *args, const size_t *lens, size_t n);

/* collector.c */
void *collector_main(void *arg);
void collector_fail_slot_locked(pp_pool *p, uint32_t index, int status,
                                const char *msg, pp_future **done);
int collector_kill_worker_locked(pp_pool *p, int worker);
size_t collector_drain(pp_pool *p, void *buf, size_t cap);

/* How long a thread about to sleep for a result or a task spins first:
 * about one scheduler wake-up's worth, so an idle round trip needs only
 * the wake-up of the worker. */
#define PP_SPIN_NS 50000u

static inline void pp_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

/* future.c: called by the collector with p->mu held; the futures it
 * finishes are put on *done to have their callbacks run after unlock. */
pp_future *future_new(pp_pool *p);
void future_resolve_locked(pp_future *f, int status, int code, const void *data,
                           size_t len, const char *msg, pp_future **done_list);
void future_finish_list(pp_future *done);
void completed_notify_locked(struct pp_completed *it, size_t index);

/* threads.c: the thread engine (pool->te) */
int threads_start(pp_pool *p);
void threads_stop(pp_pool *p);
void threads_push_locked(pp_pool *p, uint32_t index);
void threads_close_locked(pp_pool *p);

static inline int pool_threaded(const pp_pool *p) {
  return p->opts.engine == PP_ENGINE_THREADS;
}

/* map.c */
void map_resolve_locked(pp_map *m, size_t index, int status, int code,
                        const void *data, size_t len, const char *msg);
void map_task_gone_locked(pp_map *m);

/* The slot word of a slot, for state reads. */
static inline uint64_t pool_slot_word(pp_pool *p, uint32_t index) {
  return atomic_load(&p->sh->slot_words[index]);
}

#endif
