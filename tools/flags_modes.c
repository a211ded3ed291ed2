/*
 * flags_modes: the sequential mode.
 *
 * DESIGN
 *   Sequential is the first script: one easy handle, one code after the
 *   other. The threads mode runs on the library's thread engine and shares
 *   its code with the processes mode, in flags_procs.c.
 */
#include "flags.h"

#include <stdio.h>

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
