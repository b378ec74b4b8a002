// TokenBucket: burst, refill at the rate, no limit at rate 0, a clock going backwards.
#include "server/token_bucket.h"

#include <gtest/gtest.h>

namespace herald::server {
namespace {

TEST(TokenBucket, BurstThenRefillAtTheRate) {
  TokenBucket b(10, 3, 1'000'000);
  EXPECT_TRUE(b.take(1'000'000));
  EXPECT_TRUE(b.take(1'000'000));
  EXPECT_TRUE(b.take(1'000'000));
  EXPECT_FALSE(b.take(1'000'000));
  EXPECT_FALSE(b.take(1'099'000));  // 0.99 of a token after 99 ms at 10/s
  EXPECT_TRUE(b.take(1'100'000));   // one token after 100 ms
  EXPECT_FALSE(b.take(1'100'000));
  // A long pause refills only up to the burst.
  const uint64_t later = 1'100'000 + 3600ull * 1'000'000;
  EXPECT_TRUE(b.take(later));
  EXPECT_TRUE(b.take(later));
  EXPECT_TRUE(b.take(later));
  EXPECT_FALSE(b.take(later));
}

TEST(TokenBucket, RateZeroIsNoLimit) {
  TokenBucket b(0, 1, 0);
  for (int i = 0; i < 100000; ++i) ASSERT_TRUE(b.take(0));
}

TEST(TokenBucket, ClockGoingBackwardsRefillsNothing) {
  TokenBucket b(1000, 1, 5'000'000);
  EXPECT_TRUE(b.take(5'000'000));
  EXPECT_FALSE(b.take(4'000'000));
  EXPECT_FALSE(b.take(5'000'500));  // half a token since the last real time
  EXPECT_TRUE(b.take(5'001'000));
}

TEST(TokenBucket, HighRatesAndLongGapsDoNotOverflow) {
  TokenBucket b(4'000'000'000u, 4'000'000'000u, 0);
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(b.take(0));
  EXPECT_TRUE(b.take(UINT64_MAX / 2));
}

}  // namespace
}  // namespace herald::server
