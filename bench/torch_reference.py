#!/usr/bin/python3
"""
The uvu model (src/model/model.ts) in plain PyTorch: an independent reference for its maths and
for its training speed. Hugging Face semantics, uvu parameter names:

  vision tower  SigLIP-style ViT: 16-px patches (Linear patch_embed) + fixed 2D sin-cos positions,
                pre-LayerNorm blocks (fused qkv, bidirectional attention within an image,
                GELU-tanh MLP), post LayerNorm, 2x2 merge (the four 16-px tokens of a 32-px patch
                are adjacent), 2-layer GELU MLP projector to the decoder width (Qwen2.5-VL merger).
  decoder       Qwen2: RMSNorm, RoPE (rotate-half layout), grouped-query causal attention with q/k/v
                biases, SwiGLU MLP, final RMSNorm, head tied to embed_tokens.
  loss          w_img * mean CE over image-code targets + w_text * mean CE over text targets
                (src/train/loss.ts).

Weights come from a uvu model.safetensors (parsed here with json + numpy: the format is an 8-byte
header length, a JSON header and raw little-endian data), the batch from a batch.safetensors that
the caller writes (ids, targets, masks, images; see test/torch-reference.test.ts and
bench/train-vs-torch.ts).

  check:  torch_reference.py check WEIGHTS BATCH OUT
          writes OUT (safetensors): logits (n,V) at supervised rows, loss_total/loss_image/loss_text,
          and grad.<name> for every parameter.
  speed:  torch_reference.py speed WEIGHTS BATCH --threads N --steps S
          times S full training steps (zero_grad, forward, loss, backward, clip to norm 1, AdamW)
          after one warm-up step; prints one JSON line {"seconds": [...], "cpu": [...], "threads": N}
          (wall and process CPU seconds per step).
          Set OMP_WAIT_POLICY=PASSIVE in the environment (the benchmark does) so idle OpenMP
          threads do not spin against the other process.
"""
import json
import math
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

VIT_PATCH = 16
DTYPES = {"F32": np.float32, "F64": np.float64, "I32": np.int32, "I64": np.int64, "U8": np.uint8}
NP_TO_SAFE = {np.dtype(v): k for k, v in DTYPES.items()}


