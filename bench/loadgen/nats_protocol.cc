// NATS client protocol side of one load-generator connection (CONNECT, SUB, PUB, PING/PONG).
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

// A control line (INFO, MSG, -ERR, ...) longer than this is treated as garbage; INFO, the
// longest the server sends, is a few hundred bytes.
constexpr size_t kMaxLine = 64u << 10;
// Largest message payload accepted (nats-server's own max_payload ceiling is 64 MiB).
constexpr uint64_t kMaxPayload = 64u << 20;

// Appends `v` in decimal without a temporary string (publish is on the load generator's hot path).
void append_uint(std::string& out, uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void append_json_string(std::string& out, std::string_view s) {
  out.push_back('"');
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (static_cast<unsigned char>(c) < 0x20) {
      static const char kHex[] = "0123456789abcdef";
      out.append("\\u00");
      out.push_back(kHex[(c >> 4) & 0xf]);
      out.push_back(kHex[c & 0xf]);
    } else {
      out.push_back(c);
    }
  }
  out.push_back('"');
}

// Splits `s` on spaces and tabs into at most `max` tokens; returns how many were found, or
// max + 1 when there are more.
size_t split(std::string_view s, std::string_view* tok, size_t max) {
  size_t n = 0;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
    if (i == s.size()) break;
    size_t j = i;
    while (j < s.size() && s[j] != ' ' && s[j] != '\t') ++j;
    if (n == max) return max + 1;
    tok[n++] = s.substr(i, j - i);
    i = j;
  }
  return n;
}

// The operation name, upper-cased (the protocol's names are case-insensitive).
bool op_is(std::string_view line, std::string_view op) {
  if (line.size() < op.size()) return false;
  for (size_t i = 0; i < op.size(); ++i) {
    char c = line[i];
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    if (c != op[i]) return false;
  }
  return line.size() == op.size() || line[op.size()] == ' ' || line[op.size()] == '\t';
}

class NatsProtocol final : public Protocol {
 public:
  explicit NatsProtocol(const ConnParams& p) : client_id_(p.client_id) {}

  void start_subscriber(std::string& out, const std::string* channels, size_t n) override {
    put_connect(out);
    for (size_t i = 0; i < n; ++i) {
      out.append("SUB ");
      out.append(channels[i]);
      out.push_back(' ');
      append_uint(out, i + 1);  // sid
      out.append("\r\n");
    }
    // The server handles a connection's commands in order: its PONG means every SUB is active.
    send_ping(out);
  }

  void start_publisher(std::string& out) override {
    put_connect(out);
    send_ping(out);
  }

  // With verbose off NATS acknowledges nothing, so the adapter keeps one PING in flight
  // behind the publishes (as NATS clients flush): the server answers in order, after it
  // processed them, and the PONG confirms every PUB written before its PING. One ping per
  // round trip, not per publish, so confirming costs the server next to nothing.
  void publish(std::string& out, std::string_view channel, std::string_view payload) override {
    out.append("PUB ");
    out.append(channel);
    out.push_back(' ');
    append_uint(out, payload.size());
    out.append("\r\n");
    out.append(payload);
    out.append("\r\n");
    ++unconfirmed_;
    if (!ping_in_flight_) send_ping(out);
  }

  bool on_input(const uint8_t* data, size_t len, std::string& out, Sink& sink) override {
    if (failed_) return false;
    const char* p = reinterpret_cast<const char*>(data);
    const char* end = p + len;
    while (p < end) {
      if (!in_payload_) {
        const char* nl = static_cast<const char*>(std::memchr(p, '\n', end - p));
        if (nl == nullptr) {
          if (line_.size() + (end - p) > kMaxLine) return fail(sink, "nats: control line too long");
          line_.append(p, end - p);
          return true;
        }
        std::string_view line;
        if (line_.empty()) {
          line = std::string_view(p, nl + 1 - p);
        } else {
          if (line_.size() + (nl + 1 - p) > kMaxLine) return fail(sink, "nats: control line too long");
          line_.append(p, nl + 1 - p);
          line = line_;
        }
        p = nl + 1;
        if (line.size() < 2 || line[line.size() - 2] != '\r') return fail(sink, "nats: malformed control line");
        bool ok = on_line(line.substr(0, line.size() - 2), out, sink);
        line_.clear();
        if (!ok) return false;
      } else {
        // A MSG payload and its "\r\n".
        size_t need = payload_len_ + 2;
        if (payload_.empty() && static_cast<size_t>(end - p) >= need) {
          if (p[need - 2] != '\r' || p[need - 1] != '\n') return fail(sink, "nats: payload not ended by CRLF");
          in_payload_ = false;
          sink.on_message(std::string_view(p, need - 2));
          p += need;
          continue;
        }
        size_t take = std::min(need - payload_.size(), static_cast<size_t>(end - p));
        payload_.append(p, take);
        p += take;
        if (payload_.size() < need) return true;
        if (payload_[need - 2] != '\r' || payload_[need - 1] != '\n') return fail(sink, "nats: payload not ended by CRLF");
        in_payload_ = false;
        sink.on_message(std::string_view(payload_).substr(0, need - 2));
        payload_.clear();  // keeps its capacity for the next split payload
      }
    }
    return true;
  }

