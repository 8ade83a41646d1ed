#include "iotpki/campaign/scheduler.h"

#include <map>
#include <utility>

namespace iotpki::campaign {

using store::Campaign;
using store::CampaignState;
using store::Job;
using store::JobState;

Result<void> InMemoryNotifier::Notify(const RotateCommand& command) {
  std::lock_guard<std::mutex> lock(mu_);
  if (unreachable_.count(command.device_id) != 0) {
    return Fail(Code::kUnavailable, "device " + command.device_id + " is not reachable");
  }
  sent_.push_back(command);
  return {};
}

std::vector<RotateCommand> InMemoryNotifier::sent() const {
  std::lock_guard<std::mutex> lock(mu_);
  return sent_;
}

void InMemoryNotifier::SetUnreachable(std::set<std::string> device_ids) {
  std::lock_guard<std::mutex> lock(mu_);
  unreachable_ = std::move(device_ids);
}

Scheduler::Scheduler(store::Store& store, Notifier& notifier, const Clock& clock, Jitter& jitter,
                     SchedulerOptions options)
    : store_(store),
      notifier_(notifier),
      clock_(clock),
      jitter_(jitter),
      options_(std::move(options)),
      actor_("server:" + options_.owner) {}

Scheduler::~Scheduler() { Stop(); }

Result<void> Scheduler::CommitStep(const Campaign& campaign, const Job& job, const JobStep& step,
                                   TickReport& report) {
  auto committed = store_.Commit(JobTransition(campaign, job, step, actor_));
  if (!committed && committed.error().code() == Code::kAborted) {
    // Another writer moved the job on (the device answered meanwhile, say): its step stands.
    ++report.conflicts;
    return {};
  }
  if (!committed) return Fail(std::move(committed).error());
  if (step.to == JobState::kFailed) ++report.failed;
  return {};
}

Result<void> Scheduler::StepJob(const Campaign& campaign, const Job& job, int64_t now,
                                TickReport& report) {
  JobStep step = StepForDueJob(campaign, job, now, jitter_);
  if (step.to != JobState::kNotified) return CommitStep(campaign, job, step, report);
  if (job.state != JobState::kPending) ++report.retried;
  // Recorded before it is sent: a crash between the two leaves a job that looks notified and
  // is retried when its wait ends, never a device notified twice within its retry delay.
  int64_t conflicts = report.conflicts;
  IOTPKI_CHECK(CommitStep(campaign, job, step, report));
  if (report.conflicts != conflicts) return {};
  auto sent = notifier_.Notify({.campaign = campaign.spec.name,
                                .job = job.ordinal,
                                .device_id = job.device_id,
                                .mode = campaign.spec.mode,
                                .attempt = step.attempts,
                                .answer_by = step.next_attempt_at});
  if (sent) {
    ++report.notified;
    return {};
  }
  Job notified = job;
  notified.state = JobState::kNotified;
  notified.attempts = step.attempts;
  notified.next_attempt_at = step.next_attempt_at;
  JobStep failure =
      StepForFailure(campaign, notified, "notify: " + sent.error().message(), now, jitter_);
  if (failure.to != JobState::kFailed) ++report.retried;
  return CommitStep(campaign, notified, failure, report);
}

Result<TickReport> Scheduler::Tick() {
  TickReport report;
  int64_t now = clock_.NowUnix();
  IOTPKI_TRY(auto jobs, store_.ClaimJobs(options_.owner, now, options_.lease, options_.batch));
  report.claimed = static_cast<int64_t>(jobs.size());
  IOTPKI_TRY(auto campaigns, store_.ListCampaigns());
  std::map<int64_t, Campaign> by_id;
  for (auto& c : campaigns) by_id.emplace(c.id, c);
  for (const Job& job : jobs) {
    auto c = by_id.find(job.campaign_id);
    if (c == by_id.end()) continue;  // Cannot happen: jobs reference their campaign.
    IOTPKI_CHECK(StepJob(c->second, job, now, report));
  }
  // Campaign actions read the counts after this pass's steps.
  for (const auto& [id, listed] : by_id) {
    if (listed.state != CampaignState::kRunning) continue;
    IOTPKI_TRY(Campaign c, store_.GetCampaign(listed.spec.name));
    IOTPKI_TRY(auto rows, store_.CountJobs(c.id));
    CampaignAction action = NextCampaignAction(c, ByWave(rows, c.waves), now);
    if (action.kind == CampaignAction::kNone) continue;
    IOTPKI_TRY(auto batch, ActionTransition(c, action, actor_));
    auto committed = store_.Commit(batch);
    if (!committed && committed.error().code() == Code::kAborted) {
      ++report.conflicts;  // Another server or a person changed it first.
      continue;
    }
    if (!committed) return Fail(std::move(committed).error());
    report.actions.push_back(std::move(action));
  }
  return report;
}

void Scheduler::Start(std::function<void(const Error&)> on_error,
                      std::function<void(const TickReport&)> on_pass) {
  Stop();
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = false;
  }
  thread_ = std::thread([this, on_error = std::move(on_error), on_pass = std::move(on_pass)] {
    for (;;) {
      auto report = Tick();
      if (!report && on_error) on_error(report.error());
      if (report && on_pass) on_pass(*report);
      bool busy = report && report->claimed >= static_cast<int64_t>(options_.batch);
      std::unique_lock<std::mutex> lock(mu_);
      if (!busy) wake_.wait_for(lock, options_.interval, [this] { return stop_; });
      if (stop_) return;
    }
  });
}

void Scheduler::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

}  // namespace iotpki::campaign