def read_safetensors(path):
    """(tensors: name -> numpy array, metadata: dict) of a safetensors file."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    out = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        out[name] = np.frombuffer(data[b:e], dtype=DTYPES[info["dtype"]]).reshape(info["shape"]).copy()
    return out, meta


def write_safetensors(path, tensors):
    header, offset, bodies = {}, 0, []
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        raw = a.tobytes()
        header[name] = {"dtype": NP_TO_SAFE[a.dtype], "shape": list(a.shape), "data_offsets": [offset, offset + len(raw)]}
        bodies.append(raw)
        offset += len(raw)
    js = json.dumps(header).encode()
    js += b" " * ((8 - (8 + len(js)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(js)) + js + b"".join(bodies))


class UvuTorch:
    """The model's forward pass over a dict of leaf tensors named as in uvu (HF layouts: Linear [out, in])."""

    def __init__(self, config, params):
        self.v = config["vision_config"]
        self.t = config["text_config"]
        self.p = params
        self.tables = {}

    def linear(self, x, name, bias=True):
        return F.linear(x, self.p[name + ".weight"], self.p[name + ".bias"] if bias else None)

    # ------------------------------------------------------------------ vision tower

    def pos2d(self, rows, cols):
        """2D sin-cos positions (rows*cols*4, Cv) in merge order, computed in float64 like model.ts."""
        key = ("pos2d", rows, cols)
        if key not in self.tables:
            Cv = self.v["hidden_size"]
            q = Cv // 4
            out = np.zeros((rows * cols * 4, Cv))
            w = 1.0 / np.power(10000.0, np.arange(q) / q)
            tok = 0
            for r in range(rows):
                for c in range(cols):
                    for s in range(4):
                        y, x = 2 * r + (s >> 1), 2 * c + (s & 1)
                        out[tok, :q], out[tok, q:2 * q] = np.sin(y * w), np.cos(y * w)
                        out[tok, 2 * q:3 * q], out[tok, 3 * q:4 * q] = np.sin(x * w), np.cos(x * w)
                        tok += 1
            self.tables[key] = torch.from_numpy(out.astype(np.float32))
        return self.tables[key]

    @staticmethod
    def vit_patches(pixels, rows, cols):
        """(rows*cols*4, 768): for each 32-px patch in raster order its four 16-px patches (TL, TR, BL, BR), HWC, in [-1, 1]."""
        a = pixels.reshape(rows, 2, VIT_PATCH, cols, 2, VIT_PATCH, 3).transpose(0, 3, 1, 4, 2, 5, 6)
        return torch.from_numpy((a.reshape(rows * cols * 4, VIT_PATCH * VIT_PATCH * 3).astype(np.float64) / 127.5 - 1).astype(np.float32))

    def layer_norm(self, x, name):
        return F.layer_norm(x, (x.shape[-1],), self.p[name + ".weight"], self.p[name + ".bias"], self.v["layer_norm_eps"])

    def encode_image(self, pixels, rows, cols):
        """Visual tokens (rows*cols, C) of one image."""
        Cv, H = self.v["hidden_size"], self.v["num_attention_heads"]
        hd = Cv // H
        n16 = rows * cols * 4
        x = self.linear(self.vit_patches(pixels, rows, cols), "visual.patch_embed") + self.pos2d(rows, cols)
        for l in range(self.v["num_hidden_layers"]):
            b = f"visual.blocks.{l}"
            h = self.layer_norm(x, b + ".norm1")
            q, k, v = self.linear(h, b + ".attn.qkv").view(n16, 3, H, hd).permute(1, 2, 0, 3)  # each (H, n16, hd)
            att = torch.softmax((q @ k.transpose(-1, -2)) / math.sqrt(hd), dim=-1)
            x = x + self.linear((att @ v).transpose(0, 1).reshape(n16, Cv), b + ".attn.proj")
            h2 = self.layer_norm(x, b + ".norm2")
            x = x + self.linear(F.gelu(self.linear(h2, b + ".mlp.fc1"), approximate="tanh"), b + ".mlp.fc2")
        x = self.layer_norm(x, "visual.post_layernorm").reshape(rows * cols, 4 * Cv)
        return self.linear(F.gelu(self.linear(x, "visual.merger.mlp.0"), approximate="tanh"), "visual.merger.mlp.2")

    # ------------------------------------------------------------------ decoder

    def rms_norm(self, x, name):
        var = x.pow(2).mean(-1, keepdim=True)
        return x * torch.rsqrt(var + self.t["rms_norm_eps"]) * self.p[name + ".weight"]

    def rope(self, positions):
        """cos, sin (B, T, 1, hd) for integer positions (B, T), HF rotate-half layout, float64 angles."""
        hd = self.t["hidden_size"] // self.t["num_attention_heads"]
        inv = 1.0 / np.power(float(self.t["rope_theta"]), np.arange(0, hd, 2) / hd)
        ang = positions.astype(np.float64)[..., None] * inv  # (B, T, hd/2)
        ang = np.concatenate([ang, ang], -1)[:, :, None, :]
        return torch.from_numpy(np.cos(ang).astype(np.float32)), torch.from_numpy(np.sin(ang).astype(np.float32))

    @staticmethod
    def rotate_half(x):
        h = x.shape[-1] // 2
        return torch.cat([-x[..., h:], x[..., :h]], -1)

    def hidden(self, batch):
        """Final hidden states (B*T, C)."""
        B, T = batch["B"], batch["T"]
        t = self.t
        C, H, Hkv = t["hidden_size"], t["num_attention_heads"], t["num_key_value_heads"]
        hd, g = C // H, H // Hkv
        x = self.p["model.embed_tokens.weight"][torch.from_numpy(batch["ids"].astype(np.int64))].view(B, T, C)
        if batch["images"]:
            rows_, cols_, pos_ = [], [], []
            for im in batch["images"]:
                n = im["rows"] * im["cols"]
                rows_ += [im["row"]] * n
                pos_ += range(im["start"], im["start"] + n)
            feats = torch.cat([self.encode_image(im["pixels"], im["rows"], im["cols"]) for im in batch["images"]], 0)
            x = x.index_put((torch.tensor(rows_), torch.tensor(pos_)), feats)
        cos, sin = self.rope(batch["positions"])
        # Causal mask, restricted to one sample's block when the batch names segments (packing).
        seg = torch.from_numpy(batch["segments"].astype(np.int64))  # (B, T)
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        allowed = causal[None] & (seg[:, :, None] == seg[:, None, :])  # (B, T, T)
        bias = torch.zeros(B, 1, T, T).masked_fill(~allowed[:, None], float("-inf"))
        for l in range(t["num_hidden_layers"]):
            b = f"model.layers.{l}"
            h = self.rms_norm(x, b + ".input_layernorm")
            q = self.linear(h, b + ".self_attn.q_proj").view(B, T, H, hd)
            k = self.linear(h, b + ".self_attn.k_proj").view(B, T, Hkv, hd)
            v = self.linear(h, b + ".self_attn.v_proj").view(B, T, Hkv, hd)
            q = (q * cos + self.rotate_half(q) * sin).transpose(1, 2)  # (B, H, T, hd)
            k = (k * cos + self.rotate_half(k) * sin).transpose(1, 2).repeat_interleave(g, dim=1)
            v = v.transpose(1, 2).repeat_interleave(g, dim=1)
            att = torch.softmax((q @ k.transpose(-1, -2)) / math.sqrt(hd) + bias, dim=-1)
            y = (att @ v).transpose(1, 2).reshape(B, T, C)
            x = x + self.linear(y, b + ".self_attn.o_proj", bias=False)
            h2 = self.rms_norm(x, b + ".post_attention_layernorm")
            gate = self.linear(h2, b + ".mlp.gate_proj", bias=False)
            up = self.linear(h2, b + ".mlp.up_proj", bias=False)
            x = x + self.linear(F.silu(gate) * up, b + ".mlp.down_proj", bias=False)
        return self.rms_norm(x, "model.norm").view(B * T, C)

    def head(self):
        return self.p["model.embed_tokens.weight"] if self.t["tie_word_embeddings"] else self.p["lm_head.weight"]

    def loss(self, batch, w_img, w_text):
        """(total, image, text, logits at supervised rows), as in src/train/loss.ts."""
        tm, im = batch["text_mask"] * (w_text > 0), batch["image_mask"] * (w_img > 0)
        rows = np.nonzero((tm > 0) | (im > 0))[0]
        hidden = self.hidden(batch)[torch.from_numpy(rows)]
        logits = hidden @ self.head().t()
        ce = F.cross_entropy(logits, torch.from_numpy(batch["targets"][rows].astype(np.int64)), reduction="none")
        zero = torch.zeros(())
        tmr, imr = torch.from_numpy(tm[rows]), torch.from_numpy(im[rows])
        text = (ce * tmr).sum() / tmr.sum() if tmr.sum() > 0 else zero
        image = (ce * imr).sum() / imr.sum() if imr.sum() > 0 else zero
        return w_text * text + w_img * image, image, text, logits


