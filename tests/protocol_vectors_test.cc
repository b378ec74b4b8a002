// Replays every hex test vector of docs/protocol.md (§14) through the inbound
// pipeline and message layer, whole, at every split point and byte at a time,
// and checks the events the vector expects.
#include <google/protobuf/text_format.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "codec/message.h"
#include "codec/message_reader.h"

namespace herald::codec {
namespace {

struct Vector {
  std::string name;
  std::string section;
  std::map<std::string, uint64_t> limits;
  std::vector<uint8_t> stream;
  std::vector<std::string> expects;
  int line = 0;
};

// gtest prints a parameter by name instead of dumping its bytes.
void PrintTo(const Vector& v, std::ostream* os) { *os << v.name; }

std::string trim(std::string s) {
  const auto b = s.find_first_not_of(" \t\r");
  const auto e = s.find_last_not_of(" \t\r");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

bool parse_hex(const std::string& text, std::vector<uint8_t>& out) {
  std::string digits;
  for (char c : text) {
    if (std::isspace(static_cast<unsigned char>(c))) continue;
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
    digits += c;
  }
  if (digits.size() % 2 != 0) return false;
  for (size_t i = 0; i < digits.size(); i += 2) {
    out.push_back(static_cast<uint8_t>(std::stoul(digits.substr(i, 2), nullptr, 16)));
  }
  return true;
}

std::vector<Vector> load_vectors(std::string& problem) {
  std::ifstream in(std::string(HERALD_SOURCE_DIR) + "/docs/protocol.md");
  if (!in) {
    problem = "cannot open docs/protocol.md";
    return {};
  }
  std::vector<Vector> out;
  std::string line;
  bool inside = false;
  std::string hex;
  std::string last_key;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (!inside) {
      if (trim(line) == "```vector") {
        inside = true;
        out.emplace_back();
        out.back().line = n;
        hex.clear();
        last_key.clear();
      }
      continue;
    }
    Vector& v = out.back();
    if (trim(line) == "```") {
      inside = false;
      if (!parse_hex(hex, v.stream)) problem += "bad hex in vector at line " + std::to_string(v.line) + "\n";
      continue;
    }
    if (!line.empty() && (line[0] == ' ' || line[0] == '\t')) {
      if (last_key == "hex") hex += line;
      else problem += "continuation line outside hex at line " + std::to_string(n) + "\n";
      continue;
    }
    const auto colon = line.find(':');
    if (colon == std::string::npos) {
      problem += "unparsable vector line " + std::to_string(n) + "\n";
      continue;
    }
    const std::string key = trim(line.substr(0, colon));
    const std::string value = trim(line.substr(colon + 1));
    last_key = key;
    if (key == "name") v.name = value;
    else if (key == "section") v.section = value;
    else if (key == "hex") hex += value;
    else if (key == "expect") v.expects.push_back(value);
    else if (key == "limits") {
      std::istringstream ls(value);
      std::string kv;
      while (ls >> kv) {
        const auto eq = kv.find('=');
        if (eq == std::string::npos) {
          problem += "bad limit " + kv + "\n";
          continue;
        }
        v.limits[kv.substr(0, eq)] = std::stoull(kv.substr(eq + 1));
      }
    } else {
      problem += "unknown key " + key + " at line " + std::to_string(n) + "\n";
    }
  }
  return out;
}

ReaderLimits limits_for(const Vector& v, std::string& problem) {
  ReaderLimits l;
  for (const auto& [k, value] : v.limits) {
    if (k == "max_frame_size") l.decoder.max_frame_size = static_cast<uint32_t>(value);
    else if (k == "max_message_size") l.max_message_size = l.reassembly.max_message_size = value;
    else if (k == "require_checksum") l.decoder.require_checksum = value != 0;
    else if (k == "check_sequence") l.decoder.check_sequence = value != 0;
    else if (k == "version") l.decoder.version = static_cast<uint16_t>(value);
    else if (k == "max_fragments") l.reassembly.max_fragments = static_cast<uint32_t>(value);
    else if (k == "max_partial_messages") l.reassembly.max_partial_messages = static_cast<uint32_t>(value);
    else if (k == "compression") l.compression = value != 0;
    else problem += "unknown limit " + k + "\n";
  }
  return l;
}

// One observed event, written the way vectors write expectations.
struct Observed {
  std::string kind;  // "message" or "error"
  FrameType type = FrameType::kPing;
  std::vector<uint8_t> body;
  std::string error;
};

// Feeds the vector's stream cut at `cuts` (ascending offsets).
std::vector<Observed> replay(const Vector& v, const ReaderLimits& limits, const std::vector<size_t>& cuts) {
  static CodecContext ctx;
  MessageReader reader(limits, &ctx);
  std::vector<Observed> events;
  bool failed = false;
  auto fail = [&](Status s, uint64_t at) {
    events.push_back({"error", FrameType::kPing, {}, std::string(to_string(s)) + " @" + std::to_string(at)});
    failed = true;
  };
  auto feed = [&](std::span<const uint8_t> chunk) {
    while (!failed) {
      InboundMessage m;
      DecodeResult r = reader.read(chunk, 0, m);
      chunk = chunk.subspan(r.consumed);
      if (r.status == Status::kNeedMore) return;
      if (!ok(r.status)) return fail(r.status, reader.error_offset());
      std::unique_ptr<google::protobuf::Message> msg;
      Status s = decode_message(m.type, m.body, limits.max_message_size, msg);
      if (!ok(s)) return fail(s, m.frame_offset);
      events.push_back({"message", m.type, std::vector<uint8_t>(m.body.begin(), m.body.end()), ""});
      if (chunk.empty()) return;
    }
  };
  std::span<const uint8_t> s(v.stream);
  size_t start = 0;
  for (size_t cut : cuts) {
    feed(s.subspan(start, cut - start));
    start = cut;
  }
  feed(s.subspan(start));
  if (!failed) {
    Status st = reader.finish();
    if (!ok(st)) fail(st, reader.error_offset());
  }
  return events;
}

// Compares observed events with the vector's `expect:` lines.
std::string check(const Vector& v, const std::vector<Observed>& got) {
  std::ostringstream why;
  if (got.size() != v.expects.size()) {
    why << "expected " << v.expects.size() << " events, got " << got.size() << ":";
    for (const auto& g : got) why << " [" << g.kind << " " << (g.kind == "error" ? g.error : std::string(to_string(g.type))) << "]";
    return why.str();
  }
  for (size_t i = 0; i < got.size(); ++i) {
    const std::string& e = v.expects[i];
    const auto sp = e.find(' ');
    const std::string kind = e.substr(0, sp);
    const std::string rest = sp == std::string::npos ? "" : trim(e.substr(sp + 1));
    if (kind != got[i].kind) return "event " + std::to_string(i) + ": expected " + e + ", got " + got[i].kind + " " + got[i].error;
    if (kind == "error") {
      if (rest != got[i].error) return "event " + std::to_string(i) + ": expected error " + rest + ", got " + got[i].error;
      continue;
    }
    const auto sp2 = rest.find(' ');
    const std::string type_name = rest.substr(0, sp2);
    const std::string text = sp2 == std::string::npos ? "" : rest.substr(sp2 + 1);
    if (type_name != to_string(got[i].type)) return "event " + std::to_string(i) + ": expected " + type_name + ", got " + std::string(to_string(got[i].type));
    auto want = new_message(got[i].type);
    if (!google::protobuf::TextFormat::ParseFromString(text, want.get())) return "cannot parse expected text: " + text;
    auto have = new_message(got[i].type);
    if (!ok(parse_message(got[i].type, got[i].body, SIZE_MAX, *have))) return "observed body does not parse";
    have->DiscardUnknownFields();  // receivers ignore them (§4.2); vectors list known fields only
    if (!google::protobuf::util::MessageDifferencer::Equals(*want, *have)) {
      return "event " + std::to_string(i) + ": expected {" + want->ShortDebugString() + "} got {" + have->ShortDebugString() + "}";
    }
  }
  return "";
}

TEST(ProtocolVectors, DocumentHasVectors) {
  std::string problem;
  auto vectors = load_vectors(problem);
  EXPECT_EQ(problem, "");
  EXPECT_GE(vectors.size(), 40u);
  size_t errors = 0;
  std::set<std::string> names;
  for (const auto& v : vectors) {
    EXPECT_FALSE(v.name.empty()) << "vector at line " << v.line;
    EXPECT_TRUE(names.insert(v.name).second) << "duplicate name " << v.name;
    EXPECT_FALSE(v.section.empty()) << v.name;
    EXPECT_FALSE(v.expects.empty()) << v.name;
    EXPECT_FALSE(v.stream.empty()) << v.name;
    if (!v.expects.empty() && v.expects.back().rfind("error", 0) == 0) ++errors;
  }
  EXPECT_GE(errors, 25u) << "malformed vectors";
}

std::vector<Vector> vectors_or_empty() {
  std::string problem;
  auto v = load_vectors(problem);
  return problem.empty() ? v : std::vector<Vector>{};
}

class VectorTest : public ::testing::TestWithParam<Vector> {};

TEST_P(VectorTest, AtEverySplit) {
  const Vector& v = GetParam();
  SCOPED_TRACE(v.name + " (docs/protocol.md line " + std::to_string(v.line) + ")");
  std::string problem;
  const ReaderLimits limits = limits_for(v, problem);
  ASSERT_EQ(problem, "");
  ASSERT_EQ(check(v, replay(v, limits, {})), "") << "whole stream";
  for (size_t cut = 0; cut <= v.stream.size(); ++cut) {
    ASSERT_EQ(check(v, replay(v, limits, {cut})), "") << "split at " << cut;
  }
  std::vector<size_t> every_byte;
  for (size_t i = 1; i < v.stream.size(); ++i) every_byte.push_back(i);
  ASSERT_EQ(check(v, replay(v, limits, every_byte)), "") << "byte at a time";
  // Every pair of split points for short streams.
  if (v.stream.size() <= 160) {
    for (size_t a = 0; a <= v.stream.size(); ++a) {
      for (size_t b = a; b <= v.stream.size(); ++b) {
        ASSERT_EQ(check(v, replay(v, limits, {a, b})), "") << "splits at " << a << "," << b;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(ProtocolMd, VectorTest, ::testing::ValuesIn(vectors_or_empty()),
                         [](const ::testing::TestParamInfo<Vector>& param_info) {
                           std::string n = param_info.param.name;
                           for (char& c : n) {
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return n;
                         });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(VectorTest);

}  // namespace
}  // namespace herald::codec
