/*
 * Error codes: the table lives in procpool.h (PP_ERRNO_MAP); this file turns
 * it into strings. There is no default: case, so -Wswitch reports a code
 * added to the enum without a message.
 */
#include "procpool.h"

/* What `code` means, for any int: unknown codes get a string, never NULL. */
const char *pp_strerror(int code) {
  switch ((pp_error)code) {
#define PP_STRERROR_CASE(name, value, text)                                    \
  case PP_##name:                                                              \
    return text;
    PP_ERRNO_MAP(PP_STRERROR_CASE)
#undef PP_STRERROR_CASE
  }
  return code == 0 ? "success" : "unknown procpool error";
}

/* The enum's spelling of `code`, for messages meant for programmers. */
const char *pp_errname(int code) {
  switch ((pp_error)code) {
#define PP_ERRNAME_CASE(name, value, text)                                     \
  case PP_##name:                                                              \
    return "PP_" #name;
    PP_ERRNO_MAP(PP_ERRNAME_CASE)
#undef PP_ERRNAME_CASE
  }
  return code == 0 ? "PP_OK" : "PP_UNKNOWN";
}
