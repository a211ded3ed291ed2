/*
 * The MPI engine's start, both sides of it: MPI's initialization, and
 * rank 0's handshake (its manifest out, every rank's hello back), with
 * the one receive of a message of any size that both sides use.
 */
#include "mpi_wire.h"

#include <stdio.h>

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
