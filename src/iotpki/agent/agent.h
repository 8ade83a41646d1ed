// The device agent: onboarding (IDevID -> LDevID) and renewal against an iotpki server, with the
// device's files in a state directory. Depends only on common, crypto, x509 and the HTTPS client:
// no store, no server code, nothing of the CA.
//
// State directory:
//   STATE/factory/        the device's folder from `iotpki mfg provision` (docs/manufacturing.md):
//                         cert.pem (IDevID), chain.pem (manufacturing CA then root),
//                         bootstrap.hex (K_dev, for the JSON API), key.pem (the IDevID key:
//                         PKCS#8 PEM, encrypted under the batch's transport passphrase or plain)
//                         or, for a key made in the device's secure element (`mfg provision
//                         --secure-element`), key.uri: its URI (the manifest's key_uri). That
//                         key is never deleted by the agent.
//   STATE/slots/NAME/     each working certificate installed: cert.pem, chain.pem (the
//                         operational CA), key.pem (plain PKCS#8, mode 0600) or, for a key
//                         made in a key store (--key-store), key.uri (the key's URI)
//   STATE/keys/           with --key-store tpm2:, the TPM's key blobs (only that TPM loads them);
//                         with --key-store pkcs11:, nothing (the keys stay in the token)
//   STATE/key-store       the --key-store bootstrap was given (later commands' default)
//   STATE/active          symlink to the slot in use; replaced by rename(2), so it always names a
//                         complete slot, old or new
//   STATE/previous        symlink to the slot `active` named before (for a rollback)
//   STATE/server          the server URL the device bootstrapped with (renew's default)
//   STATE/pending         during a rotation only: a small JSON file {"slot", "serial",
//                         "campaign", "job"} naming a complete slot that is not active yet; it
//                         is written after the slot and removed after `active` names the slot
//                         (or after the slot is discarded). Recover() finishes what it names.
//
// The server is verified against the root CA, the self-signed certificate of factory/chain.pem.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "iotpki/common/bytes.h"
#include "iotpki/common/clock.h"
#include "iotpki/common/error.h"
#include "iotpki/crypto/bootstrap_token.h"
#include "iotpki/crypto/signer.h"
#include "iotpki/x509/certificate.h"

