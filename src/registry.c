/*
 * The task registry: PP_TASK() puts a {name, fn} entry in the "pp_tasks"
 * section of the object it is written in, and a constructor there hands
 * the library that object's section bounds (__start_pp_tasks and
 * __stop_pp_tasks, which the linker defines for each object), once per
 * object, at load time. So a program, and each shared object it loads, is
 * found without any call from the program, and the entries themselves
 * need no code.
 *
 * DESIGN
 * The ranges are appended under a mutex (a shared object may be loaded by
 * any thread); readers take a snapshot (pp__registry_load), sorted by
 * name, and look functions up by address in it. Two programs agree on
 * what index i means exactly when their manifests (the sorted names) are
 * equal, which the MPI engine checks at start.
 */
#include "registry.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_OBJECTS 256

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct range { const pp_task_entry *begin, *end; } ranges[MAX_OBJECTS];
static int nranges;

/* Records an object's entries; a range seen before (every PP_TASK of an
 * object calls this with the same bounds) is recorded once. */
void pp__tasks_add(const pp_task_entry *begin, const pp_task_entry *end) {
  if (!begin || begin >= end)
    return;
  pthread_mutex_lock(&mu);
  for (int i = 0; i < nranges; i++)
    if (ranges[i].begin == begin)
      goto out_unlock;
  if (nranges < MAX_OBJECTS)
    ranges[nranges++] = (struct range){begin, end};
  else
    fprintf(stderr,
            "procpool: more than %d objects register tasks; tasks "
            "of the others are not registered\n",
            MAX_OBJECTS);
out_unlock:
  pthread_mutex_unlock(&mu);
}

const char *pp_task_name(pp_task_fn fn) {
  const char *name = NULL;

  if (!fn)
    return NULL;
  pthread_mutex_lock(&mu);
  for (int i = 0; i < nranges && !name; i++)
    for (const pp_task_entry *e = ranges[i].begin; e < ranges[i].end; e++)
      if (e->fn == fn) {
        name = e->name;
        break;
      }
  pthread_mutex_unlock(&mu);
  return name;
}

static int by_name(const void *a, const void *b) {
  const pp_task_entry *x = *(const pp_task_entry *const *)a;
  const pp_task_entry *y = *(const pp_task_entry *const *)b;
  return strcmp(x->name, y->name);
}

static int by_fn(const void *a, const void *b) {
  uintptr_t x = ((const struct pp__registry_fn *)a)->fn;
  uintptr_t y = ((const struct pp__registry_fn *)b)->fn;
  return x < y ? -1 : x > y;
}

/* Copies every recorded entry into r->by_name (the mutex held). */
static int collect_locked(struct pp__registry *r) {
  uint32_t n = 0;

  for (int i = 0; i < nranges; i++)
    n += (uint32_t)(ranges[i].end - ranges[i].begin);
  r->by_name = malloc((n ? n : 1) * sizeof *r->by_name);
  if (!r->by_name)
    return PP_ENOMEM;
  for (int i = 0; i < nranges; i++)
    for (const pp_task_entry *e = ranges[i].begin; e < ranges[i].end; e++)
      r->by_name[r->n++] = e;
  return 0;
}

/* Sorts by name, drops an entry that repeats its name and function (the
 * same PP_TASK reached twice), and refuses a name given to two functions. */
static int sort_unique(struct pp__registry *r, char *msg, size_t cap) {
  uint32_t kept = 0;

  qsort(r->by_name, r->n, sizeof *r->by_name, by_name);
  for (uint32_t i = 0; i < r->n; i++) {
    if (kept && strcmp(r->by_name[kept - 1]->name, r->by_name[i]->name) == 0) {
      if (r->by_name[kept - 1]->fn == r->by_name[i]->fn)
        continue;
      snprintf(msg, cap, "task name %s is registered for two functions",
               r->by_name[i]->name);
      return PP_EINVAL;
    }
    r->by_name[kept++] = r->by_name[i];
  }
  r->n = kept;
  return 0;
}

/* Builds the address index and the manifest of a sorted registry. */
static int index_and_manifest(struct pp__registry *r) {
  size_t off = 0;

  r->by_fn = malloc((r->n ? r->n : 1) * sizeof *r->by_fn);
  for (uint32_t i = 0; i < r->n; i++)
    r->manifest_len += strlen(r->by_name[i]->name) + 1;
  r->manifest = malloc(r->manifest_len ? r->manifest_len : 1);
  if (!r->by_fn || !r->manifest)
    return PP_ENOMEM;
  for (uint32_t i = 0; i < r->n; i++) {
    size_t len = strlen(r->by_name[i]->name) + 1;
    r->by_fn[i] = (struct pp__registry_fn){(uintptr_t)r->by_name[i]->fn, i};
    memcpy(r->manifest + off, r->by_name[i]->name, len);
    off += len;
  }
  qsort(r->by_fn, r->n, sizeof *r->by_fn, by_fn);
  return 0;
}

int pp__registry_load(struct pp__registry *r, char *msg, size_t cap) {
  int rc;

  memset(r, 0, sizeof *r);
  msg[0] = '\0';
  pthread_mutex_lock(&mu);
  rc = collect_locked(r);
  pthread_mutex_unlock(&mu);
  if (rc == 0)
    rc = sort_unique(r, msg, cap);
  if (rc == 0)
    rc = index_and_manifest(r);
  if (rc != 0)
    pp__registry_free(r);
  return rc;
}

void pp__registry_free(struct pp__registry *r) {
  free(r->by_name);
  free(r->by_fn);
  free(r->manifest);
  memset(r, 0, sizeof *r);
}

int64_t pp__registry_index(const struct pp__registry *r, pp_task_fn fn) {
  uintptr_t key = (uintptr_t)fn;
  uint32_t lo = 0, hi = r->n;

  while (lo < hi) {
    uint32_t mid = lo + (hi - lo) / 2;
    if (r->by_fn[mid].fn == key)
      return r->by_fn[mid].index;
    if (r->by_fn[mid].fn < key)
      lo = mid + 1;
    else
      hi = mid;
  }
  return -1;
}

/* Whether the NUL-separated list [list, list + len) holds `name`. */
static int list_has(const char *list, size_t len, const char *name) {
  for (size_t off = 0; off < len; off += strlen(list + off) + 1)
    if (strcmp(list + off, name) == 0)
      return 1;
  return 0;
}

/* Appends to msg every name of list a missing from list b. */
static void append_missing(char *msg, size_t cap, const char *a, size_t alen,
                           const char *b, size_t blen) {
  size_t used = strlen(msg);

  for (size_t off = 0; off < alen && used + 1 < cap; off += strlen(a + off) + 1)
    if (!list_has(b, blen, a + off)) {
      int n = snprintf(msg + used, cap - used, " %s", a + off);
      used = n < 0 || (size_t)n >= cap - used ? cap - 1 : used + (size_t)n;
    }
}

int pp__registry_compare(const struct pp__registry *r, const char *manifest,
                         size_t len, char *msg, size_t cap) {
  size_t used;

  if (len == r->manifest_len && memcmp(manifest, r->manifest, len) == 0)
    return 0;
  snprintf(msg, cap, "tasks missing here:");
  append_missing(msg, cap, manifest, len, r->manifest, r->manifest_len);
  used = strlen(msg);
  snprintf(msg + used, cap - used, "; tasks only here:");
  append_missing(msg, cap, r->manifest, r->manifest_len, manifest, len);
  return PP_EUNREGISTERED;
}
