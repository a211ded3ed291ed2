/*
 * flagserver_handler: what each request gets.
 *
 * DESIGN. The answer is decided once, on MHD's first call for a request:
 * refusals (400 for odd or traversing paths, 414 for targets over
 * MAX_TARGET bytes, 405 for methods other than GET and HEAD) go out at
 * once; lookups get the site's delay and may draw a teapot, and are
 * answered on a later call (after the timer resumed the connection).
 * A site's counters and random state are touched only here, by its
 * daemon's polling thread.
 */
#include "flagserver.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A uniform double in [0, 1) from xorshift64*; state must not be 0. */
static double rng_next(uint64_t *s) {
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return (double)((*s * 0x2545F4914F6CDD1DULL) >> 11) * 0x1.0p-53;
}

/* ---- canned answers ---- */

/* A persistent text/plain response over the literal `body`, or NULL. */
static struct MHD_Response *text_response(const char *body) {
  struct MHD_Response *r = MHD_create_response_from_buffer(
      strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
  if (r && MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                                   "text/plain; charset=utf-8") != MHD_YES) {
    MHD_destroy_response(r);
    r = NULL;
  }
  return r;
}

/* Destroys every canned response that exists. */
void fs_canned_free(struct canned *c) {
  struct MHD_Response **all[] = {&c->bad_request, &c->not_found,
                                 &c->not_allowed, &c->too_long,
                                 &c->teapot,      &c->unavailable};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
    if (*all[i])
      MHD_destroy_response(*all[i]);
    *all[i] = NULL;
  }
}

/* Creates the canned responses. Returns 0, or -1 (out of memory). */
int fs_canned_init(struct canned *c) {
  c->bad_request = text_response("Bad request: only /flags/<cc>/<cc>.gif "
                                 "is served\n");
  c->not_found = text_response("Not found\n");
  c->not_allowed = text_response("Method not allowed: use GET or HEAD\n");
  c->too_long = text_response("URI too long\n");
  c->teapot = text_response("I'm a Teapot\n");
  c->unavailable = text_response("Out of memory\n");
  if (!c->bad_request || !c->not_found || !c->not_allowed || !c->too_long ||
      !c->teapot || !c->unavailable ||
      MHD_add_response_header(c->not_allowed, MHD_HTTP_HEADER_ALLOW,
                              "GET, HEAD") != MHD_YES) {
    fs_canned_free(c);
    return -1;
  }
  return 0;
}

/* ---- requests ---- */

/* MHD URI callback: allocates the request's state and notes what MHD's
 * decoding would hide (raw length, encoded NUL). NULL if out of memory. */
void *fs_on_uri(void *cls, const char *uri, struct MHD_Connection *conn) {
  struct site *s = cls;
  struct request *rq = calloc(1, sizeof *rq);
  (void)conn;
  if (rq) {
    rq->target_len = strlen(uri);
    rq->encoded_nul = strstr(uri, "%00") != NULL;
    atomic_fetch_add(&s->srv->inflight, 1);
  }
  return rq;
}

/* MHD completion callback: frees the request's state. */
void fs_on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                     enum MHD_RequestTerminationCode toe) {
  struct site *s = cls;
  (void)conn;
  (void)toe;
  if (*req_cls)
    atomic_fetch_sub(&s->srv->inflight, 1);
  free(*req_cls);
  *req_cls = NULL;
}

/* 0 if the decoded path `url` may be looked up, else the 4xx to refuse it
 * with: too long, traversal, absolute or odd paths. */
static unsigned refusal(const struct request *rq, const char *url) {
  if (rq->target_len > MAX_TARGET)
    return MHD_HTTP_URI_TOO_LONG;
  if (url[0] != '/' || url[1] == '/' || strstr(url, "..") ||
      strstr(url, "//") || strchr(url, '\\') || rq->encoded_nul)
    return MHD_HTTP_BAD_REQUEST;
  for (const char *p = url; *p; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f)
      return MHD_HTTP_BAD_REQUEST;
  return 0;
}

/* The image "/flags/<cc>/<cc>.gif" names (same lower-case code twice), or
 * NULL for any other path. */
