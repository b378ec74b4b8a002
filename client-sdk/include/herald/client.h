// Herald client SDK, C++ API: one Client is one connection to heraldd that reconnects,
// resumes its subscriptions and acks by itself. Only standard-library types appear here;
// the codec, protobuf, libevent and OpenSSL stay inside the library.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#if defined(HERALD_CLIENT_BUILD)
#define HERALD_CLIENT_API __attribute__((visibility("default")))
#else
#define HERALD_CLIENT_API
#endif

struct event_base;  // libevent, for Client::attach

namespace herald {

// Status codes are the numbers of docs/protocol.md §9 (codec/status.h): the server's
// Error codes plus the SDK's local 700s (kConnectFailed 700, kTlsHandshakeFailed 701,
// kCertificateVerifyFailed 702, kConnectionLost 703). 0 is success.
HERALD_CLIENT_API std::string_view status_name(int code) noexcept;        // "kAuthFailed"; "kUnknownStatus"
HERALD_CLIENT_API std::string_view status_description(int code) noexcept; // one line for people
HERALD_CLIENT_API bool status_temporary(int code) noexcept;               // retrying later can help

enum class ConnectionState : uint8_t {
  kStopped,       // not started, or stopped by stop()
  kConnecting,    // TCP/TLS connect and Hello/Auth in progress
  kConnected,     // READY: authenticated, subscriptions (re)sent
  kReconnecting,  // waiting for the backoff delay before the next attempt
  kFailed,        // gave up: a non-temporary error (see Error); start() tries again
};
HERALD_CLIENT_API std::string_view to_string(ConnectionState s) noexcept;

struct Error {
  int code = 0;              // a status number (see above)
  std::string_view name;     // status_name(code)
  std::string_view text;     // what happened, for people and logs
  bool temporary = false;    // the SDK retries by itself when true
  std::string_view channel;  // the channel of a failed subscription, else empty
};

// One publication. Views valid only during the callback.
struct Message {
  std::string_view channel, epoch, message_id, type, content_type, collapse_key;
  std::string_view payload;  // bytes, not necessarily text
  uint64_t offset = 0;       // with epoch: the message's position in its channel
  int priority = 3;          // 0 (P0, most urgent) .. 3
  int64_t created_at_ms = 0; // Unix milliseconds when the server accepted it
  uint32_t ttl_s = 0;
  bool dismiss_on_read = false;
};

struct Subscribed {
  std::string_view channel, epoch;
  uint64_t offset = 0;     // the channel's latest offset when the subscription started
  bool resumed = false;    // the SDK asked to resume from a known position
  bool recovered = false;  // resumed, and every missed message follows
  // resumed && !recovered: history was lost (server restart without a durable store,
  // history trimmed, epoch changed). Missed messages will NOT arrive: reload state.
  bool lost_history() const noexcept { return resumed && !recovered; }
};

struct Options {
  // Where: host name or IP and port of heraldd's binary listener (TCP or TLS).
  std::string host = "127.0.0.1";
  uint16_t port = 7600;
  bool tls = false;
  std::string ca_file;         // PEM bundle to trust; empty = the system's trust store
  std::string server_name;     // SNI and certificate name to check; empty = host
  bool verify_peer = true;     // false only for development: accepts any certificate
  std::string bind_address;    // local source IP (load tests spread over 127.0.0.x); empty = any

  // Who: a fixed token, or a callback that returns a fresh one. The callback is called
  // on the loop thread at every connect and before expiry (refresh), so keep it quick
  // (return a cached token, refresh it elsewhere). With a callback, kAuthFailed and
  // kTokenExpired are retried (a new token may work); without, they end in kFailed.
  std::string token;
  std::function<std::string()> token_provider;
  std::string device_id;       // stable per installation (receipts are per device)
  std::string client_name = "herald-cpp/0.1";

  // Delivery.
  bool manual_ack = false;     // false: a message is acked when on_message returns (durable
                               // channels only: the server keeps no ack state for live ones)
  uint32_t gap_timeout_ms = 5000;  // refill a gap in offsets after this long (0 = never)

