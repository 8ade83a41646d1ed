// The scheduler over a real SQLite store (a file, so that two stores can share it), a FakeClock,
// a fixed jitter and the in-memory notifier.
#include "iotpki/campaign/scheduler.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <set>

#include "iotpki/common/bytes.h"
#include "iotpki/crypto/primitives.h"
#include "iotpki/store/audit.h"
#include "iotpki/store/sqlite/sqlite_store.h"

namespace iotpki::campaign {
namespace {

using store::CampaignState;
using store::JobState;

constexpr int64_t kStart = 1'750'000'000;

class NoJitter final : public Jitter {
 public:
  int64_t Below(int64_t) override { return 0; }
};

std::string DeviceId(int n) {
  return ToHex(crypto::Sha256(AsBytes("sched-device-" + std::to_string(n))));
}

class SchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/iotpki-sched-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    store_ = Open();
    ASSERT_TRUE(store_);
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::unique_ptr<store::Store> Open() {
    auto opened = store::OpenSqliteStore(dir_ / "iotpki.db", clock_);
    EXPECT_TRUE(opened) << opened.error().ToString();
    return opened ? std::move(*opened) : nullptr;
  }

  // `n` devices and a campaign over them.
  store::Campaign MakeCampaign(int n, int64_t wave_size, int64_t max_attempts = 2,
                               int64_t max_failure_ppm = 500000) {
    store::WriteBatch b;
    for (int i = 0; i < n; ++i) {
      store::Device d;
      d.device_id = DeviceId(i);
      d.serial = "S-" + std::to_string(i);
      d.model = "m";
      d.batch = "b";
      b.InsertDevice(d);
    }
    EXPECT_TRUE(store_->Commit(b));
    store::CampaignSpec spec{.name = "q3",
                             .filter_json = "{}",
                             .mode = store::CampaignMode::kRekey,
                             .wave_size = wave_size,
                             .max_failure_ppm = max_failure_ppm,
                             .retry_after = 100,
                             .max_attempts = max_attempts,
                             .deadline = kStart + 100000};
    auto created = store_->CreateCampaign(
        spec, store::CampaignCohort{.devices = store::DeviceFilter{.batch = "b"}},
        {"test", "campaign.create", "q3", "{}"}, false, 0);
    EXPECT_TRUE(created) << created.error().ToString();
    return created ? created->campaign : store::Campaign{};
  }

  TickReport MustTick(Scheduler& s) {
    auto r = s.Tick();
    EXPECT_TRUE(r) << r.error().ToString();
    return r ? *r : TickReport{};
  }

  store::Campaign Get() { return *store_->GetCampaign("q3"); }

