#include "iotpki/campaign/waves.h"

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>
#include <utility>

namespace iotpki::campaign {

using store::Campaign;
using store::CampaignState;
using store::Job;
using store::JobState;

int64_t WaveCounts::total() const {
  int64_t sum = 0;
  for (int64_t x : n) sum += x;
  return sum;
}

int64_t WaveCounts::unfinished() const {
  return of(JobState::kPending) + of(JobState::kNotified) + of(JobState::kEnrolled);
}

std::vector<WaveCounts> ByWave(const std::vector<store::Store::WaveStateCount>& rows,
                               int64_t waves) {
  std::vector<WaveCounts> out(static_cast<size_t>(std::max<int64_t>(waves, 0)));
  for (const auto& row : rows) {
    if (row.wave < 0 || row.wave >= waves) continue;
    out[static_cast<size_t>(row.wave)].n[static_cast<size_t>(row.state)] += row.n;
  }
  return out;
}

WaveCounts Sum(const std::vector<WaveCounts>& waves) {
  WaveCounts sum;
  for (const auto& w : waves) {
    for (size_t i = 0; i < sum.n.size(); ++i) sum.n[i] += w.n[i];
  }
  return sum;
}

double FailureRate(const WaveCounts& wave) {
  int64_t total = wave.total();
  return total == 0 ? 0.0
                    : static_cast<double>(wave.of(JobState::kFailed)) / static_cast<double>(total);
}

double MaxFailureRate(const Campaign& campaign) {
  return static_cast<double>(campaign.spec.max_failure_ppm) / 1e6;
}

int64_t WaveTimeout(const Campaign& campaign) {
  int64_t left = std::max<int64_t>(campaign.waves - campaign.current_wave, 1);
  return std::max<int64_t>((campaign.spec.deadline - campaign.wave_started_at) / left, 1);
}

std::string HaltOverride(int64_t wave) {
  return "resumed after a halt in wave " + std::to_string(wave);
}

CampaignAction NextCampaignAction(const Campaign& campaign, const std::vector<WaveCounts>& waves,
                                  int64_t now) {
  if (campaign.state != CampaignState::kRunning) return {};
  WaveCounts current;
  if (campaign.current_wave >= 0 && campaign.current_wave < static_cast<int64_t>(waves.size())) {
    current = waves[static_cast<size_t>(campaign.current_wave)];
  }
  // Integers, so that a rate exactly at the threshold does not halt through rounding.
  int64_t failed = current.of(JobState::kFailed);
  bool overridden = campaign.state_reason == HaltOverride(campaign.current_wave);
  if (!overridden && current.total() > 0 &&
      failed * 1000000 > campaign.spec.max_failure_ppm * current.total()) {
    return {CampaignAction::kHalt, campaign.current_wave,
            "wave " + std::to_string(campaign.current_wave) + ": " + std::to_string(failed) +
                " of " + std::to_string(current.total()) +
                " jobs failed, above the maximum failure rate"};
  }
  if (now >= campaign.spec.deadline) {
    return {CampaignAction::kDone, campaign.current_wave, "deadline passed"};
  }
  bool last_wave = campaign.current_wave + 1 >= campaign.waves;
  if (last_wave && Sum(waves).unfinished() == 0) {
    return {CampaignAction::kDone, campaign.current_wave, "every job finished"};
  }
  if (last_wave) return {};
  if (current.unfinished() == 0) {
    return {CampaignAction::kStartWave, campaign.current_wave + 1,
            "wave " + std::to_string(campaign.current_wave) + " finished"};
  }
  if (now >= campaign.wave_started_at + WaveTimeout(campaign)) {
    return {CampaignAction::kStartWave, campaign.current_wave + 1,
            "wave " + std::to_string(campaign.current_wave) + " timed out"};
  }
  return {};
}

RandomJitter::RandomJitter() : rng_(std::random_device()()) {}

int64_t RandomJitter::Below(int64_t bound) {
  if (bound <= 0) return 0;
  std::lock_guard<std::mutex> lock(mu_);
  return std::uniform_int_distribution<int64_t>(0, bound - 1)(rng_);
}

int64_t RetryDelay(int64_t retry_after, int64_t attempts, Jitter& jitter) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max() / 4;
  int64_t delay = std::max<int64_t>(retry_after, 1);
  for (int64_t i = 1; i < attempts && delay < kMax; ++i) delay *= 2;
  delay = std::min(delay, kMax);
  return delay + jitter.Below(delay / 2 + 1);
}

namespace {

int64_t SaturatingAdd(int64_t a, int64_t b) {
  return a > std::numeric_limits<int64_t>::max() - b ? std::numeric_limits<int64_t>::max() : a + b;
}

JobStep Notify(const Campaign& campaign, const Job& job, int64_t now, Jitter& jitter) {
  int64_t attempts = job.attempts + 1;
  return JobStep{.to = JobState::kNotified,
                 .attempts = attempts,
                 .next_attempt_at =
                     SaturatingAdd(now, RetryDelay(campaign.spec.retry_after, attempts, jitter))};
}

}  // namespace

