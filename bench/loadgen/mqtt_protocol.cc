// MQTT 3.1.1 client side of one load-generator connection (clean session, QoS 0 and 1).
// Sans-IO: turns intents into bytes and bytes into events; no sockets, no clock, no
// allocation per received message (payloads are views into the input or a reused buffer).
#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "protocol.h"

namespace herald::bench {
namespace {

// Packet types (high nibble of the fixed header's first byte), MQTT 3.1.1 section 2.2.1.
constexpr uint8_t kConnect = 1, kConnack = 2, kPublish = 3, kPuback = 4, kSubscribe = 8,
                  kSuback = 9, kPingreq = 12, kPingresp = 13;
// Largest packet accepted from the server (header + body). The varint itself allows
// 268,435,455 bytes; a benchmark never needs more than this, and the limit is checked
// before any byte of the body is buffered.
constexpr size_t kMaxPacket = 16u << 20;
// Largest remaining length the spec's four varint bytes can encode.
constexpr size_t kMaxRemaining = 268'435'455;
constexpr size_t kPacketIds = 65536;

void put_u16(std::string& out, size_t v) {
  out.push_back(static_cast<char>((v >> 8) & 0xff));
  out.push_back(static_cast<char>(v & 0xff));
}

// Remaining length as the spec's base-128 varint (1 to 4 bytes).
void put_remaining(std::string& out, size_t v) {
  do {
    uint8_t b = v % 128;
    v /= 128;
    if (v > 0) b |= 0x80;
    out.push_back(static_cast<char>(b));
  } while (v > 0);
}

void put_str(std::string& out, std::string_view s) {
  put_u16(out, s.size());
  out.append(s);
}

// Parses a fixed header from [p, p+n). Returns 1 and the whole packet's size in `total`,
// 0 when more bytes are needed, -1 on a malformed or oversized length (`why` says which).
int parse_header(const uint8_t* p, size_t n, size_t& total, const char*& why) {
  size_t value = 0;
  for (size_t i = 1; i <= 4; ++i) {
    if (i >= n) return 0;
    value |= static_cast<size_t>(p[i] & 0x7f) << (7 * (i - 1));
    if ((p[i] & 0x80) == 0) {
      if (value + 1 + i > kMaxPacket) {
        why = "mqtt: packet larger than the adapter's limit";
        return -1;
      }
      total = 1 + i + value;
      return 1;
    }
  }
  why = "mqtt: remaining length longer than 4 bytes";
  return -1;
}

class MqttProtocol final : public Protocol {
 public:
  explicit MqttProtocol(const ConnParams& p) : client_id_(p.client_id), qos_(p.qos) {}

  void start_subscriber(std::string& out, const std::string* channels, size_t n) override {
    put_connect(out);
    subs_wanted_ = n;
    // One SUBSCRIBE per channel, each with its own packet id, so a refusal names its channel.
    for (size_t i = 0; i < n; ++i) {
      const std::string& topic = channels[i];
      uint16_t id = next_id();
      out.push_back(static_cast<char>(kSubscribe << 4 | 0x02));  // flags 0010 are mandatory
      put_remaining(out, 2 + 2 + topic.size() + 1);
      put_u16(out, id);
      put_str(out, topic);
      out.push_back(static_cast<char>(qos_ == 1 ? 1 : 0));
      sub_ids_.push_back(id);
    }
  }

  void start_publisher(std::string& out) override { put_connect(out); }

  // QoS 1: the PUBACK confirms the publish. QoS 0 has no acknowledgement, so the adapter
  // keeps one PINGREQ in flight behind the publishes: the broker answers in order, after it
  // processed them, and the PINGRESP confirms every QoS 0 publish written before its PINGREQ
  // (one ping per round trip, not per publish: mosquitto writes each answer with its own
  // system call, and a ping per publish would double its work on the publisher's side).
  void publish(std::string& out, std::string_view channel, std::string_view payload) override {
    size_t remaining = 2 + channel.size() + (qos_ == 1 ? 2 : 0) + payload.size();
    if (remaining > kMaxRemaining || channel.size() > 0xffff) {
      if (deferred_error_.empty()) deferred_error_ = "mqtt: publish too large for MQTT's remaining length";
      return;
    }
    out.push_back(static_cast<char>(kPublish << 4 | (qos_ == 1 ? 0x02 : 0x00)));
    put_remaining(out, remaining);
    put_str(out, channel);
    if (qos_ == 1) {
      if (in_flight_.empty()) in_flight_.assign(kPacketIds / 64, 0);
      uint16_t id = next_id();
      uint64_t& word = in_flight_[id / 64];
      uint64_t bit = uint64_t{1} << (id % 64);
      if (word & bit) {
        // 65,535 publishes unacknowledged: the id would be reused while still in flight.
        if (deferred_error_.empty()) deferred_error_ = "mqtt: more than 65535 QoS 1 publishes in flight";
      }
      word |= bit;
      put_u16(out, id);
    }
    out.append(payload);
    if (qos_ != 1) {
      ++unconfirmed_;
      if (!ping_in_flight_) send_ping(out);
    }
  }

