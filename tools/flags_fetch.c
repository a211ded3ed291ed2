/*
 * flags_fetch: one flag, downloaded on a curl easy handle.
 *
 * DESIGN
 *   The body goes to a temporary file made by mkstemp() in the output
 *   directory itself, so that the final rename() is atomic and a flag on
 *   disk is always whole: a failed, truncated, over-size or interrupted
 *   download only ever removes its temporary file. The file is made only
 *   once the request is out (fl_fetch_prepare(), from the progress callback
 *   or the caller's loop), so that making it, slow on some file systems,
 *   overlaps the wait for the server rather than delaying the request; a
 *   200 whose body comes at once makes it from the write callback. Bodies of
 * other statuses are never written. Network input is hostile: a 200 is
 * kept only if its body starts with a GIF signature and its Content-Type,
 * when given, is image/gif (an HTML error page or a captive portal served
 * with 200 is an error, and the flag already on disk stays); libcurl
 * decodes any Content-Encoding, asked for or not; redirects go to http
 * and https only; text from the server is masked before it is shown. A
 * failure to make the temporary file matters only for a 200: a 404 into
 * a read-only folder is still reported as a 404. The size limit is held
 * twice, by
 * CURLOPT_MAXFILESIZE (announced lengths) and in the write callback (bodies
 * that run on). The handle is reused from one download to the next, so that its
 * connection cache keeps connections open; each download sets every option it
 * relies on.
 *
 *   The stop flag lives in a shared anonymous mapping so that SIGINT in the
 *   master reaches transfers running in forked workers too.
 */
#include "flags.h"
#include "masking.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static atomic_int *stop_flag; /* in a MAP_SHARED page, seen by workers */
static mode_t file_mode = 0644;

double fl_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int fl_stop_init(void) {
  void *p = mmap(NULL, sizeof *stop_flag, PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    return -1;
  stop_flag = p;
  atomic_init(stop_flag, 0);
  return 0;
}

void fl_stop(void) {
  if (stop_flag)
    atomic_store(stop_flag, 1);
}

int fl_stopping(void) {
  return stop_flag && atomic_load(stop_flag);
}

void fl_fetch_set_mode(mode_t mode) {
  file_mode = mode;
}

/* Creates the temporary file, once; 0, or -1 with create_errno set. */
static int open_tmp(struct fl_fetch *f) {
  if (f->fd >= 0)
    return 0;
  if (f->create_errno)
    return -1;
  f->fd = mkostemp(f->tmp, O_CLOEXEC);
  if (f->fd < 0) {
    f->create_errno = errno;
    return -1;
  }
  f->made = 1;
  return 0;
}

/* Non-zero once the response under way is a 200, whose body is a flag;
 * other bodies are counted but not kept. */
static int body_is_flag(struct fl_fetch *f) {
  long code = 0;
  curl_easy_getinfo(f->easy, CURLINFO_RESPONSE_CODE, &code);
  return code == 200;
}

/* Notes the answer's Content-Type, masked, while the handle is ours. */
static void note_type(struct fl_fetch *f) {
  char *type = NULL;
  if (f->easy &&
      curl_easy_getinfo(f->easy, CURLINFO_CONTENT_TYPE, &type) == CURLE_OK)
    mask_copy(f->type, sizeof f->type, type ? type : "");
}

/* Non-zero if the Content-Type, when there is one, says GIF: image/gif,
 * in any case, with or without parameters. */
static int type_is_gif(const char *type) {
  size_t n = strlen("image/gif");
  return !type[0] || (strncasecmp(type, "image/gif", n) == 0 &&
                      (type[n] == '\0' || type[n] == ';' || type[n] == ' '));
}

/* Non-zero if the first bytes of the body (all of them if fewer than 6)
 * can start a GIF: "GIF87a" or "GIF89a". */
static int head_is_gif(const struct fl_fetch *f) {
  return memcmp(f->head, "GIF87a", f->head_len) == 0 ||
         memcmp(f->head, "GIF89a", f->head_len) == 0;
}

/* Keeps the first bytes of a 200's body and checks them and the
 * Content-Type as soon as they are known; 0 if the body is no flag. */
static int check_body(struct fl_fetch *f, const char *data, size_t len) {
  size_t n = sizeof f->head - f->head_len;
  if (f->head_len == 0)
    note_type(f);
  n = n < len ? n : len;
  memcpy(f->head + f->head_len, data, n);
  f->head_len += n;
  if (!type_is_gif(f->type) || !head_is_gif(f))
    f->not_gif = 1;
  return !f->not_gif;
}

/* Appends a piece of body to the temporary file, refusing to go past
 * FL_MAX_BODY: returning short makes curl fail with CURLE_WRITE_ERROR. */
static size_t on_body(char *data, size_t size, size_t nmemb, void *arg) {
  struct fl_fetch *f = arg;
  size_t len = size * nmemb, off = 0;

  if (f->bytes + (long long)len > FL_MAX_BODY) {
    f->oversize = 1;
    return 0;
  }
  f->bytes += (long long)len;
  if (!body_is_flag(f))
    return len;
  if (!check_body(f, data, len))
    return 0;
  if (open_tmp(f) < 0)
    return 0;
  while (off < len) {
    ssize_t w = write(f->fd, data + off, len - off);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0) {
      f->write_errno = errno;
      return 0;
    }
    off += (size_t)w;
  }
  return len;
}

