// HttpApi: evhttp setup, routing, authentication, request validation and
// replies. Each request is handled on the API loop thread that accepted its
// connection; libevent callbacks are static trampolines that never let an
// exception escape.
#include "server/http_api.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <strings.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <tuple>
#include <type_traits>
#include <unordered_set>
#include <utility>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>
#include <spdlog/spdlog.h>

#include "server/http_api_payload.h"
#include "server/policy.h"

namespace herald::server {

using codec::Status;
using nlohmann::json;

int http_status_for(Status s) noexcept {
  switch (s) {
    case Status::kOk: return 200;
    case Status::kBadChannel:
    case Status::kInvalidField:
    case Status::kMessageTooLarge: return 400;
    case Status::kAuthRequired:
    case Status::kAuthFailed: return 401;
    case Status::kPermissionDenied: return 403;
    case Status::kRateLimited: return 429;
    case Status::kStorageUnavailable:
    case Status::kGoingAway:
    case Status::kTooManyConnections: return 503;
    default: return 500;
  }
}

bool decode_base64(std::string_view in, std::string& out) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  // Padding is optional, but when present it must complete the last quantum.
  size_t pad = 0;
  while (pad < 2 && pad < in.size() && in[in.size() - 1 - pad] == '=') ++pad;
  if (pad > 0 && in.size() % 4 != 0) return false;
  const std::string_view data = in.substr(0, in.size() - pad);
  if (data.size() % 4 == 1) return false;
  out.clear();
  out.reserve(data.size() / 4 * 3 + 2);
  uint32_t acc = 0;
  int bits = 0;
  for (const char c : data) {
    const int v = value(c);
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  return true;
}

namespace {

constexpr size_t kMaxJsonDepth = 64;     // nlohmann's dump() recurses: bound nesting first
constexpr size_t kMaxFieldBytes = 256;   // message_id, type, content_type, collapse_key
constexpr size_t kMaxReasonBytes = 256;  // disconnect reason (Error.text SHOULD be <= 256)
constexpr size_t kMaxUserIdBytes = 255 - 5;  // "user:" + id must be a valid channel name
constexpr std::string_view kDefaultDisconnectReason = "disconnected by the server";

std::shared_ptr<spdlog::logger> logger() {
  auto l = spdlog::get("api");
  return l ? l : spdlog::default_logger();
}

// An error answer: the HTTP status and the {"error": {...}} object.
struct ApiError {
  int http = 400;
  int code = 0;      // a Status number, or 0 for HTTP-level errors (not found, bad method)
  std::string name;  // "kInvalidField", or "not_found" / "method_not_allowed" when code is 0
  std::string message;
  bool temporary = false;
};

ApiError status_error(Status s, std::string message) {
  return {http_status_for(s), static_cast<int>(s), std::string(codec::to_string(s)), std::move(message),
          codec::is_temporary(s)};
}
ApiError invalid(std::string message) { return status_error(Status::kInvalidField, std::move(message)); }

json error_object(const ApiError& e) {
  return {{"code", e.code}, {"name", e.name}, {"message", e.message}, {"temporary", e.temporary}};
}

// Serialization never throws on bad UTF-8 (ids from URLs can hold any byte).
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

bool all_whitespace(std::string_view s) {
  for (const char c : s)
    if (c != ' ' && c != '\t' && c != '\r' && c != '\n') return false;
  return true;
}

bool valid_user_id(std::string_view id) {
  if (id.empty() || id.size() > kMaxUserIdBytes) return false;
  std::string channel = "user:";
  channel.append(id);
  return valid_channel_name(channel);
}

// A field is "given" when present and not null (null means absent everywhere).
const json* field(const json& obj, const char* key) {
  const auto it = obj.find(key);
  return it == obj.end() || it->is_null() ? nullptr : &*it;
}

bool get_short_string(const json& obj, const char* key, const std::string& where, std::string& out,
                      std::optional<ApiError>& err) {
  const json* v = field(obj, key);
  if (!v) return true;
  if (!v->is_string()) {
    err = invalid(where + key + ": must be a string");
    return false;
  }
  const auto& s = v->get_ref<const std::string&>();
  if (s.size() > kMaxFieldBytes) {
    err = invalid(where + key + ": longer than " + std::to_string(kMaxFieldBytes) + " bytes");
    return false;
  }
  out = s;
  return true;
}

// Validates one publish object; `where` prefixes field names in messages
// ("" or "messages[2].").
// `raw`: the payload texts extract_payloads() took out of the body (null if none).
std::optional<ApiError> parse_publish(const json& j, const ApiConfig& cfg, const std::string& where,
                                      ApiPublishRequest& r, std::vector<std::string>* raw) {
  std::optional<ApiError> err;
  if (!j.is_object()) return invalid((where.empty() ? std::string("body") : where.substr(0, where.size() - 1)) +
                                     ": must be a JSON object");

  const json* channel = field(j, "channel");
  const json* users = field(j, "users");
  if ((channel != nullptr) == (users != nullptr))
    return invalid(where + "channel, " + where + "users: exactly one of them is required");
  if (channel) {
    if (!channel->is_string()) return invalid(where + "channel: must be a string");
    r.channel = channel->get<std::string>();
    if (!valid_channel_name(r.channel))
      return status_error(Status::kBadChannel,
                          where + "channel: not a valid channel name (1..255 bytes of A-Z a-z 0-9 _ . : @ / -)");
  } else {
    if (!users->is_array() || users->empty()) return invalid(where + "users: must be a non-empty array of user ids");
    if (users->size() > cfg.max_users_per_publish)
      return invalid(where + "users: at most " + std::to_string(cfg.max_users_per_publish) + " users per message");
    std::unordered_set<std::string_view> seen;
    r.users.reserve(users->size());
    for (size_t i = 0; i < users->size(); ++i) {
      const json& u = (*users)[i];
      const std::string name = where + "users[" + std::to_string(i) + "]";
      if (!u.is_string()) return invalid(name + ": must be a string");
      const auto& id = u.get_ref<const std::string&>();
      if (!valid_user_id(id)) return invalid(name + ": not a valid user id (\"user:<id>\" must be a valid channel name)");
      if (!seen.insert(id).second) return invalid(name + ": duplicate user id");
      r.users.push_back(id);
    }
  }

  if (!get_short_string(j, "message_id", where, r.message_id, err) || !get_short_string(j, "type", where, r.type, err) ||
      !get_short_string(j, "content_type", where, r.content_type, err) ||
      !get_short_string(j, "collapse_key", where, r.collapse_key, err))
    return err;

  if (const json* p = field(j, "priority")) {
    bool ok = false;
    if (p->is_number_unsigned()) {
      const auto v = p->get<uint64_t>();
      ok = v <= 3;
      r.priority = static_cast<int>(v);
    } else if (p->is_string()) {
      const auto& s = p->get_ref<const std::string&>();
      ok = s.size() == 2 && (s[0] == 'P' || s[0] == 'p') && s[1] >= '0' && s[1] <= '3';
      if (ok) r.priority = s[1] - '0';
    }
    if (!ok) return invalid(where + "priority: must be 0..3 or \"P0\"..\"P3\"");
  }

  if (const json* t = field(j, "ttl_s")) {
    if (!t->is_number_unsigned() || t->get<uint64_t>() > std::numeric_limits<uint32_t>::max())
      return invalid(where + "ttl_s: must be an integer from 0 to 4294967295");
    r.ttl_s = static_cast<uint32_t>(t->get<uint64_t>());
  }

  if (const json* d = field(j, "dismiss_on_read")) {
    if (!d->is_boolean()) return invalid(where + "dismiss_on_read: must be true or false");
    r.dismiss_on_read = d->get<bool>();
  }

  const json* payload = field(j, "payload");
  // The payload's text as sent (compacted), when extract_payloads() took it out.
  const json* raw_index = nullptr;
  if (raw != nullptr && !raw->empty()) {
    const auto it = j.find(std::string(kRawPayloadKey));  // the key holds a NUL byte: not a C string
    if (it != j.end()) raw_index = &*it;
  }
  const json* payload_b64 = field(j, "payload_base64");
  if ((payload || raw_index) && payload_b64)
    return invalid(where + "payload, " + where + "payload_base64: give at most one");
  if (raw_index) {
    if (!raw_index->is_number_unsigned() || raw_index->get<uint64_t>() >= raw->size())
      return status_error(Status::kInternal, where + "payload: lost while parsing");
    r.payload = std::move((*raw)[raw_index->get<size_t>()]);
    if (r.content_type.empty()) r.content_type = "application/json";
  } else if (payload) {
    r.payload = dump(*payload);
    if (r.content_type.empty()) r.content_type = "application/json";
  } else if (payload_b64) {
    if (!payload_b64->is_string() || !decode_base64(payload_b64->get_ref<const std::string&>(), r.payload))
      return invalid(where + "payload_base64: must be a standard base64 string");
    if (r.content_type.empty()) r.content_type = "application/octet-stream";
  }
  return std::nullopt;
}

const char* reason_phrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Payload Too Large";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return nullptr;  // libevent's own table
  }
}

