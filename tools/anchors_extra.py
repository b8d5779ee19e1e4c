"""The two anchors that ../shared/anchors/export_official.py does not write, made the same way.

  REF=<dir with orpatashnik+StyleCLIP and openai+CLIP checkouts> /usr/bin/python3 tools/anchors_extra.py OUT \
      --clip ViT-B-32.pt

Writes OUT/g256/ffhq256.pt: a random-weight rosinality Generator(256, 512, 8) checkpoint ({g_ema, latent_avg},
biases and noise strengths perturbed as make_fullsize.py does), for export_official.py to export as the 256²
anchor; and OUT/clip_image_b16.onnx: the official encode_image exported like clip_image.onnx but for x
[16, 3, 224, 224] (export_official.py's image graph has batch 1 baked into its shapes).
`bench/anchors.ts` (npm run bench -- anchors) runs tools/make_anchors.sh, which calls this.
"""
import argparse, os, sys, types
import torch

ap = argparse.ArgumentParser()
ap.add_argument("out"); ap.add_argument("--clip")
a = ap.parse_args()
REF = os.environ["REF"]
torch.set_num_threads(2)
sys.modules["ftfy"] = types.SimpleNamespace(fix_text=lambda s: s)
torch.Tensor.cuda = lambda self, *x, **k: self
torch.nn.Module.cuda = lambda self, *x, **k: self

os.makedirs(os.path.join(a.out, "g256"), exist_ok=True)
sys.path.insert(0, os.path.join(REF, "orpatashnik+StyleCLIP"))
from models.stylegan2.model import Generator  # noqa: E402

torch.manual_seed(256)
g = Generator(256, 512, 8).eval()
with torch.no_grad():
    for name, p in g.named_parameters():
        if name.endswith("bias") or name.endswith("noise.weight"):
            p.add_(0.1 * torch.randn_like(p))
    latent_avg = g.mean_latent(4096)[0]
torch.save({"g_ema": g.state_dict(), "latent_avg": latent_avg}, os.path.join(a.out, "g256", "ffhq256.pt"))

if a.clip:
    sys.path.insert(0, os.path.join(REF, "openai+CLIP"))
    from clip import model as cm
    m = cm.build_model(torch.jit.load(a.clip, map_location="cpu").state_dict()).float().eval()

    class I(torch.nn.Module):
        def __init__(s, m): super().__init__(); s.m = m
        def forward(s, x): return s.m.encode_image(x)
    torch.onnx.export(I(m), (torch.randn(16, 3, 224, 224),), os.path.join(a.out, "clip_image_b16.onnx"),
                      input_names=["x"], output_names=["f"], opset_version=17)
print("ok")
