#!/usr/bin/env python3
"""Writes the small checkpoints under tests/fixtures/weights/ that the
`sewd::weights` tests read.

Each `*.bin` is made by torch.save (the zip format of pytorch_model.bin);
`expected.safetensors` holds, for every tensor the tests check, a contiguous
f32 copy under the name `<file stem>/<tensor key>`, plus the weight-norm
folded conv weights that torch itself computes (`<stem>/folded`).

Run: /work/venv/bin/python scripts/make_weight_fixtures.py
"""
import collections
import os

import torch
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "weights")
os.makedirs(OUT, exist_ok=True)
torch.manual_seed(1234)
expected = {}


def save(stem, obj, protocol=2):
    torch.save(obj, os.path.join(OUT, stem + ".bin"), pickle_protocol=protocol)


def expect(stem, key, t):
    expected[f"{stem}/{key}"] = t.detach().to(torch.float32).contiguous().clone()


a = torch.randn(2, 3)
b = torch.randn(4)
# 1. contiguous f32 tensors (protocol 2, as torch.save writes by default),
#    one of them an nn.Parameter (pickled through _rebuild_parameter).
contiguous = {"a": a, "b": b, "scalar": torch.tensor(2.5), "p": torch.nn.Parameter(torch.randn(3))}
save("contiguous", contiguous)
for k, t in contiguous.items():
    expect("contiguous", k, t)

# 2. non-contiguous views: a transpose, and a slice with a storage offset that
#    shares its storage with another tensor.
base = torch.randn(4, 5)
views = {"t": torch.randn(3, 4).t(), "base": base, "slice": base[1:, 2:], "col": base[:, 3]}
save("views", views)
for k, t in views.items():
    expect("views", k, t)

# 3. other dtypes: f16 (also transposed), bf16, f64, int64 (num_batches_tracked).
h = torch.randn(3, 2).half()
dtypes = {
    "h": h,
    "ht": torch.randn(2, 3).half().t(),
    "bf": torch.randn(5).bfloat16(),
    "d": torch.randn(2, 2).double(),
    "num_batches_tracked": torch.tensor(7, dtype=torch.int64),
}
save("dtypes", dtypes)
for k, t in dtypes.items():
    expect("dtypes", k, t)

# 4. SEW-D positional conv with the old weight_norm API (weight_g / weight_v),
#    saved from a module's state_dict (an OrderedDict carrying _metadata), under
#    the `sew_d.` prefix, wrapped in a dict the way some trainers save it.
class PosConv(torch.nn.Module):
    def __init__(self, parametrize):
        super().__init__()
        self.conv = torch.nn.Conv1d(8, 8, kernel_size=5, padding=2, groups=2)
        if parametrize:
            self.conv = torch.nn.utils.parametrizations.weight_norm(self.conv, name="weight", dim=2)
        else:
            self.conv = torch.nn.utils.weight_norm(self.conv, name="weight", dim=2)
        with torch.no_grad():
            # make g differ from ||v|| so folding is visible
            for n, p in self.conv.named_parameters():
                if n.endswith("weight_g") or n.endswith("original0"):
                    p.mul_(torch.linspace(0.5, 1.5, p.numel()).reshape(p.shape))


old = PosConv(parametrize=False)
sd = collections.OrderedDict(
    ("sew_d.encoder.pos_conv_embed." + k, v) for k, v in old.state_dict().items()
)
sd._metadata = old.state_dict()._metadata
save("weightnorm_old", {"state_dict": sd, "epoch": 3})
for k, v in sd.items():
    expect("weightnorm_old", k, v)
with torch.no_grad():
    v, g = old.conv.weight_v, old.conv.weight_g  # g: [1, 1, k]
    w = torch._weight_norm(v, g, 2)
    # the same by hand: one norm per kernel position, over (out, in) channels
    assert torch.allclose(w, g * v / v.norm(dim=(0, 1), keepdim=True))
expect("weightnorm_old", "folded", w)

# 5. the parametrizations naming, no `sew_d.` prefix, protocol 4 (FRAME,
#    SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL), the module's own state_dict.
new = PosConv(parametrize=True)
sd_new = collections.OrderedDict(("encoder.pos_conv_embed." + k, v) for k, v in new.state_dict().items())
sd_new._metadata = new.state_dict()._metadata
save("weightnorm_param", sd_new, protocol=4)
for k, v in sd_new.items():
    expect("weightnorm_param", k, v)
with torch.no_grad():
    expect("weightnorm_param", "folded", new.conv.weight)

path = os.path.join(OUT, "expected.safetensors")
save_file(expected, path, metadata={"made_by": "make_weight_fixtures.py"})
os.chmod(path, 0o644)
total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
print(f"wrote {len(os.listdir(OUT))} files, {total} bytes, to {os.path.normpath(OUT)}")
