# Fails the configure step when the version macros of include/procpool.h
# differ from project(VERSION): the header, pp_version(), the SONAME, the
# .pc file and the packages must all tell the same version.
file(READ ${PROJECT_SOURCE_DIR}/include/procpool.h pp_header)
set(pp_want_MAJOR ${PROJECT_VERSION_MAJOR})
set(pp_want_MINOR ${PROJECT_VERSION_MINOR})
set(pp_want_PATCH ${PROJECT_VERSION_PATCH})
set(pp_want_STRING "\"${PROJECT_VERSION}\"")
foreach(part MAJOR MINOR PATCH STRING)
  string(REGEX MATCH "#define PP_VERSION_${part} ([^\n]*)" _ "${pp_header}")
  if(NOT "${CMAKE_MATCH_1}" STREQUAL "${pp_want_${part}}")
    message(FATAL_ERROR "include/procpool.h has PP_VERSION_${part} "
      "${CMAKE_MATCH_1} but project() in CMakeLists.txt has version "
      "${PROJECT_VERSION}: set both to the same version")
  endif()
endforeach()
