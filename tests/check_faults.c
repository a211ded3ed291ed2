/*
 * Fault injection: workers killed at random, workers dying while they hold
 * a ring's lock at each step, tasks that crash, hang or run past their
 * timeout, a master killed with SIGKILL, and pool creation failing (the
 * initializer, fork, shared memory). Every future must resolve exactly once
 * and nothing may be left behind. Check's per-test timeout is the watchdog
 * that turns a hang into a failure.
 */
#include "proc.h"
#include "procpool.h"
#include "testhook.h"
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>

static int shm_before;

static void setup(void) {
  shm_before = tu_shm_entries();
  pp_test_die_step = 0;
  pp_test_die_budget = 0;
  pp_test_fail_forks = 0;
}

static void teardown(void) {
  ck_assert_msg(tu_wait_no_children(5), "worker processes left behind");
  ck_assert_int_eq(tu_shm_entries(), shm_before);
}

/* Set in workers by their initializer. A task here may call exit(), which
 * in an ASan build runs LeakSanitizer in the worker, over the heap it
 * inherited from the test: that is not a leak, so LSan stands down there. */
static int in_worker;
int __lsan_is_turned_off(void);
int __lsan_is_turned_off(void) {
  return in_worker;
}

static int mark_worker(void *arg) {
  (void)arg;
  in_worker = 1;
  return 0;
}

static pp_pool *make_pool(int workers, unsigned retries) {
  pp_options o;
  pp_pool *p;
  pp_options_init(&o);
  o.workers = workers;
  o.retries = retries;
  o.initializer = mark_worker;
  ck_assert_int_eq(pp_pool_create(&p, &o), 0);
  return p;
}

static int square(pp_task *t, const void *arg, size_t len) {
  int64_t x;
  if (len != 8)
    return pp_task_fail(t, 1, "want 8 bytes");
  memcpy(&x, arg, 8);
  x *= x;
  return pp_task_return(t, &x, 8);
}

static int sleeper(pp_task *t, const void *arg, size_t len) {
  double s;
  (void)t;
  (void)len;
  memcpy(&s, arg, 8);
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
    ;
  return 0;
}

/* Dies the way its argument names: 1 abort, 2 SIGSEGV, 3 exit(3), 4
 * SIGKILL; otherwise answers 0. */
static int crasher(pp_task *t, const void *arg, size_t len) {
  int how;
  (void)t;
  (void)len;
  memcpy(&how, arg, sizeof how);
  switch (how) {
  case 1:
    abort();
  case 2:
    raise(SIGSEGV);
    break;
  case 3:
    exit(3);
  case 4:
    raise(SIGKILL);
    break;
  }
  return 0;
}

/* ---------------------------------------------------- random kills */

struct killer {
  pp_pool *pool;
  atomic_int stop;
  atomic_int kills;
};

/* Kills a random worker every 5 ms until told to stop. */
static void *kill_loop(void *arg) {
  struct killer *k = arg;
  unsigned seed = 12345;
  while (!k->stop) {
    int pids[16];
    int n = pp_pool_worker_pids(k->pool, pids, 16);
    if (n > 0 && kill(pids[rand_r(&seed) % n], SIGKILL) == 0)
      k->kills++;
    usleep(5000);
  }
  return NULL;
}

#define KILL_TASKS 100000

/* Orders futures by address, for qsort(). */
static int by_address(const void *a, const void *b) {
  const pp_future *x = *(pp_future *const *)a, *y = *(pp_future *const *)b;
  return x == y ? 0 : ((uintptr_t)x < (uintptr_t)y ? -1 : 1);
}

/* 100,000 futures while a worker dies every 5 ms: as_completed yields each
 * exactly once, either right or with an error naming SIGKILL. Run with no
 * retries and with two. */
