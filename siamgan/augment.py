"""DiffAugment (Zhao et al. 2020) for the discriminator: translation and cutout.

Differentiable, applied alike to real paintings and translations so D cannot
memorise the 199 paintings' exact pixels. No colour jitter: the palette is what
must be learned. A photo and its translation get the same draw, so the Siamese
vector between them still compares like with like.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

POLICIES = ("translation", "cutout")


@dataclass
class AugmentDraw:
    """One batch's random draw: per-image shifts (pixels) and cutout boxes (top, left)."""

    shift: torch.Tensor  # B×2 (dy, dx)
    cut: torch.Tensor  # B×2 (y0, x0)
    translation: bool
    cutout: bool


def parse_policy(policy: str) -> tuple[str, ...]:
    """``"translation,cutout"`` → its parts; an empty string means no augmentation."""
    parts = tuple(p.strip() for p in policy.split(",") if p.strip())
    if unknown := set(parts) - set(POLICIES):
        raise ValueError(f"unknown augmentation {', '.join(sorted(unknown))}; "
                         f"choose from {', '.join(POLICIES)}")
    return parts


def draw(n: int, size: int, policy: str, device: torch.device | str = "cpu") -> AugmentDraw:
    """Shifts of up to ±size/8 and size/2 cutout squares for ``n`` images of side ``size``."""
    parts = parse_policy(policy)
    reach = size // 8
    shift = torch.randint(-reach, reach + 1, (n, 2)).to(device)
    cut = torch.randint(0, size - size // 2 + 1, (n, 2)).to(device)
    return AugmentDraw(shift, cut, "translation" in parts, "cutout" in parts)


def apply(x: torch.Tensor, d: AugmentDraw) -> torch.Tensor:
    """Translate (zero fill) and cut out per image, differentiably in ``x``."""
    n, _, h, w = x.shape
    if d.translation:
        pad = int(d.shift.abs().max().item()) if n else 0
        if pad:
            padded = F.pad(x, (pad, pad, pad, pad))
            ys = (torch.arange(h, device=x.device)[None] + pad - d.shift[:, :1])  # n×h
            xs = (torch.arange(w, device=x.device)[None] + pad - d.shift[:, 1:])  # n×w
            idx = torch.arange(n, device=x.device)[:, None, None]
            x = padded.permute(0, 2, 3, 1)[idx, ys[:, :, None], xs[:, None, :]]
            x = x.permute(0, 3, 1, 2)
    if d.cutout:
        yy = torch.arange(h, device=x.device)[None, :, None]
        xx = torch.arange(w, device=x.device)[None, None, :]
        y0, x0 = d.cut[:, :1, None], d.cut[:, 1:, None]
        inside = (yy >= y0) & (yy < y0 + h // 2) & (xx >= x0) & (xx < x0 + w // 2)
        x = x * (~inside)[:, None].to(x.dtype)
    return x
