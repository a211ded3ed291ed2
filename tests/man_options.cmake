cmake_minimum_required(VERSION 3.25)
# Fails when a tool's --help names a long option that its manual page
# (MAN_DIR/NAME.1) does not describe in its options list (an `.It` entry
# with `.Fl \-option`), so that an option added to a tool without its page
# is caught, naming the option and the page.
execute_process(COMMAND ${TOOL} --help RESULT_VARIABLE rc
  OUTPUT_VARIABLE help ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${NAME} --help failed (${rc}): ${err}")
endif()
set(page ${MAN_DIR}/${NAME}.1)
if(NOT EXISTS ${page})
  message(FATAL_ERROR "${NAME} has no manual page: write man/${NAME}.1")
endif()
file(READ ${page} text)
string(REGEX MATCHALL "--[a-z][a-z0-9_-]*" options "${help}")
list(REMOVE_DUPLICATES options)
if(NOT options)
  message(FATAL_ERROR "${NAME} --help names no long option: is it broken?")
endif()
set(missing "")
foreach(option IN LISTS options)
  # .Fl writes the first dash itself: --task-timeout is .Fl \-task\-timeout
  string(SUBSTRING "${option}" 1 -1 spelled)
  string(REPLACE "-" "\\-" spelled "${spelled}")
  # An entry of the options list: `.It Fl \-opt ...` or `..., Fl \-opt`.
  set(found 0)
  foreach(entry ".It Fl ${spelled} " ".It Fl ${spelled}\n"
                ", Fl ${spelled} " ", Fl ${spelled}\n")
    string(FIND "${text}" "${entry}" at)
    if(NOT at EQUAL -1)
      set(found 1)
    endif()
  endforeach()
  if(NOT found)
    list(APPEND missing ${option})
  endif()
endforeach()
if(missing)
  string(REPLACE ";" ", " missing "${missing}")
  message(FATAL_ERROR "man/${NAME}.1 does not document ${missing} (from "
    "${NAME} --help): add an '.It Fl \\-option' entry for each")
endif()
