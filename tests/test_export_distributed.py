"""Past one machine: training with an exported custom op under torch.distributed (gloo, 2 processes, DDP).

Two processes each take half of every batch; DistributedDataParallel averages
their gradients, which equals the full batch's mean gradient. The parameters
after training must equal a single-process run on the full batches to rounding.
On a machine with CUDA, the same op on the GPU must match the CPU.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if not torch.distributed.is_available():
    pytest.skip("torch.distributed is not available", allow_module_level=True)

from symdl.export import define_op, export_module  # noqa: E402

WORKER = '''
import os, sys
import numpy as np
import torch
import torch.distributed as dist

rank, world, port, module_dir, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
sys.path.insert(0, module_dir)
import ddp_ops

torch.set_num_threads(1)
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(4, 8), ddp_ops.SwishBeta(beta=1.3), torch.nn.Linear(8, 1))
model = model.double()
if world > 1:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    model = torch.nn.parallel.DistributedDataParallel(model)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
data = np.random.default_rng(0)
for step in range(5):
    x = torch.tensor(data.standard_normal((8, 4)))
    y = torch.tensor(data.standard_normal((8, 1)))
    share = slice(rank * 8 // world, (rank + 1) * 8 // world)
    loss = ddp_ops.mse_loss(model(x[share]), y[share])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
params = model.module.parameters() if world > 1 else model.parameters()
if rank == 0:
    np.savez(out, *[p.detach().numpy() for p in params])
if world > 1:
    del model, optimizer, loss  # DDP's reducer holds the process group: release it before the group goes
    dist.barrier()  # no rank tears gloo down while the other still uses it (a SIGABRT at exit otherwise)
    dist.destroy_process_group()
    # Past this point only the interpreter's exit is left; torch's C++ globals torn down there aborted a rank
    # once in CI ("terminate called without an active exception", exit -6) after every result was written.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
'''


def _free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def test_ddp_with_an_exported_op_matches_one_process(tmp_path: Path) -> None:
    swish = define_op("swish_beta", "x * sigmoid(beta * x)", params={"beta": 1.0})
    export_module([swish, "mse_loss"], "torch", tmp_path / "ddp_ops.py")
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    single = tmp_path / "single.npz"
    subprocess.run([sys.executable, str(worker), "0", "1", "0", str(tmp_path), str(single)], check=True, timeout=300)
    port, parallel = _free_port(), tmp_path / "ddp.npz"
    ranks = [subprocess.Popen([sys.executable, str(worker), str(rank), "2", port, str(tmp_path), str(parallel)])
             for rank in (0, 1)]
    try:
        assert [p.wait(timeout=300) for p in ranks] == [0, 0]
    finally:
        for p in ranks:
            if p.poll() is None:
                p.kill()
    one, two = np.load(single), np.load(parallel)
    assert len(one.files) == 4
    for key in one.files:
        assert not np.array_equal(one[key], 0)
        np.testing.assert_allclose(two[key], one[key], rtol=1e-13, atol=1e-15)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu(tmp_path: Path) -> None:  # pragma: no cover - no GPU on the CI machine
    export_module(["gelu", "softmax", "huber_loss"], "torch", tmp_path / "gpu_ops.py")
    sys.path.insert(0, str(tmp_path))
    import gpu_ops

    x = torch.randn(64, 10, dtype=torch.float64)
    for function, args in ((gpu_ops.gelu, {}), (gpu_ops.softmax, {"dim": 1})):
        cpu = x.clone().requires_grad_(True)
        gpu = x.cuda().requires_grad_(True)
        out_cpu, out_gpu = function(cpu, **args), function(gpu, **args)
        (g_cpu,) = torch.autograd.grad(out_cpu.square().sum(), cpu)
        (g_gpu,) = torch.autograd.grad(out_gpu.square().sum(), gpu)
        assert out_gpu.device.type == "cuda"
        torch.testing.assert_close(out_gpu.cpu(), out_cpu)
        torch.testing.assert_close(g_gpu.cpu(), g_cpu)
