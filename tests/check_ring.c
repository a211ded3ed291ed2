/*
 * The shared-memory ring on its own: empty, full, wrap-around, blocking,
 * several producers and consumers in different processes, and recovery
 * after a process dies holding the lock at each step.
 */
#include "ring.h"
#include "testhook.h"
#include "testutil.h"

#include <errno.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>

static struct pp__ring *make_ring(size_t cap) {
  void *m = mmap(NULL, pp__ring_footprint(cap), PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ck_assert_ptr_ne(m, MAP_FAILED);
  memset(m, 0, pp__ring_footprint(cap));
  ck_assert_int_eq(pp__ring_init(m, cap), 0);
  return m;
}

static void free_ring(struct pp__ring *r) {
  size_t cap = r->cap;
  pp__ring_destroy(r);
  munmap(r, pp__ring_footprint(cap));
}

/* Puts one frame holding `len` bytes of value `v` (the first 8 bytes are a
 * u64 tag). */
static int put_tagged(struct pp__ring *r, uint64_t tag, size_t len,
                      uint64_t deadline) {
  unsigned char body[512];
  unsigned char frame[600];
  size_t used = 0;
  struct iovec iov = {body, len};
  ck_assert_uint_le(len, sizeof body);
  ck_assert_uint_ge(len, 8);
  memset(body, (int)(tag & 0xff), len);
  memcpy(body, &tag, 8);
  ck_assert_int_eq(pp__ring_frame_append(frame, sizeof frame, &used, &iov, 1),
                   0);
  return pp__ring_put(r, frame, used, 1, deadline);
}

/* Takes one frame and checks its bytes; returns its tag. */
static uint64_t get_tagged(struct pp__ring *r, uint64_t deadline, int *rc) {
  unsigned char buf[600];
  size_t len, off = 0, plen;
  void *payload;
  uint64_t tag;

  *rc = pp__ring_get(r, buf, sizeof buf, 1, &len, deadline, NULL);
  if (*rc <= 0)
    return 0;
  ck_assert(pp__ring_frame_next(buf, len, &off, &payload, &plen));
  memcpy(&tag, payload, 8);
  for (size_t i = 8; i < plen; i++)
    ck_assert_uint_eq(((unsigned char *)payload)[i], tag & 0xff);
  return tag;
}

START_TEST(test_empty) {
  struct pp__ring *r = make_ring(256);
  int rc;
  ck_assert_uint_eq(get_tagged(r, PP__NOWAIT, &rc), 0);
  ck_assert_int_eq(rc, -ETIMEDOUT);
  uint64_t t0 = pp__now_ns();
  get_tagged(r, pp__deadline_ns(0.05), &rc);
  ck_assert_int_eq(rc, -ETIMEDOUT);
  ck_assert_uint_ge(pp__now_ns() - t0, 40000000u);
  free_ring(r);
}
END_TEST

START_TEST(test_full) {
  struct pp__ring *r = make_ring(256);
  int n = 0, rc;
  /* 32-byte payloads make 40-byte frames: six fit in 256 bytes. */
  while (put_tagged(r, (uint64_t)n + 1, 32, PP__NOWAIT) == 0)
    n++;
  ck_assert_int_eq(n, 6);
  ck_assert_uint_eq(r->count, 6);
  ck_assert_int_eq(put_tagged(r, 99, 32, pp__deadline_ns(0.02)), -ETIMEDOUT);
  ck_assert_uint_eq(get_tagged(r, PP__NOWAIT, &rc), 1);
  ck_assert_int_eq(put_tagged(r, 7, 32, PP__NOWAIT), 0);
  for (uint64_t want = 2; want <= 7; want++)
    ck_assert_uint_eq(get_tagged(r, PP__NOWAIT, &rc), want);
  ck_assert_uint_eq(r->count, 0);
  free_ring(r);
}
END_TEST

/* A reader with a share takes at most count / share frames, at least one. */
START_TEST(test_share) {
  struct pp__ring *r = make_ring(1024);
  struct pp__ring_reader rd = {.share = 4};
  unsigned char buf[1024];
  size_t len;

  for (uint64_t i = 1; i <= 8; i++)
    ck_assert_int_eq(put_tagged(r, i, 8, PP__NOWAIT), 0);
  ck_assert_int_eq(pp__ring_get(r, buf, sizeof buf, 8, &len, PP__NOWAIT, &rd),
                   2);
  ck_assert_int_eq(pp__ring_get(r, buf, sizeof buf, 8, &len, PP__NOWAIT, &rd),
                   1);
  ck_assert_int_eq(pp__ring_get(r, buf, sizeof buf, 8, &len, PP__NOWAIT, NULL),
                   5);
  free_ring(r);
}
END_TEST

START_TEST(test_wrap_around) {
  struct pp__ring *r = make_ring(256);
  int rc;
  /* Sizes that do not divide the capacity make frames straddle the end. */
  for (uint64_t i = 1; i <= 5000; i++) {
    size_t len = 8 + (i * 37) % 150;
    ck_assert_int_eq(put_tagged(r, i, len, PP__NOWAIT), 0);
    if (i % 3 == 0)
      ck_assert_int_eq(put_tagged(r, i + 100000, 8 + i % 40, PP__NOWAIT), 0);
    ck_assert_uint_eq(get_tagged(r, PP__NOWAIT, &rc), i);
    if (i % 3 == 0)
      ck_assert_uint_eq(get_tagged(r, PP__NOWAIT, &rc), i + 100000);
  }
  ck_assert_uint_gt(r->head, 10 * r->cap);
  free_ring(r);
}
END_TEST

/* A frame put in pieces (pp__ring_putv()) reads back as one, also when
 * the pieces straddle the end; a frame that does not fit is refused whole. */
START_TEST(test_put_in_pieces) {
  struct pp__ring *r = make_ring(256);
  unsigned char frame[200], want[200], head[8], buf[256];
  size_t len, off, plen;
  void *payload;

  for (uint64_t i = 1; i <= 300; i++) {
    size_t body = 8 + (i * 29) % 150, cut = i % body;
    uint64_t flen = body;
    size_t size = pp__ring_frame_size(body);
    struct iovec parts[3] = {
        {head, 8}, {frame, cut}, {frame + cut, size - 8 - cut}};
    memset(frame, 0, sizeof frame);
    for (size_t k = 0; k < body; k++)
      frame[k] = (unsigned char)(i + k);
    memcpy(head, &flen, 8);
    memcpy(want, frame, body);
    ck_assert_int_eq(pp__ring_putv(r, parts, 3, 1, PP__NOWAIT), 0);
    ck_assert_int_eq(
        pp__ring_get(r, buf, sizeof buf, 1, &len, PP__NOWAIT, NULL), 1);
    off = 0;
    ck_assert(pp__ring_frame_next(buf, len, &off, &payload, &plen));
    ck_assert_uint_eq(plen, body);
    ck_assert_mem_eq(payload, want, body);
  }
  {
    unsigned char big[264] = {0};
    uint64_t flen = 256;
    struct iovec parts[2] = {{&flen, 8}, {big, 256}};
    ck_assert_int_eq(pp__ring_putv(r, parts, 2, 1, PP__NOWAIT), -ETIMEDOUT);
    ck_assert_uint_eq(r->tail, r->head);
  }
  free_ring(r);
}
END_TEST

/* What a consume saw: the tags in order, and whether each frame's bytes
 * were whole. */
struct consumed {
  uint64_t tags[16];
  size_t n;
  int torn;
};

static void note_frame(void *ctx, void *payload, size_t len) {
  struct consumed *c = ctx;
  uint64_t tag;
  memcpy(&tag, payload, 8);
  for (size_t i = 8; i < len; i++)
    if (((unsigned char *)payload)[i] != (tag & 0xff))
      c->torn = 1;
  if (c->n < 16)
    c->tags[c->n] = tag;
  c->n++;
}

/* pp__ring_consume() hands every frame over in order, where it lies or,
 * straddling the end, through the bounce buffer; then the room is free
 * and it takes at most `max` frames. */
START_TEST(test_consume_in_place) {
  struct pp__ring *r = make_ring(256);
  unsigned char bounce[600];
  uint64_t next = 1, want = 1;

  for (int round = 0; round < 2000; round++) {
    struct consumed c = {{0}, 0, 0};
    size_t got;
    while (put_tagged(r, next, 8 + (next * 37) % 90, PP__NOWAIT) == 0)
      next++;
    got = pp__ring_consume(r, bounce, sizeof bounce, round % 2 ? 2 : 64,
                           note_frame, &c);
    ck_assert_uint_eq(got, c.n);
    ck_assert_uint_ge(got, 1);
    ck_assert_msg(!c.torn, "frame %llu handed over torn",
                  (unsigned long long)want);
    for (size_t i = 0; i < got && i < 16; i++, want++)
      ck_assert_uint_eq(c.tags[i], want);
    if (round % 2)
      ck_assert_uint_le(got, 2);
    else
      ck_assert_uint_eq(r->count, 0);
  }
  ck_assert_uint_gt(r->head, 100 * r->cap);
  free_ring(r);
}
END_TEST

/* A frame put back at the front is taken next, before those queued, and
 * the offsets stay sane however often it happens. */
START_TEST(test_put_front) {
  struct pp__ring *r = make_ring(256);
  unsigned char frame[64];
  size_t used = 0;
  uint64_t tag = 99;
  struct iovec iov = {&tag, 8};
  int rc;

  ck_assert_int_eq(pp__ring_frame_append(frame, sizeof frame, &used, &iov, 1),
                   0);
  for (int round = 0; round < 1000; round++) {
    ck_assert_int_eq(put_tagged(r, 1, 8, PP__NOWAIT), 0);
    ck_assert_int_eq(put_tagged(r, 2, 8, PP__NOWAIT), 0);
    pp__ring_lock(r);
    ck_assert_int_eq(pp__ring_put_front_locked(r, frame, used), 1);
    pp__ring_unlock(r);
    ck_assert_uint_eq(get_tagged(r, PP__NOWAIT, &rc), 99);
    ck_assert_uint_eq(get_tagged(r, PP__NOWAIT, &rc), 1);
    ck_assert_uint_eq(get_tagged(r, PP__NOWAIT, &rc), 2);
    ck_assert_uint_eq(r->count, 0);
    ck_assert_uint_ge(r->head, r->cap);
  }
  while (put_tagged(r, 3, 8, PP__NOWAIT) == 0)
    ;
  pp__ring_lock(r);
  ck_assert_int_eq(pp__ring_put_front_locked(r, frame, used), 0); /* full */
  pp__ring_unlock(r);
  free_ring(r);
}
END_TEST

START_TEST(test_blocking_consumer_and_producer) {
  struct pp__ring *r = make_ring(128);
  int rc, status;
  pid_t pid = fork();
  if (pid == 0) {
    /* The consumer blocks until the parent puts. */
    int crc;
    uint64_t tag = get_tagged(r, PP__FOREVER, &crc);
    _exit(tag == 42 && crc == 1 ? 0 : 1);
  }
  usleep(50000);
  ck_assert_int_eq(put_tagged(r, 42, 16, PP__FOREVER), 0);
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);

