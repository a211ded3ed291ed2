/*
 * flagserver_canned: the answers that are not flags, made once at startup
 * and shared by every site and request.
 *
 * DESIGN. Each is a persistent MHD response over a constant (or, for the
 * listing of /flags/, a buffer made from the flag set and freed at exit),
 * so that answering never allocates. The teapot's status line is not
 * here: libmicrohttpd 0.9.75 writes its own reason phrase for 418
 * ("Non-Standard Status"), so flagserver_handler.c writes that answer
 * itself.
 */
#include "flagserver.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
                                 &c->unavailable, &c->listing};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
    if (*all[i])
      MHD_destroy_response(*all[i]);
    *all[i] = NULL;
  }
  free(c->listing_text);
  c->listing_text = NULL;
}

/* Creates the canned responses. Returns 0, or -1 (out of memory). */
int fs_canned_init(struct canned *c) {
  c->bad_request = text_response("Bad request: only /flags/<cc>/<cc>.gif "
                                 "is served\n");
  c->not_found = text_response("Not found\n");
  c->not_allowed = text_response("Method not allowed: use GET or HEAD\n");
  c->too_long = text_response("URI too long\n");
  c->unavailable = text_response("Out of memory\n");
  if (!c->bad_request || !c->not_found || !c->not_allowed || !c->too_long ||
      !c->unavailable ||
      MHD_add_response_header(c->not_allowed, MHD_HTTP_HEADER_ALLOW,
                              "GET, HEAD") != MHD_YES) {
    fs_canned_free(c);
    return -1;
  }
  return 0;
}

/* Creates the canned HTML index of /flags/, one link per flag, as the
 * classic server's directory listing offers a browser. */
int fs_canned_listing(struct canned *c, const struct flagset *fs) {
  static const char head[] =
      "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
      "<title>Flags</title></head>\n<body>\n<h1>Flags</h1>\n<ul>\n";
  static const char tail[] = "</ul>\n</body></html>\n";
  size_t cap = sizeof head + sizeof tail + fs->n * 64, len;
  char *text = malloc(cap);

  if (!text)
    return -1;
  len = (size_t)snprintf(text, cap, "%s", head);
  for (size_t i = 0; i < fs->n; i++)
    len += (size_t)snprintf(text + len, cap - len,
                            "<li><a href=\"%s/%s.gif\">%s/%s.gif</a></li>\n",
                            fs->v[i].cc, fs->v[i].cc, fs->v[i].cc, fs->v[i].cc);
  len += (size_t)snprintf(text + len, cap - len, "%s", tail);
  c->listing =
      MHD_create_response_from_buffer(len, text, MHD_RESPMEM_PERSISTENT);
  if (!c->listing ||
      MHD_add_response_header(c->listing, MHD_HTTP_HEADER_CONTENT_TYPE,
                              "text/html; charset=utf-8") != MHD_YES) {
    if (c->listing)
      MHD_destroy_response(c->listing);
    c->listing = NULL;
    free(text);
    return -1;
  }
  c->listing_text = text;
  return 0;
}
