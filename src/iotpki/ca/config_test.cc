#include "iotpki/ca/config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "iotpki/common/file.h"

namespace iotpki::ca {
namespace {

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("iotpki-config-test-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void Write(std::string_view text) { ASSERT_TRUE(WriteFileAtomic(dir_ / kConfigFile, text)); }
  std::filesystem::path dir_;
};

TEST_F(ConfigTest, RoundTrip) {
  CaConfig c;
  c.organization = "Acme Devices";
  c.ldevid_validity_days = 30;
  c.device_key_types = {"P-256", "P-384"};
  ASSERT_TRUE(SaveConfig(dir_, c));
  auto back = LoadConfig(dir_);
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(back->organization, "Acme Devices");
  EXPECT_EQ(back->ldevid_validity_days, 30);
  EXPECT_EQ(back->device_key_types, (std::vector<std::string>{"P-256", "P-384"}));
}

TEST_F(ConfigTest, PublicUrlRoundTripsAndBadOnesAreRefused) {
  CaConfig c;
  ASSERT_TRUE(SaveConfig(dir_, c));
  EXPECT_EQ(LoadConfig(dir_)->public_url, "");
  c.public_url = "https://pki.example.com:8443";
  ASSERT_TRUE(SaveConfig(dir_, c));
  EXPECT_EQ(LoadConfig(dir_)->public_url, "https://pki.example.com:8443");
  for (const char* bad : {"ftp://pki.example.com", "https://pki.example.com/", "pki.example.com",
                          "https://pki example.com", "https://pki.example.com/?x=1"}) {
    c.public_url = bad;
    ASSERT_TRUE(SaveConfig(dir_, c));
    auto loaded = LoadConfig(dir_);
    ASSERT_FALSE(loaded) << bad;
    EXPECT_EQ(loaded.error().code(), Code::kInvalidArgument);
    EXPECT_NE(loaded.error().message().find("status.public_url"), std::string::npos)
        << loaded.error().message();
    EXPECT_FALSE(ValidatePublicUrl(bad));
  }
}

TEST_F(ConfigTest, MissingIsFailedPreconditionWithHint) {
  auto c = LoadConfig(dir_ / "nope");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code(), Code::kFailedPrecondition);
  EXPECT_NE(c.error().message().find("iotpki ca init"), std::string::npos);
}

TEST_F(ConfigTest, SyntaxErrorNamesTheLine) {
  Write("[ca]\norganization = \"x\"\n[policy\n");
  auto c = LoadConfig(dir_);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code(), Code::kInvalidArgument);
  EXPECT_NE(c.error().message().find("line 3"), std::string::npos) << c.error().message();
}

// Each bad value is refused, and the message names the key and what it must be: a test that
// accepted any failure would pass on a file that could not be read at all.
TEST_F(ConfigTest, WrongTypesAndRangesRefusedSayingWhatIsWrong) {
  struct Case {
    std::string_view toml;
    std::string_view says;
  };
  for (const Case& c : {
           Case{"[policy]\nldevid_validity_days = \"ninety\"\n",
                "policy.ldevid_validity_days must be an integer in [1, 3650]"},
           Case{"[policy]\nldevid_validity_days = 0\n",
                "policy.ldevid_validity_days must be an integer in [1, 3650]"},
           // Above the 397-day default maximum.
           Case{"[policy]\nldevid_validity_days = 500\n",
                "policy.ldevid_validity_days exceeds ldevid_max_validity_days"},
           Case{"[store]\nbackend = \"oracle\"\n", "set store.url"},
           Case{"[identity]\nhw_type_oid = \"not.an.oid\"\n",
                "identity.hw_type_oid is not a dotted OID"},
           Case{"[policy]\ndevice_key_types = \"P-256\"\n",
                "policy.device_key_types must be an array"},
           Case{"[policy]\nreentry_max_days_expired = -1\n",
                "policy.reentry_max_days_expired must be an integer in [0, 36500]"},
       }) {
    Write(c.toml);
    auto r = LoadConfig(dir_);
    ASSERT_FALSE(r) << c.toml;
    EXPECT_EQ(r.error().code(), Code::kInvalidArgument) << c.toml;
    EXPECT_NE(r.error().message().find(c.says), std::string::npos)
        << c.toml << "gave: " << r.error().message();
    // The message names the file, so an operator knows which one to fix.
    EXPECT_NE(r.error().message().find(kConfigFile), std::string::npos) << r.error().message();
  }
}

TEST_F(ConfigTest, ReentryWindowDefaultsTo365AndRoundTrips) {
  Write("[ca]\norganization = \"x\"\n");
  ASSERT_TRUE(LoadConfig(dir_));
  EXPECT_EQ(LoadConfig(dir_)->reentry_max_days_expired, 365);
  CaConfig c;
  c.reentry_max_days_expired = 0;
  ASSERT_TRUE(SaveConfig(dir_, c));
  EXPECT_EQ(LoadConfig(dir_)->reentry_max_days_expired, 0);
}

// A CA directory made before [store] url keeps opening its SQLite file.
TEST_F(ConfigTest, StoreBackendAndPathOfOlderFilesAreReadAsAUrl) {
  Write("[store]\nbackend = \"sqlite\"\npath = \"inventory.db\"\n");
  auto c = LoadConfig(dir_);
  ASSERT_TRUE(c) << c.error().ToString();
  EXPECT_EQ(c->store_url, "sqlite:inventory.db");
  Write("[store]\nbackend = \"sqlite\"\n");
  EXPECT_EQ(LoadConfig(dir_)->store_url, "sqlite:iotpki.db");
  Write("[ca]\norganization = \"x\"\n");
  EXPECT_EQ(LoadConfig(dir_)->store_url, "sqlite:iotpki.db");
}

TEST_F(ConfigTest, StoreUrlRoundTrips) {
  CaConfig c;
  c.store_url = "postgresql://db1,db2/iotpki?target_session_attrs=read-write";
  ASSERT_TRUE(SaveConfig(dir_, c));
  auto back = LoadConfig(dir_);
  ASSERT_TRUE(back) << back.error().ToString();
  EXPECT_EQ(back->store_url, c.store_url);
}

TEST_F(ConfigTest, BadStoreKeysAreRefusedWithTheFix) {
  Write("[store]\nurl = \"mysql://db/iotpki\"\n");
  auto scheme = LoadConfig(dir_);
  ASSERT_FALSE(scheme);
  EXPECT_EQ(scheme.error().code(), Code::kInvalidArgument);
  EXPECT_NE(scheme.error().message().find("postgresql://"), std::string::npos)
      << scheme.error().message();
  Write("[store]\nurl = \"sqlite:a.db\"\npath = \"b.db\"\n");
  auto both = LoadConfig(dir_);
  ASSERT_FALSE(both);
  EXPECT_NE(both.error().message().find("keep only url"), std::string::npos);
  Write("[store]\nbackend = \"oracle\"\n");
  auto other = LoadConfig(dir_);
  ASSERT_FALSE(other);
  EXPECT_NE(other.error().message().find("set store.url"), std::string::npos);
  Write("[store]\nurl = 5\n");
  auto number = LoadConfig(dir_);
  ASSERT_FALSE(number);
  EXPECT_NE(number.error().message().find("store.url must be a string"), std::string::npos)
      << number.error().message();
}

}  // namespace
}  // namespace iotpki::ca
