# InstallRender.cmake: run at install time (install(CODE) in Packaging.cmake), with
# CMAKE_INSTALL_PREFIX and DESTDIR of that install. Writes the files that name
# installed paths: the mount helper, the clean-up script and both systemd units.

function(migratefs_render template dest_dir name mode)
  set(out "$ENV{DESTDIR}${dest_dir}/${name}")
  message(STATUS "Installing: ${out}")
  if(mode STREQUAL "exec")
    configure_file("${template}" "${out}" @ONLY FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE
                   GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
  else()
    configure_file("${template}" "${out}" @ONLY FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
  endif()
endfunction()

migratefs_render("${MIGRATEFS_PKG_DIR}/mount.fuse.migratefs.in" "${MIGRATEFS_MOUNT_HELPER_DIR}" mount.fuse.migratefs exec)
migratefs_render("${MIGRATEFS_PKG_DIR}/migratefs-clean-mount.in" "${MIGRATEFS_LIBEXEC}" migratefs-clean-mount exec)
migratefs_render("${MIGRATEFS_PKG_DIR}/migratefs@.service.in" "${MIGRATEFS_SYSTEMD_UNITDIR}" "migratefs@.service" file)

# broker/daemon/migratefs-broker.service, with ExecStart= at the installed binary.
file(READ "${MIGRATEFS_BROKER_UNIT_SRC}" unit)
string(REGEX REPLACE "ExecStart=[^ \n]*/migratefs-broker" "ExecStart=${MIGRATEFS_SBIN}/migratefs-broker" unit "${unit}")
string(REGEX REPLACE "\n# Install: cp [^\n]*\n#[^\n]*\n" "\n# Installed with migratefs: systemctl enable --now migratefs-broker\n"
       unit "${unit}")
if(NOT unit MATCHES "\nExecStart=${MIGRATEFS_SBIN}/migratefs-broker ")
  message(FATAL_ERROR "cannot point ExecStart= of ${MIGRATEFS_BROKER_UNIT_SRC} at ${MIGRATEFS_SBIN}/migratefs-broker")
endif()
set(out "$ENV{DESTDIR}${MIGRATEFS_SYSTEMD_UNITDIR}/migratefs-broker.service")
message(STATUS "Installing: ${out}")
file(WRITE "${out}" "${unit}")
