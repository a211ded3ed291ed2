/*
 * Helpers shared by the Check suites: what a test leaves behind (child
 * processes, /dev/shm entries) and a main() that runs one suite.
 */
#ifndef PP_TESTUTIL_H
#define PP_TESTUTIL_H

#include <check.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* The state letter of process `pid` in /proc, or 0 when there is none;
 * *ppid (OUT, unless NULL) is its parent. */
static inline char tu_proc_state(int pid, int *ppid) {
  char path[64], buf[512], *p, state = 0;
  int parent = 0;
  FILE *f;
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  if (!(f = fopen(path, "r")))
    return 0;
  if (fgets(buf, sizeof buf, f) && (p = strrchr(buf, ')')))
    sscanf(p + 1, " %c %d", &state, &parent);
  fclose(f);
  if (ppid)
    *ppid = parent;
  return state;
}

/* Pids of the live (not zombie) children of `parent` into out[cap] (out
 * may be NULL); returns how many there are, -1 without /proc. */
static inline int tu_child_pids_of(pid_t parent, pid_t *out, int cap) {
  DIR *d = opendir("/proc");
  struct dirent *e;
  int n = 0;
  if (!d)
    return -1;
  while ((e = readdir(d)) != NULL) {
    int pid = atoi(e->d_name), ppid;
    char state = pid > 0 ? tu_proc_state(pid, &ppid) : 0;
    if (state == 0 || state == 'Z' || ppid != parent)
      continue;
    if (out && n < cap)
      out[n] = pid;
    n++;
  }
  closedir(d);
  return n;
}

/* Number of live (not zombie) children of this process. */
static inline int tu_children(void) {
  return tu_child_pids_of(getpid(), NULL, 0);
}

/* Number of entries in /dev/shm. */
static inline int tu_shm_entries(void) {
  DIR *d = opendir("/dev/shm");
  struct dirent *e;
  int n = 0;
  if (!d)
    return 0;
  /* Open MPI's shared-memory transport names its segments vader_segment.*
   * (and its PMIx server pmix_*): an MPI job beside these tests, such as
   * the MPI suites', makes them, procpool never does. */
  while ((e = readdir(d)) != NULL)
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
        strncmp(e->d_name, "vader_segment", 13) &&
        strncmp(e->d_name, "pmix", 4))
      n++;
  closedir(d);
  return n;
}

/* Waits up to `seconds` for this process to have no live children. */
static inline int tu_wait_no_children(double seconds) {
  for (int i = 0; i < (int)(seconds * 100); i++) {
    if (tu_children() == 0)
      return 1;
    struct timespec ts = {0, 10000000};
    nanosleep(&ts, NULL);
  }
  return tu_children() == 0;
}

static inline double tu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* main() for a file that defines make_<name>_suite(). */
#define TU_MAIN(make_suite)                                                    \
  int main(void) {                                                             \
    SRunner *sr = srunner_create(make_suite());                                \
    int failed;                                                                \
    srunner_run_all(sr, CK_NORMAL);                                            \
    failed = srunner_ntests_failed(sr);                                        \
    srunner_free(sr);                                                          \
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;                          \
  }

/* main() for a file whose suite covers both engines: runs make_suite()
 * once with `engine_var` (a pp_engine the tests read) set to each. */
#define TU_MAIN_ENGINES(make_suite, engine_var)                                \
  int main(void) {                                                             \
    int failed = 0;                                                            \
    for (int e = 0; e < 2; e++) {                                              \
      SRunner *sr;                                                             \
      engine_var = e ? PP_ENGINE_THREADS : PP_ENGINE_PROCESSES;                \
      sr = srunner_create(make_suite());                                       \
      srunner_run_all(sr, CK_NORMAL);                                          \
      failed += srunner_ntests_failed(sr);                                     \
      srunner_free(sr);                                                        \
    }                                                                          \
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;                          \
  }

#endif
