cmake_minimum_required(VERSION 3.25)
# Runs `mandoc -Tlint -W style` on every manual page in MAN_DIR and fails on
# any message but "referenced manual not found" (which depends on the pages
# installed on this machine; man_coverage checks our own references).
find_program(MANDOC mandoc)
if(NOT MANDOC)
  message(FATAL_ERROR "mandoc not found: the manual pages are checked with "
    "'mandoc -Tlint'; install it with 'apt-get install mandoc'")
endif()
file(GLOB pages ${MAN_DIR}/*.[137])
if(NOT pages)
  message(FATAL_ERROR "no manual pages in ${MAN_DIR}")
endif()
set(problems "")
foreach(page IN LISTS pages)
  # mandoc writes its findings to stdout, and notes on its database to
  # stderr, which are not about the page.
  execute_process(COMMAND ${MANDOC} -Tlint -W style ${page}
    OUTPUT_VARIABLE out ERROR_QUIET)
  string(REGEX REPLACE "[^\n]*referenced manual not found[^\n]*\n?" ""
    out "${out}")
  string(APPEND problems "${out}")
endforeach()
if(problems)
  message(FATAL_ERROR "mandoc -Tlint finds:\n${problems}")
endif()
list(LENGTH pages n)
message(STATUS "${n} pages lint clean")
