/*
 * Synthetic flags.
 *
 * DESIGN. A flag is a layout (horizontal bands, vertical bands, a Nordic
 * cross, a canton over stripes, a diagonal split) in colours taken from a
 * fixed 16-colour palette, plus a round emblem filled with a speckled
 * pattern. Every choice comes from a hash of the code, so the same code
 * always gives the same bytes; no clock, no rand().
 *
 * Flat areas cost LZW almost nothing, so the size of the file is set by the
 * emblem: its speckles cost a roughly constant number of bits per pixel.
 * Each code gets a target size between TARGET_MIN and TARGET_MAX and an
 * emblem whose area should bring the file there (INK_BYTES_PER_PIXEL was
 * measured: about 0.46-0.51 for every layout). One encode is enough for
 * all 194 codes; should a file still fall outside GIFGEN_MIN_BYTES..
 * GIFGEN_MAX_BYTES, the area is corrected by the error and we encode again.
 *
 * Encoding goes through giflib's EGifOpen with a callback that appends to
 * a growing memory buffer.
 */
#include "gifgen.h"

#include <errno.h>
#include <gif_lib.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PALETTE_SIZE 16
#define INKS 8
#define TARGET_MIN 2500
#define TARGET_MAX 30000
#define BARE_GUESS 1500.0        /* bytes of a flag without emblem, roughly */
#define INK_BYTES_PER_PIXEL 0.47 /* what LZW makes of 8 speckle colours */

enum layout { HBANDS, VBANDS, CROSS, CANTON, DIAGONAL, LAYOUTS };

/* What a flag looks like; everything is derived from the code. */
struct design {
  int w, h;               /* size in pixels */
  enum layout layout;     /* which field pattern */
  int nbands;             /* bands (HBANDS, VBANDS) or stripes (CANTON) */
  GifPixelType field[4];  /* palette indices of the field colours */
  int ex, ey;             /* centre of the emblem */
  int rmax;               /* largest emblem radius that fits the layout */
  GifPixelType ink[INKS]; /* palette indices of the emblem speckles */
  uint32_t seed;          /* hash of the code, for the speckles */
};

/* A growing buffer that giflib writes into. */
struct membuf {
  unsigned char *p;
  size_t len, cap;
};

static const GifColorType palette[PALETTE_SIZE] = {
    {0xFF, 0xFF, 0xFF}, {0xCE, 0x11, 0x26}, {0x00, 0x28, 0x68},
    {0x00, 0x7A, 0x3D}, {0xFC, 0xD1, 0x16}, {0x00, 0x00, 0x00},
    {0xFF, 0x88, 0x3E}, {0x75, 0xAA, 0xDB}, {0x8D, 0x1B, 0x3D},
    {0x00, 0x62, 0x33}, {0x41, 0x69, 0xE1}, {0xD4, 0xAF, 0x37},
    {0x7B, 0x3F, 0x00}, {0x6A, 0x0D, 0xAD}, {0x80, 0x80, 0x80},
    {0xF4, 0xA6, 0xC6}};

/* A 32-bit finaliser (from MurmurHash3): spreads every input bit. */
static uint32_t mix(uint32_t x) {
  x ^= x >> 16;
  x *= 0x85EBCA6BU;
  x ^= x >> 13;
  x *= 0xC2B2AE35U;
  x ^= x >> 16;
  return x;
}

/* The n-th pseudo-random number of the stream named by seed. */
static uint32_t pick(uint32_t seed, uint32_t n) {
  return mix(seed ^ mix(n + 0x9E3779B9U));
}

/* Fills out[0..n) with distinct palette indices below `below`, drawn from
 * the stream `stream` of the design's seed. */
static void choose_colours(const struct design *d, uint32_t stream,
                           GifPixelType *out, int n, int below) {
  int used = 0;
  for (int i = 0, k = 0; i < n; k++) {
    int c = (int)(pick(d->seed, stream + (uint32_t)k) % (uint32_t)below);
    if (used & (1 << c))
      continue;
    used |= 1 << c;
    out[i++] = (GifPixelType)c;
  }
}

/* Places the emblem where the layout leaves room for it. */
static void place_emblem(struct design *d) {
  d->ex = d->w / 2;
  d->ey = d->h / 2;
  d->rmax = d->h * 9 / 20;
  if (d->layout == CROSS) {
    d->ex = d->w * 3 / 8;
    d->rmax = d->h * 2 / 5;
  } else if (d->layout == CANTON) {
    d->ex = d->w / 5;
    d->ey = d->h * 7 / 26;
    d->rmax = (d->ex < d->ey ? d->ex : d->ey) - 2;
  }
}

/* Derives the whole design from the code. */
static void design_for(const char *cc, struct design *d) {
  static const int ratio[][2] = {{1, 2}, {2, 3}, {3, 5}, {5, 8}, {7, 10}};
  uint32_t code = (uint32_t)(cc[0] & ~0x20) << 8 | (uint32_t)(cc[1] & ~0x20);

  memset(d, 0, sizeof *d);
  d->seed = mix(code * 0x01000193U + 0x811C9DC5U);
  d->w = 400 + (int)(pick(d->seed, 1) % 5) * 50;
  const int *r = ratio[pick(d->seed, 2) % 5];
  d->h = d->w * r[0] / r[1];
  d->layout = (enum layout)(pick(d->seed, 3) % LAYOUTS);
  d->nbands = d->layout == CANTON ? 5 + 2 * (int)(pick(d->seed, 4) % 5)
                                  : 2 + (int)(pick(d->seed, 4) % 2);
  choose_colours(d, 100, d->field, 4, 12);
  choose_colours(d, 200, d->ink, INKS, PALETTE_SIZE);
  place_emblem(d);
}

