// The herald.v1.json subprotocol: one WebSocket text message = one JSON object
// {"<MessageName>": {<fields in the protobuf JSON mapping>}}, translated to and
// from the herald.v1 protobuf messages the Session handles. Sans-IO, no logging.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "codec/frame_header.h"
#include "codec/status.h"

namespace herald::server {

// Deepest JSON nesting accepted (objects and arrays): herald.v1 needs 3.
inline constexpr size_t kMaxJsonDepth = 16;

// Parses one text message into the frame type it names and the protobuf body.
// Errors (nothing is written to `body` then): kMalformedMessage (not one JSON
// object with exactly one key, nesting deeper than kMaxJsonDepth, field values of
// the wrong type, enum names the schema does not have; unknown field names are
// ignored for forward compatibility), kUnknownFrameType (the key names no
// herald.v1 message), kMessageTooLarge (the body would exceed max_body).
codec::Status json_to_message(std::string_view text, size_t max_body, codec::FrameType& type,
                              std::vector<uint8_t>& body) noexcept;

// The JSON text for one message body of `type` (field names as in the .proto,
// fields with default values included, 64-bit integers as strings, bytes as
// base64). Errors: kMalformedMessage (body is not a valid message of `type`).
codec::Status message_to_json(codec::FrameType type, std::span<const uint8_t> body, std::string& out) noexcept;

// "Hello" for kHello, ...; empty for an unknown type.
std::string_view json_message_name(codec::FrameType type) noexcept;

}  // namespace herald::server
