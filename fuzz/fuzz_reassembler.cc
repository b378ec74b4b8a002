// Fuzz target for the Reassembler: the input is a program of operations (fragment, expire,
// advance the clock, switch limits) run against one Reassembler and a small model of what it
// must hold. Aborts if memory or message size goes over a cap, if accounting differs from the
// bytes accepted, if a completed message differs from its pieces, or if an error leaves
// anything held or is not sticky.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <vector>

#include "codec/reassembler.h"

namespace {

using herald::codec::encode_fragment_prefix;
using herald::codec::FragmentPrefix;
using herald::codec::Frame;
using herald::codec::FrameType;
using herald::codec::ReassembledMessage;
using herald::codec::Reassembler;
using herald::codec::ReassemblyLimits;
using herald::codec::Status;

void check(bool ok) {
  if (!ok) std::abort();
}

ReassemblyLimits limits_a() {
  ReassemblyLimits l;
  l.max_fragments = 8;
  l.max_partial_messages = 3;
  l.max_message_size = 600;
  l.max_buffered_bytes = 1000;
  l.timeout_ms = 200;
  return l;
}

ReassemblyLimits limits_b() {
  ReassemblyLimits l;
  l.max_fragments = 4;
  l.max_partial_messages = 2;
  l.max_message_size = 300;
  l.max_buffered_bytes = 400;
  l.timeout_ms = 1000;
  return l;
}

// What the Reassembler should hold for one ref.
struct Partial {
  std::vector<uint8_t> bytes;
  uint16_t next_index = 0;
  uint64_t started_ms = 0;
  FrameType type = FrameType::kPublication;
  uint16_t c_flag = 0;
};

class Harness {
 public:
  Harness() : limits_(limits_a()), r_(limits_) {}

  // Operation byte: low 3 bits pick the operation; the rest are its arguments.
  void run(const uint8_t* data, size_t size) {
    size_t i = 0;
    while (i < size) {
      const uint8_t op = data[i++];
      switch (op & 7) {
        case 0: case 1: case 2: case 3:
          if (size - i < 3) return;
          fragment(op, data[i], data[i + 1], data[i + 2]);
          i += 3;
          break;
        case 4:
          expire();
          break;
        case 5:
          if (i == size) return;
          now_ += uint64_t{data[i++]} * 4;
          break;
        case 6:
          limits_ = (op & 8) ? limits_b() : limits_a();
          r_.set_limits(limits_);
          break;
        case 7:
          // A fragment that completes or continues a held message correctly: helps the fuzzer
          // reach deep states without guessing indexes.
          if (size - i < 2) return;
          fragment(static_cast<uint8_t>(op & 0xF8), static_cast<uint8_t>(data[i] & 0x07), data[i + 1], 0);
          i += 2;
          break;
      }
      invariants();
    }
  }

