// Inbound pipeline: decoder -> reassembler -> decompressor.
#include "codec/message_reader.h"

#include <new>

namespace herald::codec {
namespace {

uint32_t clamp_u32(size_t n) noexcept { return n > UINT32_MAX ? UINT32_MAX : static_cast<uint32_t>(n); }

}  // namespace

MessageReader::MessageReader(const ReaderLimits& limits, CodecContext* context) noexcept
    : context_(context),
      decoder_(limits.decoder),
      reassembly_limits_(limits.reassembly),
      max_message_size_(clamp_u32(limits.max_message_size)),
      compression_(limits.compression) {}

void MessageReader::set_limits(const ReaderLimits& limits) noexcept {
  max_message_size_ = clamp_u32(limits.max_message_size);
  compression_ = limits.compression;
  decoder_.set_limits(limits.decoder);
  reassembly_limits_ = limits.reassembly;
  if (reassembly_ != nullptr) reassembly_->reassembler.set_limits(limits.reassembly);
}

ReaderLimits MessageReader::limits() const noexcept {
  ReaderLimits l;
  l.decoder = decoder_.limits();
  l.reassembly = reassembly_limits_;
  l.max_message_size = max_message_size_;
  l.compression = compression_;
  return l;
}

Status MessageReader::fail(Status s, uint64_t at) noexcept {
  if (ok(error_)) {
    error_ = s;
    error_offset_ = at;
  }
  return error_;
}

Status MessageReader::finish_message(FrameType type, uint16_t flags, std::span<const uint8_t> body,
                                     InboundMessage& out) noexcept {
  out.type = type;
  out.flags = flags;
  if (flags & kFlagCompressed) {
    if (!compression_ || context_ == nullptr) return Status::kUnsupportedCompression;
    DecompressLimits dl;
    dl.max_output = max_message_size_;
    dl.require_content_size = true;  // §6.2: the receiver sizes its output from the header
    Status s = context_->decompressor.decompress(body, dl, context_->scratch);
    if (!ok(s)) return s;
    out.body = context_->scratch;
    return Status::kOk;
  }
  if (body.size() > max_message_size_) return Status::kMessageTooLarge;
  out.body = body;
  return Status::kOk;
}

DecodeResult MessageReader::read(std::span<const uint8_t> in, uint64_t now_ms, InboundMessage& out) noexcept {
  if (!ok(error_)) return {0, error_};
  // The message completed by the last call (if any) is no longer needed.
  if (reassembly_ != nullptr && reassembly_->reassembler.partial_messages() == 0) reassembly_.reset();
  size_t consumed = 0;
  for (;;) {
    Frame frame;
    DecodeResult r = decoder_.decode(in.subspan(consumed), frame);
    consumed += r.consumed;
    if (r.status == Status::kNeedMore) return {consumed, Status::kNeedMore};
    if (!ok(r.status)) return {consumed, fail(r.status, decoder_.error_offset())};

    if (context_ != nullptr && context_->inbound_tally != nullptr) {
      context_->inbound_tally->add(frame.header.type, kHeaderSize + uint64_t{frame.header.length});
    }
    const uint64_t frame_offset = decoder_.frame_offset();
    out.sequence = frame.header.sequence;
    out.frame_offset = frame_offset;
    if (!frame.header.fragment()) {
      Status s = finish_message(frame.header.type, frame.header.flags, frame.payload, out);
      if (!ok(s)) return {consumed, fail(s, frame_offset)};
      return {consumed, Status::kOk};
    }
    if (reassembly_ == nullptr) {
      reassembly_.reset(new (std::nothrow) Reassembly(reassembly_limits_));
      if (reassembly_ == nullptr) return {consumed, fail(Status::kReassemblyMemoryExceeded, frame_offset)};
    }
    ReassembledMessage& whole = reassembly_->message;
    Status s = reassembly_->reassembler.add(frame, now_ms, whole);
    if (s == Status::kNeedMore) continue;  // keep reading: the message is not whole yet
    if (!ok(s)) return {consumed, fail(s, frame_offset)};
    s = finish_message(whole.type, whole.flags | (frame.header.flags & kFlagChecksummed), whole.body, out);
    if (!ok(s)) return {consumed, fail(s, frame_offset)};
    return {consumed, Status::kOk};
  }
}

Status MessageReader::finish() noexcept {
  if (!ok(error_)) return error_;
  Status s = decoder_.finish();
  if (!ok(s)) return fail(s, decoder_.error_offset());
  return Status::kOk;
}

Status MessageReader::expire(uint64_t now_ms) noexcept {
  if (!ok(error_) || reassembly_ == nullptr) return error_;
  Status s = reassembly_->reassembler.expire(now_ms);
  if (!ok(s)) return fail(s, decoder_.stream_offset());
  return Status::kOk;
}

}  // namespace herald::codec
