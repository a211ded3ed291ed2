/*
 * A bounded ring of variable-length records in shared memory, for several
 * producers and consumers in different processes.
 *
 * DESIGN
 * The ring is a byte array of `cap` bytes (a power of two) and two offsets
 * that only grow: `head` (the oldest committed record) and `tail` (one past
 * the newest). Full/empty rule: used = tail - head; the ring is empty when
 * used == 0 and a record of n bytes fits when cap - used >= n. Every record
 * is framed as [u64 length][payload][padding to 8 bytes], so a frame header
 * never straddles the end of the array while a payload may (it is copied in
 * two parts).
 *
 * LOCKING
 * One process-shared robust mutex guards every field. The semaphores are
 * wake-up signals only, never a source of truth: a waiter always re-checks
 * the offsets under the lock, so an extra post costs a spurious wake-up and
 * nothing else. A process that dies holding the lock leaves the offsets as
 * they were at one of the steps named below; the next locker gets EOWNERDEAD
 * and ring_repair() restores the invariants before anyone reads them. A
 * process killed at the wrong instant can also swallow another's wake-up,
 * so every wait, for the lock or a semaphore, is made of bounded slices
 * (ring.c says how long).
 */
#ifndef PP_RING_H
#define PP_RING_H

#include <pthread.h>
#include <semaphore.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include <time.h>

/* The steps at which a lock holder may die (test hooks use them too). */
enum ring_step {
  RING_STEP_PUT_COPIED = 1, /* frames written past tail, tail not moved */
  RING_STEP_PUT_TAIL,       /* tail moved, count not yet */
  RING_STEP_GET_COPIED,     /* frames copied out, head not moved */
  RING_STEP_GET_CLAIMED,    /* the caller's claim callback ran */
  RING_STEP_GET_HEAD,       /* head moved, count not yet */
  RING_STEP_COUNT
};

struct ring {
  pthread_mutex_t lock;   /* robust, process-shared: guards all below */
  sem_t readable;         /* posted for waiting consumers after a put */
  sem_t writable;         /* posted for waiting producers after a get */
  uint32_t read_waiters;  /* consumers between "empty, will sleep" and wake */
  uint32_t read_posts;    /* posts of readable not yet taken by a waiter */
  uint32_t write_waiters; /* likewise for producers waiting for space */
  uint32_t write_posts;
  uint64_t head;        /* offset of the oldest frame; head <= tail */
  uint64_t tail;        /* offset past the newest frame; tail-head <= cap */
  uint64_t count;       /* frames between head and tail */
  uint64_t cap;         /* bytes in data[], a power of two */
  uint64_t repairs;     /* times ring_repair() found the ring inconsistent */
  unsigned char data[]; /* the frames */
};

/* Bytes a frame of `payload` bytes takes in the ring. */
static inline size_t ring_frame_size(size_t payload) {
  return 8 + ((payload + 7) & ~(size_t)7);
}

/* Bytes of shared memory a ring of `cap` data bytes needs. */
size_t ring_footprint(size_t cap);

/* Initialises a ring at `r` (in shared memory, zeroed). 0 or -errno. */
int ring_init(struct ring *r, size_t cap);
void ring_destroy(struct ring *r);

/* Takes the ring's lock, repairing the ring if its owner died. */
void ring_lock(struct ring *r);
void ring_unlock(struct ring *r);

/* With the lock held: appends `n` frames laid out contiguously in `frames`
 * (`len` bytes, as built by ring_frame_append()), if they fit. Returns 1 if
 * written, 0 if there is no room. Wakes a waiting consumer. */
int ring_put_locked(struct ring *r, const void *frames, size_t len, size_t n);

/* Appends the frames, waiting for room until `deadline_ns` (CLOCK_MONOTONIC,
 * 0: for ever). Returns 0, or -ETIMEDOUT. Takes and drops the lock. */
int ring_put(struct ring *r, const void *frames, size_t len, size_t n,
             uint64_t deadline_ns);

/* Deadlines for ring_put() and ring_get(). */
#define RING_FOREVER ((uint64_t)0)
#define RING_NOWAIT UINT64_MAX

/* Called under the lock for each frame taken off by ring_get(), before head
 * moves: returns 1 to keep the frame in the caller's buffer, 0 to drop it. */
typedef int (*ring_claim_fn)(void *ctx, void *payload, size_t len);

/* Who is taking frames off, for ring_get(). */
struct ring_reader {
  const volatile int *stop;   /* if set while the ring is empty: return 0 */
  volatile uint32_t *waiting; /* 1 while counted in read_waiters, so that a
                                 reader that dies asleep can be forgotten */
  ring_claim_fn claim;        /* NULL: keep every frame */
  void *ctx;
  uint32_t share; /* if not 0, take at most count / share
                     frames (at least one), so that a batch
                     never holds more than its share */
};

/* Takes up to `max` frames (and at most `cap` bytes) off the head into
 * `buf`, waiting until `deadline_ns` for one. Stores the bytes used in *len
 * (OUT) and returns the number of frames taken (dropped ones included: see
 * ring_frame_next()), or -ETIMEDOUT. `rd` may be NULL. */
int ring_get(struct ring *r, void *buf, size_t cap, size_t max, size_t *len,
             uint64_t deadline_ns, const struct ring_reader *rd);

/* With the lock held: frames in the ring. */
uint64_t ring_count_locked(const struct ring *r);

/* Without the lock: frames in the ring, as a hint for spinning. */
uint64_t ring_peek_count(const struct ring *r);

/* Wakes every consumer waiting in ring_get() (for shutdown). */
void ring_wake_all(struct ring *r);

/* Forgets a consumer that died while counted as waiting. */
void ring_forget_reader(struct ring *r);

/* Appends one frame made of `nparts` byte ranges to a local buffer at
 * `buf + *used` (capacity `cap`). Returns 0, or -1 if it does not fit. */
int ring_frame_append(void *buf, size_t cap, size_t *used,
                      const struct iovec *parts, int nparts);

/* With the lock held: whether `len` more bytes fit. */
int ring_fits_locked(const struct ring *r, size_t len);

/* Waits, without the lock, until `len` bytes fit or `deadline_ns` passes.
 * Returns 0, or -ETIMEDOUT. */
int ring_wait_space(struct ring *r, size_t len, uint64_t deadline_ns);

/* Walks `len` bytes of frames in `buf`: the payload and its length of the
 * next kept frame at or after *off, advancing *off. Returns 0 at the end. */
int ring_frame_next(const void *buf, size_t len, size_t *off, void **payload,
                    size_t *payload_len);

/* Monotonic clock in nanoseconds; deadline helpers. */
uint64_t pp_now_ns(void);
uint64_t pp_deadline_ns(double timeout_s);

/* `ns` nanoseconds since a clock's epoch, as the timespec of timed waits. */
static inline struct timespec pp_timespec(uint64_t ns) {
  struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
  return ts;
}

#endif
