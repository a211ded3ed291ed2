/*
 * The MPI engine's faults, each a whole mpirun job that this suite starts
 * and watches (check_mpi.c holds the programs):
 *  - a supervisor rank SIGKILLed ends the job within seconds, with a
 *    message naming the rank, and leaves no process and nothing in
 *    /dev/shm behind (Open MPI 4.1
 *    has no ULFM: the job cannot go on without the rank);
 *  - a rank whose tasks differ refuses the pool, naming them.
 * A worker SIGKILLed under a supervisor is check_mpi's test: it fails only
 * its task, or is retried. No test measures speed: the bounds are ten
 * times or more what the right behaviour takes.
 */
#include "testutil.h"

#include <stdio.h>
#include <sys/wait.h>

#define RUN_MAX_S 60 /* `timeout` ends a job that hangs */

struct job {
  int status; /* of the shell: mpirun's, or 124 when it timed out */
  double seconds;
  char out[65536];
};

/* Runs a shell command line under `timeout`, capturing its output. */
static void run_job(const char *cmd, struct job *j) {
  char line[8192];
  double t0 = tu_now();
  size_t used = 0;
  FILE *f;

  snprintf(line, sizeof line, "timeout -k 5 %d %s 2>&1", RUN_MAX_S, cmd);
  ck_assert_ptr_nonnull(f = popen(line, "r"));
  j->out[0] = '\0';
  while (used + 1 < sizeof j->out &&
         fgets(j->out + used, (int)(sizeof j->out - used), f))
    used += strlen(j->out + used);
  j->status = pclose(f);
  j->status = WIFEXITED(j->status) ? WEXITSTATUS(j->status) : 128;
  j->seconds = tu_now() - t0;
}

/* Processes whose command line holds `token`. */
static int processes_with(const char *token) {
  DIR *d = opendir("/proc");
  struct dirent *e;
  int n = 0;

  while (d && (e = readdir(d)) != NULL) {
    char path[300], buf[4096];
    size_t len;
    FILE *f;
    if (e->d_name[0] < '0' || e->d_name[0] > '9')
      continue;
    snprintf(path, sizeof path, "/proc/%s/cmdline", e->d_name);
    if (!(f = fopen(path, "r")))
      continue;
    len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    for (size_t i = 0; i < len; i++)
      if (buf[i] == '\0')
        buf[i] = ' ';
    buf[len] = '\0';
    n += strstr(buf, token) != NULL;
  }
  if (d)
    closedir(d);
  return n;
}

START_TEST(test_rank_killed_ends_job) {
  static struct job j;
  char cmd[2048], page[256], token[64];

  int shm_before = tu_shm_entries();

  snprintf(token, sizeof token, "killrank-%d", (int)getpid());
  snprintf(page, sizeof page, "%s/%s.page", BINARY_DIR, token);
  snprintf(cmd, sizeof cmd, "%s --oversubscribe -np 3 %s %s killrank", MPIRUN,
           CHECK_MPI, page);
  run_job(cmd, &j);
  ck_assert_msg(j.status != 0 && j.status != 124,
                "mpirun exited %d after %.1f s:\n%s", j.status, j.seconds,
                j.out);
  ck_assert_msg(j.seconds < 20, "the job took %.1f s to end", j.seconds);
  ck_assert_msg(strstr(j.out, "rank 1") || strstr(j.out, "rank 2"),
                "no message names the rank:\n%s", j.out);
  for (int i = 0; i < 500 && processes_with(token) > 0; i++)
    usleep(10000);
  ck_assert_msg(processes_with(token) == 0, "processes of the job remain");
  ck_assert_msg(tu_shm_entries() <= shm_before,
                "the job left segments in /dev/shm");
  unlink(page);
}
END_TEST

START_TEST(test_manifest_mismatch_refused) {
  static struct job j;
  char cmd[2048], page[256];

  snprintf(page, sizeof page, "%s/manifest-%d.page", BINARY_DIR, (int)getpid());
  snprintf(cmd, sizeof cmd,
           "%s --oversubscribe -np 1 %s %s manifest : -np 1 %s", MPIRUN,
           CHECK_MPI, page, MPI_PEER);
  run_job(cmd, &j);
  ck_assert_msg(j.status != 124, "the job hung:\n%s", j.out);
  ck_assert_msg(strstr(j.out, "pp_pool_create: PP_EUNREGISTERED"),
                "the master did not refuse:\n%s", j.out);
  ck_assert_msg(strstr(j.out, "rank 1 refuses the pool: tasks missing here:"),
                "no refusal from rank 1:\n%s", j.out);
  ck_assert_msg(strstr(j.out, " gate") && strstr(j.out, " square"),
                "the missing tasks are not named:\n%s", j.out);
  ck_assert_msg(strstr(j.out, "tasks only here: peer_only"),
                "the extra task is not named:\n%s", j.out);
  unlink(page);
}
END_TEST

static Suite *make_mpi_faults_suite(void) {
  Suite *s = suite_create("mpi_faults");
  TCase *tc = tcase_create("faults");

  tcase_set_timeout(tc, 3 * RUN_MAX_S);
  tcase_add_test(tc, test_rank_killed_ends_job);
  tcase_add_test(tc, test_manifest_mismatch_refused);
  suite_add_tcase(s, tc);
  return s;
}

TU_MAIN(make_mpi_faults_suite)
