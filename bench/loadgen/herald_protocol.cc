// The load generator's Herald adapter: binary frames over TCP, or the same frames inside
// client-masked binary WebSocket messages (subprotocol herald.v1). Sans-IO: bytes in, events
// and answers (Pong, batched Acks) out. No allocation per received message: frames are read
// by the codec's MessageReader and Publications scanned in place, not parsed into objects.
#include "bench/loadgen/herald_protocol.h"

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "codec/frame_header.h"
#include "codec/message.h"
#include "codec/message_reader.h"
#include "herald.pb.h"

namespace herald::bench {
namespace {

using codec::FrameType;

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
size_t varint_size(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) v >>= 7, ++n;
  return n;
}
void put_tag(std::string& out, uint32_t field, uint32_t wire) { put_varint(out, (field << 3) | wire); }
void put_bytes_field(std::string& out, uint32_t field, std::string_view v) {
  put_tag(out, field, 2);
  put_varint(out, v.size());
  out.append(v);
}
size_t bytes_field_size(uint32_t field, size_t n) { return varint_size(field << 3) + varint_size(n) + n; }

bool get_varint(const uint8_t*& p, const uint8_t* end, uint64_t& v) {
  v = 0;
  for (int shift = 0; shift < 64 && p < end; shift += 7) {
    const uint8_t b = *p++;
    v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) return true;
  }
  return false;
}

// The fields of a Publication (or any message) the generator looks at, scanned in place.
struct Scan {
  std::string_view channel;  // field 1
  uint64_t offset = 0;       // field 2 (Publication.offset; PublishOk.request_id is field 1)
  std::string_view payload;
  uint64_t nonce = 0;        // Ping.nonce (field 1 varint)
};

// Walks a protobuf body: length-delimited field `str_field` -> channel, varint field
// `num_field` -> offset, length-delimited `payload_field` -> payload. False if malformed.
bool scan(std::span<const uint8_t> body, uint32_t str_field, uint32_t num_field, uint32_t payload_field, Scan& s) {
  const uint8_t* p = body.data();
  const uint8_t* end = p + body.size();
  while (p < end) {
    uint64_t key = 0;
    if (!get_varint(p, end, key)) return false;
    const uint32_t field = static_cast<uint32_t>(key >> 3);
    switch (key & 7) {
      case 0: {
        uint64_t v = 0;
        if (!get_varint(p, end, v)) return false;
        if (field == num_field) s.offset = v;
        break;
      }
      case 2: {
        uint64_t n = 0;
        if (!get_varint(p, end, n) || n > static_cast<uint64_t>(end - p)) return false;
        const std::string_view v(reinterpret_cast<const char*>(p), n);
        if (field == str_field) s.channel = v;
        if (field == payload_field) s.payload = v;
        p += n;
        break;
      }
      case 1:
        if (end - p < 8) return false;
        p += 8;
        break;
      case 5:
        if (end - p < 4) return false;
        p += 4;
        break;
      default:
        return false;
    }
  }
  return true;
}

codec::ReaderLimits reader_limits() {
  codec::ReaderLimits l;
  l.compression = false;  // Hello offers no compression: the server never compresses
  l.decoder.max_frame_size = 16 * 1024 * 1024;
  l.max_message_size = 16 * 1024 * 1024;
  l.reassembly.max_message_size = 16 * 1024 * 1024;
  l.reassembly.max_buffered_bytes = 16 * 1024 * 1024;
  return l;
}

class HeraldProtocol final : public Protocol {
 public:
  HeraldProtocol(const ConnParams& p, bool websocket, int priority)
      : params_(p), ws_(websocket), priority_(priority), reader_(reader_limits()),
        mask_rng_(static_cast<uint32_t>(std::hash<std::string>{}(p.client_id)) | 1u) {}

  void start_subscriber(std::string& out, const std::string* channels, size_t n) override {
    begin(out);
    for (size_t i = 0; i < n; ++i) {
      v1::Subscribe s;
      s.set_request_id(++request_id_);
      s.set_channel(channels[i]);
      message(s, FrameType::kSubscribe);
      subs_.push_back(Sub{channels[i]});
    }
    pending_subscribes_ = n;
    end(out);
  }

