/*
 * flagserver_timer: delayed answers without a sleeping thread each.
 *
 * DESIGN. A delayed request is never slept on: the handler suspends its
 * connection and pushes its wake-up time onto a min-heap; one timer
 * thread, shared by all sites, resumes each connection when its time
 * comes, and MHD then calls the handler again to answer. So 1,000
 * requests delayed by 1 s are all answered after about 1 s. The lock
 * guards the heap and `stopping`; it is held while suspending a
 * connection (so a stopping timer cannot miss it) but never while
 * resuming one, so it never nests inside MHD's own locks.
 */
#include "flagserver.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Monotonic time in nanoseconds. */
uint64_t fs_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Swaps heap entries i and j. */
static void heap_swap(struct timer *t, size_t i, size_t j) {
  struct wakeup w = t->heap[i];
  t->heap[i] = t->heap[j];
  t->heap[j] = w;
}

/* Pushes a wake-up; caller holds t->lock. Returns 0, or -1 (ENOMEM). */
static int heap_push(struct timer *t, uint64_t at, struct MHD_Connection *c) {
  size_t i;
  if (t->n == t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 1024;
    struct wakeup *h = realloc(t->heap, cap * sizeof *h);
    if (!h)
      return -1;
    t->heap = h;
    t->cap = cap;
  }
  i = t->n++;
  t->heap[i] = (struct wakeup){at, c};
  for (; i > 0 && t->heap[(i - 1) / 2].at > t->heap[i].at; i = (i - 1) / 2)
    heap_swap(t, i, (i - 1) / 2);
  return 0;
}

/* Removes and returns the earliest wake-up; caller holds t->lock and
 * t->n > 0. */
static struct MHD_Connection *heap_pop(struct timer *t) {
  struct MHD_Connection *c = t->heap[0].conn;
  size_t i = 0;
  t->heap[0] = t->heap[--t->n];
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < t->n && t->heap[l].at < t->heap[m].at)
      m = l;
    if (r < t->n && t->heap[r].at < t->heap[m].at)
      m = r;
    if (m == i)
      break;
    heap_swap(t, i, m);
    i = m;
  }
  return c;
}

/* Timer thread: resumes each parked connection at its wake-up time, all of
 * them at once when stopping. Resumes in batches outside the lock. */
static void *timer_main(void *arg) {
  struct timer *t = arg;
  struct MHD_Connection *due[256];

  pthread_mutex_lock(&t->lock);
  while (t->n > 0 || !t->stopping) {
    size_t k = 0;
    uint64_t now = fs_now_ns();
    while (t->n > 0 && k < 256 && (t->stopping || t->heap[0].at <= now))
      due[k++] = heap_pop(t);
    if (k > 0) {
      pthread_mutex_unlock(&t->lock);
      for (size_t i = 0; i < k; i++)
        MHD_resume_connection(due[i]);
      pthread_mutex_lock(&t->lock);
    } else if (t->n > 0) {
      struct timespec ts = {(time_t)(t->heap[0].at / 1000000000u),
                            (long)(t->heap[0].at % 1000000000u)};
      pthread_cond_timedwait(&t->cond, &t->lock, &ts);
    } else {
      pthread_cond_wait(&t->cond, &t->lock);
    }
  }
  pthread_mutex_unlock(&t->lock);
  return NULL;
}

/* Starts the timer thread. Returns 0, or an errno value. */
int fs_timer_start(struct timer *t) {
  pthread_condattr_t ca;
  int rc;

  memset(t, 0, sizeof *t);
  if ((rc = pthread_condattr_init(&ca)) != 0)
    return rc;
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  rc = pthread_cond_init(&t->cond, &ca);
  pthread_condattr_destroy(&ca);
  if (rc != 0)
    return rc;
  if ((rc = pthread_mutex_init(&t->lock, NULL)) != 0)
    goto out_destroy_cond;
  if ((rc = pthread_create(&t->thread, NULL, timer_main, t)) != 0)
    goto out_destroy_lock;
  return 0;

out_destroy_lock:
  pthread_mutex_destroy(&t->lock);
out_destroy_cond:
  pthread_cond_destroy(&t->cond);
  return rc;
}

/* Resumes everything still parked, stops and joins the thread, frees the
 * heap. No connection is suspended by us afterwards. */
void fs_timer_stop(struct timer *t) {
  pthread_mutex_lock(&t->lock);
  t->stopping = 1;
  pthread_cond_signal(&t->cond);
  pthread_mutex_unlock(&t->lock);
  pthread_join(t->thread, NULL);
  pthread_cond_destroy(&t->cond);
  pthread_mutex_destroy(&t->lock);
  free(t->heap);
  t->heap = NULL;
}

/* Suspends `conn` for `delay` seconds. Returns 1 if parked, 0 if the timer
 * is stopping or out of memory (answer now instead). */
int fs_timer_park(struct timer *t, struct MHD_Connection *conn, double delay) {
  uint64_t at = fs_now_ns() + (uint64_t)(delay * 1e9);
  int parked = 0;

  /* Suspend under the lock: fs_timer_stop() then either sees the entry and
   * resumes it, or has set `stopping` and we do not suspend at all. */
  pthread_mutex_lock(&t->lock);
  if (!t->stopping && heap_push(t, at, conn) == 0) {
    MHD_suspend_connection(conn);
    if (t->heap[0].conn == conn)
      pthread_cond_signal(&t->cond);
    parked = 1;
  }
  pthread_mutex_unlock(&t->lock);
  return parked;
}
