/*
 * Fault-injection hooks, compiled only into the procpool_testing library
 * (PP_TEST_HOOKS). A test sets pp_test_die_step in the master before the
 * pool forks; a worker that reaches that step of a ring operation while it
 * holds the ring's lock kills itself with SIGKILL, so the recovery path of
 * the robust mutex runs for real. In other builds the hook compiles away.
 */
#ifndef PP_TESTHOOK_H
#define PP_TESTHOOK_H

#ifdef PP_TEST_HOOKS
#include <signal.h>
#include <unistd.h>

/* The step of a ring operation at which a worker dies (0: none), and the
 * number of times it may still do so (so that replacements do not all die). */
extern volatile int pp_test_die_step;
extern volatile int pp_test_die_budget;
extern int pp_test_is_worker;

/* Forks the pool refuses to make, as if fork() failed (RLIMIT_NPROC cannot
 * be tested as root). */
extern volatile int pp_test_fail_forks;
#define PP_TEST_FORK_FAILS()                                                   \
  (pp_test_fail_forks > 0 ? (pp_test_fail_forks--, 1) : 0)

#define PP_TEST_STEP(step)                                                     \
  do {                                                                         \
    if (pp_test_is_worker && pp_test_die_step == (step) &&                     \
        __atomic_fetch_sub(pp_test_shared_budget(), 1, __ATOMIC_SEQ_CST) > 0)  \
      raise(SIGKILL);                                                          \
  } while (0)
int *pp_test_shared_budget(void);

/* The blocks a pool of processes lends for large results (*total, OUT)
 * and how many of them are free; 0 for other pools. */
struct pp_pool;
int pp_test_free_blocks(struct pp_pool *p, int *total);

/* How many of the pool's task frames have pages of their own, and (*max,
 * OUT) how many may (slots.c). */
int pp_test_paged_frames(struct pp_pool *p, int *max);
#else
#define PP_TEST_STEP(step) ((void)0)
#define PP_TEST_FORK_FAILS() 0
#endif

#endif
