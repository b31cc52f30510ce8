"""Acceptance 4: per-class FIFO queue and ACCon's angle compensation."""

from __future__ import annotations

import math

import torch

from core.queue import DynamicContrastiveQueue, accon_loss


def test_queue_is_a_per_class_fifo_that_wraps_around():
    q = DynamicContrastiveQueue(dim=2, size=3, num_classes=3)
    # five positive entries (in two pushes) into a 3-slot queue: the two oldest are overwritten
    q.enqueue(torch.tensor([[1.0, 0.0]] * 2), torch.tensor([0.5, 1.0]))
    assert q.contents()[1].tolist() == [0.5, 1.0]
    q.enqueue(torch.tensor([[1.0, 0.0]] * 3), torch.tensor([1.5, 2.0, 2.5]))
    q.enqueue(torch.tensor([[0.0, 1.0]]), torch.tensor([-2.0]))
    _, labels_out = q.contents()
    assert labels_out.tolist() == [-2.0, 1.5, 2.0, 2.5]
    assert q.count.tolist() == [1, 0, 3]
    assert int(q.ptr[2]) == 2  # next write position after wrap-around
    q.enqueue(torch.tensor([[3.0, 4.0]]), torch.tensor([3.0]))
    assert q.contents()[1].tolist() == [-2.0, 2.0, 2.5, 3.0]
    assert torch.allclose(q.contents()[0][-1], torch.tensor([0.6, 0.8]))  # stored L2-normalised
    q.enqueue(torch.tensor([[1.0, 1.0]]), torch.tensor([0.0]))
    assert q.count.tolist() == [1, 1, 3]


def test_queue_state_is_in_buffers():
    q = DynamicContrastiveQueue(dim=4, size=5)
    q.enqueue(torch.randn(7, 4), torch.randn(7))
    state = q.state_dict()
    q2 = DynamicContrastiveQueue(dim=4, size=5)
    q2.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(q.contents(), q2.contents()))


def _negative_push(label_gap: float, theta: float = 0.4) -> float:
    """Gradient magnitude of ACCon w.r.t. the angle between an anchor and one negative."""
    angle = torch.tensor(theta, requires_grad=True)
    anchor = torch.tensor([[1.0, 0.0]])
    positive = torch.tensor([[math.cos(0.3), math.sin(0.3)]])
    negative = torch.stack([torch.cos(angle), torch.sin(angle)])[None]
    feats = torch.cat([anchor, positive, negative])  # the negative has no positive: it is no anchor
    labels = torch.tensor([1.0, 1.2, 1.0 - label_gap])
    loss = accon_loss(feats, labels, max_interval=6.0)
    (grad,) = torch.autograd.grad(loss, angle)
    return -float(grad)  # > 0: the loss falls when the negative moves away


def test_accon_pushes_label_far_negatives_harder_than_label_near_ones():
    near, mid, far = _negative_push(1.2), _negative_push(3.0), _negative_push(6.0)
    assert far > mid > near
    assert far > 3 * abs(near)
