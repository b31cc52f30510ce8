"""Acceptance 2, 3, 5: padding invariance, absent modalities, gradients of the full loss."""

from __future__ import annotations

import pytest
import torch

from core.batch import ModalityBatch
from core.config import MODALITIES, ConfigError, FineConfig, LossConfig, MoQConfig
from core.losses import FineLoss
from core.model import FINE
from tests.core.helpers import random_batch, small_config


def outputs(model: FINE, batch: ModalityBatch) -> list[torch.Tensor]:
    out = model(batch)
    tensors = [out.score, out.unimodal, out.fused]
    for m in MODALITIES:
        f = out.modalities[m]
        tensors += [
            f.x_hat,
            f.gates,
            f.ftre.tokens,
            f.ftre.shared,
            f.ftre.unique,
            f.ftre.shared_tr,
            f.ftre.unique_tr,
        ]
    return tensors


@torch.no_grad()
def test_extra_padded_frames_change_nothing():
    torch.manual_seed(0)
    model = FINE(small_config()).eval()
    base = random_batch(seed=1)
    padded = random_batch(seed=1, pad=13)  # same valid frames, 13 extra masked frames per modality
    for m in MODALITIES:
        t = base.features[m].shape[1]
        padded.features[m][:, :t] = base.features[m]
        padded.features[m][:, t:] = torch.randn_like(padded.features[m][:, t:]) * 100  # garbage
        padded.masks[m][:, :t] = base.masks[m]
        padded.masks[m][:, t:] = False
        padded.features[m][~padded.masks[m]] = float("nan")  # even NaN in padding is ignored
    worst = max(float((a - b).abs().max()) for a, b in zip(outputs(model, base), outputs(model, padded)))
    assert worst <= 1e-5


@torch.no_grad()
@pytest.mark.parametrize("absent", MODALITIES)
def test_absent_modality_values_have_no_effect(absent):
    torch.manual_seed(0)
    model = FINE(small_config()).eval()
    batch = random_batch(seed=2)
    batch.presence[:, MODALITIES.index(absent)] = False
    other = random_batch(seed=2)
    other.presence[:, MODALITIES.index(absent)] = False
    other.features[absent] = torch.randn(other.features[absent].shape) * 50
    other.features[absent][0] = float("nan")
    other.masks[absent] = torch.rand(other.masks[absent].shape) > 0.5
    diffs = [float((a - b).abs().max()) for a, b in zip(outputs(model, batch), outputs(model, other))]
    assert max(diffs) == 0.0
    # and the modality is really absent, not merely ignored: the score differs from the full-input one
    full = model(random_batch(seed=2)).score
    assert float((full - model(batch).score).abs().max()) > 1e-4


@torch.no_grad()
def test_present_modality_with_no_valid_frame_counts_as_absent():
    model = FINE(small_config()).eval()
    batch = random_batch(seed=3)
    empty = random_batch(seed=3)
    batch.presence[0, 1] = False
    empty.masks["audio"][0] = False  # present flag True, but no valid frame
    assert torch.equal(model(batch).score, model(empty).score)


def test_full_loss_gives_every_parameter_a_finite_nonzero_gradient():
    torch.manual_seed(0)
    cfg = small_config()
    model = FINE(cfg).train()
    loss = FineLoss(cfg, LossConfig(critic_hidden=32, queue_size=8))
    batch = random_batch(b=16, seed=4)
    batch.presence[0, 0] = batch.presence[1, 1] = batch.presence[2, 2] = False  # absent tokens get used
    batch.labels[:3] = torch.tensor([-1.0, 0.0, 1.0])
    loss.update_queue(model(batch), batch.labels)  # a non-empty queue
    out = model(batch)
    result = loss(out, batch.labels)
    assert set(result.terms) >= {"mp", "up", "cl", "aux", "mi", "sha", "uni", "str", "utr", "recon"}
    result.total.backward()
    loss.critic_loss(out, batch.labels).backward()
    named = list(model.named_parameters()) + [(f"loss.{n}", p) for n, p in loss.named_parameters()]
    # A critic's output bias adds one constant to every score; InfoNCE and (NCE-)CLUB are differences of
    # scores, so its true gradient is exactly zero (what it gets is float noise, ~1e-9, sometimes 0.0).
    # It must still be reached (a finite gradient); every other parameter must move.
    shift_invariant = {n for n, _ in named if n.startswith("loss.") and n.endswith("critic.out.bias")}
    assert len(shift_invariant) == 12
    problems = [
        n
        for n, p in named
        if p.grad is None
        or not torch.isfinite(p.grad).all()
        or (n not in shift_invariant and float(p.grad.abs().sum()) == 0)
    ]
    assert problems == []
    assert len(named) > 100


