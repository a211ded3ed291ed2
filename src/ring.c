/*
 * The shared-memory ring: see ring.h for the full/empty rule and the locking
 * rules. Producers write whole frames past `tail` and only then move `tail`
 * (one store), so a producer that dies mid-copy leaves nothing visible;
 * consumers copy frames out and only then move `head`, so a consumer that
 * dies mid-copy leaves the frames in place for the next one.
 */
#include "ring.h"
#include "testhook.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#define FRAME_DROPPED ((uint64_t)1 << 63)

/*
 * No wait here is unbounded. A process killed at the wrong instant can
 * swallow a wake-up meant for another: the kernel hands a futex wake (of
 * the robust lock, or of a semaphore) to a task that dies before it acts on
 * it, and a process that then takes the free lock does not inherit the
 * waiters bit, so nobody wakes the sleeper that is left. So the lock is
 * waited for in slices of LOCK_RECHECK_NS (it is held for microseconds), and
 * a semaphore in slices of SEM_RECHECK_NS, each followed by a fresh look:
 * a lost wake-up then costs one slice, not a pool that hangs.
 */
#define LOCK_RECHECK_NS 10000000u /* 10 ms */
#define SEM_RECHECK_NS 100000000u /* 100 ms */
#define LOCK_SPINS 64             /* tries before sleeping on the lock */

size_t pp__ring_footprint(size_t cap) {
  return sizeof(struct pp__ring) + cap;
}

int pp__robust_mutex_init(pthread_mutex_t *m) {
  pthread_mutexattr_t ma;
  int rc;

  if ((rc = pthread_mutexattr_init(&ma)) != 0)
    return rc;
  pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
  rc = pthread_mutex_init(m, &ma);
  pthread_mutexattr_destroy(&ma);
  return rc;
}

int pp__ring_init(struct pp__ring *r, size_t cap) {
  int rc;

  r->cap = cap;
  /* Offsets start at cap, not 0, so that a frame put back at the front
   * (pp__ring_put_front_locked()) never takes head below 0: head only
   * goes back over frames between head and tail, at most cap bytes. */
  r->head = r->tail = cap;
  if ((rc = pp__robust_mutex_init(&r->lock)) != 0)
    return -rc;
  if (sem_init(&r->readable, 1, 0) != 0)
    goto out_mutex;
  if (sem_init(&r->writable, 1, 0) != 0)
    goto out_readable;
  return 0;

out_readable:
  sem_destroy(&r->readable);
out_mutex:
  rc = errno;
  pthread_mutex_destroy(&r->lock);
  return -rc;
}

void pp__ring_destroy(struct pp__ring *r) {
  sem_destroy(&r->writable);
  sem_destroy(&r->readable);
  pthread_mutex_destroy(&r->lock);
}

/* Copies n bytes into the ring at logical offset `off`, in two parts when
 * the range wraps. */
static void copy_in(struct pp__ring *r, uint64_t off, const void *src,
                    size_t n) {
  size_t pos = off & (r->cap - 1), first = r->cap - pos;
  if (first > n)
    first = n;
  memcpy(r->data + pos, src, first);
  memcpy(r->data, (const char *)src + first, n - first);
}

static void copy_out(const struct pp__ring *r, uint64_t off, void *dst,
                     size_t n) {
  size_t pos = off & (r->cap - 1), first = r->cap - pos;
  if (first > n)
    first = n;
  memcpy(dst, r->data + pos, first);
  memcpy((char *)dst + first, r->data, n - first);
}

/* The payload length in the frame header at `off` (never wraps: frames
 * start 8-aligned and cap is a multiple of 8). */
static uint64_t frame_len_at(const struct pp__ring *r, uint64_t off) {
  uint64_t len;
  memcpy(&len, r->data + (off & (r->cap - 1)), 8);
  return len;
}

/*
 * Restores the invariants after a lock holder died. Its death can only have
 * happened at a pp__ring_step: the frames between head and tail are whole
 * (tail moves after the copy, head after the claims), so what can be wrong
 * is `count` (PUT_TAIL, GET_HEAD) and the waiter bookkeeping. Walking the
 * frames recomputes count; a frame that does not parse (memory scribbled on
 * by a dying task) truncates the ring there rather than trusting it.
 */
