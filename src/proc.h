/*
 * The process engine's internals (never included outside its files:
 * procs.c, shared.c, worker.c, collector.c, reaper.c, spawner.c).
 *
 * A pool run by processes is:
 *  - the shared region (shared.c): two rings (tasks to workers, results to
 *    the master), a record per worker and the blocks lent for large
 *    results, in one anonymous MAP_SHARED mapping made before the first
 *    fork, so it has no name to leak; the slot words are the slot table's
 *    own shared mapping;
 *  - the workers (worker.c): forked processes that take task frames, run
 *    them and put result frames;
 *  - the collector (collector.c): the master's thread that takes results
 *    and enforces timeouts;
 *  - the reaper (reaper.c): the master's thread that reaps and replaces
 *    workers, through
 *  - the spawner (spawner.c): a process forked when the pool starts, that
 *    forks the workers and is their parent;
 *  - the operations of the engine table (procs.c).
 */
#ifndef PP_PROC_H
#define PP_PROC_H

#include "pool.h"
#include "ring.h"

#include <poll.h>
#include <sched.h>
#include <sys/types.h>

/* A worker record's `current` with this bit set: the master has claimed
 * the right to kill the worker for that task (a timeout or a cancel). The
 * worker, finishing the task, finds its compare-and-swap to 0 refused, and
 * neither reports the task nor takes another: it waits for the kill. So a
 * kill never lands on a task other than the one it was meant for. */
#define PP__DOOMED ((uint64_t)1 << 63)

/* What the master knows of a worker, in shared memory so that the worker
 * can say what it is doing without a message. A cache line each: a worker
 * writes `current` and `started_ns` for every task, and must not take the
 * line from the worker beside it.
 *
 * `alive` is a robust mutex the worker holds for its whole life, on a line
 * of its own (its peers try it). When the worker dies, however it dies,
 * the kernel marks it as its owner's death at once, before the process is
 * torn down and long before the reaper hears of it: its peers see that
 * their fellow is gone (worker.c, give_way()). Nobody else ever holds it
 * but for a moment, so a worker that starts takes it at once. */
struct __attribute__((aligned(64))) pp__worker_record {
  _Atomic int32_t pid;
  _Atomic int32_t init;        /* enum pp__init_outcome */
  _Atomic int32_t init_code;   /* what the initializer returned */
  _Atomic uint64_t current;    /* id of the task it runs, 0 when idle */
  _Atomic uint64_t started_ns; /* when `current` started */
  _Atomic uint32_t waiting;    /* counted as a waiting task-ring reader */
  _Atomic int32_t cpu;         /* 1 + the CPU it last ran on; 0: not known */
  pthread_mutex_t alive __attribute__((aligned(64)));
};

/* A worker takes its place's `alive` for life (it waits only for a peer
 * trying it that moment). */
void pp__place_take(struct pp__worker_record *rec);
/* Whether nobody alive holds the place: its worker died, or its
 * replacement has not started yet. */
int pp__place_empty(struct pp__worker_record *rec);

/* The CPU a starting worker moves to (worker.c, take_a_free_cpu()), of
 * `free_cpus`, the allowed ones where no live peer ran last: -1 to stay
 * where it is, `here` (it is free, or none is), else `preferred` (its
 * predecessor's) if free, else the lowest free one. */
int pp__cpu_to_take(const cpu_set_t *free_cpus, int here, int preferred);

/* The shared region. */
struct pp__shared {
  _Atomic int collector_asleep; /* the collector is (about to be) in poll() */
  _Atomic int helpers;          /* master threads taking results themselves */
  _Atomic int closing;          /* workers exit once the task ring is empty */
  int wake_fd;                  /* eventfd the collector polls */
  uint32_t nslots;
  uint32_t nworkers;
  size_t max_payload;
  size_t max_frame;             /* largest frame payload either ring takes */
  _Atomic int test_die_budget;  /* see testhook.h */
  struct pp__ring *tasks;       /* master -> workers */
  struct pp__ring *results;     /* workers -> master */
  _Atomic uint64_t *slot_words; /* [nslots]: the slot table's */
  struct pp__worker_record *workers; /* [nworkers] */
  /* Blocks lent for large results (task.h): a worker builds one in place
   * and sends its number, the master hands the bytes out where they lie,
   * so they are never copied. A block's owner word says who has it. */
  uint32_t nblocks;              /* 0 when max_payload is small */
  size_t block_size;             /* max_payload, rounded up to 64 */
  _Atomic uint32_t *block_owner; /* [nblocks]: PP__BLOCK_* or 1 + w */
  unsigned char *blocks;         /* [nblocks][block_size] */
  size_t map_len;
};

#define PP__BLOCK_FREE 0u           /* a worker may take it */
#define PP__BLOCK_MASTER UINT32_MAX /* a map hands its bytes out */
/* Any other owner word, 1 + w: lent to worker w, filled or on its way. */

/* The bytes of block `b`. */
static inline unsigned char *pp__block_at(const struct pp__shared *sh,
                                          uint32_t b) {
  return sh->blocks + (size_t)b * sh->block_size;
}

