// Server memory per idle connection: starts the real heraldd, opens N connections that
// each say Hello, authenticate and subscribe to their own user channel (the W1 idle
// workload), and reports heraldd's resident memory growth per connection.
// Usage: conn_memory [--connections N] [--runs R] [--json]
//        conn_memory --attach PORT [--pid PID] [--connections N]
// --attach connects to a heraldd that is already running (for example under heaptrack) on
// 127.0.0.1:PORT instead of starting one; with --pid it reads that process's VmRSS.
#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "tests/support/heraldd_process.h"

namespace {

using herald::testing::Client;
using herald::testing::HeralddProcess;

struct Result {
  long base_kb = 0, full_kb = 0;
  size_t connections = 0;
  double bytes_per_connection() const {
    return connections == 0 ? 0 : (full_kb - base_kb) * 1024.0 / static_cast<double>(connections);
  }
};

long rss_kb_of(pid_t pid) {
  if (pid <= 0) return 0;
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return 0;
}

// Opens the warm-up and N measured connections to 127.0.0.1:port; `pid` (0: none) is
// the server whose VmRSS is read before and after the N.
bool connect_all(uint16_t port, pid_t pid, size_t n, Result& out) {
  // Warm up: the first connection on each loop pays for its buffers and codec contexts.
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 4; ++i) {
    auto c = std::make_unique<Client>(port);
    if (!c->handshake(herald::testing::make_token("warm" + std::to_string(i))) || !c->subscribe("user:warm" + std::to_string(i))) {
      std::fprintf(stderr, "warm-up connection failed\n");
      return false;
    }
    clients.push_back(std::move(c));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  out.base_kb = rss_kb_of(pid);
  for (size_t i = 0; i < n; ++i) {
    auto c = std::make_unique<Client>(port);
    const std::string user = "u" + std::to_string(i);
    auto ok = c->connected() && c->handshake(herald::testing::make_token(user)) ? c->subscribe("user:" + user)
                                                                                 : std::nullopt;
    if (!ok || ok->type != herald::codec::FrameType::kSubscribeOk) {
      std::fprintf(stderr, "connection %zu failed\n", i);
      return false;
    }
    clients.push_back(std::move(c));
    if ((i + 1) % 2000 == 0) std::fprintf(stderr, "  %zu connections\n", i + 1);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  out.full_kb = rss_kb_of(pid);
  out.connections = n;
  return true;
}

bool one_run(size_t n, Result& out) {
  HeralddProcess server;
  if (!server.start({"--limits.max_connections_per_ip", "1000000", "--limits.accept_burst", "1000000",
                     "--server.log_level", "warn"})) {
    std::fprintf(stderr, "heraldd did not start:\n%s\n", server.log().c_str());
    return false;
  }
  return connect_all(server.port("tcp"), server.pid(), n, out);
}

}  // namespace

int main(int argc, char** argv) {
  size_t n = 10000;
  int runs = 3;
  bool json = false;
  long attach_port = 0, attach_pid = 0;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--connections") && i + 1 < argc) n = std::strtoul(argv[++i], nullptr, 10);
    else if (!std::strcmp(argv[i], "--runs") && i + 1 < argc) runs = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--json")) json = true;
    else if (!std::strcmp(argv[i], "--attach") && i + 1 < argc) attach_port = std::atol(argv[++i]);
    else if (!std::strcmp(argv[i], "--pid") && i + 1 < argc) attach_pid = std::atol(argv[++i]);
    else {
      std::fprintf(stderr, "usage: %s [--connections N] [--runs R] [--json] [--attach PORT [--pid PID]]\n", argv[0]);
      return 2;
    }
  }
  rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < n + 100) {
    std::fprintf(stderr, "open files limit %lu is below %zu connections\n", static_cast<unsigned long>(rl.rlim_cur), n);
    return 2;
  }
  if (attach_port > 0) {
    // The server must allow N connections from one address (limits.max_connections_per_ip).
    Result res;
    if (!connect_all(static_cast<uint16_t>(attach_port), static_cast<pid_t>(attach_pid), n, res)) return 1;
    std::printf("%zu connections open", n);
    if (attach_pid > 0) std::printf(", RSS %ld -> %ld KiB, %.0f bytes per connection", res.base_kb, res.full_kb, res.bytes_per_connection());
    std::printf("; closing them\n");
    return 0;
  }
  std::vector<double> per;
  for (int r = 0; r < runs; ++r) {
    Result res;
    if (!one_run(n, res)) return 1;
    per.push_back(res.bytes_per_connection());
    if (json) {
      std::printf("{\"workload\":\"W1-idle\",\"system\":\"herald\",\"connections\":%zu,\"rss_base_kb\":%ld,"
                  "\"rss_kb\":%ld,\"bytes_per_connection\":%.0f}\n",
                  n, res.base_kb, res.full_kb, res.bytes_per_connection());
    } else {
      std::printf("run %d: %zu connections, RSS %ld -> %ld KiB, %.0f bytes per connection\n", r + 1, n, res.base_kb,
                  res.full_kb, res.bytes_per_connection());
    }
  }
  std::sort(per.begin(), per.end());
  if (!json) std::printf("median: %.0f bytes per connection\n", per[per.size() / 2]);
  return 0;
}
