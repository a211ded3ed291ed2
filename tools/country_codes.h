/*
 * The 194 country codes of the classic flags exercise, upper case, sorted.
 * Shared by flags (what -a asks for) and flagserver (what it generates).
 */
#ifndef COUNTRY_CODES_H
#define COUNTRY_CODES_H

#include <stddef.h>

#define COUNTRY_CODE_COUNT 194

extern const char *const country_codes[COUNTRY_CODE_COUNT];

/* Index of `cc` (two letters, either case) in country_codes, or -1. */
int country_code_index(const char *cc);

#endif
