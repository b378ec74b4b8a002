// IdList: the connection ids a loop keeps per channel and per user. Most channels
// and users have exactly one connection on a loop, so one id is held inline with no
// heap memory; more go to a heap array. Order is not kept. Not thread-safe.
#pragma once

#include <cstdint>
#include <cstring>
#include <new>
#include <utility>

namespace herald::server {

class IdList {
 public:
  using Id = uint64_t;

  IdList() noexcept = default;
  ~IdList() {
    if (cap_ > 1) delete[] many_;
  }
  IdList(IdList&& o) noexcept : size_(o.size_), cap_(o.cap_) {
    if (cap_ > 1) many_ = o.many_; else one_ = o.one_;
    o.size_ = 0;
    o.cap_ = 1;
  }
  IdList& operator=(IdList&& o) noexcept {
    if (this != &o) {
      this->~IdList();
      new (this) IdList(std::move(o));
    }
    return *this;
  }
  IdList(const IdList&) = delete;
  IdList& operator=(const IdList&) = delete;

  size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  Id operator[](size_t i) const noexcept { return cap_ > 1 ? many_[i] : one_; }

  // Appends `id`. Throws std::bad_alloc (nothing changed then).
  void push_back(Id id) {
    if (size_ < cap_) {
      if (cap_ > 1) many_[size_] = id; else one_ = id;
      ++size_;
      return;
    }
    const uint32_t cap = cap_ * 2;  // 1 -> 2 -> 4 ...
    Id* grown = new Id[cap];
    if (cap_ > 1) {
      std::memcpy(grown, many_, sizeof(Id) * size_);
      delete[] many_;
    } else {
      grown[0] = one_;
    }
    many_ = grown;
    cap_ = cap;
    many_[size_++] = id;
  }

  // Removes one `id` (the last element takes its place); false if absent.
  bool remove(Id id) noexcept {
    for (uint32_t i = 0; i < size_; ++i) {
      if ((*this)[i] != id) continue;
      if (cap_ > 1) many_[i] = many_[size_ - 1]; else one_ = 0;
      --size_;
      return true;
    }
    return false;
  }

 private:
  union {
    Id one_ = 0;  // while cap_ == 1
    Id* many_;    // while cap_ > 1
  };
  uint32_t size_ = 0;
  uint32_t cap_ = 1;
};

}  // namespace herald::server