  /* The producer blocks on a full ring until a child takes a frame. */
  while (put_tagged(r, 5, 16, PP__NOWAIT) == 0)
    ;
  pid = fork();
  if (pid == 0) {
    usleep(50000);
    int crc;
    get_tagged(r, PP__FOREVER, &crc);
    _exit(crc == 1 ? 0 : 1);
  }
  double t0 = tu_now();
  ck_assert_int_eq(put_tagged(r, 6, 16, PP__FOREVER), 0);
  ck_assert_double_ge(tu_now() - t0, 0.03);
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  (void)rc;
  free_ring(r);
}
END_TEST

#define PRODUCERS 3
#define CONSUMERS 3
#define PER_PRODUCER 20000

/* Three producer and three consumer processes; every frame arrives exactly
 * once and each producer's frames arrive in order at any one consumer. */
START_TEST(test_many_processes) {
  struct pp__ring *r = make_ring(1024);
  /* seen[p][i]: how many times frame i of producer p arrived. */
  unsigned char *seen =
      mmap(NULL, PRODUCERS * PER_PRODUCER, PROT_READ | PROT_WRITE,
           MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  _Atomic int *stop = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                           MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  pid_t pids[PRODUCERS + CONSUMERS];
  int status;

  ck_assert_ptr_ne(seen, MAP_FAILED);
  memset(seen, 0, PRODUCERS * PER_PRODUCER);
  for (int c = 0; c < CONSUMERS; c++) {
    if ((pids[c] = fork()) == 0) {
      struct pp__ring_reader rd = {.stop = stop};
      uint64_t last[PRODUCERS] = {0};
      unsigned char buf[4096];
      size_t len, off, plen;
      void *payload;
      int n, bad = 0;
      while ((n = pp__ring_get(r, buf, sizeof buf, 8, &len, PP__FOREVER, &rd)) >
             0) {
        off = 0;
        while (pp__ring_frame_next(buf, len, &off, &payload, &plen)) {
          uint64_t tag;
          memcpy(&tag, payload, 8);
          uint64_t p = tag >> 32, i = tag & 0xffffffff;
          if (p >= PRODUCERS || i >= PER_PRODUCER || (last[p] && i <= last[p]))
            bad = 1;
          last[p] = i;
          __atomic_fetch_add(&seen[p * PER_PRODUCER + i], 1, __ATOMIC_SEQ_CST);
        }
      }
      _exit(bad);
    }
  }
  for (int p = 0; p < PRODUCERS; p++) {
    if ((pids[CONSUMERS + p] = fork()) == 0) {
      for (uint64_t i = 0; i < PER_PRODUCER; i++)
        if (put_tagged(r, ((uint64_t)p << 32) | i, 8 + i % 24, PP__FOREVER))
          _exit(1);
      _exit(0);
    }
  }
  for (int p = 0; p < PRODUCERS; p++) {
    ck_assert_int_eq(waitpid(pids[CONSUMERS + p], &status, 0),
                     pids[CONSUMERS + p]);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  *stop = 1;
  pp__ring_wake_all(r);
  for (int c = 0; c < CONSUMERS; c++) {
    ck_assert_int_eq(waitpid(pids[c], &status, 0), pids[c]);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "consumer %d saw frames out of order", c);
  }
  for (int i = 0; i < PRODUCERS * PER_PRODUCER; i++)
    ck_assert_msg(seen[i] == 1, "frame %d arrived %d times", i, seen[i]);
  ck_assert_uint_eq(r->count, 0);
  munmap(seen, PRODUCERS * PER_PRODUCER);
  munmap((void *)stop, 4096);
  free_ring(r);
}
END_TEST

/* A child dies (SIGKILL) at step `_i` of a put or a get while it holds the
 * lock; the next locker repairs the ring, and what a reader then sees is
 * consistent: the frame is there exactly once or not at all. */
START_TEST(test_owner_dies_at_each_step) {
  int step = _i;
  struct pp__ring *r = make_ring(256);
  int status, rc;
  pid_t pid;

  ck_assert_int_eq(put_tagged(r, 1, 16, PP__NOWAIT), 0);
  pid = fork();
  if (pid == 0) {
    pp_test_is_worker = 1;
    pp_test_die_step = step;
    pp_test_die_budget = 1;
    int crc;
    if (step <= RING_STEP_PUT_TAIL)
      put_tagged(r, 2, 16, PP__NOWAIT);
    else
      get_tagged(r, PP__NOWAIT, &crc);
    _exit(0);
  }
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                "child did not die at step %d", step);
  pp__ring_lock(r); /* EOWNERDEAD: repaired here */
  uint64_t count = r->count;
  ck_assert_uint_eq(r->tail - r->head, count * pp__ring_frame_size(16));
  pp__ring_unlock(r);
  switch (step) {
  case RING_STEP_PUT_COPIED: /* invisible */
    ck_assert_uint_eq(count, 1);
    break;
  case RING_STEP_PUT_TAIL: /* visible, count repaired */
    ck_assert_uint_eq(count, 2);
    break;
  case RING_STEP_GET_COPIED:
  case RING_STEP_GET_CLAIMED: /* still there for the next reader */
    ck_assert_uint_eq(count, 1);
    break;
  case RING_STEP_GET_HEAD: /* gone, count repaired */
    ck_assert_uint_eq(count, 0);
    break;
  }
  for (uint64_t i = 0; i < count; i++)
    ck_assert_uint_eq(get_tagged(r, PP__NOWAIT, &rc), i + 1);
  ck_assert_uint_eq(get_tagged(r, PP__NOWAIT, &rc), 0);
  /* The ring works afterwards. */
  ck_assert_int_eq(put_tagged(r, 9, 24, PP__NOWAIT), 0);
  ck_assert_uint_eq(get_tagged(r, PP__NOWAIT, &rc), 9);
  free_ring(r);
}
END_TEST

