// Hello/Welcome negotiation (docs/protocol.md §11) as pure functions: the
// server turns a Hello into a Welcome, the client checks the Welcome against
// its Hello, and both get the limits and options their codec objects use for
// the rest of the connection. Sans-IO: no sockets, clock or logging.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "codec/frame_encoder.h"
#include "codec/message_reader.h"
#include "codec/status.h"
#include "herald.pb.h"

namespace herald::codec {

inline constexpr uint32_t kMaxMaxFrameSize = 16 * 1024 * 1024;
inline constexpr uint32_t kMinMaxMessageSize = 16 * 1024;
inline constexpr uint32_t kDefaultMaxFragments = 128;
inline constexpr uint32_t kDefaultHeartbeatMs = 25'000;
inline constexpr uint32_t kMinHeartbeatMs = 5'000;
inline constexpr uint32_t kMaxHeartbeatMs = 120'000;
inline constexpr uint32_t kDefaultPongTimeoutMs = 10'000;

// What a server offers; comes from its configuration.
struct ServerSettings {
  std::vector<uint32_t> versions = {kVersion1};  // versions it implements
  bool zstd = true;                               // can compress/decompress zstd
  std::vector<uint32_t> dictionary_ids;           // dictionaries it has loaded
  uint32_t max_frame_size = kDefaultMaxFrameSize;     // what it accepts
  uint32_t max_message_size = kDefaultMaxMessageSize; // what it accepts
  uint32_t max_fragments = kDefaultMaxFragments;      // what it accepts
  uint32_t heartbeat_ms = kDefaultHeartbeatMs;        // default ping interval
  uint32_t pong_timeout_ms = kDefaultPongTimeoutMs;
  bool checksum = false;  // checksum everything (and so require it from clients)
};

// The outcome of negotiation for one side of a connection.
struct ConnectionParams {
  uint16_t version = kVersion1;
  bool zstd = false;
  bool checksum = false;  // K on every frame, both directions, required
  uint32_t dictionary_id = 0;
  uint32_t heartbeat_ms = kDefaultHeartbeatMs;
  uint32_t pong_timeout_ms = kDefaultPongTimeoutMs;
  // What this side accepts (its reader's limits) ...
  uint32_t recv_max_frame_size = kDefaultMaxFrameSize;
  uint32_t recv_max_message_size = kDefaultMaxMessageSize;
  uint32_t recv_max_fragments = kDefaultMaxFragments;
  // ... and what the peer accepts (its encoder's limits).
  uint32_t send_max_frame_size = kDefaultMaxFrameSize;
  uint32_t send_max_message_size = kDefaultMaxMessageSize;
  uint32_t send_max_fragments = kDefaultMaxFragments;

  // Limits for this side's MessageReader after Welcome.
  ReaderLimits reader_limits() const noexcept;
  // Options for this side's encoder after Welcome (fragment_ref left 0).
  EncodeOptions encode_options() const noexcept;
};

// Reader limits before Welcome (§8): 16 KiB frames, version 1, no compression.
ReaderLimits handshake_reader_limits() noexcept;

// Server side: builds `welcome` (session_id left to the caller) and `params`.
// Errors: kNoCommonVersion (no version in common), kInvalidField (a size below
// its minimum, or a max message size the client cannot be sent in 128 fragments).
Status negotiate_hello(const v1::Hello& hello, const ServerSettings& settings, v1::Welcome& welcome,
                       ConnectionParams& params) noexcept;

// Client side: checks that `welcome` answers `hello` (a version, codec and
// dictionary the client offered; sizes within range) and fills `params`.
// Errors: kNoCommonVersion (version not offered), kInvalidField (anything else
// out of range or not offered).
Status accept_welcome(const v1::Hello& hello, const v1::Welcome& welcome, ConnectionParams& params) noexcept;

}  // namespace herald::codec
