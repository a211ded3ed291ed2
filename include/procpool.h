/*
 * procpool: a process pool for C, in the spirit of Python's
 * concurrent.futures.ProcessPoolExecutor.
 *
 * This header is the whole public interface. It gives away no internals:
 * every object is an opaque handle created and destroyed through the calls
 * below, so the layout can change without breaking programs built against it.
 *
 * Model
 *   pp_pool_create() forks worker processes. pp_submit() copies a task (a
 *   function of the program and an argument of bytes) into a ring buffer in
 *   shared memory; a worker runs it and writes back a result of bytes, which
 *   the pool's collector thread in the master copies into the task's future.
 *   Because workers are forked, any function of the program is a valid task.
 *   With the thread engine (pp_options.engine) the workers are threads of
 *   the master instead, behind the same calls.
 *
 * Errors
 *   Every call that can fail returns an int: 0 on success, or a negative
 *   PP_E* code below; pp_strerror() describes any code.
 *
 * Threads
 *   Every call may be made from several threads of the master at once, except
 *   that one iterator (pp_map, pp_completed) must not be used by two threads
 *   at the same time. Done-callbacks run in the master, in the thread that
 *   resolves the future: the pool's collector thread or a thread of the
 *   master that takes results while it waits in the pool (in
 *   pp_future_result(), pp_completed_next(), pp_map_next(), or pp_submit()
 *   waiting for a free slot) (processes), the worker thread that ran the
 *   task (threads), the engine's communication thread (MPI), the thread that
 *   cancels it, or the thread that adds them when the future is already
 *   done. They must not block for long and must not destroy the pool. A
 *   thread waiting for a future (pp_future_result(), pp_wait(),
 *   pp_completed_next(), pp_map_next()) wakes as soon as the future is
 *   done, whichever thread cancels or resolves it.
 *
 * Processes
 *   Workers ignore SIGINT (the master decides what Ctrl-C means), die with the
 *   master (even on SIGKILL) and are reaped by pp_pool_destroy(). The shared
 *   memory is an anonymous mapping: it has no name and nothing is left in
 *   /dev/shm, whatever happens to the master. Workers are forked by the
 *   pool's spawner, one process per pool that the pool's reaper thread
 *   forks when the pool starts: it is the workers' parent (getppid() in a
 *   task names it, not the master), dies with the master too, and is gone
 *   once pp_pool_shutdown() with wait, or pp_pool_destroy(), returns. So
 *   every worker, a replacement too, starts as a copy of the master as it
 *   was when the pool started, and a fork costs the master nothing. That
 *   copy is made while other threads of the master may hold locks: a task
 *   must not rely on locks of the master's other threads. The pool's
 *   collector thread, which takes results, runs as SCHED_BATCH, so that its
 *   wake-ups do not preempt the program's threads; the reaper, which has
 *   the dead replaced, is an ordinary thread, so that a dead worker is
 *   replaced at once. Workers set themselves to SCHED_BATCH
 *   (CPU-bound work: a worker woken for tasks does not preempt the threads
 *   that feed it), at nice 0; a task may set its own policy. While a
 *   worker's place is empty (it died, or its replacement is starting), the
 *   other workers yield the processor between batches of tasks, so that the
 *   reaper and the spawner are not left waiting behind them.
 *   glibc's malloc is safe across such a fork; the allocator of GCC 12's
 *   AddressSanitizer is not (a worker forked while another thread
 *   allocates can hang in malloc).
 */
#ifndef PROCPOOL_H
#define PROCPOOL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(PP_BUILDING_LIBRARY)
#define PP_EXPORT __attribute__((visibility("default")))
#else
#define PP_EXPORT
#endif

/* --------------------------------------------------------------- version */

/* The version of this header, checked against CMake's project(VERSION) at
 * configure time so that the two cannot drift. PP_VERSION_NUMBER is
 * 0xMMmmpp (major, minor, patch), for comparisons in #if. */
#define PP_VERSION_MAJOR 0
#define PP_VERSION_MINOR 1
#define PP_VERSION_PATCH 0
#define PP_VERSION_STRING "0.1.0"
#define PP_VERSION_NUMBER                                                      \
  ((PP_VERSION_MAJOR << 16) | (PP_VERSION_MINOR << 8) | PP_VERSION_PATCH)

