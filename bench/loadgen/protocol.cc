// Names of the systems the load generator drives and the factory that picks an adapter.
// Nothing else: each adapter lives in its own *_protocol.cc.
#include "bench/loadgen/protocol.h"

namespace herald::bench {

const char* system_name(System s) {
  switch (s) {
    case System::kHerald: return "herald";
    case System::kHeraldWs: return "herald-ws";
    case System::kMqtt: return "mqtt";
    case System::kRedis: return "redis";
    case System::kNats: return "nats";
  }
  return "?";
}

bool parse_system(std::string_view name, System& out) {
  for (System s : {System::kHerald, System::kHeraldWs, System::kMqtt, System::kRedis, System::kNats}) {
    if (name == system_name(s)) {
      out = s;
      return true;
    }
  }
  return false;
}

std::unique_ptr<Protocol> make_protocol(System s, const ConnParams& p) {
  switch (s) {
    case System::kHerald: return make_herald_protocol(p, false);
    case System::kHeraldWs: return make_herald_protocol(p, true);
    case System::kMqtt: return make_mqtt_protocol(p);
    case System::kRedis: return make_redis_protocol(p);
    case System::kNats: return make_nats_protocol(p);
  }
  return nullptr;
}

}  // namespace herald::bench
