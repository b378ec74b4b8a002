// http_post: a private event_base, one evhttp_connection, one request.
#include "client-sdk/cli/http_client.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include <cstdint>

namespace herald::cli {

namespace {
struct Pending {
  HttpResult result;
  event_base* base = nullptr;
};

void on_done(evhttp_request* req, void* arg) {
  auto* p = static_cast<Pending*>(arg);
  if (req == nullptr || evhttp_request_get_response_code(req) == 0) {
    // The error callback, when it ran first, said more precisely what went wrong.
    if (p->result.error.empty()) p->result.error = "no answer from the HTTP API (refused, reset or timed out)";
  } else {
    p->result.status = evhttp_request_get_response_code(req);
    evbuffer* in = evhttp_request_get_input_buffer(req);
    const size_t n = evbuffer_get_length(in);
    p->result.body.resize(n);
    evbuffer_remove(in, p->result.body.data(), n);
  }
  event_base_loopbreak(p->base);
}

void on_error(evhttp_request_error e, void* arg) {
  auto* p = static_cast<Pending*>(arg);
  switch (e) {
    case EVREQ_HTTP_TIMEOUT: p->result.error = "the HTTP API did not answer in time"; break;
    case EVREQ_HTTP_EOF: p->result.error = "the HTTP API closed the connection"; break;
    case EVREQ_HTTP_INVALID_HEADER: p->result.error = "invalid HTTP answer"; break;
    default: p->result.error = "cannot reach the HTTP API (connection refused?)"; break;
  }
}
}  // namespace

HttpResult http_post(const std::string& host, uint16_t port, const std::string& path, const std::string& body,
                     const std::string& api_key, int timeout_ms) noexcept {
  Pending p;
  p.base = event_base_new();
  if (p.base == nullptr) {
    p.result.error = "event_base_new failed";
    return p.result;
  }
  evhttp_connection* conn = evhttp_connection_base_new(p.base, nullptr, host.c_str(), port);
  evhttp_request* req = conn == nullptr ? nullptr : evhttp_request_new(on_done, &p);
  if (req == nullptr) {
    if (conn != nullptr) evhttp_connection_free(conn);
    event_base_free(p.base);
    p.result.error = "cannot create the HTTP request";
    return p.result;
  }
  const timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  evhttp_connection_set_timeout_tv(conn, &tv);
  evhttp_connection_set_retries(conn, 0);
  evhttp_request_set_error_cb(req, on_error);
  evkeyvalq* h = evhttp_request_get_output_headers(req);
  const std::string host_header = host + ":" + std::to_string(port);
  evhttp_add_header(h, "Host", host_header.c_str());
  evhttp_add_header(h, "Content-Type", "application/json");
  if (!api_key.empty()) evhttp_add_header(h, "Authorization", ("Bearer " + api_key).c_str());
  evbuffer_add(evhttp_request_get_output_buffer(req), body.data(), body.size());
  if (evhttp_make_request(conn, req, EVHTTP_REQ_POST, path.c_str()) != 0) {
    p.result.error = "cannot send the HTTP request";
  } else {
    event_base_dispatch(p.base);
  }
  evhttp_connection_free(conn);
  event_base_free(p.base);
  return p.result;
}

}  // namespace herald::cli
