/*
 * flagserver_flagset: every image the server answers with, in memory.
 *
 * DESIGN. Images are loaded (--directory) or drawn (gifgen) once, at
 * startup, each with one persistent MHD response that every request for
 * it reuses; a 26 x 26 table finds one by code. No request path is ever
 * turned into a file-system path: only names the folder itself lists are
 * read, so "..", encoded or not, cannot reach a file by construction.
 * The folder's own entries are not trusted either: a flag is served only
 * if it resolves (symbolic links followed) to a regular file inside the
 * folder, so that DIR/zz/zz.gif -> /etc/passwd serves nothing; files are
 * opened without blocking, so that a FIFO cannot hang the start.
 */
#include "country_codes.h"
#include "flagserver.h"
#include "gifgen.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Adds an image for `cc` (two lower-case letters), taking ownership of
 * data. Returns 0, or -1 (ENOMEM; data is freed). */
static int flagset_add(struct flagset *fs, const char *cc, unsigned char *data,
                       size_t len) {
  struct flag *f;
  if (fs->n == fs->cap) {
    size_t cap = fs->cap ? fs->cap * 2 : 256;
    struct flag *v = realloc(fs->v, cap * sizeof *v);
    if (!v)
      goto out_free_data;
    fs->v = v;
    fs->cap = cap;
  }
  f = &fs->v[fs->n];
  f->resp = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_PERSISTENT);
  if (!f->resp)
    goto out_free_data;
  if (MHD_add_response_header(f->resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                              "image/gif") != MHD_YES)
    goto out_destroy_resp;
  memcpy(f->cc, cc, 3);
  f->data = data;
  f->len = len;
  fs->index[(cc[0] - 'a') * 26 + (cc[1] - 'a')] = (int)fs->n++;
  return 0;

out_destroy_resp:
  MHD_destroy_response(f->resp);
out_free_data:
  free(data);
  errno = ENOMEM;
  return -1;
}

/* The image for `cc` (two lower-case letters), or NULL. */
struct flag *fs_flagset_find(struct flagset *fs, const char *cc) {
  int i = fs->index[(cc[0] - 'a') * 26 + (cc[1] - 'a')];
  return i < 0 ? NULL : &fs->v[i];
}

/* Frees every image and its response; the set is empty afterwards. */
void fs_flagset_free(struct flagset *fs) {
  for (size_t i = 0; i < fs->n; i++) {
    MHD_destroy_response(fs->v[i].resp);
    free(fs->v[i].data);
  }
  free(fs->v);
  fs->v = NULL;
  fs->n = fs->cap = 0;
  memset(fs->index, -1, sizeof fs->index);
}

/* Draws the 194 flags of country_codes. Returns 0, or -1 with a message. */
int fs_generate_flags(struct flagset *fs) {
  for (int i = 0; i < COUNTRY_CODE_COUNT; i++) {
    char cc[3] = {(char)(country_codes[i][0] | 0x20),
                  (char)(country_codes[i][1] | 0x20), 0};
    unsigned char *data;
    size_t len;
    if (gifgen_flag(cc, &data, &len) < 0 || flagset_add(fs, cc, data, len)) {
      fprintf(stderr, "flagserver: cannot draw flag %s: %s\n", cc,
              strerror(errno));
      return -1;
    }
  }
  return 0;
}

/* Reads all of a regular file of at most `max` bytes into *out (OUT,
 * malloc'd). Returns 0, or -1 with errno. */
static int read_file(const char *path, size_t max, unsigned char **out,
                     size_t *len) {
  struct stat st;
  unsigned char *buf;
  size_t got = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0)
    return -1;
  if (fstat(fd, &st) < 0)
    goto out_close;
  if (!S_ISREG(st.st_mode) || (size_t)st.st_size > max) {
    errno = S_ISREG(st.st_mode) ? EFBIG : EISDIR;
    goto out_close;
  }
  if (!(buf = malloc((size_t)st.st_size + 1)))
    goto out_close;
  while (got < (size_t)st.st_size) {
    ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0) {
      errno = r < 0 ? errno : EIO;
      goto out_free_buf;
    }
    got += (size_t)r;
  }
  buf[got] = 0;
  close(fd);
  *out = buf;
  *len = got;
  return 0;

out_free_buf:
  free(buf);
