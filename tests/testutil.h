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

/* Pids of the live (not zombie) children of this process into out[cap]
 * (out may be NULL); returns how many there are. */
static inline int tu_child_pids(pid_t *out, int cap) {
  DIR *d = opendir("/proc");
  struct dirent *e;
  int n = 0;
  if (!d)
    return -1;
  while ((e = readdir(d)) != NULL) {
    char path[300], buf[512], *p;
    FILE *f;
    int ppid;
    char state;
    if (e->d_name[0] < '0' || e->d_name[0] > '9')
      continue;
    snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
    if (!(f = fopen(path, "r")))
      continue;
    if (fgets(buf, sizeof buf, f) && (p = strrchr(buf, ')')) &&
        sscanf(p + 1, " %c %d", &state, &ppid) == 2 && ppid == getpid() &&
        state != 'Z') {
      if (out && n < cap)
        out[n] = atoi(e->d_name);
      n++;
    }
    fclose(f);
  }
  closedir(d);
  return n;
}

/* Number of live (not zombie) children of this process. */
static inline int tu_children(void) {
  return tu_child_pids(NULL, 0);
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
