// The rules of a rotation campaign (docs/rotation.md), as pure functions: given a campaign, its
// job counts and the time, what happens next; given a job and what became of it, its next
// state. No I/O: the clock's reading and the jitter are passed in, and the results are values
// (or WriteBatches) that a caller commits. The scheduler inside `iotpki serve` and the CLI are
// the callers.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "iotpki/store/store.h"

namespace iotpki::campaign {

// Jobs of one wave (or of a whole campaign) per state.
struct WaveCounts {
  std::array<int64_t, store::kJobStateCount> n{};

  int64_t of(store::JobState state) const { return n[static_cast<size_t>(state)]; }
  int64_t total() const;
  // pending + notified + enrolled: jobs that may still change.
  int64_t unfinished() const;

  bool operator==(const WaveCounts&) const = default;
};

// CountJobs' rows folded into one WaveCounts per wave (index = wave, `waves` entries).
std::vector<WaveCounts> ByWave(const std::vector<store::Store::WaveStateCount>& rows,
                               int64_t waves);
WaveCounts Sum(const std::vector<WaveCounts>& waves);

// failed / total of the wave; 0 for an empty one.
double FailureRate(const WaveCounts& wave);
// max_failure_ppm as a fraction.
double MaxFailureRate(const store::Campaign& campaign);

// How long the current wave runs before the next starts even if some of its jobs are still
// unfinished: the time left until the deadline, shared evenly among the waves left (at least
// one second). Its unfinished jobs carry on; only the next wave stops waiting for them.
int64_t WaveTimeout(const store::Campaign& campaign);

struct CampaignAction {
  enum Kind { kNone, kStartWave, kHalt, kDone };
  Kind kind = kNone;
  int64_t wave = 0;    // kStartWave: the wave to start.
  std::string reason;  // For people and the audit row.

  bool operator==(const CampaignAction&) const = default;
};

// The state_reason of a campaign resumed by a person after a halt in `wave`: that wave's failure
// rate no longer halts it (the next wave's does).
std::string HaltOverride(int64_t wave);

// What a running campaign does next (kNone for any other state), in this order:
//   halt        the current wave's failure rate is above max_failure_rate (unless a person
//               resumed the campaign after a halt in this wave);
//   done        the deadline has passed, or every job of every wave is finished;
//   start wave  the current wave is finished, or ran for WaveTimeout, and waves are left.
CampaignAction NextCampaignAction(const store::Campaign& campaign,
                                  const std::vector<WaveCounts>& waves, int64_t now);

// Uniform random integers for the retry jitter; injected so that tests fix it.
class Jitter {
 public:
  virtual ~Jitter() = default;
  // Uniform in [0, bound); 0 when bound <= 0.
  virtual int64_t Below(int64_t bound) = 0;
};

// std::mt19937_64 seeded from std::random_device. Thread-safe.
class RandomJitter final : public Jitter {
 public:
  RandomJitter();
  int64_t Below(int64_t bound) override;

 private:
  std::mutex mu_;
  std::mt19937_64 rng_;  // Guarded by mu_.
};

// The wait after attempt number `attempts` (1-based): retry_after * 2^(attempts - 1), plus a
// jitter of up to half of that, so that a wave that failed together does not retry together.
// Never below the un-jittered delay; saturates instead of overflowing.
int64_t RetryDelay(int64_t retry_after, int64_t attempts, Jitter& jitter);

// What becomes of a job. `to` with the fields UpdateJobOp sets.
struct JobStep {
  store::JobState to = store::JobState::kPending;
  int64_t attempts = 0;
  int64_t next_attempt_at = 0;
  std::string error;  // Empty: none.
  std::string new_serial;

  bool operator==(const JobStep&) const = default;
};

// A job the scheduler claimed (it is due):
//   pending              notify it: notified, attempts + 1, answer awaited for RetryDelay;
//   notified / enrolled  the wait ended without a confirmation: a failed attempt ("no answer"),
//                        then notified again at once, or failed after the last attempt.
JobStep StepForDueJob(const store::Campaign& campaign, const store::Job& job, int64_t now,
                      Jitter& jitter);
// The device reported a failure (its install failed, say): pending until RetryDelay has passed,
// or failed after the last attempt.
JobStep StepForFailure(const store::Campaign& campaign, const store::Job& job, std::string error,
                       int64_t now, Jitter& jitter);

// The job's UpdateJobOp (compare-and-set on its current state) and its audit row
// "campaign.job.<state>", subject the device id.
store::WriteBatch JobTransition(const store::Campaign& campaign, const store::Job& job,
                                const JobStep& step, std::string_view actor);

// A campaign's UpdateCampaignOp and its audit row "campaign.<verb>" (pause, resume, cancel,
// halt, done, wave), subject the campaign's name. InvalidArgument naming the states it may come
// from if `verb` is not allowed in the campaign's state:
//   pause   running -> paused          resume  paused | halted -> running
//   cancel  running | paused | halted -> cancelled
//   halt    running -> halted          done    running -> done
//   wave    running -> running, the next wave started (start_wave)
Result<store::WriteBatch> CampaignTransition(const store::Campaign& campaign, std::string_view verb,
                                             std::string_view reason, std::string_view actor);
// The same for a CampaignAction (kNone: an empty batch).
Result<store::WriteBatch> ActionTransition(const store::Campaign& campaign,
                                           const CampaignAction& action, std::string_view actor);

}  // namespace iotpki::campaign
