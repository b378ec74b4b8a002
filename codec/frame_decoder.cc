// Incremental frame decoder. Each input byte is looked at once on its way into
// the header buffer or the body (or not at all when the whole body is in the
// caller's input), which keeps byte-at-a-time feeding linear.
#include "codec/frame_decoder.h"

#include <algorithm>
#include <cstring>

#include "codec/checksum.h"

namespace herald::codec {
namespace {

// A body buffer larger than this is freed after its frame instead of being kept
// for the next one: per-connection memory matters more than one allocation.
constexpr size_t kKeepBodyCapacity = 4096;

constexpr uint8_t kMagicBytes[4] = {0x48, 0x52, 0x4C, 0x44};

}  // namespace

void FrameDecoder::reset() noexcept {
  error_ = Status::kOk;
  error_offset_ = 0;
  stream_offset_ = 0;
  frame_start_ = 0;
  next_sequence_ = 0;
  header_have_ = 0;
  header_done_ = false;
  release_body_ = false;
  std::vector<uint8_t>().swap(body_);
}

DecodeResult FrameDecoder::fail(Status s, uint64_t at, size_t consumed) noexcept {
  error_ = s;
  error_offset_ = at;
  stream_offset_ += consumed;
  header_have_ = 0;
  header_done_ = false;
  std::vector<uint8_t>().swap(body_);
  return {consumed, s};
}

Status FrameDecoder::check_header(size_t* error_at) noexcept {
  Status s = decode_header(std::span<const uint8_t, kHeaderSize>(header_buf_, kHeaderSize), header_, error_at);
  if (!ok(s)) return s;
  if (limits_.version != 0 && header_.version != limits_.version) {
    *error_at = 4;
    return Status::kVersionMismatch;
  }
  if (header_.fragment() && is_control_frame(header_.type)) {
    *error_at = 6;
    return Status::kFragmentedControl;
  }
  if (header_.length > limits_.max_frame_size) {
    *error_at = 8;
    return Status::kFrameTooLarge;
  }
  if (limits_.check_sequence && header_.sequence != next_sequence_) {
    *error_at = 12;
    return Status::kBadSequence;
  }
  const size_t min_body =
      (header_.checksummed() ? kChecksumSize : 0) + (header_.fragment() ? kFragmentPrefixSize : 0);
  if (header_.length < min_body) {
    *error_at = 8;
    return Status::kBodyTooShort;
  }
  if (limits_.require_checksum && !header_.checksummed()) {
    *error_at = 6;
    return Status::kChecksumRequired;
  }
  return Status::kOk;
}

Status FrameDecoder::finish_body(std::span<const uint8_t> body, size_t* error_at, Frame& out) noexcept {
  size_t payload_len = body.size();
  if (header_.checksummed()) {
    payload_len -= kChecksumSize;
    const uint32_t want = get_u32(body.data() + payload_len);
    if (crc32c(body.first(payload_len)) != want) {
      *error_at = kHeaderSize + payload_len;
      return Status::kChecksumMismatch;
    }
  }
  out.header = header_;
  out.payload = body.first(payload_len);
  header_have_ = 0;
  header_done_ = false;
  return Status::kOk;
}

DecodeResult FrameDecoder::decode(std::span<const uint8_t> in, Frame& out) noexcept {
  if (!ok(error_)) return {0, error_};
  if (release_body_) {
    release_body_ = false;
    if (body_.capacity() > kKeepBodyCapacity) {
      std::vector<uint8_t>().swap(body_);
    } else {
      body_.clear();
    }
  }
  size_t pos = 0;
  size_t error_at = 0;

  if (!header_done_) {
    if (header_have_ == 0) frame_start_ = stream_offset_;
    const size_t take = std::min(kHeaderSize - header_have_, in.size());
    if (take == 0) return {0, Status::kNeedMore};
    std::memcpy(header_buf_ + header_have_, in.data(), take);
    // Reject a wrong magic as soon as its first wrong byte arrives, so a junk
    // stream fails at once instead of after 16 bytes.
    const size_t magic_end = std::min<size_t>(header_have_ + take, sizeof kMagicBytes);
    if (header_have_ < magic_end &&
        std::memcmp(header_buf_ + header_have_, kMagicBytes + header_have_, magic_end - header_have_) != 0) {
      return fail(Status::kBadMagic, frame_start_, take);
    }
    header_have_ += take;
    pos += take;
    if (header_have_ < kHeaderSize) {
      stream_offset_ += pos;
      return {pos, Status::kNeedMore};
    }
    Status s = check_header(&error_at);
    if (!ok(s)) return fail(s, frame_start_ + error_at, pos);
    header_done_ = true;
    ++next_sequence_;  // wraps modulo 2^32 as the spec says
  }

  const size_t need = header_.length;
  const size_t avail = in.size() - pos;
  if (body_.empty() && avail >= need) {
    // Whole body is in the caller's buffer: hand it out without copying.
    Status s = finish_body(in.subspan(pos, need), &error_at, out);
    pos += need;
    if (!ok(s)) return fail(s, frame_start_ + error_at, pos);
    stream_offset_ += pos;
    return {pos, Status::kOk};
  }
  // The length was checked against the limit above, so this allocation is bounded.
  if (body_.capacity() < need) body_.reserve(need);
  const size_t take = std::min(need - body_.size(), avail);
  body_.insert(body_.end(), in.data() + pos, in.data() + pos + take);
  pos += take;
  if (body_.size() < need) {
    stream_offset_ += pos;
    return {pos, Status::kNeedMore};
  }
  Status s = finish_body(body_, &error_at, out);
  if (!ok(s)) return fail(s, frame_start_ + error_at, pos);
  release_body_ = true;
  stream_offset_ += pos;
  return {pos, Status::kOk};
}

Status FrameDecoder::finish() noexcept {
  if (!ok(error_)) return error_;
  if (header_have_ > 0 || header_done_) {
    fail(Status::kTruncatedFrame, stream_offset_, 0);
    return error_;
  }
  return Status::kOk;
}

}  // namespace herald::codec
