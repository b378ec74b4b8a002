// Config loading: one table of settings drives the TOML reader, the flags,
// --help and to_toml, so none of them can forget a setting. Start-up only:
// errors are thrown internally and come out of load_config as one line.
#include "server/config.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <limits>
#include <stdexcept>
#include <thread>
#include <type_traits>
#include <utility>
#include <variant>

#include <CLI/CLI.hpp>
#include <toml.hpp>

#include "codec/frame_decoder.h"
#include "codec/frame_header.h"
#include "codec/negotiation.h"

#ifndef HERALD_VERSION
#define HERALD_VERSION "0.1.0"
#endif

namespace herald::server {

namespace {

constexpr std::string_view kDefaultSecret = "herald-dev-secret";
constexpr std::string_view kDefaultApiKey = "herald-dev-api-key";
constexpr size_t kMaxLoops = 256;
// Sizes must survive a round trip through TOML, whose integers are int64.
constexpr uint64_t kMaxSize = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());

static_assert(!std::is_same_v<size_t, uint32_t>, "the settings table tells size_t and uint32_t apart");

using Member = std::variant<size_t Config::*, uint32_t Config::*, bool Config::*, std::string Config::*,
                            std::vector<std::string> Config::*, std::map<std::string, std::string> Config::*>;

struct Setting {
  std::string_view section;
  std::string_view key;
  Member member;
  const char* value_name;  // placeholder in --help
  const char* help;        // one or more lines; --help appends the default
};

// The order here is the order of --help, to_toml and docs/configuration.md.
const Setting kSettings[] = {
    {"server", "loops", &Config::loops, "N", "event loops (threads); 0 = one per core; at most 256"},
    {"server", "api_threads", &Config::api_threads, "N",
     "event loop threads serving the HTTP API, each accepting on listen.api (the main loop is one); 1-64"},
    {"server", "ready_file", &Config::ready_file, "PATH",
     "once listening, write the bound addresses there as JSON (\"\" = don't)"},
    {"server", "log_level", &Config::log_level, "LEVEL", "trace, debug, info, warn, error or off"},
    {"server", "log_levels", &Config::log_levels, "MODULE=LEVEL,...",
     "per-module log levels, e.g. session=debug,api=warn"},
    {"server", "shutdown_timeout_ms", &Config::shutdown_timeout_ms, "MS",
     "on shutdown, how long connections get to close before they are dropped"},
    {"listen", "tcp", &Config::tcp, "HOST:PORT",
     "binary protocol over TCP; IPv4:port or [IPv6]:port; port 0 = any free port; \"\" = off"},
    {"listen", "tls", &Config::tls, "HOST:PORT",
     "binary protocol over TLS (needs tls.cert_file and tls.key_file); \"\" = off"},
    {"listen", "api", &Config::api, "HOST:PORT", "HTTP API for backends (keep it private); \"\" = off"},
    {"listen", "ws", &Config::ws, "HOST:PORT",
     "WebSocket shim (GET /ws) and the demo page (GET /); \"\" = off"},
    {"tls", "cert_file", &Config::tls_cert_file, "PATH",
     "PEM certificate chain (used when listen.tls is set or ws.tls is true)"},
    {"tls", "key_file", &Config::tls_key_file, "PATH",
     "PEM private key (used when listen.tls is set or ws.tls is true)"},
    {"ws", "tls", &Config::ws_tls, "BOOL", "serve wss:// on listen.ws with tls.cert_file and tls.key_file"},
    {"ws", "origins", &Config::ws_origins, "ORIGIN,...",
     "Origin values allowed to upgrade, e.g. https://app.example.com; empty = same host only; * = any"},
    {"ws", "handshake_timeout_ms", &Config::ws_handshake_timeout_ms, "MS",
     "time from accept until the upgrade request is complete; at least 1"},
    {"ws", "max_header_bytes", &Config::ws_max_header_bytes, "BYTES",
     "largest upgrade request head (answered 431); 1024-65536"},
    {"ws", "max_message_bytes", &Config::ws_max_message_bytes, "BYTES",
     "largest WebSocket message accepted (close 1009); at least 1024"},
    {"auth", "jwt_secret", &Config::jwt_secret, "SECRET",
     "HMAC key of client tokens; at least 16 bytes; the default is public (start-up warns)"},
    {"auth", "jwt_algorithm", &Config::jwt_algorithm, "ALG", "HS256, HS384 or HS512"},
    {"auth", "jwt_issuer", &Config::jwt_issuer, "TEXT", "required \"iss\" claim (\"\" = not checked)"},
    {"auth", "jwt_audience", &Config::jwt_audience, "TEXT", "required in the \"aud\" claim (\"\": tokens carrying aud are rejected)"},
    {"auth", "jwt_leeway_s", &Config::jwt_leeway_s, "S", "clock-skew leeway for \"exp\" and \"nbf\""},
    {"auth", "refresh_grace_s", &Config::refresh_grace_s, "S",
     "after a token's exp, time to send Refresh before the connection is closed (kTokenExpired)"},
    {"auth", "api_keys", &Config::api_keys, "KEY,...",
     "keys accepted by the HTTP API (visible ASCII, no spaces); the default is public (start-up warns)"},
    {"protocol", "handshake_timeout_ms", &Config::handshake_timeout_ms, "MS",
     "time from accept until Hello and Auth are done (kHandshakeTimeout); at least 1"},
    {"protocol", "heartbeat_ms", &Config::heartbeat_ms, "MS",
     "default ping interval (clients may ask for 5000-120000); 5000-120000"},
    {"protocol", "pong_timeout_ms", &Config::pong_timeout_ms, "MS",
     "time to wait for each Pong (kHeartbeatTimeout); at least 1"},
    {"protocol", "max_frame_size", &Config::max_frame_size, "BYTES",
     "largest frame body accepted from clients; 16384-16777216"},
    {"protocol", "max_message_size", &Config::max_message_size, "BYTES",
     "largest message accepted (reassembled and decompressed); 16384 to 128*(max_frame_size-12)"},
    {"protocol", "compression", &Config::compression, "BOOL", "offer zstd to clients"},
    {"protocol", "checksum", &Config::checksum, "BOOL",
     "CRC32C on every frame of every connection, even when the client did not ask"},
    {"protocol", "dictionary_file", &Config::dictionary_file, "PATH",
     "zstd dictionary offered to clients (\"\" = none)"},
    {"limits", "max_connections", &Config::max_connections, "N", "connections in total; at least 1"},
    {"limits", "max_connections_per_user", &Config::max_connections_per_user, "N",
     "connections of one user (token sub); at least 1"},
    {"limits", "max_connections_per_ip", &Config::max_connections_per_ip, "N",
     "connections from one IP address; at least 1"},
    {"limits", "max_subscriptions", &Config::max_subscriptions, "N",
     "subscriptions per connection (kTooManySubscriptions); at least 1"},
    {"limits", "api_max_body_bytes", &Config::api_max_body_bytes, "BYTES",
     "largest HTTP API request body; at least 1"},
    {"limits", "accept_rate", &Config::accept_rate, "N",
     "new connections per second on the public listeners (kRateLimited above it); 0 = no limit"},
    {"limits", "accept_burst", &Config::accept_burst, "N",
     "connections accepted at once above accept_rate; at least 1"},
    {"limits", "history_memory_bytes", &Config::history_memory_bytes, "BYTES",
     "memory the live channels' histories may hold, all together; above it the oldest kept publications "
     "go first; 0 = no limit"},
    {"delivery", "soft_limit_bytes", &Config::soft_limit_bytes, "BYTES",
     "output queued for a slow client above which P3, then P2, are shed after soft_limit_ms; "
     "at most hard_limit_bytes"},
    {"delivery", "soft_limit_ms", &Config::soft_limit_ms, "MS", "how long output may stay above the soft limit"},
    {"delivery", "hard_limit_bytes", &Config::hard_limit_bytes, "BYTES",
     "output queued for a slow client above which it is closed (kSlowConsumer); at least 1"},
    {"delivery", "batch_bytes", &Config::batch_bytes, "BYTES",
     "most bytes of queued lower-priority publications written in one batch; at least 1"},
    {"delivery", "send_buffer_bytes", &Config::send_buffer_bytes, "BYTES",
     "kernel send buffer of each client socket (SO_SNDBUF); 0 = the kernel sizes it"},
    {"delivery", "unsent_limit_bytes", &Config::unsent_limit_bytes, "BYTES",
     "most bytes a client socket holds that TCP has not sent yet (TCP_NOTSENT_LOWAT): the rest\n"
     "waits in the lanes, where P0 overtakes P3; 0 = no limit (the kernel's default)"},
    {"delivery", "io_uring", &Config::io_uring, "BOOL",
     "write the connections flushed at the end of a loop iteration with one io_uring submission\n"
     "(false: one writev each); the loop falls back to writev if the kernel refuses io_uring"},
    {"delivery", "dedup_window_s", &Config::dedup_window_s, "S",
     "how long a publisher's message id is remembered (idempotent publish)"},
    {"delivery", "publish_backlog", &Config::publish_backlog, "N",
     "deliveries an event loop may have waiting before connections publishing P2/P3 stop being read "
     "(P0/P1 publishers at 8 times this); at least 1"},
    {"store", "dir", &Config::store_dir, "PATH",
     "data directory of the durable store (SQLite, WAL mode; created when missing)"},
    {"store", "synchronous", &Config::store_synchronous, "MODE",
     "FULL: an acknowledged durable message survives power loss; NORMAL: it survives a process "
     "crash, not power loss (faster)"},
    {"store", "commit_window_us", &Config::store_commit_window_us, "US",
     "group commit: how long the store thread waits for more writes before committing; 0-100000"},
    {"store", "commit_batch", &Config::store_commit_batch, "N", "writes per transaction at most; at least 1"},
    {"store", "commit_max_bytes", &Config::store_commit_max_bytes, "BYTES",
     "publication bytes per transaction at most (bounds the fsync every publisher in it waits for); 0 = no bound"},
    {"store", "retention_interval_ms", &Config::store_retention_interval_ms, "MS",
     "how often expired and excess messages are deleted (in small steps); at least 10"},
    {"store", "retention_batch", &Config::store_retention_batch, "N",
     "messages deleted per retention step; at least 1"},
};

constexpr std::string_view kNamespaceKeys[] = {"name",          "subscribe", "publish",     "history_size",
                                               "history_ttl_s", "durable",   "latest_value"};

// Thrown inside this file only; load_config turns it into kError.
class ConfigError : public std::runtime_error {
 public:
  explicit ConfigError(const std::string& m) : std::runtime_error(m) {}
};

std::string full_name(const Setting& s) {
  std::string n(s.section);
  n += '.';
  n += s.key;
  return n;
}

const Setting* find_setting(std::string_view section, std::string_view key) {
  for (const Setting& s : kSettings)
    if (s.section == section && s.key == key) return &s;
  return nullptr;
}

bool is_section(std::string_view name) {
  return std::any_of(std::begin(kSettings), std::end(kSettings), [&](const Setting& s) { return s.section == name; });
}

// A value quoted for messages: printable ASCII as is, the rest escaped, so a
// stray space or control byte is visible.
std::string in_quotes(std::string_view v) {
  std::string q = "\"";
  for (const char ch : v) {
    const auto u = static_cast<unsigned char>(ch);
    if (ch == '"' || ch == '\\') {
      q += '\\';
      q += ch;
    } else if (u < 0x20 || u == 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      q += "\\x";
      q += kHex[u >> 4];
      q += kHex[u & 15];
    } else {
      q += ch;
    }
  }
  q += '"';
  return q;
}

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// " (did you mean x?)" for the closest candidate within 2 edits, else "".
std::string suggestion(std::string_view typo, const std::vector<std::string>& candidates) {
  const std::string* best = nullptr;
  size_t best_d = 3;
  for (const auto& c : candidates) {
    const size_t d = edit_distance(typo, c);
    if (d < best_d) {
      best_d = d;
      best = &c;
    }
  }
  return best ? " (did you mean " + *best + "?)" : std::string();
}

std::vector<std::string> all_setting_names() {
  std::vector<std::string> names;
  for (const Setting& s : kSettings) names.push_back(full_name(s));
  for (const auto k : kNamespaceKeys) names.push_back("namespace." + std::string(k));
  return names;
}

bool parse_unsigned(std::string_view text, uint64_t max, uint64_t& out) {
  if (text.empty() || text.size() > 20) return false;
  for (const char ch : text)
    if (ch < '0' || ch > '9') return false;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size() && out <= max;
}

template <typename T>
constexpr uint64_t max_of() {
  return std::is_same_v<T, uint32_t> ? std::numeric_limits<uint32_t>::max() : kMaxSize;
}

template <typename T>
T unsigned_from_text(const std::string& name, std::string_view text) {
  uint64_t v = 0;
  if (!parse_unsigned(text, max_of<T>(), v)) {
    throw ConfigError(name + ": " + in_quotes(text) + " is not an integer from 0 to " + std::to_string(max_of<T>()));
  }
  return static_cast<T>(v);
}

bool bool_from_text(const std::string& name, std::string_view text) {
  if (text == "true" || text == "1" || text == "yes" || text == "on") return true;
  if (text == "false" || text == "0" || text == "no" || text == "off") return false;
  throw ConfigError(name + ": " + in_quotes(text) + " is not true or false");
}

// "a,b,c" -> {a, b, c}; "" -> {} (so a flag can empty a list).
std::vector<std::string> split_list(std::string_view text) {
  std::vector<std::string> parts;
  if (text.empty()) return parts;
  size_t start = 0;
  while (true) {
    const size_t comma = text.find(',', start);
    parts.emplace_back(text.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return parts;
}

// "k=v,k2=v2" -> pairs, in order.
std::vector<std::pair<std::string, std::string>> split_pairs(const std::string& name, std::string_view text) {
  std::vector<std::pair<std::string, std::string>> pairs;
  for (const auto& part : split_list(text)) {
    const size_t eq = part.find('=');
    if (eq == std::string::npos) throw ConfigError(name + ": " + in_quotes(part) + " is not key=value");
    pairs.emplace_back(part.substr(0, eq), part.substr(eq + 1));
  }
  return pairs;
}

NamespacePolicy::Subscribe subscribe_from_text(std::string_view v, const std::string& where) {
  if (v == "any") return NamespacePolicy::Subscribe::kAny;
  if (v == "grant") return NamespacePolicy::Subscribe::kGrant;
  if (v == "none") return NamespacePolicy::Subscribe::kNone;
  throw ConfigError("namespace.subscribe: " + in_quotes(v) + " is not any, grant or none" + where);
}

NamespacePolicy::Publish publish_from_text(std::string_view v, const std::string& where) {
  if (v == "none") return NamespacePolicy::Publish::kNone;
  if (v == "grant") return NamespacePolicy::Publish::kGrant;
  if (v == "any") return NamespacePolicy::Publish::kAny;
  throw ConfigError("namespace.publish: " + in_quotes(v) + " is not none, grant or any" + where);
}

std::string_view to_text(NamespacePolicy::Subscribe s) {
  switch (s) {
    case NamespacePolicy::Subscribe::kAny: return "any";
    case NamespacePolicy::Subscribe::kGrant: return "grant";
    case NamespacePolicy::Subscribe::kNone: return "none";
  }
  return "?";
}

std::string_view to_text(NamespacePolicy::Publish p) {
  switch (p) {
    case NamespacePolicy::Publish::kNone: return "none";
    case NamespacePolicy::Publish::kGrant: return "grant";
    case NamespacePolicy::Publish::kAny: return "any";
  }
  return "?";
}

// A setting's value as flag text (also the default shown by --help).
std::string flag_text(const Config& c, const Setting& s) {
  return std::visit(
      [&](auto m) -> std::string {
        const auto& v = c.*m;
        using F = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<F, bool>) {
          return v ? "true" : "false";
        } else if constexpr (std::is_same_v<F, size_t> || std::is_same_v<F, uint32_t>) {
          return std::to_string(v);
        } else if constexpr (std::is_same_v<F, std::string>) {
          return v;
        } else if constexpr (std::is_same_v<F, std::vector<std::string>>) {
          std::string out;
          for (const auto& e : v) out += (out.empty() ? "" : ",") + e;
          return out;
        } else {
          std::string out;
          for (const auto& [k, l] : v) out += (out.empty() ? "" : ",") + k + "=" + l;
          return out;
        }
      },
      s.member);
}

// --- command-line values -----------------------------------------------------

// Applies the values of one flag (every occurrence, in order) to `c`.
void set_from_flag(Config& c, const Setting& s, const std::vector<std::string>& values) {
  const std::string name = full_name(s);
  std::visit(
      [&](auto m) {
        auto& v = c.*m;
        using F = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<F, bool>) {
          v = bool_from_text(name, values.back());
        } else if constexpr (std::is_same_v<F, size_t> || std::is_same_v<F, uint32_t>) {
          v = unsigned_from_text<F>(name, values.back());
        } else if constexpr (std::is_same_v<F, std::string>) {
          v = values.back();
        } else if constexpr (std::is_same_v<F, std::vector<std::string>>) {
          // Every occurrence adds to the list; the file's list is replaced.
          v.clear();
          for (const auto& text : values)
            for (auto& e : split_list(text)) v.push_back(std::move(e));
        } else {
          v.clear();
          for (const auto& text : values) {
            for (auto& [k, l] : split_pairs(name, text)) {
              if (!v.emplace(k, l).second) throw ConfigError(name + ": module " + in_quotes(k) + " is given twice");
            }
          }
        }
      },
      s.member);
}

// One --namespace "name=news,subscribe=any,..." value.
NamespacePolicy namespace_from_flag(const std::string& spec) {
  const std::string where = " (--namespace " + in_quotes(spec) + ")";
  std::vector<std::pair<std::string, std::string>> pairs;
  try {
    pairs = split_pairs("namespace", spec);
  } catch (const ConfigError& e) {
    throw ConfigError(e.what() + where);
  }
  const auto name_it = std::find_if(pairs.begin(), pairs.end(), [](const auto& p) { return p.first == "name"; });
  if (name_it == pairs.end()) throw ConfigError("namespace.name: missing" + where);
  NamespacePolicy p = builtin_namespace_policy(name_it->second);
  p.name = name_it->second;
  std::vector<std::string> seen;
  for (const auto& [k, v] : pairs) {
    if (std::find(seen.begin(), seen.end(), k) != seen.end())
      throw ConfigError("namespace." + k + ": given twice" + where);
    seen.push_back(k);
    if (k == "name") continue;
    if (k == "subscribe") {
      p.subscribe = subscribe_from_text(v, where);
    } else if (k == "publish") {
      p.publish = publish_from_text(v, where);
    } else if (k == "history_size") {
      uint64_t n = 0;
      if (!parse_unsigned(v, kMaxSize, n))
        throw ConfigError("namespace.history_size: " + in_quotes(v) + " is not an integer from 0 to " +
                          std::to_string(kMaxSize) + where);
      p.history_size = static_cast<size_t>(n);
    } else if (k == "history_ttl_s") {
      uint64_t n = 0;
      if (!parse_unsigned(v, std::numeric_limits<uint32_t>::max(), n))
        throw ConfigError("namespace.history_ttl_s: " + in_quotes(v) + " is not an integer from 0 to 4294967295" +
                          where);
      p.history_ttl_s = static_cast<uint32_t>(n);
    } else if (k == "durable") {
      p.durable = bool_from_text("namespace.durable", v);
    } else if (k == "latest_value") {
      p.latest_value = bool_from_text("namespace.latest_value", v);
    } else {
      std::vector<std::string> keys(std::begin(kNamespaceKeys), std::end(kNamespaceKeys));
      for (auto& key : keys) key = "namespace." + key;
      throw ConfigError("namespace." + k + ": unknown setting" + where + suggestion("namespace." + k, keys));
    }
  }
  return p;
}

// --- TOML values -------------------------------------------------------------

using TomlValue = toml::basic_value<toml::discard_comments, std::map, std::vector>;

std::string toml_where(const TomlValue& v) {
  const auto loc = v.location();
  return " (" + in_quotes(loc.file_name()) + " line " + std::to_string(loc.line()) + ")";
}

std::string type_name(const TomlValue& v) {
  switch (v.type()) {
    case toml::value_t::boolean: return "a boolean";
    case toml::value_t::integer: return "an integer";
    case toml::value_t::floating: return "a float";
    case toml::value_t::string: return "a string";
    case toml::value_t::array: return "an array";
    case toml::value_t::table: return "a table";
    default: return "a date/time";
  }
}

template <typename T>
T unsigned_from_toml(const std::string& name, const TomlValue& v) {
  if (!v.is_integer()) throw ConfigError(name + ": expected an integer, got " + type_name(v) + toml_where(v));
  const int64_t n = v.as_integer();
  if (n < 0 || static_cast<uint64_t>(n) > max_of<T>())
    throw ConfigError(name + ": " + std::to_string(n) + " is not from 0 to " + std::to_string(max_of<T>()) +
                      toml_where(v));
  return static_cast<T>(n);
}

std::string string_from_toml(const std::string& name, const TomlValue& v) {
  if (!v.is_string()) throw ConfigError(name + ": expected a string, got " + type_name(v) + toml_where(v));
  return v.as_string().str;
}

void set_from_toml(Config& c, const Setting& s, const TomlValue& v) {
  const std::string name = full_name(s);
  std::visit(
      [&](auto m) {
        auto& out = c.*m;
        using F = std::decay_t<decltype(out)>;
        if constexpr (std::is_same_v<F, bool>) {
          if (!v.is_boolean())
            throw ConfigError(name + ": expected true or false, got " + type_name(v) + toml_where(v));
          out = v.as_boolean();
        } else if constexpr (std::is_same_v<F, size_t> || std::is_same_v<F, uint32_t>) {
          out = unsigned_from_toml<F>(name, v);
        } else if constexpr (std::is_same_v<F, std::string>) {
          out = string_from_toml(name, v);
        } else if constexpr (std::is_same_v<F, std::vector<std::string>>) {
          if (!v.is_array())
            throw ConfigError(name + ": expected an array of strings, got " + type_name(v) + toml_where(v));
          out.clear();
          for (const auto& e : v.as_array()) out.push_back(string_from_toml(name, e));
        } else {
          if (!v.is_table())
            throw ConfigError(name + ": expected a table of module = \"level\", got " + type_name(v) +
                              toml_where(v));
          out.clear();
          for (const auto& [k, l] : v.as_table()) out[k] = string_from_toml(name + "." + k, l);
        }
      },
      s.member);
}

NamespacePolicy namespace_from_toml(const TomlValue& t, size_t index) {
  const std::string where_n = " ([[namespace]] #" + std::to_string(index + 1) + ", " + toml_where(t).substr(2);
  if (!t.is_table()) throw ConfigError("namespace: expected [[namespace]] tables" + toml_where(t));
  const auto& table = t.as_table();
  const auto name_it = table.find("name");
  if (name_it == table.end()) throw ConfigError("namespace.name: missing" + where_n);
  const std::string name = string_from_toml("namespace.name", name_it->second);
  const std::string where = " (namespace " + in_quotes(name) + ", " + toml_where(t).substr(2);
  NamespacePolicy p = builtin_namespace_policy(name);
  p.name = name;
  for (const auto& [k, v] : table) {
    if (k == "name") continue;
    if (k == "subscribe") {
      p.subscribe = subscribe_from_text(string_from_toml("namespace.subscribe", v), where);
    } else if (k == "publish") {
      p.publish = publish_from_text(string_from_toml("namespace.publish", v), where);
    } else if (k == "history_size") {
      p.history_size = unsigned_from_toml<size_t>("namespace.history_size", v);
    } else if (k == "history_ttl_s") {
      p.history_ttl_s = unsigned_from_toml<uint32_t>("namespace.history_ttl_s", v);
    } else if (k == "durable" || k == "latest_value") {
      if (!v.is_boolean())
        throw ConfigError("namespace." + k + ": expected true or false, got " + type_name(v) + toml_where(v));
      (k == "durable" ? p.durable : p.latest_value) = v.as_boolean();
    } else {
      std::vector<std::string> keys(std::begin(kNamespaceKeys), std::end(kNamespaceKeys));
      for (auto& key : keys) key = "namespace." + key;
      throw ConfigError("namespace." + k + ": unknown setting" + toml_where(v) + suggestion("namespace." + k, keys));
    }
  }
  return p;
}

// Turns toml11's multi-line report into "FILE line N: what".
std::string one_line_syntax_error(const std::string& path, const toml::exception& e) {
  std::string what = e.what();
  what = what.substr(0, what.find('\n'));
  if (what.rfind("[error] ", 0) == 0) what.erase(0, 8);
  // Drop toml11's internal function name ("toml::parse_key_value_pair: ").
  if (what.rfind("toml::", 0) == 0) {
    const size_t colon = what.find(": ");
    if (colon != std::string::npos) what.erase(0, colon + 2);
  }
  return "--config: " + in_quotes(path) + " line " + std::to_string(e.location().line()) + ": " + what;
}

// The problem with a file that must exist and be readable, or "".
std::string file_problem(const std::string& path) {
  std::error_code ec;
  const auto st = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(st)) return "does not exist";
  if (std::filesystem::is_directory(st)) return "is a directory";
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::string("cannot be read: ") + std::strerror(errno);
  ::close(fd);
  return {};
}

