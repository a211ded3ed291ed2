# Installs the build into a scratch prefix, then builds README's example
# against it twice, as another project would: with pkg-config and with
# find_package(procpool). Fails on any step.
set(prefix ${BINARY_DIR}/install-check)
set(consumer ${BINARY_DIR}/consumer-check)
file(REMOVE_RECURSE ${prefix} ${consumer})
file(MAKE_DIRECTORY ${consumer})

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out
                  ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed: ${ARGN}\n${out}")
  endif()
endfunction()

run(${CMAKE_COMMAND} --install ${BINARY_DIR} --prefix ${prefix})

# lib*/, or lib/<multiarch>/ when configured with the prefix /usr.
file(GLOB pc_dir LIST_DIRECTORIES true ${prefix}/lib*/pkgconfig
  ${prefix}/lib/*/pkgconfig)
set(ENV{PKG_CONFIG_PATH} ${pc_dir})
execute_process(COMMAND pkg-config --cflags --libs procpool
                OUTPUT_VARIABLE flags RESULT_VARIABLE rc
                OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "pkg-config does not find the installed procpool.pc")
endif()
separate_arguments(flags UNIX_COMMAND "${flags}")
run(cc ${SOURCE_DIR}/tools/example.c ${flags} -o ${consumer}/ex_pc)
get_filename_component(libdir ${pc_dir} DIRECTORY)
run(${CMAKE_COMMAND} -E env LD_LIBRARY_PATH=${libdir} ${consumer}/ex_pc)

file(WRITE ${consumer}/CMakeLists.txt [[
cmake_minimum_required(VERSION 3.25)
project(consumer C)
find_package(procpool REQUIRED)
add_executable(ex ${EXAMPLE})
target_link_libraries(ex PRIVATE procpool::procpool_static)
]])
run(${CMAKE_COMMAND} -S ${consumer} -B ${consumer}/build
    -DCMAKE_PREFIX_PATH=${prefix} -DEXAMPLE=${SOURCE_DIR}/tools/example.c)
run(${CMAKE_COMMAND} --build ${consumer}/build)
run(${consumer}/build/ex)

# A program with names of its own that the library uses internally links
# against the installed static library: nothing internal leaves it.
file(WRITE ${consumer}/clash.c [[
#include <procpool.h>
int ring_init(void);
int worker_main(void);
int shared_create(void);
int collector_main(void);
int ring_init(void) { return 1; }
int worker_main(void) { return 2; }
int shared_create(void) { return 3; }
int collector_main(void) { return 4; }
static int one(pp_task *t, const void *a, size_t n) {
  (void)a; (void)n;
  return pp_task_return(t, "k", 1);
}
int main(void) {
  pp_pool *p;
  pp_future *f;
  const void *d;
  size_t len;
  if (pp_pool_create(&p, NULL) || pp_submit(p, one, NULL, 0, &f) ||
      pp_future_result(f, PP_FOREVER, &d, &len) || len != 1)
    return 9;
  pp_future_release(f);
  pp_pool_destroy(p);
  return ring_init() + worker_main() + shared_create() + collector_main() - 10;
}
]])
file(GLOB static_lib ${prefix}/lib*/libprocpool.a
  ${prefix}/lib/*/libprocpool.a)
# What the static library needs besides itself (Open MPI, when the
# library was built with the MPI engine), from its .pc file.
execute_process(COMMAND pkg-config --static --libs
                procpool OUTPUT_VARIABLE static_deps
                OUTPUT_STRIP_TRAILING_WHITESPACE)
separate_arguments(static_deps UNIX_COMMAND "${static_deps}")
list(REMOVE_ITEM static_deps -lprocpool)
run(cc ${consumer}/clash.c -I${prefix}/include ${static_lib} ${static_deps}
    -o ${consumer}/clash)
run(${consumer}/clash)