START_TEST(test_random_kills) {
  unsigned retries = _i ? 2 : 0;
  pp_pool *p = make_pool(2, retries);
  pp_future **fs = calloc(KILL_TASKS, sizeof *fs);
  pp_future **yielded = calloc(KILL_TASKS, sizeof *yielded);
  struct killer k = {p, 0, 0};
  size_t nyielded = 0;
  pthread_t th;
  pp_completed *it;
  pp_future *f;
  int ok = 0, crashed = 0, rc;

  ck_assert_int_eq(pthread_create(&th, NULL, kill_loop, &k), 0);
  for (int64_t i = 0; i < KILL_TASKS; i++)
    ck_assert_int_eq(pp_submit(p, square, &i, 8, &fs[i]), 0);
  ck_assert_int_eq(pp_as_completed(fs, KILL_TASKS, PP_FOREVER, &it), 0);
  while ((rc = pp_completed_next(it, &f)) == 0) {
    ck_assert_uint_lt(nyielded, KILL_TASKS);
    yielded[nyielded++] = f;
    rc = pp_future_result(f, 0, NULL, NULL);
    if (rc == 0) {
      ok++;
    } else {
      ck_assert_int_eq(rc, PP_ECRASHED);
      ck_assert_msg(strstr(pp_future_message(f), "signal 9"),
                    "crash message does not name the signal: %s",
                    pp_future_message(f));
      crashed++;
    }
  }
  ck_assert_int_eq(rc, PP_EOF);
  k.stop = 1;
  pthread_join(th, NULL);
  /* Each future once: sorted, the yielded ones are all distinct. */
  ck_assert_uint_eq(nyielded, KILL_TASKS);
  qsort(yielded, nyielded, sizeof *yielded, by_address);
  for (size_t i = 1; i < nyielded; i++)
    ck_assert_ptr_ne(yielded[i - 1], yielded[i]);
  /* And right where it succeeded. */
  for (int64_t i = 0; i < KILL_TASKS; i++) {
    const void *d;
    size_t len;
    ck_assert(pp_future_done(fs[i]));
    if (pp_future_result(fs[i], 0, &d, &len) == 0) {
      int64_t v;
      ck_assert_uint_eq(len, 8);
      memcpy(&v, d, 8);
      ck_assert_int_eq(v, i * i);
    }
    pp_future_release(fs[i]);
  }
  ck_assert_int_eq(ok + crashed, KILL_TASKS);
  ck_assert_int_gt(k.kills, 0);
  if (retries)
    ck_assert_int_gt(ok, KILL_TASKS / 2);
  pp_completed_destroy(it);
  pp_pool_destroy(p);
  free(fs);
  free(yielded);
}
END_TEST

/* The arguments 0 .. n-1 as int64s, with the pointers and lengths of a
 * pp_map_array(). */
static void number_args(int64_t *args, const void **ptrs, size_t *lens, int n) {
  for (int j = 0; j < n; j++) {
    args[j] = j;
    ptrs[j] = &args[j];
    lens[j] = 8;
  }
}

/* The same through an ordered map with retries: every item answers, in
 * order, right or with an error naming SIGKILL. */
START_TEST(test_random_kills_map) {
  pp_pool *p = make_pool(2, 2);
  struct killer k = {p, 0, 0};
  enum { N = 50000 };
  static int64_t args[N];
  static const void *ptrs[N];
  static size_t lens[N];
  pp_map_options mo = {.chunksize = _i ? 50 : 1};
  pthread_t th;
  pp_map *m;
  const void *d;
  size_t len;
  int rc;
  int64_t i = 0;

  number_args(args, ptrs, lens, N);
  ck_assert_int_eq(pthread_create(&th, NULL, kill_loop, &k), 0);
  ck_assert_int_eq(pp_map_array(p, square, ptrs, lens, N, &mo, &m), 0);
  while ((rc = pp_map_next(m, &d, &len)) != PP_EOF) {
    ck_assert_uint_eq(pp_map_index(m), (size_t)i);
    if (rc == 0) {
      int64_t v;
      memcpy(&v, d, 8);
      ck_assert_int_eq(v, i * i);
    } else {
      ck_assert_int_eq(rc, PP_ECRASHED);
      ck_assert_ptr_nonnull(strstr(pp_map_message(m), "signal 9"));
    }
    i++;
  }
  ck_assert_int_eq(i, N);
  k.stop = 1;
  pthread_join(th, NULL);
  ck_assert_int_gt(k.kills, 0);
  pp_map_destroy(m);
  pp_pool_destroy(p);
}
END_TEST

/* A large result built in place (pp_task_buffer()), of 100,000 bytes
 * and more, each a pattern of its int64 argument. */
static int large_in_place(pp_task *t, const void *arg, size_t len) {
  int64_t seed = 0;
  size_t n;
  void *got;
  int rc;

  if (len == 8)
    memcpy(&seed, arg, 8);
  n = 100000 + (size_t)(seed % 7) * 1000;
  if ((rc = pp_task_buffer(t, n, &got)) != 0)
    return rc;
  for (size_t i = 0; i < n; i++)
    ((unsigned char *)got)[i] = (unsigned char)(seed + (int64_t)i * 13);
  return pp_task_return(t, got, n);
}