std::string format_address(const sockaddr_storage& ss) {
  char ip[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    sockaddr_in sin;
    std::memcpy(&sin, &ss, sizeof sin);
    inet_ntop(AF_INET, &sin.sin_addr, ip, sizeof ip);
    return std::string(ip) + ":" + std::to_string(ntohs(sin.sin_port));
  }
  if (ss.ss_family == AF_INET6) {
    sockaddr_in6 sin6;
    std::memcpy(&sin6, &ss, sizeof sin6);
    inet_ntop(AF_INET6, &sin6.sin6_addr, ip, sizeof ip);
    return "[" + std::string(ip) + "]:" + std::to_string(ntohs(sin6.sin6_port));
  }
  return "unknown";
}

enum class Verb : uint8_t { kGet, kPost };

// Routes counted under ApiRoute::kOther in the metrics (they have no ApiRoute of their own).
enum class Extra : uint8_t { kNone, kMessage, kIntegrity };

struct RouteMatch {
  ApiRoute route = ApiRoute::kOther;
  Verb verb = Verb::kGet;
  bool needs_auth = true;
  std::string_view raw_user;  // percent-encoded {id} for the user and message routes
  Extra extra = Extra::kNone;
};

std::optional<RouteMatch> match_route(std::string_view path) {
  if (path == "/v1/publish") return RouteMatch{ApiRoute::kPublish, Verb::kPost, true, {}};
  if (path == "/v1/publish/batch") return RouteMatch{ApiRoute::kPublishBatch, Verb::kPost, true, {}};
  if (path == "/v1/stats") return RouteMatch{ApiRoute::kStats, Verb::kGet, true, {}};
  if (path == "/healthz") return RouteMatch{ApiRoute::kHealthz, Verb::kGet, false, {}};
  if (path == "/metrics") return RouteMatch{ApiRoute::kMetrics, Verb::kGet, false, {}};
  if (path == "/v1/admin/integrity") return RouteMatch{ApiRoute::kOther, Verb::kGet, true, {}, Extra::kIntegrity};
  constexpr std::string_view kMessages = "/v1/messages/";
  if (path.starts_with(kMessages) && path.size() > kMessages.size() &&
      path.find('/', kMessages.size()) == std::string_view::npos) {
    return RouteMatch{ApiRoute::kOther, Verb::kGet, true, path.substr(kMessages.size()), Extra::kMessage};
  }
  constexpr std::string_view kUsers = "/v1/users/";
  if (path.starts_with(kUsers)) {
    const std::string_view rest = path.substr(kUsers.size());
    const size_t slash = rest.find('/');
    if (slash == std::string_view::npos) {
      if (!rest.empty()) return RouteMatch{ApiRoute::kUserInfo, Verb::kGet, true, rest};
    } else if (slash > 0 && rest.substr(slash) == "/disconnect") {
      return RouteMatch{ApiRoute::kUserDisconnect, Verb::kPost, true, rest.substr(0, slash)};
    }
  }
  return std::nullopt;
}

}  // namespace

