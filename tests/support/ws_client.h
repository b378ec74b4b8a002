// A raw WebSocket client for tests: sends any frame, malformed ones included (bad
// RSV bits, opcodes, unmasked, fragmented control frames), and reads the server's
// frames strictly (they must be unmasked). Blocking, over a real TCP socket.
#pragma once

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "tests/support/heraldd_process.h"

namespace herald::testing {

struct WsFrame {
  bool fin = true;
  uint8_t rsv = 0;
  uint8_t opcode = 0;
  std::string payload;
  uint16_t close_code() const {
    return payload.size() >= 2 ? static_cast<uint16_t>((uint8_t(payload[0]) << 8) | uint8_t(payload[1])) : 0;
  }
};

class WsClient {
 public:
  explicit WsClient(uint16_t port) : port_(port), fd_(connect_tcp(port)) {}
  ~WsClient() {
    if (fd_ >= 0) ::close(fd_);
  }
  WsClient(const WsClient&) = delete;
  int fd() const { return fd_; }

  bool send_raw(const std::string& bytes) {
    size_t off = 0;
    while (off < bytes.size()) {
      const ssize_t n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return true;
  }

  // Sends an upgrade request and reads the response head; returns the status (0 on failure).
  int upgrade(const std::string& protocol = "herald.v1", const std::string& extra_headers = "",
              const std::string& request_line = "GET /ws HTTP/1.1", bool with_key = true, bool with_version = true) {
    std::string r = request_line + "\r\nHost: 127.0.0.1:" + std::to_string(port_) +
                    "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n";
    if (with_key) r += "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    if (with_version) r += "Sec-WebSocket-Version: 13\r\n";
    if (!protocol.empty()) r += "Sec-WebSocket-Protocol: " + protocol + "\r\n";
    r += extra_headers + "\r\n";
    if (!send_raw(r)) return 0;
    return read_head();
  }

  // Reads an HTTP response head (and keeps the rest buffered); returns its status.
  int read_head(int timeout_ms = 3000) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    size_t end;
    while ((end = buf_.find("\r\n\r\n")) == std::string::npos) {
      if (!fill(deadline)) return 0;
    }
    head_ = buf_.substr(0, end + 4);
    buf_.erase(0, end + 4);
    if (head_.size() < 12) return 0;
    return std::stoi(head_.substr(9, 3));
  }
  const std::string& head() const { return head_; }
  // Everything after the head until the server closes (an error body, the demo page).
  std::string read_to_eof(int timeout_ms = 3000) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (fill(deadline)) {
    }
    return buf_;
  }

  void send_frame(uint8_t opcode, const std::string& payload, bool fin = true, uint8_t rsv = 0, bool mask = true) {
    std::string f;
    f += static_cast<char>((fin ? 0x80 : 0) | (rsv << 4) | opcode);
    const uint8_t m = mask ? 0x80 : 0;
    if (payload.size() < 126) {
      f += static_cast<char>(m | payload.size());
    } else if (payload.size() <= 0xFFFF) {
      f += static_cast<char>(m | 126);
      f += static_cast<char>(payload.size() >> 8);
      f += static_cast<char>(payload.size() & 0xFF);
    } else {
      f += static_cast<char>(m | 127);
      for (int i = 7; i >= 0; --i) f += static_cast<char>((uint64_t{payload.size()} >> (8 * i)) & 0xFF);
    }
    std::string body = payload;
    if (mask) {
      const uint8_t key[4] = {0x12, 0x34, 0x56, 0x78};
      f.append(reinterpret_cast<const char*>(key), 4);
      for (size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>(body[i] ^ key[i % 4]);
    }
    send_raw(f + body);
  }

  void send_close(uint16_t code, const std::string& reason = "") {
    std::string p;
    p += static_cast<char>(code >> 8);
    p += static_cast<char>(code & 0xFF);
    send_frame(0x8, p + reason);
  }

  // Sends Herald frames as one binary message.
  void send_herald(const google::protobuf::Message& m) {
    codec::FrameType type;
    ASSERT_TRUE(codec::frame_type_for(m, type));
    std::vector<uint8_t> body;
    codec::serialize_message(m, SIZE_MAX, body);
    codec::EncodedMessage em;
    codec::EncodeOptions o;
    o.checksum = false;
    ASSERT_TRUE(codec::ok(codec::encode_message(type, body, o, nullptr, em)));
    std::vector<uint8_t> wire;
    codec::append_frames(em, seq_, wire);
    send_frame(0x2, std::string(wire.begin(), wire.end()));
  }

  // The next frame from the server; nullopt at EOF or timeout. A masked server frame
  // or reserved bits fail the test (RFC 6455 §5.1).
  std::optional<WsFrame> read_frame(int timeout_ms = 3000) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      if (buf_.size() >= 2) {
        const auto b0 = static_cast<uint8_t>(buf_[0]), b1 = static_cast<uint8_t>(buf_[1]);
        EXPECT_EQ(b1 & 0x80, 0) << "server frames must not be masked";
        EXPECT_EQ(b0 & 0x70, 0) << "server frames carry no RSV bits";
        size_t len = b1 & 0x7F, hdr = 2;
        if (len == 126 && buf_.size() >= 4) {
          len = (uint8_t(buf_[2]) << 8) | uint8_t(buf_[3]);
          hdr = 4;
        } else if (len == 127 && buf_.size() >= 10) {
          len = 0;
          for (int i = 0; i < 8; ++i) len = (len << 8) | uint8_t(buf_[2 + i]);
          hdr = 10;
        }
        if ((b1 & 0x7F) < 126 || hdr > 2) {
          if (buf_.size() >= hdr + len) {
            WsFrame f{(b0 & 0x80) != 0, static_cast<uint8_t>((b0 >> 4) & 7), static_cast<uint8_t>(b0 & 0xF),
                      buf_.substr(hdr, len)};
            buf_.erase(0, hdr + len);
            return f;
          }
        }
      }
      if (!fill(deadline)) return std::nullopt;
    }
  }

  // Reads frames until the server's close frame; returns its code (0 = none in it,
  // -1 = the connection ended or timed out without one). Data frames go to `skipped`.
  int wait_close(int timeout_ms = 2000, std::vector<WsFrame>* skipped = nullptr) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (std::chrono::steady_clock::now() < deadline) {
      const int left = static_cast<int>(
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count());
      auto f = read_frame(std::max(left, 1));
      if (!f) return -1;
      if (f->opcode == 0x8) return f->close_code();
      if (skipped != nullptr) skipped->push_back(*f);
    }
    return -1;
  }

  // True when the server closed the TCP connection within `timeout_ms`.
  bool eof(int timeout_ms = 2000) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (fill(deadline)) buf_.clear();
    return closed_;
  }

 private:
  bool fill(std::chrono::steady_clock::time_point deadline) {
    if (closed_) return false;
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return false;
    pollfd p{fd_, POLLIN, 0};
    const int wait = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count());
    if (::poll(&p, 1, wait) <= 0) return false;
    char tmp[65536];
    const ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n <= 0) {
      closed_ = true;
      return false;
    }
    buf_.append(tmp, static_cast<size_t>(n));
    return true;
  }

  uint16_t port_;
  int fd_;
  std::string buf_;
  std::string head_;
  uint32_t seq_ = 0;
  bool closed_ = false;
};

}  // namespace herald::testing
