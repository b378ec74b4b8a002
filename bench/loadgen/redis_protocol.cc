// Redis RESP2 pub/sub client side of one load-generator connection (SUBSCRIBE, PUBLISH).
// Sans-IO: turns intents into bytes and bytes into events; no sockets, no clock, no
// allocation per received message (payloads are views into the input or a reused buffer).
#include <algorithm>
#include <charconv>
#include <cstring>
#include <memory>
#include <string>

#include "protocol.h"

namespace herald::bench {
namespace {

// A reply line (+, -, :, *, $ headers) longer than this is treated as garbage.
constexpr size_t kMaxLine = 64u << 10;
// Largest bulk string accepted (checked before buffering any of it).
constexpr int64_t kMaxBulk = 16 << 20;

// Appends `v` in decimal without a temporary string (publish is on the load generator's hot path).
void append_uint(std::string& out, uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void put_bulk(std::string& out, std::string_view s) {
  out.push_back('$');
  append_uint(out, s.size());
  out.append("\r\n");
  out.append(s);
  out.append("\r\n");
}

bool parse_int(std::string_view s, int64_t& v) {
  if (s.empty()) return false;
  auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

class RedisProtocol final : public Protocol {
 public:
  explicit RedisProtocol(const ConnParams&) {}

  void start_subscriber(std::string& out, const std::string* channels, size_t n) override {
    subs_wanted_ = n;
    for (size_t i = 0; i < n; ++i) {
      out.append("*2\r\n$9\r\nSUBSCRIBE\r\n");
      put_bulk(out, channels[i]);
    }
    // No channel: a PING's +PONG says the connection is up.
    if (n == 0) ping(out);
  }

  // Redis has no handshake; a PING's +PONG says the connection is up.
  void start_publisher(std::string& out) override { ping(out); }

  // The integer reply (number of receivers) confirms the publish.
  void publish(std::string& out, std::string_view channel, std::string_view payload) override {
    out.append("*3\r\n$7\r\nPUBLISH\r\n");
    put_bulk(out, channel);
    put_bulk(out, payload);
    ++publishes_out_;
  }

  bool on_input(const uint8_t* data, size_t len, std::string& out, Sink& sink) override {
    (void)out;  // RESP2 pub/sub never needs an answer from the client
    if (failed_) return false;
    const char* p = reinterpret_cast<const char*>(data);
    const char* end = p + len;
    while (p < end) {
      if (bulk_left_ < 0) {
        // Reading a header line up to "\r\n".
        const char* nl = static_cast<const char*>(std::memchr(p, '\n', end - p));
        if (nl == nullptr) {
          if (line_.size() + (end - p) > kMaxLine) return fail(sink, "redis: reply line too long");
          line_.append(p, end - p);
          return true;
        }
        std::string_view line;
        if (line_.empty()) {
          line = std::string_view(p, nl + 1 - p);
        } else {
          if (line_.size() + (nl + 1 - p) > kMaxLine) return fail(sink, "redis: reply line too long");
          line_.append(p, nl + 1 - p);
          line = line_;
        }
        p = nl + 1;
        if (line.size() < 3 || line[line.size() - 2] != '\r') return fail(sink, "redis: malformed reply line");
        bool ok = on_line(line[0], line.substr(1, line.size() - 3), sink);
        line_.clear();
        if (!ok) return false;
      } else {
        // Reading a bulk string's bytes and its "\r\n".
        size_t need = static_cast<size_t>(bulk_left_) + 2;
        if (bulk_.empty() && static_cast<size_t>(end - p) >= need) {
          if (p[need - 2] != '\r' || p[need - 1] != '\n') return fail(sink, "redis: bulk string not ended by CRLF");
          std::string_view value(p, need - 2);
          p += need;
          bulk_left_ = -1;
          if (!on_value(value, sink)) return false;
          continue;
        }
        size_t take = std::min(need - bulk_.size(), static_cast<size_t>(end - p));
        bulk_.append(p, take);
        p += take;
        if (bulk_.size() < need) return true;
        if (bulk_[need - 2] != '\r' || bulk_[need - 1] != '\n') return fail(sink, "redis: bulk string not ended by CRLF");
        bulk_left_ = -1;
        bool ok = on_value(std::string_view(bulk_).substr(0, need - 2), sink);
        bulk_.clear();  // keeps its capacity for the next split bulk string
        if (!ok) return false;
      }
    }
    return true;
  }

 private:
  enum class Kind : uint8_t { kNone, kMessage, kSubscribe, kOther };

  void ping(std::string& out) {
    out.append("*1\r\n$4\r\nPING\r\n");
    ++pings_out_;
  }

  bool fail(Sink& sink, std::string what) {
    failed_ = true;
    sink.on_error(std::move(what));
    return false;
  }

  void maybe_ready(Sink& sink) {
    if (!ready_ && subs_confirmed_ == subs_wanted_ && pings_out_ == 0) {
      ready_ = true;
      sink.on_ready();
    }
  }

  // One header line: its type byte and its text without the type and "\r\n".
  bool on_line(char type, std::string_view text, Sink& sink) {
    switch (type) {
      case '-':
        return fail(sink, "redis: " + std::string(text));
      case '+':
        if (array_left_ > 0) return fail(sink, "redis: simple string inside a push");
        if (text == "PONG" && pings_out_ > 0) {
          --pings_out_;
          maybe_ready(sink);
          return true;
        }
        return fail(sink, "redis: unexpected reply +" + std::string(text));
      case ':': {
        int64_t v = 0;
        if (!parse_int(text, v)) return fail(sink, "redis: malformed integer");
        if (array_left_ > 0) return on_value(text, sink);
        if (publishes_out_ == 0) return fail(sink, "redis: integer reply without a PUBLISH");
        --publishes_out_;
        sink.on_published();
        return true;
      }
      case '*': {
        int64_t n = 0;
        if (!parse_int(text, n)) return fail(sink, "redis: malformed array length");
        if (array_left_ > 0) return fail(sink, "redis: nested array (not a pub/sub push)");
        if (n < 1 || n > 8) return fail(sink, "redis: unexpected array length " + std::string(text));
        array_left_ = n;
        array_len_ = n;
        index_ = 0;
        kind_ = Kind::kNone;
        return true;
      }
      case '$': {
        int64_t n = 0;
        if (!parse_int(text, n)) return fail(sink, "redis: malformed bulk length");
        if (n < 0 || n > kMaxBulk) return fail(sink, "redis: bulk length out of range " + std::string(text));
        if (array_left_ == 0) return fail(sink, "redis: bulk reply outside a push");
        bulk_left_ = n;
        return true;
      }
      default:
        return fail(sink, "redis: unknown reply type");
    }
  }

  // One element of a push array (a bulk string, or an integer as text).
  bool on_value(std::string_view v, Sink& sink) {
    if (index_ == 0) {
      kind_ = v == "message" ? Kind::kMessage : v == "subscribe" ? Kind::kSubscribe : Kind::kOther;
      if (kind_ == Kind::kOther) return fail(sink, "redis: unexpected push " + std::string(v));
      if (array_len_ != 3) return fail(sink, "redis: push with the wrong number of elements");
    } else if (index_ == 2) {
      if (kind_ == Kind::kMessage) {
        sink.on_message(v);
      } else {  // subscribe confirmation: its count of subscriptions
        if (++subs_confirmed_ > subs_wanted_) return fail(sink, "redis: more subscriptions confirmed than asked");
        maybe_ready(sink);
      }
    }
    ++index_;
    --array_left_;
    return true;
  }

  size_t subs_wanted_ = 0;
  size_t subs_confirmed_ = 0;
  size_t pings_out_ = 0;      // PINGs awaiting +PONG
  size_t publishes_out_ = 0;  // PUBLISHes awaiting their integer reply
  bool ready_ = false;
  bool failed_ = false;
  // Parser state: the array being read, and a bulk string's remaining length (-1: reading a line).
  int64_t array_left_ = 0;
  int64_t array_len_ = 0;
  int64_t index_ = 0;
  Kind kind_ = Kind::kNone;
  int64_t bulk_left_ = -1;
  std::string line_;  // a header line split across inputs (reused)
  std::string bulk_;  // a bulk string split across inputs, with its CRLF (reused)
};

}  // namespace

std::unique_ptr<Protocol> make_redis_protocol(const ConnParams& p) {
  return std::make_unique<RedisProtocol>(p);
}

}  // namespace herald::bench