static void pp__ring_repair(struct pp__ring *r) {
  uint64_t off = r->head, n = 0;

  if (r->tail < r->head || r->tail - r->head > r->cap)
    r->tail = r->head;
  while (off < r->tail) {
    uint64_t len = frame_len_at(r, off) & ~FRAME_DROPPED;
    uint64_t size = pp__ring_frame_size(len);
    if (len > r->cap || size > r->tail - off)
      break;
    off += size;
    n++;
  }
  if (off != r->tail || n != r->count)
    r->repairs++;
  r->tail = off;
  __atomic_store_n(&r->count, n, __ATOMIC_RELAXED);
  if (r->read_posts > r->read_waiters)
    r->read_posts = r->read_waiters;
  if (r->write_posts > r->write_waiters)
    r->write_posts = r->write_waiters;
}

/* A CLOCK_REALTIME instant `ns` from now, for pthread_mutex_timedlock()
 * (the sanitizers know that call, not pthread_mutex_clocklock()). */
static struct timespec realtime_in(uint64_t ns) {
  struct timespec now, ts;
  clock_gettime(CLOCK_REALTIME, &now);
  ts = pp__timespec(ns + (uint64_t)now.tv_nsec);
  ts.tv_sec += now.tv_sec;
  return ts;
}

/* Waits for the lock, spinning first for LOCK_SPINS turns (it is held for
 * a copy: sleeping on its futex and being woken would cost both sides a
 * system call and a context switch), then in slices of LOCK_RECHECK_NS
 * (see above); repairs the ring if its owner died holding it. */
void pp__ring_lock(struct pp__ring *r) {
  int rc = pthread_mutex_trylock(&r->lock);

  for (int i = 0; rc == EBUSY && i < LOCK_SPINS; i++) {
    pp__cpu_relax();
    rc = pthread_mutex_trylock(&r->lock);
  }
  while (rc == EBUSY || rc == ETIMEDOUT) {
    struct timespec until = realtime_in(LOCK_RECHECK_NS);
    rc = pthread_mutex_timedlock(&r->lock, &until);
  }
  if (rc == EOWNERDEAD) {
    pp__ring_repair(r);
    pthread_mutex_consistent(&r->lock);
  }
}

void pp__ring_unlock(struct pp__ring *r) {
  pthread_mutex_unlock(&r->lock);
}

uint64_t pp__ring_count_locked(const struct pp__ring *r) {
  return r->count;
}

/* `count` is only written under the lock, with atomic stores, so that this
 * unlocked read is a fair hint (never a basis for taking a frame). */
uint64_t pp__ring_peek_count(const struct pp__ring *r) {
  return __atomic_load_n(&r->count, __ATOMIC_RELAXED);
}

/* Posts `sem` once for each waiter not yet posted for, at most `n` times. */
static void wake(sem_t *sem, uint32_t waiters, uint32_t *posts, size_t n) {
  while (*posts < waiters && n-- > 0) {
    (*posts)++;
    sem_post(sem);
  }
}

int pp__ring_fits_locked(const struct pp__ring *r, size_t len) {
  return r->cap - (r->tail - r->head) >= len;
}

int pp__ring_put_locked(struct pp__ring *r, const void *frames, size_t len,
                        size_t n) {
  struct iovec part = {(void *)frames, len};
  return pp__ring_putv_locked(r, &part, 1, n);
}

int pp__ring_putv_locked(struct pp__ring *r, const struct iovec *parts,
                         int nparts, size_t n) {
  size_t len = 0;
  uint64_t at = r->tail;

  for (int i = 0; i < nparts; i++)
    len += parts[i].iov_len;
  if (!pp__ring_fits_locked(r, len))
    return 0;
  for (int i = 0; i < nparts; at += parts[i].iov_len, i++)
    copy_in(r, at, parts[i].iov_base, parts[i].iov_len);
  PP_TEST_STEP(RING_STEP_PUT_COPIED);
  /* Frames are complete before tail covers them; the unlock publishes both
   * to the next locker. */
  r->tail += len;
  PP_TEST_STEP(RING_STEP_PUT_TAIL);
  __atomic_store_n(&r->count, r->count + n, __ATOMIC_RELAXED);
  wake(&r->readable, r->read_waiters, &r->read_posts, n);
  return 1;
}

