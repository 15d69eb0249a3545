"""Preferred stimuli: images that drive a compact model hardest, found by gradient ascent.

The ascent runs on the PyTorch model's input with the usual regularisers of feature
visualisation: a random jitter (roll) of the image at every step, a periodic Gaussian blur, a
bound on the image's L2 norm and clipping to the valid pixel range. The final images are
rounded to uint8 and scored by the C++ engine, so the reported responses are those a rig
showing these images would get from the model.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..constants import IMAGE_SIZE
from ..engine.population import PopulationPredictor
from ..engine.predictor import Predictor
from ..models.compact import CompactModel

__all__ = ["PreferredStimuli", "preferred_stimuli", "DEFAULT_NORM"]

#: Default L2 bound on a recentred image: an RMS deviation of 64 levels from the dataset mean,
#: the high-contrast end of natural and procedural images (their RMS is ~20-100, median ~43).
DEFAULT_NORM = 64.0 * float(np.sqrt(3 * IMAGE_SIZE * IMAGE_SIZE))


@dataclass
class PreferredStimuli:
    """Result of :func:`preferred_stimuli` for ``neurons`` models and ``n`` images each.

    Attributes:
        images: (neurons, n, 112, 112, 3) uint8 synthesised images (raw pixels).
        responses: (neurons, n) float32, each model's engine response to its own images.
        trace: (steps, neurons, n) float32, the PyTorch response to the (jittered, float) image
            at each ascent step, before that step's update.
        pool_images: (neurons, pool_top, 112, 112, 3) uint8, each neuron's best pool images
            (best first), or None without a pool.
        pool_responses: (neurons, pool_top) float32 engine responses to ``pool_images``, or None.
    """

    images: np.ndarray
    responses: np.ndarray
    trace: np.ndarray
    pool_images: np.ndarray | None = None
    pool_responses: np.ndarray | None = None

    @property
    def pool_best(self) -> np.ndarray | None:
        """(neurons,) float32: the best response of each model to any pool image, or None."""
        return None if self.pool_responses is None else self.pool_responses[:, 0]


def preferred_stimuli(
    models: CompactModel | Sequence[CompactModel],
    n: int = 1,
    steps: int = 200,
    lr: float = 4.0,
    jitter: int = 4,
    blur_every: int = 4,
    blur_sigma: float = 0.5,
    norm: float | None = DEFAULT_NORM,
    pixel_range: tuple[float, float] = (0, 255),
    seed: int = 0,
    init: str | None = None,
    pool: np.ndarray | None = None,
    pool_top: int = 1,
    progress: bool = True,
    threads: int | None = None,
) -> PreferredStimuli:
    """Synthesise ``n`` images per model that maximise that model's response.

    All images are optimised together as one batch; each model runs on its own slice.

    Args:
        models: one CompactModel or a list (one per neuron); they must share the input mean.
        n: images per neuron, from different starting points.
        steps: gradient-ascent steps (Adam on the recentred pixels).
        lr: Adam step size in pixel levels (each pixel moves by about ``lr`` per step).
        jitter: each step the image is rolled by a random shift of up to ``jitter`` pixels in
            x and y before the model sees it (0: no jitter).
        blur_every: every ``blur_every`` steps the images are blurred (0: never).
        blur_sigma: standard deviation of that Gaussian blur, in pixels.
        norm: after every step each recentred image (pixels minus the mean, all 3x112x112
            values) is scaled down to L2 norm <= ``norm`` (None: no bound). Default:
            :data:`DEFAULT_NORM`.
        pixel_range: valid raw pixel values; images are clipped to it after every step.
        seed: seed of the starting noise and of the jitter.
        init: None: start from the mean grey plus Gaussian noise (std 10 levels); ``"pool"``:
            start from each neuron's ``n`` best pool images (by the engine).
        pool: optional (N, 112, 112, 3) uint8 candidate images; with it the result also holds
            each neuron's best pool images and their responses for comparison.
        pool_top: how many of each neuron's best pool images the result keeps.
        progress: show a progress bar.
        threads: engine threads (default: all available).
    """
    models = [models] if isinstance(models, CompactModel) else list(models)
    if init not in (None, "pool"):
        raise ValueError(f"init must be None or 'pool', got {init!r}")
    if init == "pool" and pool is None:
        raise ValueError("init='pool' needs a pool of images")
    if n < 1 or steps < 0 or jitter < 0 or blur_every < 0:
        raise ValueError(f"need n >= 1 and steps, jitter, blur_every >= 0; got {n}, {steps}, {jitter}, {blur_every}")
    engine = PopulationPredictor(models, threads)
    like = models[0].layer0_conv.weight   # images take the models' dtype and device
    mean = torch.tensor(models[0].mean, dtype=like.dtype, device=like.device).view(1, 3, 1, 1)

    pool_images = pool_responses = top = None
    if pool is not None:
        pool = np.ascontiguousarray(pool, dtype=np.uint8)
        if pool.ndim != 4 or pool.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 3):
            raise ValueError(f"pool must be (N, {IMAGE_SIZE}, {IMAGE_SIZE}, 3) uint8, got {pool.shape}")
        if len(pool) < max(pool_top, n if init == "pool" else 1):
            raise ValueError(f"pool has {len(pool)} images, fewer than needed ({max(pool_top, n)})")
        scores = engine.predict(pool).T                      # (neurons, N)
        top = np.argsort(-scores, axis=1, kind="stable")      # best first
        pool_images = pool[top[:, :pool_top]]
        pool_responses = np.take_along_axis(scores, top[:, :pool_top], axis=1)

    if init == "pool":
        start = torch.from_numpy(pool[top[:, :n]].reshape(-1, IMAGE_SIZE, IMAGE_SIZE, 3)).to(like)
        x0 = start.permute(0, 3, 1, 2) - mean
    else:   # seed 2 * seed: starting noise; 2 * seed + 1: jitter
        shape = (len(models) * n, 3, IMAGE_SIZE, IMAGE_SIZE)
        x0 = torch.randn(shape, generator=torch.Generator().manual_seed(2 * seed)).to(like) * 10.0
    bounds = (pixel_range[0] - mean, pixel_range[1] - mean)
    x, trace = _ascend(models, x0, n, steps, lr, jitter, blur_every, blur_sigma, norm, bounds,
                       torch.Generator().manual_seed(2 * seed + 1), progress)

    images = _to_uint8(x.cpu() + mean.cpu(), pixel_range).reshape(len(models), n, IMAGE_SIZE, IMAGE_SIZE, 3)
    responses = np.stack([Predictor(p, engine.threads).predict(im) for p, im in zip(engine.plans, images)])
    return PreferredStimuli(images, responses, trace.reshape(steps, len(models), n), pool_images, pool_responses)


def _ascend(models: list[CompactModel], x0: torch.Tensor, n: int, steps: int, lr: float, jitter: int,
            blur_every: int, blur_sigma: float, norm: float | None,
            bounds: tuple[torch.Tensor, torch.Tensor], gen: torch.Generator,
            progress: bool) -> tuple[torch.Tensor, np.ndarray]:
    """Adam ascent of (neurons * n, 3, 112, 112) recentred images; model i owns rows i*n..i*n+n-1.

    Each image gets its own random jitter every step. Returns the final images and the
    (steps, neurons * n) response trace.
    """
    x = x0.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    trace = np.empty((steps, len(x)), np.float32)
    with _eval_mode(models):
        for step in tqdm(range(steps), desc="preferred stimuli", disable=not progress):
            shifted = roll_each(x, torch.randint(-jitter, jitter + 1, (len(x), 2), generator=gen).to(x.device))
            r = torch.cat([m(shifted[i * n:(i + 1) * n]) for i, m in enumerate(models)])
            (grad,) = torch.autograd.grad(r.sum(), x)   # rows are independent: d sum / d x_i = d r_i / d x_i
            x.grad = -grad                               # Adam minimises
            opt.step()
            trace[step] = r.detach().cpu().numpy()
            with torch.no_grad():
                if blur_every and (step + 1) % blur_every == 0:
                    x.copy_(gaussian_blur(x, blur_sigma))
                if norm is not None:
                    x.mul_((norm / x.flatten(1).norm(dim=1).clamp_min(1e-12)).clamp(max=1.0).view(-1, 1, 1, 1))
                x.copy_(torch.maximum(torch.minimum(x, bounds[1]), bounds[0]))
    return x.detach(), trace


def roll_each(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Roll each of the (N, C, H, W) images circularly by its own (dy, dx) in ``shifts`` (N, 2) int."""
    n, _, h, w = x.shape
    rows = (torch.arange(h, device=x.device)[None, :] - shifts[:, :1]) % h      # (N, H)
    cols = (torch.arange(w, device=x.device)[None, :] - shifts[:, 1:]) % w      # (N, W)
    gathered = x.gather(2, rows[:, None, :, None].expand(-1, x.shape[1], -1, w))
    return gathered.gather(3, cols[:, None, None, :].expand(-1, x.shape[1], h, -1))


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W) images (std ``sigma`` pixels, reflected edges)."""
    if sigma <= 0:
        return x
    radius = max(1, int(np.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    y = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(y, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def _to_uint8(pixels: torch.Tensor, pixel_range: tuple[float, float]) -> np.ndarray:
    """(N, 3, H, W) float raw pixels -> (N, H, W, 3) uint8, rounded and clipped."""
    p = pixels.permute(0, 2, 3, 1).numpy()
    return np.clip(np.rint(p), max(pixel_range[0], 0), min(pixel_range[1], 255)).astype(np.uint8)


@contextmanager
def _eval_mode(models: Sequence[CompactModel]) -> Iterator[None]:
    """Run with every model in eval mode (batchnorm on its running statistics), on the engine
    backend and with its parameters frozen (only the images' gradient is computed); restore after."""
    saved = [(m.training, m.backend, [p.requires_grad for p in m.parameters()]) for m in models]
    try:
        for m in models:
            m.eval()
            m.backend = "engine"
            m.requires_grad_(False)
        yield
    finally:
        for m, (mode, backend, grads) in zip(models, saved):
            m.train(mode)
            m.backend = backend
            for p, g in zip(m.parameters(), grads):
                p.requires_grad_(g)