 private:
  // op: bit3 last, bit4 C, bit5 K, bits6-7 type (0 Publication, 1 Publish, 2 Ping, 3 unknown).
  // a: bits0-2 ref (0..5), bit7 raw index from `b`, bit6 skip one index.
  // b: piece length, or the raw index. c: bit0 set reserved fflags bit 15 - (c >> 3) % 8,
  // bit1 truncate the payload to (c >> 2) % 8 bytes, bit2 clear the F flag, bit7 triple the
  // piece length (one piece above every limit).
  void fragment(uint8_t op, uint8_t a, uint8_t b, uint8_t c) {
    const bool last = op & 0x08;
    uint16_t flags = herald::codec::kFlagFragment;
    if (op & 0x10) flags |= herald::codec::kFlagCompressed;
    if (op & 0x20) flags |= herald::codec::kFlagChecksummed;
    static constexpr FrameType kTypes[4] = {FrameType::kPublication, FrameType::kPublish, FrameType::kPing,
                                            static_cast<FrameType>(0x0FFF)};
    const FrameType type = kTypes[op >> 6];
    const uint32_t ref = (a & 7) % 6;
    auto it = model_.find(ref);
    uint16_t index = it != model_.end() ? it->second.next_index : 0;
    size_t len = b;
    if (a & 0x80) {
      index = b;
      len = (b * 37u) % 256;
    } else if (a & 0x40) {
      ++index;
    }
    if (c & 0x80) len *= 3;

    std::vector<uint8_t> payload(herald::codec::kFragmentPrefixSize + len);
    encode_fragment_prefix(FragmentPrefix{ref, index, last}, payload.data());
    for (size_t k = herald::codec::kFragmentPrefixSize; k < payload.size(); ++k) {
      payload[k] = static_cast<uint8_t>(counter_ * 31 + k);
    }
    ++counter_;
    if (c & 1) payload[6] |= static_cast<uint8_t>(0x80 >> ((c >> 3) & 7));
    if (c & 2) payload.resize((c >> 2) % 8);
    if (c & 4) flags = static_cast<uint16_t>(flags & ~herald::codec::kFlagFragment);

    Frame frame;
    frame.header.type = type;
    frame.header.flags = flags;
    frame.header.length = static_cast<uint32_t>(payload.size());
    frame.payload = payload;

    const bool timed_out = any_expired();
    ReassembledMessage out;
    const Status s = r_.add(frame, now_, out);
    if (sticky(s)) return;
    // The first check that can fail is the caller-bug check, then the timeout.
    if (!(flags & herald::codec::kFlagFragment)) {
      check(s == Status::kInternal);
    } else if (timed_out) {
      check(s == Status::kReassemblyTimeout);
    }
    if (s != Status::kOk && s != Status::kNeedMore) return failed(s);

    check(!timed_out && type != FrameType::kPing && (flags & herald::codec::kFlagFragment));
    check(payload.size() >= herald::codec::kFragmentPrefixSize && !(c & 1));
    const uint8_t* piece = payload.data() + herald::codec::kFragmentPrefixSize;
    const size_t piece_len = payload.size() - herald::codec::kFragmentPrefixSize;
    check(index + 1u <= limits_.max_fragments);
    if (index == 0) {
      check(it == model_.end());
    } else {
      check(it != model_.end() && it->second.next_index == index);
    }
    const uint16_t c_flag = flags & herald::codec::kFlagCompressed;
    if (s == Status::kNeedMore) {
      check(!last && piece_len > 0);
      if (it == model_.end()) {
        it = model_.emplace(ref, Partial{}).first;
        it->second.started_ms = now_;
        it->second.type = type;
        it->second.c_flag = c_flag;
        check(model_.size() <= limits_.max_partial_messages);
      }
      check(it->second.type == type && it->second.c_flag == c_flag);
      it->second.bytes.insert(it->second.bytes.end(), piece, piece + piece_len);
      it->second.next_index = static_cast<uint16_t>(index + 1);
      check(r_.buffered_bytes() <= limits_.max_buffered_bytes);
      check(it->second.bytes.size() <= limits_.max_message_size);
      return;
    }
    // kOk: the message is exactly its pieces, and within the limit.
    check(last);
    std::vector<uint8_t> expected;
    if (it != model_.end()) {
      check(it->second.type == type && it->second.c_flag == c_flag);
      expected = std::move(it->second.bytes);
      model_.erase(it);
    }
    expected.insert(expected.end(), piece, piece + piece_len);
    check(out.body == expected);
    check(out.body.size() <= limits_.max_message_size);
    check(out.type == type);
    check(out.flags == c_flag);
    check(r_.buffered_bytes() <= limits_.max_buffered_bytes);
  }

  void expire() {
    const bool timed_out = any_expired();
    const Status s = r_.expire(now_);
    if (sticky(s)) return;
    check(s == (timed_out ? Status::kReassemblyTimeout : Status::kOk));
    if (s != Status::kOk) failed(s);
  }

  // After a sticky error every call returns it; returns true if we were already failed.
  bool sticky(Status s) {
    if (error_ == Status::kOk) return false;
    check(s == error_);
    return true;
  }

  void failed(Status s) {
    check(s != Status::kOk && s != Status::kNeedMore);
    error_ = s;
    model_.clear();
    check(r_.error() == s);
    check(r_.buffered_bytes() == 0);
    check(r_.partial_messages() == 0);
  }

  bool any_expired() const {
    for (const auto& [ref, p] : model_) {
      if (now_ > p.started_ms && now_ - p.started_ms > limits_.timeout_ms) return true;
    }
    return false;
  }

  void invariants() {
    size_t held = 0;
    for (const auto& [ref, p] : model_) held += p.bytes.size();
    check(r_.buffered_bytes() == held);
    check(r_.partial_messages() == model_.size());
    check(r_.error() == error_);
    // Whatever the limits were switched to, nothing ever goes over the larger of them.
    check(r_.buffered_bytes() <= 1000);
    check(r_.partial_messages() <= 3);
    uint64_t deadline = UINT64_MAX;
    for (const auto& [ref, p] : model_) deadline = std::min(deadline, p.started_ms + limits_.timeout_ms + 1);
    check(r_.next_deadline_ms() == deadline);
  }

  ReassemblyLimits limits_;
  Reassembler r_;
  uint64_t now_ = 1000;
  uint32_t counter_ = 0;
  Status error_ = Status::kOk;
  std::map<uint32_t, Partial> model_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Harness h;
  h.run(data, size);
  return 0;
}
