"""Data-parallel training on 2 CPU processes (gloo), and `stylize --shard K/N`.

The two ranks are started once per module (torch.multiprocessing, a file store
instead of a port) and write what they hold to files the tests then compare.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from PIL import Image
from typer.testing import CliRunner

from siamgan import convert as C
from siamgan import distributed
from siamgan import losses as L
from siamgan.cli import app
from siamgan.dcgan import train as DT
from siamgan.dcgan.models import DCGANConfig
from siamgan.models import DiscriminatorConfig, GeneratorConfig
from siamgan.runs import load_checkpoint
from siamgan.stylize import Stylizer

T = importlib.import_module("siamgan.train")  # the package exports a `train` function too

WORLD, PER_RANK, STEPS, LR = 2, 2, 3, 0.05
CPU = torch.device("cpu")


def config(steps: int = 2) -> T.TrainConfig:
    # The default recipe (spectral norm, critic, identity, EMA) at its smallest.
    return T.TrainConfig(tile_size=8, batch_size=PER_RANK, steps=steps,
                         generator=GeneratorConfig(4, 1),
                         discriminator=DiscriminatorConfig(latent_dim=8, channels=4, layers=2),
                         device="cpu", checkpoint_every=1, sample_every=1000)


def sgd_models(cfg: T.TrainConfig) -> T.Models:
    """float64 and plain SGD: the T-term amplifies rounding errors a thousandfold in a
    step, and an update linear in the gradient cannot hide a mismatch the way Adam can."""
    m = T.build_models(cfg, CPU)
    for module in (m.generator, m.discriminator, m.ema):
        module.double()
    m.opt_g = torch.optim.SGD(m.generator.parameters(), LR)
    m.opt_d = torch.optim.SGD(m.discriminator.parameters(), LR)
    return m


def global_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(7)
    shape = (WORLD * PER_RANK, 3, 16, 16)
    draw = lambda: torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1  # noqa: E731
    return [(draw(), draw()) for _ in range(STEPS)]


def weights(m) -> dict[str, torch.Tensor]:
    parts = {"g": T.unwrap(m.generator), "d": T.unwrap(m.discriminator)}
    if getattr(m, "ema", None) is not None:
        parts["ema"] = m.ema
    return {f"{p}.{k}": v.detach().clone() for p, mod in parts.items()
            for k, v in mod.state_dict().items()}


def images(folder: Path, n: int, size: tuple[int, int], seed: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def spy(module, holder: dict) -> None:
    """Keep the Models a trainer passes to its train_step (to read every rank's weights)."""
    step = module.train_step

    def wrapped(m, *args, **kwargs):
        holder["m"] = m
        return step(m, *args, **kwargs)

    module.train_step = wrapped


def worker(rank: int, tmp: Path) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp / 'store'}", rank=rank,
                            world_size=WORLD)
    try:
        # 1. train_step on this rank's share of fixed global batches.
        cfg = config()
        m = sgd_models(cfg)
        m.generator = distributed.wrap_ddp(m.generator, CPU)
        m.discriminator = distributed.wrap_ddp(m.discriminator, CPU)
        share = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
        for step, (a, b) in enumerate(global_batches()):
            T.train_step(m, a[share], b[share], cfg, step)
        torch.save(weights(m), tmp / f"step_{rank}.pt")

        # 2. The whole trainer, then a resume; rank 0 alone writes the run folder.
        held: dict = {}
        spy(T, held)
        runs = tmp / "runs"
        T.train(config(2), tmp / "a", tmp / "b", "run", runs, export=False, progress=False)
        torch.save(weights(held["m"]), tmp / f"train_{rank}.pt")
        T.train(config(3), tmp / "a", tmp / "b", "run", runs, resume=True, export=False,
                progress=False)
        torch.save(weights(held["m"]), tmp / f"resume_{rank}.pt")

        # 3. DCGAN, batch norm (BCE) and gradient penalty through DDP (WGAN-GP).
        spy(DT, held)
        for loss in ("bce", "wgan-gp"):
            dc = DT.DCGANTrainConfig(epochs=1, batch_size=PER_RANK, n_samples=4, device="cpu",
                                     model=DCGANConfig(64, nz=8, ngf=4, ndf=4, loss=loss))
            DT.train_dcgan(dc, tmp / "faces", f"dcgan-{loss}", runs, progress=False)
            torch.save(weights(held["m"]), tmp / f"dcgan-{loss}_{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("ddp")
    images(tmp / "a", 3, (40, 50), seed=1)
    images(tmp / "b", 3, (40, 50), seed=2)
    images(tmp / "faces", 8, (64, 64), seed=3)  # 8 faces / (2 ranks × 2) = 2 steps an epoch
    ctx = mp.start_processes(worker, args=(tmp,), nprocs=WORLD, join=False,
                             start_method="spawn")
    deadline = time.monotonic() + 120
    while not ctx.join(timeout=1):  # raises if a rank failed
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("the distributed run hung")
    return tmp


def load(tmp: Path, phase: str, rank: int) -> dict[str, torch.Tensor]:
    return torch.load(tmp / f"{phase}_{rank}.pt", weights_only=True)


@pytest.mark.parametrize("phase", ["step", "train", "resume", "dcgan-bce", "dcgan-wgan-gp"])
def test_ranks_hold_identical_weights(ranks, phase):
    r0, r1 = load(ranks, phase, 0), load(ranks, phase, 1)
    assert r0.keys() == r1.keys()
    for key in r0:
        if "running_" in key or "num_batches" in key:
            continue  # DCGAN batch norm: running statistics are per rank (see dcgan/train.py)
        assert torch.equal(r0[key], r1[key]), key


def blockwise_pairs(vec: torch.Tensor) -> torch.Tensor:
    """pair_vectors, but pairing each sample with the next one of its own rank's share."""
    return vec - vec.unflatten(0, (WORLD, -1)).roll(1, dims=1).flatten(0, 1)


def one_process(monkeypatch, pairs_within_ranks: bool) -> dict[str, torch.Tensor]:
    if pairs_within_ranks:
        monkeypatch.setattr(L, "pair_vectors", blockwise_pairs)
    cfg = config()
    m = sgd_models(cfg)
    for step, (a, b) in enumerate(global_batches()):
        T.train_step(m, a, b, cfg, step)
    monkeypatch.undo()
    return weights(m)


def test_ddp_matches_one_process_over_the_global_batch(ranks, monkeypatch):
    """DDP averages the ranks' gradients: the gradient of the mean of per-rank losses.

    Every term but T (and TraVeLGAN's MSE) is a mean over samples, so that mean
    is the loss of the global batch. T pairs each sample with the next one in
    its batch, within each rank's share under DDP: one process matches once it
    forms the same pairs, and visibly does not with pairs across the shares.
    """
    ddp = load(ranks, "step", 0)
    same_pairs = one_process(monkeypatch, pairs_within_ranks=True)
    other_pairs = one_process(monkeypatch, pairs_within_ranks=False)
    worst = max((ddp[k] - same_pairs[k]).abs().max().item() for k in ddp)
    moved = max((other_pairs[k] - same_pairs[k]).abs().max().item() for k in ddp)
    assert worst < 1e-9
    assert moved > 1e-2


def test_only_rank_0_writes_one_run_folder_and_resume_continues(ranks):
    run = ranks / "runs" / "run"
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoint.pt", "config.json", "losses.png", "run.json", "run.safetensors", "samples",
        "stats.jsonl"]
    lines = (run / "stats.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3]  # not one line per rank
    state = load_checkpoint(run)
    assert state["step"] == 3
    resumed = load(ranks, "resume", 0)
    for key, value in state["generator"].items():
        assert torch.equal(value, resumed[f"g.{key}"])
    # The resumed step started from the checkpoint of step 2, on both ranks.
    assert not torch.equal(load(ranks, "train", 0)["g.net.0.weight"], resumed["g.net.0.weight"])


@pytest.mark.parametrize("loss", ["bce", "wgan-gp"])
def test_dcgan_rank_0_writes_one_line_per_step(ranks, loss):
    run = ranks / "runs" / f"dcgan-{loss}"
    assert len((run / "stats.jsonl").read_text().splitlines()) == 2
    assert load_checkpoint(run)["step"] == 2
    assert (run / f"dcgan-{loss}.safetensors").is_file()


def test_nothing_distributed_without_torchrun(monkeypatch):
    for var in distributed.TORCHRUN_VARS:
        monkeypatch.delenv(var, raising=False)
    with distributed.session("cpu") as device:
        assert device == CPU and not distributed.is_distributed()
        assert distributed.rank() == 0 and distributed.is_main()
        module = torch.nn.Linear(2, 2)
        assert distributed.wrap_ddp(module, device) is module
        assert distributed.average([1.0, 2.0], device) == [1.0, 2.0]


def test_stream_seeds_differ_per_rank_and_step():
    seeds = {distributed.stream_seed(0, r, s) for r in range(4) for s in (0, 1, 100)}
    assert len(seeds) == 12
    assert distributed.stream_seed(3, 1, 5) == distributed.stream_seed(3, 1, 5)


@pytest.mark.slow
def test_torchrun_command_line_trains_and_resumes(tmp_path, monkeypatch):
    """`torchrun -m siamgan train` end to end (about 15 s: three Python processes start)."""
    monkeypatch.setenv("SIAMGAN_HOME", str(tmp_path / "home"))
    a, b = images(tmp_path / "a", 3, (40, 50), 1), images(tmp_path / "b", 3, (40, 50), 2)
    torchrun = Path(sys.executable).with_name("torchrun")
    for steps, extra in (("2", []), ("3", ["--resume"])):
        out = subprocess.run(
            [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "siamgan", "train",
             "--a", str(a), "--b", str(b), "--name", "cli", "--steps", steps, "--tile", "8",
             "--batch", "2", "--channels", "4", "--res-blocks", "1", "--device", "cpu",
             "--runs-dir", str(tmp_path / "runs"), *extra],
            capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        assert out.stdout.count("exported to") == 1  # rank 0 only
    lines = (tmp_path / "runs" / "cli" / "stats.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3]
    assert (tmp_path / "home" / "styles" / "cli.safetensors").is_file()


# --- stylize --shard K/N -----------------------------------------------------------------

def library(root: Path, n: int = 23) -> Path:
    for i in range(n):
        path = root / f"album{i % 4}" / f"photo{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")  # plan() looks at names only
    return root


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_every_file_is_in_exactly_one_shard(tmp_path, n):
    the_plan = C.plan([library(tmp_path / "in")], tmp_path / "out")
    shards = [C.shard(the_plan.jobs, the_plan.root, k, n) for k in range(1, n + 1)]
    outputs = [job.dst for part in shards for job in part]
    assert sorted(outputs) == sorted(job.dst for job in the_plan.jobs)  # all, none twice
    if n > 1:
        assert all(len(part) < len(the_plan.jobs) for part in shards)


def test_shards_do_not_depend_on_where_the_library_lies(tmp_path):
    here = C.plan([library(tmp_path / "one" / "in")], tmp_path / "one" / "out")
    there = C.plan([library(tmp_path / "two" / "in")], tmp_path / "elsewhere")
    names = [[job.dst.name for job in C.shard(p.jobs, p.root, 2, 3)] for p in (here, there)]
    assert names[0] == names[1] and names[0]


class Negate(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -x


def test_shards_convert_a_library_together(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(7):
        Image.fromarray(np.full((8, 8, 3), i * 30, dtype=np.uint8)).save(src / f"{i}.png")
    reports = [C.convert(Stylizer(Negate(), tile_size=8), [src], tmp_path / "out",
                         C.ConvertOptions(shard=(k, 3))) for k in (1, 2, 3)]
    done = [e["input"] for r in reports for e in r.converted]
    assert sorted(done) == sorted(str(p) for p in src.iterdir())
    again = C.convert(Stylizer(Negate(), tile_size=8), [src], tmp_path / "out",
                      C.ConvertOptions(shard=(2, 3)))
    assert not again.converted and len(again.skipped) == len(reports[1].converted)


@pytest.mark.parametrize("text", ["0/3", "4/3", "2", "a/b", "1/0", "-1/2", ""])
def test_bad_shard_is_a_usage_error(tmp_path, text):
    with pytest.raises(C.ConvertError):
        C.parse_shard(text)
    r = CliRunner().invoke(app, ["stylize", str(tmp_path), "-o", str(tmp_path / "out"),
                                 "--weights", str(tmp_path / "none.safetensors"),
                                 "--shard", text])
    assert r.exit_code == 2 and "--shard" in r.output
