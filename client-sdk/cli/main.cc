// `herald`: the command-line client. sub and ping use the SDK (herald/client.h), pub the
// HTTP API, token signs development tokens. Owns flag parsing, output formats and exit
// codes; no protocol code here.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <toml.hpp>
#include <thread>
#include <vector>

#include "client-sdk/cli/http_client.h"
#include "client-sdk/cli/token.h"
#include "herald/client.h"

namespace {

// Exit codes (also in `herald --help`).
constexpr int kExitOk = 0;
constexpr int kExitUsage = 2;     // bad flags or arguments
constexpr int kExitRefused = 3;   // the server refused: auth, permission, bad request
constexpr int kExitTimeout = 4;   // --timeout passed first
constexpr int kExitConnect = 5;   // cannot connect: unreachable, TLS or certificate failure

constexpr const char* kDevSecret = "herald-dev-secret";
constexpr const char* kDevApiKey = "herald-dev-api-key";

std::atomic<bool> g_interrupted{false};
void on_signal(int) { g_interrupted = true; }

bool split_host_port(const std::string& s, std::string& host, uint16_t& port) {
  const auto colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == s.size()) return false;
  host = s.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  try {
    const int p = std::stoi(s.substr(colon + 1));
    if (p <= 0 || p > 65535) return false;
    port = static_cast<uint16_t>(p);
  } catch (...) {
    return false;
  }
  return true;
}

// The signing secret: --secret, then $HERALD_JWT_SECRET, then auth.jwt_secret of --config,
// then the development default (with a note on stderr).
std::string resolve_secret(const std::string& flag, const std::string& config_file) {
  if (!flag.empty()) return flag;
  if (const char* env = std::getenv("HERALD_JWT_SECRET"); env != nullptr && *env != '\0') return env;
  if (!config_file.empty()) {
    const auto data = toml::parse(config_file);
    const std::string s = toml::find_or<std::string>(data, "auth", "jwt_secret", std::string());
    if (!s.empty()) return s;
    throw std::runtime_error(config_file + " has no auth.jwt_secret");
  }
  std::cerr << "herald: using the development secret (set --secret, HERALD_JWT_SECRET or --config)\n";
  return kDevSecret;
}

// Flags shared by sub and ping: where to connect and who to be.
struct ConnectFlags {
  std::string server = "127.0.0.1:7600";
  bool tls = false;
  std::string ca_file, server_name;
  bool insecure = false;
  std::string token, user, secret, config;
  double timeout_s = 0;
  uint32_t heartbeat_timeout_ms = 0;

  void add(CLI::App* app) {
    app->add_option("-s,--server", server, "heraldd binary listener, host:port")->capture_default_str();
    app->add_flag("--tls", tls, "connect with TLS (certificate verified)");
    app->add_option("--ca", ca_file, "PEM file of CAs to trust (default: the system's)");
    app->add_option("--server-name", server_name, "name for SNI and the certificate check (default: the host)");
    app->add_flag("--insecure", insecure, "do not verify the certificate (development only)");
    app->add_option("-t,--token", token, "token (JWT) to authenticate with");
    app->add_option("-u,--user", user, "mint a development token for this user instead of --token");
    app->add_option("--secret", secret, "secret for --user tokens (default: $HERALD_JWT_SECRET, --config, dev)");
    app->add_option("--config", config, "heraldd TOML config to read auth.jwt_secret from");
    app->add_option("--timeout", timeout_s, "give up after this many seconds (0 = never)");
    app->add_option("--heartbeat-timeout-ms", heartbeat_timeout_ms,
                    "declare the connection dead after this silence (0 = the server's heartbeat + pong timeout)");
  }

  // Fills `o`; false with a message on stderr for bad flags.
  bool apply(herald::Options& o, const std::vector<std::string>& grants) const {
    if (!split_host_port(server, o.host, o.port)) {
      std::cerr << "herald: --server must be host:port, got \"" << server << "\"\n";
      return false;
    }
    o.tls = tls;
    o.ca_file = ca_file;
    o.server_name = server_name;
    o.verify_peer = !insecure;
    o.heartbeat_timeout_ms = heartbeat_timeout_ms;
    if (!token.empty()) {
      o.token = token;
    } else if (!user.empty()) {
      const std::string key = resolve_secret(secret, config);
      herald::cli::TokenRequest r;
      r.user = user;
      r.channels = grants;
      // A fresh token at every connect and refresh.
      o.token_provider = [r, key] { return herald::cli::mint_token(r, key, std::time(nullptr)); };
    } else {
      std::cerr << "herald: give --token or --user\n";
      return false;
    }
    return true;
  }
};

int exit_code_for(int code) {
  switch (code) {
    case 700: case 701: case 702: case 703:
      return kExitConnect;
    default:
      return kExitRefused;
  }
}

