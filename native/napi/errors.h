// How errors cross the boundary: every JS error the glue makes is an Error with a stable `code` (lib/errors.ts
// maps codes onto the CalmkitError family), made here and nowhere else.
#pragma once
#include <napi.h>

#include <functional>
#include <string>

namespace calmkit_napi {

// A JS Error with a stable `code` property.
Napi::Error MakeError(Napi::Env env, const std::string& code, const std::string& message);

// Throws MakeError(...) as a C++ exception: node-addon-api turns it into a JS throw (or Submit's Guard into a
// rejection), so a bad argument never aborts.
[[noreturn]] void ThrowCoded(Napi::Env env, const std::string& code, const std::string& message);

// Runs `fn` and turns any exception (calmkit::Error, Napi::Error, c10::Error, bad_alloc, ...) into (code, message).
bool Guard(const std::function<void()>& fn, std::string& code, std::string& message);

}  // namespace calmkit_napi