void apply_toml_file(const std::string& path, Config& c) {
  const std::string problem = file_problem(path);
  if (!problem.empty()) throw ConfigError("--config: " + in_quotes(path) + " " + problem);
  TomlValue root;
  try {
    root = toml::parse<toml::discard_comments, std::map, std::vector>(path);
  } catch (const toml::exception& e) {
    throw ConfigError(one_line_syntax_error(path, e));
  } catch (const std::exception& e) {
    throw ConfigError("--config: " + in_quotes(path) + ": " + e.what());
  }
  std::vector<std::string> sections;
  for (const Setting& s : kSettings)
    if (std::find(sections.begin(), sections.end(), s.section) == sections.end()) sections.emplace_back(s.section);
  sections.emplace_back("namespace");

  for (const auto& [section, body] : root.as_table()) {
    if (section == "namespace") {
      if (!body.is_array()) throw ConfigError("namespace: expected [[namespace]] tables" + toml_where(body));
      c.namespaces.clear();
      const auto& items = body.as_array();
      for (size_t i = 0; i < items.size(); ++i) c.namespaces.push_back(namespace_from_toml(items[i], i));
      continue;
    }
    if (!is_section(section)) {
      throw ConfigError(section + ": unknown " + (body.is_table() ? "section" : "setting") + toml_where(body) +
                        suggestion(section, body.is_table() ? sections : all_setting_names()));
    }
    if (!body.is_table()) throw ConfigError(section + ": expected a [" + section + "] table" + toml_where(body));
    for (const auto& [key, value] : body.as_table()) {
      const Setting* s = find_setting(section, key);
      if (s == nullptr) {
        const std::string name = section + "." + key;
        throw ConfigError(name + ": unknown setting" + toml_where(value) + suggestion(name, all_setting_names()));
      }
      set_from_toml(c, *s, value);
    }
  }
}

