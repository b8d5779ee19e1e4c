"""PyTorch anchor for `npm run bench -- train-clip`: CLIP ViT training steps at a given configuration.

The architecture of OpenAI's clip/model.py (ViT image tower, causal text transformer, QuickGELU,
pre-norm residual blocks with nn.MultiheadAttention), written from the paper's description, trained with
the symmetric contrastive loss and AdamW (decay on tensors of two or more dimensions), on random images
and token rows of the given context. Prints one JSON line: images per second over the timed steps (median wall time) and CPU seconds per step.

    python3 tools/clip_train_anchor.py --size 64 --patch 8 --width 128 --layers 4 --text-width 128 \
        --text-layers 4 --embed 128 --batch 64 --context 40 --steps 3
"""
import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class Block(nn.Module):
    def __init__(self, width, heads, mask=None):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), QuickGELU(), nn.Linear(4 * width, width))
        self.mask = mask

    def forward(self, x):  # [L, B, W]
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=self.mask)[0]
        return x + self.mlp(self.ln_2(x))


class Clip(nn.Module):
    def __init__(self, a):
        super().__init__()
        grid = a.size // a.patch
        s = a.width ** -0.5
        self.conv1 = nn.Conv2d(3, a.width, a.patch, a.patch, bias=False)
        self.class_embedding = nn.Parameter(s * torch.randn(a.width))
        self.vis_pos = nn.Parameter(s * torch.randn(grid * grid + 1, a.width))
        self.ln_pre = nn.LayerNorm(a.width)
        self.visual = nn.Sequential(*[Block(a.width, a.width // 64) for _ in range(a.layers)])
        self.ln_post = nn.LayerNorm(a.width)
        self.proj = nn.Parameter(s * torch.randn(a.width, a.embed))
        mask = torch.full((a.context, a.context), float("-inf")).triu_(1)
        self.token_embedding = nn.Embedding(49408, a.text_width)
        self.pos = nn.Parameter(0.01 * torch.randn(a.context, a.text_width))
        self.text = nn.Sequential(*[Block(a.text_width, a.text_width // 64, mask) for _ in range(a.text_layers)])
        self.ln_final = nn.LayerNorm(a.text_width)
        self.text_projection = nn.Parameter(a.text_width ** -0.5 * torch.randn(a.text_width, a.embed))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def encode_image(self, x):
        x = self.conv1(x)  # [B, W, g, g]
        x = x.flatten(2).permute(0, 2, 1)  # [B, g², W]
        cls = self.class_embedding.expand(x.shape[0], 1, -1)
        x = self.ln_pre(torch.cat([cls, x], 1) + self.vis_pos)
        x = self.visual(x.permute(1, 0, 2)).permute(1, 0, 2)  # [B, L, W]
        return self.ln_post(x[:, 0]) @ self.proj

    def encode_text(self, tokens):
        x = self.token_embedding(tokens) + self.pos  # [B, L, W]
        x = self.text(x.permute(1, 0, 2)).permute(1, 0, 2)
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0]), tokens.argmax(-1)] @ self.text_projection


def main():
    p = argparse.ArgumentParser()
    for k, v in dict(size=64, patch=8, width=128, layers=4, text_width=128, text_layers=4, embed=128,
                     batch=64, context=40, steps=3, threads=0).items():
        p.add_argument("--" + k.replace("_", "-"), type=int, default=v)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = Clip(a)
    decay = [q for q in model.parameters() if q.ndim >= 2]
    rest = [q for q in model.parameters() if q.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                            lr=5e-4, betas=(0.9, 0.98), eps=1e-6)
    images = torch.randn(a.batch, 3, a.size, a.size)
    tokens = torch.randint(1, 49000, (a.batch, a.context))
    tokens[:, -1] = 49407
    labels = torch.arange(a.batch)

    def step():
        img = F.normalize(model.encode_image(images), dim=-1)
        txt = F.normalize(model.encode_text(tokens), dim=-1)
        logits = model.logit_scale.exp() * img @ txt.t()
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))

    step()  # warm-up
    times = []
    cpu0 = time.process_time()  # all threads of the process: robust on a busy machine
    for _ in range(a.steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    cpu = (time.process_time() - cpu0) / a.steps
    times.sort()
    median = times[len(times) // 2]
    print(json.dumps({"images_per_s": a.batch / median, "step_s": median, "cpu_s_per_step": cpu,
                      "torch": torch.__version__, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
