/*
 * flags_async: the async mode, one thread driving the curl multi interface.
 *
 * DESIGN
 *   There are m slots, each an easy handle and the transfer it carries, if
 *   any. The loop fills every free slot with the next code, lets curl move
 *   all transfers on (curl_multi_perform), and sleeps in curl_multi_poll()
 *   until a socket or one of curl's timers needs it. So at most m transfers
 *   are in flight, and a slot freed by one code is reused by the next, with
 *   its connection.
 *
 *   Everything runs on this one thread, so file work is put where it holds
 *   no request back: a transfer that ends lets go of its handle at once
 *   (fl_fetch_detach), the freed slots send their next requests, and only
 *   then are the ended transfers renamed into place and reported; temporary
 *   files are made just before the loop sleeps, when every request that
 *   can go out is out. The poll is bounded, so that Ctrl-C is noticed even
 *   if the signal interrupted no poll; transfers abort from their progress
 *   callbacks.
 */
#include "flags.h"

#include <stdio.h>
#include <stdlib.h>

#define POLL_MS 200

/* One download: what fl_fetch needs, and how the transfer ended. */
struct xfer {
  struct fl_fetch fetch;
  struct fl_result result;
  CURLcode rc;
  int slot;          /* index of its slot while in flight */
  struct xfer *next; /* in the loop's list of ended transfers */
};

/* An easy handle and the transfer it carries (NULL: free). */
struct slot {
  CURL *easy;
  struct xfer *x;
};

/* The state of one run. */
struct loop {
  struct fl_job *job;
  CURLM *multi;
  struct slot *slots;
  int nslots;
  size_t next;        /* index of the next code to start */
  int inflight;       /* busy slots */
  struct xfer *ended; /* detached, waiting for fl_fetch_finish() */
};

/* Reports a download that could not start, and frees it. */
static void fail_start(struct loop *l, struct xfer *x, const char *why) {
  fl_fetch_finish(&x->fetch, CURLE_FAILED_INIT, &x->result);
  x->result.status = FL_ERROR;
  snprintf(x->result.error, sizeof x->result.error, "%s", why);
  fl_report(l->job, &x->result);
  free(x);
}

/* Starts the next code on a free slot. */
static void start_one(struct loop *l, struct slot *s) {
  struct fl_job *job = l->job;
  const char *cc = job->codes[l->next++];
  struct xfer *x = calloc(1, sizeof *x);

  if (!x) {
    struct fl_result r = {.status = FL_ERROR, .cc = {cc[0], cc[1], '\0'}};
    snprintf(r.error, sizeof r.error, "out of memory");
    fl_report(job, &r);
    return;
  }
  fl_fetch_begin(&x->fetch, s->easy, job->base_url, job->dir, cc, job->timeout,
                 &x->result);
  x->fetch.caller_prepares = 1;
  if (curl_multi_add_handle(l->multi, s->easy) != CURLM_OK) {
    fl_fetch_detach(&x->fetch);
    fail_start(l, x, "curl_multi_add_handle failed");
    return;
  }
  s->x = x;
  x->slot = (int)(s - l->slots);
  l->inflight++;
}

/* Fills the free slots while codes are left. */
static void fill_slots(struct loop *l) {
  for (int i = 0; i < l->nslots; i++) {
    if (l->next >= l->job->n || fl_stopping())
      return;
    if (!l->slots[i].x)
      start_one(l, &l->slots[i]);
  }
}

/* Frees the slot of every transfer curl says is done, queueing the
 * transfer on l->ended; returns how many. */
static int collect_ended(struct loop *l) {
  CURLMsg *msg;
  int left, n = 0;

  while ((msg = curl_multi_info_read(l->multi, &left)) != NULL) {
    struct fl_fetch *f;
    struct xfer *x;
    if (msg->msg != CURLMSG_DONE)
      continue;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&f);
    x = (struct xfer *)((char *)f - offsetof(struct xfer, fetch));
    x->rc = msg->data.result;
    curl_multi_remove_handle(l->multi, msg->easy_handle);
    fl_fetch_detach(f);
    l->slots[x->slot].x = NULL;
    l->inflight--;
    x->next = l->ended;
    l->ended = x;
    n++;
  }
  return n;
}

/* Renames or removes the files of the ended transfers, and reports them. */
static void finish_ended(struct loop *l) {
  while (l->ended) {
    struct xfer *x = l->ended;
    l->ended = x->next;
    fl_fetch_finish(&x->fetch, x->rc, &x->result);
    fl_report(l->job, &x->result);
    free(x);
  }
}

/* Makes the temporary files of the transfers whose requests are out. */
static void prepare_files(struct loop *l) {
  for (int i = 0; i < l->nslots; i++)
    if (l->slots[i].x)
      fl_fetch_prepare(&l->slots[i].x->fetch);
}

/* Runs the loop until every started transfer is done and none is left to
 * start (or the program is asked to stop). */
static int run_loop(struct loop *l) {
  int running;

  for (;;) {
    fill_slots(l);
    if (l->inflight == 0)
      return 0;
    if (curl_multi_perform(l->multi, &running) != CURLM_OK)
      break;
    if (collect_ended(l) > 0) {
      fill_slots(l);
      if (curl_multi_perform(l->multi, &running) != CURLM_OK)
        break;
      finish_ended(l);
      continue;
    }
    prepare_files(l);
    if (curl_multi_poll(l->multi, NULL, 0, POLL_MS, NULL) != CURLM_OK)
      break;
  }
  fprintf(stderr, "flags: the curl multi interface failed\n");
  return -1;
}

/* Ends what is still attached (after a failure), unreported, and frees
 * the slots. */
static void free_slots(struct loop *l) {
  for (int i = 0; i < l->nslots; i++) {
    struct slot *s = &l->slots[i];
    if (s->x) {
      curl_multi_remove_handle(l->multi, s->easy);
      fl_fetch_detach(&s->x->fetch);
      fl_fetch_finish(&s->x->fetch, CURLE_ABORTED_BY_CALLBACK, &s->x->result);
      free(s->x);
    }
  }
  finish_ended(l);
  curl_multi_cleanup(l->multi);
  for (int i = 0; i < l->nslots; i++)
    curl_easy_cleanup(l->slots[i].easy);
  free(l->slots);
}

int fl_run_async(struct fl_job *job) {
  struct loop l = {.job = job, .nslots = job->concurrency};
  int rc = -1;

  l.slots = calloc((size_t)l.nslots, sizeof *l.slots);
  if (!l.slots) {
    fprintf(stderr, "flags: out of memory\n");
    return -1;
  }
  for (int i = 0; i < l.nslots; i++)
    if (!(l.slots[i].easy = curl_easy_init())) {
      fprintf(stderr, "flags: cannot create a curl handle\n");
      goto out_free_slots;
    }
  if (!(l.multi = curl_multi_init())) {
    fprintf(stderr, "flags: cannot create a curl multi handle\n");
    goto out_free_slots;
  }
  curl_multi_setopt(l.multi, CURLMOPT_MAXCONNECTS, (long)l.nslots);
  rc = run_loop(&l);
out_free_slots:
  free_slots(&l);
  return rc;
}
