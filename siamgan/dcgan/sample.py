"""Using a trained DCGAN generator: load it, draw faces, walk the latent space, measure.

Noise is always drawn on the CPU from ``torch.Generator().manual_seed(seed)``,
so a seed gives the same faces on any device. G runs in eval mode (batch norm
with its running statistics), so each face depends on its own noise only.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..images import image_grid, to_pixels
from ..stylize import resolve_device
from ..weights_io import WeightsError, check_state, load_weights, shipped_weights_dir
from .models import DCGANConfig, Generator

SHIPPED_NAME = "dcgan-anime64.safetensors"


def default_weights() -> Path:
    """The shipped anime-face generator (may not exist before it is trained)."""
    return shipped_weights_dir() / SHIPPED_NAME


def load_generator(path: str | Path | None = None, device: str = "cpu") -> Generator:
    """Build G from a ``.safetensors`` file and its JSON config (the release loader).

    ``path`` None means the shipped weights. Raises :class:`WeightsError` with
    a clear message when the file is missing, unsafe or not a DCGAN.
    """
    if path is None:
        path = default_weights()
        if not path.is_file():
            raise WeightsError(f"no shipped DCGAN weights yet ({path} is missing); "
                               "train one with `siamgan dcgan train` and pass --weights FILE")
    path = Path(path)
    tensors, config = load_weights(path)
    if config.get("kind") != "dcgan":
        raise WeightsError(f"{path}: holds a {config.get('kind', 'style')!r} model, not a dcgan")
    try:
        gen = Generator(DCGANConfig(**config["model"]))
    except (KeyError, TypeError, ValueError) as e:
        raise WeightsError(f"{path}: bad dcgan model config: {e}") from e
    check_state(path, gen, tensors)
    gen.load_state_dict(tensors)
    return gen.to(resolve_device(device)).eval()


def latents(n: int, nz: int, seed: int) -> torch.Tensor:
    """``n`` standard-normal noise vectors of size ``nz``, fixed by ``seed``.

    Drawn row by row, so the first k rows do not depend on ``n``: ``-n 16`` gives
    the first 16 faces of ``-n 64`` with the same seed.
    """
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randn(nz, generator=g) for _ in range(n)])


@torch.no_grad()
def generate(gen: Generator, z: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Faces for the noise rows of ``z`` as an N×S×S×3 uint8 array."""
    was_training = gen.training
    gen.eval()
    device = next(gen.parameters()).device
    out = [to_pixels(gen(chunk.to(device)).float()) for chunk in z.split(batch_size)]
    gen.train(was_training)
    return np.concatenate(out)


def grid_columns(n: int) -> int:
    """Columns for a sheet of ``n`` faces: square, or one column wider than tall."""
    return max(1, math.ceil(math.sqrt(n)))


def sample_faces(gen: Generator, n: int = 64, seed: int = 0) -> np.ndarray:
    """``n`` faces from seed ``seed`` (N×S×S×3 uint8)."""
    return generate(gen, latents(n, gen.config.nz, seed))


def sample_grid(gen: Generator, n: int = 64, seed: int = 0, columns: int | None = None,
                pad: int = 2) -> np.ndarray:
    """A sheet of ``n`` faces, ``columns`` wide (default: as square as possible)."""
    columns = columns or grid_columns(n)
    return image_grid(list(sample_faces(gen, n, seed)), columns, pad)


def save_images(images: np.ndarray, out_dir: str | Path, prefix: str = "face") -> list[Path]:
    """Write each image as ``out_dir/PREFIX_0000.png``; returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(images):
        paths.append(out_dir / f"{prefix}_{i:04d}.png")
        Image.fromarray(img).save(paths[-1])
    return paths


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation: intermediate noise keeps the norm Gaussian noise has."""
    if t in (0.0, 1.0):  # exact endpoints: the walk starts and ends on the seeds' faces
        return a if t == 0.0 else b
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1).clamp(-1, 1)
    omega = torch.arccos(cos)[..., None]
    if float(omega.abs().max()) < 1e-6:
        return a + t * (b - a)
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


def interpolate(gen: Generator, seed_a: int, seed_b: int, steps: int = 16) -> np.ndarray:
    """A latent walk of ``steps`` faces from seed ``seed_a``'s face to ``seed_b``'s."""
    za, zb = latents(1, gen.config.nz, seed_a), latents(1, gen.config.nz, seed_b)
    ts = np.linspace(0.0, 1.0, steps) if steps > 1 else [0.0]
    return generate(gen, torch.cat([slerp(za, zb, float(t)) for t in ts]))


def save_animation(frames: np.ndarray, path: str | Path, frame_ms: int = 80,
                   scale: int = 2) -> Path:
    """Animated GIF or WebP (by suffix) that plays the walk forth and back."""
    path = Path(path)
    if path.suffix.lower() not in (".gif", ".webp"):
        raise ValueError(f"{path}: an animation must be .gif or .webp")
    seq = list(frames) + list(frames[-2:0:-1])
    ims = [Image.fromarray(f).resize((f.shape[1] * scale, f.shape[0] * scale),
                                     Image.Resampling.NEAREST) for f in seq]
    path.parent.mkdir(parents=True, exist_ok=True)
    ims[0].save(path, save_all=True, append_images=ims[1:], duration=frame_ms, loop=0)
    return path


def evaluate(gen: Generator, real: np.ndarray, n: int = 512, n_real: int = 1024,
             n_pairs: int = 500, seed: int = 0) -> dict:
    """SWD and diversity of ``n`` generated faces against real faces.

    Reals are shuffled with ``seed`` and split into a reference set of ``n_real``
    and a floor set of ``n``: SWD(floor, reference) is what two samples of the real
    distribution score, so ``swd_ratio`` = SWD(generated, reference) / floor (1 is
    perfect). Diversity is the mean pairwise MS-SSIM of generated and of real
    faces; a generated value above the real one means less variety (collapse).
    """
    from .. import metrics  # scipy/scikit-image are only needed here

    if len(real) < n + n_real:
        raise ValueError(f"need {n + n_real} real faces (n + n_real), have {len(real)}")
    order = np.random.default_rng(seed).permutation(len(real))
    reference = list(real[order[:n_real]])
    floor_set = list(real[order[n_real:n_real + n]])
    fake = list(sample_faces(gen, n, seed))
    swd_fake = metrics.swd_pyramid(fake, reference, seed=seed)
    swd_floor = metrics.swd_pyramid(floor_set, reference, seed=seed)
    ssim_fake = metrics.mean_pairwise_ms_ssim(fake, n_pairs, seed)
    ssim_real = metrics.mean_pairwise_ms_ssim(floor_set, n_pairs, seed)
    return {"n_generated": n, "n_real": n_real, "pairs": n_pairs, "seed": seed,
            "swd": swd_fake["mean"], "swd_floor": swd_floor["mean"],
            "swd_ratio": swd_fake["mean"] / max(swd_floor["mean"], 1e-12),
            "swd_levels": swd_fake, "swd_floor_levels": swd_floor,
            "ms_ssim_generated": ssim_fake, "ms_ssim_real": ssim_real,
            "ms_ssim_gap": ssim_fake - ssim_real, "model": asdict(gen.config)}
