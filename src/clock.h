/*
 * Time for the library: one monotonic clock in nanoseconds, and the
 * conversions from the API's seconds (doubles) that saturate instead of
 * overflowing, so that a timeout of 1e300 s or INFINITY means "never"
 * rather than undefined behaviour.
 */
#ifndef PP_CLOCK_H
#define PP_CLOCK_H

#include <stdint.h>
#include <time.h>

/* No deadline: wait for ever (the value is also "no timeout" for tasks). */
#define PP__FOREVER ((uint64_t)0)
/* Do not wait at all. */
#define PP__NOWAIT UINT64_MAX

/* The longest wait the library represents: about 292 years. A longer one
 * is the same as for ever, and far from overflowing a uint64 of ns. */
#define PP__MAX_WAIT_NS ((uint64_t)1 << 63)

/* CLOCK_MONOTONIC in nanoseconds. */
static inline uint64_t pp__now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* `s` seconds in nanoseconds, for s > 0: saturates at PP__MAX_WAIT_NS
 * (INFINITY and any huge value included) and is at least 1. */
static inline uint64_t pp__seconds_to_ns(double s) {
  if (!(s < (double)PP__MAX_WAIT_NS / 1e9))
    return PP__MAX_WAIT_NS;
  uint64_t ns = (uint64_t)(s * 1e9);
  return ns ? ns : 1;
}

/* A deadline `timeout_s` from now: PP__FOREVER when negative, NaN or too
 * far to matter. Never 0 or PP__NOWAIT for a finite timeout. */
static inline uint64_t pp__deadline_ns(double timeout_s) {
  uint64_t ns;
  if (!(timeout_s >= 0))
    return PP__FOREVER;
  ns = pp__seconds_to_ns(timeout_s);
  if (ns >= PP__MAX_WAIT_NS)
    return PP__FOREVER;
  return pp__now_ns() + ns;
}

/* `ns` nanoseconds since a clock's epoch, as the timespec of timed waits. */
static inline struct timespec pp__timespec(uint64_t ns) {
  struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
  return ts;
}

#endif
