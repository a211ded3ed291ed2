/*
 * flags_procs: the threads and processes modes, each download a task of a
 * procpool, on its thread engine or its process engine.
 *
 * DESIGN
 *   Both modes are one function, run_pool(), told the engine. The pool
 *   has m workers. Each worker makes one curl easy handle in the pool's
 *   initializer (which runs once in each worker process or thread) and
 *   keeps it in a thread-local variable, so that its downloads reuse one
 *   connection and no two workers share a handle. A worker thread's handle
 *   is also stored under a pthread key whose destructor cleans it up when
 *   the thread ends with the pool; a worker process's goes with the
 *   process. A task's argument is the code, the timeout, the base URL and
 *   the output directory; the worker downloads to a temporary file,
 *   renames it, and returns its struct fl_result as the result bytes. The
 *   master submits every code, then takes the futures with
 *   pp_as_completed() as they finish, reporting each.
 *
 *   On Ctrl-C the master sets the shared stop flag: running tasks abort
 *   their transfers and remove their files, tasks not yet started return
 *   at once, so the futures drain quickly and pp_pool_destroy() finds no
 *   work left and joins or reaps every worker.
 */
#include "flags.h"

#include <procpool.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A task's argument is this head, then the base URL and the directory,
 * each NUL-terminated. The bytes may sit unaligned in the pool's ring, so
 * the head is copied out, never read in place. */
struct task_head {
  double timeout;
  char cc[3];
};

static _Thread_local CURL *worker_easy; /* made by worker_init() */
static pthread_key_t easy_key;          /* cleans up a thread's handle */

static void cleanup_easy(void *easy) {
  curl_easy_cleanup(easy);
}

/* Pool initializer, once in each worker process or thread. */
static int worker_init(void *arg) {
  (void)arg;
  if (!(worker_easy = curl_easy_init()))
    return -1;
  return pthread_setspecific(easy_key, worker_easy) == 0 ? 0 : -1;
}

/* The task: downloads one flag and returns how it went. */
static int download_task(pp_task *task, const void *arg, size_t len) {
  const char *bytes = arg, *base = bytes + sizeof(struct task_head), *dir;
  struct task_head head;
  struct fl_result r;

  if (len < sizeof head + 2 || bytes[len - 1] != '\0')
    return pp_task_fail(task, 1, "malformed task argument");
  memcpy(&head, bytes, sizeof head);
  dir = base + strlen(base) + 1;
  if (dir >= bytes + len || head.cc[2] != '\0')
    return pp_task_fail(task, 1, "malformed task argument");
  fl_fetch_one(worker_easy, base, dir, head.cc, head.timeout, &r);
  return pp_task_return(task, &r, sizeof r);
}

/* Builds the argument for code `cc` into a new buffer; *len (OUT). */
static char *make_arg(const struct fl_job *job, const char *cc, size_t *len) {
  size_t nb = strlen(job->base_url) + 1, nd = strlen(job->dir) + 1;
  struct task_head head;
  char *a = malloc(sizeof head + nb + nd);

  if (!a)
    return NULL;
  memset(&head, 0, sizeof head);
  head.timeout = job->timeout;
  memcpy(head.cc, cc, 3);
  memcpy(a, &head, sizeof head);
  memcpy(a + sizeof head, job->base_url, nb);
  memcpy(a + sizeof head + nb, job->dir, nd);
  *len = sizeof head + nb + nd;
  return a;
}

/* Submits every code; returns how many were submitted. */
static size_t submit_all(pp_pool *pool, struct fl_job *job,
                         pp_future **futures) {
  size_t i;

  for (i = 0; i < job->n; i++) {
    size_t len;
    char *a = make_arg(job, job->codes[i], &len);
    int rc =
        a ? pp_submit(pool, download_task, a, len, &futures[i]) : PP_ENOMEM;
    free(a);
    if (rc < 0) {
      fprintf(stderr, "flags: cannot submit %s: %s\n", job->codes[i],
              pp_strerror(rc));
      break;
    }
  }
  return i;
}

