// Message layer: which herald.v1 protobuf message each frame type carries, and
// size-limited, strict parsing and serializing of frame bodies. Sans-IO.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "codec/frame_header.h"
#include "codec/status.h"
#include "herald.pb.h"

namespace herald::codec {

// The frame type that carries message class M, e.g. frame_type_of<v1::Ping>().
template <class M>
constexpr FrameType frame_type_of() noexcept;

#define HERALD_FRAME_TYPE_OF(name, number, control)                     \
  template <>                                                          \
  constexpr FrameType frame_type_of<::herald::v1::HERALD_STRIP_K_##name>() noexcept { \
    return FrameType::name;                                            \
  }
// Names of the protobuf classes, one per frame type (the frame name without its k).
#define HERALD_STRIP_K_kHello Hello
#define HERALD_STRIP_K_kWelcome Welcome
#define HERALD_STRIP_K_kAuth Auth
#define HERALD_STRIP_K_kAuthOk AuthOk
#define HERALD_STRIP_K_kRefresh Refresh
#define HERALD_STRIP_K_kSubscribe Subscribe
#define HERALD_STRIP_K_kSubscribeOk SubscribeOk
#define HERALD_STRIP_K_kUnsubscribe Unsubscribe
#define HERALD_STRIP_K_kUnsubscribeOk UnsubscribeOk
#define HERALD_STRIP_K_kPublication Publication
#define HERALD_STRIP_K_kPublish Publish
#define HERALD_STRIP_K_kPublishOk PublishOk
#define HERALD_STRIP_K_kAck Ack
#define HERALD_STRIP_K_kDismiss Dismiss
#define HERALD_STRIP_K_kPing Ping
#define HERALD_STRIP_K_kPong Pong
#define HERALD_STRIP_K_kError Error
#define HERALD_STRIP_K_kGoAway GoAway
HERALD_FRAME_TYPE_LIST(HERALD_FRAME_TYPE_OF)
#undef HERALD_FRAME_TYPE_OF

// A new, empty message of the class `type` carries. Never null for a known type.
std::unique_ptr<google::protobuf::Message> new_message(FrameType type);

// Parses `body` into `out`, which must be the class `type` carries (checked:
// kUnexpectedFrame otherwise). Errors: kMessageTooLarge (body above max_size,
// checked before parsing), kMalformedMessage (not valid protobuf, truncated,
// invalid UTF-8 in a string field, or a known field number carrying the wrong
// wire type). Unknown field numbers are ignored (forward compatibility).
Status parse_message(FrameType type, std::span<const uint8_t> body, size_t max_size,
                     google::protobuf::Message& out) noexcept;

// new_message + parse_message.
Status decode_message(FrameType type, std::span<const uint8_t> body, size_t max_size,
                      std::unique_ptr<google::protobuf::Message>& out) noexcept;

// Serializes `message` and replaces `out` with the bytes. Errors:
// kMessageTooLarge (above max_size), kInvalidField (serializer failed).
Status serialize_message(const google::protobuf::Message& message, size_t max_size,
                         std::vector<uint8_t>& out) noexcept;

// The frame type that carries this message's class; false if none does.
bool frame_type_for(const google::protobuf::Message& message, FrameType& out) noexcept;

}  // namespace herald::codec