// --- validation --------------------------------------------------------------

bool valid_level(std::string_view l) {
  return l == "trace" || l == "debug" || l == "info" || l == "warn" || l == "error" || l == "off";
}

bool valid_module_name(std::string_view m) {
  if (m.empty()) return false;
  return std::all_of(m.begin(), m.end(), [](char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
           ch == '.' || ch == '-';
  });
}

bool valid_namespace_name(std::string_view n) {
  // A channel is at most 255 bytes and "ns:x" needs ':' and one more byte.
  return n.empty() || (n.size() <= 253 && n.find(':') == std::string_view::npos && valid_channel_name(n));
}

void fail(const std::string& name, const std::string& what) { throw ConfigError(name + ": " + what); }

void check_range(const std::string& name, uint64_t v, uint64_t lo, uint64_t hi) {
  if (v < lo || v > hi)
    fail(name, std::to_string(v) + " is outside " + std::to_string(lo) + "-" + std::to_string(hi));
}

void check_at_least_1(const std::string& name, uint64_t v) {
  if (v == 0) fail(name, "must be at least 1");
}

void check_file(const std::string& name, const std::string& path) {
  const std::string problem = file_problem(path);
  if (!problem.empty()) fail(name, in_quotes(path) + " " + problem);
}

void validate(const Config& c) {
  // [server]
  if (c.loops > kMaxLoops) fail("server.loops", std::to_string(c.loops) + " is more than 256");
  if (!c.ready_file.empty()) {
    const auto dir = std::filesystem::path(c.ready_file).parent_path();
    std::error_code ec;
    if (!dir.empty() && !std::filesystem::is_directory(dir, ec))
      fail("server.ready_file", "directory " + in_quotes(dir.string()) + " does not exist");
  }
  static const char* const kLevels = " is not trace, debug, info, warn, error or off";
  if (!valid_level(c.log_level)) fail("server.log_level", in_quotes(c.log_level) + kLevels);
  for (const auto& [module, level] : c.log_levels) {
    if (!valid_module_name(module))
      fail("server.log_levels", "module " + in_quotes(module) + " is not a name of letters, digits, _ . -");
    if (!valid_level(level)) fail("server.log_levels", module + "=" + in_quotes(level) + kLevels);
  }

  // [listen]
  struct Listener {
    const char* name;
    const std::string& value;
  };
  const Listener listeners[] = {
      {"listen.tcp", c.tcp}, {"listen.tls", c.tls}, {"listen.api", c.api}, {"listen.ws", c.ws}};
  for (size_t i = 0; i < std::size(listeners); ++i) {
    const auto& l = listeners[i];
    if (l.value.empty()) continue;
    std::string host;
    uint16_t port = 0;
    if (!split_host_port(l.value, host, port))
      fail(l.name, in_quotes(l.value) + " is not host:port with port 0-65535 (IPv4 or [IPv6] address)");
    for (size_t j = 0; j < i; ++j) {
      if (port != 0 && listeners[j].value == l.value)
        fail(l.name, in_quotes(l.value) + " is also " + listeners[j].name);
    }
  }

  // [tls]
  if (!c.tls.empty() || (c.ws_tls && !c.ws.empty())) {
    if (c.tls_cert_file.empty()) fail("tls.cert_file", "required when listen.tls is set or ws.tls is true");
    if (c.tls_key_file.empty()) fail("tls.key_file", "required when listen.tls is set or ws.tls is true");
    check_file("tls.cert_file", c.tls_cert_file);
    check_file("tls.key_file", c.tls_key_file);
  }

  // [ws]
  check_at_least_1("ws.handshake_timeout_ms", c.ws_handshake_timeout_ms);
  check_range("ws.max_header_bytes", c.ws_max_header_bytes, 1024, 65536);
  if (c.ws_max_message_bytes < 1024) fail("ws.max_message_bytes", std::to_string(c.ws_max_message_bytes) + " is less than 1024");
  for (const std::string& o : c.ws_origins) {
    if (o.empty() || !std::all_of(o.begin(), o.end(), [](char ch) { return ch > ' ' && ch < 0x7f; }))
      fail("ws.origins", in_quotes(o) + " is not an origin like https://app.example.com");
  }

  // [auth]
  if (c.jwt_secret.size() < 16)
    fail("auth.jwt_secret", "must be at least 16 bytes (is " + std::to_string(c.jwt_secret.size()) + ")");
  if (c.jwt_algorithm != "HS256" && c.jwt_algorithm != "HS384" && c.jwt_algorithm != "HS512")
    fail("auth.jwt_algorithm", in_quotes(c.jwt_algorithm) + " is not HS256, HS384 or HS512");
  for (size_t i = 0; i < c.api_keys.size(); ++i) {
    const std::string& k = c.api_keys[i];
    if (k.empty()) fail("auth.api_keys", "key #" + std::to_string(i + 1) + " is empty");
    if (!std::all_of(k.begin(), k.end(), [](char ch) { return ch > ' ' && ch < 0x7f; }))
      fail("auth.api_keys", "key #" + std::to_string(i + 1) + " has a character other than visible ASCII");
  }
  if (c.api_keys.empty() && !c.api.empty()) fail("auth.api_keys", "at least one key is needed while listen.api is set");

  // [protocol]
  check_at_least_1("protocol.handshake_timeout_ms", c.handshake_timeout_ms);
  check_range("protocol.heartbeat_ms", c.heartbeat_ms, codec::kMinHeartbeatMs, codec::kMaxHeartbeatMs);
  check_at_least_1("protocol.pong_timeout_ms", c.pong_timeout_ms);
  check_range("protocol.max_frame_size", c.max_frame_size, codec::kMinMaxFrameSize, codec::kMaxMaxFrameSize);
  if (c.max_message_size < codec::kMinMaxMessageSize)
    fail("protocol.max_message_size", std::to_string(c.max_message_size) + " is less than 16384");
  // A message must fit in 128 fragments of the frame size (§11.3): each
  // fragment's body also carries the 8-byte prefix and the 4-byte CRC trailer.
  const uint64_t most = uint64_t{codec::kDefaultMaxFragments} * (c.max_frame_size - codec::kFragmentPrefixSize - 4);
  if (c.max_message_size > most)
    fail("protocol.max_message_size", std::to_string(c.max_message_size) +
                                          " is more than 128*(protocol.max_frame_size-12) = " + std::to_string(most));
  if (!c.dictionary_file.empty()) check_file("protocol.dictionary_file", c.dictionary_file);

  // [limits]
  check_at_least_1("limits.max_connections", c.max_connections);
  check_at_least_1("limits.max_connections_per_user", c.max_connections_per_user);
  check_at_least_1("limits.max_connections_per_ip", c.max_connections_per_ip);
  check_at_least_1("limits.accept_burst", c.accept_burst);
  if (c.api_threads < 1 || c.api_threads > 64) fail("server.api_threads", "must be 1 to 64");
  check_at_least_1("limits.max_subscriptions", c.max_subscriptions);
  check_at_least_1("limits.api_max_body_bytes", c.api_max_body_bytes);

  // [delivery]
  check_at_least_1("delivery.hard_limit_bytes", c.hard_limit_bytes);
  if (c.soft_limit_bytes > c.hard_limit_bytes)
    fail("delivery.soft_limit_bytes", std::to_string(c.soft_limit_bytes) + " is more than delivery.hard_limit_bytes (" +
                                          std::to_string(c.hard_limit_bytes) + ")");
  check_at_least_1("delivery.batch_bytes", c.batch_bytes);
  check_at_least_1("delivery.publish_backlog", c.publish_backlog);

  // [store]
  if (c.store_dir.empty()) fail("store.dir", "must not be empty");
  if (c.store_synchronous != "FULL" && c.store_synchronous != "NORMAL")
    fail("store.synchronous", in_quotes(c.store_synchronous) + " is not FULL or NORMAL");
  check_range("store.commit_window_us", c.store_commit_window_us, 0, 100000);
  check_at_least_1("store.commit_batch", c.store_commit_batch);
  check_range("store.retention_interval_ms", c.store_retention_interval_ms, 10, 86400000);
  check_at_least_1("store.retention_batch", c.store_retention_batch);

  // [[namespace]]
  for (size_t i = 0; i < c.namespaces.size(); ++i) {
    const std::string& n = c.namespaces[i].name;
    if (c.namespaces[i].latest_value && !c.namespaces[i].durable)
      fail("namespace.latest_value", "needs durable = true (namespace " + in_quotes(n) + ")");
    if (!valid_namespace_name(n))
      fail("namespace.name", in_quotes(n) + " is not a namespace name (1-253 of A-Z a-z 0-9 _ . @ / -)");
    for (size_t j = 0; j < i; ++j)
      if (c.namespaces[j].name == n) fail("namespace.name", in_quotes(n) + " is given twice");
  }
}

