// Fuzz target: the message layer. The first byte picks a frame type, the rest
// is its body. A body that parses must serialize and parse again to the same
// message.
#include <cstdlib>
#include <vector>

#include "codec/message.h"

using namespace herald::codec;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  static const uint16_t kTypes[] = {0x001, 0x002, 0x003, 0x004, 0x005, 0x010, 0x011, 0x012, 0x013,
                                    0x020, 0x021, 0x022, 0x023, 0x024, 0x030, 0x031, 0x032, 0x033};
  const auto type = static_cast<FrameType>(kTypes[data[0] % (sizeof kTypes / sizeof kTypes[0])]);
  std::unique_ptr<google::protobuf::Message> m;
  Status s = decode_message(type, std::span<const uint8_t>(data + 1, size - 1), 4096, m);
  if (size - 1 > 4096 && s != Status::kMessageTooLarge) std::abort();
  if (!ok(s)) {
    if (s != Status::kMalformedMessage && s != Status::kMessageTooLarge) std::abort();
    return 0;
  }
  std::vector<uint8_t> again;
  if (!ok(serialize_message(*m, SIZE_MAX, again))) std::abort();
  std::unique_ptr<google::protobuf::Message> m2;
  if (!ok(decode_message(type, again, SIZE_MAX, m2))) std::abort();
  if (m2->SerializeAsString() != m->SerializeAsString()) std::abort();
  return 0;
}
