#include "core/jukebox_attention.h"

#include "core/error.h"

namespace calmkit::jukebox {
namespace {

// jukebox masks with w*M - 1e9*(1-M); for finite logits that equals filling the masked entries with -1e9,
// and doing it in float32 keeps -1e9 finite when the stream is half precision. `logits` is the caller's own
// fresh tensor: in float32 it is filled in place (the same values, one [.., n, n] tensor less per block).
torch::Tensor maskedSoftmax(const torch::Tensor& logits, const torch::Tensor& drop, c10::ScalarType outType) {
  torch::Tensor w = logits.to(torch::kFloat32);
  if (drop.defined()) w.masked_fill_(drop, -1e9);
  return torch::softmax(w, -1).to(outType);
}

torch::Tensor attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, const torch::Tensor& drop,
                     double scale2) {
  torch::Tensor w = torch::matmul(q, k.transpose(-1, -2));
  w.mul_(scale2);
  return torch::matmul(maskedSoftmax(w, drop, q.scalar_type()), v);
}

// The entries a causal n x n block masks out (above the diagonal).
torch::Tensor causalDrop(int64_t n, const torch::Device& device) {
  return torch::ones({n, n}, torch::TensorOptions().dtype(torch::kBool).device(device)).triu(1);
}

}  // namespace

const char* attnKindName(AttnKind k) {
  switch (k) {
    case AttnKind::Row:
      return "row";
    case AttnKind::Column:
      return "column";
    case AttnKind::PrevBlock:
      return "prev";
  }
  return "?";
}

AttnKind parseAttnKind(const std::string& s) {
  if (s == "row") return AttnKind::Row;
  if (s == "column") return AttnKind::Column;
  if (s == "prev" || s == "previous") return AttnKind::PrevBlock;
  throw Error(code::kInvalidArgument, "attention kind must be row, column or prev; got '" + s + "'");
}

torch::Tensor blockAttention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, AttnKind kind,
                             int64_t blockCtx, double scale2, AttnImpl impl) {
  TORCH_CHECK(q.dim() == 4 && k.sizes() == q.sizes() && v.sizes() == q.sizes(), "q, k, v must be [B, H, T, d] alike");
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), d = q.size(3);
  TORCH_CHECK(blockCtx > 0 && T % blockCtx == 0, "T must be a multiple of block_ctx");
  const int64_t nb = T / blockCtx;
  auto blocked = [&](const torch::Tensor& x) { return x.reshape({B, H, nb, blockCtx, d}); };
  // Either implementation on [B, H, groups, n, d] views: each group attends within itself over n positions.
  auto run = [&](const torch::Tensor& qq, const torch::Tensor& kk, const torch::Tensor& vv, bool causalMask) {
    if (impl == AttnImpl::Batched) {
      return attend(qq, kk, vv, causalMask ? causalDrop(qq.size(3), q.device()) : torch::Tensor(), scale2);
    }
    // The flash kernel takes 4-D [batch, heads, n, d]; merging B and H is a view for one clip.
    auto four = [](const torch::Tensor& x) {
      return x.reshape({x.size(0) * x.size(1), x.size(2), x.size(3), x.size(4)});
    };
    torch::Tensor out =
        at::scaled_dot_product_attention(four(qq), four(kk), four(vv), std::nullopt, 0.0, causalMask, scale2);
    return out.view(qq.sizes());
  };
  switch (kind) {
    case AttnKind::Row: {
      auto out = run(blocked(q), blocked(k), blocked(v), true);
      return out.reshape({B, H, T, d});
    }
    case AttnKind::Column: {
      // [B, H, nb, bc, d] -> [B, H, bc, nb, d]: each residue j becomes a causal sequence over blocks.
      auto col = [&](const torch::Tensor& x) { return blocked(x).transpose(2, 3); };
      auto out = run(col(q), col(k), col(v), true);
      return out.transpose(2, 3).reshape({B, H, T, d});
    }
    case AttnKind::PrevBlock: {
      // Keys/values shifted one block later with a zero block in front: block b attends to block b-1.
      auto shift = [&](const torch::Tensor& x) {
        auto xb = blocked(x);
        return torch::cat({torch::zeros_like(xb.narrow(2, 0, 1)), xb.narrow(2, 0, nb - 1)}, 2);
      };
      auto out = run(blocked(q), shift(k), shift(v), false);
      return out.reshape({B, H, T, d});
    }
  }
  throw Error(code::kInternal, "unknown attention kind");
}

}  // namespace calmkit::jukebox
