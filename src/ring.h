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
 * and pp__ring_repair() restores the invariants before anyone reads them. A
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

#include "clock.h"

/* The steps at which a lock holder may die (test hooks use them too). */
enum pp__ring_step {
  RING_STEP_PUT_COPIED = 1, /* frames written past tail, tail not moved */
  RING_STEP_PUT_TAIL,       /* tail moved, count not yet */
  RING_STEP_GET_COPIED,     /* frames copied out, head not moved */
  RING_STEP_GET_CLAIMED,    /* the caller's claim callback ran */
  RING_STEP_GET_HEAD,       /* head moved, count not yet */
  RING_STEP_COUNT
};

struct pp__ring {
  pthread_mutex_t lock;   /* robust, process-shared: guards all below */
  sem_t readable;         /* posted for waiting consumers after a put */
  sem_t writable;         /* posted for waiting producers after a get */
  uint32_t read_waiters;  /* consumers between "empty, will sleep" and wake */
  uint32_t read_posts;    /* posts of readable not yet taken by a waiter */
  uint32_t write_waiters; /* likewise for producers waiting for space */
  uint32_t write_posts;
  uint64_t head;    /* offset of the oldest frame; head <= tail */
  uint64_t tail;    /* offset past the newest frame; tail-head <= cap */
  uint64_t count;   /* frames between head and tail */
  uint64_t cap;     /* bytes in data[], a power of two */
  uint64_t repairs; /* times pp__ring_repair() found the ring inconsistent */
  unsigned char data[]; /* the frames */
};

/* A hint to the CPU that this is a spin-wait (the ring's lock, and the
 * process engine's threads waiting for tasks or results). */
static inline void pp__cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

/* Bytes a frame of `payload` bytes takes in the ring. */
static inline size_t pp__ring_frame_size(size_t payload) {
  return 8 + ((payload + 7) & ~(size_t)7);
}

/* Bytes of shared memory a ring of `cap` data bytes needs. */
size_t pp__ring_footprint(size_t cap);

/* Initialises `m`, in shared memory, as a mutex shared between processes
 * and robust: the next to lock it after its holder died is told so
 * (EOWNERDEAD) instead of waiting forever. 0 or an errno value. */
int pp__robust_mutex_init(pthread_mutex_t *m);

/* Initialises a ring at `r` (in shared memory, zeroed). 0 or -errno. */
int pp__ring_init(struct pp__ring *r, size_t cap);
void pp__ring_destroy(struct pp__ring *r);

/* Takes the ring's lock, repairing the ring if its owner died. */
void pp__ring_lock(struct pp__ring *r);
void pp__ring_unlock(struct pp__ring *r);

/* With the lock held: appends `n` frames laid out contiguously in `frames`
 * (`len` bytes, as built by pp__ring_frame_append()), if they fit. Returns 1 if
 * written, 0 if there is no room. Wakes a waiting consumer. */
int pp__ring_put_locked(struct pp__ring *r, const void *frames, size_t len,
                        size_t n);

/* pp__ring_put_locked() of frames given in `nparts` pieces, copied in turn
 * as if they were contiguous: a frame's header and a large payload are put
 * from where each lies, with no copy to join them first. */
int pp__ring_putv_locked(struct pp__ring *r, const struct iovec *parts,
                         int nparts, size_t n);

/* With the lock held: puts one whole frame (`len` bytes, as built by
 * pp__ring_frame_append()) before head, to be taken next, if it fits.
 * Returns 1 if written, 0 if there is no room. Only a producer whose death
 * ends the pool (the master) may call it: it has no repair step. */
int pp__ring_put_front_locked(struct pp__ring *r, const void *frame,
                              size_t len);

/* Appends the frames, waiting for room until `deadline_ns` (CLOCK_MONOTONIC,
 * 0: for ever). Returns 0, or -ETIMEDOUT. Takes and drops the lock. */
int pp__ring_put(struct pp__ring *r, const void *frames, size_t len, size_t n,
                 uint64_t deadline_ns);

/* pp__ring_put() of frames given in pieces (see pp__ring_putv_locked()). */
int pp__ring_putv(struct pp__ring *r, const struct iovec *parts, int nparts,
                  size_t n, uint64_t deadline_ns);