static int is_large_of(int64_t seed, const void *data, size_t len) {
  const unsigned char *b = data;
  if (len != 100000 + (size_t)(seed % 7) * 1000)
    return 0;
  for (size_t i = 0; i < len; i++)
    if (b[i] != (unsigned char)(seed + (int64_t)i * 13))
      return 0;
  return 1;
}

/* Large results travel in blocks of shared memory lent to the workers
 * while a worker dies every 5 ms: every item of the map answers right,
 * and once the map is gone every block is free again, those the dead
 * workers had included. */
START_TEST(test_random_kills_large_results) {
  enum { N = 3000 };
  static int64_t args[N];
  static const void *ptrs[N];
  static size_t lens[N];
  pp_pool *p = make_pool(2, 50);
  struct killer k = {p, 0, 0};
  pp_map_options mo = {.chunksize = 1};
  int ok = 0, total, rc;
  const void *d;
  pthread_t th;
  size_t len;
  pp_map *m;

  number_args(args, ptrs, lens, N);
  ck_assert_int_eq(pthread_create(&th, NULL, kill_loop, &k), 0);
  ck_assert_int_eq(pp_map_array(p, large_in_place, ptrs, lens, N, &mo, &m), 0);
  for (int64_t i = 0; (rc = pp_map_next(m, &d, &len)) != PP_EOF; i++) {
    ck_assert_uint_eq(pp_map_index(m), (size_t)i);
    if (rc == 0) {
      ck_assert_msg(is_large_of(i, d, len), "result %lld is wrong",
                    (long long)i);
      ok++;
    } else {
      ck_assert_int_eq(rc, PP_ECRASHED);
    }
  }
  k.stop = 1;
  pthread_join(th, NULL);
  pp_map_destroy(m);
  ck_assert_int_gt(k.kills, 0);
  ck_assert_int_gt(ok, N / 2);
  ck_assert_int_eq(pp_test_free_blocks(p, &total), total);
  ck_assert_int_gt(total, 0);
  pp_pool_destroy(p);
}
END_TEST

/* ------------------------------------------- a dead peer, seen at once */

/* Forks a process that takes place `rec` as a worker does and waits to be
 * killed; returns once it holds the place (within 10 s), or fails. */
static pid_t fork_place_holder(struct pp__worker_record *rec) {
  int ready[2];
  char c = 0;
  pid_t pid;

  ck_assert_int_eq(pipe(ready), 0);
  pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    pp__place_take(rec);
    if (write(ready[1], "x", 1) != 1)
      _exit(1);
    for (;;)
      pause();
  }
  close(ready[1]);
  ck_assert_msg(poll(&(struct pollfd){ready[0], POLLIN, 0}, 1, 10000) == 1 &&
                    read(ready[0], &c, 1) == 1 && c == 'x',
                "the place holder did not take its place within 10 s");
  close(ready[0]);
  return pid;
}

/* A worker's place reads empty the moment the worker is dead, however it
 * died, and again until a replacement takes it, which it does at once:
 * what lets the workers that remain give way to the reaper. */
