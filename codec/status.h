// Herald's one list of status codes: codec results, wire Error codes, SDK errors.
// Numbers are stable and append-only; docs/protocol.md §9 lists the same table.
// Sans-IO header: no sockets, no clock, no logging.
#pragma once

#include <cstdint>
#include <string_view>

namespace herald::codec {

// X(name, number, temporary, description)
// `temporary` says whether the same request can succeed if retried later
// (it becomes Error.temporary on the wire).
#define HERALD_STATUS_LIST(X)                                                                  \
  X(kOk, 0, false, "no error")                                                                 \
  X(kNeedMore, 1, false, "more input is needed (never sent on the wire)")                      \
  /* 100: framing */                                                                           \
  X(kBadMagic, 100, false, "frame does not start with the magic bytes HRLD")                   \
  X(kUnsupportedVersion, 101, false, "frame version is not supported")                         \
  X(kUnknownFrameType, 102, false, "frame type is not defined")                                \
  X(kUnknownFlag, 103, false, "a reserved flag bit is set")                                    \
  X(kFrameTooLarge, 104, false, "declared frame length is above the limit")                    \
  X(kBadSequence, 105, false, "frame sequence number is not the next expected one")            \
  X(kChecksumMismatch, 106, false, "body checksum does not match")                             \
  X(kChecksumRequired, 107, false, "frame has no checksum but the connection requires one")    \
  X(kTruncatedFrame, 108, false, "stream ended in the middle of a frame")                      \
  X(kVersionMismatch, 109, false, "frame version differs from the negotiated version")         \
  X(kBodyTooShort, 110, false, "body is shorter than its flags require")                       \
  /* 200: fragmentation */                                                                     \
  X(kFragmentedControl, 200, false, "a control frame type may not be fragmented")              \
  X(kBadFragmentHeader, 201, false, "fragment prefix has reserved bits set")                   \
  X(kFragmentOutOfOrder, 202, false, "fragment index is not the next one (missing/duplicate)") \
  X(kTooManyFragments, 203, false, "message has more fragments than allowed")                  \
  X(kTooManyPartialMessages, 204, false, "too many fragmented messages in progress")           \
  X(kReassemblyTooLarge, 205, false, "reassembled message is above the message size limit")    \
  X(kReassemblyMemoryExceeded, 206, false, "reassembly buffers exceed the connection's cap")   \
  X(kReassemblyTimeout, 207, false, "fragmented message was not finished in time")             \
  X(kFragmentMismatch, 208, false, "fragment type or flags differ from the first fragment")    \
  X(kEmptyFragment, 209, false, "a fragment other than the last one is empty")                 \
  /* 300: compression */                                                                       \
  X(kUnsupportedCompression, 300, false, "compressed frame but no codec was negotiated")       \
  X(kDecompressionFailed, 301, false, "compressed body is corrupt")                            \
  X(kDecompressedTooLarge, 302, false, "decompressed size is above the message size limit")    \
  X(kWindowTooLarge, 303, false, "compressed body needs a window above the limit")             \
  X(kUnknownDictionary, 304, false, "compressed body names a dictionary that is not loaded")   \
  X(kCompressionFailed, 305, false, "compressor reported an error")                            \
  /* 400: messages */                                                                          \
  X(kMalformedMessage, 400, false, "protobuf body does not parse as the frame's message")      \
  X(kMessageTooLarge, 401, false, "message is above the negotiated message size")              \
  X(kUnexpectedFrame, 402, false, "frame type is not allowed here (state or direction)")       \
  X(kInvalidField, 403, false, "a field has a value the protocol does not allow")              \
  /* 500: session */                                                                           \
  X(kHandshakeTimeout, 500, true, "handshake did not finish in time")                          \
  X(kNoCommonVersion, 501, false, "client and server share no protocol version")               \
  X(kAuthRequired, 502, false, "command sent before authentication")                           \
  X(kAuthFailed, 503, false, "token is invalid")                                               \
  X(kTokenExpired, 504, false, "token expired and was not refreshed in time")                  \
  X(kPermissionDenied, 505, false, "not allowed for this user or token")                       \
  X(kTooManySubscriptions, 506, false, "subscription limit per connection reached")            \
  X(kHeartbeatTimeout, 507, true, "peer did not answer pings in time")                         \
  X(kBadChannel, 508, false, "channel name is not valid")                                      \
  /* 600: server */                                                                            \
  X(kSlowConsumer, 600, true, "slow consumer: output limit exceeded")                          \
  X(kTooManyConnections, 601, true, "connection limit reached")                                \
  X(kRateLimited, 602, true, "too many requests, slow down")                                   \
  X(kGoingAway, 603, true, "server is shutting down or moving the connection")                 \
  X(kInternal, 604, true, "internal server error")                                             \
  X(kStorageUnavailable, 605, true, "storage is unavailable; nothing was stored")                \
  /* 700: client transport (local, never sent) */                                             \
  X(kConnectFailed, 700, true, "could not connect to the server (resolve, refused, timeout)")   \
  X(kTlsHandshakeFailed, 701, true, "TLS handshake with the server failed")                    \
  X(kCertificateVerifyFailed, 702, false, "server certificate not trusted (CA, host name, dates)") \
  X(kConnectionLost, 703, true, "connection closed or broke without a Herald error")

enum class Status : uint16_t {
#define HERALD_STATUS_ENUM(name, number, temporary, text) name = number,
  HERALD_STATUS_LIST(HERALD_STATUS_ENUM)
#undef HERALD_STATUS_ENUM
};

// Stable name, e.g. "kBadMagic". Unknown numbers give "kUnknownStatus".
std::string_view to_string(Status s) noexcept;
// One-line human description.
std::string_view describe(Status s) noexcept;
// Whether retrying later can help (Error.temporary on the wire).
bool is_temporary(Status s) noexcept;
// True for numbers that name a Status in this build.
bool is_known_status(uint32_t number) noexcept;

inline constexpr bool ok(Status s) noexcept { return s == Status::kOk; }

}  // namespace herald::codec
