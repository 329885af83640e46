"""Box arithmetic for the MTCNN cascade in `detect.py`: regression, squaring, overlap and greedy NMS.

Split out of `detect.py` (#12) so that module stays about the cascade; boxes are (N, 4) float tensors of
continuous pixel coordinates (x1, y1, x2, y2), as there.
"""

from __future__ import annotations

import torch


def apply_regression(boxes: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Each regression output moves a box edge by a fraction of the box's width or height."""
    size = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
    return boxes + offsets * size


def square(boxes: torch.Tensor) -> torch.Tensor:
    """Grow each box to a square around its centre; the next net expects square crops."""
    center = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]).max(dim=1, keepdim=True).values / 2
    return torch.cat([center - half, center + half], dim=1)


def usable(boxes: torch.Tensor) -> torch.Tensor:
    # Regression can collapse a box; a crop needs at least one pixel of extent.
    return ((boxes[:, 2] - boxes[:, 0]) >= 1) & ((boxes[:, 3] - boxes[:, 1]) >= 1)


def overlap(boxes: torch.Tensor, mode: str) -> torch.Tensor:
    """Pairwise overlap matrix: IoU ("union") or intersection over the smaller area ("min")."""
    lo = torch.maximum(boxes[:, None, :2], boxes[None, :, :2])
    hi = torch.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = (hi - lo).clamp(min=0).prod(dim=2)
    area = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0).prod(dim=1)
    if mode == "min":
        denominator = torch.minimum(area[:, None], area[None, :])
    else:
        denominator = area[:, None] + area[None, :] - inter
    return inter / denominator.clamp(min=1e-9)


def nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float, mode: str = "union") -> torch.Tensor:
    """Greedy NMS; returns kept indices, best score first."""
    order = scores.argsort(descending=True)
    suppresses = overlap(boxes[order], mode) > threshold
    alive = torch.ones(len(order), dtype=torch.bool, device=boxes.device)
    kept: list[int] = []
    # One iteration per kept box (not per candidate): take the best survivor, drop what it overlaps.
    while True:
        survivors = alive.nonzero()
        if survivors.numel() == 0:
            break
        best = int(survivors[0])
        kept.append(best)
        alive &= ~suppresses[best]
        alive[best] = False
    return order[torch.tensor(kept, dtype=torch.long, device=boxes.device)]


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, threshold: float, mode: str = "union"
) -> torch.Tensor:
    """NMS independently within each group (image); returns kept indices."""
    kept = []
    for group in torch.unique(groups):
        members = (groups == group).nonzero().squeeze(1)
        kept.append(members[nms(boxes[members], scores[members], threshold, mode)])
    if not kept:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    return torch.cat(kept)
