// Latency histogram of the load generator: log-linear buckets over nanoseconds (exact below
// 128 ns, then 128 linear buckets per power of two: at most 1/128 < 1 % relative error), up
// to 2^36 ns (68.7 s; larger values land in the last bucket, the exact max is kept).
// Mergeable (workers send theirs to the coordinator as text). No allocation per record.
#pragma once

#include <array>
#include <bit>
#include <cstdint>
#include <sstream>
#include <string>

namespace herald::bench {

class Histogram {
 public:
  static constexpr int kSubBits = 7;                  // 128 buckets per power of two
  static constexpr int kMaxExp = 36;                  // 2^36 ns = 68.7 s
  static constexpr size_t kBuckets = (kMaxExp - kSubBits + 2) << kSubBits;

  void record(uint64_t ns) noexcept {
    ++counts_[index(ns)];
    ++count_;
    if (ns > max_) max_ = ns;
  }
  void merge(const Histogram& o) noexcept {
    for (size_t i = 0; i < kBuckets; ++i) counts_[i] += o.counts_[i];
    count_ += o.count_;
    if (o.max_ > max_) max_ = o.max_;
  }
  uint64_t count() const noexcept { return count_; }
  uint64_t max() const noexcept { return max_; }

  // The value at quantile q (0..1): the middle of the bucket holding it, never above max;
  // 0 when empty.
  uint64_t quantile(double q) const noexcept {
    if (count_ == 0) return 0;
    uint64_t rank = static_cast<uint64_t>(q * static_cast<double>(count_));
    if (rank >= count_) rank = count_ - 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen > rank) {
        const uint64_t v = middle(i);
        return v < max_ ? v : max_;
      }
    }
    return max_;
  }

  // Bucket index of `ns` and the range [lowest(i), lowest(i+1)) it covers.
  static size_t index(uint64_t ns) noexcept {
    if (ns < (uint64_t{1} << kSubBits)) return static_cast<size_t>(ns);
    int e = 63 - std::countl_zero(ns);  // ns in [2^e, 2^(e+1))
    if (e > kMaxExp) return kBuckets - 1;
    const uint64_t sub = (ns >> (e - kSubBits)) & ((uint64_t{1} << kSubBits) - 1);
    return (static_cast<size_t>(e - kSubBits + 1) << kSubBits) + static_cast<size_t>(sub);
  }
  static uint64_t lowest(size_t i) noexcept {
    if (i < (size_t{1} << kSubBits)) return i;
    const int e = static_cast<int>(i >> kSubBits) + kSubBits - 1;
    const uint64_t sub = i & ((size_t{1} << kSubBits) - 1);
    return (uint64_t{1} << e) + (sub << (e - kSubBits));
  }
  static uint64_t middle(size_t i) noexcept {
    if (i < (size_t{1} << kSubBits)) return i;
    const uint64_t lo = lowest(i);
    const int e = static_cast<int>(i >> kSubBits) + kSubBits - 1;
    return lo + ((uint64_t{1} << (e - kSubBits)) >> 1);
  }

  // "count max i:n i:n ..." (non-empty buckets only), and back. parse returns false on
  // malformed text.
  std::string serialize() const {
    std::string s = std::to_string(count_) + " " + std::to_string(max_);
    for (size_t i = 0; i < kBuckets; ++i) {
      if (counts_[i] == 0) continue;
      s += ' ';
      s += std::to_string(i);
      s += ':';
      s += std::to_string(counts_[i]);
    }
    return s;
  }
  bool parse(const std::string& text) {
    std::istringstream in(text);
    if (!(in >> count_ >> max_)) return false;
    std::string item;
    while (in >> item) {
      const auto colon = item.find(':');
      if (colon == std::string::npos) return false;
      const size_t i = std::stoul(item.substr(0, colon));
      if (i >= kBuckets) return false;
      counts_[i] += std::stoull(item.substr(colon + 1));
    }
    return true;
  }

 private:
  std::array<uint64_t, kBuckets> counts_{};
  uint64_t count_ = 0;
  uint64_t max_ = 0;
};

}  // namespace herald::bench