// Waits until `done` or interrupt or timeout; the client runs on its own thread.
struct Waiter {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  int exit_code = kExitOk;

  void finish(int code) {
    std::lock_guard<std::mutex> lock(mu);
    if (done) return;
    done = true;
    exit_code = code;
    cv.notify_all();
  }

  int wait(double timeout_s) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
    std::unique_lock<std::mutex> lock(mu);
    while (!done) {
      if (g_interrupted) return kExitOk;
      if (timeout_s > 0 && std::chrono::steady_clock::now() >= deadline) return kExitTimeout;
      cv.wait_for(lock, std::chrono::milliseconds(50));
    }
    return exit_code;
  }
};

std::string printable(std::string_view s) {
  std::string out;
  for (const char c : s) {
    out += (static_cast<unsigned char>(c) < 0x20 && c != '\t') ? ' ' : c;
  }
  return out;
}

int run_sub(ConnectFlags& cf, const std::vector<std::string>& channels, bool json, uint64_t count,
            const std::string& position_file, bool quiet) {
  herald::Options o;
  if (!cf.apply(o, channels)) return kExitUsage;
  o.position_file = position_file;
  o.client_name = "herald-cli/" HERALD_VERSION;
  Waiter w;
  std::atomic<uint64_t> received{0};
  herald::Handlers h;
  h.on_message = [&](const herald::Message& m) {
    if (json) {
      nlohmann::json j = {{"channel", m.channel}, {"epoch", m.epoch}, {"offset", m.offset},
                          {"type", m.type},       {"message_id", m.message_id}, {"priority", m.priority},
                          {"created_at_ms", m.created_at_ms}, {"content_type", m.content_type}};
      nlohmann::json payload = nlohmann::json::parse(m.payload, nullptr, false);
      if (m.content_type == "application/json" && !payload.is_discarded()) {
        j["payload"] = payload;
      } else {
        j["payload"] = std::string(m.payload);
      }
      std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
    } else {
      std::cout << m.channel << ' ' << m.offset << ' ' << (m.type.empty() ? "-" : std::string(m.type)) << ' '
                << printable(m.payload) << '\n';
    }
    std::cout.flush();
    if (count != 0 && ++received >= count) w.finish(kExitOk);
  };
  h.on_subscribed = [&](const herald::Subscribed& s) {
    if (quiet) return;
    std::cerr << "herald: subscribed to " << s.channel << " (epoch " << s.epoch << ", offset " << s.offset
              << (s.lost_history() ? "; history LOST, missed messages will not arrive)" : s.recovered ? "; resumed)" : ")")
              << '\n';
  };
  h.on_state = [&](herald::ConnectionState st, const herald::Error* e) {
    if (!quiet || st == herald::ConnectionState::kFailed) {
      std::cerr << "herald: " << herald::to_string(st);
      if (e != nullptr) std::cerr << ": " << e->name << " (" << e->code << "): " << e->text;
      std::cerr << '\n';
    }
    if (st == herald::ConnectionState::kFailed) w.finish(e != nullptr ? exit_code_for(e->code) : kExitRefused);
  };
  h.on_error = [&](const herald::Error& e) {
    std::cerr << "herald: error " << e.name << " (" << e.code << ")" << (e.channel.empty() ? "" : " on ")
              << e.channel << ": " << e.text << '\n';
    if (!e.channel.empty() && !e.temporary) w.finish(kExitRefused);
  };
  std::string error;
  auto client = herald::Client::create(std::move(o), std::move(h), &error);
  if (!client) {
    std::cerr << "herald: " << error << '\n';
    return kExitUsage;
  }
  for (const std::string& c : channels) {
    if (client->subscribe(c) != 0) {
      std::cerr << "herald: invalid channel name \"" << c << "\"\n";
      return kExitUsage;
    }
  }
  client->start();
  const int rc = w.wait(cf.timeout_s);
  client->stop();
  if (rc == kExitTimeout) std::cerr << "herald: timed out after " << cf.timeout_s << " s\n";
  return rc;
}