int pp__ring_put_front_locked(struct pp__ring *r, const void *frame,
                              size_t len) {
  if (!pp__ring_fits_locked(r, len))
    return 0;
  copy_in(r, r->head - len, frame, len);
  /* The frame is complete before head covers it, as tail in a put. */
  r->head -= len;
  __atomic_store_n(&r->count, r->count + 1, __ATOMIC_RELAXED);
  wake(&r->readable, r->read_waiters, &r->read_posts, 1);
  return 1;
}

/* Sleeps on `sem` until posted, for at most one SEM_RECHECK_NS slice (see
 * above), or until `deadline_ns`; called and returns with the lock held,
 * counted in *waiters meanwhile. Returns 0 (posted, or the slice ended: the
 * caller looks again) or -ETIMEDOUT once the deadline has passed. */
static int wait_locked(struct pp__ring *r, sem_t *sem, uint32_t *waiters,
                       uint32_t *posts, _Atomic uint32_t *waiting,
                       uint64_t deadline_ns) {
  uint64_t until = pp__now_ns() + SEM_RECHECK_NS;
  int last_slice = deadline_ns != PP__FOREVER && deadline_ns <= until;
  struct timespec ts;
  int rc;

  if (last_slice)
    until = deadline_ns;
  ts = pp__timespec(until);
  (*waiters)++;
  if (waiting)
    *waiting = 1;
  pp__ring_unlock(r);
  while ((rc = sem_clockwait(sem, CLOCK_MONOTONIC, &ts)) != 0 && errno == EINTR)
    ;
  pp__ring_lock(r);
  if (waiting)
    *waiting = 0;
  if (*waiters > 0)
    (*waiters)--;
  if (rc == 0 && *posts > 0)
    (*posts)--;
  return rc != 0 && last_slice ? -ETIMEDOUT : 0;
}

int pp__ring_wait_space(struct pp__ring *r, size_t len, uint64_t deadline_ns) {
  int rc = 0;

  pp__ring_lock(r);
  while (!pp__ring_fits_locked(r, len)) {
    if ((deadline_ns != PP__FOREVER && pp__now_ns() >= deadline_ns) ||
        wait_locked(r, &r->writable, &r->write_waiters, &r->write_posts, NULL,
                    deadline_ns) != 0) {
      rc = pp__ring_fits_locked(r, len) ? 0 : -ETIMEDOUT;
      break;
    }
  }
  pp__ring_unlock(r);
  return rc;
}

int pp__ring_put(struct pp__ring *r, const void *frames, size_t len, size_t n,
                 uint64_t deadline_ns) {
  struct iovec part = {(void *)frames, len};
  return pp__ring_putv(r, &part, 1, n, deadline_ns);
}

int pp__ring_putv(struct pp__ring *r, const struct iovec *parts, int nparts,
                  size_t n, uint64_t deadline_ns) {
  int rc = 0;

  pp__ring_lock(r);
  while (!pp__ring_putv_locked(r, parts, nparts, n)) {
    if (deadline_ns == PP__NOWAIT ||
        (deadline_ns != PP__FOREVER && pp__now_ns() >= deadline_ns) ||
        wait_locked(r, &r->writable, &r->write_waiters, &r->write_posts, NULL,
                    deadline_ns) != 0) {
      rc = -ETIMEDOUT;
      break;
    }
  }
  pp__ring_unlock(r);
  return rc;
}

/* With the lock held and the ring not empty: copies up to `max` whole frames
 * (at most `cap` bytes) into buf, runs the claims, then moves head. */