/* ------------------------------------------------ swallowed wake-ups */

/* A process killed just after it was woken takes the wake-up with it. Here
 * the consumer's post is booked as made (read_posts) and never made: the
 * consumer, waiting for ever, must still find the frame put meanwhile. */
START_TEST(test_swallowed_post) {
  struct pp__ring *r = make_ring(256);
  int status, waiting = 0;
  pid_t pid = fork();

  if (pid == 0) {
    int crc;
    uint64_t tag = get_tagged(r, PP__FOREVER, &crc);
    _exit(tag == 7 && crc == 1 ? 0 : 1);
  }
  for (double t0 = tu_now(); !waiting && tu_now() - t0 < 10; usleep(1000)) {
    pp__ring_lock(r);
    if ((waiting = r->read_waiters == 1))
      r->read_posts = 1; /* its wake-up, already "on its way" */
    pp__ring_unlock(r);
  }
  ck_assert_msg(waiting, "the consumer never waited");
  /* The put posts nothing; should the consumer sleep for ever, Check's
   * timeout fails the test. */
  ck_assert_int_eq(put_tagged(r, 7, 16, PP__NOWAIT), 0);
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  free_ring(r);
}
END_TEST

#ifdef __GLIBC__
/* The glibc futex word of the ring's lock: its owner's tid, and this bit
 * when a waiter sleeps in the kernel. */
