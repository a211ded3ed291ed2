/*
 * flagserver: serves flag GIFs over HTTP for the flags downloader, fast,
 * slow or failing on purpose, like the classic slow_server.
 *
 * DESIGN. Images live in memory (flagserver_flagset.c); requests are
 * decided in flagserver_handler.c and delayed by flagserver_timer.c.
 *
 * One libmicrohttpd daemon per site (one site, or three with --labels),
 * each with its own polling thread; one timer thread serves them all.
 *
 * Threads and locks: each site's counters and random state are touched
 * only by its daemon's polling thread (and read by main after the daemon
 * has stopped). The timer's lock guards the heap and `stopping`; it is
 * held while suspending a connection (so a stopping timer cannot miss it)
 * but never while resuming one, so it never nests inside MHD's own locks.
 * SIGINT and SIGTERM are blocked in every thread and taken by
 * sigtimedwait() in main, which meanwhile sweeps slow request heads out
 * of every site (flagserver_guard.c). Once stopped, it stops accepting,
 * stops the timer (so parked requests are answered at once), waits
 * briefly for answers under way, stops the daemons, prints the summary
 * and frees everything.
 */
#include "flagserver.h"

#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Opens a non-blocking listening socket on addr:port for s, noting the port
 * actually bound. Exits with a usage error if addr is no address; returns
 * 0, or -1 with a message. */
static int site_listen(struct site *s, const char *addr, unsigned port) {
  struct addrinfo hints = {.ai_flags = AI_PASSIVE | AI_NUMERICSERV,
                           .ai_socktype = SOCK_STREAM};
  struct addrinfo *ai;
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  char serv[8];
  int one = 1, rc;

  snprintf(serv, sizeof serv, "%u", port);
  if ((rc = getaddrinfo(addr, serv, &hints, &ai)) != 0)
    fs_die_usage("--bind must be an address to listen on, such as 127.0.0.1 "
                 "or ::1, got '%s' (%s)",
                 addr, gai_strerror(rc));
  s->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s->fd < 0 ||
      setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
      bind(s->fd, ai->ai_addr, ai->ai_addrlen) < 0 ||
      listen(s->fd, CONNECTION_LIMIT) < 0 ||
      getsockname(s->fd, (struct sockaddr *)&ss, &sl) < 0)
    goto out_close;
  s->port =
      ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                     : ((struct sockaddr_in *)&ss)->sin_port);
  freeaddrinfo(ai);
  return 0;

out_close:
  fprintf(stderr,
          "flagserver: cannot listen on %s port %u: %s; pick another "
          "--port (0 picks a free one)\n",
          addr, port, strerror(errno));
  if (s->fd >= 0)
    close(s->fd);
  s->fd = -1;
  freeaddrinfo(ai);
  return -1;
}

/* Starts s's daemon over its listening socket, which it then owns.
 * Returns 0, or -1 with a message. */
static int site_start(struct site *s, unsigned conn_limit) {
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_ALLOW_SUSPEND_RESUME;
  flags |= MHD_is_feature_supported(MHD_FEATURE_EPOLL) == MHD_YES
               ? MHD_USE_EPOLL
               : MHD_USE_POLL;
  if (s->srv->opt.verbose)
    flags |= MHD_USE_ERROR_LOG;
  s->guard.cap = conn_limit;
  s->daemon = MHD_start_daemon(
      flags, 0, NULL, NULL, fs_on_request, s, MHD_OPTION_EXTERNAL_LOGGER,
      fs_on_mhd_log, NULL, MHD_OPTION_LISTEN_SOCKET, s->fd,
      MHD_OPTION_CONNECTION_LIMIT, conn_limit, MHD_OPTION_CONNECTION_TIMEOUT,
      (unsigned)IDLE_TIMEOUT, MHD_OPTION_URI_LOG_CALLBACK, fs_on_uri, s,
      MHD_OPTION_NOTIFY_COMPLETED, fs_on_completed, s,
      MHD_OPTION_NOTIFY_CONNECTION, fs_on_connection, s, MHD_OPTION_END);
  if (!s->daemon) {
    fprintf(stderr, "flagserver: cannot start the HTTP daemon on port %u\n",
            s->port);
    close(s->fd);
    s->fd = -1;
    return -1;
  }
  return 0;
}

