/*
 * A supervisor rank whose tasks differ from check_mpi's, for the manifest
 * test of check_mpi_faults: started beside `check_mpi FILE manifest`
 * (mpirun's MPMD form), it must refuse the pool, naming the tasks.
 */
#include "procpool.h"

#include <stdio.h>

static int peer_only(pp_task *t, const void *arg, size_t len) {
  return pp_task_return(t, arg, len);
}

PP_TASK(peer_only, peer_only);

int main(void) {
  pp_options o;
  pp_pool *p;
  int rc;

  pp_options_init(&o);
  o.engine = PP_ENGINE_MPI;
  o.workers = 1;
  rc = pp_pool_create(&p, &o); /* a supervisor: exits inside */
  fprintf(stderr, "mpi_peer: pp_pool_create returned %s\n", pp_errname(rc));
  return 1;
}
