"""Loss terms of the Siamese GAN, as short pure functions.

Notation (seed article): D maps an image to a latent vector. Real paintings B
go near the origin, translations AB at least ``margin`` away; the vector
between two inputs, D(A1) − D(A2), keeps its direction after translation.
All functions take B×L latent batches and return a scalar averaged over B.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def squared_norm(vec: torch.Tensor) -> torch.Tensor:
    """‖v‖² averaged over the batch: D's loss on real B, and G's adversarial loss."""
    return vec.pow(2).sum(dim=1).mean()


def margin_loss(vec: torch.Tensor, margin: float) -> torch.Tensor:
    """max(0, m − ‖v‖)²: pushes fakes out to at least ``margin`` from the origin."""
    return F.relu(margin - vec.norm(dim=1)).pow(2).mean()


def pair_vectors(vec: torch.Tensor) -> torch.Tensor:
    """Transformation vectors D(X1) − D(X2), pairing each sample with the next one."""
    return vec - vec.roll(1, dims=0)


def transformation_cosine(va: torch.Tensor, vab: torch.Tensor) -> torch.Tensor:
    """T = 1 − cos(D(A1) − D(A2), D(AB1) − D(AB2)); 0 when parallel, 2 when opposite."""
    return (1 - F.cosine_similarity(pair_vectors(va), pair_vectors(vab), dim=1, eps=1e-8)).mean()


def transformation_mse(va: torch.Tensor, vab: torch.Tensor) -> torch.Tensor:
    """TraVeLGAN's extra term: the transformation vectors should also keep their length."""
    return (pair_vectors(va) - pair_vectors(vab)).pow(2).sum(dim=1).mean()


def hinge_d(real_score: torch.Tensor, fake_score: torch.Tensor) -> torch.Tensor:
    """Hinge loss of the optional scalar critic, discriminator side."""
    return F.relu(1 - real_score).mean() + F.relu(1 + fake_score).mean()


def hinge_g(fake_score: torch.Tensor) -> torch.Tensor:
    """Hinge loss of the optional scalar critic, generator side."""
    return -fake_score.mean()


