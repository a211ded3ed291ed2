# Only the public API leaves the libraries: every global symbol that
# libprocpool.a and libprocpool.so define is a function the public header
# declares, or starts with pp__ (internal, where static is not possible),
# so that a program may define its own ring_init or worker_main, and no
# internal takes a public-looking name. Fails naming each stray symbol.
file(READ ${HEADER} header)
foreach(lib ${STATIC_LIB} ${SHARED_LIB})
  if(lib MATCHES "\\.so")
    set(nm_args -D --defined-only)
  else()
    set(nm_args -g --defined-only)
  endif()
  execute_process(COMMAND nm ${nm_args} ${lib} OUTPUT_VARIABLE out
                  RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "nm failed on ${lib} (install binutils)")
  endif()
  string(REPLACE "\n" ";" lines "${out}")
  set(stray "")
  set(count 0)
  foreach(line IN LISTS lines)
    if(line MATCHES "^[0-9a-f]+ [A-Za-z] (.+)$")
      set(name ${CMAKE_MATCH_1})
      math(EXPR count "${count} + 1")
      string(FIND "${header}" "${name}(" declared)
      if(NOT name MATCHES "^pp__" AND declared EQUAL -1)
        list(APPEND stray ${name})
      endif()
    endif()
  endforeach()
  if(count EQUAL 0)
    message(FATAL_ERROR "${lib}: nm listed no symbol at all")
  endif()
  if(stray)
    message(FATAL_ERROR "${lib} exports names that are neither in "
      "procpool.h nor prefixed pp__: ${stray}")
  endif()
  message(STATUS "${lib}: ${count} global symbols, all public or pp__")
endforeach()
