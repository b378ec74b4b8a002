// Incremental frame decoder. Each input byte is looked at once on its way into
// the header buffer or the body (or not at all when the whole body is in the
// caller's input), which keeps byte-at-a-time feeding linear.
#include "codec/frame_decoder.h"

#include <algorithm>
#include <cstring>

#include "codec/checksum.h"

namespace herald::codec {
namespace {

constexpr uint8_t kMagicBytes[4] = {0x48, 0x52, 0x4C, 0x44};

}  // namespace

void FrameDecoder::reset() noexcept {
  error_ = Status::kOk;
  error_offset_ = 0;
  stream_offset_ = 0;
  frame_start_ = 0;
  next_sequence_ = 0;
  release_partial_ = false;
  partial_.reset();
}

DecodeResult FrameDecoder::fail(Status s, uint64_t at, size_t consumed) noexcept {
  error_ = s;
  error_offset_ = at;
  stream_offset_ += consumed;
  release_partial_ = false;
  partial_.reset();
  return {consumed, s};
}

Status FrameDecoder::check_header(Partial& p, size_t* error_at) noexcept {
  Status s = decode_header(std::span<const uint8_t, kHeaderSize>(p.header_buf, kHeaderSize), p.header, error_at);
  if (!ok(s)) return s;
  const FrameHeader& h = p.header;
  if (limits_.version != 0 && h.version != limits_.version) {
    *error_at = 4;
    return Status::kVersionMismatch;
  }
  if (h.fragment() && is_control_frame(h.type)) {
    *error_at = 6;
    return Status::kFragmentedControl;
  }
  if (h.length > limits_.max_frame_size) {
    *error_at = 8;
    return Status::kFrameTooLarge;
  }
  if (limits_.check_sequence && h.sequence != next_sequence_) {
    *error_at = 12;
    return Status::kBadSequence;
  }
  const size_t min_body = (h.checksummed() ? kChecksumSize : 0) + (h.fragment() ? kFragmentPrefixSize : 0);
  if (h.length < min_body) {
    *error_at = 8;
    return Status::kBodyTooShort;
  }
  if (limits_.require_checksum && !h.checksummed()) {
    *error_at = 6;
    return Status::kChecksumRequired;
  }
  return Status::kOk;
}

Status FrameDecoder::finish_body(Partial& p, std::span<const uint8_t> body, size_t* error_at, Frame& out) noexcept {
  size_t payload_len = body.size();
  if (p.header.checksummed()) {
    payload_len -= kChecksumSize;
    const uint32_t want = get_u32(body.data() + payload_len);
    if (crc32c(body.first(payload_len)) != want) {
      *error_at = kHeaderSize + payload_len;
      return Status::kChecksumMismatch;
    }
  }
  out.header = p.header;
  out.payload = body.first(payload_len);
  p.header_have = 0;
  p.header_done = false;
  return Status::kOk;
}

DecodeResult FrameDecoder::decode(std::span<const uint8_t> in, Frame& out) noexcept {
  if (!ok(error_)) return {0, error_};
  if (release_partial_) {
    release_partial_ = false;
    partial_.reset();
  }
  if (partial_ != nullptr) {
    DecodeResult r = decode_into(*partial_, in, out);
    // A completed frame's payload may point into partial_->body: freed on the next call.
    if (r.status == Status::kOk) release_partial_ = true;
    return r;
  }
  // Nothing buffered: decode on the stack; keep the state only if the frame is incomplete.
  Partial local;
  DecodeResult r = decode_into(local, in, out);
  if (r.status == Status::kNeedMore && (local.header_have > 0 || local.header_done)) {
    // Throws std::bad_alloc like the body buffer's allocation (this function is noexcept).
    partial_ = std::make_unique<Partial>(std::move(local));
  }
  // kOk from the stack state always points into `in`: a body that was not whole in
  // `in` is still incomplete when the call returns.
  return r;
}

DecodeResult FrameDecoder::decode_into(Partial& p, std::span<const uint8_t> in, Frame& out) noexcept {
  size_t pos = 0;
  size_t error_at = 0;

  if (!p.header_done) {
    if (p.header_have == 0) frame_start_ = stream_offset_;
    const size_t take = std::min(kHeaderSize - p.header_have, in.size());
    if (take == 0) return {0, Status::kNeedMore};
    std::memcpy(p.header_buf + p.header_have, in.data(), take);
    // Reject a wrong magic as soon as its first wrong byte arrives, so a junk
    // stream fails at once instead of after 16 bytes.
    const size_t magic_end = std::min<size_t>(p.header_have + take, sizeof kMagicBytes);
    if (p.header_have < magic_end &&
        std::memcmp(p.header_buf + p.header_have, kMagicBytes + p.header_have, magic_end - p.header_have) != 0) {
      return fail(Status::kBadMagic, frame_start_, take);
    }
    p.header_have += take;
    pos += take;
    if (p.header_have < kHeaderSize) {
      stream_offset_ += pos;
      return {pos, Status::kNeedMore};
    }
    Status s = check_header(p, &error_at);
    if (!ok(s)) return fail(s, frame_start_ + error_at, pos);
    p.header_done = true;
    ++next_sequence_;  // wraps modulo 2^32 as the spec says
  }

  const size_t need = p.header.length;
  const size_t avail = in.size() - pos;
  if (p.body.empty() && avail >= need) {
    // Whole body is in the caller's buffer: hand it out without copying.
    Status s = finish_body(p, in.subspan(pos, need), &error_at, out);
    pos += need;
    if (!ok(s)) return fail(s, frame_start_ + error_at, pos);
    stream_offset_ += pos;
    return {pos, Status::kOk};
  }
  // The length was checked against the limit above, so this allocation is bounded.
  if (p.body.capacity() < need) p.body.reserve(need);
  const size_t take = std::min(need - p.body.size(), avail);
  p.body.insert(p.body.end(), in.data() + pos, in.data() + pos + take);
  pos += take;
  if (p.body.size() < need) {
    stream_offset_ += pos;
    return {pos, Status::kNeedMore};
  }
  Status s = finish_body(p, p.body, &error_at, out);
  if (!ok(s)) return fail(s, frame_start_ + error_at, pos);
  stream_offset_ += pos;
  return {pos, Status::kOk};
}

Status FrameDecoder::finish() noexcept {
  if (!ok(error_)) return error_;
  if (partial_ != nullptr && (partial_->header_have > 0 || partial_->header_done)) {
    fail(Status::kTruncatedFrame, stream_offset_, 0);
    return error_;
  }
  return Status::kOk;
}

}  // namespace herald::codec
