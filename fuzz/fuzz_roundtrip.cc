// Fuzz target: encode/decode round trip. The input becomes a Publication's
// payload and the encoder's options; whatever the encoder produces must decode
// to the same bytes, whole and one byte at a time.
#include <cstdlib>
#include <vector>

#include "codec/frame_encoder.h"
#include "codec/message.h"
#include "codec/message_reader.h"

using namespace herald::codec;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  static CodecContext ctx;
  EncodeOptions eo;
  eo.checksum = data[0] & 1;
  eo.compress = data[0] & 2;
  eo.compress_threshold = (data[0] & 4) ? 0 : kDefaultCompressThreshold;
  eo.max_frame_size = 13 + data[1] * 4;  // small frames: many fragments
  eo.max_fragments = 1u << 16;
  eo.fragment_ref = data[2];
  herald::v1::Publication p;
  p.set_channel("fuzz");
  p.set_offset(size);
  p.set_payload(std::string(reinterpret_cast<const char*>(data + 3), size - 3));
  std::vector<uint8_t> payload;
  if (!ok(serialize_message(p, SIZE_MAX, payload))) std::abort();
  EncodedMessage em;
  Status s = encode_message(FrameType::kPublication, payload, eo, &ctx.compressor, em);
  if (!ok(s)) {
    if (s != Status::kMessageTooLarge) std::abort();
    return 0;
  }
  std::vector<uint8_t> stream;
  uint32_t seq = 0;
  append_frames(em, seq, stream);

  ReaderLimits rl;
  rl.reassembly.max_fragments = 1u << 16;
  rl.reassembly.max_buffered_bytes = kDefaultMaxMessageSize;
  for (int mode = 0; mode < 2; ++mode) {
    MessageReader reader(rl, &ctx);
    size_t got = 0;
    const size_t step = mode == 0 ? stream.size() : 1;
    for (size_t pos = 0; pos < stream.size(); pos += step) {
      std::span<const uint8_t> chunk(stream.data() + pos, std::min(step, stream.size() - pos));
      while (true) {
        InboundMessage m;
        DecodeResult r = reader.read(chunk, 0, m);
        chunk = chunk.subspan(r.consumed);
        if (r.status == Status::kNeedMore) break;
        if (!ok(r.status)) std::abort();
        if (m.type != FrameType::kPublication) std::abort();
        if (!std::equal(m.body.begin(), m.body.end(), payload.begin(), payload.end())) std::abort();
        ++got;
        if (chunk.empty()) break;
      }
    }
    if (got != 1 || !ok(reader.finish())) std::abort();
  }
  return 0;
}
