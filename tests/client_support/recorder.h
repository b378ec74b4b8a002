// Test helpers for herald::Client against the real heraldd: Handlers that record every
// event under a mutex, waits that poll a condition with a deadline, a free TCP port, and
// publishing through the HTTP API.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "herald/client.h"
#include "tests/support/heraldd_process.h"

namespace herald::testing {

struct Got {
  std::string channel, epoch, payload;
  uint64_t offset = 0;
};

struct StateChange {
  ConnectionState state;
  int code = 0;  // 0: no error
  std::string text;
  std::chrono::steady_clock::time_point at;
};

struct SubscribedEvent {
  std::string channel, epoch;
  uint64_t offset = 0;
  bool resumed = false, recovered = false;
};

class Recorder {
 public:
  Handlers handlers() {
    Handlers h;
    h.on_message = [this](const Message& m) {
      std::lock_guard<std::mutex> lock(mu_);
      messages.push_back({std::string(m.channel), std::string(m.epoch), std::string(m.payload), m.offset});
      cv_.notify_all();
    };
    h.on_subscribed = [this](const Subscribed& s) {
      std::lock_guard<std::mutex> lock(mu_);
      subscribed.push_back({std::string(s.channel), std::string(s.epoch), s.offset, s.resumed, s.recovered});
      cv_.notify_all();
    };
    h.on_state = [this](ConnectionState st, const Error* e) {
      std::lock_guard<std::mutex> lock(mu_);
      states.push_back({st, e != nullptr ? e->code : 0, e != nullptr ? std::string(e->text) : std::string(),
                        std::chrono::steady_clock::now()});
      cv_.notify_all();
    };
    h.on_error = [this](const Error& e) {
      std::lock_guard<std::mutex> lock(mu_);
      errors.push_back({ConnectionState::kStopped, e.code, std::string(e.channel) + ": " + std::string(e.text),
                        std::chrono::steady_clock::now()});
      cv_.notify_all();
    };
    h.on_pong = [this](uint64_t rtt) {
      std::lock_guard<std::mutex> lock(mu_);
      pongs.push_back(rtt);
      cv_.notify_all();
    };
    return h;
  }

  // Polls `pred` (called under the lock) until true or `timeout_ms` passed: woken by
  // every recorded event, and every 10 ms for conditions that change elsewhere.
  bool wait(const std::function<bool()>& pred, int timeout_ms = 5000) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    std::unique_lock<std::mutex> lock(mu_);
    while (!pred()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      cv_.wait_for(lock, std::chrono::milliseconds(10));
    }
    return true;
  }
  bool wait_messages(size_t n, int timeout_ms = 5000) {
    return wait([&] { return messages.size() >= n; }, timeout_ms);
  }
  bool wait_subscribed(size_t n, int timeout_ms = 5000) {
    return wait([&] { return subscribed.size() >= n; }, timeout_ms);
  }
  bool wait_state(ConnectionState s, int timeout_ms = 5000) {
    return wait([&] { return !states.empty() && states.back().state == s; }, timeout_ms);
  }
  // Until `n` state changes to `s` carried error `code` (any state when `s` is null).
  bool wait_state_code(int code, size_t n = 1, const ConnectionState* s = nullptr, int timeout_ms = 5000) {
    return wait([&] {
      size_t seen = 0;
      for (const auto& st : states) seen += st.code == code && (s == nullptr || st.state == *s);
      return seen >= n;
    }, timeout_ms);
  }
  // Milliseconds between consecutive kConnecting changes after `since` (backoff spacing).
  std::vector<int64_t> connect_gaps_ms(std::chrono::steady_clock::time_point since) {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<int64_t> gaps;
    std::chrono::steady_clock::time_point prev{};
    bool first = true;
    for (const auto& st : states) {
      if (st.state != ConnectionState::kConnecting || st.at <= since) continue;
      if (!first) gaps.push_back(std::chrono::duration_cast<std::chrono::milliseconds>(st.at - prev).count());
      prev = st.at;
      first = false;
    }
    return gaps;
  }
  // Copies under the lock.
  template <class T>
  T snapshot(const T& field) {
    std::lock_guard<std::mutex> lock(mu_);
    return field;
  }

  std::vector<Got> messages;
  std::vector<SubscribedEvent> subscribed;
  std::vector<StateChange> states;
  std::vector<StateChange> errors;
  std::vector<uint64_t> pongs;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
};

// A port that was free a moment ago (for restarting heraldd on the same address).
inline uint16_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// POST /v1/publish {channel, payload_base64-free text payload}; returns the offset or 0.
inline uint64_t publish(const HeralddProcess& server, const std::string& channel, const std::string& text) {
  nlohmann::json body = {{"channel", channel}, {"payload", text}};
  const HttpResponse r = http(server.port("api"), "POST", "/v1/publish", body.dump());
  if (r.status != 200) return 0;
  const nlohmann::json j = r.json();
  return j.is_object() && j.contains("offset") ? j["offset"].get<uint64_t>() : 0;
}

inline Options client_options(uint16_t port, const std::string& user, std::vector<std::string> grants) {
  Options o;
  o.host = "127.0.0.1";
  o.port = port;
  o.token = make_token(user, {{"channels", grants}});
  o.reconnect_initial_ms = 50;
  o.reconnect_max_ms = 400;
  o.connect_timeout_ms = 2000;
  return o;
}

// Timeouts short enough for a test to watch a lost path being noticed and retried: the
// client pings after 500 ms of silence and gives up after 1 s; a connect (or a handshake)
// that gets no answer fails after 400 ms; retries back off from 100 to 400 ms.
inline void detect_silence_quickly(Options& o) {
  o.heartbeat_timeout_ms = 1000;
  o.connect_timeout_ms = 400;
  o.reconnect_initial_ms = 100;
  o.reconnect_max_ms = 400;
}

}  // namespace herald::testing
