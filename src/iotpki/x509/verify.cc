#include "iotpki/x509/verify.h"

#include <ctime>

#include "iotpki/crypto/ossl.h"

namespace iotpki::x509 {
namespace {

Verdict FromOpenSsl(int error) {
  switch (error) {
    case X509_V_OK:
      return Verdict::kValid;
    case X509_V_ERR_CERT_HAS_EXPIRED:
      return Verdict::kExpired;
    case X509_V_ERR_CERT_NOT_YET_VALID:
      return Verdict::kNotYetValid;
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CERT_SIGNATURE:
    case X509_V_ERR_UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY:
      return Verdict::kBadSignature;
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
      return Verdict::kUnknownIssuer;
    case X509_V_ERR_CERT_REVOKED:
      return Verdict::kRevoked;
    case X509_V_ERR_UNABLE_TO_GET_CRL:
    case X509_V_ERR_UNABLE_TO_GET_CRL_ISSUER:
    case X509_V_ERR_CRL_HAS_EXPIRED:
    case X509_V_ERR_CRL_NOT_YET_VALID:
    case X509_V_ERR_CRL_SIGNATURE_FAILURE:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE:
    case X509_V_ERR_ERROR_IN_CRL_LAST_UPDATE_FIELD:
    case X509_V_ERR_ERROR_IN_CRL_NEXT_UPDATE_FIELD:
    case X509_V_ERR_KEYUSAGE_NO_CRL_SIGN:
    case X509_V_ERR_DIFFERENT_CRL_SCOPE:
    case X509_V_ERR_CRL_PATH_VALIDATION_ERROR:
      return Verdict::kRevocationUnknown;
    default:
      return Verdict::kInvalidChain;
  }
}

}  // namespace

std::string_view VerdictName(Verdict verdict) {
  switch (verdict) {
    case Verdict::kValid:
      return "valid";
    case Verdict::kExpired:
      return "expired";
    case Verdict::kNotYetValid:
      return "not_yet_valid";
    case Verdict::kBadSignature:
      return "bad_signature";
    case Verdict::kUnknownIssuer:
      return "unknown_issuer";
    case Verdict::kRevoked:
      return "revoked";
    case Verdict::kRevocationUnknown:
      return "revocation_unknown";
    case Verdict::kInvalidChain:
      return "invalid_chain";
  }
  return "unknown";
}

Verdict VerifyChain(const Certificate& leaf, std::span<const Certificate> intermediates,
                    std::span<const Certificate> roots, int64_t at_time,
                    std::span<const Crl> crls) {
  auto store = ossl::Own(X509_STORE_new());
  auto untrusted = ossl::Own(sk_X509_new_null());
  auto ctx = ossl::Own(X509_STORE_CTX_new());
  if (!store || !untrusted || !ctx) {
    ossl::ClearErrors();
    return Verdict::kInvalidChain;
  }
  // The store and the stack take their own references / borrow; the values outlive this call.
  for (const auto& root : roots) X509_STORE_add_cert(store.get(), root.handle());
  for (const auto& crl : crls) X509_STORE_add_crl(store.get(), crl.handle());
  for (const auto& cert : intermediates) sk_X509_push(untrusted.get(), cert.handle());

  if (X509_STORE_CTX_init(ctx.get(), store.get(), leaf.handle(), untrusted.get()) != 1) {
    ossl::ClearErrors();
    return Verdict::kInvalidChain;
  }
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
  unsigned long flags = X509_V_FLAG_X509_STRICT | X509_V_FLAG_PARTIAL_CHAIN;
  if (!crls.empty()) flags |= X509_V_FLAG_CRL_CHECK;
  X509_VERIFY_PARAM_set_flags(param, flags);
  // Sets X509_V_FLAG_USE_CHECK_TIME: the verdict is for `at_time`, not for the wall clock.
  X509_VERIFY_PARAM_set_time(param, static_cast<time_t>(at_time));

  int ok = X509_verify_cert(ctx.get());
  int error = X509_STORE_CTX_get_error(ctx.get());
  ossl::ClearErrors();
  if (ok == 1) return Verdict::kValid;
  // A failure with X509_V_OK means the verifier itself failed (e.g. out of memory).
  return error == X509_V_OK ? Verdict::kInvalidChain : FromOpenSsl(error);
}

}  // namespace iotpki::x509
