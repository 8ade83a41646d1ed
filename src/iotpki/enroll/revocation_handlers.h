// Certificate status for relying parties: the CRLs (GET /crl/<ca>.crl) and, in ocsp_handlers,
// the OCSP responder. Neither needs a client certificate: a broker or a verifier fetching a CRL
// is not a device.
#pragma once

#include "iotpki/ca/crl_publisher.h"
#include "iotpki/server/metrics.h"
#include "iotpki/server/router.h"

namespace iotpki::enroll {

// GET /crl/manufacturing.crl and /crl/operational.crl: the publisher's current CRL as DER
// (application/pkix-crl; .pem for the PEM form), with an ETag from the CRL number (a matching
// If-None-Match gets 304) and Cache-Control allowing caches a minute, never past nextUpdate.
// 404 for another name, 503 before the first CRL was built. Adds the gauges
// iotpki_crl_bytes and iotpki_crl_age_seconds per CA. `publisher` and `clock` must outlive the
// router and the registry.
void MountCrl(server::Router& router, const ca::CrlPublisher& publisher, const Clock& clock,
              server::Registry& metrics);

}  // namespace iotpki::enroll
