#!/usr/bin/python3
"""PyTorch eager peer of Lethe's NPO_RT unlearning step.

benchmarks/unlearning_step_throughput runs this script (with Debian's
/usr/bin/python3 and python3-torch, i.e. the same LibTorch 1.13 shared
libraries) on the same model, weights and token ids, and compares the two.
It is not meant to be run by hand, but can be:

  /usr/bin/python3 benchmarks/unlearning_step_peer.py --dir=DIR --steps=5

DIR holds what the C++ side wrote:
  config.json          the model's Hugging Face config (Lethe's writer)
  weights.safetensors  the initial weights, named as transformers names them
  batch.safetensors    forget_/retain_ input_ids, attention_mask, labels [B, T]

The step is Hugging Face's eager Llama (RMSNorm in fp32, rotate-half RoPE,
grouped-query attention by repeat_kv, an additive mask, softmax in fp32,
SwiGLU) and open-unlearning's NPO trainer loss, which is Lethe's NPO_RT:
  gamma * (2/beta) * mean(softplus(beta * (logp_forget - logp_ref)))
    + alpha * token-mean NLL(retain answers),
logp summed over answer tokens, the reference log-probs computed once from
the initial weights (cached), then clip_grad_norm_ and torch.optim.AdamW
(weight decay off on norm weights), the learning rate decaying linearly to 0
over the run without warm-up, as Lethe's trainer with warmup_epochs = 0.

Writes a JSON result to --output: per-step losses and seconds, the first
step's loss components and, with --profile_steps > 0, the self CPU time per
operator per step, averaged over that many more steps (torch.autograd.profiler
in its legacy mode, the profiler Lethe's C++ side uses too).
"""

import argparse
import json
import math
import struct
import time

import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = -100

_DTYPES = {
    "F32": torch.float32,
    "F64": torch.float64,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def read_safetensors(path):
    """Parses a safetensors file by hand: 8-byte little-endian header length,
    a JSON header, then the raw little-endian bytes of every tensor."""
    with open(path, "rb") as f:
        data = f.read()
    (header_length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + header_length])
    body = memoryview(data)[8 + header_length:]
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        dtype = _DTYPES[entry["dtype"]]
        raw = bytearray(body[begin:end])
        flat = (torch.frombuffer(raw, dtype=dtype) if raw else
                torch.empty(0, dtype=dtype))
        tensors[name] = flat.reshape(entry["shape"]).clone()
    return tensors


