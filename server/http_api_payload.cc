// extract_payloads: a validating JSON scanner (recursive descent, depth bounded by the
// caller's nesting check) that records where payload values are and copies them
// compacted. It never builds a DOM.
#include "server/http_api_payload.h"

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>

namespace herald::server {

namespace {

bool hex4(const unsigned char* p, const unsigned char* end, uint32_t& v) {
  if (end - p < 4) return false;
  v = 0;
  for (int i = 0; i < 4; ++i) {
    const unsigned char c = p[i];
    uint32_t d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      d = c - 'A' + 10;
    } else {
      return false;
    }
    v = (v << 4) | d;
  }
  return true;
}

class Scanner {
 public:
  Scanner(std::string_view body, std::vector<std::string>& payloads)
      : begin_(reinterpret_cast<const unsigned char*>(body.data())), p_(begin_), end_(begin_ + body.size()),
        payloads_(payloads) {}

  struct Replacement {
    size_t key_begin, value_begin, value_end;  // offsets in the body
  };

  // The whole body: one value and trailing whitespace.
  bool document() {
    ws();
    if (!value(0, nullptr)) return false;
    ws();
    return p_ == end_;
  }

  bool escaped_key() const { return escaped_key_; }
  bool repeated_payload() const { return repeated_payload_; }
  const std::vector<Replacement>& replacements() const { return replacements_; }

 private:
  void ws() {
    while (p_ != end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) ++p_;
  }

  // A string starting at p_ ('"'). Appends its raw text (quotes included) to `out` if
  // given; `escapes` tells whether it held any backslash.
  bool string(std::string* out, bool* escapes) {
    const unsigned char* start = p_;
    ++p_;  // opening quote
    bool esc = false;
    for (;;) {
      if (p_ == end_) return false;
      const unsigned char c = *p_;
      if (c == '"') {
        ++p_;
        break;
      }
      if (c < 0x20) return false;
      if (c == '\\') {
        esc = true;
        if (++p_ == end_) return false;
        const unsigned char e = *p_++;
        if (e == 'u') {
          uint32_t u = 0;
          if (!hex4(p_, end_, u)) return false;
          p_ += 4;
          if (u >= 0xDC00 && u <= 0xDFFF) return false;  // a low surrogate must follow a high one
          if (u >= 0xD800 && u <= 0xDBFF) {
            uint32_t lo = 0;
            if (end_ - p_ < 6 || p_[0] != '\\' || p_[1] != 'u' || !hex4(p_ + 2, end_, lo) || lo < 0xDC00 ||
                lo > 0xDFFF)
              return false;
            p_ += 6;
          }
        } else if (e != '"' && e != '\\' && e != '/' && e != 'b' && e != 'f' && e != 'n' && e != 'r' && e != 't') {
          return false;
        }
        continue;
      }
      if (c < 0x80) {
        ++p_;
        continue;
      }
      // UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF.
      const auto cont = [&](size_t i, unsigned char lo = 0x80, unsigned char hi = 0xBF) {
        return end_ - p_ > static_cast<long>(i) && p_[i] >= lo && p_[i] <= hi;
      };
      size_t n;
      if (c >= 0xC2 && c <= 0xDF) {
        n = cont(1) ? 2 : 0;
      } else if (c == 0xE0) {
        n = cont(1, 0xA0) && cont(2) ? 3 : 0;
      } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
        n = cont(1) && cont(2) ? 3 : 0;
      } else if (c == 0xED) {
        n = cont(1, 0x80, 0x9F) && cont(2) ? 3 : 0;
      } else if (c == 0xF0) {
        n = cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
      } else if (c >= 0xF1 && c <= 0xF3) {
        n = cont(1) && cont(2) && cont(3) ? 4 : 0;
      } else if (c == 0xF4) {
        n = cont(1, 0x80, 0x8F) && cont(2) && cont(3) ? 4 : 0;
      } else {
        n = 0;
      }
      if (n == 0) return false;
      p_ += n;
    }
    if (out != nullptr) out->append(reinterpret_cast<const char*>(start), static_cast<size_t>(p_ - start));
    if (escapes != nullptr) *escapes = esc;
    return true;
  }

  bool digits() {
    const unsigned char* s = p_;
    while (p_ != end_ && *p_ >= '0' && *p_ <= '9') ++p_;
    return p_ != s;
  }

  bool number(std::string* out) {
    const unsigned char* start = p_;
    if (*p_ == '-') ++p_;
    if (p_ == end_) return false;
    if (*p_ == '0') {
      ++p_;
    } else if (!digits()) {
      return false;
    }
    if (p_ != end_ && *p_ == '.') {
      ++p_;
      if (!digits()) return false;
    }
    bool exponent = false;
    if (p_ != end_ && (*p_ == 'e' || *p_ == 'E')) {
      exponent = true;
      ++p_;
      if (p_ != end_ && (*p_ == '+' || *p_ == '-')) ++p_;
      if (!digits()) return false;
    }
    const std::string_view text(reinterpret_cast<const char*>(start), static_cast<size_t>(p_ - start));
    // The grammar allows numbers no double holds (-55e920, 400 digits); the JSON parser
    // refuses them ("number overflow"), and so does the scanner: clients parsing the
    // payload would fail or see infinity. Only such long or exponent numbers are checked.
    if ((exponent || text.size() > 300) && !std::isfinite(std::strtod(std::string(text).c_str(), nullptr))) return false;
    if (out != nullptr) out->append(text);
    return true;
  }

