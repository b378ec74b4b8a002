// W4 load generator: acknowledged durable publishes per second and publish latency
// against a running heraldd's HTTP API (keep-alive connections, one thread each).
// Measures only; starts nothing (bench/run_durable_bench.sh starts heraldd).
//
//   durable_load --api 127.0.0.1:7680 --mode single --connections 64 --seconds 10
//   durable_load --api 127.0.0.1:7680 --mode batch --batch 500 --connections 4 --seconds 10
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Options {
  std::string host = "127.0.0.1";
  int port = 7680;
  std::string mode = "single";  // single | batch
  int connections = 64;
  int batch = 500;
  int payload = 1024;
  double seconds = 10;
  std::string channel_prefix = "user:bench";
  int channels = 1000;
  std::string key = "herald-dev-api-key";
};

int connect_to(const Options& o) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(o.port));
  ::inet_pton(AF_INET, o.host.c_str(), &a.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

// One request/response on a keep-alive connection; returns the HTTP status (0 on error).
int roundtrip(int fd, const std::string& path, const std::string& body, const Options& o, std::string& buf) {
  std::string req = "POST " + path + " HTTP/1.1\r\nHost: b\r\nAuthorization: Bearer " + o.key +
                    "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
                    "\r\n\r\n" + body;
  size_t off = 0;
  while (off < req.size()) {
    const ssize_t n = ::send(fd, req.data() + off, req.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return 0;
    off += static_cast<size_t>(n);
  }
  buf.clear();
  size_t header_end = std::string::npos;
  size_t need = 0;
  char tmp[65536];
  for (;;) {
    if (header_end == std::string::npos) {
      header_end = buf.find("\r\n\r\n");
      if (header_end != std::string::npos) {
        const size_t cl = buf.find("Content-Length: ");
        const size_t len = cl == std::string::npos ? 0 : std::strtoul(buf.c_str() + cl + 16, nullptr, 10);
        need = header_end + 4 + len;
      }
    }
    if (header_end != std::string::npos && buf.size() >= need) break;
    const ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
    if (n <= 0) return 0;
    buf.append(tmp, static_cast<size_t>(n));
  }
  return buf.size() > 12 ? std::atoi(buf.c_str() + 9) : 0;
}

double percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(i), v.end());
  return v[i];
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--api") {
      o.host = v.substr(0, v.rfind(':'));
      o.port = std::atoi(v.c_str() + v.rfind(':') + 1);
    } else if (k == "--mode") {
      o.mode = v;
    } else if (k == "--connections") {
      o.connections = std::atoi(v.c_str());
    } else if (k == "--batch") {
      o.batch = std::atoi(v.c_str());
    } else if (k == "--payload") {
      o.payload = std::atoi(v.c_str());
    } else if (k == "--seconds") {
      o.seconds = std::atof(v.c_str());
    } else if (k == "--channels") {
      o.channels = std::atoi(v.c_str());
    } else if (k == "--channel-prefix") {
      o.channel_prefix = v;
    } else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  // The payload: a JSON string of `payload` bytes (the JSON text adds 2 quotes).
  const std::string payload = "\"" + std::string(static_cast<size_t>(std::max(0, o.payload - 2)), 'x') + "\"";
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> acked{0}, failed{0};
  std::mutex mu;
  std::vector<double> latencies_ms;  // per request (a batch request acks `batch` messages)
  std::vector<std::thread> threads;
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  for (int c = 0; c < o.connections; ++c) {
    threads.emplace_back([&, c] {
      const int fd = connect_to(o);
      if (fd < 0) {
        failed.fetch_add(1);
        return;
      }
      std::vector<double> mine;
      std::string buf;
      uint64_t seq = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        std::string body;
        int n = 1;
        const std::string channel = o.channel_prefix + std::to_string((c * 7919 + static_cast<int>(seq)) % o.channels);
        auto one = [&](uint64_t s) {
          return "{\"channel\":\"" + channel + "\",\"message_id\":\"b" + std::to_string(c) + "-" + std::to_string(s) +
                 "\",\"priority\":2,\"payload\":" + payload + "}";
        };
        std::string path = "/v1/publish";
        if (o.mode == "batch") {
          n = o.batch;
          path = "/v1/publish/batch";
          body = "{\"messages\":[";
          for (int i = 0; i < n; ++i) body += (i ? "," : "") + one(++seq);
          body += "]}";
        } else {
          body = one(++seq);
        }
        const auto s = Clock::now();
        const int status = roundtrip(fd, path, body, o, buf);
        const double ms = std::chrono::duration<double, std::milli>(Clock::now() - s).count();
        if (status == 200) {
          acked.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
          mine.push_back(ms);
        } else {
          failed.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
          if (status == 0) break;
        }
      }
      ::close(fd);
      std::lock_guard lock(mu);
      latencies_ms.insert(latencies_ms.end(), mine.begin(), mine.end());
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(o.seconds));
  stop = true;
  for (auto& t : threads) t.join();
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  std::printf(
      "mode=%s connections=%d batch=%d payload=%dB seconds=%.1f acked=%llu failed=%llu acked_per_s=%.0f "
      "request_latency_ms p50=%.2f p99=%.2f max=%.2f\n",
      o.mode.c_str(), o.connections, o.mode == "batch" ? o.batch : 1, o.payload, secs,
      static_cast<unsigned long long>(acked.load()), static_cast<unsigned long long>(failed.load()),
      static_cast<double>(acked.load()) / secs, percentile(latencies_ms, 0.5), percentile(latencies_ms, 0.99),
      latencies_ms.empty() ? 0.0 : *std::max_element(latencies_ms.begin(), latencies_ms.end()));
  return failed.load() == 0 ? 0 : 1;
}
