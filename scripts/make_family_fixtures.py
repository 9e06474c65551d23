"""Tiny random checkpoints of the model families fp8q has convert rules for, made by transformers.

Each family's config is built small (hidden 64, 2 layers, vocab 256, vision towers of one or two
blocks), the model is initialised with a fixed seed, cast to BF16 and written with
`save_pretrained`. The folder is then loaded back twice from disk (BF16 and float32) and run on
fixed token ids; `<name>.logits.safetensors` holds `input_ids` I64 [2, 24], `logits_bf16` and
`logits_f32` F32 [2, 24, vocab], as fixtures/models/README.md describes. Loading back from disk
is also the check that the written config.json and tensor names round-trip through transformers.

    python scripts/make_family_fixtures.py <out-dir> [family ...]

A family whose classes this transformers lacks is reported and skipped; the others still run.
"""

import json
import os
import sys
import traceback

import torch
import transformers
from safetensors.torch import save_file

VOCAB = 256
HIDDEN = 64
IDS_HIGH = 240  # token ids stay below the special (image, video, …) ids placed at the vocabulary's end

SPECIAL = {"image_token_id": 250, "video_token_id": 251, "vision_start_token_id": 252, "vision_end_token_id": 253}

TEXT = dict(
    vocab_size=VOCAB,
    hidden_size=HIDDEN,
    intermediate_size=192,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    max_position_embeddings=256,
    tie_word_embeddings=False,
)


def families():
    return {
        # Vision-language models: the language model is a Qwen2 / Qwen3 / Ministral 3 / Gemma 3 / Llama 4 decoder.
        "qwen2_5_vl": (
            "Qwen2_5_VLForConditionalGeneration",
            "qwen2_5_vl",
            dict(
                text_config=dict(TEXT, model_type="qwen2_5_vl_text", rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}),
                vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=HIDDEN, patch_size=14,
                                   spatial_merge_size=2, temporal_patch_size=2, window_size=56, fullatt_block_indexes=[1]),
                **SPECIAL,
            ),
        ),
        "qwen3_vl": (
            "Qwen3VLForConditionalGeneration",
            "qwen3_vl",
            dict(
                text_config=dict(TEXT, model_type="qwen3_vl_text",
                                 rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3], "mrope_interleaved": True}),
                vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=HIDDEN, patch_size=16,
                                   spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=16, deepstack_visual_indexes=[0]),
                **SPECIAL,
            ),
        ),
        "qwen3_vl_moe": (
            "Qwen3VLMoeForConditionalGeneration",
            "qwen3_vl_moe",
            dict(
                text_config=dict(TEXT, model_type="qwen3_vl_moe_text", num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                                 decoder_sparse_step=1, mlp_only_layers=[],
                                 rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3], "mrope_interleaved": True}),
                vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=HIDDEN, patch_size=16,
                                   spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=16, deepstack_visual_indexes=[0]),
                **SPECIAL,
            ),
        ),
        "mistral3": (
            "Mistral3ForConditionalGeneration",
            "mistral3",
            dict(
                text_config=dict(TEXT, model_type="ministral3"),
                vision_config=dict(model_type="pixtral", hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                   head_dim=16, image_size=64, patch_size=16),
                image_token_index=250,
                spatial_merge_size=2,
            ),
        ),
        "gemma3": (
            "Gemma3ForConditionalGeneration",
            "gemma3",
            dict(
                text_config=dict(TEXT, model_type="gemma3_text", sliding_window=8, layer_types=["sliding_attention", "full_attention"],
                                 tie_word_embeddings=True),
                vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                   num_attention_heads=2, image_size=32, patch_size=8),
                mm_tokens_per_image=4,
                boi_token_index=250,
                eoi_token_index=251,
                image_token_index=252,
                tie_word_embeddings=True,
            ),
        ),
        "gemma3_text": (
            "Gemma3ForCausalLM",
            "gemma3_text",
            dict(TEXT, sliding_window=8, layer_types=["sliding_attention", "full_attention"], tie_word_embeddings=True),
        ),
        "llama4": (
            "Llama4ForConditionalGeneration",
            "llama4",
            dict(
                text_config=dict(TEXT, model_type="llama4_text", intermediate_size=32, intermediate_size_mlp=192, num_local_experts=4,
                                 num_experts_per_tok=1, interleave_moe_layer_step=2, attention_chunk_size=16),
                vision_config=dict(model_type="llama4_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                   num_attention_heads=2, image_size=32, patch_size=16, vision_output_dim=64,
                                   projector_input_dim=64, projector_output_dim=64, pixel_shuffle_ratio=0.5),
                image_token_index=250,
                boi_token_index=251,
                eoi_token_index=252,
            ),
        ),
        "glm4_moe": (
            "Glm4MoeForCausalLM",
            "glm4_moe",
            dict(TEXT, moe_intermediate_size=32, first_k_dense_replace=1, n_routed_experts=4, n_shared_experts=1, num_experts_per_tok=2,
                 n_group=1, topk_group=1, norm_topk_prob=True, routed_scaling_factor=2.5, partial_rotary_factor=0.5,
                 attention_bias=True, use_qk_norm=False),
        ),
        "qwen3_next": (
            "Qwen3NextForCausalLM",
            "qwen3_next",
            dict(TEXT, moe_intermediate_size=32, shared_expert_intermediate_size=32, num_experts=4, num_experts_per_tok=2,
                 decoder_sparse_step=1, mlp_only_layers=[], layer_types=["linear_attention", "full_attention"],
                 linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=16, linear_value_head_dim=16,
                 linear_conv_kernel_dim=4, partial_rotary_factor=0.25),
        ),
        "gpt_oss": (
            "GptOssForCausalLM",
            "gpt_oss",
            dict(TEXT, intermediate_size=32, num_local_experts=4, num_experts_per_tok=2, sliding_window=8,
                 layer_types=["sliding_attention", "full_attention"]),
        ),
        "minimax_m2": (
            "MiniMaxM2ForCausalLM",
            "minimax_m2",
            dict(TEXT, intermediate_size=32, num_local_experts=4, num_experts_per_tok=2, rotary_dim=8, use_qk_norm=True),
        ),
        "deepseek_v2": (
            "DeepseekV2ForCausalLM",
            "deepseek_v2",
            dict(TEXT, num_key_value_heads=4, moe_intermediate_size=32, first_k_dense_replace=1, n_routed_experts=4, n_shared_experts=1, num_experts_per_tok=2,
                 q_lora_rank=None, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16, topk_method="greedy",
                 n_group=1, topk_group=1, routed_scaling_factor=1.0, norm_topk_prob=False),
        ),
        "deepseek_v32": (
            "DeepseekV32ForCausalLM",
            "deepseek_v32",
            dict(TEXT, num_key_value_heads=4, moe_intermediate_size=32, first_k_dense_replace=1, n_routed_experts=4, n_shared_experts=1, num_experts_per_tok=2,
                 q_lora_rank=32, kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16, n_group=1, topk_group=1,
                 index_n_heads=4, index_head_dim=16, index_topk=8),
        ),
    }


