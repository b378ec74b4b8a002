// The load generator's view of one connection to a pub/sub server (Herald binary, Herald
// WebSocket, MQTT, Redis RESP, NATS): sans-IO, it only turns intents into bytes and bytes
// into events. Sockets, timing and counting belong to the load generator, not to these.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace herald::bench {

enum class System : uint8_t { kHerald, kHeraldWs, kMqtt, kRedis, kNats };

// "herald", "herald-ws", "mqtt", "redis", "nats"; parse returns false for an unknown name.
const char* system_name(System s);
bool parse_system(std::string_view name, System& out);

// What a connection needs to know before it starts. Fields a system does not use are ignored.
struct ConnParams {
  std::string client_id;    // MQTT client id, NATS name, Herald device id (unique per connection)
  std::string user_id;      // Herald: the token's subject
  std::string token;        // Herald: a signed JWT (allows subscribing, and publishing for publishers)
  int qos = 0;              // MQTT: 0 or 1 for subscriptions and publishes
  std::string host = "127.0.0.1";  // Herald WebSocket: Host header
};

// Events parsed from the server's bytes.
class Sink {
 public:
  virtual ~Sink() = default;
  virtual void on_ready() = 0;                           // handshake done; every subscription confirmed
  virtual void on_message(std::string_view payload) = 0;  // one delivered message, its payload bytes
  virtual void on_published() {}                          // the server confirmed one publish (PUBACK, PublishOk, +OK)
  virtual void on_error(std::string what) = 0;            // protocol error or server-side refusal; the connection is dead
};

class Protocol {
 public:
  virtual ~Protocol() = default;
  // Bytes to write right after the TCP connect: handshake, then one subscription per channel.
  // `on_ready` fires once all of them are confirmed by the server.
  virtual void start_subscriber(std::string& out, const std::string* channels, size_t n) = 0;
  // Bytes to write after connect for a connection that only publishes; `on_ready` fires when
  // it may publish.
  virtual void start_publisher(std::string& out) = 0;
  // Appends one publish of `payload` (opaque bytes, sent as they are) to `channel`.
  virtual void publish(std::string& out, std::string_view channel, std::string_view payload) = 0;
  // Consumes everything in [data, data+len) (keeping partial frames internally), reports events
  // to `sink`, and appends whatever must be answered (PONG, PUBACK, Herald Pong/Ack) to `out`.
  // Returns false after a protocol error (already reported through on_error).
  virtual bool on_input(const uint8_t* data, size_t len, std::string& out, Sink& sink) = 0;
};

// protocol.cc dispatches to these (herald_protocol.cc, mqtt_protocol.cc, redis_protocol.cc,
// nats_protocol.cc).
std::unique_ptr<Protocol> make_protocol(System s, const ConnParams& p);
std::unique_ptr<Protocol> make_herald_protocol(const ConnParams& p, bool websocket);
std::unique_ptr<Protocol> make_mqtt_protocol(const ConnParams& p);
std::unique_ptr<Protocol> make_redis_protocol(const ConnParams& p);
std::unique_ptr<Protocol> make_nats_protocol(const ConnParams& p);

}  // namespace herald::bench