/* The version of the library the program runs against, as a static string
 * ("0.1.0") and as a number like PP_VERSION_NUMBER: with a shared library,
 * these may differ from the header the program was compiled with. */
PP_EXPORT const char *pp_version(void);
PP_EXPORT unsigned pp_version_number(void);

/* ---------------------------------------------------------------- errors */

/* The error table: one row per code, from which both the enum and
 * pp_strerror() are generated, so that they cannot drift apart. */
#define PP_ERRNO_MAP(XX)                                                       \
  XX(EINVAL, -1, "invalid argument")                                           \
  XX(ENOMEM, -2, "out of memory")                                              \
  XX(ETOOBIG, -3, "payload larger than the pool's max_payload")                \
  XX(ETIMEDOUT, -4, "timed out waiting")                                       \
  XX(ECANCELLED, -5, "task was cancelled")                                     \
  XX(ETASK, -6, "task reported an error")                                      \
  XX(ECRASHED, -7, "worker process died while running the task")               \
  XX(EDEADLINE, -8, "task ran past its timeout and its worker was killed")     \
  XX(ESHUTDOWN, -9, "pool is shut down")                                       \
  XX(EFORK, -10, "could not start a worker process")                           \
  XX(EINIT, -11, "worker initializer failed")                                  \
  XX(ESHM, -12, "could not map shared memory")                                 \
  XX(EBUSY, -13, "task is already running")                                    \
  XX(ENOTSUP, -14, "not supported by this engine")                             \
  XX(EOF, -15, "no more results")                                              \
  XX(ESYS, -16, "system call failed")                                          \
  XX(EUNREGISTERED, -17, "task function is not registered with PP_TASK")

typedef enum pp_error {
#define PP_ERROR_ENUM(name, value, text) PP_##name = (value),
  PP_ERRNO_MAP(PP_ERROR_ENUM)
#undef PP_ERROR_ENUM
} pp_error;

/* A static, human-readable description of `code`; never NULL, also for
 * codes this library does not know. */
PP_EXPORT const char *pp_strerror(int code);

/* "PP_ETIMEDOUT" for PP_ETIMEDOUT, "PP_UNKNOWN" for unknown codes. */
PP_EXPORT const char *pp_errname(int code);

/* Timeouts are in seconds; a negative value waits for ever. */
#define PP_FOREVER (-1.0)

/* ------------------------------------------------------------ the pool */

typedef struct pp_pool pp_pool;
typedef struct pp_future pp_future;
typedef struct pp_task pp_task;

/* A task: runs in a worker, with `arg` pointing at `arg_len` bytes that stay
 * valid during the call only. It returns 0 for success, with the result set
 * by pp_task_return() (empty if it sets none), or any other int to fail with
 * that code (pp_task_fail() also sets a message). */
typedef int (*pp_task_fn)(pp_task *task, const void *arg, size_t arg_len);

/* Runs once in each worker before its first task (also in replacements),
 * with `arg` as given in pp_options. Any non-zero return, of either sign,
 * fails the worker: pp_pool_create() then returns PP_EINIT, and with
 * start_in_background the pool is broken (as Python's BrokenProcessPool):
 * every task in flight and every later one fails with PP_EINIT. */
typedef int (*pp_init_fn)(void *arg);

/* What runs the tasks. The engines offer the same calls, futures and
 * iterators, so switching is a one-line change, as in Python. */
typedef enum pp_engine {
  PP_ENGINE_PROCESSES, /* forked workers, shared-memory rings (default) */
  PP_ENGINE_THREADS,   /* POSIX threads of the master; arguments and results
                          are copied once each, as the calls promise. A
                          running task cannot be killed: pp_future_cancel_
                          running(), pp_submit_timeout() with a timeout and
                          pp_map_options.task_timeout answer PP_ENOTSUP */
  PP_ENGINE_MPI        /* ranks of an MPI job, possibly on many machines;
                          see "MPI" below. PP_ENOTSUP from pp_pool_create()
                          in a build without Open MPI */
} pp_engine;