// Puts back the built-in namespaces the configuration left out, in front.
void add_missing_builtins(Config& c) {
  std::vector<NamespacePolicy> missing;
  for (const std::string_view name : {std::string_view(), kUserNamespace}) {
    const bool present =
        std::any_of(c.namespaces.begin(), c.namespaces.end(), [&](const auto& p) { return p.name == name; });
    if (!present) missing.push_back(builtin_namespace_policy(name));
  }
  c.namespaces.insert(c.namespaces.begin(), missing.begin(), missing.end());
}

// --- TOML output -------------------------------------------------------------

std::string toml_string(std::string_view s) {
  std::string out = "\"";
  for (const char ch : s) {
    const auto u = static_cast<unsigned char>(ch);
    switch (ch) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (u < 0x20 || u == 0x7f) {
          static constexpr char kHex[] = "0123456789ABCDEF";
          out += "\\u00";
          out += kHex[u >> 4];
          out += kHex[u & 15];
        } else {
          out += ch;
        }
    }
  }
  return out + "\"";
}

std::string toml_key(std::string_view k) {
  const bool bare = !k.empty() && std::all_of(k.begin(), k.end(), [](char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-';
  });
  return bare ? std::string(k) : toml_string(k);
}

std::string toml_text(const Config& c, const Setting& s, Secrets secrets) {
  const bool redact = secrets == Secrets::kRedact;
  return std::visit(
      [&](auto m) -> std::string {
        const auto& v = c.*m;
        using F = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<F, bool>) {
          return v ? "true" : "false";
        } else if constexpr (std::is_same_v<F, size_t> || std::is_same_v<F, uint32_t>) {
          return std::to_string(v);
        } else if constexpr (std::is_same_v<F, std::string>) {
          if (redact && m == &Config::jwt_secret && v != kDefaultSecret) return toml_string("(redacted)");
          return toml_string(v);
        } else if constexpr (std::is_same_v<F, std::vector<std::string>>) {
          std::string out = "[";
          for (const auto& e : v) {
            if (out.size() > 1) out += ", ";
            const bool hide = redact && m == &Config::api_keys && e != kDefaultApiKey;
            out += toml_string(hide ? "(redacted)" : e);
          }
          return out + "]";
        } else {
          std::string out = "{";
          for (const auto& [k, l] : v) out += (out.size() > 1 ? ", " : " ") + toml_key(k) + " = " + toml_string(l);
          return out + (v.empty() ? "}" : " }");
        }
      },
      s.member);
}

}  // namespace

