// heraldd's settings: embedded defaults, a TOML file and command-line flags
// (each flag overrides the file), validated once at start-up. Start-up only:
// loading may touch the file system; nothing here runs per connection.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "server/policy.h"

namespace herald::server {


// The built-in policy for `name` (also what a [[namespace]] table's omitted
// keys default to). Either built-in that a configuration leaves out is added
// back, so policy_for always has a "":
//   ""     subscribe=grant, publish=none, history_size=100,  history_ttl_s=300
//   "user" (personal channels) durable, history_size=1000, history_ttl_s=86400; its
//          subscribe/publish rules are fixed by the server and never read.
// Any other name gets the "" values under that name.
NamespacePolicy builtin_namespace_policy(std::string_view name);

// Every setting, named "section.key" in messages, flags (--section.key) and
// TOML ([section] key = ...). docs/configuration.md describes each one.
struct Config {
  // [server]
  size_t loops = 0;                    // event loops; 0 = one per core (see loop_count())
  std::string ready_file;              // write bound addresses as JSON once listening ("" = don't)
  std::string log_level = "info";      // trace, debug, info, warn, error, off
  std::map<std::string, std::string> log_levels;  // per module, e.g. {"session":"debug"}
  uint32_t shutdown_timeout_ms = 5000;
  // [listen] "host:port" (IPv4 or [IPv6]); port 0 = any free port; "" = listener disabled.
  std::string tcp = "127.0.0.1:7600";
  std::string tls;                     // enabled when set; needs tls_cert_file and tls_key_file
  std::string api = "127.0.0.1:7680";
  std::string ws = "127.0.0.1:7690";  // WebSocket shim and demo page
  // [tls] (checked only while listen.tls is set or ws.tls is true)
  std::string tls_cert_file, tls_key_file;
  // [ws]
  bool ws_tls = false;                       // wss:// on listen.ws (tls.cert_file and tls.key_file)
  std::vector<std::string> ws_origins;       // allowed Origin values; empty = same host only; "*" = any
  uint32_t ws_handshake_timeout_ms = 5000;   // accept -> complete upgrade request
  size_t ws_max_header_bytes = 8192;         // upgrade request head
  size_t ws_max_message_bytes = 1114112;     // one received WebSocket message (larger: close 1009)
  // [auth]
  std::string jwt_secret = "herald-dev-secret";   // see default_secret()
  std::string jwt_algorithm = "HS256";            // HS256, HS384 or HS512
  std::string jwt_issuer, jwt_audience;           // checked when non-empty
  uint32_t jwt_leeway_s = 30;
  uint32_t refresh_grace_s = 30;                  // after exp: time to send Refresh before kTokenExpired
  std::vector<std::string> api_keys = {"herald-dev-api-key"};
  // [protocol]
  uint32_t handshake_timeout_ms = 10000, heartbeat_ms = 25000, pong_timeout_ms = 10000;
  uint32_t max_frame_size = 65536, max_message_size = 1048576;
  bool compression = true, checksum = false;
  std::string dictionary_file;                    // zstd dictionary to offer ("" = none)
  // [limits]
  uint32_t max_connections = 100000, max_connections_per_user = 32, max_connections_per_ip = 10000;
  uint32_t max_subscriptions = 256;
  size_t api_max_body_bytes = 1048576;
  size_t api_threads = 1;  // event loop threads serving the HTTP API (the main loop is one)
  uint32_t accept_rate = 10000;   // new connections per second on the public listeners; 0 = no limit
  uint32_t accept_burst = 20000;  // connections accepted at once above the rate
  size_t history_memory_bytes = 1073741824;  // live channels' kept publications, all together; 0 = no limit
  // [delivery]
  size_t soft_limit_bytes = 262144;
  uint32_t soft_limit_ms = 10000;
  size_t hard_limit_bytes = 1048576;
  size_t batch_bytes = 65536;
  uint32_t send_buffer_bytes = 0;  // SO_SNDBUF of client sockets; 0 = the kernel's own sizing
  uint32_t unsent_limit_bytes = 0;  // TCP_NOTSENT_LOWAT of client sockets; 0 = the kernel's default
  bool io_uring = true;            // end-of-iteration writes: one io_uring submission per loop iteration
  uint32_t dedup_window_s = 300;
  size_t publish_backlog = 16384;  // deliveries a loop may be behind before bulk publishers wait
  // [store] the durable store (SQLite in a local directory)
  std::string store_dir = "./herald-data";        // created when missing
  std::string store_synchronous = "FULL";         // FULL (survives power loss) or NORMAL (process crash only)
  uint32_t store_commit_window_us = 1000;         // group commit: wait this long for more writes
  size_t store_commit_batch = 2000;               // writes per transaction at most
  size_t store_commit_max_bytes = 1048576;        // publication bytes per transaction at most (0 = no bound)
  uint32_t store_retention_interval_ms = 1000;    // how often retention runs
  size_t store_retention_batch = 500;             // messages deleted per retention step
  // [[namespace]] tables; starts as the built-ins ("" then "user").
  std::vector<NamespacePolicy> namespaces = {builtin_namespace_policy(""),
                                             builtin_namespace_policy(kUserNamespace)};

  // The policy of a channel's namespace (namespace_of); a namespace not listed
  // gets the "" policy (or NamespacePolicy{} if a hand-built Config has no "").
  // The reference lives as long as this Config and its `namespaces` are unchanged.
  const NamespacePolicy& policy_for(std::string_view channel) const noexcept;
  // True while jwt_secret is the public development default (start-up warns).
  bool default_secret() const noexcept;
  // True while api_keys contains the public development key (start-up warns).
  bool default_api_key() const noexcept;
  // `loops`, with 0 resolved to std::thread::hardware_concurrency() (at least 1).
  size_t loop_count() const noexcept;

  bool operator==(const Config&) const = default;
};

enum class ConfigResult {
  kRun,    // `out` is complete and valid: start the server
  kExit,   // print `message` to stdout and exit 0 (--help, --version, --print-config)
  kError,  // print `message` to stderr and exit non-zero
};

// Parses argv (argv[0] is the program name). `--config FILE` loads TOML first,
// then every flag given overrides its setting; the result is validated.
// kExit: `message` is the help text (--help), the version line (--version) or
// the validated configuration as TOML (--print-config).
// kError: `message` is one line naming the setting and what is wrong, e.g.
//   listen.tcp: "1.2.3.4:99999" is not host:port with port 0-65535
// covering unknown flags, unknown TOML sections/keys, wrong types, TOML syntax,
// unreadable files and every validation rule of docs/configuration.md.
// `out` is assigned only on kRun (and on kExit from --print-config).
// Never throws. Reads the file system (config, TLS and dictionary files).
ConfigResult load_config(int argc, const char* const* argv, Config& out, std::string& message);

// Whether to_toml prints secrets (auth.jwt_secret, auth.api_keys).
enum class Secrets {
  kShow,    // exact values: --print-config, round trips through load_config
  kRedact,  // for logs: non-default secrets become "(redacted)"
};

// Every setting's current value as TOML, sections in the documented order and
// [[namespace]] last. With Secrets::kShow, load_config of the text gives back
// an equal Config.
std::string to_toml(const Config& c, Secrets secrets = Secrets::kShow);

// Splits "host:port" (IPv4 literal) or "[v6]:port" (IPv6 literal; `host` gets
// it without brackets). Port is 0-65535 in decimal. False, leaving the outputs
// unspecified, for anything else (hostnames, missing port, zone ids, ...).
bool split_host_port(std::string_view s, std::string& host, uint16_t& port);

}  // namespace herald::server
