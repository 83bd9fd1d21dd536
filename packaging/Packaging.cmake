# packaging/: install() rules for the whole project and the CPack configuration of
# the Debian package migratefs_<version>_<arch>.deb (packaging/README.md).
#
#   cmake --build build --target package      # or: (cd build && cpack -G DEB)
#   apt install ./build/migratefs_*.deb
#
# Included at the end of the top-level CMakeLists.txt, so every target exists here.

# The units and the mount helper name the binaries by absolute path. They are written
# at install time (packaging/InstallRender.cmake) from the prefix of that install:
# /usr in the package (CPACK_PACKAGING_INSTALL_PREFIX), CMAKE_INSTALL_PREFIX (default
# /usr/local) for a plain `cmake --install`; so the two never disagree.
include(GNUInstallDirs)

set(MIGRATEFS_PKG_DIR ${CMAKE_SOURCE_DIR}/packaging)
set(MIGRATEFS_PKG_OUT ${CMAKE_BINARY_DIR}/packaging)
set(MIGRATEFS_PACKAGE_PREFIX "/usr" CACHE PATH "Install prefix of the Debian package")
# Fixed paths, whatever the prefix: mount(8) looks for helpers in /sbin only, and the
# broker's documentation and unit name /etc/migratefs.
set(MIGRATEFS_MOUNT_HELPER_DIR "/sbin")
set(MIGRATEFS_CONF_DIR "/etc/migratefs")

# systemd's unit directory for packages (bookworm: /lib/systemd/system).
find_package(PkgConfig QUIET)
if(PKG_CONFIG_FOUND)
  pkg_get_variable(MIGRATEFS_SYSTEMD_PC_UNITDIR systemd systemdsystemunitdir)
endif()
if(NOT MIGRATEFS_SYSTEMD_PC_UNITDIR)
  set(MIGRATEFS_SYSTEMD_PC_UNITDIR "/lib/systemd/system")
endif()
set(MIGRATEFS_SYSTEMD_UNITDIR "${MIGRATEFS_SYSTEMD_PC_UNITDIR}" CACHE PATH "Where the systemd units are installed")

