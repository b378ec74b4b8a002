// Frame encoder: builds a message's frame bodies once; recipients add headers.
#include "codec/frame_encoder.h"

#include <algorithm>

#include "codec/checksum.h"
#include "codec/reassembler.h"

namespace herald::codec {
namespace {

void add_frame_header(uint8_t header[12], const EncodeOptions& options, FrameType type, uint16_t flags,
                      uint32_t body_length) {
  put_u32(header, kMagic);
  put_u16(header + 4, options.version);
  put_u16(header + 6, static_cast<uint16_t>(flags | static_cast<uint16_t>(type)));
  put_u32(header + 8, body_length);
}

}  // namespace

Status encode_message(FrameType type, std::span<const uint8_t> payload, const EncodeOptions& options,
                      Compressor* compressor, EncodedMessage& out) noexcept {
  out.count_ = 0;
  out.more_.clear();
  out.bytes_.clear();
  out.borrowed_ = nullptr;
  out.type_ = type;
  out.compressed_ = false;
  if (payload.size() > options.max_message_size) return Status::kMessageTooLarge;

  std::span<const uint8_t> body = payload;
  std::vector<uint8_t> compressed;
  uint16_t flags = options.checksum ? kFlagChecksummed : 0;
  if (options.compress && payload.size() >= options.compress_threshold) {
    if (compressor == nullptr) return Status::kUnsupportedCompression;
    CompressOptions co;
    co.level = options.level;
    co.dictionary_id = options.dictionary_id;
    Status s = compressor->compress(payload, co, compressed);
    if (!ok(s)) return s;
    // Only worth it when it saves bytes; the receiver accepts either form.
    if (compressed.size() < payload.size()) {
      body = compressed;
      flags |= kFlagCompressed;
      out.compressed_ = true;
    }
  }

  const size_t trailer = options.checksum ? kChecksumSize : 0;
  if (body.size() + trailer <= options.max_frame_size) {
    size_t length = body.size();
    if (options.borrow_payload && !options.checksum && !out.compressed_) {
      out.borrowed_ = payload.data();  // the body is the payload: nothing to copy
    } else {
      out.bytes_.reserve(body.size() + trailer);
      out.bytes_.assign(body.begin(), body.end());
      if (options.checksum) {
        out.bytes_.resize(body.size() + kChecksumSize);
        put_u32(out.bytes_.data() + body.size(), crc32c(body));
      }
      length = out.bytes_.size();
    }
    EncodedMessage::FrameInfo f{};
    add_frame_header(f.header, options, type, flags, static_cast<uint32_t>(length));
    f.body_offset = 0;
    f.body_length = static_cast<uint32_t>(length);
    out.add_frame(f);
    return Status::kOk;
  }

  // Fragment: control frames never are (the receiver would reject them).
  const size_t overhead = kFragmentPrefixSize + trailer;
  if (is_control_frame(type) || options.max_frame_size <= overhead) {
    out.compressed_ = false;
    return Status::kMessageTooLarge;
  }
  const size_t piece = options.max_frame_size - overhead;
  const size_t count = (body.size() + piece - 1) / piece;
  if (count > options.max_fragments || count > 0xFFFF) {
    out.compressed_ = false;
    return Status::kMessageTooLarge;
  }
  flags |= kFlagFragment;
  out.more_.reserve(count - 1);
  out.bytes_.reserve(body.size() + count * overhead);
  for (size_t i = 0; i < count; ++i) {
    const size_t start = i * piece;
    const size_t len = std::min(piece, body.size() - start);
    const size_t body_offset = out.bytes_.size();
    FragmentPrefix prefix;
    prefix.ref = options.fragment_ref;
    prefix.index = static_cast<uint16_t>(i);
    prefix.last = (i + 1 == count);
    uint8_t prefix_bytes[kFragmentPrefixSize];
    encode_fragment_prefix(prefix, prefix_bytes);
    out.bytes_.insert(out.bytes_.end(), prefix_bytes, prefix_bytes + kFragmentPrefixSize);
    out.bytes_.insert(out.bytes_.end(), body.begin() + static_cast<ptrdiff_t>(start),
                      body.begin() + static_cast<ptrdiff_t>(start + len));
    if (options.checksum) {
      const uint32_t crc =
          crc32c(std::span<const uint8_t>(out.bytes_.data() + body_offset, kFragmentPrefixSize + len));
      uint8_t t[kChecksumSize];
      put_u32(t, crc);
      out.bytes_.insert(out.bytes_.end(), t, t + kChecksumSize);
    }
    EncodedMessage::FrameInfo f{};
    const size_t body_length = out.bytes_.size() - body_offset;
    add_frame_header(f.header, options, type, flags, static_cast<uint32_t>(body_length));
    f.body_offset = static_cast<uint32_t>(body_offset);
    f.body_length = static_cast<uint32_t>(body_length);
    out.add_frame(f);
  }
  return Status::kOk;
}

void append_frames(const EncodedMessage& message, uint32_t& next_sequence, std::vector<uint8_t>& out) {
  // Grow geometrically: reserving exactly what this message needs would make a caller
  // that appends many messages to one buffer reallocate (and copy) on every call.
  const size_t need = out.size() + message.wire_size();
  if (need > out.capacity()) out.reserve(std::max(need, out.capacity() * 2));
  for (size_t i = 0; i < message.frame_count(); ++i) {
    uint8_t header[kHeaderSize];
    message.write_header(i, next_sequence++, header);
    out.insert(out.end(), header, header + kHeaderSize);
    const auto body = message.body(i);
    out.insert(out.end(), body.begin(), body.end());
  }
}

}  // namespace herald::codec