/* Turns a done future into a result, also when its task failed. */
static void future_result(pp_future *fut, const char *cc, struct fl_result *r) {
  const void *data;
  size_t len;
  int rc = pp_future_result(fut, PP_FOREVER, &data, &len);

  if (rc == 0 && len == sizeof *r) {
    memcpy(r, data, sizeof *r);
    return;
  }
  memset(r, 0, sizeof *r);
  memcpy(r->cc, cc, 2);
  r->status = rc == PP_ECANCELLED ? FL_INTERRUPTED : FL_ERROR;
  snprintf(r->error, sizeof r->error, "worker failed: %s%s%s",
           rc ? pp_strerror(rc) : "result of the wrong size",
           *pp_future_message(fut) ? ": " : "", pp_future_message(fut));
}

/* Reports each of futures[0..n) as it finishes. */
static int collect(struct fl_job *job, pp_future **futures, size_t n) {
  pp_completed *it;
  pp_future *fut;
  struct fl_result r;
  int rc = pp_as_completed(futures, n, PP_FOREVER, &it);

  if (rc < 0) {
    fprintf(stderr, "flags: %s\n", pp_strerror(rc));
    return -1;
  }
  while ((rc = pp_completed_next(it, &fut)) == 0) {
    size_t i = 0;
    while (futures[i] != fut)
      i++;
    future_result(fut, job->codes[i], &r);
    fl_report(job, &r);
  }
  pp_completed_destroy(it);
  return rc == PP_EOF ? 0 : -1;
}

/* Runs every code of the job as a task of a pool on `engine`. */
static int run_pool(struct fl_job *job, pp_engine engine) {
  pp_options opts;
  pp_pool *pool;
  pp_future **futures = calloc(job->n, sizeof *futures);
  size_t submitted;
  int rc = -1;

  if (!futures || pthread_key_create(&easy_key, cleanup_easy) != 0) {
    fprintf(stderr, "flags: out of memory\n");
    free(futures);
    return -1;
  }
  pp_options_init(&opts);
  opts.engine = engine;
  opts.workers = job->concurrency;
  opts.initializer = worker_init;
  /* Forking 100 workers takes tens of milliseconds: downloads start on the
   * first ones meanwhile. A failing curl_easy_init() then fails the flags
   * (each reported as an error) rather than the pool's creation. Not under
   * GCC 12's AddressSanitizer, whose allocator a fork racing this thread's
   * mallocs can leave locked in the worker (see procpool.h). */
#ifndef __SANITIZE_ADDRESS__
  opts.start_in_background = 1;
#endif
  opts.max_payload = sizeof(struct task_head) + FL_MAX_URL + FL_MAX_DIR + 2;
  if (opts.max_payload < sizeof(struct fl_result))
    opts.max_payload = sizeof(struct fl_result);
  opts.ring_capacity = job->n * (sizeof(struct fl_result) + 64);
  if ((rc = pp_pool_create(&pool, &opts)) < 0) {
    fprintf(stderr, "flags: cannot create the pool: %s\n", pp_strerror(rc));
    rc = -1;
    goto out_free;
  }
  submitted = submit_all(pool, job, futures);
  /* No more tasks: workers left without one exit now, not at destroy. */
  pp_pool_shutdown(pool, 0, 0);
  rc = collect(job, futures, submitted);
  if (submitted < job->n)
    rc = -1;
  for (size_t i = 0; i < submitted; i++)
    pp_future_release(futures[i]);
  pp_pool_destroy(pool);
out_free:
  pthread_key_delete(easy_key);
  free(futures);
  return rc;
}

int fl_run_threads(struct fl_job *job) {
  return run_pool(job, PP_ENGINE_THREADS);
}

int fl_run_processes(struct fl_job *job) {
  return run_pool(job, PP_ENGINE_PROCESSES);
}
