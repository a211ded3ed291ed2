/*
 * check_semantics, futures: what CPython's test_concurrent_futures checks
 * in test_future, test_wait and test_as_completed, as C tests of the same
 * behaviours, wherever the C API has an equivalent. Where procpool
 * deliberately differs (the header says so at the function), the test
 * checks procpool's documented behaviour and says so. The already-done
 * futures of CPython's util.py come from make_done().
 */
#include "semantics.h"

#include <stdio.h>
#include <stdlib.h>

/* ------------------------------------------------------ test_future */

struct cb_record {
  atomic_int calls;
  int rc;
  int cancelled;
};

static void cb_record(pp_future *f, void *arg) {
  struct cb_record *r = arg;
  r->rc = pp_future_result(f, 0, NULL, NULL);
  r->cancelled = pp_future_cancelled(f);
  atomic_fetch_add(&r->calls, 1);
}

static int called(void *r) {
  return atomic_load(&((struct cb_record *)r)->calls) > 0;
}

/* test_done_callback_with_{result,exception,cancel}: a callback added to a
 * pending future runs once it resolves, and sees how it ended; a cancel
 * runs it before pp_future_cancel() returns. */
START_TEST(test_py_done_callback_pending) {
  pp_pool *p = pool_n(1);
  pp_future *g = submit_i64(p, task_gate, 0);
  pp_future *ok = submit_i64(p, task_echo, 5);
  pp_future *err = submit_i64(p, task_fail, 0);
  pp_future *can = submit_i64(p, task_echo, 6);
  struct cb_record r[3] = {0};

  ck_assert_int_eq(pp_future_add_done_callback(ok, cb_record, &r[0]), 0);
  ck_assert_int_eq(pp_future_add_done_callback(err, cb_record, &r[1]), 0);
  ck_assert_int_eq(pp_future_add_done_callback(can, cb_record, &r[2]), 0);
  ck_assert_int_eq(pp_future_cancel(can), 0);
  ck_assert_int_eq(atomic_load(&r[2].calls), 1);
  ck_assert(r[2].cancelled);
  ck_assert_int_eq(r[2].rc, PP_ECANCELLED);
  atomic_store(&page->gate, 1);
  ck_assert(eventually(called, &r[0], 30) && eventually(called, &r[1], 30));
  ck_assert_int_eq(r[0].rc, 0);
  ck_assert_int_eq(r[1].rc, PP_ETASK);
  ck_assert(!r[0].cancelled && !r[1].cancelled);
  ck_assert_int_eq(atomic_load(&r[0].calls) + atomic_load(&r[1].calls), 2);
  pp_future_release(g);
  pp_future_release(ok);
  pp_future_release(err);
  pp_future_release(can);
  pp_pool_destroy(p);
}
END_TEST

/* test_done_callback_already_{successful,failed,cancelled}: a callback
 * added to a done future runs at once, in the caller. */
START_TEST(test_py_done_callback_already_done) {
  struct done3 d = make_done();
  struct cb_record r[3] = {0};

  ck_assert_int_eq(pp_future_add_done_callback(d.ok, cb_record, &r[0]), 0);
  ck_assert_int_eq(pp_future_add_done_callback(d.err, cb_record, &r[1]), 0);
  ck_assert_int_eq(pp_future_add_done_callback(d.cancelled, cb_record, &r[2]),
                   0);
  for (int i = 0; i < 3; i++)
    ck_assert_int_eq(atomic_load(&r[i].calls), 1);
  ck_assert_int_eq(r[0].rc, 0);
  ck_assert_int_eq(r[1].rc, PP_ETASK);
  ck_assert_int_eq(r[2].rc, PP_ECANCELLED);
  ck_assert(r[2].cancelled && !r[0].cancelled && !r[1].cancelled);
  release_done(&d);
}
END_TEST

static void check_format(const pp_future *f, const char *state) {
  char buf[256];
  pp_future_format(f, buf, sizeof buf);
  ck_assert_msg(strncmp(buf, "<Future at 0x", 13) == 0 && strstr(buf, state),
                "\"%s\" lacks \"%s\"", buf, state);
}