  // Position persistence, so a restarted app resumes: either a small built-in file
  // store (one line per channel, written atomically) ...
  std::string position_file;
  // ... or callbacks (loop thread). load: true and fills epoch/offset when known.
  std::function<bool(std::string_view channel, std::string& epoch, uint64_t& offset)> load_position;
  std::function<void(std::string_view channel, std::string_view epoch, uint64_t offset)> store_position;

  // Timing.
  uint32_t connect_timeout_ms = 10000;    // TCP + TLS + Hello/Auth
  uint32_t reconnect_initial_ms = 250;    // first backoff step
  uint32_t reconnect_max_ms = 30000;      // backoff cap
  uint32_t heartbeat_ms = 0;              // ping interval asked of the server (0 = its default)
  uint32_t heartbeat_timeout_ms = 0;      // dead after this silence (0 = server heartbeat + pong timeout)

  // Wire.
  bool compression = true;                // accept zstd from the server
  bool checksum = false;                  // CRC32C on every frame
  uint32_t max_message_size = 0;          // largest message accepted (0 = 1 MiB)
};

// Callbacks run on the loop thread, one at a time. Each may call any Client method
// except stop() and the destructor; subscribe/unsubscribe/ack/ping are queued and applied
// after the callback returns.
struct Handlers {
  std::function<void(const Message&)> on_message;
  std::function<void(const Subscribed&)> on_subscribed;
  // State changes; `error` is set when the change was caused by one (else null).
  std::function<void(ConnectionState, const Error* error)> on_state;
  // Errors that do not change state: a refused subscription (channel set), ...
  std::function<void(const Error&)> on_error;
  std::function<void(std::string_view channel, uint64_t offset, std::string_view message_id)> on_dismiss;
  // Answer to ping(): round trip in microseconds.
  std::function<void(uint64_t rtt_us)> on_pong;
};

class HERALD_CLIENT_API Client {
 public:
  // A client that runs its own loop thread (started by start()). Null with `error` set
  // for invalid options (empty host, port 0, unreadable ca_file, no token and no
  // token_provider). Any thread may create it.
  static std::unique_ptr<Client> create(Options options, Handlers handlers, std::string* error = nullptr);
  // A client on the application's libevent loop: callbacks run inside that loop's
  // dispatch. Every method must then be called on the loop's thread (or, if the base was
  // created after evthread_use_pthreads(), on any thread). `base` must outlive the client.
  static std::unique_ptr<Client> attach(event_base* base, Options options, Handlers handlers,
                                        std::string* error = nullptr);

  // Stops (like stop()) and frees. Never call it from a callback of this client (that is
  // undefined behaviour: the callback's own client would be freed under it).
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Connects (and keeps reconnecting). Own-thread mode: starts the thread. Returns 0, or
  // kInternal (700s never: connect errors arrive through on_state). Idempotent.
  int start();
  // Closes the connection and stops reconnecting; positions are stored. Own-thread mode:
  // joins the loop thread. Never call it from a callback of this client: it returns
  // kInvalidField there (both modes) and does nothing. Otherwise returns 0.
  int stop();

  // Adds a channel (resumed from the position store if it knows one). Returns 0 or
  // kBadChannel (invalid name). A refused subscription arrives later through on_error
  // (kPermissionDenied, ...). Any thread.
  int subscribe(std::string_view channel);
  int unsubscribe(std::string_view channel);
  // Manual acks: the app processed (channel, epoch, offset). Returns 0; an unknown
  // channel or old epoch is ignored. Any thread.
  int ack(std::string_view channel, std::string_view epoch, uint64_t offset);
  // Sends a Ping; on_pong reports the round trip. Returns 0, or kConnectionLost when not
  // connected. Any thread.
  int ping();

  ConnectionState state() const noexcept;  // any thread
  // The position the client would resume a channel from; false if none yet. Any thread.
  bool position(std::string_view channel, std::string& epoch, uint64_t& offset) const;

  struct Impl;

 private:
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace herald