/* ------------------------------------------------------------------ MPI
 *
 * With PP_ENGINE_MPI the program runs under `mpirun -np N ./prog` (N >= 2;
 * or Slurm's srun). Every rank calls pp_pool_create() with the same
 * options. Rank 0 is the master: the call returns there, and the pool's
 * futures, maps, windows and retries live in it. Every other rank is a
 * supervisor: its call never returns. It runs a pool of processes of its
 * own (opts.workers workers, 0: its machine's CPUs; its own initializer
 * and max_tasks_per_worker) fed with the tasks rank 0 sends, until rank 0
 * destroys the pool; then it calls MPI_Finalize() and exit(0). So one
 * program serves both roles; code after pp_pool_create() runs on rank 0
 * only. A task that crashes, times out or is cancelled while running fails
 * only its own future (retried on any rank when `retries` says so).
 * Cancelling a task a rank already holds fails its future at once and
 * tells the rank, which drops the task unless it started meanwhile (then
 * it runs, and its answer is ignored).
 * pp_pool_workers() is the sum of the ranks' workers; pp_pool_worker_pids()
 * gives none. pp_pool_create() returns once every rank is ready
 * (start_in_background is ignored); max_payload is rank 0's everywhere, at
 * most 1 GiB (an MPI message counts bytes in an int). A program makes one
 * MPI pool in its life (a second one gets PP_ESHUTDOWN). The library calls
 * MPI_Init_thread() (MPI_THREAD_FUNNELED, from a thread of its own) unless the
 * program did (then it needs MPI_THREAD_MULTIPLE) and finalizes what it
 * initialized.
 *
 * Limit: Open MPI 4.1 has no fault-tolerant MPI (ULFM). A rank that dies
 * whole (SIGKILL of the supervisor, a lost machine) aborts the whole job:
 * mpirun ends every rank within seconds, naming the rank that died.
 *
 * Tasks are named, not pointed to, since a function's address means nothing
 * in another program's address space. PP_TASK(name, fn) registers fn under
 * `name` (an identifier, unique in the program) at file scope; an MPI pool
 * refuses an unregistered function at submit with PP_EUNREGISTERED (and
 * pp_map_array()/pp_map_gen() likewise). At start rank 0 sends the names it
 * has; a rank whose names differ refuses, naming the missing tasks, and
 * pp_pool_create() returns PP_EUNREGISTERED. A registered task runs unchanged
 * on every engine. */

/* A registered task; made by PP_TASK() only. */
typedef struct pp_task_entry {
  const char *name;
  pp_task_fn fn;
} pp_task_entry;

/* For PP_TASK(): records a program's or a shared object's entries
 * [begin, end) (once per object, at load). Not for direct use. */
PP_EXPORT void pp__tasks_add(const pp_task_entry *begin,
                             const pp_task_entry *end);

/* Registers `fn` as the task `name`: an entry in the object's "pp_tasks"
 * section, which a constructor hands to the library at load time. */
#define PP_TASK(name, fn)                                                      \
  extern const pp_task_entry __start_pp_tasks[]                                \
      __attribute__((weak, visibility("hidden")));                             \
  extern const pp_task_entry __stop_pp_tasks[]                                 \
      __attribute__((weak, visibility("hidden")));                             \
  static const pp_task_entry pp__task_##name                                   \
      __attribute__((section("pp_tasks"), used)) = {#name, (fn)};              \
  __attribute__((constructor)) static void pp__task_add_##name(void) {         \
    pp__tasks_add(__start_pp_tasks, __stop_pp_tasks);                          \
  }                                                                            \
  extern int pp__task_semicolon_##name

/* The name `fn` was registered under, or NULL. The string is static. */
PP_EXPORT const char *pp_task_name(pp_task_fn fn);

typedef struct pp_options {
  pp_engine engine;              /* default: PP_ENGINE_PROCESSES */
  int workers;                   /* 0: online CPUs (processes), or
                                    min(32, online CPUs + 4) (threads) */
  pp_init_fn initializer;        /* NULL: none */
  void *initarg;                 /* passed to initializer, in the worker */
  unsigned max_tasks_per_worker; /* 0: unlimited; else a worker is replaced
                                    after running this many tasks */
  size_t ring_capacity;          /* bytes of each ring (tasks, results);
                                    0: 4 * max_payload; raised to fit one
                                    record of max_payload */
  size_t max_payload;            /* largest argument or result; 0: 1 MiB */
  unsigned retries;              /* times a task whose worker died is run
                                    again (ahead of the tasks queued after
                                    it) before its future fails; default 0 */
  int start_in_background;       /* 0 (default): pp_pool_create() returns
                                    once every worker is forked and its
                                    initializer passed. 1: it returns at
                                    once, workers take tasks as each comes
                                    up, and a failing initializer or fork
                                    fails the tasks instead (PP_EINIT,
                                    PP_EFORK). Worth it for many workers:
                                    forking one takes up to half a
                                    millisecond. The thread engine, whose
                                    workers start in microseconds, always
                                    waits. */
} pp_options;