/* Prints the line a client waits for to learn the port. */
static void site_announce(const struct site *s, const char *addr) {
  int v6 = strchr(addr, ':') != NULL;
  printf("Serving flags on http://%s%s%s:%u/flags", v6 ? "[" : "", addr,
         v6 ? "]" : "", s->port);
  if (s->label && s->delay_max == 0)
    printf(" (%s: no delay)", s->label);
  else if (s->label && s->error_rate == 0)
    printf(" (%s: %g-%g s delay)", s->label, s->delay_min, s->delay_max);
  else if (s->label)
    printf(" (%s: %g-%g s delay, %g%% errors)", s->label, s->delay_min,
           s->delay_max, s->error_rate * 100);
  printf("\n");
  fflush(stdout);
}

/* Fills the sites from the options: one, or the three classic labels.
 * Returns 0, or an errno value (srv->nsites then counts the sites whose
 * guard is set up). */
static int sites_configure(struct server *srv) {
  static const struct {
    const char *label;
    double dmin, dmax, err;
  } classic[MAX_SITES] = {
      {"LOCAL", 0, 0, 0}, {"DELAY", 0.5, 5, 0}, {"ERROR", 0.5, 5, 0.25}};
  const struct options *o = &srv->opt;
  uint64_t seed = fs_now_ns() ^ ((uint64_t)getpid() << 32);

  int n = o->labels ? MAX_SITES : 1, err;

  for (srv->nsites = 0; srv->nsites < n; srv->nsites++) {
    struct site *s = &srv->sites[srv->nsites];
    int i = srv->nsites;
    if ((err = fs_guard_init(&s->guard, 0)) != 0)
      return err;
    s->srv = srv;
    s->fd = -1;
    s->rng = (seed + 0x9E3779B97F4A7C15ULL * (uint64_t)(i + 1)) | 1;
    s->label = o->labels ? classic[i].label : NULL;
    s->delay_min = o->labels ? classic[i].dmin : o->delay_min;
    s->delay_max = o->labels ? classic[i].dmax : o->delay_max;
    s->error_rate = o->labels ? classic[i].err : o->error_rate;
  }
  return 0;
}

/* Raises the soft RLIMIT_NOFILE to the hard one and returns how many
 * connections each site may then hold. */
static unsigned connection_limit(int nsites) {
  struct rlimit rl;
  rlim_t per_site;
  if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
    return 256;
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  getrlimit(RLIMIT_NOFILE, &rl);
  per_site = rl.rlim_cur > 64 ? (rl.rlim_cur - 64) / (rlim_t)nsites : 16;
  return per_site < CONNECTION_LIMIT ? (unsigned)per_site : CONNECTION_LIMIT;
}

/* ---- main ---- */

/* Opens and starts every site, printing one line each. Returns 0, or -1
 * with a message (sites already started stay for the caller to stop). */
static int start_sites(struct server *srv) {
  unsigned limit = connection_limit(srv->nsites);
  for (int i = 0; i < srv->nsites; i++) {
    struct site *s = &srv->sites[i];
    unsigned port = srv->opt.port ? (unsigned)srv->opt.port + (unsigned)i : 0;
    if (site_listen(s, srv->opt.bind, port) < 0 || site_start(s, limit) < 0)
      return -1;
  }
  for (int i = 0; i < srv->nsites; i++)
    site_announce(&srv->sites[i], srv->opt.bind);
  return 0;
}