/* Keeps the reason phrase of the latest status line (redirects bring
 * several), which curl does not keep: shown for codes without a standard
 * phrase. */
static size_t on_header(char *line, size_t size, size_t nmemb, void *arg) {
  struct fl_fetch *f = arg;
  size_t len = size * nmemb, i = 0, n = 0;

  if (len < 5 || strncmp(line, "HTTP/", 5) != 0)
    return len;
  f->reason[0] = '\0';
  while (i < len && line[i] != ' ')
    i++;
  while (i < len && line[i] == ' ')
    i++;
  while (i < len && line[i] != ' ' && line[i] != '\r' && line[i] != '\n')
    i++;
  while (i < len && line[i] == ' ')
    i++;
  while (i + n < len && line[i + n] != '\r' && line[i + n] != '\n' &&
         n < sizeof f->reason - 1)
    n++;
  memcpy(f->reason, line + i, n);
  f->reason[n] = '\0';
  mask_copy(f->reason, sizeof f->reason, f->reason);
  return len;
}

void fl_fetch_prepare(struct fl_fetch *f) {
  curl_off_t sent = 0;

  if (f->fd < 0 && !f->create_errno &&
      curl_easy_getinfo(f->easy, CURLINFO_PRETRANSFER_TIME_T, &sent) ==
          CURLE_OK &&
      sent > 0)
    open_tmp(f);
}

/* Aborts the transfer once the program is asked to stop; curl calls this
 * at least once a second, also while waiting for a slow server. Unless
 * the caller prepares the file itself, it also calls fl_fetch_prepare(). */