/* test_repr, for every state. */
START_TEST(test_py_future_repr) {
  pp_pool *p = pool_n(1);
  pp_future *g = submit_i64(p, task_gate, 0);
  pp_future *pend = submit_i64(p, task_echo, 1);
  struct done3 d = make_done();

  ck_assert(eventually(is_running, g, 10));
  check_format(pend, " state=pending>");
  check_format(g, " state=running>");
  check_format(d.cancelled, " state=cancelled>");
  check_format(d.ok, " state=finished returned 8 bytes>");
  check_format(d.err, " state=finished raised PP_ETASK: error 42>");
  atomic_store(&page->gate, 1);
  ck_assert_int_eq(result_i64(pend), 1);
  pp_future_release(g);
  pp_future_release(pend);
  release_done(&d);
  pp_pool_destroy(p);
}
END_TEST

/* test_cancel, test_cancelled, test_done, test_running, and
 * test_result_with_timeout / test_exception_with_timeout (a zero timeout
 * never waits) for a future in each state. */
START_TEST(test_py_future_states) {
  pp_pool *p = pool_n(1);
  pp_future *run = submit_i64(p, task_gate, 0);
  pp_future *pend = submit_i64(p, task_echo, 1);
  pp_future *pend2 = submit_i64(p, task_echo, 2);
  struct done3 d = make_done();
  const void *data;
  size_t len;

  ck_assert(eventually(is_running, run, 10));
  /* pending */
  ck_assert(!pp_future_done(pend) && !pp_future_running(pend) &&
            !pp_future_cancelled(pend));
  ck_assert_int_eq(pp_future_state(pend), PP_PENDING);
  ck_assert_int_eq(pp_future_result(pend, 0, NULL, NULL), PP_ETIMEDOUT);
  ck_assert_int_eq(pp_future_result(pend, 0.05, NULL, NULL), PP_ETIMEDOUT);
  /* running: cannot be cancelled, stays running */
  ck_assert(!pp_future_done(run) && pp_future_running(run) &&
            !pp_future_cancelled(run));
  ck_assert_int_eq(pp_future_result(run, 0, NULL, NULL), PP_ETIMEDOUT);
  ck_assert_int_eq(pp_future_cancel(run), PP_EBUSY);
  ck_assert_int_eq(pp_future_state(run), PP_RUNNING);
  /* pending -> cancelled; cancelling again still answers 0 */
  ck_assert_int_eq(pp_future_cancel(pend2), 0);
  ck_assert_int_eq(pp_future_state(pend2), PP_CANCELLED);
  ck_assert_int_eq(pp_future_cancel(pend2), 0);
  ck_assert_int_eq(pp_future_cancel(d.cancelled), 0);
  ck_assert(pp_future_done(d.cancelled) && pp_future_cancelled(d.cancelled) &&
            !pp_future_running(d.cancelled));
  ck_assert_int_eq(pp_future_result(d.cancelled, 0, NULL, NULL), PP_ECANCELLED);
  /* finished, raised or returned: cannot be cancelled */
  ck_assert_int_eq(pp_future_cancel(d.err), PP_EINVAL);
  ck_assert_int_eq(pp_future_state(d.err), PP_FINISHED);
  ck_assert(pp_future_done(d.err) && !pp_future_cancelled(d.err) &&
            !pp_future_running(d.err));
  ck_assert_int_eq(pp_future_result(d.err, 0, NULL, NULL), PP_ETASK);
  ck_assert_int_eq(pp_future_task_code(d.err), 42);
  ck_assert_int_eq(pp_future_cancel(d.ok), PP_EINVAL);
  ck_assert_int_eq(pp_future_state(d.ok), PP_FINISHED);
  ck_assert(pp_future_done(d.ok) && !pp_future_cancelled(d.ok));
  ck_assert_int_eq(pp_future_result(d.ok, 0, &data, &len), 0);
  ck_assert_int_eq(arg_i64(data, len), 42);
  atomic_store(&page->gate, 1);
  ck_assert_int_eq(result_i64(pend), 1);
  pp_future_release(run);
  pp_future_release(pend);
  pp_future_release(pend2);
  release_done(&d);
  pp_pool_destroy(p);
}
END_TEST

static void open_gate_later(void *arg) {
  (void)arg;
  sleep_ms(100);
  atomic_store(&page->gate, 1);
}

/* test_result_with_success: a waiter with a timeout gets the result that
 * arrives while it waits. (test_result_with_cancel is test_d01.) */
START_TEST(test_py_result_with_success) {
  pp_pool *p = pool_n(1);
  pp_future *f = submit_i64(p, task_gate, 9);
  const void *data;
  size_t len;
  struct bg b;

  bg_start(&b, open_gate_later, NULL);
  ck_assert_int_eq(pp_future_result(f, 10, &data, &len), 0);
  ck_assert_int_eq(arg_i64(data, len), 9);
  ck_assert(bg_finished_within(&b, 10));
  pp_future_release(f);
  pp_pool_destroy(p);
}
END_TEST

