/*
 * masking: text from the network made safe to print.
 *
 * DESIGN. A server's reason phrase, a client's request line: whatever a
 * peer sends may hold escape sequences, CR or C1 controls that would
 * drive the terminal the tool prints to. Both tools pass such text
 * through mask_copy() before printing it.
 */
#ifndef MASKING_H
#define MASKING_H

#include <stddef.h>

/* Copies text into out (size > 0 bytes, NUL-terminated; out may be text
 * itself) with every byte that is not printable ASCII shown as '?'.
 * Returns non-zero if text did not fit. */
int mask_copy(char *out, size_t size, const char *text);

#endif