// One API event loop: its evhttp, and a queue other threads post answers to.
struct HttpApi::Impl : std::enable_shared_from_this<HttpApi::Impl> {
  Impl(ApiConfig c, ApiBackend* b, Metrics* m, event_base* eb)
      : config(std::move(c)), backend(b), metrics(m), base(eb), owner(std::this_thread::get_id()) {}
  ~Impl() { close_posting(); }

  ApiConfig config;
  ApiBackend* backend;
  Metrics* metrics;
  event_base* base;
  evhttp* http = nullptr;
  // The request answered last; lets the exception handler know whether a
  // reply already went out (the loop is single-threaded, so one is enough).
  evhttp_request* last_replied = nullptr;
  // The thread running `base`: answers arriving on it are handled at once, others
  // are posted (set before the loop runs, read from any thread).
  std::atomic<std::thread::id> owner;

  // Posting from any thread: a queue and an eventfd that wakes the loop.
  std::mutex post_mu;
  std::vector<std::function<void()>> posted;
  bool closed = false;  // under post_mu: the loop is gone, posts are dropped
  int wake_fd = -1;
  event* wake_ev = nullptr;

  // Creates the evhttp and the wakeup event on `base`. Throws std::runtime_error.
  void setup();
  // Runs `fn` on this loop's thread (soon; never inside post). Any thread. Dropped
  // once the loop is gone.
  void post(std::function<void()> fn);
  // Stops posting and frees the wakeup event. The loop must not be running.
  void close_posting();
  static void on_wake(evutil_socket_t fd, short, void* arg) noexcept;
  // Wraps a backend completion so that, whatever thread calls it, `fn` runs on this
  // loop's thread (directly when already there), and not at all once the API is gone.
  template <class... A>
  std::function<void(A...)> on_loop(std::type_identity_t<std::function<void(A...)>> fn) {
    std::weak_ptr<Impl> self = weak_from_this();
    return [self, fn = std::move(fn)](A... args) mutable {
      const auto api = self.lock();
      if (!api) return;
      if (std::this_thread::get_id() == api->owner.load(std::memory_order_relaxed)) {
        fn(std::move(args)...);
        return;
      }
      api->post([fn = std::move(fn), t = std::make_tuple(std::move(args)...)]() mutable {
        std::apply(fn, std::move(t));
      });
    };
  }

  static void on_request(evhttp_request* req, void* arg) noexcept;
  void handle(evhttp_request* req);
  bool authorized(evhttp_request* req) const;

  void reply(evhttp_request* req, int status, const char* content_type, std::string_view body, ApiRoute route);
  void reply_json(evhttp_request* req, int status, const json& body, ApiRoute route) {
    reply(req, status, "application/json", dump(body), route);
  }
  void reply_error(evhttp_request* req, const ApiError& e, ApiRoute route) {
    reply_json(req, e.http, json{{"error", error_object(e)}}, route);
  }

