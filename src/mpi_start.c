/*
 * The MPI engine's start, both sides of it: MPI's initialization, and
 * rank 0's handshake (its manifest out, every rank's hello back), with
 * the one receive of a message of any size that both sides use.
 */
#include "mpi_wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int pp__mpi_recv(MPI_Comm comm, int source, int tag, struct pp__mpi_buf *b) {
  MPI_Status st;
  int count;

  MPI_Probe(source, tag, comm, &st);
  MPI_Get_count(&st, MPI_BYTE, &count);
  b->len = 0;
  if (!pp__mpi_buf_room(b, (size_t)count + 1)) {
    fprintf(stderr, "procpool: out of memory for an MPI message\n");
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  MPI_Recv(b->data, count, MPI_BYTE, st.MPI_SOURCE, tag, comm,
           MPI_STATUS_IGNORE);
  b->len = (size_t)count;
  return st.MPI_SOURCE;
}

int pp__mpi_init(MPI_Comm *comm, int *rank, int *size, int *finalize) {
  int inited, finalized, provided;

  MPI_Finalized(&finalized);
  if (finalized)
    return PP_ESHUTDOWN;
  MPI_Initialized(&inited);
  if (!inited) {
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) !=
        MPI_SUCCESS)
      return PP_ESYS;
    *finalize = 1;
  } else if (MPI_Query_thread(&provided), provided < MPI_THREAD_MULTIPLE) {
    fprintf(stderr, "procpool: the program initialized MPI without "
                    "MPI_THREAD_MULTIPLE; PP_ENGINE_MPI calls MPI from a "
                    "thread of its own\n");
    return PP_ENOTSUP;
  }
  MPI_Comm_dup(MPI_COMM_WORLD, comm); /* our tags meet no one else's */
  MPI_Comm_rank(*comm, rank);
  MPI_Comm_size(*comm, size);
  if (*size < 2 && *rank == 0) {
    fprintf(stderr, "procpool: PP_ENGINE_MPI needs at least 2 ranks "
                    "(mpirun -np N ./program, N >= 2)\n");
    return PP_EINVAL;
  }
  return 0;
}

/* Whether the comma-separated `list` names a shared-memory transport. */
static int names_shm(const char *list) {
  char copy[256], *save = NULL;

  snprintf(copy, sizeof copy, "%s", list);
  for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
    if (strcmp(t, "vader") == 0 || strcmp(t, "sm") == 0)
      return 1;
  return 0;
}

/* Whether Open MPI's "btl" selection (--mca btl ..., read through MPI_T)
 * leaves shared memory in: empty, a list naming vader (sm from Open MPI
 * 5 on), or ^ and a list that does not. 0 when it cannot tell. */
static int shm_allowed(void) {
  int provided, index, count, ok = 0;
  MPI_T_cvar_handle h;
  char *value;

  if (MPI_T_init_thread(MPI_THREAD_SINGLE, &provided) != MPI_SUCCESS)
    return 0;
  if (MPI_T_cvar_get_index("btl", &index) == MPI_SUCCESS &&
      MPI_T_cvar_handle_alloc(index, NULL, &h, &count) == MPI_SUCCESS) {
    if (count > 0 && (value = calloc((size_t)count + 1, 1)) != NULL) {
      if (MPI_T_cvar_read(h, value) == MPI_SUCCESS)
        ok = value[0] == '\0' ||
             (value[0] == '^' ? !names_shm(value + 1) : names_shm(value));
      free(value);
    }
    MPI_T_cvar_handle_free(&h);
  }
  MPI_T_finalize();
  return ok;
}

void pp__mpi_message_sizes(MPI_Comm comm, int size, size_t *bytes) {
  int *world = malloc((size_t)size * sizeof *world);
  int *local = malloc((size_t)size * sizeof *local);
  int shm = shm_allowed();
  MPI_Group gw, gn;
  MPI_Comm node;

  MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
  for (int r = 0; bytes && r < size; r++)
    bytes[r] = PP__MPI_MESSAGE_BYTES;
  if (shm && world && local && bytes) {
    MPI_Comm_group(comm, &gw);
    MPI_Comm_group(node, &gn);
    for (int r = 0; r < size; r++)
      world[r] = r;
    MPI_Group_translate_ranks(gw, size, world, gn, local);
    for (int r = 0; r < size; r++)
      if (local[r] != MPI_UNDEFINED)
        bytes[r] = PP__MPI_LOCAL_MESSAGE_BYTES;
    MPI_Group_free(&gw);
    MPI_Group_free(&gn);
  }
  MPI_Comm_free(&node);
  free(world);
  free(local);
}

/* Takes rank r's hello into *h; a failure is printed, naming the rank. */
static int take_hello(MPI_Comm comm, int r, struct pp__mpi_buf *b,
                      struct pp__mpi_hello *h) {
  *h = (struct pp__mpi_hello){.status = PP_EINVAL};
  pp__mpi_recv(comm, r, PP__MPI_HELLO, b);
  if (b->len == sizeof *h)
    memcpy(h, b->data, sizeof *h);
  h->msg[sizeof h->msg - 1] = '\0';
  if (h->status == 0 && h->workers >= 1 && h->capacity >= 1)
    return 0;
  fprintf(stderr, "procpool: rank %d refused the pool: %s\n", r, h->msg);
  return h->status ? h->status : PP_EINVAL;
}

int pp__mpi_handshake(MPI_Comm comm, int size, const struct pp__registry *reg,
                      uint64_t max_payload, struct pp__mpi_hello *hellos) {
  struct pp__mpi_manifest mf = {max_payload, reg->manifest_len};
  struct pp__mpi_buf b = {0};
  int rc = 0;

  if (!pp__mpi_buf_room(&b, sizeof mf + reg->manifest_len))
    return PP_ENOMEM;
  memcpy(b.data, &mf, sizeof mf);
  memcpy(b.data + sizeof mf, reg->manifest, reg->manifest_len);
  for (int r = 1; r < size; r++)
    MPI_Send(b.data, (int)(sizeof mf + reg->manifest_len), MPI_BYTE, r,
             PP__MPI_MANIFEST, comm);
  for (int r = 1; r < size; r++) {
    int failed = take_hello(comm, r, &b, &hellos[r]);
    rc = rc ? rc : failed;
  }
  free(b.data);
  return rc;
}