NamespacePolicy builtin_namespace_policy(std::string_view name) {
  NamespacePolicy p;
  p.name = std::string(name);
  if (name == kUserNamespace) {
    p.history_size = 1000;
    p.history_ttl_s = 86400;
    p.durable = true;  // the offline inbox
  }
  return p;
}

const NamespacePolicy& Config::policy_for(std::string_view channel) const noexcept {
  static const NamespacePolicy kFallback{};
  const std::string_view ns = namespace_of(channel);
  const NamespacePolicy* deflt = nullptr;
  for (const auto& p : namespaces) {
    if (p.name == ns) return p;
    if (p.name.empty()) deflt = &p;
  }
  return deflt != nullptr ? *deflt : kFallback;
}

bool Config::default_secret() const noexcept { return jwt_secret == kDefaultSecret; }

bool Config::default_api_key() const noexcept {
  return std::find(api_keys.begin(), api_keys.end(), kDefaultApiKey) != api_keys.end();
}

size_t Config::loop_count() const noexcept {
  if (loops != 0) return loops;
  return std::max<size_t>(1, std::thread::hardware_concurrency());
}

bool split_host_port(std::string_view s, std::string& host, uint16_t& port) {
  size_t colon;
  bool v6 = false;
  if (!s.empty() && s.front() == '[') {
    const size_t close = s.find(']');
    if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':') return false;
    host = std::string(s.substr(1, close - 1));
    colon = close + 1;
    v6 = true;
  } else {
    colon = s.rfind(':');
    if (colon == std::string_view::npos) return false;
    host = std::string(s.substr(0, colon));
  }
  const std::string_view digits = s.substr(colon + 1);
  uint64_t p = 0;
  if (digits.size() > 5 || !parse_unsigned(digits, 65535, p)) return false;
  in6_addr a6{};
  in_addr a4{};
  if (v6 ? inet_pton(AF_INET6, host.c_str(), &a6) != 1 : inet_pton(AF_INET, host.c_str(), &a4) != 1) return false;
  port = static_cast<uint16_t>(p);
  return true;
}