out_close : {
  int saved = errno;
  close(fd);
  errno = saved;
}
  return -1;
}

/* Appends the code `cc` (two letters, any case) in lower case to codes[]
 * (room for all 26 * 26) unless already there. */
static void add_code(char (*codes)[3], int *n, const char *cc) {
  char lc[3] = {(char)(cc[0] | 0x20), (char)(cc[1] | 0x20), 0};
  for (int i = 0; i < *n; i++)
    if (!strcmp(codes[i], lc))
      return;
  memcpy(codes[(*n)++], lc, 3);
}

/* Codes listed in DIR/country_codes.txt. Returns how many, 0 if there is no
 * such file; exits with a usage error on a token that is not a code. */
static int codes_from_list(const char *dir, char (*codes)[3]) {
  char path[4096];
  unsigned char *text;
  size_t len;
  int n = 0;

  snprintf(path, sizeof path, "%s/country_codes.txt", dir);
  if (read_file(path, 1 << 20, &text, &len) < 0)
    return 0;
  for (char *save, *tok = strtok_r((char *)text, " \t\r\n", &save); tok;
       tok = strtok_r(NULL, " \t\r\n", &save)) {
    char lc0 = (char)(tok[0] | 0x20), lc1 = (char)(tok[1] | 0x20);
    if (!fs_is_lower(lc0) || !fs_is_lower(lc1) || tok[2]) {
      fprintf(stderr,
              "flagserver: %s: '%.40s' is not a two-letter country code; "
              "fix or delete that file\n",
              path, tok);
      free(text);
      exit(EXIT_USAGE);
    }
    add_code(codes, &n, tok);
  }
  free(text);
  return n;
}

/* Codes of the two-lower-case-letter entries of DIR, for a folder without
 * country_codes.txt. */
static int codes_from_entries(const char *dir, char (*codes)[3]) {
  DIR *d = opendir(dir);
  struct dirent *e;
  int n = 0;
  if (!d)
    return 0;
  while ((e = readdir(d)) != NULL)
    if (fs_is_lower(e->d_name[0]) && fs_is_lower(e->d_name[1]) && !e->d_name[2])
      add_code(codes, &n, e->d_name);
  closedir(d);
  return n;
}

/* Loads DIR/<cc>/<cc>.gif for every code the folder names. Exits with a
 * usage error if DIR is not a folder or holds no flags; returns 0, or -1
 * (out of memory). */
/* Non-zero if the resolved path `real` lies inside the resolved folder
 * `root`; else 0 with errno EXDEV. */
static int inside(const char *root, const char *real) {
  size_t n = strlen(root);
  if (strncmp(real, root, n) == 0 && (real[n] == '/' || n == 1))
    return 1;
  errno = EXDEV;
  return 0;
}

int fs_load_directory(struct flagset *fs, const char *dir) {
  static char codes[26 * 26][3];
  char root[PATH_MAX];
  struct stat st;
  int n;

  errno = 0;
  if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
    fs_die_usage("--directory '%s': %s; give a folder holding <cc>/<cc>.gif "
                 "files, or omit it to serve generated flags",
                 dir, strerror(errno ? errno : ENOTDIR));
  n = codes_from_list(dir, codes);
  if (n == 0)
    n = codes_from_entries(dir, codes);
  if (!realpath(dir, root))
    fs_die_usage("--directory '%s': %s", dir, strerror(errno));
  for (int i = 0; i < n; i++) {
    char path[4096], real[PATH_MAX];
    unsigned char *data;
    size_t len;
    snprintf(path, sizeof path, "%s/%s/%s.gif", dir, codes[i], codes[i]);
    if (!realpath(path, real) || !inside(root, real) ||
        read_file(real, MAX_FLAG_BYTES, &data, &len) < 0) {
      fprintf(stderr, "flagserver: warning: not serving %s: %s: %s\n", codes[i],
              path,
              errno == EXDEV ? "resolves outside the folder" : strerror(errno));
      continue;
    }
    if (flagset_add(fs, codes[i], data, len) < 0)
      return -1;
  }
  if (fs->n == 0)
    fs_die_usage("--directory '%s' holds no flags (expected <cc>/<cc>.gif, "
                 "e.g. br/br.gif); point it at a folder of flags or omit it "
                 "to serve generated ones",
                 dir);
  return 0;
}