  bool literal(std::string_view lit, std::string* out) {
    if (static_cast<size_t>(end_ - p_) < lit.size() ||
        std::string_view(reinterpret_cast<const char*>(p_), lit.size()) != lit)
      return false;
    p_ += lit.size();
    if (out != nullptr) out->append(lit);
    return true;
  }

  // A value at p_ (no leading whitespace) inside `depth` open brackets; appended,
  // compacted, to `out` if given.
  bool value(int depth, std::string* out) {
    if (p_ == end_) return false;
    switch (*p_) {
      case '{': return object(depth + 1, out);
      case '[': return array(depth + 1, out);
      case '"': return string(out, nullptr);
      case 't': return literal("true", out);
      case 'f': return literal("false", out);
      case 'n': return literal("null", out);
      default:
        if (*p_ == '-' || (*p_ >= '0' && *p_ <= '9')) return number(out);
        return false;
    }
  }

  bool array(int depth, std::string* out) {
    ++p_;
    if (out != nullptr) out->push_back('[');
    ws();
    if (p_ != end_ && *p_ == ']') {
      ++p_;
      if (out != nullptr) out->push_back(']');
      return true;
    }
    for (;;) {
      ws();
      if (!value(depth, out)) return false;
      ws();
      if (p_ == end_) return false;
      if (*p_ == ',') {
        ++p_;
        if (out != nullptr) out->push_back(',');
        continue;
      }
      if (*p_ != ']') return false;
      ++p_;
      if (out != nullptr) out->push_back(']');
      return true;
    }
  }

  // `depth` counts this object's own brace.
  bool object(int depth, std::string* out) {
    // Publish objects: the body (1) and the messages of a batch (3).
    const bool target = out == nullptr && (depth == 1 || depth == 3);
    bool payload_seen = false;
    ++p_;
    if (out != nullptr) out->push_back('{');
    ws();
    if (p_ != end_ && *p_ == '}') {
      ++p_;
      if (out != nullptr) out->push_back('}');
      return true;
    }
    for (;;) {
      ws();
      if (p_ == end_ || *p_ != '"') return false;
      const size_t key_begin = static_cast<size_t>(p_ - begin_);
      bool escapes = false;
      const unsigned char* key_start = p_;
      if (!string(out, &escapes)) return false;
      const std::string_view key(reinterpret_cast<const char*>(key_start + 1), static_cast<size_t>(p_ - key_start - 2));
      if (target && escapes) escaped_key_ = true;
      ws();
      if (p_ == end_ || *p_ != ':') return false;
      ++p_;
      if (out != nullptr) out->push_back(':');
      ws();
      if (target && !escapes && key == "payload") {
        // Which of two is meant is the parser's call (the last, with a null one among
        // them too): the body is left to it whole.
        if (payload_seen) repeated_payload_ = true;
        payload_seen = true;
      }
      if (target && !escapes && key == "payload" && p_ != end_ && *p_ != 'n') {
        const size_t value_begin = static_cast<size_t>(p_ - begin_);
        std::string text;
        if (!value(depth, &text)) return false;
        replacements_.push_back({key_begin, value_begin, static_cast<size_t>(p_ - begin_)});
        payloads_.push_back(std::move(text));
      } else if (!value(depth, out)) {
        return false;
      }
      ws();
      if (p_ == end_) return false;
      if (*p_ == ',') {
        ++p_;
        if (out != nullptr) out->push_back(',');
        continue;
      }
      if (*p_ != '}') return false;
      ++p_;
      if (out != nullptr) out->push_back('}');
      return true;
    }
  }

  const unsigned char* begin_;
  const unsigned char* p_;
  const unsigned char* end_;
  std::vector<std::string>& payloads_;
  std::vector<Replacement> replacements_;
  bool escaped_key_ = false;
  bool repeated_payload_ = false;
};

}  // namespace

PayloadScan extract_payloads(std::string_view body, std::string& out, std::vector<std::string>& payloads) {
  out.clear();
  payloads.clear();
  if (body.size() >= 3 && static_cast<unsigned char>(body[0]) == 0xEF) return PayloadScan::kUnchanged;  // BOM
  Scanner s(body, payloads);
  if (!s.document() || s.escaped_key() || s.repeated_payload() || s.replacements().empty()) {
    payloads.clear();
    return PayloadScan::kUnchanged;
  }
  out.reserve(body.size());
  size_t at = 0;
  for (size_t i = 0; i < s.replacements().size(); ++i) {
    const auto& r = s.replacements()[i];
    out.append(body.substr(at, r.key_begin - at));
    out.append("\"\\u0000payload\":");
    out.append(std::to_string(i));
    at = r.value_end;
  }
  out.append(body.substr(at));
  return PayloadScan::kRewritten;
}

bool nesting_within(std::string_view s, size_t max_depth) noexcept {
  size_t depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (const char c : s) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return false;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return true;
}

}  // namespace herald::server
