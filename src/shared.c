/*
 * The process engine's shared region: one anonymous MAP_SHARED mapping,
 * made before the first fork and inherited by every worker. Anonymous
 * means no name in /dev/shm: when the last process that maps it exits,
 * however it exits, the kernel frees it, so no crash of the master can leak
 * a segment. (The slot words are a second such mapping, the slot table's.)
 *
 * Layout, each part 64-byte aligned: struct pp__shared | task ring |
 * result ring | worker records | block owners | blocks (page-aligned;
 * pages only a large result touches cost nothing).
 */
#include "proc.h"
#include "testhook.h"

#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#ifdef PP_TEST_HOOKS
volatile int pp_test_die_step;
volatile int pp_test_die_budget;
volatile int pp_test_fail_forks;
int pp_test_is_worker;
static struct pp__shared *test_region;
/* The budget is shared by every worker of the test's pool; a ring tested
 * on its own uses the process's copy. */
int *pp_test_shared_budget(void) {
  return test_region ? (int *)&test_region->test_die_budget
                     : (int *)&pp_test_die_budget;
}
#endif

#define BLOCKS_MAX 32
#define BLOCKS_BYTES ((size_t)64 << 20)

static size_t align64(size_t n) {
  return (n + 63) & ~(size_t)63;
}

/* Blocks of `block_size` bytes for large results: two per worker and two
 * more, as many as the results a map of large ones has in the master and
 * on their way at once, for pools whose results can be large, in at most
 * BLOCKS_BYTES (a pool with a huge max_payload has none). When all are
 * taken, a result is copied as any other. */
static uint32_t blocks_for(const pp_pool *p, size_t block_size) {
  size_t n = 2 * (size_t)p->nworkers + 2;

  if (p->opts.max_payload < PP__LARGE_RESULT)
    return 0;
  if (n > BLOCKS_BYTES / block_size)
    n = BLOCKS_BYTES / block_size;
  if (n > BLOCKS_MAX)
    n = BLOCKS_MAX;
  return n < 2 ? 0 : (uint32_t)n;
}

/* Makes every worker record's `alive` mutex (proc.h). 0, or an errno
 * value after undoing what was made. */
static int init_records(struct pp__shared *sh) {
  for (uint32_t i = 0; i < sh->nworkers; i++) {
    int rc = pp__robust_mutex_init(&sh->workers[i].alive);
    if (rc != 0) {
      while (i-- > 0)
        pthread_mutex_destroy(&sh->workers[i].alive);
      return rc;
    }
  }
  return 0;
}

static size_t next_pow2(size_t n) {
  size_t p = 64;
  while (p < n && p < ((size_t)1 << 62))
    p <<= 1;
  return p;
}

int pp__shared_create(struct pp__shared **out, const pp_pool *p) {
  size_t max_frame = p->st.max_frame;
  size_t ring_capacity = p->opts.ring_capacity;
  size_t cap, off_tasks, off_results, off_workers, off_owners, off_blocks, len,
      block_size = align64(p->opts.max_payload);
  uint32_t nblocks = blocks_for(p, block_size);
  struct pp__shared *sh;
  unsigned char *base;

  if (p->opts.max_payload > ((size_t)1 << 40) ||
      ring_capacity > ((size_t)1 << 46))
    return PP_ESHM;
  cap = next_pow2(ring_capacity > pp__ring_frame_size(max_frame)
                      ? ring_capacity
                      : pp__ring_frame_size(max_frame));
  off_tasks = align64(sizeof(struct pp__shared));
  off_results = off_tasks + align64(pp__ring_footprint(cap));
  off_workers = off_results + align64(pp__ring_footprint(cap));
  off_owners = off_workers +
               align64((size_t)p->nworkers * sizeof(struct pp__worker_record));
  off_blocks = (off_owners + nblocks * sizeof(uint32_t) + 4095) & ~(size_t)4095;
  len = off_blocks + (size_t)nblocks * block_size;

  base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1,
              0);
  if (base == MAP_FAILED)
    return PP_ESHM;
  sh = (struct pp__shared *)base;
  sh->map_len = len;
  sh->nslots = p->st.n;
  sh->nworkers = (uint32_t)p->nworkers;
  sh->max_payload = p->opts.max_payload;
  sh->max_frame = max_frame;
  sh->tasks = (struct pp__ring *)(base + off_tasks);
  sh->results = (struct pp__ring *)(base + off_results);
  sh->slot_words = p->st.words;
  sh->workers = (struct pp__worker_record *)(base + off_workers);
  sh->nblocks = nblocks;
  sh->block_size = block_size;
  sh->block_owner = (_Atomic uint32_t *)(base + off_owners); /* zero: free */
  sh->blocks = base + off_blocks;
  sh->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (sh->wake_fd < 0)
    goto out_unmap;
  if (pp__ring_init(sh->tasks, cap) != 0)
    goto out_close_fd;
  if (pp__ring_init(sh->results, cap) != 0)
    goto out_tasks;
  if (init_records(sh) != 0)
    goto out_results;
#ifdef PP_TEST_HOOKS
  atomic_store(&sh->test_die_budget, pp_test_die_budget);
  test_region = sh;
#endif
  *out = sh;
  return 0;

out_results:
  pp__ring_destroy(sh->results);
out_tasks:
  pp__ring_destroy(sh->tasks);
out_close_fd:
  close(sh->wake_fd);
out_unmap:
  munmap(base, len);
  return PP_ESHM;
}

void pp__shared_destroy(struct pp__shared *sh) {
  if (!sh)
    return;
#ifdef PP_TEST_HOOKS
  if (test_region == sh)
    test_region = NULL;
#endif
  for (uint32_t i = 0; i < sh->nworkers; i++)
    pthread_mutex_destroy(&sh->workers[i].alive);
  pp__ring_destroy(sh->results);
  pp__ring_destroy(sh->tasks);
  close(sh->wake_fd);
  munmap(sh, sh->map_len);
}

/* The collector sets collector_asleep, then re-checks the result ring
 * before it polls; a waker exchanges the flag after its put. The seq_cst
 * pair guarantees one of them sees the other's write, so a result is never
 * left unnoticed, and only the first waker pays for the write(2). While a
 * master thread takes results itself (`helpers`), nobody is woken: that
 * thread, leaving, looks at the ring once more and wakes the collector if
 * results wait (the same store-then-look pair, the other way round). */
void pp__shared_wake_collector(struct pp__shared *sh) {
  if (atomic_load(&sh->helpers) > 0)
    return; /* a master thread is taking results: see procs_help_wait() */
  pp__shared_poke_collector(sh);
}

void pp__shared_poke_collector(struct pp__shared *sh) {
  if (atomic_exchange(&sh->collector_asleep, 0)) {
    uint64_t one = 1;
    ssize_t n = write(sh->wake_fd, &one, sizeof one);
    (void)n;
  }
}
