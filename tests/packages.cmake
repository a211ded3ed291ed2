cmake_minimum_required(VERSION 3.25)
# Builds the Debian packages (cpack -G DEB), installs them with `dpkg -i`
# into a scratch root, compiles README's example against them with
# `pkg-config --cflags --libs procpool`, runs it and the installed
# `primes`, then removes the packages again. The machine is not changed:
# the scratch root has its own dpkg database, holding only the stanzas of
# the machine's packages ours depend on, so that dpkg checks our Depends
# against what is really installed.
set(work ${BINARY_DIR}/packages-check)
set(debs ${work}/debs)
set(root ${work}/root)
set(admin ${root}/var/lib/dpkg)
file(REMOVE_RECURSE ${work})
file(MAKE_DIRECTORY ${debs} ${admin}/info ${admin}/updates ${admin}/triggers)

# Runs a command; fails with its output unless it exits 0. Its standard
# output goes in ${out_var} when given.
function(run out_var)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out
                  ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}${err}")
  endif()
  if(out_var)
    set(${out_var} "${out}" PARENT_SCOPE)
  endif()
endfunction()

# Fails unless `text` matches `regex`, saying what was checked.
function(expect what text regex)
  if(NOT text MATCHES "${regex}")
    message(FATAL_ERROR "${what}: expected to match '${regex}', got:\n${text}")
  endif()
endfunction()

foreach(tool dpkg dpkg-deb dpkg-query:dpkg dpkg-shlibdeps:dpkg-dev
             file:file cc:build-essential pkg-config:pkg-config
             readelf:binutils nm:binutils)
  string(REPLACE ":" ";" tool ${tool})
  list(GET tool 0 program)
  list(GET tool -1 package)
  find_program(found_${program} ${program})
  if(NOT found_${program})
    message(FATAL_ERROR "${program} not found: the package test needs it; "
      "install it with 'apt-get install ${package}'")
  endif()
endforeach()

execute_process(COMMAND id -u OUTPUT_VARIABLE uid
  OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT uid STREQUAL "0")
  message(FATAL_ERROR "the packages test installs with 'dpkg -i' into a "
    "scratch root, which dpkg does only for root: run it as root, as CI "
    "does")
endif()

# The packages, and what each must hold and depend on.
run("" ${CMAKE_COMMAND} -E chdir ${BINARY_DIR}
    ${CPACK} -G DEB -B ${debs} --config ${BINARY_DIR}/CPackConfig.cmake)
file(GLOB lib_deb ${debs}/libprocpool[0-9]*_*.deb)
file(GLOB dev_deb ${debs}/libprocpool-dev_*.deb)
file(GLOB tools_deb ${debs}/procpool-tools_*.deb)
if(NOT lib_deb OR NOT dev_deb OR NOT tools_deb)
  file(GLOB made ${debs}/*.deb)
  message(FATAL_ERROR "cpack did not make the three packages "
    "libprocpool<N>, libprocpool-dev, procpool-tools; made: ${made}")
endif()
run(lib_depends dpkg-deb -f ${lib_deb} Depends)
expect("libprocpool's Depends" "${lib_depends}" "libc6 \\(>=")
run(dev_depends dpkg-deb -f ${dev_deb} Depends)
expect("libprocpool-dev's Depends" "${dev_depends}"
  "libprocpool[0-9]+ \\(= ${VERSION}\\)")
run(tools_depends dpkg-deb -f ${tools_deb} Depends)
expect("procpool-tools's Depends" "${tools_depends}"
  "libcurl4.*libgif.*libmicrohttpd")
run(lib_files dpkg-deb -c ${lib_deb})
string(REGEX MATCHALL "\\./usr/[^ \n]*" lib_paths "${lib_files}")
foreach(path IN LISTS lib_paths)
  if(NOT path MATCHES
     "^\\./usr/(lib/([a-z0-9_]+-linux-[a-z]+/)?)?(libprocpool\\.so\\.[0-9.]+)?$")
    message(FATAL_ERROR "the library package holds ${path}: only "
      "libprocpool.so.N* belong there (the rest is for -dev)")
  endif()
endforeach()

# A scratch dpkg database with the machine's stanzas of our dependencies.
set(deps "${lib_depends}, ${dev_depends}, ${tools_depends}")
string(REGEX REPLACE "\\([^)]*\\)|\\|[^,]*|[ \n]" "" deps "${deps}")
string(REPLACE "," ";" deps "${deps}")
list(FILTER deps EXCLUDE REGEX "^libprocpool")
list(REMOVE_DUPLICATES deps)
run(status dpkg-query -s ${deps})
file(WRITE ${admin}/status "${status}")
run(names dpkg-query -W -f "\${binary:Package}\n" ${deps})
string(REPLACE "\n" ";" names "${names}")
foreach(name IN LISTS names)
  if(name)
    file(TOUCH ${admin}/info/${name}.list)
  endif()
endforeach()

# Installs, without maintainer scripts being chrooted into the scratch
# root (it has no shell); with DPKG_ROOT set, ours leave ldconfig alone.
set(dpkg dpkg --root=${root} --force-script-chrootless --log=/dev/null)
run("" ${dpkg} -i ${lib_deb} ${dev_deb} ${tools_deb})
# In /usr/lib, or /usr/lib/<multiarch> when configured with prefix /usr.
file(GLOB soname ${root}/usr/lib/libprocpool.so.[0-9]
                 ${root}/usr/lib/*/libprocpool.so.[0-9])