  // Parses the body as a JSON object. An empty body is `{}` when allow_empty. With
  // `raw_payloads`, publish payloads are taken out as text first (extract_payloads).
  std::optional<ApiError> read_body(evhttp_request* req, json& out, bool allow_empty,
                                    std::vector<std::string>* raw_payloads = nullptr) const;
  // Publishes a validated request to its channel or users. On a channel
  // publish that failed, `failure` is set; users publishes report per user.
  // `done(result, failure)` is called once, on the API loop thread, when every
  // publish of `r` is final (possibly before execute returns).
  void execute(const ApiPublishRequest& r, std::function<void(json, std::optional<ApiError>)> done);
  void publish_counted(const std::string& channel, const ApiPublishRequest& r,
                       std::function<void(ApiPublishResult)> done);

  void route_publish(evhttp_request* req);
  void route_batch(evhttp_request* req);
  void route_user_info(evhttp_request* req, const std::string& user);
  void route_disconnect(evhttp_request* req, const std::string& user);
  void route_stats(evhttp_request* req);
  void route_message(evhttp_request* req, const std::string& id);
  void route_integrity(evhttp_request* req);
};

void HttpApi::Impl::on_request(evhttp_request* req, void* arg) noexcept {
  auto* self = static_cast<Impl*>(arg);
  self->last_replied = nullptr;
  try {
    self->handle(req);
  } catch (const std::exception& e) {
    logger()->warn("http api: internal error: {}", e.what());
    if (self->last_replied != req) {
      try {
        self->reply_error(req, status_error(Status::kInternal, "internal error"), ApiRoute::kOther);
      } catch (...) {
      }
    }
  } catch (...) {
    if (self->last_replied != req) {
      try {
        self->reply_error(req, status_error(Status::kInternal, "internal error"), ApiRoute::kOther);
      } catch (...) {
      }
    }
  }
}

void HttpApi::Impl::reply(evhttp_request* req, int status, const char* content_type, std::string_view body,
                          ApiRoute route) {
  last_replied = req;
  evkeyvalq* headers = evhttp_request_get_output_headers(req);
  evhttp_add_header(headers, "Content-Type", content_type);
  evhttp_add_header(headers, "Cache-Control", "no-store");
  // libevent 2.1 would write a HEAD answer's body too: send none, but say how
  // long it would have been.
  const bool head = evhttp_request_get_command(req) == EVHTTP_REQ_HEAD;
  if (head) evhttp_add_header(headers, "Content-Length", std::to_string(body.size()).c_str());
  evbuffer* buf = head ? nullptr : evbuffer_new();
  if (buf != nullptr) evbuffer_add(buf, body.data(), body.size());
  evhttp_send_reply(req, status, reason_phrase(status), buf);
  if (buf != nullptr) evbuffer_free(buf);
  metrics->api_request(route, status);
}

bool HttpApi::Impl::authorized(evhttp_request* req) const {
  evkeyvalq* headers = evhttp_request_get_input_headers(req);
  std::string_view presented[2];
  size_t n = 0;
  if (const char* a = evhttp_find_header(headers, "Authorization")) {
    std::string_view v(a);
    if (v.size() > 7 && strncasecmp(v.data(), "Bearer ", 7) == 0) {
      v.remove_prefix(7);
      while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
      presented[n++] = v;
    }
  }
  if (const char* k = evhttp_find_header(headers, "X-API-Key")) presented[n++] = k;

  // Compare against every key, without stopping at a match, so the time taken
  // does not say which key (or how much of one) matched. Lengths are not secret.
  bool ok = false;
  for (size_t i = 0; i < n; ++i) {
    const std::string_view p = presented[i];
    if (p.empty()) continue;
    for (const std::string& key : config.api_keys) {
      if (!key.empty() && key.size() == p.size() && CRYPTO_memcmp(key.data(), p.data(), key.size()) == 0) ok = true;
    }
  }
  return ok;
}