/* Colour of the field (everything but the emblem) at (x, y). */
static GifPixelType field_at(const struct design *d, int x, int y) {
  int w = d->w, h = d->h;
  switch (d->layout) {
  case HBANDS:
    return d->field[y * d->nbands / h];
  case VBANDS:
    return d->field[x * d->nbands / w];
  case CROSS: {
    int t = h / 10, cx = w * 3 / 8;
    if (abs(x - cx) < t / 2 || abs(y - h / 2) < t / 2)
      return d->field[2];
    if (abs(x - cx) < t || abs(y - h / 2) < t)
      return d->field[1];
    return d->field[0];
  }
  case CANTON:
    if (x < w * 2 / 5 && y < h * 7 / 13)
      return d->field[2];
    return d->field[(y * d->nbands / h) % 2];
  case DIAGONAL: {
    long s = (long)x * h + (long)y * w - (long)w * h;
    if (labs(s) < (long)w * h / 8)
      return d->field[2];
    return d->field[s < 0 ? 0 : 1];
  }
  case LAYOUTS:
    break;
  }
  return 0;
}

/* Colour of the flag at (x, y) with an emblem of radius r. */
static GifPixelType pixel_at(const struct design *d, int r, int x, int y) {
  long dx = x - d->ex, dy = y - d->ey;
  if (dx * dx + dy * dy < (long)r * r) {
    uint32_t n = (uint32_t)y * 65536U + (uint32_t)x;
    return d->ink[pick(d->seed, n) % INKS];
  }
  return field_at(d, x, y);
}

/* giflib output callback: appends to the membuf in UserData. */
static int membuf_write(GifFileType *gif, const GifByteType *buf, int len) {
  struct membuf *m = gif->UserData;
  if (m->len + (size_t)len > m->cap) {
    size_t cap = m->cap ? m->cap * 2 : 16384;
    while (cap < m->len + (size_t)len)
      cap *= 2;
    unsigned char *p = realloc(m->p, cap);
    if (!p)
      return 0;
    m->p = p;
    m->cap = cap;
  }
  memcpy(m->p + m->len, buf, (size_t)len);
  m->len += (size_t)len;
  return len;
}

/* Writes every row of the design with an emblem of radius r. */
static int put_rows(GifFileType *gif, const struct design *d, int r) {
  GifPixelType *line = malloc((size_t)d->w);
  int rc = GIF_ERROR;
  if (!line)
    return GIF_ERROR;
  for (int y = 0; y < d->h; y++) {
    for (int x = 0; x < d->w; x++)
      line[x] = pixel_at(d, r, x, y);
    if (EGifPutLine(gif, line, d->w) == GIF_ERROR)
      goto out_free_line;
  }
  rc = GIF_OK;
out_free_line:
  free(line);
  return rc;
}

/* Encodes the design with an emblem of radius r into *m (OUT, malloc'd).
 * Returns 0, or -1 with errno ENOMEM. */
static int encode(const struct design *d, int r, struct membuf *m) {
  ColorMapObject *map;
  GifFileType *gif;
  int err, ok;

  memset(m, 0, sizeof *m);
  if (!(map = GifMakeMapObject(PALETTE_SIZE, palette)))
    goto out_nomem;
  if (!(gif = EGifOpen(m, membuf_write, &err)))
    goto out_free_map;
  EGifSetGifVersion(gif, true);
  ok = EGifPutScreenDesc(gif, d->w, d->h, 8, 0, map) == GIF_OK &&
       EGifPutImageDesc(gif, 0, 0, d->w, d->h, false, NULL) == GIF_OK &&
       put_rows(gif, d, r) == GIF_OK;
  if (EGifCloseFile(gif, &err) == GIF_ERROR || !ok)
    goto out_free_buf;
  GifFreeMapObject(map);
  return 0;

out_free_buf:
  free(m->p);
  m->p = NULL;
out_free_map:
  GifFreeMapObject(map);
out_nomem:
  errno = ENOMEM;
  return -1;
}

/* True if a GIF of len bytes is within the allowed sizes. */
static int in_range(size_t len) {
  return len >= GIFGEN_MIN_BYTES && len <= GIFGEN_MAX_BYTES;
}

/* True for an ASCII letter, whatever the locale. */
static int is_letter(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Emblem radius for an emblem of `area` pixels, within what fits. */
static int radius_for(const struct design *d, double area) {
  double r = area > 0 ? sqrt(area / M_PI) : 0;
  return r > d->rmax ? d->rmax : (int)lround(r);
}

int gifgen_flag(const char *cc, unsigned char **out, size_t *len) {
  struct design d;
  struct membuf m;
  double target, area;

  if (!cc || !is_letter(cc[0]) || !is_letter(cc[1]) || cc[2]) {
    errno = EINVAL;
    return -1;
  }
  design_for(cc, &d);
  target = TARGET_MIN + pick(d.seed, 5) % (TARGET_MAX - TARGET_MIN);
  area = (target - BARE_GUESS) / INK_BYTES_PER_PIXEL;
  for (int attempt = 0; attempt < 4; attempt++) {
    if (encode(&d, radius_for(&d, area), &m) < 0)
      return -1;
    if (in_range(m.len)) {
      *out = m.p;
      *len = m.len;
      return 0;
    }
    free(m.p);
    area += (target - (double)m.len) / INK_BYTES_PER_PIXEL;
  }
  errno = ERANGE;
  return -1;
}
