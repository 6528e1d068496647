#include "core/probes_eval.h"

#include <cmath>
#include <limits>

namespace calmkit::probes {
namespace {

// The feature rows of a split's clips: clip r's S rows are r * S .. r * S + S - 1.
std::vector<int64_t> rowsOf(const Split& s, int64_t S) {
  std::vector<int64_t> rows;
  rows.reserve(s.rows.size() * static_cast<size_t>(S));
  for (int32_t r : s.rows) {
    for (int64_t k = 0; k < S; ++k) rows.push_back(static_cast<int64_t>(r) * S + k);
  }
  return rows;
}

// [clips, S] bool of the split's real segments, or undefined when none of its clips has padding.
torch::Tensor validMaskOf(const Shared& sh, const Split& s) {
  if (!sh.padded) return {};
  const int64_t S = sh.segments;
  auto m = torch::zeros({static_cast<int64_t>(s.rows.size()), S}, torch::kBool);
  auto* d = m.data_ptr<bool>();
  for (size_t i = 0; i < s.rows.size(); ++i) {
    for (int64_t k = 0; k < sh.validOf(s.rows[i]); ++k) d[i * S + k] = true;
  }
  return m;
}

// The split's rows (S per clip), standardised; padding segments are zeroed so that nothing in them (not even a
// NaN) reaches a product.
torch::Tensor standardized(const Shared& sh, const Split& s, const Scaler& sc, const torch::Tensor& valid) {
  auto rows = torch::tensor(rowsOf(s, sh.segments), torch::kLong);
  auto x = sh.X.index_select(0, rows);
  if (sc.mean.defined()) x = x.sub_(sc.mean).div_(sc.std);
  if (valid.defined()) x.masked_fill_(valid.logical_not().view({-1, 1}), 0.0f);
  return x;
}

torch::Tensor targetsOf(const Split& s) {
  std::vector<float> y(s.targets.begin(), s.targets.end());
  return torch::tensor(y, torch::kFloat).view({-1, 1});
}

// A split's evaluation rows, standardised, on the device, with the mask of real segments when clips are padded.
struct EvalRows {
  torch::Tensor x, valid;
};
EvalRows evalRows(const Shared& sh, const Split& s, int t) {
  auto valid = validMaskOf(sh, s);
  auto x = standardized(sh, s, sh.scalers[t], valid).to(sh.device);
  return {x, valid.defined() ? valid.to(sh.device) : valid};
}

Layer layerOf(const torch::Tensor& weight, const torch::Tensor& bias) {
  auto wt = weight.to(torch::kCPU).contiguous();
  Layer layer;
  layer.in = wt.size(0);
  layer.out = wt.size(1);
  layer.weight.assign(wt.data_ptr<float>(), wt.data_ptr<float>() + wt.numel());
  if (bias.defined()) {
    auto bt = bias.to(torch::kCPU).contiguous().view(-1);
    layer.bias.assign(bt.data_ptr<float>(), bt.data_ptr<float>() + bt.numel());
  } else {
    layer.bias.assign(static_cast<size_t>(layer.out), 0.0f);  // a head's weight has no bias
  }
  return layer;
}

std::vector<float> toVector(const torch::Tensor& t) {
  auto c = t.to(torch::kCPU, torch::kFloat).contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

// One stack's probes as the evaluation sees them.
class StackEval {
 public:
  StackEval(Shared& sh, const Arch& arch, const std::vector<ProbeSpec>& ps, StackParams& prm)
      : sh_(sh),
        head_(*arch.head),
        ps_(ps),
        prm_(prm),
        P_(static_cast<int64_t>(ps.size())),
        S_(arch.rowsPerClip(sh.segments)),
        linear_(arch.hidden.empty() && !head_.readsSegments()) {}

  void evaluate(Result& res, int64_t epoch, std::vector<float>& bestLoss) {
    withEvalRows(0, [&](int64_t p, const torch::Tensor& x, const torch::Tensor& valid) {
      int t = ps_[p].task;
      auto logits = netLogits(head_, tensorsOf(p, false), x, S_, valid);
      const auto& y = sh_.valY[t];
      float loss = torch::binary_cross_entropy_with_logits(logits, y).item<float>();
      float acc = logits.gt(0).to(torch::kFloat).eq(y).to(torch::kFloat).mean().item<float>();
      ProbeResult& r = res.probes[ps_[p].index];
      r.valLoss.push_back(loss);
      r.valAcc.push_back(acc);
      if (loss < bestLoss[p]) {  // NaN never improves
        bestLoss[p] = loss;
        r.bestEpoch = epoch;
        r.bestValLoss = loss;
        r.bestValAcc = acc;
        for (Param* prm : prm_.all()) prm->best[p].copy_(prm->value[p]);
      }
    });
  }

  void finish(Result& res) {
    withEvalRows(1, [&](int64_t p, const torch::Tensor& testX, const torch::Tensor& testValid) {
      int t = ps_[p].task;
      ProbeResult& r = res.probes[ps_[p].index];
      if (r.bestEpoch < 0) {
        r.bestValLoss = std::numeric_limits<double>::quiet_NaN();
        r.bestValAcc = std::numeric_limits<double>::quiet_NaN();
      }
      const NetTensors net = tensorsOf(p, true);
      torch::Tensor logits;
      if (!head_.readsSegments()) {
        logits = forwardRows(testX, [&](const torch::Tensor& x) { return netLogits(head_, net, x, 1, {}); });
      } else {
        std::vector<torch::Tensor> weights;
        logits = forwardClips(testX, S_, testValid, [&](const torch::Tensor& x, const torch::Tensor& v) {
          torch::Tensor w;
          auto z = netLogits(head_, net, x, S_, v, &w);
          if (w.defined()) weights.push_back(w);
          return z;
        });
        if (!weights.empty()) r.testWeights = toVector(torch::cat(weights, 0).narrow(0, 0, logits.size(0)));
      }
      r.testProb = toVector(torch::sigmoid(logits).view(-1));
      if (sh_.opt.keepAllWeights) {
        r.net = netOf(p, t);
        r.hasNet = true;
      }
      TaskResult& tr = res.tasks[t];
      if (better(res, ps_[p].index, probeIndex(t, tr.selected))) {
        tr.selected = ps_[p].config;
        tr.selectedNet = netOf(p, t);
      }
      if (linear_ && better(res, ps_[p].index, probeIndex(t, tr.linear))) {
        tr.linear = ps_[p].config;
        tr.linearNet = netOf(p, t);
      }
    });
  }

 private:
  // Probe p's current or kept weights as a net of tensors.
  NetTensors tensorsOf(int64_t p, bool best) const {
    NetTensors net;
    for (size_t l = 0; l < prm_.W.size(); ++l) {
      net.w.push_back((best ? prm_.W[l].best : prm_.W[l].value)[p]);
      net.b.push_back((best ? prm_.B[l].best : prm_.B[l].value)[p]);
    }
    for (const auto& h : prm_.head) net.head.push_back((best ? h.best : h.value)[p]);
    return net;
  }

  // Probe p's kept weights as a Net, with its task's standardisation.
  Net netOf(int64_t p, int t) const {
    const Scaler& sc = sh_.scalers[t];
    Net net;
    if (sc.mean.defined()) {
      net.mean.assign(sc.mean.data_ptr<float>(), sc.mean.data_ptr<float>() + sc.mean.numel());
      net.std.assign(sc.std.data_ptr<float>(), sc.std.data_ptr<float>() + sc.std.numel());
    }
    for (size_t l = 0; l < prm_.W.size(); ++l) net.layers.push_back(layerOf(prm_.W[l].best[p], prm_.B[l].best[p]));
    net.head = head_.name();
    for (const auto& h : prm_.head) net.headLayers.push_back(layerOf(h.best[p], {}));
    return net;
  }

  // Runs fn(p, x, valid) for every probe with its task's rows of `split` (0 validation, 1 test): the cached rows
  // for one-vector probes; for segment probes the rows of one task at a time, built once for all its probes.
  template <typename Fn>
  void withEvalRows(int split, const Fn& fn) {
    if (!head_.readsSegments()) {
      for (int64_t p = 0; p < P_; ++p) {
        int t = ps_[p].task;
        fn(p, split == 0 ? sh_.valX[t] : sh_.testX[t], split == 0 ? sh_.valValid[t] : sh_.testValid[t]);
      }
      return;
    }
    std::vector<bool> done(P_, false);
    for (int64_t q = 0; q < P_; ++q) {
      if (done[q]) continue;
      const int t = ps_[q].task;
      const EvalRows e = evalRows(sh_, split == 0 ? sh_.tasks[t].val : sh_.tasks[t].test, t);
      for (int64_t p = q; p < P_; ++p) {
        if (ps_[p].task != t) continue;
        fn(p, e.x, e.valid);
        done[p] = true;
      }
    }
  }

  // Index into Result::probes of task t's config c (results are task-major); -1 for none.
  int probeIndex(int t, int c) const { return c < 0 ? -1 : t * static_cast<int>(sh_.configs.size()) + c; }

  // Lower kept validation loss wins; ties (and NaN against NaN) go to the earlier config of the grid.
  static bool better(const Result& res, int cand, int incumbent) {
    if (incumbent < 0) return true;
    double a = res.probes[cand].bestValLoss, b = res.probes[incumbent].bestValLoss;
    if (std::isnan(b) && !std::isnan(a)) return true;
    if (std::isnan(a)) return false;
    if (a != b) return a < b;
    return res.probes[cand].config < res.probes[incumbent].config;
  }

  Shared& sh_;
  const Head& head_;
  const std::vector<ProbeSpec>& ps_;
  StackParams& prm_;
  int64_t P_, S_;
  bool linear_;  // a zero-hidden-layer probe on one vector per clip: a candidate for the instrument's linear column
};

}  // namespace

void ensureEvalData(Shared& sh, int t, bool rows) {
  const Task& task = sh.tasks[t];
  if (!sh.valY[t].defined()) sh.valY[t] = targetsOf(task.val).to(sh.device);
  if (!rows || sh.valX[t].defined()) return;
  auto val = evalRows(sh, task.val, t), test = evalRows(sh, task.test, t);
  sh.valX[t] = val.x;
  sh.valValid[t] = val.valid;
  sh.testX[t] = test.x;
  sh.testValid[t] = test.valid;
}

void evaluateEpoch(Shared& sh, const Arch& arch, const std::vector<ProbeSpec>& ps, StackParams& prm, Result& res,
                   int64_t epoch, std::vector<float>& bestLoss) {
  StackEval(sh, arch, ps, prm).evaluate(res, epoch, bestLoss);
}

void finishStack(Shared& sh, const Arch& arch, const std::vector<ProbeSpec>& ps, StackParams& prm, Result& res) {
  StackEval(sh, arch, ps, prm).finish(res);
}

}  // namespace calmkit::probes
