// The private HTTP API of heraldd on libevent's evhttp: routing, API-key
// authentication, JSON validation, error mapping, async replies. docs/http-api.md
// is the reference. Must not: reach into the hub, loops or sessions (everything
// goes through ApiBackend), block its event loop, or let an exception escape a
// libevent callback.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "codec/status.h"
#include "server/metrics.h"

struct event_base;

namespace herald::server {

// One validated publish, as parsed from a JSON request. For a `users` publish,
// `channel` is empty and `users` lists the ids; the API calls publish_one once
// per target channel ("user:<id>").
struct ApiPublishRequest {
  std::string channel;
  std::vector<std::string> users;
  std::string message_id, type, content_type, collapse_key;
  int priority = 3;  // 0..3 = P0..P3
  uint32_t ttl_s = 0;
  bool dismiss_on_read = false;
  std::string payload;  // bytes
};

struct ApiPublishResult {
  codec::Status status = codec::Status::kOk;
  std::string channel;  // may be empty: the API then echoes the channel it asked for
  uint64_t offset = 0;
  std::string epoch;
  bool duplicate = false;
};

// Implemented by the server; a fake in tests. Every method is called on one of the
// API's event loop threads (with ApiConfig::threads > 1, on several at once: the
// implementation must be thread-safe). Every `done` may be called on any thread: the
// API hands the answer to the loop thread of the request itself.
class ApiBackend {
 public:
  virtual ~ApiBackend() = default;
  // Synchronous (the hub's publish is thread-safe). `channel` is already a
  // valid channel name. Returns kOk with offset/epoch/duplicate, or a status
  // (mapped to HTTP by http_status_for()). Must not throw.
  virtual ApiPublishResult publish_one(const std::string& channel, const ApiPublishRequest& r) = 0;
  // Asynchronous: `done` must be called exactly once, on any thread; it may also be
  // called before user_info returns.
  // Calling it after the HttpApi was destroyed is safe (the answer is dropped).
  virtual void user_info(const std::string& user, std::function<void(nlohmann::json)> done) = 0;
  // Closes every connection of `user` with `code` and `reason`; `done` gets
  // how many were closed. Same rules for `done` as user_info.
  virtual void disconnect_user(const std::string& user, codec::Status code, const std::string& reason,
                               std::function<void(size_t connections)> done) = 0;
  // Asynchronous publish: `done` gets the final result exactly once, on any thread
  // (for a durable channel, after the store committed it: typically the store
  // thread). The default answers with publish_one at once.
  virtual void publish_async(const std::string& channel, const ApiPublishRequest& r,
                             std::function<void(ApiPublishResult)> done) {
    done(publish_one(channel, r));
  }
  // GET /v1/messages/{id}: the receipts of every stored message with that
  // publisher id; `done(http_status, body)` once, on any thread. The default
  // answers 404 (no durable store).
  virtual void message_receipts(const std::string& message_id, std::function<void(int, nlohmann::json)> done) {
    (void)message_id;
    done(404, nlohmann::json{{"error", {{"code", 0}, {"name", "not_found"}, {"message", "no durable store"},
                                        {"temporary", false}}}});
  }
  // GET /v1/admin/integrity: the store's integrity check; same rules for `done`.
  virtual void integrity_check(std::function<void(int, nlohmann::json)> done) {
    done(404, nlohmann::json{{"error", {{"code", 0}, {"name", "not_found"}, {"message", "no durable store"},
                                        {"temporary", false}}}});
  }
  // Hub stats, loops, uptime: merged into GET /v1/stats over metrics.stats_json()
  // (objects are merged key by key; on a clash of non-objects the backend wins).
  virtual nlohmann::json server_stats() = 0;
};

struct ApiConfig {
  // Accepted keys (Authorization: Bearer <key> or X-API-Key: <key>). Empty keys
  // are ignored; with no key at all every authenticated route answers 401.
  std::vector<std::string> api_keys;
  size_t max_body_bytes = 1 << 20;          // larger bodies: 413 (from libevent, see docs)
  size_t max_header_bytes = 16 * 1024;      // request headers; larger: 400 (from libevent)
  size_t max_batch = 1000;                  // messages per POST /v1/publish/batch
  size_t max_users_per_publish = 10000;     // users per message, and targets per request
  int idle_timeout_s = 60;                  // evhttp read/write timeout of a connection
  // Event loop threads serving the API: the caller's loop plus threads - 1 of the
  // API's own, each accepting on the same listening sockets (the kernel hands each new
  // connection to one of them). At least 1.
  size_t threads = 1;
};

// HTTP status for a non-kOk backend status: kBadChannel, kInvalidField,
// kMessageTooLarge 400; kAuthRequired, kAuthFailed 401; kPermissionDenied 403;
// kRateLimited 429; kStorageUnavailable, kGoingAway, kTooManyConnections 503;
// anything else 500. kOk gives 200.
int http_status_for(codec::Status s) noexcept;

// Strict standard base64 (RFC 4648 §4 alphabet; '=' padding optional but, if
// present, correct; no whitespace). False on any other input.
bool decode_base64(std::string_view in, std::string& out);

// The HTTP listener. Construct, bind and destroy on the thread that runs `base`
// (or before that loop starts / after it stopped). `backend` and `metrics` must
// outlive it; neither may be null. Destroying it stops its own threads and closes
// every HTTP connection; backend answers that arrive later are dropped.
class HttpApi {
 public:
  HttpApi(event_base* base, ApiConfig config, ApiBackend* backend, Metrics* metrics);
  ~HttpApi();
  HttpApi(const HttpApi&) = delete;
  HttpApi& operator=(const HttpApi&) = delete;

  // Binds host:port (port 0 = any free port) and starts accepting. May be
  // called more than once to listen on several addresses, before start(). On
  // success `bound` is the address actually bound ("127.0.0.1:40003",
  // "[::1]:40003"); on failure returns false with `error` set (nothing is thrown).
  bool bind(const std::string& host, uint16_t port, std::string& bound, std::string& error);

  // Starts the API's own loop threads (config.threads - 1; none with 1). Call once,
  // after bind(). Throws std::system_error if a thread cannot be started.
  void start();

  struct Impl;  // implementation detail (named here so the .cc can hold weak_ptrs to it)

 private:
  // [0] serves `base` (the caller's loop); the others run on threads_. Shared so
  // pending async answers can tell a loop is gone (weak_ptr).
  std::vector<std::shared_ptr<Impl>> impls_;
  std::vector<event_base*> own_bases_;  // bases of impls_[1..]
  std::vector<std::thread> threads_;
};

}  // namespace herald::server
