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
# Configured with -DCMAKE_INSTALL_PREFIX=/usr, GNUInstallDirs puts the
# library, .pc and CMake files in /usr/lib/<multiarch>, as Debian does.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME procpool)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(PP_DEB_MAINTAINER "procpool developers <procpool@localhost>" CACHE STRING
  "Maintainer field of the Debian packages: a real name and address")
set(CPACK_PACKAGE_CONTACT ${PP_DEB_MAINTAINER})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_COMPONENTS_ALL lib dev tools)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_ENABLE_COMPONENT_DEPENDS ON)
set(CPACK_STRIP_FILES ON) # as Debian ships binaries

set(CPACK_DEBIAN_LIB_PACKAGE_NAME libprocpool${PROJECT_VERSION_MAJOR})
set(CPACK_DEBIAN_LIB_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON) # only lib has a shared object
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")
# The dynamic linker's cache is refreshed by libc-bin's ldconfig trigger,
# as dh_makeshlibs arranges: `triggers` activates it. CPack would add a
# postinst and a postrm calling ldconfig themselves (which also runs the
# host's ldconfig when dpkg installs into another root); these empty
# scripts stand in for them.
file(WRITE ${PROJECT_BINARY_DIR}/deb/triggers "activate-noawait ldconfig\n")
foreach(name postinst postrm)
  file(WRITE ${PROJECT_BINARY_DIR}/deb/${name} "#!/bin/sh
# libprocpool0: the ldconfig trigger (see triggers) does the work.
set -e
")
endforeach()
set(CPACK_DEBIAN_LIB_PACKAGE_CONTROL_EXTRA ${PROJECT_BINARY_DIR}/deb/triggers
  ${PROJECT_BINARY_DIR}/deb/postinst ${PROJECT_BINARY_DIR}/deb/postrm)
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
if(PP_HAVE_MPI) # a static link needs Open MPI's library (procpool.pc)
  string(APPEND CPACK_DEBIAN_DEV_PACKAGE_DEPENDS ", libopenmpi-dev")
endif()
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
