#include "iotpki/common/log.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

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

TEST(Log, AViewFieldIsWrittenAsATextFieldIs) {
  std::string path = "/ocsp/MHYw dA==";
  std::string empty;
  for (Format format : {Format::kText, Format::kJson}) {
    EXPECT_EQ(FormatLine(format, Level::kInfo, kMillis, "e",
                         {Field::View("path", path), Field::View("device", empty)}),
              FormatLine(format, Level::kInfo, kMillis, "e", {{"path", path}, {"device", empty}}));
  }
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

// Standard error redirected to a file for the duration of a test.
class StderrToFile {
 public:
  StderrToFile() : path_(testing::TempDir() + "log_test_stderr.txt") {
    std::fflush(stderr);
    saved_ = dup(STDERR_FILENO);
    int fd = open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fd, STDERR_FILENO);
    close(fd);
  }
  ~StderrToFile() {
    dup2(saved_, STDERR_FILENO);
    close(saved_);
    std::remove(path_.c_str());
  }
  std::string Text() const {
    std::ifstream in(path_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

 private:
  std::string path_;
  int saved_ = -1;
};

TEST(Log, BatchedLinesAreWrittenWithinMomentsAndBeforeAnyLaterLine) {
  Configure(Format::kText, Level::kInfo);
  StderrToFile err;
  Write(Level::kInfo, "first", {{"n", 1}}, Delivery::kBatched);
  Write(Level::kInfo, "second", {{"n", 2}}, Delivery::kBatched);
  // An error is never held, and the lines held before it come first.
  Write(Level::kError, "third", {{"n", 3}}, Delivery::kBatched);
  std::string text = err.Text();
  size_t first = text.find(" first n=1\n"), second = text.find(" second n=2\n"),
         third = text.find(" third n=3\n");
  ASSERT_NE(third, std::string::npos) << text;
  EXPECT_LT(first, second);
  EXPECT_LT(second, third);
  // A batched info line alone is written by the sink's thread within its delay (20 ms).
  Write(Level::kInfo, "fourth", {}, Delivery::kBatched);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (err.Text().find(" fourth\n") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_NE(err.Text().find(" fourth\n"), std::string::npos);
  // A line written now follows it.
  Write(Level::kWarn, "fifth", {});
  text = err.Text();
  EXPECT_LT(text.find(" fourth\n"), text.find(" fifth\n")) << text;
}

}  // namespace
}  // namespace iotpki::log
