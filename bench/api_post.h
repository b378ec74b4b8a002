// One blocking POST to heraldd's HTTP API with the development API key, for the bench
// programs' setup steps (not their measured paths). Loopback tools only.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>

namespace herald::bench {

// POSTs `body` (JSON) to http://host:port/path with Connection: close; returns the HTTP
// status, or 0 when the request could not be made or answered.
inline int api_post(const std::string& host, uint16_t port, const std::string& path, const std::string& body) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  if (inet_pton(AF_INET, host.c_str(), &a.sin_addr) != 1) return 0;
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return 0;
  }
  const std::string req = "POST " + path + " HTTP/1.1\r\nHost: " + host +
                          "\r\nConnection: close\r\nAuthorization: Bearer herald-dev-api-key\r\n"
                          "Content-Type: application/json\r\nContent-Length: " +
                          std::to_string(body.size()) + "\r\n\r\n" + body;
  size_t off = 0;
  while (off < req.size()) {
    const ssize_t n = ::send(fd, req.data() + off, req.size() - off, MSG_NOSIGNAL);
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  std::string resp;
  char buf[8192];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) resp.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return resp.size() > 12 ? std::atoi(resp.substr(9, 3).c_str()) : 0;
}

}  // namespace herald::bench
