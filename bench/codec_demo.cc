// codec_demo: a readable walk through the codec until heraldd exists (`./dev run` runs it).
// Encodes a few notifications as Publication frames, prints them, then decodes the stream
// one byte at a time. A demo program, not codec code: it prints and runs the generator.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "bench/notifications.h"
#include "codec/frame_encoder.h"
#include "codec/message.h"
#include "codec/message_reader.h"
#include "herald.pb.h"

namespace {

namespace codec = herald::codec;
using Bytes = std::vector<uint8_t>;

// Used when python3 or gen_notifications.py is not available.
const char* const kSamples[] = {
    R"({"message_id":"45ffb65d-9f9b-46d3-adae-2c57eafd6a99","message_type":"position_update","user_id":"5f381d79-0671-4e23-a557-41cbe371613e","channel":"position","priority":2,"timestamp":1760000000002239457,"source":"AccountSystem","payload":{"instrument_id":"AAPL","volume_long":128,"volume_short":62,"open_price":2715.85,"float_profit":2030.5}})",
    R"({"message_id":"58f945ca-4e2f-46c2-9cf0-70c7499b18e5","message_type":"trade_executed","user_id":"3c1ae917-43fb-4fbc-989c-36b2130f27b2","channel":"trade","priority":1,"timestamp":1760000000002580126,"source":"MatchingEngine","payload":{"trade_id":"T091347131951","order_id":"O990049141511","exchange_order_id":"EX_T091347131951_AAPL","instrument_id":"AAPL","direction":"SELL","offset":"OPEN","price":843.22,"volume":1,"commission":0.0843,"fill_type":"PARTIAL"}})",
    R"({"message_id":"68134503-ea63-4c95-8b29-558fe29bd78f","message_type":"order_accepted","user_id":"bce88796-64ed-4ce5-9b4a-18fca1390385","channel":"trade","priority":1,"timestamp":1760000000003692131,"source":"MatchingEngine","payload":{"order_id":"O097650079424","instrument_id":"SOL-USD","direction":"SELL","offset":"CLOSE","price":1448.65,"volume":2,"status":"ACCEPTED"}})",
    R"({"message_id":"0b7c3e1a-5d2f-4c8e-9a61-7f4b2d9e8c10","message_type":"margin_call","user_id":"5f381d79-0671-4e23-a557-41cbe371613e","channel":"risk","priority":0,"timestamp":1760000000004120007,"source":"RiskControl","payload":{"account_id":"5f381d79-0671-4e23-a557-41cbe371613e","risk_ratio":1.0412,"level":"critical","message":"Risk ratio above threshold, add margin or reduce positions"}})",
    R"({"message_id":"9d41a6f2-3b7e-4e05-8c2d-1a6f5e3b7c94","message_type":"system_notice","user_id":"bce88796-64ed-4ce5-9b4a-18fca1390385","channel":"system","priority":3,"timestamp":1760000000004980311,"source":"System","payload":{"title":"Scheduled maintenance","content":"The IF2412 session starts at 21:00.","level":"info"}})",
};

std::string hex(const uint8_t* p, size_t n) {
  std::string s;
  char b[4];
  for (size_t i = 0; i < n; ++i) {
    std::snprintf(b, sizeof b, "%02x", p[i]);
    s += b;
    if (i % 4 == 3 && i + 1 < n) s += ' ';
  }
  return s;
}

std::string flag_names(uint16_t type_field) {
  std::string s;
  if (type_field & codec::kFlagCompressed) s += "C";
  if (type_field & codec::kFlagChecksummed) s += "K";
  if (type_field & codec::kFlagFragment) s += "F";
  return s.empty() ? "-" : s;
}

int fail(const char* what, codec::Status s) {
  std::fprintf(stderr, "codec_demo: %s: %s (%s)\n", what, std::string(codec::to_string(s)).c_str(),
               std::string(codec::describe(s)).c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  int count = 5;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--count" && i + 1 < argc) {
      count = std::atoi(argv[++i]);
    } else {
      const bool help = arg == "--help" || arg == "-h";
      std::fprintf(help ? stdout : stderr, "usage: codec_demo [--count N]   (N notifications, 1..1000, default 5)\n"
                  "Encodes notifications from gen_notifications.py (--seed 7) as herald.v1 Publication frames\n"
                  "(CRC32C; zstd with a dictionary trained on --seed 1), prints every frame, then decodes the\n"
                  "stream one byte at a time with MessageReader and prints each message.\n");
      return help ? 0 : 2;
    }
  }
  if (count < 1 || count > 1000) count = 5;