  bool on_input(const uint8_t* data, size_t len, std::string& out, Sink& sink) override {
    if (failed_) return false;
    if (!deferred_error_.empty()) return fail(sink, deferred_error_);
    const uint8_t* p = data;
    const uint8_t* end = data + len;
    // First complete the packet left partial by earlier calls.
    if (!partial_.empty()) {
      while (partial_total_ == 0 && p < end) {  // header still incomplete: at most 4 more bytes
        partial_.push_back(static_cast<char>(*p++));
        const char* why = nullptr;
        int r = parse_header(reinterpret_cast<const uint8_t*>(partial_.data()), partial_.size(),
                             partial_total_, why);
        if (r < 0) return fail(sink, why);
      }
      if (partial_total_ == 0) return true;
      size_t take = std::min(partial_total_ - partial_.size(), static_cast<size_t>(end - p));
      partial_.append(reinterpret_cast<const char*>(p), take);
      p += take;
      if (partial_.size() < partial_total_) return true;
      bool ok = handle(reinterpret_cast<const uint8_t*>(partial_.data()), partial_total_, out, sink);
      partial_.clear();  // keeps its capacity: the next partial packet reuses it
      partial_total_ = 0;
      if (!ok) return false;
    }
    // Then whole packets straight from the input.
    while (p < end) {
      size_t total = 0;
      const char* why = nullptr;
      int r = parse_header(p, end - p, total, why);
      if (r < 0) return fail(sink, why);
      if (r == 0 || total > static_cast<size_t>(end - p)) {
        partial_.assign(reinterpret_cast<const char*>(p), end - p);
        partial_total_ = r == 0 ? 0 : total;
        return true;
      }
      if (!handle(p, total, out, sink)) return false;
      p += total;
    }
    return true;
  }

 private:
  void put_connect(std::string& out) {
    // Variable header: protocol name "MQTT", level 4, flags (clean session only), keepalive 0
    // (no keepalive: the broker never disconnects an idle benchmark connection).
    size_t remaining = 10 + 2 + client_id_.size();
    out.push_back(static_cast<char>(kConnect << 4));
    put_remaining(out, remaining);
    put_str(out, "MQTT");
    out.push_back(4);
    out.push_back(0x02);
    put_u16(out, 0);
    put_str(out, client_id_);
  }

  // A PINGREQ covering every QoS 0 publish not yet covered by one.
  void send_ping(std::string& out) {
    out.push_back(static_cast<char>(kPingreq << 4));
    out.push_back('\0');
    covered_ = unconfirmed_;
    unconfirmed_ = 0;
    ping_in_flight_ = true;
  }

  uint16_t next_id() {
    if (++last_id_ == 0) last_id_ = 1;  // 0 is not a valid packet id
    return last_id_;
  }

  bool fail(Sink& sink, std::string what) {
    failed_ = true;
    sink.on_error(std::move(what));
    return false;
  }

  void maybe_ready(Sink& sink) {
    if (connected_ && subs_acked_ == subs_wanted_ && !ready_) {
      ready_ = true;
      sink.on_ready();
    }
  }

