/*
 * The shared region: one anonymous MAP_SHARED mapping, made before the first
 * fork and inherited by every worker. Anonymous means no name in /dev/shm:
 * when the last process that maps it exits, however it exits, the kernel
 * frees it, so no crash of the master can leak a segment.
 *
 * Layout, each part 64-byte aligned: struct shared | task ring | result
 * ring | slot words | worker records.
 */
#include "internal.h"
#include "testhook.h"

#include <errno.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#ifdef PP_TEST_HOOKS
volatile int pp_test_die_step;
volatile int pp_test_die_budget;
volatile int pp_test_fail_forks;
int pp_test_is_worker;
static struct shared *test_region;
/* The budget is shared by every worker of the test's pool; a ring tested
 * on its own uses the process's copy. */
int *pp_test_shared_budget(void) {
  return test_region ? (int *)&test_region->test_die_budget
                     : (int *)&pp_test_die_budget;
}
#endif

static size_t align64(size_t n) {
  return (n + 63) & ~(size_t)63;
}

static size_t next_pow2(size_t n) {
  size_t p = 64;
  while (p < n && p < ((size_t)1 << 62))
    p <<= 1;
  return p;
}

/* The largest frame payload: a task or a result of max_payload bytes. */
static size_t max_frame_for(size_t max_payload) {
  size_t task = sizeof(struct task_hdr) + 8 + pad8(max_payload);
  size_t result = sizeof(struct result_hdr) + sizeof(struct result_item) +
                  pad8(max_payload + PP_MESSAGE_MAX);
  return task > result ? task : result;
}

/* `private_map` (the thread engine) maps the same layout MAP_PRIVATE: the
 * slot words are needed, the rings never touched, nothing is shared. */
int shared_create(struct shared **out, int nworkers, size_t max_payload,
                  size_t ring_capacity, int private_map) {
  size_t max_frame = max_frame_for(max_payload);
  size_t cap, nslots, off_tasks, off_results, off_words, off_workers, len;
  struct shared *sh;
  unsigned char *base;
  int rc = PP_ESHM;

  if (max_payload > ((size_t)1 << 40) || ring_capacity > ((size_t)1 << 46))
    return PP_ESHM;
  cap = next_pow2(ring_capacity > ring_frame_size(max_frame)
                      ? ring_capacity
                      : ring_frame_size(max_frame));
  nslots = next_pow2(cap / 64);
  if (nslots < 256)
    nslots = 256;
  if (nslots > 65536)
    nslots = 65536;
  off_tasks = align64(sizeof(struct shared));
  off_results = off_tasks + align64(ring_footprint(cap));
  off_words = off_results + align64(ring_footprint(cap));
  off_workers = off_words + align64(nslots * sizeof(uint64_t));
  len = off_workers + align64((size_t)nworkers * sizeof(struct worker_record));

  base = mmap(NULL, len, PROT_READ | PROT_WRITE,
              (private_map ? MAP_PRIVATE : MAP_SHARED) | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED)
    return PP_ESHM;
  sh = (struct shared *)base;
  sh->map_len = len;
  sh->nslots = (uint32_t)nslots;
  sh->nworkers = (uint32_t)nworkers;
  sh->max_payload = max_payload;
  sh->max_frame = max_frame;
  sh->tasks = (struct ring *)(base + off_tasks);
  sh->results = (struct ring *)(base + off_results);
  sh->slot_words = (_Atomic uint64_t *)(base + off_words);
  sh->workers = (struct worker_record *)(base + off_workers);
  sh->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (sh->wake_fd < 0)
    goto out_unmap;
  if (ring_init(sh->tasks, cap) != 0)
    goto out_close_fd;
  if (ring_init(sh->results, cap) != 0)
    goto out_tasks;
#ifdef PP_TEST_HOOKS
  atomic_store(&sh->test_die_budget, pp_test_die_budget);
  test_region = sh;
#endif
  *out = sh;
  return 0;

out_tasks:
  ring_destroy(sh->tasks);
out_close_fd:
  close(sh->wake_fd);
out_unmap:
  munmap(base, len);
  return rc;
}

void shared_destroy(struct shared *sh) {
  if (!sh)
    return;
  ring_destroy(sh->results);
  ring_destroy(sh->tasks);
  close(sh->wake_fd);
  munmap(sh, sh->map_len);
}

/* The collector sets collector_asleep, then re-checks the result ring
 * before it polls; a waker exchanges the flag after its put. The seq_cst
 * pair guarantees one of them sees the other's write, so a result is never
 * left unnoticed, and only the first waker pays for the write(2). */
void shared_wake_collector(struct shared *sh) {
  if (atomic_exchange(&sh->collector_asleep, 0)) {
    uint64_t one = 1;
    ssize_t n = write(sh->wake_fd, &one, sizeof one);
    (void)n;
  }
}
