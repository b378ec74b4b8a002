// The SDK's built-in position store: one small text file, one line per channel
// ("channel epoch offset"), replaced atomically (write a temporary file, rename). Owns
// only the file format and its I/O; not thread-safe (the client's loop thread uses it).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

namespace herald::client {

class PositionFileStore {
 public:
  explicit PositionFileStore(std::string path) : path_(std::move(path)) {}

  // Reads the file. A missing file is an empty store (true). False with `error` set when
  // the file exists but cannot be read or is not a position file; lines that do not parse
  // are skipped.
  bool load(std::string* error = nullptr);
  // The stored position of `channel`; false if none.
  bool get(std::string_view channel, std::string& epoch, uint64_t& offset) const;
  // Records a position in memory (dirty() until save()). Epochs with whitespace are not
  // storable and are ignored.
  void set(std::string_view channel, std::string_view epoch, uint64_t offset);
  void erase(std::string_view channel);
  // Writes the file if anything changed: temporary file, fsync, rename. False with
  // `error` set on an I/O failure (the old file stays intact).
  bool save(std::string* error = nullptr);
  bool dirty() const noexcept { return dirty_; }
  const std::string& path() const noexcept { return path_; }

 private:
  struct Entry {
    std::string epoch;
    uint64_t offset = 0;
  };
  std::string path_;
  std::map<std::string, Entry, std::less<>> entries_;
  bool dirty_ = false;
};

}  // namespace herald::client
