// TLS listener of the real heraldd: a development certificate made with the
// documented openssl command, real OpenSSL clients, protocol versions and
// cipher suites (TESTING.md "TLS").
#include <gtest/gtest.h>

#include <cstdlib>

#include "server/tls.h"
#include "tests/support/heraldd_process.h"

namespace herald::testing {
namespace {

using codec::FrameType;

int run(const std::string& cmd) {
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

class HeralddTls : public ::testing::Test {
 protected:
  // Short enough for the idle-handshake test, long enough for a sanitizer build's handshakes.
  static constexpr int kHandshakeTimeoutMs = 2000;
  void SetUp() override {
    char tmpl[] = "/tmp/herald-tls-XXXXXX";
    certs_ = ::mkdtemp(tmpl);
    // The same command the docs give for a development certificate.
    ASSERT_EQ(run("cd " + certs_ + " && " + server::kDevCertCommand + " >/dev/null 2>&1"), 0);
    // A second, unrelated CA for the wrong-CA case.
    ASSERT_EQ(run("cd " + certs_ +
                  " && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
                  "-keyout other-key.pem -out other-cert.pem -subj /CN=other >/dev/null 2>&1"),
              0);
    ASSERT_TRUE(server_.start({"--listen.tls", "127.0.0.1:0", "--tls.cert_file", certs_ + "/dev-cert.pem",
                               "--tls.key_file", certs_ + "/dev-key.pem", "--protocol.handshake_timeout_ms",
                               std::to_string(kHandshakeTimeoutMs)}))
        << server_.log();
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(certs_, ec);
  }

  SSL_CTX* client_ctx(const std::string& ca_file) {
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    EXPECT_EQ(SSL_CTX_load_verify_locations(ctx, ca_file.c_str(), nullptr), 1);
    return ctx;
  }

  // `openssl s_client` against the TLS listener with extra flags; true if the handshake succeeded.
  bool s_client(const std::string& flags) {
    // stdin from /dev/null: s_client sends nothing (a stray byte would be a bad
    // frame and the server's Error + close would make s_client fail).
    return run("timeout 10 openssl s_client -connect " + server_.address("tls") + " " + flags +
               " </dev/null >/dev/null 2>&1") == 0;
  }

  std::string certs_;
  HeralddProcess server_;
};

TEST_F(HeralddTls, SubscribeAndReceiveOverTls) {
  SSL_CTX* ctx = client_ctx(certs_ + "/dev-cert.pem");
  Client c(server_.port("tls"));
  std::string error;
  ASSERT_TRUE(c.start_tls(ctx, "localhost", &error)) << error;
  ASSERT_TRUE(c.handshake(make_token("t1")));
  ASSERT_EQ(c.subscribe("user:t1")->type, FrameType::kSubscribeOk);
  nlohmann::json body = {{"channel", "user:t1"}, {"type", "t"}, {"payload", {{"x", 1}}}};
  ASSERT_EQ(http(server_.port("api"), "POST", "/v1/publish", body.dump()).status, 200);
  auto p = c.read_until(FrameType::kPublication);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->as<v1::Publication>().channel(), "user:t1");
  SSL_CTX_free(ctx);
}

TEST_F(HeralddTls, WrongCaFailsWithAClearError) {
  SSL_CTX* ctx = client_ctx(certs_ + "/other-cert.pem");
  Client c(server_.port("tls"));
  std::string error;
  EXPECT_FALSE(c.start_tls(ctx, "localhost", &error));
  EXPECT_NE(error.find("certificate verify failed"), std::string::npos) << error;
  SSL_CTX_free(ctx);
}

TEST_F(HeralddTls, OnlyTls12And13WithAeadCiphers) {
  EXPECT_TRUE(s_client("-tls1_3"));
  EXPECT_TRUE(s_client("-tls1_2"));
  EXPECT_FALSE(s_client("-tls1_1"));
  EXPECT_FALSE(s_client("-tls1"));
  // CBC and SHA-1 suites are not offered (Mozilla intermediate).
  EXPECT_FALSE(s_client("-tls1_2 -cipher ECDHE-ECDSA-AES128-SHA"));
  EXPECT_FALSE(s_client("-tls1_2 -cipher ECDHE-ECDSA-AES256-SHA384"));
  EXPECT_TRUE(s_client("-tls1_2 -cipher ECDHE-ECDSA-AES128-GCM-SHA256"));
  EXPECT_TRUE(s_client("-tls1_2 -cipher ECDHE-ECDSA-CHACHA20-POLY1305"));
}

TEST_F(HeralddTls, IdleOrStalledTlsHandshakeClosedAtHandshakeTimeout) {
  Client idle(server_.port("tls"));  // TCP only: never sends a ClientHello
  Client stalled(server_.port("tls"));
  // A TLS record header announcing a 512-byte handshake record, then nothing.
  const uint8_t record_header[5] = {0x16, 0x03, 0x01, 0x02, 0x00};
  ASSERT_TRUE(stalled.send_raw(record_header));
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(idle.wait_closed(kHandshakeTimeoutMs + 3000));
  EXPECT_TRUE(stalled.wait_closed(kHandshakeTimeoutMs + 3000));
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(kHandshakeTimeoutMs - 200));
  // The service stays available.
  SSL_CTX* ctx = client_ctx(certs_ + "/dev-cert.pem");
  Client c(server_.port("tls"));
  ASSERT_TRUE(c.start_tls(ctx, "localhost"));
  EXPECT_TRUE(c.handshake(make_token("after-idle")));
  SSL_CTX_free(ctx);
}

TEST_F(HeralddTls, ClientVanishingWithoutCloseNotifyLeavesServerServing) {
  SSL_CTX* ctx = client_ctx(certs_ + "/dev-cert.pem");
  for (int i = 0; i < 5; ++i) {
    Client c(server_.port("tls"));
    ASSERT_TRUE(c.start_tls(ctx, "localhost"));
    if (i % 2 == 1) {
      // Mid-frame: half a header, then the socket closes without close_notify.
      const uint8_t half[8] = {0x48, 0x52, 0x4C, 0x44, 0, 1, 0, 1};
      c.send_raw(half);
    }
  }  // each Client closes its socket without SSL_shutdown
  Client c(server_.port("tls"));
  ASSERT_TRUE(c.start_tls(ctx, "localhost"));
  EXPECT_TRUE(c.handshake(make_token("t2")));
  HttpResponse h = http(server_.port("api"), "GET", "/healthz", "", "");
  EXPECT_EQ(h.status, 200);
  SSL_CTX_free(ctx);
}

}  // namespace
}  // namespace herald::testing
