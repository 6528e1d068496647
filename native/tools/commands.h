#pragma once
#include <functional>
#include <map>
#include <string>

namespace calmkit_tools {

struct Command {
  std::string help;
  std::function<int(int, char**)> run;
};

std::map<std::string, Command>& commands();

// Registers a subcommand from a static initialiser in its own file.
struct Register {
  Register(const std::string& name, const std::string& help, std::function<int(int, char**)> run) {
    commands()[name] = Command{help, std::move(run)};
  }
};

}  // namespace calmkit_tools
