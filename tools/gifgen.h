/*
 * Synthetic country flags for flagserver: one GIF89a per two-letter code,
 * drawn from nothing but the code, so every run gives the same bytes.
 */
#ifndef GIFGEN_H
#define GIFGEN_H

#include <stddef.h>

/* Smallest and largest size a generated flag may have, like real flags. */
#define GIFGEN_MIN_BYTES 1024
#define GIFGEN_MAX_BYTES (40 * 1024)

/* Draws the flag of `cc` (two ASCII letters, either case) and encodes it as
 * a GIF89a of GIFGEN_MIN_BYTES..GIFGEN_MAX_BYTES bytes. On success stores a
 * malloc'd buffer in *out (OUT, the caller frees it) and its size in *len
 * (OUT) and returns 0; returns -1 with errno EINVAL (bad code), ENOMEM, or
 * ERANGE (no emblem size gave an allowed file size; never seen). */
int gifgen_flag(const char *cc, unsigned char **out, size_t *len);

#endif
