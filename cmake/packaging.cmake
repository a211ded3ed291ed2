# Debian packages: `cpack -G DEB` in the build directory (or
# `cpack --config build/CPackConfig.cmake`) makes three, from the install
# components:
#   libprocpool0     (lib)   the shared library, named by its SONAME
#   libprocpool-dev  (dev)   header, static library, the .so link,
#                            pkg-config and CMake files, pages 3 and 7
#   procpool-tools   (tools) primes, flags, flagserver, executor-demo and
#                            their pages (section 1)
# dpkg-shlibdeps (dpkg-dev) computes each package's dependencies on the
# Debian packages of the libraries it links; CPack runs `file` to find them.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME procpool)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "procpool developers <procpool@localhost>")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_COMPONENTS_ALL lib dev tools)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_ENABLE_COMPONENT_DEPENDS ON)

set(CPACK_DEBIAN_LIB_PACKAGE_NAME libprocpool${PROJECT_VERSION_MAJOR})
set(CPACK_DEBIAN_LIB_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON) # only lib has a shared object
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")
# CPack's own postinst and postrm run ldconfig; these do the same, except
# when dpkg installs into another root (DPKG_ROOT set, as with
# `dpkg --root DIR --force-script-chrootless`), whose cache is not theirs
# to write: the package test installs that way.
foreach(script postinst:configure postrm:remove)
  string(REPLACE ":" ";" script ${script})
  list(GET script 0 name)
  list(GET script 1 action)
  file(CONFIGURE OUTPUT ${PROJECT_BINARY_DIR}/deb/${name} CONTENT [[
#!/bin/sh
set -e
if [ "$1" = "@action@" ] && [ -z "$DPKG_ROOT" ]; then
  ldconfig
fi
]] @ONLY)
  list(APPEND CPACK_DEBIAN_LIB_PACKAGE_CONTROL_EXTRA
    ${PROJECT_BINARY_DIR}/deb/${name})
endforeach()
set(CPACK_DEBIAN_LIB_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_COMPONENT_LIB_DESCRIPTION "process pool for C - shared library
procpool brings Python's concurrent.futures executors to C: a master forks
workers, tasks and results travel through lock-protected rings in shared
memory, callers get futures, an ordered map, as_completed and wait.
This package holds the shared library.")

set(CPACK_DEBIAN_DEV_PACKAGE_NAME libprocpool-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_COMPONENT_DEV_DEPENDS lib)
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS "libc6-dev")
set(CPACK_COMPONENT_DEV_DESCRIPTION "process pool for C - development files
The header procpool.h, the static library, pkg-config and CMake files, and
the manual pages of the calls (section 3) and of the model, procpool(7).")

set(CPACK_DEBIAN_TOOLS_PACKAGE_NAME procpool-tools)
set(CPACK_DEBIAN_TOOLS_PACKAGE_SECTION utils)
set(CPACK_COMPONENT_TOOLS_DESCRIPTION "process pool for C - tools
primes (a prime checker on all cores), flags (flag downloads over libcurl),
flagserver (an HTTP server of flags) and executor-demo, with their manual
pages.")

include(CPack)
