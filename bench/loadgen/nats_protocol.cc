// Nats adapter for the load generator (placeholder so the program links; being completed).
// Sans-IO: turns intents into bytes and bytes into events, no sockets, no clock.
#include <memory>
#include <string>

#include "protocol.h"

namespace herald::bench {
namespace {

class NatsProtocol final : public Protocol {
 public:
  explicit NatsProtocol(const ConnParams& p) : params_(p) {}
  void start_subscriber(std::string&, const std::string*, size_t) override {}
  void start_publisher(std::string&) override {}
  void publish(std::string&, std::string_view, std::string_view) override {}
  bool on_input(const uint8_t*, size_t, std::string&, Sink& sink) override {
    sink.on_error("nats adapter not implemented yet");
    return false;
  }

 private:
  ConnParams params_;
};

}  // namespace

std::unique_ptr<Protocol> make_nats_protocol(const ConnParams& p) {
  return std::make_unique<NatsProtocol>(p);
}

}  // namespace herald::bench
