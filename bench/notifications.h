// Generated notifications for the bench programs: runs shared/data/gen_notifications.py, turns one
// notification into a herald.v1.Publication, trains zstd dictionaries. Bench code, not codec code:
// it runs a subprocess. Failures are reported, never acted on: each program picks its own policy.
#pragma once

#include <unistd.h>
#include <zdict.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "herald.pb.h"

namespace herald::bench {

// HERALD_SHARED_DIR when set and non-empty, else the shared folder next to the source tree.
inline std::string shared_dir() {
  const char* env = std::getenv("HERALD_SHARED_DIR");
  return env != nullptr && *env != '\0' ? std::string(env) : std::string(HERALD_SOURCE_DIR "/../shared");
}

// Runs `/usr/bin/python3 <shared_dir()>/data/gen_notifications.py --seed SEED --count COUNT`.
// Returns true with `out` holding exactly `count` compact JSON objects, one per non-empty line.
// Returns false with `out` empty and `error` saying why: python3 or the script is missing, popen
// failed, the generator exited non-zero, or it printed the wrong number of lines.
inline bool generate_notifications(int seed, int count, std::vector<std::string>& out, std::string& error) {
  out.clear();
  const std::string script = shared_dir() + "/data/gen_notifications.py";
  if (access("/usr/bin/python3", X_OK) != 0) {
    error = "/usr/bin/python3 is missing";
    return false;
  }
  if (access(script.c_str(), R_OK) != 0) {
    error = script + " is missing (set HERALD_SHARED_DIR)";
    return false;
  }
  const std::string cmd = "/usr/bin/python3 '" + script + "' --seed " + std::to_string(seed) +
                          " --count " + std::to_string(count);
  FILE* pipe = popen(cmd.c_str(), "r");
  if (pipe == nullptr) {
    error = "popen failed: " + cmd;
    return false;
  }
  std::string line;
  char buf[4096];
  while (std::fgets(buf, sizeof buf, pipe) != nullptr) {
    line += buf;  // a line longer than buf arrives in pieces: only a '\n' ends it
    if (!line.empty() && line.back() == '\n') {
      line.pop_back();
      if (!line.empty()) out.push_back(line);
      line.clear();
    }
  }
  if (!line.empty()) out.push_back(line);
  if (pclose(pipe) != 0) {
    out.clear();
    error = "generator failed: " + cmd;
    return false;
  }
  if (static_cast<int>(out.size()) != count) {
    error = "generator printed " + std::to_string(out.size()) + " lines: " + cmd;
    out.clear();
    return false;
  }
  return true;
}

// The value of a top-level "key":"..." or "key":123 in the generator's compact JSON (its
// top-level keys come before the nested payload object, so the first match is the right one).
// Empty if the key is absent or its string is unterminated.
inline std::string json_field(std::string_view json, std::string_view key) {
  std::string needle(1, '"');  // built piecewise: GCC 12 warns falsely (-Wrestrict) on "\"" + str
  needle.append(key).append("\":");
  const size_t at = json.find(needle);
  if (at == std::string_view::npos) return {};
  const size_t pos = at + needle.size();
  if (pos < json.size() && json[pos] == '"') {
    const size_t end = json.find('"', pos + 1);
    return end == std::string_view::npos ? std::string() : std::string(json.substr(pos + 1, end - pos - 1));
  }
  const size_t end = json.find_first_of(",}", pos);
  return std::string(json.substr(pos, end == std::string_view::npos ? json.size() - pos : end - pos));
}

// The Publication the server would send for one notification: channel "user:<user_id>", the
// given offset, a fixed epoch, the notification's id, type and priority (P3 when missing or
// invalid), created_at_ms from its nanosecond timestamp, and the JSON itself as the payload.
inline herald::v1::Publication make_publication(const std::string& json, uint64_t offset) {
  herald::v1::Publication p;
  p.set_channel("user:" + json_field(json, "user_id"));
  p.set_offset(offset);
  p.set_epoch("7f3a9c21");
  p.set_message_id(json_field(json, "message_id"));
  p.set_type(json_field(json, "message_type"));
  const std::string prio = json_field(json, "priority");
  const int prio_value = prio.empty() ? 3 : std::atoi(prio.c_str());
  p.set_priority(herald::v1::Priority_IsValid(prio_value) ? static_cast<herald::v1::Priority>(prio_value)
                                                          : herald::v1::P3);
  const std::string ts = json_field(json, "timestamp");  // nanoseconds
  p.set_created_at_ms(ts.empty() ? 0 : static_cast<int64_t>(std::strtoll(ts.c_str(), nullptr, 10) / 1'000'000));
  p.set_content_type("application/json");
  p.set_payload(json);
  return p;
}

// ZDICT_trainFromBuffer over `samples`, as `zstd --train --maxdict=CAPACITY` would. Returns true
// with `dict` holding the trained dictionary (at most `capacity` bytes), or false with `dict`
// empty and `error` holding zstd's reason. A vector<string> converts: {v.begin(), v.end()}.
inline bool train_dictionary(const std::vector<std::string_view>& samples, size_t capacity, std::vector<uint8_t>& dict,
                             std::string& error) {
  std::string joined;
  std::vector<size_t> sizes;
  for (std::string_view s : samples) {
    joined.append(s);
    sizes.push_back(s.size());
  }
  dict.assign(capacity, 0);
  const size_t size = ZDICT_trainFromBuffer(dict.data(), dict.size(), joined.data(), sizes.data(),
                                            static_cast<unsigned>(sizes.size()));
  if (ZDICT_isError(size) != 0) {
    dict.clear();
    error = std::string("ZDICT_trainFromBuffer: ") + ZDICT_getErrorName(size);
    return false;
  }
  dict.resize(size);
  return true;
}

}  // namespace herald::bench
