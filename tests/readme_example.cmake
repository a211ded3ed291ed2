# Fails when README.md no longer shows tools/example.c verbatim.
file(READ ${SOURCE_DIR}/tools/example.c example)
file(READ ${SOURCE_DIR}/README.md readme)
string(FIND "${readme}" "${example}" at)
if(at EQUAL -1)
  message(FATAL_ERROR "README.md's example differs from tools/example.c: "
                      "paste the file into the README again")
endif()
