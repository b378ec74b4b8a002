// Hello/Welcome negotiation rules of docs/protocol.md §11.
#include "codec/negotiation.h"

#include <algorithm>

namespace herald::codec {
namespace {

bool contains(const auto& list, uint32_t v) { return std::find(list.begin(), list.end(), v) != list.end(); }

// §11.3: 0 means the default; below the minimum is invalid; frames cap at 16 MiB.
Status frame_size(uint32_t announced, uint32_t& out) noexcept {
  if (announced == 0) {
    out = kDefaultMaxFrameSize;
  } else if (announced < kMinMaxFrameSize) {
    return Status::kInvalidField;
  } else {
    out = std::min(announced, kMaxMaxFrameSize);
  }
  return Status::kOk;
}

Status message_size(uint32_t announced, uint32_t& out) noexcept {
  if (announced == 0) {
    out = kDefaultMaxMessageSize;
  } else if (announced < kMinMaxMessageSize) {
    return Status::kInvalidField;
  } else {
    out = announced;
  }
  return Status::kOk;
}

// The most a sender can deliver in `fragments` frames of `frame` bytes (with
// prefix and trailer).
uint64_t fragmentable(uint32_t frame, uint32_t fragments) noexcept {
  return uint64_t{fragments} * (frame - kFragmentPrefixSize - kChecksumSize);
}

}  // namespace

ReaderLimits ConnectionParams::reader_limits() const noexcept {
  ReaderLimits l;
  l.decoder.max_frame_size = recv_max_frame_size;
  l.decoder.require_checksum = checksum;
  l.decoder.check_sequence = true;
  l.decoder.version = version;
  l.max_message_size = recv_max_message_size;
  l.compression = zstd;
  l.reassembly.max_fragments = recv_max_fragments;
  l.reassembly.max_message_size = recv_max_message_size;
  // §8: the reassembly cap is never below the max message size.
  l.reassembly.max_buffered_bytes = std::max<size_t>(l.reassembly.max_buffered_bytes, recv_max_message_size);
  return l;
}

EncodeOptions ConnectionParams::encode_options() const noexcept {
  EncodeOptions o;
  o.version = version;
  o.checksum = checksum;
  o.compress = zstd;
  o.dictionary_id = dictionary_id;
  o.max_frame_size = send_max_frame_size;
  o.max_message_size = send_max_message_size;
  o.max_fragments = send_max_fragments;
  return o;
}

ReaderLimits handshake_reader_limits() noexcept {
  ReaderLimits l;
  l.decoder.max_frame_size = kHandshakeMaxFrameSize;
  l.decoder.version = kVersion1;
  l.max_message_size = kHandshakeMaxFrameSize;
  l.reassembly.max_message_size = kHandshakeMaxFrameSize;
  l.compression = false;
  return l;
}

Status negotiate_hello(const v1::Hello& hello, const ServerSettings& settings, v1::Welcome& welcome,
                       ConnectionParams& params) noexcept {
  welcome.Clear();
  params = {};
  // §11.1: the highest version both implement; an empty list means [1].
  uint32_t version = 0;
  if (hello.versions().empty()) {
    if (contains(settings.versions, kVersion1)) version = kVersion1;
  } else {
    for (uint32_t v : hello.versions()) {
      if (contains(settings.versions, v)) version = std::max(version, v);
    }
  }
  if (version == 0 || version > 0xFFFF) return Status::kNoCommonVersion;

  // §11.3: the client's sizes bound what the server sends.
  Status s = frame_size(hello.max_frame_size(), params.send_max_frame_size);
  if (!ok(s)) return s;
  s = message_size(hello.max_message_size(), params.send_max_message_size);
  if (!ok(s)) return s;
  params.send_max_fragments = kDefaultMaxFragments;
  if (params.send_max_message_size > fragmentable(params.send_max_frame_size, kDefaultMaxFragments)) {
    return Status::kInvalidField;
  }

  // §11.2 and §6.5: the client's first codec the server supports, then the
  // client's first dictionary the server has.
  bool zstd = false;
  for (int c : hello.compression()) {
    if (c == v1::COMPRESSION_ZSTD && settings.zstd) {
      zstd = true;
      break;
    }
  }
  uint32_t dictionary = 0;
  if (zstd) {
    for (uint32_t id : hello.dictionary_ids()) {
      if (id != 0 && contains(settings.dictionary_ids, id)) {
        dictionary = id;
        break;
      }
    }
  }

  // §11.4: heartbeat clamped to the allowed range.
  uint32_t heartbeat = hello.heartbeat_ms() == 0 ? settings.heartbeat_ms : hello.heartbeat_ms();
  heartbeat = std::clamp(heartbeat, kMinHeartbeatMs, kMaxHeartbeatMs);

  params.version = static_cast<uint16_t>(version);
  params.zstd = zstd;
  params.dictionary_id = dictionary;
  params.checksum = hello.checksum() || settings.checksum;  // §11.5
  params.heartbeat_ms = heartbeat;
  params.pong_timeout_ms = settings.pong_timeout_ms;
  params.recv_max_frame_size = std::clamp(settings.max_frame_size, kMinMaxFrameSize, kMaxMaxFrameSize);
  params.recv_max_message_size = std::max(settings.max_message_size, kMinMaxMessageSize);
  params.recv_max_fragments = settings.max_fragments == 0 ? kDefaultMaxFragments : settings.max_fragments;

  welcome.set_version(version);
  welcome.set_compression(zstd ? v1::COMPRESSION_ZSTD : v1::COMPRESSION_NONE);
  welcome.set_dictionary_id(dictionary);
  welcome.set_max_frame_size(params.recv_max_frame_size);
  welcome.set_max_message_size(params.recv_max_message_size);
  welcome.set_heartbeat_ms(heartbeat);
  welcome.set_pong_timeout_ms(params.pong_timeout_ms);
  welcome.set_checksum(params.checksum);
  welcome.set_max_fragments(params.recv_max_fragments);
  return Status::kOk;
}

Status accept_welcome(const v1::Hello& hello, const v1::Welcome& welcome, ConnectionParams& params) noexcept {
  params = {};
  const bool offered = hello.versions().empty() ? welcome.version() == kVersion1
                                                : contains(hello.versions(), welcome.version());
  if (!offered || welcome.version() == 0 || welcome.version() > 0xFFFF) return Status::kNoCommonVersion;
  if (welcome.compression() == v1::COMPRESSION_ZSTD) {
    if (!contains(hello.compression(), v1::COMPRESSION_ZSTD)) return Status::kInvalidField;
    params.zstd = true;
  } else if (welcome.compression() != v1::COMPRESSION_NONE) {
    return Status::kInvalidField;
  }
  if (welcome.dictionary_id() != 0 &&
      (!params.zstd || !contains(hello.dictionary_ids(), welcome.dictionary_id()))) {
    return Status::kInvalidField;
  }
  Status s = frame_size(welcome.max_frame_size(), params.send_max_frame_size);
  if (!ok(s)) return s;
  s = message_size(welcome.max_message_size(), params.send_max_message_size);
  if (!ok(s)) return s;
  params.send_max_fragments = welcome.max_fragments() == 0 ? kDefaultMaxFragments : welcome.max_fragments();
  s = frame_size(hello.max_frame_size(), params.recv_max_frame_size);
  if (!ok(s)) return s;
  s = message_size(hello.max_message_size(), params.recv_max_message_size);
  if (!ok(s)) return s;
  params.recv_max_fragments = kDefaultMaxFragments;  // the server sends at most 128 (§11.3)
  if (welcome.heartbeat_ms() != 0 &&
      (welcome.heartbeat_ms() < kMinHeartbeatMs || welcome.heartbeat_ms() > kMaxHeartbeatMs)) {
    return Status::kInvalidField;
  }
  params.version = static_cast<uint16_t>(welcome.version());
  params.dictionary_id = welcome.dictionary_id();
  params.checksum = welcome.checksum();
  params.heartbeat_ms = welcome.heartbeat_ms() == 0 ? kDefaultHeartbeatMs : welcome.heartbeat_ms();
  params.pong_timeout_ms = welcome.pong_timeout_ms() == 0 ? kDefaultPongTimeoutMs : welcome.pong_timeout_ms();
  return Status::kOk;
}

}  // namespace herald::codec
