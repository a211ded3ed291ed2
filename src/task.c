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

/* Where `data` starts in the task's result buffer, or -1 if it is not in
 * it (compared as integers: pointers into different objects do not
 * compare in C). */
static ptrdiff_t offset_in_buffer(const pp_task *task, const void *data) {
  uintptr_t at = (uintptr_t)data, base = (uintptr_t)task->result;

  return task->result && at >= base && at < base + task->cap
             ? (ptrdiff_t)(at - base)
             : -1;
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
  if ((rc = reserve(task, len ? len : 1)) != 0)
    return rc;
  *buf = task->result;
  return 0;
}

int pp_task_return(pp_task *task, const void *data, size_t len) {
  ptrdiff_t in_buffer;

  if (!task || (len && !data))
    return PP_EINVAL;
  if (len > task->max_payload) {
    task->too_big = 1;
    return PP_ETOOBIG;
  }
  in_buffer = len ? offset_in_buffer(task, data) : -1;
  if (in_buffer >= 0) { /* built in place (pp_task_buffer()): no copy */
    if (len > task->cap - (size_t)in_buffer)
      return PP_EINVAL;
    if (in_buffer > 0)
      memmove(task->result, data, len);
  } else if (reserve(task, len) != 0) {
    return PP_ENOMEM;
  } else if (len == 8) { /* the common tiny result, copied inline */
    memcpy(task->result, data, 8);
  } else if (len) {
    memcpy(task->result, data, len);
  }
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
  t->msg[0] = '\0';
  rc = fn(t, arg, len);
  *out = (struct pp__result){0, 0, t->result, t->len, t->msg};
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