#define FUTEX_WAITERS_BIT 0x80000000u
static unsigned *lock_word(struct pp__ring *r) {
  return (unsigned *)&r->lock.__data.__lock;
}

static int lock_has_sleeper(struct pp__ring *r) {
  return (__atomic_load_n(lock_word(r), __ATOMIC_SEQ_CST) &
          FUTEX_WAITERS_BIT) != 0;
}

/* The same for the lock. When the waiter a futex wake went to dies before
 * taking the lock, and another process takes the free lock (without the
 * waiters bit) and frees it, the word is 0 and nobody is woken. The holder
 * here leaves that state directly: it clears the word and exits. The
 * process asleep on the lock must still get it. */
START_TEST(test_swallowed_lock_wakeup) {
  struct pp__ring *r = make_ring(256);
  int go[2], held[2], status;
  pid_t holder, waiter;
  char c = 0;

  ck_assert_int_eq(pipe(go), 0);
  ck_assert_int_eq(pipe(held), 0);
  if ((holder = fork()) == 0) {
    pp__ring_lock(r);
    if (write(held[1], &c, 1) != 1 || read(go[0], &c, 1) != 1)
      _exit(1);
    __atomic_store_n(lock_word(r), 0, __ATOMIC_SEQ_CST); /* no wake */
    _exit(0); /* the kernel sees a free lock: nothing to do at exit */
  }
  ck_assert_int_eq(read(held[0], &c, 1), 1);
  if ((waiter = fork()) == 0) {
    pp__ring_lock(r);
    pp__ring_unlock(r);
    _exit(0);
  }
  for (double t0 = tu_now(); !lock_has_sleeper(r) && tu_now() - t0 < 10;)
    usleep(1000);
  ck_assert_msg(lock_has_sleeper(r), "the waiter never slept on the lock");
  ck_assert_int_eq(write(go[1], &c, 1), 1);
  ck_assert_int_eq(waitpid(holder, &status, 0), holder);
  ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ck_assert_int_eq(waitpid(waiter, &status, 0), waiter); /* or times out */
  ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  close(go[0]);
  close(go[1]);
  close(held[0]);
  close(held[1]);
  free_ring(r);
}
END_TEST
#endif

static Suite *make_ring_suite(void) {
  Suite *s = suite_create("ring");
  TCase *tc = tcase_create("ring");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_empty);
  tcase_add_test(tc, test_full);
  tcase_add_test(tc, test_share);
  tcase_add_test(tc, test_wrap_around);
  tcase_add_test(tc, test_put_in_pieces);
  tcase_add_test(tc, test_consume_in_place);
  tcase_add_test(tc, test_put_front);
  tcase_add_test(tc, test_blocking_consumer_and_producer);
  tcase_add_test(tc, test_many_processes);
  tcase_add_loop_test(tc, test_owner_dies_at_each_step, RING_STEP_PUT_COPIED,
                      RING_STEP_COUNT);
  tcase_add_test(tc, test_swallowed_post);
#ifdef __GLIBC__
  tcase_add_test(tc, test_swallowed_lock_wakeup);
#endif
  suite_add_tcase(s, tc);
  return s;
}

TU_MAIN(make_ring_suite)