JobStep StepForDueJob(const Campaign& campaign, const Job& job, int64_t now, Jitter& jitter) {
  if (job.state == JobState::kPending) return Notify(campaign, job, now, jitter);
  if (job.attempts >= campaign.spec.max_attempts) {
    return JobStep{.to = JobState::kFailed,
                   .attempts = job.attempts,
                   .next_attempt_at = job.next_attempt_at,
                   .error = "no answer after " + std::to_string(job.attempts) + " attempts"};
  }
  JobStep again = Notify(campaign, job, now, jitter);
  again.error = "no answer to attempt " + std::to_string(job.attempts);
  return again;
}

JobStep StepForFailure(const Campaign& campaign, const Job& job, std::string error, int64_t now,
                       Jitter& jitter) {
  if (job.attempts >= campaign.spec.max_attempts) {
    return JobStep{.to = JobState::kFailed,
                   .attempts = job.attempts,
                   .next_attempt_at = job.next_attempt_at,
                   .error = std::move(error)};
  }
  return JobStep{
      .to = JobState::kPending,
      .attempts = job.attempts,
      .next_attempt_at = SaturatingAdd(
          now, RetryDelay(campaign.spec.retry_after, std::max<int64_t>(job.attempts, 1), jitter)),
      .error = std::move(error)};
}

store::WriteBatch JobTransition(const Campaign& campaign, const Job& job, const JobStep& step,
                                std::string_view actor) {
  store::UpdateJobOp op{.campaign_id = campaign.id,
                        .ordinal = job.ordinal,
                        .from = job.state,
                        .to = step.to,
                        .attempts = step.attempts,
                        .next_attempt_at = step.next_attempt_at};
  if (!step.error.empty()) op.last_error = step.error;
  if (!step.new_serial.empty()) op.new_serial = step.new_serial;
  nlohmann::json details = {{"campaign", campaign.spec.name},
                            {"job", job.ordinal},
                            {"from", store::JobStateName(job.state)},
                            {"attempts", step.attempts}};
  if (!step.error.empty()) details["error"] = step.error;
  if (!step.new_serial.empty()) details["new_serial"] = step.new_serial;
  store::WriteBatch batch;
  batch.UpdateJob(std::move(op));
  batch.AppendAudit({std::string(actor),
                     "campaign.job." + std::string(store::JobStateName(step.to)), job.device_id,
                     details.dump()});
  return batch;
}

Result<store::WriteBatch> CampaignTransition(const Campaign& campaign, std::string_view verb,
                                             std::string_view reason, std::string_view actor) {
  struct Rule {
    std::string_view verb;
    std::vector<CampaignState> from;
    CampaignState to;
  };
  static const std::vector<Rule> kRules = {
      {"pause", {CampaignState::kRunning}, CampaignState::kPaused},
      {"resume", {CampaignState::kPaused, CampaignState::kHalted}, CampaignState::kRunning},
      {"cancel",
       {CampaignState::kRunning, CampaignState::kPaused, CampaignState::kHalted},
       CampaignState::kCancelled},
      {"halt", {CampaignState::kRunning}, CampaignState::kHalted},
      {"done", {CampaignState::kRunning}, CampaignState::kDone},
      {"wave", {CampaignState::kRunning}, CampaignState::kRunning},
  };
  auto rule =
      std::find_if(kRules.begin(), kRules.end(), [&](const Rule& r) { return r.verb == verb; });
  if (rule == kRules.end()) {
    return Fail(Code::kInvalidArgument, "unknown campaign transition '" + std::string(verb) + "'");
  }
  if (std::find(rule->from.begin(), rule->from.end(), campaign.state) == rule->from.end()) {
    std::string allowed;
    for (CampaignState s : rule->from) {
      allowed += (allowed.empty() ? "" : " or ") + std::string(store::CampaignStateName(s));
    }
    return Fail(Code::kFailedPrecondition,
                "campaign " + campaign.spec.name + " is " +
                    std::string(store::CampaignStateName(campaign.state)) + "; " +
                    std::string(verb) + " needs it " + allowed);
  }
  store::UpdateCampaignOp op{
      .campaign_id = campaign.id,
      .from = campaign.state,
      .to = rule->to,
      .reason = rule->to == CampaignState::kHalted ? std::string(reason) : std::string()};
  if (verb == "resume" && campaign.state == CampaignState::kHalted) {
    op.reason = HaltOverride(campaign.current_wave);
  }
  nlohmann::json details = {{"from", store::CampaignStateName(campaign.state)},
                            {"to", store::CampaignStateName(rule->to)}};
  if (verb == "wave") {
    op.start_wave = campaign.current_wave + 1;
    details["wave"] = *op.start_wave;
  }
  if (!reason.empty()) details["reason"] = std::string(reason);
  store::WriteBatch batch;
  batch.UpdateCampaign(std::move(op));
  batch.AppendAudit(
      {std::string(actor), "campaign." + std::string(verb), campaign.spec.name, details.dump()});
  return batch;
}

Result<store::WriteBatch> ActionTransition(const Campaign& campaign, const CampaignAction& action,
                                           std::string_view actor) {
  switch (action.kind) {
    case CampaignAction::kNone:
      return store::WriteBatch();
    case CampaignAction::kStartWave:
      return CampaignTransition(campaign, "wave", action.reason, actor);
    case CampaignAction::kHalt:
      return CampaignTransition(campaign, "halt", action.reason, actor);
    case CampaignAction::kDone:
      return CampaignTransition(campaign, "done", action.reason, actor);
  }
  return Fail(Code::kInternal, "unknown campaign action");
}

}  // namespace iotpki::campaign
