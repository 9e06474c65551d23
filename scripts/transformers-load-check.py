#!/usr/bin/env python3
"""Loads fp8q conversions in transformers (>= 5.17) and checks they load as transformers' own would.

For each `<fixture>-<format>` folder under --converted (made by `fp8q convert`, `--format hf` or
`compressed-tensors`):

- default load (`AutoModelForCausalLM.from_pretrained`, FP8 kept): no missing / unexpected /
  mismatched keys, no loading warning about unused or newly initialised weights, and every FP8
  parameter as loaded, times its scale, equals the file's `fp8 x scale_inv` (fused MoE experts
  compared with the per-expert tensors stacked the way transformers fuses them);
- dequantized load (`FineGrainedFP8Config(dequantize=True)` for hf, `CompressedTensorsConfig(
  run_compressed=False)` for compressed-tensors), float32: the same key checks, every weight equal
  to `fp8 x scale_inv` (count and largest difference where not), and the logits on the fixture's
  token ids against fp8q's own `fp8q logits` of the BF16 original (relative L2 error, arg-max
  agreement). Weights that transformers mis-reads are then replaced by `fp8 x scale_inv` computed
  here and the logits measured again, which tells a loader's fault from the checkpoint's.

transformers' FP8 matmul needs the `kernels` package; without it the FP8 forward is only tried and
its error reported. Writes results.json and prints one markdown row per conversion.

Usage: python3 scripts/transformers-load-check.py --converted DIR --fp8q-logits DIR --ids DIR --out DIR
  DIR for --fp8q-logits holds <fixture>.bf16.safetensors (and <fixture>.fp8.safetensors, fp8q's
  logits of its hf conversion); --ids holds <fixture>.logits.safetensors with `input_ids`.
"""

import argparse
import importlib.util
import json
import logging
import os
import re
import traceback
import warnings

import torch
from safetensors.torch import load_file

import transformers
from transformers import AutoModelForCausalLM

SUSPECT = re.compile(r"not used|unexpected|missing|newly initiali[sz]ed|mismatch|were not initiali[sz]ed", re.I)


class Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def read_folder(folder):
    tensors = {}
    for f in sorted(os.listdir(folder)):
        if f.endswith(".safetensors"):
            tensors.update(load_file(os.path.join(folder, f)))
    with open(os.path.join(folder, "config.json")) as fh:
        config = json.load(fh)
    return tensors, config


def block_of(config):
    qc = config["quantization_config"]
    if qc["quant_method"] == "fp8":
        return tuple(qc["weight_block_size"]), "_scale_inv"
    group = next(iter(qc["config_groups"].values()))
    return tuple(group["weights"]["block_structure"]), "_scale"


def expand(scale, shape, block):
    bn, bk = block
    s = scale.float().repeat_interleave(bn, dim=-2).repeat_interleave(bk, dim=-1)
    return s[..., : shape[-2], : shape[-1]]


def dequantized(w, scale, block):
    return w.float() * expand(scale, w.shape, block)


def expected_tensors(tensors, block, scale_suffix):
    """File tensors as float32 values (`fp8 x scale` for FP8 weights), plus the fused expert stacks."""
    out = {}
    for name, t in tensors.items():
        if name.endswith(scale_suffix) or name.endswith("activation_scale"):
            continue
        if t.dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
            out[name] = dequantized(t, tensors[name + scale_suffix], block)
        else:
            out[name] = t.float()
    # transformers 5 names Mixtral's block_sparse_moe "mlp".
    out.update({n.replace("block_sparse_moe", "mlp"): t for n, t in list(out.items()) if "block_sparse_moe" in n})
    # Per-expert linears as transformers 5 fuses them: gate_up_proj [E, 2I, H] (gate rows, then up), down_proj [E, H, I].
    per_expert = re.compile(r"^(.*)\.experts\.(\d+)\.(w1|w2|w3|gate_proj|up_proj|down_proj)\.weight$")
    groups = {}
    for name in out:
        m = per_expert.match(name)
        if m:
            groups.setdefault(m.group(1), {}).setdefault(int(m.group(2)), {})[m.group(3)] = out[name]
    for prefix, experts in groups.items():
        ids = sorted(experts)
        gate = lambda e: experts[e].get("w1", experts[e].get("gate_proj"))
        up = lambda e: experts[e].get("w3", experts[e].get("up_proj"))
        down = lambda e: experts[e].get("w2", experts[e].get("down_proj"))
        fused_prefix = prefix.replace("block_sparse_moe", "mlp")
        out[f"{fused_prefix}.experts.gate_up_proj"] = torch.stack([torch.cat([gate(e), up(e)], 0) for e in ids])
        out[f"{fused_prefix}.experts.down_proj"] = torch.stack([down(e) for e in ids])
    return out


def lookup(expected, name):
    for candidate in (name, name.replace("block_sparse_moe", "mlp"), name.removesuffix(".weight")):
        if candidate in expected:
            return expected[candidate]
    return None


