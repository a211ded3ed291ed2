# `primes --engine mpi` under `mpirun --oversubscribe -np 3` (one master,
# two supervisor ranks of one worker each) prints what the processes
# engine prints with two workers, the elapsed column masked: Miller-Rabin
# over a range (also with TCP forced, the path between machines), the
# default fixture under trial division, numbers read from standard input
# (which only rank 0 has), and a sieved count. A file
# that does not exist is refused by rank 0 alone, with exit status 2 and
# nothing on stdout, and the other ranks exit (no hang).
#
# Run with -DPRIMES=<primes> -DMPIRUN=<mpirun> -DWORK=<scratch dir>, and
# the environment of the MPI tests (tests/CMakeLists.txt, PP_MPI_ENV).

set(mpi ${MPIRUN} --oversubscribe -np 3 ${PRIMES} --engine mpi -w 1)
set(mpi_tcp ${MPIRUN} --oversubscribe --mca btl self,tcp -np 3 ${PRIMES}
  --engine mpi -w 1)
set(local ${PRIMES} -w 2)
file(MAKE_DIRECTORY ${WORK})
set(numbers ${WORK}/primes_mpi_numbers.txt)
file(WRITE ${numbers} "2\n3\n4\n1000003\n18446744073709551557\n0\n1\n")

# Runs `${ARGN}` (stdin from INPUT when set), fails unless it exits 0;
# sets out_var to its stdout with each row's elapsed seconds masked.
function(run_masked out_var input)
  if(input)
    set(in INPUT_FILE ${input})
  endif()
  execute_process(COMMAND ${ARGN} ${in} RESULT_VARIABLE rc
    OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 60)
  if(NOT rc EQUAL 0)
    string(REPLACE ";" " " cmd "${ARGN}")
    message(FATAL_ERROR "'${cmd}' exited '${rc}'\nstdout:\n${out}\n"
      "stderr:\n${err}")
  endif()
  string(REGEX REPLACE ",[0-9]+\\.[0-9]+\n" ",ELAPSED\n" out "${out}")
  set(${out_var} "${out}" PARENT_SCOPE)
endfunction()

# The processes engine and `${job}` (an mpirun command line) on the same
# arguments; `rows` lines of output expected.
function(expect_same what job rows input)
  run_masked(want "${input}" ${local} ${ARGN})
  run_masked(got "${input}" ${${job}} ${ARGN})
  string(REGEX MATCHALL "\n" lines "${want}")
  list(LENGTH lines n)
  if(NOT n EQUAL rows)
    message(FATAL_ERROR "${what}: the processes engine printed ${n} lines, "
      "expected ${rows}:\n${want}")
  endif()
  if(NOT got STREQUAL want)
    file(WRITE ${WORK}/primes_mpi_want.txt "${want}")
    file(WRITE ${WORK}/primes_mpi_got.txt "${got}")
    message(FATAL_ERROR "${what}: --engine mpi differs from the processes "
      "engine (see ${WORK}/primes_mpi_want.txt and primes_mpi_got.txt)")
  endif()
  message(STATUS "${what}: ${n} lines, the same on both engines")
endfunction()

expect_same("mr over a range" mpi 10001 ""
  --algo mr --range 1000000:1010000 --format csv)
expect_same("mr over a range, TCP" mpi_tcp 10001 ""
  --algo mr --range 1000000:1010000 --format csv)
expect_same("the fixture" mpi 21 "" --format csv)
expect_same("standard input" mpi 8 "${numbers}" --algo mr --format csv -f -)
expect_same("a count" mpi 2 "" --count --range 0:100000000 --format csv)
run_masked(count "" ${mpi} --count --range 0:100000000 --format csv)
if(NOT count MATCHES "\n5761455,")
  message(FATAL_ERROR "the count below 10^8 is not 5761455:\n${count}")
endif()

execute_process(COMMAND ${mpi} -f ${WORK}/no-such-file RESULT_VARIABLE rc
  OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 60)
string(REGEX MATCHALL "no-such-file: No such file" said "${err}")
list(LENGTH said times)
if(NOT rc EQUAL 2 OR NOT out STREQUAL "" OR NOT times EQUAL 1)
  message(FATAL_ERROR "a missing file under --engine mpi: exit '${rc}' "
    "(wanted 2), stdout '${out}' (wanted none), the file named ${times} "
    "times (wanted once); stderr:\n${err}")
endif()
