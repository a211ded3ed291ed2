/*
 * The task registry (registry.c): the names PP_TASK() gives to task
 * functions, so that engines whose workers live in other address spaces
 * (PP_ENGINE_MPI) send a name's index instead of a pointer.
 */
#ifndef PP_REGISTRY_H
#define PP_REGISTRY_H

#include "procpool.h"

#include <stddef.h>
#include <stdint.h>

/* A snapshot of the registered tasks, sorted by name, so that index i
 * names the same task in every program with the same manifest. */
struct pp__registry {
  uint32_t n;
  const pp_task_entry **by_name; /* [n] */
  struct pp__registry_fn {
    uintptr_t fn;
    uint32_t index;
  } * by_fn;      /* [n], sorted by address, for lookups */
  char *manifest; /* the names, each NUL-terminated, in index order */
  size_t manifest_len;
};

/* Takes the snapshot. Returns 0, PP_ENOMEM, or PP_EINVAL when one name is
 * given to two functions (then msg says which). */
int pp__registry_load(struct pp__registry *r, char *msg, size_t cap);
void pp__registry_free(struct pp__registry *r);

/* The index of fn, or -1 when it is not registered. */
int64_t pp__registry_index(const struct pp__registry *r, pp_task_fn fn);

/* Compares a manifest from another program with ours. Returns 0 when they
 * name the same tasks; else PP_EUNREGISTERED with msg naming what each
 * side lacks. */
int pp__registry_compare(const struct pp__registry *r, const char *manifest,
                         size_t len, char *msg, size_t cap);

#endif
