// Per-namespace channel policy (who may subscribe and publish, how much history
// is kept), shared by config, session authorization and the channel hub.
// A channel's namespace is the part before its first ':' ("trade:BTC-USD" ->
// "trade"); a channel without ':' belongs to the default namespace "".
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace herald::server {

struct NamespacePolicy {
  enum class Subscribe : uint8_t {
    kAny,    // any authenticated user
    kGrant,  // only tokens whose "channels" claim grants the channel
    kNone,   // nobody (server-side publishing only, e.g. internal channels)
  };
  enum class Publish : uint8_t {
    kNone,   // only backends through the HTTP API
    kGrant,  // connections whose token has "publish": true and grants the channel
    kAny,    // connections whose token has "publish": true
  };
  std::string name;                  // namespace, "" = default
  Subscribe subscribe = Subscribe::kGrant;
  Publish publish = Publish::kNone;
  size_t history_size = 100;         // publications kept for resume (0 = none)
  uint32_t history_ttl_s = 300;      // how long they are kept (0 = no time limit)
  bool durable = false;              // stored in the durable store before the publisher's ack
  bool latest_value = false;         // durable state channel: only the latest publication per collapse key

  bool operator==(const NamespacePolicy&) const = default;
};

// The namespace of a channel: the text before the first ':', or "".
inline std::string_view namespace_of(std::string_view channel) noexcept {
  const auto colon = channel.find(':');
  return colon == std::string_view::npos ? std::string_view() : channel.substr(0, colon);
}

// The personal namespace: "user:<id>" is only ever readable by user <id>,
// whatever the rules say.
inline constexpr std::string_view kUserNamespace = "user";

// True for 1..255 bytes of [A-Za-z0-9_.:@/-]; '*' is allowed only when
// `pattern` (a grant in a token may end in '*').
inline bool valid_channel_name(std::string_view c, bool pattern = false) noexcept {
  if (c.empty() || c.size() > 255) return false;
  for (size_t i = 0; i < c.size(); ++i) {
    const char ch = c[i];
    const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                    ch == '_' || ch == '.' || ch == ':' || ch == '@' || ch == '/' || ch == '-' ||
                    (pattern && ch == '*' && i + 1 == c.size());
    if (!ok) return false;
  }
  return true;
}

}  // namespace herald::server
