#include "napi/control.h"

#include "napi/convert.h"

namespace calmkit_napi {
namespace {

const napi_type_tag kControlTag = {0x6a756b65626f7831ULL, 0x636f6e74726f6c01ULL};

struct ControlBox {
  std::shared_ptr<Control> ctl = std::make_shared<Control>();
};

Napi::Value NewControl(const Napi::CallbackInfo& info) {
  auto ext = Napi::External<ControlBox>::New(info.Env(), new ControlBox(), [](Napi::Env, ControlBox* c) { delete c; });
  ext.TypeTag(&kControlTag);
  return ext;
}

Napi::Value Cancel(const Napi::CallbackInfo& info) {
  auto ctl = GetControl(info[0]);
  {
    std::lock_guard<std::mutex> lock(ctl->mu);
    ctl->cancelled = true;
  }
  ctl->cv.notify_all();
  return info.Env().Undefined();
}

Napi::Value Consumed(const Napi::CallbackInfo& info) {
  auto ctl = GetControl(info[0]);
  {
    std::lock_guard<std::mutex> lock(ctl->mu);
    if (ctl->pending > 0) --ctl->pending;
  }
  ctl->cv.notify_all();
  return info.Env().Undefined();
}

}  // namespace

std::shared_ptr<Control> GetControl(const Napi::Value& v) { return Unwrap<ControlBox>(v, kControlTag, "control")->ctl; }

void InitControl(Napi::Env env, Napi::Object exports) {
  exports.Set("control", Napi::Function::New(env, NewControl, "control"));
  exports.Set("cancel", Napi::Function::New(env, Cancel, "cancel"));
  exports.Set("consumed", Napi::Function::New(env, Consumed, "consumed"));
}

}  // namespace calmkit_napi