  void start_publisher(std::string& out) override {
    begin(out);
    end(out);
  }

  void publish(std::string& out, std::string_view channel, std::string_view payload) override {
    const uint64_t rid = ++request_id_;
    const size_t body = 1 + varint_size(rid) + bytes_field_size(2, channel.size()) +
                        (priority_ != 0 ? 2 : 0) + bytes_field_size(9, payload.size());
    const size_t start = ws_begin(out, codec::kHeaderSize + body);
    header(out, FrameType::kPublish, body);
    put_tag(out, 1, 0);
    put_varint(out, rid);
    put_bytes_field(out, 2, channel);
    if (priority_ != 0) {
      put_tag(out, 5, 0);
      put_varint(out, static_cast<uint64_t>(priority_));
    }
    put_bytes_field(out, 9, payload);
    ws_end(out, start);
  }

  bool on_input(const uint8_t* data, size_t len, std::string& out, Sink& sink) override {
    if (dead_) return false;
    out_ = &out;
    sink_ = &sink;
    bool ok = ws_ ? ws_input(data, len) : frames(data, len);
    if (ok) flush_acks();
    out_ = nullptr;
    sink_ = nullptr;
    return ok && !dead_;
  }

 private:
  struct Sub {
    std::string channel;
    bool known = false;      // base offset set by the first publication
    uint64_t contiguous = 0; // every offset <= this one was received
    uint64_t above = 0;      // bit i: contiguous + 1 + i received (out of order, priorities)
    uint64_t acked = 0;
    bool durable = false;    // SubscribeOk.durable: like the SDK, ack durable channels only
  };