START_TEST(test_dead_peer_seen) {
  struct pp__worker_record *rec =
      mmap(NULL, sizeof *rec, PROT_READ | PROT_WRITE,
           MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  pid_t pid;

  ck_assert_ptr_ne(rec, MAP_FAILED);
  ck_assert_int_eq(pp__robust_mutex_init(&rec->alive), 0);
  ck_assert_msg(pp__place_empty(rec), "a place never taken reads taken");
  for (int round = 0; round < 3; round++) {
    pid = fork_place_holder(rec);
    ck_assert_msg(!pp__place_empty(rec), "a live holder's place reads empty");
    ck_assert_msg(!pp__place_empty(rec), "looking took the place");
    ck_assert_int_eq(kill(pid, round == 1 ? SIGSEGV : SIGKILL), 0);
    ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
    ck_assert_msg(pp__place_empty(rec), "a dead holder's place reads taken");
    ck_assert_msg(pp__place_empty(rec), "a place seen empty reads taken");
  }
  pthread_mutex_destroy(&rec->alive);
  munmap(rec, sizeof *rec);
}
END_TEST

/* ------------------------------------------- deaths holding the lock */

/* A worker dies (once) at step _i of a ring operation while it holds the
 * lock; with one retry every task still succeeds and the pool goes on. */
START_TEST(test_die_holding_lock) {
  enum { N = 5000 };
  pp_pool *p;
  pp_map *m;
  const void *d;
  size_t len;
  int64_t i = 0;
  int rc;

  pp_test_die_step = _i;
  pp_test_die_budget = 1;
  p = make_pool(2, 1);
  static int64_t args[N];
  static const void *ptrs[N];
  static size_t lens[N];
  number_args(args, ptrs, lens, N);
  ck_assert_int_eq(pp_map_array(p, square, ptrs, lens, N, NULL, &m), 0);
  while ((rc = pp_map_next(m, &d, &len)) == 0) {
    int64_t v;
    memcpy(&v, d, 8);
    ck_assert_int_eq(v, i * i);
    i++;
  }
  ck_assert_msg(rc == PP_EOF, "item %ld failed: %s (%s)", (long)i,
                pp_errname(rc), pp_map_message(m));
  ck_assert_int_eq(i, N);
  ck_assert_msg(*pp_test_shared_budget() <= 0, "no worker reached step %d", _i);
  pp_map_destroy(m);
  /* Still healthy. */
  pp_future *f;
  int64_t x = 12;
  ck_assert_int_eq(pp_submit(p, square, &x, 8, &f), 0);
  ck_assert_int_eq(pp_future_result(f, 10, &d, &len), 0);
  ck_assert_int_eq(*(const int64_t *)d, 144);
  pp_future_release(f);
  pp_pool_destroy(p);
  pp_test_die_step = 0;
}
END_TEST

/* ------------------------------------------------- crashing tasks */

START_TEST(test_crash_kinds) {
  static const struct {
    int how;
    const char *says;
  } cases[] = {{1, "signal 6"},
               {2, "signal 11"},
               {3, "exited with status 3"},
               {4, "signal 9"}};
  pp_pool *p = make_pool(2, 0);
  pp_future *bad[4], *good[50];
  int zero = 0;

  for (int i = 0; i < 4; i++)
    ck_assert_int_eq(pp_submit(p, crasher, &cases[i].how, sizeof(int), &bad[i]),
                     0);
  for (int i = 0; i < 50; i++)
    ck_assert_int_eq(pp_submit(p, crasher, &zero, sizeof zero, &good[i]), 0);
  for (int i = 0; i < 4; i++) {
    ck_assert_int_eq(pp_future_result(bad[i], 30, NULL, NULL), PP_ECRASHED);
    ck_assert_msg(strstr(pp_future_message(bad[i]), cases[i].says),
                  "'%s' does not say '%s'", pp_future_message(bad[i]),
                  cases[i].says);
    pp_future_release(bad[i]);
  }
  for (int i = 0; i < 50; i++) {
    ck_assert_int_eq(pp_future_result(good[i], 30, NULL, NULL), 0);
    pp_future_release(good[i]);
  }
  /* Replacements are running. */
  int pids[2];
  for (int tries = 0; tries < 100 && pp_pool_worker_pids(p, pids, 2) < 2;
       tries++)
    usleep(10000);
  ck_assert_int_eq(pp_pool_worker_pids(p, pids, 2), 2);
  pp_pool_destroy(p);
}
END_TEST

static int *attempts; /* shared page: attempts per task */

/* Crashes on the first attempt at each argument, succeeds after. */
static int crash_once(pp_task *t, const void *arg, size_t len) {
  int i;
  (void)t;
  (void)len;
  memcpy(&i, arg, sizeof i);
  if (__atomic_fetch_add(&attempts[i], 1, __ATOMIC_SEQ_CST) == 0)
    raise(SIGKILL);
  return 0;
}

START_TEST(test_retries) {
  unsigned retries = (unsigned)_i;
  pp_pool *p;
  pp_future *fs[8];

  attempts = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ck_assert_ptr_ne(attempts, MAP_FAILED);
  p = make_pool(2, retries);
  for (int i = 0; i < 8; i++)
    ck_assert_int_eq(pp_submit(p, crash_once, &i, sizeof i, &fs[i]), 0);
  for (int i = 0; i < 8; i++) {
    int rc = pp_future_result(fs[i], 30, NULL, NULL);
    ck_assert_int_eq(rc, retries ? 0 : PP_ECRASHED);
    ck_assert_int_eq(attempts[i], retries ? 2 : 1);
    pp_future_release(fs[i]);
  }
  pp_pool_destroy(p);
  munmap(attempts, 4096);
}
END_TEST

/* Records in the shared page the order it ran in (attempts[100] counts,
 * attempts[200 + i] is argument i's place); argument 0 crashes on its
 * first attempt. */
static int note_order(pp_task *t, const void *arg, size_t len) {
  int i;
  (void)t;
  (void)len;
  memcpy(&i, arg, sizeof i);
  if (i == 0 && __atomic_fetch_add(&attempts[0], 1, __ATOMIC_SEQ_CST) == 0)
    raise(SIGKILL);
  attempts[200 + i] = __atomic_add_fetch(&attempts[100], 1, __ATOMIC_SEQ_CST);
  return 0;
}

/* A task whose worker died is retried ahead of the tasks queued behind
 * it, so an ordered map waits for it as little as possible: with one
 * worker, task 0 crashes once, and its retry runs before tasks 1..20. */
START_TEST(test_retry_goes_first) {
  pp_pool *p;
  pp_future *fs[21];

  attempts = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ck_assert_ptr_ne(attempts, MAP_FAILED);
  p = make_pool(1, 1);
  for (int i = 0; i <= 20; i++)
    ck_assert_int_eq(pp_submit(p, note_order, &i, sizeof i, &fs[i]), 0);
  for (int i = 0; i <= 20; i++) {
    ck_assert_int_eq(pp_future_result(fs[i], 30, NULL, NULL), 0);
    pp_future_release(fs[i]);
  }
  ck_assert_int_eq(attempts[0], 2);
  ck_assert_msg(attempts[200] == 1,
                "the retry of the crashed task ran in place %d, behind tasks "
                "queued after it",
                attempts[200]);
  pp_pool_destroy(p);
  munmap(attempts, 4096);
}
END_TEST

/* ------------------------------------------ timeouts and cancelling */

START_TEST(test_task_timeout) {
  pp_pool *p = make_pool(2, 0);
  double ten = 10, short_task = 0.01;
  pp_future *slow, *quick;
  int pids_before[2], pids_after[2];

  ck_assert_int_eq(pp_pool_worker_pids(p, pids_before, 2), 2);
  double t0 = tu_now();
  ck_assert_int_eq(pp_submit_timeout(p, sleeper, &ten, 8, 0.3, &slow), 0);
  ck_assert_int_eq(pp_submit_timeout(p, sleeper, &short_task, 8, 5, &quick), 0);
  ck_assert_int_eq(pp_future_result(slow, 30, NULL, NULL), PP_EDEADLINE);
  ck_assert_double_lt(tu_now() - t0, 9.0);
  ck_assert_ptr_nonnull(strstr(pp_future_message(slow), "timeout"));
  ck_assert_int_eq(pp_future_result(quick, 30, NULL, NULL), 0);
  /* The killed worker was replaced. */
  for (int tries = 0; tries < 100; tries++) {
    if (pp_pool_worker_pids(p, pids_after, 2) == 2 &&
        (pids_after[0] != pids_before[0] || pids_after[1] != pids_before[1]))
      break;
    usleep(10000);
  }
  ck_assert(pids_after[0] != pids_before[0] || pids_after[1] != pids_before[1]);
  pp_future_release(slow);
  pp_future_release(quick);
  pp_pool_destroy(p);
}
END_TEST

/* A map's per-task timeout fails only the item that ran too long. */
START_TEST(test_map_task_timeout) {
  pp_pool *p = make_pool(2, 0);
  double secs[3] = {0.01, 10, 0.01};
  const void *args[3] = {&secs[0], &secs[1], &secs[2]};
  size_t lens[3] = {8, 8, 8};
  pp_map_options mo = {.task_timeout = 0.3};
  pp_map *m;
  double t0 = tu_now();

  ck_assert_int_eq(pp_map_array(p, sleeper, args, lens, 3, &mo, &m), 0);
  ck_assert_int_eq(pp_map_next(m, NULL, NULL), 0);
  ck_assert_int_eq(pp_map_next(m, NULL, NULL), PP_EDEADLINE);
  ck_assert_uint_eq(pp_map_index(m), 1);
  ck_assert_int_eq(pp_map_next(m, NULL, NULL), 0);
  ck_assert_int_eq(pp_map_next(m, NULL, NULL), PP_EOF);
  ck_assert_double_lt(tu_now() - t0, 9.0);
  pp_map_destroy(m);
  pp_pool_destroy(p);
}
END_TEST

START_TEST(test_cancel_running) {
  pp_pool *p = make_pool(1, 0);
  double ten = 10;
  int64_t x = 9;
  pp_future *slow, *after;
  const void *d;

  ck_assert_int_eq(pp_submit(p, sleeper, &ten, 8, &slow), 0);
  for (int tries = 0; tries < 500 && !pp_future_running(slow); tries++)
    usleep(10000);
  ck_assert(pp_future_running(slow));
  ck_assert_int_eq(pp_future_cancel(slow), PP_EBUSY);
  double t0 = tu_now();
  ck_assert_int_eq(pp_future_cancel_running(slow), 0);
  ck_assert_int_eq(pp_future_result(slow, 30, NULL, NULL), PP_ECANCELLED);
  ck_assert(pp_future_cancelled(slow));
  ck_assert_double_lt(tu_now() - t0, 9.0);
  ck_assert_int_eq(pp_submit(p, square, &x, 8, &after), 0);
  ck_assert_int_eq(pp_future_result(after, 30, &d, NULL), 0);
  ck_assert_int_eq(*(const int64_t *)d, 81);
  ck_assert_int_eq(pp_future_cancel_running(after), PP_EINVAL);
  pp_future_release(slow);
  pp_future_release(after);
  pp_pool_destroy(p);
}
END_TEST

/* ------------------------------------------------ the master's death */

/* A child creates a pool busy with long tasks and is killed with SIGKILL:
 * its workers die too (this process is their subreaper, so it sees them,
 * once their own parent, the pool's spawner, has died as well). */
START_TEST(test_master_killed) {
  int fds[2], pids[2], status;
  pid_t master;

  ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  ck_assert_int_eq(pipe(fds), 0);
  master = fork();
  if (master == 0) {
    pp_pool *p = make_pool(2, 0);
    pp_future *f[4];
    double ten = 10;
    for (int i = 0; i < 4; i++)
      pp_submit(p, sleeper, &ten, 8, &f[i]);
    pp_pool_worker_pids(p, pids, 2);
    if (write(fds[1], pids, sizeof pids) != sizeof pids)
      _exit(1);
    pause();
    _exit(0);
  }
  close(fds[1]);
  ck_assert_int_eq(read(fds[0], pids, sizeof pids), (ssize_t)sizeof pids);
  kill(master, SIGKILL);
  ck_assert_int_eq(waitpid(master, &status, 0), master);
  double t0 = tu_now();
  for (int i = 0; i < 2; i++) {
    pid_t got;
    while (((got = waitpid(pids[i], &status, WNOHANG)) == 0 ||
            (got < 0 && errno == ECHILD)) &&
           tu_now() - t0 < 5)
      usleep(10000);
    ck_assert_msg(got == pids[i], "worker %d outlived its master", pids[i]);
    ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  }
  close(fds[0]);
}
END_TEST

/* ------------------------------------------------ creation failures */

static int failing_init(void *arg) {
  (void)arg;
  return 7;
}

START_TEST(test_creation_failures) {
  pp_options o;
  pp_pool *p = (pp_pool *)1;

  pp_options_init(&o);
  o.workers = 2;
  o.initializer = failing_init;
  ck_assert_int_eq(pp_pool_create(&p, &o), PP_EINIT);
  ck_assert_ptr_null(p);

  pp_options_init(&o);
  o.workers = 2;
  pp_test_fail_forks = 1; /* the first worker cannot be forked */
  ck_assert_int_eq(pp_pool_create(&p, &o), PP_EFORK);
  pp_test_fail_forks = 0;

  pp_options_init(&o);
  o.workers = 2;
  o.ring_capacity = (size_t)1 << 44; /* 2 x 16 TiB of shared memory */
  ck_assert_int_eq(pp_pool_create(&p, &o), PP_ESHM);
}
END_TEST

/* Submits n and returns how its task ended, its result checked. */
static int square_of(pp_pool *p, int64_t n) {
  pp_future *f;
  const void *data;
  size_t len;
  int rc = pp_submit(p, square, &n, sizeof n, &f);

  if (rc != 0)
    return rc;
  if ((rc = pp_future_result(f, 30, &data, &len)) == 0) {
    ck_assert_uint_eq(len, sizeof n);
    ck_assert_int_eq(*(const int64_t *)data, n * n);
  }
  pp_future_release(f);
  return rc;
}

/* Starting in the background, a failed fork is tried again later, and
 * fails the tasks only when no worker runs at all. */
START_TEST(test_background_fork_failures) {
  pp_options o;
  pp_pool *p;
  int pids[2];
  double t0;

  pp_options_init(&o);
  o.workers = 2;
  o.start_in_background = 1;
  pp_test_fail_forks = 1; /* the first worker cannot be forked */
  ck_assert_int_eq(pp_pool_create(&p, &o), 0);
  /* Its place is filled after a backoff. Submits wait for it: they
   * allocate, which must not race a fork under ASan (see procpool.h). */
  t0 = tu_now();
  while (pp_pool_worker_pids(p, pids, 2) < 2 && tu_now() - t0 < 5)
    usleep(1000);
  ck_assert_int_eq(pp_pool_worker_pids(p, pids, 2), 2);
  for (int64_t i = 0; i < 20; i++)
    ck_assert_int_eq(square_of(p, i), 0);
  pp_pool_destroy(p);

  pp_test_fail_forks = 2; /* neither can */
  ck_assert_int_eq(pp_pool_create(&p, &o), 0);
  ck_assert_int_eq(square_of(p, 3), PP_EFORK);
  pp_pool_destroy(p);
}
END_TEST

/* ------------------------------------------------------ the spawner */

/* Whether process `pid` is gone (or a zombie nobody reaped yet). */
static int gone(pid_t pid) {
  char state = tu_proc_state(pid, NULL);
  return state == 0 || state == 'Z' || state == 'X';
}

/* Where a starting worker moves: away from a CPU a live peer holds, to
 * its predecessor's CPU when that is free, else to the lowest free one;
 * nowhere when it is on a free CPU already, or no CPU is free. */
START_TEST(test_free_cpu_choice) {
  cpu_set_t free_cpus;

  CPU_ZERO(&free_cpus);
  ck_assert_int_eq(pp__cpu_to_take(&free_cpus, 0, 1), -1); /* none free */
  CPU_SET(1, &free_cpus);
  CPU_SET(3, &free_cpus);
  ck_assert_int_eq(pp__cpu_to_take(&free_cpus, 1, 3), -1); /* here is free */
  ck_assert_int_eq(pp__cpu_to_take(&free_cpus, 0, 3), 3);  /* predecessor's */
  ck_assert_int_eq(pp__cpu_to_take(&free_cpus, 0, 2), 1);  /* lowest free */
  ck_assert_int_eq(pp__cpu_to_take(&free_cpus, 0, -1), 1); /* no predecessor */
  ck_assert_int_eq(pp__cpu_to_take(&free_cpus, -1, 3), 3); /* here unknown */
}
END_TEST

/* The spawner, SIGKILLed from outside, takes its workers with it: what
 * they ran is retried, a new spawner forks their replacements, the pool
 * goes on, and nothing is left after it. */
START_TEST(test_spawner_killed) {
  pp_pool *p = make_pool(2, 2);
  pid_t spawner, again;
  int pids[2], later[2];
  pp_future *f[4];
  double quarter = 0.25, t0;
  const void *d;

  ck_assert_int_eq(tu_child_pids_of(getpid(), &spawner, 1),
                   1); /* the pool's only */
  ck_assert_int_eq(pp_pool_worker_pids(p, pids, 2), 2);
  for (int i = 0; i < 4; i++)
    ck_assert_int_eq(pp_submit(p, sleeper, &quarter, 8, &f[i]), 0);
  t0 = tu_now();
  while (!pp_future_running(f[0]) && tu_now() - t0 < 10)
    usleep(1000);
  ck_assert(pp_future_running(f[0]));
  ck_assert_int_eq(kill(spawner, SIGKILL), 0);
  for (int i = 0; i < 4; i++) {
    int rc = pp_future_result(f[i], 30, &d, NULL);
    ck_assert_msg(rc == 0, "task %d: %s (%s)", i, pp_errname(rc),
                  pp_future_message(f[i]));
    pp_future_release(f[i]);
  }
  for (int i = 0; i < 2; i++) {
    t0 = tu_now();
    while (!gone(pids[i]) && tu_now() - t0 < 10)
      usleep(1000);
    ck_assert_msg(gone(pids[i]), "worker %d outlived its spawner", pids[i]);
  }
  ck_assert_int_eq(square_of(p, 7), 0);
  ck_assert_int_eq(pp_pool_worker_pids(p, later, 2), 2);
  for (int i = 0; i < 2; i++)
    ck_assert(later[i] != pids[0] && later[i] != pids[1]);
  ck_assert_int_eq(tu_child_pids_of(getpid(), &again, 1), 1);
  ck_assert_int_ne(again, spawner);
  pp_pool_destroy(p);
  ck_assert_int_eq(tu_children(), 0);
}
END_TEST

/* Answers the scheduling policy the worker runs under. */
static int policy_of_worker(pp_task *t, const void *arg, size_t len) {
  int64_t policy = sched_getscheduler(0) & ~SCHED_RESET_ON_FORK;
  (void)arg;
  (void)len;
  return pp_task_return(t, &policy, sizeof policy);
}

/* The 8-byte answer of task `fn`, run once on a worker of `p`. */
static int64_t answer_of(pp_pool *p, pp_task_fn fn) {
  pp_future *f;
  const void *data;
  size_t len;
  int64_t v = -1;

  ck_assert_int_eq(pp_submit(p, fn, NULL, 0, &f), 0);
  ck_assert_int_eq(pp_future_result(f, 30, &data, &len), 0);
  ck_assert_uint_eq(len, sizeof v);
  memcpy(&v, data, sizeof v);
  pp_future_release(f);
  return v;
}

/* Kills the one worker of `p` and waits for its replacement. */
static void replace_the_worker(pp_pool *p) {
  int pid, again = 0;
  double t0;

  ck_assert_int_eq(pp_pool_worker_pids(p, &pid, 1), 1);
  ck_assert_int_eq(kill(pid, SIGKILL), 0);
  t0 = tu_now();
  while ((pp_pool_worker_pids(p, &again, 1) < 1 || again == pid) &&
         tu_now() - t0 < 10)
    usleep(1000);
  ck_assert_int_ne(again, pid);
}

/* Workers, first ones and replacements alike, set themselves to
 * SCHED_BATCH (procpool.h), whatever the thread that forked them runs as
 * (the reaper is an ordinary thread). */
START_TEST(test_workers_batch_policy) {
  pp_pool *p = make_pool(1, 0);

  ck_assert_int_eq(answer_of(p, policy_of_worker), SCHED_BATCH);
  replace_the_worker(p);
  ck_assert_int_eq(answer_of(p, policy_of_worker), SCHED_BATCH);
  pp_pool_destroy(p);
}
END_TEST

static int64_t set_after_start; /* written by the test after the pool starts */

static int answer_set_after_start(pp_task *t, const void *arg, size_t len) {
  (void)arg;
  (void)len;
  return pp_task_return(t, &set_after_start, sizeof set_after_start);
}

/* Every worker, a replacement too, starts as a copy of the master as it
 * was when the pool started (procpool.h): what the master writes later,
 * neither sees. */
START_TEST(test_workers_copy_the_start) {
  pp_pool *p;

  set_after_start = 1;
  p = make_pool(1, 0);
  set_after_start = 2;
  ck_assert_int_eq(answer_of(p, answer_set_after_start), 1);
  replace_the_worker(p);
  ck_assert_int_eq(answer_of(p, answer_set_after_start), 1);
  pp_pool_destroy(p);
}
END_TEST

static Suite *make_faults_suite(void) {
  Suite *s = suite_create("faults");
  TCase *tc = tcase_create("kills");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 240);
  tcase_add_loop_test(tc, test_random_kills, 0, 2);
  tcase_add_loop_test(tc, test_random_kills_map, 0, 2);
  tcase_add_test(tc, test_random_kills_large_results);
  tcase_add_test(tc, test_dead_peer_seen);
  tcase_add_loop_test(tc, test_die_holding_lock, 1, 6);
  suite_add_tcase(s, tc);
  tc = tcase_create("tasks");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_crash_kinds);
  tcase_add_loop_test(tc, test_retries, 0, 2);
  tcase_add_test(tc, test_retry_goes_first);
  tcase_add_test(tc, test_task_timeout);
  tcase_add_test(tc, test_map_task_timeout);
  tcase_add_test(tc, test_cancel_running);
  tcase_add_test(tc, test_master_killed);
  tcase_add_test(tc, test_creation_failures);
  tcase_add_test(tc, test_background_fork_failures);
  tcase_add_test(tc, test_workers_batch_policy);
  tcase_add_test(tc, test_free_cpu_choice);
  tcase_add_test(tc, test_spawner_killed);
  tcase_add_test(tc, test_workers_copy_the_start);
  suite_add_tcase(s, tc);
  return s;
}

TU_MAIN(make_faults_suite)
