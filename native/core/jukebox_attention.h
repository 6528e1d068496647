// Jukebox's three factorised attention kinds (spec 3.4) as batched matrix products on reshaped views: no
// per-position or per-block loops, so the same code is the fast path on a GPU.
#pragma once
#include <torch/torch.h>

#include <string>

namespace calmkit::jukebox {

enum class AttnKind { Row = 0, Column = 1, PrevBlock = 2 };

// Batched: the logits as batched products, an fp32 masked softmax, the weighted sum (jukebox's order of
// operations; the faithful path). Fused: LibTorch's scaled_dot_product_attention on the same blocked views
// (on the CPU its flash kernel: online softmax in fp32, no logits tensor), used by the CPU bf16 fast path.
enum class AttnImpl { Batched, Fused };

// Block d of an attn_order-2 prior uses kind d mod 3.
inline AttnKind attnKindForBlock(int64_t d) { return static_cast<AttnKind>(d % 3); }
const char* attnKindName(AttnKind k);
AttnKind parseAttnKind(const std::string& s);

// q, k, v: [B, H, T, d] with T a multiple of blockCtx. `scale2` multiplies the logits once after the matmul
// (jukebox's eval path). Softmax in float32, result in q's dtype. Returns [B, H, T, d].
//  - Row: position (b, j) sees (b, j') for j' <= j.
//  - Column: position (b, j) sees (b', j) for b' <= b.
//  - PrevBlock: position (b, j) sees all of block b-1, unmasked; block 0 sees a zero block (output 0).
torch::Tensor blockAttention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, AttnKind kind,
                             int64_t blockCtx, double scale2, AttnImpl impl = AttnImpl::Batched);

}  // namespace calmkit::jukebox
