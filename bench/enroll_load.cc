// Onboarding load generator (issue 4): N concurrent connections against a real `iotpki serve`
// process, each enrollment a fresh TCP connection with a full TLS 1.3 handshake (P-256 key
// exchange, the device's IDevID as client certificate) and one EST simpleenroll or JSON
// bootstrap request. Reports enrollments per second and the server's CPU time per enrollment
// (utime + stime of the server process from /proc/PID/stat, so the load generator's own CPU does
// not count), next to the crypto cost of one enrollment from `openssl speed` on one core in the
// same run: 3 signatures + 4 verifications + 1 ECDH.
//
//   enroll_load --iotpki build/apps/iotpki/iotpki [--devices 2000] [--connections 32]
//               [--mode est|json|mixed|tls] [--work DIR] [--io-threads N] [--groups LIST]
//               [--key-store pkcs11:token=LABEL]
//
// --mode tls makes the same connections and handshakes but asks GET /healthz: the transport's
// share of the cost, with nothing issued. --groups sets the key-exchange groups the clients
// offer (OpenSSL's list syntax, default P-256, the group the crypto model counts); with
// "X25519:P-256", what OpenSSL clients such as curl and iotpki-agent offer, the server takes
// X25519. --key-store makes the CA's keys in that PKCS#11 token (the PIN from
// $IOTPKI_PKCS11_PIN, the server inherits the environment): the issuing key signs in the token
// (bench/hsm_est_bench.sh).
//
// The devices (IDevIDs registered as manufactured, new keys and CSRs for their LDevIDs) are made
// in-process before the server starts; nothing of that is timed.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.h"
#include "iotpki/ca/authority.h"
#include "iotpki/ca/bootstrap.h"
#include "iotpki/common/file.h"
#include "iotpki/crypto/ossl.h"
#include "iotpki/crypto/primitives.h"
#include "iotpki/x509/csr.h"

namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;
using namespace iotpki;

constexpr char kPassphrase[] = "benchmark passphrase";

struct Options {
  std::string iotpki;
  std::string work;
  int devices = 2000;
  int connections = 32;
  std::string mode = "est";
  int io_threads = 0;
  std::string groups = "P-256";
  std::string key_store;
};

struct Device {
  std::string device_id;
  x509::Certificate idevid;
  crypto::PrivateKey idevid_key;
  std::string csr_b64;  // a new key's CSR, subject CN=device_id
  Bytes k_dev;
  bool json = false;
};

[[noreturn]] void Die(const std::string& what) {
  std::cerr << "enroll_load: " << what << "\n";
  std::exit(1);
}

template <class T>
T Must(Result<T> r, const char* what) {
  if (!r) Die(std::string(what) + ": " + r.error().ToString());
  return std::move(*r);
}
void Must(Result<void> r, const char* what) {
  if (!r) Die(std::string(what) + ": " + r.error().ToString());
}

