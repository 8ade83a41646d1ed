#include "iotpki/common/log.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace iotpki::log {
namespace {

// 2026-12-06T16:40:00.123Z
constexpr int64_t kMillis = 1796575200123;

TEST(Log, TextLineHasTimeLevelEventAndFields) {
  std::string line = FormatLine(Format::kText, Level::kWarn, kMillis, "http.request",
                                {{"status", 403}, {"endpoint", "est_simpleenroll"}});
  EXPECT_EQ(line,
            "2026-12-06T16:40:00.123Z WARN  http.request status=403 endpoint=est_simpleenroll");
}

TEST(Log, TheTimeFollowsTheClockAcrossSecondsAndPadsMilliseconds) {
  // The date and time to the second are formatted once per second per thread: a line in the
  // next second, or back in an earlier one, must not reuse them.
  EXPECT_EQ(FormatLine(Format::kText, Level::kInfo, kMillis, "e", {}),
            "2026-12-06T16:40:00.123Z INFO  e");
  EXPECT_EQ(FormatLine(Format::kText, Level::kInfo, kMillis + 882, "e", {}),
            "2026-12-06T16:40:01.005Z INFO  e");
  EXPECT_EQ(FormatLine(Format::kJson, Level::kInfo, kMillis + 86'400'000 - 123, "e", {}),
            "{\"time\":\"2026-12-07T16:40:00.000Z\",\"level\":\"info\",\"event\":\"e\"}");
  EXPECT_EQ(FormatLine(Format::kText, Level::kInfo, kMillis - 124, "e", {}),
            "2026-12-06T16:39:59.999Z INFO  e");
}

TEST(Log, TextValuesThatCouldForgeFieldsOrLinesAreQuoted) {
  std::string line = FormatLine(Format::kText, Level::kInfo, kMillis, "e",
                                {{"reason", "a b=c\n2026 ERROR fake \"x\"\\"}, {"empty", ""}});
  EXPECT_EQ(line,
            "2026-12-06T16:40:00.123Z INFO  e reason=\"a b=c\\n2026 ERROR fake \\\"x\\\"\\\\\" "
            "empty=\"\"");
  EXPECT_EQ(line.find('\n'), std::string::npos);
  std::string bytes = FormatLine(Format::kText, Level::kInfo, kMillis, "e", {{"v", "\x01\xff"}});
  EXPECT_NE(bytes.find("v=\"\\x01\\xff\""), std::string::npos) << bytes;
}

TEST(Log, JsonLineParsesBackWithTypedFields) {
  std::string line =
      FormatLine(Format::kJson, Level::kError, kMillis, "http.request",
                 {{"status", 500}, {"latency_ms", 1.5}, {"ok", false}, {"detail", "q\"uote\n"}});
  auto j = nlohmann::json::parse(line);
  EXPECT_EQ(j["time"], "2026-12-06T16:40:00.123Z");
  EXPECT_EQ(j["level"], "error");
  EXPECT_EQ(j["event"], "http.request");
  EXPECT_EQ(j["status"], 500);
  EXPECT_DOUBLE_EQ(j["latency_ms"].get<double>(), 1.5);
  EXPECT_EQ(j["ok"], false);
  EXPECT_EQ(j["detail"], "q\"uote\n");
}

TEST(Log, JsonReplacesInvalidUtf8AndKeepsValidUtf8) {
  std::string line = FormatLine(Format::kJson, Level::kInfo, kMillis, "e",
                                {{"bad", "a\xc3(\xed\xa0\x80"}, {"good", "\xc3\xa9t\xc3\xa9"}});
  auto j = nlohmann::json::parse(line);  // throws on invalid UTF-8
  EXPECT_EQ(j["bad"], "a\xef\xbf\xbd(\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
  EXPECT_EQ(j["good"], "\xc3\xa9t\xc3\xa9");
}

TEST(Log, LevelsAndFormatsParseAndFilter) {
  EXPECT_EQ(*ParseLevel("warning"), Level::kWarn);
  EXPECT_EQ(*ParseFormat("json"), Format::kJson);
  auto bad = ParseLevel("verbose");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("debug, info, warn, error, off"), std::string::npos);
  ASSERT_FALSE(ParseFormat("xml"));
  Configure(Format::kText, Level::kWarn);
  EXPECT_FALSE(Enabled(Level::kInfo));
  EXPECT_TRUE(Enabled(Level::kError));
  Configure(Format::kText, Level::kOff);
  EXPECT_FALSE(Enabled(Level::kError));
  Configure(Format::kText, Level::kInfo);
  EXPECT_TRUE(Enabled(Level::kInfo));
}

TEST(Log, FieldsBuiltAtRunTimeReachTheSink) {
  std::vector<std::string> lines;
  SetSinkForTesting([&](std::string_view line) { lines.emplace_back(line); });
  Configure(Format::kJson, Level::kInfo);
  std::vector<Field> fields = {{"status", 200}};
  fields.emplace_back("device", "d1");
  Write(Level::kInfo, "http.request", fields);
  Debug("hidden");
  Configure(Format::kText, Level::kInfo);
  SetSinkForTesting(nullptr);
  ASSERT_EQ(lines.size(), 1u);
  auto j = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(j["event"], "http.request");
  EXPECT_EQ(j["status"], 200);
  EXPECT_EQ(j["device"], "d1");
}

}  // namespace
}  // namespace iotpki::log