def test_ablation_switches_remove_their_parts():
    cfg = small_config(moq=MoQConfig(enabled=False, num_queries=4, num_heads=4, num_blocks=1))
    model = FINE(cfg)
    assert model.encoders["text"].moq.router is None
    out = model(random_batch())
    assert out.modalities["text"].gates.shape[1] == 1
    cfg2 = small_config(ftre=small_config().ftre.__class__(enabled=False))
    loss = FineLoss(cfg2, LossConfig(use_cl=False))
    terms = loss(FINE(cfg2)(random_batch()), random_batch().labels).terms
    assert set(terms) == {"mp", "up", "aux"}


def test_config_rejects_unknown_keys_and_bad_values():
    data = small_config().to_dict()
    assert FineConfig.from_dict(data) == small_config()
    with pytest.raises(ConfigError, match=r"moq\.num_expert"):
        FineConfig.from_dict({**data, "moq": {**data["moq"], "num_expert": 3}})
    with pytest.raises(ConfigError, match="d_model"):
        FineConfig.from_dict({**data, "d_model": 30})
    with pytest.raises(ConfigError, match="input_dims"):
        FineConfig.from_dict({**data, "input_dims": {"text": 3}})


# The inference graph computes a few things in a cheaper but equivalent form (fewer, larger kernels for
# CPU latency, `fine bench model`). Each is checked against the plain composition of the same modules.


@torch.no_grad()
def test_folded_layer_norm_affine_equals_norm_then_linear():
    from core.model.layers import ExpertLayerNorm, ExpertLinear, fold_norm

    def normed_linear(x, norm, lin):  # how the Q-Former blocks apply fold_norm's weights
        weight, bias = fold_norm(norm, lin)
        y = torch.baddbmm(bias, torch.nn.functional.layer_norm(x, (16,)).reshape(3, -1, 16), weight)
        return y.view(3, -1, x.shape[2], 40)

    torch.manual_seed(0)
    norm, lin = ExpertLayerNorm(3, 16), ExpertLinear(3, 16, 40)
    norm.weight.normal_(1.0, 0.5)  # a trained, non-identity affine
    norm.bias.normal_(0.0, 0.5)
    x = torch.randn(3, 5, 4, 16) * 3 + 1
    assert float((normed_linear(x, norm, lin) - lin(norm(x))).abs().max()) < 1e-5
    one = torch.randn(3, 1, 4, 16)  # broadcast query layout of the first block
    assert float((normed_linear(one, norm, lin) - lin(norm(one))).abs().max()) < 1e-5


@torch.no_grad()
@pytest.mark.parametrize("query_batch", [1, 4])  # 1: the first block's shared learned queries
def test_qformer_block_equals_the_plain_per_expert_block(query_batch):
    from core.model.qformer import QFormerBlock
    from core.model.reference import plain_qformer_block

    torch.manual_seed(0)
    blk = QFormerBlock(32, 4, 3, dropout=0.0, ffn_mult=2)
    for name, p in blk.named_parameters():  # trained-looking: non-identity norms, non-zero biases
        if "norm" in name:
            p.normal_(1.0 if name.endswith("weight") else 0.0, 0.5)
        elif name.endswith("bias"):
            p.normal_(0.0, 0.5)
    h, seq = torch.randn(3, query_batch, 5, 32), torch.randn(4, 9, 32) * 2
    mask = torch.ones(4, 9, dtype=torch.bool)
    mask[1, 4:] = False
    mask[3, 1:] = False
    ref = plain_qformer_block(blk, h, seq, mask)
    bias = torch.zeros(4, 9).masked_fill(~mask, torch.finfo(torch.float32).min)[None, :, None, :]
    for training in (False, True):  # eval drops the key bias (softmax ignores it); training adds it
        blk.train(training)
        out = blk(h, *blk.keys_values(seq), bias.expand(1, 4, 15, 9))
        assert out.shape == (3, 4, 5, 32)
        assert float((out - ref).abs().max()) < 2e-5, training
    # the key bias really is a no-op: a large one changes nothing
    blk.eval()
    blk.kv_ca.bias[:32] += 10.0
    assert float((blk(h, *blk.keys_values(seq), bias) - ref).abs().max()) < 2e-5


