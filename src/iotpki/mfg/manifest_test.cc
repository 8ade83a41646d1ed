#include "iotpki/mfg/manifest.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "iotpki/common/file.h"
#include "iotpki/crypto/primitives.h"

namespace iotpki::mfg {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

ManifestEntry Entry(int n) {
  return ManifestEntry{.serial = "SN-" + std::to_string(n),
                       .device_id = std::string(64, 'a'),
                       .hardware_fingerprint = "00ff",
                       .model = "TH-100",
                       .cert_serial = std::string(32, '1'),
                       .not_after = 253402300799,
                       .sha256 = std::string(64, 'b')};
}

class ManifestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("iotpki-mfg-manifest-" + std::to_string(::getpid()) + "-" +
                                        ToHex(crypto::RandomBytes(4)));
    fs::create_directories(dir_);
    path_ = dir_ / "manifest.jsonl";
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_, path_;
};

TEST_F(ManifestTest, LinesRoundTrip) {
  std::string line = ToJsonLine(Entry(1));
  EXPECT_THAT(line, HasSubstr("\"serial\":\"SN-1\""));
  EXPECT_THAT(line, HasSubstr("\"not_after\":\"9999-12-31T23:59:59Z\""));
  auto back = ParseJsonLine(line);
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(*back, Entry(1));
  EXPECT_FALSE(ParseJsonLine("{\"serial\":1}"));
  EXPECT_FALSE(ParseJsonLine("not json"));
}

// The line is written by hand when nothing needs escaping: it must be exactly what a JSON
// library writes for the same object, escaped fields or not.
TEST_F(ManifestTest, LinesAreWhatAJsonLibraryWrites) {
  std::vector<ManifestEntry> entries{Entry(1), Entry(2), Entry(3), Entry(4), Entry(5)};
  entries[1].c509_sha256 = std::string(64, 'c');
  entries[2].serial = "SN-\"quoted\"\\";
  entries[3].model = "Thermostat-\xc3\xa9";  // UTF-8
  entries[4].model = "tab\there";
  entries[4].hardware_fingerprint = "";
  for (const ManifestEntry& e : entries) {
    nlohmann::ordered_json j{{"serial", e.serial},
                             {"device_id", e.device_id},
                             {"hardware_fingerprint", e.hardware_fingerprint},
                             {"model", e.model},
                             {"cert_serial", e.cert_serial},
                             {"not_after", "9999-12-31T23:59:59Z"},
                             {"sha256", e.sha256}};
    if (!e.c509_sha256.empty()) j["c509_sha256"] = e.c509_sha256;
    std::string line = ToJsonLine(e);
    EXPECT_EQ(line, j.dump()) << e.serial;
    auto back = ParseJsonLine(line);
    ASSERT_TRUE(back) << line;
    EXPECT_EQ(*back, e);
  }
}

TEST_F(ManifestTest, C509HashIsListedOnlyWhenThere) {
  EXPECT_THAT(ToJsonLine(Entry(1)), ::testing::Not(HasSubstr("c509_sha256")));
  ManifestEntry e = Entry(2);
  e.c509_sha256 = std::string(64, 'c');
  std::string line = ToJsonLine(e);
  EXPECT_THAT(line, HasSubstr("\"sha256\":\"" + std::string(64, 'b') + "\",\"c509_sha256\":\""));
  auto back = ParseJsonLine(line);
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(*back, e);
  line.replace(line.find("\"c509_sha256\":\""), 15, "\"c509_sha256\":7,\"x\":\"");
  EXPECT_FALSE(ParseJsonLine(line));
}

TEST_F(ManifestTest, AppendsAndCutsAnUnfinishedLastLine) {
  std::unordered_set<std::string> listed;
  {
    auto m = Manifest::Open(path_, &listed);
    ASSERT_TRUE(m) << m.error().ToString();
    EXPECT_TRUE(listed.empty());
    ASSERT_TRUE(m->Append({Entry(1), Entry(2)}));
  }
  // A crash in the middle of the next append.
  std::ofstream(path_, std::ios::app) << ToJsonLine(Entry(3)).substr(0, 20);
  {
    auto m = Manifest::Open(path_, &listed);
    ASSERT_TRUE(m) << m.error().ToString();
    EXPECT_EQ(listed, (std::unordered_set<std::string>{"SN-1", "SN-2"}));
    ASSERT_TRUE(m->Append({Entry(3)}));
  }
  auto text = ReadTextFile(path_);
  ASSERT_TRUE(text);
  EXPECT_EQ(*text, ToJsonLine(Entry(1)) + "\n" + ToJsonLine(Entry(2)) + "\n" +
                       ToJsonLine(Entry(3)) + "\n");
}

TEST_F(ManifestTest, CorruptOrDuplicateLinesAreDataLoss) {
  std::ofstream(path_) << ToJsonLine(Entry(1)) << "\n" << ToJsonLine(Entry(1)) << "\n";
  std::unordered_set<std::string> listed;
  auto dup = Manifest::Open(path_, &listed);
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code(), Code::kDataLoss);
  EXPECT_THAT(dup.error().message(), HasSubstr("line 2: serial SN-1 is listed twice"));
  std::ofstream(path_) << "{oops}\n";
  listed.clear();
  auto bad = Manifest::Open(path_, &listed);
  ASSERT_FALSE(bad);
  EXPECT_THAT(bad.error().message(), HasSubstr("line 1"));
}

}  // namespace
}  // namespace iotpki::mfg
