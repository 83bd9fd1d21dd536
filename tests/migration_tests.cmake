# End-to-end migration tests (need root, /dev/fuse, fio, qemu-utils, iproute2).
if(TARGET migratefs_engine)
  add_library(migratefs_test_harness ${CMAKE_CURRENT_LIST_DIR}/harness/harness.cc
              ${CMAKE_CURRENT_LIST_DIR}/harness/throttled_proxy.cc
              ${CMAKE_CURRENT_LIST_DIR}/migration_fixture.cc)
  target_link_libraries(migratefs_test_harness PUBLIC GTest::gtest nlohmann_json::nlohmann_json)
  target_compile_definitions(migratefs_test_harness PRIVATE MIGRATEFS_BINARY="$<TARGET_FILE:migratefs>")

  foreach(t migration_test migration_safety_test migration_vm_ops_test migration_netns_test control_api_test migration_async_mirror_test
          migration_mirror_write_test migration_hybrid_test migration_profile_test)
    if(EXISTS ${CMAKE_CURRENT_LIST_DIR}/${t}.cc)
      add_executable(${t} ${CMAKE_CURRENT_LIST_DIR}/${t}.cc)
      target_link_libraries(${t} migratefs_test_harness GTest::gtest_main)
      add_dependencies(${t} migratefs)
      gtest_discover_tests(${t} DISCOVERY_TIMEOUT 60 PROPERTIES TIMEOUT 300 RUN_SERIAL TRUE)
    endif()
  endforeach()

  # Priority marking on the wire (issue 12): htb on a veth, iperf3 competing; ~27 s.
  # ctest -L netns -R Marking (one label only: gtest_discover_tests splits a list of them)
  add_executable(migration_marking_netns_test ${CMAKE_CURRENT_LIST_DIR}/migration_marking_netns_test.cc)
  target_link_libraries(migration_marking_netns_test migratefs_test_harness GTest::gtest_main)
  add_dependencies(migration_marking_netns_test migratefs)
  gtest_discover_tests(migration_marking_netns_test DISCOVERY_TIMEOUT 60
                       PROPERTIES TIMEOUT 120 RUN_SERIAL TRUE LABELS netns)
endif()