std::optional<ApiError> HttpApi::Impl::read_body(evhttp_request* req, json& out, bool allow_empty,
                                                 std::vector<std::string>* raw_payloads) const {
  evbuffer* buf = evhttp_request_get_input_buffer(req);
  const size_t n = buf != nullptr ? evbuffer_get_length(buf) : 0;
  const char* data = n > 0 ? reinterpret_cast<const char*>(evbuffer_pullup(buf, -1)) : "";
  const std::string_view body(data != nullptr ? data : "", data != nullptr ? n : 0);
  if (allow_empty && all_whitespace(body)) {
    out = json::object();
    return std::nullopt;
  }
  if (!nesting_within(body, kMaxJsonDepth))
    return invalid("body: JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  std::string rewritten;
  if (raw_payloads != nullptr && extract_payloads(body, rewritten, *raw_payloads) == PayloadScan::kRewritten) {
    out = json::parse(rewritten.begin(), rewritten.end(), nullptr, /*allow_exceptions=*/false);
  } else {
    out = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  }
  if (out.is_discarded()) return invalid("body: not valid JSON");
  if (!out.is_object()) return invalid("body: must be a JSON object");
  return std::nullopt;
}

void HttpApi::Impl::handle(evhttp_request* req) {
  const evhttp_uri* uri = evhttp_request_get_evhttp_uri(req);
  const char* raw_path = uri != nullptr ? evhttp_uri_get_path(uri) : nullptr;
  const std::string_view path = raw_path != nullptr ? raw_path : "";

  const std::optional<RouteMatch> m = match_route(path);
  if (!m) {
    reply_error(req, ApiError{404, 0, "not_found", "no such route: " + std::string(path), false}, ApiRoute::kOther);
    return;
  }
  const evhttp_cmd_type cmd = evhttp_request_get_command(req);
  const bool method_ok =
      m->verb == Verb::kGet ? (cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD) : cmd == EVHTTP_REQ_POST;
  if (!method_ok) {
    const char* allow = m->verb == Verb::kGet ? "GET, HEAD" : "POST";
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
    reply_error(req, ApiError{405, 0, "method_not_allowed", std::string("allowed: ") + allow, false}, m->route);
    return;
  }
  if (m->needs_auth && !authorized(req)) {
    evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate", "Bearer");
    reply_error(req,
                status_error(Status::kAuthFailed, "missing or wrong API key (Authorization: Bearer <key> or X-API-Key)"),
                m->route);
    return;
  }

  std::string user;
  if (m->route == ApiRoute::kUserInfo || m->route == ApiRoute::kUserDisconnect) {
    size_t len = 0;
    char* decoded = evhttp_uridecode(std::string(m->raw_user).c_str(), 0, &len);
    if (decoded == nullptr) throw std::bad_alloc();
    user.assign(decoded, len);
    std::free(decoded);
    if (!valid_user_id(user)) {
      reply_error(req, invalid("user id: not a valid user id (\"user:<id>\" must be a valid channel name)"), m->route);
      return;
    }
  }

  if (m->extra == Extra::kIntegrity) return route_integrity(req);
  if (m->extra == Extra::kMessage) {
    size_t len = 0;
    char* decoded = evhttp_uridecode(std::string(m->raw_user).c_str(), 0, &len);
    if (decoded == nullptr) throw std::bad_alloc();
    std::string id(decoded, len);
    std::free(decoded);
    if (id.empty() || id.size() > kMaxFieldBytes) {
      reply_error(req, invalid("message id: 1 to " + std::to_string(kMaxFieldBytes) + " bytes"), m->route);
      return;
    }
    return route_message(req, id);
  }
  switch (m->route) {
    case ApiRoute::kPublish: return route_publish(req);
    case ApiRoute::kPublishBatch: return route_batch(req);
    case ApiRoute::kUserInfo: return route_user_info(req, user);
    case ApiRoute::kUserDisconnect: return route_disconnect(req, user);
    case ApiRoute::kStats: return route_stats(req);
    case ApiRoute::kHealthz: return reply_json(req, 200, json{{"status", "ok"}}, ApiRoute::kHealthz);
    case ApiRoute::kMetrics:
      return reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", metrics->prometheus_text(),
                   ApiRoute::kMetrics);
    case ApiRoute::kOther:
    case ApiRoute::kCount: break;
  }
  reply_error(req, status_error(Status::kInternal, "unrouted request"), ApiRoute::kOther);
}

void HttpApi::Impl::publish_counted(const std::string& channel, const ApiPublishRequest& r,
                                    std::function<void(ApiPublishResult)> done) {
  Metrics* m = metrics;
  backend->publish_async(
      channel, r, on_loop<ApiPublishResult>([m, channel, done = std::move(done)](ApiPublishResult res) {
        if (res.status == Status::kOk) {
          m->published(PublishSource::kApi);
          if (res.duplicate) m->dedup_hit();
        } else {
          m->publish_error();
        }
        if (res.channel.empty()) res.channel = channel;
        done(std::move(res));
      }));
}

namespace {

ApiError publish_failed(const ApiPublishResult& res) {
  std::string text = "publish to " + res.channel + " failed: " + std::string(codec::describe(res.status));
  return status_error(res.status, std::move(text));
}

json publish_json(const ApiPublishResult& res) {
  return json{{"channel", res.channel}, {"offset", res.offset}, {"epoch", res.epoch}, {"duplicate", res.duplicate}};
}

}  // namespace