def identity_l1(translated: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """G applied to a painting should leave it alone (keeps the palette varied)."""
    return (translated - original).abs().mean()


def anchor_l1(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference to a frozen model's output (the seam polish's anchor)."""
    return (out - target).abs().mean()


def rgb_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (3,) and covariance (3×3) of the colours of every pixel of a B×3×H×W batch."""
    pixels = x.transpose(0, 1).reshape(x.shape[1], -1)
    mean = pixels.mean(dim=1)
    centred = pixels - mean[:, None]
    return mean, centred @ centred.T / pixels.shape[1]


def colour_moments(x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """How far the batch's colour mean and covariance are from the paintings' (``mean``, ``cov``).

    Squared distances, summed: ‖μ(x) − μ‖² + ‖Σ(x) − Σ‖²_F. Only the whole batch's first two
    colour moments are held to the paintings', not each translation's.
    """
    got_mean, got_cov = rgb_moments(x)
    return (got_mean - mean).pow(2).sum() + (got_cov - cov).pow(2).sum()


def colour_gamut(x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor,
                 radius: float) -> torch.Tensor:
    """How far the pixels' colours lie outside the paintings' gamut.

    Each pixel's colour (of a B×3×H×W batch) is measured in the paintings' pixel colour
    spread: the Mahalanobis distance d from ``mean`` under ``cov``. Pixels within
    ``radius`` cost nothing; beyond it, (d − radius)², averaged over all pixels. Unlike
    :func:`colour_moments`, which only holds the whole batch, a colour he seldom painted
    (the vivid green of a leaf seen close) pays wherever it is, even when the batch's mix
    looks like his; and nothing inside the gamut is pulled anywhere.
    """
    d = x.transpose(0, 1).flatten(1) - mean[:, None]  # (3, N)
    dist = (torch.linalg.inv(cov) @ d * d).sum(dim=0).clamp_min(0).sqrt()
    return F.relu(dist - radius).pow(2).mean()


def _sorted_w2(got: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Per column, a 1-D Wasserstein-2 between the rows of ``got`` (n×k) and the same
    quantiles of ``ref``'s (m×k, no gradient): squared differences, averaged."""
    got = got.sort(dim=0).values
    n = got.shape[0]  # the i-th of n sorted values is the quantile i / (n − 1)
    q = torch.linspace(0, 1, n, dtype=got.dtype, device=got.device) if n > 1 else \
        torch.full((1,), 0.5, dtype=got.dtype, device=got.device)
    want = torch.quantile(ref.detach().to(got.dtype), q, dim=0)
    return (got - want).pow(2).mean()


def crop_contrast(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """How far the crops' contrasts are spread unlike the reference crops' (the paintings').

    A crop's contrast is the standard deviation of each colour channel over its pixels.
    Per channel, the sorted contrasts of ``x`` (B×3×H×W) are compared with the same
    quantiles of ``ref``'s (:func:`_sorted_w2`). Each crop keeps its own mean colour, and
    flat crops are allowed as often as the paintings have them; a batch of washed-out
    translations is not. ``ref`` gets no gradient.
    """
    def contrasts(t: torch.Tensor) -> torch.Tensor:
        return t.flatten(2).std(dim=2)  # (B, 3)

    return _sorted_w2(contrasts(x), contrasts(ref))


LUMA = (0.299, 0.587, 0.114)


def crop_chroma(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """How far the crops' colourfulness is spread unlike the reference crops' (the
    paintings').

    A crop's colourfulness is the mean distance of its pixels from their grey (BT.601
    luma), over pixels and channels. The sorted values of ``x`` (B×3×H×W) are compared
    with the same quantiles of ``ref``'s (:func:`_sorted_w2`): each translation may be as
    grey or as vivid as some of the paintings are, but a batch more vivid than the
    paintings, crop by crop, is not. Hue and brightness are free. ``ref`` gets no gradient.
    """
    def chroma(t: torch.Tensor) -> torch.Tensor:
        luma = torch.tensor(LUMA, dtype=t.dtype, device=t.device).view(1, 3, 1, 1)
        grey = (t * luma).sum(dim=1, keepdim=True)
        return (t - grey).abs().mean(dim=(1, 2, 3)).unsqueeze(1)  # (B, 1)

    return _sorted_w2(chroma(x), chroma(ref))


def _step_profile(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels along ``dim`` (-1 or -2),
    as a profile over positions: entry p is the step from pixel p to pixel p + 1."""
    steps = x.diff(dim=dim).abs()
    other = [d for d in range(steps.dim()) if d != steps.dim() + dim]
    return steps.mean(dim=other)


def seam_contrast(x: torch.Tensor, tile: int) -> torch.Tensor:
    """How far the pixel steps at each position of a tile differ from the others'.

    ``x`` is a B×C×H×W batch of Combo outputs made of ``tile``-pixel tiles. For each
    direction the mean |step| between neighbouring pixels is taken at every position
    (over the batch, channels and the other axis) and folded by ``tile``: phase
    ``tile − 1`` is the step across the join between two tiles, the others lie inside
    a tile. Each phase is compared with the mean of the other phases congruent to it
    mod 8 (so patterns of period 2, 4 or 8, the generator's own and JPEG's, cancel),
    as ``metrics.seam_score`` does; the loss is the squared log-ratios summed over the
    phases (one phase at twice its class's level gives about 0.5). 0 when no
    position of the tile grid stands out, whether too sharp (a line) or too flat (a
    blur), at the join or a few pixels inside it.
    """
    group = math.gcd(tile, 8)
    if tile // group < 2 or x.shape[-1] % tile or x.shape[-2] % tile:
        raise ValueError(f"seam_contrast needs whole tiles of a multiple of 8 px, at least "
                         f"16 (or of 4 px, at least 8); got tile {tile} for a "
                         f"{x.shape[-2]}×{x.shape[-1]} image")
    phase = None
    terms = []
    for dim in (-1, -2):
        profile = _step_profile(x, dim)
        if phase is None or phase.shape[0] != profile.shape[0]:
            phase = torch.arange(profile.shape[0], device=x.device) % tile
        folded = torch.zeros(tile, device=x.device).index_add_(0, phase, profile)
        folded = folded / torch.bincount(phase, minlength=tile) + 1e-6
        classes = folded.view(tile // group, group)  # row r, column c: phase r·group + c
        others = (classes.sum(0, keepdim=True) - classes) / (tile // group - 1)
        terms.append((classes.log() - others.log()).pow(2).sum())
    return torch.stack(terms).mean()


def grid_level(x: torch.Tensor, tile: int, per_image: bool = False) -> torch.Tensor:
    """How far the mean colour at each position of the tile grid stands out.

    ``x`` is a B×C×H×W batch of Combo outputs made of ``tile``-pixel tiles, whose crops
    lie anywhere in their photos, so no position of the tile grid should be brighter or
    of another colour than the others. For each direction, each channel's mean at every
    position (over the batch and the other axis) is folded by ``tile``; the loss is the
    squared deviations of those phase means from their mean, summed over phases and
    channels. It catches a frame of another level along the tile borders, which the
    pixel steps of :func:`seam_contrast` miss once its edges are soft.

    With ``per_image`` the phase means are taken in each image and the squared
    deviations averaged over the batch: a frame that is bright on some crops and dark on
    others (it may follow their content) no longer cancels in the batch mean.
    """
    if x.shape[-1] % tile or x.shape[-2] % tile:
        raise ValueError(f"grid_level needs whole {tile}-pixel tiles, got {tuple(x.shape)}")
    terms = []
    for dim in (-1, -2):
        other = -2 if dim == -1 else -1
        profile = x.mean(dim=other)  # B × C × length
        if not per_image:
            profile = profile.mean(dim=0, keepdim=True)
        folded = profile.reshape(*profile.shape[:2], -1, tile).mean(dim=2)  # B × C × tile
        terms.append((folded - folded.mean(dim=2, keepdim=True)).pow(2).sum(dim=(1, 2)).mean())
    return torch.stack(terms).mean()


def patch_nce(query: torch.Tensor, key: torch.Tensor, tau: float = 0.07) -> torch.Tensor:
    """PatchNCE (CUT, Park et al. 2020) on B×P×C unit feature vectors.

    Query ``p`` of one image (a patch of the translation) must pick key ``p`` (the
    same position of the photo) among all ``P`` keys of *that image*: the other
    positions are the negatives, so a texture repeated everywhere, which makes
    every position look alike, is punished directly. Cross-entropy over the
    ``P`` candidates, averaged over positions and images; the keys are not
    differentiated (the photo's features are the target).
    """
    logits = torch.bmm(query, key.detach().transpose(1, 2)) / tau  # B×P×P
    target = torch.arange(query.shape[1], device=query.device).expand(query.shape[0], -1)
    return F.cross_entropy(logits.flatten(0, 1), target.flatten())


def shift_gap(y0: torch.Tensor, y1: torch.Tensor, dy: int, dx: int, margin: int = 8
              ) -> torch.Tensor:
    """Mean |difference| of two translations that should agree after a shift.

    ``y0`` translates a window of a crop and ``y1`` the window ``(dy, dx)`` pixels
    further down and right, so ``y1[i, j]`` and ``y0[i + dy, j + dx]`` paint the same
    photo pixel. G downsamples by 4, so where it lays its texture by the position on
    that 4-px grid, not by the photo, shifts that are not multiples of 4 disagree:
    this is the pattern that a magnified coarse rung shows as a regular dab
    (``docs/strokes.md``). ``margin`` pixels at each edge are left out (padding).
    """
    h, w = y0.shape[-2:]
    a = y0[..., margin + dy : h - margin, margin + dx : w - margin]
    b = y1[..., margin : h - margin - dy, margin : w - margin - dx]
    return (a - b).abs().mean()