static size_t take_locked(struct pp__ring *r, void *buf, size_t cap, size_t max,
                          size_t *len, const struct pp__ring_reader *rd) {
  uint64_t off = r->head;
  size_t n = 0, used, pos;

  while (n < max && off < r->tail) {
    uint64_t size = pp__ring_frame_size(frame_len_at(r, off) & ~FRAME_DROPPED);
    if (off + size - r->head > cap)
      break;
    off += size;
    n++;
  }
  used = (size_t)(off - r->head);
  copy_out(r, r->head, buf, used);
  PP_TEST_STEP(RING_STEP_GET_COPIED);
  for (pos = 0; rd && rd->claim && pos < used;) {
    uint64_t flen;
    memcpy(&flen, (char *)buf + pos, 8);
    if (!rd->claim(rd->ctx, (char *)buf + pos + 8, (size_t)flen)) {
      flen |= FRAME_DROPPED;
      memcpy((char *)buf + pos, &flen, 8);
    }
    pos += pp__ring_frame_size(flen & ~FRAME_DROPPED);
  }
  PP_TEST_STEP(RING_STEP_GET_CLAIMED);
  /* The claims are recorded before head passes the frames: a reader that
   * dies before this store leaves them to be taken (and refused) again. */
  r->head = off;
  PP_TEST_STEP(RING_STEP_GET_HEAD);
  __atomic_store_n(&r->count, r->count - n, __ATOMIC_RELAXED);
  wake(&r->writable, r->write_waiters, &r->write_posts, r->write_waiters);
  *len = used;
  return n;
}

int pp__ring_get(struct pp__ring *r, void *buf, size_t cap, size_t max,
                 size_t *len, uint64_t deadline_ns,
                 const struct pp__ring_reader *rd) {
  int rc = 0;

  *len = 0;
  pp__ring_lock(r);
  while (r->count == 0) {
    if ((rd && rd->stop && *rd->stop) || deadline_ns == PP__NOWAIT ||
        (deadline_ns != PP__FOREVER && pp__now_ns() >= deadline_ns)) {
      rc = (rd && rd->stop && *rd->stop) ? 0 : -ETIMEDOUT;
      goto out_unlock;
    }
    if (wait_locked(r, &r->readable, &r->read_waiters, &r->read_posts,
                    rd ? rd->waiting : NULL, deadline_ns) != 0 &&
        r->count == 0) {
      rc = -ETIMEDOUT;
      goto out_unlock;
    }
  }
  if (max == 0)
    max = 1;
  if (rd && rd->share && max > 1) {
    uint64_t fair = r->count / rd->share;
    max = fair < 1 ? 1 : (fair < max ? (size_t)fair : max);
  }
  rc = (int)take_locked(r, buf, cap, max, len, rd);
out_unlock:
  pp__ring_unlock(r);
  return rc;
}

size_t pp__ring_consume(struct pp__ring *r, void *bounce, size_t cap,
                        size_t max, pp__ring_frame_fn fn, void *ctx) {
  uint64_t head, tail, off;
  size_t n = 0;

  pp__ring_lock(r);
  head = r->head;
  tail = r->tail;
  pp__ring_unlock(r);
  for (off = head; off < tail && n < max; n++) {
    uint64_t len = frame_len_at(r, off) & ~FRAME_DROPPED;
    size_t pos = (size_t)((off + 8) & (r->cap - 1));
    if (len > tail - off - 8)
      break; /* cannot happen with whole frames: stop rather than trust */
    if (pos + len <= r->cap) {
      fn(ctx, r->data + pos, (size_t)len);
    } else if (len <= cap) {
      copy_out(r, off + 8, bounce, (size_t)len);
      fn(ctx, bounce, (size_t)len);
    }
    off += pp__ring_frame_size((size_t)len);
  }
  pp__ring_lock(r);
  /* Only this consumer moves head, so it is still where it was read; a
   * repair meanwhile (a producer died holding the lock) recounted the
   * frames from it, and may have cut off a frame that did not parse. */
  if (off > r->tail)
    off = r->tail;
  r->head = off;
  __atomic_store_n(&r->count, r->count > n ? r->count - n : 0,
                   __ATOMIC_RELAXED);
  if (r->head == r->tail)
    __atomic_store_n(&r->count, 0, __ATOMIC_RELAXED);
  wake(&r->writable, r->write_waiters, &r->write_posts, r->write_waiters);
  pp__ring_unlock(r);
  return n;
}

