# Runs `TOOL --version` and fails unless it exits 0 and prints exactly
# "NAME (procpool) VERSION" on stdout and nothing on stderr.
execute_process(COMMAND ${TOOL} --version RESULT_VARIABLE rc
  OUTPUT_VARIABLE out ERROR_VARIABLE err)
set(want "${NAME} (procpool) ${VERSION}\n")
if(NOT rc EQUAL 0 OR NOT out STREQUAL want OR NOT err STREQUAL "")
  message(FATAL_ERROR "${NAME} --version: exit status '${rc}', stdout "
    "'${out}', stderr '${err}'; wanted status 0 and stdout '${want}'")
endif()