def load(weights_path, batch_path):
    weights, wmeta = read_safetensors(weights_path)
    config = json.loads(wmeta["model_config"])
    b, bmeta = read_safetensors(batch_path)
    info = json.loads(bmeta["batch"])
    B, T = info["B"], info["T"]
    images = [dict(im, pixels=b[f"image.{j}"]) for j, im in enumerate(info["images"])]
    batch = {
        "B": B, "T": T, "ids": b["ids"], "targets": b["targets"], "text_mask": b["text_mask"], "image_mask": b["image_mask"],
        "images": images,
        "positions": b["positions"].reshape(B, T) if "positions" in b else np.tile(np.arange(T), (B, 1)),
        "segments": b["segments"].reshape(B, T) if "segments" in b else np.zeros((B, T), np.int32),
    }
    params = {k: torch.from_numpy(v).requires_grad_(True) for k, v in weights.items()}
    return UvuTorch(config, params), batch, info.get("loss_weights", {"image": 0.5, "text": 1.0})


def check(weights_path, batch_path, out_path):
    torch.set_num_threads(1)
    model, batch, w = load(weights_path, batch_path)
    total, image, text, logits = model.loss(batch, w["image"], w["text"])
    total.backward()
    out = {"logits": logits.detach().numpy(), "loss_total": total.detach().numpy().reshape(1),
           "loss_image": image.detach().numpy().reshape(1), "loss_text": text.detach().numpy().reshape(1)}
    for name, p in model.p.items():
        out["grad." + name] = (p.grad if p.grad is not None else torch.zeros_like(p)).numpy()
    write_safetensors(out_path, out)


def speed(weights_path, batch_path, threads, steps):
    torch.set_num_threads(threads)
    model, batch, w = load(weights_path, batch_path)
    params = list(model.p.values())
    decay = [p for n, p in model.p.items() if p.dim() >= 2 and "norm" not in n]
    no_decay = [p for n, p in model.p.items() if not (p.dim() >= 2 and "norm" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.95), eps=1e-8)

    def step():
        opt.zero_grad(set_to_none=True)
        total = model.loss(batch, w["image"], w["text"])[0]
        total.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    step()  # warm-up
    seconds, cpu = [], []
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        seconds.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    print(json.dumps({"seconds": seconds, "cpu": cpu, "threads": torch.get_num_threads(), "torch": torch.__version__}))


def main(argv):
    if len(argv) == 4 and argv[0] == "check":
        check(*argv[1:])
    elif len(argv) >= 3 and argv[0] == "speed":
        opts = dict(zip(argv[3::2], argv[4::2]))
        speed(argv[1], argv[2], int(opts.get("--threads", "1")), int(opts.get("--steps", "3")))
    else:
        sys.exit("usage: torch_reference.py check WEIGHTS BATCH OUT | speed WEIGHTS BATCH [--threads N] [--steps S]")


if __name__ == "__main__":
    main(sys.argv[1:])
