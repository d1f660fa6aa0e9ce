"""Averages the weights of checkpoints of one model ("model soup") into a new checkpoint.

  python training/average.py OUT.pt A.pt B.pt [C.pt ...]

The checkpoints must come from one lineage (each run resuming the last), so that their weights
lie in one basin and their mean is a model; export the result like any checkpoint
(`export.py asr OUT.pt --f16`) and keep it only if it scores better on validation. A path
given twice counts twice: `average.py OUT A.pt B.pt B.pt` weights B 2:1 against A.
"""
import sys

import torch


def average(paths):
    states = [torch.load(p, map_location="cpu") for p in paths]
    first = states[0]
    for path, state in zip(paths[1:], states[1:]):
        if state.keys() != first.keys():
            sys.exit(f"average.py: {path} has other tensors than {paths[0]}: "
                     f"{sorted(state.keys() ^ first.keys())[:5]}")
        for name, tensor in state.items():
            if tensor.shape != first[name].shape:
                sys.exit(f"average.py: tensor {name} is {tuple(tensor.shape)} in {path} "
                         f"but {tuple(first[name].shape)} in {paths[0]}")
    # integer buffers (step counters, if any) are taken from the first checkpoint
    return {name: (sum(s[name].double() for s in states) / len(states)).to(t.dtype)
            if t.is_floating_point() else t
            for name, t in first.items()}


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    torch.save(average(sys.argv[2:]), sys.argv[1])
