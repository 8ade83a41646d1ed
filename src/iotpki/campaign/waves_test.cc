#include "iotpki/campaign/waves.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>

namespace iotpki::campaign {
namespace {

using store::Campaign;
using store::CampaignState;
using store::Job;
using store::JobState;
using ::testing::HasSubstr;

constexpr int64_t kStart = 1'750'000'000;

// Always the same value below the bound (or 0), so that a delay is known exactly.
class FixedJitter final : public Jitter {
 public:
  explicit FixedJitter(int64_t value) : value_(value) {}
  int64_t Below(int64_t bound) override {
    last_bound = bound;
    return bound <= 0 ? 0 : std::min(value_, bound - 1);
  }
  int64_t last_bound = -1;

 private:
  int64_t value_;
};

Campaign MakeCampaign(int64_t waves = 3) {
  Campaign c;
  c.id = 7;
  c.spec.name = "q3";
  c.spec.wave_size = 10;
  c.spec.max_failure_ppm = 100000;  // 10 %
  c.spec.retry_after = 3600;
  c.spec.max_attempts = 3;
  c.spec.deadline = kStart + 30 * 3600;
  c.state = CampaignState::kRunning;
  c.jobs = waves * 10;
  c.waves = waves;
  c.current_wave = 0;
  c.wave_started_at = kStart;
  c.created_at = kStart;
  return c;
}

WaveCounts Wave(int64_t pending, int64_t notified, int64_t enrolled, int64_t confirmed,
                int64_t failed) {
  WaveCounts w;
  w.n = {pending, notified, enrolled, confirmed, failed};
  return w;
}

TEST(WaveCounts, FoldsStoreRowsPerWave) {
  std::vector<store::Store::WaveStateCount> rows = {
      {0, JobState::kConfirmed, 8}, {0, JobState::kFailed, 2}, {1, JobState::kPending, 10}};
  auto waves = ByWave(rows, 3);
  ASSERT_EQ(waves.size(), 3u);
  EXPECT_EQ(waves[0], Wave(0, 0, 0, 8, 2));
  EXPECT_EQ(waves[1].unfinished(), 10);
  EXPECT_EQ(waves[2].total(), 0);
  EXPECT_EQ(Sum(waves).total(), 20);
  EXPECT_DOUBLE_EQ(FailureRate(waves[0]), 0.2);
  EXPECT_DOUBLE_EQ(FailureRate(waves[2]), 0.0);
}

TEST(NextCampaignAction, WaitsWhileTheWaveRuns) {
  Campaign c = MakeCampaign();
  auto action = NextCampaignAction(c, {Wave(5, 5, 0, 0, 0), Wave(10, 0, 0, 0, 0), {}}, kStart + 60);
  EXPECT_EQ(action.kind, CampaignAction::kNone);
}

TEST(NextCampaignAction, StartsTheNextWaveWhenTheCurrentIsFinished) {
  Campaign c = MakeCampaign();
  auto action = NextCampaignAction(c, {Wave(0, 0, 0, 9, 1), Wave(10, 0, 0, 0, 0), {}}, kStart + 60);
  EXPECT_EQ(action.kind, CampaignAction::kStartWave);
  EXPECT_EQ(action.wave, 1);
  EXPECT_THAT(action.reason, HasSubstr("finished"));
}

TEST(NextCampaignAction, StartsTheNextWaveWhenTheCurrentTimesOut) {
  Campaign c = MakeCampaign();
  // 30 h to the deadline over 3 waves: 10 h each.
  EXPECT_EQ(WaveTimeout(c), 10 * 3600);
  std::vector<WaveCounts> waves = {Wave(0, 4, 0, 6, 0), Wave(10, 0, 0, 0, 0), {}};
  EXPECT_EQ(NextCampaignAction(c, waves, kStart + 10 * 3600 - 1).kind, CampaignAction::kNone);
  auto action = NextCampaignAction(c, waves, kStart + 10 * 3600);
  EXPECT_EQ(action.kind, CampaignAction::kStartWave);
  EXPECT_THAT(action.reason, HasSubstr("timed out"));
}

TEST(NextCampaignAction, HaltsAboveTheFailureRateButNotAtIt) {
  Campaign c = MakeCampaign();
  // 1 of 10 is exactly 10 %: not above.
  EXPECT_EQ(NextCampaignAction(c, {Wave(0, 0, 0, 9, 1), Wave(10, 0, 0, 0, 0), {}}, kStart).kind,
            CampaignAction::kStartWave);
  auto action = NextCampaignAction(c, {Wave(3, 3, 0, 2, 2), Wave(10, 0, 0, 0, 0), {}}, kStart);
  EXPECT_EQ(action.kind, CampaignAction::kHalt);
  EXPECT_THAT(action.reason, HasSubstr("2 of 10"));
  // A person resumed it after that halt: this wave no longer halts it.
  c.state_reason = HaltOverride(0);
  EXPECT_EQ(NextCampaignAction(c, {Wave(3, 3, 0, 2, 2), Wave(10, 0, 0, 0, 0), {}}, kStart).kind,
            CampaignAction::kNone);
}

TEST(NextCampaignAction, DoneWhenEveryJobIsFinishedOrAtTheDeadline) {
  Campaign c = MakeCampaign(2);
  c.current_wave = 1;
  EXPECT_EQ(NextCampaignAction(c, {Wave(0, 0, 0, 10, 0), Wave(0, 1, 0, 9, 0)}, kStart).kind,
            CampaignAction::kNone)
      << "the last wave has an unfinished job";
  EXPECT_EQ(NextCampaignAction(c, {Wave(0, 0, 0, 10, 0), Wave(0, 0, 0, 10, 0)}, kStart).kind,
            CampaignAction::kDone);
  // A timed-out earlier wave still running keeps the campaign open.
  EXPECT_EQ(NextCampaignAction(c, {Wave(1, 0, 0, 9, 0), Wave(0, 0, 0, 10, 0)}, kStart).kind,
            CampaignAction::kNone);
  auto late = NextCampaignAction(c, {Wave(1, 0, 0, 9, 0), Wave(0, 1, 0, 9, 0)}, c.spec.deadline);
  EXPECT_EQ(late.kind, CampaignAction::kDone);
  EXPECT_THAT(late.reason, HasSubstr("deadline"));
}

TEST(NextCampaignAction, OnlyRunningCampaignsAct) {
  for (auto state : {CampaignState::kPaused, CampaignState::kHalted, CampaignState::kCancelled,
                     CampaignState::kDone}) {
    Campaign c = MakeCampaign();
    c.state = state;
    EXPECT_EQ(NextCampaignAction(c, {Wave(0, 0, 0, 0, 10), {}, {}}, c.spec.deadline).kind,
              CampaignAction::kNone);
  }
}

TEST(RetryDelay, DoublesPerAttemptWithBoundedJitter) {
  FixedJitter none(0);
  EXPECT_EQ(RetryDelay(3600, 1, none), 3600);
  EXPECT_EQ(RetryDelay(3600, 2, none), 7200);
  EXPECT_EQ(RetryDelay(3600, 4, none), 28800);
  FixedJitter most(1'000'000'000);
  EXPECT_EQ(RetryDelay(3600, 1, most), 3600 + 1800);
  EXPECT_EQ(most.last_bound, 1801) << "jitter up to half the delay";
  EXPECT_GT(RetryDelay(3600, 200, none), 0) << "saturates, no overflow";
}

TEST(RetryDelay, RandomJitterStaysInItsRange) {
  RandomJitter jitter;
  for (int i = 0; i < 1000; ++i) {
    int64_t d = RetryDelay(100, 2, jitter);
    EXPECT_GE(d, 200);
    EXPECT_LE(d, 300);
  }
}

Job MakeJob(JobState state, int64_t attempts) {
  Job j;
  j.campaign_id = 7;
  j.ordinal = 4;
  j.device_id = std::string(64, 'a');
  j.state = state;
  j.attempts = attempts;
  j.next_attempt_at = kStart;
  return j;
}

TEST(JobSteps, PendingIsNotifiedAndAwaitedForTheRetryDelay) {
  FixedJitter jitter(10);
  auto step = StepForDueJob(MakeCampaign(), MakeJob(JobState::kPending, 0), kStart, jitter);
  EXPECT_EQ(
      step,
      (JobStep{.to = JobState::kNotified, .attempts = 1, .next_attempt_at = kStart + 3600 + 10}));
  auto second = StepForDueJob(MakeCampaign(), MakeJob(JobState::kPending, 1), kStart, jitter);
  EXPECT_EQ(second.attempts, 2);
  EXPECT_EQ(second.next_attempt_at, kStart + 7200 + 10);
}

TEST(JobSteps, NoAnswerIsRetriedThenFailedAfterTheLastAttempt) {
  FixedJitter jitter(0);
  Campaign c = MakeCampaign();
  auto retry = StepForDueJob(c, MakeJob(JobState::kNotified, 1), kStart, jitter);
  EXPECT_EQ(retry.to, JobState::kNotified);
  EXPECT_EQ(retry.attempts, 2);
  EXPECT_EQ(retry.next_attempt_at, kStart + 7200);
  EXPECT_THAT(retry.error, HasSubstr("no answer"));
  auto failed = StepForDueJob(c, MakeJob(JobState::kEnrolled, 3), kStart, jitter);
  EXPECT_EQ(failed.to, JobState::kFailed);
  EXPECT_EQ(failed.attempts, 3);
  EXPECT_THAT(failed.error, HasSubstr("after 3 attempts"));
}

TEST(JobSteps, ReportedFailureWaitsThenFailsAtMaxAttempts) {
  FixedJitter jitter(0);
  Campaign c = MakeCampaign();
  auto retry = StepForFailure(c, MakeJob(JobState::kNotified, 2), "install failed", kStart, jitter);
  EXPECT_EQ(retry, (JobStep{.to = JobState::kPending,
                            .attempts = 2,
                            .next_attempt_at = kStart + 7200,
                            .error = "install failed"}));
  auto failed =
      StepForFailure(c, MakeJob(JobState::kNotified, 3), "install failed", kStart, jitter);
  EXPECT_EQ(failed.to, JobState::kFailed);
}

TEST(Transitions, JobTransitionIsACompareAndSetWithItsAuditRow) {
  Campaign c = MakeCampaign();
  Job job = MakeJob(JobState::kNotified, 1);
  auto batch = JobTransition(c, job,
                             JobStep{.to = JobState::kEnrolled,
                                     .attempts = 1,
                                     .next_attempt_at = kStart + 10,
                                     .new_serial = "0abc"},
                             "server");
  ASSERT_EQ(batch.size(), 2u);
  const auto& op = std::get<store::UpdateJobOp>(batch.ops()[0]);
  EXPECT_EQ(op.campaign_id, 7);
  EXPECT_EQ(op.ordinal, 4);
  EXPECT_EQ(op.from, JobState::kNotified);
  EXPECT_EQ(op.to, JobState::kEnrolled);
  EXPECT_EQ(op.new_serial, "0abc");
  EXPECT_EQ(op.last_error, std::nullopt);
  const auto& audit = std::get<store::AppendAuditOp>(batch.ops()[1]).event;
  EXPECT_EQ(audit.action, "campaign.job.enrolled");
  EXPECT_EQ(audit.subject, job.device_id);
  auto details = nlohmann::json::parse(audit.details);
  EXPECT_EQ(details["campaign"], "q3");
  EXPECT_EQ(details["new_serial"], "0abc");
}

TEST(Transitions, CampaignVerbsFollowTheStateMachine) {
  Campaign c = MakeCampaign();
  auto pause = CampaignTransition(c, "pause", "", "cli:alice");
  ASSERT_TRUE(pause);
  const auto& op = std::get<store::UpdateCampaignOp>(pause->ops()[0]);
  EXPECT_EQ(op.from, CampaignState::kRunning);
  EXPECT_EQ(op.to, CampaignState::kPaused);
  EXPECT_EQ(std::get<store::AppendAuditOp>(pause->ops()[1]).event.action, "campaign.pause");

  auto resume_running = CampaignTransition(c, "resume", "", "cli:alice");
  ASSERT_FALSE(resume_running);
  EXPECT_EQ(resume_running.error().code(), Code::kFailedPrecondition);
  EXPECT_THAT(resume_running.error().message(), HasSubstr("paused or halted"));

  c.state = CampaignState::kHalted;
  auto resume = CampaignTransition(c, "resume", "", "cli:alice");
  ASSERT_TRUE(resume);
  EXPECT_EQ(std::get<store::UpdateCampaignOp>(resume->ops()[0]).reason, HaltOverride(0));
  EXPECT_TRUE(CampaignTransition(c, "cancel", "", "cli:alice"));
  c.state = CampaignState::kCancelled;
  EXPECT_FALSE(CampaignTransition(c, "cancel", "", "cli:alice"));
  EXPECT_FALSE(CampaignTransition(c, "explode", "", "cli:alice"));

  c.state = CampaignState::kRunning;
  auto wave = ActionTransition(c, {CampaignAction::kStartWave, 1, "wave 0 finished"}, "server");
  ASSERT_TRUE(wave);
  EXPECT_EQ(std::get<store::UpdateCampaignOp>(wave->ops()[0]).start_wave, 1);
  EXPECT_EQ(std::get<store::AppendAuditOp>(wave->ops()[1]).event.action, "campaign.wave");
  auto halt = ActionTransition(c, {CampaignAction::kHalt, 0, "too many"}, "server");
  ASSERT_TRUE(halt);
  EXPECT_EQ(std::get<store::UpdateCampaignOp>(halt->ops()[0]).reason, "too many");
  EXPECT_TRUE(ActionTransition(c, {}, "server")->empty());
}

}  // namespace
}  // namespace iotpki::campaign
