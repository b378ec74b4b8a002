// Fragment prefix and Reassembler: every rule is checked before a piece is copied.
// Sans-IO: no sockets, no clock, no logging; depends only on frame_decoder.h's declarations.
#include "codec/reassembler.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <utility>

namespace herald::codec {
namespace {

// A clock that steps back must not make a message look ancient (unsigned wrap).
uint64_t age_ms(uint64_t started_ms, uint64_t now_ms) noexcept {
  return now_ms > started_ms ? now_ms - started_ms : 0;
}

}  // namespace

Status parse_fragment_prefix(std::span<const uint8_t> payload, FragmentPrefix& out) noexcept {
  if (payload.size() < kFragmentPrefixSize) return Status::kBodyTooShort;
  const uint8_t* p = payload.data();
  const uint16_t fflags = get_u16(p + 6);
  if (fflags & static_cast<uint16_t>(~kFragmentLast)) return Status::kBadFragmentHeader;
  out.ref = get_u32(p);
  out.index = get_u16(p + 4);
  out.last = (fflags & kFragmentLast) != 0;
  return Status::kOk;
}

void encode_fragment_prefix(const FragmentPrefix& p, uint8_t out[kFragmentPrefixSize]) noexcept {
  put_u32(out, p.ref);
  put_u16(out + 4, p.index);
  put_u16(out + 6, p.last ? kFragmentLast : uint16_t{0});
}

Status Reassembler::fail(Status s) noexcept {
  error_ = s;
  // Swap with an empty vector so the slot array's capacity goes too, not just the bodies.
  std::vector<Slot>().swap(slots_);
  buffered_ = 0;
  return s;
}

bool Reassembler::any_expired(uint64_t now_ms) const noexcept {
  for (const Slot& s : slots_) {
    if (age_ms(s.started_ms, now_ms) > limits_.timeout_ms) return true;
  }
  return false;
}

Reassembler::Slot* Reassembler::find(uint32_t ref) noexcept {
  for (Slot& s : slots_) {
    if (s.ref == ref) return &s;
  }
  return nullptr;
}

void Reassembler::remove(Slot& slot) noexcept {
  buffered_ -= slot.bytes;
  // Unordered: move the last slot into the hole (moving the piece list copies no bytes).
  Slot* last = &slots_.back();
  if (&slot != last) slot = std::move(*last);
  slots_.pop_back();
}

Status Reassembler::add(const Frame& frame, uint64_t now_ms, ReassembledMessage& out) noexcept {
  if (error_ != Status::kOk) return error_;
  if (!frame.header.fragment()) return fail(Status::kInternal);
  if (any_expired(now_ms)) return fail(Status::kReassemblyTimeout);
  if (is_control_frame(frame.header.type)) return fail(Status::kFragmentedControl);

  FragmentPrefix prefix;
  if (Status s = parse_fragment_prefix(frame.payload, prefix); s != Status::kOk) return fail(s);
  const std::span<const uint8_t> piece = frame.payload.subspan(kFragmentPrefixSize);
  const uint16_t c_flag = frame.header.flags & kFlagCompressed;

  Slot* slot = find(prefix.ref);
  if (prefix.index == 0) {
    if (slot != nullptr) return fail(Status::kFragmentOutOfOrder);  // duplicate start
  } else {
    if (slot == nullptr || prefix.index != slot->next_index) return fail(Status::kFragmentOutOfOrder);
    if (frame.header.type != slot->type || c_flag != slot->flags) return fail(Status::kFragmentMismatch);
  }
  if (piece.empty() && !prefix.last) return fail(Status::kEmptyFragment);
  if (uint32_t{prefix.index} + 1 > limits_.max_fragments) return fail(Status::kTooManyFragments);
  if (slot == nullptr && !prefix.last && slots_.size() >= limits_.max_partial_messages) {
    return fail(Status::kTooManyPartialMessages);
  }
  const size_t held = slot != nullptr ? slot->bytes : 0;
  if (piece.size() > limits_.max_message_size || held > limits_.max_message_size - piece.size()) {
    return fail(Status::kReassemblyTooLarge);
  }
  if (piece.size() > limits_.max_buffered_bytes || buffered_ > limits_.max_buffered_bytes - piece.size()) {
    return fail(Status::kReassemblyMemoryExceeded);
  }

  try {
    if (slot == nullptr && prefix.last) {
      // One-fragment message: no slot, one exactly sized copy straight to the caller.
      out.body = std::vector<uint8_t>(piece.begin(), piece.end());
      out.type = frame.header.type;
      out.flags = c_flag;
      return Status::kOk;
    }
    if (slot == nullptr) {
      slot = &slots_.emplace_back();
      slot->ref = prefix.ref;
      slot->type = frame.header.type;
      slot->flags = c_flag;
      slot->started_ms = now_ms;
    }
    if (!prefix.last) {
      slot->pieces.emplace_back(piece.begin(), piece.end());
      slot->bytes += piece.size();
      buffered_ += piece.size();
      slot->next_index = static_cast<uint16_t>(prefix.index + 1);
      return Status::kNeedMore;
    }
    // Join into one exactly sized buffer; the last piece goes straight in (copied once).
    std::vector<uint8_t> body;
    body.reserve(slot->bytes + piece.size());
    for (const std::vector<uint8_t>& p : slot->pieces) body.insert(body.end(), p.begin(), p.end());
    body.insert(body.end(), piece.begin(), piece.end());
    out.type = slot->type;
    out.flags = slot->flags;
    out.body = std::move(body);
  } catch (...) {
    // Only std::bad_alloc / std::length_error can get here, after the limits were checked:
    // the memory ran out. fail() frees whatever was half built.
    return fail(Status::kReassemblyMemoryExceeded);
  }
  remove(*slot);
  return Status::kOk;
}

Status Reassembler::expire(uint64_t now_ms) noexcept {
  if (error_ != Status::kOk) return error_;
  if (any_expired(now_ms)) return fail(Status::kReassemblyTimeout);
  return Status::kOk;
}

uint64_t Reassembler::next_deadline_ms() const noexcept {
  constexpr uint64_t kNever = std::numeric_limits<uint64_t>::max();
  uint64_t deadline = kNever;
  for (const Slot& s : slots_) {
    // expire() fails once the age is strictly greater than timeout_ms: at started + timeout + 1
    // (saturated: a deadline beyond 64 bits is never).
    if (limits_.timeout_ms >= kNever - s.started_ms) continue;
    deadline = std::min(deadline, s.started_ms + limits_.timeout_ms + 1);
  }
  return deadline;
}

}  // namespace herald::codec
