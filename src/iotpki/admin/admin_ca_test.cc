#include "iotpki/admin/admin_ca.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

#include "iotpki/common/file.h"
#include "iotpki/crypto/ossl.h"
#include "iotpki/store/audit.h"
#include "iotpki/store/sqlite/sqlite_store.h"

namespace iotpki::admin {
namespace {

namespace fs = std::filesystem;

int Mode(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
  return st.st_mode & 0777;
}

class AdminCaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("admin_ca_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "certs");
    fs::create_directories(dir_ / "keys");
    auto opened = store::OpenSqliteStore(":memory:", clock_);
    ASSERT_TRUE(opened) << opened.error().ToString();
    store_ = std::move(*opened);
  }
  void TearDown() override { fs::remove_all(dir_); }

  Result<IssuedOperator> Issue(const std::string& name, Role role) {
    return IssueOperator(
        dir_, kPass,
        {.name = name, .role = role, .out_dir = dir_ / "out", .key_passphrase = "operator-pass"},
        clock_, store_.get(), "cli:test");
  }

  static constexpr const char* kPass = "ca-passphrase";
  FakeClock clock_{1'760'000'000};
  fs::path dir_;
  std::unique_ptr<store::Store> store_;
};

TEST_F(AdminCaTest, InitMakesASelfSignedCaWithAPrivateKeyOnce) {
  auto ca = InitAdminCa(dir_, "Acme", kPass, clock_, store_.get(), "cli:test");
  ASSERT_TRUE(ca) << ca.error().ToString();
  EXPECT_TRUE(ca->IsSignedBy(ca->public_key()));
  EXPECT_EQ(ca->common_name(), "Acme Admin CA");
  EXPECT_EQ(Mode(AdminCaKeyPath(dir_)), 0600);
  auto again = InitAdminCa(dir_, "Acme", kPass, clock_, store_.get(), "cli:test");
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), Code::kAlreadyExists);
  auto rows = store_->ReadAudit(1, 10);
  ASSERT_TRUE(rows);
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].action, "admin.init");
}

TEST_F(AdminCaTest, InitRefusesADirectoryThatIsNoCa) {
  auto ca = InitAdminCa(dir_ / "nothing", "Acme", kPass, clock_, nullptr, "cli:test");
  ASSERT_FALSE(ca);
  EXPECT_EQ(ca.error().code(), Code::kFailedPrecondition);
}

TEST_F(AdminCaTest, IssuesOperatorsWithTheirRoleAndProtectedKeys) {
  ASSERT_TRUE(InitAdminCa(dir_, "Acme", kPass, clock_, store_.get(), "cli:test"));
  auto alice = Issue("alice", Role::kOperator);
  ASSERT_TRUE(alice) << alice.error().ToString();
  auto ca = LoadAdminCa(dir_);
  ASSERT_TRUE(ca);
  EXPECT_TRUE(alice->certificate.IsSignedBy(ca->public_key()));
  auto op = OperatorOf(alice->certificate);
  ASSERT_TRUE(op) << op.error().ToString();
  EXPECT_EQ(op->name, "alice");
  EXPECT_EQ(op->role, Role::kOperator);
  EXPECT_EQ(Mode(alice->key_path), 0600);
  EXPECT_EQ(Mode(alice->p12_path), 0600);
  EXPECT_EQ(alice->certificate.extended_key_usage(), std::vector<std::string>{"clientAuth"});

  // The PKCS#12 opens with the operator's passphrase and holds the key and the certificate.
  auto der = ReadFile(alice->p12_path);
  ASSERT_TRUE(der);
  const unsigned char* p = der->data();
  std::unique_ptr<PKCS12, decltype(&PKCS12_free)> p12(
      d2i_PKCS12(nullptr, &p, static_cast<long>(der->size())), PKCS12_free);
  ASSERT_NE(p12, nullptr);
  EVP_PKEY* key = nullptr;
  X509* cert = nullptr;
  STACK_OF(X509)* chain = nullptr;
  ASSERT_EQ(PKCS12_parse(p12.get(), "operator-pass", &key, &cert, &chain), 1);
  EXPECT_EQ(X509_check_private_key(cert, key), 1);
  EVP_PKEY_free(key);
  X509_free(cert);
  sk_X509_pop_free(chain, X509_free);
  EXPECT_EQ(PKCS12_parse(p12.get(), "wrong-pass", &key, &cert, &chain), 0);
  ossl::ClearErrors();

  auto bob = Issue("bob", Role::kReadOnly);
  ASSERT_TRUE(bob);
  EXPECT_EQ(OperatorOf(bob->certificate)->role, Role::kReadOnly);

  auto rows = store_->ReadAudit(1, 10);
  ASSERT_TRUE(rows);
  ASSERT_EQ(rows->size(), 3u);
  EXPECT_EQ((*rows)[1].action, "admin.issue");
  EXPECT_NE((*rows)[1].details.find("\"role\":\"operator\""), std::string::npos);
  EXPECT_EQ((*rows)[1].subject, alice->certificate.serial_hex());
}

TEST_F(AdminCaTest, RefusesBadRequestsAndWritesNothing) {
  ASSERT_TRUE(InitAdminCa(dir_, "Acme", kPass, clock_, store_.get(), "cli:test"));
  auto bad = Issue("al ice", Role::kOperator);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), Code::kInvalidArgument);
  EXPECT_FALSE(fs::exists(dir_ / "out"));
  ASSERT_TRUE(Issue("alice", Role::kOperator));
  auto twice = Issue("alice", Role::kOperator);
  ASSERT_FALSE(twice);
  EXPECT_EQ(twice.error().code(), Code::kAlreadyExists);
  auto wrong =
      IssueOperator(dir_, "not-the-passphrase",
                    {.name = "carol", .out_dir = dir_ / "out", .key_passphrase = "operator-pass"},
                    clock_, nullptr, "cli:test");
  ASSERT_FALSE(wrong);
  EXPECT_FALSE(fs::exists(dir_ / "out" / "carol.pem"));
}

TEST_F(AdminCaTest, ACertificateWithoutARoleIsNoOperator) {
  auto ca = InitAdminCa(dir_, "Acme", kPass, clock_, nullptr, "cli:test");
  ASSERT_TRUE(ca);
  auto op = OperatorOf(*ca);  // no OU
  ASSERT_FALSE(op);
  EXPECT_EQ(op.error().code(), Code::kPermissionDenied);
  EXPECT_FALSE(ParseRole("admin"));
  EXPECT_EQ(*ParseRole("read-only"), Role::kReadOnly);
}

}  // namespace
}  // namespace iotpki::admin
