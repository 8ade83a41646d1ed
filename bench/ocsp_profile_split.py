#!/usr/bin/env python3
# The split of an OCSP responder profile in docs/performance.md ("OCSP fresh answers, session 5"):
#   IOTPKI_OCSP_PERF=FILE IOTPKI_OCSP_PERF_OPTS="-F 1999 --call-graph dwarf,16384" bench/ocsp.sh ...
#   perf script -i FILE -F ip,sym --no-inline | bench/ocsp_profile_split.py
# Splits the samples (call chains, leaf first) by what the responder was doing; each sample is
# counted once, in the first category its call chain matches.
import sys, collections, re
cats = [
  ("sign (ECDSA through the prepared context)", r"SignTbs|EVP_DigestSign|ossl_ecdsa|ECDSA_|EC_POINT_mul|EVP_MD_CTX|OpenSslHandle"),
  ("answer DER (template Write, the rest)", r"OcspResponseTemplate::Write|BuildOcspResponse"),
  ("request parse (d2i/i2d, GET decode)", r"ParseOcspRequest|DecodeGetRequest"),
  ("store status read", r"GetCertificateStatus|SqlStore::GetCertificate"),
  ("responder other (issuer, cache, counters, Render)", r"OcspResponder::"),
  ("log line (LogRequest)", r"LogRequest"),
  ("request id (RAND_bytes)", r"NewRequestId|NewRequest|RandomBytes"),
  ("http metrics counter", r"RequestCounter"),
  ("socket send/recv (kernel TCP loopback)", r"sendmsg|recvmsg|__libc_send|__libc_recv|tcp_|sock_"),
  ("TLS write (SSL_write)", r"SSL_write"),
  ("TLS read (SSL_read)", r"SSL_read"),
  ("HTTP parse (beast parser)", r"basic_parser|OnHeader|ReadRequest|NoteRequestLine"),
  ("timers (ArmTimer/SetDeadline, expires_after, timerfd)", r"ArmTimer|SetDeadline|OnTimer|expires_after|expires_never|timerfd|schedule_timer|StopTimer"),
  ("epoll, futex, thread wake-ups", r"epoll_wait|epoll_ctl|lll_lock|futex|pthread_cond|wakeup|wake_one"),
  ("Request/Response build (Dispatch, Send, beast serializer)", r"Session::Dispatch|Session::Send|Router::Find|serializer"),
]
counts = collections.Counter(); total = 0; stack = []
def flush():
    global total, stack
    if not stack: return
    total += 1
    frames = [l.split(None, 1)[1] if len(l.split(None, 1)) > 1 else l for l in stack]
    s = "\n".join(frames)
    # libcrypto frames without symbols right under the template's Write: the signature.
    if "OcspResponseTemplate::Write" in s:
        i = next(n for n, f in enumerate(frames) if "OcspResponseTemplate::Write" in f)
        if i > 0 and all(f.startswith("[unknown]") for f in frames[:i]):
            counts[cats[0][0]] += 1; stack = []; return
    for name, rx in cats:
        if re.search(rx, s):
            counts[name] += 1; break
    else:
        counts["other: " + frames[0]] += 1
    stack = []
for line in sys.stdin:
    line = line.rstrip("\n")
    if not line.strip(): flush(); continue
    if line[0] in "\t ": stack.append(line.strip())
    else: flush()
flush()
other = sum(v for k, v in counts.items() if k.startswith("other"))
for name, _ in cats: print(f"{100.0*counts[name]/total:5.1f}%  {name}")
print(f"{100.0*other/total:5.1f}%  other"); print("samples", total)
for v, k in sorted(((v, k) for k, v in counts.items() if k.startswith("other")), reverse=True)[:8]:
    print(f"   {100.0*v/total:5.1f}% {k[:150]}")