 private:
  void put_connect(std::string& out) {
    // verbose off: no +OK per command; headers off: messages arrive as MSG, never HMSG.
    out.append(R"(CONNECT {"verbose":false,"pedantic":false,"tls_required":false,"name":)");
    append_json_string(out, client_id_);
    out.append(R"(,"lang":"c++","version":"0.1.0","protocol":1,"echo":true,"headers":false,"no_responders":false})");
    out.append("\r\n");
  }

  // A PING covering every PUB not yet covered by one (the first one covers the handshake).
  void send_ping(std::string& out) {
    out.append("PING\r\n");
    covered_ = unconfirmed_;
    unconfirmed_ = 0;
    ping_in_flight_ = true;
  }

  bool fail(Sink& sink, std::string what) {
    failed_ = true;
    sink.on_error(std::move(what));
    return false;
  }

  // One control line without its "\r\n".
  bool on_line(std::string_view line, std::string& out, Sink& sink) {
    if (!got_info_) {
      if (!op_is(line.substr(0, std::min<size_t>(line.size(), 5)), "INFO")) {
        if (line.size() >= 4 && op_is(line.substr(0, 4), "-ERR")) return fail(sink, "nats: " + std::string(line));
        return fail(sink, "nats: first line is not INFO");
      }
      got_info_ = true;
      return true;
    }
    if (op_is(line.substr(0, std::min<size_t>(line.size(), 4)), "MSG")) {
      // MSG <subject> <sid> [reply-to] <#bytes>
      std::string_view tok[5];
      size_t n = split(line, tok, 5);
      if (n != 4 && n != 5) return fail(sink, "nats: malformed MSG line");
      std::string_view size = tok[n - 1];
      uint64_t len = 0;
      auto r = std::from_chars(size.data(), size.data() + size.size(), len);
      if (r.ec != std::errc() || r.ptr != size.data() + size.size()) return fail(sink, "nats: malformed MSG size");
      if (len > kMaxPayload) return fail(sink, "nats: MSG payload larger than the adapter's limit");
      payload_len_ = static_cast<size_t>(len);
      in_payload_ = true;
      return true;
    }
    if (op_is(line, "PING")) {
      out.append("PONG\r\n");
      return true;
    }
    if (op_is(line, "PONG")) {
      if (!ping_in_flight_) return fail(sink, "nats: PONG without a PING");
      ping_in_flight_ = false;
      size_t confirmed = covered_;
      covered_ = 0;
      if (unconfirmed_ > 0) send_ping(out);  // PUBs written since: cover them too
      if (!ready_) {  // the first PING went out with the handshake
        ready_ = true;
        sink.on_ready();
      }
      for (size_t i = 0; i < confirmed; ++i) sink.on_published();
      return true;
    }
    if (line.size() >= 4 && op_is(line.substr(0, 4), "-ERR")) return fail(sink, "nats: " + std::string(line));
    if (op_is(line, "+OK")) return true;
    if (op_is(line.substr(0, std::min<size_t>(line.size(), 5)), "INFO")) return true;  // cluster updates
    return fail(sink, "nats: unexpected line " + std::string(line.substr(0, 64)));
  }

  std::string client_id_;
  bool ping_in_flight_ = false;  // our PING awaiting its PONG
  size_t covered_ = 0;           // PUBs its PONG confirms
  size_t unconfirmed_ = 0;       // PUBs written after it
  bool got_info_ = false;
  bool ready_ = false;
  bool failed_ = false;
  bool in_payload_ = false;
  size_t payload_len_ = 0;
  std::string line_;     // a control line split across inputs (reused)
  std::string payload_;  // a payload split across inputs, with its CRLF (reused)
};

}  // namespace

std::unique_ptr<Protocol> make_nats_protocol(const ConnParams& p) {
  return std::make_unique<NatsProtocol>(p);
}

}  // namespace herald::bench
