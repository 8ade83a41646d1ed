#include "iotpki/admin/admin_api.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "iotpki/admin/admin_assets.h"
#include "iotpki/admin/admin_ca.h"
#include "iotpki/crypto/primitives.h"
#include "iotpki/store/sqlite/sqlite_store.h"

namespace iotpki::admin {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr int64_t kNow = 1'760'000'000;
constexpr int64_t kDay = 86400;

std::string Hex(const std::string& seed) { return ToHex(crypto::Sha256(AsBytes(seed))); }
std::string DeviceId(int n) { return Hex("device-" + std::to_string(n)); }
std::string Serial(int device, int n) {
  return Hex("cert-" + std::to_string(device) + "-" + std::to_string(n)).substr(0, 32);
}

class AdminApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("admin_api_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "certs");
    fs::create_directories(dir_ / "keys");
    auto opened = store::OpenSqliteStore(":memory:", clock_);
    ASSERT_TRUE(opened) << opened.error().ToString();
    store_ = std::move(*opened);
    ASSERT_TRUE(InitAdminCa(dir_, "Acme", "ca-passphrase", clock_, store_.get(), "test"));
    for (auto [name, role] : {std::pair{"alice", Role::kOperator}, {"bob", Role::kReadOnly}}) {
      auto issued = IssueOperator(
          dir_, "ca-passphrase",
          {.name = name, .role = role, .out_dir = dir_ / "out", .key_passphrase = "operator-pass"},
          clock_, store_.get(), "test");
      ASSERT_TRUE(issued) << issued.error().ToString();
      (role == Role::kOperator ? alice_ : bob_) = issued->certificate;
    }
    // Devices 1..6: model m1 (odd) or m2 (even), batch b1; an IDevID each and an LDevID
    // expiring n * 10 days from now.
    store::WriteBatch b;
    for (int n = 1; n <= 6; ++n) {
      b.InsertDevice({.device_id = DeviceId(n),
                      .serial = "SN" + std::to_string(n),
                      .model = n % 2 ? "m1" : "m2",
                      .batch = "b1"});
      for (int i = 0; i <= 1; ++i) {
        store::CertificateRecord c;
        c.serial = Serial(n, i);
        c.device_id = DeviceId(n);
        c.profile = i == 0 ? store::CertProfile::kIDevId : store::CertProfile::kLDevId;
        c.issuer = i == 0 ? "manufacturing" : "operational";
        c.subject = "CN=" + DeviceId(n);
        c.not_before = kNow - 10;
        c.not_after = i == 0 ? kNoExpiryUnix : kNow + n * 10 * kDay;
        c.key_fingerprint = Hex("key-" + std::to_string(n) + "-" + std::to_string(i));
        c.der = {0x30, 0x00};
        b.InsertCertificate(c);
      }
    }
    b.UpdateDeviceState(DeviceId(1), store::DeviceState::kManufactured,
                        store::DeviceState::kActive);
    ASSERT_TRUE(store_->Commit(b));
    auto created = store_->CreateCampaign(
        {.name = "spring", .filter_json = "{}", .wave_size = 2, .deadline = kNow + 30 * kDay},
        {.device_ids = std::vector<std::string>{DeviceId(1), DeviceId(2), DeviceId(3)}},
        {.actor = "test", .action = "campaign.create", .subject = "spring", .details = "{}"}, false,
        0);
    ASSERT_TRUE(created) << created.error().ToString();

    api_ = std::make_unique<AdminApi>(
        AdminOptions{.store = store_.get(), .clock = &clock_, .dir = dir_});
    api_->Mount(router_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  server::Request As(const x509::Certificate& cert, std::string method, std::string target) {
    server::Request r;
    r.method = std::move(method);
    size_t q = target.find('?');
    r.path = target.substr(0, q);
    if (q != std::string::npos) r.query = target.substr(q + 1);
    r.host = "127.0.0.1:9443";
    r.client_cert =
        server::ClientCertificate{.certificate = cert, .chain_valid = true, .issuer_index = 0};
    return r;
  }
  // A browser's same-origin POST with the session's token.
  server::Request Action(const x509::Certificate& cert, std::string target,
                         std::string body = "{}") {
    server::Request r = As(cert, "POST", std::move(target));
    r.content_type = "application/json";
    r.body = std::move(body);
    r.origin = "https://127.0.0.1:9443";
    r.sec_fetch_site = "same-origin";
    r.csrf_token = api_->CsrfToken(cert.fingerprint_sha256());
    return r;
  }
  server::Response Call(const server::Request& r) {
    auto m = router_.Find(r.method, r.path);
    if (m.handler == nullptr) return {.status = m.allowed_methods.empty() ? 404 : 405};
    server::Request with = r;
    with.params = m.params;
    return (*m.handler)(with);
  }
  json CallJson(const server::Request& r, int want_status = 200) {
    auto res = Call(r);
    EXPECT_EQ(res.status, want_status) << r.method << " " << r.path << ": " << res.body;
    return json::parse(res.body, nullptr, false);
  }
  store::CampaignState CampaignState() {
    auto c = store_->GetCampaign("spring");
    EXPECT_TRUE(c);
    return c ? c->state : store::CampaignState::kDone;
  }

  FakeClock clock_{kNow};
  fs::path dir_;
  std::unique_ptr<store::Store> store_;
  std::optional<x509::Certificate> alice_, bob_;
  std::unique_ptr<AdminApi> api_;
  server::Router router_;
};

TEST_F(AdminApiTest, RefusesRequestsWithoutAnOperatorCertificate) {
  server::Request none = As(*alice_, "GET", "/admin/api/v1/overview");
  none.client_cert.reset();
  EXPECT_EQ(Call(none).status, 403);
  // A device certificate: verified against no CA this listener trusts.
  server::Request device = As(*alice_, "GET", "/admin/api/v1/overview");
  device.client_cert->chain_valid = false;
  device.client_cert->issuer_index = -1;
  EXPECT_EQ(Call(device).status, 403);
  server::Request page = As(*alice_, "GET", "/admin/");
  page.client_cert.reset();
  EXPECT_EQ(Call(page).status, 403);
  // The admin CA's own certificate names no role.
  auto ca = LoadAdminCa(dir_);
  ASSERT_TRUE(ca);
  EXPECT_EQ(Call(As(*ca, "GET", "/admin/api/v1/overview")).status, 403);
}

TEST_F(AdminApiTest, SessionNamesTheOperatorAndItsToken) {
  json s = CallJson(As(*bob_, "GET", "/admin/api/v1/session"));
  EXPECT_EQ(s["operator"], "bob");
  EXPECT_EQ(s["role"], "read-only");
  EXPECT_EQ(s["csrf_token"], api_->CsrfToken(bob_->fingerprint_sha256()));
  EXPECT_NE(api_->CsrfToken(bob_->fingerprint_sha256()),
            api_->CsrfToken(alice_->fingerprint_sha256()));
}

TEST_F(AdminApiTest, OverviewCountsEqualTheStoreCounts) {
  json o = CallJson(As(*bob_, "GET", "/admin/api/v1/overview"));
  EXPECT_EQ(o["devices"]["total"], 6);
  EXPECT_EQ(o["devices"]["by_state"]["active"], 1);
  EXPECT_EQ(o["devices"]["by_state"]["manufactured"], 5);
  EXPECT_EQ(o["by_model"], json::parse(R"([{"model":"m1","n":3},{"model":"m2","n":3}])"));
  EXPECT_EQ(o["by_batch"], json::parse(R"([{"batch":"b1","n":6}])"));
  store::DeviceFilter f;
  f.expiring_within = std::chrono::days(30);
  EXPECT_EQ(o["expiring"][1]["within_days"], 30);
  EXPECT_EQ(o["expiring"][1]["n"], *store_->CountDevices(f));
  EXPECT_EQ(o["expiring"][1]["n"], 3);
  EXPECT_EQ(o["campaigns"]["running"], 1);
}

// Certificates issued per day come from the store's issuance counts: 12 today (an IDevID and an
// LDevID for each of the six devices).
TEST_F(AdminApiTest, OverviewCountsCertificatesIssuedPerDay) {
  clock_.Advance(std::chrono::days(1));
  store::CertificateRecord c;
  c.serial = "0d01";
  c.device_id = DeviceId(1);
  c.profile = store::CertProfile::kLDevId;
  c.issuer = "operational";
  c.subject = "CN=x";
  c.not_before = kNow;
  c.not_after = kNow + 90 * kDay;
  c.key_fingerprint = Hex("key-renewed");
  c.der = {0x30, 0x00};
  ASSERT_TRUE(store_->Commit(store::WriteBatch().InsertCertificate(c)));
  json o = CallJson(As(*bob_, "GET", "/admin/api/v1/overview"));
  ASSERT_EQ(o["issued_per_day"].size(), 2u) << o["issued_per_day"].dump();
  EXPECT_EQ(o["issued_per_day"][0],
            json::parse(R"({"date":")" + FormatUtc(kNow).substr(0, 10) +
                        R"(","n":12,"by_profile":{"idevid":6,"ldevid":6}})"));
  EXPECT_EQ(o["issued_per_day"][1]["n"], 1);
  EXPECT_EQ(o["issued_per_day"][1]["by_profile"]["ldevid"], 1);
}

// A device's audit rows, newest first, in keyset pages; other subjects' rows are not shown.
TEST_F(AdminApiTest, DevicePageListsItsAuditRowsInPages) {
  store::WriteBatch b;
  for (int i = 0; i < 5; ++i) {
    b.AppendAudit({.actor = "test", .action = "a" + std::to_string(i), .subject = DeviceId(2)});
    b.AppendAudit({.actor = "test", .action = "other", .subject = DeviceId(3)});
  }
  ASSERT_TRUE(store_->Commit(b));
  std::vector<std::string> actions;
  std::string next = "";
  for (int page = 0; page < 4; ++page) {
    json a = CallJson(As(*bob_, "GET", "/admin/api/v1/devices/SN2/audit?limit=2" + next));
    EXPECT_EQ(a["device_id"], DeviceId(2));
    for (const auto& r : a["audit"]) actions.push_back(r["action"]);
    if (a["next_before"].is_null()) break;
    next = "&before=" + std::to_string(a["next_before"].get<int64_t>());
  }
  EXPECT_EQ(actions, (std::vector<std::string>{"a4", "a3", "a2", "a1", "a0"}));
  EXPECT_EQ(Call(As(*bob_, "GET", "/admin/api/v1/devices/SN2/audit?limit=0")).status, 400);
  EXPECT_EQ(Call(As(*bob_, "GET", "/admin/api/v1/devices/NOPE/audit")).status, 404);
}

// `iotpki admin revoke`: a revoked operator certificate is refused from the next request on,
// the other operators' are not; a certificate the store never recorded is refused too.
TEST_F(AdminApiTest, RevokedOperatorCertificateIsRefusedAtOnce) {
  EXPECT_EQ(Call(As(*bob_, "GET", "/admin/api/v1/overview")).status, 200);
  auto revoked = RevokeOperator(*store_, "bob", "", "cli:test");
  ASSERT_TRUE(revoked) << revoked.error().ToString();
  ASSERT_EQ(revoked->size(), 1u);
  EXPECT_EQ((*revoked)[0].serial, bob_->serial_hex());
  auto refused = Call(As(*bob_, "GET", "/admin/api/v1/overview"));
  EXPECT_EQ(refused.status, 403);
  EXPECT_NE(refused.body.find("revoked"), std::string::npos) << refused.body;
  EXPECT_EQ(Call(As(*bob_, "GET", "/admin/")).status, 403);
  EXPECT_EQ(Call(As(*alice_, "GET", "/admin/api/v1/overview")).status, 200);
  auto rows = store_->ReadAuditForSubject(bob_->serial_hex(), INT64_MAX, 10);
  ASSERT_TRUE(rows);
  ASSERT_FALSE(rows->empty());
  EXPECT_EQ((*rows)[0].action, "admin.revoke");
  EXPECT_EQ((*rows)[0].actor, "cli:test");
  // Nothing left to revoke, nobody of that name, or both selectors: refused, nothing written.
  EXPECT_EQ(RevokeOperator(*store_, "bob", "", "t").error().code(), Code::kFailedPrecondition);
  EXPECT_EQ(RevokeOperator(*store_, "carol", "", "t").error().code(), Code::kNotFound);
  EXPECT_EQ(RevokeOperator(*store_, "bob", "0a", "t").error().code(), Code::kInvalidArgument);
  EXPECT_EQ(RevokeOperator(*store_, "", "0a", "t").error().code(), Code::kNotFound);

  auto unrecorded = IssueOperator(dir_, "ca-passphrase",
                                  {.name = "dave",
                                   .role = Role::kOperator,
                                   .out_dir = dir_ / "out2",
                                   .key_passphrase = "operator-pass"},
                                  clock_, nullptr, "test");
  ASSERT_TRUE(unrecorded) << unrecorded.error().ToString();
  EXPECT_EQ(Call(As(unrecorded->certificate, "GET", "/admin/api/v1/overview")).status, 403);
}

TEST_F(AdminApiTest, ExpiryHistogramHasOneDevicePerTenDays) {
  json e = CallJson(As(*bob_, "GET", "/admin/api/v1/expiry?days=365"));
  EXPECT_EQ(e["total"], 6);
  ASSERT_EQ(e["days"].size(), 6u);
  EXPECT_EQ(e["days"][0]["date"], FormatUtc(kNow + 10 * kDay).substr(0, 10));
  EXPECT_EQ(CallJson(As(*bob_, "GET", "/admin/api/v1/expiry?days=0"), 400).contains("error"), true);
  EXPECT_EQ(Call(As(*bob_, "GET", "/admin/api/v1/expiry?days=x")).status, 400);
}

TEST_F(AdminApiTest, CampaignsAndDevicePages) {
  json c = CallJson(As(*bob_, "GET", "/admin/api/v1/campaigns"));
  ASSERT_EQ(c["campaigns"].size(), 1u);
  EXPECT_EQ(c["campaigns"][0]["name"], "spring");
  EXPECT_EQ(c["campaigns"][0]["jobs"], 3);
  EXPECT_EQ(c["campaigns"][0]["waves"], 2);
  EXPECT_EQ(c["campaigns"][0]["counts"]["pending"], 3);
  EXPECT_EQ(Call(As(*bob_, "GET", "/admin/api/v1/campaigns/nope")).status, 404);
  json f = CallJson(As(*bob_, "GET", "/admin/api/v1/campaigns/spring/failures?limit=10"));
  EXPECT_TRUE(f["failures"].empty());

  json d = CallJson(As(*bob_, "GET", "/admin/api/v1/devices/SN2"));
  EXPECT_EQ(d["device"]["device_id"], DeviceId(2));
  ASSERT_EQ(d["certificates"].size(), 2u);
  for (const auto& c : d["certificates"]) {
    // The LDevID was never used: a renewal waiting, not the current one.
    EXPECT_EQ(c["slot"], c["profile"] == "idevid" ? "birth" : "next") << c.dump();
  }
  json by_id = CallJson(As(*bob_, "GET", "/admin/api/v1/devices/" + DeviceId(2)));
  EXPECT_EQ(by_id["device"]["serial"], "SN2");
  EXPECT_EQ(Call(As(*bob_, "GET", "/admin/api/v1/devices/SN99")).status, 404);

  // Keyset pages: two of six, then the rest from the cursor.
  json p1 = CallJson(As(*bob_, "GET", "/admin/api/v1/devices?limit=2"));
  ASSERT_EQ(p1["devices"].size(), 2u);
  std::string cursor = p1["next_cursor"];
  ASSERT_FALSE(cursor.empty());
  json p2 = CallJson(As(*bob_, "GET", "/admin/api/v1/devices?limit=10&cursor=" + cursor));
  EXPECT_EQ(p2["devices"].size(), 4u);
  EXPECT_EQ(Call(As(*bob_, "GET", "/admin/api/v1/devices?cursor=garbage")).status, 400);
}

TEST_F(AdminApiTest, OperatorPausesAndResumesWithAnAuditRowNamingThem) {
  json r = CallJson(Action(*alice_, "/admin/api/v1/campaigns/spring/pause"));
  EXPECT_EQ(r["state"], "paused");
  EXPECT_EQ(CampaignState(), store::CampaignState::kPaused);
  auto head = store_->ReadAudit(1, 100);
  ASSERT_TRUE(head);
  EXPECT_EQ(head->back().action, "campaign.pause");
  EXPECT_EQ(head->back().actor, "admin:alice");
  // Pausing twice is a conflict, not a silent success.
  EXPECT_EQ(Call(Action(*alice_, "/admin/api/v1/campaigns/spring/pause")).status, 409);
  CallJson(Action(*alice_, "/admin/api/v1/campaigns/spring/resume"));
  EXPECT_EQ(CampaignState(), store::CampaignState::kRunning);
  EXPECT_EQ(Call(Action(*alice_, "/admin/api/v1/campaigns/spring/explode")).status, 404);
}

TEST_F(AdminApiTest, ActionsRefuseReadOnlyGetAndCrossSiteRequests) {
  auto unchanged = [&](server::Request r, int status) {
    EXPECT_EQ(Call(r).status, status) << r.method << " " << r.path;
    EXPECT_EQ(CampaignState(), store::CampaignState::kRunning);
  };
  unchanged(Action(*bob_, "/admin/api/v1/campaigns/spring/pause"), 403);       // read-only
  unchanged(As(*alice_, "GET", "/admin/api/v1/campaigns/spring/pause"), 405);  // no GET
  server::Request no_token = Action(*alice_, "/admin/api/v1/campaigns/spring/pause");
  no_token.csrf_token.clear();
  unchanged(no_token, 403);
  server::Request bob_token = Action(*alice_, "/admin/api/v1/campaigns/spring/pause");
  bob_token.csrf_token = api_->CsrfToken(bob_->fingerprint_sha256());
  unchanged(bob_token, 403);
  server::Request other_origin = Action(*alice_, "/admin/api/v1/campaigns/spring/pause");
  other_origin.origin = "https://evil.example";
  unchanged(other_origin, 403);
  server::Request cross_site = Action(*alice_, "/admin/api/v1/campaigns/spring/pause");
  cross_site.sec_fetch_site = "cross-site";
  unchanged(cross_site, 403);
  server::Request form = Action(*alice_, "/admin/api/v1/campaigns/spring/pause");
  form.content_type = "application/x-www-form-urlencoded";
  unchanged(form, 415);
  // A script without a browser's headers, with the token: accepted.
  server::Request script = Action(*alice_, "/admin/api/v1/campaigns/spring/pause");
  script.origin.clear();
  script.sec_fetch_site.clear();
  EXPECT_EQ(Call(script).status, 200);
}

TEST_F(AdminApiTest, RevokeAndDecommission) {
  EXPECT_EQ(Call(Action(*alice_, "/admin/api/v1/certificates/" + Serial(4, 1) + "/revoke",
                        R"({"reason":"holiday"})"))
                .status,
            400);
  EXPECT_EQ(
      Call(Action(*alice_, "/admin/api/v1/certificates/" + Serial(4, 1) + "/revoke", "not json"))
          .status,
      400);
  json r = CallJson(Action(*alice_, "/admin/api/v1/certificates/" + Serial(4, 1) + "/revoke",
                           R"({"reason":"keyCompromise"})"));
  EXPECT_EQ(r["revoked"], 1);
  auto cert = store_->GetCertificate(Serial(4, 1));
  ASSERT_TRUE(cert);
  EXPECT_EQ(cert->status, store::CertStatus::kRevoked);
  EXPECT_EQ(Call(Action(*alice_, "/admin/api/v1/certificates/" + Serial(4, 1) + "/revoke",
                        R"({"reason":"keyCompromise"})"))
                .status,
            409);
  json rev = CallJson(As(*bob_, "GET", "/admin/api/v1/revocations?limit=10"));
  ASSERT_EQ(rev["revocations"].size(), 1u);
  EXPECT_EQ(rev["revocations"][0]["serial"], Serial(4, 1));

  json d = CallJson(Action(*alice_, "/admin/api/v1/devices/" + DeviceId(5) + "/decommission"));
  EXPECT_EQ(d["state"], "decommissioned");
  EXPECT_EQ(store_->GetDevice(DeviceId(5))->state, store::DeviceState::kDecommissioned);
  auto rows = store_->ReadAudit(1, 100);
  ASSERT_TRUE(rows);
  int decommissions = 0;
  for (const auto& row : *rows) {
    if (row.action != "device.decommission") continue;
    ++decommissions;
    EXPECT_EQ(row.actor, "admin:alice");
    EXPECT_EQ(row.subject, DeviceId(5));
  }
  EXPECT_EQ(decommissions, 1);
  EXPECT_EQ(rows->back().actor, "admin:alice");
  EXPECT_EQ(Call(Action(*alice_, "/admin/api/v1/devices/nothex/decommission")).status, 400);
}

TEST_F(AdminApiTest, AuditShowsTheLastVerification) {
  json before = CallJson(As(*bob_, "GET", "/admin/api/v1/audit"));
  EXPECT_TRUE(before["last_verification"].is_null());
  AuditRun run = api_->VerifyAuditNow();
  EXPECT_TRUE(run.intact) << run.explanation;
  json after = CallJson(As(*bob_, "GET", "/admin/api/v1/audit"));
  EXPECT_EQ(after["last_verification"]["intact"], true);
  EXPECT_EQ(after["last_verification"]["last_seq"], after["head"]["seq"]);
}

// serve's shutdown (Stop) cancels a verification before its next page rather than waiting for
// the whole log; the last complete result stays what the API shows.
TEST_F(AdminApiTest, StopCancelsAVerificationAndKeepsTheLastResult) {
  AuditRun done = api_->VerifyAuditNow();
  ASSERT_TRUE(done.intact) << done.explanation;
  api_->Start();
  api_->Stop();
  AuditRun cancelled = api_->VerifyAuditNow();
  EXPECT_FALSE(cancelled.intact);
  EXPECT_EQ(cancelled.rows, 0);
  EXPECT_EQ(cancelled.explanation, "cancelled: the server is stopping");
  json after = CallJson(As(*bob_, "GET", "/admin/api/v1/audit"));
  EXPECT_EQ(after["last_verification"]["intact"], true);
  EXPECT_EQ(after["last_verification"]["rows"], done.rows);
}

TEST_F(AdminApiTest, PagesAreEmbeddedAndLockedDown) {
  auto r = Call(As(*bob_, "GET", "/admin/"));
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("<title>iotpki dashboard</title>"), std::string::npos);
  bool csp = false;
  for (const auto& [k, v] : r.headers) {
    if (k == "Content-Security-Policy") csp = v.find("default-src 'self'") == 0;
  }
  EXPECT_TRUE(csp);
  EXPECT_EQ(Call(As(*bob_, "GET", "/admin/app.js")).content_type, "text/javascript; charset=utf-8");
  EXPECT_NE(FindAsset("style.css"), nullptr);
  EXPECT_EQ(Call(As(*bob_, "GET", "/admin/secret.txt")).status, 404);
}

}  // namespace
}  // namespace iotpki::admin
