# fs integration tests: real FUSE mounts (root, /dev/fuse). Each test mounts a fresh
# temporary SRC/MNT and unmounts it at the end, also on failure.
add_executable(fs_mount_test
  ${CMAKE_CURRENT_LIST_DIR}/fs_test_util.cc
  ${CMAKE_CURRENT_LIST_DIR}/fs_ops_test.cc
  ${CMAKE_CURRENT_LIST_DIR}/fs_io_test.cc
  ${CMAKE_CURRENT_LIST_DIR}/fs_hook_test.cc
  ${CMAKE_CURRENT_LIST_DIR}/fs_cli_test.cc
  ${CMAKE_CURRENT_LIST_DIR}/fs_perm_test.cc
  ${CMAKE_CURRENT_LIST_DIR}/fs_tools_test.cc
)
target_link_libraries(fs_mount_test PRIVATE migratefs_fs GTest::gtest_main)
target_compile_definitions(fs_mount_test PRIVATE MIGRATEFS_BINARY="$<TARGET_FILE:migratefs>")
add_dependencies(fs_mount_test migratefs)
gtest_discover_tests(fs_mount_test DISCOVERY_TIMEOUT 60 PROPERTIES LABELS "fs;mount" TIMEOUT 120)