static struct flag *route(struct flagset *fs, const char *url) {
  const char *cc;
  if (strncmp(url, "/flags/", 7))
    return NULL;
  cc = url + 7;
  if (!fs_is_lower(cc[0]) || !fs_is_lower(cc[1]) || cc[2] != '/' ||
      strncmp(cc + 3, cc, 2) || strcmp(cc + 5, ".gif"))
    return NULL;
  return fs_flagset_find(fs, cc);
}

/* Decides status, response and delay of a request. Refusals are immediate;
 * lookups get the site's delay and may draw a teapot. */
static void decide(struct site *s, struct request *rq, const char *url,
                   const char *method) {
  struct canned *c = &s->srv->canned;
  struct flag *f;

  rq->decided = 1;
  rq->refused = 1;
  if (strcmp(method, MHD_HTTP_METHOD_GET) &&
      strcmp(method, MHD_HTTP_METHOD_HEAD)) {
    rq->status = MHD_HTTP_METHOD_NOT_ALLOWED;
    rq->resp = c->not_allowed;
  } else if ((rq->status = refusal(rq, url)) != 0) {
    rq->resp =
        rq->status == MHD_HTTP_URI_TOO_LONG ? c->too_long : c->bad_request;
  } else {
    rq->refused = 0;
    rq->delay =
        s->delay_min + (s->delay_max - s->delay_min) * rng_next(&s->rng);
    if (rng_next(&s->rng) < s->error_rate) {
      rq->status = TEAPOT;
      rq->resp = c->teapot;
    } else if ((f = route(&s->srv->flags, url)) != NULL) {
      rq->status = MHD_HTTP_OK;
      rq->resp = f->resp;
    } else {
      rq->status = MHD_HTTP_NOT_FOUND;
      rq->resp = c->not_found;
    }
  }
}

/* Writes one -v line: label, method, path (cut, control bytes masked),
 * status and delay. */
static void log_request(const struct site *s, const char *method,
                        const char *url, unsigned status, double delay) {
  char path[121];
  size_t i;
  for (i = 0; url[i] && i < sizeof path - 1; i++)
    path[i] = (unsigned char)url[i] < 0x20 || url[i] == 0x7f ? '?' : url[i];
  path[i] = 0;
  fprintf(stderr, "flagserver: %s%s%s%.16s %s%s %u %.3fs\n",
          s->label ? "[" : "", s->label ? s->label : "", s->label ? "] " : "",
          method, path, url[i] ? "..." : "", status, delay);
}

/* Queues the decided answer and counts it. */
static enum MHD_Result answer(struct site *s, struct MHD_Connection *conn,
                              const char *method, const char *url,
                              unsigned status, struct MHD_Response *resp,
                              double delay) {
  if (MHD_queue_response(conn, status, resp) != MHD_YES)
    return MHD_NO;
  s->served++;
  s->ok += status == MHD_HTTP_OK;
  s->not_found += status == MHD_HTTP_NOT_FOUND;
  s->teapots += status == TEAPOT;
  if (s->srv->opt.verbose)
    log_request(s, method, url, status, delay);
  return MHD_YES;
}

/* MHD access handler: decide on the first call and refuse at once;
 * otherwise swallow any body, park for the delay, and answer when resumed.
 * Lookups are not answered on the first call because MHD closes the
 * connection after such an early answer, and keep-alive matters here. */
enum MHD_Result fs_on_request(void *cls, struct MHD_Connection *conn,
                              const char *url, const char *method,
                              const char *version, const char *upload,
                              size_t *upload_size, void **req_cls) {
  struct site *s = cls;
  struct request *rq = *req_cls;
  (void)version;
  (void)upload;

  if (!rq)
    return answer(s, conn, method, url, MHD_HTTP_SERVICE_UNAVAILABLE,
                  s->srv->canned.unavailable, 0);
  if (!rq->decided) {
    decide(s, rq, url, method);
    if (rq->refused)
      return answer(s, conn, method, url, rq->status, rq->resp, 0);
    return MHD_YES;
  }
  if (*upload_size) {
    *upload_size = 0;
    return MHD_YES;
  }
  if (rq->delay > 0 && !rq->parked) {
    rq->parked = 1;
    if (fs_timer_park(&s->srv->timer, conn, rq->delay))
      return MHD_YES;
  }
  return answer(s, conn, method, url, rq->status, rq->resp, rq->delay);
}
