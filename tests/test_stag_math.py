"""STAG's anchors and loss against torch.autograd's entropy gradients (the method doc's spec)."""
import pytest
import torch

from stag_seg.ops import softmax_entropy
from stag_seg.stag import stag_loss, structural_anchors
from stag_seg.stag.entropy import entropy_logit_grad

K, C = 7, 12


def _classifier(dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(K, C, generator=g, dtype=dtype) * 0.4   # q_k not one-hot
    bias = torch.randn(K, generator=g, dtype=dtype)
    return weight, bias


def _entropy(weight, bias, feat, tau=1.0):
    return softmax_entropy(((weight @ feat + bias) / tau)[None], dim=1).sum()


def _cos(a, b):
    return (a * b).sum() / (a.norm() * b.norm())


def test_closed_form_entropy_gradient_matches_autograd():
    z = torch.randn(5, K, dtype=torch.float64, requires_grad=True)
    u, entropy = entropy_logit_grad(z, dim=1)
    expected, = torch.autograd.grad(softmax_entropy(z, dim=1).sum(), z)
    torch.testing.assert_close(u, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(entropy, softmax_entropy(z, dim=1))


@pytest.mark.parametrize('tau', [1.0, 0.5])
def test_feature_anchors_are_entropy_gradients_at_the_class_weights(tau):
    weight, bias = _classifier()
    anchors = structural_anchors(weight, bias, tau=tau, grad_space='feature')
    for k in range(K):
        feat = weight[k].clone().requires_grad_(True)
        expected, = torch.autograd.grad(_entropy(weight, bias, feat, tau), feat)
        torch.testing.assert_close(anchors.anchors[k], expected, rtol=1e-6, atol=0)


def test_classifier_anchors_are_entropy_gradients_wrt_the_weights():
    weight, bias = _classifier()
    anchors = structural_anchors(weight, bias, grad_space='classifier')
    assert anchors.anchors.shape == (K, K, C)
    for k in range(K):
        w = weight.clone().requires_grad_(True)
        expected, = torch.autograd.grad(_entropy(w, bias, weight[k]), w)
        torch.testing.assert_close(anchors.anchors[k], expected, rtol=1e-6, atol=0)


def test_diagnostics_follow_the_softmax_assignment_matrix():
    weight, bias = _classifier()
    q = (weight @ weight.T + bias).softmax(1)
    d = structural_anchors(weight, bias).diagnostics
    assert d['mean_diag_prob'] == pytest.approx(q.diagonal().mean().item())
    assert d['self_entropy'] == pytest.approx(softmax_entropy(q.log(), 1).mean().item())
    assert d['structural_acc'] == pytest.approx((q.argmax(1) == torch.arange(K)).double().mean())


def test_conv_weight_and_dtype():
    weight, bias = _classifier(torch.float32)
    anchors = structural_anchors(weight[:, :, None, None], bias)
    assert anchors.anchors.dtype == torch.float32 and anchors.anchors.shape == (K, C)
    torch.testing.assert_close(anchors.anchors, structural_anchors(weight, bias).anchors)
    with pytest.raises(ValueError, match='grad_space'):
        structural_anchors(weight, bias, grad_space='logits')


def _pixels(weight, bias, num=40, seed=1):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(num, C, generator=g, dtype=weight.dtype) * 2
    return feats, feats @ weight.T + bias


def test_feature_space_loss_matches_autograd_reference():
    weight, bias = _classifier()
    anchors = structural_anchors(weight, bias, grad_space='feature')
    feats, logits = _pixels(weight, bias)
    expected = []
    for f in feats:
        f = f.clone().requires_grad_(True)
        g, = torch.autograd.grad(_entropy(weight, bias, f), f)
        a = anchors.anchors[(weight @ f + bias).argmax()]
        expected.append(1 - _cos(g, a))
    expected = torch.stack(expected).mean()
    torch.testing.assert_close(stag_loss(logits, anchors), expected, rtol=1e-6, atol=0)


def test_classifier_space_loss_matches_autograd_reference():
    weight, bias = _classifier()
    anchors = structural_anchors(weight, bias, grad_space='classifier')
    feats, logits = _pixels(weight, bias)
    expected = []
    for f in feats:
        w = weight.clone().requires_grad_(True)
        grad_w, = torch.autograd.grad(_entropy(w, bias, f), w)
        a = anchors.anchors[(weight @ f + bias).argmax()]
        expected.append(1 - _cos(grad_w.flatten(), a.flatten()))
    expected = torch.stack(expected).mean()
    got = stag_loss(logits, anchors, feats=feats)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=0)
    with pytest.raises(ValueError, match='features'):
        stag_loss(logits, anchors)


def test_kspace_equals_naive_cspace_in_float32_on_images():
    g = torch.Generator().manual_seed(3)
    weight, bias = torch.randn(19, 64, generator=g), torch.randn(19, generator=g)
    anchors = structural_anchors(weight, bias)
    feats = torch.randn(2, 64, 6, 8, generator=g)
    logits = torch.einsum('kc,nchw->nkhw', weight, feats) + bias[:, None, None]
    logits.requires_grad_(True)
    kspace = stag_loss(logits, anchors)
    naive = stag_loss(logits, anchors, impl='naive')
    torch.testing.assert_close(kspace, naive, rtol=1e-5, atol=1e-6)
    grad_k, = torch.autograd.grad(kspace, logits)
    grad_n, = torch.autograd.grad(naive, logits)
    torch.testing.assert_close(grad_k, grad_n, rtol=1e-4, atol=1e-6)


def test_pixel_layouts_agree():
    weight, bias = _classifier()
    anchors = structural_anchors(weight, bias)
    logits = torch.randn(2, K, 3, 4, dtype=torch.float64)
    flat = logits.permute(0, 2, 3, 1).reshape(-1, K)
    torch.testing.assert_close(stag_loss(logits, anchors), stag_loss(flat, anchors))


@pytest.mark.parametrize('grad_space', ['feature', 'classifier'])
@pytest.mark.parametrize('case', ['one-hot', 'uniform', 'masked-out'])
def test_loss_and_gradient_stay_finite(grad_space, case):
    weight, bias = _classifier(torch.float32)
    anchors = structural_anchors(weight, bias, grad_space=grad_space)
    if case == 'one-hot':
        logits = torch.nn.functional.one_hot(torch.arange(12) % K, K).float() * 200
    else:
        logits = torch.zeros(12, K)
    logits.requires_grad_(True)
    feats = torch.randn(12, C, requires_grad=True)
    mask = torch.zeros(12, dtype=torch.bool) if case == 'masked-out' else None
    loss = stag_loss(logits, anchors, feats=feats, valid_mask=mask)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(logits.grad).all()
    assert feats.grad is None or torch.isfinite(feats.grad).all()
    if case == 'masked-out':
        assert loss.item() == 0 and not logits.grad.any()


def test_valid_mask_and_confidence_filter_select_pixels():
    weight, bias = _classifier()
    anchors = structural_anchors(weight, bias)
    feats, logits = _pixels(weight, bias)
    keep = torch.arange(len(logits)) % 3 == 0
    torch.testing.assert_close(stag_loss(logits, anchors, valid_mask=keep),
                               stag_loss(logits[keep], anchors))
    confident = logits.softmax(1).amax(1) >= 0.9
    assert 0 < confident.sum() < len(logits)
    torch.testing.assert_close(stag_loss(logits, anchors, conf_thresh=0.9),
                               stag_loss(logits[confident], anchors))


def test_anchors_are_constants_and_gradient_flows_only_through_inputs():
    weight = torch.randn(K, C, requires_grad=True)
    bias = torch.randn(K, requires_grad=True)
    for grad_space in ('feature', 'classifier'):
        anchors = structural_anchors(weight, bias, grad_space=grad_space)
        assert not any(t.requires_grad for t in vars(anchors).values()
                       if isinstance(t, torch.Tensor))
        logits = torch.randn(10, K, requires_grad=True)
        feats = torch.randn(10, C, requires_grad=True)
        stag_loss(logits, anchors, feats=feats).backward()
        assert weight.grad is None and bias.grad is None
        assert logits.grad.abs().sum() > 0
        if grad_space == 'classifier':
            assert feats.grad.abs().sum() > 0
        else:
            assert feats.grad is None      # feature space needs only the logits


def test_feature_cosine_with_an_adapted_classifier_uses_the_current_weight():
    """Anchors from W0 stay; each pixel's gradient g = W^T u uses the current W."""
    torch.manual_seed(3)
    w0, b = torch.randn(5, 8, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    w = w0 + 0.3 * torch.randn_like(w0)
    anchors = structural_anchors(w0, b, grad_space='feature')
    logits = torch.randn(40, 5, dtype=torch.float64)
    u, _ = entropy_logit_grad(logits, dim=1)
    g = u @ w                                                   # (P, C) with the current W
    a = anchors.anchors[logits.argmax(1)]                      # (P, C): W0^T v_y
    expected = 1 - torch.nn.functional.cosine_similarity(g, a, dim=1)
    torch.testing.assert_close(stag_loss(logits, anchors.with_weight(w)), expected.mean())
    torch.testing.assert_close(stag_loss(logits, anchors.with_weight(w), impl='naive'),
                               expected.mean())
    assert not torch.allclose(stag_loss(logits, anchors), expected.mean())
