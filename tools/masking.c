/*
 * masking: see masking.h.
 */
#include "masking.h"

int mask_copy(char *out, size_t size, const char *text) {
  size_t i;
  for (i = 0; text[i] && i + 1 < size; i++)
    out[i] = (unsigned char)text[i] < 0x20 || (unsigned char)text[i] >= 0x7f
                 ? '?'
                 : text[i];
  out[i] = '\0';
  return text[i] != '\0';
}
