// Fuzz target: the whole inbound pipeline (frame decoder, reassembler, zstd,
// message parsing) of one connection. The first bytes choose limits and the
// chunking; the rest is the stream. Oracle: the outcome (messages, final status
// and its offset) must not depend on how the stream was chunked, and memory
// held for partial input must stay within the limits.
#include <cstdlib>
#include <vector>

#include "codec/message.h"
#include "codec/message_reader.h"

using namespace herald::codec;

namespace {

struct Outcome {
  std::vector<std::vector<uint8_t>> bodies;
  std::vector<FrameType> types;
  Status status = Status::kOk;
  uint64_t offset = 0;
  bool operator==(const Outcome&) const = default;
};

ReaderLimits limits_from(uint8_t knobs) {
  ReaderLimits l;
  l.decoder.max_frame_size = (knobs & 1) ? 64 : kDefaultMaxFrameSize;
  l.decoder.require_checksum = knobs & 2;
  l.decoder.check_sequence = !(knobs & 4);
  l.compression = !(knobs & 8);
  l.max_message_size = (knobs & 16) ? 256 : 64 * 1024;
  l.reassembly.max_message_size = l.max_message_size;
  l.reassembly.max_fragments = (knobs & 32) ? 4 : 128;
  l.reassembly.max_partial_messages = (knobs & 64) ? 1 : 4;
  l.reassembly.max_buffered_bytes = 4096;
  return l;
}

Outcome run(const ReaderLimits& limits, CodecContext& ctx, std::span<const uint8_t> stream, uint32_t chunk_seed) {
  Outcome o;
  MessageReader reader(limits, &ctx);
  size_t pos = 0;
  uint64_t now = 0;
  uint32_t x = chunk_seed | 1;
  while (ok(o.status) && pos < stream.size()) {
    size_t n = stream.size() - pos;
    if (chunk_seed != 0) {
      x ^= x << 13;
      x ^= x >> 17;
      x ^= x << 5;
      n = std::min<size_t>(n, 1 + x % 7);
    }
    std::span<const uint8_t> chunk = stream.subspan(pos, n);
    pos += n;
    while (true) {
      InboundMessage m;
      DecodeResult r = reader.read(chunk, now, m);
      if (r.consumed > chunk.size()) std::abort();
      chunk = chunk.subspan(r.consumed);
      if (reader.buffered_bytes() > limits.decoder.max_frame_size + kHeaderSize + limits.reassembly.max_buffered_bytes)
        std::abort();
      if (r.status == Status::kNeedMore) break;
      if (!ok(r.status)) {
        o.status = r.status;
        o.offset = reader.error_offset();
        if (reader.read(chunk, now, m).status != r.status) std::abort();  // sticky
        break;
      }
      if (m.body.size() > limits.max_message_size) std::abort();
      o.types.push_back(m.type);
      o.bodies.emplace_back(m.body.begin(), m.body.end());
      std::unique_ptr<google::protobuf::Message> msg;
      (void)decode_message(m.type, m.body, limits.max_message_size, msg);
      if (chunk.empty()) break;
    }
  }
  if (ok(o.status)) {
    o.status = reader.finish();
    o.offset = reader.error_offset();
  }
  return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  const ReaderLimits limits = limits_from(data[0]);
  const uint32_t seed = (uint32_t{data[1]} << 8) | data[2];
  std::span<const uint8_t> stream(data + 3, size - 3);
  static CodecContext ctx;
  const Outcome whole = run(limits, ctx, stream, 0);
  const Outcome chunked = run(limits, ctx, stream, seed);
  if (!(whole == chunked)) std::abort();
  return 0;
}
