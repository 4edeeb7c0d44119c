#!/usr/bin/env python3
"""Cross-checks Lethe's Llama model against Hugging Face transformers.

Run by tools/device/hf_reference_check.sh on a machine with PyTorch and
transformers (Lethe's CI machines have neither). Two directions:

  --out DIR      builds a tiny random transformers.LlamaForCausalLM (fp32,
                 GQA, rope_theta 500), saves it with save_pretrained into
                 DIR/hf_tiny_llama/ (config.json, model.safetensors) and its
                 eager-attention logits for fixed inputs into
                 DIR/hf_tiny_llama/reference_logits.safetensors. These files
                 are libs/model/testdata/hf_tiny_llama/, read by
                 libs/model/hf_reference_test.cc. It does the same for one
                 tiny model of each other family Lethe implements
                 (DIR/hf_tiny_<family>/ for llama3, qwen2, mistral, phi3,
                 gemma, gemma2; see FAMILIES), read by hf_reference_test's
                 HfFamilyReferenceTest once copied to libs/model/testdata/.
  --reverse DIR  loads checkpoints that Lethe wrote (DIR/lethe_<name>/, made by
                 hf_reference_test with LETHE_HF_REVERSE_OUT=DIR; Llama and
                 every other family) with transformers' AutoModelForCausalLM
                 and compares its logits with the ones Lethe computed
                 (DIR/lethe_<name>_logits.safetensors).

Logits are compared only at real (attention_mask == 1) positions: what a
padded query position produces is implementation-defined.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import traceback

import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import (AutoConfig, AutoModelForCausalLM, LlamaConfig,
                          LlamaForCausalLM)

VOCAB = 64
PAD_ID = 0
ROPE_THETA = 500.0


def tiny_config():
    kwargs = dict(
        vocab_size=VOCAB,
        hidden_size=16,
        intermediate_size=40,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        initializer_range=0.3,
        bos_token_id=1,
        eos_token_id=2,
    )
    # transformers 5 keeps rope_theta inside rope_parameters; 4.x takes it as
    # a keyword of its own.
    # (forward_direction checks the theta the model really uses.)
    if int(transformers.__version__.split(".")[0]) >= 5:
        kwargs["rope_parameters"] = {"rope_type": "default",
                                     "rope_theta": ROPE_THETA}
    else:
        kwargs["rope_theta"] = ROPE_THETA
    return LlamaConfig(**kwargs)


def transformers_major():
    return int(transformers.__version__.split(".")[0])


def rope_kwargs(theta, scaling=None):
    """rope_theta / rope_scaling in the form this transformers takes."""
    if transformers_major() >= 5:
        parameters = {"rope_type": "default", "rope_theta": theta}
        if scaling:
            parameters.update(scaling)
        return {"rope_parameters": parameters}
    return {"rope_theta": theta, "rope_scaling": scaling}


COMMON = dict(vocab_size=VOCAB, intermediate_size=40, num_hidden_layers=3,
              num_attention_heads=4, num_key_value_heads=2,
              max_position_embeddings=512, rms_norm_eps=1e-5,
              initializer_range=0.3, bos_token_id=1, eos_token_id=2)

# Tiny models of the other families, each with what distinguishes it. The
# inputs are 12 tokens long, so the sliding windows below cut in.
FAMILIES = {
    # head_dim 8, theta 500: wavelengths 6.3, 29.7, 140, 664 against
    # original 256 / low 1 / high 4: kept, kept, blended, divided by 8.
    "llama3": lambda: AutoConfig.for_model(
        "llama", hidden_size=32, tie_word_embeddings=True, **COMMON,
        **rope_kwargs(500.0, {"rope_type": "llama3", "factor": 8.0,
                              "low_freq_factor": 1.0,
                              "high_freq_factor": 4.0,
                              "original_max_position_embeddings": 256})),
    "qwen2": lambda: AutoConfig.for_model(
        "qwen2", hidden_size=16, tie_word_embeddings=True,
        use_sliding_window=False, **COMMON, **rope_kwargs(1e6)),
    "mistral": lambda: AutoConfig.for_model(
        "mistral", hidden_size=16, sliding_window=5, **COMMON,
        **rope_kwargs(10000.0)),
    "phi3": lambda: AutoConfig.for_model(
        "phi3", hidden_size=16, sliding_window=6,
        original_max_position_embeddings=512, pad_token_id=0,
        **COMMON, **rope_kwargs(10000.0)),
    "gemma": lambda: AutoConfig.for_model(
        "gemma", hidden_size=12, head_dim=8, hidden_act="gelu_pytorch_tanh",
        hidden_activation="gelu_pytorch_tanh", pad_token_id=0,
        tie_word_embeddings=True, **COMMON, **rope_kwargs(10000.0)),
    "gemma2": lambda: AutoConfig.for_model(
        "gemma2", hidden_size=12, head_dim=6, hidden_act="gelu_pytorch_tanh",
        hidden_activation="gelu_pytorch_tanh", pad_token_id=0,
        query_pre_attn_scalar=6, sliding_window=4,
        attn_logit_softcapping=5.0, final_logit_softcapping=8.0,
        tie_word_embeddings=True, **COMMON, **rope_kwargs(10000.0)),
}


def use_eager(model):
    try:
        model.set_attn_implementation("eager")
    except Exception as error:  # Older transformers: set it on the config.
        print("set_attn_implementation:", repr(error))
        model.config._attn_implementation = "eager"
    return model.config._attn_implementation


def effective_rope_theta(model):
    """The base that the model's rotary inv_freq was really computed with."""
    inv_freq = model.model.rotary_emb.inv_freq.double()
    head_dim = 2 * inv_freq.numel()
    # inv_freq[1] = theta ** (-2 / head_dim)
    return float(inv_freq[1] ** (-head_dim / 2.0))


