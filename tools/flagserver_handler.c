/*
 * flagserver_handler: what each request gets.
 *
 * DESIGN. The answer is decided once, on MHD's first call for a request:
 * refusals (400 for odd or traversing paths, 414 for targets over
 * MAX_TARGET bytes, 405 for methods other than GET and HEAD) go out at
 * once; GET lookups get the site's delay and may draw a teapot, and are
 * answered on a later call (after the timer resumed the connection); HEAD
 * and the listing of /flags/ are answered at once, never with a teapot,
 * as the classic server does. An absolute-form target
 * ("GET http://host/flags/..."), which RFC 9112 asks servers to accept,
 * is looked up by its path. The teapot goes out with the classic status
 * line "418 I'm a Teapot", written here on the socket and the connection
 * then closed, since libmicrohttpd 0.9.75 has no way to set a reason
 * phrase. Everything logged from a request is masked first.
 * A site's counters and random state are touched only here, by its
 * daemon's polling thread.
 */
#include "flagserver.h"
#include "masking.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/* A uniform double in [0, 1) from xorshift64*; state must not be 0. */
static double rng_next(uint64_t *s) {
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return (double)((*s * 0x2545F4914F6CDD1DULL) >> 11) * 0x1.0p-53;
}

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

/* MHD completion callback: frees the request's state; the connection
 * now waits for its next request head. */
void fs_on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                     enum MHD_RequestTerminationCode toe) {
  struct site *s = cls;
  (void)toe;
  fs_guard_mark(&s->guard, conn, 1);
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

/* The path of a target: itself in origin form ("/flags/..."), the part
 * after the authority in absolute form ("http://host:port/flags/...",
 * "/" if there is none). */
static const char *target_path(const char *url) {
  const char *p;
  if (strncasecmp(url, "http://", 7) && strncasecmp(url, "https://", 8))
    return url;
  p = strchr(url, ':') + 3;
  p += strcspn(p, "/?#");
  return *p == '/' ? p : "/";
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
  int head = !strcmp(method, MHD_HTTP_METHOD_HEAD);
  struct flag *f;

  rq->decided = 1;
  rq->refused = 1;
  url = target_path(url);
  if (strcmp(method, MHD_HTTP_METHOD_GET) && !head) {
    rq->status = MHD_HTTP_METHOD_NOT_ALLOWED;
    rq->resp = c->not_allowed;
  } else if ((rq->status = refusal(rq, url)) != 0) {
    rq->resp =
        rq->status == MHD_HTTP_URI_TOO_LONG ? c->too_long : c->bad_request;
  } else {
    rq->refused = 0;
    rq->delay =
        s->delay_min + (s->delay_max - s->delay_min) * rng_next(&s->rng);
    if (head || !strcmp(url, "/flags/"))
      rq->delay = 0;
    if (!strcmp(url, "/flags/")) {
      rq->status = MHD_HTTP_OK;
      rq->resp = c->listing;
    } else if (!head && rng_next(&s->rng) < s->error_rate) {
      rq->status = TEAPOT;
      rq->resp = NULL; /* send_teapot() */
    } else if ((f = route(&s->srv->flags, url)) != NULL) {
      rq->status = MHD_HTTP_OK;
      rq->resp = f->resp;
    } else {
      rq->status = MHD_HTTP_NOT_FOUND;
      rq->resp = c->not_found;
    }
  }
}

/* Writes one -v line: label, method and target (cut, masked: they come
 * from the network and must not drive the terminal), status and delay. */
static void log_request(const struct site *s, const char *method,
                        const char *url, unsigned status, double delay) {
  char verb[17], path[121];
  int cut;
  mask_copy(verb, sizeof verb, method);
  cut = mask_copy(path, sizeof path, url);
  fprintf(stderr, "flagserver: %s%s%s%s %s%s %u %.3fs\n", s->label ? "[" : "",
          s->label ? s->label : "", s->label ? "] " : "", verb, path,
          cut ? "..." : "", status, delay);
}

/* A teapot was just sent by this polling thread: MHD's complaint about
 * the MHD_NO that closes its connection is not an error. */
static _Thread_local int teapot_closing;

/* Sends the classic teapot on conn's socket itself. Returns MHD_NO, so
 * that MHD closes the connection without an answer of its own. */
static enum MHD_Result send_teapot(struct MHD_Connection *conn) {
  static const char teapot[] = "HTTP/1.1 418 I'm a Teapot\r\n"
                               "Content-Type: text/plain; charset=utf-8\r\n"
                               "Content-Length: 13\r\n"
                               "Connection: close\r\n\r\n"
                               "I'm a Teapot\n";
  const union MHD_ConnectionInfo *info =
      MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
  /* A fresh answer this small fits the socket's empty send buffer; a
   * client that cannot take it gets a closed connection instead. */
  if (info)
    send(info->connect_fd, teapot, sizeof teapot - 1, MSG_NOSIGNAL);
  teapot_closing = 1;
  return MHD_NO;
}

/* MHD's error log under -v: its messages, prefixed, except the one that
 * follows each teapot (MHD reads our MHD_NO as an internal error). Runs
 * in the polling thread, right after the handler that sent the teapot. */
void fs_on_mhd_log(void *cls, const char *fmt, va_list ap) {
  (void)cls;
  if (teapot_closing) {
    teapot_closing = 0;
    return;
  }
  fputs("flagserver: ", stderr);
  vfprintf(stderr, fmt, ap);
}

/* Queues the decided answer and counts it. */
static enum MHD_Result answer(struct site *s, struct MHD_Connection *conn,
                              const char *method, const char *url,
                              unsigned status, struct MHD_Response *resp,
                              double delay) {
  enum MHD_Result rc = MHD_YES;
  if (status == TEAPOT)
    rc = send_teapot(conn);
  else if (MHD_queue_response(conn, status, resp) != MHD_YES)
    return MHD_NO;
  s->served++;
  s->ok += status == MHD_HTTP_OK;
  s->not_found += status == MHD_HTTP_NOT_FOUND;
  s->teapots += status == TEAPOT;
  if (s->srv->opt.verbose)
    log_request(s, method, url, status, delay);
  return rc;
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
    fs_guard_mark(&s->guard, conn, 0);
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