std::string to_toml(const Config& c, Secrets secrets) {
  std::string out = "# heraldd configuration (docs/configuration.md)\n";
  std::string_view section;
  for (const Setting& s : kSettings) {
    if (s.section != section) {
      section = s.section;
      out += "\n[";
      out += section;
      out += "]\n";
    }
    out += s.key;
    out += " = ";
    out += toml_text(c, s, secrets);
    out += '\n';
  }
  for (const auto& p : c.namespaces) {
    out += "\n[[namespace]]\nname = " + toml_string(p.name) + "\n";
    out += "subscribe = " + toml_string(to_text(p.subscribe)) + "\n";
    out += "publish = " + toml_string(to_text(p.publish)) + "\n";
    out += "history_size = " + std::to_string(p.history_size) + "\n";
    out += "history_ttl_s = " + std::to_string(p.history_ttl_s) + "\n";
    out += std::string("durable = ") + (p.durable ? "true" : "false") + "\n";
    out += std::string("latest_value = ") + (p.latest_value ? "true" : "false") + "\n";
  }
  return out;
}

namespace {

std::string help_default(const Config& d, const Setting& s) {
  const std::string v = flag_text(d, s);
  return v.empty() ? "\"\"" : v;
}

// Wraps help text at `width` columns (CLI11 does not), keeping its newlines.
std::string wrap(std::string_view text, size_t width) {
  std::string out;
  size_t column = 0;
  size_t i = 0;
  while (i < text.size()) {
    if (text[i] == '\n') {
      out += '\n';
      column = 0;
      ++i;
      continue;
    }
    if (text[i] == ' ') {
      ++i;
      continue;
    }
    const size_t end = std::min(text.find_first_of(" \n", i), text.size());
    const std::string_view word = text.substr(i, end - i);
    if (column > 0 && column + 1 + word.size() > width) {
      out += '\n';
      column = 0;
    } else if (column > 0) {
      out += ' ';
      ++column;
    }
    out += word;
    column += word.size();
    i = end;
  }
  return out;
}

// A setting's description wrapped for --help, ending in "(default: X)" kept
// whole on one line.
std::string help_text(std::string_view help, const std::string& default_text) {
  constexpr size_t kWidth = 74;
  std::string out = wrap(help, kWidth);
  const std::string tail = "(default: " + default_text + ")";
  const size_t last_line = out.rfind('\n') == std::string::npos ? out.size() : out.size() - out.rfind('\n') - 1;
  out += last_line + 1 + tail.size() <= kWidth ? " " : "\n";
  return out + tail;
}

ConfigResult load(int argc, const char* const* argv, Config& out, std::string& message) {
  const Config defaults;
  CLI::App app("heraldd: the Herald push server.\n"
               "Every setting has a flag --section.key and a TOML key (key = value under\n"
               "[section]). Built-in defaults < the --config file < flags.",
               "heraldd");
  // Names on their own line, descriptions indented below: fits 80 columns.
  constexpr size_t kIndent = 6;
  app.get_formatter()->column_width(kIndent);
  app.set_help_flag("-h,--help", "print this help and exit");
  app.set_version_flag("--version", std::string("heraldd ") + HERALD_VERSION, "print the version and exit");
  std::string config_file;
  app.add_option("--config", config_file, "TOML file with settings; flags override it")->type_name("FILE");
  bool print_config = false;
  app.add_flag("--print-config", print_config, "print the resulting configuration as TOML and exit");

  std::vector<CLI::Option*> options;
  for (const Setting& s : kSettings) {
    std::string names = "--" + full_name(s);
    if (s.section == "server" && s.key == "ready_file") names += ",--ready-file";
    const bool is_list = std::holds_alternative<std::vector<std::string> Config::*>(s.member) ||
                         std::holds_alternative<std::map<std::string, std::string> Config::*>(s.member);
    CLI::Option* o = app.add_option(names, CLI::callback_t{}, help_text(s.help, help_default(defaults, s)));
    o->type_name(s.value_name)->group("[" + std::string(s.section) + "]");
    o->multi_option_policy(is_list ? CLI::MultiOptionPolicy::TakeAll : CLI::MultiOptionPolicy::TakeLast);
    options.push_back(o);
  }
  std::string ns_default;
  for (const auto& p : defaults.namespaces) {
    ns_default += "\n  name=" + p.name + ",subscribe=" + std::string(to_text(p.subscribe)) +
                  ",publish=" + std::string(to_text(p.publish)) + ",history_size=" + std::to_string(p.history_size) +
                  ",history_ttl_s=" + std::to_string(p.history_ttl_s) + ",durable=" + (p.durable ? "true" : "false") +
                  ",latest_value=" + (p.latest_value ? "true" : "false");
  }
  CLI::Option* ns_opt = app.add_option(
      "--namespace", CLI::callback_t{},
      wrap("a channel namespace policy (the part of a channel name before its first ':'); repeat for several; "
           "replaces the file's whole [[namespace]] list. Keys: name (required; \"\" = channels without ':'), "
           "subscribe (any|grant|none), publish (none|grant|any), history_size (publications kept), "
           "history_ttl_s (how long; 0 = no limit), durable (true: stored before the publisher's ack), "
           "latest_value (true: a durable state channel keeping the latest publication per collapse key). Omitted keys take the built-in values of that name. For \"user\" "
           "(personal channels) only the history keys matter: who may subscribe and publish there is fixed. "
           "The built-ins \"\" and \"user\" are added back when left out.",
           74) +
          "\n(default:" + ns_default + ")");
  ns_opt->type_name("name=NAME,KEY=VALUE,...")->group("[[namespace]]");
  ns_opt->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.footer(
      "Lists and maps are comma-separated (--auth.api_keys k1,k2;\n"
      "--server.log_levels session=debug,api=warn). A flag given for a list, a map\n"
      "or --namespace replaces the file's whole value. Booleans: true or false.\n"
      "An invalid setting stops start-up with a message naming it.\n"
      "Reference: docs/configuration.md.");

  static const char* const kFallbackArgv[] = {"heraldd"};
  try {
    if (argc < 1 || argv == nullptr) {
      app.parse(1, kFallbackArgv);
    } else {
      app.parse(argc, argv);
    }
  } catch (const CLI::CallForHelp&) {
    message = app.help();
    return ConfigResult::kExit;
  } catch (const CLI::CallForAllHelp&) {
    message = app.help("", CLI::AppFormatMode::All);
    return ConfigResult::kExit;
  } catch (const CLI::CallForVersion& e) {
    message = std::string(e.what()) + "\n";
    return ConfigResult::kExit;
  } catch (const CLI::ParseError& e) {
    message = std::string("command line: ") + e.what() + " (see heraldd --help)";
    return ConfigResult::kError;
  }

  Config c;
  if (!config_file.empty()) apply_toml_file(config_file, c);
  for (size_t i = 0; i < options.size(); ++i) {
    if (options[i]->count() > 0) set_from_flag(c, kSettings[i], options[i]->results());
  }
  if (ns_opt->count() > 0) {
    c.namespaces.clear();
    for (const auto& spec : ns_opt->results()) c.namespaces.push_back(namespace_from_flag(spec));
  }
  validate(c);
  add_missing_builtins(c);
  out = std::move(c);
  if (print_config) {
    message = to_toml(out);
    return ConfigResult::kExit;
  }
  return ConfigResult::kRun;
}

}  // namespace

ConfigResult load_config(int argc, const char* const* argv, Config& out, std::string& message) {
  try {
    return load(argc, argv, out, message);
  } catch (const ConfigError& e) {
    message = e.what();
  } catch (const std::exception& e) {
    message = std::string("configuration: ") + e.what();
  } catch (...) {
    message = "configuration: unexpected error";
  }
  return ConfigResult::kError;
}

}  // namespace herald::server