/* Deadlines for pp__ring_put() and pp__ring_get(): clock.h's PP__FOREVER
 * and PP__NOWAIT. */

/* Called under the lock for each frame taken off by pp__ring_get(), before head
 * moves: returns 1 to keep the frame in the caller's buffer, 0 to drop it. */
typedef int (*pp__ring_claim_fn)(void *ctx, void *payload, size_t len);

/* Who is taking frames off, for pp__ring_get(). */
struct pp__ring_reader {
  const _Atomic int *stop;   /* if set while the ring is empty: return 0 */
  _Atomic uint32_t *waiting; /* 1 while counted in read_waiters, so that a
                                reader that dies asleep can be forgotten */
  pp__ring_claim_fn claim;   /* NULL: keep every frame */
  void *ctx;
  uint32_t share; /* if not 0, take at most count / share
                     frames (at least one), so that a batch
                     never holds more than its share */
};

/* Takes up to `max` frames (and at most `cap` bytes) off the head into
 * `buf`, waiting until `deadline_ns` for one. Stores the bytes used in *len
 * (OUT) and returns the number of frames taken (dropped ones included: see
 * pp__ring_frame_next()), or -ETIMEDOUT. `rd` may be NULL. */
int pp__ring_get(struct pp__ring *r, void *buf, size_t cap, size_t max,
                 size_t *len, uint64_t deadline_ns,
                 const struct pp__ring_reader *rd);

/* Called by pp__ring_consume() for each frame, in place. */
typedef void (*pp__ring_frame_fn)(void *ctx, void *payload, size_t len);

/* For a ring with one consumer at a time (the caller serialises them),
 * which no producer dying can take over: calls fn(ctx, payload, len) on
 * up to `max` of the frames now in the ring, in order and in place, without
 * the lock (producers only write past tail, and head does not move
 * meanwhile); a frame that wraps around the end is copied into `bounce`
 * (`cap` bytes, at least the largest frame) first. Then moves head past
 * them and wakes waiting producers. Returns the number of frames. This
 * spares the copy that pp__ring_get() makes of every byte. */
size_t pp__ring_consume(struct pp__ring *r, void *bounce, size_t cap,
                        size_t max, pp__ring_frame_fn fn, void *ctx);

/* With the lock held: frames in the ring. */
uint64_t pp__ring_count_locked(const struct pp__ring *r);

/* Without the lock: frames in the ring, as a hint for spinning. */
uint64_t pp__ring_peek_count(const struct pp__ring *r);

/* Wakes every consumer waiting in pp__ring_get() (for shutdown). */
void pp__ring_wake_all(struct pp__ring *r);

/* Forgets a consumer that died while counted as waiting. */
void pp__ring_forget_reader(struct pp__ring *r);

/* Appends one frame made of `nparts` byte ranges to a local buffer at
 * `buf + *used` (capacity `cap`). Returns 0, or -1 if it does not fit. */
int pp__ring_frame_append(void *buf, size_t cap, size_t *used,
                          const struct iovec *parts, int nparts);

/* With the lock held: whether `len` more bytes fit. */
int pp__ring_fits_locked(const struct pp__ring *r, size_t len);

/* Waits, without the lock, until `len` bytes fit or `deadline_ns` passes.
 * Returns 0, or -ETIMEDOUT. */
int pp__ring_wait_space(struct pp__ring *r, size_t len, uint64_t deadline_ns);

/* Walks `len` bytes of frames in `buf`: the payload and its length of the
 * next kept frame at or after *off, advancing *off. Returns 0 at the end. */
int pp__ring_frame_next(const void *buf, size_t len, size_t *off,
                        void **payload, size_t *payload_len);

/* With the lock held: removes the frames that `keep` refuses (called with
 * the first 64 bytes, at most, of each payload and its whole length; the
 * master refuses those of cancelled tasks), moving the rest towards head
 * in their order. Returns the number removed. The caller is the only
 * producer that could die meanwhile without the whole pool dying (the
 * master), so the move needs no repair step. */
size_t pp__ring_compact_locked(struct pp__ring *r,
                               int (*keep)(void *ctx, const void *payload,
                                           size_t len),
                               void *ctx);

#endif
