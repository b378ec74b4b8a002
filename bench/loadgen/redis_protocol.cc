// Redis adapter for the load generator (placeholder so the program links; being completed).
// Sans-IO: turns intents into bytes and bytes into events, no sockets, no clock.
#include <memory>
#include <string>

#include "protocol.h"

namespace herald::bench {
namespace {

class RedisProtocol final : public Protocol {
 public:
  explicit RedisProtocol(const ConnParams& p) : params_(p) {}
  void start_subscriber(std::string&, const std::string*, size_t) override {}
  void start_publisher(std::string&) override {}
  void publish(std::string&, std::string_view, std::string_view) override {}
  bool on_input(const uint8_t*, size_t, std::string&, Sink& sink) override {
    sink.on_error("redis adapter not implemented yet");
    return false;
  }

 private:
  ConnParams params_;
};

}  // namespace

std::unique_ptr<Protocol> make_redis_protocol(const ConnParams& p) {
  return std::make_unique<RedisProtocol>(p);
}

}  // namespace herald::bench
