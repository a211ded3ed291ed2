/*
 * The task registry (PP_TASK, pp_task_name, src/registry.c), in every
 * build, with or without Open MPI: names are found, a registered task runs
 * unchanged on the process and thread engines, the manifest is sorted and
 * compared naming what each side lacks, and a name given to two
 * functions is refused.
 */
#include "procpool.h"
#include "registry.h"
#include "testutil.h"

#include <stdint.h>

static int task_double(pp_task *t, const void *arg, size_t len) {
  int64_t v = 0;
  if (len == sizeof v)
    memcpy(&v, arg, sizeof v);
  v *= 2;
  return pp_task_return(t, &v, sizeof v);
}

static int task_other(pp_task *t, const void *arg, size_t len) {
  return pp_task_return(t, arg, len);
}

static int not_registered(pp_task *t, const void *arg, size_t len) {
  return pp_task_return(t, arg, len);
}

PP_TASK(zeta_double, task_double);
PP_TASK(alpha_other, task_other);

START_TEST(test_names) {
  ck_assert_str_eq(pp_task_name(task_double), "zeta_double");
  ck_assert_str_eq(pp_task_name(task_other), "alpha_other");
  ck_assert_ptr_null(pp_task_name(not_registered));
  ck_assert_ptr_null(pp_task_name(NULL));
}
END_TEST

/* A registered task on both engines that run in one program. */
START_TEST(test_runs_on_every_engine) {
  pp_engine engines[] = {PP_ENGINE_PROCESSES, PP_ENGINE_THREADS};

  for (size_t i = 0; i < 2; i++) {
    pp_options o;
    pp_pool *p;
    pp_future *f;
    const void *data;
    size_t len;
    int64_t v = 21, r;
    pp_options_init(&o);
    o.engine = engines[i];
    o.workers = 1;
    ck_assert_int_eq(pp_pool_create(&p, &o), 0);
    ck_assert_int_eq(pp_submit(p, task_double, &v, sizeof v, &f), 0);
    ck_assert_int_eq(pp_future_result(f, 30, &data, &len), 0);
    memcpy(&r, data, sizeof r);
    ck_assert_int_eq(r, 42);
    pp_future_release(f);
    pp_pool_destroy(p);
  }
}
END_TEST

START_TEST(test_manifest) {
  static const char same[] = "alpha_other\0zeta_double";
  static const char other[] = "alpha_other\0beta_new";
  struct pp__registry r;
  char msg[256];

  ck_assert_int_eq(pp__registry_load(&r, msg, sizeof msg), 0);
  ck_assert_uint_eq(r.n, 2);
  ck_assert_uint_eq(r.manifest_len, sizeof same);
  ck_assert_mem_eq(r.manifest, same, sizeof same); /* sorted by name */
  ck_assert_int_eq(pp__registry_index(&r, task_other), 0);
  ck_assert_int_eq(pp__registry_index(&r, task_double), 1);
  ck_assert_int_eq(pp__registry_index(&r, not_registered), -1);
  ck_assert_int_eq(pp__registry_compare(&r, same, sizeof same, msg, sizeof msg),
                   0);
  ck_assert_int_eq(
      pp__registry_compare(&r, other, sizeof other, msg, sizeof msg),
      PP_EUNREGISTERED);
  ck_assert_str_eq(
      msg, "tasks missing here: beta_new; tasks only here: zeta_double");
  pp__registry_free(&r);
}
END_TEST

/* Another object's entries, as a shared object would add them. */
static const pp_task_entry clash[] = {{"zeta_double", task_other}};
static const pp_task_entry repeat[] = {{"alpha_other", task_other}};

START_TEST(test_name_for_two_functions) {
  struct pp__registry r;
  char msg[256];

  pp__tasks_add(repeat, repeat + 1); /* the same pair again: harmless */
  ck_assert_int_eq(pp__registry_load(&r, msg, sizeof msg), 0);
  ck_assert_uint_eq(r.n, 2);
  pp__registry_free(&r);
  pp__tasks_add(clash, clash + 1);
  ck_assert_int_eq(pp__registry_load(&r, msg, sizeof msg), PP_EINVAL);
  ck_assert_str_eq(msg, "task name zeta_double is registered for two "
                        "functions");
}
END_TEST

static Suite *make_registry_suite(void) {
  Suite *s = suite_create("registry");
  TCase *tc = tcase_create("registry");

  tcase_add_test(tc, test_names);
  tcase_add_test(tc, test_runs_on_every_engine);
  tcase_add_test(tc, test_manifest);
  tcase_add_test(tc, test_name_for_two_functions); /* last: it adds a clash */
  suite_add_tcase(s, tc);
  return s;
}

TU_MAIN(make_registry_suite)
