#include "iotpki/cli/cli.h"

namespace iotpki::cli {
void AddC509Commands(CLI::App&) {}
}  // namespace iotpki::cli
