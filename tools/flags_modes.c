/*
 * flags_modes: the sequential and threads modes.
 *
 * DESIGN
 *   Sequential is the first script: one easy handle, one code after the
 *   other. Threads is a work queue in its simplest form: the queue is the
 *   sorted array of codes and an atomic index into it; each of the m
 *   threads takes the next index until none is left, downloading on an
 *   easy handle of its own (easy handles must not be shared between
 *   threads) so that each keeps its connection open. fl_report() takes
 *   the job's lock, so results may be reported straight from the threads.
 */
#include "flags.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* State shared by the threads of one run. */
struct queue {
  struct fl_job *job;
  atomic_size_t next; /* index of the next code to take */
};

int fl_run_sequential(struct fl_job *job) {
  struct fl_result r;
  CURL *easy = curl_easy_init();

  if (!easy) {
    fprintf(stderr, "flags: cannot create a curl handle\n");
    return -1;
  }
  for (size_t i = 0; i < job->n && !fl_stopping(); i++) {
    fl_fetch_one(easy, job->base_url, job->dir, job->codes[i], job->timeout,
                 &r);
    fl_report(job, &r);
  }
  curl_easy_cleanup(easy);
  return 0;
}

/* One thread of the threads mode: takes codes until none is left or the
 * program is asked to stop. */
static void *thread_main(void *arg) {
  struct queue *q = arg;
  struct fl_job *job = q->job;
  struct fl_result r;
  CURL *easy = curl_easy_init();
  size_t i;

  while ((i = atomic_fetch_add(&q->next, 1)) < job->n && !fl_stopping()) {
    if (easy) {
      fl_fetch_one(easy, job->base_url, job->dir, job->codes[i], job->timeout,
                   &r);
    } else {
      memset(&r, 0, sizeof r);
      memcpy(r.cc, job->codes[i], 2);
      r.status = FL_ERROR;
      snprintf(r.error, sizeof r.error, "cannot create a curl handle");
    }
    fl_report(job, &r);
  }
  curl_easy_cleanup(easy);
  return NULL;
}

int fl_run_threads(struct fl_job *job) {
  struct queue q = {.job = job};
  pthread_t *tids = calloc((size_t)job->concurrency, sizeof *tids);
  int started = 0, rc = -1;

  atomic_init(&q.next, 0);
  if (!tids) {
    fprintf(stderr, "flags: out of memory\n");
    return -1;
  }
  while (started < job->concurrency &&
         pthread_create(&tids[started], NULL, thread_main, &q) == 0)
    started++;
  if (started == 0) {
    fprintf(stderr, "flags: cannot start a thread\n");
    goto out_free;
  }
  for (int i = 0; i < started; i++)
    pthread_join(tids[i], NULL);
  rc = 0;
out_free:
  free(tids);
  return rc;
}