/* Fills `opts` with the defaults above. */
PP_EXPORT void pp_options_init(pp_options *opts);

/* Creates a pool and starts its workers; `opts` may be NULL for defaults.
 * On success *pool (OUT) owns the pool; release it with pp_pool_destroy().
 * Returns PP_EINVAL, PP_ENOMEM, PP_ESHM, PP_EFORK or PP_EINIT (an
 * initializer failed; with start_in_background, these last two fail the
 * tasks instead); on failure nothing is left running or mapped. */
PP_EXPORT int pp_pool_create(pp_pool **pool, const pp_options *opts);

/* Stops accepting tasks. With `cancel_pending`, tasks not yet started are
 * cancelled (their waiters wake at once). With `wait`, returns once every
 * task has finished and every worker has exited; without, returns at once
 * and the workers exit after their tasks. Later calls to submit fail with
 * PP_ESHUTDOWN. A worker process that has not exited 2 seconds after the
 * last task ended (one stopped by SIGSTOP, say) is killed with SIGKILL, so
 * that shutdown and pp_pool_destroy() never wait for ever on an idle
 * worker; a stopped worker in the middle of a task is bounded only by that
 * task's timeout. */
PP_EXPORT int pp_pool_shutdown(pp_pool *pool, int wait, int cancel_pending);

/* Shuts down (waiting, not cancelling), reaps every worker, and frees the
 * pool. Futures still referenced by the caller stay valid (done). NULL is a
 * no-op. */
PP_EXPORT void pp_pool_destroy(pp_pool *pool);

/* Number of workers the pool keeps running. */
PP_EXPORT int pp_pool_workers(const pp_pool *pool);

/* Pids of the live workers, up to `cap` into `pids` (OUT); returns the count.
 * For tests and tools that inject faults. */
PP_EXPORT int pp_pool_worker_pids(pp_pool *pool, int *pids, int cap);

/* Largest argument or result the pool accepts. */
PP_EXPORT size_t pp_pool_max_payload(const pp_pool *pool);

/* ------------------------------------------------------- inside a task */

/* Sets the task's result to a copy of `len` bytes (replacing any earlier
 * one). Returns PP_ETOOBIG if len exceeds the pool's max_payload: the task
 * then fails with PP_ETOOBIG (and a message naming the limit) unless it
 * sets a smaller result, also when it returns this PP_ETOOBIG, as in
 * `return pp_task_return(task, buf, len);`. */
PP_EXPORT int pp_task_return(pp_task *task, const void *data, size_t len);

/* Sets *buf (OUT) to a buffer of at least `len` bytes, owned by the task,
 * in which to build a large result in place: pp_task_return(task, *buf, n)
 * with n <= len then sets it without a copy. Nothing in the buffer is the
 * result until that call. The buffer lasts until the task function
 * returns, or until a later pp_task_buffer() or a pp_task_return() of other
 * data, which may move it. With the process engine, a buffer of 64 KiB or
 * more is a block of the pool's shared memory when one is free: such a
 * result, a task's only item, is never copied on its way to
 * pp_map_next(), which hands out a pointer into the block (a future still
 * copies it). Returns 0, PP_EINVAL, PP_ENOMEM, or PP_ETOOBIG if len
 * exceeds max_payload, with the same outcome as pp_task_return()'s. */
PP_EXPORT int pp_task_buffer(pp_task *task, size_t len, void **buf);

/* Records an error message for a task that then returns `code` (non-zero);
 * printf-style. Returns `code` so that a task can `return pp_task_fail(...)`.
 */
