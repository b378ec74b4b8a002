// A token bucket: how many events per second are let through, with a burst.
// Sans-IO (time is a parameter) and not thread-safe: one owner thread.
#pragma once

#include <algorithm>
#include <cstdint>

namespace herald::server {

class TokenBucket {
 public:
  // `rate` tokens per second refill a bucket of `burst` tokens (at least 1), full at
  // `now_us` (monotonic microseconds). rate 0 = no limit: take() is always true.
  TokenBucket(uint32_t rate, uint32_t burst, uint64_t now_us) noexcept
      : rate_(rate), burst_micro_(uint64_t{std::max<uint32_t>(burst, 1)} * kMicro), micro_(burst_micro_), last_us_(now_us) {}

  // Takes one token if there is one at `now_us`; false when the rate is exceeded.
  // A clock that goes backwards refills nothing.
  bool take(uint64_t now_us) noexcept {
    if (rate_ == 0) return true;
    if (now_us > last_us_) {
      // Tokens in millionths: rate * elapsed_us is exact for any elapsed time below
      // about 58 years at 10^4/s, and the bucket caps it anyway.
      const uint64_t elapsed = std::min<uint64_t>(now_us - last_us_, burst_micro_ / rate_ + 1);
      micro_ = std::min(burst_micro_, micro_ + elapsed * rate_);
      last_us_ = now_us;
    }
    if (micro_ < kMicro) return false;
    micro_ -= kMicro;
    return true;
  }

 private:
  static constexpr uint64_t kMicro = 1'000'000;  // one token
  uint32_t rate_;
  uint64_t burst_micro_;
  uint64_t micro_;
  uint64_t last_us_;
};

}  // namespace herald::server
