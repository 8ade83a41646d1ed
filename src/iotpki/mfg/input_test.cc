#include "iotpki/mfg/input.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "iotpki/crypto/primitives.h"
#include "iotpki/x509/profile.h"

namespace iotpki::mfg {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class InputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("iotpki-mfg-input-" + std::to_string(::getpid()) + "-" + ToHex(crypto::RandomBytes(4)));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path Csv(const std::string& text) {
    fs::path p = dir_ / "serials.csv";
    std::ofstream(p, std::ios::binary) << text;
    return p;
  }
  std::string ErrorOf(const std::string& text, const std::string& model = "TH-100",
                      const MfgConfig& config = {}) {
    auto r = ReadSerialsCsv(Csv(text), model, config);
    EXPECT_FALSE(r) << "accepted: " << text;
    if (r) return "";
    EXPECT_EQ(r.error().code(), Code::kInvalidArgument);
    return r.error().message();
  }

  fs::path dir_;
};

// The worked example of docs/manufacturing.md, computed there with openssl dgst.
TEST(DeviceIdTest, WorkedExample) {
  EXPECT_EQ(x509::ComputeDeviceId("TH-000001", *FromHex("0123456789abcdef")),
            "d5ddacd0d8d6fe7a90a0c034b18627e73a7aa79b77814ce6dee63f51d7c50e2f");
}

TEST_F(InputTest, ReadsRowsHeaderCommentsAndModels) {
  auto devices = ReadSerialsCsv(Csv("\xEF\xBB\xBFserial,fingerprint,model\r\n"
                                    "# line 2 is a comment\n"
                                    "\n"
                                    "TH-000001, 0123456789ABCDEF \r\n"
                                    "TH-000002,a1b2,CAM-2\n"),
                                "TH-100", {});
  ASSERT_TRUE(devices) << devices.error().ToString();
  ASSERT_EQ(devices->size(), 2u);
  const DeviceInput& d = (*devices)[0];
  EXPECT_EQ(d.origin, "serials.csv line 4");
  EXPECT_EQ(d.serial, "TH-000001");
  EXPECT_EQ(ToHex(d.hardware_fingerprint), "0123456789abcdef");
  EXPECT_EQ(d.model, "TH-100");
  EXPECT_EQ(d.device_id, "d5ddacd0d8d6fe7a90a0c034b18627e73a7aa79b77814ce6dee63f51d7c50e2f");
  EXPECT_FALSE(d.generated);
  EXPECT_EQ((*devices)[1].model, "CAM-2");
}

TEST_F(InputTest, RefusalsNameTheLine) {
  EXPECT_THAT(ErrorOf("A-1,00\nA-2\n"), HasSubstr("line 2: expected serial,fingerprint[,model]"));
  EXPECT_THAT(ErrorOf("A-1,00,m,x\n"), HasSubstr("line 1: expected"));
  EXPECT_THAT(ErrorOf("A-1,00\n,11\n"), HasSubstr("line 2: empty serial"));
  EXPECT_THAT(ErrorOf("A 1,00\n"), HasSubstr("line 1: serial 'A 1'"));
  EXPECT_THAT(ErrorOf("..,00\n"), HasSubstr("starts with '.'"));
  EXPECT_THAT(ErrorOf("A-1,xyz\n"), HasSubstr("line 1: hardware fingerprint 'xyz' is not"));
  EXPECT_THAT(ErrorOf("A-1,0\n"), HasSubstr("not 2 to 128 hex digits"));
  EXPECT_THAT(ErrorOf("A-1,00\nB-1,01\na-1,02\n"),
              HasSubstr("line 3: serial 'a-1' repeats serials.csv line 1"));
  EXPECT_THAT(ErrorOf("A-1,00\nA-2,00\n"), HasSubstr("line 2: hardware fingerprint 00 repeats"));
  EXPECT_THAT(ErrorOf("A-1,00\n", ""), HasSubstr("line 1: empty model"));
  EXPECT_THAT(ErrorOf("A-1,00,-x\n"), HasSubstr("model '-x'"));
  EXPECT_THAT(ErrorOf("\"A-1\",00\n"), HasSubstr("quoted fields"));
  MfgConfig config{.models = {"TH-100", "CAM-2"}};
  EXPECT_THAT(
      ErrorOf("A-1,00,TH-200\n", "TH-100", config),
      HasSubstr("line 1: unknown model 'TH-200' (iotpki.toml [mfg] models: TH-100, CAM-2)"));
  EXPECT_TRUE(ReadSerialsCsv(Csv("A-1,00,CAM-2\n"), "TH-100", config));
  EXPECT_THAT(ErrorOf("# nothing\n"), HasSubstr("lists no device"));
  auto missing = ReadSerialsCsv(dir_ / "nope.csv", "m", {});
  ASSERT_FALSE(missing);
  EXPECT_THAT(missing.error().message(), HasSubstr("cannot read --serials"));
}

TEST_F(InputTest, GeneratedSerialsAreStable) {
  auto a = GenerateSerials(3, "TH-", "TH-100", {});
  auto b = GenerateSerials(3, "TH-", "TH-100", {});
  ASSERT_TRUE(a && b);
  EXPECT_EQ((*a)[0].serial, "TH-000001");
  EXPECT_EQ((*a)[2].serial, (*b)[2].serial);
  EXPECT_EQ((*a)[0].hardware_fingerprint.size(), 16u);
  EXPECT_NE((*a)[0].hardware_fingerprint, (*b)[0].hardware_fingerprint);
  EXPECT_TRUE((*a)[0].generated);
  EXPECT_FALSE(GenerateSerials(0, "TH-", "m", {}));
  EXPECT_FALSE(GenerateSerials(3, "TH_", "m", {}));
  EXPECT_FALSE(GenerateSerials(3, ".", "m", {}));
  EXPECT_FALSE(GenerateSerials(3, "TH-", "", {}));
  EXPECT_FALSE(GenerateSerials(3, "TH-", "TH-9", {.models = {"TH-100"}}));
}

TEST_F(InputTest, MfgConfigIsOptional) {
  std::ofstream(dir_ / "iotpki.toml") << "[ca]\norganization = \"x\"\n";
  auto none = LoadMfgConfig(dir_);
  ASSERT_TRUE(none) << none.error().ToString();
  EXPECT_TRUE(none->models.empty());
  std::ofstream(dir_ / "iotpki.toml") << "[mfg]\nmodels = [\"TH-100\", \"CAM-2\"]\n";
  auto two = LoadMfgConfig(dir_);
  ASSERT_TRUE(two);
  EXPECT_EQ(two->models, (std::vector<std::string>{"TH-100", "CAM-2"}));
  std::ofstream(dir_ / "iotpki.toml") << "[mfg]\nmodels = []\n";
  EXPECT_FALSE(LoadMfgConfig(dir_));
  std::ofstream(dir_ / "iotpki.toml") << "[mfg]\nmodels = [\"bad model\"]\n";
  EXPECT_FALSE(LoadMfgConfig(dir_));
  std::ofstream(dir_ / "iotpki.toml") << "[mfg]\nmodels = \"TH-100\"\n";
  EXPECT_FALSE(LoadMfgConfig(dir_));
}

}  // namespace
}  // namespace iotpki::mfg
