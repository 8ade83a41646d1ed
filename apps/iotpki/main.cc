// The iotpki command: everything lives in the library; this only hands over argv.
#include "iotpki/cli/cli.h"

int main(int argc, char** argv) { return iotpki::cli::Main(argc, argv); }
