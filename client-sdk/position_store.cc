// PositionFileStore: positions in a text file replaced atomically.
#include "client-sdk/position_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

namespace herald::client {

namespace {
constexpr std::string_view kMagicLine = "herald-positions 1";

bool has_space(std::string_view s) {
  for (const char c : s) {
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') return true;
  }
  return false;
}
}  // namespace

bool PositionFileStore::load(std::string* error) {
  entries_.clear();
  dirty_ = false;
  std::ifstream in(path_);
  if (!in) {
    if (errno == ENOENT) return true;
    if (error != nullptr) *error = path_ + ": " + std::strerror(errno);
    return false;
  }
  std::string line;
  if (!std::getline(in, line)) return true;  // empty file
  if (line != kMagicLine) {
    if (error != nullptr) *error = path_ + ": not a Herald position file";
    return false;
  }
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string channel, epoch;
    uint64_t offset = 0;
    if (ls >> channel >> epoch >> offset) entries_[channel] = {epoch, offset};
  }
  return true;
}

bool PositionFileStore::get(std::string_view channel, std::string& epoch, uint64_t& offset) const {
  const auto it = entries_.find(channel);
  if (it == entries_.end()) return false;
  epoch = it->second.epoch;
  offset = it->second.offset;
  return true;
}

void PositionFileStore::set(std::string_view channel, std::string_view epoch, uint64_t offset) {
  if (channel.empty() || epoch.empty() || has_space(channel) || has_space(epoch)) return;
  auto it = entries_.find(channel);
  if (it == entries_.end()) {
    entries_.emplace(std::string(channel), Entry{std::string(epoch), offset});
  } else {
    if (it->second.epoch == epoch && it->second.offset == offset) return;
    it->second = {std::string(epoch), offset};
  }
  dirty_ = true;
}

void PositionFileStore::erase(std::string_view channel) {
  const auto it = entries_.find(channel);
  if (it == entries_.end()) return;
  entries_.erase(it);
  dirty_ = true;
}

bool PositionFileStore::save(std::string* error) {
  if (!dirty_) return true;
  std::string text(kMagicLine);
  text += '\n';
  for (const auto& [channel, e] : entries_) {
    text += channel;
    text += ' ';
    text += e.epoch;
    text += ' ';
    text += std::to_string(e.offset);
    text += '\n';
  }
  const std::string tmp = path_ + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  bool ok = fd >= 0;
  size_t off = 0;
  while (ok && off < text.size()) {
    const ssize_t n = ::write(fd, text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) off += static_cast<size_t>(n);
  }
  if (ok) ok = ::fsync(fd) == 0;
  const int saved = errno;
  if (fd >= 0) ::close(fd);
  if (ok) ok = std::rename(tmp.c_str(), path_.c_str()) == 0;
  if (!ok) {
    if (error != nullptr) *error = path_ + ": " + std::strerror(saved != 0 ? saved : errno);
    ::unlink(tmp.c_str());
    return false;
  }
  dirty_ = false;
  return true;
}

}  // namespace herald::client
