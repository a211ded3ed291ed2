/*
 * The task side, shared by every engine: what a task writes its answer
 * into (struct pp_task), the one function that runs an item and turns what
 * it returned into an outcome, and the one that runs an initializer and
 * says whether it failed. Engines differ in transport, never in what a
 * task's return value means.
 */
#ifndef PP_TASK_H
#define PP_TASK_H

#include "procpool.h"

#include <stddef.h>
#include <stdint.h>

#define PP__MESSAGE_MAX 256 /* bytes of an error message, NUL included */

/* Results this large, built in place (pp_task_buffer()), go in a block of
 * shared memory where the engine has one to lend (the process engine's,
 * proc.h), and a lone one goes onto the result ring from where it lies. */
#define PP__LARGE_RESULT (64 * 1024)

/* What a task function writes its answer into. */
struct pp_task {
  size_t max_payload;    /* largest result the pool takes */
  unsigned char *result; /* what the task returned, grown as needed */
  size_t len, cap;
  int too_big; /* the last pp_task_return() was refused as too big */
  char msg[PP__MESSAGE_MAX];
  /* A block of shared memory the engine lent for a large result: kept
   * from task to task until a result in it is sent. take_block() (NULL:
   * the engine lends none) sets block, block_cap and block_no, or returns
   * -1 when none is free; `engine` is its own. */
  unsigned char *block;
  size_t block_cap;
  uint32_t block_no;
  int result_in_block; /* the result is the block's first `len` bytes */
  int (*take_block)(struct pp_task *t);
  void *engine;
};

/* How one item ended, as an engine reports it to the slot table. The
 * bytes are borrowed: the resolver copies what it keeps. */
struct pp__result {
  int status;       /* 0, or the PP_E* the item failed with */
  int code;         /* the task's return value, for PP_ETASK */
  const void *data; /* result bytes when status is 0 */
  size_t len;
  const char *msg;   /* "" or a message */
  uint32_t in_block; /* 1 + the lent block that holds data, or 0 */
};

/* Runs fn on one argument with `t` reset, and fills *out (OUT; pointing
 * into `t`). A task that returns non-zero fails with PP_ETASK and that
 * code, except that returning the PP_ETOOBIG of a refused pp_task_return()
 * fails with PP_ETOOBIG, as does returning 0 after one. */
void pp__task_run(struct pp_task *t, pp_task_fn fn, const void *arg, size_t len,
                  struct pp__result *out);

/* What a worker's initializer did, as the engines record it. Any non-zero
 * return of the initializer is a failure, whatever its sign. */
enum pp__init_outcome {
  PP__INIT_RUNNING = 1, /* not answered yet */
  PP__INIT_PASSED,
  PP__INIT_FAILED
};

/* Runs the initializer (NULL: none) and says how it went; *code (OUT) is
 * what it returned. */
enum pp__init_outcome pp__init_run(pp_init_fn init, void *arg, int *code);

/* Frees what a pp_task holds (not the struct). */
void pp__task_clear(struct pp_task *t);

#endif