/* Stops accepting connections, answers parked requests now instead of at
 * their wake-up time (the timer stops), and gives requests under way up to
 * DRAIN_SECONDS to finish, so that clients get answers rather than resets. */
static void drain_sites(struct server *srv) {
  uint64_t deadline = fs_now_ns() + (uint64_t)(DRAIN_SECONDS * 1e9);
  struct timespec tick = {0, 10 * 1000 * 1000};
  for (int i = 0; i < srv->nsites; i++) {
    MHD_socket fd = MHD_quiesce_daemon(srv->sites[i].daemon);
    if (fd != MHD_INVALID_SOCKET)
      close(fd);
  }
  fs_timer_stop(&srv->timer);
  while (atomic_load(&srv->inflight) > 0 && fs_now_ns() < deadline)
    nanosleep(&tick, NULL);
}

/* Stops every started daemon. */
static void stop_sites(struct server *srv) {
  for (int i = 0; i < srv->nsites; i++) {
    if (srv->sites[i].daemon)
      MHD_stop_daemon(srv->sites[i].daemon);
    srv->sites[i].daemon = NULL;
  }
}

/* Prints what the sites answered, for tests to compare with what they saw;
 * N also counts refusals (400, 405, 414, 503). */
static void print_summary(const struct server *srv) {
  unsigned long served = 0, ok = 0, not_found = 0, teapots = 0;
  for (int i = 0; i < srv->nsites; i++) {
    const struct site *s = &srv->sites[i];
    served += s->served;
    ok += s->ok;
    not_found += s->not_found;
    teapots += s->teapots;
  }
  fprintf(stderr,
          "served %lu requests: %lu ok, %lu not found, %lu errors(418)\n",
          served, ok, not_found, teapots);
}

/* Blocks until SIGINT or SIGTERM (blocked in every thread), sweeping
 * slow request heads out of every site four times a second. */
static void wait_for_stop(struct server *srv, const sigset_t *stop) {
  struct timespec tick = {0, 250 * 1000 * 1000};
  while (sigtimedwait(stop, NULL, &tick) < 0)
    for (int i = 0; i < srv->nsites; i++)
      fs_guard_sweep(&srv->sites[i].guard);
}

int main(int argc, char **argv) {
  static struct server srv;
  sigset_t stop;
  int rc = 1, err;

  fs_parse_options(argc, argv, &srv.opt);
  memset(srv.flags.index, -1, sizeof srv.flags.index);
  signal(SIGPIPE, SIG_IGN);
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, NULL);

  if (srv.opt.directory ? fs_load_directory(&srv.flags, srv.opt.directory)
                        : fs_generate_flags(&srv.flags))
    goto out_free_flags;
  if (fs_canned_init(&srv.canned) < 0 ||
      fs_canned_listing(&srv.canned, &srv.flags) < 0) {
    fprintf(stderr, "flagserver: out of memory\n");
    goto out_free_flags;
  }
  if ((err = fs_timer_start(&srv.timer)) != 0) {
    fprintf(stderr, "flagserver: cannot start timer: %s\n", strerror(err));
    goto out_free_canned;
  }
  if ((err = sites_configure(&srv)) != 0) {
    fprintf(stderr, "flagserver: cannot set up the sites: %s\n", strerror(err));
    fs_timer_stop(&srv.timer);
    goto out_destroy_guards;
  }
  if (start_sites(&srv) == 0) {
    wait_for_stop(&srv, &stop);
    drain_sites(&srv);
    rc = 0;
  } else {
    fs_timer_stop(&srv.timer);
  }
  stop_sites(&srv);
  if (rc == 0)
    print_summary(&srv);
out_destroy_guards:
  for (int i = 0; i < srv.nsites; i++)
    fs_guard_destroy(&srv.sites[i].guard);
out_free_canned:
  fs_canned_free(&srv.canned);
out_free_flags:
  fs_flagset_free(&srv.flags);
  return rc;
}