  FakeClock clock_{kStart};
  NoJitter jitter_;
  InMemoryNotifier notifier_;
  std::filesystem::path dir_;
  std::unique_ptr<store::Store> store_;
};

TEST_F(SchedulerTest, NotifiesTheFirstWaveOnceAndRecordsIt) {
  auto c = MakeCampaign(5, 2);
  Scheduler s(*store_, notifier_, clock_, jitter_, {.owner = "a"});
  auto report = MustTick(s);
  EXPECT_EQ(report.claimed, 2);
  EXPECT_EQ(report.notified, 2);
  auto sent = notifier_.sent();
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(sent[0],
            (RotateCommand{"q3", 0, DeviceId(0), store::CampaignMode::kRekey, 1, kStart + 100}));
  auto job = store_->GetJob(c.id, 0);
  ASSERT_TRUE(job);
  EXPECT_EQ(job->state, JobState::kNotified);
  EXPECT_EQ(job->next_attempt_at, kStart + 100);
  // Nothing is due again before the retry delay.
  clock_.Advance(std::chrono::seconds(99));
  EXPECT_EQ(MustTick(s).claimed, 0);
  EXPECT_EQ(notifier_.sent().size(), 2u);
}

TEST_F(SchedulerTest, RetriesWithBackoffThenFailsAndHaltsTheWave) {
  auto c = MakeCampaign(4, 2, /*max_attempts=*/2, /*max_failure_ppm=*/400000);
  Scheduler s(*store_, notifier_, clock_, jitter_, {.owner = "a"});
  MustTick(s);  // attempt 1 at kStart, waits 100 s
  clock_.Advance(std::chrono::seconds(100));
  auto second = MustTick(s);  // no answer: attempt 2, waits 200 s
  EXPECT_EQ(second.retried, 2);
  EXPECT_EQ(notifier_.sent().size(), 4u);
  EXPECT_EQ(store_->GetJob(c.id, 0)->next_attempt_at, kStart + 100 + 200);
  clock_.Advance(std::chrono::seconds(200));
  auto third = MustTick(s);  // no answer to the last attempt: failed, and 2/2 > 40 %: halt
  EXPECT_EQ(third.failed, 2);
  ASSERT_EQ(third.actions.size(), 1u);
  EXPECT_EQ(third.actions[0].kind, CampaignAction::kHalt);
  EXPECT_EQ(Get().state, CampaignState::kHalted);
  auto failures = store_->ListJobs(c.id, true, -1, 100);
  ASSERT_TRUE(failures);
  ASSERT_EQ(failures->size(), 2u);
  EXPECT_EQ((*failures)[0].last_error, "no answer after 2 attempts");
  // Halted: nothing more is claimed.
  clock_.Advance(std::chrono::seconds(10000));
  EXPECT_EQ(MustTick(s).claimed, 0);
  auto audit = store_->ReadAudit(1, 100);
  ASSERT_TRUE(audit);
  EXPECT_EQ(audit->back().action, "campaign.halt");
  EXPECT_TRUE(store::VerifyAuditChain(*store_)->intact);
}

TEST_F(SchedulerTest, ConfirmedWaveStartsTheNextAndTheLastEndsTheCampaign) {
  auto c = MakeCampaign(3, 2);
  Scheduler s(*store_, notifier_, clock_, jitter_, {.owner = "a"});
  MustTick(s);
  for (int64_t i = 0; i < 2; ++i) {
    auto job = *store_->GetJob(c.id, i);
    ASSERT_TRUE(store_->Commit(JobTransition(
        c, job, {.to = JobState::kConfirmed, .attempts = 1, .next_attempt_at = kStart}, "test")));
  }
  auto next = MustTick(s);
  ASSERT_EQ(next.actions.size(), 1u);
  EXPECT_EQ(next.actions[0].kind, CampaignAction::kStartWave);
  EXPECT_EQ(Get().current_wave, 1);
  EXPECT_EQ(MustTick(s).notified, 1) << "wave 1's job";
  auto job = *store_->GetJob(c.id, 2);
  ASSERT_TRUE(store_->Commit(JobTransition(
      c, job, {.to = JobState::kConfirmed, .attempts = 1, .next_attempt_at = kStart}, "test")));
  auto last = MustTick(s);
  ASSERT_EQ(last.actions.size(), 1u);
  EXPECT_EQ(last.actions[0].kind, CampaignAction::kDone);
  EXPECT_EQ(Get().state, CampaignState::kDone);
}

TEST_F(SchedulerTest, UnreachableDeviceCountsAFailedAttempt) {
  auto c = MakeCampaign(2, 2);
  notifier_.SetUnreachable({DeviceId(1)});
  Scheduler s(*store_, notifier_, clock_, jitter_, {.owner = "a"});
  auto report = MustTick(s);
  EXPECT_EQ(report.notified, 1);
  EXPECT_EQ(report.retried, 1);
  auto job = store_->GetJob(c.id, 1);
  ASSERT_TRUE(job);
  EXPECT_EQ(job->state, JobState::kPending);
  EXPECT_EQ(job->attempts, 1);
  EXPECT_EQ(job->next_attempt_at, kStart + 100);
  EXPECT_THAT(*job->last_error, ::testing::HasSubstr("not reachable"));
}

// Sees, at each command, how many jobs the store holds as notified.
class ObservingNotifier final : public Notifier {
 public:
  ObservingNotifier(store::Store& store, int64_t campaign_id)
      : store_(store), campaign_id_(campaign_id) {}
  Result<void> Notify(const RotateCommand& command) override {
    auto counts = store_.CountJobs(campaign_id_);
    int64_t notified = 0;
    if (counts) {
      for (const auto& row : *counts) {
        if (row.state == JobState::kNotified) notified += row.n;
      }
    }
    notified_at_send.push_back(notified);
    sent.push_back(command);
    return {};
  }
  std::vector<int64_t> notified_at_send;
  std::vector<RotateCommand> sent;