  // One whole packet: [p, p+total). Views passed to the sink live until it returns.
  bool handle(const uint8_t* p, size_t total, std::string& out, Sink& sink) {
    uint8_t type = p[0] >> 4;
    uint8_t flags = p[0] & 0x0f;
    size_t hdr = 2;
    while (p[hdr - 1] & 0x80) ++hdr;
    const uint8_t* body = p + hdr;
    size_t n = total - hdr;
    if (!connected_ && type != kConnack) return fail(sink, "mqtt: first packet is not CONNACK");
    switch (type) {
      case kConnack: {
        if (connected_ || n != 2) return fail(sink, "mqtt: unexpected or malformed CONNACK");
        if (body[1] != 0) {
          static const char* const kReasons[] = {"accepted", "unacceptable protocol version",
                                                 "identifier rejected", "server unavailable",
                                                 "bad user name or password", "not authorized"};
          std::string why = "mqtt: connection refused: ";
          why += body[1] < 6 ? kReasons[body[1]] : "unknown return code";
          return fail(sink, why);
        }
        connected_ = true;
        maybe_ready(sink);
        return true;
      }
      case kSuback: {
        if (n < 3) return fail(sink, "mqtt: malformed SUBACK");
        uint16_t id = static_cast<uint16_t>(body[0] << 8 | body[1]);
        auto it = std::find(sub_ids_.begin(), sub_ids_.end(), id);
        if (it == sub_ids_.end() || n != 3) return fail(sink, "mqtt: SUBACK for an unknown packet id");
        uint8_t rc = body[2];
        if (rc == 0x80) return fail(sink, "mqtt: subscription refused (SUBACK 0x80)");
        // The broker may grant a lower QoS than asked, never a higher one.
        if (rc > 2 || rc > (qos_ == 1 ? 1 : 0)) return fail(sink, "mqtt: bad SUBACK return code");
        sub_ids_.erase(it);
        ++subs_acked_;
        maybe_ready(sink);
        return true;
      }
      case kPublish: {
        uint8_t qos = (flags >> 1) & 0x03;
        if (qos > 1) return fail(sink, "mqtt: PUBLISH with QoS 2 (never subscribed with it)");
        if (n < 2) return fail(sink, "mqtt: malformed PUBLISH");
        size_t topic_len = static_cast<size_t>(body[0] << 8 | body[1]);
        size_t off = 2 + topic_len + (qos == 1 ? 2 : 0);
        if (off > n) return fail(sink, "mqtt: PUBLISH topic longer than the packet");
        if (qos == 1) {
          out.push_back(static_cast<char>(kPuback << 4));
          out.push_back(2);
          out.push_back(static_cast<char>(body[2 + topic_len]));
          out.push_back(static_cast<char>(body[3 + topic_len]));
        }
        sink.on_message(std::string_view(reinterpret_cast<const char*>(body + off), n - off));
        return true;
      }
      case kPuback: {
        if (n != 2) return fail(sink, "mqtt: malformed PUBACK");
        uint16_t id = static_cast<uint16_t>(body[0] << 8 | body[1]);
        uint64_t bit = uint64_t{1} << (id % 64);
        if (in_flight_.empty() || (in_flight_[id / 64] & bit) == 0) {
          return fail(sink, "mqtt: PUBACK for a packet id not in flight");
        }
        in_flight_[id / 64] &= ~bit;
        sink.on_published();
        return true;
      }
      case kPingresp: {
        if (n != 0 || !ping_in_flight_) return fail(sink, "mqtt: unexpected PINGRESP");
        ping_in_flight_ = false;
        size_t confirmed = covered_;
        covered_ = 0;
        if (unconfirmed_ > 0) send_ping(out);  // publishes written since: cover them too
        for (size_t i = 0; i < confirmed; ++i) sink.on_published();
        return true;
      }
      default:
        return fail(sink, "mqtt: unexpected packet type " + std::to_string(type));
    }
  }

  std::string client_id_;
  int qos_;
  uint16_t last_id_ = 0;
  size_t subs_wanted_ = 0;
  size_t subs_acked_ = 0;
  std::vector<uint16_t> sub_ids_;   // SUBSCRIBEs not yet acknowledged
  std::vector<uint64_t> in_flight_;  // QoS 1 publish ids awaiting PUBACK (bitset, publishers only)
  bool ping_in_flight_ = false;      // a PINGREQ awaiting its PINGRESP
  size_t covered_ = 0;               // QoS 0 publishes its PINGRESP confirms
  size_t unconfirmed_ = 0;           // QoS 0 publishes written after it
  bool connected_ = false;
  bool ready_ = false;
  bool failed_ = false;
  std::string deferred_error_;  // a publish() that could not be encoded; reported by on_input
  std::string partial_;          // bytes of an incomplete packet, reused across packets
  size_t partial_total_ = 0;     // its full size once the header is complete, else 0
};

}  // namespace

std::unique_ptr<Protocol> make_mqtt_protocol(const ConnParams& p) {
  return std::make_unique<MqttProtocol>(p);
}

}  // namespace herald::bench