void HttpApi::Impl::execute(const ApiPublishRequest& r, std::function<void(json, std::optional<ApiError>)> done) {
  if (!r.channel.empty()) {
    publish_counted(r.channel, r, [done = std::move(done)](ApiPublishResult res) {
      if (res.status != Status::kOk) {
        const ApiError e = publish_failed(res);
        done(json{{"error", error_object(e)}}, e);
        return;
      }
      done(publish_json(res), std::nullopt);
    });
    return;
  }
  // One answer per user, in the request's order, once all arrived.
  struct Gather {
    std::vector<json> results;
    size_t remaining;
    std::function<void(json, std::optional<ApiError>)> done;
  };
  auto g = std::make_shared<Gather>();
  g->results.resize(r.users.size());
  g->remaining = r.users.size();
  g->done = std::move(done);
  for (size_t i = 0; i < r.users.size(); ++i) {
    const std::string user = r.users[i];
    publish_counted("user:" + user, r, [g, i, user](ApiPublishResult res) {
      if (res.status != Status::kOk) {
        g->results[i] = json{{"user", user}, {"channel", res.channel}, {"error", error_object(publish_failed(res))}};
      } else {
        json j = publish_json(res);
        j["user"] = user;
        g->results[i] = std::move(j);
      }
      if (--g->remaining == 0) {
        json all = json::array();
        for (auto& x : g->results) all.push_back(std::move(x));
        g->done(json{{"results", std::move(all)}}, std::nullopt);
      }
    });
  }
}

void HttpApi::Impl::route_publish(evhttp_request* req) {
  json body;
  std::vector<std::string> raw;
  if (auto e = read_body(req, body, false, &raw)) return reply_error(req, *e, ApiRoute::kPublish);
  ApiPublishRequest r;
  if (auto e = parse_publish(body, config, "", r, &raw)) return reply_error(req, *e, ApiRoute::kPublish);
  std::weak_ptr<Impl> self = weak_from_this();
  execute(r, [self, req](json result, std::optional<ApiError> failure) {
    const auto api = self.lock();
    if (!api) return;  // the HttpApi (and with it the request) is gone
    try {
      if (failure) {
        api->reply_error(req, *failure, ApiRoute::kPublish);
      } else {
        api->reply_json(req, 200, result, ApiRoute::kPublish);
      }
    } catch (...) {
      logger()->warn("http api: could not send a publish answer");
    }
  });
}

void HttpApi::Impl::route_batch(evhttp_request* req) {
  json body;
  std::vector<std::string> raw;
  if (auto e = read_body(req, body, false, &raw)) return reply_error(req, *e, ApiRoute::kPublishBatch);
  const json* messages = field(body, "messages");
  if (messages == nullptr || !messages->is_array())
    return reply_error(req, invalid("messages: must be an array of publish objects"), ApiRoute::kPublishBatch);
  if (messages->size() > config.max_batch)
    return reply_error(req, invalid("messages: at most " + std::to_string(config.max_batch) + " messages per batch"),
                       ApiRoute::kPublishBatch);

  // Validate everything first so a request over the fan-out limit publishes nothing.
  std::vector<ApiPublishRequest> parsed(messages->size());
  std::vector<std::optional<ApiError>> errors(messages->size());
  size_t targets = 0;
  for (size_t i = 0; i < messages->size(); ++i) {
    errors[i] = parse_publish((*messages)[i], config, "messages[" + std::to_string(i) + "].", parsed[i], &raw);
    if (!errors[i]) targets += parsed[i].channel.empty() ? parsed[i].users.size() : 1;
  }
  if (targets > config.max_users_per_publish)
    return reply_error(req,
                       invalid("messages: at most " + std::to_string(config.max_users_per_publish) +
                               " publishes (channels plus users) per request"),
                       ApiRoute::kPublishBatch);

  // Every message goes to the hub now (durable ones share group commits); the
  // answer goes out once all of them are final.
  struct Gather {
    std::vector<json> results;
    size_t remaining;
  };
  auto g = std::make_shared<Gather>();
  g->results.resize(parsed.size());
  g->remaining = parsed.size() + 1;  // +1: held until every publish was started
  std::weak_ptr<Impl> self = weak_from_this();
  auto finish = [g, self, req] {
    if (--g->remaining != 0) return;
    const auto api = self.lock();
    if (!api) return;
    json all = json::array();
    for (auto& x : g->results) all.push_back(std::move(x));
    try {
      api->reply_json(req, 200, json{{"results", std::move(all)}}, ApiRoute::kPublishBatch);
    } catch (...) {
      logger()->warn("http api: could not send a batch answer");
    }
  };
  for (size_t i = 0; i < parsed.size(); ++i) {
    if (errors[i]) {
      g->results[i] = json{{"error", error_object(*errors[i])}};
      finish();
      continue;
    }
    execute(parsed[i], [g, i, finish](json result, std::optional<ApiError>) {
      g->results[i] = std::move(result);
      finish();
    });
  }
  finish();
}

void HttpApi::Impl::route_message(evhttp_request* req, const std::string& id) {
  std::weak_ptr<Impl> self = weak_from_this();
  backend->message_receipts(id, on_loop<int, json>([self, req](int status, json body) {
    const auto api = self.lock();
    if (!api) return;
    try {
      api->reply_json(req, status, body, ApiRoute::kOther);
    } catch (...) {
      logger()->warn("http api: could not send a receipt answer");
    }
  }));
}