def max_diff_real(a, b, mask):
    keep = mask.bool()
    return float((a.double() - b.double()).abs()[keep].max())


def hf_logits(model, input_ids, attention_mask=None, position_ids=None):
    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=attention_mask,
                    position_ids=position_ids, use_cache=False)
    return out.logits


def cases(generator):
    """Fixed inputs: right-padded, left-padded (with positions), no mask."""
    ids = torch.randint(3, VOCAB, (2, 12), generator=generator)
    right_mask = torch.ones(2, 12, dtype=torch.long)
    right_mask[1, 8:] = 0
    right_ids = ids.masked_fill(right_mask == 0, PAD_ID)
    left_mask = torch.ones(2, 12, dtype=torch.long)
    left_mask[1, :5] = 0
    left_ids = ids.masked_fill(left_mask == 0, PAD_ID)
    left_positions = (left_mask.cumsum(-1) - 1).clamp(min=0)
    return {
        "right": dict(input_ids=right_ids, attention_mask=right_mask),
        "left": dict(input_ids=left_ids, attention_mask=left_mask,
                     position_ids=left_positions),
        "nomask": dict(input_ids=ids[:1].clone()),
    }


def forward_direction(out_dir, family="llama"):
    """Writes DIR/hf_tiny_<family>/ (hf_tiny_llama for plain Llama)."""
    torch.manual_seed(0)
    config = tiny_config() if family == "llama" else FAMILIES[family]()
    make = (LlamaForCausalLM if family == "llama"
            else AutoModelForCausalLM.from_config)
    model = make(config).float().eval()
    print("attn_implementation:", use_eager(model))
    # Larger weights than the default init, so the logits are far from
    # uniform; norm weights away from 1 so a (1 + w) or missing-weight bug
    # shows.
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if "norm" in name:
                # Gemma's RMSNorm scales by 1 + w.
                center = 0.0 if config.model_type.startswith("gemma") else 1.0
                parameter.copy_(center + 0.2 * noise)
            else:
                parameter.copy_(0.3 * noise)
    try:
        theta = effective_rope_theta(model)
    except Exception as error:  # Not every family keeps one rotary_emb.
        print("effective rope_theta unavailable:", repr(error))
        theta = float("nan")
    print("effective rope_theta (from inv_freq):", theta)
    if family == "llama" and abs(theta - ROPE_THETA) > 1e-6 * ROPE_THETA:
        print(f"WARNING: transformers uses rope_theta {theta}, not {ROPE_THETA}")

    model_dir = os.path.join(out_dir, "hf_tiny_" + family)
    os.makedirs(model_dir, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            model.save_pretrained(tmp, safe_serialization=True)
        except TypeError:
            model.save_pretrained(tmp)
        print("save_pretrained wrote:", sorted(os.listdir(tmp)))
        for name in ("config.json", "model.safetensors"):
            shutil.copy(os.path.join(tmp, name), os.path.join(model_dir, name))
    print("config.json as transformers wrote it:")
    print(open(os.path.join(model_dir, "config.json")).read())

    model64 = make(config).eval()
    use_eager(model64)
    model64.load_state_dict(model.state_dict())
    model64 = model64.double()

    tensors = {}
    for case, inputs in cases(torch.Generator().manual_seed(1)).items():
        logits32 = hf_logits(model, **inputs)
        logits64 = hf_logits(model64, **inputs)
        mask = inputs.get("attention_mask",
                          torch.ones_like(inputs["input_ids"]))
        print(f"{case}: logits std {float(logits32.std()):.3f}, "
              f"|fp32 - fp64| max over real positions "
              f"{max_diff_real(logits32, logits64, mask):.3e}")
        for key, value in inputs.items():
            tensors[f"{case}.{key}"] = value.contiguous()
        tensors[f"{case}.logits_f32"] = logits32.contiguous()
        # transformers' fp64 eager path turns fully masked (left-padding)
        # rows into NaN that leaks into later layers; keep finite ones only.
        if bool(torch.isfinite(logits64).all()):
            tensors[f"{case}.logits_f64"] = logits64.contiguous()

    hf_config = model.config
    metadata = {
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "rope_theta": repr(round(theta, 4)),
        "rms_norm_eps": repr(float(hf_config.rms_norm_eps)),
        "vocab_size": str(hf_config.vocab_size),
        "hidden_size": str(hf_config.hidden_size),
        "intermediate_size": str(hf_config.intermediate_size),
        "num_hidden_layers": str(hf_config.num_hidden_layers),
        "num_attention_heads": str(hf_config.num_attention_heads),
        "num_key_value_heads": str(hf_config.num_key_value_heads),
        "tie_word_embeddings": str(bool(hf_config.tie_word_embeddings)).lower(),
        "attn_implementation": str(model.config._attn_implementation),
        "model_type": str(hf_config.model_type),
        "made_by": "tools/device/hf_reference.py",
    }
    save_file(tensors, os.path.join(model_dir, "reference_logits.safetensors"),
              metadata=metadata)
    print("metadata:", json.dumps(metadata))

    try:
        # Reload what was saved, as a user of the checkpoint would, and check it
        # reproduces the logits exactly.
        reloaded = AutoModelForCausalLM.from_pretrained(
            model_dir, dtype=torch.float32).eval()
        use_eager(reloaded)
        r = cases(torch.Generator().manual_seed(1))["right"]
        print("reloaded checkpoint reproduces logits: max diff "
              f"{max_diff_real(hf_logits(reloaded, **r), tensors['right.logits_f32'], r['attention_mask']):.3e}")

        if torch.cuda.is_available():
            cuda_model = AutoModelForCausalLM.from_config(config).eval()
            use_eager(cuda_model)
            cuda_model.load_state_dict(model.state_dict())
            cuda_model = cuda_model.cuda()
            cuda_logits = hf_logits(cuda_model,
                                    **{k: v.cuda() for k, v in r.items()}).cpu()
            print("transformers on CUDA (fp32) vs CPU fp64: max diff "
                  f"{max_diff_real(cuda_logits, tensors['right.logits_f64'], r['attention_mask']):.3e}")
    except Exception:  # Extra checks only; the files are written.
        traceback.print_exc()


def reverse_direction(reverse_dir):
    report = {}
    names = sorted(d[len("lethe_"):] for d in os.listdir(reverse_dir)
                   if d.startswith("lethe_")
                   and os.path.isdir(os.path.join(reverse_dir, d)))
    if not names:
        print("no Lethe checkpoints in", reverse_dir)
        return 1
    worst = 0.0
    for name in names:
        model_dir = os.path.join(reverse_dir, f"lethe_{name}")
        model, info = AutoModelForCausalLM.from_pretrained(
            model_dir, dtype=torch.float32, output_loading_info=True)
        model.eval()
        use_eager(model)
        try:
            theta = effective_rope_theta(model)
        except Exception:  # Not every family keeps one rotary_emb.
            theta = float("nan")
        tied = (model.lm_head.weight.data_ptr()
                == model.model.embed_tokens.weight.data_ptr())
        print(f"[lethe_{name}] {type(model).__name__}; loading info {info}; "
              f"effective rope_theta "
              f"{theta}; lm_head tied to embeddings: {tied}")
        lethe = load_file(os.path.join(reverse_dir,
                                       f"lethe_{name}_logits.safetensors"))
        entry = {"loading_info": {k: [str(x) for x in v]
                                  for k, v in info.items()},
                 "rope_theta": theta, "tied": tied}
        for case in ("right", "left", "nomask"):
            if f"{case}.input_ids" not in lethe:
                continue
            inputs = {k.split(".", 1)[1]: v for k, v in lethe.items()
                      if k.startswith(case + ".") and not k.endswith("logits")}
            logits = hf_logits(model, **inputs)
            mask = inputs.get("attention_mask",
                              torch.ones_like(inputs["input_ids"]))
            diff = max_diff_real(logits, lethe[f"{case}.logits"], mask)
            worst = max(worst, diff)
            entry[case] = diff
            print(f"[lethe_{name}] {case}: transformers vs Lethe logits, max "
                  f"abs diff over real positions {diff:.3e} (logits std "
                  f"{float(logits.std()):.3f})")
        report[name] = entry
    print("REVERSE max abs diff (all Lethe checkpoints):", f"{worst:.3e}")
    print("REVERSE report:", json.dumps(report))
    return 0 if worst <= 1e-4 else 2


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out")
    parser.add_argument("--reverse")
    args = parser.parse_args()
    print("torch", torch.__version__, "transformers", transformers.__version__)
    if torch.cuda.is_available():
        print("GPU:", torch.cuda.get_device_name(0))
    rc = 0
    if args.out:
        for family in ["llama"] + sorted(FAMILIES):
            print(f"== hf_tiny_{family}")
            try:
                forward_direction(args.out, family)
            except Exception:
                traceback.print_exc()
                rc = 3
    if args.reverse:
        try:
            rc = max(rc, reverse_direction(args.reverse))
        except Exception:
            traceback.print_exc()
            rc = 4
    return rc


if __name__ == "__main__":
    sys.exit(main())