if(NOT soname)
  message(FATAL_ERROR "no libprocpool.so.N in ${root}/usr/lib")
endif()
get_filename_component(libdir ${soname} DIRECTORY)
get_filename_component(soname_file ${soname} NAME)
run(dynamic readelf -d ${soname})
expect("the library's SONAME" "${dynamic}" "SONAME.*\\[${soname_file}\\]")
# EXISTS follows the link pages' symbolic links.
foreach(page man7/procpool.7 man3/pp_submit.3 man3/pp_submit_timeout.3
             man1/primes.1)
  if(NOT EXISTS ${root}/usr/share/man/${page}.gz)
    message(FATAL_ERROR "no manual page ${page}.gz in the installed packages")
  endif()
endforeach()
# `man pp_x` answers for every function the installed library exports.
run(symbols nm -D --defined-only ${soname})
string(REGEX MATCHALL " T pp_[A-Za-z0-9_]+" symbols "${symbols}")
if(NOT symbols)
  message(FATAL_ERROR "nm -D finds no pp_ function in ${soname}")
endif()
foreach(symbol IN LISTS symbols)
  string(REPLACE " T " "" symbol "${symbol}")
  if(NOT EXISTS ${root}/usr/share/man/man3/${symbol}.3.gz)
    message(FATAL_ERROR "the installed packages have no page for ${symbol} "
      "(man3/${symbol}.3.gz)")
  endif()
endforeach()

# README's example against the installed -dev package.
set(ENV{PKG_CONFIG_LIBDIR} ${libdir}/pkgconfig)
run(flags pkg-config --cflags --libs procpool)
separate_arguments(flags UNIX_COMMAND "${flags}")
run("" cc ${SOURCE_DIR}/tools/example.c ${flags} -o ${work}/example)
run(needed readelf -d ${work}/example)
expect("the example's NEEDED" "${needed}" "NEEDED.*\\[${soname_file}\\]")
run(out ${CMAKE_COMMAND} -E env LD_LIBRARY_PATH=${libdir} ${work}/example)
expect("the example's output" "${out}" "0 1 4 9 16 25 36 49 64 81")

# The installed tools.
run(out ${root}/usr/bin/primes --format csv 7 10)
expect("the installed primes" "${out}" "7,1,.*10,0,")
run(out ${root}/usr/bin/primes --version)
expect("primes --version" "${out}" "^primes \\(procpool\\) ${VERSION}\n$")

# And out again.
run("" ${dpkg} -r procpool-tools libprocpool-dev)
get_filename_component(lib_name ${lib_deb} NAME)
string(REGEX REPLACE "_.*" "" lib_name ${lib_name})
run("" ${dpkg} -r ${lib_name})
file(GLOB_RECURSE left LIST_DIRECTORIES false ${root}/usr/*)
if(left)
  message(FATAL_ERROR "dpkg -r left files behind: ${left}")
endif()
file(REMOVE_RECURSE ${work})
