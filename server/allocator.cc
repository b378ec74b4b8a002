// allocator_name(): jemalloc is detected through its mallctl() entry point, declared weak
// so that a binary without jemalloc (tests, sanitizer builds) links and sees null.
#include "server/allocator.h"

#include <cstddef>

extern "C" int mallctl(const char* name, void* oldp, size_t* oldlenp, void* newp, size_t newlen)
    __attribute__((weak));

namespace herald::server {

std::string allocator_name() {
  if (mallctl == nullptr) return "glibc";
  const char* version = nullptr;
  size_t len = sizeof(version);
  if (mallctl("version", &version, &len, nullptr, 0) != 0 || version == nullptr) return "jemalloc";
  return std::string("jemalloc ") + version;
}

}  // namespace herald::server