static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow,
                       curl_off_t ultotal, curl_off_t ulnow) {
  struct fl_fetch *f = arg;

  (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
  if (fl_stopping())
    return 1;
  if (!f->caller_prepares)
    fl_fetch_prepare(f);
  return 0;
}

/* The standard phrase of an error status, as Python's http.HTTPStatus
 * words it; NULL for codes not listed. Preferred to the server's own
 * phrase, which some servers replace by a placeholder (libmicrohttpd says
 * "Non-Standard Status" for 418) and HTTP/2 does not send at all. */
static const char *standard_reason(long code) {
  static const struct {
    long code;
    const char *text;
  } table[] = {
      {300, "Multiple Choices"},
      {301, "Moved Permanently"},
      {302, "Found"},
      {303, "See Other"},
      {304, "Not Modified"},
      {307, "Temporary Redirect"},
      {308, "Permanent Redirect"},
      {400, "Bad Request"},
      {401, "Unauthorized"},
      {402, "Payment Required"},
      {403, "Forbidden"},
      {405, "Method Not Allowed"},
      {406, "Not Acceptable"},
      {407, "Proxy Authentication Required"},
      {408, "Request Timeout"},
      {409, "Conflict"},
      {410, "Gone"},
      {411, "Length Required"},
      {412, "Precondition Failed"},
      {413, "Request Entity Too Large"},
      {414, "Request-URI Too Long"},
      {415, "Unsupported Media Type"},
      {416, "Requested Range Not Satisfiable"},
      {417, "Expectation Failed"},
      {418, "I'm a Teapot"},
      {421, "Misdirected Request"},
      {425, "Too Early"},
      {426, "Upgrade Required"},
      {428, "Precondition Required"},
      {429, "Too Many Requests"},
      {431, "Request Header Fields Too Large"},
      {451, "Unavailable For Legal Reasons"},
      {500, "Internal Server Error"},
      {501, "Not Implemented"},
      {502, "Bad Gateway"},
      {503, "Service Unavailable"},
      {504, "Gateway Timeout"},
      {505, "HTTP Version Not Supported"},
      {511, "Network Authentication Required"},
  };
  for (size_t i = 0; i < sizeof table / sizeof *table; i++)
    if (table[i].code == code)
      return table[i].text;
  return NULL;
}

/* The phrase shown with an HTTP error. */
static const char *reason_of(const struct fl_fetch *f, long code) {
  const char *std = standard_reason(code);
  return std ? std : f->reason[0] ? f->reason : "Unknown";
}

/* Marks `out` as an error with a printf-style message, masked: it may
 * quote the server (a reason phrase, curl's account of a bad answer). */
static void set_error(struct fl_result *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void set_error(struct fl_result *out, const char *fmt, ...) {
  va_list ap;
  out->status = FL_ERROR;
  va_start(ap, fmt);
  vsnprintf(out->error, sizeof out->error, fmt, ap);
  va_end(ap);
  mask_copy(out->error, sizeof out->error, out->error);
}

/* Describes a 200 whose body is no flag. */
static void set_not_gif(const struct fl_fetch *f, struct fl_result *out) {
  char start[7] = "";
  if (!type_is_gif(f->type)) {
    set_error(out, "not a GIF image: Content-Type is %s", f->type);
    return;
  }
  if (f->head_len == 0) {
    set_error(out, "not a GIF image: the body is empty");
    return;
  }
  memcpy(start, f->head, f->head_len);
  start[f->head_len] = '\0';
  set_error(out, "not a GIF image: the body starts with '%s', not 'GIF8'",
            start);
}

/* Sets every option a download relies on; the handle may carry options of
 * the previous download, and keeps its connections. */
static void set_options(struct fl_fetch *f, double timeout) {
  CURL *h = f->easy;
  curl_easy_setopt(h, CURLOPT_URL, f->url);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, f);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, f);
  curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(h, CURLOPT_XFERINFODATA, f);
  curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, f->errbuf);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)(timeout * 1000.0 + 0.5));
  curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)FL_MAX_BODY);
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L);
#if LIBCURL_VERSION_NUM >= 0x075500 /* 7.85.0 */
  curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
  curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS,
                   (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
  curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_USERAGENT, "procpool-flags/0.1");
  curl_easy_setopt(h, CURLOPT_PRIVATE, f);
}

void fl_fetch_begin(struct fl_fetch *f, CURL *easy, const char *base_url,
                    const char *dir, const char *cc, double timeout,
                    struct fl_result *out) {
  char lc[3] = {(char)(cc[0] | 0x20), (char)(cc[1] | 0x20), '\0'};

  memset(out, 0, sizeof *out);
  memcpy(out->cc, cc, 2);
  memset(f, 0, sizeof *f);
  f->easy = easy;
  f->fd = -1;
  memcpy(f->cc, cc, 2);
  snprintf(f->url, sizeof f->url, "%s/%s/%s.gif", base_url, lc, lc);
  snprintf(f->dest, sizeof f->dest, "%s/%s.gif", dir, lc);
  snprintf(f->tmp, sizeof f->tmp, "%s/.%s.gif.XXXXXX", dir, lc);
  set_options(f, timeout);
}

