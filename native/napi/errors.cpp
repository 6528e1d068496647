#include "napi/errors.h"

#include <c10/util/Exception.h>

#include <new>

#include "core/error.h"

namespace calmkit_napi {

Napi::Error MakeError(Napi::Env env, const std::string& code, const std::string& message) {
  Napi::Error err = Napi::Error::New(env, message);
  err.Value().Set("code", Napi::String::New(env, code));
  return err;
}

void ThrowCoded(Napi::Env env, const std::string& code, const std::string& message) {
  throw MakeError(env, code, message);
}

bool Guard(const std::function<void()>& fn, std::string& code, std::string& message) {
  try {
    fn();
    return true;
  } catch (const calmkit::Error& e) {
    code = e.code();
    message = e.what();
  } catch (const Napi::Error& e) {
    code = calmkit::code::kInvalidArgument;
    message = e.Message();
  } catch (const c10::Error& e) {
    code = calmkit::code::kInternal;
    message = calmkit::torchMessage(e.what_without_backtrace());
  } catch (const std::bad_alloc&) {
    code = calmkit::code::kInternal;
    message = "out of memory";
  } catch (const std::exception& e) {
    // TorchScript surfaces its errors as std::runtime_error.
    code = calmkit::code::kInternal;
    message = calmkit::torchMessage(e.what());
  } catch (...) {
    code = calmkit::code::kInternal;
    message = "unknown native error";
  }
  return false;
}

}  // namespace calmkit_napi
