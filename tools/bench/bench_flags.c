/*
 * bench_flags: how close each mode of flags comes to the ideal time.
 *
 * DESIGN
 *   A flagserver with a fixed delay of 0.5 s per request is started on a
 *   free port; flags -a (194 flags) then runs against it in each mode at
 *   -m 1, 10 and 100 (sequential at -m 1 only). With m requests in flight
 *   and nothing else costing time, 194 flags take ceil(194 / m) rounds of
 *   0.5 s: that is the ideal, and the table shows each run's wall time
 *   against it. Each configuration runs --runs times (default 3; -m 1
 *   once), each into a fresh directory, and the best time counts, so that
 *   a busy machine shows less. The target is every concurrent mode within
 *   10% of the ideal; the exit status is 1 if one is not. --quick skips
 *   -m 1, which takes about 97 s per mode.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef FLAGS_PATH
#define FLAGS_PATH "flags"
#endif
#ifndef FLAGSERVER_PATH
#define FLAGSERVER_PATH "flagserver"
#endif

#define DELAY 0.5
#define NFLAGS 194
#define TOLERANCE 0.10

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Starts the flagserver with the fixed delay; stores its URL in `url`
 * (OUT) and returns its pid, or -1 after saying why. */
static pid_t start_server(const char *path, char *url, size_t size) {
  int fds[2], port;
  char line[256];
  FILE *out;
  pid_t pid;

  if (pipe(fds) < 0)
    return -1;
  pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    dup2(fds[1], STDOUT_FILENO);
    close(fds[0]);
    close(fds[1]);
    execl(path, path, "--port", "0", "--delay", "0.5", (char *)NULL);
    fprintf(stderr, "bench_flags: cannot run %s: %s\n", path, strerror(errno));
    _exit(127);
  }
  close(fds[1]);
  if (pid < 0 || !(out = fdopen(fds[0], "r")))
    goto out_fail;
  if (!fgets(line, sizeof line, out) ||
      sscanf(line, "Serving flags on http://127.0.0.1:%d/flags", &port) != 1) {
    fprintf(stderr, "bench_flags: no address from %s\n", path);
    fclose(out);
    goto out_kill;
  }
  /* The server may write more; the stream stays open so that it cannot
   * die of SIGPIPE, and the descriptor leaks into nothing (no exec). */
  snprintf(url, size, "http://127.0.0.1:%d/flags", port);
  return pid;
out_kill:
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  return -1;
out_fail:
  close(fds[0]);
  return -1;
}

/* Runs flags -a in `mode` with -m m; returns its wall time, or -1 if it
 * did not succeed. */
static double run_flags(const char *path, const char *url, const char *mode,
                        int m, const char *dir) {
  char mstr[16];
  double t0 = now();
  int status;
  pid_t pid;

  snprintf(mstr, sizeof mstr, "%d", m);
  pid = fork();
  if (pid == 0) {
    int null = open("/dev/null", O_WRONLY);
    dup2(null, STDOUT_FILENO);
    execl(path, path, "-a", "--mode", mode, "-m", mstr, "-s", url, "-o", dir,
          (char *)NULL);
    _exit(127);
  }
  if (pid < 0 || waitpid(pid, &status, 0) < 0)
    return -1;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "bench_flags: flags --mode %s -m %d failed (status %d)\n",
            mode, m, status);
    return -1;
  }
  return now() - t0;
}

/* Removes a run's output directory and the flags in it. */
static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(path);
}

/* Runs one configuration `runs` times, each into a fresh directory under
 * `dir`; returns the best wall time, or -1 if a run failed. */
static double best_of(const char *flags, const char *url, const char *mode,
                      int m, int runs, const char *dir) {
  double best = -1;

  for (int k = 0; k < runs; k++) {
    char out[256];
    double wall;
    snprintf(out, sizeof out, "%s/%s-%d-%d", dir, mode, m, k);
    wall = run_flags(flags, url, mode, m, out);
    nftw(out, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    if (wall < 0)
      return -1;
    if (best < 0 || wall < best)
      best = wall;
  }
  return best;
}

/* Prints one row; returns non-zero if a concurrent mode missed the target. */
static int print_row(const char *mode, int m, int runs, double wall,
                     double ideal, int concurrent) {
  int slow = concurrent && wall > ideal * (1 + TOLERANCE);
  printf("%-11s %4d %4d %9.2f %9.2f %7.3f%s\n", mode, m, runs, wall, ideal,
         wall / ideal, slow ? "  (> 10%)" : "");
  fflush(stdout);
  return slow;
}

int main(int argc, char **argv) {
  static const char *const modes[] = {"sequential", "threads", "processes",
                                      "async"};
  static const int ms[] = {1, 10, 100};
  const char *flags = FLAGS_PATH, *server = FLAGSERVER_PATH;
  char url[128], dir[] = "/tmp/bench_flags.XXXXXX";
  int quick = 0, runs = 3, missed = 0;
  pid_t srv;

  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--quick")) {
      quick = 1;
    } else if (!strcmp(argv[i], "--runs") && i + 1 < argc) {
      runs = atoi(argv[++i]);
    } else if (!strcmp(argv[i], "--flags") && i + 1 < argc) {
      flags = argv[++i];
    } else if (!strcmp(argv[i], "--flagserver") && i + 1 < argc) {
      server = argv[++i];
    } else {
      runs = 0;
      break;
    }
  }
  if (runs < 1) {
    fprintf(stderr, "usage: bench_flags [--quick] [--runs N] [--flags PATH] "
                    "[--flagserver PATH]\n");
    return 2;
  }
  if (!mkdtemp(dir)) {
    perror("bench_flags: mkdtemp");
    return 1;
  }
  if ((srv = start_server(server, url, sizeof url)) < 0) {
    missed = 1;
    goto out_rmdir;
  }
  printf("flags -a (%d flags), server delay %.1f s, %s\n", NFLAGS, DELAY, url);
  printf("best of %d runs (1 at -m 1)\n\n", runs);
  printf("%-11s %4s %4s %9s %9s %7s\n", "mode", "m", "runs", "wall (s)",
         "ideal (s)", "ratio");
  fflush(stdout);
  for (size_t i = 0; i < sizeof modes / sizeof *modes; i++) {
    for (size_t j = 0; j < sizeof ms / sizeof *ms; j++) {
      int m = ms[j], concurrent = i > 0, n = m == 1 ? 1 : runs;
      double ideal = ceil((double)NFLAGS / m) * DELAY, wall;
      if ((quick && m == 1) || (!concurrent && m > 1))
        continue;
      wall = best_of(flags, url, modes[i], m, n, dir);
      if (wall < 0)
        missed = 1;
      else
        missed |= print_row(modes[i], m, n, wall, ideal, concurrent);
    }
  }
  printf("\ntarget: every concurrent mode within %.0f%% of the ideal: %s\n",
         TOLERANCE * 100, missed ? "MISSED" : "met");
  fflush(stdout);
  kill(srv, SIGTERM);
  waitpid(srv, NULL, 0);
out_rmdir:
  nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
  return missed ? 1 : 0;
}
