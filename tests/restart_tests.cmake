# The daemon killed or upgraded under a live mount (issue 14): real mounts, fio.
if(TARGET migratefs_test_harness)
  add_executable(daemon_restart_test ${CMAKE_CURRENT_LIST_DIR}/daemon_restart_test.cc)
  target_link_libraries(daemon_restart_test migratefs_test_harness GTest::gtest_main)
  add_dependencies(daemon_restart_test migratefs)
  gtest_discover_tests(daemon_restart_test DISCOVERY_TIMEOUT 60 PROPERTIES TIMEOUT 300 RUN_SERIAL TRUE)

  add_executable(migration_restart_test ${CMAKE_CURRENT_LIST_DIR}/migration_restart_test.cc)
  target_link_libraries(migration_restart_test migratefs_test_harness GTest::gtest_main)
  add_dependencies(migration_restart_test migratefs)
  gtest_discover_tests(migration_restart_test DISCOVERY_TIMEOUT 60 PROPERTIES TIMEOUT 400 RUN_SERIAL TRUE)
endif()
