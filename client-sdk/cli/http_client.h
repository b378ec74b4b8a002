// One HTTP/1.1 request on libevent's evhttp client, for `herald pub`. Owns the
// connection and the wait for the answer; knows nothing of Herald's routes.
#pragma once

#include <string>

namespace herald::cli {

struct HttpResult {
  int status = 0;       // HTTP status; 0 when no answer arrived
  std::string body;
  std::string error;    // set when status is 0: connection refused, timeout, ...
};

// POSTs `body` (JSON) to http://host:port/path with "Authorization: Bearer <api_key>"
// (omitted when empty) and waits at most timeout_ms. Never throws.
HttpResult http_post(const std::string& host, uint16_t port, const std::string& path, const std::string& body,
                     const std::string& api_key, int timeout_ms) noexcept;

}  // namespace herald::cli
