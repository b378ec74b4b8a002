// Test helpers for the sans-IO ClientSession: a host that records everything the session
// writes and reports, a decoder for the client's frames, and a fake server that encodes
// frames with correct sequence numbers. No sockets.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "client-sdk/client_session.h"
#include "codec/frame_encoder.h"
#include "codec/message.h"
#include "codec/message_reader.h"

namespace herald::testing {

struct RecordedPublication {
  std::string channel, epoch, type, payload;
  uint64_t offset = 0;
};

struct RecordedSubscribed {
  std::string channel, epoch;
  uint64_t offset = 0;
  bool resumed = false, recovered = false, durable = false;
};

// Records the session's output bytes and events.
class RecordingHost : public client::ClientSessionHost {
 public:
  void write(std::span<const uint8_t> bytes) noexcept override { out.insert(out.end(), bytes.begin(), bytes.end()); }
  std::string token() noexcept override {
    ++token_calls;
    return token_value;
  }
  void on_ready(std::string_view user, std::string_view session) noexcept override {
    ++ready;
    user_id = user;
    session_id = session;
  }
  void on_subscribed(const client::SubscribedInfo& i) noexcept override {
    subscribed.push_back({std::string(i.channel), std::string(i.epoch), i.offset, i.resumed, i.recovered, i.durable});
  }
  void on_subscribe_failed(std::string_view channel, codec::Status code, std::string_view) noexcept override {
    failed.emplace_back(std::string(channel), code);
  }
  void on_publication(const client::PublicationView& p) noexcept override {
    pubs.push_back({std::string(p.channel), std::string(p.epoch), std::string(p.type), std::string(p.payload), p.offset});
  }
  void on_position(std::string_view channel, std::string_view epoch, uint64_t offset) noexcept override {
    positions.push_back({std::string(channel), std::string(epoch), {}, {}, offset});
  }
  void on_dismiss(std::string_view, uint64_t offset, std::string_view) noexcept override { dismissed.push_back(offset); }
  void on_pong(uint64_t nonce) noexcept override { pongs.push_back(nonce); }

  std::vector<uint8_t> out;
  std::string token_value = "tok";
  int token_calls = 0;
  int ready = 0;
  std::string user_id, session_id;
  std::vector<RecordedSubscribed> subscribed;
  std::vector<std::pair<std::string, codec::Status>> failed;
  std::vector<RecordedPublication> pubs;
  std::vector<RecordedPublication> positions;
  std::vector<uint64_t> dismissed;
  std::vector<uint64_t> pongs;
};

// One decoded client frame.
struct ClientFrame {
  codec::FrameType type;
  std::unique_ptr<google::protobuf::Message> message;
  template <class M>
  const M& as() const {
    return static_cast<const M&>(*message);
  }
};

// Decodes what the client wrote (a fresh reader per connection: call reset() on reconnect).
class ClientFrames {
 public:
  ClientFrames() { reset(); }
  void reset() {
    codec::ReaderLimits l;
    l.compression = false;
    l.decoder.max_frame_size = 16 * 1024 * 1024;
    l.max_message_size = 16 * 1024 * 1024;
    reader_ = std::make_unique<codec::MessageReader>(l);
  }
  // Decodes and consumes every complete frame in `bytes`; false on a decode error.
  bool take(std::vector<uint8_t>& bytes, std::vector<ClientFrame>& frames) {
    std::span<const uint8_t> in(bytes);
    while (!in.empty()) {
      codec::InboundMessage m;
      const codec::DecodeResult r = reader_->read(in, 0, m);
      in = in.subspan(r.consumed);
      if (r.status == codec::Status::kNeedMore) break;
      if (!codec::ok(r.status)) return false;
      ClientFrame f{m.type, nullptr};
      if (!codec::ok(codec::decode_message(m.type, m.body, SIZE_MAX, f.message))) return false;
      frames.push_back(std::move(f));
    }
    bytes.clear();
    return true;
  }

 private:
  std::unique_ptr<codec::MessageReader> reader_;
};

// Encodes server frames with consecutive sequence numbers (reset() per connection).
class FakeServer {
 public:
  void reset() { seq_ = 0; }
  std::vector<uint8_t> frame(const google::protobuf::Message& m, bool checksum = false) {
    codec::FrameType type;
    frame_type_for(m, type);
    std::vector<uint8_t> body;
    codec::serialize_message(m, SIZE_MAX, body);
    codec::EncodedMessage em;
    codec::EncodeOptions o;
    o.checksum = checksum;
    codec::encode_message(type, body, o, nullptr, em);
    std::vector<uint8_t> wire;
    codec::append_frames(em, seq_, wire);
    return wire;
  }
  uint32_t& sequence() { return seq_; }

 private:
  uint32_t seq_ = 0;
};

inline v1::Welcome make_welcome(const std::string& session_id = "s1") {
  v1::Welcome w;
  w.set_version(1);
  w.set_max_frame_size(64 * 1024);
  w.set_max_message_size(1024 * 1024);
  w.set_heartbeat_ms(25000);
  w.set_pong_timeout_ms(10000);
  w.set_session_id(session_id);
  w.set_max_fragments(128);
  return w;
}

inline v1::Publication make_pub(const std::string& channel, const std::string& epoch, uint64_t offset,
                                const std::string& payload = "p") {
  v1::Publication p;
  p.set_channel(channel);
  p.set_epoch(epoch);
  p.set_offset(offset);
  p.set_payload(payload);
  p.set_type("t");
  return p;
}

inline void append(std::vector<uint8_t>& a, const std::vector<uint8_t>& b) { a.insert(a.end(), b.begin(), b.end()); }

}  // namespace herald::testing