/* A result frame: the outcomes of items first .. first + count - 1 of one
 * task, as this header and then a packed run of items (slots.h). A chunk
 * answers in one frame unless its results outgrow the worker's buffer. */
struct pp__result_hdr {
  uint64_t id;
  uint32_t first;  /* the first item's number in the task */
  uint32_t count;  /* items in the run */
  uint64_t run_ns; /* time these items took, read once per frame */
};

/* Maps and initialises the region; returns 0, PP_ESHM or PP_ENOMEM. */
int pp__shared_create(struct pp__shared **out, const pp_pool *p);
void pp__shared_destroy(struct pp__shared *sh);

/* Wakes the collector if it sleeps (workers after putting results, the
 * master's threads after asking it for something). */
void pp__shared_wake_collector(struct pp__shared *sh);

/* Wakes the collector if it sleeps, even while a master thread takes
 * results itself (a worker finding the result ring full: that thread is
 * busy elsewhere, and the collector must drain). */
void pp__shared_poke_collector(struct pp__shared *sh);

/* The body of a worker process, forked by `parent`; never returns. */
void pp__worker_main(struct pp__shared *sh, int index, pid_t parent,
                     pp_init_fn init, void *initarg, unsigned max_tasks)
    __attribute__((noreturn));

/* The engine's state (pool->engine_state). Fields are shared by the
 * master's threads under the lock said. */
struct pp__procs {
  struct pp__shared *sh;
  pthread_mutex_t drain_mu; /* held while results are taken and applied:
                               see pp__collector_drain() */
  int drain_mu_made;
  unsigned char *drain_buf; /* under drain_mu: a frame wrapping the ring */
  size_t drain_cap;
  unsigned char *block_run; /* under drain_mu: a lent block's result as a
                               run, for an owner that copies it */
  int *pids;      /* [nworkers], under mu: 0 no process in this place */
  int *pidfds;    /* [nworkers], under mu: pidfds of pids[], -1: none */
  int *deathfds;  /* [nworkers], the reaper's: death pipes' read ends */
  char *unreaped; /* [nworkers], the reaper's: pipe ended, worker alive */
  struct pollfd *reap_fds; /* [nworkers + 1], the reaper's poll set */
  int reap_fd;             /* eventfd that wakes the reaper (-1: none) */
  int spawner_fd;          /* the reaper's: socket to the spawner, or -1 */
  pid_t spawner_pid;       /* the reaper's: the spawner, 0: none */
  int forking;             /* under mu: forks under way outside the lock */
  int started;             /* under mu: all first workers passed their init */
  int create_status;       /* under mu: what pp_pool_create() returns */
  int stop;              /* under mu: the collector and reaper should finish */
  int collector_running; /* the collector thread exists */
  int reaper_running;    /* the reaper thread exists */
  pthread_t collector, reaper;
  uint64_t next_spawn_ns; /* under mu: when a failed fork may be retried */
  uint64_t leave_by_ns;   /* under mu: closing and idle: workers still
                             alive then are killed (0: not yet set) */
  uint32_t dead_frames;   /* under mu: cancelled frames in the task ring */
};

static inline struct pp__procs *pp__procs_of(const pp_pool *p) {
  return p->engine_state;
}

/* collector.c */
void *pp__collector_main(void *arg);
size_t pp__collector_drain(pp_pool *p, int wait);
int pp__collector_kill_locked(pp_pool *p, int worker, uint64_t id);

/* reaper.c */
void *pp__reaper_main(void *arg);

/* spawner.c, for the reaper thread only. pp__spawner_start() starts the
 * spawner unless it runs: before any descriptor it must not hold is made,
 * as it keeps a copy of every one the master has then. Returns 0 or
 * PP_EFORK. */
int pp__spawner_start(pp_pool *p);
/* Has the spawner reap `dead` (a dead worker's pid, or 0) and fork the
 * worker for `place` with `death`, its death pipe's write end (the caller
 * closes it); *pid and *pidfd (OUT, -1: none) name it. Returns 0, or
 * PP_EFORK with *lost (OUT) set when the spawner is gone (killed from
 * outside: a new one may be started). */
int pp__spawner_fork(pp_pool *p, int place, int death, pid_t dead, pid_t *pid,
                     int *pidfd, int *lost);
/* Reaps dead worker `pid` into *status (OUT); a worker whose spawner is
 * gone counts as killed by SIGKILL. */
void pp__spawner_reap(pp_pool *p, pid_t pid, int *status);
/* Tells the spawner to exit, once every worker has been reaped. */
void pp__spawner_stop(pp_pool *p);
/* SIGKILLs a worker not reaped yet, by its pidfd if it has one. */
int pp__spawner_kill(int pid, int pidfd);

/* How long a thread about to sleep for a result or a task spins first:
 * about one scheduler wake-up's worth, so an idle round trip needs only
 * the wake-up of the worker. */
#define PP__SPIN_NS 50000u

#endif
