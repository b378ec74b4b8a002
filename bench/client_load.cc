// Load test of the client SDK: one process holds N connections (herald::Client on one
// event_base, attach mode, source addresses spread over 127.0.0.x) to a real heraldd it
// starts itself, and reports client memory per connection, the time for one publication
// to reach every connection, and the receive rate of one connection fed through the HTTP
// API. Prints one JSON object; exits non-zero if a connection or a message went missing.
#include <arpa/inet.h>
#include <event2/event.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "bench/api_post.h"
#include "client-sdk/cli/token.h"
#include "herald/client.h"

namespace {

using Clock = std::chrono::steady_clock;

long rss_kb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

// CPU time of the calling thread (the client loop; the publisher runs on another thread).
double thread_cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_THREAD, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// One blocking HTTP/1.1 POST with Connection: close; returns the status (0 on failure).
int http_post(uint16_t port, const std::string& path, const std::string& body) {
  return herald::bench::api_post("127.0.0.1", port, path, body);
}

struct Server {
  pid_t pid = -1;
  std::string dir;
  uint16_t tcp = 0, api = 0;

  bool start(const std::string& path) {
    char tmpl[] = "/tmp/herald-load-XXXXXX";
    dir = ::mkdtemp(tmpl);
    const std::string ready = dir + "/ready.json";
    const std::string data = dir + "/data";  // the durable store: never shared with another run
    pid = ::fork();
    if (pid == 0) {
      const int fd = ::open((dir + "/heraldd.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::execl(path.c_str(), path.c_str(), "--ready-file", ready.c_str(), "--listen.tcp", "127.0.0.1:0",
              "--listen.api", "127.0.0.1:0", "--listen.ws", "127.0.0.1:0", "--server.loops", "1", "--server.log_level", "warn",
              "--limits.max_connections_per_ip", "100000", "--store.dir", data.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    const auto deadline = Clock::now() + std::chrono::seconds(15);
    while (Clock::now() < deadline) {
      std::ifstream in(ready);
      const nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
      if (!j.is_discarded() && j.contains("tcp")) {
        auto port_of = [](const std::string& a) { return static_cast<uint16_t>(std::stoi(a.substr(a.rfind(':') + 1))); };
        tcp = port_of(j["tcp"].get<std::string>());
        api = port_of(j["api"].get<std::string>());
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
  ~Server() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    if (!dir.empty()) std::system(("rm -rf '" + dir + "'").c_str());
  }
};

// Runs the loop in slices until `done` or the deadline.
template <class F>
bool pump(event_base* base, F done, int timeout_s) {
  const auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
  while (!done()) {
    if (Clock::now() >= deadline) return false;
    timeval tv{0, 50000};
    event_base_loopexit(base, &tv);
    event_base_loop(base, 0);
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  size_t connections = 10000;
  size_t messages = 200000;
  int sources = 50;
  std::string heraldd = HERALDD_PATH;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--connections") connections = std::stoul(argv[i + 1]);
    else if (k == "--messages") messages = std::stoul(argv[i + 1]);
    else if (k == "--sources") sources = std::stoi(argv[i + 1]);
    else if (k == "--heraldd") heraldd = argv[i + 1];
    else {
      std::fprintf(stderr, "usage: client_load [--connections N] [--messages M] [--sources K] [--heraldd PATH]\n");
      return 2;
    }
  }
  ::signal(SIGPIPE, SIG_IGN);
  rlimit nofile{};
  getrlimit(RLIMIT_NOFILE, &nofile);
  nofile.rlim_cur = nofile.rlim_max;
  setrlimit(RLIMIT_NOFILE, &nofile);

  Server server;
  if (!server.start(heraldd)) {
    std::fprintf(stderr, "client_load: heraldd did not start\n");
    return 1;
  }
  event_base* base = event_base_new();
  size_t subscribed = 0, received = 0, failures = 0;

  // ---- N connections: memory per connection ----
  malloc_trim(0);
  const long rss_before = rss_kb();
  const size_t heap_before = mallinfo2().uordblks;
  std::vector<std::unique_ptr<herald::Client>> clients;
  clients.reserve(connections);
  const auto t_connect = Clock::now();
  for (size_t i = 0; i < connections; ++i) {
    herald::Options o;
    o.port = server.tcp;
    o.bind_address = "127.0.0." + std::to_string(2 + i % static_cast<size_t>(sources));
    herald::cli::TokenRequest tr;
    tr.user = "load-" + std::to_string(i);
    tr.channels = {"load", "rate"};
    o.token = herald::cli::mint_token(tr, "herald-dev-secret", std::time(nullptr));
    o.reconnect_initial_ms = 200;
    o.reconnect_max_ms = 2000;
    herald::Handlers h;
    h.on_subscribed = [&subscribed](const herald::Subscribed&) { ++subscribed; };
    h.on_message = [&received](const herald::Message&) { ++received; };
    h.on_state = [&failures](herald::ConnectionState s, const herald::Error*) {
      if (s == herald::ConnectionState::kReconnecting || s == herald::ConnectionState::kFailed) ++failures;
    };
    std::string error;
    auto c = herald::Client::attach(base, std::move(o), std::move(h), &error);
    if (!c) {
      std::fprintf(stderr, "client_load: %s\n", error.c_str());
      return 1;
    }
    c->subscribe("load");
    c->start();
    clients.push_back(std::move(c));
  }
  const bool all_up = pump(base, [&] { return subscribed >= connections; }, 120);
  const double connect_s = std::chrono::duration<double>(Clock::now() - t_connect).count();
  // Let the heap settle (handshake buffers freed), then measure.
  pump(base, [] { return false; }, 1);
  // Two views: bytes the heap holds for the clients (malloc's own count of live
  // allocations), and resident memory after returning free pages to the system.
  const size_t heap_after = mallinfo2().uordblks;
  malloc_trim(0);
  const long rss_after = rss_kb();
  const double n = connections == 0 ? 1 : static_cast<double>(connections);
  const double bytes_per_conn = static_cast<double>(rss_after - rss_before) * 1024.0 / n;
  const double heap_per_conn = static_cast<double>(heap_after - heap_before) / n;

  // ---- one publication to every connection ----
  const auto t_fan = Clock::now();
  const int st = http_post(server.api, "/v1/publish", R"({"channel":"load","type":"ping","payload":{"n":1}})");
  const bool fan_ok = st == 200 && pump(base, [&] { return received >= connections; }, 60);
  const double fanout_ms = std::chrono::duration<double, std::milli>(Clock::now() - t_fan).count();

  // ---- receive rate of one connection, fed by heraldd ----
  size_t rate_received = 0;
  herald::Options ro;
  ro.port = server.tcp;
  herald::cli::TokenRequest tr;
  tr.user = "rate";
  tr.channels = {"rate"};
  ro.token = herald::cli::mint_token(tr, "herald-dev-secret", std::time(nullptr));
  ro.max_message_size = 1024 * 1024;
  bool rate_subscribed = false;
  herald::Handlers rh;
  rh.on_subscribed = [&](const herald::Subscribed&) { rate_subscribed = true; };
  Clock::time_point first{}, last{};
  rh.on_message = [&](const herald::Message&) {
    if (rate_received++ == 0) first = Clock::now();
    last = Clock::now();
  };
  auto rate_client = herald::Client::attach(base, ro, rh);
  rate_client->subscribe("rate");
  rate_client->start();
  pump(base, [&] { return rate_subscribed; }, 10);
  // Publish from a helper thread in batches of 1,000 while this thread receives.
  std::thread publisher([&] {
    const std::string payload = R"({"order":8812,"qty":"0.5","price":"64210.5","side":"buy","symbol":"BTC-USD"})";
    for (size_t sent = 0; sent < messages;) {
      nlohmann::json batch = {{"messages", nlohmann::json::array()}};
      for (size_t k = 0; k < 1000 && sent < messages; ++k, ++sent) {
        batch["messages"].push_back({{"channel", "rate"}, {"type", "order_filled"}, {"payload", nlohmann::json::parse(payload)}});
      }
      if (http_post(server.api, "/v1/publish/batch", batch.dump()) != 200) break;
    }
  });
  const double cpu0 = thread_cpu_seconds();
  const bool rate_ok = pump(base, [&] { return rate_received >= messages; }, 300);
  const double cpu_used = thread_cpu_seconds() - cpu0;
  publisher.join();
  const double rate_s = std::chrono::duration<double>(last - first).count();

  nlohmann::json out = {
      {"connections", connections},
      {"connected", subscribed},
      {"source_addresses", sources},
      {"connect_seconds", connect_s},
      {"client_rss_kib_before", rss_before},
      {"client_rss_kib_after", rss_after},
      {"client_rss_bytes_per_connection", bytes_per_conn},
      {"client_heap_bytes_per_connection", heap_per_conn},
      {"fanout_one_message_ms", fanout_ms},
      {"fanout_received", received},
      {"reconnects_or_failures", failures},
      {"rate_messages", messages},
      {"rate_received", rate_received},
      {"rate_msgs_per_s_wall", rate_s > 0 ? static_cast<double>(rate_received) / rate_s : 0},
      {"client_loop_cpu_s_during_rate", cpu_used},
      {"rate_msgs_per_client_cpu_s", cpu_used > 0 ? static_cast<double>(rate_received) / cpu_used : 0},
  };
  std::printf("%s\n", out.dump(2).c_str());
  rate_client.reset();
  clients.clear();
  event_base_free(base);
  if (!all_up || !fan_ok || !rate_ok || received != connections || rate_received != messages) {
    std::fprintf(stderr, "client_load: FAILED (all_up %d, fanout %d, rate %d)\n", all_up, fan_ok, rate_ok);
    return 1;
  }
  return 0;
}
