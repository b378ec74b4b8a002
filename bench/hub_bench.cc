// What a unicast publish costs in the hub and the live history, without sockets:
// 10,000 personal channels, each with one subscriber (as in W3), each keeping up to
// 1,000 publications (the bench's user namespace), and publishes to random users.
// The sink encodes each publication once, as its first subscriber's loop would. This
// is the part of W3's user-space work that does not depend on the loops: offsets,
// history, dedup, encoding, and the lookups of the channel's state.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "server/channel_hub.h"
#include "server/memory_history.h"

namespace herald::server {
namespace {

class CountingSink final : public DeliverySink {
 public:
  // Encodes each publication for the plain wire variant, as the first connection
  // that gets it does on its loop.
  void deliver(size_t loop, const PublicationPtr& publication, uint32_t subscribers) noexcept override {
    deliveries[loop] += subscribers;
    bytes += publication->encoded(WireVariant{}, encoding, ctx).wire_size();
  }
  uint64_t deliveries[2] = {0, 0};
  uint64_t bytes = 0;
  SharedEncoding encoding;
  codec::CodecContext ctx;
};

// state.range(0): users; state.range(1): 1 = every publish carries a message id.
void BM_UnicastPublish(benchmark::State& state) {
  const auto users = static_cast<size_t>(state.range(0));
  const bool with_ids = state.range(1) != 0;
  CountingSink sink;
  MemoryHistory history;
  ChannelHub hub(2, history, sink, [](std::string_view) { return ChannelOptions{1000, 300}; }, 300'000);
  std::vector<std::string> channels;
  std::vector<PublicationPtr> replay;
  for (size_t i = 0; i < users; ++i) {
    channels.push_back("user:" + std::to_string(100000 + i));
    hub.subscribe(i % 2, channels.back(), false, "", 0, 0, replay);
  }
  std::mt19937_64 rng(7);
  const std::string payload(128, 'x');
  uint64_t n = 0;
  int64_t now = 1'700'000'000'000;
  for (auto _ : state) {
    PublishDraft d;
    d.channel = channels[rng() % users];
    d.priority = 1;
    d.payload = payload;
    if (with_ids) d.message_id = std::to_string(n);
    const PublishOutcome out = hub.publish(std::move(d), now + static_cast<int64_t>(n / 100), n / 100);
    benchmark::DoNotOptimize(out.offset);
    ++n;
  }
  state.SetItemsProcessed(static_cast<int64_t>(n));
}
BENCHMARK(BM_UnicastPublish)->Args({10000, 0})->Args({10000, 1})->Args({100, 0});
// A fixed count, for valgrind --tool=cachegrind (counts cache misses exactly, so two
// builds compare without this machine's noise): --benchmark_filter=Fixed.
BENCHMARK(BM_UnicastPublish)->Name("Fixed/UnicastPublish")->Args({10000, 0})->Iterations(200000);

}  // namespace
}  // namespace herald::server

BENCHMARK_MAIN();
