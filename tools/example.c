/*
 * The example program of README.md: a pool, futures, as_completed and an
 * ordered map, with every error checked. Build it against an installed
 * procpool with `cc example.c $(pkg-config --cflags --libs procpool)`.
 */
#include <procpool.h>

#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* A task: runs in a worker process. The argument is an int64; the result
 * is its square, or an error for negative numbers. */
static int square(pp_task *task, const void *arg, size_t len) {
  int64_t x;
  if (len != sizeof x)
    return pp_task_fail(task, 1, "want %zu bytes, got %zu", sizeof x, len);
  memcpy(&x, arg, sizeof x);
  if (x < 0)
    return pp_task_fail(task, 2, "negative input %lld", (long long)x);
  x *= x;
  return pp_task_return(task, &x, sizeof x);
}

/* Generates the arguments 0..9 for the map, one at a time. */
static int next_number(void *state, const void **arg, size_t *len) {
  int64_t *n = state;
  static int64_t current;
  if (*n >= 10)
    return 0;
  current = (*n)++;
  *arg = &current;
  *len = sizeof current;
  return 1;
}

int main(void) {
  pp_pool *pool;
  pp_future *futures[3];
  pp_completed *done;
  pp_future *f;
  pp_map *map;
  const void *data;
  size_t len;
  int64_t inputs[3] = {7, -1, 12}, n = 0;
  int rc;

  if ((rc = pp_pool_create(&pool, NULL)) != 0) { /* one worker per CPU */
    fprintf(stderr, "example: %s\n", pp_strerror(rc));
    return 1;
  }

  /* Futures, taken as they complete. */
  for (int i = 0; i < 3; i++)
    if ((rc = pp_submit(pool, square, &inputs[i], sizeof inputs[i],
                        &futures[i])) != 0)
      goto out_pool;
  if ((rc = pp_as_completed(futures, 3, PP_FOREVER, &done)) != 0)
    goto out_futures;
  while (pp_completed_next(done, &f) == 0) {
    char shown[96];
    pp_future_format(f, shown, sizeof shown);
    if ((rc = pp_future_result(f, PP_FOREVER, &data, &len)) == 0)
      printf("%s: %lld\n", shown, (long long)*(const int64_t *)data);
    else
      printf("%s\n", shown);
  }
  pp_completed_destroy(done);

  /* An ordered map over a generator: results come back in input order. */
  if ((rc = pp_map_gen(pool, square, next_number, &n, NULL, &map)) != 0)
    goto out_futures;
  while ((rc = pp_map_next(map, &data, &len)) == 0)
    printf("%lld ", (long long)*(const int64_t *)data);
  printf("\n");
  pp_map_destroy(map);
  rc = rc == PP_EOF ? 0 : rc;

out_futures:
  for (int i = 0; i < 3; i++)
    pp_future_release(futures[i]);
out_pool:
  pp_pool_destroy(pool);
  if (rc != 0)
    fprintf(stderr, "example: %s\n", pp_strerror(rc));
  return rc == 0 ? 0 : 1;
}