def loaded_values(model, block):
    """Parameter name -> (float32 value as the model holds it, whether it was FP8), FP8 times its scale."""
    sd = model.state_dict()
    out = {}
    for name, t in sd.items():
        if "rotary_emb" in name or name.endswith("inv_freq") or "scale" in name.rsplit(".", 1)[-1]:
            continue
        if t.dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
            scale = None
            for s in (name + "_scale_inv", name.replace(".weight", ".weight_scale_inv"), name + "_scale", name.replace(".weight", ".weight_scale")):
                if s != name and s in sd:
                    scale = sd[s]
                    break
            if scale is None:
                out[name] = (None, True)
                continue
            out[name] = (dequantized(t.cpu(), scale.cpu(), block), True)
        else:
            out[name] = (t.detach().float().cpu(), False)
    return out


def compare_weights(model, expected, block):
    res = {"fp8_params": 0, "checked": 0, "equal": 0, "unmatched": [], "different": []}
    for name, (value, was_fp8) in loaded_values(model, block).items():
        res["fp8_params"] += int(was_fp8)
        want = lookup(expected, name)
        if value is None or want is None or tuple(want.shape) != tuple(value.shape):
            res["unmatched"].append(f"{name} {tuple(value.shape) if value is not None else 'no scale'}")
            continue
        res["checked"] += 1
        if torch.equal(value, want):
            res["equal"] += 1
        else:
            diff = (value - want).abs()
            rows = (diff.reshape(-1, diff.shape[-1]).amax(-1) > 0).nonzero().flatten()
            res["different"].append({
                "name": name,
                "shape": list(value.shape),
                "max_abs_diff": float(diff.max()),
                "rel_l2": float((value - want).norm() / want.norm()),
                "first_bad_row": int(rows[0]) if len(rows) else None,
                "bad_rows": int(len(rows)),
            })
    return res


def rel_l2(a, b):
    return float((a - b).norm() / b.norm())


def logits_report(logits, ref):
    return {"rel_l2": rel_l2(logits, ref), "argmax_agree": float((logits.argmax(-1) == ref.argmax(-1)).float().mean())}


def load(folder, **kwargs):
    cap = Capture()
    tlog = logging.getLogger("transformers")
    tlog.addHandler(cap)
    with warnings.catch_warnings(record=True) as pywarn:
        warnings.simplefilter("always")
        model, info = AutoModelForCausalLM.from_pretrained(folder, output_loading_info=True, device_map="cuda", **kwargs)
    tlog.removeHandler(cap)
    lines = cap.lines + [str(w.message) for w in pywarn]
    keys = {k: sorted(map(str, v)) for k, v in info.items() if v}
    return model, {"loading_info": keys, "warnings": lines, "suspect_warnings": [l for l in lines if SUSPECT.search(l)]}