// IDevIDs registered in one transaction per 1,000 devices, and the CSRs the devices will send.
std::vector<Device> MakeDevices(const Options& o, const std::string& dir) {
  Must(ca::InitCa(dir, {.organization = "Bench", .key_store = o.key_store}, kPassphrase,
                  SystemClock::Instance()),
       "ca init");
  auto authority = Must(ca::Authority::Open(dir, SystemClock::Instance()), "open CA");
  Must(authority->Unlock(ca::CaName::kManufacturing, kPassphrase), "unlock");
  Must(authority->UnlockBootstrap(kPassphrase), "unlock bootstrap");
  std::vector<Device> devices;
  store::WriteBatch batch;
  for (int i = 0; i < o.devices; ++i) {
    auto key = Must(crypto::PrivateKey::Generate(), "keygen");
    auto csr = Must(x509::MakeCsr(key, {.common_name = "device"}), "csr");
    std::string serial = "LOAD-" + std::to_string(i);
    auto prepared = authority->Prepare({.profile = x509::ProfileKind::kIDevID,
                                        .csr = csr,
                                        .serial = serial,
                                        .hardware_fingerprint = crypto::RandomBytes(8),
                                        .model = "bench",
                                        .batch = "load"});
    if (!prepared) Die("idevid: " + prepared.error().error.ToString());
    batch.Append(prepared->batch);
    if (batch.size() > 3000) {
      Must(authority->store().Commit(batch), "commit");
      batch.Clear();
    }
    auto ldevid_key = Must(crypto::PrivateKey::Generate(), "keygen");
    auto ldevid_csr =
        Must(x509::MakeCsr(ldevid_key, {.common_name = prepared->device_id}), "ldevid csr");
    auto k_dev = Must(authority->BootstrapSecret(prepared->device_id), "kdev");
    devices.push_back(Device{.device_id = prepared->device_id,
                             .idevid = prepared->certificate,
                             .idevid_key = key,
                             .csr_b64 = Base64Encode(ldevid_csr.ToDer()),
                             .k_dev = Bytes(k_dev.bytes().begin(), k_dev.bytes().end()),
                             .json = o.mode == "json" || (o.mode == "mixed" && i % 2 == 1)});
  }
  if (!batch.empty()) Must(authority->store().Commit(batch), "commit");
  return devices;
}

// utime + stime of a process, seconds.
double ProcessCpu(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(in, line);
  // Fields after the command name (which may hold spaces) start after the last ')'.
  std::istringstream rest(line.substr(line.rfind(')') + 2));
  std::string field;
  std::vector<std::string> f;
  while (rest >> field) f.push_back(field);
  // f[0] is field 3 (state); utime and stime are fields 14 and 15.
  double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  return (std::stod(f[11]) + std::stod(f[12])) / ticks;
}

struct Stats {
  int done = 0;
  int ok = 0;
  std::vector<double> latencies;
  std::map<int, int> statuses;
  int transport_errors = 0;
};

class Load {
 public:
  Load(net::io_context& ioc, ssl::context& ctx, tcp::endpoint ep, std::vector<Device>& devices,
       bool tls_only)
      : ioc_(ioc), ctx_(ctx), ep_(ep), devices_(devices), tls_only_(tls_only) {}

  void Start(int connections) {
    for (int i = 0; i < connections; ++i) Next();
  }
  Stats& stats() { return stats_; }

 private:
  struct Conn : std::enable_shared_from_this<Conn> {
    Conn(Load& l, const Device& d) : load(l), dev(d), stream(l.ioc_, l.ctx_) {}
    Load& load;
    const Device& dev;
    beast::ssl_stream<beast::tcp_stream> stream;
    http::request<http::string_body> req;
    http::response<http::string_body> res;
    beast::flat_buffer buffer;
    std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();

    void Run() {
      SSL* ssl = stream.native_handle();
      SSL_use_certificate(ssl, dev.idevid.handle());
      SSL_use_PrivateKey(ssl, dev.idevid_key.handle());
      req.version(11);
      req.method(http::verb::post);
      req.set(http::field::host, "127.0.0.1");
      if (load.tls_only_) {
        // The transport alone: the same handshake, then a request that issues nothing.
        req.method(http::verb::get);
        req.target("/healthz");
      } else if (dev.json) {
        int64_t now = SystemClock::Instance().NowUnix();
        nlohmann::json body = {{"device_id", dev.device_id},
                               {"csr", dev.csr_b64},
                               {"device_cert", Base64Encode(dev.idevid.ToDer())},
                               {"timestamp", now},
                               {"token", ca::BootstrapToken(dev.k_dev, dev.device_id, now)}};
        req.target("/api/v1/bootstrap");
        req.set(http::field::content_type, "application/json");
        req.body() = body.dump();
      } else {
        req.target("/.well-known/est/simpleenroll");
        req.set(http::field::content_type, "application/pkcs10");
        req.body() = dev.csr_b64;
      }
      req.keep_alive(false);
      req.prepare_payload();
      beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(60));
      beast::get_lowest_layer(stream).async_connect(
          load.ep_, [self = shared_from_this()](beast::error_code ec) {
            if (ec) return self->Finish(ec);
            self->stream.async_handshake(ssl::stream_base::client, [self](beast::error_code ec) {
              if (ec) return self->Finish(ec);
              http::async_write(self->stream, self->req, [self](beast::error_code ec, size_t) {
                if (ec) return self->Finish(ec);
                http::async_read(self->stream, self->buffer, self->res,
                                 [self](beast::error_code ec, size_t) { self->Finish(ec); });
              });
            });
          });
    }