/* -------------------------------------------------------- test_wait */

/* test_20369: the same future twice, ALL_COMPLETED, returns. */
START_TEST(test_py_wait_duplicate) {
  pp_pool *p = pool_n(1);
  pp_future *f = submit_i64(p, task_square, 2);
  pp_future *fs[2] = {f, f};
  unsigned char done[2] = {0, 0};
  int n = pp_wait(fs, 2, 30, PP_ALL_COMPLETED, done);

  ck_assert(n == 1 || n == 2);
  ck_assert(done[0] && done[1]);
  ck_assert_int_eq(result_i64(f), 4);
  pp_future_release(f);
  pp_pool_destroy(p);
}
END_TEST

/* test_first_completed and ..._some_already_completed. procpool counts a
 * cancelled future as done (Python's CANCELLED_AND_NOTIFIED). */
START_TEST(test_py_wait_first_completed) {
  pp_pool *p = pool_n(2);
  pp_future *f1 = submit_i64(p, task_square, 21),
            *f2 = submit_i64(p, task_gate, 0);
  struct done3 d = make_done();
  pp_future *a[2] = {f1, f2}, *b[3] = {d.cancelled, d.ok, f2};
  unsigned char done[3];

  ck_assert_int_eq(pp_wait(a, 2, 30, PP_FIRST_COMPLETED, done), 1);
  ck_assert(done[0] && !done[1]);
  ck_assert_int_eq(pp_wait(b, 3, 30, PP_FIRST_COMPLETED, done), 2);
  ck_assert(done[0] && done[1] && !done[2]);
  atomic_store(&page->gate, 1);
  ck_assert_int_eq(result_i64(f2), 0);
  pp_future_release(f1);
  pp_future_release(f2);
  release_done(&d);
  pp_pool_destroy(p);
}
END_TEST

static void release_gate_after(void *f) {
  result_i64(f);
  atomic_store(&page->gate, 1);
}

/* test_first_exception: f1 succeeds, then f2 fails; f3 still runs. Then
 * ..._some_already_complete and ..._one_already_failed. */
START_TEST(test_py_wait_first_exception) {
  pp_pool *p = pool_n(3);
  pp_future *f1 = submit_i64(p, task_square, 2);
  pp_future *f2 = submit_i64(p, task_gate_fail, 0);
  pp_future *f3 = submit_i64(p, task_gate2, 0);
  pp_future *a[3] = {f1, f2, f3};
  struct done3 d = make_done();
  unsigned char done[4];
  struct bg b;

  bg_start(&b, release_gate_after, f1);
  ck_assert_int_eq(pp_wait(a, 3, 30, PP_FIRST_EXCEPTION, done), 2);
  ck_assert(done[0] && done[1] && !done[2]);
  ck_assert(bg_finished_within(&b, 30));
  {
    pp_future *c[4] = {d.ok, d.cancelled, f2, f3};
    ck_assert_int_eq(pp_wait(c, 4, 30, PP_FIRST_EXCEPTION, done), 3);
    ck_assert(done[0] && done[1] && done[2] && !done[3]);
  }
  {
    pp_future *e[2] = {d.err, f3};
    ck_assert_int_eq(pp_wait(e, 2, 30, PP_FIRST_EXCEPTION, done), 1);
    ck_assert(done[0] && !done[1]);
  }
  atomic_store(&page->gate2, 1);
  ck_assert_int_eq(result_i64(f3), 0);
  pp_future_release(f1);
  pp_future_release(f2);
  pp_future_release(f3);
  release_done(&d);
  pp_pool_destroy(p);
}
END_TEST

/* test_all_completed and test_timeout (ALL_COMPLETED with a short timeout
 * returns what is done). */
START_TEST(test_py_wait_all_completed_and_timeout) {
  pp_pool *p = pool_n(2);
  pp_future *f1 = submit_i64(p, task_fail, 0),
            *f2 = submit_i64(p, task_square, 3);
  struct done3 d = make_done();
  pp_future *a[5] = {d.ok, d.cancelled, d.err, f1, f2};
  pp_future *g = submit_i64(p, task_gate, 0);
  pp_future *b[4] = {d.cancelled, d.err, d.ok, g};
  unsigned char done[5];
  double t0;

  ck_assert_int_eq(pp_wait(a, 5, 30, PP_ALL_COMPLETED, done), 5);
  for (int i = 0; i < 5; i++)
    ck_assert(done[i]);
  t0 = tu_now();
  ck_assert_int_eq(pp_wait(b, 4, 0.05, PP_ALL_COMPLETED, done), 3);
  ck_assert_double_ge(tu_now() - t0, 0.045);
  ck_assert(done[0] && done[1] && done[2] && !done[3]);
  atomic_store(&page->gate, 1);
  ck_assert_int_eq(result_i64(g), 0);
  pp_future_release(f1);
  pp_future_release(f2);
  pp_future_release(g);
  release_done(&d);
  pp_pool_destroy(p);
}
END_TEST