namespace iotpki::agent {

struct AgentOptions {
  std::filesystem::path state;
  // "https://HOST:PORT". Renew defaults to STATE/server.
  std::string server_url;
  // Decrypts factory/key.pem when it is encrypted.
  std::string key_passphrase;
  // Where new device keys are made (docs/hardware-keys.md). Empty: in memory, written to the
  // slot's key.pem. "tpm2:": inside the TPM that TPM2OPENSSL_TCTI names; the slot keeps only the
  // key's URI (key.uri) and STATE/keys/ the TPM's key blob. "pkcs11:token=LABEL" (RFC 7512,
  // optionally ?pin-source=file:PATH&module-path=...): inside that PKCS#11 token (module from
  // IOTPKI_PKCS11_MODULE, PIN from IOTPKI_PKCS11_PIN or pin-source), non-extractable, labelled
  // ldevid-<random>; the slot keeps only its URI. Bootstrap saves it in STATE/key-store, the
  // default of every later command.
  std::string key_store;
  std::chrono::seconds timeout{30};
  // EST enrollments ask for the certificate in C509 (application/cose-c509-cert+cbor, draft-
  // ietf-cose-cbor-encoded-cert), decoded back to the byte-exact X.509 before it is checked and
  // installed: fewer bytes on a constrained link.
  bool c509 = false;
  const Clock* clock = &SystemClock::Instance();
};

enum class BootstrapMode {
  kEst,   // EST simpleenroll, authenticated by the IDevID over TLS
  kJson,  // POST /api/v1/bootstrap with a token, authenticated by the IDevID over TLS
  // The JSON API without a TLS client certificate: the CSR is signed with the IDevID key, which
  // the working certificate then certifies (for devices whose TLS stack cannot present one).
  kJsonWithoutClientCertificate,
};

struct Installed {
  x509::Certificate certificate;
  std::string device_id;
  std::string slot;  // STATE/slots/<slot>
  bool new_key = true;
};

// New key (except kJsonWithoutClientCertificate), CSR, request, checks on the answer (key,
// identity, chain to the root), atomic install as the active slot.
Result<Installed> Bootstrap(const AgentOptions& options, BootstrapMode mode);

// EST serverkeygen (RFC 7030 4.4), for a device without a good random source: the server makes
// the key and returns it sealed to the IDevID (CMS EnvelopedData, ECDH with the IDevID key); the
// agent opens it with the IDevID key, checks that it is the key of the returned certificate (and
// the usual identity and chain checks), and installs both atomically as the active slot.
Result<Installed> BootstrapServerKeygen(const AgentOptions& options);

// EST simplereenroll with the active working certificate; `rekey` makes a new key, otherwise
// the current key is kept (renew).
Result<Installed> Renew(const AgentOptions& options, bool rekey);

// The active working certificate and its key, for a connection the agent keeps besides its
// HTTPS requests (the daemon's MQTT session, through MakeClientTlsContext). A key in a store
// (key.uri: a TPM or a PKCS#11 token) is checked against the certificate here and then opened
// for each signature only, so that a long session holds no TPM object between handshakes. The
// result does not follow a later rotation: the session presents what was active when it began.
struct ActiveIdentity {
  x509::Certificate certificate;
  std::shared_ptr<const crypto::Signer> key;
};
Result<ActiveIdentity> LoadActiveIdentity(const AgentOptions& options);

// --- Over-the-air rotation (docs/rotation.md, "The device's side") ---

// A rotate command: which job of which campaign, and whether to make a new key.
struct RotateCommand {
  std::string campaign;
  int64_t job = 0;
  bool rekey = false;
};

// The points of a rotation, in order, where a test may stop the agent (a real SIGKILL then).
enum class RotateStep {
  kBeforeCsr = 1,      // nothing done yet
  kAfterEnroll = 2,    // the server issued the new certificate; nothing written
  kBeforeConfirm = 3,  // the new slot and STATE/pending are on disk
  kBeforeRename = 4,   // the server accepted the confirmation; `active` still names the old slot
  kAfterRename = 5,    // `active` names the new slot; STATE/pending still there
};
std::string_view RotateStepName(RotateStep step);  // "before-csr", "after-enroll", ...
std::optional<RotateStep> ParseRotateStep(std::string_view name);

struct RotateHooks {
  // Called at each step (tests stop the process there).
  std::function<void(RotateStep)> at_step;
  // Makes the install fail after the slot is written, to exercise the rollback (tests only:
  // IOTPKI_AGENT_TEST_FAIL_INSTALL=1).
  bool fail_install = false;
};

struct Rotated {
  Installed installed;     // the new certificate, now active
  std::string old_serial;  // the certificate it replaced
};

// One rotation: CSR (new key with `rekey`), EST simplereenroll with the active certificate,
// the new slot written and recorded in STATE/pending, the confirmation over mutual TLS with the
// NEW certificate, then `active` switched (rename, directory fsynced) and STATE/pending removed.
// Rollback: an install that fails, or a confirmation the server refuses (or a TLS handshake the
// new certificate cannot make), removes the slot and STATE/pending and reports "failed" with
// the old certificate (best effort); the error says what failed. A confirmation that does not
// reach the server leaves STATE/pending for Recover (the server may have accepted it).
// FailedPrecondition if a rotation is pending already (Recover first).
Result<Rotated> Rotate(const AgentOptions& options, const RotateCommand& command,
                       const RotateHooks& hooks = {});

// What Recover did with STATE/pending.
enum class Recovery {
  kNothing,    // no rotation was pending
  kCompleted,  // confirmed (again: the server answers a repeated confirmation 200) and active
  kActivated,  // `active` named the slot already: only STATE/pending was left to remove
  kDiscarded,  // the slot was incomplete or the server refused it: removed, failure reported
};
std::string_view RecoveryName(Recovery r);
struct Recovered {
  Recovery what = Recovery::kNothing;
  // The job the pending rotation was for (empty campaign: none, or unreadable).
  std::string campaign;
  int64_t job = 0;
  // TPM key blobs deleted because no slot named them (older than an hour: a crash between
  // making a key and writing its slot left them), as URIs.
  std::vector<std::string> orphans_deleted;
};
// At start: finishes or discards a pending rotation so that `active` names a working
// certificate, and deletes the orphaned TPM key blobs of STATE/keys/ (above). Unavailable
// (STATE/pending kept) if the confirmation cannot reach the server.
Result<Recovered> Recover(const AgentOptions& options);

// When a device renews by itself, without a campaign: at two thirds of the certificate's
// lifetime, plus a jitter of up to 1/12 of the lifetime (`unit_random` in [0, 1)), so that a
// fleet made in one day does not renew in one minute; never after notAfter - 1.
int64_t AutoRenewAt(int64_t not_before, int64_t not_after, double unit_random);
// Seconds from the clock's now until AutoRenewAt (0: due now).
int64_t SecondsUntilAutoRenew(int64_t not_before, int64_t not_after, double unit_random,
                              const Clock& clock);

// The device's own jitter draw in [0, 1), from its id: the same on every start of one device,
// spread evenly over a fleet.
double DeviceJitter(std::string_view device_id);

// One pass of the daemon's renewal without a campaign: renews (a new key) when the active
// certificate has reached AutoRenewAt with the device's jitter. `next_in`: seconds until the
// next renewal is due.
struct AutoRenewal {
  std::optional<Installed> renewed;
  int64_t next_in = 0;
};
Result<AutoRenewal> AutoRenewPass(const AgentOptions& options);

// The wait before retry number `attempt` (1-based) after a failure to reach the server (or,
// later, the broker): 5 s doubling up to an hour, scaled by 0.5 + unit_random / 2 (full
// jitter would let some devices retry at once; none jitter would make a fleet retry in step).
int64_t RetryBackoff(int attempt, double unit_random);

// What went wrong, by class. Errors map onto these by code (see Classify); local failures never
// carry the codes reserved for the three remote classes.
enum class Outcome {
  kOk = 0,
  kLocal = 1,        // state directory, files, keys
  kUsage = 2,        // bad command line
  kUnreachable = 3,  // Unavailable: cannot connect, timeout, connection dropped
  kTls = 4,          // Unauthenticated: TLS handshake failed
  kRefused = 5,      // PermissionDenied: the server answered with an error (its reason shown)
  kBadAnswer = 6,    // DataLoss: the server's answer is malformed or not what was asked for
};
Outcome Classify(const Error& error);
std::string_view OutcomeName(Outcome outcome);  // "server unreachable", "TLS failure", ...

// hex(HMAC-SHA256(K_dev, device_id || "." || decimal timestamp)), as the server checks it: the
// server's own function (crypto/bootstrap_token.h).
using crypto::BootstrapToken;

}  // namespace iotpki::agent