    void Finish(beast::error_code ec) {
      Stats& s = load.stats_;
      ++s.done;
      if (ec) {
        ++s.transport_errors;
        if (s.transport_errors <= 3) std::cerr << "enroll_load: " << ec.message() << "\n";
      } else {
        ++s.statuses[static_cast<int>(res.result_int())];
        if (res.result_int() == 200) ++s.ok;
        s.latencies.push_back(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
      }
      beast::error_code ignored;
      beast::get_lowest_layer(stream).socket().close(ignored);
      load.Next();
    }
  };

  void Next() {
    if (next_ >= devices_.size()) return;
    std::make_shared<Conn>(*this, devices_[next_++])->Run();
  }

  net::io_context& ioc_;
  ssl::context& ctx_;
  tcp::endpoint ep_;
  std::vector<Device>& devices_;
  bool tls_only_;
  size_t next_ = 0;
  Stats stats_;
};

pid_t StartServer(const Options& o, const std::string& dir, int& port) {
  std::string port_file = dir + "/port";
  std::string config = dir + "/serve.toml";
  {
    std::ofstream c(config);
    c << "[server]\nmax_connections = 4096\n";
    if (o.io_threads > 0) c << "io_threads = " << o.io_threads << "\n";
  }
  setenv("IOTPKI_PASSPHRASE", kPassphrase, 1);
  std::cout.flush();
  pid_t pid = fork();
  if (pid == 0) {
    std::string log = dir + "/serve.log";
    FILE* f = std::freopen(log.c_str(), "w", stdout);
    // The server logs a line per request on standard error: into the file too, as in production.
    if (f != nullptr) dup2(fileno(f), STDERR_FILENO);
    execl(o.iotpki.c_str(), o.iotpki.c_str(), "serve", "--dir", (dir + "/ca").c_str(), "--listen",
          "127.0.0.1:0", "--port-file", port_file.c_str(), "--config", config.c_str(),
          "--log-format", "text", static_cast<char*>(nullptr));
    std::perror("exec iotpki");
    _exit(127);
  }
  for (int i = 0; i < 300; ++i) {
    auto text = ReadTextFile(port_file);
    if (text && !text->empty()) {
      port = std::stoi(*text);
      return pid;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  kill(pid, SIGKILL);
  Die("the server did not start (see " + dir + "/serve.log)");
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Die(a + " needs a value");
      return argv[++i];
    };
    if (a == "--iotpki") {
      o.iotpki = value();
    } else if (a == "--work") {
      o.work = value();
    } else if (a == "--devices") {
      o.devices = std::stoi(value());
    } else if (a == "--connections") {
      o.connections = std::stoi(value());
    } else if (a == "--mode") {
      o.mode = value();
    } else if (a == "--io-threads") {
      o.io_threads = std::stoi(value());
    } else if (a == "--groups") {
      o.groups = value();
    } else if (a == "--key-store") {
      o.key_store = value();
    } else {
      Die("unknown option " + a +
          " (--iotpki PATH [--devices N] [--connections N] [--mode est|json|mixed|tls] "
          "[--work DIR] [--io-threads N] [--groups LIST] [--key-store URI])");
    }
  }
  if (o.iotpki.empty()) Die("--iotpki PATH_TO_IOTPKI is required");
  if (o.mode != "est" && o.mode != "json" && o.mode != "mixed" && o.mode != "tls") {
    Die("--mode est|json|mixed|tls");
  }
  std::string dir = o.work.empty() ? bench::MakeTempDir("iotpki-enroll-load") : o.work;

  std::cout << "== enroll_load: " << o.devices << " devices, mode " << o.mode << ", "
            << o.connections << " concurrent connections, " << std::thread::hardware_concurrency()
            << " cores, key exchange " << o.groups << ", " << OpenSSL_version(OPENSSL_VERSION)
            << "\n";
  auto t_prep = std::chrono::steady_clock::now();
  std::vector<Device> devices = MakeDevices(o, dir + "/ca");
  std::cout << "prepared " << devices.size() << " provisioned devices and their CSRs in "
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - t_prep).count()
            << " s (not timed)\n";

  bench::OpensslSpeed speed = bench::MeasureOpensslSpeed(3, 0, true);
  double crypto = 3 / speed.ecdsa_sign + 4 / speed.ecdsa_verify + 1 / speed.ecdh;
  std::cout << "openssl speed -seconds 3 ecdsap256 ecdhp256 (one core): sign " << speed.ecdsa_sign
            << "/s, verify " << speed.ecdsa_verify << "/s, ecdh " << speed.ecdh << "/s\n"
            << "crypto per enrollment (3 sign + 4 verify + 1 ECDH): " << crypto * 1e3 << " ms\n";

  int port = 0;
  pid_t server = StartServer(o, dir, port);

  net::io_context ioc(1);
  auto native = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_min_proto_version(native, TLS1_3_VERSION);
  // By default the key exchange the crypto model counts: ECDH on P-256.
  if (SSL_CTX_set1_groups_list(native, o.groups.c_str()) != 1) Die("bad --groups " + o.groups);
  SSL_CTX_set_verify(native, SSL_VERIFY_PEER, nullptr);
  auto root_pem = Must(ReadTextFile(dir + "/ca/certs/root.pem"), "root");
  auto root = Must(x509::Certificate::FromPem(root_pem), "root");
  X509_STORE_add_cert(SSL_CTX_get_cert_store(native), root.handle());
  ssl::context ctx(native);
  Load load(ioc, ctx,
            tcp::endpoint(net::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port)), devices,
            o.mode == "tls");

  double cpu0 = ProcessCpu(server);
  auto t0 = std::chrono::steady_clock::now();
  load.Start(o.connections);
  ioc.run();
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  double cpu = ProcessCpu(server) - cpu0;

  kill(server, SIGTERM);
  int status = 0;
  waitpid(server, &status, 0);
  std::string served = ReadTextFile(dir + "/serve.log").value_or("");

  Stats& s = load.stats();
  std::cout << "\nenrollments: " << s.ok << " of " << s.done << " succeeded";
  for (auto& [code, n] : s.statuses) std::cout << ", HTTP " << code << " x" << n;
  if (s.transport_errors) std::cout << ", transport errors " << s.transport_errors;
  std::printf("\nwall %.2f s: %.0f enrollments/s; latency p50 %.1f ms, p99 %.1f ms\n", wall,
              s.ok / wall, Percentile(s.latencies, 0.5) * 1e3, Percentile(s.latencies, 0.99) * 1e3);
  double per = s.ok > 0 ? cpu / s.ok : 0;
  std::printf("server CPU %.2f s = %.3f ms per enrollment = %.2fx the crypto cost (goal <= 1.5x)\n",
              cpu, per * 1e3, per / crypto);
  std::string stopped = served.substr(std::min(served.size(), served.rfind("stopped")));
  std::cout << "server: " << stopped;
  if (o.work.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  return s.ok == s.done ? 0 : 1;
}