@pytest.mark.parametrize("training", [False, True])
def test_modalities_moqs_run_together_equal_each_run_alone(training):
    """FINE runs the three modalities' MoQs as one stacked computation; it must equal running each alone
    and the plain per-expert reference (sequences of different lengths, padding, trained-looking
    parameters), values and gradients."""
    from core.model.qformer import MixtureOfQFormers, mixture_of_qformers
    from core.model.reference import plain_mixture_of_qformers

    torch.manual_seed(0)
    cfg = MoQConfig(num_experts=3, num_queries=5, num_blocks=2, num_heads=4, dropout=0.0)
    moqs = [MixtureOfQFormers(32, cfg).train(training) for _ in range(3)]
    with torch.no_grad():
        for moq in moqs:
            for name, p in moq.named_parameters():
                if "norm" in name:
                    p.normal_(1.0 if name.endswith("weight") else 0.0, 0.5)
                elif name.endswith("bias"):
                    p.normal_(0.0, 0.5)
    xs = [torch.randn(4, t, 32, requires_grad=True) for t in (9, 6, 11)]
    masks = [torch.ones(4, t, dtype=torch.bool) for t in (9, 6, 11)]
    masks[0][1, 5:] = False
    masks[2][3, 2:] = False
    alone = [moq(x, mk) for moq, x, mk in zip(moqs, xs, masks)]
    together, gates = mixture_of_qformers(moqs, xs, masks)  # (3, b, q, d), per modality (b, E)
    for (x_hat, g), x_hat2, g2, moq, x, mk in zip(alone, together.unbind(0), gates, moqs, xs, masks):
        assert x_hat2.shape == (4, 5, 32)
        assert float((x_hat - x_hat2).detach().abs().max()) < 1e-5
        assert torch.equal(g, g2)
        plain, plain_gates = plain_mixture_of_qformers(moq, x, mk)
        assert float((plain - x_hat2).detach().abs().max()) < 2e-5
        assert float((plain_gates - g2).detach().abs().max()) < 1e-6
    w = torch.randn(4, 5, 32)
    wrt = [*xs, *moqs[1].parameters()]
    grads_alone = torch.autograd.grad(sum((x_hat * w).sum() for x_hat, _ in alone), wrt)
    grads_together = torch.autograd.grad(sum((x_hat * w).sum() for x_hat in together), wrt)
    for ga, gt in zip(grads_alone, grads_together):
        assert float((ga - gt).abs().max()) <= 1e-4 * (1.0 + float(ga.abs().max()))


def test_prepared_inference_weights_give_the_same_outputs_and_never_go_stale():
    """``prepare_inference`` computes the Q-Former's stacked weights once for eager inference. Outputs are
    bit-identical to computing them per call; training, load_state_dict, dtype moves and in-place
    parameter changes drop them (the next call computes from the parameters again)."""
    torch.manual_seed(0)
    model = FINE(small_config()).eval()
    batch = random_batch()
    with torch.inference_mode():
        unprepared = model(batch).score
    assert model.prepare_inference() is model and model.prepared is not None
    with torch.inference_mode():
        assert torch.equal(model(batch).score, unprepared)
    with torch.no_grad():
        assert torch.equal(model(batch).score, unprepared)
        model.encoders["audio"].moq.blocks[-1].ff2.weight.mul_(3.0)  # an in-place change (version bump)
        changed = model(batch).score
    assert model.prepared is None  # noticed and dropped
    assert float((changed - unprepared).abs().max()) > 1e-4
    assert float((changed - model(batch).score.detach()).abs().max()) < 1e-6  # autograd on: plain path
    model.prepare_inference()
    model.train()
    assert model.prepared is None
    model.prepare_inference()
    model.load_state_dict(FINE(small_config()).state_dict())
    assert model.prepared is None
    model.prepare_inference()
    model.double()
    assert model.prepared is None
    model.float().prepare_inference()
    model.encoders["text"].moq.blocks[0].qkv.weight.data[0, 0, :5] += 1.0  # no version bump: documented
    with torch.no_grad():
        stale = model(batch).score  # still the weights prepared before the edit
        model.prepare_inference()  # what the docstring asks for after a .data edit
        fresh = model(batch).score
        model.prepared = None
        assert torch.equal(fresh, model(batch).score)
    assert float((fresh - stale).abs().max()) > 1e-6


@torch.no_grad()
@pytest.mark.parametrize("layers", [1, 2])
def test_fusion_last_layer_for_cls_rows_only_equals_the_full_encoder(layers):
    from core.config import FusionConfig

    torch.manual_seed(0)
    fusion = FINE(small_config(fusion=FusionConfig(num_layers=layers, num_heads=4, dropout=0.0))).fusion
    tokens = [torch.randn(5, 4, 32) for _ in MODALITIES]
    seq = [
        torch.cat([fusion.cls[i].expand(5, 1, -1), t], 1) + fusion.modality_emb[i]
        for i, t in enumerate(tokens)
    ]
    full = fusion.norm(fusion.encoder(torch.cat(seq, 1)))[:, ::5]  # every token through every layer
    assert float((fusion(torch.stack(tokens)) - full).abs().max()) < 1e-5
