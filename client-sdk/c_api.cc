// The C ABI (herald_client.h) over herald::Client: handle wrappers and type conversion
// only. No exception leaves this file.
#include "herald_client.h"

#include <cstring>
#include <new>
#include <string>

#include "codec/status.h"
#include "herald/client.h"

// The C constants are the codec's numbers.
static_assert(HERALD_INVALID_FIELD == static_cast<int>(herald::codec::Status::kInvalidField));
static_assert(HERALD_AUTH_FAILED == static_cast<int>(herald::codec::Status::kAuthFailed));
static_assert(HERALD_TOKEN_EXPIRED == static_cast<int>(herald::codec::Status::kTokenExpired));
static_assert(HERALD_PERMISSION_DENIED == static_cast<int>(herald::codec::Status::kPermissionDenied));
static_assert(HERALD_HEARTBEAT_TIMEOUT == static_cast<int>(herald::codec::Status::kHeartbeatTimeout));
static_assert(HERALD_BAD_CHANNEL == static_cast<int>(herald::codec::Status::kBadChannel));
static_assert(HERALD_GOING_AWAY == static_cast<int>(herald::codec::Status::kGoingAway));
static_assert(HERALD_INTERNAL == static_cast<int>(herald::codec::Status::kInternal));
static_assert(HERALD_CONNECT_FAILED == static_cast<int>(herald::codec::Status::kConnectFailed));
static_assert(HERALD_TLS_HANDSHAKE_FAILED == static_cast<int>(herald::codec::Status::kTlsHandshakeFailed));
static_assert(HERALD_CERTIFICATE_VERIFY_FAILED == static_cast<int>(herald::codec::Status::kCertificateVerifyFailed));
static_assert(HERALD_CONNECTION_LOST == static_cast<int>(herald::codec::Status::kConnectionLost));
static_assert(HERALD_STATE_STOPPED == static_cast<int>(herald::ConnectionState::kStopped));
static_assert(HERALD_STATE_CONNECTING == static_cast<int>(herald::ConnectionState::kConnecting));
static_assert(HERALD_STATE_CONNECTED == static_cast<int>(herald::ConnectionState::kConnected));
static_assert(HERALD_STATE_RECONNECTING == static_cast<int>(herald::ConnectionState::kReconnecting));
static_assert(HERALD_STATE_FAILED == static_cast<int>(herald::ConnectionState::kFailed));

struct herald_options {
  herald::Options o;
};

struct herald_client {
  std::unique_ptr<herald::Client> c;
};

namespace {

std::string str(const char* s) { return s == nullptr ? std::string() : std::string(s); }
herald_str view(std::string_view s) { return {s.data(), s.size()}; }

void put_error(char* err, size_t errlen, const std::string& text) {
  if (err == nullptr || errlen == 0) return;
  const size_t n = std::min(errlen - 1, text.size());
  std::memcpy(err, text.data(), n);
  err[n] = '\0';
}

herald::Handlers make_handlers(herald_event_fn fn, void* user) {
  herald::Handlers h;
  if (fn == nullptr) return h;
  h.on_message = [fn, user](const herald::Message& m) {
    herald_event e{};
    e.type = HERALD_EVENT_MESSAGE;
    e.channel = view(m.channel);
    e.epoch = view(m.epoch);
    e.message_id = view(m.message_id);
    e.msg_type = view(m.type);
    e.content_type = view(m.content_type);
    e.collapse_key = view(m.collapse_key);
    e.payload = view(m.payload);
    e.offset = m.offset;
    e.priority = m.priority;
    e.created_at_ms = m.created_at_ms;
    e.ttl_s = m.ttl_s;
    e.dismiss_on_read = m.dismiss_on_read ? 1 : 0;
    fn(user, &e);
  };
  h.on_subscribed = [fn, user](const herald::Subscribed& s) {
    herald_event e{};
    e.type = HERALD_EVENT_SUBSCRIBED;
    e.channel = view(s.channel);
    e.epoch = view(s.epoch);
    e.offset = s.offset;
    e.resumed = s.resumed ? 1 : 0;
    e.recovered = s.recovered ? 1 : 0;
    fn(user, &e);
  };
  h.on_state = [fn, user](herald::ConnectionState st, const herald::Error* err) {
    herald_event e{};
    e.type = HERALD_EVENT_STATE;
    e.state = static_cast<int>(st);
    if (err != nullptr) {
      e.code = err->code;
      e.error_name = view(err->name);
      e.error_text = view(err->text);
      e.temporary = err->temporary ? 1 : 0;
    }
    fn(user, &e);
  };
  h.on_error = [fn, user](const herald::Error& err) {
    herald_event e{};
    e.type = HERALD_EVENT_ERROR;
    e.code = err.code;
    e.error_name = view(err.name);
    e.error_text = view(err.text);
    e.temporary = err.temporary ? 1 : 0;
    e.channel = view(err.channel);
    fn(user, &e);
  };
  h.on_dismiss = [fn, user](std::string_view channel, uint64_t offset, std::string_view message_id) {
    herald_event e{};
    e.type = HERALD_EVENT_DISMISS;
    e.channel = view(channel);
    e.offset = offset;
    e.message_id = view(message_id);
    fn(user, &e);
  };
  h.on_pong = [fn, user](uint64_t rtt_us) {
    herald_event e{};
    e.type = HERALD_EVENT_PONG;
    e.rtt_us = rtt_us;
    fn(user, &e);
  };
  return h;
}

template <class F>
int guarded(F&& f) noexcept {
  try {
    return f();
  } catch (...) {
    return HERALD_INTERNAL;
  }
}

}  // namespace

