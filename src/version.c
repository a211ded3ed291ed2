/*
 * The library's version at run time. The numbers come from procpool.h,
 * which CMake checks against project(VERSION) at configure time; compiled
 * into the library, they tell a program which library it actually runs
 * against, whatever header it was built with.
 */
#include "procpool.h"

/* The version string of this build of the library, e.g. "0.1.0". */
const char *pp_version(void) {
  return PP_VERSION_STRING;
}

/* The same as a number, 0xMMmmpp, comparable with PP_VERSION_NUMBER. */
unsigned pp_version_number(void) {
  return PP_VERSION_NUMBER;
}