void HttpApi::Impl::route_integrity(evhttp_request* req) {
  std::weak_ptr<Impl> self = weak_from_this();
  backend->integrity_check(on_loop<int, json>([self, req](int status, json body) {
    const auto api = self.lock();
    if (!api) return;
    try {
      api->reply_json(req, status, body, ApiRoute::kOther);
    } catch (...) {
      logger()->warn("http api: could not send the integrity answer");
    }
  }));
}

namespace {

// State shared by an async backend call and its `done` callback.
struct Pending {
  std::weak_ptr<HttpApi::Impl> api;
  evhttp_request* req;
  ApiRoute route;
  bool answered = false;
};

}  // namespace

void HttpApi::Impl::route_user_info(evhttp_request* req, const std::string& user) {
  auto pending = std::make_shared<Pending>(Pending{weak_from_this(), req, ApiRoute::kUserInfo});
  try {
    backend->user_info(user, on_loop<json>([pending](json info) noexcept {
      if (pending->answered) {
        logger()->error("http api: backend answered user_info twice; ignored");
        return;
      }
      pending->answered = true;
      const auto api = pending->api.lock();
      if (!api) return;  // the HttpApi (and with it the request) is gone
      try {
        api->reply_json(pending->req, 200, info, pending->route);
      } catch (...) {
        logger()->warn("http api: could not send the user_info answer");
      }
    }));
  } catch (...) {
    if (pending->answered) return;  // already replied; swallow
    pending->answered = true;
    throw;
  }
}

void HttpApi::Impl::route_disconnect(evhttp_request* req, const std::string& user) {
  json body;
  if (auto e = read_body(req, body, true)) return reply_error(req, *e, ApiRoute::kUserDisconnect);

  Status code = Status::kAuthFailed;  // "sign in again": clients do not reconnect on their own
  if (const json* c = field(body, "code")) {
    const bool ok = c->is_number_unsigned() && c->get<uint64_t>() >= 100 && c->get<uint64_t>() <= 0xFFFF &&
                    codec::is_known_status(static_cast<uint32_t>(c->get<uint64_t>()));
    if (!ok)
      return reply_error(req, invalid("code: must be a Herald status number from docs/protocol.md §9 (100 or above)"),
                         ApiRoute::kUserDisconnect);
    code = static_cast<Status>(c->get<uint64_t>());
  }
  std::string reason(kDefaultDisconnectReason);
  if (const json* r = field(body, "reason")) {
    if (!r->is_string() || r->get_ref<const std::string&>().size() > kMaxReasonBytes)
      return reply_error(req, invalid("reason: must be a string of at most " + std::to_string(kMaxReasonBytes) + " bytes"),
                         ApiRoute::kUserDisconnect);
    reason = r->get<std::string>();
  }

  auto pending = std::make_shared<Pending>(Pending{weak_from_this(), req, ApiRoute::kUserDisconnect});
  try {
    backend->disconnect_user(user, code, reason, on_loop<size_t>([pending](size_t n) noexcept {
      if (pending->answered) {
        logger()->error("http api: backend answered disconnect_user twice; ignored");
        return;
      }
      pending->answered = true;
      const auto api = pending->api.lock();
      if (!api) return;
      try {
        api->reply_json(pending->req, 200, json{{"disconnected", n}}, pending->route);
      } catch (...) {
        logger()->warn("http api: could not send the disconnect answer");
      }
    }));
  } catch (...) {
    if (pending->answered) return;
    pending->answered = true;
    throw;
  }
}

void HttpApi::Impl::route_stats(evhttp_request* req) {
  json stats = metrics->stats_json();
  json server = backend->server_stats();
  if (server.is_object()) {
    stats.update(server, /*merge_objects=*/true);
  } else if (!server.is_null()) {
    stats["server"] = std::move(server);
  }
  reply_json(req, 200, stats, ApiRoute::kStats);
}

void HttpApi::Impl::setup() {
  http = evhttp_new(base);
  if (http == nullptr) throw std::runtime_error("HttpApi: evhttp_new failed");
  const ApiConfig& c = config;
  // Every method reaches our handler, so a wrong one gets 405 with JSON rather
  // than libevent's 501.
  evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |
                                       EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                       EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
  evhttp_set_max_body_size(http, static_cast<ev_ssize_t>(c.max_body_bytes));
  evhttp_set_max_headers_size(http, static_cast<ev_ssize_t>(c.max_header_bytes));
  evhttp_set_timeout(http, c.idle_timeout_s);
  // Read (and drop) the rest of an oversized body before answering 413, so the
  // client sees the answer instead of a connection reset.
  evhttp_set_flags(http, EVHTTP_SERVER_LINGERING_CLOSE);
  evhttp_set_gencb(http, &Impl::on_request, this);
  wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd < 0) throw std::runtime_error("HttpApi: eventfd failed");
  wake_ev = event_new(base, wake_fd, EV_READ | EV_PERSIST, &Impl::on_wake, this);
  if (wake_ev == nullptr || event_add(wake_ev, nullptr) != 0) throw std::runtime_error("HttpApi: event_new failed");
}