int run_ping(ConnectFlags& cf, int count, int interval_ms) {
  herald::Options o;
  if (!cf.apply(o, {})) return kExitUsage;
  o.client_name = "herald-cli/" HERALD_VERSION;
  Waiter connected, failed;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<uint64_t> rtts;
  const auto t0 = std::chrono::steady_clock::now();
  herald::Handlers h;
  h.on_state = [&](herald::ConnectionState st, const herald::Error* e) {
    if (st == herald::ConnectionState::kConnected) {
      const auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      std::printf("connected to %s in %.2f ms (%s, handshake and auth included)\n", cf.server.c_str(), ms,
                  cf.tls ? "TLS" : "TCP");
      std::fflush(stdout);
      connected.finish(kExitOk);
    } else if (e != nullptr) {
      std::fprintf(stderr, "herald: %s: %s (%d): %s\n", std::string(herald::to_string(st)).c_str(),
                   std::string(e->name).c_str(), e->code, std::string(e->text).c_str());
      // A connection check does not retry: the first failure is the answer.
      if (st == herald::ConnectionState::kFailed || st == herald::ConnectionState::kReconnecting) {
        failed.finish(exit_code_for(e->code));
        connected.finish(exit_code_for(e->code));
      }
    }
  };
  h.on_pong = [&](uint64_t rtt_us) {
    std::lock_guard<std::mutex> lock(mu);
    rtts.push_back(rtt_us);
    cv.notify_all();
  };
  std::string error;
  auto client = herald::Client::create(std::move(o), std::move(h), &error);
  if (!client) {
    std::cerr << "herald: " << error << '\n';
    return kExitUsage;
  }
  client->start();
  const double timeout = cf.timeout_s > 0 ? cf.timeout_s : 10;
  int rc = connected.wait(timeout);
  if (rc != kExitOk || g_interrupted) {
    if (rc == kExitTimeout) std::cerr << "herald: could not connect within " << timeout << " s\n";
    client->stop();
    return rc;
  }
  for (int i = 0; i < count && !g_interrupted; ++i) {
    if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(interval_ms));
    const size_t before = rtts.size();
    if (client->ping() != 0) {
      std::cerr << "herald: connection lost\n";
      client->stop();
      return kExitConnect;
    }
    std::unique_lock<std::mutex> lock(mu);
    if (!cv.wait_for(lock, std::chrono::milliseconds(static_cast<int64_t>(timeout * 1000)),
                     [&] { return rtts.size() > before; })) {
      std::cerr << "herald: no Pong within " << timeout << " s\n";
      client->stop();
      return kExitTimeout;
    }
    std::printf("pong %d: rtt %.3f ms\n", i + 1, static_cast<double>(rtts.back()) / 1000.0);
    std::fflush(stdout);
  }
  client->stop();
  if (!rtts.empty()) {
    uint64_t lo = UINT64_MAX, hi = 0, sum = 0;
    for (const uint64_t r : rtts) {
      lo = std::min(lo, r);
      hi = std::max(hi, r);
      sum += r;
    }
    std::printf("%zu pongs: min %.3f / avg %.3f / max %.3f ms\n", rtts.size(), static_cast<double>(lo) / 1000.0,
                static_cast<double>(sum) / 1000.0 / static_cast<double>(rtts.size()), static_cast<double>(hi) / 1000.0);
  }
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);
  ::signal(SIGINT, on_signal);
  ::signal(SIGTERM, on_signal);
  CLI::App app{"herald: the Herald command-line client (subscribe, publish, mint tokens, ping).\n"
               "Exit codes: 0 ok, 2 usage, 3 refused by the server, 4 timeout, 5 cannot connect."};
  app.require_subcommand(1);
  app.set_version_flag("--version", HERALD_VERSION);

  // ---- sub
  CLI::App* sub = app.add_subcommand("sub", "subscribe to channels and print their messages (resumes after reconnects)");
  ConnectFlags sub_flags;
  sub_flags.add(sub);
  std::vector<std::string> channels;
  bool json = false, quiet = false;
  uint64_t count = 0;
  std::string position_file;
  sub->add_option("channels", channels, "channels to subscribe to")->required();
  sub->add_flag("--json", json, "print one JSON object per message (JSON lines)");
  sub->add_option("-n,--count", count, "exit after this many messages (0 = run until interrupted)");
  sub->add_option("--position-file", position_file, "store positions here and resume from them next time");
  sub->add_flag("-q,--quiet", quiet, "no connection and subscription notes on stderr");

  // ---- pub
  CLI::App* pub = app.add_subcommand("pub", "publish one message through heraldd's HTTP API");
  std::string api = "127.0.0.1:7680", key, channel, type, priority, message_id, data, text, content_type;
  std::vector<std::string> users;
  uint32_t ttl_s = 0;
  int http_timeout_ms = 10000;
  pub->add_option("--api", api, "HTTP API address, host:port")->capture_default_str();
  pub->add_option("--key", key, "API key (default: $HERALD_API_KEY, else the development key)");
  auto* ch_opt = pub->add_option("-c,--channel", channel, "channel to publish to");
  auto* users_opt = pub->add_option("--users", users, "publish to these users' personal channels instead")->delimiter(',');
  ch_opt->excludes(users_opt);
  pub->add_option("--type", type, "application type, e.g. order_filled");
  pub->add_option("-p,--priority", priority, "P0..P3 or 0..3 (default P3)");
  pub->add_option("--id", message_id, "message id (idempotency key)");
  auto* data_opt = pub->add_option("-d,--data", data, "JSON payload");
  auto* text_opt = pub->add_option("--text", text, "text payload (sent as text/plain)");
  data_opt->excludes(text_opt);
  pub->add_option("--content-type", content_type, "content type of the payload");
  pub->add_option("--ttl", ttl_s, "seconds the message stays deliverable (0 = channel default)");
  pub->add_option("--http-timeout-ms", http_timeout_ms, "how long to wait for the answer")->capture_default_str();

  // ---- token
  CLI::App* tok = app.add_subcommand("token", "mint a development token (HS256 JWT) from the configured secret");
  herald::cli::TokenRequest treq;
  std::string tok_secret, tok_config;
  tok->add_option("-u,--user", treq.user, "user id (the token's sub)")->required();
  tok->add_option("--channels", treq.channels, "channels to grant, comma-separated; \"prefix*\" grants a prefix")
      ->delimiter(',');
  tok->add_option("--ttl", treq.ttl_s, "lifetime in seconds (0 = never expires)")->capture_default_str();
  tok->add_flag("--publish", treq.publish, "allow the token to publish");
  tok->add_option("--secret", tok_secret, "signing secret (default: $HERALD_JWT_SECRET, --config, dev)");
  tok->add_option("--config", tok_config, "heraldd TOML config to read auth.jwt_secret from");

  // ---- ping
  CLI::App* png = app.add_subcommand("ping", "connect, authenticate and measure Ping/Pong round trips");
  ConnectFlags ping_flags;
  ping_flags.add(png);
  int ping_count = 3, ping_interval_ms = 200;
  png->add_option("-n,--count", ping_count, "pings to send")->capture_default_str();
  png->add_option("--interval-ms", ping_interval_ms, "pause between pings")->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }

  try {
    if (sub->parsed()) return run_sub(sub_flags, channels, json, count, position_file, quiet);
    if (png->parsed()) {
      if (ping_count < 1) {
        std::cerr << "herald: --count must be at least 1\n";
        return kExitUsage;
      }
      return run_ping(ping_flags, ping_count, ping_interval_ms);
    }
    if (tok->parsed()) {
      std::cout << herald::cli::mint_token(treq, resolve_secret(tok_secret, tok_config), std::time(nullptr)) << '\n';
      return kExitOk;
    }
    if (pub->parsed()) {
      if (channel.empty() == users.empty()) {
        std::cerr << "herald: give --channel or --users\n";
        return kExitUsage;
      }
      nlohmann::json body = nlohmann::json::object();
      if (!channel.empty()) body["channel"] = channel;
      if (!users.empty()) body["users"] = users;
      if (!type.empty()) body["type"] = type;
      if (!priority.empty()) body["priority"] = priority;
      if (!message_id.empty()) body["message_id"] = message_id;
      if (!data.empty()) {
        nlohmann::json payload = nlohmann::json::parse(data, nullptr, false);
        if (payload.is_discarded()) {
          std::cerr << "herald: --data is not valid JSON\n";
          return kExitUsage;
        }
        body["payload"] = payload;
      }
      if (!text.empty()) {
        // The API takes bytes as base64; text goes that way with its own content type.
        body["payload_base64"] = herald::cli::base64url(text, true);
        if (content_type.empty()) content_type = "text/plain";
      }
      if (!content_type.empty()) body["content_type"] = content_type;
      if (ttl_s != 0) body["ttl_s"] = ttl_s;
      std::string host;
      uint16_t port = 0;
      if (!split_host_port(api, host, port)) {
        std::cerr << "herald: --api must be host:port, got \"" << api << "\"\n";
        return kExitUsage;
      }
      if (key.empty()) {
        const char* env = std::getenv("HERALD_API_KEY");
        key = env != nullptr && *env != '\0' ? env : kDevApiKey;
      }
      const herald::cli::HttpResult r = herald::cli::http_post(host, port, "/v1/publish", body.dump(), key, http_timeout_ms);
      if (r.status == 0) {
        std::cerr << "herald: " << api << ": " << r.error << '\n';
        return kExitConnect;
      }
      if (r.status / 100 != 2) {
        std::cerr << "herald: HTTP " << r.status << ": " << r.body << (r.body.empty() || r.body.back() == '\n' ? "" : "\n");
        return kExitRefused;
      }
      std::cout << r.body << (r.body.empty() || r.body.back() == '\n' ? "" : "\n");
      return kExitOk;
    }
  } catch (const std::exception& e) {
    std::cerr << "herald: " << e.what() << '\n';
    return kExitUsage;
  }
  return kExitUsage;
}