/* test_pending_calls_race: 100 tasks released at once, ALL_COMPLETED. */
START_TEST(test_py_wait_pending_calls_race) {
  enum { N = 100 };
  pp_pool *p = pool_n(4);
  pp_future *fs[N];

  for (int i = 0; i < N; i++)
    fs[i] = submit_i64(p, task_gate, i);
  atomic_store(&page->gate, 1);
  ck_assert_int_eq(pp_wait(fs, N, 30, PP_ALL_COMPLETED, NULL), N);
  for (int i = 0; i < N; i++) {
    ck_assert_int_eq(result_i64(fs[i]), i);
    pp_future_release(fs[i]);
  }
  pp_pool_destroy(p);
}
END_TEST

/* ------------------------------------------------ test_as_completed */

/* test_no_timeout: done and pending futures, each yielded once. */
START_TEST(test_py_as_completed_no_timeout) {
  pp_pool *p = pool_n(2);
  pp_future *f1 = submit_i64(p, task_square, 21),
            *f2 = submit_i64(p, task_square, 6);
  struct done3 d = make_done();
  pp_future *fs[5] = {d.cancelled, d.err, d.ok, f1, f2}, *got;
  int seen[5] = {0}, rc;
  pp_completed *it;

  ck_assert_int_eq(pp_as_completed(fs, 5, 30, &it), 0);
  while ((rc = pp_completed_next(it, &got)) == 0)
    for (int i = 0; i < 5; i++)
      seen[i] += got == fs[i];
  ck_assert_int_eq(rc, PP_EOF);
  for (int i = 0; i < 5; i++)
    ck_assert_int_eq(seen[i], 1);
  pp_completed_destroy(it);
  pp_future_release(f1);
  pp_future_release(f2);
  release_done(&d);
  pp_pool_destroy(p);
}
END_TEST

/* test_future_times_out, with timeouts 0 and 0.1: the done ones come, then
 * PP_ETIMEDOUT, and the pending one never. */
START_TEST(test_py_as_completed_times_out) {
  static const double timeouts[] = {0, 0.1};
  pp_pool *p = pool_n(1);
  pp_future *g = submit_i64(p, task_gate, 0), *got;
  struct done3 d = make_done();
  pp_future *fs[4] = {d.cancelled, d.err, d.ok, g};

  for (int k = 0; k < 2; k++) {
    pp_completed *it;
    int n = 0, rc;
    ck_assert_int_eq(pp_as_completed(fs, 4, timeouts[k], &it), 0);
    while ((rc = pp_completed_next(it, &got)) == 0) {
      ck_assert_ptr_ne(got, g);
      n++;
    }
    ck_assert_int_eq(rc, PP_ETIMEDOUT);
    ck_assert_int_eq(n, 3);
    pp_completed_destroy(it);
  }
  atomic_store(&page->gate, 1);
  ck_assert_int_eq(result_i64(g), 0);
  pp_future_release(g);
  release_done(&d);
  pp_pool_destroy(p);
}
END_TEST

void sem_add_python_future_tests(Suite *s) {
  TCase *tc;

  tc = sem_tcase(s, "test_future", 30);
  tcase_add_test(tc, test_py_done_callback_pending);
  tcase_add_test(tc, test_py_done_callback_already_done);
  tcase_add_test(tc, test_py_future_repr);
  tcase_add_test(tc, test_py_future_states);
  tcase_add_test(tc, test_py_result_with_success);

  tc = sem_tcase(s, "test_wait+as_completed", 30);
  tcase_add_test(tc, test_py_wait_duplicate);
  tcase_add_test(tc, test_py_wait_first_completed);
  tcase_add_test(tc, test_py_wait_first_exception);
  tcase_add_test(tc, test_py_wait_all_completed_and_timeout);
  tcase_add_test(tc, test_py_wait_pending_calls_race);
  tcase_add_test(tc, test_py_as_completed_no_timeout);
  tcase_add_test(tc, test_py_as_completed_times_out);
}