# --- binaries ---------------------------------------------------------------------
# Daemons in sbin (root only), operator and planning tools in bin.
install(TARGETS migratefs migratefs-broker RUNTIME DESTINATION ${CMAKE_INSTALL_SBINDIR})
install(TARGETS migratectl migratefs-scheduler migratefs-sim RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# --- mount helper, stale-mount cleanup, systemd units: rendered at install time -----
# The broker's unit is owned by broker/daemon/; it is installed with ExecStart= at the
# installed binary instead of /usr/local/bin.
set(MIGRATEFS_BROKER_UNIT_SRC ${CMAKE_SOURCE_DIR}/broker/daemon/migratefs-broker.service)
install(CODE "
  set(MIGRATEFS_PKG_DIR \"${MIGRATEFS_PKG_DIR}\")
  set(MIGRATEFS_SBIN \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_SBINDIR}\")
  set(MIGRATEFS_LIBEXEC \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBEXECDIR}/migratefs\")
  set(MIGRATEFS_DOC \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_DOCDIR}\")
  set(MIGRATEFS_MOUNT_HELPER_DIR \"${MIGRATEFS_MOUNT_HELPER_DIR}\")
  set(MIGRATEFS_SYSTEMD_UNITDIR \"${MIGRATEFS_SYSTEMD_UNITDIR}\")
  set(MIGRATEFS_BROKER_UNIT_SRC \"${MIGRATEFS_BROKER_UNIT_SRC}\")
  set(PROJECT_VERSION \"${PROJECT_VERSION}\")
  include(\"${MIGRATEFS_PKG_DIR}/InstallRender.cmake\")
")
# A build-tree copy of the helper for help2man (its --help names no install path).
set(MIGRATEFS_SCRIPT_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
set(MIGRATEFS_SBIN ${CMAKE_INSTALL_FULL_SBINDIR})
configure_file(${MIGRATEFS_PKG_DIR}/mount.fuse.migratefs.in ${MIGRATEFS_PKG_OUT}/mount.fuse.migratefs @ONLY
               FILE_PERMISSIONS ${MIGRATEFS_SCRIPT_PERMISSIONS})

# --- configuration (dpkg conffile) and documentation --------------------------------
install(FILES ${MIGRATEFS_PKG_DIR}/broker.toml DESTINATION ${MIGRATEFS_CONF_DIR})
install(DIRECTORY DESTINATION ${MIGRATEFS_CONF_DIR}/mounts)
install(FILES ${CMAKE_SOURCE_DIR}/README.md DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES ${MIGRATEFS_PKG_DIR}/README.md DESTINATION ${CMAKE_INSTALL_DOCDIR} RENAME packaging.md)
# migratefs-broker.service's Documentation= points here.
install(FILES ${CMAKE_SOURCE_DIR}/broker/daemon/README.md DESTINATION ${CMAKE_INSTALL_DOCDIR}/broker)
install(FILES ${MIGRATEFS_PKG_DIR}/mount.conf.example ${MIGRATEFS_PKG_DIR}/fstab.example
        DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)

# --- man pages from --help (help2man) -----------------------------------------------
find_program(HELP2MAN_EXECUTABLE help2man)
find_program(GZIP_EXECUTABLE gzip)
if(HELP2MAN_EXECUTABLE AND GZIP_EXECUTABLE)
  set(MIGRATEFS_MAN_PAGES ON)
  set(MIGRATEFS_MAN_OUT ${MIGRATEFS_PKG_OUT}/man)
  file(MAKE_DIRECTORY ${MIGRATEFS_MAN_OUT})
  set(MIGRATEFS_MAN_FILES)
  # name|section|program (target or script)|one-line description
  set(MIGRATEFS_MANS
      "migratefs|8|$<TARGET_FILE:migratefs>|FUSE file system that live-migrates VM disk images between hosts"
      "migratefs-broker|8|$<TARGET_FILE:migratefs-broker>|per-host broker setting deadline-aware migration limits"
      "migratectl|1|$<TARGET_FILE:migratectl>|control running MigrateFS migrations"
      "migratefs-scheduler|1|$<TARGET_FILE:migratefs-scheduler>|plan and submit MigrateFS migrations to brokers"
      "migratefs-sim|1|$<TARGET_FILE:migratefs-sim>|simulate MigrateFS brokers over a large cloud"
      "mount.fuse.migratefs|8|${MIGRATEFS_PKG_OUT}/mount.fuse.migratefs|mount(8) helper for fuse.migratefs")
  foreach(entry ${MIGRATEFS_MANS})
    string(REPLACE "|" ";" fields "${entry}")
    list(GET fields 0 name)
    list(GET fields 1 section)
    list(GET fields 2 program)
    list(GET fields 3 what)
    set(page ${MIGRATEFS_MAN_OUT}/${name}.${section})
    set(deps ${MIGRATEFS_PKG_DIR}/see-also.h2m)
    if(TARGET ${name})
      list(APPEND deps ${name})
    else()
      list(APPEND deps ${program})
    endif()
    add_custom_command(
      OUTPUT ${page}.gz
      COMMAND ${HELP2MAN_EXECUTABLE} --no-info --no-discard-stderr --section=${section}
              --name=${what} --version-string=${PROJECT_VERSION}
              --include=${MIGRATEFS_PKG_DIR}/see-also.h2m --output=${page} ${program}
      COMMAND ${GZIP_EXECUTABLE} -9nf ${page}
      DEPENDS ${deps}
      COMMENT "help2man ${name}.${section}"
      VERBATIM)
    list(APPEND MIGRATEFS_MAN_FILES ${page}.gz)
    install(FILES ${page}.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man${section})
  endforeach()
  add_custom_target(migratefs_man ALL DEPENDS ${MIGRATEFS_MAN_FILES})
else()
  set(MIGRATEFS_MAN_PAGES OFF)
  message(STATUS "packaging: help2man or gzip not found, the package will have no man pages "
                 "(apt-get install help2man; scripts/install-deps.sh does)")
endif()

# --- the Debian package -------------------------------------------------------------
set(CPACK_GENERATOR "DEB")
set(CPACK_PACKAGE_NAME "migratefs")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "MigrateFS")
set(CPACK_PACKAGE_CONTACT "MigrateFS maintainers <root@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "live migration of VM disk images between hosts without shared storage")
set(CPACK_PACKAGE_DESCRIPTION
    "MigrateFS is a FUSE file system mounted over the directory of VM disk images. It
tracks dirty blocks while an image migrates and streams it to the peer daemon in
three phases (bulk copy, dirty-block iteration, synchronous mirroring) until both
copies are identical. The package holds the daemon (migratefs) with its mount helper
and systemd unit (migratefs@.service), the per-host broker (migratefs-broker), the
operator CLI (migratectl), the scheduler and the simulator.")
set(CPACK_PACKAGING_INSTALL_PREFIX ${MIGRATEFS_PACKAGE_PREFIX})
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME "DEB-DEFAULT")  # migratefs_<version>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_SECTION "admin")
set(CPACK_DEBIAN_PACKAGE_PRIORITY "optional")
# fuse3: fusermount3, /dev/fuse's udev rule, /etc/fuse.conf; the shared libraries are
# found by dpkg-shlibdeps when it is there (dpkg-dev), else named here.
find_program(MIGRATEFS_DPKG_SHLIBDEPS dpkg-shlibdeps)
if(MIGRATEFS_DPKG_SHLIBDEPS)
  set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
  set(CPACK_DEBIAN_PACKAGE_DEPENDS "fuse3, util-linux")
else()
  set(CPACK_DEBIAN_PACKAGE_DEPENDS
      "fuse3, util-linux, libfuse3-3, liburing2, libxxhash0, libssl3, libspdlog1.10, libfmt9, libtomlplusplus3, libstdc++6, libgcc-s1, libc6")
endif()
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "qemu-utils, libvirt-clients")
configure_file(${MIGRATEFS_PKG_DIR}/debian/postinst.in ${MIGRATEFS_PKG_OUT}/debian/postinst @ONLY)
configure_file(${MIGRATEFS_PKG_DIR}/debian/postrm ${MIGRATEFS_PKG_OUT}/debian/postrm COPYONLY)
file(WRITE ${MIGRATEFS_PKG_OUT}/debian/conffiles "${MIGRATEFS_CONF_DIR}/broker.toml\n")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${MIGRATEFS_PKG_OUT}/debian/conffiles ${MIGRATEFS_PKG_OUT}/debian/postinst ${MIGRATEFS_PKG_OUT}/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)

# --- the test (label "package"): build the .deb, unpack, mount with it ---------------
add_test(NAME package_deb
         COMMAND bash ${CMAKE_SOURCE_DIR}/tests/package/package_test.sh ${CMAKE_BINARY_DIR} ${PROJECT_VERSION}
                 ${MIGRATEFS_MAN_PAGES})
set_tests_properties(package_deb PROPERTIES LABELS "package" TIMEOUT 300)
