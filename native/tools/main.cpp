// calmkit-core: the core without Node, for machines that have none (the GPU hosts) and for C++-side checks.
// Subcommands are registered by the files beside this one.
#include <cstring>
#include <iostream>

#include "core/error.h"
#include "core/runtime.h"
#include "tools/commands.h"

int main(int argc, char** argv) {
  calmkit::runtime::configureMemory();
  calmkit::runtime::configureThreads();
  auto& cmds = calmkit_tools::commands();
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    std::cout << "usage: calmkit-core <command> [args]\n\ncommands:\n";
    for (auto& [name, c] : cmds) std::cout << "  " << name << "  " << c.help << "\n";
    return argc < 2 ? 2 : 0;
  }
  auto it = cmds.find(argv[1]);
  if (it == cmds.end()) {
    std::cerr << "calmkit-core: unknown command '" << argv[1] << "' (see --help)\n";
    return 2;
  }
  try {
    return it->second.run(argc - 2, argv + 2);
  } catch (const calmkit::Error& e) {
    std::cerr << "calmkit-core " << argv[1] << ": " << e.code() << ": " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "calmkit-core " << argv[1] << ": ERR_INTERNAL: " << calmkit::torchMessage(e.what()) << "\n";
    return 1;
  }
}