 private:
  store::Store& store_;
  int64_t campaign_id_;
};

TEST_F(SchedulerTest, RecordsAPassInOneTransactionBeforeSendingAnyCommand) {
  // One transaction (one fsync) for the pass's notifications rather than one per job: when the
  // first command leaves, every job of the pass is already durable as notified.
  auto c = MakeCampaign(6, 6);
  ObservingNotifier observer(*store_, c.id);
  Scheduler s(*store_, observer, clock_, jitter_, {.owner = "a"});
  auto report = MustTick(s);
  EXPECT_EQ(report.notified, 6);
  EXPECT_THAT(observer.notified_at_send, ::testing::Each(6));
  EXPECT_TRUE(store::VerifyAuditChain(*store_)->intact);
}

// Confirms job `ordinal` through another store at its first call: the device answered between
// the pass's claim and its commit.
class AnsweringJitter final : public Jitter {
 public:
  AnsweringJitter(store::Store& other, store::Campaign campaign, int64_t ordinal)
      : other_(other), campaign_(std::move(campaign)), ordinal_(ordinal) {}
  int64_t Below(int64_t) override {
    if (!done_) {
      done_ = true;
      auto job = other_.GetJob(campaign_.id, ordinal_);
      EXPECT_TRUE(job);
      EXPECT_TRUE(other_.Commit(JobTransition(
          campaign_, *job, {.to = JobState::kConfirmed, .attempts = 1, .next_attempt_at = kStart},
          "test")));
    }
    return 0;
  }

 private:
  store::Store& other_;
  store::Campaign campaign_;
  int64_t ordinal_;
  bool done_ = false;
};

TEST_F(SchedulerTest, AJobAnsweredDuringThePassLosesOnlyItsOwnStep) {
  auto c = MakeCampaign(4, 4);
  auto other = Open();
  ASSERT_TRUE(other);
  AnsweringJitter answering(*other, c, 2);
  Scheduler s(*store_, notifier_, clock_, answering, {.owner = "a"});
  auto report = MustTick(s);
  EXPECT_EQ(report.claimed, 4);
  EXPECT_EQ(report.conflicts, 1);
  EXPECT_EQ(report.notified, 3);
  for (const auto& cmd : notifier_.sent()) EXPECT_NE(cmd.job, 2) << "a confirmed job notified";
  EXPECT_EQ(store_->GetJob(c.id, 2)->state, JobState::kConfirmed);
  for (int64_t i : {0, 1, 3}) EXPECT_EQ(store_->GetJob(c.id, i)->state, JobState::kNotified);
  EXPECT_TRUE(store::VerifyAuditChain(*store_)->intact);
}

TEST_F(SchedulerTest, TwoSchedulersOverOneStoreNotifyEachDeviceOnce) {
  MakeCampaign(60, 60);
  auto other = Open();
  ASSERT_TRUE(other);
  Scheduler a(*store_, notifier_, clock_, jitter_, {.owner = "a", .batch = 7});
  Scheduler b(*other, notifier_, clock_, jitter_, {.owner = "b", .batch = 7});
  std::thread ta([&] {
    while (MustTick(a).claimed > 0) {
    }
  });
  std::thread tb([&] {
    while (MustTick(b).claimed > 0) {
    }
  });
  ta.join();
  tb.join();
  std::set<std::string> devices;
  for (const auto& cmd : notifier_.sent()) {
    EXPECT_TRUE(devices.insert(cmd.device_id).second) << "notified twice: " << cmd.device_id;
  }
  EXPECT_EQ(devices.size(), 60u);
}

}  // namespace
}  // namespace iotpki::campaign
