// WebSocket upgrade request parsing and HTTP responses (RFC 6455 §4.2).
#include "server/ws_handshake.h"

#include <openssl/evp.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cctype>

namespace herald::server {
namespace {

constexpr std::string_view kGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

char lower(char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); }

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return lower(x) == lower(y); });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// True if the comma-separated header value holds `token` (case-insensitive).
bool has_token(std::string_view value, std::string_view token) {
  while (!value.empty()) {
    const size_t comma = value.find(',');
    if (iequals(trim(value.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

bool is_tchar(char c) {
  const auto u = static_cast<unsigned char>(c);
  return std::isalnum(u) || std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// A base64 encoding of 16 bytes: 22 base64 characters then "==".
bool valid_key(std::string_view key) {
  if (key.size() != 24 || key.substr(22) != "==") return false;
  return std::all_of(key.begin(), key.begin() + 22, [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/';
  });
}

const char* status_text(int status) {
  switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 426: return "Upgrade Required";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    default: return "Error";
  }
}

WsRequest reject(int status, std::string reason, size_t header_bytes, std::string_view extra_header = {}) {
  WsRequest r;
  r.kind = WsRequestKind::kReject;
  r.status = status;
  r.reason = std::move(reason);
  r.header_bytes = header_bytes;
  r.response = http_response(status, "text/plain; charset=utf-8", r.reason + "\n");
  if (!extra_header.empty()) {
    // Insert before the blank line that ends the head.
    const size_t head_end = r.response.find("\r\n\r\n");
    r.response.insert(head_end + 2, std::string(extra_header) + "\r\n");
  }
  return r;
}

// "http://Host:port" -> "host:port" (the part after the scheme, lowercased).
std::string origin_authority(std::string_view origin) {
  const size_t p = origin.find("://");
  std::string a(p == std::string_view::npos ? origin : origin.substr(p + 3));
  std::transform(a.begin(), a.end(), a.begin(), lower);
  return a;
}

bool origin_allowed(std::string_view origin, std::string_view host, bool has_origin, const WsHandshakeOptions& o) {
  if (!has_origin) return true;  // not a browser: Origin only protects browser users
  if (o.origins != nullptr && !o.origins->empty()) {
    for (const std::string& allowed : *o.origins) {
      if (allowed == "*" || iequals(allowed, origin)) return true;
    }
    return false;
  }
  std::string h(host);
  std::transform(h.begin(), h.end(), h.begin(), lower);
  const std::string a = origin_authority(origin);
  if (a == h) return true;
  // The default ports may be left out on one side.
  if (origin.substr(0, 7) == "http://" && (a + ":80" == h || h + ":80" == a)) return true;
  if (origin.substr(0, 8) == "https://" && (a + ":443" == h || h + ":443" == a)) return true;
  return false;
}

}  // namespace

std::string ws_accept_key(std::string_view key) {
  std::string in(key);
  in += kGuid;
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(in.data()), in.size(), digest);
  unsigned char out[4 * ((SHA_DIGEST_LENGTH + 2) / 3) + 1];
  const int n = EVP_EncodeBlock(out, digest, SHA_DIGEST_LENGTH);
  return std::string(reinterpret_cast<const char*>(out), static_cast<size_t>(n));
}

std::string http_response(int status, std::string_view content_type, std::string_view body) {
  std::string r = "HTTP/1.1 " + std::to_string(status) + " " + status_text(status) + "\r\n";
  r += "Content-Type: ";
  r += content_type;
  r += "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  r += "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n";
  r += body;
  return r;
}

WsRequest parse_ws_request(std::string_view buf, const WsHandshakeOptions& o) noexcept {
  const size_t end = buf.find("\r\n\r\n");
  if (end == std::string_view::npos || end + 4 > o.max_header_bytes) {
    if (buf.size() >= o.max_header_bytes || (end != std::string_view::npos)) {
      return reject(431, "request head larger than " + std::to_string(o.max_header_bytes) + " bytes", buf.size());
    }
    // A request line must start with a method token: fail early on garbage.
    for (char c : buf.substr(0, buf.find(' '))) {
      if (c == '\r' || c == '\n') break;
      if (!is_tchar(c)) return reject(400, "not an HTTP request", buf.size());
    }
    return {};
  }
  const size_t head_bytes = end + 4;
  std::string_view head = buf.substr(0, end + 2);  // every line ends in CRLF

  // Request line: METHOD SP TARGET SP HTTP/1.1
  const size_t eol = head.find("\r\n");
  const std::string_view line = head.substr(0, eol);
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp1 == std::string_view::npos || sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) {
    return reject(400, "malformed request line", head_bytes);
  }
  const std::string_view method = line.substr(0, sp1);
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (method.empty() || !std::all_of(method.begin(), method.end(), is_tchar)) {
    return reject(400, "malformed request line", head_bytes);
  }
  if (version != "HTTP/1.1") return reject(400, "only HTTP/1.1 is served", head_bytes);
  if (target.empty() || target.front() != '/' ||
      !std::all_of(target.begin(), target.end(), [](char c) { return c > ' ' && c < 0x7f; })) {
    return reject(400, "malformed request target", head_bytes);
  }

  // Headers.
  std::string_view host, upgrade, connection, key, ws_version, origin;
  bool has_host = false, has_origin = false, has_key = false, has_version = false;
  std::vector<std::string_view> protocols;
  size_t count = 0;
  std::string_view rest = head.substr(eol + 2);
  while (!rest.empty()) {
    const size_t e = rest.find("\r\n");
    const std::string_view h = rest.substr(0, e);
    rest.remove_prefix(e + 2);
    if (++count > o.max_headers) return reject(431, "too many header fields", head_bytes);
    const size_t colon = h.find(':');
    if (colon == 0 || colon == std::string_view::npos) return reject(400, "malformed header field", head_bytes);
    const std::string_view name = h.substr(0, colon);
    if (!std::all_of(name.begin(), name.end(), is_tchar)) return reject(400, "malformed header field", head_bytes);
    const std::string_view value = trim(h.substr(colon + 1));
    if (!std::all_of(value.begin(), value.end(),
                     [](char c) { return c == '\t' || static_cast<unsigned char>(c) >= ' '; }) ||
        value.find('\x7f') != std::string_view::npos) {
      return reject(400, "malformed header value", head_bytes);
    }
    const auto once = [&](std::string_view& slot, bool& seen) {
      if (seen) return false;
      slot = value;
      seen = true;
      return true;
    };
    bool ok = true;
    if (iequals(name, "host")) {
      ok = once(host, has_host);
    } else if (iequals(name, "upgrade")) {
      upgrade = value;
    } else if (iequals(name, "connection")) {
      connection = value;
    } else if (iequals(name, "sec-websocket-key")) {
      ok = once(key, has_key);
    } else if (iequals(name, "sec-websocket-version")) {
      ok = once(ws_version, has_version);
    } else if (iequals(name, "origin")) {
      ok = once(origin, has_origin);
    } else if (iequals(name, "sec-websocket-protocol")) {
      std::string_view v = value;
      while (!v.empty()) {
        const size_t comma = v.find(',');
        const std::string_view p = trim(v.substr(0, comma));
        if (!p.empty()) protocols.push_back(p);
        if (comma == std::string_view::npos) break;
        v.remove_prefix(comma + 1);
      }
    }
    if (!ok) return reject(400, "duplicate " + std::string(name) + " header", head_bytes);
  }
  if (!has_host) return reject(400, "missing Host header", head_bytes);

  const std::string_view path = target.substr(0, target.find('?'));
  if (path != "/ws") {
    if (path != "/" && path != "/index.html" && path != "/herald.js") {
      return reject(404, "not found (the WebSocket endpoint is /ws)", head_bytes);
    }
    if (method != "GET") return reject(405, "only GET is served", head_bytes, "Allow: GET");
    WsRequest r;
    r.kind = path == "/herald.js" ? WsRequestKind::kScript : WsRequestKind::kPage;
    r.status = 200;
    r.header_bytes = head_bytes;
    return r;
  }

  if (method != "GET") return reject(405, "a WebSocket upgrade is a GET request", head_bytes, "Allow: GET");
  if (!has_token(upgrade, "websocket")) {
    return reject(426, "this endpoint needs a WebSocket upgrade", head_bytes, "Upgrade: websocket");
  }
  if (!has_token(connection, "upgrade")) return reject(400, "Connection header lacks \"upgrade\"", head_bytes);
  if (!has_version || ws_version != "13") {
    return reject(426, "Sec-WebSocket-Version must be 13", head_bytes, "Sec-WebSocket-Version: 13");
  }
  if (!has_key || !valid_key(key)) return reject(400, "missing or malformed Sec-WebSocket-Key", head_bytes);
  if (!origin_allowed(origin, host, has_origin, o)) {
    return reject(403, "origin not allowed (ws.origins)", head_bytes);
  }
  WsRequest r;
  r.kind = WsRequestKind::kUpgrade;
  r.status = 101;
  r.header_bytes = head_bytes;
  std::string_view chosen;
  for (std::string_view p : protocols) {
    if (p == kWsProtocolBinary || p == kWsProtocolJson) {
      chosen = p;
      break;
    }
  }
  if (!protocols.empty() && chosen.empty()) {
    return reject(400, "no supported subprotocol (offer herald.v1 or herald.v1.json)", head_bytes);
  }
  r.json = chosen == kWsProtocolJson;
  r.response = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ";
  r.response += ws_accept_key(key);
  r.response += "\r\n";
  if (!chosen.empty()) {
    r.response += "Sec-WebSocket-Protocol: ";
    r.response += chosen;
    r.response += "\r\n";
  }
  r.response += "\r\n";
  return r;
}

}  // namespace herald::server
