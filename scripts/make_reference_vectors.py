#!/usr/bin/env python3
"""Generate FP8 reference vectors with PyTorch's float8 dtypes.

Usage:  python3 scripts/make_reference_vectors.py OUT_DIR

Writes into OUT_DIR:
  fp8_cast_bf16_all.safetensors    every BF16 bit pattern -> e4m3fn / e5m2 codes
  fp8_cast_f32_random.safetensors  1 Mi float32 values (specials, ties, random) -> codes
  block_quant.safetensors          block-scale weight quantization cases
  group_quant.safetensors          MLC rowwise_group_quant_fp8 cases

Everything is computed on CPU tensors (torch's CPU float8 casts are the
reference); inputs are built from fixed seeds, so reruns with the same torch
give byte-identical files. FP8 codes are stored as U8 (tensor.view(torch.uint8)).
See fixtures/reference-vectors/README.md.
"""

import hashlib
import json
import math
import os
import sys

import numpy as np

SEED = 20251126

E4M3_MAX = 448.0
E5M2_MAX = 57344.0


# --------------------------------------------------------------------------
# Pure numpy helpers (no torch) -- input construction
# --------------------------------------------------------------------------

def decode_e4m3_np(c):
    """Decode a positive e4m3fn code (0..0x7e) to a float (python float)."""
    e = (c >> 3) & 0xF
    m = c & 7
    if e == 0:
        return m * 2.0 ** -9
    return (1.0 + m / 8.0) * 2.0 ** (e - 7)


def decode_e5m2_np(c):
    """Decode a positive finite e5m2 code (0..0x7b) to a float."""
    e = (c >> 2) & 0x1F
    m = c & 3
    if e == 0:
        return m * 2.0 ** -16
    return (1.0 + m / 4.0) * 2.0 ** (e - 15)


def bf16_all_bits_np():
    """All 65536 BF16 bit patterns in order, as an int16 array (bit-identical)."""
    u = np.arange(65536, dtype=np.uint16)
    return u.view(np.int16)


def f32_special_values_np():
    """Hand-picked float32 values: ties, near-ties, boundaries, specials."""
    vals = []
    f32 = np.float32

    def add(v):
        vals.append(f32(v))

    def add_pm(v):
        """v, its float32 neighbours, all with both signs."""
        v = f32(v)
        with np.errstate(over="ignore"):  # nextafter(FLT_MAX, inf) = inf, wanted
            nbrs = (v, np.nextafter(v, f32(np.inf)), np.nextafter(v, f32(0)))
        for w in nbrs:
            vals.append(w)
            vals.append(-w)

    # e4m3fn: every code's value, every midpoint between adjacent codes (exact
    # ties) and their float32 neighbours.
    for c in range(0, 0x7F):
        add_pm(decode_e4m3_np(c))
    for c in range(0, 0x7E):
        add_pm((decode_e4m3_np(c) + decode_e4m3_np(c + 1)) / 2.0)
    # e5m2: same
    for c in range(0, 0x7C):
        add_pm(decode_e5m2_np(c))
    for c in range(0, 0x7B):
        add_pm((decode_e5m2_np(c) + decode_e5m2_np(c + 1)) / 2.0)
    # around max / beyond max (clamped, but kept for completeness)
    for v in (448, 449, 456, 464, 472, 480, 496, 512, 1e4,
              57344, 57345, 59392, 61439, 61440, 61441, 65504, 65536, 1e5,
              3.4028234663852886e38):
        add_pm(v)
    # subnormal fp8 ranges and below: quarter / half / 3-quarter steps
    for k in range(0, 64):
        add_pm(k * 2.0 ** -12)   # e4m3 subnormal step is 2^-9
        add_pm(k * 2.0 ** -19)   # e5m2 subnormal step is 2^-16
    # float32 subnormals and the smallest normals
    for k in (1, 2, 3, 0x7FFFFF, 0x400000, 0x800000):
        add_pm(np.array([k], dtype=np.uint32).view(np.float32)[0])
    # zeros, infinities, NaNs (several payloads, both signs)
    add(0.0)
    add(-0.0)
    add(np.inf)
    add(-np.inf)
    nan_bits = np.array([0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001,
                         0x7FFFFFFF, 0xFFFFFFFF, 0x7FA00000, 0xFFA00000],
                        dtype=np.uint32)
    vals.extend(nan_bits.view(np.float32).tolist())
    return np.array(vals, dtype=np.float32)