PP_EXPORT int pp_task_fail(pp_task *task, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ------------------------------------------------------------- futures */

/* Submits fn(arg) and stores a new future in *future (OUT), owned by the
 * caller (release it with pp_future_release()). The argument is copied.
 * Blocks while the pool has no room for another task in flight.
 * Returns PP_ETOOBIG (arg_len > max_payload), PP_ESHUTDOWN, PP_ENOMEM. */
PP_EXPORT int pp_submit(pp_pool *pool, pp_task_fn fn, const void *arg,
                        size_t arg_len, pp_future **future);

/* As pp_submit(), with a per-task timeout in seconds (<= 0: none; NaN is
 * PP_EINVAL; a timeout past about 292 years, INFINITY included, never
 * fires): when the task has run that long, its worker is killed and
 * replaced, and the future fails with PP_EDEADLINE. Other tasks are not
 * touched: results the worker held back are sent before a timed task
 * starts. PP_ENOTSUP with the thread engine. Unlike Python, which has no
 * per-task timeout. */
PP_EXPORT int pp_submit_timeout(pp_pool *pool, pp_task_fn fn, const void *arg,
                                size_t arg_len, double timeout,
                                pp_future **future);

typedef enum pp_state {
  PP_PENDING,
  PP_RUNNING,
  PP_FINISHED,
  PP_CANCELLED
} pp_state;

PP_EXPORT pp_state pp_future_state(const pp_future *future);
PP_EXPORT int
pp_future_done(const pp_future *future); /* finished or cancelled */
PP_EXPORT int pp_future_running(const pp_future *future);
PP_EXPORT int pp_future_cancelled(const pp_future *future);

/* Waits up to `timeout` for the future. Returns 0 with the result in *data
 * and *len (OUT, either may be NULL; the bytes belong to the future and stay
 * valid until it is released), PP_ETIMEDOUT if it is not done in time, or
 * how the task failed: PP_ETASK (see pp_future_task_code()), PP_ECRASHED,
 * PP_EDEADLINE, PP_ECANCELLED, PP_ETOOBIG, PP_EINIT. */
PP_EXPORT int pp_future_result(pp_future *future, double timeout,
                               const void **data, size_t *len);

/* For a failed future, the message (the task's, or the library's naming the
 * signal or exit status that ended the worker); "" otherwise. Owned by the
 * future. */
PP_EXPORT const char *pp_future_message(const pp_future *future);

/* For a future that failed with PP_ETASK, the code its task returned. */
PP_EXPORT int pp_future_task_code(const pp_future *future);

/* Cancels a pending task: returns 0 (the future is now cancelled, and done),
 * PP_EBUSY if it is running, or PP_EINVAL if it is already done. */
PP_EXPORT int pp_future_cancel(pp_future *future);

/* Cancels the task even if it is running, by killing its worker (which is
 * replaced). Returns 0 (the future is, or soon will be, cancelled:
 * PP_ECANCELLED), PP_EINVAL if it is already done or finished running
 * before it could be stopped (its result then stands, and no other task
 * is touched), or PP_ENOTSUP with the thread engine. Python has no
 * equivalent. */
PP_EXPORT int pp_future_cancel_running(pp_future *future);

/* Calls cb(future, arg) once the future is done, in the master thread that
 * resolves it (see Threads above), or at once in the calling thread if it is
 * already done. Callbacks run in the order they were added. */
typedef void (*pp_done_fn)(pp_future *future, void *arg);
PP_EXPORT int pp_future_add_done_callback(pp_future *future, pp_done_fn cb,
                                          void *arg);

/* Writes a printable form, like Python's, into buf (NUL-terminated, cut to
 * size): "<Future at 0x55d0 state=running>",
 * "<Future at 0x55d0 state=finished returned 8 bytes>",
 * "<Future at 0x55d0 state=finished raised PP_ETASK: message>".
 * Returns the length it wanted, as snprintf does. */
PP_EXPORT int pp_future_format(const pp_future *future, char *buf, size_t size);

/* Drops the caller's reference. The task goes on; NULL is a no-op. */
PP_EXPORT void pp_future_release(pp_future *future);

/* ---------------------------------------------------------------- wait */

typedef enum pp_return_when {
  PP_FIRST_COMPLETED,
  PP_FIRST_EXCEPTION,
  PP_ALL_COMPLETED
} pp_return_when;

/* Waits until the condition holds for futures[0..n) or `timeout` passes.
 * The futures may come from several pools, of either engine. Returns the
 * number of done futures (>= 0; a future given twice counts twice); if
 * `done` (OUT) is given, it gets a flag per future. A timeout is not an
 * error: compare the count. PP_FIRST_EXCEPTION, as in Python, counts
 * failures but not cancellations. */
PP_EXPORT int pp_wait(pp_future *const *futures, size_t n, double timeout,
                      pp_return_when when, unsigned char *done);

/* -------------------------------------------------------- as_completed */

typedef struct pp_completed pp_completed;

/* An iterator that yields each distinct future of futures[0..n) exactly
 * once, as it is done (already-done ones first); a future given twice is
 * yielded once, as Python's as_completed() does. The futures may come from
 * several pools, of either engine. The iterator holds references of its
 * own; the array itself may be freed after the call. `timeout` counts from
 * this call, like Python's. *it (OUT) is released with
 * pp_completed_destroy(). */
PP_EXPORT int pp_as_completed(pp_future *const *futures, size_t n,
                              double timeout, pp_completed **it);

/* Stores the next done future in *future (OUT; borrowed from the caller's
 * array, not a new reference) and returns 0; PP_EOF when all were yielded;
 * PP_ETIMEDOUT when the timeout has passed. */
PP_EXPORT int pp_completed_next(pp_completed *it, pp_future **future);

PP_EXPORT void pp_completed_destroy(pp_completed *it);

/* ----------------------------------------------------------------- map */

typedef struct pp_map pp_map;

/* A generator of arguments: stores the next one in *arg and *len (OUT; the
 * bytes must stay valid until the next call) and returns 1, or returns 0 at
 * the end, or a negative PP_E* code to stop the map with that error. */
typedef int (*pp_gen_fn)(void *state, const void **arg, size_t *len);

typedef struct pp_map_options {
  size_t chunksize;    /* arguments per task; 1: one per task; 0 (the
                          default): chosen from the time tasks take, as
                          joblib's batch_size='auto' (Python's default is
                          1): tiny tasks travel in chunks of up to 1024,
                          tasks of a millisecond or more one per task.
                          With a task_timeout, 0 means 1 */
  size_t window;       /* most arguments in flight; 0: 4 * workers *
                          max(64, largest chunk), at least two chunks,
                          topped up once an eighth of it (or a chunk, if
                          larger) has room; an explicit window is topped
                          up as soon as a chunk has room */
  double timeout;      /* seconds from pp_map_*() to each result; <= 0: none
                          (so that a zeroed struct means no timeout) */
  double task_timeout; /* seconds a task (a whole chunk) may run before its
                          worker is killed and its items fail with
                          PP_EDEADLINE; <= 0: none */
} pp_map_options;

/* An ordered, lazy map of fn over arguments `args[i]` of `lens[i]` bytes
 * (copied as they are submitted: the arrays must stay valid until the map
 * is destroyed). The first window of tasks is submitted at once, as
 * Python's map does; the rest as results are taken: before pp_map_next()
 * returns a result, the window is topped up again, as Python 3.14's map
 * with buffersize submits as it yields. `opts` may be NULL.
 * *map (OUT) is released with pp_map_destroy(). */
PP_EXPORT int pp_map_array(pp_pool *pool, pp_task_fn fn,
                           const void *const *args, const size_t *lens,
                           size_t n, const pp_map_options *opts, pp_map **map);

/* The same over arguments from a generator, pulled only as the window
 * allows, so that a map over any number of arguments runs in constant
 * memory. */
PP_EXPORT int pp_map_gen(pp_pool *pool, pp_task_fn fn, pp_gen_fn gen,
                         void *state, const pp_map_options *opts, pp_map **map);

/* The next result, in argument order. Returns 0 with the bytes in *data and
 * *len (OUT; valid until the next call or destroy); PP_EOF after the last;
 * PP_ETIMEDOUT; or how this argument's task failed (PP_ETASK, PP_ECRASHED,
 * ...; see pp_map_message()): unlike Python, the map goes on after a failed
 * item. A generator's error ends the map with that code. */
PP_EXPORT int pp_map_next(pp_map *map, const void **data, size_t *len);

/* Index of the argument the last pp_map_next() answered for. */
PP_EXPORT size_t pp_map_index(const pp_map *map);

/* Message and task code of the last failed item ("" and 0 otherwise). */
PP_EXPORT const char *pp_map_message(const pp_map *map);
PP_EXPORT int pp_map_task_code(const pp_map *map);

/* Cancels what has not started, waits for what has, frees the map. NULL is
 * a no-op. */
PP_EXPORT void pp_map_destroy(pp_map *map);

#ifdef __cplusplus
}
#endif
#endif /* PROCPOOL_H */