class RmsNorm(nn.Module):

    def __init__(self, size, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        x = x.to(torch.float32)
        variance = x.pow(2).mean(-1, keepdim=True)
        x = x * torch.rsqrt(variance + self.eps)
        return self.weight * x.to(dtype)


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def repeat_kv(x, repeats):
    if repeats == 1:
        return x
    batch, heads, length, dim = x.shape
    x = x[:, :, None, :, :].expand(batch, heads, repeats, length, dim)
    return x.reshape(batch, heads * repeats, length, dim)


class Attention(nn.Module):

    def __init__(self, config):
        super().__init__()
        hidden = config["hidden_size"]
        self.heads = config["num_attention_heads"]
        self.kv_heads = config.get("num_key_value_heads", self.heads)
        self.head_dim = config.get("head_dim") or hidden // self.heads
        self.q_proj = nn.Linear(hidden, self.heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(hidden, self.kv_heads * self.head_dim,
                                bias=False)
        self.v_proj = nn.Linear(hidden, self.kv_heads * self.head_dim,
                                bias=False)
        self.o_proj = nn.Linear(self.heads * self.head_dim, hidden, bias=False)

    def forward(self, x, cos, sin, mask):
        batch, length, _ = x.shape
        q = self.q_proj(x).view(batch, length, self.heads,
                                self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(batch, length, self.kv_heads,
                                self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(batch, length, self.kv_heads,
                                self.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = repeat_kv(k, self.heads // self.kv_heads)
        v = repeat_kv(v, self.heads // self.kv_heads)
        scores = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.head_dim)
        scores = scores + mask
        weights = F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        out = torch.matmul(weights, v).transpose(1, 2).reshape(
            batch, length, self.heads * self.head_dim)
        return self.o_proj(out)


class Mlp(nn.Module):

    def __init__(self, config):
        super().__init__()
        hidden, inner = config["hidden_size"], config["intermediate_size"]
        self.gate_proj = nn.Linear(hidden, inner, bias=False)
        self.up_proj = nn.Linear(hidden, inner, bias=False)
        self.down_proj = nn.Linear(inner, hidden, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):

    def __init__(self, config):
        super().__init__()
        eps = config["rms_norm_eps"]
        self.self_attn = Attention(config)
        self.mlp = Mlp(config)
        self.input_layernorm = RmsNorm(config["hidden_size"], eps)
        self.post_attention_layernorm = RmsNorm(config["hidden_size"], eps)

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class Backbone(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.embed_tokens = nn.Embedding(config["vocab_size"],
                                         config["hidden_size"])
        self.layers = nn.ModuleList(
            DecoderLayer(config) for _ in range(config["num_hidden_layers"]))
        self.norm = RmsNorm(config["hidden_size"], config["rms_norm_eps"])
        heads = config["num_attention_heads"]
        self.head_dim = config.get("head_dim") or config["hidden_size"] // heads
        self.rope_theta = config.get("rope_theta", 10000.0)

    def forward(self, input_ids, attention_mask):
        batch, length = input_ids.shape
        hidden = self.embed_tokens(input_ids)
        dtype = hidden.dtype
        # Causal and padding mask, additive, [B, 1, T, T].
        positions = torch.arange(length)
        allowed = positions[None, :] <= positions[:, None]
        allowed = allowed[None, None] & attention_mask.bool()[:, None, None, :]
        mask = torch.zeros(batch, 1, length, length, dtype=dtype)
        mask = mask.masked_fill(~allowed, torch.finfo(dtype).min)
        # Rotary tables, [B, 1, T, d].
        inv_freq = 1.0 / (self.rope_theta**(
            torch.arange(0, self.head_dim, 2, dtype=torch.float32) /
            self.head_dim))
        position_ids = positions[None, :].expand(batch, length)
        freqs = position_ids[..., None].float() * inv_freq
        angles = torch.cat((freqs, freqs), dim=-1)
        cos = angles.cos().to(dtype)[:, None]
        sin = angles.sin().to(dtype)[:, None]
        for layer in self.layers:
            hidden = layer(hidden, cos, sin, mask)
        return self.norm(hidden)


class LlamaForCausalLM(nn.Module):

    def __init__(self, config):
        super().__init__()
        assert config.get("model_type", "llama") == "llama", config
        assert not config.get("attention_bias") and not config.get("mlp_bias")
        assert not config.get("rope_scaling"), "rope_scaling is not mirrored"
        assert config.get("hidden_act", "silu") == "silu"
        assert not config.get("tie_word_embeddings"), "untied models only"
        self.model = Backbone(config)
        self.lm_head = nn.Linear(config["hidden_size"],
                                 config["vocab_size"],
                                 bias=False)

    def forward(self, input_ids, attention_mask):
        return self.lm_head(self.model(input_ids, attention_mask))


def token_nll(logits, labels):
    """Per-position NLL of the next label, [B, T-1], 0 where ignored."""
    shift_logits = logits[:, :-1, :].contiguous().float()
    shift_labels = labels[:, 1:].contiguous()
    nll = F.cross_entropy(shift_logits.view(-1, shift_logits.size(-1)),
                          shift_labels.view(-1),
                          ignore_index=IGNORE_INDEX,
                          reduction="none")
    return nll.view(labels.size(0), -1)


def answer_log_probs(model, batch):
    return -token_nll(model(batch["input_ids"], batch["attention_mask"]),
                      batch["labels"]).sum(1)


def token_mean_nll(model, batch):
    nll = token_nll(model(batch["input_ids"], batch["attention_mask"]),
                    batch["labels"])
    count = (batch["labels"][:, 1:] != IGNORE_INDEX).sum().clamp_min(1)
    return nll.sum() / count


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--steps", type=int, default=5,
                        help="optimizer steps, warm-up included")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--gamma", type=float, default=1.0)
    parser.add_argument("--learning_rate", type=float, default=1e-5)
    parser.add_argument("--weight_decay", type=float, default=0.01)
    parser.add_argument("--max_grad_norm", type=float, default=1.0)
    parser.add_argument("--profile_steps", type=int, default=0,
                        help="> 0: profile this many more steps after the "
                        "others and report the mean per step")
    parser.add_argument("--profile_shapes", type=int, default=0,
                        help="1: profile rows per operator and input shapes")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    with open(f"{args.dir}/config.json") as f:
        config = json.load(f)
    model = LlamaForCausalLM(config)
    weights = read_safetensors(f"{args.dir}/weights.safetensors")
    model.load_state_dict(weights, strict=True)
    model.train()
    tensors = read_safetensors(f"{args.dir}/batch.safetensors")
    forget = {k[len("forget_"):]: v for k, v in tensors.items()
              if k.startswith("forget_")}
    retain = {k[len("retain_"):]: v for k, v in tensors.items()
              if k.startswith("retain_")}

    # The frozen reference's log-probs, computed once (Lethe caches them
    # before training too); float64 as Lethe's cache stores them.
    with torch.no_grad():
        reference = answer_log_probs(model, forget).double()

    decayed = [p for n, p in model.named_parameters() if "norm" not in n]
    not_decayed = [p for n, p in model.named_parameters() if "norm" in n]
    optimizer = torch.optim.AdamW(
        [{"params": decayed, "weight_decay": args.weight_decay},
         {"params": not_decayed, "weight_decay": 0.0}],
        lr=args.learning_rate)
    parameters = decayed + not_decayed
    # The schedule's length counts the profiled step, as on the C++ side.
    total_steps = args.steps + args.profile_steps

    def step(index, components=None):
        optimizer.zero_grad()
        log_probs = answer_log_probs(model, forget)
        ref = reference.to(log_probs.dtype)
        npo = (2.0 / args.beta) * F.softplus(args.beta *
                                             (log_probs - ref)).mean()
        retain_nll = token_mean_nll(model, retain)
        loss = args.gamma * npo + args.alpha * retain_nll
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, args.max_grad_norm)
        lr = args.learning_rate * max(
            0.0, (total_steps - index) / max(1, total_steps))
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.step()
        if components is not None:
            components["forget_loss"] = npo.item()
            components["retain_nll"] = retain_nll.item()
            components["forget_log_prob_mean"] = log_probs.mean().item()
        return loss.item()

    losses, seconds = [], []
    first_components = {}
    for index in range(args.steps):
        start = time.perf_counter()
        losses.append(step(index, first_components if index == 0 else None))
        seconds.append(time.perf_counter() - start)

    profile = []
    profile_seconds = 0.0
    if args.profile_steps > 0:
        by_shape = bool(args.profile_shapes)
        with torch.autograd.profiler.profile(use_kineto=False,
                                             record_shapes=by_shape) as prof:
            for index in range(args.steps, total_steps):
                start = time.perf_counter()
                step(index)
                profile_seconds += time.perf_counter() - start
        profile_seconds /= args.profile_steps
        averages = sorted(prof.key_averages(group_by_input_shape=by_shape),
                          key=lambda e: e.self_cpu_time_total,
                          reverse=True)
        for event in averages:
            profile.append({
                "name": (f"{event.key} {event.input_shapes}"
                         if by_shape else event.key),
                "self_us": event.self_cpu_time_total / args.profile_steps,
                "calls": event.count // args.profile_steps,
            })

    with open(args.output, "w") as f:
        json.dump(
            {
                "torch_version": torch.__version__,
                "threads": torch.get_num_threads(),
                "losses": losses,
                "seconds": seconds,
                "first_step": first_components,
                "profile": profile,
                "profile_seconds": profile_seconds,
            }, f)


if __name__ == "__main__":
    main()