def f32_random_inputs_np(total=1 << 20):
    rng = np.random.default_rng(SEED)
    special = f32_special_values_np()

    def signed(mag):
        s = rng.integers(0, 2, size=mag.shape)
        return np.where(s == 1, -mag, mag).astype(np.float32)

    parts = [special]
    # random bit patterns: covers everything incl. NaN payloads and f32 subnormals
    parts.append(rng.integers(0, 1 << 32, size=65536, dtype=np.uint64)
                 .astype(np.uint32).view(np.float32))
    # dense in the e4m3 range
    parts.append(signed(2.0 ** rng.uniform(-11.0, 9.5, size=262144)))
    # dense in the e5m2 range
    parts.append(signed(2.0 ** rng.uniform(-18.0, 16.5, size=262144)))
    used = sum(p.size for p in parts)
    # wide exponent range for the rest
    parts.append(signed(2.0 ** rng.uniform(-30.0, 20.0, size=total - used)))
    out = np.concatenate(parts).astype(np.float32)
    assert out.size == total, out.size
    return out


# --------------------------------------------------------------------------
# torch part
# --------------------------------------------------------------------------

def main():
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)

    import torch
    from safetensors.torch import save_file

    torch.manual_seed(SEED)
    E4 = torch.float8_e4m3fn
    E5 = torch.float8_e5m2
    f32 = torch.float32
    base_meta = {
        "generator": "scripts/make_reference_vectors.py",
        "torch_version": torch.__version__,
        "device": "cpu",
    }
    summary = {"torch_version": torch.__version__, "numpy_version": np.__version__}

    def to_e4m3(x):
        return torch.clamp(x, -E4M3_MAX, E4M3_MAX).to(E4).view(torch.uint8)

    def to_e5m2(x):
        return torch.clamp(x, -E5M2_MAX, E5M2_MAX).to(E5).view(torch.uint8)

    def save(name, tensors, meta):
        path = os.path.join(out_dir, name)
        tensors = {k: v.contiguous() for k, v in tensors.items()}
        md = dict(base_meta)
        md.update(meta)
        save_file(tensors, path, metadata=md)
        return path

    # ---------------------------------------------------------------- 1
    bits = torch.from_numpy(bf16_all_bits_np().copy())
    # belt and braces: the way the brief suggested must give the same bits
    alt = torch.arange(65536, dtype=torch.int32).to(torch.int16)
    summary["arange(int32).to(int16) wraps like the uint16 bit patterns"] = bool(torch.equal(alt, bits))
    x = bits.view(torch.bfloat16)
    assert torch.equal(x.view(torch.int16).to(torch.int32) & 0xFFFF,
                       torch.arange(65536, dtype=torch.int32))
    assert x.view(torch.int16)[0x3F80].item() == 0x3F80
    assert x[0x3F80].item() == 1.0 and x[0xBF80].item() == -1.0
    e4 = to_e4m3(x)
    e5 = to_e5m2(x)
    codes = torch.arange(256, dtype=torch.int32).to(torch.uint8)
    e4dec = codes.view(E4).to(f32)
    e5dec = codes.view(E5).to(f32)
    save("fp8_cast_bf16_all.safetensors",
         {"input": x, "e4m3": e4, "e5m2": e5,
          "e4m3_decoded": e4dec, "e5m2_decoded": e5dec},
         {"e4m3": "torch.clamp(x, -448, 448).to(torch.float8_e4m3fn).view(torch.uint8)",
          "e5m2": "torch.clamp(x, -57344, 57344).to(torch.float8_e5m2).view(torch.uint8)",
          "input": "bf16 bit pattern i at index i"})

    # sanity values / facts
    def bf(v):
        return torch.tensor([v], dtype=torch.bfloat16)

    def code(t):
        return "0x%02x" % t.view(torch.uint8)[0].item()

    facts = {}
    for v in (448.0, 456.0, 464.0, 480.0, 1e4, float("inf"), float("-inf"),
              float("nan"), -0.0, 2.0 ** -10, 3 * 2.0 ** -10, 2.0 ** -9):
        facts["bf16 %r e4m3 clamp" % v] = code(to_e4m3(bf(v)))
        facts["bf16 %r e4m3 raw-cast" % v] = code(bf(v).to(E4))
    for v in (57344.0, 61440.0, 65536.0, float("inf"), float("-inf"), float("nan"), -0.0):
        facts["bf16 %r e5m2 clamp" % v] = code(to_e5m2(bf(v)))
        facts["bf16 %r e5m2 raw-cast" % v] = code(bf(v).to(E5))
    # NaNs by sign, over the whole BF16 NaN space
    xi = bits.to(torch.int32) & 0xFFFF
    isnan = torch.isnan(x)
    for sign, name in ((0, "+NaN"), (1, "-NaN")):
        sel = isnan & (((xi >> 15) & 1) == sign)
        facts["bf16 %s (%d patterns) e4m3 codes" % (name, int(sel.sum()))] = sorted(
            "0x%02x" % c for c in torch.unique(e4[sel]).tolist())
        facts["bf16 %s (%d patterns) e5m2 codes" % (name, int(sel.sum()))] = sorted(
            "0x%02x" % c for c in torch.unique(e5[sel]).tolist())
    facts["e4m3 decoded 0x7f, 0xff"] = [repr(e4dec[0x7F].item()), repr(e4dec[0xFF].item())]
    facts["e5m2 decoded 0x7b 0x7c 0x7d 0xfc"] = [repr(e5dec[c].item()) for c in (0x7B, 0x7C, 0x7D, 0xFC)]
    summary["facts"] = facts

    # ---------------------------------------------------------------- 2
    xf = torch.from_numpy(f32_random_inputs_np())
    f4 = to_e4m3(xf)
    f5 = to_e5m2(xf)
    save("fp8_cast_f32_random.safetensors",
         {"input": xf, "e4m3": f4, "e5m2": f5},
         {"e4m3": "torch.clamp(x, -448, 448).to(torch.float8_e4m3fn).view(torch.uint8)",
          "e5m2": "torch.clamp(x, -57344, 57344).to(torch.float8_e5m2).view(torch.uint8)",
          "seed": str(SEED)})
    f32nan = torch.isnan(xf)
    facts["f32 NaN inputs"] = int(f32nan.sum())
    facts["f32 NaN e4m3 codes"] = sorted("0x%02x" % c for c in torch.unique(f4[f32nan]).tolist())
    facts["f32 NaN e5m2 codes"] = sorted("0x%02x" % c for c in torch.unique(f5[f32nan]).tolist())

    # optional: does the CUDA cast agree with the CPU cast?
    try:
        if torch.cuda.is_available():
            dev = torch.device("cuda")
            summary["cuda_device"] = torch.cuda.get_device_name(0)
            for nm, inp, ref4, ref5 in (("bf16_all", x, e4, e5), ("f32_random", xf, f4, f5)):
                g = inp.to(dev)
                g4 = to_e4m3(g).cpu()
                g5 = to_e5m2(g).cpu()
                facts["cuda vs cpu mismatches %s e4m3" % nm] = int((g4 != ref4).sum())
                facts["cuda vs cpu mismatches %s e5m2" % nm] = int((g5 != ref5).sum())
                for rr, gg, fmt in ((ref4, g4, "e4m3"), (ref5, g5, "e5m2")):
                    idx = torch.nonzero(rr != gg).flatten()[:8]
                    if idx.numel():
                        facts["cuda vs cpu first diffs %s %s" % (nm, fmt)] = [
                            (repr(inp[i].float().item()), "cpu 0x%02x" % rr[i].item(),
                             "cuda 0x%02x" % gg[i].item()) for i in idx.tolist()]
    except Exception as ex:  # informational only
        facts["cuda comparison error"] = repr(ex)

    # ---------------------------------------------------------------- 3
    def pow2_round_up(scale):
        """scale: 0-d float32 tensor > 0 -> smallest power of two >= scale (float32)."""
        m, e = torch.frexp(scale)
        m = m.item()
        e = int(e.item())
        if m == 0.5:
            r = scale.clone()
        else:
            r = torch.tensor(math.ldexp(1.0, e), dtype=f32)
        assert scale.item() <= r.item() < 2 * scale.item()
        return r

    def block_quant(w, bn, bk, fp8_dtype, fp8_max, ue8m0=False):
        N, K = w.shape
        nb, kb = -(-N // bn), -(-K // bk)
        wf = w.to(f32)
        q = torch.empty((N, K), dtype=torch.uint8)
        s = torch.empty((nb, kb), dtype=f32)
        fmax = torch.tensor(fp8_max, dtype=f32)
        for bi in range(nb):
            for bj in range(kb):
                blk = wf[bi * bn:(bi + 1) * bn, bj * bk:(bj + 1) * bk]
                amax = blk.abs().max()
                assert amax.dtype == f32
                scale = amax / fmax
                assert scale.dtype == f32 and scale.dim() == 0
                if scale.item() == 0.0:
                    scale = torch.tensor(1.0, dtype=f32)
                elif ue8m0:
                    scale = pow2_round_up(scale)
                qq = torch.clamp(blk / scale, -fp8_max, fp8_max).to(fp8_dtype)
                q[bi * bn:(bi + 1) * bn, bj * bk:(bj + 1) * bk] = qq.view(torch.uint8)
                s[bi, bj] = scale
        return q, s

    g = torch.Generator().manual_seed(SEED + 3)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=f32)

    cases = {}
    # a: edge blocks both ways
    cases["a"] = ((randn(300, 200) * 0.02).to(torch.bfloat16), 128, 128)
    # b: one all-zero block, one row of outliers
    wb = randn(256, 384) * 0.02
    wb[0:128, 128:256] = 0.0
    wb[200, :] = 1e4 * (1.0 + torch.rand(384, generator=g)) * torch.sign(randn(384))
    cases["b"] = (wb.to(torch.bfloat16), 128, 128)
    # c: 160 rows (DeepSeek kv_a_proj_with_mqa-like)
    cases["c"] = ((randn(160, 256) * 0.05).to(torch.bfloat16), 128, 128)
    # d: small blocks
    cases["d"] = ((randn(100, 70) * 0.1).to(torch.bfloat16), 64, 64)
    # e: f32, wide dynamic range per row
    ex = torch.randint(-20, 21, (130, 1), generator=g).to(f32)
    cases["e"] = (randn(130, 129) * torch.pow(2.0, ex), 128, 128)
    # f: f16, non-square block
    cases["f"] = ((randn(64, 96) * 0.3).to(torch.float16), 32, 48)
    # g: bf16 subnormal-range values (bf16 subnormals < 2^-126 ~ 1.18e-38)
    cases["g"] = ((randn(128, 128) * 1e-39).to(torch.bfloat16), 128, 128)
    # h: f32 [64, 64], block 32x32: four blocks exercising the scale paths
    #   (0,0) f32-subnormal values whose amax/448 underflows to 0 -> scale 1.0
    #   (0,1) f32-subnormal values whose amax/448 is a nonzero subnormal scale
    #   (1,0) all zeros, with some -0.0 elements
    #   (1,1) ordinary values
    wh = torch.zeros(64, 64, dtype=f32)
    tiny = torch.tensor([2 ** -149], dtype=f32)  # smallest f32 subnormal
    wh[0:32, 0:32] = torch.randint(-100, 101, (32, 32), generator=g).to(f32) * tiny
    wh[0:32, 32:64] = torch.randint(-(1 << 20), (1 << 20) + 1, (32, 32), generator=g).to(f32) * tiny
    wh[32:64, 0:32] = 0.0
    wh[40, 0:32:3] = -0.0
    wh[32:64, 32:64] = randn(32, 32)
    cases["h"] = (wh, 32, 32)

    bq = {}
    bq_meta = {"formula": "amax=max|w| (f32); scale=amax/FP8_MAX (f32 div); scale==0 -> 1.0; "
                          "ue8m0: scale rounded up to 2^k via frexp; "
                          "q=fp8(clamp(w.float()/scale, -FP8_MAX, FP8_MAX)); scale_inv=scale"}
    for name, (w, bn, bk) in cases.items():
        bq["%s.w" % name] = w
        bq_meta["%s.block" % name] = "%dx%d" % (bn, bk)
        bq_meta["%s.dtype" % name] = str(w.dtype).replace("torch.", "")
        for tag, dt, mx, ue in (("e4m3", E4, E4M3_MAX, False),
                                ("e5m2", E5, E5M2_MAX, False),
                                ("e4m3_ue8m0", E4, E4M3_MAX, True)):
            q, s = block_quant(w, bn, bk, dt, mx, ue)
            assert not torch.isnan(s).any() and (s > 0).all() and torch.isfinite(s).all()
            # no NaN codes for finite input
            nanc = (0x7F, 0xFF) if dt == E4 else None
            if nanc:
                assert not ((q == 0x7F) | (q == 0xFF)).any(), (name, tag)
            else:
                assert not ((q & 0x7F) > 0x7B).any(), (name, tag)
            if ue:
                mant, _ = torch.frexp(s)
                assert (mant == 0.5).all(), (name, tag)
            bq["%s.%s.q" % (name, tag)] = q
            bq["%s.%s.scale_inv" % (name, tag)] = s
            # dequant sanity: relative error vs amax per block small
            deq = q.view(dt).to(f32) * s.repeat_interleave(bn, 0)[:w.shape[0]].repeat_interleave(bk, 1)[:, :w.shape[1]]
            err = (deq - w.to(f32)).abs().max().item()
            facts["block %s %s max|deq-w|" % (name, tag)] = "%.3e (max|w| %.3e)" % (
                err, w.to(f32).abs().max().item())
    facts["block h e4m3 scale_inv"] = [repr(v) for v in bq["h.e4m3.scale_inv"].flatten().tolist()]
    facts["block h e4m3_ue8m0 scale_inv"] = [repr(v) for v in bq["h.e4m3_ue8m0.scale_inv"].flatten().tolist()]
    facts["block h e4m3 codes in (-0.0) zero block"] = sorted(
        "0x%02x" % c for c in torch.unique(bq["h.e4m3.q"][32:64, 0:32]).tolist())
    facts["block g e4m3 scale_inv"] = [repr(v) for v in bq["g.e4m3.scale_inv"].flatten().tolist()]
    save("block_quant.safetensors", bq, bq_meta)

    # ---------------------------------------------------------------- 4
    def rowwise_group_quant_fp8(x, gs, eps=1e-10):
        M, K = x.shape
        G = -(-K // gs)
        q = torch.empty((M, K), dtype=torch.uint8)
        sc = torch.empty((M, G), dtype=f32)
        for j in range(G):
            xs = x[:, j * gs:(j + 1) * gs].to(f32)
            amax = torch.clamp(xs.abs().amax(dim=1, keepdim=True), min=eps)
            scale = amax / torch.tensor(E4M3_MAX, dtype=f32)
            assert scale.dtype == f32
            q[:, j * gs:(j + 1) * gs] = torch.clamp(xs / scale, -E4M3_MAX, E4M3_MAX).to(E4).view(torch.uint8)
            sc[:, j] = scale[:, 0]
        return q, sc

    gq = {}
    gq_meta = {"formula": "per row, per group: amax=max(max|x|, f32(1e-10)); scale=amax/448 (f32); "
                          "q=e4m3fn(clamp(x/scale, -448, 448))"}
    gcases = {}
    gcases["x1"] = (randn(5, 300) * 3.0, 128)
    x2 = randn(3, 256)
    x2[1, 128:256] = 0.0
    gcases["x2"] = (x2, 128)
    for name, (xx, gs) in gcases.items():
        q, sc = rowwise_group_quant_fp8(xx, gs)
        gq["%s.x" % name] = xx
        gq["%s.q" % name] = q
        gq["%s.scale" % name] = sc
        gq_meta["%s.group" % name] = str(gs)
    facts["group x2 zero-group scale"] = repr(gq["x2.scale"][1, 1].item())
    save("group_quant.safetensors", gq, gq_meta)

    # ---------------------------------------------------------------- summary
    files = {}
    for fn in sorted(os.listdir(out_dir)):
        if fn.endswith(".safetensors"):
            p = os.path.join(out_dir, fn)
            with open(p, "rb") as fh:
                data = fh.read()
            files[fn] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    summary["files"] = files
    text = json.dumps(summary, indent=1)
    print(text)
    with open(os.path.join(out_dir, "summary.json"), "w") as fh:
        fh.write(text + "\n")


if __name__ == "__main__":
    main()
