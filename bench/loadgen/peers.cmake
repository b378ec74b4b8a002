# The peer adapters' test (bench/loadgen/peer_protocol_test.cc): MQTT, Redis and NATS
# adapters against the real mosquitto, redis-server and nats-server (Debian packages,
# started by bench/peers/start.sh). Included once, from bench/CMakeLists.txt or
# bench/loadgen/CMakeLists.txt (the guard makes a second include harmless).
include_guard(GLOBAL)
if(HERALD_BUILD_TESTS)
  find_package(GTest REQUIRED)
  add_executable(peer_protocol_test
    ${CMAKE_CURRENT_LIST_DIR}/peer_protocol_test.cc
    ${CMAKE_CURRENT_LIST_DIR}/mqtt_protocol.cc
    ${CMAKE_CURRENT_LIST_DIR}/redis_protocol.cc
    ${CMAKE_CURRENT_LIST_DIR}/nats_protocol.cc)
  target_include_directories(peer_protocol_test PRIVATE ${CMAKE_CURRENT_LIST_DIR})
  target_link_libraries(peer_protocol_test PRIVATE herald_warnings GTest::gtest GTest::gtest_main)
  target_compile_definitions(peer_protocol_test PRIVATE HERALD_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
  add_test(NAME peer_protocol COMMAND peer_protocol_test)
endif()
