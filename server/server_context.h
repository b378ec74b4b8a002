// What every loop and connection of one server shares: configuration, the hub,
// the token verifier, metrics, limits. Built by Server before the loops start;
// read-only afterwards except for the members that are thread-safe themselves.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "server/channel_hub.h"
#include "server/config.h"
#include "server/delivery_lanes.h"
#include "server/jwt.h"
#include "server/metrics.h"
#include "server/publication.h"
#include "server/session.h"
#include "server/ws_connection.h"

namespace herald::server {

class Loop;
class DurableHistory;

// Connection counts in total, per IP address and per user, shared by the
// acceptor and every loop. Thread-safe.
class ConnectionLimiter {
 public:
  // Per-user counts are kept by `hub` (ChannelHub::add_user_connection), which must
  // outlive the limiter.
  ConnectionLimiter(uint32_t max_total, uint32_t max_per_ip, uint32_t max_per_user, ChannelHub* hub)
      : max_total_(max_total), max_per_ip_(max_per_ip), max_per_user_(max_per_user), hub_(hub) {}
  // kOk, or kTooManyConnections with `which` = "total" / "ip". On kOk, `*key` points
  // to the limiter's own copy of `ip`: it stays valid (and unchanged) until the matching
  // remove_connection, so a connection can keep that pointer instead of a copy.
  codec::Status add_connection(const std::string& ip, const char** which, const std::string** key);
  // `ip` may be the key from add_connection: it is not used after the count is erased.
  void remove_connection(const std::string& ip);
  codec::Status add_user(const std::string& user);
  void remove_user(const std::string& user);
  size_t total() const;

 private:
  mutable std::mutex mu_;
  const uint32_t max_total_, max_per_ip_, max_per_user_;
  size_t total_ = 0;
  std::unordered_map<std::string, uint32_t> per_ip_;
  ChannelHub* hub_;
};

struct ServerContext {
  const Config* config = nullptr;
  SessionConfig session_config;
  SessionConfig ws_session_config;  // WebSocket connections: never zstd (browsers cannot decode it)
  WsSettings ws_settings;
  std::unique_ptr<JwtVerifier> verifier;
  ChannelHub* hub = nullptr;
  DurableHistory* durable = nullptr;  // receipts, acks, inbox cursors (null: no durable store)
  Metrics* metrics = nullptr;
  OutputLimits output_limits;
  uint64_t publish_backlog = 16384;  // Loop::admission_closed: config delivery.publish_backlog
  SharedEncoding shared_encoding;
  SSL_CTX* ssl_ctx = nullptr;
  ConnectionLimiter* limiter = nullptr;
  std::vector<std::unique_ptr<Loop>>* loops = nullptr;
};

}  // namespace herald::server
