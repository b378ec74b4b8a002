// The C ABI (herald_client.h) against the real heraldd: argument checks and their codes,
// construction errors, events for state, subscription and messages, token and position
// callbacks, status names.
#include "herald_client.h"

#include <gtest/gtest.h>

#include <cstring>

#include "tests/client_support/recorder.h"

namespace herald::testing {
namespace {

struct CEvents {
  std::mutex mu;
  std::vector<std::string> messages;  // "channel offset payload"
  std::vector<int> states;
  std::vector<int> codes;
  int subscribed = 0;
  int recovered = 0;
  std::vector<std::string> errors;

  static void on_event(void* user, const herald_event* e) {
    auto* self = static_cast<CEvents*>(user);
    std::lock_guard<std::mutex> lock(self->mu);
    switch (e->type) {
      case HERALD_EVENT_MESSAGE:
        self->messages.push_back(std::string(e->channel.data, e->channel.len) + " " + std::to_string(e->offset) +
                                 " " + std::string(e->payload.data, e->payload.len));
        break;
      case HERALD_EVENT_STATE:
        self->states.push_back(e->state);
        self->codes.push_back(e->code);
        break;
      case HERALD_EVENT_SUBSCRIBED:
        ++self->subscribed;
        self->recovered += e->recovered;
        break;
      case HERALD_EVENT_ERROR:
        self->errors.push_back(std::string(e->channel.data, e->channel.len) + ":" + std::to_string(e->code));
        break;
      default:
        break;
    }
  }
  bool wait(const std::function<bool()>& pred, int timeout_ms = 5000) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      {
        std::lock_guard<std::mutex> lock(mu);
        if (pred()) return true;
      }
      if (std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
};

TEST(ClientCApi, ArgumentChecks) {
  EXPECT_EQ(herald_options_set_server(nullptr, "h", 1), HERALD_INVALID_FIELD);
  herald_options* o = herald_options_new();
  ASSERT_NE(o, nullptr);
  EXPECT_EQ(herald_options_set_server(o, "", 1), HERALD_INVALID_FIELD);
  EXPECT_EQ(herald_options_set_server(o, "127.0.0.1", 0), HERALD_INVALID_FIELD);
  EXPECT_EQ(herald_options_set_server(o, "127.0.0.1", 7600), HERALD_OK);
  EXPECT_EQ(herald_options_set_reconnect(o, 0, 10), HERALD_INVALID_FIELD);
  EXPECT_EQ(herald_options_set_reconnect(o, 100, 10), HERALD_INVALID_FIELD);
  EXPECT_EQ(herald_options_set_wire(o, 1, 0, 100), HERALD_INVALID_FIELD);
  EXPECT_EQ(herald_options_set_timeouts(o, 0, 0, 0), HERALD_INVALID_FIELD);

  char err[128] = "";
  // No token and no provider.
  EXPECT_EQ(herald_client_new(o, nullptr, nullptr, err, sizeof err), nullptr);
  EXPECT_NE(std::strstr(err, "token"), nullptr) << err;
  herald_options_set_token(o, "t");
  herald_options_set_tls(o, 1, "/nonexistent/ca.pem", nullptr);
  EXPECT_EQ(herald_client_new(o, nullptr, nullptr, err, sizeof err), nullptr);
  EXPECT_NE(std::strstr(err, "ca_file"), nullptr) << err;
  herald_options_set_tls(o, 0, nullptr, nullptr);
  EXPECT_EQ(herald_client_new(nullptr, nullptr, nullptr, err, sizeof err), nullptr);
  EXPECT_EQ(herald_client_attach(nullptr, o, nullptr, nullptr, err, sizeof err), nullptr);

  herald_client* c = herald_client_new(o, nullptr, nullptr, nullptr, 0);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(herald_client_subscribe(c, "bad channel"), HERALD_BAD_CHANNEL);
  EXPECT_EQ(herald_client_subscribe(c, nullptr), HERALD_INVALID_FIELD);
  EXPECT_EQ(herald_client_ping(c), HERALD_CONNECTION_LOST);  // not connected
  EXPECT_EQ(herald_client_state(c), HERALD_STATE_STOPPED);
  EXPECT_EQ(herald_client_stop(c), HERALD_OK);
  herald_client_free(c);
  herald_client_free(nullptr);
  herald_options_free(o);

  EXPECT_STREQ(herald_status_name(702), "kCertificateVerifyFailed");
  EXPECT_STREQ(herald_status_name(9999), "kUnknownStatus");
  EXPECT_NE(std::strlen(herald_status_text(503)), 0u);
  EXPECT_STREQ(herald_version(), "0.1.0");
}

struct Positions {
  std::mutex mu;
  std::map<std::string, std::pair<std::string, uint64_t>> stored;
  static int load(void* user, const char* channel, char* epoch, size_t cap, uint64_t* offset) {
    auto* self = static_cast<Positions*>(user);
    std::lock_guard<std::mutex> lock(self->mu);
    auto it = self->stored.find(channel);
    if (it == self->stored.end()) return 0;
    std::snprintf(epoch, cap, "%s", it->second.first.c_str());
    *offset = it->second.second;
    return 1;
  }
  static void store(void* user, const char* channel, const char* epoch, uint64_t offset) {
    auto* self = static_cast<Positions*>(user);
    std::lock_guard<std::mutex> lock(self->mu);
    self->stored[channel] = {epoch, offset};
  }
};

size_t provide_token(void* user, char* buf, size_t cap) {
  const auto* token = static_cast<const std::string*>(user);
  if (token->size() + 1 > cap) return 0;
  std::memcpy(buf, token->c_str(), token->size() + 1);
  return token->size();
}

TEST(ClientCApi, SubscribesReceivesAndResumesThroughCallbacks) {
  HeralddProcess server;
  ASSERT_TRUE(server.start());
  const std::string token = make_token("alice", {{"channels", {"news"}}});
  Positions positions;
  herald_options* o = herald_options_new();
  herald_options_set_server(o, "127.0.0.1", server.port("tcp"));
  herald_options_set_token_provider(o, provide_token, const_cast<std::string*>(&token));
  herald_options_set_position_callbacks(o, Positions::load, Positions::store, &positions);
  herald_options_set_reconnect(o, 50, 200);
  for (int round = 0; round < 2; ++round) {
    CEvents ev;
    char err[128];
    herald_client* c = herald_client_new(o, CEvents::on_event, &ev, err, sizeof err);
    ASSERT_NE(c, nullptr) << err;
    ASSERT_EQ(herald_client_subscribe(c, "news"), HERALD_OK);
    ASSERT_EQ(herald_client_subscribe(c, "user:bob"), HERALD_OK);  // refused by the server
    ASSERT_EQ(herald_client_start(c), HERALD_OK);
    ASSERT_TRUE(ev.wait([&] { return ev.subscribed == 1 && !ev.errors.empty(); }));
    EXPECT_EQ(ev.errors[0], "user:bob:505");
    EXPECT_EQ(ev.recovered, round);  // the second round resumes from the stored position
    publish(server, "news", "r" + std::to_string(round));
    ASSERT_TRUE(ev.wait([&] { return ev.messages.size() == 1; }));
    EXPECT_EQ(ev.messages[0], "news " + std::to_string(round + 1) + " \"r" + std::to_string(round) + "\"");
    EXPECT_EQ(herald_client_state(c), HERALD_STATE_CONNECTED);
    EXPECT_EQ(herald_client_stop(c), HERALD_OK);
    herald_client_free(c);
    std::lock_guard<std::mutex> lock(positions.mu);
    ASSERT_EQ(positions.stored.count("news"), 1u);
    EXPECT_EQ(positions.stored["news"].second, static_cast<uint64_t>(round + 1));
  }
  herald_options_free(o);
}

}  // namespace
}  // namespace herald::testing
