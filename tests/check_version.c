/*
 * The version: the header's macros, pp_version() and pp_version_number()
 * agree with each other and with CMake's project(VERSION), passed in as
 * PP_PROJECT_VERSION, so that a release bumped in one place only fails.
 */
#include "testutil.h"

#include <procpool.h>

/* The string macro spells the three numbers, and the library says the same
 * as the header it was built with. */
START_TEST(test_string) {
  char spelled[32];

  snprintf(spelled, sizeof spelled, "%d.%d.%d", PP_VERSION_MAJOR,
           PP_VERSION_MINOR, PP_VERSION_PATCH);
  ck_assert_str_eq(spelled, PP_VERSION_STRING);
  ck_assert_str_eq(pp_version(), PP_VERSION_STRING);
  ck_assert_str_eq(pp_version(), PP_PROJECT_VERSION);
}
END_TEST

/* The number packs the three parts as 0xMMmmpp, at compile and run time. */
START_TEST(test_number) {
  unsigned want = ((unsigned)PP_VERSION_MAJOR << 16) |
                  ((unsigned)PP_VERSION_MINOR << 8) | PP_VERSION_PATCH;

  ck_assert_uint_eq(PP_VERSION_NUMBER, want);
  ck_assert_uint_eq(pp_version_number(), want);
}
END_TEST

static Suite *make_version_suite(void) {
  Suite *s = suite_create("version");
  TCase *tc = tcase_create("version");
  tcase_add_test(tc, test_string);
  tcase_add_test(tc, test_number);
  suite_add_tcase(s, tc);
  return s;
}

TU_MAIN(make_version_suite)
