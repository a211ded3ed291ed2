/*
 * The ceiling of the throughput benchmark: what the hardware does with
 * tiny items between two processes when nothing else is paid for. A child
 * produces n int64s into a single-producer, single-consumer ring in shared
 * memory, publishing its index after every item; the parent consumes and
 * sums them. Both busy-poll (nothing sleeps, nothing locks), and head and
 * tail sit on cache lines of their own. A side that has waited SPINS turns
 * yields its core, so that on a busy machine (or one core) the ring still
 * moves a time slice's worth of items at a time. procpool's rates are
 * printed as a fraction of this one, measured in the same run.
 */
#include "tiny.h"

#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define SLOTS (1u << 20) /* a power of two: 8 MiB of items */
#define SPINS 4096       /* turns of a wait before giving the core away */

struct spsc {
  _Alignas(64) _Atomic uint64_t tail; /* written by the producer */
  _Alignas(64) _Atomic uint64_t head; /* written by the consumer */
  _Alignas(64) int64_t item[SLOTS];
};

/* The producer: items 0 .. n-1, each published with a release store. */
static void produce(struct spsc *r, long n) {
  uint64_t tail = 0, head = 0;
  for (long i = 0; i < n; i++) {
    for (unsigned spin = 0; tail - head == SLOTS; spin++) { /* full */
      if (spin % SPINS == SPINS - 1)
        sched_yield();
      head = atomic_load_explicit(&r->head, memory_order_acquire);
    }
    r->item[tail & (SLOTS - 1)] = i;
    atomic_store_explicit(&r->tail, ++tail, memory_order_release);
  }
}

double tiny_bench_ceiling(long n) {
  struct spsc *r = mmap(NULL, sizeof *r, PROT_READ | PROT_WRITE,
                        MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  uint64_t head = 0, tail = 0, sum = 0;
  double t0;
  pid_t pid;

  if (r == MAP_FAILED)
    tiny_die("mmap", PP_ESHM);
  t0 = tiny_now();
  if ((pid = fork()) < 0)
    tiny_die("fork", PP_EFORK);
  if (pid == 0) {
    produce(r, n);
    _exit(0);
  }
  while (head < (uint64_t)n) {
    for (unsigned spin = 0; head == tail; spin++) { /* empty */
      if (spin % SPINS == SPINS - 1)
        sched_yield();
      tail = atomic_load_explicit(&r->tail, memory_order_acquire);
    }
    sum += (uint64_t)r->item[head & (SLOTS - 1)];
    atomic_store_explicit(&r->head, ++head, memory_order_release);
  }
  t0 = tiny_now() - t0;
  waitpid(pid, NULL, 0);
  munmap(r, sizeof *r);
  if (sum != (uint64_t)n * (uint64_t)(n - 1) / 2)
    tiny_die("ceiling sum", PP_EINVAL);
  return (double)n / t0;
}