/* Posts once per waiter whatever the bookkeeping says: an extra post is a
 * spurious wake-up, a missing one a worker asleep for ever. */
void pp__ring_wake_all(struct pp__ring *r) {
  pp__ring_lock(r);
  for (uint32_t i = 0; i < r->read_waiters; i++)
    sem_post(&r->readable);
  r->read_posts = r->read_waiters;
  for (uint32_t i = 0; i < r->write_waiters; i++)
    sem_post(&r->writable);
  r->write_posts = r->write_waiters;
  pp__ring_unlock(r);
}

/* The dead reader may have taken a post without accounting for it, so the
 * count of posts in flight is lowered too: when it is wrong now, it is too
 * low, which costs a spurious wake-up, never a lost one. */
void pp__ring_forget_reader(struct pp__ring *r) {
  pp__ring_lock(r);
  if (r->read_waiters > 0)
    r->read_waiters--;
  if (r->read_posts > 0)
    r->read_posts--;
  if (r->read_posts > r->read_waiters)
    r->read_posts = r->read_waiters;
  pp__ring_unlock(r);
}

int pp__ring_frame_append(void *buf, size_t cap, size_t *used,
                          const struct iovec *parts, int nparts) {
  uint64_t len = 0;
  size_t size;
  char *p = (char *)buf + *used;

  for (int i = 0; i < nparts; i++)
    len += parts[i].iov_len;
  size = pp__ring_frame_size(len);
  if (cap - *used < size)
    return -1;
  memcpy(p, &len, 8);
  p += 8;
  for (int i = 0; i < nparts; i++) {
    if (parts[i].iov_len)
      memcpy(p, parts[i].iov_base, parts[i].iov_len);
    p += parts[i].iov_len;
  }
  memset(p, 0, size - 8 - len);
  *used += size;
  return 0;
}

int pp__ring_frame_next(const void *buf, size_t len, size_t *off,
                        void **payload, size_t *payload_len) {
  while (*off + 8 <= len) {
    uint64_t flen;
    memcpy(&flen, (const char *)buf + *off, 8);
    *payload = (char *)buf + *off + 8;
    *payload_len = (size_t)(flen & ~FRAME_DROPPED);
    *off += pp__ring_frame_size(*payload_len);
    if (!(flen & FRAME_DROPPED))
      return 1;
  }
  return 0;
}

/* Moves `n` bytes inside the ring from logical offset `src` down to `dst`
 * (dst < src), in pieces through a local buffer: each piece is read whole
 * before it is written, and lies before everything still to be read. */
static void move_down(struct pp__ring *r, uint64_t dst, uint64_t src,
                      size_t n) {
  unsigned char buf[4096];
  while (n > 0) {
    size_t k = n < sizeof buf ? n : sizeof buf;
    copy_out(r, src, buf, k);
    copy_in(r, dst, buf, k);
    src += k;
    dst += k;
    n -= k;
  }
}

size_t pp__ring_compact_locked(struct pp__ring *r,
                               int (*keep)(void *ctx, const void *payload,
                                           size_t len),
                               void *ctx) {
  uint64_t src = r->head, dst = r->head, kept = 0;
  size_t removed = 0;
  unsigned char first[64];

  while (src < r->tail) {
    uint64_t len = frame_len_at(r, src);
    uint64_t size = pp__ring_frame_size(len);
    size_t look = len < sizeof first ? (size_t)len : sizeof first;
    copy_out(r, src + 8, first, look);
    if (keep(ctx, first, (size_t)len)) {
      if (dst != src)
        move_down(r, dst, src, size);
      dst += size;
      kept++;
    } else {
      removed++;
    }
    src += size;
  }
  /* Frames are whole before tail covers them, as in a put. */
  r->tail = dst;
  __atomic_store_n(&r->count, kept, __ATOMIC_RELAXED);
  if (removed)
    wake(&r->writable, r->write_waiters, &r->write_posts, r->write_waiters);
  return removed;
}