extern "C" {

herald_options* herald_options_new(void) { return new (std::nothrow) herald_options(); }
void herald_options_free(herald_options* o) { delete o; }

int herald_options_set_server(herald_options* o, const char* host, uint16_t port) {
  if (o == nullptr || host == nullptr || *host == '\0' || port == 0) return HERALD_INVALID_FIELD;
  return guarded([&] {
    o->o.host = host;
    o->o.port = port;
    return HERALD_OK;
  });
}

int herald_options_set_tls(herald_options* o, int enabled, const char* ca_file, const char* server_name) {
  if (o == nullptr) return HERALD_INVALID_FIELD;
  return guarded([&] {
    o->o.tls = enabled != 0;
    o->o.ca_file = str(ca_file);
    o->o.server_name = str(server_name);
    return HERALD_OK;
  });
}

int herald_options_set_verify_peer(herald_options* o, int verify) {
  if (o == nullptr) return HERALD_INVALID_FIELD;
  o->o.verify_peer = verify != 0;
  return HERALD_OK;
}

int herald_options_set_bind_address(herald_options* o, const char* ip) {
  if (o == nullptr) return HERALD_INVALID_FIELD;
  return guarded([&] {
    o->o.bind_address = str(ip);
    return HERALD_OK;
  });
}

int herald_options_set_token(herald_options* o, const char* token) {
  if (o == nullptr) return HERALD_INVALID_FIELD;
  return guarded([&] {
    o->o.token = str(token);
    return HERALD_OK;
  });
}

int herald_options_set_token_provider(herald_options* o, herald_token_fn fn, void* user) {
  if (o == nullptr) return HERALD_INVALID_FIELD;
  return guarded([&] {
    if (fn == nullptr) {
      o->o.token_provider = nullptr;
    } else {
      o->o.token_provider = [fn, user]() {
        std::string buf(8192, '\0');
        const size_t n = fn(user, buf.data(), buf.size());
        buf.resize(n < buf.size() ? n : 0);
        return buf;
      };
    }
    return HERALD_OK;
  });
}

int herald_options_set_device_id(herald_options* o, const char* device_id) {
  if (o == nullptr) return HERALD_INVALID_FIELD;
  return guarded([&] {
    o->o.device_id = str(device_id);
    return HERALD_OK;
  });
}

int herald_options_set_client_name(herald_options* o, const char* name) {
  if (o == nullptr) return HERALD_INVALID_FIELD;
  return guarded([&] {
    o->o.client_name = str(name);
    return HERALD_OK;
  });
}

int herald_options_set_manual_ack(herald_options* o, int manual) {
  if (o == nullptr) return HERALD_INVALID_FIELD;
  o->o.manual_ack = manual != 0;
  return HERALD_OK;
}

int herald_options_set_position_file(herald_options* o, const char* path) {
  if (o == nullptr) return HERALD_INVALID_FIELD;
  return guarded([&] {
    o->o.position_file = str(path);
    return HERALD_OK;
  });
}

int herald_options_set_position_callbacks(herald_options* o, herald_load_position_fn load,
                                          herald_store_position_fn store, void* user) {
  if (o == nullptr) return HERALD_INVALID_FIELD;
  return guarded([&] {
    o->o.load_position = nullptr;
    o->o.store_position = nullptr;
    if (load != nullptr) {
      o->o.load_position = [load, user](std::string_view channel, std::string& epoch, uint64_t& offset) {
        const std::string ch(channel);
        char buf[256] = {0};
        uint64_t off = 0;
        if (load(user, ch.c_str(), buf, sizeof buf, &off) == 0) return false;
        buf[sizeof buf - 1] = '\0';
        epoch = buf;
        offset = off;
        return !epoch.empty();
      };
    }
    if (store != nullptr) {
      o->o.store_position = [store, user](std::string_view channel, std::string_view epoch, uint64_t offset) {
        const std::string ch(channel), ep(epoch);
        store(user, ch.c_str(), ep.c_str(), offset);
      };
    }
    return HERALD_OK;
  });
}

int herald_options_set_reconnect(herald_options* o, uint32_t initial_ms, uint32_t max_ms) {
  if (o == nullptr || initial_ms == 0 || max_ms < initial_ms) return HERALD_INVALID_FIELD;
  o->o.reconnect_initial_ms = initial_ms;
  o->o.reconnect_max_ms = max_ms;
  return HERALD_OK;
}

int herald_options_set_timeouts(herald_options* o, uint32_t connect_timeout_ms, uint32_t heartbeat_ms,
                                uint32_t heartbeat_timeout_ms) {
  if (o == nullptr || connect_timeout_ms == 0) return HERALD_INVALID_FIELD;
  o->o.connect_timeout_ms = connect_timeout_ms;
  o->o.heartbeat_ms = heartbeat_ms;
  o->o.heartbeat_timeout_ms = heartbeat_timeout_ms;
  return HERALD_OK;
}

int herald_options_set_wire(herald_options* o, int compression, int checksum, uint32_t max_message_size) {
  if (o == nullptr || (max_message_size != 0 && max_message_size < 16384)) return HERALD_INVALID_FIELD;
  o->o.compression = compression != 0;
  o->o.checksum = checksum != 0;
  o->o.max_message_size = max_message_size;
  return HERALD_OK;
}

static herald_client* make_client(struct event_base* base, const herald_options* o, herald_event_fn fn, void* user,
                                   char* err, size_t errlen) noexcept {
  if (o == nullptr) {
    put_error(err, errlen, "options are NULL");
    return nullptr;
  }
  try {
    std::string error;
    auto c = base != nullptr ? herald::Client::attach(base, o->o, make_handlers(fn, user), &error)
                             : herald::Client::create(o->o, make_handlers(fn, user), &error);
    if (!c) {
      put_error(err, errlen, error);
      return nullptr;
    }
    return new herald_client{std::move(c)};
  } catch (const std::exception& e) {
    put_error(err, errlen, e.what());
    return nullptr;
  }
}

herald_client* herald_client_new(const herald_options* o, herald_event_fn on_event, void* user, char* err,
                                 size_t errlen) {
  return make_client(nullptr, o, on_event, user, err, errlen);
}

herald_client* herald_client_attach(struct event_base* base, const herald_options* o, herald_event_fn on_event,
                                    void* user, char* err, size_t errlen) {
  if (base == nullptr) {
    put_error(err, errlen, "event_base is NULL");
    return nullptr;
  }
  return make_client(base, o, on_event, user, err, errlen);
}

void herald_client_free(herald_client* c) {
  if (c == nullptr) return;
  try {
    delete c;
  } catch (...) {
  }
}

int herald_client_start(herald_client* c) {
  if (c == nullptr) return HERALD_INVALID_FIELD;
  return guarded([&] { return c->c->start(); });
}

int herald_client_stop(herald_client* c) {
  if (c == nullptr) return HERALD_INVALID_FIELD;
  return guarded([&] { return c->c->stop(); });
}

int herald_client_subscribe(herald_client* c, const char* channel) {
  if (c == nullptr || channel == nullptr) return HERALD_INVALID_FIELD;
  return guarded([&] { return c->c->subscribe(channel); });
}

int herald_client_unsubscribe(herald_client* c, const char* channel) {
  if (c == nullptr || channel == nullptr) return HERALD_INVALID_FIELD;
  return guarded([&] { return c->c->unsubscribe(channel); });
}

int herald_client_ack(herald_client* c, const char* channel, const char* epoch, uint64_t offset) {
  if (c == nullptr || channel == nullptr || epoch == nullptr) return HERALD_INVALID_FIELD;
  return guarded([&] { return c->c->ack(channel, epoch, offset); });
}

int herald_client_ping(herald_client* c) {
  if (c == nullptr) return HERALD_INVALID_FIELD;
  return guarded([&] { return c->c->ping(); });
}

int herald_client_state(const herald_client* c) {
  if (c == nullptr) return HERALD_STATE_STOPPED;
  return static_cast<int>(c->c->state());
}

// to_string/describe return views of string literals: NUL-terminated.
const char* herald_status_name(int code) { return herald::status_name(code).data(); }
const char* herald_status_text(int code) { return herald::status_description(code).data(); }
const char* herald_version(void) { return HERALD_CLIENT_VERSION; }

}  // extern "C"