  // ---- output ----
  // Handshake frames are collected in hs_ and written as one WebSocket message (or as they are).
  void begin(std::string& out) {
    if (ws_) {
      out += "GET /ws HTTP/1.1\r\nHost: " + params_.host +
             "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: herald.v1\r\n\r\n";
    }
    hs_.clear();
    v1::Hello hello;
    hello.add_versions(1);
    hello.set_client_name("herald-loadgen");
    hello.set_device_id(params_.client_id);
    message(hello, FrameType::kHello);
    v1::Auth auth;
    auth.set_token(params_.token);
    message(auth, FrameType::kAuth);
  }
  void end(std::string& out) {
    const size_t start = ws_begin(out, hs_.size());
    out += hs_;
    ws_end(out, start);
    hs_.clear();
  }
  void message(const google::protobuf::Message& m, FrameType type) {
    const std::string body = m.SerializeAsString();
    header(hs_, type, body.size());
    hs_ += body;
  }
  void header(std::string& out, FrameType type, size_t body) {
    uint8_t h[codec::kHeaderSize];
    codec::put_u32(h, codec::kMagic);
    codec::put_u16(h + 4, codec::kVersion1);
    codec::put_u16(h + 6, static_cast<uint16_t>(type));
    codec::put_u32(h + 8, static_cast<uint32_t>(body));
    codec::put_u32(h + 12, seq_++);
    out.append(reinterpret_cast<const char*>(h), sizeof h);
  }
  // WebSocket: a masked binary frame header for `n` payload bytes; returns where the
  // payload starts so ws_end can mask it in place.
  size_t ws_begin(std::string& out, size_t n, uint8_t first = 0x82 /* FIN, binary */) {
    if (!ws_) return out.size();
    out.push_back(static_cast<char>(first));
    if (n < 126) {
      out.push_back(static_cast<char>(0x80 | n));
    } else if (n < 65536) {
      out.push_back(static_cast<char>(0x80 | 126));
      out.push_back(static_cast<char>(n >> 8));
      out.push_back(static_cast<char>(n & 0xff));
    } else {
      out.push_back(static_cast<char>(0x80 | 127));
      for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>((static_cast<uint64_t>(n) >> (8 * i)) & 0xff));
    }
    uint32_t key = mask_rng_;
    mask_rng_ ^= mask_rng_ << 13;
    mask_rng_ ^= mask_rng_ >> 17;
    mask_rng_ ^= mask_rng_ << 5;
    char k[4];
    std::memcpy(k, &key, 4);
    out.append(k, 4);
    return out.size();
  }
  void ws_end(std::string& out, size_t start) {
    if (!ws_) return;
    char* p = out.data();
    const char* k = p + start - 4;
    for (size_t i = start; i < out.size(); ++i) p[i] = static_cast<char>(p[i] ^ k[(i - start) & 3]);
  }
  void control_frame(FrameType type, const std::string& body) {
    const size_t start = ws_begin(*out_, codec::kHeaderSize + body.size());
    header(*out_, type, body.size());
    *out_ += body;
    ws_end(*out_, start);
  }

  // ---- input ----
  bool fail(std::string what) {
    if (!dead_) sink_->on_error(std::move(what));
    dead_ = true;
    return false;
  }

  bool ws_input(const uint8_t* p, size_t len) {
    const uint8_t* end = p + len;
    if (!upgraded_) {
      // The 101 answer's head, then frames.
      while (p < end && !upgraded_) {
        http_.push_back(static_cast<char>(*p++));
        if (http_.size() > 8192) return fail("WebSocket upgrade answer too long");
        if (http_.size() >= 4 && http_.compare(http_.size() - 4, 4, "\r\n\r\n") == 0) {
          if (http_.compare(0, 12, "HTTP/1.1 101") != 0) return fail("upgrade refused: " + http_.substr(0, http_.find('\r')));
          upgraded_ = true;
          http_.clear();
          http_.shrink_to_fit();
        }
      }
    }
    while (p < end) {
      if (ws_left_ == 0 && !ws_in_payload_) {
        // Collect a frame header (2..10 bytes; server frames are not masked).
        ws_head_[ws_head_len_++] = *p++;
        if (ws_head_len_ < 2) continue;
        const uint8_t len7 = ws_head_[1] & 0x7f;
        if (ws_head_[1] & 0x80) return fail("masked frame from the server");
        const size_t need = len7 < 126 ? 2 : len7 == 126 ? 4 : 10;
        if (ws_head_len_ < need) continue;
        uint64_t n = len7;
        if (len7 == 126) n = (uint64_t{ws_head_[2]} << 8) | ws_head_[3];
        if (len7 == 127) {
          n = 0;
          for (int i = 2; i < 10; ++i) n = (n << 8) | ws_head_[i];
        }
        ws_opcode_ = ws_head_[0] & 0x0f;
        ws_head_len_ = 0;
        ws_left_ = n;
        ws_in_payload_ = true;
        control_.clear();
        if (ws_opcode_ == 1) return fail("text WebSocket message on herald.v1");
      }
      const size_t take = static_cast<size_t>(std::min<uint64_t>(ws_left_, static_cast<uint64_t>(end - p)));
      if (ws_opcode_ == 0 || ws_opcode_ == 2) {
        if (take > 0 && !frames(p, take)) return false;
      } else {
        control_.append(reinterpret_cast<const char*>(p), take);
      }
      p += take;
      ws_left_ -= take;
      if (ws_left_ == 0) {
        ws_in_payload_ = false;
        if (ws_opcode_ == 8) {
          const unsigned code = control_.size() >= 2 ? (uint8_t(control_[0]) << 8 | uint8_t(control_[1])) : 0;
          return fail("WebSocket close " + std::to_string(code) + " " + control_.substr(std::min<size_t>(2, control_.size())));
        }
        if (ws_opcode_ == 9) {  // ping: pong with the same payload, masked
          const size_t start = ws_begin(*out_, control_.size(), 0x8a);
          *out_ += control_;
          ws_end(*out_, start);
        }
      }
    }
    return true;
  }

  bool frames(const uint8_t* data, size_t len) {
    std::span<const uint8_t> in(data, len);
    for (;;) {
      codec::InboundMessage m;
      const codec::DecodeResult r = reader_.read(in, 0, m);
      in = in.subspan(r.consumed);
      if (r.status == codec::Status::kNeedMore) return true;
      if (r.status != codec::Status::kOk) {
        return fail(std::string("undecodable input from the server: ") + std::string(codec::to_string(r.status)));
      }
      if (!on_message(m)) return false;
    }
  }

  bool on_message(const codec::InboundMessage& m) {
    switch (m.type) {
      case FrameType::kPublication: {
        Scan s;
        if (!scan(m.body, 1, 2, 11, s)) return fail("malformed Publication");
        note_offset(s.channel, s.offset);
        sink_->on_message(s.payload);
        return true;
      }
      case FrameType::kPublishOk:
        sink_->on_published();
        return true;
      case FrameType::kPing: {
        Scan s;
        scan(m.body, 0, 1, 0, s);
        std::string body;
        if (s.offset != 0) {
          put_tag(body, 1, 0);
          put_varint(body, s.offset);
        }
        control_frame(FrameType::kPong, body);
        return true;
      }
      case FrameType::kWelcome:
        return true;
      case FrameType::kAuthOk:
        if (pending_subscribes_ == 0) sink_->on_ready();
        return true;
      case FrameType::kSubscribeOk: {
        v1::SubscribeOk ok;
        if (!codec::ok(codec::parse_message(m.type, m.body, SIZE_MAX, ok))) return fail("malformed SubscribeOk");
        for (Sub& c : subs_) {
          if (c.channel == ok.channel()) c.durable = ok.durable();
        }
        if (pending_subscribes_ > 0 && --pending_subscribes_ == 0) sink_->on_ready();
        return true;
      }
      case FrameType::kError: {
        v1::Error e;
        if (!codec::ok(codec::parse_message(m.type, m.body, SIZE_MAX, e))) return fail("malformed Error");
        return fail("server error " + std::to_string(e.code()) + ": " + e.text());
      }
      case FrameType::kGoAway: {
        v1::GoAway g;
        codec::parse_message(m.type, m.body, SIZE_MAX, g);
        return fail("GoAway " + std::to_string(g.code()) + ": " + g.reason());
      }
      default:
        return true;  // UnsubscribeOk, Dismiss: nothing to do
    }
  }

  // Tracks the highest contiguous offset per channel; flush_acks sends one Ack per durable
  // channel per batch of input whose contiguous offset moved (what the client SDK does).
  void note_offset(std::string_view channel, uint64_t offset) {
    Sub* s = nullptr;
    for (Sub& c : subs_) {
      if (c.channel == channel) {
        s = &c;
        break;
      }
    }
    if (s == nullptr) return;
    if (!s->known) {
      s->known = true;
      s->contiguous = offset - 1;
      s->acked = offset - 1;
    }
    if (offset <= s->contiguous) return;  // duplicate
    const uint64_t d = offset - s->contiguous - 1;
    if (d >= 64) return;  // gap wider than the window: stop acking (a real client resumes)
    s->above |= uint64_t{1} << d;
    while (s->above & 1) {
      s->above >>= 1;
      ++s->contiguous;
    }
    acks_dirty_ = true;
  }
  void flush_acks() {
    if (!acks_dirty_) return;
    acks_dirty_ = false;
    for (Sub& s : subs_) {
      if (!s.known || !s.durable || s.contiguous <= s.acked) continue;
      s.acked = s.contiguous;
      std::string body;
      put_bytes_field(body, 1, s.channel);
      put_tag(body, 2, 0);
      put_varint(body, s.contiguous);
      control_frame(FrameType::kAck, body);
    }
  }

  ConnParams params_;
  bool ws_;
  int priority_;
  codec::MessageReader reader_;
  uint32_t mask_rng_;
  uint32_t seq_ = 0;
  uint64_t request_id_ = 0;
  size_t pending_subscribes_ = 0;
  std::vector<Sub> subs_;
  bool acks_dirty_ = false;
  bool dead_ = false;
  std::string hs_;
  std::string* out_ = nullptr;
  Sink* sink_ = nullptr;
  // WebSocket input state
  bool upgraded_ = false;
  std::string http_;
  uint8_t ws_head_[10] = {};
  size_t ws_head_len_ = 0;
  uint64_t ws_left_ = 0;
  bool ws_in_payload_ = false;
  uint8_t ws_opcode_ = 0;
  std::string control_;
};

}  // namespace

std::unique_ptr<Protocol> make_herald_protocol(const ConnParams& p, bool websocket, int priority) {
  return std::make_unique<HeraldProtocol>(p, websocket, priority);
}

std::unique_ptr<Protocol> make_herald_protocol(const ConnParams& p, bool websocket) {
  return make_herald_protocol(p, websocket, 1);
}

}  // namespace herald::bench
