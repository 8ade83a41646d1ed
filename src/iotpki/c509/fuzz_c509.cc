// libFuzzer target: the CBOR reader and the C509 decoders on arbitrary bytes.
//
// Besides "no crash, no sanitizer report", it checks two invariants and aborts on a violation:
//  - an item the CBOR reader accepts re-encodes to exactly the input (deterministic encoding);
//  - DER produced by DecodeToX509 encodes back to C509 and decodes to the same DER.
#include <cstdint>
#include <cstdlib>

#include "iotpki/c509/c509.h"
#include "iotpki/c509/cbor.h"

namespace c509 = iotpki::c509;
namespace cbor = iotpki::cbor;
using iotpki::Bytes;
using iotpki::ByteView;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const ByteView input(data, size);

  if (auto item = cbor::Decode(input)) {
    if (item->Encode() != Bytes(input.begin(), input.end())) std::abort();
    (void)cbor::Diagnostic(*item);
  }
  (void)cbor::DecodeSequence(input);

  auto cert = c509::Parse(input);
  if (!cert) return 0;
  (void)c509::Describe(*cert);
  (void)c509::SubjectPublicKey(*cert);
  (void)c509::SignedBytes(input);
  (void)c509::Serialize(*cert);

  auto der = c509::ToX509(*cert);
  if (!der) return 0;
  auto again = c509::EncodeX509(*der);
  if (!again) std::abort();
  auto der2 = c509::DecodeToX509(*again);
  if (!der2 || *der2 != *der) std::abort();
  return 0;
}