void HttpApi::Impl::post(std::function<void()> fn) {
  std::lock_guard lock(post_mu);
  if (closed) return;
  const bool wake = posted.empty();
  posted.push_back(std::move(fn));
  if (wake) {
    const uint64_t one = 1;
    // A full counter (never in practice) still leaves the fd readable: nothing is lost.
    [[maybe_unused]] const ssize_t n = ::write(wake_fd, &one, sizeof one);
  }
}

void HttpApi::Impl::close_posting() {
  std::vector<std::function<void()>> dropped;
  {
    std::lock_guard lock(post_mu);
    closed = true;
    dropped.swap(posted);
    if (wake_ev != nullptr) event_free(wake_ev);
    wake_ev = nullptr;
    if (wake_fd >= 0) ::close(wake_fd);
    wake_fd = -1;
  }
}

void HttpApi::Impl::on_wake(evutil_socket_t fd, short, void* arg) noexcept {
  auto* self = static_cast<Impl*>(arg);
  uint64_t n = 0;
  [[maybe_unused]] const ssize_t r = ::read(fd, &n, sizeof n);
  std::vector<std::function<void()>> fns;
  {
    std::lock_guard lock(self->post_mu);
    fns.swap(self->posted);
  }
  for (auto& fn : fns) {
    try {
      fn();
    } catch (...) {
      logger()->warn("http api: an answer could not be sent");
    }
  }
}

HttpApi::HttpApi(event_base* base, ApiConfig config, ApiBackend* backend, Metrics* metrics) {
  if (base == nullptr || backend == nullptr || metrics == nullptr)
    throw std::invalid_argument("HttpApi: base, backend and metrics must not be null");
  const size_t n = std::max<size_t>(1, config.threads);
  size_t usable_keys = 0;
  for (const auto& k : config.api_keys) usable_keys += k.empty() ? 0 : 1;
  if (usable_keys == 0) logger()->warn("http api: no API key configured: every authenticated route answers 401");
  try {
    for (size_t i = 0; i < n; ++i) {
      event_base* b = base;
      if (i > 0) {
        b = event_base_new();
        if (b == nullptr) throw std::runtime_error("HttpApi: event_base_new failed");
        own_bases_.push_back(b);
      }
      impls_.push_back(std::make_shared<Impl>(config, backend, metrics, b));
      impls_.back()->setup();
    }
  } catch (...) {
    for (auto& impl : impls_) {
      impl->close_posting();
      if (impl->http != nullptr) evhttp_free(impl->http);
    }
    for (event_base* b : own_bases_) event_base_free(b);
    throw;
  }
}

HttpApi::~HttpApi() {
  // Stop the own loops (from their own thread: no libevent locking needed), then free
  // every connection and pending request; answers arriving later find the weak_ptr
  // expired, or posting closed, and are dropped.
  for (size_t i = 1; i < impls_.size() && i - 1 < threads_.size(); ++i) {
    event_base* b = impls_[i]->base;
    impls_[i]->post([b] { event_base_loopbreak(b); });
  }
  for (auto& t : threads_) t.join();
  for (auto& impl : impls_) {
    impl->close_posting();
    if (impl->http != nullptr) evhttp_free(impl->http);
    impl->http = nullptr;
  }
  impls_.clear();
  for (event_base* b : own_bases_) event_base_free(b);
}

bool HttpApi::bind(const std::string& host, uint16_t port, std::string& bound, std::string& error) {
  errno = 0;
  evhttp_bound_socket* s = evhttp_bind_socket_with_handle(impls_[0]->http, host.c_str(), port);
  if (s == nullptr) {
    error = "cannot listen on " + host + ":" + std::to_string(port) + (errno != 0 ? ": " + std::string(std::strerror(errno)) : "");
    return false;
  }
  const evutil_socket_t fd = evhttp_bound_socket_get_fd(s);
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    error = "getsockname: " + std::string(std::strerror(errno));
    evhttp_del_accept_socket(impls_[0]->http, s);
    return false;
  }
  // The other loops accept on duplicates of the same listening socket (each evhttp
  // closes its own copy); the kernel gives each connection to one of them.
  for (size_t i = 1; i < impls_.size(); ++i) {
    const int dup = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dup < 0 || evhttp_accept_socket_with_handle(impls_[i]->http, dup) == nullptr) {
      error = "cannot share the listening socket with API thread " + std::to_string(i) + ": " + std::strerror(errno);
      if (dup >= 0) ::close(dup);
      return false;
    }
  }
  bound = format_address(ss);
  return true;
}

void HttpApi::start() {
  if (!threads_.empty()) return;
  for (size_t i = 1; i < impls_.size(); ++i) {
    Impl* impl = impls_[i].get();
    threads_.emplace_back([impl] {
      impl->owner.store(std::this_thread::get_id());
      event_base_loop(impl->base, EVLOOP_NO_EXIT_ON_EMPTY);
    });
  }
}

}  // namespace herald::server