  std::vector<std::string> notes;
  std::string error;  // not printed: the header line below says "built-in samples"
  const bool generated = herald::bench::generate_notifications(7, count, notes, error);
  for (int i = 0; !generated && i < count; ++i) notes.emplace_back(kSamples[i % 5]);

  // A dictionary trained on a different sample, loaded for both directions.
  auto set = std::make_shared<codec::DictionarySet>();
  uint32_t dict_id = 0;
  std::vector<std::string> train;
  Bytes dict;
  if (generated && herald::bench::generate_notifications(1, 2000, train, error) &&
      herald::bench::train_dictionary({train.begin(), train.end()}, 16 * 1024, dict, error) &&
      codec::ok(set->add(dict, 3, &dict_id))) {
    std::printf("zstd dictionary: %zu bytes, id %u, trained on 2000 other notifications\n", dict.size(), dict_id);
  }
  std::printf("%d notifications (%s), channel user:42, CRC32C on, zstd %s\n\n", count,
              generated ? "gen_notifications.py --seed 7" : "built-in samples", dict_id != 0 ? "with dictionary" : "without dictionary");

  codec::CodecContext context(set);
  codec::EncodeOptions options;
  options.checksum = true;
  options.compress = true;
  options.dictionary_id = dict_id;
  Bytes stream;
  uint32_t sequence = 0;
  size_t json_bytes = 0;
  for (int i = 0; i < count; ++i) {
    herald::v1::Publication p = herald::bench::make_publication(notes[i], static_cast<uint64_t>(i) + 1);
    p.set_channel("user:42");  // one demo subscriber, whatever user the generator picked
    json_bytes += notes[i].size();

    Bytes body;
    codec::EncodedMessage m;
    if (codec::Status s = codec::serialize_message(p, codec::kDefaultMaxMessageSize, body); !codec::ok(s)) return fail("serialize", s);
    if (codec::Status s = codec::encode_message(codec::FrameType::kPublication, body, options, &context.compressor, m); !codec::ok(s)) {
      return fail("encode_message", s);
    }
    for (size_t f = 0; f < m.frame_count(); ++f) {
      uint8_t header[codec::kHeaderSize];
      const uint32_t seq = sequence + static_cast<uint32_t>(f);
      m.write_header(f, seq, header);
      const auto b = m.body(f);
      std::printf("frame seq=%u type=Publication(0x%03x) flags=%s length=%u  (protobuf %zu B, JSON %zu B)\n", seq,
                  codec::get_u16(header + 6) & codec::kTypeMask, flag_names(codec::get_u16(header + 6)).c_str(),
                  codec::get_u32(header + 8), body.size(), notes[i].size());
      std::printf("  header: %s\n  body:   %s ...\n", hex(header, sizeof header).c_str(), hex(b.data(), std::min<size_t>(32, b.size())).c_str());
    }
    codec::append_frames(m, sequence, stream);  // the same headers again, advancing `sequence`
  }

  std::printf("\ndecoding %zu bytes one byte at a time:\n", stream.size());
  codec::MessageReader reader({}, &context);
  herald::v1::Publication got;
  int messages = 0;
  for (size_t pos = 0; pos < stream.size(); ++pos) {
    codec::InboundMessage msg;
    const codec::DecodeResult r = reader.read(std::span<const uint8_t>(stream).subspan(pos, 1), 0, msg);
    if (r.status == codec::Status::kNeedMore) continue;
    if (!codec::ok(r.status)) return fail("MessageReader", r.status);
    if (codec::Status s = codec::parse_message(msg.type, msg.body, codec::kDefaultMaxMessageSize, got); !codec::ok(s)) {
      return fail("parse_message", s);
    }
    if (got.payload().size() > 80) got.set_payload(got.payload().substr(0, 80) + "...");
    std::printf("seq=%u %s  %s\n", msg.sequence, flag_names(msg.flags).c_str(), got.ShortDebugString().c_str());
    ++messages;
  }
  if (codec::Status s = reader.finish(); !codec::ok(s)) return fail("finish", s);
  std::printf("\n%d messages decoded, %u frames: %zu bytes on the wire for %zu bytes of JSON (%.2fx)\n", messages, sequence,
              stream.size(), json_bytes, static_cast<double>(stream.size()) / static_cast<double>(json_bytes));
  return 0;
}
