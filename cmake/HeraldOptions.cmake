# Every build option of Herald in one place.
option(HERALD_WERROR "Treat compiler warnings as errors (CI turns this on)" OFF)
option(HERALD_SANITIZE "Build with AddressSanitizer and UndefinedBehaviorSanitizer" OFF)
option(HERALD_SANITIZE_THREAD "Build with ThreadSanitizer (CI runs only the client SDK tests with it)" OFF)
option(HERALD_FUZZ "Link fuzz targets with libFuzzer (needs clang-14 and libclang-rt-14-dev)" OFF)
option(HERALD_BUILD_TESTS "Build the GoogleTest suite" ON)
option(HERALD_BUILD_BENCH "Build Google Benchmark programs in bench/" ON)
option(HERALD_JEMALLOC "Link heraldd with jemalloc (libjemalloc-dev); never in sanitizer or fuzz builds" ON)

set(CMAKE_CXX_STANDARD 20)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
set(CMAKE_CXX_EXTENSIONS OFF)
set(CMAKE_EXPORT_COMPILE_COMMANDS ON)
if(NOT CMAKE_BUILD_TYPE)
  set(CMAKE_BUILD_TYPE RelWithDebInfo CACHE STRING "Build type" FORCE)
endif()

# Warnings apply to Herald's own targets (generated protobuf code gets fewer).
add_library(herald_warnings INTERFACE)
target_compile_options(herald_warnings INTERFACE -Wall -Wextra -Wshadow -Wnon-virtual-dtor
                       -Wold-style-cast -Wcast-align -Woverloaded-virtual -Wpedantic)
if(HERALD_WERROR)
  target_compile_options(herald_warnings INTERFACE -Werror)
endif()

# The sanitizers replace malloc themselves: heraldd keeps glibc's there.
if(HERALD_SANITIZE OR HERALD_SANITIZE_THREAD OR HERALD_FUZZ)
  set(HERALD_JEMALLOC OFF)
endif()

if(HERALD_SANITIZE OR HERALD_FUZZ)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()
if(HERALD_SANITIZE_THREAD)
  if(HERALD_SANITIZE OR HERALD_FUZZ)
    message(FATAL_ERROR "HERALD_SANITIZE_THREAD cannot be combined with HERALD_SANITIZE or HERALD_FUZZ")
  endif()
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer)
  add_link_options(-fsanitize=thread)
endif()
if(HERALD_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "HERALD_FUZZ needs clang (configure with CC=clang-14 CXX=clang++-14)")
  endif()
  # Coverage instrumentation everywhere; the fuzzer main is linked into fuzz targets only.
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()
