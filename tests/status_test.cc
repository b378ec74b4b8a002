// Status table: names, numbers and temporariness stay in sync with the wire.
#include "codec/status.h"

#include <gtest/gtest.h>

#include "codec/frame_header.h"

namespace herald::codec {
namespace {

TEST(Status, NumbersAreStable) {
  EXPECT_EQ(static_cast<int>(Status::kOk), 0);
  EXPECT_EQ(static_cast<int>(Status::kBadMagic), 100);
  EXPECT_EQ(static_cast<int>(Status::kFragmentedControl), 200);
  EXPECT_EQ(static_cast<int>(Status::kUnsupportedCompression), 300);
  EXPECT_EQ(static_cast<int>(Status::kMalformedMessage), 400);
  EXPECT_EQ(static_cast<int>(Status::kHandshakeTimeout), 500);
  EXPECT_EQ(static_cast<int>(Status::kSlowConsumer), 600);
}

TEST(Status, NamesAndDescriptions) {
  EXPECT_EQ(to_string(Status::kChecksumMismatch), "kChecksumMismatch");
  EXPECT_EQ(to_string(static_cast<Status>(9999)), "kUnknownStatus");
  EXPECT_FALSE(describe(Status::kFrameTooLarge).empty());
  EXPECT_TRUE(is_temporary(Status::kSlowConsumer));
  EXPECT_FALSE(is_temporary(Status::kBadMagic));
  EXPECT_TRUE(is_known_status(106));
  EXPECT_FALSE(is_known_status(107 + 1000));
}

TEST(FrameTypes, ControlAndNames) {
  EXPECT_TRUE(is_control_frame(FrameType::kPing));
  EXPECT_FALSE(is_control_frame(FrameType::kPublication));
  EXPECT_FALSE(is_control_frame(FrameType::kPublish));
  EXPECT_EQ(to_string(FrameType::kSubscribeOk), "SubscribeOk");
  EXPECT_TRUE(is_known_frame_type(0x020));
  EXPECT_FALSE(is_known_frame_type(0x0FF));
}

}  // namespace
}  // namespace herald::codec