def build(cls_name, model_type, kwargs):
    config = transformers.AutoConfig.for_model(model_type, **kwargs)
    cls = getattr(transformers, cls_name)
    torch.manual_seed(0)
    model = cls(config)
    # Parameters a family's init leaves unset (torch.empty) would be garbage: give them small normals.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not torch.isfinite(p).all() or p.abs().max() > 1e6:
                print(f"  re-initialised {name} (not finite after init)")
                p.normal_(0.0, 0.02)
    return model.to(torch.bfloat16).eval(), cls


def logits_of(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits.float().cpu()


def main():
    out = sys.argv[1]
    wanted = sys.argv[2:]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, {device}")
    gen = torch.Generator().manual_seed(1234)
    ids = torch.randint(0, IDS_HIGH, (2, 24), generator=gen, dtype=torch.int64)
    report = {}
    for name, (cls_name, model_type, kwargs) in families().items():
        if wanted and name not in wanted:
            continue
        print(f"== {name}")
        try:
            model, cls = build(cls_name, model_type, kwargs)
            folder = os.path.join(out, name)
            model.save_pretrained(folder)
            bf16 = cls.from_pretrained(folder, dtype=torch.bfloat16, attn_implementation="eager").to(device).eval()
            logits_bf16 = logits_of(bf16, ids.to(device))
            del bf16
            f32 = cls.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager").to(device).eval()
            logits_f32 = logits_of(f32, ids.to(device))
            del f32
            save_file({"input_ids": ids.contiguous(), "logits_bf16": logits_bf16.contiguous(), "logits_f32": logits_f32.contiguous()},
                      os.path.join(out, f"{name}.logits.safetensors"))
            rel = ((logits_bf16 - logits_f32).norm() / logits_f32.norm()).item()
            size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
            report[name] = {"ok": True, "bytes": size, "bf16_vs_f32": rel, "shape": list(logits_f32.shape)}
            print(f"  ok: {size} bytes, bf16 vs f32 logits rel {rel:.3e}")
        except Exception as e:  # a family missing from this transformers is reported, not fatal
            traceback.print_exc()
            report[name] = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump(report, f, indent=1)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
