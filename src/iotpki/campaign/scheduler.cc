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

Result<std::vector<bool>> Scheduler::CommitSteps(const std::vector<Planned>& steps,
                                                 TickReport& report) {
  std::vector<bool> committed(steps.size(), false);
  if (steps.empty()) return committed;
  // One transaction, one fsync, for the whole pass. A compare-and-set lost by one job (the
  // device answered meanwhile, say) aborts it: then each step alone, and only the overtaken ones
  // are dropped (their writer's step stands).
  store::WriteBatch all;
  for (const Planned& p : steps) all.Append(JobTransition(*p.campaign, p.job, p.step, actor_));
  auto merged = store_.Commit(all);
  if (merged) {
    committed.assign(steps.size(), true);
  } else if (merged.error().code() != Code::kAborted) {
    return Fail(std::move(merged).error());
  } else {
    for (size_t i = 0; i < steps.size(); ++i) {
      const Planned& p = steps[i];
      auto one = store_.Commit(JobTransition(*p.campaign, p.job, p.step, actor_));
      if (!one && one.error().code() == Code::kAborted) {
        ++report.conflicts;
        continue;
      }
      if (!one) return Fail(std::move(one).error());
      committed[i] = true;
    }
  }
  for (size_t i = 0; i < steps.size(); ++i) {
    if (committed[i] && steps[i].step.to == JobState::kFailed) ++report.failed;
  }
  return committed;
}

Result<void> Scheduler::StepJobs(const std::map<int64_t, Campaign>& campaigns,
                                 const std::vector<Job>& jobs, int64_t now, TickReport& report) {
  std::vector<Planned> steps;
  steps.reserve(jobs.size());
  for (const Job& job : jobs) {
    auto c = campaigns.find(job.campaign_id);
    if (c == campaigns.end()) continue;  // Cannot happen: jobs reference their campaign.
    steps.push_back({&c->second, job, StepForDueJob(c->second, job, now, jitter_)});
  }
  // Recorded before they are sent: a crash between the two leaves jobs that look notified and
  // are retried when their wait ends, never a device notified twice within its retry delay.
  IOTPKI_TRY(std::vector<bool> committed, CommitSteps(steps, report));
  std::vector<Planned> failures;
  for (size_t i = 0; i < steps.size(); ++i) {
    const Planned& p = steps[i];
    if (!committed[i] || p.step.to != JobState::kNotified) continue;
    if (p.job.state != JobState::kPending) ++report.retried;
    auto sent = notifier_.Notify({.campaign = p.campaign->spec.name,
                                  .job = p.job.ordinal,
                                  .device_id = p.job.device_id,
                                  .mode = p.campaign->spec.mode,
                                  .attempt = p.step.attempts,
                                  .answer_by = p.step.next_attempt_at});
    if (sent) {
      ++report.notified;
      continue;
    }
    Job notified = p.job;
    notified.state = JobState::kNotified;
    notified.attempts = p.step.attempts;
    notified.next_attempt_at = p.step.next_attempt_at;
    JobStep failure =
        StepForFailure(*p.campaign, notified, "notify: " + sent.error().message(), now, jitter_);
    if (failure.to != JobState::kFailed) ++report.retried;
    failures.push_back({p.campaign, std::move(notified), std::move(failure)});
  }
  auto recorded = CommitSteps(failures, report);
  if (!recorded) return Fail(std::move(recorded).error());
  return {};
}

Result<TickReport> Scheduler::Tick() {
  TickReport report;
  int64_t now = clock_.NowUnix();
  IOTPKI_TRY(auto jobs, store_.ClaimJobs(options_.owner, now, options_.lease, options_.batch));
  report.claimed = static_cast<int64_t>(jobs.size());
  IOTPKI_TRY(auto campaigns, store_.ListCampaigns());
  std::map<int64_t, Campaign> by_id;
  for (auto& c : campaigns) by_id.emplace(c.id, c);
  IOTPKI_CHECK(StepJobs(by_id, jobs, now, report));
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
