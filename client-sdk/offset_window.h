// Which offsets of one channel (in one epoch) were seen: the highest contiguous offset
// plus the few above it that arrived early (priorities may reorder, protocol §10.6/§13).
// Pure data structure: no I/O, no clock.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace herald::client {

class OffsetWindow {
 public:
  // Everything at or below `base` counts as seen; nothing above it.
  void reset(uint64_t base) noexcept {
    contiguous_ = base;
    ahead_.clear();
  }

  // True if `offset` was seen (at or below contiguous(), or arrived early).
  bool contains(uint64_t offset) const noexcept {
    return offset <= contiguous_ || std::binary_search(ahead_.begin(), ahead_.end(), offset);
  }

  // Records `offset`; false if it was already seen. Advances contiguous() over
  // every early offset that now follows without a gap. `max_ahead` caps how many
  // early offsets are kept: past it the lowest gap is given up on (contiguous()
  // jumps to the lowest early offset) and give_ups() counts it.
  bool add(uint64_t offset, size_t max_ahead = 4096) {
    if (contains(offset)) return false;
    if (offset == contiguous_ + 1) {
      contiguous_ = offset;
      absorb();
      return true;
    }
    ahead_.insert(std::upper_bound(ahead_.begin(), ahead_.end(), offset), offset);
    if (ahead_.size() > max_ahead) {
      contiguous_ = ahead_.front();
      ahead_.erase(ahead_.begin());
      ++give_ups_;
      absorb();
    }
    return true;
  }

  uint64_t contiguous() const noexcept { return contiguous_; }
  // True while an offset above a gap is waiting for the gap to fill.
  bool has_gap() const noexcept { return !ahead_.empty(); }
  size_t ahead() const noexcept { return ahead_.size(); }
  uint64_t give_ups() const noexcept { return give_ups_; }

 private:
  void absorb() noexcept {
    size_t n = 0;
    while (n < ahead_.size() && ahead_[n] == contiguous_ + 1) contiguous_ = ahead_[n++];
    if (n > 0) ahead_.erase(ahead_.begin(), ahead_.begin() + static_cast<std::ptrdiff_t>(n));
  }

  uint64_t contiguous_ = 0;
  std::vector<uint64_t> ahead_;  // sorted, all > contiguous_ + 1
  uint64_t give_ups_ = 0;
};

}  // namespace herald::client
