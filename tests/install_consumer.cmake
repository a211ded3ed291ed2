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