def check(folder, fixture, fmt, fp8q_logits, ids):
    tensors, config = read_folder(folder)
    block, suffix = block_of(config)
    expected = expected_tensors(tensors, block, suffix)
    r = {"fixture": fixture, "format": fmt}
    if fmt == "compressed-tensors" and importlib.util.find_spec("compressed_tensors") is None:
        r["skipped"] = "the compressed-tensors package is not installed, and transformers needs it to read this format"
        return r
    try:
        model, meta = load(folder)
        r["default"] = {**meta, "weights": compare_weights(model, expected, block)}
        try:
            with torch.no_grad():
                out = model(ids.cuda()).logits.float().cpu()
            r["default"]["logits_vs_fp8q_bf16"] = logits_report(out, fp8q_logits["bf16"])
        except Exception as e:  # noqa: BLE001 - reported, not hidden
            r["default"]["forward_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
        del model
    except Exception as e:  # noqa: BLE001
        r["default"] = {"load_error": traceback.format_exc()[-2000:]}
    try:
        if fmt == "hf":
            from transformers import FineGrainedFP8Config

            qc = FineGrainedFP8Config(dequantize=True)
        else:
            from transformers import CompressedTensorsConfig

            qc = CompressedTensorsConfig(run_compressed=False)
        model, meta = load(folder, quantization_config=qc, dtype=torch.float32)
        # transformers 5.17 leaves Mixtral's router (not quantized) in the checkpoint's BF16 here;
        # upcasting it is exact, and the forward then runs in float32 throughout.
        r["params_not_float32"] = sorted({str(p.dtype) for p in model.parameters() if p.dtype != torch.float32})
        model.float()
        weights = compare_weights(model, expected, block)
        r["dequantized"] = {**meta, "weights": weights}
        with torch.no_grad():
            out = model(ids.cuda()).logits.float().cpu()
        r["dequantized"]["logits_vs_fp8q_bf16"] = logits_report(out, fp8q_logits["bf16"])
        if "fp8" in fp8q_logits:
            r["dequantized"]["fp8q_fp8_logits_vs_fp8q_bf16"] = logits_report(fp8q_logits["fp8"], fp8q_logits["bf16"])
            r["dequantized"]["logits_vs_fp8q_fp8"] = logits_report(out, fp8q_logits["fp8"])
        if weights["different"]:
            sd = model.state_dict()
            with torch.no_grad():
                for d in weights["different"]:
                    sd[d["name"]].copy_(lookup(expected, d["name"]).to(sd[d["name"]].dtype))
                fixed = model(ids.cuda()).logits.float().cpu()
            r["dequantized"]["logits_after_replacing_misread_weights"] = logits_report(fixed, fp8q_logits["bf16"])
        del model
    except Exception:  # noqa: BLE001
        r["dequantized"] = {"load_error": traceback.format_exc()[-2000:]}
    return r


def check_dequant_output(folder, fixture, fp8q_logits, ids):
    """`fp8q dequant` output: a plain BF16 checkpoint that must load like the original."""
    tensors, _ = read_folder(folder)
    r = {"fixture": fixture, "format": "fp8q dequant (bf16)"}
    try:
        model, meta = load(folder, dtype=torch.float32)
        r["default"] = {**meta, "weights": compare_weights(model, expected_tensors(tensors, (128, 128), "_scale_inv"), (128, 128))}
        with torch.no_grad():
            out = model(ids.cuda()).logits.float().cpu()
        r["default"]["logits_vs_fp8q_bf16"] = logits_report(out, fp8q_logits["bf16"])
        del model
    except Exception:  # noqa: BLE001
        r["default"] = {"load_error": traceback.format_exc()[-2000:]}
    return r


def verdict(part):
    if part is None:
        return "-"
    if "load_error" in part:
        return "load error: " + part["load_error"].strip().splitlines()[-1][:120]
    w = part["weights"]
    bits = [
        "keys ok" if not part["loading_info"] else "keys: " + json.dumps(part["loading_info"])[:200],
        "no unused-weight warning" if not part["suspect_warnings"] else f"{len(part['suspect_warnings'])} warning(s)",
        f"{w['equal']}/{w['checked']} tensors = fp8 x scale" + (f", {len(w['unmatched'])} unmatched" if w["unmatched"] else ""),
    ]
    if "logits_vs_fp8q_bf16" in part:
        l = part["logits_vs_fp8q_bf16"]
        bits.append(f"logits rel. err {l['rel_l2']:.3g} (top-1 {100 * l['argmax_agree']:.1f}%)")
    if "fp8q_fp8_logits_vs_fp8q_bf16" in part:
        bits.append(f"fp8q's FP8 forward: {part['fp8q_fp8_logits_vs_fp8q_bf16']['rel_l2']:.3g}")
    if "forward_error" in part:
        bits.append("FP8 forward: " + part["forward_error"][:100])
    if "logits_after_replacing_misread_weights" in part:
        bits.append(f"after replacing mis-read weights: {part['logits_after_replacing_misread_weights']['rel_l2']:.3g}")
    return "; ".join(bits)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--converted", required=True)
    ap.add_argument("--fp8q-logits", required=True)
    ap.add_argument("--ids", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--fixtures", default="llama,mixtral,deepseek_v3", help="comma-separated; a missing <fixture>-<format> folder is skipped")
    a = ap.parse_args()
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, kernels: {importlib.util.find_spec('kernels') is not None}, "
          f"compressed_tensors: {importlib.util.find_spec('compressed_tensors') is not None}, GPU: {torch.cuda.get_device_name(0)}", flush=True)
    results = []
    for fixture in a.fixtures.split(","):
        ids = load_file(os.path.join(a.ids, f"{fixture}.logits.safetensors"))["input_ids"]
        fp8q_logits = {k: load_file(os.path.join(a.fp8q_logits, f"{fixture}.{k}.safetensors"))["logits"] for k in ("bf16", "fp8") if os.path.exists(os.path.join(a.fp8q_logits, f"{fixture}.{k}.safetensors"))}
        for fmt, suffix in (("hf", "hf"), ("compressed-tensors", "ct")):
            folder = os.path.join(a.converted, f"{fixture}-{suffix}")
            if not os.path.isdir(folder):
                continue
            r = check(folder, fixture, fmt, fp8q_logits, ids)
            results.append(r)
            print(json.dumps(r, indent=1)[:6000], flush=True)
            torch.cuda.empty_cache()
        dq = os.path.join(a.converted, f"{fixture}-dq")
        if os.path.isdir(dq):
            r = check_dequant_output(dq, fixture, fp8q_logits, ids)
            results.append(r)
            print(json.dumps(r, indent=1)[:3000], flush=True)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "results.json"), "w") as fh:
        json.dump(results, fh, indent=1)
    print("\n| fixture | format | default FP8 load | dequantize=True load |\n| --- | --- | --- | --- |")
    for r in results:
        if "skipped" in r:
            print(f"| {r['fixture']} | {r['format']} | not run: {r['skipped']} | |")
        else:
            print(f"| {r['fixture']} | {r['format']} | {verdict(r.get('default'))} | {verdict(r.get('dequantized'))} |")


if __name__ == "__main__":
    main()
