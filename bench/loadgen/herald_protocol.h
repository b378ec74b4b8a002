// Herald-only knobs of the load generator's Herald adapter (binary TCP and the herald.v1
// WebSocket subprotocol): the priority of its publishes. The adapter itself is sans-IO
// like every Protocol; the generic factory is make_herald_protocol in protocol.h.
#pragma once

#include <memory>

#include "bench/loadgen/protocol.h"

namespace herald::bench {

// Like make_herald_protocol, with the priority (0..3 = P0..P3) every Publish carries.
std::unique_ptr<Protocol> make_herald_protocol(const ConnParams& p, bool websocket, int priority);

}  // namespace herald::bench
