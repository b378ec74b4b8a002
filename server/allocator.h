// Which memory allocator heraldd runs on. Normal builds link jemalloc (docs/operations.md,
// "Memory allocator"); sanitizer builds keep glibc's malloc, which the sanitizers replace.
#pragma once

#include <string>

namespace herald::server {

// "jemalloc <version>" when heraldd is linked with jemalloc, else "glibc".
std::string allocator_name();

}  // namespace herald::server