/* Closes the temporary file and moves it into place; -1 with errno set if
 * any step failed (the caller then removes it). */
static int keep_file(struct fl_fetch *f) {
  int fd;

  if (open_tmp(f) < 0) {
    errno = f->create_errno;
    return -1;
  }
  fd = f->fd;
  f->fd = -1;
  if (fchmod(fd, file_mode) < 0) {
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
  }
  if (close(fd) < 0)
    return -1;
  if (rename(f->tmp, f->dest) < 0)
    return -1;
  f->made = 0;
  return 0;
}

/* Sorts out how a finished transfer went. Returns non-zero if the body is
 * a flag to keep. */
static int classify(struct fl_fetch *f, CURLcode rc, struct fl_result *out) {
  if (f->easy) {
    curl_easy_getinfo(f->easy, CURLINFO_RESPONSE_CODE, &f->http);
    note_type(f);
  }
  out->http = f->http;
  out->bytes = f->bytes;
  if (rc == CURLE_ABORTED_BY_CALLBACK && fl_stopping()) {
    out->status = FL_INTERRUPTED;
  } else if (f->oversize || rc == CURLE_FILESIZE_EXCEEDED) {
    set_error(out, "response body larger than 1 MiB");
  } else if (f->not_gif) {
    set_not_gif(f, out);
  } else if (f->create_errno && f->http == 200) {
    set_error(out, "cannot create a temporary file for %s: %s", f->dest,
              strerror(f->create_errno));
  } else if (f->write_errno) {
    set_error(out, "cannot write %s: %s", f->tmp, strerror(f->write_errno));
  } else if (rc != CURLE_OK) {
    set_error(out, "%s", f->errbuf[0] ? f->errbuf : curl_easy_strerror(rc));
  } else if (out->http == 404) {
    out->status = FL_NOT_FOUND;
  } else if (out->http != 200) {
    set_error(out, "HTTP error %ld - %s", out->http, reason_of(f, out->http));
  } else if (!type_is_gif(f->type) || f->head_len < sizeof f->head) {
    set_not_gif(f, out);
  } else {
    out->status = FL_OK;
    return 1;
  }
  return 0;
}

void fl_fetch_detach(struct fl_fetch *f) {
  curl_easy_getinfo(f->easy, CURLINFO_RESPONSE_CODE, &f->http);
  note_type(f);
  curl_easy_setopt(f->easy, CURLOPT_ERRORBUFFER, NULL);
  curl_easy_setopt(f->easy, CURLOPT_PRIVATE, NULL);
  f->easy = NULL;
}

void fl_fetch_finish(struct fl_fetch *f, CURLcode rc, struct fl_result *out) {
  if (classify(f, rc, out) && keep_file(f) < 0)
    set_error(out, "cannot save %s: %s", f->dest, strerror(errno));
  if (f->fd >= 0)
    close(f->fd);
  f->fd = -1;
  if (f->made)
    unlink(f->tmp);
  f->made = 0;
}

void fl_fetch_one(CURL *easy, const char *base_url, const char *dir,
                  const char *cc, double timeout, struct fl_result *out) {
  struct fl_fetch *f = malloc(sizeof *f);

  if (!f) {
    memset(out, 0, sizeof *out);
    memcpy(out->cc, cc, 2);
    set_error(out, "out of memory");
    return;
  }
  if (fl_stopping()) {
    memset(out, 0, sizeof *out);
    memcpy(out->cc, cc, 2);
    out->status = FL_INTERRUPTED;
  } else {
    fl_fetch_begin(f, easy, base_url, dir, cc, timeout, out);
    fl_fetch_finish(f, curl_easy_perform(easy), out);
  }
  free(f);
}
