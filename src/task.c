/*
 * The task side: pp_task_buffer(), pp_task_return() and pp_task_fail(),
 * called by tasks, and the two functions every engine uses to run user
 * code and read its answer (task.h), so that the engines cannot drift on
 * what a return value means.
 */
#include "task.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Grows the task's result buffer to hold `len` bytes; 0 or PP_ENOMEM. */
static int reserve(pp_task *task, size_t len) {
  unsigned char *grown;

  if (len <= task->cap)
    return 0;
  if (!(grown = realloc(task->result, len)))
    return PP_ENOMEM;
  task->result = grown;
  task->cap = len;
  return 0;
}

/* Where `data` starts in the `cap` bytes at `base`, or -1 if it is not in
 * them (compared as integers: pointers into different objects do not
 * compare in C). */
static ptrdiff_t offset_in(const unsigned char *base, size_t cap,
                           const void *data) {
  uintptr_t at = (uintptr_t)data, from = (uintptr_t)base;

  return base && at >= from && at < from + cap ? (ptrdiff_t)(at - from) : -1;
}

int pp_task_buffer(pp_task *task, size_t len, void **buf) {
  int rc;

  if (!task || !buf)
    return PP_EINVAL;
  *buf = NULL;
  if (len > task->max_payload) {
    task->too_big = 1; /* as a refused pp_task_return() */
    return PP_ETOOBIG;
  }
  if (len >= PP__LARGE_RESULT && task->take_block &&
      (task->block || task->take_block(task) == 0) && len <= task->block_cap) {
    *buf = task->block; /* the result then travels without a copy */
    return 0;
  }
  if ((rc = reserve(task, len ? len : 1)) != 0)
    return rc;
  *buf = task->result;
  return 0;
}

/* pp_task_return() of `len` bytes at `at` in `base` (`cap` bytes), a buffer
 * of pp_task_buffer()'s: moved to its start, not copied in. */
static int return_in_place(pp_task *task, unsigned char *base, size_t cap,
                           ptrdiff_t at, size_t len) {
  if (len > cap - (size_t)at)
    return PP_EINVAL;
  if (at > 0)
    memmove(base, base + at, len);
  task->result_in_block = base == task->block;
  task->len = len;
  task->too_big = 0;
  return 0;
}

int pp_task_return(pp_task *task, const void *data, size_t len) {
  ptrdiff_t at;

  if (!task || (len && !data))
    return PP_EINVAL;
  if (len > task->max_payload) {
    task->too_big = 1;
    return PP_ETOOBIG;
  }
  if (len && (at = offset_in(task->block, task->block_cap, data)) >= 0)
    return return_in_place(task, task->block, task->block_cap, at, len);
  if (len && (at = offset_in(task->result, task->cap, data)) >= 0)
    return return_in_place(task, task->result, task->cap, at, len);
  if (reserve(task, len) != 0)
    return PP_ENOMEM;
  if (len == 8) /* the common tiny result, copied inline */
    memcpy(task->result, data, 8);
  else if (len)
    memcpy(task->result, data, len);
  task->result_in_block = 0;
  task->len = len;
  task->too_big = 0;
  return 0;
}

int pp_task_fail(pp_task *task, int code, const char *fmt, ...) {
  va_list ap;
  if (!task)
    return code;
  va_start(ap, fmt);
  vsnprintf(task->msg, sizeof task->msg, fmt, ap);
  va_end(ap);
  return code;
}

void pp__task_run(struct pp_task *t, pp_task_fn fn, const void *arg, size_t len,
                  struct pp__result *out) {
  int rc;

  t->len = 0;
  t->too_big = 0;
  t->result_in_block = 0;
  t->msg[0] = '\0';
  rc = fn(t, arg, len);
  *out = (struct pp__result){
      0,      0,      t->result_in_block ? t->block : t->result,
      t->len, t->msg, t->result_in_block ? t->block_no + 1 : 0};
  if (t->too_big && (rc == 0 || rc == PP_ETOOBIG)) {
    /* The idiom `return pp_task_return(t, buf, n)` with n too big. */
    snprintf(t->msg, sizeof t->msg,
             "result larger than max_payload (%zu bytes)", t->max_payload);
    out->status = PP_ETOOBIG;
  } else if (rc != 0) {
    out->status = PP_ETASK;
    out->code = rc;
  }
  if (out->status != 0) {
    out->data = NULL;
    out->len = 0;
    out->in_block = 0;
  }
}

enum pp__init_outcome pp__init_run(pp_init_fn init, void *arg, int *code) {
  *code = init ? init(arg) : 0;
  return *code == 0 ? PP__INIT_PASSED : PP__INIT_FAILED;
}

void pp__task_clear(struct pp_task *t) {
  free(t->result);
  t->result = NULL;
  t->len = t->cap = 0;
}
