"""Run by tests/core/test_train.py under ``torchrun --nproc_per_node 2``: trains a tiny
pipeline with DDP (gloo on CPU) and writes each rank's final weights and losses."""

import json
import os
import sys

import torch

import diffusekit as dk

torch.set_num_threads(1)
out = sys.argv[1]
rank = int(os.environ["RANK"])
torch.manual_seed(100 + rank)  # different initial weights per rank: DDP must broadcast rank 0's
pipe = dk.Pipeline.from_config({"process": "vp", "parameterization": "eps",
                                "network": {"name": "mlp", "dim": 2, "hidden": 16, "depth": 1}})
data = dk.create("dataset", {"name": "moons", "n": 256})
res = dk.train(pipe, data, steps=6, batch_size=32, lr=1e-2, ema=None, out_dir=os.path.join(out, "run"))
import torch.distributed as dist  # noqa: E402

from safetensors.torch import save_file  # noqa: E402

save_file({k: v.contiguous() for k, v in pipe.network.state_dict().items()},
          os.path.join(out, f"rank{rank}.safetensors"))
with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
    json.dump({"world": dist.get_world_size(), "losses": res.losses}, f)
dist.barrier()
dist.destroy_process_group()
