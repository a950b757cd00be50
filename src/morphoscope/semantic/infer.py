"""Network inference on whole 2D planes of any size: sliding windows with overlap and blending.

A plane no larger than ``tile_size`` goes through the network in one piece (padded to a multiple
of 32). Larger planes are cut into ``tile_size`` tiles overlapping by ``overlap`` pixels; each
tile's output is weighted by a window that falls off linearly over the overlap, so seams are
invisible and the result does not depend on where the tiles fall (beyond float rounding).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from morphoscope.semantic.model import split_outputs


def _pad32(x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    h, w = x.shape[-2:]
    ph, pw = (-h) % 32, (-w) % 32
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "constant")
    return x, h, w


def _window(h: int, w: int, overlap: int) -> torch.Tensor:
    def ramp(n):
        r = torch.ones(n)
        if overlap > 0:
            k = min(overlap, n // 2)
            edge = (torch.arange(k, dtype=torch.float32) + 1) / (k + 1)
            r[:k] = edge
            r[n - k:] = edge.flip(0)
        return r

    return ramp(h)[:, None] * ramp(w)[None, :]


def _starts(n: int, tile: int, step: int) -> list[int]:
    if n <= tile:
        return [0]
    s = list(range(0, n - tile, step)) + [n - tile]
    return sorted(set(s))


@torch.inference_mode()
def predict_plane(model: torch.nn.Module, x: np.ndarray, model_cfg, num_classes: int, *,
                  tile_size: int = 1024, overlap: int = 64, device=None, batch: int = 4
                  ) -> tuple[np.ndarray, np.ndarray | None]:
    """``x`` (C, H, W) normalised -> class probabilities (K+1, H, W) float32 and the extra map or None."""
    device = device or next(model.parameters()).device
    model.eval()
    t = torch.from_numpy(np.ascontiguousarray(x, np.float32))[None]
    _, _, H, W = t.shape
    tile = max(64, tile_size // 32 * 32)
    if H <= tile and W <= tile:
        xp, h, w = _pad32(t)
        logits = model(xp.to(device))[..., :h, :w]
        probs, aux = split_outputs(logits, model_cfg, num_classes)
        return probs[0].cpu().numpy(), None if aux is None else aux[0].cpu().numpy()
    # pad so that every tile is full size
    ph, pw = max(0, tile - H), max(0, tile - W)
    if ph or pw:
        t = F.pad(t, (0, pw, 0, ph), mode="constant")
    Hp, Wp = t.shape[-2:]
    ov = min(overlap, tile // 2)
    step = tile - ov
    win = _window(tile, tile, ov)
    k = num_classes + 1
    acc = torch.zeros(k + 1, Hp, Wp)
    norm = torch.zeros(Hp, Wp)
    coords = [(y, x0) for y in _starts(Hp, tile, step) for x0 in _starts(Wp, tile, step)]
    for i in range(0, len(coords), batch):
        chunk = coords[i:i + batch]
        xb = torch.cat([t[..., y:y + tile, x0:x0 + tile] for y, x0 in chunk]).to(device)
        probs, aux = split_outputs(model(xb), model_cfg, num_classes)
        probs, aux = probs.cpu(), None if aux is None else aux.cpu()
        for j, (y, x0) in enumerate(chunk):
            acc[:k, y:y + tile, x0:x0 + tile] += probs[j] * win
            if aux is not None:
                acc[k, y:y + tile, x0:x0 + tile] += aux[j] * win
            norm[y:y + tile, x0:x0 + tile] += win
    acc = (acc / norm.clamp(min=1e-6))[:, :H, :W]
    probs = acc[:k].numpy()
    aux = acc[k].numpy() if model_cfg.output != "mask" else None
    return probs, aux
